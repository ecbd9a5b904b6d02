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

__all__ = ["popcount64", "ctz64", "cycle_counter", "add4_i32x8", "add4_i32x16", "popcount_words", "popc_tile", "tile_shape",
           "vector_isa", "wide_vectors"]


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


def _add4_typer(lanes: int):
    """The typer of add4_i32x<lanes>: acc[at:at+L] += (src[o1:o1+L] + src[o2:o2+L]) + (src[o3:o3+L] + src[o4:o4+L])."""
    def typer(typingctx, acc, at, src, o1, o2, o3, o4):
        offsets = (at, o1, o2, o3, o4)
        if not (_i32_vector(acc) and _i32_vector(src) and all(isinstance(o, types.Integer) for o in offsets)):
            return None  # Numba reports a typing error naming the argument types

        def codegen(context, builder, signature, args):
            vec = ir.VectorType(ir.IntType(32), lanes)

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
    return typer


@intrinsic
def add4_i32x8(typingctx, acc, at, src, o1, o2, o3, o4):
    """acc[at:at+8] += (src[o1:o1+8] + src[o2:o2+8]) + (src[o3:o3+8] + src[o4:o4+8]), int32
    lanes wrapping like C (the caller keeps the sums in range), acc and src C-contiguous 1-D
    int32 arrays, offsets unchecked. Returns nothing. njit only."""
    return _add4_typer(8)(typingctx, acc, at, src, o1, o2, o3, o4)


@intrinsic
def add4_i32x16(typingctx, acc, at, src, o1, o2, o3, o4):
    """add4_i32x8 on 16 lanes (one zmm register in a function marked by wide_vectors, else two ymm)."""
    return _add4_typer(16)(typingctx, acc, at, src, o1, o2, o3, o4)


@njit(cache=True, nogil=True, boundscheck=False)
def popcount_words(words):
    """Total set bits of a 1-D uint64 array (a small jitted helper, also used in tests)."""
    total = 0
    for i in range(words.shape[0]):
        total += popcount64(words[i])
    return total


def allow_512_bit(function) -> None:
    """Mark an LLVM IR function with clang's -mprefer-vector-width=512 attributes (see wide_vectors)."""
    for attr in ('"min-legal-vector-width"="512"', '"prefer-vector-width"="512"'):
        set.add(function.attributes, attr)   # string attributes: llvmlite's add() knows only keywords


@intrinsic
def wide_vectors(typingctx):
    """Call first thing in a jitted function: LLVM may vectorise its loops with 512-bit registers.

    LLVM's tuning for Intel cores with AVX-512 prefers 256-bit vectors ("prefer-256-bit"), so Numba's
    loops run on ymm registers at half the width the CPU has (measured here: the softmax, the
    residual + LayerNorm and the q/k/v split 10-20 % faster with zmm). This marks the enclosing
    function (not its callees) with clang's -mprefer-vector-width=512 attribute; where the CPU has no
    512-bit registers the attribute changes nothing. Returns nothing. njit only."""
    def codegen(context, builder, signature, args):
        allow_512_bit(builder.function)
        return context.get_dummy_value()

    return types.none(), codegen


# ============================================================================ register-tiled GEMM microkernel
# A tile of R rows x C column vectors (8 columns each) of a packed binary GEMM, its R*C
# accumulators held in vector registers over the whole K loop: per packed word, C vector
# loads of the transposed weights and R broadcast a-words serve R*C (xor|and, popcount,
# add) triples, so the loop is bound by the popcount port rather than by loads and stores.
# Written as LLVM IR because Numba's vectoriser keeps one output row per loop (and, where
# LLVM's tuning prefers 256-bit vectors, e.g. Intel server cores, ymm registers): the tile's
# function asks for 512-bit registers itself ("min-legal-vector-width"). On a CPU without
# AVX-512 the same IR is legalised to pairs of 256-bit registers (a nibble-table popcount on
# AVX2): same integers, a smaller tile (``tile_shape``).

_V = 8   # int64 lanes per column vector


def _target_features() -> str:
    """The CPU features Numba compiles for ("+avx2,+avx512f,..."): NUMBA_CPU_FEATURES, else the host's
    (none known when only NUMBA_CPU_NAME is set)."""
    from numba.core import config
    import llvmlite.binding as ll

    if config.CPU_FEATURES is not None:
        return config.CPU_FEATURES
    return "" if config.CPU_NAME else ll.get_host_cpu_features().flatten()


