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
from .methods import attention_class, is_binary, make_linear, post_activation
from .gsb import GSBAttention, GSBValue
from .quantizers import LearnableBias, SignedBinarizer

GELU_CLIP = 10.0


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
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        if self.binary:
            attn = self.a_gsb(self.att_bias(attn))
        return attn @ v

    def forward(self, x: torch.Tensor, **_ignored) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv_act(self.qkv(x)).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        ctx = self.mix(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(b, n, c)
        return self.proj_act(self.proj(ctx))


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
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
