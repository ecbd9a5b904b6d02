"""Datasets for the reference models: the embedded digits set and three on-disk formats.

Every dataset yields ``(image, label)`` with ``image`` a **uint8 tensor [C, H, W]** (0..255)
and ``label`` an int. There is no mean/std normalisation here: the model maps a pixel p to
(p - 128) / 128 itself, so the integer model's input is exactly p - 128 as int8.

Nothing is downloaded (DESIGN.md §6). The loaders read the real on-disk formats:

``digits`` (default, embedded; ``path`` ignored)
    scikit-learn's bundled handwritten digits: 1,797 real 8x8 images, values 0..16, mapped to
    pixels ``min(16 * v, 255)``; 1 channel, 10 classes, ``img_size`` must be 8.
    Split: stratified by class, 20% val and 20% test per class (``floor(0.2 * n_c + 0.5)``
    each), the rest train: **1,079 train / 359 val / 359 test**.
    Train augmentation: a random translation by up to 1 pixel in each direction, zero fill.
``cifar100``
    The python-pickle release: ``<path>/train`` and ``<path>/test`` (or the same under
    ``<path>/cifar-100-python/``), each a pickle with ``b'data'`` uint8 [N, 3072] (row-major
    3x32x32) and ``b'fine_labels'``; 100 classes. Val = a fixed stratified 5% of the train file
    (25 per class on the real data: 47,500 train / 2,500 val), test = the test file.
    Train augmentation: random crop 32 with zero padding 4, horizontal flip; then, if
    ``img_size`` != 32, a bicubic resize (also applied to val/test).
``flowers102``
    (a) official layout: ``<path>/jpg/image_XXXXX.jpg``, ``<path>/imagelabels.mat`` (key
    ``labels``, 1-based) and ``<path>/setid.mat`` (``trnid`` / ``valid`` / ``tstid``, 1-based
    image ids) -> train / val / test as the official split (1,020 / 1,020 / 6,149).
    (b) the ImageFolder layout the GSB code uses: ``<path>/train/<class>/*`` and
    ``<path>/val/<class>/*`` -> train = train/ less a fixed stratified 10% held out as val,
    test = val/. Class index = position of the folder name in the sorted train/ folder names
    (torchvision's ImageFolder order); val/ folders are mapped by name. 102 classes.
    The official layout wins when ``imagelabels.mat`` is present.
``chaoyang``
    ``<path>/train.json`` and ``<path>/test.json``: JSON lists of ``{"name": <image path
    relative to <path>>, "label": 0..3}``. Val = a fixed stratified 10% of train.

Image-file datasets decode lazily (PIL) in ``__getitem__``; construction only checks that
every listed file exists. Their transforms, with ``img_size`` default 224: train =
RandomResizedCrop(img_size, scale (0.08, 1), ratio (3/4, 4/3), bicubic) + horizontal flip;
eval = bicubic resize of the shorter side to ``round(img_size * 8 / 7)`` + center crop.

Splits never depend on a global RNG or on ``seed``: they use numpy Generators with the fixed
seed ``SPLIT_SEED``. ``seed`` only changes augmentation. Each augmented ``__getitem__`` draws
one number from torch's global RNG and mixes it with ``seed`` into a private
``torch.Generator``, so augmentation is reproducible under ``torch.manual_seed``, differs
between epochs without any bookkeeping, and is correctly distinct per DataLoader worker
(the DataLoader seeds each worker's torch RNG).

Any problem with the files raises ``DataError`` naming the path and what is wrong.
"""
from __future__ import annotations

import functools
import json
import math
import os
import pickle
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as F

# The split rule (SPLIT_SEED, stratified_split, the digits holdouts) lives in the torch-free
# gsbsim.digits, so that ``gsbsim run --data digits`` gets the same split without torch.
from gsbsim.data.digits import SPLIT_SEED, digits_split_indices, stratified_split  # noqa: F401

DEFAULT_DATA = "digits"
DATASET_NAMES = ("digits", "cifar100", "flowers102", "chaoyang")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
BICUBIC = F.InterpolationMode.BICUBIC


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


# ============================================================================ augmentation
def _item_generator(seed: int) -> torch.Generator:
    """A private generator for one augmented item: ``seed`` mixed with one global torch draw."""
    draw = int(torch.randint(0, 2**62, (1,)).item())
    state = np.random.SeedSequence([seed % 2**64, draw]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def _randint(lo: int, hi: int, g: torch.Generator) -> int:
    """Uniform integer in [lo, hi] inclusive."""
    return int(torch.randint(lo, hi + 1, (1,), generator=g).item())


def _uniform(lo: float, hi: float, g: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=g, dtype=torch.float64).item())


