"""Export of a stage-2 student to the integer model (reference/export.py, docs/integer_model.md)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gsbsim.engine import golden
from gsbsim.format.model_file import load_model, save_model
from reference import export as ex
from gsbsim.format.conventions import pixels_to_int8
from reference.agreement import layer_agreement
from reference.models import build_model
from tests.support.students import digits_images, student

torch.set_num_threads(1)


@pytest.mark.parametrize("groups,mask_stat", [(3, "row"), (1, "row"), (2, "image")])
def test_integer_model_reproduces_every_binarized_tensor(tmp_path, groups, mask_stat):
    model, calib = student("gsb", groups, mask_stat)
    header, arrays = ex.export(model, calib, "digits", "test")
    save_model(tmp_path / "m.npz", header, arrays)
    im = load_model(tmp_path / "m.npz")
    agree = layer_agreement(model, im, digits_images())
    assert len(agree) == 8 * 4
    # float32 round-off can flip a bit that sits on its threshold (block 0 sees identical
    # inputs, so only that); later blocks also inherit the flips of earlier ones
    assert min(v for k, v in agree.items() if k.startswith("blocks.0.")) >= 0.999, agree
    assert min(agree.values()) >= 0.97, agree
    assert agree["blocks.0.ln1.bits"] == 1.0


def test_integer_logits_follow_the_float_logits(tmp_path):
    model, calib = student()
    header, arrays = ex.export(model, calib, "digits", "test")
    im = load_model(save_and_return(tmp_path, header, arrays))
    imgs = digits_images(32)
    logits, _ = golden.forward(im, pixels_to_int8(imgs))
    with torch.no_grad():
        ref = model(torch.from_numpy(imgs).float()).numpy()
    scaled = logits / 2.0 ** header["shifts"]["logit"]
    # typically off by the fixed-point rounding; an image with a flipped bit upstream can differ more
    assert np.median(np.abs(scaled - ref)) < 0.01 * np.abs(ref).max()
    assert np.corrcoef(scaled.ravel(), ref.ravel())[0, 1] > 0.98


def save_and_return(tmp_path, header, arrays):
    path = tmp_path / "m.npz"
    save_model(path, header, arrays)
    return path


def test_fc1_threshold_is_two_sided_where_gelu_is_not_monotonic():
    """GELU dips to about -0.17 near -0.75: a level between that and 0 is crossed twice."""
    model, _ = student()
    mlp = model.blocks[0].mlp
    with torch.no_grad():
        mlp.fc2.act_q.alpha.fill_(0.2)   # threshold alpha/2 = 0.1 on GELU + shift
        mlp.fc2.move.bias.fill_(0.2)     # GELU >= -0.1: two-sided (the dip goes below -0.1)
        mlp.fc1.bias.zero_()
    dim = model.embed_dim
    beta = float(mlp.fc1.weight.detach().abs().mean())
    hi, lo = ex._fc1_thresholds(mlp.fc1, mlp.fc2, beta, dim)
    assert np.all(lo > -dim - 1) and np.all(hi < dim + 1) and np.all(lo < hi)
    # brute force on the accumulator grid with the float formula
    ab = float(mlp.fc1.act_q.scales()) * float(mlp.fc1.weight.detach().abs().mean())
    acc = torch.arange(-dim, dim + 1, dtype=torch.float64)
    on = torch.nn.functional.gelu(ab * acc).clamp(-10, 10) + 0.2 >= 0.1
    assert np.array_equal(on.numpy(), (acc.numpy() >= hi[0]) | (acc.numpy() <= lo[0]))


def test_ln_threshold_handles_negative_and_zero_gain():
    model, _ = student()
    norm = model.blocks[0].norm1
    with torch.no_grad():
        norm.weight[0] = -1.0
        norm.weight[1] = 0.0
        norm.bias[1] = 0.5
        norm.weight[2] = 0.0
        norm.bias[2] = -0.5
    shift = np.zeros(model.embed_dim)
    sgn, thr = ex._ln_sign_thresholds(norm, shift, model.embed_dim)
    assert (sgn[0], sgn[1], sgn[2]) == (-1, 0, 0)
    assert (thr[1], thr[2]) == (0, 1)  # constant 1 and constant 0


def test_export_refuses_stage1_and_batch_statistics():
    s1 = build_model("digits", "stage1", num_classes=10, in_chans=1)
    with pytest.raises(ex.ExportError, match="stage-2"):
        ex.export(s1, torch.zeros(1, 1, 8, 8), "digits", "x")
    sb = build_model("digits", "stage2", num_classes=10, in_chans=1, mask_stat="batch")
    with pytest.raises(ex.ExportError, match="batch"):
        ex.export(sb, torch.zeros(1, 1, 8, 8), "digits", "x")


def test_cli_random_export_and_errors(tmp_path, capsys):
    out = tmp_path / "r.npz"
    assert ex.main(["--random", "--preset", "digits", "--groups", "1", "--out", str(out)]) == 0
    m = load_model(out)
    assert m.groups == 1 and m.embed_dim == 96
    assert ex.main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.pt" in err[0]
    assert not (tmp_path / "x.npz").exists()
    assert ex.main(["--random", "--preset", "nope", "--out", str(tmp_path / "y.npz")]) == 2
    assert not (tmp_path / "y.npz").exists()


@pytest.mark.parametrize("kind", ["teacher", "stage1"])
def test_cli_export_of_a_teacher_or_stage1_checkpoint_is_one_line(tmp_path, capsys, kind):
    """A teacher used to reach the calibration and die there with an AttributeError traceback."""
    from reference.checkpoint import preset_to_dict, save_checkpoint
    from reference.presets import get_preset
    model = build_model("digits", kind, num_classes=10, in_chans=1)
    ckpt = tmp_path / f"{kind}.pt"
    save_checkpoint({"model": model.state_dict(), "preset": preset_to_dict(get_preset("digits")), "kind": kind,
                     "num_classes": 10, "in_chans": 1, "img_size": 8, "quant_options": {}}, ckpt)
    assert ex.main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert err == (f"python -m reference.export: error: --checkpoint {ckpt} (a {kind} checkpoint): only a stage-2 "
                   "(fully binary) student can be exported to the integer model\n"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt.name]
