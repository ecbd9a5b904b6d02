"""``gsbsim cycles``: the cycle-level simulation of a model's generated dataflow, as a report.

Builds the process network that ``gsbsim hls`` would generate for the model and folding, or
did generate for a project (``--project DIR``: its project.json's header, folding and FIFO
depths) (gsbsim/hw/process_network.py), simulates it (gsbsim/hw/cycle_sim.py) and prints the
analytic bound, the achieved II, the latency, frames per second at the clock and the processes
that stalled longest; ``--size-fifos`` adds the FIFO depths that reach the bound (FINN's method),
the depths ``gsbsim hls --size-fifos`` emits.  Both commands take the depths from
gsbsim/hw/fifo_plan.py.
A separate command rather than a ``gsbsim run`` option: it needs no data, only the header and
the folding, and it is about the HLS design (FIFO depths, deadlock), as ``hls`` and ``csim`` are.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from gsbsim.hw import fifo_plan
from gsbsim.hw.cycle_sim import SimResult, simulate
from gsbsim.hw.fifo_plan import FifoDepths
from gsbsim.hw.process_network import Network

__all__ = ["run_cycles", "depths_line"]


def _line(label: str, cycles: float, note: str = "") -> str:
    return f"{label:<18}{cycles:>14,.0f} cycles{note}"


def _summary(r: SimResult, clock: float) -> list[str]:
    b = r.bound["ii"]
    return [_line("simulated II", r.ii, f" per image = {r.fps:,.0f} frames/s at {clock:g} MHz "
                  f"({r.ii / b:.2f} x the bound)"),
            _line("latency", r.latency, f" = {r.latency / clock:,.1f} us (image 0, empty pipeline)")]


def depths_line(record: Mapping[str, Any], seconds: float = 0.0) -> str:
    """A choice of FIFO depths (``FifoDepths.to_json``, project.json's record) in words: how it
    was made, the words in all (gsbsim hls and cycles print it)."""
    if record["how"] == "minimal":
        return f"FIFO depths: the deadlock-free minimum, {record['words']:,} words"
    took = f" in {seconds:.1f} s" if seconds else ""
    return (f"FIFO depths: sized by cycle simulation over {record['images']} images{took}, each at least its "
            f"deadlock-free minimum: {record['words']:,} words (minimum {record['minimal_words']:,})")


def run_cycles(net: Network, images: int, clock_mhz: float, depth_cap: int | None, size: bool,
               emitted: FifoDepths | None = None) -> tuple[int, list[str], dict]:
    """(exit status, report lines, JSON object): 0 when the simulation finished, 1 on a deadlock.
    ``emitted``: the depths simulated first (a project's); default the minimum ``gsbsim hls`` emits."""
    emitted = emitted or fifo_plan.minimal(net)
    t0 = time.perf_counter()
    r = simulate(net, images, depths=emitted.depths, depth_cap=depth_cap, clock_mhz=clock_mhz)
    secs = time.perf_counter() - t0
    cap = f", every FIFO at most {depth_cap} deep" if depth_cap else ""
    words = sum(min(d, depth_cap or d) for d in emitted.depths.values())
    out = [f"process network: {len(net.processes)} processes, {len(emitted.depths)} FIFOs "
           f"({words:,} words{cap}), {len(net.pipos)} PIPOs; "
           f"{images} images simulated in {r.cycles:,} cycles ({secs:.1f} s)",
           depths_line(emitted.to_json()),
           _line("analytic bound", r.bound["ii"], f" per image (largest process: {r.bound['process']})")]
    js = {"network": {"processes": len(net.processes), "fifos": dict(emitted.depths), "pipos": len(net.pipos)},
          "fifo_depths": {"how": emitted.how, "images": emitted.images, "words": emitted.words},
          "emitted": r.to_dict()}
    if r.deadlock:
        return 1, out + ["FAIL: " + r.deadlock[0]] + r.deadlock[1:], js
    out += _summary(r, clock_mhz)
    out.append("most stalled (cycles over the run: read = empty input FIFO, write = full output FIFO, "
               "pipo = waiting for a PIPO):")
    out += [f"  {n:<30}{s:>12,}  {why}" for n, s, why in r.top_stalled(5)]
    out.append("most held back by their consumers (full output FIFO):")
    out += [f"  {n:<30}{s:>12,}  {why}" for n, s, why in r.top_stalled(5, ("write",))]
    if size:
        sized = fifo_plan.sized(net, images)     # what `gsbsim hls --size-fifos --sizing-images K` emits
        rs = simulate(net, images, depths=sized.depths, clock_mhz=clock_mhz)
        out.append(f"FIFOs sized by simulation (unbounded, input paced at the bound; largest occupancy, at least "
                   f"the deadlock-free minimum): {sized.words:,} words")
        out += ["  " + x for x in _summary(rs, clock_mhz)]
        grown = {k: v for k, v in sized.depths.items() if v > emitted.depths[k]}
        rows = [f"  {k:<30}{emitted.depths[k]:>8} -> {v:,}" for k, v in grown.items()]
        out += rows[:12] + ([f"  ... {len(rows) - 12} more (--json lists every depth)"] if len(rows) > 12 else [])
        js["sized"] = {"depths": sized.depths, **rs.to_dict()}
    return 0, out, js
