/*
 * sim/sim.c — the simulator driver (see sim.h).
 *
 * Parallelism is across clients: a round's participants are processed in
 * chunks; the chunk's clients are trained by `threads` uv threads taking the
 * next client from an atomic counter, each with its own workspaces. The
 * uploads of a chunk are then decoded and summed by the main thread in
 * ascending client id, so the sum is the same whatever thread trained which
 * client. Chunks bound memory to chunk * upload size however large S is.
 */
#include "sim.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../core/hash.h"
#include "../run/run.h"

#define FP__CHUNK_BYTES ((size_t)256 << 20) /* uploads held at once */

struct fp__worker {
    struct fp__sim *sim;
    void *wws;
    struct fp_algo_ws aws;
    uv_thread_t tid;
    int rc;
    uint32_t failed_client; /* valid when rc != 0 */
    struct fp_error err;    /* valid when rc != 0 */
};

struct fp__sim {
    struct fp_run run;
    uint8_t *uploads; /* [chunk][upload_bytes] */
    size_t upload_bytes;
    size_t *upload_len; /* [chunk] */
    /* [chunk] the state each slot's client will have once its upload is
     * included (fp_algo_client_commit), and scratch after that */
    struct fp_client_state *pending;
    double *loss;    /* [chunk] */
    char (*sha)[65]; /* [chunk] each upload's payload SHA-256, hashed by its worker */
    uint32_t chunk;
    unsigned nworkers;
    struct fp__worker *workers;

    /* this round's slots that answer in time, ascending: the others are not
     * trained (what they would upload is never included) */
    uint32_t *slots; /* [S] */
    uint32_t n_slots;
    const struct fp_sim_options *opt;

    /* the chunk being trained: slots[chunk_first .. + chunk_n) */
    uint32_t chunk_first, chunk_n;
    atomic_uint next;
};

static void fp__worker_main(void *arg)
{
    struct fp__worker *wk = arg;
    struct fp__sim *s = wk->sim;
    struct fp_run *r = &s->run;
    for (;;) {
        unsigned i = atomic_fetch_add(&s->next, 1);
        if (i >= s->chunk_n)
            break;
        uint32_t client = r->chosen[s->slots[s->chunk_first + i]];
        /* the worker plays the client: it sees the broadcast's bytes only */
        const struct fp_msg_header who = {.run = (uint64_t)r->res.run_id,
                                          .round = r->round,
                                          .phase = (uint16_t)r->phase,
                                          .client = client};
        int rc = fp_algo_client_update(&r->p, &who, r->bcast, r->bcast_len, &r->cstate[client],
                                       &s->pending[i], r->w, wk->wws, &wk->aws,
                                       s->uploads + (size_t)i * s->upload_bytes, s->upload_bytes,
                                       &s->upload_len[i], &s->loss[i], &wk->err);
        if (rc) {
            wk->rc = rc;
            wk->failed_client = client;
            break;
        }
        /* hashed here, in parallel, rather than by the main thread */
        fp_sha256_hex(s->uploads + (size_t)i * s->upload_bytes + FP_MSG_HEADER,
                      s->upload_len[i] - FP_MSG_HEADER, s->sha[i]);
    }
}

/* Runs fn on min(nworkers, jobs) threads, worker 0 on the calling thread
 * (one thread spawn fewer per call). fn takes jobs from s->next. */
static int fp__team(struct fp__sim *s, void (*fn)(void *), unsigned jobs, struct fp_error *err)
{
    atomic_store(&s->next, 0);
    unsigned nthreads = s->nworkers < jobs ? s->nworkers : jobs;
    for (unsigned t = 0; t < nthreads; t++)
        s->workers[t].rc = 0;
    for (unsigned t = 1; t < nthreads; t++)
        if (uv_thread_create(&s->workers[t].tid, fn, &s->workers[t])) {
            for (unsigned u = 1; u < t; u++)
                uv_thread_join(&s->workers[u].tid);
            return fp_error_set(err, FP_ENOMEM, "cannot start worker thread %u", t);
        }
    if (nthreads)
        fn(&s->workers[0]);
    for (unsigned t = 1; t < nthreads; t++)
        uv_thread_join(&s->workers[t].tid);
    return 0;
}

static int fp__train_chunk(struct fp__sim *s, struct fp_error *err)
{
    int rc = fp__team(s, fp__worker_main, s->chunk_n, err);
    if (rc)
        return rc;
    for (unsigned t = 0; t < s->nworkers; t++) {
        const struct fp__worker *wk = &s->workers[t];
        if (wk->rc == FP_EFORMAT)
            return fp_error_set(err, wk->rc,
                                "round %u: client %u's update is not finite: training diverged "
                                "(try a smaller %s)",
                                s->run.round, wk->failed_client,
                                fp_algo_step_key(s->run.sc->algorithm, isnan(s->run.sc->step)));
        if (wk->rc)
            return fp_error_set(err, wk->rc, "round %u: client %u's update failed: %s",
                                s->run.round, wk->failed_client, wk->err.msg);
    }
    return 0;
}

/* One exchange: the participants train on the broadcast chunk by chunk,
 * and their uploads are included in ascending client id. */
static int fp__exchange(struct fp__sim *s, struct fp_error *err)
{
    const uint32_t n = s->n_slots;
    int rc;
    for (uint32_t first = 0; first < n; first += s->chunk) {
        s->chunk_first = first;
        s->chunk_n = n - first < s->chunk ? n - first : s->chunk;
        if ((rc = fp__train_chunk(s, err)))
            return rc;
        for (uint32_t i = 0; i < s->chunk_n; i++) {
            const uint32_t slot = s->slots[first + i];
            if ((rc = fp_run_include(&s->run, slot, s->uploads + (size_t)i * s->upload_bytes,
                                     s->upload_len[i], s->loss[i], s->sha[i], err)))
                return rc;
            /* included: the client's new state becomes current */
            fp_algo_client_commit(&s->run.p, &s->run.cstate[s->run.chosen[slot]], &s->pending[i]);
        }
    }
    return 0;
}

