"""The integer model file (``model.npz``, format version 1): layout, validation, load, save.

docs/integer_model.md §1 is the specification. Everything that a file can get wrong is
checked here, once, so the simulators and the HLS generator can trust an ``IntModel``:
the header keys and their consistency, every array's name, dtype and shape
(``expected_arrays``), and the value ranges under which no int64 intermediate of the
integer model can overflow (``docs/integer_model.md`` §1, "Value ranges"). numpy only.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from gsbsim.format.conventions import WORD_BITS, n_words, round_half_up
from gsbsim.format.methods import ACT_LINEARS, ACT_METHODS, block_array_names, block_arrays, method_of
from gsbsim.format.methods import METHOD_NAMES as METHODS  # a live view of the table, not a copy
from gsbsim.outputs import remove_dead_temps, temp_file_for
from gsbsim.paths import input_file_problem
from gsbsim.format.provenance import PROVENANCE_KEYS, provenance_errors

__all__ = ["FORMAT_VERSION", "ModelFileError", "IntModel", "expected_arrays", "validate",
           "load_model", "save_model", "SHIFT_NAMES", "HEADER_KEYS", "LIMITS", "METHODS", "ACT_METHODS",
           "ACT_LINEARS", "SLOPE_SHIFT_DEFAULT", "SLOPE_SHIFT_RANGE", "SCORE_SHIFT", "block_array_names",
           "exp_hi_length", "exp_tables"]

FORMAT_VERSION = 1
FORMAT_NAME = "gsbsim-int"
# the methods with an integer model and their features: gsbsim/format/methods.py
# §13.1: the negative slope is fixed point 2^-shifts.slope; a file without that (optional) key means
# 16, the grid before the key existed, so every older file keeps its arithmetic
SLOPE_SHIFT_DEFAULT = 16
SLOPE_SHIFT_RANGE = (1, 30)   # with |slope| <= 2^30 and |u| < 2^31: |u*slope| + 2^(shift-1) < 2^62
SCORE_SHIFT = 16   # §13.2: HFSC scores are fixed point 2^-16 (natural-log units)
EXP_LO_SIZE = 256  # §13.2: exp_mid and exp_lo each cover 8 bits of the 16 fractional bits of m
EXP_HI_MAX = 4096
MASK_STATS = ("row", "image")
SHIFT_NAMES = ("patch", "resid", "head_ln", "logit", "value", "prob", "recip", "ctx", "ln")
HEADER_KEYS = ("format", "preset", "img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads",
               "head_dim", "mlp_hidden", "num_tokens", "num_classes", "groups", "ratios", "mask_stat",
               "frac_bits", "ln_eps", "shifts", "source", "method")
OPTIONAL_HEADER_KEYS = ("float_top1", *PROVENANCE_KEYS)

# Dimension limits (spec §1): they bound the accumulators so that the value ranges below
# keep every int64 intermediate of the integer model in range.
LIMITS = {"embed_dim": 4096, "mlp_hidden": 65536, "num_tokens": 4096, "patch_inputs": 65536,
          "groups": 8, "num_classes": 65536, "depth": 1024}
# Allowed shift ranges [lo, hi] (recip is further bounded below by prob + 1).
SHIFT_RANGES = {"patch": (1, 40), "resid": (1, 40), "head_ln": (0, 24), "logit": (0, 62), "value": (0, 30),
                "prob": (0, 30), "recip": (1, 62), "ctx": (0, 62), "ln": (0, 24)}

_I32 = (-(2 ** 31), 2 ** 31 - 1)
_I64 = (-(2 ** 63), 2 ** 63 - 1)
BIAS_MAX = 2 ** 61          # |rq bias|, |logit.bias|
MULT_ACC_MAX = 2 ** 61      # |mult| * (accumulator bound) for every requantization / logit
V_OFFSET_MAX = 2 ** 54
CTX_SCALE_MAX = 2 ** 44
HEAD_GAIN_MAX = 2 ** 22
HEAD_OFFSET_MAX = 2 ** 28
SLOPE_MAX = 2 ** 30         # |L.slope| (§13.1): fits int32, |u*slope| < 2^61
ACT_OUT_MAX = 2 ** 30       # |L.out|, |L.tok_out| (§13.1)
SCORE_W_MAX = 2 ** 24       # |score.w| (§13.2)

def exp_hi_length(prob: int) -> int:
    """Length U of the exporter's exp_hi table (§13.2): the first u with round(2^prob e^-u) = 0, plus one."""
    u = 0
    while math.floor(2.0 ** prob * math.exp(-u) + 0.5) > 0:
        u += 1
    return u + 1


