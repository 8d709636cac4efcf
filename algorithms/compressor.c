/*
 * algorithms/compressor.c — the compressors of compressor.h and their byte
 * layouts (pinned in docs/compressors.md; sizes from the team's
 * ALGORITHMS.md, "Compressors and their exact sizes").
 *
 * Every layout is little-endian and a pure function of (kind, d, k, s):
 *
 *   identity     d float32.
 *   topk         d >= 32 k: k uint32 indices (strictly ascending), then the
 *                k float32 values in the same order                  (8 k bytes)
 *                d <  32 k: a d-bit bitmap (bit j in byte j/8, LSB first,
 *                padding bits zero), then the k float32 values in ascending
 *                index order                              (ceil(d/8) + 4 k bytes)
 *   randk        k float32 values v_j d/k, ascending index order   (4 k bytes)
 *   qsgd:s       float32 norm, then d fields of 1 + b bits, b = ceil(log2(s+1)),
 *                each field = sign | level << 1, packed LSB first without
 *                gaps; padding bits zero          (ceil((32 + d (1 + b)) / 8))
 *   sign         float32 scale, then d sign bits (1 = negative) (4 + ceil(d/8))
 *   topk+qsgd:s  float32 norm of the kept values, then the top-k support as
 *                in topk (d >= 32 k: k uint32 indices; else a d-bit bitmap
 *                starting at byte 4), then k QSGD fields of 1 + b bits that
 *                start at the very next bit (no padding after the bitmap)
 *                                 (ceil((32 + min(32 k, d) + k (1 + b)) / 8))
 *
 * The decoders accept exactly the encodings the encoders can produce.
 */
#include "compressor.h"

#include "../core/registry.h"
#include "codec.h"
#include "qsgd.h"

#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h> /* baseline on x86-64: sign packing and expansion */
#endif

/* The largest s: levels fit in 21 bits, so a field is at most 22 bits. */
#define FP__MAX_LEVELS (1u << 20)
/* Radix select on the 31 magnitude bits: 11 + 11 + 9 bits. */
#define FP__HIST 2048
/* QSGD decodes through a table of the s + 1 level values when s is at most
 * this (and the vector has more coordinates than levels). */
#define FP__QTAB 4096

struct fp_compressor_ops {
    int (*compress)(const struct fp_compressor *c, const float *v, fp_rng *rng, void *ws,
                    uint8_t *out, float *vhat);
    int (*decompress)(const struct fp_compressor *c, const uint8_t *in, fp_rng *rng, void *ws,
                      float *out);
};

/* Per-thread scratch. Every array is fully rewritten before it is read in a
 * call, so its history never shows in a result. */
struct fp__ws {
    uint32_t *idx;  /* kept indices, ascending: k (topk, randk, topk+qsgd) */
    uint32_t *cand; /* radix-select candidates: d (topk, topk+qsgd) */
    uint64_t *mask; /* rand-k membership bitmap: ceil(d/64) words */
    float *vals;    /* topk+qsgd: the k kept values, then their decoded values */
    float *qtab;    /* qsgd, topk+qsgd: decoded value of each level, min(s, FP__QTAB) + 1 */
    /* Four interleaved histograms for the first radix pass: on a normal
     * vector most keys share a few buckets, and one counter would make every
     * increment wait for the previous one. */
    uint32_t hist[4][FP__HIST];
};

/* ---- little-endian helpers (codec.c asserts a little-endian CPU) ---- */

static inline uint32_t fp__ld32(const uint8_t *p)
{
    uint32_t x;
    memcpy(&x, p, 4);
    return x;
}
static inline float fp__ldf(const uint8_t *p)
{
    float x;
    memcpy(&x, p, 4);
    return x;
}
static inline void fp__st32(uint8_t *p, uint32_t x)
{
    memcpy(p, &x, 4);
}
static inline void fp__stf(uint8_t *p, float x)
{
    memcpy(p, &x, 4);
}
static inline uint32_t fp__fbits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

/* Bits [64 w, 64 w + 64) of a bitmap of d bits stored LSB first, with the
 * bits at positions >= d masked off (they may belong to what follows). */
static inline uint64_t fp__bm_word(const uint8_t *bm, size_t d, size_t w)
{
    size_t bytes = (d + 7) / 8, at = 8 * w;
    uint64_t x = 0;
    size_t n = bytes - at < 8 ? bytes - at : 8;
    memcpy(&x, bm + at, n);
    size_t left = d - 64 * w;
    if (left < 64)
        x &= ((uint64_t)1 << left) - 1;
    return x;
}

/* ---- bit streams, LSB first ---- */

struct fp__br {
    const uint8_t *p, *end;
    uint64_t acc;
    unsigned n;
};

static inline void fp__br_init(struct fp__br *r, const uint8_t *buf, size_t len, size_t bit)
{
    r->p = buf + bit / 8;
    r->end = buf + len;
    r->acc = 0;
    r->n = 0;
    if (bit % 8) {
        r->acc = (uint64_t)*r->p++ >> (bit % 8);
        r->n = 8 - (unsigned)(bit % 8);
    }
}
/* The caller has checked that the message holds every bit it will read;
 * past the end the reader yields zeros rather than reading out of bounds. */
