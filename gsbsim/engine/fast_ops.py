"""Jitted row kernels of the fast path outside the attention (Numba): LayerNorm -> packed bits with the exact
integer square root, the patch embedding's requantization, the residual add fused with the next LayerNorm,
the heads; and the small helpers every fast module shares (jit options, overflow raising, unpacking)."""
from __future__ import annotations

import math
import weakref

import numpy as np
from numba import njit

from gsbsim.engine import errors, int8_gemm, popcnt
from gsbsim.format.conventions import unpack_bits
from gsbsim.engine.errors import (IntegerOverflowError, overflow_message)
from gsbsim.engine.jit_cache import cache_depends_on
from gsbsim.engine.kernels import weight_layout
from gsbsim.engine.popcnt import wide_vectors


JIT = dict(cache=True, nogil=True, boundscheck=False)
INLINE = dict(inline="always", nogil=True, boundscheck=False)
LN_LIMIT = np.int64(errors.LN_LIMIT)
I32_MIN, I32_MAX = np.int64(errors.INT32_MIN), np.int64(errors.INT32_MAX)
# ============================================================================ LayerNorm
@njit(**JIT)
def _isqrt(v):
    """floor(sqrt(v)) for 0 <= v < 2^62 (float guess, then exact integer correction)."""
    r = np.int64(np.sqrt(np.float64(v)))
    while r * r > v:
        r -= 1
    while (r + 1) * (r + 1) <= v:
        r += 1
    return r


@njit(**INLINE)
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


@njit(**INLINE)
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


@njit(**INLINE)
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


@njit(**INLINE)
def _ln_words(x, s1s, sigmas, sign, thr, ln_shift, out):
    """The packed LayerNorm bits of every row of X from its (S1, sigma): all rows' full words, then all
    rows' last partial word (in the loop above it slows every word). (Both sides of the comparisons
    into two rows packed by popcnt.ge_word measured no faster: the loop vectorises as it is.)"""
    m_n, e = x.shape
    lp = _ln_params(sign, thr)
    full = e // 64
    for m in range(m_n):
        row = x[m]
        for w in range(full):
            out[m, w] = _ln_word(row, s1s[m], sigmas[m], sign, thr, lp, ln_shift, w * 64, 64)
    if e > full * 64:
        for m in range(m_n):
            out[m, full] = _ln_word(x[m], s1s[m], sigmas[m], sign, thr, lp, ln_shift, full * 64, e - full * 64)


@njit(**INLINE)
def _ln_rows(x, sign, thr, ln_shift, eps, fast_lim, out):
    """§3 on every row of X into packed bits out; returns the first row whose E*S2 + eps reaches 2^62
    (otherwise sigma < 2^31: spec §1), or -1. Two passes: all rows' (S1, sigma), then all rows' words
    (a bad row's bits are meaningless: the caller raises). Measured 3x faster than one fused pass per row, where
    LLVM gives up on vectorising the word loop."""
    m_n = x.shape[0]
    s1s = np.empty(m_n, dtype=np.int64)
    sigmas = np.empty(m_n, dtype=np.int64)
    bad = -1
    for m in range(m_n):
        s1s[m], sigmas[m] = _ln_stats(x[m], eps, fast_lim)
        if sigmas[m] < 0 and bad < 0:
            bad = m
    _ln_words(x, s1s, sigmas, sign, thr, ln_shift, out)
    return bad


@njit(**JIT)
def ln_bits_rows(x, sign, thr, ln_shift, eps, fast_lim, out):
    """§3 on every row of X int32 [M, E] into packed bits out uint64 [M, W(E)] (sign int8 [E],
    thr int64 [E]). Returns the first row whose E*S2 + eps reaches 2^62, or -1."""
    wide_vectors()
    return _ln_rows(x, sign, thr, ln_shift, eps, fast_lim, out)


def fast_limit(e: int, eps: int) -> int:
    """Largest |x| with E^2 * x^2 + eps < 2^62 (-1 if none): rows below it skip the checks."""
    room = (2 ** 62 - 1 - eps) // (e * e)
    return math.isqrt(room) if room >= 0 else -1


