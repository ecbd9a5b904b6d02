"""Operation, memory and buffer counts of an integer model, from its header alone.

Why from the header: the counts depend only on shapes (embed dim, depth, heads, tokens,
groups, ...), so they can be computed for a model file, for a preset, or for the
*published* DeiT shapes the binary-ViT literature reports (``header_for_shape``), with one
code path. docs/costs.md states every counting rule; the short version:

* BOPs: multiply-accumulates whose operands are both 1-bit, one per bit-plane pair
  (GSB's G x G plane products of A.V count G*G per MAC);
* FLOPs: multiply-accumulates at 8 bits or more (patch embedding, the heads);
* OPs = BOPs / 64 + FLOPs (the Bi-Real Net / ReActNet convention);
* elementwise work (LayerNorm, softmax, thresholds, requantization, residual adds, GSB
  masks and scale-combine) is counted on its own, one op per element produced by each
  stage, and is *not* part of OPs;
* memory: parameter bits by precision (binary 1 bit, 8-bit, fixed-point constants at
  their stored widths), model bytes, the float32 bytes of the same parameters, and the
  peak live activation buffer of a layer-by-layer dataflow.

``layers(header)`` is the single list of matrix layers (names equal the trace prefixes)
that folding.py and resources.py use too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from gsbsim.format.conventions import PROB_BITS
from gsbsim.format.methods import DEFAULT_METHOD, METHOD_NAMES, block_arrays, method_of
from gsbsim.format.model_file import EXP_LO_SIZE, exp_hi_length

__all__ = [
    "CostModelError", "Layer", "Param", "Tensor", "CostReport", "Shape",
    "shape_of", "header_for_shape", "layers", "parameters", "elementwise",
    "activation_peak", "count", "acc_bits_signed",
]

BOPS_PER_OP = 64  # a 64-bit CPU word does 64 binary MACs per instruction (Bi-Real/ReActNet)
RESIDUAL_BITS = 32  # the residual stream X is int32 (docs/integer_model.md §2)
PRE_MASK_BITS = 32  # width of a value/probability held until an image-wide max is known

_DTYPE_BITS = {"int8": 8, "uint8": 8, "int32": 32, "int64": 64, "uint64": 64}


class CostModelError(ValueError):
    """A header (or shape) the cost model cannot count; the message names the key."""


# ============================================================================ the shape
@dataclass(frozen=True)
class Shape:
    """The architecture numbers every count needs (validated, derived values included)."""
    img_size: int
    patch_size: int
    in_chans: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_hidden: int
    num_tokens: int
    num_classes: int
    groups: int
    class_heads: int = 2   # our distilled model: head (token 0) + head_dist (token 1)
    mask_stat: str = "row"
    method: str = DEFAULT_METHOD    # a row of gsbsim/format/methods.py: its features set the §13 costs
    prob: int = PROB_BITS       # shifts.prob: the length of didb's exp_hi table

    @property
    def act(self) -> bool:
        """True for the methods with an activation unit after every binary linear."""
        return method_of(self.method).act_unit

    @property
    def hfsc(self) -> bool:
        """True for the hfsc_diba attention: two band score maps per head (§13.2)."""
        return method_of(self.method).attention == "hfsc_diba"

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    @property
    def extra_tokens(self) -> int:
        return self.num_tokens - self.num_patches

    @property
    def patch_k(self) -> int:
        return self.in_chans * self.patch_size ** 2


_REQUIRED = ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads",
             "mlp_hidden", "num_tokens", "num_classes", "groups")


def _int_key(header: Mapping[str, Any], key: str, minimum: int = 1) -> int:
    if key not in header:
        raise CostModelError(f"header is missing key {key!r}")
    v = header[key]
    if isinstance(v, bool) or not hasattr(v, "__index__"):  # ints and numpy ints, not floats
        raise CostModelError(f"header key {key!r} must be an integer, got {v!r}")
    v = int(v)
    if v < minimum:
        raise CostModelError(f"header key {key!r} must be >= {minimum}, got {v}")
    return v


def shape_of(header: Mapping[str, Any]) -> Shape:
    """Validate a header dict (model file header or ``header_for_shape``) -> Shape."""
    if not isinstance(header, Mapping):
        raise CostModelError(f"header must be a dict, got {type(header).__name__}")
    vals = {k: _int_key(header, k) for k in _REQUIRED}
    class_heads = _int_key(header, "class_heads") if "class_heads" in header else 2
    mask_stat = header.get("mask_stat", "row")
    if mask_stat not in ("row", "image"):
        raise CostModelError(f"header key 'mask_stat' must be 'row' or 'image', got {mask_stat!r}")
    if "method" not in header:   # never a silent default: a header without its method is broken
        raise CostModelError(f"header has no 'method' (one of {', '.join(METHOD_NAMES)})")
    method = header["method"]
    if method not in METHOD_NAMES:
        raise CostModelError(f"header key 'method' must be one of {', '.join(METHOD_NAMES)}, got {method!r}")
    fixed = method_of(method).fixed_groups
    if fixed is not None and vals["groups"] != fixed:
        raise CostModelError(f"header key 'groups' must be {fixed} for method {method}, got {vals['groups']}")
    shifts = header.get("shifts") or {}
    prob = _int_key(shifts, "prob", 0) if "prob" in shifts else PROB_BITS   # shape only: the exporter's grid
    s = Shape(**vals, class_heads=class_heads, mask_stat=mask_stat, method=method, prob=prob)
    if s.embed_dim % s.num_heads:
        raise CostModelError(f"embed_dim {s.embed_dim} is not a multiple of num_heads {s.num_heads}")
    if "head_dim" in header and _int_key(header, "head_dim") != s.head_dim:
        raise CostModelError(f"header head_dim {header['head_dim']} != embed_dim/num_heads = {s.head_dim}")
    if s.img_size % s.patch_size:
        raise CostModelError(f"img_size {s.img_size} is not a multiple of patch_size {s.patch_size}")
    if not s.class_heads <= s.extra_tokens:
        raise CostModelError(
            f"num_tokens {s.num_tokens} leaves {s.extra_tokens} non-patch tokens for "
            f"{s.num_patches} patches; need at least class_heads = {s.class_heads}")
    return s


def header_for_shape(img_size: int, patch_size: int, in_chans: int, embed_dim: int, depth: int,
                     num_heads: int, mlp_hidden: int, num_classes: int, groups: int,
                     num_tokens: int | None = None, class_heads: int | None = None,
                     mask_stat: str = "row", method: str = DEFAULT_METHOD) -> dict:
    """A header dict for a shape alone (no model file), e.g. the published DeiT shapes.

    ``num_tokens`` defaults to patches + 2 (our distilled model: cls + distillation token);
    the literature counts N = patches + 1 and one head: pass ``num_tokens`` and
    ``class_heads=1``. ``class_heads`` defaults to 2 when ``num_tokens`` leaves two
    non-patch tokens, else 1.
    """
    n_patches = (int(img_size) // int(patch_size)) ** 2
    if num_tokens is None:
        num_tokens = n_patches + 2
    if class_heads is None:
        class_heads = 2 if int(num_tokens) - n_patches >= 2 else 1
    header = dict(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                  depth=depth, num_heads=num_heads, mlp_hidden=mlp_hidden, num_tokens=num_tokens,
                  num_classes=num_classes, groups=groups, class_heads=class_heads,
                  mask_stat=mask_stat, method=method)
    s = shape_of(header)  # validate now, so a bad shape fails here, not later
    header["head_dim"] = s.head_dim
    return header


def acc_bits_signed(max_abs: int) -> int:
    """Signed accumulator bits for the range [-max_abs, max_abs]: ceil(log2(max_abs+1)) + 1."""
    return math.ceil(math.log2(max_abs + 1)) + 1


# ============================================================================ matrix layers
@dataclass(frozen=True)
class Layer:
    """One matrix layer in FINN MVAU terms.

    Per input vector the layer computes MH outputs, each a dot product of length MW;
    it sees ``vectors`` input vectors ``repeats`` times (heads x plane pairs for attention).
    """
    name: str          # trace prefix: patch, blocks.{i}.qkv, ..., head
    op: str            # qkv, qk, av, proj, fc1, fc2, patch, head
    precision: str     # "binary" (counted as BOPs) or "8-bit" (counted as FLOPs)
    operands: str      # "±1×±1", "{0,1}×±1", "int8×int8"
    mh: int
    mw: int
    vectors: int
    repeats: int = 1
    plane_pairs: int = 1
    weight_bits_each: int = 1  # W of the FINN model (bits of the stationary operand)
    input_bits: int = 1        # A of the FINN model
    input_signed: bool = True
    acc_bits: int = 0
    weight_params: int = 0     # stored weights (0 for activation x activation matmuls)
    thresholds: int = 0        # threshold comparisons per output channel that follow it
    output: str = ""           # trace tensor name when it is not the op's usual one (didb's qk: hfsc)
    units: int = 1             # processes of the generated dataflow sharing the work equally (didb's two qk bands)

    @property
    def trace_output(self) -> str:
        """The golden trace tensor holding this layer's accumulators (qk -> scores, av -> ctx)."""
        prefix = self.name[: -len(self.op)]
        return prefix + (self.output or _TRACE_OUTPUT[self.op])

    @property
    def macs(self) -> int:
        """MACs including every plane pair (each pair is a separate binary MAC)."""
        return self.vectors * self.repeats * self.mh * self.mw

    @property
    def bops(self) -> int:
        return self.macs if self.precision == "binary" else 0

    @property
    def flops(self) -> int:
        return self.macs if self.precision != "binary" else 0

    @property
    def ops(self) -> float:
        return self.bops / BOPS_PER_OP + self.flops


