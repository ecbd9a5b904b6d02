/**
 * gsb/residual.hpp: the residual connection.
 *
 * residual_add: an elementwise int32 add of two streams.  Both inputs and the output
 * carry N / PE words of PE int32 lanes per vector (the RequantPolicy layout of mvau).
 * Timing: reps * N / PE iterations at II=1.
 *
 * requant_residual_add: proj and fc2 (docs/integer_model.md §7): the residual stream X
 * (token-major words of LI int32 lanes, gsb/lanes.hpp) plus the requantized raw MVAU
 * accumulators (E/PE words of PE int32 lanes per token), into words of LO lanes:
 *   X'[t, o] = X[t, o] + ((acc*mult + bias[o] + 2^(shift-1)) >> shift)     (1 <= shift <= 40)
 * Widths (gsb/requant.hpp): acc*mult an acc_bits x mult_bits product, the sum 64 bits, X' a
 * 32-bit add; C-simulation checks |acc| <= K, |mult|*K <= 2^61, |bias| <= 2^61 and X' in int32.
 * M = gcd(LI, PE, LO) channels per cycle.  Timing: tokens * E / M iterations at II=1.
 *
 * residual_add_lanes: the same without the requantization, X'[t, o] = X[t, o] + z[t, o] for
 * the activation unit's z words (`reactnet`, `didb`: §13.1); same loop, same timing.
 *
 * The int32 result must not overflow: the integer model is exported so that it cannot,
 * and C-simulation checks it (an error naming the layer, token and channel, never a wrap).
 * `iters` counts the iterations in C-simulation.
 */
#ifndef GSB_RESIDUAL_HPP
#define GSB_RESIDUAL_HPP

#include <cstdint>

#include "gsb/common.hpp"
#include "gsb/lanes.hpp"
#include "gsb/requant.hpp"
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

/**
 * The residual adds' loop: X words of LI lanes and the branch's words of PE lanes in, X' words
 * of LO lanes out, M = gcd(LI, PE, LO) channels per iteration; `y(word, c, token, where)` is the branch's
 * value of channel c from its current word (`token` and `where` name it in a range-check error).
 */
template <unsigned E, unsigned PE, typename XI, typename XO, typename Y>
void residual_lanes_loop(stream<XI>& x, stream<vec<int32_t, PE>>& branch, stream<XO>& out, unsigned tokens,
                         const char* where, const Y& y, iter_count iters) {
    const unsigned LI = word_lanes<XI>::value, LO = word_lanes<XO>::value, M = gcd_u(gcd_u(LI, PE), LO);
    static_assert(E % PE == 0 && E % LI == 0 && E % LO == 0, "residual add: the lanes must divide E");
    XI xw = {};
    vec<int32_t, PE> word = {};
    XO ow = {};
    for (unsigned long i = 0; i < (unsigned long)tokens * (E / M); ++i) {
#pragma HLS PIPELINE II=1
        const unsigned c0 = (i * M) % E;
        if (c0 % PE == 0) word = branch.read();
        if (c0 % LI == 0) xw = x.read();
        for (unsigned m = 0; m < M; ++m) {
#pragma HLS UNROLL
            const unsigned c = c0 + m;
            const unsigned long token = i * M / E;
            lane(ow, c % LO) = int32_sum(lane(xw, c % LI), y(word, c, token, where), where, token, c);
        }
        if ((c0 + M) % LO == 0) out.write(ow);
        GSB_COUNT_ITER(iters);
    }
}

/**
 * proj / fc2: X + the requantized accumulator (§7), acc in [-ACC_MAX, ACC_MAX]: acc*mult on an
 * acc_bits x mult_bits multiplier, |acc*mult|, |bias| <= 2^61 and 2^(shift-1) <= 2^39, so the sum
 * fits 64 bits (gsb/requant.hpp).
 */
template <unsigned PE, unsigned long long ACC_MAX>
struct requant_lane {
    typename requant_width<ACC_MAX>::mult_t mult;
    int64_t half;
    const int64_t* bias;
    unsigned shift;
    int64_t operator()(const vec<int32_t, PE>& w, unsigned c, unsigned long token, const char* where) const {
#pragma HLS INLINE
        const wide_t prod = requant_product<ACC_MAX>(requant_acc<ACC_MAX>(w[c % PE], where, token, c), mult);
        const ap_int<64> sum = ap_int<64>(prod + bounded<61>(bias[c], where, "bias", c)) + half;
        return (sum >> shift).to_int64();
    }
};

/** reactnet / didb: X + z (§13.1). */
template <unsigned PE>
struct z_lane {
    int64_t operator()(const vec<int32_t, PE>& w, unsigned c, unsigned long, const char*) const {
#pragma HLS INLINE
        return w[c % PE];
    }
};

/** ACC_MAX: the bound of the accumulators (§10: the layer's K inputs, E for proj, Hd for fc2). */
template <unsigned E, unsigned PE, unsigned long long ACC_MAX, typename XI, typename XO>
void requant_residual_add(stream<XI>& x, stream<vec<int32_t, PE>>& acc, stream<XO>& out, int64_t mult,
                          const int64_t bias[E], unsigned shift, unsigned tokens, const char* where,
                          iter_count iters) {
    // shifts.resid <= 40 (§1): the rounding term 2^(shift-1) keeps the requant sum inside 64 bits
    GSB_CHECK(shift >= 1 && shift <= 40, where << ": requantization shift " << shift << " outside 1..40");
    const requant_lane<PE, ACC_MAX> y = {requant_mult<ACC_MAX>(mult, where), int64_t(1) << (shift - 1), bias, shift};
    residual_lanes_loop<E, PE>(x, acc, out, tokens, where, y, iters);
}

/** The residual stream plus z words of an activation unit (gsb/act_unit.hpp, §13.1: `reactnet`, `didb`). */
template <unsigned E, unsigned PE, typename XI, typename XO>
void residual_add_lanes(stream<XI>& x, stream<vec<int32_t, PE>>& z, stream<XO>& out, unsigned tokens,
                        const char* where, iter_count iters) {
    residual_lanes_loop<E, PE>(x, z, out, tokens, where, z_lane<PE>(), iters);
}

}  // namespace gsb

#endif  // GSB_RESIDUAL_HPP
