"""The hardware primitives the stage and FIFO estimates are built from: an estimate, not synthesis.

Each primitive returns a ``Cost`` (LUT, BRAM18, DSP) for a datapath element of given bit
widths on a 6-input-LUT Xilinx fabric (UltraScale+: LUT6, CARRY8, SRLC32E, DSP48E2, RAMB18).
The rules, stated once here and in docs/costs.md §5.2:

* add / sub / compare / conditional negate of w bits: w LUT (one LUT per bit on the carry chain);
* a multiplier a x b: DSP48E2 tiles, min over the two orientations of
  ceil(a/27)*ceil(b/18) (the adders joining tiles are not counted); a 1-bit operand is an
  AND / negate: max(a, b) LUT, no DSP;
* a multiplier of w bits by a compile-time constant k (E, the LayerNorm's): shift-and-add,
  (popcount(k) - 1) adders of w + bitlength(k) bits;
* a divider of an a-bit dividend by a b-bit divisor, pipelined for II = 1: a rows of a
  (b+1)-bit subtract-and-select: a*(b+1) LUT;
* a k:1 multiplexer of w bits: w*ceil((k-1)/3) LUT (a LUT6 is a 4:1 mux);
* a memory of depth x width read by ``ports`` lanes per cycle: split into ``ports`` banks
  (cyclic partition, one read per bank and cycle, as FINN partitions per PE), each bank of
  at most SMALL_BITS bits in LUTRAM (width*ceil(depth/64) LUT), else BRAM18 by UG573's
  table (gsbsim.hw.resources.bram18_estimate);
* a table read at data-dependent addresses by ``ports`` lanes (the exp tables): full copies,
  one per lane in LUTRAM, one per two lanes in BRAM18 (two ports);
* a loop counter of a process doing ``n`` iterations: 2*ceil(log2(n+1)) LUT (increment and
  compare).

Shifts by the header's constant exponents are wiring (0 LUT). Flip-flops are not counted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Cost", "ZERO", "SMALL_BITS", "DSP_A", "DSP_B", "add", "mul", "cmul", "div", "mux", "memory", "table",
           "counter", "clog2", "bram18_table"]

SMALL_BITS = 1024   # a memory bank this small sits in LUTRAM (gsbsim/hw/buffers.py uses the same bound)
DSP_A, DSP_B = 27, 18   # DSP48E2 signed multiplier operand widths


@dataclass(frozen=True)
class Cost:
    lut: int = 0
    bram18: int = 0
    dsp: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.lut + other.lut, self.bram18 + other.bram18, self.dsp + other.dsp)

    def __mul__(self, k: int) -> "Cost":
        return Cost(self.lut * k, self.bram18 * k, self.dsp * k)

    __rmul__ = __mul__


ZERO = Cost()


def clog2(n: int) -> int:
    """ceil(log2(n)) for n >= 1 (0 for n = 1)."""
    return max(0, (int(n) - 1).bit_length())


def bram18_table(depth: int, width: int) -> int:
    """BRAM18 blocks of a depth x width memory (FINN's UG573 simple-dual-port table)."""
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


def add(w: int) -> Cost:
    """An adder, subtractor, comparator or conditional negation of w bits."""
    return Cost(lut=int(w))


def mul(a: int, b: int) -> Cost:
    """An a x b multiplier: DSP48E2 tiles, or AND/negate gates for a 1-bit operand."""
    if min(a, b) <= 1:
        return Cost(lut=int(max(a, b)))
    c = math.ceil
    return Cost(dsp=min(c(a / DSP_A) * c(b / DSP_B), c(b / DSP_A) * c(a / DSP_B)))


def cmul(w: int, k: int) -> Cost:
    """w bits times the constant k: popcount(k) - 1 adders (powers of two are wiring)."""
    k = abs(int(k))
    return Cost(lut=max(bin(k).count("1") - 1, 0) * (int(w) + k.bit_length()))


def div(a: int, b: int) -> Cost:
    """A pipelined divider (II = 1) of an a-bit dividend by a b-bit divisor."""
    return Cost(lut=int(a) * (int(b) + 1))


def mux(w: int, k: int) -> Cost:
    """A k:1 multiplexer of w bits."""
    return Cost(lut=int(w) * math.ceil(max(k - 1, 0) / 3))


def memory(depth: int, width: int, ports: int = 1) -> Cost:
    """depth x width, read by ``ports`` lanes per cycle at consecutive addresses (cyclic banks)."""
    if depth <= 0 or width <= 0:
        return ZERO
    ports = max(1, min(int(ports), int(depth)))
    bank = math.ceil(depth / ports)
    if bank * width <= SMALL_BITS:
        return Cost(lut=ports * width * math.ceil(bank / 64))
    return Cost(bram18=ports * bram18_table(bank, width))


def table(depth: int, width: int, ports: int = 1) -> Cost:
    """A lookup table read by ``ports`` lanes at independent addresses: one copy per lane
    (LUTRAM) or per two lanes (BRAM18, dual port)."""
    if depth <= 0 or width <= 0:
        return ZERO
    if depth * width <= SMALL_BITS:
        return Cost(lut=int(ports) * width * math.ceil(depth / 64))
    return Cost(bram18=math.ceil(ports / 2) * bram18_table(depth, width))


def counter(n: int) -> Cost:
    """The loop counter of a process of n iterations per image."""
    return Cost(lut=2 * clog2(int(n) + 1))
