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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* The checks every constructor makes before it loads anything, so the
 * partial ones refuse exactly the scenarios the full one refuses. */
static int fp__check_scenario(const struct fp_scenario *sc, struct fp_error *err)
{
    int rc;
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
        return 0;
    case FP_DATA_SYNTHETIC:
        if ((rc = fp__classifier_ok(sc, err)))
            return rc;
        if (sc->partition != FP_PART_NATURAL && sc->partition != 0)
            return fp_error_set(err, FP_EINVAL,
                                "[data] partition: synthetic defines each client's data; "
                                "only natural applies");
        return 0;
    case FP_DATA_QUADRATIC:
    case FP_DATA_LSQ:
    case FP_DATA_BILINEAR:
    case FP_DATA_ROBUST_LSQ:
        if (sc->model != FP_MODEL_QUADRATIC)
            return fp_error_set(err, FP_EINVAL,
                                "[model] kind = %s does not apply to dataset %s (it is its own "
                                "model: use kind = quadratic)",
                                fp__model(sc->model), fp_dataset_name(sc->dataset));
        if (sc->partition != FP_PART_NATURAL && sc->partition != 0)
            return fp_error_set(err, FP_EINVAL,
                                "[data] partition: %s defines each client's data; "
                                "only natural applies",
                                fp_dataset_name(sc->dataset));
        return 0;
    default:
        return fp_error_set(err, FP_EINVAL, "[data] dataset: unknown kind %d", (int)sc->dataset);
    }
}

int fp_workload_create(struct fp_workload **out, const struct fp_scenario *sc, struct fp_error *err)
{
    struct fp_dataset train, test;
    struct fp_partition part;
    struct fp_inputs inputs = {0};
    int rc;
    *out = NULL;
    if ((rc = fp__check_scenario(sc, err)))
        return rc;
    switch (sc->dataset) {
    case FP_DATA_FMNIST:
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
        if ((rc = fp_synthetic_make(&train, &test, &part, sc, err)))
            return rc;
        return fp_classif_create(out, sc->model, sc->hidden, &train, &test, &part, err);
    case FP_DATA_LSQ: return fp_lsq_create_view(out, sc, FP_HOLDS_ALL, 0, err);
    case FP_DATA_BILINEAR:
    case FP_DATA_ROBUST_LSQ: return fp_bilinear_create_view(out, sc, FP_HOLDS_ALL, 0, err);
    default: /* FP_DATA_QUADRATIC: fp__check_scenario knows no other */
        return fp_quadratic_create(out, sc, err);
    }
fail:
    fp_inputs_free(&inputs);
    return rc;
}

static int fp__check_id(const struct fp_scenario *sc, uint32_t client, struct fp_error *err)
{
    if (client >= sc->clients)
        return fp_error_set(err, FP_EINVAL,
                            "client id %u is out of range: the scenario has [data] clients = %u "
                            "(ids 0 to %u)",
                            client, sc->clients, sc->clients - 1);
    return 0;
}

/* Fashion-MNIST's training labels and the scenario's partition of them:
 * sizes[c] = client c's example count (malloc'd [clients]); if part is not
 * NULL it keeps the partition, and *labels (if not NULL) the n labels. The same fp_partition_make
 * call, on the same labels, as fp_workload_create: the same partition. */
static int fp__fmnist_partition(const struct fp_scenario *sc, char *lab, size_t lab_size, size_t *n,
                                uint32_t **sizes, struct fp_partition *part, uint8_t **labels,
                                struct fp_inputs *inputs, struct fp_error *err)
{
    uint8_t *y = NULL;
    struct fp_partition p = {0};
    int rc;
    *sizes = NULL;
    if ((rc = fp_idx_pick(lab, lab_size, sc->data_path, "train-labels-idx1-ubyte", err)) ||
        (rc = fp_idx_load_labels(&y, n, lab, inputs, err)) ||
        (rc = fp_partition_make(&p, y, *n, FP_NCLASSES, sc, err)))
        goto out;
    if (!(*sizes = malloc((size_t)sc->clients * sizeof **sizes))) {
        rc = fp_error_set(err, FP_ENOMEM, "out of memory for %u clients", sc->clients);
        goto out;
    }
    for (uint32_t c = 0; c < sc->clients; c++) {
        (*sizes)[c] = p.offsets[c + 1] - p.offsets[c];
        if ((*sizes)[c] == 0) { /* as fp_classif_create refuses it */
            rc = fp_error_set(err, FP_EINVAL, "partition: client %u holds no examples", c);
            goto out;
        }
    }
    if (part) {
        *part = p;
        memset(&p, 0, sizeof p);
    }
    if (labels) {
        *labels = y;
        y = NULL;
    }
out:
    if (rc) {
        free(*sizes);
        *sizes = NULL;
    }
    fp_partition_free(&p);
    free(y);
    return rc;
}

