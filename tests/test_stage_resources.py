"""Resource estimates of every process and FIFO (gsbsim/hw/{primitives,widths,stage_resources,fifo_memory}.py):
formulas on hand-computed cases, totals = sum of parts, monotone in the parallelism."""
from __future__ import annotations

import json
import re

import pytest

from gsbsim.cli.app import main
from gsbsim.hlsgen.blocks import block_cpp
from gsbsim.hw import folding, primitives as pr, resources
from gsbsim.hw.costs import header_for_shape
from gsbsim.hw.fifo_memory import fifo_cost, fifo_memory, stream_width
from gsbsim.hw.fifo_plan import minimal
from gsbsim.hw.folding import Fold
from gsbsim.hw.process_network import PORTS, build_network
from gsbsim.hw.stage_resources import lanes, stage_resources
from gsbsim.hw.stages import stage_iterations
from tests.support.shapes import DIGITS, DIGITS_SHAPE, shaped_file

METHODS = ("gsb", "reactnet", "didb")


def _header(method: str) -> dict:
    groups = DIGITS_SHAPE["groups"] if method == "gsb" else 1
    return header_for_shape(**{**DIGITS_SHAPE, "groups": groups}, method=method)


def _by_name(header, fold):
    return {s.name: s for s in stage_resources(header, fold)}


# ============================================================================ primitives
def test_primitives_by_hand():
    assert pr.add(37) == pr.Cost(lut=37)
    assert pr.mul(32, 32).dsp == 4 and pr.mul(8, 55).dsp == 3 and pr.mul(10, 53).dsp == 2   # 27 x 18 tiles
    assert pr.mul(1, 40) == pr.Cost(lut=40) and pr.mul(27, 18).dsp == 1 and pr.mul(28, 18).dsp == 2
    assert pr.cmul(32, 96) == pr.Cost(lut=32 + 7) and pr.cmul(32, 64) == pr.ZERO   # 96 = 64 + 32: one adder
    assert pr.div(63, 36) == pr.Cost(lut=63 * 37)
    assert pr.mux(10, 2) == pr.Cost(lut=10) and pr.mux(10, 5) == pr.Cost(lut=20)
    assert pr.counter(576) == pr.Cost(lut=20)   # 10-bit counter
    # memory: 96 x 8 bits fits LUTRAM (2 x 64-deep LUTs per bit); 96 x 64 bits: BRAM 512 x 36 mode, 2
    assert pr.memory(96, 8) == pr.Cost(lut=16) and pr.memory(96, 64) == pr.Cost(bram18=2)
    assert pr.memory(96, 64, ports=4) == pr.Cost(bram18=4 * 2)           # 24 x 64 per bank: 1,536 bits
    assert pr.memory(96, 64, ports=32) == pr.Cost(lut=32 * 64)           # 3 x 64 per bank: LUTRAM
    assert pr.table(33, 31, ports=3) == pr.Cost(lut=3 * 31)              # 1,023 bits: one LUTRAM copy per lane
    assert pr.table(4096, 31, ports=3) == pr.Cost(bram18=2 * 8)         # 2 dual-port copies, 4 x 2 BRAM18 each
    assert (pr.Cost(1, 2, 3) + pr.Cost(4, 5, 6)) * 2 == pr.Cost(10, 14, 18)


