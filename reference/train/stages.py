"""One stage (teacher, stage1, stage2): plan, model, teacher, initialisation, resume, epochs, files."""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from reference.checkpoint import (CHECKPOINT_KEYS, CheckpointError, capture_rng, load_checkpoint, load_model, load_weights,
                         preset_to_dict, restore_rng, save_checkpoint, write_text_atomic)
from gsbsim.cli.signals import silence_stdout
from gsbsim.format.methods import DEFAULT_METHOD
from reference.config import is_float_method
from gsbsim.outputs import remove_stale
from reference.distill import TrainLoss
from reference.int_grid import set_integer_grid
from reference.metrics import append_jsonl, plot_curves, truncate_jsonl
from reference.train.distributed import Dist, barrier, seed_everything, sync_buffers
from reference.train.errors import TrainError
from reference.train import int_aware
from reference.train.recipe import batch_and_lr, recipe_name
from reference.train.teacher_file import init_teacher_from_file, timm_file_teacher
from reference.train.loop import evaluate, init_scales_before_ddp, reading_data, train_loader, train_one_epoch
from reference.train.schedule import CosineSchedule, build_optimizer


STAGES = ("teacher", "stage1", "stage2")
STAGE_FILES = ("last.pt", "best.pt", "metrics.jsonl", "summary.json", "curves.png")
# ----------------------------------------------------------------------------- one stage
@dataclass
class Context:
    """What every stage of one invocation shares."""

    args: argparse.Namespace
    preset: object
    bundle: object
    train_set: Dataset
    in_chans: int
    device: torch.device
    dist: Dist
    out: Path
    progress: bool

    def say(self, msg: str) -> None:
        if self.dist.is_main:
            try:
                print(msg, flush=True)
            except BrokenPipeError:  # the reader left (`| head`): the training goes on, quietly
                silence_stdout()


@dataclass
class StagePlan:
    stage: str
    epochs: int
    batch_size: int
    lr: float
    min_lr: float
    weight_decay: float
    warmup_epochs: int
    lr_rule: str = ""
    int_aware_epochs: int = 0      # stage 2: epochs on the integer grid after `epochs` float ones (int_aware.py)
    int_aware_control: bool = False    # those epochs with their schedule and selection but off the grid

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.int_aware_epochs


def plan_stage(stage: str, args: argparse.Namespace, preset, d: Dist) -> StagePlan:
    recipe = preset.recipe(stage)
    epochs = getattr(args, f"epochs_{stage}") or args.epochs or recipe.epochs
    batch, lr, rule = batch_and_lr(recipe, args, preset, d.world_size)
    if batch % d.world_size:
        raise TrainError(f"--batch-size {batch} is not divisible by the {d.world_size} processes")
    wd = args.weight_decay if args.weight_decay is not None else recipe.weight_decay
    ia = int(args.int_aware_epochs or 0) if stage == "stage2" and int_aware.supports(args.method) else 0
    control = ia > 0 and bool(args.int_aware_control)
    return StagePlan(stage, epochs, batch, lr, recipe.min_lr, wd, recipe.warmup_epochs, rule, ia, control)


def quant_options(stage: str, args: argparse.Namespace) -> dict:
    """What build_model gets as **quant_options (nothing for the teacher)."""
    if stage == "teacher":  # a teacher of a timm checkpoint's architecture is rebuilt from it
        return {"timm_arch": args.timm_arch} if getattr(args, "timm_arch", None) else {}
    options = {"groups": args.groups, "mask_stat": args.mask_stat, "released_quirks": bool(args.released_quirks)}
    if args.method != DEFAULT_METHOD:  # absent means the default: checkpoints written before --method existed
        options["method"] = args.method
    return options


def build_stage_model(stage: str, ctx: Context) -> nn.Module:
    from reference.models import build_model

    return build_model(ctx.preset, stage, ctx.bundle.num_classes, ctx.in_chans, ctx.bundle.img_size,
                       **quant_options(stage, ctx.args))


def check_fits(meta: dict, path: Path, ctx: Context, kind: str) -> None:
    """A teacher/init checkpoint must be of `kind` and match the data's classes, channels and image size."""
    if meta["kind"] != kind:
        raise CheckpointError(f"{path}: is a {meta['kind']} checkpoint, expected a {kind} one")
    want = {"num_classes": ctx.bundle.num_classes, "in_chans": ctx.in_chans, "img_size": ctx.bundle.img_size}
    for key, value in want.items():
        if int(meta[key]) != int(value):
            raise CheckpointError(f"{path}: {key} is {meta[key]} but the data needs {value}")


