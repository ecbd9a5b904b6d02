"""shifts.slope (docs/integer_model.md §13.1): the activation units' negative-slope grid is a header value;
a file without it means 2^-16, the grid before the key existed."""
from __future__ import annotations

import numpy as np
import pytest

from gsbsim.cli.app import main
from gsbsim.engine import golden
from gsbsim.format import model_file as mf
from gsbsim.format.model_file import IntModel, ModelFileError, load_model, save_model
from gsbsim.format.random_model import random_images, random_model
from tests.support.engines import assert_same


def _model(method: str) -> IntModel:
    return random_model(np.random.default_rng(3), method=method, img_size=6, patch_size=2, embed_dim=24,
                        num_heads=2, mlp_hidden=40, depth=2)


def _old_style(m: IntModel) -> tuple[dict, dict]:
    """The same model as a file written before shifts.slope existed: no key, slopes at 2^-16 (exact:
    the random slopes are multiples of 2^-2)."""
    down = m.slope_shift - mf.SLOPE_SHIFT_DEFAULT
    arrays = {k: (v >> np.int64(down) if k.endswith(".slope") else v) for k, v in m.arrays.items()}
    assert all(np.array_equal(arrays[k] << np.int64(down), v) for k, v in m.arrays.items() if k.endswith(".slope"))
    shifts = {k: v for k, v in m.header["shifts"].items() if k != "slope"}
    return dict(m.header, shifts=shifts), arrays


@pytest.mark.parametrize("method", ["reactnet", "didb"])
def test_old_style_header_means_16_and_runs_bit_exactly(method, tmp_path):
    m24 = _model(method)
    assert m24.header["shifts"]["slope"] == m24.slope_shift == 24
    header, arrays = _old_style(m24)
    save_model(tmp_path / "old.npz", header, arrays)
    old = load_model(tmp_path / "old.npz")
    assert "slope" not in old.header["shifts"] and old.slope_shift == 16
    x = random_images(np.random.default_rng(4), m24, 3)
    t_old = assert_same(old, x)                    # fast == golden on the old-style file
    t_24 = golden.forward(m24, x, trace=True)[1]
    # the same slopes on either grid: every traced integer equal, both PReLU sides used
    assert all(np.array_equal(t_old[k], t_24[k]) for k in t_24)
    assert (t_old["blocks.0.qkv.z"] < 0).any() and (t_old["blocks.0.qkv.z"] > 0).any()
    # the key read: the 2^-24 slopes read on the 2^-16 grid are 256 times steeper
    steep = IntModel(header=header, arrays=m24.arrays)
    assert not np.array_equal(golden.forward(steep, x, trace=True)[1]["blocks.0.qkv.z"], t_24["blocks.0.qkv.z"])


def test_slope_key_is_optional_for_every_method_and_refused_out_of_range(tmp_path):
    gsb = random_model(np.random.default_rng(1))
    assert "slope" not in gsb.header["shifts"] and gsb.slope_shift == 16
    for bad in (0, 31, 24.0, True):
        header = dict(gsb.header, shifts=dict(gsb.header["shifts"], slope=bad))
        with pytest.raises(ModelFileError, match=r"shifts\.slope must be an integer in \[1, 30\]"):
            mf.validate(header, dict(gsb.arrays), "<x>")


def test_planted_bad_slope_shift_is_one_error_line(tmp_path, capsys):
    m = _model("reactnet")
    header = dict(m.header, shifts=dict(m.header["shifts"], slope=31))
    path = tmp_path / "bad.npz"
    np.savez(path, header=mf.header_bytes(header), **m.arrays)      # written raw: save_model would refuse
    rc = main(["info", "--model", str(path)])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.splitlines() == [f"gsbsim: error: {path}: header shifts.slope must be an integer in [1, 30], "
                                f"got 31"]


def test_slope_values_bounded_by_2_30():
    m = _model("reactnet")
    arrays = dict(m.arrays)
    arrays["blocks.1.fc1.slope"] = arrays["blocks.1.fc1.slope"].copy()
    arrays["blocks.1.fc1.slope"][3] = 2 ** 30
    mf.validate(m.header, arrays, "<x>")           # the largest allowed
    arrays["blocks.1.fc1.slope"][3] = -(2 ** 30) - 1
    with pytest.raises(ModelFileError, match=r"blocks\.1\.fc1\.slope.*\|slope\| <= 2\^30"):
        mf.validate(m.header, arrays, "<x>")
