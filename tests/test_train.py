"""Tests for the training entry point (reference/train.py, distill.py, checkpoint.py, metrics.py).

Runs are tiny: a 'tiny' preset (depth 1, width 16) on the embedded digits data with
--limit-train 128 and 1-3 epochs. Most runs call entry.main() in-process; the
torchrun test and one bad-input test run this file as a script (see the bottom),
which registers the same preset and calls main().
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from reference import checkpoint as ckpt_mod
from reference.train import cli as train_cli
from reference.train import distributed, entry, loop, schedule, stages
from reference.checkpoint import CHECKPOINT_KEYS, CheckpointError, load_checkpoint, load_model, save_checkpoint
from reference.distill import TrainLoss, distillation_loss
from reference.metrics import read_jsonl
from reference.presets import PRESETS, Preset, Recipe
from tests.support.presets import registered_preset

ROOT = Path(__file__).resolve().parents[1]
STAGE_FILES = {"last.pt", "best.pt", "metrics.jsonl", "curves.png", "summary.json"}
TINY = Preset(name="tiny", img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2, mlp_ratio=2.0,
              dataset="digits",
              recipes={s: Recipe(epochs=2, batch_size=64, lr=2e-3, min_lr=1e-5, weight_decay=0.05, warmup_epochs=1)
                       for s in ("teacher", "stage1", "stage2")})
TINY_ARGS = ["--preset", "tiny", "--limit-train", "128", "--no-progress"]


@pytest.fixture(scope="module", autouse=True)
def tiny_preset():
    """Register the tiny preset and use one thread (tiny models; avoids oversubscribed cores)."""
    with registered_preset("tiny", TINY) as preset:
        yield preset


def run_main(*argv: str) -> int:
    return entry.main([*TINY_ARGS, *argv])


def stage_files(stage_dir: Path) -> set[str]:
    return {p.name for p in stage_dir.iterdir()}


def model_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def chain(tmp_path_factory, tiny_preset):
    """One uninterrupted teacher -> stage1 -> stage2 run (2 epochs each); (out dir, stdout)."""
    out = tmp_path_factory.mktemp("chain")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = run_main("--out", str(out), "--epochs", "2")
    assert rc == 0
    return out, buf.getvalue()


# ----------------------------------------------------------------------------- the full chain
def test_chain_writes_every_file_and_a_table(chain):
    out, stdout = chain
    assert sorted(p.name for p in out.iterdir()) == ["stage1", "stage2", "teacher"]
    for stage in ("teacher", "stage1", "stage2"):
        assert stage_files(out / stage) == STAGE_FILES, stage  # no temporary files left either
        assert (out / stage / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        summary = json.loads((out / stage / "summary.json").read_text())
        assert summary["stage"] == stage and summary["epochs"] == 2 and summary["args"]["preset"] == "tiny"
    table = stdout[stdout.index("stage    best val top-1"):].splitlines()
    assert [line.split()[0] for line in table[2:]] == ["teacher", "stage1", "stage2"]
    s2 = json.loads((out / "stage2" / "summary.json").read_text())
    assert s2["init"] == str(out / "stage1" / "best.pt") and s2["teacher"] == str(out / "teacher" / "best.pt")


def test_metrics_jsonl_and_schedule(chain):
    out, _ = chain
    for stage in ("teacher", "stage1", "stage2"):
        lines = (out / stage / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert [list(r) for r in records] == [["epoch", "lr", "train_loss", "train_acc", "val_acc", "time"]] * 2
        assert [r["epoch"] for r in records] == [1, 2]
        # warm-up epoch 0 runs at lr/2, epoch 1 starts the cosine at the peak lr
        assert [r["lr"] for r in records] == [2e-3 / 2, 2e-3]
        for r in records:
            assert math.isfinite(r["train_loss"]) and 0 <= r["train_acc"] <= 100 and 0 <= r["val_acc"] <= 100
            # 359 validation images: every accuracy is a whole number of them
            assert round(r["val_acc"] * 359 / 100, 6) == round(r["val_acc"] * 359 / 100)


def test_best_checkpoint_and_test_accuracy_are_consistent(chain):
    """best.pt is the first epoch with the highest val top-1; test top-1 is that of best.pt."""
    from reference.data import build_datasets

    out, _ = chain
    bundle = build_datasets("digits", img_size=8)
    for stage in ("teacher", "stage1", "stage2"):
        records = read_jsonl(out / stage / "metrics.jsonl")
        summary = json.loads((out / stage / "summary.json").read_text())
        vals = [r["val_acc"] for r in records]
        assert summary["best_epoch"] == vals.index(max(vals)) + 1
        assert summary["best_val_acc"] == max(vals)
        model, meta = load_model(out / stage / "best.pt")
        assert meta["epoch"] == summary["best_epoch"] and meta["kind"] == stage
        assert not model.training
        d = distributed.Dist()
        assert loop.evaluate(model, bundle.val, 64, torch.device("cpu"), d) == summary["best_val_acc"]
        assert loop.evaluate(model, bundle.test, 64, torch.device("cpu"), d) == summary["test_acc"]
        last = load_checkpoint(out / stage / "last.pt", required=CHECKPOINT_KEYS)
        assert last["epoch"] == 2 and last["best_val"] == summary["best_val_acc"]


def test_checkpoint_holds_what_rebuilds_the_model(chain):
    out, _ = chain
    for stage in ("teacher", "stage1", "stage2"):
        raw = load_checkpoint(out / stage / "last.pt", required=CHECKPOINT_KEYS)
        assert set(CHECKPOINT_KEYS) <= set(raw)
        assert (raw["num_classes"], raw["in_chans"], raw["img_size"], raw["preset"]["embed_dim"]) == (10, 1, 8, 16)
        assert raw["quant_options"] == ({} if stage == "teacher" else
                                        {"groups": 3, "mask_stat": "row", "released_quirks": False})
        model, meta = load_model(out / stage / "last.pt")
        assert_same_tensors(model.state_dict(), raw["model"])
        assert "optimizer" not in meta and "rng" not in meta
    # stage 2 scales were initialised from data (the buffer travels with the checkpoint)
    s2 = model_tensors(out / "stage2" / "best.pt")
    flags = [k for k in s2 if k.endswith("initialized")]
    assert flags and all(bool(s2[k]) for k in flags)


# ----------------------------------------------------------------------------- best on validation
def test_best_is_chosen_on_validation_never_test(tmp_path, monkeypatch):
    """Scripted accuracies: val peaks at epoch 2; the test set is scored once, for best.pt, at the end."""
    real_context = entry.build_context
    seen = {}

    def spying_context(*a, **k):
        seen["ctx"] = real_context(*a, **k)
        return seen["ctx"]

    val_script = iter([20.0, 60.0, 40.0])
    calls = []

    def fake_evaluate(model, dataset, *a, **k):
        bundle = seen["ctx"].bundle
        kind = "val" if dataset is bundle.val else "test" if dataset is bundle.test else "other"
        calls.append((kind, {k: v.clone() for k, v in distributed.unwrap(model).state_dict().items()}))
        return next(val_script) if kind == "val" else 12.5

    monkeypatch.setattr(entry, "build_context", spying_context)
    monkeypatch.setattr(stages, "evaluate", fake_evaluate)
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "3") == 0
    assert [kind for kind, _ in calls] == ["val", "val", "val", "test"]
    assert_same_tensors(calls[3][1], calls[1][1])  # test top-1 is that of the epoch-2 weights
    summary = json.loads((tmp_path / "teacher" / "summary.json").read_text())
    assert (summary["best_epoch"], summary["best_val_acc"], summary["test_acc"]) == (2, 60.0, 12.5)
    assert load_checkpoint(tmp_path / "teacher" / "best.pt")["epoch"] == 2
    assert load_checkpoint(tmp_path / "teacher" / "last.pt")["epoch"] == 3
    assert [r["val_acc"] for r in read_jsonl(tmp_path / "teacher" / "metrics.jsonl")] == [20.0, 60.0, 40.0]


# ----------------------------------------------------------------------------- resume
def test_resume_reaches_the_uninterrupted_result(chain, tmp_path, monkeypatch, capsys):
    """--stage all interrupted during stage 1's 2nd epoch, then --resume: every stage equals the straight run."""
    ref, _ = chain
    real = stages.train_one_epoch
    calls = {"n": 0}

    def interrupting(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:  # teacher 1, teacher 2, stage1 1, stage1 2 <- interrupted
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(stages, "train_one_epoch", interrupting)
    assert run_main("--out", str(tmp_path), "--epochs", "2") == 130
    assert "--resume" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "stage1" / "last.pt")["epoch"] == 1
    assert not (tmp_path / "stage1" / "summary.json").exists() and not (tmp_path / "stage2").exists()
    teacher_mtime = (tmp_path / "teacher" / "last.pt").stat().st_mtime_ns

    monkeypatch.setattr(stages, "train_one_epoch", real)
    assert run_main("--out", str(tmp_path), "--epochs", "2", "--resume") == 0
    assert "[teacher] already finished" in capsys.readouterr().out
    assert (tmp_path / "teacher" / "last.pt").stat().st_mtime_ns == teacher_mtime
    for stage in ("teacher", "stage1", "stage2"):
        assert stage_files(tmp_path / stage) == STAGE_FILES
        for name in ("last.pt", "best.pt"):
            assert_same_tensors(model_tensors(tmp_path / stage / name), model_tensors(ref / stage / name))
        mine, theirs = read_jsonl(tmp_path / stage / "metrics.jsonl"), read_jsonl(ref / stage / "metrics.jsonl")
        drop_time = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs]  # noqa: E731
        assert drop_time(mine) == drop_time(theirs)
    opt_a = load_checkpoint(tmp_path / "stage1" / "last.pt")["optimizer"]["state"]
    opt_b = load_checkpoint(ref / "stage1" / "last.pt")["optimizer"]["state"]
    for key in opt_a:
        assert torch.equal(opt_a[key]["exp_avg_sq"], opt_b[key]["exp_avg_sq"])


