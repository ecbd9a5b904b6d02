"""GSB: Group Superposition Binarization of the attention probabilities and the Value tensor
(research/gsb.md §2; docs/method.md). A tensor becomes a base binary group plus masked residual groups with
learnable scales; the scale gradients follow the paper's corrected derivation (``scale_grad="bit"`` is BiT's).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from gsbsim.format.conventions import RATIO_BITS, quantize_ratio, ratio_numerator

from reference.quantizers import (ALPHA_EPS, INPUT_GRADS, MASK_STATS, ScaledQuantizer, check_choice, check_input, quantizer_fail, grad_scale, indicator, round_half_up, sign_pos)

__all__ = ["GSBAttention", "GSBValue"]


def _group_scales(a: Tensor, ndim: int) -> Tensor:
    """Scales of groups 2..G shaped to broadcast against a [G-1, *x.shape] mask stack."""
    return a[1:].reshape(-1, *([1] * ndim))


def _mask_grads(masks: Tensor, grad: Tensor) -> Tensor:
    """da_k = sum(M_k*G)/sqrt(max(sum M_k, 1)) for every mask group (gsb.md §2.3)."""
    counts = masks.flatten(1).sum(1)
    return (masks * grad).flatten(1).sum(1) * grad_scale(counts)


class _GSBAttentionFn(torch.autograd.Function):
    """a1*1[A/a1 >= 0.5] + sum_k a_k*M_k, with the gradients of gsb.md §2.3."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, masks: Tensor) -> Tensor:
        a = alpha.clamp(min=ALPHA_EPS)
        ctx.save_for_backward(x, a, masks)
        base = a[0] * indicator(x / a[0] >= 0.5, x)
        return base + (_group_scales(a, x.dim()) * masks).sum(0)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, a, masks = ctx.saved_tensors
        u = x / a[0]
        inside = indicator((u >= 0) & (u <= 1), x)
        term1 = indicator(u > 1, x) + inside * (round_half_up(u) - u)
        d_a1 = (term1 * grad).sum() * grad_scale(x.numel())
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
        in1 = indicator((u1 >= -1) & (u1 <= 1), x)
        d_a1 = ((s - in1 * u1) * grad).sum() * grad_scale(x.numel())
        uk = x * masks / _group_scales(a, x.dim())
        ink = indicator((uk >= -1) & (uk <= 1), x)
        termk = s * masks - ink * uk
        d_ak = (termk * grad).flatten(1).sum(1) * grad_scale(masks.flatten(1).sum(1))
        d_alpha = torch.cat([d_a1.reshape(1), d_ak]).to(a.dtype)
        extra = ink if ctx.released else masks * ink
        return grad * (in1 + extra.sum(0)), d_alpha, None, None


class _GSBBase(ScaledQuantizer):
    """What GSB attention and value share: arguments, mask statistics, scale init, planes.

    The input is [batch, ..., row]; masks compare against a statistic over the last
    dim ('row'), over all dims but the batch ('image') or over the whole tensor
    ('batch', the released code). Masks carry no gradient.
    """

    init_factor: float  # 4 for the unsigned attention, 2 for the signed value

    def __init__(self, groups: int, ratios: tuple[float, ...], stat: str, residual_init: bool):
        where = type(self).__name__
        if not isinstance(groups, int) or groups < 1:
            quantizer_fail(where, f"groups must be an integer >= 1, got {groups!r}")
        ratios = tuple(float(r) for r in ratios)
        if len(ratios) != groups - 1:
            quantizer_fail(where, f"{groups} groups need {groups - 1} ratios, got {len(ratios)}: {ratios}")
        q = tuple(quantize_ratio(r) for r in ratios)
        if any(not 0 < r < 1 for r in q) or any(lo >= hi for lo, hi in zip(q, q[1:])):
            quantizer_fail(where, f"ratios must lie in (0, 1) and increase strictly after rounding to "
                         f"multiples of 2**-{RATIO_BITS}; got {ratios} -> {q}")
        check_choice(where, "stat", stat, MASK_STATS)
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
        check_input(type(self).__name__, x, min_dim=2)
        self._maybe_init(x)
        return self._quantize(x, self.masks(x))

    def planes(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Binary planes [first, M_2..M_G] as {0,1} float tensors, and the clamped scales.

        The forward output is sum_k scales[k]*plane_k (attention) or
        (2*plane_0 - 1)*(scales[0] + sum_k scales[k]*plane_k) (value).
        """
        check_input(type(self).__name__, x, min_dim=2)
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
        return indicator(x / a1 >= 0.5, x)


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
        check_choice("GSBValue", "input_grad", input_grad, INPUT_GRADS)
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
        return indicator(sign_pos(x) > 0, x)


