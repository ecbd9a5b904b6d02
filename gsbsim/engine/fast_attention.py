"""§4-§6 of the fast path in one jitted call per block: Q/K bits and value codes, Q.K^T popcounts, the
fixed-point softmax with one reciprocal per row, the attention planes, the GSB context and the proj input bits."""
from __future__ import annotations


import numpy as np
from numba import njit, types
from numba.extending import overload

from gsbsim.engine.kernels import context_head, context_workspace, pack_bits_at, pack_row
from gsbsim.engine.popcnt import cycle_counter, ge_bits, ge_word, popcount64, wide_vectors
from gsbsim.engine.table_lookup import LANES, lookup_i32, padded_table_size
from gsbsim.engine import bit_ids, fast_ops, kernels, popcnt, table_lookup
from gsbsim.engine.fast_ops import INLINE, JIT
from gsbsim.engine.jit_cache import cache_depends_on


#: the phases of ``gsb_attention_batch`` that ``forward_profiled`` reports separately
ATTENTION_PHASES = ("attention: split q/k/v", "attention: scores+softmax+planes", "attention: A.V context",
                    "attention: ctx thresholds")

# ============================================================================ attention (§4-§6)
# Inner loops below index 1-D slices by the bare loop variable: an index LLVM cannot prove
# non-negative (e.g. row[2*e + c0 + j]) keeps Numba's negative-index wraparound select and
# stops vectorisation.
@njit(**INLINE)
def _mask_bounds(ratios, kk, mx, mn):
    """Mask M_{kk+2} holds v > hi or v < lo: 256*v > r*mx <=> v > floor(r*mx/256), 256*v < r*mn <=>
    v < ceil(r*mn/256), r = ratios[kk]; past the last ratio no v (hi = INT64_MAX, lo = INT64_MIN)."""
    if kk >= ratios.shape[0]:
        return np.int64(2 ** 63 - 1), np.int64(-2 ** 63)
    return (ratios[kk] * mx) >> 8, -((-ratios[kk] * mn) >> 8)


@njit(**INLINE)
def _codes_row(vflat, base, cflat, cbase, d, ratios, mx, mn, row_stat):
    """Value codes of one Vq row at flat offset base into cflat at cbase (bit 0 = sign, bit k = mask
    M_{k+1}); with row_stat the masks use the row's own max / min, else mx / mn.

    The sign and the first two masks (G <= 3: all of them) in one pass, each code built in an int64
    lane and stored narrowed (a pass per plane through an int64 scratch row made the split 10-25 % slower)."""
    if row_stat:
        mx, mn = vflat[base], vflat[base]
        for j in range(d):
            mx = max(mx, vflat[base + np.uint64(j)])
        for j in range(d):
            mn = min(mn, vflat[base + np.uint64(j)])
    hi1, lo1 = _mask_bounds(ratios, 0, mx, mn)
    hi2, lo2 = _mask_bounds(ratios, 1, mx, mn)
    for j in range(d):
        v = vflat[base + np.uint64(j)]
        c = np.int64(v >= 0) | (np.int64((v > hi1) | (v < lo1)) << 1) | (np.int64((v > hi2) | (v < lo2)) << 2)
        cflat[cbase + np.uint64(j)] = np.uint8(c)
    for kk in range(2, ratios.shape[0]):
        hi, lo = _mask_bounds(ratios, kk, mx, mn)
        for j in range(d):
            v = vflat[base + np.uint64(j)]
            cflat[cbase + np.uint64(j)] |= np.uint8(np.int64((v > hi) | (v < lo)) << (kk + 1))


@njit(**INLINE)
def _pack_qk(row, c0, e, d, q_thr, k_thr, qb, kb, h, t):
    """The Q and K bits of head h, token t: row's channels c0.. (Q) and e + c0.. (K) at their thresholds."""
    for w in range(qb.shape[2]):
        lo = c0 + 64 * w
        width = min(64, d - 64 * w)
        qb[h, t, w] = pack_bits_at(row, lo, q_thr, lo, width)
        kb[h, t, w] = pack_bits_at(row, e + lo, k_thr, lo, width)