static inline uint32_t fp__br_get(struct fp__br *r, unsigned nbits)
{
    if (r->n < nbits) {
        if (r->end - r->p >= 4) {
            r->acc |= (uint64_t)fp__ld32(r->p) << r->n;
            r->p += 4;
            r->n += 32;
        } else {
            while (r->n < nbits && r->p < r->end) {
                r->acc |= (uint64_t)*r->p++ << r->n;
                r->n += 8;
            }
        }
    }
    uint32_t x = (uint32_t)(r->acc & (((uint64_t)1 << nbits) - 1));
    r->acc >>= nbits;
    r->n = r->n > nbits ? r->n - nbits : 0;
    return x;
}

/* 1 if the bits of buf[0..len) from bit `bit` on are all zero. */
static bool fp__padding_zero(const uint8_t *buf, size_t len, size_t bit)
{
    if (bit % 8 == 0)
        return true; /* the sizes leave no whole padding byte */
    assert(bit / 8 == len - 1);
    return (buf[len - 1] >> (bit % 8)) == 0;
}

/* ---- sums in a fixed order ---- */

/* sum_j f(v_j) in double, in 8 interleaved lanes (lane i takes j = i mod 8)
 * combined as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)): a fixed order, so the
 * result is a pure function of v, and the lanes keep the adds independent.
 * isfinite(result) fails if any v_j is not finite. */
static double fp__sum_abs(const float *v, size_t n)
{
    double l[8] = {0};
    size_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int i = 0; i < 8; i++)
            l[i] += fabs((double)v[j + i]);
    for (int i = 0; j < n; j++, i++)
        l[i] += fabs((double)v[j]);
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

/* sum_j v_j^2 in double, in 32 interleaved lanes (lane i takes j = i mod 32)
 * folded in halves (lane i += lane i + 16, then i + 8, ..., 1): QSGD's norm
 * is a second pass over the vector, and 32 independent adds let it run at
 * the speed of loads rather than of one add's latency. The vector forms
 * below do the same operations in the same order, so the same bits. */
static inline __attribute__((always_inline)) double fp__sum_sq_lanes(const float *v, size_t n)
{
    double l[32] = {0};
    size_t j = 0;
    for (; j + 32 <= n; j += 32)
        for (int i = 0; i < 32; i++)
            l[i] += (double)v[j + i] * v[j + i];
    for (int i = 0; j < n; j++, i++)
        l[i] += (double)v[j] * v[j];
    for (int w = 16; w >= 1; w /= 2)
        for (int i = 0; i < w; i++)
            l[i] += l[i + w];
    return l[0];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2,avx512f"))) static double fp__sum_sq_avx512(const float *v, size_t n)
{
    return fp__sum_sq_lanes(v, n);
}
__attribute__((target("avx2"))) static double fp__sum_sq_avx2(const float *v, size_t n)
{
    return fp__sum_sq_lanes(v, n);
}
#endif

static double fp__sum_sq(const float *v, size_t n)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    int isa = fp_qsgd_isa();
    if (isa == FP_QSGD_AVX512)
        return fp__sum_sq_avx512(v, n);
    if (isa == FP_QSGD_AVX2)
        return fp__sum_sq_avx2(v, n);
#endif
    return fp__sum_sq_lanes(v, n);
}

/* ---- top-k selection ---- */

/* Finds the bucket (of bits `shift` and up, `nb` buckets) holding the
 * krem-th largest key of a histogram h; subtracts from *krem what the higher
 * buckets hold. */
static uint32_t fp__bucket(const uint32_t *h, uint32_t nb, size_t *krem)
{
    uint32_t b = nb - 1;
    for (;; b--) {
        if (h[b] >= *krem)
            return b;
        *krem -= h[b];
    }
}

/*
 * Writes the indices of the k entries of largest |v_j| to idx[0..k), in
 * ascending order; among equal magnitudes the lower indices win, so the set
 * is a pure function of v. The magnitude key is the IEEE bit pattern with the
 * sign cleared, which orders non-negative floats (and puts Inf, then NaN,
 * above every finite value, so a non-finite v_j is always kept and caught).
 *
 * O(d), two passes over v, no sort (DESIGN.md, "Performance"): a radix
 * select. Pass 1 histograms bits 30..20 of the keys and finds the bucket
 * b1 that holds the k-th largest. Pass 2 sorts each index into "kept"
 * (bucket above b1) or "candidate" (bucket b1), both in index order. Bits
 * 19..9, then 8..0, of the candidates alone give the exact k-th largest key
 * T; the candidates above T and the first `need` equal to T join the kept
 * ones, and a merge of the two ascending lists gives idx.
 */
