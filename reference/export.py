"""Export a stage-2 binary DeiT to the integer model (docs/integer_model.md).

    python -m reference.export --checkpoint runs/digits/stage2/best.pt --out m.npz
    python -m reference.export --random --preset deit_small --groups 1 --out ds.npz
    python -m reference.export --random --method didb --out didb.npz

All floating-point work of the toolchain happens here: scales, shifts, LayerNorm
gains and the GELU are folded into integer thresholds, fixed-point multipliers and
lookup tables, so gsbsim and the HLS C++ only ever see integers.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
import torch

from gsbsim.format.methods import DEFAULT_METHOD, METHOD_NAMES, method_of
from gsbsim.cli.args import OneLineParser, int_at_least, nonempty_path, seed
from gsbsim.cli.signals import guarded
from gsbsim.format.conventions import pack_bits, ratio_numerator, round_half_up
from .blocks import GELU_CLIP, BinaryBlock
from .config import groups_error
from .layers import PIXEL_SCALE
from .models import LN_EPS, BinaryDeiT, build_model
from .presets import get_preset
from .export_methods import act_block, act_peaks
from .fixed_point import SHIFTS, ExportError, ceil_int, exp_lut, fixed, requant_params, to_numpy

FORMAT_VERSION = 1
PROG = "python -m reference.export"
# the residual stream's range: HEADROOM times the calibration values must keep X, and the activation
# units' u and z, well inside int32 (peak < 2^29), and the exact LayerNorm of §3 in int64 (E*S2 <
# 2^62: each token's sqrt(E*S2) < 2^31); the largest F that does is the first candidate
HEADROOM = 4
RESID_LIMIT = 2 ** 29
LN_LIMIT = 2 ** 31
# F candidates, from the largest allowed down: the check (reference/verify.py) decides, because
# a coarser grid can flip a constant token's bit and a finer one is not always better either
CANDIDATES = 4
MIN_FRAC_BITS = 4
# an export that meets every goal at the largest F is taken without trying the others
GOOD_BITS = 0.9999
DEFAULT_MIN_AGREEMENT = 0.99
VERIFY_IMAGES = 1000          # at most this many validation images (ImageNet's 50000 would take hours)
VERIFY_RANDOM = 4
# methods (config.METHODS) whose stage-2 model has an integer model: 'bit' is gsb with one group,
# 'sign' one group with zero shifts, running-mean scales and the attention threshold 1/N;
# 'reactnet' and 'didb' add §13 (the activation units; HFSC and DIBA), reference/export_methods.py
EXPORTABLE_METHODS = METHOD_NAMES   # every row of gsbsim/format/methods.py (read when used) has an integer model


def _binary_weight(linear) -> tuple[np.ndarray, float]:
    """BWN weights as packed bits (sign(W - mean W), tie +1) and the scale mean|W|."""
    w = to_numpy(linear.weight)
    return pack_bits((w - w.mean() >= 0).astype(np.uint8)), float(np.abs(w).mean())


def _in_scale(linear) -> float:
    return float(linear.act_q.scales())


def _shift(move, size: int) -> np.ndarray:
    """A learnable shift flattened to `size` values; zeros where the method has none (sign)."""
    return to_numpy(move.bias).reshape(size) if move is not None else np.zeros(size)


def _attention_scales(at, n_tok: int) -> tuple[np.ndarray, np.ndarray, np.int64]:
    """(attention plane scales, value plane scales, a.thr1) of a block's attention.

    gsb/bit: the GSB scales and thr1 = ceil(a1*2^(prob-1)) (A >= a1/2); sign: the {0, 1} plane
    1[A >= 1/N] with scale 1 (thr1 = ceil(2^prob/N)) and V's running-mean scale.
    """
    if hasattr(at, "a_gsb"):
        a_scales = to_numpy(at.a_gsb.scales())
        return a_scales, to_numpy(at.v_gsb.scales()), np.int64(ceil_int(a_scales[0] * 2.0 ** (SHIFTS["prob"] - 1)))
    return np.ones(1), to_numpy(at.v_bin.scales()).reshape(1), np.int64(ceil_int(2.0 ** SHIFTS["prob"] / n_tok))


def _ln_sign_thresholds(norm, shift: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """LayerNorm + shift + sign -> sign(gamma)*D*2^ln >= thr*sigma (spec §3)."""
    gamma, beta = to_numpy(norm.weight), to_numpy(norm.bias)
    offset = beta + shift
    sgn = np.sign(gamma).astype(np.int8)
    # |x_c - mu| / sigma <= sqrt(E - 1): a larger |t| means a constant bit, so clamp (keeps int64 headroom)
    bound = math.sqrt(dim) + 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(gamma != 0, -offset / np.abs(gamma), 0.0)
    thr = fixed(np.clip(t, -bound, bound), SHIFTS["ln"])
    thr = np.where(gamma == 0, np.where(offset >= 0, 0, 1), thr)
    return sgn, thr.astype(np.int64)


def _acc_threshold(bias: np.ndarray, scale: float, k: int) -> np.ndarray:
    """scale*acc + bias >= 0  <=>  acc >= ceil(-bias/scale); clipped to the accumulator range."""
    return np.clip(ceil_int(-bias / scale), -k - 1, k + 1).astype(np.int32)


def _fc1_thresholds(fc1, fc2, beta_w: float, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """clip(GELU(a*b*acc + bias), +-10) + shift >= alpha/2 as acc >= hi OR acc <= lo (spec §8)."""
    hidden = fc1.out_features
    ab = _in_scale(fc1) * beta_w
    acc = np.arange(-dim, dim + 1, dtype=np.float64)
    f = torch.from_numpy(ab * acc[None, :] + to_numpy(fc1.bias)[:, None])
    g = torch.nn.functional.gelu(f).clamp(-GELU_CLIP, GELU_CLIP).numpy()
    on = g + _shift(fc2.move, hidden)[:, None] >= _in_scale(fc2) / 2
    hi = np.full(hidden, dim + 1, dtype=np.int64)
    lo = np.full(hidden, -dim - 1, dtype=np.int64)
    for o in range(hidden):
        off = np.flatnonzero(~on[o])
        if off.size == 0:
            hi[o] = -dim
            continue
        hi[o] = acc[off[-1]] + 1
        lo[o] = acc[off[0]] - 1
        rebuilt = (acc >= hi[o]) | (acc <= lo[o])
        if not np.array_equal(rebuilt, on[o]):
            raise ExportError(f"fc1 channel {o}: the GELU binarizer is not a two-sided threshold")
    return hi.astype(np.int32), lo.astype(np.int32)


def _export_block(blk: BinaryBlock, dim: int, n_tok: int, frac_bits: int, method: str) -> dict[str, np.ndarray]:
    """One block's arrays: the parts every method shares, then the method's own (§4-§8, or §13)."""
    at, mlp = blk.attn, blk.mlp
    out: dict[str, np.ndarray] = {}
    out["ln1.sign"], out["ln1.thr"] = _ln_sign_thresholds(blk.norm1, _shift(at.qkv.move, dim), dim)
    out["ln2.sign"], out["ln2.thr"] = _ln_sign_thresholds(blk.norm2, _shift(mlp.fc1.move, dim), dim)
    betas: dict[str, float] = {}
    for name, lin in (("qkv", at.qkv), ("proj", at.proj), ("fc1", mlp.fc1), ("fc2", mlp.fc2)):
        out[name + ".weight"], betas[name] = _binary_weight(lin)
    att_bias = to_numpy(at.att_bias.bias) if hasattr(at, "att_bias") else np.zeros((at.num_heads, n_tok, n_tok))
    bias = fixed(att_bias, SHIFTS["prob"])
    if np.abs(bias).max(initial=0) > np.iinfo(np.int32).max:   # int32 at 2^-prob: |bias| < 2^(31-prob)
        raise ExportError(f"att_bias {np.abs(att_bias).max():.4g} exceeds the int32 range at 2^-{SHIFTS['prob']} "
                          f"(|bias| < {2.0 ** (31 - SHIFTS['prob']):g})")
    out["att_bias"] = bias.astype(np.int32)
    a_scales, v_scales, out["a.thr1"] = _attention_scales(at, n_tok)
    out["ctx.scale"] = fixed(np.outer(a_scales, v_scales), SHIFTS["ctx"])
    out["proj.in_thr"] = ceil_int(-_shift(at.proj.move, dim) * 2.0 ** SHIFTS["ctx"])
    features = method_of(method)
    if features.act_unit:
        out.update(act_block(blk, betas, frac_bits, float(v_scales[0]), n_tok, SHIFTS, features.attention))
        return out

    d = at.head_dim
    ab = _in_scale(at.qkv) * betas["qkv"]
    bias = to_numpy(at.qkv.bias).reshape(3, dim)
    moves = [getattr(at, name, None) for name in ("q_move", "k_move", "v_move")]
    out["q.thr"] = _acc_threshold(bias[0] + _shift(moves[0], dim), ab, dim)
    out["k.thr"] = _acc_threshold(bias[1] + _shift(moves[1], dim), ab, dim)
    # floor, not round: acc*2^value + offset >= 0 is then exactly acc*ab + bias + shift >= 0 (a tiny
    # negative bias, e.g. timm's zero-initialised ones after little training, must not round to 0)
    out["v.offset"] = np.floor((bias[2] + _shift(moves[2], dim)) / ab * 2.0 ** SHIFTS["value"]).astype(np.int64)
    out["exp_lut"] = exp_lut(at)
    out["proj.mult"], out["proj.bias"] = requant_params(_in_scale(at.proj) * betas["proj"], to_numpy(at.proj.bias), frac_bits)
    out["fc1.thr_hi"], out["fc1.thr_lo"] = _fc1_thresholds(mlp.fc1, mlp.fc2, betas["fc1"], dim)
    out["fc2.mult"], out["fc2.bias"] = requant_params(_in_scale(mlp.fc2) * betas["fc2"], to_numpy(mlp.fc2.bias), frac_bits)
    return out


def _head_shifts(model: BinaryDeiT) -> tuple[int, int]:
    """(head_ln, logit): the finest grids the format's ranges allow for the final LayerNorm's gains and
    offsets (|gain| <= 2^22, |offset| <= 2^28, head_ln <= 24) and the logit multipliers (each at least
    2^24, float32's precision, unless |mult|*128*128*E <= 2^61 or |logit.bias| <= 2^61 forbid it),
    never coarser than SHIFTS. A fixed 2^-16 rounded a collapsed head weight scale (1e-5) to a
    multiplier of 0, and 2^-12 gains moved 1 % of the 8-bit head inputs."""
    dim = model.embed_dim
    gains, offsets, scales = [], [], []
    for head in (model.head, model.head_dist):
        ax = float(head.act_q.scales())
        gains.append(np.abs(to_numpy(model.norm.weight)).max() / ax)
        offsets.append(np.abs(to_numpy(model.norm.bias) + to_numpy(head.move.bias)).max() / ax)
        scales.append(ax * float(head.weight_q.int_repr(head.weight)[1]) / 2)
    k = SHIFTS["head_ln"]
    while k < 24 and max(gains) * 2.0 ** (k + 1) <= 2 ** 22 and max(offsets) * 2.0 ** (k + 1) <= 2 ** 28:
        k += 1
    bias = float(np.abs((to_numpy(model.head.bias) + to_numpy(model.head_dist.bias)) / 2).max())
    logit = max(SHIFTS["logit"], math.ceil(24 - math.log2(min(scales))))
    top = math.floor(61 - math.log2(max(scales) * 128 * 128 * dim))
    if bias > 0:
        top = min(top, math.floor(61 - math.log2(bias)))
    return k, int(min(logit, max(top, SHIFTS["logit"]), 62))


def _export_head(model: BinaryDeiT, head, shifts: dict[str, int]) -> dict[str, np.ndarray]:
    k = shifts["head_ln"]
    ax = float(head.act_q.scales())
    gain = fixed(to_numpy(model.norm.weight) / ax, k)
    offset = fixed((to_numpy(model.norm.bias) + to_numpy(head.move.bias)) / ax, k)  # heads keep their shift in every method
    q, aw = head.weight_q.int_repr(head.weight)
    mult = np.int64(round_half_up(ax * float(aw) / 2 * 2.0 ** shifts["logit"]))
    return {"gain": gain, "offset": offset, "weight": q.numpy().astype(np.int8), "mult": mult}


def _ln_norm(x: torch.Tensor) -> float:
    """The largest sqrt(E * sum_c x_c^2) of a token: the exact LayerNorm's E*S2 is its square times 2^2F."""
    return float((x.shape[-1] * x.double().pow(2).sum(-1)).sqrt().max())


@torch.no_grad()
def calibrate_frac_bits(model: BinaryDeiT, images: torch.Tensor) -> int:
    """The largest F the ranges allow: HEADROOM * peak * 2^F <= RESID_LIMIT and HEADROOM * norm * 2^F <=
    LN_LIMIT on `images`, the peak being the largest magnitude of the residual stream (and the activation
    units), the norm the largest sqrt(E * S2) of a token any LayerNorm sees (the blocks' and the heads')."""
    x = model._pos_embed(model.patch_embed(images))
    peak, norm = float(x.abs().max()), 0.0
    with act_peaks(model) as acts:   # reactnet/didb: the activation units' inputs and outputs too
        for blk in model.blocks:
            norm = max(norm, _ln_norm(x))
            x = x + blk.attn(blk.norm1(x))
            peak, norm = max(peak, float(x.abs().max())), max(norm, _ln_norm(x))
            x = x + blk.mlp(blk.norm2(x))
            peak = max(peak, float(x.abs().max()))
        norm = max(norm, _ln_norm(x))
    peak = max(peak, acts.peak)
    f = math.floor(math.log2(min(RESID_LIMIT / max(peak, 1e-3), LN_LIMIT / max(norm, 1e-3)) / HEADROOM))
    return int(min(max(f, MIN_FRAC_BITS), 30))


def check_exportable(model: torch.nn.Module) -> None:
    """ExportError unless `model` is a stage-2 student of an exportable method and mask statistic."""
    if not isinstance(model, BinaryDeiT) or model.cfg.stage != 2:
        raise ExportError("only a stage-2 (fully binary) student can be exported to the integer model")
    cfg = model.cfg
    if cfg.method not in EXPORTABLE_METHODS:
        raise ExportError(f"method {cfg.method} has no integer model yet (docs/integer_model.md)")
    if cfg.mask_stat == "batch":
        raise ExportError("mask statistic 'batch' makes an image's answer depend on its batch; "
                          "export supports 'row' and 'image' (train with --mask-stat row or image)")


@torch.no_grad()
def export(model: BinaryDeiT, calib_images: torch.Tensor, preset: str, source: str,
           frac_bits: int | None = None) -> tuple[dict, dict]:
    """Return (header, arrays) of the integer model of a stage-2 student (methods EXPORTABLE_METHODS).

    frac_bits: F of the residual stream; None takes the largest the calibration ranges allow
    (export_verified chooses among the allowed ones by measuring).
    """
    check_exportable(model)
    cfg = model.cfg
    model.eval()
    if frac_bits is None:
        frac_bits = calibrate_frac_bits(model, calib_images)
    dim = model.embed_dim
    blk0 = model.blocks[0]
    pe = model.patch_embed
    n_tok = pe.num_patches + 2
    classes = model.num_classes

    arrays: dict[str, np.ndarray] = {}
    wq, walpha = pe.weight_q.int_repr(pe.proj.weight)
    arrays["patch.weight"] = wq.numpy().reshape(dim, -1).astype(np.int8)
    ps = frac_bits + SHIFTS["patch"]
    arrays["patch.mult"] = round_half_up(to_numpy(walpha).reshape(dim) / PIXEL_SCALE * 2.0 ** ps)
    arrays["patch.bias"] = fixed(to_numpy(pe.proj.bias), ps)
    arrays["pos"] = fixed(to_numpy(model.pos_embed)[0], frac_bits).astype(np.int32)
    tokens = np.concatenate([to_numpy(model.cls_token)[0], to_numpy(model.dist_token)[0]], axis=0)
    arrays["tokens"] = fixed(tokens, frac_bits).astype(np.int32)
    for i, blk in enumerate(model.blocks):
        for name, value in _export_block(blk, dim, n_tok, frac_bits, cfg.method).items():
            arrays[f"blocks.{i}.{name}"] = value
    # shifts.slope only where there is an activation unit (other methods' files look as before)
    shifts = {k: v for k, v in SHIFTS.items() if k != "slope" or method_of(cfg.method).act_unit}
    shifts["head_ln"], shifts["logit"] = _head_shifts(model)
    main, dist = _export_head(model, model.head, shifts), _export_head(model, model.head_dist, shifts)
    arrays["norm.gain"], arrays["norm.offset"] = main["gain"], main["offset"]
    arrays["head_dist_norm.gain"], arrays["head_dist_norm.offset"] = dist["gain"], dist["offset"]
    arrays["head.weight"], arrays["head.mult"] = main["weight"], main["mult"]
    arrays["head_dist.weight"], arrays["head_dist.mult"] = dist["weight"], dist["mult"]
    arrays["logit.bias"] = fixed((to_numpy(model.head.bias) + to_numpy(model.head_dist.bias)) / 2, shifts["logit"])

    header = {
        "format": "gsbsim-int", "preset": preset, "img_size": pe.img_size[0], "patch_size": pe.patch_size[0],
        "in_chans": pe.proj.in_channels, "embed_dim": dim, "depth": len(model.blocks),
        "num_heads": blk0.attn.num_heads, "head_dim": blk0.attn.head_dim,
        "mlp_hidden": blk0.mlp.fc1.out_features, "num_tokens": n_tok, "num_classes": classes,
        "groups": cfg.groups, "ratios": [ratio_numerator(r) for r in cfg.ratios], "mask_stat": cfg.mask_stat,
        "frac_bits": frac_bits, "ln_eps": int(max(1, round(LN_EPS * dim * dim * 4.0 ** frac_bits))),
        "shifts": shifts, "source": source, "method": cfg.method,
    }
    return header, arrays


def _in_memory(header: dict, arrays: dict[str, np.ndarray]):
    from gsbsim.format.model_file import IntModel, validate
    arrays = {**arrays, "format_version": np.array(FORMAT_VERSION, dtype=np.int64)}
    validate(header, arrays, "<export>")
    return IntModel(header=header, arrays=arrays)


def export_verified(model: BinaryDeiT, calib_images: torch.Tensor, images: np.ndarray, labels: np.ndarray | None,
                    data: str, preset: str, source: str,
                    min_agreement: float = DEFAULT_MIN_AGREEMENT) -> tuple[dict, dict, "Verification"]:
    """Export, choosing F by measurement, and verify (docs/integer_model.md §11).

    Candidates F = F_max, F_max - 1, ... (CANDIDATES of them, F_max from calibrate_frac_bits); each is
    exported and checked on `images` (uint8, labels or None) by reference.verify. The first that
    meets every goal (constant-token bits exact, all predictions equal, every binarizer >= GOOD_BITS
    teacher-forced) is taken; otherwise the best by Verification.rank (ties: the larger F). The
    figures go into the header. ExportError, naming the worst binarizer, when the chosen export
    agrees on fewer than `min_agreement` of the images or flips a constant-token bit
    (min_agreement 0: report only).
    """
    from gsbsim.engine.errors import IntegerOverflowError
    from gsbsim.format.model_file import ModelFileError
    from .verify import verify, weights_sha256
    check_exportable(model)  # before the calibration, which needs a student's layers
    f_max = calibrate_frac_bits(model, calib_images)
    best, tried = None, []
    for f in range(f_max, max(f_max - CANDIDATES, MIN_FRAC_BITS - 1), -1):
        header, arrays = export(model, calib_images, preset, source, frac_bits=f)
        try:
            v = verify(model, _in_memory(header, arrays), images, labels, data)
        except (ModelFileError, IntegerOverflowError) as exc:   # outside the format's ranges: not a candidate
            tried.append({"frac_bits": f, "error": str(exc)[:200]})
            continue
        tried.append({"frac_bits": f, "agreement": v.agreement, "min_teacher_forced": v.min_teacher_forced,
                      "constant_bits_flipped": v.constant_bits_flipped})
        if best is None or v.rank() > best[2].rank():
            best = (header, arrays, v)
        if v.constant_bits_flipped == 0 and v.agreement == 1.0 and v.min_teacher_forced >= GOOD_BITS:
            break
    if best is None:
        raise ExportError(f"no residual-stream grid F in {f_max}..{tried[-1]['frac_bits']} gives a valid integer "
                          f"model ({tried[0]['error']})")
    header, arrays, v = best
    header["float_top1"] = v.float_top1
    header["source_sha256"] = weights_sha256(model)
    header["verification"] = {**v.header(), "candidates": tried}
    if min_agreement > 0 and (v.agreement < min_agreement or v.constant_bits_flipped):
        name, worst = v.worst_layer
        what = (f"flips {v.constant_bits_flipped} image-independent bit(s), first at {v.constant_flip_at}"
                if v.constant_bits_flipped else
                f"agrees with the float model on {100 * v.agreement:.2f}% of {v.images} {v.data} images, "
                f"below --min-agreement {100 * min_agreement:.2f}%")
        raise ExportError(f"at every frac_bits tried ({f_max}..{tried[-1]['frac_bits']}) the integer model {what}; "
                          f"worst binarizer {name}: {100 * worst:.3f}% of its bits teacher-forced, "
                          f"{100 * v.bits_end_to_end.get(name, 1.0):.3f}% end to end; nothing written")
    return header, arrays, v


def random_student(preset: str, groups: int, num_classes: int, in_chans: int, seed: int,
                   mask_stat: str = "row", method: str = DEFAULT_METHOD) -> tuple[BinaryDeiT, torch.Tensor]:
    """An untrained stage-2 student of `method` with its scales initialised from random images (cost studies)."""
    p = get_preset(preset)
    torch.manual_seed(seed)
    model = build_model(p, "stage2", num_classes=num_classes, in_chans=in_chans, groups=groups,
                        mask_stat=mask_stat, method=method)
    images = torch.randint(0, 256, (4, in_chans, p.img_size, p.img_size)).float()
    model.train()
    with torch.no_grad():
        model(images)  # data-dependent scale initialisation of every quantizer
    return model.eval(), images


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return v


def _parser() -> argparse.ArgumentParser:
    ap = OneLineParser(
        prog=PROG,
        description="Export a stage-2 binary DeiT to the integer model (.npz, docs/integer_model.md).",
        epilog="examples:\n  python -m reference.export --checkpoint runs/digits/stage2/best.pt --out m.npz\n"
               "  python -m reference.export --random --preset deit_small --groups 1 --out ds.npz\n"
               "  python -m reference.export --random --method didb --out didb.npz",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=nonempty_path, help="a stage-2 checkpoint written by python -m reference.train")
    src.add_argument("--random", action="store_true", help="export an untrained model of --preset (cost studies)")
    ap.add_argument("--out", required=True, type=nonempty_path, help="output .npz path (written atomically)")
    ap.add_argument("--preset", default="digits", help="preset of the --random model (default: digits)")
    ap.add_argument("--groups", type=int_at_least(1, 8), default=None,
                    help="GSB groups of the --random model, 1..8 (default 3; 1 = plain binary)")
    ap.add_argument("--method", default=DEFAULT_METHOD, choices=EXPORTABLE_METHODS,
                    help="training method of the --random model (docs/didb.md; not gsb: one group)")
    ap.add_argument("--num-classes", type=int_at_least(1), default=None, help="classes of the --random model")
    ap.add_argument("--in-chans", type=int_at_least(1), default=None, help="image channels of the --random model")
    ap.add_argument("--mask-stat", default="row", choices=("row", "image"), help="mask statistic (--random)")
    ap.add_argument("--seed", type=seed, default=0, help="seed of the --random model")
    ap.add_argument("--calib-images", type=int_at_least(1), default=64, help="training images used to calibrate F")
    ap.add_argument("--data-path", default=None,
                    help="where the checkpoint's dataset is now (default: the path it was trained with)")
    ap.add_argument("--verify-images", type=_positive_int, default=None, metavar="N",
                    help=f"images the export is verified on: the first N of the validation split, or of the "
                         f"training split when there is none (default {VERIFY_IMAGES}); --random: N random "
                         f"images (default {VERIFY_RANDOM})")
    ap.add_argument("--min-agreement", type=_fraction, default=None, metavar="FRAC",
                    help=f"fail, writing nothing, when float and integer predictions agree on fewer than FRAC "
                         f"of the verification images or an image-independent bit flips (default "
                         f"{DEFAULT_MIN_AGREEMENT}; --random: 0, report only, as an untrained model's "
                         f"predictions are near-ties)")
    return ap


def _checkpoint_images(meta: dict, n_calib: int, n_verify: int, data_path: str | None = None):
    """(calibration images, verification images uint8, their labels, which split) of a checkpoint's dataset."""
    from .checkpoint import checkpoint_data
    from .data import build_datasets
    bundle = build_datasets(**checkpoint_data(meta, data_path), augment=False)
    xs = [bundle.train[i][0] for i in range(min(n_calib, len(bundle.train)))]
    split = "val" if bundle.val is not None and len(bundle.val) else "train"
    ds = bundle.val if split == "val" else bundle.train
    n = min(n_verify, len(ds))
    images = np.stack([ds[i][0].numpy() for i in range(n)]).astype(np.uint8)   # pixels 0..255, as dataset_arrays
    return torch.stack(xs).float(), images, np.asarray(ds.labels[:n]), split


def _random_images(n: int, in_chans: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 1).integers(0, 256, (n, in_chans, size, size), dtype=np.uint8)


def _check_out(path: str) -> None:
    """--out before any work: a file (or nothing) in an existing folder."""
    from gsbsim.paths import output_file_problem
    problem = output_file_problem(path)
    if problem:
        raise ExportError(f"--out {path}: {problem}")


def main(argv=None) -> int:
    """``python -m reference.export``; returns the exit status (docs/errors.md)."""
    return guarded(PROG, _main, argv)


def _main(argv=None) -> int:
    from gsbsim.format.model_file import ModelFileError, save_model
    from .checkpoint import CheckpointError
    from .data import DataError
    ap = _parser()
    args = ap.parse_args(argv)
    if bad := groups_error(args.method, args.groups):
        ap.error(bad)
    args.groups = 3 if args.groups is None else args.groups
    try:
        _check_out(args.out)
        if args.random:
            p = get_preset(args.preset)
            in_chans = args.in_chans or (1 if p.dataset == "digits" else 3)
            classes = args.num_classes or (10 if p.dataset == "digits" else 1000)
            model, calib = random_student(args.preset, args.groups, classes, in_chans, args.seed, args.mask_stat,
                                          args.method)
            source, preset = f"random(seed={args.seed})", args.preset
            images = _random_images(args.verify_images or VERIFY_RANDOM, in_chans, p.img_size, args.seed)
            labels, split, min_agreement = None, "random", args.min_agreement or 0.0
        else:
            from .checkpoint import load_model
            model, meta = load_model(args.checkpoint)
            meta = dict(meta)
            try:
                check_exportable(model)
            except ExportError as e:
                raise ExportError(f"--checkpoint {args.checkpoint} (a {meta.get('kind')} checkpoint): {e}") from None
            calib, images, labels, split = _checkpoint_images(meta, args.calib_images,
                                                              args.verify_images or VERIFY_IMAGES, args.data_path)
            preset = meta.get("preset", "?")
            source, preset = args.checkpoint, preset["name"] if isinstance(preset, dict) else str(preset)
            min_agreement = DEFAULT_MIN_AGREEMENT if args.min_agreement is None else args.min_agreement
        header, arrays, check = export_verified(model, calib, images, labels, split, preset, source, min_agreement)
        save_model(args.out, header, arrays)
    except (ExportError, CheckpointError, DataError, ModelFileError, ValueError, OSError) as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    keys = ("preset", "method", "embed_dim", "depth", "groups", "frac_bits")
    print(f"wrote {args.out}: {json.dumps({k: header[k] for k in keys})}")
    print(f"verified: {check.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
