/*
 * workloads/idx.c — the IDX file format of (Fashion-)MNIST, read through zlib.
 *
 * Header: 4-byte big-endian magic (0x00000803 = 3-d unsigned bytes for
 * images, 0x00000801 = 1-d for labels), then one big-endian uint32 per
 * dimension, then the bytes. Nothing from a header reaches malloc before the
 * caps in dataset.h; a file that ends early or carries trailing bytes is
 * rejected rather than half-loaded.
 */
#include "dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define FP__IDX_IMAGES 0x00000803u
#define FP__IDX_LABELS 0x00000801u

void fp_dataset_free(struct fp_dataset *ds)
{
    if (!ds)
        return;
    free(ds->x);
    free(ds->y);
    memset(ds, 0, sizeof *ds);
}

/* Opens path for gzread. Separating open() from gzdopen() lets us tell a
 * missing file (the common case: dataset package not installed) from others. */
static int fp__open(gzFile *out, const char *path, struct fp_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return fp_error_set(err, FP_EIO,
                                "%s: not found (install it with: apt-get install "
                                "dataset-fashion-mnist, or set [data] path)",
                                path);
        return fp_error_set(err, FP_EIO, "%s: cannot open: %s", path, strerror(errno));
    }
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        return fp_error_set(err, FP_ENOMEM, "%s: cannot start zlib reader", path);
    }
    gzbuffer(gz, 1u << 17);
    *out = gz;
    return 0;
}

/* Reads exactly len bytes, or fails with "truncated" / zlib's own reason. */
static int fp__read(gzFile gz, void *buf, size_t len, const char *path, const char *what,
                    struct fp_error *err)
{
    unsigned char *p = buf;
    while (len > 0) {
        unsigned chunk = len > (1u << 30) ? (1u << 30) : (unsigned)len;
        int got = gzread(gz, p, chunk);
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(gz, &zerr);
            /* zlib reports a stream cut short as Z_BUF_ERROR. */
            if (zerr == Z_BUF_ERROR)
                return fp_error_set(err, FP_EFORMAT, "%s: truncated while reading %s", path, what);
            return fp_error_set(err, FP_EFORMAT, "%s: corrupt gzip data while reading %s: %s", path,
                                what, msg);
        }
        if (got == 0)
            return fp_error_set(err, FP_EFORMAT, "%s: truncated while reading %s", path, what);
        p += got;
        len -= (size_t)got;
    }
    return 0;
}

static int fp__expect_eof(gzFile gz, const char *path, struct fp_error *err)
{
    unsigned char extra;
    int got = gzread(gz, &extra, 1);
    if (got == 0)
        return 0;
    if (got < 0) {
        int zerr;
        const char *msg = gzerror(gz, &zerr);
        return fp_error_set(err, FP_EFORMAT, "%s: corrupt gzip data after the last item: %s", path,
                            msg);
    }
    return fp_error_set(err, FP_EFORMAT, "%s: unexpected bytes after the last item", path);
}

static uint32_t fp__be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Reads the magic and ndims dimensions. */
static int fp__header(gzFile gz, const char *path, uint32_t want_magic, uint32_t *dims, int ndims,
                      struct fp_error *err)
{
    unsigned char h[16];
    size_t len = 4 + 4 * (size_t)ndims;
    int rc = fp__read(gz, h, len, path, "the header", err);
    if (rc)
        return rc;
    uint32_t magic = fp__be32(h);
    if (magic != want_magic)
        return fp_error_set(
            err, FP_EFORMAT, "%s: bad magic 0x%08x, expected 0x%08x (IDX %s of unsigned bytes)",
            path, magic, want_magic, want_magic == FP__IDX_IMAGES ? "images" : "labels");
    for (int i = 0; i < ndims; i++)
        dims[i] = fp__be32(h + 4 + 4 * i);
    return 0;
}