_TRACE_OUTPUT = {"patch": "patch.acc", "qkv": "qkv.acc", "qk": "scores", "av": "ctx",
                 "proj": "proj.acc", "fc1": "fc1.acc", "fc2": "fc2.acc", "head": "head.acc"}


def layers(header: Mapping[str, Any]) -> list[Layer]:
    """The matrix layers of one image's forward pass, in execution order."""
    s = shape_of(header)
    E, N, d, Hd, H, G = s.embed_dim, s.num_tokens, s.head_dim, s.mlp_hidden, s.num_heads, s.groups
    acc_e, acc_hd = acc_bits_signed(E), acc_bits_signed(Hd)
    bands = 2 if s.hfsc else 1
    out = [Layer("patch", "patch", "8-bit", "int8×int8", mh=E, mw=s.patch_k, vectors=s.num_patches,
                 weight_bits_each=8, input_bits=8,
                 acc_bits=acc_bits_signed(128 * 127 * s.patch_k), weight_params=E * s.patch_k)]
    for i in range(s.depth):
        p = f"blocks.{i}."
        out += [
            Layer(p + "qkv", "qkv", "binary", "±1×±1", mh=3 * E, mw=E, vectors=N, acc_bits=acc_e,
                  weight_params=3 * E * E, thresholds=1),
            # didb: two band products per head (HFSC, §13.2), summed into one score map
            Layer(p + "qk", "qk", "binary", "±1×±1", mh=N, mw=d, vectors=N, repeats=H * bands,
                  plane_pairs=bands, acc_bits=acc_bits_signed(d), output="hfsc" if bands == 2 else "",
                  units=bands),
            Layer(p + "av", "av", "binary", "{0,1}×±1", mh=d, mw=N, vectors=N, repeats=H * G * G,
                  plane_pairs=G * G, input_signed=False, acc_bits=acc_bits_signed(N)),
            Layer(p + "proj", "proj", "binary", "±1×±1", mh=E, mw=E, vectors=N, acc_bits=acc_e,
                  weight_params=E * E),
            Layer(p + "fc1", "fc1", "binary", "±1×±1", mh=Hd, mw=E, vectors=N, acc_bits=acc_e,
                  weight_params=Hd * E, thresholds=2),
            Layer(p + "fc2", "fc2", "binary", "{0,1}×±1", mh=E, mw=Hd, vectors=N, input_signed=False,
                  acc_bits=acc_hd, weight_params=E * Hd),
        ]
    out.append(Layer("head", "head", "8-bit", "int8×int8", mh=s.num_classes, mw=E,
                     vectors=s.class_heads, weight_bits_each=8, input_bits=8,
                     acc_bits=acc_bits_signed(128 * 128 * E),
                     weight_params=s.class_heads * s.num_classes * E))
    return out


