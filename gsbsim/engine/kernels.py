"""Packed binary kernels for the simulator, compiled with Numba.

These are the optimised twins of the plain-numpy rules in ``gsbsim.conventions``
(``xnor_dot``, ``and_dot``) and of the GSB context of ``gsbsim.golden``, and must agree
with them integer for integer:

* ``xnor_gemm``  +-1 x +-1:   dot = k - 2 * popcount(a ^ w)
* ``and_gemm``   {0,1} x +-1: dot = 2 * popcount(a & w) - popcount(a)
* ``gsb_av``     GSB's multi-plane attention x value product, one output per plane pair
* ``gsb_av_context``  the same product already combined with the scale products
  (ctx = sum_a sum_v scale[a, v] * D[a][v]), which is all the model needs
* ``pack_rows_ge`` / ``pack_rows_2sided``  integer thresholds -> packed bits

How the GEMMs are fast: the weights are laid out transposed, ``[W, N]``, 64-byte aligned
(``weight_layout``; numpy aligns to 16 bytes only), and ``xnor_into`` / ``and_into`` walk
them in column strips of TILE_COLS vectors of 8 columns: for each strip every group of
TILE_ROWS rows is one register tile (``popcnt.popc_tile``, LLVM IR) whose TILE_ROWS x
TILE_COLS vector accumulators stay in registers over the whole K loop. Per packed word the
tile loads TILE_COLS weight vectors and broadcasts TILE_ROWS a-words, then does one
(xor|and, popcount, add) per accumulator: on AVX-512 VPOPCNTDQ (4 x 6 zmm accumulators) the
loop is bound by the popcount port, i.e. by the CPU's limit (benchmarks/limit.py measures
it; the GEMMs reach 75-95 % of it on DeiT shapes). The first word initialises the
accumulators and the epilogue narrows two column vectors with one shuffle before the int32
arithmetic (``beta -+ 2*count``), which is what matters at K=192 (three words per tile).
The strip of weights (W x 8*TILE_COLS words) stays in L1 while all rows pass; no K blocking
is needed at ViT sizes (K=1536 runs fastest). Columns past the last multiple of 8 take a
scalar loop. ``xnor_bits_into`` gives the tile a threshold epilogue instead: the int32 values are
compared with per-column thresholds and only the packed bits stored (fc1's GELU thresholds, Q's
and K's), where the values would otherwise go out to memory and be read back by a packing pass.
The same IR compiles for AVX2 (2 x 2 tile, ymm pairs, nibble-table popcount;
tested by compiling for an AVX2-only CPU). ``_row_counts`` (one output row at a time, the
old GEMM loop) remains for the GSB A.V popcount forms, whose rows are short.

Inner loops index 1-D views by the bare loop variable: an index LLVM cannot prove
non-negative keeps Numba's negative-index wraparound select and stops vectorisation.

How the GSB context is fast: the G x G plane products need 2G-1 popcounts per
(attention plane, value column, key word), so a popcount formulation costs about
(2G-1)*G times a plain binary attention. But the context is linear in the attention
bits: ctx[i] = sum_a sum_{t : a_i[t] = 1} Y_a[t] with the value table
Y_a[t, j] = sum_v scale[a, v] * value_v[t, j] (a lookup of the value planes' bits,
built once per head; int32 when every partial sum provably fits, else int64).
Attention planes are sparse (the masks keep the keys near the row maximum), so
collecting the set bits of each attention row (``ctz64``) and adding those table rows
costs a few row additions per query; a plane row denser than one half is walked through
its zero bits instead (ctx = sum of all rows - the rows of the zeros). The rows are added
four at a time (the list padded with a zero row) by ``popcnt.add4_i32x8``'s explicit
8-lane vector adds: a vectorised loop over a 64-lane row spends more in LLVM's run-time
aliasing checks than in the additions. Walking the union of the planes' bits once with
per-pattern tables (sum of Y_a over the planes set at a key) was tried and does not pay:
the masks are not inside b1 (b1 is mostly inside M_2), the union is ~3/4 of the planes'
bits, and the multi-plane patterns are used about once per (pattern, key) built.
On an AVX-512 target (head dims of whole 16-lane vectors, G <= 4, int32 sums) the walk builds
no table at all: Y_a[t, j] is one of 2^G <= 16 values picked by the value code of (t, j),
so ``table_lookup.lookup_sums`` looks the codes of each listed key up in plane a's table,
one ``vpermd`` per 16 lanes, and keeps the row's sums in registers over the whole list
(``_context_lookups``; the keys listed by ``bit_ids.append_bit_ids``, one ``vpcompressb`` per
word where the CPU has VBMI2. The phase went from ~455 to ~180 TSC ticks per attention row
of a random DeiT-Tiny G=3 on an AMD Zen 4: the table cost ~120, the rows' load-add-store
round trips most of the rest, the ctz walk ~45 more than the compress). Elsewhere the
table walk above runs.
``context_head`` picks, per head, this sparse walk or the popcount form from the counts
of set bits (a cost estimate), so dense planes (a plain binary model's b1, say) keep the
popcount speed.

Everything runs single-threaded by default; the ``*_par`` variants split rows over a
pool of Python threads (the jitted cores release the GIL), opt-in. There is no Numba
``parallel=True`` code: it compiles slowly and its threads oversubscribe small machines
on top of OpenBLAS's.

Each public function is a thin Python wrapper that validates shapes and dtypes
(``KernelInputError``, a ValueError) and then calls a jitted core. The jitted
building blocks (``xnor_into``, ``and_into``, ``pack_ge_into``, ``pack_2sided_into``,
``pack_row`` (inlined), ``context_head`` with ``context_workspace`` and ``row_popcounts``)
skip validation:
they are for ``gsbsim.fast``'s fused loops.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
from numba import njit, types
from numba.extending import overload

from gsbsim.format.conventions import WORD_BITS, n_words
from gsbsim.engine.popcnt import (add4_i32x8, add4_i32x16, wide_vectors, ctz64, ge_or_le_word, ge_word, popc_tile, popcount64,
                                   tile_shape)
from gsbsim.engine import bit_ids, popcnt, table_lookup
from gsbsim.engine.bit_ids import SPARE, append_bit_ids
from gsbsim.engine.jit_cache import cache_depends_on
from gsbsim.engine.table_lookup import ID_BITS, LANES, TABLE, has_permute_lookup, lookup_sums

__all__ = [
    "KernelInputError",
    "xnor_gemm",
    "xnor_gemm_par",
    "and_gemm",
    "and_gemm_par",
    "gsb_av",
    "gsb_av_par",
    "gsb_av_context",
    "pack_rows_ge",
    "pack_rows_2sided",
    "xnor_into",
    "xnor_bits_into",
    "and_into",
    "weight_layout",
    "pack_ge_into",
    "pack_2sided_into",
    "pack_row",
    "pack_bits_at",
    "context_head",
    "context_workspace",
    "row_popcounts",
]

#: register tile of the GEMMs (rows x vectors of 8 columns), chosen for the CPU Numba compiles for
TILE_ROWS, TILE_COLS = tile_shape()
#: whether the sparse A.V context looks its value codes up with permutes (AVX-512) instead of
#: building a value table per head (see _context_lookups); fixed when this module is compiled
PERMUTE_CONTEXT = has_permute_lookup()

_JIT = dict(cache=True, nogil=True, fastmath=False, boundscheck=False)
_INLINE = dict(inline="always", nogil=True, fastmath=False, boundscheck=False)

# Cost model of context_head, in "int64 additions": a popcount of one key word against
# one value column costs about SPARSE_PER_WORD additions of a value-table element.
SPARSE_PER_WORD = 2


class KernelInputError(ValueError):
    """Bad shape, dtype or padding passed to a gsbsim.kernels function."""


# ============================================================================ GEMM building blocks
@njit(**_INLINE)
def _pc(x, y, use_and):
    """popcount(x AND y) or popcount(x XOR y); use_and is a compile-time constant after inlining."""
    return popcount64(x & y) if use_and else popcount64(x ^ y)


@njit(**_INLINE)
def _row_counts(a, m, w_t, use_and, acc):
    """acc[n] = sum_j popcount(a[m, j] OP w_t[j, n]), OP = AND if use_and else XOR.

    The n loop is innermost and contiguous so LLVM vectorises it. The first pass takes
    1-4 words and assigns (no zeroing pass), every later pass adds four words: K <= 256
    is a single pass that writes acc once, and longer rows reload acc every 4 words.
    Five loop bodies per operation (bounded compile time).
    """
    n_cols = w_t.shape[1]
    n_w = a.shape[1]
    if n_w == 0:
        acc[:] = 0
        return
    first = (n_w - 1) % 4 + 1
    x0 = a[m, 0]
    w0 = w_t[0]
    if first == 1:
        for n in range(n_cols):
            acc[n] = _pc(x0, w0[n], use_and)
    elif first == 2:
        x1, w1 = a[m, 1], w_t[1]
        for n in range(n_cols):
            acc[n] = _pc(x0, w0[n], use_and) + _pc(x1, w1[n], use_and)
    elif first == 3:
        x1, x2, w1, w2 = a[m, 1], a[m, 2], w_t[1], w_t[2]
        for n in range(n_cols):
            acc[n] = _pc(x0, w0[n], use_and) + _pc(x1, w1[n], use_and) + _pc(x2, w2[n], use_and)
    else:
        x1, x2, x3, w1, w2, w3 = a[m, 1], a[m, 2], a[m, 3], w_t[1], w_t[2], w_t[3]
        for n in range(n_cols):
            acc[n] = (_pc(x0, w0[n], use_and) + _pc(x1, w1[n], use_and)
                      + _pc(x2, w2[n], use_and) + _pc(x3, w3[n], use_and))
    for j in range(first, n_w, 4):
        x0, x1, x2, x3 = a[m, j], a[m, j + 1], a[m, j + 2], a[m, j + 3]
        w0, w1, w2, w3 = w_t[j], w_t[j + 1], w_t[j + 2], w_t[j + 3]
        for n in range(n_cols):
            acc[n] += (_pc(x0, w0[n], use_and) + _pc(x1, w1[n], use_and)
                       + _pc(x2, w2[n], use_and) + _pc(x3, w3[n], use_and))


@njit(**_JIT)
def _counts_xor(a, m, w_t, acc):
    """_row_counts with XOR, compiled once (not inlined: every caller links this one copy)."""
    _row_counts(a, m, w_t, False, acc)


@njit(**_JIT)
def _counts_and(a, m, w_t, acc):
    """_row_counts with AND, compiled once (not inlined: every caller links this one copy)."""
    _row_counts(a, m, w_t, True, acc)


@njit(**_INLINE)
def _row_ones(a, m):
    """popcount of the whole packed row a[m] (the {0,1} operand's number of ones)."""
    total = 0
    for j in range(a.shape[1]):
        total += popcount64(a[m, j])
    return total


@njit(**_INLINE)
def _av_rows(a2, v_t, n_v, out, lo, hi):
    """GSB A.V plane-pair dots for rows lo..hi of a2 = a_planes reshaped [Ga*M, W].

    v_t is [W, (2*n_v - 1) * D]: column blocks 0..n_v-1 hold the sign plane and the
    (sign & mask_q) planes, blocks n_v..2*n_v-2 the masks m_q. One pass over the
    row's words counts all of them, so every a-word is loaded once per (row, word)
    and shared by all value planes.
    """
    n_m = out.shape[2]
    d = out.shape[3]
    acc = np.empty(v_t.shape[1], dtype=np.int64)
    for r in range(lo, hi):
        g = r // n_m
        m = r - g * n_m
        _counts_and(a2, r, v_t, acc)
        ones = _row_ones(a2, r)
        for n in range(d):
            out[g, 0, m, n] = 2 * acc[n] - ones
        for q in range(1, n_v):
            both = q * d
            mask = (n_v + q - 1) * d
            for n in range(d):
                out[g, q, m, n] = 2 * acc[both + n] - acc[mask + n]


@njit(**_INLINE)
def _tile_rows(a, w_t, out, beta, m0, n0, use_and, rows, cols):
    """popcnt.popc_tile with a run-time row count 1..4 (the last rows of a matrix); cols a constant."""
    if rows == 1:
        popc_tile(a, w_t, out, beta, m0, n0, use_and, 1, cols)
    elif rows == 2:
        popc_tile(a, w_t, out, beta, m0, n0, use_and, 2, cols)
    elif rows == 3:
        popc_tile(a, w_t, out, beta, m0, n0, use_and, 3, cols)
    elif rows == 4:
        popc_tile(a, w_t, out, beta, m0, n0, use_and, 4, cols)


@njit(**_INLINE)
def _tile_strip(a, w_t, out, beta, n0, use_and, cols):
    """All rows of the column strip n0 .. n0 + 8*cols: TILE_ROWS rows per tile, then the rest."""
    m_n = a.shape[0]
    full = m_n - m_n % TILE_ROWS
    for m0 in range(0, full, TILE_ROWS):
        popc_tile(a, w_t, out, beta, m0, n0, use_and, TILE_ROWS, cols)
    if full < m_n:
        _tile_rows(a, w_t, out, beta, full, n0, use_and, m_n - full, cols)


def _put(out, m, n, v):
    """Store GEMM output (m, n) = v (int64) into out: an int32 matrix, or the packed bits of a
    (bits, t_hi, t_lo) tuple (popc_tile's two forms). Jitted through its overload only."""


@overload(_put)    # not inline="always": there, writes through an array unpacked from the tuple are lost (numba 0.68)
def _put_impl(out, m, n, v):
    if isinstance(out, types.BaseTuple):
        def put_bit(out, m, n, v):
            bits = out[0]
            v32 = np.int32(v)
            if v32 >= out[1][n] or v32 <= out[2][n]:
                w = n >> 6
                bits[m, w] = bits[m, w] | (np.uint64(1) << np.uint64(n & 63))
        return put_bit

    def put_value(out, m, n, v):
        out[m, n] = np.int32(v)
    return put_value


@njit(**_JIT)
def _tiled_gemm(a, w_t, out, beta, use_and):
    """out[m, n] = beta[m] -+ 2 * sum_j popcount(a[m, j] OP w_t[j, n]) (- and XOR, or + and AND with
    use_and) as int32, by register tiles (popcnt.popc_tile) over column strips of TILE_COLS vectors
    of 8 columns: a strip of weights (W x 8*TILE_COLS words) stays in L1 while every row passes.
    The last N % 8 columns (none on ViT shapes) take a scalar loop. out may be popc_tile's
    (bits, t_hi, t_lo) instead: the packed threshold bits of those values (bits zeroed)."""
    m_n, n_w = a.shape
    n_n = w_t.shape[1]
    if n_w == 0:
        for m in range(m_n):
            for n in range(n_n):
                _put(out, m, n, beta[m])
        return
    n_vec = n_n // 8
    v = 0
    while v + TILE_COLS <= n_vec:
        _tile_strip(a, w_t, out, beta, 8 * v, use_and, TILE_COLS)
        v += TILE_COLS
    while v + 2 <= n_vec:
        _tile_strip(a, w_t, out, beta, 8 * v, use_and, 2)
        v += 2
    if v < n_vec:
        _tile_strip(a, w_t, out, beta, 8 * v, use_and, 1)
    sgn = 2 if use_and else -2
    for m in range(m_n):
        for n in range(8 * n_vec, n_n):
            c = 0
            for j in range(n_w):
                c += _pc(a[m, j], w_t[j, n], use_and)
            _put(out, m, n, beta[m] + sgn * c)


@njit(**_JIT)
def xnor_into(a, w_t, k, out):
    """out[m, n] = k - 2*popcount(a[m] ^ w_t[:, n]): a uint64[M, W], w_t uint64[W, N] (transposed
    weights, ideally from ``weight_layout``: 64-byte aligned), out int32[M, N], all C-contiguous.
    Jitted, unchecked (see ``xnor_gemm`` for the checked version)."""
    beta = np.full(a.shape[0], np.int64(k))
    _tiled_gemm(a, w_t, out, beta, False)


@njit(**_JIT)
def xnor_bits_into(a, w_t, k, t_hi, t_lo, bits):
    """bits row m = packed (v >= t_hi or v <= t_lo) of v = int32(k - 2*popcount(a[m] ^ w_t[:, n])), the
    values never stored: xnor_into then pack_2sided_into in one pass (t_hi, t_lo int32[N]; bits
    uint64[M, W(N)] is zeroed here). For DeiT-Tiny's fc1 (197 x 768, K = 192) on the Zen 4: 31 us against
    40 us for the two calls."""
    bits[:] = 0
    beta = np.full(a.shape[0], np.int64(k))
    _tiled_gemm(a, w_t, (bits, t_hi, t_lo), beta, False)


@njit(**_JIT)
def and_into(a, w_t, out):
    """out[m, n] = 2*popcount(a[m] & w_t[:, n]) - popcount(a[m]); jitted, unchecked twin of ``and_gemm``."""
    beta = np.empty(a.shape[0], dtype=np.int64)
    for m in range(a.shape[0]):
        beta[m] = -_row_ones(a, m)
    _tiled_gemm(a, w_t, out, beta, True)


def _aligned_words(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised uint64 array of `shape` whose data start on a 64-byte boundary."""
    size = int(np.prod(shape))
    buf = np.empty(size + 8, dtype=np.uint64)
    skip = (-buf.ctypes.data % 64) // 8
    return buf[skip:skip + size].reshape(shape)


def weight_layout(w: np.ndarray) -> np.ndarray:
    """Packed weights uint64[N, W] -> their transpose uint64[W, N] (C order), 64-byte aligned.

    numpy aligns buffers to 16 bytes only; the tile kernel's 64-byte weight loads then straddle
    cache lines (measured: 10-30 % of the GEMM's time, depending on where the buffer lands).
    With N a multiple of 8 every row of the layout is aligned too.
    """
    out = _aligned_words(w.T.shape)
    out[...] = w.T
    return out


def stacked_weight_layout(ws: list[np.ndarray]) -> np.ndarray:
    """weight_layout of each of equal-shaped weights, stacked uint64[len(ws), W, N]: with N a multiple
    of 8 every layer's layout starts on a 64-byte boundary too."""
    out = _aligned_words((len(ws),) + ws[0].T.shape)
    for i, w in enumerate(ws):
        out[i] = w.T
    return out


@njit(**_JIT)
def _av_range(a2, v_t, n_v, out, lo, hi):
    _av_rows(a2, v_t, n_v, out, lo, hi)


# ============================================================================ thresholds -> packed bits
@njit(**_INLINE)
def _pack_word(vals, t_hi, t_lo, two_sided, base, width):
    """Bits b < width of one word: vals[base + b] >= t_hi[base + b] (or <= t_lo[...])."""
    bits = np.uint64(0)
    for b in range(width):
        v = vals[base + b]
        on = v >= t_hi[base + b]
        if two_sided:
            on = on or v <= t_lo[base + b]
        bits |= np.uint64(on) << np.uint64(b)
    return bits


@njit(**_INLINE)
def pack_row(vals, t_hi, t_lo, two_sided, out_row):
    """Pack one row of comparisons into out_row (uint64[ceil(n/64)]), pad bits 0.

    Full words are one vector compare each (popcnt.ge_word / ge_or_le_word: the compare's mask
    is the word); the last partial word loops.
    """
    n = vals.shape[0]
    full = n // 64
    for w in range(full):
        if two_sided:
            out_row[w] = ge_or_le_word(vals, w * 64, t_hi, t_lo, w * 64)
        else:
            out_row[w] = ge_word(vals, w * 64, t_hi, w * 64)
    if n > full * 64:
        out_row[full] = _pack_word(vals, t_hi, t_lo, two_sided, full * 64, n - full * 64)


@njit(**_INLINE)
def pack_bits_at(vals, vo, thr, to, width):
    """One packed word of width <= 64 comparisons vals[vo + b] >= thr[to + b] (pads 0), indexed by
    offsets: a slice per call (Numba counts references to it atomically) costs more than the compare."""
    if width == 64:
        return ge_word(vals, vo, thr, to)
    bits = np.uint64(0)
    for b in range(width):
        bits |= np.uint64(vals[vo + b] >= thr[to + b]) << np.uint64(b)
    return bits


@njit(**_JIT)
def pack_ge_into(acc, thr, out):
    """out row m = packed (acc[m, n] >= thr[n]); jitted, unchecked twin of ``pack_rows_ge``."""
    for m in range(acc.shape[0]):
        pack_row(acc[m], thr, thr, False, out[m])


@njit(**_JIT)
def pack_2sided_into(acc, t_hi, t_lo, out):
    """out row m = packed (acc >= t_hi or acc <= t_lo); jitted, unchecked twin of ``pack_rows_2sided``."""
    for m in range(acc.shape[0]):
        pack_row(acc[m], t_hi, t_lo, True, out[m])


# ============================================================================ GSB context (A.V combined)
@njit(**_INLINE)
def _value_lut(scale):
    """lut[a, c] = sgn(c) * (scale[a, 0] + sum_{k>=1} bit_k(c) * scale[a, k]) for the 2^G codes c
    (bit 0 = sign s, bit k = mask k): sum_v scale[a, v] * value_v with value_0 = 2s-1 and
    value_k = m_k * (2s-1). Also returns max |lut|."""
    g = scale.shape[0]
    lut = np.empty((g, 1 << g), dtype=np.int64)
    big = np.int64(0)
    for a in range(g):
        for c in range(1 << g):
            mag = scale[a, 0]
            for k in range(1, g):
                if (c >> k) & 1:
                    mag += scale[a, k]
            v = mag if c & 1 else -mag
            lut[a, c] = v
            big = max(big, v if v >= 0 else (-v if v > -2 ** 62 else 2 ** 62))   # |v|, saturated
    return lut, big


@njit(**_INLINE)
def _value_table(codes, lut, y, ysum, need_sum):
    """Y[a*N + t, j] = lut[a, codes[t, j]] (computed, not looked up) and (where need_sum[a]) ysum[a] = sum_t Y[a*N + t]
    (codes uint8[N, D]; y [G*N + 1, >= D] and ysum [G, >= D], int32 or int64: the caller
    checks the values fit). Lanes j >= D and the last row of y (the zero row that pads the
    walk's row lists) are left as they are: zero."""
    g = lut.shape[0]
    n, d = codes.shape
    wide = y.shape[1]
    yf = y.reshape(-1)
    cf = codes.reshape(-1)
    for a in range(g):
        la = lut[a]
        # G <= 3: lut[a, c] as arithmetic on the code's bits, which vectorises (a lookup per element
        # does not): mag = s_0 + bit_1(c)*s_1 + bit_2(c)*s_2 with s_0 = lut[a, 1], s_k = lut[a, 1 | 2^k]
        # - s_0, negated when the sign bit is 0; equal to the lut mod 2^64 (so also in an int32 table)
        s0 = la[1]
        s1 = la[3] - s0 if g > 1 else np.int64(0)
        s2 = la[5] - s0 if g > 2 else np.int64(0)
        for t in range(n):
            # flat unsigned offsets, no slice per table row (reference counts cost more than the row)
            yo = np.uint64((a * n + t) * wide)
            co = np.uint64(t * d)
            if g <= 3:
                for j in range(d):
                    uj = np.uint64(j)
                    c = np.int64(cf[co + uj])
                    mag = s0 + (-((c >> 1) & 1) & s1) + (-((c >> 2) & 1) & s2)
                    neg = (c & 1) - 1                                  # -1 where the sign bit is 0
                    yf[yo + uj] = (mag ^ neg) - neg
            else:
                for j in range(d):
                    uj = np.uint64(j)
                    yf[yo + uj] = la[np.uint64(cf[co + uj])]     # unsigned index: no wraparound code
        tot = ysum[a]
        tot[:] = 0
        if need_sum[a]:
            for t in range(n):
                row = y[a * n + t]
                for j in range(d):
                    tot[j] += row[j]


@njit(**_INLINE)
def _set_bits(word, base, ids, cnt):
    """Append base + the index of each set bit of word to ids[cnt:]; return the new count.

    Four bits per step with no test in between (ctz of 0 is 64, written past the end and
    overwritten later; ids needs 4 spare slots): sparse words cost no mispredicted branch.
    """
    end = cnt + popcount64(word)
    while cnt < end:
        ids[cnt] = base + ctz64(word)
        word &= word - np.uint64(1)
        ids[cnt + 1] = base + ctz64(word)
        word &= word - np.uint64(1)
        ids[cnt + 2] = base + ctz64(word)
        word &= word - np.uint64(1)
        ids[cnt + 3] = base + ctz64(word)
        word &= word - np.uint64(1)
        cnt += 4
    return end


def _add_rows(y, ids, n, acc):
    """acc += sum of the table rows y[ids[q]], q < n rounded up to a multiple of 4 (the caller
    pads ids with the index of y's zero row). Jitted through its overloads only."""


@overload(_add_rows, inline="always")
def _add_rows_impl(y, ids, n, acc):
    """int32 tables: four rows per step with explicit 8-lane vector adds (row width a multiple
    of 8); other tables: a plain loop per four rows."""
    if y.dtype == types.int32 and acc.dtype == types.int32:
        def add_i32x8(y, ids, n, acc):
            w = acc.shape[0]
            yf = y.reshape(-1)
            w16 = w - w % 16
            for q in range(0, n, 4):
                o1, o2, o3, o4 = ids[q] * w, ids[q + 1] * w, ids[q + 2] * w, ids[q + 3] * w
                for j in range(0, w16, 16):
                    add4_i32x16(acc, j, yf, o1 + j, o2 + j, o3 + j, o4 + j)
                if w16 < w:
                    add4_i32x8(acc, w16, yf, o1 + w16, o2 + w16, o3 + w16, o4 + w16)
        return add_i32x8

    def add_loop(y, ids, n, acc):
        for q in range(0, n, 4):
            s1, s2, s3, s4 = y[ids[q]], y[ids[q + 1]], y[ids[q + 2]], y[ids[q + 3]]
            for j in range(acc.shape[0]):
                acc[j] += (s1[j] + s2[j]) + (s3[j] + s4[j])
    return add_loop


@njit(**_INLINE)
def _pad4(ids, n, zero):
    """Pad the row list ids[:n] with the zero row's index up to a multiple of 4 (ids has 3 spare slots)."""
    ids[n] = zero
    ids[n + 1] = zero
    ids[n + 2] = zero


@njit(**_INLINE)
def _context_sparse(planes, counts, n_keys, d, y, ysum, out, r0, c0, add_ids, sub_ids, acc):
    """ctx[i] = sum_a sum_{t : a_i[t]} Y[a*N + t]: collect the set bits of each attention row,
    then add those table rows, four at a time; a plane row denser than half contributes the
    sum of all its rows minus the rows of its zero bits (acc - S = -(-acc + S))."""
    g, m_n, w_n = planes.shape
    tail = n_keys - (w_n - 1) * 64
    last = (~np.uint64(0)) >> np.uint64(64 - tail)
    zero = y.shape[0] - 1
    for i in range(m_n):
        acc[:] = 0
        n_add = 0
        n_sub = 0
        for a in range(g):
            base = a * n_keys
            if 2 * counts[a, i] > n_keys:
                tot = ysum[a]
                for j in range(acc.shape[0]):
                    acc[j] += tot[j]
                for w in range(w_n - 1):
                    n_sub = _set_bits(~planes[a, i, w], base + w * 64, sub_ids, n_sub)
                n_sub = _set_bits(~planes[a, i, w_n - 1] & last, base + (w_n - 1) * 64, sub_ids, n_sub)
            else:
                for w in range(w_n):      # words by index: no slice per (row, plane)
                    n_add = _set_bits(planes[a, i, w], base + w * 64, add_ids, n_add)
        _pad4(add_ids, n_add, zero)
        _add_rows(y, add_ids, n_add, acc)
        if n_sub:
            _pad4(sub_ids, n_sub, zero)
            for j in range(acc.shape[0]):
                acc[j] = -acc[j]
            _add_rows(y, sub_ids, n_sub, acc)
            for j in range(acc.shape[0]):
                acc[j] = -acc[j]
        oc = np.uint64(c0)
        for j in range(d):
            out[r0 + i, oc + np.uint64(j)] = acc[j]


@njit(**_INLINE)
def _lookup_context_applies(g, d):
    """Whether context_head's sparse walk takes _context_lookups: permutes on this target, codes that
    fit a TABLE-entry table (so the 2G tables' index fits an id's top bits) and head dims of whole
    LANES-lane vectors (the int32 bound is checked apart; N < 2^ID_BITS holds for every valid model)."""
    return PERMUTE_CONTEXT and (1 << g) <= TABLE and d % LANES == 0


@njit(**_INLINE)
def _lookup_tables(lut, tables):
    """tables[TABLE*a + c] = lut[a, c] and tables[TABLE*(G + a) + c] = -lut[a, c] (the negated tables
    of the planes walked through their zero bits); entries past 2^G stay 0."""
    g, n_c = lut.shape
    for a in range(g):
        for c in range(n_c):
            tables[TABLE * a + c] = lut[a, c]
            tables[TABLE * (g + a) + c] = -lut[a, c]


@njit(**_INLINE)
def _context_lookups(planes, counts, n_keys, codes, tables, totals, need_sum, out, r0, c0, ids, zero, init):
    """_context_sparse without a value table: each row's keys (id (a << ID_BITS) | t for plane a) are
    summed by lookup_sums, which looks the D value codes of key t up in plane a's table, sixteen per
    permute, keeping the sums in registers. A plane row denser than half contributes the plane's
    total over all keys plus its zero bits' keys looked up in the negated table G + a.
    The keys are listed by bit_ids.append_bit_ids (no branch per bit where the CPU has VBMI2).
    totals int64 [G, >= D] (filled here for the planes of need_sum), zero int64 [>= D] of zeros,
    init int64 [>= D] scratch, ids int32 [>= G*N + SPARE]."""
    g, m_n, w_n = planes.shape
    d = codes.shape[1]
    tail = n_keys - (w_n - 1) * 64
    last = (~np.uint64(0)) >> np.uint64(64 - tail)
    for a in range(g):
        if need_sum[a]:
            for t in range(n_keys):
                ids[t] = (a << ID_BITS) | t
            lookup_sums(tables, codes, ids, n_keys, zero, totals[a], 0)
    flat = out.reshape(-1)
    e = out.shape[1]
    for i in range(m_n):
        n = 0
        dense = False
        for a in range(g):
            if 2 * counts[a, i] > n_keys:
                if dense:
                    init[:d] += totals[a, :d]
                else:
                    init[:d] = totals[a, :d]
                dense = True
                neg = (g + a) << ID_BITS
                for w in range(w_n - 1):
                    n = append_bit_ids(~planes[a, i, w], neg + w * 64, ids, n)
                n = append_bit_ids(~planes[a, i, w_n - 1] & last, neg + (w_n - 1) * 64, ids, n)
            else:
                for w in range(w_n):
                    n = append_bit_ids(planes[a, i, w], (a << ID_BITS) + w * 64, ids, n)
        lookup_sums(tables, codes, ids, n, init if dense else zero, flat, (r0 + i) * e + c0)


@njit(**_INLINE)
def _value_columns(codes, g, v_t):
    """Value planes packed along the keys, transposed for _row_counts: v_t uint64[W, (2G-1)*D],
    column blocks: sign s, then s & m_k (k = 1..G-1), then m_k (k = 1..G-1)."""
    n, d = codes.shape
    v_t[:, :] = 0
    for t in range(n):
        w = t >> 6
        sh = np.uint64(t & 63)
        code = codes[t]
        row = v_t[w]
        for j in range(d):
            row[j] |= np.uint64(code[j] & 1) << sh
        for k in range(1, g):
            both = k * d
            mask = (g - 1 + k) * d
            for j in range(d):
                mk = np.uint64((code[j] >> k) & 1)
                row[mask + j] |= mk << sh
                row[both + j] |= (mk & np.uint64(code[j] & 1)) << sh


@njit(**_INLINE)
def _context_dense(planes, counts, v_t, scale, acc, d, out, r0, c0):
    """ctx[i, j] = sum_a [scale[a,0]*(2 pc(a&s) - pc(a)) + sum_k scale[a,k]*(2 pc(a&s&m_k) - pc(a&m_k))]
    (acc int64[(2G-1)*D] scratch)."""
    g, m_n, _ = planes.shape
    for i in range(m_n):
        res = out[r0 + i, c0:c0 + d]
        res[:] = 0
        for a in range(g):
            _counts_and(planes[a], i, v_t, acc)
            ones = counts[a, i]
            s0 = scale[a, 0]
            for j in range(d):
                res[j] += s0 * (2 * acc[j] - ones)
            for k in range(1, g):
                sk = scale[a, k]
                both = acc[k * d:(k + 1) * d]
                mask = acc[(g - 1 + k) * d:(g + k) * d]
                for j in range(d):
                    res[j] += sk * (2 * both[j] - mask[j])


@njit(**_INLINE)
def _sparse_is_cheaper(counts, n_keys, w_n, d):
    """Cost estimate (in int64 additions) of the two context methods for one head."""
    g, m_n = counts.shape
    walk = 0
    for a in range(g):
        for i in range(m_n):
            c = counts[a, i]
            walk += min(c, n_keys - c) + 1
    if _lookup_context_applies(g, d):
        # value-code lookups: no table, about half the cost per listed key of a table row's additions
        # (measured on an AMD Zen 4, G=3, N=198, D=64: sparse and dense cross near a plane density of 0.45)
        sparse = walk * d // 2
    else:
        sparse = walk * d + g * n_keys * d * (g + 1)        # bit walk + the value table it builds
    dense = SPARSE_PER_WORD * m_n * g * w_n * (2 * g - 1) * d + n_keys * d * (2 * g - 1)
    return sparse <= dense


@njit(**_INLINE)
def _fits_int32(big, g, n_keys):
    """Every partial sum of a context row is bounded by 2*G*N*max|Y|: when that fits int32, the value
    table and the sums are int32 (half the memory traffic), exactly."""
    return big < (2 ** 31 - 1) // (2 * g * n_keys)


@njit(**_JIT)
def context_workspace(scale, n_keys, d):
    """What context_head needs besides the head's planes: the value lookup table of the
    scale products and scratch arrays for heads of N keys and head dim D (built once per
    layer call, not once per head). The walk's tables have G*N rows plus a zero row, and
    lanes rounded up to a multiple of 8 (zero) for the 8-lane vector adds. Where the walk looks the
    codes up instead (_context_lookups), it needs the small lookup tables and the planes' totals."""
    g = scale.shape[0]
    w_n = (n_keys + 63) // 64
    wide = (d + 7) // 8 * 8
    lut, big = _value_lut(scale)
    # only the table the walk will use is full size (zeroing the other cost ~0.1 ms per image)
    fits = _fits_int32(big, g, n_keys)
    lookups = fits and _lookup_context_applies(g, d)
    tables = np.zeros(2 * g * TABLE if lookups else 0, dtype=np.int32)
    if lookups:
        _lookup_tables(lut, tables)
    return (lut, big, np.zeros((1 if fits else g * n_keys + 1, wide), dtype=np.int64),
            np.zeros((g * n_keys + 1 if fits and not lookups else 1, wide), dtype=np.int32),
            np.zeros((g, wide), dtype=np.int64), np.zeros((g, wide), dtype=np.int32),
            np.empty((2, g * n_keys + 4), dtype=np.int64), np.empty(wide, dtype=np.int64),
            np.empty(wide, dtype=np.int32),
            np.empty((w_n, (2 * g - 1) * d), dtype=np.uint64), np.empty((2 * g - 1) * d, dtype=np.int64),
            np.zeros(g, dtype=np.bool_), tables, np.zeros(wide, dtype=np.int64),
            np.empty(g * n_keys + SPARE if lookups else 0, dtype=np.int32))


@njit(**_JIT)
def context_head(planes, counts, codes, scale, n_keys, out, r0, c0, av_strategy, ws):
    """GSB context of one head: out[r0 + i, c0 + j] = sum_a sum_v scale[a, v] * D[a][v][i, j].

    planes uint64[G, M, W] attention planes packed along the N keys (pads 0); counts
    int64[G, M] their popcounts per row; codes uint8[N, D] the value planes as bits
    (bit 0 sign, bit k mask k); scale int64[G, G]; av_strategy 0 = choose by cost, 1 = sparse
    bit walk, 2 = popcount form; ws = context_workspace(scale, N, D). Jitted, unchecked
    (see ``gsb_av_context``). Returns the av_strategy used (1 or 2).
    """
    wide_vectors()
    lut, big, y64, y32, ysum64, ysum32, ids, acc64, acc32, v_t, cnt, need_sum, tables, zero, ids32 = ws
    g, m_n, w_n = planes.shape
    d = codes.shape[1]
    if av_strategy == 0:
        av_strategy = 1 if _sparse_is_cheaper(counts, n_keys, w_n, d) else 2
    if av_strategy == 1:
        for a in range(g):
            need_sum[a] = False
            for i in range(m_n):
                need_sum[a] |= 2 * counts[a, i] > n_keys
        fits = _fits_int32(big, g, n_keys)
        if fits and _lookup_context_applies(g, d):
            _context_lookups(planes, counts, n_keys, codes, tables, ysum64, need_sum, out, r0, c0, ids32, zero,
                             acc64)
        elif fits:
            _value_table(codes, lut, y32, ysum32, need_sum)
            _context_sparse(planes, counts, n_keys, d, y32, ysum32, out, r0, c0, ids[0], ids[1], acc32)
        else:
            _value_table(codes, lut, y64, ysum64, need_sum)
            _context_sparse(planes, counts, n_keys, d, y64, ysum64, out, r0, c0, ids[0], ids[1], acc64)
    else:
        _value_columns(codes, g, v_t)
        _context_dense(planes, counts, v_t, scale, cnt, d, out, r0, c0)
    return av_strategy


@njit(**_JIT)
def row_popcounts(planes):
    """counts[a, i] = popcount of packed row i of plane a (planes uint64[G, M, W] -> int64[G, M])."""
    g, m_n, w_n = planes.shape
    counts = np.empty((g, m_n), dtype=np.int64)
    for a in range(g):
        for i in range(m_n):
            c = 0
            for w in range(w_n):
                c += popcount64(planes[a, i, w])
            counts[a, i] = c
    return counts


# ============================================================================ validation
def _packed(name: str, x, ndim: int) -> np.ndarray:
    """Check a packed operand: numpy uint64 array with ndim axes; return it C-contiguous."""
    if not isinstance(x, np.ndarray):
        raise KernelInputError(f"gsbsim.kernels: {name} must be a numpy uint64 array, got {type(x).__name__}")
    if x.dtype != np.uint64:
        raise KernelInputError(f"gsbsim.kernels: {name} must have dtype uint64 (packed bits), got {x.dtype}")
    if x.ndim != ndim:
        raise KernelInputError(f"gsbsim.kernels: {name} must have {ndim} axes, got shape {x.shape}")
    return np.ascontiguousarray(x)


def _same_words(what: str, wa: int, wb: int) -> None:
    if wa != wb:
        raise KernelInputError(f"gsbsim.kernels: {what} disagree on the number of packed words: {wa} vs {wb}")


def _check_pads(name: str, x: np.ndarray, k: int) -> None:
    """Pad bits (positions >= k in the last word) must be 0, else k - 2*popcount is wrong."""
    used = k % WORD_BITS
    if used and x.size and np.any(x[..., -1] >> np.uint64(used)):
        raise KernelInputError(f"gsbsim.kernels: {name} has non-zero pad bits beyond k={k}")


def _xnor_args(a, w, k):
    a = _packed("a", a, 2)
    w = _packed("w", w, 2)
    _same_words("a [M, W] and w [N, W]", a.shape[1], w.shape[1])
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise KernelInputError(f"gsbsim.kernels: k must be a non-negative int, got {k!r}")
    k = int(k)
    if n_words(k) != a.shape[1]:
        raise KernelInputError(f"gsbsim.kernels: k={k} needs {n_words(k)} words but a and w have {a.shape[1]}")
    _check_pads("a", a, k)
    _check_pads("w", w, k)
    return a, weight_layout(w), k


def _and_args(a, w):
    a = _packed("a", a, 2)
    w = _packed("w", w, 2)
    _same_words("a [M, W] and w [N, W]", a.shape[1], w.shape[1])
    return a, weight_layout(w)


def _av_args(a_planes, v_sign, v_masks):
    a_planes = _packed("a_planes", a_planes, 3)
    v_sign = _packed("v_sign", v_sign, 2)
    v_masks = _packed("v_masks", v_masks, 3)
    if a_planes.shape[0] < 1:
        raise KernelInputError("gsbsim.kernels: a_planes needs at least one plane (Ga >= 1)")
    _same_words("a_planes [Ga, M, W] and v_sign [D, W]", a_planes.shape[2], v_sign.shape[1])
    if v_masks.shape[1:] != v_sign.shape:
        raise KernelInputError(
            f"gsbsim.kernels: v_masks must be [Gv-1, D, W] = [*, {v_sign.shape[0]}, {v_sign.shape[1]}], "
            f"got {v_masks.shape}"
        )
    n_a, n_m, n_w = a_planes.shape
    n_v = v_masks.shape[0] + 1
    d = v_sign.shape[0]
    # planes: sign, sign & mask_q (q >= 1), mask_q (q >= 1) -> [(2*n_v - 1) * D, W] -> transposed
    planes = np.concatenate([v_sign[None], v_sign[None] & v_masks, v_masks]).reshape(-1, n_w)
    v_t = np.ascontiguousarray(planes.T)
    out = np.empty((n_a, n_v, n_m, d), dtype=np.int32)
    return a_planes.reshape(n_a * n_m, n_w), v_t, n_v, out


def _thresholds(name: str, t, n_cols: int) -> np.ndarray:
    t = np.asarray(t)
    if t.dtype.kind not in "iu" or t.shape != (n_cols,):
        raise KernelInputError(
            f"gsbsim.kernels: {name} must be an integer array of shape ({n_cols},), got {t.dtype} {t.shape}"
        )
    if t.dtype == np.uint64 and t.size and t.max() > np.iinfo(np.int64).max:
        raise KernelInputError(f"gsbsim.kernels: {name} has values beyond int64")
    return np.ascontiguousarray(t, dtype=np.int64)


def _accumulator(acc) -> np.ndarray:
    if not isinstance(acc, np.ndarray) or acc.dtype not in (np.int32, np.int64) or acc.ndim != 2:
        got = f"{acc.dtype} {acc.shape}" if isinstance(acc, np.ndarray) else type(acc).__name__
        raise KernelInputError(f"gsbsim.kernels: acc must be a 2-D int32 or int64 array, got {got}")
    return np.ascontiguousarray(acc)


_POOL: ThreadPoolExecutor | None = None


def _in_threads(work: Callable[[int, int], None], n_rows: int) -> None:
    """Run work(lo, hi) on row blocks in a thread pool (one block per core).

    The jitted cores release the GIL (nogil=True), so plain Python threads run them in
    parallel; no Numba ``parallel=True`` build (slow to compile, and its threads would
    fight OpenBLAS's on small machines).
    """
    global _POOL
    n = max(1, min(os.cpu_count() or 1, n_rows))
    if n == 1:
        work(0, n_rows)
        return
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=os.cpu_count(), thread_name_prefix="gsbsim-kernels")
    bounds = [(b * n_rows) // n for b in range(n + 1)]
    for f in [_POOL.submit(work, bounds[b], bounds[b + 1]) for b in range(n)]:
        f.result()


#: how the GSB A.V context is computed: "auto" (per head, the cheaper), "sparse" (walk the attention bits) or
#: "dense" (popcounts); all give the same integers (the codes context_head takes)
AV_STRATEGIES = {"auto": 0, "sparse": 1, "dense": 2}


def _context_args(a_planes, v_planes, scale, av_strategy):
    a_planes = _packed("a_planes", a_planes, 3)
    if not isinstance(v_planes, np.ndarray) or v_planes.ndim != 3 or v_planes.dtype.kind not in "iub":
        raise KernelInputError("gsbsim.kernels: v_planes must be an integer {0,1} array [G, N, D]")
    g, n_keys, _ = v_planes.shape
    if not 1 <= g <= 8:
        raise KernelInputError(f"gsbsim.kernels: v_planes must have 1 to 8 planes, got {g}")
    if v_planes.size and (v_planes.min() < 0 or v_planes.max() > 1):
        raise KernelInputError("gsbsim.kernels: v_planes must hold only 0 and 1")
    if a_planes.shape[0] != g:
        raise KernelInputError(f"gsbsim.kernels: a_planes has {a_planes.shape[0]} planes, v_planes {g}")
    _same_words("a_planes [G, M, W] and the N keys of v_planes", a_planes.shape[2], n_words(n_keys))
    _check_pads("a_planes", a_planes, n_keys)
    scale = np.asarray(scale)
    if scale.dtype.kind not in "iu" or scale.shape != (g, g):
        raise KernelInputError(f"gsbsim.kernels: scale must be an integer array of shape ({g}, {g}), "
                               f"got {scale.dtype} {scale.shape}")
    if av_strategy not in AV_STRATEGIES:
        raise KernelInputError(f"gsbsim.kernels: av_strategy must be one of {', '.join(AV_STRATEGIES)}, "
                               f"got {av_strategy!r}")
    weights = (np.uint8(1) << np.arange(g, dtype=np.uint8))[:, None, None]
    codes = np.ascontiguousarray((v_planes.astype(np.uint8) * weights).sum(0, dtype=np.uint8))
    return a_planes, codes, np.ascontiguousarray(scale, dtype=np.int64), AV_STRATEGIES[av_strategy]


# ============================================================================ public API
def xnor_gemm(a: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    """+-1 x +-1 products of packed rows: a uint64[M, W], w uint64[N, W] -> int32[M, N].

    out[m, n] = k - 2 * popcount(a[m] ^ w[n]), k the true (unpadded) length; pad bits
    must be 0 in both operands (checked).
    """
    a, w_t, k = _xnor_args(a, w, k)
    out = np.empty((a.shape[0], w_t.shape[1]), dtype=np.int32)
    xnor_into(a, w_t, k, out)
    return out


def xnor_gemm_par(a: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    """``xnor_gemm`` with rows split over one thread per core (opt-in)."""
    a, w_t, k = _xnor_args(a, w, k)
    out = np.empty((a.shape[0], w_t.shape[1]), dtype=np.int32)
    _in_threads(lambda lo, hi: xnor_into(a[lo:hi], w_t, k, out[lo:hi]), a.shape[0])
    return out


def and_gemm(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """{0,1} x +-1 products of packed rows: a uint64[M, W], w uint64[N, W] -> int32[M, N].

    out[m, n] = 2 * popcount(a[m] & w[n]) - popcount(a[m]); a's pad bits must be 0.
    """
    a, w_t = _and_args(a, w)
    out = np.empty((a.shape[0], w_t.shape[1]), dtype=np.int32)
    and_into(a, w_t, out)
    return out


def and_gemm_par(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``and_gemm`` with rows split over one thread per core (opt-in)."""
    a, w_t = _and_args(a, w)
    out = np.empty((a.shape[0], w_t.shape[1]), dtype=np.int32)
    _in_threads(lambda lo, hi: and_into(a[lo:hi], w_t, out[lo:hi]), a.shape[0])
    return out


def gsb_av(a_planes: np.ndarray, v_sign: np.ndarray, v_masks: np.ndarray) -> np.ndarray:
    """GSB's multi-plane attention x value product -> int32[Ga, Gv, M, D].

    a_planes uint64[Ga, M, W]: the {0,1} attention groups, packed along the keys.
    v_sign uint64[D, W]: V's +-1 sign plane, transposed ([D, keys]) and packed along keys.
    v_masks uint64[Gv-1, D, W]: V's {0,1} mask planes (may be empty: Gv = 1).

    out[g, 0]     = 2*pc(a_g & s) - pc(a_g)               (+-1 sign plane)
    out[g, q>=1]  = 2*pc(a_g & m_q & s) - pc(a_g & m_q)   (sign * mask, values in {-1, 0, +1})

    All Ga x Gv plane pairs come out of one pass over each attention row. a's pad bits
    must be 0; the scales of the group pairs are applied by the caller (or use
    ``gsb_av_context``, which needs far fewer operations when the planes are sparse).
    """
    a2, v_t, n_v, out = _av_args(a_planes, v_sign, v_masks)
    _av_range(a2, v_t, n_v, out, 0, a2.shape[0])
    return out


def gsb_av_par(a_planes: np.ndarray, v_sign: np.ndarray, v_masks: np.ndarray) -> np.ndarray:
    """``gsb_av`` with (plane, row) pairs split over one thread per core (opt-in)."""
    a2, v_t, n_v, out = _av_args(a_planes, v_sign, v_masks)
    _in_threads(lambda lo, hi: _av_range(a2, v_t, n_v, out, lo, hi), a2.shape[0])
    return out


def gsb_av_context(a_planes: np.ndarray, v_planes: np.ndarray, scale: np.ndarray,
                   av_strategy: str = "auto") -> np.ndarray:
    """GSB context of one head: sum_a sum_v scale[a, v] * D[a][v] -> int64[M, D].

    a_planes uint64[G, M, W]: attention planes (b1, M_2..M_G) packed along the N keys, pads 0.
    v_planes {0,1}[G, N, D]: the value planes unpacked (sign s, then M_2..M_G), keys first.
    scale int[G, G]: the scale products (``ctx.scale``). D[a][v] is spec §6's plane product.
    av_strategy: "sparse" (walk the attention bits), "dense" (popcounts) or "auto" (cheaper one).
    """
    planes, codes, scale, how = _context_args(a_planes, v_planes, scale, av_strategy)
    n_keys, d = codes.shape
    out = np.empty((planes.shape[1], d), dtype=np.int64)
    context_head(planes, row_popcounts(planes), codes, scale, n_keys, out, 0, 0, how,
                 context_workspace(scale, n_keys, d))
    return out


def pack_rows_ge(acc: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Binarize accumulators with per-column thresholds and pack: bit = acc >= thr.

    acc int32/int64[M, N], thr int[N] -> uint64[M, ceil(N/64)], LSB first along N,
    pad bits 0 (ready to feed the next layer as its packed input).
    """
    acc = _accumulator(acc)
    thr = _thresholds("thr", thr, acc.shape[1])
    out = np.empty((acc.shape[0], n_words(acc.shape[1])), dtype=np.uint64)
    pack_ge_into(acc, thr, out)
    return out


def pack_rows_2sided(acc: np.ndarray, t_hi: np.ndarray, t_lo: np.ndarray) -> np.ndarray:
    """Two-sided binarizer (GELU's non-monotonic case): bit = acc >= t_hi or acc <= t_lo.

    Same shapes and packing as ``pack_rows_ge``.
    """
    acc = _accumulator(acc)
    t_hi = _thresholds("t_hi", t_hi, acc.shape[1])
    t_lo = _thresholds("t_lo", t_lo, acc.shape[1])
    out = np.empty((acc.shape[0], n_words(acc.shape[1])), dtype=np.uint64)
    pack_2sided_into(acc, t_hi, t_lo, out)
    return out


# the cached kernels above contain popcnt's, table_lookup's and bit_ids' intrinsics: an edit of any recompiles them
for _kernel in list(globals().values()):
    if getattr(_kernel, "_cache", None) is not None and getattr(_kernel, "__module__", None) == __name__:
        cache_depends_on(_kernel, bit_ids, popcnt, table_lookup)
