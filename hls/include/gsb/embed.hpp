/**
 * gsb/embed.hpp: the 8-bit patch embedding around its MVAU (docs/integer_model.md §2).
 *
 *   im2col       the image (int8 [Cin][I][I], C order) -> per patch t (row-major over the
 *                patch grid) ceil(K/SIMD) words of SIMD int8 lanes, K = Cin*P*P elements in
 *                (c, ky, kx) order: the input of mvau<K, E, SIMD, PE, Int8Mode>.
 *                Timing: T * ceil(K/SIMD) iterations.
 *   patch_embed  the residual stream X (token-major words of L int32 lanes, gsb/lanes.hpp; N = T + 2 tokens):
 *                X[0|1, e] = tokens[0|1][e] + pos[0|1][e]
 *                X[2+t, e] = ((acc*mult[e] + bias[e] + 2^(shift-1)) >> shift) + pos[2+t][e]
 *                from the raw accumulators (E/PE words of PE int32 lanes per patch), 1 <= shift <= 40.
 *                Widths (gsb/requant.hpp): acc*mult a 21 x 43-bit product at K = Cin*P*P = 48
 *                (|acc| <= 128*128*K, |mult|*128*128*K <= 2^61), the sum 64 bits, X a 32-bit add.
 *                C-simulation checks those bounds, |bias| <= 2^61 and that X fits int32 (an error
 *                naming `embed`, never a wrap).
 *                M = gcd(PE, L) channels per cycle.  Timing: N * E / M iterations.
 */
#ifndef GSB_EMBED_HPP
#define GSB_EMBED_HPP

#include <ap_int.h>

#include <cstdint>

#include "gsb/common.hpp"
#include "gsb/int8_ops.hpp"
#include "gsb/lanes.hpp"
#include "gsb/requant.hpp"
#include "gsb/stream.hpp"

namespace gsb {

template <unsigned CIN, unsigned IMG, unsigned P, unsigned SIMD>
void im2col(const int8_t image[CIN * IMG * IMG], stream<ap_uint<8 * SIMD>>& out, iter_count iters) {
    static_assert(IMG % P == 0, "im2col: the image side must be a multiple of the patch size");
    const unsigned GRID = IMG / P, K = CIN * P * P, SF = ceil_div(K, SIMD);
    for (unsigned long i = 0; i < (unsigned long)GRID * GRID * SF; ++i) {
#pragma HLS PIPELINE II=1
        const unsigned t = i / SF, sf = i % SF, py = t / GRID, px = t % GRID;
        ap_uint<8 * SIMD> word = 0;
        for (unsigned l = 0; l < SIMD; ++l) {
#pragma HLS UNROLL
            const unsigned k = sf * SIMD + l;
            if (k < K) {
                const unsigned c = k / (P * P), ky = (k / P) % P, kx = k % P;
                set_int8_lane(word, l, image[(c * IMG + py * P + ky) * IMG + px * P + kx]);
            }
        }
        out.write(word);
        GSB_COUNT_ITER(iters);
    }
}

/** K: the patch's Cin*P*P inputs, so |acc| <= 128*128*K (§10). */
template <unsigned N, unsigned E, unsigned PE, unsigned K, typename X>
void patch_embed(stream<vec<int32_t, PE>>& acc, const int32_t tokens[2][E], const int32_t pos[N][E],
                 const int64_t mult[E], const int64_t bias[E], unsigned shift, stream<X>& x,
                 iter_count iters) {
    const unsigned L = word_lanes<X>::value, M = gcd_u(PE, L);
    const unsigned long long ACC_MAX = int8_acc_max(K);
    static_assert(E % PE == 0 && E % L == 0, "patch_embed: PE and the residual stream's lanes must divide E");
    // shifts.patch <= 40 (§1): the rounding term 2^(shift-1) keeps the requant sum inside 64 bits
    GSB_CHECK(shift >= 1 && shift <= 40, "embed: requantization shift " << shift << " outside 1..40");
    const int64_t half = int64_t(1) << (shift - 1);
    vec<int32_t, PE> word = {};
    X out = {};
    for (unsigned long i = 0; i < (unsigned long)N * (E / M); ++i) {
#pragma HLS PIPELINE II=1
        const unsigned t = i * M / E, c0 = (i * M) % E;
        if (t >= 2 && c0 % PE == 0) word = acc.read();
        for (unsigned m = 0; m < M; ++m) {
#pragma HLS UNROLL
            const unsigned c = c0 + m;
            int64_t y;
            if (t < 2) {
                y = tokens[t][c];
            } else {
                // an acc_bits x mult_bits product (gsb/requant.hpp), the sum in 64 bits
                const wide_t prod = requant_product<ACC_MAX>(requant_acc<ACC_MAX>(word[c % PE], "embed", t, c),
                                                             requant_mult<ACC_MAX>(mult[c], "embed"));
                const ap_int<64> sum = ap_int<64>(prod + bounded<61>(bias[c], "embed", "bias", c)) + half;
                y = (sum >> shift).to_int64();
            }
            lane(out, c % L) = int32_sum(pos[t][c], y, "embed", t, c);
        }
        if ((c0 + M) % L == 0) x.write(out);
        GSB_COUNT_ITER(iters);
    }
}

}  // namespace gsb

#endif  // GSB_EMBED_HPP
