"""Small int32 tables looked up sixteen lanes at a time: the softmax's exp table (``lookup_i32``)
and the GSB A.V context's value tables (``lookup_sums``).

The softmax looks up e_j = exp_lut[m_j] for every key of every query row. LLVM does not vectorise
that loop here (it will not emit gathers for this CPU, and a gather is slow anyway: measured on an
AMD Zen 4 in C, 197 lookups of a 65-entry table cost ~250 cycles as scalar loads, ~185 with
``vpgatherdd`` and ~73 with ``vpermi2d``). ``vpermi2d`` picks sixteen int32 lanes out of two
registers (32 entries) by the low 5 bits of each index, so a table of 32*C entries is C such
permutes, each kept in the lanes whose index falls in its 32 entries. It reads the table at fixed
offsets only: an index outside the table gives 0 instead of reading memory it should not. A table
of up to HELD chunks (the exp table of a head dim up to 127) is loaded into registers once per row.

Where the target has no AVX-512 the same intrinsic emits sixteen scalar loads per group, the index clamped
to the table (same integers for every index in the table; tests/test_kernels.py compiles the fast
path for an AVX2-only CPU and checks it against the golden path).

``lookup_sums`` adds up whole rows of lookups: the A.V context of one attention row is the sum, over
the keys whose attention bit is set, of value_table[code] for each of the head's D value codes (a
code has G <= 4 bits, so a table has at most 16 entries: one register, one ``vpermd`` per sixteen
codes). It keeps the sums in registers over the whole list of keys. Measured on an AMD Zen 4 against
the value-table walk it replaces (a table of G*N rows of D int32 built per head, then rows added):
the A.V phase of a random DeiT-Tiny G=3 went from ~455 to ~245 TSC ticks per attention row.
"""
from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from gsbsim.engine.popcnt import _c_array, _i32_vector, _splat, _target_features, allow_512_bit

__all__ = ["lookup_i32", "lookup_sums", "LANES", "CHUNK", "HELD", "TABLE", "ID_BITS", "padded_table_size"]

LANES = 16    # lookups per vector (one zmm of int32)
CHUNK = 32    # table entries per vpermi2d (two zmm)
HELD = 4      # chunks lookup_i32 keeps in registers over a whole call (8 zmm): tables of up to 128 entries
TABLE = 16    # entries per lookup_sums table (one zmm: vpermd's reach)
ID_BITS = 24  # a lookup_sums id is (table << ID_BITS) | key


