"""The golden path of methods ``reactnet`` and ``didb`` (docs/integer_model.md §13), plain numpy.

What the two methods change in a block: the activation unit after every binary linear
(§13.1, both), and for ``didb`` the frequency-split scores HFSC with their three-level exp
table (§13.2) and the DIBA context (§13.3). Everything else is golden.py's code, reused.
``gsbsim.engine.golden.forward`` calls ``block`` for these methods; the ops are public so that
tests (and the fast path) can check them one by one.

Trace names per block (golden.block_trace_names): the gsb list plus ``{L}.z`` after each
binary linear's ``{L}.acc``; didb replaces ``q.bits``, ``k.bits`` by ``q.low``, ``q.high``,
``k.low``, ``k.high``, ``scores`` by ``scores.low``, ``scores.high``, ``hfsc`` and adds
``lap`` before ``ctx``.
"""
from __future__ import annotations

import numpy as np

from gsbsim.format.conventions import requant
from gsbsim.engine.golden import (IntegerOverflowError, _check_int32, _rq, attention_planes, attention_scores, binary_acc,
                     fc1_bits, gsb_context, ln_bits, overflow_message, probs_from_exp, softmax_probs,
                     value_planes)
from gsbsim.format.model_file import SCORE_SHIFT, SLOPE_SHIFT, IntModel

__all__ = ["act_unit", "haar_s4", "hfsc_bits", "hfsc_scores", "exp3_weights", "hfsc_softmax",
           "laplacian8", "diba_context", "block", "U_LIMIT", "Z_LIMIT"]

U_LIMIT = 2 ** 31   # |u| < 2^31 (§13.1 run-time check)
Z_LIMIT = 2 ** 30   # |z| < 2^30
PREFIX = 2          # cls and dist: no grid position
U_OVERFLOW = "activation input u leaves (-2^31, 2^31)"
Z_OVERFLOW = "activation output z leaves (-2^30, 2^30)"


def _check_abs(x: np.ndarray, limit: int, where: str, what: str) -> None:
    """IntegerOverflowError at the first element (C order) with |x| >= limit."""
    bad = np.abs(x) >= limit
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad.ravel())), bad.shape)
        raise IntegerOverflowError(overflow_message(where, what, idx, x[idx]))


# ----------------------------------------------------------------------------- §13.1 activation unit
def act_unit(acc: np.ndarray, mult, bias: np.ndarray, tok_in: np.ndarray, slope: np.ndarray, out: np.ndarray,
             tok_out: np.ndarray, shift: int, where: str) -> np.ndarray:
    """z[n, o] of accumulators acc [B, N, C]: u = rq(acc, mult, bias[o] + tok_in[n], shift),
    z = (u >= 0 ? u : rq(u, slope[o], 0, 16)) + out[o] + tok_out[n]  (int64 [B, N, C]).

    Checks |u| < 2^31 over the whole layer, then |z| < 2^30 (IntegerOverflowError naming `where`).
    """
    b = bias.astype(np.int64)[None, :] + tok_in.astype(np.int64)[:, None]
    u = _rq(acc, mult, b, shift)
    _check_abs(u, U_LIMIT, where, U_OVERFLOW)
    neg = requant(u * slope.astype(np.int64), 1, SLOPE_SHIFT)
    z = np.where(u >= 0, u, neg) + out.astype(np.int64) + tok_out.astype(np.int64)[:, None]
    _check_abs(z, Z_LIMIT, where, Z_OVERFLOW)
    return z


