/*
 * workloads/lsq.c — distributed least squares with unequal smoothness.
 *
 *   f_i(x) = (1/(2m)) ||A_i x - b_i||^2,   f = (1/N) sum_i f_i,
 *
 * A_i is m x d, b_i has m entries. Client i draws, from its own stream
 * (seed, 0, i, DATA), G_i (m x d, row-major) and then b_i, all N(0, 1),
 * and scales A_i = sqrt(L_i / lambda_i) G_i, where lambda_i is the largest
 * eigenvalue of G_i^T G_i / m (cyclic Jacobi in double, exact to rounding)
 * and L_i = smooth_ratio^(i / (N - 1)) is the smoothness constant the
 * scenario asks for: client 0 has L_0 = 1, client N - 1 has L = smooth_ratio,
 * log-uniformly spaced in between (fp_lsq_smoothness). So the clients'
 * constants are very unequal on purpose (EF21-W's setting: L_QM >> L_AM)
 * and known in closed form, while the data stay dense and heterogeneous.
 *
 * The test objective is the optimality gap f(x) - f(x*) =
 * (1/2)(x - x*)^T H (x - x*), H = (1/N) sum_i A_i^T A_i / m (in double from
 * the float32 A_i), with x* from a Cholesky solve of H x* = (1/N) sum_i
 * A_i^T b_i / m: no cancellation near the optimum.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

struct fp_lsq {
    struct fp_workload w;
    uint32_t n, d, m;
    uint32_t lo, cnt; /* A and b hold clients lo .. lo+cnt-1 (none for FP_HOLDS_TEST) */
    float *A, *b;     /* [cnt][m][d], [cnt][m] */
    double *H, *xs;   /* [d][d], [d]: the test objective (not for FP_HOLDS_CLIENT) */
    uint32_t *n_local;
};

struct fp_lsq_ws {
    uint32_t *idx; /* [m] the minibatch order */
    double *acc;   /* [d] */
};

double fp_lsq_law(double ratio, uint32_t N, uint32_t i)
{
    return N <= 1 ? 1.0 : pow(ratio, (double)i / (double)(N - 1));
}

double fp_lsq_smoothness(const struct fp_scenario *sc, uint32_t client)
{
    return fp_lsq_law(sc->lsq_ratio, sc->clients, client);
}

/* Largest eigenvalue of the symmetric d x d matrix M (destroyed), by
 * cyclic Jacobi rotations (Golub & Van Loan, Alg. 8.5.3): deterministic and
 * accurate to rounding, where a power iteration stalls on a small gap. */
double fp_lsq_max_eig(double *M, uint32_t d)
{
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, diag = 0;
        for (uint32_t p = 0; p < d; p++) {
            diag += M[(size_t)p * d + p] * M[(size_t)p * d + p];
            for (uint32_t q = p + 1; q < d; q++)
                off += M[(size_t)p * d + q] * M[(size_t)p * d + q];
        }
        if (off <= 1e-30 * diag)
            break;
        for (uint32_t p = 0; p < d; p++)
            for (uint32_t q = p + 1; q < d; q++) {
                const double apq = M[(size_t)p * d + q];
                if (apq == 0)
                    continue;
                const double app = M[(size_t)p * d + p], aqq = M[(size_t)q * d + q];
                const double tau = (aqq - app) / (2 * apq);
                const double t = (tau >= 0 ? 1 : -1) / (fabs(tau) + sqrt(1 + tau * tau));
                const double c = 1 / sqrt(1 + t * t), s = t * c;
                for (uint32_t k = 0; k < d; k++) { /* columns p, q */
                    const double mkp = M[(size_t)k * d + p], mkq = M[(size_t)k * d + q];
                    M[(size_t)k * d + p] = c * mkp - s * mkq;
                    M[(size_t)k * d + q] = s * mkp + c * mkq;
                }
                for (uint32_t k = 0; k < d; k++) { /* rows p, q */
                    const double mpk = M[(size_t)p * d + k], mqk = M[(size_t)q * d + k];
                    M[(size_t)p * d + k] = c * mpk - s * mqk;
                    M[(size_t)q * d + k] = s * mpk + c * mqk;
                }
            }
    }
    double mx = M[0];
    for (uint32_t p = 1; p < d; p++)
        mx = fmax(mx, M[(size_t)p * d + p]);
    return mx;
}

