/*
 * store/store.h — the SQLite run store.
 *
 * One file holds many runs (WAL mode, so `fedpress runs` / sqlite3 can read
 * while a simulation writes). Tables: runs, rounds, client_rounds,
 * checkpoints, checkpoint_parts, attempts, attempt_clients; the schema is
 * documented in docs/store.md. A round's metrics
 * (its `rounds` row and all its `client_rounds` rows) commit in one
 * transaction: after a crash the store holds the whole round or none of it.
 *
 * Ownership: fp_store_open() returns a handle the caller closes with
 * fp_store_close(); one thread uses a handle at a time. Strings handed to
 * the fp_store_list_runs() callback inside struct fp_run_info are borrowed
 * from SQLite: valid only until the callback returns, never freed by the
 * caller (copy what must outlive the callback). Inputs (meta strings, round
 * and client arrays, the model) are only read during the call.
 */
#ifndef FP_STORE_H
#define FP_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"

struct fp_store;

struct fp_run_meta {
    const char *name;
    const char *algorithm;
    const char *compressor; /* uplink compressor, e.g. "topk" or "qsgd:16"; may be NULL */
    const char *dataset;
    const char *scenario; /* canonical INI text of the effective configuration */
    uint64_t seed;
    uint32_t rounds;  /* planned */
    uint32_t clients; /* N */
    uint32_t sample;  /* S */
    uint64_t d;       /* parameter count */
    uint32_t threads;
    /* The files the run reads with their SHA-256, one "<hex>  <absolute
     * path>" line each (core/inputs.h); "" if it reads none. NULL stores
     * NULL, which --resume takes for a run stored before schema version 3
     * (inputs not recorded, so not checked). */
    const char *inputs;
    /* The BLAS library and kernel the run uses (e.g. "OpenBLAS 0.3.21
     * Haswell"); may be NULL. */
    const char *blas;
};

enum fp_client_status {
    FP_CLIENT_INCLUDED = 0, /* its upload is in the round's aggregate */
    FP_CLIENT_LATE,         /* connected, but its upload did not arrive before the round closed */
    FP_CLIENT_ABSENT,       /* not connected when sampled, or left before its upload */
    FP_CLIENT_REFUSED,      /* it sent an upload the core or the channel refused */
};
/* "included", "late", "absent", "refused": the store's text */
const char *fp_client_status_name(enum fp_client_status st);

struct fp_client_round {
    uint32_t client;
    double train_loss;     /* mean minibatch loss over the client's local steps */
    uint64_t uplink_bytes; /* encoded size of what it sent */
    uint64_t downlink_bytes;
    uint32_t examples; /* examples the client holds */
    /* SHA-256 (lowercase hex) of the payload of its upload, the 32-byte
     * message header aside; "" if not known (stored as NULL) */
    char upload_sha256[65];
    /* Schema 5: what became of the sampled client (FP_CLIENT_INCLUDED for
     * every row of a simulator run without [participation] dropout or
     * straggler) and, if not included, why. A row that
     * is not included has no train_loss (NaN), no sha256, zero bytes. */
    enum fp_client_status status;
    char reason[160];
};

struct fp_round {
    uint32_t round;        /* 1-based */
    double train_loss;     /* mean over participants */
    double test_loss;      /* NaN when not evaluated this round -> NULL */
    double test_accuracy;  /* NaN -> NULL */
    uint64_t uplink_bytes; /* sum over participants */
    uint64_t downlink_bytes;
    uint32_t participants;
    double wall_ms;                        /* wall-clock time of the round (not deterministic) */
    const struct fp_client_round *clients; /* [participants], ascending client id */
    /* the sampled clients not included (a coordinator's partial round), in
     * ascending client id; stored with their status and reason */
    const struct fp_client_round *others; /* [n_others] */
    uint32_t n_others;
};

enum fp_run_status { FP_RUN_RUNNING = 0, FP_RUN_COMPLETED, FP_RUN_INTERRUPTED, FP_RUN_FAILED };

/* Opens the store at path to write, creating it if there is no file. It
 * first reads what the file is and refuses, unchanged, anything that is not
 * a regular file, not an SQLite database, another program's database (tables
 * but no fedpress schema version) or a newer schema; only then does it switch
 * the file to WAL and create or upgrade the schema. */
