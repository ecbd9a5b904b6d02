"""gsbsim.golden, step by step, against independent formulas and hand-checked numbers."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from gsbsim.engine import golden_ops as g
from gsbsim.engine.golden import forward
from gsbsim.engine.trace import trace_names
from gsbsim.format.conventions import pack_bits
from gsbsim.engine.errors import InputError, IntegerOverflowError
from gsbsim.format.random_model import random_images, random_model


@pytest.fixture(scope="module")
def model():
    return random_model(np.random.default_rng(3), embed_dim=24, depth=2, num_heads=2, mlp_hidden=40,
                        num_classes=6, groups=3)


# ----------------------------------------------------------------------------- §2 patch embedding
def test_patch_embedding_matches_a_direct_convolution(model):
    rng = np.random.default_rng(0)
    m = random_model(rng, img_size=6, patch_size=3, in_chans=2, embed_dim=8, num_heads=2, mlp_hidden=8)
    x = random_images(rng, m, 2)
    acc, xs = g.patch_embed(m, x)
    a = m.arrays
    w = a["patch.weight"].astype(np.int64).reshape(8, 2, 3, 3)   # (c, ky, kx) order
    for b in range(2):
        for py in range(2):
            for px in range(2):
                t = py * 2 + px
                patch = x[b, :, 3 * py:3 * py + 3, 3 * px:3 * px + 3].astype(np.int64)
                want = np.einsum("eckl,ckl->e", w, patch)
                assert np.array_equal(acc[b, t], want)
                rq = (want * a["patch.mult"] + a["patch.bias"] + 2 ** 15) >> 16
                assert np.array_equal(xs[b, 2 + t], rq + a["pos"][2 + t])
        assert np.array_equal(xs[b, :2], a["tokens"] + a["pos"][:2])
    assert acc.dtype == np.int32 and xs.dtype == np.int32


# ----------------------------------------------------------------------------- §3 LayerNorm -> bit
def test_ln_bits_match_float_layernorm_away_from_ties():
    rng = np.random.default_rng(1)
    e, f, ln, eps = 40, 12, 16, 7
    x = rng.normal(0, 2.0, (200, e)) * 2 ** f
    x = np.round(x).astype(np.int32)
    sign = rng.choice(np.array([-1, 0, 1], dtype=np.int8), e)
    thr = np.round(rng.normal(0, 0.8, e) * 2 ** ln).astype(np.int64)
    bits = g.ln_bits(x, sign, thr, ln, eps, "t")
    # float64 LayerNorm of the real values x / 2^F with eps' = ln_eps / (E^2 4^F)
    xr = x / 2.0 ** f
    mu, var = xr.mean(-1, keepdims=True), xr.var(-1, keepdims=True)
    y = (xr - mu) / np.sqrt(var + eps / (e * e * 4.0 ** f))
    t = thr / 2.0 ** ln
    want = np.where(sign == 0, thr <= 0, sign * y >= t)
    away = (sign == 0) | (np.abs(sign * y - t) > 1e-6 * (1 + np.abs(t)))
    assert away.mean() > 0.99
    assert np.array_equal(bits[away], want[away].astype(np.uint8))
    assert 0.2 < bits.mean() < 0.8


def test_ln_bits_hand_example():
    # X = [3, -1] (E = 2): S1 = 2, S2 = 10, D = [4, -4], V = 2*10 - 4 + 1 = 17, sigma = 4
    d, sigma = g.ln_stats(np.array([[3, -1]], np.int32), 1, "t")
    assert d.tolist() == [[4, -4]] and sigma.tolist() == [4]
    # sign*D*2^2 >= thr*4  <=>  sign*D >= thr  (D = +-4): the tie D == thr gives 1
    bits = g.ln_bits(np.array([[3, -1]], np.int32), np.array([1, 1], np.int8), np.array([4, -3]), 2, 1, "t")
    assert bits.tolist() == [[1, 0]]
    bits = g.ln_bits(np.array([[3, -1]], np.int32), np.array([-1, 0], np.int8), np.array([-4, 1]), 2, 1, "t")
    assert bits.tolist() == [[1, 0]]  # -4 >= -4; gamma = 0 with thr 1 is always 0


def test_ln_overflow_boundary_is_exact():
    big = np.array([[[2 ** 31 - 1]]], dtype=np.int32)  # B = N = E = 1: E*S2 = 2^62 - 2^32 + 1
    d, sigma = g.ln_stats(big, 2 ** 32 - 2, "blocks.3.ln2")  # E*S2 + eps = 2^62 - 1: allowed
    assert d.tolist() == [[[0]]] and sigma.tolist() == [[65535]]  # V = eps = 2^32 - 2
    with pytest.raises(IntegerOverflowError, match=r"blocks\.3\.ln2: .*2\^62 at image 0, token 0"):
        g.ln_stats(big, 2 ** 32 - 1, "blocks.3.ln2")  # = 2^62: error


# ----------------------------------------------------------------------------- binary products
def test_binary_acc_equals_pm1_and_01_matmuls():
    rng = np.random.default_rng(2)
    for k in (1, 63, 64, 65, 130):
        a = rng.integers(0, 2, (2, 3, k), dtype=np.uint8)
        w = rng.integers(0, 2, (5, k), dtype=np.uint8)
        pm_a, pm_w = 2 * a.astype(np.int64) - 1, 2 * w.astype(np.int64) - 1
        assert np.array_equal(g.binary_acc(a, pack_bits(w), k, "xnor"), pm_a @ pm_w.T)
        assert np.array_equal(g.binary_acc(a, pack_bits(w), k, "and"), a.astype(np.int64) @ pm_w.T)


# ----------------------------------------------------------------------------- §4 qkv and values
def test_split_qkv_layout():
    e, h = 4, 2
    acc = np.arange(12, dtype=np.int32).reshape(1, 1, 12) - 6    # q: -6..-3, k: -2..1, v: 2..5
    q, k, vq = g.split_qkv(acc, np.array([-5, -5, 0, -3]), np.array([0, 0, 0, 2]), np.array([0, 1, 2, 3]), h, 8)
    assert q.shape == (1, 2, 1, 2)
    assert q[0, :, 0].tolist() == [[0, 1], [0, 1]]                # -6>=-5, -5>=-5, -4>=0, -3>=-3
    assert k[0, :, 0].tolist() == [[0, 0], [1, 0]]                # -2, -1, 0 >= 0, 1 >= 2
    assert vq[0, :, 0].tolist() == [[2 * 256, 3 * 256 + 1], [4 * 256 + 2, 5 * 256 + 3]]


def test_value_planes_hand_example():
    vq = np.array([100, 50, 51, -25, -26, 0, -50], dtype=np.int64).reshape(1, 1, 1, 7)
    planes = g.value_planes(vq, [128], "row")   # ratio 0.5: mx = 100, mn = -50
    assert planes.shape == (1, 2, 1, 1, 7) and planes.dtype == np.uint8
    assert planes[0, 0, 0, 0].tolist() == [1, 1, 1, 0, 0, 1, 0]   # sign, sign(0) = +1
    assert planes[0, 1, 0, 0].tolist() == [1, 0, 1, 0, 1, 0, 1]   # > 50 or < -25 (ties excluded)


def test_value_planes_row_versus_image_statistic():
    vq = np.array([[[[10, 5]], [[100, 60]]]], dtype=np.int64)     # B=1, H=2, N=1, d=2
    row = g.value_planes(vq, [128], "row")[0, 1]
    img = g.value_planes(vq, [128], "image")[0, 1]
    assert row.tolist() == [[[1, 0]], [[1, 1]]]                     # per head: > 5, > 50
    assert img.tolist() == [[[0, 0]], [[1, 1]]]                     # image max 100: > 50


def test_scores_equal_pm1_dot_products():
    rng = np.random.default_rng(4)
    q = rng.integers(0, 2, (2, 3, 5, 7), dtype=np.uint8)
    k = rng.integers(0, 2, (2, 3, 5, 7), dtype=np.uint8)
    want = np.einsum("bhid,bhjd->bhij", 2 * q.astype(np.int64) - 1, 2 * k.astype(np.int64) - 1)
    got = g.attention_scores(q, k)
    assert got.dtype == np.int32 and np.array_equal(got, want)


# ----------------------------------------------------------------------------- §5 softmax
def test_softmax_fixed_point_against_float_softmax():
    rng = np.random.default_rng(5)
    d, n, prob, recip = 16, 12, 16, 48
    c = 0.11
    lut = np.floor(2 ** prob * np.exp(-2 * c * np.arange(d + 1)) + 0.5).astype(np.int64)
    q = rng.integers(0, 2, (1, 1, n, d), dtype=np.uint8)
    k = rng.integers(0, 2, (1, 1, n, d), dtype=np.uint8)
    sc = g.attention_scores(q, k)
    p = g.softmax_probs(sc, lut, np.zeros((1, n, n), np.int32), prob, recip)[0, 0]
    s = sc[0, 0].astype(np.float64)
    m = (s.max(-1, keepdims=True) - s) / 2
    e_int = lut[m.astype(int)]
    z = e_int.sum(-1, keepdims=True)
    # exact rounding of the integer pipeline: |P - 2^16 e/Z| <= 1/2 + 2^-16 (one floor, one round)
    assert np.all(np.abs(p - 2.0 ** prob * e_int / z) <= 0.5 + 2.0 ** -16)
    # against the float softmax of c*sc: the LUT's own rounding adds at most (N+1)/2
    fl = np.exp(c * (s - s.max(-1, keepdims=True)))
    fl /= fl.sum(-1, keepdims=True)
    assert np.all(np.abs(p - 2.0 ** prob * fl) <= 0.5 + 2.0 ** -16 + (n + 1) / 2)
    assert np.all(np.abs(p.sum(-1) - 2 ** prob) <= n)


def test_softmax_hand_example_with_bias():
    lut = np.array([65536, 32768, 16384], dtype=np.int64)           # d = 2
    sc = np.array([[[[2, 0, -2]]]], dtype=np.int32)                 # m = 0, 1, 2 -> e = 4:2:1 (Z = 7/4 * 2^16)
    a = g.softmax_probs(sc, lut, np.array([[[0, 5, -7]]], np.int32), 16, 48)
    r = 2 ** 48 // (65536 + 32768 + 16384)
    want = [(e * r + 2 ** 31) >> 32 for e in (65536, 32768, 16384)]
    assert want == [37449, 18725, 9362]                              # 4/7, 2/7, 1/7 of 2^16, rounded
    assert a[0, 0, 0].tolist() == [37449, 18725 + 5, 9362 - 7]


def test_attention_planes_hand_example():
    a = np.array([100, 50, 51, 10, 0], dtype=np.int64).reshape(1, 1, 1, 5)
    planes = g.attention_planes(a, 50, [128, 200], "row")
    assert planes[0, :, 0, 0].tolist() == [[1, 1, 1, 0, 0],         # >= a.thr1 = 50 (tie in)
                                           [1, 0, 1, 0, 0],         # 256 A > 128*100: A > 50
                                           [1, 0, 0, 0, 0]]         # A > 78.125


# ----------------------------------------------------------------------------- §6 GSB A.V
def test_gsb_context_equals_dense_superposition():
    rng = np.random.default_rng(6)
    b, gg, h, n, d = 2, 3, 2, 9, 5
    a_pl = rng.integers(0, 2, (b, gg, h, n, n), dtype=np.uint8)
    v_pl = rng.integers(0, 2, (b, gg, h, n, d), dtype=np.uint8)
    scale = rng.integers(-1000, 1000, (gg, gg)).astype(np.int64)
    ctx = g.gsb_context(a_pl, v_pl, scale)
    sign = 2 * v_pl[:, 0].astype(np.int64) - 1                        # [B, H, N, d]
    vals = [sign] + [sign * v_pl[:, k] for k in range(1, gg)]         # sign plane, sign * mask planes
    want = np.zeros((b, h, n, d), np.int64)
    for ai in range(gg):
        for vi in range(gg):
            want += scale[ai, vi] * np.einsum("bhij,bhjd->bhid", a_pl[:, ai].astype(np.int64), vals[vi])
    assert np.array_equal(ctx, want.transpose(0, 2, 1, 3).reshape(b, n, h * d))


# ----------------------------------------------------------------------------- §7, §8
def test_requant_rounds_half_up_including_negatives():
    acc = np.array([[1, -1, 3, -3, 2, -2, 5, -5]], dtype=np.int32)
    x = np.zeros((1, 8), np.int32)
    out = g.residual_add(x, acc, 1, np.zeros(8, np.int64), 1, "t")   # acc / 2, ties up
    assert out.tolist() == [[1, 0, 2, -1, 1, -1, 3, -2]]
    out = g.residual_add(x + 10, acc, 3, np.full(8, 4, np.int64), 3, "t")  # (3 acc + 4 + 4) >> 3
    assert out.tolist() == [[11, 10, 12, 9, 11, 10, 12, 9]]
    assert out.dtype == np.int32


def test_residual_overflow_raises_naming_layer():
    x = np.array([[[0, 2 ** 31 - 2], [0, 0]]], np.int32)
    acc = np.array([[[0, 2], [0, 0]]], np.int32)
    assert g.residual_add(x, acc, 1, np.zeros(2, np.int64), 1, "w")[0, 0, 1] == 2 ** 31 - 1
    with pytest.raises(IntegerOverflowError, match=r"blocks\.1\.fc2: .*int32 at image 0, token 0, channel 1 "
                                                   r"\(value 2147483648\)"):
        g.residual_add(x, acc, 1, np.ones(2, np.int64), 1, "blocks.1.fc2")
    low = np.array([[[-(2 ** 31) + 2, 0]]], np.int32)   # -2^31 + 2 + ((-8 + 1) >> 1 = -4): below int32
    with pytest.raises(IntegerOverflowError, match=r"w: .* at image 0, token 0, channel 0 \(value -2147483650\)"):
        g.residual_add(low, np.array([[[-8, 0]]], np.int32), 1, np.zeros(2, np.int64), 1, "w")


def test_fc1_two_sided_threshold():
    acc = np.array([-5, -3, -2, -1, 0, 2, 3, 4, 5])
    both = g.fc1_bits(acc, np.full(9, 3), np.full(9, -2))
    assert both.tolist() == [1, 1, 1, 0, 0, 0, 1, 1, 1]
    e = 5
    assert g.fc1_bits(acc, np.full(9, e + 1), np.full(9, -e - 1)).tolist() == [0] * 9   # never
    assert g.fc1_bits(acc, np.full(9, -e), np.full(9, -e - 1)).tolist() == [1] * 9       # always
    assert g.fc1_bits(acc, np.full(9, e + 1), np.full(9, 0)).tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0]  # lower ray


# ----------------------------------------------------------------------------- §9 heads
def test_head_inputs_round_half_up_and_clamp():
    x = np.array([[3, -1]], np.int32)          # D = [4, -4], sigma = 4 (ln_eps 1), den = sigma * 2^2 = 16
    gain = np.array([10, 10], np.int64)        # q = (10 D + off sigma) / 16
    off = np.array([0, -6], np.int64)
    q = g.head_inputs(x, gain, off, 2, 1, "norm")
    # 40/16 = 2.5 -> 3 (half up);  (-40 - 24)/16 = -4 exactly
    assert q.tolist() == [[3, -4]] and q.dtype == np.int8
    q = g.head_inputs(x, gain, np.array([-2, 2], np.int64), 2, 1, "norm")
    assert q.tolist() == [[2, -2]]             # 32/16 = 2; -32/16 = -2
    q = g.head_inputs(x, np.array([4000, 4000], np.int64), np.zeros(2, np.int64), 2, 1, "norm")
    assert q.tolist() == [[127, -128]]


def test_head_inputs_against_exact_fractions():
    rng = np.random.default_rng(8)
    x = rng.integers(-5000, 5000, (30, 7)).astype(np.int32)
    gain = rng.integers(-4000, 4000, 7).astype(np.int64)
    off = rng.integers(-20000, 20000, 7).astype(np.int64)
    q = g.head_inputs(x, gain, off, 5, 3, "norm")
    for b in range(30):
        xs = [int(v) for v in x[b]]
        s1, s2 = sum(xs), sum(v * v for v in xs)
        sigma = math.isqrt(7 * s2 - s1 * s1 + 3)
        for c in range(7):
            val = Fraction(int(gain[c]) * (7 * xs[c] - s1) + int(off[c]) * sigma, sigma * 32)
            want = min(max(math.floor(val + Fraction(1, 2)), -128), 127)
            assert q[b, c] == want


def test_argmax_ties_go_to_the_lowest_index():
    logits = np.array([[5, 7, 7, 1], [3, 3, 3, 3], [-9, -2, -5, -2]], dtype=np.int64)
    assert g.argmax_first(logits).tolist() == [1, 0, 1]


# ----------------------------------------------------------------------------- the whole forward
def test_forward_trace_names_dtypes_and_shapes(model):
    x = random_images(np.random.default_rng(9), model, 3)
    logits, tr = forward(model, x, trace=True)
    assert list(tr) == trace_names(model.depth)
    b, n, e, h, d, gg, hd, c = 3, 18, 24, 2, 12, 3, 40, 6
    want = {"input": (np.int8, (b, 1, 8, 8)), "patch.acc": (np.int32, (b, 16, e)), "embed": (np.int32, (b, n, e)),
            "head.q": (np.int8, (b, 2, e)), "head.acc": (np.int32, (b, 2, c)), "logits": (np.int64, (b, c)),
            "pred": (np.int64, (b,))}
    per_block = {"ln1.bits": (np.uint8, (b, n, e)), "qkv.acc": (np.int32, (b, n, 3 * e)),
                 "q.bits": (np.uint8, (b, h, n, d)), "k.bits": (np.uint8, (b, h, n, d)),
                 "v.q": (np.int64, (b, h, n, d)), "v.planes": (np.uint8, (b, gg, h, n, d)),
                 "scores": (np.int32, (b, h, n, n)), "probs": (np.int64, (b, h, n, n)),
                 "a.planes": (np.uint8, (b, gg, h, n, n)), "ctx": (np.int64, (b, n, e)),
                 "proj.bits": (np.uint8, (b, n, e)), "proj.acc": (np.int32, (b, n, e)),
                 "resid1": (np.int32, (b, n, e)), "ln2.bits": (np.uint8, (b, n, e)),
                 "fc1.acc": (np.int32, (b, n, hd)), "fc1.bits": (np.uint8, (b, n, hd)),
                 "fc2.acc": (np.int32, (b, n, e)), "resid2": (np.int32, (b, n, e))}
    for i in range(model.depth):
        want.update({f"blocks.{i}.{k}": v for k, v in per_block.items()})
    assert set(want) == set(tr)
    for name, (dt, shape) in want.items():
        assert tr[name].dtype == dt and tr[name].shape == shape, name
    assert np.array_equal(tr["logits"], logits)
    # internal consistency of the chain: the first block reads `embed`, the heads read the last resid2
    assert np.array_equal(tr["blocks.0.ln1.bits"], g.ln_bits(tr["embed"], model.arrays["blocks.0.ln1.sign"],
                                                             model.arrays["blocks.0.ln1.thr"], 16, model.ln_eps, "t"))
    hacc, lg = g.head_logits(model, tr["head.q"])
    assert np.array_equal(hacc, tr["head.acc"]) and np.array_equal(lg, logits)
    assert np.array_equal(tr["pred"], np.argmax(logits, -1))
    # the fixed-point probabilities of a row sum to about 2^16 (before the bias)
    p = tr["blocks.0.probs"] - model.arrays["blocks.0.att_bias"]
    assert np.all(np.abs(p.sum(-1) - 2 ** 16) <= n)
    assert forward(model, x)[1] == {}


@pytest.mark.parametrize("stat", ["row", "image"])
def test_forward_is_batch_independent(stat):
    rng = np.random.default_rng(10)
    m = random_model(rng, embed_dim=16, num_heads=2, mlp_hidden=20, mask_stat=stat)
    x = random_images(rng, m, 4)
    together, _ = forward(m, x)
    alone = np.concatenate([forward(m, x[i:i + 1])[0] for i in range(4)])
    assert np.array_equal(together, alone)
    assert len(set(map(tuple, together.tolist()))) == 4


def test_forward_rejects_bad_images(model):
    with pytest.raises(InputError, match=r"images: .*int8.*\(B, 1, 8, 8\).*float32"):
        forward(model, np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(InputError, match=r"shape \(2, 3, 8, 8\)"):
        forward(model, np.zeros((2, 3, 8, 8), np.int8))
    with pytest.raises(InputError, match="empty batch"):
        forward(model, np.zeros((0, 1, 8, 8), np.int8))
    with pytest.raises(InputError, match="list"):
        forward(model, [[0]])


def test_forward_overflow_names_block_and_layer(model):
    x = random_images(np.random.default_rng(11), model, 2)
    arrays = dict(model.arrays)
    arrays["blocks.1.fc2.bias"] = np.full(24, 2 ** 60, np.int64)   # rq adds 2^32: past int32
    bad = type(model)(header=model.header, arrays=arrays)
    with pytest.raises(IntegerOverflowError, match=r"^blocks\.1\.fc2: residual stream overflows int32 at image 0, "
                                                   r"token 0, channel 0"):
        forward(bad, x)
    arrays = dict(model.arrays, pos=np.full((18, 24), 2 ** 30, np.int32))  # E*S2 ~ 24 * 24 * 2^60
    with pytest.raises(IntegerOverflowError, match=r"^blocks\.0\.ln1: LayerNorm"):
        forward(type(model)(header=model.header, arrays=arrays), x)
    arrays = dict(model.arrays, tokens=np.full((2, 24), 2 ** 31 - 1, np.int32),
                  pos=np.ones((18, 24), np.int32))
    with pytest.raises(IntegerOverflowError, match=r"^embed: .* at image 0, token 0, channel 0 \(value 2147483648\)"):
        forward(type(model)(header=model.header, arrays=arrays), x)
