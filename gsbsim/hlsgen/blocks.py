"""The C++ of one transformer block in a generated ``gsb_top`` (gsbsim/hlsgen/project.py), per method.

A block is assembled from stanzas (format strings over the block index ``i``), so the three
arithmetics share everything they have in common (docs/integer_model.md):

* ``gsb`` (also ``bit``, ``sign``): §3-§8; the MVAU accumulators feed thresholds and
  requantized residual adds directly.
* ``reactnet`` (§13.1): an activation unit (gsb/act.hpp) after each of qkv, proj, fc1 and fc2;
  its z replaces the accumulator (qkv_split with value shift 0, activate_bits, residual_add_lanes).
* ``didb`` (§13.1-§13.3): as reactnet, plus the Haar split of Q and K (gsb/haar.hpp), the two
  Q.K^T products combined by HFSC with the three-level exp softmax (gsb/hfsc.hpp) and the DIBA
  context (gsb/diba.hpp).

Every traced tensor of the method is recorded under its gsbsim trace name (GSB_TRACE).
"""
from __future__ import annotations

from gsbsim.format.methods import method_of

__all__ = ["block_cpp"]


# the binary linears: (input features, output features), as C++ expressions of the config macros
_LINEAR = {"qkv": ("E", "3 * E"), "proj": ("E", "E"), "fc1": ("E", "HD"), "fc2": ("HD", "E")}


def _ln_bits(half: int, x_in: str, simd: str) -> str:
    """Fork X into LayerNorm ln{half} and the skip path x_skip{half}; the LayerNorm's bits (§3),
    traced as ln{half}.bits, in words of `simd` bits (the SIMD of the linear they feed)."""
    call = f"      gsb::layernorm_bits<E, {simd}>("
    return (f"    {{{{ unsigned long it = 0; gsb::fork({x_in}, x_ln{half}, x_skip{half}, (unsigned long)N * E, it); "
            f"GSB_STAGE(\"blocks.{{i}}.fork{half}\", it); }}}}\n"
            f"    {{{{ unsigned long it = 0;\n"
            f"{call}x_ln{half}, ln{half}_bits, b{{i}}_ln{half}_sign, b{{i}}_ln{half}_thr, "
            f"SHIFT_LN, LN_EPS, LN_S2_MAX, N,\n"
            f"{' ' * len(call)}\"blocks.{{i}}.ln{half}\", it);\n"
            f"      GSB_STAGE(\"blocks.{{i}}.ln{half}\", it); }}}}\n"
            f"    GSB_TRACE(\"blocks.{{i}}.ln{half}.bits\", gsb::trace::bits<{simd}>(ln{half}_bits, E));\n")


def _mvau(lin: str, bits: str, mode: str) -> str:
    """Binary linear `lin` on the MVAU (gsb::XnorMode or gsb::AndMode): the input bit stream
    `bits` -> {lin}_acc, traced as {lin}.acc."""
    k, c = _LINEAR[lin]
    f = lin.upper()
    return (f"    {{{{ unsigned long it = 0;\n"
            f"      gsb::mvau<{k}, {c}, {f}_SIMD, {f}_PE, gsb::{mode}>({bits}, {lin}_acc, b{{i}}_{lin}_weight, "
            f"{lin}_raw, N, it);\n"
            f"      GSB_LAYER(\"blocks.{{i}}.{lin}\", it); }}}}\n"
            f"    GSB_TRACE(\"blocks.{{i}}.{lin}.acc\", gsb::trace::lanes({lin}_acc));\n")


