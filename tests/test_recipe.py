"""The released recipe (issue 14): a timm checkpoint file as teacher, timm's create_transform
augmentation on uint8 pixels, the lr rule 1e-3 x total batch / 512, Flowers102 on train+val."""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from timm.models.vision_transformer import VisionTransformer

from reference.checkpoint import load_model
from reference.data import build_datasets
from reference.data.released import (RE_PROB, _erase_in_pixels, apply_released_recipe, released_train_ops,
                                     released_transform)
from reference.presets import Preset, Recipe
from reference.teachers import NormalizedTeacher, TeacherFileError, read_teacher_file
from reference.train import entry
from reference.train.distributed import Dist
from reference.train.recipe import batch_and_lr
from reference.train.stages import plan_stage
from tests.support.presets import registered_preset

TINY = Preset(name="tinyrel", img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2, mlp_ratio=2.0,
              dataset="digits", default_recipe="released",
              recipes={s: Recipe(epochs=1, batch_size=64, lr=5e-3) for s in ("teacher", "stage1", "stage2")})
ARGS = ["--preset", "tinyrel", "--limit-train", "64", "--no-progress", "--epochs", "1"]


@pytest.fixture(scope="module", autouse=True)
def tiny_preset():
    with registered_preset("tinyrel", TINY) as preset:
        yield preset


def _args(**kw) -> argparse.Namespace:
    base = dict(recipe=None, batch_size=None, lr=None, weight_decay=None, epochs=None, epochs_teacher=None,
                epochs_stage1=None, epochs_stage2=None)
    return argparse.Namespace(**(base | kw))


# ============================================================================ the lr rule
def test_released_lr_follows_the_total_batch_and_the_world_size():
    one, two = Dist(), Dist(rank=0, world_size=2)
    assert plan_stage("stage1", _args(), TINY, one).batch_size == 64
    assert plan_stage("stage1", _args(), TINY, one).lr == pytest.approx(1e-3 * 64 / 512)
    assert plan_stage("stage1", _args(), TINY, two).batch_size == 128  # 64 per process, as released
    assert plan_stage("stage1", _args(), TINY, two).lr == pytest.approx(1e-3 * 128 / 512)
    assert plan_stage("stage1", _args(batch_size=256), TINY, two).lr == pytest.approx(5e-4)
    assert plan_stage("stage1", _args(batch_size=256, lr=0.1), TINY, two).lr == 0.1  # --lr wins
    plan = plan_stage("stage1", _args(recipe="preset"), TINY, two)  # the preset's recipe as written
    assert (plan.batch_size, plan.lr) == (64, 5e-3)
    assert "released rule" in batch_and_lr(TINY.recipe("teacher"), _args(), TINY, 1)[2]


