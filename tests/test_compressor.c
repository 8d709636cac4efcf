/*
 * tests/test_compressor.c — compressors: exact sizes, hand-made byte
 * layouts, decode(encode(v)) == vhat bit for bit, top-k against a naive
 * full-sort twin, unbiasedness and contraction by Monte Carlo, rand-k's
 * shared mask, and the decoders' rejection of every non-canonical input.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "algorithms/compressor.h"
#include "algorithms/qsgd.h"

/* ---- helpers ---- */

static void init_c(struct fp_compressor *c, enum fp_comp_kind kind, double ratio, uint32_t s,
                   size_t d)
{
    struct fp_comp_spec sp = {.kind = kind, .ratio = ratio, .levels = s};
    struct fp_error err = {0};
    int rc = fp_compressor_init(c, &sp, d, &err);
    if (rc)
        fail_msg("init: %s", err.msg);
}

static size_t bytes_of(enum fp_comp_kind kind, double ratio, uint32_t s, size_t d)
{
    struct fp_compressor c;
    init_c(&c, kind, ratio, s, d);
    return fp_compressor_bytes(&c);
}

static void seed(fp_rng *r, uint64_t key)
{
    fp_rng_seed(r, key, 3, 5, FP_RNG_COMPRESS);
}

static void normal_vec(float *v, size_t d, uint64_t key)
{
    fp_rng r;
    fp_rng_seed(&r, key, 0, FP_RNG_NO_CLIENT, FP_RNG_DATA);
    for (size_t j = 0; j < d; j++)
        v[j] = (float)fp_rng_normal(&r);
}

/* Values from a tiny integer set: many ties, zeros of both signs. */
static void ties_vec(float *v, size_t d, uint64_t key, int span)
{
    fp_rng r;
    fp_rng_seed(&r, key, 1, FP_RNG_NO_CLIENT, FP_RNG_DATA);
    for (size_t j = 0; j < d; j++) {
        int x = (int)fp_rng_below(&r, (uint64_t)(2 * span + 1)) - span;
        v[j] = x == 0 && fp_rng_below(&r, 2) ? -0.0f : (float)x;
    }
}

/* Random finite bit patterns: every exponent, denormals, both zeros. */
static void bits_vec(float *v, size_t d, uint64_t key)
{
    fp_rng r;
    fp_rng_seed(&r, key, 2, FP_RNG_NO_CLIENT, FP_RNG_DATA);
    for (size_t j = 0; j < d; j++) {
        uint32_t u;
        do
            u = (uint32_t)fp_rng_next(&r);
        while ((u & 0x7f800000u) == 0x7f800000u);
        memcpy(&v[j], &u, 4);
    }
}

static double sqnorm(const float *v, size_t d)
{
    double s = 0;
    for (size_t j = 0; j < d; j++)
        s += (double)v[j] * v[j];
    return s;
}

static double sqdist(const float *a, const float *b, size_t d)
{
    double s = 0;
    for (size_t j = 0; j < d; j++)
        s += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
    return s;
}

/* Compresses with key, checks decode == vhat bitwise and that compressing
 * again (without vhat, in a used workspace) gives the same bytes. Returns
 * the encoding (caller frees); vhat_out gets C(v). */
static uint8_t *roundtrip(const struct fp_compressor *c, const float *v, uint64_t key,
                          float *vhat_out)
{
    size_t d = c->d, n = c->bytes;
    void *ws = fp_compressor_ws_new(c);
    void *ws2 = fp_compressor_ws_new(c);
    uint8_t *buf = malloc(n), *buf2 = malloc(n);
    float *vhat = malloc(4 * d), *out = malloc(4 * d), *junk = malloc(4 * d);
    assert_non_null(ws);
    assert_non_null(ws2);
    assert_true(buf && buf2 && vhat && out && junk);
    fp_rng r;
    seed(&r, key);
    assert_int_equal(fp_compressor_compress(c, v, &r, ws, buf, n, vhat), 0);
    seed(&r, key);
    memset(out, 0xff, 4 * d); /* NaN everywhere: decode must write all of out */
    assert_int_equal(fp_compressor_decompress(c, buf, n, &r, ws, out), 0);
    assert_memory_equal(out, vhat, 4 * d);
    for (size_t j = 0; j < d; j++)
        assert_true(isfinite(vhat[j]));

    /* Dirty a second workspace with another vector, then compress again. */
    normal_vec(junk, d, key ^ 0x5555);
    seed(&r, key + 1);
    assert_int_equal(fp_compressor_compress(c, junk, &r, ws2, buf2, n, NULL), 0);
    seed(&r, key);
    assert_int_equal(fp_compressor_compress(c, v, &r, ws2, buf2, n, NULL), 0);
    assert_memory_equal(buf, buf2, n);

    /* vhat may be v itself. */
    memcpy(junk, v, 4 * d);
    seed(&r, key);
    assert_int_equal(fp_compressor_compress(c, junk, &r, ws2, buf2, n, junk), 0);
    assert_memory_equal(junk, vhat, 4 * d);

    if (vhat_out)
        memcpy(vhat_out, vhat, 4 * d);
    fp_compressor_ws_free(c, ws);
    fp_compressor_ws_free(c, ws2);
    free(buf2);
    free(vhat);
    free(out);
    free(junk);
    return buf;
}

static int decode(const struct fp_compressor *c, const uint8_t *in, size_t len, uint64_t key)
{
    void *ws = fp_compressor_ws_new(c);
    float *out = malloc(4 * c->d);
    assert_non_null(ws);
    assert_non_null(out);
    fp_rng r;
    seed(&r, key);
    int rc = fp_compressor_decompress(c, in, len, &r, ws, out);
    if (rc == 0)
        for (size_t j = 0; j < c->d; j++)
            assert_true(isfinite(out[j]));
    fp_compressor_ws_free(c, ws);
    free(out);
    return rc;
}

static void set_bits(uint8_t *buf, size_t bit, uint32_t x, unsigned n)
{
    for (unsigned i = 0; i < n; i++, bit++) {
        buf[bit / 8] &= (uint8_t) ~(1u << (bit % 8));
        buf[bit / 8] |= (uint8_t)(((x >> i) & 1) << (bit % 8));
    }
}

static void put_f32(uint8_t *p, float x)
{
    memcpy(p, &x, 4);
}
static void put_u32(uint8_t *p, uint32_t x)
{
    memcpy(p, &x, 4);
}

static const enum fp_comp_kind all_kinds[] = {FP_COMP_IDENTITY, FP_COMP_TOPK, FP_COMP_RANDK,
                                              FP_COMP_QSGD,     FP_COMP_SIGN, FP_COMP_TOPK_QSGD};

/* ---- sizes ---- */