_HEAD = """
// ============================================================================ block {i} ({sections})
static void block_{i}(gsb::stream<int32_t>& x_in, gsb::stream<int32_t>& x_out GSB_PROBE_PARAM) {{
    const unsigned QKV_PE = B{i}_QKV_PE, QKV_SIMD = B{i}_QKV_SIMD, QK_PE = B{i}_QK_PE, QK_SIMD = B{i}_QK_SIMD;
    const unsigned AV_PE = B{i}_AV_PE, AV_SIMD = B{i}_AV_SIMD, PROJ_PE = B{i}_PROJ_PE, PROJ_SIMD = B{i}_PROJ_SIMD;
    const unsigned FC1_PE = B{i}_FC1_PE, FC1_SIMD = B{i}_FC1_SIMD, FC2_PE = B{i}_FC2_PE, FC2_SIMD = B{i}_FC2_SIMD;
    typedef gsb::mvau_shape<D, N, QK_SIMD, QK_PE> qk_shape;  // K rows: the QK unit's runtime weights
    typedef gsb::mvau_shape<N, D, AV_SIMD, AV_PE> av_shape;  // value planes: the A.V unit's runtime weights
    // whole-image attention buffers (every key before the first score; image statistics)
"""
_QK_BUFFERS = """\
    static ap_uint<QK_SIMD> q_rows[H][N][qk_shape::SF];
    static ap_uint<QK_SIMD> k_tiles[H][QK_PE][qk_shape::TILES];
"""
_QK_BUFFERS_DIDB = """\
    static int32_t zqk[N][2 * E];  // z of the Q and K channels: the Haar split needs the grid neighbours
    static ap_uint<QK_SIMD> q_rows[2][H][N][qk_shape::SF];  // band 0 = low, 1 = high
    static ap_uint<QK_SIMD> k_tiles[2][H][QK_PE][qk_shape::TILES];
"""
_BUFFERS = """\
    static int64_t vq[H][N][D];
    static ap_uint<AV_SIMD> v_tiles[G][H][AV_PE][av_shape::TILES];
    static int64_t att[H][N][N];
    static ap_uint<AV_SIMD> a_rows[G][H][N][av_shape::SF];
    static int64_t ctx[N][E];
"""
_BUFFERS_DIDB = """\
    static int32_t lap[N][E];
"""
_STREAMS = """\
    const gsb::RawPolicy<3 * E, QKV_PE> qkv_raw = {{}};
    const gsb::RawPolicy<E, PROJ_PE> proj_raw = {{}};
    const gsb::RawPolicy<HD, FC1_PE> fc1_raw = {{}};
    const gsb::RawPolicy<E, FC2_PE> fc2_raw = {{}};

    gsb::stream<int32_t> x_ln1("blocks.{i}.x_ln1"), x_skip1("blocks.{i}.x_skip1"), x_mid("blocks.{i}.resid1");
    gsb::stream<int32_t> x_ln2("blocks.{i}.x_ln2"), x_skip2("blocks.{i}.x_skip2");
    gsb::stream<ap_uint<QKV_SIMD>> ln1_bits("blocks.{i}.ln1.bits");
    gsb::stream<gsb::vec<int32_t, QKV_PE>> qkv_acc("blocks.{i}.qkv.acc");
"""
_SCORE_STREAMS = """\
    gsb::stream<gsb::vec<int32_t, QK_PE>> scores("blocks.{i}.scores");
"""
_SCORE_STREAMS_DIDB = """\
    gsb::stream<gsb::vec<int32_t, QK_PE>> scores_low("blocks.{i}.scores.low"), scores_high("blocks.{i}.scores.high");
    gsb::stream<gsb::vec<int64_t, QK_PE>> hfsc("blocks.{i}.hfsc");
"""
_STREAMS_MLP = """\
    gsb::stream<ap_uint<PROJ_SIMD>> proj_bits("blocks.{i}.proj.bits");
    gsb::stream<gsb::vec<int32_t, PROJ_PE>> proj_acc("blocks.{i}.proj.acc");
    gsb::stream<ap_uint<FC1_SIMD>> ln2_bits("blocks.{i}.ln2.bits");
    gsb::stream<gsb::vec<int32_t, FC1_PE>> fc1_acc("blocks.{i}.fc1.acc");
    gsb::stream<ap_uint<FC2_SIMD>> fc1_bits("blocks.{i}.fc1.bits");
    gsb::stream<gsb::vec<int32_t, FC2_PE>> fc2_acc("blocks.{i}.fc2.acc");
"""
_Z_STREAMS = """\
    // z of the activation units (§13.1), in the accumulators' word layout
    gsb::stream<gsb::vec<int32_t, QKV_PE>> qkv_z("blocks.{i}.qkv.z");
    gsb::stream<gsb::vec<int32_t, PROJ_PE>> proj_z("blocks.{i}.proj.z");
    gsb::stream<gsb::vec<int32_t, FC1_PE>> fc1_z("blocks.{i}.fc1.z");
    gsb::stream<gsb::vec<int32_t, FC2_PE>> fc2_z("blocks.{i}.fc2.z");
"""
_LN1_QKV = "\n    // ---- attention\n" + _ln_bits(1, "x_in", "QKV_SIMD") + _mvau("qkv", "ln1_bits", "XnorMode")


