"""Integer-aware fine-tuning at the end of stage 2 (`--int-aware-epochs N`, docs/integer_model.md §11).

After the stage's float epochs, N more epochs train and validate the student on the integer
model's grids (reference/int_grid.py, straight-through gradients), so that best.pt, chosen on
validation, is chosen by the accuracy of the model as it will be deployed. The grid's F is the
exporter's first candidate (reference.export.calibrate_frac_bits on the first CALIB_IMAGES
training images), recomputed before every epoch and before every evaluation, since training
moves the residual stream's peak. Their learning rate follows its own cosine from
LR_FRACTION x the stage's peak lr down to its min_lr (the float phase's own curve is unchanged,
so its epochs are those of a run without the option).
"""
from __future__ import annotations

import torch
from torch import nn

from reference.config import is_float_method
from reference.int_grid import IntGrid, set_integer_grid
from reference.train.schedule import CosineSchedule

CALIB_IMAGES = 64          # as reference.export's default --calib-images
LR_FRACTION = 0.1


def supports(method: str) -> bool:
    """Methods whose stage-2 student has an integer model (every one but the float 'fp')."""
    return not is_float_method(method)


def calibration_images(train_set) -> torch.Tensor:
    """The exporter's calibration images: the first CALIB_IMAGES training images as they are (the
    exporter reads them without augmentation). Read with augmentation off, because an augmented
    read draws from the global RNG: the float epochs would then differ from a run without the
    option, and a finished run continued on the grid (--resume) from one trained with it."""
    def read() -> torch.Tensor:
        return torch.stack([train_set[i][0] for i in range(min(CALIB_IMAGES, len(train_set)))]).float()
    if not hasattr(train_set, "augment"):      # another dataset: read it as it is, the RNG put back after
        with torch.random.fork_rng(devices=[]):
            return read()
    was = train_set.augment
    train_set.augment = False
    try:
        return read()
    finally:
        train_set.augment = was


@torch.no_grad()
def grid_for(model: nn.Module, calib: torch.Tensor) -> IntGrid:
    """The grid the exporter would start from for the model as it is now (its float residual peak)."""
    from reference.export import calibrate_frac_bits
    was_training = model.training
    set_integer_grid(model, None)
    model.eval()                   # eval: sign's running scales must not move on calibration images
    try:
        return IntGrid(calibrate_frac_bits(model, calib.to(next(model.parameters()).device)))
    finally:
        model.train(was_training)


def fine_tune_schedule(optimizer: torch.optim.Optimizer, lr: float, min_lr: float, epochs: int) -> CosineSchedule:
    return CosineSchedule(optimizer, LR_FRACTION * lr, min_lr, max(epochs, 1), 0)