int fp_store_open(struct fp_store **out, const char *path, struct fp_error *err);
/* Opens an existing store to read (SQLITE_OPEN_READONLY): it creates,
 * converts and upgrades nothing, so it works on read-only media and on an
 * older schema (what that schema lacks fails with a message saying a writer
 * must open it once). The write functions refuse such a handle. */
int fp_store_open_readonly(struct fp_store **out, const char *path, struct fp_error *err);
/* Closes the handle and releases the run locks it holds. */
void fp_store_close(struct fp_store *s);
/* The path the store was opened with (borrowed, valid until close). */
const char *fp_store_path(const struct fp_store *s);

/*
 * Run locks: a run is written by one handle at a time. A writer holds the
 * lock of every run it writes: fp_store_begin_run takes it for the new run
 * before the run becomes visible, and every other write on a run takes it
 * if this handle does not hold it yet and fails if another handle or
 * process does. The lock is on the store file itself, not its path (a
 * symlink or hard link takes the same lock), and the kernel drops it when
 * the process dies, even by kill -9.
 *
 * fp_store_lock_run: 0 when this handle holds run_id's lock (now or
 * already), FP_STORE_HELD (positive) when another handle or process holds
 * it (err says which pid, when it can be found), or a negative error.
 */
#define FP_STORE_HELD 1
int fp_store_lock_run(struct fp_store *s, int64_t run_id, struct fp_error *err);
/* Releases run_id's lock if this handle holds it. */
void fp_store_unlock_run(struct fp_store *s, int64_t run_id);

/* FP_ESTORE, with the path and what happened, if the path the store was
 * opened with no longer names the file it opened (deleted, moved, replaced).
 * Every commit checks this first. 0 for a read-only handle. */
int fp_store_check_identity(struct fp_store *s, struct fp_error *err);

/* FP_EINVAL if writing a file at `out` could destroy the store at
 * store_path: out is the store, its -wal, -shm or -journal file (by file
 * identity where they exist, through any symlink or hard link, and by
 * directory entry where they do not exist yet); or out is any other SQLite
 * database (another run store, perhaps in use by another process). Call it
 * for every output path before writing anything. */
int fp_store_check_output(const char *store_path, const char *out, struct fp_error *err);

/* Inserts a runs row with status 'running', locked by this handle (see Run
 * locks); *run_id receives its id. */
int fp_store_begin_run(struct fp_store *s, const struct fp_run_meta *meta, int64_t *run_id,
                       struct fp_error *err);
/* One transaction: the rounds row and its client_rounds rows. Only a
 * 'running' run takes rounds (FP_ESTORE otherwise). */
int fp_store_commit_round(struct fp_store *s, int64_t run_id, const struct fp_round *r,
                          struct fp_error *err);
/* The same, and in the same transaction the run's resumable state (an
 * opaque blob from fp_algo_state_save) as the newest 'state' checkpoint,
 * replacing older ones. state may be NULL (then it is fp_store_commit_round). */
int fp_store_commit_round_state(struct fp_store *s, int64_t run_id, const struct fp_round *r,
                                const void *state, size_t state_len, struct fp_error *err);

/* The state checkpoint alone, in its own transaction (a run stopping
 * between rounds). */
int fp_store_put_state(struct fp_store *s, int64_t run_id, uint32_t round, const void *state,
                       size_t state_len, struct fp_error *err);

/* Caps the size of any one value the store writes (SQLite's
 * SQLITE_LIMIT_LENGTH, 1e9 bytes by default; it can only be lowered). A
 * state checkpoint is written in parts of 256 MiB, so this refuses one only
 * when the cap is below a part. For tests. */
void fp_store_set_value_limit(struct fp_store *s, size_t bytes);
/* The size of the parts a state checkpoint is cut into (default and
 * largest 256 MiB). For tests. */
void fp_store_set_part_bytes(struct fp_store *s, size_t bytes);
/* SQLite's wait for a lock per attempt (default 5000 ms) and how long a write
 * transaction keeps trying while another process holds the write lock
 * (default 5 minutes, with a warning line on stderr). For tests. */
void fp_store_set_busy(struct fp_store *s, unsigned busy_ms, unsigned wait_ms);

/* What `fedpress sim --resume` needs: the run's canonical scenario text, its
 * status, the files it read with their hashes (inputs; NULL for a run stored
 * before schema version 3, which recorded none), and its newest state
 * checkpoint (state NULL if it has none), read
 * in one transaction and checked against the checkpoint's SHA-256 (FP_ESTORE
 * if it does not match).
 * Owned by the struct; free with fp_store_resume_free. FP_ENOTFOUND if the
 * run does not exist. */
