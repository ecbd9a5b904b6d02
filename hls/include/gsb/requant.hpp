/**
 * gsb/requant.hpp: the widths of the requantization and logit datapaths from the spec's bounds
 * (docs/integer_model.md §1 value ranges, §10 accumulator widths, §13.1).
 *
 * A layer's accumulator lies in [-ACC_MAX, ACC_MAX] (§10: K for a binary linear of K inputs,
 * 128*128*K for an 8-bit one, `int8_acc_max`) and its multiplier satisfies |mult|*ACC_MAX <= 2^61
 * (§1), so acc*mult is an acc_bits x mult_bits multiplier (9 x 55 bits at K = 192, 23 x 41 for
 * the 8-bit head at E = 192) with |acc*mult| <= 2^61 (`wide_t`, 63 bits); requant biases,
 * logit biases and the act units' tok_in are |.| <= 2^61 too.
 *
 * Every narrowing goes through one of the functions below, which check the operand's bound in
 * C-simulation (an error naming the unit, never a wrap): a bit-exact C-sim plus the checks proves
 * the widths.  Synthesis sees only the conversions.
 */
#ifndef GSB_REQUANT_HPP
#define GSB_REQUANT_HPP

#include <ap_int.h>

#include <cstdint>

#include "gsb/common.hpp"

namespace gsb {

/** Bits of a signed type that holds every value of [-max, max]. */
constexpr unsigned signed_bits(unsigned long long max) { return count_bits(max) + 1; }

/** The accumulator bound of an 8-bit layer of K inputs (§10: int8 x int8 products). */
constexpr unsigned long long int8_acc_max(unsigned long long k) { return 128ULL * 128ULL * k; }

/** |acc*mult|, |bias|, |tok_in| <= 2^61 (§1, §13.1). */
typedef ap_int<63> wide_t;

/** The operand types of a requantization whose accumulator lies in [-ACC_MAX, ACC_MAX]. */
template <unsigned long long ACC_MAX>
struct requant_width {
    static_assert(ACC_MAX >= 1 && ACC_MAX <= (1ULL << 30), "requant: accumulator bound outside 1..2^30");
    static const long long MULT_MAX = (1LL << 61) / (long long)ACC_MAX;   // |mult| * ACC_MAX <= 2^61
    typedef ap_int<signed_bits(ACC_MAX)> acc_t;
    typedef ap_int<signed_bits(MULT_MAX)> mult_t;
};

/** The multiplier as mult_t; C-simulation checks |mult| * ACC_MAX <= 2^61. */
template <unsigned long long ACC_MAX>
typename requant_width<ACC_MAX>::mult_t requant_mult(int64_t mult, const char* where) {
#pragma HLS INLINE
    const long long lim = requant_width<ACC_MAX>::MULT_MAX;
    GSB_CHECK(mult >= -lim && mult <= lim, where << ": multiplier " << mult << " outside [-" << lim << ", " << lim
                                                 << "] (|mult| * " << ACC_MAX << " <= 2^61)");
    (void)where;
    (void)lim;
    return typename requant_width<ACC_MAX>::mult_t(mult);
}

/** The accumulator of token `token`, channel c as acc_t; C-simulation checks |acc| <= ACC_MAX. */
template <unsigned long long ACC_MAX>
typename requant_width<ACC_MAX>::acc_t requant_acc(int32_t acc, const char* where, unsigned long token, unsigned c) {
#pragma HLS INLINE
    GSB_CHECK(acc >= -(long long)ACC_MAX && acc <= (long long)ACC_MAX,
              where << ": accumulator " << acc << " outside [-" << ACC_MAX << ", " << ACC_MAX << "] at token "
                    << token << ", channel " << c);
    (void)where;
    (void)token;
    (void)c;
    return typename requant_width<ACC_MAX>::acc_t(acc);
}

/** acc * mult exactly: an acc_bits x mult_bits multiplier, |.| <= 2^61. */
template <unsigned long long ACC_MAX>
wide_t requant_product(typename requant_width<ACC_MAX>::acc_t acc, typename requant_width<ACC_MAX>::mult_t mult) {
#pragma HLS INLINE
    return wide_t(acc * mult);
}

/** A value with |v| <= 2^lg (`what`[index] names it) as ap_int<lg+2>; C-simulation checks the bound. */
template <unsigned LG>
ap_int<LG + 2> bounded(int64_t v, const char* where, const char* what, unsigned long index) {
#pragma HLS INLINE
    static_assert(LG <= 61, "bounded: at most 2^61");
    const int64_t lim = int64_t(1) << LG;
    GSB_CHECK(v >= -lim && v <= lim,
              where << ": " << what << "[" << index << "] = " << v << " outside [-2^" << LG << ", 2^" << LG << "]");
    (void)where;
    (void)what;
    (void)index;
    (void)lim;
    return ap_int<LG + 2>(v);
}

/**
 * x + y for a result that must fit int32 (the residual stream, §1 run-time checks): C-simulation
 * checks the exact sum (an error naming `where`, the token and the channel); the datapath is a
 * 32-bit add, exact whenever the check holds (a sum in int32 is its own value mod 2^32).
 */
inline int32_t int32_sum(int32_t x, int64_t y, const char* where, unsigned long token, unsigned c) {
#pragma HLS INLINE
    GSB_CHECK(x + y >= INT32_MIN && x + y <= INT32_MAX, where << ": residual stream overflows int32 at token " << token
                                                              << ", channel " << c << " (value " << x + y << ")");
    (void)where;
    (void)token;
    (void)c;
    return ap_int<32>(ap_int<32>(x) + ap_int<32>(y)).to_int();
}

}  // namespace gsb

#endif  // GSB_REQUANT_HPP
