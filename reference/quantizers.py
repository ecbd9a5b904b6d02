"""Quantizers of the PyTorch reference: BiT binarizers, GSB groups, BWN and LSQ.

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

from gsbsim.format.conventions import RATIO_BITS, quantize_ratio, ratio_numerator

ALPHA_EPS = 1e-5
MASK_STATS = ("row", "image", "batch")
SCALE_GRADS = ("corrected", "bit")
INPUT_GRADS = ("intended", "released")

__all__ = [
    "ALPHA_EPS", "GSBAttention", "GSBValue", "LSQQuantizer", "LearnableBias", "QuantizerError",
    "SignedBinarizer", "UnsignedBinarizer", "bwn_weight", "round_half_up", "sign_pos",
]


class QuantizerError(ValueError):
    """A bad argument or input given to a quantizer of reference/quantizers.py."""


def _fail(where: str, problem: str) -> None:
    raise QuantizerError(f"reference/quantizers.py: {where}: {problem}")


# ----------------------------------------------------------------------------- elementwise rules
def sign_pos(x: Tensor) -> Tensor:
    """+1 where x >= 0, else -1 (sign(0) = +1), in x's dtype."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def round_half_up(x: Tensor) -> Tensor:
    """Nearest integer with ties up: floor(x + 0.5) (torch.round is half-to-even)."""
    return torch.floor(x + 0.5)


def _grad_scale(count: int | Tensor) -> Tensor | float:
    """LSQ gradient scale 1/sqrt(count), with an empty count giving 1 (its gradient is 0 anyway)."""
    if isinstance(count, Tensor):
        return count.clamp(min=1).rsqrt()
    return 1.0 / math.sqrt(max(int(count), 1))


def _indicator(cond: Tensor, like: Tensor) -> Tensor:
    """A boolean condition as {0, 1} in like's dtype."""
    return cond.to(like.dtype)


