"""FINN folding and the cycle model of a layer-by-layer dataflow accelerator.

A matrix-vector unit (MVAU) with PE output lanes and SIMD input lanes needs, per input
vector, (MH / PE) * ceil(MW / SIMD) cycles at II = 1 (MH % PE == 0; MW is zero-padded up
to a multiple of SIMD). A layer sees ``vectors`` input vectors ``repeats`` times (heads, and
for A.V also the G x G plane pairs, computed one after the other). The dataflow's
initiation interval is its slowest layer; its latency (no overlap, FINN's pessimistic
critical path) is the sum. The HLS C-simulation counts its pipelined iterations per layer
under the same names, and those counts must equal ``cycles``.
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

from gsbsim.hw.costs import Layer, layers

__all__ = ["FoldingError", "Fold", "FoldedLayer", "CycleReport", "mvau_cycles", "largest_divisor_le",
           "global_folding", "folding_from_dict", "load_folding", "cycle_report"]

DEFAULT_CLOCK_MHZ = 200.0


class FoldingError(ValueError):
    """A folding (file or arguments) that does not fit the model; the message says where."""


@dataclass(frozen=True)
class Fold:
    pe: int
    simd: int


def mvau_cycles(mh: int, mw: int, pe: int, simd: int, vectors: int = 1, repeats: int = 1) -> int:
    """FINN MVAU cycles at II=1: vectors * repeats * (MH/PE) * ceil(MW/SIMD)."""
    if min(mh, mw, pe, simd, vectors, repeats) < 1:
        raise FoldingError(f"MVAU sizes must be positive: mh={mh} mw={mw} pe={pe} simd={simd} "
                           f"vectors={vectors} repeats={repeats}")
    if mh % pe:
        raise FoldingError(f"PE {pe} does not divide MH {mh}")
    return vectors * repeats * (mh // pe) * math.ceil(mw / simd)


def largest_divisor_le(n: int, bound: int) -> int:
    """The largest divisor of n that is <= bound (at least 1)."""
    for p in range(min(n, max(bound, 1)), 0, -1):
        if n % p == 0:
            return p
    return 1


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FoldingError(f"{what} must be a positive integer, got {value!r}")
    return value


def global_folding(header: Mapping[str, Any], pe: int = 1, simd: int = 1) -> dict[str, Fold]:
    """One PE/SIMD for every layer, clipped per layer: PE to the largest divisor of MH that
    is <= pe, SIMD to min(simd, MW)."""
    pe = _positive_int(pe, "--pe")
    simd = _positive_int(simd, "--simd")
    return {l.name: Fold(largest_divisor_le(l.mh, pe), min(simd, l.mw)) for l in layers(header)}


def folding_from_dict(header: Mapping[str, Any], spec: Any, source: str = "folding") -> dict[str, Fold]:
    """Per-layer folding from ``{layer_name_or_glob: {"pe": p, "simd": s}}``.

    Keys are layer names (``blocks.3.fc1``) or shell-style patterns (``blocks.*.fc1``);
    an exact name wins over a pattern, and two patterns giving one layer different
    values is an error. Layers not named get PE = SIMD = 1. Nothing is clipped here: a PE
    that does not divide MH, a SIMD above MW, a key matching no layer, or a value that is
    not a positive integer is an error naming ``source``.
    """
    if not isinstance(spec, Mapping):
        raise FoldingError(f"{source}: expected a JSON object {{layer: {{\"pe\": P, \"simd\": S}}}}, "
                           f"got {type(spec).__name__}")
    ls = {l.name: l for l in layers(header)}
    chosen: dict[str, tuple[Fold, str, bool]] = {}
    for key, entry in spec.items():
        if not isinstance(entry, Mapping) or set(entry) - {"pe", "simd"} or not entry:
            raise FoldingError(f"{source}: entry {key!r} must be an object with keys 'pe' and/or "
                               f"'simd', got {entry!r}")
        exact = key in ls
        matches = [key] if exact else fnmatch.filter(ls, key)
        if not matches:
            raise FoldingError(f"{source}: unknown layer {key!r} (layers: patch, blocks.<i>."
                               f"{{qkv,qk,av,proj,fc1,fc2}} for i < {(len(ls) - 2) // 6}, head)")
        pe = _positive_int(entry.get("pe", 1), f"{source}: {key!r} pe")
        simd = _positive_int(entry.get("simd", 1), f"{source}: {key!r} simd")
        for name in matches:
            l = ls[name]
            if l.mh % pe:
                raise FoldingError(f"{source}: {key!r}: pe {pe} does not divide MH = {l.mh} of {name}")
            if simd > l.mw:
                raise FoldingError(f"{source}: {key!r}: simd {simd} exceeds MW = {l.mw} of {name}")
            fold = Fold(pe, simd)
            prev = chosen.get(name)
            if prev is not None and prev[2] == exact and prev[0] != fold:
                raise FoldingError(f"{source}: {key!r} and {prev[1]!r} give {name} different folding")
            if prev is None or exact or not prev[2]:
                chosen[name] = (fold, key, exact)
    return {name: chosen[name][0] if name in chosen else Fold(1, 1) for name in ls}


def load_folding(header: Mapping[str, Any], path: str | os.PathLike) -> dict[str, Fold]:
    """Read a folding JSON file (see ``folding_from_dict``)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except FileNotFoundError:
        raise FoldingError(f"folding file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FoldingError(f"cannot read folding file {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise FoldingError(f"folding file {path} is not valid JSON: {e}") from None
    return folding_from_dict(header, spec, source=f"folding file {path}")


@dataclass(frozen=True)
class FoldedLayer:
    layer: Layer
    pe: int
    simd: int
    cycles: int


@dataclass
class CycleReport:
    """Per-layer cycles, initiation interval (slowest layer) and latency (sum)."""
    layers: list[FoldedLayer]
    clock_mhz: float

    @property
    def per_layer(self) -> dict[str, int]:
        return {f.layer.name: f.cycles for f in self.layers}

    @property
    def latency(self) -> int:
        return sum(f.cycles for f in self.layers)

    @property
    def ii(self) -> int:
        return max(f.cycles for f in self.layers)

    @property
    def bottleneck(self) -> str:
        return max(self.layers, key=lambda f: f.cycles).layer.name

    @property
    def fps(self) -> float:
        return self.clock_mhz * 1e6 / self.ii

    @property
    def latency_us(self) -> float:
        return self.latency / self.clock_mhz

    def to_dict(self) -> dict:
        return {"per_layer": self.per_layer, "total": self.latency, "latency": self.latency,
                "ii": self.ii, "bottleneck": self.bottleneck, "clock_mhz": self.clock_mhz,
                "fps": self.fps, "latency_us": self.latency_us,
                "folding": {f.layer.name: {"pe": f.pe, "simd": f.simd} for f in self.layers}}


def cycle_report(header: Mapping[str, Any], folding: Mapping[str, Fold] | None = None,
                 clock_mhz: float = DEFAULT_CLOCK_MHZ) -> CycleReport:
    """Cycles of every layer under ``folding`` (default: PE = SIMD = 1 everywhere)."""
    if not (isinstance(clock_mhz, (int, float)) and math.isfinite(clock_mhz) and clock_mhz > 0):
        raise FoldingError(f"--clock-mhz must be a positive number, got {clock_mhz!r}")
    folding = folding if folding is not None else global_folding(header, 1, 1)
    out = []
    for l in layers(header):
        if l.name not in folding:
            raise FoldingError(f"folding has no entry for layer {l.name}")
        f = folding[l.name]
        out.append(FoldedLayer(l, f.pe, f.simd,
                               mvau_cycles(l.mh, l.mw, f.pe, f.simd, l.vectors, l.repeats)))
    return CycleReport(out, float(clock_mhz))
