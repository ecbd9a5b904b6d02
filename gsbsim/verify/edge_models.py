"""Edge-case integer models and images: every branch and exact tie of docs/integer_model.md (numpy only).

A random model (gsbsim/format/random_model.py) is plausible and its images random, so exact ties
(a value equal to its threshold, a requantization exactly half-way, two equal maxima) practically never
happen, and a kernel with a rounding square root, ``>`` for ``>=`` or an argmax that keeps the last
maximum passes its C-simulation. An edge model starts as a coarse random model (F = 4, the LayerNorm
grid 2^-24, the reciprocal 2^-24) and then *plants* the ties: in execution order it runs the golden
engine on the edge images and sets one constant that acts only downstream of a traced value so that
the comparison is exactly equal at one token (a threshold = the value compared with it; a bias that
puts a requantization exactly half-way; an attention bias that makes two entries of a row equal...).
Every constant stays inside the spec's value ranges: the model passes ``model_file.validate`` like an
export. gsbsim/verify/edge_coverage.py names the branches and counts what the suite reaches.

The images: a constant mid-grey image (patch accumulators 0: one patch token has variance 0), the
two constant extremes, a checkerboard, and random images.
"""
from __future__ import annotations

import numpy as np

from gsbsim.engine import golden
from gsbsim.engine.golden_didb import exp3_weights, haar_s4
from gsbsim.engine.golden_ops import ln_stats
from gsbsim.format.methods import DEFAULT_METHOD, METHOD_NAMES, method_of
from gsbsim.format.conventions import round_half_up
from gsbsim.format.model_file import IntModel, exp_tables, validate
from gsbsim.format.random_model import random_model

__all__ = ["EDGE_DIMS", "EDGE_IMAGES", "edge_variants", "edge_model", "edge_images", "edge_suite", "EdgeModelError"]

EDGE_DIMS = dict(img_size=8, patch_size=2, in_chans=1, embed_dim=12, depth=2, num_heads=2, mlp_hidden=24,
                 num_classes=10)
EDGE_FRAC_BITS = 4           # a coarse residual grid: small sigmas, so LayerNorm ties have integer thresholds
EDGE_IMAGES = 8
LN_SHIFT = 24                # the finest LayerNorm grid the spec allows (sigma's powers of two divide 2^24)
RECIP_OVER_PROB = 8          # P = e*R >> 8: a probability exactly half-way is frequent
PLANT_IMAGE = 4              # the first random image: where single-location ties are planted
I32 = (-2 ** 31, 2 ** 31 - 1)


class EdgeModelError(ValueError):
    """A tie could not be planted (no location satisfies it): a bug of this generator, not of the input."""


def edge_variants() -> dict[str, dict]:
    """Name -> edge_model options of every edge model: each method of the table with the row statistic
    ("gsb/row"), the image statistic for the methods with mask planes ("gsb/image"), and prob = 0 for the
    three-level exp tables ("didb/prob0": its rq(x, prob) has shift 0)."""
    out = {f"{m}/row": dict(method=m, mask_stat="row") for m in METHOD_NAMES}
    out.update({f"{m}/image": dict(method=m, mask_stat="image") for m in METHOD_NAMES
                if method_of(m).default_groups > 1})
    out.update({f"{m}/prob0": dict(method=m, mask_stat="row", prob=0) for m in METHOD_NAMES
                if method_of(m).attention == "hfsc_diba"})
    return out


def edge_images(model: IntModel, seed: int = 0) -> np.ndarray:
    """uint8 images [EDGE_IMAGES, Cin, I, I]: constant 128 (int8 0), 255, 0, a checkerboard, then random."""
    size, c = model.img_size, model.in_chans
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (EDGE_IMAGES, c, size, size)).astype(np.uint8)
    img[0], img[1], img[2] = 128, 255, 0
    img[3] = (np.add.outer(np.arange(size), np.arange(size)) % 2 * 255).astype(np.uint8)
    return img


