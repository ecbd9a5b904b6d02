"""gsbsim.digits: the torch-free digits split equals reference.data's, image for image."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from gsbsim.data import digits


@pytest.fixture(scope="module")
def everything():
    return digits.load_digits_arrays()


def test_all_digits_match_scikit_learn(everything):
    from sklearn.datasets import load_digits
    images, labels = everything
    d = load_digits()
    assert images.dtype == np.uint8 and images.shape == (1797, 1, 8, 8)
    assert labels.dtype == np.int64 and np.array_equal(labels, d.target)
    assert np.array_equal(images[:, 0], np.minimum(d.images * 16, 255).astype(np.uint8))
    assert images.max() == 255 and images.min() == 0          # 16 * 16 = 256 is clipped to 255


def test_split_sizes_partition_and_strata(everything):
    _, labels = everything
    idx = digits.digits_split_indices(labels)
    assert {k: len(v) for k, v in idx.items()} == {"train": 1079, "val": 359, "test": 359}
    joined = np.concatenate([idx["train"], idx["val"], idx["test"]])
    assert np.array_equal(np.sort(joined), np.arange(1797))   # a partition
    for c in range(10):                                        # floor(0.2 * n_c + 0.5) per class
        n_c = int((labels == c).sum())
        want = int(np.floor(0.2 * n_c + 0.5))
        assert int((labels[idx["val"]] == c).sum()) == want == int((labels[idx["test"]] == c).sum())


def test_split_is_identical_to_reference_data():
    torch = pytest.importorskip("torch")
    from reference.data import SPLIT_SEED, build_datasets, stratified_split
    assert SPLIT_SEED == digits.SPLIT_SEED and stratified_split is digits.stratified_split
    bundle = build_datasets("digits", augment=False)
    for split in digits.SPLITS:
        ds = getattr(bundle, split)
        ref_images = torch.stack([ds[i][0] for i in range(len(ds))]).numpy()
        images, labels = digits.digits_split(split)
        assert np.array_equal(images, ref_images), split
        assert np.array_equal(labels, ds.labels), split


def test_stratified_split_is_deterministic_and_seeded():
    labels = np.repeat(np.arange(3), [5, 7, 11])
    a = digits.stratified_split(labels, (0.2,))
    b = digits.stratified_split(labels, (0.2,))
    c = digits.stratified_split(labels, (0.2,), seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert [len(x) for x in a] == [1 + 1 + 2, 4 + 6 + 9]      # floor(0.2 n + 0.5) = 1, 1, 2
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_errors_name_the_problem(monkeypatch):
    with pytest.raises(digits.DigitsError, match="unknown split 'dev'"):
        digits.digits_split("dev")
    monkeypatch.setattr(digits.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(digits.DigitsError, match="scikit-learn is not installed"):
        digits.load_digits_arrays()


def test_cli_digits_run_imports_neither_torch_nor_sklearn(tmp_path):
    """`gsbsim run --data digits` reads the split without torch (the cold start depends on it)."""
    from gsbsim.format.model_file import save_model
    from gsbsim.format.random_model import random_model
    m = random_model(np.random.default_rng(0), embed_dim=24, num_heads=2, mlp_hidden=48)
    save_model(tmp_path / "m.npz", m.header, m.arrays)
    code = ("import sys\nfrom gsbsim.cli.app import main\n"
            f"rc = main(['run', '--model', {str(tmp_path / 'm.npz')!r}, '--images', '5', '--json'])\n"
            "heavy = [m for m in ('torch', 'sklearn', 'reference') if m in sys.modules]\n"
            "print('HEAVY', heavy)\nsys.exit(rc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    assert '"data": "digits/test"' in out.stdout and '"images": 5' in out.stdout