/* M += scale * A^T A for the m x d float matrix A. */
static void fp__gram_add(double *M, const float *A, uint32_t m, uint32_t d, double scale)
{
    for (uint32_t r = 0; r < m; r++) {
        const float *a = A + (size_t)r * d;
        for (uint32_t p = 0; p < d; p++)
            for (uint32_t q = 0; q < d; q++)
                M[(size_t)p * d + q] += scale * a[p] * a[q];
    }
}

/* Client i's A_i and b_i, as documented above. G is m x d double scratch. */
static int fp__make_client(const struct fp_scenario *sc, uint32_t i, double *G, double *M, float *A,
                           float *b)
{
    const uint32_t m = sc->lsq_rows, d = sc->dim;
    fp_rng r;
    fp_rng_seed(&r, sc->seed, 0, i, FP_RNG_DATA);
    for (size_t j = 0; j < (size_t)m * d; j++)
        G[j] = fp_rng_normal(&r);
    for (uint32_t j = 0; j < m; j++)
        b[j] = (float)fp_rng_normal(&r);
    memset(M, 0, (size_t)d * d * sizeof *M);
    for (uint32_t k = 0; k < m; k++)
        for (uint32_t p = 0; p < d; p++)
            for (uint32_t q = 0; q < d; q++)
                M[(size_t)p * d + q] += G[(size_t)k * d + p] * G[(size_t)k * d + q] / m;
    const double lam = fp_lsq_max_eig(M, d);
    if (!(lam > 0))
        return FP_EINVAL;
    const double s = sqrt(fp_lsq_smoothness(sc, i) / lam);
    for (size_t j = 0; j < (size_t)m * d; j++)
        A[j] = (float)(s * G[j]);
    return 0;
}

/* In-place Cholesky solve of H x = r (H destroyed); FP_EINVAL if H is not
 * positive definite. */
static int fp__chol_solve(double *H, double *x, uint32_t d)
{
    for (uint32_t j = 0; j < d; j++) {
        double s = H[(size_t)j * d + j];
        for (uint32_t k = 0; k < j; k++)
            s -= H[(size_t)j * d + k] * H[(size_t)j * d + k];
        if (!(s > 0))
            return FP_EINVAL;
        H[(size_t)j * d + j] = sqrt(s);
        for (uint32_t i = j + 1; i < d; i++) {
            double t = H[(size_t)i * d + j];
            for (uint32_t k = 0; k < j; k++)
                t -= H[(size_t)i * d + k] * H[(size_t)j * d + k];
            H[(size_t)i * d + j] = t / H[(size_t)j * d + j];
        }
    }
    for (uint32_t i = 0; i < d; i++) { /* L y = r */
        double t = x[i];
        for (uint32_t k = 0; k < i; k++)
            t -= H[(size_t)i * d + k] * x[k];
        x[i] = t / H[(size_t)i * d + i];
    }
    for (uint32_t i = d; i-- > 0;) { /* L^T x = y */
        double t = x[i];
        for (uint32_t k = i + 1; k < d; k++)
            t -= H[(size_t)k * d + i] * x[k];
        x[i] = t / H[(size_t)i * d + i];
    }
    return 0;
}

static void fp__lgrad(const struct fp_workload *w, void *wsv, uint32_t client, const float *x,
                      uint32_t batch, fp_rng *rng, float *g, double *loss)
{
    const struct fp_lsq *q = w->impl;
    struct fp_lsq_ws *ws = wsv;
    fp_workload_grad_guard(w, client);
    const uint32_t m = q->m, d = q->d;
    const float *A = q->A + (size_t)(client - q->lo) * m * d,
                *b = q->b + (size_t)(client - q->lo) * m;
    uint32_t B = batch >= m ? m : batch;
    for (uint32_t r = 0; r < m; r++)
        ws->idx[r] = r;
    if (B < m) /* B rows without replacement: a partial Fisher-Yates */
        for (uint32_t r = 0; r < B; r++) {
            uint32_t j = r + (uint32_t)fp_rng_below(rng, m - r), t = ws->idx[r];
            ws->idx[r] = ws->idx[j];
            ws->idx[j] = t;
        }
    memset(ws->acc, 0, d * sizeof *ws->acc);
    double l = 0;
    for (uint32_t k = 0; k < B; k++) {
        const float *a = A + (size_t)ws->idx[k] * d;
        double res = -(double)b[ws->idx[k]];
        for (uint32_t j = 0; j < d; j++)
            res += (double)a[j] * x[j];
        l += 0.5 * res * res;
        for (uint32_t j = 0; j < d; j++)
            ws->acc[j] += res * a[j];
    }
    for (uint32_t j = 0; j < d; j++)
        g[j] = (float)(ws->acc[j] / B);
    *loss = l / B;
}

