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

Methods ``reactnet`` and ``didb`` (spec §13, gsbsim/engine/golden_methods.py) add ``{L}.z`` after
each binary linear's accumulators and, for didb, replace the Q/K bits and the scores by the
HFSC bands (``block_trace_names(method)``, ``trace_names(depth, method)``).

Errors: ``InputError`` for bad images; ``IntegerOverflowError`` when the residual stream
leaves int32 or a LayerNorm's E*S2 + ln_eps reaches 2^62 (spec §1, "Overflow"); the message
names the layer (``embed``, ``blocks.{i}.proj``, ``blocks.{i}.fc2``, ``blocks.{i}.ln1``,
``blocks.{i}.ln2``, ``norm``, ``head_dist_norm``) and the first offending image and token.
"""
from __future__ import annotations

import numpy as np

from gsbsim.format.conventions import and_dot, div_round, isqrt, pack_bits, requant, xnor_dot
from gsbsim.format.model_file import ACT_METHODS, IntModel

__all__ = ["forward", "InputError", "IntegerOverflowError", "trace_names", "BLOCK_TRACE_NAMES",
           "check_images", "overflow_message", "patch_embed", "ln_stats", "ln_bits", "binary_acc",
           "split_qkv", "value_planes", "attention_scores", "softmax_probs", "probs_from_exp", "attention_planes",
           "block_trace_names",
           "gsb_context", "residual_add", "fc1_bits", "head_inputs", "head_logits", "argmax_first"]

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1
LN_LIMIT = 2 ** 62           # E*S2 + ln_eps must stay below this (spec §1, Overflow)
LN_OVERFLOW = "LayerNorm E*S2 + ln_eps reaches 2^62"
RESID_OVERFLOW = "residual stream overflows int32"
_ROWS = 2048                 # rows per chunk of the broadcast popcount products (bounds memory)

BLOCK_TRACE_NAMES = ("ln1.bits", "qkv.acc", "q.bits", "k.bits", "v.q", "v.planes", "scores", "probs",
                     "a.planes", "ctx", "proj.bits", "proj.acc", "resid1", "ln2.bits", "fc1.acc",
                     "fc1.bits", "fc2.acc", "resid2")


def block_trace_names(method: str = "gsb") -> tuple[str, ...]:
    """One block's trace names (without ``blocks.{i}.``) for a method, in execution order (§12, §13)."""
    if method not in ACT_METHODS:
        return BLOCK_TRACE_NAMES
    names: list[str] = []
    for n in BLOCK_TRACE_NAMES:
        if method == "didb" and n in ("q.bits", "k.bits", "scores"):
            if n == "q.bits":
                names += ["q.low", "q.high", "k.low", "k.high"]
            if n == "scores":
                names += ["scores.low", "scores.high", "hfsc"]
            continue
        if method == "didb" and n == "ctx":
            names.append("lap")
        names.append(n)
        if n.endswith(".acc"):
            names.append(n[:-len("acc")] + "z")
    return tuple(names)


def trace_names(depth: int, method: str = "gsb") -> list[str]:
    """All trace names of a model with `depth` blocks of `method`, in execution order."""
    names = ["input", "patch.acc", "embed"]
    for i in range(depth):
        names += [f"blocks.{i}.{n}" for n in block_trace_names(method)]
    return names + ["head.q", "head.acc", "logits", "pred"]


class InputError(ValueError):
    """The images given to a forward pass do not fit the model (message names the problem)."""


class IntegerOverflowError(ArithmeticError):
    """An integer of the model left its specified range (never wrapped silently)."""


def overflow_message(where: str, what: str, index: tuple[int, ...], value: int | None = None) -> str:
    """The one wording of an overflow error, shared by the golden and the fast path.

    `index` is (image, token) or (image, token, channel) of the first offending element in
    C order of the layer's output.
    """
    parts = ("image", "token", "channel")
    at = ", ".join(f"{p} {int(v)}" for p, v in zip(parts, index))
    val = "" if value is None else f" (value {int(value)})"
    return f"{where}: {what} at {at}{val}"