static void test_sizes(void **state)
{
    (void)state;
    const size_t D = 159010; /* the paper's MLP */
    /* identity: 32 d bits = 4 * 159010 */
    assert_int_equal(bytes_of(FP_COMP_IDENTITY, 0, 0, D), 636040);
    /* k = floor(0.01 * 159010) = floor(1590.1) = 1590; 32k = 50880 <= d:
     * indices, 64k = 101760 bits = 12720 bytes */
    assert_int_equal(bytes_of(FP_COMP_TOPK, 0.01, 0, D), 12720);
    /* randk: 32k = 50880 bits = 6360 bytes */
    assert_int_equal(bytes_of(FP_COMP_RANDK, 0.01, 0, D), 6360);
    /* a decimal ratio means what it says: 0.29 * 100 is 28.999999999999996
     * in binary, but k = 29 (randk: 4k bytes) */
    assert_int_equal(bytes_of(FP_COMP_RANDK, 0.29, 0, 100), 4 * 29);
    assert_int_equal(bytes_of(FP_COMP_RANDK, 0.57, 0, 100), 4 * 57);
    /* a count instead of a ratio: k = 1590 is ratio 0.01's k at d = 159010 */
    struct fp_compressor ck;
    struct fp_error ek;
    struct fp_comp_spec byk = {.kind = FP_COMP_TOPK, .count = 1590};
    assert_int_equal(fp_compressor_init(&ck, &byk, D, &ek), 0);
    assert_int_equal(ck.k, 1590);
    assert_int_equal(fp_compressor_bytes(&ck), 12720);
    byk.count = D + 1;
    assert_int_equal(fp_compressor_init(&ck, &byk, D, &ek), FP_EINVAL);
    /* qsgd:16: b = ceil(log2 17) = 5; 32 + 159010 * 6 = 954092 bits = 119261.5 -> 119262 */
    assert_int_equal(bytes_of(FP_COMP_QSGD, 0, 16, D), 119262);
    /* qsgd:4: b = 3; 32 + 159010 * 4 = 636072 bits = 79509 bytes */
    assert_int_equal(bytes_of(FP_COMP_QSGD, 0, 4, D), 79509);
    /* qsgd:1: b = 1; 32 + 2 * 159010 = 318052 bits = 39756.5 -> 39757 */
    assert_int_equal(bytes_of(FP_COMP_QSGD, 0, 1, D), 39757);
    /* sign: 32 + 159010 = 159042 bits = 19880.25 -> 19881 */
    assert_int_equal(bytes_of(FP_COMP_SIGN, 0, 0, D), 19881);
    /* topk+qsgd:16 at 1%: 32 + 32 * 1590 + 1590 * 6 = 32 + 50880 + 9540 = 60452 bits
     * = 7556.5 -> 7557 */
    assert_int_equal(bytes_of(FP_COMP_TOPK_QSGD, 0.01, 16, D), 7557);

    /* d = 1000, ratio 1/4: k = 250, 32k = 8000 > 1000: bitmap,
     * 8000 + 1000 = 9000 bits = 1125 bytes (125 bitmap + 1000 values) */
    assert_int_equal(bytes_of(FP_COMP_TOPK, 0.25, 0, 1000), 1125);
    /* d = 1001, ratio 1/2: k = floor(500.5) = 500, bitmap: 16000 + 1001 = 17001 bits
     * -> 2126 bytes (126 bitmap + 2000 values) */
    assert_int_equal(bytes_of(FP_COMP_TOPK, 0.5, 0, 1001), 2126);
    /* Tie d == 32k: d = 64, ratio 1/32: k = 2, both 128 bits; indices win: 16 bytes */
    assert_int_equal(bytes_of(FP_COMP_TOPK, 1.0 / 32, 0, 64), 16);
    /* d = 63, ratio 1/32: k = floor(1.97) = 1, 32 <= 63: indices, 8 bytes */
    assert_int_equal(bytes_of(FP_COMP_TOPK, 1.0 / 32, 0, 63), 8);
    /* d = 10, ratio 0.01: floor(0.1) = 0 -> k = 1; 32 > 10: bitmap, 32 + 10 = 42 bits -> 6 */
    assert_int_equal(bytes_of(FP_COMP_TOPK, 0.01, 0, 10), 6);
    /* k = d = 5 (ratio 1): bitmap 5 + 160 = 165 bits -> 21 bytes */
    assert_int_equal(bytes_of(FP_COMP_TOPK, 1.0, 0, 5), 21);
    /* topk+qsgd:4, d = 1000, k = 250, b = 3, bitmap: 32 + 1000 + 250 * 4 = 2032 bits = 254 */
    assert_int_equal(bytes_of(FP_COMP_TOPK_QSGD, 0.25, 4, 1000), 254);
    /* topk+qsgd:3, d = 1001, k = 500, b = 2: 32 + 1001 + 500 * 3 = 2533 bits -> 317 */
    assert_int_equal(bytes_of(FP_COMP_TOPK_QSGD, 0.5, 3, 1001), 317);
    /* qsgd:2^20: b = 21; d = 3: 32 + 3 * 22 = 98 bits -> 13 */
    assert_int_equal(bytes_of(FP_COMP_QSGD, 0, 1u << 20, 3), 13);
    /* qsgd:15: b = 4 (15 fits in 4 bits); d = 7: 32 + 35 = 67 bits -> 9 */
    assert_int_equal(bytes_of(FP_COMP_QSGD, 0, 15, 7), 9);
    /* sign d = 1: 33 bits -> 5; randk d = 1: k = 1, 4 bytes */
    assert_int_equal(bytes_of(FP_COMP_SIGN, 0, 0, 1), 5);
    assert_int_equal(bytes_of(FP_COMP_RANDK, 0.5, 0, 1), 4);

    /* k and the class constants */
    struct fp_compressor c;
    double w, q;
    init_c(&c, FP_COMP_TOPK, 0.01, 0, D);
    assert_int_equal(c.k, 1590);
    assert_int_equal(fp_compressor_unbiased(&c, &w, &q), 0);
    assert_true(q == 1590.0 / 159010.0);
    init_c(&c, FP_COMP_RANDK, 0.01, 0, D);
    assert_int_equal(fp_compressor_unbiased(&c, &w, &q), 1);
    assert_true(w == 159010.0 / 1590.0 - 1);
    init_c(&c, FP_COMP_QSGD, 0, 16, D);
    assert_int_equal(fp_compressor_unbiased(&c, &w, &q), 1);
    assert_true(w == sqrt(159010.0) / 16); /* 24.9 < d/s^2 = 621.1 */
    init_c(&c, FP_COMP_QSGD, 0, 1000, 100);
    assert_int_equal(fp_compressor_unbiased(&c, &w, &q), 1);
    assert_true(w == 100.0 / 1e6); /* d/s^2 = 1e-4 < sqrt(d)/s = 0.01 */
    init_c(&c, FP_COMP_IDENTITY, 0, 0, 7);
    assert_int_equal(fp_compressor_unbiased(&c, &w, &q), 1);
    assert_true(w == 0);
    init_c(&c, FP_COMP_SIGN, 0, 0, 8);
    assert_int_equal(fp_compressor_unbiased(&c, &w, &q), 0);
    assert_true(q == 1.0 / 8);
    init_c(&c, FP_COMP_TOPK_QSGD, 0.01, 16, D);
    assert_int_equal(fp_compressor_unbiased(&c, &w, &q), 0);
    /* omega_k = min(1590/256, sqrt(1590)/16) = min(6.21, 2.49) */
    assert_true(fabs(q - (1590.0 / 159010) / (1 + sqrt(1590.0) / 16)) < 1e-15);
}

/* ---- hand-made layouts ---- */

static void expect_bytes(const struct fp_compressor *c, const float *v, const uint8_t *want)
{
    uint8_t *got = roundtrip(c, v, 1, NULL);
    assert_memory_equal(got, want, c->bytes);
    free(got);
}

