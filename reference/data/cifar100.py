"""CIFAR-100 from the python-pickle release (train/test files)."""
from __future__ import annotations

import functools
import os

import numpy as np

from gsbsim.data.digits import stratified_split
from reference.data.augment import crop_flip_aug
from reference.data.bundle import DataBundle, DataError
from reference.data.datasets import ArrayDataset
from reference.data.files import check_labels, load_pickle, need_dir, need_file, resolve_size
from reference.data.transforms import tensor_transform


def _read_cifar_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-100 python pickle -> (uint8 [N, 3, 32, 32], int64 fine labels [N])."""
    obj = load_pickle(need_file(path, "cifar100"), "cifar100")
    if not isinstance(obj, dict) or b"data" not in obj or b"fine_labels" not in obj:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise DataError(f"cifar100: {path} is not a CIFAR-100 batch (needs b'data' and "
                        f"b'fine_labels'; found {keys})")
    data = obj[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data)
        raise DataError(f"cifar100: {path}: b'data' must be uint8 [N, 3072], got {desc}")
    labels = check_labels(np.asarray(obj[b"fine_labels"]), 0, 99, f"cifar100: {path}")
    if len(labels) != len(data):
        raise DataError(f"cifar100: {path}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def build_cifar100(path, img_size, augment, seed) -> DataBundle:
    root = need_dir(path, "cifar100")
    sub = os.path.join(root, "cifar-100-python")
    if not os.path.isfile(os.path.join(root, "train")) and os.path.isdir(sub):
        root = sub
    x_tr, y_tr = _read_cifar_file(os.path.join(root, "train"))
    x_te, y_te = _read_cifar_file(os.path.join(root, "test"))
    size = resolve_size(img_size, 32, "cifar100")
    out_size = None if size == 32 else size
    aug = functools.partial(tensor_transform, aug=crop_flip_aug, size=out_size)
    plain = functools.partial(tensor_transform, aug=None, size=out_size)
    val, train = stratified_split(y_tr, (0.05,))
    return DataBundle(
        train=ArrayDataset(x_tr[train], y_tr[train], aug, augment, seed, "cifar100/train"),
        val=ArrayDataset(x_tr[val], y_tr[val], plain, False, seed, "cifar100/val"),
        test=ArrayDataset(x_te, y_te, plain, False, seed, "cifar100/test"),
        num_classes=100, in_chans=3, img_size=size, name="cifar100")