def test_single_student_stage_with_explicit_teacher(chain, tmp_path):
    teacher = chain[0] / "teacher" / "best.pt"
    assert run_main("--stage", "stage1", "--teacher", str(teacher), "--epochs", "1", "--distill", "soft",
                    "--tau", "2", "--out", str(tmp_path)) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage1"]
    summary = json.loads((tmp_path / "stage1" / "summary.json").read_text())
    assert summary["teacher"] == str(teacher) and summary["args"]["distill"] == "soft"


# ----------------------------------------------------------------------------- torchrun
def _script_env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def _record_weights_on_evaluate(folder: str) -> None:
    """(torchrun workers) before each evaluation, append a checksum of the weights to <folder>/rank<R>.txt."""
    real = stages.evaluate

    def evaluate(model, dataset, *a, **k):
        state = distributed.unwrap(model).state_dict()
        total = sum(float(v.double().sum()) for v in state.values() if v.is_floating_point())
        with open(os.path.join(folder, f"rank{os.environ['RANK']}.txt"), "a") as f:
            f.write(f"{total!r}\n")
        return real(model, dataset, *a, **k)

    stages.evaluate = evaluate


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    """2 gloo processes finish, write the same files as one, and hold identical weights at every evaluation."""
    out, sums = tmp_path / "out", tmp_path / "sums"
    sums.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           __file__, *TINY_ARGS, "--device", "cpu", "--epochs", "1", "--out", str(out)]
    res = subprocess.run(cmd, cwd=ROOT, env=dict(_script_env(), TRAIN_TEST_SUMS=str(sums)), capture_output=True,
                         text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("stage    best val top-1") == 1  # only rank 0 prints
    for stage in ("teacher", "stage1", "stage2"):
        assert stage_files(out / stage) == STAGE_FILES
        assert [r["epoch"] for r in read_jsonl(out / stage / "metrics.jsonl")] == [1]
        assert json.loads((out / stage / "summary.json").read_text())["world_size"] == 2
        load_model(out / stage / "best.pt")
    # val + test per stage; stage 2's data-initialised scales and stage 1's BatchNorm agree too
    rank0, rank1 = ((sums / f"rank{r}.txt").read_text().split() for r in (0, 1))
    assert len(rank0) == 6 and rank0 == rank1


# ----------------------------------------------------------------------------- losses
Z_CLS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
Z_DIST = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 2.0]])
Z_T = torch.tensor([[0.0, 0.0, 3.0], [0.0, 2.0, 1.0]])
Y = torch.tensor([0, 2])


