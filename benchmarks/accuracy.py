"""Accuracy of every training method, one preset's recipe, several seeds (docs/didb.md).

Usage:  .venv/bin/python benchmarks/accuracy.py [--preset digits|mnist] [--seeds 3] [--epochs N]
                                                [--methods gsb,didb,...] [--limit-train N] [--out DIR]
                                                [--no-write] [--reuse] [--train-only | --tabulate]

Rows: every method of config.METHODS, plus variants of GSB: `gsb-batch` (trained and evaluated with
the released code's batch-global mask statistic, --mask-stat batch; its float column is that
batch-dependent model on the test batches, its integer column the same weights exported with the
per-image statistic, as an integer model cannot depend on the batch) and `gsb-g2`, `gsb-g4` (--groups
2 and 4 beside the default 3).
--reuse skips every stage whose best.pt and summary.json already exist under --out, continues
(--resume) a stage that was interrupted after an epoch, and skips every evaluation whose eval.json
is newer than its best.pt (every run that trains or continues a stage is recorded in <out>/trained.json,
and a later table names them all as what trained its checkpoints); --train-only stops
before evaluation; --tabulate trains nothing and tables the row x seed cells that finished (a run
stopped at a deadline: the table says how many seeds each row has).

Per seed, with the preset's recipe (or --epochs for every stage):
1. one teacher; one stage 1 shared by the binary methods (they all use GSB's stage 1, whose attention
   has no groups) and one for `fp` (its float student); then stage 2 of every row from its stage 1,
   all through ``python -m reference.train`` (in process) with the same seed; seed by seed, so that
   what finished is a set of complete seeds;
2. the float test top-1 of each stage-2 best checkpoint (chosen on validation);
3. for the rows whose method the exporter lists (reference.export.EXPORTABLE_METHODS, asked at run
   time): the verified export, as ``python -m reference.export`` makes it (F chosen on the validation
   split, header `verification`, docs/integer_model.md §11) and its own figures (agreement, worst
   teacher-forced binarizer, image-independent bits, F); then the integer model's test top-1 with
   ``gsbsim.engine.fast.forward`` and the agreement of its predictions with the float model's;
4. per-image BOPs, OPs (BOPs/64 + FLOPs) and model bytes from ``gsbsim.hw.costs.count(header)``
   ("n/a" for rows without an integer model).

Results: mean ± std over seeds, printed and written to the preset's section of benchmarks/RESULTS.md
("## Accuracy" for digits, "## Accuracy (mnist)" for mnist; other sections kept), with the machine
and the command, a plot (benchmarks/accuracy.png, accuracy-mnist.png), and the per-seed numbers in
<out>/results.json.
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
from reference.config import METHODS, is_float_method  # noqa: E402
from reference.data import build_datasets  # noqa: E402
from reference.presets import get_preset  # noqa: E402

SECTION = "## Accuracy"
PRESET = "digits"
PLOT = ROOT / "benchmarks" / "accuracy.png"
CALIB_IMAGES = 64
# every run of this script that trained or continued a stage under --out: its command and wall time
# (the table of a later --reuse/--tabulate names them all; one folder is often trained by several
# runs side by side); a train_only.json of older runs (its last --train-only run only) is read too
TRAIN_RECORD, OLD_TRAIN_RECORD = "trained.json", "train_only.json"
REF_FOLDING = (4, 32)   # (PE, SIMD) of every layer for the cycles column (make demo's folding)


@dataclass(frozen=True)
class Setup:
    """What the table is trained on: a preset and its dataset (or another one) at a path."""

    preset: str = PRESET
    data: str | None = None        # None: the preset's dataset
    data_path: str | None = None
    int_aware_epochs: int = 0      # stage 2 of the binary rows: epochs on the integer grid after the float ones
    float_control: bool = False    # those epochs with the grid switched off (their control)

    @property
    def dataset(self) -> str:
        return self.data or get_preset(self.preset).dataset

    def train_args(self) -> list[str]:
        return (["--preset", self.preset] + (["--data", self.data] if self.data else [])
                + (["--data-path", self.data_path] if self.data_path else []))

    def section(self) -> str:
        """Digits keep the "## Accuracy" section; other presets get their own ("## Accuracy (mnist)"),
        and --int-aware-epochs N its own beside them ("## Accuracy (mnist, int-aware 3)")."""
        parts = [] if (self.preset, self.dataset) == (PRESET, "digits") else [
            self.preset if self.dataset == get_preset(self.preset).dataset else f"{self.preset} on {self.dataset}"]
        if self.int_aware_epochs:
            parts += [f"{'float control' if self.float_control else 'int-aware'} {self.int_aware_epochs}"]
        return f"{SECTION} ({', '.join(parts)})" if parts else SECTION

    def plot_path(self) -> Path:
        if self.section() == SECTION:
            return PLOT
        same = self.dataset == get_preset(self.preset).dataset
        name = f"accuracy-{self.preset}" if same else f"accuracy-{self.preset}-{self.dataset}"
        kind = "-float-control" if self.float_control else "-int-aware"
        return PLOT.with_name(name + (f"{kind}{self.int_aware_epochs}" if self.int_aware_epochs else "") + ".png")

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
# (gsb-gN: GSB with N groups beside the default G=3; they share GSB's stage 1, whose attention has no groups)
VARIANTS = {"gsb-batch": ["--method", "gsb", "--mask-stat", "batch"],
            "gsb-g2": ["--method", "gsb", "--groups", "2"],
            "gsb-g4": ["--method", "gsb", "--groups", "4"]}
ROWS = (*METHODS, *VARIANTS)


def grid_epochs(row: str, int_aware_epochs: int) -> int:
    """The row's stage-2 epochs on the integer grid: --int-aware-epochs, none for a float row."""
    return 0 if is_float_method(row) else int_aware_epochs


