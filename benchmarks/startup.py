"""Start-up benchmark: ``gsbsim run`` on a digits model from a fresh process.

Usage:  .venv/bin/python benchmarks/startup.py [--repeats 7] [--model M.npz] [--no-write]

The model is --model, or a random model with the digits preset's shapes (8x8x1, patch 2,
E=96, depth 4, 3 heads, MLP 384, 10 classes, G=3; gsbsim.random_model, no torch needed:
start-up does not depend on the weights). Each run is a new Python process running
``python -m gsbsim run --model M --data digits`` (the 359 test images, fast engine):

* cached: Numba's on-disk cache already holds the compiled kernels (every run after the
  first one on a machine; cache=True everywhere, nothing is compiled per call);
* first run: an empty cache (NUMBA_CACHE_DIR pointed at a new folder), so the kernels are
  compiled once; this is what a fresh checkout or CI pays.

The run reads the digits split with gsbsim.digits (no torch import). Results are printed
and written to the "## Start-up" section of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow running from a checkout without installing gsbsim
    sys.path.insert(0, str(ROOT))

from benchmarks.kernels import machine, write_section  # noqa: E402

SECTION = "## Start-up"


def digits_sized_model(path: Path) -> Path:
    """A random model with the digits preset's shapes, saved at `path`."""
    from gsbsim.format.model_file import save_model
    from gsbsim.format.random_model import random_model

    m = random_model(np.random.default_rng(0), img_size=8, patch_size=2, in_chans=1, embed_dim=96, depth=4,
                     num_heads=3, mlp_hidden=384, num_classes=10, groups=3)
    save_model(path, dict(m.header, preset="digits"), m.arrays)
    return path


def run_once(model: Path, env: dict) -> float:
    """Seconds of one `python -m gsbsim run` process (checked to succeed)."""
    cmd = [sys.executable, "-m", "gsbsim", "run", "--model", str(model), "--data", "digits"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    spent = time.perf_counter() - t0
    if out.returncode != 0 or "top-1 accuracy" not in out.stdout:
        raise RuntimeError(f"gsbsim run failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return spent


def bench(model: Path, repeats: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory(prefix="gsbsim-numba-") as fresh:
        first = run_once(model, dict(env, NUMBA_CACHE_DIR=fresh))
    run_once(model, env)  # make sure the default cache is populated
    cached = [run_once(model, env) for _ in range(repeats)]
    imports = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import gsbsim.cli.app, gsbsim.engine.fast"], cwd=ROOT, env=env, check=True)
        imports.append(time.perf_counter() - t0)
    return dict(first=first, cached=cached, imports=imports)


def report(r: dict, repeats: int, command: str, model_desc: str) -> str:
    c, i = np.array(r["cached"]), np.array(r["imports"])
    return "\n".join([
        SECTION,
        "",
        f"Machine: {machine()}. Command: `{command}` ({repeats} repeats, median (min-max)).",
        f"Each run is a new process: `python -m gsbsim run --model M --data digits` on {model_desc}",
        "(359 test images, fast engine, digits split read by gsbsim.digits without torch).",
        "",
        "| what | seconds |",
        "|---|---|",
        f"| `gsbsim run`, cold process, Numba cache populated | {np.median(c):.2f} ({c.min():.2f}-{c.max():.2f}) |",
        f"| `gsbsim run`, first run, empty Numba cache (compiles the kernels once) | {r['first']:.1f} |",
        f"| `python -c \"import gsbsim.cli.app, gsbsim.engine.fast\"` (interpreter + numpy + numba) | "
        f"{np.median(i):.2f} ({i.min():.2f}-{i.max():.2f}) |",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--model", type=Path, help="a digits model file (default: random, digits shapes)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gsbsim-startup-") as tmp:
        model = args.model or digits_sized_model(Path(tmp) / "digits.npz")
        desc = str(args.model) if args.model else "a random model with the digits preset's shapes"
        r = bench(model, args.repeats)
    command = "python benchmarks/startup.py" + (f" --repeats {args.repeats}" if args.repeats != 7 else "")
    section = report(r, args.repeats, command, desc)
    print(section)
    if not args.no_write:
        write_section(section, SECTION)


if __name__ == "__main__":
    main()
