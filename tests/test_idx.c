/*
 * tests/test_idx.c — the IDX loader: exact values from small files written
 * here, one specific error per kind of bad file, and the real Fashion-MNIST.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "workloads/dataset.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static char dir[256];
static char img_path[512], lab_path[512];

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Writes header (magic, dims) + body to path, gzip'd if gz. */
static void write_idx(const char *path, int gz, uint32_t magic, const uint32_t *dims, int ndims,
                      const unsigned char *body, size_t len)
{
    unsigned char h[16];
    be32(h, magic);
    for (int i = 0; i < ndims; i++)
        be32(h + 4 + 4 * i, dims[i]);
    size_t hlen = 4 + 4 * (size_t)ndims;
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, h, (unsigned)hlen), (int)hlen);
        if (len)
            assert_int_equal(gzwrite(f, body, (unsigned)len), (int)len);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(h, 1, hlen, f), hlen);
        if (len)
            assert_int_equal(fwrite(body, 1, len, f), len);
        fclose(f);
    }
}

static const unsigned char pixels[3 * 4] = {0, 255, 51, 102, 1, 2, 3, 4, 200, 100, 50, 25};

/* The 16-byte header of write_good's images file, for tests that write
 * its body themselves. */
static void good_images_header(unsigned char h[16])
{
    be32(h, 0x803);
    be32(h + 4, 3);
    be32(h + 8, 2);
    be32(h + 12, 2);
}

/* A good pair: 3 images of 2x2, labels 9 0 3. */
static void write_good(int gz)
{
    uint32_t idims[3] = {3, 2, 2}, ldims[1] = {3};
    unsigned char labels[3] = {9, 0, 3};
    write_idx(img_path, gz, 0x803, idims, 3, pixels, sizeof pixels);
    write_idx(lab_path, gz, 0x801, ldims, 1, labels, 3);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/fp_test_idx.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(img_path, sizeof img_path, "%s/images.gz", dir);
    snprintf(lab_path, sizeof lab_path, "%s/labels.gz", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(img_path);
    unlink(lab_path);
    rmdir(dir);
    return 0;
}

static void check_good(void)
{
    struct fp_dataset ds;
    struct fp_error err = {0};
    assert_int_equal(fp_idx_load(&ds, img_path, lab_path, NULL, &err), 0);
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.dim, 4);
    assert_int_equal(ds.nclasses, 10);
    for (int i = 0; i < 12; i++)
        assert_true(ds.x[i] == (float)pixels[i] / 255.0f);
    assert_true(ds.x[1] == 1.0f && ds.x[0] == 0.0f);
    assert_int_equal(ds.y[0], 9);
    assert_int_equal(ds.y[1], 0);
    assert_int_equal(ds.y[2], 3);
    fp_dataset_free(&ds);
    assert_null(ds.x);
}

static void test_load_gz(void **state)
{
    (void)state;
    write_good(1);
    check_good();
}

static void test_load_plain(void **state)
{
    (void)state;
    write_good(0); /* zlib reads uncompressed files transparently */
    check_good();
}

