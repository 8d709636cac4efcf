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
 * The first round starts once all N clients are connected. Liveness: a
 * dead-peer and a write-stall timeout per admitted session; a key that
 * connects again replaces its session, and a client whose connection was
 * lost keeps its slot in the open round until it closes (it rejoins if it
 * comes back in time).
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
    /* TEST ONLY (`--test-die-after-commit ROUND`): SIGKILL itself once that
     * round is committed, before any client hears its result: the crash
     * window a resumed run's welcome (each client's last included round)
     * closes */
    uint32_t test_die_round;
    /* TEST ONLY (`--test-slow-hash SECONDS`): each upload hashed on the
     * thread pool takes this much longer, so that an exchange closes while
     * hashes run (tests/e2e_hash_wait.sh). 0: never. */
    double test_slow_hash_s;
    const uint8_t *key; /* the coordinator's secret key [FP_NOISE_KEY] */
    /* the allow-list in use; on SIGHUP the coordinator re-reads allow_path
     * and, if the new list may replace it (fp_allow_update), replaces its
     * contents (the caller frees it after the run, whatever it holds) */
    struct fp_allow *allow;
    const char *allow_path;
    double deadline_s;                /* a round's deadline from its broadcast; 0: the scenario's */
    double wait_s;                    /* how long the first round waits for all N clients */
    double handshake_s;               /* a connection's handshake and admission deadline */
    unsigned max_pending;             /* unauthenticated connections at once */
    unsigned max_pending_per_address; /* of them from one address (host); 0: no such cap */
    /* An admitted session that sends no byte for dead_peer_s seconds is
     * closed (its heartbeats stopped); the value goes to the client in the
     * welcome, which heartbeats at a third of it at most. 1..65535. */
    unsigned dead_peer_s;
    double write_stall_s; /* queued bytes that make no progress this long: closed */
    FILE *progress;       /* run/'s progress lines; NULL = quiet */
    FILE *log;            /* connections and refusals (stderr) */
    volatile sig_atomic_t *stop;
    /* Continue run resume_run from resume (fp_store_load_resume, its lock
     * held by the store handle) instead of starting a new run; NULL: a new
     * run. The scenario must be the run's stored one. */
    const struct fp_resume *resume;
    int64_t resume_run;
};

/* Keeps the heap's freed memory instead of returning it to the system:
 * every broadcast allocates one wire buffer per client (636 KB each for
 * the paper's MLP) and frees it once written, and with glibc's defaults
 * the next round faulted all of those pages in again (a third of the
 * broadcast's time, bench/bench_net). Process-wide; fp_coord_run calls it. */
void fp_coord_tune_malloc(void);

/* What fp_coord_run refuses before a run is begun, for a caller to check
 * before it opens a store: the allow-list's N is the scenario's [data]
 * clients, and a round deadline is given (deadline_s > 0, or the
 * scenario's). 0 or FP_EINVAL with err set. */
int fp_coord_check(const struct fp_scenario *sc, const struct fp_allow *allow, double deadline_s,
                   struct fp_error *err);

/* 0 if host (--listen's, without brackets) is an IPv4 or IPv6 address,
 * else FP_EINVAL with err set: a host name is refused. */
int fp_coord_check_listen(const char *host, int port, struct fp_error *err);

/* Runs the scenario to its end (or a stop, or a failure). 0 with *res
 * filled, or a negative code with err set; a run that got an id is marked
 * failed in the store. SIGINT / SIGTERM end the run 'interrupted'
 * (res->interrupted): after the round in progress, or at once while it
 * still waits for its clients before the first round. */
int fp_coord_run(const struct fp_scenario *sc, struct fp_store *store,
                 const struct fp_coord_options *o, struct fp_run_result *res, struct fp_error *err);

#endif
