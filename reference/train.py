"""Train the reference models: full-precision teacher -> stage 1 -> stage 2 (``python -m reference.train``).

The recipe is the released GSB one (research/gsb.md §4): AdamW, cosine schedule
stepped per epoch, DeiT hard-label distillation from the teacher, stage 2
initialised from stage 1's best checkpoint. Each stage writes <out>/<stage>/:
last.pt, best.pt (best *validation* top-1), metrics.jsonl, curves.png,
summary.json. ``--resume`` continues an interrupted stage and reaches the same
weights as an uninterrupted run (single process): RNG states, optimizer and
scheduler are restored and epoch e's data order is seeded by seed + e.

Under torchrun (RANK/WORLD_SIZE set) every process trains on its DistributedSampler
share; --batch-size is the *total* batch (each process takes batch/world_size) and
the lr is the lr of that total batch, not rescaled, so a 2-process run follows the
same recipe as a 1-process one. Validation and test are scored on disjoint shards
and summed; float buffers (BatchNorm statistics) are averaged after each epoch;
only rank 0 writes files and prints. Resuming a torchrun job restores rank 0's
RNG state (other ranks are re-seeded), so bit-exact resume is a 1-process property.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset

from .checkpoint import (CHECKPOINT_KEYS, CheckpointError, capture_rng, load_checkpoint, load_model, load_weights,
                         preset_to_dict, restore_rng, save_checkpoint, write_text_atomic)
from .config import METHODS
from .distill import DISTILL_KINDS, TrainLoss, student_logits
from .metrics import append_jsonl, format_table, percent, plot_curves, top1_correct, truncate_jsonl

PROG = "python -m reference.train"
STAGES = ("teacher", "stage1", "stage2")
TEACHER_SMOOTHING = 0.1
ADAM_EPS = 1e-8
# Parameters that get no weight decay besides every tensor with ndim <= 1 (timm's rule, research/gsb.md §4.2).
NO_DECAY_SUFFIXES = (".bias", "pos_embed", "cls_token", "dist_token", "alpha")

EXAMPLES = f"""\
examples:
  {PROG}                                   # digits: teacher -> stage1 -> stage2 in runs/digits
  {PROG} --stage teacher --epochs 5 --no-progress
  {PROG} --stage stage1 --teacher runs/digits/teacher/best.pt
  {PROG} --stage stage2 --teacher runs/digits/teacher/best.pt --init runs/digits/stage1/best.pt
  {PROG} --resume                          # continue an interrupted run in runs/digits
  {PROG} --preset cifar --data cifar100 --data-path ~/data/cifar-100-python --device cuda
  torchrun --nproc_per_node 2 -m reference.train --device cpu --limit-train 256 --epochs 1

