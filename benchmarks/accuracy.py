"""Accuracy of every training method on digits, one recipe, several seeds (docs/didb.md).

Usage:  .venv/bin/python benchmarks/accuracy.py [--seeds 3] [--epochs N] [--methods gsb,didb,...]
                                                [--limit-train N] [--out DIR] [--no-write]
                                                [--reuse] [--train-only]

Rows: every method of config.METHODS, plus `gsb-batch`: GSB trained and evaluated with the
released code's batch-global mask statistic (--mask-stat batch). Its float column is that
batch-dependent model on the test batches; an integer model cannot depend on the batch, so
its integer column is the same weights exported with the per-image statistic.
--reuse skips every stage whose best.pt and summary.json already exist under --out (resume an
interrupted run, or evaluate a finished one again); --train-only stops before evaluation.

Per seed, with the `digits` preset's recipe (or --epochs for every stage):
1. one teacher; one stage 1 shared by the binary methods (they all use GSB's stage 1) and one
   for `fp` (its float student); then stage 2 of every method from its stage 1, all through
   ``python -m reference.train`` (in process) with the same seed;
2. the float test top-1 of each stage-2 best checkpoint (chosen on validation);
3. for the exportable methods (gsb, bit, sign): export, then the integer model's test top-1 with
   ``gsbsim.engine.fast.forward`` and the agreement of its predictions with the float model's;
4. per-image BOPs, OPs (BOPs/64 + FLOPs) and model bytes from ``gsbsim.hw.costs.count(header)``
   ("n/a" for methods without an integer model: didb, reactnet, fp).

Results: mean ± std over seeds, printed and written to the "## Accuracy" section of
benchmarks/RESULTS.md (other sections kept), with the machine and the command, a plot
benchmarks/accuracy.png, and the per-seed numbers in <out>/results.json.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow running from a checkout without installing gsbsim
    sys.path.insert(0, str(ROOT))

from benchmarks.kernels import machine, write_section  # noqa: E402
from gsbsim.hw import costs, folding  # noqa: E402
from gsbsim.format.model_file import IntModel, validate  # noqa: E402
from reference import export as ex  # noqa: E402
from reference.train.entry import main as train_main  # noqa: E402
from reference.agreement import measure  # noqa: E402
from reference.checkpoint import load_model  # noqa: E402
from reference.config import METHODS  # noqa: E402
from reference.data import build_datasets  # noqa: E402
from reference.presets import get_preset  # noqa: E402

SECTION = "## Accuracy"
PRESET = "digits"
PLOT = ROOT / "benchmarks" / "accuracy.png"
CALIB_IMAGES = 64
TRAIN_RECORD = "train_only.json"   # written by --train-only: its command and wall time
REF_FOLDING = (4, 32)   # (PE, SIMD) of every layer for the cycles column (make demo's folding)


@dataclass(frozen=True)
class Setup:
    """What the table is trained on: a preset and its dataset (or another one) at a path."""

    preset: str = PRESET
    data: str | None = None        # None: the preset's dataset
    data_path: str | None = None

    @property
    def dataset(self) -> str:
        return self.data or get_preset(self.preset).dataset

    def train_args(self) -> list[str]:
        return (["--preset", self.preset] + (["--data", self.data] if self.data else [])
                + (["--data-path", self.data_path] if self.data_path else []))

    def section(self) -> str:
        """Digits keep the "## Accuracy" section; other datasets get their own."""
        return SECTION if (self.preset, self.dataset) == (PRESET, "digits") else f"{SECTION}: {self.preset} on {self.dataset}"

    def plot_path(self) -> Path:
        return PLOT if self.section() == SECTION else PLOT.with_name(f"accuracy-{self.preset}-{self.dataset}.png")

    def describe(self) -> str:
        p = get_preset(self.preset)
        return (f"Preset `{p.name}` on `{self.dataset}` ({p.img_size}x{p.img_size} images, patch {p.patch_size}, "
                f"E={p.embed_dim}, {p.depth} blocks, {p.num_heads} heads)")


class BenchError(Exception):
    """A bad argument or a failed run of benchmarks/accuracy.py."""


def _train(setup: Setup, args: list[str]) -> None:
    rc = train_main([*setup.train_args(), "--no-progress", *args])
    if rc != 0:
        raise BenchError(f"benchmarks/accuracy.py: python -m reference.train {' '.join(args)} exited with {rc}")


def _summary(stage_dir: Path) -> dict:
    return json.loads((stage_dir / "summary.json").read_text())


# table rows that are not plain methods: name -> stage-2 training options
VARIANTS = {"gsb-batch": ["--method", "gsb", "--mask-stat", "batch"]}
ROWS = (*METHODS, *VARIANTS)


def _stage2_args(row: str) -> list[str]:
    return VARIANTS.get(row, ["--method", row])


def _done(stage_dir: Path) -> bool:
    return (stage_dir / "best.pt").is_file() and (stage_dir / "summary.json").is_file()


def train_seed(setup: Setup, seed: int, rows: list[str], common: list[str], out: Path,
               reuse: bool = False) -> dict[str, Path]:
    """Train the teacher, the stage-1 model(s) and every row's stage 2; stage-2 dirs by row."""
    base = ["--seed", str(seed), *common]

    def _stage(args: list[str], stage_dir: Path, reuse: bool) -> None:
        if reuse and _done(stage_dir):
            print(f"reusing {stage_dir}", flush=True)
            return
        _train(setup, args)

    _stage([*base, "--stage", "teacher", "--out", str(out / "shared")], out / "shared" / "teacher", reuse)
    teacher = out / "shared" / "teacher" / "best.pt"
    firsts = {}
    for first in sorted({"fp" if m == "fp" else "gsb" for m in rows}):
        _stage([*base, "--stage", "stage1", "--method", first, "--teacher", str(teacher),
                "--out", str(out / f"stage1-{first}")], out / f"stage1-{first}" / "stage1", reuse)
        firsts[first] = out / f"stage1-{first}" / "stage1" / "best.pt"
    dirs = {}
    for row in rows:
        init = firsts["fp" if row == "fp" else "gsb"]
        _stage([*base, "--stage", "stage2", *_stage2_args(row), "--teacher", str(teacher), "--init", str(init),
                "--out", str(out / row)], out / row / "stage2", reuse)
        dirs[row] = out / row / "stage2"
    return dirs


