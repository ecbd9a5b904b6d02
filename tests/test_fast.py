"""gsbsim.fast (Numba, packed bits) equals gsbsim.golden at every traced tensor, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsbsim.engine import errors, fast, fast_ops, golden, golden_ops
from gsbsim.format import conventions as cv
from gsbsim.format.conventions import unpack_bits
from gsbsim.format.model_file import IntModel, validate
from gsbsim.format.random_model import random_images, random_model
from tests.support.engines import assert_same, av_strategy, derive, same_overflow_error


# ----------------------------------------------------------------------------- random models
@st.composite
def model_configs(draw):
    e = draw(st.sampled_from([24, 40, 72, 96, 130]))
    groups = draw(st.sampled_from([1, 2, 3]))
    return dict(
        embed_dim=e,
        num_heads=draw(st.sampled_from([h for h in (1, 2, 3, 4) if e % h == 0])),
        img_size=0,  # filled from grid * patch below
        patch_size=draw(st.sampled_from([1, 2, 3])),
        in_chans=draw(st.sampled_from([1, 3])),
        grid=draw(st.integers(1, 6)),                  # N = grid^2 + 2 tokens, up to 38
        mlp_hidden=draw(st.sampled_from([24, 48, 65, 130])),
        depth=draw(st.integers(1, 2)),
        num_classes=draw(st.integers(2, 12)),
        groups=groups,
        ratios=sorted(draw(st.lists(st.integers(1, 255), min_size=groups - 1, max_size=groups - 1))),
        mask_stat=draw(st.sampled_from(["row", "image"])),
        batch=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 2 ** 32 - 1)),
    )


@settings(max_examples=30, deadline=None)
@given(cfg=model_configs(), method=st.sampled_from(sorted(fast.AV_STRATEGIES)))
def test_fast_equals_golden_on_random_models(cfg, method):
    cfg = dict(cfg)
    rng = np.random.default_rng(cfg.pop("seed"))
    batch, grid = cfg.pop("batch"), cfg.pop("grid")
    cfg["img_size"] = grid * cfg["patch_size"]
    model = random_model(rng, **cfg)
    with av_strategy(method):
        assert_same(model, random_images(rng, model, batch))





@pytest.mark.parametrize("stat, method", [("row", "sparse"), ("image", "dense")])
def test_fast_equals_golden_on_a_digits_sized_model(stat, method):
    rng = np.random.default_rng(12)
    model = random_model(rng, embed_dim=96, depth=4, num_heads=3, mlp_hidden=384, mask_stat=stat)
    with av_strategy(method):
        tr = assert_same(model, random_images(rng, model, 8))
    assert len(set(tr["pred"].tolist())) > 1 or len({tuple(r) for r in tr["logits"].tolist()}) == 8


# ----------------------------------------------------------------------------- exact ties
def _tie_model(stat: str) -> tuple[IntModel, np.ndarray, dict]:
    """A model whose thresholds equal accumulator values that the images attain (in every block):
    q/k thresholds, the V mask ratios (max and min side), a.thr1, the A mask ratio,
    proj.in_thr and both fc1 thresholds."""
    rng = np.random.default_rng(21)
    m = random_model(rng, embed_dim=40, depth=2, num_heads=2, mlp_hidden=70, groups=3, ratios=(128, 200),
                     mask_stat=stat)
    x = random_images(rng, m, 2)
    e, h, d, n, hd = m.embed_dim, m.num_heads, m.head_dim, m.num_tokens, m.mlp_hidden
    r2 = m.ratios[0]
    big = 1 << 16
    ties: dict[str, int] = {}

    def trace(model):
        return golden.forward(model, x, trace=True)[1]

    for i in range(m.depth):
        p = f"blocks.{i}."
        t = trace(m)
        acc = t[p + "qkv.acc"][0].astype(np.int64)                  # image 0 [N, 3E]
        toks = rng.integers(0, n, e)
        m = derive(m, **{p + "q.thr": acc[toks, np.arange(e)].astype(np.int32),
                          p + "k.thr": acc[rng.integers(0, n, e), e + np.arange(e)].astype(np.int32)})
        # V masks of head 0: channel 0 the (row or image) max, channel 1 exactly r2/256 of it,
        # channel 2 the min, channel 3 exactly r2/256 of it
        vacc = acc[:, 2 * e:] * 256
        t_max, t_min = int(np.argmax(vacc[:, 0])), int(np.argmin(vacc[:, 2]))
        off = m.arrays[p + "v.offset"].copy()
        off[0] = 256 * big - vacc[t_max, 0]
        off[1] = r2 * big - vacc[t_max, 1]
        off[2] = -256 * big - vacc[t_min, 2]
        off[3] = -r2 * big - vacc[t_min, 3]
        m = derive(m, **{p + "v.offset": off})
        # A masks: row 0 of head 0 gets a max of 256*big and an entry exactly r2/256 of it
        t = trace(m)
        pr = t[p + "probs"][0, 0, 0] - m.arrays[p + "att_bias"][0, 0]
        bias = m.arrays[p + "att_bias"].copy()
        bias[0, 0, 0] = 256 * big - pr[0]
        bias[0, 0, 1] = r2 * big - pr[1]
        m = derive(m, **{p + "att_bias": bias})
        t = trace(m)
        m = derive(m, **{p + "a.thr1": np.array(t[p + "probs"][0, h - 1, n // 2, n // 3], dtype=np.int64)})
        t = trace(m)
        ctx = t[p + "ctx"][0]
        m = derive(m, **{p + "proj.in_thr": ctx[rng.integers(0, n, e), np.arange(e)]})
        t = trace(m)
        f1 = t[p + "fc1.acc"][0]
        vals = f1[rng.integers(0, n, hd), np.arange(hd)]
        hi = vals.astype(np.int32)                             # even channels: tie on the upper ray
        lo = np.full(hd, -e - 1, dtype=np.int32)
        lo[1::2], hi[1::2] = vals[1::2], vals[1::2] + 5       # odd channels: tie on the lower ray
        m = derive(m, **{p + "fc1.thr_hi": hi, p + "fc1.thr_lo": lo})
        ties[i] = (t_max, t_min)
    validate(m.header, m.arrays, "<tie model>")
    return m, x, ties


@pytest.mark.parametrize("stat", ["row", "image"])
def test_fast_equals_golden_at_exact_threshold_ties(stat):
    m, x, ties = _tie_model(stat)
    tr = assert_same(m, x)
    e, r2 = m.embed_dim, m.ratios[0]
    for i, (t_max, t_min) in ties.items():
        p, blk = f"blocks.{i}.", m.block(i)
        acc = tr[p + "qkv.acc"][0].astype(np.int64)
        assert np.all((acc[:, :e] == blk["q.thr"]).any(0))          # every Q channel has a tie
        assert np.all((acc[:, e:2 * e] == blk["k.thr"]).any(0))
        vq = tr[p + "v.q"][0, 0]                                    # image 0, head 0 [N, d]
        pool = tr[p + "v.q"][0] if stat == "image" else vq[[t_max, t_min]]
        assert vq[t_max, 0] == pool.max() and 256 * vq[t_max, 1] == r2 * vq[t_max, 0]
        assert vq[t_min, 2] == pool.min() and 256 * vq[t_min, 3] == r2 * vq[t_min, 2]
        assert tr[p + "v.planes"][0, 1, 0, t_max].tolist()[:2] == [1, 0]   # the max is in, the tie is out
        assert tr[p + "v.planes"][0, 1, 0, t_min].tolist()[2:4] == [1, 0]
        a = tr[p + "probs"][0]
        assert 256 * a[0, 0, 1] == r2 * a[0, 0, 0] == r2 * a.max()
        assert tr[p + "a.planes"][0, 1, 0, 0, :2].tolist() == [1, 0]
        assert (a == blk["a.thr1"]).any()
        assert np.all((tr[p + "ctx"][0] == blk["proj.in_thr"]).any(0))
        f1 = tr[p + "fc1.acc"][0]
        assert np.all((f1[:, 0::2] == blk["fc1.thr_hi"][0::2]).any(0))
        assert np.all((f1[:, 1::2] == blk["fc1.thr_lo"][1::2]).any(0))
        # ties resolve as specified: >= for thresholds, <= for the lower ray
        assert np.array_equal(tr[p + "proj.bits"][0], (tr[p + "ctx"][0] >= blk["proj.in_thr"]).astype(np.uint8))


@pytest.mark.parametrize("d, heads", [(64, 2), (128, 1)])
@pytest.mark.parametrize("stat", ["row", "image"])
def test_fused_blocks_with_q_and_k_packed_by_the_gemm(stat, d, heads):
    """Heads of whole words: untraced, the qkv GEMM packs Q and K in its epilogue and the attention
    takes (Q|K bits, V accumulators). The logits equal the golden path's, and block 0's attention
    from that input equals it from the qkv accumulators and the golden traces (Q bits, planes, ctx,
    proj bits)."""
    from gsbsim.engine.block_stack import block_stack
    from gsbsim.engine.kernels import xnor_bits_into, xnor_into
    rng = np.random.default_rng(40 + d)
    m = random_model(rng, embed_dim=d * heads, num_heads=heads, mlp_hidden=96, mask_stat=stat)
    s = block_stack(m)
    assert fast.qk_in_epilogue(m, s)
    x = random_images(rng, m, 3)
    tg = golden.forward(m, x, trace=True)[1]
    assert np.array_equal(fast.forward(m, x)[0], tg["logits"])
    b, n, e = x.shape[0], m.num_tokens, m.embed_dim
    a_bits = cv.pack_bits(tg["blocks.0.ln1.bits"].reshape(b * n, e))
    qk = np.empty((b * n, 2 * e // 64), np.uint64)
    xnor_bits_into(a_bits, s.w_qk[0], e, s.qk_hi[0], s.qk_lo[0], qk)
    v_acc = np.empty((b * n, e), np.int32)
    xnor_into(a_bits, s.w_v[0], e, v_acc)
    blk, sh = m.block(0), m.shifts
    rest = (n, heads, blk["q.thr"], blk["k.thr"], blk["v.offset"], np.int64(1) << np.int64(sh["value"]),
            np.asarray(m.ratios, np.int64), stat == "image", blk["exp_lut"], blk["att_bias"], sh["prob"], sh["recip"],
            np.int64(blk["a.thr1"]), blk["ctx.scale"], blk["proj.in_thr"], False, fast.AV_STRATEGIES["auto"],
            np.zeros(4, np.int64))
    packed = fast.gsb_attention_batch((qk, v_acc), *rest)
    plain = fast.gsb_attention_batch(tg["blocks.0.qkv.acc"].reshape(b * n, 3 * e).copy(), *rest)
    for k in (0, 1, 3, 6, 7, 8):          # Q, K bits, value codes, planes, ctx, proj bits
        assert np.array_equal(packed[k], plain[k]), k
    assert np.array_equal(unpack_bits(packed[0], d).astype(np.uint8), tg["blocks.0.q.bits"])
    assert np.array_equal(unpack_bits(packed[1], d).astype(np.uint8), tg["blocks.0.k.bits"])
    assert np.array_equal(unpack_bits(packed[6], n).astype(np.uint8).transpose(0, 2, 1, 3, 4), tg["blocks.0.a.planes"])
    assert np.array_equal(packed[7].reshape(b, n, e), tg["blocks.0.ctx"])


@pytest.mark.parametrize("stat, img_size", [("row", 8), ("image", 8), ("row", 4), ("image", 16)])
def test_fast_equals_golden_with_the_extreme_attention_threshold(stat, img_size):
    """a.thr1 = INT64_MIN (a valid file: compare-only) sets every b1 bit of a key, and no pad bit: the
    fast path pads its A rows to whole words with INT64_MIN and must clear the pads (6, 18 and 66 keys:
    a last word of 16, 32 and 16 compared lanes, after a full word for 66)."""
    rng = np.random.default_rng(12)
    m = random_model(rng, mask_stat=stat, img_size=img_size)
    m = derive(m, **{"blocks.0.a.thr1": np.array(-(2 ** 63), dtype=np.int64)})
    x = random_images(rng, m, 2)
    for strategy in ("sparse", "dense"):        # the dense form counts the plane's ones
        with av_strategy(strategy):
            tr = assert_same(m, x)
    assert tr["blocks.0.a.planes"][:, 0].all()                   # [B, G, H, N, N]: b1 is all ones


@pytest.mark.parametrize("stat", ["row", "image"])
def test_fast_equals_golden_when_attention_leaves_int32(stat):
    """Untraced, the fast path keeps A rows in int32: rows whose A exceeds 2^31 - 1 (att_bias near the
    int32 maximum, P up to 2^prob on top) take the int64 fallback and still equal the golden path."""
    rng = np.random.default_rng(21)
    m = random_model(rng, mask_stat=stat)
    bias = m.arrays["blocks.0.att_bias"].copy()
    bias[0, ::2] = 2 ** 31 - 1 - rng.integers(0, 2 ** m.shifts["prob"], bias[0, ::2].shape)   # even query rows of head 0
    m = derive(m, **{"blocks.0.att_bias": bias.astype(np.int32)})
    x = random_images(rng, m, 2)
    for strategy in ("sparse", "dense"):
        with av_strategy(strategy):
            tr = assert_same(m, x)
    assert tr["blocks.0.probs"].max() > 2 ** 31 - 1


# ----------------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(5)
    m = random_model(rng, embed_dim=24, depth=2, num_heads=2, mlp_hidden=40)
    return m, random_images(rng, m, 3)


def test_same_overflow_errors_as_golden(small):
    m, x = small
    msg = same_overflow_error(derive(m, blocks__1__fc2__bias=np.full(24, 2 ** 60, np.int64)), x)
    assert msg.startswith("blocks.1.fc2: residual stream overflows int32 at image 0, token 0, channel 0")
    msg = same_overflow_error(derive(m, blocks__0__proj__bias=np.full(24, -(2 ** 60), np.int64)), x)
    assert msg.startswith("blocks.0.proj: residual stream overflows int32")
    msg = same_overflow_error(derive(m, pos=np.full((18, 24), 2 ** 30, np.int32)), x)
    assert msg.startswith("blocks.0.ln1: LayerNorm E*S2 + ln_eps reaches 2^62 at image 0, token 0")
    s = m.shifts["resid"]                      # proj adds ~2^28: in int32, but E^2 * 2^56 > 2^62 at ln2
    msg = same_overflow_error(derive(m, blocks__0__proj__bias=np.full(24, 2 ** (28 + s), np.int64)), x)
    assert msg.startswith("blocks.0.ln2: LayerNorm E*S2 + ln_eps reaches 2^62 at image 0, token 0")
    msg = same_overflow_error(derive(m, tokens=np.full((2, 24), -(2 ** 31), np.int32), pos=np.full((18, 24), -1, np.int32)), x)
    assert msg == "embed: residual stream overflows int32 at image 0, token 0, channel 0 (value -2147483649)"


def test_overflow_at_the_exact_int32_boundary_names_the_same_element(small):
    """fc2.bias chosen so that the largest value of channel 5 is exactly 2^31 - 1 (allowed), then 2^31."""
    m, x = small
    _, t = golden.forward(m, x, trace=True)
    blk, s = m.block(0), m.shifts["resid"]
    base = t["blocks.0.resid1"].astype(np.int64) + \
        ((t["blocks.0.fc2.acc"].astype(np.int64) * int(blk["fc2.mult"]) + (1 << (s - 1))) >> s)
    top = int(base[..., 5].max())
    bias = np.zeros(24, np.int64)
    bias[5] = (2 ** 31 - 1 - top) << s
    # 2^31 - 1 passes fc2's int32 check, and the next LayerNorm then refuses E*S2 >= 2^62
    msg = same_overflow_error(derive(m, blocks__0__fc2__bias=bias.copy()), x)
    assert msg.startswith("blocks.1.ln1: LayerNorm E*S2 + ln_eps reaches 2^62")
    bias[5] += 1 << s
    where = np.unravel_index(int(np.argmax(base[..., 5] == top)), base.shape[:2])
    msg = same_overflow_error(derive(m, blocks__0__fc2__bias=bias), x)
    assert msg == (f"blocks.0.fc2: residual stream overflows int32 at image {where[0]}, token {where[1]}, "
                   f"channel 5 (value 2147483648)")


def _ln(x: np.ndarray, eps: int, sign=None, thr=None):
    """fast_ops.ln_bits_rows on rows x with the rows' own fast-path limit: (packed bits, bad row)."""
    e = x.shape[1]
    sign = np.ones(e, np.int8) if sign is None else sign
    thr = np.zeros(e, np.int64) if thr is None else thr
    out = np.zeros((x.shape[0], 1), np.uint64)
    bad = fast_ops.ln_bits_rows(x, sign, thr, np.int64(16), eps, fast_ops.fast_limit(e, eps), out)
    return out, bad


