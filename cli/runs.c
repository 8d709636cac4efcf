/*
 * cli/runs.c — `fedpress runs`: the runs of a store, one line each, as a
 * table, CSV or JSON (cli/output.c). The store is opened read-only.
 */
#include <stdio.h>
#include <string.h>

#include "../core/error.h"
#include "../store/store.h"
#include "args.h"
#include "cli.h"

struct fp__runs_ctx {
    enum fp_cli_fmt fmt;
    int first;
    int width; /* of the name column (table) */
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
    char acc[16], loss[24];
    const char *comp = r->compressor ? r->compressor : "-";
    switch (c->fmt) {
    case FP_FMT_TABLE:
        fp_cli_run_numbers(r, acc, sizeof acc, loss, sizeof loss);
        printf("%5lld  %-*s  %-10s  %-12s  %5u/%-5u  %9s  %10s  %14llu  %s\n", (long long)r->id,
               c->width, r->name, r->algorithm, comp, r->rounds_done, r->rounds_planned, acc, loss,
               (unsigned long long)r->uplink_bytes, r->status);
        break;
    case FP_FMT_CSV:
        printf("%lld,", (long long)r->id);
        fp_cli_csv_str(r->name);
        printf(",%s,%s,%u,%u,", r->algorithm, comp, r->rounds_done, r->rounds_planned);
        fp_cli_num(c->fmt, r->final_accuracy, "%.9g", 0);
        putchar(',');
        fp_cli_num(c->fmt, r->final_loss, "%.9g", 0);
        printf(",%llu,%s\n", (unsigned long long)r->uplink_bytes, r->status);
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
        printf(", \"uplink_bytes\": %llu, \"status\": \"%s\"}", (unsigned long long)r->uplink_bytes,
               r->status);
        break;
    }
    c->first = 0;
    return fp_cli_out_failed(); /* 1: stop listing; main reports it */
}

int fp_cli_runs(int argc, char **argv)
{
    const char *store_path = "runs.db";
    struct fp__runs_ctx c = {FP_FMT_TABLE, 1, 4};
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
    struct fp_error err = {0};
    int rc = 0;
    if (c.fmt == FP_FMT_TABLE) {
        rc = fp_store_list_runs(store, fp__name_width, &c, &err);
        if (!rc)
            printf("%5s  %-*s  %-10s  %-12s  %11s  %9s  %10s  %14s  %s\n", "id", c.width, "name",
                   "algorithm", "compressor", "rounds", "final_acc", "final_loss", "uplink_bytes",
                   "status");
    } else if (c.fmt == FP_FMT_CSV) {
        printf("id,name,algorithm,compressor,rounds_done,rounds_planned,final_accuracy,"
               "final_loss,uplink_bytes,status\n");
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
