"""Per-layer breakdown chart: OPs (BOPs/64 and FLOPs, stacked) and cycles of every layer, with
the II over every process of the dataflow (the layers and the other stages) as a line.

matplotlib is imported lazily with the Agg backend, so importing gsbsim never needs a
display and the CLI pays for matplotlib only when ``--plot`` is given.
"""
from __future__ import annotations

import os

from gsbsim.hw.costs import BOPS_PER_OP, CostReport
from gsbsim.hw.folding import CycleReport

__all__ = ["plot_breakdown"]


def plot_breakdown(costs: CostReport, cycles: CycleReport, path: str | os.PathLike,
                   title: str | None = None) -> str:
    """Write a two-panel PNG bar chart to ``path`` and return the path."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    names = [l.name for l in costs.layers]
    bops = [l.bops / BOPS_PER_OP for l in costs.layers]
    flops = [float(l.flops) for l in costs.layers]
    cyc = [cycles.per_layer[n] for n in names]
    x = range(len(names))
    width = max(6.0, 0.28 * len(names))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(width, 7), sharex=True)
    try:
        ax1.bar(x, bops, label="BOPs / 64", color="tab:blue")
        ax1.bar(x, flops, bottom=bops, label="FLOPs (8-bit MACs)", color="tab:orange")
        ax1.set_ylabel("OPs per image")
        ax1.set_title(title or f"OPs per layer (total {costs.ops:.4g} = BOPs/64 + FLOPs)", fontsize=10)
        ax1.legend()
        ax2.bar(x, cyc, color="tab:green", label="MVAU layer")
        ax2.axhline(cycles.ii, color="tab:red", linestyle="--",
                    label=f"II {cycles.ii}: slowest of all processes ({cycles.bottleneck})")
        ax2.legend(fontsize=7)
        ax2.set_ylabel("cycles per image")
        ax2.set_title(f"cycles per layer; II {cycles.ii}, latency {cycles.latency} (all processes), "
                      f"{cycles.fps:,.0f} frames/s at {cycles.clock_mhz:g} MHz\n"
                      f"lower bound: ignores fill, back-pressure, loops with II > 1, dividers", fontsize=9)
        ax2.set_xticks(list(x))
        ax2.set_xticklabels(names, rotation=90, fontsize=7)
        fig.tight_layout()
        path = os.fspath(path)
        fig.savefig(path, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path
