"""The fast path: the integer model on packed bits with Numba (must equal gsbsim.golden exactly).

Same signature, trace names, dtypes and values as ``gsbsim.engine.golden.forward`` (see its
docstring for the trace table). The batch is processed layer by layer with all tokens of
all images stacked as rows. Untraced and unprofiled, the gsb method with requant post-linears
runs all blocks in one jitted call (``fast_block.gsb_requant_blocks`` on the model's block arrays,
stacked once per model by ``block_stack``: no Python between layers or blocks); otherwise
(traces, profile, other methods) one jitted call per layer:

* the binary linears are ``kernels.xnor_into`` / ``and_into`` on weights transposed to
  [W, N] once per forward; each residual requantization is fused with the LayerNorm ->
  bits that follows it (one pass over X per residual); in the fused blocks fc1's thresholds, and
  with heads of whole words Q's and K's, are the GEMM tiles' epilogue (``kernels.xnor_bits_into``:
  packed bits, the int32 values never stored);
* the whole attention of a block is one call (``gsb_attention_batch``): per image and head it
  splits qkv into packed Q/K bits and value codes, computes the Q.K^T popcounts and the
  fixed-point softmax (one table lookup per key, one reciprocal per row), packs the
  attention planes, and gets the GSB context from ``kernels.context_head`` (a walk over
  the set bits of the sparse attention planes, or popcounts when they are dense; the
  ``context_method`` variable forces one), then packs the proj input bits;
* the softmax rows of A are padded to whole 64-bit words, so every attention plane word is
  one vector compare; untraced (row statistic), a row of A is int32 (twice the lanes per compare;
  a row whose maximum leaves int32 is packed from int64 instead);
* the loops of the softmax, the q/k/v split, the residual + LayerNorm and the A.V walk are
  compiled for 512-bit vectors where the CPU has them (``popcnt.wide_vectors``: LLVM's tuning
  for Intel cores otherwise keeps auto-vectorised loops on 256-bit registers);
* the 8-bit patch embedding is exact int8 register tiles of ``vpdpbusd`` where the CPU has
  AVX-512 VNNI (``int8_gemm``), else a float32 BLAS product (every partial sum is an integer of
  at most 2^14 * Cin*P^2 <= 2^24; float64 when Cin*P^2 > 1024).

Bits stay packed (uint64, LSB first) between layers and are unpacked only for the
trace; intermediates only the trace needs (scores, probabilities, Vq of every image)
are not kept unless tracing. Overflow checks are the golden path's, with its messages.

``forward_batch`` hands groups of two images to threads (the jitted code releases the GIL) and
``forward_profiled`` reports the time of each stage (the op split of benchmarks/model.py).
"""
from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gsbsim.format.conventions import n_words
from gsbsim.engine.errors import (LN_OVERFLOW, RESID_OVERFLOW, IntegerOverflowError, InputError, check_images)
from gsbsim.engine.kernels import AV_STRATEGIES, and_into, pack_2sided_into, xnor_into
from gsbsim.format.model_file import IntModel
from gsbsim.engine.errors import U_OVERFLOW, Z_OVERFLOW
from gsbsim.engine.fast_act import act_unit_rows
from gsbsim.engine.fast_didb import hfsc_diba_batch
from gsbsim.engine.fast_attention import ATTENTION_PHASES, gsb_attention_batch
from gsbsim.engine import fast_block
from gsbsim.engine.block_stack import block_stack
from gsbsim.engine.fast_ops import embed_rows, fast_limit, head_input_rows, head_logits, int8_products, ln_bits_rows, patch_rows, raise_overflow, residual_add_rows, residual_ln_rows, transposed, unpack


#: how the GSB context is computed: "auto" (per head, the cheaper of the two), "sparse"
#: (walk the attention bits) or "dense" (popcounts); all give the same integers.
#: the A.V strategy of every forward pass (a key of kernels.AV_STRATEGIES; tests force each one)
av_strategy = "auto"
LINEARS = ("qkv", "proj", "fc1", "fc2")