def _ce(row: list[float], target: int) -> float:
    return math.log(sum(math.exp(v) for v in row)) - row[target]


def _softmax(row: list[float]) -> list[float]:
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def test_hard_distillation_by_hand():
    # teacher arg-max: row 0 -> 2, row 1 -> 1
    base = (_ce([2, 0, -1], 0) + _ce([0.5, 1.5, 0], 2)) / 2
    dist = (_ce([0, 1, 0], 2) + _ce([1, 0, 2], 1)) / 2
    for a in (0.5, 0.25):
        got = distillation_loss((Z_CLS, Z_DIST), Y, Z_T, "hard", alpha=a)
        assert got.item() == pytest.approx((1 - a) * base + a * dist, rel=1e-6)


def test_soft_distillation_by_hand():
    tau, a = 2.0, 0.5
    kl = 0.0
    for zs, zt in zip(Z_DIST.tolist(), Z_T.tolist()):
        ps, pt = _softmax([v / tau for v in zs]), _softmax([v / tau for v in zt])
        kl += sum(t * math.log(t / s) for s, t in zip(ps, pt))
    base = (_ce([2, 0, -1], 0) + _ce([0.5, 1.5, 0], 2)) / 2
    expected = (1 - a) * base + a * (kl / 2) * tau * tau
    got = distillation_loss((Z_CLS, Z_DIST), Y, Z_T, "soft", alpha=a, tau=tau)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_no_distillation_averages_both_heads():
    expected = (_ce([2, 0, -1], 0) + _ce([0.5, 1.5, 0], 2) + _ce([0, 1, 0], 0) + _ce([1, 0, 2], 2)) / 4
    assert distillation_loss((Z_CLS, Z_DIST), Y, None, "none").item() == pytest.approx(expected, rel=1e-6)


