"""gsbsim.costs for methods reactnet and didb (docs/integer_model.md §13.4): hand-computed totals."""
from __future__ import annotations

import numpy as np
import pytest

from gsbsim.hw import costs
from gsbsim.hw.costs import CostModelError, header_for_shape
from gsbsim.format.model_file import expected_arrays


def tiny(method: str) -> dict:
    """4 patches (2x2 grid), N = 6, E = 8, H = 2, d = 4, Hd = 16, one block, 3 classes, one group."""
    return header_for_shape(img_size=4, patch_size=2, in_chans=1, embed_dim=8, depth=1, num_heads=2,
                            mlp_hidden=16, num_classes=3, groups=1, method=method)


@pytest.mark.parametrize("method, bops", [("bit", 3648), ("reactnet", 3648), ("didb", 3648 + 288)])
def test_bops_flops_and_ops_by_hand(method, bops):
    # qkv 6*24*8 = 1152, qk 6*6*4*2 = 288 (didb: two bands, + 288), av 288, proj 6*8*8 = 384,
    # fc1 6*16*8 = 768, fc2 768; FLOPs: patch 4*8*4 = 128, heads 2*3*8 = 48
    r = costs.count(tiny(method))
    assert r.bops == bops and r.flops == 176 and r.ops == bops / 64 + 176
    qk = next(l for l in r.layers if l.op == "qk")
    assert (qk.repeats, qk.plane_pairs, qk.trace_output) == (
        (4, 2, "blocks.0.hfsc") if method == "didb" else (2, 1, "blocks.0.scores"))


def test_elementwise_counts_by_hand():
    base = costs.elementwise(tiny("bit"))
    react = costs.elementwise(tiny("reactnet"))
    didb = costs.elementwise(tiny("didb"))
    assert "act_units" not in base
    assert react == dict(base, act_units=4 * 6 * (24 + 8 + 16 + 8))          # 1344
    assert react["act_units"] == 1344
    assert base["thresholds"] == 96 + 48 + 72 + 48 + 96                        # q/k, v sign, b1, proj, fc1
    assert didb == dict(react, thresholds=base["thresholds"] + 96, haar=4 * 2 * 48, hfsc_combine=2 * 36,
                        diba=12 * 48)
    assert (didb["haar"], didb["hfsc_combine"], didb["diba"]) == (384, 72, 576)


@pytest.mark.parametrize("method", ["reactnet", "didb"])
def test_parameters_match_the_model_file_layout(method):
    h = tiny(method)
    want = {k: (str(dt), shape) for k, (dt, shape) in expected_arrays(h).items() if k != "format_version"}
    got = {}
    for p in costs.parameters(h):
        shape = p.shape if p.precision != "binary" else p.shape[:-1] + (-(-p.shape[-1] // 64),)
        got[p.name] = (p.dtype, shape)
    if method == "didb":      # the file allows any exp_hi length; the exporter writes 19 for prob = 24
        assert want.pop("blocks.0.exp_hi") == ("int64", (None,)) and got.pop("blocks.0.exp_hi") == ("int64", (19,))
    assert got == want
    r = costs.count(h)
    fixed_extra = r.weight_bits["fixed"] - costs.count(tiny("bit")).weight_bits["fixed"]
    # act units: 2 mults + qkv.bias 24 + fc1.bias 16 + 4*(2*6 tokens) + slopes/outs 2*(24+8+16+8)
    act = 64 * (2 + 24 + 16 + 48 + 112)
    # didb drops q.thr, k.thr (int32, 8 each) and exp_lut (5) and adds 4 band thresholds, score.w,
    # the three exp tables and the DIBA constants
    didb = 64 * (4 * 8 + 4 + 256 + 256 + 19 + 1 + 2) - 32 * 16 - 64 * 5
    assert fixed_extra == act + (didb if method == "didb" else 0)


def test_methods_are_validated():
    with pytest.raises(CostModelError, match="method"):
        costs.shape_of(dict(tiny("bit"), method="fp"))
    with pytest.raises(CostModelError, match="groups"):
        costs.shape_of(dict(tiny("didb"), groups=2))


def test_count_ops_on_model_files(tmp_path, capsys):
    """`gsbsim run --count-ops` on reactnet and didb files (golden engine: the counts need no fast path)."""
    from gsbsim.cli.app import main
    from gsbsim.format.model_file import save_model
    from gsbsim.format.random_model import random_images, random_model
    for method in ("reactnet", "didb"):
        m = random_model(np.random.default_rng(0), method=method)
        path, data = tmp_path / f"{method}.npz", tmp_path / "x.npy"
        save_model(path, m.header, m.arrays)
        np.save(data, (random_images(np.random.default_rng(1), m, 3).astype(np.int16) + 128).astype(np.uint8))
        assert main(["run", "--model", str(path), "--data", str(data), "--count-ops", "--engine", "golden"]) == 0
        out = capsys.readouterr().out
        assert f"{costs.count(m.header).bops}/64" in out and "act_units" in out
