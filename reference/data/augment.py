"""Seeded augmentation primitives on uint8 tensors: per-item generators, shifts, pad-crop-flip, resized-crop boxes."""
from __future__ import annotations

import math

import numpy as np
import torch



# ============================================================================ augmentation
def item_generator(seed: int) -> torch.Generator:
    """A private generator for one augmented item: ``seed`` mixed with one global torch draw."""
    draw = int(torch.randint(0, 2**62, (1,)).item())
    state = np.random.SeedSequence([seed % 2**64, draw]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def rand_int(lo: int, hi: int, g: torch.Generator) -> int:
    """Uniform integer in [lo, hi] inclusive."""
    return int(torch.randint(lo, hi + 1, (1,), generator=g).item())


def _uniform(lo: float, hi: float, g: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=g, dtype=torch.float64).item())


def shift_image(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate a [C, H, W] image by (dy, dx) pixels, filling with zeros."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    if abs(dy) < h and abs(dx) < w:
        out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            img[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def translate_aug(img: torch.Tensor, g: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels per axis (digits' train augmentation)."""
    return shift_image(img, rand_int(-max_shift, max_shift, g), rand_int(-max_shift, max_shift, g))


def crop_flip_aug(img: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop back to the input size from a zero-padded copy, then a random h-flip."""
    h, w = img.shape[-2:]
    padded = torch.nn.functional.pad(img, (pad, pad, pad, pad))
    top, left = rand_int(0, 2 * pad, g), rand_int(0, 2 * pad, g)
    out = padded[:, top:top + h, left:left + w]
    return out.flip(-1) if rand_int(0, 1, g) else out.clone()


def resized_crop_box(h: int, w: int, g: torch.Generator, scale=(0.08, 1.0),
                     ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a RandomResizedCrop box, torchvision's algorithm,
    drawn from ``g`` instead of the global RNG."""
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(scale[0], scale[1], g)
        aspect = math.exp(_uniform(log_r[0], log_r[1], g))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return rand_int(0, h - ch, g), rand_int(0, w - cw, g), ch, cw
    in_ratio = w / h  # fallback: the largest central box within the ratio range
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw
