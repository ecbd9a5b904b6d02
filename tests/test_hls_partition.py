"""ARRAY_PARTITION pragmas of generated projects (gsbsim/hlsgen/partition.py), checked without Vitis.

g++ ignores the pragmas, so the synthesis-view compile cannot see them: these tests read the
generated sources instead.
* Every array a kernel call of a generated top reads or writes lanes-wide (weights [PE][TILES],
  thresholds, the PIPOs, the softmax table, ...) has its pragma in the region that defines or
  uses it, for a project of every method; a pragma cut out of the top is reported by name.
* didb's attention tail is in Vitis' canonical form: each array between gsb_av and DIBA has one
  writing and one reading process (diba_fork in front), and lap exists in C-simulation only.
* The rule table is complete: a scan of the kernel headers finds every array parameter that an
  unrolled lane loop indexes (directly or through a variable computed from the lane), and each
  such parameter of a kernel the generator calls has a rule or a documented gap.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from gsbsim.cli.app import main
from gsbsim.format.model_file import save_model
from gsbsim.format.random_model import random_model
from gsbsim.hlsgen import partition, toolchain

METHODS = ("gsb", "reactnet", "didb")


@pytest.fixture(scope="module")
def tops(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("partition")
    out = {}
    for method in METHODS:
        m = random_model(np.random.default_rng(11), method=method, depth=2, embed_dim=24, num_heads=3)
        save_model(root / f"{method}.npz", m.header, m.arrays)
        assert main(["hls", "--model", str(root / f"{method}.npz"), "--out", str(root / method),
                     "--pe", "2", "--simd", "8"]) == 0
        out[method] = (root / method / "src" / "top.cpp").read_text()
    return out


@pytest.mark.parametrize("method", METHODS)
def test_every_lanes_wide_array_has_its_pragma(tops, method: str) -> None:
    top = tops[method]
    assert partition.missing(top) == []
    for i in (0, 1):   # FINN's weight partition, thresholds, the PIPOs of both blocks
        for line in (f"variable=b{i}_qkv_weight complete dim=1", f"variable=b{i}_fc2_weight complete dim=1",
                     f"variable=b{i}_fc1_act.lo cyclic factor=FC1_PE dim=1", "variable=v_tiles complete dim=1",
                     "variable=v_tiles complete dim=3",
                     # gsb_av writes AV_PE channels per cycle; ctx_threshold reads PROJ_SIMD (gsb, reactnet)
                     "variable=ctx_av cyclic factor=AV_PE dim=2" if method == "didb" else
                     "variable=ctx cyclic factor=CTX_BANKS2 dim=2"):
            assert f"#pragma HLS ARRAY_PARTITION {line}" in top, line
    assert "variable=patch_weight complete dim=1" in top and "variable=head_dist_weight complete dim=1" in top
    # k_tiles [H][PE][TILES]; didb's [2][H][PE][TILES] (the call passes k_tiles[band])
    assert f"variable=k_tiles complete dim={3 if method == 'didb' else 2}" in top
    # att: written at the softmax's PE, read at the planes' PE: a multiple of both
    assert "const unsigned ATT_BANKS3 __attribute__((unused)) = SM_EPC * AP_EPC;" in top
    assert "variable=att cyclic factor=ATT_BANKS3 dim=3" in top


@pytest.mark.parametrize("cut, name", [
    ("#pragma HLS ARRAY_PARTITION variable=b1_qkv_weight complete dim=1", "b1_qkv_weight"),
    ("#pragma HLS ARRAY_PARTITION variable=k_tiles complete dim=2", "k_tiles"),
    ("#pragma HLS ARRAY_PARTITION variable=b0_exp_lut complete dim=1", "b0_exp_lut"),
    ("#pragma HLS ARRAY_PARTITION variable=logit_bias cyclic factor=HEAD_PE dim=1", "logit_bias"),
    ("    const unsigned VQ_BANKS3 __attribute__((unused)) = QKV_PE * VP_EPC;", "vq"),
])
def test_a_missing_pragma_is_named(tops, cut: str, name: str) -> None:
    top = tops["gsb"]
    assert cut in top
    planted = top.replace(cut, "// (cut)", 1)   # the first region that has it
    found = partition.missing(planted)
    assert len(found) == 1 and found[0].startswith(f"{name}: no "), found


def _block(top: str, i: int) -> str:
    start = top.index(f"static void block_{i}(")
    return top[start:partition._close(top, top.index("{", start), "{", "}")]


def test_didb_attention_tail_has_one_producer_and_one_consumer_per_array(tops) -> None:
    block = _block(tops["didb"], 0)
    users: dict[str, list[str]] = {}
    for kernel, _, args in partition.calls(block):
        for a in args:
            users.setdefault(re.sub(r"\[.*", "", a), []).append(kernel)
    for array, pair in {"a_rows": ["attention_planes", "diba_fork"], "v_tiles": ["value_planes", "diba_fork"],
                        "a_av": ["diba_fork", "gsb_av"], "v_av": ["diba_fork", "gsb_av"],
                        "a_ones": ["diba_fork", "diba_context"], "v_sign": ["diba_fork", "diba_context"],
                        "ctx_av": ["gsb_av", "diba_context"], "ctx": ["diba_context", "ctx_threshold"]}.items():
        assert users[array] == pair, (array, users[array])
    # lap: declared and passed in gsbsim's C-simulation only (GSB_LAP_TRACE drops it otherwise)
    assert "#ifdef GSB_CSIM\n    GSB_PIPO int32_t lap[N][E];" in block and "GSB_LAP_TRACE(lap)" in block
    assert "GSB_LAP_TRACE(lap)" in users and "lap" not in users


# ---------------------------------------------------------------------------- the rules against the headers
def _split(params: str) -> list[str]:
    return partition._split(params)


def _kernels(text: str):
    """(name, parameter names, body) of every function defined in a header."""
    for m in re.finditer(r"\n(?:inline\s+)?[\w:<>, ]+?\s+(\w+)\(([^;{]*?)\)\s*(?:const\s*)?\{", text):
        end = partition._close(text, m.end() - 1, "{", "}")
        names = [n.group(1) for p in _split(m.group(2)) if (n := re.search(r"(\w+)\s*(?:\[|$)", p.strip()))]
        yield m.group(1), names, text[m.end():end]


def _lane_vars(body: str) -> set[str]:
    """Loop variables of unrolled loops, and every variable computed from one."""
    lanes = set(re.findall(r"for \(unsigned (\w+) = [^)]*\) \{\s*\n#pragma HLS UNROLL", body))
    assigns = re.findall(r"(?:const )?[\w:<>]+ (\w+) = ([^,;]+)", body) + re.findall(r", (\w+) = ([^,;]+)", body)
    grew = True
    while grew:
        grew = False
        for name, expr in assigns:
            if name not in lanes and any(re.search(rf"\b{v}\b", expr) for v in lanes):
                lanes.add(name)
                grew = True
    return lanes


def lanes_wide(include: Path) -> dict[str, tuple[list[str], set[str]]]:
    """kernel -> (its parameter names, the array parameters an unrolled lane indexes)."""
    out = {}
    for header in sorted(include.glob("*.hpp")):
        for name, params, body in _kernels(header.read_text()):
            lanes = _lane_vars(body)
            hit = {p for p in params for sub in re.finditer(rf"\b{p}((?:\[[^\]]*\])+)", body)
                   if any(re.search(rf"\b{v}\b", sub.group(1)) for v in lanes)}
            out[name] = (params, hit)
    return out


def test_the_rules_cover_every_lanes_wide_parameter(tops) -> None:
    scan = lanes_wide(toolchain.repo_hls_dir() / "include" / "gsb")
    called = {k for top in tops.values() for k, _, _ in partition.calls(top)}
    assert {"mvau", "qkv_split", "value_planes", "softmax_hfsc", "act_unit", "layernorm_bits"} <= called
    assert scan["mvau"][1] == {"weights"} and scan["qkv_split"][1] >= {"q_thr", "q_rows"}   # the scan works
    for kernel in sorted(called):
        params, hit = scan[kernel]
        ruled = {params[r.arg] for r in partition.RULES.get(kernel, ())}
        gaps = {p for k, p in partition.GAPS if k == kernel}
        assert hit <= ruled | gaps, f"{kernel}: {sorted(hit - ruled - gaps)} read lanes-wide without a rule"


def test_the_scan_sees_a_new_lanes_wide_read(tmp_path) -> None:
    """The completeness check is live: a kernel that reads a table at its lane fails it."""
    (tmp_path / "k.hpp").write_text(
        "\ntemplate <unsigned PE>\nvoid kern(const int t[8], int out[PE]) {\n"
        "    for (unsigned pe = 0; pe < PE; ++pe) {\n#pragma HLS UNROLL\n"
        "        const unsigned r = 2 * pe;\n        out[0] += t[r];\n    }\n}\n")
    assert lanes_wide(tmp_path)["kern"] == (["t", "out"], {"t"})
