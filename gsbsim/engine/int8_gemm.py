"""The patch embedding's int8 products on AVX-512 VNNI: u8 x s8 -> int32 register tiles of ``vpdpbusd``.

The patch embedding (§2) is the model's only multi-bit GEMM: int8 pixels x int8 weights, K = Cin*P*P
(768 for DeiT). Without VNNI it is a float32 BLAS product, exact because every partial sum stays below
2^24 (~0.56 ms per image at K = 768 on an AMD Zen 4, near the CPU's float32 peak). ``vpdpbusd`` multiplies
four unsigned bytes by four signed bytes and adds the four products to an int32 lane, 64 products per
instruction, exactly (no saturation); it takes unsigned bytes on one side, so the pixels go in as
u = x + 128 (the uint8 pixel) and the tile starts each sum at -128 * sum_k w[e, k]:

    sum_k w[e, k] * x[t, k] = sum_k w[e, k] * u[t, k] - 128 * sum_k w[e, k]

A tile of ROWS x COLS accumulators (COLS vectors of 16 columns) stays in registers over the whole K
loop: per group of 4 k, COLS weight loads and ROWS broadcasts of a row's 4 bytes serve ROWS*COLS
``vpdpbusd``. The weights are laid out once per array (``pack_weights``): w4[g, e] holds
w[e, 4g .. 4g+3] as the four bytes of an int32, columns padded to whole vectors, K to a multiple of 4
(zero weights, whose pixels then add nothing).

Measured on an AMD Zen 4 (one thread, DeiT-Tiny's 196 x 768 x 192): 0.13 ms against 0.58 ms for the
float32 BLAS product. Only for a target with AVX-512 VNNI (``has_vnni``); elsewhere the caller keeps
the float product.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from gsbsim.engine import popcnt
from gsbsim.engine.jit_cache import cache_depends_on
from gsbsim.engine.popcnt import _c_array, _splat, _target_features, allow_512_bit

__all__ = ["has_vnni", "pack_weights", "pack_pixels", "u8s8_gemm", "VEC", "ROWS", "COLS"]

VEC = 16            # int32 columns per vector
ROWS, COLS = 4, 6   # the register tile: 24 accumulators + 6 weight vectors + 1 broadcast of 32 zmm
_JIT = dict(cache=True, nogil=True, boundscheck=False)


def has_vnni() -> bool:
    """Whether the target Numba compiles for has AVX-512 VNNI (vpdpbusd on zmm)."""
    return {"+avx512f", "+avx512vnni"} <= set(_target_features().split(","))


def pack_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 weights [E, K] -> (w4 int32 [ceil(K/4), E rounded up to VEC], start int32 [same columns]):
    w4[g, e] = the bytes w[e, 4g .. 4g+3] (zeros past K and E), start[e] = -128 * sum_k w[e, k]."""
    e, k = w.shape
    kg, ep = -(-k // 4), -(-e // VEC) * VEC
    padded = np.zeros((ep, 4 * kg), dtype=np.int8)
    padded[:e, :k] = w
    w4 = np.ascontiguousarray(padded.view(np.int32).T)          # [kg, ep]: little-endian byte order
    start = np.zeros(ep, dtype=np.int32)
    start[:e] = -128 * w.astype(np.int64).sum(1)                # |.| <= 128 * 128 * K: int32 for K < 2^17
    return w4, start


def pack_pixels(xp: np.ndarray) -> np.ndarray:
    """int8 patches [M, K] -> their uint8 pixels (x + 128) as uint32 [M, ceil(K/4)] (zero bytes past K)."""
    m, k = xp.shape
    u = np.zeros((m, -(-k // 4) * 4), dtype=np.uint8)
    np.bitwise_xor(xp.view(np.uint8), np.uint8(0x80), out=u[:, :k])
    return u.view(np.uint32)


def _tile_function(module, r_n: int, c_n: int):
    """The IR function void(a, a_stride, w, w_stride, groups, start, out, out_stride) of one R x C tile:
    out[r, 16c + l] = start[16c + l] + sum_{g < groups} dot4(a[r, g] as 4 u8, w[g, 16c + l] as 4 s8)
    (pointers at the tile's first row / column, strides in int32 elements)."""
    name = f"gsbsim_vnni_tile_{r_n}x{c_n}"
    if name in module.globals:
        return module.globals[name]
    i32, i64 = ir.IntType(32), ir.IntType(64)
    vec = ir.VectorType(i32, VEC)
    p32 = i32.as_pointer()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [p32, i64, p32, i64, i64, p32, p32, i64]), name)
    fn.linkage = "linkonce_odr"
    fn.attributes.add("nounwind")
    fn.attributes.add("noinline")     # keeps the 512-bit request to this function
    allow_512_bit(fn)
    a, a_stride, w, w_stride, groups, start, out, out_stride = fn.args
    dot = module.declare_intrinsic("llvm.x86.avx512.vpdpbusd.512", [], ir.FunctionType(vec, [vec, vec, vec]))
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def vptr(base, offset):
        return b.bitcast(b.gep(base, [offset]), vec.as_pointer())

    init = [b.load(vptr(start, ir.Constant(i64, VEC * c)), align=4) for c in range(c_n)]
    accs = [[cgutils.alloca_once_value(b, init[c]) for c in range(c_n)] for _ in range(r_n)]
    with cgutils.for_range(b, groups) as loop:
        wrow = b.gep(w, [b.mul(loop.index, w_stride)])
        wv = [b.load(vptr(wrow, ir.Constant(i64, VEC * c)), align=4) for c in range(c_n)]
        for r in range(r_n):
            x = _splat(b, b.load(b.gep(a, [b.add(b.mul(ir.Constant(i64, r), a_stride), loop.index)]), align=4), vec)
            for c in range(c_n):
                b.store(b.call(dot, [b.load(accs[r][c]), x, wv[c]]), accs[r][c])   # (acc, u8 side, s8 side)
    for r in range(r_n):
        orow = b.gep(out, [b.mul(ir.Constant(i64, r), out_stride)])
        for c in range(c_n):
            b.store(b.load(accs[r][c]), vptr(orow, ir.Constant(i64, VEC * c)), align=4)
    b.ret_void()
    return fn


@intrinsic(prefer_literal=True)
def dot4_tile(typingctx, a, w4, start, out, m0, n0, rows, cols):
    """out[m0 + r, n0 + 16c + l] = start[n0 + 16c + l] + sum_g dot4(a[m0 + r, g], w4[g, n0 + 16c + l]) for
    r < rows, c < cols (compile-time constants); a uint32 [M, Kg] (4 u8 each), w4 int32 [Kg, Np] (4 s8
    each), start int32 [Np], out int32 [M, Np], all C-contiguous, the tile inside them (unchecked).
    njit only, and only for a VNNI target (``has_vnni``)."""
    ok = (_c_array(a, types.uint32, 2) and _c_array(w4, types.int32, 2) and _c_array(start, types.int32, 1)
          and _c_array(out, types.int32, 2) and isinstance(rows, types.IntegerLiteral)
          and isinstance(cols, types.IntegerLiteral) and all(isinstance(x, types.Integer) for x in (m0, n0)))
    if not ok:
        return None  # Numba reports a typing error naming the argument types
    r_n, c_n = rows.literal_value, cols.literal_value

    def codegen(context, builder, signature, args):
        sig = signature.args
        arrs = [context.make_array(sig[k])(context, builder, args[k]) for k in range(4)]
        m0v, n0v = (context.cast(builder, args[k], sig[k], types.int64) for k in (4, 5))
        groups = builder.extract_value(arrs[0].shape, 1)
        w_n = builder.extract_value(arrs[1].shape, 1)
        o_n = builder.extract_value(arrs[3].shape, 1)
        i32p = ir.IntType(32).as_pointer()
        a_p = builder.bitcast(builder.gep(arrs[0].data, [builder.mul(m0v, groups)]), i32p)
        w_p = builder.gep(arrs[1].data, [n0v])
        s_p = builder.gep(arrs[2].data, [n0v])
        o_p = builder.gep(arrs[3].data, [builder.add(builder.mul(m0v, o_n), n0v)])
        fn = _tile_function(builder.module, r_n, c_n)
        builder.call(fn, [a_p, groups, w_p, w_n, groups, s_p, o_p, o_n])
        return context.get_dummy_value()

    return types.none(a, w4, start, out, m0, n0, rows, cols), codegen


@njit(inline="always", nogil=True)
def _tile_rows(a, w4, start, out, m0, n0, rows, cols):
    """dot4_tile with a run-time row count 1..ROWS (the last rows); cols a constant."""
    if rows == 1:
        dot4_tile(a, w4, start, out, m0, n0, 1, cols)
    elif rows == 2:
        dot4_tile(a, w4, start, out, m0, n0, 2, cols)
    elif rows == 3:
        dot4_tile(a, w4, start, out, m0, n0, 3, cols)
    elif rows == 4:
        dot4_tile(a, w4, start, out, m0, n0, 4, cols)


@njit(inline="always", nogil=True)
def _strip(a, w4, start, out, n0, cols):
    """All rows of the column strip n0 .. n0 + 16*cols: ROWS rows per tile, then the rest."""
    m_n = a.shape[0]
    full = m_n - m_n % ROWS
    for m0 in range(0, full, ROWS):
        dot4_tile(a, w4, start, out, m0, n0, ROWS, cols)
    if full < m_n:
        _tile_rows(a, w4, start, out, full, n0, m_n - full, cols)


@njit(**_JIT)
def u8s8_gemm(a, w4, start):
    """out int32 [M, Np] = start + the u8 x s8 products of a uint32 [M, Kg] and w4 int32 [Kg, Np]
    (``pack_pixels``, ``pack_weights``) by column strips of COLS vectors: a strip of weights
    (Kg x 16*COLS int32, 18 KB at K = 768) stays in L1 while every row passes."""
    m_n = a.shape[0]
    n_vec = w4.shape[1] // VEC
    out = np.empty((m_n, w4.shape[1]), dtype=np.int32)
    v = 0
    while v + COLS <= n_vec:
        _strip(a, w4, start, out, VEC * v, COLS)
        v += COLS
    while v + 2 <= n_vec:
        _strip(a, w4, start, out, VEC * v, 2)
        v += 2
    if v < n_vec:
        _strip(a, w4, start, out, VEC * v, 1)
    return out


cache_depends_on(u8s8_gemm, popcnt)     # its tiles' IR uses popcnt's helpers
