"""The fast path: the integer model on packed bits with Numba (must equal gsbsim.golden exactly).

Same signature, trace names, dtypes and values as ``gsbsim.engine.golden.forward`` (see its
docstring for the trace table). The batch is processed layer by layer with all tokens of
all images stacked as rows, one jitted call per layer:

* the binary linears are ``kernels.xnor_into`` / ``and_into`` on weights transposed to
  [W, N] once per forward; each residual requantization is fused with the LayerNorm ->
  bits that follows it (one pass over X per residual);
* the whole attention of a block is one call (``_attention``): per image and head it
  splits qkv into packed Q/K bits and value codes, computes the Q.K^T popcounts and the
  fixed-point softmax (one table lookup per key, one reciprocal per row), packs the
  attention planes, and gets the GSB context from ``kernels.context_head`` (a walk over
  the set bits of the sparse attention planes, or popcounts when they are dense; the
  ``context_method`` variable forces one), then packs the proj input bits;
* the 8-bit patch embedding is an exact float32 BLAS product (every partial sum is an
  integer of at most 2^14 * Cin*P^2 <= 2^24; float64 when Cin*P^2 > 1024).

Bits stay packed (uint64, LSB first) between layers and are unpacked only for the
trace; intermediates only the trace needs (scores, probabilities, Vq of every image)
are not kept unless tracing. Overflow checks are the golden path's, with its messages.

``forward_batch`` splits a batch over threads (the jitted code releases the GIL) and
``forward_profiled`` reports the time of each stage (the op split of benchmarks/model.py).
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numba import njit

from gsbsim.engine import golden
from gsbsim.format.conventions import n_words, unpack_bits
from gsbsim.engine.golden import (LN_OVERFLOW, RESID_OVERFLOW, IntegerOverflowError, InputError, check_images,
                     overflow_message)
from gsbsim.engine.kernels import and_into, context_head, context_workspace, pack_2sided_into, pack_row, xnor_into
from gsbsim.engine.popcnt import cycle_counter, popcount64
from gsbsim.format.model_file import ACT_METHODS, IntModel

__all__ = ["forward", "forward_batch", "forward_profiled", "InputError", "IntegerOverflowError",
           "CONTEXT_METHODS", "ATTENTION_PHASES"]

_JIT = dict(cache=True, nogil=True, boundscheck=False)
_INLINE = dict(inline="always", nogil=True, boundscheck=False)
LN_LIMIT = np.int64(golden.LN_LIMIT)
I32_MIN, I32_MAX = np.int64(golden.INT32_MIN), np.int64(golden.INT32_MAX)
#: how the GSB context is computed: "auto" (per head, the cheaper of the two), "sparse"
#: (walk the attention bits) or "dense" (popcounts); all give the same integers.
CONTEXT_METHODS = {"auto": 0, "sparse": 1, "dense": 2}
context_method = "auto"
#: the phases of ``_attention`` that ``forward_profiled`` reports separately
ATTENTION_PHASES = ("attention: split q/k/v", "attention: scores+softmax+planes", "attention: A.V context",
                    "attention: ctx thresholds")


# ============================================================================ LayerNorm
@njit(**_JIT)
def _isqrt(v):
    """floor(sqrt(v)) for 0 <= v < 2^62 (float guess, then exact integer correction)."""
    r = np.int64(np.sqrt(np.float64(v)))
    while r * r > v:
        r -= 1
    while (r + 1) * (r + 1) <= v:
        r += 1
    return r


@njit(**_INLINE)
def _ln_stats(row, eps, fast_lim):
    """(S1, sigma) of one row of X; sigma = -1 when E*S2 + eps >= 2^62 (spec §1).

    When max|x| <= fast_lim, E^2 * max|x|^2 + eps < 2^62, so plain int64 sums cannot
    overflow and the loops vectorise; otherwise the exact checked loop decides.
    """
    e = row.shape[0]
    big = np.int64(0)
    for c in range(e):
        big = max(big, abs(np.int64(row[c])))
    s1 = np.int64(0)
    s2 = np.int64(0)
    if big <= fast_lim:
        for c in range(e):
            v = np.int64(row[c])
            s1 += v
            s2 += v * v
        return s1, _isqrt(e * s2 - s1 * s1 + eps)
    for c in range(e):
        v = np.int64(row[c])
        s1 += v
        s2 += v * v              # s2 < 2^62 before, v*v <= 2^62: no wrap
        if s2 >= LN_LIMIT:
            return s1, np.int64(-1)
    if s2 > (LN_LIMIT - 1 - eps) // e:
        return s1, np.int64(-1)
    return s1, _isqrt(e * s2 - s1 * s1 + eps)


@njit(**_INLINE)
def _ln_word(row, s1, sigma, sign, thr, lp, ln_shift, base, width):
    """Bits b < width: sign*2^ln * (E*x - S1) >= thr * sigma for channel c = base + b.

    lp = _ln_params(sign, thr). When narrow (a valid model: signs -1/0/+1, thresholds in
    int32) the sign is applied as masks (negate: (v ^ neg) - neg, zero: & keep) and every
    product is 32x32 -> 64 bits, which AVX2 multiplies natively (not 64x64); otherwise
    the general int64 products (wrapping like numpy's, as the golden path).
    """
    narrow, neg, keep, thr32 = lp
    e = row.shape[0]
    bits = np.uint64(0)
    if narrow:
        e32 = np.int32(e)
        sig32 = np.int32(sigma)
        for b in range(width):
            c = base + b
            dl = (np.int64(e32) * np.int64(row[c]) - s1) << ln_shift
            lhs = ((dl ^ neg[c]) - neg[c]) & keep[c]
            bits |= np.uint64(lhs >= np.int64(thr32[c]) * np.int64(sig32)) << np.uint64(b)
    else:
        for b in range(width):
            c = base + b
            lhs = np.int64(sign[c]) * (e * np.int64(row[c]) - s1) * (np.int64(1) << ln_shift)
            bits |= np.uint64(lhs >= thr[c] * sigma) << np.uint64(b)
    return bits


@njit(**_INLINE)
def _ln_params(sign, thr):
    """(narrow, neg, keep, thr32): narrow when every sign is -1, 0 or +1 and every threshold
    fits int32 (a valid model); neg = -1 where sign < 0, keep = -1 where sign != 0 (int64)."""
    e = sign.shape[0]
    neg = np.empty(e, dtype=np.int64)
    keep = np.empty(e, dtype=np.int64)
    thr32 = np.empty(e, dtype=np.int32)
    narrow = True
    for c in range(e):
        narrow &= (sign[c] >= -1) & (sign[c] <= 1) & (thr[c] >= -2 ** 31) & (thr[c] < 2 ** 31)
        neg[c] = -np.int64(sign[c] < 0)
        keep[c] = -np.int64(sign[c] != 0)
        thr32[c] = np.int32(thr[c])
    return narrow, neg, keep, thr32


@njit(**_INLINE)
def _ln_row(row, sign, thr, lp, ln_shift, eps, fast_lim, orow):
    """§3 on one row into packed bits orow; False when E*S2 + eps reaches 2^62 (otherwise
    sigma < 2^31: spec §1)."""
    e = row.shape[0]
    full = e // 64
    s1, sigma = _ln_stats(row, eps, fast_lim)
    if sigma < 0:
        return False
    for w in range(full):
        orow[w] = _ln_word(row, s1, sigma, sign, thr, lp, ln_shift, w * 64, 64)
    if e > full * 64:
        orow[full] = _ln_word(row, s1, sigma, sign, thr, lp, ln_shift, full * 64, e - full * 64)
    return True


@njit(**_JIT)
def _ln_bits(x, sign, thr, ln_shift, eps, fast_lim, out):
    """§3 on every row of X int32 [M, E] into packed bits out uint64 [M, W(E)] (sign int8 [E],
    thr int64 [E]). Returns the first row whose E*S2 + eps reaches 2^62, or -1."""
    lp = _ln_params(sign, thr)
    for m in range(x.shape[0]):
        if not _ln_row(x[m], sign, thr, lp, ln_shift, eps, fast_lim, out[m]):
            return m
    return -1


def _fast_limit(e: int, eps: int) -> int:
    """Largest |x| with E^2 * x^2 + eps < 2^62 (-1 if none): rows below it skip the checks."""
    room = (2 ** 62 - 1 - eps) // (e * e)
    return math.isqrt(room) if room >= 0 else -1


# ============================================================================ embedding, residual, heads
@njit(**_INLINE)
def _first_outside_int32(vals):
    """Index of the first value outside int32 in a 1-D int64 array, or -1."""
    for o in range(vals.shape[0]):
        if vals[o] < I32_MIN or vals[o] > I32_MAX:
            return o
    return -1


@njit(**_INLINE)
def _store_int32(vals, out_row):
    """out_row = vals as int32; True when some value left int32 (checked without branches)."""
    lo = vals[0]
    hi = vals[0]
    for o in range(vals.shape[0]):
        lo = min(lo, vals[o])
    for o in range(vals.shape[0]):
        hi = max(hi, vals[o])
    for o in range(vals.shape[0]):
        out_row[o] = np.int32(vals[o])
    return lo < I32_MIN or hi > I32_MAX


@njit(**_JIT)
def _embed(acc, mult, bias, pos, tokens, shift, b_n):
    """§2 from the patch accumulators acc int32 [B*T, E]: X int32 [B*N, E], first bad flat index or -1, value."""
    t_n, e = acc.shape[0] // b_n, acc.shape[1]
    n = t_n + 2
    x = np.empty((b_n * n, e), dtype=np.int32)
    vals = np.empty(e, dtype=np.int64)
    half = np.int64(1) << np.int64(shift - 1)
    sh = np.int64(shift)
    for b in range(b_n):
        for t in range(n):
            p = pos[t]
            if t < 2:
                tok = tokens[t]
                for o in range(e):
                    vals[o] = np.int64(tok[o]) + np.int64(p[o])
            else:
                a = acc[b * t_n + t - 2]
                for o in range(e):
                    vals[o] = ((np.int64(a[o]) * mult[o] + bias[o] + half) >> sh) + np.int64(p[o])
            if _store_int32(vals, x[b * n + t]):
                o = _first_outside_int32(vals)
                return x, (b * n + t) * e + o, vals[o]
    return x, -1, np.int64(0)


@njit(**_INLINE)
def _residual_row(xr, ar, mult, bias, half, sh, vals, orow):
    """orow = X + rq(acc, mult, bias[o], shift) as int32; True when a value left int32."""
    for o in range(vals.shape[0]):
        vals[o] = np.int64(xr[o]) + ((np.int64(ar[o]) * mult + bias[o] + half) >> sh)
    return _store_int32(vals, orow)


@njit(**_JIT)
def _residual_add(x, acc, mult, bias, shift):
    """§7: X + rq(acc, mult, bias[o], shift) as int32 [M, E]; first bad flat index (or -1), its value."""
    m_n, e = x.shape
    out = np.empty((m_n, e), dtype=np.int32)
    vals = np.empty(e, dtype=np.int64)
    half = np.int64(1) << np.int64(shift - 1)
    sh = np.int64(shift)
    for m in range(m_n):
        if _residual_row(x[m], acc[m], mult, bias, half, sh, vals, out[m]):
            o = _first_outside_int32(vals)
            return out, m * e + o, vals[o]
    return out, -1, np.int64(0)


@njit(**_JIT)
def _residual_ln(x, acc, mult, bias, shift, sign, thr, ln_shift, eps, fast_lim, bits):
    """_residual_add, then §3 of the next LayerNorm on each new row while it is in cache.

    Returns (X int32 [M, E], first bad flat index of the residual or -1, its value, first
    LayerNorm-overflow row or -1). A residual overflow anywhere wins (layers are checked in
    order over the whole batch), so the rows are processed to the first residual overflow.
    """
    m_n, e = x.shape
    out = np.empty((m_n, e), dtype=np.int32)
    vals = np.empty(e, dtype=np.int64)
    half = np.int64(1) << np.int64(shift - 1)
    sh = np.int64(shift)
    lp = _ln_params(sign, thr)
    ln_bad = -1
    for m in range(m_n):
        if _residual_row(x[m], acc[m], mult, bias, half, sh, vals, out[m]):
            o = _first_outside_int32(vals)
            return out, m * e + o, vals[o], ln_bad
        if not _ln_row(out[m], sign, thr, lp, ln_shift, eps, fast_lim, bits[m]) and ln_bad < 0:
            ln_bad = m
    return out, -1, np.int64(0), ln_bad


@njit(**_JIT)
def _head_inputs(x, tok, n_tok, gain, offset, k, eps):
    """§9: int8 head inputs q [B, E] of token `tok` of X [B*N, E]; first bad image (or -1)."""
    e = x.shape[1]
    b_n = x.shape[0] // n_tok
    q = np.empty((b_n, e), dtype=np.int8)
    for b in range(b_n):
        row = x[b * n_tok + tok]
        s1, sigma = _ln_stats(row, eps, -1)
        if sigma < 0:
            return q, b
        den = sigma << np.int64(k)
        for c in range(e):
            d = e * np.int64(row[c]) - s1
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


# ============================================================================ attention (§4-§6)
# Inner loops below index 1-D slices by the bare loop variable: an index LLVM cannot prove
# non-negative (e.g. row[2*e + c0 + j]) keeps Numba's negative-index wraparound select and
# stops vectorisation.
@njit(**_JIT)
def _split_image(acc, r0, n_tok, heads, q_thr, k_thr, v_off, vscale, ratios, image_stat,
                 qb, kb, vqb, codes, tmp):
    """§4 for one image: packed Q bits qb [H, N, W(d)], K bits kb, Vq vqb int64 [H, N, d] and the
    value planes as codes [H, N, d] (bit 0 = sign s, bit k = mask M_{k+1}); tmp int64 [d] scratch."""
    d = vqb.shape[2]
    e = heads * d
    g1 = ratios.shape[0]
    for t in range(n_tok):
        row = acc[r0 + t]
        for h in range(heads):
            c0 = h * d
            qt = q_thr[c0:c0 + d]
            kt = k_thr[c0:c0 + d]
            pack_row(row[c0:c0 + d], qt, qt, False, qb[h, t])
            pack_row(row[e + c0:e + c0 + d], kt, kt, False, kb[h, t])
            src = row[2 * e + c0:2 * e + c0 + d]
            off = v_off[c0:c0 + d]
            vrow = vqb[h, t]
            for j in range(d):
                vrow[j] = np.int64(src[j]) * vscale + off[j]
    mx_img, mn_img = vqb[0, 0, 0], vqb[0, 0, 0]
    if image_stat:
        for h in range(heads):
            for t in range(n_tok):
                vrow = vqb[h, t]
                for j in range(d):
                    mx_img = max(mx_img, vrow[j])
                for j in range(d):
                    mn_img = min(mn_img, vrow[j])
    for h in range(heads):
        for t in range(n_tok):
            vrow = vqb[h, t]
            mx, mn = mx_img, mn_img
            if not image_stat:
                mx, mn = vrow[0], vrow[0]
                for j in range(d):
                    mx = max(mx, vrow[j])
                for j in range(d):
                    mn = min(mn, vrow[j])
            for j in range(d):
                tmp[j] = np.int64(vrow[j] >= 0)
            for kk in range(g1):
                # 256*v > r*mx  <=>  v > floor(r*mx/256);  256*v < r*mn  <=>  v < ceil(r*mn/256)
                hi = (ratios[kk] * mx) >> 8
                lo = -((-ratios[kk] * mn) >> 8)
                for j in range(d):
                    tmp[j] |= np.int64((vrow[j] > hi) | (vrow[j] < lo)) << (kk + 1)
            crow = codes[h, t]
            for j in range(d):
                crow[j] = np.uint8(tmp[j])


@njit(**_INLINE)
def _pack_ge_scalar(vals, thr, out_row):
    """out_row bits = vals >= thr (one threshold for the row), pads 0."""
    n = vals.shape[0]
    full = n // 64
    for w in range(full):
        base = w * 64
        bits = np.uint64(0)
        for b in range(64):
            bits |= np.uint64(vals[base + b] >= thr) << np.uint64(b)
        out_row[w] = bits
    if n > full * 64:
        base = full * 64
        bits = np.uint64(0)
        for b in range(n - base):
            bits |= np.uint64(vals[base + b] >= thr) << np.uint64(b)
        out_row[full] = bits


@njit(**_INLINE)
def _mask_row(arow, amax, ratios, planes_h, counts_h, i):
    """§5 mask planes of row i, M_k = 256*A > r_k*amax (<=> A >= floor(r_k*amax/256) + 1), then
    the popcounts of all the row's planes (b1 included)."""
    g1 = ratios.shape[0]
    for kk in range(g1):
        _pack_ge_scalar(arow, ((ratios[kk] * amax) >> 8) + 1, planes_h[kk + 1, i])
    for a in range(g1 + 1):
        words = planes_h[a, i]
        c = 0
        for w in range(words.shape[0]):
            c += popcount64(words[w])
        counts_h[a, i] = c


@njit(**_INLINE)
def _probabilities_row(ebuf, r, half, ush, brow, arow):
    """§5 from R = floor(2^recip / Z) on, shared with didb's softmax (gsbsim.fast_methods):
    arow[j] = ((e_j*R + half) >> ush) + brow[j] for the row's exp values e_j = ebuf[j], j < len(arow).

    The exp tables hold 0 <= e <= 2^prob <= 2^30, so e*R <= 2^recip < 2^63: unsigned arithmetic
    is exact and vectorises; when R fits 32 bits (R <= 2^(recip-prob): usually) the product is
    one 32x32 -> 64-bit vector multiply.
    """
    n = arow.shape[0]
    if r < 2 ** 32:
        r32 = np.uint64(np.uint32(r))
        for t in range(n):
            arow[t] = np.int64((np.uint64(np.uint32(ebuf[t])) * r32 + half) >> ush) + np.int64(brow[t])
    else:
        ur = np.uint64(r)
        for t in range(n):
            arow[t] = np.int64((np.uint64(ebuf[t]) * ur + half) >> ush) + np.int64(brow[t])


@njit(**_JIT)
def _softmax_head(qh, kh, d, exp_lut, bias, shift, one_r, thr1, ratios, image_stat, a_out, planes_h, counts_h,
                  scores, b, h, trace, rowmax, pcs, ebuf):
    """§4 scores and §5 softmax and planes of one head: A = P + att_bias into a_out int64 [N, N]
    (or [1, N], one row reused, when A is not kept), the planes packed along keys into
    planes_h [G, N, W(N)] with their popcounts counts_h [G, N], and the row maxima. With the
    image statistic only b1 is packed here (the masks need the maximum over all heads:
    _mask_planes_head).

    m_j = (smax - sc_j)/2 is popcount_j - min popcount: one table lookup e_j = exp_lut[m_j]
    per key (unsigned index: no wraparound code), one reciprocal per row, then vector
    arithmetic; the planes are packed while the row is in L1.
    """
    n, wd = qh.shape
    half = np.uint64(1) << np.uint64(shift - 1)
    ush = np.uint64(shift)
    for i in range(n):
        q = qh[i]
        x = q[0]
        for t in range(n):
            pcs[t] = popcount64(x ^ kh[t, 0])
        for w in range(1, wd):
            x = q[w]
            for t in range(n):
                pcs[t] += popcount64(x ^ kh[t, w])
        pmin = pcs[0]
        for t in range(n):
            pmin = min(pmin, pcs[t])
        if trace:
            for t in range(n):
                scores[b, h, i, t] = np.int32(d - 2 * pcs[t])
        z = np.int64(0)
        for t in range(n):
            e = exp_lut[np.uint64(pcs[t] - pmin)]
            ebuf[t] = e
            z += e
        arow = a_out[i if a_out.shape[0] > 1 else 0]      # one row buffer when A is not kept
        _probabilities_row(ebuf, one_r // z, half, ush, bias[i], arow)
        amax = arow[0]
        for t in range(n):
            amax = max(amax, arow[t])
        rowmax[i] = amax
        _pack_ge_scalar(arow, thr1, planes_h[0, i])
        if not image_stat:
            _mask_row(arow, amax, ratios, planes_h, counts_h, i)


@njit(**_JIT)
def _mask_planes_head(a_h, amax, ratios, planes_h, counts_h):
    """The image statistic's mask planes of one head (after every head's softmax) and counts."""
    for i in range(a_h.shape[0]):
        _mask_row(a_h[i], amax, ratios, planes_h, counts_h, i)


@njit(**_JIT)
def _attention(acc, n_tok, heads, q_thr, k_thr, v_off, vscale, ratios, image_stat, exp_lut, att_bias,
               prob, recip, thr1, scale, in_thr, trace, method, ticks):
    """§4-§6 of one block for the whole batch, from the qkv accumulators acc int32 [B*N, 3E].

    Returns (Q bits [B, H, N, W(d)], K bits, Vq [B|1, H, N, d], value codes [B, H, N, d],
    scores [B|0, H, N, N], A [B|1, H, N|1, N], attention planes [B, H, G, N, W(N)],
    ctx int64 [B*N, E], proj input bits [B*N, W(E)]); "B|1" arrays hold every image only
    when tracing (else the current image's scratch), A keeps every row only when tracing
    or for the image statistic. ticks int64 [len(ATTENTION_PHASES)]
    accumulates the CPU cycles spent in each phase.
    """
    rows, e3 = acc.shape
    e = e3 // 3
    b_n = rows // n_tok
    d = e // heads
    g = ratios.shape[0] + 1
    wd, wn = (d + 63) // 64, (n_tok + 63) // 64
    tb = b_n if trace else 1
    keep_rows = n_tok if trace or image_stat else 1      # A rows kept: for the trace / the image maximum
    q = np.zeros((b_n, heads, n_tok, wd), dtype=np.uint64)
    k = np.zeros((b_n, heads, n_tok, wd), dtype=np.uint64)
    vq = np.empty((tb, heads, n_tok, d), dtype=np.int64)
    codes = np.empty((b_n, heads, n_tok, d), dtype=np.uint8)
    scores = np.empty((b_n if trace else 0, heads, n_tok, n_tok), dtype=np.int32)
    probs = np.empty((tb, heads, keep_rows, n_tok), dtype=np.int64)
    planes = np.zeros((b_n, heads, g, n_tok, wn), dtype=np.uint64)
    ctx = np.empty((rows, e), dtype=np.int64)
    pin = np.zeros((rows, (e + 63) // 64), dtype=np.uint64)
    counts = np.empty((heads, g, n_tok), dtype=np.int64)
    rowmax = np.empty((heads, n_tok), dtype=np.int64)
    pcs = np.empty(n_tok, dtype=np.int64)
    ebuf = np.empty(n_tok, dtype=np.int64)
    tmp = np.empty(d, dtype=np.int64)
    shift = np.int64(recip - prob)
    one_r = np.int64(1) << np.int64(recip)
    ws = context_workspace(scale, n_tok, d)
    for b in range(b_n):
        s = b if trace else 0
        r0 = b * n_tok
        c0 = cycle_counter()
        _split_image(acc, r0, n_tok, heads, q_thr, k_thr, v_off, vscale, ratios, image_stat,
                     q[b], k[b], vq[s], codes[b], tmp)
        c1 = cycle_counter()
        for h in range(heads):
            _softmax_head(q[b, h], k[b, h], d, exp_lut, att_bias[h], shift, one_r, thr1, ratios, image_stat,
                          probs[s, h], planes[b, h], counts[h], scores, b, h, trace, rowmax[h], pcs, ebuf)
        if image_stat:
            amax = rowmax[0, 0]
            for h in range(heads):
                for i in range(n_tok):
                    amax = max(amax, rowmax[h, i])
            for h in range(heads):
                _mask_planes_head(probs[s, h], amax, ratios, planes[b, h], counts[h])
        c2 = cycle_counter()
        for h in range(heads):
            context_head(planes[b, h], counts[h], codes[b, h], scale, n_tok, ctx, r0, h * d, method, ws)
        c3 = cycle_counter()
        for r in range(r0, r0 + n_tok):
            pack_row(ctx[r], in_thr, in_thr, False, pin[r])
        ticks[0] += c1 - c0
        ticks[1] += c2 - c1
        ticks[2] += c3 - c2
        ticks[3] += cycle_counter() - c3
    return q, k, vq, codes, scores, probs, planes, ctx, pin


# ============================================================================ the forward pass
def _raise_overflow(where: str, what: str, flat: int, shape: tuple[int, ...], value=None) -> None:
    raise IntegerOverflowError(overflow_message(where, what, np.unravel_index(flat, shape), value))


def _unpack(words: np.ndarray, k: int) -> np.ndarray:
    return unpack_bits(words, k).astype(np.uint8)


def _transposed(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.T)


@dataclass
class _Block:
    """One block's binary weights transposed to [W, N] for the GEMM kernels, and its arrays."""

    qkv_t: np.ndarray
    proj_t: np.ndarray
    fc1_t: np.ndarray
    fc2_t: np.ndarray
    raw: dict


def _prepare_block(model: IntModel, i: int) -> _Block:
    blk = model.block(i)
    return _Block(qkv_t=_transposed(blk["qkv.weight"]), proj_t=_transposed(blk["proj.weight"]),
                  fc1_t=_transposed(blk["fc1.weight"]), fc2_t=_transposed(blk["fc2.weight"]), raw=blk)


class _Run:
    """One forward pass over a batch: X [B*N, E] int32 flows through the blocks.

    With `prof` (a dict), the seconds of each stage are added to prof[stage name]; the
    attention's phases are apportioned from the cycle counts the jitted call returns.
    """

    def __init__(self, model: IntModel, images: np.ndarray, trace: bool, prof: dict | None = None):
        self.m = model
        self.b, self.n, self.e = images.shape[0], model.num_tokens, model.embed_dim
        self.trace = trace
        self.prof = prof
        self.out: dict[str, np.ndarray] = {}
        self.ratios = np.asarray(model.ratios, dtype=np.int64)
        self.image_stat = model.mask_stat == "image"
        self.fast_lim = _fast_limit(self.e, model.ln_eps)
        self.eps = model.ln_eps
        self.sh = model.shifts                       # (a property that builds a dict: read it once)
        self.ln_shift = np.int64(self.sh["ln"])
        self.vscale = np.int64(1) << np.int64(self.sh["value"])
        self.method = CONTEXT_METHODS[context_method]
        self.ticks = np.zeros(len(ATTENTION_PHASES), dtype=np.int64)

    def rec(self, name: str, make) -> None:
        """Record a trace tensor; `make` is a thunk so nothing is unpacked when not tracing."""
        if self.trace:
            self.out[name] = make()

    def tick(self) -> float:
        return time.perf_counter() if self.prof is not None else 0.0

    def tock(self, name: str, start: float) -> None:
        if self.prof is not None:
            self.prof[name] = self.prof.get(name, 0.0) + time.perf_counter() - start

    def ln(self, x: np.ndarray, blk: dict, name: str, where: str) -> np.ndarray:
        t = self.tick()
        bits = np.empty((x.shape[0], n_words(self.e)), dtype=np.uint64)
        bad = _ln_bits(x, blk[name + ".sign"], blk[name + ".thr"], self.ln_shift, self.eps, self.fast_lim, bits)
        if bad >= 0:
            _raise_overflow(where, LN_OVERFLOW, bad, (self.b, self.n))
        self.tock("layernorm -> bits", t)
        return bits

    def residual(self, x, acc, blk: dict, name: str, where: str, ln_blk: dict | None, ln_name: str,
                 ln_where: str) -> tuple[np.ndarray, np.ndarray | None]:
        """X + rq(acc) of linear `name` (§7), then, when ln_blk is given, that LayerNorm's bits in
        the same pass (the residual's overflow wins over the LayerNorm's, as in the golden path)."""
        t = self.tick()
        mult, bias, shift = np.int64(blk[name + ".mult"]), blk[name + ".bias"], self.sh["resid"]
        bits = None
        if ln_blk is None:
            new, bad, val = _residual_add(x, acc, mult, bias, shift)
            ln_bad = -1
        else:
            bits = np.empty((x.shape[0], n_words(self.e)), dtype=np.uint64)
            new, bad, val, ln_bad = _residual_ln(x, acc, mult, bias, shift, ln_blk[ln_name + ".sign"],
                                                 ln_blk[ln_name + ".thr"], self.ln_shift, self.eps, self.fast_lim,
                                                 bits)
        if bad >= 0:
            _raise_overflow(where, RESID_OVERFLOW, bad, (self.b, self.n, self.e), val)
        if ln_bad >= 0:
            _raise_overflow(ln_where, LN_OVERFLOW, ln_bad, (self.b, self.n))
        self.tock("residual requant + layernorm -> bits", t)
        return new, bits

    def linear(self, name: str, bits: np.ndarray, w_t: np.ndarray, k: int | None) -> np.ndarray:
        """A binary linear on packed rows: xnor (k = K) or, with k None, and ({0,1} inputs)."""
        t = self.tick()
        out = np.empty((bits.shape[0], w_t.shape[1]), dtype=np.int32)
        if k is None:
            and_into(bits, w_t, out)
        else:
            xnor_into(bits, w_t, k, out)
        self.tock(name, t)
        return out

    def patch_embed(self, images: np.ndarray) -> np.ndarray:
        """§2. The int8 products are summed exactly in float32 (|partial sums| <= 2^14 * K <= 2^24)
        or float64 (K > 1024), so a BLAS matmul gives the integer accumulators."""
        t = self.tick()
        m, a = self.m, self.m.arrays
        b, c, size, _ = images.shape
        p = m.patch_size
        g = size // p
        k = c * p * p
        ftype = np.float32 if k <= 1024 else np.float64
        xp = images.reshape(b, c, g, p, g, p).transpose(0, 2, 4, 1, 3, 5).reshape(b * g * g, k).astype(ftype)
        acc = (xp @ a["patch.weight"].T.astype(ftype)).astype(np.int32)
        x, bad, val = _embed(acc, a["patch.mult"], a["patch.bias"], a["pos"], a["tokens"], self.sh["patch"], b)
        if bad >= 0:
            _raise_overflow("embed", RESID_OVERFLOW, bad, (b, self.n, self.e), val)
        self.tock("patch embedding", t)
        self.rec("patch.acc", lambda: acc.reshape(b, g * g, self.e))
        self.rec("embed", lambda: x.reshape(b, self.n, self.e))
        return x

    def attention(self, blk: dict, qkv: np.ndarray):
        sh = self.sh
        t = self.tick()
        before = self.ticks.copy()
        out = _attention(qkv, self.n, self.m.num_heads, blk["q.thr"], blk["k.thr"], blk["v.offset"],
                         self.vscale, self.ratios, self.image_stat, blk["exp_lut"],
                         blk["att_bias"], sh["prob"], sh["recip"], np.int64(blk["a.thr1"]), blk["ctx.scale"],
                         blk["proj.in_thr"], self.trace, self.method, self.ticks)
        if self.prof is not None:
            spent = time.perf_counter() - t
            phases = self.ticks - before
            for name, cycles in zip(ATTENTION_PHASES, phases):
                self.prof[name] = self.prof.get(name, 0.0) + spent * cycles / max(int(phases.sum()), 1)
        return out

    def record_attention(self, p: str, out: tuple) -> np.ndarray:
        """Record the §4-§6 traces of block prefix `p` from what self.attention returned (also
        reactnet's attention, gsbsim.fast_methods); returns the proj input bits."""
        qp, kp, vq, codes, scores, att, ap, ctx, pin = out
        b, n, d, g = self.b, self.n, self.m.head_dim, self.m.groups
        self.rec(p + "q.bits", lambda: _unpack(qp, d))
        self.rec(p + "k.bits", lambda: _unpack(kp, d))
        self.rec(p + "v.q", lambda: vq)
        self.rec(p + "v.planes", lambda: np.stack([(codes >> np.uint8(j)) & np.uint8(1) for j in range(g)], axis=1))
        self.rec(p + "scores", lambda: scores)
        self.rec(p + "probs", lambda: att)
        self.rec(p + "a.planes", lambda: _unpack(ap, n).transpose(0, 2, 1, 3, 4).copy())
        self.rec(p + "ctx", lambda: ctx.reshape(b, n, self.e))
        return pin

    def block(self, i: int, x: np.ndarray, a_bits: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Block i on X [B*N, E] (a_bits: its ln1 bits when the previous block computed them);
        returns the new X and the next block's ln1 bits (None after the last block)."""
        if self.m.method in ACT_METHODS:               # reactnet, didb (spec §13)
            from gsbsim.engine import fast_methods                 # imported here: it imports this module
            return fast_methods.block(self, i, x, a_bits)
        m = self.m
        t = self.tick()
        pb = _prepare_block(m, i)
        self.tock("weight layout", t)
        blk = pb.raw
        b, n, e = self.b, self.n, self.e
        p = f"blocks.{i}."
        shape = (b, n, e)

        if a_bits is None:
            a_bits = self.ln(x, blk, "ln1", p + "ln1")
        self.rec(p + "ln1.bits", lambda: _unpack(a_bits, e).reshape(shape))
        qkv = self.linear("qkv (xnor)", a_bits, pb.qkv_t, e)
        self.rec(p + "qkv.acc", lambda: qkv.reshape(b, n, 3 * e))
        pin = self.record_attention(p, self.attention(blk, qkv))
        self.rec(p + "proj.bits", lambda: _unpack(pin, e).reshape(shape))
        pacc = self.linear("proj (xnor)", pin, pb.proj_t, e)
        self.rec(p + "proj.acc", lambda: pacc.reshape(shape))
        x, m_bits = self.residual(x, pacc, blk, "proj", p + "proj", blk, "ln2", p + "ln2")
        x1 = x
        self.rec(p + "resid1", lambda: x1.reshape(shape))
        self.rec(p + "ln2.bits", lambda: _unpack(m_bits, e).reshape(shape))

        f1 = self.linear("fc1 (xnor)", m_bits, pb.fc1_t, e)
        self.rec(p + "fc1.acc", lambda: f1.reshape(b, n, -1))
        t = self.tick()
        f1b = np.empty((b * n, n_words(m.mlp_hidden)), dtype=np.uint64)
        pack_2sided_into(f1, blk["fc1.thr_hi"], blk["fc1.thr_lo"], f1b)
        self.tock("fc1 thresholds", t)
        self.rec(p + "fc1.bits", lambda: _unpack(f1b, m.mlp_hidden).reshape(b, n, -1))
        f2 = self.linear("fc2 (and)", f1b, pb.fc2_t, None)
        self.rec(p + "fc2.acc", lambda: f2.reshape(shape))
        last = i + 1 == m.depth
        nxt = f"blocks.{i + 1}."
        x, next_bits = self.residual(x, f2, blk, "fc2", p + "fc2", None if last else self.next_ln1(i + 1), "ln1",
                                     nxt + "ln1")
        x2 = x
        self.rec(p + "resid2", lambda: x2.reshape(shape))
        return x, next_bits

    def next_ln1(self, i: int) -> dict:
        a = self.m.arrays
        return {"ln1.sign": a[f"blocks.{i}.ln1.sign"], "ln1.thr": a[f"blocks.{i}.ln1.thr"]}

    def run(self, images: np.ndarray) -> np.ndarray:
        m, a, sh = self.m, self.m.arrays, self.sh
        self.rec("input", lambda: images)
        x = self.patch_embed(images)
        bits = None
        for i in range(m.depth):
            x, bits = self.block(i, x, bits)
        t = self.tick()
        qs = []
        for tok, norm in ((0, "norm"), (1, "head_dist_norm")):
            q, bad = _head_inputs(x, tok, self.n, a[norm + ".gain"], a[norm + ".offset"], sh["head_ln"], self.eps)
            if bad >= 0:
                _raise_overflow(norm, LN_OVERFLOW, bad, (self.b,))
            qs.append(q)
        q = np.stack(qs, axis=1)
        hacc, logits, pred = _heads(q, a["head.weight"], a["head_dist.weight"], np.int64(a["head.mult"]),
                                    np.int64(a["head_dist.mult"]), a["logit.bias"])
        self.tock("final norm + heads", t)
        self.rec("head.q", lambda: q)
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


def _one_blas_thread():
    """Context manager holding BLAS to one thread (threadpoolctl, shipped with scikit-learn)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - without threadpoolctl BLAS keeps its own setting
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def forward_profiled(model: IntModel, images: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Logits as ``forward``, and the seconds spent per stage (wall clock, this call).

    Stages: patch embedding, layernorm -> bits, the four binary linears, the attention
    phases (ATTENTION_PHASES), fc1 thresholds, residual requant, final norm + heads,
    weight layout; "other" is the rest (Python glue, allocation).
    """
    images = check_images(model, images)
    prof: dict[str, float] = {}
    start = time.perf_counter()
    logits = _Run(model, images, False, prof).run(images)
    prof["other"] = max(0.0, time.perf_counter() - start - sum(prof.values()))
    return logits, prof


def forward_batch(model: IntModel, images: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Logits of a batch split over `threads` threads (default: one per core), no trace.

    Equal to ``forward(model, images)[0]``: every image is independent. The jitted code
    releases the GIL; BLAS (the patch embedding) is held to one thread meanwhile so the
    threads do not oversubscribe the cores. If a chunk overflows, the whole batch is
    re-run by ``forward`` so that the error names the same (first) layer, image and
    token as the golden path.
    """
    images = check_images(model, images)
    threads = (os.cpu_count() or 1) if threads is None else int(threads)
    if threads < 1:
        raise InputError(f"forward_batch: threads must be >= 1, got {threads}")
    n = min(threads, images.shape[0])
    if n == 1:
        return forward(model, images)[0]
    bounds = [(i * images.shape[0]) // n for i in range(n + 1)]
    chunks = [images[bounds[i]:bounds[i + 1]] for i in range(n)]
    try:
        with _one_blas_thread(), ThreadPoolExecutor(max_workers=n) as pool:
            parts = list(pool.map(lambda c: forward(model, c)[0], chunks))
    except IntegerOverflowError:
        return forward(model, images)[0]
    return np.concatenate(parts)
