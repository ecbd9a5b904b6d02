"""Which recipe a run follows (``--recipe``), and its batch size and learning rate per stage.

``preset``: the preset's recipe as written (the digits and mnist presets are tuned for a CPU).
``released``: the released GSB code's (research/gsb.md §4.2), the paper presets' default: the
preset's batch is per process (64 per GPU) so the total batch is 64 x world size unless
``--batch-size`` (total) says otherwise, and lr = 1e-3 x total batch / 512 unless ``--lr``;
the data pipeline is timm's create_transform (reference/data/released.py) and the teacher can
be a timm checkpoint file (reference/teachers.py).
"""
from __future__ import annotations

import argparse

RECIPES = ("preset", "released")
RELEASED_BASE_LR = 1e-3
RELEASED_LR_BATCH = 512


def recipe_name(args: argparse.Namespace, preset) -> str:
    return args.recipe or getattr(preset, "default_recipe", "preset")


def batch_and_lr(recipe, args: argparse.Namespace, preset, world_size: int) -> tuple[int, float, str]:
    """(total batch, peak lr, how the lr was set) of one stage's Recipe."""
    released = recipe_name(args, preset) == "released"
    if args.batch_size:
        batch, whence = args.batch_size, f"--batch-size {args.batch_size}"
    elif released:
        batch, whence = recipe.batch_size * world_size, f"{recipe.batch_size} per process x {world_size}"
    else:
        batch, whence = recipe.batch_size, "the preset's batch"
    if args.lr is not None:
        return batch, args.lr, "--lr"
    if released:
        lr = RELEASED_BASE_LR * batch / RELEASED_LR_BATCH
        return batch, lr, (f"released rule: {RELEASED_BASE_LR:g} x total batch {batch} ({whence}) / "
                           f"{RELEASED_LR_BATCH}")
    return batch, recipe.lr, "the preset's recipe"