static void fp__topk_select(const float *v, size_t d, size_t k, struct fp__ws *w, uint32_t *idx)
{
    assert(k >= 1 && k <= d);
    uint32_t *h = w->hist[0];
    size_t krem = k; /* how many still to take at or below the current prefix */

    memset(w->hist, 0, sizeof w->hist);
    size_t j = 0;
    for (; j + 4 <= d; j += 4)
        for (int i = 0; i < 4; i++)
            w->hist[i][(fp__fbits(v[j + i]) & 0x7fffffffu) >> 20]++;
    for (; j < d; j++)
        h[(fp__fbits(v[j]) & 0x7fffffffu) >> 20]++;
    for (size_t b = 0; b < FP__HIST; b++)
        h[b] += w->hist[1][b] + w->hist[2][b] + w->hist[3][b];
    uint32_t b1 = fp__bucket(h, FP__HIST, &krem);

    /* kept: idx[0..nk), nk = k - krem < k; candidates: cand[0..nc) */
    uint32_t *cand = w->cand;
    size_t nk = 0, nc = 0;
    for (j = 0; j < d; j++) {
        uint32_t b = (fp__fbits(v[j]) & 0x7fffffffu) >> 20;
        if (b >= b1) {
            if (b > b1)
                idx[nk++] = (uint32_t)j;
            else
                cand[nc++] = (uint32_t)j;
        }
    }
    assert(nk == k - krem && nc >= krem);

    memset(h, 0, FP__HIST * sizeof h[0]);
    for (size_t i = 0; i < nc; i++)
        h[(fp__fbits(v[cand[i]]) >> 9) & 0x7ff]++;
    uint32_t b2 = fp__bucket(h, FP__HIST, &krem);
    memset(h, 0, 512 * sizeof h[0]);
    for (size_t i = 0; i < nc; i++) {
        uint32_t key = fp__fbits(v[cand[i]]);
        if (((key >> 9) & 0x7ff) == b2)
            h[key & 0x1ff]++;
    }
    uint32_t b3 = fp__bucket(h, 512, &krem);
    uint32_t T = b1 << 20 | b2 << 9 | b3;

    /* The chosen candidates, compacted in place, still ascending. */
    size_t need = krem, ns = 0;
    for (size_t i = 0; i < nc; i++) {
        uint32_t key = fp__fbits(v[cand[i]]) & 0x7fffffffu;
        if (key > T || (key == T && need > 0)) {
            need -= key == T;
            cand[ns++] = cand[i];
        }
    }
    assert(need == 0 && nk + ns == k);

    /* Merge from the back: idx has room for both lists. */
    size_t a = nk, c = ns, o = k;
    while (c > 0) {
        if (a > 0 && idx[a - 1] > cand[c - 1])
            idx[--o] = idx[--a];
        else
            idx[--o] = cand[--c];
    }
}

/* The support travels as k uint32 indices when that is no larger than a
 * d-bit bitmap: 32 k <= d. At d == 32 k both cost the same and the indices
 * win. The value cost is the same either way, so topk and topk+qsgd share
 * the rule. */
static inline bool fp__use_indices(const struct fp_compressor *c)
{
    return (uint64_t)c->d >= 32 * (uint64_t)c->k;
}

/* Writes the support: k ascending indices, or a d-bit bitmap at `at`.
 * Returns the bit offset right after it. */
static size_t fp__support_write(const struct fp_compressor *c, const uint32_t *idx, uint8_t *at)
{
    size_t d = c->d, k = c->k;
    if (fp__use_indices(c)) {
        for (size_t i = 0; i < k; i++)
            fp__st32(at + 4 * i, idx[i]);
        return 32 * k;
    }
    memset(at, 0, (d + 7) / 8);
    for (size_t i = 0; i < k; i++)
        at[idx[i] / 8] |= (uint8_t)(1u << (idx[i] % 8));
    return d;
}

/* Reads and checks the support written by fp__support_write into idx.
 * `padded`: the bitmap's padding bits belong to it and must be zero (topk);
 * otherwise they belong to what follows (topk+qsgd). */
static int fp__support_read(const struct fp_compressor *c, const uint8_t *at, bool padded,
                            uint32_t *idx)
{
    size_t d = c->d, k = c->k;
    if (fp__use_indices(c)) {
        uint32_t prev = 0;
        for (size_t i = 0; i < k; i++) {
            uint32_t j = fp__ld32(at + 4 * i);
            if (j >= d || (i > 0 && j <= prev))
                return FP_EFORMAT;
            idx[i] = prev = j;
        }
        return 0;
    }
    if (padded && d % 8 && (at[d / 8] >> (d % 8)) != 0)
        return FP_EFORMAT;
    size_t n = 0;
    for (size_t w = 0; w < (d + 63) / 64; w++) {
        uint64_t x = fp__bm_word(at, d, w);
        if (n + (size_t)__builtin_popcountll(x) > k)
            return FP_EFORMAT;
        while (x) {
            idx[n++] = (uint32_t)(64 * w + (size_t)__builtin_ctzll(x));
            x &= x - 1;
        }
    }
    return n == k ? 0 : FP_EFORMAT;
}

/* ---- QSGD (Alistarh et al. 2017, "QSGD", Sec. 3.1, Lemma 3.1) ---- */