def vector_isa() -> str:
    """The vector popcount the tile kernel compiles to on this target, in words (for benchmarks)."""
    feats = set(_target_features().split(","))
    if {"+avx512f", "+avx512vpopcntdq"} <= feats:
        return "AVX-512 with VPOPCNTDQ (vpopcntq zmm)"
    if "+avx512bw" in feats:
        return "AVX-512BW (zmm, nibble-table popcount)"
    if "+avx2" in feats:
        return "AVX2 (ymm, nibble-table popcount)"
    return "no AVX2 (LLVM's generic vector code)"


def tile_shape() -> tuple[int, int]:
    """(rows, column vectors) of the GEMM register tile for the target: 4 x 6 accumulators of 8 int64
    lanes fill 24 of AVX-512's 32 zmm registers (6 more for weights); on AVX2 a vector of 8 lanes
    takes two of the 16 ymm registers and the nibble popcount needs its own, so 2 x 2. Only speed
    depends on it (every tile computes the same integers)."""
    return (4, 6) if vector_isa().startswith("AVX-512 with") else (2, 2)


def _splat(builder, value, vec):
    undef = ir.Constant(vec, ir.Undefined)
    one = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(ir.IntType(32), vec.count), [0] * vec.count))


def _tile_function(module, r_n: int, c_n: int, bits: bool = False):
    """The IR function of one R x C tile: void(a, a_stride, w, w_stride, words, use_and, out, out_stride, beta)
    computing out[r, 8c + l] = int32(beta[r] -+ 2 * sum_{j < words} popcount(a[r, j] OP w[j, 8c + l]))
    (- for OP = XOR, + for OP = AND when use_and; pointers at the tile's first row / column, strides in
    elements, words >= 1). The first word initialises the accumulators (no zeroing, no add), and
    the epilogue narrows two column vectors with one lane shuffle before the 32-bit arithmetic.

    With bits, void(a, a_stride, w, w_stride, words, use_and, out, out_stride, shift, hi, lo, beta) ORs
    the bits (value >= hi[8c + l] or value <= lo[8c + l]) of those int32 values into the packed rows
    out (uint64, at the tile's first word; bit `shift` of it is column 0; see _tile_epilogue_bits)."""
    name = f"gsbsim_popc_tile_{r_n}x{c_n}" + ("_bits" if bits else "")
    if name in module.globals:
        return module.globals[name]
    i1, i32, i64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
    v64 = ir.VectorType(i64, _V)
    p64, p32 = i64.as_pointer(), i32.as_pointer()
    args = [p64, i64, p64, i64, i64, i1] + ([p64, i64, i64, p32, p32, p64] if bits else [p32, i64, p64])
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), args), name)
    fn.linkage = "linkonce_odr"
    fn.attributes.add("nounwind")
    fn.attributes.add("noinline")     # keeps the 512-bit request to this function
    allow_512_bit(fn)
    a, a_stride, w, w_stride, words, use_and, out, out_stride = fn.args[:8]
    beta = fn.args[-1]
    ctpop = module.globals.get("llvm.ctpop.v8i64") or ir.Function(module, ir.FunctionType(v64, [v64]),
                                                                  "llvm.ctpop.v8i64")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    blocks = {op: [fn.append_basic_block(f"{op}_{part}") for part in ("first", "loop", "exit")]
              for op in ("xor", "and")}
    b.cbranch(use_and, blocks["and"][0], blocks["xor"][0])
    one = ir.Constant(i64, 1)

    def word(j, op, acc):
        """acc[r][c] (+)= popcount(a[r, j] OP w[j, 8c:8c+8]) for the tile; acc None: assign."""
        wrow = b.gep(w, [b.mul(j, w_stride)])
        wv = [b.load(b.bitcast(b.gep(wrow, [ir.Constant(i64, _V * c)]), v64.as_pointer()), align=8)
              for c in range(c_n)]
        new = []
        for r in range(r_n):
            x = _splat(b, b.load(b.gep(a, [b.add(b.mul(ir.Constant(i64, r), a_stride), j)]), align=8), v64)
            pcs = [b.call(ctpop, [b.and_(x, v) if op == "and" else b.xor(x, v)]) for v in wv]
            new.append(pcs if acc is None else [b.add(acc[r][c], pcs[c]) for c in range(c_n)])
        return new

    for op, (first, loop, exit_) in blocks.items():
        b.position_at_end(first)
        init = word(ir.Constant(i64, 0), op, None)
        b.cbranch(b.icmp_signed(">", words, one), loop, exit_)
        b.position_at_end(loop)
        j = b.phi(i64)
        acc = [[b.phi(v64) for _ in range(c_n)] for _ in range(r_n)]
        new = word(j, op, acc)
        j1 = b.add(j, one)
        b.cbranch(b.icmp_signed("<", j1, words), loop, exit_)
        j.add_incoming(one, first)
        j.add_incoming(j1, loop)
        b.position_at_end(exit_)
        totals = [[b.phi(v64) for _ in range(c_n)] for _ in range(r_n)]     # phis first in the block
        for r in range(r_n):
            for c in range(c_n):
                acc[r][c].add_incoming(init[r][c], first)
                acc[r][c].add_incoming(new[r][c], loop)
                totals[r][c].add_incoming(init[r][c], first)
                totals[r][c].add_incoming(new[r][c], loop)
        if bits:
            _tile_epilogue_bits(b, totals, op == "and", out, out_stride, *fn.args[8:])
        else:
            _tile_epilogue(b, totals, op == "and", out, out_stride, beta)
        b.ret_void()
    return fn


