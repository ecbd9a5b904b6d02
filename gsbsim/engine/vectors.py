"""Test vectors: the golden trace of some images as ``OUT/vectors/<name>.npy`` plus ``manifest.json``.

Written by ``gsbsim vectors`` and by ``gsbsim csim`` (whose testbench compares every traced tensor
of the C-simulation with these files, gsbsim/hlsgen/csim.py). The caller holds ``OUT``'s lock
(gsbsim.outputs.folder_lock). The folder is filled under a temporary name and renamed into place,
so a reader sees the old or the new complete folder, never half of one; a kill -9 leaves at most a
staging folder that the next write removes. A ``vectors`` entry that gsbsim did not write (no
gsbsim manifest) is never replaced.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile

import numpy as np

from gsbsim.format.conventions import pixels_to_int8
from gsbsim.outputs import remove_stale, staging_dir
from gsbsim.paths import sha256_file

__all__ = ["VectorsError", "VECTORS_DIR", "STAGING_PREFIX", "vectors_dir", "check_replaceable", "write_vectors"]

VECTORS_DIR = "vectors"
STAGING_PREFIX = ".vectors-"  # prefix of the staging folders (".vectors-old-" included) in OUT
MANIFEST_KEYS = {"tensors", "model_sha256", "engine"}  # what marks a folder as gsbsim's
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class VectorsError(Exception):
    """A vectors folder that cannot be written; one line naming it."""


def vectors_dir(out: str) -> str:
    return os.path.join(out, VECTORS_DIR)


def check_replaceable(final: str) -> None:
    """Refuse to replace ``final`` unless it is absent, empty or a vectors folder gsbsim wrote (manifest.json)."""
    if not os.path.lexists(final):
        return
    if os.path.islink(final) or not os.path.isdir(final):
        raise VectorsError(f"{final} exists and is not a vectors folder written by gsbsim; refusing to replace it")
    if not os.listdir(final):
        return
    try:
        with open(os.path.join(final, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        ok = isinstance(manifest, dict) and MANIFEST_KEYS <= set(manifest)
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise VectorsError(f"{final} holds files that gsbsim did not write (no gsbsim manifest.json); "
                           "refusing to replace it")


def write_vectors(out: str, model, model_path: str, images: np.ndarray, labels: np.ndarray | None, source: str,
                  what: str = "output folder") -> tuple[str, int]:
    """The golden trace of the uint8 ``images`` [N, C, H, W] into ``out``/vectors; returns (that folder, tensors).

    The caller holds ``out``'s lock. ``source`` and ``labels`` go into the manifest; ``what`` names
    ``out`` in the error message of a failed write (the CLI passes its flag). The golden engine's
    InputError / IntegerOverflowError pass through unchanged.
    """
    from gsbsim.engine.golden import forward  # the executable spec defines the expected values
    final = vectors_dir(out)
    check_replaceable(final)  # under the lock: another run may have written it since the caller looked
    _, trace = forward(model, pixels_to_int8(images), trace=True)
    for name in trace:
        if not _SAFE_NAME.match(name):
            raise VectorsError(f"trace name {name!r} cannot be a file name")
    remove_stale(out, [STAGING_PREFIX])  # left by a killed run; safe under the lock
    tmp = str(staging_dir(out, STAGING_PREFIX))
    try:
        tensors = []
        for name, arr in trace.items():
            arr = np.ascontiguousarray(arr)
            np.save(os.path.join(tmp, name + ".npy"), arr, allow_pickle=False)
            tensors.append({"name": name, "file": name + ".npy", "dtype": str(arr.dtype),
                            "shape": list(arr.shape)})
        manifest = {"model": os.path.basename(model_path), "model_sha256": sha256_file(model_path),
                    "engine": "golden", "data": source, "images": int(len(images)),
                    "labels": None if labels is None else labels.tolist(), "tensors": tensors}
        with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
        _swap_in(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and not isinstance(e, BrokenPipeError):  # name the folder, not the temporary
            raise VectorsError(f"{what} {out}: cannot write the vectors ({e.strerror or e})") from None
        raise
    return final, len(tensors)


def _swap_in(tmp: str, final: str) -> None:
    """Rename the finished folder ``tmp`` to ``final``, replacing an older one."""
    old = None
    if os.path.lexists(final):
        old = tempfile.mkdtemp(dir=os.path.dirname(final), prefix=STAGING_PREFIX + "old-")
        os.rmdir(old)
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