def stage_input(explicit: str | None, default: Path, flag: str, stage: str, what: str) -> Path:
    if explicit:
        return Path(explicit)
    if default.is_file():
        return default
    raise TrainError(f"{stage} needs {what}: {default} does not exist; pass {flag} CKPT")


def timm_teacher_file(args: argparse.Namespace) -> Path | None:
    """The --teacher-checkpoint file a single student stage distils from as it is (no teacher stage
    runs to fine-tune it), else None."""
    return Path(args.teacher_checkpoint) if args.teacher_checkpoint and args.stage != "all" else None


def load_teacher(stage: str, ctx: Context) -> nn.Module | None:
    if ctx.args.distill == "none":
        return None
    if timm_teacher_file(ctx.args):
        return timm_file_teacher(ctx.args.teacher_checkpoint, ctx.bundle.num_classes, ctx.in_chans,
                                 ctx.bundle.img_size).to(ctx.device)
    path = stage_input(ctx.args.teacher, ctx.out / "teacher" / "best.pt", "--teacher", stage, "a teacher")
    teacher, meta = load_model(path, map_location="cpu")
    check_fits(meta, path, ctx, "teacher")
    return teacher.to(ctx.device)


def init_from_stage1(model: nn.Module, ctx: Context) -> Path:
    from reference.models import load_stage1

    path = stage_input(ctx.args.init, ctx.out / "stage1" / "best.pt", "--init", "stage2", "a stage-1 checkpoint")
    ckpt = load_checkpoint(path)
    check_fits(ckpt, path, ctx, "stage1")
    # binary methods share GSB's stage 1; only fp's (a float model) differs
    theirs = dict(ckpt.get("quant_options", {})).get("method", DEFAULT_METHOD)
    if is_float_method(theirs) != is_float_method(ctx.args.method):
        raise CheckpointError(f"{path}: is a stage-1 checkpoint of method {theirs!r}, "
                              f"which cannot start a {ctx.args.method!r} stage 2")
    missing = load_stage1(model, ckpt["model"])
    if len(missing) == len(model.state_dict()):
        raise CheckpointError(f"{path}: no tensor fits the stage-2 model")
    return path


def run_identity(stage: str, ctx: Context, plan: StagePlan) -> dict:
    """What makes one stage's run the run it is: a --resume must ask for all of it again.

    The data location (--data-path) and the number of processes may change between the
    interrupted run and its continuation; everything that changes the result may not.
    """
    args = ctx.args
    ident = {"preset": ctx.preset.name, "data": ctx.bundle.name, "seed": args.seed, "limit_train": args.limit_train,
             "augment": bool(ctx.preset.augment and not args.no_augment), "epochs": plan.epochs,
             "batch_size": plan.batch_size, "lr": plan.lr, "min_lr": plan.min_lr,
             "weight_decay": plan.weight_decay, "warmup_epochs": plan.warmup_epochs,
             "recipe": recipe_name(args, ctx.preset)}
    if stage == "teacher":
        ident["smoothing"] = args.smoothing
        if args.teacher_checkpoint:  # the teacher fine-tunes this file: another file makes another run
            ident["teacher_sha256"] = file_sha256(Path(args.teacher_checkpoint))
    else:
        ident.update(method=args.method, quant_options=quant_options(stage, args), distill=args.distill,
                     distill_alpha=args.distill_alpha, tau=args.tau)
        if stage == "stage2":
            ident["int_aware_epochs"] = plan.int_aware_epochs
            ident["int_aware_control"] = plan.int_aware_control
        if args.distill != "none":  # the teacher is used every epoch: a retrained one makes another run
            path = timm_teacher_file(args) or stage_input(args.teacher, ctx.out / "teacher" / "best.pt",
                                                          "--teacher", stage, "a teacher")
            ident["teacher_sha256"] = file_sha256(path)
    return json.loads(json.dumps(ident))  # as it reads back from a checkpoint (tuples -> lists)


def file_sha256(path: Path) -> str:
    from gsbsim.paths import input_file_problem
    problem = input_file_problem(path)
    if problem:
        raise CheckpointError(f"{path}: checkpoint {problem}")
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    return h.hexdigest()


#: what a run identity key absent from a checkpoint means (written before the option existed)
ABSENT_MEANS = {"int_aware_control": False}


