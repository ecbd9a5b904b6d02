"""The C++ of one transformer block in a generated ``gsb_top`` (gsbsim/hlsgen/project.py), per method.

A block is assembled from stanzas (format strings over the block index ``i``), so the three
arithmetics share everything they have in common (docs/integer_model.md):

* ``gsb`` (also ``bit``, ``sign``): §3-§8; the MVAU accumulators feed thresholds and
  requantized residual adds directly.
* ``reactnet`` (§13.1): an activation unit (gsb/act_unit.hpp) after each of qkv, proj, fc1 and fc2;
  its z replaces the accumulator (qkv_split with value shift 0, activate_bits, residual_add_lanes).
* ``didb`` (§13.1-§13.3): as reactnet, plus the Haar split of Q and K (gsb/haar.hpp), the two
  Q.K^T products combined by HFSC with the three-level exp softmax (gsb/hfsc.hpp) and the DIBA
  context (gsb/diba.hpp).

Every traced tensor of the method is recorded under its gsbsim trace name (GSB_TRACE).
"""
from __future__ import annotations

from gsbsim.format.methods import method_of
from gsbsim.hlsgen.dataflow import fifo_decl, process
from gsbsim.hlsgen.partition import with_partitions
from gsbsim.hw.fifo_plan import FifoDepths

__all__ = ["block_cpp", "x_word", "x_trace"]


def x_word(lanes: int) -> str:
    """The C++ word of the residual stream at ``lanes`` int32 per word (gsb/lanes.hpp); 1: int32_t,
    as the projects of before."""
    return "int32_t" if lanes == 1 else f"gsb::vec<int32_t, {lanes}>"


def x_trace(lanes: int) -> str:
    """The trace reader of a residual stream of ``lanes`` lanes (gsb/probe.hpp)."""
    return "scalars" if lanes == 1 else "lanes"


# the binary linears: (input features, output features), as C++ expressions of the config macros
_LINEAR = {"qkv": ("E", "3 * E"), "proj": ("E", "E"), "fc1": ("E", "HD"), "fc2": ("HD", "E")}


def _ln_bits(half: int, x_in: str, simd: str) -> str:
    """Fork X into LayerNorm ln{half} and the skip path x_skip{half}; the LayerNorm's bits (§3)
    in words of `simd` bits (the SIMD of the linear they feed)."""
    return (process(f"blocks.{{i}}.fork{half}",
                    f"gsb::fork({x_in}, x_ln{half}, x_skip{half}, (unsigned long)N * E, GSB_IT)") +
            process(f"blocks.{{i}}.ln{half}",
                    f"gsb::layernorm_bits<E, {simd}>(x_ln{half}, ln{half}_bits, b{{i}}_ln{half}_sign, "
                    f"b{{i}}_ln{half}_thr, SHIFT_LN, LN_EPS, LN_S2_MAX, N, \"blocks.{{i}}.ln{half}\", GSB_IT)"))


def _mvau(lin: str, bits: str, mode: str) -> str:
    """Binary linear `lin` on the MVAU (gsb::XnorMode or gsb::AndMode): the input bit stream
    `bits` -> {lin}_acc."""
    k, c = _LINEAR[lin]
    f = lin.upper()
    return process(f"blocks.{{i}}.{lin}", f"gsb::mvau<{k}, {c}, {f}_SIMD, {f}_PE, gsb::{mode}>({bits}, {lin}_acc, "
                   f"b{{i}}_{lin}_weight, {lin}_raw, N, GSB_IT)", layer=True)