def _stage2_args(row: str, grid: int = 0, control: bool = False) -> list[str]:
    return [*VARIANTS.get(row, ["--method", row]), *(["--int-aware-epochs", str(grid)] if grid else []),
            *(["--int-aware-control"] if grid and control else [])]


def _done(stage_dir: Path, int_aware_epochs: int | None = None, control: bool = False) -> bool:
    """Has the stage finished (a stage 2: with that many integer-aware epochs, on the grid or, with
    control, off it; fewer is continued by --resume, which the trainer allows while none has run)?"""
    if not ((stage_dir / "best.pt").is_file() and (stage_dir / "summary.json").is_file()):
        return False
    if int_aware_epochs is None:
        return True
    summary = _summary(stage_dir)
    return (summary.get("int_aware_epochs", 0) == int_aware_epochs
            and bool(summary.get("int_aware_control", False)) == bool(control and int_aware_epochs))


def _busy(folder: Path) -> bool:
    """Is another process training into `folder` now (it holds the folder's lock)?"""
    from gsbsim.outputs import OutputLocked, folder_lock
    try:
        with folder_lock(folder):
            return False
    except OutputLocked:
        return True


def train_seed(setup: Setup, seed: int, rows: list[str], common: list[str], out: Path,
               reuse: bool = False, trained: list[Path] | None = None) -> dict[str, Path]:
    """Train the teacher, the stage-1 model(s) and every row's stage 2; stage-2 dirs by row. The
    stage folders this call trained or continued are appended to `trained`."""
    base = ["--seed", str(seed), *common]
    trained = [] if trained is None else trained

    def _stage(args: list[str], stage_dir: Path, reuse: bool, grid: int | None = None) -> None:
        if reuse and _done(stage_dir, grid, setup.float_control):
            print(f"reusing {stage_dir}", flush=True)
            return
        trained.append(stage_dir)
        if reuse and (stage_dir / "last.pt").is_file():
            # an interrupted stage: continue it from its last epoch (the trainer checks that the
            # arguments are the interrupted run's) instead of starting it again
            print(f"resuming {stage_dir}", flush=True)
            args = [*args, "--resume"]
        _train(setup, args)

    _stage([*base, "--stage", "teacher", "--out", str(out / "shared")], out / "shared" / "teacher", reuse)
    teacher = out / "shared" / "teacher" / "best.pt"
    firsts: dict[str, Path] = {}

    def _first(kind: str) -> Path:
        """The stage-1 checkpoint a row starts from, trained when the first row needs it (so that
        fp's own stage 1 does not delay the binary rows)."""
        if kind not in firsts:
            _stage([*base, "--stage", "stage1", "--method", kind, "--teacher", str(teacher),
                    "--out", str(out / f"stage1-{kind}")], out / f"stage1-{kind}" / "stage1", reuse)
            firsts[kind] = out / f"stage1-{kind}" / "stage1" / "best.pt"
        return firsts[kind]

    dirs = {}
    for row in rows:
        grid = grid_epochs(row, setup.int_aware_epochs)
        if not (reuse and _done(out / row / "stage2", grid, setup.float_control)) and _busy(out / row):
            # several runs may share one --out (e.g. one per seed or per row): leave a row to the run
            # that trains it now instead of failing on its lock
            print(f"skipping {out / row}: another run is training it", flush=True)
            continue
        init = _first("fp" if is_float_method(row) else "gsb")   # the stage-1 run a row starts from
        _stage([*base, "--stage", "stage2", *_stage2_args(row, grid, setup.float_control), "--teacher", str(teacher),
                "--init", str(init), "--out", str(out / row)], out / row / "stage2", reuse, grid)
        dirs[row] = out / row / "stage2"
    return dirs