def _column_pairs(c_n: int):
    """(column offset, lanes) of each pair of a tile row's C column vectors (the last alone when C is odd)."""
    return [(_V * c, 2 * _V if c + 1 < c_n else _V) for c in range(0, c_n, 2)]


def _tile_values(b, row, add: bool, beta, r: int):
    """Row r's int32 values beta[r] -+ 2 * count, as (column offset, <lanes x i32>) per pair of column
    vectors: a pair is narrowed by one shuffle (the low halves of 16 lanes) and computed in 16 32-bit
    lanes (exact modulo 2^32, i.e. what the int32 conversion of the 64-bit value gives)."""
    i32, i64 = ir.IntType(32), ir.IntType(64)
    beta32 = b.trunc(b.load(b.gep(beta, [ir.Constant(i64, r)]), align=8), i32)
    for col, lanes in _column_pairs(len(row)):
        c = col // _V
        vec = ir.VectorType(i32, lanes)
        lo = b.bitcast(row[c], ir.VectorType(i32, 2 * _V))
        hi = b.bitcast(row[c + 1], ir.VectorType(i32, 2 * _V)) if lanes > _V else lo
        cnt = b.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(i32, lanes), list(range(0, 2 * lanes, 2))))
        twice = b.shl(cnt, ir.Constant(vec, [1] * lanes))
        base = _splat(b, beta32, vec)
        yield col, (b.add(base, twice) if add else b.sub(base, twice))


def _tile_epilogue(b, totals, add: bool, out, out_stride, beta) -> None:
    """Store out[r, 8c + l] = beta[r] -+ 2 * totals[r][c][l] as int32 (_tile_values)."""
    i64 = ir.IntType(64)
    for r, row in enumerate(totals):
        orow = b.gep(out, [b.mul(ir.Constant(i64, r), out_stride)])
        for col, val in _tile_values(b, row, add, beta, r):
            b.store(val, b.bitcast(b.gep(orow, [ir.Constant(i64, col)]), val.type.as_pointer()), align=4)


