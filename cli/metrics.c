/*
 * cli/metrics.c — `fedpress metrics RUN`: a run's rounds, or with
 * --clients / --client ID its sampled clients, or with --attempts the
 * sampled clients of its failed attempts (schema 6), as a table, CSV or
 * JSON (cli/output.c). The store is opened read-only.
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/error.h"
#include "../store/store.h"
#include "args.h"
#include "cli.h"

struct fp__metrics_ctx {
    enum fp_cli_fmt fmt;
    int first;
};

static int fp__print_round(void *u, const struct fp_round *r)
{
    struct fp__metrics_ctx *m = u;
    switch (m->fmt) {
    case FP_FMT_TABLE:
        printf("%6u  ", r->round);
        fp_cli_num(m->fmt, r->train_loss, "%.9g", 11);
        printf("  ");
        fp_cli_num(m->fmt, r->test_loss, "%.9g", 11);
        printf("  ");
        fp_cli_num(m->fmt, r->test_accuracy, "%.9g", 13);
        printf("  %14llu  %14llu  %12u  %9.1f\n", (unsigned long long)r->uplink_bytes,
               (unsigned long long)r->downlink_bytes, r->participants, r->wall_ms);
        break;
    case FP_FMT_CSV:
        printf("%u,", r->round);
        fp_cli_num(m->fmt, r->train_loss, "%.9g", 0);
        printf(",");
        fp_cli_num(m->fmt, r->test_loss, "%.9g", 0);
        printf(",");
        fp_cli_num(m->fmt, r->test_accuracy, "%.9g", 0);
        printf(",%llu,%llu,%u,%.3f\n", (unsigned long long)r->uplink_bytes,
               (unsigned long long)r->downlink_bytes, r->participants, r->wall_ms);
        break;
    case FP_FMT_JSON:
        printf("%s\n  {\"round\": %u, \"train_loss\": ", m->first ? "" : ",", r->round);
        fp_cli_num(m->fmt, r->train_loss, "%.9g", 0);
        printf(", \"test_loss\": ");
        fp_cli_num(m->fmt, r->test_loss, "%.9g", 0);
        printf(", \"test_accuracy\": ");
        fp_cli_num(m->fmt, r->test_accuracy, "%.9g", 0);
        printf(", \"uplink_bytes\": %llu, \"downlink_bytes\": %llu, \"participants\": %u, "
               "\"wall_ms\": %.3f}",
               (unsigned long long)r->uplink_bytes, (unsigned long long)r->downlink_bytes,
               r->participants, r->wall_ms);
        break;
    }
    m->first = 0;
    return fp_cli_out_failed();
}

static int fp__print_client(void *u, uint32_t round, const struct fp_client_round *c)
{
    struct fp__metrics_ctx *m = u;
    switch (m->fmt) {
    case FP_FMT_TABLE:
        printf("%6u  %8u  ", round, c->client);
        fp_cli_num(m->fmt, c->train_loss, "%.9g", 11);
        printf("  %14llu  %14llu  %9u  %-8s  %s\n", (unsigned long long)c->uplink_bytes,
               (unsigned long long)c->downlink_bytes, c->examples, fp_client_status_name(c->status),
               c->reason);
        break;
    case FP_FMT_CSV:
        printf("%u,%u,", round, c->client);
        fp_cli_num(m->fmt, c->train_loss, "%.9g", 0);
        printf(",%llu,%llu,%u,%s,%s,", (unsigned long long)c->uplink_bytes,
               (unsigned long long)c->downlink_bytes, c->examples, c->upload_sha256,
               fp_client_status_name(c->status));
        fp_cli_csv_str(c->reason);
        printf("\n");
        break;
    case FP_FMT_JSON:
        printf("%s\n  {\"round\": %u, \"client\": %u, \"train_loss\": ", m->first ? "" : ",", round,
               c->client);
        fp_cli_num(m->fmt, c->train_loss, "%.9g", 0);
        printf(", \"uplink_bytes\": %llu, \"downlink_bytes\": %llu, \"examples\": %u, "
               "\"upload_sha256\": ",
               (unsigned long long)c->uplink_bytes, (unsigned long long)c->downlink_bytes,
               c->examples);
        if (c->upload_sha256[0])
            printf("\"%s\"", c->upload_sha256);
        else
            printf("null");
        printf(", \"status\": \"%s\", \"reason\": ", fp_client_status_name(c->status));
        if (c->reason[0])
            fp_cli_json_str(c->reason);
        else
            printf("null");
        printf("}");
        break;
    }
    m->first = 0;
    return fp_cli_out_failed();
}

static int fp__print_attempt(void *u, const struct fp_attempt_info *a,
                             const struct fp_client_round *c)
{
    struct fp__metrics_ctx *m = u;
    const char *closed = a->closed_at ? a->closed_at : "", *st = fp_attempt_status_name(c->status);
    switch (m->fmt) {
    case FP_FMT_TABLE:
        printf("%6u  %7u  %-24s  %5u/%-5u  %8u  %-8s  ", a->round, a->attempt, closed, a->uploads,
               a->min_updates, c->client, st);
        fp_cli_line_str(c->reason);
        putchar('\n');
        break;
    case FP_FMT_CSV:
        printf("%u,%u,%s,%u,%u,%u,%s,", a->round, a->attempt, closed, a->uploads, a->min_updates,
               c->client, st);
        fp_cli_csv_str(c->reason);
        putchar('\n');
        break;
    case FP_FMT_JSON:
        printf("%s\n  {\"round\": %u, \"attempt\": %u, \"closed_at\": ", m->first ? "" : ",",
               a->round, a->attempt);
        fp_cli_json_str(closed);
        printf(", \"uploads\": %u, \"min_updates\": %u, \"client\": %u, \"status\": \"%s\", "
               "\"reason\": ",
               a->uploads, a->min_updates, c->client, st);
        if (c->reason[0])
            fp_cli_json_str(c->reason);
        else
            printf("null");
        putchar('}');
        break;
    }
    m->first = 0;
    return fp_cli_out_failed();
}

/* The failed attempts of a run, counted for the hint below. */
struct fp__attempt_count {
    int64_t last_id;
    unsigned attempts, rounds;
    uint32_t last_round, first, final;
};

