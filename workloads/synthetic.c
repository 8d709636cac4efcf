/*
 * workloads/synthetic.c — synthetic(alpha, beta) of LEAF / FedProx
 * (Shamir et al. 2014 as used by Li et al., "Federated Optimization in
 * Heterogeneous Networks", 2020, section 5.1 and their generator script).
 *
 * Client k, from its own stream (seed, 0, k, DATA), in this order:
 *   n_k = min(floor(lognormal(4, 2)) + 50, FP__SYNTH_MAX)   samples
 *   u_k ~ N(0, alpha), B_k ~ N(0, beta)      (variances: stddev = sqrt)
 *   W_k[c][j] ~ N(u_k, 1) row by row, b_k[c] ~ N(u_k, 1)
 *   v_k[j] ~ N(B_k, 1)
 *   each sample: x_j ~ N(v_k[j], j^-1.2) for j = 1..dim, y = argmax(W_k x + b_k)
 * alpha controls how much the clients' models differ, beta how much their
 * inputs do. The first floor(0.8 n_k) samples are client k's training data,
 * the rest go to the shared test set (FedProx keeps 90/10; we follow the
 * fedpress spec). Keying by client makes client k's data independent of N.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#include "../core/rng.h"

#define FP__SYNTH_MAX        10000u       /* samples per client, after +50 */
#define FP__SYNTH_MAX_FLOATS (1ull << 31) /* 8 GiB of features in all */

static uint32_t fp__synth_count(fp_rng *r)
{
    double s = floor(exp(4.0 + 2.0 * fp_rng_normal(r))) + 50.0;
    return s >= FP__SYNTH_MAX ? FP__SYNTH_MAX : (uint32_t)s;
}

/* Pass 1: sizes only (n_k is each stream's first draw), and the caps every
 * constructor applies alike, so that all three refuse the same scenarios.
 * tr[k] (if not NULL) = client k's training count. */
static int fp__synth_sizes(const struct fp_scenario *sc, uint32_t *tr, uint64_t *ntrain,
                           uint64_t *ntest, struct fp_error *err)
{
    uint32_t nc = sc->clients, dim = sc->dim;
    if (nc == 0 || dim == 0 || dim > (1u << 20))
        return fp_error_set(err, FP_EINVAL,
                            "synthetic: [data] clients = %u must be >= 1 and dim = %u between 1 "
                            "and %u",
                            nc, dim, 1u << 20);
    if (!(sc->synth_alpha >= 0) || !(sc->synth_beta >= 0) || !isfinite(sc->synth_alpha) ||
        !isfinite(sc->synth_beta))
        return fp_error_set(err, FP_EINVAL,
                            "synthetic: [data] alpha = %g and beta = %g must be >= 0 (variances)",
                            sc->synth_alpha, sc->synth_beta);
    *ntrain = *ntest = 0;
    for (uint32_t k = 0; k < nc; k++) {
        fp_rng r;
        fp_rng_seed(&r, sc->seed, 0, k, FP_RNG_DATA);
        uint32_t nk = fp__synth_count(&r), t = nk * 4u / 5u; /* nk <= 10000: no overflow */
        if (tr)
            tr[k] = t;
        *ntrain += t;
        *ntest += nk - t;
    }
    if ((*ntrain + *ntest) * dim > FP__SYNTH_MAX_FLOATS || *ntrain > UINT32_MAX - 1)
        return fp_error_set(err, FP_EINVAL,
                            "synthetic: %u clients x dim %u make %llu features, too many", nc, dim,
                            (unsigned long long)((*ntrain + *ntest) * dim));
    return 0;
}

/* Client k's whole stream, in the documented order. Its training samples go
 * to xtr/ytr and its test samples to xte/yte; a NULL destination means
 * "not kept": a training sample is still drawn (into scratch, the stream
 * must advance through it) but not labelled, and with no test destination
 * the stream stops after the training samples. wk: [10*dim + 10 + 2*dim]
 * scratch whose last dim floats are the stddevs sd[j]; scratch: [dim].
 * Returns n_k, the client's sample count. */