static void fp__leval(const struct fp_workload *w, void *ws, const float *x, double *loss,
                      double *accuracy)
{
    const struct fp_lsq *q = w->impl;
    (void)ws;
    fp_workload_eval_guard(w);
    const uint32_t d = q->d;
    double s = 0;
    for (uint32_t p = 0; p < d; p++) {
        double t = 0;
        for (uint32_t k = 0; k < d; k++)
            t += q->H[(size_t)p * d + k] * ((double)x[k] - q->xs[k]);
        s += ((double)x[p] - q->xs[p]) * t;
    }
    *loss = 0.5 * s;
    *accuracy = NAN;
}

static void fp__linit(const struct fp_workload *w, fp_rng *rng, float *x)
{
    (void)rng;
    memset(x, 0, w->d * sizeof *x);
}

static void fp__lws_free(void *wsv)
{
    struct fp_lsq_ws *ws = wsv;
    if (ws) {
        free(ws->idx);
        free(ws->acc);
    }
    free(ws);
}

static void *fp__lws_new(const struct fp_workload *w)
{
    const struct fp_lsq *q = w->impl;
    struct fp_lsq_ws *ws = calloc(1, sizeof *ws);
    if (ws && (!(ws->idx = malloc(q->m * sizeof *ws->idx)) ||
               !(ws->acc = malloc(q->d * sizeof *ws->acc)))) {
        fp__lws_free(ws);
        return NULL;
    }
    return ws;
}

static void fp__ldestroy(struct fp_workload *w)
{
    struct fp_lsq *q = w->impl;
    free(q->A);
    free(q->b);
    free(q->H);
    free(q->xs);
    free(q->n_local);
    free(q);
}

static const struct fp_workload_ops fp__lsq_ops = {
    .grad = fp__lgrad,
    .evaluate = fp__leval,
    .init_params = fp__linit,
    .ws_new = fp__lws_new,
    .ws_free = fp__lws_free,
    .destroy = fp__ldestroy,
};

/* H, x* from every client's data, generated one client at a time. */
static int fp__test_objective(struct fp_lsq *q, const struct fp_scenario *sc, double *G, double *M,
                              float *A, float *b, struct fp_error *err)
{
    const uint32_t n = q->n, m = q->m, d = q->d;
    for (uint32_t i = 0; i < n; i++) {
        float *Ai = A, *bi = b;
        if (q->A) { /* held: generated already */
            Ai = q->A + (size_t)i * m * d;
            bi = q->b + (size_t)i * m;
        } else if (fp__make_client(sc, i, G, M, Ai, bi))
            return fp_error_set(err, FP_EINVAL, "lsq: client %u's data are all zero", i);
        fp__gram_add(q->H, Ai, m, d, 1.0 / ((double)n * m));
        for (uint32_t r = 0; r < m; r++)
            for (uint32_t j = 0; j < d; j++)
                q->xs[j] += (double)Ai[(size_t)r * d + j] * bi[r] / ((double)n * m);
    }
    memcpy(M, q->H, (size_t)d * d * sizeof *M);
    if (fp__chol_solve(M, q->xs, d))
        return fp_error_set(err, FP_EINVAL,
                            "lsq: (1/N) sum A_i^T A_i / m is singular: clients x rows = %llu must "
                            "be at least dim = %u (raise [data] rows)",
                            (unsigned long long)n * m, d);
    return 0;
}