def test_teacher_stays_frozen_in_eval_mode():
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.5))
    loss_fn = TrainLoss("hard", teacher, 0.5, 1.0)
    loss_fn.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(2, 1, 2, 2)
    student = nn.Linear(4, 3)
    z = student(x.flatten(1))
    loss = loss_fn(x, (z, z), Y)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters()) and student.weight.grad is not None
    with pytest.raises(ValueError, match="needs a teacher"):
        TrainLoss("soft", None)


# ----------------------------------------------------------------------------- optimiser
class _Named(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3, 4))
        self.pos_embed = nn.Parameter(torch.ones(1, 5, 4))
        self.cls_token = nn.Parameter(torch.ones(1, 1, 4))
        self.dist_token = nn.Parameter(torch.ones(1, 1, 4))
        self.alpha = nn.Parameter(torch.ones(2, 2))
        self.scale = nn.Parameter(torch.ones(()))
        self.gain = nn.Parameter(torch.ones(4))
        self.sub = nn.Linear(4, 4)
        self.sub.bias = nn.Parameter(torch.ones(2, 2))  # a 2-d ".bias" (like GSB's attention bias)
        self.frozen = nn.Parameter(torch.ones(4, 4), requires_grad=False)


def test_weight_decay_groups():
    m = _Named()
    names = {id(p): n for n, p in m.named_parameters()}
    decay, no_decay = schedule.param_groups(m, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert sorted(names[id(p)] for p in decay["params"]) == ["sub.weight", "weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == [
        "alpha", "cls_token", "dist_token", "gain", "pos_embed", "scale", "sub.bias"]
    opt = schedule.build_optimizer(m, 1e-3, 0.05)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["eps"] == 1e-8
    assert opt.defaults["betas"] == (0.9, 0.999)


def test_weight_decay_groups_of_a_stage2_model():
    from reference.models import build_model

    model = build_model(TINY, "stage2", 10, 1, 8)
    decay, no_decay = schedule.param_groups(model, 0.05)
    dec = {n for n, p in model.named_parameters() if any(p is q for q in decay["params"])}
    assert "blocks.0.mlp.fc1.weight" in dec and "blocks.0.attn.qkv.weight" in dec and "head.weight" in dec
    skipped = {n for n, p in model.named_parameters() if any(p is q for q in no_decay["params"])}
    assert {"cls_token", "dist_token", "pos_embed", "blocks.0.attn.att_bias.bias",
            "blocks.0.attn.a_gsb.alpha", "blocks.0.norm1.weight"} <= skipped
    assert not dec & skipped and len(dec) + len(skipped) == len(list(model.parameters()))


def test_cosine_schedule_values():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.0)
    s = schedule.CosineSchedule(opt, lr=1.0, min_lr=0.1, epochs=5, warmup_epochs=1)
    expected = [0.5, 1.0] + [0.1 + 0.45 * (1 + math.cos(math.pi * t / 4)) for t in (1, 2, 3)]
    assert [s.step(e) for e in range(5)] == pytest.approx(expected, abs=1e-12)
    assert opt.param_groups[0]["lr"] == pytest.approx(expected[-1])
    assert s.state_dict()["last_epoch"] == 4


# ----------------------------------------------------------------------------- bad input
def _garbage(path: Path) -> Path:
    path.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    return path


@pytest.mark.parametrize("argv, needle", [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--data", "nope"], "unknown dataset 'nope'"),
    (["--data", "cifar100", "--data-path", "/nonexistent/cifar"], "/nonexistent/cifar"),
    (["--data", "cifar100"], "cifar100"),
    (["--stage", "stage1", "--teacher", "/nonexistent/t.pt"], "/nonexistent/t.pt: checkpoint not found"),
    (["--stage", "stage1", "--teacher", "GARBAGE"], "not a readable checkpoint"),
    (["--stage", "stage2", "--teacher", "TEACHER", "--init", "GARBAGE"], "not a readable checkpoint"),
    (["--stage", "stage2", "--teacher", "TEACHER", "--init", "TEACHER"], "is a teacher checkpoint, expected a stage1"),
    (["--stage", "stage1"], "pass --teacher CKPT"),
    (["--resume"], "nothing to resume"),
])
def test_bad_input_exits_2_with_one_line(argv, needle, tmp_path, chain, capsys):
    garbage = _garbage(tmp_path / "garbage.pt")
    teacher = chain[0] / "teacher" / "best.pt"
    argv = [{"GARBAGE": str(garbage), "TEACHER": str(teacher)}.get(a, a) for a in argv]
    out = tmp_path / "out"
    assert run_main(*argv, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m reference.train: error: ") and needle in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.pt"]  # nothing written


