"""The per-method modules of the reference's block, as a registry (timm's habit) that reference/methods.py
fills: which linear a stage-2 binary method uses, what follows each binary linear, which attention class.

attention.py and blocks.py ask these factories; they never import a method's module, so no method module
imports back into the block (the registry is filled when reference.methods is imported, which
reference.models does before building anything).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from .config import QuantConfig, is_float_method
from .layers import BinaryLinear

LINEAR_ROLES = ("qkv", "proj", "fc1", "fc2")

__all__ = ["LINEAR_ROLES", "Parts", "register", "parts_of", "is_binary", "make_linear", "post_activation"]


@dataclass(frozen=True)
class Parts:
    """A method's stage-2 modules; None means the default (BinaryLinear, nothing, blocks' BinaryAttention)."""

    linear: Callable[..., nn.Module] | None = None             # (in_features, out_features, act=...) -> module
    post_activation: Callable[[int, int | None], nn.Module] | None = None   # (channels, num_tokens) -> module
    attention: type[nn.Module] | None = None


PARTS: dict[str, Parts] = {}


def register(name: str, parts: Parts) -> None:
    PARTS[name] = parts


def parts_of(cfg: QuantConfig) -> Parts:
    """The registered modules of cfg.method (ValueError when no row registered it: a forgotten method fails)."""
    try:
        return PARTS[cfg.method]
    except KeyError:
        raise ValueError(f"reference: method {cfg.method!r} has no registered modules (reference/methods.py)") from None


def is_binary(cfg: QuantConfig) -> bool:
    """True for the fully binary model: stage 2 of every method but 'fp'."""
    return cfg.stage == 2 and not is_float_method(cfg.method)


def make_linear(in_features: int, out_features: int, role: str, cfg: QuantConfig) -> nn.Module:
    """The linear layer `role` of a block.

    fp: float weights and inputs. Stage 1 of a binary method (as GSB's): BWN weights on float
    inputs (after a shift) in the MLP, float attention linears. Stage 2: BWN weights on
    {-a, a} inputs ({0, a} for fc2), or the method's own linear (sign: no shifts, fixed scales).
    """
    if role not in LINEAR_ROLES:
        raise ValueError(f"reference/method_parts.py: make_linear: role must be one of {LINEAR_ROLES}, got {role!r}")
    mlp = role in ("fc1", "fc2")
    if is_float_method(cfg.method):
        return BinaryLinear(in_features, out_features, act=None, binary_weight=False)
    if cfg.stage == 1:
        return BinaryLinear(in_features, out_features, act="fp" if mlp else None, binary_weight=mlp)
    act = "unsigned" if role == "fc2" else "signed"
    linear = parts_of(cfg).linear or BinaryLinear
    return linear(in_features, out_features, act=act)


def post_activation(channels: int, num_tokens: int | None, cfg: QuantConfig) -> nn.Module:
    """What follows a binary linear's output in stage 2: the method's unit (RPReLU, IRPReLU), else nothing."""
    make = parts_of(cfg).post_activation if cfg.stage == 2 else None
    return make(channels, num_tokens) if make else nn.Identity()