def _act(lin: str, pe: str) -> str:
    """The activation unit of one binary linear: raw accumulators -> z (traced as {lin}.z)."""
    c = _LINEAR[lin][1]
    return (f"    {{{{ unsigned long it = 0;\n"
            f"      gsb::act_unit<{c}, N, {pe}>({lin}_acc, {lin}_z, b{{i}}_{lin}_act_unit, SHIFT_RESID, N, "
            f"\"blocks.{{i}}.{lin}.act\", it);\n"
            f"      GSB_STAGE(\"blocks.{{i}}.{lin}.act\", it); }}}}\n"
            f"    GSB_TRACE(\"blocks.{{i}}.{lin}.z\", gsb::trace::lanes({lin}_z));\n")


_QKV_SPLIT = """\
    {{ unsigned long it = 0;
      gsb::qkv_split<E, H, N, QKV_PE, QK_SIMD, QK_PE>({qkv_src}, b{i}_q_thr, b{i}_k_thr, b{i}_v_offset, {value_shift},
                                                     q_rows, k_tiles, vq, it);
      GSB_STAGE("blocks.{i}.qkv_split", it); }}
    GSB_TRACE("blocks.{i}.q.bits", gsb::trace::bit_rows<QK_SIMD, qk_shape::SF>(&q_rows[0][0], H * N, D));
    GSB_TRACE("blocks.{i}.k.bits", gsb::trace::tiles<D, N, QK_SIMD, QK_PE>(&k_tiles[0][0], H, false));
    GSB_TRACE("blocks.{i}.v.q", gsb::trace::flat(&vq[0][0][0], (std::size_t)H * N * D));
"""
_HAAR = """\
    {{ unsigned long it = 0; gsb::qkv_z_split<E, H, N, QKV_PE>(qkv_z, b{i}_v_offset, zqk, vq, it);
      GSB_STAGE("blocks.{i}.qkv_split", it); }}
    {{ unsigned long it = 0;
      gsb::haar_qk<E, H, N, GRID, QK_SIMD, QK_PE>(zqk, b{i}_q_thr_low, b{i}_q_thr_high, b{i}_k_thr_low, b{i}_k_thr_high,
                                                  q_rows, k_tiles, it);
      GSB_STAGE("blocks.{i}.haar", it); }}
    GSB_TRACE("blocks.{i}.q.low", gsb::trace::bit_rows<QK_SIMD, qk_shape::SF>(&q_rows[0][0][0], H * N, D));
    GSB_TRACE("blocks.{i}.q.high", gsb::trace::bit_rows<QK_SIMD, qk_shape::SF>(&q_rows[1][0][0], H * N, D));
    GSB_TRACE("blocks.{i}.k.low", gsb::trace::tiles<D, N, QK_SIMD, QK_PE>(&k_tiles[0][0][0], H, false));
    GSB_TRACE("blocks.{i}.k.high", gsb::trace::tiles<D, N, QK_SIMD, QK_PE>(&k_tiles[1][0][0], H, false));
    GSB_TRACE("blocks.{i}.v.q", gsb::trace::flat(&vq[0][0][0], (std::size_t)H * N * D));
"""
_VALUE_PLANES = """\
    {{ unsigned long it = 0;
      gsb::value_planes<H, N, D, G, AV_SIMD, AV_PE, MASK_IMAGE>(vq, PLANE_RATIO, v_tiles, it);
      GSB_STAGE("blocks.{i}.value_planes", it); }}
    GSB_TRACE("blocks.{i}.v.planes", gsb::trace::tiles<N, D, AV_SIMD, AV_PE>(&v_tiles[0][0][0], G * H, true));
"""
_SCORES_SOFTMAX = """\
    {{ unsigned long it = 0; gsb::attention_qk<N, D, H, QK_SIMD, QK_PE>(q_rows, k_tiles, scores, it);
      GSB_LAYER("blocks.{i}.qk", it); }}
    GSB_TRACE("blocks.{i}.scores", gsb::trace::lanes(scores));
    {{ unsigned long it = 0;
      gsb::softmax<H, N, D, QK_PE>(scores, b{i}_exp_lut, b{i}_att_bias, SHIFT_PROB, SHIFT_RECIP, att, it);
      GSB_STAGE("blocks.{i}.softmax", it); }}
"""
_HFSC_SOFTMAX = """\
    {{ unsigned long it = 0;  // the two Q.K^T products (low, high band) one after the other on one unit
      gsb::attention_qk<N, D, H, QK_SIMD, QK_PE>(q_rows[0], k_tiles[0], scores_low, it);
      gsb::attention_qk<N, D, H, QK_SIMD, QK_PE>(q_rows[1], k_tiles[1], scores_high, it);
      GSB_LAYER("blocks.{i}.qk", it); }}
    GSB_TRACE("blocks.{i}.scores.low", gsb::trace::lanes(scores_low));
    GSB_TRACE("blocks.{i}.scores.high", gsb::trace::lanes(scores_high));
    {{ unsigned long it = 0; gsb::hfsc_combine<H, N, QK_PE>(scores_low, scores_high, b{i}_score_w, hfsc, it);
      GSB_STAGE("blocks.{i}.hfsc", it); }}
    GSB_TRACE("blocks.{i}.hfsc", gsb::trace::lanes(hfsc));
    {{ unsigned long it = 0;
      gsb::softmax_hfsc<H, N, QK_PE, B{i}_EXP_HI_LEN>(hfsc, b{i}_exp_hi, b{i}_exp_mid, b{i}_exp_lo, b{i}_att_bias,
                                                      SHIFT_PROB, SHIFT_RECIP, att, it);
      GSB_STAGE("blocks.{i}.softmax", it); }}
"""
_PLANES_AV = """\
    GSB_TRACE("blocks.{i}.probs", gsb::trace::flat(&att[0][0][0], (std::size_t)H * N * N));
    {{ unsigned long it = 0;
      gsb::attention_planes<H, N, G, AV_SIMD, MASK_IMAGE>(att, b{i}_a_thr1, PLANE_RATIO, a_rows, it);
      GSB_STAGE("blocks.{i}.attention_planes", it); }}
    GSB_TRACE("blocks.{i}.a.planes", gsb::trace::bit_rows<AV_SIMD, av_shape::SF>(&a_rows[0][0][0], G * H * N, N));
    {{ unsigned long it = 0; gsb::gsb_av<H, N, D, G, AV_SIMD, AV_PE>(a_rows, v_tiles, b{i}_ctx_scale, ctx, it);
      GSB_LAYER("blocks.{i}.av", it); }}
"""
_DIBA = """\
    {{ unsigned long it = 0;  // ctx holds ctx.scale * D; DIBA adds the differential and Laplacian terms
      gsb::diba_context<H, N, D, GRID, AV_SIMD, AV_PE>(a_rows, v_tiles, b{i}_ctx_scale[0][0], b{i}_ctx_vscale,
                                                       b{i}_ctx_local, ctx, lap, it);
      GSB_STAGE("blocks.{i}.diba", it); }}
"""
_PROJ = """\
    GSB_TRACE("blocks.{i}.ctx", gsb::trace::flat(&ctx[0][0], (std::size_t)N * E));
"""
_LAP = """\
    GSB_TRACE("blocks.{i}.lap", gsb::trace::flat(&lap[0][0], (std::size_t)N * E));
"""
_PROJ_MVAU = """\
    {{ unsigned long it = 0; gsb::ctx_threshold<N, E, PROJ_SIMD>(ctx, b{i}_proj_in_thr, proj_bits, it);
      GSB_STAGE("blocks.{i}.ctx_threshold", it); }}
    GSB_TRACE("blocks.{i}.proj.bits", gsb::trace::bits<PROJ_SIMD>(proj_bits, E));
""" + _mvau("proj", "proj_bits", "XnorMode")