static void test_layouts(void **state)
{
    (void)state;
    struct fp_compressor c;

    /* topk bitmap: d = 10, k = 2; |3| ties at 1 and 3 -> index 1 wins;
     * bitmap bits 1, 4 = 0x12, 0x00; values 3.0f, 5.0f */
    init_c(&c, FP_COMP_TOPK, 0.2, 0, 10);
    float v1[10] = {0, 3, 0, -3, 5, 0, 0, 0, 0, 0};
    const uint8_t w1[10] = {0x12, 0x00, 0, 0, 0x40, 0x40, 0, 0, 0xa0, 0x40};
    expect_bytes(&c, v1, w1);

    /* topk indices: d = 64, k = 2; |1| at 5, 7, 63 -> 5 and 7; then -1.0f, 1.0f */
    init_c(&c, FP_COMP_TOPK, 1.0 / 32, 0, 64);
    float v2[64] = {0};
    v2[5] = -1, v2[7] = 1, v2[63] = 1;
    const uint8_t w2[16] = {5, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0x80, 0xbf, 0, 0, 0x80, 0x3f};
    expect_bytes(&c, v2, w2);

    /* qsgd:1 on (0, -5, 0): norm 5, r = (0, 1, 0) exactly, so no randomness;
     * fields (2 bits: sign | level << 1) 0, 3, 0 at bits 32, 34, 36 -> 0x0c */
    init_c(&c, FP_COMP_QSGD, 0, 1, 3);
    float v3[3] = {0, -5, 0};
    const uint8_t w3[5] = {0, 0, 0xa0, 0x40, 0x0c};
    expect_bytes(&c, v3, w3);

    /* sign: d = 10, l1 = 10, scale 1.0f; negative at 1, 3, 9 -> 0x0a, 0x02 */
    init_c(&c, FP_COMP_SIGN, 0, 0, 10);
    float v4[10] = {1, -1, 2, -2, 0, -0.0f, 0, 0, 0, -4};
    const uint8_t w4[6] = {0, 0, 0x80, 0x3f, 0x0a, 0x02};
    expect_bytes(&c, v4, w4);

    /* topk+qsgd:1, d = 10, k = 2: kept {0 (a zero, lowest index), 2}; norm 2.0f;
     * bitmap bits 0, 2 at byte 4 = 0x05; fields at bit 42: 0 then 3 at bit 44 -> byte 5
     * = 0x30; 46 bits -> 6 bytes */
    init_c(&c, FP_COMP_TOPK_QSGD, 0.2, 1, 10);
    float v5[10] = {0, 0, -2, 0, 0, 0, 0, 0, 0, 0};
    const uint8_t w5[6] = {0, 0, 0, 0x40, 0x05, 0x30};
    expect_bytes(&c, v5, w5);
    float vh[10];
    free(roundtrip(&c, v5, 1, vh));
    /* decoded -2 * 1 / (1 * (1 + min(2, sqrt 2))) */
    assert_true(vh[2] == (float)-(2.0 / (1 + sqrt(2.0))));

    /* randk: d = 8, k = 4: four scaled floats; values at the drawn indices are 2 v_j */
    init_c(&c, FP_COMP_RANDK, 0.5, 0, 8);
    float v6[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint8_t *b6 = roundtrip(&c, v6, 9, vh);
    int n = 0;
    float prev = 0;
    for (int j = 0; j < 8; j++)
        if (vh[j] != 0) {
            assert_true(vh[j] == 2 * v6[j]);
            float x;
            memcpy(&x, b6 + 4 * n, 4);
            assert_true(x == vh[j] && x > prev); /* ascending index order */
            prev = x;
            n++;
        }
    assert_int_equal(n, 4);
    free(b6);
}

/* ---- round trips ---- */

static void test_roundtrip(void **state)
{
    (void)state;
    const size_t ds[] = {1, 2, 7, 8, 31, 64, 65, 100, 1000, 4099};
    const double ratios[] = {0.01, 1.0 / 32, 0.1, 0.5, 1.0};
    const uint32_t levels[] = {1, 2, 3, 16, 255, 1u << 20};
    for (size_t a = 0; a < sizeof ds / sizeof ds[0]; a++) {
        size_t d = ds[a];
        float *v = malloc(4 * d), *vh = malloc(4 * d);
        assert_true(v && vh);
        for (int kind_i = 0; kind_i < 6; kind_i++)
            for (size_t ri = 0; ri < 5; ri++)
                for (size_t li = 0; li < 6; li++)
                    for (int vec = 0; vec < 4; vec++) {
                        enum fp_comp_kind kind = all_kinds[kind_i];
                        struct fp_compressor c;
                        init_c(&c, kind, ratios[ri], levels[li], d);
                        uint64_t key = (uint64_t)(a * 1000 + ri * 100 + li * 10 + vec);
                        if (vec == 0)
                            normal_vec(v, d, key);
                        else if (vec == 1)
                            memset(v, 0, 4 * d);
                        else if (vec == 2)
                            ties_vec(v, d, key, 2);
                        else
                            bits_vec(v, d, key);
                        /* qsgd's norm must fit a float32 */
                        if (vec == 3 && (kind == FP_COMP_QSGD || kind == FP_COMP_TOPK_QSGD))
                            for (size_t j = 0; j < d; j++)
                                v[j] *= 1e-20f;
                        /* and rand-k's d/k scaling must not overflow */
                        if (vec == 3 && kind == FP_COMP_RANDK)
                            for (size_t j = 0; j < d; j++)
                                v[j] *= 1e-4f;
                        free(roundtrip(&c, v, key, vh));
                        if (vec == 1)
                            for (size_t j = 0; j < d; j++)
                                assert_true(vh[j] == 0);
                    }
        free(v);
        free(vh);
    }
}

/* QSGD's levels are the two roundings of s |v_j| / norm, and sign's values
 * are +-||v||_1/d with the signs of v. */
static void test_value_rules(void **state)
{
    (void)state;
    const size_t d = 500;
    float v[500], vh[500];
    normal_vec(v, d, 77);
    struct fp_compressor c;
    init_c(&c, FP_COMP_QSGD, 0, 7, d);
    uint8_t *b = roundtrip(&c, v, 4, vh);
    float norm;
    memcpy(&norm, b, 4);
    assert_true(fabs(norm - sqrt(sqnorm(v, d))) <= 1e-6 * norm);
    int lower = 0, upper = 0;
    for (size_t j = 0; j < d; j++) {
        double r = 7.0 * fabs(v[j]) / norm;
        double l = fabs(vh[j]) * 7.0 / norm;
        assert_true(fabs(l - floor(r)) < 1e-4 || fabs(l - ceil(r)) < 1e-4);
        lower += fabs(l - floor(r)) < 1e-4, upper += fabs(l - ceil(r)) < 1e-4;
        assert_true(vh[j] == 0 || signbit(vh[j]) == signbit(v[j]));
    }
    assert_true(lower > 50 && upper > 50); /* both roundings occur */
    free(b);

    init_c(&c, FP_COMP_SIGN, 0, 0, d);
    free(roundtrip(&c, v, 4, vh));
    double l1 = 0;
    for (size_t j = 0; j < d; j++)
        l1 += fabs(v[j]);
    float scale = (float)(l1 / d);
    for (size_t j = 0; j < d; j++)
        assert_true(vh[j] == (v[j] < 0 ? -scale : scale));

    /* l1/d below float32's range: scale 0, and the signs go as zeros */
    init_c(&c, FP_COMP_SIGN, 0, 0, 4);
    float tiny[4] = {-0x1p-149f, 0, 0, 0};
    b = roundtrip(&c, tiny, 4, vh);
    const uint8_t zero5[5] = {0};
    assert_memory_equal(b, zero5, 5);
    for (size_t j = 0; j < 4; j++)
        assert_true(vh[j] == 0 && !signbit(vh[j]));
    free(b);
}

/* ---- top-k against its naive twin ---- */

static const float *cmp_v;
static int cmp_desc(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb, ka, kb;
    if (a == b)
        return 0;
    memcpy(&ka, &cmp_v[a], 4);
    memcpy(&kb, &cmp_v[b], 4);
    ka &= 0x7fffffffu, kb &= 0x7fffffffu;
    if (ka != kb)
        return ka > kb ? -1 : 1;
    return a < b ? -1 : 1;
}

/* The support as the documented layout spells it. */
static void support_of(const struct fp_compressor *c, const uint8_t *b, uint8_t *in)
{
    memset(in, 0, c->d);
    if (c->d >= 32 * c->k) {
        for (size_t i = 0; i < c->k; i++) {
            uint32_t j;
            memcpy(&j, b + 4 * i, 4);
            assert_true(j < c->d);
            in[j] = 1;
        }
    } else {
        for (size_t j = 0; j < c->d; j++)
            in[j] = b[j / 8] >> (j % 8) & 1;
    }
}

static void test_topk_vs_naive(void **state)
{
    (void)state;
    const size_t ds[] = {1, 3, 33, 64, 100, 257, 1000, 5000};
    const double ratios[] = {0.001, 0.01, 1.0 / 32, 0.1, 0.3, 0.5, 0.99, 1.0};
    for (size_t a = 0; a < sizeof ds / sizeof ds[0]; a++)
        for (size_t ri = 0; ri < sizeof ratios / sizeof ratios[0]; ri++)
            for (int rep = 0; rep < 8; rep++) {
                size_t d = ds[a];
                float *v = malloc(4 * d), *vh = malloc(4 * d);
                uint32_t *order = malloc(4 * d);
                uint8_t *want = malloc(d), *got = malloc(d);
                assert_true(v && vh && order && want && got);
                uint64_t key = (uint64_t)(a * 10000 + ri * 100 + (size_t)rep);
                if (rep < 3)
                    ties_vec(v, d, key, rep); /* span 0: all zeros of both signs */
                else if (rep < 5)
                    bits_vec(v, d, key);
                else if (rep < 7)
                    normal_vec(v, d, key);
                else
                    for (size_t j = 0; j < d; j++) /* equal magnitudes, mixed signs */
                        v[j] = (j * 7) % 3 ? 0.5f : -0.5f;
                struct fp_compressor c;
                init_c(&c, FP_COMP_TOPK, ratios[ri], 0, d);
                for (size_t j = 0; j < d; j++)
                    order[j] = (uint32_t)j;
                cmp_v = v;
                qsort(order, d, 4, cmp_desc);
                memset(want, 0, d);
                for (size_t i = 0; i < c.k; i++)
                    want[order[i]] = 1;
                uint8_t *b = roundtrip(&c, v, key, vh);
                support_of(&c, b, got);
                assert_memory_equal(got, want, d);
                for (size_t j = 0; j < d; j++) {
                    float e = want[j] ? v[j] : 0.0f;
                    assert_memory_equal(&vh[j], &e, 4);
                }
                /* topk+qsgd keeps the same support (its norm must fit a float32) */
                if (rep == 3 || rep == 4) {
                    free(b);
                    free(v), free(vh), free(order), free(want), free(got);
                    continue;
                }
                init_c(&c, FP_COMP_TOPK_QSGD, ratios[ri], 5, d);
                free(b);
                b = roundtrip(&c, v, key, vh);
                support_of(&c, b + 4, got);
                assert_memory_equal(got, want, d);
                free(b);
                free(v), free(vh), free(order), free(want), free(got);
            }
}

/* ---- Monte Carlo: unbiased and contractive ---- */

static void mc(const struct fp_compressor *c, const float *v, int M, double *mean, double *sd,
               double *mse)
{
    size_t d = c->d;
    void *ws = fp_compressor_ws_new(c);
    uint8_t *buf = malloc(c->bytes);
    float *vh = malloc(4 * d);
    double *s1 = calloc(d, sizeof *s1), *s2 = calloc(d, sizeof *s2);
    assert_true(ws && buf && vh && s1 && s2);
    *mse = 0;
    for (int m = 0; m < M; m++) {
        fp_rng r;
        fp_rng_seed(&r, 1234, (uint64_t)m, 9, FP_RNG_COMPRESS);
        assert_int_equal(fp_compressor_compress(c, v, &r, ws, buf, c->bytes, vh), 0);
        for (size_t j = 0; j < d; j++)
            s1[j] += vh[j], s2[j] += (double)vh[j] * vh[j];
        *mse += sqdist(vh, v, d);
    }
    *mse /= M;
    for (size_t j = 0; j < d; j++) {
        mean[j] = s1[j] / M;
        sd[j] = sqrt(fmax(s2[j] / M - mean[j] * mean[j], 0));
    }
    fp_compressor_ws_free(c, ws);
    free(buf), free(vh), free(s1), free(s2);
}

static void test_unbiased(void **state)
{
    (void)state;
    const size_t d = 20;
    const int M = 20000;
    float v[20];
    double mean[20], sd[20], mse, w, q;
    normal_vec(v, d, 5);
    v[3] = 0;
    struct {
        enum fp_comp_kind kind;
        double ratio;
        uint32_t s;
    } cs[] = {{FP_COMP_IDENTITY, 0, 0},
              {FP_COMP_RANDK, 0.25, 0},
              {FP_COMP_RANDK, 0.05, 0},
              {FP_COMP_QSGD, 0, 1},
              {FP_COMP_QSGD, 0, 4}};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        struct fp_compressor c;
        init_c(&c, cs[i].kind, cs[i].ratio, cs[i].s, d);
        assert_int_equal(fp_compressor_unbiased(&c, &w, &q), 1);
        mc(&c, v, M, mean, sd, &mse);
        for (size_t j = 0; j < d; j++) {
            /* within 5 standard errors (and exact where there is no noise) */
            double se = sd[j] / sqrt((double)M);
            assert_true(fabs(mean[j] - v[j]) <= 5 * se + 1e-6 * fabs(v[j]));
        }
        /* E||C(v) - v||^2 <= omega ||v||^2, 5% slack for the estimate */
        assert_true(mse <= w * sqnorm(v, d) * 1.05 + 1e-12);
        if (cs[i].kind == FP_COMP_RANDK) /* rand-k meets its omega with equality */
            assert_true(mse >= w * sqnorm(v, d) * 0.95);
    }
}

