/*
 * tests/test_store.c — the SQLite run store: round trip of every field,
 * schema and pragmas seen through the raw sqlite3 API, per-round atomicity,
 * several runs in one file, a reader during a write, and error paths.
 *
 * Each test gets its own mkdtemp() directory, removed in teardown.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

struct fx {
    char dir[256];
    char db[300];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/fp_store_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->db, sizeof f->db, "%s/runs.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char p[600];
    DIR *d = opendir(f->dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
            if (unlink(p) != 0)
                rmdir(p);
        }
    if (d)
        closedir(d);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                 */

static const struct fp_run_meta meta_a = {
    .name = "fedavg-a",
    .algorithm = "fedavg",
    .dataset = "mnist",
    .scenario = "[run]\nrounds = 3\n",
    .seed = 0xFFFFFFFFFFFFFFF0ull, /* >= 2^63: exercises the signed bit pattern */
    .rounds = 3,
    .clients = 100,
    .sample = 2,
    .d = 4,
    .threads = 2,
};

/* Round k (1..3): clients 10+k and 20+k. Round 2 is not evaluated (NaN). */
static struct fp_client_round cr[3][2];
static struct fp_round rd[3];

static void make_rounds(void)
{
    for (int k = 0; k < 3; k++) {
        for (int j = 0; j < 2; j++)
            cr[k][j] = (struct fp_client_round){
                .client = (uint32_t)(10 * (j + 1) + k + 1),
                .train_loss = 1.0 + k + 0.25 * j,
                .uplink_bytes = 1000u * (uint64_t)(k + 1) + (uint64_t)j,
                .downlink_bytes = 500u,
                .examples = 60u + (uint32_t)j,
            };
        /* the first client's upload hash is known, the second's is not (NULL) */
        snprintf(cr[k][0].upload_sha256, sizeof cr[k][0].upload_sha256, "%064x", 0xab00 + k);
        cr[k][1].upload_sha256[0] = 0;
        rd[k] = (struct fp_round){
            .round = (uint32_t)k + 1,
            .train_loss = 2.0 - 0.5 * k,
            .test_loss = k == 1 ? NAN : 1.5 - 0.25 * k,
            .test_accuracy = k == 1 ? NAN : 0.5 + 0.1 * k,
            .uplink_bytes = cr[k][0].uplink_bytes + cr[k][1].uplink_bytes,
            .downlink_bytes = 1000,
            .participants = 2,
            .wall_ms = 12.5 * (k + 1),
            .clients = cr[k],
        };
    }
}

/* python3 -c 'import hashlib,struct;
 * print(hashlib.sha256(struct.pack("<4f",1.0,-2.5,0.0,3.25)).hexdigest())' */
static const float model[4] = {1.0f, -2.5f, 0.0f, 3.25f};
static const char model_hex[] = "685b7ddd99d5c6487e584654c8e84ceb0d9b47eea2d0eaa7cd4c1aed901ca064";

struct run_copy {
    int n;
    int64_t id[4];
    char name[4][32], algorithm[4][32], dataset[4][32], status[4][16], sha[4][65], started[4][40];
    int dataset_null[4], sha_null[4];
    uint32_t planned[4], done[4];
    double acc[4];
    uint64_t up[4];
    int stop_after; /* 0 = never */
};

static void cp(char *dst, size_t n, const char *src, int *was_null)
{
    if (was_null)
        *was_null = src == NULL;
    snprintf(dst, n, "%s", src ? src : "");
}

static int collect_run(void *u, const struct fp_run_info *r)
{
    struct run_copy *c = u;
    assert_true(c->n < 4);
    int i = c->n++;
    c->id[i] = r->id;
    cp(c->name[i], sizeof c->name[i], r->name, NULL);
    cp(c->algorithm[i], sizeof c->algorithm[i], r->algorithm, NULL);
    cp(c->dataset[i], sizeof c->dataset[i], r->dataset, &c->dataset_null[i]);
    cp(c->status[i], sizeof c->status[i], r->status, NULL);
    cp(c->sha[i], sizeof c->sha[i], r->model_sha256, &c->sha_null[i]);
    cp(c->started[i], sizeof c->started[i], r->started_at, NULL);
    c->planned[i] = r->rounds_planned;
    c->done[i] = r->rounds_done;
    c->acc[i] = r->final_accuracy;
    c->up[i] = r->uplink_bytes;
    return c->stop_after && c->n >= c->stop_after;
}

struct round_copy {
    int n;
    struct fp_round r[8];
};

static int collect_round(void *u, const struct fp_round *r)
{
    struct round_copy *c = u;
    assert_true(c->n < 8);
    assert_null(r->clients);
    c->r[c->n++] = *r;
    return 0;
}

/* One integer from a raw SQL query on its own connection. */
static int64_t q_int(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    assert_int_equal(sqlite3_finalize(st), SQLITE_OK);
    assert_int_equal(sqlite3_close(h), SQLITE_OK);
    return v;
}

static void q_text(const char *db, const char *sql, char *out, size_t n)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const unsigned char *t = sqlite3_column_text(st, 0);
    snprintf(out, n, "%s", t ? (const char *)t : "(null)");
    assert_int_equal(sqlite3_finalize(st), SQLITE_OK);
    assert_int_equal(sqlite3_close(h), SQLITE_OK);
}

static struct fp_store *open_ok(const char *path)
{
    struct fp_store *s = NULL;
    struct fp_error e = {0};
    int rc = fp_store_open(&s, path, &e);
    if (rc)
        fail_msg("fp_store_open: %s", e.msg);
    assert_non_null(s);
    return s;
}

static int64_t write_run_a(struct fp_store *s)
{
    struct fp_error e = {0};
    int64_t id = -1;
    make_rounds();
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id, &e), 0);
    for (int k = 0; k < 3; k++) {
        int rc = fp_store_commit_round(s, id, &rd[k], &e);
        if (rc)
            fail_msg("commit round %d: %s", k + 1, e.msg);
    }
    assert_int_equal(fp_store_finish_run(s, id, FP_RUN_COMPLETED, model, 4, 3, &e), 0);
    return id;
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */

static void test_full_run_round_trip(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    struct fp_error e = {0};
    int64_t id = write_run_a(s);
    assert_int_equal(id, 1);

    struct run_copy rc = {0};
    assert_int_equal(fp_store_list_runs(s, collect_run, &rc, &e), 0);
    assert_int_equal(rc.n, 1);
    assert_int_equal(rc.id[0], id);
    assert_string_equal(rc.name[0], "fedavg-a");
    assert_string_equal(rc.algorithm[0], "fedavg");
    assert_string_equal(rc.dataset[0], "mnist");
    assert_string_equal(rc.status[0], "completed");
    assert_string_equal(rc.sha[0], model_hex);
    assert_int_equal(rc.planned[0], 3);
    assert_int_equal(rc.done[0], 3);
    /* Last evaluated round is round 3 (round 2 had NaN). */
    assert_true(rc.acc[0] == 0.5 + 0.1 * 2);
    /* (1000+1001) + (2000+2001) + (3000+3001) = 12003 */
    assert_int_equal(rc.up[0], 12003);
    /* e.g. 2024-05-01T12:34:56.789Z */
    assert_int_equal(strlen(rc.started[0]), 24);
    assert_int_equal(rc.started[0][10], 'T');
    assert_int_equal(rc.started[0][23], 'Z');

    struct round_copy rr = {0};
    assert_int_equal(fp_store_list_rounds(s, id, collect_round, &rr, &e), 0);
    assert_int_equal(rr.n, 3);
    for (int k = 0; k < 3; k++) {
        const struct fp_round *g = &rr.r[k];
        assert_int_equal(g->round, k + 1);
        assert_true(g->train_loss == rd[k].train_loss);
        if (k == 1) {
            assert_true(isnan(g->test_loss));
            assert_true(isnan(g->test_accuracy));
        } else {
            assert_true(g->test_loss == rd[k].test_loss);
            assert_true(g->test_accuracy == rd[k].test_accuracy);
        }
        assert_int_equal(g->uplink_bytes, rd[k].uplink_bytes);
        assert_int_equal(g->downlink_bytes, 1000);
        assert_int_equal(g->participants, 2);
        assert_true(g->wall_ms == 12.5 * (k + 1));
    }
    assert_int_equal(fp_store_run_exists(s, id, &e), 0);

    /* The file itself, through another connection. */
    char txt[200];
    q_text(f->db, "PRAGMA journal_mode", txt, sizeof txt);
    assert_string_equal(txt, "wal");
    assert_int_equal(q_int(f->db, "PRAGMA user_version"), 6);
    /* meta_a records neither inputs nor BLAS: both NULL, not "" */
    assert_int_equal(q_int(f->db, "SELECT inputs IS NULL AND blas IS NULL FROM runs"), 1);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM client_rounds"), 6);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM client_rounds WHERE round = 2 AND "
                                  "client IN (12, 22)"),
                     2);
    assert_int_equal(q_int(f->db, "SELECT sum(uplink_bytes) FROM client_rounds"), 12003);
    assert_int_equal(q_int(f->db, "SELECT downlink_bytes FROM runs"), 3000);
    /* NaN was stored as NULL, not as a REAL. */
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM rounds WHERE test_loss IS NULL AND "
                                  "test_accuracy IS NULL"),
                     1);
    assert_int_equal(q_int(f->db, "SELECT round FROM rounds WHERE test_loss IS NULL"), 2);
    assert_true(q_int(f->db, "SELECT final_test_loss = 1.0 FROM runs"));
    /* The seed keeps all 64 bits. */
    assert_int_equal((uint64_t)q_int(f->db, "SELECT seed FROM runs"), meta_a.seed);
    assert_int_equal(q_int(f->db, "SELECT d * 1000 + clients * 10 + sample FROM runs"), 5002);
    assert_int_equal(q_int(f->db, "SELECT threads FROM runs"), 2);
    q_text(f->db, "SELECT scenario FROM runs", txt, sizeof txt);
    assert_string_equal(txt, meta_a.scenario);
    assert_int_equal(q_int(f->db, "SELECT finished_at IS NOT NULL FROM runs"), 1);
    /* Checkpoint: the blob is the model's bytes, its hash matches the run. */
    assert_int_equal(q_int(f->db, "SELECT length(data) FROM checkpoints WHERE run_id = 1 AND "
                                  "round = 3 AND kind = 'model'"),
                     16);
    q_text(f->db, "SELECT hex(data) FROM checkpoints", txt, sizeof txt);
    /* 1.0f = 0x3F800000, -2.5f = 0xC0200000, 0, 3.25f = 0x40500000, little-endian. */
    assert_string_equal(txt, "0000803F000020C00000000000005040");
    q_text(f->db, "SELECT sha256 FROM checkpoints", txt, sizeof txt);
    assert_string_equal(txt, model_hex);
    /* Same hash computed by SQLite's own view of the blob is not available
     * without extensions; the python-derived constant above stands in. */
    fp_store_close(s);

    /* Reopening keeps everything and does not recreate the schema. */
    s = open_ok(f->db);
    memset(&rc, 0, sizeof rc);
    assert_int_equal(fp_store_list_runs(s, collect_run, &rc, &e), 0);
    assert_int_equal(rc.n, 1);
    assert_string_equal(rc.sha[0], model_hex);
    fp_store_close(s);
}

