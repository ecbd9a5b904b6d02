"""The released recipe's data pipeline (``--recipe released``): timm's ``create_transform`` as the
GSB/DeiT code builds it, kept on uint8 pixels, and Flowers102 trained on train+val.

Train (DeiT's ``build_transform``, research/gsb.md §4.2): RandomResizedCrop to the model's size
(scale 0.08..1, bicubic) + horizontal flip, RandAugment ``rand-m9-mstd0.5-inc1``, RandomErasing
p 0.25 'pixel' x1 in the teacher's mean/std space; at 32 px or less the crop is DeiT's
RandomCrop(size, padding 4) instead. Eval: bicubic resize to int(size / 0.875) + center crop
(no resize at 32 px or less, as DeiT).

Our datasets yield uint8 pixels (the students see (p - 128) / 128, docs/method.md), so the
erasing runs on the normalised image and the result is mapped back to pixels, rounded and
clipped to 0..255: the erased noise is quantised to 8 bits, every other pixel is unchanged.
timm's transforms draw from Python's, numpy's and torch's global RNGs; each item seeds them
from its own generator (reference/data/augment.py) and restores them, so runs stay
reproducible and the global streams are left as they were.
"""
from __future__ import annotations

import contextlib
import functools
import random

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import RandomCrop
from torchvision.transforms.v2 import functional as F

from timm.data import IMAGENET_DEFAULT_MEAN as IMAGENET_MEAN, IMAGENET_DEFAULT_STD as IMAGENET_STD

from gsbsim.data.digits import stratified_split
from reference.data.bundle import DataBundle
from reference.data.datasets import ArrayDataset, ImageFileDataset
from reference.data.transforms import BICUBIC

__all__ = ["AUTO_AUGMENT", "RE_PROB", "IMAGENET_MEAN", "IMAGENET_STD", "released_train_ops", "released_transform",
           "apply_released_recipe"]

AUTO_AUGMENT = "rand-m9-mstd0.5-inc1"
RE_PROB = 0.25
EVAL_CROP_PCT = 0.875
SELECTION_FRACTION = 0.1  # Flowers102: the stratified share of the test images that selects the best epoch