/* Runs the loader, expects rc and every needle in the message. */
static void expect_error(int rc_want, const char *needle1, const char *needle2)
{
    struct fp_dataset ds;
    struct fp_error err = {0};
    int rc = fp_idx_load(&ds, img_path, lab_path, NULL, &err);
    if (rc != rc_want)
        fail_msg("rc %d, want %d (%s)", rc, rc_want, err.msg);
    if (!strstr(err.msg, needle1) || (needle2 && !strstr(err.msg, needle2)))
        fail_msg("message \"%s\" lacks \"%s\" / \"%s\"", err.msg, needle1, needle2 ? needle2 : "");
    assert_null(ds.x);
    assert_null(ds.y);
    assert_int_equal(ds.n, 0);

    /* A client's partial load (labels alone, then some image rows) refuses
     * the same file, naming it, with the same reason — or, where the two
     * headers disagree, with that (it compares them before the body). */
    uint8_t *y = (uint8_t *)1;
    size_t n = 7;
    struct fp_error perr = {0};
    rc = fp_idx_load_labels(&y, &n, lab_path, NULL, &perr);
    if (rc == 0) {
        const uint32_t rows[2] = {0, (uint32_t)n - 1}; /* the first and the last */
        rc = fp_idx_load_rows(&ds, img_path, n, lab_path, rows, n > 1 ? 2 : 1, NULL, &perr);
        free(y);
        if (rc == 0)
            fp_dataset_free(&ds);
        assert_null(ds.x);
    } else {
        assert_null(y);
        assert_int_equal(n, 0);
    }
    if (rc != rc_want)
        fail_msg("partial load: rc %d, want %d (%s)", rc, rc_want, perr.msg);
    if (!strstr(perr.msg, needle1) ||
        (needle2 && !strstr(perr.msg, needle2) && !strstr(perr.msg, "do not belong together")))
        fail_msg("partial load: message \"%s\" lacks \"%s\" / \"%s\"", perr.msg, needle1,
                 needle2 ? needle2 : "");
}

/* One client's rows: exactly the full load's rows, in order; the labels
 * file alone; a row list that is not ascending is refused. */
static void test_load_rows(void **state)
{
    (void)state;
    for (int gz = 0; gz < 2; gz++) {
        write_good(gz);
        struct fp_dataset ds;
        struct fp_error err = {0};
        uint8_t *y = NULL;
        size_t n = 0;
        assert_int_equal(fp_idx_load_labels(&y, &n, lab_path, NULL, &err), 0);
        assert_int_equal(n, 3);
        assert_int_equal(y[0], 9);
        assert_int_equal(y[1], 0);
        assert_int_equal(y[2], 3);
        free(y);
        struct fp_inputs in = {0};
        const uint32_t rows[2] = {0, 2};
        assert_int_equal(fp_idx_load_rows(&ds, img_path, 3, lab_path, rows, 2, &in, &err), 0);
        assert_int_equal(ds.n, 2);
        assert_int_equal(ds.dim, 4);
        assert_null(ds.y);
        for (int j = 0; j < 4; j++) {
            assert_true(ds.x[j] == (float)pixels[j] / 255.0f);
            assert_true(ds.x[4 + j] == (float)pixels[8 + j] / 255.0f);
        }
        assert_non_null(strstr(in.text, img_path)); /* read whole: an input, hashed */
        fp_inputs_free(&in);
        fp_dataset_free(&ds);
        const uint32_t bad[2] = {2, 1};
        assert_int_equal(fp_idx_load_rows(&ds, img_path, 3, lab_path, bad, 2, NULL, &err),
                         FP_EINVAL);
        assert_null(ds.x);
        size_t pn = 0, pdim = 0;
        assert_int_equal(fp_idx_peek_images(img_path, &pn, &pdim, &err), 0);
        assert_int_equal(pn, 3);
        assert_int_equal(pdim, 4);
    }
}

static void test_truncated_body(void **state)
{
    (void)state;
    write_good(1);
    uint32_t idims[3] = {5, 2, 2}; /* says 5 images, holds 3 */
    write_idx(img_path, 1, 0x803, idims, 3, pixels, sizeof pixels);
    expect_error(FP_EFORMAT, img_path, "truncated while reading the pixels");
}

