/*
 * store/store.c — the SQLite run store (see store.h and docs/store.md).
 *
 * Every statement with values is prepared once in fp_store_open() (with
 * SQLITE_PREPARE_PERSISTENT, since they live as long as the handle) and
 * reset + cleared after each use; no SQL text is ever built from values.
 * Writes that touch more than one row run inside BEGIN IMMEDIATE ... COMMIT
 * and roll back on any error, so a crash leaves a whole round or none of it.
 *
 * A handle is used by one thread at a time: the prepared statements are
 * shared state.
 *
 * Inspect before modifying: fp_store_open() reads the file's schema version
 * and tables before it switches the file to WAL or creates anything, and a
 * reader (fp_store_open_readonly) never writes at all. A writer keeps the
 * store file's identity (st_dev, st_ino) and checks before every commit that
 * its path still names that file, and locks runs with open-file-description
 * locks on the database file itself (storefile.c).
 */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/hash.h"
#include "storefile.h"

/* The model blob and its hash are defined as raw little-endian IEEE-754
 * float32. Hashing the in-memory bytes is only that on a little-endian host
 * with 4-byte IEEE floats; refuse to build anywhere else rather than write
 * hashes that silently disagree between machines. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "store: model blobs are little-endian float32; big-endian hosts need a byte swap");
_Static_assert(sizeof(float) == 4 && FLT_MANT_DIG == 24 && FLT_RADIX == 2,
               "store: model blobs are IEEE-754 binary32");

#define FP_STORE_SCHEMA_VERSION 6
/* A state checkpoint is stored in parts of at most this many bytes, so that
 * no value comes near SQLite's 1e9-byte limit. */
#define FP__PART_BYTES ((size_t)1 << 28)
/* SQLite's own wait for a lock, per attempt; a write transaction that still
 * finds the store busy is tried again until FP_STORE_BUSY_WAIT_MS have
 * passed (a large state checkpoint of another run takes seconds to write). */
#define FP_STORE_BUSY_MS      5000
#define FP_STORE_BUSY_WAIT_MS (5 * 60 * 1000)

enum fp__stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_INSERT_RUN,
    ST_UPDATE_RUN_ROUND,
    ST_INSERT_ROUND,
    ST_INSERT_CLIENT,
    ST_FINISH_RUN,
    ST_INSERT_CHECKPOINT,
    ST_PUT_STATE,
    ST_DROP_OLD_STATE,
    ST_DROP_PARTS,
    ST_PUT_PART,
    ST_GET_PARTS,
    ST_GET_RESUME,
    ST_LIST_RUNS,
    ST_LIST_ROUNDS,
    ST_RUN_EXISTS,
    ST_LIST_CLIENTS,
    ST_FIND_RUN,
    ST_FIND_NEWEST_RUN,
    ST_GET_RECORD,
    ST_LAST_INCLUDED,
    ST_INSERT_ATTEMPT,
    ST_INSERT_ATTEMPT_CLIENT,
    ST_RUN_ERROR,
    ST_LIST_ATTEMPTS,
    ST__COUNT
};

/* Numbered parameters (?N) so each value is bound once even when the SQL
 * uses it twice. */
static const char *const fp__stmt_sql[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_INSERT_RUN] =
        "INSERT INTO runs(name, algorithm, dataset, scenario, seed, rounds_planned, clients,"
        " sample, d, threads, compressor, inputs, blas, status, started_at)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'running',"
        " strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
    /* Only a running run takes rounds: a completed one is never changed. */
    [ST_UPDATE_RUN_ROUND] =
        "UPDATE runs SET rounds_done = max(rounds_done, ?2),"
        " uplink_bytes = uplink_bytes + ?3, downlink_bytes = downlink_bytes + ?4,"
        /* a round was evaluated if it has either value: the quadratic reports a
         * loss and no accuracy */
        " final_test_accuracy = CASE WHEN ?5 IS NULL AND ?6 IS NULL THEN final_test_accuracy"
        "  ELSE ?5 END,"
        " final_test_loss = CASE WHEN ?5 IS NULL AND ?6 IS NULL THEN final_test_loss ELSE ?6 END"
        " WHERE id = ?1 AND status = 'running'",
    [ST_INSERT_ROUND] =
        "INSERT INTO rounds(run_id, round, train_loss, test_loss, test_accuracy, uplink_bytes,"
        " downlink_bytes, participants, wall_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_INSERT_CLIENT] =
        "INSERT INTO client_rounds(run_id, round, client, train_loss, uplink_bytes,"
        " downlink_bytes, examples, upload_sha256, status, reason)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [ST_FINISH_RUN] =
        "UPDATE runs SET status = ?2, finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),"
        " model_sha256 = ?3, error = ?4 WHERE id = ?1 AND status = 'running'",
    /* REPLACE: finishing again (e.g. a resumed run) overwrites that round's model. */
    [ST_INSERT_CHECKPOINT] = "INSERT OR REPLACE INTO checkpoints(run_id, round, kind, data, sha256)"
                             " VALUES(?1, ?2, 'model', ?3, ?4)",
    /* Only the newest state of a run is kept: it can be hundreds of MB. */
    [ST_PUT_STATE] = "INSERT OR REPLACE INTO checkpoints(run_id, round, kind, data, sha256)"
                     " VALUES(?1, ?2, 'state', ?3, ?4)",
    [ST_DROP_OLD_STATE] =
        "DELETE FROM checkpoints WHERE run_id = ?1 AND kind = 'state' AND round < ?2",
    /* Parts go with their checkpoint row (ON DELETE CASCADE); this clears
     * them before a state is written again at the same round. */
    [ST_DROP_PARTS] =
        "DELETE FROM checkpoint_parts WHERE run_id = ?1 AND round = ?2 AND kind = 'state'",
    [ST_PUT_PART] = "INSERT INTO checkpoint_parts(run_id, round, kind, part, data)"
                    " VALUES(?1, ?2, 'state', ?3, ?4)",
    [ST_GET_PARTS] = "SELECT data FROM checkpoint_parts"
                     " WHERE run_id = ?1 AND round = ?2 AND kind = 'state' ORDER BY part",
    [ST_GET_RESUME] = "SELECT r.scenario, r.status, c.round, c.data, c.sha256, r.inputs, r.blas"
                      " FROM runs r"
                      " LEFT JOIN checkpoints c ON c.run_id = r.id AND c.kind = 'state'"
                      " WHERE r.id = ?1 ORDER BY c.round DESC LIMIT 1",
    [ST_LIST_RUNS] = "SELECT id, name, algorithm, dataset, status, model_sha256, started_at,"
                     " rounds_planned, rounds_done, final_test_accuracy, uplink_bytes, compressor,"
                     " final_test_loss, clients"
                     " FROM runs ORDER BY id",
    [ST_LIST_ROUNDS] =
        "SELECT round, train_loss, test_loss, test_accuracy, uplink_bytes, downlink_bytes,"
        " participants, wall_ms FROM rounds WHERE run_id = ?1 ORDER BY round",
    [ST_RUN_EXISTS] = "SELECT status FROM runs WHERE id = ?1",
    /* a completed run first, else the newest */
    [ST_FIND_RUN] = "SELECT id, status FROM runs WHERE scenario = ?1"
                    " ORDER BY status = 'completed' DESC, id DESC LIMIT 1",
    [ST_FIND_NEWEST_RUN] =
        "SELECT id, status FROM runs WHERE scenario = ?1 ORDER BY id DESC LIMIT 1",
    [ST_GET_RECORD] = "SELECT scenario, status, inputs, blas, model_sha256, rounds_done"
                      " FROM runs WHERE id = ?1",
    /* ?2 < 0: every client; else one client's rows */
    [ST_LIST_CLIENTS] =
        "SELECT round, client, train_loss, uplink_bytes, downlink_bytes, examples, upload_sha256,"
        " status, reason"
        " FROM client_rounds WHERE run_id = ?1 AND (?2 < 0 OR client = ?2) ORDER BY round, client",
    [ST_LAST_INCLUDED] = "SELECT client, MAX(round) FROM client_rounds"
                         " WHERE run_id = ?1 AND status = 'included' GROUP BY client",
    [ST_INSERT_ATTEMPT] =
        "INSERT INTO attempts(run_id, round, attempt, closed_at, uploads, min_updates)"
        " VALUES(?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?4, ?5)",
    [ST_INSERT_ATTEMPT_CLIENT] = "INSERT INTO attempt_clients(attempt_id, client, status, reason)"
                                 " VALUES(?1, ?2, ?3, ?4)",
    [ST_RUN_ERROR] = "SELECT error FROM runs WHERE id = ?1",
    /* round and client first: fp__damaged_row names a bad row by them */
    [ST_LIST_ATTEMPTS] =
        "SELECT a.round, c.client, a.attempt, a.uploads, a.min_updates, a.closed_at, a.id,"
        " c.status, c.reason FROM attempts AS a JOIN attempt_clients AS c ON c.attempt_id = a.id"
        " WHERE a.run_id = ?1 ORDER BY a.id, c.client",
};

/* Before schema 5 every client_rounds row was an included upload. */
#define FP__LAST_INCLUDED_V4                                                                       \
    "SELECT client, MAX(round) FROM client_rounds WHERE run_id = ?1 GROUP BY client"

/* What a reader of a version 4 store prepares instead: every row of that
 * schema was an included upload. */
static const char *const fp__stmt_sql_v4[ST__COUNT] = {
    [ST_LAST_INCLUDED] = FP__LAST_INCLUDED_V4,
    [ST_LIST_CLIENTS] =
        "SELECT round, client, train_loss, uplink_bytes, downlink_bytes, examples, upload_sha256,"
        " 'included', NULL"
        " FROM client_rounds WHERE run_id = ?1 AND (?2 < 0 OR client = ?2) ORDER BY round, client",
};

/* What a reader of a store older than version 4 prepares instead: the same
 * rows, without the hashes that schema did not have. */
static const char *const fp__stmt_sql_v3[ST__COUNT] = {
    [ST_LAST_INCLUDED] = FP__LAST_INCLUDED_V4,
    [ST_LIST_CLIENTS] =
        "SELECT round, client, train_loss, uplink_bytes, downlink_bytes, examples, NULL,"
        " 'included', NULL"
        " FROM client_rounds WHERE run_id = ?1 AND (?2 < 0 OR client = ?2) ORDER BY round, client",
};

/* Schema version 2 added checkpoint_parts: a state checkpoint's bytes after
 * its first part (version 1 stored the whole state in one value, which
 * SQLite caps at 1e9 bytes). Version 1 files are upgraded in place. */
#define FP__PARTS_SQL                                                                              \
    "CREATE TABLE checkpoint_parts("                                                               \
    " run_id INTEGER NOT NULL,"                                                                    \
    " round INTEGER NOT NULL,"                                                                     \
    " kind TEXT NOT NULL,"                                                                         \
    " part INTEGER NOT NULL CHECK(part >= 1),"                                                     \
    " data BLOB NOT NULL,"                                                                         \
    " PRIMARY KEY(run_id, round, kind, part),"                                                     \
    " FOREIGN KEY(run_id, round, kind) REFERENCES checkpoints(run_id, round, kind)"                \
    "  ON DELETE CASCADE);"

/* Schema version 3 added two columns to runs: inputs, the SHA-256 of every
 * file the run reads (core/inputs.h), which --resume checks; and blas, the
 * BLAS library and kernel the run used. Version 1 and 2 files get them,
 * NULL for their runs, in place: ALTER TABLE ADD COLUMN, in the same
 * IMMEDIATE transaction that sets user_version. */
#define FP__V3_SQL                                                                                 \
    "ALTER TABLE runs ADD COLUMN inputs TEXT;"                                                     \
    "ALTER TABLE runs ADD COLUMN blas TEXT;"

/* Schema version 4 added client_rounds.upload_sha256, the SHA-256 of each
 * upload's payload, so that two runs can be compared upload by upload.
 * Older files get it, NULL for their rows, in place, in the same IMMEDIATE
 * transaction that sets user_version (with the version 2 and 3 steps for
 * older files). */