int fp_lsq_create_view(struct fp_workload **out, const struct fp_scenario *sc,
                       enum fp_workload_holds holds, uint32_t client, struct fp_error *err)
{
    *out = NULL;
    const uint32_t n = sc->clients, d = sc->dim, m = sc->lsq_rows;
    if (n == 0 || d == 0 || m == 0)
        return fp_error_set(err, FP_EINVAL,
                            "lsq: [data] clients = %u, dim = %u and rows = %u must be >= 1", n, d,
                            m);
    if ((uint64_t)n * m * d > (1ull << 28) || (uint64_t)d * d > (1ull << 24))
        return fp_error_set(err, FP_EINVAL,
                            "lsq: clients x rows x dim = %llu (max 2^28) or dim = %u (max 4096) "
                            "is too large",
                            (unsigned long long)n * m * d, d);
    if (holds == FP_HOLDS_CLIENT && client >= n)
        return fp_error_set(err, FP_EINVAL, "lsq: client %u of %u", client, n);
    struct fp_lsq *q = calloc(1, sizeof *q);
    double *G = malloc((size_t)m * d * sizeof *G), *M = malloc((size_t)d * d * sizeof *M);
    float *A1 = malloc((size_t)m * d * sizeof *A1), *b1 = malloc(m * sizeof *b1);
    int rc = FP_ENOMEM;
    if (!q || !G || !M || !A1 || !b1)
        goto nomem;
    q->w.impl = q;
    q->w.ops = &fp__lsq_ops;
    q->w.holds = holds;
    q->w.client = holds == FP_HOLDS_CLIENT ? client : 0;
    q->n = n, q->d = d, q->m = m;
    q->lo = holds == FP_HOLDS_CLIENT ? client : 0;
    q->cnt = holds == FP_HOLDS_CLIENT ? 1 : holds == FP_HOLDS_TEST ? 0 : n;
    q->n_local = malloc((size_t)n * sizeof *q->n_local);
    if (!q->n_local)
        goto nomem;
    for (uint32_t i = 0; i < n; i++)
        q->n_local[i] = m;
    if (q->cnt) {
        q->A = malloc((size_t)q->cnt * m * d * sizeof *q->A);
        q->b = malloc((size_t)q->cnt * m * sizeof *q->b);
        if (!q->A || !q->b)
            goto nomem;
        for (uint32_t i = q->lo; i < q->lo + q->cnt; i++)
            if (fp__make_client(sc, i, G, M, q->A + (size_t)(i - q->lo) * m * d,
                                q->b + (size_t)(i - q->lo) * m)) {
                rc = fp_error_set(err, FP_EINVAL, "lsq: client %u's data are all zero", i);
                goto fail;
            }
    }
    if (holds != FP_HOLDS_CLIENT) {
        q->H = calloc((size_t)d * d, sizeof *q->H);
        q->xs = calloc(d, sizeof *q->xs);
        if (!q->H || !q->xs)
            goto nomem;
        if ((rc = fp__test_objective(q, sc, G, M, A1, b1, err)))
            goto fail;
    }
    q->w.d = d;
    q->w.nclients = n;
    q->w.n_local = q->n_local;
    free(G), free(M), free(A1), free(b1);
    *out = &q->w;
    return 0;
nomem:
    rc = fp_error_set(err, FP_ENOMEM, "out of memory for the lsq workload (%u x %u x %u)", n, m, d);
fail:
    if (q)
        fp__ldestroy(&q->w);
    free(G), free(M), free(A1), free(b1);
    return rc;
}

int fp_lsq_smoothness_of_f(const struct fp_scenario *sc, double *L, struct fp_error *err)
{
    struct fp_workload *w;
    int rc = fp_lsq_create_view(&w, sc, FP_HOLDS_TEST, 0, err);
    if (rc)
        return rc;
    const struct fp_lsq *q = w->impl;
    *L = fp_lsq_max_eig(q->H, q->d); /* H is not needed after this */
    fp_workload_free(w);
    return 0;
}

double fp_lsq_client_L(const struct fp_workload *w, uint32_t client)
{
    const struct fp_lsq *q = w->impl;
    const uint32_t m = q->m, d = q->d;
    double *M = calloc((size_t)d * d, sizeof *M);
    if (!M || client < q->lo || client >= q->lo + q->cnt) {
        free(M);
        return NAN;
    }
    fp__gram_add(M, q->A + (size_t)(client - q->lo) * m * d, m, d, 1.0 / m);
    const double L = fp_lsq_max_eig(M, d);
    free(M);
    return L;
}
