"""The binary DeiT students and teachers (reference/models.py, blocks.py, layers.py, config.py)."""
from __future__ import annotations

import pytest
import torch

from reference.config import QuantConfig, default_ratios
from reference.layers import BinaryLinear, scale_pixels
from reference.models import build_model, load_stage1

torch.set_num_threads(1)


def _images(n=3, c=1, size=8, seed=0):
    return torch.randint(0, 256, (n, c, size, size), generator=torch.Generator().manual_seed(seed)).float()


@pytest.mark.parametrize("kind", ["stage1", "stage2"])
def test_students_return_two_heads_in_training_and_their_mean_at_eval(kind):
    torch.manual_seed(0)
    m = build_model("digits", kind, num_classes=10, in_chans=1)
    x = _images()
    m.train()
    cls, dist = m(x)
    assert cls.shape == dist.shape == (3, 10)
    m.eval()
    with torch.no_grad():
        avg = m(x)
        feats = m.forward_features(x)
        expect = (m.head(feats[:, 0]) + m.head_dist(feats[:, 1])) / 2
    assert torch.allclose(avg, expect)


def test_teacher_is_a_timm_vit_on_the_same_pixels():
    from timm.models.vision_transformer import VisionTransformer
    m = build_model("digits", "teacher", num_classes=10, in_chans=1).eval()
    assert isinstance(m.net, VisionTransformer)
    x = _images()
    with torch.no_grad():
        assert torch.equal(m(x), m.net(scale_pixels(x)))


def test_pixels_map_exactly_to_int8():
    from gsbsim.format.conventions import pixels_to_int8
    p = torch.arange(256.0)
    assert torch.equal(scale_pixels(p) * 128, p - 128)
    as_int8 = pixels_to_int8(p.numpy().astype("uint8"))
    assert as_int8.dtype.name == "int8" and torch.equal(torch.from_numpy(as_int8).float(), scale_pixels(p) * 128)


def test_stage2_precision_map():
    m = build_model("digits", "stage2", num_classes=10, in_chans=1)
    blk = m.blocks[0]
    assert blk.attn.qkv.act == "signed" and blk.attn.proj.act == "signed"
    assert blk.mlp.fc1.act == "signed" and blk.mlp.fc2.act == "unsigned"
    assert all(l.binary_weight for l in (blk.attn.qkv, blk.attn.proj, blk.mlp.fc1, blk.mlp.fc2))
    assert m.patch_embed.mode == "int8" and m.patch_embed.bn is None
    assert tuple(blk.attn.att_bias.bias.shape) == (3, m.patch_embed.num_patches + 2, m.patch_embed.num_patches + 2)


def test_stage1_binarizes_only_mlp_weights():
    m = build_model("digits", "stage1", num_classes=10, in_chans=1)
    blk = m.blocks[0]
    assert not blk.attn.qkv.binary_weight and blk.attn.qkv.act is None
    assert blk.mlp.fc1.binary_weight and blk.mlp.fc1.act == "fp"
    assert m.patch_embed.mode == "fp_bn"


def test_stage2_loads_stage1_and_reports_only_new_parameters_missing():
    torch.manual_seed(0)
    s1 = build_model("digits", "stage1", num_classes=10, in_chans=1)
    s2 = build_model("digits", "stage2", num_classes=10, in_chans=1)
    missing = load_stage1(s2, s1.state_dict())
    assert torch.equal(s2.blocks[1].mlp.fc1.weight, s1.blocks[1].mlp.fc1.weight)
    assert torch.equal(s2.pos_embed, s1.pos_embed)
    new_kinds = ("alpha", "initialized", "att_bias", "act_q", "weight_q", "move")
    assert missing and all(any(k in name for k in new_kinds) for name in missing), missing


def test_binary_linear_sends_zero_to_plus_one():
    lin = BinaryLinear(4, 2, act="signed")
    with torch.no_grad():
        lin.act_q.alpha.fill_(1.0)
        lin.act_q.initialized.fill_(True)
        lin.move.bias.zero_()
    lin.eval()
    assert torch.equal(lin.quant_input(torch.zeros(1, 4)), torch.ones(1, 4))


def test_quant_config_validates_and_defaults_ratios():
    assert QuantConfig().ratios == (0.7, 0.9)
    assert QuantConfig(groups=1).ratios == ()
    assert len(default_ratios(5)) == 4
    with pytest.raises(ValueError, match="mask_stat"):
        QuantConfig(mask_stat="global")
    with pytest.raises(ValueError, match="ratios"):
        QuantConfig(groups=3, ratios=(0.5,))
    with pytest.raises(ValueError):
        build_model("digits", "student", num_classes=10, in_chans=1)


def test_stage1_patch_batchnorm_is_folded_exactly_into_the_stage2_conv():
    torch.manual_seed(0)
    s1 = build_model("digits", "stage1", num_classes=10, in_chans=1)
    with torch.no_grad():  # a BN with non-trivial statistics and affine parameters
        bn = s1.patch_embed.bn
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    s1.eval()
    x = _images()
    from reference.models import fold_patch_bn
    folded = fold_patch_bn(s1.state_dict())
    assert not any(k.startswith("patch_embed.bn.") for k in folded)
    conv = torch.nn.functional.conv2d(scale_pixels(x), folded["patch_embed.proj.weight"],
                                      folded["patch_embed.proj.bias"], stride=4)
    with torch.no_grad():
        expect = s1.patch_embed(x)
    assert torch.allclose(conv.flatten(2).transpose(1, 2), expect, atol=1e-5)
