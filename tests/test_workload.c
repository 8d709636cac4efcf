/*
 * tests/test_workload.c — fp_workload_create() end to end: the quadratic
 * against its formula, synthetic(alpha, beta) against its documented draw
 * order, the paper's Fashion-MNIST setup, and workspace independence.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "workloads/model.h"
#include "workloads/workload.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

/* Sensible values for every field; tests change what they exercise. */
static struct fp_scenario scen(enum fp_dataset_kind ds, enum fp_model_kind model)
{
    struct fp_scenario sc;
    memset(&sc, 0, sizeof sc);
    snprintf(sc.name, sizeof sc.name, "test");
    sc.seed = 1;
    sc.rounds = 10;
    sc.eval_every = 1;
    sc.dataset = ds;
    snprintf(sc.data_path, sizeof sc.data_path, "%s", FMNIST_DIR);
    sc.clients = 10;
    sc.partition = ds == FP_DATA_FMNIST ? FP_PART_IID : FP_PART_NATURAL;
    sc.shards = 2;
    sc.dirichlet_alpha = 0.5;
    sc.synth_alpha = 1;
    sc.synth_beta = 1;
    sc.dim = ds == FP_DATA_SYNTHETIC ? 60 : ds == FP_DATA_QUADRATIC ? 10 : 784;
    sc.model = model;
    sc.hidden = 200;
    sc.algorithm = FP_ALGO_FEDAVG;
    sc.local_steps = 10;
    sc.batch = 32;
    sc.lr_local = 0.1;
    sc.lr_global = 1;
    sc.sample = sc.clients;
    return sc;
}

static struct fp_workload *create(const struct fp_scenario *sc)
{
    struct fp_workload *w = NULL;
    struct fp_error err = {0};
    if (fp_workload_create(&w, sc, &err))
        fail_msg("fp_workload_create: %s", err.msg);
    return w;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- quadratic ---------------------------------------------------------- */

static void test_quadratic_exact(void **state)
{
    (void)state;
    struct fp_scenario sc = scen(FP_DATA_QUADRATIC, FP_MODEL_QUADRATIC);
    sc.clients = 3;
    sc.dim = 5;
    sc.seed = 4;
    struct fp_workload *w = create(&sc);
    assert_int_equal(w->d, 5);
    assert_int_equal(w->nclients, 3);
    assert_int_equal(w->flops_per_example, 0);
    double a[3][5], b[3][5];
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(w->n_local[i], 1);
        fp_rng r;
        fp_rng_seed(&r, 4, 0, i, FP_RNG_DATA);
        for (int j = 0; j < 5; j++) {
            a[i][j] = (float)(0.5 + 1.5 * fp_rng_uniform(&r));
            assert_true(a[i][j] >= 0.5 && a[i][j] <= 2.0);
        }
        for (int j = 0; j < 5; j++)
            b[i][j] = (float)fp_rng_normal(&r);
    }
    float x[5] = {0.5f, -1.0f, 2.0f, 0.0f, 0.25f}, g[5], p[5];
    fp_rng r;
    fp_rng_seed(&r, 4, 0, 0, FP_RNG_INIT);
    w->ops->init_params(w, &r, p);
    for (int j = 0; j < 5; j++)
        assert_true(p[j] == 0.0f);
    void *ws = fp_workload_ws_new(w);
    assert_non_null(ws);
    double mean = 0, loss, acc;
    for (uint32_t i = 0; i < 3; i++) {
        fp_rng mb, copy;
        fp_rng_seed(&mb, 4, 1, i, FP_RNG_MINIBATCH);
        copy = mb;
        w->ops->grad(w, ws, i, x, 32, &mb, g, &loss);
        double f = 0;
        for (int j = 0; j < 5; j++) {
            double want = a[i][j] * (x[j] - b[i][j]);
            assert_true(fabs(g[j] - want) <= 1e-6 * (1 + fabs(want)));
            f += 0.5 * a[i][j] * (x[j] - b[i][j]) * (x[j] - b[i][j]);
        }
        assert_true(fabs(loss - f) <= 1e-6 * f);
        assert_memory_equal(&mb, &copy, sizeof mb); /* exact: the rng is untouched */
        mean += f / 3;
    }
    w->ops->evaluate(w, ws, x, &loss, &acc);
    assert_true(fabs(loss - mean) <= 1e-6 * mean);
    assert_true(isnan(acc));
    /* At the global minimiser x*_j = Σ a b / Σ a the mean gradient vanishes. */
    float xs[5];
    for (int j = 0; j < 5; j++) {
        double sab = 0, sa = 0;
        for (int i = 0; i < 3; i++) {
            sab += a[i][j] * b[i][j];
            sa += a[i][j];
        }
        xs[j] = (float)(sab / sa);
    }
    double gsum[5] = {0};
    for (uint32_t i = 0; i < 3; i++) {
        w->ops->grad(w, ws, i, xs, 1, &r, g, &loss);
        for (int j = 0; j < 5; j++)
            gsum[j] += g[j];
    }
    for (int j = 0; j < 5; j++)
        assert_true(fabs(gsum[j]) < 1e-5);
    fp_workload_ws_free(w, ws);
    fp_workload_free(w);
}

