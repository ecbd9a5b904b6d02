/**
 * gsb/stream_ops.hpp: plumbing between kernels.
 *
 *   fork          copy one stream into two (the residual stream feeds a LayerNorm and the
 *                 residual add of the same block).  `n` counts elements: a residual-stream
 *                 word of L lanes (gsb/lanes.hpp) is copied whole.  Timing: n / L iterations.
 *   stream_to_array  the top's input stream into an array (a PIPO: im2col reads it in patch
 *                 order); words of L elements (a gsb::vec, or one element), L per cycle.
 *                 Timing: n / L iterations.
 *   fork_lanes    a stream of PE-lane words as one lane per word (the top's logits port) and,
 *                 unchanged, to a second consumer (argmax).  Timing: n iterations.
 */
#ifndef GSB_STREAM_OPS_HPP
#define GSB_STREAM_OPS_HPP

#include "gsb/common.hpp"
#include "gsb/lanes.hpp"
#include "gsb/stream.hpp"

namespace gsb {

template <typename T>
void fork(stream<T>& in, stream<T>& a, stream<T>& b, unsigned long n, iter_count iters) {
    const unsigned long words = n / word_lanes<T>::value;
    for (unsigned long i = 0; i < words; ++i) {
#pragma HLS PIPELINE II=1
        const T v = in.read();
        a.write(v);
        b.write(v);
        GSB_COUNT_ITER(iters);
    }
}

template <unsigned NELEMS, typename W, typename T>
void stream_to_array(stream<W>& in, T out[NELEMS], iter_count iters) {
    const unsigned L = word_lanes<W>::value;
    static_assert(NELEMS % L == 0, "stream_to_array: the word's lanes must divide the element count");
    for (unsigned i = 0; i < NELEMS / L; ++i) {
#pragma HLS PIPELINE II=1
        const W w = in.read();
        for (unsigned l = 0; l < L; ++l) {
#pragma HLS UNROLL
            out[i * L + l] = element(w, l);
        }
        GSB_COUNT_ITER(iters);
    }
}

template <unsigned NELEMS, unsigned PE, typename T, typename U>
void fork_lanes(stream<vec<T, PE>>& in, stream<U>& lanes, stream<vec<T, PE>>& words, iter_count iters) {
    static_assert(NELEMS % PE == 0, "fork_lanes: PE must divide the element count");
    vec<T, PE> word = {};
    for (unsigned i = 0; i < NELEMS; ++i) {
#pragma HLS PIPELINE II=1
        if (i % PE == 0) {
            word = in.read();
            words.write(word);
        }
        lanes.write(U(word[i % PE]));
        GSB_COUNT_ITER(iters);
    }
}

}  // namespace gsb

#endif  // GSB_STREAM_OPS_HPP