def _per_head(x: np.ndarray, heads: int) -> np.ndarray:
    """[B, N, E] -> [B, H, N, d] (channel h*d + j)."""
    b, n, e = x.shape
    return np.ascontiguousarray(x.reshape(b, n, heads, e // heads).transpose(0, 2, 1, 3))


# ----------------------------------------------------------------------------- §13.2 HFSC
def _grid(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Patch tokens of x [B, N, C] as a grid [B, g, g, C] (N = 2 + g*g)."""
    b, n, c = x.shape
    g = int(round((n - PREFIX) ** 0.5))
    if g < 1 or g * g + PREFIX != n:
        raise ValueError(f"gsbsim.golden_methods: {n} tokens are not cls + dist + a square grid")
    return x[:, PREFIX:].reshape(b, g, g, c), g


def haar_s4(z: np.ndarray) -> np.ndarray:
    """S4 = 4*L of the undecimated Haar on the patch grid, replicate padding (int64 [B, N, C]).

    S4[(r, w)] = z[(r, w)] + z[(r, w')] + z[(r', w)] + z[(r', w')], r' = min(r+1, g-1), w' likewise;
    cls and dist: 4*z (low band only).
    """
    z = z.astype(np.int64)
    grid, g = _grid(z)
    pad = np.concatenate([grid, grid[:, -1:]], axis=1)
    pad = np.concatenate([pad, pad[:, :, -1:]], axis=2)
    s4 = pad[:, :-1, :-1] + pad[:, :-1, 1:] + pad[:, 1:, :-1] + pad[:, 1:, 1:]
    b, _, _, c = grid.shape
    return np.concatenate([4 * z[:, :PREFIX], s4.reshape(b, g * g, c)], axis=1)


def hfsc_bits(z: np.ndarray, thr_low: np.ndarray, thr_high: np.ndarray, heads: int) -> tuple[np.ndarray, np.ndarray]:
    """Low bits S4 >= thr_low[c] and high bits 4*z - S4 >= thr_high[c] of z [B, N, E] (uint8 [B, H, N, d])."""
    s4 = haar_s4(z)
    low = (s4 >= thr_low.astype(np.int64)).astype(np.uint8)
    high = (4 * z.astype(np.int64) - s4 >= thr_high.astype(np.int64)).astype(np.uint8)
    return _per_head(low, heads), _per_head(high, heads)


def hfsc_scores(sc_low: np.ndarray, sc_high: np.ndarray, score_w: np.ndarray) -> np.ndarray:
    """S = score.w[0, h]*scL + score.w[1, h]*scH (int64 [B, H, N, N], 2^-16)."""
    w = score_w.astype(np.int64)
    return w[0][None, :, None, None] * sc_low.astype(np.int64) + w[1][None, :, None, None] * sc_high.astype(np.int64)


def exp3_weights(m: np.ndarray, exp_lo: np.ndarray, exp_mid: np.ndarray, exp_hi: np.ndarray,
                 prob: int) -> np.ndarray:
    """e ~ 2^prob exp(-m 2^-16) for score gaps m >= 0 (int64), from the three tables (§13.2):

        e = rq(rq(exp_hi[m >> 16] * exp_mid[(m >> 8) & 255], prob) * exp_lo[m & 255], prob)
    if m >> 16 < len(exp_hi), else 0 (rq(x, S) = (x + 2^(S-1)) >> S).
    """
    m = np.asarray(m, dtype=np.int64)
    hi = m >> np.int64(SCORE_SHIFT)
    inside = hi < len(exp_hi)
    e = exp_hi.astype(np.int64)[np.where(inside, hi, 0)] * exp_mid.astype(np.int64)[(m >> np.int64(8)) & 255]
    e = requant(requant(e, 1, prob) * exp_lo.astype(np.int64)[m & 255], 1, prob)
    return np.where(inside, e, 0)


def hfsc_softmax(s: np.ndarray, exp_lo: np.ndarray, exp_mid: np.ndarray, exp_hi: np.ndarray,
                 att_bias: np.ndarray, prob: int, recip: int) -> np.ndarray:
    """A = P + att_bias of the HFSC scores S [B, H, N, N] (2^-16): m_j = max S - S_j, the exp tables, then §5."""
    m = s.max(axis=-1, keepdims=True) - s
    return probs_from_exp(exp3_weights(m, exp_lo, exp_mid, exp_hi, prob), att_bias, prob, recip)


# ----------------------------------------------------------------------------- §13.3 DIBA
def laplacian8(sigma: np.ndarray) -> np.ndarray:
    """lap = sum of the 8 grid neighbours - 8*centre, zero padding, 0 for cls/dist (int64 [B, N, C])."""
    sigma = sigma.astype(np.int64)
    grid, g = _grid(sigma)
    pad = np.pad(grid, ((0, 0), (1, 1), (1, 1), (0, 0)))
    ring = sum(pad[:, 1 + dr:1 + dr + g, 1 + dw:1 + dw + g] for dr in (-1, 0, 1) for dw in (-1, 0, 1)
               if dr or dw)
    lap = ring - 8 * grid
    out = np.zeros_like(sigma)
    out[:, PREFIX:] = lap.reshape(sigma.shape[0], g * g, sigma.shape[2])
    return out


def diba_context(a_plane: np.ndarray, s_plane: np.ndarray, scale00: int, vscale: int, local: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(ctx int64 [B, N, E] in 2^-ctx, lap [B, N, E]) from the attention plane b1 [B, H, N, N] and the
    value sign plane s [B, H, N, d]:

        ctx = S00*D - (S00*k_i - vscale)*sigma_i + local[h]*lap,  D = §6's D[1][1], k_i = pc(b1_i)
    """
    b, h, n, d = s_plane.shape
    dots = gsb_context(a_plane[:, None], s_plane[:, None], np.ones((1, 1), dtype=np.int64))   # D [B, N, E]
    k = a_plane.astype(np.int64).sum(axis=-1)                                          # [B, H, N]
    k = np.repeat(k.transpose(0, 2, 1), d, axis=2)                                     # [B, N, E]
    sigma = 2 * s_plane.astype(np.int64).transpose(0, 2, 1, 3).reshape(b, n, h * d) - 1
    lap = laplacian8(sigma)
    loc = np.repeat(local.astype(np.int64), d)
    s00 = np.int64(scale00)
    ctx = s00 * dots - (s00 * k - np.int64(vscale)) * sigma + loc * lap
    return ctx, lap


# ----------------------------------------------------------------------------- the block
def block(model: IntModel, i: int, x: np.ndarray, rec) -> np.ndarray:
    """One reactnet or didb block (§3-§8 with §13) on X int32 [B, N, E]; returns the new X."""
    blk = model.block(i)
    sh = model.shifts
    e, h, hd = model.embed_dim, model.num_heads, model.mlp_hidden
    p = f"blocks.{i}."
    didb = model.method == "didb"

    def unit(lin: str, acc: np.ndarray) -> np.ndarray:
        z = act_unit(acc, blk[lin + ".mult"], blk[lin + ".bias"], blk[lin + ".tok_in"], blk[lin + ".slope"],
                     blk[lin + ".out"], blk[lin + ".tok_out"], sh["resid"], p + lin + ".act")
        return rec(p + lin + ".z", z.astype(np.int32))

    a_bits = rec(p + "ln1.bits", ln_bits(x, blk["ln1.sign"], blk["ln1.thr"], sh["ln"], model.ln_eps, p + "ln1"))
    qkv = unit("qkv", rec(p + "qkv.acc", binary_acc(a_bits, blk["qkv.weight"], e, "xnor").astype(np.int32)))
    vq = _per_head(qkv[..., 2 * e:].astype(np.int64) + blk["v.offset"], h)
    if didb:
        q_low, q_high = hfsc_bits(qkv[..., :e], blk["q.thr_low"], blk["q.thr_high"], h)
        k_low, k_high = hfsc_bits(qkv[..., e:2 * e], blk["k.thr_low"], blk["k.thr_high"], h)
        for name, bits in (("q.low", q_low), ("q.high", q_high), ("k.low", k_low), ("k.high", k_high)):
            rec(p + name, bits)
    else:
        q = rec(p + "q.bits", _per_head((qkv[..., :e] >= blk["q.thr"]).astype(np.uint8), h))
        k = rec(p + "k.bits", _per_head((qkv[..., e:2 * e] >= blk["k.thr"]).astype(np.uint8), h))
    # the trace order of §12/§13: v.q, v.planes, then the scores
    rec(p + "v.q", vq)
    v_pl = rec(p + "v.planes", value_planes(vq, (), model.mask_stat))
    if didb:
        sc_low = rec(p + "scores.low", attention_scores(q_low, k_low))
        sc_high = rec(p + "scores.high", attention_scores(q_high, k_high))
        s = rec(p + "hfsc", hfsc_scores(sc_low, sc_high, blk["score.w"]))
        a = rec(p + "probs", hfsc_softmax(s, blk["exp_lo"], blk["exp_mid"], blk["exp_hi"], blk["att_bias"],
                                          sh["prob"], sh["recip"]))
    else:
        sc = rec(p + "scores", attention_scores(q, k))
        a = rec(p + "probs", softmax_probs(sc, blk["exp_lut"], blk["att_bias"], sh["prob"], sh["recip"]))
    a_pl = rec(p + "a.planes", attention_planes(a, int(blk["a.thr1"]), (), model.mask_stat))
    if didb:
        ctx, lap = diba_context(a_pl[:, 0], v_pl[:, 0], int(blk["ctx.scale"][0, 0]), int(blk["ctx.vscale"]),
                                blk["ctx.local"])
        rec(p + "lap", lap.astype(np.int32))
        ctx = rec(p + "ctx", ctx)
    else:
        ctx = rec(p + "ctx", gsb_context(a_pl, v_pl, blk["ctx.scale"]))
    pin = rec(p + "proj.bits", (ctx >= blk["proj.in_thr"]).astype(np.uint8))
    z = unit("proj", rec(p + "proj.acc", binary_acc(pin, blk["proj.weight"], e, "xnor").astype(np.int32)))
    x = rec(p + "resid1", _check_int32(x.astype(np.int64) + z, p + "proj"))

    m_bits = rec(p + "ln2.bits", ln_bits(x, blk["ln2.sign"], blk["ln2.thr"], sh["ln"], model.ln_eps, p + "ln2"))
    z = unit("fc1", rec(p + "fc1.acc", binary_acc(m_bits, blk["fc1.weight"], e, "xnor").astype(np.int32)))
    f1b = rec(p + "fc1.bits", fc1_bits(z, blk["fc1.thr_hi"], blk["fc1.thr_lo"]))
    z = unit("fc2", rec(p + "fc2.acc", binary_acc(f1b, blk["fc2.weight"], hd, "and").astype(np.int32)))
    return rec(p + "resid2", _check_int32(x.astype(np.int64) + z, p + "fc2"))
