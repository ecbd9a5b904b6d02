"""The fast path of methods ``reactnet`` and ``didb`` (docs/integer_model.md §13), with Numba.

``gsbsim.fast`` runs a block through ``block`` below when the model's method has the
activation unit (``model_file.ACT_METHODS``); everything outside the blocks, the
LayerNorms, the binary linears (``kernels.xnor_into`` / ``and_into``), the residual adds
and the trace recording are ``gsbsim.fast``'s. What is here:

* ``_act_unit``: §13.1 after every binary linear, one pass over the accumulators
  (u = rq(acc), the RPReLU slope on the negative side, the channel and token offsets) with
  32x32-bit products where mult and the slopes allow; the |u| < 2^31 and |z| < 2^30 checks
  are skipped when float bounds on the parameters prove them (any plausible model), else
  kept as row minima/maxima (no branch per element);
* ``reactnet``'s attention is GSB's with one group on z (``shifts.value`` unused: the
  value scale is 1), so it is ``gsbsim.fast``'s ``_Run.attention``;
* ``_didb_attention``: §13.2-§13.3 for the whole batch in one call: the undecimated Haar
  split into packed low/high Q and K bits, the two Q.K^T popcount maps combined per head,
  the three-level exp softmax (one reciprocal per row), the attention plane b1 and its row
  popcounts k_i, the DIBA context (s00*D from ``kernels.context_head``, the sparse or
  popcount A.V of GSB with one group, plus the differential and Laplacian terms) and the
  proj input bits.

The residual add of z uses ``gsbsim.fast``'s fused residual + LayerNorm kernel with the
identity requantization rq(z, 2, 0, 1) = (2z + 1) >> 1 = z (exact), so its overflow checks
and messages are the golden path's.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from gsbsim.engine import fast
from gsbsim.format.conventions import n_words
from gsbsim.engine.fast import _INLINE, _JIT, _probabilities_row
from gsbsim.engine.golden import LN_OVERFLOW, RESID_OVERFLOW
from gsbsim.engine.golden_methods import U_LIMIT, U_OVERFLOW, Z_LIMIT, Z_OVERFLOW
from gsbsim.engine.kernels import context_head, context_workspace, pack_2sided_into, pack_row
from gsbsim.format.model_file import SLOPE_SHIFT
from gsbsim.engine.popcnt import popcount64

__all__ = ["block"]

SLOPE_HALF = 1 << (SLOPE_SHIFT - 1)      # rq(u, slope, 0, SLOPE_SHIFT)'s rounding constant


# ============================================================================ §13.1 activation unit
@njit(**_INLINE)
def _act_value(acc, mult, bias, t_in, slope, out_c, t_out, sh, narrow):
    """(u, z) of one element; t_in = tok_in[n] + 2^(shift-1) (rq's rounding constant folded in).

    narrow (a constant after inlining): mult and slope fit int32, so both products are
    32x32 -> 64-bit (native vector multiplies, not emulated 64x64 ones); u is truncated to
    32 bits for the slope product, which is exact whenever |u| < 2^31 (otherwise the caller
    raises the u error and z is not used).
    """
    if narrow:
        u = (np.int64(acc) * np.int64(np.int32(mult)) + bias + t_in) >> sh
        neg = (np.int64(np.int32(u)) * np.int64(np.int32(slope)) + SLOPE_HALF) >> SLOPE_SHIFT
    else:
        u = (np.int64(acc) * mult + bias + t_in) >> sh
        neg = (u * slope + SLOPE_HALF) >> SLOPE_SHIFT
    return u, (u if u >= 0 else neg) + out_c + t_out


@njit(**_INLINE)
def _act_rows(acc, n_tok, mult, bias, tok_in, slope, out_c, tok_out, shift, z, narrow, checked):
    """_act_unit's loop (narrow: see _act_value; checked: keep the bounds of u and z)."""
    m_n, c_n = acc.shape
    sh = np.int64(shift)
    half = np.int64(1) << np.int64(shift - 1)
    u_at, u_val, z_at, z_val = -1, np.int64(0), -1, np.int64(0)
    for m in range(m_n):
        n = m % n_tok
        t_in = tok_in[n] + half
        t_out = tok_out[n]
        a = acc[m]
        zr = z[m]
        if not checked:
            for o in range(c_n):
                zr[o] = np.int32(_act_value(a[o], mult, bias[o], t_in, slope[o], out_c[o], t_out, sh, narrow)[1])
            continue
        u_lo, u_hi, z_lo, z_hi = np.int64(0), np.int64(0), np.int64(0), np.int64(0)
        for o in range(c_n):
            u, v = _act_value(a[o], mult, bias[o], t_in, slope[o], out_c[o], t_out, sh, narrow)
            u_lo = min(u_lo, u)
            u_hi = max(u_hi, u)
            z_lo = min(z_lo, v)
            z_hi = max(z_hi, v)
            zr[o] = np.int32(v)
        u_row = u_at < 0 and (u_lo <= -U_LIMIT or u_hi >= U_LIMIT)
        z_row = z_at < 0 and (z_lo <= -Z_LIMIT or z_hi >= Z_LIMIT)
        for o in range(c_n if u_row or z_row else 0):
            u, v = _act_value(a[o], mult, bias[o], t_in, slope[o], out_c[o], t_out, sh, narrow)
            if u_row and abs(u) >= U_LIMIT:
                u_at, u_val, u_row = m * c_n + o, u, False
            if z_row and abs(v) >= Z_LIMIT:
                z_at, z_val, z_row = m * c_n + o, v, False
    return u_at, u_val, z_at, z_val


@njit(**_INLINE)
def _act_is_safe(k, mult, bias, tok_in, slope, out_c, tok_out, shift):
    """True when |u| < 2^31 and |z| < 2^30 hold for every accumulator in [-K, K], every token and
    channel, by float64 bounds with a 2^20 margin (far above their rounding error): then the
    run-time checks cannot fire and are skipped. A plausible model is far inside (u and z are
    a few units 2^F)."""
    margin = 2.0 ** 20
    t_in = max(abs(np.float64(np.min(tok_in))), abs(np.float64(np.max(tok_in))))
    t_out = max(abs(np.float64(np.min(tok_out))), abs(np.float64(np.max(tok_out))))
    base = k * abs(np.float64(mult)) + t_in
    for o in range(bias.shape[0]):
        u_max = (base + abs(np.float64(bias[o]))) * 2.0 ** -shift + 1.0
        z_max = u_max * max(1.0, abs(np.float64(slope[o])) * 2.0 ** -SLOPE_SHIFT) + 1.0 + abs(
            np.float64(out_c[o])) + t_out
        if u_max >= U_LIMIT - margin or z_max >= Z_LIMIT - margin:
            return False
    return True


@njit(**_JIT)
def _act_unit(acc, k, n_tok, mult, bias, tok_in, slope, out_c, tok_out, shift, z):
    """z int32 [M, C] of the accumulators acc int32 [M, C] in [-k, k] (M = B*N stacked tokens):

        u = rq(acc, mult, bias[o] + tok_in[n], shift);  z = (u >= 0 ? u : rq(u, slope[o], 0, 16)) + out[o] + tok_out[n]

    Returns (flat index of the first |u| >= 2^31 or -1, that u, flat index of the first
    |z| >= 2^30 or -1, that z). When the parameters cannot produce an overflow
    (_act_is_safe) and the products are narrow (mult and slopes fit int32) one lean loop;
    otherwise the general loop keeps the bounds as row minima/maxima (no branch per element)
    and scans only a bad row again for its first offender.
    """
    narrow = -2 ** 31 <= mult < 2 ** 31
    for o in range(slope.shape[0]):
        narrow &= -2 ** 31 <= slope[o] < 2 ** 31
    if narrow and _act_is_safe(k, mult, bias, tok_in, slope, out_c, tok_out, shift):
        return _act_rows(acc, n_tok, mult, bias, tok_in, slope, out_c, tok_out, shift, z, True, False)
    return _act_rows(acc, n_tok, mult, bias, tok_in, slope, out_c, tok_out, shift, z, False, True)


# ============================================================================ §13.2 HFSC
@njit(**_INLINE)
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


@njit(**_INLINE)
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


@njit(**_INLINE)
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


@njit(**_JIT)
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


@njit(**_JIT)
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
        _probabilities_row(ebuf, one_r // zsum, half, ush, bias[i], arow)
        pack_row(arow, thr_row, thr_row, False, plane[i])
        c = 0
        for w in range(plane.shape[1]):
            c += popcount64(plane[i, w])
        counts[i] = c


# ============================================================================ §13.3 DIBA
@njit(**_INLINE)
def _diba_terms(ctx, r0, c0, d, k_row, sig, lap, s00, vscale, local):
    """ctx[r0 + i, c0 + j] (= s00*D) += -(s00*k_i - vscale)*sigma + local*lap for one head."""
    for i in range(k_row.shape[0]):
        coef = s00 * k_row[i] - vscale
        res = ctx[r0 + i, c0:c0 + d]
        so = sig[i, c0:c0 + d]
        lo = lap[i, c0:c0 + d]
        for j in range(d):
            res[j] += local * np.int64(lo[j]) - coef * np.int64(so[j])


@njit(**_JIT)
def _didb_attention(zq, n_tok, grid, heads, q_low, q_high, k_low, k_high, v_off, score_w, exp_hi, exp_mid, exp_lo,
                    att_bias, prob, recip, thr1, scale, vscale, local, in_thr, trace, method):
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
            context_head(planes[b, h], counts[h], codes[b, h], scale, n_tok, ctx, r0, h * d, method, ws)
            _diba_terms(ctx, r0, h * d, d, counts[h, 0], sig, lap[s], s00, vscale, local[h])
        for r in range(r0, r0 + n_tok):
            pack_row(ctx[r], in_thr, in_thr, False, pin[r])
    return ql, qh, kl, kh, vq, codes, sc_low, sc_high, hfsc, probs, planes, lap, ctx, pin


# ============================================================================ the block
def _act(run, blk: dict, lin: str, acc: np.ndarray, where: str) -> np.ndarray:
    """§13.1 on linear `lin`'s accumulators: z int32 [B*N, C], or the golden path's overflow error."""
    t = run.tick()
    z = np.empty_like(acc)
    k = run.m.mlp_hidden if lin == "fc2" else run.e       # |acc| <= K, the linear's input length
    u_at, u_val, z_at, z_val = _act_unit(acc, k, run.n, np.int64(blk[lin + ".mult"]), blk[lin + ".bias"],
                                         blk[lin + ".tok_in"], blk[lin + ".slope"], blk[lin + ".out"],
                                         blk[lin + ".tok_out"], run.sh["resid"], z)
    shape = (run.b, run.n, acc.shape[1])
    if u_at >= 0:        # the golden path checks u over the whole layer, then z
        fast._raise_overflow(where, U_OVERFLOW, u_at, shape, u_val)
    if z_at >= 0:
        fast._raise_overflow(where, Z_OVERFLOW, z_at, shape, z_val)
    run.tock(f"{lin} activation unit", t)
    return z


def _add_z(run, x: np.ndarray, z: np.ndarray, where: str, ln: tuple | None, ln_where: str):
    """X + z (§13.1 on proj and fc2), checked to fit int32, and with ln = (sign, thr) the next
    LayerNorm's bits in the same pass: ``gsbsim.fast``'s fused kernels with the identity
    requantization rq(z, 2, 0, 1) = (2z + 1) >> 1 = z."""
    t = run.tick()
    zero = np.zeros(run.e, dtype=np.int64)
    bits = None
    if ln is None:
        new, bad, val = fast._residual_add(x, z, np.int64(2), zero, 1)
        ln_bad = -1
    else:
        bits = np.empty((x.shape[0], n_words(run.e)), dtype=np.uint64)
        new, bad, val, ln_bad = fast._residual_ln(x, z, np.int64(2), zero, 1, ln[0], ln[1], run.ln_shift, run.eps,
                                                  run.fast_lim, bits)
    if bad >= 0:
        fast._raise_overflow(where, RESID_OVERFLOW, bad, (run.b, run.n, run.e), val)
    if ln_bad >= 0:
        fast._raise_overflow(ln_where, LN_OVERFLOW, ln_bad, (run.b, run.n))
    run.tock("residual + layernorm -> bits", t)
    return new, bits


def _reactnet_attention(run, blk: dict, zq: np.ndarray, p: str) -> np.ndarray:
    """§4-§6 on the qkv unit's z: GSB with one group and value scale 1 (Vq = z + v.offset,
    ``shifts.value`` unused), i.e. ``gsbsim.fast``'s attention; records its traces (the same
    names and layout as ``gsbsim.fast``'s block) and returns the proj input bits."""
    run.vscale = np.int64(1)
    return run.record_attention(p, run.attention(blk, zq))


def _didb_attention_block(run, blk: dict, zq: np.ndarray, p: str) -> np.ndarray:
    """§13.2-§13.3 (HFSC, three-level exp softmax, DIBA) on the qkv unit's z; records the traces and
    returns the proj input bits."""
    m = run.m
    b, n, d = run.b, run.n, m.head_dim
    t = run.tick()
    ql, qh, kl, kh, vq, codes, sc_low, sc_high, hfsc, att, ap, lap, ctx, pin = _didb_attention(
        zq, n, m.img_size // m.patch_size, m.num_heads, blk["q.thr_low"], blk["q.thr_high"], blk["k.thr_low"],
        blk["k.thr_high"], blk["v.offset"], blk["score.w"], blk["exp_hi"], blk["exp_mid"], blk["exp_lo"], blk["att_bias"],
        run.sh["prob"], run.sh["recip"], np.int64(blk["a.thr1"]), blk["ctx.scale"], np.int64(blk["ctx.vscale"]),
        blk["ctx.local"], blk["proj.in_thr"], run.trace, run.method)
    run.tock("attention (hfsc + diba)", t)
    for name, bits in (("q.low", ql), ("q.high", qh), ("k.low", kl), ("k.high", kh)):
        run.rec(p + name, lambda bits=bits: fast._unpack(bits, d))
    run.rec(p + "v.q", lambda: vq)
    run.rec(p + "v.planes", lambda: codes[:, None].copy())
    run.rec(p + "scores.low", lambda: sc_low)
    run.rec(p + "scores.high", lambda: sc_high)
    run.rec(p + "hfsc", lambda: hfsc)
    run.rec(p + "probs", lambda: att)
    run.rec(p + "a.planes", lambda: fast._unpack(ap, n).transpose(0, 2, 1, 3, 4).copy())
    run.rec(p + "lap", lambda: lap)
    run.rec(p + "ctx", lambda: ctx.reshape(b, n, run.e))
    return pin


def block(run, i: int, x: np.ndarray, a_bits: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Block i of a reactnet or didb model on X [B*N, E] (``gsbsim.engine.fast._Run.block``'s contract:
    a_bits are its ln1 bits when the previous block computed them; returns the new X and the
    next block's ln1 bits, None after the last block). `run` is the ``gsbsim.engine.fast._Run``."""
    m = run.m
    t = run.tick()
    blk = m.block(i)
    w_t = {lin: fast._transposed(blk[lin + ".weight"]) for lin in ("qkv", "proj", "fc1", "fc2")}
    run.tock("weight layout", t)
    b, n, e, hd = run.b, run.n, run.e, m.mlp_hidden
    p = f"blocks.{i}."
    shape = (b, n, e)

    if a_bits is None:
        a_bits = run.ln(x, blk, "ln1", p + "ln1")
    run.rec(p + "ln1.bits", lambda: fast._unpack(a_bits, e).reshape(shape))
    qkv = run.linear("qkv (xnor)", a_bits, w_t["qkv"], e)
    run.rec(p + "qkv.acc", lambda: qkv.reshape(b, n, 3 * e))
    zq = _act(run, blk, "qkv", qkv, p + "qkv.act")
    run.rec(p + "qkv.z", lambda: zq.reshape(b, n, 3 * e))
    attention = _didb_attention_block if m.method == "didb" else _reactnet_attention
    pin = attention(run, blk, zq, p)
    run.rec(p + "proj.bits", lambda: fast._unpack(pin, e).reshape(shape))
    pacc = run.linear("proj (xnor)", pin, w_t["proj"], e)
    run.rec(p + "proj.acc", lambda: pacc.reshape(shape))
    zp = _act(run, blk, "proj", pacc, p + "proj.act")
    run.rec(p + "proj.z", lambda: zp.reshape(shape))
    x1, m_bits = _add_z(run, x, zp, p + "proj", (blk["ln2.sign"], blk["ln2.thr"]), p + "ln2")
    run.rec(p + "resid1", lambda: x1.reshape(shape))
    run.rec(p + "ln2.bits", lambda: fast._unpack(m_bits, e).reshape(shape))

    f1 = run.linear("fc1 (xnor)", m_bits, w_t["fc1"], e)
    run.rec(p + "fc1.acc", lambda: f1.reshape(b, n, hd))
    z1 = _act(run, blk, "fc1", f1, p + "fc1.act")
    run.rec(p + "fc1.z", lambda: z1.reshape(b, n, hd))
    t = run.tick()
    f1b = np.empty((b * n, n_words(hd)), dtype=np.uint64)
    pack_2sided_into(z1, blk["fc1.thr_hi"], blk["fc1.thr_lo"], f1b)
    run.tock("fc1 thresholds", t)
    run.rec(p + "fc1.bits", lambda: fast._unpack(f1b, hd).reshape(b, n, hd))
    f2 = run.linear("fc2 (and)", f1b, w_t["fc2"], None)
    run.rec(p + "fc2.acc", lambda: f2.reshape(shape))
    z2 = _act(run, blk, "fc2", f2, p + "fc2.act")
    run.rec(p + "fc2.z", lambda: z2.reshape(shape))
    nxt = f"blocks.{i + 1}."
    ln = None
    if i + 1 < m.depth:
        nb = run.next_ln1(i + 1)
        ln = (nb["ln1.sign"], nb["ln1.thr"])
    x2, next_bits = _add_z(run, x1, z2, p + "fc2", ln, nxt + "ln1")
    run.rec(p + "resid2", lambda: x2.reshape(shape))
    return x2, next_bits