#define FP__V4_SQL                                                                                 \
    "ALTER TABLE client_rounds ADD COLUMN upload_sha256 TEXT"                                      \
    " CHECK(upload_sha256 IS NULL OR length(upload_sha256) = 64);"

/* Schema version 5 added client_rounds.status and reason: a coordinator's
 * round stores a row for every sampled client, included or not (late,
 * absent, refused, and why). Older rows were all included uploads, which
 * the default says; upgraded in place like the earlier steps. */
#define FP__V5_SQL                                                                                 \
    "ALTER TABLE client_rounds ADD COLUMN status TEXT NOT NULL DEFAULT 'included'"                 \
    " CHECK(status IN ('included', 'late', 'absent', 'refused'));"                                 \
    "ALTER TABLE client_rounds ADD COLUMN reason TEXT;"

/* Schema version 6 added the attempts of a round that closed below
 * [participation] min_updates (attempts, one row per failed attempt, and
 * attempt_clients, every sampled client's status in it), each stored in its
 * own transaction when it closes, so that a live run's failing rounds are
 * in the store and not only on stderr; and runs.error, why a failed run
 * failed. client_rounds keeps the committed attempt's rows only. An
 * attempt's id orders attempts as they closed: a round tried again after a
 * restart counts its attempts from 1 again. */
#define FP__ATTEMPTS_SQL                                                                           \
    "CREATE TABLE attempts("                                                                       \
    " id INTEGER PRIMARY KEY,"                                                                     \
    " run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"                              \
    " round INTEGER NOT NULL CHECK(round >= 1),"                                                   \
    " attempt INTEGER NOT NULL CHECK(attempt >= 1),"                                               \
    " closed_at TEXT NOT NULL,"                                                                    \
    " uploads INTEGER NOT NULL,"                                                                   \
    " min_updates INTEGER NOT NULL);"                                                              \
    "CREATE INDEX attempts_by_round ON attempts(run_id, round);"                                   \
    "CREATE TABLE attempt_clients("                                                                \
    " attempt_id INTEGER NOT NULL REFERENCES attempts(id) ON DELETE CASCADE,"                      \
    " client INTEGER NOT NULL,"                                                                    \
    " status TEXT NOT NULL CHECK(status IN ('answered', 'late', 'absent', 'refused')),"            \
    " reason TEXT,"                                                                                \
    " PRIMARY KEY(attempt_id, client));"
#define FP__V6_SQL "ALTER TABLE runs ADD COLUMN error TEXT;" FP__ATTEMPTS_SQL

/* The steps from version v to v + 1, for v = 1 .. 5: an older file is
 * upgraded by running them in order from its version, in the same
 * IMMEDIATE transaction that sets user_version. */
static const char *const fp__upgrade_sql[FP_STORE_SCHEMA_VERSION - 1] = {
    FP__PARTS_SQL, FP__V3_SQL, FP__V4_SQL, FP__V5_SQL, FP__V6_SQL};
#define FP__SET_VERSION "PRAGMA user_version = 6;"

/* Schema version 6. Executed only on a file whose user_version is 0, inside
 * the same IMMEDIATE transaction that sets user_version, so two processes
 * opening a fresh file cannot both create it. Every column is documented in
 * docs/store.md; keep the two in step. */
static const char fp__schema_sql[] =
    "CREATE TABLE runs("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " algorithm TEXT NOT NULL,"
    " compressor TEXT,"
    " dataset TEXT,"
    " scenario TEXT NOT NULL,"
    " seed INTEGER NOT NULL,"
    " rounds_planned INTEGER NOT NULL,"
    " rounds_done INTEGER NOT NULL DEFAULT 0,"
    " clients INTEGER,"
    " sample INTEGER,"
    " d INTEGER,"
    " threads INTEGER,"
    " status TEXT NOT NULL DEFAULT 'running'"
    "  CHECK(status IN ('running','completed','interrupted','failed')),"
    " started_at TEXT NOT NULL,"
    " finished_at TEXT,"
    " final_test_accuracy REAL,"
    " final_test_loss REAL,"
    " uplink_bytes INTEGER NOT NULL DEFAULT 0,"
    " downlink_bytes INTEGER NOT NULL DEFAULT 0,"
    " model_sha256 TEXT CHECK(model_sha256 IS NULL OR length(model_sha256) = 64),"
    " inputs TEXT,"
    " blas TEXT,"
    " error TEXT);"
    "CREATE TABLE rounds("
    " run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    " round INTEGER NOT NULL CHECK(round >= 1),"
    " train_loss REAL,"
    " test_loss REAL,"
    " test_accuracy REAL,"
    " uplink_bytes INTEGER NOT NULL,"
    " downlink_bytes INTEGER NOT NULL,"
    " participants INTEGER NOT NULL,"
    " wall_ms REAL,"
    " PRIMARY KEY(run_id, round));"
    "CREATE TABLE client_rounds("
    " run_id INTEGER NOT NULL,"
    " round INTEGER NOT NULL,"
    " client INTEGER NOT NULL,"
    " train_loss REAL,"
    " uplink_bytes INTEGER NOT NULL,"
    " downlink_bytes INTEGER NOT NULL,"
    " examples INTEGER NOT NULL,"
    " upload_sha256 TEXT CHECK(upload_sha256 IS NULL OR length(upload_sha256) = 64),"
    " status TEXT NOT NULL DEFAULT 'included'"
    "  CHECK(status IN ('included', 'late', 'absent', 'refused')),"
    " reason TEXT,"
    " PRIMARY KEY(run_id, round, client),"
    " FOREIGN KEY(run_id, round) REFERENCES rounds(run_id, round) ON DELETE CASCADE);"
    "CREATE TABLE checkpoints("
    " run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    " round INTEGER NOT NULL,"
    " kind TEXT NOT NULL CHECK(kind IN ('model', 'state')),"
    " data BLOB NOT NULL,"
    " sha256 TEXT NOT NULL CHECK(length(sha256) = 64),"
    " PRIMARY KEY(run_id, round, kind));"
    /* Per-client questions across rounds ("how often was client 7 picked")
     * would otherwise scan the whole table. */
    "CREATE INDEX client_rounds_by_client ON client_rounds(run_id, client);" FP__PARTS_SQL
        FP__ATTEMPTS_SQL FP__SET_VERSION;

const char *fp_client_status_name(enum fp_client_status st)
{
    switch (st) {
    case FP_CLIENT_INCLUDED: return "included";
    case FP_CLIENT_LATE: return "late";
    case FP_CLIENT_ABSENT: return "absent";
    case FP_CLIENT_REFUSED: return "refused";
    }
    return "included";
}

struct fp_store {
    sqlite3 *db;
    char *path;
    bool readonly;
    int64_t version;           /* the file's schema version (a reader may see an older one) */
    struct fp_storefile *file; /* writers: the store file (identity, run locks) */
    unsigned busy_ms, busy_wait_ms;
    size_t part_bytes;           /* FP__PART_BYTES, or smaller for tests */
    sqlite3_stmt *st[ST__COUNT]; /* NULL in a reader where an older schema lacks a table */
    /* Set while a listing callback runs: re-entering the same listing would
     * reset the statement under the outer loop. */
    bool listing_runs, listing_rounds, listing_clients, listing_attempts;
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */

/* Makes the statement reusable. sqlite3_reset() repeats the error of the last
 * step, which the caller has already reported, so its result is not news. */
static void fp__done(sqlite3_stmt *st)
{
    (void)sqlite3_reset(st);
    (void)sqlite3_clear_bindings(st);
}

/* Records SQLite's current message for s->db. Call right after the failing
 * call: a later ROLLBACK or reset would replace the message. */
static int fp__sqlerr(struct fp_store *s, struct fp_error *err, const char *what)
{
    return fp_error_set(err, FP_ESTORE, "Run store %s: %s failed: %s (SQLite code %d).", s->path,
                        what, sqlite3_errmsg(s->db), sqlite3_extended_errcode(s->db));
}

/* NaN means "not measured" in the simulator and NULL in SQL; SQLite would
 * otherwise store NaN as NULL anyway but only by accident of its REAL type. */
static int fp__bind_real(sqlite3_stmt *st, int i, double v)
{
    return isnan(v) ? sqlite3_bind_null(st, i) : sqlite3_bind_double(st, i, v);
}

static double fp__column_real(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

/* Byte counts are uint64 in C but SQLite integers are signed 64-bit; past
 * INT64_MAX the running totals would silently turn into REALs. */
static bool fp__fits_i64(uint64_t v)
{
    return v <= (uint64_t)INT64_MAX;
}

/* ------------------------------------------------------------------------ */
/* The store file: run locks and identity (storefile.c)                     */

int fp_store_lock_run(struct fp_store *s, int64_t run_id, struct fp_error *err)
{
    assert(s);
    if (!s->file)
        return fp_error_set(err, FP_EINVAL, "Run store %s is open read-only: no run locks.",
                            s->path);
    return fp_storefile_lock(s->file, s, s->path, run_id, err);
}

void fp_store_unlock_run(struct fp_store *s, int64_t run_id)
{
    if (s && s->file)
        fp_storefile_unlock(s->file, s, run_id);
}

int fp_store_check_identity(struct fp_store *s, struct fp_error *err)
{
    return s->file ? fp_storefile_check(s->file, s->path, err) : 0;
}

/* After a move: SQLite names the -wal file after the path it opened, so the
 * newest committed transactions stayed behind in PATH-wal, not with the
 * moved file. Copy them into the file itself (a checkpoint writes through
 * the open descriptor, wherever the file now is) and say what happened.
 * The same after the -wal or -shm file was deleted or replaced: the log
 * this process has open is copied into the store. Outside any
 * transaction. */
static void fp__save_moved(struct fp_store *s, struct fp_error *err)
{
    int log = -1, done = -1;
    if (!s->file || !fp_storefile_linked(s->file))
        return; /* deleted: there is nowhere to save to */
    int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &done);
    size_t n = strlen(err->msg);
    if (fp_storefile_at(s->file, s->path)) {
        /* Not moved: its -wal or -shm file went. SQLite would not copy the
         * log at close if the directory was renamed too; copied here. */
        if (rc == SQLITE_OK && log == done)
            snprintf(err->msg + n, sizeof err->msg - n,
                     " Every round committed before was copied into %s; continue with "
                     "fedpress sim --resume.",
                     s->path);
        else
            snprintf(err->msg + n, sizeof err->msg - n,
                     " Its newest committed rounds could not be copied into %s (%s) and may "
                     "be lost.",
                     s->path,
                     rc == SQLITE_OK ? "another process is reading it" : sqlite3_errmsg(s->db));
        return;
    }
    if (rc == SQLITE_OK && log == done)
        snprintf(err->msg + n, sizeof err->msg - n,
                 " Every round committed before is in the moved file (continue there with "
                 "fedpress sim --resume RUN --store NEWPATH).");
    else
        snprintf(err->msg + n, sizeof err->msg - n,
                 " Its newest committed rounds could not be copied into the moved file (%s): "
                 "they are in %s-wal; with no process using either, move that file next to the "
                 "store as NEWPATH-wal before you open NEWPATH.",
                 rc == SQLITE_OK ? "another process is reading it" : sqlite3_errmsg(s->db),
                 s->path);
}

/* Writers hold the lock of every run they write: taken here at the first
 * write if this handle does not hold it yet, refused if another does. */
static int fp__hold(struct fp_store *s, int64_t run_id, struct fp_error *err)
{
    int rc = fp_store_lock_run(s, run_id, err);
    return rc == FP_STORE_HELD ? FP_ESTORE : rc;
}

/* Runs a statement that returns no rows. */
static int fp__exec_stmt(struct fp_store *s, enum fp__stmt_id id, struct fp_error *err,
                         const char *what)
{
    int rc = sqlite3_step(s->st[id]);
    if (rc != SQLITE_DONE) {
        fp__sqlerr(s, err, what);
        fp__done(s->st[id]);
        return FP_ESTORE;
    }
    fp__done(s->st[id]);
    return 0;
}

static double fp__now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* BEGIN IMMEDIATE (the write lock). SQLite waits busy_ms for another writer;
 * if the store is still busy, this tries again, with a warning, until
 * busy_wait_ms have passed: another run's large checkpoint can hold the
 * lock for seconds, and a run must not fail for that. Nothing of the
 * transaction has happened yet, so trying again is safe. */
static int fp__begin(struct fp_store *s, struct fp_error *err)
{
    if (!s->file)
        return fp_error_set(err, FP_EINVAL, "Run store %s is open read-only.", s->path);
    const double t0 = fp__now_s();
    bool warned = false;
    for (unsigned attempt = 1;; attempt++) {
        int rc = sqlite3_step(s->st[ST_BEGIN]);
        int ec = sqlite3_extended_errcode(s->db);
        if (rc == SQLITE_DONE) {
            fp__done(s->st[ST_BEGIN]);
            if (warned)
                fprintf(stderr, "fedpress: run store %s is free again after %.0f s\n", s->path,
                        fp__now_s() - t0);
            return 0;
        }
        double waited = fp__now_s() - t0;
        if ((ec & 0xff) != SQLITE_BUSY || waited * 1e3 >= s->busy_wait_ms) {
            if ((ec & 0xff) == SQLITE_BUSY)
                fp_error_set(err, FP_ESTORE,
                             "Run store %s stayed busy for %.0f s: another process kept its "
                             "write lock all that time (SQLite: %s). Try again when it is done.",
                             s->path, waited, sqlite3_errmsg(s->db));
            else
                fp__sqlerr(s, err, "BEGIN IMMEDIATE");
            fp__done(s->st[ST_BEGIN]);
            return FP_ESTORE;
        }
        fp__done(s->st[ST_BEGIN]);
        if (!warned)
            fprintf(stderr,
                    "fedpress: warning: run store %s is busy (another process is writing to "
                    "it); waiting up to %u s\n",
                    s->path, s->busy_wait_ms / 1000);
        warned = true;
        /* SQLite's busy handler has just waited busy_ms; pause a little
         * longer each time so a short busy_ms does not spin. */
        unsigned ms = attempt < 10 ? 20 * attempt : 200;
        struct timespec pause = {0, (long)ms * 1000000L};
        nanosleep(&pause, NULL);
    }
}

/* Rolls back if a transaction is still open (SQLite already rolls back by
 * itself after some errors, e.g. SQLITE_FULL, and then ROLLBACK would fail).
 * The first error stays the one reported; a failed rollback is appended. */
static void fp__rollback(struct fp_store *s, struct fp_error *err)
{
    if (sqlite3_get_autocommit(s->db))
        return;
    int rc = sqlite3_step(s->st[ST_ROLLBACK]);
    if (rc != SQLITE_DONE && err) {
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n, " ROLLBACK also failed: %s.",
                 sqlite3_errmsg(s->db));
    }
    fp__done(s->st[ST_ROLLBACK]);
}

