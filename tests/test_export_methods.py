"""Export of reactnet and didb stage-2 students (reference/export.py + export_methods.py, spec §13):
the integer model follows the float model bit by bit and in its top-1 answer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gsbsim.engine import golden
from gsbsim.format.conventions import pixels_to_int8
from gsbsim.format.model_file import load_model, save_model
from reference import export as ex
from reference.agreement import float_predictions, layer_agreement
from reference.export_methods import fc1_z_thresholds
from tests.support.students import digits_images, student

torch.set_num_threads(1)


@pytest.mark.parametrize("method", ["reactnet", "didb"])
@pytest.mark.parametrize("trained_like", [False, True])
def test_exported_model_follows_the_float_model(tmp_path, method, trained_like):
    model, calib = student(method, trained_like=trained_like)
    header, arrays = ex.export(model, calib, "digits", "test")
    assert header["method"] == method and header["groups"] == 1 and header["ratios"] == []
    save_model(tmp_path / "m.npz", header, arrays)
    im = load_model(tmp_path / "m.npz")
    imgs = digits_images(24)
    agree = layer_agreement(model, im, imgs)
    names = {"q.low", "q.high", "k.low", "k.high"} if method == "didb" else {"q.bits", "k.bits"}
    names |= {"ln1.bits", "v.planes", "a.planes", "proj.bits", "ln2.bits", "fc1.bits"}
    assert set(agree) == {f"blocks.{i}.{n}" for i in range(4) for n in names}
    assert min(agree.values()) >= 0.98, agree
    assert min(v for k, v in agree.items() if k.startswith("blocks.0.")) >= 0.995, agree
    logits, tr = golden.forward(im, pixels_to_int8(imgs), trace=True)
    if trained_like:   # the method's parameters really act: the bits move, the units see both signs
        assert 0.1 < tr["blocks.0.a.planes"].mean() < 0.9
        assert (tr["blocks.1.fc1.z"] < 0).any() and (tr["blocks.1.fc1.z"] > 0).any()
    f_pred = float_predictions(model, imgs)
    assert np.mean(logits.argmax(1) == f_pred) >= 0.9
    with torch.no_grad():
        ref = model(torch.from_numpy(imgs).float()).numpy()
    assert np.corrcoef((logits / 2.0 ** 16).ravel(), ref.ravel())[0, 1] > 0.98


def test_export_refuses_a_slope_past_the_format_range():
    """|slope| <= 2^30 at the exporter's 2^-24 grid allows |beta| <= 64 (spec §13.1); 64 itself exports."""
    model, calib = student("reactnet")
    with torch.no_grad():
        model.blocks[1].mlp.fc1_act.beta[3] = -64.0
    header, arrays = ex.export(model, calib, "digits", "test")
    assert int(arrays["blocks.1.fc1.slope"][3]) == -(2 ** 30)
    with torch.no_grad():
        model.blocks[1].mlp.fc1_act.beta[3] = -64.5
    with pytest.raises(ex.ExportError, match=r"^a negative slope 64\.5 exceeds the format's \|slope\| <= 2\^30 "
                                             r"at 2\^-24 \(\|beta\| <= 64\)$"):
        ex.export(model, calib, "digits", "test")


def test_reactnet_and_didb_arrays_follow_the_float_parameters():
    model, calib = student("didb")
    header, arrays = ex.export(model, calib, "digits", "test")
    f = header["frac_bits"]
    at, act = model.blocks[1].attn, model.blocks[1].mlp.fc2_act
    np.testing.assert_array_equal(arrays["blocks.1.fc2.slope"],
                                  np.floor(act.beta.detach().double().numpy() * 2 ** 24 + 0.5))
    assert header["shifts"]["slope"] == 24                  # §13.1: the exporter's slope grid
    np.testing.assert_array_equal(arrays["blocks.1.fc2.tok_out"],
                                  np.floor(act.zeta_token.detach().double().numpy() * 2 ** f + 0.5))
    np.testing.assert_array_equal(arrays["blocks.1.fc2.tok_in"],
                                  np.floor(-act.gamma_token.detach().double().numpy() * 2 ** (f + 16) + 0.5))
    move = at.k_move_high.bias.detach().double().numpy().reshape(-1)
    np.testing.assert_array_equal(arrays["blocks.1.k.thr_high"], np.ceil(-4 * move * 2 ** f))
    alpha_v = float(at.v_gsb.scales()[0])
    assert arrays["blocks.1.ctx.vscale"] == np.floor(alpha_v * 2 ** 24 + 0.5)
    lam = at.local_gain.detach().double().numpy().reshape(-1)
    np.testing.assert_array_equal(arrays["blocks.1.ctx.local"], np.floor(lam * alpha_v * 2 ** 24 + 0.5))
    assert arrays["blocks.1.score.w"].shape == (2, 3) and np.all(arrays["blocks.1.score.w"] > 30)


@pytest.mark.parametrize("level", [-1.0, -0.169, -0.1, 0.0, 0.05, 0.3, 9.9, 10.0, 10.5])
def test_fc1_z_thresholds_match_the_float_function_at_every_point(level):
    """Brute force over z in [-2^12, 2^12] at F = 8 (16 units each side), beyond that the rays continue."""
    f = 8
    hi, lo = fc1_z_thresholds(np.array([level]), f)
    z = np.arange(-(2 ** 13), 2 ** 13)
    on = torch.nn.functional.gelu(torch.from_numpy(z / 2.0 ** f)).clamp(-10, 10).numpy() >= level
    rebuilt = (z >= hi[0]) | (z <= lo[0])
    assert np.array_equal(on[-(2 ** 13) + 2 ** 12:], rebuilt[-(2 ** 13) + 2 ** 12:]) or level == 0.0
    assert np.array_equal(on[2 ** 12:], rebuilt[2 ** 12:])
    if level <= -0.17:
        assert hi[0] == -(2 ** 30)                  # always
    if level > 10:
        assert (hi[0], lo[0]) == (2 ** 30, -(2 ** 30))   # never
    if -0.17 < level < 0:
        assert -(2 ** 30) < lo[0] < hi[0] < 0        # two-sided


def test_cli_exports_a_random_didb_model(tmp_path, capsys):
    out = tmp_path / "d.npz"
    assert ex.main(["--random", "--method", "didb", "--out", str(out)]) == 0
    assert '"method": "didb"' in capsys.readouterr().out
    m = load_model(out)
    assert m.method == "didb" and m.groups == 1 and "blocks.3.exp_hi" in m.arrays
    with pytest.raises(SystemExit):   # argparse: fp has no integer model
        ex.main(["--random", "--method", "fp", "--out", str(tmp_path / "x.npz")])
    assert not (tmp_path / "x.npz").exists()



def test_fc1_z_thresholds_check_each_crossing_against_the_float_function(monkeypatch):
    """The integer points next to each crossing are re-evaluated: a crossing one step off (as float
    rounding between the search and the check could make it) fails, naming the channel."""
    from reference import export_methods as em

    exact = em._first_true
    monkeypatch.setattr(em, "_first_true", lambda pred, lo, hi: exact(pred, lo, hi) + 1)
    with pytest.raises(ex.ExportError, match="fc1 channel 0: the GELU binarizer on z is not a two-sided threshold"):
        fc1_z_thresholds(np.array([0.1]), 12)