static void test_commit_is_atomic(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    struct fp_error e = {0};
    int64_t id = -1;
    make_rounds();
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id, &e), 0);
    assert_int_equal(fp_store_commit_round(s, id, &rd[0], &e), 0);

    /* Round 2 lists client 12 twice: the second client_rounds insert hits the
     * primary key after the rounds row and the run update went in. */
    struct fp_client_round dup[2] = {cr[1][0], cr[1][0]};
    struct fp_round bad = rd[1];
    bad.clients = dup;
    memset(&e, 0, sizeof e);
    assert_int_equal(fp_store_commit_round(s, id, &bad, &e), FP_ESTORE);
    assert_int_equal(e.code, FP_ESTORE);
    assert_non_null(strstr(e.msg, f->db));
    assert_non_null(strstr(e.msg, "UNIQUE constraint failed"));

    assert_int_equal(q_int(f->db, "SELECT count(*) FROM rounds WHERE round = 2"), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM client_rounds WHERE round = 2"), 0);
    assert_int_equal(q_int(f->db, "SELECT rounds_done FROM runs"), 1);
    assert_int_equal(q_int(f->db, "SELECT uplink_bytes FROM runs"), 2001);

    /* The handle is usable afterwards (no transaction left open). */
    assert_int_equal(fp_store_commit_round(s, id, &rd[1], &e), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM client_rounds WHERE round = 2"), 2);
    assert_int_equal(q_int(f->db, "SELECT rounds_done FROM runs"), 2);

    /* Committing the same round again violates rounds' primary key. */
    assert_int_equal(fp_store_commit_round(s, id, &rd[1], &e), FP_ESTORE);
    assert_int_equal(q_int(f->db, "SELECT uplink_bytes FROM runs"), 2001 + 4001);
    fp_store_close(s);
}

struct reenter {
    struct fp_store *s;
    int calls, inner_rc;
};

static int reenter_cb(void *u, const struct fp_run_info *r)
{
    struct reenter *x = u;
    struct run_copy rc = {0};
    struct fp_error e = {0};
    (void)r;
    x->calls++;
    x->inner_rc = fp_store_list_runs(x->s, collect_run, &rc, &e);
    return FP_EINTR;
}

static void test_two_runs(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    struct fp_error e = {0};
    int64_t a = write_run_a(s);

    struct fp_run_meta mb = meta_a;
    mb.name = "topk-b";
    mb.algorithm = "fedavg-topk";
    mb.dataset = NULL;
    mb.seed = 7;
    mb.rounds = 10;
    int64_t b = -1;
    assert_int_equal(fp_store_begin_run(s, &mb, &b, &e), 0);
    assert_int_equal(b, a + 1);
    struct fp_client_round c = {
        .client = 3, .train_loss = 0.75, .uplink_bytes = 40, .downlink_bytes = 80, .examples = 5};
    struct fp_round r = {.round = 1,
                         .train_loss = 0.75,
                         .test_loss = NAN,
                         .test_accuracy = NAN,
                         .uplink_bytes = 40,
                         .downlink_bytes = 80,
                         .participants = 1,
                         .wall_ms = 1.0,
                         .clients = &c};
    assert_int_equal(fp_store_commit_round(s, b, &r, &e), 0);
    assert_int_equal(fp_store_finish_run(s, b, FP_RUN_INTERRUPTED, NULL, 0, 1, &e), 0);

    struct run_copy rc = {0};
    assert_int_equal(fp_store_list_runs(s, collect_run, &rc, &e), 0);
    assert_int_equal(rc.n, 2);
    assert_int_equal(rc.id[0], a);
    assert_int_equal(rc.id[1], b);
    assert_string_equal(rc.name[1], "topk-b");
    assert_string_equal(rc.algorithm[1], "fedavg-topk");
    assert_true(rc.dataset_null[1]);
    assert_string_equal(rc.status[1], "interrupted");
    assert_true(rc.sha_null[1]); /* finished without a model */
    assert_int_equal(rc.planned[1], 10);
    assert_int_equal(rc.done[1], 1);
    assert_true(isnan(rc.acc[1])); /* never evaluated -> NULL -> NaN */
    assert_int_equal(rc.up[1], 40);
    assert_int_equal(rc.up[0], 12003); /* run a untouched */

    /* Each run sees only its own rounds. */
    struct round_copy ra = {0}, rb = {0};
    assert_int_equal(fp_store_list_rounds(s, a, collect_round, &ra, &e), 0);
    assert_int_equal(fp_store_list_rounds(s, b, collect_round, &rb, &e), 0);
    assert_int_equal(ra.n, 3);
    assert_int_equal(rb.n, 1);
    assert_int_equal(rb.r[0].uplink_bytes, 40);
    assert_int_equal(rb.r[0].participants, 1);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM checkpoints"), 1);
    assert_int_equal(q_int(f->db, "SELECT seed FROM runs WHERE id = 2"), 7);

    /* A callback returning nonzero stops the listing early. */
    memset(&rc, 0, sizeof rc);
    rc.stop_after = 1;
    assert_int_equal(fp_store_list_runs(s, collect_run, &rc, &e), 0);
    assert_int_equal(rc.n, 1);

    /* A negative callback result is the listing's error; re-entering the
     * same listing from its callback is refused, and the handle still works. */
    struct reenter rn = {.s = s};
    assert_int_equal(fp_store_list_runs(s, reenter_cb, &rn, &e), FP_EINTR);
    assert_int_equal(rn.calls, 1);
    assert_int_equal(rn.inner_rc, FP_EINVAL);
    memset(&rc, 0, sizeof rc);
    assert_int_equal(fp_store_list_runs(s, collect_run, &rc, &e), 0);
    assert_int_equal(rc.n, 2);
    fp_store_close(s);
}

static void test_not_a_database(void **state)
{
    struct fx *f = *state;
    char p[400];
    snprintf(p, sizeof p, "%s/notadb.txt", f->dir);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    for (int i = 0; i < 64; i++)
        fputs("this is a text file, not an SQLite database\n", fp);
    assert_int_equal(fclose(fp), 0);

    struct fp_store *s = (struct fp_store *)&s; /* must be reset to NULL */
    struct fp_error e = {0};
    assert_int_equal(fp_store_open(&s, p, &e), FP_ESTORE);
    assert_null(s);
    assert_int_equal(e.code, FP_ESTORE);
    assert_non_null(strstr(e.msg, p));
    assert_non_null(strstr(e.msg, "not an SQLite database"));
}

static void test_newer_schema_refused(void **state)
{
    struct fx *f = *state;
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(f->db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "PRAGMA user_version = 7", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(h), SQLITE_OK);

    struct fp_store *s = NULL;
    struct fp_error e = {0};
    assert_int_equal(fp_store_open(&s, f->db, &e), FP_ESTORE);
    assert_null(s);
    assert_non_null(strstr(e.msg, f->db));
    assert_non_null(strstr(e.msg, "schema version 7"));
}

struct client_rows {
    int n;
    uint32_t round[8];
    struct fp_client_round c[8];
};

static int collect_client(void *u, uint32_t round, const struct fp_client_round *c)
{
    struct client_rows *r = u;
    if (r->n == 8)
        return 1;
    r->round[r->n] = round;
    r->c[r->n++] = *c;
    return 0;
}

/* Per-client rows come back by round, then client, exactly as written; a
 * client filter keeps that client's. */
static void test_list_client_rounds(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    struct fp_error e = {0};
    int64_t id = write_run_a(s);
    struct client_rows all = {0}, one = {0};
    assert_int_equal(fp_store_list_client_rounds(s, id, -1, collect_client, &all, &e), 0);
    assert_int_equal(all.n, 6);
    for (int i = 0; i < 6; i++) {
        const struct fp_client_round *w = &cr[i / 2][i % 2];
        assert_int_equal(all.round[i], i / 2 + 1);
        assert_int_equal(all.c[i].client, w->client);
        assert_true(all.c[i].train_loss == w->train_loss);
        assert_int_equal(all.c[i].uplink_bytes, w->uplink_bytes);
        assert_int_equal(all.c[i].downlink_bytes, w->downlink_bytes);
        assert_int_equal(all.c[i].examples, w->examples);
    }
    assert_int_equal(fp_store_list_client_rounds(s, id, 22, collect_client, &one, &e), 0);
    assert_int_equal(one.n, 1);
    assert_int_equal(one.round[0], 2);
    assert_int_equal(one.c[0].uplink_bytes, 2001);
    assert_int_equal(fp_store_list_client_rounds(s, id + 7, -1, collect_client, &one, &e),
                     FP_ENOTFOUND);
    fp_store_close(s);
}

/* What schema version 3 added to runs, taken away again: a file as
 * versions 1 and 2 wrote it. */
/* What schema version 6 added (the failed attempts' tables, runs.error),
 * taken away: a version 5 file. */
#define V6_DROPPED                                                                                 \
    "DROP TABLE attempt_clients; DROP TABLE attempts; ALTER TABLE runs DROP COLUMN error;"
/* What schema version 5 added to client_rounds, taken away: a version 4 file. */
#define V5_COLUMNS_DROPPED                                                                         \
    V6_DROPPED                                                                                     \
    "ALTER TABLE client_rounds DROP COLUMN status; ALTER TABLE client_rounds DROP COLUMN reason;"
#define V4_COLUMN_DROPPED "ALTER TABLE client_rounds DROP COLUMN upload_sha256;" V5_COLUMNS_DROPPED
#define V3_COLUMNS_DROPPED                                                                         \
    "ALTER TABLE runs DROP COLUMN inputs; ALTER TABLE runs DROP COLUMN blas;" V4_COLUMN_DROPPED

static const char inputs_a[] =
    "0000000000000000000000000000000000000000000000000000000000000001  /data/train.gz\n"
    "00000000000000000000000000000000000000000000000000000000000000ff  /w/init.f32\n";

/* Schema version 3: a run's inputs and BLAS go in with the run, and
 * --resume reads the inputs back; NULL and "" stay apart (not recorded /
 * recorded: no files). */
static void test_inputs_and_blas(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    struct fp_error e = {0};
    struct fp_run_meta m = meta_a;
    int64_t id1 = 0, id2 = 0, id3 = 0;
    m.inputs = inputs_a;
    m.blas = "OpenBLAS 0.3.21 SkylakeX";
    assert_int_equal(fp_store_begin_run(s, &m, &id1, &e), 0);
    m.inputs = "";
    m.blas = NULL;
    assert_int_equal(fp_store_begin_run(s, &m, &id2, &e), 0);
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id3, &e), 0);
    char txt[400];
    q_text(f->db, "SELECT inputs FROM runs WHERE id = 1", txt, sizeof txt);
    assert_string_equal(txt, inputs_a);
    q_text(f->db, "SELECT blas FROM runs WHERE id = 1", txt, sizeof txt);
    assert_string_equal(txt, "OpenBLAS 0.3.21 SkylakeX");
    assert_int_equal(q_int(f->db, "SELECT inputs = '' AND blas IS NULL FROM runs WHERE id = 2"), 1);
    struct fp_resume rs;
    assert_int_equal(fp_store_load_resume(s, id1, &rs, &e), 0);
    assert_string_equal(rs.inputs, inputs_a);
    fp_store_resume_free(&rs);
    assert_null(rs.inputs);
    assert_int_equal(fp_store_load_resume(s, id2, &rs, &e), 0);
    assert_non_null(rs.inputs);
    assert_string_equal(rs.inputs, "");
    fp_store_resume_free(&rs);
    assert_int_equal(fp_store_load_resume(s, id3, &rs, &e), 0);
    assert_null(rs.inputs);
    fp_store_resume_free(&rs);
    fp_store_close(s);
}

