/*
 * cli/runner.c — what `fedpress sim` and `fedpress sweep` share to run a
 * scenario (cli.h): their common options, the signals that stop a run, the
 * warning when a resumed run's BLAS kernels changed, and one run into the
 * store between its header and summary lines.
 */
#include <ctype.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../core/blas.h"
#include "../core/error.h"
#include "../core/format.h"
#include "../core/scenario.h"
#include "../sim/sim.h"
#include "../store/store.h"
#include "args.h"
#include "cli.h"

volatile sig_atomic_t fp_cli_stop;

/* A resumed run is bit-identical to an uninterrupted one only with the same
 * BLAS library and kernels (docs/architecture.md, "BLAS kernels"); the store
 * keeps the ones the run began with (runs.blas). Different ones now (another
 * machine, an OpenBLAS upgrade, fedpress's own choice of core, another
 * OPENBLAS_CORETYPE): say so, and how to pin the run's. */
void fp_cli_warn_resume_blas(const struct fp_resume *r, long long id)
{
    const char *now = fp_blas_describe();
    if (!r->blas || ferror(stderr))
        return; /* not recorded (an older store): nothing to compare */
    /* "OpenBLAS 0.3.21 SkylakeX (how it was chosen)": the part before " (" */
    size_t a = strcspn(r->blas, "("), b = strcspn(now, "(");
    while (a && r->blas[a - 1] == ' ')
        a--;
    while (b && now[b - 1] == ' ')
        b--;
    if (a == b && !strncmp(r->blas, now, a))
        return;
    char core[64] = "";
    const char *w = strchr(r->blas, ' ');
    if (w && (w = strchr(w + 1, ' ')))
        snprintf(core, sizeof core, "%.*s", (int)strcspn(w + 1, " ("), w + 1);
    fprintf(stderr,
            "fedpress: warning: run %lld began with BLAS %.*s, this process runs %.*s: other "
            "kernels round differently, so the resumed run may not end with the model it would "
            "have ended with (docs/architecture.md, \"BLAS kernels\"); to keep its kernels, "
            "resume with the same OpenBLAS and OPENBLAS_CORETYPE=%s\n",
            id, (int)a, r->blas, (int)b, now, core[0] ? core : "?");
}

static void fp__on_signal(int sig)
{
    (void)sig;
    fp_cli_stop = 1;
}

/* SIGINT, SIGTERM and SIGHUP (a closed terminal, a dropped ssh session)
 * stop a run the same way: the round in progress is finished and committed,
 * the state saved, the run marked 'interrupted', exit 130. A second SIGINT or
 * SIGTERM kills at once (SA_RESETHAND); a second SIGHUP does not, because a
 * hangup often delivers two (the kernel to the terminal's foreground group,
 * the shell to its jobs) and the second must not kill the run before its
 * state is saved. A SIGHUP ignored from the start (nohup) stays ignored. */
void fp_cli_catch_stop_signals(void)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fp__on_signal;
    sa.sa_flags = (int)SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_flags = 0;
    if (sigaction(SIGHUP, NULL, &old) == 0 && old.sa_handler != SIG_IGN)
        sigaction(SIGHUP, &sa, NULL);
}

/* sim and sweep run for hours: a reader that goes away (`| head -1`) must
 * not kill them between two commits and leave the run 'running' with no
 * state. With SIGPIPE ignored a write to a closed pipe fails with EPIPE
 * instead: the progress lines stop (fp_sim_run drops them after the first
 * failure), the run goes on and commits, and the summary's failure makes the
 * exit code 1. An explicit `kill -PIPE` is then ignored too: SIGPIPE means
 * "your reader is gone", which a failed write tells us anyway; stop a run
 * with SIGINT, SIGTERM or SIGHUP. */
void fp_cli_ignore_sigpipe(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* The same for a file-size limit (ulimit -f): SIGXFSZ would kill the run
     * in the middle of a store write and leave it 'running' without a word;
     * ignored, the write fails with EFBIG and the run stops with a message,
     * as on a full disk. */
    signal(SIGXFSZ, SIG_IGN);
}

int fp_cli_load_exit(int lrc)
{
    return lrc == FP_EIO || lrc == FP_ENOMEM ? FP_EXIT_RUNTIME : FP_EXIT_USAGE;
}

int fp_cli_run_opts_init(struct fp_cli_run_opts *o, int argc)
{
    memset(o, 0, sizeof *o);
    o->store_path = "runs.db";
    /* Results do not depend on the thread count, so use every core. */
    o->threads = uv_available_parallelism();
    if (o->threads > 256)
        o->threads = 256;
    o->sets = calloc((size_t)argc + 1, sizeof *o->sets);
    return o->sets ? 0 : -1;
}