static int fp__count_attempt(void *u, const struct fp_attempt_info *a,
                             const struct fp_client_round *c)
{
    struct fp__attempt_count *n = u;
    (void)c;
    if (n->attempts && a->id == n->last_id)
        return 0;
    if (!n->attempts || a->round != n->last_round)
        n->rounds++; /* attempts of one round close one after another */
    if (!n->attempts || a->round < n->first)
        n->first = a->round;
    if (a->round > n->final)
        n->final = a->round;
    n->attempts++;
    n->last_id = a->id;
    n->last_round = a->round;
    return 0;
}

/* The rounds and client listings hold committed rounds only: a run whose
 * rounds failed attempts before (or instead of) committing says so on
 * stderr, where it breaks no parser of the output. The listing asked for
 * is whole without it: a hint that cannot be read is a warning, not an
 * exit 1. */
static void fp__hint_attempts(struct fp_store *store, const char *store_path, long long id)
{
    struct fp_error err = {0};
    struct fp__attempt_count n = {0};
    if (!fp_store_has_attempts(store))
        return;
    if (fp_store_list_attempts(store, id, fp__count_attempt, &n, &err)) {
        fprintf(stderr, "fedpress: warning: counting the run's failed attempts: %s\n", err.msg);
        return;
    }
    if (!n.attempts)
        return;
    char where[48];
    if (n.rounds == 1)
        snprintf(where, sizeof where, "round %u", n.first);
    else
        snprintf(where, sizeof where, "%u rounds, %u to %u", n.rounds, n.first, n.final);
    fprintf(stderr,
            "fedpress: note: run %lld has %u failed attempt%s (below [participation] "
            "min_updates) in %s, not listed here: see 'fedpress metrics %lld --attempts "
            "--store %s'\n",
            id, n.attempts, n.attempts == 1 ? "" : "s", where, id, store_path);
}

static int fp__any_row(void *u, uint32_t round, const struct fp_client_round *c)
{
    (void)round;
    (void)c;
    *(int *)u = 1;
    return 1; /* one is enough */
}

