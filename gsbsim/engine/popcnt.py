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
``add4_i32x8`` adds four 8-lane int32 slices into a fifth as explicit vector loads, adds
and one store: a loop doing the same over short rows (64 lanes) spends more time in
the run-time aliasing checks that LLVM puts before it than in the additions.
"""
from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["popcount64", "ctz64", "cycle_counter", "add4_i32x8", "popcount_words"]


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


def _i32_vector(typ) -> bool:
    return isinstance(typ, types.Array) and typ.ndim == 1 and typ.layout == "C" and typ.dtype == types.int32


@intrinsic
def add4_i32x8(typingctx, acc, at, src, o1, o2, o3, o4):
    """acc[at:at+8] += (src[o1:o1+8] + src[o2:o2+8]) + (src[o3:o3+8] + src[o4:o4+8]), int32
    lanes wrapping like C (the caller keeps the sums in range), acc and src C-contiguous 1-D
    int32 arrays, offsets unchecked. Returns nothing. njit only."""
    offsets = (at, o1, o2, o3, o4)
    if not (_i32_vector(acc) and _i32_vector(src) and all(isinstance(o, types.Integer) for o in offsets)):
        return None  # Numba reports a typing error naming the argument types

    def codegen(context, builder, signature, args):
        vec = ir.VectorType(ir.IntType(32), 8)

        def ptr(array_index, offset_index):
            data = context.make_array(signature.args[array_index])(context, builder, args[array_index]).data
            off = context.cast(builder, args[offset_index], signature.args[offset_index], types.int64)
            return builder.bitcast(builder.gep(data, [off]), vec.as_pointer())

        s = [builder.load(ptr(2, k), align=4) for k in (3, 4, 5, 6)]
        total = builder.add(builder.add(s[0], s[1]), builder.add(s[2], s[3]))
        dst = ptr(0, 1)
        builder.store(builder.add(builder.load(dst, align=4), total), dst, align=4)
        return context.get_dummy_value()

    return types.none(acc, at, src, o1, o2, o3, o4), codegen


@njit(cache=True, nogil=True, boundscheck=False)
def popcount_words(words):
    """Total set bits of a 1-D uint64 array (a small jitted helper, also used in tests)."""
    total = 0
    for i in range(words.shape[0]):
        total += popcount64(words[i])
    return total
