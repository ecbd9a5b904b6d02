"""The reference's method table: which modules each training method puts into the block (docs/didb.md).

One registration per method (reference/method_parts.py's registry); the binary methods with an integer
model are the rows of gsbsim/format/methods.py, plus 'fp' (a full-precision student). blocks.py asks
``attention_class``; the linears and units come from method_parts' factories.
"""
from __future__ import annotations

from torch import nn

from .attention import BinaryAttention
from .config import QuantConfig
from .didb import DIDBAttention, IRPReLU
from .method_parts import LINEAR_ROLES, Parts, is_binary, make_linear, parts_of, post_activation, register
from .reactnet import RPReLU
from .sign import SignAttention, SignLinear

__all__ = ["LINEAR_ROLES", "attention_class", "is_binary", "make_linear", "post_activation"]


def _irprelu(channels: int, num_tokens: int | None) -> nn.Module:
    if num_tokens is None:
        raise ValueError("reference/methods.py: didb's IRPReLU needs num_tokens")
    return IRPReLU(channels, num_tokens)


register("gsb", Parts())
register("bit", Parts())
register("sign", Parts(linear=SignLinear, attention=SignAttention))
register("reactnet", Parts(post_activation=lambda channels, num_tokens: RPReLU(channels)))
register("didb", Parts(post_activation=_irprelu, attention=DIDBAttention))
register("fp", Parts())


def attention_class(cfg: QuantConfig) -> type[nn.Module]:
    """The attention module of a block: the method's stage-2 attention, else BinaryAttention."""
    return (parts_of(cfg).attention if cfg.stage == 2 else None) or BinaryAttention
