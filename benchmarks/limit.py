"""The CPU's binary-MAC limit: a register-tiled xor + popcount + add microkernel on L1-resident,
64-byte aligned data, measured the same way on any CPU.

Two measurements of the same quantity:

* ``numba``: gsbsim's own tile (``gsbsim.engine.popcnt.popc_tile``, the shape ``tile_shape()`` picks for
  this CPU) looping over ``WORDS`` packed words of a few rows and 8 * TILE_COLS weight columns: no
  edges, no epilogue worth counting, nothing outside L1. It always runs.
* ``c``: a hand-written 3 x 8 tile in C (benchmarks/popcount_limit.c, AVX-512 VPOPCNTDQ intrinsics
  where the compiler offers them, portable C otherwise), built with the system ``cc -O3
  -march=native``; optional: without a C compiler it is skipped (``c_limit`` returns None and why).

A packed GEMM's "fraction of the limit" is its GMAC/s over the Numba limit's, measured in the same
round (benchmarks/kernels.py); the C tile says whether that limit is itself near what the CPU does.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow running from a checkout without installing gsbsim
    sys.path.insert(0, str(ROOT))

from gsbsim.engine.kernels import TILE_COLS, TILE_ROWS, weight_layout  # noqa: E402
from gsbsim.engine.popcnt import popc_tile  # noqa: E402

WORDS = 32            # K = 2048 bits: weights 32 x 64 columns x 8 bytes = 16 KB at most, in L1
C_SOURCE = Path(__file__).with_name("popcount_limit.c")


@njit(nogil=True, boundscheck=False)
def _numba_limit(a, w_t, out, beta, reps):
    for _ in range(reps):
        popc_tile(a, w_t, out, beta, 0, 0, False, TILE_ROWS, TILE_COLS)


class Limit:
    """One limit kernel: run(reps) does reps tile passes; macs(reps) binary MACs they count."""

    def __init__(self, name: str, describe: str, run, rows: int, cols: int):
        self.name, self.describe, self._run, self.rows, self.cols = name, describe, run, rows, cols

    def run(self, reps: int) -> None:
        self._run(reps)

    def macs(self, reps: int) -> int:
        return self.rows * self.cols * 64 * WORDS * reps


def _operands(rows: int, cols: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """a [rows, WORDS], w [cols, WORDS] random words, and w's 64-byte aligned layout [WORDS, cols]."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2 ** 64, (rows, WORDS), dtype=np.uint64)
    w = rng.integers(0, 2 ** 64, (cols, WORDS), dtype=np.uint64)
    return a, w, weight_layout(w)


def _xor_counts(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.bitwise_count(a[:, None, :] ^ w[None, :, :]).sum(-1, dtype=np.int64)


def numba_limit() -> Limit:
    cols = 8 * TILE_COLS
    a, w, w_t = _operands(TILE_ROWS, cols, 0)
    out = np.empty((TILE_ROWS, cols), dtype=np.int32)
    beta = np.zeros(TILE_ROWS, dtype=np.int64)
    _numba_limit(a, w_t, out, beta, 1)
    assert np.array_equal(out, -2 * _xor_counts(a, w)), "the limit kernel must compute what it claims"
    return Limit("numba", f"gsbsim's {TILE_ROWS} x {TILE_COLS}-vector tile (Numba/LLVM)",
                 lambda reps: _numba_limit(a, w_t, out, beta, reps), TILE_ROWS, cols)


def _build_c() -> tuple[Path | None, str]:
    """The C limit kernel as a shared library (built once per source version), or None and why."""
    named = os.environ.get("CC")
    cc = shutil.which(named) if named else (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang"))
    if not cc:
        return None, f"C compiler {named!r} (from CC) not found" if named else "no C compiler (cc, gcc or clang) on PATH"
    tag = hashlib.sha256(C_SOURCE.read_bytes() + cc.encode()).hexdigest()[:16]
    lib = Path(tempfile.gettempdir()) / "gsbsim-bench" / f"popcount_limit_{tag}.so"
    if not lib.exists():
        lib.parent.mkdir(parents=True, exist_ok=True)
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")
        cmd = [cc, "-O3", "-march=native", "-shared", "-fPIC", str(C_SOURCE), "-o", str(tmp)]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            return None, f"{' '.join(cmd)} failed: {run.stderr.strip()[:300]}"
        tmp.replace(lib)
    return lib, ""


def c_limit() -> tuple[Limit | None, str]:
    """The C tile as a Limit, or (None, why it is skipped)."""
    lib_path, why = _build_c()
    if lib_path is None:
        return None, why
    lib = ctypes.CDLL(str(lib_path))
    lib.tile_run.restype = ctypes.c_int64
    lib.tile_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64]
    lib.tile_isa.restype = ctypes.c_char_p
    a, w, w_t = _operands(3, 64, 1)
    args = (a.ctypes.data, w_t.ctypes.data, WORDS)
    if lib.tile_run(*args, 1) != int(_xor_counts(a, w).sum()):
        return None, "the C tile's checksum is wrong (not used)"
    return Limit("c", f"C, {lib.tile_isa().decode()}", lambda reps: lib.tile_run(*args, reps), 3, 64), ""
