"""Random but plausible integer models and images, for tests and cost studies (numpy only).

"Plausible" means every binarizer actually toggles: thresholds sit near the middle of
their accumulator's range, requantization multipliers keep the residual stream around a
few units (2^F fixed point) so it stays far from int32, the exp table decreases from
2^prob, the attention bias is small and the context scales are positive. The model
passes ``model_file.validate`` like an exported one.

``method`` picks the arithmetic (docs/integer_model.md §13 for reactnet and didb): the
activation units see both signs of u, their slopes include 0, negative and > 1 values, the
token terms of didb are non-zero, and z stays a few units (2^F) from 0, far inside 2^30.
"""
from __future__ import annotations

import math

import numpy as np

from gsbsim.format.conventions import pack_bits, round_half_up
from gsbsim.format.methods import ACT_LINEARS, DEFAULT_METHOD, Method, method_of
from gsbsim.format.model_file import (SCORE_SHIFT, IntModel, exp_tables,
                         expected_arrays, validate)

__all__ = ["random_model", "random_images", "exp_tables", "DEFAULT_SHIFTS"]

DEFAULT_SHIFTS = {"patch": 16, "resid": 16, "head_ln": 12, "logit": 16, "value": 8, "prob": 16,
                  "recip": 48, "ctx": 24, "ln": 16}
SLOPE_SHIFT = 24     # shifts.slope of the act-unit methods' random models (the exporter's grid, §13.1)
LN_EPS = 1e-6


def _weights(rng: np.random.Generator, rows: int, k: int) -> np.ndarray:
    """Random +-1 (or {0,1}) weights packed along K, pads 0."""
    return pack_bits(rng.integers(0, 2, (rows, k), dtype=np.uint8))


def _fixed(x, bits: int) -> np.ndarray:
    return round_half_up(np.asarray(x, dtype=np.float64) * 2.0 ** bits)


def _act_block(rng: np.random.Generator, m: Method, dims: dict, sh: dict, frac_bits: int,
               scale00: int) -> dict[str, np.ndarray]:
    """One block's §13 arrays (activation units; didb's HFSC and DIBA), z a few units 2^F around 0."""
    e, h, n, hd = dims["e"], dims["h"], dims["n"], dims["hd"]
    d = e // h
    one = 2.0 ** frac_bits
    s = frac_bits + sh["resid"]
    out: dict[str, np.ndarray] = {}
    for lin, ch in zip(ACT_LINEARS, (3 * e, e, hd, e)):
        k = hd if lin == "fc2" else e
        if lin in ("qkv", "fc1"):   # u ~ one unit: acc spreads by sqrt(K)
            out[lin + ".mult"] = np.int64(_fixed(rng.uniform(0.5, 1.0) / math.sqrt(k), s))
            out[lin + ".bias"] = _fixed(rng.normal(0, 0.3, ch), s)
        # slopes: PReLU's 0.25, 0, negative, > 1 and random values
        slope = rng.permutation(np.resize(np.array([0.25, 0.0, -0.5, 1.5, 3.0, 0.25]), ch))
        out[lin + ".slope"] = _fixed(slope, sh["slope"])
        out[lin + ".out"] = _fixed(rng.normal(0, 0.2, ch), frac_bits)
        token = m.token_terms
        out[lin + ".tok_in"] = _fixed(rng.normal(0, 0.2, n) * token, s)
        out[lin + ".tok_out"] = _fixed(rng.normal(0, 0.2, n) * token, frac_bits)
    out["v.offset"] = _fixed(rng.normal(0, 0.3, e), frac_bits)
    # on z (§13.1): |z| < 2^30, so 2^30 is never reached and -2^30 always
    out["fc1.thr_hi"], out["fc1.thr_lo"] = _fc1_thresholds(rng, hd, one, 0.3 * one, 2 ** 30, -2 ** 30)
    spread = float(scale00) * math.sqrt(n)
    if m.attention == "gsb":   # Q/K thresholds on z
        out["q.thr"] = _fixed(rng.normal(0, 0.3, e), frac_bits).astype(np.int32)
        out["k.thr"] = _fixed(rng.normal(0, 0.3, e), frac_bits).astype(np.int32)
    else:
        for qk in ("q", "k"):
            out[qk + ".thr_low"] = _fixed(rng.normal(0, 1.0, e), frac_bits)     # on 4*L
            out[qk + ".thr_high"] = _fixed(rng.normal(0, 0.5, e), frac_bits)    # on 4*H
        # a few e-folds over the score range [-2d, 2d] (2^-8 units); one band may weigh negatively
        w = rng.uniform(0.3, 3.0, (2, h)) / d * 2 ** SCORE_SHIFT
        w[1] *= rng.choice([1.0, -1.0], h, p=[0.8, 0.2])
        out["score.w"] = np.round(w).astype(np.int64)
        out["exp_lo"], out["exp_mid"], out["exp_hi"] = exp_tables(sh["prob"])
        alpha_v = rng.uniform(0.2, 1.0)
        out["ctx.vscale"] = np.int64(_fixed(alpha_v, sh["ctx"]))
        out["ctx.local"] = _fixed(rng.normal(0, 0.3, h) * alpha_v, sh["ctx"])
        spread += float(out["ctx.vscale"]) + 4 * float(np.abs(out["ctx.local"]).max())
    out["proj.in_thr"] = _fixed(rng.normal(0, 0.3, e) * spread, 0)
    return out


