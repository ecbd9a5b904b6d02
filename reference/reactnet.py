"""ReActNet's RPReLU (Liu et al., ECCV 2020), the activation of the `reactnet` baseline.

RSign, ReActNet's other half, is the learnable per-channel shift ("move") that every
binary linear of the reference already has before its binarizer (reference/layers.py).
RPReLU follows the output of every binary linear (docs/didb.md §3).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .int_grid import grid_of, ste_round

PRELU_INIT = 0.25  # PReLU's (and ReActNet's) initial negative slope


class RPReLU(nn.Module):
    """RPReLU(x)[..., c] = PReLU_{beta_c}(x[..., c] - gamma_c) + zeta_c (gamma, zeta init 0, beta init 0.25).

    The channel axis is the last one (tokens are [batch, N, C]).
    """

    def __init__(self, channels: int):
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"reference/reactnet.py: RPReLU: channels must be a positive int, got {channels!r}")
        self.gamma = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.full((channels,), PRELU_INIT))
        self.zeta = nn.Parameter(torch.zeros(channels))

    def shifts(self) -> tuple[Tensor | float, Tensor | float]:
        """(input shift, output shift) broadcast against [..., C]; subclasses add token-wise parts."""
        return self.gamma, self.zeta

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.gamma.numel():
            raise ValueError(f"reference/reactnet.py: {type(self).__name__}: expected {self.gamma.numel()} "
                             f"channels in the last dim, got shape {tuple(x.shape)}")
        shift_in, shift_out = self.shifts()
        grid = grid_of(self)
        if grid is None:
            y = x - shift_in
            return torch.where(y >= 0, y, self.beta * y) + shift_out
        # integer-aware (reference/int_grid.py): u, the slope (2^-shifts.slope), its product and each output
        # shift on the integer model's grids (§13.1)
        y = grid.resid(x - shift_in)
        slope = ste_round(self.beta, grid.slope_bits)
        return grid.resid(torch.where(y >= 0, y, slope * y)) + sum(grid.resid(t) for t in self.out_terms())

    def out_terms(self) -> tuple[Tensor, ...]:
        """The output shift's terms, each its own array of the integer model (their sum is shifts()[1])."""
        return (self.zeta,)

    def extra_repr(self) -> str:
        return f"channels={self.gamma.numel()}"
