/**
 * gsb/value_planes.hpp: the GSB value planes of one image (docs/integer_model.md §4).
 *
 * From Vq[h][n][j] (int64): the sign plane s = Vq >= 0 and G-1 mask planes
 *   M_k = (256*Vq > r_k*mx) OR (256*Vq < r_k*mn),  k = 2..G,  r_k = plane_ratio[k-1]
 * with mx, mn the max and min of Vq over j (IMAGE_STAT false: per token and head, the
 * `row` statistic) or over the whole image (IMAGE_STAT true: `image`).
 *
 * Output: the planes as the A.V unit's runtime weights (gsb/gsb_av.hpp): for plane p and
 * head h, a matrix with a row per channel j (MH = d) and a column per key token n (MW = N),
 * in FINN layout mvau_shape<N, d, SIMD, PE>: tiles[p][h][lane(j)][tile(j, n)] bit bit(n).
 * plane_ratio[0] is unused (plane 0 is the sign plane).
 *
 * Folding: EPC channels j per cycle (EPC divides d; vq partitioned by EPC along j, the caller's
 * pragma: gsbsim/hlsgen/partition.py).
 *
 * Registers, not read-modify-writes: the statistics pass keeps the current row's max and min in
 * registers and writes them once per row; the planes pass walks the tokens n innermost (head,
 * channel group, token), so the bits of one word (SIMD consecutive tokens) are assembled in G*EPC
 * registers and each word is written whole at its last token (n % SIMD == SIMD-1 or n == N-1):
 * G*EPC words in that cycle (tiles partitioned along p and the PE lane).  Every word is written,
 * so no clearing pass.
 *
 * Timing (elementwise): H*N*d/EPC for the statistics and H*N*d/EPC for the planes (an image
 * statistic needs every value before the first plane bit).
 */
#ifndef GSB_VALUE_PLANES_HPP
#define GSB_VALUE_PLANES_HPP

#include <ap_int.h>

#include <cstdint>

#include "gsb/common.hpp"
#include "gsb/mvau.hpp"

namespace gsb {

template <unsigned H, unsigned N, unsigned D, unsigned G, unsigned SIMD, unsigned PE, bool IMAGE_STAT,
          unsigned EPC = 1>
void value_planes(const int64_t vq[H][N][D], const int32_t plane_ratio[G],
                  ap_uint<SIMD> tiles[G][H][PE][mvau_shape<N, D, SIMD, PE>::TILES], iter_count iters) {
    typedef mvau_shape<N, D, SIMD, PE> vshape;
    static_assert(G >= 1 && G <= 8, "value_planes: 1 <= G <= 8");
    static_assert(EPC >= 1 && D % EPC == 0, "value_planes: EPC must divide D");
    const unsigned DF = D / EPC;
    int64_t mx[H][N], mn[H][N];
    int64_t gmx = 0, gmn = 0, rmx = 0, rmn = 0;   // image and current-row statistics (registers)
    ap_uint<SIMD> w[G][EPC];                      // the words being assembled (registers)
#pragma HLS ARRAY_PARTITION variable=w complete dim=0

    for (unsigned long i = 0; i < (unsigned long)H * N * DF; ++i) {
#pragma HLS PIPELINE II=1
        const unsigned h = i / (N * DF), n = (i / DF) % N, jf = i % DF;
        int64_t hi = vq[h][n][jf * EPC], lo = hi;   // the EPC channels' max and min (a tree in hardware)
        for (unsigned u = 1; u < EPC; ++u) {
#pragma HLS UNROLL
            const int64_t v = vq[h][n][jf * EPC + u];
            hi = v > hi ? v : hi;
            lo = v < lo ? v : lo;
        }
        if (jf == 0 || hi > rmx) rmx = hi;
        if (jf == 0 || lo < rmn) rmn = lo;
        if (jf == DF - 1) {
            mx[h][n] = rmx;
            mn[h][n] = rmn;
        }
        if (i == 0 || hi > gmx) gmx = hi;
        if (i == 0 || lo < gmn) gmn = lo;
        GSB_COUNT_ITER(iters);
    }
    for (unsigned long i = 0; i < (unsigned long)H * DF * N; ++i) {
#pragma HLS PIPELINE II=1
        const unsigned h = i / (DF * N), jf = (i / N) % DF, n = i % N;   // tokens innermost
        const int64_t hi = IMAGE_STAT ? gmx : mx[h][n];
        const int64_t lo = IMAGE_STAT ? gmn : mn[h][n];
        const bool last = n % SIMD == SIMD - 1 || n == N - 1;   // the words' last bit
        for (unsigned u = 0; u < EPC; ++u) {
#pragma HLS UNROLL
            const unsigned j = jf * EPC + u;
            const int64_t v = vq[h][n][j];
            if (n % SIMD == 0) {
                for (unsigned p = 0; p < G; ++p) {
#pragma HLS UNROLL
                    w[p][u] = 0;
                }
            }
            w[0][u][vshape::bit(n)] = v >= 0;
            for (unsigned p = 1; p < G; ++p) {
#pragma HLS UNROLL
                const int64_t r = plane_ratio[p];
                w[p][u][vshape::bit(n)] = (256 * v > r * hi) || (256 * v < r * lo);
            }
            if (last) {
                for (unsigned p = 0; p < G; ++p) {
#pragma HLS UNROLL
                    tiles[p][h][vshape::lane(j)][vshape::tile(j, n)] = w[p][u];
                }
            }
        }
        GSB_COUNT_ITER(iters);
    }
}

}  // namespace gsb

#endif  // GSB_VALUE_PLANES_HPP
