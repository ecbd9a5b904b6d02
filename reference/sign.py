"""The `sign` baseline (XNOR-Net style plain sign binarization), docs/didb.md §4.

No learnable shift before any binarizer and no learnable scale: every activation scale is
mean|x| of the current batch in training and a running mean of it (a buffer) at eval, so
inference is batch-independent. The attention probabilities become the {0, 1} plane
1[A >= 1/N] (N tokens: "above a uniform row"), V is a*sign(V). All of it maps onto the
existing integer model (reference/export.py): the scales become the running means and the
threshold 1/N becomes a.thr1.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import BinaryAttention
from .config import QuantConfig
from .layers import BinaryLinear, unit_codes
from .quantizers import ALPHA_EPS, _SignedBinarize, _UnsignedBinarize

KINDS = ("signed", "unsigned")
MOMENTUM = 0.1  # weight of the newest batch in the running scale (as BatchNorm's default)


class FixedScaleBinarizer(nn.Module):
    """a*sign(x) ('signed') or a*1[x/a >= 1/2] ('unsigned') with a non-learned scale a.

    Training: a = mean|x| of the batch (no gradient), and the buffer running_alpha follows it
    (the first batch sets it, then an exponential mean with MOMENTUM). Eval: a = running_alpha.
    Input gradient: the clipped straight-through estimate of the BiT binarizers (|x/a| <= 1,
    resp. 0 <= x/a <= 1).
    """

    def __init__(self, kind: str = "signed"):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"reference/sign.py: FixedScaleBinarizer: kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.register_buffer("running_alpha", torch.ones(()))
        self.register_buffer("initialized", torch.tensor(False))

    def _alpha(self, x: Tensor) -> Tensor:
        if not self.training:
            return self.scales()
        with torch.no_grad():
            a = x.detach().abs().mean().clamp(min=ALPHA_EPS)
            if bool(self.initialized):
                self.running_alpha.lerp_(a.to(self.running_alpha.dtype), MOMENTUM)
            else:
                self.running_alpha.copy_(a)
                self.initialized.fill_(True)
        return a

    def scales(self) -> Tensor:
        """The eval-time scale (the running mean of mean|x|), clamped to >= ALPHA_EPS."""
        return self.running_alpha.detach().clamp(min=ALPHA_EPS)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.numel() == 0:
            raise ValueError("reference/sign.py: FixedScaleBinarizer: input must be a non-empty float tensor")
        a = self._alpha(x).to(x.dtype)
        if self.kind == "signed":
            return _SignedBinarize.apply(x, a, False)
        return _UnsignedBinarize.apply(x, a)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


class SignLinear(BinaryLinear):
    """BinaryLinear (BWN weights) whose input binarizer has no shift and a non-learned scale."""

    def __init__(self, in_features: int, out_features: int, act: str = "signed"):
        if act not in KINDS:
            raise ValueError(f"reference/sign.py: SignLinear: act must be one of {KINDS}, got {act!r}")
        super().__init__(in_features, out_features, act=act)
        self.move = None
        self.act_q = FixedScaleBinarizer(act)


class _Step(torch.autograd.Function):
    """1[x >= t] as {0, 1}; straight-through gradient for 0 <= x <= 1 (x: probabilities)."""

    @staticmethod
    def forward(ctx, x: Tensor, t: float) -> Tensor:
        ctx.save_for_backward(x)
        return (x >= t).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        return grad * ((x >= 0) & (x <= 1)).to(grad.dtype), None


def uniform_threshold(attn: Tensor) -> Tensor:
    """The {0, 1} attention plane 1[A >= 1/N] of probabilities A [..., N, N] (N keys)."""
    return _Step.apply(attn, 1.0 / attn.shape[-1])


class SignAttention(BinaryAttention):
    """Stage-2 attention of `sign`: a*sign(Q), a*sign(K), a*sign(V), A -> 1[A >= 1/N]; no shifts, no bias."""

    def _build_core(self, num_tokens: int, cfg: QuantConfig) -> None:
        self.q_bin = FixedScaleBinarizer("signed")
        self.k_bin = FixedScaleBinarizer("signed")
        self.v_bin = FixedScaleBinarizer("signed")

    def mix(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q, k, v = self.q_bin(q), self.k_bin(k), self.v_bin(v)
        attn = self.probabilities(q @ k.transpose(-2, -1) * self.scale)
        codes, alpha = unit_codes(v)           # exact zeros where the integer context is 0
        return (uniform_threshold(attn) @ codes) * alpha
