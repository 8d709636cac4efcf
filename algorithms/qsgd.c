/*
 * algorithms/qsgd.c — the QSGD quantiser of qsgd.h: its portable form, and
 * AVX2 and AVX-512 forms that give the same bytes (tests/test_compressor.c
 * and fuzz/fuzz_compressor.c compare them on every shape the fast paths take
 * and on their fallbacks).
 *
 * Why the rule draws 16 bits per coordinate instead of a 53-bit uniform:
 * with one 64-bit draw per coordinate, the draws alone took 0.13 ms of a
 * d = 159,010 compression, a third of what DRAM bandwidth allows. A
 * comparison of a uniform with a fraction is decided by the first 16 bits of
 * both unless they are equal, and only then do more bits matter; drawing
 * those on demand keeps the rounding exactly unbiased. Eight lanes let the
 * generator run four or eight at a time.
 */
#include "qsgd.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FP__HAVE_AVX2 1
#define FP__AVX2      __attribute__((target("avx2")))
#endif

#define FP__LANES 8
#define FP__BLOCK 32 /* coordinates per step of the lanes: 8 x 64 bits / 16 */

struct fp__lanes {
    uint64_t s[4][FP__LANES]; /* s[k][i]: word k of lane i's state */
};

static void fp__lanes_seed(struct fp__lanes *ln, fp_rng *rng)
{
    uint64_t w = fp_rng_next(rng);
    for (int i = 0; i < FP__LANES; i++) {
        fp_rng r;
        fp_rng_seed(&r, w, (uint64_t)i, FP_RNG_NO_CLIENT, FP_RNG_LANES);
        for (int k = 0; k < 4; k++)
            ln->s[k][i] = r.s[k];
    }
}

/* One xoshiro256** step of every lane, as fp_rng_next. */
static inline void fp__lanes_next(struct fp__lanes *ln, uint64_t out[FP__LANES])
{
    for (int i = 0; i < FP__LANES; i++) {
        fp_rng r = {{ln->s[0][i], ln->s[1][i], ln->s[2][i], ln->s[3][i]}};
        out[i] = fp_rng_next(&r);
        for (int k = 0; k < 4; k++)
            ln->s[k][i] = r.s[k];
    }
}

/* ---- bit writer, LSB first ---- */

struct fp__bw {
    uint8_t *p;
    uint64_t acc;
    unsigned n;
};

/* Starts writing at bit `bit` of buf; bits below it in that byte are kept
 * and bits above it must be zero. */
static inline void fp__bw_init(struct fp__bw *w, uint8_t *buf, size_t bit)
{
    w->p = buf + bit / 8;
    w->n = (unsigned)(bit % 8);
    w->acc = w->n ? (uint64_t)*w->p & ((1u << w->n) - 1) : 0;
}
static inline void fp__bw_put(struct fp__bw *w, uint32_t x, unsigned nbits)
{
    w->acc |= (uint64_t)x << w->n;
    w->n += nbits;
    if (w->n >= 32) {
        uint32_t lo = (uint32_t)w->acc;
        memcpy(w->p, &lo, 4);
        w->p += 4;
        w->acc >>= 32;
        w->n -= 32;
    }
}
/* Writes the last partial bytes; padding bits are zero. */
static inline void fp__bw_flush(struct fp__bw *w)
{
    while (w->n > 0) {
        *w->p++ = (uint8_t)w->acc;
        w->acc >>= 8;
        w->n = w->n > 8 ? w->n - 8 : 0;
    }
}

/* ---- the rule, one coordinate at a time ---- */

/* The level of coordinate a (= |x_j|) given its 16 random bits u; q as in
 * qsgd.h. Draws from rng only on a tie. */
static inline uint32_t fp__level(float a, uint32_t u, double q, uint32_t s, fp_rng *rng)
{
    double t = (double)a * q; /* < 2^37: T and t - T are exact */
    uint64_t T = (uint64_t)t;
    uint32_t f = (uint32_t)(T & 0xffff);
    uint32_t l = (uint32_t)(T >> 16) + (u < f);
    if (u == f && t > (double)T)
        l += fp_rng_uniform(rng) < t - (double)T;
    return l < s ? l : s;
}