def _per_image_statistic(model) -> None:
    """Switch a batch-statistic GSB model to the per-image statistic (what an integer model can do)."""
    from dataclasses import replace
    for mod in model.modules():
        if getattr(mod, "stat", None) == "batch":
            mod.stat = "image"
    model.cfg = replace(model.cfg, mask_stat="image")


def row_method(row: str) -> str:
    """The training method of a table row (a variant's --method)."""
    args = VARIANTS.get(row, ["--method", row])
    return args[args.index("--method") + 1]


def exportable(row: str) -> bool:
    """Has the row an integer model? Asked of the exporter's list now, not remembered here."""
    return row_method(row) in ex.EXPORTABLE_METHODS


def _test_arrays(setup: Setup, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 test images, test labels) of the dataset's split."""
    bundle = build_datasets(setup.dataset, setup.data_path, img_size=get_preset(setup.preset).img_size,
                            augment=False, seed=seed)
    xs, ys = zip(*[bundle.test[i] for i in range(len(bundle.test))])
    return np.stack([x.numpy() for x in xs]).astype(np.uint8), np.asarray(ys)


def verification_columns(header: dict) -> dict:
    """The table's export columns from a header's `verification` (docs/integer_model.md §11)."""
    v = header["verification"]
    tf = v["bits_teacher_forced"]
    worst = min(tf, key=tf.get) if tf else "-"      # first in execution order on ties, as Verification
    return {"export_agreement": 100 * v["agreement"], "export_images": v["images"], "export_data": v["data"],
            "worst_tf": 100 * tf.get(worst, 1.0), "worst_tf_layer": worst,
            "worst_e2e": 100 * min(v["bits_end_to_end"].values(), default=1.0),
            "constants_exact": v["constant_bits_flipped"] == 0, "frac_bits": header["frac_bits"]}


EVAL_FILE = "eval.json"   # one row x seed's evaluation, next to its best.pt (--reuse reads it back)


def evaluate(setup: Setup, row: str, stage_dir: Path, seed: int, reuse: bool = False) -> dict:
    """Float test top-1; for rows with an integer model: the verified export's figures, the integer
    test top-1, the test agreement and the costs."""
    cached = stage_dir / EVAL_FILE
    if reuse and cached.is_file() and cached.stat().st_mtime >= (stage_dir / "best.pt").stat().st_mtime:
        result = json.loads(cached.read_text())
        if "header" not in result:   # an older cache: its costs cannot be recomputed, evaluate again
            return evaluate(setup, row, stage_dir, seed, reuse=False)
        return result | _costs(result["header"]) if result["header"] else result
    result = {"seed": seed, "float": _summary(stage_dir)["test_acc"], "header": None}
    if exportable(row):
        result.update(_evaluate_integer(setup, row, stage_dir, seed))
    cached.write_text(json.dumps(result))
    return result


