"""The blocks' arrays of a gsb model with requant post-linears, stacked [depth, ...] once per model, so the
untraced forward pass runs all blocks in one jitted call (``fast_block.gsb_requant_blocks``).

Building ~25 arguments per block and dispatching twelve jitted calls cost ~0.13 ms per forward pass
(DeiT-Tiny, Zen 4): 3 % of the whole image. A stack is kept per model object while it lives and is
used only while every array it was made from is still the model's (checked by identity on each
call; replacing an array rebuilds it). The source arrays are made read-only when stacked, as the
weight layouts (fast_ops.transposed) already are: an in-place change would otherwise run on stale
copies, so it raises instead.
"""
from __future__ import annotations

import operator
import threading
import weakref
from typing import NamedTuple

import numpy as np

from gsbsim.engine.kernels import stacked_weight_layout
from gsbsim.format.model_file import IntModel


class BlockStack(NamedTuple):
    """Per-block arrays stacked along a leading depth axis (weights transposed, as kernels.weight_layout)."""
    ln1_sign: np.ndarray
    ln1_thr: np.ndarray
    w_qkv: np.ndarray
    q_thr: np.ndarray
    k_thr: np.ndarray
    v_off: np.ndarray
    exp_lut: np.ndarray
    att_bias: np.ndarray
    thr1: np.ndarray
    ctx_scale: np.ndarray
    in_thr: np.ndarray
    w_proj: np.ndarray
    proj_mult: np.ndarray
    proj_bias: np.ndarray
    ln2_sign: np.ndarray
    ln2_thr: np.ndarray
    w_fc1: np.ndarray
    fc1_hi: np.ndarray
    fc1_lo: np.ndarray
    w_fc2: np.ndarray
    fc2_mult: np.ndarray
    fc2_bias: np.ndarray
    # derived: qkv split by columns for the Q|K threshold epilogue (fast_block; heads of whole words)
    w_qk: np.ndarray        # the Q and K columns of w_qkv
    w_v: np.ndarray         # its V columns
    qk_hi: np.ndarray       # int32 [depth, 2E]: q.thr then k.thr
    qk_lo: np.ndarray       # int32 [depth, 2E]: INT32_MIN (one-sided: no accumulator reaches it)


#: the file's array name of each field (``blocks.{i}.`` + name)
SOURCES = dict(ln1_sign="ln1.sign", ln1_thr="ln1.thr", w_qkv="qkv.weight", q_thr="q.thr", k_thr="k.thr",
               v_off="v.offset", exp_lut="exp_lut", att_bias="att_bias", thr1="a.thr1", ctx_scale="ctx.scale",
               in_thr="proj.in_thr", w_proj="proj.weight", proj_mult="proj.mult", proj_bias="proj.bias",
               ln2_sign="ln2.sign", ln2_thr="ln2.thr", w_fc1="fc1.weight", fc1_hi="fc1.thr_hi",
               fc1_lo="fc1.thr_lo", w_fc2="fc2.weight", fc2_mult="fc2.mult", fc2_bias="fc2.bias")
assert tuple(SOURCES) == BlockStack._fields[:len(SOURCES)]


class _Entry(NamedTuple):
    model: weakref.ref
    keys: tuple[str, ...]
    sources: tuple[np.ndarray, ...]
    stack: BlockStack


_STACKS: dict[int, _Entry] = {}
_LOCK = threading.Lock()     # forward_batch's threads may ask for the same model's stack at once


def _keys(depth: int) -> tuple[str, ...]:
    return tuple(f"blocks.{i}.{name}" for name in SOURCES.values() for i in range(depth))


def _build(sources: tuple[np.ndarray, ...], depth: int) -> BlockStack:
    """The stack of the source arrays in _keys' order (field by field, block by block)."""
    parts = {field: sources[k * depth:(k + 1) * depth] for k, field in enumerate(SOURCES)}
    fields = {field: stacked_weight_layout(p) if field.startswith("w_")
              else np.ascontiguousarray(np.stack([np.asarray(a) for a in p])) for field, p in parts.items()}
    e2 = 2 * fields["q_thr"].shape[1]
    fields["w_qk"] = stacked_weight_layout([w[:e2] for w in parts["w_qkv"]])
    fields["w_v"] = stacked_weight_layout([w[e2:] for w in parts["w_qkv"]])
    fields["qk_hi"] = np.concatenate([fields["q_thr"], fields["k_thr"]], axis=1).astype(np.int32)
    fields["qk_lo"] = np.full_like(fields["qk_hi"], np.iinfo(np.int32).min)
    return BlockStack(**fields)


def block_stack(model: IntModel) -> BlockStack:
    """The model's stacked block arrays: cached per model object, rebuilt when one of its arrays was replaced."""
    arrays = model.arrays
    hit = _STACKS.get(id(model))
    if hit is not None and hit.model() is model and len(hit.keys) == len(SOURCES) * model.depth and all(
            map(operator.is_, map(arrays.get, hit.keys), hit.sources)):
        return hit.stack
    keys = _keys(model.depth)
    sources = tuple(arrays[k] for k in keys)
    stack = _build(sources, model.depth)
    for a in sources:
        if isinstance(a, np.ndarray):
            a.flags.writeable = False
    key = id(model)
    with _LOCK:
        _STACKS[key] = _Entry(weakref.ref(model, lambda _, key=key: _STACKS.pop(key, None)), keys, sources, stack)
    return stack
