"""Engine checks shared by the tests: golden == fast at every traced tensor, the same overflow error from
every path, models derived with edited arrays, a forced A.V strategy.

Not a test module: imported as ``tests.support.engines`` (setup.cfg puts the repository root on sys.path).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest

from gsbsim.engine import errors, fast, golden
from gsbsim.engine.trace import trace_names
from gsbsim.format.conventions import unpack_bits
from gsbsim.format.model_file import IntModel


def assert_same(model: IntModel, x: np.ndarray) -> dict[str, np.ndarray]:
    """Golden and fast agree on every trace tensor (names, order, dtype, shape, integers); the golden traces."""
    lg, tg = golden.forward(model, x, trace=True)
    lf, tf = fast.forward(model, x, trace=True)
    assert list(tf) == list(tg) == trace_names(model.depth, model.method)
    for name in tg:
        assert tf[name].dtype == tg[name].dtype, (name, tf[name].dtype, tg[name].dtype)
        assert tf[name].shape == tg[name].shape, (name, tf[name].shape, tg[name].shape)
        assert np.array_equal(tf[name], tg[name]), name
    assert lf.dtype == lg.dtype == np.int64 and np.array_equal(lf, lg)
    plain, empty = fast.forward(model, x)
    assert empty == {} and np.array_equal(plain, lg)
    _untraced_attention_same(model, x, tg)
    return tg


def _untraced_attention_same(model: IntModel, x: np.ndarray, tg: dict[str, np.ndarray]) -> None:
    """Untraced, the gsb attention keeps less (one A row, int32 when it fits) than traced: its attention
    planes, ctx and proj input bits (the per-layer path, fast.forward_profiled) equal the golden traces
    too (the logits alone can hide a wrong plane bit)."""
    if model.features.attention != "gsb":
        return
    outs = []
    real = fast.gsb_attention_batch

    def capture(*args):
        outs.append(real(*args))
        return outs[-1]

    fast.gsb_attention_batch = capture
    try:
        fast.forward_profiled(model, x)
    finally:
        fast.gsb_attention_batch = real
    b, n, e = x.shape[0], model.num_tokens, model.embed_dim
    assert len(outs) == model.depth
    for i, out in enumerate(outs):
        p = f"blocks.{i}."
        planes = unpack_bits(out[6], n).astype(np.uint8).transpose(0, 2, 1, 3, 4)
        assert np.array_equal(planes, tg[p + "a.planes"]), p + "a.planes (untraced)"
        assert np.array_equal(out[7].reshape(b, n, e), tg[p + "ctx"]), p + "ctx (untraced)"
        assert np.array_equal(unpack_bits(out[8], e).astype(np.uint8).reshape(b, n, e), tg[p + "proj.bits"]), p


def same_overflow_error(model: IntModel, x: np.ndarray) -> str:
    """Golden, fast (traced) and fast_batch (2 threads) raise IntegerOverflowError with the same message."""
    with pytest.raises(errors.IntegerOverflowError) as eg:
        golden.forward(model, x)
    with pytest.raises(errors.IntegerOverflowError) as ef:
        fast.forward(model, x, trace=True)
    with pytest.raises(errors.IntegerOverflowError) as eb:
        fast.forward_batch(model, x, threads=2)
    assert str(ef.value) == str(eg.value) == str(eb.value)
    return str(eg.value)


def derive(model: IntModel, **changes: np.ndarray) -> IntModel:
    """The model with some arrays replaced, unvalidated. Keys are array names, or keywords with "__" for
    "." and "b0__" for "blocks.0." (b0__fc1__slope = blocks.0.fc1.slope)."""
    arrays = dict(model.arrays)
    arrays.update({k.replace("b0__", "blocks.0.").replace("__", "."): v for k, v in changes.items()})
    return IntModel(header=model.header, arrays=arrays, path="<test>")


@contextlib.contextmanager
def av_strategy(strategy: str) -> Iterator[None]:
    """Force gsbsim.fast's A.V strategy ("auto", "sparse" or "dense", kernels.AV_STRATEGIES) in a with block."""
    saved = fast.av_strategy
    fast.av_strategy = strategy
    try:
        yield
    finally:
        fast.av_strategy = saved