# ============================================================================ embedding, residual, heads
@njit(**INLINE)
def _first_outside_int32(vals):
    """Index of the first value outside int32 in a 1-D int64 array, or -1."""
    for o in range(vals.shape[0]):
        if vals[o] < I32_MIN or vals[o] > I32_MAX:
            return o
    return -1


@njit(**INLINE)
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


@njit(**JIT)
def patch_rows(images, p):
    """§2's patches of images int8 [B, Cin, I, I] as rows int8 [B*(I/p)^2, Cin*p*p] (row-major patches, each
    channel-major then row-major, as the patch weights): ~3x faster than numpy's transposed copy (45 us per
    DeiT image on the Zen 4)."""
    b_n, c_n, size, _ = images.shape
    g = size // p
    out = np.empty((b_n * g * g, c_n * p * p), dtype=images.dtype)
    for b in range(b_n):
        for gy in range(g):
            for gx in range(g):
                row = out[(b * g + gy) * g + gx]
                for c in range(c_n):
                    for py in range(p):
                        src = images[b, c, gy * p + py]
                        o = (c * p + py) * p
                        for px in range(p):
                            row[o + px] = src[gx * p + px]
    return out


@njit(**JIT)
def embed_rows(acc, mult, bias, pos, tokens, shift, b_n):
    """§2 from the patch accumulators acc int32 [B*T, E]: X int32 [B*N, E], first bad flat index or -1, value."""
    wide_vectors()
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


@njit(**INLINE)
def _residual_row(xr, ar, mult, bias, half, sh, vals, orow):
    """orow = X + rq(acc, mult, bias[o], shift) as int32; True when a value left int32."""
    for o in range(vals.shape[0]):
        vals[o] = np.int64(xr[o]) + ((np.int64(ar[o]) * mult + bias[o] + half) >> sh)
    return _store_int32(vals, orow)


@njit(**JIT)
def residual_add_rows(x, acc, mult, bias, shift):
    """§7: X + rq(acc, mult, bias[o], shift) as int32 [M, E]; first bad flat index (or -1), its value."""
    wide_vectors()
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


@njit(**INLINE)
def _residual_stats_row(xr, ar, mult, bias, half, sh, orow, narrow):
    """orow = X + rq(acc, mult, bias[o], shift) as int32 and, in the same pass, the (min, max) of the
    int64 values and their S1, S2 (wrapping int64 sums): when min and max are in int32 these are the
    stored row's LayerNorm sums (exact when max |v| = max(max, -min) <= fast_limit; no reduction of
    its own: measured ~10 % of this pass).

    narrow (mult fits int32; a constant after inlining): acc * mult is a 32x32 -> 64-bit product,
    and S2 sums the squares of the stored int32 values (equal to v whenever min and max are in
    int32, the only case the sums are used): native vector multiplies, not emulated 64x64 ones."""
    lo = np.int64(2 ** 63 - 1)
    hi = np.int64(-2 ** 63)
    s1 = np.int64(0)
    s2 = np.int64(0)
    m32 = np.int64(np.int32(mult))
    for o in range(orow.shape[0]):
        if narrow:
            v = np.int64(xr[o]) + ((np.int64(ar[o]) * m32 + bias[o] + half) >> sh)
            v32 = np.int64(np.int32(v))
            sq = v32 * v32
        else:
            v = np.int64(xr[o]) + ((np.int64(ar[o]) * mult + bias[o] + half) >> sh)
            sq = v * v
        orow[o] = np.int32(v)
        lo = min(lo, v)
        hi = max(hi, v)
        s1 += v
        s2 += sq
    return lo, hi, s1, s2


