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
 *   X'[t, o] = X[t, o] + ((acc*mult + bias[o] + 2^(shift-1)) >> shift)     (int64, shift >= 1)
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

/**
 * The residual adds' loop: X words of LI lanes and the branch's words of PE lanes in, X' words
 * of LO lanes out, M = gcd(LI, PE, LO) channels per iteration; `y(word, c)` is the branch's
 * value of channel c from its current word.
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
            lane(ow, c % LO) = residual_sum(lane(xw, c % LI), y(word, c), where, i * M / E, c);
        }
        if ((c0 + M) % LO == 0) out.write(ow);
        GSB_COUNT_ITER(iters);
    }
}

/** proj / fc2: X + the requantized accumulator (§7). */
template <unsigned PE>
struct requant_lane {
    int64_t mult, half;
    const int64_t* bias;
    unsigned shift;
    int64_t operator()(const vec<int32_t, PE>& w, unsigned c) const {
#pragma HLS INLINE
        return (int64_t(w[c % PE]) * mult + bias[c] + half) >> shift;
    }
};

/** reactnet / didb: X + z (§13.1). */
template <unsigned PE>
struct z_lane {
    int64_t operator()(const vec<int32_t, PE>& w, unsigned c) const {
#pragma HLS INLINE
        return w[c % PE];
    }
};

template <unsigned E, unsigned PE, typename XI, typename XO>
void requant_residual_add(stream<XI>& x, stream<vec<int32_t, PE>>& acc, stream<XO>& out, int64_t mult,
                          const int64_t bias[E], unsigned shift, unsigned tokens, const char* where,
                          iter_count iters) {
    GSB_CHECK(shift >= 1 && shift <= 62, where << ": requantization shift " << shift << " outside 1..62");
    const requant_lane<PE> y = {mult, int64_t(1) << (shift - 1), bias, shift};
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
