"""On-chip memory of the dataflow outside the MVAU weights: an estimate, not synthesis.

Per block of the generated top (gsbsim/hlsgen/blocks.py), every array that is not an MVAU's
weights: the whole-image PIPO arrays between processes (double-buffered, as Vitis builds a
PIPO: x 2) and the stages' own buffers (a LayerNorm's token, a softmax row, the planes'
statistics); the FIFOs, the residual skips included, are gsbsim/hw/fifo_memory.py's. Each
array is ``elements x bits`` as declared, split into ``banks`` by its stage PE (ARRAY_PARTITION
cyclic), each bank counted in BRAM18 by the UG573 table of gsbsim/hw/primitives.py. Arrays of 1,024 bits or less are assumed to sit in LUTs/registers
(0 BRAM18). LUTs and DSPs of the non-MVAU stages are gsbsim/hw/stage_resources.py's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from gsbsim.format.methods import method_of
from gsbsim.hw.primitives import SMALL_BITS, bram18_table as bram18_estimate
from gsbsim.hw.stages import pe_of

__all__ = ["Buffer", "buffers", "SMALL_BITS"]



@dataclass(frozen=True)
class Buffer:
    name: str          # blocks.<i>.<array>
    kind: str          # "pipo" (x 2) or "stage"
    elements: int
    bits: int          # per element
    banks: int = 1

    @property
    def total_bits(self) -> int:
        return self.elements * self.bits * (2 if self.kind == "pipo" else 1)

    @property
    def bram18(self) -> int:
        copies = 2 if self.kind == "pipo" else 1
        if self.elements * self.bits <= SMALL_BITS:
            return 0
        return copies * self.banks * bram18_estimate(-(-self.elements // self.banks), self.bits)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def buffers(header: Mapping[str, Any], folding: Mapping[str, Any]) -> list[Buffer]:
    """Every non-weight array of every block, as the generated top declares it."""
    e, n, h, d = (int(header[k]) for k in ("embed_dim", "num_tokens", "num_heads", "head_dim"))
    g = int(header["groups"])
    didb = method_of(header["method"]).attention == "hfsc_diba"
    out: list[Buffer] = []
    for i in range(int(header["depth"])):
        b = f"blocks.{i}."
        qk, av = folding[b + "qk"], folding[b + "av"]
        pe = {k: pe_of(folding, b + k) for k in ("value_planes", "attention_planes", "softmax")}
        bands = 2 if didb else 1
        qk_bits = h * n * _cdiv(d, qk.simd) * qk.simd            # one operand's bit rows, padded words
        out += [Buffer(b + "q_rows", "pipo", bands * qk_bits // qk.simd, qk.simd),
                Buffer(b + "k_tiles", "pipo", bands * qk_bits // qk.simd, qk.simd),
                Buffer(b + "vq", "pipo", h * n * d, 64, pe["value_planes"]),
                Buffer(b + "v_tiles", "pipo", g * h * d * _cdiv(n, av.simd), av.simd),
                Buffer(b + "att", "pipo", h * n * n, 64, max(pe["softmax"], pe["attention_planes"])),
                Buffer(b + "a_rows", "pipo", g * h * n * _cdiv(n, av.simd), av.simd),
                Buffer(b + "ctx", "pipo", n * e, 64)]
        if didb:
            # diba_fork's outputs (gsb/diba.hpp); lap is traced in C-simulation only, no buffer
            out += [Buffer(b + "zqk", "pipo", n * 2 * e, 32),
                    Buffer(b + "a_av", "pipo", h * n * _cdiv(n, av.simd), av.simd),
                    Buffer(b + "v_av", "pipo", h * d * _cdiv(n, av.simd), av.simd),
                    Buffer(b + "a_ones", "pipo", h * n, max(1, n.bit_length())),
                    Buffer(b + "v_sign", "pipo", h * d * _cdiv(n, av.simd), av.simd),
                    Buffer(b + "ctx_av", "pipo", n * e, 64)]
        out += [Buffer(b + "ln1.token", "stage", e, 32), Buffer(b + "ln2.token", "stage", e, 32),
                Buffer(b + "softmax.row", "stage", n, 64 if didb else 32, pe["softmax"]),
                Buffer(b + "softmax.exp", "stage", n, 64, pe["softmax"]),
                Buffer(b + "value_planes.stats", "stage", 2 * h * n, 64),
                Buffer(b + "attention_planes.max", "stage", h * n, 64)]
    return out
