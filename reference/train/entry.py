"""The entry point ``python -m reference.train``: context from the arguments, then the stages in order."""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Sequence

import torch
import torch.distributed as torch_dist

from gsbsim.cli.signals import EXIT_BAD_INPUT, EXIT_FAILED, guarded, interrupt_status
from gsbsim.outputs import OutputError, folder_lock
from reference.checkpoint import CheckpointError
from reference.data.bundle import DataError
from reference.metrics import format_table
from reference.train.cli import PROG, build_parser, check_args
from reference.train.distributed import Dist, setup_distributed
from reference.train.errors import TrainError
from reference.train.loop import limit_dataset
from reference.train.recipe import recipe_name
from reference.train.teacher_file import describe_teacher_file
from reference.train.stages import Context, STAGES, run_stage


# ----------------------------------------------------------------------------- entry point
def build_context(args: argparse.Namespace, d: Dist, device: torch.device) -> Context:
    from reference.presets import get_preset

    try:
        preset = get_preset(args.preset)
    except (KeyError, ValueError) as e:
        raise TrainError(f"--preset: {e.args[0] if e.args else e}") from None
    from reference.data import DataError, build_datasets  # after the cheap checks: it imports torchvision
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
    describe_teacher_file(args, preset.in_chans or bundle.in_chans, bundle.img_size)
    if recipe_name(args, preset) == "released":
        from reference.data.released import IMAGENET_MEAN, IMAGENET_STD, apply_released_recipe
        arch = args.timm_arch or {}
        bundle = apply_released_recipe(bundle, arch.get("mean", IMAGENET_MEAN), arch.get("std", IMAGENET_STD))
    if bundle.val is None or len(bundle.val) == 0:
        raise TrainError(f"--data {name}: no validation images ({len(bundle.train)} training, {len(bundle.test)} "
                         "test images): the dataset is too small to hold out a validation split")
    in_chans = preset.in_chans or bundle.in_chans
    out = Path(args.out) if args.out else Path("runs") / preset.name
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {out} exists and is not a folder")
    progress = not args.no_progress and sys.stderr.isatty() and d.is_main
    return Context(args, preset, bundle, limit_dataset(bundle.train, args.limit_train, args.seed), in_chans,
                   device, d, out, progress)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m reference.train``; returns the exit status (docs/errors.md)."""
    return guarded(PROG, _main, argv, hint=RESUME_HINT)


RESUME_HINT = "; continue with --resume"


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    d = Dist()
    try:
        d, device = setup_distributed(args.device)
        ctx = build_context(args, d, device)
        stages = STAGES if args.stage == "all" else (args.stage,)
        # only rank 0 writes, so only it locks: a second training into the same --out stops here
        with folder_lock(ctx.out, "--out") if d.is_main else contextlib.nullcontext():
            summaries = [run_stage(stage, ctx, first=i == 0) for i, stage in enumerate(stages)]
    except (TrainError, CheckpointError, OutputError) as e:
        if d.is_main:
            print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    except FloatingPointError as e:  # diverged (loss nan/inf): the run failed, its last.pt is the epoch before
        if d.is_main:
            print(f"{PROG}: error: {_one_line(e)}; try a lower --lr", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (gsbsim/cli/signals.py); last.pt is the last epoch's
        status, word = interrupt_status(e)
        if d.is_main:
            print(f"{PROG}: {word}{RESUME_HINT}", file=sys.stderr, flush=True)
        return status
    except BrokenPipeError:
        raise  # stdout's reader left: guarded() ends quietly
    except (DataError, OSError) as e:  # an image or file found unreadable during training (the message names it)
        if d.is_main:
            print(f"{PROG}: error: {_one_line(e)}; fix it and continue with --resume", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    finally:
        if torch_dist.is_available() and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
    ctx.say("\n" + format_table(summaries))
    return 0


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
