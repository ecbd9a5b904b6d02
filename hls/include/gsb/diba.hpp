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
 * diba_context takes ctx holding scale*D (the `blocks.{i}.av` layer, unchanged) and adds the
 * two correction terms in place; it also writes lap (traced).  |scale|, |vscale|, |local| <=
 * 2^44 and N <= 4096 keep every term below 2^57.
 * Timing (elementwise): H*N*(SF + d) iterations (SF = ceil(N/SIMD) words to count k_i).
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

template <unsigned H, unsigned N, unsigned D, unsigned GRID, unsigned SIMD, unsigned PE>
void diba_context(const ap_uint<SIMD> a_rows[1][H][N][ceil_div(N, SIMD)],
                  const ap_uint<SIMD> v_tiles[1][H][PE][mvau_shape<N, D, SIMD, PE>::TILES], int64_t scale,
                  int64_t vscale, const int64_t local[H], int64_t ctx[N][H * D], int32_t lap[N][H * D],
                  iter_count iters) {
    const unsigned SF = ceil_div(N, SIMD);
    for (unsigned h = 0; h < H; ++h) {
        for (unsigned i = 0; i < N; ++i) {
            int64_t k = 0;
            for (unsigned sf = 0; sf < SF; ++sf) {
#pragma HLS PIPELINE II=1
                k += popcount<SIMD>(a_rows[0][h][i][sf]).to_uint();
                GSB_COUNT_ITER(iters);
            }
            const int64_t self = scale * k - vscale;
            for (unsigned j = 0; j < D; ++j) {
#pragma HLS PIPELINE II=1
                const int64_t l = laplacian8<N, D, SIMD, PE, GRID>(v_tiles[0][h], i, j);
                const int64_t sigma = sign_of<N, D, SIMD, PE>(v_tiles[0][h], i, j);
                ctx[i][h * D + j] += local[h] * l - self * sigma;
                lap[i][h * D + j] = int32_t(l);
                GSB_COUNT_ITER(iters);
            }
        }
    }
}

}  // namespace gsb

#endif  // GSB_DIBA_HPP
