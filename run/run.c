/*
 * run/run.c — the round logic every driver shares (see run.h).
 */
#include "run.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/blas.h"
#include "../core/format.h"
#include "../core/hash.h"
#include "../core/inputs.h"
#include "model.h"
#include "participation.h"

static double fp__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- sampling ---- */

static int fp__cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Chooses S of N uniformly without replacement (partial Fisher–Yates over a
 * freshly reset identity array, so the draw depends only on the key), then
 * sorts them so that every reduction runs in ascending client id. */
static void fp__sample(struct fp_run *r, uint32_t round)
{
    const uint32_t N = r->sc->clients, S = r->sc->sample;
    if (S == N) {
        for (uint32_t i = 0; i < N; i++)
            r->chosen[i] = i;
        return;
    }
    fp_rng g;
    fp_rng_seed(&g, r->sc->seed, round, FP_RNG_NO_CLIENT, FP_RNG_SAMPLING);
    for (uint32_t i = 0; i < N; i++)
        r->perm[i] = i;
    for (uint32_t i = 0; i < S; i++) {
        uint32_t j = i + (uint32_t)fp_rng_below(&g, N - i);
        uint32_t t = r->perm[i];
        r->perm[i] = r->perm[j];
        r->perm[j] = t;
    }
    memcpy(r->chosen, r->perm, S * sizeof *r->chosen);
    qsort(r->chosen, S, sizeof *r->chosen, fp__cmp_u32);
}

/* ---- open / resume ---- */

/* A resumed run must end with the model the run would have ended with, so
 * every file it read when it started must still hold the same bytes. The
 * workload recorded what it read now (r->w->inputs); the init file, which a
 * state checkpoint makes unnecessary to read, is hashed here so that it is
 * checked all the same. A run stored before schema version 3 recorded
 * nothing: it resumes as it always did, with a warning. */
static int fp__check_inputs(struct fp_run *r, const struct fp_resume *rs, int64_t run,
                            struct fp_error *err)
{
    char whose[48];
    snprintf(whose, sizeof whose, "run %lld", (long long)run);
    if (!rs->inputs) {
        fprintf(stderr,
                "fedpress: warning: %s was stored by an older fedpress, which did not record "
                "the SHA-256 of its input files: they cannot be checked, so nothing shows "
                "that the resumed run reads the data it started with\n",
                whose);
        return 0;
    }
    if (rs->state && r->sc->init_path[0]) {
        char hex[65];
        int rc = fp_sha256_file(r->sc->init_path, hex, err);
        if (rc)
            return rc;
        if ((rc = fp_inputs_add(&r->w->inputs, r->sc->init_path, hex, err)))
            return rc;
    }
    return fp_inputs_compare(rs->inputs, r->w->inputs.text, whose, err);
}

/* Totals of the rounds a resumed run already has. */
static int fp__sum_rounds(void *u, const struct fp_round *row)
{
    struct fp_run_result *res = u;
    res->rounds_done = row->round;
    res->uplink_bytes += row->uplink_bytes;
    res->downlink_bytes += row->downlink_bytes;
    if (!isnan(row->test_loss) || !isnan(row->test_accuracy)) {
        res->test_loss = row->test_loss;
        res->test_accuracy = row->test_accuracy;
    }
    return 0;
}

/* The model the first round starts from: the checkpoint's (loaded later),
 * [model] init, or the workload's keyed initialisation. */
static int fp__init_model(struct fp_run *r, struct fp_error *err)
{
    if (r->opt->resume && r->opt->resume->state)
        return 0; /* x, c and the clients' state are in the checkpoint: no init */
    if (r->sc->init_path[0])
        return fp_run_load_init(r->sc, r->server.x, r->p.d, &r->w->inputs, err);
    fp_rng g;
    fp_rng_seed(&g, r->sc->seed, 0, FP_RNG_NO_CLIENT, FP_RNG_INIT);
    r->w->ops->init_params(r->w, &g, r->server.x);
    return 0;
}

