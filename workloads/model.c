/*
 * workloads/model.c — logistic regression and a one-hidden-layer ReLU MLP
 * with softmax cross-entropy, over a partitioned dataset.
 *
 * Where the time goes (DESIGN.md "Performance"): an MLP step is two large
 * GEMMs, the forward X·W1ᵀ (B×in·in×h) and the weight gradient dZᵀ·X
 * (h×B·B×in); everything else is O(B·h). So grad() allocates nothing: the
 * minibatch rows are gathered into the per-thread workspace, bias+ReLU is
 * one branch-free pass, the ReLU mask and the hidden bias gradient share
 * another, and the input gradient of the first layer is never formed.
 *
 * The workload owns its datasets and partition; a workspace belongs to one
 * thread, and nothing in it survives from one call to the next (the
 * permutation buffer is refilled each call), so results never depend on
 * which client a workspace served before.
 */
#include "model.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct fp_classif {
    struct fp_workload w; /* first: w.impl points back here */
    enum fp_model_kind kind;
    uint32_t in, hidden, ncls; /* hidden = 0 for logreg */
    struct fp_dataset train, test;
    struct fp_partition part;
    uint32_t *n_local;
    uint32_t max_local;
    size_t chunk; /* rows per GEMM pass, see FP_MODEL_*_CHUNK */
};

struct fp_model_ws {
    size_t rows;
    float *x;       /* [rows][in]   gathered minibatch */
    float *a;       /* [rows][h]    hidden activations after ReLU */
    float *da;      /* [rows][h]    gradient w.r.t. the hidden pre-activations */
    float *lg;      /* [rows][C]    logits, then the gradient w.r.t. them */
    uint32_t *perm; /* [max_local]  partial Fisher–Yates scratch */
    uint32_t *ids;  /* [rows]       example ids of the current chunk */
    void *mem;
};

size_t fp_model_nparams(enum fp_model_kind kind, size_t in, uint32_t hidden, uint32_t nclasses)
{
    switch (kind) {
    case FP_MODEL_LOGREG: return (size_t)nclasses * in + nclasses;
    case FP_MODEL_MLP: return (size_t)hidden * in + hidden + (size_t)nclasses * hidden + nclasses;
    default: return 0;
    }
}

/* ---- workspace ---------------------------------------------------------- */

static size_t fp__round16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

static void *fp__ws_new(const struct fp_workload *w)
{
    const struct fp_classif *m = w->impl;
    struct fp_model_ws *ws = calloc(1, sizeof *ws);
    if (!ws)
        return NULL;
    size_t r = m->chunk, h = m->hidden;
    size_t nx = fp__round16(r * m->in), na = fp__round16(r * h), nl = fp__round16(r * m->ncls);
    size_t np = fp__round16(m->max_local);
    size_t bytes = (nx + 2 * na + nl) * sizeof(float) + (np + fp__round16(r)) * sizeof(uint32_t);
    /* 64-byte alignment: every sub-array starts on a cache line (16 floats). */
    ws->mem = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!ws->mem) {
        free(ws);
        return NULL;
    }
    float *f = ws->mem;
    ws->rows = r;
    ws->x = f;
    ws->a = f + nx;
    ws->da = ws->a + na;
    ws->lg = ws->da + na;
    ws->perm = (uint32_t *)(ws->lg + nl);
    ws->ids = ws->perm + np;
    return ws;
}

static void fp__ws_free(void *p)
{
    struct fp_model_ws *ws = p;
    if (!ws)
        return;
    free(ws->mem);
    free(ws);
}

/* ---- kernels ------------------------------------------------------------ */

/* The two O(B·h) passes. Written branch-free over blocks of 8 with restrict
 * pointers so that GCC's -O2 (very cheap vectoriser: no loop versioning)
 * still turns the block into SIMD: a data-dependent branch on the sign
 * mispredicts about half the time and cost more than the pass itself. */
#define FP__BLK 8

static inline float fp__pos(float v)
{
    return v > 0.0f ? v : 0.0f;
}

