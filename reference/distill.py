"""Training losses: DeiT-style knowledge distillation for the students, CE for the teacher.

A student in train mode returns (z_cls, z_dist): the class token's and the
distillation token's logits (research/gsb.md §4.3). With a = alpha, tau = tau:

* hard (the released default): L = (1-a) CE(z_cls, y) + a CE(z_dist, argmax z_teacher)
* soft: L = (1-a) CE(z_cls, y) + a tau^2 KL(softmax(z_t/tau) || softmax(z_dist/tau)),
  KL averaged over the batch ('batchmean'; DeiT divides by batch*classes instead)
* none: L = (CE(z_cls, y) + CE(z_dist, y)) / 2 (no teacher)

The teacher always runs in eval mode without gradients.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

DISTILL_KINDS = ("hard", "soft", "none")


def student_logits(outputs: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The logits used for accuracy: (z_cls + z_dist) / 2 for a train-mode student, else the tensor itself."""
    if isinstance(outputs, (tuple, list)):
        z_cls, z_dist = outputs
        return (z_cls + z_dist) / 2
    return outputs


def distillation_loss(outputs: tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor,
                      teacher_logits: torch.Tensor | None, kind: str = "hard", alpha: float = 0.5,
                      tau: float = 1.0) -> torch.Tensor:
    """The student loss of the module docstring, from precomputed teacher logits (None for kind='none')."""
    if kind not in DISTILL_KINDS:
        raise ValueError(f"unknown distillation {kind!r}; expected one of {', '.join(DISTILL_KINDS)}")
    if not isinstance(outputs, (tuple, list)) or len(outputs) != 2:
        raise ValueError("a student in train mode must return (logits_cls, logits_dist)")
    z_cls, z_dist = outputs
    if kind == "none":
        return (F.cross_entropy(z_cls, labels) + F.cross_entropy(z_dist, labels)) / 2
    if teacher_logits is None:
        raise ValueError(f"distillation {kind!r} needs teacher logits")
    base = F.cross_entropy(z_cls, labels)
    if kind == "hard":
        distill = F.cross_entropy(z_dist, teacher_logits.argmax(dim=1))
    else:
        distill = F.kl_div(F.log_softmax(z_dist / tau, dim=1), F.log_softmax(teacher_logits / tau, dim=1),
                           reduction="batchmean", log_target=True) * (tau * tau)
    return (1 - alpha) * base + alpha * distill


class TrainLoss(nn.Module):
    """loss(images, outputs, labels) for one stage: CE for the teacher, distillation for a student."""

    def __init__(self, kind: str, teacher: nn.Module | None = None, alpha: float = 0.5, tau: float = 1.0,
                 smoothing: float = 0.0, student: bool = True):
        super().__init__()
        if student and kind != "none" and teacher is None:
            raise ValueError(f"distillation {kind!r} needs a teacher model")
        self.kind, self.alpha, self.tau, self.smoothing, self.student = kind, alpha, tau, smoothing, student
        self.teacher = teacher
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)

    def train(self, mode: bool = True) -> "TrainLoss":
        """Keep the teacher in eval mode whatever the caller does."""
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def forward(self, images: torch.Tensor, outputs, labels: torch.Tensor) -> torch.Tensor:
        if not self.student:
            return F.cross_entropy(outputs, labels, label_smoothing=self.smoothing)
        teacher_logits = None
        if self.kind != "none":
            with torch.no_grad():
                teacher_logits = self.teacher(images)
        return distillation_loss(outputs, labels, teacher_logits, self.kind, self.alpha, self.tau)
