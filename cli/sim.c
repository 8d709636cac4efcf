/*
 * cli/sim.c — `fedpress sim`: one scenario run into the store (new, or
 * --resume of a stopped run), its --dry-run, and --replay of a stored run
 * (sim/replay.c). The usage is cli/help.c's; docs/ has the rest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/error.h"
#include "../core/scenario.h"
#include "../sim/replay.h"
#include "../sim/sim.h"
#include "../store/store.h"
#include "args.h"
#include "cli.h"

/* A run id argument ("3"), or -1 after a usage error naming the option. */
static int64_t fp__run_id_arg(const char *arg, const char *opt)
{
    int64_t id = fp_cli_run_id(arg);
    if (id < 0) {
        char what[64];
        snprintf(what, sizeof what, "sim: %s '%%s': expected a run id (see 'fedpress runs')", opt);
        fp_cli_usage_errorf(what, arg);
        return -1;
    }
    return id;
}

/* sim --replay RUN: exit 0 exact, 1 divergent (or an error), 130 stopped. */
static int fp__replay(const char *arg, const char *store_path, unsigned long threads, int quiet)
{
    int64_t id = fp__run_id_arg(arg, "--replay");
    if (id < 0)
        return FP_EXIT_USAGE;
    struct fp_store *store;
    if (fp_cli_open_store(&store, store_path, FP_CLI_STORE_READ))
        return FP_EXIT_RUNTIME;
    fp_cli_catch_stop_signals();
    quiet = quiet || ferror(stderr);
    const struct fp_replay_options ro = {.threads = (unsigned)threads,
                                         .progress = quiet ? NULL : stderr,
                                         .out = stdout,
                                         .stop = &fp_cli_stop};
    struct fp_error err = {0};
    int rc = fp_sim_replay(store, id, &ro, &err);
    fp_store_close(store);
    if (rc < 0)
        fprintf(stderr, "fedpress: %s\n", err.msg);
    return rc == FP_EINTR ? FP_EXIT_INTERRUPTED : rc < 0 ? FP_EXIT_RUNTIME : rc;
}

int fp_cli_sim(int argc, char **argv)
{
    const char *model_out = NULL;
    struct fp_cli_run_opts o;
    const char *resume_arg = NULL, *replay_arg = NULL;
    int rc = FP_EXIT_USAGE;
    fp_cli_ignore_sigpipe();
    if (fp_cli_run_opts_init(&o, argc))
        return FP_EXIT_RUNTIME;
    for (int i = 2; i < argc; i++) {
        int took = fp_cli_run_opt(argc, argv, &i, "sim", &o);
        if (fp_cli_opt_ends(took, &rc))
            goto out;
        if (took)
            continue;
        if (fp_cli_is_opt(argv[i], "--model-out")) {
            if (!(model_out = fp_cli_optval(argc, argv, &i, "--model-out")))
                goto missing;
        } else if (fp_cli_is_opt(argv[i], "--resume")) {
            if (!(resume_arg = fp_cli_optval(argc, argv, &i, "--resume")))
                goto missing;
        } else if (fp_cli_is_opt(argv[i], "--replay")) {
            if (!(replay_arg = fp_cli_optval(argc, argv, &i, "--replay")))
                goto missing;
        } else {
            rc = fp_cli_usage_errorf("sim: unknown option '%s'", argv[i]);
            goto out;
        }
    }
    const char *file = o.file, **sets = o.sets, *store_path = o.store_path;
    size_t nsets = o.nsets;
    unsigned long threads = o.threads;
    int quiet = o.quiet, dry_run = o.dry_run;
    if (replay_arg) {
        if (file || resume_arg || nsets || dry_run || model_out)
            rc = fp_cli_usage_errorf("sim: %s", "--replay runs the stored scenario as it was: no "
                                                "scenario file, --resume, --set, --dry-run or "
                                                "--model-out");
        else
            rc = fp__replay(replay_arg, store_path, threads, quiet);
        goto out;
    }
    if (!file == !resume_arg) {
        rc = fp_cli_usage_errorf("sim: %s", file ? "give a scenario file or --resume RUN, not both"
                                                 : "no scenario file given (or --resume RUN)");
        goto out;
    }
    if (resume_arg && (nsets || dry_run)) {
        rc =
            fp_cli_usage_errorf("sim: %s", "--resume runs the stored scenario as it was: no --set, "
                                           "no --dry-run");
        goto out;
    }

    struct fp_error err = {0};
    /* No output may land on the store: checked before anything is opened. */
    if (model_out && fp_store_check_output(store_path, model_out, &err)) {
        rc = fp_cli_usage_errorf("sim: --model-out: %s", err.msg);
        goto out;
    }
    struct fp_scenario sc;
    struct fp_store *store = NULL;
    struct fp_resume resume = {0};
    int64_t resume_id = 0;
    int lrc;
    if (resume_arg) {
        if ((resume_id = fp__run_id_arg(resume_arg, "--resume")) < 0)
            goto out;
        rc = FP_EXIT_RUNTIME;
        if (fp_cli_open_store(&store, store_path, FP_CLI_STORE_WRITE))
            goto out;
        /* Held from here to the end of the run (closing the store drops it). */
        if (fp_cli_lock_run(store, resume_id)) {
            fp_store_close(store);
            goto out;
        }
        if (fp_store_load_resume(store, resume_id, &resume, &err)) {
            fprintf(stderr, "fedpress: %s\n", err.msg);
            fp_store_close(store);
            goto out;
        }
        if (!strcmp(resume.status, "completed")) {
            fprintf(stderr, "fedpress: run %lld in %s is already completed\n", (long long)resume_id,
                    store_path);
            fp_store_resume_free(&resume);
            fp_store_close(store);
            goto out;
        }
        fp_cli_warn_resume_blas(&resume, (long long)resume_id);
        char origin[64];
        snprintf(origin, sizeof origin, "run %lld's stored scenario", (long long)resume_id);
        lrc = fp_scenario_load_string(&sc, resume.scenario, origin, NULL, 0, &err);
    } else {
        lrc = fp_scenario_load(&sc, file, sets, nsets, &err);
    }
    if (lrc) {
        if (store) {
            fp_store_resume_free(&resume);
            fp_store_close(store);
        }
        fprintf(stderr, "fedpress: %s\n", err.msg);
        rc = fp_cli_load_exit(lrc);
        goto out;
    }
    if (dry_run) {
        /* The effective configuration, as the store would keep it. */
        char *canon = fp_scenario_canonical(&sc);
        if (!canon) {
            rc = FP_EXIT_RUNTIME;
            goto out;
        }
        fputs(canon, stdout);
        free(canon);
        rc = 0;
        goto out;
    }
    if (!store && fp_cli_open_store(&store, store_path, FP_CLI_STORE_CREATE)) {
        rc = FP_EXIT_RUNTIME;
        goto out;
    }
    struct fp_run_result res;
    rc = fp_cli_run_scenario(&sc, store, store_path, threads, quiet, model_out,
                             resume_arg ? &resume : NULL, resume_id, &res);
    fp_store_resume_free(&resume);
    fp_store_close(store);
    goto out;
missing:
    rc = fp_cli_usage_errorf("sim: option '%s' needs a value", argv[argc - 1]);
out:
    free(o.sets);
    return rc;
}