def _tile_epilogue_bits(b, totals, add: bool, out, out_stride, shift, t_hi, t_lo, beta) -> None:
    """OR the packed bits (value >= t_hi[n] or value <= t_lo[n]) of row r's int32 values (_tile_values)
    into out[r*out_stride], word 0 from bit `shift` on, the rest into word 1 where they pass bit 63
    (8*C <= 48 bits per row: at most two words). The words must start zeroed (other tiles OR theirs
    in)."""
    i32, i64 = ir.IntType(32), ir.IntType(64)
    n_bits = _V * len(totals[0])
    spill = b.icmp_unsigned(">", b.add(shift, ir.Constant(i64, n_bits)), ir.Constant(i64, 64))
    thresholds = {}      # per column pair, loaded once for all the tile's rows
    for col, lanes in _column_pairs(len(totals[0])):
        vec_ptr = ir.VectorType(i32, lanes).as_pointer()
        thresholds[col] = [b.load(b.bitcast(b.gep(t, [ir.Constant(i64, col)]), vec_ptr), align=4) for t in (t_hi, t_lo)]
    for r, row in enumerate(totals):
        word = ir.Constant(i64, 0)
        for col, val in _tile_values(b, row, add, beta, r):
            lanes = val.type.count
            hi, lo = thresholds[col]
            hit = b.or_(b.icmp_signed(">=", val, hi), b.icmp_signed("<=", val, lo))
            part = b.zext(b.bitcast(hit, ir.IntType(lanes)), i64)
            word = b.or_(word, b.shl(part, ir.Constant(i64, col)) if col else part)
        orow = b.gep(out, [b.mul(ir.Constant(i64, r), out_stride)])
        first = b.load(orow, align=8)
        b.store(b.or_(first, b.shl(word, shift)), orow, align=8)
        with b.if_then(spill):
            nxt = b.gep(orow, [ir.Constant(i64, 1)])
            # shift >= 1 here; word >> (64 - shift) as (word >> 1) >> (63 - shift): both amounts < 64
            rest = b.lshr(b.lshr(word, ir.Constant(i64, 1)), b.sub(ir.Constant(i64, 63), shift))
            b.store(b.or_(b.load(nxt, align=8), rest), nxt, align=8)


def _c_array(typ, dtype, ndim) -> bool:
    return isinstance(typ, types.Array) and typ.ndim == ndim and typ.layout == "C" and typ.dtype == dtype


def _bits_out(typ) -> bool:
    """popc_tile's packed output: (bits uint64[M, W], t_hi int32[N], t_lo int32[N])."""
    return (isinstance(typ, types.BaseTuple) and len(typ) == 3 and _c_array(typ[0], types.uint64, 2)
            and _c_array(typ[1], types.int32, 1) and _c_array(typ[2], types.int32, 1))


@intrinsic(prefer_literal=True)
def popc_tile(typingctx, a, w_t, out, beta, m0, n0, use_and, rows, cols):
    """out[m0 + r, n0 + n] = int32(beta[m0 + r] -+ 2 * sum_j popcount(a[m0 + r, j] OP w_t[j, n0 + n]))
    for r < rows, n < 8 * cols; OP = AND (and +) if use_and else XOR (and -); a has >= 1 word. a uint64[M, W], w_t uint64[W, N],
    out int32[M, N], beta int64[M], all C-contiguous; rows and cols compile-time constants; the
    tile must lie inside the arrays (unchecked). Returns nothing. njit only.

    out may instead be a tuple (bits uint64[M, W(N)], t_hi int32[N], t_lo int32[N]): the int32 values
    are not stored but their bits (value >= t_hi[n] or value <= t_lo[n]) ORed into the packed rows
    (zeroed by the caller), the threshold epilogue of a binary linear fused into its GEMM."""
    to_bits = isinstance(out, types.BaseTuple)
    ok = (_c_array(a, types.uint64, 2) and _c_array(w_t, types.uint64, 2)
          and (_bits_out(out) if to_bits else _c_array(out, types.int32, 2))
          and _c_array(beta, types.int64, 1) and isinstance(rows, types.IntegerLiteral)
          and isinstance(cols, types.IntegerLiteral) and all(isinstance(x, types.Integer) for x in (m0, n0))
          and isinstance(use_and, types.Boolean))
    if not ok:
        return None  # Numba reports a typing error naming the argument types
    r_n, c_n = rows.literal_value, cols.literal_value

    def codegen(context, builder, signature, args):
        sig = signature.args
        i64 = ir.IntType(64)
        arr = lambda typ, val: context.make_array(typ)(context, builder, val)     # noqa: E731
        a_arr, w_arr, beta_arr = arr(sig[0], args[0]), arr(sig[1], args[1]), arr(sig[3], args[3])
        m0v, n0v = (context.cast(builder, args[k], sig[k], types.int64) for k in (4, 5))
        a_w = builder.extract_value(a_arr.shape, 1)
        w_n = builder.extract_value(w_arr.shape, 1)
        a_p = builder.gep(a_arr.data, [builder.mul(m0v, a_w)])
        w_p = builder.gep(w_arr.data, [n0v])
        b_p = builder.gep(beta_arr.data, [m0v])
        flag = context.cast(builder, args[6], sig[6], types.boolean)
        flag = builder.trunc(flag, ir.IntType(1)) if flag.type != ir.IntType(1) else flag
        head = [a_p, a_w, w_p, w_n, a_w, flag]
        if to_bits:
            bits, hi, lo = (arr(sig[2][k], builder.extract_value(args[2], k)) for k in range(3))
            o_n = builder.extract_value(bits.shape, 1)
            word0 = builder.lshr(n0v, ir.Constant(i64, 6))
            o_p = builder.gep(bits.data, [builder.add(builder.mul(m0v, o_n), word0)])
            shift = builder.and_(n0v, ir.Constant(i64, 63))
            tail = [o_p, o_n, shift, builder.gep(hi.data, [n0v]), builder.gep(lo.data, [n0v]), b_p]
        else:
            out_arr = arr(sig[2], args[2])
            o_n = builder.extract_value(out_arr.shape, 1)
            tail = [builder.gep(out_arr.data, [builder.add(builder.mul(m0v, o_n), n0v)]), o_n, b_p]
        builder.call(_tile_function(builder.module, r_n, c_n, to_bits), head + tail)
        return context.get_dummy_value()

    return types.none(a, w_t, out, beta, m0, n0, use_and, rows, cols), codegen


