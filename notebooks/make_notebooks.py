"""Writes the project's notebooks from the cell sources below (outputs stripped).

    python notebooks/make_notebooks.py

Keeping the sources here (not hand-edited JSON) makes reviews readable; the tests execute
the written .ipynb files with small settings (GSBSIM_NB_SMALL=1) so they never rot.
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

HARDWARE = [
    new_markdown_cell("""# Hardware costs of a binary DeiT: folding vs cycles vs LUTs

What does GSB's extra attention planes cost on an FPGA, and how does the folding (PE output
lanes × SIMD input lanes per matrix-vector unit) trade cycles for LUTs? Everything here is
gsbsim's cost model (docs/costs.md): FINN's cycle model (MH/PE)·⌈MW/SIMD⌉ per vector at II=1
and the FINN-R LUT/BRAM **estimates** (labelled as such: not synthesis results)."""),
    new_code_cell("""import os
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from gsbsim.hw import costs, folding, resources

SMALL = os.environ.get("GSBSIM_NB_SMALL") == "1"   # the tests run a smaller sweep
shape = dict(img_size=224, patch_size=16, in_chans=3, embed_dim=192, depth=12, num_heads=3,
             mlp_hidden=768, num_classes=1000)      # DeiT-Tiny
plain = costs.header_for_shape(**shape, groups=1)
gsb = costs.header_for_shape(**shape, groups=3)"""),
    new_markdown_cell("## Operations: what GSB's 3×3 plane pairs cost"),
    new_code_cell("""for name, h in (("1-plane binary attention", plain), ("GSB, 3 groups", gsb)):
    r = costs.count(h)
    print(f"{name:26s} BOPs {r.bops:.3e}  FLOPs {r.flops:.3e}  OPs {r.ops:.3e}  "
          f"model {r.model_bytes / 1e6:.2f} MB")
by = costs.count(gsb).by_op()
print({k: f"{v['bops']:.2e}" for k, v in by.items() if v.get('bops')})"""),
    new_markdown_cell("""## Every binary method: operations and cycles at one folding

`bit`, `sign` and `reactnet` have GSB's G=1 matmuls (reactnet adds elementwise activation
units); `didb` adds a second Q·Kᵀ per head (HFSC) and the DIBA correction (docs/didb.md §7)."""),
    new_code_cell("""rows = []
for method in ("gsb", "bit", "sign", "reactnet", "didb"):
    h = costs.header_for_shape(**shape, groups=3 if method == "gsb" else 1, method=method)
    r = costs.count(h)
    rep = folding.cycle_report(h, folding.global_folding(h, 4, 32), clock_mhz=200)
    rows.append((method, r.bops, r.ops, sum(r.elementwise.values()), rep.ii, rep.latency))
    print(f"{method:9s} BOPs {r.bops:.3e}  OPs {r.ops:.3e}  elementwise {rows[-1][3]:.3e}  "
          f"II {rep.ii:>9,d}  latency {rep.latency:>10,d} cycles (PE 4, SIMD 32)")
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar([r[0] for r in rows], [r[2] for r in rows])
ax.set_ylabel("OPs per image (BOPs/64 + FLOPs)")
ax.set_title("DeiT-Tiny shape: OPs per method")
fig.savefig("methods_ops.png", dpi=100)"""),
    new_markdown_cell("## Folding sweep: frames/s vs estimated LUTs"),
    new_code_cell("""grid = [1, 4, 16] if SMALL else [1, 2, 4, 8, 16, 32, 64]
points = []
for pe in grid:
    for simd in grid:
        rep = folding.cycle_report(gsb, folding.global_folding(gsb, pe, simd), clock_mhz=200)
        est = resources.estimate(rep)
        points.append((pe, simd, rep.fps, est.lut, rep.bottleneck))
for pe, simd, fps, lut, neck in points[:5]:
    print(f"PE={pe:3d} SIMD={simd:3d}  {fps:9.1f} frames/s  ~{lut:8d} LUT (estimate)  bottleneck {neck}")
fig, ax = plt.subplots(figsize=(6, 4))
ax.scatter([p[3] for p in points], [p[2] for p in points])
ax.set_xscale("log"); ax.set_yscale("log")
ax.set_xlabel("LUTs (FINN-R estimate)"); ax.set_ylabel("frames/s at 200 MHz")
ax.set_title("GSB DeiT-Tiny: global PE×SIMD foldings")
fig.savefig("folding_sweep.png", dpi=100)
best = max(points, key=lambda p: p[2] / p[3])
print("best frames/s per LUT:", best[:2])"""),
    new_markdown_cell("""The slowest layer sets the initiation interval (dataflow), so a uniform folding wastes
LUTs on layers that are not the bottleneck: FINN balances per-layer foldings, and so can a
folding file (`gsbsim run --folding FILE`)."""),
]

WALKTHROUGH = [
    new_markdown_cell("""# The whole chain on digits: train → export → simulate → costs → HLS C-sim

Each step is the command a user would type (`python -m reference.train`, `python -m
reference.export`, `gsbsim run`, `gsbsim hls`, `gsbsim csim`), called here through the same
`main` functions. With `GSBSIM_NB_SMALL=1` (the tests) training is cut to one epoch on a subset."""),
    new_code_cell("""import json, os
from pathlib import Path
import numpy as np
from reference import export, agreement
from reference.train.entry import main as train_main
from gsbsim import cli

SMALL = os.environ.get("GSBSIM_NB_SMALL") == "1"
out = Path("runs_nb/digits")
quick = ["--epochs", "1", "--limit-train", "128"] if SMALL else []"""),
    new_markdown_cell("## 1. Train teacher → stage 1 → stage 2 (DeiT hard distillation)"),
    new_code_cell("""assert train_main(["--stage", "all", "--out", str(out), "--no-progress", *quick]) == 0
for stage in ("teacher", "stage1", "stage2"):
    s = json.loads((out / stage / "summary.json").read_text())
    print(f"{stage:8s} val {s['best_val_acc']:.2f}%  test {s['test_acc']:.2f}%")"""),
    new_markdown_cell("## 2. Export the integer model and check it against the float model"),
    new_code_cell("""ckpt, model = str(out / "stage2" / "best.pt"), str(out / "model.npz")
assert export.main(["--checkpoint", ckpt, "--out", model]) == 0
assert agreement.main(["--checkpoint", ckpt, "--model", model, "--layers", "16"]) == 0"""),
    new_markdown_cell("## 3. Bit-exact simulation and the cost report"),
    new_code_cell("""assert cli.main(["run", "--model", model, "--count-ops", "--plot", "costs.png"]) == 0"""),
    new_markdown_cell("## 4. HLS project and C-simulation, bit-exact against gsbsim"),
    new_code_cell("""prj = str(out / "hls")
assert cli.main(["hls", "--model", model, "--out", prj, "--pe", "4", "--simd", "16"]) == 0
assert cli.main(["csim", prj, "--images", "2" if SMALL else "8"]) == 0"""),
]


def write(name: str, cells) -> Path:
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    path = HERE / name
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    for name, cells in (("hardware_costs.ipynb", HARDWARE), ("walkthrough.ipynb", WALKTHROUGH)):
        print("wrote", write(name, cells))
