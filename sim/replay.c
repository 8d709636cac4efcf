/*
 * sim/replay.c — re-executing a stored run and comparing it with its log
 * (see replay.h).
 *
 * The log is read whole first (rounds and client rows: a few hundred bytes
 * per sampled client and round), then the simulator runs with two hooks:
 * its participation is the log's, and each committed round is compared
 * with the logged one before the next starts, so the first divergence
 * stops the replay.
 */
#include "replay.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/blas.h"
#include "../core/inputs.h"
#include "../core/scenario.h"
#include "sim.h"

struct fp__logged {
    struct fp_round row; /* the round's metrics (clients unset) */
    uint32_t first, n;   /* its client rows: rows[first .. first + n), ascending client */
};

struct fp__replay {
    int64_t run_id;
    struct fp_run_record rec;
    struct fp__logged *rounds; /* [nrounds], rounds 1 .. nrounds */
    uint32_t nrounds, rounds_cap;
    struct fp_client_round *rows;
    uint32_t nrows, rows_cap;
    uint64_t uploads; /* included uploads compared */
    /* the stored scenario's bounds on the log: a row past them is damage,
     * refused before it costs memory */
    uint32_t max_rounds, clients, sample;
    const volatile sig_atomic_t *outer_stop;
    volatile sig_atomic_t stop; /* the simulator's: set at the last logged round or a divergence */
    int interrupted;
    /* the first divergence */
    int diverged;
    uint32_t d_round;
    int64_t d_client; /* -1: the round's metrics or the final model */
    char what[600];
    int load_rc; /* an error while reading the log */
    struct fp_error *load_err;
};

/* ---- reading the log ---- */

static int fp__log_round(void *u, const struct fp_round *row)
{
    struct fp__replay *x = u;
    if (row->round > x->max_rounds)
        return fp_error_set(x->load_err, FP_ESTORE,
                            "run %lld has a round %u, but its scenario has %u rounds: the log is "
                            "damaged",
                            (long long)x->run_id, row->round, x->max_rounds);
    if (row->round != x->nrounds + 1)
        return fp_error_set(x->load_err, FP_ESTORE,
                            "run %lld's rounds in the store are not 1, 2, 3, ... (round %u follows "
                            "round %u): the log is damaged",
                            (long long)x->run_id, row->round, x->nrounds);
    if (x->nrounds == x->rounds_cap) {
        uint32_t cap = x->rounds_cap ? 2 * x->rounds_cap : 64;
        struct fp__logged *grown = realloc(x->rounds, cap * sizeof *grown);
        if (!grown)
            return fp_error_set(x->load_err, FP_ENOMEM, "out of memory reading run %lld's rounds",
                                (long long)x->run_id);
        x->rounds = grown;
        x->rounds_cap = cap;
    }
    x->rounds[x->nrounds++] = (struct fp__logged){.row = *row};
    return 0;
}

static int fp__log_client(void *u, uint32_t round, const struct fp_client_round *c)
{
    struct fp__replay *x = u;
    /* a round a running run committed after its rounds were read: not replayed */
    if (round > x->nrounds)
        return 0;
    if (round < 1)
        return fp_error_set(x->load_err, FP_ESTORE,
                            "run %lld has a client row of round %u, which has no rounds row: the "
                            "log is damaged",
                            (long long)x->run_id, round);
    if (x->nrows == x->rows_cap) {
        uint32_t cap = x->rows_cap ? 2 * x->rows_cap : 1024;
        struct fp_client_round *grown = realloc(x->rows, (size_t)cap * sizeof *grown);
        if (!grown)
            return fp_error_set(x->load_err, FP_ENOMEM,
                                "out of memory reading run %lld's client rows",
                                (long long)x->run_id);
        x->rows = grown;
        x->rows_cap = cap;
    }
    struct fp__logged *lr = &x->rounds[round - 1];
    if (c->client >= x->clients || lr->n >= x->sample)
        return fp_error_set(x->load_err, FP_ESTORE,
                            "run %lld's round %u has a row for client %u%s, but its scenario has "
                            "%u clients and samples %u a round: the log is damaged",
                            (long long)x->run_id, round, c->client,
                            c->client >= x->clients ? "" : " past its sample", x->clients,
                            x->sample);
    /* The store lists rows by round, then client, and its key makes each
     * (round, client) unique; the lookups below rely on that. A store whose
     * table lost its key (edited by hand) may repeat a row: refused. */
    if (lr->n && (lr->first + lr->n != x->nrows || x->rows[x->nrows - 1].client >= c->client))
        return fp_error_set(x->load_err, FP_ESTORE,
                            "run %lld's client rows of round %u are not one per client in "
                            "ascending order (client %u after client %u): the log is damaged",
                            (long long)x->run_id, round, c->client, x->rows[x->nrows - 1].client);
    if (!lr->n)
        lr->first = x->nrows;
    lr->n++;
    x->rows[x->nrows++] = *c;
    return 0;
}