static void test_contractive(void **state)
{
    (void)state;
    double w, q;
    for (int rep = 0; rep < 50; rep++) {
        size_t d = 1 + (size_t)rep * 37;
        float *v = malloc(4 * d), *vh = malloc(4 * d);
        assert_true(v && vh);
        if (rep % 2)
            normal_vec(v, d, (uint64_t)rep);
        else
            ties_vec(v, d, (uint64_t)rep, 3);
        double n2 = sqnorm(v, d);
        struct fp_compressor c;
        init_c(&c, FP_COMP_TOPK, 0.05 + rep / 60.0, 0, d);
        assert_int_equal(fp_compressor_unbiased(&c, &w, &q), 0);
        free(roundtrip(&c, v, 1, vh));
        assert_true(sqdist(vh, v, d) <= (1 - q) * n2 * (1 + 1e-6) + 1e-30);

        init_c(&c, FP_COMP_SIGN, 0, 0, d);
        assert_int_equal(fp_compressor_unbiased(&c, &w, &q), 0);
        free(roundtrip(&c, v, 1, vh));
        double l1 = 0;
        for (size_t j = 0; j < d; j++)
            l1 += fabs(v[j]);
        double qv = n2 > 0 ? l1 * l1 / (d * n2) : 1;
        assert_true(qv >= q * (1 - 1e-9));
        assert_true(sqdist(vh, v, d) <= (1 - qv) * n2 + 1e-5 * n2 + 1e-30);
        free(v), free(vh);
    }

    /* topk+qsgd, in expectation. s = 1 and k = 32 make QSGD's variance far
     * above ||x||^2, so without the 1/(1 + omega_k) scaling this fails. */
    const size_t d = 64;
    float v[64];
    double mean[64], sd[64], mse;
    normal_vec(v, d, 99);
    for (uint32_t s = 1; s <= 16; s *= 4) {
        struct fp_compressor c;
        init_c(&c, FP_COMP_TOPK_QSGD, 0.5, s, d);
        assert_int_equal(fp_compressor_unbiased(&c, &w, &q), 0);
        mc(&c, v, 20000, mean, sd, &mse);
        assert_true(mse <= (1 - q) * sqnorm(v, d) * 1.02);
    }
}

/* ---- rand-k's shared mask ---- */

static void test_randk_keys(void **state)
{
    (void)state;
    const size_t d = 1000;
    float v[1000], a[1000], b[1000], out[1000];
    for (size_t j = 0; j < d; j++)
        v[j] = 1.0f + (float)j; /* no zeros: the support of C(v) is the mask */
    struct fp_compressor c;
    init_c(&c, FP_COMP_RANDK, 0.01, 0, d);
    uint8_t *e1 = roundtrip(&c, v, 42, a);
    uint8_t *e2 = roundtrip(&c, v, 42, b);
    assert_memory_equal(a, b, sizeof a); /* same key, same mask */
    free(e2);
    e2 = roundtrip(&c, v, 43, b);
    int differ = 0;
    for (size_t j = 0; j < d; j++)
        differ += (a[j] != 0) != (b[j] != 0);
    assert_true(differ > 0); /* another key, another mask */

    /* The mask never travels: decoding with the wrong key "succeeds" and
     * puts the values in the wrong places. This is why both sides must key
     * the stream with (seed, round, client, FP_RNG_COMPRESS). */
    void *ws = fp_compressor_ws_new(&c);
    fp_rng r;
    seed(&r, 43);
    assert_int_equal(fp_compressor_decompress(&c, e1, c.bytes, &r, ws, out), 0);
    assert_true(memcmp(out, a, sizeof a) != 0);
    /* decompress consumes the stream exactly as compress did */
    seed(&r, 42);
    assert_int_equal(fp_compressor_decompress(&c, e1, c.bytes, &r, ws, out), 0);
    fp_rng r2;
    seed(&r2, 42);
    uint8_t tmp[40];
    assert_int_equal(fp_compressor_compress(&c, v, &r2, ws, tmp, sizeof tmp, NULL), 0);
    assert_true(fp_rng_next(&r) == fp_rng_next(&r2));
    fp_compressor_ws_free(&c, ws);
    free(e1), free(e2);
}

/* ---- decoders reject ---- */

static void test_reject_length(void **state)
{
    (void)state;
    const size_t ds[] = {1, 10, 64, 1000};
    for (size_t a = 0; a < 4; a++)
        for (int i = 0; i < 6; i++) {
            size_t d = ds[a];
            float *v = malloc(4 * d);
            assert_non_null(v);
            normal_vec(v, d, 3);
            struct fp_compressor c;
            init_c(&c, all_kinds[i], 0.1, 3, d);
            uint8_t *e = roundtrip(&c, v, 1, NULL);
            uint8_t *big = calloc(c.bytes + 1, 1);
            assert_non_null(big);
            memcpy(big, e, c.bytes);
            assert_int_equal(decode(&c, big, c.bytes, 1), 0);
            assert_int_equal(decode(&c, big, c.bytes - 1, 1), FP_EFORMAT);
            assert_int_equal(decode(&c, big, c.bytes + 1, 1), FP_EFORMAT);
            assert_int_equal(decode(&c, big, 0, 1), FP_EFORMAT);
            free(big), free(e), free(v);
        }
}

