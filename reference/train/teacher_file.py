"""``--teacher-checkpoint FILE``: read it once up front, initialise the teacher stage from it, or
use it as the students' teacher directly (reference/teachers.py does the timm side)."""
from __future__ import annotations

import argparse
from typing import Callable

import torch.nn as nn

from reference.teachers import (TeacherFileError, build_timm_teacher, check_fits_data, init_from_timm_state,
                                read_teacher_file)
from reference.train.errors import TrainError


def describe_teacher_file(args: argparse.Namespace, in_chans: int, img_size: int) -> dict | None:
    """Read --teacher-checkpoint's architecture into ``args.timm_arch`` (checked against the data
    before any training)."""
    if not args.teacher_checkpoint:
        args.timm_arch = None
        return None
    try:
        _, arch = read_teacher_file(args.teacher_checkpoint)
        check_fits_data(arch, in_chans, img_size, args.teacher_checkpoint)
    except TeacherFileError as e:
        raise TrainError(f"--teacher-checkpoint {e}") from None
    args.timm_arch = arch
    return arch


def init_teacher_from_file(model: nn.Module, path: str, say: Callable[[str], None]) -> str:
    """Load the file's weights into the teacher stage's model (fine-tuning starts from them)."""
    try:
        state, arch = read_teacher_file(path)
        fresh = init_from_timm_state(model, state, path)
    except TeacherFileError as e:
        raise TrainError(f"--teacher-checkpoint {e}") from None
    say(f"[teacher] initialised from {path} ({arch['depth']} blocks, E={arch['embed_dim']}, "
        f"{arch['num_heads']} heads, {'distilled ' if arch['distilled'] else ''}timm ViT; input mean/std "
        f"from {arch['norm_source']})" + (f"; fresh: {', '.join(fresh)}" if fresh else ""))
    return path


def timm_file_teacher(path: str, num_classes: int, in_chans: int, img_size: int) -> nn.Module:
    """A timm checkpoint already trained on the target data, as a student stage's teacher."""
    try:
        state, arch = read_teacher_file(path)
        if arch["num_classes"] != num_classes:
            raise TeacherFileError(f"{path}: its head has {arch['num_classes']} classes, the data "
                                   f"{num_classes} (fine-tune it first: --stage teacher --teacher-checkpoint)")
        teacher = build_timm_teacher(arch, num_classes, in_chans, img_size)
        init_from_timm_state(teacher, state, path)
    except TeacherFileError as e:
        raise TrainError(f"--teacher-checkpoint {e}") from None
    return teacher.eval()
