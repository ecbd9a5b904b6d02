"""LUT / BRAM18 / DSP of every non-MVAU process of the generated dataflow: an estimate, not synthesis.

Each process (the names of gsbsim/hw/stages.py ``stage_iterations``) is a sum of the primitives of
gsbsim/hw/primitives.py over its datapath as the kernel in hls/include/gsb computes it, at the
widths of gsbsim/hw/widths.py (the spec's bounds), times its parallelism:

* ``P`` = ``lanes(name, folding, header)``: the elements the process itself handles per cycle,
  as gsbsim/hw/stages.py counts them: a foldable stage's own PE; a residual-stream reader's
  input lanes (LayerNorm and final LayerNorm statistics); the residual adds' and the patch
  embedding's gcd chunk; 1 for a stage without a parallelism parameter (the one accessor);
* ``W`` = ``word_lanes(name, folding)``: the lanes of the layer word the process reads or
  writes per cycle (``stages.driver``: the act units and qkv split read PE accumulators per
  cycle, a LayerNorm writes one SIMD-bit word per cycle, ...), 1 where none.

Plus one loop counter per process (``counter``), and ``blocks.<i>.av.scale``: the A.V unit's
scale-and-accumulate of the G*G plane pairs (gsb_av), which the FINN-R MVAU model of the av
layer does not contain. The Q/K thresholds of qkv and fc1's two thresholds are FINN-R's
``thr + comp`` term of those MVAUs (T = 1, 2) and are not counted again in qkv_split / fc1_act.
Every formula is in docs/costs.md §5.2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from gsbsim.format.methods import method_of
from gsbsim.format.model_file import EXP_LO_SIZE, exp_hi_length
from gsbsim.hw.costs import shape_of
from gsbsim.hw.primitives import ZERO, Cost, add, clog2, cmul, counter, div, memory, mul, mux, table
from gsbsim.hw.stages import driver, lanes_per_cycle, pe_of, stage_iterations
from gsbsim.hw.widths import Widths, mult_bits, widths

__all__ = ["StageResources", "lanes", "word_lanes", "stage_resources", "FORMULAS"]


def lanes(name: str, folding: Mapping[str, Any], header: Mapping[str, Any] | None = None,
          per_cycle: Mapping[str, int] | None = None) -> int:
    """Elements per cycle of stage ``name``, the one place a stage's own parallelism is read: the
    residual stream's processes (with ``header``) what stages.lanes_per_cycle says (the counts
    of stage_iterations divide by it); any other stage its PE when the folding has an entry for
    it (the foldable stages), else 1. ``per_cycle``: lanes_per_cycle already computed."""
    if per_cycle is None and header is not None:
        per_cycle = lanes_per_cycle(header, folding)
    return (per_cycle or {}).get(name, pe_of(folding, name))


# words a stage reads that do not set its cycle count (so stages.driver does not list them)
_WORDS = {"diba_fork": ("av", "simd")}   # k_i: the popcount of one AV_SIMD-bit plane word per cycle


def word_lanes(name: str, folding: Mapping[str, Any]) -> int:
    """Lanes of the layer word stage ``name`` reads or writes per cycle (1 where none)."""
    d = driver(name)
    parts = name.split(".", 2)
    if d is None and parts[0] == "blocks" and len(parts) == 3 and parts[2] in _WORDS:
        lin, what = _WORDS[parts[2]]
        d = (f"blocks.{parts[1]}.{lin}", what)
    return getattr(folding[d[0]], d[1]) if d else 1


@dataclass(frozen=True)
class StageResources:
    name: str
    lanes: int          # P
    word_lanes: int     # W
    parts: dict         # part -> Cost, summed in ``cost``

    @property
    def cost(self) -> Cost:
        return sum(self.parts.values(), ZERO)

    @property
    def lut(self) -> int:
        return self.cost.lut

    @property
    def bram18(self) -> int:
        return self.cost.bram18

    @property
    def dsp(self) -> int:
        return self.cost.dsp


@dataclass(frozen=True)
class _Ctx:
    """What a formula needs: the shape, the widths, and the stage's P and W."""
    e: int
    n: int
    h: int
    d: int
    hd: int
    g: int
    c: int
    pixels: int
    exp_hi: int
    w: Widths
    P: int
    W: int


