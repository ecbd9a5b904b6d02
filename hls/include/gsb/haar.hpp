/**
 * gsb/haar.hpp: `didb` Q and K bits through the undecimated Haar split on the patch grid
 * (docs/integer_model.md §13.2).
 *
 * qkv_z_split buffers the qkv unit's z (gsb/act_unit.hpp; 3E/PE words per token, row o = s*E + h*d + j)
 * for the whole image: the Q and K channels in zqk[n][o] (o < 2E: the split needs the grid
 * neighbours of every token), the values as Vq[h][n][j] = z[2E + h*d + j] + v_offset[h*d + j].
 * Timing (elementwise): N * 3E/PE iterations.
 *
 * haar_qk then makes, for channel c (Q: o = c, K: o = E + c) and token n at grid (r, w)
 * (n = 2 + r*GRID + w), with r' = min(r+1, GRID-1), w' = min(w+1, GRID-1):
 *   S4[n] = z[(r, w)] + z[(r, w')] + z[(r', w)] + z[(r', w')]      (4 * low band, int64)
 *   S4[0] = 4*z[0], S4[1] = 4*z[1]                                   (cls, dist: low band only)
 *   low bit = S4 >= thr_low[c],  high bit = 4*z[n] - S4 >= thr_high[c]
 * into the buffers the two Q.K^T products read (gsb/attention_qk.hpp), band 0 = low, 1 = high:
 *   q_rows[band][h][n][sf]   the query rows (SIMD bits, pads 0)
 *   k_tiles[band][h][pe][t]  the K rows as runtime weights, FINN layout mvau_shape<d, N, SIMD, PE>
 * The words are assembled in two registers (low, high band) and written whole once: a token's
 * channels come in order, so a word's bits are consecutive and its last bit (j % SIMD == SIMD-1,
 * or j == d-1) writes it; every word is written, so no clearing pass.
 * Timing (elementwise): N * 2E iterations.
 */
#ifndef GSB_HAAR_HPP
#define GSB_HAAR_HPP

#include <ap_int.h>

#include <cstdint>

#include "gsb/common.hpp"
#include "gsb/mvau.hpp"
#include "gsb/stream.hpp"

namespace gsb {

template <unsigned E, unsigned H, unsigned N, unsigned PE_QKV>
void qkv_z_split(stream<vec<int32_t, PE_QKV>>& z, const int64_t v_offset[E], int32_t zqk[N][2 * E],
                 int64_t vq[H][N][E / H], iter_count iters) {
    const unsigned D = E / H, FOLDS = 3 * E / PE_QKV;
    static_assert(E % H == 0, "qkv_z_split: E must be a multiple of H");
    static_assert((3 * E) % PE_QKV == 0, "qkv_z_split: PE_QKV must divide 3E");
    unsigned token = 0, fold = 0;
    for (unsigned long i = 0; i < (unsigned long)N * FOLDS; ++i) {
#pragma HLS PIPELINE II=1
        const vec<int32_t, PE_QKV> word = z.read();
        for (unsigned pe = 0; pe < PE_QKV; ++pe) {
#pragma HLS UNROLL
            const unsigned o = fold * PE_QKV + pe, c = o % E;
            if (o < 2 * E)
                zqk[token][o] = word[pe];
            else
                vq[c / D][token][c % D] = int64_t(word[pe]) + v_offset[c];
        }
        GSB_COUNT_ITER(iters);
        if (++fold == FOLDS) {
            fold = 0;
            ++token;
        }
    }
}

/** S4 of token n, channel o (4 times the low band; the replicate-padded 2x2 sum on the grid). */
template <unsigned N, unsigned C, unsigned GRID>
int64_t haar_s4(const int32_t z[N][C], unsigned n, unsigned o) {
#pragma HLS INLINE
    static_assert(N == GRID * GRID + 2, "haar_s4: N must be GRID*GRID + 2");
    if (n < 2) return 4 * int64_t(z[n][o]);
    const unsigned r = (n - 2) / GRID, w = (n - 2) % GRID;
    const unsigned r1 = r + 1 < GRID ? r + 1 : r, w1 = w + 1 < GRID ? w + 1 : w;
    return int64_t(z[2 + r * GRID + w][o]) + int64_t(z[2 + r * GRID + w1][o]) + int64_t(z[2 + r1 * GRID + w][o]) +
           int64_t(z[2 + r1 * GRID + w1][o]);
}

template <unsigned E, unsigned H, unsigned N, unsigned GRID, unsigned SIMD, unsigned PE>
void haar_qk(const int32_t zqk[N][2 * E], const int64_t q_thr_low[E], const int64_t q_thr_high[E],
             const int64_t k_thr_low[E], const int64_t k_thr_high[E],
             ap_uint<SIMD> q_rows[2][H][N][ceil_div(E / H, SIMD)],
             ap_uint<SIMD> k_tiles[2][H][PE][mvau_shape<E / H, N, SIMD, PE>::TILES], iter_count iters) {
    const unsigned D = E / H;
    typedef mvau_shape<D, N, SIMD, PE> kshape;
    ap_uint<SIMD> lo_w = 0, hi_w = 0;   // the low- and high-band word being assembled (registers)
    for (unsigned long i = 0; i < (unsigned long)N * 2 * E; ++i) {
#pragma HLS PIPELINE II=1
        const unsigned n = i / (2 * E), o = i % (2 * E), c = o % E, h = c / D, j = c % D;
        const int64_t s4 = haar_s4<N, 2 * E, GRID>(zqk, n, o);
        const int64_t high = 4 * int64_t(zqk[n][o]) - s4;
        const bool is_q = o < E;
        const bool lo_bit = s4 >= (is_q ? q_thr_low[c] : k_thr_low[c]);
        const bool hi_bit = high >= (is_q ? q_thr_high[c] : k_thr_high[c]);
        lo_w[j % SIMD] = lo_bit;
        hi_w[j % SIMD] = hi_bit;
        if (j % SIMD == SIMD - 1 || j == D - 1) {   // the word's last bit
            if (is_q) {
                q_rows[0][h][n][j / SIMD] = lo_w;
                q_rows[1][h][n][j / SIMD] = hi_w;
            } else {
                k_tiles[0][h][kshape::lane(n)][kshape::tile(n, j)] = lo_w;
                k_tiles[1][h][kshape::lane(n)][kshape::tile(n, j)] = hi_w;
            }
            lo_w = 0;
            hi_w = 0;
        }
        GSB_COUNT_ITER(iters);
    }
}

}  // namespace gsb

#endif  // GSB_HAAR_HPP
