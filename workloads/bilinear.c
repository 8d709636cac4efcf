/*
 * workloads/bilinear.c — the distributed bilinear saddle-point problem of
 * [BRDRG22] (Beznosikov, Richtarik, Diskin, Ryabinin, Gasnikov, NeurIPS
 * 2022, section 5), a strongly monotone variational inequality:
 *
 *   min_x max_y (1/M) sum_m f_m(x, y),
 *   f_m = x^T A_m y + a_m^T x - b_m^T y + (lambda/2)||x||^2 - (lambda/2)||y||^2,
 *
 * x, y in R^n, z = (x, y), d = 2n. The workload's grad() is device m's
 * operator F_m(z) = (grad_x f_m, -grad_y f_m) = (A_m y + a_m + lambda x,
 * -A_m^T x + b_m + lambda y), and its loss f_m(x, y).
 *
 * Data: a common problem (B, a, b) from the stream (seed, 0, no client,
 * DATA) and device m's deviation (G_m, u_m, v_m) from (seed, 0, m, DATA),
 * each drawn B (n x n row-major), then a, then b, all N(0, 1):
 *   A_m = (B + h G_m) / sqrt(n),  a_m = a + h u_m,  b_m = b + h v_m
 * in float32, h = [data] heterogeneity (0: identical devices). The
 * solution z* of F(z) = (1/M) sum F_m(z) = 0 comes from a linear solve in
 * double (Gaussian elimination with partial pivoting) of
 *   [lambda I, Abar; -Abar^T, lambda I] z* = (-abar, -bbar),
 * and the test metric is the squared distance to it relative to the start:
 * test_loss = ||z - z*||^2 / ||z_0 - z*||^2 (z_0 = 0, init_params), NaN
 * accuracy (docs/workloads.md; ||z*||^2 turns it back into ||z - z*||^2).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

struct fp_bil {
    struct fp_workload w;
    int robust;       /* robust-lsq (below) rather than bilinear */
    uint32_t n, r, M; /* r: A_m's rows (n for bilinear) */
    uint32_t lo, cnt; /* A, a, b hold devices lo .. lo+cnt-1 */
    double lambda;
    float *A, *a, *b; /* [cnt][r][n], [cnt][n], [cnt][r] */
    double *zs;       /* [2n] the solution (not for FP_HOLDS_CLIENT) */
    double zs2;       /* ||z*||^2 */
    uint32_t *n_local;
};

/* rows*n + n + rows normals of one stream into G, u, v. */
static void fp__bil_draw(uint64_t seed, uint64_t who, uint32_t rows, uint32_t n, double *G,
                         double *u, double *v)
{
    fp_rng r;
    fp_rng_seed(&r, seed, 0, who, FP_RNG_DATA);
    for (size_t k = 0; k < (size_t)rows * n; k++)
        G[k] = fp_rng_normal(&r);
    for (uint32_t k = 0; k < n; k++)
        u[k] = fp_rng_normal(&r);
    for (uint32_t k = 0; k < rows; k++)
        v[k] = fp_rng_normal(&r);
}

static uint32_t fp__bil_rows(const struct fp_scenario *sc)
{
    return sc->dataset == FP_DATA_ROBUST_LSQ ? sc->lsq_rows : sc->dim;
}

/* Device m's A_m, a_m, b_m from the common draw (B, a, b) */
static void fp__bil_device(const struct fp_scenario *sc, uint32_t m, const double *B,
                           const double *a0, const double *b0, double *G, double *u, double *v,
                           float *A, float *a, float *b)
{
    const uint32_t n = sc->dim, rows = fp__bil_rows(sc);
    /* bilinear: ||A_m|| ~ 2 at any n; robust-lsq: A_m^T A_m / r ~ I */
    const double h = sc->bil_hetero,
                 s = sc->dataset == FP_DATA_ROBUST_LSQ ? 1 : 1 / sqrt((double)n);
    fp__bil_draw(sc->seed, m, rows, n, G, u, v);
    for (size_t k = 0; k < (size_t)rows * n; k++)
        A[k] = (float)((B[k] + h * G[k]) * s);
    for (uint32_t k = 0; k < n; k++)
        a[k] = (float)(a0[k] + h * u[k]);
    for (uint32_t k = 0; k < rows; k++)
        b[k] = (float)(b0[k] + h * v[k]);
}

