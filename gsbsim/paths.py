"""Paths given by the user: why one cannot be read or written, in a few words (shared by gsbsim and reference);
and a file's sha256 (model files are identified by it in vectors manifests and project.json)."""
from __future__ import annotations

import hashlib
import os
import stat

__all__ = ["input_file_problem", "output_file_problem", "output_folder_problem", "sha256_file"]


def input_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as an input file ("not found", "is a folder, not a file", ...), or None.

    A FIFO or device is refused up front: reading one would block forever or never end.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "not found"
    except OSError as e:  # a symlink loop, a name too long, a folder without permission...
        return f"cannot be read ({e.strerror or type(e).__name__})"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a FIFO, socket or device)"
    return None


def output_file_problem(path: str | os.PathLike) -> str | None:
    """Why a file cannot be (atomically) written at ``path``, or None.

    Writing renames a finished temporary onto ``path``, which would silently replace a
    folder's worth of confusion: a FIFO, a device, a dangling or looping symlink. Those are
    refused, as are an empty name and a missing parent folder.
    """
    path = os.fspath(path)
    if not path:
        return "is an empty file name"
    if os.path.lexists(path):
        try:
            st = os.stat(path)
        except OSError as e:  # a dangling or looping symlink
            return f"exists but cannot be used ({e.strerror or type(e).__name__})"
        if stat.S_ISDIR(st.st_mode):
            return "is a folder; give a file name"
        if not stat.S_ISREG(st.st_mode):
            return "exists and is not a regular file (a FIFO, socket or device); refusing to replace it"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):  # checked here so no message names a temporary
        return f"folder {folder} is not writable"
    return None


def output_folder_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be used (or created) as an output folder, or None."""
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path):
        if not os.path.isdir(path):
            return "exists and is not a folder"
        if not os.access(path, os.W_OK | os.X_OK):
            return "is not writable"
        return None
    parent = os.path.dirname(path)
    while not os.path.lexists(parent):  # the nearest existing ancestor is where mkdir must write
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"cannot be created: {parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created: {parent} is not writable"
    return None


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
