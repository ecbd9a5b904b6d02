"""The main job (`make demo`): the whole chain on an embedded data set (digits; --preset mnist).

    teacher -> stage 1 -> stage 2 (reference.train)
    -> integer model (reference.export) -> float vs integer agreement (reference.agreement)
    -> bit-exact simulation with the cost report (gsbsim run --count-ops)
    -> HLS project and C-simulation (gsbsim hls, gsbsim csim)

Each step is the same command a user would type; this script only chains them and
times them.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _step(name: str, fn, argv: list[str], timings: list) -> None:
    print(f"\n=== {name}: {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    rc = fn(argv)
    timings.append((name, time.perf_counter() - t0))
    if rc:
        raise SystemExit(f"demo: step '{name}' failed (exit code {rc})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reference.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="digits", choices=("digits", "mnist"),
                    help="digits (default) or mnist: the embedded data sets the chain fits on a CPU")
    ap.add_argument("--out", default=None, help="output directory (default runs/<preset>)")
    ap.add_argument("--epochs", type=int, default=None, help="override every stage's epochs (quick trials)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from gsbsim import cli as gsbsim_cli
    from . import agreement, export
    from .train.entry import main as train_main

    out = Path(args.out or f"runs/{args.preset}")
    model = str(out / "model.npz")
    timings: list[tuple[str, float]] = []
    t_all = time.perf_counter()
    train_argv = ["--stage", "all", "--preset", args.preset, "--out", str(out), "--seed", str(args.seed)]
    if args.epochs:
        train_argv += ["--epochs", str(args.epochs)]
    _step("train", train_main, train_argv, timings)
    _step("export", export.main, ["--checkpoint", str(out / "stage2" / "best.pt"), "--out", model], timings)
    _step("agreement", agreement.main, ["--checkpoint", str(out / "stage2" / "best.pt"), "--model", model],
          timings)
    _step("simulate", gsbsim_cli.main, ["run", "--model", model, "--count-ops",
                                        "--plot", str(out / "costs.png")], timings)
    hls_dir = str(out / "hls")
    _step("hls", gsbsim_cli.main, ["hls", "--model", model, "--out", hls_dir, "--pe", "4", "--simd", "32"], timings)
    _step("csim", gsbsim_cli.main, ["csim", hls_dir, "--images", "4"], timings)

    print("\n=== demo timings")
    for name, secs in timings:
        print(f"  {name:<10} {secs:8.1f} s")
    print(f"  {'total':<10} {time.perf_counter() - t_all:8.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
