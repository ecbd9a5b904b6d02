"""Chaoyang: JSON lists of image paths and labels."""
from __future__ import annotations

import os

import numpy as np

from reference.data.bundle import DataBundle, DataError
from reference.data.datasets import file_bundle, holdout
from reference.data.files import check_labels, load_json, need_dir, need_file, resolve_size


def _read_chaoyang_list(path: str, root: str) -> tuple[list[str], np.ndarray]:
    name = "chaoyang"
    items = load_json(need_file(path, name), name)
    if not isinstance(items, list):
        raise DataError(f"{name}: {path} must hold a JSON list, got {type(items).__name__}")
    files, labels = [], []
    for k, it in enumerate(items):
        if not isinstance(it, dict) or not isinstance(it.get("name"), str) \
                or type(it.get("label")) is not int:
            raise DataError(f"{name}: {path} entry {k} must be {{\"name\": str, \"label\": "
                            f"int}}, got {it!r}")
        rel = it["name"]
        # a list is data, not a licence to read any file: an absolute name or one climbing out with .. is refused
        if not rel or "\0" in rel or os.path.isabs(rel) or os.path.normpath(rel).split(os.sep)[0] == os.pardir:
            raise DataError(f"{name}: {path} entry {k}: image name {rel!r} is not a path inside the dataset "
                            f"folder {root}")
        files.append(os.path.join(root, rel))
        labels.append(it["label"])
    return files, check_labels(np.asarray(labels, dtype=np.int64), 0, 3, f"{name}: {path}")


def build_chaoyang(path, img_size, augment, seed) -> DataBundle:
    root = need_dir(path, "chaoyang")
    size = resolve_size(img_size, 224, "chaoyang")
    files, labels = _read_chaoyang_list(os.path.join(root, "train.json"), root)
    test = _read_chaoyang_list(os.path.join(root, "test.json"), root)
    splits = holdout(files, labels, 0.1) | {"test": test}
    return file_bundle("chaoyang", splits, 4, size, augment, seed)