def _fc1_thresholds(rng: np.random.Generator, hidden: int, unit: float, centre: float, never: int,
                    always: int) -> tuple[np.ndarray, np.ndarray]:
    """A mix of every two-sided case: upper ray, lower ray, both, always, never.

    Thresholds spread by `unit` around `centre` (the accumulator or z domain); `never` is a
    threshold no value reaches (thr_hi = never, thr_lo = -never), `always` a thr_hi every value does.
    """
    hi = np.round(rng.normal(centre, 0.7 * unit, hidden)).astype(np.int64)
    lo = np.full(hidden, -never, dtype=np.int64)
    kind = rng.choice(5, size=hidden, p=[0.55, 0.1, 0.25, 0.05, 0.05])
    both = kind == 2
    lo[both] = hi[both] - np.round(np.abs(rng.normal(1.5 * unit, 0.5 * unit, both.sum()))).astype(np.int64) - 1
    lower = kind == 1
    lo[lower] = hi[lower]
    hi[lower] = never
    hi[kind == 3] = always      # always on
    hi[kind == 4] = never       # never on
    lo[kind == 4] = -never
    return hi.astype(np.int32), lo.astype(np.int32)


def random_model(rng: np.random.Generator, *, img_size: int = 8, patch_size: int = 2, in_chans: int = 1,
                 embed_dim: int = 24, depth: int = 2, num_heads: int = 2, mlp_hidden: int = 48,
                 num_classes: int = 10, groups: int | None = None, ratios=(179, 230), mask_stat: str = "row",
                 frac_bits: int = 12, method: str = DEFAULT_METHOD) -> IntModel:
    """A valid IntModel with random, plausible parameters (see the module docstring).

    groups defaults to 3 for gsb and 1 for the other methods (reactnet and didb need 1);
    didb needs a square patch grid of at least 2 x 2.
    """
    try:
        m = method_of(method)
    except ValueError as e:
        raise ValueError(f"random_model: {e}") from None
    if groups is None:
        groups = m.default_groups
    if m.fixed_groups is not None and groups != m.fixed_groups:
        raise ValueError(f"random_model: method {method} needs groups = {m.fixed_groups}, got {groups}")
    if m.attention == "hfsc_diba" and patch_size >= 1 and img_size // patch_size < 2:
        raise ValueError(f"random_model: didb needs a patch grid of at least 2 x 2, got img_size {img_size} "
                         f"and patch_size {patch_size}")
    ratios = [int(r) for r in ratios][: max(groups - 1, 0)]   # the first groups-1 ratios are used
    if len(ratios) < groups - 1:
        raise ValueError(f"random_model: groups={groups} needs {groups - 1} ratios, got {len(ratios)}")
    if num_heads < 1 or embed_dim % num_heads:
        raise ValueError(f"random_model: embed_dim {embed_dim} is not a multiple of num_heads {num_heads}")
    if patch_size < 1 or img_size % patch_size:
        raise ValueError(f"random_model: img_size {img_size} is not a multiple of patch_size {patch_size}")
    e, h, hd, c = embed_dim, num_heads, mlp_hidden, num_classes
    d = e // h
    n = (img_size // patch_size) ** 2 + 2
    k_patch = in_chans * patch_size ** 2
    sh = dict(DEFAULT_SHIFTS, slope=SLOPE_SHIFT) if m.act_unit else dict(DEFAULT_SHIFTS)
    header = {
        "format": "gsbsim-int", "preset": "random", "img_size": img_size, "patch_size": patch_size,
        "in_chans": in_chans, "embed_dim": e, "depth": depth, "num_heads": h, "head_dim": d,
        "mlp_hidden": hd, "num_tokens": n, "num_classes": c, "groups": groups, "ratios": ratios,
        "mask_stat": mask_stat, "frac_bits": frac_bits,
        "ln_eps": int(max(1, round(LN_EPS * e * e * 4.0 ** frac_bits))), "shifts": sh, "source": "random",
        "method": method,
    }
    one = 2.0 ** frac_bits                   # 1.0 in the residual stream
    a: dict[str, np.ndarray] = {}

    # §2 patch embedding: |acc| ~ 64*74*sqrt(K); map one standard deviation to ~1.0
    a["patch.weight"] = rng.integers(-64, 65, (e, k_patch)).astype(np.int8)
    acc_std = 64 / math.sqrt(3) * 74 * math.sqrt(k_patch)
    s = frac_bits + sh["patch"]
    a["patch.mult"] = _fixed(rng.uniform(0.5, 1.5, e) / acc_std, s)
    a["patch.bias"] = _fixed(rng.normal(0, 0.3, e), s)
    a["pos"] = np.round(rng.normal(0, 0.2, (n, e)) * one).astype(np.int32)
    a["tokens"] = np.round(rng.normal(0, 0.2, (2, e)) * one).astype(np.int32)

    root_e = math.sqrt(e)
    for i in range(depth):
        p = f"blocks.{i}."
        for ln in ("ln1", "ln2"):
            sign = rng.choice(np.array([-1, 1, 0], dtype=np.int8), size=e, p=[0.3, 0.65, 0.05])
            thr = _fixed(rng.normal(0, 0.5, e), sh["ln"])
            thr[sign == 0] = rng.integers(0, 2, int((sign == 0).sum()))
            a[p + ln + ".sign"], a[p + ln + ".thr"] = sign, thr
        a[p + "qkv.weight"] = _weights(rng, 3 * e, e)
        a[p + "q.thr"] = np.round(rng.normal(0, 0.5 * root_e, e)).astype(np.int32)
        a[p + "k.thr"] = np.round(rng.normal(0, 0.5 * root_e, e)).astype(np.int32)
        a[p + "v.offset"] = _fixed(rng.normal(0, 0.5 * root_e, e), sh["value"])
        c_soft = rng.uniform(0.3, 3.0) / max(d, 1)           # exp(-2 c m): a few e-folds over [0, d]
        a[p + "exp_lut"] = _fixed(np.exp(-2.0 * c_soft * np.arange(d + 1)), sh["prob"])
        a[p + "att_bias"] = rng.integers(-(1 << 11), 1 << 11, (h, n, n)).astype(np.int32)
        a[p + "a.thr1"] = np.int64(round(2.0 ** sh["prob"] / n * rng.uniform(0.5, 1.5)))
        alpha_a = np.sort(rng.uniform(0.5, 2.0, groups))[::-1] / n
        alpha_v = np.sort(rng.uniform(0.2, 1.0, groups))[::-1]
        scale = _fixed(np.outer(alpha_a, alpha_v), sh["ctx"])
        a[p + "ctx.scale"] = scale
        # ctx ~ scale[0,0] * sqrt(N) in spread; thresholds around the middle
        a[p + "proj.in_thr"] = _fixed(rng.normal(0, 0.3, e) * float(scale[0, 0]) * math.sqrt(n), 0)
        s = frac_bits + sh["resid"]
        a[p + "proj.weight"] = _weights(rng, e, e)
        a[p + "proj.mult"] = np.int64(_fixed(rng.uniform(0.5, 1.0) / root_e, s))
        a[p + "proj.bias"] = _fixed(rng.normal(0, 0.1, e), s)
        a[p + "fc1.weight"] = _weights(rng, hd, e)
        a[p + "fc1.thr_hi"], a[p + "fc1.thr_lo"] = _fc1_thresholds(rng, hd, max(1.0, math.sqrt(e)), 0.0, e + 1, -e)
        a[p + "fc2.weight"] = _weights(rng, e, hd)
        a[p + "fc2.mult"] = np.int64(_fixed(rng.uniform(0.5, 1.0) / math.sqrt(hd / 2), s))
        a[p + "fc2.bias"] = _fixed(rng.normal(0, 0.1, e), s)
        if m.act_unit:
            a.update({p + k: v for k, v in _act_block(rng, m, {"e": e, "h": h, "n": n, "hd": hd}, sh,
                                                       frac_bits, int(scale[0, 0])).items()})

    k = sh["head_ln"]
    for norm in ("norm", "head_dist_norm"):
        a[norm + ".gain"] = _fixed(rng.uniform(10, 60, e) * rng.choice([-1.0, 1.0], e, p=[0.2, 0.8]), k)
        a[norm + ".offset"] = _fixed(rng.normal(0, 10, e), k)
    for head in ("head", "head_dist"):
        a[head + ".weight"] = rng.integers(-127, 128, (c, e)).astype(np.int8)
        a[head + ".mult"] = np.int64(rng.integers(5, 50))
    a["logit.bias"] = _fixed(rng.normal(0, 0.1, c), sh["logit"])
    a["format_version"] = np.array(1, dtype=np.int64)

    # exact dtypes of the layout table (int64 scalars, int32 tables...)
    arrays = {name: np.asarray(a[name]).astype(dtype) for name, (dtype, _) in expected_arrays(header).items()}
    validate(header, arrays, "<random_model>")
    return IntModel(header=header, arrays=arrays, path="<random>")


def random_images(rng: np.random.Generator, model: IntModel, n: int) -> np.ndarray:
    """n random int8 images [n, Cin, I, I] (uniform pixels minus 128)."""
    return rng.integers(-128, 128, (n, model.in_chans, model.img_size, model.img_size)).astype(np.int8)
