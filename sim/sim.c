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

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "../algorithms/algorithm.h"
#include "../core/blas.h"
#include "../core/format.h"
#include "../core/hash.h"
#include "../core/inputs.h"
#include "../workloads/workload.h"

#define FP__CHUNK_BYTES ((size_t)256 << 20) /* uploads held at once */

struct fp__worker {
    struct fp__sim *sim;
    void *wws;
    struct fp_algo_ws aws;
    uv_thread_t tid;
    int rc;
    uint32_t failed_client; /* valid when rc != 0 */
};

struct fp__sim {
    const struct fp_scenario *sc;
    struct fp_workload *w;
    struct fp_algo_params p;
    struct fp_server server;
    struct fp_client_state *cstate; /* [N] */
    uint32_t *perm;                 /* [N] sampling scratch */
    uint32_t *chosen;               /* [S] this round's participants, ascending */
    uint8_t *uploads;               /* [chunk][upload_bytes] */
    size_t upload_bytes;
    size_t *upload_len;           /* [chunk] */
    double *loss;                 /* [chunk] */
    struct fp_client_round *crow; /* [S] */
    uint32_t chunk;
    unsigned nworkers;
    struct fp__worker *workers;
    volatile sig_atomic_t *stop;

    /* the chunk being trained */
    uint32_t round, chunk_first, chunk_n;
    atomic_uint next;

    /* test-set blocks, evaluated by the team (workload eval_block) */
    size_t eval_nblocks;
    double *eval_loss; /* [eval_nblocks] */
    uint64_t *eval_correct, *eval_count;
};

static double fp__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Chooses S of N uniformly without replacement (partial Fisher–Yates over a
 * freshly reset identity array, so the draw depends only on the key), then
 * sorts them so that every reduction runs in ascending client id. */
static int fp__cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void fp__sample(struct fp__sim *s, uint32_t round)
{
    const uint32_t N = s->sc->clients, S = s->sc->sample;
    if (S == N) {
        for (uint32_t i = 0; i < N; i++)
            s->chosen[i] = i;
        return;
    }
    fp_rng r;
    fp_rng_seed(&r, s->sc->seed, round, FP_RNG_NO_CLIENT, FP_RNG_SAMPLING);
    for (uint32_t i = 0; i < N; i++)
        s->perm[i] = i;
    for (uint32_t i = 0; i < S; i++) {
        uint32_t j = i + (uint32_t)fp_rng_below(&r, N - i);
        uint32_t t = s->perm[i];
        s->perm[i] = s->perm[j];
        s->perm[j] = t;
    }
    memcpy(s->chosen, s->perm, S * sizeof *s->chosen);
    qsort(s->chosen, S, sizeof *s->chosen, fp__cmp_u32);
}

static void fp__worker_main(void *arg)
{
    struct fp__worker *wk = arg;
    struct fp__sim *s = wk->sim;
    for (;;) {
        unsigned i = atomic_fetch_add(&s->next, 1);
        if (i >= s->chunk_n)
            break;
        uint32_t client = s->chosen[s->chunk_first + i];
        int rc = fp_algo_client_update(&s->p, s->server.x, s->server.c, &s->cstate[client], s->w,
                                       wk->wws, &wk->aws, s->round, client,
                                       s->uploads + (size_t)i * s->upload_bytes, s->upload_bytes,
                                       &s->upload_len[i], &s->loss[i]);
        if (rc) {
            wk->rc = rc;
            wk->failed_client = client;
            break;
        }
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
                                "(try a smaller [algorithm] lr_local)",
                                s->round, wk->failed_client);
        if (wk->rc)
            return fp_error_set(err, wk->rc, "round %u: client %u's update failed: %s", s->round,
                                wk->failed_client, fp_strerror(wk->rc));
    }
    return 0;
}

static void fp__eval_worker(void *arg)
{
    struct fp__worker *wk = arg;
    struct fp__sim *s = wk->sim;
    for (;;) {
        unsigned b = atomic_fetch_add(&s->next, 1);
        if (b >= s->eval_nblocks)
            break;
        s->w->ops->eval_block(s->w, wk->wws, s->server.x, b, &s->eval_loss[b], &s->eval_correct[b],
                              &s->eval_count[b]);
    }
}

