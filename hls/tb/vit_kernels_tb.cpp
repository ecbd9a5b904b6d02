/**
 * vit_kernels_tb.cpp: C-simulation testbench of the transformer kernels, one at a time.
 *
 * usage: vit_kernels_tb KERNEL DIR
 * Reads the kernel's inputs from DIR/<name>.npy, runs it through gsb::streams and writes
 * its outputs as int64 arrays DIR/out_<name>.npy in gsbsim's golden layout; Python
 * (tests/test_hls_model.py) compares them with gsbsim.golden's step functions.  Prints
 * `ITERS <n>` (the kernel's pipelined iterations: for matrix kernels the cycle model's
 * count).  Exit 0 on success, 2 on an error (message on stderr: bad file, violated kernel
 * precondition such as an overflow).
 *
 * Shapes and folding come from config.h (CFG_* macros, see the list below), so each
 * configuration is one build.  Kernels (inputs -> outputs):
 *   isqrt       v[n] int64                                   -> root[n]
 *   ln_bits     x[T][E] int32, sign[E] int8, thr[E] int64, p = (ln, eps, s2_max)  -> bits[T][E]
 *   final_ln    x[N][E] int32, gain[2][E], offset[2][E], p = (k, eps, s2_max)     -> q[2][E]
 *   qkv_split   acc[N][3E] int32, q_thr[E], k_thr[E] int32, v_offset[E], p = (value)
 *                                                            -> q[H][N][D], k[H][N][D], vq[H][N][D]
 *   value_planes vq[H][N][D] int64, ratio[G] int32, p = (image_stat)          -> planes[G][H][N][D]
 *               (CFG_VP_EPC channels per cycle; CFG_AP_EPC keys per cycle for a_planes,
 *               CFG_SM_EPC for softmax)
 *   qk          q[H][N][D], k[H][N][D] uint8                -> scores[H][N][N]
 *   softmax     scores[H][N][N] int32, lut[D+1], bias[H][N][N] int32, p = (prob, recip) -> a[H][N][N]
 *   a_planes    a[H][N][N] int64, ratio[G] int32, p = (thr1, image_stat)      -> planes[G][H][N][N]
 *   av          ap[G][H][N][N], vp[G][H][N][D] uint8, scale[G][G], thr[E]     -> ctx[N][E], bits[N][E]
 *   patch       img[B][CIN][IMG][IMG] int8, w[E][K] int8, mult[E], bias[E], tokens[2][E] int32,
 *               pos[N][E] int32, p = (shift)                 -> acc[B][T][E], x[B][N][E]
 *   head        q[B][2][E] int8, w[C][E], wd[C][E] int8, bias[C], p = (mult, dist_mult)
 *                                                            -> acc[B][2][C], logits[B][C], pred[B]
 *   residual    x[T][E] int32, acc[T][E] int32, bias[E], p = (mult, shift)  -> out[T][E]
 *   fc1_act     acc[T][HD] int32, lo[HD], hi[HD] int32       -> bits[T][HD]
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

const unsigned E = CFG_E, H = CFG_H, D = CFG_E / CFG_H, N = CFG_N, G = CFG_G, HD = CFG_HD, C = CFG_C;
const unsigned CIN = CFG_CIN, IMG = CFG_IMG, P = CFG_P, T = (CFG_IMG / CFG_P) * (CFG_IMG / CFG_P), K = CIN * P * P;
static_assert(N == T + 2, "config: N must be the number of patches + 2");
const unsigned LN_SIMD = CFG_LN_SIMD, QKV_PE = CFG_QKV_PE, QK_SIMD = CFG_QK_SIMD, QK_PE = CFG_QK_PE;
const unsigned AV_SIMD = CFG_AV_SIMD, AV_PE = CFG_AV_PE, PROJ_SIMD = CFG_PROJ_SIMD, RES_PE = CFG_RES_PE;
const unsigned FC1_PE = CFG_FC1_PE, FC2_SIMD = CFG_FC2_SIMD, PATCH_SIMD = CFG_PATCH_SIMD, PATCH_PE = CFG_PATCH_PE;
const unsigned HEAD_SIMD = CFG_HEAD_SIMD, HEAD_PE = CFG_HEAD_PE, VP_EPC = CFG_VP_EPC, AP_EPC = CFG_AP_EPC;
typedef mvau_shape<D, N, QK_SIMD, QK_PE> qk_shape;
typedef mvau_shape<N, D, AV_SIMD, AV_PE> av_shape;

namespace {

std::string dir_;

template <typename T>
std::vector<T> in(const char* name, const std::vector<std::size_t>& shape) {
    return npy::load<T>(dir_ + "/" + name + ".npy", shape).data;
}

void out(const char* name, const std::vector<int64_t>& values, const std::vector<std::size_t>& shape) {
    npy::save<int64_t>(dir_ + "/out_" + name + ".npy", values, shape);
}

unsigned long iters_ = 0;

// ---------------------------------------------------------------------------- LayerNorms
void k_isqrt() {
    const npy::array<int64_t> v = npy::load<int64_t>(dir_ + "/v.npy");
    std::vector<int64_t> r;
    for (std::size_t i = 0; i < v.size(); ++i) r.push_back(isqrt64(v[i], iters_));
    out("root", r, v.shape);
}

void k_ln_bits() {
    const npy::array<int32_t> x = npy::load<int32_t>(dir_ + "/x.npy");
    const std::size_t tokens = x.shape.at(0);
    const std::vector<int8_t> sign = in<int8_t>("sign", {E});
    const std::vector<int64_t> thr = in<int64_t>("thr", {E}), p = in<int64_t>("p", {3});
    stream<int32_t> s_x("x");
    stream<ap_uint<LN_SIMD>> s_bits("bits");
    for (int32_t v : x.data) s_x.write(v);
    layernorm_bits<E, LN_SIMD>(s_x, s_bits, sign.data(), thr.data(), unsigned(p[0]), p[1], p[2], unsigned(tokens),
                               "ln_bits", iters_);
    out("bits", trace::bits<LN_SIMD>(s_bits, E), {tokens, E});
}

void k_final_ln() {
    const std::vector<int32_t> x = in<int32_t>("x", {N, E});
    const std::vector<int64_t> gain = in<int64_t>("gain", {2, E}), offset = in<int64_t>("offset", {2, E});
    const std::vector<int64_t> p = in<int64_t>("p", {3});
    static int64_t g[2][E], o[2][E];
    for (unsigned t = 0; t < 2; ++t)
        for (unsigned c = 0; c < E; ++c) {
            g[t][c] = gain[t * E + c];
            o[t][c] = offset[t * E + c];
        }
    stream<int32_t> s_x("x");
    stream<ap_uint<8 * HEAD_SIMD>> s_q("q");
    for (int32_t v : x) s_x.write(v);
    final_layernorm<E, HEAD_SIMD>(s_x, s_q, g, o, unsigned(p[0]), p[1], p[2], N, iters_);
    out("q", trace::int8_lanes<HEAD_SIMD>(s_q, E), {2, E});
}

// ---------------------------------------------------------------------------- attention
static ap_uint<QK_SIMD> q_rows[H][N][qk_shape::SF];
static ap_uint<QK_SIMD> k_tiles[H][QK_PE][qk_shape::TILES];
static int64_t vq[H][N][D];
static ap_uint<AV_SIMD> v_tiles[G][H][AV_PE][av_shape::TILES];
static int64_t att[H][N][N];
static ap_uint<AV_SIMD> a_rows[G][H][N][av_shape::SF];
static int64_t ctx[N][E];

void k_qkv_split() {
    const std::vector<int32_t> acc = in<int32_t>("acc", {N, 3 * E});
    const std::vector<int32_t> q_thr = in<int32_t>("q_thr", {E}), k_thr = in<int32_t>("k_thr", {E});
    const std::vector<int64_t> v_offset = in<int64_t>("v_offset", {E}), p = in<int64_t>("p", {1});
    stream<vec<int32_t, QKV_PE>> s_acc("acc");
    for (unsigned i = 0; i < N * 3 * E; i += QKV_PE) {
        vec<int32_t, QKV_PE> w;
        for (unsigned pe = 0; pe < QKV_PE; ++pe) w[pe] = acc[i + pe];
        s_acc.write(w);
    }
    qkv_split<E, H, N, QKV_PE, QK_SIMD, QK_PE>(s_acc, q_thr.data(), k_thr.data(), v_offset.data(), unsigned(p[0]),
                                                q_rows, k_tiles, vq, iters_);
    out("q", trace::bit_rows<QK_SIMD, qk_shape::SF>(&q_rows[0][0], H * N, D), {H, N, D});
    out("k", trace::tiles<D, N, QK_SIMD, QK_PE>(&k_tiles[0][0], H, false), {H, N, D});
    out("vq", trace::flat(&vq[0][0][0], H * N * D), {H, N, D});
}

void k_value_planes() {
    const std::vector<int64_t> v = in<int64_t>("vq", {H, N, D}), p = in<int64_t>("p", {1});
    const std::vector<int32_t> ratio = in<int32_t>("ratio", {G});
    for (unsigned i = 0; i < H * N * D; ++i) vq[i / (N * D)][(i / D) % N][i % D] = v[i];
    if (p[0])
        value_planes<H, N, D, G, AV_SIMD, AV_PE, true, VP_EPC>(vq, ratio.data(), v_tiles, iters_);
    else
        value_planes<H, N, D, G, AV_SIMD, AV_PE, false, VP_EPC>(vq, ratio.data(), v_tiles, iters_);
    out("planes", trace::tiles<N, D, AV_SIMD, AV_PE>(&v_tiles[0][0][0], G * H, true), {G, H, N, D});
}

void k_qk() {
    const std::vector<uint8_t> q = in<uint8_t>("q", {H, N, D}), k = in<uint8_t>("k", {H, N, D});
    for (unsigned h = 0; h < H; ++h)
        for (unsigned n = 0; n < N; ++n) {
            for (unsigned s = 0; s < qk_shape::SF; ++s) q_rows[h][n][s] = 0;
            for (unsigned s = 0; s < qk_shape::SF; ++s) k_tiles[h][qk_shape::lane(n)][qk_shape::tile(n, s * QK_SIMD)] = 0;
        }
    for (unsigned i = 0; i < H * N * D; ++i) {
        const unsigned h = i / (N * D), n = (i / D) % N, j = i % D;
        q_rows[h][n][j / QK_SIMD][j % QK_SIMD] = q[i];
        k_tiles[h][qk_shape::lane(n)][qk_shape::tile(n, j)][qk_shape::bit(j)] = k[i];
    }
    stream<vec<int32_t, QK_PE>> s_sc("scores");
    attention_qk<N, D, H, QK_SIMD, QK_PE>(q_rows, k_tiles, s_sc, iters_);
    out("scores", trace::lanes(s_sc), {H, N, N});
}

void k_softmax() {
    const std::vector<int32_t> sc = in<int32_t>("scores", {H, N, N});
    const std::vector<int64_t> lut = in<int64_t>("lut", {D + 1}), p = in<int64_t>("p", {2});
    const std::vector<int32_t> bias = in<int32_t>("bias", {H, N, N});
    static int32_t b[H][N][N];
    for (unsigned i = 0; i < H * N * N; ++i) b[i / (N * N)][(i / N) % N][i % N] = bias[i];
    stream<vec<int32_t, QK_PE>> s_sc("scores");
    for (unsigned i = 0; i < H * N * N; i += QK_PE) {
        vec<int32_t, QK_PE> w;
        for (unsigned pe = 0; pe < QK_PE; ++pe) w[pe] = sc[i + pe];
        s_sc.write(w);
    }
    softmax<H, N, D, QK_PE, CFG_SM_EPC>(s_sc, lut.data(), b, unsigned(p[0]), unsigned(p[1]), att, iters_);
    out("a", trace::flat(&att[0][0][0], H * N * N), {H, N, N});
}

void k_a_planes() {
    const std::vector<int64_t> a = in<int64_t>("a", {H, N, N}), p = in<int64_t>("p", {2});
    const std::vector<int32_t> ratio = in<int32_t>("ratio", {G});
    for (unsigned i = 0; i < H * N * N; ++i) att[i / (N * N)][(i / N) % N][i % N] = a[i];
    if (p[1])
        attention_planes<H, N, G, AV_SIMD, true, AP_EPC>(att, p[0], ratio.data(), a_rows, iters_);
    else
        attention_planes<H, N, G, AV_SIMD, false, AP_EPC>(att, p[0], ratio.data(), a_rows, iters_);
    out("planes", trace::bit_rows<AV_SIMD, av_shape::SF>(&a_rows[0][0][0], G * H * N, N), {G, H, N, N});
}

void k_av() {
    const std::vector<uint8_t> ap = in<uint8_t>("ap", {G, H, N, N}), vp = in<uint8_t>("vp", {G, H, N, D});
    const std::vector<int64_t> scale = in<int64_t>("scale", {G, G}), thr = in<int64_t>("thr", {E});
    static int64_t sc[G][G];
    for (unsigned i = 0; i < G * G; ++i) sc[i / G][i % G] = scale[i];
    for (unsigned g = 0; g < G; ++g)
        for (unsigned h = 0; h < H; ++h) {
            for (unsigned n = 0; n < N; ++n)
                for (unsigned s = 0; s < av_shape::SF; ++s) a_rows[g][h][n][s] = 0;
            for (unsigned pe = 0; pe < AV_PE; ++pe)
                for (unsigned t = 0; t < av_shape::TILES; ++t) v_tiles[g][h][pe][t] = 0;
        }
    for (unsigned i = 0; i < G * H * N * N; ++i) {
        const unsigned g = i / (H * N * N), h = (i / (N * N)) % H, q = (i / N) % N, j = i % N;
        a_rows[g][h][q][j / AV_SIMD][j % AV_SIMD] = ap[i];
    }
    for (unsigned i = 0; i < G * H * N * D; ++i) {
        const unsigned g = i / (H * N * D), h = (i / (N * D)) % H, n = (i / D) % N, j = i % D;
        v_tiles[g][h][av_shape::lane(j)][av_shape::tile(j, n)][av_shape::bit(n)] = vp[i];
    }
    gsb_av<H, N, D, G, AV_SIMD, AV_PE>(a_rows, v_tiles, sc, ctx, iters_);
    stream<ap_uint<PROJ_SIMD>> s_bits("bits");
    unsigned long stage = 0;
    ctx_threshold<N, E, PROJ_SIMD>(ctx, thr.data(), s_bits, stage);
    out("ctx", trace::flat(&ctx[0][0], N * E), {N, E});
    out("bits", trace::bits<PROJ_SIMD>(s_bits, E), {N, E});
}

// ---------------------------------------------------------------------------- 8-bit layers
template <unsigned MW, unsigned MH, unsigned SIMD, unsigned PE>
void int8_tiles(const std::vector<int8_t>& m, ap_uint<8 * SIMD> (&w)[PE][mvau_shape<MW, MH, SIMD, PE>::TILES]) {
    typedef mvau_shape<MW, MH, SIMD, PE> shape;
    for (unsigned pe = 0; pe < PE; ++pe)
        for (unsigned t = 0; t < shape::TILES; ++t) w[pe][t] = 0;
    for (unsigned r = 0; r < MH; ++r)
        for (unsigned c = 0; c < MW; ++c) set_int8_lane(w[shape::lane(r)][shape::tile(r, c)], shape::bit(c), m[r * MW + c]);
}

void k_patch() {
    const npy::array<int8_t> img = npy::load<int8_t>(dir_ + "/img.npy");
    const std::size_t batch = img.shape.at(0);
    const std::vector<int8_t> wm = in<int8_t>("w", {E, K});
    const std::vector<int64_t> mult = in<int64_t>("mult", {E}), bias = in<int64_t>("bias", {E}), p = in<int64_t>("p", {1});
    const std::vector<int32_t> tok = in<int32_t>("tokens", {2, E}), pos = in<int32_t>("pos", {N, E});
    static ap_uint<8 * PATCH_SIMD> w[PATCH_PE][mvau_shape<K, E, PATCH_SIMD, PATCH_PE>::TILES];
    static int32_t tk[2][E], ps[N][E];
    int8_tiles<K, E, PATCH_SIMD, PATCH_PE>(wm, w);
    for (unsigned i = 0; i < 2 * E; ++i) tk[i / E][i % E] = tok[i];
    for (unsigned i = 0; i < N * E; ++i) ps[i / E][i % E] = pos[i];
    const RawPolicy<E, PATCH_PE> raw = {};
    std::vector<int64_t> accs, xs;
    for (std::size_t b = 0; b < batch; ++b) {
        stream<ap_uint<8 * PATCH_SIMD>> cols("cols");
        stream<vec<int32_t, PATCH_PE>> acc("acc");
        stream<int32_t> x("x");
        unsigned long stage = 0;
        im2col<CIN, IMG, P, PATCH_SIMD>(&img.data[b * CIN * IMG * IMG], cols, stage);
        mvau<K, E, PATCH_SIMD, PATCH_PE, Int8Mode>(cols, acc, w, raw, T, iters_);
        const std::vector<int64_t> a = trace::lanes(acc);
        accs.insert(accs.end(), a.begin(), a.end());
        patch_embed<N, E, PATCH_PE, K>(acc, tk, ps, mult.data(), bias.data(), unsigned(p[0]), x, stage);
        const std::vector<int64_t> v = trace::scalars(x);
        xs.insert(xs.end(), v.begin(), v.end());
    }
    out("acc", accs, {batch, T, E});
    out("x", xs, {batch, N, E});
}

void k_head() {
    const npy::array<int8_t> q = npy::load<int8_t>(dir_ + "/q.npy");
    const std::size_t batch = q.shape.at(0);
    const std::vector<int8_t> wm = in<int8_t>("w", {C, E}), wdm = in<int8_t>("wd", {C, E});
    const std::vector<int64_t> bias = in<int64_t>("bias", {C}), p = in<int64_t>("p", {2});
    static ap_uint<8 * HEAD_SIMD> w[HEAD_PE][mvau_shape<E, C, HEAD_SIMD, HEAD_PE>::TILES];
    static ap_uint<8 * HEAD_SIMD> wd[HEAD_PE][mvau_shape<E, C, HEAD_SIMD, HEAD_PE>::TILES];
    int8_tiles<E, C, HEAD_SIMD, HEAD_PE>(wm, w);
    int8_tiles<E, C, HEAD_SIMD, HEAD_PE>(wdm, wd);
    const RawPolicy<C, HEAD_PE> raw = {};
    std::vector<int64_t> accs, logits, preds;
    for (std::size_t b = 0; b < batch; ++b) {
        stream<ap_uint<8 * HEAD_SIMD>> s_q("q");
        for (unsigned t = 0; t < 2; ++t)
            for (unsigned s = 0; s < ceil_div(E, HEAD_SIMD); ++s) {
                ap_uint<8 * HEAD_SIMD> word = 0;
                for (unsigned l = 0; l < HEAD_SIMD && s * HEAD_SIMD + l < E; ++l)
                    set_int8_lane(word, l, q.data[(b * 2 + t) * E + s * HEAD_SIMD + l]);
                s_q.write(word);
            }
        stream<vec<int32_t, HEAD_PE>> acc("acc");
        stream<vec<int64_t, HEAD_PE>> lg("logits");
        stream<uint32_t> best("best");
        unsigned long stage = 0;
        mvau<E, C, HEAD_SIMD, HEAD_PE, Int8Mode>(s_q, acc, w, raw, 1, iters_);
        mvau<E, C, HEAD_SIMD, HEAD_PE, Int8Mode>(s_q, acc, wd, raw, 1, iters_);
        const std::vector<int64_t> a = trace::lanes(acc);
        accs.insert(accs.end(), a.begin(), a.end());
        logits_combine<C, HEAD_PE, E>(acc, p[0], p[1], bias.data(), lg, stage);
        const std::vector<int64_t> l = trace::lanes(lg);
        logits.insert(logits.end(), l.begin(), l.end());
        argmax<C, HEAD_PE, int64_t>(lg, best, 1, stage);
        preds.push_back(best.read());
    }
    out("acc", accs, {batch, 2, C});
    out("logits", logits, {batch, C});
    out("pred", preds, {batch});
}

// ---------------------------------------------------------------------------- residual, fc1
void k_residual() {
    const npy::array<int32_t> x = npy::load<int32_t>(dir_ + "/x.npy");
    const std::size_t tokens = x.shape.at(0);
    const std::vector<int32_t> acc = in<int32_t>("acc", {tokens, E});
    const std::vector<int64_t> bias = in<int64_t>("bias", {E}), p = in<int64_t>("p", {2});
    stream<int32_t> s_x("x"), s_out("out");
    stream<vec<int32_t, RES_PE>> s_acc("acc");
    for (int32_t v : x.data) s_x.write(v);
    for (std::size_t i = 0; i < tokens * E; i += RES_PE) {
        vec<int32_t, RES_PE> w;
        for (unsigned pe = 0; pe < RES_PE; ++pe) w[pe] = acc[i + pe];
        s_acc.write(w);
    }
    requant_residual_add<E, RES_PE, E>(s_x, s_acc, s_out, p[0], bias.data(), unsigned(p[1]), unsigned(tokens),
                                       "residual", iters_);
    out("out", trace::scalars(s_out), {tokens, E});
}

void k_fc1_act() {
    const npy::array<int32_t> acc = npy::load<int32_t>(dir_ + "/acc.npy");
    const std::size_t tokens = acc.shape.at(0);
    const std::vector<int32_t> lo = in<int32_t>("lo", {HD}), hi = in<int32_t>("hi", {HD});
    static TwoSidedThresholdPolicy<HD, FC1_PE> act;
    for (unsigned r = 0; r < HD; ++r) {
        act.lo[r] = lo[r];
        act.hi[r] = hi[r];
    }
    stream<vec<int32_t, FC1_PE>> s_acc("acc");
    stream<ap_uint<FC2_SIMD>> s_bits("bits");
    for (std::size_t i = 0; i < tokens * HD; i += FC1_PE) {
        vec<int32_t, FC1_PE> w;
        for (unsigned pe = 0; pe < FC1_PE; ++pe) w[pe] = acc.data[i + pe];
        s_acc.write(w);
    }
    activate_bits<HD, FC1_PE, FC2_SIMD>(s_acc, s_bits, act, unsigned(tokens), iters_);
    out("bits", trace::bits<FC2_SIMD>(s_bits, HD), {tokens, HD});
}

const tb::Kernel KERNELS[] = {{"isqrt", k_isqrt},       {"ln_bits", k_ln_bits},   {"final_ln", k_final_ln},
                          {"qkv_split", k_qkv_split}, {"value_planes", k_value_planes}, {"qk", k_qk},
                          {"softmax", k_softmax},   {"a_planes", k_a_planes}, {"av", k_av},
                          {"patch", k_patch},       {"head", k_head},         {"residual", k_residual},
                          {"fc1_act", k_fc1_act}};

}  // namespace

int main(int argc, char** argv) { return tb::run_kernel(argc, argv, KERNELS, dir_, iters_); }
