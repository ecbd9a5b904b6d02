/**
 * gsb/binarize.hpp: a binarizing activation on a raw MVAU output, repacked for the next MVAU.
 *
 * The generated model runs its MVAUs with RawPolicy (so the accumulators can be traced in
 * C-simulation) and applies the thresholds here: `act` is any bit-producing policy of
 * gsb/mvau_policies.hpp (ThresholdPolicy, TwoSidedThresholdPolicy) built for MH rows and PE
 * lanes.  Input: MH/PE words of PE int32 lanes per vector; output: ceil(MH/SIMD) words of
 * SIMD bits per vector (bit r % SIMD of word r / SIMD = row r, pad bits 0): the data-width
 * conversion FINN puts between two MVAUs with different PE and SIMD.
 * Timing (elementwise): reps * MH/PE iterations (when PE > SIMD one iteration emits several
 * words; a synthesized version would need II = ceil(PE/SIMD) there).
 */
#ifndef GSB_BINARIZE_HPP
#define GSB_BINARIZE_HPP

#include <ap_int.h>

#include <cstdint>

#include "gsb/common.hpp"
#include "gsb/stream.hpp"

namespace gsb {

template <unsigned MH, unsigned PE, unsigned SIMD, typename Policy>
void activate_bits(stream<vec<int32_t, PE>>& in, stream<ap_uint<SIMD>>& out, const Policy& act, unsigned reps,
                   iter_count iters) {
    static_assert(MH % PE == 0, "activate_bits: PE must divide MH");
    static_assert(Policy::rows == MH && Policy::lanes == PE, "activate_bits: policy built for another shape");
    const unsigned NF = MH / PE;
    ap_uint<SIMD> word = 0;
    unsigned nf = 0;
    for (unsigned long i = 0; i < (unsigned long)reps * NF; ++i) {
#pragma HLS PIPELINE II=1
        const vec<int32_t, PE> acc = in.read();
        int32_t dot[PE];
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            dot[pe] = acc[pe];
        }
        const ap_uint<PE> bits = act.activate(nf, dot);
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            const unsigned r = nf * PE + pe;
            word[r % SIMD] = bits[pe];
            if (r % SIMD == SIMD - 1 || r == MH - 1) {
                out.write(word);
                word = 0;
            }
        }
        GSB_COUNT_ITER(iters);
        if (++nf == NF) nf = 0;
    }
}

}  // namespace gsb

#endif  // GSB_BINARIZE_HPP
