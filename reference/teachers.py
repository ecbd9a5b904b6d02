"""Teachers from a local timm checkpoint file (``--teacher-checkpoint FILE``), as the released code's.

The released code distils from a timm DeiT fine-tuned on the target data (research/gsb.md §4.3).
Here the file is a timm ViT/DeiT state dict (``.pth``/``.pt``: a state dict or ``{"model": ...}``
as DeiT's releases, or ``.safetensors``). Its architecture is read from the tensors' shapes
(heads = embed_dim / 64, DeiT's head width); the teacher stage fine-tunes it on the target data
(a new head when the class count differs, the position embedding resampled when the image size
does). The teacher keeps its own input normalisation: it maps our uint8-range pixels p to
(p / 255 - mean) / std with the mean/std of a timm ``config.json`` next to the file
(``pretrained_cfg`` or top level), else timm's ImageNet mean/std (DeiT's; their colour average for
a 1-channel model).
"""
from __future__ import annotations

import json
import os
import re
from functools import partial

import torch
import torch.nn as nn

__all__ = ["TeacherFileError", "NormalizedTeacher", "read_timm_state", "infer_timm_arch", "read_teacher_file",
           "check_fits_data", "build_timm_teacher", "init_from_timm_state"]

HEAD_DIM = 64  # DeiT tiny/small/base: 192/3, 384/6, 768/12
LN_EPS = 1e-6  # timm's ViT default


class TeacherFileError(ValueError):
    """The teacher checkpoint file is missing, unreadable, or not a timm ViT state dict, or does not
    fit the data (a ValueError: checkpoint.build_from_checkpoint reports those naming the file)."""


