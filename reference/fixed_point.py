"""Fixed-point helpers of the exporters (reference/export.py and its §13 part, reference/export_methods.py):
the shifts of the integer model, float -> fixed point rounding, requantization constants, the exact exp table."""
from __future__ import annotations

import math

import numpy as np
import torch

from gsbsim.format.conventions import PROB_BITS, RECIP_OVER_PROB, round_half_up

# ln: the LayerNorm->sign thresholds at 2^-24 of sigma, float32's precision as the probabilities
# (docs/integer_model.md §11); int64-safe for E < 16129: |D| < sqrt(E)*2^31 once V < 2^62 is checked,
# and |thr|*sigma <= (sqrt(E)+1)*2^24*2^31
# slope (reactnet/didb only, §13.1): the negative slopes at 2^-24 (at 2^-16 a slope's rounding moved z by
# several steps of 2^-F); |slope| <= 2^30 then allows |beta| <= 64
SHIFTS = {"patch": 16, "resid": 16, "head_ln": 12, "logit": 16, "value": 16, "prob": PROB_BITS,
          "recip": PROB_BITS + RECIP_OVER_PROB, "ctx": 24, "ln": 24, "slope": 24}


class ExportError(Exception):
    """A model that cannot be expressed as the integer model (message says why)."""


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def ceil_int(x) -> np.ndarray:
    return np.ceil(np.asarray(x, dtype=np.float64)).astype(np.int64)


def fixed(x, bits: int) -> np.ndarray:
    return round_half_up(np.asarray(x, dtype=np.float64) * 2.0 ** bits)


def requant_params(scale: float, bias: np.ndarray, frac_bits: int) -> tuple[np.ndarray, np.ndarray]:
    s = frac_bits + SHIFTS["resid"]
    return np.int64(round_half_up(scale * 2.0 ** s)), fixed(bias, s)


def exp_lut(at) -> np.ndarray:
    """§5's exact exp table exp_lut[m] = 2^prob exp(-2 c m), c = a_q a_k / sqrt(d)."""
    c = float(at.q_bin.scales()) * float(at.k_bin.scales()) / math.sqrt(at.head_dim)
    return fixed(np.exp(-2.0 * c * np.arange(at.head_dim + 1)), SHIFTS["prob"])
