"""What both engines share about failure: the error types, the one overflow wording, the integer limits and the
input check (LCE's params.h habit: the optimised path does not import the spec for these)."""
from __future__ import annotations

import numpy as np

from gsbsim.format.model_file import IntModel


INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1
LN_LIMIT = 2 ** 62           # E*S2 + ln_eps must stay below this (spec §1, Overflow)
LN_OVERFLOW = "LayerNorm E*S2 + ln_eps reaches 2^62"
RESID_OVERFLOW = "residual stream overflows int32"
U_LIMIT = 2 ** 31   # |u| < 2^31 (§13.1 run-time check)
Z_LIMIT = 2 ** 30   # |z| < 2^30
U_OVERFLOW = "activation input u leaves (-2^31, 2^31)"
Z_OVERFLOW = "activation output z leaves (-2^30, 2^30)"


class InputError(ValueError):
    """The images given to a forward pass do not fit the model (message names the problem)."""


class IntegerOverflowError(ArithmeticError):
    """An integer of the model left its specified range (never wrapped silently)."""


def overflow_message(where: str, what: str, index: tuple[int, ...], value: int | None = None) -> str:
    """The one wording of an overflow error, shared by the golden and the fast path.

    `index` is (image, token) or (image, token, channel) of the first offending element in
    C order of the layer's output.
    """
    parts = ("image", "token", "channel")
    at = ", ".join(f"{p} {int(v)}" for p, v in zip(parts, index))
    val = "" if value is None else f" (value {int(value)})"
    return f"{where}: {what} at {at}{val}"


def check_images(model: IntModel, images) -> np.ndarray:
    """The images as a (B, Cin, I, I) int8 array, or InputError naming what is wrong."""
    want = (model.in_chans, model.img_size, model.img_size)
    if not isinstance(images, np.ndarray):
        raise InputError(f"images: expected a numpy int8 array of shape (B, {', '.join(map(str, want))}), "
                         f"got {type(images).__name__}")
    if images.dtype != np.int8 or images.ndim != 4 or images.shape[1:] != want:
        raise InputError(f"images: expected an int8 array of shape (B, {', '.join(map(str, want))}) "
                         f"(pixel - 128), got {images.dtype} array of shape {images.shape}")
    if images.shape[0] == 0:
        raise InputError("images: empty batch (B = 0)")
    return np.ascontiguousarray(images)


def check_int32(x: np.ndarray, where: str) -> np.ndarray:
    """int64 residual-stream values -> int32, or IntegerOverflowError at the first offender."""
    bad = (x < INT32_MIN) | (x > INT32_MAX)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad.ravel())), bad.shape)
        raise IntegerOverflowError(overflow_message(where, RESID_OVERFLOW, idx, x[idx]))
    return x.astype(np.int32)


def check_abs(x: np.ndarray, limit: int, where: str, what: str) -> None:
    """IntegerOverflowError at the first element (C order) with |x| >= limit."""
    bad = np.abs(x) >= limit
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad.ravel())), bad.shape)
        raise IntegerOverflowError(overflow_message(where, what, idx, x[idx]))