/* The fields of x[0..m), m <= FP__BLOCK, a block whose lane outputs are rnd. */
static void fp__block_fields(const float *x, size_t m, const uint64_t rnd[FP__LANES], double q,
                             uint32_t s, fp_rng *rng, uint32_t *field)
{
    for (size_t j = 0; j < m; j++) {
        uint32_t u = (uint32_t)(rnd[j / 4] >> (16 * (j % 4))) & 0xffff;
        uint32_t l = fp__level(fabsf(x[j]), u, q, s, rng);
        field[j] = (uint32_t)(x[j] < 0) | l << 1;
    }
}

/* Blocks from `from` on, one coordinate at a time. */
static void fp__quantise_tail(const struct fp_qsgd_job *job, struct fp__lanes *ln, double q,
                              size_t from, fp_rng *rng)
{
    unsigned fb = fp_qsgd_field_bits(job->s);
    struct fp__bw w;
    fp__bw_init(&w, job->buf, job->bit + from * fb);
    for (size_t j = from; j < job->n; j += FP__BLOCK) {
        uint64_t rnd[FP__LANES];
        uint32_t field[FP__BLOCK];
        size_t m = job->n - j < FP__BLOCK ? job->n - j : FP__BLOCK;
        fp__lanes_next(ln, rnd);
        fp__block_fields(job->x + j, m, rnd, q, job->s, rng, field);
        for (size_t i = 0; i < m; i++) {
            fp__bw_put(&w, field[i], fb);
            if (job->xhat)
                job->xhat[j + i] = fp_qsgd_value(job->tab, job->norm, field[i], job->denom);
        }
    }
    fp__bw_flush(&w);
}

static double fp__q(const struct fp_qsgd_job *job)
{
    return job->norm > 0 ? ldexp((double)job->s / (double)job->norm, 16) : 0.0;
}

#ifdef FP__HAVE_AVX2

/* The vector codes flag every coordinate whose 16 bits equal its fraction's
 * (tie, bit m for coordinate m of the block) and give it the level without
 * the extra bit; this redoes those, in index order, as the portable code
 * does. fields is the block's 32 fields, wherever the vectors put them. */
static void fp__fix_ties(void *fields, const uint64_t rnd[FP__LANES], uint32_t tie, const float *xb,
                         double q, uint32_t s, fp_rng *rng)
{
    uint32_t f[FP__BLOCK];
    memcpy(f, fields, sizeof f);
    for (; tie; tie &= tie - 1) {
        int m = __builtin_ctz(tie);
        uint32_t u = (uint32_t)(rnd[m / 4] >> (16 * (m % 4))) & 0xffff;
        f[m] = (f[m] & 1) | fp__level(fabsf(xb[m]), u, q, s, rng) << 1;
    }
    memcpy(fields, f, sizeof f);
}

/* Whole blocks the vector code may take on n fields of fb bits from bit
 * `bit` of a message of `end` bytes. It stores or loads 8 bytes at each
 * fb-byte step, so a last block without 8 - fb bytes after its fields is
 * left to the portable code. */
static size_t fp__vector_blocks(size_t n, size_t bit, size_t end, unsigned fb)
{
    size_t nb = n / FP__BLOCK, room = end - bit / 8;
    while (nb > 0 && room < FP__BLOCK / 8 * fb * nb + 8 - fb)
        nb--;
    return nb;
}

/* Four lanes' xoshiro256** step; x 5 and x 9 as shifts and adds. */
static inline FP__AVX2 __m256i fp__x4_next(__m256i s[4])
{
    __m256i a = _mm256_add_epi64(s[1], _mm256_slli_epi64(s[1], 2));
    a = _mm256_or_si256(_mm256_slli_epi64(a, 7), _mm256_srli_epi64(a, 57));
    __m256i out = _mm256_add_epi64(a, _mm256_slli_epi64(a, 3));
    __m256i t = _mm256_slli_epi64(s[1], 17);
    s[2] = _mm256_xor_si256(s[2], s[0]);
    s[3] = _mm256_xor_si256(s[3], s[1]);
    s[1] = _mm256_xor_si256(s[1], s[2]);
    s[0] = _mm256_xor_si256(s[0], s[3]);
    s[2] = _mm256_xor_si256(s[2], t);
    s[3] = _mm256_or_si256(_mm256_slli_epi64(s[3], 45), _mm256_srli_epi64(s[3], 19));
    return out;
}