def _tree(k: int, cost: Cost) -> Cost:
    """The k - 1 adders (comparators) that reduce k lanes to one."""
    return cost * max(k - 1, 0)


def _fork(x: _Ctx) -> dict:
    return {}


def _im2col(x: _Ctx) -> dict:
    return {"address": x.W * add(clog2(x.pixels)),
            "pixels PIPO (x2, W banks)": 2 * memory(x.pixels, 8, x.W)}


def _embed(x: _Ctx) -> dict:
    a, w, m = x.w.acc["patch"], x.w, mult_bits(x.w.acc_max["patch"])
    return {"requant": x.P * (mul(a, m) + add(w.bias + 1)), "pos add": x.P * add(w.x),
            "mult, bias": memory(x.e, m + w.bias, x.P), "pos, tokens": memory((x.n + 2) * x.e, w.x, x.P)}


def _layernorm(x: _Ctx) -> dict:
    w = x.w
    lane = add(w.s1) + mul(w.x, w.x) + add(w.s2) + add(w.s2)          # S1, X^2, S2, the 2^62 check
    return {"statistics": x.P * lane + _tree(x.P, add(w.s1) + add(w.s2)),
            "variance": cmul(w.s2, x.e) + mul(w.s1, w.s1) + 2 * add(w.s2),
            "isqrt (sequential)": 2 * add(w.s2),
            "compare": x.W * (cmul(w.x, x.e) + add(w.dev) + add(w.dev) + mul(w.ln_thr, w.sigma)
                              + add(max(w.ln_lhs, w.ln_thr + w.sigma))),
            "thr, sign": memory(x.e, w.ln_thr + 2, x.W)}


def _qkv_split(x: _Ctx) -> dict:
    return {"value": x.W * add(x.w.vq), "v.offset": memory(x.e, 55, x.W)}


def _haar(x: _Ctx) -> dict:
    w = x.w
    return {"S4, high band": x.P * (3 * add(w.haar) + add(w.haar + 2)),
            "compare": x.P * 2 * add(max(w.haar + 2, w.haar_thr)),
            "thresholds": memory(2 * x.e, 2 * w.haar_thr, x.P)}


def _value_planes(x: _Ctx) -> dict:
    w, m = x.w, x.g - 1
    return {"max, min": x.P * 2 * add(w.vq) + _tree(x.P, 2 * add(w.vq)),
            "masks": x.P * 2 * m * add(w.vq + 9), "ratio products (per row)": 2 * m * mul(w.vq, 9)}


def _softmax_tail(x: _Ctx) -> dict:
    """Z, the row reciprocal, the probabilities and the attention bias (§5), shared by both softmaxes."""
    w = x.w
    return {"sum": x.P * add(w.z_sum) + _tree(x.P, add(w.z_sum)),
            "reciprocal (divider)": div(w.recip + w.prob, w.z_sum),
            "probabilities": x.P * (mul(w.exp, w.recip) + add(w.exp + w.recip) + add(w.att)),
            "att_bias": memory(x.h * x.n * x.n, 32, x.P)}


def _softmax(x: _Ctx) -> dict:
    w, s = x.w, x.w.acc["qk"]
    return {"row max": x.W * add(s) + _tree(x.W, add(s)),
            "exp": x.P * add(s) + table(x.d + 1, w.exp, x.P), **_softmax_tail(x)}


def _softmax_hfsc(x: _Ctx) -> dict:
    w = x.w
    return {"row max": x.W * add(w.hfsc) + _tree(x.W, add(w.hfsc)),
            "exp (three tables)": x.P * (add(w.hfsc) + 2 * mul(w.exp, w.exp) + 2 * add(w.exp + 1) + add(w.hfsc))
            + table(x.exp_hi, w.exp, x.P) + 2 * table(EXP_LO_SIZE, w.exp, x.P),
            **_softmax_tail(x)}


