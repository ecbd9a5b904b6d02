"""Model parameters as readable C++ declarations for the generated HLS project.

Two concerns, both numpy + the standard library:

* FINN weight layout (``finn_tiles``): a weight matrix [MH, MW] becomes ``weights[PE][TILES]``
  words of SIMD lanes, row r in lane ``r % PE`` of fold ``r // PE``, tile
  ``fold * SF + sf`` holding columns ``sf*SIMD .. sf*SIMD+SIMD-1`` (hls/include/gsb/mvau.hpp).
  Binary rows are {0,1} bits (one bit per lane), 8-bit rows two's complement bytes (8 bits
  per lane, gsb/int8_ops.hpp). Pad lanes are 0. A word is returned as a Python int.
* C literals and arrays (``c_array``, ``c_scalar``): nested brace initialisers with a
  comment line per array, wrapped so the headers stay readable.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from gsbsim.format.conventions import unpack_bits

__all__ = ["finn_tiles", "packed_rows_to_bits", "c_int", "c_array", "c_scalar", "c_struct", "INT64_MIN"]

INT64_MIN = -(2 ** 63)
_LINE = 100  # wrap initialiser lines near this width


def packed_rows_to_bits(words: np.ndarray, k: int) -> np.ndarray:
    """Conventions-packed uint64 rows [R, ceil(K/64)] -> {0,1} uint8 [R, K]."""
    return unpack_bits(np.asarray(words, dtype=np.uint64), k)


def finn_tiles(matrix: np.ndarray, simd: int, pe: int, lane_bits: int = 1) -> list[list[int]]:
    """[MH, MW] bits (lane_bits 1) or int8 values (lane_bits 8) -> words[PE][TILES] as ints.

    Word bit ``lane_bits*i`` .. holds column ``sf*SIMD + i``; pads are zero.
    """
    m = np.asarray(matrix)
    mh, mw = m.shape
    if mh % pe:
        raise ValueError(f"finn_tiles: PE {pe} does not divide MH {mh}")
    sf = math.ceil(mw / simd)
    if lane_bits == 1:
        lanes = np.zeros((mh, sf * simd), dtype=np.uint8)
        lanes[:, :mw] = m
        # pack SIMD bits LSB first into bytes, then bytes little endian into one integer
        as_bytes = np.packbits(lanes.reshape(mh, sf, simd), axis=-1, bitorder="little")
    elif lane_bits == 8:
        lanes = np.zeros((mh, sf * simd), dtype=np.int8)
        lanes[:, :mw] = m
        as_bytes = lanes.view(np.uint8).reshape(mh, sf, simd)
    else:
        raise ValueError(f"finn_tiles: lane_bits must be 1 or 8, got {lane_bits}")
    # rows r = nf*PE + pe -> [PE][NF*SF]
    nf = mh // pe
    grouped = as_bytes.reshape(nf, pe, sf, as_bytes.shape[-1]).transpose(1, 0, 2, 3)
    return [[int.from_bytes(grouped[p, f, s].tobytes(), "little") for f in range(nf) for s in range(sf)]
            for p in range(pe)]


def c_int(v: int, ctype: str = "int64_t") -> str:
    """A C++ integer literal of type ctype, exact for every value of that type."""
    v = int(v)
    if ctype == "int64_t":
        return "(-9223372036854775807LL - 1)" if v == INT64_MIN else f"{v}LL"
    if ctype == "int32_t" and v == -(2 ** 31):
        return "(-2147483647 - 1)"
    return str(v)


def _nested(values: np.ndarray | list, fmt) -> str:
    """Brace initialiser of a nested array, innermost rows wrapped near _LINE characters."""
    def rec(x, depth: int) -> str:
        if isinstance(x, list) and x and isinstance(x[0], list):
            inner = (",\n" + "    " * (depth + 1)).join(rec(y, depth + 1) for y in x)
            return "{\n" + "    " * (depth + 1) + inner + "}"
        items = [fmt(v) for v in x]
        lines, cur = [], ""
        for it in items:
            if cur and len(cur) + len(it) + 2 > _LINE:
                lines.append(cur + ",")
                cur = ""
            cur = f"{cur}, {it}" if cur else it
        lines.append(cur)
        return "{" + ("\n" + "    " * (depth + 1)).join(lines) + "}"
    if isinstance(values, np.ndarray):
        values = values.tolist()
    return rec(values, 0)


def c_array(ctype: str, name: str, values, comment: str, dims: Sequence[str] | None = None,
            fmt=None) -> str:
    """``// comment`` + ``static const ctype name[d0][d1]... = {...};``.

    ``values`` is a numpy array or nested lists; ``dims`` the C expressions of the
    dimensions (default: the numeric shape).
    """
    if isinstance(values, np.ndarray):
        shape = values.shape
    else:
        shape, x = [], values
        while isinstance(x, list):
            shape.append(len(x))
            x = x[0] if x else None
    dims = list(dims) if dims is not None else [str(s) for s in shape]
    if fmt is None:
        fmt = lambda v: c_int(v, ctype)  # noqa: E731
    decl = "".join(f"[{d}]" for d in dims)
    return f"// {comment}\nstatic const {ctype} {name}{decl} = {_nested(values, fmt)};\n"


def c_scalar(ctype: str, name: str, value: int, comment: str) -> str:
    """``// comment`` + ``static const ctype name = value;``."""
    return f"// {comment}\nstatic const {ctype} {name} = {c_int(value, ctype)};\n"


def c_struct(ctype: str, name: str, comment: str, fields: Sequence[tuple[str, object]],
             elem: str = "int64_t") -> str:
    """``// comment`` + ``static const ctype name = {...};`` of an aggregate (e.g. gsb::ActUnit).

    ``fields`` are (field name, a scalar or an array of ``elem`` values) in declaration order;
    each initialiser is preceded by a ``/* field */`` comment.
    """
    fmt = lambda v: c_int(v, elem)  # noqa: E731
    inits = []
    for field, value in fields:
        arr = np.asarray(value)
        init = fmt(int(arr)) if arr.ndim == 0 else _nested(arr, fmt).replace("\n", "\n    ")
        inits.append(f"    /* {field} */ {init}")
    return f"// {comment}\nstatic const {ctype} {name} = {{\n" + ",\n".join(inits) + "};\n"