static int fp__alloc(struct fp_run *r, struct fp_error *err)
{
    const uint32_t N = r->sc->clients, S = r->sc->sample;
    r->cstate = calloc(N, sizeof *r->cstate);
    r->perm = malloc(N * sizeof *r->perm);
    r->chosen = malloc(S * sizeof *r->chosen);
    r->crow = calloc(S, sizeof *r->crow);
    r->slot_row = malloc(S * sizeof *r->slot_row);
    r->bcast = malloc(fp_algo_broadcast_cap(&r->p));
    r->status = calloc(S, sizeof *r->status);
    r->why = calloc(S, sizeof *r->why);
    r->answer_t = calloc(S, sizeof *r->answer_t);
    r->scratch = calloc(S, sizeof *r->scratch);
    r->others = calloc(S, sizeof *r->others);
    if (!r->cstate || !r->perm || !r->chosen || !r->crow || !r->slot_row || !r->bcast ||
        !r->status || !r->why || !r->answer_t || !r->scratch || !r->others)
        return fp_error_set(err, FP_ENOMEM, "out of memory setting up %u clients (d = %zu)", N,
                            r->p.d);
    if (r->w->ops->eval_blocks && r->w->ops->eval_block) {
        r->eval_nblocks = r->w->ops->eval_blocks(r->w);
        r->eval_loss = calloc(r->eval_nblocks, sizeof *r->eval_loss);
        r->eval_correct = calloc(r->eval_nblocks, sizeof *r->eval_correct);
        r->eval_count = calloc(r->eval_nblocks, sizeof *r->eval_count);
        if (!r->eval_loss || !r->eval_correct || !r->eval_count)
            return fp_error_set(err, FP_ENOMEM, "out of memory for evaluation");
    }
    r->canon = fp_scenario_canonical(r->sc);
    if (!r->canon)
        return fp_error_set(err, FP_ENOMEM, "out of memory");
    return 0;
}

/* Continue run opt->resume_run after its newest state checkpoint:
 * everything the store holds past that round is forgotten and run again,
 * the same bits since every draw is keyed by its round. */
static int fp__resume(struct fp_run *r, struct fp_error *err)
{
    const struct fp_resume *rs = r->opt->resume;
    int rc;
    /* Before anything of the run in the store is touched: a refusal leaves
     * it as it was. */
    if ((rc = fp__check_inputs(r, rs, r->opt->resume_run, err)))
        return rc;
    if (rs->state &&
        (rc = fp_algo_state_load(&r->server, r->cstate, rs->state, rs->state_len, err)))
        return rc;
    r->first_round = rs->state ? rs->round + 1 : 1;
    r->res.run_id = r->opt->resume_run;
    if ((rc = fp_store_rewind(r->store, r->res.run_id, r->first_round - 1, r->opt->threads, err)))
        return rc;
    return fp_store_list_rounds(r->store, r->res.run_id, fp__sum_rounds, &r->res, err);
}

static int fp__begin(struct fp_run *r, struct fp_error *err)
{
    const struct fp_scenario *sc = r->sc;
    char cname[64];
    fp_comp_name(&sc->uplink, cname, sizeof cname);
    struct fp_run_meta meta = {.name = sc->name,
                               .algorithm = fp_algo_name(sc->algorithm),
                               .compressor = cname,
                               .dataset = fp_dataset_name(sc->dataset),
                               .scenario = r->canon,
                               .seed = sc->seed,
                               .rounds = sc->rounds,
                               .clients = sc->clients,
                               .sample = sc->sample,
                               .d = r->p.d,
                               .threads = r->opt->threads,
                               .inputs = r->w->inputs.text ? r->w->inputs.text : "",
                               /* a kernel rounds its own way: replay holds per kernel */
                               .blas = fp_blas_describe()};
    int rc = fp_store_begin_run(r->store, &meta, &r->res.run_id, err);
    if (rc)
        return rc;
    if (r->opt->started && (rc = r->opt->started(r->opt->started_u, r->res.run_id)))
        return fp_error_set(err, rc, "run %lld could not start", (long long)r->res.run_id);
    return 0;
}