def test_ln_overflow_boundary_matches_golden():
    """The jitted LayerNorm check is exact at E*S2 + ln_eps = 2^62 - 1 (allowed) and 2^62 (error)."""
    big = np.array([[2 ** 31 - 1]], dtype=np.int32)
    bits, bad = _ln(big, 2 ** 32 - 2)
    assert bad == -1 and bits.tolist() == [[1]]
    _, bad = _ln(big, 2 ** 32 - 1)
    assert bad == 0
    rows = np.array([[1, 2], [2 ** 31 - 1, -(2 ** 31)], [3, 4]], dtype=np.int32)   # row 1: 2*S2 ~ 2^64
    _, bad = _ln(rows, 1)
    assert bad == 1


def test_ln_fast_limit_is_the_exact_edge():
    """Rows with max|x| <= _fast_limit skip the overflow checks: the limit is the largest safe value."""
    for e, eps in ((1, 1), (3, 5), (192, 2 ** 40), (4096, 1)):
        lim = fast_ops.fast_limit(e, eps)
        assert e * e * lim * lim + eps < 2 ** 62 <= e * e * (lim + 1) ** 2 + eps
    assert fast_ops.fast_limit(2, 2 ** 62) == -1


def test_fused_residual_layernorm_reports_the_residual_overflow_first():
    """_residual_ln (residual add, then the next LayerNorm per row): an LN overflow in an early
    row loses to a residual overflow in a later row, as when the layers run one after the other."""
    e, shift = 4, 4
    x = np.array([[2 ** 31 - 1] * e, [0] * e, [5, 6, 7, 8]], dtype=np.int32)
    acc = np.zeros((3, e), np.int32)
    acc[1, 2] = 1
    bias = np.zeros(e, np.int64)
    mult = np.int64(2 ** 40)                                   # acc 1 -> +2^36 in row 1, channel 2
    sign, thr = np.ones(e, np.int8), np.zeros(e, np.int64)
    bits = np.zeros((3, 1), np.uint64)
    args = (sign, thr, np.int64(16), 1, fast_ops.fast_limit(e, 1), bits)
    out, bad, val, ln_bad = fast_ops.residual_ln_rows(x, acc, mult, bias, shift, *args)
    assert (bad, int(val), ln_bad) == (1 * e + 2, 2 ** 36, 0)
    with pytest.raises(errors.IntegerOverflowError, match="residual stream overflows int32 at image 0, token 1"):
        golden_ops.residual_add(x[None], acc[None], mult, bias, shift, "p")
    acc[1, 2] = 0                                              # no residual overflow: the LN one shows
    out, bad, val, ln_bad = fast_ops.residual_ln_rows(x, acc, mult, bias, shift, *args)
    assert (bad, ln_bad) == (-1, 0) and np.array_equal(out, x)
    assert np.array_equal(unpack_bits(bits[2:], e), golden_ops.ln_bits(x[2:], sign, thr, 16, 1, "n"))


