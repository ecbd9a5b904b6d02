"""Output folders every command writes: locked against a second writer, staged with normal permissions.

Shared by ``gsbsim vectors``, ``gsbsim hls`` and ``python -m reference.train``:

* ``folder_lock(path)``: an exclusive, non-blocking ``flock`` on the folder itself, held while
  a command writes there. A second command into the same folder fails at once with
  ``OutputLocked`` instead of interleaving its files with the first one's. The lock lives on
  the folder's descriptor, so it leaves no lock file behind and dies with the process (kill -9
  included). A folder the lock had to create is removed again if it is still empty on release,
  so a command that fails on bad input leaves nothing behind.
* ``staging_dir(parent, prefix)``: ``mkdtemp`` with the permissions of an ordinary
  ``mkdir`` (mkdtemp makes 0700, which would hide the renamed output from other users).
* ``remove_stale(parent, prefixes)``: temporary files and folders that a killed run left
  behind; only call it while holding the folder's lock (then no live writer owns them).
* ``temp_file_for(path)`` / ``remove_dead_temps(path)``: for single files written without a
  folder lock (``reference.export --out``, ``gsbsim run --plot``): the temporary sibling's
  name carries the writer's process id, so a later write removes exactly the temporaries
  whose writer is dead (killed with -9) and never a live one's.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from gsbsim.paths import output_folder_problem

__all__ = ["OutputError", "OutputLocked", "folder_lock", "staging_dir", "remove_stale", "umask", "dir_mode",
           "file_mode", "temp_file_for", "remove_dead_temps"]


class OutputError(Exception):
    """An output folder that cannot be used (a file in its place, or locked); one line for the user."""


class OutputLocked(OutputError):
    """Another live process is writing into the same output folder."""


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def dir_mode() -> int:
    """The mode ``mkdir`` would give a new folder under the current umask."""
    return 0o777 & ~umask()


def file_mode() -> int:
    """The mode ``open(..., 'w')`` would give a new file under the current umask."""
    return 0o666 & ~umask()


def staging_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A fresh temporary folder in ``parent`` with ordinary (umask) permissions."""
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    os.chmod(path, dir_mode())
    return path


def remove_stale(parent: str | os.PathLike, prefixes: Sequence[str], suffix: str = "") -> list[str]:
    """Remove entries of ``parent`` named ``<prefix>...<suffix>`` (leftovers of a killed run); returns their names."""
    parent = Path(parent)
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        if any(p.name.startswith(pre) for pre in prefixes) and p.name.endswith(suffix):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            removed.append(p.name)
    return removed


@contextlib.contextmanager
def folder_lock(path: str | os.PathLike, what: str = "output folder") -> Iterator[Path]:
    """Hold an exclusive lock on folder ``path`` (created, with its parents, if missing).

    Raises OutputLocked naming the folder when another process holds it, OutputError
    when ``path`` is a file. On exit, a folder this call created is removed if still empty.
    """
    path = Path(path)
    problem = output_folder_problem(path)
    if problem:
        raise OutputError(f"{what} {path} {problem}")
    created = []
    for p in reversed([path, *path.parents]):  # remember what we create, to undo it if unused
        if not p.exists():
            p.mkdir(exist_ok=True)
            created.append(p)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputLocked(f"{what} {path} is in use by another running process "
                               "(wait for it to finish or choose another folder)") from None
        yield path
    finally:
        os.close(fd)  # releases the lock
        for p in reversed(created):
            with contextlib.suppress(OSError):
                p.rmdir()  # only succeeds when empty: a failed run leaves nothing behind


def temp_file_for(path: str | os.PathLike) -> tuple[int, str]:
    """(fd, name) of a new temporary sibling of ``path``: ``.<name>.<pid>.<random>.tmp<ext>``, mode 0600.

    It keeps ``path``'s extension, for writers that choose the format by it (matplotlib).
    """
    folder, name = os.path.split(os.path.abspath(path))
    return tempfile.mkstemp(dir=folder, prefix=f".{name}.{os.getpid()}.", suffix=".tmp" + os.path.splitext(name)[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_dead_temps(path: str | os.PathLike) -> list[str]:
    """Remove temporaries of ``path`` (temp_file_for's names) whose writing process no longer exists."""
    folder, name = os.path.split(os.path.abspath(path))
    ext = re.escape(os.path.splitext(name)[1])
    pattern = re.compile(r"^\." + re.escape(name) + r"\.(\d+)\.[^/]*\.tmp" + ext + "$")
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.listdir(folder):
            m = pattern.match(entry)
            if m and not _alive(int(m.group(1))):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, entry))
                removed.append(entry)
    return removed