int fp_run_open(struct fp_run *r, const struct fp_scenario *sc, struct fp_store *store,
                const struct fp_run_options *opt, struct fp_error *err)
{
    memset(r, 0, sizeof *r);
    r->sc = sc;
    r->store = store;
    r->opt = opt;
    r->res.run_id = -1;
    r->res.test_loss = r->res.test_accuracy = NAN;
    r->first_round = 1;
    r->t0 = fp__now_ms();
    int rc;

    /* Outputs first: a path that cannot take the model, or that would
     * overwrite the store, is found before a run starts, not after it. */
    if (opt->model_out &&
        ((rc = fp_store_check_output(fp_store_path(store), opt->model_out, err)) ||
         (rc = fp_run_check_model_out(opt->model_out, err))))
        return rc;

    /* Parallelism is the driver's, across clients; OpenBLAS threads inside
     * each client would oversubscribe the cores and make timing erratic. */
    openblas_set_num_threads(1);

    /* A stored input that is gone is named before the loader trips on it
     * with a less helpful "not found". */
    if (opt->resume && opt->resume->inputs) {
        char whose[48];
        snprintf(whose, sizeof whose, "run %lld", (long long)opt->resume_run);
        if ((rc = fp_inputs_present(opt->resume->inputs, whose, err)))
            return rc;
    }
    if ((rc = (opt->create_workload ? opt->create_workload : fp_workload_create)(&r->w, sc, err)) ||
        (rc = fp_algo_params_from(&r->p, sc, r->w->d, err)) ||
        (rc = fp_server_init(&r->server, &r->p, err)) || (rc = fp__init_model(r, err)) ||
        (rc = fp__alloc(r, err)))
        return rc;
    rc = opt->resume ? fp__resume(r, err) : fp__begin(r, err);
    /* s/round and the ETA count rounds only, not the dataset load before them. */
    r->t_rounds = fp__now_ms();
    return rc;
}

/* ---- rounds ---- */

int fp_run_next(const struct fp_run *r, uint32_t round)
{
    return round <= r->sc->rounds && !(r->opt->stop && *r->opt->stop);
}

void fp_run_round_begin(struct fp_run *r, uint32_t round)
{
    r->r0 = fp__now_ms();
    r->round = round;
    fp__sample(r, round);
    r->row = (struct fp_round){.round = round,
                               .participants = 0, /* counted as phase-0 uploads are included */
                               .clients = r->crow,
                               .test_loss = NAN,
                               .test_accuracy = NAN};
    for (uint32_t i = 0; i < r->sc->sample; i++) {
        r->slot_row[i] = -1;
        r->status[i] = FP_CLIENT_INCLUDED;
        r->why[i][0] = '\0';
    }
    r->loss_sum = 0;
    r->evaluate = 0;
}

/* One attempt of the round: each slot's answer time, the closing rule,
 * and the status and reason of each slot not in. Returns how many are in. */
static uint32_t fp__attempt(struct fp_run *r, uint32_t attempt)
{
    const struct fp_scenario *sc = r->sc;
    const uint32_t S = sc->sample;
    for (uint32_t slot = 0; slot < S; slot++)
        r->answer_t[slot] = fp_part_answer_time(sc, r->round, attempt, r->chosen[slot]);
    const char *close_why;
    const double close = fp_part_close(sc, r->answer_t, S, r->scratch, &close_why);
    uint32_t in = 0;
    for (uint32_t slot = 0; slot < S; slot++) {
        const double t = r->answer_t[slot];
        if (t <= close) {
            r->status[slot] = FP_CLIENT_INCLUDED;
            r->why[slot][0] = '\0';
            in++;
        } else if (isinf(t)) {
            /* a client that fails to answer has left: the coordinator's absent */
            r->status[slot] = FP_CLIENT_ABSENT;
            snprintf(r->why[slot], sizeof r->why[slot],
                     "dropped out (simulated: [participation] dropout = %g)", sc->dropout);
        } else {
            r->status[slot] = FP_CLIENT_LATE;
            snprintf(r->why[slot], sizeof r->why[slot],
                     "no upload when the round closed (%s; simulated answer time %.3g s)",
                     close_why, t);
        }
    }
    return in;
}

