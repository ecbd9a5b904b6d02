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

from gsbsim.cli.args import OneLineParser, int_at_least, nonempty_path, seed
from gsbsim.cli.signals import guarded

PROG = "python -m reference.demo"


class StepFailed(Exception):
    """A step exited non-zero (it printed its own error line); carries its exit status."""


def _step(name: str, fn, argv: list[str], timings: list) -> None:
    print(f"\n=== {name}: {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    rc = fn(argv)
    timings.append((name, time.perf_counter() - t0))
    if rc:
        raise StepFailed(rc)


def _print_verification(model: str) -> None:
    """The export's own check (header `verification`, docs/integer_model.md §11), in one place."""
    from gsbsim.format.model_file import load_model
    h = load_model(model).header
    v = h.get("verification")
    if not v:
        return
    worst = min(v["bits_teacher_forced"].items(), key=lambda kv: kv[1], default=("-", 1.0))
    print(f"\n=== export check ({model})\n  float/integer prediction agreement {100 * v['agreement']:.2f}% "
          f"on {v['images']} {v['data']} images (float top-1 {100 * h['float_top1']:.2f}%, integer "
          f"{100 * v['int_top1']:.2f}%); F = {h['frac_bits']}; image-independent bits "
          f"{'exact' if not v['constant_bits_flipped'] else 'FLIPPED'}; worst binarizer teacher-forced "
          f"{worst[0]} {100 * worst[1]:.3f}%")


def main(argv=None) -> int:
    """``python -m reference.demo``; returns the exit status of the first failed step, else 0."""
    return guarded(PROG, _main, argv)


def _main(argv=None) -> int:
    ap = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="digits", choices=("digits", "mnist"),
                    help="digits (default) or mnist: the embedded data sets the chain fits on a CPU")
    ap.add_argument("--out", default=None, type=nonempty_path, help="output directory (default runs/<preset>)")
    ap.add_argument("--epochs", type=int_at_least(1), default=None,
                    help="override every stage's epochs (quick trials)")
    ap.add_argument("--seed", type=seed, default=0)
    args = ap.parse_args(argv)
    try:
        return _chain(args)
    except StepFailed as e:
        print(f"{PROG}: error: a step failed (exit status {e.args[0]}); see its message above", file=sys.stderr)
        return e.args[0]


def _chain(args) -> int:
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

    _print_verification(model)
    print("\n=== demo timings")
    for name, secs in timings:
        print(f"  {name:<10} {secs:8.1f} s")
    print(f"  {'total':<10} {time.perf_counter() - t_all:8.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
