/*
 * workloads/partition.c — which client holds which training examples.
 *
 * Every partitioner first decides an owner for each example (or none: the
 * shards leftover), then one counting pass turns owners into per-client
 * lists. That pass visits examples in ascending index order, so each
 * client's list is ascending no matter how the owners were chosen — the
 * stored order that full-batch gradients use.
 *
 * All randomness comes from one stream keyed (seed, 0, no client, PARTITION)
 * and is consumed in a fixed order, so a partition is a pure function of the
 * scenario. The rules are spelled out in docs/workloads.md.
 */
#include "dataset.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"

#define FP__NO_OWNER UINT32_MAX
/* Dirichlet draws are repeated until every client has an example; past this
 * many the configuration is hopeless (alpha too small for N) and we say so. */
#define FP__DIRICHLET_TRIES 100
/* Passes of the shards collision repair; one pass suffices in practice. */
#define FP__SHARD_PASSES 20

void fp_partition_free(struct fp_partition *p)
{
    if (!p)
        return;
    free(p->offsets);
    free(p->indices);
    memset(p, 0, sizeof *p);
}

/* Stable counting sort of 0..n-1 by label; cstart[k] = first position of class k. */
static void fp__sort_by_label(uint32_t *sorted, uint32_t *cstart, const uint8_t *y, uint32_t n,
                              uint32_t nclasses)
{
    memset(cstart, 0, (nclasses + 1) * sizeof *cstart);
    for (uint32_t i = 0; i < n; i++)
        cstart[y[i] + 1]++;
    for (uint32_t k = 0; k < nclasses; k++)
        cstart[k + 1] += cstart[k];
    uint32_t *pos = cstart + nclasses + 1; /* scratch: caller gave 2 * (nclasses + 1) */
    memcpy(pos, cstart, (nclasses + 1) * sizeof *pos);
    for (uint32_t i = 0; i < n; i++)
        sorted[pos[y[i]]++] = i;
}

/* Client c of N owns positions [c*n/N, (c+1)*n/N) of a sequence of n. */
static void fp__blocks(uint32_t *owner, const uint32_t *seq, uint32_t n, uint32_t nclients)
{
    for (uint32_t c = 0; c < nclients; c++) {
        uint32_t lo = (uint32_t)((uint64_t)c * n / nclients);
        uint32_t hi = (uint32_t)((uint64_t)(c + 1) * n / nclients);
        for (uint32_t i = lo; i < hi; i++)
            owner[seq[i]] = c;
    }
}

static int fp__has_class(const uint32_t *slots, uint32_t k, const uint8_t *cls, uint32_t skip,
                         uint8_t c)
{
    for (uint32_t t = 0; t < k; t++)
        if (t != skip && cls[slots[t]] == c)
            return 1;
    return 0;
}

/* The largest K' < k for which no class has more than nc of the nc*K'
 * shards (the check fp__shards makes), or 0 if none does. */
static uint32_t fp__shards_fit(const uint32_t *sorted, const uint8_t *y, uint32_t n, uint32_t nc,
                               uint32_t k)
{
    for (uint32_t kk = k - 1; kk >= 1; kk--) {
        uint64_t nshards = (uint64_t)nc * kk;
        uint32_t size = (uint32_t)(n / nshards), count[256] = {0}, worst = 0;
        for (uint64_t j = 0; j < nshards; j++) {
            uint8_t c = y[sorted[j * size]];
            if (++count[c] > worst)
                worst = count[c];
        }
        if (worst <= nc)
            return kk;
    }
    return 0;
}