def _packed_qk(acc):
    """Whether acc is (Q|K bits uint64 [rows, 2E/64], V accumulators int32 [rows, E]), the Q and K bits
    packed by the qkv GEMM's threshold epilogue (heads of whole words: d % 64 == 0), rather than the
    qkv accumulators int32 [rows, 3E]: a compile-time constant. Jitted through its overload only."""


@overload(_packed_qk, inline="always")
def _packed_qk_impl(acc):
    packed = isinstance(acc, types.BaseTuple)
    return lambda acc: packed


def _copy_qk(acc, r, c0, e, qb, kb, h, t):
    """qb[h, t], kb[h, t] = the packed Q and K words of head h (channels c0 ..) of row r, where acc holds
    them (_packed_qk); a no-op on the accumulators. Jitted through its overload only (not inlined: an
    inlined overload calling inlined functions upset Numba's IR checks)."""


@overload(_copy_qk)
def _copy_qk_impl(acc, r, c0, e, qb, kb, h, t):
    if not isinstance(acc, types.BaseTuple):
        return lambda acc, r, c0, e, qb, kb, h, t: None

    def copy_words(acc, r, c0, e, qb, kb, h, t):
        qk = acc[0]
        wq, wk = c0 // 64, (e + c0) // 64
        for w in range(qb.shape[2]):
            qb[h, t, w] = qk[r, wq + w]
            kb[h, t, w] = qk[r, wk + w]
    return copy_words


def _v_source(acc, r, e):
    """(the row holding qkv row r's V accumulators, the offset of V channel 0 in it; with the
    accumulators also its Q and K channels) of either form of acc (_packed_qk). Jitted through its
    overload only."""


@overload(_v_source, inline="always")
def _v_source_impl(acc, r, e):
    if isinstance(acc, types.BaseTuple):
        return lambda acc, r, e: (acc[1][r], np.uint64(0))
    return lambda acc, r, e: (acc[r], np.uint64(2 * e))


def _rows_and_width(acc):
    """(rows, E) of either form of the qkv input (_packed_qk). Jitted through its overload only."""