/* The store file must still be where it was opened: a run must not go on
 * writing into a deleted or moved file and then report success. */
static int fp__commit(struct fp_store *s, struct fp_error *err)
{
    int rc = fp_store_check_identity(s, err);
    if (rc) {
        fp__rollback(s, err);
        fp__save_moved(s, err);
        return rc;
    }
    return fp__exec_stmt(s, ST_COMMIT, err, "COMMIT");
}

/* Runs a pragma / one-row query on a fresh statement (only used during open,
 * before the persistent statements exist) and returns its first column as an
 * integer, or copies it as text into buf when buf is non-NULL. */
static int fp__pragma(struct fp_store *s, const char *sql, int64_t *ival, char *buf, size_t bufsz,
                      struct fp_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        fp__sqlerr(s, err, sql);
        goto fail;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (ival)
            *ival = sqlite3_column_int64(st, 0);
        if (buf) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            snprintf(buf, bufsz, "%s", t ? (const char *)t : "");
        }
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_DONE) {
        fp__sqlerr(s, err, sql);
        goto fail;
    }
    rc = sqlite3_finalize(st);
    if (rc != SQLITE_OK) /* cannot happen after SQLITE_DONE; checked anyway */
        return fp__sqlerr(s, err, sql);
    return 0;
fail:
    (void)sqlite3_finalize(st); /* repeats the error already reported */
    return FP_ESTORE;
}

/* A statement that returns no rows, during open. */
static int fp__exec_one(struct fp_store *s, const char *sql, struct fp_error *err)
{
    return fp__pragma(s, sql, NULL, NULL, 0, err);
}

/* ------------------------------------------------------------------------ */
/* Open / close                                                             */

/* Creates the schema if the file has none. Only takes the write lock when it
 * has to, so opening a store that a running simulation is writing to (e.g.
 * `fedpress runs`) does not wait for the writer. */
static int fp__ensure_schema(struct fp_store *s, struct fp_error *err)
{
    int64_t ver = 0, ntables = 0;
    int rc = fp__pragma(s, "PRAGMA user_version", &ver, NULL, 0, err);
    if (rc)
        return rc;
    if (ver > FP_STORE_SCHEMA_VERSION)
        return fp_error_set(err, FP_ESTORE,
                            "Run store %s has schema version %" PRId64
                            ", newer than the version %d this fedpress understands; "
                            "use a newer fedpress or another file.",
                            s->path, ver, FP_STORE_SCHEMA_VERSION);
    if (ver == FP_STORE_SCHEMA_VERSION)
        return 0;

    rc = fp__exec_one(s, "BEGIN IMMEDIATE", err);
    if (rc)
        return rc;
    /* Re-read under the lock: another process may have created it meanwhile. */
    rc = fp__pragma(s, "PRAGMA user_version", &ver, NULL, 0, err);
    if (rc)
        goto fail;
    if (ver == 0) {
        rc = fp__pragma(s, "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
                        &ntables, NULL, 0, err);
        if (rc)
            goto fail;
        if (ntables > 0) {
            rc = fp_error_set(err, FP_ESTORE,
                              "Run store %s is an SQLite database with other tables but no "
                              "fedpress schema version; refusing to add tables to it.",
                              s->path);
            goto fail;
        }
        char *msg = NULL;
        if (sqlite3_exec(s->db, fp__schema_sql, NULL, NULL, &msg) != SQLITE_OK) {
            rc = fp_error_set(err, FP_ESTORE, "Run store %s: creating the schema failed: %s.",
                              s->path, msg ? msg : sqlite3_errmsg(s->db));
            sqlite3_free(msg);
            goto fail;
        }
    } else if (ver >= 1 && ver < FP_STORE_SCHEMA_VERSION) {
        char *msg = NULL;
        int step = SQLITE_OK;
        for (int64_t v = ver; v <= FP_STORE_SCHEMA_VERSION && step == SQLITE_OK; v++)
            step = sqlite3_exec(
                s->db, v < FP_STORE_SCHEMA_VERSION ? fp__upgrade_sql[v - 1] : FP__SET_VERSION, NULL,
                NULL, &msg);
        if (step != SQLITE_OK) {
            rc = fp_error_set(err, FP_ESTORE,
                              "Run store %s: upgrading the schema from version %" PRId64
                              " failed: %s.",
                              s->path, ver, msg ? msg : sqlite3_errmsg(s->db));
            sqlite3_free(msg);
            goto fail;
        }
    } else if (ver != FP_STORE_SCHEMA_VERSION) {
        rc = fp_error_set(err, FP_ESTORE, "Run store %s has unknown schema version %" PRId64 ".",
                          s->path, ver);
        goto fail;
    }
    rc = fp__exec_one(s, "COMMIT", err);
    if (rc)
        goto fail;
    return 0;
fail:
    if (!sqlite3_get_autocommit(s->db))
        (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL); /* first error is the news */
    return rc;
}

void fp_store_close(struct fp_store *s)
{
    if (!s)
        return;
    for (int i = 0; i < ST__COUNT; i++)
        (void)sqlite3_finalize(s->st[i]); /* returns the statement's last error, not a new one */
    if (s->db) {
        int rc = sqlite3_close(s->db);
        /* Only SQLITE_BUSY (unfinalized statements) can fail here: a bug. */
        assert(rc == SQLITE_OK);
        (void)rc;
    }
    if (s->file) /* after SQLite's descriptor: see storefile.h */
        fp_storefile_put(s->file, s);
    free(s->path);
    free(s);
}

/* Refuses what is not a regular file before SQLite sees it: SQLite would take
 * /dev/null for an empty database and create /dev/null-journal beside it. */
static int fp__check_regular(const char *path, bool must_exist, struct fp_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT && !must_exist)
            return 0;
        return fp_error_set(err, errno == ENOENT ? FP_ENOTFOUND : FP_EIO,
                            "Cannot open run store %s: %s.", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode))
        return fp_error_set(err, FP_ESTORE,
                            "Run store %s is not a regular file (it is a %s); give --store the "
                            "path of a file.",
                            path,
                            S_ISDIR(st.st_mode)    ? "directory"
                            : S_ISCHR(st.st_mode)  ? "character device"
                            : S_ISBLK(st.st_mode)  ? "block device"
                            : S_ISFIFO(st.st_mode) ? "pipe"
                                                   : "socket or other special file");
    /* SQLite names the -wal file after the path it was given: through two
     * hard links, two processes would keep two logs of one database and
     * damage it (a symlink is fine: SQLite resolves it). */
    if (st.st_nlink > 1)
        return fp_error_set(err, FP_ESTORE,
                            "Run store %s has %ju hard links: SQLite would keep a separate "
                            "write-ahead log for each name and damage the store. Remove the "
                            "other links (find -samefile %s) and use one path; a symlink is "
                            "fine.",
                            path, (uintmax_t)st.st_nlink, path);
    return 0;
}

/* Opens the file for SQLite. A reader on read-only media cannot make the
 * -shm file a WAL-mode database needs; if there is also no -wal file (so
 * nothing is uncommitted to the main file), it reads the file as immutable. */
static int fp__sqlite_open(struct fp_store *s, bool immutable, struct fp_error *err)
{
    int flags = s->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    char uri[3 * PATH_MAX + 32], real[PATH_MAX];
    const char *name = s->path;
    if (immutable) {
        if (!realpath(s->path, real))
            return fp_error_set(err, FP_EIO, "Cannot open run store %s: %s.", s->path,
                                strerror(errno));
        size_t n = (size_t)snprintf(uri, sizeof uri, "file:");
        for (const char *c = real; *c && n + 4 < sizeof uri; c++)
            n += (size_t)(*c == '%' || *c == '?' || *c == '#'
                              ? snprintf(uri + n, sizeof uri - n, "%%%02X", (unsigned char)*c)
                              : snprintf(uri + n, sizeof uri - n, "%c", *c));
        snprintf(uri + n, sizeof uri - n, "?immutable=1");
        name = uri;
        flags |= SQLITE_OPEN_URI;
    }
    int rc = sqlite3_open_v2(name, &s->db, flags, NULL);
    if (rc != SQLITE_OK) {
        if (!s->db)
            return fp_error_set(err, FP_ENOMEM, "Out of memory opening run store %s.", s->path);
        return fp_error_set(err, FP_ESTORE, "Cannot open run store %s: %s.", s->path,
                            sqlite3_errmsg(s->db));
    }
    if (sqlite3_extended_result_codes(s->db, 1) != SQLITE_OK)
        return fp__sqlerr(s, err, "enabling extended result codes");
    if (sqlite3_busy_timeout(s->db, (int)s->busy_ms) != SQLITE_OK)
        return fp__sqlerr(s, err, "setting the busy timeout");
    return 0;
}

/* Reads the schema version and, for version 0, whether the file holds other
 * tables: before anything is changed, so that a file that is not a store
 * (or is newer than this fedpress) is refused exactly as it was found. */