@njit(**JIT)
def residual_ln_rows(x, acc, mult, bias, shift, sign, thr, ln_shift, eps, fast_lim, bits):
    """residual_add_rows, then §3 of the next LayerNorm on the new rows: the residual, its int32 check
    and the LayerNorm sums in one pass per row, then the bits of all rows.

    Returns (X int32 [M, E], first bad flat index of the residual or -1, its value, first
    LayerNorm-overflow row or -1). A residual overflow anywhere wins (layers are checked in
    order over the whole batch): the LayerNorm then covers only the rows before it.
    """
    wide_vectors()
    m_n, e = x.shape
    out = np.empty((m_n, e), dtype=np.int32)
    s1s = np.empty(m_n, dtype=np.int64)
    sigmas = np.empty(m_n, dtype=np.int64)
    half = np.int64(1) << np.int64(shift - 1)
    sh = np.int64(shift)
    ln_bad = -1
    narrow = -2 ** 31 <= mult < 2 ** 31
    for m in range(m_n):
        if narrow:
            lo, hi, s1, s2 = _residual_stats_row(x[m], acc[m], mult, bias, half, sh, out[m], True)
        else:
            lo, hi, s1, s2 = _residual_stats_row(x[m], acc[m], mult, bias, half, sh, out[m], False)
        if lo < I32_MIN or hi > I32_MAX:
            vals = np.empty(e, dtype=np.int64)
            _residual_row(x[m], acc[m], mult, bias, half, sh, vals, out[m])
            o = _first_outside_int32(vals)
            return out, m * e + o, vals[o], _ln_rows(out[:m], sign, thr, ln_shift, eps, fast_lim, bits[:m])
        if max(hi, -lo) <= fast_lim:     # E^2 * max|x|^2 + eps < 2^62: the wrapping sums did not wrap
            s1s[m] = s1
            sigmas[m] = _isqrt(e * s2 - s1 * s1 + eps)
        else:
            s1s[m], sigmas[m] = _ln_stats(out[m], eps, fast_lim)
        if sigmas[m] < 0 and ln_bad < 0:
            ln_bad = m
    _ln_words(out, s1s, sigmas, sign, thr, ln_shift, bits)
    return out, -1, np.int64(0), ln_bad


@njit(**JIT)
def head_input_rows(x, tok, n_tok, gain, offset, k, eps):
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


@njit(**JIT)
def logit_rows(acc, mult_head, mult_dist, bias):
    """§9 from exact head accumulators acc [B, 2, C] (int32, or int64 sums): logits int64 [B, C] and
    predictions int64 [B] (the first largest logit)."""
    b_n, _, c_n = acc.shape
    logits = np.empty((b_n, c_n), dtype=np.int64)
    pred = np.empty(b_n, dtype=np.int64)
    for b in range(b_n):
        for c in range(c_n):
            logits[b, c] = np.int64(acc[b, 0, c]) * mult_head + np.int64(acc[b, 1, c]) * mult_dist + bias[c]
        best = 0
        for c in range(c_n):
            if logits[b, c] > logits[b, best]:
                best = c
        pred[b] = best
    return logits, pred


@njit(**JIT)
def head_logit_rows(q, w_head, w_dist, mult_head, mult_dist, bias):
    """§9 by dot-product loops: head accumulators int32 [B, 2, C], logits int64 [B, C] and predictions
    int64 [B] (head_logits' path for any E: the sums in int64, the logits from them)."""
    b_n = q.shape[0]
    c_n, e = w_head.shape
    acc = np.empty((b_n, 2, c_n), dtype=np.int64)
    for b in range(b_n):
        for c in range(c_n):
            s0 = np.int64(0)
            s1 = np.int64(0)
            for j in range(e):
                s0 += np.int64(w_head[c, j]) * np.int64(q[b, 0, j])
                s1 += np.int64(w_dist[c, j]) * np.int64(q[b, 1, j])
            acc[b, 0, c] = s0
            acc[b, 1, c] = s1
    logits, pred = logit_rows(acc, mult_head, mult_dist, bias)
    return acc.astype(np.int32), logits, pred


# the row kernels above call popcnt's intrinsics (wide_vectors): an edit of popcnt recompiles them
for _kernel in (ln_bits_rows, embed_rows, residual_add_rows, residual_ln_rows):
    cache_depends_on(_kernel, popcnt)


# ============================================================================ the forward pass
def raise_overflow(where: str, what: str, flat: int, shape: tuple[int, ...], value=None) -> None:
    raise IntegerOverflowError(overflow_message(where, what, np.unravel_index(flat, shape), value))


