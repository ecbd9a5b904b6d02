"""``gsbsim cycles``: the cycle-level simulation of a model's generated dataflow, as a report.

Builds the process network that ``gsbsim hls`` would generate for the model and folding
(gsbsim/hw/process_network.py), simulates it (gsbsim/hw/cycle_sim.py) and prints the analytic
bound, the achieved II, the latency, frames per second at the clock and the processes that
stalled longest; ``--size-fifos`` adds the FIFO depths that reach the bound (FINN's method).
A separate command rather than a ``gsbsim run`` option: it needs no data, only the header and
the folding, and it is about the HLS design (FIFO depths, deadlock), as ``hls`` and ``csim`` are.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from gsbsim.hw.cycle_sim import SimResult, simulate, size_fifos
from gsbsim.hw.folding import Fold
from gsbsim.hw.process_network import PORTS, build_network

__all__ = ["run_cycles"]


def _line(label: str, cycles: float, note: str = "") -> str:
    return f"{label:<18}{cycles:>14,.0f} cycles{note}"


def _summary(r: SimResult, clock: float) -> list[str]:
    b = r.bound["ii"]
    return [_line("simulated II", r.ii, f" per image = {r.fps:,.0f} frames/s at {clock:g} MHz "
                  f"({r.ii / b:.2f} x the bound)"),
            _line("latency", r.latency, f" = {r.latency / clock:,.1f} us (image 0, empty pipeline)")]


def run_cycles(header: Mapping[str, Any], folding: Mapping[str, Fold], images: int, clock_mhz: float,
               depth_cap: int | None, size: bool) -> tuple[int, list[str], dict]:
    """(exit status, report lines, JSON object): 0 when the simulation finished, 1 on a deadlock."""
    net = build_network(header, folding)
    t0 = time.perf_counter()
    r = simulate(net, images, depth_cap=depth_cap, clock_mhz=clock_mhz)
    secs = time.perf_counter() - t0
    fifos = [fi for fi in net.fifos if fi.name not in PORTS]
    cap = f", every FIFO at most {depth_cap} deep" if depth_cap else ""
    out = [f"process network: {len(net.processes)} processes, {len(fifos)} FIFOs "
           f"({sum(min(fi.depth, depth_cap or fi.depth) for fi in fifos):,} words{cap}), {len(net.pipos)} PIPOs; "
           f"{images} images simulated in {r.cycles:,} cycles ({secs:.1f} s)",
           _line("analytic bound", r.bound["ii"], f" per image (largest process: {r.bound['process']})")]
    js = {"network": {"processes": len(net.processes), "fifos": {fi.name: fi.depth for fi in fifos},
                      "pipos": len(net.pipos)}, "emitted": r.to_dict()}
    if r.deadlock:
        return 1, out + ["FAIL: " + r.deadlock[0]] + r.deadlock[1:], js
    out += _summary(r, clock_mhz)
    out.append("most stalled (cycles over the run: read = empty input FIFO, write = full output FIFO, "
               "pipo = waiting for a PIPO):")
    out += [f"  {n:<30}{s:>12,}  {why}" for n, s, why in r.top_stalled(5)]
    out.append("most held back by their consumers (full output FIFO):")
    out += [f"  {n:<30}{s:>12,}  {why}" for n, s, why in r.top_stalled(5, ("write",))]
    if size:
        depths, _ = size_fifos(net, images)
        rs = simulate(net, images, depths=depths, clock_mhz=clock_mhz)
        out.append(f"FIFOs sized by simulation (unbounded, input paced at the bound; largest occupancy): "
                   f"{sum(depths.values()):,} words")
        out += ["  " + x for x in _summary(rs, clock_mhz)]
        grown = {k: v for k, v in depths.items() if v > net_depth(net, k)}
        rows = [f"  {k:<30}{net_depth(net, k):>8} -> {v:,}" for k, v in sorted(grown.items())]
        out += rows[:12] + ([f"  ... {len(rows) - 12} more (--json lists every depth)"] if len(rows) > 12 else [])
        js["sized"] = {"depths": depths, **rs.to_dict()}
    return 0, out, js


def net_depth(net, name: str) -> int:
    return next(fi.depth for fi in net.fifos if fi.name == name)
