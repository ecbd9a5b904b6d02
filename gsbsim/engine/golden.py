"""The golden path: docs/integer_model.md as plain, readable numpy (the executable spec).

``forward(model, images, trace)`` runs the integer model on a batch of int8 images,
section by section of the spec, vectorised over the batch (every step is per image, so
the answer for one image never depends on the others). It is written for clarity, not
speed; ``gsbsim.fast`` is the packed-bit Numba path that must agree with it exactly.

Trace names (stable: they are also the names of the HLS test vectors). Every tensor has a
leading batch axis B; bits are unpacked 0/1 uint8. N tokens, E embed, H heads, d = E/H,
Hd hidden, G groups, C classes, T = N - 2 patches.

==========================  =========  ==================  ============================================
name                        dtype      shape               meaning (spec section)
==========================  =========  ==================  ============================================
input                       int8       (B, Cin, I, I)      the images (pixel - 128)                §2
patch.acc                   int32      (B, T, E)           8-bit patch-embedding accumulators      §2
embed                       int32      (B, N, E)           X after patch embedding + pos           §2
blocks.{i}.ln1.bits         uint8      (B, N, E)           norm1 -> sign bits (qkv input)          §3
blocks.{i}.qkv.acc          int32      (B, N, 3E)          qkv accumulators, channel s*E + h*d + j §4
blocks.{i}.q.bits           uint8      (B, H, N, d)        Q bits                                  §4
blocks.{i}.k.bits           uint8      (B, H, N, d)        K bits                                  §4
blocks.{i}.v.q              int64      (B, H, N, d)        Vq                                      §4
blocks.{i}.v.planes         uint8      (B, G, H, N, d)     [0] sign plane s, [k-1] mask M_k        §4
blocks.{i}.scores           int32      (B, H, N, N)        Q.K^T scores [query, key]               §4
blocks.{i}.probs            int64      (B, H, N, N)        A = P + att_bias                        §5
blocks.{i}.a.planes         uint8      (B, G, H, N, N)     [0] base b1, [k-1] mask M_k             §5
blocks.{i}.ctx              int64      (B, N, E)           GSB context, 2^-ctx                     §6
blocks.{i}.proj.bits        uint8      (B, N, E)           proj input bits                         §6
blocks.{i}.proj.acc         int32      (B, N, E)           proj accumulators                       §7
blocks.{i}.resid1           int32      (B, N, E)           X after the attention residual          §7
blocks.{i}.ln2.bits         uint8      (B, N, E)           norm2 -> sign bits (fc1 input)          §3
blocks.{i}.fc1.acc          int32      (B, N, Hd)          fc1 accumulators                        §8
blocks.{i}.fc1.bits         uint8      (B, N, Hd)          fc2 input {0,1}                         §8
blocks.{i}.fc2.acc          int32      (B, N, E)           fc2 accumulators                        §7
blocks.{i}.resid2           int32      (B, N, E)           X after the MLP residual                §7
head.q                      int8       (B, 2, E)           8-bit head inputs of tokens 0 and 1     §9
head.acc                    int32      (B, 2, C)           [0] head (token 0), [1] head_dist        §9
logits                      int64      (B, C)              logits, 2^-logit                        §9
pred                        int64      (B,)                argmax, ties to the lowest index        §9
==========================  =========  ==================  ============================================

One block, every method: ``block`` asks the method table (gsbsim/format/methods.py) for the row's
two features and calls the registered implementation of each: ``POST_LINEAR`` (``requant``: the
accumulators feed on and a §7 requantization enters the residual; ``act_unit``: the §13.1 unit,
traced as ``{L}.z``, gsbsim/engine/golden_act.py) and ``ATTENTION`` (``gsb``: §4-§6;
``hfsc_diba``: §13.2-§13.3, gsbsim/engine/golden_didb.py). The step functions are in
gsbsim/engine/golden_ops.py; the trace names of each method come from the table
(gsbsim/engine/trace.py).

Errors: ``InputError`` for bad images; ``IntegerOverflowError`` when the residual stream
leaves int32 or a LayerNorm's E*S2 + ln_eps reaches 2^62 (spec §1, "Overflow"); the message
names the layer (``embed``, ``blocks.{i}.proj``, ``blocks.{i}.fc2``, ``blocks.{i}.ln1``,
``blocks.{i}.ln2``, ``norm``, ``head_dist_norm``) and the first offending image and token.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from gsbsim.engine.errors import check_images, check_int32
from gsbsim.engine.golden_act import act_unit
from gsbsim.engine.golden_didb import diba_context, hfsc_bits, hfsc_scores, hfsc_softmax, per_head
from gsbsim.engine.golden_ops import (argmax_first, attention_planes, attention_scores, binary_acc, fc1_bits,
                                      gsb_context, head_inputs, head_logits, ln_bits, patch_embed, residual_add,
                                      softmax_probs, split_qkv, value_planes)
from gsbsim.format.model_file import IntModel

__all__ = ["forward", "block", "POST_LINEAR", "ATTENTION"]

Rec = Callable[[str, np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------- post_linear feature
class _Requant:
    """``requant``: accumulators feed on unchanged; proj and fc2 enter the residual through §7's rq."""

    value_shift = staticmethod(lambda model: model.shifts["value"])

    @staticmethod
    def output(model: IntModel, blk: dict, p: str, lin: str, acc: np.ndarray, rec: Rec) -> np.ndarray:
        return acc

    @staticmethod
    def residual(model: IntModel, blk: dict, p: str, lin: str, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        return residual_add(x, out, blk[lin + ".mult"], blk[lin + ".bias"], model.shifts["resid"], p + lin)


class _ActUnit:
    """``act_unit`` (§13.1): every binary linear's accumulators become z; the residual adds z; no value shift."""

    value_shift = staticmethod(lambda model: 0)

    @staticmethod
    def output(model: IntModel, blk: dict, p: str, lin: str, acc: np.ndarray, rec: Rec) -> np.ndarray:
        z = act_unit(acc, blk[lin + ".mult"], blk[lin + ".bias"], blk[lin + ".tok_in"], blk[lin + ".slope"],
                     blk[lin + ".out"], blk[lin + ".tok_out"], model.shifts["resid"], p + lin + ".act",
                     slope_shift=model.slope_shift)
        return rec(p + lin + ".z", z.astype(np.int32))

    @staticmethod
    def residual(model: IntModel, blk: dict, p: str, lin: str, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        return check_int32(x.astype(np.int64) + out, p + lin)


POST_LINEAR = {"requant": _Requant, "act_unit": _ActUnit}


# ----------------------------------------------------------------------------- attention feature
def _gsb_attention(model: IntModel, blk: dict, p: str, qkv: np.ndarray, value_shift: int, rec: Rec) -> np.ndarray:
    """§4-§6: Q, K sign bits, Vq and its planes, the exact exp table, attention planes, the GSB context."""
    sh = model.shifts
    q, k, vq = split_qkv(qkv, blk["q.thr"], blk["k.thr"], blk["v.offset"], model.num_heads, value_shift)
    rec(p + "q.bits", q)
    rec(p + "k.bits", k)
    rec(p + "v.q", vq)
    v_pl = rec(p + "v.planes", value_planes(vq, model.ratios, model.mask_stat))
    sc = rec(p + "scores", attention_scores(q, k))
    a = rec(p + "probs", softmax_probs(sc, blk["exp_lut"], blk["att_bias"], sh["prob"], sh["recip"]))
    a_pl = rec(p + "a.planes", attention_planes(a, int(blk["a.thr1"]), model.ratios, model.mask_stat))
    return rec(p + "ctx", gsb_context(a_pl, v_pl, blk["ctx.scale"]))


def _hfsc_diba_attention(model: IntModel, blk: dict, p: str, qkv: np.ndarray, value_shift: int,
                         rec: Rec) -> np.ndarray:
    """§13.2-§13.3: Haar bands of Q and K, two band scores, the three-level exp softmax, the DIBA context."""
    e, h, sh = model.embed_dim, model.num_heads, model.shifts
    q_low, q_high = hfsc_bits(qkv[..., :e], blk["q.thr_low"], blk["q.thr_high"], h)
    k_low, k_high = hfsc_bits(qkv[..., e:2 * e], blk["k.thr_low"], blk["k.thr_high"], h)
    for name, bits in (("q.low", q_low), ("q.high", q_high), ("k.low", k_low), ("k.high", k_high)):
        rec(p + name, bits)
    vq = rec(p + "v.q", per_head(qkv[..., 2 * e:].astype(np.int64) * (np.int64(1) << np.int64(value_shift))
                                 + blk["v.offset"], h))
    v_pl = rec(p + "v.planes", value_planes(vq, model.ratios, model.mask_stat))
    sc_low = rec(p + "scores.low", attention_scores(q_low, k_low))
    sc_high = rec(p + "scores.high", attention_scores(q_high, k_high))
    s = rec(p + "hfsc", hfsc_scores(sc_low, sc_high, blk["score.w"]))
    a = rec(p + "probs", hfsc_softmax(s, blk["exp_lo"], blk["exp_mid"], blk["exp_hi"], blk["att_bias"],
                                      sh["prob"], sh["recip"]))
    a_pl = rec(p + "a.planes", attention_planes(a, int(blk["a.thr1"]), model.ratios, model.mask_stat))
    ctx, lap = diba_context(a_pl[:, 0], v_pl[:, 0], int(blk["ctx.scale"][0, 0]), int(blk["ctx.vscale"]),
                            blk["ctx.local"])
    rec(p + "lap", lap.astype(np.int32))
    return rec(p + "ctx", ctx)


ATTENTION = {"gsb": _gsb_attention, "hfsc_diba": _hfsc_diba_attention}


# ----------------------------------------------------------------------------- the block
def block(model: IntModel, i: int, x: np.ndarray, rec: Rec) -> np.ndarray:
    """One transformer block (§3-§8, with §13 by feature) on X int32 [B, N, E]; returns the new X."""
    blk, sh, f = model.block(i), model.shifts, model.features
    post, attention = POST_LINEAR[f.post_linear], ATTENTION[f.attention]
    e, hd = model.embed_dim, model.mlp_hidden
    p = f"blocks.{i}."

    def linear(lin: str, bits: np.ndarray, k: int, kind: str) -> np.ndarray:
        acc = rec(p + lin + ".acc", binary_acc(bits, blk[lin + ".weight"], k, kind).astype(np.int32))
        return post.output(model, blk, p, lin, acc, rec)

    a_bits = rec(p + "ln1.bits", ln_bits(x, blk["ln1.sign"], blk["ln1.thr"], sh["ln"], model.ln_eps, p + "ln1"))
    qkv = linear("qkv", a_bits, e, "xnor")
    ctx = attention(model, blk, p, qkv, post.value_shift(model), rec)
    pin = rec(p + "proj.bits", (ctx >= blk["proj.in_thr"]).astype(np.uint8))
    x = rec(p + "resid1", post.residual(model, blk, p, "proj", x, linear("proj", pin, e, "xnor")))

    m_bits = rec(p + "ln2.bits", ln_bits(x, blk["ln2.sign"], blk["ln2.thr"], sh["ln"], model.ln_eps, p + "ln2"))
    f1b = rec(p + "fc1.bits", fc1_bits(linear("fc1", m_bits, e, "xnor"), blk["fc1.thr_hi"], blk["fc1.thr_lo"]))
    return rec(p + "resid2", post.residual(model, blk, p, "fc2", x, linear("fc2", f1b, hd, "and")))


def forward(model: IntModel, images: np.ndarray, trace: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits int64 [B, num_classes] of int8 images [B, Cin, I, I], and the trace (empty unless `trace`)."""
    images = check_images(model, images)
    out: dict[str, np.ndarray] = {}

    def rec(name: str, value: np.ndarray) -> np.ndarray:
        if trace:
            out[name] = value
        return value

    rec("input", images)
    acc, x = patch_embed(model, images)
    rec("patch.acc", acc)
    rec("embed", x)
    for i in range(model.depth):
        x = block(model, i, x, rec)
    a, sh = model.arrays, model.shifts
    q = np.stack([head_inputs(x[:, 0], a["norm.gain"], a["norm.offset"], sh["head_ln"], model.ln_eps, "norm"),
                  head_inputs(x[:, 1], a["head_dist_norm.gain"], a["head_dist_norm.offset"], sh["head_ln"],
                              model.ln_eps, "head_dist_norm")], axis=1)
    rec("head.q", q)
    hacc, logits = head_logits(model, q)
    rec("head.acc", hacc)
    rec("logits", logits)
    rec("pred", argmax_first(logits))
    return logits, out