/* Who answers this round: the simulated network's verdict, or the
 * driver's (a replay's logged participation); then the slots to train. */
static int fp__participation(struct fp__sim *s, struct fp_error *err)
{
    struct fp_run *r = &s->run;
    int rc = s->opt->participation ? s->opt->participation(s->opt->participation_u, r, err)
                                   : fp_run_simulate_participation(r, err);
    if (rc)
        return rc;
    s->n_slots = 0;
    for (uint32_t slot = 0; slot < r->sc->sample; slot++)
        if (r->status[slot] == FP_CLIENT_INCLUDED)
            s->slots[s->n_slots++] = slot;
    return 0;
}

static void fp__eval_worker(void *arg)
{
    struct fp__worker *wk = arg;
    fp_run_eval_blocks(&wk->sim->run, wk->wws, &wk->sim->next);
}

/* Test-set evaluation: where the workload splits its test set into blocks,
 * the team evaluates them in parallel. */
static int fp__evaluate(struct fp__sim *s, struct fp_error *err)
{
    if (!s->run.eval_nblocks || s->nworkers == 1) {
        fp_run_evaluate(&s->run, s->workers[0].wws);
        return 0;
    }
    int rc = fp__team(s, fp__eval_worker, (unsigned)s->run.eval_nblocks, err);
    if (rc)
        return rc;
    fp_run_eval_sum(&s->run);
    return 0;
}

/* Workers, their workspaces and the chunk's upload buffers. */
static int fp__setup(struct fp__sim *s, unsigned threads, struct fp_error *err)
{
    const struct fp_run *r = &s->run;
    const uint32_t S = r->sc->sample;
    s->upload_bytes = fp_algo_upload_cap(&r->p);
    size_t per_chunk = FP__CHUNK_BYTES / s->upload_bytes;
    s->chunk = (uint32_t)(per_chunk < 1 ? 1 : per_chunk < S ? per_chunk : S);
    s->nworkers = threads ? threads : 1;
    s->uploads = malloc((size_t)s->chunk * s->upload_bytes);
    s->upload_len = calloc(s->chunk, sizeof *s->upload_len);
    s->loss = calloc(s->chunk, sizeof *s->loss);
    s->pending = calloc(s->chunk, sizeof *s->pending);
    s->sha = calloc(s->chunk, sizeof *s->sha);
    s->workers = calloc(s->nworkers, sizeof *s->workers);
    s->slots = calloc(S, sizeof *s->slots);
    if (!s->uploads || !s->upload_len || !s->loss || !s->pending || !s->sha || !s->workers ||
        !s->slots)
        return fp_error_set(err, FP_ENOMEM, "out of memory setting up %u clients (d = %zu)",
                            r->sc->clients, r->p.d);
    for (unsigned t = 0; t < s->nworkers; t++) {
        s->workers[t].sim = s;
        s->workers[t].wws = fp_workload_ws_new(r->w);
        if (!s->workers[t].wws || fp_algo_ws_init(&s->workers[t].aws, &r->p))
            return fp_error_set(err, FP_ENOMEM, "out of memory for worker %u's workspace", t);
    }
    return 0;
}

static void fp__free(struct fp__sim *s)
{
    if (s->workers) {
        for (unsigned t = 0; t < s->nworkers; t++) {
            if (s->workers[t].wws)
                fp_workload_ws_free(s->run.w, s->workers[t].wws);
            fp_algo_ws_free(&s->workers[t].aws, &s->run.p);
        }
        free(s->workers);
    }
    free(s->uploads);
    free(s->upload_len);
    free(s->loss);
    if (s->pending)
        for (uint32_t i = 0; i < s->chunk; i++)
            fp_client_state_free(&s->pending[i]);
    free(s->pending);
    free(s->sha);
    free(s->slots);
    fp_run_close(&s->run);
}

int fp_sim_run(const struct fp_scenario *sc, struct fp_store *store,
               const struct fp_sim_options *opt, struct fp_run_result *res, struct fp_error *err)
{
    struct fp__sim s;
    memset(&s, 0, sizeof s);
    s.opt = opt;
    const struct fp_run_options ro = {.threads = opt->threads ? opt->threads : 1,
                                      .progress = opt->progress,
                                      .stop = opt->stop,
                                      .model_out = opt->model_out,
                                      .resume = opt->resume,
                                      .resume_run = opt->resume_run,
                                      .started = opt->started,
                                      .started_u = opt->started_u,
                                      .committed = opt->committed,
                                      .committed_u = opt->committed_u};
    struct fp_run *r = &s.run;
    int rc = fp_run_open(r, sc, store, &ro, err);
    if (!rc)
        rc = fp__setup(&s, ro.threads, err);
    for (uint32_t round = r->first_round; !rc && fp_run_next(r, round); round++) {
        fp_run_round_begin(r, round);
        if ((rc = fp__participation(&s, err)))
            break;
        for (unsigned phase = 0; !rc && (rc = fp_run_phase_begin(r, phase, err)) > 0; phase++) {
            if ((rc = fp__exchange(&s, err)))
                break;
            fp_run_phase_end(r);
        }
        if (rc)
            break;
        fp_run_round_end(r);
        if (r->evaluate && (rc = fp__evaluate(&s, err)))
            break;
        rc = fp_run_commit(r, err);
    }
    if (rc)
        fp_run_fail(r, err);
    else
        rc = fp_run_finish(r, err);
    *res = r->res;
    fp__free(&s);
    return rc;
}