static void test_quadratic_noise(void **state)
{
    (void)state;
    struct fp_scenario sc = scen(FP_DATA_QUADRATIC, FP_MODEL_QUADRATIC);
    sc.clients = 2;
    sc.dim = 1000;
    struct fp_workload *w = create(&sc);
    float *x = calloc(1000, sizeof *x), *g0 = malloc(4000), *g1 = malloc(4000);
    void *ws = fp_workload_ws_new(w);
    fp_rng r;
    fp_rng_seed(&r, 1, 0, 1, FP_RNG_MINIBATCH);
    double loss;
    w->ops->grad(w, ws, 1, x, 1, &r, g0, &loss);
    fp_workload_ws_free(w, ws);
    fp_workload_free(w);

    sc.quad_noise = 0.5;
    w = create(&sc);
    ws = fp_workload_ws_new(w);
    fp_rng_seed(&r, 1, 0, 1, FP_RNG_MINIBATCH);
    fp_rng copy = r;
    w->ops->grad(w, ws, 1, x, 1, &r, g1, &loss);
    /* g1 = exact + 0.5 * N(0,1) draws of the rng, coordinate by coordinate. */
    double s2 = 0;
    for (int j = 0; j < 1000; j++) {
        double z = fp_rng_normal(&copy);
        assert_true(fabs(g1[j] - (g0[j] + (float)(0.5 * z))) < 1e-5);
        s2 += (g1[j] - g0[j]) * (g1[j] - g0[j]);
    }
    assert_true(fabs(sqrt(s2 / 1000) - 0.5) < 0.05); /* stddev 0.5, not variance */
    fp_workload_ws_free(w, ws);
    fp_workload_free(w);
    free(x);
    free(g0);
    free(g1);
}

/* ---- synthetic ---------------------------------------------------------- */

