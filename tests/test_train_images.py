"""The trainer on a lazily decoded image dataset (the chaoyang format) with unusable images.

Policy (docs/errors.md): every listed image's header is read before the first epoch, so a
missing or corrupt file stops the run at once; a file damaged past its header (or changed
while the run goes on) is found when decoded and reported in one line naming the file and
the epoch, with last.pt kept for --resume. The dataset is a tiny synthetic one written here.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from reference.checkpoint import load_checkpoint
from reference.presets import PRESETS, Preset, Recipe
from reference.train import entry, stages

PROG = "python -m reference.train"
RGB = Preset(name="tiny_rgb", img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2, mlp_ratio=2.0,
             dataset="chaoyang",
             recipes={s: Recipe(epochs=2, batch_size=8, lr=2e-3, warmup_epochs=1) for s in ("teacher", "stage1",
                                                                                          "stage2")})
COLORS = [(220, 30, 30), (30, 220, 30), (30, 30, 220), (220, 220, 30)]


@pytest.fixture(autouse=True)
def rgb_preset():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    PRESETS[RGB.name] = RGB
    yield
    PRESETS.pop(RGB.name, None)
    torch.set_num_threads(threads)


@pytest.fixture()
def data(tmp_path) -> Path:
    """A chaoyang folder: 20 train and 8 test JPEGs of 12x12, 4 classes."""
    root = tmp_path / "chaoyang"
    for split, n in (("train", 20), ("test", 8)):
        (root / split).mkdir(parents=True)
        items = []
        for k in range(n):
            name = f"{split}/img_{k:03d}.jpg"
            Image.new("RGB", (12, 12), COLORS[k % 4]).save(root / name, "JPEG", quality=95)
            items.append({"name": name, "label": k % 4})
        (root / f"{split}.json").write_text(json.dumps(items))
    return root


def train(data: Path, out: Path, *extra: str) -> int:
    return entry.main(["--preset", RGB.name, "--data", "chaoyang", "--data-path", str(data), "--stage", "teacher",
                       "--out", str(out), "--no-progress", *extra])


def one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{PROG}: error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


@pytest.mark.parametrize("plant, problem", [("corrupt", "is not an image"), ("missing", "not found")])
def test_unusable_image_stops_the_run_before_it_starts(data, tmp_path, capsys, plant, problem):
    bad = data / "test" / "img_005.jpg"
    if plant == "corrupt":
        bad.write_bytes(b"this was a jpeg once" * 10)
    else:
        bad.unlink()
    assert train(data, tmp_path / "out") == 2
    one_error_line(capsys, "--data chaoyang", problem, str(bad))
    assert not (tmp_path / "out").exists()  # nothing written: it stopped before any work


@pytest.mark.parametrize("workers", [0, 1])
def test_image_damaged_during_the_run_is_one_line_naming_file_and_epoch(data, tmp_path, capsys, monkeypatch,
                                                                         workers):
    """A train image cut short after epoch 1 (past its header: only decoding can tell): one line with the
    file and the epoch, also from a DataLoader worker process; after repairing it, --resume finishes."""
    bad = data / "train" / "img_006.jpg"
    good = bad.read_bytes()
    real = stages.train_one_epoch
    calls = {"n": 0}

    def damaging(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            bad.write_bytes(good[:-10])
        return real(*a, **k)

    monkeypatch.setattr(stages, "train_one_epoch", damaging)
    out = tmp_path / "out"
    assert train(data, out, "--workers", str(workers)) == 2
    one_error_line(capsys, "teacher epoch 2/2: ", "chaoyang/train: cannot decode image", str(bad),
                   "fix it and continue with --resume")
    assert load_checkpoint(out / "teacher" / "last.pt")["epoch"] == 1

    bad.write_bytes(good)
    monkeypatch.undo()
    assert train(data, out, "--workers", str(workers), "--resume") == 0
    assert json.loads((out / "teacher" / "summary.json").read_text())["epochs"] == 2


def test_image_missing_at_the_test_evaluation(data, tmp_path, capsys, monkeypatch):
    """Deleted while the run goes on: found by the final test evaluation, named with where it happened."""
    gone = data / "test" / "img_002.jpg"
    real = stages.train_one_epoch

    def deleting(*a, **k):
        gone.unlink(missing_ok=True)
        return real(*a, **k)

    monkeypatch.setattr(stages, "train_one_epoch", deleting)
    assert train(data, tmp_path / "out") == 2
    one_error_line(capsys, "teacher test evaluation: ", "chaoyang/test: cannot decode image", str(gone))
