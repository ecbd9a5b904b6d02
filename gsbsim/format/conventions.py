"""The project's numeric conventions, owned here and imported everywhere else.

numpy only (no torch, no numba), so the reference, the simulator and the HLS
generator can all import it. DESIGN.md §2 and docs/integer_model.md explain why
each rule is what it is; the short version:

* bit 1 means +1, bit 0 means -1; sign(0) = +1 (ties go up);
* packing is along the reduction dimension K, element i -> bit (i % 64) of
  word i // 64, LSB first, uint64 words, pad bits 0 in both operands;
* +-1 x +-1:   dot = K - 2 * popcount(a XOR w)   (true K, pads never mismatch);
* {0,1} x +-1: dot = 2 * popcount(a AND w) - popcount(a);
* every binarizer in the integer domain is ``out = acc >= T``;
* every fixed-point requantization rounds half up: (x*M + 2**(S-1)) >> S;
* mask ratios (GSB's 0.7 / 0.9 of the max) are dyadic: round(r * 256) / 256.
"""
from __future__ import annotations

import numpy as np

WORD_BITS = 64
PIXEL_ZERO = 128  # uint8 pixel p enters the float model as (p - 128)/128, the integer model as p - 128
RATIO_BITS = 8  # mask ratios are multiples of 2**-RATIO_BITS, in float and integer models alike
# The exporter's probability grid 2^-PROB_BITS (§5; docs/integer_model.md §11 "The probability grid"):
# as fine as float32's own 24-bit mantissa (finer changed nothing measured), and the reciprocal R =
# 2^recip / sum(e) keeps RECIP_OVER_PROB bits so that P = e*R is exact to the grid.
PROB_BITS = 24
RECIP_OVER_PROB = 32


# ----------------------------------------------------------------------------- signs and bits
def sign(x: np.ndarray) -> np.ndarray:
    """+1 where x >= 0, else -1 (sign(0) = +1), as int8."""
    return np.where(np.asarray(x) >= 0, 1, -1).astype(np.int8)


def to_bits(pm1: np.ndarray) -> np.ndarray:
    """+-1 values -> bits (1 = +1, 0 = -1) as uint8."""
    return (np.asarray(pm1) > 0).astype(np.uint8)


def from_bits(bits: np.ndarray) -> np.ndarray:
    """bits -> +-1 values as int8."""
    return (np.asarray(bits).astype(np.int8) * 2 - 1).astype(np.int8)


def n_words(k: int) -> int:
    return (int(k) + WORD_BITS - 1) // WORD_BITS


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack {0,1} values along the last axis into uint64 words, LSB first, zero pads.

    [..., K] -> [..., ceil(K/64)].  Element i lands in bit (i % 64) of word i // 64.
    """
    bits = np.asarray(bits)
    if bits.size and (bits.min() < 0 or bits.max() > 1):
        raise ValueError("pack_bits expects values in {0, 1}")
    k = bits.shape[-1]
    nw = n_words(k)
    padded = np.zeros(bits.shape[:-1] + (nw * WORD_BITS,), dtype=np.uint8)
    padded[..., :k] = bits
    as_bytes = np.packbits(padded, axis=-1, bitorder="little")
    return np.ascontiguousarray(as_bytes).view("<u8").astype(np.uint64).reshape(bits.shape[:-1] + (nw,))


def unpack_bits(words: np.ndarray, k: int) -> np.ndarray:
    """Inverse of pack_bits: [..., W] uint64 -> [..., k] uint8."""
    words = np.ascontiguousarray(np.asarray(words, dtype=np.uint64)).astype("<u8")
    as_bytes = words.view(np.uint8).reshape(words.shape[:-1] + (words.shape[-1] * 8,))
    return np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :k]


def popcount(words: np.ndarray) -> np.ndarray:
    """Bit count of each uint64 word, as int64 (numpy >= 2 has bitwise_count)."""
    return np.bitwise_count(np.asarray(words, dtype=np.uint64)).astype(np.int64)


def xnor_dot(a_words: np.ndarray, w_words: np.ndarray, k: int) -> np.ndarray:
    """+-1 x +-1 dot products of packed rows: a [M, W], w [N, W] -> [M, N] int64."""
    mism = popcount(a_words[:, None, :] ^ w_words[None, :, :]).sum(-1)
    return k - 2 * mism


def and_dot(a_words: np.ndarray, w_words: np.ndarray) -> np.ndarray:
    """{0,1} x +-1 dot products of packed rows: a [M, W], w [N, W] -> [M, N] int64."""
    both = popcount(a_words[:, None, :] & w_words[None, :, :]).sum(-1)
    ones = popcount(a_words).sum(-1)[:, None]
    return 2 * both - ones


def pixels_to_int8(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> the integer model's input p - 128, as int8 (exact)."""
    return (np.asarray(images).astype(np.int16) - PIXEL_ZERO).astype(np.int8)


# ----------------------------------------------------------------------------- integer rounding
def round_half_up(x) -> np.ndarray:
    """Float -> nearest integer, ties up (floor(x + 0.5)), as int64."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def requant(x: np.ndarray, mult, shift: int) -> np.ndarray:
    """Fixed-point requantization (x*mult + 2**(shift-1)) >> shift, arithmetic shift, int64."""
    x = np.asarray(x, dtype=np.int64)
    if shift == 0:
        return x * np.asarray(mult, dtype=np.int64)
    return (x * np.asarray(mult, dtype=np.int64) + (np.int64(1) << np.int64(shift - 1))) >> np.int64(shift)


def div_round(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Integer division rounding half up, den > 0: floor((2*num + den) / (2*den))."""
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    return np.floor_divide(2 * num + den, 2 * den)


def isqrt(v: np.ndarray) -> np.ndarray:
    """Exact floor(sqrt(v)) for int64 v >= 0, elementwise.

    A float sqrt guess corrected by at most a couple of integer steps, so it is
    exact for every v < 2**62 (the C++ uses the bit-by-bit method; both give floor).
    """
    v = np.asarray(v, dtype=np.int64)
    if np.any(v < 0):
        raise ValueError("isqrt of a negative number")
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    for _ in range(2):
        r = np.where(r * r > v, r - 1, r)
        r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


def quantize_ratio(r: float) -> float:
    """GSB mask ratios as dyadic rationals, so that float and integer models agree."""
    return float(round(r * (1 << RATIO_BITS))) / (1 << RATIO_BITS)


def ratio_numerator(r: float) -> int:
    """Integer numerator of quantize_ratio(r) over 2**RATIO_BITS."""
    return int(round(r * (1 << RATIO_BITS)))
