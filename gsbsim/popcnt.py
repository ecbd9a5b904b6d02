"""A popcount that Numba can compile: ``popcount64(x)`` emits ``llvm.ctpop.i64``.

Numba does not accept ``np.bitwise_count`` inside jitted code, and a bit-twiddling
popcount in Python source hides the intent from LLVM. The intrinsic below lowers to
the ``popcnt`` instruction (or, inside loops LLVM vectorises, to its vector popcount
sequence). It returns int64, not uint64, on purpose: in Numba ``uint64 + int64`` is
float64, which would silently turn integer accumulators into floats.
"""
from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["popcount64", "popcount_words"]


@intrinsic
def popcount64(typingctx, x):
    """Number of set bits of a 64-bit integer, as int64. Usable only inside njit code."""
    if not isinstance(x, types.Integer) or x.bitwidth != 64:
        return None  # Numba reports a typing error naming the argument type

    sig = types.int64(x)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        ctpop = builder.module.declare_intrinsic("llvm.ctpop", [i64])
        return builder.call(ctpop, [args[0]])

    return sig, codegen


@njit(cache=True, nogil=True, boundscheck=False)
def popcount_words(words):
    """Total set bits of a 1-D uint64 array (a small jitted helper, also used in tests)."""
    total = 0
    for i in range(words.shape[0]):
        total += popcount64(words[i])
    return total