/* Client `client`'s rows of Fashion-MNIST: labels, partition, then only
 * its images. Peak memory: the labels (n bytes) and the partition (about
 * 12 n bytes: owner, order and index arrays of uint32) while it is made,
 * then the kept rows (n_i x 784 float32), one image and the 128 KiB read
 * buffer plus zlib's state; never the 188 MB of all 60,000 images. */
static int fp__fmnist_client(struct fp_workload **out, const struct fp_scenario *sc,
                             uint32_t client, struct fp_inputs *inputs, struct fp_error *err)
{
    char img[4096], lab[4096];
    struct fp_partition part = {0};
    struct fp_dataset train = {0}, none = {0};
    uint32_t *sizes = NULL;
    uint8_t *y = NULL;
    size_t n = 0;
    int rc;
    if ((rc = fp__fmnist_partition(sc, lab, sizeof lab, &n, &sizes, &part, &y, inputs, err)))
        goto out;
    const uint32_t *rows = part.indices + part.offsets[client];
    uint32_t ni = sizes[client];
    if ((rc = fp_idx_pick(img, sizeof img, sc->data_path, "train-images-idx3-ubyte", err)) ||
        (rc = fp_idx_load_rows(&train, img, n, lab, rows, ni, inputs, err)))
        goto out;
    if (!(train.y = malloc(ni))) {
        rc = fp_error_set(err, FP_ENOMEM, "out of memory for %u labels", ni);
        goto out;
    }
    for (uint32_t i = 0; i < ni; i++)
        train.y[i] = y[rows[i]];
    train.nclasses = FP_NCLASSES;
    rc = fp_classif_create_view(out, sc->model, sc->hidden, &train, &none, sc->clients, sizes,
                                FP_HOLDS_CLIENT, client, err);
out:
    fp_dataset_free(&train);
    fp_partition_free(&part);
    free(sizes);
    free(y);
    return rc;
}

int fp_workload_create_client(struct fp_workload **out, const struct fp_scenario *sc,
                              uint32_t client, struct fp_error *err)
{
    struct fp_inputs inputs = {0};
    struct fp_dataset train, none = {0};
    uint32_t *sizes = NULL;
    int rc;
    *out = NULL;
    if ((rc = fp__check_scenario(sc, err)) || (rc = fp__check_id(sc, client, err)))
        return rc;
    switch (sc->dataset) {
    case FP_DATA_FMNIST:
        if ((rc = fp__fmnist_client(out, sc, client, &inputs, err)))
            goto fail;
        (*out)->inputs = inputs;
        return 0;
    case FP_DATA_SYNTHETIC:
        if ((rc = fp_synthetic_make_view(&train, &none, &sizes, sc, FP_HOLDS_CLIENT, client, err)))
            return rc;
        rc = fp_classif_create_view(out, sc->model, sc->hidden, &train, &none, sc->clients, sizes,
                                    FP_HOLDS_CLIENT, client, err);
        free(sizes);
        return rc;
    case FP_DATA_LSQ: return fp_lsq_create_view(out, sc, FP_HOLDS_CLIENT, client, err);
    case FP_DATA_BILINEAR:
    case FP_DATA_ROBUST_LSQ: return fp_bilinear_create_view(out, sc, FP_HOLDS_CLIENT, client, err);
    default: /* quadratic: fp__check_scenario knows no other kind */
        return fp_quadratic_create_view(out, sc, FP_HOLDS_CLIENT, client, err);
    }
fail:
    fp_inputs_free(&inputs);
    return rc;
}

/* A client's own training pair in dir (--data DIR): path[0] its images,
 * path[1] its labels, each NAME.gz if it exists, else NAME; FP_EIO naming
 * both names if one is missing. */
static int fp__client_dir_files(const char *dir, char (*path)[4096], struct fp_error *err)
{
    static const char *const names[2] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"};
    int rc;
    for (int f = 0; f < 2; f++) {
        if ((rc = fp_idx_pick(path[f], sizeof path[f], dir, names[f], err)))
            return rc;
        /* Said here rather than by the loader, whose hint (the Debian
         * package) is for [data] path, not for a client's own files. */
        if (access(path[f], F_OK) != 0)
            return fp_error_set(err, FP_EIO,
                                "--data %s: no %s.gz or %s there; a client's data directory "
                                "must hold its own train-images-idx3-ubyte[.gz] and "
                                "train-labels-idx1-ubyte[.gz]",
                                dir, names[f], names[f]);
    }
    return 0;
}

