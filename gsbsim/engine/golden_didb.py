"""§13.2-§13.3 of docs/integer_model.md in plain numpy: HFSC scores (a Haar split of Q and K, two band
scores, the three-level exp table) and the DIBA context (the ``hfsc_diba`` attention feature of
gsbsim/format/methods.py)."""
from __future__ import annotations

import numpy as np

from gsbsim.engine.golden_ops import gsb_context, probs_from_exp
from gsbsim.format.conventions import requant
from gsbsim.format.model_file import SCORE_SHIFT

__all__ = ["per_head", "haar_s4", "hfsc_bits", "hfsc_scores", "exp3_weights", "hfsc_softmax", "laplacian8",
           "diba_context"]

PREFIX = 2          # cls and dist: no grid position


def per_head(x: np.ndarray, heads: int) -> np.ndarray:
    """[B, N, E] -> [B, H, N, d] (channel h*d + j)."""
    b, n, e = x.shape
    return np.ascontiguousarray(x.reshape(b, n, heads, e // heads).transpose(0, 2, 1, 3))


# ----------------------------------------------------------------------------- §13.2 HFSC
def _grid(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Patch tokens of x [B, N, C] as a grid [B, g, g, C] (N = 2 + g*g)."""
    b, n, c = x.shape
    g = int(round((n - PREFIX) ** 0.5))
    if g < 1 or g * g + PREFIX != n:
        raise ValueError(f"gsbsim.engine.golden_didb: {n} tokens are not cls + dist + a square grid")
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
    return per_head(low, heads), per_head(high, heads)


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
