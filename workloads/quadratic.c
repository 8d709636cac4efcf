/*
 * workloads/quadratic.c — an exactly solvable test problem.
 *
 *   f_i(x) = ½ Σ_j a_ij (x_j − b_ij)²,   a_ij ~ U[0.5, 2],  b_ij ~ N(0, 1)
 *
 * drawn from the (seed, 0, i, DATA) stream. ∇f_i = a_i ⊙ (x − b_i), and the
 * global objective (1/N) Σ_i f_i has its minimum at x*_j = Σ_i a_ij b_ij /
 * Σ_i a_ij, so algorithms can be checked against a known optimum. Each
 * client holds one "example"; the minibatch size is irrelevant, and the rng
 * is used only when [data] noise > 0 (then N(0, noise²) is added to every
 * gradient coordinate).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* Bytes of coefficients (8·N·d) a test-set workload holds at most. */
#define FP__QUAD_TEST_HOLD (32ull << 20)

struct fp_quad {
    struct fp_workload w;
    uint32_t n, d;
    /* a and b hold clients lo .. lo+cnt-1: all, the one held, or none for
     * a large test set (its evaluation draws each client's again) */
    uint32_t lo, cnt;
    uint64_t seed;
    double noise;
    float *a, *b; /* [cnt][d] each */
    uint32_t *n_local;
};

/* Client i's coefficients from its own stream (seed, 0, i, DATA): all of
 * a_i, then all of b_i, the documented draw order. */
static void fp__qdraw(uint64_t seed, uint32_t i, uint32_t d, float *a, float *b)
{
    fp_rng r;
    fp_rng_seed(&r, seed, 0, i, FP_RNG_DATA);
    for (uint32_t j = 0; j < d; j++)
        a[j] = (float)(0.5 + 1.5 * fp_rng_uniform(&r));
    for (uint32_t j = 0; j < d; j++)
        b[j] = (float)fp_rng_normal(&r);
}

/* 0.5 * Σ a (x-b)² in double: the test objective must be exact enough to
 * compare algorithms at 1e-6 relative. */
static double fp__fab(const float *a, const float *b, uint32_t d, const float *x)
{
    double s = 0;
    for (uint32_t j = 0; j < d; j++) {
        double r = (double)x[j] - b[j];
        s += a[j] * r * r;
    }
    return 0.5 * s;
}

static double fp__fi(const struct fp_quad *q, uint32_t i, const float *x)
{
    return fp__fab(q->a + (size_t)(i - q->lo) * q->d, q->b + (size_t)(i - q->lo) * q->d, q->d, x);
}

static void fp__qgrad(const struct fp_workload *w, void *ws, uint32_t client, const float *x,
                      uint32_t batch, fp_rng *rng, float *g, double *loss)
{
    const struct fp_quad *q = w->impl;
    (void)ws;
    (void)batch;
    fp_workload_grad_guard(w, client);
    const float *a = q->a + (size_t)(client - q->lo) * q->d;
    const float *b = q->b + (size_t)(client - q->lo) * q->d;
    for (uint32_t j = 0; j < q->d; j++)
        g[j] = a[j] * (x[j] - b[j]);
    if (q->noise > 0)
        for (uint32_t j = 0; j < q->d; j++)
            g[j] += (float)(q->noise * fp_rng_normal(rng));
    *loss = fp__fi(q, client, x);
}

static void fp__qeval(const struct fp_workload *w, void *ws, const float *x, double *loss,
                      double *accuracy)
{
    const struct fp_quad *q = w->impl;
    fp_workload_eval_guard(w); /* the global objective needs every client's f_i */
    double s = 0;
    if (q->cnt == q->n) {
        for (uint32_t i = 0; i < q->n; i++)
            s += fp__fi(q, i, x);
    } else {
        /* A large test set alone (a coordinator's) holds no client's
         * coefficients: each is drawn again into the workspace, the same
         * bits, so memory stays O(d) rather than 8·N·d bytes (at the price
         * of the draws: ~90 ns per coefficient pair against ~1). */
        float *a = ws, *b = a + q->d;
        for (uint32_t i = 0; i < q->n; i++) {
            fp__qdraw(q->seed, i, q->d, a, b);
            s += fp__fab(a, b, q->d, x);
        }
    }
    *loss = s / q->n;
    *accuracy = NAN;
}

