"""FPGA resource estimate per MVAU with FINN-R's analytical model (an estimate, not synthesis).

Formulas (research/fpga_hls.md §1.4, from FINN's MVAU ``lut_estimation`` and
``bram_estimation``), with P = PE, Q = SIMD, W = weight bits, A = input bits:

* LUT = 300 + 1.1 * P * (mult + addertree + acc + thr + comp) + c2, where
  mult = Q * (2 * ceil((W+A)/6) - 1) * (W+A) for LUT multipliers (0 for the 8-bit layers,
  which are assumed to map to DSPs: DSP = P * Q * ceil((W+A)/48)),
  addertree = (W+A) * (2Q - 1),
  acc = min(accumulator bits, ceil(a + log2(1 + 2^-a) + 1)), a = log2(MW) + W + A - 1 - signed(A),
  thr = T * acc * ceil(TMEM/64) and comp = T * acc for T thresholds per channel (TMEM = MH/P),
  c2 = P * Q * W * ceil(WMEM/64) when the weights sit in LUTRAM (WMEM <= 128 words), else 0.
* BRAM18 for the weight memory of depth WMEM = ceil(MW/Q) * MH/P (times the number of weight
  matrices sharing the unit) and width P*Q*W, by the UG573 SDP aspect ratios.

The attention matmuls (qk, av) multiply two activations: they get the compute LUTs but no
weight memory (their K and V operands live in the activation buffers, see costs.py).
Every figure is labelled an estimate (LABEL; LABEL_ALL with the other parts).

Calibration (benchmarks/yosys_popcount.py, docs/costs.md §5.1): for the binary layers
(W = A = 1) the popcount datapath term 1.1*(mult + addertree) is replaced by
POPCOUNT_LUT_SCALE*(mult + addertree), the least-squares fit of yosys 0.23's generic Xilinx
mapping (``synth_xilinx``, not Vivado) of one PE (SIMD XNORs, bit-sum popcount, accumulator)
over SIMD 8-128 and accumulators of 8-24 bits. Everything else (the 300 LUT base, acc, thr,
comp, c2, BRAM, DSP, the 8-bit layers) is FINN-R's, uncalibrated. ``lut_estimate(...,
calibrated=False)`` gives FINN-R's figure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from gsbsim.hw.buffers import buffers as buffer_list
from gsbsim.hw.folding import CycleReport, Fold, FoldedLayer
from gsbsim.hw.primitives import bram18_table
from gsbsim.hw.stage_resources import stage_resources

__all__ = ["LABEL", "LABEL_ALL", "POPCOUNT_LUT_SCALE", "LayerResources", "ResourceReport", "lut_estimate", "bram18_estimate", "estimate",
           "folding_of"]

LABEL = "estimate (FINN-R model, binary popcount datapath calibrated with yosys)"
LABEL_ALL = "estimate: FINN-R model for the MVAUs (popcount datapath calibrated with yosys), docs/costs.md §5 for the other processes, FIFOs and buffers"
LUTRAM_MAX_WMEM = 128  # FINN puts weight memories this shallow into LUTs
# yosys LUT / FINN-R (mult + addertree) for one binary PE: benchmarks/yosys_popcount.py (docs/costs.md §5.1)
POPCOUNT_LUT_SCALE = 0.633


bram18_estimate = bram18_table   # BRAM18 blocks of a depth x width memory (FINN's UG573 SDP-mode table)


def _acc_width(f: FoldedLayer) -> int:
    l = f.layer
    w, a = l.weight_bits_each, l.input_bits
    alpha = math.log2(l.mw) + w + a - 1 - int(l.input_signed)
    return min(l.acc_bits, math.ceil(alpha + math.log2(1 + 2.0 ** -alpha) + 1))


def _wmem(f: FoldedLayer) -> int:
    l = f.layer
    if l.weight_params == 0:
        return 0
    copies = l.weight_params // (l.mh * l.mw)  # head + head_dist share one unit
    return copies * math.ceil(l.mw / f.simd) * (l.mh // f.pe)


def lut_estimate(f: FoldedLayer, calibrated: bool = True) -> tuple[int, int]:
    """(LUTs, DSPs) of one folded layer; ``calibrated``: the binary popcount datapath at
    POPCOUNT_LUT_SCALE (yosys) instead of FINN-R's 1.1."""
    l, P, Q = f.layer, f.pe, f.simd
    wa = l.weight_bits_each + l.input_bits
    dsp_mult = l.precision != "binary"
    mult = 0 if dsp_mult else Q * (2 * math.ceil(wa / 6) - 1) * wa
    addertree = wa * (2 * Q - 1)
    acc = _acc_width(f)
    tmem = l.mh // P
    thr = l.thresholds * acc * math.ceil(tmem / 64)
    comp = l.thresholds * acc
    wmem = _wmem(f)
    c2 = P * Q * l.weight_bits_each * math.ceil(wmem / 64) if 0 < wmem <= LUTRAM_MAX_WMEM else 0
    datapath = (POPCOUNT_LUT_SCALE if calibrated and not dsp_mult else 1.1) * (mult + addertree)
    lut = 300 + P * (datapath + 1.1 * (acc + thr + comp)) + c2
    dsp = P * Q * math.ceil(wa / 48) if dsp_mult else 0
    return math.ceil(lut), dsp