# ============================================================================ stages
def test_stage_formulas_by_hand_digits_gsb():
    fold = folding.global_folding(DIGITS, 4, 32)
    s = _by_name(DIGITS, fold)
    # ctx_threshold, one proj input word (SIMD 32) per cycle: 32 64-bit compares, proj.in_thr 96 x 64
    # bits in 32 banks of 3 (LUTRAM, 32 x 64 LUT), a counter over N * ceil(E / 32) = 18 (2 x 5 bits)
    assert (s["blocks.0.ctx_threshold"].lut, s["blocks.0.ctx_threshold"].bram18) == (32 * 64 + 32 * 64 + 10, 0)
    one = _by_name(DIGITS, folding.global_folding(DIGITS, 4, 1))["blocks.0.ctx_threshold"]
    assert (one.lut, one.bram18) == (64 + 20, 2)        # SIMD 1: one compare, 2 BRAM18, a counter over 576
    # proj residual: 8-bit acc x 56-bit mult (|mult| <= 2^61 / 96: 3 DSP), 64-bit bias add (|bias| <= 2^61
    # is 63 bits), 32-bit X add, bias 96 x 63 (2 BRAM18)
    r = s["blocks.0.proj_residual"]
    assert (r.lut, r.bram18, r.dsp) == (64 + 32 + 20, 2, 3)
    assert r.parts["requant"] == pr.mul(8, 56) + pr.add(64)
    assert s["blocks.0.fc2_residual"].dsp == 2          # 10-bit acc x 54-bit mult (2^61 / 384)
    # qkv split: 4 lanes (qkv PE) of a 61-bit value add (acc 8 + value 30 -> max(38, 55, 32) + 1 = 56),
    # v.offset 96 x 55 in 4 banks of 24 x 55 (1,320 bits: 512 x 36 mode, 2 BRAM18 each), counter over 468
    q = s["blocks.0.qkv_split"]
    assert (q.lanes, q.word_lanes) == (1, 4)
    assert (q.lut, q.bram18) == (4 * 56 + 2 * 9, 4 * 2)
    # the LayerNorm: stats at 1 lane, 32 compare lanes (the qkv SIMD)
    ln = s["blocks.0.ln1"]
    assert ln.word_lanes == 32 and ln.parts["compare"].dsp == 32 * 4     # thr (32 b) x sigma (31 b) per lane
    assert ln.parts["compare"].lut == 32 * ((32 + 7) + 38 + 38 + 63)   # E*X (E = 64 + 32), - S1, sign, compare
    # forks are wiring: their loop counter only
    assert s["blocks.0.fork1"].parts == {"control": pr.counter(576)}
    # softmax: the reciprocal divider (61 by 37 bits) appears once per block
    assert s["blocks.0.softmax"].parts["reciprocal (divider)"] == pr.div(33 + 31, 31 + 3)


def test_every_process_and_fifo_of_every_method_is_estimated():
    for method in METHODS:
        h = _header(method)
        fold = folding.global_folding(h, 2, 8)
        names = [s.name for s in stage_resources(h, fold)]
        assert set(stage_iterations(h, fold)) <= set(names), method
        assert [n for n in names if n.endswith("av.scale")] == [f"blocks.{i}.av.scale" for i in range(4)]
        net = build_network(h, fold)
        fifos = {f.name for f in fifo_memory(h, fold)}
        assert fifos == {f.name for f in net.fifos if f.name not in PORTS}, method
        assert all(s.lut > 0 for s in stage_resources(h, fold)), method   # at least a counter each
    didb = _by_name(_header("didb"), folding.global_folding(_header("didb"), 2, 8))
    assert "exp (three tables)" in didb["blocks.0.softmax"].parts and didb["blocks.0.hfsc"].word_lanes == 2
    assert didb["blocks.0.diba_fork"].word_lanes == 6   # k_i: av SIMD 8 clipped to MW = N = 6
    assert "k_i popcount" in didb["blocks.0.diba_fork"].parts and "k_i popcount" not in didb["blocks.0.diba"].parts
    assert didb["blocks.0.haar"].bram18 > 0


def _decl_widths(header, fold, method):
    """Bits per word of every block-0 stream as the generated C++ declares it."""
    fifos = minimal(build_network(header, fold))
    cpp = block_cpp(0, method, fifos)
    macro = {"QKV": "qkv", "QK": "qk", "AV": "av", "PROJ": "proj", "FC1": "fc1", "FC2": "fc2"}
    out = {}
    for ctype, name in re.findall(r'gsb::stream<(.+?)> \w+\("([^"]+)"\)', cpp):
        m = re.fullmatch(r"ap_uint<(\w+)_SIMD>", ctype)
        if m:
            out[name] = fold[f"blocks.0.{macro[m.group(1)]}"].simd
            continue
        m = re.fullmatch(r"gsb::vec<int(32|64)_t, (\w+)_PE>", ctype)
        if m:
            out[name] = int(m.group(1)) * fold[f"blocks.0.{macro[m.group(2)]}"].pe
            continue
        assert ctype == "int32_t", ctype
        out[name] = 32
    return out


def test_fifo_widths_are_the_declared_ones():
    for method in METHODS:
        h = _header(method)
        fold = folding.global_folding(h, 4, 16)
        decl = _decl_widths(h, fold, method)
        assert decl and {k: stream_width(k, fold) for k in decl} == decl, method
    fold = folding.global_folding(DIGITS, 4, 16)
    assert stream_width("patch.in", fold) == 8 * 16 and stream_width("logits.words", fold) == 64 * 2


