/**
 * gsb/attention_planes.hpp: the GSB attention planes of one image (docs/integer_model.md §5).
 *
 * From A[h][i][j] (int64, 2^-prob): the base plane b1 = A >= thr1 and G-1 mask planes
 *   M_k = 256*A > r_k*amax,  k = 2..G,  r_k = plane_ratio[k-1]
 * with amax the max of A over j (IMAGE_STAT false: per row, the `row` statistic) or over
 * every head, row and key of the image (IMAGE_STAT true: `image`).
 *
 * Output: rows[p][h][i][sf], plane p of query row i of head h as the A.V unit's input words
 * (SIMD bits over key tokens, bit j%SIMD of word j/SIMD; pad bits 0).
 *
 * Folding: EPC keys j per cycle (EPC divides N; a partitioned by EPC along j, the caller's
 * pragma: gsbsim/hlsgen/partition.py).
 *
 * Registers, not read-modify-writes: the statistics pass keeps the current row's max in a
 * register and writes it once per row; the planes pass assembles each plane's word in a register
 * (keys j innermost, so a word's bits are consecutive) and writes it whole at its last key
 * (j % SIMD == SIMD-1 or j == N-1): G words in that cycle (rows partitioned along p), at most
 * ceil(EPC/SIMD) per plane.  Every word is written, so no clearing pass.
 *
 * Timing (elementwise): H*N*N/EPC for the statistic and H*N*N/EPC for the planes.
 */
#ifndef GSB_ATTENTION_PLANES_HPP
#define GSB_ATTENTION_PLANES_HPP

#include <ap_int.h>

#include <cstdint>

#include "gsb/common.hpp"

namespace gsb {

template <unsigned H, unsigned N, unsigned G, unsigned SIMD, bool IMAGE_STAT, unsigned EPC = 1>
void attention_planes(const int64_t a[H][N][N], int64_t thr1, const int32_t plane_ratio[G],
                      ap_uint<SIMD> rows[G][H][N][ceil_div(N, SIMD)], iter_count iters) {
    static_assert(G >= 1 && G <= 8, "attention_planes: 1 <= G <= 8");
    static_assert(EPC >= 1 && N % EPC == 0, "attention_planes: EPC must divide N");
    const unsigned NF = N / EPC;
    int64_t amax[H][N];
    int64_t gmax = 0, rmax = 0;   // image and current-row maximum (registers)
    ap_uint<SIMD> w[G];           // the words being assembled (registers)
#pragma HLS ARRAY_PARTITION variable=w complete

    for (unsigned long i = 0; i < (unsigned long)H * N * NF; ++i) {
#pragma HLS PIPELINE II=1
        const unsigned h = i / (N * NF), q = (i / NF) % N, jf = i % NF;
        int64_t m = a[h][q][jf * EPC];   // the EPC keys' max (a tree in hardware)
        for (unsigned u = 1; u < EPC; ++u) {
#pragma HLS UNROLL
            const int64_t v = a[h][q][jf * EPC + u];
            m = v > m ? v : m;
        }
        if (jf == 0 || m > rmax) rmax = m;
        if (jf == NF - 1) amax[h][q] = rmax;
        if (i == 0 || m > gmax) gmax = m;
        GSB_COUNT_ITER(iters);
    }
    for (unsigned long i = 0; i < (unsigned long)H * N * NF; ++i) {
#pragma HLS PIPELINE II=1
        const unsigned h = i / (N * NF), q = (i / NF) % N, jf = i % NF;
        const int64_t mx = IMAGE_STAT ? gmax : amax[h][q];
        for (unsigned u = 0; u < EPC; ++u) {
#pragma HLS UNROLL
            const unsigned j = jf * EPC + u;
            const int64_t v = a[h][q][j];
            if (j % SIMD == 0) {
                for (unsigned p = 0; p < G; ++p) {
#pragma HLS UNROLL
                    w[p] = 0;
                }
            }
            w[0][j % SIMD] = v >= thr1;
            for (unsigned p = 1; p < G; ++p) {
#pragma HLS UNROLL
                w[p][j % SIMD] = 256 * v > int64_t(plane_ratio[p]) * mx;
            }
            if (j % SIMD == SIMD - 1 || j == N - 1) {   // the words' last bit
                for (unsigned p = 0; p < G; ++p) {
#pragma HLS UNROLL
                    rows[p][h][q][j / SIMD] = w[p];
                }
            }
        }
        GSB_COUNT_ITER(iters);
    }
}

}  // namespace gsb

#endif  // GSB_ATTENTION_PLANES_HPP
