"""Random stage-2 students for the export tests (test_export, test_export_methods, test_export_verify).

Not a test module: imported as ``tests.support.students``.
"""
from __future__ import annotations

import numpy as np
import torch


def student(method: str = "gsb", groups: int = 3, mask_stat: str = "row", seed: int = 0,
            trained_like: bool = False):
    """(model, calibration images) of an untrained digits student of ``method`` with generic biases: an
    untrained one has them all 0, and then exact float ties (a context of exactly 0 that float32 leaves
    as a +-1e-9 residue) abound. ``groups`` counts for gsb only (the other methods have one group).

    ``trained_like`` also gives every method parameter a non-trivial value: RPReLU slopes (negative ones
    included), channel and token shifts, band and local gains, and an attention scale that makes the
    attention plane toggle.
    """
    from reference import export as ex
    model, calib = ex.random_student("digits", groups if method == "gsb" else 1, 10, 1, seed,
                                     mask_stat=mask_stat, method=method)
    g = torch.Generator().manual_seed(seed + 1)
    n_tok = model.patch_embed.num_patches + 2
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.add_(torch.randn(p.shape, generator=g) * (0.01 if name.endswith("att_bias.bias") else 0.05))
            elif not trained_like:
                continue
            elif name.endswith(("gamma", "zeta", "gamma_token", "zeta_token")):
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
            elif name.endswith(".beta"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.8)
            elif name.endswith("band_gain"):
                p.copy_(0.5 + torch.randn(p.shape, generator=g).abs())
            elif name.endswith("local_gain"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            elif name.endswith("a_gsb.alpha"):
                p.fill_(2.0 / n_tok)      # threshold 1/N: about half the probabilities pass
    return model, calib


def digits_images(n: int = 16, seed: int = 0) -> np.ndarray:
    """``n`` random uint8 images of the digits shape [n, 1, 8, 8]."""
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 8, 8), dtype=np.uint8)