def _check_input(where: str, x: Tensor, min_dim: int = 0) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        _fail(where, f"input must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.numel() == 0:
        _fail(where, f"input is empty (shape {tuple(x.shape)})")
    if x.dim() < min_dim:
        _fail(where, f"input needs at least {min_dim} dims ([batch, ..., row]), got shape {tuple(x.shape)}")


def _check_choice(where: str, name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        _fail(where, f"{name} must be one of {', '.join(choices)}; got {value!r}")


# ----------------------------------------------------------------------------- shared module parts
class LearnableBias(nn.Module):
    """The learnable shift ("move", init 0) applied before every activation binarizer."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        shape = tuple(int(s) for s in shape)
        if any(s < 1 for s in shape):
            _fail("LearnableBias", f"shape must hold positive sizes, got {shape}")
        self.bias = nn.Parameter(torch.zeros(shape))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bias


class _ScaledQuantizer(nn.Module):
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
        inside = _indicator((u >= -1) & (u <= 1), x)
        term = sign_pos(x) - inside * u if ctx.corrected else sign_pos(x)
        d_alpha = (term * grad).sum() * _grad_scale(x.numel())
        return grad * inside, d_alpha.to(a.dtype).reshape(a.shape), None


class _UnsignedBinarize(torch.autograd.Function):
    """a*1[x/a >= 0.5]; LSQ gradients with Qn = 0, Qp = 1 (gsb.md §2.2)."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor) -> Tensor:
        a = alpha.clamp(min=ALPHA_EPS)
        ctx.save_for_backward(x, a)
        return a * _indicator(x / a >= 0.5, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, a = ctx.saved_tensors
        u = x / a
        inside = _indicator((u >= 0) & (u <= 1), x)
        term = _indicator(u > 1, x) + inside * (round_half_up(u) - u)
        d_alpha = (term * grad).sum() * _grad_scale(x.numel())
        return grad * inside, d_alpha.to(a.dtype).reshape(a.shape)


class SignedBinarizer(_ScaledQuantizer):
    """BiT's elastic {-a, +a} binarizer: a*sign(x), a initialised to 2*mean|x|.

    scale_grad='corrected' (default): da = g*sum((sign(x) - 1[|x/a|<=1]*x/a)*G);
    'bit': BiT's original da = g*sum(sign(x)*G); g = 1/sqrt(numel(x)).
    """

    def __init__(self, scale_grad: str = "corrected"):
        _check_choice("SignedBinarizer", "scale_grad", scale_grad, SCALE_GRADS)
        super().__init__()
        self.scale_grad = scale_grad

    def _initial_alpha(self, x: Tensor) -> Tensor:
        return 2 * x.abs().mean()

    def forward(self, x: Tensor) -> Tensor:
        _check_input("SignedBinarizer", x)
        self._maybe_init(x)
        return _SignedBinarize.apply(x, self.alpha, self.scale_grad == "corrected")

    def extra_repr(self) -> str:
        return f"scale_grad={self.scale_grad!r}"


class UnsignedBinarizer(_ScaledQuantizer):
    """BiT's elastic {0, a} binarizer: a*1[x/a >= 0.5] (ties up), a initialised to 4*mean|x|."""

    def _initial_alpha(self, x: Tensor) -> Tensor:
        return 4 * x.abs().mean()

    def forward(self, x: Tensor) -> Tensor:
        _check_input("UnsignedBinarizer", x)
        self._maybe_init(x)
        return _UnsignedBinarize.apply(x, self.alpha)


# ----------------------------------------------------------------------------- GSB
def _group_scales(a: Tensor, ndim: int) -> Tensor:
    """Scales of groups 2..G shaped to broadcast against a [G-1, *x.shape] mask stack."""
    return a[1:].reshape(-1, *([1] * ndim))


def _mask_grads(masks: Tensor, grad: Tensor) -> Tensor:
    """da_k = sum(M_k*G)/sqrt(max(sum M_k, 1)) for every mask group (gsb.md §2.3)."""
    counts = masks.flatten(1).sum(1)
    return (masks * grad).flatten(1).sum(1) * _grad_scale(counts)


class _GSBAttentionFn(torch.autograd.Function):
    """a1*1[A/a1 >= 0.5] + sum_k a_k*M_k, with the gradients of gsb.md §2.3."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, masks: Tensor) -> Tensor:
        a = alpha.clamp(min=ALPHA_EPS)
        ctx.save_for_backward(x, a, masks)
        base = a[0] * _indicator(x / a[0] >= 0.5, x)
        return base + (_group_scales(a, x.dim()) * masks).sum(0)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, a, masks = ctx.saved_tensors
        u = x / a[0]
        inside = _indicator((u >= 0) & (u <= 1), x)
        term1 = _indicator(u > 1, x) + inside * (round_half_up(u) - u)
        d_a1 = (term1 * grad).sum() * _grad_scale(x.numel())
        d_alpha = torch.cat([d_a1.reshape(1), _mask_grads(masks, grad)]).to(a.dtype)
        d_x = grad * (inside + (_group_scales(a, x.dim()) * masks).sum(0))
        return d_x, d_alpha, None


class _GSBValueFn(torch.autograd.Function):
    """sign(V)*(a1 + sum_k a_k*M_k), with the gradients of gsb.md §2.4.

    Group k >= 2 sees V_k = V*M_k: its sign term is sign(V)*M_k (torch.sign(0) = 0
    outside the mask in the released code) and its clip indicator in_k is 1 outside
    the mask (V_k = 0). released=True sums the in_k as coded (3*G for ordinary
    elements); otherwise only the in_k inside each mask count.
    """

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, masks: Tensor, released: bool) -> Tensor:
        a = alpha.clamp(min=ALPHA_EPS)
        ctx.save_for_backward(x, a, masks)
        ctx.released = released
        return sign_pos(x) * (a[0] + (_group_scales(a, x.dim()) * masks).sum(0))

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, a, masks = ctx.saved_tensors
        s = sign_pos(x)
        u1 = x / a[0]
        in1 = _indicator((u1 >= -1) & (u1 <= 1), x)
        d_a1 = ((s - in1 * u1) * grad).sum() * _grad_scale(x.numel())
        uk = x * masks / _group_scales(a, x.dim())
        ink = _indicator((uk >= -1) & (uk <= 1), x)
        termk = s * masks - ink * uk
        d_ak = (termk * grad).flatten(1).sum(1) * _grad_scale(masks.flatten(1).sum(1))
        d_alpha = torch.cat([d_a1.reshape(1), d_ak]).to(a.dtype)
        extra = ink if ctx.released else masks * ink
        return grad * (in1 + extra.sum(0)), d_alpha, None, None


class _GSBBase(_ScaledQuantizer):
    """What GSB attention and value share: arguments, mask statistics, scale init, planes.

    The input is [batch, ..., row]; masks compare against a statistic over the last
    dim ('row'), over all dims but the batch ('image') or over the whole tensor
    ('batch', the released code). Masks carry no gradient.
    """

    init_factor: float  # 4 for the unsigned attention, 2 for the signed value

    def __init__(self, groups: int, ratios: tuple[float, ...], stat: str, residual_init: bool):
        where = type(self).__name__
        if not isinstance(groups, int) or groups < 1:
            _fail(where, f"groups must be an integer >= 1, got {groups!r}")
        ratios = tuple(float(r) for r in ratios)
        if len(ratios) != groups - 1:
            _fail(where, f"{groups} groups need {groups - 1} ratios, got {len(ratios)}: {ratios}")
        q = tuple(quantize_ratio(r) for r in ratios)
        if any(not 0 < r < 1 for r in q) or any(lo >= hi for lo, hi in zip(q, q[1:])):
            _fail(where, f"ratios must lie in (0, 1) and increase strictly after rounding to "
                         f"multiples of 2**-{RATIO_BITS}; got {ratios} -> {q}")
        _check_choice(where, "stat", stat, MASK_STATS)
        super().__init__((groups,))
        self.groups = groups
        self.ratios = q
        self.stat = stat
        self.residual_init = bool(residual_init)

    def extra_repr(self) -> str:
        return f"groups={self.groups}, ratios={self.ratios}, stat={self.stat!r}, residual_init={self.residual_init}"

    # --- masks
    def _reduce(self, x: Tensor, op) -> Tensor:
        """The mask statistic (op = torch.amax or torch.amin), kept broadcastable against x.

        keepdim also for 'batch': a 0-dim float64 threshold would be cast down to x's
        dtype by type promotion instead of lifting the comparison to float64.
        """
        dims = {"row": (-1,), "image": tuple(range(1, x.dim())), "batch": tuple(range(x.dim()))}[self.stat]
        return op(x, dim=dims, keepdim=True)

    @staticmethod
    def _threshold(x: Tensor, stat: Tensor, ratio: float, toward: float) -> Tensor:
        """ratio*stat rounded to x's dtype toward `toward` (-inf for x > t, +inf for x < t).

        The dyadic product of a float32 statistic is exact in float64; rounding it
        down (up) to x's dtype keeps x > t (x < t) exact without promoting x itself,
        so the masks equal the integer model's 256*x > r*stat.
        """
        t64 = ratio_numerator(ratio) * stat.double() / (1 << RATIO_BITS)
        t = t64.to(x.dtype)
        past = (t > t64) if toward < 0 else (t < t64)
        return torch.where(past, torch.nextafter(t, torch.full_like(t, toward)), t)

    def _mask(self, x: Tensor, ratio: float) -> Tensor:
        raise NotImplementedError

    def masks(self, x: Tensor) -> Tensor:
        """Masks M_2..M_G as a {0,1} float stack [G-1, *x.shape] (no gradient)."""
        with torch.no_grad():
            x = x.detach()
            if self.groups == 1:
                return x.new_zeros((0, *x.shape))
            return torch.stack([self._mask(x, r).to(x.dtype) for r in self.ratios])

    # --- scale initialisation (gsb.md §1.3)
    def _base_mean(self, x: Tensor, masks: Tensor) -> Tensor | None:
        """Mean that sets a1 (before init_factor); None if it selects nothing."""
        raise NotImplementedError

    def _band_values(self, x: Tensor) -> Tensor:
        """Values averaged over each mask band."""
        raise NotImplementedError

    def _initial_alpha(self, x: Tensor) -> Tensor:
        masks = self.masks(x).bool()
        values = self._band_values(x)
        levels = [_level(self.init_factor, self._base_mean(x, masks))]
        for k in range(self.groups - 1):
            band = masks[k] & ~masks[k + 1] if k + 2 < self.groups else masks[k]
            level = _level(self.init_factor, _masked_mean(values, band))
            if self.residual_init:  # cumulative level a1 + ... + a_k = band mean
                level = max(level - sum(levels), ALPHA_EPS)
            levels.append(level)
        return torch.tensor(levels, dtype=self.alpha.dtype, device=self.alpha.device)

    # --- forward and export
    def _quantize(self, x: Tensor, masks: Tensor) -> Tensor:
        raise NotImplementedError

    def _first_plane(self, x: Tensor, a1: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        _check_input(type(self).__name__, x, min_dim=2)
        self._maybe_init(x)
        return self._quantize(x, self.masks(x))

    def planes(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Binary planes [first, M_2..M_G] as {0,1} float tensors, and the clamped scales.

        The forward output is sum_k scales[k]*plane_k (attention) or
        (2*plane_0 - 1)*(scales[0] + sum_k scales[k]*plane_k) (value).
        """
        _check_input(type(self).__name__, x, min_dim=2)
        with torch.no_grad():
            a = self.scales()
            first = self._first_plane(x.detach(), a[0])
            return [first, *self.masks(x).unbind(0)], a


def _masked_mean(values: Tensor, selection: Tensor) -> Tensor | None:
    """Mean of values where selection is true; None if nothing is selected."""
    count = int(selection.sum())
    return None if count == 0 else values[selection].sum() / count


def _level(factor: float, mean: Tensor | None) -> float:
    """An initial scale factor*mean, floored at ALPHA_EPS (also when the selection was empty)."""
    return ALPHA_EPS if mean is None else max(factor * float(mean), ALPHA_EPS)


class GSBAttention(_GSBBase):
    """GSB on attention probabilities A [B, H, N, N]: a {0, a1} base group plus G-1 masks.

    out = a1*1[A/a1 >= 0.5] + sum_k a_k*1[A > r_k*max]; groups=1 is BiT's unsigned
    binarizer. Init: a1 = 4*mean|A|, band means 4*mean(A over band k) (gsb.md §1.3).
    """

    init_factor = 4.0

    def __init__(self, groups: int = 3, ratios: tuple[float, ...] = (0.7, 0.9), stat: str = "row",
                 residual_init: bool = True):
        super().__init__(groups, ratios, stat, residual_init)

    def _mask(self, x: Tensor, ratio: float) -> Tensor:
        return x > self._threshold(x, self._reduce(x, torch.amax), ratio, -math.inf)

    def _base_mean(self, x: Tensor, masks: Tensor) -> Tensor | None:
        return x.abs().mean()

    def _band_values(self, x: Tensor) -> Tensor:
        return x  # the released code averages A itself over the bands (A > r*max >= 0 there)

    def _quantize(self, x: Tensor, masks: Tensor) -> Tensor:
        return _GSBAttentionFn.apply(x, self.alpha, masks)

    def _first_plane(self, x: Tensor, a1: Tensor) -> Tensor:
        return _indicator(x / a1 >= 0.5, x)


class GSBValue(_GSBBase):
    """GSB on the Value tensor V [B, H, N, d]: sign(V) times a1 plus G-1 masked residual scales.

    M_k = 1[V > r_k*max] | 1[V < r_k*min]; out = sign(V)*(a1 + sum_k a_k*M_k); groups=1
    is BiT's signed binarizer. input_grad='intended' (default) lets group k pass the
    gradient only inside its mask; 'released' reproduces the code's G*(in_1+...+in_G).
    Init: a1 = 2*mean|V| outside M_2, band means 2*mean|V| over band k (gsb.md §1.3).
    """

    init_factor = 2.0

    def __init__(self, groups: int = 3, ratios: tuple[float, ...] = (0.7, 0.9), stat: str = "row",
                 residual_init: bool = True, input_grad: str = "intended"):
        super().__init__(groups, ratios, stat, residual_init)
        _check_choice("GSBValue", "input_grad", input_grad, INPUT_GRADS)
        self.input_grad = input_grad

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, input_grad={self.input_grad!r}"

    def _mask(self, x: Tensor, ratio: float) -> Tensor:
        hi, lo = self._reduce(x, torch.amax), self._reduce(x, torch.amin)
        return (x > self._threshold(x, hi, ratio, -math.inf)) | (x < self._threshold(x, lo, ratio, math.inf))

    def _base_mean(self, x: Tensor, masks: Tensor) -> Tensor | None:
        if self.groups == 1:
            return x.abs().mean()
        return _masked_mean(x.abs(), ~masks[0])

    def _band_values(self, x: Tensor) -> Tensor:
        return x.abs()

    def _quantize(self, x: Tensor, masks: Tensor) -> Tensor:
        return _GSBValueFn.apply(x, self.alpha, masks, self.input_grad == "released")

    def _first_plane(self, x: Tensor, a1: Tensor) -> Tensor:
        return _indicator(sign_pos(x) > 0, x)


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
    _check_input("bwn_weight", w)
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
        inside = _indicator(~below & ~above, x)
        term = inside * (round_half_up(u) - u) + ctx.qn * _indicator(below, x) + ctx.qp * _indicator(above, x)
        term = term * grad * _grad_scale(x.numel() * ctx.qp)
        d_alpha = term.reshape(term.shape[0], -1).sum(1) if len(ctx.alpha_shape) else term.sum()
        return grad * inside, d_alpha.to(a.dtype).reshape(ctx.alpha_shape), None, None


def _channel_view(a: Tensor, x: Tensor) -> Tensor:
    """A per-channel scale [C] shaped [C, 1, ...] against x; a scalar scale as is."""
    return a.reshape(-1, *([1] * (x.dim() - 1))) if a.dim() else a


class LSQQuantizer(_ScaledQuantizer):
    """Elastic/LSQ uniform quantizer for activations or weights (8 bits by default).

    signed: integers in [-2**(bits-1), 2**(bits-1) - 1], else [0, 2**bits - 1].
    per_channel: number of channels along dim 0 (one scale each; weights), None = one scale.
    Init on the first training forward: alpha = 2*mean|x|/sqrt(Qp) (per channel if per_channel).
    """

    def __init__(self, bits: int = 8, signed: bool = True, per_channel: int | None = None):
        if not isinstance(bits, int) or not 1 <= bits <= 16 or (signed and bits < 2):
            _fail("LSQQuantizer", f"bits must be an integer in [2, 16] (signed) or [1, 16] (unsigned), got {bits!r}")
        if per_channel is not None and (not isinstance(per_channel, int) or per_channel < 1):
            _fail("LSQQuantizer", f"per_channel must be None or a positive channel count, got {per_channel!r}")
        super().__init__(() if per_channel is None else (per_channel,))
        self.bits, self.signed, self.per_channel = bits, bool(signed), per_channel
        self.qn = -(1 << (bits - 1)) if signed else 0
        self.qp = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}, per_channel={self.per_channel}"

    def _check(self, x: Tensor) -> None:
        _check_input("LSQQuantizer", x)
        if self.per_channel is not None and (x.dim() < 1 or x.shape[0] != self.per_channel):
            _fail("LSQQuantizer", f"per_channel={self.per_channel} needs dim 0 of that size, "
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
