"""Where the float stage-2 model binarizes, named as gsbsim's trace (docs/integer_model.md §12).

Two ways to look at the float model beside the integer model, both with forward hooks:

* `float_bits(model, images)`: the bits each float binarizer produces when the float model
  runs on its own (end to end: a flip upstream shows up in every layer below it), and its
  predictions;
* `forced_bits(model, images, trace, frac_bits)`: teacher-forced. Every binarizer's output
  is replaced by the integer model's bits (with the float scales), and the residual stream
  entering each block after the first by the integer model's (X·2^-F). Each float binarizer
  then computes, in float, from the integer model's own upstream bits and residual stream,
  so a disagreement there is the export error of what lies between it and the binarizers
  (or block input) above it, not drift from further up: the rounding of the embedding and
  token constants shows at block 0's ln1, a requantization's (proj, fc2) at the next
  LayerNorm's bits. Also returns the float predictions of the heads on the last block's
  teacher-forced output.

Every method with an integer model (gsb, bit, sign, reactnet, didb) is covered.

`float_logits` / `float_predictions`: the float model's own outputs, batched, for the same comparisons.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from . import sign as sign_module

Bits = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]
Value = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Tap:
    """One binarizer: its trace name, the module whose input it binarizes (None: sign's attention
    plane, a plain function), input -> bits in the trace's layout, and bits -> the module's output."""

    name: str
    module: torch.nn.Module | None
    bits: Bits
    value: Value


def _signed_bits(mod, x):
    return x >= 0                                   # sign_pos: sign(0) = +1, as the integer model


def _signed_value(mod, b):
    return mod.scales().to(b.dtype) * (2 * b - 1)


def _unsigned_bits(mod, x):
    return x / mod.scales().to(x.dtype) >= 0.5      # the exact expression of _UnsignedBinarize


def _unsigned_value(mod, b):
    return mod.scales().to(b.dtype) * b


def _planes_bits(mod, x):
    return torch.stack(mod.planes(x)[0], 1)          # [B, G, ...], as the trace's planes


def _value_planes(mod, b):
    """GSBValue's output for planes b [B, G, ...]: (2 s - 1)(a_1 + sum_k a_k M_k)."""
    a = mod.scales().to(b.dtype)
    level = a[0] + sum(a[k] * b[:, k] for k in range(1, b.shape[1]))
    return (2 * b[:, 0] - 1) * level


def _attention_planes(mod, b):
    """GSBAttention's output for planes b [B, G, ...]: a_1 b_1 + sum_k a_k M_k."""
    a = mod.scales().to(b.dtype)
    return sum(a[k] * b[:, k] for k in range(b.shape[1]))


def _uniform_bits(mod, x):
    return x >= 1.0 / x.shape[-1]


def _uniform_value(mod, b):
    return b


def block_taps(blk, p: str) -> list[Tap]:
    """The binarizers of one block in execution order (p = 'blocks.{i}.')."""
    at, mlp = blk.attn, blk.mlp
    taps = [Tap(p + "ln1.bits", at.qkv.act_q, _signed_bits, _signed_value)]
    if hasattr(at, "band_gain"):                       # didb: the HFSC bands
        for qk in ("q", "k"):
            for band in ("low", "high"):
                taps.append(Tap(f"{p}{qk}.{band}", getattr(at, f"{qk}_bin_{band}"), _signed_bits, _signed_value))
    else:
        taps += [Tap(p + "q.bits", at.q_bin, _signed_bits, _signed_value),
                 Tap(p + "k.bits", at.k_bin, _signed_bits, _signed_value)]
    if hasattr(at, "v_gsb"):
        taps.append(Tap(p + "v.planes", at.v_gsb, _planes_bits, _value_planes))
        taps.append(Tap(p + "a.planes", at.a_gsb, _planes_bits, _attention_planes))
    else:                                              # sign: a*sign(V), then the plane 1[A >= 1/N]
        taps.append(Tap(p + "v.planes", at.v_bin, lambda m, x: (x >= 0).unsqueeze(1),
                        lambda m, b: _signed_value(m, b[:, 0])))
        taps.append(Tap(p + "a.planes", None, lambda m, x: _uniform_bits(m, x).unsqueeze(1),
                        lambda m, b: b[:, 0]))
    taps += [Tap(p + "proj.bits", at.proj.act_q, _signed_bits, _signed_value),
             Tap(p + "ln2.bits", mlp.fc1.act_q, _signed_bits, _signed_value),
             Tap(p + "fc1.bits", mlp.fc2.act_q, _unsigned_bits, _unsigned_value)]
    return taps


