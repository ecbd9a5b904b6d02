"""The digits demo model's shape (what `python -m reference.export --random` writes), for the
cost, folding, buffer and cycle tests: its header, a random model of it, and that model as a file.

Not a test module: imported as ``tests.support.shapes``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gsbsim.format.model_file import IntModel, save_model
from gsbsim.format.random_model import random_model
from gsbsim.hw.costs import header_for_shape

DIGITS_SHAPE = dict(img_size=8, patch_size=4, in_chans=1, embed_dim=96, depth=4, num_heads=3, mlp_hidden=384,
                    num_classes=10, groups=3)
DIGITS = header_for_shape(**DIGITS_SHAPE)   # a header without arrays: costs, folding, stages


def digits_model(seed: int) -> IntModel:
    """A random model of the digits shape."""
    return random_model(np.random.default_rng(seed), **DIGITS_SHAPE)


def shaped_file(path: Path, seed: int) -> Path:
    """digits_model(seed) saved at `path`."""
    m = digits_model(seed)
    save_model(path, m.header, m.arrays)
    return path