static void test_truncated_gzip_stream(void **state)
{
    (void)state;
    unsigned char big[4000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(i * 7919 % 251); /* poorly compressible */
    uint32_t idims[3] = {1000, 2, 2}, ldims[1] = {1000};
    unsigned char labels[1000] = {0};
    write_idx(img_path, 1, 0x803, idims, 3, big, sizeof big);
    write_idx(lab_path, 1, 0x801, ldims, 1, labels, sizeof labels);
    struct stat st;
    assert_int_equal(stat(img_path, &st), 0);
    assert_int_equal(truncate(img_path, st.st_size / 2), 0); /* cut the gzip stream itself */
    expect_error(FP_EFORMAT, img_path, "truncated");
}

static void test_bad_magic(void **state)
{
    (void)state;
    write_good(1);
    uint32_t idims[3] = {3, 2, 2};
    write_idx(img_path, 1, 0x801, idims, 3, pixels, sizeof pixels); /* labels magic */
    expect_error(FP_EFORMAT, img_path, "bad magic 0x00000801, expected 0x00000803");
    write_good(1);
    uint32_t ldims[1] = {3};
    unsigned char labels[3] = {1, 2, 3};
    write_idx(lab_path, 1, 0x803, ldims, 1, labels, 3);
    expect_error(FP_EFORMAT, lab_path, "bad magic 0x00000803, expected 0x00000801");
}

static void test_count_mismatch(void **state)
{
    (void)state;
    write_good(1);
    uint32_t ldims[1] = {2};
    unsigned char labels[2] = {1, 2};
    write_idx(lab_path, 1, 0x801, ldims, 1, labels, 2);
    expect_error(FP_EFORMAT, lab_path, "2 labels, but the images file has 3 images");
}

static void test_label_out_of_range(void **state)
{
    (void)state;
    write_good(1);
    uint32_t ldims[1] = {3};
    unsigned char labels[3] = {1, 10, 3};
    write_idx(lab_path, 1, 0x801, ldims, 1, labels, 3);
    expect_error(FP_EFORMAT, lab_path, "label 10 of example 1 is not below 10");
}

static void test_trailing_bytes(void **state)
{
    (void)state;
    write_good(1);
    uint32_t idims[3] = {2, 2, 2}; /* says 2 images, holds 3 */
    write_idx(img_path, 1, 0x803, idims, 3, pixels, sizeof pixels);
    expect_error(FP_EFORMAT, img_path, "unexpected bytes after the last item");
}

/* A header count above the cap is refused before anything is allocated. */
static void test_huge_header(void **state)
{
    (void)state;
    write_good(1);
    uint32_t idims[3] = {0xffffffffu, 28, 28};
    write_idx(img_path, 1, 0x803, idims, 3, pixels, sizeof pixels);
    expect_error(FP_EFORMAT, img_path, "4294967295 images (allowed: 1 to 10000000)");
    uint32_t idims2[3] = {3, 100000, 100000};
    write_idx(img_path, 1, 0x803, idims2, 3, pixels, sizeof pixels);
    expect_error(FP_EFORMAT, img_path, "image size 100000x100000");
}

/* ---- gzip damage: what the format lets us verify (RFC 1952) ------------ */

static unsigned char gzbuf[1 << 16];
static size_t gzlen;

/* Reads path into gzbuf. */
static void slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    gzlen = fread(gzbuf, 1, sizeof gzbuf, f);
    assert_true(gzlen > 18 && gzlen < sizeof gzbuf);
    fclose(f);
}

static void spill(const char *path, const unsigned char *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n)
        assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* The good pair, the images file gzip'd by zlib and held in gzbuf. */
static void good_images_gz(void)
{
    write_good(1);
    slurp(img_path);
    /* a gzip member ends with CRC-32 and ISIZE, little-endian */
    uint32_t isize = (uint32_t)gzbuf[gzlen - 4] | (uint32_t)gzbuf[gzlen - 3] << 8 |
                     (uint32_t)gzbuf[gzlen - 2] << 16 | (uint32_t)gzbuf[gzlen - 1] << 24;
    assert_int_equal(isize, 16 + sizeof pixels);
}

static void test_gz_trailer_cut(void **state)
{
    (void)state;
    /* The whole trailer, the size only, one byte of it: each is refused. */
    static const size_t cut[] = {8, 4, 1, 5};
    for (size_t i = 0; i < sizeof cut / sizeof *cut; i++) {
        good_images_gz();
        spill(img_path, gzbuf, gzlen - cut[i]);
        expect_error(FP_EFORMAT, img_path, "truncated");
    }
    good_images_gz();
    check_good(); /* the intact file still loads */
}