/* The rounds and client rows, after the record and its scenario sc. */
static int fp__load_log(struct fp__replay *x, struct fp_store *store, const struct fp_scenario *sc,
                        struct fp_error *err)
{
    int rc;
    x->load_err = err;
    x->max_rounds = sc->rounds;
    x->clients = sc->clients;
    x->sample = sc->sample;
    if ((rc = fp_store_list_rounds(store, x->run_id, fp__log_round, x, err)) ||
        (rc = fp_store_list_client_rounds(store, x->run_id, -1, fp__log_client, x, err)))
        return rc;
    if (!x->nrounds)
        return fp_error_set(err, FP_EINVAL,
                            "run %lld has no committed round: there is nothing to replay",
                            (long long)x->run_id);
    return 0;
}

/* The logged row of `client` in round lr, or NULL. */
static const struct fp_client_round *fp__find(const struct fp__replay *x,
                                              const struct fp__logged *lr, uint32_t client)
{
    uint32_t lo = lr->first, hi = lr->first + lr->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (x->rows[mid].client == client)
            return &x->rows[mid];
        if (x->rows[mid].client < client)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- the divergence ---- */

__attribute__((format(printf, 4, 5))) static void fp__diverge(struct fp__replay *x, uint32_t round,
                                                              int64_t client, const char *fmt, ...)
{
    x->stop = 1;
    if (x->diverged)
        return;
    x->diverged = 1;
    x->d_round = round;
    x->d_client = client;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->what, sizeof x->what, fmt, ap);
    va_end(ap);
}

static int fp__same(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

/* ---- the simulator's hooks ---- */

/* The log's participation: a slot is included iff its client's row says
 * so; the others keep their logged status and reason. */
static int fp__participation(void *u, struct fp_run *r, struct fp_error *err)
{
    struct fp__replay *x = u;
    const struct fp__logged *lr = &x->rounds[r->round - 1];
    const uint32_t S = r->sc->sample;
    for (uint32_t slot = 0; slot < S; slot++) {
        const struct fp_client_round *c = fp__find(x, lr, r->chosen[slot]);
        if (!c) {
            /* a store before schema 5 lists the included clients only */
            r->status[slot] = FP_CLIENT_ABSENT;
            snprintf(r->why[slot], sizeof r->why[slot], "no row in the replayed log");
            continue;
        }
        r->status[slot] = c->status;
        snprintf(r->why[slot], sizeof r->why[slot], "%s", c->reason);
    }
    /* every logged client must be one the replay sampled */
    for (uint32_t i = lr->first; i < lr->first + lr->n; i++) {
        const uint32_t client = x->rows[i].client;
        uint32_t lo = 0, hi = S;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (r->chosen[mid] < client)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == S || r->chosen[lo] != client) {
            fp__diverge(x, r->round, client,
                        "the log has a row for client %u, which the replay did not sample "
                        "(the round's sample differs)",
                        client);
            return fp_error_set(err, FP_EINVAL, "replay diverged");
        }
    }
    return 0;
}

static void fp__hex_short(const char *hex, char out[20])
{
    snprintf(out, 20, "%.12s...", hex[0] ? hex : "(none)");
}

/* Round r's included uploads against the logged ones, in ascending client
 * id; 1 at the first difference. */
static int fp__compare_clients(struct fp__replay *x, const struct fp_round *row,
                               const struct fp__logged *lr)
{
    uint32_t j = 0;
    for (uint32_t i = lr->first; i < lr->first + lr->n; i++) {
        const struct fp_client_round *want = &x->rows[i];
        if (want->status != FP_CLIENT_INCLUDED)
            continue;
        if (j >= row->participants || row->clients[j].client != want->client) {
            fp__diverge(x, row->round, want->client,
                        "the log includes client %u's upload; the replay did not", want->client);
            return 1;
        }
        const struct fp_client_round *got = &row->clients[j++];
        char a[20], b[20];
        fp__hex_short(want->upload_sha256, a);
        fp__hex_short(got->upload_sha256, b);
        if (want->upload_sha256[0] && strcmp(want->upload_sha256, got->upload_sha256)) {
            fp__diverge(x, row->round, want->client,
                        "its upload's sha256 differs (log %s, replay %s)", a, b);
            return 1;
        }
        if (!fp__same(want->train_loss, got->train_loss) ||
            want->uplink_bytes != got->uplink_bytes ||
            want->downlink_bytes != got->downlink_bytes) {
            fp__diverge(x, row->round, want->client,
                        "its train_loss or bytes differ (log %.17g, %llu B up, %llu B down; "
                        "replay %.17g, %llu B up, %llu B down)",
                        want->train_loss, (unsigned long long)want->uplink_bytes,
                        (unsigned long long)want->downlink_bytes, got->train_loss,
                        (unsigned long long)got->uplink_bytes,
                        (unsigned long long)got->downlink_bytes);
            return 1;
        }
        x->uploads++;
    }
    if (j != row->participants) {
        fp__diverge(x, row->round, row->clients[j].client,
                    "the replay includes client %u's upload; the log does not",
                    row->clients[j].client);
        return 1;
    }
    return 0;
}

