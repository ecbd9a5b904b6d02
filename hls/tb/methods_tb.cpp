/**
 * methods_tb.cpp: C-simulation testbench of the `reactnet` / `didb` kernels
 * (docs/integer_model.md §13), one kernel per run, in the style of vit_kernels_tb.cpp.
 *
 * usage: methods_tb KERNEL DIR
 * Reads DIR/<name>.npy, runs the kernel through gsb::streams, writes DIR/out_<name>.npy (int64)
 * and prints `ITERS <n>`; exit 0, or 2 with the message on stderr (a range check, a bad file).
 * tests/test_hls_methods.py computes the expected values with numpy from the spec.
 *
 * config.h: CFG_E, CFG_H, CFG_GRID (N = GRID^2 + 2), CFG_ACT_PE (PE of the act unit on 3E
 * channels), CFG_QK_SIMD, CFG_QK_PE (divides N), CFG_AV_SIMD, CFG_AV_PE (divides d), CFG_SM_EPC
 * (softmax elements per cycle, divides N), CFG_U
 * (len(exp_hi)).  Kernels (inputs -> outputs):
 *   act     acc[N][3E] int32, bias, slope, out [3E], tok_in, tok_out [N] int64, p = (mult, shift, slope shift)
 *                                                        -> z[N][3E]
 *   act_residual  x[N][E] int32, z[N][E] int32             -> out[N][E]   (residual_add_lanes)
 *   haar    z[N][3E] int32, v_offset, q_low, q_high, k_low, k_high [E] int64
 *           -> s4[N][2E], qlow, qhigh, klow, khigh [H][N][D], vq[H][N][D]
 *   exp3    m[K] int64, exp_hi[U], exp_mid[256], exp_lo[256], p = (prob)  -> e[K]
 *   hfsc    low, high [H][N][N] int32, w[2][H], exp_hi[U], exp_mid, exp_lo [256], bias[H][N][N] int32,
 *           p = (prob, recip)                               -> s[H][N][N], a[H][N][N]
 *   diba    ap[H][N][N], vp[H][N][D] uint8, local[H], p = (scale, vscale)  -> ctx[N][E], lap[N][E]
 *           (ctx: diba_fork, gsb_av with G = 1 on its copies, then diba_context; ITERS counts
 *           diba_fork and diba_context)
 */
#include <cstdint>
#include <string>
#include <vector>

#include "config.h"
#include "gsb/kernels.hpp"
#include "gsb/npy.hpp"
#include "gsb/probe.hpp"
#include "tb_util.hpp"

using namespace gsb;

const unsigned E = CFG_E, H = CFG_H, D = CFG_E / CFG_H, GRID = CFG_GRID, N = CFG_GRID * CFG_GRID + 2, U = CFG_U;
const unsigned ACT_PE = CFG_ACT_PE, QK_SIMD = CFG_QK_SIMD, QK_PE = CFG_QK_PE, AV_SIMD = CFG_AV_SIMD,
               AV_PE = CFG_AV_PE;
typedef mvau_shape<D, N, QK_SIMD, QK_PE> qk_shape;
typedef mvau_shape<N, D, AV_SIMD, AV_PE> av_shape;

