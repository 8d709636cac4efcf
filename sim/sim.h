/*
 * sim/sim.h — the deterministic single-process driver.
 *
 * Runs a scenario over the round logic of run/run.h (sampling, exchanges,
 * evaluation, commit, which the coordinator shares): each round's S
 * participants are trained in parallel on `threads` worker threads
 * (OpenBLAS single-threaded inside each), each worker playing a client
 * that sees only the broadcast's bytes and returns an upload message; the
 * uploads are included in ascending client id, and the round is committed
 * to the store in one transaction. Results do not depend
 * on the thread count: every random draw is keyed, reductions run in client
 * order, and worker scratch never influences a result.
 */
#ifndef FP_SIM_H
#define FP_SIM_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/error.h"
#include "../core/scenario.h"
#include "../run/run.h"
#include "../store/store.h"

struct fp_sim_options {
    unsigned threads;            /* worker threads, >= 1 */
    FILE *progress;              /* a line per round goes here; NULL = silent */
    volatile sig_atomic_t *stop; /* set (e.g. by SIGINT): finish the round in progress, stop */
    const char *model_out;       /* if set, the final model is written here (raw f32) */
    /* Resume: continue run resume_run of the store from the checkpoint in
     * *resume (fp_store_load_resume); the scenario must be the one parsed
     * from resume->scenario. The files the run read when it started
     * (resume->inputs) must hold the same bytes now, or the run is refused
     * (FP_ENOTFOUND / FP_EFORMAT naming the file) before the store is
     * touched; resume->inputs NULL (a run from before schema version 3)
     * resumes with a warning on stderr. NULL: a new run. */
    const struct fp_resume *resume;
    int64_t resume_run;
    /* Called once a new run has its id, before its first round (e.g. to
     * take a lock on it); nonzero aborts the run. May be NULL. */
    int (*started)(void *u, int64_t run_id);
    void *started_u;
    /* Who answers each round: NULL for the simulated network of
     * [participation] dropout and straggler (fp_run_simulate_participation);
     * a replay passes its log's. Called after each round's sample is drawn,
     * it marks r->status / r->why of the slots not included. */
    int (*participation)(void *u, struct fp_run *r, struct fp_error *err);
    void *participation_u;
    /* See fp_run_options.committed. May be NULL. */
    void (*committed)(void *u, const struct fp_run *r);
    void *committed_u;
};

int fp_sim_run(const struct fp_scenario *sc, struct fp_store *store,
               const struct fp_sim_options *opt, struct fp_run_result *res, struct fp_error *err);

#endif
