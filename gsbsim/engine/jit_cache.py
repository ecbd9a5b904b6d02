"""``cache_depends_on``: key a jitted function's on-disk cache on the modules its cached code contains."""
from __future__ import annotations

import hashlib

__all__ = ["cache_depends_on"]


def cache_depends_on(dispatcher, *modules) -> None:
    """Key the on-disk cache of a jitted function on the source of `modules` too (sha256 of their files).

    Numba keys a cached function on its own file only, but a caller's cached code contains its
    callees from other modules: after editing a callee, the caller would load the old code. With this,
    an edit of any listed module recompiles the caller. (Numba's private cache attributes: without
    them, nothing changes.)"""
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    if cache_file is None or not hasattr(cache_file, "_source_stamp"):
        return
    digest = hashlib.sha256(repr(cache_file._source_stamp).encode())
    for module in modules:
        with open(module.__file__, "rb") as f:
            digest.update(f.read())
    cache_file._source_stamp = digest.hexdigest()
