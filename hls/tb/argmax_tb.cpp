/**
 * argmax_tb.cpp: C-simulation testbench of gsb::argmax.
 *
 * config.h sets CFG_N (logits per vector) and CFG_PE (logits per stream word).
 * Files in DIR (argv[1]):
 *   logits.npy    int32 [reps, N]
 *   expected.npy  int64 [reps]     index of the maximum, ties -> lowest index
 */
#include <cstdint>
#include <string>
#include <vector>

#include "config.h"
#include "gsb/argmax.hpp"
#include "tb_util.hpp"

#if !defined(CFG_N) || !defined(CFG_PE)
#error "config.h must define CFG_N and CFG_PE"
#endif

using namespace gsb;
const unsigned N = CFG_N, PE = CFG_PE;

static int body(const std::string& dir) {
    const npy::array<int32_t> logits = npy::load<int32_t>(tb::path(dir, "logits.npy"));
    GSB_CHECK(logits.shape.size() == 2 && logits.shape[1] == N,
              "logits.npy: shape " << npy::shape_str(logits.shape) << ", expected (reps, " << N << ")");
    const unsigned reps = unsigned(logits.shape[0]);
    const npy::array<int64_t> expected = npy::load<int64_t>(tb::path(dir, "expected.npy"), {reps});

    stream<vec<int32_t, PE>> s_in("argmax.in");
    stream<uint32_t> s_out("argmax.out");
    for (unsigned r = 0; r < reps; ++r)
        for (unsigned f = 0; f < N / PE; ++f) {
            vec<int32_t, PE> word;
            for (unsigned pe = 0; pe < PE; ++pe) word[pe] = logits[r * N + f * PE + pe];
            s_in.write(word);
        }

    unsigned long iters = 0;
    argmax<N, PE, int32_t>(s_in, s_out, reps, iters);
    tb::expect_drained(s_in);

    std::vector<uint32_t> got;
    for (unsigned r = 0; r < reps; ++r) got.push_back(s_out.read());
    tb::expect_drained(s_out);
    return tb::finish(tb::compare("index", got, expected.data), iters);
}

int main(int argc, char** argv) { return tb::run(argc, argv, body); }