def check_images(model: IntModel, images) -> np.ndarray:
    """The images as a (B, Cin, I, I) int8 array, or InputError naming what is wrong."""
    want = (model.in_chans, model.img_size, model.img_size)
    if not isinstance(images, np.ndarray):
        raise InputError(f"images: expected a numpy int8 array of shape (B, {', '.join(map(str, want))}), "
                         f"got {type(images).__name__}")
    if images.dtype != np.int8 or images.ndim != 4 or images.shape[1:] != want:
        raise InputError(f"images: expected an int8 array of shape (B, {', '.join(map(str, want))}) "
                         f"(pixel - 128), got {images.dtype} array of shape {images.shape}")
    if images.shape[0] == 0:
        raise InputError("images: empty batch (B = 0)")
    return np.ascontiguousarray(images)


def _check_int32(x: np.ndarray, where: str) -> np.ndarray:
    """int64 residual-stream values -> int32, or IntegerOverflowError at the first offender."""
    bad = (x < INT32_MIN) | (x > INT32_MAX)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad.ravel())), bad.shape)
        raise IntegerOverflowError(overflow_message(where, RESID_OVERFLOW, idx, x[idx]))
    return x.astype(np.int32)


def _rq(x: np.ndarray, mult, bias, shift: int) -> np.ndarray:
    """rq(x, M, B, S) = (x*M + B + 2^(S-1)) >> S  (the conventions' round-half-up requant)."""
    return requant(np.asarray(x, np.int64) * np.asarray(mult, np.int64) + np.asarray(bias, np.int64), 1, shift)