@pytest.mark.parametrize("big", [2 ** 31 - 1, -2 ** 31])
@pytest.mark.parametrize("mult, shift", [(3, 4), (-2 ** 31, 36), (2 ** 31 - 1, 36), (2 ** 31, 36), (-2 ** 31 - 1, 36)])
def test_fused_residual_layernorm_equals_separate_passes(mult, shift, big):
    """residual_ln_rows takes the LayerNorm sums from its residual pass when max|x| <= fast_limit and
    recomputes them (checked) above it: both give residual_add_rows + ln_bits_rows, bit for bit, also on
    rows at the limit, past it, and whose E*S2 + eps overflows (all positive or all negative: max|x|
    is the larger of max and -min); with mult in int32 (32-bit products) and just outside it (64-bit
    products)."""
    rng = np.random.default_rng(5)
    e, eps = 70, 7
    lim = fast_ops.fast_limit(e, eps)
    x = rng.integers(-8, 9, (6, e)).astype(np.int32)
    x[1, 3], x[2, 5], x[3] = lim, -lim - 1, big                   # at the edge, past it, an overflowing row
    x[4] = 5                                                       # E*x - S1 = 0: an off-by-one in S1 flips bits
    acc = rng.integers(-64, 64, (6, e)).astype(np.int32)
    acc[1:5] = 0                                                   # rq(0) = (bias + half) >> shift = 0 below
    mult, bias = np.int64(mult), np.zeros(e, np.int64)
    sign, thr = rng.integers(-1, 2, e).astype(np.int8), rng.integers(-2 ** 15, 2 ** 15, e)
    bits = np.zeros((6, 2), np.uint64)
    out, bad, _, ln_bad = fast_ops.residual_ln_rows(x, acc, mult, bias, shift, sign, thr, np.int64(16), eps, lim, bits)
    want, want_bad, _ = fast_ops.residual_add_rows(x, acc, mult, bias, shift)
    want_bits = np.zeros((6, 2), np.uint64)
    want_ln_bad = fast_ops.ln_bits_rows(want, sign, thr, np.int64(16), eps, lim, want_bits)
    assert bad == want_bad == -1 and ln_bad == want_ln_bad == 3 and np.array_equal(out, want)
    keep = [0, 1, 2, 4, 5]                                        # a bad row's bits are meaningless
    assert np.array_equal(bits[keep], want_bits[keep])
    assert np.array_equal(unpack_bits(bits[keep], e), golden_ops.ln_bits(want[keep], sign, thr, 16, eps, "n"))


