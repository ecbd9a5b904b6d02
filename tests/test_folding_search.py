"""``gsbsim fold``: the greedy folding search (gsbsim/hw/fold_search.py) and its command."""
from __future__ import annotations

import json

import pytest

from gsbsim.cli.app import main
from gsbsim.hw import folding
from gsbsim.hw.costs import layers
from gsbsim.hw.fold_search import search, to_json
from gsbsim.hw.folding import FoldingError, mvau_cycles
from gsbsim.hw.stages import driver, knobs, stage_dims
from tests.support.shapes import DIGITS, shaped_file



def _divisors(n):
    return [k for k in range(1, n + 1) if n % k == 0]


def test_meets_the_target_and_no_layer_is_wider_than_it_must_be():
    r = search(DIGITS, 10_000, 200.0)
    assert r.target_ii == 20_000 and r.cycles.ii <= 20_000
    assert r.cycles.fps >= 10_000
    # every layer was raised only while it was the slowest process, so one step back misses the target
    for l in layers(DIGITS):
        f = r.folding[l.name]
        if (f.pe, f.simd) == (1, 1):
            continue
        pe, simd = f.pe, f.simd
        if pe > 1:
            pe = max(d for d in _divisors(l.mh) if d < pe)
        else:
            simd = max(d for d in _divisors(l.mw) if d < simd)
        assert mvau_cycles(l.mh, l.mw, pe, simd, l.vectors, l.repeats) > 20_000, l.name


def test_a_stage_setting_the_ii_is_folded_and_a_driven_stage_raises_its_layer():
    # II <= 1100: value_planes (1152 at PE 1) must fold
    r = search(DIGITS, 200e6 / 1100, 200.0)
    assert r.folding["blocks.0.value_planes"].pe > 1 and r.cycles.ii <= 1100
    # qkv_split walks qkv's PE-lane words: the search raised qkv's PE for it
    assert r.cycles.stages["blocks.0.qkv_split"] <= 1100 and r.folding["blocks.0.qkv"].pe > 1
    assert driver("blocks.3.ln1") == ("blocks.3.qkv", "simd") and driver("blocks.0.ln2") == ("blocks.0.fc1", "simd")
    assert driver("blocks.1.softmax") == ("blocks.1.qk", "pe") and driver("im2col") == ("patch", "simd")
    assert driver("blocks.0.fork1") is None and driver("final_norm") == ("head", "simd")
    f = folding.folding_from_dict(DIGITS, to_json(DIGITS, r.folding))
    assert folding.cycle_report(DIGITS, f).per_process == r.cycles.per_process


def test_out_of_reach_and_over_budget_are_one_line_errors():
    with pytest.raises(FoldingError, match=r"cannot reach 1e\+06 frames/s at 200 MHz \(II <= 200 cycles\): "
                                           r"blocks.0.ln1 needs 204 cycles with every parameter it depends on "
                                           r"\(embed pe, blocks.0.qkv simd\) at its largest"):
        # one word of statistics, 32 square-root steps, one output word per token (6 tokens)
        search(DIGITS, 1e6, 200.0)
    with pytest.raises(FoldingError, match=r"needs \d+ LUT \(estimate: FINN-R model for the MVAUs .*\), above --max-lut 100"):
        search(DIGITS, 1e4, 200.0, max_lut=100)
    with pytest.raises(FoldingError, match="less than one cycle"):
        search(DIGITS, 1e9, 200.0)


