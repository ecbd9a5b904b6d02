"""FINN folding and the cycle model of the streaming dataflow accelerator (every process).

A matrix-vector unit (MVAU) with PE output lanes and SIMD input lanes needs, per input
vector, (MH / PE) * ceil(MW / SIMD) cycles at II = 1 (MH % PE == 0; MW is zero-padded up
to a multiple of SIMD). A layer sees ``vectors`` input vectors ``repeats`` times (heads, and
for A.V also the G x G plane pairs, computed one after the other). Every other process
(LayerNorm, residual, thresholds, softmax, planes, ...) is counted by gsbsim/hw/stages.py;
foldable stages take a PE (elements per cycle) under their process name, the residual
stream's writers (embed, proj_residual, fc2_residual) a PE = the lanes of their words.

The model's II is the largest count over all processes at one iteration per cycle: a lower
bound (``BOUND_IGNORES``). Latency is the sum over all processes (no overlap, FINN's
pessimistic critical path). The HLS C-simulation counts its pipelined iterations per process
under the same names, and those counts must equal ``per_process``.
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from gsbsim.hw.costs import Layer, layers
from gsbsim.hw.stages import lane_dims, pe_of, stage_dims, stage_iterations

__all__ = ["FoldingError", "Fold", "FoldedLayer", "CycleReport", "mvau_cycles", "largest_divisor_le",
           "global_folding", "folding_from_dict", "load_folding", "cycle_report", "BOUND_IGNORES"]

DEFAULT_CLOCK_MHZ = 200.0
# what the analytic II (slowest process at one iteration per cycle) leaves out: it is a lower bound
BOUND_IGNORES = ("pipeline fill, FIFO back-pressure between processes, loops whose II exceeds 1 "
                 "and the softmax's reciprocal divider")


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
    out = {l.name: Fold(largest_divisor_le(l.mh, pe), min(simd, l.mw)) for l in layers(header)}
    out.update({name: Fold(1, 1) for name in stage_dims(header)})   # --pe/--simd fold the MVAUs only
    return out


def folding_from_dict(header: Mapping[str, Any], spec: Any, source: str = "folding") -> dict[str, Fold]:
    """Per-process folding from ``{name_or_glob: {"pe": p, "simd": s}}``.

    Keys are layer names (``blocks.3.fc1``), foldable stage names (``blocks.3.value_planes``,
    ``pe`` only: elements per cycle; ``embed``, ``blocks.3.proj_residual``, ``blocks.3.fc2_residual``:
    lanes of the residual-stream words they write) or shell-style patterns (``blocks.*.fc1``); an exact
    name wins over a pattern, and two patterns giving one process different values is an
    error. Processes not named get PE = SIMD = 1. Nothing is clipped here: a PE that does not
    divide MH (a stage's dimension), a SIMD above MW, a SIMD for a stage, a key matching no
    process, or a value that is not a positive integer is an error naming ``source``.
    """
    if not isinstance(spec, Mapping):
        raise FoldingError(f"{source}: expected a JSON object {{layer: {{\"pe\": P, \"simd\": S}}}}, "
                           f"got {type(spec).__name__}")
    ls = {l.name: l for l in layers(header)}
    dims = {**stage_dims(header), **lane_dims(header)}
    names = [*ls, *dims]
    chosen: dict[str, tuple[Fold, str, bool]] = {}
    for key, entry in spec.items():
        if not isinstance(entry, Mapping) or set(entry) - {"pe", "simd"} or not entry:
            raise FoldingError(f"{source}: entry {key!r} must be an object with keys 'pe' and/or "
                               f"'simd', got {entry!r}")
        exact = key in names
        matches = [key] if exact else fnmatch.filter(names, key)
        if not matches:
            raise FoldingError(f"{source}: unknown layer {key!r} (layers: patch, blocks.<i>."
                               f"{{qkv,qk,av,proj,fc1,fc2}} for i < {(len(ls) - 2) // 6}, head; "
                               f"foldable stages: embed, blocks.<i>.{{{','.join(sorted({n.split('.')[-1] for n in dims if '.' in n}))}}})")
        pe = _positive_int(entry.get("pe", 1), f"{source}: {key!r} pe")
        simd = _positive_int(entry.get("simd", 1), f"{source}: {key!r} simd")
        for name in matches:
            if name in dims:
                dim, what = dims[name]
                if "simd" in entry:
                    raise FoldingError(f"{source}: {key!r}: {name} is a stage, it takes 'pe' only")
                if dim % pe:
                    raise FoldingError(f"{source}: {key!r}: pe {pe} does not divide {what} = {dim} of {name}")
            elif ls[name].mh % pe:
                raise FoldingError(f"{source}: {key!r}: pe {pe} does not divide MH = {ls[name].mh} of {name}")
            elif simd > ls[name].mw:
                raise FoldingError(f"{source}: {key!r}: simd {simd} exceeds MW = {ls[name].mw} of {name}")
            fold = Fold(pe, simd)
            prev = chosen.get(name)
            if prev is not None and prev[2] == exact and prev[0] != fold:
                raise FoldingError(f"{source}: {key!r} and {prev[1]!r} give {name} different folding")
            if prev is None or exact or not prev[2]:
                chosen[name] = (fold, key, exact)
    return {name: chosen[name][0] if name in chosen else Fold(1, 1) for name in names}


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

    @property
    def unit_cycles(self) -> int:
        """Cycles of one of the layer's ``units`` parallel processes (didb's two Q.K^T bands)."""
        return self.cycles // self.layer.units


@dataclass
class CycleReport:
    """Cycles per image of every process: the MVAU layers (``layers``) and the other stages
    (``stages``, gsbsim/hw/stages.py); II = the slowest process at one iteration per cycle (a
    lower bound, ``BOUND_IGNORES``), latency = the sum over all processes (no overlap)."""
    layers: list[FoldedLayer]
    clock_mhz: float
    stages: dict[str, int] = field(default_factory=dict)
    stage_pe: dict[str, int] = field(default_factory=dict)   # the foldable stages' PE

    @property
    def per_layer(self) -> dict[str, int]:
        return {f.layer.name: f.cycles for f in self.layers}

    @property
    def per_process(self) -> dict[str, int]:
        return {**self.per_layer, **self.stages}

    @property
    def latency(self) -> int:
        return sum(self.per_process.values())

    @property
    def per_unit(self) -> dict[str, int]:
        """Cycles of one process of each name: a layer split over ``units`` parallel processes
        (didb's two Q.K^T bands) takes its share; what the II is the maximum of."""
        return {**{f.layer.name: f.unit_cycles for f in self.layers}, **self.stages}

    @property
    def ii(self) -> int:
        return max(self.per_unit.values())

    @property
    def bottleneck(self) -> str:
        pu = self.per_unit
        return max(pu, key=lambda k: pu[k])

    @property
    def layer_ii(self) -> int:
        """The slowest MVAU alone (what the model reported before it counted every process)."""
        return max(f.unit_cycles for f in self.layers)

    @property
    def layer_bottleneck(self) -> str:
        return max(self.layers, key=lambda f: f.unit_cycles).layer.name

    @property
    def fps(self) -> float:
        return self.clock_mhz * 1e6 / self.ii

    @property
    def latency_us(self) -> float:
        return self.latency / self.clock_mhz

    def to_dict(self) -> dict:
        return {"per_layer": self.per_layer, "per_stage": self.stages, "total": self.latency,
                "latency": self.latency, "ii": self.ii, "bottleneck": self.bottleneck,
                "layer_ii": self.layer_ii, "layer_bottleneck": self.layer_bottleneck,
                "clock_mhz": self.clock_mhz, "fps": self.fps, "latency_us": self.latency_us,
                "bound": f"II = slowest process at one iteration per cycle, a lower bound: ignores "
                         f"{BOUND_IGNORES}; latency = sum over all processes (no overlap)",
                "folding": {**{f.layer.name: {"pe": f.pe, "simd": f.simd} for f in self.layers},
                            **{k: {"pe": v} for k, v in self.stage_pe.items()}}}


def cycle_report(header: Mapping[str, Any], folding: Mapping[str, Fold] | None = None,
                 clock_mhz: float = DEFAULT_CLOCK_MHZ) -> CycleReport:
    """Cycles of every process under ``folding`` (default: PE = SIMD = 1 everywhere; a
    foldable stage the folding does not name has PE 1)."""
    if not (isinstance(clock_mhz, (int, float)) and math.isfinite(clock_mhz) and clock_mhz > 0):
        raise FoldingError(f"--clock-mhz must be a positive number, got {clock_mhz!r}")
    folding = folding if folding is not None else global_folding(header, 1, 1)
    out = []
    for l in layers(header):
        if l.name not in folding:
            raise FoldingError(f"folding has no entry for layer {l.name}")
        f = folding[l.name]
        cycles = mvau_cycles(l.mh, l.mw, f.pe, f.simd, l.vectors, l.repeats)
        if l.op == "qk":   # gsb/attention_qk.hpp copies each head's query rows into its input FIFO first
            cycles += l.repeats * l.vectors * math.ceil(l.mw / f.simd)
        out.append(FoldedLayer(l, f.pe, f.simd, cycles))
    stage_pe = {}
    lanes = lane_dims(header)
    for name, (dim, what) in {**stage_dims(header), **lanes}.items():
        pe = pe_of(folding, name)
        if dim % pe:
            raise FoldingError(f"pe {pe} does not divide {what} = {dim} of {name}")
        if name not in lanes or pe > 1:   # the residual stream's lanes: reported where folded
            stage_pe[name] = pe
    return CycleReport(out, float(clock_mhz), stage_iterations(header, folding), stage_pe)
