"""The fast path: the integer model on packed bits with Numba (must equal gsbsim.golden exactly).

Same signature, trace names, dtypes and values as ``gsbsim.golden.forward`` (see its
docstring for the trace table). The batch is processed layer by layer with all tokens of
all images stacked as rows, so the binary linears are single large calls of the packed
XNOR/AND-popcount kernels of ``gsbsim.kernels``; attention runs per (image, head) with the
same kernels (Q.K^T with ``xnor_gemm``, the GSB A.V with ``gsb_av``). LayerNorm, softmax,
thresholds, masks, requantization and the 8-bit patch embedding and heads are jitted
integer loops in this module. Bits stay packed (uint64, LSB first) between layers and are
unpacked only for the trace. Overflow checks are the golden path's, with its messages.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .conventions import unpack_bits
from . import golden
from .golden import (LN_OVERFLOW, RESID_OVERFLOW, IntegerOverflowError, InputError, check_images,
                     overflow_message)
from .kernels import and_gemm, gsb_av, pack_rows_2sided, pack_rows_ge, xnor_gemm
from .model_file import IntModel

__all__ = ["forward", "InputError", "IntegerOverflowError"]

_JIT = dict(cache=True, nogil=True, boundscheck=False)
LN_LIMIT = np.int64(golden.LN_LIMIT)
I32_MIN, I32_MAX = np.int64(golden.INT32_MIN), np.int64(golden.INT32_MAX)


# ============================================================================ jitted helpers
@njit(**_JIT)
def _isqrt(v):
    """floor(sqrt(v)) for 0 <= v < 2^62 (float guess, then exact integer correction)."""
    r = np.int64(np.sqrt(np.float64(v)))
    while r * r > v:
        r -= 1
    while (r + 1) * (r + 1) <= v:
        r += 1
    return r


@njit(**_JIT)
def _ln_row(x, m, eps):
    """(S1, sigma) of row m of X int32 [M, E]; sigma = -1 when E*S2 + eps >= 2^62 (spec §1)."""
    e = x.shape[1]
    s1 = np.int64(0)
    s2 = np.int64(0)
    for c in range(e):
        v = np.int64(x[m, c])
        s1 += v
        s2 += v * v              # s2 < 2^62 before, v*v <= 2^62: no wrap
        if s2 >= LN_LIMIT:
            return s1, np.int64(-1)
    if s2 > (LN_LIMIT - 1 - eps) // e:
        return s1, np.int64(-1)
    return s1, _isqrt(e * s2 - s1 * s1 + eps)


@njit(**_JIT)
def _bit_word(bits, b, on):
    return bits | (np.uint64(1) << np.uint64(b)) if on else bits


@njit(**_JIT)
def _patch_embed(images, weight, mult, bias, pos, tokens, p, shift):
    """§2: (acc int32 [B, T, E], X int32 [B, N, E], first bad flat index or -1, its value)."""
    b_n, c_n, size, _ = images.shape
    g = size // p
    e = weight.shape[0]
    n = g * g + 2
    acc = np.empty((b_n, g * g, e), dtype=np.int32)
    x = np.empty((b_n, n, e), dtype=np.int32)
    half = np.int64(1) << np.int64(shift - 1)
    bad, bad_val = -1, np.int64(0)
    xp = np.empty(c_n * p * p, dtype=np.int64)
    for b in range(b_n):
        for t in range(2):  # cls and distillation tokens
            for o in range(e):
                val = np.int64(tokens[t, o]) + np.int64(pos[t, o])
                if (val < I32_MIN or val > I32_MAX) and bad < 0:
                    bad, bad_val = (b * n + t) * e + o, val
                x[b, t, o] = np.int32(val)
        for t in range(g * g):
            py, px = t // g, t % g
            k = 0
            for c in range(c_n):
                for ky in range(p):
                    for kx in range(p):
                        xp[k] = images[b, c, py * p + ky, px * p + kx]
                        k += 1
            for o in range(e):
                s = np.int64(0)
                for k in range(xp.shape[0]):
                    s += np.int64(weight[o, k]) * xp[k]
                acc[b, t, o] = np.int32(s)
                val = ((s * mult[o] + bias[o] + half) >> np.int64(shift)) + np.int64(pos[t + 2, o])
                if (val < I32_MIN or val > I32_MAX) and bad < 0:
                    bad, bad_val = (b * n + t + 2) * e + o, val
                x[b, t + 2, o] = np.int32(val)
    return acc, x, bad, bad_val


@njit(**_JIT)
def _ln_bits(x, sign, thr, ln_shift, eps):
    """§3: packed bits uint64 [M, W(E)] of sign*D*2^ln >= thr*sigma; bad row (or -1)."""
    m_n, e = x.shape
    out = np.zeros((m_n, (e + 63) // 64), dtype=np.uint64)
    scale = np.int64(1) << np.int64(ln_shift)
    for m in range(m_n):
        s1, sigma = _ln_row(x, m, eps)
        if sigma < 0:
            return out, m
        for c in range(e):
            d = e * np.int64(x[m, c]) - s1
            on = np.int64(sign[c]) * d * scale >= thr[c] * sigma
            out[m, c >> 6] = _bit_word(out[m, c >> 6], c & 63, on)
    return out, -1


@njit(**_JIT)
def _split_qkv(acc, n_tok, heads, q_thr, k_thr, v_offset, value_shift, ratios, image_stat):
    """§4: Q, K bits packed per head [B, H, N, W(d)], Vq int64 [B, H, N, d], and the value planes
    packed along the key tokens: sign [B, H, d, W(N)], masks [B, H, G-1, d, W(N)]."""
    rows, e3 = acc.shape
    e = e3 // 3
    b_n = rows // n_tok
    d = e // heads
    g1 = ratios.shape[0]
    wd, wn = (d + 63) // 64, (n_tok + 63) // 64
    q = np.zeros((b_n, heads, n_tok, wd), dtype=np.uint64)
    k = np.zeros((b_n, heads, n_tok, wd), dtype=np.uint64)
    vq = np.empty((b_n, heads, n_tok, d), dtype=np.int64)
    vs = np.zeros((b_n, heads, d, wn), dtype=np.uint64)
    vm = np.zeros((b_n, heads, g1, d, wn), dtype=np.uint64)
    vscale = np.int64(1) << np.int64(value_shift)
    for b in range(b_n):
        for t in range(n_tok):
            r = b * n_tok + t
            for h in range(heads):
                for j in range(d):
                    c = h * d + j
                    a = np.int64(acc[r, c])
                    q[b, h, t, j >> 6] = _bit_word(q[b, h, t, j >> 6], j & 63, a >= q_thr[c])
                    a = np.int64(acc[r, e + c])
                    k[b, h, t, j >> 6] = _bit_word(k[b, h, t, j >> 6], j & 63, a >= k_thr[c])
                    v = np.int64(acc[r, 2 * e + c]) * vscale + v_offset[c]
                    vq[b, h, t, j] = v
                    vs[b, h, j, t >> 6] = _bit_word(vs[b, h, j, t >> 6], t & 63, v >= 0)
        if g1 == 0:
            continue
        # mask statistic: per (token, head) row, or over the whole image
        mx_img, mn_img = vq[b, 0, 0, 0], vq[b, 0, 0, 0]
        if image_stat:
            for h in range(heads):
                for t in range(n_tok):
                    for j in range(d):
                        mx_img = max(mx_img, vq[b, h, t, j])
                        mn_img = min(mn_img, vq[b, h, t, j])
        for h in range(heads):
            for t in range(n_tok):
                mx, mn = mx_img, mn_img
                if not image_stat:
                    mx, mn = vq[b, h, t, 0], vq[b, h, t, 0]
                    for j in range(d):
                        mx = max(mx, vq[b, h, t, j])
                        mn = min(mn, vq[b, h, t, j])
                for kk in range(g1):
                    r_k = ratios[kk]
                    for j in range(d):
                        v256 = 256 * vq[b, h, t, j]
                        on = v256 > r_k * mx or v256 < r_k * mn
                        vm[b, h, kk, j, t >> 6] = _bit_word(vm[b, h, kk, j, t >> 6], t & 63, on)
    return q, k, vq, vs, vm


@njit(**_JIT)
def _softmax_planes(scores, exp_lut, att_bias, prob, recip, thr1, ratios, image_stat):
    """§5: A = P + att_bias (int64 [B, H, N, N]) and its planes packed along keys [B, H, G, N, W(N)]."""
    b_n, heads, n, _ = scores.shape
    g1 = ratios.shape[0]
    wn = (n + 63) // 64
    a = np.empty((b_n, heads, n, n), dtype=np.int64)
    planes = np.zeros((b_n, heads, g1 + 1, n, wn), dtype=np.uint64)
    one_r = np.int64(1) << np.int64(recip)
    sh = np.int64(recip - prob)
    half = np.int64(1) << (sh - 1)
    e = np.empty(n, dtype=np.int64)
    for b in range(b_n):
        for h in range(heads):
            for i in range(n):
                smax = scores[b, h, i, 0]
                for j in range(n):
                    smax = max(smax, scores[b, h, i, j])
                z = np.int64(0)
                for j in range(n):
                    e[j] = exp_lut[(np.int64(smax) - np.int64(scores[b, h, i, j])) >> 1]
                    z += e[j]
                r = one_r // z
                for j in range(n):
                    a[b, h, i, j] = ((e[j] * r + half) >> sh) + np.int64(att_bias[h, i, j])
                    planes[b, h, 0, i, j >> 6] = _bit_word(planes[b, h, 0, i, j >> 6], j & 63,
                                                           a[b, h, i, j] >= thr1)
        if g1 == 0:
            continue
        amax_img = a[b, 0, 0, 0]
        if image_stat:
            for h in range(heads):
                for i in range(n):
                    for j in range(n):
                        amax_img = max(amax_img, a[b, h, i, j])
        for h in range(heads):
            for i in range(n):
                amax = amax_img
                if not image_stat:
                    amax = a[b, h, i, 0]
                    for j in range(n):
                        amax = max(amax, a[b, h, i, j])
                for kk in range(g1):
                    lim = ratios[kk] * amax
                    for j in range(n):
                        on = 256 * a[b, h, i, j] > lim
                        planes[b, h, kk + 1, i, j >> 6] = _bit_word(planes[b, h, kk + 1, i, j >> 6], j & 63, on)
    return a, planes


@njit(**_JIT)
def _context(dots, scale, ctx):
    """§6 for one image: ctx[i, h*d + j] = sum_a sum_v scale[a, v] * dots[h, a, v, i, j] (ctx int64 [N, E])."""
    heads, ga, gv, n, d = dots.shape
    ctx[:, :] = 0
    for h in range(heads):
        for ai in range(ga):
            for vi in range(gv):
                s = scale[ai, vi]
                for i in range(n):
                    for j in range(d):
                        ctx[i, h * d + j] += s * np.int64(dots[h, ai, vi, i, j])


@njit(**_JIT)
def _residual_add(x, acc, mult, bias, shift):
    """§7: X + rq(acc, mult, bias[o], shift) as int32 [M, E]; first bad flat index (or -1), its value."""
    m_n, e = x.shape
    out = np.empty((m_n, e), dtype=np.int32)
    half = np.int64(1) << np.int64(shift - 1)
    for m in range(m_n):
        for o in range(e):
            val = np.int64(x[m, o]) + ((np.int64(acc[m, o]) * mult + bias[o] + half) >> np.int64(shift))
            if val < I32_MIN or val > I32_MAX:
                return out, m * e + o, val
            out[m, o] = np.int32(val)
    return out, -1, np.int64(0)


@njit(**_JIT)
def _head_inputs(x, tok, gain, offset, k, eps):
    """§9: int8 head inputs q [B, E] of token `tok` of X [B, N, E]; first bad image (or -1)."""
    b_n, _, e = x.shape
    q = np.empty((b_n, e), dtype=np.int8)
    rows = np.ascontiguousarray(x[:, tok, :])
    for b in range(b_n):
        s1, sigma = _ln_row(rows, b, eps)
        if sigma < 0:
            return q, b
        den = sigma << np.int64(k)
        for c in range(e):
            d = e * np.int64(rows[b, c]) - s1
            num = gain[c] * d + offset[c] * sigma
            v = (2 * num + den) // (2 * den)
            q[b, c] = np.int8(min(max(v, -128), 127))
    return q, -1


@njit(**_JIT)
def _heads(q, w_head, w_dist, mult_head, mult_dist, bias):
    """§9: head accumulators int32 [B, 2, C], logits int64 [B, C] and predictions int64 [B]."""
    b_n = q.shape[0]
    c_n, e = w_head.shape
    acc = np.empty((b_n, 2, c_n), dtype=np.int32)
    logits = np.empty((b_n, c_n), dtype=np.int64)
    pred = np.empty(b_n, dtype=np.int64)
    for b in range(b_n):
        best = 0
        for c in range(c_n):
            s0 = np.int64(0)
            s1 = np.int64(0)
            for j in range(e):
                s0 += np.int64(w_head[c, j]) * np.int64(q[b, 0, j])
                s1 += np.int64(w_dist[c, j]) * np.int64(q[b, 1, j])
            acc[b, 0, c] = np.int32(s0)
            acc[b, 1, c] = np.int32(s1)
            logits[b, c] = s0 * mult_head + s1 * mult_dist + bias[c]
            if logits[b, c] > logits[b, best]:
                best = c
        pred[b] = best
    return acc, logits, pred


# ============================================================================ the forward pass
def _raise_overflow(where: str, what: str, flat: int, shape: tuple[int, ...], value=None) -> None:
    raise IntegerOverflowError(overflow_message(where, what, np.unravel_index(flat, shape), value))


def _unpack(words: np.ndarray, k: int) -> np.ndarray:
    return unpack_bits(words, k).astype(np.uint8)


class _Run:
    """One forward pass over a batch: X [B*N, E] int32 flows through the blocks."""

    def __init__(self, model: IntModel, images: np.ndarray, trace: bool):
        self.m = model
        self.b, self.n, self.e = images.shape[0], model.num_tokens, model.embed_dim
        self.trace = trace
        self.out: dict[str, np.ndarray] = {}
        self.ratios = np.asarray(model.ratios, dtype=np.int64)
        self.image_stat = model.mask_stat == "image"

    def rec(self, name: str, make) -> None:
        """Record a trace tensor; `make` is a thunk so nothing is unpacked when not tracing."""
        if self.trace:
            self.out[name] = make()

    def ln(self, x: np.ndarray, sign, thr, where: str) -> np.ndarray:
        bits, bad = _ln_bits(x, sign.astype(np.int64), thr.astype(np.int64), self.m.shifts["ln"], self.m.ln_eps)
        if bad >= 0:
            _raise_overflow(where, LN_OVERFLOW, bad, (self.b, self.n))
        return bits

    def residual(self, x, acc, mult, bias, where: str) -> np.ndarray:
        new, bad, val = _residual_add(x, acc, np.int64(mult), bias, self.m.shifts["resid"])
        if bad >= 0:
            _raise_overflow(where, RESID_OVERFLOW, bad, (self.b, self.n, self.e), val)
        return new

    def block(self, i: int, x: np.ndarray) -> np.ndarray:
        m, blk, sh = self.m, self.m.block(i), self.m.shifts
        b, n, e, h, d, g = self.b, self.n, self.e, m.num_heads, m.head_dim, m.groups
        p = f"blocks.{i}."
        shape = (b, n, e)

        a_bits = self.ln(x, blk["ln1.sign"], blk["ln1.thr"], p + "ln1")
        self.rec(p + "ln1.bits", lambda: _unpack(a_bits, e).reshape(shape))
        qkv = xnor_gemm(a_bits, blk["qkv.weight"], e)
        self.rec(p + "qkv.acc", lambda: qkv.reshape(b, n, 3 * e))
        qp, kp, vq, vs, vm = _split_qkv(qkv, n, h, blk["q.thr"].astype(np.int64), blk["k.thr"].astype(np.int64),
                                        blk["v.offset"], sh["value"], self.ratios, self.image_stat)
        self.rec(p + "q.bits", lambda: _unpack(qp, d))
        self.rec(p + "k.bits", lambda: _unpack(kp, d))
        self.rec(p + "v.q", lambda: vq)
        self.rec(p + "v.planes", lambda: np.concatenate([_unpack(vs, n)[:, :, None], _unpack(vm, n)], axis=2)
                 .transpose(0, 2, 1, 4, 3).copy())

        scores = np.empty((b, h, n, n), dtype=np.int32)
        for bi in range(b):
            for hi in range(h):
                scores[bi, hi] = xnor_gemm(qp[bi, hi], kp[bi, hi], d)
        self.rec(p + "scores", lambda: scores)
        att, ap = _softmax_planes(scores, blk["exp_lut"], blk["att_bias"], sh["prob"], sh["recip"],
                                  np.int64(blk["a.thr1"]), self.ratios, self.image_stat)
        self.rec(p + "probs", lambda: att)
        self.rec(p + "a.planes", lambda: _unpack(ap, n).transpose(0, 2, 1, 3, 4).copy())

        ctx = np.empty((b, n, e), dtype=np.int64)
        dots = np.empty((h, g, g, n, d), dtype=np.int32)   # one image at a time: bounded memory
        for bi in range(b):
            for hi in range(h):
                dots[hi] = gsb_av(ap[bi, hi], vs[bi, hi], vm[bi, hi])
            _context(dots, blk["ctx.scale"], ctx[bi])
        ctx = ctx.reshape(b * n, e)
        self.rec(p + "ctx", lambda: ctx.reshape(shape))
        pin = pack_rows_ge(ctx, blk["proj.in_thr"])
        self.rec(p + "proj.bits", lambda: _unpack(pin, e).reshape(shape))
        pacc = xnor_gemm(pin, blk["proj.weight"], e)
        self.rec(p + "proj.acc", lambda: pacc.reshape(shape))
        x = self.residual(x, pacc, blk["proj.mult"], blk["proj.bias"], p + "proj")
        x1 = x
        self.rec(p + "resid1", lambda: x1.reshape(shape))

        m_bits = self.ln(x, blk["ln2.sign"], blk["ln2.thr"], p + "ln2")
        self.rec(p + "ln2.bits", lambda: _unpack(m_bits, e).reshape(shape))
        f1 = xnor_gemm(m_bits, blk["fc1.weight"], e)
        self.rec(p + "fc1.acc", lambda: f1.reshape(b, n, -1))
        f1b = pack_rows_2sided(f1, blk["fc1.thr_hi"], blk["fc1.thr_lo"])
        self.rec(p + "fc1.bits", lambda: _unpack(f1b, m.mlp_hidden).reshape(b, n, -1))
        f2 = and_gemm(f1b, blk["fc2.weight"])
        self.rec(p + "fc2.acc", lambda: f2.reshape(shape))
        x = self.residual(x, f2, blk["fc2.mult"], blk["fc2.bias"], p + "fc2")
        x2 = x
        self.rec(p + "resid2", lambda: x2.reshape(shape))
        return x

    def run(self, images: np.ndarray) -> np.ndarray:
        m, a, sh = self.m, self.m.arrays, self.m.shifts
        b, n, e = self.b, self.n, self.e
        self.rec("input", lambda: images)
        acc, x, bad, val = _patch_embed(images, a["patch.weight"], a["patch.mult"], a["patch.bias"], a["pos"],
                                        a["tokens"], m.patch_size, sh["patch"])
        if bad >= 0:
            _raise_overflow("embed", RESID_OVERFLOW, bad, (b, n, e), val)
        self.rec("patch.acc", lambda: acc)
        self.rec("embed", lambda: x)
        x = x.reshape(b * n, e)
        for i in range(m.depth):
            x = self.block(i, x)
        x = x.reshape(b, n, e)
        qs = []
        for tok, norm in ((0, "norm"), (1, "head_dist_norm")):
            q, bad = _head_inputs(x, tok, a[norm + ".gain"], a[norm + ".offset"], sh["head_ln"], m.ln_eps)
            if bad >= 0:
                _raise_overflow(norm, LN_OVERFLOW, bad, (b,))
            qs.append(q)
        q = np.stack(qs, axis=1)
        self.rec("head.q", lambda: q)
        hacc, logits, pred = _heads(q, a["head.weight"], a["head_dist.weight"], np.int64(a["head.mult"]),
                                    np.int64(a["head_dist.mult"]), a["logit.bias"])
        self.rec("head.acc", lambda: hacc)
        self.rec("logits", lambda: logits)
        self.rec("pred", lambda: pred)
        return logits


def forward(model: IntModel, images: np.ndarray, trace: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits int64 [B, num_classes] of int8 images [B, Cin, I, I], and the trace (empty unless `trace`)."""
    images = check_images(model, images)
    run = _Run(model, images, trace)
    logits = run.run(images)
    return logits, run.out