static int fp__shards(uint32_t *owner, const uint32_t *sorted, const uint8_t *y, uint32_t n,
                      uint32_t nclasses, const struct fp_scenario *sc, fp_rng *rng,
                      struct fp_error *err)
{
    uint32_t nc = sc->clients, k = sc->shards;
    if (k == 0 || k > nclasses)
        return fp_error_set(err, FP_EINVAL,
                            "[data] partition = shards:%u: each client's shards must have "
                            "different classes, so it must be between 1 and %u (the classes)",
                            k, nclasses);
    uint64_t nshards = (uint64_t)nc * k;
    if (nshards > n)
        return fp_error_set(err, FP_EINVAL,
                            "[data] partition = shards:%u with %u clients needs %llu shards, "
                            "more than the %u training examples; use fewer clients (at most "
                            "%u with shards:%u) or fewer shards per client",
                            k, nc, (unsigned long long)nshards, n, n / k, k);
    uint32_t size = (uint32_t)(n / nshards);
    uint32_t *slot = malloc(nshards * sizeof *slot);
    uint8_t *cls = malloc(nshards);
    if (!slot || !cls) {
        free(slot);
        free(cls);
        return fp_error_set(err, FP_ENOMEM, "out of memory for %llu shards",
                            (unsigned long long)nshards);
    }
    int rc = 0;
    uint32_t count[256] = {0};
    for (uint32_t j = 0; j < nshards; j++) {
        cls[j] = y[sorted[(uint64_t)j * size]]; /* a shard's class is its first example's */
        count[cls[j]]++;
    }
    /* A client holds at most one shard per class, so a class with more than N
     * shards cannot be placed; conversely, dealing label-sorted shards
     * round-robin shows that N or fewer per class always can. */
    for (uint32_t c = 0; c < nclasses; c++) {
        if (count[c] > nc) {
            /* A class's share of the shards does not shrink with more
             * clients (both scale with N): only fewer shards per client
             * help, if any count does. */
            uint32_t fit = fp__shards_fit(sorted, y, n, nc, k);
            char advice[96];
            if (fit)
                snprintf(advice, sizeof advice, "use fewer shards per client (shards:%u fits)",
                         fit);
            else
                snprintf(advice, sizeof advice,
                         "no shards:K fits these labels; use dirichlet:ALPHA or iid");
            rc = fp_error_set(err, FP_EINVAL,
                              "[data] partition = shards:%u with %u clients: class %u has %u "
                              "shards of %u examples but a client may hold only one shard per "
                              "class; %s",
                              k, nc, c, count[c], size, advice);
            goto out;
        }
    }
    for (uint32_t j = 0; j < nshards; j++)
        slot[j] = j;
    fp_rng_shuffle_u32(rng, slot, nshards);

    /* Repair: a client whose slot t repeats a class x swaps it with a slot of
     * some client c2 that lacks x, holding a class y that c lacks. Each swap
     * removes one collision and creates none. */
    int clean = 0;
    for (int pass = 0; pass < FP__SHARD_PASSES && !clean; pass++) {
        clean = 1;
        for (uint32_t c = 0; c < nc; c++) {
            uint32_t *mine = slot + (uint64_t)c * k;
            for (uint32_t t = 1; t < k; t++) {
                uint8_t x = cls[mine[t]];
                if (!fp__has_class(mine, t, cls, t, x))
                    continue;
                int fixed = 0;
                uint32_t start = (uint32_t)fp_rng_below(rng, nc);
                for (uint32_t s = 0; s < nc && !fixed; s++) {
                    uint32_t c2 = (start + s) % nc;
                    uint32_t *theirs = slot + (uint64_t)c2 * k;
                    if (c2 == c || fp__has_class(theirs, k, cls, k, x))
                        continue;
                    for (uint32_t t2 = 0; t2 < k; t2++) {
                        if (fp__has_class(mine, k, cls, k, cls[theirs[t2]]))
                            continue;
                        uint32_t tmp = mine[t];
                        mine[t] = theirs[t2];
                        theirs[t2] = tmp;
                        fixed = 1;
                        break;
                    }
                }
                if (!fixed)
                    clean = 0;
            }
        }
    }
    if (!clean) {
        rc = fp_error_set(err, FP_EINVAL,
                          "[data] partition = shards:%u with %u clients: could not give every "
                          "client %u shards of different classes; use fewer shards per client",
                          k, nc, k);
        goto out;
    }
    for (uint32_t c = 0; c < nc; c++)
        for (uint32_t t = 0; t < k; t++) {
            uint64_t first = (uint64_t)slot[(uint64_t)c * k + t] * size;
            for (uint32_t r = 0; r < size; r++)
                owner[sorted[first + r]] = c;
        }
out:
    free(slot);
    free(cls);
    return rc;
}

