"""The step functions of the golden path, one per section of docs/integer_model.md (§2-§9), plain numpy.
The block that strings them together is gsbsim/engine/golden.py."""
from __future__ import annotations

import numpy as np

from gsbsim.format.conventions import and_dot, div_round, isqrt, pack_bits, requant, xnor_dot
from gsbsim.format.model_file import IntModel
from gsbsim.engine.errors import IntegerOverflowError, LN_LIMIT, LN_OVERFLOW, check_int32, overflow_message


_ROWS = 2048                 # rows per chunk of the broadcast popcount products (bounds memory)
def rq(x: np.ndarray, mult, bias, shift: int) -> np.ndarray:
    """rq(x, M, B, S) = (x*M + B + 2^(S-1)) >> S  (the conventions' round-half-up requant)."""
    return requant(np.asarray(x, np.int64) * np.asarray(mult, np.int64) + np.asarray(bias, np.int64), 1, shift)


# ----------------------------------------------------------------------------- §2 patch embedding
def patch_embed(model: IntModel, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(patch accumulators int32 [B, T, E], residual stream X int32 [B, N, E])."""
    a = model.arrays
    b, c, size, _ = images.shape
    p = model.patch_size
    g = size // p
    # xp[b, t, (c, ky, kx)] with t = py*g + px
    xp = images.reshape(b, c, g, p, g, p).transpose(0, 2, 4, 1, 3, 5).reshape(b, g * g, c * p * p)
    acc = xp.astype(np.int64) @ a["patch.weight"].astype(np.int64).T
    x = np.empty((b, model.num_tokens, model.embed_dim), dtype=np.int64)
    x[:, :2] = a["tokens"].astype(np.int64) + a["pos"][:2].astype(np.int64)
    x[:, 2:] = rq(acc, a["patch.mult"], a["patch.bias"], model.shifts["patch"]) + a["pos"][2:]
    return acc.astype(np.int32), check_int32(x, "embed")


# ----------------------------------------------------------------------------- §3 LayerNorm -> bits
def ln_stats(x: np.ndarray, ln_eps: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """D_c = E*X_c - S1 (int64 [..., E]) and sigma = isqrt(E*S2 - S1^2 + ln_eps) (int64 [...])."""
    x64 = np.asarray(x, dtype=np.int64)
    e = x64.shape[-1]
    s1 = x64.sum(axis=-1)
    s2_exact = (x64.astype(object) ** 2).sum(axis=-1)          # Python ints: cannot wrap
    too_big = np.asarray(e * s2_exact + ln_eps >= LN_LIMIT, dtype=bool)
    if too_big.any():
        idx = np.unravel_index(int(np.argmax(too_big.ravel())), too_big.shape)
        raise IntegerOverflowError(overflow_message(where, LN_OVERFLOW, idx))
    s2 = s2_exact.astype(np.int64)
    sigma = isqrt(e * s2 - s1 * s1 + ln_eps)
    return e * x64 - s1[..., None], sigma


def ln_bits(x: np.ndarray, sign: np.ndarray, thr: np.ndarray, ln_shift: int, ln_eps: int,
            where: str) -> np.ndarray:
    """bit_c = sign_c * D_c * 2^ln >= thr_c * sigma, as uint8 [..., E]."""
    d, sigma = ln_stats(x, ln_eps, where)
    lhs = sign.astype(np.int64) * d * (np.int64(1) << np.int64(ln_shift))
    rhs = thr.astype(np.int64) * sigma[..., None]
    return (lhs >= rhs).astype(np.uint8)


# ----------------------------------------------------------------------------- binary products
def binary_acc(bits: np.ndarray, weight: np.ndarray, k: int, kind: str) -> np.ndarray:
    """Accumulators of a binary linear over the last axis of `bits` [..., K] -> int64 [..., O].

    kind 'xnor' (+-1 x +-1): K - 2*pc(a XOR w);  kind 'and' ({0,1} x +-1): 2*pc(a AND w) - pc(a).
    """
    lead = bits.shape[:-1]
    rows = pack_bits(bits.reshape(-1, bits.shape[-1]))
    out = np.empty((rows.shape[0], weight.shape[0]), dtype=np.int64)
    for s in range(0, rows.shape[0], _ROWS):
        chunk = rows[s:s + _ROWS]
        out[s:s + _ROWS] = xnor_dot(chunk, weight, k) if kind == "xnor" else and_dot(chunk, weight)
    return out.reshape(lead + (weight.shape[0],))


# ----------------------------------------------------------------------------- §4 qkv and values
def split_qkv(acc: np.ndarray, q_thr, k_thr, v_offset, heads: int, value_shift: int):
    """qkv accumulators [B, N, 3E] -> Q bits, K bits (uint8 [B, H, N, d]) and Vq (int64 [B, H, N, d])."""
    b, n, e3 = acc.shape
    e = e3 // 3
    d = e // heads

    def per_head(x):  # [B, N, E] -> [B, H, N, d]
        return x.reshape(b, n, heads, d).transpose(0, 2, 1, 3)

    acc = acc.astype(np.int64)
    q = per_head((acc[..., :e] >= q_thr).astype(np.uint8))
    k = per_head((acc[..., e:2 * e] >= k_thr).astype(np.uint8))
    vq = per_head(acc[..., 2 * e:] * (np.int64(1) << np.int64(value_shift)) + v_offset)
    return np.ascontiguousarray(q), np.ascontiguousarray(k), np.ascontiguousarray(vq)


def value_planes(vq: np.ndarray, ratios, mask_stat: str) -> np.ndarray:
    """Vq [B, H, N, d] -> planes uint8 [B, G, H, N, d]: sign plane, then M_k = 256*Vq > r_k*mx OR < r_k*mn."""
    axes = (-1,) if mask_stat == "row" else (1, 2, 3)
    mx = vq.max(axis=axes, keepdims=True)
    mn = vq.min(axis=axes, keepdims=True)
    planes = [vq >= 0]
    for r in ratios:
        planes.append((256 * vq > r * mx) | (256 * vq < r * mn))
    return np.stack(planes, axis=1).astype(np.uint8)


def attention_scores(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """sc[b, h, i, j] = d - 2*pc(q_i XOR k_j), int32 [B, H, N, N]."""
    b, h, n, d = q.shape
    sc = np.empty((b, h, n, n), dtype=np.int64)
    for bi in range(b):
        for hi in range(h):
            sc[bi, hi] = xnor_dot(pack_bits(q[bi, hi]), pack_bits(k[bi, hi]), d)
    return sc.astype(np.int32)


# ----------------------------------------------------------------------------- §5 softmax and planes
def softmax_probs(scores: np.ndarray, exp_lut: np.ndarray, att_bias: np.ndarray, prob: int,
                  recip: int) -> np.ndarray:
    """A = P + att_bias with P the fixed-point softmax of each row (int64 [B, H, N, N])."""
    sc = scores.astype(np.int64)
    twice_m = sc.max(axis=-1, keepdims=True) - sc
    assert not np.any(twice_m % 2), "scores of one row differ by an even number (same parity as d)"
    return probs_from_exp(exp_lut.astype(np.int64)[twice_m // 2], att_bias, prob, recip)


def probs_from_exp(e: np.ndarray, att_bias: np.ndarray, prob: int, recip: int) -> np.ndarray:
    """A = P + att_bias from the row's exp weights e: Z = sum e, R = floor(2^recip/Z), P = rq(e*R) (§5)."""
    z = e.sum(axis=-1, keepdims=True)
    r = (np.int64(1) << np.int64(recip)) // z
    p = requant(e * r, 1, recip - prob)
    return p + att_bias.astype(np.int64)


def attention_planes(a: np.ndarray, thr1: int, ratios, mask_stat: str) -> np.ndarray:
    """A [B, H, N, N] -> planes uint8 [B, G, H, N, N]: b1 = A >= a.thr1, then M_k = 256*A > r_k*amax."""
    axes = (-1,) if mask_stat == "row" else (1, 2, 3)
    amax = a.max(axis=axes, keepdims=True)
    planes = [a >= thr1]
    planes += [256 * a > r * amax for r in ratios]
    return np.stack(planes, axis=1).astype(np.uint8)


# ----------------------------------------------------------------------------- §6 GSB A.V
def _plane_dot(a_rows: np.ndarray, s_cols: np.ndarray, m_cols: np.ndarray | None) -> np.ndarray:
    """D = 2*pc(a_i AND [M_j AND] s_j) - pc(a_i [AND M_j]) for packed rows a [N, W], columns [d, W]."""
    if m_cols is None:
        return and_dot(a_rows, s_cols)
    am = a_rows[:, None, :] & m_cols[None, :, :]
    both = np.bitwise_count(am & s_cols[None, :, :]).astype(np.int64).sum(-1)
    ones = np.bitwise_count(am).astype(np.int64).sum(-1)
    return 2 * both - ones


def gsb_context(a_planes: np.ndarray, v_planes: np.ndarray, ctx_scale: np.ndarray) -> np.ndarray:
    """ctx[b, i, h*d + j] = sum_a sum_v ctx.scale[a][v] * D[a][v] (int64 [B, N, E])."""
    b, g, h, n, _ = a_planes.shape
    d = v_planes.shape[-1]
    ctx = np.zeros((b, n, h, d), dtype=np.int64)
    scale = ctx_scale.astype(np.int64)
    for bi in range(b):
        for hi in range(h):
            # value planes as packed columns over key tokens: [d, W]
            s_cols = pack_bits(v_planes[bi, 0, hi].T)
            m_cols = [None] + [pack_bits(v_planes[bi, k, hi].T) for k in range(1, g)]
            for ai in range(g):
                a_rows = pack_bits(a_planes[bi, ai, hi])
                for vi in range(g):
                    ctx[bi, :, hi] += scale[ai, vi] * _plane_dot(a_rows, s_cols, m_cols[vi])
    return ctx.reshape(b, n, h * d)


# ----------------------------------------------------------------------------- §7, §8 MLP and residuals
def residual_add(x: np.ndarray, acc: np.ndarray, mult, bias, shift: int, where: str) -> np.ndarray:
    """X + rq(acc, mult, bias[o], shift), checked to fit int32."""
    return check_int32(x.astype(np.int64) + rq(acc, mult, bias, shift), where)


def fc1_bits(acc: np.ndarray, thr_hi: np.ndarray, thr_lo: np.ndarray) -> np.ndarray:
    """bit = acc >= thr_hi OR acc <= thr_lo (uint8)."""
    return ((acc >= thr_hi) | (acc <= thr_lo)).astype(np.uint8)


# ----------------------------------------------------------------------------- §9 heads
def head_inputs(x_tok: np.ndarray, gain: np.ndarray, offset: np.ndarray, k: int, ln_eps: int,
                where: str) -> np.ndarray:
    """q_c = clamp(round_half_up((gain_c*D_c + offset_c*sigma) / (sigma*2^k)), -128, 127) as int8 [B, E]."""
    d, sigma = ln_stats(x_tok, ln_eps, where)
    num = gain.astype(np.int64) * d + offset.astype(np.int64) * sigma[..., None]
    den = (sigma << np.int64(k))[..., None]
    return np.clip(div_round(num, den), -128, 127).astype(np.int8)


def head_logits(model: IntModel, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """head.q [B, 2, E] -> (head accumulators int32 [B, 2, C], logits int64 [B, C])."""
    a = model.arrays
    acc = np.stack([q[:, 0].astype(np.int64) @ a["head.weight"].astype(np.int64).T,
                    q[:, 1].astype(np.int64) @ a["head_dist.weight"].astype(np.int64).T], axis=1)
    logits = acc[:, 0] * a["head.mult"] + acc[:, 1] * a["head_dist.mult"] + a["logit.bias"]
    return acc.astype(np.int32), logits.astype(np.int64)


def argmax_first(logits: np.ndarray) -> np.ndarray:
    """Index of the largest logit of each row, ties to the lowest index (int64 [B])."""
    return np.argmax(logits, axis=-1).astype(np.int64)
