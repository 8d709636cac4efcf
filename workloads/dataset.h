/*
 * workloads/dataset.h — in-memory labelled datasets and their split across
 * clients. Internal to workloads/ (the algorithm core never sees it).
 *
 * A dataset owns its two arrays; fp_dataset_free() releases them and leaves
 * the struct zeroed, so freeing twice or freeing a zeroed struct is harmless.
 * A partition owns its two arrays the same way (fp_partition_free).
 */
#ifndef FP_DATASET_H
#define FP_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/inputs.h"
#include "../core/scenario.h"

/* Classes of Fashion-MNIST and of synthetic(alpha, beta); labels must be below. */
#define FP_NCLASSES 10

/* Caps checked before any allocation sized from a file header. */
#define FP_IDX_MAX_ITEMS  10000000u  /* examples per file */
#define FP_IDX_MAX_DIM    1000000u   /* pixels per image */
#define FP_IDX_MAX_PIXELS (1u << 31) /* pixels per file: 8 GiB as float32 */

struct fp_dataset {
    size_t n;          /* examples */
    size_t dim;        /* features per example */
    uint32_t nclasses; /* every y[i] < nclasses */
    float *x;          /* [n][dim], row-major */
    uint8_t *y;        /* [n] */
};

void fp_dataset_free(struct fp_dataset *ds);

/* Loads one IDX pair (gzip'd or plain): images with magic 0x00000803
 * (n x rows x cols, unsigned bytes, scaled to [0, 1] as byte/255) and labels
 * with magic 0x00000801 (n bytes, each < FP_NCLASSES). Each file must hold
 * exactly the bytes its header declares; a gzip file must pass every check
 * the format has (each member's CRC-32 and length, nothing after the last
 * member). Every error names the offending file and the reason. A missing
 * file gets FP_EIO and the hint to install dataset-fashion-mnist. When
 * inputs is not NULL, each file read is appended to it with the SHA-256 of
 * its bytes (see core/inputs.h). On error *ds is left zeroed. */
int fp_idx_load(struct fp_dataset *ds, const char *images_path, const char *labels_path,
                struct fp_inputs *inputs, struct fp_error *err);

/* Loads dir/train-* and dir/t10k-* (".gz" names first, then the plain ones),
 * in that order; inputs as for fp_idx_load. */
int fp_fmnist_load(struct fp_dataset *train, struct fp_dataset *test, const char *dir,
                   struct fp_inputs *inputs, struct fp_error *err);

/* dir/name.gz if it exists, else dir/name if that exists, else dir/name.gz
 * (the name a "not found" error should show). FP_EINVAL if too long. */
int fp_idx_pick(char *out, size_t size, const char *dir, const char *name, struct fp_error *err);

/* A labels file alone: *y (malloc'd, caller frees) gets its *n labels, each
 * checked below FP_NCLASSES; inputs as for fp_idx_load. */
int fp_idx_load_labels(uint8_t **y, size_t *n, const char *path, struct fp_inputs *inputs,
                       struct fp_error *err);

/* The images of path at rows[0..nrows) (strictly ascending) only, in that
 * order, into ds->x (ds->y is left NULL: the caller has the labels). The
 * file must hold want_n images, the count of labels_path (named in the
 * error if not). The whole file is still read and checked as fp_idx_load
 * does, streaming: memory is nrows images plus fixed buffers. */
int fp_idx_load_rows(struct fp_dataset *ds, const char *path, size_t want_n,
                     const char *labels_path, const uint32_t *rows, size_t nrows,
                     struct fp_inputs *inputs, struct fp_error *err);

/* An images file's header only (checked against the caps): count and pixels
 * per image. Not an input: the rest of the file is not read. */
int fp_idx_peek_images(const char *path, size_t *n, size_t *dim, struct fp_error *err);

/* Client c holds examples indices[offsets[c] .. offsets[c+1]), ascending. */
struct fp_partition {
    uint32_t nclients;
    uint32_t *offsets; /* [nclients + 1]; offsets[nclients] = examples assigned */
    uint32_t *indices; /* [offsets[nclients]] */
};

void fp_partition_free(struct fp_partition *p);

/* Splits examples 0..n-1 (labels y[0..n), each < nclasses) across
 * sc->clients clients with sc->partition (iid, shards, dirichlet or sorted;
 * see docs/workloads.md for the exact rules). Deterministic: the only
 * randomness is the (sc->seed, 0, FP_RNG_NO_CLIENT, FP_RNG_PARTITION)
 * stream. Every client gets at least one example, or this fails with
 * FP_EINVAL and a message saying why. */
int fp_partition_make(struct fp_partition *p, const uint8_t *y, size_t n, uint32_t nclasses,
                      const struct fp_scenario *sc, struct fp_error *err);

#endif
