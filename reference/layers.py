"""Building blocks of the binary DeiT: linears, patch embeddings, heads.

Every layer keeps the parameter names of its full-precision twin (``weight``,
``bias``), so a stage-2 model loads a stage-1 checkpoint with strict=False and the
exporter finds each tensor by the same path.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gsbsim.format import conventions

from .quantizers import LearnableBias, LSQQuantizer, SignedBinarizer, UnsignedBinarizer, bwn_weight

PIXEL_ZERO = float(conventions.PIXEL_ZERO)  # the model sees (p - 128) / 128, the integer model p - 128
PIXEL_SCALE = 128.0


def scale_pixels(x: torch.Tensor) -> torch.Tensor:
    """uint8-range pixels -> [-1, 1): exact in int8 as p - 128 with scale 1/128 (a float64 model
    keeps float64: benchmarks/disagreements.py runs one beside the float32 model)."""
    return ((x if x.is_floating_point() else x.float()) - PIXEL_ZERO) / PIXEL_SCALE


def unit_codes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x / s, s) for a binarized tensor whose entries are all 0 or ±s (one scalar s, detached).

    The codes are exactly 0/±1, so a matmul of codes is an exact integer in float32 and its
    product with the scales is exactly 0 where the integer model's accumulator is 0: without
    this, a sum of ±s in float32 leaves a rounding residue (±1e-9) whose sign decides the next
    binarizer at a tie, which the integer model resolves exactly (sign(0) = +1). Gradients are
    unchanged: s is a constant, so d(codes)/dx = 1/s and the product brings back s.
    """
    s = x.detach().abs().amax()
    s = torch.where(s > 0, s, torch.ones_like(s))
    return x / s, s


class BinaryLinear(nn.Linear):
    """Linear layer with BWN weights and an optionally binarized input.

    act: 'signed' ({-a, +a} after a learnable shift), 'unsigned' ({0, a} after a
    learnable shift), 'fp' (float input after a learnable shift: the stage-1 MLP),
    or None (float input, no shift). binary_weight=False keeps float weights.
    """

    def __init__(self, in_features: int, out_features: int, act: str | None = "signed",
                 binary_weight: bool = True, bias: bool = True, scale_grad: str = "corrected"):
        super().__init__(in_features, out_features, bias=bias)
        if act not in ("signed", "unsigned", "fp", None):
            raise ValueError(f"unknown input binarizer {act!r}")
        self.act = act
        self.binary_weight = binary_weight
        self.move = LearnableBias((in_features,)) if act is not None else None
        if act == "signed":
            self.act_q = SignedBinarizer(scale_grad=scale_grad)
        elif act == "unsigned":
            self.act_q = UnsignedBinarizer()
        else:
            self.act_q = None

    def quant_weight(self) -> torch.Tensor:
        return bwn_weight(self.weight) if self.binary_weight else self.weight

    def quant_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.move is not None:
            x = self.move(x)
        if self.act_q is not None:
            x = self.act_q(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq, wq = self.quant_input(x), self.quant_weight()
        if self.act in ("signed", "unsigned") and self.binary_weight:
            # binary x binary: the integer-valued product first, then the scales (unit_codes)
            (xc, a), (wc, b) = unit_codes(xq), unit_codes(wq)
            out = F.linear(xc, wc) * (a * b)
            return out if self.bias is None else out + self.bias
        return F.linear(xq, wq, self.bias)


class Linear8(nn.Linear):
    """8-bit head: LSQ weights (one scale per matrix) and LSQ inputs after a learnable shift."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=True)
        self.move = LearnableBias((in_features,))
        self.act_q = LSQQuantizer(bits=8, signed=True)
        self.weight_q = LSQQuantizer(bits=8, signed=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.act_q(self.move(x)), self.weight_q(self.weight), self.bias)


class PatchEmbed(nn.Module):
    """Patch embedding for timm's VisionTransformer (the ``embed_layer`` contract).

    mode='int8': a conv with 8-bit LSQ weights, one scale per output channel, on the
    int8-exact scaled image (the stage-2 model). mode='fp_bn': float conv followed by
    BatchNorm2d (the released stage-1 model; stage 2 drops the BN). mode='fp': float
    conv (the teacher-like form).
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 mode: str = "int8", **_ignored):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"image size {img_size} is not a multiple of the patch size {patch_size}")
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.mode = mode
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=True)
        self.bn = nn.BatchNorm2d(embed_dim) if mode == "fp_bn" else None
        self.weight_q = LSQQuantizer(bits=8, signed=True, per_channel=embed_dim) if mode == "int8" else None

    def feat_ratio(self, as_scalar: bool = True):
        return self.patch_size[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = scale_pixels(x)
        w = self.weight_q(self.proj.weight) if self.weight_q is not None else self.proj.weight
        x = F.conv2d(x, w, self.proj.bias, stride=self.patch_size)
        if self.bn is not None:
            x = self.bn(x)
        return x.flatten(2).transpose(1, 2)