/* a[r][j] = max(a[r][j] + b[j], 0) */
static void fp__bias_relu(float *restrict a, const float *restrict b, size_t rows, size_t h)
{
    for (size_t r = 0; r < rows; r++, a += h) {
        size_t j = 0;
        for (; j + FP__BLK <= h; j += FP__BLK)
            for (size_t k = 0; k < FP__BLK; k++)
                a[j + k] = fp__pos(a[j + k] + b[j + k]);
        for (; j < h; j++)
            a[j] = fp__pos(a[j] + b[j]);
    }
}

/* dz[r][j] = a[r][j] > 0 ? dz[r][j] : 0 (a is post-ReLU, so a > 0 exactly
 * where the pre-activation was); gb[j] += Σ_r dz[r][j]. */
static void fp__relu_mask(float *restrict dz, float *restrict gb, const float *restrict a,
                          size_t rows, size_t h)
{
    for (size_t r = 0; r < rows; r++, dz += h, a += h) {
        size_t j = 0;
        for (; j + FP__BLK <= h; j += FP__BLK)
            for (size_t k = 0; k < FP__BLK; k++) {
                float v = a[j + k] > 0.0f ? dz[j + k] : 0.0f;
                dz[j + k] = v;
                gb[j + k] += v;
            }
        for (; j < h; j++) {
            float v = a[j] > 0.0f ? dz[j] : 0.0f;
            dz[j] = v;
            gb[j] += v;
        }
    }
}

/* logits[r] (+ bias) -> softmax cross-entropy. Returns the summed loss of
 * the rows; if dl_scale != 0, overwrites logits with dl_scale*(p - onehot),
 * the gradient of (dl_scale * summed loss). Log-sum-exp after subtracting
 * the row maximum, in double, so large logits neither overflow nor lose the
 * small probabilities. If correct != NULL, counts rows whose argmax (first
 * maximum: ties go to the lower class) equals the label. */
static double fp__softmax_ce(float *lg, const float *bias, const uint8_t *y, const uint32_t *ids,
                             size_t rows, uint32_t ncls, float dl_scale, size_t *correct)
{
    double total = 0;
    for (size_t r = 0; r < rows; r++) {
        float *z = lg + r * ncls;
        uint32_t lab = y[ids ? ids[r] : r];
        uint32_t best = 0;
        for (uint32_t c = 0; c < ncls; c++) {
            z[c] += bias[c];
            if (z[c] > z[best])
                best = c;
        }
        double mx = z[best], s = 0, e[256]; /* ncls <= 255, checked at create */
        for (uint32_t c = 0; c < ncls; c++)
            s += e[c] = exp((double)z[c] - mx);
        total += mx + log(s) - (double)z[lab];
        if (correct && best == lab)
            (*correct)++;
        if (dl_scale != 0) {
            double inv = 1.0 / s;
            for (uint32_t c = 0; c < ncls; c++)
                z[c] = (float)((e[c] * inv - (c == lab)) * dl_scale);
        }
    }
    return total;
}

/* Forward of rows x[0..rows) up to the logits (without the output bias). */
static void fp__forward(const struct fp_classif *m, struct fp_model_ws *ws, const float *x,
                        size_t rows, const float *params)
{
    const int in = (int)m->in, h = (int)m->hidden, C = (int)m->ncls, R = (int)rows;
    if (m->kind == FP_MODEL_LOGREG) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, C, in, 1.0f, x, in, params, in,
                    0.0f, ws->lg, C);
        return;
    }
    const float *w1 = params, *b1 = w1 + (size_t)h * in, *w2 = b1 + h;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, h, in, 1.0f, x, in, w1, in, 0.0f, ws->a,
                h);
    fp__bias_relu(ws->a, b1, rows, (size_t)h);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, C, h, 1.0f, ws->a, h, w2, h, 0.0f,
                ws->lg, C);
}

/* Backward of one chunk whose ws->lg already holds dLoss/dlogits.
 * beta = 0 for the first chunk (overwrites the gradient), 1 after (adds). */