static uint32_t fp__synth_client(const struct fp_scenario *sc, uint32_t k, float *wk,
                                 float *scratch, float *xtr, uint8_t *ytr, float *xte, uint8_t *yte)
{
    const uint32_t dim = sc->dim;
    float *bk = wk + (size_t)FP_NCLASSES * dim, *vk = bk + FP_NCLASSES, *sd = vk + dim;
    fp_rng r;
    fp_rng_seed(&r, sc->seed, 0, k, FP_RNG_DATA);
    uint32_t nk = fp__synth_count(&r), tr = nk * 4u / 5u; /* nk <= 10000: no overflow */
    double u = sqrt(sc->synth_alpha) * fp_rng_normal(&r);
    double bmean = sqrt(sc->synth_beta) * fp_rng_normal(&r);
    for (size_t i = 0; i < (size_t)FP_NCLASSES * dim; i++)
        wk[i] = (float)(u + fp_rng_normal(&r));
    for (uint32_t c = 0; c < FP_NCLASSES; c++)
        bk[c] = (float)(u + fp_rng_normal(&r));
    for (uint32_t j = 0; j < dim; j++)
        vk[j] = (float)(bmean + fp_rng_normal(&r));
    uint32_t end = xte ? nk : tr;
    for (uint32_t s = 0; s < end; s++) {
        int is_train = s < tr;
        float *x =
            is_train ? (xtr ? xtr + (size_t)s * dim : scratch) : xte + (size_t)(s - tr) * dim;
        for (uint32_t j = 0; j < dim; j++)
            x[j] = (float)(vk[j] + sd[j] * fp_rng_normal(&r));
        if (is_train && !xtr)
            continue; /* drawn only to advance the stream */
        uint8_t best = 0;
        double bestv = -INFINITY;
        for (uint32_t c = 0; c < FP_NCLASSES; c++) {
            const float *wc = wk + (size_t)c * dim;
            double z = bk[c];
            for (uint32_t j = 0; j < dim; j++)
                z += (double)wc[j] * x[j];
            if (z > bestv) { /* ties go to the lower class */
                bestv = z;
                best = (uint8_t)c;
            }
        }
        if (is_train)
            ytr[s] = best;
        else
            yte[s - tr] = best;
    }
    return nk;
}

/* Client scratch: W_k, b_k, v_k, the stddevs, and one sample. */
static float *fp__synth_scratch(uint32_t dim)
{
    float *wk = malloc(((size_t)FP_NCLASSES * dim + FP_NCLASSES + 3 * (size_t)dim) * sizeof *wk);
    if (wk) {
        float *sd = wk + (size_t)FP_NCLASSES * dim + FP_NCLASSES + dim;
        for (uint32_t j = 0; j < dim; j++)
            sd[j] = (float)pow(j + 1.0, -0.6); /* stddev of x_j: variance (j)^-1.2, j from 1 */
    }
    return wk;
}

