/*
 * workloads/model.h — constructors of the concrete workloads behind
 * fp_workload_create(). Internal to workloads/ and its tests.
 *
 * Parameter layout (PyTorch's, see DESIGN.md): each Linear layer is its
 * weight W[out][in] row-major followed by its bias b[out].
 *   logreg: W[C][in] | b[C]                         d = C*in + C
 *   mlp:    W1[h][in] | b1[h] | W2[C][h] | b2[C]    d = h*in + h + C*h + C
 */
#ifndef FP_MODEL_H
#define FP_MODEL_H

#include "../core/error.h"
#include "../core/scenario.h"
#include "dataset.h"
#include "workload.h"

/* Rows a model workspace processes at once, in grad() and evaluate():
 * max(FP_MODEL_MIN_CHUNK, min(largest client, FP_MODEL_MAX_CHUNK)). A
 * minibatch larger than that is processed in chunks whose gradients
 * accumulate, so workspace memory is bounded whatever the batch. */
#define FP_MODEL_MIN_CHUNK 256
#define FP_MODEL_MAX_CHUNK 1024

/* Parameter count, 0 for an unknown kind. */
size_t fp_model_nparams(enum fp_model_kind kind, size_t in, uint32_t hidden, uint32_t nclasses);

/* A classifier (logreg or MLP with `hidden` units) over train, split by part,
 * evaluated on test. Takes ownership of *train, *test and *part whether it
 * succeeds or not: they are moved into the workload (or freed) and zeroed. */
int fp_classif_create(struct fp_workload **out, enum fp_model_kind kind, uint32_t hidden,
                      struct fp_dataset *train, struct fp_dataset *test, struct fp_partition *part,
                      struct fp_error *err);

/* A classifier holding part of a scenario's data (holds = FP_HOLDS_CLIENT:
 * train is client `client`'s examples only, in the full workload's order for
 * it, and test is empty; FP_HOLDS_TEST: test only, train empty).
 * sizes[0..nclients) are the scenario's n_local (copied): the largest sets
 * the chunk, as in the full workload, so grad() and evaluate() give the same
 * bits. Takes ownership of *train and *test whether it succeeds or not. */
int fp_classif_create_view(struct fp_workload **out, enum fp_model_kind kind, uint32_t hidden,
                           struct fp_dataset *train, struct fp_dataset *test, uint32_t nclients,
                           const uint32_t *sizes, enum fp_workload_holds holds, uint32_t client,
                           struct fp_error *err);

/* For tests: the i-th example of client `client` in its stored order (NULL
 * if not held or past its end), with *label; and the rows held in memory. */
const float *fp_classif_example(const struct fp_workload *w, uint32_t client, uint32_t i,
                                uint8_t *label);
void fp_classif_held(const struct fp_workload *w, size_t *train_rows, size_t *test_rows);

/* The exact diagonal quadratic (quadratic.c): every client (holds =
 * FP_HOLDS_ALL or FP_HOLDS_TEST), or client `client` only (FP_HOLDS_CLIENT). */
int fp_quadratic_create(struct fp_workload **out, const struct fp_scenario *sc,
                        struct fp_error *err);
int fp_quadratic_create_view(struct fp_workload **out, const struct fp_scenario *sc,
                             enum fp_workload_holds holds, uint32_t client, struct fp_error *err);

/* Distributed least squares (lsq.c): every client, one, or the test
 * objective only, as for the quadratic. */
int fp_lsq_create_view(struct fp_workload **out, const struct fp_scenario *sc,
                       enum fp_workload_holds holds, uint32_t client, struct fp_error *err);
/* The distributed bilinear saddle point (bilinear.c): grad() is the
 * operator F_m; every device, one, or the solution z* only. */
int fp_bilinear_create_view(struct fp_workload **out, const struct fp_scenario *sc,
                            enum fp_workload_holds holds, uint32_t client, struct fp_error *err);

/* Aborts, naming the client, when grad() is asked for a client w does not
 * hold / evaluate() of a workload without a test set: the driver should
 * have asked fp_workload_check_client / _check_evaluate (workload.c). */
void fp_workload_grad_guard(const struct fp_workload *w, uint32_t client);
void fp_workload_eval_guard(const struct fp_workload *w);

/* LEAF/FedProx synthetic(alpha, beta) (synthetic.c): fills train (client k's
 * training examples contiguous, in client order), test (the union of the
 * clients' held-out 20%) and the natural partition. Caller frees all three. */
int fp_synthetic_make(struct fp_dataset *train, struct fp_dataset *test, struct fp_partition *part,
                      const struct fp_scenario *sc, struct fp_error *err);

/* Part of the same data, the same bits: FP_HOLDS_CLIENT fills train with
 * client `client`'s training examples only (test empty); FP_HOLDS_TEST
 * fills test only (train empty). *sizes (malloc'd [clients], caller frees)
 * gets every client's training count. */
int fp_synthetic_make_view(struct fp_dataset *train, struct fp_dataset *test, uint32_t **sizes,
                           const struct fp_scenario *sc, enum fp_workload_holds holds,
                           uint32_t client, struct fp_error *err);

#endif