struct fp_resume {
    char *scenario, *status;
    char *inputs;   /* see fp_run_meta.inputs; NULL: not recorded */
    char *blas;     /* see fp_run_meta.blas; NULL: not recorded */
    uint32_t round; /* the round the state is after */
    void *state;
    size_t state_len;
};
int fp_store_load_resume(struct fp_store *s, int64_t run_id, struct fp_resume *out,
                         struct fp_error *err);
void fp_store_resume_free(struct fp_resume *r);
/* What `fedpress sim --replay` reads of a run besides its rounds: the
 * canonical scenario, status, inputs and blas as fp_resume, and the final
 * model's SHA-256 (NULL if none) and rounds_done. Owned by the struct; free
 * with fp_store_record_free. FP_ENOTFOUND if the run does not exist. */
struct fp_run_record {
    char *scenario, *status, *inputs, *blas, *model_sha256;
    uint32_t rounds_done;
};
int fp_store_load_record(struct fp_store *s, int64_t run_id, struct fp_run_record *out,
                         struct fp_error *err);
void fp_store_record_free(struct fp_run_record *r);

/* One transaction: forgets everything of the run after `round` (rounds,
 * client_rounds, checkpoints, the final model, the failed attempts of the
 * rounds it had committed after `round`), recomputes its totals from the
 * rounds that remain, and marks it 'running' again, with no error, now run
 * by `threads` worker threads. The failed attempts of rounds it never
 * committed stay. A completed run is refused (FP_ESTORE). */
int fp_store_rewind(struct fp_store *s, int64_t run_id, uint32_t round, uint32_t threads,
                    struct fp_error *err);

/* Sets status, finished_at, final metrics, and the SHA-256 (hex) of the final
 * model; stores the model (raw little-endian float32) as a checkpoint row.
 * model may be NULL (then no checkpoint and model_sha256 stays NULL). Only
 * a 'running' run is finished: a final status is never changed (FP_ESTORE). */
int fp_store_finish_run(struct fp_store *s, int64_t run_id, enum fp_run_status status,
                        const float *model, size_t d, uint32_t round_done, struct fp_error *err);

/* fp_store_finish_run(FP_RUN_FAILED, no model) that also stores why the
 * run failed (runs.error: the message the driver printed; NULL or "" stores
 * NULL), so that the store says it, not only stderr. */
int fp_store_fail_run(struct fp_store *s, int64_t run_id, uint32_t round_done, const char *error,
                      struct fp_error *err);

/* Schema 6: an attempt of a round that closed below [participation]
 * min_updates, so its uploads were not aggregated and the round was tried
 * again (or the run failed). clients[n]: every sampled client, ascending
 * id, with its status in that attempt and why: FP_CLIENT_INCLUDED is
 * stored as 'answered' (its upload came in time; nothing of a failed
 * attempt is included), the others as in client_rounds. */
struct fp_attempt {
    uint32_t round;
    uint32_t attempt; /* 1, 2, ... within the round (the driver's count) */
    uint32_t uploads; /* uploads that came in time */
    uint32_t min_updates;
    const struct fp_client_round *clients; /* [n]: client, status, reason */
    uint32_t n;
};
/* One transaction: the attempts row and its attempt_clients rows, with
 * the time it closed. Only a 'running' run takes them (FP_ESTORE
 * otherwise). */
int fp_store_put_attempt(struct fp_store *s, int64_t run_id, const struct fp_attempt *a,
                         struct fp_error *err);

/* Listing and reading back (for `fedpress runs` / `fedpress metrics`). */
struct fp_run_info {
    int64_t id;
    char *name, *algorithm, *compressor, *dataset, *status, *model_sha256, *started_at;
    uint32_t rounds_planned, rounds_done;
    uint32_t clients;      /* N: client ids are 0 .. N-1 (0 if not recorded) */
    double final_accuracy; /* NaN if none */
    double final_loss;     /* final test loss, NaN if none */
    uint64_t uplink_bytes; /* total */
};
/* Calls cb for every run in id order; stops early if cb returns nonzero: a
 * negative value is returned as the error, a positive one means "stop" and 0
 * is returned. dataset and model_sha256 may be NULL. A callback must not
 * re-enter the same listing function (FP_EINVAL). */