def _evaluate_integer(setup: Setup, row: str, stage_dir: Path, seed: int) -> dict:
    model, meta = load_model(stage_dir / "best.pt")
    batch_stat = model.cfg.mask_stat == "batch"
    if batch_stat:
        _per_image_statistic(model)
    # what `python -m reference.export` does: calibration on training images, F chosen and verified on
    # the validation split; report only (min agreement 0), so that a failing row shows in the table
    calib, images, labels, split = ex._checkpoint_images(dict(meta), CALIB_IMAGES, ex.VERIFY_IMAGES, setup.data_path)
    header, arrays, _ = ex.export_verified(model, calib, images, labels, split, setup.preset,
                                           str(stage_dir / "best.pt"), min_agreement=0.0)
    arrays = dict(arrays, format_version=np.int64(ex.FORMAT_VERSION))
    validate(header, arrays, f"{row} export")
    test_images, test_labels = _test_arrays(setup, seed)
    agree = measure(model, IntModel(header, arrays), test_images, test_labels)
    # the float column: the float model as the code defines it now, off the grid (a stage 2 trained on
    # the grid reported its test top-1 on it, and didb's scores moved onto score.w's grid after its
    # training); gsb-batch's stays its batch-statistic model's, from the training summary
    now = {} if batch_stat else {"float": 100 * agree.float_top1}
    return {"int": 100 * agree.int_top1, "agreement": 100 * agree.agreement, **verification_columns(header),
            **_costs(header), "header": header, **now}


def _costs(header: dict) -> dict:
    """Costs per image, computed from the header whenever the table is made (the cost model evolves;
    a cached evaluation keeps only the measured figures and the header)."""
    report = costs.count(header)
    cyc = folding.cycle_report(header, folding.global_folding(header, *REF_FOLDING))
    return {"bops": report.bops, "ops": report.ops, "model_bytes": report.model_bytes, "ii": cyc.ii,
            "latency": cyc.latency}


# issue 11's goals for every export: each binarizer's teacher-forced bits, and prediction agreement
GOAL_TF, GOAL_AGREEMENT = 99.99, 99.9


def meets_goal(r: dict) -> bool:
    return (r["worst_tf"] >= GOAL_TF and r["export_agreement"] >= GOAL_AGREEMENT
            and r["agreement"] >= GOAL_AGREEMENT and r["constants_exact"])


def _mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    a = np.asarray(values, dtype=np.float64)
    return f"{a.mean():.2f} ± {a.std(ddof=1):.2f}" if len(a) > 1 else f"{a.mean():.2f}"


def _cost(rows: list[dict], key: str, fmt: str) -> str:
    return format(rows[0][key], fmt) if rows and key in rows[0] else "n/a"


def accuracy_line(row: str, rows: list[dict]) -> str:
    """One row of the accuracy table: mean ± std over seeds, and the export's worst case over seeds."""
    ints = [r for r in rows if "int" in r]
    if ints:
        worst = min(ints, key=lambda r: r["worst_tf"])
        export = (f"{min(r['export_agreement'] for r in ints):.2f} "
                  f"| {worst['worst_tf']:.4f} ({worst['worst_tf_layer']}) "
                  f"| {sum(r['constants_exact'] for r in ints)}/{len(ints)} "
                  f"| {'/'.join(str(r['frac_bits']) for r in ints)} "
                  f"| {sum(meets_goal(r) for r in ints)}/{len(ints)}")
    else:
        export = "n/a | n/a | n/a | n/a | n/a"
    return (f"| {row} | {len(rows)} | {_mean_std([r['float'] for r in rows])} "
            f"| {_mean_std([r['int'] for r in ints])} | {_mean_std([r['agreement'] for r in ints])} | {export} |")