static void test_reject_content(void **state)
{
    (void)state;
    struct fp_compressor c;
    float v[1001]; /* the largest d below */
    normal_vec(v, 1001, 8);
    uint8_t *e, m[8192];
    const float nan = NAN, inf = INFINITY;
#define MUT(expr)                                                                                  \
    do {                                                                                           \
        memcpy(m, e, c.bytes);                                                                     \
        expr;                                                                                      \
        assert_int_equal(decode(&c, m, c.bytes, 1), FP_EFORMAT);                                   \
    } while (0)

    /* identity */
    init_c(&c, FP_COMP_IDENTITY, 0, 0, 10);
    e = roundtrip(&c, v, 1, NULL);
    MUT(put_f32(m + 8, nan));
    MUT(put_f32(m + 36, -inf));
    free(e);

    /* topk, indices: d = 1000, k = 10; indices at 0..39, values at 40..79 */
    init_c(&c, FP_COMP_TOPK, 0.01, 0, 1000);
    e = roundtrip(&c, v, 1, NULL);
    uint32_t i0, i1;
    memcpy(&i0, e, 4), memcpy(&i1, e + 4, 4);
    MUT(put_u32(m, i1); put_u32(m + 4, i0)); /* decreasing */
    MUT(put_u32(m + 4, i0));                 /* repeated */
    MUT(put_u32(m + 36, 1000));              /* out of range */
    MUT(put_u32(m + 36, UINT32_MAX));
    MUT(put_f32(m + 40, nan));
    MUT(put_f32(m + 76, inf));
    free(e);

    /* topk, bitmap: d = 1001, k = 500; 126 bitmap bytes, bit 1001.. padding */
    init_c(&c, FP_COMP_TOPK, 0.5, 0, 1001);
    e = roundtrip(&c, v, 1, NULL);
    size_t off = 0;
    while (!(e[off / 8] >> (off % 8) & 1))
        off++;
    MUT(m[off / 8] ^= (uint8_t)(1u << (off % 8))); /* popcount 499 */
    {
        size_t z = 0;
        while (e[z / 8] >> (z % 8) & 1)
            z++;
        MUT(m[z / 8] |= (uint8_t)(1u << (z % 8))); /* popcount 501 */
    }
    MUT(m[125] |= 0x02); /* padding bit 1001 */
    MUT(m[125] |= 0x80); /* padding bit 1007 */
    MUT(put_f32(m + 126, nan));
    MUT(put_f32(m + 126 + 4 * 499, -inf));
    free(e);

    /* randk */
    init_c(&c, FP_COMP_RANDK, 0.1, 0, 100);
    e = roundtrip(&c, v, 1, NULL);
    MUT(put_f32(m + 4, inf));
    MUT(put_f32(m, nan));
    free(e);

    /* qsgd:4 (b = 3, 4-bit fields), d = 3: 32 + 12 = 44 bits -> 6 bytes */
    init_c(&c, FP_COMP_QSGD, 0, 4, 3);
    e = roundtrip(&c, v, 1, NULL);
    assert_int_equal(c.bytes, 6);
    MUT(set_bits(m, 32, 5 << 1, 4));     /* level 5 > s */
    MUT(set_bits(m, 40, 7 << 1 | 1, 4)); /* level 7 > s */
    MUT(m[5] |= 0x10);                   /* padding bit 44 */
    MUT(m[5] |= 0x80);                   /* padding bit 47 */
    MUT(put_f32(m, nan));                /* norm */
    MUT(put_f32(m, inf));
    MUT(put_f32(m, -1.0f)); /* negative norm */
    MUT(put_f32(m, -0.0f));
    MUT(put_f32(m, 0.0f); set_bits(m, 32, 1 << 1, 4)); /* zero norm, non-zero level */
    MUT(put_f32(m, 0.0f); set_bits(m, 32, 0x0, 12); set_bits(m, 36, 1, 1)); /* sign only */
    memcpy(m, e, c.bytes);
    set_bits(m, 32, 4 << 1 | 1, 4); /* level == s is fine */
    assert_int_equal(decode(&c, m, c.bytes, 1), 0);
    free(e);

    /* sign, d = 10: 42 bits -> 6 bytes */
    init_c(&c, FP_COMP_SIGN, 0, 0, 10);
    e = roundtrip(&c, v, 1, NULL);
    MUT(put_f32(m, nan));
    MUT(put_f32(m, inf));
    MUT(put_f32(m, -2.0f));
    MUT(m[5] |= 0x04);               /* padding bit 42 */
    MUT(put_f32(m, 0.0f); m[4] = 1); /* zero scale with a minus sign */
    memcpy(m, e, c.bytes);
    put_f32(m, 0.0f);
    memset(m + 4, 0, 2);
    assert_int_equal(decode(&c, m, c.bytes, 1), 0);
    free(e);

    /* topk+qsgd:4, indices: d = 1000, k = 10: norm, 40 index bytes, 10 4-bit
     * fields from bit 352: 392 bits = 49 bytes exactly */
    init_c(&c, FP_COMP_TOPK_QSGD, 0.01, 4, 1000);
    e = roundtrip(&c, v, 1, NULL);
    assert_int_equal(c.bytes, 49);
    memcpy(&i0, e + 4, 4), memcpy(&i1, e + 8, 4);
    MUT(put_u32(m + 4, i1); put_u32(m + 8, i0));
    MUT(put_u32(m + 40, 1000));
    MUT(set_bits(m, 352, 5 << 1, 4));
    MUT(set_bits(m, 388, 6 << 1, 4));
    MUT(put_f32(m, nan));
    MUT(put_f32(m, -1.0f));
    free(e);

    /* topk+qsgd:4, bitmap: d = 1001, k = 500: fields from bit 1033, 3033 bits
     * -> 380 bytes, padding bits 3033..3039 */
    init_c(&c, FP_COMP_TOPK_QSGD, 0.5, 4, 1001);
    e = roundtrip(&c, v, 1, NULL);
    assert_int_equal(c.bytes, 380);
    off = 32;
    while (!(e[off / 8] >> (off % 8) & 1))
        off++;
    MUT(m[off / 8] ^= (uint8_t)(1u << (off % 8)));
    MUT(set_bits(m, 1033, 7 << 1, 4));
    MUT(set_bits(m, 1033 + 499 * 4, 5 << 1, 4));
    MUT(m[379] |= 0x02);
    MUT(m[379] |= 0x80);
    free(e);
#undef MUT
}

/* ---- compress and init errors ---- */