# ============================================================================ 64 comparisons -> one word
def _int_vector(typ) -> bool:
    return isinstance(typ, types.Array) and typ.ndim == 1 and typ.layout == "C" and isinstance(typ.dtype, types.Integer)


@intrinsic
def ge_word(typingctx, vals, vo, thr, to):
    """The 64 comparisons vals[vo + b] >= thr[to + b] (or >= thr, a scalar) as one uint64, bit b LSB
    first: one vector compare into mask registers (AVX-512) or a compare and movemask (AVX2), where
    a loop of shifts and ORs costs an order of magnitude more. vals, thr: C-contiguous 1-D signed
    integer arrays (compared as int64), offsets unchecked. njit only."""
    scalar = isinstance(thr, types.Integer)
    if not (_int_vector(vals) and (scalar or _int_vector(thr)) and isinstance(vo, types.Integer)
            and isinstance(to, types.Integer)):
        return None
    return types.uint64(vals, vo, thr, to), _ge_codegen(scalar, two_sided=False)


@intrinsic(prefer_literal=True)
def ge_bits(typingctx, vals, vo, thr, lanes):
    """``ge_word`` on the first `lanes` values only (16, 32 or 64, a compile-time constant) against a
    scalar threshold: bits vals[vo + b] >= thr for b < lanes, the higher bits 0. For the last word of a
    packed row with few keys in it (N = 197: 5), a quarter of ge_word's compares and mask moves."""
    if not (_int_vector(vals) and isinstance(thr, types.Integer) and isinstance(vo, types.Integer)
            and isinstance(lanes, types.IntegerLiteral) and lanes.literal_value in (16, 32, 64)):
        return None
    return types.uint64(vals, vo, thr, lanes), _ge_codegen(True, two_sided=False, lanes=lanes.literal_value)


@intrinsic
def ge_or_le_word(typingctx, vals, vo, hi, lo, to):
    """The 64 comparisons vals[vo + b] >= hi[to + b] or vals[vo + b] <= lo[to + b] as one uint64 (see
    ``ge_word``; hi and lo arrays). njit only."""
    if not (_int_vector(vals) and _int_vector(hi) and _int_vector(lo) and isinstance(vo, types.Integer)
            and isinstance(to, types.Integer)):
        return None
    return types.uint64(vals, vo, hi, lo, to), _ge_codegen(False, two_sided=True)