def _hfsc(x: _Ctx) -> dict:
    s = x.w.acc["qk"]
    return {"combine": x.W * (2 * mul(25, s) + add(x.w.hfsc)), "score.w": memory(2 * x.h, 25)}


def _attention_planes(x: _Ctx) -> dict:
    w, m = x.w, x.g - 1
    return {"base plane, max": x.P * 2 * add(w.att) + _tree(x.P, add(w.att)),
            "masks": x.P * m * add(w.att + 9), "ratio products (per row)": m * mul(w.att, 9)}


def _av_scale(x: _Ctx) -> dict:
    w = x.w
    return {"scale x D + accumulate": x.W * (mul(w.ctx_scale, w.acc["av"] + 1) + add(w.ctx)),
            "ctx.scale": memory(x.g * x.g, w.ctx_scale)}


def _diba_fork(x: _Ctx) -> dict:
    kb = clog2(x.n + 1) + 1
    return {"k_i popcount": add(x.W) + add(kb)}          # one W-bit word of the plane row per cycle, accumulated


def _diba(x: _Ctx) -> dict:
    w, kb = x.w, clog2(x.n + 1) + 1
    return {"row term (scale*k - vscale)": mul(w.ctx_scale, kb) + add(w.ctx_scale + kb),
            "lap (8 neighbours)": x.P * (8 * add(4)),
            "local*lap, sums": x.P * (mul(w.ctx_scale, 5) + 3 * add(w.ctx)),
            "vscale, local": memory(x.h + 1, w.ctx_scale)}


def _ctx_threshold(x: _Ctx) -> dict:
    return {"compare": x.W * add(64), "proj.in_thr": memory(x.e, 64, x.W)}   # one proj input word per cycle


def _residual(layer: str) -> Callable[[_Ctx], dict]:
    def f(x: _Ctx) -> dict:
        a, w = x.w.acc[layer], x.w
        return {"requant": x.P * (mul(a, mult_bits(w.acc_max[layer])) + add(w.bias + 1)), "add": x.P * add(w.x),
                "bias": memory(x.e, w.bias, x.P)}
    return f


def _residual_lanes(x: _Ctx) -> dict:
    return {"add": x.P * add(x.w.x)}


def _fc1_act(x: _Ctx) -> dict:
    return {}   # the two thresholds are FINN-R's thr + comp of fc1; packing the bits is wiring


def _act(layer: str, rows: Callable[[_Ctx], int]) -> Callable[[_Ctx], dict]:
    def f(x: _Ctx) -> dict:
        a, w = x.w.acc[layer], x.w
        lane = (mul(a, mult_bits(w.acc_max[layer])) + 2 * add(w.act_u) + mul(32, w.slope) + add(32 + w.slope)
                + mux(32, 2) + 2 * add(w.z + 1))
        return {"u, PReLU, offsets": x.W * lane, "bias, slope, out": memory(rows(x), w.bias + w.slope + 31, x.W),
                "tok_in, tok_out": memory(x.n, w.bias + 31)}
    return f


def _final_norm(x: _Ctx) -> dict:
    w = x.w
    lane = add(w.s1) + mul(w.x, w.x) + add(w.s2) + add(w.s2)          # as a LayerNorm's, L lanes per cycle
    step = add(w.den + 9) + mux(w.den + 9, 2)                          # quotient8: r < 256*den, compare-subtract
    return {"statistics": x.P * lane + _tree(x.P, add(w.s1) + add(w.s2)),
            "variance": cmul(w.s2, x.e) + mul(w.s1, w.s1) + 2 * add(w.s2),
            "isqrt (sequential)": 2 * add(w.s2),
            "num": x.W * (cmul(w.x, x.e) + add(w.dev) + mul(w.gain, w.dev) + mul(w.offset, w.sigma) + add(w.num)),
            "quotient8 (8 restoring steps)": x.W * (add(w.num + 1) + 8 * step),
            "clamp": x.W * 2 * add(w.num + 2 - w.den),
            "gain, offset": memory(2 * x.e, w.gain + w.offset, x.W), "token": memory(x.e, w.x, x.P)}