/* A version 2 store is upgraded in place when opened: runs gains inputs and
 * blas (NULL for the runs it had), everything else stays readable, and new
 * runs record both. */
static void test_schema_2_upgraded(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    struct fp_error e = {0};
    int64_t id = write_run_a(s), id2 = 0;
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id2, &e), 0);
    uint8_t blob[300];
    for (int i = 0; i < 300; i++)
        blob[i] = (uint8_t)(i * 5);
    fp_store_set_part_bytes(s, 128);
    assert_int_equal(fp_store_put_state(s, id2, 2, blob, sizeof blob, &e), 0);
    fp_store_close(s);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(f->db, &h), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(h, V3_COLUMNS_DROPPED "PRAGMA user_version = 2", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(h), SQLITE_OK);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM pragma_table_info('runs')"
                                  " WHERE name IN ('inputs', 'blas')"),
                     0);

    s = open_ok(f->db);
    assert_int_equal(q_int(f->db, "PRAGMA user_version"), 6);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM pragma_table_info('runs')"
                                  " WHERE name IN ('inputs', 'blas')"),
                     2);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM pragma_table_info('client_rounds')"
                                  " WHERE name = 'upload_sha256'"),
                     1);
    assert_int_equal(
        q_int(f->db, "SELECT count(*) FROM runs WHERE inputs IS NULL AND blas IS NULL"), 2);
    struct run_copy rc = {0};
    assert_int_equal(fp_store_list_runs(s, collect_run, &rc, &e), 0);
    assert_int_equal(rc.n, 2);
    assert_string_equal(rc.sha[0], model_hex);
    struct fp_resume rs;
    assert_int_equal(fp_store_load_resume(s, id2, &rs, &e), 0);
    assert_null(rs.inputs);
    assert_int_equal(rs.round, 2);
    assert_int_equal(rs.state_len, sizeof blob);
    assert_memory_equal(rs.state, blob, sizeof blob);
    fp_store_resume_free(&rs);
    struct fp_run_meta m = meta_a;
    m.inputs = inputs_a;
    m.blas = "OpenBLAS";
    int64_t id3 = 0;
    assert_int_equal(fp_store_begin_run(s, &m, &id3, &e), 0);
    assert_int_equal(fp_store_load_resume(s, id3, &rs, &e), 0);
    assert_string_equal(rs.inputs, inputs_a);
    fp_store_resume_free(&rs);
    fp_store_close(s);
    (void)id;
}

struct sha_copy {
    int n;
    char sha[8][65];
};

static int collect_sha(void *u, uint32_t round, const struct fp_client_round *c)
{
    (void)round;
    struct sha_copy *x = u;
    assert_true(x->n < 8);
    memcpy(x->sha[x->n++], c->upload_sha256, 65);
    return 0;
}

/* Each client's upload hash is stored with its round (NULL when unknown)
 * and read back by the listing, in round then client order. */
static void test_upload_sha256_stored(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    struct fp_error e = {0};
    int64_t id = write_run_a(s);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM client_rounds WHERE upload_sha256 IS NULL"),
                     3);
    char txt[100];
    q_text(f->db, "SELECT upload_sha256 FROM client_rounds WHERE round = 2 AND client = 12", txt,
           sizeof txt);
    assert_string_equal(txt, "000000000000000000000000000000000000000000000000000000000000ab01");
    struct sha_copy x = {0};
    assert_int_equal(fp_store_list_client_rounds(s, id, -1, collect_sha, &x, &e), 0);
    assert_int_equal(x.n, 6);
    assert_string_equal(x.sha[0],
                        "000000000000000000000000000000000000000000000000000000000000ab00");
    assert_string_equal(x.sha[1], "");
    assert_string_equal(x.sha[4],
                        "000000000000000000000000000000000000000000000000000000000000ab02");
    fp_store_close(s);
}

/* A version 3 store (no upload_sha256) is read as it is by a reader (the
 * hashes unknown) and upgraded in place by a writer: its rows get NULL,
 * new rounds store their hashes. */
static void test_schema_3_upgraded(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    struct fp_error e = {0};
    int64_t id = write_run_a(s);
    fp_store_close(s);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(f->db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, V4_COLUMN_DROPPED "PRAGMA user_version = 3", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_close(h), SQLITE_OK);

    s = NULL;
    assert_int_equal(fp_store_open_readonly(&s, f->db, &e), 0);
    struct sha_copy x = {0};
    assert_int_equal(fp_store_list_client_rounds(s, id, -1, collect_sha, &x, &e), 0);
    assert_int_equal(x.n, 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(x.sha[i], "");
    fp_store_close(s);
    assert_int_equal(q_int(f->db, "PRAGMA user_version"), 3);

    s = open_ok(f->db);
    assert_int_equal(q_int(f->db, "PRAGMA user_version"), 6);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM client_rounds WHERE upload_sha256 IS NULL"),
                     6);
    int64_t id2 = write_run_a(s);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM client_rounds WHERE upload_sha256 IS NOT "
                                  "NULL"),
                     3);
    struct sha_copy y = {0};
    assert_int_equal(fp_store_list_client_rounds(s, id2, -1, collect_sha, &y, &e), 0);
    assert_string_equal(y.sha[2],
                        "000000000000000000000000000000000000000000000000000000000000ab01");
    fp_store_close(s);
}

/* Schema 5: a round stores every sampled client, the included ones and
 * the others with their status and reason, in one transaction; a version 4
 * file reads back as all 'included' and is upgraded in place. */
static void test_schema_4_upgraded_and_statuses(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    struct fp_error e = {0};
    int64_t id = write_run_a(s);
    fp_store_close(s);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(f->db, &h), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(h, V5_COLUMNS_DROPPED "PRAGMA user_version = 4", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(h), SQLITE_OK);

    s = NULL;
    assert_int_equal(fp_store_open_readonly(&s, f->db, &e), 0);
    struct client_rows old = {0};
    assert_int_equal(fp_store_list_client_rounds(s, id, -1, collect_client, &old, &e), 0);
    assert_int_equal(old.n, 6);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(old.c[i].status, FP_CLIENT_INCLUDED);
        assert_string_equal(old.c[i].reason, "");
    }
    fp_store_close(s);
    assert_int_equal(q_int(f->db, "PRAGMA user_version"), 4);

    s = open_ok(f->db);
    assert_int_equal(q_int(f->db, "PRAGMA user_version"), 6);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM client_rounds WHERE status = 'included' "
                                  "AND reason IS NULL"),
                     6);
    /* a partial round: client 3 included; 1 late, 5 absent, 8 refused */
    int64_t id2 = -1;
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id2, &e), 0);
    struct fp_client_round in = {
        .client = 3, .train_loss = 0.5, .uplink_bytes = 40, .downlink_bytes = 40, .examples = 7};
    struct fp_client_round others[3] = {
        {.client = 1, .train_loss = NAN, .status = FP_CLIENT_LATE, .reason = "deadline"},
        {.client = 5, .train_loss = NAN, .status = FP_CLIENT_ABSENT, .reason = "not connected"},
        {.client = 8, .train_loss = NAN, .status = FP_CLIENT_REFUSED, .reason = "wrong size"},
    };
    struct fp_round r = {.round = 1,
                         .train_loss = 0.5,
                         .test_loss = NAN,
                         .test_accuracy = NAN,
                         .uplink_bytes = 40,
                         .downlink_bytes = 40,
                         .participants = 1,
                         .clients = &in,
                         .others = others,
                         .n_others = 3};
    assert_int_equal(fp_store_commit_round(s, id2, &r, &e), 0);
    struct client_rows got = {0};
    assert_int_equal(fp_store_list_client_rounds(s, id2, -1, collect_client, &got, &e), 0);
    assert_int_equal(got.n, 4);
    const uint32_t want_client[4] = {1, 3, 5, 8};
    const enum fp_client_status want_status[4] = {FP_CLIENT_LATE, FP_CLIENT_INCLUDED,
                                                  FP_CLIENT_ABSENT, FP_CLIENT_REFUSED};
    const char *want_reason[4] = {"deadline", "", "not connected", "wrong size"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(got.c[i].client, want_client[i]);
        assert_int_equal(got.c[i].status, want_status[i]);
        assert_string_equal(got.c[i].reason, want_reason[i]);
    }
    assert_true(isnan(got.c[0].train_loss));
    assert_int_equal(got.c[0].uplink_bytes, 0);
    /* participants counts the included ones only */
    assert_int_equal(q_int(f->db, "SELECT participants FROM rounds WHERE run_id = 2"), 1);
    fp_store_close(s);
}

