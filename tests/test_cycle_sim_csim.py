"""The cycle-level simulation's deadlock report agrees with the bounded-FIFO C-simulation's.

With every FIFO cut to depth 1, ``gsbsim csim --fifo-depth-cap 1`` and the simulation of the
same project's process network (gsbsim/hw/cycle_sim.py, one image as the testbench runs them)
name the same stalled processes, each on the same stream in the same direction or on the same
PIPO; the words counted so far may differ (the C-simulation's fork writes its first output
before it blocks on the second, a simulated II=1 iteration stalls as a whole).
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from gsbsim.cli.app import main
from gsbsim.format.model_file import save_model
from gsbsim.format.random_model import random_model
from gsbsim.hlsgen import toolchain
from gsbsim.hw.cycle_sim import simulate
from gsbsim.hw.folding import global_folding
from gsbsim.hw.process_network import build_network

_COUNTS = re.compile(r" \((depth \d+, )?\d+ elements read so far\)$")


def _stalls(lines: list[str]) -> list[str]:
    return sorted(_COUNTS.sub("", l) for l in lines if l.startswith("  process "))


@pytest.mark.parametrize("method", ["gsb", "didb"])
def test_depth_one_deadlock_matches_the_c_simulation(tmp_path, capsys, method: str) -> None:
    try:
        toolchain.find_compiler()
        toolchain.find_ap_types()
    except toolchain.HlsEnvError as e:  # pragma: no cover - the project's setup installs both
        pytest.skip(str(e))
    model = random_model(np.random.default_rng(11), method=method, depth=2, embed_dim=24, num_heads=3)
    save_model(tmp_path / "m.npz", model.header, model.arrays)
    assert main(["hls", "--model", str(tmp_path / "m.npz"), "--out", str(tmp_path / "p"), "--pe", "2",
                 "--simd", "8"]) == 0
    capsys.readouterr()
    assert main(["csim", str(tmp_path / "p"), "--images", "1", "--fifo-depth-cap", "1"]) == 1
    out = capsys.readouterr().out.splitlines()
    first = out.index("FAIL: image 0: DEADLOCK: every process of the dataflow is blocked")
    csim_lines = [l for l in out[first + 1:] if l.startswith("  process ")]
    sim = simulate(build_network(model.header, global_folding(model.header, 2, 8)), 1, depth_cap=1)
    assert sim.deadlock[0] == "image 0: DEADLOCK: every process of the dataflow is blocked"
    assert _stalls(sim.deadlock) == _stalls(csim_lines) and len(csim_lines) > 20
    # both put the writers to full FIFOs first, and name the attention skip among them (their order among
    # themselves is the order the C-simulation's threads registered, which depends on the schedule)
    n_full = sum("write to a full stream" in l for l in csim_lines)
    assert _stalls(sim.deadlock[1:n_full + 1]) == _stalls(csim_lines[:n_full])
    assert all("write to a full stream" in l for l in sim.deadlock[1:n_full + 1])
    assert any("gsb::stream 'blocks.0.x_skip1': write to a full stream" in l for l in sim.deadlock)
