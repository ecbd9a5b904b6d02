/**
 * gsb/weights.hpp: how an MVAU reads one weight word.
 *
 * An MVAU's weights are [PE][TILES] words of W = lane_bits * SIMD bits (FINN layout, see
 * gsb/mvau.hpp).  A word may be held as
 *   ap_uint<W>             runtime weights (the K rows and value planes of attention) and
 *                          hand-written testbenches;
 *   uint64_t               constant weights with W <= 64 (generated parameter headers);
 *   uint64_t[CHUNKS]       constant weights with W > 64: chunk c holds bits 64c .. 64c+63.
 * to_word<W>() turns any of them into the ap_uint<W> the datapath uses.  Generated headers
 * hold plain integers because a large brace-initialised ap_uint array compiles very slowly
 * (each element is a constructor call: minutes for 20k words), while integer arrays are
 * constant data (a ROM in synthesis) and compile in a moment.
 */
#ifndef GSB_WEIGHTS_HPP
#define GSB_WEIGHTS_HPP

#include <ap_int.h>

#include <cstddef>
#include <cstdint>

namespace gsb {

template <int W>
inline ap_uint<W> to_word(const ap_uint<W>& w) {
#pragma HLS INLINE
    return w;
}

template <int W>
inline ap_uint<W> to_word(uint64_t w) {
#pragma HLS INLINE
    static_assert(W <= 64, "to_word: a word wider than 64 bits is held as uint64_t[CHUNKS]");
    return ap_uint<W>(w);
}

template <int W, std::size_t CHUNKS>
inline ap_uint<W> to_word(const uint64_t (&chunks)[CHUNKS]) {
#pragma HLS INLINE
    static_assert(W > 64 && CHUNKS == (W + 63) / 64, "to_word: need ceil(W/64) chunks for a word above 64 bits");
    ap_uint<W> w = 0;
    for (std::size_t c = 0; c < CHUNKS; ++c) {
#pragma HLS UNROLL
        w |= ap_uint<W>(chunks[c]) << (64 * c);
    }
    return w;
}

}  // namespace gsb

#endif  // GSB_WEIGHTS_HPP
