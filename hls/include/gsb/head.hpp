/**
 * gsb/head.hpp: the logit combine of the two 8-bit heads (docs/integer_model.md §9).
 *
 * Input: the raw head MVAU output for two vectors, C/PE words of PE int32 lanes each:
 * first head (token 0), then head_dist (token 1).  Output: C/PE words of PE int64 logits
 *   logit_c = acc_c * head_mult + accd_c * dist_mult + bias[c]     (int64, 2^-logit)
 * in the layout gsb::argmax reads (ties -> lowest index).
 * Timing (elementwise): 2 * C/PE iterations (the first vector is buffered).
 */
#ifndef GSB_HEAD_HPP
#define GSB_HEAD_HPP

#include <cstdint>

#include "gsb/common.hpp"
#include "gsb/stream.hpp"

namespace gsb {

template <unsigned C, unsigned PE>
void logits_combine(stream<vec<int32_t, PE>>& acc, int64_t head_mult, int64_t dist_mult, const int64_t bias[C],
                    stream<vec<int64_t, PE>>& out, iter_count iters) {
    static_assert(C % PE == 0, "logits_combine: PE must divide C");
    const unsigned NF = C / PE;
    int32_t first[C];
    for (unsigned i = 0; i < 2 * NF; ++i) {
#pragma HLS PIPELINE II=1
        const vec<int32_t, PE> w = acc.read();
        vec<int64_t, PE> logit = {};
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            const unsigned c = (i % NF) * PE + pe;
            if (i < NF) {
                first[c] = w[pe];
            } else {
                logit[pe] = int64_t(first[c]) * head_mult + int64_t(w[pe]) * dist_mult + bias[c];
            }
        }
        if (i >= NF) out.write(logit);
        GSB_COUNT_ITER(iters);
    }
}

}  // namespace gsb

#endif  // GSB_HEAD_HPP
