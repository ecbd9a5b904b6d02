/**
 * gsb/kernels.hpp: every synthesizable kernel of the library, for generated top functions.
 * (gsb/npy.hpp is a testbench helper and deliberately not included.)
 */
#ifndef GSB_KERNELS_HPP
#define GSB_KERNELS_HPP

#include "gsb/activations.hpp"
#include "gsb/argmax.hpp"
#include "gsb/binary_ops.hpp"
#include "gsb/common.hpp"
#include "gsb/mvau.hpp"
#include "gsb/residual.hpp"
#include "gsb/stream.hpp"

#endif  // GSB_KERNELS_HPP
