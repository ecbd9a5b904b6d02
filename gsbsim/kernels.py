"""Packed binary GEMMs for the simulator, compiled with Numba.

These are the optimised twins of the plain-numpy rules in ``gsbsim.conventions``
(``xnor_dot``, ``and_dot``) and must agree with them integer for integer:

* ``xnor_gemm``  +-1 x +-1:   dot = k - 2 * popcount(a ^ w)
* ``and_gemm``   {0,1} x +-1: dot = 2 * popcount(a & w) - popcount(a)
* ``gsb_av``     GSB's multi-plane attention x value product (see its docstring)
* ``pack_rows_ge`` / ``pack_rows_2sided``  integer thresholds -> packed bits

How they are fast: the weights are transposed once per call to ``[W, N]`` so that the
innermost loop runs over N output columns with contiguous loads; LLVM then vectorises
``popcount(a_word ^ w_word)`` across columns (AVX2 nibble-table popcount), with one
scalar a-word broadcast per (row, word). This beats register-tiling along K because
binary ViT shapes have very few words per row (K=192 is 3 words). Everything runs
single-threaded by default; the ``*_par`` variants split rows over Numba threads and
are opt-in, because Numba threads on top of OpenBLAS threads oversubscribe small
machines.

Each public function is a thin Python wrapper that validates shapes and dtypes
(``KernelInputError``, a ValueError) and then calls a jitted core.
"""
from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange

from gsbsim.conventions import WORD_BITS, n_words
from gsbsim.popcnt import popcount64

__all__ = [
    "KernelInputError",
    "xnor_gemm",
    "xnor_gemm_par",
    "and_gemm",
    "and_gemm_par",
    "gsb_av",
    "gsb_av_par",
    "pack_rows_ge",
    "pack_rows_2sided",
]

_JIT = dict(cache=True, nogil=True, fastmath=False, boundscheck=False)
_INLINE = dict(inline="always", nogil=True, fastmath=False, boundscheck=False)


class KernelInputError(ValueError):
    """Bad shape, dtype or padding passed to a gsbsim.kernels function."""


# ============================================================================ jitted building blocks
@njit(**_INLINE)
def _pair_count(x, y, use_and):
    """popcount(x AND y) or popcount(x XOR y); use_and is a compile-time constant after inlining."""
    return popcount64(x & y) if use_and else popcount64(x ^ y)


@njit(**_INLINE)
def _row_counts(a, m, w_t, use_and, acc):
    """acc[n] = sum_j popcount(a[m, j] OP w_t[j, n]), OP = AND if use_and else XOR.

    The n loop is innermost and contiguous so LLVM vectorises it. The first word
    assigns instead of adding (no separate zeroing pass: worth ~10% at K=192, 3 words).
    """
    n_cols = w_t.shape[1]
    n_w = a.shape[1]
    if n_w == 0:
        acc[:] = 0
        return
    x = a[m, 0]
    for n in range(n_cols):
        acc[n] = _pair_count(x, w_t[0, n], use_and)
    for j in range(1, n_w):
        x = a[m, j]
        for n in range(n_cols):
            acc[n] += _pair_count(x, w_t[j, n], use_and)


@njit(**_INLINE)
def _row_ones(a, m):
    """popcount of the whole packed row a[m] (the {0,1} operand's number of ones)."""
    total = 0
    for j in range(a.shape[1]):
        total += popcount64(a[m, j])
    return total


@njit(**_INLINE)
def _xnor_rows(a, w_t, k, out, lo, hi):
    acc = np.empty(w_t.shape[1], dtype=np.int64)
    for m in range(lo, hi):
        _row_counts(a, m, w_t, False, acc)
        for n in range(acc.shape[0]):
            out[m, n] = k - 2 * acc[n]


@njit(**_INLINE)
def _and_rows(a, w_t, out, lo, hi):
    acc = np.empty(w_t.shape[1], dtype=np.int64)
    for m in range(lo, hi):
        _row_counts(a, m, w_t, True, acc)
        ones = _row_ones(a, m)
        for n in range(acc.shape[0]):
            out[m, n] = 2 * acc[n] - ones