/* Test-set evaluation. Where the workload splits its test set into blocks,
 * the team evaluates them in parallel and the sums run in block order, which
 * is exactly what the workload's own evaluate() computes. */
static int fp__evaluate(struct fp__sim *s, double *loss, double *acc, struct fp_error *err)
{
    if (!s->eval_nblocks || s->nworkers == 1) {
        s->w->ops->evaluate(s->w, s->workers[0].wws, s->server.x, loss, acc);
        return 0;
    }
    int rc = fp__team(s, fp__eval_worker, (unsigned)s->eval_nblocks, err);
    if (rc)
        return rc;
    double total = 0;
    uint64_t correct = 0, n = 0;
    for (size_t b = 0; b < s->eval_nblocks; b++) {
        total += s->eval_loss[b];
        correct += s->eval_correct[b];
        n += s->eval_count[b];
    }
    *loss = n ? total / (double)n : NAN;
    *acc = n ? (double)correct / (double)n : NAN;
    return 0;
}

static int fp__load_init(struct fp__sim *s, struct fp_error *err)
{
    const char *path = s->sc->init_path;
    const size_t d = s->p.d;
    FILE *f = fopen(path, "rb");
    if (!f)
        return fp_error_set(err, FP_EIO, "[model] init = %s: cannot open: %s", path,
                            strerror(errno));
    size_t got = fread(s->server.x, sizeof(float), d, f);
    int extra = fgetc(f);
    fclose(f);
    if (got != d || extra != EOF)
        return fp_error_set(err, FP_EFORMAT,
                            "[model] init = %s: expected exactly %zu float32 values (%zu bytes) "
                            "for model %s",
                            path, d, d * sizeof(float), fp_model_name(s->sc->model));
    for (size_t j = 0; j < d; j++)
        if (!isfinite(s->server.x[j]))
            return fp_error_set(err, FP_EFORMAT, "[model] init = %s: value %zu is not finite", path,
                                j);
    /* The file is exactly these bytes (checked above): their hash is the
     * file's, without reading it twice. */
    char hex[65];
    fp_sha256_hex(s->server.x, d * sizeof(float), hex);
    return fp_inputs_add(&s->w->inputs, path, hex, err);
}

/* A resumed run must end with the model the run would have ended with, so
 * every file it read when it started must still hold the same bytes. The
 * workload recorded what it read now (s->w->inputs); the init file, which a
 * state checkpoint makes unnecessary to read, is hashed here so that it is
 * checked all the same. A run stored before schema version 3 recorded
 * nothing: it resumes as it always did, with a warning. */
static int fp__check_inputs(struct fp__sim *s, const struct fp_resume *rs, int64_t run,
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
    if (rs->state && s->sc->init_path[0]) {
        char hex[65];
        int rc = fp_sha256_file(s->sc->init_path, hex, err);
        if (rc)
            return rc;
        if ((rc = fp_inputs_add(&s->w->inputs, s->sc->init_path, hex, err)))
            return rc;
    }
    return fp_inputs_compare(rs->inputs, s->w->inputs.text, whose, err);
}

/* The temporary file next to path (so that rename() is atomic): a fresh
 * name (mkstemp, O_EXCL), so it never replaces a file that exists, with the
 * permissions a plain fopen() would have given. Returns its descriptor. */
static int fp__model_tmp(const char *path, char *tmp, size_t n, struct fp_error *err)
{
    if ((size_t)snprintf(tmp, n, "%s.XXXXXX", path) >= n)
        return fp_error_set(err, FP_EINVAL, "--model-out %s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return fp_error_set(err, FP_EIO, "--model-out %s: cannot create a file there: %s", path,
                            strerror(errno));
    mode_t mask = umask(0);
    umask(mask);
    (void)fchmod(fd, 0666 & ~mask); /* mkstemp's 0600 is only safer, never wrong */
    return fd;
}

/* Everything about the model's path that can be known before the run: not
 * a directory, a special file or a symlink (rename would replace a device
 * node, or a link such as /dev/stdout), and a directory that exists and
 * takes a new file (made and removed here). */
