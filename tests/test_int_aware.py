"""The float model on the integer grid (reference/int_grid.py, docs/integer_model.md §11), quick tier:
the switch rounds where the integer model rounds (checked on the values themselves), is scoped, and
passes gradients straight through. tests/test_int_aware_train.py trains: agreement with the exported
integer model, and the trainer's --int-aware-epochs.
"""
from __future__ import annotations

import pytest
import torch

from gsbsim.data.digits import digits_split
from gsbsim.format.conventions import PROB_BITS
from reference.int_grid import (
    IntGrid,
    grid_of,
    integer_grid,
    set_integer_grid,
    ste_round,
)
from reference.models import build_model
from reference.presets import Preset, Recipe

METHODS = ("gsb", "bit", "sign", "reactnet", "didb")
SMALL = Preset(name="int_aware_small", img_size=8, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
               dataset="digits", recipes={s: Recipe(epochs=1, batch_size=32, lr=1e-3)
                                          for s in ("teacher", "stage1", "stage2")})


def _student(method: str, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(SMALL, "stage2", 10, 1, groups=3 if method == "gsb" else 1, method=method)
    x, _ = digits_split("train")
    images = torch.from_numpy(x[:64]).float()
    model.train()
    with torch.no_grad():
        model(images)                                 # the quantizers' data-dependent initialisation
    return model.eval(), images


def _multiple_of(t: torch.Tensor, bits: int) -> bool:
    s = t.detach().double() * 2.0 ** bits
    return bool(torch.equal(s, torch.floor(s)))


@pytest.mark.parametrize("method", METHODS)
def test_the_grid_holds_the_values_it_claims(method):
    model, images = _student(method)
    f = 9                                             # coarse, so that an unrounded value would show
    seen: dict[str, list[torch.Tensor]] = {"resid": [], "prob": [], "act": []}
    hooks = [blk.register_forward_hook(lambda m, i, o: seen["resid"].append(o)) for blk in model.blocks]
    hooks.append(model.blocks[0].register_forward_pre_hook(lambda m, i: seen["resid"].append(i[0])))
    for m in model.modules():
        if hasattr(m, "out_terms"):                  # reactnet/didb activation units: z on 2^-F
            hooks.append(m.register_forward_hook(lambda m, i, o: seen["act"].append(o)))
        if type(m).__name__ == "GSBAttention":       # A = P + bias on 2^-PB
            hooks.append(m.register_forward_hook(lambda m, i, o: seen["prob"].append(i[0])))
    with torch.no_grad(), integer_grid(model, f) as grid:
        model(images[:8])
    for h in hooks:
        h.remove()
    assert grid.prob_bits == PROB_BITS
    assert len(seen["resid"]) == len(model.blocks) + 1
    assert all(_multiple_of(t, f) for t in seen["resid"])
    assert all(_multiple_of(t, PROB_BITS) for t in seen["prob"])
    assert all(_multiple_of(t, f) for t in seen["act"])
    assert bool(seen["prob"]) == (method != "sign") and bool(seen["act"]) == (method in ("reactnet", "didb"))
    # off the grid the same values are not multiples (the check above can fail)
    seen["resid"].clear()
    hooks = [blk.register_forward_hook(lambda m, i, o: seen["resid"].append(o)) for blk in model.blocks]
    with torch.no_grad():
        model(images[:8])
    for h in hooks:
        h.remove()
    assert not all(_multiple_of(t, f) for t in seen["resid"])


def test_the_switch_is_scoped_and_refuses_a_float_model():
    model, images = _student("gsb")
    with torch.no_grad():
        before = model(images[:8])
        with integer_grid(model, 6):
            assert all(grid_of(m) == IntGrid(6) for m in model.modules())
            coarse = model(images[:8])
        assert all(grid_of(m) is None for m in model.modules())
        assert torch.equal(model(images[:8]), before)
    assert not torch.equal(coarse, before)              # F = 6 changes the logits
    teacher = build_model(SMALL, "stage1", 10, 1)
    with pytest.raises(ValueError, match="only a stage-2 binary student"):
        set_integer_grid(teacher, IntGrid(10))
    with pytest.raises(ValueError, match="frac_bits must be an integer"):
        IntGrid(31)


def test_rounding_passes_the_gradient_straight_through():
    x = torch.tensor([0.1, -0.26, 0.5, 3.999], requires_grad=True)
    y = ste_round(x, 2)
    assert y.tolist() == [0.0, -0.25, 0.5, 4.0]
    g = torch.tensor([1.0, -2.0, 3.0, 0.5])
    y.backward(g)
    assert torch.equal(x.grad, g)


@pytest.mark.parametrize("method", ("gsb", "didb"))
def test_the_model_trains_on_the_grid(method):
    model, images = _student(method)
    model.train()
    with integer_grid(model, 8):
        loss = model(images[:16])[0].logsumexp(-1).mean()
        loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in ("pos_embed", "cls_token", "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.bias", "blocks.0.norm1.weight"):
        assert grads[name] is not None and bool(grads[name].abs().sum() > 0), name
    assert all(g is None or bool(torch.isfinite(g).all()) for g in grads.values())