@overload(_rows_and_width, inline="always")
def _rows_and_width_impl(acc):
    if isinstance(acc, types.BaseTuple):
        return lambda acc: (acc[1].shape[0], acc[1].shape[1])
    return lambda acc: (acc.shape[0], acc.shape[1] // 3)


@njit(**INLINE)
def _qk_words(acc, row, r, c0, e, d, q_thr, k_thr, qb, kb, h, t):
    """qb[h, t], kb[h, t] = head h's Q and K words of qkv row r (`row`: acc's row r, _v_source): copied
    where the GEMM packed them (_packed_qk), else packed here from the accumulators."""
    if _packed_qk(acc):
        _copy_qk(acc, r, c0, e, qb, kb, h, t)
    else:
        _pack_qk(row, c0, e, d, q_thr, k_thr, qb, kb, h, t)


@njit(**INLINE)
def _split_image_rows(acc, r0, n_tok, heads, q_thr, k_thr, v_off, vscale, ratios, qb, kb, cflat, d, tmp):
    """_split_image with the row statistic and no Vq kept: each (token, head) row of Vq goes to a
    scratch row in L1 and straight into its codes (no [H, N, d] int64 Vq written and read back)."""
    e = heads * d
    row_v = tmp[:d]
    for t in range(n_tok):
        row, v0 = _v_source(acc, r0 + t, e)
        for h in range(heads):
            c0 = h * d
            _qk_words(acc, row, r0 + t, c0, e, d, q_thr, k_thr, qb, kb, h, t)
            src = v0 + np.uint64(c0)
            off = np.uint64(c0)
            mx, mn = np.int64(-2 ** 63), np.int64(2 ** 63 - 1)      # the row statistic, in the same pass
            for j in range(d):
                uj = np.uint64(j)
                v = np.int64(row[src + uj]) * vscale + v_off[off + uj]
                row_v[uj] = v
                mx = max(mx, v)
                mn = min(mn, v)
            _codes_row(row_v, np.uint64(0), cflat, np.uint64((h * n_tok + t) * d), d, ratios, mx, mn, False)


@njit(**JIT)
def _split_image(acc, r0, n_tok, heads, q_thr, k_thr, v_off, vscale, ratios, image_stat,
                 qb, kb, vqb, codes, tmp):
    """§4 for one image: packed Q bits qb [H, N, W(d)], K bits kb, Vq vqb int64 [H, N, d] and the
    value planes as codes [H, N, d] (bit 0 = sign s, bit k = mask M_{k+1}); tmp int64 [d] scratch;
    Vq is kept only when vqb has N rows (else 0: _split_image_rows).

    Rows are addressed by flat unsigned offsets, not slices: a slice per (token, head) costs
    atomic reference counting worth more than the row's arithmetic (unsigned: no wraparound
    select, so the j loops vectorise)."""
    wide_vectors()
    d = vqb.shape[2]
    e = heads * d
    vflat = vqb.reshape(-1)
    cflat = codes.reshape(-1)
    if vqb.shape[1] == 0:           # Vq not kept (row statistic, untraced): codes from a row in L1
        _split_image_rows(acc, r0, n_tok, heads, q_thr, k_thr, v_off, vscale, ratios, qb, kb, cflat, d, tmp)
        return
    for t in range(n_tok):
        row, v0 = _v_source(acc, r0 + t, e)
        for h in range(heads):
            c0 = h * d
            _qk_words(acc, row, r0 + t, c0, e, d, q_thr, k_thr, qb, kb, h, t)
            base = np.uint64((h * n_tok + t) * d)
            src = v0 + np.uint64(c0)
            off = np.uint64(c0)
            for j in range(d):
                uj = np.uint64(j)
                vflat[base + uj] = np.int64(row[src + uj]) * vscale + v_off[off + uj]
    # the codes in a loop of their own (inside the loop above they run 2x slower: measured)
    mx_img, mn_img = vflat[0], vflat[0]
    if image_stat:
        for i in range(heads * n_tok * d):
            mx_img = max(mx_img, vflat[i])
        for i in range(heads * n_tok * d):
            mn_img = min(mn_img, vflat[i])
    for r in range(heads * n_tok):
        _codes_row(vflat, np.uint64(r * d), cflat, np.uint64(r * d), d, ratios, mx_img, mn_img, not image_stat)


@njit(**INLINE)
def _plane_words(af, base, wn, last, thr, planes_h, counts_h, a, i):
    """Plane a, row i: planes_h[a, i] = packed (af[base + t] >= thr) for the wn*64 entries of a padded A
    row, the pad bits cleared by the mask `last` of the last word's keys (pads hold INT64_MIN, but
    thr may be INT64_MIN too), and counts_h[a, i] its popcount. Padding makes every word one vector
    compare (ge_word): the last partial word's scalar loop cost as much as the full words. The last
    word compares only as many lanes as hold keys, rounded up to 16 or 32 (ge_bits; N = 197: 5 keys,
    saving ~3/4 of a word's compares per plane)."""
    c = 0
    for w in range(wn - 1):
        word = ge_word(af, base + w * 64, thr, 0)
        planes_h[a, i, w] = word
        c += popcount64(word)
    at = base + (wn - 1) * 64
    if last >> np.uint64(32):
        word = ge_word(af, at, thr, 0) & last
    elif last >> np.uint64(16):
        word = ge_bits(af, at, thr, 32) & last
    else:
        word = ge_bits(af, at, thr, 16) & last
    planes_h[a, i, wn - 1] = word
    counts_h[a, i] = c + popcount64(word)


@njit(**INLINE)
def _last_word_mask(n):
    """The bits of the last word of a packed row of n >= 1 keys that are keys (not pads)."""
    return (~np.uint64(0)) >> np.uint64((64 - n % 64) % 64)


@njit(**INLINE)
def probabilities_row(ebuf, r, half, ush, brow, arow):
    """§5 from R = floor(2^recip / Z) on, shared with didb's softmax (gsbsim.fast_methods):
    arow[j] = ((e_j*R + half) >> ush) + brow[j] for the row's exp values e_j = ebuf[j], j < len(arow).

    The exp tables hold 0 <= e <= 2^prob <= 2^30, so e*R <= 2^recip < 2^63: unsigned arithmetic
    is exact and vectorises; when R fits 32 bits (R <= 2^(recip-prob): usually) the product is
    one 32x32 -> 64-bit vector multiply.
    """
    n = arow.shape[0]
    if r < 2 ** 32:
        r32 = np.uint64(np.uint32(r))
        for t in range(n):
            arow[t] = np.int64((np.uint64(np.uint32(ebuf[t])) * r32 + half) >> ush) + np.int64(brow[t])
    else:
        ur = np.uint64(r)
        for t in range(n):
            arow[t] = np.int64((np.uint64(ebuf[t]) * ur + half) >> ush) + np.int64(brow[t])


@njit(**JIT)
def _softmax_head(qh, kt, d, exp_lut, bias, shift, one_r, thr1, ratios, image_stat, a_out, planes_h, counts_h,
                  scores, b, h, trace, rowmax, pcs, ebuf, wide):
    """§4 scores and §5 softmax and planes of one head: A = P + att_bias into a_out [N|1, W(N)*64]
    (rows padded with the dtype's minimum; one row reused when A is not kept), the planes packed along
    keys into planes_h [G, N, W(N)] with their popcounts counts_h [G, N], and the row maxima. With the
    image statistic only b1 is packed here (the masks need the maximum over all heads: _mask_planes_head).
    kt = K bits transposed, [W(d), N], so the popcounts of a query against all keys are one
    contiguous vector loop.

    m_j = (smax - sc_j)/2 is popcount_j - min popcount: one table lookup e_j = exp_lut[m_j]
    per key, sixteen at a time (exp_lut int32, e <= 2^prob <= 2^30, zero-padded for
    table_lookup.lookup_i32; pcs and ebuf padded to a multiple of 16), one reciprocal per row, then
    vector arithmetic; the planes are packed while the row is in L1. Rows are addressed by flat
    unsigned offsets: a slice per row costs atomic reference counting.

    a_out may be int32 (when A is not kept): A is computed in int64 and stored narrow, twice the
    lanes per compare; a row whose maximum leaves int32 (an att_bias near 2^31: no plausible
    model) is packed from its int64 values in `wide` [W(N)*64] (padded) instead.
    """
    wide_vectors()
    n, wd = qh.shape
    wn = a_out.shape[1] // 64
    half = np.uint64(1) << np.uint64(shift - 1)
    ush = np.uint64(shift)
    kf = kt.reshape(-1)
    qf = qh.reshape(-1)
    bf = bias.reshape(-1)
    af = a_out.reshape(-1)
    narrow = a_out.itemsize == 4
    keep = a_out.shape[0] > 1
    un = np.uint64(n)
    last = _last_word_mask(n)
    for i in range(n):
        x = qf[i * wd]
        pmin = np.int32(64 * wd)
        for t in range(n):
            p = np.int32(popcount64(x ^ kf[t]))
            pcs[t] = p
            pmin = min(pmin, p)
        if wd > 1:
            for w in range(1, wd):
                x = qf[i * wd + w]
                kw = np.uint64(w) * un
                for t in range(n):
                    pcs[t] += np.int32(popcount64(x ^ kf[kw + np.uint64(t)]))
            pmin = pcs[0]
            for t in range(n):
                pmin = min(pmin, pcs[t])
        if trace:
            for t in range(n):
                scores[b, h, i, t] = np.int32(d - 2 * pcs[t])
        lookup_i32(exp_lut, pcs, n, pmin, ebuf)    # pcs, ebuf padded to a multiple of LANES; pads look up junk
        z = np.int64(0)
        for t in range(n):
            z += np.int64(ebuf[t])
        r = one_r // z
        abase = i * a_out.shape[1] if keep else 0
        ub = np.uint64(abase)
        ubi = np.uint64(i * n)
        amax = np.int64(-2 ** 63)
        # e*R <= 2^recip < 2^63: unsigned arithmetic is exact; R < 2^32 (usual): 32x32 -> 64-bit products
        if r < 2 ** 32:
            r32 = np.uint64(np.uint32(r))
            for t in range(n):
                v = np.int64((np.uint64(np.uint32(ebuf[t])) * r32 + half) >> ush) + np.int64(bf[ubi + np.uint64(t)])
                af[ub + np.uint64(t)] = v
                amax = max(amax, v)
        else:
            ur = np.uint64(r)
            for t in range(n):
                v = np.int64((np.uint64(ebuf[t]) * ur + half) >> ush) + np.int64(bf[ubi + np.uint64(t)])
                af[ub + np.uint64(t)] = v
                amax = max(amax, v)
        rowmax[i] = amax
        if narrow and amax > 2 ** 31 - 1:
            for t in range(n):
                wide[t] = np.int64((np.uint64(ebuf[t]) * np.uint64(r) + half) >> ush) + np.int64(bf[ubi + np.uint64(t)])
            for a in range(1 if image_stat else ratios.shape[0] + 1):
                thr = thr1 if a == 0 else ((ratios[a - 1] * amax) >> 8) + 1
                _plane_words(wide, 0, wn, last, thr, planes_h, counts_h, a, i)
            continue
        # b1, then (row statistic) the masks: one loop, so one inlined copy of the packing
        for a in range(1 if image_stat else ratios.shape[0] + 1):
            thr = thr1 if a == 0 else ((ratios[a - 1] * amax) >> 8) + 1
            _plane_words(af, abase, wn, last, thr, planes_h, counts_h, a, i)


@njit(**JIT)
def _mask_planes_head(a_h, amax, ratios, planes_h, counts_h):
    """The image statistic's mask planes of one head (after every head's softmax) and counts; a_h int64
    [N, W(N)*64] padded rows."""
    wn = a_h.shape[1] // 64
    af = a_h.reshape(-1)
    last = _last_word_mask(planes_h.shape[1])       # N keys (= N queries)
    for i in range(a_h.shape[0]):
        for kk in range(ratios.shape[0]):
            _plane_words(af, i * a_h.shape[1], wn, last, ((ratios[kk] * amax) >> 8) + 1, planes_h, counts_h, kk + 1, i)


@njit(**JIT)
def gsb_attention_batch(acc, n_tok, heads, q_thr, k_thr, v_off, vscale, ratios, image_stat, exp_lut, att_bias,
               prob, recip, thr1, scale, in_thr, trace, av_strategy, ticks):
    """§4-§6 of one block for the whole batch, from the qkv accumulators acc int32 [B*N, 3E], or from
    (Q|K bits, V accumulators) where the qkv GEMM packed the Q and K bits itself (_packed_qk).

    Returns (Q bits [B, H, N, W(d)], K bits, Vq [B|1, H, N, d], value codes [B, H, N, d],
    scores [B|0, H, N, N], A [B|1, H, N|1, N], attention planes [B, H, G, N, W(N)],
    ctx int64 [B*N, E], proj input bits [B*N, W(E)]); "B|1" arrays hold every image only
    when tracing (else the current image's scratch), A keeps every row only when tracing
    or for the image statistic. ticks int64 [len(ATTENTION_PHASES)]
    accumulates the CPU cycles spent in each phase.
    """
    rows, e = _rows_and_width(acc)
    b_n = rows // n_tok
    d = e // heads
    g = ratios.shape[0] + 1
    wd, wn = (d + 63) // 64, (n_tok + 63) // 64
    tb = b_n if trace else 1
    keep_rows = n_tok if trace or image_stat else 1      # A rows kept: for the trace / the image maximum
    q = np.zeros((b_n, heads, n_tok, wd), dtype=np.uint64)
    k = np.zeros((b_n, heads, n_tok, wd), dtype=np.uint64)
    vq = np.empty((tb, heads, n_tok if trace or image_stat else 0, d), dtype=np.int64)   # 0 rows: not kept
    codes = np.empty((b_n, heads, n_tok, d), dtype=np.uint8)
    scores = np.empty((b_n if trace else 0, heads, n_tok, n_tok), dtype=np.int32)
    probs = np.full((tb, heads, keep_rows, wn * 64), np.int64(-2 ** 63), dtype=np.int64)   # padded rows
    narrow = keep_rows == 1          # A not kept: one int32 row (see _softmax_head)
    row32 = np.full((1, wn * 64), np.int32(-2 ** 31), dtype=np.int32)
    wide = np.full(wn * 64, np.int64(-2 ** 63), dtype=np.int64)
    lut32 = np.zeros(padded_table_size(exp_lut.shape[0]), dtype=np.int32)   # lookup_i32's padding
    lut32[:exp_lut.shape[0]] = exp_lut    # 0 <= e <= 2^prob <= 2^30 (validated on load)
    kt = np.empty((wd, n_tok), dtype=np.uint64)
    planes = np.zeros((b_n, heads, g, n_tok, wn), dtype=np.uint64)
    ctx = np.empty((rows, e), dtype=np.int64)
    pin = np.zeros((rows, (e + 63) // 64), dtype=np.uint64)
    counts = np.empty((heads, g, n_tok), dtype=np.int64)
    rowmax = np.empty((heads, n_tok), dtype=np.int64)
    n_pad = (n_tok + LANES - 1) // LANES * LANES
    pcs = np.zeros(n_pad, dtype=np.int32)
    ebuf = np.empty(n_pad, dtype=np.int32)
    tmp = np.empty(d, dtype=np.int64)      # a Vq row (_split_image_rows)
    shift = np.int64(recip - prob)
    one_r = np.int64(1) << np.int64(recip)
    ws = context_workspace(scale, n_tok, d)
    for b in range(b_n):
        s = b if trace else 0
        r0 = b * n_tok
        c0 = cycle_counter()
        _split_image(acc, r0, n_tok, heads, q_thr, k_thr, v_off, vscale, ratios, image_stat,
                     q[b], k[b], vq[s], codes[b], tmp)
        c1 = cycle_counter()
        for h in range(heads):
            for t in range(n_tok):
                for w in range(wd):
                    kt[w, t] = k[b, h, t, w]
            if narrow:
                _softmax_head(q[b, h], kt, d, lut32, att_bias[h], shift, one_r, thr1, ratios, image_stat,
                              row32, planes[b, h], counts[h], scores, b, h, trace, rowmax[h], pcs, ebuf, wide)
            else:
                _softmax_head(q[b, h], kt, d, lut32, att_bias[h], shift, one_r, thr1, ratios, image_stat,
                              probs[s, h], planes[b, h], counts[h], scores, b, h, trace, rowmax[h], pcs, ebuf, wide)
        if image_stat:
            amax = rowmax[0, 0]
            for h in range(heads):
                for i in range(n_tok):
                    amax = max(amax, rowmax[h, i])
            for h in range(heads):
                _mask_planes_head(probs[s, h], amax, ratios, planes[b, h], counts[h])
        c2 = cycle_counter()
        for h in range(heads):
            context_head(planes[b, h], counts[h], codes[b, h], scale, n_tok, ctx, r0, h * d, av_strategy, ws)
        c3 = cycle_counter()
        for r in range(r0, r0 + n_tok):
            pack_row(ctx[r], in_thr, in_thr, False, pin[r])
        ticks[0] += c1 - c0
        ticks[1] += c2 - c1
        ticks[2] += c3 - c2
        ticks[3] += cycle_counter() - c3
    return q, k, vq, codes, scores, probs[:, :, :, :n_tok], planes, ctx, pin


# the GSB context and the packing helpers are linked into this function's cached code
cache_depends_on(gsb_attention_batch, kernels, popcnt, fast_ops, table_lookup, bit_ids)
for _phase in (_split_image, _softmax_head, _mask_planes_head):     # cached on their own too
    cache_depends_on(_phase, kernels, popcnt, table_lookup)
