"""The process network of a generated dataflow and its cycle-level simulation (gsbsim/hw).

* The network matches the generated top.cpp: every stream with its depth, every process with
  its PIPO predecessors (a planted difference is caught).
* Each process's schedule counts, per image, the iterations of gsbsim's analytic counts
  (cycle_report for the matrix layers, stage_iterations for the rest), and every FIFO's words
  written equal its words read.
* The simulation: the analytic bound (the largest per-process iteration count) is at most the
  simulated II; with FIFOs sized by simulation (FINN's method) the II equals the bound; at the
  emitted depths the gap is what docs/hls.md §5 states (digits shape, PE 4 / SIMD 32: 4.00x).
  Jumping over FIFO-free stretches gives the same result as stepping every cycle.
* Depth 1 everywhere deadlocks, naming the attention skip; a planted wrong depth is caught.
* ``gsbsim cycles``: the report, --json, exit 1 on a deadlock, one-line errors.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gsbsim.cli.app import main
from gsbsim.format.model_file import save_model
from gsbsim.format.random_model import random_model
from gsbsim.hlsgen import toolchain
from gsbsim.hw.costs import layers
from gsbsim.hw.stages import stage_iterations
from gsbsim.hw.cycle_sim import analytic_bound, simulate, size_fifos
from gsbsim.hw.folding import Fold, cycle_report, global_folding, mvau_cycles
from gsbsim.hw.process_network import (PORTS, IO, Loop, Network, build_network, check_network, iterations)
from tests.support.shapes import digits_model, shaped_file

METHODS = ("gsb", "reactnet", "didb")


def small(method: str, depth: int = 1):
    return random_model(np.random.default_rng(700 + len(method)), method=method, depth=depth, embed_dim=24,
                        num_heads=3)


def digits_shape():
    """The digits preset's shape: what `python -m reference.export --random` writes, without the
    minutes its verification takes."""
    return digits_model(0)


# ---------------------------------------------------------------------------- the network vs the generated top
_STREAM = re.compile(r'gsb::stream<.+> (\w+)\("([^"]+)"\);.*\n#pragma HLS STREAM variable=(\w+) depth=(\d+)\n')
_PROC = re.compile(r'GSB_(?:STAGE|LAYER)_PROC\(df, "([^"]+)", "([^"]*)",')
_REGIONS = re.compile(r"^(embed_stage|block_\d+|head_stage)$")


def top_mismatches(net: Network, top: str) -> list[str]:
    """Where the network and a generated top.cpp differ: streams (name, depth), processes
    (names, as a multiset), and the PIPO predecessors of each process (the network's must
    include the top's `after` and lie within what those imply transitively)."""
    out = []
    top_streams = {name: int(d) for _, name, _, d in _STREAM.findall(top)}
    net_streams = {fi.name: fi.depth for fi in net.fifos if fi.name not in PORTS}
    for name in sorted(set(top_streams) | set(net_streams)):
        if top_streams.get(name) != net_streams.get(name):
            out.append(f"stream {name}: top depth {top_streams.get(name)}, network {net_streams.get(name)}")
    procs = [(n, tuple(a.split())) for n, a in _PROC.findall(top) if not _REGIONS.match(n)]
    top_labels = sorted(n for n, _ in procs)
    net_labels = sorted(p.label for p in net.processes)
    if top_labels != net_labels:
        out.append(f"processes: top {top_labels}, network {net_labels}")
    after = {n: set(a) for n, a in procs}

    def closure(n: str) -> set[str]:
        seen, todo = set(), list(after.get(n, ()))
        while todo:
            q = todo.pop()
            if q not in seen:
                seen.add(q)
                todo += after.get(q, ())
        return seen

    for p in net.processes:
        mine = set(net.after(p.name))
        if not after.get(p.label, set()) <= mine or not mine <= closure(p.label):
            out.append(f"process {p.name}: top after {sorted(after.get(p.label, ()))}, network {sorted(mine)}")
    return out


@pytest.fixture(scope="module")
def tops(tmp_path_factory) -> dict[str, tuple[dict, str]]:
    """The generated top.cpp of a small model of each method (PE 2 / SIMD 8) and its header."""
    try:
        toolchain.find_ap_types()
    except toolchain.HlsEnvError as e:  # pragma: no cover - the project's setup installs it
        pytest.skip(str(e))
    root = tmp_path_factory.mktemp("cycle_tops")
    out = {}
    for method in METHODS:
        m = small(method, depth=2)
        save_model(root / f"{method}.npz", m.header, m.arrays)
        assert main(["hls", "--model", str(root / f"{method}.npz"), "--out", str(root / method),
                     "--pe", "2", "--simd", "8"]) == 0
        out[method] = (dict(m.header), (root / method / "src" / "top.cpp").read_text())
    return out


@pytest.mark.parametrize("method", METHODS)
def test_network_matches_the_generated_top(tops, method: str) -> None:
    header, top = tops[method]
    net = build_network(header, global_folding(header, 2, 8))
    assert len(_STREAM.findall(top)) > 20
    assert top_mismatches(net, top) == []
    assert check_network(net) == []


def test_the_top_comparison_catches_a_planted_difference(tops) -> None:
    header, top = tops["gsb"]
    net = build_network(header, global_folding(header, 2, 8))
    deeper = top.replace("variable=x_skip2 depth=24", "variable=x_skip2 depth=25", 1)
    assert deeper != top
    assert any(m.startswith("stream blocks.0.x_skip2: top depth 25, network 24") for m in top_mismatches(net, deeper))
    no_pipo = top.replace('"blocks.1.qk", "blocks.1.qkv_split"', '"blocks.1.qk", ""', 1)
    assert no_pipo != top
    assert any(m.startswith("process blocks.1.qk:") for m in top_mismatches(net, no_pipo))
    dropped = replace(net, fifos=[fi for fi in net.fifos if fi.name != "head.acc"])
    assert "stream head.acc: top depth 2, network None" in top_mismatches(dropped, top)


# the residual stream's writers at different lanes (E 24 and 96): words converted inside the
# forks' readers, gcd(lanes, layer PE) chunks in the residual adds and the patch embedding
LANES = {"load_image": Fold(8, 1), "embed": Fold(4, 1), "blocks.0.proj_residual": Fold(6, 1), "blocks.0.fc2_residual": Fold(3, 1),
         "blocks.1.proj_residual": Fold(8, 1), "blocks.1.fc2_residual": Fold(24, 1)}


def _lanes_folding(header) -> dict[str, Fold]:
    return {**global_folding(header, 4, 11), **LANES, "head": Fold(2, 5)}


def test_lanes_network_matches_its_generated_top(tmp_path) -> None:
    try:
        toolchain.find_ap_types()
    except toolchain.HlsEnvError as e:  # pragma: no cover - the project's setup installs it
        pytest.skip(str(e))
    for method in ("gsb", "reactnet"):
        m = small(method, depth=2)
        fo = _lanes_folding(m.header)
        save_model(tmp_path / f"{method}.npz", m.header, m.arrays)
        names = {l.name for l in layers(m.header)}
        (tmp_path / "f.json").write_text(json.dumps({k: {"pe": f.pe, "simd": f.simd} if k in names else {"pe": f.pe}
                                                     for k, f in fo.items() if k in names or f.pe > 1}))
        assert main(["hls", "--model", str(tmp_path / f"{method}.npz"), "--out", str(tmp_path / method),
                     "--folding", str(tmp_path / "f.json")]) == 0
        top = (tmp_path / method / "src" / "top.cpp").read_text()
        assert "gsb::stream<gsb::vec<int32_t, 6>> x_mid(\"blocks.0.resid1\");" in top
        net = build_network(m.header, fo)
        assert top_mismatches(net, top) == [] and check_network(net) == []
        # the skips hold N*E and E values, in words of the lanes of their writer (embed 4, resid1 6, ...)
        assert {fi.name: fi.depth for fi in net.fifos if "skip" in fi.name} == {
            "blocks.0.x_skip1": 18 * 24 // 4, "blocks.0.x_skip2": 24 // 6,
            "blocks.1.x_skip1": 18 * 24 // 3, "blocks.1.x_skip2": 24 // 8}


# ---------------------------------------------------------------------------- schedules vs the analytic counts
def _foldings(header) -> list[dict[str, Fold]]:
    odd = {k: Fold(f.pe, max(1, f.simd - 3)) for k, f in global_folding(header, 4, 11).items()}
    return [global_folding(header, 1, 1), global_folding(header, 4, 32), odd, _lanes_folding(header)]


@pytest.mark.parametrize("method", METHODS)
def test_iterations_equal_the_analytic_counts(method: str) -> None:
    for model in (small(method, 2), digits_shape() if method == "gsb" else small(method, 1)):
        h = model.header
        for fo in _foldings(h):
            net = build_network(h, fo)
            want = {**cycle_report(h, fo).per_layer, **stage_iterations(h, fo)}
            got: dict[str, int] = {}
            for p in net.processes:
                got[p.label] = got.get(p.label, 0) + iterations(p.schedule)
            assert got == want
            assert check_network(net) == []


def test_qk_counts_its_query_copy() -> None:
    """attention_qk copies each head's query rows (N * ceil(d/SIMD) words) into its input FIFO before
    the MVAU reads them: the cycle model counts that copy, so its bound is the simulation's."""
    h = small("gsb").header
    fo = global_folding(h, 2, 8)
    n, heads, d = int(h["num_tokens"]), int(h["num_heads"]), int(h["head_dim"])
    sf = -(-d // fo["blocks.0.qk"].simd)
    want = heads * n * sf + mvau_cycles(n, d, fo["blocks.0.qk"].pe, fo["blocks.0.qk"].simd, n, heads)
    assert cycle_report(h, fo).per_layer["blocks.0.qk"] == want
    net = build_network(h, fo)
    assert iterations(next(p for p in net.processes if p.name == "blocks.0.qk").schedule) == want


def test_check_network_catches_planted_faults() -> None:
    h = small("gsb").header
    net = build_network(h, global_folding(h, 2, 8))
    i = next(k for k, p in enumerate(net.processes) if p.name == "blocks.0.fc1_act")
    p = net.processes[i]
    short = replace(p, schedule=(Loop(iterations(p.schedule) - 1, p.schedule[0].io),))
    bad = replace(net, processes=net.processes[:i] + [short] + net.processes[i + 1:])
    assert any(m.startswith("stream blocks.0.fc1.acc:") and "read" in m for m in check_network(bad))
    orphan = replace(p, schedule=(Loop(4, (IO("nowhere", False),)),) + p.schedule)
    bad = build_network(h, global_folding(h, 2, 8))
    bad.processes[i] = orphan
    bad.fifos.append(replace(bad.fifos[0], name="nowhere", producer=None, consumer=p.name, depth=2, words=0))
    assert "stream nowhere: producer None, consumer blocks.0.fc1_act" in check_network(bad)


# ---------------------------------------------------------------------------- the simulation
@pytest.mark.parametrize("method", METHODS)
def test_bound_at_most_ii_and_sized_fifos_reach_it(method: str) -> None:
    h = small(method, 2).header
    net = build_network(h, global_folding(h, 2, 8))
    r = simulate(net, 6)
    assert not r.deadlock and r.ii >= r.bound["ii"] == analytic_bound(net)["ii"]
    depths, _ = size_fifos(net, 4)
    sized = simulate(net, 6, depths=depths)
    assert sized.ii == r.bound["ii"] and sized.latency <= r.latency
    # every FIFO sized at least as deep as emitted, never shallower
    assert all(depths[fi.name] >= fi.depth for fi in net.fifos if fi.name not in PORTS)


@pytest.mark.parametrize("method", METHODS)
def test_lanes_folding_bound_at_most_ii_and_sized_fifos_reach_it(method: str) -> None:
    h = small(method, 2).header
    net = build_network(h, _lanes_folding(h))
    r = simulate(net, 6)
    assert not r.deadlock and r.ii >= r.bound["ii"] == cycle_report(h, _lanes_folding(h)).ii
    depths, _ = size_fifos(net, 4)
    assert simulate(net, 6, depths=depths).ii == r.bound["ii"]


def test_digits_shape_at_pe4_simd32() -> None:
    """The figures of docs/hls.md §5: bound 1,728 (fc1), II 5,979 at the emitted depths (3.46x),
    1,728 with FIFOs sized by simulation; latency 24,528 and 19,456 cycles."""
    h = digits_shape().header
    net = build_network(h, global_folding(h, 4, 32))
    r = simulate(net, 8)
    assert r.bound == {"ii": 1728, "process": "blocks.0.fc1"}
    assert cycle_report(h, global_folding(h, 4, 32)).ii == 1728     # gsbsim's analytic cycle model agrees
    assert (r.ii, r.latency) == (5979, 24528) and set(r.intervals) == {5979}
    depths, _ = size_fifos(net, 8)
    sized = simulate(net, 8, depths=depths)
    assert (sized.ii, sized.latency) == (1728, 19456)
    # what throttles the emitted design: the attention skip holds one image (N*E) ...
    d = {f"blocks.{i}.x_skip1": 2 * 6 * 96 for i in range(4)}
    assert simulate(net, 8, depths=d).ii < r.ii
    # ... and the MLP's MVAU inputs hold two words where a vector has SF (fc2: 12)
    d.update({f"blocks.{i}.{s}": 2 * 96 if s == "x_skip2" else 12 for i in range(4) for s in ("fc1.bits", "x_skip2")})
    assert simulate(net, 8, depths=d).ii < simulate(net, 8, depths={k: v for k, v in d.items() if "skip" in k}).ii


@pytest.mark.parametrize("method", METHODS)
def test_jumping_equals_stepping(method: str) -> None:
    h = small(method, 2).header
    net = build_network(h, global_folding(h, 2, 8))
    for kw in ({}, {"depth_cap": 1}, {"pace": 4000}):
        a, b = simulate(net, 3, jump=True, **kw), simulate(net, 3, jump=False, **kw)
        assert (a.cycles, a.deadlock, a.start, a.finish, a.busy, a.stalls, a.max_occupancy) == \
               (b.cycles, b.deadlock, b.start, b.finish, b.busy, b.stalls, b.max_occupancy)


def test_depth_one_deadlocks_naming_the_attention_skip() -> None:
    h = small("gsb").header
    net = build_network(h, global_folding(h, 2, 8))
    r = simulate(net, 1, depth_cap=1)
    assert r.deadlock[0] == "image 0: DEADLOCK: every process of the dataflow is blocked"
    assert ("  process blocks.0.fork1: gsb::stream 'blocks.0.x_skip1': write to a full stream (depth 1, "
            "0 elements read so far)") in r.deadlock
    writers = [l for l in r.deadlock[1:] if "write to a full stream" in l]
    assert r.deadlock[1:len(writers) + 1] == writers       # writers to full FIFOs first, as the C-sim


def test_the_emitted_skip_depth_is_the_least_that_works() -> None:
    """N*E - 1 deadlocks on the attention skip here, N*E (emitted) passes.  The C-simulation passes
    at N*E - 1 (tests/test_hls_dataflow.py) because its fork writes the LayerNorm copy before it
    blocks on the skip; a pipelined II=1 iteration, as simulated here, stalls as a whole."""
    h = small("gsb").header
    n, e = int(h["num_tokens"]), int(h["embed_dim"])
    net = build_network(h, global_folding(h, 2, 8))
    r = simulate(net, 1, depths={"blocks.0.x_skip1": n * e - 1})
    full = [l for l in r.deadlock if "write to a full stream" in l]
    assert full == [f"  process blocks.0.fork1: gsb::stream 'blocks.0.x_skip1': write to a full stream "
                    f"(depth {n * e - 1}, 0 elements read so far)"]
    assert not simulate(net, 3).deadlock


def test_bad_depth_override_is_an_error() -> None:
    h = small("gsb").header
    net = build_network(h, global_folding(h, 2, 8))
    with pytest.raises(ValueError, match="no FIFO named blocks.9.x_skip1"):
        simulate(net, 2, depths={"blocks.9.x_skip1": 4})
    with pytest.raises(ValueError, match="images must be at least 1"):
        simulate(net, 0)


# ---------------------------------------------------------------------------- gsbsim cycles
@pytest.fixture(scope="module")
def digits_file(tmp_path_factory) -> Path:
    return shaped_file(tmp_path_factory.mktemp("cycles") / "digits.npz", 0)


def test_cycles_cli_report(digits_file: Path, capsys) -> None:
    rc = main(["cycles", "--model", str(digits_file), "--pe", "4", "--simd", "32", "--images", "6", "--size-fifos"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "analytic bound             1,728 cycles per image (largest process: blocks.0.fc1)" in out
    assert "simulated II               5,979 cycles per image = 33,450 frames/s at 200 MHz (3.46 x the bound)" in out
    assert "latency                   24,528 cycles = 122.6 us (image 0, empty pipeline)" in out
    assert re.search(r"simulated II +1,728 cycles per image = 115,741 frames/s at 200 MHz \(1\.00 x the bound\)",
                     out)
    assert "most stalled" in out
    held = out.split("most held back by their consumers (full output FIFO):\n")[1].splitlines()[0]
    assert re.match(r"  \S+ +[\d,]+  .*write \d+", held), out


def test_cycles_cli_json_and_deadlock(digits_file: Path, capsys) -> None:
    assert main(["cycles", "--model", str(digits_file), "--pe", "4", "--simd", "32", "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["emitted"]["ii"] == 5979 and js["emitted"]["analytic_bound"]["ii"] == 1728
    assert js["network"]["fifos"]["blocks.0.x_skip1"] == 576
    rc = main(["cycles", "--model", str(digits_file), "--fifo-depth-cap", "1"])
    out = capsys.readouterr().out
    assert rc == 1 and "FAIL: image 0: DEADLOCK: every process of the dataflow is blocked" in out
    assert "  process blocks.0.fork1: gsb::stream 'blocks.0.x_skip1': write to a full stream (depth 1, " in out


@pytest.mark.parametrize("argv, message", [
    (["--model", "MISSING.npz"], "model file not found: MISSING.npz"),
    (["--images", "1"], "cycles: argument --images: must be >= 2, got 1"),
    (["--fifo-depth-cap", "0"], "cycles: argument --fifo-depth-cap: must be >= 1, got 0"),
    (["--pe", "4", "--folding", "f.json"], "--folding and --pe/--simd are mutually exclusive"),
    (["--pe", "0"], "--pe must be a positive integer, got 0"),
])
def test_cycles_cli_errors(digits_file: Path, capsys, argv, message) -> None:
    args = ["cycles"] + (argv if argv[0] == "--model" else ["--model", str(digits_file)] + argv)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"gsbsim: error: {message}"], err


def test_didb_qk_is_two_processes_each_half_the_layer() -> None:
    """didb's Q.K^T runs as two processes (the Haar bands): the layer's count is their sum (what
    C-sim counts under one name), the II takes one process's share, as the simulation does."""
    h = small("didb", 2).header
    fo = global_folding(h, 2, 8)
    rep = cycle_report(h, fo)
    per = {p.name: iterations(p.schedule) for p in build_network(h, fo).processes}
    assert per["blocks.0.qk.low"] == per["blocks.0.qk.high"] == rep.per_unit["blocks.0.qk"]
    assert rep.per_layer["blocks.0.qk"] == 2 * rep.per_unit["blocks.0.qk"]
    # a folding where qk is the slowest process: the model's II is the simulation's bound
    slow = {k: (Fold(1, 1) if k.endswith(".qk") else v) for k, v in global_folding(h, 64, 64).items()}
    rep = cycle_report(h, slow)
    assert rep.bottleneck.endswith(".qk")
    assert simulate(build_network(h, slow), 2).bound["ii"] == rep.ii == rep.per_layer[rep.bottleneck] // 2
