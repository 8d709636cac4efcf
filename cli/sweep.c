/*
 * cli/sweep.c — `fedpress sweep`: a scenario run once for every
 * combination of --vary values, each combination a run of its own in the
 * store (skipped when done before, resumed when stopped), then a table of
 * the runs. The usage is cli/help.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/error.h"
#include "../core/scenario.h"
#include "../sim/sim.h"
#include "../store/store.h"
#include "args.h"
#include "cli.h"

/* Up to this many runs in one sweep: a typo in a --vary list should not
 * start a week of work. */
#define FP__SWEEP_MAX 10000

struct fp__vary {
    const char *key;   /* section.key */
    char *buf;         /* the values, split in place */
    const char **vals; /* n of them */
    size_t n;
};

/* Parses "section.key=v1,v2,..." into v; 0, or prints why and returns -1. */
static int fp__parse_vary(const char *arg, struct fp__vary *v)
{
    const char *eq = strchr(arg, '=');
    const char *dot = strchr(arg, '.');
    if (!eq || !dot || dot > eq || dot == arg || dot + 1 == eq || eq[1] == '\0') {
        fp_cli_usage_errorf("sweep: --vary '%s': expected section.key=value1,value2,...", arg);
        return -1;
    }
    v->buf = strdup(arg);
    size_t commas = 1;
    for (const char *c = eq; *c; c++)
        commas += *c == ',';
    v->vals = calloc(commas, sizeof *v->vals);
    if (!v->buf || !v->vals) {
        fprintf(stderr, "fedpress: out of memory\n");
        return -1;
    }
    v->buf[eq - arg] = '\0';
    v->key = v->buf;
    v->n = 0;
    for (char *tok = v->buf + (eq - arg) + 1;; tok++) {
        char *end = strchr(tok, ',');
        if (end)
            *end = '\0';
        if (*tok == '\0') {
            fp_cli_usage_errorf("sweep: --vary '%s': an empty value", arg);
            return -1;
        }
        v->vals[v->n++] = tok;
        if (!end)
            break;
        tok = end;
    }
    return 0;
}

/* The name of combination idx: "BASE-key=value-key=value" (keys without
 * their section), or "BASE-N" (N = idx + 1) when that is longer than a run
 * name may be. */
static void fp__sweep_name(char *out, size_t n, const char *base, const struct fp__vary *vs,
                           size_t nv, const size_t *pick, size_t idx)
{
    size_t len = (size_t)snprintf(out, n, "%s", base);
    for (size_t i = 0; i < nv && len < n; i++)
        len += (size_t)snprintf(out + len, n - len, "-%s=%s", strchr(vs[i].key, '.') + 1,
                                vs[i].vals[pick[i]]);
    if (len > 180 || strchr(out, ';'))
        snprintf(out, n, "%.160s-%zu", base, idx + 1);
}

struct fp__sweep_row {
    char *name;      /* the combination's run name */
    char *canon;     /* its canonical scenario text */
    int64_t id;      /* its run, 0 if none */
    const char *how; /* "done before", "completed", "resumed", "interrupted", "failed",
                      * "elsewhere" (another process is running it), "not run" */
    char acc[16], loss[24];
    uint64_t uplink;
    int listed;
};

struct fp__sweep_list {
    struct fp__sweep_row *rows;
    size_t n;
};

/* Fills the rows' numbers from one pass over the runs. */
static int fp__sweep_collect(void *u, const struct fp_run_info *r)
{
    struct fp__sweep_list *l = u;
    for (size_t i = 0; i < l->n; i++) {
        struct fp__sweep_row *row = &l->rows[i];
        if (row->id != r->id)
            continue;
        fp_cli_run_numbers(r, row->acc, sizeof row->acc, row->loss, sizeof row->loss);
        row->uplink = r->uplink_bytes;
        row->listed = 1;
    }
    return 0;
}