def test_ln_bits_on_unvalidated_parameters_match_golden():
    """Signs outside -1..1 or thresholds beyond int32 (which a model file cannot hold) take the
    general int64 path and still equal the golden arithmetic."""
    rng = np.random.default_rng(3)
    x = rng.integers(-2 ** 20, 2 ** 20, (6, 70)).astype(np.int32)
    for sign, thr in ((rng.integers(-1, 2, 70).astype(np.int8), rng.integers(-2 ** 16, 2 ** 16, 70)),
                      (rng.integers(-3, 4, 70).astype(np.int8), rng.integers(-2 ** 16, 2 ** 16, 70)),
                      (rng.integers(-1, 2, 70).astype(np.int8), rng.integers(-2 ** 40, 2 ** 40, 70))):
        want = golden_ops.ln_bits(x, sign, thr, 16, 7, "test")
        out = np.zeros((6, 2), np.uint64)
        assert fast_ops.ln_bits_rows(x, sign, thr, np.int64(16), 7, fast_ops.fast_limit(70, 7), out) == -1
        assert np.array_equal(unpack_bits(out, 70), want)


def test_fast_rejects_bad_images(small):
    m, _ = small
    with pytest.raises(errors.InputError, match="int8"):
        fast.forward(m, np.zeros((1, 1, 8, 8), np.uint8))
    with pytest.raises(errors.InputError, match=r"\(1, 1, 4, 4\)"):
        fast.forward(m, np.zeros((1, 1, 4, 4), np.int8))


