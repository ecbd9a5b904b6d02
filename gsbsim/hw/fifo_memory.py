"""Memory of the dataflow's FIFOs (the emitted depths x widths): an estimate, not synthesis.

Every FIFO of the process network (gsbsim/hw/process_network.py; the top's ports excluded) at
the depth the generator emits (gsbsim/hw/fifo_plan.py: the deadlock-free minimum, or sized
depths) and the width of the C type it is declared with (gsbsim/hlsgen/blocks.py, project.py:
``int32_t`` 32, ``ap_uint<S>`` S, ``gsb::vec<int32_t, P>`` 32*P, ``gsb::vec<int64_t, P>`` 64*P).

Implementation as Vitis HLS binds a FIFO by default (UG1399 ``config_storage fifo``,
``impl auto``, ``auto_srl_max_bits`` 1024, ``auto_srl_max_depth`` 2), as read here: a FIFO of
depth <= 2 or of depth*width <= 1024 bits is a shift register (SRL: SRLC32E, width*ceil(depth/32)
LUT), a larger one a memory (BRAM18 by UG573's table of gsbsim/hw/primitives.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from gsbsim.hw.fifo_plan import FifoDepths, minimal
from gsbsim.hw.primitives import Cost, bram18_table
from gsbsim.hw.process_network import PORTS, build_network

__all__ = ["SRL_MAX_BITS", "SRL_MAX_DEPTH", "FifoMemory", "fifo_cost", "stream_width", "fifo_memory"]

SRL_MAX_BITS, SRL_MAX_DEPTH = 1024, 2   # Vitis HLS config_storage fifo defaults (UG1399)

# stream (blocks' names without the prefix) -> (C element type, the layer whose parameter
# gives its lanes or bits, "pe" | "simd"), as the generator declares them
_X = ("int32", None, None)
_BLOCK = {"x_ln1": _X, "x_skip1": _X, "resid1": _X, "x_ln2": _X, "x_skip2": _X, "resid2": _X,
          "ln1.bits": ("bits", "qkv", "simd"), "ln2.bits": ("bits", "fc1", "simd"),
          "proj.bits": ("bits", "proj", "simd"), "fc1.bits": ("bits", "fc2", "simd"),
          "scores": ("int32", "qk", "pe"), "scores.low": ("int32", "qk", "pe"),
          "scores.high": ("int32", "qk", "pe"), "hfsc": ("int64", "qk", "pe"),
          **{f"{lin}.{k}": ("int32", lin, "pe") for lin in ("qkv", "proj", "fc1", "fc2") for k in ("acc", "z")}}
_TOP = {"embed": _X, "patch.in": ("bytes", "patch", "simd"), "patch.acc": ("int32", "patch", "pe"),
        "head.q": ("bytes", "head", "simd"), "head.acc": ("int32", "head", "pe"),
        "logits.words": ("int64", "head", "pe"), "logits.argmax": ("int64", "head", "pe")}
_BITS = {"int32": 32, "int64": 64, "bits": 1, "bytes": 8}


def stream_width(name: str, folding: Mapping[str, Any]) -> int:
    """Bits per word of FIFO ``name`` as the generated top declares it (KeyError: unknown stream)."""
    if name in _TOP:
        kind, layer, what = _TOP[name]
    else:
        _, i, rest = name.split(".", 2)
        kind, lin, what = _BLOCK[rest]
        layer = lin and f"blocks.{i}.{lin}"
    return _BITS[kind] * (getattr(folding[layer], what) if layer else 1)


def fifo_cost(depth: int, width: int) -> tuple[str, Cost]:
    """("srl" | "bram", cost) of one FIFO, by the binding rule of the module doc."""
    if depth <= SRL_MAX_DEPTH or depth * width <= SRL_MAX_BITS:
        return "srl", Cost(lut=width * math.ceil(depth / 32))
    return "bram", Cost(bram18=bram18_table(depth, width))


@dataclass(frozen=True)
class FifoMemory:
    name: str
    depth: int
    width: int
    impl: str       # "srl" or "bram"
    lut: int
    bram18: int

    @property
    def bits(self) -> int:
        return self.depth * self.width


def fifo_memory(header: Mapping[str, Any], folding: Mapping[str, Any],
                depths: FifoDepths | None = None) -> list[FifoMemory]:
    """Every FIFO at ``depths`` (default: the deadlock-free minimum ``gsbsim hls`` emits)."""
    depths = depths or minimal(build_network(header, folding))
    out = []
    for name, depth in depths.depths.items():
        if name in PORTS:
            continue
        width = stream_width(name, folding)
        impl, cost = fifo_cost(depth, width)
        out.append(FifoMemory(name, depth, width, impl, cost.lut, cost.bram18))
    return out