/* fp_store_last_included: per client, the last round its upload was
 * included in, whatever the rounds after said (late, absent, refused);
 * 0 for a client never included; FP_ENOTFOUND for a run that is not. */
static void test_last_included(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    struct fp_error e = {0};
    int64_t id = -1;
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id, &e), 0);
    /* round 1: 1 and 3 in, 5 late; round 2: 5 in, 1 absent; round 3: 1 in,
     * 3 refused */
    const uint32_t in_client[3][2] = {{1, 3}, {5, 0}, {1, 0}};
    const uint32_t n_in[3] = {2, 1, 1};
    const uint32_t out_client[3] = {5, 1, 3};
    const enum fp_client_status out_status[3] = {FP_CLIENT_LATE, FP_CLIENT_ABSENT,
                                                 FP_CLIENT_REFUSED};
    for (uint32_t k = 0; k < 3; k++) {
        struct fp_client_round in[2] = {{.client = in_client[k][0], .train_loss = 1},
                                        {.client = in_client[k][1], .train_loss = 1}};
        struct fp_client_round other = {
            .client = out_client[k], .train_loss = NAN, .status = out_status[k], .reason = "x"};
        struct fp_round r = {.round = k + 1,
                             .train_loss = 1,
                             .test_loss = NAN,
                             .test_accuracy = NAN,
                             .participants = n_in[k],
                             .clients = in,
                             .others = &other,
                             .n_others = 1};
        assert_int_equal(fp_store_commit_round(s, id, &r, &e), 0);
    }
    uint32_t last[10];
    memset(last, 0xff, sizeof last);
    assert_int_equal(fp_store_last_included(s, id, 10, last, &e), 0);
    const uint32_t want[10] = {0, 3, 0, 1, 0, 2, 0, 0, 0, 0};
    for (int i = 0; i < 10; i++)
        assert_int_equal(last[i], want[i]);
    /* a smaller n: the clients past it are not written */
    uint32_t two[3] = {7, 7, 99};
    assert_int_equal(fp_store_last_included(s, id, 2, two, &e), 0);
    assert_int_equal(two[0], 0);
    assert_int_equal(two[1], 3);
    assert_int_equal(two[2], 99);
    assert_int_equal(fp_store_last_included(s, id + 1, 10, last, &e), FP_ENOTFOUND);
    fp_store_close(s);
}

/* The upgrade is one transaction with user_version: when its second ALTER
 * fails (here: the file already has a blas column), the first one is rolled
 * back too and the file stays a version 2 store, refused by name. */
static void test_schema_upgrade_is_atomic(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    fp_store_close(s);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(f->db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "ALTER TABLE runs DROP COLUMN inputs; PRAGMA user_version = 2",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_close(h), SQLITE_OK);
    struct fp_error e = {0};
    s = NULL;
    assert_int_equal(fp_store_open(&s, f->db, &e), FP_ESTORE);
    assert_null(s);
    assert_non_null(strstr(e.msg, "upgrading the schema from version 2 failed"));
    assert_non_null(strstr(e.msg, f->db));
    assert_int_equal(q_int(f->db, "PRAGMA user_version"), 2);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM pragma_table_info('runs')"
                                  " WHERE name = 'inputs'"),
                     0);
}

/* A version 1 store (no checkpoint_parts) is upgraded in place when opened,
 * keeping its runs and its one-value state checkpoints readable. */
static void test_schema_1_upgraded(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = NULL;
    struct fp_error e = {0};
    assert_int_equal(fp_store_open(&s, f->db, &e), 0);
    int64_t id = 0;
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id, &e), 0);
    uint8_t blob[300];
    for (int i = 0; i < 300; i++)
        blob[i] = (uint8_t)(i * 7);
    assert_int_equal(fp_store_put_state(s, id, 2, blob, sizeof blob, &e), 0);
    fp_store_close(s);
    /* Make it what version 1 wrote */
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(f->db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h,
                                  V3_COLUMNS_DROPPED "DROP TABLE checkpoint_parts;"
                                                     "PRAGMA user_version = 1",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_close(h), SQLITE_OK);

    s = NULL;
    assert_int_equal(fp_store_open(&s, f->db, &e), 0);
    assert_int_equal(q_int(f->db, "PRAGMA user_version"), 6);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM checkpoint_parts"), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM pragma_table_info('client_rounds')"
                                  " WHERE name = 'upload_sha256'"),
                     1);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM pragma_table_info('runs')"
                                  " WHERE name IN ('inputs', 'blas')"),
                     2);
    struct fp_resume rs;
    assert_int_equal(fp_store_load_resume(s, id, &rs, &e), 0);
    assert_null(rs.inputs); /* recorded none: --resume warns it cannot check them */
    assert_int_equal(rs.round, 2);
    assert_int_equal(rs.state_len, sizeof blob);
    assert_memory_equal(rs.state, blob, sizeof blob);
    fp_store_resume_free(&rs);
    /* and it takes states in parts from now on */
    fp_store_set_part_bytes(s, 128);
    assert_int_equal(fp_store_put_state(s, id, 3, blob, sizeof blob, &e), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM checkpoint_parts"), 2);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM checkpoints WHERE kind = 'state'"), 1);
    assert_int_equal(fp_store_load_resume(s, id, &rs, &e), 0);
    assert_int_equal(rs.round, 3);
    assert_int_equal(rs.state_len, sizeof blob);
    assert_memory_equal(rs.state, blob, sizeof blob);
    fp_store_resume_free(&rs);
    /* a damaged part is caught by the SHA-256, not handed to the algorithm */
    sqlite3 *h2 = NULL;
    assert_int_equal(sqlite3_open(f->db, &h2), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h2,
                                  "UPDATE checkpoint_parts SET data = zeroblob(length(data))"
                                  " WHERE part = 2",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_close(h2), SQLITE_OK);
    assert_int_equal(fp_store_load_resume(s, id, &rs, &e), FP_ESTORE);
    assert_non_null(strstr(e.msg, "does not match its SHA-256"));
    assert_null(rs.state);
    /* the same round again replaces its parts */
    fp_store_set_part_bytes(s, 100);
    blob[299] ^= 1;
    assert_int_equal(fp_store_put_state(s, id, 3, blob, sizeof blob, &e), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM checkpoint_parts"), 2);
    assert_int_equal(fp_store_load_resume(s, id, &rs, &e), 0);
    assert_memory_equal(rs.state, blob, sizeof blob);
    fp_store_resume_free(&rs);
    fp_store_close(s);
}

static void test_foreign_database_refused(void **state)
{
    struct fx *f = *state;
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(f->db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(h), SQLITE_OK);

    struct fp_store *s = NULL;
    struct fp_error e = {0};
    assert_int_equal(fp_store_open(&s, f->db, &e), FP_ESTORE);
    assert_non_null(strstr(e.msg, f->db));
    /* Nothing was added to someone else's database. */
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM sqlite_master"), 1);
}

static void test_missing_run(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    struct fp_error e = {0};
    make_rounds();

    assert_int_equal(fp_store_run_exists(s, 42, &e), FP_ENOTFOUND);
    assert_int_equal(e.code, FP_ENOTFOUND);
    assert_non_null(strstr(e.msg, "42"));
    assert_int_equal(fp_store_commit_round(s, 42, &rd[0], &e), FP_ENOTFOUND);
    assert_int_equal(fp_store_finish_run(s, 42, FP_RUN_FAILED, model, 4, 0, &e), FP_ENOTFOUND);
    struct round_copy rr = {0};
    assert_int_equal(fp_store_list_rounds(s, 42, collect_round, &rr, &e), FP_ENOTFOUND);
    assert_int_equal(rr.n, 0);
    /* The failed commit and finish left nothing behind. */
    assert_int_equal(q_int(f->db, "SELECT (SELECT count(*) FROM rounds) + (SELECT count(*) FROM "
                                  "client_rounds) + (SELECT count(*) FROM checkpoints)"),
                     0);

    /* Bad arguments are EINVAL, not SQL errors. */
    int64_t id = -1;
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id, &e), 0);
    struct fp_round r = rd[0];
    r.clients = NULL;
    assert_int_equal(fp_store_commit_round(s, id, &r, &e), FP_EINVAL);
    r = rd[0];
    r.round = 0;
    assert_int_equal(fp_store_commit_round(s, id, &r, &e), FP_EINVAL);
    assert_int_equal(fp_store_finish_run(s, id, (enum fp_run_status)9, NULL, 0, 0, &e), FP_EINVAL);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM rounds"), 0);
    fp_store_close(s);
}

/* A writer in another process holds the write lock (an open BEGIN IMMEDIATE
 * with an insert); meanwhile a read-only connection reads the last committed
 * state without waiting, and fp_store_open + list_runs work too. The writer
 * is the forked child, and the parent has no connection open at fork time:
 * SQLite connections must not cross a fork. */
