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
Every figure is labelled "estimate (FINN-R model)".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from gsbsim.hw.folding import CycleReport, FoldedLayer

__all__ = ["LABEL", "LayerResources", "ResourceReport", "lut_estimate", "bram18_estimate", "estimate"]

LABEL = "estimate (FINN-R model)"
LUTRAM_MAX_WMEM = 128  # FINN puts weight memories this shallow into LUTs


def bram18_estimate(depth: int, width: int) -> int:
    """BRAM18 blocks of a depth x width memory (FINN's UG573 SDP-mode table)."""
    if depth <= 0 or width <= 0:
        return 0
    c = math.ceil
    if width == 1:
        return c(depth / 16384)
    if width == 2:
        return c(depth / 8192)
    if width <= 4:
        return c(depth / 4096) * c(width / 4)
    if width <= 9:
        return c(depth / 2048) * c(width / 9)
    if width <= 18 or depth > 512:
        return c(depth / 1024) * c(width / 18)
    return c(depth / 512) * c(width / 36)


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


def lut_estimate(f: FoldedLayer) -> tuple[int, int]:
    """(LUTs, DSPs) of one folded layer."""
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
    lut = 300 + 1.1 * P * (mult + addertree + acc + thr + comp) + c2
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


@dataclass
class ResourceReport:
    layers: list[LayerResources]
    label: str = LABEL
    buffers: list = field(default_factory=list)   # gsbsim.hw.buffers.Buffer: memory outside the weights

    @property
    def lut(self) -> int:
        return sum(r.lut for r in self.layers)

    @property
    def bram18(self) -> int:
        return sum(r.bram18 for r in self.layers)

    @property
    def dsp(self) -> int:
        return sum(r.dsp for r in self.layers)

    @property
    def buffer_bram18(self) -> int:
        return sum(b.bram18 for b in self.buffers)

    @property
    def buffer_bits(self) -> int:
        return sum(b.total_bits for b in self.buffers)

    def to_dict(self) -> dict:
        return {"label": self.label, "lut": self.lut, "bram18": self.bram18, "dsp": self.dsp,
                "per_layer": {r.name: {"lut": r.lut, "bram18": r.bram18, "dsp": r.dsp}
                              for r in self.layers},
                "buffers": {"label": "estimate (declared arrays, UG573 BRAM18 table; docs/costs.md)",
                            "bits": self.buffer_bits, "bram18": self.buffer_bram18,
                            "per_buffer": {b.name: {"kind": b.kind, "bits": b.total_bits, "bram18": b.bram18}
                                           for b in self.buffers}}}


def estimate(cycles: CycleReport) -> ResourceReport:
    """FINN-R LUT / BRAM18 / DSP estimate of every folded layer."""
    out = []
    for f in cycles.layers:
        lut, dsp = lut_estimate(f)
        depth = _wmem(f)
        width = f.pe * f.simd * f.layer.weight_bits_each
        bram = bram18_estimate(depth, width) if depth > LUTRAM_MAX_WMEM else 0
        out.append(LayerResources(f.layer.name, f.pe, f.simd, lut, bram, dsp, depth, width))
    return ResourceReport(out)