# ============================================================================ parameters
@dataclass(frozen=True)
class Param:
    """One stored parameter array: name, shape, stored dtype and precision class."""
    name: str
    shape: tuple[int, ...]
    dtype: str       # dtype as stored in the model file
    precision: str   # "binary", "8-bit" or "fixed"

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def bits(self) -> int:
        """Bits at the parameter's precision: 1 per binary weight (no word padding),
        8 per 8-bit weight, the stored width for fixed-point constants."""
        if self.precision == "binary":
            return self.elements
        return self.elements * _DTYPE_BITS[self.dtype]


def parameters(header: Mapping[str, Any]) -> list[Param]:
    """The parameter arrays of docs/integer_model.md §1, from the shape.

    Binary weights are listed with their logical shape (rows, K), not the packed
    (rows, ceil(K/64)) uint64 words, because they count 1 bit each.
    """
    s = shape_of(header)
    E, N, d, Hd, H, G, C = (s.embed_dim, s.num_tokens, s.head_dim, s.mlp_hidden, s.num_heads,
                            s.groups, s.num_classes)
    P = Param
    out = [P("patch.weight", (E, s.patch_k), "int8", "8-bit"),
           P("patch.mult", (E,), "int64", "fixed"), P("patch.bias", (E,), "int64", "fixed"),
           P("pos", (N, E), "int32", "fixed"), P("tokens", (s.extra_tokens, E), "int32", "fixed")]
    sizes = {"E": E, "E3": 3 * E, "Hd": Hd, "H": H, "N": N, "d1": d + 1, "G": G, "exp_lo": EXP_LO_SIZE,
             "exp_hi": exp_hi_length(s.prob)}
    block = [(name, dtype, tuple(sizes[r] if isinstance(r, str) and not r.startswith("words:") else
                                 sizes[r[6:]] if isinstance(r, str) else r for r in rule))
             for name, dtype, rule in block_arrays(s.method)]
    for i in range(s.depth):
        out += [P(f"blocks.{i}.{name}", shape, dtype, "binary" if dtype == "uint64" else "fixed")
                for name, dtype, shape in block]
    heads = [("norm", "head"), ("head_dist_norm", "head_dist")][:s.class_heads]
    for norm, head in heads:
        out += [P(norm + ".gain", (E,), "int64", "fixed"), P(norm + ".offset", (E,), "int64", "fixed")]
    for _, head in heads:
        out += [P(head + ".weight", (C, E), "int8", "8-bit"), P(head + ".mult", (), "int64", "fixed")]
    out.append(P("logit.bias", (C,), "int64", "fixed"))
    return out