def exp_tables(prob: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """didb's three-level exp table (§13.2) as the exporter writes it: (exp_lo, exp_mid, exp_hi), int64.

    exp_lo[r] = round_half_up(2^prob e^(-r/2^16)), exp_mid[s] = round_half_up(2^prob e^(-s/2^8)),
    r, s < 256; exp_hi[u] = round_half_up(2^prob e^-u), u < exp_hi_length(prob) (the last entry is 0).
    """
    k = np.arange(EXP_LO_SIZE, dtype=np.float64)
    lo = round_half_up(np.exp(-k / 2.0 ** 16) * 2.0 ** prob)
    mid = round_half_up(np.exp(-k / 2.0 ** 8) * 2.0 ** prob)
    hi = round_half_up(np.exp(-np.arange(exp_hi_length(prob), dtype=np.float64)) * 2.0 ** prob)
    return lo, mid, hi


class ModelFileError(Exception):
    """An integer model file (or header/arrays about to be saved) is invalid; the message names
    the file and the problem."""


# ----------------------------------------------------------------------------- the model object
@dataclass
class IntModel:
    """A validated integer model: the JSON header, the arrays by name, and where it came from."""

    header: dict
    arrays: dict[str, np.ndarray]
    path: str = "<memory>"

    embed_dim = property(lambda self: int(self.header["embed_dim"]))
    depth = property(lambda self: int(self.header["depth"]))
    num_heads = property(lambda self: int(self.header["num_heads"]))
    head_dim = property(lambda self: int(self.header["head_dim"]))
    mlp_hidden = property(lambda self: int(self.header["mlp_hidden"]))
    num_tokens = property(lambda self: int(self.header["num_tokens"]))
    num_classes = property(lambda self: int(self.header["num_classes"]))
    groups = property(lambda self: int(self.header["groups"]))
    ratios = property(lambda self: tuple(int(r) for r in self.header["ratios"]))
    mask_stat = property(lambda self: str(self.header["mask_stat"]))
    frac_bits = property(lambda self: int(self.header["frac_bits"]))
    shifts = property(lambda self: {k: int(v) for k, v in self.header["shifts"].items()})
    # §13.1's slope grid: optional in the header (older files: SLOPE_SHIFT_DEFAULT)
    slope_shift = property(lambda self: int(self.header["shifts"].get("slope", SLOPE_SHIFT_DEFAULT)))
    img_size = property(lambda self: int(self.header["img_size"]))
    patch_size = property(lambda self: int(self.header["patch_size"]))
    in_chans = property(lambda self: int(self.header["in_chans"]))
    ln_eps = property(lambda self: int(self.header["ln_eps"]))
    method = property(lambda self: str(self.header["method"]))
    features = property(lambda self: method_of(self.method))   # the method table row (format/methods.py)

    def block(self, i: int) -> dict[str, np.ndarray]:
        """Block i's arrays (the method's set, block_array_names), keyed without the ``blocks.{i}.`` prefix."""
        if not 0 <= int(i) < self.depth:
            raise IndexError(f"{self.path}: block {i} out of range (depth {self.depth})")
        return {name: self.arrays[f"blocks.{i}.{name}"] for name in block_array_names(self.method)}


# ----------------------------------------------------------------------------- the layout table
def expected_arrays(header: dict) -> dict[str, tuple[np.dtype, tuple[int | None, ...]]]:
    """Name -> (dtype, shape) of every array a file with this (valid) header must hold (spec §1, §13).

    The one variable length, didb's ``exp_hi`` (1..4096 entries), has shape ``(None,)``.
    """
    e, n, c, hd = header["embed_dim"], header["num_tokens"], header["num_classes"], header["mlp_hidden"]
    h, d, g = header["num_heads"], header["head_dim"], header["groups"]
    k_patch = header["in_chans"] * header["patch_size"] ** 2
    i8, i32, i64 = np.dtype(np.int8), np.dtype(np.int32), np.dtype(np.int64)
    out: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
        "format_version": (i64, ()),
        "patch.weight": (i8, (e, k_patch)), "patch.mult": (i64, (e,)), "patch.bias": (i64, (e,)),
        "pos": (i32, (n, e)), "tokens": (i32, (2, e)),
    }
    sizes = {"E": e, "E3": 3 * e, "Hd": hd, "H": h, "N": n, "d1": d + 1, "G": g, "exp_lo": EXP_LO_SIZE,
             "exp_hi": None}
    block = {name: (np.dtype(dtype), tuple(n_words(sizes[r[6:]]) if isinstance(r, str) and r.startswith("words:")
                                           else sizes.get(r, r) for r in rule))
             for name, dtype, rule in block_arrays(header["method"])}
    for i in range(header["depth"]):
        out.update({f"blocks.{i}.{name}": spec for name, spec in block.items()})
    for norm in ("norm", "head_dist_norm"):
        out[f"{norm}.gain"] = (i64, (e,))
        out[f"{norm}.offset"] = (i64, (e,))
    for head in ("head", "head_dist"):
        out[f"{head}.weight"] = (i8, (c, e))
        out[f"{head}.mult"] = (i64, ())
    out["logit.bias"] = (i64, (c,))
    return out