def test_residual_stream_stages_are_searched():
    # II <= 400: the residual stream at one element per cycle (576) must fold: the search widens
    # the writers' words (embed, proj_residual, fc2_residual) and the LayerNorms follow
    r = search(DIGITS, 500_000, 200.0)
    assert r.cycles.ii <= 400 and r.cycles.fps >= 500_000
    spec = to_json(DIGITS, r.folding)
    assert all(spec[k]["pe"] > 1 for k in ("embed", "blocks.0.proj_residual", "blocks.3.fc2_residual"))
    st = r.cycles.stages
    assert max(st[f"blocks.{i}.{k}"] for i in range(4) for k in ("fork1", "ln1", "proj_residual", "fc2_residual")) <= 400
    assert st["final_norm"] <= 400 and r.folding["head"].simd > 1
    assert folding.cycle_report(DIGITS, folding.folding_from_dict(DIGITS, spec)).per_process == r.cycles.per_process
    # what each residual-stream process depends on; the residual adds' count is a gcd
    assert knobs(DIGITS, "blocks.1.proj_residual") == ([("blocks.0.fc2_residual", "pe", 96), ("blocks.1.proj", "pe", 96),
                                                        ("blocks.1.proj_residual", "pe", 96)], True)
    assert knobs(DIGITS, "blocks.0.ln2") == ([("blocks.0.proj_residual", "pe", 96), ("blocks.0.fc1", "simd", 96)], False)
    assert knobs(DIGITS, "final_norm") == ([("blocks.3.fc2_residual", "pe", 96), ("head", "simd", 96)], False)
    assert knobs(DIGITS, "blocks.0.softmax") == ([], False)


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory):
    return shaped_file(tmp_path_factory.mktemp("fold") / "d.npz", 4)


def test_fold_command_writes_a_folding_hls_and_run_accept(digits_file, tmp_path, capsys):
    out = tmp_path / "fold.json"
    assert main(["fold", "--model", str(digits_file), "--target-fps", "180000", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    spec = json.loads(out.read_text())
    r = search(DIGITS, 180000, 200.0)
    assert spec == to_json(DIGITS, r.folding) and spec["blocks.0.value_planes"]["pe"] > 1
    assert f"II {r.cycles.ii} cycles ({r.cycles.bottleneck})" in text and "a lower bound" in text
    assert main(["run", "--model", str(digits_file), "--folding", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cycles"]["ii"] == r.cycles.ii
    assert set(stage_dims(DIGITS)) <= set(folding.load_folding(DIGITS, out))


@pytest.mark.parametrize("args, message", [
    (["--target-fps", "0"], "--target-fps: must be > 0"),
    (["--target-fps", "nan"], "--target-fps"),
    (["--target-fps", "1e4", "--max-lut", "0"], "--max-lut"),
    (["--target-fps", "1e4", "--clock-mhz", "-5"], "--clock-mhz"),
    (["--target-fps", "1e7"], "cannot reach 1e+07 frames/s"),
    (["--target-fps", "1e4", "--max-lut", "50"], "above --max-lut 50"),
])
def test_fold_command_bad_input_is_one_line_and_writes_nothing(digits_file, tmp_path, capsys, args, message):
    out = tmp_path / "fold.json"
    assert main(["fold", "--model", str(digits_file), *args, "--out", str(out)]) == 2
    o, err = capsys.readouterr()
    assert o == "" and err.count("\n") == 1 and err.startswith("gsbsim: error: ") and message in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_fold_command_missing_model_is_one_line(tmp_path, capsys):
    assert main(["fold", "--model", str(tmp_path / "no.npz"), "--target-fps", "1", "--out",
                 str(tmp_path / "f.json")]) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "no.npz" in err and not (tmp_path / "f.json").exists()


def test_hls_takes_the_found_folding(digits_file, tmp_path, capsys):
    from gsbsim.hlsgen.project import load_project
    fold, out = tmp_path / "fold.json", tmp_path / "hls"
    assert main(["fold", "--model", str(digits_file), "--target-fps", "180000", "--out", str(fold)]) == 0
    assert main(["hls", "--model", str(digits_file), "--folding", str(fold), "--out", str(out)]) == 0
    capsys.readouterr()
    r = search(DIGITS, 180000, 200.0)
    assert load_project(out).folding == r.folding
    config = (out / "src" / "config.h").read_text()
    pe = r.folding["blocks.0.value_planes"].pe
    assert f"const unsigned B0_VALUE_PLANES_PE = {pe};" in config and pe > 1
