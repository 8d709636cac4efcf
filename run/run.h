/*
 * run/run.h — the round logic every driver shares.
 *
 * A driver (the simulator today, the coordinator next) owns threads,
 * sockets, clocks and scheduling; everything that decides a result lives
 * here, so both drivers compute the same bits: opening a run (outputs
 * checked first, the workload, the algorithm, the model's initialisation
 * or warm start, a new run in the store or a resume from its checkpoint
 * with its inputs' hashes checked), sampling the round's participants,
 * including their uploads in ascending client id, evaluation, the round's
 * commit (metrics and checkpoint in one store transaction) and the finish
 * (final status, model in the store, then --model-out).
 *
 * A driver reads as:
 *
 *   fp_run_open(&r, ...);
 *   for (round = r.first_round; fp_run_next(&r, round); round++) {
 *       fp_run_round_begin(&r, round);
 *       for (phase = 0; fp_run_phase_begin(&r, phase, ...); phase++) {
 *           each participant runs fp_algo_client_update on r.bcast;
 *           fp_run_include(&r, slot, upload, ...) in ascending slot;
 *           fp_run_phase_end(&r);
 *       }
 *       fp_run_round_end(&r); if (r.evaluate) evaluate;
 *       fp_run_commit(&r, ...);
 *   }
 *   fp_run_finish(&r, ...) or, on an error, fp_run_fail(&r);
 *   fp_run_close(&r);
 *
 * Ownership: everything in struct fp_run belongs to it and is freed by
 * fp_run_close(); the scenario, store and options are borrowed for the
 * run's lifetime.
 */
#ifndef FP_RUN_H
#define FP_RUN_H

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "../algorithms/algorithm.h"
#include "../core/error.h"
#include "../core/scenario.h"
#include "../store/store.h"
#include "../workloads/workload.h"

struct fp_run;

struct fp_run_options {
    unsigned threads;               /* recorded with the run (runs.threads) */
    FILE *progress;                 /* a line per round goes here; NULL = silent */
    volatile sig_atomic_t *stop;    /* set (e.g. by SIGINT): finish the round in progress, stop */
    const char *model_out;          /* if set, the final model is written here (raw f32) */
    const struct fp_resume *resume; /* see fp_sim_options */
    int64_t resume_run;
    int (*started)(void *u, int64_t run_id);
    void *started_u;
    /* Called after each round is committed, with the run (its row, clients
     * and others as stored). May be NULL. */
    void (*committed)(void *u, const struct fp_run *r);
    void *committed_u;
    /* The workload's constructor: NULL for fp_workload_create (every
     * client's data and the test set: the simulator); a coordinator, which
     * holds no client's data, passes fp_workload_create_test. */
    int (*create_workload)(struct fp_workload **out, const struct fp_scenario *sc,
                           struct fp_error *err);
    /* A state checkpoint every this many rounds; 0: the scenario's [run]
     * checkpoint_every. A coordinator passes 1, so that a crash costs no
     * committed round (the clients' work cannot be redone for free), and
     * the scenario's canonical text stays the simulator's. */
    uint32_t checkpoint_every;
};

struct fp_run_result {
    int64_t run_id;
    uint32_t rounds_done;
    double test_loss, test_accuracy; /* last evaluation */
    uint64_t uplink_bytes, downlink_bytes;
    double seconds;
    char model_sha256[65];
    int interrupted;
    /* The final status the store holds for the run: "completed",
     * "interrupted" or "failed"; NULL if none could be stored (it stays
     * 'running'). An error after a "completed" one (writing model_out)
     * leaves the run completed: its model is in the store. */
    const char *stored_status;
};

struct fp_run {
    const struct fp_scenario *sc;
    struct fp_store *store;
    const struct fp_run_options *opt;
    struct fp_run_result res;
    struct fp_workload *w;
    struct fp_algo_params p;
    struct fp_server server;
    struct fp_client_state *cstate; /* [N]; the simulator holds every client's */
    uint32_t *perm;                 /* [N] sampling scratch */
    uint32_t *chosen;               /* [S] this round's participants, ascending */
    struct fp_client_round *crow;   /* [S] */
    uint32_t first_round, state_round;
    double t0, t_rounds;
    char *canon;

    /* the round in progress, and its exchange */
    uint32_t round;
    unsigned phase;
    uint8_t *bcast; /* [fp_algo_broadcast_cap] the exchange's broadcast message */
    size_t bcast_len;
    struct fp_round row;
    uint32_t included; /* uploads included in the exchange in progress */
    int64_t last_slot; /* the last slot included in it (-1: none yet) */
    int32_t *slot_row; /* [S] slot -> its row in crow, -1 until its phase-0 upload is included */
    double loss_sum, r0;
    int evaluate; /* set by fp_run_round_end: this round is evaluated */
    /* [S] what became of each slot this round, and why if it is not
     * included; fp_run_round_begin sets every slot included. A driver that
     * marks slots otherwise gets their rows stored by fp_run_commit (a
     * driver may instead set row.others itself). */
    enum fp_client_status *status;
    char (*why)[160];
    double *answer_t, *scratch;     /* [S] fp_run_simulate_participation's */
    struct fp_client_round *others; /* [S] */