static int fp__inspect(struct fp_store *s, struct fp_error *err)
{
    int64_t ntables = 0;
    /* The first read is where SQLite notices a file that is not a database
     * (open itself is lazy); say so in words rather than "file is not a
     * database" alone. */
    int rc = fp__pragma(s, "PRAGMA user_version", &s->version, NULL, 0, err);
    if (rc) {
        int ec = sqlite3_errcode(s->db);
        if (ec == SQLITE_NOTADB || ec == SQLITE_CORRUPT)
            rc = fp_error_set(err, FP_ESTORE,
                              "Run store %s is not an SQLite database (or is corrupt): %s.",
                              s->path, sqlite3_errmsg(s->db));
        return rc;
    }
    if (s->version > FP_STORE_SCHEMA_VERSION)
        return fp_error_set(err, FP_ESTORE,
                            "Run store %s has schema version %" PRId64
                            ", newer than the version %d this fedpress understands; "
                            "use a newer fedpress or another file.",
                            s->path, s->version, FP_STORE_SCHEMA_VERSION);
    if (s->version != 0) {
        /* user_version is any program's to set (many do): a file that says
         * 1 to 3 but lacks the store's tables is another program's, and a
         * writer must not switch it to WAL or "upgrade" it. */
        int64_t have = 0, want = s->version >= 6 ? 7 : s->version >= 2 ? 5 : 4;
        rc = fp__pragma(s,
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN"
                        " ('runs', 'rounds', 'client_rounds', 'checkpoints', 'checkpoint_parts',"
                        " 'attempts', 'attempt_clients')",
                        &have, NULL, 0, err);
        if (rc)
            return rc;
        if (have < want)
            return fp_error_set(err, FP_ESTORE,
                                "Run store %s is an SQLite database with user_version %" PRId64
                                " but without the tables of a fedpress run store (runs, rounds, "
                                "client_rounds, checkpoints%s): it is not a run store; refusing "
                                "to touch it.",
                                s->path, s->version,
                                want == 7   ? ", checkpoint_parts, attempts, attempt_clients"
                                : want == 5 ? ", checkpoint_parts"
                                            : "");
        return 0;
    }
    rc = fp__pragma(s, "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
                    &ntables, NULL, 0, err);
    if (rc)
        return rc;
    if (ntables > 0)
        return fp_error_set(err, FP_ESTORE,
                            "Run store %s is an SQLite database with other tables but no "
                            "fedpress schema version: it is not a run store; refusing to "
                            "touch it.",
                            s->path);
    if (s->readonly)
        return fp_error_set(err, FP_ESTORE,
                            "Run store %s is empty: it has no fedpress schema yet (fedpress sim "
                            "creates it).",
                            s->path);
    return 0;
}

/* The reader's first read; on read-only media, once more as immutable. */
static int fp__open_reader(struct fp_store *s, struct fp_error *err)
{
    int rc = fp__sqlite_open(s, false, err);
    if (!rc)
        rc = fp__inspect(s, err);
    if (!rc || !s->db || (sqlite3_errcode(s->db) & 0xff) != SQLITE_CANTOPEN)
        return rc;
    char wal[PATH_MAX + 8];
    struct stat st;
    snprintf(wal, sizeof wal, "%s-wal", s->path);
    if (stat(wal, &st) == 0 && st.st_size > 0)
        return fp_error_set(err, FP_ESTORE,
                            "Cannot read run store %s: it has a write-ahead log (%s) that only "
                            "a process able to write beside it can read; copy the store with "
                            "its -wal file somewhere writable.",
                            s->path, wal);
    (void)sqlite3_close(s->db);
    s->db = NULL;
    rc = fp__sqlite_open(s, true, err);
    return rc ? rc : fp__inspect(s, err);
}

/* The writer's settings and schema, once the file is known to be a store
 * (or empty). */
static int fp__prepare_writer(struct fp_store *s, struct fp_error *err)
{
    char mode[32];
    /* WAL: readers (sqlite3, `fedpress runs`) never block the simulation and
     * vice versa. journal_mode persists in the file; asking again is a no-op. */
    int rc = fp__pragma(s, "PRAGMA journal_mode=WAL", NULL, mode, sizeof mode, err);
    if (rc)
        return rc;
    /* An in-memory database reports "memory" and cannot do WAL; that is fine. */
    if (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0)
        return fp_error_set(err, FP_ESTORE,
                            "Run store %s could not switch to WAL journal mode (it is '%s'); "
                            "is it on a network file system?",
                            s->path, mode);
    /* In WAL mode NORMAL loses no committed transaction when the application
     * crashes, only possibly the last ones on power loss, and skips an fsync
     * per round. */
    rc = fp__exec_one(s, "PRAGMA synchronous=NORMAL", err);
    if (rc)
        return rc;
    /* Off by default in SQLite, per connection: needed for the REFERENCES
     * checks and ON DELETE CASCADE. */
    rc = fp__exec_one(s, "PRAGMA foreign_keys=ON", err);
    if (rc)
        return rc;
    rc = fp__ensure_schema(s, err);
    if (rc)
        return rc;
    s->version = FP_STORE_SCHEMA_VERSION;
    return 0;
}

/* A writer that could not open the store: if the file or its directory
 * cannot be written (read-only media, permissions), say that, and what can
 * still read it, instead of SQLite's "unable to open database file". Leaves
 * err as it was otherwise. */
static void fp__explain_unwritable(const char *path, struct fp_error *err)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    else
        snprintf(dir, sizeof dir, ".");
    const char *what = NULL;
    int e = 0;
    if (access(path, W_OK) != 0 && errno != ENOENT) {
        e = errno;
        what = "the file";
    } else if (access(dir, W_OK | X_OK) != 0) {
        e = errno;
        what = "its directory";
    }
    if (!what)
        return;
    fp_error_set(err, FP_ESTORE,
                 "Run store %s cannot be written (%s: %s): fedpress sim and sweep write the "
                 "store and create %s-wal and %s-shm beside it: give --store a path that "
                 "can be written (for a store that exists, a copy of it); fedpress runs, "
                 "metrics and plot read a store where it is.",
                 path, what, strerror(e), path, path);
}

static int fp__open(struct fp_store **out, const char *path, bool readonly, struct fp_error *err)
{
    struct fp_store *s = NULL;
    int rc;

    if (!out || !path)
        return fp_error_set(err, FP_EINVAL, "fp_store_open: out and path must not be NULL.");
    *out = NULL;
    /* sodium_init() is idempotent and thread-safe; 1 means "already done". */
    if (sodium_init() < 0)
        return fp_error_set(err, FP_ESTORE, "Run store %s: libsodium failed to initialise.", path);
    if ((rc = fp__check_regular(path, readonly, err)))
        return rc;

    s = calloc(1, sizeof *s);
    if (!s)
        return fp_error_set(err, FP_ENOMEM, "Out of memory opening run store %s.", path);
    s->part_bytes = FP__PART_BYTES;
    s->busy_ms = FP_STORE_BUSY_MS;
    s->busy_wait_ms = FP_STORE_BUSY_WAIT_MS;
    s->readonly = readonly;
    /* The path is a file name, always: SQLite (built with URI names on, as
     * Debian's is) would take "file:x.db?..." for a URI naming another file
     * than the one checked here, and ":memory:" for no file at all. */
    bool special = path[0] != '/' && (!strncmp(path, "file:", 5) || !strcmp(path, ":memory:"));
    if (special && (s->path = malloc(strlen(path) + 3)))
        sprintf(s->path, "./%s", path);
    else if (!special)
        s->path = strdup(path);
    if (!s->path) {
        rc = fp_error_set(err, FP_ENOMEM, "Out of memory opening run store %s.", path);
        goto fail;
    }

    if (readonly) {
        if ((rc = fp__open_reader(s, err)))
            goto fail;
        /* Belt and braces: this connection never writes. */
        if ((rc = fp__exec_one(s, "PRAGMA query_only=ON", err)))
            goto fail;
    } else {
        if ((rc = fp__sqlite_open(s, false, err)) || (rc = fp__inspect(s, err))) {
            int ec = s->db ? sqlite3_errcode(s->db) & 0xff : 0;
            if (ec == SQLITE_CANTOPEN || ec == SQLITE_READONLY || ec == SQLITE_PERM)
                fp__explain_unwritable(s->path, err);
            goto fail;
        }
        if ((rc = fp_storefile_get(s->path, &s->file, err))) {
            fp__explain_unwritable(s->path, err);
            goto fail;
        }
        if ((rc = fp__prepare_writer(s, err))) {
            if ((sqlite3_errcode(s->db) & 0xff) == SQLITE_READONLY)
                fp__explain_unwritable(s->path, err);
            goto fail;
        }
        const char *dbfile = sqlite3_db_filename(s->db, "main");
        if (dbfile && *dbfile && (rc = fp_storefile_watch(s->file, dbfile, err)))
            goto fail;
    }

    for (int i = 0; i < ST__COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, fp__stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
                               NULL) == SQLITE_OK)
            continue;
        /* A reader does not upgrade an older schema: what it lacks stays
         * unprepared, and using it says so (fp__need), unless an older form
         * of the statement reads what that schema has. */
        if (readonly && s->version < FP_STORE_SCHEMA_VERSION) {
            s->st[i] = NULL;
            const char *older = s->version < 4 ? fp__stmt_sql_v3[i] : fp__stmt_sql_v4[i];
            if (older)
                (void)sqlite3_prepare_v3(s->db, older, -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
                                         NULL);
            continue;
        }
        rc = fp_error_set(err, FP_ESTORE,
                          "Run store %s: preparing \"%s\" failed: %s (is the schema "
                          "damaged?).",
                          path, fp__stmt_sql[i], sqlite3_errmsg(s->db));
        goto fail;
    }
    *out = s;
    return 0;
fail:
    fp_store_close(s);
    return rc;
}

int fp_store_open(struct fp_store **out, const char *path, struct fp_error *err)
{
    return fp__open(out, path, false, err);
}

int fp_store_open_readonly(struct fp_store **out, const char *path, struct fp_error *err)
{
    return fp__open(out, path, true, err);
}

const char *fp_store_path(const struct fp_store *s)
{
    return s->path;
}

/* A statement a reader of an older schema may lack. */
static int fp__need(struct fp_store *s, enum fp__stmt_id id, struct fp_error *err)
{
    if (s->st[id])
        return 0;
    return fp_error_set(err, FP_ESTORE,
                        "Run store %s has schema version %" PRId64 ", older than this fedpress's "
                        "%d, and was opened read-only: this needs the newer schema. Open it "
                        "once with a writer (fedpress sim or sweep) to upgrade it.",
                        s->path, s->version, FP_STORE_SCHEMA_VERSION);
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */

/* Any failed bind jumps to the function's bind_fail label; SQLite's message
 * (SQLITE_TOOBIG, SQLITE_NOMEM, ...) then says why. */
#define FP__BIND(call)                                                                             \
    do {                                                                                           \
        if ((call) != SQLITE_OK)                                                                   \
            goto bind_fail;                                                                        \
    } while (0)

int fp_store_begin_run(struct fp_store *s, const struct fp_run_meta *meta, int64_t *run_id,
                       struct fp_error *err)
{
    assert(s);
    if (!meta || !run_id || !meta->name || !meta->algorithm || !meta->scenario)
        return fp_error_set(err, FP_EINVAL,
                            "fp_store_begin_run: meta, its name, algorithm and scenario, and "
                            "run_id must not be NULL.");
    if (!fp__fits_i64(meta->d))
        return fp_error_set(err, FP_EINVAL,
                            "Run store %s: parameter count d = %" PRIu64 " does not fit SQLite's "
                            "64-bit signed integers.",
                            s->path, meta->d);
    sqlite3_stmt *st = s->st[ST_INSERT_RUN];
    int64_t id;
    int rc = fp__begin(s, err);
    if (rc)
        return rc;
    FP__BIND(sqlite3_bind_text(st, 1, meta->name, -1, SQLITE_STATIC));
    FP__BIND(sqlite3_bind_text(st, 2, meta->algorithm, -1, SQLITE_STATIC));
    FP__BIND(meta->dataset ? sqlite3_bind_text(st, 3, meta->dataset, -1, SQLITE_STATIC)
                           : sqlite3_bind_null(st, 3));
    FP__BIND(sqlite3_bind_text(st, 4, meta->scenario, -1, SQLITE_STATIC));
    /* The seed is a full uint64; SQLite has only signed 64-bit integers, so
     * the column holds the same 64 bits read as int64 (seeds >= 2^63 appear
     * negative in SQL; docs/store.md shows how to print them unsigned). */
    FP__BIND(sqlite3_bind_int64(st, 5, (sqlite3_int64)meta->seed));
    FP__BIND(sqlite3_bind_int64(st, 6, meta->rounds));
    FP__BIND(sqlite3_bind_int64(st, 7, meta->clients));
    FP__BIND(sqlite3_bind_int64(st, 8, meta->sample));
    FP__BIND(sqlite3_bind_int64(st, 9, (sqlite3_int64)meta->d));
    FP__BIND(sqlite3_bind_int64(st, 10, meta->threads));
    FP__BIND(meta->compressor ? sqlite3_bind_text(st, 11, meta->compressor, -1, SQLITE_STATIC)
                              : sqlite3_bind_null(st, 11));
    FP__BIND(meta->inputs ? sqlite3_bind_text(st, 12, meta->inputs, -1, SQLITE_STATIC)
                          : sqlite3_bind_null(st, 12));
    FP__BIND(meta->blas ? sqlite3_bind_text(st, 13, meta->blas, -1, SQLITE_STATIC)
                        : sqlite3_bind_null(st, 13));
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = fp__sqlerr(s, err, "inserting the runs row");
        goto fail;
    }
    id = sqlite3_last_insert_rowid(s->db);
    fp__done(st);
    /* Locked before the row is committed: no other process can see the new
     * run and take it (a sweep resumes runs it finds unlocked). */
    if ((rc = fp__hold(s, id, err)))
        goto fail;
    if ((rc = fp__commit(s, err))) {
        fp_store_unlock_run(s, id);
        goto fail;
    }
    *run_id = id;
    return 0;
bind_fail:
    rc = fp__sqlerr(s, err, "binding the runs row");
fail:
    fp__done(st);
    fp__rollback(s, err);
    return rc;
}

