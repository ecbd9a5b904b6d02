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
 * Timing (elementwise): H*N*SF + H*PE_QK*TILES clearing iterations, then N * 3E/PE_QKV.
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
    const unsigned SF = kshape::SF, FOLDS = 3 * E / PE_QKV;
    const int64_t scale = int64_t(1) << value_shift;

    for (unsigned long i = 0; i < (unsigned long)H * N * SF; ++i) {
#pragma HLS PIPELINE II=1
        q_rows[i / (N * SF)][(i / SF) % N][i % SF] = 0;
        GSB_COUNT_ITER(iters);
    }
    for (unsigned long i = 0; i < (unsigned long)H * PE_QK * kshape::TILES; ++i) {
#pragma HLS PIPELINE II=1
        k_tiles[i / (PE_QK * kshape::TILES)][(i / kshape::TILES) % PE_QK][i % kshape::TILES] = 0;
        GSB_COUNT_ITER(iters);
    }
    unsigned token = 0, fold = 0;
    for (unsigned long i = 0; i < (unsigned long)N * FOLDS; ++i) {
#pragma HLS PIPELINE II=1
        const vec<int32_t, PE_QKV> word = acc.read();
        for (unsigned pe = 0; pe < PE_QKV; ++pe) {
#pragma HLS UNROLL
            const unsigned o = fold * PE_QKV + pe, part = o / E, c = o % E, h = c / D, j = c % D;
            const int32_t a = word[pe];
            if (part == 0) {
                q_rows[h][token][j / SIMD_QK][j % SIMD_QK] = a >= q_thr[c];
            } else if (part == 1) {
                k_tiles[h][kshape::lane(token)][kshape::tile(token, j)][kshape::bit(j)] = a >= k_thr[c];
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
