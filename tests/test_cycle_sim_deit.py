"""The cycle-level simulation at DeiT-tiny size (224x224, 16x16 patches, E 192, 12 blocks, 3 heads):
random models of gsb (G 3), reactnet and didb, at PE 16 / SIMD 64 (the PE 4 / SIMD 32 figures of
docs/hls.md §5 come from `gsbsim cycles`; they take about half a minute of CPU per run).

The analytic bound is at most the simulated II at the emitted depths, and FIFOs sized by the
simulation (FINN's method) reach it exactly.
"""
from __future__ import annotations

import numpy as np
import pytest

from gsbsim.format.random_model import random_model
from gsbsim.hw.cycle_sim import simulate, size_fifos
from gsbsim.hw.folding import global_folding
from gsbsim.hw.process_network import build_network, check_network


@pytest.mark.parametrize("method", ["gsb", "reactnet", "didb"])
def test_deit_tiny_bound_and_sized_fifos(method: str) -> None:
    m = random_model(np.random.default_rng(0), img_size=224, patch_size=16, in_chans=3, embed_dim=192, depth=12,
                     num_heads=3, mlp_hidden=768, num_classes=1000, groups=3 if method == "gsb" else 1,
                     method=method)
    net = build_network(m.header, global_folding(m.header, 16, 64))
    assert check_network(net) == []
    r = simulate(net, 3)
    assert not r.deadlock and r.ii >= r.bound["ii"]
    depths, _ = size_fifos(net, 3)
    assert simulate(net, 3, depths=depths).ii == r.bound["ii"]