@njit(inline="always", nogil=True)
def padded_table_size(n: int) -> int:
    """Entries a table of n entries needs for lookup_i32 (a multiple of CHUNK, zero-padded;
    callable from Python and from jitted code)."""
    return max(CHUNK, (n + CHUNK - 1) // CHUNK * CHUNK)


def has_permute_lookup() -> bool:
    """Whether lookup_i32 and lookup_sums compile to permutes (an AVX-512 target) rather than scalar loads."""
    return "+avx512f" in _target_features().split(",")


@intrinsic
def lookup_i32(typingctx, table, src, n, sub, dst):
    """dst[j] = table[src[j] - sub] for j < n rounded up to a multiple of LANES (int32, C-contiguous 1-D
    arrays; len(table) a multiple of CHUNK, see ``padded_table_size``; src and dst padded to whole
    groups of LANES). An index outside [0, len(table)) gives 0 (AVX-512) or the nearest entry (other
    targets): the callers' indices are always inside. A table of up to HELD chunks is loaded into
    registers once per call. Returns nothing. njit only."""
    if not (_i32_vector(table) and _i32_vector(src) and _i32_vector(dst)
            and isinstance(n, types.Integer) and isinstance(sub, types.Integer)):
        return None  # Numba reports a typing error naming the argument types

    def codegen(context, builder, signature, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        vec = ir.VectorType(i32, LANES)
        sig = signature.args

        def data(k):
            return context.make_array(sig[k])(context, builder, args[k]).data

        count = context.cast(builder, args[2], sig[2], types.int64)
        groups = builder.udiv(builder.add(count, ir.Constant(i64, LANES - 1)), ir.Constant(i64, LANES))
        offset = _splat(builder, builder.trunc(context.cast(builder, args[3], sig[3], types.int64), i32), vec)
        table_p, src_p, dst_p = data(0), data(1), data(4)
        size = builder.extract_value(context.make_array(sig[0])(context, builder, args[0]).shape, 0)

        def each_group(lookup):
            with cgutils.for_range(builder, groups) as loop:
                at = builder.mul(loop.index, ir.Constant(i64, LANES))
                idx = builder.sub(builder.load(_vec_at(builder, src_p, at), align=4), offset)
                builder.store(lookup(idx), _vec_at(builder, dst_p, at), align=4)

        if not has_permute_lookup():
            each_group(lambda idx: _scalar_lookup(builder, table_p, size, idx))
            return context.get_dummy_value()
        chunks = builder.udiv(size, ir.Constant(size.type, CHUNK))
        done = builder.append_basic_block("lookup.done")
        other = builder.append_basic_block("lookup.any_size")
        switch = builder.switch(chunks, other)
        for k in range(1, HELD + 1):          # the chunks in registers for the whole row
            block = builder.append_basic_block(f"lookup.held{k}")
            switch.add_case(ir.Constant(chunks.type, k), block)
            builder.position_at_end(block)
            held = [builder.load(_vec_at(builder, table_p, ir.Constant(i64, LANES * h)), align=4) for h in range(2 * k)]
            each_group(lambda idx, held=held: _permute_lookup(builder, held, idx))
            builder.branch(done)
        builder.position_at_end(other)          # larger tables: the chunks loaded per group
        each_group(lambda idx: _permute_lookup(builder, None, idx, table_p, chunks))
        builder.branch(done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return types.none(table, src, n, sub, dst), codegen


def _vec_at(builder, base, offset):
    return builder.bitcast(builder.gep(base, [offset]), ir.VectorType(ir.IntType(32), LANES).as_pointer())


def _permute_lookup(builder, held, idx, table=None, chunks=None):
    """One vpermi2d per CHUNK-entry chunk of the table, kept where idx >> 5 names the chunk: the chunks'
    registers `held` (lo, hi of each), or else the `chunks` chunks of `table` loaded here."""
    i32 = ir.IntType(32)
    vec = ir.VectorType(i32, LANES)
    allow_512_bit(builder.function)     # the enclosing function may use 512-bit registers
    perm = builder.module.declare_intrinsic("llvm.x86.avx512.vpermi2var.d.512", [],
                                            ir.FunctionType(vec, [vec, vec, vec]))
    chunk_of = builder.lshr(idx, _splat(builder, ir.Constant(i32, 5), vec))

    def kept(c, lo, hi, result):
        here = builder.icmp_unsigned("==", chunk_of, _splat(builder, c, vec))
        return builder.select(here, builder.call(perm, [lo, idx, hi]), result)

    if held is not None:
        result = ir.Constant(vec, None)
        for c in range(len(held) // 2):
            result = kept(ir.Constant(i32, c), held[2 * c], held[2 * c + 1], result)
        return result
    out = cgutils.alloca_once_value(builder, ir.Constant(vec, None))
    builder.store(ir.Constant(vec, None), out)
    with cgutils.for_range(builder, chunks) as loop:
        base = builder.mul(loop.index, ir.Constant(loop.index.type, CHUNK))
        lo = builder.load(_vec_at(builder, table, base), align=4)
        hi = builder.load(_vec_at(builder, table, builder.add(base, ir.Constant(base.type, LANES))), align=4)
        builder.store(kept(builder.trunc(loop.index, i32), lo, hi, builder.load(out)), out)
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


@intrinsic
def lookup_sums(typingctx, tables, codes, ids, n, init, out, at):
    """out[at + j] = init[j] + sum_{q < n} tables[TABLE * (ids[q] >> ID_BITS) + codes[ids[q] & key mask, j]]
    for j < D, with codes uint8 [N, D] (C-contiguous, D a multiple of LANES, every code < TABLE),
    tables int32 (TABLE entries per table), ids int32, init int64 [>= D], out int64 1-D.

    The lookups are summed in int32 lanes (wrapping like C: the caller keeps every partial sum in
    range), then widened and added to init. Returns nothing. njit only."""
    if not (_i32_vector(tables) and _c_array(codes, types.uint8, 2) and _i32_vector(ids)
            and isinstance(n, types.Integer) and _c_array(init, types.int64, 1) and _c_array(out, types.int64, 1)
            and isinstance(at, types.Integer)):
        return None  # Numba reports a typing error naming the argument types

    def codegen(context, builder, signature, args):
        sig = signature.args
        arrays = [context.make_array(sig[k])(context, builder, args[k]) for k in (0, 1, 2, 4, 5)]
        i64 = ir.IntType(64)
        count = context.cast(builder, args[3], sig[3], types.int64)
        at_v = context.cast(builder, args[6], sig[6], types.int64)
        d = builder.extract_value(arrays[1].shape, 1)        # codes [N, D]
        sums = _RowSums(builder, *(a.data for a in arrays), count, d)
        blocks = builder.udiv(d, ir.Constant(i64, 4 * LANES))
        with cgutils.for_range(builder, blocks) as loop:     # four registers of sums per pass over ids
            sums.columns(builder.mul(loop.index, ir.Constant(i64, 4 * LANES)), 4, at_v)
        done = builder.mul(blocks, ir.Constant(i64, 4 * LANES))
        rest = builder.udiv(builder.sub(d, done), ir.Constant(i64, LANES))
        with cgutils.for_range(builder, rest) as loop:       # then sixteen columns at a time
            sums.columns(builder.add(done, builder.mul(loop.index, ir.Constant(i64, LANES))), 1, at_v)
        return context.get_dummy_value()

    return types.none(tables, codes, ids, n, init, out, at), codegen


class _RowSums:
    """The IR of lookup_sums: one pass over the ids per group of column vectors."""

    def __init__(self, builder, tables, codes, ids, init, out, count, d):
        self.b, self.tables, self.codes, self.ids, self.init, self.out = builder, tables, codes, ids, init, out
        self.count, self.d = count, d
        self.i32, self.i64 = ir.IntType(32), ir.IntType(64)
        self.vec = ir.VectorType(self.i32, LANES)
        self.permute = has_permute_lookup()
        if self.permute:
            allow_512_bit(builder.function)
            self.perm = builder.module.declare_intrinsic("llvm.x86.avx512.permvar.si.512", [],
                                                         ir.FunctionType(self.vec, [self.vec, self.vec]))

    def _lookup(self, table_ptr, table_vec, idx):
        if self.permute:
            return self.b.call(self.perm, [table_vec, idx])      # vpermd: the low 4 bits of each index
        return _scalar_lookup(self.b, table_ptr, ir.Constant(self.i64, TABLE), idx)

    def columns(self, col, k_n: int, at):
        """Columns col .. col + 16*k_n: k_n int32 sums kept in registers over all ids, then stored."""
        b, i64, vec = self.b, self.i64, self.vec
        zero = ir.Constant(vec, None)
        accs = [cgutils.alloca_once_value(b, zero) for _ in range(k_n)]
        for acc in accs:
            b.store(zero, acc)
        with cgutils.for_range(b, self.count) as loop:
            idv = b.zext(b.load(b.gep(self.ids, [loop.index])), i64)
            key = b.and_(idv, ir.Constant(i64, (1 << ID_BITS) - 1))
            table_ptr = b.gep(self.tables, [b.mul(b.lshr(idv, ir.Constant(i64, ID_BITS)), ir.Constant(i64, TABLE))])
            table_vec = b.load(b.bitcast(table_ptr, vec.as_pointer()), align=4) if self.permute else None
            row = b.add(b.mul(key, self.d), col)
            for k, acc in enumerate(accs):
                src = b.gep(self.codes, [b.add(row, ir.Constant(i64, k * LANES))])
                idx = b.zext(b.load(b.bitcast(src, ir.VectorType(ir.IntType(8), LANES).as_pointer()), align=1), vec)
                b.store(b.add(b.load(acc), self._lookup(table_ptr, table_vec, idx)), acc)
        wide = ir.VectorType(i64, LANES)
        for k, acc in enumerate(accs):
            j = b.add(col, ir.Constant(i64, k * LANES))
            base = b.load(b.bitcast(b.gep(self.init, [j]), wide.as_pointer()), align=8)
            dst = b.bitcast(b.gep(self.out, [b.add(at, j)]), wide.as_pointer())
            b.store(b.add(base, b.sext(b.load(acc), wide)), dst, align=8)
