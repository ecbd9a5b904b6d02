"""The float model on the integer model's grids (docs/integer_model.md §11, "Integer-aware mode").

`integer_grid(model, frac_bits)` is a switch on the existing reference modules, not a copy of
the model: while it is on, the stage-2 student rounds, in its own forward pass, where the
integer model rounds (round half up, as the exporter's fixed point):

* the residual stream to 2^-F: the patch embedding, `pos` and the cls/dist tokens each
  (§2), and every branch added to it, proj and fc2 (§7; reactnet/didb: their unit's z, §13.1);
* reactnet/didb: each activation unit's u = x - shifts and z to 2^-F, its output shifts each;
* the softmax as §5/§13.2 compute it: the exp values (the exp table) and the probabilities
  to 2^-PB, and the attention bias to 2^-PB;
* the LayerNorm -> sign thresholds t = -(beta + shift)/|gamma| to 2^-ln (§3).

What it leaves in float: the thresholds on accumulators (exact: an accumulator is an integer),
the context and value grids (2^-24 and 2^-16 of an accumulator step), the integer square root
and the 8-bit heads' folded LayerNorm, all below what flipped bits in the measurements of §11.

Every rounding passes its gradient straight through (round in forward, identity backward), so
the model trains on the grid (`python -m reference.train --int-aware-epochs N`).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .fixed_point import SHIFTS
from .quantizers import round_half_up

__all__ = [
    "IntGrid",
    "grid_of",
    "grid_softmax",
    "integer_grid",
    "ln_threshold_nudge",
    "on_grid",
    "set_integer_grid",
    "ste_round",
]

ATTR = "int_grid"     # the instance attribute the switch sets on every module of the model


def ste_round(x: Tensor, bits: int) -> Tensor:
    """x rounded half up to a multiple of 2^-bits; the gradient passes straight through."""
    scale = 2.0 ** bits
    q = round_half_up(x.detach() * scale) / scale
    return x + (q - x.detach())


@dataclass(frozen=True)
class IntGrid:
    """The grids: F of the residual stream, PB of the probabilities, LN of the LayerNorm thresholds,
    the activation units' negative slopes (shifts.slope)."""

    frac_bits: int
    prob_bits: int = SHIFTS["prob"]
    ln_bits: int = SHIFTS["ln"]
    slope_bits: int = SHIFTS["slope"]

    def __post_init__(self):
        for name in ("frac_bits", "prob_bits", "ln_bits", "slope_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 30:
                raise ValueError(f"reference/int_grid.py: {name} must be an integer in [0, 30], got {v!r}")

    def resid(self, x: Tensor) -> Tensor:
        return ste_round(x, self.frac_bits)

    def prob(self, x: Tensor) -> Tensor:
        return ste_round(x, self.prob_bits)


def grid_of(module: nn.Module) -> IntGrid | None:
    """The grid a module runs on (None: plain float)."""
    return module.__dict__.get(ATTR)


def on_grid(x: Tensor, grid: IntGrid | None) -> Tensor:
    """x on the residual grid, or x itself off the grid."""
    return x if grid is None else grid.resid(x)


def grid_softmax(scores: Tensor, grid: IntGrid | None) -> Tensor:
    """Softmax over the last dim; on the grid, the exp values (the integer model's exp table) and the
    probabilities (e_j*R >> (RS-PB), R = floor(2^RS/Z)) are rounded to 2^-PB as the integer model does."""
    if grid is None:
        return scores.softmax(dim=-1)
    e = grid.prob(torch.exp(scores - scores.detach().amax(dim=-1, keepdim=True)))
    return grid.prob(e / e.sum(dim=-1, keepdim=True))


def ln_threshold_nudge(norm: nn.LayerNorm, move: nn.Module | None, grid: IntGrid) -> Tensor:
    """What to add to norm's output so that `+ shift >= 0` flips exactly where the integer model's
    rounded threshold does: |gamma|*(t - round(t, 2^-ln)), t = -(beta + shift)/|gamma| (§3); 0 where
    gamma = 0 (a constant bit either way). A constant per channel, no gradient."""
    with torch.no_grad():
        gamma = norm.weight.detach()
        shift = move.bias.detach().reshape(-1) if move is not None else torch.zeros_like(gamma)
        mag = gamma.abs()
        safe = torch.where(mag > 0, mag, torch.ones_like(mag))
        t = -(norm.bias.detach() + shift) / safe
        bound = gamma.numel() ** 0.5 + 1.0                         # the exporter's clamp (a constant bit beyond)
        t = t.clamp(-bound, bound)
        tr = round_half_up(t.double() * 2.0 ** grid.ln_bits) / 2.0 ** grid.ln_bits
        return torch.where(mag > 0, mag * (t.double() - tr).to(t.dtype), torch.zeros_like(t))


def set_integer_grid(model: nn.Module, grid: IntGrid | None) -> None:
    """Switch every module of a stage-2 binary student onto `grid` (None: back to float)."""
    from .method_parts import is_binary
    cfg = getattr(model, "cfg", None)
    if grid is not None and (cfg is None or not is_binary(cfg)):
        raise ValueError("reference/int_grid.py: only a stage-2 binary student has an integer model "
                         "(got " + (f"method {cfg.method!r} stage {cfg.stage}" if cfg else type(model).__name__) + ")")
    for m in model.modules():
        if grid is None:
            m.__dict__.pop(ATTR, None)
        else:
            m.__dict__[ATTR] = grid


@contextlib.contextmanager
def integer_grid(model: nn.Module, frac_bits: int, prob_bits: int = SHIFTS["prob"],
                 ln_bits: int = SHIFTS["ln"]) -> Iterator[IntGrid]:
    """While active, `model` computes on the integer model's grids (module docstring)."""
    before = grid_of(model)
    grid = IntGrid(frac_bits, prob_bits, ln_bits)
    set_integer_grid(model, grid)
    try:
        yield grid
    finally:
        set_integer_grid(model, before)
