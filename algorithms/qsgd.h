/*
 * algorithms/qsgd.h — the QSGD quantiser (internal to algorithms/).
 *
 * One rule, and implementations that give the same bytes: a portable one
 * and, on x86-64, AVX2 and AVX-512 (+BMI2) ones chosen at run time. The rule
 * (docs/compressors.md, "QSGD's random bits"):
 *
 *   - One 64-bit word w is drawn from the caller's stream; eight xoshiro256**
 *     lanes are keyed by (w, lane, FP_RNG_LANES).
 *   - Coordinates go in blocks of 32. For each block every lane steps once,
 *     in lane order; coordinate 32 b + m takes the 16 bits
 *     [16 (m mod 4), 16 (m mod 4) + 16) of lane m / 4's output as U.
 *   - t = |x_j| q in double, q = 2^16 s / norm (so t = 2^16 r with
 *     r = s |x_j| / norm); T = floor t; the level is
 *     l = min(s, floor(T / 2^16) + [U < T mod 2^16]), except on a tie
 *     (U == T mod 2^16 and t > T), when the bit is [u < t - T] for a uniform
 *     u drawn from the caller's stream, ties taken in index order.
 *   - So P(l = floor r + 1) = frac r exactly (up to u's 53 bits): the first
 *     16 bits of a uniform decide all but a 2^-16 share of the comparisons.
 */
#ifndef FP_QSGD_H
#define FP_QSGD_H

#include "core/rng.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Bits of one field: a sign bit and ceil(log2(s + 1)) level bits. */
static inline unsigned fp_qsgd_field_bits(uint32_t s)
{
    return 33u - (unsigned)__builtin_clz(s);
}

/* The decoded value of level l; encoder (for vhat) and decoder share it, so
 * both round identically. denom = s for qsgd, s (1 + omega_k) for
 * topk+qsgd. */
static inline float fp_qsgd_level(float norm, uint32_t l, double denom)
{
    return (float)((double)norm * (double)l / denom);
}

/* The decoded value of a field (sign | level << 1), from the table tab
 * (NULL: computed); the sign goes straight into the float's sign bit. */
static inline float fp_qsgd_value(const float *tab, float norm, uint32_t field, double denom)
{
    float x = tab ? tab[field >> 1] : fp_qsgd_level(norm, field >> 1, denom);
    uint32_t u;
    memcpy(&u, &x, 4);
    u |= (field & 1) << 31;
    memcpy(&x, &u, 4);
    return x;
}

struct fp_qsgd_job {
    const float *x; /* n finite values */
    size_t n;
    uint32_t s;   /* levels, 1 <= s <= 2^20 */
    float norm;   /* the float32 norm the receiver sees; 0 only if x == 0 */
    double denom; /* for the decoded values, see fp_qsgd_level */
    uint8_t *buf; /* fields go from bit `bit` of buf ... */
    size_t bit;
    size_t end;       /* ... and buf[0..end) is the message: bytes after the
                       * last field's may be overwritten with zeros */
    float *xhat;      /* decoded values, or NULL; may equal x */
    const float *tab; /* fp_qsgd_level(norm, l, denom) for l = 0..s, or NULL */
};

/*
 * Writes the n fields (sign | level << 1, 1 + ceil(log2(s+1)) bits each, LSB
 * first; padding bits of the last byte zero) and the decoded values. Bits of
 * buf[bit / 8] below `bit` are kept.
 */
void fp_qsgd_quantise(const struct fp_qsgd_job *job, fp_rng *rng);

/* The implementations; they give the same bytes. */
enum { FP_QSGD_PORTABLE = 0, FP_QSGD_AVX2 = 1, FP_QSGD_AVX512 = 2 };
/* The best this CPU runs, capped by the environment variable FEDPRESS_SIMD
 * (portable | avx2 | avx512 | native; unset or not understood: native), read
 * once per process; fp_qsgd_quantise, the decoder and QSGD's norm use it. */
int fp_qsgd_isa(void);
/* FP_QSGD_* for a FEDPRESS_SIMD value (3 for "native"), -1 if unknown. */
int fp_qsgd_isa_parse(const char *name);
const char *fp_qsgd_isa_name(int isa);
/* With a given implementation (clamped to what this process runs): tests. */
void fp_qsgd_quantise_isa(const struct fp_qsgd_job *job, fp_rng *rng, int isa);

/* Decoding: the fields of n coordinates from bit `bit` of buf[0..end). */
struct fp_qsgd_dec {
    const uint8_t *buf;
    size_t bit, end, n;
    uint32_t s;
    const float *tab; /* as in fp_qsgd_job; NULL: no fast path */
    float *out;       /* out[i], i < n */
};

/*
 * Decodes a prefix of whole 32-field blocks where a vector path exists (else
 * none) and returns its length; the caller decodes the rest one field at a
 * time. *any is the OR of the prefix's fields, *bad is set if one of its
 * levels exceeds s (out then holds nothing useful).
 */
size_t fp_qsgd_decode_blocks(const struct fp_qsgd_dec *dj, uint32_t *any, int *bad);
size_t fp_qsgd_decode_blocks_isa(const struct fp_qsgd_dec *dj, uint32_t *any, int *bad, int isa);

#endif
