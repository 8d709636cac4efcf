/*
 * algorithms/compressor.h — compressors with real byte encodings.
 *
 * A compressor maps a float32 vector v of length d to bytes and back. Its
 * class is what the algorithms check at scenario load: unbiased
 * (E[C(v)] = v, E||C(v) - v||^2 <= omega ||v||^2) or contractive
 * (||C(v) - v||^2 <= (1 - q) ||v||^2). Sizes and rules are pinned in
 * docs/compressors.md (from the team's ALGORITHMS.md):
 *
 *   identity   32 d bits                          unbiased, omega = 0
 *   topk       min(64 k, 32 k + d) bits           contractive, q = k/d
 *   randk      32 k bits (mask from the stream)   unbiased, omega = d/k - 1
 *   qsgd:s     32 + d (1 + ceil(log2(s + 1)))     unbiased, omega = min(d/s^2, sqrt(d)/s)
 *   sign       32 + d bits                        contractive, q >= 1/d
 *   topk+qsgd:s  top-k, then QSGD of the k kept values (see compressor.c)
 *
 * k = floor(ratio d), at least 1; bytes = ceil(bits / 8). Every encoded
 * message of a given compressor and d has the same size
 * (fp_compressor_bytes), so the decoder rejects any other length.
 *
 * Randomness: compress() and, for randk, decompress() take an rng that the
 * caller seeds with the same key on both sides, (seed, round, client,
 * FP_RNG_COMPRESS): rand-k's mask is drawn from it first, so it never
 * travels. Workspaces (fp_compressor_ws_new) are per-thread scratch that
 * never influences a result.
 */
#ifndef FP_COMPRESSOR_H
#define FP_COMPRESSOR_H

#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/rng.h"
#include "../core/scenario.h"

struct fp_compressor_ops;

struct fp_compressor {
    const struct fp_compressor_ops *ops;
    enum fp_comp_kind kind;
    size_t d;
    size_t k;        /* kept entries (topk, randk, topk+qsgd); d otherwise */
    uint32_t levels; /* s for qsgd and topk+qsgd */
    size_t bytes;    /* exact encoded size */
};

/* Sets up a compressor for vectors of length d from a scenario spec.
 * FP_EINVAL with a message if the spec does not make sense for d. */
int fp_compressor_init(struct fp_compressor *c, const struct fp_comp_spec *spec, size_t d,
                       struct fp_error *err);

static inline size_t fp_compressor_bytes(const struct fp_compressor *c)
{
    return c->bytes;
}

/* 1 if unbiased (then *omega is its variance constant), 0 if contractive
 * (then *q is its contraction constant; for sign the worst case 1/d). */
int fp_compressor_unbiased(const struct fp_compressor *c, double *omega, double *q);

void *fp_compressor_ws_new(const struct fp_compressor *c);
void fp_compressor_ws_free(const struct fp_compressor *c, void *ws);

/* Encodes v into out (cap >= fp_compressor_bytes) and, if vhat is not NULL,
 * writes the decoded value C(v) into vhat[0..d) — exactly what
 * fp_compressor_decompress will produce from those bytes, so client state
 * can track what the server sees. v must be finite. Returns 0 or FP_EINVAL. */
int fp_compressor_compress(const struct fp_compressor *c, const float *v, fp_rng *rng, void *ws,
                           uint8_t *out, size_t cap, float *vhat);

/* Decodes in[0..len) into out[0..d). FP_EFORMAT if len is not exactly
 * fp_compressor_bytes, or the content is not a canonical encoding (index out
 * of range or not increasing, wrong bitmap population, level above s,
 * non-finite value or norm, non-zero padding bits). */
int fp_compressor_decompress(const struct fp_compressor *c, const uint8_t *in, size_t len,
                             fp_rng *rng, void *ws, float *out);

#endif
