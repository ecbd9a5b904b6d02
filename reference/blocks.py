"""The binary transformer block: GSB attention and the binary MLP.

Stage 1 (the released ``One_bit_vit_weight``): float attention with the q/k/v
shifts, an MLP with BWN weights on float inputs. Stage 2 (``One_bit_vit_new``):
every linear binary, binary Q and K, GSB on the Value tensor and on the attention
probabilities (after a learnable [heads, N, N] bias), GELU clipped to [-10, 10]
and the {0, a} binarizer before fc2. research/gsb.md §3 has the precision map.
The other methods (config.METHODS, docs/didb.md) plug in through methods.py.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import QuantConfig
from .int_grid import grid_of, ln_threshold_nudge, on_grid
from .method_parts import is_binary, make_linear, post_activation
from .methods import attention_class

GELU_CLIP = 10.0


class BinaryMlp(nn.Module):
    def __init__(self, dim: int, hidden: int, cfg: QuantConfig, num_tokens: int | None = None):
        super().__init__()
        self.binary = is_binary(cfg)
        self.fc1 = make_linear(dim, hidden, "fc1", cfg)
        self.fc2 = make_linear(hidden, dim, "fc2", cfg)
        self.act = nn.GELU()
        self.fc1_act = post_activation(hidden, num_tokens, cfg)
        self.fc2_act = post_activation(dim, num_tokens, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1_act(self.fc1(x)))
        if self.binary:
            h = h.clamp(-GELU_CLIP, GELU_CLIP)
        return self.fc2_act(self.fc2(h))


class BinaryBlock(nn.Module):
    """Pre-norm block with timm's ``block_fn`` signature (unused keywords are ignored)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, *, cfg: QuantConfig,
                 num_tokens: int, norm_layer=nn.LayerNorm, **_ignored):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = attention_class(cfg)(dim, num_heads, num_tokens, cfg)
        self.norm2 = norm_layer(dim)
        self.mlp = BinaryMlp(dim, int(dim * mlp_ratio), cfg, num_tokens)

    def forward(self, x: torch.Tensor, **_ignored) -> torch.Tensor:
        grid = grid_of(self)
        if grid is None:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        # integer-aware (reference/int_grid.py): LayerNorm thresholds and both branches on the grid
        ln1 = self.norm1(x) + ln_threshold_nudge(self.norm1, self.attn.qkv.move, grid)
        x = x + on_grid(self.attn(ln1), grid)
        ln2 = self.norm2(x) + ln_threshold_nudge(self.norm2, self.mlp.fc1.move, grid)
        return x + on_grid(self.mlp(ln2), grid)