/* omega of QSGD with s levels on n coordinates (Lemma 3.1). */
static double fp__qsgd_omega(size_t n, uint32_t s)
{
    double a = (double)n / ((double)s * s), b = sqrt((double)n) / s;
    return a < b ? a : b;
}

/* Fills tab[0..s] with fp__qsgd_level when that is cheaper than computing
 * each value (s small, n large); returns tab or NULL. Same formula, so the
 * table changes no bit of any result. */
static const float *fp__qsgd_table(float *tab, float norm, uint32_t s, double denom, size_t n)
{
    if (!tab || s > FP__QTAB || s >= n)
        return NULL;
    for (uint32_t l = 0; l <= s; l++)
        tab[l] = fp_qsgd_level(norm, l, denom);
    return tab;
}

/*
 * Quantises x[0..n) with s levels (qsgd.h has the rule): writes the float32
 * norm at out_norm and n fields from bit `bit` of buf (buf[0..end) is the
 * message), and the decoded values to xhat (NULL: none; it may equal x).
 * FP_EINVAL if x is not finite or its norm overflows float32.
 */
static int fp__qsgd_encode(const float *x, size_t n, uint32_t s, double denom, fp_rng *rng,
                           uint8_t *out_norm, uint8_t *buf, size_t bit, size_t end, float *xhat,
                           float *qtab)
{
    double nd = sqrt(fp__sum_sq(x, n));
    float norm = (float)nd;
    if (!isfinite(norm))
        return FP_EINVAL;
    fp__stf(out_norm, norm);
    /* |x_j| <= norm up to rounding, so levels above s come only from
     * rounding and are clamped to s. norm == 0 only if x == 0. */
    struct fp_qsgd_job job = {
        .x = x,
        .n = n,
        .s = s,
        .norm = norm,
        .denom = denom,
        .buf = buf,
        .bit = bit,
        .end = end,
        .xhat = xhat,
        .tab = xhat ? fp__qsgd_table(qtab, norm, s, denom, n) : NULL,
    };
    fp_qsgd_quantise(&job, rng);
    return 0;
}

/* Checks the norm at in_norm and decodes n fields from bit `bit` into
 * out[idx[i]] (idx NULL: out[i]). */
static int fp__qsgd_decode(const uint8_t *in, size_t len, const uint8_t *in_norm, size_t bit,
                           size_t n, uint32_t s, double denom, const uint32_t *idx, float *out,
                           float *qtab)
{
    float norm = fp__ldf(in_norm);
    if (!isfinite(norm) || signbit(norm))
        return FP_EFORMAT;
    unsigned fb = fp_qsgd_field_bits(s);
    const float *tab = fp__qsgd_table(qtab, norm, s, denom, n);
    uint32_t any = 0;
    size_t i = 0;
    if (!idx) {
        struct fp_qsgd_dec dj = {
            .buf = in, .bit = bit, .end = len, .n = n, .s = s, .tab = tab, .out = out};
        int bad;
        i = fp_qsgd_decode_blocks(&dj, &any, &bad);
        if (bad)
            return FP_EFORMAT;
    }
    struct fp__br r;
    fp__br_init(&r, in, len, bit + i * fb);
    for (; i < n; i++) {
        uint32_t field = fp__br_get(&r, fb);
        if ((field >> 1) > s)
            return FP_EFORMAT;
        any |= field;
        out[idx ? idx[i] : i] = fp_qsgd_value(tab, norm, field, denom);
    }
    /* A zero norm comes only from a zero vector, encoded as all-zero fields. */
    if (norm == 0 && any)
        return FP_EFORMAT;
    if (!fp__padding_zero(in, len, bit + n * fb))
        return FP_EFORMAT;
    return 0;
}

/* ---- identity ---- */

static int fp__id_compress(const struct fp_compressor *c, const float *v, fp_rng *rng, void *ws,
                           uint8_t *out, float *vhat)
{
    (void)rng, (void)ws;
    /* An exponent of all ones is Inf or NaN; OR-reduced so it vectorises. */
    uint32_t bad = 0;
    for (size_t j = 0; j < c->d; j++)
        bad |= (fp__fbits(v[j]) & 0x7f800000u) == 0x7f800000u;
    if (bad)
        return FP_EINVAL;
    memcpy(out, v, 4 * c->d);
    if (vhat && vhat != v)
        memcpy(vhat, v, 4 * c->d);
    return 0;
}

static int fp__id_decompress(const struct fp_compressor *c, const uint8_t *in, fp_rng *rng,
                             void *ws, float *out)
{
    (void)rng, (void)ws;
    return fp_codec_dense_decode(in, 4 * c->d, c->d, out);
}

/* ---- topk ---- */

static int fp__topk_compress(const struct fp_compressor *c, const float *v, fp_rng *rng, void *ws,
                             uint8_t *out, float *vhat)
{
    (void)rng;
    struct fp__ws *w = ws;
    size_t d = c->d, k = c->k;
    fp__topk_select(v, d, k, w, w->idx);
    /* Non-finite entries sort above every finite one: checking the kept
     * values checks all of v. */
    for (size_t i = 0; i < k; i++)
        if (!isfinite(v[w->idx[i]]))
            return FP_EINVAL;
    uint8_t *vals = out + (fp__support_write(c, w->idx, out) + 7) / 8;
    for (size_t i = 0; i < k; i++)
        fp__stf(vals + 4 * i, v[w->idx[i]]);
    if (vhat) {
        memset(vhat, 0, 4 * d);
        for (size_t i = 0; i < k; i++)
            vhat[w->idx[i]] = fp__ldf(vals + 4 * i);
    }
    return 0;
}

