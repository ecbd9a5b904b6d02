"""Checks shared by the fast-path tests (tests/test_fast.py, tests/test_fast_methods.py).

Not a test module itself: imported as ``tests.fast_checks`` (setup.cfg puts the repository root
on sys.path).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from gsbsim.engine import fast, golden
from gsbsim.engine.trace import trace_names
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
    return tg


@contextlib.contextmanager
def context_method(method: str) -> Iterator[None]:
    """Force gsbsim.fast's A.V context method ("auto", "sparse" or "dense") in a with block."""
    saved = fast.av_strategy
    fast.av_strategy = method
    try:
        yield
    finally:
        fast.av_strategy = saved