def test_foreign_checkpoint_files_are_one_short_line(tmp_path, capsys):
    """Not torch's paragraph advising weights_only=False (which would run the file's code), nor its warnings."""
    import datetime
    import pickle
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"x": 1j}, protocol=4))  # a plain pickle: torch warns about the protocol
    code = tmp_path / "code.pt"
    torch.save({"x": datetime.date(2020, 1, 1)}, code)  # torch.save's format, but a global not allowed
    fifo = tmp_path / "fifo.pth"
    os.mkfifo(fifo)
    for argv, needle in [
        (["--stage", "stage1", "--teacher", str(raw)], "raw.pt: not a readable checkpoint (not the zip format"),
        (["--stage", "stage1", "--teacher", str(code)], "code.pt: not a readable checkpoint (holds pickled objects "
                                                        "other than tensors and plain containers"),
        (["--stage", "teacher", "--teacher-checkpoint", str(raw)], "raw.pt: not a readable checkpoint (not the zip"),
        (["--stage", "teacher", "--teacher-checkpoint", str(fifo)], "fifo.pth: teacher checkpoint is not a regular "
                                                                    "file"),
    ]:
        assert run_main(*argv, "--out", str(tmp_path / "o"), "--epochs", "1") == 2
        err = one_error_line(capsys, needle)
        assert "weights_only" not in err and "Warning" not in err, err
    assert not (tmp_path / "o").exists()


def test_corrupt_resume_checkpoint_is_reported(tmp_path, capsys):
    (tmp_path / "teacher").mkdir()
    _garbage(tmp_path / "teacher" / "last.pt")
    assert run_main("--stage", "teacher", "--resume", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'teacher' / 'last.pt'}: not a readable checkpoint" in err and err.count("\n") == 1
    assert stage_files(tmp_path / "teacher") == {"last.pt"}


def test_argument_errors_exit_2(capsys):
    for argv in (["--epochs", "0"], ["--distill", "medium"], ["--stage", "all", "--teacher", "x.pt"],
                 ["--stage", "teacher", "--init", "x.pt"], ["--distill-alpha", "1.5"]):
        with pytest.raises(SystemExit) as e:
            run_main(*argv)
        assert e.value.code == 2
        assert "error:" in capsys.readouterr().err


def test_bad_input_from_the_command_line_has_no_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "reference.train", "--preset", "nope", "--out", str(tmp_path / "o")],
                         cwd=ROOT, env=_script_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.startswith("python -m reference.train: error: --preset: unknown preset 'nope'; expected")
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()


def test_help_explains_the_options():
    text = train_cli.build_parser().format_help()
    for flag in ("--stage", "--preset", "--data-path", "--teacher", "--init", "--resume", "--limit-train",
                 "--distill", "--distill-alpha", "--tau", "--groups", "--mask-stat", "--released-quirks",
                 "--device", "--workers", "--epochs-stage2", "examples:", "torchrun"):
        assert flag in text


# ----------------------------------------------------------------------------- checkpoints
def test_failed_save_leaves_the_previous_last_pt(tmp_path, monkeypatch, capsys):
    """torch.save dies half-way during epoch 2's save: one line, epoch 1's last.pt and best.pt stay intact."""
    real_save = torch.save
    calls = {"n": 0}

    def dying_save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] <= 2:  # epoch 1: best.pt, last.pt
            return real_save(obj, f, *a, **k)
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dying_save)
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "2") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: disk full" in err and "--resume" in err, err
    monkeypatch.setattr(torch, "save", real_save)
    assert stage_files(tmp_path / "teacher") == {"last.pt", "best.pt", "metrics.jsonl", "curves.png"}
    last = load_checkpoint(tmp_path / "teacher" / "last.pt", required=CHECKPOINT_KEYS)
    assert last["epoch"] == 1
    model, meta = load_model(tmp_path / "teacher" / "last.pt")
    assert meta["epoch"] == 1


def test_save_checkpoint_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint({"a": torch.arange(3)}, path)

    def broken(obj, f, *a, **k):
        f.write(b"\x00" * 10)
        raise RuntimeError("boom")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint({"a": torch.arange(5)}, path)
    assert os.listdir(tmp_path) == ["c.pt"]
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(3))


