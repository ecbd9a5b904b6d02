"""Intrinsics that Numba can compile: ``popcount64`` (``llvm.ctpop.i64``), ``ctz64``
(``llvm.cttz.i64``, count trailing zeros) and ``cycle_counter`` (``llvm.readcyclecounter``).

Numba does not accept ``np.bitwise_count`` inside jitted code, and a bit-twiddling
popcount in Python source hides the intent from LLVM. The intrinsics below lower to
the ``popcnt`` / ``tzcnt`` instructions (or, inside loops LLVM vectorises, to its vector
popcount sequence). They return int64, not uint64, on purpose: in Numba
``uint64 + int64`` is float64, which would silently turn integer accumulators into
floats. ``ctz64`` walks the set bits of a sparse word (``t = ctz64(w); w &= w - 1``):
the sparse GSB attention x value product in ``gsbsim.kernels`` is built on it.
``cycle_counter`` reads the CPU's time-stamp counter, so jitted code can time its own
phases (the op split of ``benchmarks/model.py``) at a cost of a few cycles per read.
"""
from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["popcount64", "ctz64", "cycle_counter", "popcount_words"]


def _unary_intrinsic(name: str, extra_false_arg: bool):
    """An @intrinsic calling llvm.<name>.i64 on a 64-bit integer, returning int64."""

    def typer(typingctx, x):
        if not isinstance(x, types.Integer) or x.bitwidth != 64:
            return None  # Numba reports a typing error naming the argument type

        def codegen(context, builder, signature, args):
            i64, i1 = ir.IntType(64), ir.IntType(1)
            params = [i64, i1] if extra_false_arg else [i64]
            fn = builder.module.declare_intrinsic(f"llvm.{name}", [i64], ir.FunctionType(i64, params))
            call_args = [args[0]] + ([ir.Constant(i1, 0)] if extra_false_arg else [])
            return builder.call(fn, call_args)

        return types.int64(x), codegen

    return typer


@intrinsic
def popcount64(typingctx, x):
    """Number of set bits of a 64-bit integer, as int64. Usable only inside njit code."""
    return _unary_intrinsic("ctpop", False)(typingctx, x)


@intrinsic
def ctz64(typingctx, x):
    """Index of the lowest set bit of a 64-bit integer (64 for x == 0), as int64. njit only."""
    # is_zero_poison = false: ctz(0) is defined (64), so callers need no special case
    return _unary_intrinsic("cttz", True)(typingctx, x)


@intrinsic
def cycle_counter(typingctx):
    """The CPU cycle (time-stamp) counter as int64; differences measure time. njit only."""
    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        fn = builder.module.declare_intrinsic("llvm.readcyclecounter", [], ir.FunctionType(i64, []))
        return builder.call(fn, [])

    return types.int64(), codegen


@njit(cache=True, nogil=True, boundscheck=False)
def popcount_words(words):
    """Total set bits of a 1-D uint64 array (a small jitted helper, also used in tests)."""
    total = 0
    for i in range(words.shape[0]):
        total += popcount64(words[i])
    return total
