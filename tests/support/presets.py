"""A throw-away training preset registered for one test module, trained on one torch thread."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from reference.presets import PRESETS, Preset


@contextlib.contextmanager
def registered_preset(name: str, preset: Preset) -> Iterator[Preset]:
    """``PRESETS[name] = preset`` and one torch thread (tiny models; two cores shared), undone after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    PRESETS[name] = preset
    try:
        yield preset
    finally:
        PRESETS.pop(name, None)
        torch.set_num_threads(threads)