def shift_image(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate a [C, H, W] image by (dy, dx) pixels, filling with zeros."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    if abs(dy) < h and abs(dx) < w:
        out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            img[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def translate_aug(img: torch.Tensor, g: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels per axis (digits' train augmentation)."""
    return shift_image(img, _randint(-max_shift, max_shift, g), _randint(-max_shift, max_shift, g))


def crop_flip_aug(img: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop back to the input size from a zero-padded copy, then a random h-flip."""
    h, w = img.shape[-2:]
    padded = torch.nn.functional.pad(img, (pad, pad, pad, pad))
    top, left = _randint(0, 2 * pad, g), _randint(0, 2 * pad, g)
    out = padded[:, top:top + h, left:left + w]
    return out.flip(-1) if _randint(0, 1, g) else out.clone()


def resized_crop_box(h: int, w: int, g: torch.Generator, scale=(0.08, 1.0),
                     ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a RandomResizedCrop box, torchvision's algorithm,
    drawn from ``g`` instead of the global RNG."""
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(scale[0], scale[1], g)
        aspect = math.exp(_uniform(log_r[0], log_r[1], g))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return _randint(0, h - ch, g), _randint(0, w - cw, g), ch, cw
    in_ratio = w / h  # fallback: the largest central box within the ratio range
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


# ============================================================================ transforms
# A transform is ``fn(image, generator_or_None) -> uint8 tensor [C, H, W]``; the dataset passes
# a generator only when it augments. Built with functools.partial so DataLoader workers can
# pickle them.
def _tensor_transform(img: torch.Tensor, g: torch.Generator | None, *,
                      aug: Callable | None, size: int | None) -> torch.Tensor:
    """In-memory images: optional augmentation, then an optional bicubic resize to ``size``."""
    if g is not None and aug is not None:
        img = aug(img, g)
    if size is not None and tuple(img.shape[-2:]) != (size, size):
        img = F.resize(img, [size, size], interpolation=BICUBIC, antialias=True)
    return img


def _pil_train(img: Image.Image, g: torch.Generator, *, size: int) -> torch.Tensor:
    top, left, ch, cw = resized_crop_box(img.height, img.width, g)
    img = F.resized_crop(img, top, left, ch, cw, [size, size], interpolation=BICUBIC,
                         antialias=True)
    if _randint(0, 1, g):
        img = F.horizontal_flip(img)
    return F.pil_to_tensor(img)


def _pil_eval(img: Image.Image, g: torch.Generator | None, *, size: int) -> torch.Tensor:
    img = F.resize(img, int(round(size * 8 / 7)), interpolation=BICUBIC, antialias=True)
    return F.pil_to_tensor(F.center_crop(img, [size, size]))


def _pil_transform(img: Image.Image, g: torch.Generator | None, *, size: int) -> torch.Tensor:
    return _pil_train(img, g, size=size) if g is not None else _pil_eval(img, None, size=size)


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
        g = _item_generator(self.seed) if self.augment else None
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
    """Images decoded lazily from files with PIL (as RGB); files are checked to exist here."""

    def __init__(self, files: Sequence[str], labels: np.ndarray, transform: Callable,
                 augment: bool, seed: int, desc: str):
        super().__init__(labels, transform, augment, seed, desc)
        self.files = [str(f) for f in files]
        if len(self.files) != len(self.labels):
            raise DataError(f"{desc}: {len(self.files)} files but {len(self.labels)} labels")
        for f in self.files:
            if not os.path.isfile(f):
                raise DataError(f"{desc}: listed image file not found: {f}")

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


# ============================================================================ file helpers
def _need_dir(path: str | os.PathLike | None, name: str) -> str:
    if path is None:
        raise DataError(f"dataset {name!r} needs a path (the folder holding its files)")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{name}: data path does not exist: {path}")
    if not os.path.isdir(path):
        raise DataError(f"{name}: data path is not a directory: {path}")
    return path


def _need_file(path: str, name: str) -> str:
    if not os.path.isfile(path):
        raise DataError(f"{name}: required file not found: {path}")
    return path


def _check_labels(labels: np.ndarray, lo: int, hi: int, where: str) -> np.ndarray:
    """Labels as int64, all within [lo, hi], else DataError naming the first bad one.

    Integral floats are accepted (MATLAB files often store ids as doubles)."""
    labels = np.asarray(labels)
    if labels.size and np.issubdtype(labels.dtype, np.floating) and \
            np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise DataError(f"{where}: labels must be a 1-D list of integers, got dtype "
                        f"{labels.dtype} shape {labels.shape}")
    bad = np.flatnonzero((labels < lo) | (labels > hi))
    if bad.size:
        raise DataError(f"{where}: label {labels[bad[0]]} at position {bad[0]} is out of "
                        f"range {lo}..{hi}")
    return labels.astype(np.int64)


_NP_CORE = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a data file must not run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and \
                name in ("_reconstruct", "scalar"):
            return getattr(_NP_CORE.multiarray, name)
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
            return _NP_CORE.numeric._frombuffer
        if (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _load_pickle(path: str, name: str) -> Any:
    try:
        with open(path, "rb") as f:
            return _SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"{name}: corrupt or unreadable pickle {path}: "
                        f"{type(e).__name__}: {e}") from None


def _load_json(path: str, name: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise DataError(f"{name}: corrupt or unreadable JSON {path}: {e}") from None


def _load_mat(path: str, key: str, name: str) -> np.ndarray:
    """One array from a MATLAB .mat file, flattened."""
    import scipy.io  # scipy comes with scikit-learn; imported here as only flowers needs it
    try:
        mat = scipy.io.loadmat(_need_file(path, name))
    except DataError:
        raise
    except Exception as e:  # scipy raises many types (ValueError, TypeError, MatReadError...)
        raise DataError(f"{name}: corrupt or unreadable .mat file {path}: {e}") from None
    if key not in mat:
        raise DataError(f"{name}: {path} has no key {key!r} (keys: "
                        f"{sorted(k for k in mat if not k.startswith('__'))})")
    return np.asarray(mat[key]).reshape(-1)


def _resolve_size(img_size: int | None, default: int, name: str) -> int:
    if img_size is None:
        return default
    if isinstance(img_size, bool) or not isinstance(img_size, (int, np.integer)) or img_size < 1:
        raise DataError(f"{name}: img_size must be a positive int, got {img_size!r}")
    return int(img_size)


# ============================================================================ the datasets
def _build_digits(path, img_size, augment, seed) -> DataBundle:
    if img_size not in (None, 8):
        raise DataError(f"digits: images are 8x8; img_size={img_size!r} is not supported")
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download
    d = load_digits()
    images = np.minimum(d.images * 16, 255).astype(np.uint8)[:, None]  # [N, 1, 8, 8]
    labels = d.target.astype(np.int64)
    split = digits_split_indices(labels)
    train, val, test = split["train"], split["val"], split["test"]
    aug = functools.partial(_tensor_transform, aug=translate_aug, size=None)
    plain = functools.partial(_tensor_transform, aug=None, size=None)
    return DataBundle(
        train=ArrayDataset(images[train], labels[train], aug, augment, seed, "digits/train"),
        val=ArrayDataset(images[val], labels[val], plain, False, seed, "digits/val"),
        test=ArrayDataset(images[test], labels[test], plain, False, seed, "digits/test"),
        num_classes=10, in_chans=1, img_size=8, name="digits")


def _read_cifar_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-100 python pickle -> (uint8 [N, 3, 32, 32], int64 fine labels [N])."""
    obj = _load_pickle(_need_file(path, "cifar100"), "cifar100")
    if not isinstance(obj, dict) or b"data" not in obj or b"fine_labels" not in obj:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise DataError(f"cifar100: {path} is not a CIFAR-100 batch (needs b'data' and "
                        f"b'fine_labels'; found {keys})")
    data = obj[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data)
        raise DataError(f"cifar100: {path}: b'data' must be uint8 [N, 3072], got {desc}")
    labels = _check_labels(np.asarray(obj[b"fine_labels"]), 0, 99, f"cifar100: {path}")
    if len(labels) != len(data):
        raise DataError(f"cifar100: {path}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _build_cifar100(path, img_size, augment, seed) -> DataBundle:
    root = _need_dir(path, "cifar100")
    sub = os.path.join(root, "cifar-100-python")
    if not os.path.isfile(os.path.join(root, "train")) and os.path.isdir(sub):
        root = sub
    x_tr, y_tr = _read_cifar_file(os.path.join(root, "train"))
    x_te, y_te = _read_cifar_file(os.path.join(root, "test"))
    size = _resolve_size(img_size, 32, "cifar100")
    out_size = None if size == 32 else size
    aug = functools.partial(_tensor_transform, aug=crop_flip_aug, size=out_size)
    plain = functools.partial(_tensor_transform, aug=None, size=out_size)
    val, train = stratified_split(y_tr, (0.05,))
    return DataBundle(
        train=ArrayDataset(x_tr[train], y_tr[train], aug, augment, seed, "cifar100/train"),
        val=ArrayDataset(x_tr[val], y_tr[val], plain, False, seed, "cifar100/val"),
        test=ArrayDataset(x_te, y_te, plain, False, seed, "cifar100/test"),
        num_classes=100, in_chans=3, img_size=size, name="cifar100")


def _file_bundle(name: str, splits: dict[str, tuple[list[str], np.ndarray]], num_classes: int,
                 size: int, augment: bool, seed: int) -> DataBundle:
    """Three ImageFileDatasets (train augments if asked) with the shared PIL transform."""
    tf = functools.partial(_pil_transform, size=size)
    ds = {k: ImageFileDataset(files, labels, tf, augment and k == "train", seed, f"{name}/{k}")
          for k, (files, labels) in splits.items()}
    return DataBundle(train=ds["train"], val=ds["val"], test=ds["test"],
                      num_classes=num_classes, in_chans=3, img_size=size, name=name)


def _holdout(files: list[str], labels: np.ndarray, frac: float) -> dict[str, tuple]:
    """train/val from one labelled list: a fixed stratified ``frac`` becomes val."""
    val, train = stratified_split(labels, (frac,))
    return {"train": ([files[i] for i in train], labels[train]),
            "val": ([files[i] for i in val], labels[val])}


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


def _build_flowers102(path, img_size, augment, seed) -> DataBundle:
    name, n_cls = "flowers102", 102
    root = _need_dir(path, name)
    size = _resolve_size(img_size, 224, name)
    if os.path.isfile(os.path.join(root, "imagelabels.mat")):  # (a) official layout
        mat_labels = _load_mat(os.path.join(root, "imagelabels.mat"), "labels", name)
        where = f"{name}: {os.path.join(root, 'imagelabels.mat')}"
        all_labels = _check_labels(mat_labels, 1, n_cls, where) - 1
        setid = os.path.join(root, "setid.mat")
        splits = {}
        for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
            ids = _check_labels(_load_mat(setid, key, name), 1, len(all_labels),
                                f"{name}: {setid} image ids {key!r}")
            files = [os.path.join(root, "jpg", f"image_{i:05d}.jpg") for i in ids]
            splits[split] = (files, all_labels[ids - 1])
        return _file_bundle(name, splits, n_cls, size, augment, seed)
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    if not (os.path.isdir(train_dir) and os.path.isdir(val_dir)):  # neither layout
        raise DataError(f"{name}: {root} holds neither the official layout (imagelabels.mat, "
                        "setid.mat, jpg/) nor the ImageFolder layout (train/<class>/, "
                        "val/<class>/)")
    classes, files, labels = _image_folder(train_dir, None, name)  # (b) ImageFolder layout
    if len(classes) != n_cls:
        raise DataError(f"{name}: {train_dir} has {len(classes)} class folders, expected {n_cls}")
    _, test_files, test_labels = _image_folder(val_dir, classes, name)
    splits = _holdout(files, labels, 0.1) | {"test": (test_files, test_labels)}
    return _file_bundle(name, splits, n_cls, size, augment, seed)


def _read_chaoyang_list(path: str, root: str) -> tuple[list[str], np.ndarray]:
    name = "chaoyang"
    items = _load_json(_need_file(path, name), name)
    if not isinstance(items, list):
        raise DataError(f"{name}: {path} must hold a JSON list, got {type(items).__name__}")
    files, labels = [], []
    for k, it in enumerate(items):
        if not isinstance(it, dict) or not isinstance(it.get("name"), str) \
                or type(it.get("label")) is not int:
            raise DataError(f"{name}: {path} entry {k} must be {{\"name\": str, \"label\": "
                            f"int}}, got {it!r}")
        files.append(os.path.join(root, it["name"]))
        labels.append(it["label"])
    return files, _check_labels(np.asarray(labels, dtype=np.int64), 0, 3, f"{name}: {path}")


def _build_chaoyang(path, img_size, augment, seed) -> DataBundle:
    root = _need_dir(path, "chaoyang")
    size = _resolve_size(img_size, 224, "chaoyang")
    files, labels = _read_chaoyang_list(os.path.join(root, "train.json"), root)
    test = _read_chaoyang_list(os.path.join(root, "test.json"), root)
    splits = _holdout(files, labels, 0.1) | {"test": test}
    return _file_bundle("chaoyang", splits, 4, size, augment, seed)


_BUILDERS = {"digits": _build_digits, "cifar100": _build_cifar100,
             "flowers102": _build_flowers102, "chaoyang": _build_chaoyang}
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
