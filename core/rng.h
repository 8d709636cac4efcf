/*
 * core/rng.h — keyed random streams.
 *
 * A stream is a pure function of its key (seed, round, client, purpose): no
 * global state, no time. Two streams with different keys are independent for
 * every practical purpose. The generator is xoshiro256** whose state is
 * derived from the key by chained SplitMix64 mixing. fp_rng is a plain value:
 * copy it, keep it on the stack, never share one between threads.
 */
#ifndef FP_RNG_H
#define FP_RNG_H

#include <stdint.h>

/* What a stream is used for; part of its key, so purposes never collide. */
enum fp_purpose {
    FP_RNG_INIT = 1,      /* model initialisation */
    FP_RNG_DATA = 2,      /* synthetic data generation */
    FP_RNG_PARTITION = 3, /* assigning examples to clients */
    FP_RNG_SAMPLING = 4,  /* choosing a round's participants */
    FP_RNG_MINIBATCH = 5, /* a client's minibatch order */
    FP_RNG_COMPRESS = 6,  /* random compressors */
    FP_RNG_DROPOUT = 7,   /* simulated dropouts (run/participation.c) */
    FP_RNG_LANES = 8,     /* parallel lanes keyed by a word of another stream */
    FP_RNG_STRAGGLER = 9  /* simulated answer times (run/participation.c) */
};

/* Used as the client field of keys that belong to no client. */
#define FP_RNG_NO_CLIENT UINT64_MAX

typedef struct fp_rng {
    uint64_t s[4];
} fp_rng;

void fp_rng_seed(fp_rng *r, uint64_t seed, uint64_t round, uint64_t client,
                 enum fp_purpose purpose);
/* Inline: rand-k and the samplers draw in tight loops, and a call per draw
 * costs more than the generator itself. */
static inline uint64_t fp_rng__rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t fp_rng_next(fp_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = fp_rng__rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = fp_rng__rotl(s[3], 45);
    return result;
}
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t fp_rng_below(fp_rng *r, uint64_t n);
/* Uniform double in [0, 1) with 53 random bits. */
static inline double fp_rng_uniform(fp_rng *r)
{
    return (double)(fp_rng_next(r) >> 11) * 0x1.0p-53;
}
/* Standard normal (Box–Muller, one value per call). */
double fp_rng_normal(fp_rng *r);
/* Gamma(shape, 1), shape > 0 (Marsaglia–Tsang). */
double fp_rng_gamma(fp_rng *r, double shape);
/* Fisher–Yates shuffle of a[0..n). */
void fp_rng_shuffle_u32(fp_rng *r, uint32_t *a, uint64_t n);

#endif
