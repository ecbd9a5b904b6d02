/**
 * gsb/hfsc.hpp: `didb` HFSC, the frequency-split attention scores, and their softmax
 * (docs/integer_model.md §13.2).
 *
 * hfsc_combine: the low- and high-band score maps of gsb/attention_qk.hpp (per head and query,
 * N/PE words of PE int32 scores each) combined with the per-head weights w[2][H]:
 *   S[h, i, j] = w[0][h]*scL[h, i, j] + w[1][h]*scH[h, i, j]        (int64, 2^-SCORE_SHIFT)
 * out in the same word layout.  Timing (elementwise): H*N*N/PE iterations.
 *
 * softmax_hfsc: per row, m_j = max_j' S - S_j (int64 >= 0, 2^-16) and the three-level exp table,
 * with rq(x, S) = (x + 2^(S-1)) >> S (no rounding term for S = 0, as gsbsim.format.conventions.requant):
 *   e_j = rq(rq(exp_hi[m >> 16] * exp_mid[(m >> 8) & 255], prob) * exp_lo[m & 255], prob)
 *         if (m >> 16) < U = len(exp_hi), else 0
 * then Z, R, P_j, A_j = P_j + att_bias exactly as §5 (gsb/softmax.hpp probabilities_row).
 * The three tables have entry 0 = 2^prob and values in [0, 2^prob] (prob <= 30): the row
 * maximum has e = 2^prob, so Z >= 1; exp values are gsb/softmax.hpp's exp_t (31 bits), their
 * products at most 2^60.
 * Timing (elementwise): per row N/PE (read, max) + N (exp, sum) + 1 + N.
 */
#ifndef GSB_HFSC_HPP
#define GSB_HFSC_HPP

#include <cstdint>

#include "gsb/common.hpp"
#include "gsb/softmax.hpp"
#include "gsb/stream.hpp"

namespace gsb {

/** SCORE_SHIFT of §13.2: the fractional bits of the combined scores and of score.w (natural-log units). */
const unsigned SCORE_SHIFT = 16;

template <unsigned H, unsigned N, unsigned PE>
void hfsc_combine(stream<vec<int32_t, PE>>& low, stream<vec<int32_t, PE>>& high, const int64_t w[2][H],
                  stream<vec<int64_t, PE>>& s, iter_count iters) {
    static_assert(N % PE == 0, "hfsc_combine: PE must divide N");
    const unsigned long per_head = (unsigned long)N * (N / PE);
    for (unsigned long i = 0; i < H * per_head; ++i) {
#pragma HLS PIPELINE II=1
        const unsigned h = i / per_head;
        const vec<int32_t, PE> l = low.read(), g = high.read();
        vec<int64_t, PE> out;
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            out[pe] = w[0][h] * int64_t(l[pe]) + w[1][h] * int64_t(g[pe]);
        }
        s.write(out);
        GSB_COUNT_ITER(iters);
    }
}

/** rq on the products of two exp values (each in [0, 2^30], so x <= 2^60): the result <= 2^prob. */
inline exp_t round_shift_exp(const ap_uint<61>& x, unsigned s) {
#pragma HLS INLINE
    return exp_t(s == 0 ? x : ap_uint<61>((x + (ap_uint<61>(1) << (s - 1))) >> s));
}

/** The three-level exp of m >= 0 (2^-16 natural-log units), 2^-prob; 0 beyond exp_hi.  The table
 * entries are exp values (gsb/softmax.hpp exp_t): two 31 x 31 multipliers. */
template <unsigned U>
exp_t exp_three_level(int64_t m, const int64_t exp_hi[U], const int64_t exp_mid[256], const int64_t exp_lo[256],
                      unsigned prob) {
#pragma HLS INLINE
    GSB_CHECK(m >= 0, "exp_three_level: negative argument " << m);
    if ((m >> 16) >= int64_t(U)) return 0;
    const exp_t hm = round_shift_exp(to_exp(exp_hi[m >> 16], prob) * to_exp(exp_mid[(m >> 8) & 255], prob), prob);
    return round_shift_exp(hm * to_exp(exp_lo[m & 255], prob), prob);
}

template <unsigned H, unsigned N, unsigned PE, unsigned U, unsigned EPC = 1>
void softmax_hfsc(stream<vec<int64_t, PE>>& scores, const int64_t exp_hi[U], const int64_t exp_mid[256],
                  const int64_t exp_lo[256],
                  const int32_t att_bias[H][N][N], unsigned prob, unsigned recip, int64_t a[H][N][N],
                  iter_count iters) {
    static_assert(N % PE == 0, "softmax_hfsc: PE must divide N");
    static_assert(EPC >= 1 && N % EPC == 0, "softmax_hfsc: EPC must divide N");
    static_assert(U >= 1 && U <= 4096, "softmax_hfsc: 1 <= len(exp_hi) <= 4096");
    GSB_CHECK(recip > prob && recip <= 62 && prob <= 30,
              "softmax_hfsc: need prob <= 30, prob < recip <= 62, got prob " << prob << ", recip " << recip);
    int64_t row[N];
    exp_t e[N];
    // row is written PE (the scores' lanes) and read EPC elements per cycle: banks for both
    const unsigned ROW_BANKS __attribute__((unused)) = PE * EPC;   // g++ ignores the pragma
#pragma HLS ARRAY_PARTITION variable=row cyclic factor=ROW_BANKS
#pragma HLS ARRAY_PARTITION variable=e cyclic factor=EPC
    for (unsigned h = 0; h < H; ++h) {
        for (unsigned i = 0; i < N; ++i) {
            const int64_t smax = read_row_max<N, PE>(scores, row, iters);
            typename exp_sum<N>::type z = 0;
            for (unsigned jf = 0; jf < N / EPC; ++jf) {
#pragma HLS PIPELINE II=1
                for (unsigned u = 0; u < EPC; ++u) {
#pragma HLS UNROLL
                    const unsigned j = jf * EPC + u;
                    e[j] = exp_three_level<U>(smax - row[j], exp_hi, exp_mid, exp_lo, prob);
                    z += e[j];
                }
                GSB_COUNT_ITER(iters);
            }
            GSB_CHECK(z >= typename exp_sum<N>::type(1), "softmax_hfsc: head " << h << " row " << i << ": the exp values sum to 0 "
                                                    << "(the tables' entry 0 must be 2^prob)");
            probabilities_row<N, EPC>(e, z, att_bias[h][i], prob, recip, a[h][i], iters);
        }
    }
}

}  // namespace gsb

#endif  // GSB_HFSC_HPP
