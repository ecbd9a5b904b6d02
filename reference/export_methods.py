"""Export of the `reactnet` and `didb` blocks (docs/integer_model.md §13), used by reference/export.py.

What these methods add to a block becomes integers here: the (I)RPReLU after every binary
linear (multiplier, bias with the input shift folded in, token shifts, slope, output shifts),
the thresholds on the unit's output z (Q/K bits, HFSC bands, the GELU + {0, 1} binarizer of
fc1 found by bisection on z), the HFSC score weights and exp tables, and DIBA's constants.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch

from gsbsim.format.model_file import SLOPE_MAX, exp_tables
from .blocks import GELU_CLIP, BinaryBlock
from .didb import score_weight_codes
from .fixed_point import SHIFTS, ExportError, ceil_int, exp_lut, fixed, requant_params, to_numpy
from .reactnet import RPReLU

__all__ = ["act_block", "act_peaks", "fc1_z_thresholds", "Z_NEVER"]

Z_NEVER = 2 ** 30            # |z| < 2^30 (§13.1): z >= 2^30 never holds, z >= -2^30 always does
THR_BAND_MAX = 2 ** 33       # HFSC band thresholds are clipped to [-2^33, 2^33] (§13.2)
GELU_ARGMIN = -0.7517916     # GELU decreases left of this point and increases right of it


def _ceil_clip(x, bound: int) -> np.ndarray:
    return np.clip(ceil_int(x), -bound, bound)


class _Peak:
    peak = 0.0


@contextlib.contextmanager
def act_peaks(model: torch.nn.Module) -> Iterator[_Peak]:
    """While active, records the largest |x - shifts| and |output| any RPReLU/IRPReLU of `model` sees.

    The exporter's choice of F (calibrate_frac_bits) must keep u and z of every activation unit,
    not only the residual stream, well inside their ranges.
    """
    found = _Peak()

    def hook(mod: RPReLU, inp, out) -> None:
        shift_in, _ = mod.shifts()
        found.peak = max(found.peak, float((inp[0] - shift_in).abs().max()), float(out.abs().max()))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, RPReLU)]
    try:
        yield found
    finally:
        for h in handles:
            h.remove()


def _unit(lin, act: RPReLU, beta_w: float, frac_bits: int, n_tok: int, slope_shift: int) -> dict[str, np.ndarray]:
    """§13.1's arrays of one activation unit: u = rq(acc, mult, bias + tok_in), slope, out, tok_out."""
    s = frac_bits + SHIFTS["resid"]
    slope = fixed(to_numpy(act.beta), slope_shift)
    if np.abs(slope).max() > SLOPE_MAX:
        raise ExportError(f"a negative slope {float(np.abs(to_numpy(act.beta)).max()):.4g} exceeds the format's "
                          f"|slope| <= 2^30 at 2^-{slope_shift} (|beta| <= {2.0 ** (30 - slope_shift):g})")
    alpha = float(lin.act_q.scales())
    gamma_tok = to_numpy(getattr(act, "gamma_token", torch.zeros(n_tok)))
    zeta_tok = to_numpy(getattr(act, "zeta_token", torch.zeros(n_tok)))
    mult, bias = requant_params(alpha * beta_w, to_numpy(lin.bias) - to_numpy(act.gamma), frac_bits)   # §7's requant
    return {"mult": mult, "bias": bias, "tok_in": fixed(-gamma_tok, s),
            "slope": slope, "out": fixed(to_numpy(act.zeta), frac_bits),
            "tok_out": fixed(zeta_tok, frac_bits)}


def _gelu_on(z: np.ndarray, frac_bits: int, level: np.ndarray) -> np.ndarray:
    """clip(GELU(z 2^-F), -10, 10) >= level, in float64 (level = alpha_fc2/2 - shift, per channel)."""
    x = torch.from_numpy(np.asarray(z, dtype=np.float64) * 2.0 ** -frac_bits)
    return (torch.nn.functional.gelu(x).clamp(-GELU_CLIP, GELU_CLIP).numpy() >= level)


