"""scikit-learn's embedded 8x8 digits (the split rule lives in gsbsim.data.digits, torch-free)."""
from __future__ import annotations

import functools

import numpy as np

from gsbsim.data.digits import digits_split_indices
from reference.data.augment import translate_aug
from reference.data.bundle import DataBundle, DataError
from reference.data.datasets import ArrayDataset
from reference.data.transforms import tensor_transform


# ============================================================================ the datasets
def build_digits(path, img_size, augment, seed) -> DataBundle:
    if img_size not in (None, 8):
        raise DataError(f"digits: images are 8x8; img_size={img_size!r} is not supported")
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download
    d = load_digits()
    images = np.minimum(d.images * 16, 255).astype(np.uint8)[:, None]  # [N, 1, 8, 8]
    labels = d.target.astype(np.int64)
    split = digits_split_indices(labels)
    train, val, test = split["train"], split["val"], split["test"]
    aug = functools.partial(tensor_transform, aug=translate_aug, size=None)
    plain = functools.partial(tensor_transform, aug=None, size=None)
    return DataBundle(
        train=ArrayDataset(images[train], labels[train], aug, augment, seed, "digits/train"),
        val=ArrayDataset(images[val], labels[val], plain, False, seed, "digits/val"),
        test=ArrayDataset(images[test], labels[test], plain, False, seed, "digits/test"),
        num_classes=10, in_chans=1, img_size=8, name="digits")
