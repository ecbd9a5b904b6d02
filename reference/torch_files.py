"""torch.load for files a user names: weights only, quiet, and a short reason when it fails."""
from __future__ import annotations

import os

import torch


class UnreadableFile(Exception):
    """torch.load failed; the message says why in a few words."""


def torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> object:
    """``torch.load(weights_only=True)`` that fails with UnreadableFile and a short reason.

    torch's own message for a foreign file is a paragraph advising ``weights_only=False``
    (which would run the file's code), and it warns about pickle protocols on stderr: neither
    belongs in a one-line error.
    """
    import warnings
    import zipfile
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:  # torch raises many types on truncated or foreign files
            if not zipfile.is_zipfile(path):
                reason = "not the zip format of torch.save: empty, truncated or another kind of file"
            elif "Weights only load failed" in str(e):
                reason = "holds pickled objects other than tensors and plain containers; not loaded, as that could run code"
            else:
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UnreadableFile(reason) from None
