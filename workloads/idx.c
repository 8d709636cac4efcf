/*
 * workloads/idx.c — the IDX file format of (Fashion-)MNIST, plain or gzip'd.
 *
 * Header: 4-byte big-endian magic (0x00000803 = 3-d unsigned bytes for
 * images, 0x00000801 = 1-d for labels), then one big-endian uint32 per
 * dimension, then the bytes. Nothing from a header reaches malloc before the
 * caps in dataset.h; a file that ends early or carries trailing bytes is
 * rejected rather than half-loaded, and so is a gzip file that fails any
 * check of RFC 1952 (see struct fp__src).
 */
#include "dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "../core/hash.h"

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

/* A file read once, front to back. Its raw bytes go through SHA-256 as
 * they arrive (the run store records the hash of every input; hashing the
 * bytes the loader reads anyway costs no second read and hashes exactly what
 * was trained on). A gzip file goes through inflate driven directly, not
 * zlib's gzread: gzread ends quietly at trailing garbage after a member and
 * reports a cut-off trailer only as a soft Z_BUF_ERROR after returning the
 * data, so neither a truncated nor a padded file would be noticed.
 *
 * What is verified, by RFC 1952: every member's header (and its header CRC
 * where present), its deflate data, and its trailer, the CRC-32 and the
 * length (ISIZE) of what it holds; members may follow one another (gzip -d
 * joins them too), and anything else after the last member is refused. The
 * IDX bytes must be exactly what the header declares: the caller reads them
 * and fp__src_end refuses any byte more. */
struct fp__src {
    const char *path;
    int fd;
    int gz;         /* 1: gzip members; 0: the IDX bytes as they are */
    int zinit;      /* zs is initialised (inflateEnd needed) */
    int member_end; /* inflate said Z_STREAM_END; what follows is not yet examined */
    int in_eof;     /* read() returned 0 */
    uint64_t raw;   /* bytes read from the file so far */
    z_stream zs;    /* next_in / avail_in: the unread raw bytes in buf (both kinds) */
    unsigned char *buf;
    struct fp_sha256 sha;
    char hex[65]; /* the file's SHA-256, set by fp__src_end */
};

#define FP__IN_BYTES ((size_t)1 << 17)

/* Moves the unread bytes to the front of buf and reads more after them. */
static int fp__src_more(struct fp__src *s, struct fp_error *err)
{
    if (s->in_eof || s->zs.avail_in == FP__IN_BYTES) /* a full buffer: nothing to read into */
        return 0;
    if (s->zs.avail_in && s->zs.next_in != s->buf)
        memmove(s->buf, s->zs.next_in, s->zs.avail_in);
    s->zs.next_in = s->buf;
    for (;;) {
        ssize_t got = read(s->fd, s->buf + s->zs.avail_in, FP__IN_BYTES - s->zs.avail_in);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return fp_error_set(err, FP_EIO, "%s: read error: %s", s->path, strerror(errno));
        if (got == 0)
            s->in_eof = 1;
        fp_sha256_update(&s->sha, s->buf + s->zs.avail_in, (size_t)got);
        s->zs.avail_in += (unsigned)got;
        s->raw += (uint64_t)got;
        return 0;
    }
}

/* Opens path. Separating open() from reading lets us tell a missing file
 * (the common case: dataset package not installed) from others. */
static int fp__src_open(struct fp__src *s, const char *path, struct fp_error *err)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0) {
        if (errno == ENOENT)
            return fp_error_set(err, FP_EIO,
                                "%s: not found (install it with: apt-get install "
                                "dataset-fashion-mnist, or set [data] path)",
                                path);
        return fp_error_set(err, FP_EIO, "%s: cannot open: %s", path, strerror(errno));
    }
    s->buf = malloc(FP__IN_BYTES);
    if (!s->buf)
        return fp_error_set(err, FP_ENOMEM, "%s: out of memory for its read buffer", path);
    s->zs.next_in = s->buf;
    fp_sha256_init(&s->sha);
    int rc;
    while (s->zs.avail_in < 2 && !s->in_eof)
        if ((rc = fp__src_more(s, err)))
            return rc;
    /* An IDX file starts 00 00 08 0x, so only gzip starts 1f 8b. */
    s->gz = s->zs.avail_in >= 2 && s->buf[0] == 0x1f && s->buf[1] == 0x8b;
    if (s->gz) {
        if (inflateInit2(&s->zs, 16 + MAX_WBITS) != Z_OK) /* 16: gzip wrapper only */
            return fp_error_set(err, FP_ENOMEM, "%s: cannot start zlib's inflate", path);
        s->zinit = 1;
    }
    return 0;
}

