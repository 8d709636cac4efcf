/*
 * tests/test_rng.c — keyed random streams: known answers from an independent
 * Python implementation, key separation, and the distributions' moments.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/rng.h"

/* From tests/reference/rng_reference.py. */
static void test_known_answers(void **state)
{
    (void)state;
    const uint64_t want1[4] = {0x8c5f976fec889727ULL, 0xde919d36f359ceb4ULL, 0x9a99bcd967851e0cULL,
                               0x796fccf389873188ULL};
    const uint64_t want2[4] = {0x742c91f51c91ae50ULL, 0x9bcf5262939d31d5ULL, 0xba2199be3d30d6d7ULL,
                               0xee04ea6c80158342ULL};
    fp_rng r;
    fp_rng_seed(&r, 1, 2, 3, (enum fp_purpose)4);
    for (int i = 0; i < 4; i++)
        assert_true(fp_rng_next(&r) == want1[i]);
    fp_rng_seed(&r, 42, 0, FP_RNG_NO_CLIENT, (enum fp_purpose)5);
    for (int i = 0; i < 4; i++)
        assert_true(fp_rng_next(&r) == want2[i]);
}

/* Keys that differ in one word give unrelated streams; equal keys equal ones. */
static void test_key_separation(void **state)
{
    (void)state;
    fp_rng a, b;
    uint64_t base[4] = {7, 11, 13, FP_RNG_MINIBATCH};
    for (int w = 0; w < 4; w++) {
        uint64_t k[4];
        memcpy(k, base, sizeof k);
        k[w] += 1;
        fp_rng_seed(&a, base[0], base[1], base[2], (enum fp_purpose)base[3]);
        fp_rng_seed(&b, k[0], k[1], k[2], (enum fp_purpose)k[3]);
        int same_bits = 0;
        for (int i = 0; i < 64; i++)
            same_bits += __builtin_popcountll(~(fp_rng_next(&a) ^ fp_rng_next(&b)));
        /* 4096 bits, half should agree by chance: far from 0 and 4096 */
        assert_true(same_bits > 1800 && same_bits < 2300);
    }
    fp_rng_seed(&a, 5, 6, 7, FP_RNG_SAMPLING);
    fp_rng_seed(&b, 5, 6, 7, FP_RNG_SAMPLING);
    for (int i = 0; i < 100; i++)
        assert_true(fp_rng_next(&a) == fp_rng_next(&b));
}

static void test_below_uniform(void **state)
{
    (void)state;
    fp_rng r;
    fp_rng_seed(&r, 1, 0, 0, FP_RNG_DATA);
    enum { K = 7, M = 70000 };
    int count[K] = {0};
    for (int i = 0; i < M; i++) {
        uint64_t v = fp_rng_below(&r, K);
        assert_true(v < K);
        count[v]++;
    }
    double chi2 = 0, e = (double)M / K;
    for (int k = 0; k < K; k++)
        chi2 += (count[k] - e) * (count[k] - e) / e;
    assert_true(chi2 < 22.46); /* chi-square, 6 dof, p = 0.001 */
    assert_int_equal(fp_rng_below(&r, 1), 0);
}

static void test_moments(void **state)
{
    (void)state;
    fp_rng r;
    fp_rng_seed(&r, 3, 0, 0, FP_RNG_DATA);
    enum { M = 200000 };
    double su = 0, sn = 0, sn2 = 0, sg = 0, sg_small = 0;
    for (int i = 0; i < M; i++) {
        double u = fp_rng_uniform(&r);
        assert_true(u >= 0 && u < 1);
        su += u;
        double n = fp_rng_normal(&r);
        sn += n;
        sn2 += n * n;
        sg += fp_rng_gamma(&r, 2.5);
        sg_small += fp_rng_gamma(&r, 0.3);
    }
    /* tolerances ~5 standard errors */
    assert_true(fabs(su / M - 0.5) < 5 * sqrt(1.0 / 12 / M));
    assert_true(fabs(sn / M) < 5 / sqrt((double)M));
    assert_true(fabs(sn2 / M - 1) < 5 * sqrt(2.0 / M));
    assert_true(fabs(sg / M - 2.5) < 5 * sqrt(2.5 / M));
    assert_true(fabs(sg_small / M - 0.3) < 5 * sqrt(0.3 / M));
}

static void test_shuffle_is_permutation(void **state)
{
    (void)state;
    fp_rng r;
    fp_rng_seed(&r, 9, 0, 0, FP_RNG_PARTITION);
    uint32_t a[1000];
    int seen[1000] = {0}, moved = 0;
    for (uint32_t i = 0; i < 1000; i++)
        a[i] = i;
    fp_rng_shuffle_u32(&r, a, 1000);
    for (uint32_t i = 0; i < 1000; i++) {
        assert_true(a[i] < 1000);
        seen[a[i]]++;
        moved += a[i] != i;
    }
    for (int i = 0; i < 1000; i++)
        assert_int_equal(seen[i], 1);
    assert_true(moved > 950); /* a random permutation has ~1 fixed point */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),          cmocka_unit_test(test_key_separation),
        cmocka_unit_test(test_below_uniform),          cmocka_unit_test(test_moments),
        cmocka_unit_test(test_shuffle_is_permutation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
