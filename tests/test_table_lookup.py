"""table_lookup: lookup_i32, a row of int32 table lookups sixteen at a time (the softmax's exp table), and
lookup_sums, rows of lookups summed over a list of keys (the GSB A.V context's value tables).

The whole fast path against the golden one covers it in use (tests/test_fast.py; on an AVX2-only
target, tests/test_kernels.py); here every table size and index is checked on its own."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from gsbsim.engine.table_lookup import (CHUNK, HELD, ID_BITS, LANES, TABLE, has_permute_lookup, lookup_i32, lookup_sums,
                                        padded_table_size)


@njit  # not cached: the cache would not see an edit of the intrinsic
def _lookup_all(table, src, sub, dst):
    lookup_i32(table, src, src.shape[0], sub, dst)


def _padded(lut: np.ndarray) -> np.ndarray:
    table = np.zeros(padded_table_size(lut.shape[0]), dtype=np.int32)
    table[:lut.shape[0]] = lut
    return table


def test_padded_table_size_is_a_multiple_of_the_chunk():
    assert [padded_table_size(n) for n in (1, 32, 33, 65, 96, 97)] == [32, 32, 64, 96, 96, 128]
    assert CHUNK == 32 and LANES == 16 and HELD == 4


@pytest.mark.parametrize("size", [1, 2, 9, 17, 31, 32, 33, 64, 65, 95, 96, 97, 128, 129, 200])
def test_every_index_of_every_table_size(size):
    """Each entry of a table of `size` entries (the exp table has head dim + 1), every index in
    every lane, with the caller's offset subtracted, and the table's extreme values: tables held in
    registers (1 to HELD chunks) and larger ones (chunks loaded per group)."""
    rng = np.random.default_rng(size)
    lut = rng.integers(-2 ** 31, 2 ** 31, size, dtype=np.int64).astype(np.int32)
    lut[0], lut[-1] = np.int32(2 ** 31 - 1), np.int32(-2 ** 31)
    sub = int(rng.integers(-50, 50))
    idx = np.concatenate([np.arange(size), rng.integers(0, size, 3 * LANES)])
    idx = np.resize(rng.permutation(idx), -(-idx.size // LANES) * LANES)
    src = (idx + sub).astype(np.int32)
    dst = np.full(src.size, 7, dtype=np.int32)
    _lookup_all(_padded(lut), src, sub, dst)
    assert np.array_equal(dst, lut[idx])


@pytest.mark.parametrize("n", [1, 16, 17, 40])
def test_only_whole_groups_up_to_n_are_written(n):
    """A row of n lookups writes the ceil(n / 16) groups of sixteen lanes that hold it, nothing after."""
    lut = np.arange(65, dtype=np.int32) * 3
    src = np.arange(64, dtype=np.int32) % 65
    dst = np.full(64, -1, dtype=np.int32)

    @njit
    def row(table, src, n, dst):
        lookup_i32(table, src, n, 0, dst)

    row(_padded(lut), src, n, dst)
    end = -(-n // LANES) * LANES
    assert np.array_equal(dst[:end], lut[src[:end]]) and (dst[end:] == -1).all()


@pytest.mark.skipif(not has_permute_lookup(), reason="the permute lookup compiles only for an AVX-512 target")
@pytest.mark.parametrize("size", [65, 129])
def test_an_index_outside_the_table_reads_no_memory_and_gives_zero(size):
    """The pads of a softmax row look up whatever their index is: the permutes read the table at
    fixed offsets, so an index past the padded table (or negative) gives 0, not a stray load
    (a table held in registers, and one loaded per group)."""
    lut = np.arange(1, size + 1, dtype=np.int32)
    past = padded_table_size(size)
    src = np.array([0, past - 1, past, 1000, -1, -2 ** 31, 2 ** 31 - 1, size - 1] + [5] * 8, dtype=np.int32)
    dst = np.empty(16, dtype=np.int32)
    _lookup_all(_padded(lut), src, 0, dst)
    assert dst.tolist() == [1, 0, 0, 0, 0, 0, 0, size] + [6] * 8


@njit  # not cached, as _lookup_all
def _sums(tables, codes, ids, n, init, out, at):
    lookup_sums(tables, codes, ids, n, init, out, at)


def _sums_reference(tables, codes, ids, n, init):
    """The same sum in numpy int64 (the lookups' int32 sums cannot wrap at these values)."""
    tab, key = ids[:n] >> ID_BITS, ids[:n] & ((1 << ID_BITS) - 1)
    looked = tables.reshape(-1, TABLE)[tab[:, None], codes[key]].astype(np.int64)   # [n, D]
    return init[:codes.shape[1]] + looked.sum(0)


@pytest.mark.parametrize("d", [16, 32, 48, 64, 80, 128, 144])
@pytest.mark.parametrize("n", [0, 1, 5, 37, 300])
def test_lookup_sums_against_numpy(d, n):
    """Every column block (64 columns four registers at a time, then 16 at a time), every table
    (ids name the table in their top bits), repeated keys, an offset into out and an init row."""
    rng = np.random.default_rng(d * 1000 + n)
    keys, n_tab = 70, 6
    tables = rng.integers(-2 ** 20, 2 ** 20, n_tab * TABLE).astype(np.int32)
    codes = rng.integers(0, TABLE, (keys, d), dtype=np.uint8)
    ids = ((rng.integers(0, n_tab, n + 3) << ID_BITS) | rng.integers(0, keys, n + 3)).astype(np.int32)
    init = rng.integers(-2 ** 40, 2 ** 40, d + 5)
    out = np.full(3 * d + 7, 99, dtype=np.int64)
    _sums(tables, codes, ids, n, init, out, d + 2)
    assert np.array_equal(out[d + 2:2 * d + 2], _sums_reference(tables, codes, ids, n, init))
    assert (out[:d + 2] == 99).all() and (out[2 * d + 2:] == 99).all()      # nothing else written


def test_lookup_sums_extreme_entries():
    """Table entries at the int32 limits whose sums stay in int32, summed with an int64 init."""
    tables = np.zeros(2 * TABLE, dtype=np.int32)
    tables[:TABLE] = 2 ** 31 - 1
    tables[TABLE:] = -2 ** 31
    codes = np.arange(TABLE, dtype=np.uint8)[None, :].repeat(2, 0)
    ids = np.array([0, 1 << ID_BITS, 1, 0], dtype=np.int32)        # +max, min, +max: no wrap
    init = np.full(TABLE, -2 ** 40, dtype=np.int64)
    out = np.empty(TABLE, dtype=np.int64)
    _sums(tables, codes, ids, 3, init, out, 0)
    assert (out == -2 ** 40 + 2 ** 31 - 2).all()
