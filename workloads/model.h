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

/* The exact diagonal quadratic (quadratic.c). */
int fp_quadratic_create(struct fp_workload **out, const struct fp_scenario *sc,
                        struct fp_error *err);

/* LEAF/FedProx synthetic(alpha, beta) (synthetic.c): fills train (client k's
 * training examples contiguous, in client order), test (the union of the
 * clients' held-out 20%) and the natural partition. Caller frees all three. */
int fp_synthetic_make(struct fp_dataset *train, struct fp_dataset *test, struct fp_partition *part,
                      const struct fp_scenario *sc, struct fp_error *err);

#endif
