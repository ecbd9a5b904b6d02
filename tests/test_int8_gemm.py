"""int8_gemm: the u8 x s8 register tiles (vpdpbusd), and fast_ops.int8_products, which takes them where the
CPU has AVX-512 VNNI and a float BLAS product elsewhere, for the patch embedding (its rows from
fast_ops.patch_rows) and the heads (fast_ops.head_logits).

The whole fast path against the golden one covers the patch embedding in use (tests/test_fast.py; the
float product on an AVX2-only target in tests/test_kernels.py); here the tiles are checked on their own."""
from __future__ import annotations

import numpy as np
import pytest

from gsbsim.engine import fast_ops, int8_gemm

needs_vnni = pytest.mark.skipif(not int8_gemm.has_vnni(), reason="vpdpbusd compiles only for an AVX-512 VNNI target")


def _exact(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x.astype(np.int64) @ w.astype(np.int64).T


@needs_vnni
@pytest.mark.parametrize("m", [1, 3, 4, 5, 196])
@pytest.mark.parametrize("k, e", [(4, 16), (9, 7), (12, 40), (48, 64), (768, 192), (769, 100)])
def test_tiles_against_int64_products(m, k, e):
    """Every tile shape the driver uses (4-row tiles and 1-3 row tails; strips of 6, 2 and 1 column
    vectors), K not a multiple of 4 and E not a multiple of 16 (the padding), the int8 extremes."""
    rng = np.random.default_rng(m * 10_000 + k * 10 + e)
    x = rng.integers(-128, 128, (m, k)).astype(np.int8)
    w = rng.integers(-128, 128, (e, k)).astype(np.int8)
    x[0], w[0] = -128, -128                      # the largest product, in the first row and column
    w[-1] = 127
    w4, start = int8_gemm.pack_weights(w)
    out = int8_gemm.u8s8_gemm(int8_gemm.pack_pixels(x), w4, start)
    assert out.dtype == np.int32 and out.shape == (m, -(-e // 16) * 16)
    assert np.array_equal(out[:, :e], _exact(x, w))
    assert (out[:, e:] == 0).all()               # padded columns: zero weights, zero start


def test_packing_layout():
    """w4[g, e] holds w[e, 4g..4g+3] as the bytes of an int32 (zero past K); the pixels are x + 128."""
    w = np.arange(-6, 4, dtype=np.int8).reshape(2, 5)
    w4, start = int8_gemm.pack_weights(w)
    assert w4.shape == (2, 16) and start.shape == (16,)
    assert np.array_equal(w4[:, :2].T.copy().view(np.int8).reshape(2, 8)[:, :5], w)
    assert (w4[:, :2].T.copy().view(np.int8).reshape(2, 8)[:, 5:] == 0).all()
    assert start[:2].tolist() == [-128 * int(w[0].sum()), -128 * int(w[1].sum())] and (start[2:] == 0).all()
    x = np.array([[-128, -1, 0, 127, 5]], dtype=np.int8)
    assert int8_gemm.pack_pixels(x).view(np.uint8).tolist() == [[0, 127, 128, 255, 133, 0, 0, 0]]


@pytest.mark.parametrize("vnni", [True, False])
def test_int8_products_either_way(vnni, monkeypatch):
    """Both of int8_products' products give the same integers (the tiles only where they compile)."""
    if vnni and not int8_gemm.has_vnni():
        pytest.skip("no AVX-512 VNNI on this target")
    monkeypatch.setattr(fast_ops, "VNNI_PRODUCTS", vnni)
    rng = np.random.default_rng(7)
    for m, k, e in ((196, 768, 192), (16, 48, 40), (2, 1100, 17), (1, 192, 1000)):    # float64 beyond K = 1024
        x = rng.integers(-128, 128, (m, k)).astype(np.int8)
        w = rng.integers(-128, 128, (e, k)).astype(np.int8)
        out = fast_ops.int8_products(x, w)
        assert out.dtype == np.int32 and out.flags.c_contiguous and np.array_equal(out, _exact(x, w))


@pytest.mark.parametrize("b, c, size, p", [(1, 3, 224, 16), (2, 1, 8, 4), (3, 2, 6, 3), (1, 1, 5, 5)])
def test_patch_rows_are_the_patches(b, c, size, p):
    """Row t of image b is patch (t // g, t % g), channel-major then row-major: the weights' K order."""
    images = np.random.default_rng(size).integers(-128, 128, (b, c, size, size)).astype(np.int8)
    g = size // p
    want = images.reshape(b, c, g, p, g, p).transpose(0, 2, 4, 1, 3, 5).reshape(b * g * g, c * p * p)
    assert np.array_equal(fast_ops.patch_rows(images, p), want)


@pytest.mark.parametrize("vnni", [True, False])
def test_head_logits_either_way(vnni, monkeypatch):
    """head_logits (int8 products) equals the dot-product loops of head_logit_rows: accumulators at the
    int8 extremes, wrapping int64 logits, and ties (the first largest logit wins)."""
    if vnni and not int8_gemm.has_vnni():
        pytest.skip("no AVX-512 VNNI on this target")
    monkeypatch.setattr(fast_ops, "VNNI_PRODUCTS", vnni)
    rng = np.random.default_rng(3)
    b, e, c = 3, 40, 21
    q = rng.integers(-128, 128, (b, 2, e)).astype(np.int8)
    q[0] = -128
    w_head, w_dist = (rng.integers(-128, 128, (c, e)).astype(np.int8) for _ in range(2))
    w_head[:4] = -128
    w_dist[5:7] = 0
    bias = rng.integers(-2 ** 40, 2 ** 40, c)
    for mult_head, mult_dist in ((3, -5), (2 ** 40, 2 ** 41 + 1), (0, 0)):     # 0, 0: every logit ties but bias
        args = (q, w_head, w_dist, np.int64(mult_head), np.int64(mult_dist), bias)
        if mult_head == 0:
            bias = np.zeros(c, np.int64)
            args = args[:5] + (bias,)
        got, want = fast_ops.head_logits(*args), fast_ops.head_logit_rows(*args)
        for g_, w_ in zip(got, want):
            assert g_.dtype == w_.dtype and np.array_equal(g_, w_)
    assert np.array_equal(got[2], np.zeros(b, np.int64))