class NormalizedTeacher(nn.Module):
    """A timm ViT fed our uint8-range pixels, normalised with its own mean/std."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x.float() / 255 - self.mean) / self.std)


def read_timm_state(path: str) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (.safetensors, or a torch file holding it or {'model'|'state_dict': it})."""
    from gsbsim.paths import input_file_problem
    from reference.torch_files import UnreadableFile, torch_load
    problem = input_file_problem(path)  # a folder or FIFO is named as such (a FIFO is never opened)
    if problem:
        raise TeacherFileError(f"{path}: teacher checkpoint {problem}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file
            state = load_file(path)
        else:
            state = torch_load(path)
    except UnreadableFile as e:
        raise TeacherFileError(f"{path}: not a readable checkpoint ({e})") from None
    except Exception as e:  # safetensors raises many types on foreign files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TeacherFileError(f"{path}: not a readable checkpoint ({first})") from None
    if isinstance(state, dict):
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TeacherFileError(f"{path}: not a state dict of tensors")
    return state


def _need(state: dict, key: str, path: str, ndim: int) -> torch.Tensor:
    t = state.get(key)
    if t is None or t.ndim != ndim:
        raise TeacherFileError(f"{path}: not a timm ViT/DeiT state dict ({key} missing or not {ndim}-d)")
    return t


def infer_timm_arch(state: dict, path: str) -> dict:
    """Architecture of a timm ViT/DeiT state dict: sizes from the tensors' shapes."""
    proj = _need(state, "patch_embed.proj.weight", path, 4)
    embed_dim, in_chans, patch, _ = proj.shape
    pos = _need(state, "pos_embed", path, 3)
    distilled = "dist_token" in state
    prefix = 2 if distilled else 1 if "cls_token" in state else 0
    grid = int(round((pos.shape[1] - prefix) ** 0.5))
    if grid * grid != pos.shape[1] - prefix:
        raise TeacherFileError(f"{path}: pos_embed has {pos.shape[1]} tokens, not a square grid + {prefix}")
    depth = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    if depth == 0:
        raise TeacherFileError(f"{path}: no transformer blocks (blocks.<i>.*)")
    if embed_dim % HEAD_DIM:
        raise TeacherFileError(f"{path}: embed_dim {embed_dim} is not a multiple of {HEAD_DIM}; "
                               "cannot infer the number of heads")
    head = _need(state, "head.weight", path, 2)
    fc1 = _need(state, "blocks.0.mlp.fc1.weight", path, 2)
    return {"embed_dim": int(embed_dim), "depth": depth, "num_heads": int(embed_dim) // HEAD_DIM,
            "patch_size": int(patch), "in_chans": int(in_chans), "img_size": grid * int(patch),
            "mlp_ratio": fc1.shape[0] / embed_dim, "qkv_bias": "blocks.0.attn.qkv.bias" in state,
            "distilled": distilled, "num_classes": int(head.shape[0])}


def _mean_std(path: str, in_chans: int) -> tuple[tuple, tuple, str]:
    """(mean, std, where from): a timm config.json next to the file, else ImageNet's (averaged over
    the colours for a 1-channel model)."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    cfg_path = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    if os.path.isfile(cfg_path):
        try:
            with open(cfg_path, encoding="utf-8") as f:
                cfg = json.load(f)
        except (OSError, ValueError) as e:
            raise TeacherFileError(f"{cfg_path}: unreadable ({e})") from None
        cfg = cfg.get("pretrained_cfg", cfg) if isinstance(cfg, dict) else {}
        if "mean" in cfg and "std" in cfg:
            return tuple(map(float, cfg["mean"])), tuple(map(float, cfg["std"])), cfg_path
    if in_chans == 1:
        return ((sum(IMAGENET_DEFAULT_MEAN) / 3,), (sum(IMAGENET_DEFAULT_STD) / 3,),
                "timm's ImageNet default, averaged over the colours")
    return tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD), "timm's ImageNet default"


def read_teacher_file(path: str) -> tuple[dict, dict]:
    """(state dict, arch) of a teacher file; arch also holds 'mean', 'std' and 'norm_source'."""
    state = read_timm_state(path)
    arch = infer_timm_arch(state, path)
    mean, std, source = _mean_std(path, arch["in_chans"])
    if len(mean) != arch["in_chans"] or len(std) != arch["in_chans"]:
        raise TeacherFileError(f"{path}: mean/std from {source} have {len(mean)} channels, the model "
                               f"{arch['in_chans']}")
    return state, arch | {"mean": list(mean), "std": list(std), "norm_source": source}


def check_fits_data(arch: dict, in_chans: int, img_size: int, where: str = "the teacher") -> None:
    if in_chans != arch["in_chans"]:
        raise TeacherFileError(f"{where} takes {arch['in_chans']}-channel images, the data has {in_chans}")
    if img_size % arch["patch_size"]:
        raise TeacherFileError(f"{where}: image size {img_size} is not a multiple of its patch {arch['patch_size']}")


def build_timm_teacher(arch: dict, num_classes: int, in_chans: int, img_size: int) -> NormalizedTeacher:
    """An (untrained) timm teacher of ``arch`` for the target data's classes and image size."""
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer
    check_fits_data(arch, in_chans, img_size)
    cls = VisionTransformerDistilled if arch["distilled"] else VisionTransformer
    net = cls(img_size=img_size, patch_size=arch["patch_size"], in_chans=in_chans, num_classes=num_classes,
              embed_dim=arch["embed_dim"], depth=arch["depth"], num_heads=arch["num_heads"],
              mlp_ratio=arch["mlp_ratio"], qkv_bias=arch["qkv_bias"], norm_layer=partial(nn.LayerNorm, eps=LN_EPS))
    if arch["distilled"]:
        net.set_distilled_training(False)  # one output, the mean of both heads, in train mode too
    return NormalizedTeacher(net, arch["mean"], arch["std"])


def init_from_timm_state(teacher: NormalizedTeacher, state: dict, path: str) -> list[str]:
    """Load the file's weights into ``teacher``; a head of another class count is left fresh and the
    position embedding resampled to the teacher's grid. Returns the keys left fresh."""
    from timm.layers import resample_abs_pos_embed
    own = teacher.net.state_dict()
    state = dict(state)
    if state["pos_embed"].shape != own["pos_embed"].shape:
        prefix = 2 if "dist_token" in state else 1
        grid = teacher.net.patch_embed.grid_size
        state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], list(grid), num_prefix_tokens=prefix)
    fresh = [k for k in own if k not in state or state[k].shape != own[k].shape]
    extra = [k for k in state if k not in own]
    if extra or any(not k.startswith(("head.", "head_dist.")) for k in fresh):
        raise TeacherFileError(f"{path}: does not fit the timm ViT it describes (missing or other shape: "
                               f"{', '.join(fresh[:4]) or '-'}; unknown: {', '.join(extra[:4]) or '-'})")
    teacher.net.load_state_dict({k: v for k, v in state.items() if k in own and k not in fresh}, strict=False)
    return fresh
