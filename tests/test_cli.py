"""The gsbsim command line: run / info / vectors on a random model, and one-line errors."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gsbsim.hw import costs, folding

from gsbsim.engine import golden
from gsbsim.cli.app import main
from gsbsim.format.model_file import save_model
from gsbsim.format.random_model import random_images, random_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A random digits-shaped model (8x8x1, 10 classes, G = 3) and a uint8 image array."""
    d = tmp_path_factory.mktemp("cli")
    model = random_model(np.random.default_rng(7), embed_dim=24, depth=2, num_heads=2, mlp_hidden=48)
    path = d / "m.npz"
    save_model(path, model.header, model.arrays)
    x = random_images(np.random.default_rng(8), model, 6)
    npy = d / "imgs.npy"
    np.save(npy, (x.astype(np.int16) + 128).astype(np.uint8))
    return {"dir": d, "model": str(path), "npy": str(npy), "int8": x, "obj": model}


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, out: str, err: str, *fragments: str) -> None:
    assert rc == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gsbsim: error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


# ============================================================================ run
def test_run_json_on_digits_matches_the_golden_path(files, capsys):
    rc, out, _ = run_cli(capsys, "run", "--model", files["model"], "--images", 40, "--json",
                         "--pe", 4, "--simd", 8)
    assert rc == 0
    d = json.loads(out)
    for key in ("bops", "flops", "ops", "weight_bits", "model_bytes", "cycles", "accuracy",
                "elementwise", "resources", "predictions"):
        assert key in d
    # the same 40 images through the golden path directly
    from reference.data import build_datasets, dataset_arrays
    images, labels = dataset_arrays(build_datasets("digits", augment=False).test)
    logits, _ = golden.forward(files["obj"], (images[:40].astype(np.int16) - 128).astype(np.int8))
    pred = np.argmax(logits, axis=1)
    assert d["predictions"] == pred.tolist()
    assert d["correct"] == int((pred == labels[:40]).sum()) and d["images"] == 40
    assert d["accuracy"] == d["correct"] / 40
    header = files["obj"].header
    r = costs.count(header)
    assert (d["bops"], d["flops"], d["ops"], d["model_bytes"]) == (r.bops, r.flops, r.ops, r.model_bytes)
    assert d["weight_bits"]["binary"] == 2 * (3 * 24 * 24 + 24 * 24 + 2 * 48 * 24)
    c = folding.cycle_report(header, folding.global_folding(header, 4, 8))
    assert d["cycles"]["per_layer"] == c.per_layer and d["cycles"]["total"] == c.latency
    assert d["cycles"]["ii"] == c.ii and d["cycles"]["fps"] == pytest.approx(200e6 / c.ii)
    assert d["resources"]["label"].startswith("estimate: FINN-R model for the MVAUs")


def test_run_npy_fast_and_golden_agree(files, capsys):
    logits, _ = golden.forward(files["obj"], files["int8"])
    want = np.argmax(logits, axis=1).tolist()
    for engine in ("fast", "golden"):
        rc, out, _ = run_cli(capsys, "run", "--model", files["model"], "--data", files["npy"],
                             "--engine", engine, "--json")
        d = json.loads(out)
        assert rc == 0 and d["predictions"] == want and "accuracy" not in d and d["images"] == 6