def model_taps(model) -> list[Tap]:
    return [t for i, blk in enumerate(model.blocks) for t in block_taps(blk, f"blocks.{i}.")]


@contextlib.contextmanager
def _hooked(model, on_tap, residual: Callable[[int], torch.Tensor] | None) -> Iterator[None]:
    """Install the hooks: on_tap(tap, input) -> replacement output or None; residual(i) -> the
    residual stream block i >= 1 must start from instead of its input, or None."""
    handles = []
    taps = model_taps(model)
    by_block_plane = {}
    for tap in taps:
        if tap.module is None:
            by_block_plane[tap.name.rsplit(".", 2)[0]] = tap
        else:
            handles.append(tap.module.register_forward_hook(
                lambda mod, inp, out, tap=tap: on_tap(tap, inp[0])))
    current = {"block": None}
    if by_block_plane:                                  # sign: the attention plane is a function
        for i, blk in enumerate(model.blocks):
            handles.append(blk.attn.register_forward_pre_hook(
                lambda mod, inp, i=i: current.__setitem__("block", f"blocks.{i}")))
    if residual is not None:
        for i, blk in enumerate(model.blocks[1:], 1):
            handles.append(blk.register_forward_pre_hook(lambda mod, inp, i=i: (residual(i),)))
    original = sign_module.uniform_threshold

    def plane(attn):
        tap = by_block_plane[current["block"]]
        out = on_tap(tap, attn)
        return original(attn) if out is None else out

    try:
        if by_block_plane:
            sign_module.uniform_threshold = plane
        yield
    finally:
        sign_module.uniform_threshold = original
        for h in handles:
            h.remove()


@torch.no_grad()
def float_logits(model: torch.nn.Module, images: np.ndarray, batch: int = 256,
                 dtype: torch.dtype = torch.float32) -> np.ndarray:
    """The float model's logits [N, C] in eval mode, ``batch`` images at a time; ``dtype`` is the
    input's (a model converted with .double() takes float64: benchmarks/disagreements.py)."""
    model.eval()
    return np.concatenate([model(torch.from_numpy(images[i:i + batch]).to(dtype)).numpy()
                           for i in range(0, len(images), batch)])


def float_predictions(model: torch.nn.Module, images: np.ndarray, batch: int = 256) -> np.ndarray:
    return float_logits(model, images, batch).argmax(-1)


@torch.no_grad()
def float_bits(model, images: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The float model's own bits per binarizer (uint8, trace layout) and its predictions, images uint8
    [B, C, H, W]. The hooks only read, so the predictions are float_predictions' (one forward, not two)."""
    bits: dict[str, np.ndarray] = {}

    def keep(tap, x):
        bits[tap.name] = tap.bits(tap.module, x).to(torch.uint8).numpy()

    model.eval()
    with _hooked(model, keep, None):
        logits = model(torch.from_numpy(images).float())
    return bits, logits.argmax(-1).numpy()


@torch.no_grad()
def forced_bits(model, images: np.ndarray, trace: dict[str, np.ndarray],
                frac_bits: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Teacher-forced float bits per binarizer (uint8, trace layout) and the float predictions of
    the heads on the integer model's final residual stream; `trace` is gsbsim's trace of `images`."""
    bits: dict[str, np.ndarray] = {}
    unit = 2.0 ** -frac_bits

    def force(tap, x):
        bits[tap.name] = tap.bits(tap.module, x).to(torch.uint8).numpy()
        b = torch.from_numpy(trace[tap.name].astype(np.float32)).reshape(bits[tap.name].shape)
        return tap.value(tap.module, b.to(x.dtype))

    def residual(i):     # the integer X entering block i, on the float model's float32
        return torch.from_numpy(trace[f"blocks.{i - 1}.resid2"].astype(np.float64) * unit).float()

    model.eval()
    with _hooked(model, force, residual):
        logits = model(torch.from_numpy(images).float())
    return bits, logits.argmax(-1).numpy()