/* Builds combination idx's scenario (its --set list, then run.name) and
 * stores its name and canonical text in row. Returns 0, or an exit code
 * after printing why. */
static int fp__sweep_prepare(const char *file, const char **sets, size_t nsets,
                             const struct fp__vary *vs, size_t nv, const char *base, size_t idx,
                             struct fp__sweep_row *row)
{
    size_t pick[64];
    char name[512], *vset[65] = {0};
    int rc = FP_EXIT_RUNTIME;
    for (size_t i = nv, r = idx; i-- > 0; r /= vs[i].n)
        pick[i] = r % vs[i].n;
    fp__sweep_name(name, sizeof name, base, vs, nv, pick, idx);
    size_t k = nsets;
    for (size_t i = 0; i <= nv; i++) {
        const char *key = i < nv ? vs[i].key : "run.name";
        const char *val = i < nv ? vs[i].vals[pick[i]] : name;
        size_t len = strlen(key) + strlen(val) + 2;
        if (!(vset[i] = malloc(len))) {
            fprintf(stderr, "fedpress: sweep: out of memory\n");
            goto out;
        }
        snprintf(vset[i], len, "%s=%s", key, val);
        sets[k++] = vset[i];
    }
    struct fp_scenario sc;
    struct fp_error err = {0};
    int lrc = fp_scenario_load(&sc, file, sets, k, &err);
    if (lrc) {
        fprintf(stderr, "fedpress: sweep: %s: %s\n", name, err.msg);
        rc = fp_cli_load_exit(lrc);
        goto out;
    }
    if (!(row->canon = fp_scenario_canonical(&sc)) || !(row->name = strdup(name))) {
        fprintf(stderr, "fedpress: sweep: out of memory\n");
        goto out;
    }
    rc = 0;
out:
    for (size_t i = 0; i <= nv; i++)
        free(vset[i]);
    return rc;
}

/* Runs (or resumes, or skips) one prepared combination. Returns the run's
 * exit code (0 also when skipped). */
static int fp__sweep_one(struct fp_store *store, const struct fp_cli_run_opts *o, size_t idx,
                         size_t total, struct fp__sweep_row *row)
{
    struct fp_error err = {0};
    char status[16];
    int64_t id = 0;
    if (fp_store_find_run(store, row->canon, &id, status, sizeof status, &err)) {
        fprintf(stderr, "fedpress: %s\n", err.msg);
        return FP_EXIT_RUNTIME;
    }
    row->id = id;
    if (id && !strcmp(status, "completed")) {
        row->how = "done before";
        if (!o->quiet && !ferror(stderr))
            fprintf(stderr, "[sweep] %zu/%zu %s: completed before as run %lld\n", idx + 1, total,
                    row->name, (long long)id);
        return 0;
    }
    struct fp_resume resume = {0};
    struct fp_scenario sc;
    struct fp_run_result res = {.run_id = -1};
    int rc = FP_EXIT_RUNTIME;
    if (id) {
        /* started before and not completed: resume it, unless another
         * process holds it */
        int lrc = fp_cli_lock_run(store, id);
        if (lrc < 0) {
            row->how = "failed";
            return FP_EXIT_RUNTIME;
        }
        if (lrc == FP_STORE_HELD) {
            row->how = "elsewhere";
            fprintf(stderr, "[sweep] %zu/%zu %s: left to the process running it\n", idx + 1, total,
                    row->name);
            return 0;
        }
        if (fp_store_load_resume(store, id, &resume, &err)) {
            fprintf(stderr, "fedpress: %s\n", err.msg);
            row->how = "failed";
            goto out;
        }
        /* Read under the lock: the process that held it may have completed
         * the run since fp_store_find_run looked. */
        if (!strcmp(resume.status, "completed")) {
            row->how = "done before";
            rc = 0;
            goto out;
        }
        if (!o->quiet && !ferror(stderr))
            fprintf(stderr, "[sweep] %zu/%zu %s: resuming run %lld (%s)\n", idx + 1, total,
                    row->name, (long long)id, status);
        fp_cli_warn_resume_blas(&resume, (long long)id);
    } else if (!o->quiet && !ferror(stderr)) {
        fprintf(stderr, "[sweep] %zu/%zu %s\n", idx + 1, total, row->name);
    }
    if (fp_scenario_load_string(&sc, row->canon, row->name, NULL, 0, &err)) {
        fprintf(stderr, "fedpress: sweep: %s\n", err.msg);
        row->how = "failed";
        goto out;
    }
    rc = fp_cli_run_scenario(&sc, store, o->store_path, o->threads, o->quiet, NULL,
                             id ? &resume : NULL, id, &res);
    if (res.run_id > 0)
        row->id = res.run_id;
    row->how = rc == 0                     ? (id ? "resumed" : "completed")
               : rc == FP_EXIT_INTERRUPTED ? "interrupted"
                                           : "failed";
out:
    fp_store_resume_free(&resume);
    /* the run is done with (a new run was locked by fp_store_begin_run) */
    fp_store_unlock_run(store, row->id);
    return rc;
}

