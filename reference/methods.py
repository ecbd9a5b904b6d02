"""Which modules each training method (config.METHODS, docs/didb.md) puts into the block.

blocks.py asks these factories for its linears, the activation after each binary linear
and the attention class, so the method-specific modules live in their own files
(reactnet.py, sign.py, didb.py) and the `gsb` path keeps its modules and names.
Method modules are imported lazily: sign.py and didb.py subclass blocks.BinaryAttention.
"""
from __future__ import annotations

from torch import nn

from .config import METHODS, QuantConfig
from .layers import BinaryLinear

LINEAR_ROLES = ("qkv", "proj", "fc1", "fc2")

__all__ = ["LINEAR_ROLES", "METHODS", "attention_class", "is_binary", "make_linear", "post_activation"]


def is_binary(cfg: QuantConfig) -> bool:
    """True for the fully binary model: stage 2 of every method but 'fp'."""
    return cfg.stage == 2 and cfg.method != "fp"


def make_linear(in_features: int, out_features: int, role: str, cfg: QuantConfig) -> BinaryLinear:
    """The linear layer `role` of a block.

    fp: float weights and inputs. Stage 1 of a binary method (as GSB's): BWN weights on float
    inputs (after a shift) in the MLP, float attention linears. Stage 2: BWN weights on
    {-a, a} inputs ({0, a} for fc2); 'sign' without shifts and with non-learned scales.
    """
    if role not in LINEAR_ROLES:
        raise ValueError(f"reference/methods.py: make_linear: role must be one of {LINEAR_ROLES}, got {role!r}")
    mlp = role in ("fc1", "fc2")
    if cfg.method == "fp":
        return BinaryLinear(in_features, out_features, act=None, binary_weight=False)
    if cfg.stage == 1:
        return BinaryLinear(in_features, out_features, act="fp" if mlp else None, binary_weight=mlp)
    act = "unsigned" if role == "fc2" else "signed"
    if cfg.method == "sign":
        from .sign import SignLinear
        return SignLinear(in_features, out_features, act=act)
    return BinaryLinear(in_features, out_features, act=act)


def post_activation(channels: int, num_tokens: int | None, cfg: QuantConfig) -> nn.Module:
    """What follows a binary linear's output: RPReLU (reactnet), IRPReLU (didb), else nothing."""
    if cfg.stage == 2 and cfg.method == "reactnet":
        from .reactnet import RPReLU
        return RPReLU(channels)
    if cfg.stage == 2 and cfg.method == "didb":
        from .didb import IRPReLU
        if num_tokens is None:
            raise ValueError("reference/methods.py: post_activation: didb's IRPReLU needs num_tokens")
        return IRPReLU(channels, num_tokens)
    return nn.Identity()


def attention_class(cfg: QuantConfig) -> type[nn.Module]:
    """The attention module of a block: the sign and didb stage-2 attentions, else blocks.BinaryAttention."""
    if cfg.stage == 2 and cfg.method == "sign":
        from .sign import SignAttention
        return SignAttention
    if cfg.stage == 2 and cfg.method == "didb":
        from .didb import DIDBAttention
        return DIDBAttention
    from .blocks import BinaryAttention
    return BinaryAttention
