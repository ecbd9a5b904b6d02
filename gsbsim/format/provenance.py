"""The optional header keys that record where an integer model came from and how closely it
follows that float model (docs/integer_model.md §1 and §11): `source_sha256` and `verification`.

They are written by the exporter and only read by tools (gsbsim info, reference.agreement);
nothing of the integer arithmetic depends on them, so a file without them is just as valid.
"""
from __future__ import annotations

import math
import re
from typing import Any

PROVENANCE_KEYS = ("source_sha256", "verification")
# verification key -> what it must be
_FRACTION = "a number in [0, 1]"
VERIFICATION_KEYS = {
    "data": "a string", "images": "a positive integer", "agreement": _FRACTION,
    "int_top1": f"{_FRACTION} or null", "pred_teacher_forced": _FRACTION,
    "constant_bits_flipped": "a non-negative integer",
    "bits_end_to_end": f"an object of {_FRACTION}s", "bits_teacher_forced": f"an object of {_FRACTION}s",
    "candidates": "a list of objects",
}


def _fraction(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1


def _int(v: Any, lo: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


_CHECKS = {
    "data": lambda v: isinstance(v, str),
    "images": lambda v: _int(v, 1),
    "agreement": _fraction,
    "int_top1": lambda v: v is None or _fraction(v),
    "pred_teacher_forced": _fraction,
    "constant_bits_flipped": lambda v: _int(v, 0),
    "bits_end_to_end": lambda v: isinstance(v, dict) and all(_fraction(x) for x in v.values()),
    "bits_teacher_forced": lambda v: isinstance(v, dict) and all(_fraction(x) for x in v.values()),
    "candidates": lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
}


def provenance_errors(header: dict) -> list[str]:
    """Problems of the optional keys source_sha256 and verification (empty when absent or valid)."""
    errs = []
    if "source_sha256" in header:
        v = header["source_sha256"]
        if not (isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v)):
            errs.append(f"header source_sha256 must be 64 lowercase hex digits, got {v!r}")
    if "verification" in header:
        v = header["verification"]
        if not isinstance(v, dict):
            return errs + [f"header verification must be an object, got {v!r}"]
        missing = [k for k in VERIFICATION_KEYS if k not in v]
        unknown = sorted(set(v) - set(VERIFICATION_KEYS))
        if missing:
            errs.append(f"header verification is missing key(s) {', '.join(missing)}")
        if unknown:
            errs.append(f"header verification has unknown key(s) {', '.join(unknown)}")
        for k, check in _CHECKS.items():
            if k in v and not check(v[k]):
                errs.append(f"header verification.{k} must be {VERIFICATION_KEYS[k]}, got {str(v[k])[:60]}")
    return errs


# a block's binarizers in execution order (trace names, docs/integer_model.md §12)
_TAP_ORDER = ("ln1.bits", "q.bits", "k.bits", "q.low", "q.high", "k.low", "k.high", "v.planes", "a.planes",
              "proj.bits", "ln2.bits", "fc1.bits")


def _tap_key(name: str) -> tuple:
    _, i, rest = name.split(".", 2) if name.startswith("blocks.") else ("", "0", name)
    return (int(i) if i.isdigit() else 0, _TAP_ORDER.index(rest) if rest in _TAP_ORDER else len(_TAP_ORDER), name)


def verification_lines(header: dict) -> list[str]:
    """The header's verification figures as text (gsbsim info); [] when the file has none."""
    v = header.get("verification")
    if not v:
        return []
    pct = lambda x: f"{100 * x:.3f}%"    # noqa: E731
    top = "" if v["int_top1"] is None else (
        f"float top-1 {pct(header['float_top1']) if header.get('float_top1') is not None else '?'}, "
        f"integer top-1 {pct(v['int_top1'])}, ")
    tried = [str(c.get("frac_bits")) for c in v["candidates"]]
    out = [f"verification (float model vs this file at export, docs/integer_model.md §11):",
           f"  {v['images']} {v['data']} images: {top}prediction agreement {pct(v['agreement'])}, "
           f"float heads on the integer stream {pct(v['pred_teacher_forced'])}",
           f"  image-independent bits (cls/dist, block 0): "
           f"{'exact' if v['constant_bits_flipped'] == 0 else str(v['constant_bits_flipped']) + ' flipped'}; "
           f"frac_bits tried {', '.join(tried) or '-'}, chosen {header['frac_bits']}",
           f"  {'equal bits per binarizer':<26} {'teacher-forced':>15} {'end to end':>12}"]
    tf, e2e = v["bits_teacher_forced"], v["bits_end_to_end"]
    for name in sorted(tf, key=_tap_key):
        out.append(f"  {name:<26} {pct(tf[name]):>15} {pct(e2e.get(name, float('nan'))):>12}")
    if "source_sha256" in header:
        out.append(f"  exported from float weights sha256 {header['source_sha256']}")
    return out