_HEAD = """
// ============================================================================ block {i} ({sections})
static void block_{i}(gsb::stream<{x_in_t}>& x_in, gsb::stream<{x_out_t}>& x_out) {{
#pragma HLS DATAFLOW
    const unsigned QKV_PE = B{i}_QKV_PE, QKV_SIMD = B{i}_QKV_SIMD, QK_PE = B{i}_QK_PE, QK_SIMD = B{i}_QK_SIMD;
    const unsigned AV_PE = B{i}_AV_PE, AV_SIMD = B{i}_AV_SIMD, PROJ_PE = B{i}_PROJ_PE, PROJ_SIMD = B{i}_PROJ_SIMD;
    const unsigned FC1_PE = B{i}_FC1_PE, FC1_SIMD = B{i}_FC1_SIMD, FC2_PE = B{i}_FC2_PE, FC2_SIMD = B{i}_FC2_SIMD;
    const unsigned VP_EPC = B{i}_VALUE_PLANES_PE, AP_EPC = B{i}_ATTENTION_PLANES_PE;  // stage folding
    const unsigned SM_EPC = B{i}_SOFTMAX_PE;
    typedef gsb::mvau_shape<D, N, QK_SIMD, QK_PE> qk_shape;  // K rows: the QK unit's runtime weights
    typedef gsb::mvau_shape<N, D, AV_SIMD, AV_PE> av_shape;  // value planes: the A.V unit's runtime weights
    // whole-image attention buffers: PIPOs between processes (every key before the first score;
    // image statistics).  GSB_PIPO: static in C-simulation only (large for a thread's stack),
    // plain locals for synthesis, as Vitis' canonical dataflow form wants.
"""
_QK_BUFFERS = """\
    GSB_PIPO ap_uint<QK_SIMD> q_rows[H][N][qk_shape::SF];
    GSB_PIPO ap_uint<QK_SIMD> k_tiles[H][QK_PE][qk_shape::TILES];
"""
_QK_BUFFERS_DIDB = """\
    GSB_PIPO int32_t zqk[N][2 * E];  // z of the Q and K channels: the Haar split needs the grid neighbours
    GSB_PIPO ap_uint<QK_SIMD> q_rows[2][H][N][qk_shape::SF];  // band 0 = low, 1 = high
    GSB_PIPO ap_uint<QK_SIMD> k_tiles[2][H][QK_PE][qk_shape::TILES];
"""
_BUFFERS = """\
    GSB_PIPO int64_t vq[H][N][D];
    GSB_PIPO ap_uint<AV_SIMD> v_tiles[G][H][AV_PE][av_shape::TILES];
    GSB_PIPO int64_t att[H][N][N];
    GSB_PIPO ap_uint<AV_SIMD> a_rows[G][H][N][av_shape::SF];
    GSB_PIPO int64_t ctx[N][E];
"""
_BUFFERS_DIDB = """\
    // DIBA's fork (gsb/diba.hpp): gsb_av's copies of the planes, k_i and the sign plane for DIBA,
    // so that every PIPO has one producer and one consumer
    GSB_PIPO ap_uint<AV_SIMD> a_av[G][H][N][av_shape::SF];
    GSB_PIPO ap_uint<AV_SIMD> v_av[G][H][AV_PE][av_shape::TILES];
    GSB_PIPO ap_uint<gsb::count_bits(N)> a_ones[H][N];
    GSB_PIPO ap_uint<AV_SIMD> v_sign[H][AV_PE][av_shape::TILES];
    GSB_PIPO int64_t ctx_av[N][E];  // scale*D from gsb_av; DIBA writes ctx
#ifdef GSB_CSIM
    GSB_PIPO int32_t lap[N][E];  // traced only: no consumer in hardware (GSB_LAP_TRACE)
#endif
"""
_POLICIES = """\
    const gsb::RawPolicy<3 * E, QKV_PE> qkv_raw = {{}};
    const gsb::RawPolicy<E, PROJ_PE> proj_raw = {{}};
    const gsb::RawPolicy<HD, FC1_PE> fc1_raw = {{}};
    const gsb::RawPolicy<E, FC2_PE> fc2_raw = {{}};
"""


