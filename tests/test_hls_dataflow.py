"""The generated streaming dataflow, verified without Vitis.

* C-simulation runs every DATAFLOW region as threads over FIFOs bounded at the depths the
  generator emits (gsbsim/hlsgen/dataflow.py, hls/include/gsb/dataflow.hpp): it passes at
  those depths, and reports a DEADLOCK naming the stalled stream when the depths are cut
  (`gsbsim csim --fifo-depth-cap K`).  The residual skip's depth is shown to be one word above
  the least that works.
* A project generated with ``--size-fifos`` (depths sized by the cycle simulation, never below
  that minimum) C-simulates bit-exactly at its sized depths, and cut below its sized skip depth
  it deadlocks on the skip as the minimal one does.
* The synthesis view (gsbsim/hlsgen/synth_view.py) of a project of every method compiles with
  -Wall -Wextra -Werror against a declaration-only hls::stream, and fails when the top uses a
  member Vitis' stream does not have (a planted fault); so does the view Vitis' csim/cosim
  compile (-DGSB_VITIS: the testbench calls the synthesized signature).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from gsbsim.cli.app import main
from gsbsim.format.random_model import random_model
from gsbsim.hlsgen import csim, toolchain
from gsbsim.hlsgen.project import load_project
from gsbsim.hlsgen.synth_view import compile_synthesis_view, compile_vitis_view
from tests.support.hls_builds import Builds

E, N = 24, 18     # random_model defaults: 8x8 image, 2x2 patches -> 16 patches + 2 tokens


class Projects(Builds):
    """One small project per method, their builds and views compiled in the background."""

    def __init__(self, root: Path):
        super().__init__(root)
        for k, method in (("gsb", "gsb"), ("reactnet", "reactnet"), ("didb", "didb")):
            model = random_model(np.random.default_rng(700 + len(k)), method=method, depth=1, embed_dim=E,
                                 num_heads=3)
            self.generate(k, model, "--pe", "2", "--simd", "8")
        sized = random_model(np.random.default_rng(703), method="gsb", depth=1, embed_dim=E, num_heads=3)  # gsb's
        self.generate("gsb-sized", sized, "--pe", "2", "--simd", "8", "--size-fifos")
        self.submit("gsb", csim.build, load_project(root / "gsb"))
        self.submit("gsb-sized", csim.build, load_project(root / "gsb-sized"))
        for k in ("gsb", "reactnet", "didb"):
            self.submit(f"{k}-synth", compile_synthesis_view, load_project(root / k))
            self.submit(f"{k}-vitis", compile_vitis_view, load_project(root / k))


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Projects]:
    with Projects(tmp_path_factory.mktemp("hls_dataflow")) as p:
        yield p


def csim_cli(capsys, project: Path, *argv) -> tuple[int, str, str]:
    rc = main(["csim", str(project), *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_passes_at_the_emitted_depths(projects: Projects, capsys) -> None:
    projects["gsb"]
    rc, out, err = csim_cli(capsys, projects.root / "gsb", "--images", 2)
    assert rc == 0 and "PASS: " in out and "DEADLOCK" not in out, out + err
    top = (projects.root / "gsb" / "src" / "top.cpp").read_text()
    # every FIFO: a STREAM pragma and the same depth for the C-simulation
    decls = re.findall(r"gsb::stream<.+> (\w+)\(\"[^\"]+\"\);.*\n#pragma HLS STREAM variable=(\w+) depth=(\d+)\n"
                       r"    GSB_DEPTH\((\w+), (\d+)\)", top)
    assert len(decls) == top.count("    gsb::stream<") and len(decls) > 20
    assert all(var == pragma_var == csim_var and depth == csim_depth
               for var, pragma_var, depth, csim_var, csim_depth in decls)
    depths = {var: int(depth) for var, _, depth, _, _ in decls}
    assert depths["x_skip1"] == N * E and depths["x_skip2"] == E and depths["x_ln1"] == 2
    # a DATAFLOW pragma in every region: gsb_top, embed_stage, block_0, head_stage
    assert top.count("#pragma HLS DATAFLOW") == 4
    # PIPO arrays are plain locals for synthesis (static only in C-simulation): no static in a region
    assert "    GSB_PIPO int64_t att[H][N][N];" in top and "#define GSB_PIPO static" in top
    assert not re.search(r"^    static ", top, re.M)
    # one signature for C-simulation, synthesis and co-simulation: AXI-stream ports, no probe argument
    sig = ("void gsb_top(gsb::stream<int8_t>& image, gsb::stream<int64_t>& logits, "
           "gsb::stream<uint32_t>& pred)")
    top_h = (projects.root / "gsb" / "src" / "top.h").read_text()
    assert top_h.count("void gsb_top(") == 1 and sig + ";" in top_h and sig + " {" in top
    assert "Probe*" not in top + top_h and "__SYNTHESIS__" not in top_h
    for port in ("image", "logits", "pred"):
        assert f"#pragma HLS INTERFACE axis port={port}\n" in top


def test_fifos_cut_to_depth_one_deadlock_naming_a_stream(projects: Projects, capsys) -> None:
    projects["gsb"]
    rc, out, err = csim_cli(capsys, projects.root / "gsb", "--keep-vectors", "--fifo-depth-cap", 1)
    assert rc == 1, out + err
    lines = out.splitlines()
    i = lines.index("FAIL: image 0: DEADLOCK: every process of the dataflow is blocked")
    assert re.match(r"  process \S+: gsb::stream '\S+': write to a full stream \(depth 1, ", lines[i + 1]), out
    assert "  process blocks.0.fork1: gsb::stream 'blocks.0.x_skip1': write to a full stream (depth 1, 0 elements " \
           "read so far)" in lines
    assert "PASS" not in out and "C-sim counted" not in out


def test_the_skip_depth_is_one_word_above_the_least_that_works(projects: Projects, capsys) -> None:
    """Cut every FIFO to N*E - 2: the attention's skip is the one that stalls; N*E - 1 passes."""
    projects["gsb"]
    root = projects.root / "gsb"
    rc, out, err = csim_cli(capsys, root, "--keep-vectors", "--fifo-depth-cap", N * E - 2)
    assert rc == 1, out + err
    full = [l for l in out.splitlines() if "write to a full stream" in l]
    assert full == [f"  process blocks.0.fork1: gsb::stream 'blocks.0.x_skip1': write to a full stream "
                    f"(depth {N * E - 2}, 0 elements read so far)"], out
    rc, out, err = csim_cli(capsys, root, "--keep-vectors", "--fifo-depth-cap", N * E - 1)
    assert rc == 0 and "PASS: " in out, out + err


