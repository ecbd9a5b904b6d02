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
    ap_uint<count_bits(N)> both[PE], ones[PE];
#pragma HLS ARRAY_PARTITION variable=both complete
#pragma HLS ARRAY_PARTITION variable=ones complete
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
                const int64_t dot = 2 * int64_t(both[pe].to_uint()) - int64_t(ones[pe].to_uint());
                const int64_t term = scale[pa][pv] * dot;
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
