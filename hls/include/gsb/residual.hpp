/**
 * gsb/residual.hpp: the residual connection, an elementwise int32 add of two streams.
 *
 * Both inputs and the output carry N / PE words of PE int32 lanes per vector
 * (the RequantPolicy layout of mvau).  The int32 result must not overflow:
 * the integer model is exported so that it cannot, and C-simulation checks it.
 * Timing: reps * N / PE iterations at II=1; `iters` counts them in C-simulation.
 */
#ifndef GSB_RESIDUAL_HPP
#define GSB_RESIDUAL_HPP

#include <cstdint>

#include "gsb/common.hpp"
#include "gsb/stream.hpp"

namespace gsb {

template <unsigned N, unsigned PE>
void residual_add(stream<vec<int32_t, PE>>& a, stream<vec<int32_t, PE>>& b,
                  stream<vec<int32_t, PE>>& out, unsigned reps, unsigned long& iters) {
    static_assert(N > 0 && PE > 0, "residual_add: empty shape");
    static_assert(N % PE == 0, "residual_add: N must be a multiple of PE");
    const unsigned long total = (unsigned long)reps * (N / PE);

    for (unsigned long i = 0; i < total; ++i) {
#pragma HLS PIPELINE II=1
        const vec<int32_t, PE> x = a.read();
        const vec<int32_t, PE> y = b.read();
        vec<int32_t, PE> sum;
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            const int64_t s = int64_t(x[pe]) + int64_t(y[pe]);
            GSB_CHECK(s >= INT32_MIN && s <= INT32_MAX,
                      "residual_add: " << x[pe] << " + " << y[pe] << " overflows int32 (word "
                                       << i << ", lane " << pe << ")");
            sum[pe] = int32_t(s);
        }
        out.write(sum);
        GSB_COUNT_ITER(iters);
    }
}

}  // namespace gsb

#endif  // GSB_RESIDUAL_HPP