def test_fast_runs_a_model_loaded_from_file(tmp_path):
    from gsbsim.format.model_file import load_model, save_model
    rng = np.random.default_rng(31)
    m = random_model(rng, embed_dim=72, num_heads=3, mlp_hidden=65, groups=2, ratios=(190,), mask_stat="image")
    save_model(tmp_path / "m.npz", m.header, m.arrays)
    x = random_images(rng, m, 2)
    loaded = load_model(tmp_path / "m.npz")
    assert np.array_equal(fast.forward(loaded, x)[0], golden.forward(m, x)[0])
    assert_same(loaded, x)


# ----------------------------------------------------------------------------- larger attention, batch entry points
def test_fast_equals_golden_with_more_than_64_keys_and_wide_heads():
    """N = 83 keys (two words), head dim 65 (two words), G = 3 with a dense b1 plane: the
    complement walk, multi-word scores and both context methods against the golden path."""
    rng = np.random.default_rng(40)
    m = random_model(rng, img_size=9, patch_size=1, embed_dim=130, num_heads=2, mlp_hidden=65, depth=1)
    x = random_images(rng, m, 2)
    thr1 = int(np.median(golden.forward(m, x, trace=True)[1]["blocks.0.probs"]))
    m = derive(m, blocks__0__a__thr1=np.array(thr1, np.int64))   # b1 about half dense
    for method in ("sparse", "dense"):
        with av_strategy(method):
            tr = assert_same(m, x)
    dens = tr["blocks.0.a.planes"][:, 0].mean()
    assert 0.3 < dens < 0.7 and m.num_tokens == 83


