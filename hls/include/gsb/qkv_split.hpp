/**
 * gsb/qkv_split.hpp: qkv accumulators -> Q bits, K bits and the values Vq (docs/integer_model.md §4).
 *
 * Input: the raw qkv MVAU output, 3E/PE_QKV words of PE_QKV int32 lanes per token (row
 * o = s*E + h*d + j; s = 0 q, 1 k, 2 v).  Per element:
 *   q[h, i, j] = acc >= q_thr[h*d + j]         k[h, i, j] = acc >= k_thr[h*d + j]
 *   Vq[h, i, j] = acc * 2^value + v_offset[h*d + j]          (int64)
 * Outputs are the buffers attention needs whole (all keys before any score):
 *   q_rows[h][i][sf]   query i of head h as the QK MVAU's input words (SIMD_QK bits, pads 0)
 *   k_tiles[h][pe][t]  the K rows of head h as the QK MVAU's *runtime weights* in FINN layout
 *                      (row = key token i, column = j: mvau_shape<d, N, SIMD_QK, PE_QK>)
 *   vq[h][i][j]        the values, for gsb/value_planes.hpp
 * Words are assembled in registers and written whole, once: a token's channels arrive in
 * order (o = fold*PE_QKV + pe), so the bits of one Q or K word are consecutive; its last bit
 * (j % SIMD_QK == SIMD_QK-1, or j == d-1) writes it (pad bits 0).  A word's bits never
 * read-modify-write memory, and every word of q_rows and k_tiles is written (k_tiles: N % PE_QK
 * == 0), so no clearing pass.  Per cycle at most ceil(PE_QKV/SIMD_QK) + 1 words are written to
 * q_rows and to k_tiles (one when PE_QKV <= SIMD_QK and the lanes do not straddle two heads).
 * Timing (elementwise): N * 3E/PE_QKV iterations.
 */
#ifndef GSB_QKV_SPLIT_HPP
#define GSB_QKV_SPLIT_HPP

#include <ap_int.h>

#include <cstdint>

#include "gsb/common.hpp"
#include "gsb/mvau.hpp"
#include "gsb/stream.hpp"

namespace gsb {

template <unsigned E, unsigned H, unsigned N, unsigned PE_QKV, unsigned SIMD_QK, unsigned PE_QK>
void qkv_split(stream<vec<int32_t, PE_QKV>>& acc, const int32_t q_thr[E], const int32_t k_thr[E],
               const int64_t v_offset[E], unsigned value_shift,
               ap_uint<SIMD_QK> q_rows[H][N][ceil_div(E / H, SIMD_QK)],
               ap_uint<SIMD_QK> k_tiles[H][PE_QK][mvau_shape<E / H, N, SIMD_QK, PE_QK>::TILES],
               int64_t vq[H][N][E / H], iter_count iters) {
    const unsigned D = E / H;
    typedef mvau_shape<D, N, SIMD_QK, PE_QK> kshape;
    static_assert(E % H == 0, "qkv_split: E must be a multiple of H");
    static_assert((3 * E) % PE_QKV == 0, "qkv_split: PE_QKV must divide 3E");
    const unsigned FOLDS = 3 * E / PE_QKV;
    const int64_t scale = int64_t(1) << value_shift;

    unsigned token = 0, fold = 0;
    ap_uint<SIMD_QK> qw = 0, kw = 0;   // the Q and the K word being assembled (registers)
    for (unsigned long i = 0; i < (unsigned long)N * FOLDS; ++i) {
#pragma HLS PIPELINE II=1
        const vec<int32_t, PE_QKV> word = acc.read();
        for (unsigned pe = 0; pe < PE_QKV; ++pe) {
#pragma HLS UNROLL
            const unsigned o = fold * PE_QKV + pe, part = o / E, c = o % E, h = c / D, j = c % D;
            const bool last = j % SIMD_QK == SIMD_QK - 1 || j == D - 1;   // the word's last bit
            const int32_t a = word[pe];
            if (part == 0) {
                qw[j % SIMD_QK] = a >= q_thr[c];
                if (last) {
                    q_rows[h][token][j / SIMD_QK] = qw;
                    qw = 0;
                }
            } else if (part == 1) {
                kw[kshape::bit(j)] = a >= k_thr[c];
                if (last) {
                    k_tiles[h][kshape::lane(token)][kshape::tile(token, j)] = kw;
                    kw = 0;
                }
            } else {
                vq[h][token][j] = int64_t(a) * scale + v_offset[c];
            }
        }
        GSB_COUNT_ITER(iters);
        if (++fold == FOLDS) {
            fold = 0;
            ++token;
        }
    }
}

}  // namespace gsb

#endif  // GSB_QKV_SPLIT_HPP