/* The row of a sampled slot with no upload in the round (or in a failed
 * attempt): no loss, no bytes, its status and why. */
static void fp__slot_row(const struct fp_run *r, uint32_t slot, enum fp_client_status status,
                         const char *why, struct fp_client_round *out)
{
    const uint32_t c = r->chosen[slot];
    *out = (struct fp_client_round){.client = c,
                                    .train_loss = NAN,
                                    .examples = r->w->n_local ? r->w->n_local[c] : 0,
                                    .status = status};
    snprintf(out->reason, sizeof out->reason, "%s", why);
}

int fp_run_attempt_failed(struct fp_run *r, uint32_t attempt, uint32_t in,
                          const enum fp_client_status *status, const char (*why)[160], char *line,
                          size_t cap, struct fp_error *err)
{
    const struct fp_scenario *sc = r->sc;
    const uint32_t S = sc->sample;
    /* every sampled client, in ascending id (r->chosen's order); r->others
     * is free until the round's commit */
    for (uint32_t slot = 0; slot < S; slot++)
        fp__slot_row(r, slot, status[slot], why[slot], &r->others[slot]);
    const struct fp_attempt a = {.round = r->round,
                                 .attempt = attempt + 1,
                                 .uploads = in,
                                 .min_updates = sc->min_updates,
                                 .clients = r->others,
                                 .n = S};
    int rc = fp_store_put_attempt(r->store, r->res.run_id, &a, err);
    if (rc)
        return rc;
    char list[1024];
    fp_part_not_in(list, sizeof list, S, r->chosen, status, why);
    if (attempt + 1 >= FP_PART_ATTEMPTS)
        return fp_error_set(err, FP_EIO, FP_PART_GIVE_UP, r->round, in, sc->min_updates,
                            attempt + 1, list);
    snprintf(line, cap, FP_PART_RETRY, r->round, in, sc->min_updates, attempt + 2, FP_PART_ATTEMPTS,
             list);
    return 0;
}

int fp_run_simulate_participation(struct fp_run *r, struct fp_error *err)
{
    const struct fp_scenario *sc = r->sc;
    if (!(sc->dropout > 0) && sc->straggler == FP_STRAGGLER_NONE)
        return 0; /* every slot answers at once: the round as before these keys */
    char line[1280];
    for (uint32_t attempt = 0;; attempt++) {
        const uint32_t in = fp__attempt(r, attempt);
        if (in >= sc->min_updates)
            return 0;
        int rc = fp_run_attempt_failed(r, attempt, in, r->status, (const char(*)[160])r->why, line,
                                       sizeof line, err);
        if (rc)
            return rc;
        if (r->opt->progress && !ferror(r->opt->progress))
            fprintf(r->opt->progress, "[%s] %s\n", sc->name, line);
    }
}

int fp_run_phase_begin(struct fp_run *r, unsigned phase, struct fp_error *err)
{
    if (!fp_algo_server_phase(&r->server, r->round, phase))
        return 0;
    r->phase = phase;
    r->included = 0;
    r->last_slot = -1;
    int rc = fp_algo_server_broadcast(&r->server, (uint64_t)r->res.run_id, r->round, phase,
                                      r->bcast, fp_algo_broadcast_cap(&r->p), &r->bcast_len);
    /* The encoder refuses a non-finite vector: the model overflowed */
    if (rc == FP_EFORMAT)
        return fp_error_set(err, FP_EFORMAT,
                            "round %u: the global model is not finite: training diverged (try a "
                            "smaller %s)",
                            r->round, fp_algo_step_key(r->sc->algorithm, isnan(r->sc->step)));
    if (rc)
        return fp_error_set(err, rc, "round %u: the broadcast of phase %u failed: %s", r->round,
                            phase, fp_strerror(rc));
    return 1;
}