int fp_synthetic_make(struct fp_dataset *train, struct fp_dataset *test, struct fp_partition *part,
                      const struct fp_scenario *sc, struct fp_error *err)
{
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    memset(part, 0, sizeof *part);
    uint32_t nc = sc->clients, dim = sc->dim;
    uint64_t ntrain, ntest;
    int rc = fp__synth_sizes(sc, NULL, &ntrain, &ntest, err);
    if (rc)
        return rc;
    float *wk = fp__synth_scratch(dim);
    train->x = malloc(ntrain * dim * sizeof(float));
    train->y = malloc(ntrain);
    test->x = malloc(ntest * dim * sizeof(float));
    test->y = malloc(ntest);
    part->offsets = malloc(((size_t)nc + 1) * sizeof *part->offsets);
    part->indices = malloc(ntrain * sizeof *part->indices);
    if (!wk || !train->x || !train->y || !test->x || !test->y || !part->offsets || !part->indices) {
        rc = fp_error_set(err, FP_ENOMEM, "synthetic: out of memory for %llu examples",
                          (unsigned long long)(ntrain + ntest));
        goto fail;
    }
    float *scratch = wk + (size_t)FP_NCLASSES * dim + FP_NCLASSES + 2 * (size_t)dim;
    size_t itr = 0, ite = 0;
    for (uint32_t k = 0; k < nc; k++) {
        uint32_t nk = fp__synth_client(sc, k, wk, scratch, train->x + itr * dim, train->y + itr,
                                       test->x + ite * dim, test->y + ite);
        uint32_t tr = nk * 4u / 5u;
        part->offsets[k] = (uint32_t)itr;
        for (uint32_t s = 0; s < tr; s++, itr++)
            part->indices[itr] = (uint32_t)itr;
        ite += nk - tr;
    }
    part->offsets[nc] = (uint32_t)itr;
    part->nclients = nc;
    train->n = ntrain;
    test->n = ntest;
    train->dim = test->dim = dim;
    train->nclasses = test->nclasses = FP_NCLASSES;
    free(wk);
    return 0;
fail:
    free(wk);
    fp_dataset_free(train);
    fp_dataset_free(test);
    fp_partition_free(part);
    return rc;
}

int fp_synthetic_make_view(struct fp_dataset *train, struct fp_dataset *test, uint32_t **sizes,
                           const struct fp_scenario *sc, enum fp_workload_holds holds,
                           uint32_t client, struct fp_error *err)
{
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    *sizes = NULL;
    uint32_t nc = sc->clients, dim = sc->dim;
    uint64_t ntrain, ntest;
    uint32_t *tr = malloc((nc ? nc : 1) * sizeof *tr);
    if (!tr)
        return fp_error_set(err, FP_ENOMEM, "synthetic: out of memory for %u clients", nc);
    float *wk = NULL;
    int rc = fp__synth_sizes(sc, tr, &ntrain, &ntest, err);
    if (rc)
        goto fail;
    if (holds == FP_HOLDS_CLIENT && client >= nc) {
        rc = fp_error_set(err, FP_EINVAL, "synthetic: client %u of %u", client, nc);
        goto fail;
    }
    size_t rows = holds == FP_HOLDS_CLIENT ? tr[client] : (size_t)ntest;
    struct fp_dataset *ds = holds == FP_HOLDS_CLIENT ? train : test;
    wk = fp__synth_scratch(dim);
    ds->x = malloc((rows ? rows : 1) * dim * sizeof(float));
    ds->y = malloc(rows ? rows : 1);
    if (!wk || !ds->x || !ds->y) {
        rc = fp_error_set(err, FP_ENOMEM, "synthetic: out of memory for %zu examples", rows);
        goto fail;
    }
    float *scratch = wk + (size_t)FP_NCLASSES * dim + FP_NCLASSES + 2 * (size_t)dim;
    if (holds == FP_HOLDS_CLIENT) {
        /* Client k's stream is keyed by k alone: no other client's draws
         * come before it, so generating it alone gives the same bits. */
        fp__synth_client(sc, client, wk, scratch, ds->x, ds->y, NULL, NULL);
    } else {
        size_t ite = 0;
        for (uint32_t k = 0; k < nc; k++) {
            ite +=
                fp__synth_client(sc, k, wk, scratch, NULL, NULL, ds->x + ite * dim, ds->y + ite) -
                tr[k];
        }
    }
    ds->n = rows;
    ds->dim = dim;
    ds->nclasses = FP_NCLASSES;
    free(wk);
    *sizes = tr;
    return 0;
fail:
    free(wk);
    free(tr);
    fp_dataset_free(train);
    fp_dataset_free(test);
    return rc;
}