static void fp__backward(const struct fp_classif *m, struct fp_model_ws *ws, const float *x,
                         size_t rows, const float *params, float *grad, float beta)
{
    const int in = (int)m->in, h = (int)m->hidden, C = (int)m->ncls, R = (int)rows;
    const float *dl = ws->lg;
    if (m->kind == FP_MODEL_LOGREG) {
        float *gw = grad, *gb = grad + (size_t)C * in;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, in, R, 1.0f, dl, C, x, in, beta, gw,
                    in);
        if (beta == 0.0f)
            memset(gb, 0, (size_t)C * sizeof *gb);
        for (size_t r = 0; r < rows; r++)
            for (int c = 0; c < C; c++)
                gb[c] += dl[r * C + c];
        return;
    }
    const float *w2 = params + (size_t)h * in + h;
    float *gw1 = grad, *gb1 = gw1 + (size_t)h * in, *gw2 = gb1 + h, *gb2 = gw2 + (size_t)C * h;
    /* dW2 = dLᵀ·A, db2 = Σ_rows dL */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, h, R, 1.0f, dl, C, ws->a, h, beta, gw2,
                h);
    if (beta == 0.0f) {
        memset(gb2, 0, (size_t)C * sizeof *gb2);
        memset(gb1, 0, (size_t)h * sizeof *gb1);
    }
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < C; c++)
            gb2[c] += dl[r * C + c];
    /* dA = dL·W2, then one pass: dZ = dA ⊙ [A > 0], db1 += dZ. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, h, C, 1.0f, dl, C, w2, h, 0.0f,
                ws->da, h);
    fp__relu_mask(ws->da, gb1, ws->a, rows, (size_t)h);
    /* dW1 = dZᵀ·X; dX is never needed. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, h, in, R, 1.0f, ws->da, h, x, in, beta,
                gw1, in);
}

/* ---- ops ---------------------------------------------------------------- */

static void fp__grad(const struct fp_workload *w, void *wsp, uint32_t client, const float *params,
                     uint32_t batch, fp_rng *rng, float *grad, double *loss)
{
    const struct fp_classif *m = w->impl;
    struct fp_model_ws *ws = wsp;
    assert(client < w->nclients && batch > 0);
    fp_workload_grad_guard(w, client);
    const uint32_t *idx = m->part.indices + m->part.offsets[client];
    uint32_t n = m->n_local[client];
    uint32_t nb = batch >= n ? n : batch;
    /* sel[i] = the i-th minibatch example, as a position in the client's list. */
    const uint32_t *sel = NULL;
    if (batch < n) {
        /* Partial Fisher–Yates over a freshly filled 0..n-1: nb distinct
         * positions, uniform, and independent of the buffer's history. */
        uint32_t *p = ws->perm;
        for (uint32_t i = 0; i < n; i++)
            p[i] = i;
        for (uint32_t i = 0; i < nb; i++) {
            uint32_t j = i + (uint32_t)fp_rng_below(rng, n - i);
            uint32_t t = p[i];
            p[i] = p[j];
            p[j] = t;
        }
        sel = p;
    }
    const size_t in = m->in;
    const float scale = 1.0f / (float)nb;
    const float *bias = params + w->d - m->ncls; /* the output layer's, last in the layout */
    double total = 0;
    for (uint32_t start = 0; start < nb; start += (uint32_t)ws->rows) {
        size_t rows = nb - start < ws->rows ? nb - start : ws->rows;
        for (size_t r = 0; r < rows; r++) {
            uint32_t e = idx[sel ? sel[start + r] : start + r];
            ws->ids[r] = e;
            memcpy(ws->x + r * in, m->train.x + (size_t)e * in, in * sizeof(float));
        }
        fp__forward(m, ws, ws->x, rows, params);
        total += fp__softmax_ce(ws->lg, bias, m->train.y, ws->ids, rows, m->ncls, scale, NULL);
        fp__backward(m, ws, ws->x, rows, params, grad, start == 0 ? 0.0f : 1.0f);
    }
    *loss = total / nb;
}

/* Test rows are contiguous: each block is a plain sub-matrix, no gather. The
 * block size is the workspace's row count, the same for every workspace of
 * a workload, so blocks do not depend on which thread runs them. */
