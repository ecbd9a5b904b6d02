"""The folding table of docs/hls.md §5 ("Every stage foldable"), measured again in one command.

For each (shape, target frame rate): ``gsbsim fold``'s greedy search (gsbsim/hw/fold_search.py),
the cycle model's II and the process that sets it, the resource estimate of every part (MVAUs
with the yosys-calibrated popcount, every other process, FIFOs, buffers: gsbsim/hw/resources.py),
and the cycle-level simulation of the process network (gsbsim/hw/cycle_sim.py) at the
deadlock-free minimal FIFO depths and with FIFOs sized by simulation. ``--highest`` also bisects
for the highest target the search reaches. Nothing here is timed: every figure is a
deterministic function of the shape and the code (the models' weights do not enter).

    python benchmarks/foldings.py                       # digits and deit_tiny rows, ~1-3 minutes
    python benchmarks/foldings.py --only digits --highest

C-simulation of a row is a separate command (minutes for deit_tiny): ``gsbsim hls --model M
--folding F --out P`` then ``gsbsim csim P --images 4``; ``--write DIR`` saves each model and
folding there for it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from gsbsim.cli.signals import guarded
from gsbsim.format.model_file import save_model
from gsbsim.format.random_model import random_model
from gsbsim.hw.costs import header_for_shape
from gsbsim.hw.cycle_sim import simulate, size_fifos
from gsbsim.hw.fold_search import search, to_json
from gsbsim.hw.folding import FoldingError
from gsbsim.hw.process_network import build_network

SHAPES = {
    "digits": dict(img_size=8, patch_size=4, in_chans=1, embed_dim=96, depth=4, num_heads=3, mlp_hidden=384,
                   num_classes=10, groups=3),
    "deit_tiny": dict(img_size=224, patch_size=16, in_chans=3, embed_dim=192, depth=12, num_heads=3,
                      mlp_hidden=768, num_classes=1000, groups=3),
}
TARGETS = {"digits": (10_000, 200_000), "deit_tiny": (100, 1_000)}
IMAGES = {"digits": 6, "deit_tiny": 4}
CLOCK_MHZ = 200.0


def highest(header, lo: float, hi: float) -> float:
    """The largest target (to 0.1 %) the search reaches, by bisection between lo (reached) and hi."""
    while hi / lo > 1.001:
        mid = (lo * hi) ** 0.5
        try:
            search(header, mid, CLOCK_MHZ)
            lo = mid
        except FoldingError:
            hi = mid
    return lo


def row(name: str, header, target: float, write: Path | None) -> dict:
    t0 = time.perf_counter()
    r = search(header, target, CLOCK_MHZ)
    net = build_network(header, r.folding)
    minimal = simulate(net, IMAGES[name])
    depths, _ = size_fifos(net, IMAGES[name])
    sized = simulate(net, IMAGES[name], depths=depths)
    res = r.resources
    if write is not None:
        (write / f"{name}_{target:.0f}.json").write_text(json.dumps(to_json(header, r.folding), indent=1) + "\n")
    return {"model": name, "target": target, "ii": r.cycles.ii, "by": r.cycles.bottleneck,
            "fps": CLOCK_MHZ * 1e6 / r.cycles.ii, "lut": res.lut, "bram18": res.bram18, "dsp": res.dsp,
            "mvau_lut": res.parts["mvau"]["lut"], "min_ii": minimal.ii, "sized_ii": sized.ii,
            "bound": minimal.bound["ii"], "bound_by": minimal.bound["process"], "deadlock": minimal.deadlock,
            "fifo_words": sum(depths.values()), "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=sorted(SHAPES), help="one shape only")
    ap.add_argument("--highest", action="store_true", help="also bisect for the highest reachable target")
    ap.add_argument("--write", type=Path, help="save each model (.npz) and folding (.json) in this folder")
    a = ap.parse_args(argv)
    names = [a.only] if a.only else list(SHAPES)
    if a.write:
        a.write.mkdir(parents=True, exist_ok=True)
    print("| model | target (frames/s at 200 MHz) | II (set by), frames/s | estimate: LUT (MVAUs), BRAM18, DSP "
          "| simulated II: minimal / sized FIFOs (bound, process) | sized FIFO words |")
    print("|---|---|---|---|---|---|")
    for name in names:
        header = header_for_shape(**SHAPES[name])
        if a.write:
            m = random_model(np.random.default_rng(0), **SHAPES[name])
            save_model(a.write / f"{name}.npz", m.header, m.arrays)
        targets = list(TARGETS[name])
        if a.highest:
            targets.append(highest(header, targets[-1], targets[-1] * 1000))
        for t in targets:
            x = row(name, header, t, a.write)
            print(f"| {name} | {t:,.0f} | {x['ii']:,} (`{x['by']}`), {x['fps']:,.0f} | {x['lut']:,} ({x['mvau_lut']:,}), "
                  f"{x['bram18']:,}, {x['dsp']:,} | {x['min_ii']:,.0f} / {x['sized_ii']:,.0f} ({x['bound']:,}, "
                  f"`{x['bound_by']}`){' DEADLOCK' if x['deadlock'] else ''} | {x['fifo_words']:,} |", flush=True)
            print(f"    ({x['seconds']:.1f} s)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(guarded("foldings.py", main))   # Ctrl-C and a closed pipe: one line, no traceback