# ----------------------------------------------------------------------------- validation
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _header_errors(header: Any) -> list[str]:
    """Problems of a header dict (empty list when valid)."""
    if not isinstance(header, dict):
        return [f"header must be a JSON object, got {type(header).__name__}"]
    missing = [k for k in HEADER_KEYS if k not in header]
    if missing:
        return [f"header is missing key(s) {', '.join(missing)}"]
    unknown = sorted(set(header) - set(HEADER_KEYS) - set(OPTIONAL_HEADER_KEYS))
    if unknown:
        return [f"header has unknown key(s) {', '.join(unknown)}"]
    errs: list[str] = []
    if header["format"] != FORMAT_NAME:
        errs.append(f"header format is {header['format']!r}, expected {FORMAT_NAME!r}")
    if header["method"] not in METHODS:
        errs.append(f"header method is {header['method']!r}, expected one of {', '.join(METHODS)}")
    for k in ("preset", "source"):
        if not isinstance(header[k], str):
            errs.append(f"header {k} must be a string, got {header[k]!r}")
    if "float_top1" in header and header["float_top1"] is not None:
        v = header["float_top1"]
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
            errs.append(f"header float_top1 must be a finite number or null, got {v!r}")
    errs += provenance_errors(header)
    for k in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "head_dim",
              "mlp_hidden", "num_tokens", "num_classes", "groups", "ln_eps"):
        if not _is_int(header[k]) or header[k] < 1:
            errs.append(f"header {k} must be a positive integer, got {header[k]!r}")
    if not _is_int(header["frac_bits"]) or not 0 <= header["frac_bits"] <= 30:
        errs.append(f"header frac_bits must be an integer in [0, 30], got {header['frac_bits']!r}")
    if header["mask_stat"] not in MASK_STATS:
        errs.append(f"header mask_stat must be one of {MASK_STATS}, got {header['mask_stat']!r}")
    shifts = header["shifts"]
    if not isinstance(shifts, dict) or set(shifts) - {"slope"} != set(SHIFT_NAMES):
        errs.append(f"header shifts must be an object with exactly the keys {', '.join(SHIFT_NAMES)} "
                    f"(and optionally slope), got {shifts!r}")
    else:
        for k, (lo, hi) in {**SHIFT_RANGES, "slope": SLOPE_SHIFT_RANGE}.items():
            if k in shifts and (not _is_int(shifts[k]) or not lo <= shifts[k] <= hi):
                errs.append(f"header shifts.{k} must be an integer in [{lo}, {hi}], got {shifts[k]!r}")
        if not errs and shifts["recip"] <= shifts["prob"]:
            errs.append(f"header shifts.recip ({shifts['recip']}) must exceed shifts.prob ({shifts['prob']})")
    if errs:
        return errs
    # consistency and limits (all fields are now well-typed)
    e, h = header["embed_dim"], header["num_heads"]
    if header["head_dim"] * h != e:
        errs.append(f"header head_dim * num_heads = {header['head_dim']} * {h} != embed_dim {e}")
    if header["img_size"] % header["patch_size"]:
        errs.append(f"header img_size {header['img_size']} is not a multiple of patch_size {header['patch_size']}")
    else:
        grid = header["img_size"] // header["patch_size"]
        if header["num_tokens"] != grid * grid + 2:
            errs.append(f"header num_tokens {header['num_tokens']} != (img_size/patch_size)^2 + 2 = {grid * grid + 2}")
    ratios = header["ratios"]
    if not isinstance(ratios, list) or len(ratios) != header["groups"] - 1:
        errs.append(f"header ratios must be a list of groups-1 = {header['groups'] - 1} integers, got {ratios!r}")
    elif not all(_is_int(r) and 1 <= r <= 255 for r in ratios):
        errs.append(f"header ratios must be integers in 1..255 (numerators over 256), got {ratios!r}")
    fixed = method_of(header["method"]).fixed_groups if header["method"] in METHODS else None
    if fixed is not None and (header["groups"] != fixed or ratios != []):
        errs.append(f"header method {header['method']} needs groups = {fixed} and ratios = [] (spec §13), "
                    f"got groups {header['groups']} and ratios {ratios!r}")
    if header["ln_eps"] > 2 ** 62:
        errs.append(f"header ln_eps {header['ln_eps']} exceeds 2^62")
    patch_inputs = header["in_chans"] * header["patch_size"] ** 2
    for name, value in (("embed_dim", e), ("mlp_hidden", header["mlp_hidden"]),
                        ("num_tokens", header["num_tokens"]), ("patch_inputs", patch_inputs),
                        ("groups", header["groups"]), ("num_classes", header["num_classes"]),
                        ("depth", header["depth"])):
        if value > LIMITS[name]:
            what = "in_chans * patch_size^2" if name == "patch_inputs" else name
            errs.append(f"header {what} = {value} exceeds the format's limit {LIMITS[name]}")
    return errs