static size_t fp__eval_blocks(const struct fp_workload *w)
{
    const struct fp_classif *m = w->impl;
    return (m->test.n + m->chunk - 1) / m->chunk;
}

static void fp__eval_block(const struct fp_workload *w, void *wsp, const float *params,
                           size_t block, double *loss_sum, uint64_t *correct, uint64_t *count)
{
    const struct fp_classif *m = w->impl;
    struct fp_model_ws *ws = wsp;
    const struct fp_dataset *t = &m->test;
    const float *bias = params + w->d - m->ncls;
    size_t start = block * m->chunk;
    size_t rows = start >= t->n ? 0 : t->n - start < m->chunk ? t->n - start : m->chunk;
    size_t ok = 0;
    *loss_sum = 0;
    if (rows) {
        fp__forward(m, ws, t->x + start * t->dim, rows, params);
        *loss_sum = fp__softmax_ce(ws->lg, bias, t->y + start, NULL, rows, m->ncls, 0.0f, &ok);
    }
    *correct = ok;
    *count = rows;
}

static void fp__evaluate(const struct fp_workload *w, void *wsp, const float *params, double *loss,
                         double *accuracy)
{
    fp_workload_eval_guard(w);
    double total = 0;
    uint64_t correct = 0, n = 0;
    for (size_t b = 0, nb = fp__eval_blocks(w); b < nb; b++) {
        double l;
        uint64_t c, k;
        fp__eval_block(w, wsp, params, b, &l, &c, &k);
        total += l;
        correct += c;
        n += k;
    }
    *loss = n ? total / (double)n : NAN;
    *accuracy = n ? (double)correct / (double)n : NAN;
}

