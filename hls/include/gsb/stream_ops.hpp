/**
 * gsb/stream_ops.hpp: plumbing between kernels.
 *
 *   fork   copy one stream into two (the residual stream feeds a LayerNorm and the
 *          residual add of the same block).  Timing: n iterations.
 */
#ifndef GSB_STREAM_OPS_HPP
#define GSB_STREAM_OPS_HPP

#include "gsb/common.hpp"
#include "gsb/stream.hpp"

namespace gsb {

template <typename T>
void fork(stream<T>& in, stream<T>& a, stream<T>& b, unsigned long n, unsigned long& iters) {
    for (unsigned long i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
        const T v = in.read();
        a.write(v);
        b.write(v);
        GSB_COUNT_ITER(iters);
    }
}

}  // namespace gsb

#endif  // GSB_STREAM_OPS_HPP