def _value_errors(header: dict, arrays: dict[str, np.ndarray]) -> list[str]:
    """Value-range problems of arrays whose names, dtypes and shapes are already correct."""
    errs: list[str] = []
    e, hd = header["embed_dim"], header["mlp_hidden"]
    prob = header["shifts"]["prob"]
    acc_patch = 128 * 128 * header["in_chans"] * header["patch_size"] ** 2
    acc_head = 128 * 128 * e

    def check(name: str, lo: int, hi: int, why: str) -> None:
        a = np.asarray(arrays[name])
        if a.size and (int(a.min()) < lo or int(a.max()) > hi):
            bad = a.min() if int(a.min()) < lo else a.max()
            errs.append(f"array {name!r} has value {int(bad)} outside [{lo}, {hi}] ({why})")

    def check_pads(name: str, k: int) -> None:
        a = arrays[name]
        if k % WORD_BITS:
            pad = a[..., -1] >> np.uint64(k % WORD_BITS)
            if np.any(pad):
                errs.append(f"array {name!r} has nonzero pad bits beyond element {k} (pads must be 0)")

    check("format_version", FORMAT_VERSION, FORMAT_VERSION, "format version")
    check("patch.mult", -_mult_bound(acc_patch), _mult_bound(acc_patch), "|mult| * 128*128*Cin*P^2 <= 2^61")
    check("patch.bias", -BIAS_MAX, BIAS_MAX, "|bias| <= 2^61")
    for i in range(header["depth"]):
        p = f"blocks.{i}."
        for ln in ("ln1", "ln2"):
            check(p + ln + ".sign", -1, 1, "a sign is -1, 0 or +1")
            check(p + ln + ".thr", *_I32, "LayerNorm thresholds fit int32")
        check(p + "v.offset", -V_OFFSET_MAX, V_OFFSET_MAX, "|v.offset| <= 2^54")
        for table in ("exp_lut", "exp_lo", "exp_mid", "exp_hi"):
            if p + table not in arrays:
                continue
            check(p + table, 0, 2 ** prob, f"0 <= {table} <= 2^prob")
            if int(arrays[p + table][0]) != 2 ** prob:
                errs.append(f"array {p}{table}[0] is {int(arrays[p + table][0])}, must be 2^prob = {2 ** prob}")
        check(p + "ctx.scale", -CTX_SCALE_MAX, CTX_SCALE_MAX, "|ctx.scale| <= 2^44")
        if method_of(header["method"]).act_unit:
            errs += _act_value_errors(header, arrays, p, check)
        for lin, k in (("proj", e), ("fc2", hd)):
            check(p + lin + ".mult", -_mult_bound(k), _mult_bound(k), f"|mult| * {k} <= 2^61")
            check(p + lin + ".bias", -BIAS_MAX, BIAS_MAX, "|bias| <= 2^61")
        for lin, k in (("qkv", e), ("proj", e), ("fc1", e), ("fc2", hd)):
            check_pads(p + lin + ".weight", k)
    for norm in ("norm", "head_dist_norm"):
        check(norm + ".gain", -HEAD_GAIN_MAX, HEAD_GAIN_MAX, "|gain| <= 2^22")
        check(norm + ".offset", -HEAD_OFFSET_MAX, HEAD_OFFSET_MAX, "|offset| <= 2^28")
    for head in ("head", "head_dist"):
        check(head + ".mult", -_mult_bound(acc_head), _mult_bound(acc_head), "|mult| * 128*128*E <= 2^61")
    check("logit.bias", -BIAS_MAX, BIAS_MAX, "|bias| <= 2^61")
    return errs


