"""The analytic cycle model covers every process of the dataflow (gsbsim/hw/stages.py, folding.py).

The counts themselves are checked against the C-simulation by the hls tier (test_hls_model.py,
test_hls_methods.py); here: the II over all processes, stage folding and its validation, the
text and JSON reports."""
from __future__ import annotations

import json

import pytest

from gsbsim.cli.app import main
from gsbsim.hw import folding
from gsbsim.hw.folding import Fold, FoldingError
from gsbsim.hw.stages import stage_dims
from tests.support.shapes import DIGITS, shaped_file

# the digits shape: E 96, N 6 (4 patches + 2), 3 heads of d 32, MLP 384, 4 blocks, G 3


def test_ii_covers_every_process_and_names_it():
    c = folding.cycle_report(DIGITS, folding.global_folding(DIGITS, 4, 32))
    assert (c.layer_ii, c.layer_bottleneck) == (1728, "blocks.0.fc1")
    assert (c.ii, c.bottleneck) == (1728, "blocks.0.fc1")
    assert c.stages["blocks.0.value_planes"] == 2 * 3 * 6 * 32 == 1152   # statistics, planes
    assert c.stages["blocks.0.ln1"] == 6 * (96 + 32 + 96 // 32) == 786
    assert c.latency == sum(c.per_layer.values()) + sum(c.stages.values())
    # the MVAUs folded further: value_planes (one element per cycle) sets the II
    c = folding.cycle_report(DIGITS, folding.global_folding(DIGITS, 16, 96))
    assert (c.ii, c.bottleneck) == (1152, "blocks.0.value_planes") and c.layer_ii < 1152
    assert c.fps == pytest.approx(200e6 / 1152)


def test_stage_pe_divides_the_stage_count():
    spec = {"blocks.*.fc?": {"pe": 16, "simd": 96}, "blocks.*.qkv": {"pe": 16, "simd": 96},
            "blocks.*.value_planes": {"pe": 4}, "blocks.0.attention_planes": {"pe": 3}}
    f = folding.folding_from_dict(DIGITS, spec)
    assert f["blocks.2.value_planes"] == Fold(4, 1) and f["blocks.1.attention_planes"] == Fold(1, 1)
    c = folding.cycle_report(DIGITS, f)
    assert c.stages["blocks.0.value_planes"] == 2 * 3 * 6 * 32 // 4
    assert c.stages["blocks.0.attention_planes"] == 2 * 3 * 6 * 6 // 3
    assert c.stage_pe["blocks.0.attention_planes"] == 3 and c.stage_pe["blocks.1.attention_planes"] == 1
    assert c.to_dict()["folding"]["blocks.3.value_planes"] == {"pe": 4}
    # softmax: per row N/PE_qk reads, N/PE exp, 1 reciprocal, N/PE scaling
    f["blocks.0.softmax"] = Fold(3, 1)
    assert folding.cycle_report(DIGITS, f).stages["blocks.0.softmax"] == 3 * 6 * (6 // 1 + 2 + 1 + 2)
    assert set(stage_dims(DIGITS)) == {f"blocks.{i}.{k}" for i in range(4)
                                       for k in ("value_planes", "attention_planes", "softmax")}


def test_residual_stream_lanes_set_their_readers_counts():
    # embed 4 lanes (patch PE 2: gcd 2), proj_residual 6, fc2_residual 3 in block 0; head SIMD 8
    f = {**folding.global_folding(DIGITS, 2, 32), "embed": Fold(4, 1), "blocks.0.proj_residual": Fold(6, 1),
         "blocks.0.fc2_residual": Fold(3, 1), "head": Fold(2, 8)}
    st = folding.cycle_report(DIGITS, f).stages
    assert st["embed"] == 6 * 96 // 2 and st["load_image"] == 64
    f["load_image"] = Fold(16, 1)
    st = folding.cycle_report(DIGITS, f).stages
    assert st["load_image"] == 64 // 16
    assert st["blocks.0.fork1"] == 6 * 96 // 4 and st["blocks.0.ln1"] == 6 * (96 // 4 + 32 + 3)
    assert st["blocks.0.proj_residual"] == 6 * 96 // 2            # gcd(4 in, PE 2, 6 out)
    assert st["blocks.0.fork2"] == 6 * 96 // 6 and st["blocks.0.ln2"] == 6 * (96 // 6 + 32 + 3)
    assert st["blocks.0.fc2_residual"] == 6 * 96 // 1             # gcd(6, 2, 3)
    assert st["blocks.1.fork1"] == 6 * 96 // 3 and st["blocks.1.fc2_residual"] == 6 * 96
    assert st["blocks.0.ctx_threshold"] == 6 * 3                    # one proj SIMD word per cycle
    # final LayerNorm: the last block's words (1 lane), one head-SIMD word per head token
    assert st["final_norm"] == 2 * (96 + 32 + 96 // 8) + 4 * 96
    c = folding.cycle_report(DIGITS, f)
    assert c.stage_pe["embed"] == 4 and "blocks.2.proj_residual" not in c.stage_pe   # lanes listed where folded


@pytest.mark.parametrize("spec, message", [
    ({"blocks.0.value_planes": {"pe": 5}}, "pe 5 does not divide head_dim d = 32 of blocks.0.value_planes"),
    ({"blocks.*.attention_planes": {"pe": 4}}, "pe 4 does not divide num_tokens N = 6"),
    ({"blocks.0.value_planes": {"pe": 2, "simd": 2}}, "is a stage, it takes 'pe' only"),
    ({"blocks.0.ln1": {"pe": 2}}, "unknown layer 'blocks.0.ln1'"),
    ({"blocks.0.softmax": {"pe": 4}}, "pe 4 does not divide num_tokens N = 6 of blocks.0.softmax"),
    ({"blocks.2.proj_residual": {"pe": 5}}, "pe 5 does not divide embed_dim E = 96 of blocks.2.proj_residual"),
    ({"blocks.*.fc2_residual": {"pe": 64}}, "pe 64 does not divide embed_dim E = 96 of blocks.0.fc2_residual"),
    ({"embed": {"pe": 7}}, "'embed': pe 7 does not divide embed_dim E = 96 of embed"),
    ({"embed": {"pe": 2, "simd": 2}}, "embed is a stage, it takes 'pe' only"),
    ({"load_image": {"pe": 3}}, "pe 3 does not divide image pixels Cin*I*I = 64 of load_image"),
])
def test_bad_stage_folding_is_one_clear_error(tmp_path, spec, message):
    path = tmp_path / "fold.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(FoldingError, match=message.replace(".", r"\.").replace("*", r"\*")) as e:
        folding.load_folding(DIGITS, path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_hls_with_a_bad_lanes_folding_is_one_line_naming_file_and_stage(digits_file, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"blocks.*.qkv": {"pe": 4, "simd": 32}, "blocks.1.fc2_residual": {"pe": 10}}))
    out = tmp_path / "p"
    assert main(["hls", "--model", str(digits_file), "--folding", str(bad), "--out", str(out)]) == 2
    o, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("gsbsim: error: ") and str(bad) in err
    assert "pe 10 does not divide embed_dim E = 96 of blocks.1.fc2_residual" in err
    assert not out.exists() and "Traceback" not in o + err


def test_cycle_report_refuses_a_stage_pe_that_does_not_divide():
    f = folding.global_folding(DIGITS, 4, 32)
    f["blocks.1.value_planes"] = Fold(3, 1)
    with pytest.raises(FoldingError, match="pe 3 does not divide head_dim d = 32 of blocks.1.value_planes"):
        folding.cycle_report(DIGITS, f)


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory):
    return shaped_file(tmp_path_factory.mktemp("stage") / "d.npz", 3)


def test_json_and_text_reports_name_the_process_and_the_bound(digits_file, capsys, tmp_path):
    fold = tmp_path / "f.json"
    fold.write_text(json.dumps({"patch": {"pe": 16, "simd": 16}, "head": {"pe": 10, "simd": 96},
                                "blocks.*.fc?": {"pe": 16, "simd": 96}, "blocks.*.qkv": {"pe": 16, "simd": 96},
                                "blocks.*.proj": {"pe": 16, "simd": 96}, "blocks.*.qk": {"pe": 6, "simd": 32},
                                "blocks.*.av": {"pe": 8, "simd": 6}}))
    assert main(["run", "--model", str(digits_file), "--folding", str(fold), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)["cycles"]
    assert (d["ii"], d["bottleneck"]) == (1152, "blocks.0.value_planes")
    assert d["layer_ii"] < d["ii"] and d["per_stage"]["blocks.0.ln2"] == 6 * (96 + 32 + 1)
    assert "lower bound" in d["bound"] and "back-pressure" in d["bound"]
    assert d["latency"] == sum(d["per_layer"].values()) + sum(d["per_stage"].values())
    assert main(["run", "--model", str(digits_file), "--folding", str(fold), "--count-ops"]) == 0
    out = capsys.readouterr().out
    assert f"cycles: II {d['ii']} (blocks.0.value_planes; the MVAUs alone: {d['layer_ii']}" in out
    assert "a lower bound: it ignores pipeline fill" in out
    # name, (no PE/SIMD), cycles; the resource estimate's columns follow (tests/test_stage_resources.py)
    assert [l.split()[:3] for l in out.splitlines() if l.startswith("blocks.*.ln1")] == [["blocks.*.ln1", "-", "774"]]