static void fp__src_close(struct fp__src *s)
{
    if (s->zinit)
        inflateEnd(&s->zs);
    if (s->fd >= 0)
        close(s->fd);
    free(s->buf);
    s->zinit = 0;
    s->fd = -1;
    s->buf = NULL;
}

/* inflate's refusal, in words: a trailer that does not match is the
 * damage the format exists to catch, so say which check failed. */
static int fp__src_zfail(struct fp__src *s, int zr, const char *what, struct fp_error *err)
{
    if (zr == Z_MEM_ERROR)
        return fp_error_set(err, FP_ENOMEM, "%s: out of memory in zlib's inflate", s->path);
    const char *m = s->zs.msg ? s->zs.msg : "inflate failed";
    if (!strcmp(m, "incorrect data check"))
        m = "the CRC-32 in its trailer does not match the data";
    else if (!strcmp(m, "incorrect length check"))
        m = "the length field in its trailer does not match the data";
    else if (zr == Z_NEED_DICT)
        m = "it asks for a preset dictionary, which gzip never uses";
    return fp_error_set(err, FP_EFORMAT,
                        "%s: corrupt gzip data (%s) while reading %s; the file is damaged: "
                        "get it again",
                        s->path, m, what);
}

/* After a member: 0 at the end of the file, 1 when another member starts
 * (inflate is reset for it), or an error for bytes that are neither. */
static int fp__src_next_member(struct fp__src *s, struct fp_error *err)
{
    int rc;
    while (s->zs.avail_in < 2 && !s->in_eof)
        if ((rc = fp__src_more(s, err)))
            return rc;
    if (s->zs.avail_in == 0)
        return 0;
    if (s->zs.avail_in >= 2 && s->zs.next_in[0] == 0x1f && s->zs.next_in[1] == 0x8b) {
        if (inflateReset(&s->zs) != Z_OK)
            return fp_error_set(err, FP_EFORMAT, "%s: zlib cannot start the next gzip member",
                                s->path);
        s->member_end = 0;
        return 1;
    }
    return fp_error_set(err, FP_EFORMAT,
                        "%s: trailing garbage after the gzip data at byte %" PRIu64
                        " (neither the end of the file nor another gzip member); the file is "
                        "damaged: get it again",
                        s->path, s->raw - s->zs.avail_in);
}

static int fp__truncated(const struct fp__src *s, const char *what, struct fp_error *err)
{
    return fp_error_set(err, FP_EFORMAT, "%s: truncated while reading %s%s", s->path, what,
                        s->gz ? " (the gzip data ends early)" : "");
}

/* Reads exactly len bytes, or fails with "truncated" / the gzip damage. */
static int fp__read(struct fp__src *s, void *out, size_t len, const char *what,
                    struct fp_error *err)
{
    unsigned char *p = out;
    int rc;
    while (len > 0) {
        if (s->gz && s->member_end) {
            if ((rc = fp__src_next_member(s, err)) < 0)
                return rc;
            if (rc == 0)
                return fp__truncated(s, what, err);
        }
        if (!s->zs.avail_in) {
            if ((rc = fp__src_more(s, err)))
                return rc;
            if (!s->zs.avail_in)
                return fp__truncated(s, what, err);
        }
        if (!s->gz) {
            size_t n = len < s->zs.avail_in ? len : s->zs.avail_in;
            memcpy(p, s->zs.next_in, n);
            s->zs.next_in += n;
            s->zs.avail_in -= (unsigned)n;
            p += n;
            len -= n;
            continue;
        }
        unsigned chunk = len > (1u << 30) ? (1u << 30) : (unsigned)len;
        s->zs.next_out = p;
        s->zs.avail_out = chunk;
        int zr = inflate(&s->zs, Z_NO_FLUSH);
        size_t made = chunk - s->zs.avail_out;
        p += made;
        len -= made;
        if (zr == Z_STREAM_END)
            s->member_end = 1;
        else if (zr != Z_OK && zr != Z_BUF_ERROR) /* Z_BUF_ERROR: needs input, read above */
            return fp__src_zfail(s, zr, what, err);
    }
    return 0;
}