/* Client k's data, regenerated from the documented draw order. */
static void test_synthetic_draw_order(void **state)
{
    (void)state;
    struct fp_scenario sc = scen(FP_DATA_SYNTHETIC, FP_MODEL_LOGREG);
    sc.clients = 4;
    sc.dim = 8;
    sc.synth_alpha = 0.5;
    sc.synth_beta = 2.0;
    sc.seed = 11;
    struct fp_dataset tr, te;
    struct fp_partition part;
    struct fp_error err = {0};
    if (fp_synthetic_make(&tr, &te, &part, &sc, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(tr.dim, 8);
    assert_int_equal(tr.nclasses, 10);
    size_t test_pos = 0;
    for (uint32_t k = 0; k < 4; k++) {
        fp_rng r;
        fp_rng_seed(&r, 11, 0, k, FP_RNG_DATA);
        double nkd = floor(exp(4 + 2 * fp_rng_normal(&r))) + 50;
        uint32_t nk = nkd > 10000 ? 10000 : (uint32_t)nkd, ntr = nk * 4 / 5;
        assert_int_equal(part.offsets[k + 1] - part.offsets[k], ntr);
        double u = sqrt(0.5) * fp_rng_normal(&r), bm = sqrt(2.0) * fp_rng_normal(&r);
        float W[10][8], b[10], v[8];
        for (int c = 0; c < 10; c++)
            for (int j = 0; j < 8; j++)
                W[c][j] = (float)(u + fp_rng_normal(&r));
        for (int c = 0; c < 10; c++)
            b[c] = (float)(u + fp_rng_normal(&r));
        for (int j = 0; j < 8; j++)
            v[j] = (float)(bm + fp_rng_normal(&r));
        for (uint32_t s = 0; s < nk; s++) {
            const float *x;
            uint8_t y;
            if (s < ntr) {
                uint32_t e = part.indices[part.offsets[k] + s];
                x = tr.x + (size_t)e * 8;
                y = tr.y[e];
            } else {
                x = te.x + test_pos * 8;
                y = te.y[test_pos++];
            }
            for (int j = 0; j < 8; j++) {
                float want = (float)(v[j] + pow(j + 1.0, -0.6) * fp_rng_normal(&r));
                assert_true(fabs(x[j] - want) <= 1e-6 * (1 + fabs(want)));
            }
            int best = 0;
            double bz = -INFINITY;
            for (int c = 0; c < 10; c++) {
                double z = b[c];
                for (int j = 0; j < 8; j++)
                    z += (double)W[c][j] * x[j];
                if (z > bz) {
                    bz = z;
                    best = c;
                }
            }
            assert_int_equal(y, best);
        }
    }
    assert_int_equal(test_pos, te.n);
    assert_int_equal(part.offsets[4], tr.n);
    fp_dataset_free(&tr);
    fp_dataset_free(&te);
    fp_partition_free(&part);
}

/* Same seed: same bytes; client k's data does not depend on N; another seed differs. */
static void test_synthetic_determinism(void **state)
{
    (void)state;
    struct fp_scenario sc = scen(FP_DATA_SYNTHETIC, FP_MODEL_MLP);
    sc.clients = 30;
    sc.hidden = 16;
    struct fp_dataset a, b, c, d2;
    struct fp_partition pa, pb, pc;
    struct fp_error err = {0};
    assert_int_equal(fp_synthetic_make(&a, &b, &pa, &sc, &err), 0);
    assert_int_equal(fp_synthetic_make(&c, &d2, &pb, &sc, &err), 0);
    assert_int_equal(a.n, c.n);
    assert_int_equal(b.n, d2.n);
    assert_memory_equal(a.x, c.x, a.n * a.dim * sizeof(float));
    assert_memory_equal(a.y, c.y, a.n);
    assert_memory_equal(b.x, d2.x, b.n * b.dim * sizeof(float));
    assert_memory_equal(pa.offsets, pb.offsets, 31 * sizeof(uint32_t));
    /* Labels use several classes; sizes vary (lognormal). */
    uint32_t classes = 0, seen[10] = {0}, lo = UINT32_MAX, hi = 0;
    for (size_t i = 0; i < a.n; i++)
        seen[a.y[i]] = 1;
    for (int k = 0; k < 10; k++)
        classes += seen[k];
    assert_true(classes >= 5);
    for (uint32_t k = 0; k < 30; k++) {
        uint32_t s = pa.offsets[k + 1] - pa.offsets[k];
        assert_true(s >= 40); /* floor(0.8 * 50) */
        lo = s < lo ? s : lo;
        hi = s > hi ? s : hi;
    }
    assert_true(hi > 2 * lo);
    fp_dataset_free(&c);
    fp_dataset_free(&d2);
    fp_partition_free(&pb);

    sc.clients = 7; /* fewer clients: the first 7 are unchanged */
    assert_int_equal(fp_synthetic_make(&c, &d2, &pb, &sc, &err), 0);
    assert_memory_equal(pb.offsets, pa.offsets, 8 * sizeof(uint32_t));
    assert_memory_equal(c.x, a.x, (size_t)pb.offsets[7] * 60 * sizeof(float));
    fp_dataset_free(&c);
    fp_dataset_free(&d2);
    fp_partition_free(&pb);

    sc.clients = 30;
    sc.seed = 2;
    assert_int_equal(fp_synthetic_make(&c, &d2, &pc, &sc, &err), 0);
    assert_false(c.n == a.n && !memcmp(c.x, a.x, a.n * 60 * sizeof(float)));
    fp_dataset_free(&c);
    fp_dataset_free(&d2);
    fp_partition_free(&pc);
    fp_dataset_free(&a);
    fp_dataset_free(&b);
    fp_partition_free(&pa);

    /* Through fp_workload_create: an MLP on dim = 60. */
    sc.seed = 1;
    struct fp_workload *w = create(&sc);
    assert_int_equal(w->d, fp_model_nparams(FP_MODEL_MLP, 60, 16, 10));
    assert_int_equal(w->nclients, 30);
    fp_workload_free(w);
}

/* ---- Fashion-MNIST ------------------------------------------------------ */

static int have_fmnist(void)
{
    if (access(FMNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) == 0)
        return 1;
    print_message("no %s (apt-get install dataset-fashion-mnist): skipped\n", FMNIST_DIR);
    return 0;
}

/* The paper's setup: N = 200, two classes per client, MLP h = 200. */
static void test_fmnist_paper_setup(void **state)
{
    (void)state;
    if (!have_fmnist())
        skip();
    struct fp_scenario sc = scen(FP_DATA_FMNIST, FP_MODEL_MLP);
    sc.clients = 200;
    sc.partition = FP_PART_SHARDS;
    sc.shards = 2;
    struct fp_workload *w = create(&sc);
    assert_int_equal(w->d, 159010);
    assert_int_equal(w->nclients, 200);
    assert_int_equal(w->flops_per_example, 639200);
    for (uint32_t c = 0; c < 200; c++)
        assert_int_equal(w->n_local[c], 300);

    float *p = malloc(w->d * sizeof *p);
    float *g1 = malloc(w->d * sizeof *g1), *g2 = malloc(w->d * sizeof *g2);
    fp_rng r;
    fp_rng_seed(&r, 1, 0, FP_RNG_NO_CLIENT, FP_RNG_INIT);
    w->ops->init_params(w, &r, p);
    void *ws1 = fp_workload_ws_new(w), *ws2 = fp_workload_ws_new(w);

    /* At a random init: about chance accuracy, loss near ln 10. */
    double loss, acc;
    double t0 = now();
    w->ops->evaluate(w, ws1, p, &loss, &acc);
    double t_eval = now() - t0;
    assert_true(acc > 0.02 && acc < 0.3);
    assert_true(loss > 2.0 && loss < 2.7);

    /* Same rng, fresh workspace vs one that served another client first
     * (with a different batch): identical bytes. */
    fp_rng a, b, other;
    fp_rng_seed(&a, 1, 3, 5, FP_RNG_MINIBATCH);
    b = a;
    fp_rng_seed(&other, 1, 3, 17, FP_RNG_MINIBATCH);
    double l1, l2;
    w->ops->grad(w, ws1, 5, p, 32, &a, g1, &l1);
    w->ops->grad(w, ws2, 17, p, 300, &other, g2, &l2);
    w->ops->grad(w, ws2, 17, p, 7, &other, g2, &l2);
    w->ops->grad(w, ws2, 5, p, 32, &b, g2, &l2);
    assert_memory_equal(g1, g2, w->d * sizeof *g1);
    assert_true(l1 == l2);
    assert_memory_equal(&a, &b, sizeof a);
    /* A different minibatch stream gives a different gradient. */
    w->ops->grad(w, ws2, 5, p, 32, &other, g2, &l2);
    assert_memory_not_equal(g1, g2, w->d * sizeof *g1);

    /* Timing of single calls (informational; nothing asserted). */
    fp_rng_seed(&a, 1, 4, 5, FP_RNG_MINIBATCH);
    for (int i = 0; i < 20; i++)
        w->ops->grad(w, ws1, (uint32_t)i, p, 32, &a, g1, &l1);
    const int reps = 200;
    t0 = now();
    for (int i = 0; i < reps; i++)
        w->ops->grad(w, ws1, (uint32_t)i % 200, p, 32, &a, g1, &l1);
    double t_b32 = (now() - t0) / reps;
    t0 = now();
    for (int i = 0; i < 50; i++)
        w->ops->grad(w, ws1, (uint32_t)i % 200, p, 300, &a, g1, &l1);
    double t_full = (now() - t0) / 50;
    print_message("fmnist mlp h=200: grad B=32 %.3f ms (%.1f GFLOP/s), grad B=300 %.3f ms, "
                  "evaluate 10000 %.1f ms\n",
                  t_b32 * 1e3, 32.0 * (double)w->flops_per_example / t_b32 * 1e-9, t_full * 1e3,
                  t_eval * 1e3);

    fp_workload_ws_free(w, ws1);
    fp_workload_ws_free(w, ws2);
    fp_workload_free(w);
    free(p);
    free(g1);
    free(g2);
}

/* ---- errors ------------------------------------------------------------- */

static void expect_fail(const struct fp_scenario *sc, int rc_want, const char *needle)
{
    struct fp_workload *w = (struct fp_workload *)1;
    struct fp_error err = {0};
    int rc = fp_workload_create(&w, sc, &err);
    if (rc != rc_want || !strstr(err.msg, needle))
        fail_msg("rc %d (want %d), message \"%s\" (want \"%s\")", rc, rc_want, err.msg, needle);
    assert_null(w);
}

static void test_create_errors(void **state)
{
    (void)state;
    struct fp_scenario sc = scen(FP_DATA_FMNIST, FP_MODEL_MLP);
    snprintf(sc.data_path, sizeof sc.data_path, "/nonexistent/fm");
    expect_fail(&sc, FP_EIO,
                "/nonexistent/fm/train-images-idx3-ubyte.gz: not found (install it with: "
                "apt-get install dataset-fashion-mnist, or set [data] path)");
    sc = scen(FP_DATA_FMNIST, FP_MODEL_QUADRATIC);
    expect_fail(&sc, FP_EINVAL, "does not apply to dataset fashion-mnist");
    sc = scen(FP_DATA_FMNIST, FP_MODEL_MLP);
    sc.partition = FP_PART_NATURAL;
    expect_fail(&sc, FP_EINVAL, "partition = natural");
    sc = scen(FP_DATA_QUADRATIC, FP_MODEL_MLP);
    expect_fail(&sc, FP_EINVAL, "kind = mlp does not apply to dataset quadratic");
    sc = scen(FP_DATA_SYNTHETIC, FP_MODEL_LOGREG);
    sc.partition = FP_PART_IID;
    expect_fail(&sc, FP_EINVAL, "only natural applies");
    sc = scen(FP_DATA_SYNTHETIC, FP_MODEL_MLP);
    sc.hidden = 0;
    expect_fail(&sc, FP_EINVAL, "hidden = 0");
    sc = scen(FP_DATA_QUADRATIC, FP_MODEL_QUADRATIC);
    sc.clients = 0;
    expect_fail(&sc, FP_EINVAL, "clients = 0");
    sc = scen(FP_DATA_QUADRATIC, FP_MODEL_QUADRATIC);
    sc.dataset = (enum fp_dataset_kind)99;
    expect_fail(&sc, FP_EINVAL, "unknown kind 99");
}

/* [model] init is the caller's job: init_params ignores init_path. */
static void test_init_path_ignored(void **state)
{
    (void)state;
    struct fp_scenario sc = scen(FP_DATA_SYNTHETIC, FP_MODEL_LOGREG);
    struct fp_workload *w1 = create(&sc);
    snprintf(sc.init_path, sizeof sc.init_path, "/nonexistent/model.f32");
    struct fp_workload *w2 = create(&sc);
    float *p1 = malloc(w1->d * sizeof *p1), *p2 = malloc(w2->d * sizeof *p2);
    fp_rng r1, r2;
    fp_rng_seed(&r1, 1, 0, FP_RNG_NO_CLIENT, FP_RNG_INIT);
    r2 = r1;
    w1->ops->init_params(w1, &r1, p1);
    w2->ops->init_params(w2, &r2, p2);
    assert_memory_equal(p1, p2, w1->d * sizeof *p1);
    float bound = (float)(1 / sqrt(60.0));
    for (size_t k = 0; k < w1->d; k++)
        assert_true(fabsf(p1[k]) <= bound && p1[k] != 0.0f);
    free(p1);
    free(p2);
    fp_workload_free(w1);
    fp_workload_free(w2);
}

int main(void)
{
    openblas_set_num_threads(1); /* as the sim does: timings are per core */
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_quadratic_exact),      cmocka_unit_test(test_quadratic_noise),
        cmocka_unit_test(test_synthetic_draw_order), cmocka_unit_test(test_synthetic_determinism),
        cmocka_unit_test(test_fmnist_paper_setup),   cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_init_path_ignored),
    };
    return cmocka_run_group_tests(t, NULL, NULL);
}
