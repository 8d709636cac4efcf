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
 * A workload may hold the whole population (fp_workload_create: the
 * simulator), one client's training data only (fp_workload_create_client,
 * fp_workload_create_client_dir: a client daemon) or the test set only
 * (fp_workload_create_test: a coordinator). Client ids are global in all
 * three: a client workload keeps client 7's examples under id 7, and the
 * algorithm core calls it with 7, exactly as it calls the full workload.
 *
 * Ownership: every constructor returns an object the caller frees with
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

/* What a workload holds (struct fp_workload's `holds`). */
enum fp_workload_holds {
    FP_HOLDS_ALL = 0, /* every client's training data and the test set */
    FP_HOLDS_CLIENT,  /* one client's training data (`client`), no test set */
    FP_HOLDS_TEST     /* the test set only, no training data */
};

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
    /* FP_HOLDS_ALL unless made by one of the partial constructors below.
     * grad() of a client the workload does not hold, or evaluate() of a
     * workload without a test set, is a programming error (the process
     * aborts with a message): a driver checks first with
     * fp_workload_check_client / fp_workload_check_evaluate. */
    enum fp_workload_holds holds;
    uint32_t client; /* FP_HOLDS_CLIENT: the global id of the one client held */
};

/* Builds the workload a scenario describes: loads (or generates) data,
 * partitions it with the (seed, PARTITION) stream, sets up the model, and
 * records the files it read in (*out)->inputs.
 * Errors name the file and, for a missing dataset, the apt package. */
int fp_workload_create(struct fp_workload **out, const struct fp_scenario *sc,
                       struct fp_error *err);
void fp_workload_free(struct fp_workload *w);

/* Client `client`'s training data only (FP_HOLDS_CLIENT), for a client that
 * trains on its shard of the scenario's partition. Its grad() gives the same
 * bits as the full workload's for that client: the same examples in the
 * same order, the same model and chunking. nclients and n_local[] are the
 * whole scenario's (n_local of every client, as in the full workload);
 * only client `client`'s examples are in memory.
 *   fashion-mnist: reads the training labels, computes the partition from
 *     them, then streams the training images and keeps only this client's
 *     rows (never all of them); the test files are not read. inputs: the
 *     two training files.
 *   synthetic: generates client `client`'s stream only (plus the first draw
 *     of every other client's stream: the sizes).
 *   quadratic: client `client`'s a_i and b_i only.
 * FP_EINVAL for a client id >= [data] clients, and every error the full
 * workload would give for the scenario. */
int fp_workload_create_client(struct fp_workload **out, const struct fp_scenario *sc,
                              uint32_t client, struct fp_error *err);

/* Client `client` (of the scenario's N) whose training data is dir's own
 * IDX pair, train-images-idx3-ubyte and train-labels-idx1-ubyte (".gz"
 * first, as for [data] path), all of it; [data] path and partition are not
 * used. The scenario must use an IDX dataset (fashion-mnist) with a
 * classifier; n_local[] is 0 for every other client (unknown here). */
int fp_workload_create_client_dir(struct fp_workload **out, const struct fp_scenario *sc,
                                  uint32_t client, const char *dir, struct fp_error *err);

/* Fashion-MNIST's images: 28 x 28 pixels. */
#define FP_FMNIST_DIM 784
/* What a client daemon checks of --data DIR before it connects: DIR holds
 * train-images-idx3-ubyte[.gz] of 28x28 images (Fashion-MNIST's, the
 * scenarios' only IDX dataset: what their models take) and
 * train-labels-idx1-ubyte[.gz] with as many labels, each a class 0-9.
 * FP_EIO / FP_EFORMAT naming the file and the reason. Reads the labels
 * and the images' header. */
int fp_workload_check_client_dir(const char *dir, struct fp_error *err);

/* The test set only (FP_HOLDS_TEST), for a coordinator: evaluate() and
 * eval_block() give the same bits as the full workload's; grad() is not
 * available. n_local[] holds every client's partition size, which for
 * fashion-mnist means the training labels are read (not the images: only
 * their header, to check it fits) — the evaluation's block size derives
 * from the largest client, as in the full workload. quadratic: its test
 * objective is (1/N) sum f_i, so this holds every client's a_i and b_i. */
int fp_workload_create_test(struct fp_workload **out, const struct fp_scenario *sc,
                            struct fp_error *err);

/* 0 if w can compute client `client`'s gradients; else FP_EINVAL saying why
 * (id out of range, another client's data, test set only). */
int fp_workload_check_client(const struct fp_workload *w, uint32_t client, struct fp_error *err);
/* 0 if w can evaluate (it holds a test set); else FP_EINVAL. */
int fp_workload_check_evaluate(const struct fp_workload *w, struct fp_error *err);

/* lsq (workloads/lsq.c), distributed least squares with unequal
 * smoothness: client i's constant L_i = ratio^(i / (N - 1)) (1 for N = 1),
 * which the data are scaled to meet (fp_lsq_smoothness for a scenario).
 * EF21-W's weights and the theory steps read them from here. */
double fp_lsq_law(double ratio, uint32_t N, uint32_t i);
double fp_lsq_smoothness(const struct fp_scenario *sc, uint32_t client);
/* L, the smoothness constant of f = (1/N) sum f_i: the largest eigenvalue
 * of (1/N) sum A_i^T A_i / m, from the scenario's data (generated again). */
int fp_lsq_smoothness_of_f(const struct fp_scenario *sc, double *L, struct fp_error *err);
/* bilinear and robust-lsq (bilinear.c): L, the Lipschitz constant of the
 * mean operator F, and L~ = sqrt(mean_m L_m^2) of the devices' F_m, exactly
 * (double, from the float32 data), for MASHA's theory step. */
int fp_bilinear_lipschitz(const struct fp_scenario *sc, double *L, double *Lt,
                          struct fp_error *err);
/* For tests: L_i measured from the float32 data w holds (NaN if not held),
 * and the largest eigenvalue of a symmetric d x d matrix (destroyed). */
double fp_lsq_client_L(const struct fp_workload *w, uint32_t client);
double fp_lsq_max_eig(double *M, uint32_t d);

static inline void *fp_workload_ws_new(const struct fp_workload *w)
{
    return w->ops->ws_new(w);
}
static inline void fp_workload_ws_free(const struct fp_workload *w, void *ws)
{
    w->ops->ws_free(ws);
}

#endif