/* The end of the file must come right after the last item: any byte more
 * (decompressed or, after the last gzip member, raw) is refused, and so is a
 * gzip member whose trailer is missing or does not match. Then the file's
 * SHA-256 is final. */
static int fp__src_end(struct fp__src *s, struct fp_error *err)
{
    int rc;
    for (;;) {
        if (s->gz && s->member_end) {
            if ((rc = fp__src_next_member(s, err)) < 0)
                return rc;
            if (rc == 0)
                break;
        }
        if (!s->zs.avail_in) {
            if ((rc = fp__src_more(s, err)))
                return rc;
            if (!s->zs.avail_in) {
                if (s->gz)
                    return fp_error_set(err, FP_EFORMAT,
                                        "%s: truncated: the gzip data ends before its trailer "
                                        "(CRC-32 and length) could be checked; the file is "
                                        "damaged: get it again",
                                        s->path);
                break;
            }
        }
        if (!s->gz)
            return fp_error_set(err, FP_EFORMAT,
                                "%s: unexpected bytes after the last item (the file is longer "
                                "than its header says)",
                                s->path);
        unsigned char extra;
        s->zs.next_out = &extra;
        s->zs.avail_out = 1;
        int zr = inflate(&s->zs, Z_NO_FLUSH);
        if (s->zs.avail_out == 0)
            return fp_error_set(err, FP_EFORMAT,
                                "%s: unexpected bytes after the last item (the data is longer "
                                "than its header says)",
                                s->path);
        if (zr == Z_STREAM_END)
            s->member_end = 1;
        else if (zr != Z_OK && zr != Z_BUF_ERROR)
            return fp__src_zfail(s, zr, "the end of the file", err);
    }
    uint8_t h[FP_SHA256_BYTES];
    fp_sha256_final(&s->sha, h);
    sodium_bin2hex(s->hex, sizeof s->hex, h, sizeof h);
    return 0;
}

static uint32_t fp__be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Reads the magic and ndims dimensions. */
static int fp__header(struct fp__src *src, uint32_t want_magic, uint32_t *dims, int ndims,
                      struct fp_error *err)
{
    unsigned char h[16];
    size_t len = 4 + 4 * (size_t)ndims;
    int rc = fp__read(src, h, len, "the header", err);
    if (rc)
        return rc;
    uint32_t magic = fp__be32(h);
    if (magic != want_magic)
        return fp_error_set(
            err, FP_EFORMAT, "%s: bad magic 0x%08x, expected 0x%08x (IDX %s of unsigned bytes)",
            src->path, magic, want_magic, want_magic == FP__IDX_IMAGES ? "images" : "labels");
    for (int i = 0; i < ndims; i++)
        dims[i] = fp__be32(h + 4 + 4 * i);
    return 0;
}

/* The file is read and checked to its end: record it as an input. */
static int fp__done(struct fp__src *src, struct fp_inputs *inputs, struct fp_error *err)
{
    int rc = fp__src_end(src, err);
    if (!rc && inputs)
        rc = fp_inputs_add(inputs, src->path, src->hex, err);
    return rc;
}

/* The images header, checked against the caps: n images of dim pixels. */
static int fp__images_header(struct fp__src *src, size_t *n, size_t *dim, struct fp_error *err)
{
    uint32_t dims[3];
    const char *path = src->path;
    int rc = fp__header(src, FP__IDX_IMAGES, dims, 3, err);
    if (rc)
        return rc;
    if (dims[0] == 0 || dims[0] > FP_IDX_MAX_ITEMS)
        return fp_error_set(err, FP_EFORMAT, "%s: %u images (allowed: 1 to %u)", path, dims[0],
                            FP_IDX_MAX_ITEMS);
    if (dims[1] == 0 || dims[2] == 0 || (uint64_t)dims[1] * dims[2] > FP_IDX_MAX_DIM)
        return fp_error_set(err, FP_EFORMAT, "%s: image size %ux%u (allowed: 1 to %u pixels)", path,
                            dims[1], dims[2], FP_IDX_MAX_DIM);
    *n = dims[0];
    *dim = (size_t)dims[1] * dims[2];
    /* fits: both factors are capped well below 2^32 and 2^20 */
    if (*n * *dim > FP_IDX_MAX_PIXELS)
        return fp_error_set(err, FP_EFORMAT, "%s: %zu images of %zu pixels is more than %zu pixels",
                            path, *n, *dim, (size_t)FP_IDX_MAX_PIXELS);
    return 0;
}