static int fp__load_images(struct fp_dataset *ds, const char *path, struct fp_error *err)
{
    gzFile gz = NULL;
    uint32_t dims[3];
    int rc = fp__open(&gz, path, err);
    if (rc)
        return rc;
    rc = fp__header(gz, path, FP__IDX_IMAGES, dims, 3, err);
    if (rc)
        goto fail;
    if (dims[0] == 0 || dims[0] > FP_IDX_MAX_ITEMS) {
        rc = fp_error_set(err, FP_EFORMAT, "%s: %u images (allowed: 1 to %u)", path, dims[0],
                          FP_IDX_MAX_ITEMS);
        goto fail;
    }
    if (dims[1] == 0 || dims[2] == 0 || (uint64_t)dims[1] * dims[2] > FP_IDX_MAX_DIM) {
        rc = fp_error_set(err, FP_EFORMAT, "%s: image size %ux%u (allowed: 1 to %u pixels)", path,
                          dims[1], dims[2], FP_IDX_MAX_DIM);
        goto fail;
    }
    size_t n = dims[0], dim = (size_t)dims[1] * dims[2];
    size_t total = n * dim; /* fits: both factors are capped well below 2^32 and 2^20 */
    if (total > FP_IDX_MAX_PIXELS) {
        rc = fp_error_set(err, FP_EFORMAT, "%s: %zu images of %zu pixels is more than %zu pixels",
                          path, n, dim, (size_t)FP_IDX_MAX_PIXELS);
        goto fail;
    }
    /* The header alone must not decide how much we allocate (a 30-byte file
     * could claim gigabytes): grow the array as pixels actually arrive, so
     * memory is bounded by the file's real content. */
    size_t cap = 0;
    unsigned char buf[1u << 16]; /* bounce buffer: never hold every byte twice */
    for (size_t done = 0; done < total;) {
        size_t len = total - done < sizeof buf ? total - done : sizeof buf;
        rc = fp__read(gz, buf, len, path, "the pixels", err);
        if (rc)
            goto fail;
        if (done + len > cap) {
            size_t ncap = cap ? 2 * cap : (size_t)1 << 20;
            if (ncap > total)
                ncap = total;
            float *nx = realloc(ds->x, ncap * sizeof *nx);
            if (!nx) {
                rc = fp_error_set(err, FP_ENOMEM, "%s: out of memory for %zu images", path, n);
                goto fail;
            }
            ds->x = nx;
            cap = ncap;
        }
        for (size_t i = 0; i < len; i++)
            ds->x[done + i] = (float)buf[i] / 255.0f;
        done += len;
    }
    rc = fp__expect_eof(gz, path, err);
    if (rc)
        goto fail;
    gzclose(gz);
    ds->n = n;
    ds->dim = dim;
    return 0;
fail:
    gzclose(gz);
    fp_dataset_free(ds);
    return rc;
}

static int fp__load_labels(struct fp_dataset *ds, const char *path, struct fp_error *err)
{
    gzFile gz = NULL;
    uint32_t n = 0; /* set by fp__header; 0 keeps -Wmaybe-uninitialized quiet at -O3 */
    int rc = fp__open(&gz, path, err);
    if (rc)
        return rc;
    rc = fp__header(gz, path, FP__IDX_LABELS, &n, 1, err);
    if (rc)
        goto fail;
    if (n != ds->n) {
        rc = fp_error_set(err, FP_EFORMAT, "%s: %u labels, but the images file has %zu images",
                          path, n, ds->n);
        goto fail;
    }
    ds->y = malloc(n);
    if (!ds->y) {
        rc = fp_error_set(err, FP_ENOMEM, "%s: out of memory for %u labels", path, n);
        goto fail;
    }
    rc = fp__read(gz, ds->y, n, path, "the labels", err);
    if (rc)
        goto fail;
    rc = fp__expect_eof(gz, path, err);
    if (rc)
        goto fail;
    for (uint32_t i = 0; i < n; i++) {
        if (ds->y[i] >= FP_NCLASSES) {
            rc = fp_error_set(err, FP_EFORMAT, "%s: label %u of example %u is not below %u", path,
                              ds->y[i], i, FP_NCLASSES);
            goto fail;
        }
    }
    gzclose(gz);
    ds->nclasses = FP_NCLASSES;
    return 0;
fail:
    gzclose(gz);
    return rc;
}

int fp_idx_load(struct fp_dataset *ds, const char *images_path, const char *labels_path,
                struct fp_error *err)
{
    memset(ds, 0, sizeof *ds);
    int rc = fp__load_images(ds, images_path, err);
    if (rc)
        return rc;
    rc = fp__load_labels(ds, labels_path, err);
    if (rc)
        fp_dataset_free(ds);
    return rc;
}

/* dir/name.gz if it exists, else dir/name if that exists, else dir/name.gz
 * (so that the "not found" message names the file the package installs). */
static int fp__pick(char *out, size_t size, const char *dir, const char *name, struct fp_error *err)
{
    int len = snprintf(out, size, "%s/%s.gz", dir, name);
    if (len < 0 || (size_t)len >= size)
        return fp_error_set(err, FP_EINVAL, "[data] path %s: too long", dir);
    if (access(out, F_OK) == 0)
        return 0;
    char plain[4096];
    len = snprintf(plain, sizeof plain, "%s/%s", dir, name);
    if (len > 0 && (size_t)len < sizeof plain && access(plain, F_OK) == 0)
        snprintf(out, size, "%s", plain);
    return 0;
}

int fp_fmnist_load(struct fp_dataset *train, struct fp_dataset *test, const char *dir,
                   struct fp_error *err)
{
    char img[4096], lab[4096];
    int rc;
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    if ((rc = fp__pick(img, sizeof img, dir, "train-images-idx3-ubyte", err)) ||
        (rc = fp__pick(lab, sizeof lab, dir, "train-labels-idx1-ubyte", err)) ||
        (rc = fp_idx_load(train, img, lab, err)))
        return rc;
    if ((rc = fp__pick(img, sizeof img, dir, "t10k-images-idx3-ubyte", err)) ||
        (rc = fp__pick(lab, sizeof lab, dir, "t10k-labels-idx1-ubyte", err)) ||
        (rc = fp_idx_load(test, img, lab, err)))
        goto fail;
    if (test->dim != train->dim) {
        rc = fp_error_set(err, FP_EFORMAT, "%s: images are %zu pixels, training images %zu", img,
                          test->dim, train->dim);
        goto fail;
    }
    return 0;
fail:
    fp_dataset_free(test);
    fp_dataset_free(train);
    return rc;
}
