/**
 * gsb/argmax.hpp: index of the largest of N integer logits, ties -> lowest index.
 *
 * Input: N / PE words per vector, each holding PE consecutive logits
 * (lane pe of word f = logit f*PE + pe), the layout mvau produces with
 * RawPolicy / RequantPolicy, so the classifier head feeds it directly.
 * Output: one uint32_t index per vector.
 * Timing: reps * N / PE iterations at II=1; `iters` counts them in C-simulation.
 */
#ifndef GSB_ARGMAX_HPP
#define GSB_ARGMAX_HPP

#include <cstdint>

#include "gsb/common.hpp"
#include "gsb/stream.hpp"

namespace gsb {

template <unsigned N, unsigned PE, typename T>
void argmax(stream<vec<T, PE>>& in, stream<uint32_t>& out, unsigned reps, iter_count iters) {
    static_assert(N > 0 && PE > 0, "argmax: empty shape");
    static_assert(N % PE == 0, "argmax: N must be a multiple of PE");
    const unsigned FOLDS = N / PE;
    T best = T();
    uint32_t best_index = 0;
    unsigned fold = 0;
    const unsigned long total = (unsigned long)reps * FOLDS;

    for (unsigned long i = 0; i < total; ++i) {
#pragma HLS PIPELINE II=1
        const vec<T, PE> word = in.read();
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            // strictly greater: an equal later logit never replaces the earlier one
            if ((fold == 0 && pe == 0) || word[pe] > best) {
                best = word[pe];
                best_index = fold * PE + pe;
            }
        }
        if (fold == FOLDS - 1) out.write(best_index);
        GSB_COUNT_ITER(iters);
        if (++fold == FOLDS) fold = 0;
    }
}

}  // namespace gsb

#endif  // GSB_ARGMAX_HPP
