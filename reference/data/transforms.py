"""The train and eval transforms of tensor datasets and of image-file datasets (PIL, bicubic)."""
from __future__ import annotations

from typing import Callable

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from reference.data.augment import rand_int, resized_crop_box


BICUBIC = F.InterpolationMode.BICUBIC
# ============================================================================ transforms
# A transform is ``fn(image, generator_or_None) -> uint8 tensor [C, H, W]``; the dataset passes
# a generator only when it augments. Built with functools.partial so DataLoader workers can
# pickle them.
def tensor_transform(img: torch.Tensor, g: torch.Generator | None, *,
                      aug: Callable | None, size: int | None) -> torch.Tensor:
    """In-memory images: optional augmentation, then an optional bicubic resize to ``size``."""
    if g is not None and aug is not None:
        img = aug(img, g)
    if size is not None and tuple(img.shape[-2:]) != (size, size):
        img = F.resize(img, [size, size], interpolation=BICUBIC, antialias=True)
    return img


def _pil_train(img: Image.Image, g: torch.Generator, *, size: int) -> torch.Tensor:
    top, left, ch, cw = resized_crop_box(img.height, img.width, g)
    img = F.resized_crop(img, top, left, ch, cw, [size, size], interpolation=BICUBIC,
                         antialias=True)
    if rand_int(0, 1, g):
        img = F.horizontal_flip(img)
    return F.pil_to_tensor(img)


def _pil_eval(img: Image.Image, g: torch.Generator | None, *, size: int) -> torch.Tensor:
    img = F.resize(img, int(round(size * 8 / 7)), interpolation=BICUBIC, antialias=True)
    return F.pil_to_tensor(F.center_crop(img, [size, size]))


def pil_transform(img: Image.Image, g: torch.Generator | None, *, size: int) -> torch.Tensor:
    return _pil_train(img, g, size=size) if g is not None else _pil_eval(img, None, size=size)
