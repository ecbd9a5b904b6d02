"""A method made of existing features (one row of gsbsim/format/methods.py plus one reference
registration) goes through the whole chain: the PyTorch model, the exporter, the golden and fast
engines and the HLS C-simulation, bit-exact, without any engine being edited (docs/adding_a_method.md).
Tier ``hls`` (tests/conftest.py): it builds C++."""
from __future__ import annotations

import numpy as np
import pytest

from gsbsim.cli.app import main as gsbsim_main
from gsbsim.engine import fast, golden
from gsbsim.format.model_file import load_model
from gsbsim.format.random_model import random_images
from tests.support.hls_builds import require_toolchain
from tests.support.methods import register_tokact


@pytest.fixture
def tokact(monkeypatch):
    """The throw-away row (tests/support/methods.py), on the PyTorch side too."""
    return register_tokact(monkeypatch, reference=True)


def test_a_new_row_exports_and_passes_csim_bit_exactly(tokact, tmp_path, capsys):
    require_toolchain()  # gsbsim csim builds the project like every hls-tier test
    from reference.export import export, random_student
    from gsbsim.format.model_file import save_model

    import torch
    from reference.didb import IRPReLU

    student, images = random_student("digits", 1, 10, 1, seed=4, method="tokact")
    units = [mod for mod in student.modules() if isinstance(mod, IRPReLU)]
    assert units, "the registration puts an IRPReLU after every binary linear"
    with torch.no_grad():   # trained token terms are not zero: give them values the export must carry
        for u in units:
            u.gamma_token.uniform_(-0.2, 0.2)
            u.zeta_token.uniform_(-0.2, 0.2)
    header, arrays = export(student, images, "digits", "test")
    path = tmp_path / "tokact.npz"
    save_model(path, header, arrays)
    m = load_model(path)
    assert m.method == "tokact" and m.features is tokact
    assert np.any(m.arrays["blocks.0.qkv.tok_in"]), "the IRPReLU token terms reached the file"
    x = random_images(np.random.default_rng(3), m, 2)
    lg, tg = golden.forward(m, x, trace=True)
    lf, tf = fast.forward(m, x, trace=True)
    assert list(tg) == list(tf) and all(np.array_equal(tg[k], tf[k]) for k in tg)
    assert gsbsim_main(["hls", "--model", str(path), "--out", str(tmp_path / "prj"), "--pe", "2", "--simd", "8"]) == 0
    rc = gsbsim_main(["csim", str(tmp_path / "prj"), "--images", "2"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "bit-exact" in out