def check_same_run(saved: dict | None, wanted: dict, path: Path) -> None:
    """Refuse a --resume whose arguments differ from the interrupted run's (one line naming them)."""
    if not isinstance(saved, dict):
        raise TrainError(f"--resume: {path} does not record the arguments of its run (written by an older "
                         "trainer), so it cannot be checked to be the same run; start afresh without --resume")
    had = {k: saved.get(k, ABSENT_MEANS.get(k)) for k in wanted}
    diff = [k for k in wanted if had[k] != wanted[k]]
    if diff:
        said = ", ".join("the teacher checkpoint changed since" if k == "teacher_sha256"
                         else f"{k} {had[k]!r} (now {wanted[k]!r})" for k in diff[:4])
        raise TrainError(f"--resume: {path} belongs to a run with other arguments: {said}; pass the same "
                         "arguments to continue it, or leave out --resume to start afresh")


def grid_epochs_to_come(ckpt: dict, wanted: dict, plan: StagePlan) -> dict | None:
    """The identity a --resume is checked against: the checkpoint's, except that --int-aware-epochs
    (and --int-aware-control) may change while no epoch on the grid has run. The float epochs do not
    depend on them (the fine-tuning has its own schedule after them), so a finished float stage 2 can
    be continued on the grid, or off it as its control (docs/integer_model.md §11), and reaches what a
    run with the option from the start does."""
    saved = ckpt.get("run")
    if isinstance(saved, dict) and "int_aware_epochs" in wanted and int(ckpt["epoch"]) <= plan.epochs:
        keys = ("int_aware_epochs", "int_aware_control")    # absent: a run from before the option
        return {**{k: v for k, v in saved.items() if k not in keys}, **{k: wanted[k] for k in keys if k in wanted}}
    return saved


def epoch_grid(model: nn.Module, calib, plan: StagePlan):
    """The grid an integer-aware epoch trains and validates on: the F the export would start from
    now, or none for --int-aware-control (the same epochs off the grid, their control)."""
    return None if plan.int_aware_control else int_aware.grid_for(model, calib)


def _int_aware_phrase(plan: StagePlan) -> str:
    if not plan.int_aware_epochs:
        return ""
    if plan.int_aware_control:
        return f" + {plan.int_aware_epochs} with the integer-aware schedule off the grid (--int-aware-control)"
    return f" + {plan.int_aware_epochs} on the integer grid"


def find_resume(stage: str, ctx: Context, plan: StagePlan, first: bool) -> dict | None:
    """The stage's last.pt for --resume, or None for a fresh start (later stages of 'all' not begun yet)."""
    path = ctx.out / stage / "last.pt"
    if not path.exists():
        if first:
            raise TrainError(f"--resume: {path} does not exist (nothing to resume)")
        return None
    ckpt = load_checkpoint(path, required=CHECKPOINT_KEYS)
    if ckpt["kind"] != stage or ckpt["preset"].get("name") != ctx.preset.name:
        raise CheckpointError(f"{path}: holds {ckpt['kind']} of preset {ckpt['preset'].get('name')}, "
                              f"not {stage} of preset {ctx.preset.name}")
    wanted = run_identity(stage, ctx, plan)
    check_same_run(grid_epochs_to_come(ckpt, wanted, plan), wanted, path)
    if int(ckpt["epoch"]) > plan.total_epochs:
        raise TrainError(f"--resume: {path} has run {ckpt['epoch']} epochs, more than the {plan.total_epochs} asked")
    check_best_of_run(ckpt, path.parent / "best.pt")
    return ckpt


def check_best_of_run(last: dict, best_path: Path) -> None:
    """The run's best.pt must be there and be the epoch last.pt calls the best, else one line now.

    Otherwise a deleted or replaced best.pt would surface only at the end of the resumed run
    (the test evaluation loads it) or, if a later epoch overwrote it, never. One later epoch is
    accepted: a kill between the two writes of an epoch leaves best.pt one epoch ahead of
    last.pt; that epoch is trained again, identically, and rewrites it.
    """
    if int(last.get("best_epoch", 0)) < 1:
        return
    try:
        best = load_checkpoint(best_path, required=("epoch",))
    except CheckpointError as e:
        raise TrainError(f"--resume: {e}; the run's best checkpoint is needed to continue it (start afresh "
                         "without --resume)") from None
    epoch, wanted = int(best["epoch"]), int(last["best_epoch"])
    same_run = best.get("run") == last.get("run")
    if not same_run or epoch not in (wanted, int(last["epoch"]) + 1):
        raise TrainError(f"--resume: {best_path} holds epoch {epoch} of {'this' if same_run else 'another'} run, "
                         f"but last.pt records epoch {wanted} as this run's best; it was replaced (start afresh "
                         "without --resume)")