def test_load_model_errors_name_the_file(tmp_path, chain):
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'none.pt'}: checkpoint not found"):
        load_model(tmp_path / "none.pt")
    good = chain[0] / "stage1" / "best.pt"
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="trunc.pt: not a readable checkpoint"):
        load_model(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt: not a reference checkpoint .missing preset"):
        load_model(foreign)
    wrong = tmp_path / "wrong.pt"
    raw = load_checkpoint(good)
    raw["kind"] = "stage2"
    torch.save(raw, wrong)
    with pytest.raises(CheckpointError, match="wrong.pt: weights do not fit the model"):
        load_model(wrong)


def test_rng_states_round_trip():
    import random

    import numpy as np

    state = ckpt_mod.capture_rng()
    a = (random.random(), float(np.random.rand()), torch.rand(3))
    ckpt_mod.restore_rng(state)
    b = (random.random(), float(np.random.rand()), torch.rand(3))
    assert a[:2] == b[:2] and torch.equal(a[2], b[2])


# ----------------------------------------------------------------------------- hostile runs (issue: nothing silently wrong)
def _interrupt_at(monkeypatch, n: int, exc=KeyboardInterrupt) -> None:
    """train_one_epoch raises ``exc`` on its n-th call (1-based); earlier calls train normally."""
    real = stages.train_one_epoch
    calls = {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            raise exc("planted")
        return real(*a, **k)
    monkeypatch.setattr(stages, "train_one_epoch", dying)


def one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m reference.train: error: "), err
    for n in needles:
        assert n in err, (n, err)
    return err


@pytest.mark.parametrize("change, needle", [
    (["--seed", "1"], "seed 0 (now 1)"),
    (["--epochs", "3"], "epochs 2 (now 3)"),
    (["--lr", "0.01"], "lr 0.002 (now 0.01)"),
    (["--limit-train", "64"], "limit_train 128 (now 64)"),
])
def test_resume_refuses_other_arguments(tmp_path, monkeypatch, capsys, change, needle):
    _interrupt_at(monkeypatch, 2)
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "2") == 130
    capsys.readouterr()
    before = (tmp_path / "teacher" / "last.pt").read_bytes()
    argv = ["--stage", "teacher", "--out", str(tmp_path), "--epochs", "2", "--resume"]
    i = argv.index(change[0]) if change[0] in argv else None
    argv = argv[:i] + change + argv[i + 2:] if i is not None else argv + change
    # TINY_ARGS come first, so a later --limit-train overrides theirs
    assert run_main(*argv) == 2
    one_error_line(capsys, "--resume:", "last.pt", needle, "leave out --resume")
    assert (tmp_path / "teacher" / "last.pt").read_bytes() == before  # the old run is still resumable


def test_resume_refuses_a_student_of_another_method(tmp_path, monkeypatch, capsys, chain):
    teacher = str(chain[0] / "teacher" / "best.pt")
    _interrupt_at(monkeypatch, 2)
    assert run_main("--stage", "stage1", "--teacher", teacher, "--out", str(tmp_path), "--epochs", "2") == 130
    capsys.readouterr()
    assert run_main("--stage", "stage1", "--teacher", teacher, "--out", str(tmp_path), "--epochs", "2",
                    "--resume", "--method", "bit") == 2
    one_error_line(capsys, "method 'gsb' (now 'bit')")


def test_resume_refuses_a_changed_teacher(tmp_path, monkeypatch, capsys, chain):
    """stage1 interrupted, then its teacher retrained: continuing would mix two teachers' distillation."""
    teacher = tmp_path / "teacher.pt"
    raw = load_checkpoint(chain[0] / "teacher" / "best.pt")
    torch.save(raw, teacher)
    _interrupt_at(monkeypatch, 2)
    argv = ["--stage", "stage1", "--teacher", str(teacher), "--out", str(tmp_path / "o"), "--epochs", "2"]
    assert run_main(*argv) == 130
    capsys.readouterr()
    raw["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in raw["model"].items()}
    torch.save(raw, teacher)
    monkeypatch.undo()
    assert run_main(*argv, "--resume") == 2
    one_error_line(capsys, "the teacher checkpoint changed since")


def test_fresh_start_removes_the_old_runs_last_pt(tmp_path, monkeypatch, capsys):
    """A fresh run killed before its first epoch must not leave the old run's last.pt to --resume."""
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "1", "--seed", "5") == 0
    _interrupt_at(monkeypatch, 1)
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "1") == 130
    capsys.readouterr()
    assert list((tmp_path / "teacher").iterdir()) == []  # every file of the seed-5 run is gone
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "1", "--resume") == 2
    one_error_line(capsys, "nothing to resume")


