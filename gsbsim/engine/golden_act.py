"""§13.1 of docs/integer_model.md in plain numpy: the activation unit after every binary linear (the
``act_unit`` post-linear feature of gsbsim/format/methods.py)."""
from __future__ import annotations

import numpy as np

from gsbsim.engine.errors import U_LIMIT, U_OVERFLOW, Z_LIMIT, Z_OVERFLOW, check_abs
from gsbsim.engine.golden_ops import rq
from gsbsim.format.conventions import requant

__all__ = ["act_unit"]


# ----------------------------------------------------------------------------- §13.1 activation unit
def act_unit(acc: np.ndarray, mult, bias: np.ndarray, tok_in: np.ndarray, slope: np.ndarray, out: np.ndarray,
             tok_out: np.ndarray, shift: int, where: str, *, slope_shift: int) -> np.ndarray:
    """z[n, o] of accumulators acc [B, N, C]: u = rq(acc, mult, bias[o] + tok_in[n], shift),
    z = (u >= 0 ? u : rq(u, slope[o], 0, slope_shift)) + out[o] + tok_out[n]  (int64 [B, N, C]).

    Checks |u| < 2^31 over the whole layer, then |z| < 2^30 (IntegerOverflowError naming `where`).
    """
    b = bias.astype(np.int64)[None, :] + tok_in.astype(np.int64)[:, None]
    u = rq(acc, mult, b, shift)
    check_abs(u, U_LIMIT, where, U_OVERFLOW)
    neg = requant(u * slope.astype(np.int64), 1, slope_shift)
    z = np.where(u >= 0, u, neg) + out.astype(np.int64) + tok_out.astype(np.int64)[:, None]
    check_abs(z, Z_LIMIT, where, Z_OVERFLOW)
    return z