namespace {

std::string dir_;
unsigned long iters_ = 0;

template <typename T>
std::vector<T> in(const char* name, const std::vector<std::size_t>& shape) {
    return npy::load<T>(dir_ + "/" + name + ".npy", shape).data;
}

void out(const char* name, const std::vector<int64_t>& values, const std::vector<std::size_t>& shape) {
    npy::save<int64_t>(dir_ + "/out_" + name + ".npy", values, shape);
}

template <unsigned PE, typename T>
void to_words(const std::vector<T>& v, stream<vec<T, PE>>& s) {
    for (std::size_t i = 0; i < v.size(); i += PE) {
        vec<T, PE> w;
        for (unsigned pe = 0; pe < PE; ++pe) w[pe] = v[i + pe];
        s.write(w);
    }
}

// ---------------------------------------------------------------------------- §13.1
void k_act() {
    static ActUnit<3 * E, N> p;
    const std::vector<int32_t> acc = in<int32_t>("acc", {N, 3 * E});
    const std::vector<int64_t> bias = in<int64_t>("bias", {3 * E}), slope = in<int64_t>("slope", {3 * E});
    const std::vector<int64_t> off = in<int64_t>("out", {3 * E}), prm = in<int64_t>("p", {3});
    const std::vector<int64_t> tin = in<int64_t>("tok_in", {N}), tout = in<int64_t>("tok_out", {N});
    p.mult = prm[0];
    p.slope_shift = prm[2];
    for (unsigned o = 0; o < 3 * E; ++o) {
        p.bias[o] = bias[o];
        p.slope[o] = slope[o];
        p.out[o] = off[o];
    }
    for (unsigned n = 0; n < N; ++n) {
        p.tok_in[n] = tin[n];
        p.tok_out[n] = tout[n];
    }
    stream<vec<int32_t, ACT_PE>> s_acc("acc"), s_z("z");
    to_words<ACT_PE>(acc, s_acc);
    act_unit<3 * E, N, ACT_PE, E>(s_acc, s_z, p, unsigned(prm[1]), N, "blocks.0.qkv.act", iters_);
    out("z", trace::lanes(s_z), {N, 3 * E});
}

void k_act_residual() {
    const std::vector<int32_t> x = in<int32_t>("x", {N, E}), z = in<int32_t>("z", {N, E});
    stream<int32_t> s_x("x"), s_out("out");
    stream<vec<int32_t, QK_SIMD>> s_z("z");
    for (int32_t v : x) s_x.write(v);
    to_words<QK_SIMD>(z, s_z);
    residual_add_lanes<E, QK_SIMD>(s_x, s_z, s_out, N, "blocks.0.proj", iters_);
    out("out", trace::scalars(s_out), {N, E});
}

// ---------------------------------------------------------------------------- §13.2
static int32_t zqk[N][2 * E];
static int64_t vq[H][N][D];
static ap_uint<QK_SIMD> q_rows[2][H][N][qk_shape::SF];
static ap_uint<QK_SIMD> k_tiles[2][H][QK_PE][qk_shape::TILES];

void k_haar() {
    const std::vector<int32_t> z = in<int32_t>("z", {N, 3 * E});
    const std::vector<int64_t> v_offset = in<int64_t>("v_offset", {E});
    const std::vector<int64_t> ql = in<int64_t>("q_low", {E}), qh = in<int64_t>("q_high", {E});
    const std::vector<int64_t> kl = in<int64_t>("k_low", {E}), kh = in<int64_t>("k_high", {E});
    stream<vec<int32_t, ACT_PE>> s_z("z");
    to_words<ACT_PE>(z, s_z);
    qkv_z_split<E, H, N, ACT_PE>(s_z, v_offset.data(), zqk, vq, iters_);
    haar_qk<E, H, N, GRID, QK_SIMD, QK_PE>(zqk, ql.data(), qh.data(), kl.data(), kh.data(), q_rows, k_tiles, iters_);
    std::vector<int64_t> s4;
    for (unsigned n = 0; n < N; ++n)
        for (unsigned o = 0; o < 2 * E; ++o) s4.push_back(haar_s4<N, 2 * E, GRID>(zqk, n, o));
    out("s4", s4, {N, 2 * E});
    out("qlow", trace::bit_rows<QK_SIMD, qk_shape::SF>(&q_rows[0][0][0], H * N, D), {H, N, D});
    out("qhigh", trace::bit_rows<QK_SIMD, qk_shape::SF>(&q_rows[1][0][0], H * N, D), {H, N, D});
    out("klow", trace::tiles<D, N, QK_SIMD, QK_PE>(&k_tiles[0][0][0], H, false), {H, N, D});
    out("khigh", trace::tiles<D, N, QK_SIMD, QK_PE>(&k_tiles[1][0][0], H, false), {H, N, D});
    out("vq", trace::flat(&vq[0][0][0], H * N * D), {H, N, D});
}

void k_exp3() {
    const npy::array<int64_t> m = npy::load<int64_t>(dir_ + "/m.npy");
    const std::vector<int64_t> hi = in<int64_t>("exp_hi", {U}), lo = in<int64_t>("exp_lo", {256});
    const std::vector<int64_t> mid = in<int64_t>("exp_mid", {256});
    const std::vector<int64_t> p = in<int64_t>("p", {1});
    std::vector<int64_t> e;
    for (std::size_t i = 0; i < m.size(); ++i)
        e.push_back(exp_three_level<U>(m[i], hi.data(), mid.data(), lo.data(), unsigned(p[0])));
    out("e", e, m.shape);
}

static int64_t att[H][N][N];

void k_hfsc() {
    const std::vector<int32_t> low = in<int32_t>("low", {H, N, N}), high = in<int32_t>("high", {H, N, N});
    const std::vector<int32_t> bias = in<int32_t>("bias", {H, N, N});
    const std::vector<int64_t> w = in<int64_t>("w", {2, H}), p = in<int64_t>("p", {2});
    const std::vector<int64_t> hi = in<int64_t>("exp_hi", {U}), lo = in<int64_t>("exp_lo", {256});
    const std::vector<int64_t> mid = in<int64_t>("exp_mid", {256});
    static int64_t wt[2][H];
    static int32_t b[H][N][N];
    for (unsigned i = 0; i < 2 * H; ++i) wt[i / H][i % H] = w[i];
    for (unsigned i = 0; i < H * N * N; ++i) b[i / (N * N)][(i / N) % N][i % N] = bias[i];
    stream<vec<int32_t, QK_PE>> s_low("low"), s_high("high");
    stream<vec<int64_t, QK_PE>> s_s("s");
    to_words<QK_PE>(low, s_low);
    to_words<QK_PE>(high, s_high);
    hfsc_combine<H, N, QK_PE>(s_low, s_high, wt, s_s, iters_);
    out("s", trace::lanes(s_s), {H, N, N});
    softmax_hfsc<H, N, QK_PE, U, CFG_SM_EPC>(s_s, hi.data(), mid.data(), lo.data(), b, unsigned(p[0]), unsigned(p[1]), att, iters_);
    out("a", trace::flat(&att[0][0][0], H * N * N), {H, N, N});
}

// ---------------------------------------------------------------------------- §13.3
static ap_uint<AV_SIMD> a_rows[1][H][N][av_shape::SF], a_av[1][H][N][av_shape::SF];
static ap_uint<AV_SIMD> v_tiles[1][H][AV_PE][av_shape::TILES], v_av[1][H][AV_PE][av_shape::TILES];
static ap_uint<AV_SIMD> s_tiles[H][AV_PE][av_shape::TILES];
static ap_uint<count_bits(N)> ones[H][N];
static int64_t ctx_av[N][E], ctx[N][E];
static int32_t lap[N][E];

void k_diba() {
    const std::vector<uint8_t> ap = in<uint8_t>("ap", {H, N, N}), vp = in<uint8_t>("vp", {H, N, D});
    const std::vector<int64_t> local = in<int64_t>("local", {H}), p = in<int64_t>("p", {2});
    for (unsigned i = 0; i < H * N * N; ++i) {
        const unsigned h = i / (N * N), q = (i / N) % N, j = i % N;
        a_rows[0][h][q][j / AV_SIMD][j % AV_SIMD] = ap[i];
    }
    for (unsigned i = 0; i < H * N * D; ++i) {
        const unsigned h = i / (N * D), n = (i / D) % N, j = i % D;
        v_tiles[0][h][av_shape::lane(j)][av_shape::tile(j, n)][av_shape::bit(n)] = vp[i];
    }
    const int64_t scale[1][1] = {{p[0]}};
    unsigned long av_iters = 0;
    diba_fork<H, N, D, AV_SIMD, AV_PE>(a_rows, v_tiles, a_av, v_av, ones, s_tiles, iters_);
    gsb_av<H, N, D, 1, AV_SIMD, AV_PE>(a_av, v_av, scale, ctx_av, av_iters);
    diba_context<H, N, D, GRID, AV_SIMD, AV_PE>(ones, s_tiles, p[0], p[1], local.data(), ctx_av, ctx,
                                                GSB_LAP_TRACE(lap), iters_);
    out("ctx", trace::flat(&ctx[0][0], N * E), {N, E});
    out("lap", trace::flat(&lap[0][0], N * E), {N, E});
}

const tb::Kernel KERNELS[] = {{"act", k_act}, {"act_residual", k_act_residual}, {"haar", k_haar},
                          {"exp3", k_exp3}, {"hfsc", k_hfsc},            {"diba", k_diba}};

}  // namespace

int main(int argc, char** argv) { return tb::run_kernel(argc, argv, KERNELS, dir_, iters_); }
