/*
 * tests/test_model.c — logreg and MLP: gradients against finite differences
 * of a naive double-precision twin, values against numpy, the minibatch
 * draw, chunked accumulation, initialisation layout, and evaluation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workloads/model.h"

/* ---- building tiny workloads by hand ---------------------------------- */

static void make_ds(struct fp_dataset *ds, size_t n, size_t dim, uint32_t ncls)
{
    ds->n = n;
    ds->dim = dim;
    ds->nclasses = ncls;
    ds->x = calloc(n * dim, sizeof(float));
    ds->y = calloc(n, 1);
    assert_non_null(ds->x);
    assert_non_null(ds->y);
}

static void copy_ds(struct fp_dataset *dst, const struct fp_dataset *src)
{
    make_ds(dst, src->n, src->dim, src->nclasses);
    memcpy(dst->x, src->x, src->n * src->dim * sizeof(float));
    memcpy(dst->y, src->y, src->n);
}

/* Client c holds examples [bounds[c], bounds[c+1]). */
static void make_part(struct fp_partition *p, const uint32_t *bounds, uint32_t nc)
{
    p->nclients = nc;
    p->offsets = malloc((nc + 1) * sizeof *p->offsets);
    p->indices = malloc(bounds[nc] * sizeof *p->indices);
    for (uint32_t c = 0; c <= nc; c++)
        p->offsets[c] = bounds[c];
    for (uint32_t i = 0; i < bounds[nc]; i++)
        p->indices[i] = i;
}

/* Workload over a copy of `data` as both train and test, split by bounds. */
static struct fp_workload *make_wl(enum fp_model_kind kind, uint32_t hidden,
                                   const struct fp_dataset *data, const uint32_t *bounds,
                                   uint32_t nc)
{
    struct fp_dataset tr = {0}, te = {0};
    struct fp_partition part = {0};
    struct fp_error err = {0};
    struct fp_workload *w = NULL;
    copy_ds(&tr, data);
    copy_ds(&te, data);
    make_part(&part, bounds, nc);
    int rc = fp_classif_create(&w, kind, hidden, &tr, &te, &part, &err);
    if (rc)
        fail_msg("fp_classif_create: %s", err.msg);
    assert_null(tr.x); /* moved */
    assert_null(part.offsets);
    return w;
}

static void random_data(struct fp_dataset *ds, uint64_t seed)
{
    fp_rng r;
    fp_rng_seed(&r, seed, 0, 0, FP_RNG_DATA);
    for (size_t i = 0; i < ds->n * ds->dim; i++)
        ds->x[i] = (float)fp_rng_normal(&r);
    for (size_t i = 0; i < ds->n; i++)
        ds->y[i] = (uint8_t)fp_rng_below(&r, ds->nclasses);
}

/* ---- the naive twin: double precision, no BLAS, one example at a time -- */

struct dims {
    enum fp_model_kind kind;
    size_t in, h, C;
};

static double ref_loss(struct dims m, const double *p, const struct fp_dataset *ds,
                       const uint32_t *rows, size_t nrows)
{
    double total = 0, a[64], z[16];
    for (size_t r = 0; r < nrows; r++) {
        const float *x = ds->x + (size_t)rows[r] * m.in;
        if (m.kind == FP_MODEL_LOGREG) {
            for (size_t c = 0; c < m.C; c++) {
                z[c] = p[m.C * m.in + c];
                for (size_t j = 0; j < m.in; j++)
                    z[c] += p[c * m.in + j] * x[j];
            }
        } else {
            const double *w1 = p, *b1 = w1 + m.h * m.in, *w2 = b1 + m.h, *b2 = w2 + m.C * m.h;
            for (size_t k = 0; k < m.h; k++) {
                double s = b1[k];
                for (size_t j = 0; j < m.in; j++)
                    s += w1[k * m.in + j] * x[j];
                a[k] = s > 0 ? s : 0;
            }
            for (size_t c = 0; c < m.C; c++) {
                z[c] = b2[c];
                for (size_t k = 0; k < m.h; k++)
                    z[c] += w2[c * m.h + k] * a[k];
            }
        }
        double mx = z[0], s = 0;
        for (size_t c = 1; c < m.C; c++)
            mx = z[c] > mx ? z[c] : mx;
        for (size_t c = 0; c < m.C; c++)
            s += exp(z[c] - mx);
        total += mx + log(s) - z[ds->y[rows[r]]];
    }
    return total / (double)nrows;
}