/* Run run_id's status ("running", "completed", ...) into status[0..n)
 * (n may be 0): 0, FP_ENOTFOUND with a message if there is no such run, or
 * SQLite's error. The one reading of ST_RUN_EXISTS. */
static int fp__run_status(struct fp_store *s, int64_t run_id, char *status, size_t n,
                          struct fp_error *err)
{
    sqlite3_stmt *st = s->st[ST_RUN_EXISTS];
    int rc;
    if (sqlite3_bind_int64(st, 1, run_id) != SQLITE_OK) {
        rc = fp__sqlerr(s, err, "binding the run id");
        goto out;
    }
    switch (sqlite3_step(st)) {
    case SQLITE_ROW:
        rc = 0;
        if (n)
            snprintf(status, n, "%s", (const char *)sqlite3_column_text(st, 0));
        break;
    case SQLITE_DONE:
        rc = fp_error_set(err, FP_ENOTFOUND, "Run store %s has no run %" PRId64 ".", s->path,
                          run_id);
        break;
    default: rc = fp__sqlerr(s, err, "looking up a run"); break;
    }
out:
    fp__done(st);
    return rc;
}

/* The refusal of a write meant for a running run, when the run has a
 * final status that no write may change. */
static int fp__refuse(struct fp_store *s, int64_t run_id, const char *status, const char *what,
                      struct fp_error *err)
{
    return fp_error_set(err, FP_ESTORE,
                        "Run store %s: run %" PRId64 " is '%s', not running: refusing to %s "
                        "(a finished run is never changed; a stopped one is continued with "
                        "fedpress sim --resume).",
                        s->path, run_id, status, what);
}

/* Why a run did not take a write meant for a running run: it does not
 * exist (FP_ENOTFOUND), or it has a final status (FP_ESTORE). */
static int fp__not_running(struct fp_store *s, int64_t run_id, const char *what,
                           struct fp_error *err)
{
    char status[16];
    int rc = fp__run_status(s, run_id, status, sizeof status, err);
    return rc ? rc : fp__refuse(s, run_id, status, what, err);
}

/* Inside a write transaction: the run exists and is running. */
static int fp__require_running(struct fp_store *s, int64_t run_id, const char *what,
                               struct fp_error *err)
{
    char status[16];
    int rc = fp__run_status(s, run_id, status, sizeof status, err);
    if (rc || !strcmp(status, "running"))
        return rc;
    return fp__refuse(s, run_id, status, what, err);
}

/* Inside an open transaction: the run's state checkpoint after `round`,
 * replacing older ones (only the newest is ever resumed from). The first
 * part_bytes go in the checkpoints row, the rest in checkpoint_parts rows
 * 1, 2, ...; the row's sha256 is of the whole state. */
static int fp__write_state(struct fp_store *s, int64_t run_id, uint32_t round, const void *state,
                           size_t state_len, struct fp_error *err)
{
    char hex[65], what[96];
    int rc;
    const uint8_t *bytes = state;
    size_t first = state_len < s->part_bytes ? state_len : s->part_bytes;
    fp_sha256_hex(state, state_len, hex);
    sqlite3_stmt *st = s->st[ST_PUT_STATE];
    FP__BIND(sqlite3_bind_int64(st, 1, run_id));
    FP__BIND(sqlite3_bind_int64(st, 2, round));
    if (sqlite3_bind_blob64(st, 3, state, first, SQLITE_STATIC) != SQLITE_OK) {
        snprintf(what, sizeof what, "storing a state checkpoint of %zu bytes", state_len);
        rc = fp__sqlerr(s, err, what);
        goto out;
    }
    FP__BIND(sqlite3_bind_text(st, 4, hex, -1, SQLITE_TRANSIENT));
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = fp__sqlerr(s, err, "storing the state checkpoint");
        goto out;
    }
    fp__done(st);
    st = s->st[ST_DROP_PARTS];
    FP__BIND(sqlite3_bind_int64(st, 1, run_id));
    FP__BIND(sqlite3_bind_int64(st, 2, round));
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = fp__sqlerr(s, err, "replacing the state checkpoint");
        goto out;
    }
    fp__done(st);
    st = s->st[ST_PUT_PART];
    int64_t part = 1;
    for (size_t at = first; at < state_len; at += s->part_bytes, part++) {
        size_t n = state_len - at < s->part_bytes ? state_len - at : s->part_bytes;
        FP__BIND(sqlite3_bind_int64(st, 1, run_id));
        FP__BIND(sqlite3_bind_int64(st, 2, round));
        FP__BIND(sqlite3_bind_int64(st, 3, part));
        if (sqlite3_bind_blob64(st, 4, bytes + at, n, SQLITE_STATIC) != SQLITE_OK) {
            snprintf(what, sizeof what, "storing part %" PRId64 " of a state checkpoint", part);
            rc = fp__sqlerr(s, err, what);
            goto out;
        }
        if (sqlite3_step(st) != SQLITE_DONE) {
            rc = fp__sqlerr(s, err, "storing a part of the state checkpoint");
            goto out;
        }
        fp__done(st);
    }
    st = s->st[ST_DROP_OLD_STATE];
    FP__BIND(sqlite3_bind_int64(st, 1, run_id));
    FP__BIND(sqlite3_bind_int64(st, 2, round));
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : fp__sqlerr(s, err, "dropping older checkpoints");
    goto out;
bind_fail:
    rc = fp__sqlerr(s, err, "binding the state checkpoint");
out:
    fp__done(st);
    return rc;
}

int fp_store_commit_round(struct fp_store *s, int64_t run_id, const struct fp_round *r,
                          struct fp_error *err)
{
    return fp_store_commit_round_state(s, run_id, r, NULL, 0, err);
}

int fp_store_commit_round_state(struct fp_store *s, int64_t run_id, const struct fp_round *r,
                                const void *state, size_t state_len, struct fp_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc;

    assert(s);
    if (!r || r->round < 1 || (r->participants > 0 && !r->clients))
        return fp_error_set(err, FP_EINVAL,
                            "fp_store_commit_round: the round must be non-NULL, numbered from 1, "
                            "and list its %u participants.",
                            r ? r->participants : 0u);
    if (!fp__fits_i64(r->uplink_bytes) || !fp__fits_i64(r->downlink_bytes))
        return fp_error_set(err, FP_EINVAL, "Run store %s: byte counts of round %u exceed 2^63-1.",
                            s->path, r->round);
    for (uint32_t i = 0; i < r->participants; i++)
        if (!fp__fits_i64(r->clients[i].uplink_bytes) ||
            !fp__fits_i64(r->clients[i].downlink_bytes))
            return fp_error_set(err, FP_EINVAL,
                                "Run store %s: byte counts of client %u in round %u exceed "
                                "2^63-1.",
                                s->path, r->clients[i].client, r->round);

    if ((rc = fp__hold(s, run_id, err)) || (rc = fp__begin(s, err)))
        return rc;

    /* Update the run first: zero changed rows tells "no such run" (or one
     * that is not running) apart from a foreign-key failure on the rounds
     * insert. */
    st = s->st[ST_UPDATE_RUN_ROUND];
    FP__BIND(sqlite3_bind_int64(st, 1, run_id));
    FP__BIND(sqlite3_bind_int64(st, 2, r->round));
    FP__BIND(sqlite3_bind_int64(st, 3, (sqlite3_int64)r->uplink_bytes));
    FP__BIND(sqlite3_bind_int64(st, 4, (sqlite3_int64)r->downlink_bytes));
    FP__BIND(fp__bind_real(st, 5, r->test_accuracy));
    FP__BIND(fp__bind_real(st, 6, r->test_loss));
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = fp__sqlerr(s, err, "updating the run's totals");
        goto fail;
    }
    fp__done(st);
    if (sqlite3_changes(s->db) != 1) {
        char what[64];
        snprintf(what, sizeof what, "add round %u", r->round);
        rc = fp__not_running(s, run_id, what, err);
        goto fail;
    }

    st = s->st[ST_INSERT_ROUND];
    FP__BIND(sqlite3_bind_int64(st, 1, run_id));
    FP__BIND(sqlite3_bind_int64(st, 2, r->round));
    FP__BIND(fp__bind_real(st, 3, r->train_loss));
    FP__BIND(fp__bind_real(st, 4, r->test_loss));
    FP__BIND(fp__bind_real(st, 5, r->test_accuracy));
    FP__BIND(sqlite3_bind_int64(st, 6, (sqlite3_int64)r->uplink_bytes));
    FP__BIND(sqlite3_bind_int64(st, 7, (sqlite3_int64)r->downlink_bytes));
    FP__BIND(sqlite3_bind_int64(st, 8, r->participants));
    FP__BIND(fp__bind_real(st, 9, r->wall_ms));
    if (sqlite3_step(st) != SQLITE_DONE) {
        char what[96];
        snprintf(what, sizeof what, "inserting round %u of run %" PRId64, r->round, run_id);
        rc = fp__sqlerr(s, err, what);
        goto fail;
    }
    fp__done(st);

    st = s->st[ST_INSERT_CLIENT];
    for (uint32_t i = 0; i < r->participants + r->n_others; i++) {
        const struct fp_client_round *c =
            i < r->participants ? &r->clients[i] : &r->others[i - r->participants];
        FP__BIND(sqlite3_bind_int64(st, 1, run_id));
        FP__BIND(sqlite3_bind_int64(st, 2, r->round));
        FP__BIND(sqlite3_bind_int64(st, 3, c->client));
        FP__BIND(fp__bind_real(st, 4, c->train_loss));
        FP__BIND(sqlite3_bind_int64(st, 5, (sqlite3_int64)c->uplink_bytes));
        FP__BIND(sqlite3_bind_int64(st, 6, (sqlite3_int64)c->downlink_bytes));
        FP__BIND(sqlite3_bind_int64(st, 7, c->examples));
        FP__BIND(c->upload_sha256[0]
                     ? sqlite3_bind_text(st, 8, c->upload_sha256, 64, SQLITE_TRANSIENT)
                     : sqlite3_bind_null(st, 8));
        FP__BIND(sqlite3_bind_text(st, 9, fp_client_status_name(c->status), -1, SQLITE_STATIC));
        FP__BIND(c->status != FP_CLIENT_INCLUDED && c->reason[0]
                     ? sqlite3_bind_text(st, 10, c->reason, -1, SQLITE_TRANSIENT)
                     : sqlite3_bind_null(st, 10));
        if (sqlite3_step(st) != SQLITE_DONE) {
            char what[128];
            snprintf(what, sizeof what,
                     "inserting client %u of round %u of run %" PRId64 " (index %u)", c->client,
                     r->round, run_id, i);
            rc = fp__sqlerr(s, err, what);
            goto fail;
        }
        fp__done(st);
    }
    st = NULL;

    if (state && (rc = fp__write_state(s, run_id, r->round, state, state_len, err)))
        goto fail;

    rc = fp__commit(s, err);
    if (rc)
        goto fail;
    return 0;
