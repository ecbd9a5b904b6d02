/**
 * gsb/value_planes.hpp: the GSB value planes of one image (docs/integer_model.md §4).
 *
 * From Vq[h][n][j] (int64): the sign plane s = Vq >= 0 and G-1 mask planes
 *   M_k = (256*Vq > r_k*mx) OR (256*Vq < r_k*mn),  k = 2..G,  r_k = plane_ratio[k-1]
 * with mx, mn the max and min of Vq over j (IMAGE_STAT false: per token and head, the
 * `row` statistic) or over the whole image (IMAGE_STAT true: `image`).
 *
 * Output: the planes as the A.V unit's runtime weights (gsb/gsb_av.hpp): for plane p and
 * head h, a matrix with a row per channel j (MH = d) and a column per key token n (MW = N),
 * in FINN layout mvau_shape<N, d, SIMD, PE>: tiles[p][h][lane(j)][tile(j, n)] bit bit(n).
 * plane_ratio[0] is unused (plane 0 is the sign plane).
 *
 * Folding: EPC channels j per cycle (EPC divides d; vq partitioned by EPC along j).
 *
 * Timing (elementwise): G*H*PE*TILES clearing iterations, H*N*d/EPC for the statistics and
 * H*N*d/EPC for the planes (an image statistic needs every value before the first plane bit).
 */
#ifndef GSB_VALUE_PLANES_HPP
#define GSB_VALUE_PLANES_HPP

#include <ap_int.h>

#include <cstdint>

#include "gsb/common.hpp"
#include "gsb/mvau.hpp"

namespace gsb {

template <unsigned H, unsigned N, unsigned D, unsigned G, unsigned SIMD, unsigned PE, bool IMAGE_STAT,
          unsigned EPC = 1>
void value_planes(const int64_t vq[H][N][D], const int32_t plane_ratio[G],
                  ap_uint<SIMD> tiles[G][H][PE][mvau_shape<N, D, SIMD, PE>::TILES], iter_count iters) {
    typedef mvau_shape<N, D, SIMD, PE> vshape;
    static_assert(G >= 1 && G <= 8, "value_planes: 1 <= G <= 8");
    static_assert(EPC >= 1 && D % EPC == 0, "value_planes: EPC must divide D");
#pragma HLS ARRAY_PARTITION variable=vq cyclic factor=EPC dim=3
#pragma HLS ARRAY_PARTITION variable=tiles complete dim=3
    const unsigned TILES = vshape::TILES, DF = D / EPC;
    int64_t mx[H][N], mn[H][N];
    int64_t gmx = 0, gmn = 0;

    for (unsigned long i = 0; i < (unsigned long)G * H * PE * TILES; ++i) {
#pragma HLS PIPELINE II=1
        tiles[i / (H * PE * TILES)][(i / (PE * TILES)) % H][(i / TILES) % PE][i % TILES] = 0;
        GSB_COUNT_ITER(iters);
    }
    for (unsigned long i = 0; i < (unsigned long)H * N * DF; ++i) {
#pragma HLS PIPELINE II=1
        const unsigned h = i / (N * DF), n = (i / DF) % N, jf = i % DF;
        int64_t hi = vq[h][n][jf * EPC], lo = hi;   // the EPC channels' max and min (a tree in hardware)
        for (unsigned u = 1; u < EPC; ++u) {
#pragma HLS UNROLL
            const int64_t v = vq[h][n][jf * EPC + u];
            hi = v > hi ? v : hi;
            lo = v < lo ? v : lo;
        }
        if (jf == 0 || hi > mx[h][n]) mx[h][n] = hi;
        if (jf == 0 || lo < mn[h][n]) mn[h][n] = lo;
        if (i == 0 || hi > gmx) gmx = hi;
        if (i == 0 || lo < gmn) gmn = lo;
        GSB_COUNT_ITER(iters);
    }
    for (unsigned long i = 0; i < (unsigned long)H * N * DF; ++i) {
#pragma HLS PIPELINE II=1
        const unsigned h = i / (N * DF), n = (i / DF) % N, jf = i % DF;
        const int64_t hi = IMAGE_STAT ? gmx : mx[h][n];
        const int64_t lo = IMAGE_STAT ? gmn : mn[h][n];
        for (unsigned u = 0; u < EPC; ++u) {
#pragma HLS UNROLL
            const unsigned j = jf * EPC + u;
            const int64_t v = vq[h][n][j];
            const unsigned lane = vshape::lane(j), tile = vshape::tile(j, n), bit = vshape::bit(n);
            tiles[0][h][lane][tile][bit] = v >= 0;
            for (unsigned p = 1; p < G; ++p) {
#pragma HLS UNROLL
                const int64_t r = plane_ratio[p];
                tiles[p][h][lane][tile][bit] = (256 * v > r * hi) || (256 * v < r * lo);
            }
        }
        GSB_COUNT_ITER(iters);
    }
}

}  // namespace gsb

#endif  // GSB_VALUE_PLANES_HPP
