"""``lookup_i32x16``: sixteen lookups in a small int32 table at once, for the softmax's exp table.

The softmax looks up e_j = exp_lut[m_j] for every key of every query row. LLVM does not vectorise
that loop here (it will not emit gathers for this CPU, and a gather is slow anyway: measured on an
AMD Zen 4 in C, 197 lookups of a 65-entry table cost ~250 cycles as scalar loads, ~185 with
``vpgatherdd`` and ~73 with ``vpermi2d``). ``vpermi2d`` picks sixteen int32 lanes out of two
registers (32 entries) by the low 5 bits of each index, so a table of 32*C entries is C such
permutes, each kept in the lanes whose index falls in its 32 entries. It reads the table at fixed
offsets only: an index outside the table gives 0 instead of reading memory it should not.

Where the target has no AVX-512 the same intrinsic emits sixteen scalar loads, the index clamped
to the table (same integers for every index in the table; tests/test_kernels.py compiles the fast
path for an AVX2-only CPU and checks it against the golden path).
"""
from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from gsbsim.engine.popcnt import _splat, _target_features, allow_512_bit

__all__ = ["lookup_i32x16", "LANES", "CHUNK", "padded_table_size"]

LANES = 16    # lookups per call (one zmm of int32)
CHUNK = 32    # table entries per vpermi2d (two zmm)


@njit(inline="always", nogil=True)
def padded_table_size(n: int) -> int:
    """Entries a table of n entries needs for lookup_i32x16 (a multiple of CHUNK, zero-padded;
    callable from Python and from jitted code)."""
    return max(CHUNK, (n + CHUNK - 1) // CHUNK * CHUNK)


def has_permute_lookup() -> bool:
    """Whether lookup_i32x16 compiles to permutes (an AVX-512 target) rather than scalar loads."""
    return "+avx512f" in _target_features().split(",")


def _i32_array(typ) -> bool:
    return isinstance(typ, types.Array) and typ.ndim == 1 and typ.layout == "C" and typ.dtype == types.int32


@intrinsic
def lookup_i32x16(typingctx, table, src, at, sub, dst):
    """dst[at:at+16] = table[src[at:at+16] - sub] (int32, C-contiguous 1-D arrays; len(table) a
    multiple of CHUNK, see ``padded_table_size``; src and dst hold at least at + 16 elements).
    An index outside [0, len(table)) gives 0 (AVX-512) or the nearest entry (other targets): the
    callers' indices are always inside. Returns nothing. njit only."""
    if not (_i32_array(table) and _i32_array(src) and _i32_array(dst)
            and isinstance(at, types.Integer) and isinstance(sub, types.Integer)):
        return None  # Numba reports a typing error naming the argument types

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        vec = ir.VectorType(i32, LANES)
        sig = signature.args

        def data(k):
            return context.make_array(sig[k])(context, builder, args[k]).data

        def vec_ptr(k, offset):
            return builder.bitcast(builder.gep(data(k), [offset]), vec.as_pointer())

        off = context.cast(builder, args[2], sig[2], types.int64)
        s = builder.trunc(context.cast(builder, args[3], sig[3], types.int64), i32)
        idx = builder.sub(builder.load(vec_ptr(1, off), align=4), _splat(builder, s, vec))
        size = builder.extract_value(context.make_array(sig[0])(context, builder, args[0]).shape, 0)
        if has_permute_lookup():
            result = _permute_lookup(builder, data(0), size, idx)
        else:
            result = _scalar_lookup(builder, data(0), size, idx)
        builder.store(result, vec_ptr(4, off), align=4)
        return context.get_dummy_value()

    return types.none(table, src, at, sub, dst), codegen


def _permute_lookup(builder, table, size, idx):
    """The table's CHUNK-entry chunks, each one vpermi2d, kept where idx >> 5 names the chunk."""
    i32 = ir.IntType(32)
    vec = ir.VectorType(i32, LANES)
    allow_512_bit(builder.function)     # the enclosing function may use 512-bit registers
    perm = builder.module.declare_intrinsic("llvm.x86.avx512.vpermi2var.d.512", [],
                                            ir.FunctionType(vec, [vec, vec, vec]))
    chunk_of = builder.lshr(idx, _splat(builder, ir.Constant(i32, 5), vec))
    chunks = builder.udiv(size, ir.Constant(size.type, CHUNK))
    out = cgutils.alloca_once_value(builder, ir.Constant(vec, None))
    with cgutils.for_range(builder, chunks) as loop:
        base = builder.mul(loop.index, ir.Constant(loop.index.type, CHUNK))
        lo = builder.load(builder.bitcast(builder.gep(table, [base]), vec.as_pointer()), align=4)
        hi = builder.load(builder.bitcast(builder.gep(table, [builder.add(base, ir.Constant(base.type, LANES))]),
                                          vec.as_pointer()), align=4)
        picked = builder.call(perm, [lo, idx, hi])
        here = builder.icmp_unsigned("==", chunk_of, _splat(builder, builder.trunc(loop.index, i32), vec))
        builder.store(builder.select(here, picked, builder.load(out)), out)
    return builder.load(out)


def _scalar_lookup(builder, table, size, idx):
    """Sixteen scalar loads, each index clamped to the table (unsigned: a negative index clamps high)."""
    i32, i64 = ir.IntType(32), ir.IntType(64)
    top = builder.trunc(builder.sub(size, ir.Constant(size.type, 1)), i32)
    out = ir.Constant(ir.VectorType(i32, LANES), None)
    for lane in range(LANES):
        k = builder.extract_element(idx, ir.Constant(i32, lane))
        k = builder.select(builder.icmp_unsigned(">", k, top), top, k)
        val = builder.load(builder.gep(table, [builder.zext(k, i64)]), align=4)
        out = builder.insert_element(out, val, ir.Constant(i32, lane))
    return out
