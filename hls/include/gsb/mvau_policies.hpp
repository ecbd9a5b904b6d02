/**
 * gsb/mvau_policies.hpp: what an MVAU does with a finished dot product.
 *
 * A policy turns the PE dot products of one neuron fold into one stream word.
 * Every policy is an aggregate (brace-initialisable from a generated header) with
 *   static const unsigned rows  = MH;    // output channels of the layer
 *   static const unsigned lanes = PE;    // results per stream word
 *   typedef ... out_t;                   // the stream word: PE results of one fold
 *   out_t activate(unsigned nf, const int32_t dot[PE]) const;
 * where dot[pe] is the exact +-1 dot product (XnorMode/AndMode) of output row
 * nf * PE + pe; lane pe of the returned word is that row's result.
 *
 *   ThresholdPolicy         bit = dot >= thr[row]                      out_t = ap_uint<PE>
 *   TwoSidedThresholdPolicy bit = dot >= hi[row] || dot <= lo[row]     out_t = ap_uint<PE>
 *   RequantPolicy           (dot*mult + bias[row] + 2^(shift-1)) >> shift (arithmetic shift,
 *                           int64 intermediate; shift = 0 means no rounding term)
 *                                                                      out_t = vec<int32_t, PE>
 *   RawPolicy               dot                                        out_t = vec<int32_t, PE>
 *
 * Packed bits put lane pe in bit pe (row nf * PE + pe).  "Always 1" / "always 0" channels use
 * thr = INT32_MIN / INT32_MAX (DESIGN.md §2).
 */
#ifndef GSB_MVAU_POLICIES_HPP
#define GSB_MVAU_POLICIES_HPP

#include <ap_int.h>

#include <cstdint>

#include "gsb/common.hpp"

namespace gsb {

/** One threshold per output row: bit = dot >= thr[row] (the project's only binarizer rule). */
template <unsigned MH, unsigned PE>
struct ThresholdPolicy {
    static const unsigned rows = MH;
    static const unsigned lanes = PE;
    typedef ap_uint<PE> out_t;
    int32_t thr[MH];

    out_t activate(unsigned nf, const int32_t dot[PE]) const {
#pragma HLS INLINE
        out_t word = 0;
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            word[pe] = dot[pe] >= thr[nf * PE + pe];
        }
        return word;
    }
};

/** Two thresholds per row (GELU's non-monotonic part): bit = dot >= hi || dot <= lo. */
template <unsigned MH, unsigned PE>
struct TwoSidedThresholdPolicy {
    static const unsigned rows = MH;
    static const unsigned lanes = PE;
    typedef ap_uint<PE> out_t;
    int32_t lo[MH];
    int32_t hi[MH];

    out_t activate(unsigned nf, const int32_t dot[PE]) const {
#pragma HLS INLINE
        out_t word = 0;
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            const unsigned row = nf * PE + pe;
            word[pe] = (dot[pe] >= hi[row]) || (dot[pe] <= lo[row]);
        }
        return word;
    }
};

/**
 * Fixed-point requantization into the int32 residual stream:
 * out = (dot * mult + bias[row] + 2^(shift-1)) >> shift, round half up.
 * C-simulation checks the ranges that keep the int64 intermediate exact:
 * shift <= 61, |bias| < 2^61 (|dot * mult| < 2^55 because MW < 2^24), and
 * that the result fits int32.
 */
template <unsigned MH, unsigned PE>
struct RequantPolicy {
    static const unsigned rows = MH;
    static const unsigned lanes = PE;
    typedef vec<int32_t, PE> out_t;
    int32_t mult;
    uint32_t shift;
    int64_t bias[MH];

    out_t activate(unsigned nf, const int32_t dot[PE]) const {
#pragma HLS INLINE
        GSB_CHECK(shift <= 61, "RequantPolicy: shift " << shift << " > 61");
        out_t word;
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            const unsigned row = nf * PE + pe;
            GSB_CHECK(bias[row] > -(int64_t(1) << 61) && bias[row] < (int64_t(1) << 61),
                      "RequantPolicy: bias[" << row << "] = " << bias[row] << " outside (-2^61, 2^61)");
            const int64_t x = int64_t(dot[pe]) * int64_t(mult) + bias[row];
            const int64_t y = shift == 0 ? x : (x + (int64_t(1) << (shift - 1))) >> shift;
            GSB_CHECK(y >= INT32_MIN && y <= INT32_MAX,
                      "RequantPolicy: row " << row << " result " << y << " does not fit int32");
            word[pe] = int32_t(y);
        }
        return word;
    }
};

/** The exact dot product itself (tests, and products combined later, e.g. GSB group sums). */
template <unsigned MH, unsigned PE>
struct RawPolicy {
    static const unsigned rows = MH;
    static const unsigned lanes = PE;
    typedef vec<int32_t, PE> out_t;

    out_t activate(unsigned /*nf*/, const int32_t dot[PE]) const {
#pragma HLS INLINE
        out_t word;
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            word[pe] = dot[pe];
        }
        return word;
    }
};

}  // namespace gsb

#endif  // GSB_MVAU_POLICIES_HPP
