"""Two revisions of gsbsim side by side: the fused forward pass and its attention phases, interleaved.

Usage:  .venv/bin/python benchmarks/compare.py [--base REV] [--head REV] [--runs 3] [--calls 40]
                                               [--model dt.npz]

Each revision is checked out once into a temporary git worktree (its own Numba cache); then the
runs alternate base, head, base, head, ... each a fresh Python process that loads the same model
(default: the random DeiT-Tiny G=3 export of benchmarks/model.py), warms up, and times `calls`
calls of gsbsim.engine.fast.forward on one image (thread CPU time, one BLAS thread), then five
profiled calls for the attention's phases (fast.forward_profiled, best of five). The machine is
shared and noisy, so only what is measured in the same invocation is compared: the table shows
each side's range over its runs. Nothing is written; this is the harness behind the before/after
rows of benchmarks/RESULTS.md ("Where the targets stand").
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow running from a checkout without installing gsbsim
    sys.path.insert(0, str(ROOT))

from benchmarks.kernels import machine  # noqa: E402
from benchmarks.model import CACHE, export  # noqa: E402

PHASES = ("attention: split q/k/v", "attention: scores+softmax+planes", "attention: A.V context",
          "patch embedding")

CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from threadpoolctl import threadpool_limits
from gsbsim.engine import fast
from gsbsim.format.model_file import load_model
from gsbsim.format.random_model import random_images
assert fast.__file__.startswith(sys.argv[1]), fast.__file__
model = load_model(sys.argv[2])
x = random_images(np.random.default_rng(0), model, 1)
with threadpool_limits(limits=1):
    fast.forward(model, x)
    calls = []
    for _ in range(int(sys.argv[3])):
        t = time.thread_time()
        fast.forward(model, x)
        calls.append(time.thread_time() - t)
    prof = [fast.forward_profiled(model, x)[1] for _ in range(5)]
print(json.dumps(dict(median=float(np.median(calls)), best=min(calls),
                      phases={k: min(p.get(k, 0.0) for p in prof) for k in prof[0]})))
"""


def worktree(rev: str, where: Path) -> Path:
    """A detached checkout of rev under where (removed by the caller's temporary directory)."""
    path = where / rev.replace("/", "_")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(path), rev],
                   check=True, capture_output=True, text=True)
    return path


def one_run(tree: Path, model: Path, calls: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(model), str(calls)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def span(values: list[float], scale: float = 1e3) -> str:
    return f"{min(values) * scale:.2f}-{max(values) * scale:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="HEAD~1", help="the revision to compare against (default HEAD~1)")
    ap.add_argument("--head", default="HEAD", help="the revision measured (default HEAD)")
    ap.add_argument("--runs", type=int, default=3, help="processes per side, alternating (default 3)")
    ap.add_argument("--calls", type=int, default=40, help="timed forward calls per process (default 40)")
    ap.add_argument("--model", type=Path, help="integer model (default: benchmarks/model.py's random DeiT-Tiny G=3)")
    args = ap.parse_args()
    model = args.model or export(CACHE / "dt.npz", 3)
    revs = {side: subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], check=True,
                                 capture_output=True, text=True).stdout.strip()
            for side, rev in (("base", args.base), ("head", args.head))}
    results: dict[str, list[dict]] = {"base": [], "head": []}
    with tempfile.TemporaryDirectory(prefix="gsbsim-compare-") as tmp:
        trees = {side: worktree(rev, Path(tmp)) for side, rev in revs.items()}
        try:
            for side in trees:                                   # compile once per side, untimed
                one_run(trees[side], model, 1)
            for r in range(args.runs):
                for side in ("base", "head"):
                    results[side].append(one_run(trees[side], model, args.calls))
                    print(f"run {r + 1}/{args.runs} {side}: median {results[side][-1]['median'] * 1e3:.2f} ms",
                          file=sys.stderr)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                               capture_output=True)
    print(f"Machine: {machine()}. Model: {model}. {args.runs} runs per side, alternating, "
          f"{args.calls} calls each (thread CPU time, 1 image).\n")
    print(f"| | base {revs['base']} | head {revs['head']} |")
    print("|---|---|---|")
    for label, key in (("whole forward, median of the calls (ms)", "median"),
                       ("whole forward, best call (ms)", "best")):
        print(f"| {label} | {span([x[key] for x in results['base']])} | {span([x[key] for x in results['head']])} |")
    for phase in PHASES:
        row = [span([x["phases"].get(phase, 0.0) for x in results[s]]) for s in ("base", "head")]
        print(f"| {phase} (ms, best of 5 profiled) | {row[0]} | {row[1]} |")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
    except subprocess.CalledProcessError as e:
        sys.exit(f"compare: {' '.join(map(str, e.cmd[:3]))} failed: {(e.stderr or '').strip().splitlines()[-1:]}")
