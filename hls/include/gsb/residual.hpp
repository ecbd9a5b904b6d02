/**
 * gsb/residual.hpp: the residual connection.
 *
 * residual_add: an elementwise int32 add of two streams.  Both inputs and the output
 * carry N / PE words of PE int32 lanes per vector (the RequantPolicy layout of mvau).
 * Timing: reps * N / PE iterations at II=1.
 *
 * requant_residual_add: proj and fc2 (docs/integer_model.md §7): the residual stream X
 * (one int32 per word, token-major) plus the requantized raw MVAU accumulators (E/PE words
 * of PE int32 lanes per token):
 *   X'[t, o] = X[t, o] + ((acc*mult + bias[o] + 2^(shift-1)) >> shift)     (int64, shift >= 1)
 * Timing: tokens * E iterations at II=1 (elementwise stage).
 *
 * residual_add_lanes: the same without the requantization, X'[t, o] = X[t, o] + z[t, o] for
 * the activation unit's z words (`reactnet`, `didb`: §13.1).
 *
 * The int32 result must not overflow: the integer model is exported so that it cannot,
 * and C-simulation checks it (an error naming the layer, token and channel, never a wrap).
 * `iters` counts the iterations in C-simulation.
 */
#ifndef GSB_RESIDUAL_HPP
#define GSB_RESIDUAL_HPP

#include <cstdint>

#include "gsb/common.hpp"
#include "gsb/stream.hpp"

namespace gsb {

template <unsigned N, unsigned PE>
void residual_add(stream<vec<int32_t, PE>>& a, stream<vec<int32_t, PE>>& b,
                  stream<vec<int32_t, PE>>& out, unsigned reps, iter_count iters) {
    static_assert(N > 0 && PE > 0, "residual_add: empty shape");
    static_assert(N % PE == 0, "residual_add: N must be a multiple of PE");
    const unsigned long total = (unsigned long)reps * (N / PE);

    for (unsigned long i = 0; i < total; ++i) {
#pragma HLS PIPELINE II=1
        const vec<int32_t, PE> x = a.read();
        const vec<int32_t, PE> y = b.read();
        vec<int32_t, PE> sum;
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            const int64_t s = int64_t(x[pe]) + int64_t(y[pe]);
            GSB_CHECK(s >= INT32_MIN && s <= INT32_MAX,
                      "residual_add: " << x[pe] << " + " << y[pe] << " overflows int32 (word "
                                       << i << ", lane " << pe << ")");
            sum[pe] = int32_t(s);
        }
        out.write(sum);
        GSB_COUNT_ITER(iters);
    }
}

/** X + y formed in int64 and checked to fit int32 (an error naming the layer, token, channel). */
inline int32_t residual_sum(int32_t x, int64_t y, const char* where, unsigned long token, unsigned c) {
#pragma HLS INLINE
    const int64_t s = int64_t(x) + y;
    GSB_CHECK(s >= INT32_MIN && s <= INT32_MAX,
              where << ": residual stream overflows int32 at token " << token << ", channel " << c
                    << " (value " << s << ")");
    (void)where;
    (void)token;
    (void)c;
    return int32_t(s);
}

template <unsigned E, unsigned PE>
void requant_residual_add(stream<int32_t>& x, stream<vec<int32_t, PE>>& acc, stream<int32_t>& out, int64_t mult,
                          const int64_t bias[E], unsigned shift, unsigned tokens, const char* where,
                          iter_count iters) {
    static_assert(E % PE == 0, "requant_residual_add: PE must divide E");
    GSB_CHECK(shift >= 1 && shift <= 62, where << ": requantization shift " << shift << " outside 1..62");
    const int64_t half = int64_t(1) << (shift - 1);
    vec<int32_t, PE> word = {};
    for (unsigned long i = 0; i < (unsigned long)tokens * E; ++i) {
#pragma HLS PIPELINE II=1
        const unsigned c = i % E;
        if (c % PE == 0) word = acc.read();
        const int64_t y = (int64_t(word[c % PE]) * mult + bias[c] + half) >> shift;
        out.write(residual_sum(x.read(), y, where, i / E, c));
        GSB_COUNT_ITER(iters);
    }
}

/** The residual stream plus z words of an activation unit (gsb/act_unit.hpp, §13.1: `reactnet`, `didb`). */
template <unsigned E, unsigned PE>
void residual_add_lanes(stream<int32_t>& x, stream<vec<int32_t, PE>>& z, stream<int32_t>& out, unsigned tokens,
                        const char* where, iter_count iters) {
    static_assert(E % PE == 0, "residual_add_lanes: PE must divide E");
    vec<int32_t, PE> word = {};
    for (unsigned long i = 0; i < (unsigned long)tokens * E; ++i) {
#pragma HLS PIPELINE II=1
        const unsigned c = i % E;
        if (c % PE == 0) word = z.read();
        out.write(residual_sum(x.read(), word[c % PE], where, i / E, c));
        GSB_COUNT_ITER(iters);
    }
}

}  // namespace gsb

#endif  // GSB_RESIDUAL_HPP
