"""gsbsim.fast on methods reactnet and didb (spec §13) equals gsbsim.golden at every traced tensor."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsbsim.engine import fast, golden
from gsbsim.engine.fast_act import act_unit_rows as _act_unit
from gsbsim.engine.errors import U_OVERFLOW, Z_OVERFLOW
from gsbsim.engine.golden_act import act_unit
from gsbsim.format.model_file import SCORE_SHIFT, IntModel
from gsbsim.format.random_model import random_images, random_model
from tests.support.engines import assert_same, av_strategy, derive, same_overflow_error

METHODS = ("reactnet", "didb")


def _model(method: str, seed: int, *, grid: int, patch: int = 1, e: int, heads: int, hidden: int, depth: int = 1,
           chans: int = 1) -> IntModel:
    return random_model(np.random.default_rng(seed), method=method, img_size=grid * patch, patch_size=patch,
                        in_chans=chans, embed_dim=e, num_heads=heads, mlp_hidden=hidden, depth=depth)


# ----------------------------------------------------------------------------- random models
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("grid, e, heads, hidden, batch", [
    (2, 16, 2, 24, 1),       # d = 8
    (3, 70, 1, 65, 2),       # d = 70: two words per Q/K row, K not a multiple of 64
    (4, 130, 2, 130, 3),     # d = 65
])
def test_fast_equals_golden(method, grid, e, heads, hidden, batch):
    model = _model(method, 7 * grid + e, grid=grid, e=e, heads=heads, hidden=hidden, depth=2)
    tg = assert_same(model, random_images(np.random.default_rng(grid), model, batch))
    p = "blocks.1."
    # the comparisons are not vacuous: binarizers toggle, both slope sides are used
    assert 0 < tg[p + "proj.bits"].mean() < 1 and 0 < tg[p + "fc1.bits"].mean() < 1
    assert (tg[p + "qkv.z"] < 0).any() and (tg[p + "qkv.z"] > 0).any()
    if method == "didb":
        assert 0 < tg[p + "q.high"].mean() < 1 and tg[p + "lap"].any()


@st.composite
def configs(draw):
    e = draw(st.sampled_from([16, 24, 40, 66, 72, 140]))
    return dict(method=draw(st.sampled_from(METHODS)), grid=draw(st.integers(2, 4)),
                patch=draw(st.sampled_from([1, 2])), chans=draw(st.sampled_from([1, 3])), e=e,
                heads=draw(st.sampled_from([h for h in (1, 2, 3, 4) if e % h == 0 and 8 <= e // h <= 70])),
                hidden=draw(st.sampled_from([24, 65, 100])), seed=draw(st.integers(0, 2 ** 32 - 1)),
                batch=draw(st.integers(1, 3)), context=draw(st.sampled_from(sorted(fast.AV_STRATEGIES))))


@settings(max_examples=12, deadline=None)
@given(cfg=configs())
def test_fast_equals_golden_on_random_models(cfg):
    cfg = dict(cfg)
    batch, context, method, seed = cfg.pop("batch"), cfg.pop("context"), cfg.pop("method"), cfg.pop("seed")
    model = _model(method, seed, **cfg)
    with av_strategy(context):
        assert_same(model, random_images(np.random.default_rng(seed), model, batch))


@pytest.mark.parametrize("context", ["sparse", "dense"])
def test_didb_with_more_than_64_keys(context):
    """N = 83 keys: two words per attention row; both A.V methods of the DIBA context."""
    model = _model("didb", 3, grid=9, e=48, heads=2, hidden=40)
    with av_strategy(context):
        assert_same(model, random_images(np.random.default_rng(1), model, 1))


def test_exp_table_cut_off_and_zero_weights():
    """A short exp_hi (m >> 16 past its end gives e = 0) and a zero score weight: still equal."""
    model = _model("didb", 11, grid=3, e=24, heads=2, hidden=24)
    w = model.arrays["blocks.0.score.w"].copy()
    w[0, 0] *= 40                      # large scores: many keys fall off a 2-entry exp_hi
    w[1, 1] = 0
    hi = model.arrays["blocks.0.exp_hi"][:2].copy()
    derived = derive(model, b0__score__w=w, b0__exp_hi=hi)
    tg = assert_same(derived, random_images(np.random.default_rng(2), model, 2))
    m = tg["blocks.0.hfsc"].max(-1, keepdims=True) - tg["blocks.0.hfsc"]
    assert (m >> SCORE_SHIFT >= 2).any() and (m >> SCORE_SHIFT < 2).any()


# ----------------------------------------------------------------------------- the activation unit
def test_act_unit_kernel_at_the_check_boundaries():
    """_act_unit equals golden_act.act_unit with |u| up to 2^31 - 1 and |z| near 2^30, and
    names the first element past |u| < 2^31 (flat C index) and its value."""
    rng = np.random.default_rng(5)
    b, n, c, shift = 2, 5, 70, 16
    acc = rng.integers(-300, 301, (b, n, c)).astype(np.int32)
    mult = np.int64(1 << shift)                       # u = acc + bias + tok_in, exactly
    bias = rng.integers(-5, 6, c).astype(np.int64) << shift
    big = 2 ** 31 - 1 - 305                           # |acc + bias| <= 305
    tok_in = np.array([0, big, -big, 0, 0], dtype=np.int64) << shift
    slope = rng.integers(-2 ** 14, 2 ** 14, c).astype(np.int64)      # |slope| < 1/4
    out = rng.integers(-100, 101, c).astype(np.int64)
    tok_out = np.array([2 ** 30 - 406, -2 ** 30 - 200, 0, -(2 ** 30 - 406), 0], dtype=np.int64)
    want = act_unit(acc, mult, bias, tok_in, slope, out, tok_out, shift, "w", slope_shift=16)
    z = np.empty((b * n, c), dtype=np.int32)
    assert _act_unit(acc.reshape(b * n, c), 300, n, mult, bias, tok_in, slope, out, tok_out, shift, 16, z) == (
        -1, 0, -1, 0)
    assert np.array_equal(z.reshape(b, n, c), want)
    assert np.abs(want).max() > 2 ** 30 - 1500
    tok_in[2] -= 300 << shift                          # now some u of token 2 reach -2^31
    u = acc.astype(np.int64) + (bias >> shift) + (tok_in >> shift)[:, None]
    first = int(np.argmax(np.abs(u).ravel() >= 2 ** 31))
    res = _act_unit(acc.reshape(b * n, c), 300, n, mult, bias, tok_in, slope, out, tok_out, shift, 16, z)
    assert first // c == 2 and res[:2] == (first, u.ravel()[first])


@pytest.mark.parametrize("mult, slope_scale, shift, slope_shift", [(12345, 1, 16, 16), (12345, 2 ** 8, 16, 24),
                                                                  (3 * 2 ** 33 + 7, 1, 40, 16), (777, 2 ** 26, 24, 24)])
def test_act_unit_kernel_paths(mult, slope_scale, shift, slope_shift):
    """The lean path (narrow, provably in range), and the general one (mult or a slope past
    int32) equal golden_act.act_unit."""
    rng = np.random.default_rng(mult)
    b, n, c, k = 3, 4, 67, 200
    acc = rng.integers(-k, k + 1, (b, n, c)).astype(np.int32)
    bias = rng.integers(-2 ** 30, 2 ** 30, c).astype(np.int64)
    tok_in = rng.integers(-2 ** 28, 2 ** 28, n).astype(np.int64)
    slope = rng.integers(-2 ** 17, 2 ** 17, c).astype(np.int64) * slope_scale // 2 ** 10
    out = rng.integers(-2 ** 12, 2 ** 12, c).astype(np.int64)
    tok_out = rng.integers(-2 ** 12, 2 ** 12, n).astype(np.int64)
    want = act_unit(acc, np.int64(mult), bias, tok_in, slope, out, tok_out, shift, "w", slope_shift=slope_shift)
    z = np.empty((b * n, c), dtype=np.int32)
    assert _act_unit(acc.reshape(b * n, c), k, n, np.int64(mult), bias, tok_in, slope, out, tok_out, shift, slope_shift,
                     z) == (
        -1, 0, -1, 0)
    assert np.array_equal(z.reshape(b, n, c), want) and (want < 0).any() and (want > 0).any()
    assert (abs(mult) >= 2 ** 31 or np.abs(slope).max() >= 2 ** 31) == (mult != 12345)   # general path but in case 1


@pytest.mark.parametrize("method", METHODS)
def test_act_unit_overflow_errors_match_golden(method):
    model = _model(method, 4, grid=2, e=24, heads=2, hidden=40)
    x = random_images(np.random.default_rng(0), model, 3)
    n, over = model.num_tokens, 2 ** 30 + 2 ** 20      # z stays within a few 2^F of the offsets
    # z overflow on fc1: one channel's output offset past 2^30
    out = model.arrays["blocks.0.fc1.out"].copy()
    out[7] = over
    msg = same_overflow_error(derive(model, b0__fc1__out=out), x)
    assert msg.startswith(f"blocks.0.fc1.act: {Z_OVERFLOW} at image 0, token 0, channel 7 (value ")
    # u overflow on qkv at token 3 wins over a z overflow at token 1 (u is checked first)
    tok_in = np.zeros(n, dtype=np.int64)
    tok_in[3] = 2 ** 32 << (model.frac_bits + model.shifts["resid"])
    tok_out = np.zeros(n, dtype=np.int64)
    tok_out[1] = over
    msg = same_overflow_error(derive(model, b0__qkv__tok_in=tok_in, b0__qkv__tok_out=tok_out), x)
    assert msg.startswith(f"blocks.0.qkv.act: {U_OVERFLOW} at image 0, token 3, channel 0 (value ")
    # z overflow on fc2 at the negative limit, token 2
    tok_out[1], tok_out[2] = 0, -over
    msg = same_overflow_error(derive(model, b0__fc2__tok_out=tok_out), x)
    assert msg.startswith(f"blocks.0.fc2.act: {Z_OVERFLOW} at image 0, token 2, channel 0 (value -")


def test_layernorm_overflow_after_the_unit_matches_golden():
    """X + z of proj (z near 2^30 on token 4) makes ln2's E*S2 reach 2^62: the fused residual +
    LayerNorm reports blocks.0.ln2 like the golden path."""
    model = _model("didb", 6, grid=2, e=24, heads=2, hidden=40)
    tok_out = np.zeros(model.num_tokens, dtype=np.int64)
    tok_out[4] = 2 ** 30 - 2 ** 20
    x = random_images(np.random.default_rng(0), model, 2)
    msg = same_overflow_error(derive(model, b0__proj__tok_out=tok_out), x)
    assert msg == "blocks.0.ln2: LayerNorm E*S2 + ln_eps reaches 2^62 at image 0, token 4"


# ----------------------------------------------------------------------------- batch entry points
@pytest.mark.parametrize("method", METHODS)
def test_forward_batch_and_profiled_equal_forward(method):
    model = _model(method, 9, grid=3, patch=2, e=40, heads=2, hidden=65, depth=2, chans=3)
    x = random_images(np.random.default_rng(3), model, 5)
    want = golden.forward(model, x)[0]
    assert np.array_equal(fast.forward_batch(model, x, threads=2), want)
    logits, prof = fast.forward_profiled(model, x)
    assert np.array_equal(logits, want)
    assert prof["qkv activation unit"] > 0 and prof["fc2 (and)"] > 0
    if method == "didb":
        assert prof["attention (hfsc + diba)"] > 0