def _ge_codegen(scalar: bool, two_sided: bool, lanes: int = 64):
    """The codegen of ge_word / ge_or_le_word / ge_bits: `lanes` comparisons (two_sided and array
    thresholds only with 64) zero-extended to one uint64."""
    def load_native(context, builder, typ, value, offset, off_typ):
        """`lanes` elements of a 1-D integer array from offset, in its own type."""
        elem = context.get_value_type(typ.dtype)
        data = context.make_array(typ)(context, builder, value).data
        off = context.cast(builder, offset, off_typ, types.int64)
        return builder.load(builder.bitcast(builder.gep(data, [off]), ir.VectorType(elem, lanes).as_pointer()),
                            align=typ.dtype.bitwidth // 8)

    def to_word(builder, bits):
        """<lanes x i1> -> i64, bit b = lane b."""
        word = builder.bitcast(bits, ir.IntType(lanes))
        return word if lanes == 64 else builder.zext(word, ir.IntType(64))

    def load64(context, builder, typ, value, offset, off_typ):
        """`lanes` elements of a 1-D integer array from offset, sign-extended to <lanes x i64>."""
        elem = context.get_value_type(typ.dtype)
        vec = load_native(context, builder, typ, value, offset, off_typ)
        wide = ir.VectorType(ir.IntType(64), lanes)
        if elem.width == 64:
            return vec
        return builder.sext(vec, wide) if typ.dtype.signed else builder.zext(vec, wide)

    def codegen(context, builder, signature, args):
        sig = signature.args
        vals = load64(context, builder, sig[0], args[0], args[1], sig[1])
        if two_sided and sig[0].dtype == sig[2].dtype == sig[3].dtype and sig[0].dtype.bitwidth < 64:
            # all three of one narrow type: compared in that width (more lanes per vector)
            vals, hi, lo = (load_native(context, builder, sig[k], args[k], args[off], sig[off])
                            for k, off in ((0, 1), (2, 4), (3, 4)))
            cmp = builder.icmp_signed if sig[0].dtype.signed else builder.icmp_unsigned
            return to_word(builder, builder.or_(cmp(">=", vals, hi), cmp("<=", vals, lo)))
        if two_sided:
            hi = load64(context, builder, sig[2], args[2], args[4], sig[4])
            lo = load64(context, builder, sig[3], args[3], args[4], sig[4])
            bits = builder.or_(builder.icmp_signed(">=", vals, hi), builder.icmp_signed("<=", vals, lo))
        else:
            if scalar and sig[0].dtype.signed and sig[0].dtype.bitwidth < 64:
                return narrow_ge(context, builder, sig, args)
            if not scalar and sig[0].dtype == sig[2].dtype and sig[0].dtype.bitwidth < 64:
                # both arrays of one narrow type: compared in that width (more lanes per vector)
                vals, thr = (load_native(context, builder, sig[k], args[k], args[off], sig[off]) for k, off in ((0, 1), (2, 3)))
                cmp = builder.icmp_signed if sig[0].dtype.signed else builder.icmp_unsigned
                return to_word(builder, cmp(">=", vals, thr))
            if scalar:
                t = context.cast(builder, args[2], sig[2], types.int64)
                thr = _splat(builder, t, ir.VectorType(ir.IntType(64), lanes))
            else:
                thr = load64(context, builder, sig[2], args[2], args[3], sig[3])
            bits = builder.icmp_signed(">=", vals, thr)
        return to_word(builder, bits)

    def narrow_ge(context, builder, sig, args):
        """vals (signed, w < 64 bits) >= a scalar int64 threshold in the values' own width (twice or
        more the lanes per vector of the int64 compare): the threshold clamped to the width's range
        is exact except above its maximum, where no value qualifies (the word is then 0)."""
        width = sig[0].dtype.bitwidth
        elem, i64 = ir.IntType(width), ir.IntType(64)
        vec = load_native(context, builder, sig[0], args[0], args[1], sig[1])
        t = context.cast(builder, args[2], sig[2], types.int64)
        lo, hi = ir.Constant(i64, -(1 << (width - 1))), ir.Constant(i64, (1 << (width - 1)) - 1)
        above = builder.icmp_signed(">", t, hi)
        clamped = builder.select(builder.icmp_signed("<", t, lo), lo, t)
        bits = builder.icmp_signed(">=", vec, _splat(builder, builder.trunc(clamped, elem), ir.VectorType(elem, lanes)))
        return builder.select(above, ir.Constant(i64, 0), to_word(builder, bits))

    return codegen