int fp_run_check(struct fp_run *r, uint32_t slot, const uint8_t *upload, size_t len,
                 struct fp_error *err)
{
    if (slot >= r->sc->sample)
        return fp_error_set(err, FP_EINVAL, "round %u: no participant %u", r->round, slot);
    return fp_algo_server_check(&r->server, r->chosen[slot], upload, len, err);
}

int fp_run_include(struct fp_run *r, uint32_t slot, const uint8_t *upload, size_t len,
                   double train_loss, const char *upload_sha256, struct fp_error *err)
{
    /* Ascending and once each: the aggregate's order is part of the
     * result, and an upload added twice would count twice. */
    if (slot >= r->sc->sample || (int64_t)slot <= r->last_slot)
        return fp_error_set(err, FP_EINVAL,
                            "round %u: participant %u's upload included out of order or twice",
                            r->round, slot);
    if (r->phase > 0 && r->slot_row[slot] < 0)
        return fp_error_set(err, FP_EINVAL,
                            "round %u: participant %u's phase-%u upload without its phase-0 one",
                            r->round, slot, r->phase);
    const uint32_t client = r->chosen[slot];
    int rc = fp_algo_server_add(&r->server, client, upload, len, err);
    if (rc)
        return rc;
    r->included++;
    r->last_slot = slot;
    /* The store counts payload bytes, the 32-byte headers aside
     * (docs/store.md): exactly what the compressors encode. */
    const uint64_t up = len - FP_MSG_HEADER, down = r->bcast_len - FP_MSG_HEADER;
    if (r->phase == 0)
        r->slot_row[slot] = (int32_t)r->row.participants++;
    struct fp_client_round *cr = &r->crow[r->slot_row[slot]];
    if (r->phase == 0) {
        *cr = (struct fp_client_round){
            .client = client, .train_loss = train_loss, .examples = r->w->n_local[client]};
        r->loss_sum += train_loss;
        /* the payload's hash, comparable across runs (the header names the
         * run); a driver that hashed it already passes it */
        if (upload_sha256)
            memcpy(cr->upload_sha256, upload_sha256, sizeof cr->upload_sha256);
        else
            fp_sha256_hex(upload + FP_MSG_HEADER, len - FP_MSG_HEADER, cr->upload_sha256);
    }
    cr->uplink_bytes += up;
    cr->downlink_bytes += down;
    r->row.uplink_bytes += up;
    r->row.downlink_bytes += down;
    return 0;
}

void fp_run_phase_end(struct fp_run *r)
{
    fp_algo_server_finish(&r->server, r->included);
}

void fp_run_round_end(struct fp_run *r)
{
    r->row.train_loss = r->row.participants ? r->loss_sum / r->row.participants : NAN;
    r->evaluate = r->round % r->sc->eval_every == 0 || r->round == r->sc->rounds;
}

void fp_run_evaluate(struct fp_run *r, void *wws)
{
    r->w->ops->evaluate(r->w, wws, r->server.x, &r->row.test_loss, &r->row.test_accuracy);
}

void fp_run_eval_block(struct fp_run *r, void *wws, size_t b)
{
    r->w->ops->eval_block(r->w, wws, r->server.x, b, &r->eval_loss[b], &r->eval_correct[b],
                          &r->eval_count[b]);
}

void fp_run_eval_blocks(struct fp_run *r, void *wws, atomic_uint *next)
{
    for (;;) {
        unsigned b = atomic_fetch_add(next, 1);
        if (b >= r->eval_nblocks)
            break;
        fp_run_eval_block(r, wws, b);
    }
}