static void fp__bil_grad(const struct fp_workload *w, void *ws, uint32_t client, const float *z,
                         uint32_t batch, fp_rng *rng, float *F, double *loss)
{
    const struct fp_bil *q = w->impl;
    (void)ws, (void)batch, (void)rng;
    fp_workload_grad_guard(w, client);
    const uint32_t n = q->n, rows = q->r;
    const size_t i = client - q->lo;
    const float *A = q->A + i * rows * n, *a = q->a + i * n, *b = q->b + i * rows;
    if (q->robust) {
        /* f_m = (1/(2r))||A x - b - y||^2 - (lambda/2)||y||^2: F_x = A^T res / r,
         * F_y = -grad_y f_m = res / r + lambda y, res = A x - b - y */
        const float *x = z, *y = z + n;
        double f = 0, *res = ws;
        for (uint32_t k = 0; k < rows; k++) {
            double t = -(double)b[k] - y[k];
            for (uint32_t c = 0; c < n; c++)
                t += (double)A[(size_t)k * n + c] * x[c];
            res[k] = t;
            f += t * t / (2.0 * rows) - 0.5 * q->lambda * y[k] * y[k];
            F[n + k] = (float)(t / rows + q->lambda * y[k]);
        }
        for (uint32_t c = 0; c < n; c++) {
            double t = 0;
            for (uint32_t k = 0; k < rows; k++)
                t += (double)A[(size_t)k * n + c] * res[k];
            F[c] = (float)(t / rows);
        }
        *loss = f;
        return;
    }
    const float *x = z, *y = z + n;
    const double lam = q->lambda;
    double f = 0;
    for (uint32_t r = 0; r < n; r++) { /* grad_x = A y + a + lambda x */
        double t = 0;
        for (uint32_t c = 0; c < n; c++)
            t += (double)A[(size_t)r * n + c] * y[c];
        f += (double)x[r] * t + (double)a[r] * x[r] + 0.5 * lam * x[r] * x[r];
        F[r] = (float)(t + a[r] + lam * x[r]);
    }
    for (uint32_t c = 0; c < n; c++) { /* -grad_y = -A^T x + b + lambda y */
        double t = 0;
        for (uint32_t r = 0; r < n; r++)
            t += (double)A[(size_t)r * n + c] * x[r];
        f -= (double)b[c] * y[c] + 0.5 * lam * y[c] * y[c];
        F[n + c] = (float)(-t + b[c] + lam * y[c]);
    }
    *loss = f;
}

static void fp__bil_eval(const struct fp_workload *w, void *ws, const float *z, double *loss,
                         double *accuracy)
{
    const struct fp_bil *q = w->impl;
    (void)ws;
    fp_workload_eval_guard(w);
    double s = 0;
    for (uint32_t j = 0; j < q->w.d; j++) {
        const double e = (double)z[j] - q->zs[j];
        s += e * e;
    }
    *loss = q->zs2 > 0 ? s / q->zs2 : s;
    *accuracy = NAN; /* not a classifier: the progress line shows the loss */
}

static void fp__bil_init(const struct fp_workload *w, fp_rng *rng, float *z)
{
    (void)rng;
    memset(z, 0, w->d * sizeof *z); /* z_0 = 0: the metric's reference point */
}

static void *fp__bil_ws_new(const struct fp_workload *w)
{
    const struct fp_bil *q = w->impl;
    return malloc((q->r + 1) * sizeof(double)); /* robust-lsq's residual */
}

static void fp__bil_ws_free(void *ws)
{
    free(ws);
}

static void fp__bil_destroy(struct fp_workload *w)
{
    struct fp_bil *q = w->impl;
    free(q->A), free(q->a), free(q->b), free(q->zs), free(q->n_local);
    free(q);
}

static const struct fp_workload_ops fp__bil_ops = {
    .grad = fp__bil_grad,
    .evaluate = fp__bil_eval,
    .init_params = fp__bil_init,
    .ws_new = fp__bil_ws_new,
    .ws_free = fp__bil_ws_free,
    .destroy = fp__bil_destroy,
};

/* Solves K z = r in place (K: D x D row-major, destroyed) by Gaussian
 * elimination with partial pivoting; 1 if K is singular. */
