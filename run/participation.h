/*
 * run/participation.h — when a round closes, and who is in it.
 *
 * The coordinator's rule (docs/daemons.md), written once as a function of
 * each sampled client's answer time so that the simulator's partial rounds
 * close exactly as a coordinator's would: an exchange closes at the first of
 *   - every sampled client answered or left (an absent one has left),
 *   - `deadline` seconds after the broadcast,
 *   - min_updates uploads in and wait_after_min more seconds passed;
 * an upload is in if it arrived by then, the others are late. Below
 * min_updates the round is tried again with the same sample (the sample is
 * keyed by the round), at most FP_PART_ATTEMPTS times in all, then the run
 * fails.
 *
 * The simulator's model of the network (docs/scenarios.md): a sampled
 * client fails to answer with probability [participation] dropout, drawn
 * from the FP_RNG_DROPOUT stream keyed by (round, attempt, client); with a
 * straggler model it answers after
 *   answer_time * exp(sigma * Z_c + jitter * Z_{c,r,a})
 * seconds, Z_c from the FP_RNG_STRAGGLER stream keyed by (round 0, client)
 * (the client's speed, fixed for the run) and Z_{c,r,a} keyed by (round,
 * attempt, client). Every draw is keyed, never sequential, so the result is
 * the same at any thread count and in any order of evaluation.
 */
#ifndef FP_PARTICIPATION_H
#define FP_PARTICIPATION_H

#include <stdint.h>

#include <stddef.h>

#include "../core/scenario.h"
#include "../store/store.h"

/* A round is tried at most this many times (the coordinator's bound). */
#define FP_PART_ATTEMPTS 3u

/* What closed an exchange: the coordinator's words, stored in each late
 * client's reason ("no upload when the round closed (<why>)"). */
#define FP_PART_WHY_ALL      "every sampled client answered or left"
#define FP_PART_WHY_DEADLINE "the deadline passed"
#define FP_PART_WHY_MIN      "min_updates in and wait_after_min passed"

/* The messages of a round below min_updates (both drivers): tried again
 * (round, uploads in, min_updates, the next attempt, FP_PART_ATTEMPTS, the
 * list), or the run fails (round, uploads in, min_updates, attempts, the
 * list). The list is fp_part_not_in's. */
#define FP_PART_RETRY                                                                              \
    "round %u: %u of the %u uploads it needs arrived; trying it again (attempt %u of %u); not "    \
    "answering:%s"
#define FP_PART_GIVE_UP                                                                            \
    "round %u: only %u of the %u uploads it needs ([participation] min_updates) arrived, in the "  \
    "last of %u attempts; not answering:%s"

/* " 7 (absent: WHY) 9 (late: WHY)": the n sampled clients chosen[] whose
 * status is not included, with why, into list[cap] (cut short if long). */
void fp_part_not_in(char *list, size_t cap, uint32_t n, const uint32_t *chosen,
                    const enum fp_client_status *status, const char (*why)[160]);

/* Seconds after the broadcast at which `client` answers in attempt
 * `attempt` (0-based) of `round`; INFINITY if it drops out. 0 without a
 * straggler model. */
double fp_part_answer_time(const struct fp_scenario *sc, uint32_t round, uint32_t attempt,
                           uint32_t client);

/* The time the exchange closes given the n sampled clients' answer times
 * t[] (INFINITY: never answers, having left), and why (one of FP_PART_WHY_*).
 * scratch holds n doubles. A client is in iff t <= the time returned. */
double fp_part_close(const struct fp_scenario *sc, const double *t, uint32_t n, double *scratch,
                     const char **why);

#endif
