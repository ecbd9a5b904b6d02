/* The CPU's xor + popcount + add limit, measured by a hand-written register tile (an independent
 * check of gsbsim's Numba/LLVM tile, see benchmarks/limit.py). Built on demand with the system cc:
 *     cc -O3 -march=native -shared -fPIC popcount_limit.c -o libpopcount_limit.so
 * tile_run: `reps` passes of a 3 x 8 tile (24 zmm accumulators of 8 int64 lanes) over `words` packed
 * words of 3 a-rows and 64 weight columns (L1-resident, the caller aligns w to 64 bytes), adding
 * popcount(a[r][j] ^ w[j][c]) for every (r, c, j). Without AVX-512 VPOPCNTDQ the same loop nest is
 * left to the compiler (a 3 x 64 scalar-source tile it may vectorise). Returns a checksum so that
 * the work cannot be optimised away. */
#include <stdint.h>
#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__)
#include <immintrin.h>

const char *tile_isa(void) { return "AVX-512 VPOPCNTDQ intrinsics, 3 x 8 zmm tile"; }

int64_t tile_run(const uint64_t *a, const uint64_t *w, int64_t words, int64_t reps) {
    int64_t check = 0;
    for (int64_t rep = 0; rep < reps; rep++) {
        __m512i acc[3][8];
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 8; c++) acc[r][c] = _mm512_setzero_si512();
        for (int64_t j = 0; j < words; j++) {
            const __m512i *wj = (const __m512i *)(w + j * 64);
            __m512i wv[8];
            for (int c = 0; c < 8; c++) wv[c] = _mm512_load_si512(wj + c);
            for (int r = 0; r < 3; r++) {
                __m512i x = _mm512_set1_epi64((long long)a[r * words + j]);
                for (int c = 0; c < 8; c++)
                    acc[r][c] = _mm512_add_epi64(acc[r][c], _mm512_popcnt_epi64(_mm512_xor_si512(x, wv[c])));
            }
        }
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 8; c++) check += _mm512_reduce_add_epi64(acc[r][c]);
    }
    return check;
}
#else
const char *tile_isa(void) { return "portable C (compiler-vectorised), 3 x 64 tile"; }

int64_t tile_run(const uint64_t *a, const uint64_t *w, int64_t words, int64_t reps) {
    int64_t check = 0;
    for (int64_t rep = 0; rep < reps; rep++) {
        int64_t acc[3][64] = {{0}};
        for (int64_t j = 0; j < words; j++)
            for (int r = 0; r < 3; r++) {
                uint64_t x = a[r * words + j];
                for (int c = 0; c < 64; c++) acc[r][c] += __builtin_popcountll(x ^ w[j * 64 + c]);
            }
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 64; c++) check += acc[r][c];
    }
    return check;
}
#endif