files per stage (<out>/<stage>/): last.pt (every epoch, atomic), best.pt (best validation top-1),
metrics.jsonl (epoch, lr, train_loss, train_acc, val_acc, time), curves.png, summary.json.
Accuracies are percentages. Bad input exits with status 2 and one line on stderr.
"""


class TrainError(Exception):
    """Bad input to the trainer (arguments, data, checkpoints): reported as one line, exit status 2."""


# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Train the GSB reference models: a full-precision teacher, then the binary\n"
                               "student in two stages (stage1: binary MLP weights; stage2: the full binary\n"
                               "model, initialised from stage1), both distilled from the teacher.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to train")
    g.add_argument("--stage", choices=STAGES + ("all",), default="all",
                   help="stage to train; 'all' (default) runs teacher -> stage1 -> stage2, each stage using the "
                        "previous stages' best.pt (students distil from the teacher, stage2 starts from stage1)")
    g.add_argument("--preset", default="digits", metavar="NAME",
                   help="model preset and recipe: digits (default), cifar, deit_tiny, deit_small")
    g.add_argument("--data", default=None, metavar="NAME", help="dataset name (default: the preset's dataset)")
    g.add_argument("--data-path", default=None, metavar="PATH", help="dataset location on disk (not needed for digits)")
    g.add_argument("--out", default=None, metavar="DIR", help="output directory (default: runs/<preset>)")
    g.add_argument("--teacher", default=None, metavar="CKPT",
                   help="teacher checkpoint for a single student stage (default: <out>/teacher/best.pt)")
    g.add_argument("--init", default=None, metavar="CKPT",
                   help="stage-1 checkpoint that initialises a single stage2 run (default: <out>/stage1/best.pt)")
    g.add_argument("--resume", action="store_true",
                   help="continue the interrupted stage from <out>/<stage>/last.pt (finished stages are skipped)")
    g.add_argument("--limit-train", type=int, default=None, metavar="N",
                   help="train on N training images only (a fixed random subset; for tests and smoke runs)")
    g.add_argument("--no-augment", action="store_true",
                   help="no train-time augmentation (the digits preset has none anyway)")

    g = p.add_argument_group("recipe overrides (defaults come from the preset's recipe per stage)")
    g.add_argument("--epochs", type=int, default=None, metavar="N", help="epochs of every stage")
    for stage in STAGES:
        g.add_argument(f"--epochs-{stage}", type=int, default=None, metavar="N",
                       help=f"epochs of {stage} (beats --epochs)")
    g.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="total batch size over all processes (split evenly between torchrun processes)")
    g.add_argument("--lr", type=float, default=None,
                   help="peak learning rate for the total batch; it is NOT rescaled with the number of "
                        "processes (the presets already apply the released lr = 1e-3 * batch / 512)")
    g.add_argument("--weight-decay", type=float, default=None, metavar="WD",
                   help="AdamW weight decay (never applied to biases, norms, tokens, pos_embed, scales)")
    g.add_argument("--seed", type=int, default=0, metavar="N",
                   help="random seed (default 0); epoch e shuffles with seed + e")

    g = p.add_argument_group("distillation (student stages)")
    g.add_argument("--distill", choices=DISTILL_KINDS, default=None,
                   help="default: the preset's (hard for the paper presets, soft for digits); hard: CE to the teacher's arg-max on the distillation head; soft: KL to the "
                        "teacher's softened logits; none: CE to the labels on both heads")
    g.add_argument("--distill-alpha", type=float, default=0.5, metavar="A",
                   help="weight a of the distillation term: (1-a)*CE(cls, y) + a*distill (default 0.5)")
    g.add_argument("--tau", type=float, default=None,
                   help="temperature of soft distillation (default: the preset's; 1.0 for the paper presets)")
    g.add_argument("--smoothing", type=float, default=TEACHER_SMOOTHING, metavar="S",
                   help=f"label smoothing of the teacher's cross-entropy (default {TEACHER_SMOOTHING})")

    g = p.add_argument_group("quantization (student stages; passed to models.build_model)")
    g.add_argument("--method", choices=METHODS, default="gsb",
                   help="student method (docs/didb.md): gsb (default), didb (our DIDB-ViT formulation), "
                        "bit, reactnet, sign (baselines) or fp (full-precision student, the upper bound); "
                        "every method but gsb uses one binary plane (--groups is ignored)")
    g.add_argument("--groups", type=int, default=3, metavar="G", help="GSB groups per tensor (default 3, as released)")
    g.add_argument("--mask-stat", choices=("row", "image", "batch"), default="row",
                   help="statistic of the GSB mask max: row (default, batch-independent), image, or batch "
                        "(the released code: an image's output depends on its batch)")
    g.add_argument("--released-quirks", action="store_true",
                   help="reproduce the released code's quirks (raw band-mean scales, 3x value input gradient)")

    g = p.add_argument_group("machine")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto (default): cuda if available, else cpu. Under torchrun each process uses "
                        "cuda:LOCAL_RANK (nccl) or the cpu (gloo); only rank 0 writes files and prints")
    g.add_argument("--workers", type=int, default=0, metavar="N", help="data-loader worker processes (default 0)")
    g.add_argument("--no-progress", action="store_true",
                   help="no progress bars (they are also off when stderr is not a terminal)")
    return p


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Range checks argparse cannot express (exit 2 through p.error)."""
    positive = ["epochs", "batch_size", "limit_train"] + [f"epochs_{s}" for s in STAGES]
    for name in positive:
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("lr", "tau"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            p.error(f"--{name.replace('_', '-')} must be > 0, got {value}")
    if args.weight_decay is not None and args.weight_decay < 0:
        p.error(f"--weight-decay must be >= 0, got {args.weight_decay}")
    if not 0.0 <= args.distill_alpha <= 1.0:
        p.error(f"--distill-alpha must be in [0, 1], got {args.distill_alpha}")
    if not 0.0 <= args.smoothing < 1.0:
        p.error(f"--smoothing must be in [0, 1), got {args.smoothing}")
    if args.workers < 0:
        p.error(f"--workers must be >= 0, got {args.workers}")
    if args.groups < 1:
        p.error(f"--groups must be >= 1, got {args.groups}")
    if args.stage == "all" and (args.teacher or args.init):
        p.error("--teacher and --init are for single-stage runs; --stage all uses <out>/teacher and <out>/stage1")
    if args.teacher and args.stage == "teacher":
        p.error("--teacher is for the student stages (stage1, stage2)")
    if args.init and args.stage != "stage2":
        p.error("--init is for --stage stage2")


# ----------------------------------------------------------------------------- processes and devices
@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (world_size 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA device is available")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def setup_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Init the process group when launched by torchrun (nccl on CUDA, gloo on CPU)."""
    if not launched_by_torchrun():
        return Dist(), resolve_device(device_name)
    d = Dist(rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
             local_rank=int(os.environ.get("LOCAL_RANK", 0)))
    device = resolve_device(device_name, d.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if d.enabled and not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return d, device


def barrier(d: Dist) -> None:
    if d.enabled:
        torch_dist.barrier()


def all_sum(values: Sequence[float], d: Dist, device: torch.device) -> list[float]:
    """Sum numbers over all processes (identity without torchrun)."""
    if not d.enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    torch_dist.all_reduce(t)
    return t.tolist()


def sync_buffers(model: nn.Module, d: Dist) -> None:
    """Make every process's buffers equal after an epoch (before evaluating and saving).

    DDP broadcasts rank 0's buffers at the start of each forward, so after the last
    step each process holds running statistics (stage 1's BatchNorm) updated by its
    own batch only. Float buffers are averaged over the processes (timm's
    distribute_bn), the others (counters, flags) copied from rank 0.
    """
    if not d.enabled:
        return
    for buf in unwrap(model).buffers():
        if buf.is_floating_point():
            torch_dist.all_reduce(buf)
            buf.div_(d.world_size)
        else:
            torch_dist.broadcast(buf, 0)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ----------------------------------------------------------------------------- optimiser and schedule
def skip_weight_decay(name: str, param: torch.Tensor) -> bool:
    """No decay for 0-/1-d tensors (biases, norms, scalar scales) and for biases, tokens, pos_embed, alphas."""
    return param.ndim <= 1 or name.endswith(NO_DECAY_SUFFIXES)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weights and the rest (trainable parameters only)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if skip_weight_decay(name, param) else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, eps=ADAM_EPS)


class CosineSchedule:
    """Per-epoch learning rate: linear warm-up, then cosine from lr to min_lr.

    Epoch e < warmup: lr * (e + 1) / (warmup + 1). Then cosine over the remaining
    epochs: min_lr + (lr - min_lr) * (1 + cos(pi * (e - warmup) / (epochs - warmup))) / 2,
    so epoch `warmup` runs at lr and the curve would reach min_lr at e = epochs
    (timm's CosineLRScheduler with t_initial = epochs).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, min_lr: float, epochs: int,
                 warmup_epochs: int = 0):
        self.optimizer, self.lr, self.min_lr = optimizer, lr, min(min_lr, lr)
        self.epochs, self.warmup_epochs = epochs, max(0, min(warmup_epochs, epochs - 1))
        self.last_epoch = -1

    def lr_at(self, epoch: int) -> float:
        w = self.warmup_epochs
        if epoch < w:
            return self.lr * (epoch + 1) / (w + 1)
        t = (epoch - w) / max(1, self.epochs - w)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * t))

    def step(self, epoch: int) -> float:
        """Set every group's lr for `epoch` (0-based) and return it."""
        lr = self.lr_at(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.last_epoch = epoch
        return lr

    def state_dict(self) -> dict:
        return {"lr": self.lr, "min_lr": self.min_lr, "epochs": self.epochs, "warmup_epochs": self.warmup_epochs,
                "last_epoch": self.last_epoch}

    def load_state_dict(self, state: dict) -> None:
        """Restore the position; the shape of the curve stays the one of the current arguments."""
        self.last_epoch = int(state["last_epoch"])


# ----------------------------------------------------------------------------- data
def limit_dataset(dataset: Dataset, n: int | None, seed: int) -> Dataset:
    """A fixed random subset of n items (the same for every process and every epoch)."""
    if n is None or n >= len(dataset):
        return dataset
    g = torch.Generator().manual_seed(seed)
    return Subset(dataset, torch.randperm(len(dataset), generator=g)[:n].tolist())


def train_loader(dataset: Dataset, batch_size: int, epoch: int, seed: int, d: Dist, workers: int) -> DataLoader:
    """Epoch e's shuffled loader, seeded by seed + e only, so the order does not depend on history.

    drop_last (as released) unless the (per-process) set is smaller than one batch.
    """
    g = torch.Generator().manual_seed(seed + epoch)
    if d.enabled:
        sampler = DistributedSampler(dataset, num_replicas=d.world_size, rank=d.rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        per_process = len(sampler)
    else:
        sampler = RandomSampler(dataset, generator=g)
        per_process = len(dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      drop_last=per_process >= batch_size, generator=g)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device, d: Dist,
             workers: int = 0) -> float:
    """Top-1 (%) in eval mode; under torchrun each process scores every world_size-th image, then sums."""
    model = unwrap(model)
    was_training = model.training
    model.eval()
    part = Subset(dataset, range(d.rank, len(dataset), d.world_size)) if d.enabled else dataset
    loader = DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))  # leaves the global RNG alone
    correct = total = 0
    for images, labels in loader:
        logits = model(images.to(device).float())
        correct += top1_correct(logits, labels.to(device))
        total += len(labels)
    model.train(was_training)
    correct, total = all_sum([correct, total], d, device)
    return percent(correct, total)


def train_one_epoch(model: nn.Module, loss_fn: TrainLoss, optimizer: torch.optim.Optimizer, loader: DataLoader,
                    device: torch.device, d: Dist, desc: str = "", progress: bool = False) -> tuple[float, float]:
    """One pass over the loader; returns (mean loss, top-1 % of the train-mode logits) over all processes."""
    from tqdm import tqdm

    model.train()
    loss_fn.train()
    loss_sum, correct, count = 0.0, 0, 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, dynamic_ncols=True)
    for images, labels in bar:
        images, labels = images.to(device, non_blocking=True).float(), labels.to(device, non_blocking=True)
        outputs = model(images)
        loss = loss_fn(images, outputs, labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: the loss became {loss.item()}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = len(labels)
        loss_sum += loss.item() * n
        correct += top1_correct(student_logits(outputs).detach(), labels)
        count += n
        bar.set_postfix(loss=f"{loss_sum / count:.4f}")
    bar.close()
    loss_sum, correct, count = all_sum([loss_sum, correct, count], d, device)
    return loss_sum / max(count, 1), percent(correct, count)


def init_scales_before_ddp(model: nn.Module, dataset: Dataset, batch_size: int, seed: int, d: Dist,
                           device: torch.device) -> None:
    """Run the quantizers' data-dependent scale init before DistributedDataParallel wraps the model.

    The scales are set on a quantizer's first training forward (an ``initialized``
    buffer records it). Left to the first step, every process would take them from
    its own batch and the replicas would drift apart; initialised here, they are
    then made equal by DDP, which broadcasts rank 0's parameters and buffers.
    """
    pending = [name for name, buf in model.named_buffers() if name.endswith("initialized") and not bool(buf)]
    if not pending:
        return
    images, _ = next(iter(train_loader(dataset, batch_size, 0, seed, d, 0)))
    model.train()
    with torch.no_grad():
        model(images.to(device).float())


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
            print(msg, flush=True)


@dataclass
class StagePlan:
    stage: str
    epochs: int
    batch_size: int
    lr: float
    min_lr: float
    weight_decay: float
    warmup_epochs: int


def plan_stage(stage: str, args: argparse.Namespace, preset, d: Dist) -> StagePlan:
    recipe = preset.recipe(stage)
    epochs = getattr(args, f"epochs_{stage}") or args.epochs or recipe.epochs
    batch = args.batch_size or recipe.batch_size
    if batch % d.world_size:
        raise TrainError(f"--batch-size {batch} is not divisible by the {d.world_size} processes")
    lr = args.lr if args.lr is not None else recipe.lr
    wd = args.weight_decay if args.weight_decay is not None else recipe.weight_decay
    return StagePlan(stage, epochs, batch, lr, recipe.min_lr, wd, recipe.warmup_epochs)


def quant_options(stage: str, args: argparse.Namespace) -> dict:
    """What build_model gets as **quant_options (nothing for the teacher)."""
    if stage == "teacher":
        return {}
    options = {"groups": args.groups, "mask_stat": args.mask_stat, "released_quirks": bool(args.released_quirks)}
    if args.method != "gsb":  # absent means gsb: checkpoints written before --method existed
        options["method"] = args.method
    return options


def build_stage_model(stage: str, ctx: Context) -> nn.Module:
    from .models import build_model

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


def load_teacher(stage: str, ctx: Context) -> nn.Module | None:
    if ctx.args.distill == "none":
        return None
    path = stage_input(ctx.args.teacher, ctx.out / "teacher" / "best.pt", "--teacher", stage, "a teacher")
    teacher, meta = load_model(path, map_location="cpu")
    check_fits(meta, path, ctx, "teacher")
    return teacher.to(ctx.device)


def init_from_stage1(model: nn.Module, ctx: Context) -> Path:
    from .models import load_stage1

    path = stage_input(ctx.args.init, ctx.out / "stage1" / "best.pt", "--init", "stage2", "a stage-1 checkpoint")
    ckpt = load_checkpoint(path)
    check_fits(ckpt, path, ctx, "stage1")
    # binary methods share GSB's stage 1; only fp's (a float model) differs
    theirs = dict(ckpt.get("quant_options", {})).get("method", "gsb")
    if (theirs == "fp") != (ctx.args.method == "fp"):
        raise CheckpointError(f"{path}: is a stage-1 checkpoint of method {theirs!r}, "
                              f"which cannot start a {ctx.args.method!r} stage 2")
    missing = load_stage1(model, ckpt["model"])
    if len(missing) == len(model.state_dict()):
        raise CheckpointError(f"{path}: no tensor fits the stage-2 model")
    return path


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
    if int(ckpt["epoch"]) > plan.epochs:
        raise TrainError(f"--resume: {path} has run {ckpt['epoch']} epochs, more than the {plan.epochs} asked")
    return ckpt


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


def prepare_stage_dir(stage_dir: Path, resumed_after: int | None) -> list[dict]:
    """Create the stage folder (only once every input is known to be valid); returns the metrics kept.

    A fresh start removes a previous run's metrics, summary, best.pt and curves; a
    resumed one drops the metrics lines of epochs after its checkpoint.
    """
    stage_dir.mkdir(parents=True, exist_ok=True)
    if resumed_after is not None:
        return truncate_jsonl(stage_dir / "metrics.jsonl", resumed_after)
    for name in ("metrics.jsonl", "summary.json", "best.pt", "curves.png"):
        (stage_dir / name).unlink(missing_ok=True)
    return []


def run_stage(stage: str, ctx: Context, first: bool) -> dict:
    """Train one stage (or continue it with --resume) and return its summary."""
    args, d = ctx.args, ctx.dist
    plan = plan_stage(stage, args, ctx.preset, d)
    stage_dir = ctx.out / stage
    resume = find_resume(stage, ctx, plan, first) if args.resume else None
    if resume is not None and int(resume["epoch"]) >= plan.epochs and (stage_dir / "summary.json").is_file():
        summary = json.loads((stage_dir / "summary.json").read_text())
        ctx.say(f"[{stage}] already finished ({resume['epoch']} epochs), skipped")
        return summary

    seed_everything(args.seed + d.rank)
    teacher = load_teacher(stage, ctx) if stage != "teacher" else None
    model = build_stage_model(stage, ctx)
    init_path = init_from_stage1(model, ctx) if stage == "stage2" and resume is None else None
    model.to(ctx.device)
    optimizer = build_optimizer(model, plan.lr, plan.weight_decay)
    schedule = CosineSchedule(optimizer, plan.lr, plan.min_lr, plan.epochs, plan.warmup_epochs)
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
    meta = {"preset": preset_to_dict(ctx.preset), "kind": stage, "num_classes": ctx.bundle.num_classes,
            "in_chans": ctx.in_chans, "img_size": ctx.bundle.img_size, "quant_options": quant_options(stage, args),
            "args": dict(vars(args)), "dataset": ctx.bundle.name,
            "teacher": str(args.teacher or ctx.out / "teacher" / "best.pt") if teacher is not None else None,
            "init": str(init_path) if init_path else None}
    per_process = plan.batch_size // d.world_size
    ctx.say(f"[{stage}] {sum(p.numel() for p in model.parameters()):,} parameters, {plan.epochs} epochs, "
            f"batch {plan.batch_size}, lr {plan.lr:g}, {len(ctx.train_set)} training images"
            + (f", resuming after epoch {start}" if resume is not None else ""))
    if resume is not None:
        restore_rng(resume["rng"])
        if d.rank:
            seed_everything(args.seed + d.rank + 7919 * start)  # only rank 0's RNG state is stored

    for epoch in range(start, plan.epochs):
        t0 = time.time()
        lr = schedule.step(epoch)
        loader = train_loader(ctx.train_set, per_process, epoch, args.seed, d, args.workers)
        train_loss, train_acc = train_one_epoch(net, loss_fn, optimizer, loader, ctx.device, d,
                                                f"{stage} {epoch + 1}/{plan.epochs}", ctx.progress)
        sync_buffers(model, d)
        val_acc = evaluate(model, ctx.bundle.val, per_process, ctx.device, d, args.workers)
        seconds = time.time() - t0
        elapsed += seconds
        is_best = val_acc > best_val
        if is_best:
            best_val, best_epoch = val_acc, epoch + 1
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                  "val_acc": val_acc, "time": seconds}
        ctx.say(f"[{stage}] epoch {epoch + 1}/{plan.epochs}  lr {lr:.3g}  loss {train_loss:.4f}  "
                f"train {train_acc:.2f}%  val {val_acc:.2f}%  ({seconds:.1f}s)" + ("  *" if is_best else ""))
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
    test_acc = evaluate(model, ctx.bundle.test, per_process, ctx.device, d, args.workers)
    summary = {"stage": stage, "best_epoch": best_epoch, "best_val_acc": best_val, "test_acc": test_acc,
               "epochs": plan.epochs, "wall_time": elapsed, "best_path": str(best_path),
               "dataset": ctx.bundle.name, "preset": ctx.preset.name, "world_size": d.world_size,
               "teacher": meta["teacher"], "init": meta["init"], "args": meta["args"]}
    if d.is_main:
        write_text_atomic(stage_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    ctx.say(f"[{stage}] best epoch {best_epoch}: val {best_val:.2f}%, test {test_acc:.2f}%")
    barrier(d)
    return summary


# ----------------------------------------------------------------------------- entry point
def build_context(args: argparse.Namespace, d: Dist, device: torch.device) -> Context:
    from .presets import get_preset

    try:
        preset = get_preset(args.preset)
    except (KeyError, ValueError) as e:
        raise TrainError(f"--preset: {e.args[0] if e.args else e}") from None
    from .data import DataError, build_datasets  # after the cheap checks: it imports torchvision
    if args.data_path is not None and not Path(args.data_path).exists():
        raise TrainError(f"--data-path {args.data_path}: no such file or directory")
    name = args.data or preset.dataset
    args.distill = args.distill or preset.distill
    args.tau = preset.tau if args.tau is None else args.tau
    try:
        augment = preset.augment and not args.no_augment
        bundle = build_datasets(name, path=args.data_path, img_size=preset.img_size, augment=augment, seed=args.seed)
    except DataError as e:
        msg = str(e)
        raise TrainError(msg if msg.startswith(f"{name}:") else f"--data {name}: {msg}") from None
    if bundle.val is None or len(bundle.val) == 0:
        raise TrainError(f"--data {name}: the dataset has no validation split")
    in_chans = preset.in_chans or bundle.in_chans
    out = Path(args.out) if args.out else Path("runs") / preset.name
    progress = not args.no_progress and sys.stderr.isatty() and d.is_main
    return Context(args, preset, bundle, limit_dataset(bundle.train, args.limit_train, args.seed), in_chans,
                   device, d, out, progress)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    d = Dist()
    try:
        d, device = setup_distributed(args.device)
        ctx = build_context(args, d, device)
        stages = STAGES if args.stage == "all" else (args.stage,)
        summaries = [run_stage(stage, ctx, first=i == 0) for i, stage in enumerate(stages)]
    except (TrainError, CheckpointError) as e:
        if d.is_main:
            print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        if d.is_main:
            print(f"{PROG}: interrupted; continue with --resume", file=sys.stderr, flush=True)
        return 130
    finally:
        if torch_dist.is_available() and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
    ctx.say("\n" + format_table(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