static int fp__bil_solve(double *K, double *r, uint32_t D)
{
    for (uint32_t c = 0; c < D; c++) {
        uint32_t piv = c;
        for (uint32_t k = c + 1; k < D; k++)
            if (fabs(K[(size_t)k * D + c]) > fabs(K[(size_t)piv * D + c]))
                piv = k;
        if (!(fabs(K[(size_t)piv * D + c]) > 0))
            return 1;
        if (piv != c) {
            for (uint32_t k = 0; k < D; k++) {
                const double t = K[(size_t)c * D + k];
                K[(size_t)c * D + k] = K[(size_t)piv * D + k];
                K[(size_t)piv * D + k] = t;
            }
            const double t = r[c];
            r[c] = r[piv];
            r[piv] = t;
        }
        for (uint32_t k = c + 1; k < D; k++) {
            const double f = K[(size_t)k * D + c] / K[(size_t)c * D + c];
            for (uint32_t j = c; j < D; j++)
                K[(size_t)k * D + j] -= f * K[(size_t)c * D + j];
            r[k] -= f * r[c];
        }
    }
    for (uint32_t c = D; c-- > 0;) {
        double t = r[c];
        for (uint32_t j = c + 1; j < D; j++)
            t -= K[(size_t)c * D + j] * r[j];
        r[c] = t / K[(size_t)c * D + c];
    }
    return 0;
}

/* robust-lsq's mean operator F(z) = K z - rhs, device m's share:
 * x rows: A^T A x / r - A^T y / r - A^T b / r; y rows: A x / r - y / r -
 * b / r (+ lambda y, added once by the caller). rhs into zs, negated as
 * for bilinear: K z* = zs. */
static void fp__robust_add(double *K, double *zs, const float *A, const float *b, uint32_t n,
                           uint32_t rows, uint32_t M)
{
    const uint32_t D = n + rows;
    const double s = 1.0 / ((double)rows * M);
    for (uint32_t k = 0; k < rows; k++) {
        for (uint32_t c = 0; c < n; c++) {
            const double akc = A[(size_t)k * n + c];
            for (uint32_t c2 = 0; c2 < n; c2++)
                K[(size_t)c * D + c2] += akc * A[(size_t)k * n + c2] * s;
            K[(size_t)c * D + n + k] -= akc * s;
            K[(size_t)(n + k) * D + c] += akc * s;
            zs[c] += akc * b[k] * s;
        }
        zs[n + k] += b[k] * s;
    }
}

/* Adds device m's share (1/M) of the affine operator F(z) = K z - zs to
 * (K, zs), without the lambda diagonal (fp__bil_add_diag, once): bilinear
 * K = [lambda I, Abar; -Abar^T, lambda I], zs = -(abar, bbar). With M = 1
 * and the diagonal, K is F_m's Jacobian, whose norm is L_m. */
static void fp__bil_add(double *K, double *zs, int robust, const float *A, const float *a,
                        const float *b, uint32_t n, uint32_t rows, uint32_t M)
{
    const uint32_t D = n + rows;
    if (robust) {
        fp__robust_add(K, zs, A, b, n, rows, M);
        return;
    }
    for (uint32_t r = 0; r < n; r++) {
        for (uint32_t c = 0; c < n; c++) {
            const double t = (double)A[(size_t)r * n + c] / M;
            K[(size_t)r * D + n + c] += t;   /* x rows: Abar y */
            K[(size_t)(n + c) * D + r] -= t; /* y rows: -Abar^T x */
        }
        zs[r] -= (double)a[r] / M;
        zs[n + r] -= (double)b[r] / M;
    }
}

static void fp__bil_add_diag(double *K, int robust, double lambda, uint32_t n, uint32_t rows)
{
    const uint32_t D = n + rows;
    for (uint32_t j = robust ? n : 0; j < D; j++) /* robust-lsq: lambda - 1/r on y */
        K[(size_t)j * D + j] += robust ? lambda - 1.0 / rows : lambda;
}

/* ||K||_2 = sqrt(largest eigenvalue of K^T K), K: D x D (G: scratch). */
static double fp__bil_norm(const double *K, double *G, uint32_t D)
{
    for (uint32_t i = 0; i < D; i++)
        for (uint32_t j = i; j < D; j++) {
            double t = 0;
            for (uint32_t k = 0; k < D; k++)
                t += K[(size_t)k * D + i] * K[(size_t)k * D + j];
            G[(size_t)i * D + j] = G[(size_t)j * D + i] = t;
        }
    return sqrt(fp_lsq_max_eig(G, D));
}