bind_fail:
    rc = fp__sqlerr(s, err, "binding round values");
fail:
    if (st)
        fp__done(st);
    fp__rollback(s, err);
    return rc;
}

/* fp_store_finish_run, and for a failed run the reason it failed (NULL:
 * none given), in the same UPDATE. */
static int fp__finish(struct fp_store *s, int64_t run_id, enum fp_run_status status,
                      const float *model, size_t d, uint32_t round_done, const char *error,
                      struct fp_error *err)
{
    char hex[65];
    size_t nbytes = 0;
    sqlite3_stmt *st = NULL;
    int rc;

    assert(s);
    if ((unsigned)status > FP_RUN_FAILED)
        return fp_error_set(err, FP_EINVAL, "fp_store_finish_run: unknown run status %d.",
                            (int)status);
    if (model) {
        if (d == 0 || d > SIZE_MAX / sizeof(float))
            return fp_error_set(err, FP_EINVAL,
                                "fp_store_finish_run: model size d = %zu is out of range.", d);
        nbytes = d * sizeof(float);
        /* The static asserts at the top make these bytes little-endian float32. */
        fp_sha256_hex(model, nbytes, hex);
    }

    if ((rc = fp__hold(s, run_id, err)) || (rc = fp__begin(s, err)))
        return rc;

    /* Only a running run is finished: a process that lost the race for a
     * run can never mark the winner's completed run failed. */
    st = s->st[ST_FINISH_RUN];
    FP__BIND(sqlite3_bind_int64(st, 1, run_id));
    FP__BIND(sqlite3_bind_text(st, 2, fp_run_status_name(status), -1, SQLITE_STATIC));
    FP__BIND(model ? sqlite3_bind_text(st, 3, hex, -1, SQLITE_STATIC) : sqlite3_bind_null(st, 3));
    FP__BIND(error && *error ? sqlite3_bind_text(st, 4, error, -1, SQLITE_STATIC)
                             : sqlite3_bind_null(st, 4));
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = fp__sqlerr(s, err, "updating the run's final status");
        goto fail;
    }
    fp__done(st);
    if (sqlite3_changes(s->db) != 1) {
        char what[64];
        snprintf(what, sizeof what, "mark it '%s'", fp_run_status_name(status));
        rc = fp__not_running(s, run_id, what, err);
        goto fail;
    }

    /* A completed run will not be resumed: its state checkpoint (up to
     * N client vectors) would only weigh on the file. */
    if (status == FP_RUN_COMPLETED) {
        st = s->st[ST_DROP_OLD_STATE];
        FP__BIND(sqlite3_bind_int64(st, 1, run_id));
        FP__BIND(sqlite3_bind_int64(st, 2, INT64_MAX));
        if (sqlite3_step(st) != SQLITE_DONE) {
            rc = fp__sqlerr(s, err, "dropping the state checkpoint");
            goto fail;
        }
        fp__done(st);
    }

    if (model) {
        st = s->st[ST_INSERT_CHECKPOINT];
        FP__BIND(sqlite3_bind_int64(st, 1, run_id));
        FP__BIND(sqlite3_bind_int64(st, 2, round_done));
        FP__BIND(sqlite3_bind_blob64(st, 3, model, nbytes, SQLITE_STATIC));
        FP__BIND(sqlite3_bind_text(st, 4, hex, -1, SQLITE_STATIC));
        if (sqlite3_step(st) != SQLITE_DONE) {
            rc = fp__sqlerr(s, err, "inserting the model checkpoint");
            goto fail;
        }
        fp__done(st);
    }
    st = NULL;

    rc = fp__commit(s, err);
    if (rc)
        goto fail;
    /* Committed into a file that vanished just before: still not saved. */
    if ((rc = fp_store_check_identity(s, err)))
        fp__save_moved(s, err);
    return rc;
bind_fail:
    rc = fp__sqlerr(s, err, "binding the run's final values");
fail:
    if (st)
        fp__done(st);
    fp__rollback(s, err);
    return rc;
}

int fp_store_finish_run(struct fp_store *s, int64_t run_id, enum fp_run_status status,
                        const float *model, size_t d, uint32_t round_done, struct fp_error *err)
{
    return fp__finish(s, run_id, status, model, d, round_done, NULL, err);
}

int fp_store_fail_run(struct fp_store *s, int64_t run_id, uint32_t round_done, const char *error,
                      struct fp_error *err)
{
    return fp__finish(s, run_id, FP_RUN_FAILED, NULL, 0, round_done, error, err);
}

/* The rows of a failed attempt, inside its transaction: the attempts row,
 * then each sampled client's. */
static int fp__insert_attempt(struct fp_store *s, int64_t run_id, const struct fp_attempt *a,
                              struct fp_error *err)
{
    sqlite3_stmt *st = s->st[ST_INSERT_ATTEMPT];
    int rc;
    FP__BIND(sqlite3_bind_int64(st, 1, run_id));
    FP__BIND(sqlite3_bind_int64(st, 2, a->round));
    FP__BIND(sqlite3_bind_int64(st, 3, a->attempt));
    FP__BIND(sqlite3_bind_int64(st, 4, a->uploads));
    FP__BIND(sqlite3_bind_int64(st, 5, a->min_updates));
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = fp__sqlerr(s, err, "inserting the attempts row");
        goto out;
    }
    const int64_t id = sqlite3_last_insert_rowid(s->db);
    fp__done(st);
    st = s->st[ST_INSERT_ATTEMPT_CLIENT];
    for (uint32_t i = 0; i < a->n; i++) {
        const struct fp_client_round *c = &a->clients[i];
        /* nothing of a failed attempt is included: an upload that came
         * in time merely answered */
        const char *status =
            c->status == FP_CLIENT_INCLUDED ? "answered" : fp_client_status_name(c->status);
        FP__BIND(sqlite3_bind_int64(st, 1, id));
        FP__BIND(sqlite3_bind_int64(st, 2, c->client));
        FP__BIND(sqlite3_bind_text(st, 3, status, -1, SQLITE_STATIC));
        FP__BIND(c->status != FP_CLIENT_INCLUDED && c->reason[0]
                     ? sqlite3_bind_text(st, 4, c->reason, -1, SQLITE_TRANSIENT)
                     : sqlite3_bind_null(st, 4));
        if (sqlite3_step(st) != SQLITE_DONE) {
            char what[96];
            snprintf(what, sizeof what, "inserting client %u of round %u's attempt %u", c->client,
                     a->round, a->attempt);
            rc = fp__sqlerr(s, err, what);
            goto out;
        }
        fp__done(st);
    }
    return 0;
bind_fail:
    rc = fp__sqlerr(s, err, "binding an attempt's values");
out:
    fp__done(st);
    return rc;
}

int fp_store_put_attempt(struct fp_store *s, int64_t run_id, const struct fp_attempt *a,
                         struct fp_error *err)
{
    int rc;
    assert(s);
    if (!a || a->round < 1 || a->attempt < 1 || (a->n && !a->clients))
        return fp_error_set(err, FP_EINVAL,
                            "fp_store_put_attempt: the attempt must be non-NULL, its round and "
                            "number counted from 1, and list its clients.");
    if ((rc = fp__hold(s, run_id, err)) || (rc = fp__begin(s, err)))
        return rc;
    char what[64];
    snprintf(what, sizeof what, "add an attempt of round %u", a->round);
    if ((rc = fp__require_running(s, run_id, what, err)) ||
        (rc = fp__insert_attempt(s, run_id, a, err)) || (rc = fp__commit(s, err))) {
        fp__rollback(s, err);
        return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                  */

/* Text column as a borrowed pointer (valid until the next step/reset). NULL
 * with a non-NULL column type means SQLite ran out of memory converting it. */
static bool fp__col_text(sqlite3_stmt *st, int i, char **out)
{
    *out = (char *)sqlite3_column_text(st, i);
    return *out || sqlite3_column_type(st, i) == SQLITE_NULL;
}

int fp_store_list_runs(struct fp_store *s, int (*cb)(void *u, const struct fp_run_info *r), void *u,
                       struct fp_error *err)
{
    sqlite3_stmt *st = s->st[ST_LIST_RUNS];
    int rc, step;

    assert(s && cb);
    if ((rc = fp__need(s, ST_LIST_RUNS, err)))
        return rc;
    if (s->listing_runs)
        return fp_error_set(err, FP_EINVAL,
                            "fp_store_list_runs called from inside its own callback.");
    s->listing_runs = true;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct fp_run_info ri = {0};
        ri.id = sqlite3_column_int64(st, 0);
        if (!fp__col_text(st, 1, &ri.name) || !fp__col_text(st, 2, &ri.algorithm) ||
            !fp__col_text(st, 3, &ri.dataset) || !fp__col_text(st, 4, &ri.status) ||
            !fp__col_text(st, 5, &ri.model_sha256) || !fp__col_text(st, 6, &ri.started_at) ||
            !fp__col_text(st, 11, &ri.compressor)) {
            rc = fp_error_set(err, FP_ENOMEM,
                              "Out of memory reading run %" PRId64 " from run store %s.", ri.id,
                              s->path);
            goto out;
        }
        ri.rounds_planned = (uint32_t)sqlite3_column_int64(st, 7);
        ri.rounds_done = (uint32_t)sqlite3_column_int64(st, 8);
        ri.final_accuracy = fp__column_real(st, 9);
        ri.uplink_bytes = (uint64_t)sqlite3_column_int64(st, 10);
        ri.final_loss = fp__column_real(st, 12);
        ri.clients = (uint32_t)sqlite3_column_int64(st, 13);
        rc = cb(u, &ri);
        if (rc) {
            rc = rc < 0 ? rc : 0;
            goto out;
        }
    }
    rc = step == SQLITE_DONE ? 0 : fp__sqlerr(s, err, "listing runs");
out:
    fp__done(st);
    s->listing_runs = false;
    return rc;
}

/*
 * One run's rows of statement `which` (?1 = run_id, and ?2 = *arg2 if arg2),
 * each handed to row(st, ctx); a nonzero return stops the listing (negative:
 * returned as the error). *busy refuses a re-entry from a callback, which
 * would reset the statement under the outer loop. FP_ENOTFOUND if the run
 * does not exist: it would otherwise look like a run with no rows yet.
 */
static int fp__list_run(struct fp_store *s, int which, int64_t run_id, const int64_t *arg2,
                        bool *busy, const char *fname, const char *what,
                        int (*row)(sqlite3_stmt *st, void *ctx), void *ctx, struct fp_error *err)
{
    sqlite3_stmt *st = s->st[which];
    int rc, step;
    if (*busy)
        return fp_error_set(err, FP_EINVAL, "%s called from inside its own callback.", fname);
    if ((rc = fp__need(s, which, err)))
        return rc;
    rc = fp_store_run_exists(s, run_id, err);
    if (rc)
        return rc;
    *busy = true;
    if (sqlite3_bind_int64(st, 1, run_id) != SQLITE_OK ||
        (arg2 && sqlite3_bind_int64(st, 2, *arg2) != SQLITE_OK)) {
        rc = fp__sqlerr(s, err, "binding the run id");
        goto out;
    }
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        rc = row(st, ctx);
        if (rc) {
            rc = rc < 0 ? rc : 0;
            goto out;
        }
    }
    rc = step == SQLITE_DONE ? 0 : fp__sqlerr(s, err, what);
out:
    fp__done(st);
    *busy = false;
    return rc;
}

