/*
 * workloads/workload.h — what an algorithm sees of the learning problem.
 *
 * A workload is a population of N clients, each with a local objective f_i
 * over one flat float32 parameter vector of length d, and a held-out test
 * objective. The algorithm core only calls these ops: it never sees files,
 * datasets or layers. Implementations: a dataset (Fashion-MNIST or
 * synthetic(alpha, beta)) partitioned across clients with a model (logreg or
 * MLP) on top, and an exact diagonal quadratic for tests.
 *
 * Ownership: fp_workload_create() returns an object the caller frees with
 * fp_workload_free(). A workspace (fp_workload_ws_new) is scratch memory for
 * one thread: never share one between threads; its contents never influence
 * results (determinism at any thread count depends on that).
 */
#ifndef FP_WORKLOAD_H
#define FP_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/inputs.h"
#include "../core/rng.h"
#include "../core/scenario.h"

struct fp_workload;

struct fp_workload_ops {
    /* Stochastic gradient of client `client`'s objective at params, on a
     * minibatch of `batch` local examples drawn without replacement from rng
     * (if batch >= the client's example count: all of them, in stored order).
     * Writes grad[0..d) and *loss = the minibatch mean loss. */
    void (*grad)(const struct fp_workload *w, void *ws, uint32_t client, const float *params,
                 uint32_t batch, fp_rng *rng, float *grad, double *loss);
    /* Test-set mean loss and accuracy (accuracy = NaN where it does not
     * apply, e.g. quadratic). May use ws. */
    void (*evaluate)(const struct fp_workload *w, void *ws, const float *params, double *loss,
                     double *accuracy);
    /* Optional (NULL where evaluation is cheap): the test set as eval_blocks()
     * fixed blocks, so that a driver can evaluate them on several threads.
     * eval_block adds nothing up across blocks: summing the blocks' loss
     * sums, correct counts and example counts in block order, then dividing,
     * gives exactly what evaluate() returns, at any thread count. */
    size_t (*eval_blocks)(const struct fp_workload *w);
    void (*eval_block)(const struct fp_workload *w, void *ws, const float *params, size_t block,
                       double *loss_sum, uint64_t *correct, uint64_t *count);
    /* Initial parameters: U(±1/sqrt(fan_in)) for layers, zeros for quadratic. */
    void (*init_params)(const struct fp_workload *w, fp_rng *rng, float *params);
    void *(*ws_new)(const struct fp_workload *w);
    void (*ws_free)(void *ws);
    void (*destroy)(struct fp_workload *w);
};

struct fp_workload {
    const struct fp_workload_ops *ops;
    size_t d;                   /* parameter count */
    uint32_t nclients;          /* N */
    const uint32_t *n_local;    /* examples held by each client, [nclients] */
    uint64_t flops_per_example; /* forward+backward FLOPs per example (0 if n/a), for benchmarks */
    /* The files the workload read, each with its SHA-256 (core/inputs.h);
     * empty (text NULL) for a workload made without files. Owned by the
     * workload. */
    struct fp_inputs inputs;
    void *impl;
};

/* Builds the workload a scenario describes: loads (or generates) data,
 * partitions it with the (seed, PARTITION) stream, sets up the model, and
 * records the files it read in (*out)->inputs.
 * Errors name the file and, for a missing dataset, the apt package. */
int fp_workload_create(struct fp_workload **out, const struct fp_scenario *sc,
                       struct fp_error *err);
void fp_workload_free(struct fp_workload *w);

static inline void *fp_workload_ws_new(const struct fp_workload *w)
{
    return w->ops->ws_new(w);
}
static inline void fp_workload_ws_free(const struct fp_workload *w, void *ws)
{
    w->ops->ws_free(ws);
}

#endif