@pytest.mark.parametrize("batch, lr", [("16", "3.125e-05"), ("32", "6.25e-05")])
def test_lr_is_printed_for_the_batch_size(tmp_path, capsys, batch, lr):
    assert entry.main([*ARGS, "--stage", "teacher", "--batch-size", batch, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"batch {batch}, lr {lr} (released rule: 0.001 x total batch {batch} (--batch-size {batch}) / 512)" in out


# ============================================================================ the transform pipeline
def test_released_train_ops_are_timms_create_transform():
    ops, erasing = released_train_ops(224)
    names = [type(o).__name__ for o in ops]
    assert names == ["RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "RandAugment"]
    assert "bicubic" in repr(ops[0]).lower() and ops[0].scale == (0.08, 1.0)
    ra = ops[2]
    assert len(ra.ops) == 15 and ra.num_layers == 2
    assert all(op.magnitude == 9 and op.magnitude_std == 0.5 for op in ra.ops)
    assert {"PosterizeIncreasing", "SolarizeIncreasing"} <= {op.name for op in ra.ops}  # the -inc1 ops
    assert erasing.probability == RE_PROB and erasing.mode == "pixel"
    small, _ = released_train_ops(32)  # DeiT: a padded random crop for small images
    assert type(small[0]).__name__ == "RandomCrop" and small[0].padding == 4


def test_released_transform_is_applied_reproducibly_on_uint8():
    img = torch.randint(0, 256, (3, 30, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    outs = [released_transform(img, torch.Generator().manual_seed(s), size=24, channels=3) for s in (5, 5, 6)]
    assert all(o.dtype == torch.uint8 and tuple(o.shape) == (3, 24, 24) for o in outs)
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    state = torch.get_rng_state()
    released_transform(img, torch.Generator().manual_seed(7), size=24, channels=3)
    assert torch.equal(state, torch.get_rng_state())  # the global stream is left alone
    ev = released_transform(img, None, size=24, channels=3)
    assert torch.equal(ev, released_transform(img, None, size=24, channels=3)) and tuple(ev.shape) == (3, 24, 24)


def test_erasing_changes_only_the_erased_box_and_stays_in_pixels():
    from timm.data.random_erasing import RandomErasing
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    y = _erase_in_pixels(x, RandomErasing(probability=1.0, mode="pixel", device="cpu"),
                         (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert y.dtype == torch.uint8
    changed = (y != x).any(0)
    assert 0 < changed.sum() < 32 * 32
    rows, cols = changed.nonzero(as_tuple=True)  # the changes lie in one box; outside it, exact pixels
    box = torch.zeros_like(changed)
    box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
    assert torch.equal(y[:, ~box], x[:, ~box])


# ============================================================================ Flowers102 on train + val
def _flowers(root, n=40):
    labels = np.array([1 + k % 2 for k in range(n)], dtype=np.uint8)
    os.makedirs(os.path.join(root, "jpg"))
    for k in range(n):
        Image.new("RGB", (12, 10), (200, 20 * (k % 2), 9)).save(os.path.join(root, "jpg", f"image_{k + 1:05d}.jpg"))
    scipy.io.savemat(os.path.join(root, "imagelabels.mat"), {"labels": labels[None]})
    ids = {"trnid": range(1, 5), "valid": range(5, 9), "tstid": range(9, n + 1)}
    scipy.io.savemat(os.path.join(root, "setid.mat"), {k: np.array(list(v), np.float64)[None] for k, v in ids.items()})
    return ids


def test_flowers102_released_trains_on_train_plus_val_and_selects_on_part_of_test(tmp_path):
    ids = _flowers(str(tmp_path))
    b = apply_released_recipe(build_datasets("flowers102", str(tmp_path), img_size=16))
    name = lambda i: str(tmp_path / "jpg" / f"image_{i:05d}.jpg")
    assert b.train.files == [name(i) for i in list(ids["trnid"]) + list(ids["valid"])] and b.train.augment
    sel, rest = set(b.val.files), set(b.test.files)
    assert not sel & rest and sel | rest == {name(i) for i in ids["tstid"]}
    assert len(sel) == 4 and np.bincount(b.val.labels).tolist() == [2, 2]  # 10% per class
    x, _ = b.train[0]
    assert x.dtype == torch.uint8 and tuple(x.shape) == (3, 16, 16)


# ============================================================================ a timm checkpoint as teacher
def _timm_file(folder, suffix, num_classes=1000, in_chans=1, embed_dim=64, mean_std=None):
    net = VisionTransformer(img_size=8, patch_size=4, in_chans=in_chans, num_classes=num_classes,
                            embed_dim=embed_dim, depth=1, num_heads=1, mlp_ratio=2.0)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "deit" + suffix)
    state = {k: v.clone().contiguous() for k, v in net.state_dict().items()}
    if suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file(state, path)
    else:
        torch.save({"model": state}, path)  # as DeiT's releases wrap it
    if mean_std:
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump({"pretrained_cfg": {"mean": mean_std[0], "std": mean_std[1]}}, f)
    return path, state


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_teacher_stage_fine_tunes_a_timm_checkpoint_with_its_normalisation(tmp_path, capsys, suffix):
    path, state = _timm_file(tmp_path / "ckpt", suffix, mean_std=([0.25], [0.5]))
    out = tmp_path / "run"
    assert entry.main([*ARGS, "--stage", "teacher", "--teacher-checkpoint", path, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"initialised from {path}" in printed and "config.json" in printed and "fresh: head.weight, head.bias" in printed
    teacher, meta = load_model(out / "teacher" / "best.pt")  # rebuilt from the checkpoint alone
    assert isinstance(teacher, NormalizedTeacher) and meta["init"] == path
    assert teacher.mean.flatten().tolist() == [0.25] and teacher.std.flatten().tolist() == [0.5]
    assert teacher.net.head.out_features == 10
    x = torch.randint(0, 256, (2, 1, 8, 8)).float()
    assert torch.equal(teacher(x), teacher.net((x / 255 - 0.25) / 0.5))
    # and the student stages distil from it
    assert entry.main([*ARGS, "--stage", "stage1", "--teacher", str(out / "teacher" / "best.pt"),
                       "--out", str(out)]) == 0


def test_teacher_weights_come_from_the_file(tmp_path):
    from reference.teachers import build_timm_teacher, init_from_timm_state
    path, state = _timm_file(tmp_path, ".pth")
    st, arch = read_teacher_file(path)
    assert (arch["embed_dim"], arch["depth"], arch["num_heads"], arch["patch_size"], arch["img_size"]) == (64, 1, 1, 4, 8)
    assert arch["norm_source"].startswith("timm's ImageNet default") and len(arch["mean"]) == 1
    t = build_timm_teacher(arch, 10, 1, 16)  # another class count and image size
    fresh = init_from_timm_state(t, st, path)
    assert fresh == ["head.weight", "head.bias"]
    own = t.net.state_dict()
    assert torch.equal(own["blocks.0.mlp.fc1.weight"], state["blocks.0.mlp.fc1.weight"])
    assert own["pos_embed"].shape == (1, 1 + 16, 64)  # resampled 2x2 -> 4x4 grid


def test_a_student_stage_uses_a_trained_timm_file_directly(tmp_path, capsys):
    path, _ = _timm_file(tmp_path / "c", ".safetensors", num_classes=10)
    assert entry.main([*ARGS, "--stage", "stage1", "--teacher-checkpoint", path, "--out", str(tmp_path / "r")]) == 0
    path1000, _ = _timm_file(tmp_path / "d", ".pth")
    assert entry.main([*ARGS, "--stage", "stage1", "--teacher-checkpoint", path1000, "--out", str(tmp_path / "r")]) == 2
    assert "its head has 1000 classes, the data 10" in capsys.readouterr().err


def _one_line(capsys, fragment):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and fragment in err, err


def test_teacher_file_errors_are_one_line(tmp_path, capsys):
    run = lambda f, *more: entry.main([*ARGS, "--stage", "teacher", "--teacher-checkpoint", str(f),
                                        "--out", str(tmp_path / "o"), *more])
    assert run(tmp_path / "absent.pth") == 2
    _one_line(capsys, "absent.pth: teacher checkpoint not found")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    assert run(tmp_path / "junk.pth") == 2
    _one_line(capsys, "junk.pth: not a readable checkpoint")
    torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "cnn.pth")
    assert run(tmp_path / "cnn.pth") == 2
    _one_line(capsys, "not a timm ViT/DeiT state dict (patch_embed.proj.weight")
    odd, _ = _timm_file(tmp_path / "odd", ".pth", embed_dim=48)
    assert run(odd) == 2
    _one_line(capsys, "embed_dim 48 is not a multiple of 64")
    rgb, _ = _timm_file(tmp_path / "rgb", ".pth", in_chans=3)
    assert run(rgb) == 2
    _one_line(capsys, "deit.pth takes 3-channel images, the data has 1")
    assert not (tmp_path / "o").exists()  # nothing written before the inputs are known good
    with pytest.raises(SystemExit) as e:  # argparse's usage error: usage, then the one error line
        entry.main([*ARGS, "--stage", "stage1", "--teacher-checkpoint", odd, "--teacher", odd])
    assert e.value.code == 2
    assert "--teacher-checkpoint and --teacher are exclusive" in capsys.readouterr().err.splitlines()[-1]


def test_read_teacher_file_rejects_a_bad_mean_std(tmp_path):
    path, _ = _timm_file(tmp_path, ".pth", mean_std=([0.5, 0.5, 0.5], [0.2, 0.2, 0.2]))
    with pytest.raises(TeacherFileError, match="3 channels, the model 1"):
        read_teacher_file(path)
