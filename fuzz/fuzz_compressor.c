/*
 * fuzz/fuzz_compressor.c — libFuzzer target for the compressors' decoders
 * (and a differential check of their encoders).
 *
 * Input: 6 header bytes, then a payload P.
 *   [0]     kind = 1 + b % 6 (identity, topk, randk, qsgd, sign, topk+qsgd)
 *   [1..2]  d = 1 + (u16le % 4096)
 *   [3]     ratio = (b + 1) / 256
 *   [4]     levels s = 1 + b for b < 248, else 2^(13 + b - 248) (up to 2^20)
 *   [5]     rng key
 * P is decoded twice: whole (exercises the length check) and, if long
 * enough, its first fp_compressor_bytes bytes (exercises the content
 * checks). Either must decode or fail cleanly; a decoded vector is finite
 * and has the compressor's shape. Then a vector built from P is compressed,
 * and decompress(compress(v)) must equal vhat bit for bit. For qsgd, every
 * vector quantiser the CPU runs must also give the portable one's bytes,
 * decoded values and stream state.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "algorithms/compressor.h"
#include "algorithms/qsgd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FP__CHECK(x)                                                                               \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

/* The shape every decoded vector must have. */
static void fp__check_decoded(const struct fp_compressor *c, const float *out)
{
    size_t nz = 0;
    for (size_t j = 0; j < c->d; j++) {
        FP__CHECK(isfinite(out[j]));
        nz += out[j] != 0;
    }
    if (c->kind == FP_COMP_TOPK || c->kind == FP_COMP_RANDK || c->kind == FP_COMP_TOPK_QSGD)
        FP__CHECK(nz <= c->k);
    if (c->kind == FP_COMP_SIGN)
        for (size_t j = 0; j < c->d; j++)
            FP__CHECK(fabsf(out[j]) == fabsf(out[0]));
}

/* Portable against every vector quantiser this CPU runs, on v with the norm
 * of enc. */
static void fp__qsgd_isas(const struct fp_compressor *c, const float *v, const uint8_t *enc,
                          uint8_t key)
{
    float norm, *tab = NULL, *xh[2] = {NULL, NULL};
    uint8_t *buf[2] = {calloc(c->bytes, 1), calloc(c->bytes, 1)};
    uint64_t next[2];
    memcpy(&norm, enc, 4);
    if (c->levels <= 4096 && (tab = malloc((c->levels + 1) * sizeof *tab)))
        for (uint32_t l = 0; l <= c->levels; l++)
            tab[l] = fp_qsgd_level(norm, l, (double)c->levels);
    for (int i = 0; i < 2; i++)
        xh[i] = tab ? malloc(4 * c->d) : NULL;
    if (!buf[0] || !buf[1] || (tab && (!xh[0] || !xh[1])))
        goto done;
    for (int isa = FP_QSGD_PORTABLE; isa <= fp_qsgd_isa(); isa++) {
        int i = isa != FP_QSGD_PORTABLE;
        struct fp_qsgd_job job = {.x = v, .n = c->d, .s = c->levels, .norm = norm,
                                  .denom = (double)c->levels, .buf = buf[i], .bit = 32,
                                  .end = c->bytes, .xhat = xh[i], .tab = tab};
        fp_rng r;
        fp_rng_seed(&r, key, 2, 0, FP_RNG_COMPRESS);
        fp_qsgd_quantise_isa(&job, &r, isa);
        next[i] = fp_rng_next(&r);
        if (i) {
            FP__CHECK(memcmp(buf[0] + 4, buf[1] + 4, c->bytes - 4) == 0);
            FP__CHECK(next[0] == next[1]);
            if (tab)
                FP__CHECK(memcmp(xh[0], xh[1], 4 * c->d) == 0);
        }
    }
done:
    for (int i = 0; i < 2; i++) {
        free(buf[i]);
        free(xh[i]);
    }
    free(tab);
}

