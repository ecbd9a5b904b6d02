"""Dataset classes: arrays in memory, image files decoded on access; the shared image-file bundle and holdout."""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from gsbsim.data.digits import stratified_split
from reference.data.augment import item_generator
from reference.data.bundle import DataBundle, DataError
from reference.data.files import check_image_files
from reference.data.transforms import pil_transform


# ============================================================================ dataset classes
class _SplitDataset(Dataset):
    """Common part: labels (int64 numpy), the transform, and whether/how to augment."""

    def __init__(self, labels: np.ndarray, transform: Callable, augment: bool, seed: int,
                 desc: str):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self.augment = bool(augment)
        self.seed = int(seed)
        self.desc = desc  # e.g. "cifar100/train", used in messages

    def __len__(self) -> int:
        return len(self.labels)

    def _load(self, i: int) -> Any:
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.desc}: index {i} out of range for {len(self)} items")
        g = item_generator(self.seed) if self.augment else None
        return self.transform(self._load(i), g), int(self.labels[i])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.desc}, n={len(self)}, augment={self.augment})"


class ArrayDataset(_SplitDataset):
    """Images held in memory as one uint8 tensor [N, C, H, W] (digits, CIFAR-100)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable,
                 augment: bool, seed: int, desc: str):
        super().__init__(labels, transform, augment, seed, desc)
        self.images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))

    def _load(self, i: int) -> torch.Tensor:
        return self.images[i].clone()  # callers may edit their copy in place


class ImageFileDataset(_SplitDataset):
    """Images decoded lazily from files with PIL (as RGB).

    Every file's header is checked here, before any training (``check_files=False`` for a
    copy of an already checked dataset): a missing or corrupt image is reported at once, not
    hours into a run. A file damaged past its header (or changed during the run) is found
    when decoded: ``_load`` raises DataError naming it, and the trainer adds the epoch.
    """

    def __init__(self, files: Sequence[str], labels: np.ndarray, transform: Callable,
                 augment: bool, seed: int, desc: str, check_files: bool = True):
        super().__init__(labels, transform, augment, seed, desc)
        self.files = [str(f) for f in files]
        if len(self.files) != len(self.labels):
            raise DataError(f"{desc}: {len(self.files)} files but {len(self.labels)} labels")
        if check_files:
            check_image_files(self.files, desc)

    def _load(self, i: int) -> Image.Image:
        path = self.files[i]
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"{self.desc}: cannot decode image {path}: {e}") from None


def dataset_arrays(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """All of an eval split as numpy: (uint8 images [N, C, H, W], int64 labels [N]).

    For running the integer simulator on a split without torch in the loop. Refuses an
    augmenting dataset (its images would be random draws).
    """
    if not isinstance(ds, _SplitDataset):
        raise DataError(f"dataset_arrays needs a dataset from build_datasets, got {type(ds)}")
    if ds.augment:
        raise DataError(f"dataset_arrays: {ds.desc} augments its images; build it with "
                        "augment=False or use an eval split")
    if len(ds) == 0:
        raise DataError(f"dataset_arrays: {ds.desc} is empty")
    images = np.stack([ds[i][0].numpy() for i in range(len(ds))])
    return images.astype(np.uint8), ds.labels.copy()


def file_bundle(name: str, splits: dict[str, tuple[list[str], np.ndarray]], num_classes: int,
                 size: int, augment: bool, seed: int) -> DataBundle:
    """Three ImageFileDatasets (train augments if asked) with the shared PIL transform."""
    tf = functools.partial(pil_transform, size=size)
    ds = {k: ImageFileDataset(files, labels, tf, augment and k == "train", seed, f"{name}/{k}")
          for k, (files, labels) in splits.items()}
    return DataBundle(train=ds["train"], val=ds["val"], test=ds["test"],
                      num_classes=num_classes, in_chans=3, img_size=size, name=name)


def holdout(files: list[str], labels: np.ndarray, frac: float) -> dict[str, tuple]:
    """train/val from one labelled list: a fixed stratified ``frac`` becomes val."""
    val, train = stratified_split(labels, (frac,))
    return {"train": ([files[i] for i in train], labels[train]),
            "val": ([files[i] for i in val], labels[val])}