def test_fifo_binding_srl_or_bram_by_hand():
    assert fifo_cost(2, 128) == ("srl", pr.Cost(lut=128))          # depth 2: SRL whatever the width
    assert fifo_cost(32, 32) == ("srl", pr.Cost(lut=32))           # 1,024 bits: SRL
    assert fifo_cost(33, 32) == ("bram", pr.Cost(bram18=1))        # above 1,024 bits: memory
    assert fifo_cost(576, 32) == ("bram", pr.Cost(bram18=2))       # the digits attention skip, N*E x 32
    f = {x.name: x for x in fifo_memory(DIGITS, folding.global_folding(DIGITS, 4, 32))}
    assert (f["blocks.0.x_skip1"].depth, f["blocks.0.x_skip1"].impl, f["blocks.0.x_skip1"].bram18) == (576, "bram", 2)
    assert (f["blocks.0.x_skip2"].depth, f["blocks.0.x_skip2"].bram18) == (96, 1)
    assert (f["blocks.0.qkv.acc"].width, f["blocks.0.qkv.acc"].lut) == (4 * 32, 128)


# ============================================================================ totals, monotony
def test_totals_are_the_sum_of_the_parts():
    for method in METHODS:
        h = _header(method)
        fold = folding.global_folding(h, 4, 32)
        r = resources.estimate(folding.cycle_report(h, fold), h)
        for k in ("lut", "bram18", "dsp"):
            parts = (sum(getattr(x, k) for x in r.layers) + sum(getattr(x, k) for x in r.stages)
                     + sum(getattr(x, k, 0) for x in r.fifos) + (r.buffer_bram18 if k == "bram18" else 0))
            assert getattr(r, k) == parts == sum(p[k] for p in r.parts.values()), (method, k)
        for st in r.stages:
            assert st.cost == sum(st.parts.values(), pr.ZERO)
        d = r.to_dict()
        assert d["lut"] == r.lut and sum(v["lut"] for v in d["per_stage"].values()) == r.parts["stages"]["lut"]
        assert sum(v["bram18"] for v in d["fifos"]["per_fifo"].values()) == r.parts["fifos"]["bram18"]
    # without a header: the MVAUs alone, labelled as before
    c = folding.cycle_report(DIGITS, folding.global_folding(DIGITS, 4, 32))
    alone = resources.estimate(c)
    assert alone.label == resources.LABEL and alone.lut == sum(x.lut for x in alone.layers) and not alone.stages


def _stage_costs(stage: str, pes) -> list[tuple[int, int, int]]:
    out = []
    for pe in pes:
        f = folding.global_folding(DIGITS, 1, 1)
        f[f"blocks.0.{stage}"] = Fold(pe, 1)
        assert lanes(f"blocks.0.{stage}", f) == pe
        s = _by_name(DIGITS, f)[f"blocks.0.{stage}"]
        out.append((s.lut, s.dsp, s.bram18))
    return out


def test_monotone_in_the_parallelism():
    for stage, pes in (("value_planes", (1, 2, 4, 8, 32)), ("attention_planes", (1, 2, 3, 6)),
                       ("softmax", (1, 2, 3, 6))):
        got = _stage_costs(stage, pes)
        # LUT and DSP never fall; BRAM18 may, where the banks of a partitioned memory become
        # small enough for LUTRAM (then its LUTs rise)
        for (lut0, dsp0, bram0), (lut1, dsp1, bram1) in zip(got, got[1:]):
            assert lut1 >= lut0 and dsp1 >= dsp0 and (bram1 >= bram0 or lut1 > lut0), (stage, got)
        assert got[-1][0] > got[0][0], stage
    totals = []
    for pe, simd in ((1, 1), (2, 8), (4, 16), (8, 32), (16, 96)):
        f = folding.global_folding(DIGITS, pe, simd)
        r = resources.estimate(folding.cycle_report(DIGITS, f), DIGITS)
        totals.append((r.lut, r.dsp, r.parts["mvau"]["lut"], r.parts["stages"]["lut"], r.parts["stages"]["dsp"]))
    for a, b in zip(totals, totals[1:]):
        assert all(y >= x for x, y in zip(a, b)), (a, b)
    # a stage that walks a layer's words grows with that layer's PE
    act = _header("reactnet")
    small, big = (_by_name(act, folding.global_folding(act, p, 8))["blocks.0.qkv.act"] for p in (2, 8))
    assert (small.word_lanes, big.word_lanes) == (2, 8) and big.lut > small.lut and big.dsp == 4 * small.dsp