/*
 * Whole blocks, 32 coordinates per step: the fields in four vectors of eight
 * 32-bit lanes, ties fixed in index order, then the decoded values (a
 * register permute for s < 8, a gather otherwise) and the packing: bytes
 * pairwise into 2 fb bits, 4 fb, 8 fb, so that each 64-bit lane holds eight
 * fields, fb whole bytes. Needs fb <= 8, a byte-aligned start and, with xhat,
 * the level table. Returns the coordinates done.
 */
static FP__AVX2 size_t fp__quantise_avx2(const struct fp_qsgd_job *job, struct fp__lanes *ln,
                                         double q, fp_rng *rng)
{
    const uint32_t s = job->s;
    const unsigned fb = fp_qsgd_field_bits(s);
    const size_t nb = fp__vector_blocks(job->n, job->bit, job->end, fb);
    const float *x = job->x;
    float *xhat = job->xhat;
    uint8_t *p = job->buf + job->bit / 8;

    __m256i lo[4], hi[4]; /* lanes 0-3 and 4-7 */
    for (int k = 0; k < 4; k++) {
        lo[k] = _mm256_loadu_si256((const __m256i *)&ln->s[k][0]);
        hi[k] = _mm256_loadu_si256((const __m256i *)&ln->s[k][4]);
    }
    const __m256d qv = _mm256_set1_pd(q);
    const __m256i m16 = _mm256_set1_epi32(0xffff), sv = _mm256_set1_epi32((int)s);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m128i c1 = _mm_cvtsi32_si128((int)fb), c2 = _mm_cvtsi32_si128((int)(2 * fb)),
                  c4 = _mm_cvtsi32_si128((int)(4 * fb));
    float tab8[8] = {0};
    if (xhat && s < 8)
        memcpy(tab8, job->tab, (s + 1) * sizeof *tab8);
    const __m256 tabv = _mm256_loadu_ps(tab8);

    for (size_t b = 0; b < nb; b++) {
        const float *xb = x + FP__BLOCK * b;
        __m256i ra = fp__x4_next(lo), rb = fp__x4_next(hi);
        __m128i u16[4] = {_mm256_castsi256_si128(ra), _mm256_extracti128_si256(ra, 1),
                          _mm256_castsi256_si128(rb), _mm256_extracti128_si256(rb, 1)};
        __m256i fld[4];
        unsigned tie = 0;
        for (int g = 0; g < 4; g++) {
            __m256 xv = _mm256_loadu_ps(xb + 8 * g);
            /* trunc(-a q) = -trunc(a q): the sign comes off the integer */
            __m256d t0 = _mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(xb + 8 * g)), qv);
            __m256d t1 = _mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(xb + 8 * g + 4)), qv);
            __m256i T = _mm256_abs_epi32(
                _mm256_set_m128i(_mm256_cvttpd_epi32(t1), _mm256_cvttpd_epi32(t0)));
            __m256i f = _mm256_and_si256(T, m16), u = _mm256_cvtepu16_epi32(u16[g]);
            __m256i l = _mm256_sub_epi32(_mm256_srli_epi32(T, 16), _mm256_cmpgt_epi32(f, u));
            l = _mm256_min_epu32(l, sv);
            tie |= (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(f, u)))
                   << (8 * g);
            __m256i neg = _mm256_castps_si256(_mm256_cmp_ps(xv, _mm256_setzero_ps(), _CMP_LT_OQ));
            fld[g] = _mm256_sub_epi32(_mm256_slli_epi32(l, 1), neg);
        }
        if (tie) { /* probability about 2^-11 per block */
            uint64_t rnd[FP__LANES];
            _mm256_storeu_si256((__m256i *)&rnd[0], ra);
            _mm256_storeu_si256((__m256i *)&rnd[4], rb);
            fp__fix_ties(fld, rnd, tie, xb, q, s, rng);
        }
        if (xhat) {
            for (int g = 0; g < 4; g++) {
                __m256i l = _mm256_srli_epi32(fld[g], 1);
                __m256 v =
                    s < 8 ? _mm256_permutevar8x32_ps(tabv, l) : _mm256_i32gather_ps(job->tab, l, 4);
                v = _mm256_or_ps(v, _mm256_castsi256_ps(_mm256_slli_epi32(fld[g], 31)));
                _mm256_storeu_ps(xhat + FP__BLOCK * b + 8 * g, v);
            }
        }
        __m256i by = _mm256_packus_epi16(_mm256_packus_epi32(fld[0], fld[1]),
                                         _mm256_packus_epi32(fld[2], fld[3]));
        by = _mm256_permutevar8x32_epi32(by, order);
        __m256i v = _mm256_or_si256(_mm256_and_si256(by, _mm256_set1_epi16(0xff)),
                                    _mm256_sll_epi16(_mm256_srli_epi16(by, 8), c1));
        v = _mm256_or_si256(_mm256_and_si256(v, m16),
                            _mm256_sll_epi32(_mm256_srli_epi32(v, 16), c2));
        v = _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi64x(0xffffffff)),
                            _mm256_sll_epi64(_mm256_srli_epi64(v, 32), c4));
        uint64_t o[4];
        _mm256_storeu_si256((__m256i *)o, v);
        /* Eight bytes each; the ones past fb are zero and the next store
         * overwrites them (fp__vector_blocks leaves the room). */
        for (int k = 0; k < 4; k++, p += fb)
            memcpy(p, &o[k], 8);
    }
    for (int k = 0; k < 4; k++) {
        _mm256_storeu_si256((__m256i *)&ln->s[k][0], lo[k]);
        _mm256_storeu_si256((__m256i *)&ln->s[k][4], hi[k]);
    }
    return nb * FP__BLOCK;
}

