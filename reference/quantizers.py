"""Quantizers of the PyTorch reference: BiT binarizers, BWN and LSQ, and the parts GSB (reference/gsb.py) shares.

Forward and backward follow the released GSB code (research/gsb.md §1, §2), as
custom autograd Functions because every gradient here is a straight-through
estimate that autograd could not derive. Deliberate, project-wide departures from
the released code (DESIGN.md §2, gsbsim/format/conventions.py):

* sign(0) = +1 (``sign_pos``), never ``torch.sign`` (whose 0 would leak a third value);
* every rounding is half up, ``floor(x + 0.5)``: the {0, a} binarizer is 1[x/a >= 0.5];
* GSB mask ratios are dyadic (``quantize_ratio``) and the mask comparison is exact,
  so the integer model finds the same masks;
* GSB mask statistics default to per-row (batch-independent); 'batch' reproduces
  the released code;
* data-dependent scale initialisation happens on the first *training* forward and
  is recorded in a boolean ``initialized`` buffer that travels with the state_dict
  (the released code keeps it in a Python attribute, so a reloaded model relies on
  its scale differing from 1.0);
* GSB residual groups store the residual scales the released code intended
  (``residual_init=True``); ``False`` stores the raw band means it actually keeps.

Every learnable scale is clamped to >= ALPHA_EPS in the forward pass only; the
gradient goes to the raw parameter unchanged (as released).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn


ALPHA_EPS = 1e-5
MASK_STATS = ("row", "image", "batch")
SCALE_GRADS = ("corrected", "bit")
INPUT_GRADS = ("intended", "released")

__all__ = [
    "ALPHA_EPS", "LSQQuantizer", "LearnableBias", "QuantizerError",
    "SignedBinarizer", "UnsignedBinarizer", "bwn_weight", "round_half_up", "sign_pos",
]


class QuantizerError(ValueError):
    """A bad argument or input given to a quantizer of reference/quantizers.py."""


def quantizer_fail(where: str, problem: str) -> None:
    raise QuantizerError(f"reference/quantizers.py: {where}: {problem}")


# ----------------------------------------------------------------------------- elementwise rules
def sign_pos(x: Tensor) -> Tensor:
    """+1 where x >= 0, else -1 (sign(0) = +1), in x's dtype."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def round_half_up(x: Tensor) -> Tensor:
    """Nearest integer with ties up: floor(x + 0.5) (torch.round is half-to-even)."""
    return torch.floor(x + 0.5)


def grad_scale(count: int | Tensor) -> Tensor | float:
    """LSQ gradient scale 1/sqrt(count), with an empty count giving 1 (its gradient is 0 anyway)."""
    if isinstance(count, Tensor):
        return count.clamp(min=1).rsqrt()
    return 1.0 / math.sqrt(max(int(count), 1))


def indicator(cond: Tensor, like: Tensor) -> Tensor:
    """A boolean condition as {0, 1} in like's dtype."""
    return cond.to(like.dtype)


