/* core/rng.c — xoshiro256** keyed by SplitMix64 over (seed, round, client, purpose). */
#include "rng.h"

#include <assert.h>
#include <math.h>

static uint64_t fp__splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void fp_rng_seed(fp_rng *r, uint64_t seed, uint64_t round, uint64_t client, enum fp_purpose purpose)
{
    /* Absorb each key word through a full SplitMix64 round so that keys
     * differing in any single word give unrelated states. */
    uint64_t key[4] = {seed, round, client, (uint64_t)purpose};
    uint64_t h = 0x6a09e667f3bcc908ULL;
    for (int i = 0; i < 4; i++) {
        h ^= key[i];
        h = fp__splitmix(&h);
    }
    for (int i = 0; i < 4; i++)
        r->s[i] = fp__splitmix(&h);
}

uint64_t fp_rng_below(fp_rng *r, uint64_t n)
{
    assert(n > 0);
    /* Lemire's nearly-divisionless method with rejection. */
    __uint128_t m = (__uint128_t)fp_rng_next(r) * n;
    uint64_t lo = (uint64_t)m;
    if (lo < n) {
        uint64_t t = -n % n;
        while (lo < t) {
            m = (__uint128_t)fp_rng_next(r) * n;
            lo = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

double fp_rng_normal(fp_rng *r)
{
    double u1 = 1.0 - fp_rng_uniform(r); /* (0, 1]: log is finite */
    double u2 = fp_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

double fp_rng_gamma(fp_rng *r, double shape)
{
    assert(shape > 0);
    if (shape < 1.0) {
        /* Boost: Gamma(a) = Gamma(a+1) * U^(1/a). */
        double u = 1.0 - fp_rng_uniform(r);
        return fp_rng_gamma(r, shape + 1.0) * pow(u, 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = fp_rng_normal(r);
            v = 1.0 + c * x;
        } while (v <= 0);
        v = v * v * v;
        double u = 1.0 - fp_rng_uniform(r);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v))
            return d * v;
    }
}

void fp_rng_shuffle_u32(fp_rng *r, uint32_t *a, uint64_t n)
{
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = fp_rng_below(r, i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}