static int fp__topk_decompress(const struct fp_compressor *c, const uint8_t *in, fp_rng *rng,
                               void *ws, float *out)
{
    (void)rng;
    struct fp__ws *w = ws;
    size_t d = c->d, k = c->k;
    int rc = fp__support_read(c, in, true, w->idx);
    if (rc)
        return rc;
    const uint8_t *vals = in + (fp__use_indices(c) ? 4 * k : (d + 7) / 8);
    memset(out, 0, 4 * d);
    for (size_t i = 0; i < k; i++) {
        float x = fp__ldf(vals + 4 * i);
        if (!isfinite(x))
            return FP_EFORMAT;
        out[w->idx[i]] = x;
    }
    return 0;
}

/* ---- randk ---- */

/*
 * The k-subset of [0, d) from the stream, ascending, into idx. Floyd's
 * algorithm (Bentley & Floyd, CACM 1987): for j = d-k .. d-1, t =
 * fp_rng_below(rng, j+1); take t, or j if t is already taken. That is
 * exactly k draws and a uniform subset; membership lives in a bitmap that
 * is cleared first, and the ascending order comes from scanning it, so
 * nothing depends on the workspace's history.
 */
static void fp__randk_mask(const struct fp_compressor *c, fp_rng *rng, struct fp__ws *w)
{
    size_t d = c->d, k = c->k, nw = (d + 63) / 64;
    uint64_t *m = w->mask;
    memset(m, 0, nw * sizeof *m);
    for (size_t j = d - k; j < d; j++) {
        size_t t = (size_t)fp_rng_below(rng, (uint64_t)j + 1);
        if (m[t / 64] >> (t % 64) & 1)
            t = j;
        m[t / 64] |= (uint64_t)1 << (t % 64);
    }
    size_t n = 0;
    for (size_t i = 0; i < nw; i++)
        for (uint64_t x = m[i]; x; x &= x - 1)
            w->idx[n++] = (uint32_t)(64 * i + (size_t)__builtin_ctzll(x));
    assert(n == k);
}

static int fp__randk_compress(const struct fp_compressor *c, const float *v, fp_rng *rng, void *ws,
                              uint8_t *out, float *vhat)
{
    struct fp__ws *w = ws;
    fp__randk_mask(c, rng, w);
    /* Stich et al. 2018 / Wangni et al. 2018: scaling by d/k makes rand-k
     * unbiased with omega = d/k - 1. */
    double scale = (double)c->d / (double)c->k;
    for (size_t i = 0; i < c->k; i++) {
        float x = (float)((double)v[w->idx[i]] * scale);
        if (!isfinite(x))
            return FP_EINVAL;
        fp__stf(out + 4 * i, x);
    }
    if (vhat) {
        memset(vhat, 0, 4 * c->d);
        for (size_t i = 0; i < c->k; i++)
            vhat[w->idx[i]] = fp__ldf(out + 4 * i);
    }
    return 0;
}

static int fp__randk_decompress(const struct fp_compressor *c, const uint8_t *in, fp_rng *rng,
                                void *ws, float *out)
{
    struct fp__ws *w = ws;
    fp__randk_mask(c, rng, w);
    memset(out, 0, 4 * c->d);
    for (size_t i = 0; i < c->k; i++) {
        float x = fp__ldf(in + 4 * i);
        if (!isfinite(x))
            return FP_EFORMAT;
        out[w->idx[i]] = x;
    }
    return 0;
}

/* ---- qsgd ---- */

static int fp__qsgd_compress(const struct fp_compressor *c, const float *v, fp_rng *rng, void *ws,
                             uint8_t *out, float *vhat)
{
    struct fp__ws *w = ws;
    return fp__qsgd_encode(v, c->d, c->levels, (double)c->levels, rng, out, out, 32, c->bytes, vhat,
                           w->qtab);
}

static int fp__qsgd_decompress(const struct fp_compressor *c, const uint8_t *in, fp_rng *rng,
                               void *ws, float *out)
{
    (void)rng;
    struct fp__ws *w = ws;
    return fp__qsgd_decode(in, c->bytes, in, 32, c->d, c->levels, (double)c->levels, NULL, out,
                           w->qtab);
}

/* ---- sign ---- */

/* out[j] = -scale if bit j is set, else scale: the bit goes straight into
 * the float's sign bit (scale >= 0). */
