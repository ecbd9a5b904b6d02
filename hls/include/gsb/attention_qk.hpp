/**
 * gsb/attention_qk.hpp: binary Q.K^T scores of every head (docs/integer_model.md §4).
 *
 *   sc[h, i, j] = d - 2 * popcount(q_i XOR k_j)        (+-1 dot products, in [-d, d])
 *
 * This is gsb::mvau in XnorMode whose "weights" are the K rows of the image (runtime
 * weights, written by gsb/qkv_split.hpp): per head, MH = N keys, MW = d, N query vectors.
 * Output: per head and query, N/PE words of PE int32 scores (lane pe of fold nf = key
 * nf*PE + pe), heads in order: the order of sc[h][i][j].
 * Timing: the layer `blocks.{i}.qk` of the cycle model, H * N * ceil(d/SIMD) * (1 + N/PE)
 * iterations in `iters`: per head the query rows are first copied into the unit's input
 * FIFO (N * SF, in this process, before the MVAU reads them), then the MVAU.
 */
#ifndef GSB_ATTENTION_QK_HPP
#define GSB_ATTENTION_QK_HPP

#include <ap_int.h>

#include <cstdint>

#include "gsb/mvau_policies.hpp"
#include "gsb/binary_ops.hpp"
#include "gsb/common.hpp"
#include "gsb/mvau.hpp"
#include "gsb/stream.hpp"

namespace gsb {

template <unsigned N, unsigned D, unsigned H, unsigned SIMD, unsigned PE>
void attention_qk(const ap_uint<SIMD> q_rows[H][N][ceil_div(D, SIMD)],
                  const ap_uint<SIMD> k_tiles[H][PE][mvau_shape<D, N, SIMD, PE>::TILES],
                  stream<vec<int32_t, PE>>& scores, iter_count iters) {
    const unsigned SF = ceil_div(D, SIMD);
    const RawPolicy<N, PE> raw = {};
    for (unsigned h = 0; h < H; ++h) {
        // the query rows are written whole before the MVAU (same process) reads them
        const unsigned QDEPTH = N * SF;
        stream<ap_uint<SIMD>> q("attention_qk.q");
#pragma HLS STREAM variable=q depth=QDEPTH
#ifdef GSB_CSIM
        q.set_depth(QDEPTH);
#else
        (void)QDEPTH;   // g++'s synthesis view ignores the pragma
#endif
        for (unsigned long i = 0; i < (unsigned long)N * SF; ++i) {
#pragma HLS PIPELINE II=1
            q.write(q_rows[h][i / SF][i % SF]);
            GSB_COUNT_ITER(iters);
        }
        mvau<D, N, SIMD, PE, XnorMode>(q, scores, k_tiles[h], raw, N, iters);
    }
}

}  // namespace gsb

#endif  // GSB_ATTENTION_QK_HPP
