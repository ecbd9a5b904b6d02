"""Input paths: why one cannot be read, said in a few words (shared by gsbsim and reference)."""
from __future__ import annotations

import os
import stat

__all__ = ["input_file_problem"]


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
