"""``gsbsim fold``: find a folding that meets a frame rate with the least estimated resources.

FINN's SetFolding, over every process of the dataflow: start from PE = SIMD = 1 everywhere
and, while the cycle model's II (gsbsim/hw/folding.py, the slowest process at one iteration
per cycle) exceeds the target, raise the parallelism of the slowest process by one step:

* an MVAU layer: SIMD to the next divisor of MW, and once SIMD = MW, PE to the next divisor
  of MH (SIMD first, as FINN does: the LUT estimate grows less per cycle saved);
* a foldable stage (gsbsim/hw/stages.py ``FOLDABLE``): PE to the next divisor of its dimension;
* a stage that walks a layer's output words (``stages.driver``: qkv split, thresholds, act
  units, ...; softmax once its own PE is N): that layer's PE (SIMD) to its next divisor;
* a residual-stream process (``stages.knobs``: embed, forks, LayerNorms, residual adds, final
  LayerNorm): one of the parameters its count depends on (the lanes of the words it reads or
  writes, its layer's PE or SIMD) to its next divisor, the one that lowers its count most
  (ties: the input's lanes first); where the count is a gcd of them (the residual adds, embed)
  and no single step lowers it, all of them to their lcm with the next divisor of E above the gcd.

Only the slowest process grows, so every process ends at the least parallelism that keeps it
within the target: the least resources this greedy search can give (not a proven optimum).
When the slowest process cannot grow (an unfoldable stage, or a layer at SIMD = MW and
PE = MH) the target is out of reach and the error names the process.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from gsbsim.hw.costs import layers
from gsbsim.hw.folding import CycleReport, Fold, FoldingError, cycle_report, global_folding
from gsbsim.hw.resources import ResourceReport, estimate
from gsbsim.hw.stages import driver, knobs, lane_dims, stage_dims

__all__ = ["FoldResult", "search", "to_json"]


@dataclass
class FoldResult:
    folding: dict[str, Fold]
    cycles: CycleReport
    resources: ResourceReport
    target_ii: int
    steps: int


def _divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


def _next(values: list[int], now: int) -> int | None:
    return next((v for v in values if v > now), None)


def _lanes_step(header: Mapping[str, Any], fold: dict[str, Fold], name: str, now: int,
                clock_mhz: float) -> dict[str, Fold] | None:
    """The folding one step up for residual-stream process ``name`` (count ``now``), or None."""
    ks, joint = knobs(header, name)

    def setting(key: str, what: str, v: int) -> dict[str, Fold]:
        f = fold.get(key, Fold(1, 1))
        return {**fold, key: Fold(v, f.simd) if what == "pe" else Fold(f.pe, v)}

    def count(c: dict[str, Fold]) -> int:
        return cycle_report(header, c, clock_mhz).per_process[name]

    best, best_count = None, now
    for key, what, dim in ks:
        cur = getattr(fold.get(key, Fold(1, 1)), what)
        nxt = _next(_divisors(dim), cur)
        if nxt is not None:
            c = setting(key, what, nxt)
            if count(c) < best_count:
                best, best_count = c, count(c)
    if best is None and joint:
        g = math.gcd(*(getattr(fold.get(k, Fold(1, 1)), w) for k, w, _ in ks))
        v = _next(_divisors(ks[0][2]), g)
        if v is not None:
            c = dict(fold)
            for key, what, _ in ks:
                f = c.get(key, Fold(1, 1))
                c[key] = Fold(math.lcm(f.pe, v), f.simd) if what == "pe" else Fold(f.pe, math.lcm(f.simd, v))
            best = c if count(c) < now else None
    return best


def search(header: Mapping[str, Any], target_fps: float, clock_mhz: float,
           max_lut: int | None = None) -> FoldResult:
    """The folding found by the greedy search (FoldingError when the target cannot be met)."""
    if not (isinstance(target_fps, (int, float)) and math.isfinite(target_fps) and target_fps > 0):
        raise FoldingError(f"--target-fps must be a positive number, got {target_fps!r}")
    cyc = cycle_report(header, None, clock_mhz)        # validates the clock
    target_ii = math.floor(clock_mhz * 1e6 / target_fps)
    if target_ii < 1:
        raise FoldingError(f"--target-fps {target_fps:g} needs less than one cycle per image at "
                           f"{clock_mhz:g} MHz")
    fold = global_folding(header, 1, 1)
    ls = {l.name: l for l in layers(header)}
    dims = stage_dims(header)
    steps = 0
    while cyc.ii > target_ii:
        name = cyc.bottleneck
        if knobs(header, name)[0]:
            stepped = _lanes_step(header, fold, name, cyc.ii, clock_mhz)
            if stepped is None:
                raise FoldingError(f"cannot reach {target_fps:g} frames/s at {clock_mhz:g} MHz (II <= {target_ii} "
                                   f"cycles): {name} needs {cyc.ii} cycles with every parameter it depends on "
                                   f"({', '.join(f'{k} {w}' for k, w, _ in knobs(header, name)[0])}) at its largest")
            fold = stepped
            steps += 1
            cyc = cycle_report(header, fold, clock_mhz)
            continue
        stage_pe = _next(_divisors(dims[name][0]), fold[name].pe) if name in dims else None
        layer, what = (name, None) if name in ls else driver(name) or (None, None)
        if stage_pe is not None:
            fold[name] = Fold(stage_pe, 1)
        elif layer is not None:
            f, l = fold[layer], ls[layer]
            simd = _next(_divisors(l.mw), f.simd) if what in (None, "simd") else None
            pe = None if simd or what == "simd" else _next(_divisors(l.mh), f.pe)
            if simd is None and pe is None:
                raise FoldingError(f"cannot reach {target_fps:g} frames/s at {clock_mhz:g} MHz (II <= {target_ii} "
                                   f"cycles): {name} needs {cyc.ii} cycles and layer {layer} is at its "
                                   f"largest {what or 'PE and SIMD'} (PE {f.pe}, SIMD {f.simd})")
            fold[layer] = Fold(pe or f.pe, simd or f.simd)
        elif name in dims:
            raise FoldingError(f"cannot reach {target_fps:g} frames/s at {clock_mhz:g} MHz (II <= {target_ii} "
                               f"cycles): stage {name} is fully parallel (PE {fold[name].pe}) and needs "
                               f"{cyc.ii} cycles")
        else:
            raise FoldingError(f"cannot reach {target_fps:g} frames/s at {clock_mhz:g} MHz (II <= {target_ii} "
                               f"cycles): process {name} has no parallelism parameter yet and needs {cyc.ii} "
                               f"cycles ({cyc.clock_mhz * 1e6 / cyc.ii:.6g} frames/s at most)")
        steps += 1
        cyc = cycle_report(header, fold, clock_mhz)
    res = estimate(cyc, header)   # every process, FIFO and buffer (gsbsim/hw/resources.py)
    if max_lut is not None and res.lut > max_lut:
        raise FoldingError(f"the folding for {target_fps:g} frames/s at {clock_mhz:g} MHz needs {res.lut} LUT "
                           f"({res.label}), above --max-lut {max_lut}")
    return FoldResult(fold, cyc, res, target_ii, steps)


def to_json(header: Mapping[str, Any], folding: Mapping[str, Fold]) -> dict[str, dict[str, int]]:
    """The folding file (gsbsim.hw.folding.folding_from_dict): every layer, the stages above PE 1."""
    out: dict[str, dict[str, int]] = {l.name: {"pe": folding[l.name].pe, "simd": folding[l.name].simd}
                                      for l in layers(header)}
    out.update({k: {"pe": folding[k].pe} for k in [*stage_dims(header), *lane_dims(header)]
                if k in folding and folding[k].pe > 1})
    return out
