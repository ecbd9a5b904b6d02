"""§13.2-§13.3 on the fast path (Numba), the whole batch in one call: the undecimated Haar split into packed
low/high Q and K bits, the two Q.K^T popcount maps combined per head, the three-level exp softmax (one
reciprocal per row), the attention plane b1 and its row popcounts k_i, the DIBA context (s00*D from
``kernels.context_head``, plus the differential and Laplacian terms) and the proj input bits. The
``hfsc_diba`` attention feature of gsbsim/format/methods.py."""
from __future__ import annotations

import numpy as np
from numba import njit

from gsbsim.engine.fast_attention import probabilities_row
from gsbsim.engine import bit_ids, fast_attention, fast_ops, kernels, popcnt, table_lookup
from gsbsim.engine.fast_ops import INLINE, JIT
from gsbsim.engine.jit_cache import cache_depends_on
from gsbsim.engine.kernels import context_head, context_workspace, pack_row
from gsbsim.engine.popcnt import popcount64


# ============================================================================ §13.2 HFSC
@njit(**INLINE)
def _haar_bits(z, r0, n_tok, grid, heads, ch0, thr_low, thr_high, low, high, s4, hb):
    """Packed low/high bits [H, N, W(d)] of channels ch0..ch0+E of the image's z rows r0..r0+N:
    S4 = the 2x2 sum with replicate padding (4z for cls/dist), low = S4 >= thr_low,
    high = 4z - S4 >= thr_high (s4, hb int64 [E] scratch)."""
    e = s4.shape[0]
    d = e // heads
    for t in range(n_tok):
        za = z[r0 + t, ch0:ch0 + e]
        if t < 2:
            for c in range(e):
                s4[c] = 4 * np.int64(za[c])
        else:
            r = (t - 2) // grid
            w = t - 2 - r * grid
            r1 = min(r + 1, grid - 1)
            w1 = min(w + 1, grid - 1)
            zb = z[r0 + 2 + r * grid + w1, ch0:ch0 + e]
            zc = z[r0 + 2 + r1 * grid + w, ch0:ch0 + e]
            zd = z[r0 + 2 + r1 * grid + w1, ch0:ch0 + e]
            for c in range(e):
                s4[c] = (np.int64(za[c]) + np.int64(zb[c])) + (np.int64(zc[c]) + np.int64(zd[c]))
        for c in range(e):
            hb[c] = 4 * np.int64(za[c]) - s4[c]
        for h in range(heads):
            c0 = h * d
            tl = thr_low[c0:c0 + d]
            th = thr_high[c0:c0 + d]
            pack_row(s4[c0:c0 + d], tl, tl, False, low[h, t])
            pack_row(hb[c0:c0 + d], th, th, False, high[h, t])


@njit(**INLINE)
def _values(z, r0, n_tok, heads, v_off, vq, codes, sig):
    """Vq = z[2E + c] + v.offset[c] into vq int64 [H, N, d], the sign plane s = Vq >= 0 into codes
    uint8 [H, N, d] and sigma = 2s - 1 token-major into sig int32 [N, E]."""
    e = sig.shape[1]
    d = e // heads
    for t in range(n_tok):
        src = z[r0 + t, 2 * e:3 * e]
        srow = sig[t]
        for h in range(heads):
            c0 = h * d
            zs = src[c0:c0 + d]
            off = v_off[c0:c0 + d]
            vrow = vq[h, t]
            crow = codes[h, t]
            so = srow[c0:c0 + d]
            for j in range(d):
                v = np.int64(zs[j]) + off[j]
                vrow[j] = v
                crow[j] = np.uint8(v >= 0)
                so[j] = 2 * np.int32(v >= 0) - 1


@njit(**INLINE)
def _laplacian(sig, grid, lap):
    """lap int32 [N, E]: for patch tokens the sum of sigma over the 8 grid neighbours (zero
    padding) minus 8 sigma (the 3x3 box sum minus 9 sigma); 0 for cls/dist."""
    n_tok, e = sig.shape
    lap[0:2, :] = 0
    for t in range(2, n_tok):
        r = (t - 2) // grid
        w = t - 2 - r * grid
        out = lap[t]
        own = sig[t]
        for c in range(e):
            out[c] = -9 * own[c]
        for rr in range(max(r - 1, 0), min(r + 2, grid)):
            for ww in range(max(w - 1, 0), min(w + 2, grid)):
                nb = sig[2 + rr * grid + ww]
                for c in range(e):
                    out[c] += nb[c]