def test_run_count_ops_text_folding_file_and_plot(files, capsys):
    fold = files["dir"] / "fold.json"
    fold.write_text(json.dumps({"blocks.*.av": {"pe": 4, "simd": 9}}))
    png = files["dir"] / "c.png"
    rc, out, _ = run_cli(capsys, "run", "--model", files["model"], "--data", files["npy"],
                         "--count-ops", "--folding", fold, "--clock-mhz", 100, "--plot", png)
    assert rc == 0
    assert "predictions: 6" in out
    total = [l for l in out.splitlines() if l.startswith("total")][0].split()
    r = costs.count(files["obj"].header)
    c = folding.cycle_report(files["obj"].header, folding.load_folding(files["obj"].header, fold))
    assert int(total[1]) == r.bops and int(total[2]) == r.flops and int(total[4]) == c.latency
    av = [l for l in out.splitlines() if l.startswith("blocks.1.av")][0].split()
    assert av[-3] == str(18 * 2 * 9 * (12 // 4) * 2)  # vectors * H*G^2 * MH/PE * ceil(18/9)
    assert "estimate: FINN-R model for the MVAUs" in out and "at 100 MHz" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in os.listdir(files["dir"]) if p.startswith(".gsbsim-")]


# ============================================================================ info
def test_info_text_and_json(files, capsys):
    rc, out, _ = run_cli(capsys, "info", "--model", files["model"])
    assert rc == 0
    assert "accumulator widths" in out and "att_bias" in out and "none (activation x activation)" in out
    rc, out, _ = run_cli(capsys, "info", "--model", files["model"], "--json")
    d = json.loads(out)
    # §10: +-1 K=24 -> 6 bits, fc2 K=48 -> 7, score d=12 -> 5, A.V N=18 -> 6,
    # patch 128*127*4 -> 17, head 128*128*24 -> 20
    assert d["accumulator_bits"] == {"patch": 17, "qkv": 6, "qk": 5, "av": 6, "proj": 6, "fc1": 6,
                                     "fc2": 7, "head": 20}
    assert d["precision"]["fc2"]["operands"] == "{0,1}×±1" and d["precision"]["head"]["precision"] == "8-bit"
    assert d["architecture"]["groups"] == 3


# ============================================================================ vectors
def test_vectors_write_every_trace_tensor(files, capsys, tmp_path):
    out_dir = tmp_path / "new"  # created by the command
    rc, out, _ = run_cli(capsys, "vectors", "--model", files["model"], "--out", out_dir,
                         "--data", files["npy"], "--images", 3)
    assert rc == 0
    vec = out_dir / "vectors"
    manifest = json.loads((vec / "manifest.json").read_text())
    _, trace = golden.forward(files["obj"], files["int8"][:3], trace=True)
    assert [t["name"] for t in manifest["tensors"]] == list(trace)
    assert manifest["model_sha256"] == hashlib.sha256(open(files["model"], "rb").read()).hexdigest()
    for t in manifest["tensors"]:
        a = np.load(vec / t["file"], allow_pickle=False)
        assert a.dtype == np.dtype(t["dtype"]) and list(a.shape) == t["shape"]
        np.testing.assert_array_equal(a, trace[t["name"]])
    # every cost-model layer's accumulator tensor is traced, with MH outputs per vector and repeat
    # (A.V's plane pairs sum into one context element)
    for layer in costs.layers(files["obj"].header):
        a = trace[layer.trace_output]
        assert a.size // 3 == layer.vectors * layer.repeats * layer.mh // layer.plane_pairs
    assert sorted(os.listdir(out_dir)) == ["vectors"]  # no temp folder left behind
    # a second run replaces the folder
    rc, _, _ = run_cli(capsys, "vectors", "--model", files["model"], "--out", out_dir,
                       "--data", files["npy"], "--images", 1)
    assert rc == 0 and json.loads((vec / "manifest.json").read_text())["images"] == 1
    assert sorted(os.listdir(out_dir)) == ["vectors"]


# ============================================================================ errors
def test_corrupt_model_file(files, capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(open(files["model"], "rb").read()[:300])
    for cmd in (["run", "--model", bad, "--data", files["npy"]], ["info", "--model", bad],
                ["vectors", "--model", bad, "--out", tmp_path]):
        assert_one_line_error(*run_cli(capsys, *cmd), str(bad))
    assert sorted(os.listdir(tmp_path)) == ["bad.npz"]
    assert_one_line_error(*run_cli(capsys, "info", "--model", tmp_path / "none.npz"), "not found")


def test_wrong_size_images(files, capsys, tmp_path):
    npy = tmp_path / "big.npy"
    np.save(npy, np.zeros((2, 1, 9, 9), np.uint8))
    assert_one_line_error(*run_cli(capsys, "run", "--model", files["model"], "--data", npy),
                          "(1, 9, 9)", "(1, 8, 8)")
    np.save(npy, np.zeros((2, 1, 8, 8), np.float32))
    assert_one_line_error(*run_cli(capsys, "run", "--model", files["model"], "--data", npy), "uint8")
    assert_one_line_error(*run_cli(capsys, "vectors", "--model", files["model"], "--out",
                                   tmp_path / "out", "--data", npy), "uint8")
    assert not (tmp_path / "out").exists()


def test_bad_folding_and_arguments(files, capsys, tmp_path):
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({"blocks.0.qkv": {"pe": 5, "simd": 8}}))
    png = tmp_path / "p.png"
    assert_one_line_error(*run_cli(capsys, "run", "--model", files["model"], "--data", files["npy"],
                                   "--folding", fold, "--plot", png), str(fold), "pe 5 does not divide MH = 72")
    assert not png.exists()
    fold.write_text(json.dumps({"blocks.9.qkv": {"pe": 1}}))
    assert_one_line_error(*run_cli(capsys, "run", "--model", files["model"], "--folding", fold),
                          "unknown layer 'blocks.9.qkv'")
    assert_one_line_error(*run_cli(capsys, "run", "--model", files["model"], "--folding", fold,
                                   "--pe", 2), "mutually exclusive")
    assert_one_line_error(*run_cli(capsys, "run", "--model", files["model"], "--data", "cifar"),
                          "unknown data 'cifar'")
    assert_one_line_error(*run_cli(capsys, "run", "--model", files["model"], "--pe", "x"), "--pe")
    assert_one_line_error(*run_cli(capsys, "run", "--model", files["model"], "--pe", 0), "--pe")
    assert_one_line_error(*run_cli(capsys, "run", "--model", files["model"], "--clock-mhz", -1),
                          "--clock-mhz")
    assert_one_line_error(*run_cli(capsys, "bogus"), "invalid choice")


def test_help_and_python_m_entry_point(files):
    p = subprocess.run([sys.executable, "-m", "gsbsim", "run", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "examples:" in p.stdout and "--folding" in p.stdout
    p = subprocess.run([sys.executable, "-m", "gsbsim", "info", "--model", files["npy"]], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and p.stderr.startswith("gsbsim: error: ")