static void test_reader_during_write(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    struct fp_error e = {0};
    write_run_a(s);
    fp_store_close(s);

    int locked[2], release[2];
    assert_int_equal(pipe(locked), 0);
    assert_int_equal(pipe(release), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sqlite3 *w = NULL;
        char c = 0;
        int ok = sqlite3_open(f->db, &w) == SQLITE_OK &&
                 sqlite3_exec(w,
                              "BEGIN IMMEDIATE; INSERT INTO runs(name, algorithm, scenario, seed, "
                              "rounds_planned, started_at) VALUES('x', 'y', '', 0, 1, "
                              "'2024-01-01T00:00:00.000Z')",
                              NULL, NULL, NULL) == SQLITE_OK;
        c = ok ? 'L' : 'E';
        ok = write(locked[1], &c, 1) == 1 && ok;
        ok = read(release[0], &c, 1) == 1 && ok;
        ok = sqlite3_exec(w, "COMMIT", NULL, NULL, NULL) == SQLITE_OK && ok;
        ok = sqlite3_close(w) == SQLITE_OK && ok;
        _exit(ok ? 0 : 1);
    }
    char c = 0;
    assert_int_equal(read(locked[0], &c, 1), 1);
    assert_int_equal(c, 'L');

    sqlite3 *r = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(f->db, &r, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_busy_timeout(r, 0), SQLITE_OK); /* must not need to wait */
    assert_int_equal(sqlite3_prepare_v2(r, "SELECT count(*) FROM runs", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 1); /* the uncommitted run is invisible */
    assert_int_equal(sqlite3_finalize(st), SQLITE_OK);
    assert_int_equal(sqlite3_close(r), SQLITE_OK);

    /* Opening the store (schema already there) does not need the write lock. */
    s = open_ok(f->db);
    struct run_copy rc = {0};
    assert_int_equal(fp_store_list_runs(s, collect_run, &rc, &e), 0);
    assert_int_equal(rc.n, 1);

    c = 'C';
    assert_int_equal(write(release[1], &c, 1), 1);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(locked[0]);
    close(locked[1]);
    close(release[0]);
    close(release[1]);

    memset(&rc, 0, sizeof rc);
    assert_int_equal(fp_store_list_runs(s, collect_run, &rc, &e), 0);
    assert_int_equal(rc.n, 2);
    assert_string_equal(rc.status[1], "running");
    fp_store_close(s);
}

/* A round with a loss but no accuracy (the quadratic) still counts as
 * evaluated: runs.final_test_loss follows it, final_test_accuracy stays NULL. */
static void test_loss_only_rounds(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    struct fp_error e = {0};
    int64_t id;
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id, &e), 0);
    struct fp_client_round c = {.client = 0, .train_loss = 1, .uplink_bytes = 4};
    struct fp_round r = {.round = 1,
                         .train_loss = 1,
                         .test_loss = 2.5,
                         .test_accuracy = NAN,
                         .uplink_bytes = 4,
                         .participants = 1,
                         .clients = &c};
    assert_int_equal(fp_store_commit_round(s, id, &r, &e), 0);
    r.round = 2, r.test_loss = NAN; /* not evaluated: keeps round 1's value */
    assert_int_equal(fp_store_commit_round(s, id, &r, &e), 0);
    fp_store_close(s);
    assert_true(q_int(f->db, "SELECT final_test_loss = 2.5 FROM runs"));
    assert_int_equal(q_int(f->db, "SELECT final_test_accuracy IS NULL FROM runs"), 1);
}

/* Resume support: state checkpoints (only the newest kept), rewind (later
 * rounds, their clients and checkpoints gone; totals recomputed), and a
 * completed run dropping its state. */
static void test_state_and_rewind(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    struct fp_error e = {0};
    int64_t id;
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id, &e), 0);
    const char blob3[] = "state-after-3", blob4[] = "state-after-4";
    for (uint32_t k = 1; k <= 5; k++) {
        struct fp_client_round c = {.client = k, .train_loss = 1, .uplink_bytes = 10 * k};
        struct fp_round r = {.round = k,
                             .train_loss = 1,
                             .test_loss = k,
                             .test_accuracy = 0.1 * k,
                             .uplink_bytes = 10 * k,
                             .downlink_bytes = 100,
                             .participants = 1,
                             .clients = &c};
        const char *b = k == 3 ? blob3 : k == 4 ? blob4 : NULL;
        assert_int_equal(fp_store_commit_round_state(s, id, &r, b, b ? strlen(b) : 0, &e), 0);
    }
    /* only the newest state is kept */
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM checkpoints WHERE kind = 'state'"), 1);
    struct fp_resume rs;
    assert_int_equal(fp_store_load_resume(s, id, &rs, &e), 0);
    assert_int_equal(rs.round, 4);
    assert_int_equal(rs.state_len, strlen(blob4));
    assert_memory_equal(rs.state, blob4, rs.state_len);
    assert_string_equal(rs.status, "running");
    assert_string_equal(rs.scenario, meta_a.scenario);
    fp_store_resume_free(&rs);

    /* an explicit state after round 3 (as a stop between rounds writes it),
     * then rewind to it: rounds 4 and 5 go, with their client rows */
    assert_int_equal(fp_store_put_state(s, id, 3, blob3, strlen(blob3), &e), 0);
    assert_int_equal(fp_store_finish_run(s, id, FP_RUN_INTERRUPTED, model, 4, 5, &e), 0);
    assert_int_equal(fp_store_rewind(s, id, 3, 7, &e), 0);
    assert_int_equal(q_int(f->db, "SELECT threads FROM runs"), 7); /* the resuming process's */
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM rounds"), 3);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM client_rounds"), 3);
    assert_int_equal(q_int(f->db, "SELECT rounds_done FROM runs"), 3);
    assert_int_equal(q_int(f->db, "SELECT uplink_bytes FROM runs"), 10 + 20 + 30);
    assert_int_equal(q_int(f->db, "SELECT downlink_bytes FROM runs"), 300);
    assert_true(q_int(f->db, "SELECT final_test_loss = 3.0 FROM runs"));
    assert_int_equal(q_int(f->db, "SELECT status = 'running' AND model_sha256 IS NULL AND "
                                  "finished_at IS NULL FROM runs"),
                     1);
    /* the model checkpoint of the interrupted end and the state after 4 are gone */
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM checkpoints"), 1);
    assert_int_equal(q_int(f->db, "SELECT round FROM checkpoints WHERE kind = 'state'"), 3);

    /* completing drops the state */
    assert_int_equal(fp_store_finish_run(s, id, FP_RUN_COMPLETED, model, 4, 3, &e), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM checkpoints WHERE kind = 'state'"), 0);
    assert_int_equal(fp_store_load_resume(s, id, &rs, &e), 0);
    assert_null(rs.state);
    fp_store_resume_free(&rs);
    fp_store_close(s);
}

/* ------------------------------------------------------------------------ */
/* Hardening: output paths, store identity, run locks, final statuses,      */
/* busy retry, inspect-before-modify, read-only readers                     */

static void path_in(const struct fx *f, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", f->dir, name);
}

/* Every name of the store and its companion files is refused as an
 * output, existing or not, through a symlink, a hard link or another
 * spelling of the path; other names pass. */
static void test_output_paths(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    struct fp_error e = {0};
    write_run_a(s); /* the -wal and -shm files exist while s is open */
    char p[600], link_[600], hard[600];
    assert_int_equal(fp_store_check_output(f->db, f->db, &e), FP_EINVAL);
    assert_non_null(strstr(e.msg, "is the run store"));
    snprintf(p, sizeof p, "%s-wal", f->db);
    assert_int_equal(fp_store_check_output(f->db, p, &e), FP_EINVAL);
    assert_non_null(strstr(e.msg, "wal file of the run store"));
    snprintf(p, sizeof p, "%s-shm", f->db);
    assert_int_equal(fp_store_check_output(f->db, p, &e), FP_EINVAL);
    snprintf(p, sizeof p, "%s-journal", f->db); /* does not exist */
    assert_int_equal(fp_store_check_output(f->db, p, &e), FP_EINVAL);
    snprintf(p, sizeof p, "%s/./../%s/runs.db", f->dir, strrchr(f->dir, '/') + 1);
    assert_int_equal(fp_store_check_output(f->db, p, &e), FP_EINVAL);
    path_in(f, "link.f32", link_, sizeof link_);
    assert_int_equal(symlink(f->db, link_), 0);
    assert_int_equal(fp_store_check_output(f->db, link_, &e), FP_EINVAL);
    /* the store given through the symlink: its real files are found too */
    snprintf(p, sizeof p, "%s-wal", f->db);
    assert_int_equal(fp_store_check_output(link_, p, &e), FP_EINVAL);
    path_in(f, "hard.f32", hard, sizeof hard);
    assert_int_equal(link(f->db, hard), 0);
    assert_int_equal(fp_store_check_output(f->db, hard, &e), FP_EINVAL);
    assert_int_equal(unlink(hard), 0);
    path_in(f, "model.f32", p, sizeof p);
    assert_int_equal(fp_store_check_output(f->db, p, &e), 0);
    path_in(f, "runs.db.f32", p, sizeof p);
    assert_int_equal(fp_store_check_output(f->db, p, &e), 0);
    /* another store (of another process, say) is refused as well; a file
     * that exists but is not SQLite is fine */
    path_in(f, "other.db", p, sizeof p);
    fp_store_close(open_ok(p));
    assert_int_equal(fp_store_check_output(f->db, p, &e), FP_EINVAL);
    assert_non_null(strstr(e.msg, "is an SQLite database"));
    path_in(f, "model.f32", p, sizeof p);
    FILE *m = fopen(p, "wb");
    assert_non_null(m);
    assert_int_equal(fwrite("SQLite format 2\0 and more", 1, 26, m), 26);
    assert_int_equal(fclose(m), 0);
    assert_int_equal(fp_store_check_output(f->db, p, &e), 0);
    fp_store_close(s);
}

