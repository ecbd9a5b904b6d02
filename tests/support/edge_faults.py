"""Deliberately wrong kernels for the edge-case vector tests: each fault once in Python (a golden step
replaced, for golden == fast) and once in C++ (a patched copy of hls/include, for C-simulation).

Not a test module: imported as ``tests.support.edge_faults``.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from gsbsim.engine import golden, golden_ops
from gsbsim.format.conventions import isqrt


def _rounding_isqrt(v):
    r = isqrt(v)
    return r + (np.asarray(v, np.int64) - r * r > r)        # round(sqrt v) instead of floor


def _fc1_strict(acc, thr_hi, thr_lo):
    return ((acc > thr_hi) | (acc < thr_lo)).astype(np.uint8)  # > and < instead of >= and <=


def _argmax_last(logits):
    flipped = logits[:, ::-1]
    return (logits.shape[-1] - 1 - np.argmax(flipped, axis=-1)).astype(np.int64)   # the last of tied maxima


def _half_away_div_round(num, den):
    num, den = np.asarray(num, np.int64), np.asarray(den, np.int64)
    up = (2 * num + den) // (2 * den)
    return np.where(num < 0, -((-2 * num + den) // (2 * den)), up)   # -3.5 -> -4 instead of -3


def _value_planes_ge(vq, ratios, mask_stat):
    axes = (-1,) if mask_stat == "row" else (1, 2, 3)
    mx, mn = vq.max(axis=axes, keepdims=True), vq.min(axis=axes, keepdims=True)
    planes = [vq >= 0] + [(256 * vq >= r * mx) | (256 * vq <= r * mn) for r in ratios]   # >= and <=
    return np.stack(planes, axis=1).astype(np.uint8)


@dataclass(frozen=True)
class Fault:
    name: str
    module: object                 # where the golden engine looks the step up
    attr: str
    python: Callable
    header: str                    # file in hls/include/gsb
    cpp_old: str                   # exact text replaced in that file
    cpp_new: str
    first_trace: str               # the first traced tensor that must differ on an edge model
    masks: bool = False            # only models with mask planes (groups > 1) have the faulty step


FAULTS = (
    Fault("rounding isqrt", golden_ops, "isqrt", _rounding_isqrt, "layernorm.hpp",
          "    return int64_t(root);", "    return int64_t(root + (rem > root ? 1 : 0));", "blocks.0.ln1.bits"),
    Fault("fc1 > instead of >=", golden, "fc1_bits", _fc1_strict, "mvau_policies.hpp",
          "(dot[pe] >= hi[row]) || (dot[pe] <= lo[row])", "(dot[pe] > hi[row]) || (dot[pe] < lo[row])",
          "blocks.0.fc1.bits"),
    Fault("argmax keeps the last maximum", golden, "argmax_first", _argmax_last, "argmax.hpp",
          "word[pe] > best", "word[pe] >= best", "pred"),
    Fault("final LayerNorm rounds half away from zero", golden_ops, "div_round", _half_away_div_round,
          "layernorm.hpp", "quotient8(2 * num + den, 2 * den)",   # clamp(-floor(a/b)) = -1 - clamp(floor((a-b)/b))
          "(num < 0 ? -1 - quotient8(-2 * num + den - 2 * den, 2 * den) : quotient8(2 * num + den, 2 * den))", "head.q"),
    Fault("value mask >= instead of >", golden, "value_planes", _value_planes_ge, "value_planes.hpp",
          "(256 * v > r * hi) || (256 * v < r * lo)", "(256 * v >= r * hi) || (256 * v <= r * lo)",
          "blocks.0.v.planes", masks=True),
)

def plant_python(monkeypatch: pytest.MonkeyPatch, fault: Fault) -> None:
    monkeypatch.setattr(fault.module, fault.attr, fault.python)


def faulty_library(src: Path, dest: Path, faults: tuple[Fault, ...]) -> Path:
    """A copy of the kernel library (hls/include) with the faults' text replaced; its include folder."""
    shutil.copytree(src, dest)
    for f in faults:
        path = dest / "gsb" / f.header
        text = path.read_text()
        assert text.count(f.cpp_old) == 1, f"{f.name}: {f.cpp_old!r} is not once in {f.header}"
        path.write_text(text.replace(f.cpp_old, f.cpp_new))
    return dest
