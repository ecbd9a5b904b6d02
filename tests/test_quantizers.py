"""Tests of reference/quantizers.py against values computed by hand (research/gsb.md §1, §2).

Every quantizer is a straight-through estimator, so gradcheck does not apply: each
test runs forward and backward on a tiny float64 tensor and compares with numbers
worked out by hand (written out below, with the working in comments).
"""
from __future__ import annotations

import io
import math

import pytest
import torch

from reference.gsb import GSBAttention, GSBValue
from reference.quantizers import (ALPHA_EPS, LearnableBias, LSQQuantizer,
                                  QuantizerError, SignedBinarizer, UnsignedBinarizer, bwn_weight,
                                  round_half_up, sign_pos)

F64 = torch.float64
Q2 = 179 / 256  # quantize_ratio(0.7) = 0.69921875
Q3 = 230 / 256  # quantize_ratio(0.9) = 0.8984375


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def close(actual, expected) -> None:
    torch.testing.assert_close(actual, expected if isinstance(expected, torch.Tensor) else t(expected),
                               rtol=1e-12, atol=1e-12)


def exact(actual, expected) -> None:
    assert torch.equal(actual, expected if isinstance(expected, torch.Tensor) else t(expected)), actual


def ready(module: torch.nn.Module, alpha) -> torch.nn.Module:
    """A float64 module whose scales are set by hand and marked initialised."""
    module = module.double()
    with torch.no_grad():
        module.alpha.copy_(t(alpha))
        module.initialized.fill_(True)
    return module


def run(module, x, grad):
    """Forward x, backward grad; returns (out, dx, dalpha)."""
    x = x.clone().requires_grad_(True)
    out = module(x)
    out.backward(grad)
    return out.detach(), x.grad, module.alpha.grad


# ----------------------------------------------------------------------------- elementwise rules
def test_sign_pos_zero_is_plus_one_and_dtype_kept():
    x = t([-1.0, -0.0, 0.0, 2.0, -1e-300])
    exact(sign_pos(x), [-1.0, 1.0, 1.0, 1.0, -1.0])
    assert sign_pos(x.float()).dtype == torch.float32


def test_round_half_up_ties_go_up():
    exact(round_half_up(t([-1.5, -0.5, 0.5, 1.5, 2.5, 2.49, -2.51])), [-1.0, 0.0, 1.0, 2.0, 3.0, 2.0, -3.0])