def qk_in_epilogue(model: IntModel, stack) -> bool:
    """Whether the fused blocks pack Q and K in the qkv GEMM's threshold epilogue (fast_block's qk_split):
    heads of whole 64-bit words and int32 q/k thresholds (a valid file's)."""
    return model.head_dim % 64 == 0 and stack.q_thr.dtype == stack.k_thr.dtype == np.int32


class _Run:
    """One forward pass over a batch: X [B*N, E] int32 flows through the blocks.

    With `prof` (a dict), the CPU seconds of each stage are added to prof[stage name]; the
    attention's phases are apportioned from the cycle counts the jitted call returns.
    """

    def __init__(self, model: IntModel, images: np.ndarray, trace: bool, prof: dict | None = None):
        self.m = model
        self.b, self.n, self.e = images.shape[0], model.num_tokens, model.embed_dim
        self.trace = trace
        self.prof = prof
        self.out: dict[str, np.ndarray] = {}
        self.ratios = np.asarray(model.ratios, dtype=np.int64)
        self.image_stat = model.mask_stat == "image"
        self.fast_lim = fast_limit(self.e, model.ln_eps)
        self.eps = model.ln_eps
        self.sh = model.shifts                       # (a property that builds a dict: read it once)
        self.ln_shift = np.int64(self.sh["ln"])
        self.av_strategy = AV_STRATEGIES[av_strategy]
        self.ticks = np.zeros(len(ATTENTION_PHASES), dtype=np.int64)

    def rec(self, name: str, make) -> None:
        """Record a trace tensor; `make` is a thunk so nothing is unpacked when not tracing."""
        if self.trace:
            self.out[name] = make()

    def tick(self) -> float:
        return time.thread_time() if self.prof is not None else 0.0

    def tock(self, name: str, start: float) -> None:
        if self.prof is not None:
            self.prof[name] = self.prof.get(name, 0.0) + time.thread_time() - start

    def ln(self, x: np.ndarray, blk: dict, name: str, where: str) -> np.ndarray:
        t = self.tick()
        bits = np.empty((x.shape[0], n_words(self.e)), dtype=np.uint64)
        bad = ln_bits_rows(x, blk[name + ".sign"], blk[name + ".thr"], self.ln_shift, self.eps, self.fast_lim, bits)
        if bad >= 0:
            raise_overflow(where, LN_OVERFLOW, bad, (self.b, self.n))
        self.tock("layernorm -> bits", t)
        return bits

    def residual(self, x, acc, mult, bias, shift: int, where: str, ln: tuple | None, ln_where: str,
                 label: str) -> tuple[np.ndarray, np.ndarray | None]:
        """X + rq(acc, mult, bias, shift) (§7), then, with ln = (sign, thr), that LayerNorm's bits in the
        same pass (the residual's overflow wins over the LayerNorm's, as in the golden path)."""
        t = self.tick()
        bits = None
        if ln is None:
            new, bad, val = residual_add_rows(x, acc, mult, bias, shift)
            ln_bad = -1
        else:
            bits = np.empty((x.shape[0], n_words(self.e)), dtype=np.uint64)
            new, bad, val, ln_bad = residual_ln_rows(x, acc, mult, bias, shift, ln[0], ln[1], self.ln_shift,
                                                     self.eps, self.fast_lim, bits)
        if bad >= 0:
            raise_overflow(where, RESID_OVERFLOW, bad, (self.b, self.n, self.e), val)
        if ln_bad >= 0:
            raise_overflow(ln_where, LN_OVERFLOW, ln_bad, (self.b, self.n))
        self.tock(label, t)
        return new, bits

    def linear(self, name: str, bits: np.ndarray, w_t: np.ndarray, k: int | None) -> np.ndarray:
        """A binary linear on packed rows: xnor (k = K) or, with k None, and ({0,1} inputs)."""
        t = self.tick()
        out = np.empty((bits.shape[0], w_t.shape[1]), dtype=np.int32)
        if k is None:
            and_into(bits, w_t, out)
        else:
            xnor_into(bits, w_t, k, out)
        self.tock(name, t)
        return out

    def patch_embed(self, images: np.ndarray) -> np.ndarray:
        """§2: the int8 products exactly (fast_ops.int8_products), then the requantization."""
        t = self.tick()
        m, a = self.m, self.m.arrays
        b, _, size, _ = images.shape
        p = m.patch_size
        g = size // p
        acc = int8_products(patch_rows(images, p), a["patch.weight"])
        x, bad, val = embed_rows(acc, a["patch.mult"], a["patch.bias"], a["pos"], a["tokens"], self.sh["patch"], b)
        if bad >= 0:
            raise_overflow("embed", RESID_OVERFLOW, bad, (b, self.n, self.e), val)
        self.tock("patch embedding", t)
        self.rec("patch.acc", lambda: acc.reshape(b, g * g, self.e))
        self.rec("embed", lambda: x.reshape(b, self.n, self.e))
        return x

    def attention(self, blk: dict, qkv: np.ndarray, vscale: np.int64):
        sh = self.sh
        t = self.tick()
        before = self.ticks.copy()
        out = gsb_attention_batch(qkv, self.n, self.m.num_heads, blk["q.thr"], blk["k.thr"], blk["v.offset"],
                         vscale, self.ratios, self.image_stat, blk["exp_lut"],
                         blk["att_bias"], sh["prob"], sh["recip"], np.int64(blk["a.thr1"]), blk["ctx.scale"],
                         blk["proj.in_thr"], self.trace, self.av_strategy, self.ticks)
        if self.prof is not None:
            spent = time.thread_time() - t
            phases = self.ticks - before
            for name, cycles in zip(ATTENTION_PHASES, phases):
                self.prof[name] = self.prof.get(name, 0.0) + spent * cycles / max(int(phases.sum()), 1)
        return out

    def record_attention(self, p: str, out: tuple) -> np.ndarray:
        """Record the §4-§6 traces of block prefix `p` from what self.attention returned (also
        the gsb attention feature on either post-linear feature); returns the proj input bits."""
        qp, kp, vq, codes, scores, att, ap, ctx, pin = out
        b, n, d, g = self.b, self.n, self.m.head_dim, self.m.groups
        self.rec(p + "q.bits", lambda: unpack(qp, d))
        self.rec(p + "k.bits", lambda: unpack(kp, d))
        self.rec(p + "v.q", lambda: vq)
        self.rec(p + "v.planes", lambda: np.stack([(codes >> np.uint8(j)) & np.uint8(1) for j in range(g)], axis=1))
        self.rec(p + "scores", lambda: scores)
        self.rec(p + "probs", lambda: att)
        self.rec(p + "a.planes", lambda: unpack(ap, n).transpose(0, 2, 1, 3, 4).copy())
        self.rec(p + "ctx", lambda: ctx.reshape(b, n, self.e))
        return pin

    def block(self, i: int, x: np.ndarray, a_bits: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Block i on X [B*N, E] (a_bits: its ln1 bits when the previous block computed them); returns the
        new X and the next block's ln1 bits (None after the last block). The method's two features
        (gsbsim/format/methods.py) pick the registered POST_LINEAR and ATTENTION implementations."""
        m = self.m
        post, attention = POST_LINEAR[m.features.post_linear], ATTENTION[m.features.attention]
        t = self.tick()
        blk = m.block(i)
        w_t = {lin: transposed(blk[lin + ".weight"]) for lin in LINEARS}
        self.tock("weight layout", t)
        b, n, e, hd = self.b, self.n, self.e, m.mlp_hidden
        p = f"blocks.{i}."
        shape = (b, n, e)

        def linear(lin: str, bits: np.ndarray, k: int | None, width: int) -> np.ndarray:
            acc = self.linear(f"{lin} ({'and' if k is None else 'xnor'})", bits, w_t[lin], k)
            self.rec(p + lin + ".acc", lambda: acc.reshape(b, n, width))
            return post.output(self, blk, p, lin, acc, width)

        if a_bits is None:
            a_bits = self.ln(x, blk, "ln1", p + "ln1")
        self.rec(p + "ln1.bits", lambda: unpack(a_bits, e).reshape(shape))
        qkv = linear("qkv", a_bits, e, 3 * e)
        pin = attention(self, blk, qkv, p, post.value_scale(self))
        self.rec(p + "proj.bits", lambda: unpack(pin, e).reshape(shape))
        proj = linear("proj", pin, e, e)
        x1, m_bits = post.residual(self, x, proj, blk, "proj", p, (blk["ln2.sign"], blk["ln2.thr"]), p + "ln2")
        self.rec(p + "resid1", lambda: x1.reshape(shape))
        self.rec(p + "ln2.bits", lambda: unpack(m_bits, e).reshape(shape))

        f1 = linear("fc1", m_bits, e, hd)
        t = self.tick()
        f1b = np.empty((b * n, n_words(hd)), dtype=np.uint64)
        pack_2sided_into(f1, blk["fc1.thr_hi"], blk["fc1.thr_lo"], f1b)
        self.tock("fc1 thresholds", t)
        self.rec(p + "fc1.bits", lambda: unpack(f1b, hd).reshape(b, n, hd))
        f2 = linear("fc2", f1b, None, e)
        ln = None
        if i + 1 < m.depth:
            nb = self.next_ln1(i + 1)
            ln = (nb["ln1.sign"], nb["ln1.thr"])
        x2, next_bits = post.residual(self, x1, f2, blk, "fc2", p, ln, f"blocks.{i + 1}.ln1")
        self.rec(p + "resid2", lambda: x2.reshape(shape))
        return x2, next_bits

    def fused_blocks(self, x: np.ndarray) -> np.ndarray:
        """Every block for the gsb method with requant post-linears, untraced and unprofiled: one jitted call
        (fast_block.gsb_requant_blocks) on the model's stacked block arrays; an overflow is raised here with
        the golden path's message."""
        m, sh = self.m, self.sh
        s = block_stack(m)
        x2, i, stage, flat, val = fast_block.gsb_requant_blocks(
            x, self.n, m.num_heads, s, np.int64(1) << np.int64(sh["value"]), self.ratios, self.image_stat,
            sh["prob"], sh["recip"], self.av_strategy, sh["resid"], self.ln_shift, self.eps, self.fast_lim, self.ticks,
            qk_in_epilogue(m, s))
        if stage != fast_block.OK:
            p, nxt = f"blocks.{i}.", f"blocks.{i + 1}."
            rows, elems = (self.b, self.n), (self.b, self.n, self.e)
            where, what, shape = {fast_block.LN1: (p + "ln1", LN_OVERFLOW, rows),
                                  fast_block.PROJ_RESID: (p + "proj", RESID_OVERFLOW, elems),
                                  fast_block.LN2: (p + "ln2", LN_OVERFLOW, rows),
                                  fast_block.FC2_RESID: (p + "fc2", RESID_OVERFLOW, elems),
                                  fast_block.NEXT_LN1: (nxt + "ln1", LN_OVERFLOW, rows)}[stage]
            raise_overflow(where, what, flat, shape, val if what == RESID_OVERFLOW else None)
        return x2

    def next_ln1(self, i: int) -> dict:
        a = self.m.arrays
        return {"ln1.sign": a[f"blocks.{i}.ln1.sign"], "ln1.thr": a[f"blocks.{i}.ln1.thr"]}

    def run(self, images: np.ndarray) -> np.ndarray:
        m, a, sh = self.m, self.m.arrays, self.sh
        self.rec("input", lambda: images)
        x = self.patch_embed(images)
        if not self.trace and self.prof is None and m.features.post_linear == "requant" and m.features.attention == "gsb":
            x = self.fused_blocks(x)
        else:
            bits = None
            for i in range(m.depth):
                x, bits = self.block(i, x, bits)
        t = self.tick()
        qs = []
        for tok, norm in ((0, "norm"), (1, "head_dist_norm")):
            q, bad = head_input_rows(x, tok, self.n, a[norm + ".gain"], a[norm + ".offset"], sh["head_ln"], self.eps)
            if bad >= 0:
                raise_overflow(norm, LN_OVERFLOW, bad, (self.b,))
            qs.append(q)
        q = np.stack(qs, axis=1)
        hacc, logits, pred = head_logits(q, a["head.weight"], a["head_dist.weight"], np.int64(a["head.mult"]),
                                    np.int64(a["head_dist.mult"]), a["logit.bias"])
        self.tock("final norm + heads", t)
        self.rec("head.q", lambda: q)
        self.rec("head.acc", lambda: hacc)
        self.rec("logits", lambda: logits)
        self.rec("pred", lambda: pred)
        return logits


# ============================================================================ the features
class _Requant:
    """``requant``: accumulators feed on unchanged; proj and fc2 enter the residual through §7's rq."""

    @staticmethod
    def value_scale(run: _Run) -> np.int64:
        return np.int64(1) << np.int64(run.sh["value"])

    @staticmethod
    def output(run: _Run, blk: dict, p: str, lin: str, acc: np.ndarray, width: int) -> np.ndarray:
        return acc

    @staticmethod
    def residual(run: _Run, x, acc, blk: dict, lin: str, p: str, ln, ln_where: str):
        return run.residual(x, acc, np.int64(blk[lin + ".mult"]), blk[lin + ".bias"], run.sh["resid"], p + lin, ln,
                            ln_where, "residual requant + layernorm -> bits")


class _ActUnit:
    """``act_unit`` (§13.1): z after every binary linear, traced as {L}.z; the residual adds z with the
    fused kernel's identity requantization rq(z, 2, 0, 1) = (2z + 1) >> 1 = z (exact); value scale 1."""

    @staticmethod
    def value_scale(run: _Run) -> np.int64:
        return np.int64(1)

    @staticmethod
    def output(run: _Run, blk: dict, p: str, lin: str, acc: np.ndarray, width: int) -> np.ndarray:
        t = run.tick()
        z = np.empty_like(acc)
        k = run.m.mlp_hidden if lin == "fc2" else run.e       # |acc| <= K, the linear's input length
        u_at, u_val, z_at, z_val = act_unit_rows(acc, k, run.n, np.int64(blk[lin + ".mult"]), blk[lin + ".bias"],
                                                 blk[lin + ".tok_in"], blk[lin + ".slope"], blk[lin + ".out"],
                                                 blk[lin + ".tok_out"], run.sh["resid"], run.m.slope_shift, z)
        shape = (run.b, run.n, width)
        if u_at >= 0:        # the golden path checks u over the whole layer, then z
            raise_overflow(p + lin + ".act", U_OVERFLOW, u_at, shape, u_val)
        if z_at >= 0:
            raise_overflow(p + lin + ".act", Z_OVERFLOW, z_at, shape, z_val)
        run.tock(f"{lin} activation unit", t)
        run.rec(p + lin + ".z", lambda: z.reshape(shape))
        return z

    @staticmethod
    def residual(run: _Run, x, z, blk: dict, lin: str, p: str, ln, ln_where: str):
        return run.residual(x, z, np.int64(2), np.zeros(run.e, dtype=np.int64), 1, p + lin, ln, ln_where,
                            "residual + layernorm -> bits")


POST_LINEAR = {"requant": _Requant, "act_unit": _ActUnit}


def _gsb_attention(run: _Run, blk: dict, qkv: np.ndarray, p: str, vscale: np.int64) -> np.ndarray:
    """§4-§6 (one jitted call), its traces recorded; returns the proj input bits."""
    return run.record_attention(p, run.attention(blk, qkv, vscale))


def _hfsc_diba_attention(run: _Run, blk: dict, zq: np.ndarray, p: str, vscale: np.int64) -> np.ndarray:
    """§13.2-§13.3 (HFSC, three-level exp softmax, DIBA; one jitted call) on the qkv unit's z, its traces
    recorded; returns the proj input bits. The value scale is 1 (act_unit feeds it)."""
    m = run.m
    b, n, d = run.b, run.n, m.head_dim
    t = run.tick()
    ql, qh, kl, kh, vq, codes, sc_low, sc_high, hfsc, att, ap, lap, ctx, pin = hfsc_diba_batch(
        zq, n, m.img_size // m.patch_size, m.num_heads, blk["q.thr_low"], blk["q.thr_high"], blk["k.thr_low"],
        blk["k.thr_high"], blk["v.offset"], blk["score.w"], blk["exp_hi"], blk["exp_mid"], blk["exp_lo"], blk["att_bias"],
        run.sh["prob"], run.sh["recip"], np.int64(blk["a.thr1"]), blk["ctx.scale"], np.int64(blk["ctx.vscale"]),
        blk["ctx.local"], blk["proj.in_thr"], run.trace, run.av_strategy)
    run.tock("attention (hfsc + diba)", t)
    for name, bits in (("q.low", ql), ("q.high", qh), ("k.low", kl), ("k.high", kh)):
        run.rec(p + name, lambda bits=bits: unpack(bits, d))
    run.rec(p + "v.q", lambda: vq)
    run.rec(p + "v.planes", lambda: codes[:, None].copy())
    run.rec(p + "scores.low", lambda: sc_low)
    run.rec(p + "scores.high", lambda: sc_high)
    run.rec(p + "hfsc", lambda: hfsc)
    run.rec(p + "probs", lambda: att)
    run.rec(p + "a.planes", lambda: unpack(ap, n).transpose(0, 2, 1, 3, 4).copy())
    run.rec(p + "lap", lambda: lap)
    run.rec(p + "ctx", lambda: ctx.reshape(b, n, run.e))
    return pin


ATTENTION = {"gsb": _gsb_attention, "hfsc_diba": _hfsc_diba_attention}


def forward(model: IntModel, images: np.ndarray, trace: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits int64 [B, num_classes] of int8 images [B, Cin, I, I], and the trace (empty unless `trace`)."""
    images = check_images(model, images)
    run = _Run(model, images, trace)
    logits = run.run(images)
    return logits, run.out


def _one_blas_thread():
    """Context manager holding BLAS to one thread (threadpoolctl, shipped with scikit-learn)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - without threadpoolctl BLAS keeps its own setting
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def forward_profiled(model: IntModel, images: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Logits as ``forward``, and the seconds spent per stage (this thread's CPU time, this call: on a
    shared machine wall-clock stages also count other jobs' time slices).

    Stages: patch embedding, layernorm -> bits, the four binary linears, the attention
    phases (ATTENTION_PHASES, apportioned by their cycle counts), fc1 thresholds, residual
    requant, final norm + heads, weight layout; "other" is the rest (Python glue, allocation).
    The stages are timed on the per-layer path (one jitted call per layer, Python between them);
    ``forward`` runs the same kernels with one jitted call for all blocks (fast_block), so its glue is
    smaller than "other" here.
    """
    images = check_images(model, images)
    prof: dict[str, float] = {}
    start = time.thread_time()
    logits = _Run(model, images, False, prof).run(images)
    prof["other"] = max(0.0, time.thread_time() - start - sum(prof.values()))
    return logits, prof


#: images per forward call in forward_batch: measured on DeiT-Tiny (one thread), 2 images a call ran
#: ~11 % more images/s than 8 stacked (whose per-layer intermediates outgrow the L2 cache) and ~4 %
#: more than 1 (GEMM rows amortise the weight loads)
BATCH_GROUP = 2


def forward_batch(model: IntModel, images: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Logits of a batch split over `threads` threads (default: one per core), no trace.

    Equal to ``forward(model, images)[0]``: every image is independent. The batch runs as groups of
    BATCH_GROUP images, handed to the threads as they free up (a thread slowed by another job on
    its core takes fewer groups). The jitted code releases the GIL; BLAS (the patch embedding) is
    held to one thread meanwhile so the threads do not oversubscribe the cores. If a group
    overflows, the whole batch is re-run by ``forward`` so that the error names the same (first)
    layer, image and token as the golden path.
    """
    images = check_images(model, images)
    threads = (os.cpu_count() or 1) if threads is None else int(threads)
    if threads < 1:
        raise InputError(f"forward_batch: threads must be >= 1, got {threads}")
    groups = [images[i:i + BATCH_GROUP] for i in range(0, images.shape[0], BATCH_GROUP)]
    n = min(threads, len(groups))
    if len(groups) <= 1:
        return forward(model, images)[0]
    try:
        with _one_blas_thread():
            if n == 1:
                parts = [forward(model, g)[0] for g in groups]
            else:
                with ThreadPoolExecutor(max_workers=n) as pool:
                    parts = list(pool.map(lambda g: forward(model, g)[0], groups))
    except IntegerOverflowError:
        return forward(model, images)[0]
    return np.concatenate(parts)
