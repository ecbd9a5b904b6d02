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
 * keep every intermediate inside int64 once u passed its check, and z then fits int32; the
 * datapath's widths follow from them (ActUnit::z), each checked in C-simulation.
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
#include "gsb/requant.hpp"
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

    /**
     * z of token n, channel o from its accumulator (|acc| <= ACC_MAX, §10); `where` names the unit
     * in range-check errors.  Widths (gsb/requant.hpp; C-simulation checks every bound): acc*mult
     * an acc_bits x mult_bits product; the u sum of four terms |.| <= 2^61 (2^(shift-1) <= 2^39) in
     * 64 bits; u, once |u| < 2^31 is checked, 32 bits; |slope| <= 2^30 (§13.1): 32 bits, u*slope a
     * 32 x 32 multiplier, |u*slope + 2^(S-1)| < 2^61 + 2^29 in 63 bits; z (|z| < 2^30, checked
     * exactly) a 31-bit add of the PReLU output and the offsets (exact mod 2^31).
     */
    template <unsigned long long ACC_MAX>
    int32_t z(unsigned n, unsigned o, int32_t acc, const typename requant_width<ACC_MAX>::mult_t& m, unsigned shift,
              const char* where) const {
#pragma HLS INLINE
        const int64_t lim_u = int64_t(1) << 31, lim_z = int64_t(1) << 30;
        const wide_t prod = requant_product<ACC_MAX>(requant_acc<ACC_MAX>(acc, where, n, o), m);
        const ap_int<64> sum = ap_int<64>(ap_int<64>(prod + bounded<61>(bias[o], where, "bias", o)) +
                                          bounded<61>(tok_in[n], where, "tok_in", n)) +
                               (int64_t(1) << (shift - 1));
        const int64_t u_exact = (sum >> shift).to_int64();
        GSB_CHECK(u_exact > -lim_u && u_exact < lim_u, where << ": activation input u leaves (-2^31, 2^31) at token "
                                                             << n << ", channel " << o << " (value " << u_exact << ")");
        const ap_int<32> u = u_exact;
        const ap_int<32> sl = bounded<30>(slope[o], where, "slope", o);
        const ap_int<63> neg = ap_int<63>(u * sl) + (int64_t(1) << (slope_shift - 1));
        const ap_int<31> p = u >= 0 ? ap_int<31>(u) : ap_int<31>(neg >> slope_shift);
        const ap_int<32> off = bounded<30>(out[o], where, "out", o), tok = bounded<30>(tok_out[n], where, "tok_out", n);
        // C-simulation: the exact z, |z| < 2^30; the 31-bit sum below equals it then
        GSB_CHECK(p_exact(u, sl) + off.to_int64() + tok.to_int64() > -lim_z &&
                      p_exact(u, sl) + off.to_int64() + tok.to_int64() < lim_z,
                  where << ": activation output z leaves (-2^30, 2^30) at token " << n << ", channel " << o
                        << " (value " << p_exact(u, sl) + off.to_int64() + tok.to_int64() << ")");
        (void)where;
        (void)lim_u;
        (void)lim_z;
        return ap_int<31>(p + ap_int<31>(off) + ap_int<31>(tok)).to_int();
    }

    /** The PReLU output before the offsets, exactly (|.| < 2^60): the z check's value. */
    int64_t p_exact(const ap_int<32>& u, const ap_int<32>& sl) const {
        return u >= 0 ? u.to_int64() : ((u.to_int64() * sl.to_int64() + (int64_t(1) << (slope_shift - 1))) >> slope_shift);
    }
};

/**
 * The activation unit on a stream: `tokens` vectors of C/PE raw words in, z words out.  K: the
 * layer's inputs, so |acc| <= K (§10: E for qkv, proj, fc1; Hd for fc2).
 */
template <unsigned C, unsigned N, unsigned PE, unsigned K>
void act_unit(stream<vec<int32_t, PE>>& acc, stream<vec<int32_t, PE>>& z, const ActUnit<C, N>& p, unsigned shift,
              unsigned tokens, const char* where, iter_count iters) {
    static_assert(C % PE == 0, "act_unit: PE must divide the channel count");
    // shifts.resid <= 40 (§1): the rounding term 2^(shift-1) keeps the u sum inside 64 bits
    GSB_CHECK(shift >= 1 && shift <= 40, where << ": requantization shift " << shift << " outside 1..40");
    GSB_CHECK(p.slope_shift >= 1 && p.slope_shift <= 30, where << ": slope shift " << p.slope_shift << " outside 1..30");
    GSB_CHECK(tokens <= N, where << ": " << tokens << " tokens, the unit has per-token terms for " << N);
    const unsigned NF = C / PE;
    const typename requant_width<K>::mult_t mult = requant_mult<K>(p.mult, where);
    unsigned token = 0, fold = 0;
    for (unsigned long i = 0; i < (unsigned long)tokens * NF; ++i) {
#pragma HLS PIPELINE II=1
        const vec<int32_t, PE> a = acc.read();
        vec<int32_t, PE> w;
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            w[pe] = p.template z<K>(token, fold * PE + pe, a[pe], mult, shift, where);
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
