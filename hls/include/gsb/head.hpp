/**
 * gsb/head.hpp: the logit combine of the two 8-bit heads (docs/integer_model.md §9).
 *
 * Input: the raw head MVAU output for two vectors, C/PE words of PE int32 lanes each:
 * first head (token 0), then head_dist (token 1).  Output: C/PE words of PE int64 logits
 *   logit_c = acc_c * head_mult + accd_c * dist_mult + bias[c]     (int64, 2^-logit)
 * Widths (gsb/requant.hpp): |acc| <= 128*128*E and |mult|*128*128*E <= 2^61 (§1, §10), so each
 * product is an acc_bits x mult_bits multiplier (23 x 41 bits at E = 192, was 64 x 64) and the
 * logit, the sum of three terms of |.| <= 2^61, stays 64 bits.  C-simulation checks the bounds.
 * in the layout gsb::argmax reads (ties -> lowest index).
 * Timing (elementwise): 2 * C/PE iterations (the first vector is buffered).
 */
#ifndef GSB_HEAD_HPP
#define GSB_HEAD_HPP

#include <cstdint>

#include "gsb/common.hpp"
#include "gsb/requant.hpp"
#include "gsb/stream.hpp"

namespace gsb {

/** E: the heads' inputs, so |acc| <= 128*128*E (§10). */
template <unsigned C, unsigned PE, unsigned E>
void logits_combine(stream<vec<int32_t, PE>>& acc, int64_t head_mult, int64_t dist_mult, const int64_t bias[C],
                    stream<vec<int64_t, PE>>& out, iter_count iters) {
    static_assert(C % PE == 0, "logits_combine: PE must divide C");
    const unsigned NF = C / PE;
    const unsigned long long ACC_MAX = int8_acc_max(E);
    const typename requant_width<ACC_MAX>::mult_t hm = requant_mult<ACC_MAX>(head_mult, "logits: head.mult");
    const typename requant_width<ACC_MAX>::mult_t dm = requant_mult<ACC_MAX>(dist_mult, "logits: head_dist.mult");
    typename requant_width<ACC_MAX>::acc_t first[C];   // head's accumulators, at their width
    for (unsigned i = 0; i < 2 * NF; ++i) {
#pragma HLS PIPELINE II=1
        const vec<int32_t, PE> w = acc.read();
        vec<int64_t, PE> logit = {};
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            const unsigned c = (i % NF) * PE + pe;
            if (i < NF) {
                first[c] = requant_acc<ACC_MAX>(w[pe], "logits", 0, c);
            } else {
                // two acc_bits x mult_bits products and the bias, each |.| <= 2^61: the sum fits 64 bits
                const wide_t a = requant_product<ACC_MAX>(first[c], hm);
                const wide_t b = requant_product<ACC_MAX>(requant_acc<ACC_MAX>(w[pe], "logits", 1, c), dm);
                logit[pe] = ap_int<64>(ap_int<64>(a + b) + bounded<61>(bias[c], "logits", "logit.bias", c)).to_int64();
            }
        }
        if (i >= NF) out.write(logit);
        GSB_COUNT_ITER(iters);
    }
}

}  // namespace gsb

#endif  // GSB_HEAD_HPP