/* What grad() returned at the float params against the double reference:
 * its loss within 1e-5 of ref_loss, and its gradient g against central
 * differences of ref_loss, every coordinate |g - fd| <= 2e-4 *
 * max(|fd|, 1e-2) and the relative error of the whole vector below 1e-4.
 * Returns ref_loss. */
static double check_fd(struct dims m, const float *params, size_t d, const float *g, double loss,
                       const struct fp_dataset *ds, const uint32_t *rows, size_t nrows)
{
    double *p = calloc(d, sizeof *p);
    for (size_t i = 0; i < d; i++)
        p[i] = params[i];
    const double want = ref_loss(m, p, ds, rows, nrows);
    assert_true(fabs(loss - want) < 1e-5);
    double num = 0, den = 0;
    const double eps = 1e-6;
    for (size_t i = 0; i < d; i++) {
        double save = p[i];
        p[i] = save + eps;
        double lp = ref_loss(m, p, ds, rows, nrows);
        p[i] = save - eps;
        double lm = ref_loss(m, p, ds, rows, nrows);
        p[i] = save;
        double fd = (lp - lm) / (2 * eps);
        double tol = 2e-4 * (fabs(fd) > 1e-2 ? fabs(fd) : 1e-2);
        if (fabs(g[i] - fd) > tol)
            fail_msg("param %zu: analytic %.9g vs finite difference %.9g", i, g[i], fd);
        num += (g[i] - fd) * (g[i] - fd);
        den += fd * fd;
    }
    assert_true(den > 0);
    assert_true(sqrt(num / den) < 1e-4);
    free(p);
    return want;
}

/* ---- tests --------------------------------------------------------------- */

/* Values printed by `/usr/bin/python3 tests/reference/mlp_reference.py`
 * (numpy, float64); see that script for the fixed problem. */
static const double ref_mlp_loss = 1.1569028975523648;
static const double ref_mlp_acc = 0.16666666666666666;
static const double ref_mlp_grad[39] = {
    0.071868545003561435,
    0.077930711667116265,
    0.056008157667915906,
    0.016411407685362516,
    -0.022236570026489145,
    0.008497747964277904,
    0.011540791879793334,
    0.008593004949546703,
    0.0010407763658462892,
    -0.0075639597567179369,
    -0.0033243287260455905,
    -0.0082434615421412005,
    -0.0033561840571694466,
    0.0090389409822256989,
    0.023112290049657688,
    0,
    0,
    0,
    0,
    0,
    0.036857433462689083,
    -0.0023942079914934852,
    0.025214475099878612,
    0,
    -0.02061278705043456,
    -0.0067013855803512009,
    -0.015521361679413398,
    0,
    0.06345178171030301,
    0.039020629681904929,
    -0.028982118277496902,
    0,
    -0.042838994659868457,
    -0.032319244101553748,
    0.04450347995691032,
    0,
    0.020086425807679074,
    0.024771782884751029,
    -0.044858208692430096,
};
static const double ref_logreg_loss = 1.229164916995297;
static const double ref_logreg_acc = 0.16666666666666666;
static const double ref_logreg_grad[18] = {
    0.019782458682322271,  -0.017297296974486578, -0.045139189646176185, -0.050648741827336329,
    -0.031234732667653912, 0.10108249420954751,   0.10898413759098223,   0.081417743199711443,
    0.031348217258890712,  -0.017675950867541514, -0.12086495289186976,  -0.091686840616495624,
    -0.036278553553535237, 0.019300524568445627,  0.048910683535195433,  0.0046890826840815802,
    0.067141748278228552,  -0.071830830962310091,
};

