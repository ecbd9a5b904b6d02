/**
 * gsb/binary_ops.hpp: popcount and the two binary dot-product modes.
 *
 * Conventions (gsbsim/format/conventions.py, DESIGN.md §2): bit 1 = +1, bit 0 = -1;
 * element i of a word is bit i (LSB first); pad bits are 0 in both operands.
 *
 *   XnorMode  (+-1 activations x +-1 weights): count mismatches popcount(a ^ w);
 *             dot = MW - 2 * mismatches, with the true MW (pads never mismatch).
 *   AndMode   ({0,1} activations x +-1 weights): count popcount(a & w) and
 *             popcount(a); dot = 2 * popcount(a & w) - popcount(a).
 *
 * A mode is a stateless type used by mvau (and by the attention matmuls):
 *   static const unsigned lane_bits;                         // bits per SIMD lane (1 here)
 *   template <unsigned MW> struct acc;                       // per-lane accumulator
 *   template <unsigned MW> static void clear(acc<MW>&);
 *   template <unsigned MW, unsigned SIMD>
 *   static void accumulate(acc<MW>&, const ap_uint<SIMD>& a, const ap_uint<SIMD>& w);
 *   template <unsigned MW> static int32_t dot(const acc<MW>&);
 * Counters are ap_uint wide enough for 0..MW, so synthesis builds no wider adders.
 */
#ifndef GSB_BINARY_OPS_HPP
#define GSB_BINARY_OPS_HPP

#include <ap_int.h>

#include <cstdint>

#include "gsb/common.hpp"

namespace gsb {

/** Bit count of a 64-bit word: shifts, masks and adds only (no multiplier). */
inline unsigned popcount64(uint64_t v) {
#pragma HLS INLINE
    v = v - ((v >> 1) & 0x5555555555555555ULL);
    v = (v & 0x3333333333333333ULL) + ((v >> 2) & 0x3333333333333333ULL);
    v = (v + (v >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    v = v + (v >> 8);
    v = v + (v >> 16);
    v = v + (v >> 32);
    return unsigned(v & 0x7F);
}

/** Bit count of an ap_uint<W>, in 64-bit chunks. */
template <unsigned W>
ap_uint<count_bits(W)> popcount(const ap_uint<W>& x) {
#pragma HLS INLINE
    ap_uint<count_bits(W)> total = 0;
    for (unsigned lo = 0; lo < W; lo += 64) {
#pragma HLS UNROLL
        const unsigned hi = (lo + 63 < W - 1) ? lo + 63 : W - 1;
        total += popcount64(x.range(hi, lo).to_uint64());
    }
    return total;
}

/** +-1 x +-1: accumulate mismatches, dot = MW - 2 * mismatches. */
struct XnorMode {
    static const unsigned lane_bits = 1;
    template <unsigned MW>
    struct acc {
        ap_uint<count_bits(MW)> mismatches;
    };
    template <unsigned MW>
    static void clear(acc<MW>& a) { a.mismatches = 0; }
    template <unsigned MW, unsigned SIMD>
    static void accumulate(acc<MW>& a, const ap_uint<SIMD>& x, const ap_uint<SIMD>& w) {
#pragma HLS INLINE
        a.mismatches += popcount<SIMD>(x ^ w);
    }
    template <unsigned MW>
    static int32_t dot(const acc<MW>& a) {
        return int32_t(MW) - 2 * int32_t(a.mismatches.to_uint());
    }
};

/** {0,1} x +-1: accumulate popcount(a & w) and popcount(a), dot = 2*both - ones. */
struct AndMode {
    static const unsigned lane_bits = 1;
    template <unsigned MW>
    struct acc {
        ap_uint<count_bits(MW)> both;
        ap_uint<count_bits(MW)> ones;
    };
    template <unsigned MW>
    static void clear(acc<MW>& a) {
        a.both = 0;
        a.ones = 0;
    }
    template <unsigned MW, unsigned SIMD>
    static void accumulate(acc<MW>& a, const ap_uint<SIMD>& x, const ap_uint<SIMD>& w) {
#pragma HLS INLINE
        a.both += popcount<SIMD>(x & w);
        a.ones += popcount<SIMD>(x);
    }
    template <unsigned MW>
    static int32_t dot(const acc<MW>& a) {
        return 2 * int32_t(a.both.to_uint()) - int32_t(a.ones.to_uint());
    }
};

}  // namespace gsb

#endif  // GSB_BINARY_OPS_HPP