@functools.lru_cache(maxsize=8)  # built once per (size, mean, std), not per item
def released_train_ops(size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> tuple[tuple, object]:
    """(PIL ops in order, timm RandomErasing) of the released train transform at ``size``."""
    from timm.data import create_transform
    primary, secondary, final = create_transform(
        size, is_training=True, auto_augment=AUTO_AUGMENT, interpolation="bicubic", re_prob=RE_PROB,
        re_mode="pixel", re_count=1, mean=tuple(mean), std=tuple(std), separate=True)
    ops = list(primary.transforms) + list(secondary.transforms)
    if size <= 32:  # DeiT: small images get a padded random crop instead of RandomResizedCrop
        ops[0] = RandomCrop(size, padding=4)
    erasing = [t for t in final.transforms if type(t).__name__ == "RandomErasing"]
    return tuple(ops), erasing[0]


@contextlib.contextmanager
def _seeded_globals(g: torch.Generator):
    """Seed Python's, numpy's and torch's global RNGs from ``g`` for one item, then restore them."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g).item())
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def _to_pil(img) -> Image.Image:
    if isinstance(img, Image.Image):
        return img
    arr = img.numpy().transpose(1, 2, 0)  # uint8 [C, H, W] -> [H, W, C]
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)


def _pixels(pil: Image.Image, channels: int) -> torch.Tensor:
    t = F.pil_to_tensor(pil)
    return t[:channels] if t.shape[0] >= channels else t.expand(channels, -1, -1).clone()


def _erase_in_pixels(x: torch.Tensor, erasing, mean, std) -> torch.Tensor:
    """RandomErasing on the normalised image, mapped back to uint8 pixels."""
    c = x.shape[0]
    m = torch.tensor(mean[:c] if len(mean) >= c else mean[:1] * c, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std[:c] if len(std) >= c else std[:1] * c, dtype=torch.float32).view(-1, 1, 1)
    z = (x.float() / 255 - m) / s
    z = erasing(z)
    return torch.clamp(torch.floor((z * s + m) * 255 + 0.5), 0, 255).to(torch.uint8)


def released_transform(img, g: torch.Generator | None, *, size: int, channels: int, mean=IMAGENET_MEAN,
                       std=IMAGENET_STD) -> torch.Tensor:
    """A dataset transform (image, generator or None) -> uint8 [C, size, size]: train with ``g``, eval without."""
    pil = _to_pil(img)
    if g is None:
        if size > 32:
            pil = F.resize(pil, int(size / EVAL_CROP_PCT), interpolation=BICUBIC, antialias=True)
            pil = F.center_crop(pil, [size, size])
        elif pil.size != (size, size):
            pil = F.resize(pil, [size, size], interpolation=BICUBIC, antialias=True)
        return _pixels(pil, channels)
    ops, erasing = released_train_ops(size, tuple(mean), tuple(std))
    pil = pil.convert("RGB")  # timm's RandAugment fills with an RGB colour; a grey image keeps channel 0
    with _seeded_globals(g):
        for op in ops:
            pil = op(pil)
        return _erase_in_pixels(_pixels(pil, channels), erasing, tuple(mean), tuple(std))


def _with_transform(ds, transform):
    if isinstance(ds, ArrayDataset):
        return ArrayDataset(ds.images.numpy(), ds.labels, transform, ds.augment, ds.seed, ds.desc)
    return ImageFileDataset(ds.files, ds.labels, transform, ds.augment, ds.seed, ds.desc, check_files=False)


def _files(ds, idx=None) -> tuple[list[str], np.ndarray]:
    idx = range(len(ds.files)) if idx is None else idx
    return [ds.files[i] for i in idx], ds.labels[np.asarray(idx, dtype=np.int64)]


def train_on_trainval(bundle: DataBundle) -> DataBundle:
    """GSB's Flowers102 split: train on train + val (2,040 images on the official split); the best
    epoch is selected on a fixed stratified 10% of the test images, which the test report then
    leaves out (about 615 of the official 6,149 test images)."""
    tr, va, te = bundle.train, bundle.val, bundle.test
    files = _files(tr)[0] + _files(va)[0]
    labels = np.concatenate([tr.labels, va.labels])
    sel, rest = stratified_split(te.labels, (SELECTION_FRACTION,))
    name = bundle.name
    return DataBundle(
        # the files were checked when the bundle was built
        train=ImageFileDataset(files, labels, tr.transform, tr.augment, tr.seed, f"{name}/train+val",
                               check_files=False),
        val=ImageFileDataset(*_files(te, sel), te.transform, False, te.seed, f"{name}/test-selection",
                             check_files=False),
        test=ImageFileDataset(*_files(te, rest), te.transform, False, te.seed, f"{name}/test-rest",
                              check_files=False),
        num_classes=bundle.num_classes, in_chans=bundle.in_chans, img_size=bundle.img_size, name=name)


def apply_released_recipe(bundle: DataBundle, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> DataBundle:
    """The bundle with every split's transform replaced by the released one (train augments as
    before), and Flowers102 on train + val (train_on_trainval)."""
    if bundle.name == "flowers102":
        bundle = train_on_trainval(bundle)
    tf = functools.partial(released_transform, size=bundle.img_size, channels=bundle.in_chans,
                           mean=tuple(mean), std=tuple(std))
    return DataBundle(train=_with_transform(bundle.train, tf), val=_with_transform(bundle.val, tf),
                      test=_with_transform(bundle.test, tf), num_classes=bundle.num_classes,
                      in_chans=bundle.in_chans, img_size=bundle.img_size, name=bundle.name)
