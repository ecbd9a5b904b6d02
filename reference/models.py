"""Model factory: full-precision teachers from timm and the binary DeiT students.

Students are timm's ``VisionTransformerDistilled`` (cls + distillation tokens, two
heads averaged at eval) with our block, patch embedding and heads plugged in.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

from .blocks import BinaryBlock
from gsbsim.format.methods import DEFAULT_METHOD
from .config import QuantConfig, is_float_method
from .int_grid import grid_of
from .method_parts import is_binary
from . import methods  # noqa: F401  (fills the method registry before any block is built)
from .layers import Linear8, PatchEmbed, scale_pixels
from .presets import Preset, get_preset

KINDS = ("teacher", "stage1", "stage2")
LN_EPS = 1e-6


class PixelTeacher(nn.Module):
    """A timm model fed with the same uint8-range pixels as the students."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(scale_pixels(x))


def _patch_mode(cfg: QuantConfig) -> str:
    """8-bit patch embedding in stage 2, float conv + BN in stage 1, a float conv for method 'fp'."""
    if is_float_method(cfg.method):
        return "fp"
    return "int8" if cfg.stage == 2 else "fp_bn"


class BinaryDeiT(VisionTransformerDistilled):
    """Binary DeiT student (stage 1 or stage 2, research/gsb.md §3; cfg.method picks the method).

    Method 'fp' is the full-precision student of the same shape (stage 1 = stage 2).
    """

    def __init__(self, preset: Preset, num_classes: int, in_chans: int, img_size: int, cfg: QuantConfig):
        num_tokens = (img_size // preset.patch_size) ** 2 + 2
        super().__init__(
            img_size=img_size, patch_size=preset.patch_size, in_chans=in_chans, num_classes=num_classes,
            embed_dim=preset.embed_dim, depth=preset.depth, num_heads=preset.num_heads,
            mlp_ratio=preset.mlp_ratio, qkv_bias=True,
            embed_layer=partial(PatchEmbed, mode=_patch_mode(cfg)),
            block_fn=partial(BinaryBlock, cfg=cfg, num_tokens=num_tokens),
            norm_layer=partial(nn.LayerNorm, eps=LN_EPS),
        )
        self.cfg = cfg
        if is_binary(cfg):
            self.head = Linear8(preset.embed_dim, num_classes)
            self.head_dist = Linear8(preset.embed_dim, num_classes)
            for head in (self.head, self.head_dist):
                nn.init.trunc_normal_(head.weight, std=0.02)
                nn.init.zeros_(head.bias)
        self.set_distilled_training(True)

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """timm's cls + dist + patches + pos; on the integer grid (reference/int_grid.py) each of the
        patch embedding, the two tokens and pos rounded to 2^-F on its own, as the exporter stores them (§2)."""
        grid = grid_of(self)
        if grid is None:
            return super()._pos_embed(x)
        b = x.shape[0]
        x = torch.cat((grid.resid(self.cls_token).expand(b, -1, -1), grid.resid(self.dist_token).expand(b, -1, -1),
                       grid.resid(x)), dim=1)
        return self.pos_drop(x + grid.resid(self.pos_embed))


def build_model(preset: str | Preset, kind: str, num_classes: int, in_chans: int, img_size: int | None = None,
                groups: int = 3, ratios=None, mask_stat: str = "row", released_quirks: bool = False,
                method: str = DEFAULT_METHOD, timm_arch: dict | None = None) -> nn.Module:
    """Build a teacher ('teacher') or a student ('stage1', 'stage2') for a preset.

    method: one of config.METHODS (docs/didb.md); every method but the grouped one forces groups to 1.
    timm_arch: a teacher of the architecture of a timm checkpoint file (reference/teachers.py)
    instead of the preset's.
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    img_size = img_size or preset.img_size
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "teacher" and timm_arch is not None:
        from .teachers import build_timm_teacher
        return build_timm_teacher(timm_arch, num_classes, in_chans, img_size)
    if kind == "teacher":
        net = VisionTransformer(
            img_size=img_size, patch_size=preset.patch_size, in_chans=in_chans, num_classes=num_classes,
            embed_dim=preset.embed_dim, depth=preset.depth, num_heads=preset.num_heads,
            mlp_ratio=preset.mlp_ratio, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=LN_EPS))
        return PixelTeacher(net)
    cfg = QuantConfig(stage=1 if kind == "stage1" else 2, groups=groups, ratios=ratios, mask_stat=mask_stat,
                      released_quirks=released_quirks, method=method)
    return BinaryDeiT(preset, num_classes, in_chans, img_size, cfg)


def fold_patch_bn(stage1_state: dict, prefix: str = "patch_embed.") -> dict:
    """Fold stage 1's patch-embedding BatchNorm into its conv (an exact rewrite at eval).

    The released code simply drops that BN when stage 2 loads stage 1, so stage 2 starts
    from a patch embedding whose outputs have another scale; folding keeps the function.
    """
    state = dict(stage1_state)
    bn = prefix + "bn."
    if bn + "weight" not in state:
        return state
    scale = state[bn + "weight"] / torch.sqrt(state[bn + "running_var"] + 1e-5)
    w, b = state[prefix + "proj.weight"], state.get(prefix + "proj.bias")
    state[prefix + "proj.weight"] = w * scale.reshape(-1, 1, 1, 1)
    bias = b if b is not None else torch.zeros_like(scale)
    state[prefix + "proj.bias"] = (bias - state[bn + "running_mean"]) * scale + state[bn + "bias"]
    for key in [k for k in state if k.startswith(bn)]:
        del state[key]
    return state


def load_stage1(stage2: nn.Module, stage1_state: dict, fold_bn: bool = True) -> list[str]:
    """Initialise a stage-2 model from a stage-1 state dict (strict=False, as released).

    The stage-1 patch-embedding BatchNorm is folded into the conv (fold_bn=False drops it,
    as the released code does). Returns the stage-2 keys that stage 1 did not provide
    (the new scales, shifts and attention biases, initialised fresh).
    """
    if fold_bn:
        stage1_state = fold_patch_bn(stage1_state)
    own = stage2.state_dict()
    usable = {k: v for k, v in stage1_state.items() if k in own and own[k].shape == v.shape}
    result = stage2.load_state_dict(usable, strict=False)
    return list(result.missing_keys)
