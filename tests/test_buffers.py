"""Memory outside the MVAU weights (gsbsim/hw/buffers.py): an estimate from the declared arrays."""
from __future__ import annotations

import json


from gsbsim.cli.app import main
from gsbsim.hw import folding
from gsbsim.hw.buffers import buffers
from gsbsim.hw.folding import Fold
from tests.support.shapes import DIGITS, shaped_file



def test_arrays_bits_and_bram18_by_hand():
    f = folding.global_folding(DIGITS, 4, 32)
    b = {x.name: x for x in buffers(DIGITS, f) if x.name.startswith("blocks.0.")}
    # vq: H*N*d int64 = 3*6*32*64 bits, a PIPO (x 2); 576 x 64 -> 1024 x 18 mode: 4 per copy
    assert (b["blocks.0.vq"].elements, b["blocks.0.vq"].bits) == (576, 64)
    assert b["blocks.0.vq"].total_bits == 2 * 576 * 64 and b["blocks.0.vq"].bram18 == 2 * 4
    # att: H*N*N int64 = 108 x 64 bits: 6,912 bits, 512 x 36 mode: 2 per copy
    assert b["blocks.0.att"].bram18 == 2 * 2
    # the residual skips are FIFOs: gsbsim/hw/fifo_memory.py counts them (tests/test_stage_resources.py)
    assert not [k for k in b if "skip" in k]
    # small arrays (<= 1,024 bits) stay in registers
    assert b["blocks.0.softmax.row"].total_bits == 6 * 32 and b["blocks.0.softmax.row"].bram18 == 0


def test_a_stage_pe_splits_its_arrays_into_banks():
    f = folding.global_folding(DIGITS, 4, 32)
    f["blocks.0.value_planes"] = Fold(8, 1)
    vq = {x.name: x for x in buffers(DIGITS, f)}["blocks.0.vq"]
    assert vq.banks == 8 and vq.bram18 == 2 * 8 * 2   # 72 x 64 bits per bank: 512 x 36 mode, 2 each


def test_json_and_text_report_the_buffers(tmp_path, capsys):
    path = shaped_file(tmp_path / "d.npz", 5)
    assert main(["run", "--model", str(path), "--pe", "4", "--simd", "32", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)["resources"]["buffers"]
    want = buffers(DIGITS, folding.global_folding(DIGITS, 4, 32))
    assert d["bram18"] == sum(b.bram18 for b in want) and d["bits"] == sum(b.total_bits for b in want)
    assert "estimate" in d["label"] and d["per_buffer"]["blocks.3.att"]["kind"] == "pipo"
    assert main(["run", "--model", str(path), "--pe", "4", "--simd", "32", "--count-ops"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("  buffers outside weights"))
    assert line.split()[3:5] == [str(d["bram18"]), "BRAM18"] and f"({d['bits']} bits" in line
