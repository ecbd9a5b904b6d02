/**
 * gsb/layernorm.hpp: the integer LayerNorms of the model (docs/integer_model.md §3, §9).
 *
 * Per token of E int32 values X_c (the residual stream, one value per stream word):
 *   S1 = sum X_c, S2 = sum X_c^2, D_c = E*X_c - S1, V = E*S2 - S1^2 + ln_eps, sigma = isqrt(V)
 *
 *   layernorm_bits   (norm1 -> qkv input, norm2 -> fc1 input):
 *                    bit_c = sign_c * D_c * 2^ln >= thr_c * sigma, packed into SIMD-bit words
 *                    (the next MVAU's input words; pad bits 0)
 *   final_layernorm  (tokens 0 and 1 -> the two 8-bit heads):
 *                    q_c = clamp(floor((2*num + den) / (2*den)), -128, 127),
 *                    num = gain_c*D_c + offset_c*sigma, den = sigma * 2^k,
 *                    packed as int8 lanes (gsb/int8_ops.hpp); tokens >= 2 are read and dropped.
 *                    No divider: the clamp is decided by two shifted compares and the 8-bit
 *                    quotient inside it by 8 unrolled restoring steps (quotient8), a fixed
 *                    datapath in the II=1 loop, SIMD channels (one output word) per cycle.
 *
 * isqrt64 is the exact bit-by-bit (digit-by-digit) floor square root: 32 iterations, one
 * result bit each, shifts/compares/subtracts only.
 *
 * Overflow (spec §1, run-time checks): a token with E*S2 + ln_eps >= 2^62 is an error, never
 * a wrap.  S2 is accumulated in int64 saturating just above `s2_max` = the largest S2 with
 * E*S2 + ln_eps < 2^62 (computed by the generator), and C-simulation throws naming the layer
 * and token.  Under that bound every other intermediate fits int64 (spec §1), and the compare
 * paths are narrower (ln_stats, ln_dev, layernorm_bits, final_layernorm).
 *
 * The input is the residual stream, words of L int32 lanes (gsb/lanes.hpp: L = 1 is one
 * int32 per word); the statistics read one word, L channels, per cycle.
 *
 * Timing: layernorm_bits per token E/L + 32 + ceil(E/SIMD) iterations (statistics, isqrt, one
 * output word of SIMD channels per cycle); final_layernorm E/L + 32 + ceil(E/SIMD) per head
 * token and E/L per dropped token; `iters` counts them (gsbsim/hw/stages.py).
 */
#ifndef GSB_LAYERNORM_HPP
#define GSB_LAYERNORM_HPP

#include <ap_int.h>

#include <cstdint>

#include "gsb/common.hpp"
#include "gsb/int8_ops.hpp"
#include "gsb/lanes.hpp"
#include "gsb/requant.hpp"
#include "gsb/stream.hpp"