static void test_gz_bad_crc(void **state)
{
    (void)state;
    good_images_gz();
    gzbuf[gzlen - 8] ^= 0x01;
    spill(img_path, gzbuf, gzlen);
    expect_error(FP_EFORMAT, img_path, "the CRC-32 in its trailer does not match the data");
}

static void test_gz_bad_isize(void **state)
{
    (void)state;
    good_images_gz();
    gzbuf[gzlen - 4] ^= 0x40;
    spill(img_path, gzbuf, gzlen);
    expect_error(FP_EFORMAT, img_path, "the length field in its trailer does not match the data");
}

static void test_gz_trailing_garbage(void **state)
{
    (void)state;
    static const char *const tails[] = {"garbage", "\0", "\x1f", "\0\0\0\0\0\0\0\0"};
    static const size_t tail_len[] = {7, 1, 1, 8};
    for (size_t i = 0; i < sizeof tails / sizeof *tails; i++) {
        good_images_gz();
        memcpy(gzbuf + gzlen, tails[i], tail_len[i]);
        spill(img_path, gzbuf, gzlen + tail_len[i]);
        expect_error(FP_EFORMAT, img_path, "trailing garbage after the gzip data");
    }
}

/* The case that trains on damaged data: a stored (uncompressed) deflate
 * block has no check of its own, so a flipped pixel is caught only by the
 * CRC-32 — which is gone when the trailer is cut off as well. */
static void test_gz_damage_without_trailer(void **state)
{
    (void)state;
    write_good(1);
    unsigned char h[16];
    good_images_header(h);
    gzFile f = gzopen(img_path, "wb0"); /* level 0: stored blocks */
    assert_non_null(f);
    assert_int_equal(gzwrite(f, h, 16), 16);
    assert_int_equal(gzwrite(f, pixels, sizeof pixels), (int)sizeof pixels);
    assert_int_equal(gzclose(f), Z_OK);
    slurp(img_path);
    unsigned char *px = memmem(gzbuf, gzlen, pixels, sizeof pixels);
    assert_non_null(px);
    px[5] ^= 0x80;
    spill(img_path, gzbuf, gzlen - 8);
    expect_error(FP_EFORMAT, img_path, "truncated");
}

/* Damage inside the compressed data: the CRC (or inflate itself) sees it. */
static void test_gz_corrupt_body(void **state)
{
    (void)state;
    good_images_gz();
    gzbuf[12] ^= 0x20; /* past the 10-byte header, inside the deflate data */
    spill(img_path, gzbuf, gzlen);
    expect_error(FP_EFORMAT, img_path, "corrupt gzip data");
}

/* RFC 1952 lets a file hold several members, read as one stream (what
 * gzip -d does): the header in one member and the pixels in the next load;
 * a second member holding bytes past the last item is refused as any extra
 * bytes are. */
static void test_gz_members(void **state)
{
    (void)state;
    write_good(1);
    unsigned char h[16];
    good_images_header(h);
    gzFile f = gzopen(img_path, "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, h, 16), 16);
    assert_int_equal(gzclose(f), Z_OK);
    f = gzopen(img_path, "ab");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, pixels, sizeof pixels), (int)sizeof pixels);
    assert_int_equal(gzclose(f), Z_OK);
    check_good();
    f = gzopen(img_path, "ab");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, "x", 1), 1);
    assert_int_equal(gzclose(f), Z_OK);
    expect_error(FP_EFORMAT, img_path, "unexpected bytes after the last item");
}

/* Uncompressed IDX: exactly the bytes the header declares, no more, no less. */
static void test_plain_exact(void **state)
{
    (void)state;
    write_good(0);
    FILE *f = fopen(img_path, "rb");
    assert_non_null(f);
    unsigned char b[64];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    assert_int_equal(n, 16 + sizeof pixels);
    spill(img_path, b, n - 1);
    expect_error(FP_EFORMAT, img_path, "truncated while reading the pixels");
    b[n] = 0;
    spill(img_path, b, n + 1);
    expect_error(FP_EFORMAT, img_path, "unexpected bytes after the last item");
    spill(img_path, b, n);
    check_good();
}