int fp_workload_check_client_dir(const char *dir, struct fp_error *err)
{
    char path[2][4096];
    size_t n = 0, dim = 0, nl = 0;
    uint8_t *y = NULL;
    int rc;
    if ((rc = fp__client_dir_files(dir, path, err)) ||
        (rc = fp_idx_peek_images(path[0], &n, &dim, err)))
        return rc;
    if (dim != FP_FMNIST_DIM)
        return fp_error_set(err, FP_EFORMAT,
                            "--data %s: %s holds images of %zu pixels, but the scenarios' IDX "
                            "dataset, fashion-mnist, has 28x28 = %d (its models take %d inputs)",
                            dir, path[0], dim, FP_FMNIST_DIM, FP_FMNIST_DIM);
    if (n == 0)
        return fp_error_set(err, FP_EFORMAT, "--data %s: %s holds no image", dir, path[0]);
    /* each label a class below FP_NCLASSES, or the loader says which is not */
    if ((rc = fp_idx_load_labels(&y, &nl, path[1], NULL, err)))
        return rc;
    free(y);
    if (nl != n)
        return fp_error_set(err, FP_EFORMAT,
                            "--data %s: %s has %zu labels for the %zu images of %s; the two "
                            "files do not belong together",
                            dir, path[1], nl, n, path[0]);
    return 0;
}

int fp_workload_create_client_dir(struct fp_workload **out, const struct fp_scenario *sc,
                                  uint32_t client, const char *dir, struct fp_error *err)
{
    char path[2][4096];
    struct fp_inputs inputs = {0};
    struct fp_dataset train = {0}, none = {0};
    uint32_t *sizes = NULL;
    int rc;
    *out = NULL;
    if (sc->dataset != FP_DATA_FMNIST)
        return fp_error_set(err, FP_EINVAL,
                            "--data %s: a client's own IDX files apply to an IDX dataset "
                            "(fashion-mnist); this scenario's dataset is %s, whose data each "
                            "client generates: use --data partition",
                            dir, fp_dataset_name(sc->dataset));
    if ((rc = fp__classifier_ok(sc, err)) || (rc = fp__check_id(sc, client, err)) ||
        (rc = fp__client_dir_files(dir, path, err)))
        return rc;
    if ((rc = fp_idx_load(&train, path[0], path[1], &inputs, err)))
        goto fail;
    if (train.n > UINT32_MAX - 1) {
        rc = fp_error_set(err, FP_EINVAL, "%s: %zu examples is too many", path[0], train.n);
        goto fail;
    }
    if (!(sizes = calloc(sc->clients, sizeof *sizes))) {
        rc = fp_error_set(err, FP_ENOMEM, "out of memory for %u clients", sc->clients);
        goto fail;
    }
    sizes[client] = (uint32_t)train.n;
    rc = fp_classif_create_view(out, sc->model, sc->hidden, &train, &none, sc->clients, sizes,
                                FP_HOLDS_CLIENT, client, err);
    free(sizes);
    if (rc)
        goto fail;
    (*out)->inputs = inputs;
    return 0;
fail:
    fp_dataset_free(&train);
    fp_inputs_free(&inputs);
    return rc;
}

/* Fashion-MNIST's test pair, the partition's sizes from the training labels,
 * and the training images' header (count and size must fit, as the full
 * load checks; the pixels are not read). */