static void fp__sign_expand(const uint8_t *bits, size_t d, float scale, float *out)
{
    uint32_t sb = fp__fbits(scale);
    size_t j = 0;
#ifdef __SSE2__
    /* 4 bits at a time: lane i of a group takes the sign bit if bit i of the
     * nibble is set (the compare gives all-ones there; keep only bit 31). */
    const __m128i s4 = _mm_set1_epi32((int)sb);
    const __m128i lane = _mm_set_epi32(8, 4, 2, 1);
    const __m128i top = _mm_set1_epi32((int)0x80000000u);
    for (; j + 64 <= d; j += 64) {
        uint64_t x;
        memcpy(&x, bits + j / 8, 8);
        for (unsigned b = 0; b < 64; b += 4) {
            __m128i nib = _mm_set1_epi32((int)(x >> b & 15));
            __m128i set = _mm_cmpeq_epi32(_mm_and_si128(nib, lane), lane);
            __m128i u = _mm_or_si128(s4, _mm_and_si128(set, top));
            _mm_storeu_si128((__m128i *)(void *)&out[j + b], u);
        }
    }
#endif
    for (; j + 64 <= d; j += 64) {
        uint64_t x;
        memcpy(&x, bits + j / 8, 8);
        for (unsigned b = 0; b < 64; b++) {
            uint32_t u = sb | (uint32_t)(x >> b & 1) << 31;
            memcpy(&out[j + b], &u, 4);
        }
    }
    for (; j < d; j++) {
        uint32_t u = sb | (uint32_t)(bits[j / 8] >> (j % 8) & 1) << 31;
        memcpy(&out[j], &u, 4);
    }
}

/* Bernstein et al. 2018 (signSGD) with the l1 scale of Karimireddy et al.
 * 2019 (EF-SGD): C(v) = (||v||_1 / d) sign(v), contractive with
 * q = ||v||_1^2 / (d ||v||^2) >= 1/d. */
static int fp__sign_compress(const struct fp_compressor *c, const float *v, fp_rng *rng, void *ws,
                             uint8_t *out, float *vhat)
{
    (void)rng, (void)ws;
    size_t d = c->d;
    double l1 = fp__sum_abs(v, d);
    if (!isfinite(l1))
        return FP_EINVAL;
    float scale = (float)(l1 / (double)d);
    fp__stf(out, scale);
    uint8_t *bits = out + 4;
    size_t j = 0, nb = (d + 7) / 8;
    /* A zero scale (a zero vector, or an l1/d below float32's range) sends
     * all-zero signs, so that the decoder can insist on them. */
    if (scale == 0) {
        memset(bits, 0, nb);
    } else {
        for (; j + 64 <= d; j += 64) {
            uint64_t x = 0;
#ifdef __SSE2__
            /* cmplt, not the raw sign bit: -0.0f is not negative (sign(0) = +). */
            const __m128 zero = _mm_setzero_ps();
            for (unsigned b = 0; b < 64; b += 4)
                x |= (uint64_t)_mm_movemask_ps(_mm_cmplt_ps(_mm_loadu_ps(v + j + b), zero)) << b;
#else
            for (unsigned b = 0; b < 64; b++)
                x |= (uint64_t)(v[j + b] < 0) << b;
#endif
            memcpy(bits + j / 8, &x, 8);
        }
        for (; j < d; j += 8) {
            uint8_t x = 0;
            for (unsigned b = 0; b < 8 && j + b < d; b++)
                x |= (uint8_t)((v[j + b] < 0) << b);
            bits[j / 8] = x;
        }
    }
    if (vhat)
        fp__sign_expand(bits, d, scale, vhat);
    return 0;
}

static int fp__sign_decompress(const struct fp_compressor *c, const uint8_t *in, fp_rng *rng,
                               void *ws, float *out)
{
    (void)rng, (void)ws;
    size_t d = c->d;
    float scale = fp__ldf(in);
    if (!isfinite(scale) || signbit(scale))
        return FP_EFORMAT;
    const uint8_t *bits = in + 4;
    if (!fp__padding_zero(in, c->bytes, 32 + d))
        return FP_EFORMAT;
    if (scale == 0) {
        for (size_t i = 0; i < (d + 7) / 8; i++)
            if (bits[i])
                return FP_EFORMAT;
    }
    fp__sign_expand(bits, d, scale, out);
    return 0;
}

/* ---- topk+qsgd ---- */

/*
 * C(v) = Q_s(T_k(v)) / (1 + omega_k), omega_k = min(k/s^2, sqrt(k)/s): QSGD of
 * the k kept values, scaled down so that the composition is contractive.
 * With x = T_k(v) and disjoint supports,
 *   E||C(v) - v||^2 = E||Q(x)/(1+w) - x||^2 + ||v - x||^2
 *                  <= (1 - 1/(1+w)) ||x||^2 + ||v||^2 - ||x||^2
 *                  <= (1 - (k/d)/(1+w)) ||v||^2,
 * the scaling of an unbiased compressor into the contractive class of
 * Beznosikov et al. 2020 ("On biased compression for distributed
 * learning") and Horváth & Richtárik 2021 ("A better alternative to error
 * feedback for communication-efficient distributed learning").
 */
static double fp__tq_denom(const struct fp_compressor *c)
{
    return (double)c->levels * (1.0 + fp__qsgd_omega(c->k, c->levels));
}