def _residual(lin: str, pe: str, x_in: str, x_out: str, stage: str, act: bool) -> str:
    """X + the layer's output: requantized accumulators (§7) or the activation unit's z (§13.1)."""
    if not act:
        pad = " " * len(f"      gsb::requant_residual_add<E, {pe}>(")
        return (f"    {{{{ unsigned long it = 0;\n"
                f"      gsb::requant_residual_add<E, {pe}>({x_in}, {lin}_acc, {x_out}, b{{i}}_{lin}_mult, "
                f"b{{i}}_{lin}_bias, SHIFT_RESID, N,\n"
                f"{pad}\"blocks.{{i}}.{lin}\", it);\n"
                f"      GSB_STAGE(\"blocks.{{i}}.{stage}\", it); }}}}\n")
    return (f"    {{{{ unsigned long it = 0;\n"
            f"      gsb::residual_add_lanes<E, {pe}>({x_in}, {lin}_z, {x_out}, N, \"blocks.{{i}}.{lin}\", it);\n"
            f"      GSB_STAGE(\"blocks.{{i}}.{stage}\", it); }}}}\n")


_MLP = """\
    GSB_TRACE("blocks.{i}.resid1", gsb::trace::scalars(x_mid));

    // ---- MLP
""" + _ln_bits(2, "x_mid", "FC1_SIMD") + _mvau("fc1", "ln2_bits", "XnorMode")
_FC1_BITS_FC2 = """\
    {{ unsigned long it = 0; gsb::activate_bits<HD, FC1_PE, FC2_SIMD>({fc1_src}, fc1_bits, b{i}_fc1_act, N, it);
      GSB_STAGE("blocks.{i}.fc1_act", it); }}
    GSB_TRACE("blocks.{i}.fc1.bits", gsb::trace::bits<FC2_SIMD>(fc1_bits, HD));
""" + _mvau("fc2", "fc1_bits", "AndMode")
_TAIL = """\
    GSB_TRACE("blocks.{i}.resid2", gsb::trace::scalars(x_out));
}}
"""


