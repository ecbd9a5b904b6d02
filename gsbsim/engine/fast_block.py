"""All blocks in one jitted call for the gsb method with requant post-linears (the untraced, unprofiled
forward pass): per block LayerNorm -> bits, the qkv GEMM, the attention, proj, residual + LayerNorm, fc1,
its thresholds, fc2 and the residual fused with the next block's LayerNorm, with no Python between
the layers or the blocks (the per-layer path's glue and ~10 dispatches per block cost ~0.1 ms per block;
one call per block still ~11 us of argument building and dispatch).

Overflows are returned, not raised: (block, stage, flat index, value) with the stages below, raised by
``gsbsim.engine.fast`` with the golden path's messages (the layers are checked in the same order).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from gsbsim.engine import bit_ids, fast_attention, fast_ops, kernels, popcnt, table_lookup
from gsbsim.engine.fast_attention import gsb_attention_batch
from gsbsim.engine.jit_cache import cache_depends_on
from gsbsim.engine.fast_ops import JIT, ln_bits_rows, residual_add_rows, residual_ln_rows
from gsbsim.engine.kernels import and_into, xnor_bits_into, xnor_into

#: overflow stages of gsb_requant_block: 0 none, then where the golden path raises, in its order
OK, LN1, PROJ_RESID, LN2, FC2_RESID, NEXT_LN1 = range(6)


@njit(**JIT)
def gsb_requant_block(x, a_bits, n_tok, heads, ln1_sign, ln1_thr, w_qkv, q_thr, k_thr, v_off, vscale, ratios,
                      image_stat, exp_lut, att_bias, prob, recip, thr1, ctx_scale, in_thr, av_strategy, w_proj,
                      proj_mult, proj_bias, resid_shift, ln2_sign, ln2_thr, w_fc1, fc1_hi, fc1_lo, w_fc2, fc2_mult,
                      fc2_bias, next_sign, next_thr, has_next, ln_shift, eps, fast_lim, ticks, qk_split, w_qk, w_v,
                      qk_hi, qk_lo):
    """Block on X int32 [B*N, E] (a_bits: its ln1 bits, or 0 rows to compute them here; weights
    transposed [W, N]). Returns (X', the next block's ln1 bits (0 rows after the last block),
    stage, flat index, value): stage OK, or the first overflow (then X' and the bits are not
    meaningful; flat indexes rows for the LayerNorms, elements for the residuals).

    With qk_split (heads of whole words, int32 q/k thresholds) the qkv GEMM is two: the Q and K
    columns (w_qk) with their thresholds (qk_hi; qk_lo below every accumulator) in the epilogue,
    straight to packed bits, and the V columns (w_v) as accumulators; else one GEMM (w_qkv) and the
    attention packs Q and K."""
    rows, e = x.shape
    we = (e + 63) // 64
    zero = np.int64(0)
    if a_bits.shape[0] == 0:
        a_bits = np.empty((rows, we), dtype=np.uint64)
        bad = ln_bits_rows(x, ln1_sign, ln1_thr, ln_shift, eps, fast_lim, a_bits)
        if bad >= 0:
            return x, a_bits, LN1, bad, zero
    if qk_split:     # two calls of the attention: its input's two forms are different types to Numba
        qk = np.empty((rows, w_qk.shape[1] // 64), dtype=np.uint64)
        xnor_bits_into(a_bits, w_qk, e, qk_hi, qk_lo, qk)
        v_acc = np.empty((rows, w_v.shape[1]), dtype=np.int32)
        xnor_into(a_bits, w_v, e, v_acc)
        att = gsb_attention_batch((qk, v_acc), n_tok, heads, q_thr, k_thr, v_off, vscale, ratios, image_stat,
                                  exp_lut, att_bias, prob, recip, thr1, ctx_scale, in_thr, False, av_strategy, ticks)
    else:
        qkv = np.empty((rows, w_qkv.shape[1]), dtype=np.int32)
        xnor_into(a_bits, w_qkv, e, qkv)
        att = gsb_attention_batch(qkv, n_tok, heads, q_thr, k_thr, v_off, vscale, ratios, image_stat, exp_lut,
                                  att_bias, prob, recip, thr1, ctx_scale, in_thr, False, av_strategy, ticks)
    proj = np.empty((rows, e), dtype=np.int32)
    xnor_into(att[8], w_proj, e, proj)
    m_bits = np.empty((rows, we), dtype=np.uint64)
    x1, bad, val, ln_bad = residual_ln_rows(x, proj, proj_mult, proj_bias, resid_shift, ln2_sign, ln2_thr,
                                            ln_shift, eps, fast_lim, m_bits)
    if bad >= 0:
        return x1, m_bits, PROJ_RESID, bad, val
    if ln_bad >= 0:
        return x1, m_bits, LN2, ln_bad, zero
    hd = w_fc1.shape[1]
    f1b = np.empty((rows, (hd + 63) // 64), dtype=np.uint64)
    xnor_bits_into(m_bits, w_fc1, e, fc1_hi, fc1_lo, f1b)       # fc1's thresholds in its GEMM's epilogue
    f2 = np.empty((rows, e), dtype=np.int32)
    and_into(f1b, w_fc2, f2)
    if has_next:
        nb = np.empty((rows, we), dtype=np.uint64)
        x2, bad, val, ln_bad = residual_ln_rows(x1, f2, fc2_mult, fc2_bias, resid_shift, next_sign, next_thr,
                                                ln_shift, eps, fast_lim, nb)
        if bad >= 0:
            return x2, nb, FC2_RESID, bad, val
        if ln_bad >= 0:
            return x2, nb, NEXT_LN1, ln_bad, zero
        return x2, nb, OK, -1, zero
    x2, bad, val = residual_add_rows(x1, f2, fc2_mult, fc2_bias, resid_shift)
    return x2, np.empty((0, we), dtype=np.uint64), FC2_RESID if bad >= 0 else OK, bad, val


@njit(**JIT)
def gsb_requant_blocks(x, n_tok, heads, s, vscale, ratios, image_stat, prob, recip, av_strategy, resid_shift,
                       ln_shift, eps, fast_lim, ticks, qk_split):
    """Every block on X int32 [B*N, E], from the stacked block arrays s (block_stack.BlockStack); qk_split:
    see gsb_requant_block.
    Returns (X after the last block, block, stage, flat index, value): stage OK (block -1) or the
    first overflow, in the block that raised it (see gsb_requant_block)."""
    depth = s.w_qkv.shape[0]
    bits = np.empty((0, (x.shape[1] + 63) // 64), dtype=np.uint64)
    for i in range(depth):
        nxt = min(i + 1, depth - 1)
        x, bits, stage, flat, val = gsb_requant_block(
            x, bits, n_tok, heads, s.ln1_sign[i], s.ln1_thr[i], s.w_qkv[i], s.q_thr[i], s.k_thr[i], s.v_off[i],
            vscale, ratios, image_stat, s.exp_lut[i], s.att_bias[i], prob, recip, s.thr1[i], s.ctx_scale[i],
            s.in_thr[i], av_strategy, s.w_proj[i], s.proj_mult[i], s.proj_bias[i], resid_shift, s.ln2_sign[i],
            s.ln2_thr[i], s.w_fc1[i], s.fc1_hi[i], s.fc1_lo[i], s.w_fc2[i], s.fc2_mult[i], s.fc2_bias[i],
            s.ln1_sign[nxt], s.ln1_thr[nxt], i + 1 < depth, ln_shift, eps, fast_lim, ticks, qk_split, s.w_qk[i],
            s.w_v[i], s.qk_hi[i], s.qk_lo[i])
        if stage != OK:
            return x, i, stage, flat, val
    return x, -1, OK, -1, np.int64(0)


# every layer's code is linked into this function's cached code: an edit of any of them recompiles it
for _fn in (gsb_requant_block, gsb_requant_blocks):
    cache_depends_on(_fn, fast_attention, fast_ops, kernels, popcnt, table_lookup, bit_ids)