namespace gsb {

/** floor(sqrt(v)) of a non-negative int64, bit by bit (32 iterations, exact). */
inline int64_t isqrt64(int64_t v, iter_count iters) {
    GSB_CHECK(v >= 0, "isqrt64 of a negative number " << v);
    uint64_t rem = uint64_t(v), root = 0, bit = uint64_t(1) << 62;
    for (unsigned i = 0; i < 32; ++i) {
#pragma HLS PIPELINE II=1
        if (rem >= root + bit) {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
        GSB_COUNT_ITER(iters);
    }
    return int64_t(root);
}

/**
 * clamp(floor(a / b), -128, 127) for b > 0 without a divider: the clamp by two compares of
 * a >> 7 (floor(a / 128)) with +-b, exact since b is an integer; inside it 0 <= a + 128*b <
 * 256*b and the 8 quotient bits come from 8 restoring steps (72-bit, no int64 overflow).
 */
inline int32_t quotient8(int64_t a, int64_t b) {
#pragma HLS INLINE
    const int64_t a7 = a >> 7;  // arithmetic shift: floor(a / 128)
    if (a7 >= b) return 127;
    if (a7 < -b) return -128;
    ap_uint<72> r = ap_uint<72>(ap_int<72>(a) + (ap_int<72>(b) << 7));
    const ap_uint<72> bb = ap_uint<72>(b);
    int32_t q = 0;
    for (int j = 7; j >= 0; --j) {
#pragma HLS UNROLL
        const ap_uint<72> t = bb << j;
        if (r >= t) {
            r -= t;
            q |= 1 << j;
        }
    }
    return q - 128;
}

/**
 * One token's statistics: S1 = sum of E int32 values, |S1| <= E*2^31: 32 + clog2(E) bits; sigma =
 * isqrt(V), V < 2^62 (the checked E*S2 bound): sigma < 2^31, 31 bits.
 */
template <unsigned E>
struct ln_stats {
    typedef ap_int<32 + clog2(E)> s1_t;
    s1_t s1;
    ap_uint<31> sigma;
};

/**
 * D_c = E*X_c - S1 of one channel.  Sum_c D_c^2 = E*(E*S2 - S1^2) < E*2^62 under the checked bound
 * E*S2 + ln_eps < 2^62 (§1), so |D| < sqrt(E)*2^31 <= 2^37 (E <= 4096): 38 bits, computed mod 2^38
 * (exact under that bound; a 38-bit subtract of a constant multiple of X).
 */
template <unsigned E>
ap_int<38> ln_dev(int32_t x, const typename ln_stats<E>::s1_t& s1) {
#pragma HLS INLINE
    static_assert(E >= 1 && E <= 4096, "layernorm: E <= 4096 (docs/integer_model.md §1 dimension limits)");
    return ap_int<38>(ap_int<38>(ap_int<32>(x) * ap_uint<count_bits(E)>(E)) - ap_int<38>(s1));
}

/**
 * Read one token (E values, E/L words of L lanes) into buf and return S1 and sigma.
 * `where` and `token` only name the offender in the overflow error.
 */
template <unsigned E, typename W>
ln_stats<E> layernorm_stats(stream<W>& x, int32_t buf[E], int64_t ln_eps, int64_t s2_max,
                            const char* where, unsigned token, iter_count iters) {
    const unsigned L = word_lanes<W>::value;
    static_assert(E % L == 0, "layernorm: the residual stream's lanes must divide E");
    typename ln_stats<E>::s1_t s1 = 0;
    int64_t s2 = 0;
    bool too_big = s2_max < 0;
    for (unsigned w = 0; w < E / L; ++w) {
#pragma HLS PIPELINE II=1
        const W word = x.read();
        for (unsigned l = 0; l < L; ++l) {
#pragma HLS UNROLL
            const int32_t v = lane(word, l);
            buf[w * L + l] = v;
            s1 += v;
            // v^2 <= 2^62 and s2 <= s2_max < 2^62 before the add: no int64 overflow
            s2 += int64_t(v) * int64_t(v);
            if (s2 > s2_max) {
                too_big = true;
                s2 = s2_max < 0 ? 0 : s2_max;  // saturate; the token is an error anyway
            }
        }
        GSB_COUNT_ITER(iters);
    }
    GSB_CHECK(!too_big, where << ": LayerNorm E*S2 + ln_eps reaches 2^62 at token " << token);
    (void)where;
    (void)token;
    (void)too_big;   // the check above is C-simulation only
    ln_stats<E> st;
    st.s1 = s1;
    // S1^2 <= E*S2 < 2^62 (Cauchy-Schwarz): a (32 + clog2 E)-bit square
    st.sigma = isqrt64(int64_t(E) * s2 - (s1 * s1).to_int64() + ln_eps, iters);
    return st;
}

/**
 * norm -> binarizer: SIMD-bit words, ceil(E/SIMD) per token.  Widths: D 38 bits (ln_dev);
 * sign*D*2^ln, ln <= 24 (§1): a negation and a shift, |.| < 2^61; thr in int32 range (§1) times
 * sigma < 2^31: a 32 x 31 multiplier (was 64 x 64), |.| < 2^62.  C-simulation checks ln <= 24 and
 * every thr against its range.
 */
template <unsigned E, unsigned SIMD, typename W>
void layernorm_bits(stream<W>& x, stream<ap_uint<SIMD>>& out, const int8_t sign[E], const int64_t thr[E],
                    unsigned ln_shift, int64_t ln_eps, int64_t s2_max, unsigned tokens, const char* where,
                    iter_count iters) {
    static_assert(E > 0 && SIMD > 0, "layernorm_bits: empty shape");
    GSB_CHECK(ln_shift <= 24, where << ": LayerNorm shift " << ln_shift << " outside 0..24");
    // written L lanes per cycle (statistics), read SIMD per cycle (compare): banks for both
    const unsigned BUF_BANKS = lcm_u(word_lanes<W>::value, SIMD);
    int32_t buf[E];
#pragma HLS ARRAY_PARTITION variable=buf cyclic factor=BUF_BANKS
    (void)BUF_BANKS;   // g++ ignores the pragma
    for (unsigned t = 0; t < tokens; ++t) {
        const ln_stats<E> st = layernorm_stats<E, W>(x, buf, ln_eps, s2_max, where, t, iters);
        // one output word per cycle: its SIMD channels compared in parallel (the consumer's rate)
        for (unsigned w = 0; w < ceil_div(E, SIMD); ++w) {
#pragma HLS PIPELINE II=1
            ap_uint<SIMD> word = 0;
            for (unsigned b = 0; b < SIMD; ++b) {
#pragma HLS UNROLL
                const unsigned c = w * SIMD + b;
                if (c < E) {
                    GSB_CHECK(thr[c] >= INT32_MIN && thr[c] <= INT32_MAX,
                              where << ": threshold thr[" << c << "] = " << thr[c] << " outside the int32 range");
                    const ap_int<62> dl = ap_int<62>(ln_dev<E>(buf[c], st.s1)) << ln_shift;   // |.| < 2^61
                    const ap_int<62> lhs = sign[c] > 0 ? dl : sign[c] < 0 ? ap_int<62>(-dl) : ap_int<62>(0);
                    word[b] = lhs >= ap_int<63>(ap_int<32>(thr[c]) * st.sigma);
                }
            }
            out.write(word);
            GSB_COUNT_ITER(iters);
        }
    }
}

/**
 * Final LayerNorm of tokens 0 and 1 into the 8-bit head inputs: gain[0]/offset[0] for
 * token 0 (norm), gain[1]/offset[1] for token 1 (head_dist_norm).  Reads all `tokens`
 * tokens of the residual stream; writes ceil(E/SIMD) int8-lane words per head token, one
 * word (SIMD channels, quotient8 each) per cycle.  Widths (§1: |gain| <= 2^22, |offset| <= 2^28,
 * head_ln <= 24; C-simulation checks them): gain*D 24 x 38 bits, offset*sigma 30 x 31 bits,
 * |num| < 2^60, den = sigma*2^k < 2^55.
 */
template <unsigned E, unsigned SIMD, typename W>
void final_layernorm(stream<W>& x, stream<ap_uint<8 * SIMD>>& out, const int64_t gain[2][E],
                     const int64_t offset[2][E], unsigned k, int64_t ln_eps, int64_t s2_max, unsigned tokens,
                     iter_count iters) {
    static_assert(E > 0 && SIMD > 0, "final_layernorm: empty shape");
    const unsigned L = word_lanes<W>::value;
    static_assert(E % L == 0, "final_layernorm: the residual stream's lanes must divide E");
    static const char* const names[2] = {"norm", "head_dist_norm"};
    GSB_CHECK(k <= 24, "final_layernorm: shift head_ln " << k << " outside 0..24");
    // written L lanes per cycle (statistics), read SIMD per cycle (one output word): banks for both
    const unsigned BUF_BANKS = lcm_u(L, SIMD);
    int32_t buf[E];
#pragma HLS ARRAY_PARTITION variable=buf cyclic factor=BUF_BANKS
    (void)BUF_BANKS;   // g++ ignores the pragma
    for (unsigned t = 0; t < tokens; ++t) {
        if (t >= 2) {  // patch tokens: not used by the heads
            for (unsigned w = 0; w < E / L; ++w) {
#pragma HLS PIPELINE II=1
                (void)x.read();
                GSB_COUNT_ITER(iters);
            }
            continue;
        }
        const ln_stats<E> st = layernorm_stats<E, W>(x, buf, ln_eps, s2_max, names[t], t, iters);
        GSB_CHECK(st.sigma > 0, names[t] << ": sigma 0 at token " << t << " (ln_eps must be positive)");
        const int64_t den = int64_t(st.sigma.to_uint64()) << k;   // < 2^55
        for (unsigned w = 0; w < ceil_div(E, SIMD); ++w) {
#pragma HLS PIPELINE II=1
            ap_uint<8 * SIMD> word = 0;
            for (unsigned l = 0; l < SIMD; ++l) {
#pragma HLS UNROLL
                const unsigned c = w * SIMD + l;
                if (c < E) {
                    // a 24 x 38 and a 30 x 31 multiplier (was 64 x 64 each), |num| < 2^59 + 2^59
                    const ap_int<24> g = bounded<22>(gain[t][c], names[t], "gain", c);
                    const ap_int<30> o = bounded<28>(offset[t][c], names[t], "offset", c);
                    const int64_t num =
                        ap_int<61>(ap_int<61>(g * ln_dev<E>(buf[c], st.s1)) + ap_int<61>(o * st.sigma)).to_int64();
                    set_int8_lane(word, l, quotient8(2 * num + den, 2 * den));
                }
            }
            out.write(word);
            GSB_COUNT_ITER(iters);
        }
    }
}

}  // namespace gsb

#endif  // GSB_LAYERNORM_HPP
