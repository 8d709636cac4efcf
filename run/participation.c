/*
 * run/participation.c — the closing rule and the simulated network (see
 * participation.h).
 */
#include "participation.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"

/* The round word of a per-attempt key: attempts of one round never share a
 * stream, and rounds fit in 32 bits. */
static uint64_t fp__key(uint32_t round, uint32_t attempt)
{
    return (uint64_t)round | (uint64_t)attempt << 32;
}

static double fp__normal(const struct fp_scenario *sc, uint64_t round_key, uint32_t client)
{
    fp_rng g;
    fp_rng_seed(&g, sc->seed, round_key, client, FP_RNG_STRAGGLER);
    return fp_rng_normal(&g);
}

double fp_part_answer_time(const struct fp_scenario *sc, uint32_t round, uint32_t attempt,
                           uint32_t client)
{
    if (sc->dropout > 0) {
        fp_rng g;
        fp_rng_seed(&g, sc->seed, fp__key(round, attempt), client, FP_RNG_DROPOUT);
        if (fp_rng_uniform(&g) < sc->dropout)
            return INFINITY;
    }
    if (sc->straggler == FP_STRAGGLER_NONE)
        return 0;
    /* Round 0 is no round (rounds count from 1): the client's own speed. */
    double z = sc->straggler_sigma * fp__normal(sc, 0, client);
    if (sc->straggler_jitter > 0)
        z += sc->straggler_jitter * fp__normal(sc, fp__key(round, attempt), client);
    return sc->answer_time * exp(z);
}

static int fp__cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double fp_part_close(const struct fp_scenario *sc, const double *t, uint32_t n, double *scratch,
                     const char **why)
{
    /* the answers in the order they arrive; INFINITY (left) sorts last */
    memcpy(scratch, t, n * sizeof *t);
    qsort(scratch, n, sizeof *scratch, fp__cmp_double);
    uint32_t answering = 0;
    while (answering < n && isfinite(scratch[answering]))
        answering++;
    /* every client answered or left: at the last answer (0 if none) */
    double close = answering ? scratch[answering - 1] : 0;
    *why = FP_PART_WHY_ALL;
    const double deadline = sc->deadline > 0 ? sc->deadline : INFINITY;
    if (deadline < close) {
        close = deadline;
        *why = FP_PART_WHY_DEADLINE;
    }
    /* the min_updates-th answer starts wait_after_min */
    if (sc->min_updates >= 1 && sc->min_updates <= answering) {
        double at = scratch[sc->min_updates - 1] + sc->wait_after_min;
        if (at < close) {
            close = at;
            *why = FP_PART_WHY_MIN;
        }
    }
    return close;
}

void fp_part_not_in(char *list, size_t cap, uint32_t n, const uint32_t *chosen,
                    const enum fp_client_status *status, const char (*why)[160])
{
    size_t len = 0;
    list[0] = '\0';
    /* snprintf cuts the last entry short; none is begun in the last 80 bytes */
    for (uint32_t i = 0; i < n && len + 80 < cap; i++)
        if (status[i] != FP_CLIENT_INCLUDED)
            len += (size_t)snprintf(list + len, cap - len, " %u (%s: %.160s)", chosen[i],
                                    fp_client_status_name(status[i]), why[i]);
}
