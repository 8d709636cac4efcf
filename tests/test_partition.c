/*
 * tests/test_partition.c — iid, shards, dirichlet and sorted partitions:
 * coverage, the per-kind guarantees, determinism, and clear refusals.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "workloads/dataset.h"

/* Hand-filled scenario: only what the partitioners read matters. */
static struct fp_scenario scen(enum fp_partition_kind kind, uint32_t clients, uint64_t seed)
{
    struct fp_scenario sc;
    memset(&sc, 0, sizeof sc);
    sc.seed = seed;
    sc.dataset = FP_DATA_FMNIST;
    sc.clients = clients;
    sc.partition = kind;
    sc.shards = 2;
    sc.dirichlet_alpha = 0.5;
    sc.model = FP_MODEL_MLP;
    sc.hidden = 200;
    return sc;
}

/* Fashion-MNIST-shaped labels: 6000 per class (n = 60000), in a fixed random order. */
static uint8_t *balanced_labels(size_t n, uint32_t ncls)
{
    uint8_t *y = malloc(n);
    uint32_t *perm = malloc(n * sizeof *perm);
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    fp_rng r;
    fp_rng_seed(&r, 77, 0, 0, FP_RNG_DATA);
    fp_rng_shuffle_u32(&r, perm, n);
    for (size_t i = 0; i < n; i++)
        y[perm[i]] = (uint8_t)(i * ncls / n);
    free(perm);
    return y;
}

static uint8_t *random_labels(size_t n, uint32_t ncls, uint64_t seed)
{
    uint8_t *y = malloc(n);
    fp_rng r;
    fp_rng_seed(&r, seed, 0, 0, FP_RNG_DATA);
    for (size_t i = 0; i < n; i++)
        y[i] = (uint8_t)fp_rng_below(&r, ncls);
    return y;
}

/* Every client's list ascending, no example twice; returns how many
 * examples were assigned and marks them in seen[] (if not NULL). */
