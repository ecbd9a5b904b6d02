"""The branches and exact ties of docs/integer_model.md, counted on a golden run (numpy only).

``branch_counts(model, images)`` runs the golden engine with tracing and evaluates, for every branch
that applies to the model's method (``BRANCHES``: name -> what it means), how many times the images
reach it: comparisons at exact equality (where ``>=`` and ``>`` differ), requantizations exactly
half-way (where rounding half up differs from half away from zero or from truncation), square roots
where rounding and flooring differ, both int8 clamps, equal maxima (where first and last differ).
Each predicate is written from the spec's formula on the traced tensors (and the intermediate values
that formula defines, recomputed here), not from an engine's code path, so a count says what the
input exercises in any implementation of the spec.
"""
from __future__ import annotations

import numpy as np

from gsbsim.engine import golden
from gsbsim.engine.golden_didb import exp3_weights, haar_s4
from gsbsim.engine.golden_ops import ln_stats
from gsbsim.format.methods import ACT_LINEARS, method_of
from gsbsim.format.model_file import IntModel

__all__ = ["BRANCHES", "applicable", "branch_counts", "coverage_table"]

_ACT = {f"{lin}.{k}": text.format(lin=lin) for lin in ACT_LINEARS for k, text in (
    ("u.tie+", "§13.1 {lin}: u = rq(acc, ...) exactly half-way, rounding up to u > 0"),
    ("u.tie-", "§13.1 {lin}: u exactly half-way, rounding up to u < 0 (floor(x + 1/2), not away from 0)"),
    ("u=0", "§13.1 {lin}: u = 0 exactly (the u >= 0 side of the PReLU)"),
    ("slope.tie", "§13.1 {lin}: u < 0 and u*slope exactly half-way in 2^-shifts.slope"))}

BRANCHES: dict[str, str] = {
    "patch.rq.tie+": "§2 patch requantization exactly half-way, rounding up to a value > 0",
    "patch.rq.tie-": "§2 patch requantization exactly half-way, rounding up to a value < 0",
    "ln.sign+1": "§3 a LayerNorm channel with gain sign +1",
    "ln.sign-1": "§3 a LayerNorm channel with gain sign -1",
    "ln.sign0.always1": "§3 gain sign 0 with thr <= 0 (bit always 1)",
    "ln.sign0.always0": "§3 gain sign 0 with thr > 0 (bit always 0)",
    "ln1.tie": "§3 norm1: sign*D*2^ln = thr*sigma exactly, D != 0",
    "ln2.tie": "§3 norm2: sign*D*2^ln = thr*sigma exactly, D != 0",
    "ln.tie.sqrt-rounds": "§3 a tie with thr > 0 where round(sqrt V) != floor(sqrt V) (a rounding isqrt flips it)",
    "ln.variance0": "§3 a token with E*S2 = S1^2 (V = ln_eps, D = 0 everywhere)",
    "ln.V-square": "§3 V a perfect square (isqrt exact)",
    "q.thr.tie": "§4 Q bit: acc (z) = q.thr exactly",
    "k.thr.tie": "§4 K bit: acc (z) = k.thr exactly",
    "q.low.tie": "§13.2 Q low band: S4 = q.thr_low exactly",
    "q.high.tie": "§13.2 Q high band: 4z - S4 = q.thr_high exactly",
    "k.low.tie": "§13.2 K low band: S4 = k.thr_low exactly",
    "k.high.tie": "§13.2 K high band: 4z - S4 = k.thr_high exactly",
    "v.sign.tie": "§4 sign plane: Vq = 0 exactly",
    "v.mask.tie-max": "§4 value mask: 256*Vq = r_k*mx exactly (strict >: bit 0)",
    "v.mask.tie-min": "§4 value mask: 256*Vq = r_k*mn exactly (strict <: bit 0)",
    "softmax.max-twice": "§5/§13.2 a score row whose maximum is reached more than once",
    "exp_lut.zero": "§5 e_j = exp_lut[m_j] = 0",
    "exp3.outside": "§13.2 m_j >> 16 >= len(exp_hi): e_j = 0",
    "exp3.shift0": "§13.2 prob = 0: rq(x, 0) = x in the three-level exp (no rounding term)",
    "P.half-way": "§5 e*R exactly half-way between two probabilities (rounds up)",
    "a.thr1.tie": "§5 base attention plane: A = a.thr1 exactly",
    "a.mask.tie": "§5 attention mask: 256*A = r_k*amax exactly (strict >: bit 0)",
    "a.max-twice": "§5 a row of A whose maximum is reached more than once",
    "proj.in_thr.tie": "§6/§13.3 proj input bit: ctx = proj.in_thr exactly",
    "proj.rq.tie+": "§7 proj requantization exactly half-way, rounding up to a value > 0",
    "proj.rq.tie-": "§7 proj requantization exactly half-way, rounding up to a value < 0",
    "fc2.rq.tie+": "§7 fc2 requantization exactly half-way, rounding up to a value > 0",
    "fc2.rq.tie-": "§7 fc2 requantization exactly half-way, rounding up to a value < 0",
    **_ACT,
    "fc1.hi.tie": "§8 fc1: acc (z) = thr_hi exactly (>=: bit 1)",
    "fc1.lo.tie": "§8 fc1: acc (z) = thr_lo exactly (<=: bit 1)",
    "fc1.lower-ray.on": "§8 fc1 lower ray (thr_hi unreachable): a 1 from acc <= thr_lo",
    "fc1.both.on-above": "§8 fc1 with both rays: a 1 from acc >= thr_hi",
    "fc1.both.on-below": "§8 fc1 with both rays: a 1 from acc <= thr_lo",
    "fc1.always": "§8 fc1 always on (thr_hi at or below the lowest value)",
    "fc1.never": "§8 fc1 never on (both thresholds unreachable)",
    "head.gain0": "§9 a final LayerNorm channel with gain 0",
    "head.round.tie+": "§9 num/den exactly half-way, rounding up to q > 0",
    "head.round.tie-": "§9 num/den exactly half-way, rounding up to q < 0 (floor, not truncation)",
    "head.clamp127": "§9 q clamped at 127",
    "head.clamp-128": "§9 q clamped at -128",
    "argmax.tie": "§9 the largest logit reached by more than one class (lowest index wins)",
}