int fp_bilinear_create_view(struct fp_workload **out, const struct fp_scenario *sc,
                            enum fp_workload_holds holds, uint32_t client, struct fp_error *err)
{
    *out = NULL;
    const int robust = sc->dataset == FP_DATA_ROBUST_LSQ;
    const uint32_t n = sc->dim, M = sc->clients, rows = fp__bil_rows(sc), D = n + rows;
    const char *ds = fp_dataset_name(sc->dataset);
    if (n == 0 || M == 0 || rows == 0 || n > 2048 || rows > 2048 ||
        (uint64_t)M * rows * n > (1ull << 26))
        return fp_error_set(err, FP_EINVAL,
                            "%s: [data] dim = %u, rows = %u (1 to 2048) and clients x rows x dim "
                            "= %llu (at most 2^26) do not fit",
                            ds, n, rows, (unsigned long long)M * rows * n);
    if (robust && !(sc->bil_lambda * rows > 1))
        return fp_error_set(err, FP_EINVAL,
                            "robust-lsq: [data] lambda = %g must exceed 1/rows = %g, or the "
                            "adversary's problem is not concave (raise lambda or rows)",
                            sc->bil_lambda, 1.0 / rows);
    if (holds == FP_HOLDS_CLIENT && client >= M)
        return fp_error_set(err, FP_EINVAL, "bilinear: client %u of %u", client, M);
    struct fp_bil *q = calloc(1, sizeof *q);
    double *B = malloc((size_t)rows * n * sizeof *B), *a0 = malloc(n * sizeof *a0),
           *b0 = malloc(rows * sizeof *b0), *G = malloc((size_t)rows * n * sizeof *G),
           *u = malloc(n * sizeof *u), *v = malloc(rows * sizeof *v), *K = NULL;
    float *A1 = malloc((size_t)rows * n * sizeof *A1), *a1 = malloc(n * sizeof *a1),
          *b1 = malloc(rows * sizeof *b1);
    int rc = FP_ENOMEM;
    if (!q || !B || !a0 || !b0 || !G || !u || !v || !A1 || !a1 || !b1)
        goto nomem;
    q->w.impl = q;
    q->w.ops = &fp__bil_ops;
    q->w.holds = holds;
    q->w.client = holds == FP_HOLDS_CLIENT ? client : 0;
    q->robust = robust;
    q->n = n, q->r = rows, q->M = M, q->lambda = sc->bil_lambda;
    q->lo = holds == FP_HOLDS_CLIENT ? client : 0;
    q->cnt = holds == FP_HOLDS_CLIENT ? 1 : holds == FP_HOLDS_TEST ? 0 : M;
    if (!(q->n_local = malloc((size_t)M * sizeof *q->n_local)))
        goto nomem;
    for (uint32_t i = 0; i < M; i++)
        q->n_local[i] = 1;
    fp__bil_draw(sc->seed, FP_RNG_NO_CLIENT, rows, n, B, a0, b0);
    if (q->cnt) {
        q->A = malloc((size_t)q->cnt * rows * n * sizeof *q->A);
        q->a = malloc((size_t)q->cnt * n * sizeof *q->a);
        q->b = malloc((size_t)q->cnt * rows * sizeof *q->b);
        if (!q->A || !q->a || !q->b)
            goto nomem;
        for (uint32_t i = 0; i < q->cnt; i++)
            fp__bil_device(sc, q->lo + i, B, a0, b0, G, u, v, q->A + (size_t)i * rows * n,
                           q->a + (size_t)i * n, q->b + (size_t)i * rows);
    }
    if (holds != FP_HOLDS_CLIENT) {
        /* the mean problem from the float32 data, in double */
        K = calloc((size_t)D * D, sizeof *K);
        q->zs = calloc(D, sizeof *q->zs);
        if (!K || !q->zs)
            goto nomem;
        for (uint32_t m = 0; m < M; m++) {
            const float *A = A1, *a = a1, *b = b1;
            if (q->cnt) {
                A = q->A + (size_t)m * rows * n, a = q->a + (size_t)m * n,
                b = q->b + (size_t)m * rows;
            } else
                fp__bil_device(sc, m, B, a0, b0, G, u, v, A1, a1, b1);
            fp__bil_add(K, q->zs, robust, A, a, b, n, rows, M);
        }
        fp__bil_add_diag(K, robust, sc->bil_lambda, n, rows);
        if (fp__bil_solve(K, q->zs, D)) {
            rc = fp_error_set(err, FP_EINVAL,
                              "%s: the mean operator is singular (raise [data] lambda%s)", ds,
                              robust ? ", or rows to at least dim" : "");
            goto fail;
        }
        for (uint32_t j = 0; j < D; j++)
            q->zs2 += q->zs[j] * q->zs[j];
    }
    q->w.d = D;
    q->w.nclients = M;
    q->w.n_local = q->n_local;
    free(B), free(a0), free(b0), free(G), free(u), free(v), free(K), free(A1), free(a1), free(b1);
    *out = &q->w;
    return 0;
nomem:
    rc = fp_error_set(err, FP_ENOMEM, "out of memory for the %s workload (%u x %u x %u)", ds, M,
                      rows, n);
fail:
    if (q)
        fp__bil_destroy(&q->w);
    free(B), free(a0), free(b0), free(G), free(u), free(v), free(K), free(A1), free(a1), free(b1);
    return rc;
}