/* After each committed round: its uploads, then its metrics. */
static void fp__committed(void *u, const struct fp_run *r)
{
    struct fp__replay *x = u;
    const struct fp_round *row = &r->row;
    const struct fp__logged *lr = &x->rounds[row->round - 1];
    const struct fp_round *want = &lr->row;
    if (!fp__compare_clients(x, row, lr) &&
        (want->participants != row->participants || !fp__same(want->train_loss, row->train_loss) ||
         !fp__same(want->test_loss, row->test_loss) ||
         !fp__same(want->test_accuracy, row->test_accuracy) ||
         want->uplink_bytes != row->uplink_bytes || want->downlink_bytes != row->downlink_bytes))
        fp__diverge(x, row->round, -1,
                    "the round's metrics differ (log: %u included, train_loss %.17g, test_loss "
                    "%.17g, test_accuracy %.17g, %llu B up, %llu B down; replay: %u, %.17g, "
                    "%.17g, %.17g, %llu B, %llu B)",
                    want->participants, want->train_loss, want->test_loss, want->test_accuracy,
                    (unsigned long long)want->uplink_bytes,
                    (unsigned long long)want->downlink_bytes, row->participants, row->train_loss,
                    row->test_loss, row->test_accuracy, (unsigned long long)row->uplink_bytes,
                    (unsigned long long)row->downlink_bytes);
    if (row->round >= x->nrounds)
        x->stop = 1;
    if (x->outer_stop && *x->outer_stop && !x->stop) {
        x->interrupted = 1;
        x->stop = 1;
    }
}

/* ---- likely causes ---- */

/* Each input the run read whose bytes are not those it read then. */
static void fp__input_causes(const char *inputs, FILE *out, int *found)
{
    const char *p = inputs;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len > 66 && len < 4200) {
            char path[4200], hex[65], now[65];
            memcpy(hex, p, 64);
            hex[64] = '\0';
            memcpy(path, p + 66, len - 66);
            path[len - 66] = '\0';
            struct fp_error e = {0};
            struct stat sb;
            /* The path is the store's word: a device or a FIFO there
             * (/dev/zero, say) would be read forever, or block the open. */
            if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
                fprintf(out,
                        "likely cause: the run read %s, which is not a regular file now (not "
                        "hashed)\n",
                        path);
                *found = 1;
            } else if (fp_sha256_file(path, now, &e)) {
                fprintf(out, "likely cause: the run read %s, which cannot be read now (%s)\n", path,
                        e.msg);
                *found = 1;
            } else if (strcmp(now, hex)) {
                fprintf(out,
                        "likely cause: %s changed since the run read it (sha256 then %.12s..., "
                        "now %.12s...)\n",
                        path, hex, now);
                *found = 1;
            }
        }
        p = nl ? nl + 1 : NULL;
    }
}

static void fp__report_causes(const struct fp__replay *x, FILE *out)
{
    int found = 0;
    const char *here = fp_blas_describe();
    if (x->rec.blas && strcmp(x->rec.blas, here)) {
        fprintf(out,
                "likely cause: the run used BLAS %s, this machine %s: a kernel rounds its own way, "
                "so results are bit-identical per kernel only (OPENBLAS_CORETYPE chooses it)\n",
                x->rec.blas, here);
        found = 1;
    }
    fp__input_causes(x->rec.inputs, out, &found);
    if (x->d_client >= 0)
        fprintf(out,
                "%s: if run %lld was a coordinator's, client %lld computed its upload on its own "
                "machine: its BLAS kernel or its data (--data DIR) may differ from this one's\n",
                found ? "also possible" : "likely cause", (long long)x->run_id,
                (long long)x->d_client);
    fprintf(out,
            "%s: the log was changed after the run, or it was run by another version of "
            "fedpress\n",
            found || x->d_client >= 0 ? "or" : "likely cause");
}