def _per_image_statistic(model) -> None:
    """Switch a batch-statistic GSB model to the per-image statistic (what an integer model can do)."""
    from dataclasses import replace
    for mod in model.modules():
        if getattr(mod, "stat", None) == "batch":
            mod.stat = "image"
    model.cfg = replace(model.cfg, mask_stat="image")


def _test_arrays(setup: Setup, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 test images, test labels, calibration images from train) of the dataset's split."""
    bundle = build_datasets(setup.dataset, setup.data_path, img_size=get_preset(setup.preset).img_size,
                            augment=False, seed=seed)
    xs, ys = zip(*[bundle.test[i] for i in range(len(bundle.test))])
    calib = np.stack([bundle.train[i][0].numpy() for i in range(min(CALIB_IMAGES, len(bundle.train)))])
    return np.stack([x.numpy() for x in xs]).astype(np.uint8), np.asarray(ys), calib


def evaluate(setup: Setup, method: str, stage_dir: Path, seed: int) -> dict:
    """Float test top-1; for exportable methods the integer top-1, agreement and costs."""
    row = {"float": _summary(stage_dir)["test_acc"]}
    if method not in ex.EXPORTABLE_METHODS and method not in VARIANTS:
        return row
    import torch

    model, _ = load_model(stage_dir / "best.pt")
    if model.cfg.mask_stat == "batch":
        _per_image_statistic(model)
    images, labels, calib = _test_arrays(setup, seed)
    header, arrays = ex.export(model, torch.from_numpy(calib).float(), setup.preset, str(stage_dir / "best.pt"))
    report = costs.count(header)
    cyc = folding.cycle_report(header, folding.global_folding(header, *REF_FOLDING))
    arrays = dict(arrays, format_version=np.int64(ex.FORMAT_VERSION))
    validate(header, arrays, f"{method} export")
    agree = measure(model, IntModel(header, arrays), images, labels)
    row.update(int=100 * agree.int_top1, agreement=100 * agree.agreement, bops=report.bops, ops=report.ops,
               model_bytes=report.model_bytes, ii=cyc.ii, latency=cyc.latency)
    return row