#define FP__AVX512 __attribute__((target("avx2,avx512f,bmi2")))

/* Eight lanes' xoshiro256** step. */
static inline FP__AVX512 __m512i fp__x8_next(__m512i s[4])
{
    __m512i a = _mm512_add_epi64(s[1], _mm512_slli_epi64(s[1], 2));
    a = _mm512_rol_epi64(a, 7);
    __m512i out = _mm512_add_epi64(a, _mm512_slli_epi64(a, 3));
    __m512i t = _mm512_slli_epi64(s[1], 17);
    s[2] = _mm512_xor_si512(s[2], s[0]);
    s[3] = _mm512_xor_si512(s[3], s[1]);
    s[1] = _mm512_xor_si512(s[1], s[2]);
    s[0] = _mm512_xor_si512(s[0], s[3]);
    s[2] = _mm512_xor_si512(s[2], t);
    s[3] = _mm512_rol_epi64(s[3], 45);
    return out;
}

/* fp__quantise_avx2 with sixteen coordinates per vector: the same steps,
 * masks instead of all-ones lanes, a two-register permute for s < 32. */
static FP__AVX512 size_t fp__quantise_avx512(const struct fp_qsgd_job *job, struct fp__lanes *ln,
                                             double q, fp_rng *rng)
{
    const uint32_t s = job->s;
    const unsigned fb = fp_qsgd_field_bits(s);
    const float *x = job->x;
    float *xhat = job->xhat;
    uint8_t *p = job->buf + job->bit / 8;

    __m512i st[4];
    for (int k = 0; k < 4; k++)
        st[k] = _mm512_loadu_si512(&ln->s[k][0]);
    const __m512d qv = _mm512_set1_pd(q);
    const __m512i m16 = _mm512_set1_epi32(0xffff), sv = _mm512_set1_epi32((int)s);
    const __m512i one = _mm512_set1_epi32(1);
    const uint64_t pm = 0x0101010101010101ull * ((1u << fb) - 1);
    const size_t nb = fp__vector_blocks(job->n, job->bit, job->end, fb);
    float tab32[32] = {0};
    if (xhat && s < 32)
        memcpy(tab32, job->tab, (s + 1) * sizeof *tab32);
    const __m512 tlo = _mm512_loadu_ps(tab32), thi = _mm512_loadu_ps(tab32 + 16);

    for (size_t b = 0; b < nb; b++) {
        const float *xb = x + FP__BLOCK * b;
        __m512i r = fp__x8_next(st);
        __m256i u16[2] = {_mm512_castsi512_si256(r), _mm512_extracti64x4_epi64(r, 1)};
        __m512i fld[2];
        uint32_t tie = 0;
        for (int g = 0; g < 2; g++) {
            __m512 xv = _mm512_loadu_ps(xb + 16 * g);
            /* trunc(-a q) = -trunc(a q): the sign comes off the integer */
            __m512d t0 = _mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(xb + 16 * g)), qv);
            __m512d t1 = _mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(xb + 16 * g + 8)), qv);
            __m512i T = _mm512_abs_epi32(_mm512_inserti64x4(
                _mm512_castsi256_si512(_mm512_cvttpd_epi32(t0)), _mm512_cvttpd_epi32(t1), 1));
            __m512i f = _mm512_and_si512(T, m16), u = _mm512_cvtepu16_epi32(u16[g]);
            __m512i fl = _mm512_srli_epi32(T, 16);
            __m512i l = _mm512_mask_add_epi32(fl, _mm512_cmplt_epu32_mask(u, f), fl, one);
            l = _mm512_slli_epi32(_mm512_min_epu32(l, sv), 1);
            tie |= (uint32_t)_mm512_cmpeq_epi32_mask(f, u) << (16 * g);
            __mmask16 neg = _mm512_cmp_ps_mask(xv, _mm512_setzero_ps(), _CMP_LT_OQ);
            fld[g] = _mm512_mask_or_epi32(l, neg, l, one);
        }
        if (tie) {
            uint64_t rnd[FP__LANES];
            _mm512_storeu_si512(rnd, r);
            fp__fix_ties(fld, rnd, tie, xb, q, s, rng);
        }
        if (xhat) {
            for (int g = 0; g < 2; g++) {
                __m512i l = _mm512_srli_epi32(fld[g], 1);
                __m512 v = s < 32 ? _mm512_permutex2var_ps(tlo, l, thi)
                                  : _mm512_i32gather_ps(l, job->tab, 4);
                v = _mm512_castsi512_ps(
                    _mm512_or_si512(_mm512_castps_si512(v), _mm512_slli_epi32(fld[g], 31)));
                _mm512_storeu_ps(xhat + FP__BLOCK * b + 16 * g, v);
            }
        }
        /* One field per byte, then pext gathers the low fb bits of each of
         * eight bytes: fb whole bytes per 64 bits. */
        uint64_t o[4];
        _mm_storeu_si128((__m128i *)&o[0], _mm512_cvtepi32_epi8(fld[0]));
        _mm_storeu_si128((__m128i *)&o[2], _mm512_cvtepi32_epi8(fld[1]));
        for (int k = 0; k < 4; k++, p += fb) {
            uint64_t w = _pext_u64(o[k], pm);
            memcpy(p, &w, 8);
        }
    }
    for (int k = 0; k < 4; k++)
        _mm512_storeu_si512(&ln->s[k][0], st[k]);
    return nb * FP__BLOCK;
}

