/**
 * gsb/kernels.hpp: every synthesizable kernel of the library, for generated top functions.
 * (gsb/npy.hpp and gsb/probe.hpp are C-simulation helpers and deliberately not included.)
 */
#ifndef GSB_KERNELS_HPP
#define GSB_KERNELS_HPP

#include "gsb/act_unit.hpp"
#include "gsb/binarize.hpp"
#include "gsb/mvau_policies.hpp"
#include "gsb/argmax.hpp"
#include "gsb/attention_planes.hpp"
#include "gsb/attention_qk.hpp"
#include "gsb/binary_ops.hpp"
#include "gsb/common.hpp"
#include "gsb/diba.hpp"
#include "gsb/embed.hpp"
#include "gsb/gsb_av.hpp"
#include "gsb/haar.hpp"
#include "gsb/head.hpp"
#include "gsb/hfsc.hpp"
#include "gsb/int8_ops.hpp"
#include "gsb/layernorm.hpp"
#include "gsb/mvau.hpp"
#include "gsb/qkv_split.hpp"
#include "gsb/requant.hpp"
#include "gsb/residual.hpp"
#include "gsb/softmax.hpp"
#include "gsb/stream.hpp"
#include "gsb/stream_ops.hpp"
#include "gsb/value_planes.hpp"
#include "gsb/weights.hpp"

#endif  // GSB_KERNELS_HPP
