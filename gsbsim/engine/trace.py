"""Trace names of a whole model (the block's come from the method table, gsbsim/format/methods.py); also the
names of the HLS test vectors."""
from __future__ import annotations


from gsbsim.format.methods import DEFAULT_METHOD, block_trace_names


def trace_names(depth: int, method: str = DEFAULT_METHOD) -> list[str]:
    """All trace names of a model with `depth` blocks of `method`, in execution order."""
    names = ["input", "patch.acc", "embed"]
    for i in range(depth):
        names += [f"blocks.{i}.{n}" for n in block_trace_names(method)]
    return names + ["head.q", "head.acc", "logits", "pred"]