int fp_cli_run_opt(int argc, char **argv, int *i, const char *cmd, struct fp_cli_run_opts *o)
{
    const char *v, *opt = argv[*i];
    if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
        fp_cli_help(stdout);
        return FP_CLI_OPT_HELP;
    } else if (opt[0] != '-') {
        if (o->file) {
            fprintf(stderr,
                    "fedpress: %s: more than one scenario file given ('%s')\n"
                    "(run 'fedpress help' for usage)\n",
                    cmd, opt);
            return -FP_EXIT_USAGE;
        }
        o->file = opt;
    } else if (fp_cli_is_opt(opt, "--set")) {
        if (!(v = fp_cli_optval(argc, argv, i, "--set")))
            goto missing;
        o->sets[o->nsets++] = v;
    } else if (fp_cli_is_opt(opt, "--threads")) {
        char *end;
        if (!(v = fp_cli_optval(argc, argv, i, "--threads")))
            goto missing;
        o->threads = strtoul(v, &end, 10);
        /* digits only: strtoul would take " 4", "+4" and "-1" (as ULONG_MAX) */
        if (!isdigit((unsigned char)*v) || *end != '\0' || o->threads < 1 || o->threads > 256)
            return -fp_cli_usage_errorf("--threads '%s': expected an integer in [1, 256]", v);
    } else if (fp_cli_is_opt(opt, "--store")) {
        if (!(o->store_path = fp_cli_optval(argc, argv, i, "--store")))
            goto missing;
    } else if (!strcmp(opt, "--quiet") || !strcmp(opt, "-q")) {
        o->quiet = 1;
    } else if (!strcmp(opt, "--dry-run")) {
        o->dry_run = 1;
    } else {
        return 0;
    }
    return 1;
missing:
    fprintf(stderr, "fedpress: %s: option '%s' needs a value\n(run 'fedpress help' for usage)\n",
            cmd, opt);
    return -FP_EXIT_USAGE;
}

int fp_cli_run_scenario(const struct fp_scenario *sc, struct fp_store *store,
                        const char *store_path, unsigned long threads, int quiet,
                        const char *model_out, struct fp_resume *resume, int64_t resume_id,
                        struct fp_run_result *res)
{
    struct fp_error err = {0};
    fp_cli_catch_stop_signals();
    /* stderr gone (a closed terminal, a reader gone): no more lines for it */
    quiet = quiet || ferror(stderr);

    struct fp_sim_options opt = {.threads = (unsigned)threads,
                                 .progress = quiet ? NULL : stderr,
                                 .stop = &fp_cli_stop,
                                 .model_out = model_out,
                                 .resume = resume,
                                 .resume_run = resume_id};
    if (!quiet) {
        char cname[64];
        fprintf(stderr,
                "[%s] %s (uplink %s) on %s: %u clients, %u per round, %u rounds, %lu thread%s, "
                "store %s\n[%s] BLAS: %s\n",
                sc->name, fp_algo_name(sc->algorithm),
                fp_comp_name(&sc->uplink, cname, sizeof cname), fp_dataset_name(sc->dataset),
                sc->clients, sc->sample, sc->rounds, threads, threads == 1 ? "" : "s", store_path,
                sc->name, fp_blas_describe());
    }
    if (resume && !quiet)
        fprintf(stderr, "[%s] resuming run %lld after round %u (its newest checkpoint)\n", sc->name,
                (long long)resume_id, resume->state ? resume->round : 0u);
    if (fp_sim_run(sc, store, &opt, res, &err)) {
        fprintf(stderr, "fedpress: %s\n", err.msg);
        /* An error after the run's final status was stored (writing
         * --model-out) leaves the run as it ended; err says where its model is. */
        if (res->run_id >= 0 && !res->stored_status)
            fprintf(stderr,
                    "fedpress: run %lld could not be marked 'failed' in %s: it stays 'running' "
                    "there\n",
                    (long long)res->run_id, store_path);
        else if (res->run_id >= 0 && !strcmp(res->stored_status, "failed"))
            fprintf(stderr, "fedpress: run %lld marked 'failed' in %s\n", (long long)res->run_id,
                    store_path);
        return FP_EXIT_RUNTIME;
    }
    char up[32], down[32], acc[96] = "";
    fp_format_bytes(res->uplink_bytes, up, sizeof up);
    fp_format_bytes(res->downlink_bytes, down, sizeof down);
    if (!isnan(res->test_loss))
        snprintf(acc, sizeof acc, ", test_loss %.6g", res->test_loss);
    else
        snprintf(acc, sizeof acc, ", not evaluated");
    if (!isnan(res->test_accuracy))
        snprintf(acc + strlen(acc), sizeof acc - strlen(acc), ", test_accuracy %.4f",
                 res->test_accuracy);
    printf("run %lld '%s' %s: %u/%u rounds, %s %s%s, uplink %s, downlink %s, %.1f s\n"
           "model sha256 %s\n",
           (long long)res->run_id, sc->name, res->interrupted ? "interrupted" : "completed",
           res->rounds_done, sc->rounds, fp_algo_name(sc->algorithm), fp_dataset_name(sc->dataset),
           acc, up, down, res->seconds, res->model_sha256);
    /* The run is in the store whatever happens to its summary: a summary
     * that cannot be written is said here (if stderr still works) and makes
     * main's exit code 1 (fp_cli_finish_stdout), never the run 'failed'. */
    int e = fp_cli_out_flush_unreported();
    if (e)
        fprintf(stderr, "fedpress: writing the summary to stdout: %s (run %lld is %s in %s)\n",
                strerror(e), (long long)res->run_id, res->interrupted ? "interrupted" : "completed",
                store_path);
    return res->interrupted ? FP_EXIT_INTERRUPTED : 0;
}