def cost_line(row: str, rows: list[dict]) -> str:
    return (f"| {row} | {_cost(rows, 'bops', ',d')} | {_cost(rows, 'ops', ',.0f')} | {_cost(rows, 'model_bytes', ',d')} "
            f"| {_cost(rows, 'ii', ',d')} | {_cost(rows, 'latency', ',d')} |")


def read_train_record(out: Path) -> list[dict]:
    """The runs that trained under `out` (TRAIN_RECORD, else an older OLD_TRAIN_RECORD), oldest first."""
    for name in (TRAIN_RECORD, OLD_TRAIN_RECORD):
        if (out / name).is_file():
            record = json.loads((out / name).read_text())
            return record if isinstance(record, list) else [record]
    return []


def add_train_record(out: Path, command: str, minutes: float, keep: bool) -> None:
    """Record a run that trained under `out`, after the earlier ones if `keep` (a --reuse run builds
    on them; a fresh run has replaced what they trained)."""
    runs = (read_train_record(out) if keep else []) + [{"command": command, "minutes": minutes}]
    (out / TRAIN_RECORD).write_text(json.dumps(runs, indent=1) + "\n")


def _trained_line(runs: list[dict]) -> str:
    said = ", ".join(f"`{r['command']}` ({r['minutes']:.0f} min wall)" for r in runs)
    return f"Trained beforehand by {said}; the command above reused those checkpoints."


def report(setup: Setup, results: dict[str, list[dict]], seeds: int, command: str, wall: float,
           epochs: int | None, trained: list[dict] | None = None, partial: bool = False) -> str:
    results = {row: rows for row, rows in results.items() if rows}
    counts = sorted({len(rows) for rows in results.values()})
    lines = [
        setup.section(), "",
        f"Machine: {machine()}. Command: `{command}` ({seeds} seed(s) asked, wall time {wall / 60:.1f} min).",
        *([_trained_line(trained)] if trained else []),
        *([f"**Partial: the rows whose training had finished when the run was stopped; `seeds` says how many "
           f"per row ({'/'.join(map(str, counts))}).**"] if partial else []),
        *([f"**Short run: --epochs {epochs} for every stage instead of the recipe. These numbers only show "
           "that the script works; they are not results.**"] if epochs else []),
        *([f"Stage 2 of every binary row: the recipe's float epochs, then {setup.int_aware_epochs} on the integer "
           "grid (`--int-aware-epochs`, docs/integer_model.md §11; best.pt chosen among the grid epochs). Float "
           "top-1: that checkpoint's float model, off the grid."] if setup.int_aware_epochs and not setup.float_control
          else []),
        *([f"Stage 2 of every binary row: the recipe's float epochs, then {setup.int_aware_epochs} more with the "
           "schedule and selection of `--int-aware-epochs` but the grid switched off (`--float-control`): the "
           "control of the int-aware table."] if setup.float_control else []),
        f"{setup.describe()}, its recipe for every method; one",
        "teacher per seed, GSB's stage 1 shared by the binary methods, fp's own stage 1; test top-1 (%) of the",
        "stage-2 checkpoint chosen on validation, mean ± std over seeds (the float model as the code defines it",
        "at table time, e.g. didb's score weights on the integer grid, off any training grid; fp: its training",
        "summary's). Integer = the exported model run by gsbsim.fast; test agreement: same prediction as the",
        "float model on the test split.",
        "Export columns, from each export's header `verification` (docs/integer_model.md §11; F chosen by the",
        "exporter on the validation split, as `python -m reference.export` does): its own prediction agreement",
        "(lowest over seeds), the lowest teacher-forced bit agreement of any binarizer over seeds (and which),",
        "how many exports had every image-independent (constant-token) bit exact, F per seed, and how many meet",
        f"issue 11's goal (every binarizer >= {GOAL_TF} % teacher-forced, both agreements >= {GOAL_AGREEMENT} %,",
        "constant bits exact). n/a: no integer model (`fp`). `gsb-batch`: GSB with the released code's",
        "batch-global mask statistic (float column); its integer columns run the same weights with the per-image",
        "statistic. `gsb-gN`: GSB with N groups (default 3). `didb` is our formulation of DIDB-ViT (docs/didb.md),",
        "not the authors' model.", "",
        "| method | seeds | float top-1 | integer top-1 | test agreement | export agreement (min) "
        "| worst teacher-forced bits % (binarizer) | constant bits exact | F | goal met |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[accuracy_line(row, rows) for row, rows in results.items()],
        "",
        f"Costs per image (seed-independent) from gsbsim.hw.costs.count; cycles from the FINN-style cycle model "
        f"(gsbsim.hw.folding) at PE {REF_FOLDING[0]}, SIMD {REF_FOLDING[1]} for every layer: II (the slowest "
        "dataflow process, MVAU or other stage, at one iteration per cycle: a lower bound) and latency (sum over "
        "all processes).", "",
        "| method | BOPs | OPs | model bytes | II (cycles) | latency (cycles) |",
        "|---|---|---|---|---|---|",
        *[cost_line(row, rows) for row, rows in results.items()],
    ]
    lines += ["", f"Plot: `benchmarks/{setup.plot_path().name}`."]
    return "\n".join(lines) + "\n"