def restore_training(ckpt: dict, path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                     schedule: CosineSchedule) -> tuple[int, float, int, float]:
    """Load a last.pt into model/optimizer/schedule; returns (epochs done, best val, best epoch, wall time)."""
    load_weights(model, ckpt["model"], path)
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: optimizer state does not fit ({e})") from None
    schedule.load_state_dict(ckpt["scheduler"])
    return (int(ckpt["epoch"]), float(ckpt["best_val"]), int(ckpt.get("best_epoch", 0)),
            float(ckpt.get("wall_time", 0.0)))


def remove_stale_temps(stage_dir: Path) -> None:
    """Temporary files of atomic writes (.last.pt.XXXX.tmp, ...) that a killed run left behind.

    Safe because the trainer holds the output folder's lock: no live writer owns them.
    """
    remove_stale(stage_dir, [f".{name}." for name in STAGE_FILES], suffix=".tmp")


def clear_stage_dir(stage_dir: Path) -> None:
    """Remove every file a run of this stage writes (a fresh start; files of the user's are kept)."""
    for name in STAGE_FILES:
        (stage_dir / name).unlink(missing_ok=True)
    remove_stale_temps(stage_dir)
    try:
        stage_dir.rmdir()  # only when empty
    except OSError:
        pass


def prepare_stage_dir(stage_dir: Path, resumed_after: int | None) -> list[dict]:
    """Create the stage folder (only once every input is known to be valid); returns the metrics kept.

    A fresh start removes every file of a previous run (last.pt too: a later --resume must
    not continue the old run); a resumed one drops the metrics lines of epochs after its
    checkpoint (and a last line half-written when the run was killed).
    """
    if resumed_after is not None:
        remove_stale_temps(stage_dir)
        try:
            return truncate_jsonl(stage_dir / "metrics.jsonl", resumed_after)
        except ValueError as e:
            raise TrainError(f"--resume: {e}") from None
    clear_stage_dir(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    return []


def run_stage(stage: str, ctx: Context, first: bool) -> dict:
    """Train one stage (or continue it with --resume) and return its summary."""
    args, d = ctx.args, ctx.dist
    plan = plan_stage(stage, args, ctx.preset, d)
    stage_dir = ctx.out / stage
    resume = find_resume(stage, ctx, plan, first) if args.resume else None
    if resume is not None and int(resume["epoch"]) >= plan.total_epochs and (stage_dir / "summary.json").is_file():
        summary = json.loads((stage_dir / "summary.json").read_text())
        ctx.say(f"[{stage}] already finished ({resume['epoch']} epochs), skipped")
        return summary

    seed_everything(args.seed + d.rank)
    teacher = load_teacher(stage, ctx) if stage != "teacher" else None
    model = build_stage_model(stage, ctx)
    init_path = init_from_stage1(model, ctx) if stage == "stage2" and resume is None else None
    if stage == "teacher" and resume is None and args.teacher_checkpoint:
        init_path = init_teacher_from_file(model, args.teacher_checkpoint, ctx.say)
    model.to(ctx.device)
    optimizer = build_optimizer(model, plan.lr, plan.weight_decay)
    schedule = CosineSchedule(optimizer, plan.lr, plan.min_lr, plan.epochs, plan.warmup_epochs)
    fine_tune = int_aware.fine_tune_schedule(optimizer, plan.lr, plan.min_lr, plan.int_aware_epochs)
    calib = int_aware.calibration_images(ctx.bundle.train) if plan.int_aware_epochs else None
    start, best_val, best_epoch, elapsed = 0, -1.0, 0, 0.0
    if resume is not None:
        start, best_val, best_epoch, elapsed = restore_training(resume, stage_dir / "last.pt", model, optimizer,
                                                                schedule)
        init_path = resume.get("init")
    loss_fn = TrainLoss(args.distill, teacher, args.distill_alpha, args.tau, args.smoothing,
                        student=stage != "teacher")
    net = model
    if d.enabled:
        init_scales_before_ddp(model, ctx.train_set, plan.batch_size // d.world_size, args.seed, d, ctx.device)
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)

    records = prepare_stage_dir(stage_dir, start if resume is not None else None) if d.is_main else []
    if d.is_main and resume is None and args.stage == "all":
        for later in STAGES[STAGES.index(stage) + 1:]:  # they were trained from this stage's old result
            clear_stage_dir(ctx.out / later)
    meta = {"preset": preset_to_dict(ctx.preset), "kind": stage, "num_classes": ctx.bundle.num_classes,
            "in_chans": ctx.in_chans, "img_size": ctx.bundle.img_size, "quant_options": quant_options(stage, args),
            "args": dict(vars(args)), "dataset": ctx.bundle.name,
            "teacher": str(args.teacher or ctx.out / "teacher" / "best.pt") if teacher is not None else None,
            "init": str(init_path) if init_path else None, "run": run_identity(stage, ctx, plan)}
    per_process = plan.batch_size // d.world_size
    ctx.say(f"[{stage}] {sum(p.numel() for p in model.parameters()):,} parameters, {plan.epochs} epochs"
            + _int_aware_phrase(plan) + ", "
            f"batch {plan.batch_size}, lr {plan.lr:g} ({plan.lr_rule}), {len(ctx.train_set)} training images"
            + (f", resuming after epoch {start}" if resume is not None else ""))
    if resume is not None:
        restore_rng(resume["rng"])
        if d.rank:
            seed_everything(args.seed + d.rank + 7919 * start)  # only rank 0's RNG state is stored

    for epoch in range(start, plan.total_epochs):
        t0 = time.time()
        on_grid = epoch >= plan.epochs
        lr = fine_tune.step(epoch - plan.epochs) if on_grid else schedule.step(epoch)
        if on_grid:   # the integer-aware phase: trained on the grid of the model as it is now
            set_integer_grid(model, epoch_grid(model, calib, plan))
            if epoch == plan.epochs:   # best.pt is chosen among the epochs validated on the grid only
                best_val, best_epoch = -1.0, 0
        loader = train_loader(ctx.train_set, per_process, epoch, args.seed, d, args.workers)
        with reading_data(f"{stage} epoch {epoch + 1}/{plan.total_epochs}"):
            train_loss, train_acc = train_one_epoch(net, loss_fn, optimizer, loader, ctx.device, d,
                                                    f"{stage} {epoch + 1}/{plan.total_epochs}", ctx.progress)
            sync_buffers(model, d)
            grid = epoch_grid(model, calib, plan) if on_grid else None   # the F the export would start from now
            set_integer_grid(model, grid)
            val_acc = evaluate(model, ctx.bundle.val, per_process, ctx.device, d, args.workers)
            set_integer_grid(model, None)
        seconds = time.time() - t0
        elapsed += seconds
        is_best = val_acc > best_val
        if is_best:
            best_val, best_epoch = val_acc, epoch + 1
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                  "val_acc": val_acc, "time": seconds}
        if grid is not None:
            record["frac_bits"] = grid.frac_bits
        ctx.say(f"[{stage}] epoch {epoch + 1}/{plan.total_epochs}  lr {lr:.3g}  loss {train_loss:.4f}  "
                f"train {train_acc:.2f}%  val {val_acc:.2f}%"
                + (f" on the grid F={grid.frac_bits}" if grid is not None else "")
                + f"  ({seconds:.1f}s)" + ("  *" if is_best else ""))
        if d.is_main:
            state = {**meta, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": schedule.state_dict(), "epoch": epoch + 1, "best_val": best_val,
                     "best_epoch": best_epoch, "val_acc": val_acc, "wall_time": elapsed, "rng": capture_rng()}
            append_jsonl(stage_dir / "metrics.jsonl", record)
            records.append(record)
            if is_best:
                save_checkpoint(state, stage_dir / "best.pt")
            save_checkpoint(state, stage_dir / "last.pt")
            plot_curves(records, stage_dir / "curves.png", f"{ctx.preset.name} {stage}")

    barrier(d)
    best_path = stage_dir / "best.pt"
    load_weights(model, load_checkpoint(best_path)["model"], best_path)
    grid = epoch_grid(model, calib, plan) if plan.int_aware_epochs else None
    set_integer_grid(model, grid)   # an integer-aware stage reports its test top-1 on the grid too
    with reading_data(f"{stage} test evaluation"):
        test_acc = evaluate(model, ctx.bundle.test, per_process, ctx.device, d, args.workers)
    set_integer_grid(model, None)
    summary = {"stage": stage, "best_epoch": best_epoch, "best_val_acc": best_val, "test_acc": test_acc,
               "epochs": plan.total_epochs, "int_aware_epochs": plan.int_aware_epochs,
               "int_aware_control": plan.int_aware_control,
               "grid_frac_bits": grid.frac_bits if grid else None, "wall_time": elapsed, "best_path": str(best_path),
               "dataset": ctx.bundle.name, "preset": ctx.preset.name, "world_size": d.world_size,
               "teacher": meta["teacher"], "init": meta["init"], "args": meta["args"]}
    if d.is_main:
        write_text_atomic(stage_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    ctx.say(f"[{stage}] best epoch {best_epoch}: val {best_val:.2f}%, test {test_acc:.2f}%")
    barrier(d)
    return summary