/* Whole blocks of fields: pdep spreads each fb bytes into eight one-field
 * bytes, then as fp__quantise_avx512's decoded values. Levels above s are
 * looked up clamped and reported. */
static FP__AVX512 size_t fp__decode_avx512(const struct fp_qsgd_dec *dj, uint32_t *any, int *bad)
{
    const uint32_t s = dj->s;
    const unsigned fb = fp_qsgd_field_bits(s);
    const uint64_t pm = 0x0101010101010101ull * ((1u << fb) - 1);
    const uint8_t *p = dj->buf + dj->bit / 8;
    const size_t nb = fp__vector_blocks(dj->n, dj->bit, dj->end, fb);
    float tab32[32] = {0};
    if (s < 32)
        memcpy(tab32, dj->tab, (s + 1) * sizeof *tab32);
    const __m512 tlo = _mm512_loadu_ps(tab32), thi = _mm512_loadu_ps(tab32 + 16);
    const __m512i sv = _mm512_set1_epi32((int)s);
    __m512i anyv = _mm512_setzero_si512();
    __mmask16 over = 0;
    for (size_t b = 0; b < nb; b++) {
        uint64_t o[4];
        for (int k = 0; k < 4; k++, p += fb) {
            uint64_t w;
            memcpy(&w, p, 8);
            o[k] = _pdep_u64(w, pm);
        }
        for (int g = 0; g < 2; g++) {
            __m512i f = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)&o[2 * g]));
            anyv = _mm512_or_si512(anyv, f);
            __m512i l = _mm512_srli_epi32(f, 1);
            over |= _mm512_cmpgt_epu32_mask(l, sv);
            l = _mm512_min_epu32(l, sv);
            __m512 v =
                s < 32 ? _mm512_permutex2var_ps(tlo, l, thi) : _mm512_i32gather_ps(l, dj->tab, 4);
            v = _mm512_castsi512_ps(
                _mm512_or_si512(_mm512_castps_si512(v), _mm512_slli_epi32(f, 31)));
            _mm512_storeu_ps(dj->out + FP__BLOCK * b + 16 * g, v);
        }
    }
    *any = (uint32_t)_mm512_reduce_or_epi32(anyv);
    *bad = over != 0;
    return nb * FP__BLOCK;
}