def _codes_reference(v, ratios, mx, mn):
    """Exact (Python integer) value codes: bit 0 = v >= 0, bit k = 256*v > r_k*mx or 256*v < r_k*mn."""
    return [int(x >= 0) | sum(int(256 * x > r * mx or 256 * x < r * mn) << (k + 1) for k, r in enumerate(ratios))
            for x in map(int, v)]


@pytest.mark.parametrize("d", [64, 128, 40, 1])
@pytest.mark.parametrize("n_ratios", [0, 1, 2, 3, 4])
def test_value_codes_at_their_thresholds(d, n_ratios):
    """fast_attention._codes_row (sign and first two masks in one pass, further masks OR-ed in) against
    the exact codes: values on, next to and far beyond each mask bound, int64 extremes (with the image
    statistic's given max / min) and bounds as large as r*max stays in int64 (2^55 * 255)."""
    from gsbsim.engine.fast_attention import _codes_row
    rng = np.random.default_rng(41 + d + n_ratios)
    i64 = np.iinfo(np.int64)
    ratios = np.array([179, 230, 1, 255][:n_ratios], np.int64)
    for mx, mn in [(1000, -1000), (2 ** 55, -2 ** 55), (7, 3), (-3, -700), (0, 0), (-2 ** 55, -2 ** 55)]:
        near = [0, -1, 1, mx, mn]
        for r in ratios.tolist():
            hi, lo = (r * mx) >> 8, -((-r * mn) >> 8)
            near += [hi - 1, hi, hi + 1, lo - 1, lo, lo + 1]
        for row_stat in (False, True):
            pool = near + ([] if row_stat else [int(i64.min), int(i64.max), int(i64.min) + 1, int(i64.max) - 1])
            v = np.array(rng.choice(pool, 3 * d), np.int64).reshape(3, d)   # 3 rows: offsets other than 0
            if row_stat:       # the row's own max / min are mx / mn
                v[:, 0], v[:, -1] = mx, mn
            codes = np.full(3 * d + 1, 0xAA, np.uint8)                       # a byte past the rows stays
            for row in range(3):
                _codes_row(v.reshape(-1), np.uint64(row * d), codes, np.uint64(row * d), d, ratios, np.int64(mx),
                           np.int64(mn), row_stat)
            for row in range(3):
                rmx, rmn = (int(v[row].max()), int(v[row].min())) if row_stat else (mx, mn)
                assert codes[row * d:(row + 1) * d].tolist() == _codes_reference(v[row], ratios, rmx, rmn), (mx, mn, row)
            assert codes[-1] == 0xAA


