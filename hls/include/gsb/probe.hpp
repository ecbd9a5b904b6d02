/**
 * gsb/probe.hpp: C-simulation traces of a generated top function (never synthesized).
 *
 * hls4ml's trace style: the top function has one signature for C-simulation, synthesis and
 * co-simulation; in C-simulation only (#ifndef __SYNTHESIS__) it records into a global
 * recorder (gsb::recorder()) every traced tensor under its gsbsim trace name
 * (docs/integer_model.md §12), as int64 values in the golden layout of one image (no batch
 * axis), and each process's pipelined-iteration count: matrix layers under the cycle model's
 * layer names (`patch`, `blocks.{i}.qkv`, ..., `head`), other stages under their own names.
 * Stream tensors are read from the stream's history (every value written), so tracing never
 * touches a FIFO.  The testbench clears the recorder before each image and reads it after.
 */
#ifndef GSB_PROBE_HPP
#define GSB_PROBE_HPP

#ifdef __SYNTHESIS__
#error "gsb/probe.hpp is a C-simulation helper and cannot be synthesized"
#endif

#include <ap_int.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "gsb/common.hpp"
#include "gsb/int8_ops.hpp"
#include "gsb/mvau.hpp"
#include "gsb/stream.hpp"

namespace gsb {

struct Probe {
    std::map<std::string, std::vector<int64_t>> tensors;  // trace name -> values, golden C order
    std::map<std::string, unsigned long> layer_iters;     // matrix layer -> pipelined iterations
    std::map<std::string, unsigned long> stage_iters;     // other stage -> iterations

    void put(const std::string& name, std::vector<int64_t> values) { tensors[name] = std::move(values); }
    void layer(const std::string& name, unsigned long n) { layer_iters[name] += n; }
    void stage(const std::string& name, unsigned long n) { stage_iters[name] += n; }
};

/** The global C-simulation recorder the generated top writes into (processes run as threads). */
inline Probe& recorder() {
    static Probe p;
    return p;
}
inline std::mutex& recorder_mutex() {
    static std::mutex m;
    return m;
}
/** The recorded traces of the last run; clears the recorder. */
inline Probe take_recording() {
    std::lock_guard<std::mutex> lk(recorder_mutex());
    Probe out;
    std::swap(out, recorder());
    return out;
}

namespace trace {

inline void put(const std::string& name, std::vector<int64_t> values) {
    std::lock_guard<std::mutex> lk(recorder_mutex());
    recorder().put(name, std::move(values));
}
/** Iterations of one process: a matrix layer of the cycle model (layer = true) or another stage
 *  (a region's own process, which only calls other processes, counts nothing and is left out). */
inline void count(bool layer, const std::string& name, unsigned long n) {
    if (!layer && n == 0) return;
    std::lock_guard<std::mutex> lk(recorder_mutex());
    if (layer)
        recorder().layer(name, n);
    else
        recorder().stage(name, n);
}

/** One value per stream word. */
template <typename T>
std::vector<int64_t> scalars(const stream<T>& s) {
    std::vector<int64_t> out;
    for (const T& v : s.history()) out.push_back(int64_t(v));
    return out;
}

/** PE lanes per stream word, in lane order. */
template <typename T, unsigned PE>
std::vector<int64_t> lanes(const stream<vec<T, PE>>& s) {
    std::vector<int64_t> out;
    for (const vec<T, PE>& w : s.history())
        for (unsigned pe = 0; pe < PE; ++pe) out.push_back(int64_t(w[pe]));
    return out;
}

/** The first k bits of ceil(k/SIMD) consecutive words (bit i of word i/SIMD). */
template <unsigned SIMD>
void append_bits(std::vector<int64_t>& out, const ap_uint<SIMD>* words, unsigned k) {
    for (unsigned i = 0; i < k; ++i) out.push_back(words[i / SIMD][i % SIMD] ? 1 : 0);
}

/** Vectors of k bits, ceil(k/SIMD) words each. */
template <unsigned SIMD>
std::vector<int64_t> bits(const stream<ap_uint<SIMD>>& s, unsigned k) {
    const std::vector<ap_uint<SIMD>> words = s.history();
    const unsigned sf = ceil_div(k, SIMD);
    GSB_CHECK(words.size() % sf == 0, "trace: stream '" << s.name() << "' holds " << words.size()
                                                         << " words, not a whole number of vectors");
    std::vector<int64_t> out;
    for (std::size_t v = 0; v < words.size(); v += sf) append_bits<SIMD>(out, &words[v], k);
    return out;
}

/** Vectors of k int8 lanes, ceil(k/SIMD) words of SIMD lanes each. */
template <unsigned SIMD>
std::vector<int64_t> int8_lanes(const stream<ap_uint<8 * SIMD>>& s, unsigned k) {
    const std::vector<ap_uint<8 * SIMD>> words = s.history();
    const unsigned sf = ceil_div(k, SIMD);
    std::vector<int64_t> out;
    for (std::size_t v = 0; v + sf <= words.size(); v += sf)
        for (unsigned i = 0; i < k; ++i) out.push_back(int8_lane(words[v + i / SIMD], i % SIMD));
    return out;
}

/** A C-order array of n values. */
template <typename T>
std::vector<int64_t> flat(const T* data, std::size_t n) {
    std::vector<int64_t> out(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = int64_t(data[i]);
    return out;
}

/** Rows of bits: rows[r][sf] words, the first k bits of each row. */
template <unsigned SIMD, unsigned SF>
std::vector<int64_t> bit_rows(const ap_uint<SIMD> (*rows)[SF], std::size_t n_rows, unsigned k) {
    std::vector<int64_t> out;
    for (std::size_t r = 0; r < n_rows; ++r) append_bits<SIMD>(out, rows[r], k);
    return out;
}

/**
 * Matrices stored as FINN weight tiles (mvau_shape<MW, MH, SIMD, PE>), `count` of them
 * back to back, unpacked to [count][MH][MW] (transposed = false) or [count][MW][MH] (true).
 */
template <unsigned MW, unsigned MH, unsigned SIMD, unsigned PE>
std::vector<int64_t> tiles(const ap_uint<SIMD> (*t)[mvau_shape<MW, MH, SIMD, PE>::TILES], std::size_t count,
                           bool transposed) {
    typedef mvau_shape<MW, MH, SIMD, PE> shape;
    std::vector<int64_t> out;
    for (std::size_t m = 0; m < count; ++m) {
        const ap_uint<SIMD>(*lane)[shape::TILES] = t + m * PE;
        const unsigned outer = transposed ? MW : MH, inner = transposed ? MH : MW;
        for (unsigned a = 0; a < outer; ++a)
            for (unsigned b = 0; b < inner; ++b) {
                const unsigned r = transposed ? b : a, c = transposed ? a : b;
                out.push_back(lane[shape::lane(r)][shape::tile(r, c)][shape::bit(c)] ? 1 : 0);
            }
    }
    return out;
}

}  // namespace trace
}  // namespace gsb

#endif  // GSB_PROBE_HPP