/* What the CPU runs. */
static int fp__isa_cpu(void)
{
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("bmi2"))
        return FP_QSGD_AVX512;
    return __builtin_cpu_supports("avx2") ? FP_QSGD_AVX2 : FP_QSGD_PORTABLE;
}

#else

static int fp__isa_cpu(void)
{
    return FP_QSGD_PORTABLE;
}

#endif

int fp_qsgd_isa_parse(const char *name)
{
    static const char *names[] = {"portable", "avx2", "avx512", "native"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

const char *fp_qsgd_isa_name(int isa)
{
    return isa == FP_QSGD_AVX512 ? "avx512" : isa == FP_QSGD_AVX2 ? "avx2" : "portable";
}

/* The CPU's best, capped by FEDPRESS_SIMD: read once, so that threads never
 * race a host program's setenv and every call of a run agrees. */
static int fp__isa;
static pthread_once_t fp__isa_once = PTHREAD_ONCE_INIT;

static void fp__isa_init(void)
{
    int isa = fp__isa_cpu();
    const char *cap = getenv("FEDPRESS_SIMD");
    int want = cap ? fp_qsgd_isa_parse(cap) : -1;
    if (want >= FP_QSGD_PORTABLE && want <= FP_QSGD_AVX512 && want < isa)
        isa = want;
    fp__isa = isa;
}

int fp_qsgd_isa(void)
{
    pthread_once(&fp__isa_once, fp__isa_init);
    return fp__isa;
}

/* An implementation a test asked for, within what this process runs. */
static int fp__isa_clamp(int isa)
{
    int best = fp_qsgd_isa();
    return isa < FP_QSGD_PORTABLE ? FP_QSGD_PORTABLE : isa > best ? best : isa;
}

void fp_qsgd_quantise_isa(const struct fp_qsgd_job *job, fp_rng *rng, int isa)
{
    struct fp__lanes ln;
    fp__lanes_seed(&ln, rng);
    double q = fp__q(job);
    size_t done = 0;
    isa = fp__isa_clamp(isa);
#ifdef FP__HAVE_AVX2
    if (isa != FP_QSGD_PORTABLE && fp_qsgd_field_bits(job->s) <= 8 && job->bit % 8 == 0 &&
        (!job->xhat || job->tab))
        done = isa == FP_QSGD_AVX512 ? fp__quantise_avx512(job, &ln, q, rng)
                                     : fp__quantise_avx2(job, &ln, q, rng);
#endif
    fp__quantise_tail(job, &ln, q, done, rng);
}

void fp_qsgd_quantise(const struct fp_qsgd_job *job, fp_rng *rng)
{
    fp_qsgd_quantise_isa(job, rng, fp_qsgd_isa());
}

size_t fp_qsgd_decode_blocks_isa(const struct fp_qsgd_dec *dj, uint32_t *any, int *bad, int isa)
{
    *any = 0;
    *bad = 0;
    isa = fp__isa_clamp(isa);
#ifdef FP__HAVE_AVX2
    if (isa == FP_QSGD_AVX512 && fp_qsgd_field_bits(dj->s) <= 8 && dj->bit % 8 == 0 && dj->tab)
        return fp__decode_avx512(dj, any, bad);
#else
    (void)dj;
#endif
    return 0;
}

size_t fp_qsgd_decode_blocks(const struct fp_qsgd_dec *dj, uint32_t *any, int *bad)
{
    return fp_qsgd_decode_blocks_isa(dj, any, bad, fp_qsgd_isa());
}