static void check_reference(enum fp_model_kind kind, uint32_t hidden, double want_loss,
                            double want_acc, const double *want_grad, size_t want_d)
{
    struct fp_dataset ds = {0};
    make_ds(&ds, 6, 5, 3);
    for (size_t i = 0; i < 6; i++) {
        for (size_t j = 0; j < 5; j++)
            ds.x[i * 5 + j] = (float)(0.5 + 0.5 * sin(1.3 * (double)i + 0.7 * (double)j));
        ds.y[i] = (uint8_t)((2 * i + 1) % 3);
    }
    uint32_t bounds[2] = {0, 6};
    struct fp_workload *w = make_wl(kind, hidden, &ds, bounds, 1);
    assert_int_equal(w->d, want_d);
    float *p = malloc(w->d * sizeof *p), *g = malloc(w->d * sizeof *g);
    for (size_t k = 0; k < w->d; k++)
        p[k] = (float)(0.3 * cos(0.9 * (double)k + 0.2));
    void *ws = fp_workload_ws_new(w);
    fp_rng r;
    fp_rng_seed(&r, 1, 0, 0, FP_RNG_MINIBATCH);
    double loss = 0, acc = 0;
    w->ops->grad(w, ws, 0, p, 6, &r, g, &loss);
    assert_true(fabs(loss - want_loss) < 1e-6);
    for (size_t k = 0; k < w->d; k++)
        if (fabs(g[k] - want_grad[k]) > 1e-6 + 1e-5 * fabs(want_grad[k]))
            fail_msg("param %zu: %.9g, numpy says %.9g", k, g[k], want_grad[k]);
    w->ops->evaluate(w, ws, p, &loss, &acc);
    assert_true(fabs(loss - want_loss) < 1e-6);
    assert_true(fabs(acc - want_acc) < 1e-12);
    fp_workload_ws_free(w, ws);
    fp_workload_free(w);
    free(p);
    free(g);
    fp_dataset_free(&ds);
}

static void test_numpy_reference_mlp(void **state)
{
    (void)state;
    check_reference(FP_MODEL_MLP, 4, ref_mlp_loss, ref_mlp_acc, ref_mlp_grad, 39);
}

static void test_numpy_reference_logreg(void **state)
{
    (void)state;
    check_reference(FP_MODEL_LOGREG, 0, ref_logreg_loss, ref_logreg_acc, ref_logreg_grad, 18);
}

/* Full-batch gradient of client 1 (of 2) vs finite differences. */
static void check_fd_model(enum fp_model_kind kind, uint32_t hidden)
{
    struct fp_dataset ds = {0};
    make_ds(&ds, 13, 6, 4);
    random_data(&ds, 7);
    uint32_t bounds[3] = {0, 5, 13};
    struct fp_workload *w = make_wl(kind, hidden, &ds, bounds, 2);
    struct dims m = {kind, 6, hidden, 4};
    float *p = malloc(w->d * sizeof *p), *g = malloc(w->d * sizeof *g);
    fp_rng r;
    fp_rng_seed(&r, 3, 0, FP_RNG_NO_CLIENT, FP_RNG_INIT);
    w->ops->init_params(w, &r, p);
    for (size_t k = 0; k < w->d; k++)
        p[k] *= 3.0f; /* larger weights: logits far from uniform, a sharper test */
    void *ws = fp_workload_ws_new(w);
    double loss;
    w->ops->grad(w, ws, 1, p, 100, &r, g, &loss);
    uint32_t rows[8] = {5, 6, 7, 8, 9, 10, 11, 12};
    check_fd(m, p, w->d, g, loss, &ds, rows, 8);
    fp_workload_ws_free(w, ws);
    fp_workload_free(w);
    free(p);
    free(g);
    fp_dataset_free(&ds);
}

static void test_fd_mlp(void **state)
{
    (void)state;
    check_fd_model(FP_MODEL_MLP, 13); /* 13 = one SIMD block of 8 + a tail of 5 */
}

static void test_fd_logreg(void **state)
{
    (void)state;
    check_fd_model(FP_MODEL_LOGREG, 0);
}

/* batch < n: the minibatch is the documented partial Fisher–Yates draw of
 * distinct local positions, and the gradient is that subset's. */
static void test_minibatch_subset(void **state)
{
    (void)state;
    struct fp_dataset ds = {0};
    make_ds(&ds, 23, 4, 3);
    random_data(&ds, 11);
    uint32_t bounds[3] = {0, 3, 23}; /* client 1: examples 3..22 */
    struct fp_workload *w = make_wl(FP_MODEL_MLP, 16, &ds, bounds, 2);
    struct dims m = {FP_MODEL_MLP, 4, 16, 3};
    float *p = malloc(w->d * sizeof *p), *g = malloc(w->d * sizeof *g);
    fp_rng r;
    fp_rng_seed(&r, 5, 0, FP_RNG_NO_CLIENT, FP_RNG_INIT);
    w->ops->init_params(w, &r, p);
    fp_rng mb, copy;
    fp_rng_seed(&mb, 5, 2, 1, FP_RNG_MINIBATCH);
    copy = mb;
    void *ws = fp_workload_ws_new(w);
    double loss;
    w->ops->grad(w, ws, 1, p, 7, &mb, g, &loss);
    /* Repeat the draw: positions 0..19 of client 1, 7 swaps. */
    uint32_t perm[20], rows[7];
    for (uint32_t i = 0; i < 20; i++)
        perm[i] = i;
    for (uint32_t i = 0; i < 7; i++) {
        uint32_t j = i + (uint32_t)fp_rng_below(&copy, 20 - i);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        rows[i] = 3 + perm[i];
    }
    for (uint32_t i = 0; i < 7; i++) /* distinct and inside the client */
        for (uint32_t k = i + 1; k < 7; k++)
            assert_int_not_equal(rows[i], rows[k]);
    /* The rng advanced by exactly those draws. */
    assert_memory_equal(&copy, &mb, sizeof copy);
    check_fd(m, p, w->d, g, loss, &ds, rows, 7);
    fp_workload_ws_free(w, ws);
    fp_workload_free(w);
    free(p);
    free(g);
    fp_dataset_free(&ds);
}