def test_lanes_accessor_reads_a_stage_pe_from_the_folding():
    f = folding.global_folding(DIGITS, 4, 32)
    assert lanes("blocks.0.ln1", f, DIGITS) == 1 and lanes("blocks.0.value_planes", f) == 1
    f["blocks.0.value_planes"] = Fold(8, 1)
    assert lanes("blocks.0.value_planes", f) == 8
    # the residual stream's readers follow their writer's lanes (stages.lane_inputs)
    f["embed"], f["blocks.0.proj_residual"] = Fold(8, 1), Fold(6, 1)
    assert lanes("blocks.0.ln1", f, DIGITS) == 8 and lanes("blocks.0.ln2", f, DIGITS) == 6
    # the residual adds and embed walk gcd(lanes in, the layer's PE 4, lanes out) per cycle
    assert lanes("blocks.0.proj_residual", f, DIGITS) == 2 and lanes("embed", f, DIGITS) == 4
    assert lanes("final_norm", f, DIGITS) == 1            # the last block's fc2_residual: 1 lane
    by = _by_name(DIGITS, f)
    assert (by["blocks.0.ln1"].lanes, by["blocks.0.proj_residual"].lanes, by["embed"].lanes) == (8, 2, 4)
    # the counts the lanes stand for: stage_iterations walks N*E/P elements
    it = stage_iterations(DIGITS, f)
    n, e = DIGITS["num_tokens"], DIGITS["embed_dim"]
    assert it["blocks.0.proj_residual"] == n * e // 2 and it["embed"] == n * e // 4


# ============================================================================ reports
def test_json_text_and_fold_report_every_part(tmp_path, capsys):
    path = shaped_file(tmp_path / "d.npz", 5)
    assert main(["run", "--model", str(path), "--pe", "4", "--simd", "32", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)["resources"]
    want = resources.estimate(folding.cycle_report(DIGITS, folding.global_folding(DIGITS, 4, 32)), DIGITS)
    assert (d["lut"], d["bram18"], d["dsp"]) == (want.lut, want.bram18, want.dsp)
    assert d["per_stage"]["blocks.0.ln1"]["word_lanes"] == 32 and d["fifos"]["per_fifo"]["blocks.0.x_skip1"]["impl"] == "bram"
    assert "estimate" in d["label"] and "estimate" in d["fifos"]["label"]
    assert main(["run", "--model", str(path), "--pe", "4", "--simd", "32", "--count-ops"]) == 0
    out = capsys.readouterr().out
    total = next(l for l in out.splitlines() if l.startswith("  total")).split()
    assert total[1:7] == [str(want.lut), "LUT", str(want.bram18), "BRAM18", str(want.dsp), "DSP"]
    ln = next(l for l in out.splitlines() if l.startswith("blocks.*.ln1")).split()
    assert ln[3:6] == [str(want.stages[[s.name for s in want.stages].index("blocks.3.ln1")].lut), "0",
                       str(want.stages[[s.name for s in want.stages].index("blocks.3.ln1")].dsp)]
    out_json = tmp_path / "fold.json"
    assert main(["fold", "--model", str(path), "--target-fps", "10000", "--out", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "other processes" in text and "FIFOs" in text and "  total" in text


def test_fold_search_counts_every_part():
    from gsbsim.hw.fold_search import search
    r = search(DIGITS, 10_000, 200.0)
    assert r.resources.stages and r.resources.fifos and r.resources.lut > r.resources.parts["mvau"]["lut"]
    with pytest.raises(folding.FoldingError, match=rf"needs {r.resources.lut} LUT"):
        search(DIGITS, 10_000, 200.0, max_lut=r.resources.parts["mvau"]["lut"])


def test_didb_counts_both_qk_units():
    """didb's Q.K^T is two MVAU processes at the layer's folding: twice one unit's estimate."""
    h = _header("didb")
    cyc = folding.cycle_report(h, folding.global_folding(h, 2, 8))
    one = {f.layer.name: resources.lut_estimate(f) for f in cyc.layers}
    r = {x.name: x for x in resources.estimate(cyc, h).layers}
    assert (r["blocks.0.qk"].lut, r["blocks.0.qk"].dsp) == tuple(2 * v for v in one["blocks.0.qk"])
    assert (r["blocks.0.qkv"].lut, r["blocks.0.qkv"].dsp) == one["blocks.0.qkv"]   # one unit elsewhere
