"""Integer-aware evaluation and fine-tuning that train (tier `train`, tests/conftest.py).

* On a small student trained here for a few seconds and exported at a deliberately coarse F,
  the float model on the grid (reference/int_grid.py) produces fewer bits that differ from the
  integer model's, and no more differing predictions, than the plain float model.
* `python -m reference.train --int-aware-epochs N` end to end on test_train.py's tiny preset:
  the extra epochs run and validate on the grid, best.pt is chosen among them, the run identity
  holds the option, and a --resume with another value is refused once an epoch on the grid has
  run; before that it is allowed, and a finished float stage 2 continued on the grid is
  tensor for tensor the run with the option from the start. Its control (--int-aware-control)
  runs the same epochs off the grid and says so.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_int_aware import METHODS, _student
from test_train import TINY_ARGS, _interrupt_at, one_error_line, tiny_preset  # noqa: F401  (the fixture registers 'tiny')

from gsbsim.data.digits import digits_split
from gsbsim.engine import fast
from gsbsim.format.conventions import pixels_to_int8
from reference import export as ex
from reference.bit_taps import float_bits
from reference.checkpoint import load_checkpoint, load_model, save_checkpoint
from reference.int_grid import integer_grid
from reference.metrics import read_jsonl
from reference.train import entry


def _trained(method: str):
    """A small student trained for one epoch on digits (labels only): enough to leave the random regime."""
    model, _ = _student(method)
    x, y = digits_split("train")
    xs, ys = torch.from_numpy(x).float(), torch.from_numpy(y).long()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for idx in torch.randperm(len(xs), generator=torch.Generator().manual_seed(0)).split(32):
        out = model(xs[idx])
        loss = sum(torch.nn.functional.cross_entropy(o, ys[idx]) for o in out) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), xs[:64]


def _mismatches(model, int_model, images: np.ndarray, frac_bits: int | None) -> tuple[int, int]:
    """(bits that differ from the integer model's over all binarizers, predictions that differ)."""
    logits, trace = fast.forward(int_model, pixels_to_int8(images), trace=True)

    def run():
        bits = float_bits(model, images)[0]
        with torch.no_grad():
            return bits, model(torch.from_numpy(images).float()).argmax(-1).numpy()
    if frac_bits is None:
        bits, pred = run()
    else:
        with integer_grid(model, frac_bits):
            bits, pred = run()
    bad = sum(int(np.count_nonzero(b != trace[k].reshape(b.shape))) for k, b in bits.items())
    return bad, int(np.count_nonzero(pred != logits.argmax(-1)))


@pytest.mark.parametrize("method", METHODS)
def test_on_the_grid_the_float_model_follows_the_integer_model(method):
    model, calib = _trained(method)
    x, _ = digits_split("val")
    images = x[:128].astype(np.uint8)
    f = 7                                              # coarse: the plain float model drifts from it
    header, arrays = ex.export(model, calib, "int_aware_small", "test", frac_bits=f)
    int_model = ex._in_memory(header, arrays)
    float_bad, float_pred = _mismatches(model, int_model, images, None)
    grid_bad, grid_pred = _mismatches(model, int_model, images, f)
    assert float_bad > 0                               # the grid matters at this F ...
    assert grid_bad < float_bad / 4 and grid_pred <= float_pred, (grid_bad, float_bad, grid_pred, float_pred)


def _run(*argv: str) -> int:
    return entry.main([*TINY_ARGS, *argv])


@pytest.fixture(scope="module")
def int_aware_run(tmp_path_factory):
    """teacher -> stage1 -> stage2 of 1 float epoch + 2 on the grid (tiny preset)."""
    out = tmp_path_factory.mktemp("int_aware")
    assert _run("--out", str(out), "--epochs", "1", "--int-aware-epochs", "2") == 0
    return out


def test_int_aware_epochs_train_and_select_on_the_grid(int_aware_run):
    s2 = int_aware_run / "stage2"
    records = read_jsonl(s2 / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert "frac_bits" not in records[0] and all(isinstance(r["frac_bits"], int) for r in records[1:])
    best = load_checkpoint(s2 / "best.pt")
    assert best["run"]["int_aware_epochs"] == 2 and best["run"]["epochs"] == 1
    assert best["epoch"] in (2, 3)                      # chosen among the epochs validated on the grid
    summary = json.loads((s2 / "summary.json").read_text())
    assert summary["int_aware_epochs"] == 2 and summary["epochs"] == 3 and summary["grid_frac_bits"] >= 4
    # the validation figure of the best epoch is the model's top-1 on the grid it reports
    model, _ = load_model(s2 / "best.pt")
    f = records[best["epoch"] - 1]["frac_bits"]
    from reference.data import build_datasets
    val = build_datasets("digits", img_size=8, augment=False, seed=0).val
    xs = torch.stack([val[i][0] for i in range(len(val))]).float()
    ys = torch.tensor([int(val[i][1]) for i in range(len(val))])
    with torch.no_grad(), integer_grid(model, f):
        correct = int((model(xs).argmax(-1) == ys).sum())
    assert 100.0 * correct / len(ys) == pytest.approx(best["val_acc"], abs=1e-4)   # one image is 0.28 %


def _stage2_args(run, out) -> list[str]:
    return ["--stage", "stage2", "--out", str(out), "--epochs", "1",
            "--teacher", str(run / "teacher" / "best.pt"), "--init", str(run / "stage1" / "best.pt")]


def test_resume_with_another_int_aware_value_is_refused_once_on_the_grid(int_aware_run, tmp_path, monkeypatch, capsys):
    _interrupt_at(monkeypatch, 3)                       # after the float epoch and the first on the grid
    assert _run(*_stage2_args(int_aware_run, tmp_path), "--int-aware-epochs", "2") == 130
    capsys.readouterr()
    monkeypatch.undo()
    assert _run(*_stage2_args(int_aware_run, tmp_path), "--int-aware-epochs", "1", "--resume") == 2
    one_error_line(capsys, "--resume:", "int_aware_epochs 2 (now 1)")


def _weights(path):
    return load_checkpoint(path)["model"]


def test_a_finished_float_stage2_continued_on_the_grid_is_the_run_with_the_option(int_aware_run, tmp_path):
    """--resume --int-aware-epochs 2 of a finished float stage 2 (of a trainer from before the
    option: its run identity has no int_aware_epochs) reaches, tensor for tensor, what the
    run with the option from the start reached (the float epoch does not depend on the option:
    reading the calibration images draws nothing from the RNG)."""
    args = _stage2_args(int_aware_run, tmp_path)
    assert _run(*args) == 0
    for name in ("best.pt", "last.pt"):          # as a trainer from before the option wrote them
        ckpt = load_checkpoint(tmp_path / "stage2" / name)
        assert ckpt["run"].pop("int_aware_epochs") == 0
        save_checkpoint(ckpt, tmp_path / "stage2" / name)
    assert _run(*args, "--int-aware-epochs", "2", "--resume") == 0
    ours, theirs = tmp_path / "stage2", int_aware_run / "stage2"
    assert [r["train_loss"] for r in read_jsonl(ours / "metrics.jsonl")] == \
        [r["train_loss"] for r in read_jsonl(theirs / "metrics.jsonl")]
    for name in ("best.pt", "last.pt"):
        a, b = _weights(ours / name), _weights(theirs / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert load_checkpoint(ours / "best.pt")["run"] == load_checkpoint(theirs / "best.pt")["run"]
    assert _run(*args, "--int-aware-epochs", "2", "--resume") == 0   # the same value continues it
    assert [r["epoch"] for r in read_jsonl(tmp_path / "stage2" / "metrics.jsonl")] == [1, 2, 3]


def test_the_control_runs_the_same_epochs_off_the_grid(int_aware_run, tmp_path, monkeypatch, capsys):
    """--int-aware-control: a finished float stage 2 continued with the integer-aware epochs' schedule
    and selection, the grid never switched on; its log, metrics, summary and run identity say so,
    and a --resume that would put the finished control on the grid is refused."""
    from reference.train import stages
    args = _stage2_args(int_aware_run, tmp_path)
    assert _run(*args) == 0
    grids, real = [], stages.set_integer_grid
    monkeypatch.setattr(stages, "set_integer_grid", lambda model, grid: (grids.append(grid), real(model, grid)))
    capsys.readouterr()
    assert _run(*args, "--int-aware-epochs", "2", "--int-aware-control", "--resume") == 0
    monkeypatch.undo()
    assert grids and all(g is None for g in grids), grids
    out = capsys.readouterr().out
    assert "off the grid (--int-aware-control)" in out and "on the grid" not in out
    s2 = tmp_path / "stage2"
    records = read_jsonl(s2 / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3] and not any("frac_bits" in r for r in records)
    summary = json.loads((s2 / "summary.json").read_text())
    assert summary["int_aware_control"] is True and summary["grid_frac_bits"] is None and summary["epochs"] == 3
    best = load_checkpoint(s2 / "best.pt")
    assert best["run"]["int_aware_control"] is True and best["epoch"] in (2, 3)   # chosen among those epochs
    # the float epoch is the grid run's (the tiny model's losses do not tell the grid's epochs apart:
    # the calls above do)
    ours, grid_run = (read_jsonl(p / "stage2" / "metrics.jsonl") for p in (tmp_path, int_aware_run))
    assert ours[0]["train_loss"] == grid_run[0]["train_loss"]
    assert _run(*args, "--int-aware-epochs", "2", "--resume") == 2
    one_error_line(capsys, "--resume:", "int_aware_control True (now False)")


def test_int_aware_control_without_int_aware_epochs_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _run("--out", str(tmp_path), "--int-aware-control")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--int-aware-control needs --int-aware-epochs" in err, err


@pytest.mark.parametrize("argv", [["--method", "fp", "--int-aware-epochs", "1"],
                                  ["--stage", "stage1", "--int-aware-epochs", "2"],
                                  ["--int-aware-epochs", "-1"]])
def test_int_aware_epochs_where_they_mean_nothing_are_refused(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:               # argparse's one-line error, exit 2
        _run("--out", str(tmp_path), *argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: " in err and "--int-aware-epochs" in err, err
    assert not any(tmp_path.iterdir())
