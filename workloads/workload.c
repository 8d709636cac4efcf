/*
 * workloads/workload.c — fp_workload_create(): from a scenario to the
 * workload object the algorithms see.
 *
 * The scenario parser already rejects combinations that make no sense; the
 * checks here repeat the important ones so that a hand-built scenario (tests,
 * tools) still gets a sentence instead of a crash. Warm start ([model] init)
 * is the caller's business: init_params always draws a fresh initialisation.
 */
#include "workload.h"

#include <stdlib.h>

#include "model.h"

/* Local names, so this module does not depend on the scenario parser. */
static const char *fp__model(enum fp_model_kind m)
{
    return m == FP_MODEL_LOGREG      ? "logreg"
           : m == FP_MODEL_MLP       ? "mlp"
           : m == FP_MODEL_QUADRATIC ? "quadratic"
                                     : "(unknown)";
}

static int fp__classifier_ok(const struct fp_scenario *sc, struct fp_error *err)
{
    if (sc->model != FP_MODEL_LOGREG && sc->model != FP_MODEL_MLP)
        return fp_error_set(
            err, FP_EINVAL, "[model] kind = %s does not apply to dataset %s (use logreg or mlp)",
            fp__model(sc->model), sc->dataset == FP_DATA_FMNIST ? "fashion-mnist" : "synthetic");
    return 0;
}

int fp_workload_create(struct fp_workload **out, const struct fp_scenario *sc, struct fp_error *err)
{
    struct fp_dataset train, test;
    struct fp_partition part;
    struct fp_inputs inputs = {0};
    int rc;
    *out = NULL;
    if (sc->clients == 0)
        return fp_error_set(err, FP_EINVAL, "[data] clients = 0: need at least one client");
    switch (sc->dataset) {
    case FP_DATA_FMNIST:
        if ((rc = fp__classifier_ok(sc, err)))
            return rc;
        if (sc->partition == FP_PART_NATURAL)
            return fp_error_set(err, FP_EINVAL,
                                "[data] partition = natural does not apply to fashion-mnist "
                                "(use iid, shards, dirichlet or sorted)");
        if ((rc = fp_fmnist_load(&train, &test, sc->data_path, &inputs, err)))
            goto fail;
        rc = fp_partition_make(&part, train.y, train.n, train.nclasses, sc, err);
        if (rc) {
            fp_dataset_free(&train);
            fp_dataset_free(&test);
            goto fail;
        }
        if ((rc = fp_classif_create(out, sc->model, sc->hidden, &train, &test, &part, err)))
            goto fail;
        (*out)->inputs = inputs;
        return 0;
    case FP_DATA_SYNTHETIC:
        if ((rc = fp__classifier_ok(sc, err)))
            return rc;
        if (sc->partition != FP_PART_NATURAL && sc->partition != 0)
            return fp_error_set(err, FP_EINVAL,
                                "[data] partition: synthetic defines each client's data; "
                                "only natural applies");
        if ((rc = fp_synthetic_make(&train, &test, &part, sc, err)))
            return rc;
        return fp_classif_create(out, sc->model, sc->hidden, &train, &test, &part, err);
    case FP_DATA_QUADRATIC:
        if (sc->model != FP_MODEL_QUADRATIC)
            return fp_error_set(err, FP_EINVAL,
                                "[model] kind = %s does not apply to dataset quadratic (the "
                                "quadratic is its own model: use kind = quadratic)",
                                fp__model(sc->model));
        if (sc->partition != FP_PART_NATURAL && sc->partition != 0)
            return fp_error_set(err, FP_EINVAL,
                                "[data] partition: quadratic defines each client's data; "
                                "only natural applies");
        return fp_quadratic_create(out, sc, err);
    default:
        return fp_error_set(err, FP_EINVAL, "[data] dataset: unknown kind %d", (int)sc->dataset);
    }
fail:
    fp_inputs_free(&inputs);
    return rc;
}

void fp_workload_free(struct fp_workload *w)
{
    if (w) {
        struct fp_inputs inputs = w->inputs;
        w->ops->destroy(w);
        fp_inputs_free(&inputs);
    }
}
