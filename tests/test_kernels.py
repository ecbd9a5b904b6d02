"""gsbsim.kernels and gsbsim.popcnt against the plain-numpy conventions, integer for integer."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from gsbsim.format import conventions as cv
from gsbsim.engine import kernels as kn
from gsbsim.engine.popcnt import add4_i32x8, add4_i32x16, ctz64, cycle_counter, ge_bits, ge_or_le_word, ge_word, popcount64, popcount_words

# K values around word boundaries (1, 63, 64, 65, ...), the DeiT head/linear sizes, and
# 1..10 words (the GEMM sums 1-4 words in its first pass, then 4 per pass)
K_EDGES = [1, 2, 63, 64, 65, 127, 128, 129, 192, 200, 256, 257, 320, 384, 449, 513, 640]
SETTINGS = settings(max_examples=60, deadline=None)



def _bits(rng: np.random.Generator, shape, p_one: float = 0.5) -> np.ndarray:
    return (rng.random(shape) < p_one).astype(np.uint8)


def _packed(rng: np.random.Generator, shape, p_one: float = 0.5) -> np.ndarray:
    return cv.pack_bits(_bits(rng, shape, p_one))


dims = st.integers(1, 13)
ks = st.one_of(st.sampled_from(K_EDGES), st.integers(1, 300))
seeds = st.integers(0, 2**32 - 1)
densities = st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0])


# ----------------------------------------------------------------------------- popcount
@njit(cache=True)
def _popcounts(words):
    out = np.empty(words.shape[0], dtype=np.int64)
    for i in range(words.shape[0]):
        out[i] = popcount64(words[i])
    return out


@njit(cache=True)
def _ctzs(words):
    out = np.empty(words.shape[0], dtype=np.int64)
    for i in range(words.shape[0]):
        out[i] = ctz64(words[i])
    return out


@njit(cache=True)
def _ticks():
    a = cycle_counter()
    s = 0
    for i in range(100000):
        s += i
    return cycle_counter() - a, s


def test_ctz64_and_cycle_counter():
    rng = np.random.default_rng(1)
    words = np.concatenate([np.array([0, 1, 2, 2**63, 2**64 - 1, 0xF0], dtype=np.uint64),
                            rng.integers(1, 2**64, 300, dtype=np.uint64)])
    got = _ctzs(words)
    assert got[:6].tolist() == [64, 0, 1, 63, 0, 4]          # ctz(0) is defined: 64
    low = words[6:] & (~words[6:] + np.uint64(1))             # lowest set bit
    assert np.array_equal(got[6:], np.log2(low.astype(np.float64)).astype(np.int64))
    ticks, s = _ticks()
    assert s == 4999950000 and ticks > 0


def test_popcount64_matches_numpy_on_edge_and_random_words():
    rng = np.random.default_rng(0)
    edges = np.array([0, 1, 2**63, 2**64 - 1, 0x5555555555555555, 0xF0F0F0F0F0F0F0F0], dtype=np.uint64)
    words = np.concatenate([edges, rng.integers(0, 2**64, 500, dtype=np.uint64)])
    got = _popcounts(words)
    assert got.dtype == np.int64
    assert got[:6].tolist() == [0, 1, 1, 64, 32, 32]
    assert np.array_equal(got, np.bitwise_count(words).astype(np.int64))
    assert popcount_words(words) == int(np.bitwise_count(words).sum())


@njit  # not cached: the cache would not see an edit of popcnt's code generation
def _ge_words(vals, thrs):
    out = np.empty(thrs.shape[0], dtype=np.uint64)
    for i in range(thrs.shape[0]):
        out[i] = ge_word(vals, 0, thrs[i], 0)
    return out


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_ge_word_scalar_threshold_is_exact_in_every_width(dtype):
    """Narrow values are compared in their own width against a clamped int64 threshold: exact at the
    width's limits and beyond them (above the maximum no bit, at or below the minimum every bit)."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(7)
    vals = rng.integers(info.min, info.max, 64, dtype=dtype, endpoint=True)
    vals[:4] = [info.min, info.max, 0, -1]
    lim = [int(info.min), int(info.max)]
    thrs = [t + k for t in lim for k in (-1, 0, 1)] + [0, 1, -1, -2 ** 63, 2 ** 63 - 1] + vals[4:12].tolist()
    thrs = np.array([t for t in thrs if -2 ** 63 <= t < 2 ** 63], dtype=np.int64)
    got = _ge_words(vals, thrs)
    want = [int(sum(1 << b for b in range(64) if int(vals[b]) >= int(t))) for t in thrs]
    assert got.tolist() == want
    for lanes in (16, 32, 64):       # ge_bits: the first lanes comparisons, from an offset
        got = _ge_bits(np.concatenate([vals[:3], vals]), thrs, lanes)
        assert got.tolist() == [w & ((1 << lanes) - 1) for w in want], lanes