@dataclass(frozen=True)
class LayerResources:
    name: str
    pe: int
    simd: int
    lut: int
    bram18: int
    dsp: int
    weight_depth: int
    weight_width: int


def _sum(items, key: str) -> int:
    return sum(getattr(x, key) for x in items)


@dataclass
class ResourceReport:
    """Every part of the dataflow: the MVAUs (FINN-R), the other processes (stage_resources),
    the FIFOs (fifo_memory) and the arrays outside the weights (buffers). ``lut``, ``bram18``
    and ``dsp`` are the totals over all parts; ``parts`` gives each part's sum."""
    layers: list[LayerResources]
    label: str = LABEL_ALL
    buffers: list = field(default_factory=list)   # gsbsim.hw.buffers.Buffer: memory outside the weights
    stages: list = field(default_factory=list)    # gsbsim.hw.stage_resources.StageResources
    fifos: list = field(default_factory=list)     # gsbsim.hw.fifo_memory.FifoMemory

    @property
    def parts(self) -> dict[str, dict[str, int]]:
        return {"mvau": {k: _sum(self.layers, k) for k in ("lut", "bram18", "dsp")},
                "stages": {k: _sum(self.stages, k) for k in ("lut", "bram18", "dsp")},
                "fifos": {"lut": _sum(self.fifos, "lut"), "bram18": _sum(self.fifos, "bram18"), "dsp": 0},
                "buffers": {"lut": 0, "bram18": self.buffer_bram18, "dsp": 0}}

    def _total(self, key: str) -> int:
        return sum(p[key] for p in self.parts.values())

    @property
    def lut(self) -> int:
        return self._total("lut")

    @property
    def bram18(self) -> int:
        return self._total("bram18")

    @property
    def dsp(self) -> int:
        return self._total("dsp")

    @property
    def buffer_bram18(self) -> int:
        return sum(b.bram18 for b in self.buffers)

    @property
    def buffer_bits(self) -> int:
        return sum(b.total_bits for b in self.buffers)

    @property
    def fifo_bits(self) -> int:
        return sum(f.bits for f in self.fifos)

    def to_dict(self) -> dict:
        return {"label": self.label, "lut": self.lut, "bram18": self.bram18, "dsp": self.dsp,
                "parts": self.parts,
                "per_layer": {r.name: {"lut": r.lut, "bram18": r.bram18, "dsp": r.dsp}
                              for r in self.layers},
                "per_stage": {s.name: {"lanes": s.lanes, "word_lanes": s.word_lanes, "lut": s.lut,
                                       "bram18": s.bram18, "dsp": s.dsp} for s in self.stages},
                "fifos": {"label": "estimate (emitted depth x declared width; SRL or BRAM18 by Vitis' "
                                   "config_storage defaults; docs/costs.md)",
                          "bits": self.fifo_bits,
                          "per_fifo": {f.name: {"depth": f.depth, "width": f.width, "impl": f.impl, "lut": f.lut,
                                                "bram18": f.bram18} for f in self.fifos}},
                "buffers": {"label": "estimate (declared arrays, UG573 BRAM18 table; docs/costs.md)",
                            "bits": self.buffer_bits, "bram18": self.buffer_bram18,
                            "per_buffer": {b.name: {"kind": b.kind, "bits": b.total_bits, "bram18": b.bram18}
                                           for b in self.buffers}}}


def folding_of(cycles: CycleReport) -> dict[str, Fold]:
    """The folding a cycle report was made with (layers and foldable stages)."""
    return {**{f.layer.name: Fold(f.pe, f.simd) for f in cycles.layers},
            **{k: Fold(v, 1) for k, v in cycles.stage_pe.items()}}


def estimate(cycles: CycleReport, header: Mapping[str, Any] | None = None, fifo_depths: Any = None) -> ResourceReport:
    """The estimate of every folded layer (FINN-R); with the model's ``header`` also of every
    other process, every FIFO (at ``fifo_depths``, a gsbsim.hw.fifo_plan.FifoDepths; default
    the deadlock-free minimum) and the arrays outside the weights: what ``gsbsim run
    --count-ops`` and ``gsbsim fold`` report."""
    out = []
    for f in cycles.layers:
        lut, dsp = lut_estimate(f)
        depth = _wmem(f)
        width = f.pe * f.simd * f.layer.weight_bits_each
        bram = bram18_estimate(depth, width) if depth > LUTRAM_MAX_WMEM else 0
        u = f.layer.units   # didb's two Q.K^T processes: two units of the same folding
        out.append(LayerResources(f.layer.name, f.pe, f.simd, u * lut, u * bram, u * dsp, depth, width))
    if header is None:
        return ResourceReport(out, LABEL)
    from gsbsim.hw.fifo_memory import fifo_memory   # imports the cycle simulation (Numba): only when needed
    fold = folding_of(cycles)
    return ResourceReport(out, LABEL_ALL, buffer_list(header, fold), stage_resources(header, fold),
                          fifo_memory(header, fold, fifo_depths))
