/**
 * gsb/diba.hpp: the `didb` DIBA context (docs/integer_model.md §13.3).
 *
 * With b1 the attention plane (gsb/attention_planes.hpp, G = 1), s the value sign plane
 * (gsb/value_planes.hpp, sigma = 2s - 1), head h, query i, channel c = h*d + j:
 *   D[i, c]   = 2*pc(b1_i AND s_j) - pc(b1_i)          (gsb_av with G = 1 computes scale*D)
 *   k_i       = pc(b1_i)
 *   lap[i, c] = sum_{t in 8 grid neighbours of i} sigma[t, c] - 8*sigma[i, c]   (zero padding;
 *               0 for the cls and dist tokens i < 2)
 *   ctx[i, c] = scale*D[i, c] - (scale*k_i - vscale)*sigma[i, c] + local[h]*lap[i, c]   (int64, 2^-ctx)
 *
 * Vitis' canonical dataflow form (one producer and one consumer per PIPO):
 *   diba_fork     reads the attention planes a_in and the value planes v_in once and writes
 *                 gsb_av's copies (a_av, v_av), the per-row counts ones[h][i] = k_i and a copy of
 *                 the sign plane for DIBA (s_tiles); H*N*SF + H*TILES iterations (the sign plane
 *                 PE words per cycle, SF = ceil(N/SIMD), TILES of mvau_shape<N, d, SIMD, PE>);
 *   gsb_av        ctx_av = scale*D (the `blocks.{i}.av` layer, unchanged);
 *   diba_context  ctx = ctx_av + the two correction terms, a new array (ctx_av is not written
 *                 back); H*N*d iterations.  lap has no consumer in hardware: it is written through
 *                 a lap_trace, the traced array in gsbsim's C-simulation and nothing otherwise
 *                 (GSB_LAP_TRACE, like the iteration counters).
 * |scale|, |vscale|, |local| <= 2^44 and N <= 4096 keep every term below 2^57.
 * Widths from those bounds (C-simulation uses the same types and checks the 2^44 bounds):
 * scale, vscale, local ap_int<45>; k_i ap_uint<count_bits(N)>; lap in [-16, 16] ap_int<6>;
 * scale*k_i - vscale exact in ap_int<47+count_bits(N)>; local*lap in ap_int<51>; the sigma term
 * a conditional negation (sigma = +-1), no multiplier.
 */
#ifndef GSB_DIBA_HPP
#define GSB_DIBA_HPP

#include <ap_int.h>

#include <cstdint>

#include "gsb/binary_ops.hpp"
#include "gsb/common.hpp"
#include "gsb/mvau.hpp"