# ============================================================================ elementwise work
def elementwise(header: Mapping[str, Any]) -> dict[str, int]:
    """Elementwise operations per image by kind: one per element produced by each stage.

    The GSB scale-combine (ctx = sum over plane pairs of scale x product) counts one per
    plane pair and output element, since each pair is a separate multiply-add.
    """
    s = shape_of(header)
    E, N, Hd, H, G, L = s.embed_dim, s.num_tokens, s.mlp_hidden, s.num_heads, s.groups, s.depth
    NE, HNN = N * E, H * N * N
    out = {
        # LN -> sign folded compares (ln1, ln2) per block; final LN of the head tokens
        "layernorm": L * 2 * NE + s.class_heads * E,
        # exp lookup + row reciprocal multiply + attention bias, one per score
        "softmax": L * HNN,
        # q, k, value-sign, base attention plane, proj input, fc1 (one per output element)
        "thresholds": L * (2 * NE + NE + HNN + NE + N * Hd),
        # GSB mask planes beyond the first group: value masks and attention masks
        "gsb_masks": L * (G - 1) * (NE + HNN),
        "gsb_scale_combine": L * G * G * NE,
        # patch requant, proj and fc2 requant, logit combine of the heads
        "requant": s.num_patches * E + L * 2 * NE + s.class_heads * s.num_classes,
        # position/token add, two residual adds per block
        "residual_add": NE + L * 2 * NE,
    }
    if s.act:   # spec §13.4: 4 ops per activation-unit element (multiply-add, compare, slope multiply, add)
        out["act_units"] = L * 4 * N * (3 * E + E + Hd + E)
    if s.hfsc:
        out["thresholds"] += L * 2 * NE          # the Q and K bits of both bands
        out["haar"] = L * 4 * 2 * NE             # 4 adds per Q and per K element
        out["hfsc_combine"] = L * HNN            # S = wL*scL + wH*scH, one per score
        out["diba"] = L * 12 * NE                # 10 adds (Laplacian, correction) + 2 multiply-adds
    return out


# ============================================================================ activation buffer
@dataclass(frozen=True)
class Tensor:
    """An activation tensor live from its producer layer to its last consumer (indices)."""
    name: str
    bits: int
    first: int
    last: int


