"""Tests for reference/data.py: the embedded digits split, and each on-disk format (CIFAR-100
pickles, Flowers102 official and ImageFolder layouts, Chaoyang JSON lists) on tiny files
written here in the real formats, plus the errors each kind of bad input must raise."""
from __future__ import annotations

import json
import os
import pickle
import zlib

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from reference.data import (DATASET_NAMES, DEFAULT_DATA, DataError, build_datasets,
                            crop_flip_aug, dataset_arrays, resized_crop_box, shift_image)


def _split_arrays(ds):
    """(images uint8 [N, C, H, W], labels) of a dataset, read through __getitem__."""
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(xs).numpy(), np.array(ys)


def _rows(images, labels):
    """Sortable multiset of (label, image bytes) rows."""
    return sorted((int(y), x.tobytes()) for x, y in zip(images, labels))


# ============================================================================ digits
@pytest.fixture(scope="module")
def digits():
    return build_datasets("digits", augment=False)


@pytest.fixture(scope="module")
def digits_full():
    from sklearn.datasets import load_digits
    d = load_digits()
    return np.minimum(d.images * 16, 255).astype(np.uint8)[:, None], d.target


def test_digits_bundle_and_split_sizes(digits):
    assert DEFAULT_DATA == "digits"
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1079, 359, 359)
    assert (digits.num_classes, digits.in_chans, digits.img_size, digits.name) == \
        (10, 1, 8, "digits")
    x, y = digits.train[0]
    assert x.dtype == torch.uint8 and tuple(x.shape) == (1, 8, 8) and isinstance(y, int)


def test_digits_splits_partition_the_data_with_exact_pixels(digits, digits_full):
    images, labels = digits_full
    parts = [_split_arrays(d) for d in (digits.train, digits.val, digits.test)]
    all_x = np.concatenate([p[0] for p in parts])
    all_y = np.concatenate([p[1] for p in parts])
    # train + val + test is exactly the 1,797 images (as a multiset), pixels min(16 v, 255)
    assert _rows(all_x, all_y) == _rows(images, labels)
    assert all_x.max() == 255 and all_x.min() == 0
    assert set(np.unique(all_x)) <= set(range(0, 256, 16)) | {255}
    # stratified: every class in every split, floor(0.2 n + 0.5) per class in val and test
    counts = np.bincount(labels)
    for _, y in parts[1:]:
        assert np.array_equal(np.bincount(y, minlength=10), np.floor(0.2 * counts + 0.5))
    assert np.array_equal(np.bincount(parts[0][1], minlength=10),
                          counts - 2 * np.floor(0.2 * counts + 0.5))


def test_digits_split_is_deterministic_and_independent_of_seed(digits):
    torch.manual_seed(123)
    np.random.seed(123)
    other = build_datasets("digits", augment=False, seed=7)
    for a, b in ((digits.train, other.train), (digits.val, other.val),
                 (digits.test, other.test)):
        assert torch.equal(a.images, b.images) and np.array_equal(a.labels, b.labels)


def test_digits_augmentation_is_a_small_shift_and_reproducible(digits):
    aug = build_datasets("digits", augment=True, seed=0)
    n = 60
    base = [digits.train[i][0] for i in range(n)]
    torch.manual_seed(0)
    first = [aug.train[i] for i in range(n)]
    torch.manual_seed(0)
    again = [aug.train[i][0] for i in range(n)]
    shifts = []
    for b, (x, y), x2 in zip(base, first, again):
        assert torch.equal(x, x2) and y == digits.train.labels[len(shifts)]
        match = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                 if torch.equal(x, shift_image(b, dy, dx))]
        assert match, "augmented digit is not a 1-pixel translation of the original"
        shifts.append(match[0])
    assert len(set(shifts)) >= 5  # all nine shifts are drawn; 60 draws hit several
    assert sum(not torch.equal(x, b) for (x, _), b in zip(first, base)) > n // 2
    # another seed, same global RNG state -> other draws
    other = build_datasets("digits", augment=True, seed=1)
    torch.manual_seed(0)
    assert any(not torch.equal(other.train[i][0], first[i][0]) for i in range(n))
    # eval splits and augment=False never change
    for ds in (aug.val, aug.test):
        assert not ds.augment
    assert all(torch.equal(digits.train[i][0], base[i]) for i in range(n))


