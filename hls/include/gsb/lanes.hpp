/**
 * gsb/lanes.hpp: words of the residual stream, one int32 or a gsb::vec of L int32 lanes.
 *
 * The residual-stream stages (patch_embed, fork, the LayerNorms, the residual adds) are
 * written once for both: the generator declares a stream `int32_t` where its folding is 1
 * (the projects of before, byte for byte) and `gsb::vec<int32_t, L>` where a stage folds to
 * L elements per cycle, and the kernels take the word type from the stream they are given.
 * A kernel between streams of different widths walks the elements in chunks of the gcd of
 * the widths (one chunk per cycle; a word is read or written when the chunk starts or ends it):
 * the data-width conversion FINN puts between two layers, inside the stage.  The top's image
 * port is folded the same way: `int8_t` pixels, or `gsb::vec<int8_t, L>` words of L pixels.
 */
#ifndef GSB_LANES_HPP
#define GSB_LANES_HPP

#include <cstdint>

#include "gsb/common.hpp"

namespace gsb {

/** Elements per word of a residual-stream word type. */
template <typename W>
struct word_lanes {
    static const unsigned value = 1;
};
template <typename T, unsigned L>
struct word_lanes<vec<T, L>> {
    static const unsigned value = L;
};

inline int32_t& lane(int32_t& w, unsigned) { return w; }
inline int32_t lane(const int32_t& w, unsigned) { return w; }
template <unsigned L>
int32_t& lane(vec<int32_t, L>& w, unsigned i) {
    return w[i];
}
template <unsigned L>
int32_t lane(const vec<int32_t, L>& w, unsigned i) {
    return w[i];
}

/** Element i of a word of any element type (the top's image words: int8 pixels). */
template <typename T>
T element(const T& w, unsigned) {
    return w;
}
template <typename T, unsigned L>
T element(const vec<T, L>& w, unsigned i) {
    return w[i];
}

}  // namespace gsb

#endif  // GSB_LANES_HPP
