"""FIFO depths a generated project emits, minimal or sized (gsbsim/hw/fifo_plan.py), without a compiler.

* ``gsbsim hls --size-fifos`` writes every FIFO at max(the cycle simulation's sizing, the
  deadlock-free minimum), in the STREAM pragma and GSB_DEPTH alike, and project.json records the
  depths and how they were chosen; without the flag the depths are the minimum.
* ``gsbsim cycles --project DIR`` simulates what was emitted: the sized project reaches the
  analytic bound exactly, the minimal one does not (gsb and the act_unit methods); its depths
  are the ones ``gsbsim cycles --size-fifos`` reports for the same model and folding (one choice).
* Bad input (a flag without --size-fifos, a project record that does not fit its dataflow,
  --project beside a folding) is one line and exit 2.
The C-simulation of a sized project is in tests/test_hls_dataflow.py (hls tier).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from gsbsim.cli.app import main
from gsbsim.format.model_file import save_model
from gsbsim.format.random_model import random_model
from gsbsim.hlsgen.project import load_project
from gsbsim.hw import fifo_plan
from gsbsim.hw.folding import global_folding
from gsbsim.hw.process_network import build_network

METHODS = ("gsb", "reactnet", "didb")
FOLD = ("--pe", "2", "--simd", "8")
_DECL = re.compile(r'gsb::stream<.+> \w+\("([^"]+)"\);.*\n#pragma HLS STREAM variable=\w+ depth=(\d+)\n'
                   r'    GSB_DEPTH\(\w+, (\d+)\)')


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> dict[str, Path]:
    """Per method a small two-block model, its project at the minimal and at the sized depths."""
    root = tmp_path_factory.mktemp("fifo_sizing")
    out = {}
    for m in METHODS:
        model = random_model(np.random.default_rng(700 + len(m)), method=m, depth=2, embed_dim=24, num_heads=3)
        save_model(root / f"{m}.npz", model.header, model.arrays)
        out[m] = root / f"{m}.npz"
        for kind, extra in (("minimal", ()), ("sized", ("--size-fifos",))):
            assert main(["hls", "--model", str(out[m]), "--out", str(root / f"{m}-{kind}"), *FOLD, *extra]) == 0
            out[f"{m}-{kind}"] = root / f"{m}-{kind}"
    return out


def emitted(project: Path) -> dict[str, int]:
    """Every FIFO of the generated top with its depth; the pragma and GSB_DEPTH must agree."""
    decls = _DECL.findall((project / "src" / "top.cpp").read_text())
    assert decls and all(p == c for _, p, c in decls)
    return {name: int(p) for name, p, _ in decls}


def cycles_json(capsys, *argv: str) -> dict:
    assert main(["cycles", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("method", METHODS)
def test_project_records_the_emitted_depths(projects, method: str) -> None:
    project = load_project(projects[f"{method}-minimal"])
    net = build_network(project.header, project.folding)
    low = fifo_plan.minimal(net).depths
    for kind in ("minimal", "sized"):
        rec = json.loads((projects[f"{method}-{kind}"] / "project.json").read_text())["fifos"]
        assert rec["how"] == kind and rec["depths"] == emitted(projects[f"{method}-{kind}"])
        assert rec["words"] == sum(rec["depths"].values()) and rec["minimal_words"] == sum(low.values())
        assert list(rec["depths"]) == list(low)       # every FIFO of the dataflow, none else
        assert rec["images"] == (fifo_plan.SIZING_IMAGES if kind == "sized" else None)
    sized = emitted(projects[f"{method}-sized"])
    assert emitted(projects[f"{method}-minimal"]) == low
    assert all(sized[k] >= v for k, v in low.items()) and sum(sized.values()) > sum(low.values())
    skip = "blocks.0.x_skip1"
    assert sized[skip] >= low[skip] == 18 * 24               # never below the deadlock-free N*E
    top = (projects[f"{method}-sized"] / "src" / "top.cpp").read_text()
    assert "// sized by cycle simulation; deadlock-free minimum 2" in top


@pytest.mark.parametrize("method", METHODS)
def test_sized_project_reaches_the_bound_and_the_minimal_one_does_not(projects, capsys, method: str) -> None:
    mini = cycles_json(capsys, "--project", str(projects[f"{method}-minimal"]), "--images", "6")
    sized = cycles_json(capsys, "--project", str(projects[f"{method}-sized"]), "--images", "6")
    bound = sized["emitted"]["analytic_bound"]["ii"]
    assert mini["emitted"]["analytic_bound"]["ii"] == bound
    assert sized["emitted"]["ii"] == bound and set(sized["emitted"]["intervals"]) == {bound}
    assert mini["emitted"]["ii"] > bound
    assert sized["emitted"]["latency"] < mini["emitted"]["latency"]
    assert sized["network"]["fifos"] == emitted(projects[f"{method}-sized"])     # it simulated what was emitted
    assert (sized["fifo_depths"]["how"], mini["fifo_depths"]["how"]) == ("sized", "minimal")
    # one choice: what `cycles --size-fifos` sizes for the model is what `hls --size-fifos` emitted,
    # and `cycles --model` simulates the minimal project exactly
    by_model = cycles_json(capsys, "--model", str(projects[method]), *FOLD, "--size-fifos", "--images", "4")
    assert by_model["sized"]["depths"] == sized["network"]["fifos"]
    assert by_model["emitted"]["completions"] == cycles_json(
        capsys, "--project", str(projects[f"{method}-minimal"]))["emitted"]["completions"]


def test_cycles_report_names_the_depths(projects, capsys) -> None:
    assert main(["cycles", "--project", str(projects["gsb-sized"])]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"FIFO depths: sized by cycle simulation over 4 images, each at least its deadlock-free "
                        r"minimum: [\d,]+ words \(minimum 978\)", out[1]), out
    assert main(["cycles", "--project", str(projects["gsb-minimal"])]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "FIFO depths: the deadlock-free minimum, 978 words"


def test_sizing_images_are_recorded(projects, tmp_path, capsys) -> None:
    out = tmp_path / "p"
    assert main(["hls", "--model", str(projects["gsb"]), "--out", str(out), *FOLD, "--size-fifos",
                 "--sizing-images", "2"]) == 0
    assert "FIFO depths: sized by cycle simulation over 2 images in " in capsys.readouterr().out
    rec = load_project(out).fifos
    assert rec["how"] == "sized" and rec["images"] == 2 and rec["depths"] == emitted(out)


def test_project_without_a_record_is_simulated_at_the_minimum(projects, tmp_path, capsys) -> None:
    """A project generated before project.json recorded its FIFOs emitted the minimum."""
    old = tmp_path / "old"
    shutil.copytree(projects["gsb-minimal"], old)
    pj = old / "project.json"
    d = json.loads(pj.read_text())
    del d["fifos"]
    pj.write_text(json.dumps(d))
    a = cycles_json(capsys, "--project", str(old))
    b = cycles_json(capsys, "--project", str(projects["gsb-minimal"]))
    assert a["fifo_depths"]["how"] == "minimal" and a["emitted"]["completions"] == b["emitted"]["completions"]


def test_from_json_refuses_a_record_that_does_not_fit() -> None:
    h = random_model(np.random.default_rng(1), depth=1, embed_dim=24, num_heads=3).header
    net = build_network(h, global_folding(h, 2, 8))
    rec = fifo_plan.sized(net, 2).to_json()
    assert fifo_plan.from_json(rec, net).depths == rec["depths"]
    for change, message in [
        (lambda r: r["depths"].update({"blocks.9.x_skip1": 4}), "no FIFO named blocks.9.x_skip1"),
        (lambda r: r["depths"].pop("blocks.0.x_skip2"), "FIFO blocks.0.x_skip2 missing"),
        (lambda r: r["depths"].update({"blocks.0.x_ln1": 0}), "FIFO blocks.0.x_ln1: depth 0 is not an integer >= 1"),
        (lambda r: r["depths"].update({"blocks.0.x_ln1": 2.5}), "depth 2.5"),
        (lambda r: r.update(how="guessed"), "'how' (minimal or sized)"),
        (lambda r: r.update(images=None), "'images' of a sized record"),
    ]:
        bad = json.loads(json.dumps(rec))
        change(bad)
        with pytest.raises(ValueError, match=re.escape(message)):
            fifo_plan.from_json(bad, net)
    with pytest.raises(ValueError, match="at least 1 image"):
        fifo_plan.sized(net, 0)


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("gsbsim: error: "), err
    return err.strip()


def test_bad_input_is_one_line(projects, tmp_path, capsys) -> None:
    m, p = str(projects["gsb"]), str(projects["gsb-sized"])
    out = tmp_path / "never"
    assert "--sizing-images needs --size-fifos" in _one_line_error(
        capsys, ["hls", "--model", m, "--out", str(out), "--sizing-images", "3"])
    assert "--sizing-images: must be >= 1, got 0" in _one_line_error(
        capsys, ["hls", "--model", m, "--out", str(out), "--size-fifos", "--sizing-images", "0"])
    bad_fold = tmp_path / "fold.json"
    bad_fold.write_text(json.dumps({"blocks.0.qkv": {"pe": 5, "simd": 8}}))
    assert "blocks.0.qkv" in _one_line_error(
        capsys, ["hls", "--model", m, "--out", str(out), "--size-fifos", "--folding", str(bad_fold)])
    assert not out.exists()
    assert "give one of --model" in _one_line_error(capsys, ["cycles", "--model", m, "--project", p])
    assert "--project takes the folding from project.json" in _one_line_error(
        capsys, ["cycles", "--project", p, "--pe", "4"])
    assert "not a gsbsim HLS project" in _one_line_error(capsys, ["cycles", "--project", str(tmp_path)])
    # a project.json whose FIFO record does not fit its own dataflow (a planted edit)
    edited = tmp_path / "edited"
    shutil.copytree(p, edited)
    pj = edited / "project.json"
    d = json.loads(pj.read_text())
    d["fifos"]["depths"]["blocks.0.x_skip1"] = 0
    pj.write_text(json.dumps(d))
    assert _one_line_error(capsys, ["cycles", "--project", str(edited)]) == (
        f"gsbsim: error: {pj}: fifos: FIFO blocks.0.x_skip1: depth 0 is not an integer >= 1")
    d["fifos"]["depths"]["blocks.0.x_skip1"] = 432
    d["folding"]["blocks.0.fc1"]["pe"] = 5        # a folding the FIFOs were not emitted for
    pj.write_text(json.dumps(d))
    assert _one_line_error(capsys, ["cycles", "--project", str(edited)]) == (
        f"gsbsim: error: {pj}: folding: PE 5 does not divide MH 48")