static void fp__qinit(const struct fp_workload *w, fp_rng *rng, float *x)
{
    (void)rng;
    memset(x, 0, w->d * sizeof *x);
}

/* Scratch for a and b of one client where the test set's evaluation draws
 * them again; else none, but NULL means "out of memory" to callers. */
static void *fp__qws_new(const struct fp_workload *w)
{
    const struct fp_quad *q = w->impl;
    return malloc(q->cnt == q->n ? 1 : 2 * (size_t)q->d * sizeof(float));
}

static void fp__qws_free(void *ws)
{
    free(ws);
}

static void fp__qdestroy(struct fp_workload *w)
{
    struct fp_quad *q = w->impl;
    free(q->a);
    free(q->b);
    free(q->n_local);
    free(q);
}

static const struct fp_workload_ops fp__quad_ops = {
    .grad = fp__qgrad,
    .evaluate = fp__qeval,
    .init_params = fp__qinit,
    .ws_new = fp__qws_new,
    .ws_free = fp__qws_free,
    .destroy = fp__qdestroy,
};

int fp_quadratic_create(struct fp_workload **out, const struct fp_scenario *sc,
                        struct fp_error *err)
{
    return fp_quadratic_create_view(out, sc, FP_HOLDS_ALL, 0, err);
}

int fp_quadratic_create_view(struct fp_workload **out, const struct fp_scenario *sc,
                             enum fp_workload_holds holds, uint32_t client, struct fp_error *err)
{
    *out = NULL;
    uint32_t n = sc->clients, d = sc->dim;
    if (n == 0 || d == 0)
        return fp_error_set(err, FP_EINVAL,
                            "quadratic: [data] clients = %u and dim = %u must both be >= 1", n, d);
    /* a and b together: 8·n·d bytes. Refuse above 16 GiB rather than thrash. */
    if ((uint64_t)n * d > (2ull << 30))
        return fp_error_set(err, FP_EINVAL,
                            "quadratic: clients x dim = %llu coefficients is too many (max %llu)",
                            (unsigned long long)n * d, 2ull << 30);
    if (!(sc->quad_noise >= 0) || !isfinite(sc->quad_noise))
        return fp_error_set(err, FP_EINVAL, "quadratic: [data] noise = %g must be >= 0",
                            sc->quad_noise);
    if (holds == FP_HOLDS_CLIENT && client >= n)
        return fp_error_set(err, FP_EINVAL, "quadratic: client %u of %u", client, n);
    struct fp_quad *q = calloc(1, sizeof *q);
    if (!q)
        return fp_error_set(err, FP_ENOMEM, "out of memory for the quadratic");
    q->w.impl = q;
    q->w.ops = &fp__quad_ops;
    q->w.holds = holds;
    q->w.client = holds == FP_HOLDS_CLIENT ? client : 0;
    q->n = n;
    q->d = d;
    /* Client i's coefficients come from its own stream (seed, 0, i, DATA),
     * so one client's alone are the same bits as in the full workload. */
    q->lo = holds == FP_HOLDS_CLIENT ? client : 0;
    /* The test set holds them all while that is small (evaluating from
     * memory is ~100x faster than drawing them again), none above. */
    q->cnt = holds == FP_HOLDS_CLIENT                                             ? 1
             : holds == FP_HOLDS_TEST && 8 * (uint64_t)n * d > FP__QUAD_TEST_HOLD ? 0
                                                                                  : n;
    q->seed = sc->seed;
    q->noise = sc->quad_noise;
    q->a = malloc(((size_t)q->cnt * d + 1) * sizeof *q->a);
    q->b = malloc(((size_t)q->cnt * d + 1) * sizeof *q->b);
    q->n_local = malloc((size_t)n * sizeof *q->n_local);
    if (!q->a || !q->b || !q->n_local) {
        fp__qdestroy(&q->w);
        return fp_error_set(err, FP_ENOMEM, "out of memory for a %u x %u quadratic", q->cnt, d);
    }
    for (uint32_t i = 0; i < n; i++)
        q->n_local[i] = 1;
    for (uint32_t i = q->lo; i < q->lo + q->cnt; i++)
        fp__qdraw(sc->seed, i, d, q->a + (size_t)(i - q->lo) * d, q->b + (size_t)(i - q->lo) * d);
    q->w.d = d;
    q->w.nclients = n;
    q->w.n_local = q->n_local;
    q->w.flops_per_example = 0;
    *out = &q->w;
    return 0;
}