def _streams(i: int, fifos: FifoDepths, act: bool, didb: bool, x_in: int, x_mid: int) -> str:
    """The block's FIFOs at the depths ``fifos`` chose (gsbsim/hlsgen/dataflow.py explains the rule);
    ``x_in``, ``x_mid``: the lanes of the residual words of the block's input and of ``resid1``."""
    v = lambda t, pe: f"gsb::vec<{t}, {pe}>"   # noqa: E731
    per = lambda k: "" if k == 1 else f" (in words of {k} lanes)"   # noqa: E731
    decls = [(x_word(x_in), "x_ln1", "x_ln1", ""),
             (x_word(x_in), "x_skip1", "x_skip1",
              "N*E: the fork writes the whole tensor before the attention's first output" + per(x_in)),
             (x_word(x_mid), "x_mid", "resid1", ""),
             (x_word(x_mid), "x_ln2", "x_ln2", ""),
             (x_word(x_mid), "x_skip2", "x_skip2",
              "E: the LayerNorm reads a whole token before the MLP's first output" + per(x_mid)),
             ("ap_uint<QKV_SIMD>", "ln1_bits", "ln1.bits", ""),
             (v("int32_t", "QKV_PE"), "qkv_acc", "qkv.acc", "")]
    if didb:
        decls += [(v("int32_t", "QK_PE"), "scores_low", "scores.low", ""),
                  (v("int32_t", "QK_PE"), "scores_high", "scores.high", ""),
                  (v("int64_t", "QK_PE"), "hfsc", "hfsc", "")]
    else:
        decls.append((v("int32_t", "QK_PE"), "scores", "scores", ""))
    decls += [("ap_uint<PROJ_SIMD>", "proj_bits", "proj.bits", ""),
              (v("int32_t", "PROJ_PE"), "proj_acc", "proj.acc", ""),
              ("ap_uint<FC1_SIMD>", "ln2_bits", "ln2.bits", ""),
              (v("int32_t", "FC1_PE"), "fc1_acc", "fc1.acc", ""),
              ("ap_uint<FC2_SIMD>", "fc1_bits", "fc1.bits", ""),
              (v("int32_t", "FC2_PE"), "fc2_acc", "fc2.acc", "")]
    if act:   # z of the activation units (§13.1), in the accumulators' word layout
        decls += [(v("int32_t", f"{lin.upper()}_PE"), f"{lin}_z", f"{lin}.z", "")
                  for lin in ("qkv", "proj", "fc1", "fc2")]
    return "".join(fifo_decl(t, var, f"blocks.{i}.{name}", fifos, why).replace("{", "{{").replace("}", "}}")
                   for t, var, name, why in decls)


def _act(lin: str, pe: str) -> str:
    """The activation unit of one binary linear: raw accumulators -> z."""
    k, c = _LINEAR[lin]   # k inputs: |acc| <= k (§10), the act unit's multiplier width
    return process(f"blocks.{{i}}.{lin}.act", f"gsb::act_unit<{c}, N, {pe}, {k}>({lin}_acc, {lin}_z, b{{i}}_{lin}_act_unit, "
                   f"SHIFT_RESID, N, \"blocks.{{i}}.{lin}.act\", GSB_IT)")


_QKV_SPLIT = process("blocks.{i}.qkv_split", "gsb::qkv_split<E, H, N, QKV_PE, QK_SIMD, QK_PE>({qkv_src}, b{i}_q_thr, "
                     "b{i}_k_thr, b{i}_v_offset, {value_shift}, q_rows, k_tiles, vq, GSB_IT)")
_HAAR = (process("blocks.{i}.qkv_split", "gsb::qkv_z_split<E, H, N, QKV_PE>(qkv_z, b{i}_v_offset, zqk, vq, GSB_IT)") +
         process("blocks.{i}.haar", "gsb::haar_qk<E, H, N, GRID, QK_SIMD, QK_PE>(zqk, b{i}_q_thr_low, b{i}_q_thr_high, "
                 "b{i}_k_thr_low, b{i}_k_thr_high, q_rows, k_tiles, GSB_IT)", after=("blocks.{i}.qkv_split",)))
_VALUE_PLANES = process("blocks.{i}.value_planes", "gsb::value_planes<H, N, D, G, AV_SIMD, AV_PE, MASK_IMAGE, VP_EPC>(vq, "
                        "PLANE_RATIO, v_tiles, GSB_IT)", after=("blocks.{i}.qkv_split",))
