"""Reading dataset files safely: folder and file checks, label checks, a restricted unpickler, JSON and .mat."""
from __future__ import annotations

import json
import os
import pickle
from typing import Any

import numpy as np

from gsbsim.paths import input_file_problem
from reference.data.bundle import DataError


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# ============================================================================ file helpers
def need_dir(path: str | os.PathLike | None, name: str) -> str:
    if path is None:
        raise DataError(f"dataset {name!r} needs a path (the folder holding its files)")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{name}: data path does not exist: {path}")
    if not os.path.isdir(path):
        raise DataError(f"{name}: data path is not a directory: {path}")
    return path


def need_file(path: str, name: str) -> str:
    if not os.path.isfile(path):
        raise DataError(f"{name}: required file not found: {path}")
    return path


def image_file_problem(path: str) -> str | None:
    """Why ``path`` cannot be an image of the dataset ("not found", "is a folder", ...), or None.

    Reads the header only (PIL's ``Image.open`` is lazy): a few hundred bytes per file, so
    every listed image is checked before the first epoch. Damage past the header is found
    when the image is decoded (``ImageFileDataset._load``).
    """
    from PIL import Image, UnidentifiedImageError
    try:
        problem = input_file_problem(path)  # never opens a FIFO: it would block
    except ValueError:  # an embedded NUL byte
        return "is not a valid file name"
    if problem:
        return problem
    try:
        with Image.open(path) as im:
            width, height = im.size
    except UnidentifiedImageError:
        return "is not an image (unknown format or damaged header)"
    except Image.DecompressionBombError:
        return "declares too many pixels to decode (a decompression bomb?)"
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        return f"has a damaged header ({type(e).__name__}: {e})"
    if width < 1 or height < 1:
        return f"has no pixels ({width}x{height})"
    return None


def check_image_files(files: list[str], desc: str) -> None:
    """DataError naming the first unusable image file of a split (and how many more there are)."""
    bad = [(f, p) for f in files for p in (image_file_problem(f),) if p]
    if bad:
        (first, problem), more = bad[0], len(bad) - 1
        raise DataError(f"{desc}: listed image file {problem}: {first}"
                        + (f" (and {more} more of its {len(files)} files are unusable)" if more else ""))


def check_labels(labels: np.ndarray, lo: int, hi: int, where: str) -> np.ndarray:
    """Labels as int64, all within [lo, hi], else DataError naming the first bad one.

    Integral floats are accepted (MATLAB files often store ids as doubles)."""
    labels = np.asarray(labels)
    if labels.size and np.issubdtype(labels.dtype, np.floating) and \
            np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise DataError(f"{where}: labels must be a 1-D list of integers, got dtype "
                        f"{labels.dtype} shape {labels.shape}")
    bad = np.flatnonzero((labels < lo) | (labels > hi))
    if bad.size:
        raise DataError(f"{where}: label {labels[bad[0]]} at position {bad[0]} is out of "
                        f"range {lo}..{hi}")
    return labels.astype(np.int64)


_NP_CORE = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a data file must not run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and \
                name in ("_reconstruct", "scalar"):
            return getattr(_NP_CORE.multiarray, name)
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
            return _NP_CORE.numeric._frombuffer
        if (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def load_pickle(path: str, name: str) -> Any:
    try:
        with open(path, "rb") as f:
            return _SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"{name}: corrupt or unreadable pickle {path}: "
                        f"{type(e).__name__}: {e}") from None


def load_json(path: str, name: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise DataError(f"{name}: corrupt or unreadable JSON {path}: {e}") from None


def load_mat(path: str, key: str, name: str) -> np.ndarray:
    """One array from a MATLAB .mat file, flattened."""
    import scipy.io  # scipy comes with scikit-learn; imported here as only flowers needs it
    try:
        mat = scipy.io.loadmat(need_file(path, name))
    except DataError:
        raise
    except Exception as e:  # scipy raises many types (ValueError, TypeError, MatReadError...)
        raise DataError(f"{name}: corrupt or unreadable .mat file {path}: {e}") from None
    if key not in mat:
        raise DataError(f"{name}: {path} has no key {key!r} (keys: "
                        f"{sorted(k for k in mat if not k.startswith('__'))})")
    return np.asarray(mat[key]).reshape(-1)


def resolve_size(img_size: int | None, default: int, name: str) -> int:
    if img_size is None:
        return default
    if isinstance(img_size, bool) or not isinstance(img_size, (int, np.integer)) or img_size < 1:
        raise DataError(f"{name}: img_size must be a positive int, got {img_size!r}")
    return int(img_size)
