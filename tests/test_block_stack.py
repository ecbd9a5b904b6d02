"""The stacked block arrays behind the one-call forward pass (gsbsim.engine.block_stack): reused while the
model's arrays are the ones stacked, rebuilt when one is replaced, and never run stale."""
from __future__ import annotations

import numpy as np
import pytest

from gsbsim.engine import block_stack, fast, golden
from gsbsim.engine.block_stack import SOURCES
from gsbsim.format.random_model import random_images, random_model


@pytest.fixture()
def model_and_images():
    rng = np.random.default_rng(5)
    model = random_model(rng, embed_dim=48, depth=3, num_heads=3, mlp_hidden=96)
    return model, random_images(rng, model, 2)


def test_stack_holds_every_block_array(model_and_images):
    """Each field, block i, is that block's file array (weights: transposed, as the per-layer path runs them)."""
    model, _ = model_and_images
    s = block_stack.block_stack(model)
    for field, name in SOURCES.items():
        for i in range(model.depth):
            src = model.arrays[f"blocks.{i}.{name}"]
            want = src.T if field.startswith("w_") else src
            assert np.array_equal(getattr(s, field)[i], want), (field, i)
    for field in ("w_qkv", "w_proj", "w_fc1", "w_fc2"):       # 64-byte aligned layouts
        assert getattr(s, field).ctypes.data % 64 == 0


def test_stack_is_reused_and_rebuilt_when_an_array_is_replaced(model_and_images):
    model, x = model_and_images
    first = block_stack.block_stack(model)
    assert block_stack.block_stack(model) is first
    # a replaced array (here block 2's fc2 bias) must reach the forward pass
    bias = model.arrays["blocks.2.fc2.bias"].copy()
    bias += np.int64(1) << np.int64(model.shifts["resid"] + 4)
    model.arrays["blocks.2.fc2.bias"] = bias
    rebuilt = block_stack.block_stack(model)
    assert rebuilt is not first and np.array_equal(rebuilt.fc2_bias[2], bias)
    assert np.array_equal(fast.forward(model, x)[0], golden.forward(model, x)[0])


def test_stacked_arrays_cannot_change_in_place(model_and_images):
    """An in-place edit after a forward pass would run the stale stacked copy: it raises instead."""
    model, x = model_and_images
    fast.forward(model, x)
    with pytest.raises(ValueError, match="read-only"):
        model.arrays["blocks.1.q.thr"][0] += 1


def test_a_changed_depth_rebuilds(model_and_images):
    model, x = model_and_images
    block_stack.block_stack(model)
    shallow = type(model)(header=dict(model.header, depth=2), arrays=model.arrays, path="<test>")
    assert block_stack.block_stack(shallow).w_qkv.shape[0] == 2
    model.header["depth"] = 2          # the same model object, edited header
    assert block_stack.block_stack(model).w_qkv.shape[0] == 2