namespace gsb {

/** sigma[t, j] in {-1, +1} of the sign plane stored as A.V weights (row j, column t). */
template <unsigned N, unsigned D, unsigned SIMD, unsigned PE>
int64_t sign_of(const ap_uint<SIMD> s_tiles[PE][mvau_shape<N, D, SIMD, PE>::TILES], unsigned t, unsigned j) {
#pragma HLS INLINE
    typedef mvau_shape<N, D, SIMD, PE> shape;
    return s_tiles[shape::lane(j)][shape::tile(j, t)][shape::bit(t)] ? 1 : -1;
}

/** lap of token n (0 for n < 2), channel j of one head's sign plane, on a GRID x GRID patch grid. */
template <unsigned N, unsigned D, unsigned SIMD, unsigned PE, unsigned GRID>
int64_t laplacian8(const ap_uint<SIMD> s_tiles[PE][mvau_shape<N, D, SIMD, PE>::TILES], unsigned n, unsigned j) {
#pragma HLS INLINE
    static_assert(N == GRID * GRID + 2, "laplacian8: N must be GRID*GRID + 2");
    if (n < 2) return 0;
    const int r = int(n - 2) / int(GRID), w = int(n - 2) % int(GRID);
    int64_t sum = 0;
    for (int dr = -1; dr <= 1; ++dr) {
#pragma HLS UNROLL
        for (int dw = -1; dw <= 1; ++dw) {
#pragma HLS UNROLL
            const int rr = r + dr, ww = w + dw;
            if ((dr != 0 || dw != 0) && rr >= 0 && rr < int(GRID) && ww >= 0 && ww < int(GRID))
                sum += sign_of<N, D, SIMD, PE>(s_tiles, 2 + unsigned(rr) * GRID + unsigned(ww), j);
        }
    }
    return sum - 8 * sign_of<N, D, SIMD, PE>(s_tiles, n, j);
}

/** Where diba_context writes lap: the traced [N][E] array in C-simulation, nowhere otherwise. */
#ifdef GSB_CSIM
struct lap_trace {
    int32_t* at;   // lap[N][E], flat
};
#define GSB_LAP_TRACE(a) (::gsb::lap_trace{&(a)[0][0]})
#else
struct lap_trace {};
#define GSB_LAP_TRACE(a) (::gsb::lap_trace())
#endif

/** The fork in front of gsb_av and diba_context (G = 1): copies for gsb_av, k_i and the sign plane for DIBA. */
template <unsigned H, unsigned N, unsigned D, unsigned SIMD, unsigned PE>
void diba_fork(const ap_uint<SIMD> a_in[1][H][N][ceil_div(N, SIMD)],
               const ap_uint<SIMD> v_in[1][H][PE][mvau_shape<N, D, SIMD, PE>::TILES],
               ap_uint<SIMD> a_av[1][H][N][ceil_div(N, SIMD)],
               ap_uint<SIMD> v_av[1][H][PE][mvau_shape<N, D, SIMD, PE>::TILES], ap_uint<count_bits(N)> ones[H][N],
               ap_uint<SIMD> s_tiles[H][PE][mvau_shape<N, D, SIMD, PE>::TILES], iter_count iters) {
    const unsigned SF = ceil_div(N, SIMD), TILES = mvau_shape<N, D, SIMD, PE>::TILES;
    ap_uint<count_bits(N)> k = 0;   // the current row's count (a register)
    for (unsigned long i = 0; i < (unsigned long)H * N * SF; ++i) {
#pragma HLS PIPELINE II=1
        const unsigned h = i / (N * SF), q = (i / SF) % N, sf = i % SF;
        const ap_uint<SIMD> x = a_in[0][h][q][sf];
        a_av[0][h][q][sf] = x;
        k = (sf == 0 ? ap_uint<count_bits(N)>(0) : k) + popcount<SIMD>(x);
        if (sf == SF - 1) ones[h][q] = k;
        GSB_COUNT_ITER(iters);
    }
    for (unsigned long i = 0; i < (unsigned long)H * TILES; ++i) {
#pragma HLS PIPELINE II=1
        const unsigned h = i / TILES, t = i % TILES;
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            const ap_uint<SIMD> w = v_in[0][h][pe][t];
            v_av[0][h][pe][t] = w;
            s_tiles[h][pe][t] = w;
        }
        GSB_COUNT_ITER(iters);
    }
}

template <unsigned H, unsigned N, unsigned D, unsigned GRID, unsigned SIMD, unsigned PE>
void diba_context(const ap_uint<count_bits(N)> ones[H][N],
                  const ap_uint<SIMD> s_tiles[H][PE][mvau_shape<N, D, SIMD, PE>::TILES], int64_t scale,
                  int64_t vscale, const int64_t local[H], const int64_t ctx_av[N][H * D], int64_t ctx[N][H * D],
                  lap_trace lap, iter_count iters) {
    (void)lap;   // written in C-simulation only
    typedef ap_int<45> coef_t;                               // |scale|, |vscale|, |local| <= 2^44
    typedef ap_int<47 + count_bits(N)> self_t;               // |scale * k - vscale| <= 2^44 * (N + 1)
    typedef ap_int<6> lap_t;                                 // [-16, 16]
    typedef ap_int<51> local_t;                              // |local * lap| <= 2^48
    static_assert(47 + count_bits(N) <= 64, "diba_context: scale * k must fit int64 (N < 2^17)");
    const int64_t B = int64_t(1) << 44;   // the bound of the checks below (C-simulation only)
    (void)B;
    GSB_CHECK(scale >= -B && scale <= B && vscale >= -B && vscale <= B,
              "diba_context: ctx.scale " << scale << " or ctx.vscale " << vscale << " outside [-2^44, 2^44]");
    for (unsigned h = 0; h < H; ++h)
        GSB_CHECK(local[h] >= -B && local[h] <= B,
                  "diba_context: ctx.local[" << h << "] = " << local[h] << " outside [-2^44, 2^44]");
    for (unsigned long it = 0; it < (unsigned long)H * N * D; ++it) {
#pragma HLS PIPELINE II=1
        const unsigned h = it / (N * D), i = (it / D) % N, j = it % D, c = h * D + j;
        const self_t self = coef_t(scale) * ones[h][i] - coef_t(vscale);
        const lap_t l = lap_t(laplacian8<N, D, SIMD, PE, GRID>(s_tiles[h], i, j));
        const bool positive = sign_of<N, D, SIMD, PE>(s_tiles[h], i, j) > 0;
        const int64_t corr = local_t(coef_t(local[h]) * l).to_int64() - (positive ? self : self_t(-self)).to_int64();
        ctx[i][c] = ctx_av[i][c] + corr;
#ifdef GSB_CSIM
        lap.at[i * (H * D) + c] = int32_t(l.to_int());
#endif
        GSB_COUNT_ITER(iters);
    }
}

}  // namespace gsb

#endif  // GSB_DIBA_HPP