@njit  # not cached (as _ge_words)
def _ge_bits(vals, thrs, lanes):
    out = np.empty(thrs.shape[0], dtype=np.uint64)
    for i in range(thrs.shape[0]):
        if lanes == 16:
            out[i] = ge_bits(vals, 3, thrs[i], 16)
        elif lanes == 32:
            out[i] = ge_bits(vals, 3, thrs[i], 32)
        else:
            out[i] = ge_bits(vals, 3, thrs[i], 64)
    return out


@njit  # not cached (as _ge_words)
def _ge_array_words(vals, hi, lo):
    return ge_word(vals, 0, hi, 0), ge_or_le_word(vals, 0, hi, lo, 0)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32])
def test_ge_word_array_thresholds_of_the_values_type(dtype):
    """Value and threshold arrays of one narrow type are compared in that width (signed or unsigned),
    one- and two-sided, ties included."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(8)
    for _ in range(20):
        vals, hi, lo = (rng.integers(info.min, info.max, 64, dtype=dtype, endpoint=True) for _ in range(3))
        hi[:8], lo[8:16] = vals[:8], vals[8:16]                # ties on either side
        vals[16:20], hi[20:24] = [info.min, info.max] * 2, [info.min, info.max] * 2
        v, h, low = (a.astype(np.int64) for a in (vals, hi, lo))
        one, two = _ge_array_words(vals, hi, lo)
        assert int(one) == sum(1 << b for b in range(64) if v[b] >= h[b])
        assert int(two) == sum(1 << b for b in range(64) if v[b] >= h[b] or v[b] <= low[b])


@njit  # not cached: the cache would not see an edit of popcnt's code generation
def _add4(acc, at, src, offsets, lanes):
    if lanes == 8:
        add4_i32x8(acc, at, src, offsets[0], offsets[1], offsets[2], offsets[3])
    else:
        add4_i32x16(acc, at, src, offsets[0], offsets[1], offsets[2], offsets[3])


@pytest.mark.parametrize("lanes", [8, 16])
def test_add4_i32x8_adds_four_slices_into_eight_lanes_wrapping(lanes):
    """Only acc[at:at+L] changes (L = 8 or 16 lanes); lanes wrap modulo 2^32 like C int32 (the context
    walk keeps its sums in range); the slices may overlap each other and sit anywhere in src."""
    rng = np.random.default_rng(3)
    src = rng.integers(-2 ** 31, 2 ** 31, 56).astype(np.int32)
    src[5:13] = 2 ** 31 - 1                                   # four copies of INT32_MAX: wraps
    acc = rng.integers(-1000, 1000, 30).astype(np.int32)
    want = acc.astype(np.int64)
    offsets = np.array([5, 5, 0, 31], dtype=np.int64)
    total = sum(src[o:o + lanes].astype(np.int64) for o in offsets)
    want[7:7 + lanes] += total
    assert want.max() > 2 ** 31 - 1                            # the wrapping case is exercised
    want = ((want + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32)
    _add4(acc, 7, src, offsets, lanes)
    assert np.array_equal(acc, want)


# ----------------------------------------------------------------------------- xnor / and GEMMs
@SETTINGS
@given(m=dims, n=dims, k=ks, seed=seeds, p=densities)
def test_xnor_gemm_matches_conventions(m, n, k, seed, p):
    rng = np.random.default_rng(seed)
    a, w = _packed(rng, (m, k), p), _packed(rng, (n, k))
    out = kn.xnor_gemm(a, w, k)
    assert out.dtype == np.int32 and out.shape == (m, n)
    assert np.array_equal(out, cv.xnor_dot(a, w, k))


@SETTINGS
@given(m=dims, n=dims, k=ks, seed=seeds, p=densities)
def test_and_gemm_matches_conventions(m, n, k, seed, p):
    rng = np.random.default_rng(seed)
    a, w = _packed(rng, (m, k), p), _packed(rng, (n, k))
    out = kn.and_gemm(a, w)
    assert out.dtype == np.int32 and out.shape == (m, n)
    assert np.array_equal(out, cv.and_dot(a, w))


@pytest.mark.parametrize("k", [1, 63, 64, 65, 200])
def test_xnor_gemm_extremes_use_true_k(k):
    """Identical rows give +k, complementary rows -k: pads never count as mismatches."""
    rng = np.random.default_rng(k)
    bits = _bits(rng, (3, k))
    a, w = cv.pack_bits(bits), cv.pack_bits(np.concatenate([bits, 1 - bits]))
    out = kn.xnor_gemm(a, w, k)
    assert np.array_equal(np.diag(out[:, :3]), [k, k, k])
    assert np.array_equal(np.diag(out[:, 3:]), [-k, -k, -k])


def test_and_gemm_exact_small_case():
    # a = [1,1,0,1], w = [+1,-1,+1,+1] -> 1 - 1 + 0 + 1 = 1 ; all-zero a -> 0
    a = cv.pack_bits(np.array([[1, 1, 0, 1], [0, 0, 0, 0]], dtype=np.uint8))
    w = cv.pack_bits(np.array([[1, 0, 1, 1]], dtype=np.uint8))
    assert kn.and_gemm(a, w).tolist() == [[1], [0]]


def test_deit_shape_and_noncontiguous_inputs():
    rng = np.random.default_rng(7)
    a, w = _packed(rng, (197, 384)), _packed(rng, (200, 384))
    ref = cv.xnor_dot(a, w, 384)
    assert np.array_equal(kn.xnor_gemm(a, w, 384), ref)
    assert np.array_equal(kn.xnor_gemm(np.asfortranarray(a), w[::-1][::-1], 384), ref)
    assert np.array_equal(kn.and_gemm(a, w[::2]), cv.and_dot(a, w[::2]))


# every tile the GEMM driver uses: full strips of TILE_COLS vectors, a pair, a single vector, the
# scalar columns past the last multiple of 8, and the last M % TILE_ROWS rows (1..3)
TILE_NS = sorted({8 * kn.TILE_COLS, 8 * (2 * kn.TILE_COLS + 2 + 1) + 5, 8 * (kn.TILE_COLS + 1), 16, 7})


@pytest.mark.parametrize("k", [0, 1, 64, 192, 449])
@pytest.mark.parametrize("n", TILE_NS)
def test_tiled_gemms_every_tile_edge(n, k):
    rng = np.random.default_rng(n * 1000 + k)
    for m in range(1, 2 * kn.TILE_ROWS + 2):
        a, w = _packed(rng, (m, k), 0.3), _packed(rng, (n, k))
        assert np.array_equal(kn.xnor_gemm(a, w, k), cv.xnor_dot(a, w, k)), (m, n, k)
        assert np.array_equal(kn.and_gemm(a, w), cv.and_dot(a, w)), (m, n, k)


def _xnor_bits_reference(a, w, k, t_hi, t_lo):
    v = cv.xnor_dot(a, w, k).astype(np.int32)
    return cv.pack_bits(((v >= t_hi) | (v <= t_lo)).astype(np.uint8))


def _thresholds(rng, n, k):
    """Two-sided thresholds around the dot range, with ties and the int32 extremes among them."""
    t_hi = rng.integers(-k - 1, k + 2, n).astype(np.int32)
    t_lo = (t_hi.astype(np.int64) - rng.integers(0, 2 * k + 3, n)).astype(np.int32)
    t_hi[::7], t_lo[::7] = np.iinfo(np.int32).max, np.iinfo(np.int32).min      # never (but the extremes)
    t_hi[3::11] = np.iinfo(np.int32).min                                           # always
    return t_hi, t_lo


@pytest.mark.parametrize("k", [0, 1, 64, 192, 449])
@pytest.mark.parametrize("n", TILE_NS + [100, 8 * kn.TILE_COLS * 3 + 24])
def test_xnor_bits_into_every_tile_edge(n, k):
    """The GEMM with its threshold epilogue (a tile's bits straddling two words, the scalar columns, the
    last rows) equals the dot products' thresholds packed; the bits array's old contents are ignored."""
    rng = np.random.default_rng(n * 1000 + k)
    for m in range(1, 2 * kn.TILE_ROWS + 2):
        a, w = _packed(rng, (m, k), 0.3), _packed(rng, (n, k))
        t_hi, t_lo = _thresholds(rng, n, k)
        bits = np.full((m, cv.n_words(n)), np.uint64(0xA5A5A5A5A5A5A5A5))
        kn.xnor_bits_into(a, kn.weight_layout(w), k, t_hi, t_lo, bits)
        assert np.array_equal(bits, _xnor_bits_reference(a, w, k, t_hi, t_lo)), (m, n, k)


def _scaled_sum(wide):
    from gsbsim.engine.popcnt import wide_vectors

    def body(x, y):
        if wide:
            wide_vectors()
        for i in range(x.shape[0]):
            y[i] = x[i] * 3 + y[i]
    fn = njit(body)        # not cached: its assembly is read
    x, y = np.arange(1000, dtype=np.int64), np.ones(1000, dtype=np.int64)
    fn(x, y)
    assert np.array_equal(y, 3 * x + 1)
    return "\n".join(fn.inspect_asm().values())


def test_wide_vectors_asks_for_512_bit_loops_where_the_cpu_has_them():
    """With wide_vectors() a loop Numba vectorises uses zmm registers on an AVX-512 CPU (LLVM's tuning
    alone may pick ymm), and the same integers."""
    from gsbsim.engine.popcnt import vector_isa
    wide = _scaled_sum(True)
    if not vector_isa().startswith("AVX-512"):
        pytest.skip("no AVX-512 on this CPU")
    assert re.search(r"%zmm", wide)


def test_weight_layout_is_the_aligned_transpose():
    rng = np.random.default_rng(3)
    for n, w_n in ((576, 3), (5, 2), (1, 1)):
        w = rng.integers(0, 2 ** 63, (n, w_n), dtype=np.uint64)
        w_t = kn.weight_layout(w)
        assert w_t.ctypes.data % 64 == 0 and w_t.flags.c_contiguous
        assert np.array_equal(w_t, w.T)


def test_fast_weight_layout_is_made_once_and_guards_its_source():
    """gsbsim.fast lays each weight array out once; the cached source turns read-only, so an
    in-place change (the planted fault) raises instead of silently running stale weights."""
    from gsbsim.engine.fast_ops import transposed
    w = np.arange(24, dtype=np.uint64).reshape(8, 3)
    w_t = transposed(w)
    assert transposed(w) is w_t and np.array_equal(w_t, w.T)
    with pytest.raises(ValueError, match="read-only"):
        w[0, 0] = 7
    other = w.copy()                       # another array object gets its own layout
    assert transposed(other) is not w_t and np.array_equal(transposed(other), w.T)


def test_tile_uses_the_cpus_widest_popcount():
    """On a CPU with AVX-512 VPOPCNTDQ the tile kernel must run vpopcntq on zmm registers (LLVM's
    tuning for Intel server cores would otherwise split it into ymm halves)."""
    from gsbsim.engine.popcnt import vector_isa
    if not vector_isa().startswith("AVX-512 with"):
        pytest.skip(f"target CPU: {vector_isa()}")
    asm = _tiled_gemm_asm()
    assert re.search(r"vpopcntq\s+%zmm", asm) and kn.tile_shape() == (4, 6)


def _tiled_gemm_asm() -> str:
    """Assembly of the GEMM driver compiled afresh (a function loaded from Numba's cache has none)."""
    fresh = njit(nogil=True)(kn._tiled_gemm.py_func)
    a, w_t = np.zeros((1, 1), np.uint64), np.zeros((1, 8), np.uint64)
    fresh(a, w_t, np.empty((1, 8), np.int32), np.zeros(1, np.int64), False)
    return "\n".join(fresh.inspect_asm().values())


_AVX2_SCRIPT = """
import re, numpy as np
from gsbsim.format import conventions as cv
from gsbsim.engine import kernels as kn
from gsbsim.engine.popcnt import vector_isa
from tests.test_kernels import _tiled_gemm_asm
assert vector_isa().startswith("AVX2") and (kn.TILE_ROWS, kn.TILE_COLS) == (2, 2), vector_isa()
rng = np.random.default_rng(0)
for m, n, k in ((197, 576, 192), (5, 61, 449), (3, 16, 1536), (1, 7, 64)):
    a = cv.pack_bits(rng.integers(0, 2, (m, k), dtype=np.uint8))
    w = cv.pack_bits(rng.integers(0, 2, (n, k), dtype=np.uint8))
    assert np.array_equal(kn.xnor_gemm(a, w, k), cv.xnor_dot(a, w, k)), (m, n, k)
    assert np.array_equal(kn.and_gemm(a, w), cv.and_dot(a, w)), (m, n, k)
    from tests.test_kernels import _thresholds, _xnor_bits_reference     # the threshold epilogue too
    t_hi, t_lo = _thresholds(rng, n, k)
    bits = np.empty((m, cv.n_words(n)), dtype=np.uint64)
    kn.xnor_bits_into(a, kn.weight_layout(w), k, t_hi, t_lo, bits)
    assert np.array_equal(bits, _xnor_bits_reference(a, w, k, t_hi, t_lo)), (m, n, k)
asm = _tiled_gemm_asm()
assert "zmm" not in asm and re.search(r"vpshufb\\s+%ymm", asm), "not AVX2 code"
from gsbsim.format.random_model import random_images, random_model
from tests.support.engines import assert_same
from tests.test_table_lookup import _lookup_all, _padded
for size in (1, 33, 65, 97):     # the exp-table lookup's scalar form (no vpermi2d on this target)
    lut = rng.integers(-2 ** 31, 2 ** 31, size).astype(np.int32)
    idx = rng.integers(0, size, 64)
    dst = np.empty(64, dtype=np.int32)
    _lookup_all(_padded(lut), (idx - 3).astype(np.int32), -3, dst)
    assert np.array_equal(dst, lut[idx]), size
from tests.test_table_lookup import _sums, _sums_reference
for d, n in ((16, 9), (80, 40)):     # the value-code sums' scalar form (not taken by context_head here)
    tables = rng.integers(-2 ** 20, 2 ** 20, 64).astype(np.int32)
    codes = rng.integers(0, 16, (30, d), dtype=np.uint8)
    ids = ((rng.integers(0, 4, n) << 24) | rng.integers(0, 30, n)).astype(np.int32)
    init, out = rng.integers(-9, 9, d), np.empty(d, dtype=np.int64)
    _sums(tables, codes, ids, n, init, out, 0)
    assert np.array_equal(out, _sums_reference(tables, codes, ids, n, init)), d
from gsbsim.engine import fast_ops
assert not kn.PERMUTE_CONTEXT and not fast_ops.VNNI_PRODUCTS   # the table walk and the float patch product
for stat in ("row", "image"):    # the whole fast path (padded softmax rows, fused block) == golden
    m = random_model(rng, embed_dim=64, num_heads=1, mlp_hidden=96, img_size=16, mask_stat=stat)
    assert_same(m, random_images(rng, m, 2))
print("ok")
"""


@pytest.mark.slow
def test_gemms_on_an_avx2_only_target(tmp_path):
    """The same kernels compiled for an AVX2-only CPU (Numba told so; the code runs on this one):
    the 2 x 2 tile, ymm registers and the nibble-table popcount, the same integers; and the whole
    fast path equals the golden one there."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="+avx,+avx2,+popcnt,+sse4.2,+bmi,+bmi2",
               NUMBA_CACHE_DIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", _AVX2_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


# ----------------------------------------------------------------------------- GSB attention x value
def _gsb_av_unpacked(a_bits, s_bits, m_bits):
    """Independent reference: unpacked ints, int64 matmul of {0,1} A and {-1,0,+1} V planes."""
    sgn = cv.from_bits(s_bits).astype(np.int64)  # [D, keys], +-1
    v_planes = [sgn] + [sgn * m.astype(np.int64) for m in m_bits]  # Gv x [D, keys]
    a = a_bits.astype(np.int64)  # [Ga, M, keys]
    return np.stack([np.stack([a[g] @ v.T for v in v_planes]) for g in range(a.shape[0])])


@SETTINGS
@given(ga=st.integers(1, 3), gv=st.integers(1, 3), m=dims, d=dims, keys=ks, seed=seeds, p=densities)
def test_gsb_av_matches_unpacked_reference(ga, gv, m, d, keys, seed, p):
    rng = np.random.default_rng(seed)
    a_bits = _bits(rng, (ga, m, keys), p)
    s_bits = _bits(rng, (d, keys))
    m_bits = _bits(rng, (gv - 1, d, keys), 0.3)
    out = kn.gsb_av(cv.pack_bits(a_bits), cv.pack_bits(s_bits), cv.pack_bits(m_bits))
    assert out.dtype == np.int32 and out.shape == (ga, gv, m, d)
    # the packed-level identity must match the unpacked arithmetic exactly
    assert np.array_equal(out, _gsb_av_unpacked(a_bits, s_bits, m_bits))


def test_gsb_av_sign_plane_is_and_gemm_and_attention_shape():
    rng = np.random.default_rng(3)
    a_bits, s_bits, m_bits = _bits(rng, (3, 197, 197)), _bits(rng, (64, 197)), _bits(rng, (2, 64, 197))
    a, s = cv.pack_bits(a_bits), cv.pack_bits(s_bits)
    out = kn.gsb_av(a, s, cv.pack_bits(m_bits))
    assert np.array_equal(out, _gsb_av_unpacked(a_bits, s_bits, m_bits))
    for g in range(3):
        assert np.array_equal(out[g, 0], cv.and_dot(a[g], s))


def test_gsb_av_mask_plane_limits():
    """An all-zero mask gives 0, an all-one mask gives the sign-plane product."""
    rng = np.random.default_rng(4)
    a, s = _packed(rng, (1, 5, 70)), _packed(rng, (6, 70))
    masks = cv.pack_bits(np.stack([np.zeros((6, 70), np.uint8), np.ones((6, 70), np.uint8)]))
    out = kn.gsb_av(a, s, masks)
    assert not out[0, 1].any()
    assert np.array_equal(out[0, 2], out[0, 0])


# ----------------------------------------------------------------------------- GSB context (combined A.V)
def _context_reference(a_bits, v_bits, scale):
    """sum_a sum_v scale[a, v] * D[a][v]: unpacked int64 matmuls (object ints: cannot wrap)."""
    sgn = cv.from_bits(v_bits[0]).astype(np.int64)                         # [N, D]
    vals = [sgn] + [sgn * v_bits[k].astype(np.int64) for k in range(1, v_bits.shape[0])]
    a = a_bits.astype(np.int64)
    out = np.zeros((a.shape[1], sgn.shape[1]), dtype=object)
    for ai in range(a.shape[0]):
        for vi in range(len(vals)):
            out += int(scale[ai, vi]) * (a[ai] @ vals[vi]).astype(object)
    return out.astype(np.int64)


scales = st.sampled_from([2 ** 4, 2 ** 20, 2 ** 44])   # int32 table (small) and int64 table (large)


@SETTINGS
@given(g=st.integers(1, 4), m=dims, d=st.integers(1, 70),
       keys=st.one_of(st.sampled_from([1, 64, 65, 198]), st.integers(1, 140)),
       seed=seeds, p=st.sampled_from([0.0, 0.02, 0.3, 0.5, 0.7, 0.98, 1.0]), big=scales)
def test_gsb_av_context_matches_unpacked_reference(g, m, d, keys, seed, p, big):
    rng = np.random.default_rng(seed)
    a_bits = _bits(rng, (g, m, keys), p)
    v_bits = _bits(rng, (g, keys, d), 0.4)
    scale = rng.integers(-big, big + 1, (g, g))
    ref = _context_reference(a_bits, v_bits, scale)
    for method in ("sparse", "dense", "auto"):
        out = kn.gsb_av_context(cv.pack_bits(a_bits), v_bits, scale, method)
        assert out.dtype == np.int64 and out.shape == (m, d)
        assert np.array_equal(out, ref), method


def test_gsb_av_context_equals_scaled_plane_pairs():
    """The combined kernel is sum_a sum_v scale[a, v] * gsb_av(...)[a, v] on a DeiT-sized head."""
    rng = np.random.default_rng(8)
    a_bits, v_bits = _bits(rng, (3, 197, 197), 0.05), _bits(rng, (3, 197, 64), 0.3)
    scale = rng.integers(-2 ** 30, 2 ** 30, (3, 3))
    pairs = kn.gsb_av(cv.pack_bits(a_bits), cv.pack_bits(v_bits[0].T), cv.pack_bits(v_bits[1:].transpose(0, 2, 1)))
    want = np.einsum("av,avmd->md", scale, pairs.astype(np.int64))
    for method in ("sparse", "dense"):
        assert np.array_equal(kn.gsb_av_context(cv.pack_bits(a_bits), v_bits, scale, method), want)


@pytest.mark.parametrize("g", [1, 2, 3, 4])
@pytest.mark.parametrize("d, keys", [(16, 1), (64, 198), (80, 65), (128, 64), (48, 140)])
def test_gsb_av_context_by_value_code_lookups(g, d, keys):
    """Head dims of whole 16-lane vectors take the lookup walk on an AVX-512 target (no value table):
    sparse rows, rows denser than half (the negated tables and the planes' totals), empty and full
    rows, mixed in one head, at an int32-table scale and near its bound."""
    rng = np.random.default_rng(g * 1000 + d + keys)
    from gsbsim.engine.table_lookup import has_permute_lookup
    assert kn.PERMUTE_CONTEXT == has_permute_lookup()
    a_bits = np.concatenate([_bits(rng, (g, 3, keys), p) for p in (0.0, 0.05, 0.3, 0.7, 0.98, 1.0)], axis=1)
    a_bits = a_bits[:, rng.permutation(a_bits.shape[1])]
    v_bits = _bits(rng, (g, keys, d), 0.4)
    limit = (2 ** 31 - 1) // (2 * g * keys) // g - 1          # max|Y| just inside the int32 bound
    for scale in (rng.integers(-2 ** 4, 2 ** 4 + 1, (g, g)), rng.choice([-limit, limit], (g, g))):
        ref = _context_reference(a_bits, v_bits, scale)
        for method in ("sparse", "auto"):
            assert np.array_equal(kn.gsb_av_context(cv.pack_bits(a_bits), v_bits, scale, method), ref), method


@pytest.mark.parametrize("margin", [1, 0])
def test_gsb_av_context_int32_table_bound_is_exact(margin):
    """The sparse walk sums in int32 when 2*G*N*max|Y| < 2^31: at the largest such scale and
    the largest sums (all attention and value bits set, dense and sparse rows), and one above."""
    g, n, d = 3, 130, 5
    limit = (2 ** 31 - 1) // (2 * g * n)                      # max|Y| must stay below this
    per = (limit - margin) // g                                # max|Y| = sum of |scale| of a row
    scale = np.full((g, g), per, dtype=np.int64)
    a_bits = np.ones((g, 4, n), np.uint8)
    a_bits[:, 1, ::2] = 0                                      # one row at density 1/2 (sparse walk)
    a_bits[:, 2] = 0
    a_bits[:, 3, 0] = 0                                        # walked through its zero bits
    v_bits = np.ones((g, n, d), np.uint8)
    v_bits[0, :, 1] = 0                                        # a negative sign column
    out = kn.gsb_av_context(cv.pack_bits(a_bits), v_bits, scale, "sparse")
    ref = _context_reference(a_bits, v_bits, scale)
    assert np.array_equal(out, ref)
    assert abs(int(ref[0, 0])) == g * n * g * per              # the bound's worst case is reached


# ----------------------------------------------------------------------------- opt-in parallel variants
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (3, 70, 65), (13, 5, 200), (197, 64, 192)])
def test_parallel_variants_match_references(m, n, k):
    """Fixed shapes: the thread split of the rows is the risk (1 row, fewer rows than threads...)."""
    rng = np.random.default_rng(m * 1000 + k)
    a_bits, w_bits = _bits(rng, (3, m, k)), _bits(rng, (n, k))
    a, w = cv.pack_bits(a_bits[0]), cv.pack_bits(w_bits)
    assert np.array_equal(kn.xnor_gemm_par(a, w, k), cv.xnor_dot(a, w, k))
    assert np.array_equal(kn.and_gemm_par(a, w), cv.and_dot(a, w))
    m_bits = _bits(rng, (2, n, k))
    out = kn.gsb_av_par(cv.pack_bits(a_bits), w, cv.pack_bits(m_bits))
    assert out.shape == (3, 3, m, n)
    assert np.array_equal(out, _gsb_av_unpacked(a_bits, w_bits, m_bits))


# ----------------------------------------------------------------------------- thresholds and packing
@SETTINGS
@given(m=dims, n=st.one_of(st.sampled_from([1, 63, 64, 65, 128, 130]), st.integers(1, 200)), seed=seeds,
       wide=st.booleans())
def test_pack_rows_ge_and_2sided(m, n, seed, wide):
    rng = np.random.default_rng(seed)
    acc = rng.integers(-20, 21, (m, n)).astype(np.int64 if wide else np.int32)
    thr = rng.integers(-20, 21, n)
    thr[: n // 4] = acc[0, : n // 4]  # exact ties: acc == thr must give 1
    t_lo = thr - rng.integers(1, 10, n)
    ge = kn.pack_rows_ge(acc, thr)
    assert ge.dtype == np.uint64 and ge.shape == (m, cv.n_words(n))
    assert np.array_equal(ge, cv.pack_bits((acc >= thr).astype(np.uint8)))
    assert np.array_equal(cv.unpack_bits(ge, n)[0, : n // 4], np.ones(n // 4, np.uint8))
    assert np.array_equal(cv.unpack_bits(ge, cv.n_words(n) * 64)[:, n:], np.zeros((m, cv.n_words(n) * 64 - n)))
    two = kn.pack_rows_2sided(acc, thr, t_lo)
    assert np.array_equal(two, cv.pack_bits(((acc >= thr) | (acc <= t_lo)).astype(np.uint8)))


def test_pack_rows_infinite_thresholds_and_ties():
    acc = np.array([[5, 5, -3, 0, 7]], dtype=np.int32)
    i64 = np.iinfo(np.int64)
    thr = np.array([5, 6, i64.min, i64.max, 8], dtype=np.int64)
    assert cv.unpack_bits(kn.pack_rows_ge(acc, thr), 5).tolist() == [[1, 0, 1, 0, 0]]
    t_lo = np.array([0, 5, i64.min, i64.min, 7], dtype=np.int64)
    assert cv.unpack_bits(kn.pack_rows_2sided(acc, thr, t_lo), 5).tolist() == [[1, 1, 1, 0, 1]]


def test_packed_thresholds_feed_the_next_layer():
    """pack_rows_ge's output (zero pads) is a valid xnor_gemm input."""
    rng = np.random.default_rng(5)
    acc = rng.integers(-50, 50, (4, 100)).astype(np.int32)
    bits = kn.pack_rows_ge(acc, np.zeros(100, np.int64))
    w = _packed(rng, (3, 100))
    assert np.array_equal(kn.xnor_gemm(bits, w, 100), cv.xnor_dot(bits, w, 100))


# ----------------------------------------------------------------------------- input errors
U = np.uint64


def _ctx(a, v, scale=None, av_strategy="auto"):
    """gsb_av_context with an identity scale by default (for the error cases)."""
    return kn.gsb_av_context(a, v, np.eye(v.shape[0], dtype=np.int64) if scale is None else scale, av_strategy)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: kn.xnor_gemm(np.zeros((2, 1), np.int64), np.zeros((2, 1), U), 64), "dtype uint64"),
        (lambda: kn.xnor_gemm(np.zeros(2, U), np.zeros((2, 1), U), 64), "2 axes"),
        (lambda: kn.xnor_gemm([[0]], np.zeros((2, 1), U), 64), "numpy uint64 array"),
        (lambda: kn.xnor_gemm(np.zeros((2, 1), U), np.zeros((2, 2), U), 64), "number of packed words"),
        (lambda: kn.xnor_gemm(np.zeros((2, 2), U), np.zeros((2, 2), U), 64), "k=64 needs 1 words"),
        (lambda: kn.xnor_gemm(np.zeros((2, 1), U), np.zeros((2, 1), U), -1), "non-negative int"),
        (lambda: kn.xnor_gemm(np.zeros((2, 1), U), np.zeros((2, 1), U), 1.0), "non-negative int"),
        (lambda: kn.xnor_gemm(np.full((2, 1), 2, U), np.zeros((2, 1), U), 1), "a has non-zero pad bits"),
        (lambda: kn.xnor_gemm_par(np.zeros((2, 1), U), np.full((2, 1), 2**63, U), 63), "w has non-zero pad"),
        (lambda: kn.and_gemm(np.zeros((2, 1), U), np.zeros((2, 3), U)), "number of packed words"),
        (lambda: kn.and_gemm_par(np.zeros((2, 1), np.float64), np.zeros((2, 1), U)), "dtype uint64"),
        (lambda: kn.gsb_av(np.zeros((1, 2, 1), U), np.zeros((3, 1), U), np.zeros((1, 4, 1), U)), "v_masks"),
        (lambda: kn.gsb_av(np.zeros((1, 2, 2), U), np.zeros((3, 1), U), np.zeros((0, 3, 1), U)), "packed words"),
        (lambda: kn.gsb_av(np.zeros((0, 2, 1), U), np.zeros((3, 1), U), np.zeros((0, 3, 1), U)), "Ga >= 1"),
        (lambda: kn.gsb_av_par(np.zeros((2, 1), U), np.zeros((3, 1), U), np.zeros((0, 3, 1), U)), "3 axes"),
        (lambda: _ctx(np.zeros((2, 3, 1), U), np.zeros((3, 5, 4), np.uint8)), "a_planes has 2 planes"),
        (lambda: _ctx(np.zeros((2, 3, 2), U), np.zeros((2, 5, 4), np.uint8)), "packed words"),
        (lambda: _ctx(np.full((1, 3, 1), 2**40, U), np.zeros((1, 5, 4), np.uint8)), "pad bits"),
        (lambda: _ctx(np.zeros((1, 3, 1), U), np.full((1, 5, 4), 2, np.uint8)), "only 0 and 1"),
        (lambda: _ctx(np.zeros((1, 3, 1), U), np.zeros((1, 5, 4), np.uint8), np.eye(2, dtype=np.int64)),
         r"scale must be an integer array of shape \(1, 1\)"),
        (lambda: _ctx(np.zeros((1, 3, 1), U), np.zeros((1, 5, 4), np.uint8), av_strategy="fast"), "av_strategy must be one of"),
        (lambda: _ctx(np.zeros((9, 3, 1), U), np.zeros((9, 5, 4), np.uint8)), "1 to 8 planes"),
        (lambda: kn.pack_rows_ge(np.zeros((2, 3), np.float32), np.zeros(3, np.int64)), "int32 or int64"),
        (lambda: kn.pack_rows_ge(np.zeros((2, 3), np.int32), np.zeros(4, np.int64)), r"shape \(3,\)"),
        (lambda: kn.pack_rows_2sided(np.zeros((2, 3), np.int32), np.zeros(3), np.zeros(3, np.int64)), "t_hi"),
        (lambda: kn.pack_rows_2sided(np.zeros((2, 3), np.int64), np.zeros(3, np.int64), np.zeros(2)), "t_lo"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(kn.KernelInputError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError)
    assert "gsbsim.kernels" in str(info.value)