def block_cpp(i: int, method: str) -> str:
    """The C++ function ``block_{i}`` of a generated top for a model of ``method``."""
    f = method_of(method)
    act, didb = f.act_unit, f.attention == "hfsc_diba"
    sections = "§3-§8, §13" if didb else "§3-§8, §13.1" if act else "§3-§8"
    parts = [_HEAD.replace("{sections}", sections),
             _QK_BUFFERS_DIDB if didb else _QK_BUFFERS, _BUFFERS, _BUFFERS_DIDB if didb else "", _STREAMS,
             _SCORE_STREAMS_DIDB if didb else _SCORE_STREAMS, _STREAMS_MLP, _Z_STREAMS if act else "", _LN1_QKV]
    if act:
        parts.append(_act("qkv", "QKV_PE"))
    if didb:
        parts.append(_HAAR)
    else:
        parts.append(_QKV_SPLIT.replace("{qkv_src}", "qkv_z" if act else "qkv_acc")
                     .replace("{value_shift}", "0" if act else "SHIFT_VALUE"))
    parts += [_VALUE_PLANES, _HFSC_SOFTMAX if didb else _SCORES_SOFTMAX, _PLANES_AV]
    if didb:
        parts.append(_DIBA)
    parts.append(_PROJ)
    if didb:
        parts.append(_LAP)
    parts.append(_PROJ_MVAU)
    if act:
        parts.append(_act("proj", "PROJ_PE"))
    parts += [_residual("proj", "PROJ_PE", "x_skip1", "x_mid", "proj_residual", act), _MLP]
    if act:
        parts.append(_act("fc1", "FC1_PE"))
    parts.append(_FC1_BITS_FC2.replace("{fc1_src}", "fc1_z" if act else "fc1_acc"))
    if act:
        parts.append(_act("fc2", "FC2_PE"))
    parts += [_residual("fc2", "FC2_PE", "x_skip2", "x_out", "fc2_residual", act), _TAIL]
    return "".join(parts).format(i=i)
