"""Oxford Flowers102: the official jpg/ + .mat layout, or GSB's train/ and val/ image folders."""
from __future__ import annotations

import os

import numpy as np

from reference.data.bundle import DataBundle, DataError
from reference.data.datasets import file_bundle, holdout
from reference.data.files import IMAGE_EXTENSIONS, check_labels, load_mat, need_dir, resolve_size


def _image_folder(root: str, classes: list[str] | None, name: str) -> tuple[list[str], list[str],
                                                                             np.ndarray]:
    """ImageFolder listing: (class names, files, labels). With ``classes`` given, folder names
    are mapped onto that list (a folder not in it is an error); else the sorted folder names
    define the classes."""
    folder_names = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not folder_names:
        raise DataError(f"{name}: no class folders in {root}")
    if classes is None:
        classes = folder_names
    index = {c: i for i, c in enumerate(classes)}
    files, labels = [], []
    for c in folder_names:
        if c not in index:
            raise DataError(f"{name}: class folder {os.path.join(root, c)} has no "
                            f"counterpart in the train/ classes")
        found = sorted(e.path for e in os.scandir(os.path.join(root, c))
                       if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))
        if not found:
            raise DataError(f"{name}: class folder {os.path.join(root, c)} has no images")
        files += found
        labels += [index[c]] * len(found)
    return classes, files, np.asarray(labels, dtype=np.int64)


def build_flowers102(path, img_size, augment, seed) -> DataBundle:
    name, n_cls = "flowers102", 102
    root = need_dir(path, name)
    size = resolve_size(img_size, 224, name)
    if os.path.isfile(os.path.join(root, "imagelabels.mat")):  # (a) official layout
        mat_labels = load_mat(os.path.join(root, "imagelabels.mat"), "labels", name)
        where = f"{name}: {os.path.join(root, 'imagelabels.mat')}"
        all_labels = check_labels(mat_labels, 1, n_cls, where) - 1
        setid = os.path.join(root, "setid.mat")
        splits = {}
        for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
            ids = check_labels(load_mat(setid, key, name), 1, len(all_labels),
                                f"{name}: {setid} image ids {key!r}")
            files = [os.path.join(root, "jpg", f"image_{i:05d}.jpg") for i in ids]
            splits[split] = (files, all_labels[ids - 1])
        return file_bundle(name, splits, n_cls, size, augment, seed)
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    if not (os.path.isdir(train_dir) and os.path.isdir(val_dir)):  # neither layout
        raise DataError(f"{name}: {root} holds neither the official layout (imagelabels.mat, "
                        "setid.mat, jpg/) nor the ImageFolder layout (train/<class>/, "
                        "val/<class>/)")
    classes, files, labels = _image_folder(train_dir, None, name)  # (b) ImageFolder layout
    if len(classes) != n_cls:
        raise DataError(f"{name}: {train_dir} has {len(classes)} class folders, expected {n_cls}")
    _, test_files, test_labels = _image_folder(val_dir, classes, name)
    splits = holdout(files, labels, 0.1) | {"test": (test_files, test_labels)}
    return file_bundle(name, splits, n_cls, size, augment, seed)
