"""Float and integer models agree at exact ties (accumulator 0): the float reference computes
binary products on exact 0/±1 codes, and the exporter rounds value offsets toward the exact
sign. Also: where a checkpoint's data lives (export / agreement --data-path)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gsbsim.format.conventions import pack_bits, xnor_dot
from reference.checkpoint import checkpoint_data
from reference.layers import BinaryLinear, unit_codes


def _linear(k: int, n: int, seed: int) -> BinaryLinear:
    torch.manual_seed(seed)
    lin = BinaryLinear(k, n, act="signed")
    with torch.no_grad():
        lin.bias.zero_()                      # timm's init: ties at accumulator 0 are exact zeros
        lin.act_q.alpha.fill_(0.3712)         # a scale whose multiples round in float32
        lin.act_q.initialized.fill_(True)
    return lin.eval()


def test_binary_linear_is_exactly_zero_where_the_accumulator_is_zero():
    k, n = 192, 64
    lin = _linear(k, n, 0)
    x = torch.randn(256, k)
    with torch.no_grad():
        out = lin(x).numpy()
    bits = (x.numpy() + lin.move.bias.detach().numpy() >= 0).astype(np.uint8)
    w = lin.weight.detach().numpy()
    wbits = (w - w.mean() >= 0).astype(np.uint8)
    acc = xnor_dot(pack_bits(bits), pack_bits(wbits), k)
    assert (acc == 0).sum() > 100                       # ties really occur (K even)
    assert np.array_equal(out == 0, acc == 0)
    assert np.array_equal(out >= 0, acc >= 0)           # so the next sign(.) equals the integer bit
    # the naive product leaves float residue at many of those ties (what this guards against)
    with torch.no_grad():
        naive = F.linear(lin.quant_input(x), lin.quant_weight()).numpy()
    assert np.count_nonzero(naive[acc == 0]) > 0


def test_binary_linear_gradients_equal_the_plain_product():
    lin = _linear(70, 12, 1)
    lin.train()
    x = torch.randn(8, 70, requires_grad=True)
    grads = []
    for exact in (True, False):
        lin.zero_grad()
        x.grad = None
        y = lin(x) if exact else F.linear(lin.quant_input(x), lin.quant_weight(), lin.bias)
        (y * torch.linspace(-1, 1, 12)).sum().backward()
        grads.append([x.grad.clone(), lin.weight.grad.clone(), lin.act_q.alpha.grad.clone(), lin.move.bias.grad.clone()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_unit_codes_of_binary_tensors():
    codes, s = unit_codes(torch.tensor([0.37, -0.37, 0.37]))
    assert codes.tolist() == [1.0, -1.0, 1.0] and float(s) == np.float32(0.37)
    codes, s = unit_codes(torch.zeros(3))                 # an all-zero {0, a} plane: no division by 0
    assert codes.tolist() == [0.0, 0.0, 0.0] and float(s) == 1.0


def test_value_offset_keeps_the_sign_of_a_tiny_negative_bias():
    from reference import export as ex
    model, calib = ex.random_student("digits", 1, 10, 1, 0)
    at = model.blocks[0].attn
    e = model.embed_dim
    with torch.no_grad():
        at.qkv.bias[2 * e:] = -1e-9                     # after little training from timm's zeros
        at.v_move.bias.zero_()
    _, arrays = ex.export(model, calib, "digits", "test")
    off = arrays["blocks.0.v.offset"]
    assert (off == -1).all()                             # acc = 0 -> Vq = -1 < 0: bit 0, as the float sign


def test_checkpoint_data_comes_from_the_training_arguments():
    meta = {"dataset": "cifar100", "img_size": 32, "args": {"data": "cifar100", "data_path": "/data/c100"}}
    assert checkpoint_data(meta) == {"name": "cifar100", "path": "/data/c100", "img_size": 32}
    assert checkpoint_data(meta, "/elsewhere")["path"] == "/elsewhere"
    assert checkpoint_data({})["name"] == "digits"