/* A full batch larger than the workspace chunk (FP_MODEL_MAX_CHUNK rows)
 * accumulates over chunks: 2500 examples = 1024 + 1024 + 452. */
static void test_chunked_full_batch(void **state)
{
    (void)state;
    struct fp_dataset ds = {0};
    make_ds(&ds, 2500, 3, 3);
    random_data(&ds, 13);
    uint32_t bounds[2] = {0, 2500};
    struct fp_workload *w = make_wl(FP_MODEL_MLP, 11, &ds, bounds, 1);
    struct dims m = {FP_MODEL_MLP, 3, 11, 3};
    float *p = malloc(w->d * sizeof *p), *g = malloc(w->d * sizeof *g);
    fp_rng r;
    fp_rng_seed(&r, 9, 0, FP_RNG_NO_CLIENT, FP_RNG_INIT);
    w->ops->init_params(w, &r, p);
    void *ws = fp_workload_ws_new(w);
    double loss, acc;
    w->ops->grad(w, ws, 0, p, 5000, &r, g, &loss);
    uint32_t *rows = malloc(2500 * sizeof *rows);
    for (uint32_t i = 0; i < 2500; i++)
        rows[i] = i;
    double want = check_fd(m, p, w->d, g, loss, &ds, rows, 2500);
    /* evaluate() chunks the test set (the same 2500) the same way. */
    w->ops->evaluate(w, ws, p, &loss, &acc);
    assert_true(fabs(loss - want) < 1e-5);
    fp_workload_ws_free(w, ws);
    fp_workload_free(w);
    free(rows);
    free(p);
    free(g);
    fp_dataset_free(&ds);
}

/* Every parameter is (2u - 1)/sqrt(fan_in) with u the next uniform of the
 * rng, in layout order: W1, b1 use fan_in = in; W2, b2 use fan_in = h. */
static void test_init_layout(void **state)
{
    (void)state;
    struct fp_dataset ds = {0};
    make_ds(&ds, 2, 20, 10);
    uint32_t bounds[2] = {0, 2};
    struct fp_workload *w = make_wl(FP_MODEL_MLP, 7, &ds, bounds, 1);
    assert_int_equal(w->d, 7 * 20 + 7 + 10 * 7 + 10);
    float *p = malloc(w->d * sizeof *p);
    fp_rng r, copy;
    fp_rng_seed(&r, 21, 0, FP_RNG_NO_CLIENT, FP_RNG_INIT);
    copy = r;
    w->ops->init_params(w, &r, p);
    double b_in = 1 / sqrt(20.0), b_h = 1 / sqrt(7.0);
    size_t first = 7 * 20 + 7;
    double max_first = 0, max_second = 0;
    for (size_t k = 0; k < w->d; k++) {
        double bound = k < first ? b_in : b_h;
        float want = (float)((2 * fp_rng_uniform(&copy) - 1) * bound);
        assert_true(p[k] == want);
        assert_true(fabs(p[k]) <= bound);
        if (k < first)
            max_first = fmax(max_first, fabs(p[k]));
        else
            max_second = fmax(max_second, fabs(p[k]));
    }
    assert_true(max_first > 0.9 * b_in);
    assert_true(max_second > b_in); /* the second layer really uses the wider bound */
    /* d and FLOPs of the paper's MLP. */
    assert_int_equal(fp_model_nparams(FP_MODEL_MLP, 784, 200, 10), 159010);
    assert_int_equal(fp_model_nparams(FP_MODEL_LOGREG, 784, 0, 10), 7850);
    fp_workload_free(w);
    free(p);
    fp_dataset_free(&ds);

    make_ds(&ds, 2, 784, 10);
    w = make_wl(FP_MODEL_MLP, 200, &ds, bounds, 1);
    assert_int_equal(w->d, 159010);
    assert_int_equal(w->flops_per_example,
                     2 * 784 * 200 + 2 * 200 * 10 + 2 * 200 * 10 + 2 * 10 * 200 + 2 * 200 * 784);
    fp_workload_free(w);
    fp_dataset_free(&ds);
}