void fp_run_eval_sum(struct fp_run *r)
{
    double total = 0;
    uint64_t correct = 0, n = 0;
    for (size_t b = 0; b < r->eval_nblocks; b++) {
        total += r->eval_loss[b];
        correct += r->eval_correct[b];
        n += r->eval_count[b];
    }
    r->row.test_loss = n ? total / (double)n : NAN;
    r->row.test_accuracy = n ? (double)correct / (double)n : NAN;
}

/* A state checkpoint that could not be stored costs only the resume point:
 * the run goes on. To stderr, whatever --quiet says. */
static void fp__warn_state(uint32_t round, const char *why)
{
    fprintf(stderr,
            "fedpress: warning: the state checkpoint after round %u was not stored (%s); "
            "--resume would start from an earlier one\n",
            round, why);
}

static void fp__progress(const struct fp_run *r, FILE *out, uint32_t done_here, double elapsed_ms)
{
    const struct fp_round *row = &r->row;
    char up[32], acc[48] = "";
    fp_format_bytes(r->res.uplink_bytes, up, sizeof up);
    if (!isnan(row->test_accuracy))
        snprintf(acc, sizeof acc, "  test_acc %6.2f%%", 100 * row->test_accuracy);
    else if (!isnan(row->test_loss))
        snprintf(acc, sizeof acc, "  test_loss %.6g", row->test_loss);
    double per = elapsed_ms / done_here; /* rounds run by this process (a resume runs fewer) */
    double eta = per * (r->sc->rounds - row->round) / 1e3;
    fprintf(out, "[%s] round %u/%u  train_loss %.4f%s  uplink %s  %.2f s/round  eta %.0fs\n",
            r->sc->name, row->round, r->sc->rounds, row->train_loss, acc, up, per / 1e3, eta);
    fflush(out);
}

int fp_run_commit(struct fp_run *r, struct fp_error *err)
{
    const struct fp_scenario *sc = r->sc;
    const uint32_t round = r->round;
    struct fp_round *row = &r->row;
    if (r->evaluate) {
        r->res.test_loss = row->test_loss;
        r->res.test_accuracy = row->test_accuracy;
    }
    row->wall_ms = fp__now_ms() - r->r0;
    /* the sampled clients not included, with why (a driver that set
     * row.others itself keeps its own) */
    if (!row->others) {
        row->n_others = 0;
        for (uint32_t slot = 0; slot < sc->sample; slot++)
            if (r->status[slot] != FP_CLIENT_INCLUDED)
                fp__slot_row(r, slot, r->status[slot], r->why[slot], &r->others[row->n_others++]);
        row->others = row->n_others ? r->others : NULL;
    }
    /* The whole state goes with the round every checkpoint_every rounds; a
     * run stopping early stores it once in fp_run_finish. */
    void *state = NULL;
    size_t state_len = 0;
    const uint32_t every =
        r->opt->checkpoint_every ? r->opt->checkpoint_every : sc->checkpoint_every;
    if (round < sc->rounds && every && round % every == 0 &&
        fp_algo_state_save(&r->server, r->cstate, &state, &state_len))
        fp__warn_state(round, "out of memory for it");
    int rc = fp_store_commit_round_state(r->store, r->res.run_id, row, state, state_len, err);
    if (rc && state) {
        /* A checkpoint is a convenience; the round is not. If the state
         * cannot be stored (a full disk, say), commit the round without it
         * and say so. */
        fp__warn_state(round, err->msg);
        free(state);
        state = NULL;
        r->state_round = round; /* tried: fp_run_finish need not try again */
        rc = fp_store_commit_round_state(r->store, r->res.run_id, row, NULL, 0, err);
    }
    free(state);
    if (rc)
        return rc;
    if (state)
        r->state_round = round;
    r->res.rounds_done = round;
    if (r->opt->committed)
        r->opt->committed(r->opt->committed_u, r);
    r->res.uplink_bytes += row->uplink_bytes;
    r->res.downlink_bytes += row->downlink_bytes;
    /* A progress line that cannot be written (a closed terminal, a reader
     * gone, a full disk) is dropped, and after the first failure no more
     * are tried: the run goes on. */
    if (r->opt->progress && !ferror(r->opt->progress))
        fp__progress(r, r->opt->progress, round - r->first_round + 1, fp__now_ms() - r->t_rounds);
    return 0;
}