def unpack(words: np.ndarray, k: int) -> np.ndarray:
    return unpack_bits(words, k).astype(np.uint8)


_LAYOUTS: dict[tuple[int, str], tuple[weakref.ref, np.ndarray]] = {}


def _derived(w: np.ndarray, kind: str, make) -> np.ndarray:
    """make(w), made once per (weight array object, kind) and kept while w lives. The array is made
    read-only when cached, so a later in-place change raises instead of running stale weights."""
    key = (id(w), kind)
    hit = _LAYOUTS.get(key)
    if hit is not None and hit[0]() is w:
        return hit[1]
    out = make(w)
    try:
        ref = weakref.ref(w, lambda _, key=key: _LAYOUTS.pop(key, None))
    except TypeError:          # not weak-referenceable (never for an ndarray): no cache
        return out
    w.flags.writeable = False
    _LAYOUTS[key] = (ref, out)
    return out


def transposed(w: np.ndarray) -> np.ndarray:
    """kernels.weight_layout(w) (transposed, 64-byte aligned), made once per weight array (_derived): a
    forward pass no longer re-lays 48 matrices out."""
    return _derived(w, "layout", weight_layout)


def float_weights(w: np.ndarray, ftype) -> np.ndarray:
    """The patch embedding's int8 weights [E, K] as ftype [K, E] for the BLAS product, made once per
    weight array (_derived; ~0.1 ms per forward pass before)."""
    return _derived(w, np.dtype(ftype).name, lambda v: np.ascontiguousarray(v.T.astype(ftype)))


#: the int8 products (patch embedding, heads) by int8 register tiles (int8_gemm) rather than a float BLAS product
VNNI_PRODUCTS = int8_gemm.has_vnni()


def int8_products(xp: np.ndarray, w: np.ndarray) -> np.ndarray:
    """xp int8 [M, K] times w int8 [E, K] transposed, exactly for K <= 2^16 (every sum fits int32), as
    int32 [M, E]: the patch embedding's §2 products and the heads' §9 products. By vpdpbusd tiles where
    the CPU has AVX-512 VNNI (~4.5x the float32 product at DeiT's patch K = 768 on an AMD Zen 4; the
    tile sums cannot wrap: |sum_k w * (x + 128)| <= 128 * 255 * K < 2^31), else a float32 BLAS product
    (every partial sum an integer of at most 2^14 * K <= 2^24) or float64 (K > 1024)."""
    k, e = xp.shape[1], w.shape[0]
    if VNNI_PRODUCTS and k <= 2 ** 16:
        w4, start = _derived(w, "int8x4", int8_gemm.pack_weights)
        acc = int8_gemm.u8s8_gemm(int8_gemm.pack_pixels(xp), w4, start)
        return acc if acc.shape[1] == e else np.ascontiguousarray(acc[:, :e])
    ftype = np.float32 if k <= 1024 else np.float64
    return (xp.astype(ftype) @ float_weights(w, ftype)).astype(np.int32)


def head_logits(q: np.ndarray, w_head: np.ndarray, w_dist: np.ndarray, mult_head, mult_dist,
                bias: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """§9 from the head inputs q int8 [B, 2, E]: (accumulators int32 [B, 2, C], logits int64 [B, C],
    predictions int64 [B]). The products by int8_products (20 us per DeiT-Tiny image, 2 x 1000 x 192,
    against 38 us for head_logit_rows' dot-product loops, measured on the Zen 4); head_logit_rows stays
    for E > 2^16, where an int32 accumulator could wrap."""
    if q.shape[2] > 2 ** 16:
        return head_logit_rows(q, w_head, w_dist, mult_head, mult_dist, bias)
    acc = np.stack([int8_products(np.ascontiguousarray(q[:, 0]), w_head),
                    int8_products(np.ascontiguousarray(q[:, 1]), w_dist)], axis=1)
    logits, pred = logit_rows(acc, mult_head, mult_dist, bias)
    return acc, logits, pred