class _Planter:
    """The model under construction: arrays edited in place, traced again after each step."""

    def __init__(self, model: IntModel, images: np.ndarray, rng: np.random.Generator):
        self.header = model.header
        self.a = {k: np.array(v, copy=True) for k, v in model.arrays.items()}
        self.x = (images.astype(np.int16) - 128).astype(np.int8)
        self.rng = rng
        self.act = method_of(model.method).act_unit
        self.e, self.d = model.embed_dim, model.head_dim
        self.sh = model.shifts

    @property
    def model(self) -> IntModel:
        return IntModel(header=self.header, arrays=self.a, path="<edge>")

    def trace(self) -> dict[str, np.ndarray]:
        return golden.forward(self.model, self.x, trace=True)[1]

    def loc(self, shape: tuple[int, ...], where: np.ndarray | None = None) -> tuple[int, ...]:
        """A random index of `shape` (among the True entries of `where`; EdgeModelError if none)."""
        if where is None:
            where = np.ones(shape, bool)
        idx = np.argwhere(where)
        if not len(idx):
            raise EdgeModelError("edge_model: no location satisfies a planted tie")
        return tuple(int(i) for i in idx[self.rng.integers(len(idx))])

    def channels(self, n: int, count: int) -> list[int]:
        """`count` distinct random channels of n."""
        return [int(c) for c in self.rng.permutation(n)[:count]]

    # --------------------------------------------------------------------- requantization ties
    def requant_ties(self, p: str, lin: str, tr: dict, shift: int, act: bool) -> None:
        """Channels of a requantization exactly half-way at one token of a random image: one rounding up
        to +3, one to -3 (floor(x + 1/2), not away from zero); for an activation unit (act: the bias also
        carries tok_in[n]) a third with u = 0 exactly."""
        acc = tr[p + lin + ".acc"].astype(np.int64)
        mult = np.asarray(self.a[p + lin + ".mult"], np.int64)
        bias = self.a[p + lin + ".bias"]
        targets = (3, -3, None) if act else (3, -3)
        images = np.broadcast_to((np.arange(acc.shape[0]) >= PLANT_IMAGE).reshape((-1,) + (1,) * (acc.ndim - 2)),
                                 acc.shape[:-1])
        for ch, target in zip(self.channels(acc.shape[-1], len(targets)), targets):
            at = self.loc(acc.shape[:-1], images)
            t0 = int(acc[at + (ch,)]) * int(mult[ch] if mult.ndim else mult)
            if act:
                t0 += int(self.a[p + lin + ".tok_in"][at[-1]])
            bias[ch] = -t0 if target is None else target * 2 ** shift - 2 ** (shift - 1) - t0

    # --------------------------------------------------------------------- thresholds
    def threshold_ties(self, name: str, values: np.ndarray, count: int = 3) -> None:
        """thr[c] = the value compared with it at one token, for `count` channels (values [..., C])."""
        flat = values.reshape(-1, values.shape[-1])
        for c in self.channels(flat.shape[-1], count):
            self.a[name][c] = flat[self.rng.integers(len(flat)), c]

    def ln(self, p: str, ln: str, x: np.ndarray) -> None:
        """Gain signs +1, -1, 0 (thr 0: always 1; thr 1: always 0), and two channels at an exact tie
        sign*D*2^ln = thr*sigma, one where a rounding square root would give a different bit."""
        sign, thr = self.a[p + ln + ".sign"], self.a[p + ln + ".thr"]
        sign[:4] = (0, 0, 1, -1)
        thr[:2] = (0, 1)
        dvec, sigma = ln_stats(x, int(self.header["ln_eps"]), p + ln)
        x64 = x.astype(np.int64)
        v = self.e * (x64 * x64).sum(-1) - x64.sum(-1) ** 2 + int(self.header["ln_eps"])
        lhs = sign.astype(np.int64) * dvec * 2 ** self.sh["ln"]
        sig = sigma[..., None]
        t = lhs // sig
        ok = (lhs % sig == 0) & (lhs != 0) & (t >= I32[0]) & (t <= I32[1]) & (np.arange(self.e) >= 4)
        rounds = ok & (lhs > 0) & ((v - sigma * sigma) > sigma)[..., None]
        used = []
        for want in (rounds, ok):
            want = want & ~np.isin(np.arange(self.e), used)
            if want.any():
                at = self.loc(want.shape, want)
                thr[at[-1]] = t[at]
                used.append(at[-1])
        if not used:
            raise EdgeModelError(f"edge_model: no exact tie possible at {p}{ln}")

    def fc1(self, p: str, val: np.ndarray) -> None:
        """fc1's two-sided thresholds: an upper ray and a lower ray at an exact tie, both rays, always, never."""
        hi, lo = self.a[p + "fc1.thr_hi"], self.a[p + "fc1.thr_lo"]
        never = 2 ** 30 if self.act else self.e + 1
        always = -2 ** 30 if self.act else -self.e
        flat = val.reshape(-1, val.shape[-1]).astype(np.int64)
        c_up, c_low, c_both, c_on, c_off = self.channels(flat.shape[-1], 5)
        hi[c_up], lo[c_up] = flat[self.rng.integers(len(flat)), c_up], -never
        hi[c_low], lo[c_low] = never, flat[self.rng.integers(len(flat)), c_low]
        col = np.unique(flat[:, c_both])
        if len(col) < 3:
            raise EdgeModelError(f"edge_model: {p}fc1 channel {c_both} takes fewer than 3 values")
        hi[c_both], lo[c_both] = col[-2], col[0]
        hi[c_on], lo[c_on] = always, -never
        hi[c_off], lo[c_off] = never, -never

    def probability_tie(self, p: str, tr: dict) -> None:
        """One exp table entry lowered until some e*R is exactly half-way between two probabilities (§5)."""
        prob, recip = self.sh["prob"], self.sh["recip"]
        if "scores" in {k[len(p):] for k in tr if k.startswith(p)}:
            sc = tr[p + "scores"].astype(np.int64)
            idx = (sc.max(-1, keepdims=True) - sc) // 2
            name, weights = p + "exp_lut", lambda t: t[idx]
        else:
            s = tr[p + "hfsc"]
            gap = s.max(-1, keepdims=True) - s
            idx = gap & 255
            lo, mid, hi = (self.a[p + t] for t in ("exp_lo", "exp_mid", "exp_hi"))
            name, weights = p + "exp_lo", lambda t: exp3_weights(gap, t, mid, hi, prob)
        table = self.a[name]
        used = np.unique(idx[idx > 0])
        for entry in used[np.argsort(-np.bincount(idx.ravel())[used], kind="stable")][:4]:
            for value in range(int(table[entry]), max(int(table[entry]) - 512, -1), -1):
                t = table.copy()
                t[entry] = value
                e = weights(t)
                r = (np.int64(1) << np.int64(recip)) // e.sum(-1, keepdims=True)
                s_bits = recip - prob
                if np.any((e * r) % (1 << s_bits) == 1 << (s_bits - 1)):
                    table[entry] = value
                    return
        raise EdgeModelError(f"edge_model: no exact probability tie possible at {p}")

    # --------------------------------------------------------------------- GSB planes
    def mask_ties(self, target_arr: np.ndarray, vals: np.ndarray, lanes: int, image_stat: bool,
                  cols: np.ndarray) -> None:
        """Ties 256*x = r_k*max and 256*x = r_k*min of a GSB mask (value or attention) in image PLANT_IMAGE.

        vals [H, R, lanes] the image's values (R rows of `lanes`); the row of the ties is row 0 of head 0
        (row statistic) or head 0 (image statistic); the edited constant is target_arr[cols[h, r, j]]
        (target_arr a view of the model's array).
        A channel j* gets 256*K (the maximum), another -256*K (the minimum), K above every |value| of the
        statistic's range, then one channel per ratio and side gets r_k*K or -r_k*K.
        """
        ratios = [int(r) for r in self.header["ratios"]]
        rows = vals[0] if image_stat else vals[0, :1]           # [R', lanes] in head 0
        whole = vals if image_stat else vals[0, :1]
        spread = int((rows.max(0) - rows.min(0)).max())
        k = (max(int(np.abs(whole).max()), spread) // 256) + 2
        order = list(self.rng.permutation(lanes))
        plan = [(order.pop(), 256 * k, "max"), (order.pop(), -256 * k, "min")]
        for r in ratios:
            for side in ("max", "min"):
                if order:
                    plan.append((order.pop(), r * k if side == "max" else -r * k, side))
        for j, target, side in plan:
            ri = int(np.argmax(rows[:, j])) if side == "max" else int(np.argmin(rows[:, j]))
            target_arr[cols[0, ri, j]] += target - int(rows[ri, j])


def _plant_block(pl: _Planter, i: int, x_in: np.ndarray) -> None:
    p, a, e, d = f"blocks.{i}.", pl.a, pl.e, pl.d
    h = int(pl.header["num_heads"])
    m = method_of(pl.header["method"])
    pl.ln(p, "ln1", x_in)
    tr = pl.trace()
    s_act = pl.sh["resid"]
    if pl.act:
        pl.requant_ties(p, "qkv", tr, s_act, True)
        tr = pl.trace()
    qkv = tr[p + ("qkv.z" if pl.act else "qkv.acc")].astype(np.int64)
    if m.attention == "gsb":
        pl.threshold_ties(p + "q.thr", qkv[..., :e])
        pl.threshold_ties(p + "k.thr", qkv[..., e:2 * e])
    else:
        for qk, z in (("q", qkv[..., :e]), ("k", qkv[..., e:2 * e])):
            s4 = haar_s4(z)
            pl.threshold_ties(p + qk + ".thr_low", s4)
            pl.threshold_ties(p + qk + ".thr_high", 4 * z - s4)
    tr = pl.trace()
    vq = tr[p + "v.q"]                                          # [B, H, N, d]
    image_stat = pl.header["mask_stat"] == "image"
    if pl.header["ratios"]:
        cols = np.broadcast_to((np.arange(h)[:, None] * d + np.arange(d)[None, :])[:, None, :], (h, vq.shape[2], d))
        row = vq[PLANT_IMAGE] if image_stat else vq[PLANT_IMAGE][:, [5]]
        pl.mask_ties(a[p + "v.offset"], row, d, image_stat, cols if image_stat else cols[:, :1])
    # Vq = 0 exactly in head h-1 (the mask ties use head 0)
    for j in pl.channels(d, 2):
        b, n = pl.loc(vq.shape[:1] + vq.shape[2:3])
        a[p + "v.offset"][(h - 1) * d + j] -= vq[b, h - 1, n, j]
    tr = pl.trace()
    if m.attention == "gsb":   # the exp table is 0 from the largest gap reached on
        sc = tr[p + "scores"].astype(np.int64)
        gap = int((sc.max(-1, keepdims=True) - sc).max()) // 2
        if gap >= 1:
            a[p + "exp_lut"][gap:] = 0
    else:                      # one head's scores so steep that the exp tables' range is left
        a[p + "score.w"][0, h - 1] = 2 ** 22
    tr = pl.trace()
    pl.probability_tie(p, tr)
    tr = pl.trace()
    probs = tr[p + "probs"]                                     # [B, H, N, N]
    bias = a[p + "att_bias"]
    # a row of image PLANT_IMAGE (head h-1, query 3) whose maximum is reached twice
    rowv = probs[PLANT_IMAGE, h - 1, 3]
    jmax, j2 = int(np.argmax(rowv)), int(np.argmin(rowv))
    bias[h - 1, 3, j2] += int(rowv[jmax] - rowv[j2])
    if pl.header["ratios"]:
        tr = pl.trace()
        av = tr[p + "probs"][PLANT_IMAGE]                       # [H, N, N]
        n = av.shape[1]
        cols = np.broadcast_to(np.arange(n * n).reshape(n, n)[None], (h, n, n))
        view = av if image_stat else av[:, [6]]           # head 0's query 6, or head 0 (image statistic)
        pl.mask_ties(bias[0].reshape(-1), view, n, image_stat, cols if image_stat else cols[:, 6:7])
    tr = pl.trace()
    av = tr[p + "probs"]
    med = np.sort(av.ravel())[av.size // 2]
    a[p + "a.thr1"] = np.int64(med)
    tr = pl.trace()
    pl.threshold_ties(p + "proj.in_thr", tr[p + "ctx"])
    tr = pl.trace()
    pl.requant_ties(p, "proj", tr, s_act, pl.act)
    tr = pl.trace()
    pl.ln(p, "ln2", tr[p + "resid1"])
    tr = pl.trace()
    if pl.act:
        pl.requant_ties(p, "fc1", tr, s_act, True)
        tr = pl.trace()
    pl.fc1(p, tr[p + ("fc1.z" if pl.act else "fc1.acc")])
    tr = pl.trace()
    pl.requant_ties(p, "fc2", tr, s_act, pl.act)


def edge_model(method: str = DEFAULT_METHOD, mask_stat: str = "row", seed: int = 0,
               prob: int | None = None) -> tuple[IntModel, np.ndarray]:
    """(model, uint8 images [EDGE_IMAGES, Cin, I, I]): a valid model of `method` whose constants put the
    edge images on every branch and exact tie of the spec (gsbsim/verify/edge_coverage.py lists them).
    `prob`: shifts.prob (default 16), with the exp tables the exporter writes for it."""
    rng = np.random.default_rng(seed)
    base = random_model(rng, **EDGE_DIMS, frac_bits=EDGE_FRAC_BITS, method=method, mask_stat=mask_stat)
    shifts = dict(base.header["shifts"], ln=LN_SHIFT)
    arrays = dict(base.arrays)
    if prob is not None:
        if not 0 <= prob <= 30:
            raise ValueError(f"edge_model: prob must be in [0, 30], got {prob}")
        for i in range(base.depth):
            p = f"blocks.{i}."
            if p + "exp_lut" in arrays:     # the same exponentials on the 2^-prob grid (entry 0 = 2^prob)
                arrays[p + "exp_lut"] = round_half_up(arrays[p + "exp_lut"] * 2.0 ** (prob - shifts["prob"]))
            else:
                arrays[p + "exp_lo"], arrays[p + "exp_mid"], arrays[p + "exp_hi"] = exp_tables(prob)
        shifts["prob"] = prob
    shifts["recip"] = shifts["prob"] + RECIP_OVER_PROB
    header = dict(base.header, preset="edge", source=f"edge (seed {seed})", ln_eps=1, shifts=shifts)
    base = IntModel(header=header, arrays=arrays, path="<edge>")
    images = edge_images(base, seed)
    pl = _Planter(base, images, rng)
    a = pl.a
    for i in range(base.depth):       # LayerNorm thresholds to the finer grid (they are re-planted below)
        for ln in ("ln1", "ln2"):
            a[f"blocks.{i}.{ln}.thr"] = a[f"blocks.{i}.{ln}.thr"] << np.int64(LN_SHIFT - base.shifts["ln"])
    # §2: patch requantization exactly half-way (both signs); a variance-0 token in the mid-grey image
    # (its accumulators are 0) and in every image (token 1)
    tr = pl.trace()
    s = pl.sh["patch"]
    pl.requant_ties("", "patch", tr, s, False)
    rq0 = (a["patch.bias"] + 2 ** (s - 1)) >> s
    a["pos"][2] = (5 - rq0).astype(np.int32)
    a["tokens"][1] = (-7 - a["pos"][1]).astype(np.int32)
    tr = pl.trace()
    x = tr["embed"]
    for i in range(base.depth):
        _plant_block(pl, i, x)
        x = pl.trace()[f"blocks.{i}.resid2"]
    # §9: gain 0 with offsets exactly half-way (both signs) and far outside int8 (both clamps); the
    # largest gains of either sign
    k = pl.sh["head_ln"]
    for norm in ("norm", "head_dist_norm"):
        c = pl.channels(pl.e, 6)
        a[norm + ".gain"][c] = (0, 0, 0, 0, 2 ** 22, -2 ** 22)
        a[norm + ".offset"][c[:4]] = (7 * 2 ** (k - 1), -7 * 2 ** (k - 1), 200 * 2 ** k, -200 * 2 ** k)
    logits = golden.forward(pl.model, pl.x)[0][PLANT_IMAGE + 1]
    c1 = int(np.argmax(logits))
    c2 = 0 if c1 else 1
    a["logit.bias"][c2] += logits[c1] - logits[c2]         # an argmax tie at the maximum
    validate(pl.header, pl.a, f"<edge_model {method}>")
    return pl.model, images


def edge_suite(seed: int = 0) -> dict[str, tuple[IntModel, np.ndarray]]:
    """Every edge variant by name ("gsb/row", "gsb/image", ...): (model, uint8 images)."""
    return {name: edge_model(seed=seed, **opts) for name, opts in edge_variants().items()}
