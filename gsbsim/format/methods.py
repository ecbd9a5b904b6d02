"""The method table: every binary method of the integer model as a row of features.

A method is not a string compared in place; it is a combination of two features, each of which
every engine implements once (docs/integer_model.md §12-§13, docs/adding_a_method.md):

* ``post_linear``, what follows each binary linear:
    ``"requant"``   the accumulators feed on directly: Q/K thresholds and the value shift on
                    qkv, fc1's thresholds on its accumulators, a §7 requantization into the
                    residual after proj and fc2;
    ``"act_unit"``  the §13.1 activation unit after qkv, proj, fc1 and fc2 (its output z is
                    traced as ``{L}.z``; the residual adds z; the value shift is 0).
* ``attention``, what turns q, k, v into the context:
    ``"gsb"``        §4-§6: sign bits of Q and K, the exact exp table, GSB planes of A and V;
    ``"hfsc_diba"``  §13.2-§13.3: the Haar split of Q and K, two band scores, the three-level
                     exp table, the DIBA context with its local term.

Everything method-dependent is derived here: the method names (``METHOD_NAMES``, ``ACT_METHODS``: live
views of the table, so a row added at run time is seen everywhere), the block's array layout
(``block_arrays``), the block's trace names (``block_trace_names``) and the group rules.
Engines register one implementation per feature value, never per method. numpy-free.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

__all__ = ["Method", "METHODS", "DEFAULT_METHOD", "is_grouped", "MethodNames", "METHOD_NAMES", "ACT_METHODS", "POST_LINEARS", "ATTENTIONS", "ACT_LINEARS",
           "method_of", "block_arrays", "block_array_names", "block_trace_names", "attention_trace_names"]

POST_LINEARS = ("requant", "act_unit")
ATTENTIONS = ("gsb", "hfsc_diba")
ACT_LINEARS = ("qkv", "proj", "fc1", "fc2")   # the binary linears, in block order


@dataclass(frozen=True)
class Method:
    """One row of the table (see the module docstring for the features)."""

    name: str
    post_linear: str
    attention: str
    default_groups: int            # groups of a random model / --random export when none is given
    fixed_groups: int | None       # a file must have exactly this many groups (None: any, with G-1 ratios)
    token_terms: bool              # the activation unit's per-token terms (tok_in, tok_out) may be non-zero
    spec: str                      # the sections of docs/integer_model.md it runs
    summary: str
    grouped: bool = False          # trained with G planes of the attention and V (--groups); else one plane

    def __post_init__(self) -> None:
        if self.post_linear not in POST_LINEARS or self.attention not in ATTENTIONS:
            raise ValueError(f"method {self.name}: unknown feature {self.post_linear!r} / {self.attention!r}")
        if self.attention == "hfsc_diba" and self.post_linear != "act_unit":
            raise ValueError(f"method {self.name}: hfsc_diba attention reads the qkv activation unit's z")

    @property
    def act_unit(self) -> bool:
        return self.post_linear == "act_unit"


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("gsb", "requant", "gsb", 3, None, False, "§1-§12",
           "Group Superposition Binarization: G binary planes of the attention and of V", grouped=True),
    Method("bit", "requant", "gsb", 1, None, False, "§1-§12",
           "BiT elastic binarizers: gsb with one plane"),
    Method("sign", "requant", "gsb", 1, None, False, "§1-§12",
           "XNOR-Net-style plain sign with fixed scales and a 1/N attention threshold"),
    Method("reactnet", "act_unit", "gsb", 1, 1, False, "§1-§12, §13.1",
           "RSign + RPReLU: the activation unit after every binary linear"),
    Method("didb", "act_unit", "hfsc_diba", 1, 1, True, "§1-§13",
           "DIDB-ViT (our formulation, docs/didb.md): IRPReLU units, HFSC scores, DIBA context"),
)}


class MethodNames(Sequence):
    """Names of the table's rows (those ``where`` accepts, then ``extra``), read from METHODS each time they
    are used, never copied: a row registered at run time (tests/support/methods.py) is seen by every module
    that imported the names before. Compares equal to the tuple of its names."""

    def __init__(self, where: Callable[[Method], bool] = lambda m: True, extra: tuple[str, ...] = ()):
        self._where, self._extra = where, tuple(extra)

    def names(self) -> tuple[str, ...]:
        return tuple(n for n, m in METHODS.items() if self._where(m)) + self._extra

    def __getitem__(self, i):
        return self.names()[i]

    def __len__(self) -> int:
        return len(self.names())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __add__(self, extra: tuple[str, ...]) -> "MethodNames":
        """These names followed by ``extra`` (still read from the table each time)."""
        return MethodNames(self._where, self._extra + tuple(extra))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]  # not a constant

    def __repr__(self) -> str:
        return repr(self.names())


DEFAULT_METHOD = "gsb"   # what a command, a call or a checkpoint that names no method means (a model file must name one)
METHOD_NAMES = MethodNames()
ACT_METHODS = MethodNames(lambda m: m.act_unit)


def is_grouped(name: object) -> bool:
    """True for a method trained with a choice of G planes (--groups); False for one plane, and for a name
    outside the table (the reference's float student)."""
    row = METHODS.get(name) if isinstance(name, str) else None
    return bool(row and row.grouped)


def method_of(name: object) -> Method:
    """The table row of a method name (ValueError naming the valid ones)."""
    try:
        return METHODS[name]   # type: ignore[index]
    except (KeyError, TypeError):
        raise ValueError(f"unknown method {name!r}; expected one of {', '.join(METHOD_NAMES)}") from None


# ----------------------------------------------------------------------------- array layout
# One block's arrays as (name, dtype, shape rule). Shape symbols: E embed, E3 = 3E, Hd hidden, H heads,
# N tokens, d head dim + 1 ("d1"), G groups; "words:K" is a packed binary weight's K (uint64 words in
# the file, K logical bits in the cost model); "exp_hi" the variable-length table of §13.2.
_BASE = (   # execution order: ln1, qkv, attention, proj, ln2, fc1, fc2
    ("ln1.sign", "int8", ("E",)), ("ln1.thr", "int64", ("E",)),
    ("qkv.weight", "uint64", ("E3", "words:E")),
    ("q.thr", "int32", ("E",)), ("k.thr", "int32", ("E",)), ("v.offset", "int64", ("E",)),
    ("exp_lut", "int64", ("d1",)), ("att_bias", "int32", ("H", "N", "N")), ("a.thr1", "int64", ()),
    ("ctx.scale", "int64", ("G", "G")), ("proj.in_thr", "int64", ("E",)),
    ("proj.weight", "uint64", ("E", "words:E")), ("proj.mult", "int64", ()), ("proj.bias", "int64", ("E",)),
    ("ln2.sign", "int8", ("E",)), ("ln2.thr", "int64", ("E",)),
    ("fc1.weight", "uint64", ("Hd", "words:E")), ("fc1.thr_hi", "int32", ("Hd",)), ("fc1.thr_lo", "int32", ("Hd",)),
    ("fc2.weight", "uint64", ("E", "words:Hd")), ("fc2.mult", "int64", ()), ("fc2.bias", "int64", ("E",)),
)
_LINEAR_CHANNELS = {"qkv": "E3", "proj": "E", "fc1": "Hd", "fc2": "E"}
# §13.1: qkv's and fc1's requantization (proj's and fc2's are the §7 arrays), and per linear its token
# terms, negative slope and output offset
_ACT_UNIT = (("qkv.mult", "int64", ()), ("qkv.bias", "int64", ("E3",)),
             ("fc1.mult", "int64", ()), ("fc1.bias", "int64", ("Hd",))) + tuple(
    (f"{lin}.{part}", "int64", ("N",) if part.startswith("tok") else (_LINEAR_CHANNELS[lin],))
    for lin in ACT_LINEARS for part in ("tok_in", "tok_out", "slope", "out"))
# §13.2-§13.3: what hfsc_diba adds, and the gsb attention arrays it replaces
_HFSC_DIBA = (("q.thr_low", "int64", ("E",)), ("q.thr_high", "int64", ("E",)),
              ("k.thr_low", "int64", ("E",)), ("k.thr_high", "int64", ("E",)),
              ("score.w", "int64", (2, "H")), ("exp_lo", "int64", ("exp_lo",)), ("exp_mid", "int64", ("exp_lo",)),
              ("exp_hi", "int64", ("exp_hi",)), ("ctx.vscale", "int64", ()), ("ctx.local", "int64", ("H",)))
_HFSC_DIBA_DROPS = ("q.thr", "k.thr", "exp_lut")

# what each feature value adds to and drops from the base layout
_FEATURE_ARRAYS = {
    ("post_linear", "requant"): ((), ()),
    ("post_linear", "act_unit"): (_ACT_UNIT, ()),
    ("attention", "gsb"): ((), ()),
    ("attention", "hfsc_diba"): (_HFSC_DIBA, _HFSC_DIBA_DROPS),
}


def block_arrays(method: str) -> tuple[tuple[str, str, tuple], ...]:
    """One block's arrays of a method as (name, dtype, shape rule), in file order (base, then features)."""
    m = method_of(method)
    rows = list(_BASE)
    for feature in (("post_linear", m.post_linear), ("attention", m.attention)):
        add, drop = _FEATURE_ARRAYS[feature]
        rows = [r for r in rows if r[0] not in drop] + list(add)
    return tuple(rows)


def block_array_names(method: str) -> tuple[str, ...]:
    """Names of one block's arrays (without the ``blocks.{i}.`` prefix) of a method."""
    return tuple(name for name, _, _ in block_arrays(method))


# ----------------------------------------------------------------------------- trace names
_ATTENTION_TRACES = {
    "gsb": ("q.bits", "k.bits", "v.q", "v.planes", "scores", "probs", "a.planes", "ctx"),
    "hfsc_diba": ("q.low", "q.high", "k.low", "k.high", "v.q", "v.planes", "scores.low", "scores.high", "hfsc",
                  "probs", "a.planes", "lap", "ctx"),
}


def attention_trace_names(attention: str) -> tuple[str, ...]:
    """The traces an attention feature records between ``qkv`` and ``proj.bits``, in order."""
    return _ATTENTION_TRACES[attention]


def block_trace_names(method: str = "gsb") -> tuple[str, ...]:
    """One block's trace names (without ``blocks.{i}.``) of a method, in execution order (§12, §13)."""
    m = method_of(method)
    z = lambda lin: (f"{lin}.z",) if m.act_unit else ()   # noqa: E731
    return (("ln1.bits", "qkv.acc") + z("qkv") + attention_trace_names(m.attention)
            + ("proj.bits", "proj.acc") + z("proj") + ("resid1", "ln2.bits", "fc1.acc") + z("fc1")
            + ("fc1.bits", "fc2.acc") + z("fc2") + ("resid2",))
