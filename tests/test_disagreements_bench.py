"""benchmarks/disagreements.py's float64 view of a float model (the rest of it is the exporter's and
reference.agreement's code, tested with them)."""
from __future__ import annotations

import numpy as np
import torch

from benchmarks.disagreements import float64_predictions
from reference import export as ex
from reference.bit_taps import float_logits
from reference.layers import scale_pixels
from tests.support.students import student


def test_pixels_keep_a_float64_models_precision():
    x = torch.tensor([[0.0, 129.0, 255.0]], dtype=torch.float64)
    assert scale_pixels(x).dtype == torch.float64 and scale_pixels(x.to(torch.uint8)).dtype == torch.float32
    assert torch.equal(scale_pixels(x), torch.tensor([[-1.0, 1 / 128, 127 / 128]], dtype=torch.float64))


def test_float64_predictions_leave_the_model_in_float32():
    model, _ = student()
    images = ex._random_images(32, 1, 8, 0)
    before = float_logits(model, images)
    p64 = float64_predictions(model, images)
    assert next(model.parameters()).dtype == torch.float32
    assert np.array_equal(float_logits(model, images), before)
    assert p64.shape == (32,) and (p64 == before.argmax(-1)).mean() >= 0.9   # random images: near-ties may differ