static int fp__check_model_out(const char *path, struct fp_error *err)
{
    struct stat st;
    char tmp[PATH_MAX];
    if (!*path)
        return fp_error_set(err, FP_EINVAL, "--model-out: the path is empty");
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return fp_error_set(err, FP_EINVAL, "--model-out %s is a directory; give a file name",
                            path);
    /* lstat: rename replaces the directory entry itself, so a symlink
     * would be replaced, not written through */
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return fp_error_set(err, FP_EINVAL,
                            "--model-out %s is %s, not a regular file (the model would replace "
                            "it); give the path of a file",
                            path, S_ISLNK(st.st_mode) ? "a symbolic link" : "a special file");
    const char *slash = strrchr(path, '/');
    if (slash) {
        snprintf(tmp, sizeof tmp, "%.*s", slash == path ? 1 : (int)(slash - path), path);
        int found = stat(tmp, &st) == 0;
        if (!found || !S_ISDIR(st.st_mode))
            return fp_error_set(err, FP_EIO, "--model-out %s: its directory %s: %s", path, tmp,
                                found ? "not a directory" : strerror(errno));
    }
    int fd = fp__model_tmp(path, tmp, sizeof tmp, err);
    if (fd < 0)
        return fd;
    close(fd);
    unlink(tmp);
    return 0;
}

static int fp__write_model(const char *path, const float *x, size_t d, struct fp_error *err)
{
    /* Write to a temporary name and rename, so a crash never leaves half a model. */
    char tmp[PATH_MAX];
    int fd = fp__model_tmp(path, tmp, sizeof tmp, err);
    if (fd < 0)
        return fd;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        return fp_error_set(err, FP_EIO, "--model-out %s: %s", path, strerror(errno));
    }
    int ok = fwrite(x, sizeof(float), d, f) == d;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return fp_error_set(err, FP_EIO, "--model-out %s: cannot write the model: %s", path,
                            strerror(e));
    }
    return 0;
}