struct fp__rounds_ctx {
    int (*cb)(void *u, const struct fp_round *r);
    void *u;
    const struct fp_store *s;
    int64_t run_id;
    struct fp_error *err;
};

/* A round or client number a store holds as a 64-bit integer, checked
 * against [lo, UINT32_MAX] before it becomes a uint32_t: an edited or
 * damaged store must be refused, not read as another round or client
 * (2^32 + 3 would otherwise read as client 3). */
static int fp__column_u32(sqlite3_stmt *st, int col, int64_t lo, uint32_t *out)
{
    const int64_t v = sqlite3_column_int64(st, col);
    if (sqlite3_column_type(st, col) != SQLITE_INTEGER || v < lo || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int fp__damaged_row(const struct fp_store *s, int64_t run_id, sqlite3_stmt *st,
                           const char *table, struct fp_error *err)
{
    const int clients = strcmp(table, "rounds") != 0;
    const char *client = clients ? (const char *)sqlite3_column_text(st, 1) : NULL;
    /* a failed attempt included nothing: its clients answered or not */
    const char *first = strcmp(table, "attempt_clients") ? "included" : "answered";
    return fp_error_set(err, FP_ESTORE,
                        "Run store %s: run %lld has a %s row with round '%s'%s%s%s (a round is 1 "
                        "to 2^32 - 1%s%s%s): the store was edited or is damaged; refusing to read "
                        "it",
                        s->path, (long long)run_id, table, (const char *)sqlite3_column_text(st, 0),
                        clients ? " and client '" : "", clients ? (client ? client : "NULL") : "",
                        clients ? "'" : "",
                        clients ? ", a client 0 to 2^32 - 1, a status one of " : "",
                        clients ? first : "", clients ? ", late, absent, refused" : "");
}

static int fp__round_row(sqlite3_stmt *st, void *ctx)
{
    struct fp__rounds_ctx *c = ctx;
    struct fp_round r = {0};
    if (fp__column_u32(st, 0, 1, &r.round))
        return fp__damaged_row(c->s, c->run_id, st, "rounds", c->err);
    r.train_loss = fp__column_real(st, 1);
    r.test_loss = fp__column_real(st, 2);
    r.test_accuracy = fp__column_real(st, 3);
    r.uplink_bytes = (uint64_t)sqlite3_column_int64(st, 4);
    r.downlink_bytes = (uint64_t)sqlite3_column_int64(st, 5);
    r.participants = (uint32_t)sqlite3_column_int64(st, 6);
    r.wall_ms = fp__column_real(st, 7);
    r.clients = NULL;
    return c->cb(c->u, &r);
}

int fp_store_list_rounds(struct fp_store *s, int64_t run_id,
                         int (*cb)(void *u, const struct fp_round *r), void *u,
                         struct fp_error *err)
{
    assert(s && cb);
    struct fp__rounds_ctx c = {cb, u, s, run_id, err};
    return fp__list_run(s, ST_LIST_ROUNDS, run_id, NULL, &s->listing_rounds, "fp_store_list_rounds",
                        "listing rounds", fp__round_row, &c, err);
}

struct fp__clients_ctx {
    int (*cb)(void *u, uint32_t round, const struct fp_client_round *c);
    void *u;
    const struct fp_store *s;
    int64_t run_id;
    struct fp_error *err;
};

static int fp__client_row(sqlite3_stmt *st, void *ctx)
{
    struct fp__clients_ctx *x = ctx;
    struct fp_client_round c = {0};
    uint32_t round;
    int known = 0;
    if (fp__column_u32(st, 0, 1, &round) || fp__column_u32(st, 1, 0, &c.client))
        return fp__damaged_row(x->s, x->run_id, st, "client_rounds", x->err);
    c.train_loss = fp__column_real(st, 2);
    c.uplink_bytes = (uint64_t)sqlite3_column_int64(st, 3);
    c.downlink_bytes = (uint64_t)sqlite3_column_int64(st, 4);
    c.examples = (uint32_t)sqlite3_column_int64(st, 5);
    const unsigned char *sha = sqlite3_column_text(st, 6);
    if (sha && sqlite3_column_bytes(st, 6) == 64)
        memcpy(c.upload_sha256, sha, 65);
    const char *status = (const char *)sqlite3_column_text(st, 7);
    for (int k = FP_CLIENT_INCLUDED; k <= FP_CLIENT_REFUSED; k++)
        if (status && !strcmp(status, fp_client_status_name((enum fp_client_status)k))) {
            c.status = (enum fp_client_status)k;
            known = 1;
        }
    if (!known)
        return fp__damaged_row(x->s, x->run_id, st, "client_rounds", x->err);
    const unsigned char *reason = sqlite3_column_text(st, 8);
    if (reason)
        snprintf(c.reason, sizeof c.reason, "%s", (const char *)reason);
    return x->cb(x->u, round, &c);
}

int fp_store_list_client_rounds(struct fp_store *s, int64_t run_id, int64_t client,
                                int (*cb)(void *u, uint32_t round, const struct fp_client_round *c),
                                void *u, struct fp_error *err)
{
    assert(s && cb);
    struct fp__clients_ctx c = {cb, u, s, run_id, err};
    return fp__list_run(s, ST_LIST_CLIENTS, run_id, &client, &s->listing_clients,
                        "fp_store_list_client_rounds", "listing client rounds", fp__client_row, &c,
                        err);
}

int fp_store_has_attempts(const struct fp_store *s)
{
    return s->st[ST_LIST_ATTEMPTS] && s->st[ST_RUN_ERROR];
}

int fp_store_run_error(struct fp_store *s, int64_t run_id, char **error, struct fp_error *err)
{
    sqlite3_stmt *st = s->st[ST_RUN_ERROR];
    int rc = 0, step;
    assert(s && error);
    *error = NULL;
    if ((rc = fp__need(s, ST_RUN_ERROR, err)))
        return rc;
    if (sqlite3_bind_int64(st, 1, run_id) != SQLITE_OK) {
        rc = fp__sqlerr(s, err, "binding the run id");
        goto out;
    }
    step = sqlite3_step(st);
    if (step == SQLITE_DONE) {
        rc = fp_error_set(err, FP_ENOTFOUND, "Run store %s has no run %" PRId64 ".", s->path,
                          run_id);
    } else if (step != SQLITE_ROW) {
        rc = fp__sqlerr(s, err, "reading a run's error");
    } else if (sqlite3_column_type(st, 0) != SQLITE_NULL) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        if (!t || !(*error = strdup(t)))
            rc = fp_error_set(err, FP_ENOMEM,
                              "Out of memory reading run %lld's error from run store %s.",
                              (long long)run_id, s->path);
    }
out:
    fp__done(st);
    return rc;
}

const char *fp_attempt_status_name(enum fp_client_status st)
{
    return st == FP_CLIENT_INCLUDED ? "answered" : fp_client_status_name(st);
}

struct fp__attempts_ctx {
    int (*cb)(void *u, const struct fp_attempt_info *a, const struct fp_client_round *c);
    void *u;
    const struct fp_store *s;
    int64_t run_id;
    struct fp_error *err;
};

static int fp__attempt_row(sqlite3_stmt *st, void *ctx)
{
    struct fp__attempts_ctx *x = ctx;
    struct fp_attempt_info a = {0};
    struct fp_client_round c = {.train_loss = NAN};
    int known = 0;
    const char *status = (const char *)sqlite3_column_text(st, 7);
    for (int k = FP_CLIENT_INCLUDED; k <= FP_CLIENT_REFUSED; k++)
        if (status && !strcmp(status, fp_attempt_status_name((enum fp_client_status)k))) {
            c.status = (enum fp_client_status)k;
            known = 1;
        }
    if (!known || fp__column_u32(st, 0, 1, &a.round) || fp__column_u32(st, 1, 0, &c.client) ||
        fp__column_u32(st, 2, 1, &a.attempt) || fp__column_u32(st, 3, 0, &a.uploads) ||
        fp__column_u32(st, 4, 0, &a.min_updates))
        return fp__damaged_row(x->s, x->run_id, st, "attempt_clients", x->err);
    a.id = sqlite3_column_int64(st, 6);
    if (!fp__col_text(st, 5, &a.closed_at))
        return fp_error_set(x->err, FP_ENOMEM, "Out of memory reading run %lld from run store %s.",
                            (long long)x->run_id, x->s->path);
    const unsigned char *reason = sqlite3_column_text(st, 8);
    if (reason)
        snprintf(c.reason, sizeof c.reason, "%s", (const char *)reason);
    return x->cb(x->u, &a, &c);
}

int fp_store_list_attempts(struct fp_store *s, int64_t run_id,
                           int (*cb)(void *u, const struct fp_attempt_info *a,
                                     const struct fp_client_round *c),
                           void *u, struct fp_error *err)
{
    assert(s && cb);
    struct fp__attempts_ctx c = {cb, u, s, run_id, err};
    return fp__list_run(s, ST_LIST_ATTEMPTS, run_id, NULL, &s->listing_attempts,
                        "fp_store_list_attempts", "listing failed attempts", fp__attempt_row, &c,
                        err);
}

struct fp__last_ctx {
    uint32_t n;
    uint32_t *last;
};

static int fp__last_row(sqlite3_stmt *st, void *ctx)
{
    struct fp__last_ctx *c = ctx;
    int64_t client = sqlite3_column_int64(st, 0), round = sqlite3_column_int64(st, 1);
    /* a row of a client past n (another N) or a round past 2^32 is not this
     * run's: ignored rather than written out of bounds */
    if (client >= 0 && client < c->n && round > 0 && round <= UINT32_MAX)
        c->last[client] = (uint32_t)round;
    return 0;
}

int fp_store_last_included(struct fp_store *s, int64_t run_id, uint32_t n, uint32_t *last,
                           struct fp_error *err)
{
    assert(s && (last || !n));
    if (n)
        memset(last, 0, n * sizeof *last);
    struct fp__last_ctx c = {n, last};
    return fp__list_run(s, ST_LAST_INCLUDED, run_id, NULL, &s->listing_clients,
                        "fp_store_last_included", "reading the clients' last included rounds",
                        fp__last_row, &c, err);
}

static int fp__find_run(struct fp_store *s, int which, const char *scenario, int64_t *run_id,
                        char *status, size_t status_len, struct fp_error *err)
{
    int rc = 0, step;
    *run_id = 0;
    if (status_len)
        status[0] = '\0';
    if ((rc = fp__need(s, which, err)))
        return rc;
    sqlite3_stmt *st = s->st[which];
    if (sqlite3_bind_text(st, 1, scenario, -1, SQLITE_STATIC) != SQLITE_OK) {
        rc = fp__sqlerr(s, err, "binding the scenario text");
        goto out;
    }
    step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        *run_id = sqlite3_column_int64(st, 0);
        const char *t = (const char *)sqlite3_column_text(st, 1);
        if (status_len)
            snprintf(status, status_len, "%s", t ? t : "");
    } else if (step != SQLITE_DONE) {
        rc = fp__sqlerr(s, err, "looking for a run of the scenario");
    }
out:
    fp__done(st);
    return rc;
}

int fp_store_find_run(struct fp_store *s, const char *scenario, int64_t *run_id, char *status,
                      size_t status_len, struct fp_error *err)
{
    return fp__find_run(s, ST_FIND_RUN, scenario, run_id, status, status_len, err);
}

int fp_store_find_newest_run(struct fp_store *s, const char *scenario, int64_t *run_id,
                             char *status, size_t status_len, struct fp_error *err)
{
    return fp__find_run(s, ST_FIND_NEWEST_RUN, scenario, run_id, status, status_len, err);
}

int fp_store_run_exists(struct fp_store *s, int64_t run_id, struct fp_error *err)
{
    int rc;
    assert(s);
    if ((rc = fp__need(s, ST_RUN_EXISTS, err)))
        return rc;
    return fp__run_status(s, run_id, NULL, 0, err);
}