static void test_compress_errors(void **state)
{
    (void)state;
    float v[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    uint8_t out[128];
    fp_rng r;
    seed(&r, 1);
    for (int i = 0; i < 6; i++) {
        struct fp_compressor c;
        init_c(&c, all_kinds[i], 0.5, 2, 16);
        void *ws = fp_compressor_ws_new(&c);
        assert_non_null(ws);
        assert_int_equal(fp_compressor_compress(&c, v, &r, ws, out, c.bytes - 1, NULL), FP_EINVAL);
        int random = all_kinds[i] == FP_COMP_RANDK || all_kinds[i] == FP_COMP_QSGD ||
                     all_kinds[i] == FP_COMP_TOPK_QSGD;
        assert_int_equal(fp_compressor_compress(&c, v, NULL, ws, out, sizeof out, NULL),
                         random ? FP_EINVAL : 0);
        float w[16];
        memcpy(w, v, sizeof w);
        w[5] = NAN;
        if (all_kinds[i] != FP_COMP_RANDK) /* rand-k reads only its mask */
            assert_int_equal(fp_compressor_compress(&c, w, &r, ws, out, sizeof out, NULL),
                             FP_EINVAL);
        for (int j = 0; j < 16; j++)
            w[j] = INFINITY;
        assert_int_equal(fp_compressor_compress(&c, w, &r, ws, out, sizeof out, NULL), FP_EINVAL);
        fp_compressor_ws_free(&c, ws);
    }
    /* qsgd's float32 norm overflows */
    struct fp_compressor c;
    init_c(&c, FP_COMP_QSGD, 0, 2, 16);
    void *ws = fp_compressor_ws_new(&c);
    float big[16];
    for (int j = 0; j < 16; j++)
        big[j] = 3e38f;
    assert_int_equal(fp_compressor_compress(&c, big, &r, ws, out, sizeof out, NULL), FP_EINVAL);
    fp_compressor_ws_free(&c, ws);
    /* rand-k: d/k scaling overflows */
    init_c(&c, FP_COMP_RANDK, 0.25, 0, 16);
    ws = fp_compressor_ws_new(&c);
    assert_int_equal(fp_compressor_compress(&c, big, &r, ws, out, sizeof out, NULL), FP_EINVAL);
    fp_compressor_ws_free(&c, ws);
}

static void test_init_errors(void **state)
{
    (void)state;
    struct fp_compressor c;
    struct fp_error err;
    struct {
        enum fp_comp_kind kind;
        double ratio;
        uint32_t s;
        size_t d;
        const char *word;
    } bad[] = {
        {FP_COMP_TOPK, 0, 0, 100, "ratio"},
        {FP_COMP_TOPK, 1.5, 0, 100, "ratio"},
        {FP_COMP_RANDK, -0.1, 0, 100, "ratio"},
        {FP_COMP_RANDK, NAN, 0, 100, "ratio"},
        {FP_COMP_TOPK_QSGD, 0, 4, 100, "ratio"},
        {FP_COMP_QSGD, 0.1, 0, 100, "levels"},
        {FP_COMP_TOPK_QSGD, 0.1, 0, 100, "levels"},
        {FP_COMP_QSGD, 0, (1u << 20) + 1, 9, "levels"},
        {FP_COMP_IDENTITY, 0, 0, 0, "d = 0"},
        {FP_COMP_SIGN, 0, 0, 0, "d = 0"},
        {(enum fp_comp_kind)0, 0.1, 1, 10, "unknown"},
        {(enum fp_comp_kind)7, 0.1, 1, 10, "unknown"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fp_comp_spec sp = {.kind = bad[i].kind, .ratio = bad[i].ratio, .levels = bad[i].s};
        memset(&err, 0, sizeof err);
        assert_int_equal(fp_compressor_init(&c, &sp, bad[i].d, &err), FP_EINVAL);
        assert_int_equal(err.code, FP_EINVAL);
        assert_non_null(strstr(err.msg, bad[i].word));
    }
    /* ratio and levels matter only where they are used */
    struct fp_comp_spec sp = {.kind = FP_COMP_QSGD, .ratio = 0, .levels = 1u << 20};
    assert_int_equal(fp_compressor_init(&c, &sp, 5, &err), 0);
    sp = (struct fp_comp_spec){.kind = FP_COMP_TOPK, .ratio = 1, .levels = 0};
    assert_int_equal(fp_compressor_init(&c, &sp, 5, &err), 0);
    assert_int_equal(c.k, 5);
}

/* ---- QSGD's rounding rule: reference vector, and every implementation ---- */

/* From tests/reference/qsgd_reference.py: qsgd:4 of 100 coordinates, norm
 * exactly 2^14, with eight coordinates placed on ties (six decided by a
 * further draw, two exact), under the stream (7, 1, 2, COMPRESS). */
static const uint32_t qref_x[100] = {0x4650df15, 0x41bf982b, 0xc193196d, 0x451e9d80, 0xc0d2d665, 0xc180cd70, 0x41371a86, 0xc1eec4cd, 0xc1ba9063, 0x40e5697e, 0x00000000, 0x80000000, 0x4185622b, 0x400c799f, 0xc1939544, 0xc1ffea13, 0xc1bba538, 0xc516d980, 0xbf6f8587, 0x40d8f129, 0x41b60c5e, 0x45355500, 0x3f1544b5, 0xc1a6e968, 0x41ff9936, 0xc17a5422, 0xc1baabce, 0xc19d72c2, 0x40d1e8a8, 0x41e14983, 0x4189b33d, 0x40ecd966, 0x41b0d2cd, 0x40ccf756, 0xc035dcd4, 0x4187c066, 0xc19a1706, 0xc1b71ea8, 0xc1e96720, 0x41f8d28a, 0x45d7a440, 0x40d9bf87, 0x40b95327, 0x3fd8c12b, 0xc191252e, 0x41ffdfbf, 0xc1f82221, 0xc1c6ed45, 0x41a67ce4, 0xbfe263e3, 0xc194a88c, 0x40da75ef, 0xc14772ca, 0x3fb1e64d, 0x40e7729b, 0xc0c3685a, 0x41195642, 0x41e38b40, 0xc1abdbc2, 0xc0844505, 0xc10ed380, 0x417b0dd3, 0xc134c03d, 0xc1b44d91, 0xc56a5e80, 0x41c7128a, 0x41e6d4c9, 0x41869e78, 0x4016bf61, 0xc18521da, 0x411c846b, 0xc1c4a935, 0xc1d03a8b, 0xc13820d4, 0x41f9c00c, 0x40c5f534, 0x41e0e2f0, 0x44cd0000, 0xc19b5adb, 0x41bc70af, 0xc0e7a599, 0xbfdcdc05, 0x3d00959f, 0x4138efa3, 0xc1647648, 0x40ac97b3, 0xc140ea62, 0xc1fccd18, 0xc18d8675, 0x41b1da52, 0x414b4f29, 0x410cde7f, 0x40134c0b, 0xc1b851ec, 0xc1698254, 0x44ec7500, 0x41b6f5a3, 0xc481c300, 0x40f03913, 0x41425b11};
static const uint8_t qref_msg[54] = {0x00, 0x00, 0x80, 0x46, 0x08, 0x01, 0x11, 0x10, 0x01, 0x00, 0x00, 0x11, 0x11, 0x01, 0x00, 0x10, 0x10, 0x11, 0x00, 0x00, 0x00, 0x01, 0x11, 0x01, 0x02, 0x00, 0x01, 0x11, 0x10, 0x01, 0x01, 0x10, 0x00, 0x11, 0x01, 0x11, 0x03, 0x00, 0x10, 0x10, 0x31, 0x00, 0x00, 0x01, 0x11, 0x00, 0x01, 0x11, 0x01, 0x00, 0x10, 0x01, 0x30, 0x00};
static const uint32_t qref_xhat[100] = {0x46800000, 0x00000000, 0x80000000, 0x00000000, 0x80000000, 0x80000000, 0x00000000, 0x80000000, 0x80000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x80000000, 0x80000000, 0x80000000, 0x80000000, 0x80000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x80000000, 0x00000000, 0x80000000, 0x80000000, 0x80000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x80000000, 0x00000000, 0x80000000, 0x80000000, 0x80000000, 0x00000000, 0x45800000, 0x00000000, 0x00000000, 0x00000000, 0x80000000, 0x00000000, 0x80000000, 0x80000000, 0x00000000, 0x80000000, 0x80000000, 0x00000000, 0x80000000, 0x00000000, 0x00000000, 0x80000000, 0x00000000, 0x00000000, 0x80000000, 0x80000000, 0x80000000, 0x00000000, 0x80000000, 0x80000000, 0xc5800000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x80000000, 0x00000000, 0x80000000, 0x80000000, 0xc5800000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x80000000, 0x00000000, 0x80000000, 0x80000000, 0x00000000, 0x00000000, 0x80000000, 0x00000000, 0x80000000, 0x80000000, 0x80000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x80000000, 0x80000000, 0x00000000, 0x00000000, 0xc5800000, 0x00000000, 0x00000000};
static const uint64_t qref_next = 0x9d25c2dce00fdd57ULL; /* after 6 tie draws */

static void load_bits(float *v, const uint32_t *bits, size_t n)
{
    memcpy(v, bits, n * sizeof *v);
}

static void test_qsgd_reference(void **state)
{
    (void)state;
    enum { N = 100 };
    float x[N], xhat[N];
    load_bits(x, qref_x, N);
    /* Through the compressor (norm included), with the CPU's best code. */
    struct fp_compressor c;
    init_c(&c, FP_COMP_QSGD, 0, 4, N);
    assert_int_equal(fp_compressor_bytes(&c), sizeof qref_msg);
    void *ws = fp_compressor_ws_new(&c);
    uint8_t msg[sizeof qref_msg];
    fp_rng r;
    fp_rng_seed(&r, 7, 1, 2, FP_RNG_COMPRESS);
    assert_int_equal(fp_compressor_compress(&c, x, &r, ws, msg, sizeof msg, xhat), 0);
    assert_memory_equal(msg, qref_msg, sizeof msg);
    assert_memory_equal(xhat, qref_xhat, sizeof xhat);
    assert_true(fp_rng_next(&r) == qref_next);
    float dec[N];
    assert_int_equal(fp_compressor_decompress(&c, msg, sizeof msg, &r, ws, dec), 0);
    assert_memory_equal(dec, qref_xhat, sizeof dec);
    fp_compressor_ws_free(&c, ws);
    /* The quantiser alone, with each implementation this CPU runs. */
    float tab[5];
    for (uint32_t l = 0; l <= 4; l++)
        tab[l] = fp_qsgd_level(16384.0f, l, 4.0);
    for (int isa = FP_QSGD_PORTABLE; isa <= fp_qsgd_isa(); isa++) {
        uint8_t m2[sizeof qref_msg] = {0};
        memcpy(m2, qref_msg, 4);
        struct fp_qsgd_job job = {.x = x, .n = N, .s = 4, .norm = 16384.0f, .denom = 4.0,
                                  .buf = m2, .bit = 32, .end = sizeof m2, .xhat = xhat,
                                  .tab = tab};
        memset(xhat, 0xff, sizeof xhat);
        fp_rng_seed(&r, 7, 1, 2, FP_RNG_COMPRESS);
        fp_qsgd_quantise_isa(&job, &r, isa);
        assert_memory_equal(m2, qref_msg, sizeof m2);
        assert_memory_equal(xhat, qref_xhat, sizeof xhat);
        assert_true(fp_rng_next(&r) == qref_next);
    }
}

/* One quantisation with a given implementation: the fields from bit `bit`
 * of a buffer whose first bits are ones (they must survive), the decoded
 * values (xmode 0: none, 1: separate, 2: in place over a copy of x), and the
 * caller's stream afterwards. */
struct qrun {
    uint8_t *buf;
    float *xhat;
    uint64_t next;
};

/* The tests of the vector QSGD code against the portable code need a vector
 * implementation: there is none when FEDPRESS_SIMD caps the code at portable
 * or the CPU has no AVX2. They then skip with the reason: having compared
 * nothing, they must not pass. */
static void need_vector_code(void)
{
    if (fp_qsgd_isa() > FP_QSGD_PORTABLE)
        return;
    const char *cap = getenv("FEDPRESS_SIMD");
    print_message("skipped: no vector QSGD code to compare with the portable code (%s)\n",
                  cap && fp_qsgd_isa_parse(cap) == FP_QSGD_PORTABLE ? "FEDPRESS_SIMD=portable"
                                                                    : "this CPU has no AVX2");
    skip();
}

static void qsgd_run(const float *x, size_t n, uint32_t s, size_t bit, int xmode, int isa,
                     struct qrun *out)
{
    unsigned fb = 33u - (unsigned)__builtin_clz(s);
    size_t end = (bit + n * fb + 7) / 8;
    out->buf = calloc(end + 1, 1);
    out->xhat = malloc((n + 1) * sizeof *out->xhat);
    assert_non_null(out->buf);
    assert_non_null(out->xhat);
    memset(out->buf, 0xff, bit / 8);
    if (bit % 8)
        out->buf[bit / 8] = (uint8_t)((1u << (bit % 8)) - 1);
    out->buf[end] = 0xa5; /* a guard byte past the message */
    double sq = 0;
    for (size_t j = 0; j < n; j++)
        sq += (double)x[j] * x[j];
    float norm = (float)sqrt(sq), *tab = NULL;
    size_t ntab = s <= 4096 ? s + 1 : 0;
    if (ntab) {
        tab = malloc(ntab * sizeof *tab);
        assert_non_null(tab);
        for (uint32_t l = 0; l <= s; l++)
            tab[l] = fp_qsgd_level(norm, l, (double)s);
    }
    if (xmode == 2)
        memcpy(out->xhat, x, n * sizeof *x);
    struct fp_qsgd_job job = {.x = xmode == 2 ? out->xhat : x, .n = n, .s = s, .norm = norm,
                              .denom = (double)s, .buf = out->buf, .bit = bit, .end = end,
                              .xhat = xmode ? out->xhat : NULL, .tab = tab};
    fp_rng r;
    fp_rng_seed(&r, s * 1000003u + n, bit, (uint64_t)xmode, FP_RNG_COMPRESS);
    fp_qsgd_quantise_isa(&job, &r, isa);
    out->next = fp_rng_next(&r);
    assert_int_equal(out->buf[end], 0xa5);
    free(tab);
}

/* Every implementation gives the portable one's bytes: levels with fields
 * of 2 to 11 bits (the vector code takes up to 8), lengths around the
 * 32-coordinate blocks, byte-aligned and unaligned starts (only aligned
 * ones reach the vector code), decoded values none / separate / in place. */
static void test_qsgd_implementations(void **state)
{
    (void)state;
    static const uint32_t ss[] = {1, 2, 3, 4, 5, 7, 8, 15, 16, 31, 32, 33, 63, 64, 127, 128, 1000};
    static const size_t ns[] = {0, 1, 31, 32, 33, 63, 64, 65, 96, 97, 127, 128, 129, 1000, 4099};
    static const size_t bits[] = {32, 37};
    need_vector_code();
    size_t nmax = 4099;
    float *x = malloc(nmax * sizeof *x);
    assert_non_null(x);
    int compared = 0;
    for (size_t si = 0; si < sizeof ss / sizeof ss[0]; si++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            size_t n = ns[ni];
            if (si % 2)
                normal_vec(x, n, 100 + n);
            else
                ties_vec(x, n, 200 + n, 3);
            for (size_t bi = 0; bi < 2; bi++)
                for (int xmode = 0; xmode < 3; xmode++) {
                    struct qrun ref, got;
                    qsgd_run(x, n, ss[si], bits[bi], xmode, FP_QSGD_PORTABLE, &ref);
                    size_t len = (bits[bi] + n * (33u - (unsigned)__builtin_clz(ss[si])) + 7) / 8;
                    for (int isa = FP_QSGD_PORTABLE + 1; isa <= fp_qsgd_isa(); isa++) {
                        qsgd_run(x, n, ss[si], bits[bi], xmode, isa, &got);
                        assert_memory_equal(got.buf, ref.buf, len);
                        if (xmode)
                            assert_memory_equal(got.xhat, ref.xhat, n * sizeof *x);
                        assert_true(got.next == ref.next);
                        free(got.buf);
                        free(got.xhat);
                        compared++;
                    }
                    free(ref.buf);
                    free(ref.xhat);
                }
        }
    free(x);
    print_message("qsgd: %d comparisons against the portable code (best here: %s)\n", compared,
                  fp_qsgd_isa_name(fp_qsgd_isa()));
    /* every (s, n, bit, xmode) against each vector implementation */
    assert_int_equal(compared, (int)(sizeof ss / sizeof ss[0] * sizeof ns / sizeof ns[0] * 2 * 3) *
                                   fp_qsgd_isa());
}

/* Ties in the wild: 2^21 coordinates of qsgd:4 take about 30 tie draws;
 * every implementation takes the same ones. */
static void test_qsgd_tie_draws(void **state)
{
    (void)state;
    size_t n = (size_t)1 << 21;
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    normal_vec(x, n, 5);
    struct qrun ref, got;
    qsgd_run(x, n, 4, 32, 1, FP_QSGD_PORTABLE, &ref);
    fp_rng r;
    fp_rng_seed(&r, 4 * 1000003u + n, 32, 1, FP_RNG_COMPRESS);
    fp_rng_next(&r); /* the lanes' key: a run without ties would stop here */
    assert_true(fp_rng_next(&r) != ref.next);
    if (fp_qsgd_isa() == FP_QSGD_PORTABLE) {
        free(ref.buf);
        free(ref.xhat);
        free(x);
        need_vector_code();
    }
    for (int isa = FP_QSGD_PORTABLE + 1; isa <= fp_qsgd_isa(); isa++) {
        qsgd_run(x, n, 4, 32, 1, isa, &got);
        assert_memory_equal(got.buf, ref.buf, (32 + n * 4) / 8);
        assert_memory_equal(got.xhat, ref.xhat, n * sizeof *x);
        assert_true(got.next == ref.next);
        free(got.buf);
        free(got.xhat);
    }
    free(ref.buf);
    free(ref.xhat);
    free(x);
}

/* Decoding: the vector prefix decodes what the encoder decoded, and a level
 * above s inside it is rejected, as one in the scalar tail is. */
static void test_qsgd_decode_paths(void **state)
{
    (void)state;
    static const uint32_t ss[] = {1, 3, 4, 5, 9, 16, 17, 31, 40, 100, 127, 128};
    static const size_t ns[] = {32, 33, 64, 100, 1000, 4099};
    float *v = malloc(4099 * sizeof *v), *vh = malloc(4099 * sizeof *vh),
          *out = malloc(4099 * sizeof *out);
    assert_non_null(v);
    assert_non_null(vh);
    assert_non_null(out);
    int rejected = 0;
    for (size_t si = 0; si < sizeof ss / sizeof ss[0]; si++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            uint32_t sl = ss[si];
            size_t n = ns[ni];
            unsigned fb = 33u - (unsigned)__builtin_clz(sl);
            struct fp_compressor c;
            init_c(&c, FP_COMP_QSGD, 0, sl, n);
            void *ws = fp_compressor_ws_new(&c);
            size_t len = fp_compressor_bytes(&c);
            uint8_t *msg = malloc(len);
            assert_non_null(msg);
            normal_vec(v, n, sl + n);
            fp_rng r;
            seed(&r, n);
            assert_int_equal(fp_compressor_compress(&c, v, &r, ws, msg, len, vh), 0);
            assert_int_equal(fp_compressor_decompress(&c, msg, len, &r, ws, out), 0);
            assert_memory_equal(out, vh, n * sizeof *out);
            float norm, tab[129];
            memcpy(&norm, msg, 4);
            for (uint32_t l = 0; l <= sl; l++)
                tab[l] = fp_qsgd_level(norm, l, (double)sl);
            for (int isa = FP_QSGD_PORTABLE; isa <= fp_qsgd_isa(); isa++) {
                struct fp_qsgd_dec dj = {.buf = msg, .bit = 32, .end = len, .n = n, .s = sl,
                                         .tab = tab, .out = out};
                uint32_t any;
                int bad;
                memset(out, 0, n * sizeof *out);
                size_t done = fp_qsgd_decode_blocks_isa(&dj, &any, &bad, isa);
                assert_true(done % 32 == 0 && done <= n);
                assert_false(bad);
                assert_memory_equal(out, vh, done * sizeof *out);
            }
            /* Levels above s exist when s + 1 < 2^(fb - 1): put one in the
             * first block and one in the last field. */
            if (sl + 1 < (1u << (fb - 1))) {
                size_t where[] = {5, n - 1};
                for (int w = 0; w < 2; w++) {
                    uint8_t *bad_msg = malloc(len);
                    assert_non_null(bad_msg);
                    memcpy(bad_msg, msg, len);
                    size_t at = 32 + where[w] * fb;
                    uint32_t field = (sl + 1) << 1;
                    for (unsigned k = 0; k < fb; k++, at++) {
                        bad_msg[at / 8] &= (uint8_t)~(1u << (at % 8));
                        bad_msg[at / 8] |= (uint8_t)(((field >> k) & 1) << (at % 8));
                    }
                    assert_int_equal(fp_compressor_decompress(&c, bad_msg, len, &r, ws, out),
                                     FP_EFORMAT);
                    rejected++;
                    free(bad_msg);
                }
            }
            /* A zero norm with a set sign bit inside the vector prefix. */
            memset(msg, 0, len);
            assert_int_equal(fp_compressor_decompress(&c, msg, len, &r, ws, out), 0);
            msg[(32 + 5 * fb) / 8] |= (uint8_t)(1u << ((32 + 5 * fb) % 8));
            assert_int_equal(fp_compressor_decompress(&c, msg, len, &r, ws, out), FP_EFORMAT);
            free(msg);
            fp_compressor_ws_free(&c, ws);
        }
    assert_true(rejected > 40);
    free(v);
    free(vh);
    free(out);
}

/* Unbiased where only the tie path can round up: 2^24 - 1 coordinates with
 * t = 2^16 r of about 0.3 (so T = 0 and the 16-bit compare never says up),
 * and one large coordinate that sets the norm. Each small coordinate goes to
 * level 1 with probability 2^-16 t, all of it through the further 53-bit
 * draw: about 77 of them, where a rule without that draw gives 0 and one
 * that always rounds up on a tie gives 256. */
static void test_qsgd_tiny_fractions(void **state)
{
    (void)state;
    size_t n = (size_t)1 << 24;
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    float b = (float)(0.3 / 65536.0);
    x[0] = 1.0f;
    for (size_t j = 1; j < n; j++)
        x[j] = (j % 3) ? b : -b;
    struct fp_compressor c;
    init_c(&c, FP_COMP_QSGD, 0, 1, n);
    void *ws = fp_compressor_ws_new(&c);
    size_t len = fp_compressor_bytes(&c);
    uint8_t *msg = malloc(len);
    assert_non_null(ws);
    assert_non_null(msg);
    fp_rng r;
    seed(&r, 77);
    assert_int_equal(fp_compressor_compress(&c, x, &r, ws, msg, len, NULL), 0);
    float norm;
    memcpy(&norm, msg, 4);
    double t = (double)b * ldexp(1.0 / norm, 16), expect = (double)(n - 1) * t / 65536.0;
    /* qsgd:1 fields are 2 bits: sign | level << 1, from bit 32 */
    size_t ups = 0;
    for (size_t j = 1; j < n; j++) {
        size_t bit = 32 + 2 * j;
        ups += (msg[bit / 8] >> (bit % 8 + 1)) & 1;
    }
    print_message("tiny fractions: t = %.5f, %zu coordinates rounded up, %.1f expected\n", t, ups,
                  expect);
    assert_true(t > 0.29 && t < 0.31);
    /* 5 standard deviations of a Poisson count (sqrt(77) = 8.8) */
    assert_true(fabs((double)ups - expect) < 5 * sqrt(expect));
    free(msg);
    fp_compressor_ws_free(&c, ws);
    free(x);
}

/* The lanes' 16 bits of coordinate j < 32 nblocks, as qsgd.h defines them:
 * written from the rule's text, not from algorithms/qsgd.c. */
static void lane_bits(const fp_rng *caller, size_t nblocks, uint16_t *U)
{
    fp_rng r = *caller, lane[8];
    uint64_t w = fp_rng_next(&r);
    for (int i = 0; i < 8; i++)
        fp_rng_seed(&lane[i], w, (uint64_t)i, FP_RNG_NO_CLIENT, FP_RNG_LANES);
    for (size_t b = 0; b < nblocks; b++) {
        uint64_t out[8];
        for (int i = 0; i < 8; i++)
            out[i] = fp_rng_next(&lane[i]);
        for (int m = 0; m < 32; m++)
            U[32 * b + (size_t)m] = (uint16_t)(out[m / 4] >> (16 * (m % 4)));
    }
}

/* Ties on purpose, for many s: with norm = s 2^10 the product is
 * t = 64 |x| exactly, so x = (T + f) / 64 lands where we choose. Coordinates
 * cycle through a tie decided by a draw (f = 0.5), an exact tie (f = 0), a
 * tie at the clamp (T = 2^16 s + U, which a draw may push to s + 1 before
 * the clamp) and a plain value. The fields and the caller's stream must be
 * the rule's, computed here, for every implementation. */
static void test_qsgd_forced_ties(void **state)
{
    (void)state;
    /* above 127 only the portable code runs; 2^20 makes t reach 2^36 */
    static const uint32_t ss[] = {1, 2, 3, 4, 7, 8, 16, 31, 32, 100, 127, 1000, 65535, 1u << 20};
    enum { N = 320 };
    float x[N], xhat[N], tab[128];
    uint16_t U[N];
    for (size_t si = 0; si < sizeof ss / sizeof ss[0]; si++) {
        uint32_t sl = ss[si];
        unsigned fb = 33u - (unsigned)__builtin_clz(sl);
        float norm = (float)sl * 1024.0f;
        fp_rng caller;
        fp_rng_seed(&caller, 11, sl, 1, FP_RNG_COMPRESS);
        lane_bits(&caller, N / 32, U);
        fp_rng g;
        fp_rng_seed(&g, 12, sl, FP_RNG_NO_CLIENT, FP_RNG_DATA);
        for (size_t j = 0; j < N; j++) {
            double fl = (double)fp_rng_below(&g, sl), T = fl * 65536 + U[j];
            double sign = (j / 4) % 2 ? -1.0 : 1.0;
            switch (j % 4) {
            case 0: x[j] = (float)(sign * (T + 0.5) / 64); break;
            case 1: x[j] = (float)(sign * T / 64); break;
            case 2: x[j] = (float)(sign * ((double)sl * 65536 + U[j] + 0.25) / 64); break;
            default: x[j] = (float)(sign * fp_rng_uniform(&g) * norm);
            }
        }
        /* The rule, from its text */
        uint32_t want[N];
        fp_rng r = caller;
        fp_rng_next(&r); /* the lanes' key */
        int draws = 0;
        for (size_t j = 0; j < N; j++) {
            double t = fabs((double)x[j]) * ldexp((double)sl / norm, 16);
            double T = floor(t);
            uint32_t f = (uint32_t)fmod(T, 65536.0);
            uint32_t l = (uint32_t)(T / 65536) + (U[j] < f);
            if (U[j] == f && t > T) {
                l += fp_rng_uniform(&r) < t - T;
                draws++;
            }
            want[j] = (uint32_t)(x[j] < 0) | (l < sl ? l : sl) << 1;
        }
        uint64_t want_next = fp_rng_next(&r);
        /* (T + f) / 64 is exact in float32 while T < 2^22 */
        if (sl <= 32)
            assert_true(draws >= N / 4);
        const float *tp = sl <= 127 ? tab : NULL;
        for (uint32_t l = 0; tp && l <= sl; l++)
            tab[l] = fp_qsgd_level(norm, l, (double)sl);
        for (int isa = FP_QSGD_PORTABLE; isa <= fp_qsgd_isa(); isa++) {
            uint8_t buf[4 + 3 * N] = {0};
            size_t end = (32 + N * fb + 7) / 8;
            struct fp_qsgd_job job = {.x = x, .n = N, .s = sl, .norm = norm,
                                      .denom = (double)sl, .buf = buf, .bit = 32, .end = end,
                                      .xhat = xhat, .tab = tp};
            r = caller;
            fp_qsgd_quantise_isa(&job, &r, isa);
            assert_true(fp_rng_next(&r) == want_next);
            for (size_t j = 0; j < N; j++) {
                size_t at = 32 + j * fb;
                uint32_t got = 0;
                for (unsigned k = 0; k < fb; k++, at++)
                    got |= (uint32_t)((buf[at / 8] >> (at % 8)) & 1) << k;
                if (got != want[j])
                    fail_msg("s %u, isa %d, coordinate %zu: field %u, want %u", sl, isa, j, got,
                             want[j]);
                float v = fp_qsgd_value(tp, norm, want[j], (double)sl);
                assert_memory_equal(&xhat[j], &v, sizeof v);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),           cmocka_unit_test(test_layouts),
        cmocka_unit_test(test_roundtrip),       cmocka_unit_test(test_value_rules),
        cmocka_unit_test(test_topk_vs_naive),   cmocka_unit_test(test_unbiased),
        cmocka_unit_test(test_contractive),     cmocka_unit_test(test_randk_keys),
        cmocka_unit_test(test_reject_length),   cmocka_unit_test(test_reject_content),
        cmocka_unit_test(test_compress_errors), cmocka_unit_test(test_init_errors),
        cmocka_unit_test(test_qsgd_reference),  cmocka_unit_test(test_qsgd_implementations),
        cmocka_unit_test(test_qsgd_tie_draws),  cmocka_unit_test(test_qsgd_decode_paths),
        cmocka_unit_test(test_qsgd_tiny_fractions), cmocka_unit_test(test_qsgd_forced_ties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
