"""Cost model, folding/cycle model and FINN-R resource estimate (gsbsim.costs/folding/resources)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gsbsim.hw import costs, folding, resources
from gsbsim.hw.costs import CostModelError, header_for_shape
from gsbsim.hw.folding import Fold, FoldingError


def deit(embed_dim: int, heads: int, groups: int = 1) -> dict:
    """The published DeiT shape as the literature counts it: N = 197, one head, 1000 classes."""
    return header_for_shape(224, 16, 3, embed_dim, 12, heads, 4 * embed_dim, 1000, groups,
                            num_tokens=197, class_heads=1)


# A tiny shape whose every count is worked out by hand below: 4 patches, N = 6, d = 4.
TINY = header_for_shape(img_size=4, patch_size=2, in_chans=1, embed_dim=8, depth=1, num_heads=2,
                        mlp_hidden=16, num_classes=3, groups=2)


# ============================================================================ literature shapes
def test_deit_small_matches_published_ops():
    r = costs.count(deit(384, 6))
    N, E = 197, 384
    per_block = N * E * 3 * E + 2 * N * N * E + N * E * E + 2 * 4 * N * E * E
    assert r.bops == 12 * per_block == 4_540_695_552
    assert r.flops == 196 * 384 * 768 + 384 * 1000 == 58_186_752
    assert r.ops == pytest.approx(1.29e8, rel=0.03)
    assert r.weight_bits["binary"] == 21_233_664  # binary linear params of DeiT-S (12 * 12 * E^2)


def test_deit_tiny_matches_published_ops():
    r = costs.count(deit(192, 3))
    assert r.ops == pytest.approx(0.482e8, rel=0.03)
    assert r.flops == 196 * 192 * 768 + 192 * 1000


def test_gsb_groups_count_every_plane_pair_of_av():
    plain, gsb = costs.count(deit(384, 6, 1)), costs.count(deit(384, 6, 3))
    N, E = 197, 384
    assert gsb.bops - plain.bops == 12 * 8 * N * N * E  # 3 x 3 = 9 plane pairs instead of 1
    av = {l.name: l for l in gsb.layers}["blocks.0.av"]
    assert (av.plane_pairs, av.repeats, av.bops) == (9, 6 * 9, 9 * N * N * E)
    assert gsb.flops == plain.flops
    assert gsb.by_op()["av"]["bops"] == 12 * 9 * N * N * E


def test_default_tokens_and_heads_are_the_distilled_model():
    h = header_for_shape(8, 2, 1, 96, 4, 3, 384, 10, 3)
    assert (h["num_tokens"], h["class_heads"], h["head_dim"]) == (18, 2, 32)
    head = costs.layers(h)[-1]
    assert (head.name, head.vectors, head.flops) == ("head", 2, 2 * 10 * 96)


def test_layer_names_and_shapes_follow_the_trace_prefixes():
    ls = costs.layers(TINY)
    assert [l.name for l in ls] == ["patch", "blocks.0.qkv", "blocks.0.qk", "blocks.0.av",
                                    "blocks.0.proj", "blocks.0.fc1", "blocks.0.fc2", "head"]
    assert [(l.mh, l.mw, l.vectors, l.repeats) for l in ls] == [
        (8, 4, 4, 1), (24, 8, 6, 1), (6, 4, 6, 2), (4, 6, 6, 8), (8, 8, 6, 1), (16, 8, 6, 1),
        (8, 16, 6, 1), (3, 8, 2, 1)]
    assert [l.acc_bits for l in ls] == [17, 5, 4, 4, 5, 5, 6, 19]


# ============================================================================ elementwise, memory
def test_elementwise_counts_are_reported_apart_from_ops():
    r = costs.count(TINY)
    assert r.elementwise == {"layernorm": 112, "softmax": 72, "thresholds": 360, "gsb_masks": 120,
                             "gsb_scale_combine": 192, "requant": 134, "residual_add": 144}
    assert r.ops == r.bops / 64 + r.flops  # elementwise work is not in OPs


def test_memory_by_precision_and_float32_size():
    r = costs.count(TINY)
    assert r.weight_bits["binary"] == 24 * 8 + 8 * 8 + 16 * 8 + 8 * 16
    assert r.weight_bits["8-bit"] == 8 * (8 * 4 + 2 * 3 * 8)
    total_bits = sum(r.weight_bits.values())
    assert r.model_bytes == -(-total_bits // 8)
    assert r.float32_bytes == 4 * sum(p.elements for p in r.params)
    att = {p.name: p for p in r.params}["blocks.0.att_bias"]
    assert (att.shape, att.dtype, att.bits) == ((2, 6, 6), "int32", 72 * 32)


def test_activation_peak_is_the_largest_live_set():
    bits, layer, live = costs.activation_peak(TINY)
    # at qk: Q and K bits (2*48), V planes (2*48), attention planes (2*72), residual int32 (48*32)
    assert (bits, layer) == (96 + 96 + 144 + 1536, "blocks.0.qk")
    assert set(live) == {"residual", "blocks.0.q.bits", "blocks.0.k.bits", "blocks.0.v.planes",
                         "blocks.0.a.planes"}
    image = dict(TINY, mask_stat="image")  # the image-wide max holds pre-mask values (int32)
    assert costs.activation_peak(image)[:2] == (96 + 96 + 144 + 1536 + 72 * 32, "blocks.0.qk")


def test_parameters_match_the_model_file_layout():
    """The parameter table is the file layout of docs/integer_model.md §1 (model_file's table)."""
    from gsbsim.format.model_file import expected_arrays
    h = header_for_shape(img_size=4, patch_size=2, in_chans=1, embed_dim=8, depth=2, num_heads=2,
                         mlp_hidden=80, num_classes=3, groups=2)
    want = {k: (str(dt), shape) for k, (dt, shape) in expected_arrays(h).items() if k != "format_version"}
    got = {}
    for p in costs.parameters(h):
        shape = p.shape if p.precision != "binary" else p.shape[:-1] + (-(-p.shape[-1] // 64),)
        got[p.name] = (p.dtype, shape)
    assert got == want


@pytest.mark.parametrize("change, key", [
    ({"embed_dim": None}, "embed_dim"), ({"num_heads": 3}, "num_heads"),
    ({"groups": 0}, "groups"), ({"depth": 2.5}, "depth"), ({"num_tokens": 4}, "num_tokens"),
    ({"mask_stat": "batch"}, "mask_stat"), ({"head_dim": 3}, "head_dim")])
def test_bad_headers_name_the_problem(change, key):
    h = dict(TINY)
    for k, v in change.items():
        if v is None:
            del h[k]
        else:
            h[k] = v
    with pytest.raises(CostModelError, match=key):
        costs.count(h)


# ============================================================================ folding and cycles
def test_mvau_cycles_hand_cases():
    assert folding.mvau_cycles(6, 10, pe=3, simd=4, vectors=5, repeats=2) == 5 * 2 * 2 * 3
    assert folding.mvau_cycles(6, 10, pe=6, simd=10) == 1
    assert folding.mvau_cycles(6, 10, pe=1, simd=3) == 6 * 4  # MW 10 padded to 12
    assert folding.mvau_cycles(6, 10, pe=2, simd=16) == 3  # SIMD above MW: one padded word
    with pytest.raises(FoldingError, match="does not divide"):
        folding.mvau_cycles(6, 10, pe=4, simd=1)


def test_cycles_fully_folded():
    c = folding.cycle_report(TINY, clock_mhz=200)
    assert c.per_layer == {"patch": 128, "blocks.0.qkv": 1152, "blocks.0.qk": 288 + 48,
                           "blocks.0.av": 1152, "blocks.0.proj": 384, "blocks.0.fc1": 768,
                           "blocks.0.fc2": 768, "head": 48}
    # every other process of the dataflow counts too (gsbsim/hw/stages.py): LayerNorm
    # N*(E + 32 + ceil(E/SIMD)), statistics, square root, output words of the next layer's SIMD
    assert c.stages["blocks.0.ln1"] == 6 * (8 + 32 + 8) and c.stages["blocks.0.fork1"] == 6 * 8
    # qk: the MVAU's H*N*(N/PE)*ceil(d/SIMD) = 288 and the query copy H*N*ceil(d/SIMD) = 48
    assert c.latency == 4736 + sum(c.stages.values()) == 6480
    assert (c.ii, c.bottleneck, c.layer_ii) == (1152, "blocks.0.qkv", 1152)
    assert c.fps == pytest.approx(200e6 / 1152)
    assert c.latency_us == pytest.approx(6480 / 200)


def test_global_folding_clips_per_layer():
    f = folding.global_folding(TINY, pe=4, simd=3)
    assert f["blocks.0.qk"] == Fold(3, 3)  # MH 6: largest divisor <= 4 is 3
    assert f["head"] == Fold(3, 3)  # MH 3
    assert folding.global_folding(TINY, pe=64, simd=64)["blocks.0.qk"] == Fold(6, 4)  # SIMD -> MW
    c = folding.cycle_report(TINY, f)
    assert list(c.per_layer.values()) == [16, 108, 48 + 24, 96, 36, 72, 72, 6]   # qk + its query copy
    # folded MVAUs: a LayerNorm (one element per cycle, not folded by --pe) sets the II
    assert (c.layer_ii, c.layer_bottleneck) == (108, "blocks.0.qkv")
    assert (c.ii, c.bottleneck) == (6 * (8 + 32 + 3), "blocks.0.ln1")
    assert c.latency == 478 + sum(c.stages.values())
    with pytest.raises(FoldingError, match="--pe"):
        folding.global_folding(TINY, pe=0)


def test_folding_file_patterns_and_defaults(tmp_path):
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"blocks.*.fc?": {"pe": 4, "simd": 8}, "blocks.0.fc2": {"pe": 2},
                                "head": {"pe": 3, "simd": 8}}))
    f = folding.load_folding(TINY, path)
    assert f["blocks.0.fc1"] == Fold(4, 8)
    assert f["blocks.0.fc2"] == Fold(2, 1)  # the exact name wins over the pattern
    assert f["head"] == Fold(3, 8) and f["blocks.0.qkv"] == Fold(1, 1)
    c = folding.cycle_report(TINY, f)
    assert c.per_layer["blocks.0.fc1"] == 6 * 4 * 1 and c.per_layer["blocks.0.fc2"] == 6 * 4 * 16


