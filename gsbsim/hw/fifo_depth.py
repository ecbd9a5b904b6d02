"""The deadlock-free minimal FIFO depth rule of a generated dataflow.

The process network (gsbsim/hw/process_network.py) gives its FIFOs these depths; the generator
takes its ``STREAM depth=`` pragmas from that network through gsbsim/hw/fifo_plan.py (the
minimum, or sized depths never below it), so generator and simulation cannot drift.  docs/hls.md §3 explains the rule: a FIFO holds what its
producer writes before its consumer reads the first word.  On a chain that is Vitis' default 2;
the residual skips are not chains: the attention's skip holds the whole tensor (N*E words, the
softmax needs every key), the MLP's skip one token (E words, the LayerNorm reads a whole token).
"""
from __future__ import annotations

__all__ = ["DEFAULT_DEPTH", "skip_depths"]

DEFAULT_DEPTH = 2   # Vitis' default FIFO depth; enough on a chain


def skip_depths(num_tokens: int, embed_dim: int) -> tuple[int, int]:
    """Depths of a block's two residual skips: (attention skip x_skip1, MLP skip x_skip2)."""
    return num_tokens * embed_dim, embed_dim