def _mult_bound(acc_max: int) -> int:
    """The largest |mult| with |mult| * acc_max <= 2^61 (§1 value ranges)."""
    return MULT_ACC_MAX // acc_max


def _act_value_errors(header: dict, arrays: dict[str, np.ndarray], p: str, check) -> list[str]:
    """Value ranges of block p's §13 arrays (activation units; didb's scores and context)."""
    errs: list[str] = []
    e = header["embed_dim"]
    for lin in ("qkv", "fc1"):
        check(p + lin + ".mult", -_mult_bound(e), _mult_bound(e), f"|mult| * {e} <= 2^61")
        check(p + lin + ".bias", -BIAS_MAX, BIAS_MAX, "|bias| <= 2^61")
    for lin in ACT_LINEARS:
        check(p + lin + ".slope", -SLOPE_MAX, SLOPE_MAX, "|slope| <= 2^30")
        check(p + lin + ".out", -ACT_OUT_MAX, ACT_OUT_MAX, "|out| <= 2^30")
        check(p + lin + ".tok_out", -ACT_OUT_MAX, ACT_OUT_MAX, "|tok_out| <= 2^30")
        check(p + lin + ".tok_in", -BIAS_MAX, BIAS_MAX, "|tok_in| <= 2^61")
        if not method_of(header["method"]).token_terms:
            for part in ("tok_in", "tok_out"):
                if np.any(arrays[p + lin + "." + part]):
                    errs.append(f"array {p}{lin}.{part} must be all 0 for method {header['method']} (no token terms)")
    if method_of(header["method"]).attention == "hfsc_diba":
        check(p + "score.w", -SCORE_W_MAX, SCORE_W_MAX, "|score.w| <= 2^24")
        check(p + "ctx.vscale", -CTX_SCALE_MAX, CTX_SCALE_MAX, "|ctx.vscale| <= 2^44")
        check(p + "ctx.local", -CTX_SCALE_MAX, CTX_SCALE_MAX, "|ctx.local| <= 2^44")
    return errs


def _shape_ok(shape: tuple[int, ...], want: tuple[int | None, ...]) -> bool:
    """shape == want, where None in want means any length in 1..EXP_HI_MAX."""
    return len(shape) == len(want) and all(s == w if w is not None else 1 <= s <= EXP_HI_MAX
                                           for s, w in zip(shape, want))


