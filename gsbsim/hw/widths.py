"""Datapath widths of the non-MVAU stages, from the spec's bounds (docs/integer_model.md §1, §3-§10, §13).

Every width is a signed bit count (unsigned where noted) that holds every value the spec
allows for a model of this *shape*, whatever its constants: the value ranges checked on load,
the run-time checks (|X| < 2^31, V < 2^62) and the largest shifts the format accepts
(``prob`` <= 30, ``recip`` <= 62, ``value`` <= 30, ``ln`` and ``head_ln`` <= 24). So the widths
hold for every model file of the shape; a design specialised to one model's shifts could be
narrower. Accumulator widths are §10's (gsbsim.hw.costs Layer.acc_bits).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from gsbsim.hw.costs import layers, shape_of
from gsbsim.hw.primitives import clog2

__all__ = ["Widths", "widths", "mult_bits"]

# largest shifts the format accepts (docs/integer_model.md §1 "Value ranges")
PROB_MAX, RECIP_MAX, VALUE_MAX, LN_MAX, HEAD_LN_MAX = 30, 62, 30, 24, 24


@dataclass(frozen=True)
class Widths:
    x: int            # residual stream X (int32, run-time checked)
    s1: int           # LayerNorm sum of a token: E values of x bits
    s2: int           # LayerNorm sum of squares (E*S2 + eps < 2^62, unsigned)
    sigma: int        # isqrt(V), V < 2^62 (unsigned)
    dev: int          # D_c = E*X_c - S1, |D| < 2^37
    ln_lhs: int       # sign*D*2^ln
    ln_thr: int       # ln thresholds (int32 range)
    acc: dict         # accumulator widths by layer op (§10)
    acc_max: dict     # accumulator bounds by layer op: K inputs (binary), 128*128*K (8-bit)
    bias: int         # requant / logit bias, |.| <= 2^61 (63 bits)
    vq: int           # value Vq = acc*2^value + v.offset (|v.offset| <= 2^54); z + offset for act methods
    exp: int          # exp table entry / e_j in [0, 2^prob] (unsigned)
    z_sum: int        # Z = sum of N e_j (unsigned)
    recip: int        # R = floor(2^recip / Z) <= 2^(recip - prob) (unsigned)
    prob: int         # P_j in [0, 2^prob] (unsigned)
    att: int          # A_j = P_j + att_bias (int32)
    ctx_scale: int    # |ctx.scale|, |vscale|, |local| <= 2^44
    ctx: int          # ctx: G*G terms of scale * D (|D| <= N)
    hfsc: int         # S = w0*scL + w1*scH, |w| <= 2^24
    haar: int         # S4 = sum of 4 z (didb), z < 2^30
    haar_thr: int     # Haar thresholds clipped to +-2^33
    z: int            # activation unit output z (|z| < 2^30)
    act_u: int        # activation unit u before its check: acc*mult + bias + tok_in (<= 2^61 each: 64 bits)
    slope: int        # |slope| <= 2^30 (§13.1)
    gain: int         # final LayerNorm gain, |.| <= 2^22
    offset: int       # final LayerNorm offset, |.| <= 2^28
    num: int          # gain*D + offset*sigma
    den: int          # sigma * 2^head_ln (unsigned)
    logit: int        # acc*mult + accd*mult + bias (int64)


def widths(header: Mapping[str, Any]) -> Widths:
    """The widths of every stage datapath of a model of this shape (see the module doc)."""
    s = shape_of(header)
    e, n, g = s.embed_dim, s.num_tokens, s.groups
    ls = layers(header)
    acc = {l.op: l.acc_bits for l in ls}
    acc_max = {l.op: l.mw if l.precision == "binary" else 128 * 128 * l.mw for l in ls}
    dev = 38
    exp = PROB_MAX + 1
    ctx_scale = 45
    return Widths(
        x=32, s1=32 + clog2(e), s2=62, sigma=31, dev=dev, ln_lhs=dev + LN_MAX, ln_thr=32, acc=acc,
        acc_max=acc_max, bias=63,
        vq=max(acc["qkv"] + VALUE_MAX, 55, 32) + 1,
        exp=exp, z_sum=exp + clog2(n), recip=RECIP_MAX - PROB_MAX + 1, prob=PROB_MAX + 1, att=33,
        ctx_scale=ctx_scale, ctx=ctx_scale + acc["av"] + clog2(g * g),
        hfsc=25 + acc["qk"] + 1, haar=32 + 2, haar_thr=35, z=31, act_u=64, slope=32,
        gain=24, offset=30, num=max(24 + dev, 30 + 31) + 1, den=31 + HEAD_LN_MAX, logit=64)


def mult_bits(acc_max: int) -> int:
    """A requant / logit multiplier of a layer whose accumulator lies in [-acc_max, acc_max]:
    |mult| * acc_max <= 2^61 (§1), so count_bits(2^61 // acc_max) + 1 signed bits, the type
    gsb/requant.hpp gives it (57 at K = 64, 55 at K = 192)."""
    return (2 ** 61 // acc_max).bit_length() + 1
