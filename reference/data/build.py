"""build_datasets: the dataset name -> builder table, with its argument checks."""
from __future__ import annotations


import numpy as np

from reference.data.bundle import DATASET_NAMES, DEFAULT_DATA, DataBundle, DataError
from reference.data.chaoyang import build_chaoyang
from reference.data.cifar100 import build_cifar100
from reference.data.digits import build_digits
from reference.data.flowers102 import build_flowers102
from reference.data.mnist import build_mnist


_BUILDERS = {"digits": build_digits, "cifar100": build_cifar100,
             "flowers102": build_flowers102, "chaoyang": build_chaoyang, "mnist": build_mnist}
assert tuple(_BUILDERS) == DATASET_NAMES


def build_datasets(name: str = DEFAULT_DATA, path: str | None = None,
                   img_size: int | None = None, augment: bool = True,
                   seed: int = 0) -> DataBundle:
    """Train/val/test datasets of ``name`` (see the module docstring for each format).

    ``path`` is the dataset folder (ignored for digits); ``img_size`` the output side
    (default per dataset); ``augment`` turns the train split's augmentation on; ``seed``
    changes the augmentation draws only, never the splits.
    """
    key = str(name).lower()
    if key not in _BUILDERS:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"{key}: seed must be an int, got {seed!r}")
    return _BUILDERS[key](path, img_size, augment, int(seed))