static void commit_k(struct fp_store *s, int64_t id, uint32_t k, int want, struct fp_error *e)
{
    struct fp_client_round c = {.client = 1, .train_loss = 1, .uplink_bytes = 4};
    struct fp_round r = {.round = k,
                         .train_loss = 1,
                         .test_loss = NAN,
                         .test_accuracy = NAN,
                         .uplink_bytes = 4,
                         .participants = 1,
                         .clients = &c};
    int rc = fp_store_commit_round(s, id, &r, e);
    if (rc != want)
        fail_msg("commit round %u: %d, wanted %d (%s)", k, rc, want, e->msg);
}

/* A store deleted, renamed or replaced under a writer stops its next
 * commit with a message naming the path and what happened. */
static void test_store_moved_or_deleted(void **state)
{
    struct fx *f = *state;
    struct fp_error e = {0};
    char moved[600];
    path_in(f, "moved.db", moved, sizeof moved);

    struct fp_store *s = open_ok(f->db);
    int64_t id;
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id, &e), 0);
    commit_k(s, id, 1, 0, &e);
    assert_int_equal(rename(f->db, moved), 0);
    commit_k(s, id, 2, FP_ESTORE, &e);
    assert_non_null(strstr(e.msg, f->db));
    assert_non_null(strstr(e.msg, "moved or renamed"));
    assert_non_null(strstr(e.msg, "Every round committed before is in the moved file"));
    assert_int_equal(fp_store_finish_run(s, id, FP_RUN_COMPLETED, model, 4, 1, &e), FP_ESTORE);
    fp_store_close(s);
    /* the moved file has round 1 only (not in a -wal left at the old
     * name: copied into the file), and the run is still running */
    char oldwal[600];
    snprintf(oldwal, sizeof oldwal, "%s-wal", f->db);
    unlink(oldwal);
    assert_int_equal(q_int(moved, "SELECT count(*) FROM rounds"), 1);
    assert_int_equal(q_int(moved, "SELECT status = 'running' FROM runs"), 1);

    /* replaced: the path names another store now */
    s = open_ok(moved);
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id, &e), 0);
    struct fp_store *other = open_ok(f->db); /* a new, different file at the old path */
    fp_store_close(other);
    assert_int_equal(rename(f->db, moved), 0); /* moved now names that new file */
    commit_k(s, id, 1, FP_ESTORE, &e);
    assert_non_null(strstr(e.msg, "was deleted")); /* its old file has no name left */
    fp_store_close(s);

    s = open_ok(moved);
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id, &e), 0);
    struct stat st;
    assert_int_equal(stat(moved, &st), 0);
    other = open_ok(f->db);
    fp_store_close(other);
    char aside[600];
    path_in(f, "aside.db", aside, sizeof aside);
    assert_int_equal(rename(moved, aside), 0);
    assert_int_equal(rename(f->db, moved), 0);
    commit_k(s, id, 1, FP_ESTORE, &e);
    assert_non_null(strstr(e.msg, "was replaced"));
    assert_non_null(strstr(e.msg, "Every round committed before is in the moved file"));
    fp_store_close(s);

    /* deleted */
    s = open_ok(f->db);
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id, &e), 0);
    commit_k(s, id, 1, 0, &e);
    assert_int_equal(unlink(f->db), 0);
    commit_k(s, id, 2, FP_ESTORE, &e);
    assert_non_null(strstr(e.msg, f->db));
    assert_non_null(strstr(e.msg, "was deleted"));
    fp_store_close(s);
}

/* The -wal or -shm file deleted or replaced under a writer (a careless
 * "clean-up" beside the store) stops its next commit too: another process
 * would make new ones and the two would damage the store. What was
 * committed before goes into the store when the writer closes it. */
static void test_store_companion_deleted(void **state)
{
    struct fx *f = *state;
    static const char *const suffix[] = {"-wal", "-shm"};
    for (int i = 0; i < 2; i++) {
        for (int replace = 0; replace < 2; replace++) {
            struct fp_error e = {0};
            char comp[640], copy[660];
            snprintf(comp, sizeof comp, "%s%s", f->db, suffix[i]);
            snprintf(copy, sizeof copy, "%s.copy", comp);
            unlink(f->db);
            struct fp_store *s = open_ok(f->db);
            int64_t id;
            assert_int_equal(fp_store_begin_run(s, &meta_a, &id, &e), 0);
            commit_k(s, id, 1, 0, &e);
            if (replace) {
                char cmd[1400];
                snprintf(cmd, sizeof cmd, "cp '%s' '%s'", comp, copy);
                assert_int_equal(system(cmd), 0);
                assert_int_equal(rename(copy, comp), 0);
            } else {
                assert_int_equal(unlink(comp), 0);
            }
            commit_k(s, id, 2, FP_ESTORE, &e);
            assert_non_null(strstr(e.msg, comp));
            assert_non_null(strstr(e.msg, replace ? "was replaced" : "was deleted"));
            assert_null(strstr(e.msg, "moved file")); /* the store itself did not move */
            assert_non_null(strstr(e.msg, "Every round committed before was copied into"));
            fp_store_close(s);
            /* round 1 is in the store, the run still running (resumable) */
            if (replace) {
                unlink(comp); /* the stale copy: not the store's */
                snprintf(comp, sizeof comp, "%s%s", f->db, suffix[1 - i]);
                unlink(comp);
            }
            assert_int_equal(q_int(f->db, "SELECT count(*) FROM rounds"), 1);
            assert_int_equal(q_int(f->db, "SELECT status = 'running' FROM runs"), 1);
        }
    }
}

/* The store's directory renamed under a writer that named the store by a
 * relative path: the path still names the store (the working directory
 * moved with it), and so do its -wal and -shm names derived from it now:
 * the run goes on. A -wal deleted afterwards is still noticed. */
static void test_store_directory_renamed(void **state)
{
    struct fx *f = *state;
    char cwd[600], sub[600], moved[600], wal[640];
    struct fp_error e = {0};
    assert_non_null(getcwd(cwd, sizeof cwd));
    path_in(f, "proj", sub, sizeof sub);
    path_in(f, "proj2", moved, sizeof moved);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(chdir(sub), 0);
    struct fp_store *s = open_ok("r.db");
    int64_t id;
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id, &e), 0);
    commit_k(s, id, 1, 0, &e);
    assert_int_equal(rename(sub, moved), 0);
    commit_k(s, id, 2, 0, &e);
    assert_int_equal(unlink("r.db-wal"), 0);
    commit_k(s, id, 3, FP_ESTORE, &e);
    snprintf(wal, sizeof wal, "%s/r.db-wal", moved);
    assert_non_null(strstr(e.msg, wal));
    assert_non_null(strstr(e.msg, "was deleted"));
    /* SQLite copies no log at close into a store whose directory moved:
     * the rounds are in it because the stop copied them */
    assert_non_null(strstr(e.msg, "was copied into"));
    fp_store_close(s);
    assert_int_equal(chdir(cwd), 0);
    unlink(wal);
    snprintf(wal, sizeof wal, "%s/r.db-shm", moved);
    unlink(wal);
    snprintf(wal, sizeof wal, "%s/r.db", moved);
    assert_int_equal(q_int(wal, "SELECT count(*) FROM rounds"), 2);
    unlink(wal);
    rmdir(moved);
}

/* A child process tries run_id's lock through path: its exit status is
 * 0 locked, 1 held elsewhere, 2 error. No connection crosses the fork:
 * the child opens its own. */
static int child_lock(const char *path, int64_t run_id)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct fp_store *s = NULL;
        struct fp_error e = {0};
        if (fp_store_open(&s, path, &e))
            _exit(2);
        int rc = fp_store_lock_run(s, run_id, &e);
        int held = rc == FP_STORE_HELD && strstr(e.msg, "being run by another process");
        fp_store_close(s);
        _exit(rc == 0 ? 0 : held ? 1 : 2);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* The run lock belongs to the store file: another handle, another process,
 * a symlink or another spelling of the path meet it; it is released by
 * unlock and by close; a handle cannot write a run another one holds. */
static void test_run_locks(void **state)
{
    struct fx *f = *state;
    struct fp_error e = {0};
    char link_[600], dotted[600];
    path_in(f, "link.db", link_, sizeof link_);
    assert_int_equal(symlink(f->db, link_), 0);
    snprintf(dotted, sizeof dotted, "%s/./runs.db", f->dir);

    struct fp_store *a = open_ok(f->db);
    int64_t id;
    assert_int_equal(fp_store_begin_run(a, &meta_a, &id, &e), 0); /* locks it */
    assert_int_equal(fp_store_lock_run(a, id, &e), 0);            /* already held: fine */
    struct fp_store *b = open_ok(link_);
    assert_int_equal(fp_store_lock_run(b, id, &e), FP_STORE_HELD);
    assert_non_null(strstr(e.msg, "being run by another"));
    commit_k(b, id, 1, FP_ESTORE, &e); /* b cannot write a run a holds */
    assert_int_equal(fp_store_finish_run(b, id, FP_RUN_FAILED, NULL, 0, 0, &e), FP_ESTORE);
    assert_int_equal(child_lock(link_, id), 1);
    assert_int_equal(child_lock(dotted, id), 1);
    assert_int_equal(child_lock(f->db, id + 1), 0); /* other runs are free */
    commit_k(a, id, 1, 0, &e);

    fp_store_unlock_run(a, id);
    assert_int_equal(child_lock(link_, id), 0);
    assert_int_equal(fp_store_lock_run(b, id, &e), 0);
    assert_int_equal(fp_store_lock_run(a, id, &e), FP_STORE_HELD);
    fp_store_close(b); /* closing releases */
    assert_int_equal(fp_store_lock_run(a, id, &e), 0);
    commit_k(a, id, 2, 0, &e);
    /* a's own handle went on working after b closed its descriptor */
    assert_int_equal(q_int(f->db, "SELECT rounds_done FROM runs"), 2);
    fp_store_close(a);
    assert_int_equal(child_lock(f->db, id), 0);
}

/* A final status is final: a completed run cannot be marked failed, lose
 * its model hash, be rewound, or take rounds or a state; an interrupted
 * one can only be rewound (then it runs again). */