int fp_store_list_runs(struct fp_store *s, int (*cb)(void *u, const struct fp_run_info *r), void *u,
                       struct fp_error *err);
/* Calls cb for every round of run_id in order (clients == NULL, participants set);
 * FP_ENOTFOUND if the run does not exist. NULL metrics read back as NaN. */
int fp_store_list_rounds(struct fp_store *s, int64_t run_id,
                         int (*cb)(void *u, const struct fp_round *r), void *u,
                         struct fp_error *err);
/* Calls cb for every client_rounds row of run_id, by round then client;
 * client >= 0 keeps that client's rows only. Stops early as
 * fp_store_list_runs does; FP_ENOTFOUND if the run does not exist. */
int fp_store_list_client_rounds(struct fp_store *s, int64_t run_id, int64_t client,
                                int (*cb)(void *u, uint32_t round, const struct fp_client_round *c),
                                void *u, struct fp_error *err);
/* For each client id 0 .. n-1, the last round of run_id in which its
 * upload was included (client_rounds.status = 'included'; every row of a
 * store older than schema 5), or 0 if none: last[n]. A coordinator that
 * resumes a run tells each client this round, so that a client holding a
 * state it prepared for an upload the store has as included commits it,
 * and one whose upload is not there discards it (docs/daemons.md).
 * FP_ENOTFOUND if the run does not exist. */
int fp_store_last_included(struct fp_store *s, int64_t run_id, uint32_t n, uint32_t *last,
                           struct fp_error *err);
/* A run whose canonical scenario text is exactly `scenario`: the newest
 * completed one if there is one, else the newest of any status; *run_id = 0
 * if there is none. Its status ("completed", "running", ...) goes to status. */
int fp_store_find_run(struct fp_store *s, const char *scenario, int64_t *run_id, char *status,
                      size_t status_len, struct fp_error *err);
/* The newest run (highest id) whose canonical scenario text is exactly
 * `scenario`, whatever its status (the coordinator's --resume-or-start: a
 * run of the scenario started after a completed one and then killed is
 * the one to continue); *run_id = 0 if there is none. */
int fp_store_find_newest_run(struct fp_store *s, const char *scenario, int64_t *run_id,
                             char *status, size_t status_len, struct fp_error *err);
/*
 * Reading schema 6's failures back (`fedpress runs`, `fedpress metrics
 * --attempts`). A reader of an older store has none of them:
 * fp_store_has_attempts is 0 and the two functions below fail (FP_ESTORE,
 * saying a writer upgrades it).
 */
/* 1 if the store has runs.error and the failed attempts (schema 6), else 0. */
int fp_store_has_attempts(const struct fp_store *s);
/* Why run_id failed (runs.error) into *error, malloc'd (the caller frees
 * it), or NULL if the store holds no reason: the run has not failed, or
 * failed without a message. FP_ENOTFOUND if the run does not exist. */
int fp_store_run_error(struct fp_store *s, int64_t run_id, char **error, struct fp_error *err);
/* One failed attempt as fp_store_list_attempts reads it (see fp_attempt;
 * closed_at is borrowed from SQLite until the callback returns). */
struct fp_attempt_info {
    int64_t id; /* attempts.id: orders the attempts as they closed */
    uint32_t round, attempt, uploads, min_updates;
    char *closed_at; /* UTC, as runs.started_at */
};
/* Calls cb for every sampled client of every failed attempt of run_id,
 * attempt by attempt as they closed, then by client id; c holds the
 * client, its status (FP_CLIENT_INCLUDED: 'answered', see fp_attempt) and
 * reason, nothing else (train_loss NaN, no bytes, no sha256). Stops early
 * as fp_store_list_runs does; FP_ENOTFOUND if the run does not exist. */
int fp_store_list_attempts(struct fp_store *s, int64_t run_id,
                           int (*cb)(void *u, const struct fp_attempt_info *a,
                                     const struct fp_client_round *c),
                           void *u, struct fp_error *err);
/* "answered" for FP_CLIENT_INCLUDED, else fp_client_status_name: the
 * text of attempt_clients.status. */
const char *fp_attempt_status_name(enum fp_client_status st);
/* FP_ENOTFOUND if the run does not exist. */
int fp_store_run_exists(struct fp_store *s, int64_t run_id, struct fp_error *err);

const char *fp_run_status_name(enum fp_run_status st);

#endif