static void test_missing(void **state)
{
    (void)state;
    write_good(1);
    unlink(img_path);
    char want[1024];
    snprintf(want, sizeof want,
             "%s: not found (install it with: apt-get install dataset-fashion-mnist, or set "
             "[data] path)",
             img_path);
    struct fp_dataset ds;
    struct fp_error err = {0};
    assert_int_equal(fp_idx_load(&ds, img_path, lab_path, NULL, &err), FP_EIO);
    assert_string_equal(err.msg, want);

    struct fp_dataset tr, te;
    assert_int_equal(fp_fmnist_load(&tr, &te, dir, NULL, &err), FP_EIO);
    snprintf(want, sizeof want, "%s/train-images-idx3-ubyte.gz: not found", dir);
    assert_non_null(strstr(err.msg, want));
    assert_null(tr.x);
    assert_null(te.x);
}

static void test_real_fmnist(void **state)
{
    (void)state;
    if (access(FMNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0) {
        print_message("no %s (apt-get install dataset-fashion-mnist): skipped\n", FMNIST_DIR);
        skip();
    }
    struct fp_dataset tr, te;
    struct fp_error err = {0};
    if (fp_fmnist_load(&tr, &te, FMNIST_DIR, NULL, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(tr.n, 60000);
    assert_int_equal(te.n, 10000);
    assert_int_equal(tr.dim, 784);
    assert_int_equal(te.dim, 784);
    /* Printed by `/usr/bin/python3 tests/reference/fmnist_facts.py`:
     * labels 9 0 0 3 0 2 7 2 5 5 / 9 2 1 1 6 1 4 6 5 7, 6000 / 1000 per class,
     * first training image's bytes sum to 76247, all training bytes to
     * 3431114169. */
    static const uint8_t first_tr[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
    static const uint8_t first_te[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    assert_memory_equal(tr.y, first_tr, 10);
    assert_memory_equal(te.y, first_te, 10);
    size_t ctr[10] = {0}, cte[10] = {0};
    for (size_t i = 0; i < tr.n; i++)
        ctr[tr.y[i]]++;
    for (size_t i = 0; i < te.n; i++)
        cte[te.y[i]]++;
    for (int c = 0; c < 10; c++) {
        assert_int_equal(ctr[c], 6000);
        assert_int_equal(cte[c], 1000);
    }
    uint64_t s0 = 0, all = 0;
    for (size_t i = 0; i < 784; i++)
        s0 += (uint64_t)(tr.x[i] * 255.0f + 0.5f);
    for (size_t i = 0; i < tr.n * 784; i++)
        all += (uint64_t)(tr.x[i] * 255.0f + 0.5f);
    assert_int_equal(s0, 76247);
    assert_int_equal(all, 3431114169ull);
    fp_dataset_free(&tr);
    fp_dataset_free(&te);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_load_gz),
        cmocka_unit_test(test_load_plain),
        cmocka_unit_test(test_load_rows),
        cmocka_unit_test(test_truncated_body),
        cmocka_unit_test(test_truncated_gzip_stream),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_count_mismatch),
        cmocka_unit_test(test_label_out_of_range),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_huge_header),
        cmocka_unit_test(test_gz_trailer_cut),
        cmocka_unit_test(test_gz_bad_crc),
        cmocka_unit_test(test_gz_bad_isize),
        cmocka_unit_test(test_gz_trailing_garbage),
        cmocka_unit_test(test_gz_damage_without_trailer),
        cmocka_unit_test(test_gz_corrupt_body),
        cmocka_unit_test(test_gz_members),
        cmocka_unit_test(test_plain_exact),
        cmocka_unit_test(test_missing),
        cmocka_unit_test(test_real_fmnist),
    };
    return cmocka_run_group_tests(t, setup, teardown);
}