static void test_final_status_kept(void **state)
{
    struct fx *f = *state;
    struct fp_error e = {0};
    struct fp_store *s = open_ok(f->db);
    int64_t id = write_run_a(s);
    char sha[80];
    assert_int_equal(fp_store_finish_run(s, id, FP_RUN_FAILED, NULL, 0, 3, &e), FP_ESTORE);
    assert_non_null(strstr(e.msg, "'completed', not running"));
    assert_int_equal(fp_store_finish_run(s, id, FP_RUN_COMPLETED, model, 4, 3, &e), FP_ESTORE);
    assert_int_equal(fp_store_rewind(s, id, 1, 1, &e), FP_ESTORE);
    commit_k(s, id, 4, FP_ESTORE, &e);
    assert_int_equal(fp_store_put_state(s, id, 3, "x", 1, &e), FP_ESTORE);
    q_text(f->db, "SELECT status || ' ' || model_sha256 FROM runs", sha, sizeof sha);
    char want[80];
    snprintf(want, sizeof want, "completed %s", model_hex);
    assert_string_equal(sha, want);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM rounds"), 3);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM checkpoints WHERE kind = 'model'"), 1);

    /* interrupted: no second final status, but a rewind runs it again */
    int64_t id2;
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id2, &e), 0);
    assert_int_equal(fp_store_finish_run(s, id2, FP_RUN_INTERRUPTED, model, 4, 0, &e), 0);
    assert_int_equal(fp_store_finish_run(s, id2, FP_RUN_FAILED, NULL, 0, 0, &e), FP_ESTORE);
    commit_k(s, id2, 1, FP_ESTORE, &e);
    assert_int_equal(fp_store_rewind(s, id2, 0, 1, &e), 0);
    commit_k(s, id2, 1, 0, &e);
    assert_int_equal(fp_store_finish_run(s, id2, FP_RUN_FAILED, NULL, 0, 1, &e), 0);
    fp_store_close(s);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Another process holds the write lock for longer than SQLite's busy
 * timeout: a commit waits and tries again until it gets the lock (and
 * gives up, saying so, only after the whole wait). */
static void test_busy_retry(void **state)
{
    struct fx *f = *state;
    struct fp_error e = {0};
    struct fp_store *s = open_ok(f->db);
    int64_t id;
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id, &e), 0);
    fp_store_close(s); /* no connection across the fork */

    for (int pass = 0; pass < 2; pass++) {
        int locked[2];
        assert_int_equal(pipe(locked), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            sqlite3 *w = NULL;
            char c = 'E';
            if (sqlite3_open(f->db, &w) == SQLITE_OK &&
                sqlite3_exec(w, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK)
                c = 'L';
            if (write(locked[1], &c, 1) != 1)
                _exit(1);
            usleep(pass == 0 ? 800000 : 1500000); /* holds the lock 0.8 s, 1.5 s */
            sqlite3_exec(w, "COMMIT", NULL, NULL, NULL);
            sqlite3_close(w);
            _exit(0);
        }
        char c = 0;
        assert_int_equal(read(locked[0], &c, 1), 1);
        assert_int_equal(c, 'L');
        s = open_ok(f->db);
        /* SQLite alone would give up after 100 ms */
        fp_store_set_busy(s, 100, pass == 0 ? 20000 : 300);
        double t0 = now_s();
        commit_k(s, id, 1, pass == 0 ? 0 : FP_ESTORE, &e);
        double waited = now_s() - t0;
        if (pass == 0) {
            assert_true(waited > 0.5);
        } else {
            assert_non_null(strstr(e.msg, "stayed busy"));
            assert_true(waited < 1.4);
        }
        fp_store_close(s);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        close(locked[0]);
        close(locked[1]);
    }
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM rounds"), 1);
}

static void sha_file(const char *path, unsigned char out[64], size_t *len)
{
    /* the file's bytes, enough to compare (these files are small) */
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    static unsigned char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    *len = n;
    unsigned h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ buf[i]) * 16777619u;
    memset(out, 0, 64);
    memcpy(out, &h, sizeof h);
}

/* Opening another program's database, to write or to read, leaves it
 * byte for byte as it was: still in its rollback journal mode. */
static void test_foreign_database_untouched(void **state)
{
    struct fx *f = *state;
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(f->db, &h), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(h, "CREATE TABLE t(x); INSERT INTO t VALUES(42)", NULL, NULL, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_close(h), SQLITE_OK);
    unsigned char before[64], after[64];
    size_t nb, na;
    sha_file(f->db, before, &nb);

    struct fp_store *s = NULL;
    struct fp_error e = {0};
    assert_int_equal(fp_store_open(&s, f->db, &e), FP_ESTORE);
    assert_non_null(strstr(e.msg, "not a run store"));
    assert_int_equal(fp_store_open_readonly(&s, f->db, &e), FP_ESTORE);
    sha_file(f->db, after, &na);
    assert_int_equal(na, nb);
    assert_memory_equal(before, after, 64);
    char mode[16];
    q_text(f->db, "PRAGMA journal_mode", mode, sizeof mode);
    assert_string_equal(mode, "delete");
    char p[600];
    snprintf(p, sizeof p, "%s-wal", f->db);
    assert_int_equal(access(p, F_OK), -1);
}

/* Another program's database that sets user_version to a value a store
 * has (1 to 3; any program may set it) is not taken for a store either:
 * refused by writers and readers, still in its own journal mode, byte for
 * byte as it was, with no "upgrade" and no -wal beside it. */
static void test_foreign_database_with_user_version(void **state)
{
    struct fx *f = *state;
    for (int v = 1; v <= 3; v++) {
        char db[600], sql[128], p[640];
        snprintf(db, sizeof db, "%s/foreign%d.db", f->dir, v);
        sqlite3 *h = NULL;
        assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
        snprintf(sql, sizeof sql,
                 "CREATE TABLE t(x); INSERT INTO t VALUES(42); PRAGMA user_version = %d", v);
        assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_close(h), SQLITE_OK);
        unsigned char before[64], after[64];
        size_t nb, na;
        sha_file(db, before, &nb);

        struct fp_store *s = NULL;
        struct fp_error e = {0};
        assert_int_equal(fp_store_open(&s, db, &e), FP_ESTORE);
        assert_null(s);
        assert_non_null(strstr(e.msg, "not a run store"));
        memset(&e, 0, sizeof e);
        assert_int_equal(fp_store_open_readonly(&s, db, &e), FP_ESTORE);
        assert_non_null(strstr(e.msg, "not a run store"));

        sha_file(db, after, &na);
        assert_int_equal(na, nb);
        assert_memory_equal(before, after, 64);
        char mode[16];
        q_text(db, "PRAGMA journal_mode", mode, sizeof mode);
        assert_string_equal(mode, "delete");
        snprintf(p, sizeof p, "%s-wal", db);
        assert_int_equal(access(p, F_OK), -1);
        unlink(db);
    }
}

/* --store is a file name, whatever it looks like: "file:..." is not a URI
 * naming another file, ":memory:" is not an in-memory database. Each is a
 * store in the working directory, under exactly that name. */
static void test_store_uri_like_names(void **state)
{
    struct fx *f = *state;
    static const char *const names[] = {"file:u.db?mode=memory", "file:v.db", ":memory:"};
    char cwd[600];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(f->dir), 0);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        struct fp_store *s = NULL;
        struct fp_error e = {0};
        int64_t id;
        assert_int_equal(fp_store_open(&s, names[i], &e), 0);
        assert_int_equal(fp_store_begin_run(s, &meta_a, &id, &e), 0);
        fp_store_close(s);
        assert_int_equal(access(names[i], F_OK), 0);
        char plain[64]; /* for the test's own sqlite3_open_v2, which takes URIs */
        snprintf(plain, sizeof plain, "./%s", names[i]);
        assert_int_equal(q_int(plain, "SELECT count(*) FROM runs"), 1);
        assert_int_equal(fp_store_open_readonly(&s, names[i], &e), 0);
        fp_store_close(s);
    }
    assert_int_equal(access("u.db", F_OK), -1);
    assert_int_equal(access("v.db", F_OK), -1);
    assert_int_equal(chdir(cwd), 0);
}

/* What is not a regular file is refused before SQLite sees it: nothing is
 * created beside it. A store with two hard links is refused too. */
static void test_not_a_regular_file(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = NULL;
    struct fp_error e = {0};
    assert_int_equal(fp_store_open(&s, "/dev/null", &e), FP_ESTORE);
    assert_non_null(strstr(e.msg, "not a regular file"));
    assert_int_equal(fp_store_open_readonly(&s, "/dev/null", &e), FP_ESTORE);
    assert_int_equal(fp_store_open(&s, f->dir, &e), FP_ESTORE);
    assert_non_null(strstr(e.msg, "directory"));
    char p[600];
    snprintf(p, sizeof p, "%s-journal", f->dir);
    assert_int_equal(access(p, F_OK), -1);

    s = open_ok(f->db);
    fp_store_close(s);
    path_in(f, "second-name.db", p, sizeof p);
    assert_int_equal(link(f->db, p), 0);
    assert_int_equal(fp_store_open(&s, p, &e), FP_ESTORE);
    assert_non_null(strstr(e.msg, "hard links"));
    assert_int_equal(fp_store_open(&s, f->db, &e), FP_ESTORE);
    char wal[640];
    snprintf(wal, sizeof wal, "%s-wal", p);
    assert_int_equal(access(wal, F_OK), -1);
}

/* A reader changes nothing: on a version 1 store it reads the runs without
 * upgrading it, says what needs a writer, and refuses every write. */