static size_t check_lists(const struct fp_partition *p, size_t n, uint8_t *seen)
{
    uint8_t *mark = calloc(n, 1);
    assert_int_equal(p->offsets[0], 0);
    for (uint32_t c = 0; c < p->nclients; c++) {
        assert_true(p->offsets[c + 1] > p->offsets[c]); /* non-empty */
        for (uint32_t k = p->offsets[c]; k < p->offsets[c + 1]; k++) {
            uint32_t e = p->indices[k];
            assert_true(e < n);
            assert_int_equal(mark[e], 0);
            mark[e] = 1;
            if (k > p->offsets[c])
                assert_true(p->indices[k - 1] < e);
        }
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += mark[i];
    assert_int_equal(total, p->offsets[p->nclients]);
    if (seen)
        memcpy(seen, mark, n);
    free(mark);
    return total;
}

static void make(struct fp_partition *p, const uint8_t *y, size_t n, const struct fp_scenario *sc)
{
    struct fp_error err = {0};
    if (fp_partition_make(p, y, n, 10, sc, &err))
        fail_msg("fp_partition_make: %s", err.msg);
    assert_int_equal(p->nclients, sc->clients);
}

static int same(const struct fp_partition *a, const struct fp_partition *b)
{
    return a->nclients == b->nclients &&
           !memcmp(a->offsets, b->offsets, (a->nclients + 1) * sizeof *a->offsets) &&
           !memcmp(a->indices, b->indices, a->offsets[a->nclients] * sizeof *a->indices);
}

/* Same seed: identical bytes; another seed: a different partition. */
static void check_determinism(const uint8_t *y, size_t n, struct fp_scenario sc)
{
    struct fp_partition a, b, c;
    make(&a, y, n, &sc);
    make(&b, y, n, &sc);
    sc.seed += 1;
    make(&c, y, n, &sc);
    assert_true(same(&a, &b));
    assert_false(same(&a, &c));
    fp_partition_free(&a);
    fp_partition_free(&b);
    fp_partition_free(&c);
}

static void test_iid(void **state)
{
    (void)state;
    size_t n = 1003;
    uint8_t *y = random_labels(n, 10, 1);
    struct fp_scenario sc = scen(FP_PART_IID, 7, 42);
    struct fp_partition p;
    make(&p, y, n, &sc);
    assert_int_equal(check_lists(&p, n, NULL), n);
    uint32_t lo = UINT32_MAX, hi = 0;
    for (uint32_t c = 0; c < 7; c++) {
        uint32_t s = p.offsets[c + 1] - p.offsets[c];
        lo = s < lo ? s : lo;
        hi = s > hi ? s : hi;
    }
    assert_true(hi - lo <= 1);
    assert_int_equal(lo, 143); /* 1003 = 7 * 143 + 2 */
    /* Shuffled, not blocks of the original order: client 0 is not 0..142. */
    assert_true(p.indices[142] > 142);
    fp_partition_free(&p);
    check_determinism(y, n, sc);
    free(y);
}

/* Fashion-MNIST's shape, N = 200, K = 2: 400 single-class shards of 150. */
static void test_shards_fmnist_shape(void **state)
{
    (void)state;
    size_t n = 60000;
    uint8_t *y = balanced_labels(n, 10);
    struct fp_scenario sc = scen(FP_PART_SHARDS, 200, 1);
    struct fp_partition p;
    make(&p, y, n, &sc);
    assert_int_equal(check_lists(&p, n, NULL), n);
    uint32_t pair_count[10][10] = {{0}};
    for (uint32_t c = 0; c < 200; c++) {
        assert_int_equal(p.offsets[c + 1] - p.offsets[c], 300);
        uint32_t per[10] = {0}, distinct = 0, a = 10, b = 10;
        for (uint32_t k = p.offsets[c]; k < p.offsets[c + 1]; k++)
            per[y[p.indices[k]]]++;
        for (uint32_t l = 0; l < 10; l++) {
            if (!per[l])
                continue;
            distinct++;
            assert_int_equal(per[l], 150); /* whole shards of one class each */
            if (a == 10)
                a = l;
            else
                b = l;
        }
        assert_int_equal(distinct, 2);
        pair_count[a][b]++;
    }
    /* Random, not round-robin: many different class pairs occur. */
    uint32_t pairs = 0;
    for (int a = 0; a < 10; a++)
        for (int b = 0; b < 10; b++)
            pairs += pair_count[a][b] > 0;
    assert_true(pairs >= 30);
    fp_partition_free(&p);
    check_determinism(y, n, sc);
    free(y);
}

/* n not divisible by N*K: shards of floor(n/(N*K)); the leftover is the
 * tail of the stable label sort, assigned to nobody. */
static void test_shards_leftover(void **state)
{
    (void)state;
    size_t n = 1000;
    uint8_t *y = random_labels(n, 10, 3);
    struct fp_scenario sc = scen(FP_PART_SHARDS, 30, 5);
    sc.shards = 3;
    struct fp_partition p;
    make(&p, y, n, &sc);
    uint8_t *seen = malloc(n);
    assert_int_equal(check_lists(&p, n, seen), 990); /* 90 shards of 11 */
    for (uint32_t c = 0; c < 30; c++)
        assert_int_equal(p.offsets[c + 1] - p.offsets[c], 33);
    /* Stable sort by label; its last 10 entries are exactly the unassigned ones. */
    uint32_t sorted[1000], k = 0;
    for (uint32_t l = 0; l < 10; l++)
        for (uint32_t i = 0; i < n; i++)
            if (y[i] == l)
                sorted[k++] = i;
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(seen[sorted[i]], i < 990 ? 1 : 0);
    free(seen);
    fp_partition_free(&p);
    free(y);
}

static void test_shards_impossible(void **state)
{
    (void)state;
    struct fp_error err = {0};
    struct fp_partition p;
    size_t n = 1000;
    uint8_t *y = random_labels(n, 10, 3);
    struct fp_scenario sc = scen(FP_PART_SHARDS, 10, 5);
    sc.shards = 11;
    assert_int_equal(fp_partition_make(&p, y, n, 10, &sc, &err), FP_EINVAL);
    assert_non_null(strstr(err.msg, "shards:11"));
    assert_non_null(strstr(err.msg, "between 1 and 10"));
    assert_null(p.offsets);
    /* 90 of class 0: the 4 shards of 25 start at sorted positions 0, 25, 50, 75,
     * all class 0; 4 > N = 2. */
    for (size_t i = 0; i < 100; i++)
        y[i] = i < 90 ? 0 : 1;
    sc = scen(FP_PART_SHARDS, 2, 5);
    assert_int_equal(fp_partition_make(&p, y, 100, 10, &sc, &err), FP_EINVAL);
    if (!strstr(err.msg, "class 0 has 4 shards"))
        fail_msg("%s", err.msg);
    /* more clients cannot help (a class's share of the shards stays): the
     * advice is the K that fits, here shards:1 (2 shards of 50) */
    if (!strstr(err.msg, "use fewer shards per client (shards:1 fits)") ||
        strstr(err.msg, "more clients"))
        fail_msg("%s", err.msg);
    /* More shards than examples. */
    sc = scen(FP_PART_SHARDS, 60, 5);
    assert_int_equal(fp_partition_make(&p, y, 100, 10, &sc, &err), FP_EINVAL);
    assert_non_null(strstr(err.msg, "needs 120 shards"));
    if (!strstr(err.msg, "use fewer clients (at most 50 with shards:2)"))
        fail_msg("%s", err.msg);
    free(y);
}

static void test_dirichlet(void **state)
{
    (void)state;
    size_t n = 60000;
    uint8_t *y = balanced_labels(n, 10);
    struct fp_scenario sc = scen(FP_PART_DIRICHLET, 100, 9);
    sc.dirichlet_alpha = 0.1;
    struct fp_partition p;
    make(&p, y, n, &sc);
    assert_int_equal(check_lists(&p, n, NULL), n); /* every example exactly once */
    /* alpha = 0.1 is strongly non-iid: most clients are dominated by one class
     * (under iid the top class would hold about 10-15%). */
    uint32_t dominated = 0, lo = UINT32_MAX, hi = 0;
    for (uint32_t c = 0; c < 100; c++) {
        uint32_t per[10] = {0}, top = 0, size = p.offsets[c + 1] - p.offsets[c];
        for (uint32_t k = p.offsets[c]; k < p.offsets[c + 1]; k++)
            per[y[p.indices[k]]]++;
        for (int l = 0; l < 10; l++)
            top = per[l] > top ? per[l] : top;
        dominated += 2 * top > size;
        lo = size < lo ? size : lo;
        hi = size > hi ? size : hi;
    }
    assert_true(dominated >= 50);
    assert_true(hi > 4 * lo); /* unequal sizes too */
    fp_partition_free(&p);
    check_determinism(y, n, sc);

    /* Hopeless: tiny alpha and as many clients as examples per class. */
    struct fp_error err = {0};
    sc = scen(FP_PART_DIRICHLET, 500, 9);
    sc.dirichlet_alpha = 1e-4;
    assert_int_equal(fp_partition_make(&p, y, 1000, 10, &sc, &err), FP_EINVAL);
    assert_non_null(strstr(err.msg, "after 100 draws some client still had no examples"));
    assert_non_null(strstr(err.msg, "use a larger alpha or fewer clients"));
    sc.dirichlet_alpha = 0;
    assert_int_equal(fp_partition_make(&p, y, 1000, 10, &sc, &err), FP_EINVAL);
    assert_non_null(strstr(err.msg, "alpha must be > 0"));
    free(y);
}

/* Each way a dirichlet alpha fails gets advice pointing the right way. */
static void test_dirichlet_advice(void **state)
{
    (void)state;
    size_t n = 1000;
    uint8_t *y = balanced_labels(n, 10);
    struct fp_error err = {0};
    struct fp_partition p;
    /* huge: 100 draws of ~1e308 overflow their sum */
    struct fp_scenario sc = scen(FP_PART_DIRICHLET, 100, 9);
    sc.dirichlet_alpha = 1e308;
    assert_int_equal(fp_partition_make(&p, y, n, 10, &sc, &err), FP_EINVAL);
    if (!strstr(err.msg, "alpha is too large") || !strstr(err.msg, "use a smaller alpha (below") ||
        strstr(err.msg, "larger alpha"))
        fail_msg("%s", err.msg);
    /* the bound the message gives works */
    sc.dirichlet_alpha = 1e305;
    make(&p, y, n, &sc);
    assert_int_equal(check_lists(&p, n, NULL), n);
    fp_partition_free(&p);
    /* tiny: every draw underflows to 0 */
    sc.dirichlet_alpha = 1e-300;
    assert_int_equal(fp_partition_make(&p, y, n, 10, &sc, &err), FP_EINVAL);
    if (!strstr(err.msg, "alpha is too small") || !strstr(err.msg, "use a larger alpha"))
        fail_msg("%s", err.msg);
    /* near-equal shares already: only fewer clients help */
    sc = scen(FP_PART_DIRICHLET, 900, 9);
    sc.dirichlet_alpha = 1e6;
    assert_int_equal(fp_partition_make(&p, y, n, 10, &sc, &err), FP_EINVAL);
    if (!strstr(err.msg, "use fewer clients") || strstr(err.msg, "larger alpha"))
        fail_msg("%s", err.msg);
    free(y);
}

/* Client c holds positions [c*n/N, (c+1)*n/N) of the stable label sort, whatever the seed. */
static void test_sorted(void **state)
{
    (void)state;
    size_t n = 1000;
    uint8_t *y = random_labels(n, 10, 4);
    struct fp_scenario sc = scen(FP_PART_SORTED, 7, 1);
    struct fp_partition p, q;
    make(&p, y, n, &sc);
    assert_int_equal(check_lists(&p, n, NULL), n);
    uint32_t sorted[1000], k = 0, owner[1000];
    for (uint32_t l = 0; l < 10; l++)
        for (uint32_t i = 0; i < n; i++)
            if (y[i] == l)
                sorted[k++] = i;
    for (uint32_t c = 0; c < 7; c++)
        for (uint32_t i = p.offsets[c]; i < p.offsets[c + 1]; i++)
            owner[p.indices[i]] = c;
    for (uint32_t c = 0; c < 7; c++)
        for (uint32_t i = (uint32_t)(c * n / 7); i < (uint32_t)((c + 1) * n / 7); i++)
            assert_int_equal(owner[sorted[i]], c);
    sc.seed = 999; /* no RNG involved */
    make(&q, y, n, &sc);
    assert_true(same(&p, &q));
    fp_partition_free(&p);
    fp_partition_free(&q);
    free(y);
}

static void test_bad_counts(void **state)
{
    (void)state;
    uint8_t y[5] = {0, 1, 2, 3, 4};
    struct fp_partition p;
    struct fp_error err = {0};
    struct fp_scenario sc = scen(FP_PART_IID, 6, 1);
    assert_int_equal(fp_partition_make(&p, y, 5, 10, &sc, &err), FP_EINVAL);
    assert_non_null(strstr(err.msg, "clients = 6"));
    sc.clients = 0;
    assert_int_equal(fp_partition_make(&p, y, 5, 10, &sc, &err), FP_EINVAL);
    sc = scen(FP_PART_NATURAL, 2, 1);
    assert_int_equal(fp_partition_make(&p, y, 5, 10, &sc, &err), FP_EINVAL);
    y[2] = 12;
    sc = scen(FP_PART_IID, 2, 1);
    assert_int_equal(fp_partition_make(&p, y, 5, 10, &sc, &err), FP_EINVAL);
    assert_non_null(strstr(err.msg, "label 12 of example 2"));
    /* N = n works: one example each. */
    y[2] = 2;
    sc.clients = 5;
    make(&p, y, 5, &sc);
    assert_int_equal(check_lists(&p, 5, NULL), 5);
    fp_partition_free(&p);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_iid),
        cmocka_unit_test(test_shards_fmnist_shape),
        cmocka_unit_test(test_shards_leftover),
        cmocka_unit_test(test_shards_impossible),
        cmocka_unit_test(test_dirichlet),
        cmocka_unit_test(test_dirichlet_advice),
        cmocka_unit_test(test_sorted),
        cmocka_unit_test(test_bad_counts),
    };
    return cmocka_run_group_tests(t, NULL, NULL);
}