_SCORES_SOFTMAX = (
    process("blocks.{i}.qk", "gsb::attention_qk<N, D, H, QK_SIMD, QK_PE>(q_rows, k_tiles, scores, GSB_IT)",
            layer=True, after=("blocks.{i}.qkv_split",)) +
    process("blocks.{i}.softmax", "gsb::softmax<H, N, D, QK_PE, SM_EPC>(scores, b{i}_exp_lut, b{i}_att_bias, SHIFT_PROB, "
            "SHIFT_RECIP, att, GSB_IT)"))
# the two Q.K^T products (low, high band): two processes, counted together as the layer qk
_HFSC_SOFTMAX = (
    process("blocks.{i}.qk", "gsb::attention_qk<N, D, H, QK_SIMD, QK_PE>(q_rows[0], k_tiles[0], scores_low, GSB_IT)",
            layer=True, after=("blocks.{i}.haar",)) +
    process("blocks.{i}.qk", "gsb::attention_qk<N, D, H, QK_SIMD, QK_PE>(q_rows[1], k_tiles[1], scores_high, GSB_IT)",
            layer=True, after=("blocks.{i}.haar",)) +
    process("blocks.{i}.hfsc", "gsb::hfsc_combine<H, N, QK_PE>(scores_low, scores_high, b{i}_score_w, hfsc, GSB_IT)") +
    process("blocks.{i}.softmax", "gsb::softmax_hfsc<H, N, QK_PE, B{i}_EXP_HI_LEN, SM_EPC>(hfsc, b{i}_exp_hi, b{i}_exp_mid, "
            "b{i}_exp_lo, b{i}_att_bias, SHIFT_PROB, SHIFT_RECIP, att, GSB_IT)"))
_ATTENTION_PLANES = process("blocks.{i}.attention_planes", "gsb::attention_planes<H, N, G, AV_SIMD, MASK_IMAGE, "
                            "AP_EPC>(att, b{i}_a_thr1, PLANE_RATIO, a_rows, GSB_IT)", after=("blocks.{i}.softmax",))
_AV = process("blocks.{i}.av", "gsb::gsb_av<H, N, D, G, AV_SIMD, AV_PE>(a_rows, v_tiles, b{i}_ctx_scale, ctx, GSB_IT)",
              layer=True, after=("blocks.{i}.attention_planes", "blocks.{i}.value_planes"))
# didb: the fork gives gsb_av its copies of the planes and DIBA k_i and the sign plane; ctx_av holds
# ctx.scale * D after av, DIBA adds the differential and Laplacian terms into ctx
_AV_DIBA = (
    process("blocks.{i}.diba_fork", "gsb::diba_fork<H, N, D, AV_SIMD, AV_PE>(a_rows, v_tiles, a_av, v_av, a_ones, "
            "v_sign, GSB_IT)", after=("blocks.{i}.attention_planes", "blocks.{i}.value_planes")) +
    process("blocks.{i}.av", "gsb::gsb_av<H, N, D, G, AV_SIMD, AV_PE>(a_av, v_av, b{i}_ctx_scale, ctx_av, GSB_IT)",
            layer=True, after=("blocks.{i}.diba_fork",)) +
    process("blocks.{i}.diba", "gsb::diba_context<H, N, D, GRID, AV_SIMD, AV_PE>(a_ones, v_sign, "
            "b{i}_ctx_scale[0][0], b{i}_ctx_vscale, b{i}_ctx_local, ctx_av, ctx, GSB_LAP_TRACE(lap), GSB_IT)",
            after=("blocks.{i}.av",)))   # (and diba_fork, which av waits for already)


def _proj(didb: bool) -> str:
    return (process("blocks.{i}.ctx_threshold", "gsb::ctx_threshold<N, E, PROJ_SIMD>(ctx, b{i}_proj_in_thr, proj_bits, "
                    "GSB_IT)", after=("blocks.{i}.diba" if didb else "blocks.{i}.av",)) +
            _mvau("proj", "proj_bits", "XnorMode"))


