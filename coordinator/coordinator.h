/*
 * coordinator/coordinator.h — `fedpress coordinator`: the server side of a
 * federated run across machines. One libuv loop; one session per TCP
 * connection, each a net/channel (Noise XK) whose client key must be in the
 * allow-list; the rounds are run/'s, exactly as the simulator runs them
 * (sampling, inclusion in ascending client id, evaluation, the commit), so
 * with every sampled client answering the store ends with the simulator's
 * metrics and final model, byte for byte. The conversation on top of the
 * channel is in docs/daemons.md.
 *
 * This slice: the first round starts once all N clients are connected.
 * Partial rounds (docs/daemons.md): a round closes when every sampled
 * client answered, at [participation] deadline, or min_updates uploads plus
 * wait_after_min; a sampled client not included is late, absent or refused
 * with its reason in the store; below min_updates a round is tried twice
 * more (the same sample), then the run fails.
 *
 * Ownership: the scenario, store, allow-list and key are borrowed for the
 * call; everything the loop allocates is freed before it returns.
 */
#ifndef FP_COORDINATOR_H
#define FP_COORDINATOR_H

#include <signal.h>
#include <stdio.h>

#include "../core/error.h"
#include "../core/scenario.h"
#include "../net/noise.h"
#include "../run/run.h"
#include "../store/store.h"
#include "allow.h"

struct fp_coord_options {
    const char *host;       /* --listen */
    int port;               /* 0: any free port (see ready_file) */
    const char *ready_file; /* if set: the port, written once listening (tests) */
    const uint8_t *key;     /* the coordinator's secret key [FP_NOISE_KEY] */
    const struct fp_allow *allow;
    double deadline_s;    /* a round's deadline from its broadcast; 0: the scenario's */
    double wait_s;        /* how long the first round waits for all N clients */
    double handshake_s;   /* a connection's handshake and admission deadline */
    unsigned max_pending; /* unauthenticated connections at once */
    FILE *progress;       /* run/'s progress lines; NULL = quiet */
    FILE *log;            /* connections and refusals (stderr) */
    volatile sig_atomic_t *stop;
};

/* Keeps the heap's freed memory instead of returning it to the system:
 * every broadcast allocates one wire buffer per client (636 KB each for
 * the paper's MLP) and frees it once written, and with glibc's defaults
 * the next round faulted all of those pages in again (a third of the
 * broadcast's time, bench/bench_net). Process-wide; fp_coord_run calls it. */
void fp_coord_tune_malloc(void);

/* Runs the scenario to its end (or a stop, or a failure). 0 with *res
 * filled, or a negative code with err set; a run that got an id is marked
 * failed in the store. */
int fp_coord_run(const struct fp_scenario *sc, struct fp_store *store,
                 const struct fp_coord_options *o, struct fp_run_result *res, struct fp_error *err);

#endif
