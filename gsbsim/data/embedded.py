"""The embedded data sets by name (torch-free), which one fits a model, and seeded random images.

``gsbsim`` picks its default data from the model's input shape: the embedded set whose
images have that shape (digits 1x8x8, mnist 1x28x28), or none (a paper model: costs only).
"""
from __future__ import annotations

import numpy as np

from gsbsim.data.digits import DigitsError, digits_split
from gsbsim.data.mnist import MnistError, mnist_split

__all__ = ["EMBEDDED", "EmbeddedDataError", "embedded_split", "fitting_dataset", "random_images"]

# name -> (C, H, W) of its images
EMBEDDED: dict[str, tuple[int, int, int]] = {"digits": (1, 8, 8), "mnist": (1, 28, 28)}
_LOADERS = {"digits": digits_split, "mnist": mnist_split}


class EmbeddedDataError(Exception):
    """An embedded data set cannot be read, or a name or split is wrong."""


def embedded_split(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [n, C, H, W], int64 labels [n]) of one split of an embedded data set."""
    if name not in _LOADERS:
        raise EmbeddedDataError(f"unknown embedded data set {name!r}; expected one of {', '.join(EMBEDDED)}")
    try:
        return _LOADERS[name](split)
    except (DigitsError, MnistError) as e:
        raise EmbeddedDataError(str(e)) from None


def fitting_dataset(in_chans: int, img_size: int) -> str | None:
    """The embedded data set whose images are [in_chans, img_size, img_size], or None."""
    want = (int(in_chans), int(img_size), int(img_size))
    return next((name for name, shape in EMBEDDED.items() if shape == want), None)


def random_images(n: int, in_chans: int, img_size: int, seed: int = 0) -> np.ndarray:
    """``n`` uniformly random uint8 images [n, C, H, W] from a numpy Generator seeded with ``seed``
    (as pixels they become uniformly random int8 inputs)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, in_chans, img_size, img_size), dtype=np.uint8)
