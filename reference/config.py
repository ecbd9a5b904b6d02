"""Quantization options of a student model (what is binary, and how)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from gsbsim.format.methods import DEFAULT_METHOD, METHOD_NAMES, is_grouped

MASK_STATS = ("row", "image", "batch")
# gsb: the paper's method; didb: our formulation of DIDB-ViT (docs/didb.md); bit, reactnet, sign:
# baselines; fp: the full-precision student of the same shape (the upper bound)
# the binary methods of the integer model (gsbsim/format/methods.py) and a full-precision student; read from
# the table when used (a MethodNames view), so a row registered at run time is a choice here too
FLOAT_METHODS = ("fp",)
METHODS = METHOD_NAMES + FLOAT_METHODS


def is_float_method(method: str) -> bool:
    """True for the full-precision student (no binary layer, no integer model; its stage 1 is its own)."""
    return method in FLOAT_METHODS


def groups_error(method: str, groups: int | None) -> str | None:
    """The error of a --groups the method cannot take (one-plane methods take only 1), else None."""
    if groups is None or groups == 1 or is_grouped(method):
        return None
    grouped = ", ".join(n for n in METHOD_NAMES if is_grouped(n))
    return f"--groups {groups}: method {method} uses one binary plane (--groups is for {grouped})"


def default_ratios(groups: int) -> tuple[float, ...]:
    """Mask thresholds (fractions of the max) of GSB's residual groups 2..G.

    3 groups use the released 0.7 / 0.9; other counts spread evenly up to 0.9.
    """
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    if groups == 1:
        return ()
    if groups == 3:
        return (0.7, 0.9)
    if groups == 2:
        return (0.7,)
    step = 0.4 / (groups - 2)
    return tuple(round(0.5 + i * step, 4) for i in range(groups - 1))


@dataclass(frozen=True)
class QuantConfig:
    """How a student is binarized.

    stage=1: binary MLP weights only (the released stage-1 model); stage=2: the full
    binary model. `mask_stat` is the statistic GSB's mask max is taken over: 'row'
    (per query row / per token, batch-independent and streamable: the default),
    'image' (per image) or 'batch' (the released code, batch-dependent).
    `released_quirks` reproduces the released code where it differs from the
    intended equations (raw band-mean scales, 3*G value input gradient).
    `method` (METHODS, docs/didb.md): every method but the grouped one (gsb, the table's `grouped`)
    uses one binary plane for the attention and V, so its groups are forced to 1 (and its ratios to ()).
    """

    stage: int = 2
    groups: int = 3
    ratios: tuple[float, ...] | None = None
    mask_stat: str = "row"
    released_quirks: bool = False
    method: str = DEFAULT_METHOD

    def __post_init__(self):
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {self.stage}")
        if self.mask_stat not in MASK_STATS:
            raise ValueError(f"mask_stat must be one of {MASK_STATS}, got {self.mask_stat!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not is_grouped(self.method):
            object.__setattr__(self, "groups", 1)
            object.__setattr__(self, "ratios", ())
        if self.ratios is None:
            object.__setattr__(self, "ratios", default_ratios(self.groups))
        object.__setattr__(self, "ratios", tuple(float(r) for r in self.ratios))
        if len(self.ratios) != self.groups - 1:
            raise ValueError(f"{self.groups} groups need {self.groups - 1} ratios, got {self.ratios}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ratios"] = list(self.ratios)
        return d
