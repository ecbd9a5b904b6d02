"""benchmarks/yosys_popcount.py (the calibration of the MVAU popcount datapath): its FINN-R terms are
the resource model's, and without yosys it fails with one line. yosys itself is not needed here."""
from __future__ import annotations

import math

from benchmarks import yosys_popcount as yp
from gsbsim.hw import folding, resources
from tests.support.shapes import DIGITS


def test_the_script_compares_with_the_model_s_own_terms():
    # lut_estimate (calibrated) of a binary layer = 300 + P*(scale*(mult + addertree) + 1.1*acc) + c2
    c = folding.cycle_report(DIGITS, folding.global_folding(DIGITS, 4, 32))
    f = {x.layer.name: x for x in c.layers}["blocks.0.proj"]          # no thresholds
    acc = 8                                   # ceil(a + log2(1 + 2^-a) + 1), a = log2(96)
    c2 = 4 * 32 * 2                           # weights in LUTRAM: WMEM = 3 * 24 = 72 words, P*Q*W*ceil(72/64)
    want = math.ceil(300 + 4 * (resources.POPCOUNT_LUT_SCALE * yp.popcount_terms(32) + 1.1 * acc) + c2)
    assert resources.lut_estimate(f)[0] == want
    assert yp.finn_r_terms(32, 10) == 2 * 32 + 2 * 63 + 10


def test_no_yosys_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setattr(yp.shutil, "which", lambda name: None)
    assert yp.main(["--simd", "8", "--acc", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("yosys_popcount.py: error: yosys not found")
