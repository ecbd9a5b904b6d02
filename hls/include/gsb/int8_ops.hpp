/**
 * gsb/int8_ops.hpp: the 8-bit matrix mode of mvau (patch embedding and the classifier heads).
 *
 * A word of SIMD int8 lanes is an ap_uint<8 * SIMD>: lane i in bits 8i .. 8i+7, two's
 * complement (the layout the generator writes for weights and im2col writes for pixels).
 * Pad lanes (MW not a multiple of SIMD) are 0 in inputs and weights.
 *
 *   Int8Mode  dot = sum_i int8(x_i) * int8(w_i)   (int32: |dot| <= 2^14 * MW < 2^31 for MW < 2^17)
 *
 * Same interface as the binary modes of gsb/binary_ops.hpp (lane_bits, acc, clear,
 * accumulate, dot), so gsb::mvau runs it unchanged and counts the same cycles.
 */
#ifndef GSB_INT8_OPS_HPP
#define GSB_INT8_OPS_HPP

#include <ap_int.h>

#include <cstdint>

#include "gsb/common.hpp"

namespace gsb {

/** Lane i of a word of int8 lanes, sign-extended. */
template <int W>
inline int32_t int8_lane(const ap_uint<W>& word, unsigned i) {
#pragma HLS INLINE
    const int32_t u = int32_t(ap_uint<W>(word >> (8 * i)).to_uint64() & 0xFFu);
    return u >= 128 ? u - 256 : u;
}

/** Store v (-128..127) in lane i of a word of int8 lanes. */
template <int W>
inline void set_int8_lane(ap_uint<W>& word, unsigned i, int32_t v) {
#pragma HLS INLINE
    const unsigned u = unsigned(v < 0 ? v + 256 : v);
    for (unsigned b = 0; b < 8; ++b) {  // bit by bit: ap_private's range assignment trips GCC warnings
#pragma HLS UNROLL
        word[8 * i + b] = (u >> b) & 1u;
    }
}

/** int8 x int8 multiply-accumulate with an int32 accumulator. */
struct Int8Mode {
    static const unsigned lane_bits = 8;
    template <unsigned MW>
    struct acc {
        int32_t sum;
    };
    template <unsigned MW>
    static void clear(acc<MW>& a) { a.sum = 0; }
    template <unsigned MW, unsigned SIMD>
    static void accumulate(acc<MW>& a, const ap_uint<8 * SIMD>& x, const ap_uint<8 * SIMD>& w) {
#pragma HLS INLINE
        static_assert(MW < (1u << 17), "Int8Mode: MW must be below 2^17 (int32 accumulator)");
        int32_t s = 0;
        for (unsigned i = 0; i < SIMD; ++i) {
#pragma HLS UNROLL
            s += int8_lane(x, i) * int8_lane(w, i);
        }
        a.sum += s;
    }
    template <unsigned MW>
    static int32_t dot(const acc<MW>& a) { return a.sum; }
};

}  // namespace gsb

#endif  // GSB_INT8_OPS_HPP
