"""The digits data set without torch: scikit-learn's bundled 8x8 digits and their split.

``gsbsim run --data digits`` needs the test split's images and labels, and nothing of
the training stack. This module reads scikit-learn's bundled ``digits.csv.gz`` directly
(found with ``importlib.util.find_spec``, so neither torch nor ``sklearn.datasets`` is
imported: a cold ``gsbsim run`` stays fast) and owns the split rule, which
``reference/data.py`` imports from here so that both always produce the same splits:

* pixels: the 0..16 values mapped to ``min(16 * v, 255)`` as uint8, shape [N, 1, 8, 8];
* split: stratified by class, ``floor(0.2 * n_c + 0.5)`` of each class for val, as many
  for test, the rest train (1,079 / 359 / 359), with a numpy Generator seeded with
  ``SPLIT_SEED`` (never a global RNG).
"""
from __future__ import annotations

import gzip
import importlib.util
import math
import os
from typing import Sequence

import numpy as np

__all__ = ["SPLIT_SEED", "SPLITS", "DigitsError", "stratified_split", "digits_split_indices", "digits_csv_path",
           "load_digits_arrays", "digits_split"]

SPLIT_SEED = 20240607  # fixed: the splits are part of the dataset definition, not of a run
SPLITS = ("train", "val", "test")
HOLDOUT_FRACTIONS = (0.2, 0.2)  # val, test (per class); the rest is train
N_IMAGES = 1797


class DigitsError(Exception):
    """The bundled digits file is missing or unreadable, or a split name is wrong."""


def stratified_split(labels: np.ndarray, fractions: Sequence[float],
                     seed: int = SPLIT_SEED) -> list[np.ndarray]:
    """Split indices per class: ``floor(f * n_c + 0.5)`` of each class for each fraction f,
    the remainder last. Returns ``len(fractions) + 1`` sorted index arrays (holdouts..., rest).

    Deterministic: a numpy Generator seeded with ``seed`` permutes each class in class order.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for k, f in enumerate(fractions):
            n = int(math.floor(f * len(idx) + 0.5))
            parts[k].append(idx[start:start + n])
            start += n
        parts[-1].append(idx[start:])
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


def digits_split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """{"train", "val", "test"} -> sorted indices into the 1,797 digits (the split rule)."""
    val, test, train = stratified_split(labels, HOLDOUT_FRACTIONS)
    return {"train": train, "val": val, "test": test}


def digits_csv_path() -> str:
    """Path of scikit-learn's bundled digits.csv.gz (scikit-learn is located, not imported)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DigitsError("digits: scikit-learn is not installed (its bundled digits.csv.gz is the data)")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    if not os.path.isfile(path):
        raise DigitsError(f"digits: scikit-learn's bundled data file is missing: {path}")
    return path


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits: (uint8 images [N, 1, 8, 8] = min(16 * v, 255), int64 labels [N])."""
    path = digits_csv_path()
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",")
    except (OSError, ValueError, EOFError) as e:
        raise DigitsError(f"digits: cannot read {path}: {e}") from None
    if table.shape != (N_IMAGES, 65):
        raise DigitsError(f"digits: {path} holds a table of shape {table.shape}, expected ({N_IMAGES}, 65)")
    images = np.minimum(table[:, :64].reshape(-1, 1, 8, 8) * 16, 255).astype(np.uint8)
    return images, table[:, 64].astype(np.int64)


def digits_split(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [n, 1, 8, 8], int64 labels [n]) of one split: 'train', 'val' or 'test'."""
    if split not in SPLITS:
        raise DigitsError(f"digits: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    images, labels = load_digits_arrays()
    idx = digits_split_indices(labels)[split]
    return images[idx], labels[idx]