const char *fp_run_status_name(enum fp_run_status st)
{
    /* Must match the CHECK constraint on runs.status. */
    switch (st) {
    case FP_RUN_RUNNING: return "running";
    case FP_RUN_COMPLETED: return "completed";
    case FP_RUN_INTERRUPTED: return "interrupted";
    case FP_RUN_FAILED: return "failed";
    }
    return "unknown";
}

/* ------------------------------------------------------------------------ */
/* Resuming                                                                 */

void fp_store_resume_free(struct fp_resume *r)
{
    free(r->scenario);
    free(r->status);
    free(r->inputs);
    free(r->blas);
    free(r->state);
    memset(r, 0, sizeof *r);
}

static char *fp__strdup_col(sqlite3_stmt *st, int i)
{
    const char *t = (const char *)sqlite3_column_text(st, i);
    return t ? strdup(t) : NULL;
}

/* Binds run_id to ?1 of st and steps to its one row: 0 there, FP_ENOTFOUND
 * if the store has no such run, else the SQLite error while `what`. */
static int fp__step_run(struct fp_store *s, sqlite3_stmt *st, int64_t run_id, const char *what,
                        struct fp_error *err)
{
    if (sqlite3_bind_int64(st, 1, run_id) != SQLITE_OK)
        return fp__sqlerr(s, err, "binding the run id");
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE)
        return fp_error_set(err, FP_ENOTFOUND, "Run store %s has no run %" PRId64 ".", s->path,
                            run_id);
    return step == SQLITE_ROW ? 0 : fp__sqlerr(s, err, what);
}

int fp_store_load_record(struct fp_store *s, int64_t run_id, struct fp_run_record *out,
                         struct fp_error *err)
{
    sqlite3_stmt *st = s->st[ST_GET_RECORD];
    int rc;
    memset(out, 0, sizeof *out);
    if ((rc = fp__need(s, ST_GET_RECORD, err)))
        return rc;
    if ((rc = fp__step_run(s, st, run_id, "reading the run", err)))
        goto fail;
    char **col[] = {&out->scenario, &out->status, &out->inputs, &out->blas, &out->model_sha256};
    for (int i = 0; i < 5; i++)
        if (sqlite3_column_type(st, i) != SQLITE_NULL && !(*col[i] = fp__strdup_col(st, i))) {
            rc = fp_error_set(err, FP_ENOMEM, "Out of memory reading run %" PRId64 ".", run_id);
            goto fail;
        }
    out->rounds_done = (uint32_t)sqlite3_column_int64(st, 5);
    if (!out->scenario || !out->status) {
        rc = fp_error_set(err, FP_ESTORE, "Run store %s: run %" PRId64 " has no scenario.", s->path,
                          run_id);
        goto fail;
    }
    fp__done(st);
    return 0;
fail:
    fp__done(st);
    fp_store_record_free(out);
    return rc;
}

void fp_store_record_free(struct fp_run_record *r)
{
    free(r->scenario);
    free(r->status);
    free(r->inputs);
    free(r->blas);
    free(r->model_sha256);
    memset(r, 0, sizeof *r);
}

/* Appends the state's parts 1, 2, ... to out->state. */
static int fp__read_parts(struct fp_store *s, int64_t run_id, struct fp_resume *out,
                          struct fp_error *err)
{
    sqlite3_stmt *st = s->st[ST_GET_PARTS];
    int rc = 0, step;
    if (sqlite3_bind_int64(st, 1, run_id) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, out->round) != SQLITE_OK) {
        rc = fp__sqlerr(s, err, "binding the checkpoint's key");
        goto out;
    }
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(st, 0);
        uint8_t *grown = realloc(out->state, out->state_len + n);
        if (!grown) {
            rc = fp_error_set(err, FP_ENOMEM,
                              "Out of memory reading the state checkpoint of run %" PRId64
                              " (%zu bytes so far).",
                              run_id, out->state_len);
            goto out;
        }
        out->state = grown;
        if (n)
            memcpy(grown + out->state_len, sqlite3_column_blob(st, 0), n);
        out->state_len += n;
    }
    if (step != SQLITE_DONE)
        rc = fp__sqlerr(s, err, "reading the state checkpoint's parts");
out:
    fp__done(st);
    return rc;
}

int fp_store_load_resume(struct fp_store *s, int64_t run_id, struct fp_resume *out,
                         struct fp_error *err)
{
    sqlite3_stmt *st = s->st[ST_GET_RESUME];
    int rc = 0;
    char sha[65] = "";
    memset(out, 0, sizeof *out);
    if ((rc = fp__need(s, ST_GET_RESUME, err)) || (rc = fp__need(s, ST_GET_PARTS, err)))
        return rc;
    /* One read transaction: the checkpoint row and its parts from the same
     * snapshot, whatever a writer commits meanwhile. */
    if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return fp__sqlerr(s, err, "starting to read the run's checkpoint");
    if ((rc = fp__step_run(s, st, run_id, "reading the run's checkpoint", err)))
        goto fail;
    out->scenario = fp__strdup_col(st, 0);
    out->status = fp__strdup_col(st, 1);
    bool has_inputs = sqlite3_column_type(st, 5) != SQLITE_NULL;
    out->inputs = has_inputs ? fp__strdup_col(st, 5) : NULL;
    bool has_blas = sqlite3_column_type(st, 6) != SQLITE_NULL;
    out->blas = has_blas ? fp__strdup_col(st, 6) : NULL;
    bool has_state = sqlite3_column_type(st, 3) == SQLITE_BLOB;
    if (has_state) {
        out->round = (uint32_t)sqlite3_column_int64(st, 2);
        out->state_len = (size_t)sqlite3_column_bytes(st, 3);
        out->state = malloc(out->state_len ? out->state_len : 1);
        if (out->state)
            memcpy(out->state, sqlite3_column_blob(st, 3), out->state_len);
        const char *t = (const char *)sqlite3_column_text(st, 4);
        snprintf(sha, sizeof sha, "%s", t ? t : "");
    }
    if (!out->scenario || !out->status || (out->state_len && !out->state) ||
        (has_inputs && !out->inputs) || (has_blas && !out->blas)) {
        rc = fp_error_set(err, FP_ENOMEM, "Out of memory reading run %" PRId64 ".", run_id);
        goto fail;
    }
    fp__done(st);
    if (has_state && (rc = fp__read_parts(s, run_id, out, err)))
        goto fail;
    if (has_state) {
        char hex[65];
        fp_sha256_hex(out->state, out->state_len, hex);
        if (strcmp(hex, sha) != 0) {
            rc = fp_error_set(err, FP_ESTORE,
                              "Run store %s: the state checkpoint of run %" PRId64
                              " after round %u does not match its SHA-256 (%zu bytes read); "
                              "it is damaged. `fedpress sim --resume` needs a sound checkpoint.",
                              s->path, run_id, out->round, out->state_len);
            goto fail;
        }
    }
    (void)sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL); /* read-only: cannot lose data */
    return 0;
fail:
    fp__done(st);
    fp_store_resume_free(out);
    (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL); /* first error is the news */
    return rc;
}

/* Runs one statement with ?1 = run_id and ?2 = round. */
static int fp__exec_run_round(struct fp_store *s, const char *sql, int64_t run_id, uint32_t round,
                              uint32_t threads, struct fp_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return fp__sqlerr(s, err, "preparing the rewind");
    int ok =
        sqlite3_bind_int64(st, 1, run_id) == SQLITE_OK &&
        (sqlite3_bind_parameter_count(st) < 2 || sqlite3_bind_int64(st, 2, round) == SQLITE_OK) &&
        (sqlite3_bind_parameter_count(st) < 3 || sqlite3_bind_int64(st, 3, threads) == SQLITE_OK) &&
        sqlite3_step(st) == SQLITE_DONE;
    int rc = ok ? 0 : fp__sqlerr(s, err, "rewinding the run");
    sqlite3_finalize(st);
    return rc;
}

static int fp__rewindable(struct fp_store *s, int64_t run_id, struct fp_error *err)
{
    char status[16];
    int rc = fp__run_status(s, run_id, status, sizeof status, err);
    if (rc || strcmp(status, "completed"))
        return rc;
    return fp__refuse(s, run_id, status, "rewind it", err);
}

int fp_store_rewind(struct fp_store *s, int64_t run_id, uint32_t round, uint32_t threads,
                    struct fp_error *err)
{
    static const char *const sql[] = {
        /* client_rounds go with their rounds (ON DELETE CASCADE) */
        "DELETE FROM rounds WHERE run_id = ?1 AND round > ?2",
        /* the failed attempts of the rounds run again (a simulator's are
         * stored again, the same); those of the round the run stopped or
         * failed in stay: what happened to it before (attempt_clients go
         * with their attempts) */
        "DELETE FROM attempts WHERE run_id = ?1 AND round > ?2"
        " AND round <= (SELECT rounds_done FROM runs WHERE id = ?1)",
        "DELETE FROM checkpoints WHERE run_id = ?1 AND round > ?2",
        "DELETE FROM checkpoints WHERE run_id = ?1 AND kind = 'model'",
        "UPDATE runs SET rounds_done = ?2, threads = ?3, status = 'running', finished_at = NULL,"
        " model_sha256 = NULL, error = NULL,"
        " uplink_bytes = (SELECT coalesce(sum(uplink_bytes), 0) FROM rounds WHERE run_id = ?1),"
        " downlink_bytes = (SELECT coalesce(sum(downlink_bytes), 0) FROM rounds"
        "  WHERE run_id = ?1),"
        " final_test_accuracy = (SELECT test_accuracy FROM rounds WHERE run_id = ?1 AND"
        "  (test_accuracy IS NOT NULL OR test_loss IS NOT NULL) ORDER BY round DESC LIMIT 1),"
        " final_test_loss = (SELECT test_loss FROM rounds WHERE run_id = ?1 AND"
        "  (test_accuracy IS NOT NULL OR test_loss IS NOT NULL) ORDER BY round DESC LIMIT 1)"
        " WHERE id = ?1",
    };
    int rc;
    if ((rc = fp__hold(s, run_id, err)) || (rc = fp__begin(s, err)))
        return rc;
    /* A completed run is final: it is never rewound (and so never marked
     * running again or stripped of its model). */
    if ((rc = fp__rewindable(s, run_id, err))) {
        fp__rollback(s, err);
        return rc;
    }
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
        rc = fp__exec_run_round(s, sql[i], run_id, round, threads, err);
        if (rc) {
            fp__rollback(s, err);
            return rc;
        }
    }
    rc = fp__commit(s, err);
    if (rc)
        fp__rollback(s, err);
    return rc;
}

int fp_store_put_state(struct fp_store *s, int64_t run_id, uint32_t round, const void *state,
                       size_t state_len, struct fp_error *err)
{
    int rc;
    if ((rc = fp__hold(s, run_id, err)) || (rc = fp__begin(s, err)))
        return rc;
    if ((rc = fp__require_running(s, run_id, "store a state checkpoint", err)) ||
        (rc = fp__write_state(s, run_id, round, state, state_len, err)) ||
        (rc = fp__commit(s, err))) {
        fp__rollback(s, err);
        return rc;
    }
    return 0;
}

void fp_store_set_part_bytes(struct fp_store *s, size_t bytes)
{
    s->part_bytes = bytes == 0 ? 1 : bytes > FP__PART_BYTES ? FP__PART_BYTES : bytes;
}

void fp_store_set_busy(struct fp_store *s, unsigned busy_ms, unsigned wait_ms)
{
    s->busy_ms = busy_ms;
    s->busy_wait_ms = wait_ms;
    (void)sqlite3_busy_timeout(s->db, (int)busy_ms); /* cannot fail on an open handle */
}

void fp_store_set_value_limit(struct fp_store *s, size_t bytes)
{
    sqlite3_limit(s->db, SQLITE_LIMIT_LENGTH, bytes > INT32_MAX ? INT32_MAX : (int)bytes);
}
