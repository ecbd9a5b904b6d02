"""Test tiers (setup.cfg markers): ``hls`` needs g++ and the ap_types headers (C-simulation), ``train`` runs
PyTorch training or executes notebooks, ``slow`` is a longer end-to-end run. ``make test-quick`` runs
everything else (numpy, Numba, torch units) in well under a minute; ``make test`` (CI) runs all.

The tiers follow the files: a whole module is one tier, so a new test lands in its file's tier.
"""
from __future__ import annotations

import pytest

_TIER_OF_FILE = {
    "test_hls_kernels.py": "hls", "test_hls_methods.py": "hls", "test_hls_model.py": "hls",
    "test_method_csim.py": "hls", "test_hls_dataflow.py": "hls", "test_edge_csim.py": "hls", "test_packaging.py": "slow",
    # subprocesses killed at random moments and signal tests: about a minute of waiting
    "test_error_contract.py": "slow",
    "test_train.py": "train", "test_notebooks.py": "train", "test_accuracy_bench.py": "train",
    "test_recipe.py": "train", "test_cycle_sim_csim.py": "hls", "test_cycle_sim_deit.py": "slow",
    "test_train_kill.py": "train",  # real trainings killed with SIGKILL/SIGINT, then --resume
    "test_train_images.py": "train", "test_int_aware_train.py": "train",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = _TIER_OF_FILE.get(item.path.name)
        if tier:
            item.add_marker(getattr(pytest.mark, tier))
