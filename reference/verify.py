"""Does an integer model follow the float model it was exported from? (docs/integer_model.md §11)

`verify(model, int_model, images, labels)` runs both on the same images and measures

* prediction agreement, float and integer top-1 (labels may be None: random models);
* per binarizer, the fraction of equal bits end to end (each model on its own) and
  teacher-forced (each float binarizer fed the integer model's upstream bits and residual
  stream, reference/bit_taps.py): the latter is the layer's own export error;
* the bits that do not depend on the image (cls and distillation tokens in block 0 before
  the attention), which must be equal exactly: one flip there flips it in every image;
* how often the float heads, fed the integer model's final residual stream, predict what
  the integer model predicts.

The integer model runs on gsbsim's Numba path (identical to the golden one, bit for bit).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gsbsim.format.conventions import pixels_to_int8
from .bit_taps import float_bits, forced_bits

# block 0's binarizers before the attention: for tokens 0 and 1 they see only constants
CONSTANT_TAPS = ("ln1.bits", "q.bits", "k.bits", "q.low", "q.high", "k.low", "k.high", "v.planes")


@dataclass
class Verification:
    images: int
    data: str
    agreement: float
    float_top1: float | None
    int_top1: float | None
    pred_teacher_forced: float
    constant_bits_flipped: int
    constant_flip_at: str | None
    bits_end_to_end: dict[str, float] = field(default_factory=dict)
    bits_teacher_forced: dict[str, float] = field(default_factory=dict)

    @property
    def worst_layer(self) -> tuple[str, float]:
        """The binarizer with the lowest teacher-forced bit agreement (first in execution order on ties)."""
        if not self.bits_teacher_forced:
            return "-", 1.0
        name = min(self.bits_teacher_forced, key=self.bits_teacher_forced.get)
        return name, self.bits_teacher_forced[name]

    @property
    def min_teacher_forced(self) -> float:
        return self.worst_layer[1]

    def rank(self) -> tuple:
        """Order of preference between exports of one model (larger is better)."""
        return (self.constant_bits_flipped == 0, self.agreement, self.min_teacher_forced,
                float(np.mean(list(self.bits_teacher_forced.values()) or [1.0])))

    def header(self) -> dict:
        """The header's `verification` object (docs/integer_model.md §1, §11)."""
        return {"data": self.data, "images": self.images, "agreement": self.agreement,
                "int_top1": self.int_top1, "pred_teacher_forced": self.pred_teacher_forced,
                "constant_bits_flipped": self.constant_bits_flipped,
                "bits_end_to_end": dict(self.bits_end_to_end),
                "bits_teacher_forced": dict(self.bits_teacher_forced)}

    def summary(self) -> str:
        top = ""
        if self.float_top1 is not None:
            top = f"float top-1 {100 * self.float_top1:.2f}%  integer top-1 {100 * self.int_top1:.2f}%  "
        name, worst = self.worst_layer
        const = "exact" if not self.constant_bits_flipped else \
            f"{self.constant_bits_flipped} FLIPPED (first at {self.constant_flip_at})"
        return (f"{top}agreement {100 * self.agreement:.2f}% on {self.images} {self.data} images; "
                f"bits teacher-forced >= {100 * worst:.3f}% (worst {name}), "
                f"end to end >= {100 * min(self.bits_end_to_end.values(), default=1.0):.3f}%; "
                f"constant-token bits {const}")


def _batch_size(int_model) -> int:
    """Images per step: the trace holds about depth*G*H*N^2 bytes of planes per image."""
    per_image = int_model.depth * (int_model.groups + 8) * int_model.num_heads * int_model.num_tokens ** 2
    return int(max(1, min(256, (1 << 28) // max(per_image, 1))))


def _constant_flips(fb: dict[str, np.ndarray], trace: dict[str, np.ndarray], int_model) -> tuple[int, str | None]:
    """Equal bits of tokens 0, 1 in block 0 before the attention, on the first image."""
    flips, first = 0, None
    for tap in CONSTANT_TAPS:
        name = f"blocks.0.{tap}"
        if name not in fb:
            continue
        f, t = fb[name][:1], trace[name][:1].reshape(fb[name][:1].shape)
        axis = f.ndim - 2                                  # the token axis of every tensor here
        f, t = np.take(f, [0, 1], axis=axis), np.take(t, [0, 1], axis=axis)
        if tap == "v.planes" and int_model.mask_stat != "row":
            f, t = f[:, :1], t[:, :1]                       # 'image' masks depend on the image
        bad = int(np.count_nonzero(f != t))
        if bad and first is None:
            idx = np.argwhere(f != t)[0]
            first = f"{name} token {int(idx[axis])} channel {int(idx[-1])}"
        flips += bad
    return flips, first


def verify(model, int_model, images: np.ndarray, labels: np.ndarray | None, data: str) -> Verification:
    """images uint8 [B, C, H, W]; labels int [B] or None; data names where the images come from."""
    from gsbsim.engine import fast
    equal_e2e: dict[str, int] = {}
    equal_tf: dict[str, int] = {}
    total: dict[str, int] = {}
    f_pred, i_pred, tf_pred = [], [], []
    flips, flip_at = 0, None
    step = _batch_size(int_model)
    for s in range(0, len(images), step):
        batch = images[s:s + step]
        logits, trace = fast.forward(int_model, pixels_to_int8(batch), trace=True)
        i_pred.append(logits.argmax(-1))
        fb, fp = float_bits(model, batch)
        f_pred.append(fp)
        tb, tf = forced_bits(model, batch, trace, int_model.frac_bits)
        tf_pred.append(tf)
        if s == 0:
            flips, flip_at = _constant_flips(fb, trace, int_model)
        for name in fb:
            t = trace[name].reshape(fb[name].shape)
            equal_e2e[name] = equal_e2e.get(name, 0) + int(np.count_nonzero(fb[name] == t))
            equal_tf[name] = equal_tf.get(name, 0) + int(np.count_nonzero(tb[name] == t))
            total[name] = total.get(name, 0) + t.size
    f_pred, i_pred, tf_pred = np.concatenate(f_pred), np.concatenate(i_pred), np.concatenate(tf_pred)
    top = (lambda p: float(np.mean(p == labels))) if labels is not None else (lambda p: None)
    return Verification(
        images=len(images), data=data, agreement=float(np.mean(f_pred == i_pred)),
        float_top1=top(f_pred), int_top1=top(i_pred), pred_teacher_forced=float(np.mean(tf_pred == i_pred)),
        constant_bits_flipped=flips, constant_flip_at=flip_at,
        bits_end_to_end={k: equal_e2e[k] / total[k] for k in total},
        bits_teacher_forced={k: equal_tf[k] / total[k] for k in total})


def weights_sha256(model) -> str:
    """sha256 of a float model's parameters and buffers (names, dtypes, shapes, bytes, sorted by name):
    the header's `source_sha256`, which reference.agreement compares to refuse a mismatched pair."""
    import hashlib
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        a = t.detach().cpu().contiguous().numpy()
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()