/* ---- the replay ---- */

/* A directory of its own for the replay's store, removed afterwards. */
static int fp__tmp_store(char dir[4096], char path[4200], struct fp_error *err)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, 4096, "%s/fedpress-replay-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir))
        return fp_error_set(err, FP_EIO,
                            "cannot create a directory for the replay's temporary store (%s): %s; "
                            "set TMPDIR to a writable directory",
                            dir, strerror(errno));
    snprintf(path, 4200, "%s/replay.db", dir);
    return 0;
}

static void fp__tmp_remove(const char *dir, const char *path)
{
    static const char *const ext[] = {"", "-wal", "-shm", "-journal"};
    char p[4300];
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
        snprintf(p, sizeof p, "%s%s", path, ext[i]);
        (void)unlink(p);
    }
    (void)rmdir(dir);
}

static void fp__verdict(struct fp__replay *x, const struct fp_run_result *res, FILE *out)
{
    /* the model: only a log whose last round the replay reached has one to compare */
    if (!x->diverged && x->rec.model_sha256 && x->rec.rounds_done == x->nrounds &&
        strcmp(x->rec.model_sha256, res->model_sha256))
        fp__diverge(x, x->nrounds, -1,
                    "the final model's sha256 differs (log %.12s..., replay %.12s...)",
                    x->rec.model_sha256, res->model_sha256);
    if (x->diverged) {
        char who[48] = "";
        if (x->d_client >= 0)
            snprintf(who, sizeof who, ", client %lld", (long long)x->d_client);
        fprintf(out, "replay of run %lld: divergent at round %u%s: %s\n", (long long)x->run_id,
                x->d_round, who, x->what);
        fp__report_causes(x, out);
        return;
    }
    fprintf(out,
            "replay of run %lld: exact: %u rounds, %llu included uploads and every round's "
            "metrics match the log",
            (long long)x->run_id, x->nrounds, (unsigned long long)x->uploads);
    if (x->rec.model_sha256 && x->rec.rounds_done == x->nrounds)
        fprintf(out, ", and the final model (sha256 %s)\n", res->model_sha256);
    else
        fprintf(out, " (the run stored no final model to compare)\n");
}

int fp_sim_replay(struct fp_store *store, int64_t run_id, const struct fp_replay_options *o,
                  struct fp_error *err)
{
    struct fp__replay x = {.run_id = run_id, .outer_stop = o->stop};
    struct fp_store *tmp = NULL;
    char dir[4096] = "", path[4200] = "";
    struct fp_scenario sc;
    int rc;
    char origin[64];
    snprintf(origin, sizeof origin, "run %lld's stored scenario", (long long)run_id);
    if ((rc = fp_store_load_record(store, run_id, &x.rec, err)) ||
        (rc = fp_scenario_load_string(&sc, x.rec.scenario, origin, NULL, 0, err)) ||
        (rc = fp__load_log(&x, store, &sc, err)))
        goto out;
    /* The replay's store is thrown away: no state checkpoints to write
     * (they change no bit of the run). */
    sc.checkpoint_every = 0;
    if ((rc = fp__tmp_store(dir, path, err)) || (rc = fp_store_open(&tmp, path, err)))
        goto out;
    if (o->progress)
        fprintf(o->progress, "[%s] replaying run %lld (%s, %u rounds logged) of %s; BLAS: %s\n",
                sc.name, (long long)run_id, x.rec.status, x.nrounds, fp_store_path(store),
                fp_blas_describe());
    const struct fp_sim_options so = {.threads = o->threads,
                                      .progress = o->progress,
                                      .stop = &x.stop,
                                      .participation = fp__participation,
                                      .participation_u = &x,
                                      .committed = fp__committed,
                                      .committed_u = &x};
    struct fp_run_result res;
    struct fp_error serr = {0};
    rc = fp_sim_run(&sc, tmp, &so, &res, &serr);
    if (rc && !x.diverged) {
        *err = serr;
        goto out;
    }
    if (x.interrupted) {
        rc = fp_error_set(err, FP_EINTR, "the replay of run %lld was stopped after round %u of %u",
                          (long long)run_id, res.rounds_done, x.nrounds);
        goto out;
    }
    fp__verdict(&x, &res, o->out);
    rc = x.diverged ? FP_REPLAY_DIVERGENT : FP_REPLAY_EXACT;
out:
    if (tmp)
        fp_store_close(tmp);
    if (dir[0])
        fp__tmp_remove(dir, path);
    fp_store_record_free(&x.rec);
    free(x.rounds);
    free(x.rows);
    return rc;
}