def test_fresh_stage_all_clears_the_later_stages(tmp_path, monkeypatch, capsys, chain):
    """Old stage1/stage2 results were trained from the old teacher: a fresh --stage all drops them."""
    import shutil
    for stage in ("stage1", "stage2"):
        shutil.copytree(chain[0] / stage, tmp_path / stage)
    (tmp_path / "stage1" / "notes.txt").write_text("mine")  # not the trainer's: kept
    _interrupt_at(monkeypatch, 1)
    assert run_main("--out", str(tmp_path), "--epochs", "2", "--seed", "3") == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage1", "teacher"]
    assert [p.name for p in (tmp_path / "stage1").iterdir()] == ["notes.txt"]


def test_stale_temporaries_are_removed(tmp_path, monkeypatch, capsys):
    _interrupt_at(monkeypatch, 2)
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "2") == 130
    stale = [tmp_path / "teacher" / n for n in (".last.pt.k9x2_a.tmp", ".best.pt.abc.tmp", ".summary.json.z.tmp")]
    for p in stale:
        p.write_bytes(b"half")  # what kill -9 inside atomic_write leaves
    (tmp_path / "teacher" / ".mine.tmp").write_bytes(b"x")  # not a trainer temporary: kept
    monkeypatch.undo()
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "2", "--resume") == 0
    assert not any(p.exists() for p in stale)
    assert stage_files(tmp_path / "teacher") == STAGE_FILES | {".mine.tmp"}


@pytest.mark.parametrize("damage, needle", [
    ("delete", "best.pt: checkpoint not found; the run's best checkpoint is needed"),
    ("other run", "of another run, but last.pt records epoch 1 as this run's best"),
])
def test_resume_checks_the_runs_best_checkpoint_first(tmp_path, monkeypatch, capsys, damage, needle):
    """A missing or replaced best.pt is reported before training, not when the test evaluation loads it."""
    _interrupt_at(monkeypatch, 2)
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "2") == 130
    best = tmp_path / "teacher" / "best.pt"
    if damage == "delete":
        best.unlink()
    else:
        run_main("--stage", "teacher", "--out", str(tmp_path / "other"), "--epochs", "2", "--seed", "5")
        best.write_bytes((tmp_path / "other" / "teacher" / "best.pt").read_bytes())
    capsys.readouterr()
    monkeypatch.undo()
    mtime = (tmp_path / "teacher" / "last.pt").stat().st_mtime_ns
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "2", "--resume") == 2
    one_error_line(capsys, "--resume: ", needle, "start afresh")
    assert (tmp_path / "teacher" / "last.pt").stat().st_mtime_ns == mtime


def test_resume_accepts_a_best_checkpoint_one_epoch_ahead(tmp_path, monkeypatch, capsys):
    """kill -9 between an epoch's best.pt and last.pt writes: best.pt is one epoch ahead; --resume redoes it."""
    real_save, real_loader = stages.save_checkpoint, stages.train_loader
    epoch = {"now": 0}

    def loader(dataset, batch, e, *a, **k):
        epoch["now"] = e
        return real_loader(dataset, batch, e, *a, **k)

    def dying_after_best(state, path):
        real_save(state, path)
        if Path(path).name == "best.pt" and state["epoch"] == 2:
            raise KeyboardInterrupt  # last.pt of epoch 2 never written
    monkeypatch.setattr(stages, "train_loader", loader)
    monkeypatch.setattr(stages, "evaluate", lambda *a, **k: 10.0 * (epoch["now"] + 1))  # every epoch the best
    monkeypatch.setattr(stages, "save_checkpoint", dying_after_best)
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "2") == 130
    assert load_checkpoint(tmp_path / "teacher" / "last.pt")["epoch"] == 1
    assert load_checkpoint(tmp_path / "teacher" / "best.pt")["epoch"] == 2
    monkeypatch.setattr(stages, "save_checkpoint", real_save)
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "2", "--resume") == 0
    assert json.loads((tmp_path / "teacher" / "summary.json").read_text())["best_epoch"] == 2


def test_resume_after_a_half_written_metrics_line(tmp_path, monkeypatch, capsys):
    _interrupt_at(monkeypatch, 2)
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "2") == 130
    with open(tmp_path / "teacher" / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "lr": 0.00')  # killed inside append_jsonl
    monkeypatch.undo()
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "2", "--resume") == 0
    assert [r["epoch"] for r in read_jsonl(tmp_path / "teacher" / "metrics.jsonl")] == [1, 2]


def test_resume_with_a_corrupt_metrics_line_is_one_line(tmp_path, monkeypatch, capsys):
    _interrupt_at(monkeypatch, 2)
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "2") == 130
    metrics = tmp_path / "teacher" / "metrics.jsonl"
    metrics.write_text("garbage\n" + metrics.read_text())
    capsys.readouterr()
    monkeypatch.undo()
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "2", "--resume") == 2
    one_error_line(capsys, "metrics.jsonl: line 1 is not a JSON record")