@njit(**JIT)
def _exp_coarse(exp_hi, exp_mid, prob, m_max):
    """The two coarse levels of §13.2's exp as one table over k = m >> 8:

        T[k] = rq(exp_hi[k >> 8] * exp_mid[k & 255], prob)  for k < L,  T[L] = 0,
        L = min(len(exp_hi) * 256, (m_max >> 8) + 1)

    so that e = rq(T[min(m >> 8, L)] * exp_lo[m & 255], prob) for every 0 <= m <= m_max (past
    exp_hi, T = 0 gives e = 0): two lookups and one multiply per key.
    """
    length = min(exp_hi.shape[0] * 256, (m_max >> 8) + 1)
    half_p = np.int64(1) << np.int64(prob - 1) if prob > 0 else np.int64(0)
    table = np.empty(length + 1, dtype=np.int64)
    for k in range(length):
        table[k] = (exp_hi[k >> 8] * exp_mid[k & 255] + half_p) >> np.int64(prob)
    table[length] = 0
    return table


@njit(**JIT)
def _hfsc_softmax_head(ql, qh, kl, kh, d, w_low, w_high, table, exp_lo, prob, bias, shift, one_r, thr_row,
                       a_out, plane, counts, sc_low, sc_high, hfsc, b, h, trace, pcl, pch, sbuf, ebuf):
    """One head: the two score maps, S = w_low*scL + w_high*scH, the softmax with the exp tables
    (table from _exp_coarse, exp_lo), A = P + att_bias into a_out int64 [N|1, N], b1 = A >= a.thr1 (thr_row: a.thr1
    per key) packed into plane [N, W(N)] and its row popcounts into counts int64 [N]; with
    `trace` the score maps and S of image b."""
    n, wd = ql.shape
    half = np.uint64(1) << np.uint64(shift - 1)
    ush = np.uint64(shift)
    last = np.uint64(table.shape[0] - 1)
    half_p = np.uint64(1) << np.uint64(prob - 1) if prob > 0 else np.uint64(0)
    ush_p = np.uint64(prob)
    u8 = np.uint64(8)
    low = np.uint64(255)
    for i in range(n):
        x = ql[i, 0]
        y = qh[i, 0]
        for t in range(n):
            pcl[t] = popcount64(x ^ kl[t, 0])
        for t in range(n):
            pch[t] = popcount64(y ^ kh[t, 0])
        for w in range(1, wd):
            x = ql[i, w]
            y = qh[i, w]
            for t in range(n):
                pcl[t] += popcount64(x ^ kl[t, w])
            for t in range(n):
                pch[t] += popcount64(y ^ kh[t, w])
        for t in range(n):
            sbuf[t] = w_low * (d - 2 * pcl[t]) + w_high * (d - 2 * pch[t])
        smax = sbuf[0]
        for t in range(n):
            smax = max(smax, sbuf[t])
        if trace:
            for t in range(n):
                sc_low[b, h, i, t] = np.int32(d - 2 * pcl[t])
                sc_high[b, h, i, t] = np.int32(d - 2 * pch[t])
                hfsc[b, h, i, t] = sbuf[t]
        zsum = np.int64(0)
        for t in range(n):
            # m >= 0: unsigned indices (no wraparound code); the tables hold values <= 2^prob <= 2^30
            # (checked on load), so the product is 32x32 -> 64 bits
            m = np.uint64(smax - sbuf[t])
            hm = np.uint64(np.uint32(table[min(m >> u8, last)]))
            e = np.int64((hm * np.uint64(np.uint32(exp_lo[m & low])) + half_p) >> ush_p)
            ebuf[t] = e
            zsum += e
        arow = a_out[i if a_out.shape[0] > 1 else 0]
        probabilities_row(ebuf, one_r // zsum, half, ush, bias[i], arow)
        pack_row(arow, thr_row, thr_row, False, plane[i])
        c = 0
        for w in range(plane.shape[1]):
            c += popcount64(plane[i, w])
        counts[i] = c


# ============================================================================ §13.3 DIBA
@njit(**INLINE)
def _diba_terms(ctx, r0, c0, d, k_row, sig, lap, s00, vscale, local):
    """ctx[r0 + i, c0 + j] (= s00*D) += -(s00*k_i - vscale)*sigma + local*lap for one head."""
    for i in range(k_row.shape[0]):
        coef = s00 * k_row[i] - vscale
        res = ctx[r0 + i, c0:c0 + d]
        so = sig[i, c0:c0 + d]
        lo = lap[i, c0:c0 + d]
        for j in range(d):
            res[j] += local * np.int64(lo[j]) - coef * np.int64(so[j])


@njit(**JIT)
def hfsc_diba_batch(zq, n_tok, grid, heads, q_low, q_high, k_low, k_high, v_off, score_w, exp_hi, exp_mid, exp_lo,
                    att_bias, prob, recip, thr1, scale, vscale, local, in_thr, trace, av_strategy):
    """§13.2-§13.3 of one block for the whole batch, from the qkv unit's z int32 [B*N, 3E].

    Returns (Q low, Q high, K low, K high bits [B, H, N, W(d)], Vq [B|1, H, N, d], sign
    plane [B, H, N, d], scores low, high int32 [B|0, H, N, N], S int64 [B|0, H, N, N],
    A [B|1, H, N|1, N], b1 [B, H, 1, N, W(N)], lap int32 [B|1, N, E], ctx int64 [B*N, E],
    proj input bits [B*N, W(E)]); "B|1" arrays keep every image only when tracing.
    """
    rows, e3 = zq.shape
    e = e3 // 3
    b_n = rows // n_tok
    d = e // heads
    wd, wn = (d + 63) // 64, (n_tok + 63) // 64
    tb = b_n if trace else 1
    ts = b_n if trace else 0
    ql = np.zeros((b_n, heads, n_tok, wd), dtype=np.uint64)
    qh = np.zeros((b_n, heads, n_tok, wd), dtype=np.uint64)
    kl = np.zeros((b_n, heads, n_tok, wd), dtype=np.uint64)
    kh = np.zeros((b_n, heads, n_tok, wd), dtype=np.uint64)
    vq = np.empty((tb, heads, n_tok, d), dtype=np.int64)
    codes = np.empty((b_n, heads, n_tok, d), dtype=np.uint8)
    sc_low = np.empty((ts, heads, n_tok, n_tok), dtype=np.int32)
    sc_high = np.empty((ts, heads, n_tok, n_tok), dtype=np.int32)
    hfsc = np.empty((ts, heads, n_tok, n_tok), dtype=np.int64)
    probs = np.empty((tb, heads, n_tok if trace else 1, n_tok), dtype=np.int64)
    planes = np.zeros((b_n, heads, 1, n_tok, wn), dtype=np.uint64)
    lap = np.empty((tb, n_tok, e), dtype=np.int32)
    ctx = np.empty((rows, e), dtype=np.int64)
    pin = np.zeros((rows, (e + 63) // 64), dtype=np.uint64)
    counts = np.empty((heads, 1, n_tok), dtype=np.int64)
    sig = np.empty((n_tok, e), dtype=np.int32)
    s4 = np.empty(e, dtype=np.int64)
    hb = np.empty(e, dtype=np.int64)
    pcl = np.empty(n_tok, dtype=np.int64)
    pch = np.empty(n_tok, dtype=np.int64)
    sbuf = np.empty(n_tok, dtype=np.int64)
    ebuf = np.empty(n_tok, dtype=np.int64)
    shift = np.int64(recip - prob)
    one_r = np.int64(1) << np.int64(recip)
    s00 = scale[0, 0]
    ws = context_workspace(scale, n_tok, d)
    m_max = np.int64(0)          # |S| <= (|w_low| + |w_high|) * d, so m <= 2 * that
    for h in range(heads):
        m_max = max(m_max, 2 * (abs(score_w[0, h]) + abs(score_w[1, h])) * d)
    table = _exp_coarse(exp_hi, exp_mid, prob, m_max)
    thr_row = np.full(n_tok, thr1, dtype=np.int64)
    for b in range(b_n):
        s = b if trace else 0
        r0 = b * n_tok
        _haar_bits(zq, r0, n_tok, grid, heads, 0, q_low, q_high, ql[b], qh[b], s4, hb)
        _haar_bits(zq, r0, n_tok, grid, heads, e, k_low, k_high, kl[b], kh[b], s4, hb)
        _values(zq, r0, n_tok, heads, v_off, vq[s], codes[b], sig)
        _laplacian(sig, grid, lap[s])
        for h in range(heads):
            _hfsc_softmax_head(ql[b, h], qh[b, h], kl[b, h], kh[b, h], d, score_w[0, h], score_w[1, h], table,
                               exp_lo, prob, att_bias[h], shift, one_r, thr_row, probs[s, h], planes[b, h, 0],
                               counts[h, 0], sc_low, sc_high, hfsc, b, h, trace, pcl, pch, sbuf, ebuf)
        for h in range(heads):
            context_head(planes[b, h], counts[h], codes[b, h], scale, n_tok, ctx, r0, h * d, av_strategy, ws)
            _diba_terms(ctx, r0, h * d, d, counts[h, 0], sig, lap[s], s00, vscale, local[h])
        for r in range(r0, r0 + n_tok):
            pack_row(ctx[r], in_thr, in_thr, False, pin[r])
    return ql, qh, kl, kh, vq, codes, sc_low, sc_high, hfsc, probs, planes, lap, ctx, pin


# the softmax helpers, the GSB context and the packing helpers are linked into this function's cached code
cache_depends_on(hfsc_diba_batch, fast_attention, kernels, popcnt, fast_ops, table_lookup, bit_ids)
