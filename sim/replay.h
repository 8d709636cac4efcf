/*
 * sim/replay.h — `fedpress sim --replay RUN`: the simulator re-executes a
 * stored run (a simulator's or a coordinator's) and compares it with its log.
 *
 * The scenario is the run's canonical text (runs.scenario); who took part
 * is the log's (client_rounds: a client is included in a round iff its row
 * says 'included', whatever became of the others), so the simulated network
 * of [participation] dropout and straggler is not consulted: a daemon run's
 * real absences and late clients are replayed as they happened. Every
 * included upload's payload SHA-256, each round's metrics and the final
 * model's SHA-256 are compared with the log; the replay stops at the first
 * round that differs.
 *
 * The replayed store is only read. The replay's own rounds go to a
 * temporary store (a directory under $TMPDIR, else /tmp) that is deleted
 * when it ends: a replay adds no run anywhere.
 */
#ifndef FP_REPLAY_H
#define FP_REPLAY_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/error.h"
#include "../store/store.h"

struct fp_replay_options {
    unsigned threads; /* worker threads, >= 1 (the result does not depend on it) */
    FILE *progress;   /* the simulator's line per round; NULL = silent */
    FILE *out;        /* the verdict: exact, or the first divergence and its likely cause */
    volatile sig_atomic_t *stop; /* set (e.g. by SIGINT): stop after the round in progress */
};

/* The verdicts. Errors (no such run, a store that cannot be read, an
 * interrupted replay) are negative, with err set. */
#define FP_REPLAY_EXACT     0
#define FP_REPLAY_DIVERGENT 1

int fp_sim_replay(struct fp_store *store, int64_t run_id, const struct fp_replay_options *o,
                  struct fp_error *err);

#endif