def _mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    a = np.asarray(values, dtype=np.float64)
    return f"{a.mean():.2f} ± {a.std(ddof=1):.2f}" if len(a) > 1 else f"{a.mean():.2f}"


def _cost(rows: list[dict], key: str, fmt: str) -> str:
    return format(rows[0][key], fmt) if rows and key in rows[0] else "n/a"


def report(setup: Setup, results: dict[str, list[dict]], seeds: int, command: str, wall: float,
           epochs: int | None, trained: dict | None = None) -> str:
    lines = [
        setup.section(), "",
        f"Machine: {machine()}. Command: `{command}` ({seeds} seed(s), wall time {wall / 60:.1f} min).",
        *([f"Trained beforehand by `{trained['command']}` ({trained['minutes']:.0f} min wall; the command above "
           "reused those checkpoints)."] if trained else []),
        *([f"**Short run: --epochs {epochs} for every stage instead of the recipe. These numbers only show "
           "that the script works; they are not results.**"] if epochs else []),
        f"{setup.describe()}, its recipe for every method; one",
        "teacher per seed, GSB's stage 1 shared by the binary methods, fp's own stage 1; test top-1 (%) of the",
        "stage-2 checkpoint chosen on validation, mean ± std over seeds. Integer = the exported model run by",
        "gsbsim.fast (agreement: same prediction as the float model). BOPs/OPs/bytes per image from",
        "gsbsim.hw.costs.count; n/a: `fp` has no integer model. `gsb-batch`: GSB with the released code's batch-global",
        "mask statistic (float column); its integer column runs the same weights with the per-image statistic.",
        "`didb` is our formulation of DIDB-ViT (docs/didb.md), not the authors' model.", "",
        f"Cycles: the FINN-style cycle model (gsbsim.folding) at PE {REF_FOLDING[0]}, SIMD {REF_FOLDING[1]} for "
        "every layer: II (the slowest dataflow process, MVAU or other stage, at one iteration per cycle: a lower "
        "bound) and latency (sum over all processes), per image.", "",
        "| method | float top-1 | integer top-1 | agreement | BOPs | OPs | model bytes | II (cycles) | latency (cycles) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, rows in results.items():
        lines.append(f"| {method} | {_mean_std([r['float'] for r in rows])} "
                     f"| {_mean_std([r['int'] for r in rows if 'int' in r])} "
                     f"| {_mean_std([r['agreement'] for r in rows if 'agreement' in r])} "
                     f"| {_cost(rows, 'bops', ',d')} | {_cost(rows, 'ops', ',.0f')} | {_cost(rows, 'model_bytes', ',d')} "
                     f"| {_cost(rows, 'ii', ',d')} | {_cost(rows, 'latency', ',d')} |")
    lines += ["", f"Plot: `benchmarks/{setup.plot_path().name}`."]
    return "\n".join(lines) + "\n"


def plot(setup: Setup, results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results)
    x = np.arange(len(methods))
    fl = [np.mean([r["float"] for r in results[m]]) for m in methods]
    fl_err = [np.std([r["float"] for r in results[m]]) for m in methods]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(x - 0.2, fl, 0.4, yerr=fl_err, capsize=3, label="float (PyTorch)")
    ints = [np.mean([r["int"] for r in results[m]]) if "int" in results[m][0] else np.nan for m in methods]
    int_err = [np.std([r["int"] for r in results[m]]) if "int" in results[m][0] else 0.0 for m in methods]
    ax.bar(x + 0.2, ints, 0.4, yerr=int_err, capsize=3, label="integer (gsbsim)")
    ax.set_xticks(x, methods)
    ax.set_ylabel("test top-1 (%)")
    name = setup.preset if setup.preset == setup.dataset else f"{setup.preset} on {setup.dataset}"
    ax.set_title(f"{name}: test top-1 per method ({len(next(iter(results.values())))} seed(s))")
    low = np.nanmin(np.concatenate([np.subtract(fl, fl_err), ints]))
    ax.set_ylim(max(0.0, np.floor(low / 5) * 5 - 5), 100)   # zoomed: the methods differ by a few points
    fig.legend(loc="lower center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of every stage (default: the preset's recipe)")
    ap.add_argument("--methods", default=",".join(ROWS),
                    help=f"comma-separated table rows (default: all: {','.join(ROWS)})")
    ap.add_argument("--preset", default=PRESET, help="training preset (default: digits)")
    ap.add_argument("--data", default=None, help="dataset name: cifar100, flowers102, chaoyang (default: the preset's)")
    ap.add_argument("--data-path", default=None, help="dataset location on disk (not needed for digits)")
    ap.add_argument("--limit-train", type=int, default=None, help="use only N training images")
    ap.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md and the plot alone")
    ap.add_argument("--reuse", action="store_true", help="skip stages already finished under --out")
    ap.add_argument("--train-only", action="store_true", help="train (or reuse) every stage, evaluate nothing")
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in ROWS]
    if bad or not methods:
        ap.error(f"--methods: unknown {bad} (choose from {', '.join(ROWS)})")
    if args.reuse and not args.out:
        ap.error("--reuse needs --out (the run directory to reuse)")
    if args.seeds < 1 or (args.epochs is not None and args.epochs < 1):
        ap.error("--seeds and --epochs must be >= 1")
    args.methods = methods
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    setup = Setup(args.preset, args.data, args.data_path)
    try:
        get_preset(setup.preset)
    except (KeyError, ValueError) as exc:
        print(f"benchmarks/accuracy.py: error: {exc}", file=sys.stderr)
        return 2
    common = (["--epochs", str(args.epochs)] if args.epochs else []) + (
        ["--limit-train", str(args.limit_train)] if args.limit_train else [])
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gsbsim-accuracy-"))
    start = time.time()
    results: dict[str, list[dict]] = {m: [] for m in args.methods}
    for seed in range(args.seeds):
        try:
            dirs = train_seed(setup, seed, args.methods, common, out / f"seed{seed}", args.reuse)
        except BenchError as exc:          # the training run has printed its own reason
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.train_only:
            continue
        for method, stage_dir in dirs.items():
            results[method].append(evaluate(setup, method, stage_dir, seed))
            print(f"seed {seed} {method}: {results[method][-1]}", flush=True)
    command = "python benchmarks/accuracy.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if args.train_only:
        (out / TRAIN_RECORD).write_text(json.dumps({"command": command.strip(), "minutes": (time.time() - start) / 60}))
        print(f"trained every stage under {out}")
        return 0
    (out / "results.json").write_text(json.dumps(results, indent=1))
    trained = json.loads((out / TRAIN_RECORD).read_text()) if args.reuse and (out / TRAIN_RECORD).is_file() else None
    section = report(setup, results, args.seeds, command.strip(), time.time() - start, args.epochs, trained)
    print(section)
    if not args.no_write:
        write_section(section, setup.section())
        plot(setup, results, setup.plot_path())
        print(f"wrote {setup.plot_path()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
