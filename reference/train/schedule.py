"""Optimiser and schedule: AdamW with timm's no-decay rule, cosine schedule stepped per epoch."""
from __future__ import annotations

import math

import torch
import torch.nn as nn



ADAM_EPS = 1e-8
# Parameters that get no weight decay besides every tensor with ndim <= 1 (timm's rule, research/gsb.md §4.2).
NO_DECAY_SUFFIXES = (".bias", "pos_embed", "cls_token", "dist_token", "alpha")
# ----------------------------------------------------------------------------- optimiser and schedule
def skip_weight_decay(name: str, param: torch.Tensor) -> bool:
    """No decay for 0-/1-d tensors (biases, norms, scalar scales) and for biases, tokens, pos_embed, alphas."""
    return param.ndim <= 1 or name.endswith(NO_DECAY_SUFFIXES)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weights and the rest (trainable parameters only)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if skip_weight_decay(name, param) else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, eps=ADAM_EPS)


class CosineSchedule:
    """Per-epoch learning rate: linear warm-up, then cosine from lr to min_lr.

    Epoch e < warmup: lr * (e + 1) / (warmup + 1). Then cosine over the remaining
    epochs: min_lr + (lr - min_lr) * (1 + cos(pi * (e - warmup) / (epochs - warmup))) / 2,
    so epoch `warmup` runs at lr and the curve would reach min_lr at e = epochs
    (timm's CosineLRScheduler with t_initial = epochs).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, min_lr: float, epochs: int,
                 warmup_epochs: int = 0):
        self.optimizer, self.lr, self.min_lr = optimizer, lr, min(min_lr, lr)
        self.epochs, self.warmup_epochs = epochs, max(0, min(warmup_epochs, epochs - 1))
        self.last_epoch = -1

    def lr_at(self, epoch: int) -> float:
        w = self.warmup_epochs
        if epoch < w:
            return self.lr * (epoch + 1) / (w + 1)
        t = (epoch - w) / max(1, self.epochs - w)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * t))

    def step(self, epoch: int) -> float:
        """Set every group's lr for `epoch` (0-based) and return it."""
        lr = self.lr_at(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.last_epoch = epoch
        return lr

    def state_dict(self) -> dict:
        return {"lr": self.lr, "min_lr": self.min_lr, "epochs": self.epochs, "warmup_epochs": self.warmup_epochs,
                "last_epoch": self.last_epoch}

    def load_state_dict(self, state: dict) -> None:
        """Restore the position; the shape of the curve stays the one of the current arguments."""
        self.last_epoch = int(state["last_epoch"])