def test_bad_fifo_depth_cap_is_an_error(projects: Projects, capsys) -> None:
    rc, out, err = csim_cli(capsys, projects.root / "gsb", "--keep-vectors", "--fifo-depth-cap", 0)
    assert rc == 2 and err.splitlines() == ["gsbsim: error: csim: argument --fifo-depth-cap: must be >= 1, got 0"], err


def test_sized_project_passes_at_its_depths_and_deadlocks_cut_below_its_skip(projects: Projects, capsys) -> None:
    projects["gsb-sized"]
    root = projects.root / "gsb-sized"
    top = (root / "src" / "top.cpp").read_text()
    decls = dict(re.findall(r"gsb::stream<.+> \w+\(\"([^\"]+)\"\);.*\n#pragma HLS STREAM variable=\w+ depth=\d+\n"
                            r"    GSB_DEPTH\(\w+, (\d+)\)", top))
    rec = load_project(root).fifos
    assert rec["how"] == "sized" and {k: int(v) for k, v in decls.items()} == rec["depths"]
    minimal = load_project(projects.root / "gsb").fifos["depths"]
    assert rec["depths"] != minimal and all(rec["depths"][k] >= v for k, v in minimal.items())
    skip = rec["depths"]["blocks.0.x_skip1"]
    assert skip >= N * E
    rc, out, err = csim_cli(capsys, root, "--images", 2)
    assert rc == 0 and "PASS: " in out and "DEADLOCK" not in out and "mismatch" not in out.lower(), out + err
    rc, out, err = csim_cli(capsys, root, "--keep-vectors", "--fifo-depth-cap", N * E - 2)
    assert rc == 1, out + err
    full = [l for l in out.splitlines() if "write to a full stream" in l]
    assert full == [f"  process blocks.0.fork1: gsb::stream 'blocks.0.x_skip1': write to a full stream "
                    f"(depth {N * E - 2}, 0 elements read so far)"], out