def _first_true(pred, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per channel, the smallest z in [lo, hi] with pred true (pred monotone false..true), or hi + 1."""
    left, right = lo.copy(), hi + 1
    while np.any(left < right):
        mid = (left + right) // 2
        ok = pred(mid)
        active = left < right
        right = np.where(active & ok, mid, right)
        left = np.where(active & ~ok, mid + 1, left)
    return left


def fc1_z_thresholds(level: np.ndarray, frac_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """fc1's two-sided threshold on z (§13.1): on(z) = clip(GELU(z 2^-F), +-10) >= level as
    z >= thr_hi OR z <= thr_lo, by bisection on each monotone side of GELU's minimum.

    "never" is thr_hi = 2^30, thr_lo = -2^30; "always" thr_hi = -2^30. The integer points next to
    each crossing are checked against the float function.
    """
    level = np.asarray(level, dtype=np.float64)
    ch = level.shape[0]
    top = np.full(ch, Z_NEVER - 1, dtype=np.int64)
    z_min = np.full(ch, int(round(GELU_ARGMIN * 2.0 ** frac_bits)), dtype=np.int64)
    on = lambda z: _gelu_on(z, frac_bits, level)   # noqa: E731
    hi = _first_true(on, z_min, top)                                 # increasing side: an upper ray
    lo = _first_true(lambda z: ~on(z), -top, z_min - 1) - 1          # decreasing side: a lower ray
    always = hi <= lo + 1
    hi = np.where(always, -Z_NEVER, hi)
    lo = np.where(always, -Z_NEVER, lo)
    for thr, inside, sign in ((hi, (hi > -Z_NEVER) & (hi < Z_NEVER), -1), (lo, lo > -Z_NEVER, 1)):
        bad = inside & ~(on(thr) & ~on(thr + sign))
        if np.any(bad):
            o = int(np.flatnonzero(bad)[0])
            raise ExportError(f"fc1 channel {o}: the GELU binarizer on z is not a two-sided threshold near {int(thr[o])}")
    return hi.astype(np.int32), lo.astype(np.int32)


def act_block(blk: BinaryBlock, betas: dict[str, float], frac_bits: int, alpha_v: float, n_tok: int,
              shifts: dict[str, int], attention: str) -> dict[str, np.ndarray]:
    """The §13 arrays of a block with the act_unit feature (the shared ones come from export._export_block);
    `attention` is the method's attention feature (gsbsim/format/methods.py)."""
    at, mlp = blk.attn, blk.mlp
    e, h, d = at.num_heads * at.head_dim, at.num_heads, at.head_dim
    out: dict[str, np.ndarray] = {}
    units = (("qkv", at.qkv, at.qkv_act), ("proj", at.proj, at.proj_act), ("fc1", mlp.fc1, mlp.fc1_act),
             ("fc2", mlp.fc2, mlp.fc2_act))
    for name, lin, act in units:
        out.update({f"{name}.{k}": v for k, v in _unit(lin, act, betas[name], frac_bits, n_tok, shifts["slope"]).items()})
    one = 2.0 ** frac_bits
    # floor: z + offset >= 0 is then exactly z*2^-F + v_move >= 0 (z is an integer)
    out["v.offset"] = np.floor(to_numpy(at.v_move.bias).reshape(e) * 2.0 ** frac_bits).astype(np.int64)
    level = float(mlp.fc2.act_q.scales()) / 2 - to_numpy(mlp.fc2.move.bias)
    out["fc1.thr_hi"], out["fc1.thr_lo"] = fc1_z_thresholds(level, frac_bits)
    if attention == "gsb":               # §4's Q/K bits on z, §5's softmax
        out["q.thr"] = _ceil_clip(-to_numpy(at.q_move.bias).reshape(e) * one, Z_NEVER).astype(np.int32)
        out["k.thr"] = _ceil_clip(-to_numpy(at.k_move.bias).reshape(e) * one, Z_NEVER).astype(np.int32)
        out["exp_lut"] = exp_lut(at)
        return out
    for qk in ("q", "k"):                # hfsc_diba: HFSC bands on S4 = 4L and 4H
        for band in ("low", "high"):
            move = to_numpy(getattr(at, f"{qk}_move_{band}").bias).reshape(e)
            out[f"{qk}.thr_{band}"] = _ceil_clip(-4 * move * one, THR_BAND_MAX)
    out["score.w"] = score_weight_codes(at).cpu().numpy().astype(np.int64)   # what the float model's scores use
    out["exp_lo"], out["exp_mid"], out["exp_hi"] = exp_tables(shifts["prob"])
    out["ctx.vscale"] = np.int64(fixed(alpha_v, shifts["ctx"]))
    out["ctx.local"] = fixed(to_numpy(at.local_gain).reshape(h) * alpha_v, shifts["ctx"])
    return out