def _residual(lin: str, pe: str, x_in: str, x_out: str, stage: str, act: bool) -> str:
    """X + the layer's output: requantized accumulators (§7) or the activation unit's z (§13.1)."""
    if not act:
        call = (f"gsb::requant_residual_add<E, {pe}, {_LINEAR[lin][0]}>({x_in}, {lin}_acc, {x_out}, b{{i}}_{lin}_mult, "
                f"b{{i}}_{lin}_bias, SHIFT_RESID, N, \"blocks.{{i}}.{lin}\", GSB_IT)")
    else:
        call = f"gsb::residual_add_lanes<E, {pe}>({x_in}, {lin}_z, {x_out}, N, \"blocks.{{i}}.{lin}\", GSB_IT)"
    return process(f"blocks.{{i}}.{stage}", call)


_FC1_BITS = process("blocks.{i}.fc1_act", "gsb::activate_bits<HD, FC1_PE, FC2_SIMD>({fc1_src}, fc1_bits, b{i}_fc1_act, "
                    "N, GSB_IT)")


def _traces(act: bool, didb: bool, x_mid: int, x_out: int) -> str:
    """The block's traced tensors, recorded after its processes ran (C-simulation only)."""
    t = ['GSB_TRACE("blocks.{i}.ln1.bits", gsb::trace::bits<QKV_SIMD>(ln1_bits, E))',
         'GSB_TRACE("blocks.{i}.qkv.acc", gsb::trace::lanes(qkv_acc))']
    if act:
        t.append('GSB_TRACE("blocks.{i}.qkv.z", gsb::trace::lanes(qkv_z))')
    if didb:
        t += ['GSB_TRACE("blocks.{i}.q.low", gsb::trace::bit_rows<QK_SIMD, qk_shape::SF>(&q_rows[0][0][0], H * N, D))',
              'GSB_TRACE("blocks.{i}.q.high", gsb::trace::bit_rows<QK_SIMD, qk_shape::SF>(&q_rows[1][0][0], H * N, D))',
              'GSB_TRACE("blocks.{i}.k.low", gsb::trace::tiles<D, N, QK_SIMD, QK_PE>(&k_tiles[0][0][0], H, false))',
              'GSB_TRACE("blocks.{i}.k.high", gsb::trace::tiles<D, N, QK_SIMD, QK_PE>(&k_tiles[1][0][0], H, false))']
    else:
        t += ['GSB_TRACE("blocks.{i}.q.bits", gsb::trace::bit_rows<QK_SIMD, qk_shape::SF>(&q_rows[0][0], H * N, D))',
              'GSB_TRACE("blocks.{i}.k.bits", gsb::trace::tiles<D, N, QK_SIMD, QK_PE>(&k_tiles[0][0], H, false))']
    t += ['GSB_TRACE("blocks.{i}.v.q", gsb::trace::flat(&vq[0][0][0], (std::size_t)H * N * D))',
          'GSB_TRACE("blocks.{i}.v.planes", gsb::trace::tiles<N, D, AV_SIMD, AV_PE>(&v_tiles[0][0][0], G * H, true))']
    if didb:
        t += ['GSB_TRACE("blocks.{i}.scores.low", gsb::trace::lanes(scores_low))',
              'GSB_TRACE("blocks.{i}.scores.high", gsb::trace::lanes(scores_high))',
              'GSB_TRACE("blocks.{i}.hfsc", gsb::trace::lanes(hfsc))']
    else:
        t.append('GSB_TRACE("blocks.{i}.scores", gsb::trace::lanes(scores))')
    t += ['GSB_TRACE("blocks.{i}.probs", gsb::trace::flat(&att[0][0][0], (std::size_t)H * N * N))',
          'GSB_TRACE("blocks.{i}.a.planes", gsb::trace::bit_rows<AV_SIMD, av_shape::SF>(&a_rows[0][0][0], G * H * N, N))',
          'GSB_TRACE("blocks.{i}.ctx", gsb::trace::flat(&ctx[0][0], (std::size_t)N * E))']
    if didb:
        t.append('GSB_TRACE("blocks.{i}.lap", gsb::trace::flat(&lap[0][0], (std::size_t)N * E))')
    t += ['GSB_TRACE("blocks.{i}.proj.bits", gsb::trace::bits<PROJ_SIMD>(proj_bits, E))',
          'GSB_TRACE("blocks.{i}.proj.acc", gsb::trace::lanes(proj_acc))']
    if act:
        t.append('GSB_TRACE("blocks.{i}.proj.z", gsb::trace::lanes(proj_z))')
    t += [f'GSB_TRACE("blocks.{{i}}.resid1", gsb::trace::{x_trace(x_mid)}(x_mid))',
          'GSB_TRACE("blocks.{i}.ln2.bits", gsb::trace::bits<FC1_SIMD>(ln2_bits, E))',
          'GSB_TRACE("blocks.{i}.fc1.acc", gsb::trace::lanes(fc1_acc))']
    if act:
        t.append('GSB_TRACE("blocks.{i}.fc1.z", gsb::trace::lanes(fc1_z))')
    t += ['GSB_TRACE("blocks.{i}.fc1.bits", gsb::trace::bits<FC2_SIMD>(fc1_bits, HD))',
          'GSB_TRACE("blocks.{i}.fc2.acc", gsb::trace::lanes(fc2_acc))']
    if act:
        t.append('GSB_TRACE("blocks.{i}.fc2.z", gsb::trace::lanes(fc2_z))')
    t.append(f'GSB_TRACE("blocks.{{i}}.resid2", gsb::trace::{x_trace(x_out)}(x_out))')
    return "#ifdef GSB_CSIM\n" + "".join(f"    {x}\n" for x in t) + "#endif\n"


