"""What every dataset builder returns (DataBundle), the dataset names and the one error type."""
from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset



DEFAULT_DATA = "digits"
DATASET_NAMES = ("digits", "cifar100", "flowers102", "chaoyang", "mnist")

class DataError(Exception):
    """A dataset path, file or argument is missing or wrong; the message names which."""


@dataclass
class DataBundle:
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    in_chans: int
    img_size: int
    name: str