def _array_errors(header: dict, arrays: dict[str, np.ndarray]) -> list[str]:
    """Name, dtype and shape problems (then value ranges if those are all right)."""
    expected = expected_arrays(header)
    errs: list[str] = []
    missing = [k for k in expected if k not in arrays]
    if missing:
        errs.append(f"missing array(s) {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    extra = sorted(set(arrays) - set(expected) - {"header"})
    if extra:
        errs.append(f"unknown array(s) {', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}")
    for name, (dtype, shape) in expected.items():
        if name not in arrays:
            continue
        a = arrays[name]
        if isinstance(a, np.generic):  # a numpy scalar is a 0-d array
            a = np.asarray(a)
        if not isinstance(a, np.ndarray):
            errs.append(f"array {name!r} is a {type(a).__name__}, not a numpy array")
            continue
        if a.dtype != dtype:
            why = ""
            if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
                why = " and contains NaN/inf"
            elif a.dtype.kind == "O":
                why = " (object arrays are not allowed)"
            errs.append(f"array {name!r} has dtype {a.dtype}{why}, expected {dtype}")
        elif not _shape_ok(a.shape, shape):
            want = f"(1..{EXP_HI_MAX},)" if None in shape else str(shape)
            errs.append(f"array {name!r} has shape {a.shape}, expected {want}")
    return errs or _value_errors(header, arrays)


def validate(header: Any, arrays: dict[str, np.ndarray], path: str) -> None:
    """Raise ModelFileError (naming `path`) unless header and arrays form a valid integer model."""
    errs = _header_errors(header)
    if not errs:
        errs = _array_errors(header, arrays)
    if errs:
        more = f" (and {len(errs) - 4} more)" if len(errs) > 4 else ""
        raise ModelFileError(f"{path}: " + "; ".join(errs[:4]) + more)


# ----------------------------------------------------------------------------- load and save
# Before anything is inflated, every zip member's name and declared (uncompressed) size is
# checked: a small file must not make the reader allocate gigabytes for an array that would
# be rejected anyway. zipfile never inflates past a member's declared size.
NPY_HEADER_MAX = 4096          # an .npy header of the arrays we write is under 128 bytes
HEADER_JSON_MAX = 1 << 20      # the JSON header of even the deepest model is a few KiB


def _member_errors(members: list, expected: dict | None) -> list[str]:
    """Problems of the zip members' names and declared sizes (``expected`` None: header members only)."""
    errs = []
    names = [m.filename for m in members]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        errs.append(f"duplicate member(s) {', '.join(dupes[:4])}")
    odd = [n for n in names if not n.endswith(".npy")]
    if odd:
        errs.append(f"member(s) {', '.join(map(repr, odd[:4]))} are not .npy arrays")
    small = {"header": HEADER_JSON_MAX, "format_version": 8}
    for m in members:
        name = m.filename.removesuffix(".npy")
        if expected is None:
            limit = small.get(name)
        elif name in expected:
            dtype, shape = expected[name]
            limit = dtype.itemsize * math.prod(EXP_HI_MAX if s is None else s for s in shape)
        elif name in small:
            limit = small[name]
        else:
            errs.append(f"unknown array {name!r} (declared {m.file_size} bytes; not read)")
            continue
        if limit is not None and m.file_size > limit + NPY_HEADER_MAX:
            errs.append(f"member {m.filename!r} declares {m.file_size} bytes, more than its array can hold "
                        f"({limit} bytes of data); not read")
    return errs


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """Every array of the archive, read eagerly so that any corruption surfaces here.

    Member names and declared sizes are checked first against the header (read alone,
    with a size limit), so nothing unexpected or oversized is ever inflated.
    """
    problem = input_file_problem(path)
    if problem == "not found":
        raise ModelFileError(f"{path}: no such file")
    if problem:
        raise ModelFileError(f"{path}: {problem}")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read: {exc}") from exc
    if magic.startswith(b"\x93NUMPY"):
        raise ModelFileError(f"{path}: not an .npz archive (a single .npy array)")
    if not magic.startswith(b"PK"):
        raise ModelFileError(f"{path}: not an .npz archive (no zip signature; empty, truncated or not a model file)")
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ModelFileError(f"{path}: not an .npz archive (a single .npy array?)")
        with npz:
            members = npz.zip.infolist()
            errs = _member_errors(members, None)
            if errs:
                raise ModelFileError(f"{path}: " + "; ".join(errs[:4]))
            first = {k: np.asarray(npz[k]) for k in ("format_version", "header") if k in npz.files}
            header = _parse_header(path, first)
            if _header_errors(header):
                validate(header, {}, path)  # raises, naming the header's problems; no array read
            errs = _member_errors(members, expected_arrays(header))
            if errs:
                more = f" (and {len(errs) - 4} more)" if len(errs) > 4 else ""
                raise ModelFileError(f"{path}: " + "; ".join(errs[:4]) + more)
            return {name: np.asarray(npz[name]) for name in npz.files}
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to read the archive is a file error
        msg = str(exc)
        if "pickle" in msg.lower() or "object arrays" in msg.lower():
            raise ModelFileError(f"{path}: holds pickled data or object arrays, which the format forbids "
                                 f"({type(exc).__name__}: {msg})") from exc
        raise ModelFileError(f"{path}: not a readable .npz archive (truncated or corrupt?): "
                             f"{type(exc).__name__}: {msg}") from exc


def _parse_header(path: str, raw: dict[str, np.ndarray]) -> dict:
    if "format_version" not in raw:
        raise ModelFileError(f"{path}: missing array 'format_version' (not a gsbsim integer model?)")
    fv = raw["format_version"]
    if fv.shape != () or fv.dtype.kind not in "iu":
        raise ModelFileError(f"{path}: format_version must be an integer scalar, got {fv.dtype} {fv.shape}")
    if int(fv) != FORMAT_VERSION:
        raise ModelFileError(f"{path}: unknown format version {int(fv)} (this gsbsim reads version {FORMAT_VERSION})")
    if "header" not in raw:
        raise ModelFileError(f"{path}: missing array 'header'")
    hb = raw["header"]
    if hb.dtype != np.uint8 or hb.ndim != 1:
        raise ModelFileError(f"{path}: header must be a 1-D uint8 array of UTF-8 JSON, got {hb.dtype} {hb.shape}")
    try:
        header = json.loads(hb.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: header is not valid UTF-8 JSON: {exc}") from exc
    return header


def load_model(path: str | os.PathLike) -> IntModel:
    """Read and fully validate an integer model file; every problem is a ModelFileError."""
    path = os.fspath(path)
    raw = _read_npz(path)
    header = _parse_header(path, raw)
    validate(header, raw, path)
    arrays = {k: v for k, v in raw.items() if k not in ("header",)}
    return IntModel(header=header, arrays=arrays, path=path)


def header_bytes(header: dict) -> np.ndarray:
    """The header as the uint8 UTF-8 JSON array stored in the file."""
    return np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), dtype=np.uint8).copy()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_model(path: str | os.PathLike, header: dict, arrays: dict[str, np.ndarray]) -> None:
    """Validate, then write atomically (temporary file in the same directory + os.replace).

    `arrays` may include or omit ``format_version``; ``header`` is written from `header`.
    Nothing is written when validation fails, and no partial file is left on any failure.
    """
    path = os.fspath(path)
    arrays = dict(arrays)
    arrays.setdefault("format_version", np.array(FORMAT_VERSION, dtype=np.int64))
    arrays = {k: np.asarray(v) for k, v in arrays.items() if k != "header"}
    try:
        json.dumps(header)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: header is not JSON-serialisable: {exc}") from exc
    validate(header, arrays, path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ModelFileError(f"{path}: directory {directory} does not exist")
    remove_dead_temps(path)  # what a writer killed with -9 left behind
    fd, tmp = temp_file_for(path)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, header=header_bytes(header), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):  # strerror: the message must name `path`, not the temporary
            raise ModelFileError(f"{path}: cannot write: {exc.strerror or exc}") from exc
        raise