def block_cpp(i: int, method: str, fifos: FifoDepths, lanes: tuple[int, int, int] = (1, 1, 1)) -> str:
    """The C++ function ``block_{i}`` of a generated top for a model of ``method``: a DATAFLOW
    region of one process per kernel (gsbsim/hlsgen/dataflow.py), its FIFOs at ``fifos``' depths;
    ``lanes``: int32 per residual word of its input, of resid1 and of its output (gsb/lanes.hpp)."""
    x_in, x_mid, x_out = lanes
    f = method_of(method)
    act, didb = f.act_unit, f.attention == "hfsc_diba"
    sections = "§3-§8, §13" if didb else "§3-§8, §13.1" if act else "§3-§8"
    parts = [_HEAD.replace("{sections}", sections).replace("{x_in_t}", x_word(x_in)).replace("{x_out_t}", x_word(x_out)),
             _QK_BUFFERS_DIDB if didb else _QK_BUFFERS, _BUFFERS, _BUFFERS_DIDB if didb else "", _POLICIES,
             _streams(i, fifos, act, didb, x_in, x_mid), '    GSB_REGION(df, "blocks.{i}")\n',
             "    // ---- attention\n", _ln_bits(1, "x_in", "QKV_SIMD"), _mvau("qkv", "ln1_bits", "XnorMode")]
    if act:
        parts.append(_act("qkv", "QKV_PE"))
    if didb:
        parts.append(_HAAR)
    else:
        parts.append(_QKV_SPLIT.replace("{qkv_src}", "qkv_z" if act else "qkv_acc")
                     .replace("{value_shift}", "0" if act else "SHIFT_VALUE"))
    parts += [_VALUE_PLANES, _HFSC_SOFTMAX if didb else _SCORES_SOFTMAX, _ATTENTION_PLANES, _AV_DIBA if didb else _AV]
    parts.append(_proj(didb))
    if act:
        parts.append(_act("proj", "PROJ_PE"))
    parts += [_residual("proj", "PROJ_PE", "x_skip1", "x_mid", "proj_residual", act),
              "    // ---- MLP\n", _ln_bits(2, "x_mid", "FC1_SIMD"), _mvau("fc1", "ln2_bits", "XnorMode")]
    if act:
        parts.append(_act("fc1", "FC1_PE"))
    parts.append(_FC1_BITS.replace("{fc1_src}", "fc1_z" if act else "fc1_acc"))
    parts.append(_mvau("fc2", "fc1_bits", "AndMode"))
    if act:
        parts.append(_act("fc2", "FC2_PE"))
    parts += [_residual("fc2", "FC2_PE", "x_skip2", "x_out", "fc2_residual", act), "    GSB_JOIN(df)\n",
              _traces(act, didb, x_mid, x_out), "}}\n"]
    return with_partitions("".join(parts).format(i=i))   # ARRAY_PARTITION pragmas (gsbsim/hlsgen/partition.py)