static int fp__load_images(struct fp_dataset *ds, const char *path, struct fp_inputs *inputs,
                           struct fp_error *err)
{
    struct fp__src src;
    size_t n = 0, dim = 0;
    int rc = fp__src_open(&src, path, err);
    if (rc)
        goto fail;
    if ((rc = fp__images_header(&src, &n, &dim, err)))
        goto fail;
    size_t total = n * dim;
    /* The header alone must not decide how much we allocate (a 30-byte file
     * could claim gigabytes): grow the array as pixels actually arrive, so
     * memory is bounded by the file's real content. */
    size_t cap = 0;
    unsigned char buf[1u << 16]; /* bounce buffer: never hold every byte twice */
    for (size_t done = 0; done < total;) {
        size_t len = total - done < sizeof buf ? total - done : sizeof buf;
        rc = fp__read(&src, buf, len, "the pixels", err);
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
    rc = fp__done(&src, inputs, err);
    if (rc)
        goto fail;
    fp__src_close(&src);
    ds->n = n;
    ds->dim = dim;
    return 0;
fail:
    fp__src_close(&src);
    fp_dataset_free(ds);
    return rc;
}

static int fp__load_labels(struct fp_dataset *ds, const char *path, struct fp_inputs *inputs,
                           struct fp_error *err)
{
    struct fp__src src;
    uint32_t n = 0; /* set by fp__header; 0 keeps -Wmaybe-uninitialized quiet at -O3 */
    int rc = fp__src_open(&src, path, err);
    if (rc)
        goto fail;
    rc = fp__header(&src, FP__IDX_LABELS, &n, 1, err);
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
    rc = fp__read(&src, ds->y, n, "the labels", err);
    if (rc)
        goto fail;
    rc = fp__done(&src, inputs, err);
    if (rc)
        goto fail;
    for (uint32_t i = 0; i < n; i++) {
        if (ds->y[i] >= FP_NCLASSES) {
            rc = fp_error_set(err, FP_EFORMAT, "%s: label %u of example %u is not below %u", path,
                              ds->y[i], i, FP_NCLASSES);
            goto fail;
        }
    }
    fp__src_close(&src);
    ds->nclasses = FP_NCLASSES;
    return 0;
fail:
    fp__src_close(&src);
    return rc;
}

int fp_idx_load(struct fp_dataset *ds, const char *images_path, const char *labels_path,
                struct fp_inputs *inputs, struct fp_error *err)
{
    memset(ds, 0, sizeof *ds);
    int rc = fp__load_images(ds, images_path, inputs, err);
    if (rc)
        return rc;
    rc = fp__load_labels(ds, labels_path, inputs, err);
    if (rc)
        fp_dataset_free(ds);
    return rc;
}

/* ---- partial loads: one client's rows, or a labels file alone ----------- */

int fp_idx_load_labels(uint8_t **y, size_t *n, const char *path, struct fp_inputs *inputs,
                       struct fp_error *err)
{
    struct fp__src src;
    uint32_t count = 0;
    uint8_t *lab = NULL;
    *y = NULL;
    *n = 0;
    int rc = fp__src_open(&src, path, err);
    if (rc)
        goto fail;
    if ((rc = fp__header(&src, FP__IDX_LABELS, &count, 1, err)))
        goto fail;
    if (count == 0 || count > FP_IDX_MAX_ITEMS) {
        rc = fp_error_set(err, FP_EFORMAT, "%s: %u labels (allowed: 1 to %u)", path, count,
                          FP_IDX_MAX_ITEMS);
        goto fail;
    }
    /* Grown as labels arrive, as for the pixels: a header is not memory. */
    for (size_t done = 0, cap = 0; done < count;) {
        size_t len = count - done < ((size_t)1 << 16) ? count - done : (size_t)1 << 16;
        if (done + len > cap) {
            cap = cap ? 2 * cap : (size_t)1 << 16;
            if (cap > count)
                cap = count;
            uint8_t *nl = realloc(lab, cap);
            if (!nl) {
                rc = fp_error_set(err, FP_ENOMEM, "%s: out of memory for %u labels", path, count);
                goto fail;
            }
            lab = nl;
        }
        if ((rc = fp__read(&src, lab + done, len, "the labels", err)))
            goto fail;
        done += len;
    }
    if ((rc = fp__done(&src, inputs, err)))
        goto fail;
    for (uint32_t i = 0; i < count; i++) {
        if (lab[i] >= FP_NCLASSES) {
            rc = fp_error_set(err, FP_EFORMAT, "%s: label %u of example %u is not below %u", path,
                              lab[i], i, FP_NCLASSES);
            goto fail;
        }
    }
    fp__src_close(&src);
    *y = lab;
    *n = count;
    return 0;
fail:
    fp__src_close(&src);
    free(lab);
    return rc;
}

/* The images are inflated front to back (gzip cannot seek), one image at a
 * time through a row buffer; a row is converted and kept only when it is
 * the next one wanted. So memory is the kept rows plus the read buffers,
 * whatever the file holds, and the file is still checked (and hashed) to
 * its end exactly as a full load checks it. */
int fp_idx_load_rows(struct fp_dataset *ds, const char *path, size_t want_n,
                     const char *labels_path, const uint32_t *rows, size_t nrows,
                     struct fp_inputs *inputs, struct fp_error *err)
{
    struct fp__src src;
    size_t n = 0, dim = 0, cap = 0, kept = 0;
    unsigned char *row = NULL;
    memset(ds, 0, sizeof *ds);
    int rc = fp__src_open(&src, path, err);
    if (rc)
        goto fail;
    if ((rc = fp__images_header(&src, &n, &dim, err)))
        goto fail;
    if (n != want_n) {
        rc = fp_error_set(err, FP_EFORMAT,
                          "%s: %zu images, but %s has %zu labels; the two files do not belong "
                          "together",
                          path, n, labels_path, want_n);
        goto fail;
    }
    for (size_t i = 0; i < nrows; i++)
        if (rows[i] >= n || (i > 0 && rows[i] <= rows[i - 1])) {
            rc = fp_error_set(err, FP_EINVAL, "%s: row list not ascending below %zu", path, n);
            goto fail;
        }
    if (!(row = malloc(dim))) {
        rc = fp_error_set(err, FP_ENOMEM, "%s: out of memory for one image", path);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if ((rc = fp__read(&src, row, dim, "the pixels", err)))
            goto fail;
        if (kept == nrows || rows[kept] != i)
            continue;
        if (kept == cap) { /* grows with rows that arrived: never sized by a header alone */
            size_t ncap = cap ? 2 * cap : 256;
            if (ncap > nrows)
                ncap = nrows;
            float *nx = realloc(ds->x, ncap * dim * sizeof *nx);
            if (!nx) {
                rc = fp_error_set(err, FP_ENOMEM, "%s: out of memory for %zu images", path, nrows);
                goto fail;
            }
            ds->x = nx;
            cap = ncap;
        }
        float *x = ds->x + kept * dim;
        for (size_t j = 0; j < dim; j++)
            x[j] = (float)row[j] / 255.0f; /* as fp__load_images: the same bits */
        kept++;
    }
    if ((rc = fp__done(&src, inputs, err)))
        goto fail;
    fp__src_close(&src);
    free(row);
    ds->n = nrows;
    ds->dim = dim;
    return 0;
fail:
    fp__src_close(&src);
    free(row);
    fp_dataset_free(ds);
    return rc;
}

int fp_idx_peek_images(const char *path, size_t *n, size_t *dim, struct fp_error *err)
{
    struct fp__src src;
    int rc = fp__src_open(&src, path, err);
    if (!rc)
        rc = fp__images_header(&src, n, dim, err);
    fp__src_close(&src);
    return rc;
}

/* dir/name.gz if it exists, else dir/name if that exists, else dir/name.gz
 * (so that the "not found" message names the file the package installs). */
int fp_idx_pick(char *out, size_t size, const char *dir, const char *name, struct fp_error *err)
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
                   struct fp_inputs *inputs, struct fp_error *err)
{
    char img[4096], lab[4096];
    int rc;
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    if ((rc = fp_idx_pick(img, sizeof img, dir, "train-images-idx3-ubyte", err)) ||
        (rc = fp_idx_pick(lab, sizeof lab, dir, "train-labels-idx1-ubyte", err)) ||
        (rc = fp_idx_load(train, img, lab, inputs, err)))
        return rc;
    if ((rc = fp_idx_pick(img, sizeof img, dir, "t10k-images-idx3-ubyte", err)) ||
        (rc = fp_idx_pick(lab, sizeof lab, dir, "t10k-labels-idx1-ubyte", err)) ||
        (rc = fp_idx_load(test, img, lab, inputs, err)))
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