def test_learnable_bias_broadcasts_and_gets_summed_gradient():
    move = LearnableBias((3,)).double()
    exact(move.bias.detach(), [0.0, 0.0, 0.0])
    with torch.no_grad():
        move.bias.copy_(t([1.0, -2.0, 0.5]))
    x = t([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    out = move(x)
    exact(out.detach(), [[1.0, -1.0, 2.5], [4.0, 2.0, 5.5]])
    out.backward(t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    exact(move.bias.grad, [5.0, 7.0, 9.0])


# ----------------------------------------------------------------------------- signed {-a, a}
X_S = t([[-3.0, -1.0, 0.0, 0.5], [1.0, 2.0, -0.5, 4.0]])
G_S = t([[1.0, -1.0, 2.0, 0.5], [3.0, 1.0, -2.0, 1.0]])


def test_signed_binarizer_forward_and_corrected_gradients():
    out, dx, da = run(ready(SignedBinarizer(), 2.0), X_S, G_S)
    exact(out, [[-2.0, -2.0, 2.0, 2.0], [2.0, 2.0, -2.0, 2.0]])  # x = 0 -> +a
    # u = x/2 = [[-1.5,-.5,0,.25],[.5,1,-.25,2]]; in = [[0,1,1,1],[1,1,1,0]] (u = 1 is inside)
    exact(dx, [[0.0, -1.0, 2.0, 0.5], [3.0, 1.0, -2.0, 0.0]])
    # (sign - in*u) = [[-1,-.5,1,.75],[.5,0,-.75,1]]; times G: -1+.5+2+.375+1.5+0+1.5+1 = 5.875
    close(da, 5.875 / math.sqrt(8))


def test_signed_binarizer_bit_scale_gradient():
    _, dx, da = run(ready(SignedBinarizer(scale_grad="bit"), 2.0), X_S, G_S)
    exact(dx, [[0.0, -1.0, 2.0, 0.5], [3.0, 1.0, -2.0, 0.0]])
    close(da, (-1 + 1 + 2 + 0.5 + 3 + 1 + 2 + 1) / math.sqrt(8))  # sum(sign*G) = 9.5


def test_signed_binarizer_negative_alpha_is_clamped_but_still_learns():
    out, dx, da = run(ready(SignedBinarizer(), -1.0), X_S, G_S)
    exact(out, ALPHA_EPS * sign_pos(X_S))
    # a = 1e-5: only x = 0 stays inside (u = 0), so da = g*sum(sign*G) = 9.5/sqrt(8), flowing to the raw -1
    exact(dx, [[0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    close(da, 9.5 / math.sqrt(8))


def test_signed_binarizer_init_on_first_training_forward_only():
    m = SignedBinarizer().double()
    m.eval()
    m(X_S)
    assert not m.initialized and m.alpha.item() == 1.0  # eval never initialises
    m.train()
    m(X_S)
    assert m.initialized and m.alpha.item() == 3.0  # 2 * mean|x| = 2 * 12/8
    m(10 * X_S)
    assert m.alpha.item() == 3.0


def test_initialized_flag_survives_state_dict_round_trip():
    m = SignedBinarizer()
    m.train()
    m(X_S.float())
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh = SignedBinarizer()
    fresh.load_state_dict(torch.load(buf))
    assert bool(fresh.initialized) and fresh.alpha.item() == 3.0
    fresh.train()
    fresh(100 * X_S.float())  # a loaded model is never re-initialised
    assert fresh.alpha.item() == 3.0
    assert "initialized" in GSBValue().state_dict() and "initialized" in LSQQuantizer().state_dict()


# ----------------------------------------------------------------------------- unsigned {0, a}
X_U = t([[-1.0, 0.0, 0.5, 0.75], [1.0, 1.5, 2.0, 3.0]])
G_U = t([[1.0, 1.0, 2.0, 2.0], [1.0, 4.0, 3.0, 0.5]])


def test_unsigned_binarizer_forward_tie_and_gradients():
    out, dx, da = run(ready(UnsignedBinarizer(), 2.0), X_U, G_U)
    # u = [[-.5,0,.25,.375],[.5,.75,1,1.5]]; u = 0.5 exactly -> 1
    exact(out, [[0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    exact(dx, [[0.0, 1.0, 2.0, 2.0], [1.0, 4.0, 3.0, 0.0]])  # in = 1[0 <= u <= 1]
    # 1[u>1] + in*(round_half_up(u) - u) = [[0,0,-.25,-.375],[.5,.25,0,1]]
    # times G: -.5 - .75 + .5 + 1 + 0 + .5 = 0.75 (torch.round(0.5) = 0 would give -0.25)
    close(da, 0.75 / math.sqrt(8))


def test_unsigned_binarizer_init():
    m = UnsignedBinarizer().double()
    m(X_U)
    close(m.alpha.detach(), 4 * 9.75 / 8)  # 4*mean|x| = 4.875


# ----------------------------------------------------------------------------- GSB attention
# one image, one head, two rows of 4; row maxima 1 and 0.5
A1 = t([[[[0.1, 0.25, 0.8, 1.0], [0.0, 0.349609375, 0.4, 0.5]]]])
G_A = t([[[[1.0, 2.0, 3.0, 4.0], [1.0, -1.0, 2.0, -2.0]]]])
ALPHA3 = [0.5, 0.25, 0.125]


def test_gsb_attention_row_masks_forward_and_gradients():
    m = ready(GSBAttention(), ALPHA3)
    assert m.ratios == (Q2, Q3)
    planes, scales = m.planes(A1)
    exact(scales, ALPHA3)
    exact(planes[0], [[[[0.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0]]]])  # A/0.5 >= 0.5; A = 0.25 is a tie -> 1
    # row 1: 0.349609375 = Q2 * 0.5 exactly, so strict '>' leaves it out of M2
    exact(planes[1], [[[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]]])
    exact(planes[2], [[[[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]]]])
    out, dA, da = run(m, A1, G_A)
    exact(out, [[[[0.0, 0.5, 0.75, 0.875], [0.0, 0.5, 0.75, 0.875]]]])
    # u = A/0.5 = [[.2,.5,1.6,2],[0,.69921875,.8,1]]; in = [[1,1,0,0],[1,1,1,1]]
    # dA = G*(in + .25*M2 + .125*M3): factors [[1,1,.25,.375],[1,1,1.25,1.375]]
    close(dA, [[[[1.0, 2.0, 0.75, 1.5], [1.0, -1.0, 2.5, -2.75]]]])
    # da1 terms [[-.2,.5,1,1],[0,1-.69921875,.2,0]] times G: 7.8 + (-0.30078125 + 0.4) = 7.89921875
    # da2 = (3+4+2-2)/sqrt(4); da3 = (4-2)/sqrt(2)
    close(da, [7.89921875 / math.sqrt(8), 3.5, 2 / math.sqrt(2)])


def test_gsb_attention_batch_stat_changes_masks_and_gradients():
    m = ready(GSBAttention(stat="batch"), ALPHA3)  # one max (1.0) for both rows: row 1 has no mask
    out, _, da = run(m, A1, G_A)
    exact(out, [[[[0.0, 0.5, 0.75, 0.875], [0.0, 0.5, 0.5, 0.5]]]])
    close(da[1:], [(3 + 4) / math.sqrt(2), 4.0])


def test_gsb_attention_empty_masks_give_zero_gradient_not_nan():
    m = ready(GSBAttention(), ALPHA3)
    a = t([[[[0.0, 0.0], [-0.1, -0.2]]]])  # max <= 0 in each row: nothing is above ratio*max
    out, dA, da = run(m, a, t([[[[1.0, 2.0], [3.0, 4.0]]]]))
    exact(out, torch.zeros_like(a))
    exact(dA, [[[[1.0, 2.0], [0.0, 0.0]]]])  # in = 1[0 <= u <= 1]
    exact(da[1:], [0.0, 0.0])
    assert torch.isfinite(da).all()


def test_gsb_attention_negative_alpha_is_clamped():
    m = ready(GSBAttention(), [-1.0, 0.25, -3.0])
    out, _, da = run(m, A1, G_A)
    # a1 = a3 = 1e-5: every A >= 5e-6 sets b1; mask levels .25 (M2) and 1e-5 (M3)
    e = ALPHA_EPS
    close(out, [[[[e, e, e + 0.25, 2 * e + 0.25], [0.0, e, e + 0.25, 2 * e + 0.25]]]])
    close(da[2], 2 / math.sqrt(2))  # the raw -3 still gets its gradient


@pytest.mark.parametrize("stat", ["row", "image", "batch"])
def test_gsb_mask_comparison_is_exact_in_float32(stat):
    # max = 1 + 2**-22; Q2*max = 0.69921875 + 2.797 ulps (ulp = 2**-24 here), which float32
    # rounds to +3 ulps. x = 0.69921875 + 3 ulps is above the exact threshold: in M2,
    # as the integer comparison 256*x > 179*max says, though x > float32(Q2*max) is false.
    top = 1 + 2.0 ** -22
    x = 0.69921875 + 3 * 2.0 ** -24
    a = torch.tensor([[[[x, top]]]], dtype=torch.float32)
    assert 256 * float(a[0, 0, 0, 0]) > 179 * float(a[0, 0, 0, 1])  # the integer-model view
    assert not bool(a[0, 0, 0, 0] > torch.tensor(Q2, dtype=torch.float32) * a[0, 0, 0, 1])
    planes, _ = GSBAttention(stat=stat).planes(a)
    exact(planes[1], torch.tensor([[[[1.0, 1.0]]]]))
    planes, _ = GSBValue(stat=stat).planes(a)
    exact(planes[1], torch.tensor([[[[1.0, 1.0]]]]))


def test_gsb_attention_init_residual_and_released():
    # a1 = 4*mean|A| = 4*3.399609375/8; band M2\M3 = {0.8, 0.4} -> 2.4; band M3 = {1.0, 0.5} -> 3.0
    a1 = 4 * 3.399609375 / 8
    intended = GSBAttention().double()
    intended(A1)
    close(intended.alpha.detach(), [a1, 2.4 - a1, 3.0 - 2.4])
    released = GSBAttention(residual_init=False).double()
    released(A1)
    close(released.alpha.detach(), [a1, 2.4, 3.0])


def test_gsb_attention_init_empty_band_and_clamped_residuals():
    a = torch.ones(1, 1, 2, 2, dtype=F64)  # every element is in M2 and M3: the M2\M3 band is empty
    m = GSBAttention().double()
    m(a)
    exact(m.alpha.detach(), [4.0, ALPHA_EPS, ALPHA_EPS])  # 1e-5 - 4 and 4 - (4 + 1e-5) are floored
    raw = GSBAttention(residual_init=False).double()
    raw(a)
    exact(raw.alpha.detach(), [4.0, ALPHA_EPS, 4.0])


def test_gsb_attention_one_group_is_unsigned_binarizer():
    x = X_U.reshape(1, 1, 2, 4)
    g = G_U.reshape(1, 1, 2, 4)
    out, dx, da = run(ready(GSBAttention(groups=1, ratios=()), [2.0]), x, g)
    out_b, dx_b, da_b = run(ready(UnsignedBinarizer(), 2.0), x, g)
    exact(out, out_b)
    exact(dx, dx_b)
    exact(da, da_b.reshape(1))
    fresh, fresh_b = GSBAttention(groups=1, ratios=()).double(), UnsignedBinarizer().double()
    fresh(x), fresh_b(x)
    exact(fresh.alpha.detach(), fresh_b.alpha.detach().reshape(1))


# ----------------------------------------------------------------------------- GSB value
# row 0: max .5, min -1 -> M2 = V > .3496 | V < -.6992, M3 = V > .4492 | V < -.8984
# row 1: max 2, min -.125; 1.3984375 = Q2*2 exactly (strict: not in M2)
V1 = t([[[[-1.0, -0.75, 0.0, 0.5], [0.25, -0.125, 2.0, 1.3984375]]]])
G_V = t([[[[1.0, 2.0, 3.0, 4.0], [-1.0, 1.0, 2.0, -2.0]]]])
M2_V = [[[[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]]]]
M3_V = [[[[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]]]]


def test_gsb_value_masks_forward_and_scale_gradients():
    m = ready(GSBValue(), ALPHA3)
    planes, _ = m.planes(V1)
    exact(planes[0], [[[[0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0]]]])  # V = 0 -> sign bit 1
    exact(planes[1], M2_V)
    exact(planes[2], M3_V)
    out, _, da = run(m, V1, G_V)
    exact(out, [[[[-0.875, -0.75, 0.5, 0.875], [0.5, -0.875, 0.875, 0.5]]]])
    # k=1: u = V/.5, in1 = [[0,0,1,1],[1,1,0,0]]; sign - in1*u = [[-1,-1,1,0],[.5,-.75,1,1]]; *G sums to -1.25
    # k=2: u2 = V*M2/.25 = [[-4,-3,0,2],[0,-.5,8,0]], in2 = [[0,0,1,0],[1,1,0,1]];
    #      sign*M2 - in2*u2 = [[-1,-1,0,1],[0,-.5,1,0]]; *G sums to 2.5; |M2| = 5
    # k=3: u3 = V*M3/.125 = [[-8,0,0,4],[0,-1,16,0]], in3 = [[0,1,1,0],[1,1,0,1]];
    #      sign*M3 - in3*u3 = [[-1,0,0,1],[0,0,1,0]]; *G sums to 5; |M3| = 4
    close(da, [-1.25 / math.sqrt(8), 2.5 / math.sqrt(5), 5 / 2])


def test_gsb_value_input_gradient_intended_vs_released():
    _, dv, _ = run(ready(GSBValue(), ALPHA3), V1, G_V)
    # in1 + M2*in2 + M3*in3 = [[0,0,1,1],[1,3,0,0]]
    exact(dv, [[[[0.0, 0.0, 3.0, 4.0], [-1.0, 3.0, 0.0, 0.0]]]])
    _, dv_rel, _ = run(ready(GSBValue(input_grad="released"), ALPHA3), V1, G_V)
    # in1 + in2 + in3 = [[0,1,3,1],[3,3,0,2]]: V = 0 outside both masks gets 3*G
    exact(dv_rel, [[[[0.0, 2.0, 9.0, 4.0], [-3.0, 3.0, 0.0, -4.0]]]])


def test_gsb_value_batch_stat_and_empty_masks():
    m = ready(GSBValue(stat="batch"), ALPHA3)  # max 2, min -1: M2 = V > 1.398 | V < -.699
    planes, _ = m.planes(V1)
    exact(planes[1], [[[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]]])
    exact(planes[2], [[[[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]]])
    flat = ready(GSBValue(), ALPHA3)
    v = torch.zeros(1, 1, 2, 2, dtype=F64)  # max = min = 0: nothing strictly beyond 0
    out, dv, da = run(flat, v, t([[[[1.0, 2.0], [3.0, 4.0]]]]))
    exact(out, torch.full_like(v, 0.5))  # sign(0) = +1
    exact(dv, [[[[1.0, 2.0], [3.0, 4.0]]]])  # in1 = 1, no mask term
    exact(da[1:], [0.0, 0.0])


def test_gsb_stats_row_image_batch_on_two_images():
    image1 = t([[[[4.0, 3.0, 0.0, 1.0], [0.2, 0.1, 0.0, 0.3]]]])
    other1 = t([[[[0.0, 0.0, 0.0, 0.0], [9.0, 0.0, 0.0, 0.0]]]])
    batch = torch.cat([A1, image1])
    m2 = {}
    for stat in ("row", "image", "batch"):
        m = ready(GSBAttention(stat=stat), ALPHA3)
        planes, _ = m.planes(batch)
        m2[stat] = planes[1][0]
        if stat != "batch":  # image 0 does not depend on image 1, for attention and value alike
            exact(m(batch)[0], m(torch.cat([A1, other1]))[0])
            v = ready(GSBValue(stat=stat), ALPHA3)
            exact(v(torch.cat([V1, -image1]))[0], v(torch.cat([V1, other1]))[0])
    exact(m2["row"], [[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]])
    exact(m2["image"], [[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]])  # image max 1: row 1 below 0.699
    exact(m2["batch"], torch.zeros(1, 2, 4, dtype=F64))  # batch max 4: nothing of image 0 above 2.797


def test_gsb_value_init_residual_and_released():
    # outside M2: {0, .25, 1.3984375} -> a1 = 2*1.6484375/3; band M2\M3 = {-.75} -> 1.5;
    # band M3 = {-1, .5, -.125, 2} -> 2*3.625/4 = 1.8125
    a1 = 2 * 1.6484375 / 3
    intended = GSBValue().double()
    intended(V1)
    close(intended.alpha.detach(), [a1, 1.5 - a1, 1.8125 - 1.5])
    released = GSBValue(residual_init=False).double()
    released(V1)
    close(released.alpha.detach(), [a1, 1.5, 1.8125])


def test_gsb_value_one_group_is_signed_binarizer():
    x, g = X_S.reshape(1, 1, 2, 4), G_S.reshape(1, 1, 2, 4)
    for input_grad in ("intended", "released"):
        out, dx, da = run(ready(GSBValue(groups=1, ratios=(), input_grad=input_grad), [2.0]), x, g)
        out_b, dx_b, da_b = run(ready(SignedBinarizer(), 2.0), x, g)
        exact(out, out_b)
        exact(dx, dx_b)
        exact(da, da_b.reshape(1))
    fresh, fresh_b = GSBValue(groups=1, ratios=()).double(), SignedBinarizer().double()
    fresh(x), fresh_b(x)
    exact(fresh.alpha.detach(), fresh_b.alpha.detach().reshape(1))


def test_gsb_arguments_are_checked():
    with pytest.raises(ValueError, match="3 groups need 2 ratios"):
        GSBAttention(groups=3, ratios=(0.7,))
    with pytest.raises(QuantizerError, match="stat"):
        GSBValue(stat="global")
    with pytest.raises(QuantizerError, match="increase strictly"):
        GSBAttention(ratios=(0.9, 0.7))
    with pytest.raises(QuantizerError, match="input_grad"):
        GSBValue(input_grad="both")
    with pytest.raises(QuantizerError, match="at least 2 dims"):
        GSBValue()(t([1.0, 2.0]))
    with pytest.raises(QuantizerError, match="floating-point"):
        SignedBinarizer()(torch.tensor([1, 2]))
    with pytest.raises(QuantizerError, match="scale_grad"):
        SignedBinarizer(scale_grad="ste")


# ----------------------------------------------------------------------------- BWN
def test_bwn_weight_forward_tie_and_identity_gradient():
    w = t([[1.0, 3.0], [-2.0, 2.0]]).requires_grad_(True)  # mean 1, mean|W| 2; W - mean = [0, 2, -3, 1]
    out = bwn_weight(w)
    exact(out.detach(), [[2.0, 2.0], [-2.0, 2.0]])
    g = t([[0.5, -1.0], [2.0, 3.0]])
    out.backward(g)
    exact(w.grad, g)


# ----------------------------------------------------------------------------- LSQ
def test_lsq_ranges_and_init():
    assert (LSQQuantizer().qn, LSQQuantizer().qp) == (-128, 127)
    assert (LSQQuantizer(signed=False).qn, LSQQuantizer(signed=False).qp) == (0, 255)
    m = LSQQuantizer().double()
    m(t([1.0, -3.0, 0.5, 0.5]))
    close(m.alpha.detach(), 2 * 1.25 / math.sqrt(127))


def test_lsq_scalar_forward_gradients_and_int_repr():
    m = ready(LSQQuantizer(bits=2), 0.5)  # Qn = -2, Qp = 1
    x = t([-1.5, -1.0, -0.25, 0.25, 0.5, 0.75, 1.0, -0.75])
    # u = [-3,-2,-.5,.5,1,1.5,2,-1.5]; round_half_up = [-3,-2,0,1,1,2,2,-1]; clamp to [-2, 1]
    out, dx, da = run(m, x, t([1.0, 2.0, -1.0, 1.0, 3.0, 2.0, -1.0, 1.0]))
    exact(out, [-1.0, -1.0, 0.0, 0.5, 0.5, 0.5, 0.5, -0.5])
    exact(dx, [0.0, 2.0, -1.0, 1.0, 3.0, 0.0, 0.0, 1.0])  # inside Qn <= u <= Qp, bounds included
    # terms [Qn, 0, .5, .5, 0, Qp, Qp, .5] times G: -2 + 0 - .5 + .5 + 0 + 2 - 1 + .5 = -0.5
    close(da, -0.5 / math.sqrt(8 * 1))
    q, a = m.int_repr(x)
    assert q.dtype == torch.int32
    exact(q, torch.tensor([-2, -2, 0, 1, 1, 1, 1, -1], dtype=torch.int32))
    exact(a, 0.5)


def test_lsq_per_channel():
    m = ready(LSQQuantizer(bits=2, per_channel=2), [0.5, 1.0])
    x = t([[0.3, -0.6, 2.0], [0.3, -0.6, 2.0]])
    out, dx, da = run(m, x, torch.ones(2, 3, dtype=F64))
    # ch0: u = [.6,-1.2,4] -> [1,-1,1]; ch1: u = [.3,-.6,2] -> [0,-1,1]
    exact(out, [[0.5, -0.5, 0.5], [0.0, -1.0, 1.0]])
    exact(dx, [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    # ch0 terms [.4, .2, Qp=1]; ch1 terms [-.3, -.4, 1]; g = 1/sqrt(6*1)
    close(da, [1.6 / math.sqrt(6), 0.3 / math.sqrt(6)])
    fresh = LSQQuantizer(bits=8, per_channel=2).double()
    fresh(t([[1.0, -1.0, 4.0], [0.0, 0.0, 3.0]]))
    close(fresh.alpha.detach(), [2 * 2.0 / math.sqrt(127), 2 * 1.0 / math.sqrt(127)])
    with pytest.raises(QuantizerError, match="per_channel=2"):
        fresh(torch.ones(3, 2, dtype=F64))
    with pytest.raises(QuantizerError, match="bits"):
        LSQQuantizer(bits=1)


def test_lsq_negative_alpha_clamped():
    m = ready(LSQQuantizer(bits=8), -2.0)
    out, _, da = run(m, t([1e-5, -3e-5, 1.0]), t([1.0, 1.0, 1.0]))
    close(out, [1e-5, -3e-5, 127e-5])
    close(da, 127 / math.sqrt(3 * 127))  # u = [1, -3, 1e5]: terms [0, 0, Qp]


def test_mask_threshold_in_float32_equals_exact_float64_comparison():
    """The masks compare in x's dtype; the result must equal the exact float64 test."""
    from gsbsim.format.conventions import ratio_numerator
    g = torch.Generator().manual_seed(0)
    for stat in ("row", "image"):
        q = GSBValue(groups=3, ratios=(0.7, 0.9), stat=stat)
        x = torch.randn(4, 3, 17, 33, generator=g)
        # plant exact ties and near-ties around 0.7*max of each row
        x[..., 0] = x.amax(-1) * 179 / 256
        x[..., 1] = torch.nextafter(x[..., 0], torch.full_like(x[..., 0], math.inf))
        masks = q.masks(x)
        dims = (-1,) if stat == "row" else (1, 2, 3)
        hi, lo = x.double().amax(dims, keepdim=True), x.double().amin(dims, keepdim=True)
        for k, r in enumerate((0.7, 0.9)):
            t_hi, t_lo = ratio_numerator(r) * hi / 256, ratio_numerator(r) * lo / 256
            expect = (x.double() > t_hi) | (x.double() < t_lo)
            assert torch.equal(masks[k].bool(), expect)
