/**
 * residual_tb.cpp: C-simulation testbench of gsb::residual_add.
 *
 * config.h sets CFG_N (elements per vector) and CFG_PE (elements per stream word).
 * Files in DIR (argv[1]):
 *   a.npy, b.npy  int32 [reps, N]
 *   expected.npy  int32 [reps, N]   a + b
 */
#include <cstdint>
#include <string>
#include <vector>

#include "config.h"
#include "gsb/residual.hpp"
#include "tb_util.hpp"

#if !defined(CFG_N) || !defined(CFG_PE)
#error "config.h must define CFG_N and CFG_PE"
#endif

using namespace gsb;
const unsigned N = CFG_N, PE = CFG_PE;
typedef vec<int32_t, PE> word_t;

/** Stream the rows of a [reps, N] array as N / PE words of PE lanes. */
static void fill(stream<word_t>& s, const npy::array<int32_t>& x, unsigned reps) {
    for (unsigned r = 0; r < reps; ++r)
        for (unsigned f = 0; f < N / PE; ++f) {
            word_t word;
            for (unsigned pe = 0; pe < PE; ++pe) word[pe] = x[r * N + f * PE + pe];
            s.write(word);
        }
}

static int body(const std::string& dir) {
    const npy::array<int32_t> a = npy::load<int32_t>(tb::path(dir, "a.npy"));
    GSB_CHECK(a.shape.size() == 2 && a.shape[1] == N,
              "a.npy: shape " << npy::shape_str(a.shape) << ", expected (reps, " << N << ")");
    const unsigned reps = unsigned(a.shape[0]);
    const npy::array<int32_t> b = npy::load<int32_t>(tb::path(dir, "b.npy"), {reps, N});
    const npy::array<int32_t> expected = npy::load<int32_t>(tb::path(dir, "expected.npy"), {reps, N});

    stream<word_t> s_a("residual.a"), s_b("residual.b"), s_out("residual.out");
    fill(s_a, a, reps);
    fill(s_b, b, reps);
    unsigned long iters = 0;
    residual_add<N, PE>(s_a, s_b, s_out, reps, iters);
    tb::expect_drained(s_a);
    tb::expect_drained(s_b);

    std::vector<int32_t> got;
    for (unsigned i = 0; i < reps * (N / PE); ++i) {
        const word_t word = s_out.read();
        for (unsigned pe = 0; pe < PE; ++pe) got.push_back(word[pe]);
    }
    tb::expect_drained(s_out);
    return tb::finish(tb::compare("out", got, expected.data), iters);
}

int main(int argc, char** argv) { return tb::run(argc, argv, body); }
