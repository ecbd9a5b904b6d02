/**
 * gsb/act_unit.hpp: the activation unit after every binary linear of the methods `reactnet` and
 * `didb` (RPReLU / IRPReLU, docs/integer_model.md §13.1).
 *
 * From the raw accumulator acc of token n, output channel o:
 *   u = (acc*mult + bias[o] + tok_in[n] + 2^(shift-1)) >> shift                (2^-F)
 *   z = (u >= 0 ? u : (u*slope[o] + 2^(S-1)) >> S) + out[o] + tok_out[n]     (S = slope_shift, shifts.slope)
 * with the two run-time range checks |u| < 2^31 and |z| < 2^30: C-simulation throws an error
 * naming the unit (`blocks.{i}.{L}.act`), the token and the channel, never a wrap.  The model's
 * value ranges (|acc*mult|, |bias|, |tok_in| <= 2^61, |slope| <= 2^30, |out|, |tok_out| <= 2^30)
 * keep every intermediate inside int64 once u passed its check, and z then fits int32.
 *
 * act_unit streams a layer's raw MVAU output (C/PE words of PE int32 lanes per token, the
 * RawPolicy layout) into z words of the same layout, so the existing consumers (qkv_split,
 * activate_bits, the residual add) read z where they read acc before.
 * Timing (elementwise): tokens * C/PE iterations.
 */
#ifndef GSB_ACT_UNIT_HPP
#define GSB_ACT_UNIT_HPP

#include <cstdint>

#include "gsb/common.hpp"
#include "gsb/stream.hpp"

namespace gsb {

/** The parameters of one activation unit: C channels, N tokens (an aggregate, generated headers fill it). */
template <unsigned C, unsigned N>
struct ActUnit {
    static const unsigned channels = C;
    static const unsigned tokens = N;
    int64_t mult;        // L.mult: requant multiplier
    int64_t bias[C];     // L.bias: requant bias per channel (b_o - gamma_o)
    int64_t tok_in[N];   // L.tok_in: per-token bias before the PReLU (0 for reactnet)
    int64_t tok_out[N];  // L.tok_out: per-token offset after it, 2^-F (0 for reactnet)
    int64_t slope[C];    // L.slope: negative slope per channel, 2^-slope_shift
    int64_t out[C];      // L.out: offset per channel after the PReLU, 2^-F
    int64_t slope_shift; // shifts.slope of the model (§13.1; 16 for files without it), checked in 1..30

    /** z of token n, channel o from its accumulator; `where` names the unit in range-check errors. */
    int32_t z(unsigned n, unsigned o, int32_t acc, unsigned shift, const char* where) const {
#pragma HLS INLINE
        const int64_t lim_u = int64_t(1) << 31, lim_z = int64_t(1) << 30;
        const int64_t u = (int64_t(acc) * mult + bias[o] + tok_in[n] + (int64_t(1) << (shift - 1))) >> shift;
        GSB_CHECK(u > -lim_u && u < lim_u, where << ": activation input u leaves (-2^31, 2^31) at token " << n
                                                 << ", channel " << o << " (value " << u << ")");
        const int64_t p = u >= 0 ? u : (u * slope[o] + (int64_t(1) << (slope_shift - 1))) >> slope_shift;
        const int64_t v = p + out[o] + tok_out[n];
        GSB_CHECK(v > -lim_z && v < lim_z, where << ": activation output z leaves (-2^30, 2^30) at token " << n
                                                 << ", channel " << o << " (value " << v << ")");
        (void)where;
        (void)lim_u;
        (void)lim_z;
        return int32_t(v);
    }
};

/** The activation unit on a stream: `tokens` vectors of C/PE raw words in, z words out. */
template <unsigned C, unsigned N, unsigned PE>
void act_unit(stream<vec<int32_t, PE>>& acc, stream<vec<int32_t, PE>>& z, const ActUnit<C, N>& p, unsigned shift,
              unsigned tokens, const char* where, iter_count iters) {
    static_assert(C % PE == 0, "act_unit: PE must divide the channel count");
    GSB_CHECK(shift >= 1 && shift <= 62, where << ": requantization shift " << shift << " outside 1..62");
    GSB_CHECK(p.slope_shift >= 1 && p.slope_shift <= 30, where << ": slope shift " << p.slope_shift << " outside 1..30");
    GSB_CHECK(tokens <= N, where << ": " << tokens << " tokens, the unit has per-token terms for " << N);
    const unsigned NF = C / PE;
    unsigned token = 0, fold = 0;
    for (unsigned long i = 0; i < (unsigned long)tokens * NF; ++i) {
#pragma HLS PIPELINE II=1
        const vec<int32_t, PE> a = acc.read();
        vec<int32_t, PE> w;
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            w[pe] = p.z(token, fold * PE + pe, a[pe], shift, where);
        }
        z.write(w);
        GSB_COUNT_ITER(iters);
        if (++fold == NF) {
            fold = 0;
            ++token;
        }
    }
}

}  // namespace gsb

#endif  // GSB_ACT_UNIT_HPP