struct fp__run_lookup {
    int64_t id;
    int found;
    uint32_t clients, rounds_done;
    char name[64]; /* enough to recognise it in a message */
};

static int fp__find_run_info(void *u, const struct fp_run_info *r)
{
    struct fp__run_lookup *l = u;
    if (r->id != l->id)
        return 0;
    l->found = 1;
    l->clients = r->clients;
    l->rounds_done = r->rounds_done;
    snprintf(l->name, sizeof l->name, "%s", r->name);
    return 1;
}

/* --client ID of a run ID never took part in: a client outside the run's
 * 0 .. N-1 is an error (exit 1; an empty table would look like an answer);
 * one inside it that was never sampled gets an empty table (a true answer,
 * so a script going over every client keeps working) and a note on stderr
 * saying why it is empty. Returns 0 or the exit code. */
static int fp__check_client(struct fp_store *store, const char *store_path, long long id,
                            long long client)
{
    struct fp_error err = {0};
    int any = 0;
    if (fp_store_list_client_rounds(store, id, client, fp__any_row, &any, &err)) {
        fprintf(stderr, "fedpress: %s\n", err.msg);
        return FP_EXIT_RUNTIME;
    }
    if (any)
        return 0;
    struct fp__run_lookup l = {.id = id};
    if (fp_store_list_runs(store, fp__find_run_info, &l, &err)) {
        fprintf(stderr, "fedpress: %s\n", err.msg);
        return FP_EXIT_RUNTIME;
    }
    if (l.clients && client >= l.clients) {
        fprintf(stderr,
                "fedpress: run %lld ('%s') in %s has clients 0 to %u: there is no client %lld\n",
                id, l.name, store_path, l.clients - 1, client);
        return FP_EXIT_RUNTIME;
    }
    fprintf(stderr,
            "fedpress: note: client %lld of run %lld ('%s') took part in none of its %u stored "
            "round%s (never sampled): the table is empty\n",
            client, id, l.name, l.rounds_done, l.rounds_done == 1 ? "" : "s");
    return 0;
}

/* The header line (table, csv) or the opening bracket (json) of a listing;
 * a table's header is aligned with its rows' printf widths. */
static void fp__begin_listing(enum fp_cli_fmt fmt, const char *table, const char *csv)
{
    fputs(fmt == FP_FMT_TABLE ? table : fmt == FP_FMT_CSV ? csv : "[", stdout);
}

/* The end of a listing that returned rc: json's closing bracket, the
 * error. Returns the exit code. */
static int fp__end_listing(const struct fp__metrics_ctx *m, int rc, const struct fp_error *err)
{
    if (m->fmt == FP_FMT_JSON)
        printf("%s]\n", m->first ? "" : "\n");
    if (rc)
        fprintf(stderr, "fedpress: %s\n", err->msg);
    return rc ? FP_EXIT_RUNTIME : 0;
}

/* --attempts. A store older than schema 6 recorded none: an empty listing
 * (a true answer for what it holds) and a note saying why. */
static int fp__list_attempts(struct fp_store *store, const char *store_path, long long id,
                             struct fp__metrics_ctx *m)
{
    struct fp_error err = {0};
    int rc = 0;
    fp__begin_listing(m->fmt,
                      " round  attempt  closed_at                 uploads/min    client  status  "
                      "  reason\n",
                      "round,attempt,closed_at,uploads,min_updates,client,status,reason\n");
    if (fp_store_has_attempts(store))
        rc = fp_store_list_attempts(store, id, fp__print_attempt, m, &err);
    else
        fprintf(stderr,
                "fedpress: note: run store %s is older than schema 6, which began to record "
                "failed attempts: it holds none (opening it once with fedpress sim or sweep "
                "upgrades it; the attempts of runs before that were never stored)\n",
                store_path);
    return fp__end_listing(m, rc, &err);
}

/* The committed rounds, or with clients their sampled clients (client >= 0:
 * that one's rows), then the hint about failed attempts. */