@pytest.mark.parametrize("key", ["gsb", "reactnet", "didb"])
def test_synthesis_and_vitis_views_compile(projects: Projects, key: str) -> None:
    assert projects[f"{key}-synth"].is_file()
    assert all(o.is_file() for o in projects[f"{key}-vitis"])


def test_synthesis_view_rejects_a_member_vitis_lacks(projects: Projects) -> None:
    """Planted fault: the top asks a stream for its size, which only gsbsim's C-sim stream has."""
    projects["gsb-synth"]
    planted = projects.root / "gsb_planted"
    shutil.copytree(projects.root / "gsb", planted, ignore=shutil.ignore_patterns("build", "vectors"))
    top = planted / "src" / "top.cpp"
    top.write_text(top.read_text() + "\nunsigned long gsb_planted(gsb::stream<int32_t>& s) { return s.size(); }\n")
    project = load_project(planted)
    with pytest.raises(toolchain.HlsEnvError, match="has no member named .size."):
        compile_synthesis_view(project)
    assert csim.build(project)[0].is_file()          # while gsbsim's own C-simulation builds it


def test_vitis_tcl_is_relative_and_complete(projects: Projects) -> None:
    root = projects.root / "gsb"
    tcl = (root / "vitis.tcl").read_text()
    for step in ("set_top gsb_top", "config_dataflow -default_channel fifo", "csim_design", "csynth_design",
                 "cosim_design", "export_design -format ip_catalog", "-Iinclude -Isrc -DGSB_VITIS"):
        assert step in tcl, step
    assert str(toolchain.library_include_dir()) not in tcl and not re.search(r"-I/", tcl)
    assert (root / "include" / "gsb" / "kernels.hpp").is_file()
    assert "HLS_INCLUDE ?= include" in (root / "Makefile").read_text()


def test_digits_shape_with_residual_stream_lanes_is_bit_exact(tmp_path: Path, capsys) -> None:
    """Every new parallelism parameter at once on the digits shape: the residual stream's writers
    at different lanes (gcd chunks in the adds, embed 6 lanes against patch PE 4), LayerNorms
    reading those words, the image port 16 pixels per word, the final LayerNorm one head-SIMD word (7 lanes, a padded last word)
    per cycle, ctx_threshold one proj-SIMD word per cycle; bit-exact, every count equal."""
    from tests.support.shapes import shaped_file
    model = shaped_file(tmp_path / "d.npz", 4)
    spec = {"patch": {"pe": 4, "simd": 8}, "head": {"pe": 2, "simd": 7}, "embed": {"pe": 6}, "load_image": {"pe": 16},
            "blocks.*.qkv": {"pe": 4, "simd": 32}, "blocks.*.fc?": {"pe": 8, "simd": 32},
            "blocks.*.proj": {"pe": 3, "simd": 10}, "blocks.0.proj_residual": {"pe": 2},
            "blocks.0.fc2_residual": {"pe": 12}, "blocks.1.proj_residual": {"pe": 96},
            "blocks.2.fc2_residual": {"pe": 4}, "blocks.3.proj_residual": {"pe": 3}}
    (tmp_path / "f.json").write_text(__import__("json").dumps(spec))
    assert main(["hls", "--model", str(model), "--folding", str(tmp_path / "f.json"), "--out", str(tmp_path / "p")]) == 0
    capsys.readouterr()
    top = (tmp_path / "p" / "src" / "top.cpp").read_text()
    assert "static void block_1(gsb::stream<gsb::vec<int32_t, 12>>& x_in, gsb::stream<int32_t>& x_out)" in top
    assert "void gsb_top(gsb::stream<gsb::vec<int8_t, 16>>& image," in top   # the image port: 16 pixels per word
    rc, out, err = csim_cli(capsys, tmp_path / "p", "--images", "2")
    assert rc == 0, out + err
    assert re.search(r"PASS: 79 traced tensors bit-exact on 2 images; C-sim iterations equal the cycle model for all "
                     r"26 layers and the stage model for all 55 other processes", out), out
    compile_synthesis_view(load_project(tmp_path / "p"))