# ----------------------------------------------------------------------------- §2 patch embedding
def patch_embed(model: IntModel, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(patch accumulators int32 [B, T, E], residual stream X int32 [B, N, E])."""
    a = model.arrays
    b, c, size, _ = images.shape
    p = model.patch_size
    g = size // p
    # xp[b, t, (c, ky, kx)] with t = py*g + px
    xp = images.reshape(b, c, g, p, g, p).transpose(0, 2, 4, 1, 3, 5).reshape(b, g * g, c * p * p)
    acc = xp.astype(np.int64) @ a["patch.weight"].astype(np.int64).T
    x = np.empty((b, model.num_tokens, model.embed_dim), dtype=np.int64)
    x[:, :2] = a["tokens"].astype(np.int64) + a["pos"][:2].astype(np.int64)
    x[:, 2:] = _rq(acc, a["patch.mult"], a["patch.bias"], model.shifts["patch"]) + a["pos"][2:]
    return acc.astype(np.int32), _check_int32(x, "embed")


# ----------------------------------------------------------------------------- §3 LayerNorm -> bits
def ln_stats(x: np.ndarray, ln_eps: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """D_c = E*X_c - S1 (int64 [..., E]) and sigma = isqrt(E*S2 - S1^2 + ln_eps) (int64 [...])."""
    x64 = np.asarray(x, dtype=np.int64)
    e = x64.shape[-1]
    s1 = x64.sum(axis=-1)
    s2_exact = (x64.astype(object) ** 2).sum(axis=-1)          # Python ints: cannot wrap
    too_big = np.asarray(e * s2_exact + ln_eps >= LN_LIMIT, dtype=bool)
    if too_big.any():
        idx = np.unravel_index(int(np.argmax(too_big.ravel())), too_big.shape)
        raise IntegerOverflowError(overflow_message(where, LN_OVERFLOW, idx))
    s2 = s2_exact.astype(np.int64)
    sigma = isqrt(e * s2 - s1 * s1 + ln_eps)
    return e * x64 - s1[..., None], sigma


def ln_bits(x: np.ndarray, sign: np.ndarray, thr: np.ndarray, ln_shift: int, ln_eps: int,
            where: str) -> np.ndarray:
    """bit_c = sign_c * D_c * 2^ln >= thr_c * sigma, as uint8 [..., E]."""
    d, sigma = ln_stats(x, ln_eps, where)
    lhs = sign.astype(np.int64) * d * (np.int64(1) << np.int64(ln_shift))
    rhs = thr.astype(np.int64) * sigma[..., None]
    return (lhs >= rhs).astype(np.uint8)


# ----------------------------------------------------------------------------- binary products
def binary_acc(bits: np.ndarray, weight: np.ndarray, k: int, kind: str) -> np.ndarray:
    """Accumulators of a binary linear over the last axis of `bits` [..., K] -> int64 [..., O].

    kind 'xnor' (+-1 x +-1): K - 2*pc(a XOR w);  kind 'and' ({0,1} x +-1): 2*pc(a AND w) - pc(a).
    """
    lead = bits.shape[:-1]
    rows = pack_bits(bits.reshape(-1, bits.shape[-1]))
    out = np.empty((rows.shape[0], weight.shape[0]), dtype=np.int64)
    for s in range(0, rows.shape[0], _ROWS):
        chunk = rows[s:s + _ROWS]
        out[s:s + _ROWS] = xnor_dot(chunk, weight, k) if kind == "xnor" else and_dot(chunk, weight)
    return out.reshape(lead + (weight.shape[0],))


# ----------------------------------------------------------------------------- §4 qkv and values
def split_qkv(acc: np.ndarray, q_thr, k_thr, v_offset, heads: int, value_shift: int):
    """qkv accumulators [B, N, 3E] -> Q bits, K bits (uint8 [B, H, N, d]) and Vq (int64 [B, H, N, d])."""
    b, n, e3 = acc.shape
    e = e3 // 3
    d = e // heads

    def per_head(x):  # [B, N, E] -> [B, H, N, d]
        return x.reshape(b, n, heads, d).transpose(0, 2, 1, 3)

    acc = acc.astype(np.int64)
    q = per_head((acc[..., :e] >= q_thr).astype(np.uint8))
    k = per_head((acc[..., e:2 * e] >= k_thr).astype(np.uint8))
    vq = per_head(acc[..., 2 * e:] * (np.int64(1) << np.int64(value_shift)) + v_offset)
    return np.ascontiguousarray(q), np.ascontiguousarray(k), np.ascontiguousarray(vq)


def value_planes(vq: np.ndarray, ratios, mask_stat: str) -> np.ndarray:
    """Vq [B, H, N, d] -> planes uint8 [B, G, H, N, d]: sign plane, then M_k = 256*Vq > r_k*mx OR < r_k*mn."""
    axes = (-1,) if mask_stat == "row" else (1, 2, 3)
    mx = vq.max(axis=axes, keepdims=True)
    mn = vq.min(axis=axes, keepdims=True)
    planes = [vq >= 0]
    for r in ratios:
        planes.append((256 * vq > r * mx) | (256 * vq < r * mn))
    return np.stack(planes, axis=1).astype(np.uint8)


def attention_scores(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """sc[b, h, i, j] = d - 2*pc(q_i XOR k_j), int32 [B, H, N, N]."""
    b, h, n, d = q.shape
    sc = np.empty((b, h, n, n), dtype=np.int64)
    for bi in range(b):
        for hi in range(h):
            sc[bi, hi] = xnor_dot(pack_bits(q[bi, hi]), pack_bits(k[bi, hi]), d)
    return sc.astype(np.int32)


# ----------------------------------------------------------------------------- §5 softmax and planes
def softmax_probs(scores: np.ndarray, exp_lut: np.ndarray, att_bias: np.ndarray, prob: int,
                  recip: int) -> np.ndarray:
    """A = P + att_bias with P the fixed-point softmax of each row (int64 [B, H, N, N])."""
    sc = scores.astype(np.int64)
    twice_m = sc.max(axis=-1, keepdims=True) - sc
    assert not np.any(twice_m % 2), "scores of one row differ by an even number (same parity as d)"
    return probs_from_exp(exp_lut.astype(np.int64)[twice_m // 2], att_bias, prob, recip)


def probs_from_exp(e: np.ndarray, att_bias: np.ndarray, prob: int, recip: int) -> np.ndarray:
    """A = P + att_bias from the row's exp weights e: Z = sum e, R = floor(2^recip/Z), P = rq(e*R) (§5)."""
    z = e.sum(axis=-1, keepdims=True)
    r = (np.int64(1) << np.int64(recip)) // z
    p = requant(e * r, 1, recip - prob)
    return p + att_bias.astype(np.int64)


def attention_planes(a: np.ndarray, thr1: int, ratios, mask_stat: str) -> np.ndarray:
    """A [B, H, N, N] -> planes uint8 [B, G, H, N, N]: b1 = A >= a.thr1, then M_k = 256*A > r_k*amax."""
    axes = (-1,) if mask_stat == "row" else (1, 2, 3)
    amax = a.max(axis=axes, keepdims=True)
    planes = [a >= thr1]
    planes += [256 * a > r * amax for r in ratios]
    return np.stack(planes, axis=1).astype(np.uint8)


# ----------------------------------------------------------------------------- §6 GSB A.V
def _plane_dot(a_rows: np.ndarray, s_cols: np.ndarray, m_cols: np.ndarray | None) -> np.ndarray:
    """D = 2*pc(a_i AND [M_j AND] s_j) - pc(a_i [AND M_j]) for packed rows a [N, W], columns [d, W]."""
    if m_cols is None:
        return and_dot(a_rows, s_cols)
    am = a_rows[:, None, :] & m_cols[None, :, :]
    both = np.bitwise_count(am & s_cols[None, :, :]).astype(np.int64).sum(-1)
    ones = np.bitwise_count(am).astype(np.int64).sum(-1)
    return 2 * both - ones


def gsb_context(a_planes: np.ndarray, v_planes: np.ndarray, ctx_scale: np.ndarray) -> np.ndarray:
    """ctx[b, i, h*d + j] = sum_a sum_v ctx.scale[a][v] * D[a][v] (int64 [B, N, E])."""
    b, g, h, n, _ = a_planes.shape
    d = v_planes.shape[-1]
    ctx = np.zeros((b, n, h, d), dtype=np.int64)
    scale = ctx_scale.astype(np.int64)
    for bi in range(b):
        for hi in range(h):
            # value planes as packed columns over key tokens: [d, W]
            s_cols = pack_bits(v_planes[bi, 0, hi].T)
            m_cols = [None] + [pack_bits(v_planes[bi, k, hi].T) for k in range(1, g)]
            for ai in range(g):
                a_rows = pack_bits(a_planes[bi, ai, hi])
                for vi in range(g):
                    ctx[bi, :, hi] += scale[ai, vi] * _plane_dot(a_rows, s_cols, m_cols[vi])
    return ctx.reshape(b, n, h * d)


# ----------------------------------------------------------------------------- §7, §8 MLP and residuals
def residual_add(x: np.ndarray, acc: np.ndarray, mult, bias, shift: int, where: str) -> np.ndarray:
    """X + rq(acc, mult, bias[o], shift), checked to fit int32."""
    return _check_int32(x.astype(np.int64) + _rq(acc, mult, bias, shift), where)


def fc1_bits(acc: np.ndarray, thr_hi: np.ndarray, thr_lo: np.ndarray) -> np.ndarray:
    """bit = acc >= thr_hi OR acc <= thr_lo (uint8)."""
    return ((acc >= thr_hi) | (acc <= thr_lo)).astype(np.uint8)


# ----------------------------------------------------------------------------- §9 heads
def head_inputs(x_tok: np.ndarray, gain: np.ndarray, offset: np.ndarray, k: int, ln_eps: int,
                where: str) -> np.ndarray:
    """q_c = clamp(round_half_up((gain_c*D_c + offset_c*sigma) / (sigma*2^k)), -128, 127) as int8 [B, E]."""
    d, sigma = ln_stats(x_tok, ln_eps, where)
    num = gain.astype(np.int64) * d + offset.astype(np.int64) * sigma[..., None]
    den = (sigma << np.int64(k))[..., None]
    return np.clip(div_round(num, den), -128, 127).astype(np.int8)


def head_logits(model: IntModel, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """head.q [B, 2, E] -> (head accumulators int32 [B, 2, C], logits int64 [B, C])."""
    a = model.arrays
    acc = np.stack([q[:, 0].astype(np.int64) @ a["head.weight"].astype(np.int64).T,
                    q[:, 1].astype(np.int64) @ a["head_dist.weight"].astype(np.int64).T], axis=1)
    logits = acc[:, 0] * a["head.mult"] + acc[:, 1] * a["head_dist.mult"] + a["logit.bias"]
    return acc.astype(np.int32), logits.astype(np.int64)


def argmax_first(logits: np.ndarray) -> np.ndarray:
    """Index of the largest logit of each row, ties to the lowest index (int64 [B])."""
    return np.argmax(logits, axis=-1).astype(np.int64)


# ----------------------------------------------------------------------------- the forward pass
def _block(model: IntModel, i: int, x: np.ndarray, rec) -> np.ndarray:
    """One transformer block (§3-§8) on X int32 [B, N, E]; returns the new X."""
    blk = model.block(i)
    sh = model.shifts
    e, h = model.embed_dim, model.num_heads
    p = f"blocks.{i}."

    a_bits = rec(p + "ln1.bits", ln_bits(x, blk["ln1.sign"], blk["ln1.thr"], sh["ln"], model.ln_eps, p + "ln1"))
    qkv = rec(p + "qkv.acc", binary_acc(a_bits, blk["qkv.weight"], e, "xnor").astype(np.int32))
    q, k, vq = split_qkv(qkv, blk["q.thr"], blk["k.thr"], blk["v.offset"], h, sh["value"])
    rec(p + "q.bits", q)
    rec(p + "k.bits", k)
    rec(p + "v.q", vq)
    v_pl = rec(p + "v.planes", value_planes(vq, model.ratios, model.mask_stat))
    sc = rec(p + "scores", attention_scores(q, k))
    a = rec(p + "probs", softmax_probs(sc, blk["exp_lut"], blk["att_bias"], sh["prob"], sh["recip"]))
    a_pl = rec(p + "a.planes", attention_planes(a, int(blk["a.thr1"]), model.ratios, model.mask_stat))
    ctx = rec(p + "ctx", gsb_context(a_pl, v_pl, blk["ctx.scale"]))
    pin = rec(p + "proj.bits", (ctx >= blk["proj.in_thr"]).astype(np.uint8))
    pacc = rec(p + "proj.acc", binary_acc(pin, blk["proj.weight"], e, "xnor").astype(np.int32))
    x = rec(p + "resid1", residual_add(x, pacc, blk["proj.mult"], blk["proj.bias"], sh["resid"], p + "proj"))

    m_bits = rec(p + "ln2.bits", ln_bits(x, blk["ln2.sign"], blk["ln2.thr"], sh["ln"], model.ln_eps, p + "ln2"))
    f1 = rec(p + "fc1.acc", binary_acc(m_bits, blk["fc1.weight"], e, "xnor").astype(np.int32))
    f1b = rec(p + "fc1.bits", fc1_bits(f1, blk["fc1.thr_hi"], blk["fc1.thr_lo"]))
    f2 = rec(p + "fc2.acc", binary_acc(f1b, blk["fc2.weight"], model.mlp_hidden, "and").astype(np.int32))
    return rec(p + "resid2", residual_add(x, f2, blk["fc2.mult"], blk["fc2.bias"], sh["resid"], p + "fc2"))


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
    block = _block
    if model.method in ACT_METHODS:
        from gsbsim.engine.golden_methods import block  # noqa: PLC0415 - golden_methods imports this module
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