@njit(**_INLINE)
def _av_rows(a2, v_t, n_v, out, lo, hi):
    """GSB A.V for rows lo..hi of a2 = a_planes reshaped [Ga*M, W].

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
        _row_counts(a2, r, v_t, True, acc)
        ones = _row_ones(a2, r)
        for n in range(d):
            out[g, 0, m, n] = 2 * acc[n] - ones
        for q in range(1, n_v):
            both = q * d
            mask = (n_v + q - 1) * d
            for n in range(d):
                out[g, q, m, n] = 2 * acc[both + n] - acc[mask + n]


@njit(**_INLINE)
def _block(b, n_blocks, n_rows):
    """Row range [lo, hi) of block b when n_rows rows are split into n_blocks blocks."""
    return (b * n_rows) // n_blocks, ((b + 1) * n_rows) // n_blocks


# Serial drivers (default) and their parallel twins: separate tiny functions, because
# Numba's on-disk cache does not key on the `parallel` flag.
@njit(**_JIT)
def _xnor_serial(a, w_t, k, out):
    _xnor_rows(a, w_t, k, out, 0, a.shape[0])


@njit(parallel=True, **_JIT)
def _xnor_parallel(a, w_t, k, out, n_blocks):
    for b in prange(n_blocks):
        lo, hi = _block(b, n_blocks, a.shape[0])
        _xnor_rows(a, w_t, k, out, lo, hi)


@njit(**_JIT)
def _and_serial(a, w_t, out):
    _and_rows(a, w_t, out, 0, a.shape[0])


@njit(parallel=True, **_JIT)
def _and_parallel(a, w_t, out, n_blocks):
    for b in prange(n_blocks):
        lo, hi = _block(b, n_blocks, a.shape[0])
        _and_rows(a, w_t, out, lo, hi)


@njit(**_JIT)
def _av_serial(a2, v_t, n_v, out):
    _av_rows(a2, v_t, n_v, out, 0, a2.shape[0])


@njit(parallel=True, **_JIT)
def _av_parallel(a2, v_t, n_v, out, n_blocks):
    for b in prange(n_blocks):
        lo, hi = _block(b, n_blocks, a2.shape[0])
        _av_rows(a2, v_t, n_v, out, lo, hi)


@njit(**_JIT)
def _pack_rows(acc, t_hi, t_lo, two_sided, out):
    """out bit n of row m = acc[m, n] >= t_hi[n]  (or acc[m, n] <= t_lo[n] if two_sided)."""
    n_cols = acc.shape[1]
    for m in range(acc.shape[0]):
        for word in range(out.shape[1]):
            base = word * 64
            width = min(64, n_cols - base)
            bits = np.uint64(0)
            for b in range(width):
                v = acc[m, base + b]
                on = v >= t_hi[base + b]
                if two_sided:
                    on = on or v <= t_lo[base + b]
                bits |= np.uint64(on) << np.uint64(b)
            out[m, word] = bits


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
    if used and x.shape[0] and np.any(x[:, -1] >> np.uint64(used)):
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
    return a, np.ascontiguousarray(w.T), k


def _and_args(a, w):
    a = _packed("a", a, 2)
    w = _packed("w", w, 2)
    _same_words("a [M, W] and w [N, W]", a.shape[1], w.shape[1])
    return a, np.ascontiguousarray(w.T)


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


def _n_blocks(n_rows: int) -> int:
    return max(1, min(n_rows, 4 * get_num_threads()))


# ============================================================================ public API
def xnor_gemm(a: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    """+-1 x +-1 products of packed rows: a uint64[M, W], w uint64[N, W] -> int32[M, N].

    out[m, n] = k - 2 * popcount(a[m] ^ w[n]), k the true (unpadded) length; pad bits
    must be 0 in both operands (checked).
    """
    a, w_t, k = _xnor_args(a, w, k)
    out = np.empty((a.shape[0], w_t.shape[1]), dtype=np.int32)
    _xnor_serial(a, w_t, k, out)
    return out


def xnor_gemm_par(a: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    """``xnor_gemm`` with rows split over Numba threads (opt-in)."""
    a, w_t, k = _xnor_args(a, w, k)
    out = np.empty((a.shape[0], w_t.shape[1]), dtype=np.int32)
    _xnor_parallel(a, w_t, k, out, _n_blocks(a.shape[0]))
    return out


def and_gemm(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """{0,1} x +-1 products of packed rows: a uint64[M, W], w uint64[N, W] -> int32[M, N].

    out[m, n] = 2 * popcount(a[m] & w[n]) - popcount(a[m]); a's pad bits must be 0.
    """
    a, w_t = _and_args(a, w)
    out = np.empty((a.shape[0], w_t.shape[1]), dtype=np.int32)
    _and_serial(a, w_t, out)
    return out


def and_gemm_par(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``and_gemm`` with rows split over Numba threads (opt-in)."""
    a, w_t = _and_args(a, w)
    out = np.empty((a.shape[0], w_t.shape[1]), dtype=np.int32)
    _and_parallel(a, w_t, out, _n_blocks(a.shape[0]))
    return out