static int fp__tq_compress(const struct fp_compressor *c, const float *v, fp_rng *rng, void *ws,
                           uint8_t *out, float *vhat)
{
    struct fp__ws *w = ws;
    size_t d = c->d, k = c->k;
    fp__topk_select(v, d, k, w, w->idx);
    for (size_t i = 0; i < k; i++)
        w->vals[i] = v[w->idx[i]];
    size_t bit = 32 + fp__support_write(c, w->idx, out + 4);
    int rc = fp__qsgd_encode(w->vals, k, c->levels, fp__tq_denom(c), rng, out, out, bit, c->bytes,
                             w->vals, w->qtab);
    if (rc)
        return rc;
    if (vhat) {
        memset(vhat, 0, 4 * d);
        for (size_t i = 0; i < k; i++)
            vhat[w->idx[i]] = w->vals[i];
    }
    return 0;
}

static int fp__tq_decompress(const struct fp_compressor *c, const uint8_t *in, fp_rng *rng,
                             void *ws, float *out)
{
    (void)rng;
    struct fp__ws *w = ws;
    size_t d = c->d, k = c->k;
    int rc = fp__support_read(c, in + 4, false, w->idx);
    if (rc)
        return rc;
    memset(out, 0, 4 * d);
    size_t bit = 32 + (fp__use_indices(c) ? 32 * k : d);
    return fp__qsgd_decode(in, c->bytes, in, bit, k, c->levels, fp__tq_denom(c), w->idx, out,
                           w->qtab);
}

static const struct fp_compressor_ops fp__ops[] = {
    [FP_COMP_IDENTITY] = {fp__id_compress, fp__id_decompress},
    [FP_COMP_TOPK] = {fp__topk_compress, fp__topk_decompress},
    [FP_COMP_RANDK] = {fp__randk_compress, fp__randk_decompress},
    [FP_COMP_QSGD] = {fp__qsgd_compress, fp__qsgd_decompress},
    [FP_COMP_SIGN] = {fp__sign_compress, fp__sign_decompress},
    [FP_COMP_TOPK_QSGD] = {fp__tq_compress, fp__tq_decompress},
};

/* ---- public ---- */

static const char *fp__kind_name(enum fp_comp_kind k)
{
    switch (k) {
    case FP_COMP_IDENTITY: return "identity";
    case FP_COMP_TOPK: return "topk";
    case FP_COMP_RANDK: return "randk";
    case FP_COMP_QSGD: return "qsgd";
    case FP_COMP_SIGN: return "sign";
    case FP_COMP_TOPK_QSGD: return "topk+qsgd";
    }
    return "?";
}

int fp_compressor_init(struct fp_compressor *c, const struct fp_comp_spec *spec, size_t d,
                       struct fp_error *err)
{
    memset(c, 0, sizeof *c);
    if (!spec || spec->kind < FP_COMP_IDENTITY || spec->kind > FP_COMP_TOPK_QSGD)
        return fp_error_set(err, FP_EINVAL, "compressor: unknown kind %d",
                            spec ? (int)spec->kind : -1);
    const char *name = fp__kind_name(spec->kind);
    /* Indices travel as uint32, and every size below stays far from
     * SIZE_MAX: 22 bits per coordinate at most. */
    if (d < 1 || d > UINT32_MAX)
        return fp_error_set(err, FP_EINVAL,
                            "compressor %s: vector length d = %zu is outside 1 .. 4294967295", name,
                            d);
    bool uses_k = spec->kind == FP_COMP_TOPK || spec->kind == FP_COMP_RANDK ||
                  spec->kind == FP_COMP_TOPK_QSGD;
    bool uses_s = spec->kind == FP_COMP_QSGD || spec->kind == FP_COMP_TOPK_QSGD;
    size_t k = d;
    if (uses_k && spec->count) {
        /* a count instead of a fraction: [compressor] k = 1590 */
        if (spec->count > d)
            return fp_error_set(err, FP_EINVAL,
                                "compressor %s: k = %llu is more than the d = %zu values", name,
                                (unsigned long long)spec->count, d);
        k = (size_t)spec->count;
    } else if (uses_k) {
        if (!(spec->ratio > 0 && spec->ratio <= 1))
            return fp_error_set(err, FP_EINVAL,
                                "compressor %s: ratio = %g must be in (0, 1] (k = floor(ratio d))",
                                name, spec->ratio);
        /* ratio <= 1 and d exact in a double: floor(ratio d) <= d. The
         * 1e-9 slack makes a ratio written in decimal mean what it says:
         * 0.29 * 100 is 28.999999999999996 in binary, and k must be 29. */
        double kd = floor(spec->ratio * (double)d * (1 + 1e-9));
        if (kd > (double)d)
            kd = (double)d;
        k = kd < 1 ? 1 : (size_t)kd;
        if (k > d)
            k = d;
    }
    uint32_t s = 0;
    if (uses_s) {
        if (spec->levels < 1 || spec->levels > FP__MAX_LEVELS)
            return fp_error_set(err, FP_EINVAL, "compressor %s: levels s = %u must be in 1 .. %u",
                                name, spec->levels, FP__MAX_LEVELS);
        s = spec->levels;
    }