    /* test-set blocks (workload eval_block), for drivers evaluating in parallel */
    size_t eval_nblocks;
    double *eval_loss; /* [eval_nblocks] */
    uint64_t *eval_correct, *eval_count;
};

/* Opens the run: a new one in the store, or opt->resume. On failure
 * nothing needs finishing; call fp_run_fail (which marks a run that got an
 * id as failed) and fp_run_close. */
int fp_run_open(struct fp_run *r, const struct fp_scenario *sc, struct fp_store *store,
                const struct fp_run_options *opt, struct fp_error *err);

/* Whether round `round` runs: not past the last, and no stop asked. Checked
 * between rounds only: a round once started is finished and committed, so
 * client state never runs ahead of the server's and the store ends on a
 * whole round. */
int fp_run_next(const struct fp_run *r, uint32_t round);

/* Samples the round's participants into r->chosen (S of them, ascending). */
void fp_run_round_begin(struct fp_run *r, uint32_t round);

/* The simulator's network (run/participation.h): each slot's answer time
 * from [participation] dropout and straggler, judged by the coordinator's
 * closing rule; below min_updates the round is tried again with the same
 * sample, at most FP_PART_ATTEMPTS times (a line on the progress stream
 * each), then FP_EIO with a message naming who did not answer. Marks
 * r->status / r->why; call after fp_run_round_begin. Without dropout or a
 * straggler every slot answers at once and stays included. */
int fp_run_simulate_participation(struct fp_run *r, struct fp_error *err);

/* Attempt `attempt` (0-based) of the round closed with `in` uploads, below
 * min_updates (both drivers): stores it with every sampled slot's
 * status[S] (FP_CLIENT_INCLUDED: its upload came in time) and why[S], in
 * its own transaction (fp_store_put_attempt); then 0 and the line to print
 * (FP_PART_RETRY) in line[cap] if the round is tried again, or, after the
 * last of FP_PART_ATTEMPTS, FP_EIO and FP_PART_GIVE_UP in err. A store
 * error is returned as it is: the attempt must not go unrecorded. */
int fp_run_attempt_failed(struct fp_run *r, uint32_t attempt, uint32_t in,
                          const enum fp_client_status *status, const char (*why)[160], char *line,
                          size_t cap, struct fp_error *err);

/* Whether the round has exchange `phase` (the algorithm decides; phase 0
 * always): if so, its broadcast message is in r->bcast[0..r->bcast_len),
 * the same bytes for every participant, and the server waits for their
 * uploads. */
int fp_run_phase_begin(struct fp_run *r, unsigned phase, struct fp_error *err);

/* Checks participant `slot`'s upload message as fp_run_include would
 * (FP_EFORMAT, with the reason, if the core would refuse it), without
 * including it and in any order (fp_algo_server_check). */
int fp_run_check(struct fp_run *r, uint32_t slot, const uint8_t *upload, size_t len,
                 struct fp_error *err);

/* Includes the upload message of participant `slot` (r->chosen[slot]):
 * checked, decoded and added to the aggregate, then its metrics recorded
 * (payload bytes, both ways, and the SHA-256 of the phase-0 upload's
 * payload: upload_sha256 if the driver hashed it already, in parallel,
 * else computed here). Call in strictly ascending slot (else FP_EINVAL);
 * a slot whose upload is late or lost is simply not included: the
 * exchange's mean is over the uploads included, and the round's stored
 * rows are those of the participants whose phase-0 upload was included. */
int fp_run_include(struct fp_run *r, uint32_t slot, const uint8_t *upload, size_t len,
                   double train_loss, const char *upload_sha256, struct fp_error *err);

/* Ends the exchange: the server applies the aggregate of the uploads
 * included (none: the state stays as it was). */
void fp_run_phase_end(struct fp_run *r);

/* Ends the round's exchanges; sets r->evaluate if the round is evaluated
 * (then the driver fills r->row.test_loss / test_accuracy, with
 * fp_run_evaluate or block by block). */
void fp_run_round_end(struct fp_run *r);

/* Evaluates r->server.x on the whole test set with one workspace. */
void fp_run_evaluate(struct fp_run *r, void *wws);
/* Block b of the test set (parallel drivers), then the sums in block order,
 * which is exactly what the workload's own evaluate() computes. */
void fp_run_eval_block(struct fp_run *r, void *wws, size_t b);
void fp_run_eval_sum(struct fp_run *r);
/* The blocks a worker takes from the shared counter *next until none is
 * left (each block once, whatever thread takes it). */
void fp_run_eval_blocks(struct fp_run *r, void *wws, atomic_uint *next);

/* Commits the round (metrics, and the state every checkpoint_every rounds)
 * in one store transaction and prints its progress line. */
int fp_run_commit(struct fp_run *r, struct fp_error *err);

/* Ends the run after its last round or a stop: the state of a stopped run,
 * the final status and model in the store, then --model-out. *res is the
 * run's result. */
int fp_run_finish(struct fp_run *r, struct fp_error *err);

/* Marks a run that has an id as failed (a driver's error path), with why
 * (the message the driver prints; may be NULL) in runs.error. */
void fp_run_fail(struct fp_run *r, const struct fp_error *why);

void fp_run_close(struct fp_run *r);

#endif