def check_input(where: str, x: Tensor, min_dim: int = 0) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        quantizer_fail(where, f"input must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.numel() == 0:
        quantizer_fail(where, f"input is empty (shape {tuple(x.shape)})")
    if x.dim() < min_dim:
        quantizer_fail(where, f"input needs at least {min_dim} dims ([batch, ..., row]), got shape {tuple(x.shape)}")


def check_choice(where: str, name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        quantizer_fail(where, f"{name} must be one of {', '.join(choices)}; got {value!r}")


# ----------------------------------------------------------------------------- shared module parts
class LearnableBias(nn.Module):
    """The learnable shift ("move", init 0) applied before every activation binarizer."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        shape = tuple(int(s) for s in shape)
        if any(s < 1 for s in shape):
            quantizer_fail("LearnableBias", f"shape must hold positive sizes, got {shape}")
        self.bias = nn.Parameter(torch.zeros(shape))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bias


class ScaledQuantizer(nn.Module):
    """A quantizer with learnable scales ``alpha`` set from data on its first training forward.

    ``initialized`` is a buffer, so a model loaded from a checkpoint is never re-initialised.
    Subclasses implement ``_initial_alpha(x)``.
    """

    def __init__(self, alpha_shape: tuple[int, ...] = ()):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(alpha_shape))
        self.register_buffer("initialized", torch.tensor(False))

    def _initial_alpha(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _maybe_init(self, x: Tensor) -> None:
        if self.training and not bool(self.initialized):
            with torch.no_grad():
                value = self._initial_alpha(x.detach())
                self.alpha.copy_(value.clamp(min=ALPHA_EPS).reshape(self.alpha.shape))
                self.initialized.fill_(True)

    def scales(self) -> Tensor:
        """The scales the forward pass uses (clamped to >= ALPHA_EPS), detached."""
        return self.alpha.detach().clamp(min=ALPHA_EPS)


# ----------------------------------------------------------------------------- BiT binarizers
class _SignedBinarize(torch.autograd.Function):
    """a*sign(x); clipped STE for x, LSQ-style ("corrected") or BiT's scale gradient (gsb.md §2.1)."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, corrected: bool) -> Tensor:
        a = alpha.clamp(min=ALPHA_EPS)
        ctx.save_for_backward(x, a)
        ctx.corrected = corrected
        return a * sign_pos(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, a = ctx.saved_tensors
        u = x / a
        inside = indicator((u >= -1) & (u <= 1), x)
        term = sign_pos(x) - inside * u if ctx.corrected else sign_pos(x)
        d_alpha = (term * grad).sum() * grad_scale(x.numel())
        return grad * inside, d_alpha.to(a.dtype).reshape(a.shape), None


class _UnsignedBinarize(torch.autograd.Function):
    """a*1[x/a >= 0.5]; LSQ gradients with Qn = 0, Qp = 1 (gsb.md §2.2)."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor) -> Tensor:
        a = alpha.clamp(min=ALPHA_EPS)
        ctx.save_for_backward(x, a)
        return a * indicator(x / a >= 0.5, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, a = ctx.saved_tensors
        u = x / a
        inside = indicator((u >= 0) & (u <= 1), x)
        term = indicator(u > 1, x) + inside * (round_half_up(u) - u)
        d_alpha = (term * grad).sum() * grad_scale(x.numel())
        return grad * inside, d_alpha.to(a.dtype).reshape(a.shape)


class SignedBinarizer(ScaledQuantizer):
    """BiT's elastic {-a, +a} binarizer: a*sign(x), a initialised to 2*mean|x|.

    scale_grad='corrected' (default): da = g*sum((sign(x) - 1[|x/a|<=1]*x/a)*G);
    'bit': BiT's original da = g*sum(sign(x)*G); g = 1/sqrt(numel(x)).
    """

    def __init__(self, scale_grad: str = "corrected"):
        check_choice("SignedBinarizer", "scale_grad", scale_grad, SCALE_GRADS)
        super().__init__()
        self.scale_grad = scale_grad

    def _initial_alpha(self, x: Tensor) -> Tensor:
        return 2 * x.abs().mean()

    def forward(self, x: Tensor) -> Tensor:
        check_input("SignedBinarizer", x)
        self._maybe_init(x)
        return _SignedBinarize.apply(x, self.alpha, self.scale_grad == "corrected")

    def extra_repr(self) -> str:
        return f"scale_grad={self.scale_grad!r}"


class UnsignedBinarizer(ScaledQuantizer):
    """BiT's elastic {0, a} binarizer: a*1[x/a >= 0.5] (ties up), a initialised to 4*mean|x|."""

    def _initial_alpha(self, x: Tensor) -> Tensor:
        return 4 * x.abs().mean()

    def forward(self, x: Tensor) -> Tensor:
        check_input("UnsignedBinarizer", x)
        self._maybe_init(x)
        return _UnsignedBinarize.apply(x, self.alpha)


# ----------------------------------------------------------------------------- BWN weights
class _BWN(torch.autograd.Function):
    """mean|W|*sign(W - mean W) forward; identity STE backward (gsb.md §1.4, §2.5)."""

    @staticmethod
    def forward(ctx, w: Tensor) -> Tensor:
        return w.abs().mean() * sign_pos(w - w.mean())

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad


def bwn_weight(w: Tensor) -> Tensor:
    """BWN binary weight: one scale mean|W| (of the un-centred W) times sign(W - mean(W))."""
    check_input("bwn_weight", w)
    return _BWN.apply(w)


# ----------------------------------------------------------------------------- LSQ (8-bit)
class _LSQ(torch.autograd.Function):
    """a*clamp(round_half_up(x/a), Qn, Qp) with LSQ gradients.

    Inside Qn <= x/a <= Qp (inclusive, as torch.clamp's own gradient): dx = G and the
    scale term is round(u) - u; below: dx = 0, term Qn; above: dx = 0, term Qp. The
    scale gradient is summed per channel (dim 0) when alpha has one entry per channel
    and scaled by 1/sqrt(numel(x)*Qp).
    """

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, qn: int, qp: int) -> Tensor:
        a = _channel_view(alpha.clamp(min=ALPHA_EPS), x)
        ctx.save_for_backward(x, a)
        ctx.qn, ctx.qp, ctx.alpha_shape = qn, qp, alpha.shape
        return a * round_half_up(x / a).clamp(qn, qp)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, a = ctx.saved_tensors
        u = x / a
        below, above = u < ctx.qn, u > ctx.qp
        inside = indicator(~below & ~above, x)
        term = inside * (round_half_up(u) - u) + ctx.qn * indicator(below, x) + ctx.qp * indicator(above, x)
        term = term * grad * grad_scale(x.numel() * ctx.qp)
        d_alpha = term.reshape(term.shape[0], -1).sum(1) if len(ctx.alpha_shape) else term.sum()
        return grad * inside, d_alpha.to(a.dtype).reshape(ctx.alpha_shape), None, None


def _channel_view(a: Tensor, x: Tensor) -> Tensor:
    """A per-channel scale [C] shaped [C, 1, ...] against x; a scalar scale as is."""
    return a.reshape(-1, *([1] * (x.dim() - 1))) if a.dim() else a


class LSQQuantizer(ScaledQuantizer):
    """Elastic/LSQ uniform quantizer for activations or weights (8 bits by default).

    signed: integers in [-2**(bits-1), 2**(bits-1) - 1], else [0, 2**bits - 1].
    per_channel: number of channels along dim 0 (one scale each; weights), None = one scale.
    Init on the first training forward: alpha = 2*mean|x|/sqrt(Qp) (per channel if per_channel).
    """

    def __init__(self, bits: int = 8, signed: bool = True, per_channel: int | None = None):
        if not isinstance(bits, int) or not 1 <= bits <= 16 or (signed and bits < 2):
            quantizer_fail("LSQQuantizer", f"bits must be an integer in [2, 16] (signed) or [1, 16] (unsigned), got {bits!r}")
        if per_channel is not None and (not isinstance(per_channel, int) or per_channel < 1):
            quantizer_fail("LSQQuantizer", f"per_channel must be None or a positive channel count, got {per_channel!r}")
        super().__init__(() if per_channel is None else (per_channel,))
        self.bits, self.signed, self.per_channel = bits, bool(signed), per_channel
        self.qn = -(1 << (bits - 1)) if signed else 0
        self.qp = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}, per_channel={self.per_channel}"

    def _check(self, x: Tensor) -> None:
        check_input("LSQQuantizer", x)
        if self.per_channel is not None and (x.dim() < 1 or x.shape[0] != self.per_channel):
            quantizer_fail("LSQQuantizer", f"per_channel={self.per_channel} needs dim 0 of that size, "
                                  f"got shape {tuple(x.shape)}")

    def _initial_alpha(self, x: Tensor) -> Tensor:
        mean = x.abs().reshape(x.shape[0], -1).mean(1) if self.per_channel is not None else x.abs().mean()
        return 2 * mean / math.sqrt(self.qp)

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        self._maybe_init(x)
        return _LSQ.apply(x, self.alpha, self.qn, self.qp)

    def int_repr(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(integers clamp(round_half_up(x/alpha), Qn, Qp) as int32, clamped alpha) for export.

        alpha is returned in its parameter shape ([] or [C]); x = alpha*q (per channel along dim 0).
        """
        self._check(x)
        with torch.no_grad():
            a = self.scales()
            q = round_half_up(x.detach() / _channel_view(a, x)).clamp(self.qn, self.qp)
            return q.to(torch.int32), a
