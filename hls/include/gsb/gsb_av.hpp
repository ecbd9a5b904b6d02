/**
 * gsb/gsb_av.hpp: GSB A.V, the G x G binary plane products, and the proj input bits
 * (docs/integer_model.md §6).
 *
 * For head h, attention plane a (b1, M_2..M_G), value plane v (s, M_2..M_G), query i and
 * channel j, with the reduction over key tokens n:
 *   v = 0 (sign plane):  D = 2*pc(a_i AND s_j) - pc(a_i)
 *   v >= 1 (mask M):     D = 2*pc(a_i AND M_j AND s_j) - pc(a_i AND M_j)
 *   ctx[i][h*d + j] = sum_a sum_v scale[a][v] * D[a][v]          (int64, 2^-ctx)
 * The sign-plane case is the mask case with M = all ones, so one datapath serves every pair.
 *
 * gsb_av is an MVAU-shaped unit: the "weights" are the value planes of the image
 * (gsb/value_planes.hpp: MH = d channels, MW = N keys, FINN layout), the input vectors the
 * attention plane rows (gsb/attention_planes.hpp).  The plane pairs run one after the other:
 * one flattened loop of H * G * G * N * (d/PE) * ceil(N/SIMD) iterations at II=1, the layer
 * `blocks.{i}.av` of the cycle model.  Each finished dot product is scaled and added into
 * the ctx buffer (written, not added, by the first pair).
 *
 * Widths from the spec's bounds (C-simulation computes with the same types, so a bit-exact
 * C-sim plus the bound proves each width): D in [-N, N] (docs/integer_model.md §10, A.V plane
 * product): ap_int<count_bits(N)+1>; |ctx.scale| <= 2^44 (§1 value ranges, checked here too):
 * ap_int<45>; their product exactly in ap_int<46+count_bits(N)> (a 45 x (count_bits(N)+1)
 * multiplier instead of 64 x 64); ctx, a sum of G^2 <= 64 such terms, stays int64.
 *
 * ctx_threshold then binarizes the context for proj: bit c = ctx[i][c] >= thr[c], packed
 * into the proj MVAU's SIMD-bit input words, one word per cycle (N*ceil(E/SIMD) iterations).
 */
#ifndef GSB_GSB_AV_HPP
#define GSB_GSB_AV_HPP

#include <ap_int.h>

#include <cstdint>

#include "gsb/binary_ops.hpp"
#include "gsb/common.hpp"
#include "gsb/mvau.hpp"
#include "gsb/stream.hpp"

namespace gsb {

template <unsigned H, unsigned N, unsigned D, unsigned G, unsigned SIMD, unsigned PE>
void gsb_av(const ap_uint<SIMD> a_rows[G][H][N][ceil_div(N, SIMD)],
            const ap_uint<SIMD> v_tiles[G][H][PE][mvau_shape<N, D, SIMD, PE>::TILES], const int64_t scale[G][G],
            int64_t ctx[N][H * D], iter_count iters) {
    typedef mvau_shape<N, D, SIMD, PE> shape;
    static_assert(D % PE == 0, "gsb_av: PE must divide d");
    const unsigned SF = shape::SF, NF = shape::NF;
    typedef ap_int<count_bits(N) + 1> dot_t;                 // [-N, N]
    typedef ap_int<45> scale_t;                              // |ctx.scale| <= 2^44
    typedef ap_int<45 + count_bits(N) + 1> term_t;           // |scale * dot| <= 2^44 * N
    static_assert(45 + count_bits(N) + 1 <= 64, "gsb_av: scale * D must fit int64 (N < 2^18)");
    for (unsigned i = 0; i < G * G; ++i)
        GSB_CHECK(scale[i / G][i % G] >= -(int64_t(1) << 44) && scale[i / G][i % G] <= (int64_t(1) << 44),
                  "gsb_av: ctx.scale[" << i / G << "][" << i % G << "] = " << scale[i / G][i % G]
                                       << " outside [-2^44, 2^44]");
    ap_uint<count_bits(N)> both[PE], ones[PE];
#pragma HLS ARRAY_PARTITION variable=both complete
#pragma HLS ARRAY_PARTITION variable=ones complete
    // ctx[q][c] is revisited only N*NF*SF iterations after its read-modify-write
#pragma HLS DEPENDENCE variable=ctx inter false
    unsigned h = 0, pa = 0, pv = 0, q = 0, nf = 0, sf = 0;
    const unsigned long total = (unsigned long)H * G * G * N * NF * SF;

    for (unsigned long it = 0; it < total; ++it) {
#pragma HLS PIPELINE II=1
        const ap_uint<SIMD> x = a_rows[pa][h][q][sf];
        const unsigned tile = nf * SF + sf;
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            if (sf == 0) {
                both[pe] = 0;
                ones[pe] = 0;
            }
            const ap_uint<SIMD> s = v_tiles[0][h][pe][tile];
            // sign plane: M = all ones, i.e. x itself (x has zero pad bits)
            const ap_uint<SIMD> xm = pv == 0 ? x : ap_uint<SIMD>(x & v_tiles[pv][h][pe][tile]);
            both[pe] += popcount<SIMD>(xm & s);
            ones[pe] += popcount<SIMD>(xm);
        }
        if (sf == SF - 1) {
            for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
                const dot_t dot = 2 * dot_t(both[pe]) - dot_t(ones[pe]);   // both <= ones <= N
                const int64_t term = term_t(scale_t(scale[pa][pv]) * dot).to_int64();
                int64_t& c = ctx[q][h * D + nf * PE + pe];
                c = (pa == 0 && pv == 0) ? term : c + term;
            }
        }
        GSB_COUNT_ITER(iters);
        // loop nest (outer to inner): head, attention plane, value plane, query, neuron fold, synapse fold
        if (++sf == SF) {
            sf = 0;
            if (++nf == NF) {
                nf = 0;
                if (++q == N) {
                    q = 0;
                    if (++pv == G) {
                        pv = 0;
                        if (++pa == G) {
                            pa = 0;
                            ++h;
                        }
                    }
                }
            }
        }
    }
}

template <unsigned N, unsigned E, unsigned SIMD>
void ctx_threshold(const int64_t ctx[N][E], const int64_t thr[E], stream<ap_uint<SIMD>>& out, iter_count iters) {
    // one output word (SIMD channels compared in parallel) per cycle: the consumer's rate
    for (unsigned long i = 0; i < (unsigned long)N * ceil_div(E, SIMD); ++i) {
#pragma HLS PIPELINE II=1
        const unsigned q = i / ceil_div(E, SIMD), w = i % ceil_div(E, SIMD);
        ap_uint<SIMD> word = 0;
        for (unsigned b = 0; b < SIMD; ++b) {
#pragma HLS UNROLL
            const unsigned c = w * SIMD + b;
            if (c < E) word[b] = ctx[q][c] >= thr[c];
        }
        out.write(word);
        GSB_COUNT_ITER(iters);
    }
}

}  // namespace gsb

#endif  // GSB_GSB_AV_HPP