static int fp__fmnist_test(struct fp_workload **out, const struct fp_scenario *sc,
                           struct fp_inputs *inputs, struct fp_error *err)
{
    char img[4096], lab[4096], timg[4096], tlab[4096];
    struct fp_dataset test = {0}, none = {0};
    uint32_t *sizes = NULL;
    size_t n = 0, in = 0, dim = 0;
    int rc;
    if ((rc = fp__fmnist_partition(sc, lab, sizeof lab, &n, &sizes, NULL, NULL, inputs, err)) ||
        (rc = fp_idx_pick(img, sizeof img, sc->data_path, "train-images-idx3-ubyte", err)) ||
        (rc = fp_idx_peek_images(img, &in, &dim, err)))
        goto out;
    if (in != n) {
        rc = fp_error_set(err, FP_EFORMAT,
                          "%s: %zu images, but %s has %zu labels; the two files do not belong "
                          "together",
                          img, in, lab, n);
        goto out;
    }
    if ((rc = fp_idx_pick(timg, sizeof timg, sc->data_path, "t10k-images-idx3-ubyte", err)) ||
        (rc = fp_idx_pick(tlab, sizeof tlab, sc->data_path, "t10k-labels-idx1-ubyte", err)) ||
        (rc = fp_idx_load(&test, timg, tlab, inputs, err)))
        goto out;
    if (test.dim != dim) {
        rc = fp_error_set(err, FP_EFORMAT, "%s: images are %zu pixels, training images %zu", timg,
                          test.dim, dim);
        goto out;
    }
    rc = fp_classif_create_view(out, sc->model, sc->hidden, &none, &test, sc->clients, sizes,
                                FP_HOLDS_TEST, 0, err);
out:
    fp_dataset_free(&test);
    free(sizes);
    return rc;
}

int fp_workload_create_test(struct fp_workload **out, const struct fp_scenario *sc,
                            struct fp_error *err)
{
    struct fp_inputs inputs = {0};
    struct fp_dataset test, none = {0};
    uint32_t *sizes = NULL;
    int rc;
    *out = NULL;
    if ((rc = fp__check_scenario(sc, err)))
        return rc;
    switch (sc->dataset) {
    case FP_DATA_FMNIST:
        if ((rc = fp__fmnist_test(out, sc, &inputs, err))) {
            fp_inputs_free(&inputs);
            return rc;
        }
        (*out)->inputs = inputs;
        return 0;
    case FP_DATA_SYNTHETIC:
        if ((rc = fp_synthetic_make_view(&none, &test, &sizes, sc, FP_HOLDS_TEST, 0, err)))
            return rc;
        rc = fp_classif_create_view(out, sc->model, sc->hidden, &none, &test, sc->clients, sizes,
                                    FP_HOLDS_TEST, 0, err);
        free(sizes);
        return rc;
    case FP_DATA_LSQ: return fp_lsq_create_view(out, sc, FP_HOLDS_TEST, 0, err);
    case FP_DATA_BILINEAR:
    case FP_DATA_ROBUST_LSQ: return fp_bilinear_create_view(out, sc, FP_HOLDS_TEST, 0, err);
    default: return fp_quadratic_create_view(out, sc, FP_HOLDS_TEST, 0, err);
    }
}

int fp_workload_check_client(const struct fp_workload *w, uint32_t client, struct fp_error *err)
{
    if (client >= w->nclients)
        return fp_error_set(err, FP_EINVAL,
                            "client id %u is out of range: the workload has %u clients (ids 0 "
                            "to %u)",
                            client, w->nclients, w->nclients - 1);
    if (w->holds == FP_HOLDS_TEST)
        return fp_error_set(err, FP_EINVAL,
                            "client %u: this workload holds the test set only, no training "
                            "data (a coordinator's); train on a client workload",
                            client);
    if (w->holds == FP_HOLDS_CLIENT && client != w->client)
        return fp_error_set(err, FP_EINVAL,
                            "client %u: this workload holds client %u's data only; a client "
                            "trains under its own id",
                            client, w->client);
    return 0;
}

int fp_workload_check_evaluate(const struct fp_workload *w, struct fp_error *err)
{
    if (w->holds == FP_HOLDS_CLIENT)
        return fp_error_set(err, FP_EINVAL,
                            "this workload holds client %u's training data only, no test set: "
                            "evaluate on the test-set workload (fp_workload_create_test)",
                            w->client);
    return 0;
}

void fp_workload_grad_guard(const struct fp_workload *w, uint32_t client)
{
    struct fp_error err = {0};
    if (w->holds != FP_HOLDS_ALL && fp_workload_check_client(w, client, &err)) {
        /* A driver's bug, not a user's: it must check before it trains. */
        fprintf(stderr, "fedpress: internal error: grad(): %s\n", err.msg);
        abort();
    }
}

void fp_workload_eval_guard(const struct fp_workload *w)
{
    struct fp_error err = {0};
    if (w->holds != FP_HOLDS_ALL && fp_workload_check_evaluate(w, &err)) {
        fprintf(stderr, "fedpress: internal error: evaluate(): %s\n", err.msg);
        abort();
    }
}

void fp_workload_free(struct fp_workload *w)
{
    if (w) {
        struct fp_inputs inputs = w->inputs;
        w->ops->destroy(w);
        fp_inputs_free(&inputs);
    }
}
