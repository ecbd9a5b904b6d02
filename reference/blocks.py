"""The binary transformer block: GSB attention and the binary MLP.

Stage 1 (the released ``One_bit_vit_weight``): float attention with the q/k/v
shifts, an MLP with BWN weights on float inputs. Stage 2 (``One_bit_vit_new``):
every linear binary, binary Q and K, GSB on the Value tensor and on the attention
probabilities (after a learnable [heads, N, N] bias), GELU clipped to [-10, 10]
and the {0, a} binarizer before fc2. research/gsb.md §3 has the precision map.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import QuantConfig
from .layers import BinaryLinear
from .quantizers import GSBAttention, GSBValue, LearnableBias, SignedBinarizer

GELU_CLIP = 10.0


class BinaryAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_tokens: int, cfg: QuantConfig):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not a multiple of the number of heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.binary = cfg.stage == 2
        act = "signed" if self.binary else None
        self.qkv = BinaryLinear(dim, 3 * dim, act=act, binary_weight=self.binary)
        self.proj = BinaryLinear(dim, dim, act=act, binary_weight=self.binary)
        shape = (num_heads, 1, self.head_dim)
        self.q_move, self.k_move, self.v_move = LearnableBias(shape), LearnableBias(shape), LearnableBias(shape)
        if self.binary:
            quirks = cfg.released_quirks
            self.q_bin = SignedBinarizer()
            self.k_bin = SignedBinarizer()
            self.v_gsb = GSBValue(groups=cfg.groups, ratios=cfg.ratios, stat=cfg.mask_stat,
                                  residual_init=not quirks, input_grad="released" if quirks else "intended")
            self.att_bias = LearnableBias((num_heads, num_tokens, num_tokens))
            self.a_gsb = GSBAttention(groups=cfg.groups, ratios=cfg.ratios, stat=cfg.mask_stat,
                                      residual_init=not quirks)

    def forward(self, x: torch.Tensor, **_ignored) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = self.q_move(qkv[0]), self.k_move(qkv[1]), self.v_move(qkv[2])
        if self.binary:
            q, k, v = self.q_bin(q), self.k_bin(k), self.v_gsb(v)
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        if self.binary:
            attn = self.a_gsb(self.att_bias(attn))
        ctx = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(ctx)


class BinaryMlp(nn.Module):
    def __init__(self, dim: int, hidden: int, cfg: QuantConfig):
        super().__init__()
        self.binary = cfg.stage == 2
        self.fc1 = BinaryLinear(dim, hidden, act="signed" if self.binary else "fp")
        self.fc2 = BinaryLinear(hidden, dim, act="unsigned" if self.binary else "fp")
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x))
        if self.binary:
            h = h.clamp(-GELU_CLIP, GELU_CLIP)
        return self.fc2(h)


class BinaryBlock(nn.Module):
    """Pre-norm block with timm's ``block_fn`` signature (unused keywords are ignored)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, *, cfg: QuantConfig,
                 num_tokens: int, norm_layer=nn.LayerNorm, **_ignored):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = BinaryAttention(dim, num_heads, num_tokens, cfg)
        self.norm2 = norm_layer(dim)
        self.mlp = BinaryMlp(dim, int(dim * mlp_ratio), cfg)

    def forward(self, x: torch.Tensor, **_ignored) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
