/**
 * gsb/common.hpp: compile-time arithmetic, a fixed-size lane vector, and the
 * C-simulation-only checks and iteration counters every kernel uses.
 *
 * Everything under `#ifdef GSB_CSIM` exists only in C-simulation (g++):
 * it makes a violated precondition fail loudly instead of producing garbage,
 * and it counts pipelined loop iterations so gsbsim's cycle model can be
 * checked against the kernels.  HLS tools define __SYNTHESIS__ and see none of it.
 */
#ifndef GSB_COMMON_HPP
#define GSB_COMMON_HPP

/*
 * GSB_CSIM: gsbsim's own C-simulation (g++): bounded-FIFO threads, checks, iteration counters,
 * traces.  Vitis defines __SYNTHESIS__ when it synthesizes; its csim and cosim steps compile
 * with -DGSB_VITIS (vitis.tcl), which selects Vitis' hls::stream and the synthesis code.
 */
#if !defined(__SYNTHESIS__) && !defined(GSB_VITIS)
#define GSB_CSIM 1
#endif

#include <cstdint>

#ifndef __SYNTHESIS__
#include <sstream>
#include <stdexcept>
#include <string>
#endif

namespace gsb {

/** ceil(a / b) for compile-time shape arithmetic (b > 0). */
constexpr unsigned ceil_div(unsigned a, unsigned b) { return (a + b - 1) / b; }

/** ceil(log2(x)), with clog2(0) = clog2(1) = 0. */
constexpr unsigned clog2(unsigned long long x) {
    unsigned n = 0;
    while ((1ULL << n) < x) ++n;
    return n;
}

/** gcd and lcm for compile-time bank counts (a, b > 0). */
constexpr unsigned gcd_u(unsigned a, unsigned b) { return b == 0 ? a : gcd_u(b, a % b); }
constexpr unsigned lcm_u(unsigned a, unsigned b) { return a / gcd_u(a, b) * b; }

/** Bits of an unsigned counter that must hold every value 0..max (at least 1). */
constexpr unsigned count_bits(unsigned long long max) { return max == 0 ? 1 : clog2(max + 1); }

/**
 * PE lanes of one output word (the results of one neuron fold).  An aggregate,
 * so it can be brace-initialised in generated headers and carried by a stream.
 */
template <typename T, unsigned N>
struct vec {
    T v[N];
    T& operator[](unsigned i) { return v[i]; }
    const T& operator[](unsigned i) const { return v[i]; }
};

/**
 * A kernel's iteration counter: in C-simulation it refers to the caller's unsigned long
 * (implicitly made from one), in synthesis it is empty and the generated code passes
 * gsb::iter_count(), so the synthesized signature has no counter port or shared scalar.
 */
#ifdef GSB_CSIM
struct iter_count {
    unsigned long* n;
    iter_count(unsigned long& counter) : n(&counter) {}  // NOLINT: implicit on purpose
};
#else
struct iter_count {};
#endif

#ifndef __SYNTHESIS__
/** The exception every C-simulation check throws (kernel preconditions, streams, .npy I/O). */
struct csim_error : std::runtime_error {
    explicit csim_error(const std::string& what) : std::runtime_error(what) {}
};
#endif

}  // namespace gsb

#ifdef GSB_CSIM
/** Fail loudly in C-simulation when `cond` is false; `msg` is a stream expression. */
#define GSB_CHECK(cond, msg)                                                   \
    do {                                                                       \
        if (!(cond)) {                                                         \
            std::ostringstream gsb_check_os_;                                  \
            gsb_check_os_ << msg;                                              \
            throw ::gsb::csim_error(gsb_check_os_.str());                      \
        }                                                                      \
    } while (0)
/** Count one executed iteration of a pipelined loop (C-simulation only). */
#define GSB_COUNT_ITER(counter) (++*(counter).n)
#else
#define GSB_CHECK(cond, msg) ((void)0)
#define GSB_COUNT_ITER(counter) ((void)0)
#endif

#endif  // GSB_COMMON_HPP