int fp_cli_sweep(int argc, char **argv)
{
    struct fp_cli_run_opts o;
    int rc = FP_EXIT_USAGE;
    struct fp__vary *vs = calloc((size_t)argc, sizeof *vs);
    struct fp__sweep_row *rows = NULL;
    struct fp_store *store = NULL;
    size_t nv = 0, total = 1;
    fp_cli_ignore_sigpipe();
    if (fp_cli_run_opts_init(&o, argc + 64) || !vs) {
        rc = FP_EXIT_RUNTIME;
        goto out;
    }
    for (int i = 2; i < argc; i++) {
        const char *v;
        int took = fp_cli_run_opt(argc, argv, &i, "sweep", &o);
        if (fp_cli_opt_ends(took, &rc))
            goto out;
        if (took)
            continue;
        if (fp_cli_is_opt(argv[i], "--vary")) {
            if (!(v = fp_cli_optval(argc, argv, &i, "--vary"))) {
                rc = fp_cli_usage_errorf("sweep: option '%s' needs a value", "--vary");
                goto out;
            }
            if (nv == 64) {
                rc = fp_cli_usage_errorf("sweep: more than %s --vary options", "64");
                goto out;
            }
            if (fp__parse_vary(v, &vs[nv++]))
                goto out;
        } else {
            rc = fp_cli_usage_errorf("sweep: unknown option '%s'", argv[i]);
            goto out;
        }
    }
    const char *file = o.file;
    if (!file || !nv) {
        rc = fp_cli_usage_errorf("sweep: %s",
                                 !file ? "no scenario file given"
                                       : "nothing to vary (give --vary section.key=a,b)");
        goto out;
    }
    for (size_t i = 0; i < nv; i++) {
        for (size_t j = 0; j < i; j++)
            if (!strcmp(vs[i].key, vs[j].key)) {
                rc = fp_cli_usage_errorf("sweep: %s is given to --vary twice", vs[i].key);
                goto out;
            }
        /* Each combination's --vary value is applied after the --set
         * overrides, so a --set of the same key would be silently lost. */
        size_t kl = strlen(vs[i].key);
        for (size_t j = 0; j < o.nsets; j++)
            if (!strncmp(o.sets[j], vs[i].key, kl) && o.sets[j][kl] == '=') {
                rc = fp_cli_usage_errorf("sweep: %s is given to both --set and --vary; give it to "
                                         "one of them",
                                         vs[i].key);
                goto out;
            }
        if (total > FP__SWEEP_MAX / vs[i].n) {
            fprintf(stderr, "fedpress: sweep: more than %d combinations\n", FP__SWEEP_MAX);
            goto out;
        }
        total *= vs[i].n;
    }

    /* Every combination's scenario, made and checked before anything runs;
     * the runs use these texts, so an edit to FILE meanwhile changes nothing. */
    struct fp_error err = {0};
    struct fp_scenario sc;
    int lrc = fp_scenario_load(&sc, file, o.sets, o.nsets, &err);
    if (lrc) {
        fprintf(stderr, "fedpress: %s\n", err.msg);
        rc = fp_cli_load_exit(lrc);
        goto out;
    }
    char base[sizeof sc.name];
    snprintf(base, sizeof base, "%s", sc.name);
    if (!(rows = calloc(total, sizeof *rows))) {
        rc = FP_EXIT_RUNTIME;
        goto out;
    }
    for (size_t idx = 0; idx < total; idx++) {
        rows[idx].how = "not run";
        if ((rc = fp__sweep_prepare(file, o.sets, o.nsets, vs, nv, base, idx, &rows[idx])))
            goto out;
    }
    if (o.dry_run) {
        if (access(o.store_path, F_OK) == 0 &&
            fp_cli_open_store(&store, o.store_path, FP_CLI_STORE_READ)) {
            rc = FP_EXIT_RUNTIME;
            goto out;
        }
        for (size_t idx = 0; idx < total; idx++) {
            char status[16] = "";
            int64_t id = 0;
            if (store &&
                fp_store_find_run(store, rows[idx].canon, &id, status, sizeof status, &err)) {
                fprintf(stderr, "fedpress: %s\n", err.msg);
                rc = FP_EXIT_RUNTIME;
                goto out;
            }
            if (id)
                printf("%zu/%zu  %s  (%s: run %lld)\n", idx + 1, total, rows[idx].name,
                       !strcmp(status, "completed") ? "done" : status, (long long)id);
            else
                printf("%zu/%zu  %s\n", idx + 1, total, rows[idx].name);
        }
        rc = 0;
        goto out;
    }
    if (fp_cli_open_store(&store, o.store_path, FP_CLI_STORE_CREATE)) {
        rc = FP_EXIT_RUNTIME;
        goto out;
    }
    int failed = 0;
    rc = 0;
    for (size_t idx = 0; idx < total; idx++) {
        if (fp_cli_stop) { /* Ctrl-C between two runs */
            rc = FP_EXIT_INTERRUPTED;
            break;
        }
        int one = fp__sweep_one(store, &o, idx, total, &rows[idx]);
        if (one == FP_EXIT_INTERRUPTED) {
            rc = one;
            break;
        }
        failed += one != 0;
    }
    /* the table, in sweep order, from one pass over the store's runs */
    struct fp__sweep_list list = {rows, total};
    if (fp_store_list_runs(store, fp__sweep_collect, &list, &err))
        fprintf(stderr, "fedpress: %s\n", err.msg);
    printf("%5s  %-11s  %9s  %10s  %14s  %s\n", "run", "how", "final_acc", "final_loss",
           "uplink_bytes", "name");
    for (size_t idx = 0; idx < total; idx++) {
        const struct fp__sweep_row *r = &rows[idx];
        if (!r->listed) {
            printf("%5s  %-11s  %9s  %10s  %14s  %s\n", "-", r->how, "-", "-", "-", r->name);
            continue;
        }
        printf("%5lld  %-11s  %9s  %10s  %14llu  %s\n", (long long)r->id, r->how, r->acc, r->loss,
               (unsigned long long)r->uplink, r->name);
    }
    if (failed)
        fprintf(stderr, "fedpress: sweep: %d of %zu runs failed\n", failed, total);
    if (rc == 0 && failed)
        rc = FP_EXIT_RUNTIME;
out:
    if (store)
        fp_store_close(store);
    for (size_t i = 0; rows && i < total; i++) {
        free(rows[i].name);
        free(rows[i].canon);
    }
    free(rows);
    for (size_t i = 0; vs && i < nv; i++) {
        free(vs[i].buf);
        free(vs[i].vals);
    }
    free(vs);
    free(o.sets);
    return rc;
}