static void fp__init_layer(float *p, size_t fan_out, size_t fan_in, fp_rng *rng)
{
    /* PyTorch's Linear: weight and bias both U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
    double bound = 1.0 / sqrt((double)fan_in);
    size_t count = fan_out * fan_in + fan_out;
    for (size_t i = 0; i < count; i++)
        p[i] = (float)((2.0 * fp_rng_uniform(rng) - 1.0) * bound);
}

static void fp__init(const struct fp_workload *w, fp_rng *rng, float *params)
{
    const struct fp_classif *m = w->impl;
    if (m->kind == FP_MODEL_LOGREG) {
        fp__init_layer(params, m->ncls, m->in, rng);
        return;
    }
    fp__init_layer(params, m->hidden, m->in, rng);
    fp__init_layer(params + (size_t)m->hidden * m->in + m->hidden, m->ncls, m->hidden, rng);
}

static void fp__destroy(struct fp_workload *w)
{
    struct fp_classif *m = w->impl;
    fp_dataset_free(&m->train);
    fp_dataset_free(&m->test);
    fp_partition_free(&m->part);
    free(m->n_local);
    free(m);
}

static const struct fp_workload_ops fp__classif_ops = {
    .grad = fp__grad,
    .evaluate = fp__evaluate,
    .eval_blocks = fp__eval_blocks,
    .eval_block = fp__eval_block,
    .init_params = fp__init,
    .ws_new = fp__ws_new,
    .ws_free = fp__ws_free,
    .destroy = fp__destroy,
};

/* Everything that follows from the clients' sizes and the layer shapes.
 * The chunk (rows per GEMM pass, and the evaluation's block size) comes
 * from the largest client of the whole population, so that a workload
 * holding one client or the test set only computes the same bits. */
static void fp__classif_sizes(struct fp_classif *m, uint32_t nc)
{
    m->max_local = 0;
    for (uint32_t c = 0; c < nc; c++)
        if (m->n_local[c] > m->max_local)
            m->max_local = m->n_local[c];
    m->chunk = m->max_local < FP_MODEL_MIN_CHUNK   ? FP_MODEL_MIN_CHUNK
               : m->max_local > FP_MODEL_MAX_CHUNK ? FP_MODEL_MAX_CHUNK
                                                   : m->max_local;
    m->w.d = fp_model_nparams(m->kind, m->in, m->hidden, m->ncls);
    m->w.nclients = nc;
    m->w.n_local = m->n_local;
    if (m->kind == FP_MODEL_LOGREG)
        m->w.flops_per_example = 4ull * m->in * m->ncls;
    else /* forward 2·in·h + 2·h·C; backward dW2 2·h·C, dA 2·C·h, dW1 2·h·in */
        m->w.flops_per_example = 4ull * m->in * m->hidden + 6ull * m->hidden * m->ncls;
}

/* The model kinds a classifier workload runs, for both constructors. */
static int fp__classif_kind_ok(enum fp_model_kind kind, uint32_t hidden, struct fp_error *err)
{
    if (kind != FP_MODEL_LOGREG && kind != FP_MODEL_MLP)
        return fp_error_set(err, FP_EINVAL,
                            "[model] %d is not a classifier (use logreg or mlp with this dataset)",
                            (int)kind);
    if (kind == FP_MODEL_MLP && hidden == 0)
        return fp_error_set(err, FP_EINVAL, "[model] hidden = 0: an MLP needs at least one unit");
    return 0;
}

int fp_classif_create(struct fp_workload **out, enum fp_model_kind kind, uint32_t hidden,
                      struct fp_dataset *train, struct fp_dataset *test, struct fp_partition *part,
                      struct fp_error *err)
{
    *out = NULL;
    int rc = 0;
    struct fp_classif *m = calloc(1, sizeof *m);
    if (!m) {
        rc = fp_error_set(err, FP_ENOMEM, "out of memory for the model");
        fp_dataset_free(train);
        fp_dataset_free(test);
        fp_partition_free(part);
        return rc;
    }
    /* Move first, so that every failure below frees through one path. */
    m->train = *train;
    m->test = *test;
    m->part = *part;
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    memset(part, 0, sizeof *part);
    m->kind = kind;
    m->w.impl = m;
    m->w.ops = &fp__classif_ops;

    if ((rc = fp__classif_kind_ok(kind, hidden, err)))
        goto fail;
    if (m->train.dim == 0 || m->train.dim != m->test.dim || m->train.nclasses < 2 ||
        m->train.nclasses != m->test.nclasses || m->train.nclasses > 255 || m->part.nclients == 0) {
        rc = fp_error_set(err, FP_EINVAL,
                          "model: train (%zu features, %u classes), test (%zu, %u) and %u "
                          "clients do not fit together",
                          m->train.dim, m->train.nclasses, m->test.dim, m->test.nclasses,
                          m->part.nclients);
        goto fail;
    }
    /* GEMM dimensions are ints: keep every one well inside. */
    if (m->train.dim > (1u << 24) || hidden > (1u << 20)) {
        rc = fp_error_set(err, FP_EINVAL, "model: %zu inputs x %u hidden units is too large",
                          m->train.dim, hidden);
        goto fail;
    }
    m->in = (uint32_t)m->train.dim;
    m->hidden = kind == FP_MODEL_MLP ? hidden : 0;
    m->ncls = m->train.nclasses;
    uint32_t nc = m->part.nclients;
    m->n_local = malloc((size_t)nc * sizeof *m->n_local);
    if (!m->n_local) {
        rc = fp_error_set(err, FP_ENOMEM, "out of memory for %u clients", nc);
        goto fail;
    }
    for (uint32_t c = 0; c < nc; c++) {
        m->n_local[c] = m->part.offsets[c + 1] - m->part.offsets[c];
        if (m->n_local[c] == 0) {
            rc = fp_error_set(err, FP_EINVAL, "partition: client %u holds no examples", c);
            goto fail;
        }
    }
    fp__classif_sizes(m, nc);
    *out = &m->w;
    return 0;
fail:
    fp__destroy(&m->w);
    return rc;
}

int fp_classif_create_view(struct fp_workload **out, enum fp_model_kind kind, uint32_t hidden,
                           struct fp_dataset *train, struct fp_dataset *test, uint32_t nclients,
                           const uint32_t *sizes, enum fp_workload_holds holds, uint32_t client,
                           struct fp_error *err)
{
    *out = NULL;
    int rc = 0;
    struct fp_classif *m = calloc(1, sizeof *m);
    if (!m) {
        fp_dataset_free(train);
        fp_dataset_free(test);
        return fp_error_set(err, FP_ENOMEM, "out of memory for the model");
    }
    m->train = *train;
    m->test = *test;
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    m->kind = kind;
    m->w.impl = m;
    m->w.ops = &fp__classif_ops;
    m->w.holds = holds;
    m->w.client = holds == FP_HOLDS_CLIENT ? client : 0;
    /* The data present decides the shapes: the training rows of a client
     * view, the test rows of a test view. */
    const struct fp_dataset *have = holds == FP_HOLDS_CLIENT ? &m->train : &m->test;
    if ((holds != FP_HOLDS_CLIENT && holds != FP_HOLDS_TEST) || nclients == 0 ||
        (holds == FP_HOLDS_CLIENT && (client >= nclients || sizes[client] != m->train.n))) {
        rc = fp_error_set(err, FP_EINVAL, "model: inconsistent view (holds %d, client %u of %u)",
                          (int)holds, client, nclients);
        goto fail;
    }
    if ((rc = fp__classif_kind_ok(kind, hidden, err)))
        goto fail;
    if (have->n == 0 || have->dim == 0 || have->nclasses < 2 || have->nclasses > 255) {
        rc = fp_error_set(err, FP_EINVAL, "model: %zu examples of %zu features, %u classes",
                          have->n, have->dim, have->nclasses);
        goto fail;
    }
    if (have->dim > (1u << 24) || hidden > (1u << 20)) {
        rc = fp_error_set(err, FP_EINVAL, "model: %zu inputs x %u hidden units is too large",
                          have->dim, hidden);
        goto fail;
    }
    m->in = (uint32_t)have->dim;
    m->hidden = kind == FP_MODEL_MLP ? hidden : 0;
    m->ncls = have->nclasses;
    /* The held client's rows are 0..n-1 of m->train, so its slice of the
     * index list is the identity, at offsets[client]; everyone else's
     * slice is empty. grad() then gathers the same rows, in the same order,
     * as the full workload does from its global indices. */
    uint32_t nh = holds == FP_HOLDS_CLIENT ? (uint32_t)m->train.n : 0;
    m->part.nclients = nclients;
    m->part.offsets = calloc((size_t)nclients + 1, sizeof *m->part.offsets);
    m->part.indices = malloc((nh ? nh : 1) * sizeof *m->part.indices);
    m->n_local = malloc((size_t)nclients * sizeof *m->n_local);
    if (!m->part.offsets || !m->part.indices || !m->n_local) {
        rc = fp_error_set(err, FP_ENOMEM, "out of memory for %u clients", nclients);
        goto fail;
    }
    for (uint32_t c = 0; c < nclients; c++)
        m->part.offsets[c + 1] = holds == FP_HOLDS_CLIENT && c >= client ? nh : 0;
    for (uint32_t i = 0; i < nh; i++)
        m->part.indices[i] = i;
    memcpy(m->n_local, sizes, (size_t)nclients * sizeof *m->n_local);
    fp__classif_sizes(m, nclients);
    *out = &m->w;
    return 0;
fail:
    fp__destroy(&m->w);
    return rc;
}

const float *fp_classif_example(const struct fp_workload *w, uint32_t client, uint32_t i,
                                uint8_t *label)
{
    const struct fp_classif *m = w->impl;
    if (client >= w->nclients || (w->holds == FP_HOLDS_CLIENT && client != w->client) ||
        w->holds == FP_HOLDS_TEST || i >= m->part.offsets[client + 1] - m->part.offsets[client])
        return NULL;
    uint32_t e = m->part.indices[m->part.offsets[client] + i];
    *label = m->train.y[e];
    return m->train.x + (size_t)e * m->in;
}

void fp_classif_held(const struct fp_workload *w, size_t *train_rows, size_t *test_rows)
{
    const struct fp_classif *m = w->impl;
    *train_rows = m->train.n;
    *test_rows = m->test.n;
}