static int fp__dirichlet(uint32_t *owner, const uint32_t *sorted, const uint32_t *cstart,
                         uint32_t n, uint32_t nclasses, const struct fp_scenario *sc, fp_rng *rng,
                         struct fp_error *err)
{
    uint32_t nc = sc->clients;
    double alpha = sc->dirichlet_alpha;
    if (!(alpha > 0) || !isfinite(alpha))
        return fp_error_set(err, FP_EINVAL, "[data] partition = dirichlet:%g: alpha must be > 0",
                            alpha);
    uint32_t *tmp = malloc((size_t)n * sizeof *tmp);
    uint32_t *have = malloc((size_t)nc * sizeof *have);
    double *g = malloc((size_t)nc * sizeof *g);
    int rc = 0;
    if (!tmp || !have || !g) {
        rc = fp_error_set(err, FP_ENOMEM, "out of memory for the dirichlet partition");
        goto out;
    }
    /* Why draws failed, for advice that points the right way: the gamma
     * draws can overflow (alpha too large) or underflow to 0 (too small),
     * or leave a client empty (too small for N, or too many clients). */
    int overflow = 0, underflow = 0;
    for (int attempt = 0; attempt < FP__DIRICHLET_TRIES; attempt++) {
        int ok = 1;
        memset(have, 0, (size_t)nc * sizeof *have);
        for (uint32_t k = 0; k < nclasses && ok; k++) {
            uint32_t nk = cstart[k + 1] - cstart[k];
            memcpy(tmp, sorted + cstart[k], (size_t)nk * sizeof *tmp);
            fp_rng_shuffle_u32(rng, tmp, nk);
            double sum = 0;
            for (uint32_t c = 0; c < nc; c++) {
                g[c] = fp_rng_gamma(rng, alpha);
                sum += g[c];
            }
            /* Tiny alpha can underflow every draw to 0, a huge one overflow
             * their sum: count either as a failed draw. */
            if (!(sum > 0) || !isfinite(sum)) {
                overflow += !(sum < INFINITY);
                underflow += sum == 0;
                ok = 0;
                break;
            }
            /* Cumulative rounding: client c gets [round(nk*P_{c-1}), round(nk*P_c)),
             * the last bound forced to nk, so every example is assigned once. */
            double cum = 0;
            uint32_t lo = 0;
            for (uint32_t c = 0; c < nc; c++) {
                cum += g[c] / sum;
                uint32_t hi = c + 1 == nc ? nk : (uint32_t)fmin(floor(nk * cum + 0.5), nk);
                if (hi < lo)
                    hi = lo;
                for (uint32_t i = lo; i < hi; i++)
                    owner[tmp[i]] = c;
                have[c] += hi - lo;
                lo = hi;
            }
        }
        for (uint32_t c = 0; c < nc && ok; c++)
            if (have[c] == 0)
                ok = 0;
        if (ok)
            goto out;
    }
    if (overflow)
        /* nc draws of about alpha each must sum below DBL_MAX */
        rc = fp_error_set(err, FP_EINVAL,
                          "[data] partition = dirichlet:%g with %u clients: alpha is too large, "
                          "the gamma draws overflow a double; use a smaller alpha (below %.3g; "
                          "beyond about 1000 every client gets each class in near-equal shares "
                          "already)",
                          alpha, nc, DBL_MAX / 2 / nc);
    else if (underflow)
        rc = fp_error_set(err, FP_EINVAL,
                          "[data] partition = dirichlet:%g with %u clients: alpha is too small, "
                          "the gamma draws underflow to 0; use a larger alpha",
                          alpha, nc);
    else if (alpha >= 1000)
        /* the shares are near-equal already: a larger alpha cannot help */
        rc = fp_error_set(err, FP_EINVAL,
                          "[data] partition = dirichlet:%g with %u clients: after %d draws some "
                          "client still had no examples (%u examples, %u classes); use fewer "
                          "clients",
                          alpha, nc, FP__DIRICHLET_TRIES, n, nclasses);
    else
        rc = fp_error_set(err, FP_EINVAL,
                          "[data] partition = dirichlet:%g with %u clients: after %d draws some "
                          "client still had no examples; use a larger alpha or fewer clients",
                          alpha, nc, FP__DIRICHLET_TRIES);
out:
    free(tmp);
    free(have);
    free(g);
    return rc;
}