static void fp__decode(const struct fp_compressor *c, void *ws, uint8_t key, const uint8_t *p,
                       size_t n, float *out, uint8_t *re, float *vhat)
{
    fp_rng r;
    fp_rng_seed(&r, key, 0, 0, FP_RNG_COMPRESS);
    int rc = fp_compressor_decompress(c, p, n, &r, ws, out);
    FP__CHECK(rc == 0 || rc == FP_EFORMAT);
    if (rc)
        return;
    FP__CHECK(n == c->bytes);
    fp__check_decoded(c, out);
    /* Canonical means unique: identity, and top-k whose kept values are all
     * non-zero, encode their own decoding back to the same bytes. */
    size_t nz = 0;
    for (size_t j = 0; j < c->d; j++)
        nz += out[j] != 0;
    if (c->kind == FP_COMP_IDENTITY || (c->kind == FP_COMP_TOPK && nz == c->k)) {
        FP__CHECK(fp_compressor_compress(c, out, NULL, ws, re, c->bytes, vhat) == 0);
        FP__CHECK(memcmp(re, p, c->bytes) == 0);
        FP__CHECK(memcmp(vhat, out, 4 * c->d) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 6 || size > (1 << 20))
        return 0;
    struct fp_comp_spec spec = {
        .kind = (enum fp_comp_kind)(1 + data[0] % 6),
        .ratio = (data[3] + 1) / 256.0,
        .levels = data[4] < 248 ? 1u + data[4] : 1u << (13 + data[4] - 248),
    };
    size_t d = 1 + ((size_t)data[1] | (size_t)data[2] << 8) % 4096;
    uint8_t key = data[5];
    const uint8_t *p = data + 6;
    size_t n = size - 6;

    struct fp_compressor c;
    struct fp_error err;
    FP__CHECK(fp_compressor_init(&c, &spec, d, &err) == 0);
    void *ws = fp_compressor_ws_new(&c);
    float *out = malloc(4 * d), *vhat = malloc(4 * d), *v = malloc(4 * d);
    uint8_t *enc = malloc(c.bytes), *re = malloc(c.bytes);
    if (!ws || !out || !vhat || !v || !enc || !re)
        goto done;

    fp__decode(&c, ws, key, p, n, out, re, vhat);
    if (n > c.bytes)
        fp__decode(&c, ws, key, p, c.bytes, out, re, vhat);

    /* A vector from P: its raw floats if there are enough (NaN, Inf,
     * denormals and all), else small integers with many ties. */
    if (n >= 4 * d)
        memcpy(v, p, 4 * d);
    else
        for (size_t j = 0; j < d; j++)
            v[j] = n ? (float)(int8_t)p[j % n] * 0.25f : 0.0f;
    fp_rng r;
    fp_rng_seed(&r, key, 1, 0, FP_RNG_COMPRESS);
    int rc = fp_compressor_compress(&c, v, &r, ws, enc, c.bytes, vhat);
    FP__CHECK(rc == 0 || rc == FP_EINVAL);
    if (rc == 0) {
        fp_rng_seed(&r, key, 1, 0, FP_RNG_COMPRESS);
        FP__CHECK(fp_compressor_decompress(&c, enc, c.bytes, &r, ws, out) == 0);
        FP__CHECK(memcmp(out, vhat, 4 * d) == 0);
        fp__check_decoded(&c, out);
        if (c.kind == FP_COMP_QSGD)
            fp__qsgd_isas(&c, v, enc, key);
    } else {
        /* Only non-finite input or a float32 overflow may refuse. */
        int bad = 0;
        for (size_t j = 0; j < d; j++)
            bad |= !isfinite(v[j]) || fabsf(v[j]) > 1e30f;
        FP__CHECK(bad);
    }
done:
    free(re);
    free(enc);
    free(v);
    free(vhat);
    free(out);
    fp_compressor_ws_free(&c, ws);
    return 0;
}