def test_forward_batch_and_profiled_equal_forward(small):
    m, x = small
    x = np.concatenate([x, x[::-1], x])                          # 9 images
    want = fast.forward(m, x)[0]
    for threads in (1, 2, 4, 20):
        got = fast.forward_batch(m, x, threads=threads)
        assert got.dtype == np.int64 and np.array_equal(got, want)
    logits, prof = fast.forward_profiled(m, x)
    assert np.array_equal(logits, want)
    assert set(fast.ATTENTION_PHASES) <= set(prof) and "qkv (xnor)" in prof and "other" in prof
    assert all(v >= 0 for v in prof.values()) and sum(prof.values()) > 0
    with pytest.raises(errors.InputError, match="threads must be >= 1"):
        fast.forward_batch(m, x, threads=0)


def test_forward_batch_reports_the_same_overflow_as_forward(small):
    """Image 2 of 3 overflows at the embedding, images 0 and 1 only later (at blocks.0.ln1): the
    error names the first layer over the whole batch and the global image index, as golden's."""
    m, x = small
    x = np.concatenate([x[:2], np.full((1,) + x.shape[1:], 127, np.int8)])
    weight = m.arrays["patch.weight"].copy()
    weight[0] = 1                                                  # channel 0: acc = sum of the patch
    pos = m.arrays["pos"].copy()
    pos[2:, 0] = 2 ** 31 - 1 - 507                                 # overflows iff the patch sums to 508
    bad = derive(m, patch__weight=weight, patch__mult=np.full(24, 1 << m.shifts["patch"], np.int64),
                  patch__bias=np.zeros(24, np.int64), pos=pos)
    assert int(golden_ops.patch_embed(bad, x[:2])[0][..., 0].max()) < 508
    with pytest.raises(errors.IntegerOverflowError) as eg:
        golden.forward(bad, x)
    assert str(eg.value).startswith("embed: residual stream overflows int32 at image 2, token 2, channel 0")
    with pytest.raises(errors.IntegerOverflowError, match="blocks.0.ln1"):
        fast.forward(bad, x[:2])
    with pytest.raises(errors.IntegerOverflowError) as eb:
        fast.forward_batch(bad, x, threads=3)
    assert str(eb.value) == str(eg.value)


def test_cache_key_covers_the_linked_modules(tmp_path):
    """fast_ops.cache_depends_on: the cache key of a caller changes with the source of a listed callee
    module (Numba alone keys on the caller's file: an edited callee would run stale from the cache)."""
    from types import SimpleNamespace
    callee = tmp_path / "callee.py"

    def stamp(text: str):
        callee.write_text(text)
        disp = SimpleNamespace(_cache=SimpleNamespace(_cache_file=SimpleNamespace(_source_stamp=b"own file")))
        fast_ops.cache_depends_on(disp, SimpleNamespace(__file__=str(callee)))
        return disp._cache._cache_file._source_stamp

    assert stamp("x = 1\n") == stamp("x = 1\n") != stamp("x = 2\n") != b"own file"
    fast_ops.cache_depends_on(SimpleNamespace(), SimpleNamespace(__file__=str(callee)))   # no cache: no-op
    from gsbsim.engine import fast_block
    for fn in (fast_block.gsb_requant_block, fast_block.gsb_requant_blocks):
        assert isinstance(fn._cache._cache_file._source_stamp, str)   # applied