static void test_reader_on_old_schema(void **state)
{
    struct fx *f = *state;
    struct fp_error e = {0};
    struct fp_store *s = open_ok(f->db);
    int64_t id = write_run_a(s);
    fp_store_close(s);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(f->db, &h), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(h, "DROP TABLE checkpoint_parts; PRAGMA user_version = 1", NULL, NULL, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_close(h), SQLITE_OK);

    s = NULL;
    assert_int_equal(fp_store_open_readonly(&s, f->db, &e), 0);
    struct run_copy rc = {0};
    assert_int_equal(fp_store_list_runs(s, collect_run, &rc, &e), 0);
    assert_int_equal(rc.n, 1);
    assert_string_equal(rc.sha[0], model_hex);
    struct round_copy rr = {0};
    assert_int_equal(fp_store_list_rounds(s, id, collect_round, &rr, &e), 0);
    assert_int_equal(rr.n, 3);
    struct fp_resume rs;
    assert_int_equal(fp_store_load_resume(s, id, &rs, &e), FP_ESTORE);
    assert_non_null(strstr(e.msg, "with a writer"));
    int64_t id2;
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id2, &e), FP_EINVAL);
    assert_non_null(strstr(e.msg, "read-only"));
    assert_int_equal(fp_store_lock_run(s, id, &e), FP_EINVAL);
    commit_k(s, id, 4, FP_EINVAL, &e);
    fp_store_close(s);
    assert_int_equal(q_int(f->db, "PRAGMA user_version"), 1);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM sqlite_master WHERE name = "
                                  "'checkpoint_parts'"),
                     0);
    /* a reader never creates a store */
    char p[600];
    path_in(f, "absent.db", p, sizeof p);
    assert_int_equal(fp_store_open_readonly(&s, p, &e), FP_ENOTFOUND);
    assert_int_equal(access(p, F_OK), -1);
}

/* A failed attempt of round `round`: clients 1 (its upload came in time),
 * 4 (late) and 6 (absent), each with a reason (the answered one's is not
 * stored: nothing of it needs one). */
static int put_attempt(struct fp_store *s, int64_t id, uint32_t round, uint32_t attempt,
                       struct fp_error *e)
{
    const struct fp_client_round c[3] = {
        {.client = 1, .status = FP_CLIENT_INCLUDED, .reason = "ignored"},
        {.client = 4, .status = FP_CLIENT_LATE, .reason = "no upload when the round closed"},
        {.client = 6, .status = FP_CLIENT_ABSENT, .reason = "not connected when sampled"},
    };
    const struct fp_attempt a = {
        .round = round, .attempt = attempt, .uploads = 1, .min_updates = 2, .clients = c, .n = 3};
    return fp_store_put_attempt(s, id, &a, e);
}

/* Schema 6: a version 5 file (with runs, rounds and client rows) is read
 * as it is by a reader and upgraded in place by a writer: the attempts
 * tables appear, runs gains error (NULL for the runs it had), and every
 * older row reads back the same. */
static void test_schema_5_upgraded(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    struct fp_error e = {0};
    int64_t id = write_run_a(s);
    fp_store_close(s);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(f->db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, V6_DROPPED "PRAGMA user_version = 5", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_close(h), SQLITE_OK);

    /* a reader reads it as it is, and changes nothing */
    s = NULL;
    assert_int_equal(fp_store_open_readonly(&s, f->db, &e), 0);
    struct run_copy rc = {0};
    assert_int_equal(fp_store_list_runs(s, collect_run, &rc, &e), 0);
    assert_int_equal(rc.n, 1);
    assert_string_equal(rc.status[0], "completed");
    assert_string_equal(rc.sha[0], model_hex);
    struct client_rows old = {0};
    assert_int_equal(fp_store_list_client_rounds(s, id, -1, collect_client, &old, &e), 0);
    assert_int_equal(old.n, 6);
    assert_int_equal(put_attempt(s, id, 1, 1, &e), FP_EINVAL);
    fp_store_close(s);
    assert_int_equal(q_int(f->db, "PRAGMA user_version"), 5);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM sqlite_master WHERE name LIKE 'attempt%'"),
                     0);

    s = open_ok(f->db);
    assert_int_equal(q_int(f->db, "PRAGMA user_version"), 6);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND"
                                  " name IN ('attempts', 'attempt_clients')"),
                     2);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM runs WHERE error IS NULL"), 1);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM rounds"), 3);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM client_rounds WHERE status = 'included'"),
                     6);
    struct client_rows now = {0};
    assert_int_equal(fp_store_list_client_rounds(s, id, -1, collect_client, &now, &e), 0);
    assert_int_equal(now.n, 6);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(now.round[i], old.round[i]);
        assert_int_equal(now.c[i].client, old.c[i].client);
        assert_int_equal(now.c[i].uplink_bytes, old.c[i].uplink_bytes);
        assert_string_equal(now.c[i].upload_sha256, old.c[i].upload_sha256);
    }
    /* the upgraded file takes attempts */
    int64_t id2 = -1;
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id2, &e), 0);
    assert_int_equal(put_attempt(s, id2, 1, 1, &e), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM attempt_clients"), 3);
    fp_store_close(s);
}

/* A failed attempt: its row and every sampled client's, in one
 * transaction, kept apart from client_rounds; a failed run's reason in
 * runs.error; a rewind forgets the attempts of the rounds it forgets that
 * were committed, keeps those of a round never committed, and clears the
 * error; deleting the run takes them all. */
static void test_attempts_stored(void **state)
{
    struct fx *f = *state;
    struct fp_store *s = open_ok(f->db);
    struct fp_error e = {0};
    int64_t id = -1;
    char t[200];
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id, &e), 0);
    commit_k(s, id, 1, 0, &e);
    assert_int_equal(put_attempt(s, id, 2, 1, &e), 0);
    assert_int_equal(put_attempt(s, id, 2, 2, &e), 0);
    commit_k(s, id, 2, 0, &e);
    assert_int_equal(put_attempt(s, id, 3, 1, &e), 0);

    assert_int_equal(q_int(f->db, "SELECT count(*) FROM attempts"), 3);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM attempts WHERE run_id = 1 AND round = 2"
                                  " AND uploads = 1 AND min_updates = 2"),
                     2);
    q_text(f->db,
           "SELECT group_concat(client || ':' || status || ':' || coalesce(reason, 'NULL'), '|')"
           " FROM (SELECT c.client, c.status, c.reason FROM attempts a JOIN attempt_clients c"
           " ON c.attempt_id = a.id WHERE a.round = 2 AND a.attempt = 2 ORDER BY c.client)",
           t, sizeof t);
    assert_string_equal(t, "1:answered:NULL|4:late:no upload when the round closed|"
                           "6:absent:not connected when sampled");
    /* the time it closed, to the millisecond, UTC */
    q_text(f->db, "SELECT closed_at FROM attempts WHERE id = 3", t, sizeof t);
    assert_int_equal(strlen(t), 24);
    assert_true(t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[23] == 'Z');
    /* client_rounds holds the committed rounds' rows only */
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM client_rounds"), 2);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM client_rounds WHERE client != 1"), 0);

    /* all or nothing: a client twice violates the key, and the attempts
     * row goes too */
    const struct fp_client_round twice[2] = {{.client = 5, .status = FP_CLIENT_LATE},
                                             {.client = 5, .status = FP_CLIENT_LATE}};
    const struct fp_attempt bad = {
        .round = 3, .attempt = 2, .uploads = 0, .min_updates = 2, .clients = twice, .n = 2};
    assert_int_equal(fp_store_put_attempt(s, id, &bad, &e), FP_ESTORE);
    assert_non_null(strstr(e.msg, "client 5 of round 3's attempt 2"));
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM attempts"), 3);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM attempt_clients"), 9);
    const struct fp_attempt zero = {.round = 3, .attempt = 0};
    assert_int_equal(fp_store_put_attempt(s, id, &zero, &e), FP_EINVAL);

    /* the failure and its reason */
    assert_int_equal(fp_store_fail_run(s, id, 2, "round 3: only 1 of the 2 uploads", &e), 0);
    q_text(f->db, "SELECT status || ': ' || error FROM runs WHERE id = 1", t, sizeof t);
    assert_string_equal(t, "failed: round 3: only 1 of the 2 uploads");
    /* a failed run takes no more attempts */
    assert_int_equal(put_attempt(s, id, 3, 2, &e), FP_ESTORE);
    assert_non_null(strstr(e.msg, "'failed'"));
    /* a run finished otherwise has no error */
    int64_t id2 = -1;
    assert_int_equal(fp_store_begin_run(s, &meta_a, &id2, &e), 0);
    assert_int_equal(fp_store_finish_run(s, id2, FP_RUN_FAILED, NULL, 0, 0, &e), 0);
    assert_int_equal(q_int(f->db, "SELECT error IS NULL FROM runs WHERE id = 2"), 1);

    /* resumed after round 1: round 2's attempts go (it is run again, and
     * its attempts with it); round 3's, never committed, stay */
    assert_int_equal(fp_store_rewind(s, id, 1, 1, &e), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM attempts WHERE round = 2"), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM attempts WHERE round = 3"), 1);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM attempt_clients"), 3);
    q_text(f->db, "SELECT status || ' ' || coalesce(error, 'NULL') FROM runs WHERE id = 1", t,
           sizeof t);
    assert_string_equal(t, "running NULL");
    fp_store_close(s);

    /* deleting the run (foreign keys on) takes its attempts */
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(f->db, &h), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(h, "PRAGMA foreign_keys=ON; DELETE FROM runs WHERE id = 1", NULL, NULL, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_close(h), SQLITE_OK);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM attempts"), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM attempt_clients"), 0);
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(fp_run_status_name(FP_RUN_RUNNING), "running");
    assert_string_equal(fp_run_status_name(FP_RUN_COMPLETED), "completed");
    assert_string_equal(fp_run_status_name(FP_RUN_INTERRUPTED), "interrupted");
    assert_string_equal(fp_run_status_name(FP_RUN_FAILED), "failed");
    assert_string_equal(fp_run_status_name((enum fp_run_status)17), "unknown");
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test_setup_teardown(test_full_run_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_is_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_client_rounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_1_upgraded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_2_upgraded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_3_upgraded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_4_upgraded_and_statuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_sha256_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_included, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_upgrade_is_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inputs_and_blas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_database_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_during_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loss_only_rounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_and_rewind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_moved_or_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_companion_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_directory_renamed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_locks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_final_status_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_database_untouched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_uri_like_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_database_with_user_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_regular_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_on_old_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_5_upgraded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attempts_stored, setup, teardown),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests(t, NULL, NULL);
}