/* Owners -> per-client ascending lists (counting sort by owner). */
static int fp__collect(struct fp_partition *p, const uint32_t *owner, uint32_t n, uint32_t nc,
                       struct fp_error *err)
{
    p->offsets = calloc((size_t)nc + 1, sizeof *p->offsets);
    if (!p->offsets)
        return fp_error_set(err, FP_ENOMEM, "out of memory for %u clients", nc);
    for (uint32_t i = 0; i < n; i++)
        if (owner[i] != FP__NO_OWNER)
            p->offsets[owner[i] + 1]++;
    for (uint32_t c = 0; c < nc; c++)
        p->offsets[c + 1] += p->offsets[c];
    p->indices = malloc((size_t)(p->offsets[nc] ? p->offsets[nc] : 1) * sizeof *p->indices);
    if (!p->indices)
        return fp_error_set(err, FP_ENOMEM, "out of memory for the partition");
    uint32_t *pos = malloc((size_t)nc * sizeof *pos);
    if (!pos)
        return fp_error_set(err, FP_ENOMEM, "out of memory for the partition");
    memcpy(pos, p->offsets, (size_t)nc * sizeof *pos);
    for (uint32_t i = 0; i < n; i++)
        if (owner[i] != FP__NO_OWNER)
            p->indices[pos[owner[i]]++] = i;
    free(pos);
    p->nclients = nc;
    return 0;
}

int fp_partition_make(struct fp_partition *p, const uint8_t *y, size_t n_, uint32_t nclasses,
                      const struct fp_scenario *sc, struct fp_error *err)
{
    memset(p, 0, sizeof *p);
    uint32_t nc = sc->clients;
    if (nclasses == 0 || nclasses > 255)
        return fp_error_set(err, FP_EINVAL, "partition: %u classes (allowed: 1 to 255)", nclasses);
    if (n_ > UINT32_MAX - 1)
        return fp_error_set(err, FP_EINVAL, "partition: %zu examples is too many", n_);
    uint32_t n = (uint32_t)n_;
    if (nc == 0 || nc > n)
        return fp_error_set(err, FP_EINVAL,
                            "[data] clients = %u: must be between 1 and the %u training examples",
                            nc, n);
    for (uint32_t i = 0; i < n; i++)
        if (y[i] >= nclasses)
            return fp_error_set(err, FP_EINVAL, "partition: label %u of example %u is not below %u",
                                y[i], i, nclasses);
    fp_rng rng;
    fp_rng_seed(&rng, sc->seed, 0, FP_RNG_NO_CLIENT, FP_RNG_PARTITION);

    int rc = 0;
    uint32_t *owner = malloc((size_t)n * sizeof *owner);
    uint32_t *seq = malloc((size_t)n * sizeof *seq);
    uint32_t *cstart = malloc(2 * ((size_t)nclasses + 1) * sizeof *cstart);
    if (!owner || !seq || !cstart) {
        rc = fp_error_set(err, FP_ENOMEM, "out of memory partitioning %u examples", n);
        goto out;
    }
    for (uint32_t i = 0; i < n; i++)
        owner[i] = FP__NO_OWNER;
    switch (sc->partition) {
    case FP_PART_IID:
        for (uint32_t i = 0; i < n; i++)
            seq[i] = i;
        fp_rng_shuffle_u32(&rng, seq, n);
        fp__blocks(owner, seq, n, nc);
        break;
    case FP_PART_SORTED:
        fp__sort_by_label(seq, cstart, y, n, nclasses);
        fp__blocks(owner, seq, n, nc);
        break;
    case FP_PART_SHARDS:
        fp__sort_by_label(seq, cstart, y, n, nclasses);
        rc = fp__shards(owner, seq, y, n, nclasses, sc, &rng, err);
        break;
    case FP_PART_DIRICHLET:
        fp__sort_by_label(seq, cstart, y, n, nclasses);
        rc = fp__dirichlet(owner, seq, cstart, n, nclasses, sc, &rng, err);
        break;
    default:
        rc = fp_error_set(err, FP_EINVAL,
                          "[data] partition: kind %d does not apply to a labelled dataset "
                          "(use iid, shards, dirichlet or sorted)",
                          (int)sc->partition);
        break;
    }
    if (rc)
        goto out;
    rc = fp__collect(p, owner, n, nc, err);
out:
    if (rc)
        fp_partition_free(p);
    free(owner);
    free(seq);
    free(cstart);
    return rc;
}