def gsb_av(a_planes: np.ndarray, v_sign: np.ndarray, v_masks: np.ndarray) -> np.ndarray:
    """GSB's multi-plane attention x value product -> int32[Ga, Gv, M, D].

    a_planes uint64[Ga, M, W]: the {0,1} attention groups, packed along the keys.
    v_sign uint64[D, W]: V's +-1 sign plane, transposed ([D, keys]) and packed along keys.
    v_masks uint64[Gv-1, D, W]: V's {0,1} mask planes (may be empty: Gv = 1).

    out[g, 0]     = 2*pc(a_g & s) - pc(a_g)               (+-1 sign plane)
    out[g, q>=1]  = 2*pc(a_g & m_q & s) - pc(a_g & m_q)   (sign * mask, values in {-1, 0, +1})

    All Ga x Gv plane pairs come out of one pass over each attention row. a's pad bits
    must be 0; the scales of the group pairs are applied by the caller.
    """
    a2, v_t, n_v, out = _av_args(a_planes, v_sign, v_masks)
    _av_serial(a2, v_t, n_v, out)
    return out


def gsb_av_par(a_planes: np.ndarray, v_sign: np.ndarray, v_masks: np.ndarray) -> np.ndarray:
    """``gsb_av`` with (plane, row) pairs split over Numba threads (opt-in)."""
    a2, v_t, n_v, out = _av_args(a_planes, v_sign, v_masks)
    _av_parallel(a2, v_t, n_v, out, _n_blocks(a2.shape[0]))
    return out


def pack_rows_ge(acc: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Binarize accumulators with per-column thresholds and pack: bit = acc >= thr.

    acc int32/int64[M, N], thr int[N] -> uint64[M, ceil(N/64)], LSB first along N,
    pad bits 0 (ready to feed the next layer as its packed input).
    """
    acc = _accumulator(acc)
    thr = _thresholds("thr", thr, acc.shape[1])
    out = np.empty((acc.shape[0], n_words(acc.shape[1])), dtype=np.uint64)
    _pack_rows(acc, thr, thr, False, out)
    return out


def pack_rows_2sided(acc: np.ndarray, t_hi: np.ndarray, t_lo: np.ndarray) -> np.ndarray:
    """Two-sided binarizer (GELU's non-monotonic case): bit = acc >= t_hi or acc <= t_lo.

    Same shapes and packing as ``pack_rows_ge``.
    """
    acc = _accumulator(acc)
    t_hi = _thresholds("t_hi", t_hi, acc.shape[1])
    t_lo = _thresholds("t_lo", t_lo, acc.shape[1])
    out = np.empty((acc.shape[0], n_words(acc.shape[1])), dtype=np.uint64)
    _pack_rows(acc, t_hi, t_lo, True, out)
    return out
