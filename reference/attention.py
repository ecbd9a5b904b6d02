"""The attention of the reference's block: GSB (gsb, bit), reactnet and fp, and stage 1; sign.py and didb.py
subclass it. Its linears and the units after them come from reference/method_parts.py."""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import QuantConfig
from .gsb import GSBAttention, GSBValue
from .int_grid import grid_of, grid_softmax
from .method_parts import is_binary, make_linear, post_activation
from .quantizers import LearnableBias, SignedBinarizer

__all__ = ["BinaryAttention"]


class BinaryAttention(nn.Module):
    """Multi-head attention of the gsb, bit (gsb with one group), reactnet and fp methods, and stage 1.

    Subclasses (sign.py, didb.py) replace `_build_core` and `mix` (what turns q, k, v into the
    context); the linears and the activations after them come from methods.py.
    """

    def __init__(self, dim: int, num_heads: int, num_tokens: int, cfg: QuantConfig):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not a multiple of the number of heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.binary = is_binary(cfg)
        self.qkv = make_linear(dim, 3 * dim, "qkv", cfg)
        self.proj = make_linear(dim, dim, "proj", cfg)
        self.qkv_act = post_activation(3 * dim, num_tokens, cfg)
        self.proj_act = post_activation(dim, num_tokens, cfg)
        self._build_core(num_tokens, cfg)

    def _build_core(self, num_tokens: int, cfg: QuantConfig) -> None:
        """The q/k/v shifts and (stage 2) the binarizers of Q, K, V and the attention."""
        shape = (self.num_heads, 1, self.head_dim)
        self.q_move, self.k_move, self.v_move = LearnableBias(shape), LearnableBias(shape), LearnableBias(shape)
        if self.binary:
            quirks = cfg.released_quirks
            self.q_bin = SignedBinarizer()
            self.k_bin = SignedBinarizer()
            self.v_gsb = GSBValue(groups=cfg.groups, ratios=cfg.ratios, stat=cfg.mask_stat,
                                  residual_init=not quirks, input_grad="released" if quirks else "intended")
            self.att_bias = LearnableBias((self.num_heads, num_tokens, num_tokens))
            self.a_gsb = GSBAttention(groups=cfg.groups, ratios=cfg.ratios, stat=cfg.mask_stat,
                                      residual_init=not quirks)

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Context [B, H, N, d] from the float q, k, v [B, H, N, d] of the qkv linear."""
        q, k, v = self.q_move(q), self.k_move(k), self.v_move(v)
        if self.binary:
            q, k, v = self.q_bin(q), self.k_bin(k), self.v_gsb(v)
        attn = self.probabilities(q @ k.transpose(-2, -1) * self.scale)
        if self.binary:
            attn = self.a_gsb(self.biased(attn))
        return attn @ v

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """Softmax of the scores; on the integer grid (reference/int_grid.py) rounded as the integer model's."""
        return grid_softmax(scores, grid_of(self))

    def biased(self, attn: torch.Tensor) -> torch.Tensor:
        """attn + the learnable attention bias (on the integer grid: the bias on 2^-PB)."""
        grid = grid_of(self)
        return self.att_bias(attn) if grid is None else attn + grid.prob(self.att_bias.bias)

    def forward(self, x: torch.Tensor, **_ignored) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv_act(self.qkv(x)).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        ctx = self.mix(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(b, n, c)
        return self.proj_act(self.proj(ctx))