def plot(setup: Setup, results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in results if results[m]]
    x = np.arange(len(methods))
    fl = [np.mean([r["float"] for r in results[m]]) for m in methods]
    fl_err = [np.std([r["float"] for r in results[m]]) for m in methods]
    fig, ax = plt.subplots(figsize=(max(7, 0.8 * len(methods)), 4))
    ax.bar(x - 0.2, fl, 0.4, yerr=fl_err, capsize=3, label="float (PyTorch)")
    ints = [np.mean([r["int"] for r in results[m]]) if "int" in results[m][0] else np.nan for m in methods]
    int_err = [np.std([r["int"] for r in results[m]]) if "int" in results[m][0] else 0.0 for m in methods]
    ax.bar(x + 0.2, ints, 0.4, yerr=int_err, capsize=3, label="integer (gsbsim)")
    ax.set_xticks(x, [f"{m}\n({len(results[m])})" for m in methods])
    ax.set_ylabel("test top-1 (%)")
    name = setup.preset if setup.preset == setup.dataset else f"{setup.preset} on {setup.dataset}"
    ax.set_title(f"{name}: test top-1 per method (seeds per row in brackets)")
    low = np.nanmin(np.concatenate([np.subtract(fl, fl_err), ints]))
    ax.set_ylim(max(0.0, np.floor(low / 5) * 5 - 5), 100)   # zoomed: the methods differ by a few points
    fig.legend(loc="lower center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    ap.add_argument("--first-seed", type=int, default=0, metavar="S",
                    help="start at seed S: seeds S..S+N-1 (default 0; e.g. one run per seed side by side)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of every stage (default: the preset's recipe)")
    ap.add_argument("--methods", default=",".join(ROWS),
                    help=f"comma-separated table rows (default: all: {','.join(ROWS)})")
    ap.add_argument("--preset", default=PRESET, help="training preset (default: digits)")
    ap.add_argument("--data", default=None, help="dataset name: cifar100, flowers102, chaoyang (default: the preset's)")
    ap.add_argument("--data-path", default=None, help="dataset location on disk (not needed for digits)")
    ap.add_argument("--limit-train", type=int, default=None, help="use only N training images")
    ap.add_argument("--int-aware-epochs", type=int, default=0, metavar="N",
                    help="stage 2 of the binary rows: N more epochs on the integer grid (reference.train's option; "
                         "default 0). With --reuse a finished float stage 2 is continued on the grid (--resume), "
                         "so the rows without it, in another --out copy, are the control")
    ap.add_argument("--float-control", action="store_true",
                    help="with --int-aware-epochs N: train those N epochs with the integer grid switched off (same "
                         "schedule and selection: the control that separates the grid's effect from N more "
                         "epochs; reference.train's --int-aware-control). Give it its own --out: its rows have "
                         "the grid arm's folder names")
    ap.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md and the plot alone")
    ap.add_argument("--reuse", action="store_true", help="skip stages already finished under --out")
    ap.add_argument("--train-only", action="store_true", help="train (or reuse) every stage, evaluate nothing")
    ap.add_argument("--tabulate", action="store_true",
                    help="train nothing: evaluate (or reuse the evaluation of) every row x seed whose stage 2 has "
                         "finished under --out, and table those, with the number of seeds per row")
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in ROWS]
    if bad or not methods:
        ap.error(f"--methods: unknown {bad} (choose from {', '.join(ROWS)})")
    if (args.reuse or args.tabulate) and not args.out:
        ap.error("--reuse and --tabulate need --out (the run directory to reuse)")
    if args.tabulate and args.train_only:
        ap.error("--tabulate trains nothing and --train-only evaluates nothing: choose one")
    if args.int_aware_epochs < 0:
        ap.error("--int-aware-epochs must be >= 0")
    if args.float_control and not args.int_aware_epochs:
        ap.error("--float-control needs --int-aware-epochs N (the epochs it trains without the grid)")
    if args.seeds < 1 or (args.epochs is not None and args.epochs < 1):
        ap.error("--seeds and --epochs must be >= 1")
    if args.first_seed < 0:
        ap.error("--first-seed must be >= 0")
    args.methods = methods
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    setup = Setup(args.preset, args.data, args.data_path, args.int_aware_epochs, args.float_control)
    try:
        get_preset(setup.preset)
    except (KeyError, ValueError) as exc:
        print(f"benchmarks/accuracy.py: error: {exc}", file=sys.stderr)
        return 2
    common = (["--epochs", str(args.epochs)] if args.epochs else []) + (
        ["--limit-train", str(args.limit_train)] if args.limit_train else [])
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gsbsim-accuracy-"))
    start = time.time()
    before = read_train_record(out) if args.reuse or args.tabulate else []   # this run's own training is not "beforehand"
    stages_trained: list[Path] = []
    results: dict[str, list[dict]] = {m: [] for m in args.methods}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        if args.tabulate:
            dirs = {m: out / f"seed{seed}" / m / "stage2" for m in args.methods}
            dirs = {m: d for m, d in dirs.items() if _done(d, grid_epochs(m, args.int_aware_epochs), args.float_control)}
        else:
            try:
                dirs = train_seed(setup, seed, args.methods, common, out / f"seed{seed}", args.reuse, stages_trained)
            except BenchError as exc:          # the training run has printed its own reason
                print(f"error: {exc}", file=sys.stderr)
                return 2
        if args.train_only:
            continue
        for method, stage_dir in dirs.items():
            results[method].append(evaluate(setup, method, stage_dir, seed, args.reuse or args.tabulate))
            print(f"seed {seed} {method}: {results[method][-1]}", flush=True)
    if args.tabulate and not any(results.values()):
        print(f"benchmarks/accuracy.py: error: --out {out}: no finished stage 2 of {','.join(args.methods)}",
              file=sys.stderr)
        return 2
    command = "python benchmarks/accuracy.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if stages_trained:
        add_train_record(out, command.strip(), (time.time() - start) / 60, keep=args.reuse)
    if args.train_only:
        print(f"trained every stage under {out}")
        return 0
    (out / "results.json").write_text(json.dumps(results, indent=1))
    partial = args.tabulate and any(len(rows) < args.seeds for rows in results.values())
    section = report(setup, results, args.seeds, command.strip(), time.time() - start, args.epochs, before, partial)
    print(section)
    if not args.no_write:
        write_section(section, setup.section())
        plot(setup, results, setup.plot_path())
        print(f"wrote {setup.plot_path()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
