/**
 * npy_stream_tb.cpp: checks of the two testbench foundations, gsb/npy.hpp and gsb/stream.hpp.
 *
 * For each dtype tag T in {i1, u1, i4, i8, u8}: loads DIR/T.npy (written by numpy)
 * and writes it back unchanged as DIR/out_T.npy, which the Python test compares.
 * Then it provokes the errors that must be loud and prints their messages:
 *   EMPTY_READ <message>    reading an empty gsb::stream
 *   DTYPE_ERROR <message>   loading i4.npy as int64
 *   SHAPE_ERROR <message>   loading i4.npy with a wrong expected shape
 * Exit status 0 if every error was raised, 1 otherwise, 2 on an unexpected error.
 */
#include <cstdint>
#include <cstdio>
#include <string>

#include "gsb/npy.hpp"
#include "gsb/stream.hpp"
#include "tb_util.hpp"

using namespace gsb;

template <typename T>
static void round_trip(const std::string& dir, const std::string& tag) {
    const npy::array<T> a = npy::load<T>(tb::path(dir, tag + ".npy"));
    npy::save<T>(tb::path(dir, "out_" + tag + ".npy"), a.data, a.shape);
}

/** Run `f`, which must throw an exception of type E; print `label what()`. */
template <typename E, typename F>
static bool expect_error(const char* label, F f) {
    try {
        f();
    } catch (const E& e) {
        std::printf("%s %s\n", label, e.what());
        return true;
    }
    std::printf("NO_ERROR %s\n", label);
    return false;
}

static int body(const std::string& dir) {
    round_trip<int8_t>(dir, "i1");
    round_trip<uint8_t>(dir, "u1");
    round_trip<int32_t>(dir, "i4");
    round_trip<int64_t>(dir, "i8");
    round_trip<uint64_t>(dir, "u8");

    bool ok = true;
    ok &= expect_error<csim_error>("EMPTY_READ", [] {
        stream<int> s("probe");
        s.write(1);
        s.read();
        s.read();
    });
    ok &= expect_error<npy::error>("DTYPE_ERROR", [&] { npy::load<int64_t>(tb::path(dir, "i4.npy")); });
    ok &= expect_error<npy::error>("SHAPE_ERROR", [&] { npy::load<int32_t>(tb::path(dir, "i4.npy"), {7, 7}); });
    return ok ? 0 : 1;
}

int main(int argc, char** argv) { return tb::run(argc, argv, body); }