static void fp__progress(const struct fp__sim *s, FILE *out, const struct fp_round *r,
                         uint32_t done_here, uint64_t uplink_total, double elapsed_ms)
{
    char up[32], acc[48] = "";
    fp_format_bytes(uplink_total, up, sizeof up);
    if (!isnan(r->test_accuracy))
        snprintf(acc, sizeof acc, "  test_acc %6.2f%%", 100 * r->test_accuracy);
    else if (!isnan(r->test_loss))
        snprintf(acc, sizeof acc, "  test_loss %.6g", r->test_loss);
    double per = elapsed_ms / done_here; /* rounds run by this process (a resume runs fewer) */
    double eta = per * (s->sc->rounds - r->round) / 1e3;
    fprintf(out, "[%s] round %u/%u  train_loss %.4f%s  uplink %s  %.2f s/round  eta %.0fs\n",
            s->sc->name, r->round, s->sc->rounds, r->train_loss, acc, up, per / 1e3, eta);
    fflush(out);
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

/* Totals of the rounds a resumed run already has. */
static int fp__sum_rounds(void *u, const struct fp_round *r)
{
    struct fp_sim_result *res = u;
    res->rounds_done = r->round;
    res->uplink_bytes += r->uplink_bytes;
    res->downlink_bytes += r->downlink_bytes;
    if (!isnan(r->test_loss) || !isnan(r->test_accuracy)) {
        res->test_loss = r->test_loss;
        res->test_accuracy = r->test_accuracy;
    }
    return 0;
}

static void fp__free(struct fp__sim *s)
{
    if (s->workers) {
        for (unsigned t = 0; t < s->nworkers; t++) {
            if (s->workers[t].wws)
                fp_workload_ws_free(s->w, s->workers[t].wws);
            fp_algo_ws_free(&s->workers[t].aws, &s->p);
        }
        free(s->workers);
    }
    if (s->cstate) {
        for (uint32_t i = 0; i < s->sc->clients; i++)
            fp_client_state_free(&s->cstate[i]);
        free(s->cstate);
    }
    fp_server_free(&s->server);
    free(s->perm);
    free(s->chosen);
    free(s->uploads);
    free(s->upload_len);
    free(s->loss);
    free(s->crow);
    free(s->eval_loss);
    free(s->eval_correct);
    free(s->eval_count);
    if (s->w)
        fp_workload_free(s->w);
}

int fp_sim_run(const struct fp_scenario *sc, struct fp_store *store,
               const struct fp_sim_options *opt, struct fp_sim_result *res, struct fp_error *err)
{
    struct fp__sim s;
    memset(&s, 0, sizeof s);
    memset(res, 0, sizeof *res);
    res->run_id = -1;
    res->test_loss = res->test_accuracy = NAN;
    s.sc = sc;
    s.stop = opt->stop;
    const double t0 = fp__now_ms();
    char *canon = NULL;
    int rc;

    /* Outputs first: a path that cannot take the model, or that would
     * overwrite the store, is found before a run starts, not after it. */
    if (opt->model_out &&
        ((rc = fp_store_check_output(fp_store_path(store), opt->model_out, err)) ||
         (rc = fp__check_model_out(opt->model_out, err))))
        return rc;

    /* Parallelism is ours, across clients; OpenBLAS threads inside each
     * client would oversubscribe the cores and make timing erratic. */
    openblas_set_num_threads(1);

    /* A stored input that is gone is named before the loader trips on it
     * with a less helpful "not found". */
    if (opt->resume && opt->resume->inputs) {
        char whose[48];
        snprintf(whose, sizeof whose, "run %lld", (long long)opt->resume_run);
        if ((rc = fp_inputs_present(opt->resume->inputs, whose, err)))
            goto fail;
    }
    if ((rc = fp_workload_create(&s.w, sc, err)))
        goto fail;
    if ((rc = fp_algo_params_from(&s.p, sc, s.w->d, err)))
        goto fail;
    if ((rc = fp_server_init(&s.server, &s.p, err)))
        goto fail;
    if (opt->resume && opt->resume->state) {
        /* x, c and the clients' state are in the checkpoint: no init */
    } else if (sc->init_path[0]) {
        if ((rc = fp__load_init(&s, err)))
            goto fail;
    } else {
        fp_rng r;
        fp_rng_seed(&r, sc->seed, 0, FP_RNG_NO_CLIENT, FP_RNG_INIT);
        s.w->ops->init_params(s.w, &r, s.server.x);
    }

    const uint32_t N = sc->clients, S = sc->sample;
    s.upload_bytes = fp_algo_upload_bytes(&s.p);
    size_t per_chunk = FP__CHUNK_BYTES / s.upload_bytes;
    s.chunk = (uint32_t)(per_chunk < 1 ? 1 : per_chunk < S ? per_chunk : S);
    s.nworkers = opt->threads ? opt->threads : 1;
    rc = FP_ENOMEM;
    s.cstate = calloc(N, sizeof *s.cstate);
    s.perm = malloc(N * sizeof *s.perm);
    s.chosen = malloc(S * sizeof *s.chosen);
    s.uploads = malloc((size_t)s.chunk * s.upload_bytes);
    s.upload_len = calloc(s.chunk, sizeof *s.upload_len);
    s.loss = calloc(s.chunk, sizeof *s.loss);
    s.crow = calloc(S, sizeof *s.crow);
    s.workers = calloc(s.nworkers, sizeof *s.workers);
    if (!s.cstate || !s.perm || !s.chosen || !s.uploads || !s.upload_len || !s.loss || !s.crow ||
        !s.workers) {
        fp_error_set(err, rc, "out of memory setting up %u clients (d = %zu)", N, s.p.d);
        goto fail;
    }
    for (unsigned t = 0; t < s.nworkers; t++) {
        s.workers[t].sim = &s;
        s.workers[t].wws = fp_workload_ws_new(s.w);
        if (!s.workers[t].wws || fp_algo_ws_init(&s.workers[t].aws, &s.p)) {
            fp_error_set(err, rc, "out of memory for worker %u's workspace", t);
            goto fail;
        }
    }

    if (s.w->ops->eval_blocks && s.w->ops->eval_block) {
        s.eval_nblocks = s.w->ops->eval_blocks(s.w);
        s.eval_loss = calloc(s.eval_nblocks, sizeof *s.eval_loss);
        s.eval_correct = calloc(s.eval_nblocks, sizeof *s.eval_correct);
        s.eval_count = calloc(s.eval_nblocks, sizeof *s.eval_count);
        if (!s.eval_loss || !s.eval_correct || !s.eval_count) {
            fp_error_set(err, rc, "out of memory for evaluation");
            goto fail;
        }
    }

    canon = fp_scenario_canonical(sc);
    if (!canon) {
        fp_error_set(err, rc, "out of memory");
        goto fail;
    }
    char cname[64];
    fp_comp_name(&sc->uplink, cname, sizeof cname);
    struct fp_run_meta meta = {.name = sc->name,
                               .algorithm = fp_algo_name(sc->algorithm),
                               .compressor = cname,
                               .dataset = fp_dataset_name(sc->dataset),
                               .scenario = canon,
                               .seed = sc->seed,
                               .rounds = sc->rounds,
                               .clients = N,
                               .sample = S,
                               .d = s.p.d,
                               .threads = s.nworkers,
                               .inputs = s.w->inputs.text ? s.w->inputs.text : "",
                               /* a kernel rounds its own way: replay holds per kernel */
                               .blas = fp_blas_describe()};
    uint32_t first_round = 1, state_round = 0;
    if (opt->resume) {
        /* Continue run opt->resume_run after its newest state checkpoint:
         * everything the store holds past that round is forgotten and run
         * again, the same bits since every draw is keyed by its round. */
        const struct fp_resume *rs = opt->resume;
        /* Before anything of the run in the store is touched: a refusal
         * leaves it as it was. */
        if ((rc = fp__check_inputs(&s, rs, opt->resume_run, err)))
            goto fail;
        if (rs->state &&
            (rc = fp_algo_state_load(&s.server, s.cstate, rs->state, rs->state_len, err)))
            goto fail;
        first_round = rs->state ? rs->round + 1 : 1;
        res->run_id = opt->resume_run;
        if ((rc = fp_store_rewind(store, res->run_id, first_round - 1, s.nworkers, err)))
            goto fail;
        if ((rc = fp_store_list_rounds(store, res->run_id, fp__sum_rounds, res, err)))
            goto fail;
    } else if ((rc = fp_store_begin_run(store, &meta, &res->run_id, err))) {
        goto fail;
    } else if (opt->started && (rc = opt->started(opt->started_u, res->run_id))) {
        fp_error_set(err, rc, "run %lld could not start", (long long)res->run_id);
        goto fail;
    }

    const uint64_t down_each = fp_algo_downlink_bytes(&s.p);
    /* s/round and the ETA count rounds only, not the dataset load before them. */
    const double t_rounds = fp__now_ms();
    for (uint32_t round = first_round; round <= sc->rounds; round++) {
        /* Checked between rounds only: a round once started is finished and
         * committed, so client state (c_i, e_i, w_i) never runs ahead of the
         * server's and the store ends on a whole round. */
        if (s.stop && *s.stop)
            break;
        const double r0 = fp__now_ms();
        s.round = round;
        fp__sample(&s, round);
        fp_algo_server_begin(&s.server);
        struct fp_round row = {.round = round,
                               .participants = S,
                               .clients = s.crow,
                               .test_loss = NAN,
                               .test_accuracy = NAN};
        double loss_sum = 0;
        for (uint32_t first = 0; first < S; first += s.chunk) {
            s.chunk_first = first;
            s.chunk_n = S - first < s.chunk ? S - first : s.chunk;
            if ((rc = fp__train_chunk(&s, err)))
                goto fail;
            for (uint32_t i = 0; i < s.chunk_n; i++) {
                uint32_t client = s.chosen[first + i];
                rc = fp_algo_server_add(&s.server, round, client,
                                        s.uploads + (size_t)i * s.upload_bytes, s.upload_len[i],
                                        err);
                if (rc)
                    goto fail;
                struct fp_client_round *cr = &s.crow[first + i];
                cr->client = client;
                cr->train_loss = s.loss[i];
                cr->uplink_bytes = s.upload_len[i];
                cr->downlink_bytes = down_each;
                cr->examples = s.w->n_local[client];
                loss_sum += s.loss[i];
                row.uplink_bytes += s.upload_len[i];
                row.downlink_bytes += down_each;
            }
        }
        fp_algo_server_finish(&s.server, S);
        row.train_loss = loss_sum / S;
        if (round % sc->eval_every == 0 || round == sc->rounds) {
            if ((rc = fp__evaluate(&s, &row.test_loss, &row.test_accuracy, err)))
                goto fail;
            res->test_loss = row.test_loss;
            res->test_accuracy = row.test_accuracy;
        }
        row.wall_ms = fp__now_ms() - r0;
        /* The whole state goes with the round every checkpoint_every rounds;
         * a run stopping early stores it once after the loop. */
        void *state = NULL;
        size_t state_len = 0;
        if (round < sc->rounds && sc->checkpoint_every && round % sc->checkpoint_every == 0 &&
            fp_algo_state_save(&s.server, s.cstate, &state, &state_len))
            fp__warn_state(round, "out of memory for it");
        rc = fp_store_commit_round_state(store, res->run_id, &row, state, state_len, err);
        if (rc && state) {
            /* A checkpoint is a convenience; the round is not. If the state
             * cannot be stored (a full disk, say), commit the round without
             * it and say so. */
            fp__warn_state(round, err->msg);
            free(state);
            state = NULL;
            state_round = round; /* tried: the stop path below need not try again */
            rc = fp_store_commit_round_state(store, res->run_id, &row, NULL, 0, err);
        }
        free(state);
        if (rc)
            goto fail;
        if (state)
            state_round = round;
        res->rounds_done = round;
        res->uplink_bytes += row.uplink_bytes;
        res->downlink_bytes += row.downlink_bytes;
        /* A progress line that cannot be written (a closed terminal, a
         * reader gone, a full disk) is dropped, and after the first failure
         * no more are tried: the run goes on. */
        if (opt->progress && !ferror(opt->progress))
            fp__progress(&s, opt->progress, &row, round - first_round + 1, res->uplink_bytes,
                         fp__now_ms() - t_rounds);
    }

    res->interrupted = res->rounds_done < sc->rounds;
    /* Stopped early: the state after the last committed round goes to the
     * store, unless that round's commit already carried (or tried) it. */
    if (res->interrupted && res->rounds_done >= first_round && state_round != res->rounds_done) {
        void *state;
        size_t state_len;
        struct fp_error e2 = {0};
        if (fp_algo_state_save(&s.server, s.cstate, &state, &state_len)) {
            fp__warn_state(res->rounds_done, "out of memory for it");
        } else {
            if (fp_store_put_state(store, res->run_id, res->rounds_done, state, state_len, &e2))
                fp__warn_state(res->rounds_done, e2.msg);
            free(state);
        }
    }
    fp_sha256_hex(s.server.x, s.p.d * sizeof(float), res->model_sha256);
    /* The store first: it keeps the final model as a checkpoint, so a
     * model file that cannot be written afterwards loses nothing. */
    enum fp_run_status fin = res->interrupted ? FP_RUN_INTERRUPTED : FP_RUN_COMPLETED;
    rc = fp_store_finish_run(store, res->run_id, fin, s.server.x, s.p.d, res->rounds_done, err);
    if (rc) {
        /* the store failed: the model file is then the only copy */
        if (opt->model_out)
            (void)fp__write_model(opt->model_out, s.server.x, s.p.d, &(struct fp_error){0});
        goto fail;
    }
    res->stored_status = fp_run_status_name(fin);
    if (opt->model_out && (rc = fp__write_model(opt->model_out, s.server.x, s.p.d, err))) {
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n,
                 ". The run is %s and its final model (sha256 %s) is in the store: "
                 "sqlite3 '%s' \"SELECT writefile('MODEL.f32', data) FROM checkpoints "
                 "WHERE run_id = %lld AND kind = 'model'\"",
                 res->stored_status, res->model_sha256, fp_store_path(store),
                 (long long)res->run_id);
        free(canon);
        fp__free(&s);
        return rc;
    }
    res->seconds = (fp__now_ms() - t0) / 1e3;
    free(canon);
    fp__free(&s);
    return 0;

fail:
    if (res->run_id >= 0) {
        struct fp_error e2;
        if (fp_store_finish_run(store, res->run_id, FP_RUN_FAILED, NULL, 0, res->rounds_done,
                                &e2) == 0)
            res->stored_status = fp_run_status_name(FP_RUN_FAILED);
    }
    free(canon);
    fp__free(&s);
    return rc;
}