/* F and every F_m are affine, so their Lipschitz constants are the
 * spectral norms of their (constant) Jacobians: L = ||K||, L_m = ||K_m||
 * with K_m built from device m's float32 data as the solve builds K
 * (docs/algorithms.md derives the closed forms). Device by device, so a
 * client can afford it: O(M D^3) time, 3 D^2 doubles. */
int fp_bilinear_lipschitz(const struct fp_scenario *sc, double *L, double *Lt, struct fp_error *err)
{
    const int robust = sc->dataset == FP_DATA_ROBUST_LSQ;
    const uint32_t n = sc->dim, M = sc->clients, rows = fp__bil_rows(sc), D = n + rows;
    if (n == 0 || M == 0 || n > 2048 || rows == 0 || rows > 2048)
        return fp_error_set(err, FP_EINVAL, "%s: [data] dim = %u and rows = %u must be 1 to 2048",
                            fp_dataset_name(sc->dataset), n, rows);
    const size_t DD = (size_t)D * D;
    double *B = malloc((size_t)rows * n * sizeof *B), *a0 = malloc(n * sizeof *a0),
           *b0 = malloc(rows * sizeof *b0), *G = malloc((size_t)rows * n * sizeof *G),
           *u = malloc(n * sizeof *u), *v = malloc(rows * sizeof *v), *K = calloc(DD, sizeof *K),
           *Km = malloc(DD * sizeof *Km), *S = malloc(DD * sizeof *S), *zs = calloc(D, sizeof *zs);
    float *A = malloc((size_t)rows * n * sizeof *A), *a = malloc(n * sizeof *a),
          *b = malloc(rows * sizeof *b);
    int rc = 0;
    if (!B || !a0 || !b0 || !G || !u || !v || !K || !Km || !S || !zs || !A || !a || !b) {
        rc = fp_error_set(err, FP_ENOMEM, "out of memory for the %s step (%u x %u)",
                          fp_dataset_name(sc->dataset), D, D);
        goto out;
    }
    fp__bil_draw(sc->seed, FP_RNG_NO_CLIENT, rows, n, B, a0, b0);
    double s2 = 0;
    for (uint32_t m = 0; m < M; m++) {
        fp__bil_device(sc, m, B, a0, b0, G, u, v, A, a, b);
        fp__bil_add(K, zs, robust, A, a, b, n, rows, M);
        memset(Km, 0, DD * sizeof *Km);
        fp__bil_add(Km, zs, robust, A, a, b, n, rows, 1);
        fp__bil_add_diag(Km, robust, sc->bil_lambda, n, rows);
        const double Lm = fp__bil_norm(Km, S, D);
        s2 += Lm * Lm;
    }
    fp__bil_add_diag(K, robust, sc->bil_lambda, n, rows);
    *L = fp__bil_norm(K, S, D);
    *Lt = sqrt(s2 / M);
out:
    free(B), free(a0), free(b0), free(G), free(u), free(v), free(K), free(Km), free(S), free(zs);
    free(A), free(a), free(b);
    return rc;
}