/* ---- finish ---- */

/* Stopped early: the state after the last committed round goes to the
 * store, unless that round's commit already carried (or tried) it. */
static void fp__save_stopped(struct fp_run *r)
{
    struct fp_run_result *res = &r->res;
    if (!res->interrupted || res->rounds_done < r->first_round ||
        r->state_round == res->rounds_done)
        return;
    void *state;
    size_t state_len;
    struct fp_error e2 = {0};
    if (fp_algo_state_save(&r->server, r->cstate, &state, &state_len)) {
        fp__warn_state(res->rounds_done, "out of memory for it");
        return;
    }
    if (fp_store_put_state(r->store, res->run_id, res->rounds_done, state, state_len, &e2))
        fp__warn_state(res->rounds_done, e2.msg);
    free(state);
}

int fp_run_finish(struct fp_run *r, struct fp_error *err)
{
    struct fp_run_result *res = &r->res;
    const char *model_out = r->opt->model_out;
    const float *x = r->server.x;
    const size_t d = r->p.d;
    res->interrupted = res->rounds_done < r->sc->rounds;
    fp__save_stopped(r);
    fp_sha256_hex(x, d * sizeof(float), res->model_sha256);
    /* The store first: it keeps the final model as a checkpoint, so a model
     * file that cannot be written afterwards loses nothing. */
    enum fp_run_status fin = res->interrupted ? FP_RUN_INTERRUPTED : FP_RUN_COMPLETED;
    int rc = fp_store_finish_run(r->store, res->run_id, fin, x, d, res->rounds_done, err);
    if (rc) {
        /* the store failed: the model file is then the only copy */
        if (model_out)
            (void)fp_run_write_model(model_out, x, d, &(struct fp_error){0});
        fp_run_fail(r, err);
        return rc;
    }
    res->stored_status = fp_run_status_name(fin);
    if (model_out && (rc = fp_run_write_model(model_out, x, d, err))) {
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n,
                 ". The run is %s and its final model (sha256 %s) is in the store: "
                 "sqlite3 '%s' \"SELECT writefile('MODEL.f32', data) FROM checkpoints "
                 "WHERE run_id = %lld AND kind = 'model'\"",
                 res->stored_status, res->model_sha256, fp_store_path(r->store),
                 (long long)res->run_id);
        return rc;
    }
    res->seconds = (fp__now_ms() - r->t0) / 1e3;
    return 0;
}

void fp_run_fail(struct fp_run *r, const struct fp_error *why)
{
    if (r->res.run_id < 0)
        return;
    struct fp_error e2;
    if (fp_store_fail_run(r->store, r->res.run_id, r->res.rounds_done, why ? why->msg : NULL,
                          &e2) == 0)
        r->res.stored_status = fp_run_status_name(FP_RUN_FAILED);
}

void fp_run_close(struct fp_run *r)
{
    if (r->cstate) {
        for (uint32_t i = 0; i < r->sc->clients; i++)
            fp_client_state_free(&r->cstate[i]);
        free(r->cstate);
    }
    fp_server_free(&r->server);
    free(r->perm);
    free(r->chosen);
    free(r->crow);
    free(r->slot_row);
    free(r->bcast);
    free(r->status);
    free(r->why);
    free(r->answer_t);
    free(r->scratch);
    free(r->others);
    free(r->eval_loss);
    free(r->eval_correct);
    free(r->eval_count);
    free(r->canon);
    if (r->w)
        fp_workload_free(r->w);
    memset(r, 0, sizeof *r);
}
