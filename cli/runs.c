/*
 * cli/runs.c — `fedpress runs`: the runs of a store, one line each, as a
 * table, CSV or JSON (cli/output.c). The store is opened read-only.
 *
 * Why a run failed (runs.error, schema 6) comes after the columns older
 * scripts parse: a line of its own under the run's row in the table, a
 * last column in CSV, a last key in JSON. A store older than schema 6
 * recorded no reasons: it gets neither the column nor the key, so that
 * "none" is never printed for "not recorded".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/error.h"
#include "../store/store.h"
#include "args.h"
#include "cli.h"

struct fp__runs_ctx {
    enum fp_cli_fmt fmt;
    int first;
    int width;              /* of the name column (table) */
    struct fp_store *store; /* has_error: to read runs.error */
    int has_error;
    struct fp_error *err;
};

static int fp__name_width(void *u, const struct fp_run_info *r)
{
    struct fp__runs_ctx *c = u;
    int n = (int)strlen(r->name);
    if (n > c->width)
        c->width = n > 80 ? 80 : n;
    return 0;
}

static int fp__print_run(void *u, const struct fp_run_info *r)
{
    struct fp__runs_ctx *c = u;
    char acc[16], loss[24], *error = NULL;
    const char *comp = r->compressor ? r->compressor : "-";
    int rc = c->has_error ? fp_store_run_error(c->store, r->id, &error, c->err) : 0;
    if (rc)
        return rc; /* negative: fp_store_list_runs returns it, c->err says why */
    switch (c->fmt) {
    case FP_FMT_TABLE:
        fp_cli_run_numbers(r, acc, sizeof acc, loss, sizeof loss);
        printf("%5lld  %-*s  %-10s  %-12s  %5u/%-5u  %9s  %10s  %14llu  %s\n", (long long)r->id,
               c->width, r->name, r->algorithm, comp, r->rounds_done, r->rounds_planned, acc, loss,
               (unsigned long long)r->uplink_bytes, r->status);
        if (error) {
            printf("%5s  error: ", "");
            fp_cli_line_str(error);
            putchar('\n');
        }
        break;
    case FP_FMT_CSV:
        printf("%lld,", (long long)r->id);
        fp_cli_csv_str(r->name);
        printf(",%s,%s,%u,%u,", r->algorithm, comp, r->rounds_done, r->rounds_planned);
        fp_cli_num(c->fmt, r->final_accuracy, "%.9g", 0);
        putchar(',');
        fp_cli_num(c->fmt, r->final_loss, "%.9g", 0);
        printf(",%llu,%s", (unsigned long long)r->uplink_bytes, r->status);
        if (c->has_error) {
            putchar(',');
            fp_cli_csv_str(error);
        }
        putchar('\n');
        break;
    case FP_FMT_JSON:
        printf("%s\n  {\"id\": %lld, \"name\": ", c->first ? "" : ",", (long long)r->id);
        fp_cli_json_str(r->name);
        printf(", \"algorithm\": \"%s\", \"compressor\": \"%s\", \"rounds_done\": %u, "
               "\"rounds_planned\": %u, \"final_accuracy\": ",
               r->algorithm, comp, r->rounds_done, r->rounds_planned);
        fp_cli_num(c->fmt, r->final_accuracy, "%.9g", 0);
        printf(", \"final_loss\": ");
        fp_cli_num(c->fmt, r->final_loss, "%.9g", 0);
        printf(", \"uplink_bytes\": %llu, \"status\": \"%s\"", (unsigned long long)r->uplink_bytes,
               r->status);
        if (c->has_error) {
            printf(", \"error\": ");
            if (error)
                fp_cli_json_str(error);
            else
                printf("null");
        }
        putchar('}');
        break;
    }
    free(error);
    c->first = 0;
    return fp_cli_out_failed(); /* 1: stop listing; main reports it */
}

int fp_cli_runs(int argc, char **argv)
{
    const char *store_path = "runs.db";
    struct fp_error err = {0};
    struct fp__runs_ctx c = {.fmt = FP_FMT_TABLE, .first = 1, .width = 4, .err = &err};
    for (int i = 2; i < argc; i++) {
        int took = fp_cli_list_opt(argc, argv, &i, "runs", &store_path, &c.fmt), rc;
        if (fp_cli_opt_ends(took, &rc))
            return rc;
        if (!took)
            return fp_cli_usage_errorf("runs: unexpected argument '%s'", argv[i]);
    }
    struct fp_store *store;
    if (fp_cli_open_store(&store, store_path, FP_CLI_STORE_READ))
        return FP_EXIT_RUNTIME;
    c.store = store;
    c.has_error = fp_store_has_attempts(store);
    int rc = 0;
    if (c.fmt == FP_FMT_TABLE) {
        rc = fp_store_list_runs(store, fp__name_width, &c, &err);
        if (!rc)
            printf("%5s  %-*s  %-10s  %-12s  %11s  %9s  %10s  %14s  %s\n", "id", c.width, "name",
                   "algorithm", "compressor", "rounds", "final_acc", "final_loss", "uplink_bytes",
                   "status");
    } else if (c.fmt == FP_FMT_CSV) {
        printf("id,name,algorithm,compressor,rounds_done,rounds_planned,final_accuracy,"
               "final_loss,uplink_bytes,status%s\n",
               c.has_error ? ",error" : "");
    } else {
        printf("[");
    }
    if (!rc)
        rc = fp_store_list_runs(store, fp__print_run, &c, &err);
    if (c.fmt == FP_FMT_JSON)
        printf("%s]\n", c.first ? "" : "\n");
    if (rc)
        fprintf(stderr, "fedpress: %s\n", err.msg);
    fp_store_close(store);
    return rc ? FP_EXIT_RUNTIME : 0;
}
