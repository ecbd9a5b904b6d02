/**
 * gsb/softmax.hpp: the integer softmax with attention bias (docs/integer_model.md §5).
 *
 * Per head h and query row i of the scores (read as N/PE words of PE int32 lanes):
 *   smax = max_j sc[j];  m_j = (smax - sc[j]) / 2   (an integer in [0, d]: one row's scores
 *   share the parity of d);  e_j = exp_lut[m_j];  Z = sum_j e_j;
 *   R = floor(2^recip / Z)                            (the one reciprocal of the row)
 *   P_j = (e_j * R + 2^(recip-prob-1)) >> (recip-prob)
 *   A_j = P_j + att_bias[h][i][j]                      (int64, fixed point 2^-prob)
 * Output: a[h][i][j], the buffer gsb/attention_planes.hpp reads (its statistic may need the
 * whole image).  exp_lut[0] = 2^prob >= 1, so Z >= 1; every e_j*R <= 2^recip <= 2^62.
 * Folding: EPC elements per cycle in the exp and the scaling loops (EPC divides N; the exp
 * table read EPC times per cycle: EPC copies or ports in hardware).
 * Timing (elementwise): per row N/PE (read, max) + N/EPC (exp, sum) + 1 (reciprocal) + N/EPC
 * (scale, bias) iterations in `iters`.
 *
 * Widths from the spec's bounds (C-simulation uses the same types and checks every exp value, so
 * a bit-exact C-sim plus the bound proves the width): e_j in [0, 2^prob], prob <= 30 (§1 value
 * ranges: exp_lut; §13.2: the three tables): exp_t = ap_uint<31>; Z <= N * 2^30:
 * ap_uint<31+count_bits(N)>; R <= 2^recip <= 2^62: ap_uint<63>; e_j*R + 2^(down-1) <= 2^62 +
 * 2^61 (e_j <= Z): ap_uint<63>, i.e. a 31 x 63 multiplier instead of 64 x 64.
 */
#ifndef GSB_SOFTMAX_HPP
#define GSB_SOFTMAX_HPP

#include <cstdint>

#include "gsb/common.hpp"
#include "gsb/stream.hpp"

namespace gsb {

/** An exp value of the softmax, in [0, 2^prob] with prob <= 30 (see above). */
typedef ap_uint<31> exp_t;

/** Z, the sum of a row's N exp values. */
template <unsigned N>
struct exp_sum {
    typedef ap_uint<31 + count_bits(N)> type;
};

/** v as an exp value; C-simulation checks the range the width relies on. */
inline exp_t to_exp(int64_t v, unsigned prob) {
#pragma HLS INLINE
    GSB_CHECK(prob <= 30 && v >= 0 && v <= (int64_t(1) << prob),
              "softmax: exp value " << v << " outside [0, 2^prob], prob " << prob << " (at most 30)");
    (void)prob;
    return exp_t(v);
}

/**
 * Read one row of N scores (N/PE words of PE lanes) from `scores` into row[] and return its
 * maximum (shared with softmax_hfsc, gsb/hfsc.hpp).  N/PE iterations.
 */
template <unsigned N, unsigned PE, typename T>
T read_row_max(stream<vec<T, PE>>& scores, T row[N], iter_count iters) {
#pragma HLS INLINE
    T smax = 0;
    for (unsigned f = 0; f < N / PE; ++f) {
#pragma HLS PIPELINE II=1
        const vec<T, PE> w = scores.read();
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            row[f * PE + pe] = w[pe];
            if ((f == 0 && pe == 0) || w[pe] > smax) smax = w[pe];
        }
        GSB_COUNT_ITER(iters);
    }
    return smax;
}

/**
 * Z, R, P_j and A_j of one row from its exp values e_j (§5 from e_j on; shared with the three-level
 * exp of `didb`, gsb/hfsc.hpp): R = floor(2^recip / Z), A_j = ((e_j*R + 2^(down-1)) >> down) + bias_j,
 * down = recip - prob >= 1.  Needs Z >= 1.  1 + N iterations.
 */
template <unsigned N, unsigned EPC = 1>
void probabilities_row(const exp_t e[N], typename exp_sum<N>::type z, const int32_t bias[N], unsigned prob,
                       unsigned recip, int64_t a[N], iter_count iters) {
    static_assert(EPC >= 1 && N % EPC == 0, "probabilities_row: EPC must divide N");
    const unsigned down = recip - prob;
    const ap_uint<63> half = ap_uint<63>(1) << (down - 1);
    const ap_uint<63> r = (ap_uint<63>(1) << recip) / z;   // <= 2^recip (Z >= 1)
    GSB_COUNT_ITER(iters);
    for (unsigned jf = 0; jf < N / EPC; ++jf) {
#pragma HLS PIPELINE II=1
        for (unsigned u = 0; u < EPC; ++u) {
#pragma HLS UNROLL
            const unsigned j = jf * EPC + u;
            const ap_uint<63> p = ap_uint<63>(e[j] * r) + half;   // e_j <= Z: e_j * R <= 2^recip
            a[j] = int64_t((p >> down).to_uint64()) + bias[j];
        }
        GSB_COUNT_ITER(iters);
    }
}

template <unsigned H, unsigned N, unsigned D, unsigned PE, unsigned EPC = 1>
void softmax(stream<vec<int32_t, PE>>& scores, const int64_t exp_lut[D + 1], const int32_t att_bias[H][N][N],
             unsigned prob, unsigned recip, int64_t a[H][N][N], iter_count iters) {
    static_assert(N % PE == 0, "softmax: PE must divide N");
    static_assert(EPC >= 1 && N % EPC == 0, "softmax: EPC must divide N");
    GSB_CHECK(recip > prob && recip <= 62, "softmax: need prob < recip <= 62, got prob " << prob << ", recip " << recip);
    int32_t row[N];
    exp_t e[N];
    // row is written PE (the scores' lanes) and read EPC elements per cycle: banks for both
    const unsigned ROW_BANKS __attribute__((unused)) = PE * EPC;   // g++ ignores the pragma
#pragma HLS ARRAY_PARTITION variable=row cyclic factor=ROW_BANKS
#pragma HLS ARRAY_PARTITION variable=e cyclic factor=EPC
    for (unsigned h = 0; h < H; ++h) {
        for (unsigned i = 0; i < N; ++i) {
            const int32_t smax = read_row_max<N, PE>(scores, row, iters);
            typename exp_sum<N>::type z = 0;
            for (unsigned jf = 0; jf < N / EPC; ++jf) {
#pragma HLS PIPELINE II=1
                for (unsigned u = 0; u < EPC; ++u) {
#pragma HLS UNROLL
                    const unsigned j = jf * EPC + u;
                    const int32_t twice_m = smax - row[j];
                    GSB_CHECK(twice_m >= 0 && twice_m % 2 == 0 && twice_m / 2 <= int32_t(D),
                              "softmax: head " << h << " row " << i << ": score " << row[j] << " and row max " << smax
                                               << " differ by " << twice_m << " (must be even, at most 2d)");
                    e[j] = to_exp(exp_lut[twice_m / 2], prob);
                    z += e[j];
                }
                GSB_COUNT_ITER(iters);
            }
            probabilities_row<N, EPC>(e, z, att_bias[h][i], prob, recip, a[h][i], iters);
        }
    }
}

}  // namespace gsb

#endif  // GSB_SOFTMAX_HPP