def test_second_training_into_a_locked_out_is_refused(tmp_path, capsys):
    from gsbsim.outputs import folder_lock
    with folder_lock(tmp_path / "o"):  # as a running training holds it
        assert run_main("--stage", "teacher", "--out", str(tmp_path / "o"), "--epochs", "1") == 2
        one_error_line(capsys, str(tmp_path / "o"), "in use by another running process")
        assert list((tmp_path / "o").iterdir()) == []


def test_two_concurrent_trainings_one_is_refused(tmp_path):
    """Two processes into the same --out: exactly one trains, the other exits 2 at once with one line."""
    cmd = [sys.executable, str(Path(__file__)), *TINY_ARGS, "--stage", "teacher", "--epochs", "3",
           "--out", str(tmp_path)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=_script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = sorted((p.wait(timeout=300), p.stderr.read()) for p in procs)
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert [rc for rc, _ in results] == [0, 2], results
    assert "in use by another running process" in results[1][1] and results[1][1].count("\n") == 1
    assert [r["epoch"] for r in read_jsonl(tmp_path / "teacher" / "metrics.jsonl")] == [1, 2, 3]


@pytest.mark.parametrize("argv, needle", [
    (["--lr", "inf"], "--lr"), (["--lr", "nan"], "--lr"), (["--weight-decay", "nan"], "--weight-decay"),
    (["--seed", str(2 ** 70)], "--seed"), (["--seed", "-1"], "--seed"), (["--tau", "inf"], "--tau"),
    (["--epochs", "x"], "--epochs"), (["--bogus"], "unrecognized arguments"),
    (["--workers", "100000"], "--workers: must be >= 0 and <= 256"),
])
def test_bad_numbers_are_one_line_before_any_work(tmp_path, capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        run_main("--out", str(tmp_path / "o"), *argv)
    assert e.value.code == 2
    one_error_line(capsys, needle)  # one line: no usage block
    assert list(tmp_path.iterdir()) == []


def test_out_naming_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert run_main("--stage", "teacher", "--out", str(tmp_path / "f"), "--epochs", "1") == 2
    one_error_line(capsys, "--out", "is not a folder")


def test_sigterm_is_one_line_exit_143_and_resumable(tmp_path, monkeypatch, capsys):
    from gsbsim.cli.signals import Terminated
    _interrupt_at(monkeypatch, 2, Terminated)
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "2") == 143
    assert capsys.readouterr().err == "python -m reference.train: terminated; continue with --resume\n"
    assert load_checkpoint(tmp_path / "teacher" / "last.pt")["epoch"] == 1


def test_training_goes_on_when_stdout_is_closed(tmp_path):
    """`train | head -1`: the reader leaves, the training finishes its epochs and writes every file."""
    r, w = os.pipe()
    os.close(r)
    try:
        res = subprocess.run([sys.executable, str(Path(__file__)), *TINY_ARGS, "--stage", "teacher", "--epochs", "2",
                              "--out", str(tmp_path)], cwd=ROOT, env=_script_env(), stdout=w, stderr=subprocess.PIPE,
                             text=True, timeout=300)
    finally:
        os.close(w)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert stage_files(tmp_path / "teacher") == STAGE_FILES


@pytest.mark.parametrize("exc", [OSError, "DataError"])
def test_an_image_found_unreadable_during_training_is_one_line(tmp_path, monkeypatch, capsys, exc):
    """Lazily decoded datasets meet a corrupt image mid-run: one line naming it, last.pt kept for --resume."""
    from reference.data.bundle import DataError
    exc = DataError if exc == "DataError" else exc
    real = stages.train_one_epoch
    calls = {"n": 0}

    def corrupt(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise exc("cannot identify image file '/data/flowers/jpg/image_00042.jpg'")
        return real(*a, **k)
    monkeypatch.setattr(stages, "train_one_epoch", corrupt)
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "2") == 2
    one_error_line(capsys, "image_00042.jpg", "continue with --resume")
    assert load_checkpoint(tmp_path / "teacher" / "last.pt")["epoch"] == 1


def test_diverged_training_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    _interrupt_at(monkeypatch, 2, FloatingPointError)
    assert run_main("--stage", "teacher", "--out", str(tmp_path), "--epochs", "2") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "planted" in err and "Traceback" not in err


if __name__ == "__main__":  # the torchrun / subprocess tests run this file: main() with the tiny preset
    PRESETS["tiny"] = TINY
    if os.environ.get("TRAIN_TEST_SUMS"):
        _record_weights_on_evaluate(os.environ["TRAIN_TEST_SUMS"])
    sys.exit(entry.main(sys.argv[1:]))