def _logits(x: _Ctx) -> dict:
    a, w = x.w.acc["head"], x.w
    return {"acc buffer": memory(x.c, a, x.W), "combine": x.W * (2 * mul(a, mult_bits(w.acc_max["head"])) + 2 * add(w.logit)),
            "logit.bias": memory(x.c, w.bias, x.W)}


def _argmax(x: _Ctx) -> dict:
    w, ib = x.w, clog2(x.c)
    return {"compare": x.W * add(w.logit) + _tree(x.W, add(w.logit) + mux(w.logit + ib, 2))}


# process (blocks' names without the "blocks.<i>." prefix) -> formula, per method feature
_TOP: dict[str, Callable[[_Ctx], dict]] = {
    "load_image": _fork, "im2col": _im2col, "embed": _embed, "final_norm": _final_norm,
    "logits": _logits, "logits_out": _fork, "argmax": _argmax}
_BLOCK: dict[str, Callable[[_Ctx], dict]] = {
    "fork1": _fork, "fork2": _fork, "ln1": _layernorm, "ln2": _layernorm, "qkv_split": _qkv_split,
    "value_planes": _value_planes, "softmax": _softmax, "attention_planes": _attention_planes,
    "ctx_threshold": _ctx_threshold, "proj_residual": _residual("proj"), "fc2_residual": _residual("fc2"),
    "fc1_act": _fc1_act, "haar": _haar, "hfsc": _hfsc, "diba_fork": _diba_fork, "diba": _diba,
    "qkv.act": _act("qkv", lambda x: 3 * x.e), "proj.act": _act("proj", lambda x: x.e),
    "fc1.act": _act("fc1", lambda x: x.hd), "fc2.act": _act("fc2", lambda x: x.e)}
FORMULAS = {**_TOP, **{f"blocks.*.{k}": v for k, v in _BLOCK.items()}}


def _formula(name: str, act: bool, didb: bool) -> Callable[[_Ctx], dict]:
    if name in _TOP:
        return _TOP[name]
    k = name.split(".", 2)[2]
    if didb and k == "softmax":
        return _softmax_hfsc
    if act and k in ("proj_residual", "fc2_residual"):
        return _residual_lanes
    return _BLOCK[k]


def stage_resources(header: Mapping[str, Any], folding: Mapping[str, Any]) -> list[StageResources]:
    """The estimate of every non-MVAU process (``stage_iterations``' names, in its order), then
    one ``blocks.<i>.av.scale`` per block."""
    s = shape_of(header)
    f = method_of(s.method)
    act, didb = f.act_unit, f.attention == "hfsc_diba"
    iters = stage_iterations(header, folding)
    base = dict(e=s.embed_dim, n=s.num_tokens, h=s.num_heads, d=s.head_dim, hd=s.mlp_hidden, g=s.groups,
                c=s.num_classes, pixels=s.in_chans * s.img_size ** 2, exp_hi=exp_hi_length(s.prob), w=widths(header))
    per = lanes_per_cycle(header, folding)
    out = []
    for name, n_it in iters.items():
        P, W = lanes(name, folding, per_cycle=per), word_lanes(name, folding)
        parts = dict(_formula(name, act, didb)(_Ctx(**base, P=P, W=W)))
        parts["control"] = counter(n_it)
        out.append(StageResources(name, P, W, parts))
    for i in range(s.depth):
        av = folding[f"blocks.{i}.av"]
        out.append(StageResources(f"blocks.{i}.av.scale", 1, av.pe, _av_scale(_Ctx(**base, P=1, W=av.pe))))
    return out