def test_shift_image_exact():
    img = torch.arange(1, 10, dtype=torch.uint8).reshape(1, 3, 3)
    assert shift_image(img, 1, 0).tolist() == [[[0, 0, 0], [1, 2, 3], [4, 5, 6]]]
    assert shift_image(img, 0, -1).tolist() == [[[2, 3, 0], [5, 6, 0], [8, 9, 0]]]
    assert shift_image(img, -1, 1).tolist() == [[[0, 4, 5], [0, 7, 8], [0, 0, 0]]]
    assert torch.equal(shift_image(img, 0, 0), img)


def test_dataset_arrays_digits(digits):
    x, y = dataset_arrays(digits.test)
    assert x.dtype == np.uint8 and x.shape == (359, 1, 8, 8) and y.dtype == np.int64
    assert np.array_equal(x, digits.test.images.numpy()) and np.array_equal(y, digits.test.labels)
    with pytest.raises(DataError, match="augment"):
        dataset_arrays(build_datasets("digits", augment=True).train)


def test_digits_rejects_other_img_size():
    with pytest.raises(DataError, match="img_size"):
        build_datasets("digits", img_size=16)


# ============================================================================ CIFAR-100
def _write_cifar(root, n_train=40, n_test=10, legacy_numpy_name=False):
    """Tiny CIFAR-100 python pickles in the release's layout; returns the arrays written."""
    rng = np.random.default_rng(5)
    out = {}
    os.makedirs(root, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(i % 4) * 7 for i in range(n)]  # classes 0, 7, 14, 21
        obj = {b"filenames": [f"img_{i}.png".encode() for i in range(n)],
               b"batch_label": f"{split} batch".encode(),
               b"fine_labels": labels, b"coarse_labels": [v // 5 for v in labels],
               b"data": data}
        raw = pickle.dumps(obj, protocol=2)
        if legacy_numpy_name:  # what the real (Python 2, numpy 1) files reference
            raw = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
            assert b"numpy.core.multiarray\n_reconstruct" in raw
        with open(os.path.join(root, split), "wb") as f:
            f.write(raw)
        out[split] = (data, np.array(labels))
    return out


def test_cifar100_round_trip_channel_layout(tmp_path):
    written = _write_cifar(tmp_path)
    b = build_datasets("cifar100", str(tmp_path), augment=False)
    assert (b.num_classes, b.in_chans, b.img_size, b.name) == (100, 3, 32, "cifar100")
    data, labels = written["test"]
    assert len(b.test) == 10
    for i in range(10):
        x, y = b.test[i]
        assert x.dtype == torch.uint8 and tuple(x.shape) == (3, 32, 32) and y == labels[i]
        assert np.array_equal(x.numpy(), data[i].reshape(3, 32, 32))
        # row-major 3x32x32: channel c, row h, column w at c*1024 + h*32 + w
        assert int(x[1, 5, 7]) == data[i, 1024 + 5 * 32 + 7]
        assert int(x[2, 31, 0]) == data[i, 2048 + 31 * 32]
    # val is a stratified 5% of train: 10 per class -> 1 per class; train + val = the file
    (vx, vy), (tx, ty) = _split_arrays(b.val), _split_arrays(b.train)
    assert sorted(vy.tolist()) == [0, 7, 14, 21] and len(ty) == 36
    data, labels = written["train"]
    assert _rows(np.concatenate([tx, vx]), np.concatenate([ty, vy])) == \
        _rows(data.reshape(-1, 3, 32, 32), labels)
    # the split ignores seed and the global RNG
    torch.manual_seed(9)
    again = build_datasets("cifar100", str(tmp_path), augment=False, seed=4)
    assert torch.equal(again.val.images, b.val.images)
    ax, ay = dataset_arrays(b.test)
    assert np.array_equal(ax, written["test"][0].reshape(-1, 3, 32, 32))
    assert np.array_equal(ay, written["test"][1])


def test_cifar100_legacy_pickle_in_subfolder(tmp_path):
    written = _write_cifar(tmp_path / "cifar-100-python", legacy_numpy_name=True)
    b = build_datasets("cifar100", str(tmp_path), augment=False)
    assert np.array_equal(b.test[3][0].numpy(), written["test"][0][3].reshape(3, 32, 32))


def test_cifar100_augmentation_is_padded_crop_and_flip(tmp_path):
    _write_cifar(tmp_path)
    plain = build_datasets("cifar100", str(tmp_path), augment=False).train
    aug = build_datasets("cifar100", str(tmp_path), augment=True).train
    torch.manual_seed(0)
    changed = 0
    for i in range(12):
        x, y = aug[i]
        assert y == plain.labels[i] and x.dtype == torch.uint8 and tuple(x.shape) == (3, 32, 32)
        padded = torch.nn.functional.pad(plain[i][0], (4, 4, 4, 4))
        crops = [padded[:, t:t + 32, l:l + 32] for t in range(9) for l in range(9)]
        assert any(torch.equal(x, c) or torch.equal(x, c.flip(-1)) for c in crops)
        changed += not torch.equal(x, plain[i][0])
    assert changed >= 10


def test_crop_flip_aug_exact_with_generator():
    img = torch.arange(3 * 4 * 4, dtype=torch.uint8).reshape(3, 4, 4)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(crop_flip_aug(img, g1, pad=1), crop_flip_aug(img, g2, pad=1))


def test_cifar100_resize_keeps_uint8(tmp_path):
    _write_cifar(tmp_path)
    with open(tmp_path / "test", "rb") as f:
        obj = pickle.load(f, encoding="bytes")
    obj[b"data"][0] = 77  # a constant image stays exactly constant under bicubic resize
    with open(tmp_path / "test", "wb") as f:
        pickle.dump(obj, f)
    b = build_datasets("cifar100", str(tmp_path), img_size=16)
    assert b.img_size == 16
    for ds in (b.train, b.val, b.test):
        x, _ = ds[0]
        assert x.dtype == torch.uint8 and tuple(x.shape) == (3, 16, 16)
    assert b.test[0][0].unique().tolist() == [77]


def test_cifar100_errors(tmp_path):
    with pytest.raises(DataError, match="needs a path"):
        build_datasets("cifar100")
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=str(missing)):
        build_datasets("cifar100", str(missing))
    with pytest.raises(DataError, match=str(tmp_path / "train")):  # empty folder: no train file
        build_datasets("cifar100", str(tmp_path))
    _write_cifar(tmp_path)
    train = tmp_path / "train"
    full = train.read_bytes()
    train.write_bytes(full[: len(full) // 2])  # truncated pickle
    with pytest.raises(DataError, match=f"corrupt.*{train}"):
        build_datasets("cifar100", str(tmp_path))
    train.write_bytes(pickle.dumps({b"data": os.system}))  # a pickle that imports code
    with pytest.raises(DataError, match="refusing to load global"):
        build_datasets("cifar100", str(tmp_path))
    rng = np.random.default_rng(0)
    for obj, msg in (({b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
                       b"fine_labels": [3, 100]}, "label 100 at position 1 is out of range"),
                     ({b"data": np.zeros((2, 1024), np.uint8), b"fine_labels": [0, 1]},
                      r"uint8 \[N, 3072\]"),
                     ({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0]},
                      "2 images but 1 labels"),
                     ({b"data": np.zeros((2, 3072), np.uint8)}, "fine_labels")):
        train.write_bytes(pickle.dumps(obj))
        with pytest.raises(DataError, match=msg) as e:
            build_datasets("cifar100", str(tmp_path))
        assert str(train) in str(e.value)


# ============================================================================ image files
COLORS = [(220, 30, 30), (30, 220, 30), (30, 30, 220), (220, 220, 30)]


def _jpg(path, color, size=(20, 14)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG", quality=95)


def _assert_color(x, color, size):
    assert x.dtype == torch.uint8 and tuple(x.shape) == (3, size, size)
    assert np.abs(x.numpy().reshape(3, -1).mean(1) - np.array(color)).max() < 8


def _write_flowers_official(root, n=12):
    """n jpgs, label of image k (1-based) = 1 + (k-1) % 4 in imagelabels.mat, plus setid.mat."""
    labels = np.array([1 + k % 4 for k in range(n)], dtype=np.uint8)
    for k in range(n):
        _jpg(os.path.join(root, "jpg", f"image_{k + 1:05d}.jpg"), COLORS[labels[k] - 1],
             size=(20 + k, 14))
    scipy.io.savemat(os.path.join(root, "imagelabels.mat"), {"labels": labels[None]})
    ids = {"trnid": [1, 2, 3, 4, 9, 10], "valid": [5, 6, 7, 8], "tstid": [12, 11]}
    scipy.io.savemat(os.path.join(root, "setid.mat"),
                     {k: np.array(v, dtype=np.float64)[None] for k, v in ids.items()})
    return labels, ids


def test_flowers102_official_layout(tmp_path):
    labels, ids = _write_flowers_official(str(tmp_path))
    b = build_datasets("flowers102", str(tmp_path), img_size=16, seed=3)
    assert (b.num_classes, b.in_chans, b.img_size, b.name) == (102, 3, 16, "flowers102")
    torch.manual_seed(0)
    for ds, key in ((b.train, "trnid"), (b.val, "valid"), (b.test, "tstid")):
        assert ds.augment == (key == "trnid")
        assert ds.files == [str(tmp_path / "jpg" / f"image_{i:05d}.jpg") for i in ids[key]]
        assert ds.labels.tolist() == [labels[i - 1] - 1 for i in ids[key]]
        for i in range(len(ds)):
            x, y = ds[i]
            assert y == labels[ids[key][i] - 1] - 1
            _assert_color(x, COLORS[y], 16)  # RGB order survives decode and transforms
    x, y = dataset_arrays(b.test)
    assert x.shape == (2, 3, 16, 16) and x.dtype == np.uint8 and y.tolist() == [3, 2]


def test_flowers102_default_size_and_eval_crop(tmp_path):
    _write_flowers_official(str(tmp_path), n=12)
    b = build_datasets("flowers102", str(tmp_path), augment=False)
    assert b.img_size == 224 and tuple(b.val[0][0].shape) == (3, 224, 224)


def test_flowers102_official_errors(tmp_path):
    labels, _ = _write_flowers_official(str(tmp_path))
    missing = tmp_path / "jpg" / "image_00011.jpg"
    missing.unlink()
    with pytest.raises(DataError, match=f"not found: {missing}"):
        build_datasets("flowers102", str(tmp_path))
    _jpg(str(missing), COLORS[0])
    bad = labels.copy()
    bad[4] = 103
    scipy.io.savemat(str(tmp_path / "imagelabels.mat"), {"labels": bad[None]})
    with pytest.raises(DataError, match="label 103 at position 4 is out of range 1..102"):
        build_datasets("flowers102", str(tmp_path))
    (tmp_path / "imagelabels.mat").write_bytes(b"MATLAB 5.0 MAT-file, garbage")
    with pytest.raises(DataError, match=str(tmp_path / "imagelabels.mat")):
        build_datasets("flowers102", str(tmp_path))
    scipy.io.savemat(str(tmp_path / "imagelabels.mat"), {"labels": labels[None]})
    scipy.io.savemat(str(tmp_path / "setid.mat"), {"trnid": [[1]], "valid": [[2]]})
    with pytest.raises(DataError, match="no key 'tstid'"):
        build_datasets("flowers102", str(tmp_path))


def test_corrupt_image_raises_on_read(tmp_path):
    _write_flowers_official(str(tmp_path))
    path = tmp_path / "jpg" / "image_00012.jpg"
    path.write_bytes(path.read_bytes()[:-10])  # cut past the header: only decoding finds it
    b = build_datasets("flowers102", str(tmp_path), img_size=16)  # the headers are fine: builds
    with pytest.raises(DataError, match=f"cannot decode image {path}"):
        b.test[0]


def test_flowers102_image_with_a_damaged_header_is_refused_before_use(tmp_path):
    _write_flowers_official(str(tmp_path))
    path = tmp_path / "jpg" / "image_00012.jpg"
    path.write_bytes(path.read_bytes()[:40])  # the header itself is cut
    with pytest.raises(DataError, match=f"flowers102/test: listed image file has a damaged header .*: {path}$"):
        build_datasets("flowers102", str(tmp_path), img_size=16)


def test_flowers102_image_folder_layout(tmp_path):
    names = [str(k) for k in range(1, 103)]  # folder names "1".."102", sorted as strings
    order = sorted(names)
    for c in names:
        n = 10 if c in ("1", "2", "100") else 1
        for k in range(n):
            _jpg(str(tmp_path / "train" / c / f"{k}.jpg"), COLORS[int(c) % 4])
    for c in ("100", "2"):
        _jpg(str(tmp_path / "val" / c / "a.jpg"), COLORS[int(c) % 4])
        _jpg(str(tmp_path / "val" / c / "b.JPG"), COLORS[int(c) % 4])
    (tmp_path / "val" / "2" / "notes.txt").write_text("not an image")
    b = build_datasets("flowers102", str(tmp_path), img_size=12, augment=False)
    assert order[:4] == ["1", "10", "100", "101"]  # ImageFolder's order
    # val = 10% of each train class: 1 each from the three 10-image classes
    assert sorted(b.val.labels.tolist()) == sorted(order.index(c) for c in ("1", "2", "100"))
    assert len(b.train) == 99 + 27 and len(b.test) == 4
    assert b.test.labels.tolist() == [order.index("100")] * 2 + [order.index("2")] * 2
    assert all(os.path.basename(os.path.dirname(f)) == order[y]
               for ds in (b.train, b.val) for f, y in zip(ds.files, ds.labels))
    for i in range(len(b.test)):
        x, y = b.test[i]
        _assert_color(x, COLORS[int(order[y]) % 4], 12)
    assert set(b.train.files).isdisjoint(b.val.files)
    # a val/ class that train/ lacks; a wrong number of class folders
    _jpg(str(tmp_path / "val" / "103" / "a.jpg"), COLORS[0])
    with pytest.raises(DataError, match="103"):
        build_datasets("flowers102", str(tmp_path))
    os.rename(tmp_path / "val" / "103", tmp_path / "train" / "103")
    with pytest.raises(DataError, match="103 class folders, expected 102"):
        build_datasets("flowers102", str(tmp_path))


def test_flowers102_no_layout(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path} holds neither"):
        build_datasets("flowers102", str(tmp_path))


def test_resized_crop_box_in_bounds():
    g = torch.Generator().manual_seed(0)
    for h, w in ((30, 50), (7, 7), (100, 1), (1, 100)):
        for _ in range(50):
            top, left, ch, cw = resized_crop_box(h, w, g)
            assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w
            assert ch >= 1 and cw >= 1
    assert resized_crop_box(100, 1, g) == (49, 0, 1, 1)  # fallback: central box, ratio 3/4


# ============================================================================ Chaoyang
def _write_chaoyang(root):
    lists = {}
    for split, per_class in (("train", 10), ("test", 2)):
        items = []
        for k in range(per_class * 4):
            name = f"{split}/img_{k:03d}.jpg"
            label = (k * 3) % 4
            _jpg(os.path.join(root, name), COLORS[label], size=(18, 18))
            items.append({"name": name, "label": label})
        with open(os.path.join(root, f"{split}.json"), "w") as f:
            json.dump(items, f)
        lists[split] = items
    return lists


def test_chaoyang_json_lists(tmp_path):
    lists = _write_chaoyang(str(tmp_path))
    b = build_datasets("chaoyang", str(tmp_path), img_size=16)
    assert (b.num_classes, b.in_chans, b.img_size, b.name) == (4, 3, 16, "chaoyang")
    assert (len(b.train), len(b.val), len(b.test)) == (36, 4, 8)
    assert sorted(b.val.labels.tolist()) == [0, 1, 2, 3]
    want = {str(tmp_path / it["name"]): it["label"] for it in lists["train"]}
    got = dict(zip(b.train.files + b.val.files, (b.train.labels.tolist() + b.val.labels.tolist())))
    assert got == want
    assert b.test.files == [str(tmp_path / it["name"]) for it in lists["test"]]
    torch.manual_seed(1)
    for ds in (b.train, b.test):
        for i in range(len(ds)):
            x, y = ds[i]
            assert y == ds.labels[i]
            _assert_color(x, COLORS[y], 16)
    again = build_datasets("chaoyang", str(tmp_path), img_size=16, seed=9)
    assert again.val.files == b.val.files
    x, y = dataset_arrays(b.test)
    assert x.shape == (8, 3, 16, 16) and y.tolist() == [it["label"] for it in lists["test"]]


def test_chaoyang_errors(tmp_path):
    lists = _write_chaoyang(str(tmp_path))
    train_json = tmp_path / "train.json"

    def write(items):
        train_json.write_text(json.dumps(items))

    gone = tmp_path / "train" / "img_005.jpg"
    gone.unlink()
    with pytest.raises(DataError, match=f"not found: {gone}"):
        build_datasets("chaoyang", str(tmp_path))
    _jpg(str(gone), COLORS[0])
    train_json.write_text('[{"name": "train/img_000.jpg", "label": 0}')  # truncated JSON
    with pytest.raises(DataError, match=f"corrupt.*{train_json}"):
        build_datasets("chaoyang", str(tmp_path))
    write(lists["train"][:3] + [{"name": "train/img_003.jpg", "label": 4}])
    with pytest.raises(DataError, match=f"{train_json}: label 4 at position 3 is out of range"):
        build_datasets("chaoyang", str(tmp_path))
    write([{"name": "train/img_000.jpg"}])
    with pytest.raises(DataError, match=f"{train_json} entry 0"):
        build_datasets("chaoyang", str(tmp_path))
    write({"name": "x"})
    with pytest.raises(DataError, match="must hold a JSON list"):
        build_datasets("chaoyang", str(tmp_path))
    write(lists["train"])
    (tmp_path / "test.json").unlink()
    with pytest.raises(DataError, match=str(tmp_path / "test.json")):
        build_datasets("chaoyang", str(tmp_path))


# ============================================================================ general
def test_unknown_name_and_bad_arguments(tmp_path):
    with pytest.raises(DataError) as e:
        build_datasets("imagenet")
    assert "'imagenet'" in str(e.value) and all(n in str(e.value) for n in DATASET_NAMES)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DataError, match=f"not a directory: {f}"):
        build_datasets("chaoyang", str(f))
    with pytest.raises(DataError, match="img_size"):
        build_datasets("chaoyang", str(tmp_path), img_size=0)
    with pytest.raises(DataError, match="seed"):
        build_datasets("digits", seed=1.5)


@pytest.mark.parametrize("plant, problem", [
    ("garbage", "is not an image"), ("missing", "not found"), ("empty", "is not an image"),
    ("folder", "is a folder"), ("fifo", "is not a regular file"), ("bomb", "too many pixels"),
])
def test_chaoyang_unusable_images_are_refused_before_use(tmp_path, plant, problem):
    """Every listed image's header is read when the dataset is built: a bad file is named at once."""
    _write_chaoyang(str(tmp_path))
    bad = tmp_path / "train" / "img_007.jpg"
    bad.unlink()
    if plant == "garbage":
        bad.write_bytes(b"\x00not a jpeg" * 50)
    elif plant == "empty":
        bad.write_bytes(b"")
    elif plant == "folder":
        bad.mkdir()
    elif plant == "fifo":
        os.mkfifo(bad)  # never opened: it would block
    elif plant == "bomb":  # a valid PNG header declaring 40000 x 40000 pixels
        Image.new("L", (1, 1)).save(bad, "PNG")
        data = bytearray(bad.read_bytes())
        data[16:24] = (40000).to_bytes(4, "big") * 2
        data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # the IHDR chunk's CRC
        bad.write_bytes(bytes(data))
    with pytest.raises(DataError) as e:
        build_datasets("chaoyang", str(tmp_path))
    msg = str(e.value)
    assert msg.startswith("chaoyang/") and problem in msg and msg.endswith(str(bad)), msg


def test_several_unusable_images_are_counted(tmp_path):
    _write_chaoyang(str(tmp_path))
    for k in (3, 8, 21):
        (tmp_path / "train" / f"img_{k:03d}.jpg").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"img_\d{3}\.jpg \(and 2 more of its \d+ files are unusable\)$"):
        build_datasets("chaoyang", str(tmp_path))


@pytest.mark.parametrize("name", ["../outside.jpg", "train/../../outside.jpg", "/etc/hostname", "", "train/a\0b.jpg"])
def test_chaoyang_list_entry_outside_the_dataset_is_refused(tmp_path, name):
    root = tmp_path / "data"
    lists = _write_chaoyang(str(root))
    _jpg(str(tmp_path / "outside.jpg"), COLORS[0])  # readable, but not the dataset's
    (root / "train.json").write_text(json.dumps(lists["train"][:5] + [{"name": name, "label": 0}]))
    with pytest.raises(DataError, match=f"{root / 'train.json'} entry 5: image name .* is not a path inside "
                                        f"the dataset folder"):
        build_datasets("chaoyang", str(root))


def test_chaoyang_entry_inside_through_dotdot_is_accepted(tmp_path):
    lists = _write_chaoyang(str(tmp_path))
    items = [dict(it, name=f"test/../{it['name']}") for it in lists["train"]]  # still inside the folder
    (tmp_path / "train.json").write_text(json.dumps(items))
    assert len(build_datasets("chaoyang", str(tmp_path)).train) == 36
