"""§13.1 on the fast path (Numba): the activation unit after every binary linear, one pass over the
accumulators (u = rq(acc), the RPReLU slope on the negative side, the channel and token offsets) with
32x32-bit products where mult and the slopes allow. The |u| < 2^31 and |z| < 2^30 checks are skipped
when float bounds on the parameters prove them (any plausible model), else kept as row minima/maxima
(no branch per element). The ``act_unit`` feature of gsbsim/format/methods.py."""
from __future__ import annotations

import numpy as np
from numba import njit

from gsbsim.engine.errors import U_LIMIT, Z_LIMIT
from gsbsim.engine.fast_ops import INLINE, JIT


# ============================================================================ §13.1 activation unit
@njit(**INLINE)
def _act_value(acc, mult, bias, t_in, slope, out_c, t_out, sh, ssh, s_half, narrow):
    """(u, z) of one element; t_in = tok_in[n] + 2^(shift-1) (rq's rounding constant folded in);
    ssh the slope grid (shifts.slope), s_half = 2^(ssh-1).

    narrow (a constant after inlining): mult and slope fit int32, so both products are
    32x32 -> 64-bit (native vector multiplies, not emulated 64x64 ones); u is truncated to
    32 bits for the slope product, which is exact whenever |u| < 2^31 (otherwise the caller
    raises the u error and z is not used).
    """
    if narrow:
        u = (np.int64(acc) * np.int64(np.int32(mult)) + bias + t_in) >> sh
        neg = (np.int64(np.int32(u)) * np.int64(np.int32(slope)) + s_half) >> ssh
    else:
        u = (np.int64(acc) * mult + bias + t_in) >> sh
        neg = (u * slope + s_half) >> ssh
    return u, (u if u >= 0 else neg) + out_c + t_out


@njit(**INLINE)
def _act_rows(acc, n_tok, mult, bias, tok_in, slope, out_c, tok_out, shift, slope_shift, z, narrow, checked):
    """act_unit_rows's loop (narrow: see _act_value; checked: keep the bounds of u and z)."""
    m_n, c_n = acc.shape
    sh = np.int64(shift)
    half = np.int64(1) << np.int64(shift - 1)
    ssh = np.int64(slope_shift)
    s_half = np.int64(1) << np.int64(slope_shift - 1)
    u_at, u_val, z_at, z_val = -1, np.int64(0), -1, np.int64(0)
    for m in range(m_n):
        n = m % n_tok
        t_in = tok_in[n] + half
        t_out = tok_out[n]
        a = acc[m]
        zr = z[m]
        if not checked:
            for o in range(c_n):
                zr[o] = np.int32(_act_value(a[o], mult, bias[o], t_in, slope[o], out_c[o], t_out, sh, ssh, s_half,
                                            narrow)[1])
            continue
        u_lo, u_hi, z_lo, z_hi = np.int64(0), np.int64(0), np.int64(0), np.int64(0)
        for o in range(c_n):
            u, v = _act_value(a[o], mult, bias[o], t_in, slope[o], out_c[o], t_out, sh, ssh, s_half, narrow)
            u_lo = min(u_lo, u)
            u_hi = max(u_hi, u)
            z_lo = min(z_lo, v)
            z_hi = max(z_hi, v)
            zr[o] = np.int32(v)
        u_row = u_at < 0 and (u_lo <= -U_LIMIT or u_hi >= U_LIMIT)
        z_row = z_at < 0 and (z_lo <= -Z_LIMIT or z_hi >= Z_LIMIT)
        for o in range(c_n if u_row or z_row else 0):
            u, v = _act_value(a[o], mult, bias[o], t_in, slope[o], out_c[o], t_out, sh, ssh, s_half, narrow)
            if u_row and abs(u) >= U_LIMIT:
                u_at, u_val, u_row = m * c_n + o, u, False
            if z_row and abs(v) >= Z_LIMIT:
                z_at, z_val, z_row = m * c_n + o, v, False
    return u_at, u_val, z_at, z_val


@njit(**INLINE)
def _act_is_safe(k, mult, bias, tok_in, slope, out_c, tok_out, shift, slope_shift):
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
        z_max = u_max * max(1.0, abs(np.float64(slope[o])) * 2.0 ** -slope_shift) + 1.0 + abs(
            np.float64(out_c[o])) + t_out
        if u_max >= U_LIMIT - margin or z_max >= Z_LIMIT - margin:
            return False
    return True


@njit(**JIT)
def act_unit_rows(acc, k, n_tok, mult, bias, tok_in, slope, out_c, tok_out, shift, slope_shift, z):
    """z int32 [M, C] of the accumulators acc int32 [M, C] in [-k, k] (M = B*N stacked tokens):

        u = rq(acc, mult, bias[o] + tok_in[n], shift);  z = (u >= 0 ? u : rq(u, slope[o], 0, slope_shift)) + out[o] + tok_out[n]

    Returns (flat index of the first |u| >= 2^31 or -1, that u, flat index of the first
    |z| >= 2^30 or -1, that z). When the parameters cannot produce an overflow
    (_act_is_safe) and the products are narrow (mult and slopes fit int32) one lean loop;
    otherwise the general loop keeps the bounds as row minima/maxima (no branch per element)
    and scans only a bad row again for its first offender.
    """
    narrow = -2 ** 31 <= mult < 2 ** 31
    for o in range(slope.shape[0]):
        narrow &= -2 ** 31 <= slope[o] < 2 ** 31
    if narrow and _act_is_safe(k, mult, bias, tok_in, slope, out_c, tok_out, shift, slope_shift):
        return _act_rows(acc, n_tok, mult, bias, tok_in, slope, out_c, tok_out, shift, slope_shift, z, True, False)
    return _act_rows(acc, n_tok, mult, bias, tok_in, slope, out_c, tok_out, shift, slope_shift, z, False, True)
