/**
 * tb_util.hpp: what every kernel testbench shares.
 *
 * Conventions of the testbenches in this directory:
 *   usage: <kernel>_tb DIR           DIR holds the inputs and expected outputs as .npy
 *   prints `MISMATCH <name>[<flat index>]: got X expected Y` for the first mismatch
 *   of each compared array, then `ITERS <n>` (pipelined iterations, C-sim count),
 *   then `PASS` or `FAIL <k> mismatches`; exits 0 on pass, 1 on mismatch and 2 on
 *   an error (bad input file, stream misuse, violated kernel precondition).
 * A testbench of several kernels (usage: <tb> KERNEL DIR) writes its outputs to DIR and prints
 * only `ITERS <n>`; its main() is run_kernel below.
 */
#ifndef GSB_TB_UTIL_HPP
#define GSB_TB_UTIL_HPP

#include <ap_int.h>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "gsb/common.hpp"
#include "gsb/npy.hpp"
#include "gsb/stream.hpp"

namespace gsb {
namespace tb {

inline std::string path(const std::string& dir, const std::string& name) { return dir + "/" + name; }

/** Bit `bit` of a row of conventions-packed uint64 words (LSB first). */
inline unsigned packed_bit(const uint64_t* words, unsigned bit) { return unsigned((words[bit / 64] >> (bit % 64)) & 1u); }

/**
 * Word `sf` of SIMD bits cut from a conventions-packed row of K elements:
 * bit i = element sf*SIMD + i, zero beyond K.
 */
template <unsigned SIMD>
ap_uint<SIMD> simd_word(const uint64_t* packed_row, unsigned k, unsigned sf) {
    ap_uint<SIMD> w = 0;
    for (unsigned i = 0; i < SIMD; ++i) {
        const unsigned e = sf * SIMD + i;
        if (e < k && packed_bit(packed_row, e)) w[i] = 1;
    }
    return w;
}

/** An ap_uint<W> from ceil(W/64) little-endian uint64 chunks; bits above W must be 0. */
template <unsigned W>
ap_uint<W> from_chunks(const uint64_t* chunks, const std::string& what) {
    ap_uint<W> w = 0;
    for (unsigned c = 0; c * 64 < W; ++c) {
        const unsigned width = (W - c * 64 < 64) ? W - c * 64 : 64;
        GSB_CHECK(width == 64 || (chunks[c] >> width) == 0,
                  what << ": chunk " << c << " has bits set above width " << W);
        w.range(c * 64 + width - 1, c * 64) = chunks[c];
    }
    return w;
}

/**
 * Compare two equally long arrays; print the first mismatch as
 * `MISMATCH name[i]: got X expected Y`; return the number of mismatches.
 */
template <typename A, typename B>
std::size_t compare(const std::string& name, const std::vector<A>& got, const std::vector<B>& expected) {
    GSB_CHECK(got.size() == expected.size(),
              name << ": kernel produced " << got.size() << " values, expected " << expected.size());
    std::size_t bad = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        if ((long long)got[i] != (long long)expected[i]) {
            if (bad == 0)
                std::printf("MISMATCH %s[%zu]: got %lld expected %lld\n", name.c_str(), i, (long long)got[i],
                            (long long)expected[i]);
            ++bad;
        }
    }
    return bad;
}

/** Throw if a stream still holds data after the kernel ran (it consumed too little). */
template <typename T>
void expect_drained(const stream<T>& s) {
    GSB_CHECK(s.empty(), "stream '" << s.name() << "' still holds " << s.size() << " elements after the kernel");
}

/** Print the summary lines and turn the mismatch count into the exit status. */
inline int finish(std::size_t mismatches, unsigned long iters) {
    std::printf("ITERS %lu\n", iters);
    if (mismatches) {
        std::printf("FAIL %zu mismatches\n", mismatches);
        return 1;
    }
    std::printf("PASS\n");
    return 0;
}

/** Run a testbench body `int body(const std::string& dir)`, turning exceptions into exit 2. */
template <typename Body>
int run(int argc, char** argv, Body body) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR   (DIR holds the .npy inputs and expected outputs)\n", argv[0]);
        return 2;
    }
    try {
        return body(std::string(argv[1]));
    } catch (const std::exception& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "ERROR: %s\n", e.what());
        return 2;
    }
}

/** One kernel of a multi-kernel testbench: its name on the command line and the function that runs it. */
struct Kernel {
    const char* name;
    void (*run)();
};

/**
 * main() of a testbench holding several kernels (usage: <tb> KERNEL DIR): set `dir` to DIR, run
 * the kernel of `table` named KERNEL and print `ITERS <iters>` (the count it added to `iters`);
 * exit 0, or 2 with the message on stderr (bad usage, unknown kernel, an exception from the kernel).
 */
template <std::size_t K>
int run_kernel(int argc, char** argv, const Kernel (&table)[K], std::string& dir, const unsigned long& iters) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s KERNEL DIR\n", argv[0]);
        return 2;
    }
    const std::string kernel = argv[1];
    dir = argv[2];
    try {
        for (const Kernel& k : table)
            if (kernel == k.name) {
                k.run();
                std::printf("ITERS %lu\n", iters);
                return 0;
            }
        throw std::runtime_error("unknown kernel " + kernel);
    } catch (const std::exception& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "ERROR: %s\n", e.what());
        return 2;
    }
}

}  // namespace tb
}  // namespace gsb

#endif  // GSB_TB_UTIL_HPP