    /* Payload bits; d < 2^32, so each term is below 2^37 and no sum can wrap
     * a 64-bit size_t. The checks keep that true on 32-bit size_t too. */
    uint64_t bits = 0, D = d, K = k;
    switch (spec->kind) {
    case FP_COMP_IDENTITY: bits = 32 * D; break;
    case FP_COMP_TOPK: bits = (D >= 32 * K ? 32 * K : D) + 32 * K; break;
    case FP_COMP_RANDK: bits = 32 * K; break;
    case FP_COMP_QSGD: bits = 32 + D * fp_qsgd_field_bits(s); break;
    case FP_COMP_SIGN: bits = 32 + D; break;
    case FP_COMP_TOPK_QSGD:
        bits = 32 + (D >= 32 * K ? 32 * K : D) + K * fp_qsgd_field_bits(s);
        break;
    }
    uint64_t bytes = bits / 8 + (bits % 8 != 0);
    /* Every buffer is at most 4 d bytes (a vector) or `bytes`. */
    if (bytes > SIZE_MAX / 2 || 4 * D > SIZE_MAX / 2)
        return fp_error_set(err, FP_EINVAL, "compressor %s: d = %zu is too large", name, d);

    c->ops = &fp__ops[spec->kind];
    c->kind = spec->kind;
    c->d = d;
    c->k = k;
    c->levels = s;
    c->bytes = (size_t)bytes;
    return 0;
}

int fp_compressor_unbiased(const struct fp_compressor *c, double *omega, double *q)
{
    double d = (double)c->d, k = (double)c->k;
    double w = 0, qq = 0;
    /* the class is the registry's; the constants are this instance's */
    const int unbiased = (fp_comp_classes(c->kind) & FP_CLASS_UNBIASED) != 0;
    switch (c->kind) {
    case FP_COMP_IDENTITY: w = 0; break;
    case FP_COMP_RANDK: w = d / k - 1; break;
    case FP_COMP_QSGD: w = fp__qsgd_omega(c->d, c->levels); break;
    case FP_COMP_TOPK: qq = k / d; break;
    case FP_COMP_SIGN: qq = 1 / d; break;
    case FP_COMP_TOPK_QSGD: qq = (k / d) / (1 + fp__qsgd_omega(c->k, c->levels)); break;
    }
    if (omega)
        *omega = unbiased ? w : 0;
    if (q)
        *q = unbiased ? 0 : qq;
    return unbiased;
}

void *fp_compressor_ws_new(const struct fp_compressor *c)
{
    struct fp__ws *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    size_t d = c->d, k = c->k;
    bool ok = true;
    switch (c->kind) {
    case FP_COMP_IDENTITY:
    case FP_COMP_SIGN: break;
    case FP_COMP_QSGD: break;
    case FP_COMP_RANDK:
        ok = (w->idx = malloc(k * sizeof *w->idx)) &&
             (w->mask = malloc((d + 63) / 64 * sizeof *w->mask));
        break;
    case FP_COMP_TOPK:
    case FP_COMP_TOPK_QSGD:
        ok = (w->idx = malloc(k * sizeof *w->idx)) && (w->cand = malloc(d * sizeof *w->cand)) &&
             (c->kind == FP_COMP_TOPK || (w->vals = malloc(k * sizeof *w->vals)));
        break;
    }
    if (ok && (c->kind == FP_COMP_QSGD || c->kind == FP_COMP_TOPK_QSGD)) {
        size_t nt = (c->levels < FP__QTAB ? c->levels : FP__QTAB) + 1;
        ok = (w->qtab = malloc(nt * sizeof *w->qtab)) != NULL;
    }
    if (!ok) {
        fp_compressor_ws_free(c, w);
        return NULL;
    }
    return w;
}

void fp_compressor_ws_free(const struct fp_compressor *c, void *ws)
{
    (void)c;
    struct fp__ws *w = ws;
    if (!w)
        return;
    free(w->qtab);
    free(w->vals);
    free(w->mask);
    free(w->cand);
    free(w->idx);
    free(w);
}

int fp_compressor_compress(const struct fp_compressor *c, const float *v, fp_rng *rng, void *ws,
                           uint8_t *out, size_t cap, float *vhat)
{
    if (!c->ops || !v || !ws || !out || cap < c->bytes)
        return FP_EINVAL;
    bool random =
        c->kind == FP_COMP_RANDK || c->kind == FP_COMP_QSGD || c->kind == FP_COMP_TOPK_QSGD;
    if (random && !rng)
        return FP_EINVAL;
    return c->ops->compress(c, v, rng, ws, out, vhat);
}

int fp_compressor_decompress(const struct fp_compressor *c, const uint8_t *in, size_t len,
                             fp_rng *rng, void *ws, float *out)
{
    if (!c->ops || !ws || !out || (c->kind == FP_COMP_RANDK && !rng))
        return FP_EINVAL;
    if (len != c->bytes || !in)
        return FP_EFORMAT;
    return c->ops->decompress(c, in, rng, ws, out);
}
