/**
 * mvau_tb.cpp: C-simulation testbench of gsb::mvau.
 *
 * config.h (generated, or -D defines) sets CFG_MW, CFG_MH, CFG_SIMD, CFG_PE and
 *   CFG_MODE    XnorMode | AndMode
 *   CFG_POLICY  GSB_THRESHOLD | GSB_TWO_SIDED | GSB_REQUANT | GSB_RAW
 * Files in DIR (argv[1]):
 *   in.npy        uint64 [reps, ceil(MW/64)]   input vectors, conventions packing
 *   weights.npy   uint64 [PE, TILES, ceil(SIMD/64)]  FINN tile layout, SIMD-bit words
 *                 split into little-endian 64-bit chunks (see gsb/mvau.hpp)
 *   thr.npy       int32 [MH]                    GSB_THRESHOLD
 *   lo.npy hi.npy int32 [MH]                    GSB_TWO_SIDED
 *   requant.npy   int64 [2] = (mult, shift), bias.npy int64 [MH]   GSB_REQUANT
 *   expected.npy  [reps, MH]: uint8 bits (threshold kinds) or int32 (requant, raw)
 * The output words are unpacked to [reps, MH] in row order and compared with
 * expected.npy under the name `out`.
 */
#include <cstdint>
#include <string>
#include <vector>

#include "config.h"
#include "gsb/mvau.hpp"
#include "tb_util.hpp"

#define GSB_THRESHOLD 1
#define GSB_TWO_SIDED 2
#define GSB_REQUANT 3
#define GSB_RAW 4

#if !defined(CFG_MW) || !defined(CFG_MH) || !defined(CFG_SIMD) || !defined(CFG_PE) || !defined(CFG_MODE) || \
    !defined(CFG_POLICY)
#error "config.h must define CFG_MW, CFG_MH, CFG_SIMD, CFG_PE, CFG_MODE and CFG_POLICY"
#endif

const unsigned MW = CFG_MW, MH = CFG_MH, SIMD = CFG_SIMD, PE = CFG_PE;
typedef gsb::CFG_MODE mode_type;

using namespace gsb;
typedef mvau_shape<MW, MH, SIMD, PE> shape;
const unsigned CHUNKS = ceil_div(SIMD, 64);  // uint64 chunks per SIMD word
const unsigned IN_WORDS = ceil_div(MW, 64);  // uint64 words per packed input vector

#if CFG_POLICY == GSB_THRESHOLD
typedef ThresholdPolicy<MH, PE> policy_t;
typedef uint8_t expected_t;
static void load_policy(policy_t& p, const std::string& dir) {
    const npy::array<int32_t> thr = npy::load<int32_t>(tb::path(dir, "thr.npy"), {MH});
    for (unsigned r = 0; r < MH; ++r) p.thr[r] = thr[r];
}
#elif CFG_POLICY == GSB_TWO_SIDED
typedef TwoSidedThresholdPolicy<MH, PE> policy_t;
typedef uint8_t expected_t;
static void load_policy(policy_t& p, const std::string& dir) {
    const npy::array<int32_t> lo = npy::load<int32_t>(tb::path(dir, "lo.npy"), {MH});
    const npy::array<int32_t> hi = npy::load<int32_t>(tb::path(dir, "hi.npy"), {MH});
    for (unsigned r = 0; r < MH; ++r) {
        p.lo[r] = lo[r];
        p.hi[r] = hi[r];
    }
}
#elif CFG_POLICY == GSB_REQUANT
typedef RequantPolicy<MH, PE> policy_t;
typedef int32_t expected_t;
static void load_policy(policy_t& p, const std::string& dir) {
    const npy::array<int64_t> ms = npy::load<int64_t>(tb::path(dir, "requant.npy"), {2});
    const npy::array<int64_t> bias = npy::load<int64_t>(tb::path(dir, "bias.npy"), {MH});
    GSB_CHECK(ms[0] >= INT32_MIN && ms[0] <= INT32_MAX, "requant.npy: mult " << ms[0] << " does not fit int32");
    GSB_CHECK(ms[1] >= 0 && ms[1] <= 61, "requant.npy: shift " << ms[1] << " outside 0..61");
    p.mult = int32_t(ms[0]);
    p.shift = uint32_t(ms[1]);
    for (unsigned r = 0; r < MH; ++r) p.bias[r] = bias[r];
}
#elif CFG_POLICY == GSB_RAW
typedef RawPolicy<MH, PE> policy_t;
typedef int32_t expected_t;
static void load_policy(policy_t&, const std::string&) {}
#else
#error "CFG_POLICY must be GSB_THRESHOLD, GSB_TWO_SIDED, GSB_REQUANT or GSB_RAW"
#endif

/** Lane `pe` of an output word, as an integer. */
inline long long lane(const ap_uint<PE>& word, unsigned pe) { return word[pe] ? 1 : 0; }
inline long long lane(const vec<int32_t, PE>& word, unsigned pe) { return word[pe]; }

static ap_uint<SIMD> weights[PE][shape::TILES];
static policy_t policy;

static int body(const std::string& dir) {
    const npy::array<uint64_t> in = npy::load<uint64_t>(tb::path(dir, "in.npy"));
    GSB_CHECK(in.shape.size() == 2 && in.shape[1] == IN_WORDS,
              "in.npy: shape " << npy::shape_str(in.shape) << ", expected (reps, " << IN_WORDS << ")");
    const unsigned reps = unsigned(in.shape[0]);
    const npy::array<uint64_t> w = npy::load<uint64_t>(tb::path(dir, "weights.npy"), {PE, shape::TILES, CHUNKS});
    const npy::array<expected_t> expected = npy::load<expected_t>(tb::path(dir, "expected.npy"), {reps, MH});
    for (unsigned pe = 0; pe < PE; ++pe)
        for (unsigned t = 0; t < shape::TILES; ++t)
            weights[pe][t] = tb::from_chunks<SIMD>(&w[(pe * shape::TILES + t) * CHUNKS], "weights.npy");
    load_policy(policy, dir);

    stream<ap_uint<SIMD>> s_in("mvau.in");
    stream<policy_t::out_t> s_out("mvau.out");
    for (unsigned r = 0; r < reps; ++r)
        for (unsigned sf = 0; sf < shape::SF; ++sf) s_in.write(tb::simd_word<SIMD>(&in[r * IN_WORDS], MW, sf));

    unsigned long iters = 0;
    mvau<MW, MH, SIMD, PE, mode_type>(s_in, s_out, weights, policy, reps, iters);
    tb::expect_drained(s_in);

    std::vector<long long> got;
    for (unsigned r = 0; r < reps; ++r)
        for (unsigned nf = 0; nf < shape::NF; ++nf) {
            const policy_t::out_t word = s_out.read();
            for (unsigned pe = 0; pe < PE; ++pe) got.push_back(lane(word, pe));
        }
    tb::expect_drained(s_out);
    return tb::finish(tb::compare("out", got, expected.data), iters);
}

int main(int argc, char** argv) { return tb::run(argc, argv, body); }
