"""gsbsim.golden for methods reactnet and didb (docs/integer_model.md §13): each new op against
hand-computed examples and the PyTorch reference, the forward pass and its trace, the random models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gsbsim.engine import golden
from gsbsim.engine import golden_act, golden_didb
from gsbsim.format.methods import block_trace_names
from gsbsim.engine.trace import trace_names
from gsbsim.engine.errors import IntegerOverflowError
from gsbsim.format.model_file import ModelFileError, load_model, save_model
from gsbsim.format.random_model import exp_tables, random_images, random_model
from reference import didb

METHODS = ("reactnet", "didb")


@pytest.fixture(scope="module", params=METHODS)
def model(request):
    return random_model(np.random.default_rng(3), method=request.param, img_size=6, patch_size=2,
                        embed_dim=24, num_heads=2, mlp_hidden=40)


def _tokens(values) -> np.ndarray:
    """A [1, N, 1] int64 tensor of one channel."""
    return np.asarray(values, dtype=np.int64).reshape(1, -1, 1)


# ----------------------------------------------------------------------------- §13.1 activation unit
def test_act_unit_hand_example():
    # two tokens, four channels; shift 2: u = (3*acc + bias[o] + tok_in[n] + 2) >> 2
    acc = np.array([[[3, -5, -5, -6], [1, -3, 7, -9]]])
    bias, tok_in = np.array([1, 0, 0, 2]), np.array([2, -4])
    slope = np.array([1 << 15, 1 << 15, 0, -(3 << 16)])   # 0.5, 0.5, 0, -3 (2^-16)
    out, tok_out = np.array([10, 20, 30, 40]), np.array([0, 100])
    z = golden_act.act_unit(acc, 3, bias, tok_in, slope, out, tok_out, 2, "w", slope_shift=16)
    # token 0: u = 14>>2 = 3;  -11>>2 = -3 -> (-3*32768 + 32768)>>16 = -1 (-1.5 rounds up);
    #          -11>>2 = -3 -> slope 0 -> 0;   (-18 + 2 + 2 + 2)>>2 = -3 -> -3*-3 = 9
    # token 1: u = (3 + 1 - 4 + 2)>>2 = 0;  (-9 - 4 + 2)>>2 = -3 -> -1;  (21 - 4 + 2)>>2 = 4;
    #          (-27 + 2 - 4 + 2)>>2 = -7 -> 21
    assert z.tolist() == [[[3 + 10, -1 + 20, 0 + 30, 9 + 40], [0 + 110, -1 + 120, 4 + 130, 21 + 140]]]
    assert z.dtype == np.int64


def test_act_unit_slope_rounds_half_up_for_negative_u():
    u_vals = np.array([[[-1, -2, -3, -5]]])   # shift 1, mult 2: u = (2*acc + 1) >> 1 = acc
    z = golden_act.act_unit(u_vals, 2, np.zeros(4, np.int64), np.zeros(1, np.int64), np.full(4, 1 << 15),
                    np.zeros(4, np.int64), np.zeros(1, np.int64), 1, "w", slope_shift=16)
    assert z.tolist() == [[[0, -1, -1, -2]]]  # -0.5 -> 0, -1, -1.5 -> -1, -2.5 -> -2
    # the same slope 1/2 on the 2^-24 grid (shifts.slope = 24), and one that only 2^-24 resolves
    z = golden_act.act_unit(u_vals, 2, np.zeros(4, np.int64), np.zeros(1, np.int64),
                            np.array([1 << 23, 1 << 23, 1 << 23, (1 << 23) + 1]),
                            np.zeros(4, np.int64), np.zeros(1, np.int64), 1, "w", slope_shift=24)
    assert z.tolist() == [[[0, -1, -1, -3]]]  # -5 * (1/2 + 2^-24) = -2.5000003 -> -3


@pytest.mark.parametrize("acc, what", [(2 ** 31, "u leaves"), (2 ** 30, "z leaves")])
def test_act_unit_overflow_names_the_unit_image_and_token(acc, what):
    a = np.zeros((2, 3, 2), dtype=np.int64)
    a[1, 2, 0] = acc      # shift 1, mult 2: u = acc
    with pytest.raises(IntegerOverflowError) as ei:
        golden_act.act_unit(a, 2, np.zeros(2, np.int64), np.zeros(3, np.int64), np.zeros(2, np.int64),
                    np.zeros(2, np.int64), np.zeros(3, np.int64), 1, "blocks.1.fc2.act", slope_shift=16)
    msg = str(ei.value)
    assert msg.startswith("blocks.1.fc2.act: activation") and what in msg
    assert "image 1, token 2" in msg
    # just inside both limits: no error
    a[1, 2, 0] = 2 ** 30 - 1
    golden_act.act_unit(a, 2, np.zeros(2, np.int64), np.zeros(3, np.int64), np.zeros(2, np.int64),
                np.zeros(2, np.int64), np.zeros(3, np.int64), 1, "w", slope_shift=16)


# ----------------------------------------------------------------------------- §13.2 HFSC
GRID3 = [5, -7, 1, 2, 3, 4, 5, 6, 7, 8, 9]   # cls, dist, then a 3x3 grid row-major


def test_haar_s4_on_a_3x3_grid_with_replicate_edges():
    s4 = golden_didb.haar_s4(_tokens(GRID3))
    assert s4.ravel().tolist() == [20, -28, 12, 16, 18, 24, 28, 30, 30, 34, 36]
    # = 4 * reference.didb.haar_split's low band (exact on integers)
    low, high = didb.haar_split(torch.tensor(GRID3, dtype=torch.float64).reshape(-1, 1))
    assert (4 * low).ravel().tolist() == s4.ravel().tolist()
    assert (4 * high).ravel().tolist() == (4 * np.array(GRID3) - s4.ravel()).tolist()


def test_haar_s4_constant_grid_has_no_high_band_and_4x4_grid():
    z = np.full((1, 18, 2), -3, dtype=np.int64)
    assert np.array_equal(golden_didb.haar_s4(z), 4 * z)
    z = np.random.default_rng(0).integers(-50, 50, (2, 18, 3))
    ref, _ = didb.haar_split(torch.from_numpy(z).double())
    assert np.array_equal(golden_didb.haar_s4(z), (4 * ref).numpy().astype(np.int64))


def test_hfsc_bits_thresholds_and_head_layout():
    z = np.repeat(_tokens(GRID3), 4, axis=2)    # E = 4, 2 heads of d = 2; every channel the same
    thr_low = np.array([0, 20, 0, 0])
    thr_high = np.array([0, 0, -8, 1])
    low, high = golden_didb.hfsc_bits(z, thr_low, thr_high, heads=2)
    assert low.shape == high.shape == (1, 2, 11, 2)
    s4 = np.array([20, -28, 12, 16, 18, 24, 28, 30, 30, 34, 36])
    h4 = 4 * np.array(GRID3) - s4               # [0, 0, -8, -8, -6, -8, -8, -6, -2, -2, 0]
    assert low[0, 0, :, 0].tolist() == (s4 >= 0).astype(int).tolist()
    assert low[0, 0, :, 1].tolist() == (s4 >= 20).astype(int).tolist()
    assert high[0, 1, :, 0].tolist() == (h4 >= -8).astype(int).tolist() == [1] * 11
    assert high[0, 1, :, 1].tolist() == [0] * 11   # cls/dist: 0 >= 1 is false, grid all < 0


def test_hfsc_scores_weight_the_two_maps_per_head():
    lo = np.array([[[[2, -2]], [[4, 0]]]])       # [B=1, H=2, 1, 2]
    hi = np.array([[[[0, 2]], [[-4, 4]]]])
    w = np.array([[3, -1], [5, 7]])              # w[band, head]
    s = golden_didb.hfsc_scores(lo, hi, w)
    assert s.tolist() == [[[[6, -6 + 10]], [[-4 - 28, 28]]]]


def test_exp_tables_and_three_level_exp():
    lo, mid, hi = exp_tables(16)
    assert hi.tolist() == [65536, 24109, 8869, 3263, 1200, 442, 162, 60, 22, 8, 3, 1, 0]
    assert mid.shape == lo.shape == (256,)
    assert mid[:4].tolist() == [65536, 65280, 65026, 64772] and mid[255] == 24204   # e^(-s/256)
    assert lo[:3].tolist() == [65536, 65535, 65534] and lo[255] == 65281             # e^(-r/65536)
    one = 1 << 16
    m = np.array([0, 1, 256, one, one + 3 * 256 + 5, 11 * one + 255 * 256, 12 * one, 13 * one, 2 ** 40])
    e = golden_didb.exp3_weights(m, lo, mid, hi, 16)
    # rq(rq(hi * mid, 16) * lo, 16): 1 -> lo[1]; 256 -> mid[1]; 1 nat -> hi[1];
    # 1 + 3/256 + 5/65536 nats: rq(24109 * 64772) = 23828, rq(23828 * 65531) = 23826 (float: 23826.6);
    # 11 nats + 255/256: rq(1 * 24204) = 0; 12 nats: hi[12] = 0; 13 nats and beyond: outside the table
    assert e.tolist() == [65536, 65535, 65280, 24109, 23826, 0, 0, 0, 0]


def test_hfsc_softmax_row_hand_example():
    lo, mid, hi = exp_tables(16)
    one = 1 << 16
    s = np.array([[[[2 * one, one, 2 * one, 256]]]])       # m = [0, 1 nat, 0, 2 nats - 1/256]
    a = golden_didb.hfsc_softmax(s, lo, mid, hi, np.array([[[0, 0, 0, 5]]]), 16, 48)
    e = np.array([65536, 24109, 65536, (24109 * 24204 + 32768) >> 16])   # the last: hi[1] * mid[255], lo[0]
    assert e[3] == 8904   # 65536 e^(-1 - 255/256) = 8903.9
    r = (1 << 48) // int(e.sum())
    want = (e * r + (1 << 31)) >> 32
    assert a.ravel().tolist() == (want + [0, 0, 0, 5]).tolist()


# ----------------------------------------------------------------------------- §13.3 DIBA
def test_laplacian_zero_padding_corners_edges_and_prefix():
    ones = np.ones((1, 11, 1), dtype=np.int64)
    assert golden_didb.laplacian8(ones).ravel().tolist() == [0, 0, -5, -3, -5, -3, 0, -3, -5, -3, -5]
    centre = ones.copy()
    centre[0, 2 + 4] = -1                        # grid (1, 1) is -1
    lap = golden_didb.laplacian8(centre).ravel().tolist()
    assert lap == [0, 0, -7, -5, -7, -5, 16, -5, -7, -5, -7]
    ref = didb.laplacian8(torch.from_numpy(centre).double())
    assert ref.ravel().tolist() == lap


def test_diba_context_tiny_hand_example():
    # N = 6 (2x2 grid), H = 1, d = 1. sigma = [+1, -1, +1, +1, -1, +1] (tokens 0..5)
    s = np.array([1, 0, 1, 1, 0, 1], dtype=np.uint8).reshape(1, 1, 6, 1)
    b1 = np.zeros((1, 1, 6, 6), dtype=np.uint8)
    b1[0, 0, 0, [0, 1]] = 1                      # token 0 attends to 0, 1: D = 1 - 1 = 0, k = 2
    b1[0, 0, 3, [2, 3, 5]] = 1                   # token 3 attends to 2, 3, 5: D = 3, k = 3
    ctx, lap = golden_didb.diba_context(b1, s, 100, 40, np.array([7]))
    # lap of the patch grid [[+1, +1], [-1, +1]]: token 2 (0,0): (1 - 1 + 1) - 8 = -7;
    # token 3 (0,1): (1 - 1 + 1) - 8 = -7; token 4 (1,0): (1 + 1 + 1) + 8 = 11; token 5: (1 + 1 - 1) - 8 = -7
    assert lap.ravel().tolist() == [0, 0, -7, -7, 11, -7]
    sigma = np.array([1, -1, 1, 1, -1, 1])
    d = np.array([0, 0, 0, 3, 0, 0])
    k = np.array([2, 0, 0, 3, 0, 0])
    want = 100 * d - (100 * k - 40) * sigma + 7 * np.array([0, 0, -7, -7, 11, -7])
    assert ctx.ravel().tolist() == want.tolist()
    assert want.tolist() == [-160, -40, -9, -9, 37, -9]   # token 3: 300 - 260 - 49


def test_golden_didb_context_equals_reference_diba_within_rounding():
    m = random_model(np.random.default_rng(5), method="didb", img_size=8, patch_size=2, embed_dim=24,
                     num_heads=2, mlp_hidden=40, depth=1)
    alpha_a, alpha_v, lam = 0.037, 0.61, np.array([0.3, -1.7])
    ctx_bits = m.shifts["ctx"]
    one = 2.0 ** ctx_bits
    m.arrays["blocks.0.ctx.scale"] = np.array([[round(alpha_a * alpha_v * one)]], dtype=np.int64)
    m.arrays["blocks.0.ctx.vscale"] = np.int64(round(alpha_v * one))
    m.arrays["blocks.0.ctx.local"] = np.round(lam * alpha_v * one).astype(np.int64)
    _, tr = golden.forward(m, random_images(np.random.default_rng(6), m, 3), trace=True)
    a_pl = torch.from_numpy(tr["blocks.0.a.planes"][:, 0]).double()          # [B, H, N, N]
    sigma = torch.from_numpy(tr["blocks.0.v.planes"][:, 0]).double() * 2 - 1  # [B, H, N, d]
    ref = didb.diba(alpha_a * a_pl, alpha_v * sigma, torch.tensor(lam).reshape(2, 1, 1))
    ref = ref.transpose(1, 2).reshape(3, m.num_tokens, m.embed_dim).numpy() * one
    got = tr["blocks.0.ctx"].astype(np.float64)
    # each of the three constants is off by at most 1/2: |err| <= (|D| + k + 1 + |lap|) / 2 <= (2N + 17) / 2
    bound = (2 * m.num_tokens + 17) / 2
    assert np.abs(got - ref).max() <= bound
    assert 0 < a_pl.mean() < 1 and np.abs(ref).max() > 100 * bound   # a real check, not a trivial one


# ----------------------------------------------------------------------------- the forward pass
def test_trace_names_per_method():
    g = block_trace_names("gsb")
    assert block_trace_names("bit") == block_trace_names("sign") == g
    r = block_trace_names("reactnet")
    assert r == ("ln1.bits", "qkv.acc", "qkv.z", "q.bits", "k.bits", "v.q", "v.planes", "scores", "probs",
                 "a.planes", "ctx", "proj.bits", "proj.acc", "proj.z", "resid1", "ln2.bits", "fc1.acc",
                 "fc1.z", "fc1.bits", "fc2.acc", "fc2.z", "resid2")
    d = block_trace_names("didb")
    assert d == ("ln1.bits", "qkv.acc", "qkv.z", "q.low", "q.high", "k.low", "k.high", "v.q", "v.planes",
                 "scores.low", "scores.high", "hfsc", "probs", "a.planes", "lap", "ctx", "proj.bits",
                 "proj.acc", "proj.z", "resid1", "ln2.bits", "fc1.acc", "fc1.z", "fc1.bits", "fc2.acc",
                 "fc2.z", "resid2")
    assert trace_names(2, "didb")[3:3 + len(d)] == [f"blocks.0.{n}" for n in d]


def test_forward_trace_dtypes_and_shapes(model):
    b, n, e, h, hd = 2, model.num_tokens, model.embed_dim, model.num_heads, model.mlp_hidden
    d = e // h
    _, tr = golden.forward(model, random_images(np.random.default_rng(0), model, b), trace=True)
    assert list(tr) == trace_names(model.depth, model.method)
    want = {"qkv.z": (np.int32, (b, n, 3 * e)), "proj.z": (np.int32, (b, n, e)), "fc1.z": (np.int32, (b, n, hd)),
            "fc2.z": (np.int32, (b, n, e)), "v.q": (np.int64, (b, h, n, d)), "v.planes": (np.uint8, (b, 1, h, n, d)),
            "a.planes": (np.uint8, (b, 1, h, n, n)), "probs": (np.int64, (b, h, n, n)), "ctx": (np.int64, (b, n, e))}
    if model.method == "didb":
        want.update({k: (np.uint8, (b, h, n, d)) for k in ("q.low", "q.high", "k.low", "k.high")})
        want.update({"scores.low": (np.int32, (b, h, n, n)), "scores.high": (np.int32, (b, h, n, n)),
                     "hfsc": (np.int64, (b, h, n, n)), "lap": (np.int32, (b, n, e))})
    for name, (dtype, shape) in want.items():
        a = tr["blocks.1." + name]
        assert a.dtype == dtype and a.shape == shape, name


def test_forward_follows_the_spec_step_by_step(model):
    """Recompute a block from its own trace inputs with the ops (the wiring of §13)."""
    imgs = random_images(np.random.default_rng(1), model, 2)
    _, tr = golden.forward(model, imgs, trace=True)
    blk, sh, e, h = model.block(1), model.shifts, model.embed_dim, model.num_heads
    p = "blocks.1."
    z = golden_act.act_unit(tr[p + "qkv.acc"], blk["qkv.mult"], blk["qkv.bias"], blk["qkv.tok_in"], blk["qkv.slope"],
                    blk["qkv.out"], blk["qkv.tok_out"], sh["resid"], "x", slope_shift=model.slope_shift)
    assert np.array_equal(z, tr[p + "qkv.z"])
    vq = tr[p + "v.q"].transpose(0, 2, 1, 3).reshape(z.shape[0], -1, e)
    assert np.array_equal(vq, z[..., 2 * e:] + blk["v.offset"])
    z2 = golden_act.act_unit(tr[p + "fc2.acc"], blk["fc2.mult"], blk["fc2.bias"], blk["fc2.tok_in"], blk["fc2.slope"],
                     blk["fc2.out"], blk["fc2.tok_out"], sh["resid"], "x", slope_shift=model.slope_shift)
    assert np.array_equal(tr[p + "resid2"], tr[p + "resid1"] + z2)
    f1 = tr[p + "fc1.z"]
    assert np.array_equal(tr[p + "fc1.bits"], (f1 >= blk["fc1.thr_hi"]) | (f1 <= blk["fc1.thr_lo"]))
    if model.method == "didb":
        lo, hi = golden_didb.hfsc_bits(z[..., :e], blk["q.thr_low"], blk["q.thr_high"], h)
        assert np.array_equal(lo, tr[p + "q.low"]) and np.array_equal(hi, tr[p + "q.high"])
        s = golden_didb.hfsc_scores(tr[p + "scores.low"], tr[p + "scores.high"], blk["score.w"])
        assert np.array_equal(s, tr[p + "hfsc"])
    else:
        q = (z[..., :e] >= blk["q.thr"]).reshape(2, -1, h, e // h).transpose(0, 2, 1, 3)
        assert np.array_equal(q, tr[p + "q.bits"])


def test_forward_is_batch_independent(model):
    imgs = random_images(np.random.default_rng(2), model, 4)
    _, full = golden.forward(model, imgs, trace=True)
    _, one = golden.forward(model, imgs[2:3], trace=True)
    for name, a in one.items():
        assert np.array_equal(full[name][2:3], a), name


def test_act_overflow_in_a_forward_pass_names_the_block_and_unit(model):
    arrays = dict(model.arrays)
    arrays["blocks.1.proj.out"] = np.full(model.embed_dim, 2 ** 30, dtype=np.int64)
    bad = type(model)(header=model.header, arrays=arrays)
    with pytest.raises(IntegerOverflowError, match=r"^blocks\.1\.proj\.act: activation output z .* image 0, token 0"):
        golden.forward(bad, random_images(np.random.default_rng(0), model, 2))


# ----------------------------------------------------------------------------- random models
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("img_size, patch_size", [(4, 2), (6, 2), (8, 2)])
def test_random_models_are_plausible(method, img_size, patch_size, tmp_path):
    m = random_model(np.random.default_rng(11), method=method, img_size=img_size, patch_size=patch_size)
    save_model(tmp_path / "m.npz", m.header, m.arrays)
    back = load_model(tmp_path / "m.npz")
    assert back.header["method"] == method and back.groups == 1
    _, tr = golden.forward(back, random_images(np.random.default_rng(12), back, 4), trace=True)
    for name, a in tr.items():   # every binarizer toggles
        if a.dtype == np.uint8:
            assert 0 < a.mean() < 1, name
    for i in range(m.depth):
        blk = m.block(i)
        for lin in ("qkv", "proj", "fc1", "fc2"):
            acc = tr[f"blocks.{i}.{lin}.acc"].astype(np.int64)
            u = (acc * blk[lin + ".mult"] + blk[lin + ".bias"] + blk[lin + ".tok_in"][:, None]
                 + (1 << (m.shifts["resid"] - 1))) >> m.shifts["resid"]
            assert (u < 0).any() and (u > 0).any(), lin
            slope = blk[lin + ".slope"]
            assert (slope == 0).any() and (slope < 0).any() and (slope > 1 << m.slope_shift).any()
            assert np.abs(tr[f"blocks.{i}.{lin}.z"]).max() < 2 ** 24
            tokens = np.concatenate([blk[lin + ".tok_in"], blk[lin + ".tok_out"]])
            assert tokens.any() == (method == "didb")


def test_random_model_rejects_what_the_method_cannot_have():
    with pytest.raises(ValueError, match="groups"):
        random_model(np.random.default_rng(0), method="reactnet", groups=3)
    with pytest.raises(ValueError, match="2 x 2"):
        random_model(np.random.default_rng(0), method="didb", img_size=4, patch_size=4)
    with pytest.raises(ValueError, match="method"):
        random_model(np.random.default_rng(0), method="fp")


# ----------------------------------------------------------------------------- the model file (§13 arrays)
def _expect_invalid(tmp_path, m, arrays=None, header=None, *words):
    with pytest.raises(ModelFileError) as ei:
        save_model(tmp_path / "bad.npz", header or m.header, arrays or m.arrays)
    for w in words:
        assert w in str(ei.value), (w, str(ei.value))


def _with(m, name, value):
    arrays = dict(m.arrays)
    a = np.array(arrays[name], copy=True)
    a.flat[a.size - 1] = value
    arrays[name] = a
    return arrays


@pytest.mark.parametrize("name, value", [
    ("blocks.0.qkv.slope", 2 ** 30 + 1), ("blocks.1.fc2.out", -(2 ** 30) - 1), ("blocks.0.fc1.tok_out", 2 ** 30 + 1),
    ("blocks.0.proj.tok_in", 2 ** 61 + 1), ("blocks.0.qkv.mult", 2 ** 61 // 24 + 1), ("blocks.1.fc1.bias", 2 ** 62),
    ("blocks.0.score.w", 2 ** 24 + 1), ("blocks.0.ctx.vscale", 2 ** 44 + 1), ("blocks.1.ctx.local", -(2 ** 44) - 1),
    ("blocks.0.exp_lo", 2 ** 16 + 1), ("blocks.0.exp_mid", -1), ("blocks.1.exp_hi", -1),
])
def test_model_file_checks_the_didb_value_ranges(tmp_path, name, value):
    m = random_model(np.random.default_rng(0), method="didb")
    _expect_invalid(tmp_path, m, _with(m, name, value), None, name)


def test_model_file_method_specific_layout(tmp_path):
    r = random_model(np.random.default_rng(0), method="reactnet")
    d = random_model(np.random.default_rng(0), method="didb")
    assert "blocks.0.q.thr" in r.arrays and "blocks.0.exp_lut" in r.arrays and "blocks.0.score.w" not in r.arrays
    assert "blocks.0.q.thr" not in d.arrays and "blocks.0.exp_lut" not in d.arrays
    assert {"blocks.1.q.thr_low", "blocks.1.exp_hi", "blocks.1.ctx.local", "blocks.1.fc2.tok_in"} <= set(d.arrays)
    # reactnet has no token terms; both need one group
    _expect_invalid(tmp_path, r, _with(r, "blocks.0.qkv.tok_in", 1), None, "qkv.tok_in", "reactnet")
    _expect_invalid(tmp_path, r, None, dict(r.header, groups=2, ratios=[128]), "groups = 1")
    # didb's arrays in a reactnet file (and the reverse) are unknown or missing
    _expect_invalid(tmp_path, r, dict(r.arrays, **{"blocks.0.score.w": d.arrays["blocks.0.score.w"]}), None,
                    "unknown", "score.w")
    _expect_invalid(tmp_path, d, None, dict(d.header, method="reactnet"), "missing")
    # exp_hi: any length 1..4096, entry 0 = 2^prob
    arrays = dict(d.arrays, **{"blocks.0.exp_hi": d.arrays["blocks.0.exp_hi"][:5].copy()})
    save_model(tmp_path / "short.npz", d.header, arrays)
    assert load_model(tmp_path / "short.npz").arrays["blocks.0.exp_hi"].shape == (5,)
    for bad in (np.zeros(0, np.int64), np.full(4097, 1, np.int64)):
        _expect_invalid(tmp_path, d, dict(d.arrays, **{"blocks.0.exp_hi": bad}), None, "exp_hi", "1..4096")
    hi = d.arrays["blocks.1.exp_hi"].copy()
    hi[0] -= 1
    _expect_invalid(tmp_path, d, dict(d.arrays, **{"blocks.1.exp_hi": hi}), None, "exp_hi[0]")