/* logreg with W = I, b = 0: logits are the inputs. */
static void test_evaluate_by_hand(void **state)
{
    (void)state;
    static const float x[5][3] = {{3, 1, 0}, {0, 2, 1}, {1, 1, 0}, {0, 0, 5}, {1000, 0, 0}};
    static const uint8_t y[5] = {0, 2, 1, 2, 1};
    /* argmax: 0 (right), 1 (wrong), 0 by the tie rule (wrong), 2 (right), 0 (wrong). */
    struct fp_dataset ds = {0};
    make_ds(&ds, 5, 3, 3);
    memcpy(ds.x, x, sizeof x);
    memcpy(ds.y, y, sizeof y);
    uint32_t bounds[2] = {0, 5};
    struct fp_workload *w = make_wl(FP_MODEL_LOGREG, 0, &ds, bounds, 1);
    float p[12] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0};
    double want = 0;
    for (int i = 0; i < 4; i++) {
        double s = 0;
        for (int c = 0; c < 3; c++)
            s += exp(x[i][c]);
        want += log(s) - x[i][y[i]];
    }
    want += 1000; /* row 5: lse = 1000 + log(1 + 2e-1000) = 1000, minus z_1 = 0 */
    want /= 5;
    void *ws = fp_workload_ws_new(w);
    double loss, acc;
    w->ops->evaluate(w, ws, p, &loss, &acc);
    assert_true(fabs(loss - want) < 1e-9 * want);
    assert_true(acc == 0.4);
    /* The huge logit keeps the gradient finite too. */
    float g[12];
    fp_rng r;
    fp_rng_seed(&r, 1, 0, 0, FP_RNG_MINIBATCH);
    w->ops->grad(w, ws, 0, p, 5, &r, g, &loss);
    assert_true(fabs(loss - want) < 1e-9 * want);
    for (int k = 0; k < 12; k++)
        assert_true(isfinite(g[k]));
    /* db = mean(p - onehot): row 5 contributes (1, -1, 0)/5. */
    assert_true(fabs(g[9] + g[10] + g[11]) < 1e-6); /* softmax rows sum to 1 */
    fp_workload_ws_free(w, ws);
    fp_workload_free(w);
    fp_dataset_free(&ds);
}

static void test_create_rejects(void **state)
{
    (void)state;
    struct fp_dataset tr = {0}, te = {0};
    struct fp_partition part = {0};
    struct fp_error err = {0};
    struct fp_workload *w = (struct fp_workload *)&err; /* must be reset to NULL */
    make_ds(&tr, 4, 3, 3);
    make_ds(&te, 4, 3, 3);
    uint32_t bounds[3] = {0, 4, 4}; /* client 1 empty */
    make_part(&part, bounds, 2);
    assert_int_equal(fp_classif_create(&w, FP_MODEL_LOGREG, 0, &tr, &te, &part, &err), FP_EINVAL);
    assert_null(w);
    assert_non_null(strstr(err.msg, "client 1 holds no examples"));
    assert_null(tr.x); /* ownership was taken even on failure */

    make_ds(&tr, 4, 3, 3);
    make_ds(&te, 4, 3, 3);
    make_part(&part, bounds, 1);
    assert_int_equal(fp_classif_create(&w, FP_MODEL_MLP, 0, &tr, &te, &part, &err), FP_EINVAL);
    assert_non_null(strstr(err.msg, "hidden = 0"));
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_numpy_reference_mlp),
        cmocka_unit_test(test_numpy_reference_logreg),
        cmocka_unit_test(test_fd_mlp),
        cmocka_unit_test(test_fd_logreg),
        cmocka_unit_test(test_minibatch_subset),
        cmocka_unit_test(test_chunked_full_batch),
        cmocka_unit_test(test_init_layout),
        cmocka_unit_test(test_evaluate_by_hand),
        cmocka_unit_test(test_create_rejects),
    };
    return cmocka_run_group_tests(t, NULL, NULL);
}