@pytest.mark.parametrize("spec, message", [
    ({"blocks.7.qkv": {"pe": 1}}, "unknown layer 'blocks.7.qkv'"),
    ({"blocks.0.qk": {"pe": 4}}, "pe 4 does not divide MH = 6"),
    ({"head": {"pe": 0}}, "pe must be a positive integer"),
    ({"head": {"simd": -2}}, "simd must be a positive integer"),
    ({"head": {"pe": 1.5}}, "pe must be a positive integer"),
    ({"head": {"simd": 9}}, "simd 9 exceeds MW = 8"),
    ({"head": {"pes": 1}}, "must be an object with keys"),
    ({"blocks.0.fc*": {"pe": 2}, "blocks.0.f*": {"pe": 4}}, "different folding"),
    ([1, 2], "expected a JSON object"),
])
def test_bad_folding_files_are_clear_errors(tmp_path, spec, message):
    path = tmp_path / "fold.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(FoldingError, match=message.replace("(", r"\(").replace("[", r"\[")) as e:
        folding.load_folding(TINY, path)
    assert str(path) in str(e.value)


def test_folding_file_not_json_or_missing(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{pe: 1")
    with pytest.raises(FoldingError, match="not valid JSON"):
        folding.load_folding(TINY, bad)
    with pytest.raises(FoldingError, match="not found"):
        folding.load_folding(TINY, tmp_path / "missing.json")


# ============================================================================ resources
def test_bram18_table():
    assert resources.bram18_estimate(16384, 1) == 1 and resources.bram18_estimate(16385, 1) == 2
    assert resources.bram18_estimate(8192, 2) == 1
    assert resources.bram18_estimate(4096, 4) == 1 and resources.bram18_estimate(4096, 8) == 2  # 2048 x 9 mode
    assert resources.bram18_estimate(2048, 9) == 1
    assert resources.bram18_estimate(1152, 128) == 2 * 8  # depth > 512: 1024 x 18 mode
    assert resources.bram18_estimate(512, 72) == 2  # 512 x 36 mode


def test_binary_lut_estimate_matches_finn_r_closed_form():
    h = deit(384, 6)
    c = folding.cycle_report(h, folding.global_folding(h, pe=4, simd=32))
    r = resources.estimate(c)
    proj = {x.name: x for x in r.layers}["blocks.0.proj"]
    # W = A = 1, FINN-R: 300 + 1.1 * P * (6Q - 2 + acc), acc = ceil(log2(MW + 1) + 1) = 10; weights in BRAM
    f_proj = {f.layer.name: f for f in c.layers}["blocks.0.proj"]
    assert resources.lut_estimate(f_proj, calibrated=False)[0] == int(np.ceil(300 + 1.1 * 4 * (6 * 32 - 2 + 10)))
    # calibrated (yosys): the popcount datapath 6Q - 2 at POPCOUNT_LUT_SCALE instead of 1.1
    k = resources.POPCOUNT_LUT_SCALE
    assert proj.lut == int(np.ceil(300 + 4 * (k * (6 * 32 - 2) + 1.1 * 10)))
    assert (proj.weight_depth, proj.weight_width, proj.bram18, proj.dsp) == (1152, 128, 16, 0)
    fc1 = {x.name: x for x in r.layers}["blocks.0.fc1"]  # two thresholds per channel, TMEM = 384
    assert fc1.lut == int(np.ceil(300 + 4 * (k * (6 * 32 - 2) + 1.1 * (10 + 2 * 10 * 6 + 2 * 10))))
    patch = {x.name: x for x in r.layers}["patch"]
    assert patch.dsp == 4 * 32 and r.label == resources.LABEL and "FINN-R" in r.label
    f_patch = {f.layer.name: f for f in c.layers}["patch"]      # 8-bit layers: FINN-R unchanged
    assert resources.lut_estimate(f_patch) == resources.lut_estimate(f_patch, calibrated=False)
    qk = {x.name: x for x in r.layers}["blocks.0.qk"]
    assert qk.bram18 == 0 and qk.weight_depth == 0


def test_plot_writes_a_png(tmp_path):
    from gsbsim.hw.plots import plot_breakdown
    out = plot_breakdown(costs.count(TINY), folding.cycle_report(TINY), tmp_path / "c.png")
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
