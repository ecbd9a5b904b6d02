/**
 * gsb/mvau.hpp: the binary matrix-vector-activation unit (FINN's MVAU).
 *
 * Computes, for each of `reps` input vectors x (MW binary elements), the MH dot
 * products with the rows of a binary weight matrix, and passes each through an
 * activation policy (gsb/mvau_policies.hpp).  The dot product mode
 * (gsb/binary_ops.hpp) says how bits are interpreted.
 *
 * Folding (FINN layout): PE output lanes and SIMD input lanes.
 *   SF = ceil(MW / SIMD) synapse folds, NF = MH / PE neuron folds, TILES = NF * SF.
 *   Output row r is computed by lane pe = r % PE in fold nf = r / PE.
 *   weights[pe][nf * SF + sf] bit i = W[nf * PE + pe][sf * SIMD + i]   (LSB first).
 *   Input word sf of a vector holds x[sf * SIMD + i] in bit i.
 *   If MW % SIMD != 0 the last word is zero-padded, in inputs and weights alike
 *   (C-simulation checks that the pad bits are 0).
 *
 * Streams: `in` carries SF words per vector (each read once; the vector is
 * buffered and reused for the NF folds); `out` carries one word per neuron fold,
 * holding the PE results of rows nf*PE .. nf*PE+PE-1 (Policy::out_t), so NF words
 * per vector, in row order.
 *
 * Lane width: a word carries SIMD lanes of Mode::lane_bits bits each: 1 for the
 * binary modes (XnorMode, AndMode: ap_uint<SIMD>), 8 for Int8Mode (gsb/int8_ops.hpp:
 * ap_uint<8*SIMD>, lane i in bits 8i..8i+7, two's complement).  Pads are zero lanes.
 *
 * Timing: one flattened loop of reps * NF * SF iterations at II=1, i.e. FINN's
 * (MH/PE) * ceil(MW/SIMD) cycles per vector.  In C-simulation `iters` is
 * incremented once per executed iteration (it accumulates; zero it first).
 */
#ifndef GSB_MVAU_HPP
#define GSB_MVAU_HPP

#include <ap_int.h>

#include <cstdint>

#include "gsb/mvau_policies.hpp"
#include "gsb/binary_ops.hpp"
#include "gsb/common.hpp"
#include "gsb/stream.hpp"
#include "gsb/weights.hpp"

namespace gsb {

/** Compile-time folding of an MVAU; shared by the kernel, testbenches and generated code. */
template <unsigned MW, unsigned MH, unsigned SIMD, unsigned PE>
struct mvau_shape {
    static const unsigned SF = ceil_div(MW, SIMD);
    static const unsigned NF = MH / PE;
    static const unsigned TILES = NF * SF;
    static const unsigned PAD = SF * SIMD - MW;  // zero bits at the top of the last word
    static const unsigned long CYCLES_PER_VECTOR = (unsigned long)NF * SF;
    // where element (row r, column c) of the matrix lives: weights[lane(r)][tile(r, c)] bit bit(c)
    static unsigned lane(unsigned r) { return r % PE; }
    static unsigned tile(unsigned r, unsigned c) { return (r / PE) * SF + c / SIMD; }
    static unsigned bit(unsigned c) { return c % SIMD; }
};

/**
 * weights: [PE][TILES] words (an array of ap_uint<lane_bits*SIMD>, of uint64_t, or of
 * uint64_t[CHUNKS] for words above 64 bits: gsb/weights.hpp).
 */
template <unsigned MW, unsigned MH, unsigned SIMD, unsigned PE, typename Mode, typename Policy, typename Weights>
void mvau(stream<ap_uint<Mode::lane_bits * SIMD>>& in, stream<typename Policy::out_t>& out, const Weights& weights,
          const Policy& act, unsigned reps, iter_count iters) {
    typedef mvau_shape<MW, MH, SIMD, PE> shape;
    typedef ap_uint<Mode::lane_bits * SIMD> word_t;
    static_assert(sizeof(Weights) == sizeof(weights[0][0]) * PE * shape::TILES,
                  "mvau: weights must be an array [PE][TILES] of words");
    const unsigned PAD_SHIFT = Mode::lane_bits * (SIMD - shape::PAD);  // first pad bit of the last word
    (void)PAD_SHIFT;  // only read by the C-simulation checks
    // (they compare with word_t(0), never with a plain 0: `ap_uint == int` builds a signed
    //  ap_int<32> whose default constructor shifts uninitialised storage, undefined behaviour)
    static_assert(MW > 0 && MH > 0 && SIMD > 0 && PE > 0, "mvau: empty shape");
    static_assert(MH % PE == 0, "mvau: MH must be a multiple of PE");
    static_assert(MW < (1u << 24), "mvau: MW must be below 2^24 (int32 dot products)");
    static_assert(Policy::rows == MH, "mvau: policy built for a different MH");
    static_assert(Policy::lanes == PE, "mvau: policy built for a different PE");
    const unsigned SF = shape::SF, NF = shape::NF;

    word_t input_buf[SF];
    typename Mode::template acc<MW> acc[PE];
#pragma HLS ARRAY_PARTITION variable=acc complete dim=1
    unsigned nf = 0, sf = 0, tile = 0;
    const unsigned long total = (unsigned long)reps * NF * SF;

    for (unsigned long i = 0; i < total; ++i) {
#pragma HLS PIPELINE II=1
        word_t x;
        if (nf == 0) {
            x = in.read();
            GSB_CHECK(shape::PAD == 0 || sf != SF - 1 || (x >> PAD_SHIFT) == word_t(0),
                      "mvau: input '" << in.name() << "' has non-zero pad bits above MW=" << MW);
            input_buf[sf] = x;
        } else {
            x = input_buf[sf];
        }
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            if (sf == 0) Mode::clear(acc[pe]);
            const word_t w = to_word<Mode::lane_bits * SIMD>(weights[pe][tile]);
            GSB_CHECK(shape::PAD == 0 || sf != SF - 1 || (w >> PAD_SHIFT) == word_t(0),
                      "mvau: weights[" << pe << "][" << tile << "] has non-zero pad bits above MW=" << MW);
            Mode::template accumulate<MW, SIMD>(acc[pe], x, w);
        }
        if (sf == SF - 1) {
            int32_t dot[PE];
#pragma HLS ARRAY_PARTITION variable=dot complete
            for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
                dot[pe] = Mode::dot(acc[pe]);
            }
            out.write(act.activate(nf, dot));
        }
        GSB_COUNT_ITER(iters);
        ++tile;
        if (++sf == SF) {
            sf = 0;
            if (++nf == NF) {
                nf = 0;
                tile = 0;
            }
        }
    }
}

}  // namespace gsb

#endif  // GSB_MVAU_HPP