def applicable(model: IntModel) -> tuple[str, ...]:
    """The names of BRANCHES that the model's method and groups can reach, in table order."""
    m = model.features
    drop = set()
    if m.attention == "gsb":
        drop |= {"q.low.tie", "q.high.tie", "k.low.tie", "k.high.tie", "exp3.outside", "exp3.shift0"}
    else:
        drop |= {"q.thr.tie", "k.thr.tie", "exp_lut.zero"}
    if model.shifts["prob"]:
        drop.add("exp3.shift0")
    if model.groups < 2:
        drop |= {"v.mask.tie-max", "v.mask.tie-min", "a.mask.tie"}
    drop |= set(_ACT) if not m.act_unit else {k for k in BRANCHES if ".rq.tie" in k and not k.startswith("patch")}
    return tuple(k for k in BRANCHES if k not in drop)


def _half_way(t: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """(t exactly half-way at 2^-shift, the value rq rounds it to)."""
    return (t % (1 << shift)) == (1 << (shift - 1)), (t + (1 << (shift - 1))) >> shift


def branch_counts(model: IntModel, images: np.ndarray) -> dict[str, int]:
    """How often `images` (uint8 [B, C, I, I], or int8 = pixel - 128) reach each applicable branch."""
    x = images if images.dtype == np.int8 else (images.astype(np.int16) - 128).astype(np.int8)
    logits, tr = golden.forward(model, x, trace=True)
    a, sh, e = model.arrays, model.shifts, model.embed_dim
    act = model.features.act_unit
    c: dict[str, int] = dict.fromkeys(applicable(model), 0)

    def add(name: str, mask) -> None:
        if name in c:
            c[name] += int(np.count_nonzero(mask))

    i64 = lambda v: np.asarray(v, dtype=np.int64)   # noqa: E731
    # §2
    tie, val = _half_way(i64(tr["patch.acc"]) * a["patch.mult"] + a["patch.bias"], sh["patch"])
    add("patch.rq.tie+", tie & (val > 0))
    add("patch.rq.tie-", tie & (val < 0))
    x_in = tr["embed"]
    for i in range(model.depth):
        p, blk = f"blocks.{i}.", model.block(i)
        # §3
        for ln, xs in (("ln1", x_in), ("ln2", tr[p + "resid1"])):
            sign, thr = i64(blk[ln + ".sign"]), i64(blk[ln + ".thr"])
            d, sigma = ln_stats(xs, model.ln_eps, p + ln)
            x64 = i64(xs)
            q = e * (x64 * x64).sum(-1) - x64.sum(-1) ** 2
            v = q + model.ln_eps
            tokens = np.ones(sigma.shape + (1,), bool)
            add("ln.sign+1", tokens & (sign == 1))
            add("ln.sign-1", tokens & (sign == -1))
            add("ln.sign0.always1", tokens & (sign == 0) & (thr <= 0))
            add("ln.sign0.always0", tokens & (sign == 0) & (thr > 0))
            lhs, rhs = sign * d * (1 << sh["ln"]), thr * sigma[..., None]
            tie = (lhs == rhs) & (d != 0) & (sign != 0)
            add(ln + ".tie", tie)
            add("ln.tie.sqrt-rounds", tie & (thr > 0) & (v - sigma * sigma > sigma)[..., None])
            add("ln.variance0", q == 0)
            add("ln.V-square", sigma * sigma == v)
        # §4 / §13.2
        if act:
            _act_counts(add, model, blk, p, tr)
        qkv = i64(tr[p + ("qkv.z" if act else "qkv.acc")])
        if model.features.attention == "gsb":
            add("q.thr.tie", qkv[..., :e] == blk["q.thr"])
            add("k.thr.tie", qkv[..., e:2 * e] == blk["k.thr"])
        else:
            for qk, z in (("q", qkv[..., :e]), ("k", qkv[..., e:2 * e])):
                s4 = haar_s4(z)
                add(qk + ".low.tie", s4 == blk[qk + ".thr_low"])
                add(qk + ".high.tie", 4 * z - s4 == blk[qk + ".thr_high"])
        vq = tr[p + "v.q"]
        add("v.sign.tie", vq == 0)
        axes = (-1,) if model.mask_stat == "row" else (1, 2, 3)
        mx, mn = vq.max(axis=axes, keepdims=True), vq.min(axis=axes, keepdims=True)
        for r in model.ratios:
            add("v.mask.tie-max", 256 * vq == r * mx)
            add("v.mask.tie-min", 256 * vq == r * mn)
        # §5 / §13.2 softmax
        if model.features.attention == "gsb":
            s = i64(tr[p + "scores"])
            m = (s.max(-1, keepdims=True) - s) // 2
            ex = i64(blk["exp_lut"])[m]
            add("exp_lut.zero", ex == 0)
        else:
            s = tr[p + "hfsc"]
            m = s.max(-1, keepdims=True) - s
            ex = exp3_weights(m, blk["exp_lo"], blk["exp_mid"], blk["exp_hi"], sh["prob"])
            add("exp3.outside", (m >> 16) >= len(blk["exp_hi"]))
            add("exp3.shift0", np.full(m.shape, sh["prob"] == 0))
        add("softmax.max-twice", (s == s.max(-1, keepdims=True)).sum(-1) > 1)
        r_recip = (np.int64(1) << np.int64(sh["recip"])) // ex.sum(-1, keepdims=True)
        add("P.half-way", _half_way(ex * r_recip, sh["recip"] - sh["prob"])[0])
        av = tr[p + "probs"]
        add("a.thr1.tie", av == blk["a.thr1"])
        add("a.max-twice", (av == av.max(-1, keepdims=True)).sum(-1) > 1)
        amax = av.max(axis=axes, keepdims=True)
        for r in model.ratios:
            add("a.mask.tie", 256 * av == r * amax)
        add("proj.in_thr.tie", tr[p + "ctx"] == blk["proj.in_thr"])
        # §7
        if not act:
            for lin in ("proj", "fc2"):
                tie, val = _half_way(i64(tr[p + lin + ".acc"]) * blk[lin + ".mult"] + blk[lin + ".bias"], sh["resid"])
                add(lin + ".rq.tie+", tie & (val > 0))
                add(lin + ".rq.tie-", tie & (val < 0))
        # §8
        f1 = i64(tr[p + ("fc1.z" if act else "fc1.acc")])
        hi, lo = i64(blk["fc1.thr_hi"]), i64(blk["fc1.thr_lo"])
        lim = 2 ** 30 - 1 if act else e                      # |z| < 2^30; |acc| <= E
        up, low, always = hi <= lim, lo >= -lim, hi <= -lim
        add("fc1.hi.tie", f1 == hi)
        add("fc1.lo.tie", f1 == lo)
        add("fc1.lower-ray.on", ~up & low & (f1 <= lo))
        add("fc1.both.on-above", up & low & ~always & (f1 >= hi))
        add("fc1.both.on-below", up & low & ~always & (f1 <= lo))
        add("fc1.always", always & np.ones_like(f1, bool))
        add("fc1.never", ~up & ~low & np.ones_like(f1, bool))
        x_in = tr[p + "resid2"]
    # §9
    k = sh["head_ln"]
    for t, norm in enumerate(("norm", "head_dist_norm")):
        d, sigma = ln_stats(x_in[:, t], model.ln_eps, norm)
        gain = i64(a[norm + ".gain"])
        num = gain * d + i64(a[norm + ".offset"]) * sigma[:, None]
        den = (sigma << np.int64(k))[:, None]
        tie = (2 * num + den) % (2 * den) == 0
        qv = (2 * num + den) // (2 * den)
        add("head.gain0", (gain == 0) & np.ones_like(num, bool))
        add("head.round.tie+", tie & (qv > 0) & (qv <= 127))
        add("head.round.tie-", tie & (qv < 0) & (qv >= -128))
    add("head.clamp127", (tr["head.q"] == 127) & (_unclamped(model, x_in) > 127))
    add("head.clamp-128", (tr["head.q"] == -128) & (_unclamped(model, x_in) < -128))
    add("argmax.tie", (logits == logits.max(-1, keepdims=True)).sum(-1) > 1)
    return c


def _unclamped(model: IntModel, x_last: np.ndarray) -> np.ndarray:
    """§9's q before the clamp, tokens 0 and 1 of the last residual stream (int64 [B, 2, E])."""
    out = []
    for t, norm in enumerate(("norm", "head_dist_norm")):
        d, sigma = ln_stats(x_last[:, t], model.ln_eps, norm)
        num = model.arrays[norm + ".gain"].astype(np.int64) * d + model.arrays[norm + ".offset"] * sigma[:, None]
        den = (sigma << np.int64(model.shifts["head_ln"]))[:, None]
        out.append((2 * num + den) // (2 * den))
    return np.stack(out, axis=1)


def _act_counts(add, model: IntModel, blk: dict, p: str, tr: dict) -> None:
    """§13.1 for each linear: u half-way (both signs), u = 0, u*slope half-way."""
    for lin in ACT_LINEARS:
        acc = tr[p + lin + ".acc"].astype(np.int64)
        t = acc * blk[lin + ".mult"] + blk[lin + ".bias"][None, None, :] + blk[lin + ".tok_in"][None, :, None]
        tie, u = _half_way(t, model.shifts["resid"])
        add(lin + ".u.tie+", tie & (u > 0))
        add(lin + ".u.tie-", tie & (u < 0))
        add(lin + ".u=0", u == 0)
        add(lin + ".slope.tie", (u < 0) & _half_way(u * blk[lin + ".slope"], model.slope_shift)[0])


def coverage_table(counts: dict[str, int]) -> str:
    """One line per branch: count, name, meaning; unreached ones marked."""
    width = max(len(k) for k in counts)
    return "\n".join(f"{n:>8}  {k:<{width}}  {BRANCHES[k]}{'   <- NOT REACHED' if not n else ''}"
                     for k, n in counts.items())