static int fp__list_committed(struct fp_store *store, const char *store_path, long long id,
                              int clients, long long client, struct fp__metrics_ctx *m)
{
    struct fp_error err = {0};
    int rc;
    if (clients) {
        fp__begin_listing(m->fmt,
                          " round    client   train_loss    uplink_bytes  downlink_bytes   "
                          "examples  status    reason\n",
                          "round,client,train_loss,uplink_bytes,downlink_bytes,examples,"
                          "upload_sha256,status,reason\n");
        rc = fp_store_list_client_rounds(store, id, client, fp__print_client, m, &err);
    } else {
        fp__begin_listing(m->fmt,
                          " round   train_loss    test_loss  test_accuracy    uplink_bytes  "
                          "downlink_bytes  participants    wall_ms\n",
                          "round,train_loss,test_loss,test_accuracy,uplink_bytes,downlink_bytes,"
                          "participants,wall_ms\n");
        rc = fp_store_list_rounds(store, id, fp__print_round, m, &err);
    }
    rc = fp__end_listing(m, rc, &err);
    if (!rc)
        fp__hint_attempts(store, store_path, id);
    return rc;
}

int fp_cli_metrics(int argc, char **argv)
{
    const char *store_path = "runs.db", *run = NULL;
    struct fp__metrics_ctx m = {FP_FMT_TABLE, 1};
    int clients = 0, attempts = 0;
    long long client = -1;
    for (int i = 2; i < argc; i++) {
        const char *v;
        int took = fp_cli_list_opt(argc, argv, &i, "metrics", &store_path, &m.fmt), rc;
        if (fp_cli_opt_ends(took, &rc))
            return rc;
        if (took)
            continue;
        if (!strcmp(argv[i], "--clients")) {
            clients = 1;
        } else if (!strcmp(argv[i], "--attempts")) {
            attempts = 1;
        } else if (fp_cli_is_opt(argv[i], "--client")) {
            if (!(v = fp_cli_optval(argc, argv, &i, "--client")))
                return fp_cli_usage_errorf("metrics: option '%s' needs a value", "--client");
            char *cend;
            errno = 0;
            client = strtoll(v, &cend, 10);
            if (!isdigit((unsigned char)*v) || *cend != '\0' || errno || client > UINT32_MAX)
                return fp_cli_usage_errorf(
                    "metrics: --client '%s': expected a client id (0, 1, ...)", v);
            clients = 1;
        } else if (argv[i][0] == '-') {
            return fp_cli_usage_errorf("metrics: unknown option '%s'", argv[i]);
        } else if (!run) {
            run = argv[i];
        } else {
            return fp_cli_usage_errorf("metrics: unexpected argument '%s'", argv[i]);
        }
    }
    if (!run)
        return fp_cli_usage_errorf("metrics: %s", "no run id given (see 'fedpress runs')");
    if (attempts && clients)
        return fp_cli_usage_errorf("metrics: %s",
                                   "--attempts lists the failed attempts, --clients and --client "
                                   "the committed rounds: give one of them");
    long long id = fp_cli_run_id(run);
    if (id < 0)
        return fp_cli_usage_errorf("metrics: run '%s': expected a run id (see 'fedpress runs')",
                                   run);

    struct fp_store *store;
    if (fp_cli_open_store(&store, store_path, FP_CLI_STORE_READ))
        return FP_EXIT_RUNTIME;
    struct fp_error err = {0};
    int rc = fp_store_run_exists(store, id, &err);
    if (rc) {
        if (rc == FP_ENOTFOUND)
            fprintf(stderr, "fedpress: no run %lld in %s (see 'fedpress runs --store %s')\n", id,
                    store_path, store_path);
        else
            fprintf(stderr, "fedpress: %s\n", err.msg);
        fp_store_close(store);
        return FP_EXIT_RUNTIME;
    }
    if (client >= 0 && (rc = fp__check_client(store, store_path, id, client))) {
        fp_store_close(store);
        return rc;
    }
    if (attempts)
        rc = fp__list_attempts(store, store_path, id, &m);
    else
        rc = fp__list_committed(store, store_path, id, clients, client, &m);
    fp_store_close(store);
    return rc;
}