def _activation_tensors(s: Shape, names: list[str]) -> list[Tensor]:
    idx = {n: i for i, n in enumerate(names)}
    E, N, d, Hd, H, G = s.embed_dim, s.num_tokens, s.head_dim, s.mlp_hidden, s.num_heads, s.groups
    NE, HNN = N * E, H * N * N
    ts = [Tensor("input", s.in_chans * s.img_size ** 2 * 8, 0, 0),
          Tensor("residual", NE * RESIDUAL_BITS, 0, len(names) - 1)]
    for i in range(s.depth):
        b = f"blocks.{i}."
        qkv, qk, av = idx[b + "qkv"], idx[b + "qk"], idx[b + "av"]
        proj, fc1, fc2 = idx[b + "proj"], idx[b + "fc1"], idx[b + "fc2"]
        bands = 2 if s.hfsc else 1
        ts += [Tensor(b + "ln1.bits", NE, qkv, qkv),
               Tensor(b + "q.bits", bands * NE, qkv, qk), Tensor(b + "k.bits", bands * NE, qkv, qk),
               Tensor(b + "v.planes", G * NE, qkv, av),
               Tensor(b + "a.planes", G * HNN, qk, av),
               Tensor(b + "ctx.bits", NE, av, proj),
               Tensor(b + "ln2.bits", NE, fc1, fc1),
               Tensor(b + "fc1.bits", N * Hd, fc1, fc2)]
        if s.mask_stat == "image":  # an image-wide max: hold every pre-mask value until it is known
            ts += [Tensor(b + "v.pre_mask", NE * PRE_MASK_BITS, qkv, qkv),
                   Tensor(b + "a.pre_mask", HNN * PRE_MASK_BITS, qk, qk)]
    head = idx["head"]
    ts += [Tensor("head.input", s.class_heads * E * 8, head, head),
           Tensor("logits", s.num_classes * 64, head, head)]
    return ts


def activation_peak(header: Mapping[str, Any]) -> tuple[int, str, list[str]]:
    """Peak live activation bits of a layer-by-layer dataflow: (bits, layer, live tensors).

    Rule: a tensor is live from the layer that produces it through the last layer that
    reads it; the int32 residual stream is live from the patch embedding to the head
    (proj and fc2 add into it in place). The peak is the largest sum over one layer.
    """
    s = shape_of(header)
    names = [l.name for l in layers(header)]
    ts = _activation_tensors(s, names)
    best = (-1, "", [])
    for k, n in enumerate(names):
        live = [t for t in ts if t.first <= k <= t.last]
        bits = sum(t.bits for t in live)
        if bits > best[0]:
            best = (bits, n, [t.name for t in live])
    return best


# ============================================================================ the report
@dataclass
class CostReport:
    """Per-image costs of one model shape; ``to_dict`` gives the JSON form."""
    shape: Shape
    layers: list[Layer]
    params: list[Param]
    elementwise: dict[str, int]
    peak_bits: int
    peak_layer: str
    peak_tensors: list[str] = field(default_factory=list)

    @property
    def bops(self) -> int:
        return sum(l.bops for l in self.layers)

    @property
    def flops(self) -> int:
        return sum(l.flops for l in self.layers)

    @property
    def ops(self) -> float:
        return self.bops / BOPS_PER_OP + self.flops

    @property
    def elementwise_total(self) -> int:
        return sum(self.elementwise.values())

    @property
    def weight_bits(self) -> dict[str, int]:
        out = {"binary": 0, "8-bit": 0, "fixed": 0}
        for p in self.params:
            out[p.precision] += p.bits
        return out

    @property
    def model_bytes(self) -> int:
        return math.ceil(sum(self.weight_bits.values()) / 8)

    @property
    def float32_bytes(self) -> int:
        return 4 * sum(p.elements for p in self.params)

    def by_op(self) -> dict[str, dict[str, int]]:
        """BOPs and FLOPs summed over blocks per layer kind (qkv, qk, av, ...)."""
        out: dict[str, dict[str, int]] = {}
        for l in self.layers:
            row = out.setdefault(l.op, {"bops": 0, "flops": 0})
            row["bops"] += l.bops
            row["flops"] += l.flops
        return out

    def to_dict(self) -> dict:
        return {
            "bops": self.bops, "flops": self.flops, "ops": self.ops,
            "elementwise": dict(self.elementwise, total=self.elementwise_total),
            "weight_bits": dict(self.weight_bits, total=sum(self.weight_bits.values())),
            "model_bytes": self.model_bytes, "float32_bytes": self.float32_bytes,
            "activation_peak_bits": self.peak_bits, "activation_peak_layer": self.peak_layer,
            "layers": [{"name": l.name, "precision": l.precision, "operands": l.operands,
                        "mh": l.mh, "mw": l.mw, "vectors": l.vectors, "repeats": l.repeats,
                        "plane_pairs": l.plane_pairs, "bops": l.bops, "flops": l.flops,
                        "ops": l.ops} for l in self.layers],
        }


def count(header: Mapping[str, Any]) -> CostReport:
    """All per-image counts of the model described by ``header``."""
    ls = layers(header)
    bits, where, live = activation_peak(header)
    return CostReport(shape=shape_of(header), layers=ls, params=parameters(header),
                      elementwise=elementwise(header), peak_bits=bits, peak_layer=where,
                      peak_tensors=live)
