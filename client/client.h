/*
 * client/client.h — `fedpress client`: one client of a federated run. It
 * connects to the coordinator over the Noise XK channel (pinning the
 * coordinator's key), learns its id (from its key, decided by the
 * coordinator) and the scenario from the welcome, builds its own shard of
 * the scenario's partition (fp_workload_create_client), and for every round
 * it is sampled in runs fp_algo_client_update on the broadcast's bytes and
 * sends the upload. Its algorithm state (c_i, e_i, ...) becomes current
 * only when the coordinator says the upload was included
 * (fp_algo_client_commit), and is then written under the state directory
 * atomically (temporary file, fsync, rename, fsync of the directory).
 *
 * Training runs on libuv's thread pool (uv_queue_work), so the loop keeps
 * sending heartbeats meanwhile; the coordinator's socket is not read while
 * a broadcast is being trained on. A connection that is refused or lost is
 * made again with jittered exponential backoff (docs/daemons.md), and the
 * client re-handshakes and goes on with its state; it does not reconnect
 * when the run ended, or the coordinator refused it or said why it ended,
 * or the pinned key did not answer. Before an upload is sent, the state it
 * would commit is written durably as a "prepared" file; the result (or,
 * after a restart, the welcome's last included round) commits or discards
 * it, so a client killed between the coordinator's inclusion and its own
 * commit continues exactly.
 */
#ifndef FP_CLIENT_H
#define FP_CLIENT_H

#include <stdint.h>
#include <stdio.h>

#include "../core/error.h"
#include "../net/noise.h"

struct fp_client_options {
    const char *host;
    int port;
    const uint8_t *server_pub; /* [FP_NOISE_KEY], pinned */
    const uint8_t *key;        /* the client's secret key [FP_NOISE_KEY] */
    const char *state_dir;
    /* --data DIR: the client's own training pair in DIR
     * (fp_workload_create_client_dir); NULL: its shard of the scenario's
     * partition */
    const char *data_dir;
    double welcome_s;     /* connect, handshake and welcome within this (0: 30 s) */
    double heartbeat_s;   /* at most this between heartbeats (0: 5 s); also at most a
                           * third of the coordinator's dead-peer timeout */
    double reconnect_for; /* give up after this long without a welcome (0: never retry) */
    FILE *log;            /* progress and errors' context (stderr) */
    /* TEST ONLY (tests/e2e_partial.sh, `--test-bad-upload ROUND:KIND`):
     * in round test_bad_round, send a malformed upload instead of the real
     * one: 1 every payload byte 0xFF (not finite), 2 four bytes short; or
     * 3 the real one twice. 0: never (production). */
    uint32_t test_bad_round;
    int test_bad_kind;
    /* TEST ONLY (tests/e2e_live.sh, `--test-slow-train MS`): each training
     * takes MS milliseconds longer. 0: never. */
    unsigned test_slow_ms;
    /* TEST ONLY (`--test-die-after-upload ROUND`): SIGKILL itself once the
     * upload of that round is written, before its result: the window in
     * which the coordinator includes an upload whose client has not
     * committed it. 0: never. */
    uint32_t test_die_round;
};

struct fp_client_result {
    int64_t run_id;
    uint32_t id;
    uint32_t rounds_sampled, rounds_included;
    int stopped;           /* the coordinator was stopped before the last round */
    char model_sha256[65]; /* the final model's, as the coordinator announced it */
};

int fp_client_run(const struct fp_client_options *o, struct fp_client_result *res,
                  struct fp_error *err);

#endif
