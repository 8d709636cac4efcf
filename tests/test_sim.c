/*
 * tests/test_sim.c — the simulator driver: convergence to independently
 * computed fixed points on the exact quadratic, byte-identical results at
 * any thread count, exact byte accounting, and a clean interrupted run.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "algorithms/algorithm.h"
#include "core/scenario.h"
#include "run/participation.h"
#include "run/run.h"
#include "sim/sim.h"
#include "store/store.h"
#include "workloads/workload.h"

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fp_sim_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd);
}

static struct fp_store *open_store(const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    struct fp_store *st;
    struct fp_error err = {0};
    if (fp_store_open(&st, path, &err))
        fail_msg("%s", err.msg);
    return st;
}

static void load(struct fp_scenario *sc, const char *text)
{
    struct fp_error err = {0};
    if (fp_scenario_load_string(sc, text, "test", NULL, 0, &err))
        fail_msg("%s", err.msg);
}

static float *read_model(const char *path, size_t d)
{
    float *x = malloc(d * sizeof *x);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(x, sizeof *x, d, f), d);
    fclose(f);
    return x;
}

/* Recovers a_ij and b_ij of the quadratic by probing its exact gradient:
 * g_i(0) = -a∘b and g_i(1) = a∘(1 - b). Independent of how it was generated. */
static void probe_quadratic(const struct fp_scenario *sc, double *a, double *b)
{
    struct fp_workload *w;
    struct fp_error err = {0};
    assert_int_equal(fp_workload_create(&w, sc, &err), 0);
    size_t d = w->d;
    void *ws = fp_workload_ws_new(w);
    float *zero = calloc(d, sizeof *zero), *one = malloc(d * sizeof *one);
    float *g0 = malloc(d * sizeof *g0), *g1 = malloc(d * sizeof *g1);
    for (size_t j = 0; j < d; j++)
        one[j] = 1;
    for (uint32_t i = 0; i < sc->clients; i++) {
        fp_rng r;
        double loss;
        fp_rng_seed(&r, 1, 1, i, FP_RNG_MINIBATCH);
        w->ops->grad(w, ws, i, zero, 1, &r, g0, &loss);
        w->ops->grad(w, ws, i, one, 1, &r, g1, &loss);
        for (size_t j = 0; j < d; j++) {
            a[i * d + j] = (double)g1[j] - g0[j];
            b[i * d + j] = -g0[j] / a[i * d + j];
            assert_true(a[i * d + j] >= 0.5 - 1e-6 && a[i * d + j] <= 2 + 1e-6);
        }
    }
    free(zero), free(one), free(g0), free(g1);
    fp_workload_ws_free(w, ws);
    fp_workload_free(w);
}

static const char quad_text[] = "[run]\nrounds = 400\neval_every = 50\n"
                                "[data]\ndataset = quadratic\nclients = 5\ndim = 4\n"
                                "[algorithm]\nlocal_steps = 5\nbatch = 1\nlr_local = 0.1\n";

static void run_sim(const struct fp_scenario *sc, unsigned threads, const char *model_name,
                    struct fp_store *st, struct fp_run_result *res)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, model_name);
    struct fp_sim_options opt = {.threads = threads, .model_out = path};
    struct fp_error err = {0};
    if (fp_sim_run(sc, st, &opt, res, &err))
        fail_msg("%s", err.msg);
}

/* SCAFFOLD with exact gradients and full participation converges to the
 * minimiser of the mean objective, x*_j = sum_i a_ij b_ij / sum_i a_ij.
 * FedAvg converges to its own, drifted, fixed point: client i's K steps
 * shrink (x - b_i) by (1 - eta a_i)^K, so Delta_i = w_i (x - b_i) with
 * w_i = 1 - (1 - eta a_i)^K and the fixed point is sum w_i b_i / sum w_i. */
static void test_quadratic_fixed_points(void **state)
{
    (void)state;
    struct fp_scenario sc;
    load(&sc, quad_text);
    const size_t d = 4, N = 5;
    double a[5 * 4], b[5 * 4];
    probe_quadratic(&sc, a, b);

    struct fp_store *st = open_store("quad.db");
    struct fp_run_result res;
    char mpath[128];

    sc.algorithm = FP_ALGO_SCAFFOLD;
    run_sim(&sc, 1, "scaffold.f32", st, &res);
    snprintf(mpath, sizeof mpath, "%s/scaffold.f32", tmpdir);
    float *xs = read_model(mpath, d);
    sc.algorithm = FP_ALGO_FEDAVG;
    run_sim(&sc, 1, "fedavg.f32", st, &res);
    snprintf(mpath, sizeof mpath, "%s/fedavg.f32", tmpdir);
    float *xf = read_model(mpath, d);

    double drift = 0;
    for (size_t j = 0; j < d; j++) {
        double num = 0, den = 0, fnum = 0, fden = 0;
        for (size_t i = 0; i < N; i++) {
            double aij = a[i * d + j], bij = b[i * d + j];
            num += aij * bij;
            den += aij;
            double w = 1 - pow(1 - 0.1 * aij, 5);
            fnum += w * bij;
            fden += w;
        }
        double xstar = num / den, xfed = fnum / fden;
        if (fabs(xs[j] - xstar) > 1e-4)
            fail_msg("scaffold x[%zu] = %.7g, minimiser %.7g", j, xs[j], xstar);
        if (fabs(xf[j] - xfed) > 1e-4)
            fail_msg("fedavg x[%zu] = %.7g, its fixed point %.7g", j, xf[j], xfed);
        drift += fabs(xfed - xstar);
    }
    assert_true(drift > 1e-3); /* the problem really has client drift */
    free(xs);
    free(xf);
    fp_store_close(st);
}

struct rows {
    int n;
    struct fp_round r[16];
};

static int collect(void *u, const struct fp_round *r)
{
    struct rows *rows = u;
    assert_true(rows->n < 16);
    rows->r[rows->n++] = *r;
    return 0;
}

static void same_rounds(const struct rows *x, const struct rows *y)
{
    assert_int_equal(x->n, y->n);
    for (int i = 0; i < x->n; i++) {
        const struct fp_round *p = &x->r[i], *q = &y->r[i];
        /* bitwise: same bytes, not just close values (NaN compares equal bitwise) */
        assert_memory_equal(&p->train_loss, &q->train_loss, sizeof(double));
        assert_memory_equal(&p->test_loss, &q->test_loss, sizeof(double));
        assert_memory_equal(&p->test_accuracy, &q->test_accuracy, sizeof(double));
        assert_true(p->uplink_bytes == q->uplink_bytes && p->downlink_bytes == q->downlink_bytes);
        assert_int_equal(p->participants, q->participants);
    }
}

/* Same scenario and seed: the same model bytes and metrics at 1, 2 and 3
 * threads, on the real data with partial participation and minibatches. */
static void test_thread_count_determinism(void **state)
{
    (void)state;
    struct fp_scenario sc;
    load(&sc, "[run]\nrounds = 3\n[data]\nclients = 20\npartition = dirichlet:0.5\n"
              "[model]\nhidden = 16\n[algorithm]\nname = scaffold\nlocal_steps = 3\n"
              "[participation]\nsample = 7\n");
    struct fp_store *st = open_store("det.db");
    struct fp_run_result r1, r2, r3;
    run_sim(&sc, 1, "m1.f32", st, &r1);
    run_sim(&sc, 2, "m2.f32", st, &r2);
    run_sim(&sc, 3, "m3.f32", st, &r3);
    assert_string_equal(r1.model_sha256, r2.model_sha256);
    assert_string_equal(r1.model_sha256, r3.model_sha256);
    assert_true(r1.test_accuracy > 0.2); /* it learned: chance is 0.1 */

    struct rows a = {0}, b = {0}, c = {0};
    struct fp_error err = {0};
    assert_int_equal(fp_store_list_rounds(st, r1.run_id, collect, &a, &err), 0);
    assert_int_equal(fp_store_list_rounds(st, r2.run_id, collect, &b, &err), 0);
    assert_int_equal(fp_store_list_rounds(st, r3.run_id, collect, &c, &err), 0);
    assert_int_equal(a.n, 3);
    same_rounds(&a, &b);
    same_rounds(&a, &c);

    /* exact bytes: 7 uploads of d float32 up, x and c down to each */
    const uint64_t d = 784 * 16 + 16 + 16 * 10 + 10;
    assert_true(a.r[0].uplink_bytes == 7 * 4 * d);
    assert_true(a.r[0].downlink_bytes == 7 * 8 * d);
    assert_true(r1.uplink_bytes == 3 * 7 * 4 * d);

    /* a different seed gives a different model */
    sc.seed = 2;
    struct fp_run_result r4;
    run_sim(&sc, 2, "m4.f32", st, &r4);
    assert_string_not_equal(r1.model_sha256, r4.model_sha256);
    fp_store_close(st);
}

/* The compressed algorithms too: random compressors draw from keyed streams
 * on both sides, so thread count changes nothing. */
static void test_compressed_thread_determinism(void **state)
{
    (void)state;
    const char *cfg[] = {
        "[algorithm]\nname = scafcom\nbeta = 0.5\n[compressor]\nname = topk\nratio = 0.05\n",
        "[algorithm]\nname = scallion\n[compressor]\nname = randk\nratio = 0.05\n",
        "[algorithm]\nname = fedpaq\n[compressor]\nname = qsgd:4\n",
        "[algorithm]\nname = fedef\n[compressor]\nname = sign\n",
    };
    struct fp_store *st = open_store("cdet.db");
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        char text[512];
        snprintf(text, sizeof text,
                 "[run]\nrounds = 2\n[data]\nclients = 12\n[model]\nhidden = 8\n"
                 "[participation]\nsample = 5\n%s",
                 cfg[i]);
        struct fp_scenario sc;
        load(&sc, text);
        struct fp_run_result r1, r3;
        run_sim(&sc, 1, "c1.f32", st, &r1);
        run_sim(&sc, 3, "c3.f32", st, &r3);
        if (strcmp(r1.model_sha256, r3.model_sha256))
            fail_msg("config %zu: 1 thread %s, 3 threads %s", i, r1.model_sha256, r3.model_sha256);
        assert_memory_equal(&r1.test_loss, &r3.test_loss, sizeof(double));
        assert_true(r1.uplink_bytes == r3.uplink_bytes && r1.uplink_bytes > 0);
    }
    fp_store_close(st);
}

static void test_stop_flag_marks_interrupted(void **state)
{
    (void)state;
    struct fp_scenario sc;
    load(&sc, quad_text);
    struct fp_store *st = open_store("stop.db");
    volatile sig_atomic_t stop = 1;
    struct fp_sim_options opt = {.threads = 2, .stop = &stop};
    struct fp_run_result res;
    struct fp_error err = {0};
    assert_int_equal(fp_sim_run(&sc, st, &opt, &res, &err), 0);
    assert_true(res.interrupted);
    assert_int_equal(res.rounds_done, 0);
    struct rows rows = {0};
    assert_int_equal(fp_store_list_rounds(st, res.run_id, collect, &rows, &err), 0);
    assert_int_equal(rows.n, 0);
    fp_store_close(st);
}

/* A progress stream that raises the stop flag when round 2's line is
 * written: a Ctrl-C arriving during round 3, deterministically. */
static volatile sig_atomic_t cookie_stop;
static ssize_t cookie_write(void *c, const char *buf, size_t n)
{
    (void)c;
    if (memmem(buf, n, "round 2/", 8))
        cookie_stop = 1;
    return (ssize_t)n;
}

/* Runs sc with a Ctrl-C that arrives while round 2 is being reported. */
static void run_until_round_2(const struct fp_scenario *sc, unsigned threads, struct fp_store *st,
                              struct fp_run_result *res)
{
    cookie_io_functions_t io = {.write = cookie_write};
    FILE *progress = fopencookie(NULL, "w", io);
    assert_non_null(progress);
    setvbuf(progress, NULL, _IOLBF, 0);
    cookie_stop = 0;
    struct fp_sim_options opt = {.threads = threads, .stop = &cookie_stop, .progress = progress};
    struct fp_error err = {0};
    if (fp_sim_run(sc, st, &opt, res, &err))
        fail_msg("%s", err.msg);
    fclose(progress);
}

static void test_stop_mid_run_finishes_the_round(void **state)
{
    (void)state;
    struct fp_scenario sc;
    load(&sc, quad_text);
    struct fp_store *st = open_store("stop2.db");
    struct fp_run_result res;
    struct fp_error err = {0};
    run_until_round_2(&sc, 2, st, &res);
    assert_true(res.interrupted);
    /* the flag rose while round 2 was being reported: round 3 never started */
    assert_int_equal(res.rounds_done, 2);
    struct rows rows = {0};
    assert_int_equal(fp_store_list_rounds(st, res.run_id, collect, &rows, &err), 0);
    assert_int_equal(rows.n, 2);
    fp_store_close(st);
}

/* Stop a run after round 3 (Ctrl-C in round 4, deterministically: the
 * cookie stream), resume it from the store, and get the bytes of a run that
 * never stopped: model and every round's metrics. */
static void test_resume_gives_the_same_run(void **state)
{
    (void)state;
    struct fp_scenario sc;
    load(&sc, "[run]\nrounds = 6\ncheckpoint_every = 4\n[data]\nclients = 12\n"
              "[model]\nhidden = 8\n[algorithm]\nname = scafcom\nbeta = 0.5\n"
              "[participation]\nsample = 5\n[compressor]\nname = topk\nratio = 0.05\n");
    struct fp_store *st = open_store("resume.db");
    struct fp_run_result full, part, resumed;
    run_sim(&sc, 2, "full.f32", st, &full);

    struct fp_error err = {0};
    run_until_round_2(&sc, 2, st, &part);
    assert_int_equal(part.rounds_done, 2);

    struct fp_resume rs;
    assert_int_equal(fp_store_load_resume(st, part.run_id, &rs, &err), 0);
    assert_non_null(rs.state); /* written when the stop was seen */
    assert_int_equal(rs.round, 2);
    assert_string_equal(rs.status, "interrupted");
    struct fp_scenario sc2;
    load(&sc2, rs.scenario); /* the run goes on from its stored scenario */
    struct fp_sim_options ro = {.threads = 1, .resume = &rs, .resume_run = part.run_id};
    assert_int_equal(fp_sim_run(&sc2, st, &ro, &resumed, &err), 0);
    fp_store_resume_free(&rs);
    assert_false(resumed.interrupted);
    assert_int_equal(resumed.run_id, part.run_id);
    assert_string_equal(resumed.model_sha256, full.model_sha256);
    assert_true(resumed.uplink_bytes == full.uplink_bytes);

    struct rows a = {0}, b = {0};
    assert_int_equal(fp_store_list_rounds(st, full.run_id, collect, &a, &err), 0);
    assert_int_equal(fp_store_list_rounds(st, part.run_id, collect, &b, &err), 0);
    assert_int_equal(a.n, 6);
    same_rounds(&a, &b);

    /* a completed run keeps no state; resuming it finds none */
    assert_int_equal(fp_store_load_resume(st, full.run_id, &rs, &err), 0);
    assert_null(rs.state);
    assert_string_equal(rs.status, "completed");
    fp_store_resume_free(&rs);
    assert_int_equal(fp_store_load_resume(st, 999, &rs, &err), FP_ENOTFOUND);
    fp_store_close(st);
}

/* d = 1000: the model is 4000 bytes, the SCAFCOM state over 8000 */
static const char big_state_text[] =
    "[run]\nrounds = 4\ncheckpoint_every = 1\n[data]\ndataset = quadratic\n"
    "clients = 5\ndim = 1000\n[algorithm]\nname = scafcom\nlocal_steps = 2\n"
    "batch = 1\nlr_local = 0.1\n";

/* A state checkpoint the store refuses (here: a 5000-byte value limit
 * below the 256 MiB parts, standing in for any failure to store it) costs
 * the resume point, never the round: the run completes, or stops as
 * 'interrupted', with every round stored. */
static void test_state_too_big_keeps_the_rounds(void **state)
{
    (void)state;
    struct fp_scenario sc;
    load(&sc, big_state_text);
    struct fp_store *st = open_store("big.db");
    struct fp_run_result ref, capped, stopped;
    run_sim(&sc, 1, "ref.f32", st, &ref);
    fp_store_set_value_limit(st, 5000);
    run_sim(&sc, 1, "capped.f32", st, &capped);
    assert_false(capped.interrupted);
    assert_int_equal(capped.rounds_done, 4);
    assert_string_equal(capped.model_sha256, ref.model_sha256);

    struct fp_error err = {0};
    run_until_round_2(&sc, 1, st, &stopped);
    assert_true(stopped.interrupted);
    assert_int_equal(stopped.rounds_done, 2);
    struct fp_resume rs;
    assert_int_equal(fp_store_load_resume(st, stopped.run_id, &rs, &err), 0);
    assert_string_equal(rs.status, "interrupted");
    assert_null(rs.state); /* refused, so --resume reruns from the start */
    fp_store_resume_free(&rs);
    fp_store_close(st);
}

/* A state larger than one part (here parts of 1000 bytes, standing in for
 * 256 MiB) is stored in checkpoint_parts and read back whole: the resumed
 * run ends with the bytes of the uninterrupted one. */
static void test_state_in_parts(void **state)
{
    (void)state;
    struct fp_scenario sc;
    load(&sc, big_state_text);
    struct fp_store *st = open_store("parts.db");
    struct fp_run_result ref, stopped, resumed;
    run_sim(&sc, 1, "ref.f32", st, &ref);
    fp_store_set_part_bytes(st, 1000);
    fp_store_set_value_limit(st, 5000);
    run_until_round_2(&sc, 1, st, &stopped);
    assert_true(stopped.interrupted);
    struct fp_resume rs;
    struct fp_error err = {0};
    assert_int_equal(fp_store_load_resume(st, stopped.run_id, &rs, &err), 0);
    assert_non_null(rs.state);
    assert_int_equal(rs.round, 2);
    assert_true(rs.state_len > 8000); /* so 9 or more parts */
    sqlite3 *db;
    char path[256];
    snprintf(path, sizeof path, "%s/parts.db", tmpdir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*), max(length(data)) FROM checkpoint_parts",
                                        -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_true(sqlite3_column_int(q, 0) >= 8);
    assert_int_equal(sqlite3_column_int(q, 1), 1000);
    sqlite3_finalize(q);
    sqlite3_close(db);

    struct fp_scenario sc2;
    load(&sc2, rs.scenario);
    struct fp_sim_options ro = {.threads = 1, .resume = &rs, .resume_run = stopped.run_id};
    assert_int_equal(fp_sim_run(&sc2, st, &ro, &resumed, &err), 0);
    fp_store_resume_free(&rs);
    assert_false(resumed.interrupted);
    assert_string_equal(resumed.model_sha256, ref.model_sha256);
    /* completed: no state, no parts */
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM checkpoint_parts", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    fp_store_close(st);
}

static void test_bad_init_file(void **state)
{
    (void)state;
    struct fp_scenario sc;
    load(&sc, quad_text);
    char path[128];
    snprintf(path, sizeof path, "%s/short.f32", tmpdir);
    FILE *f = fopen(path, "wb");
    float v[3] = {1, 2, 3};
    fwrite(v, sizeof v[0], 3, f); /* d = 4 wanted */
    fclose(f);
    snprintf(sc.init_path, sizeof sc.init_path, "%s", path);
    struct fp_store *st = open_store("init.db");
    struct fp_sim_options opt = {.threads = 1};
    struct fp_run_result res;
    struct fp_error err = {0};
    assert_int_equal(fp_sim_run(&sc, st, &opt, &res, &err), FP_EFORMAT);
    assert_non_null(strstr(err.msg, "expected exactly 4 float32 values"));

    /* a right-sized file is used as the starting point: with lr tiny and one
     * round the model stays next to it */
    float w[4] = {3, -3, 7, 0.5f};
    f = fopen(path, "wb");
    fwrite(w, sizeof w[0], 4, f);
    fclose(f);
    sc.rounds = 1;
    sc.lr_local = 1e-9;
    run_sim(&sc, 1, "warm.f32", st, &res);
    char mpath[128];
    snprintf(mpath, sizeof mpath, "%s/warm.f32", tmpdir);
    float *x = read_model(mpath, 4);
    for (int j = 0; j < 4; j++)
        assert_true(fabsf(x[j] - w[j]) < 1e-5f);
    free(x);
    fp_store_close(st);
}

/* A driver that includes only some of a round's uploads, as the coordinator
 * of issue 14 commits a round without a late client: the exchange's mean is
 * over the uploads included (the same model as a server given only those),
 * the round stores the rows of those participants only, and an upload
 * included out of order or twice is refused. */
static void test_round_with_a_missing_upload(void **state)
{
    (void)state;
    struct fp_scenario sc;
    load(&sc, "[run]\nrounds = 1\n[data]\ndataset = quadratic\nclients = 4\ndim = 3\n"
              "[algorithm]\nname = scaffold\nlocal_steps = 2\nbatch = 1\nlr_local = 0.1\n");
    struct fp_store *st = open_store("missing.db");
    const struct fp_run_options ro = {.threads = 1};
    struct fp_run r;
    struct fp_error err = {0};
    if (fp_run_open(&r, &sc, st, &ro, &err))
        fail_msg("%s", err.msg);
    const size_t d = r.p.d, ucap = fp_algo_upload_cap(&r.p), bcap = fp_algo_broadcast_cap(&r.p);
    struct fp_server ref;
    assert_int_equal(fp_server_init(&ref, &r.p, &err), 0);
    memcpy(ref.x, r.server.x, d * sizeof *ref.x);
    struct fp_algo_ws ws;
    assert_int_equal(fp_algo_ws_init(&ws, &r.p), 0);
    void *wws = fp_workload_ws_new(r.w);
    uint8_t *up = malloc(4 * ucap), *rb = malloc(bcap);
    size_t ulen[4], rblen;
    double loss[4];
    struct fp_client_state next[4] = {{0}};

    fp_run_round_begin(&r, 1);
    assert_int_equal(fp_run_phase_begin(&r, 0, &err), 1);
    assert_int_equal(fp_algo_server_broadcast(&ref, (uint64_t)r.res.run_id, 1, 0, rb, bcap, &rblen),
                     0);
    for (uint32_t i = 0; i < 4; i++) {
        const struct fp_msg_header who = {
            .run = (uint64_t)r.res.run_id, .round = 1, .phase = 0, .client = r.chosen[i]};
        if (fp_algo_client_update(&r.p, &who, r.bcast, r.bcast_len, &r.cstate[r.chosen[i]],
                                  &next[i], r.w, wws, &ws, up + i * ucap, ucap, &ulen[i], &loss[i],
                                  &err))
            fail_msg("%s", err.msg);
    }
    /* participant 1's upload is late: never included */
    const uint32_t kept[3] = {0, 2, 3};
    for (int k = 0; k < 3; k++) {
        const uint32_t i = kept[k];
        assert_int_equal(fp_run_include(&r, i, up + i * ucap, ulen[i], loss[i], NULL, &err), 0);
        assert_int_equal(fp_algo_server_add(&ref, r.chosen[i], up + i * ucap, ulen[i], &err), 0);
        if (k == 1) /* after slot 2: slot 1 now, or slot 2 again, is out of order */
            for (uint32_t again = 1; again <= 2; again++)
                assert_int_equal(fp_run_include(&r, again, up + again * ucap, ulen[again],
                                                loss[again], NULL, &err),
                                 FP_EINVAL);
    }
    fp_run_phase_end(&r);
    fp_algo_server_finish(&ref, 3);
    assert_int_equal(fp_run_phase_begin(&r, 1, &err), 0);
    fp_run_round_end(&r);
    assert_memory_equal(r.server.x, ref.x, d * sizeof *ref.x);
    assert_memory_equal(r.server.c, ref.c, d * sizeof *ref.c);
    assert_int_equal(r.row.participants, 3);
    for (int k = 0; k < 3; k++)
        assert_int_equal(r.row.clients[k].client, r.chosen[kept[k]]);
    assert_true(r.row.train_loss == (loss[0] + loss[2] + loss[3]) / 3);
    assert_int_equal(r.row.uplink_bytes, 3 * (ulen[0] - FP_MSG_HEADER));
    r.row.test_loss = r.row.test_accuracy = NAN;
    if (fp_run_commit(&r, &err) || fp_run_finish(&r, &err))
        fail_msg("%s", err.msg);

    for (int i = 0; i < 4; i++)
        fp_client_state_free(&next[i]);
    free(up), free(rb);
    fp_workload_ws_free(r.w, wws);
    fp_algo_ws_free(&ws, &r.p);
    fp_server_free(&ref);
    fp_run_close(&r);
    fp_store_close(st);
}

/* The coordinator of issue 14 on run/ and the core, in one process: run/
 * holds the test set only (fp_workload_create_test) and no client state;
 * each client holds its own shard (fp_workload_create_client), its own
 * state, and commits it when its upload is included. With every client
 * answering, the model is the simulator's bit for bit. */
static void test_coordinator_and_clients_match_sim(void **state)
{
    (void)state;
    struct fp_scenario sc;
    load(&sc, "[run]\nrounds = 3\n[data]\ndataset = quadratic\nclients = 4\ndim = 16\n"
              "[algorithm]\nname = scallion\nlocal_steps = 2\nbatch = 1\nlr_local = 0.1\n"
              "[participation]\nsample = 2\n[compressor]\nname = randk\nk = 4\n");
    struct fp_store *st = open_store("coord.db");
    struct fp_run_result sim;
    run_sim(&sc, 1, "coord-sim.f32", st, &sim);

    const struct fp_run_options ro = {.threads = 1, .create_workload = fp_workload_create_test};
    struct fp_run r;
    struct fp_error err = {0};
    if (fp_run_open(&r, &sc, st, &ro, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(fp_workload_check_client(r.w, 0, &err), FP_EINVAL); /* no client's data */
    struct {
        struct fp_workload *w;
        void *wws;
        struct fp_algo_params p;
        struct fp_algo_ws ws;
        struct fp_client_state cs, next;
    } cl[4];
    for (uint32_t i = 0; i < 4; i++) {
        memset(&cl[i], 0, sizeof cl[i]);
        if (fp_workload_create_client(&cl[i].w, &sc, i, &err) ||
            fp_algo_params_from(&cl[i].p, &sc, cl[i].w->d, &err))
            fail_msg("%s", err.msg);
        cl[i].wws = fp_workload_ws_new(cl[i].w);
        assert_int_equal(fp_algo_ws_init(&cl[i].ws, &cl[i].p), 0);
    }
    const size_t ucap = fp_algo_upload_cap(&r.p);
    uint8_t *up = malloc(ucap);
    void *ews = fp_workload_ws_new(r.w);
    for (uint32_t round = r.first_round; fp_run_next(&r, round); round++) {
        fp_run_round_begin(&r, round);
        for (unsigned phase = 0; fp_run_phase_begin(&r, phase, &err) > 0; phase++) {
            for (uint32_t slot = 0; slot < sc.sample; slot++) {
                const uint32_t id = r.chosen[slot];
                const struct fp_msg_header who = {.run = (uint64_t)r.res.run_id,
                                                  .round = round,
                                                  .phase = (uint16_t)phase,
                                                  .client = id};
                size_t len;
                double loss;
                if (fp_algo_client_update(&cl[id].p, &who, r.bcast, r.bcast_len, &cl[id].cs,
                                          &cl[id].next, cl[id].w, cl[id].wws, &cl[id].ws, up, ucap,
                                          &len, &loss, &err) ||
                    fp_run_include(&r, slot, up, len, loss, NULL, &err))
                    fail_msg("%s", err.msg);
                fp_algo_client_commit(&cl[id].p, &cl[id].cs, &cl[id].next);
            }
            fp_run_phase_end(&r);
        }
        fp_run_round_end(&r);
        if (r.evaluate)
            fp_run_evaluate(&r, ews);
        if (fp_run_commit(&r, &err))
            fail_msg("%s", err.msg);
    }
    for (uint32_t i = 0; i < 4; i++) /* the coordinator never held a client's state */
        assert_false(fp_algo_client_has_state(&r.cstate[i]));
    if (fp_run_finish(&r, &err))
        fail_msg("%s", err.msg);
    assert_string_equal(r.res.model_sha256, sim.model_sha256);
    fp_workload_ws_free(r.w, ews);
    fp_run_close(&r);
    for (uint32_t i = 0; i < 4; i++) {
        fp_client_state_free(&cl[i].cs);
        fp_client_state_free(&cl[i].next);
        fp_algo_ws_free(&cl[i].ws, &cl[i].p);
        fp_workload_ws_free(cl[i].w, cl[i].wws);
        fp_workload_free(cl[i].w);
    }
    free(up);
    fp_store_close(st);
}

/* Partial rounds (issue 14): who is included in (round, slot). Slot 1 of
 * every third round is late, slot 0 of round 4 absent, and slot 2 of round
 * 5 sends an upload the core refuses (not finite). */
static int partial_kept(uint32_t round, uint32_t slot)
{
    return !((round % 3 == 0 && slot == 1) || (round == 4 && slot == 0) ||
             (round == 5 && slot == 2));
}

/* Drives run/ through sc's rounds including only partial_kept's uploads.
 * As the coordinator does (coordinator = 1): run/ holds the test set only;
 * every client holds its shard and its state, every participant but the
 * absent one computes its upload, the refused one's is corrupted and
 * offered to run/ (which must refuse it and change nothing), and a client
 * commits its state only when included. As a simulator would (0): run/
 * holds every client's data and state, and only the included clients
 * compute. Returns the final model's SHA-256 in sha. */
static void drive_partial(const struct fp_scenario *sc, struct fp_store *st, int coordinator,
                          char sha[65])
{
    const struct fp_run_options ro = {
        .threads = 1, .create_workload = coordinator ? fp_workload_create_test : NULL};
    struct fp_run r;
    struct fp_error err = {0};
    if (fp_run_open(&r, sc, st, &ro, &err))
        fail_msg("%s", err.msg);
    const uint32_t N = sc->clients;
    struct cl {
        struct fp_workload *w;
        void *wws;
        struct fp_algo_params p;
        struct fp_algo_ws ws;
        struct fp_client_state cs, next;
    } *cl = calloc(N, sizeof *cl);
    assert_non_null(cl);
    for (uint32_t i = 0; coordinator && i < N; i++) {
        if (fp_workload_create_client(&cl[i].w, sc, i, &err) ||
            fp_algo_params_from(&cl[i].p, sc, cl[i].w->d, &err))
            fail_msg("%s", err.msg);
        cl[i].wws = fp_workload_ws_new(cl[i].w);
        assert_int_equal(fp_algo_ws_init(&cl[i].ws, &cl[i].p), 0);
    }
    struct fp_algo_ws sws;
    assert_int_equal(fp_algo_ws_init(&sws, &r.p), 0);
    void *swws = coordinator ? NULL : fp_workload_ws_new(r.w);
    struct fp_client_state snext = {0};
    const size_t ucap = fp_algo_upload_cap(&r.p);
    uint8_t *up = malloc(ucap);
    void *ews = fp_workload_ws_new(r.w);
    uint32_t refused = 0;
    for (uint32_t round = r.first_round; fp_run_next(&r, round); round++) {
        fp_run_round_begin(&r, round);
        uint32_t kept = 0;
        for (unsigned phase = 0; fp_run_phase_begin(&r, phase, &err) > 0; phase++) {
            for (uint32_t slot = 0; slot < sc->sample; slot++) {
                const uint32_t id = r.chosen[slot];
                const int keep = partial_kept(round, slot);
                const int bad = round == 5 && slot == 2, absent = round == 4 && slot == 0;
                if (!coordinator && !keep)
                    continue;
                if (coordinator && absent)
                    continue;
                const struct fp_msg_header who = {.run = (uint64_t)r.res.run_id,
                                                  .round = round,
                                                  .phase = (uint16_t)phase,
                                                  .client = id};
                size_t len;
                double loss;
                int rc = coordinator
                             ? fp_algo_client_update(&cl[id].p, &who, r.bcast, r.bcast_len,
                                                     &cl[id].cs, &cl[id].next, cl[id].w, cl[id].wws,
                                                     &cl[id].ws, up, ucap, &len, &loss, &err)
                             : fp_algo_client_update(&r.p, &who, r.bcast, r.bcast_len,
                                                     &r.cstate[id], &snext, r.w, swws, &sws, up,
                                                     ucap, &len, &loss, &err);
                if (rc)
                    fail_msg("%s", err.msg);
                if (bad) { /* refused by the core, the server unchanged */
                    memset(up + FP_MSG_HEADER, 0xFF, len - FP_MSG_HEADER);
                    assert_int_equal(fp_run_include(&r, slot, up, len, loss, NULL, &err),
                                     FP_EFORMAT);
                    refused++;
                    continue;
                }
                if (!keep) /* late: computed, never included, never committed */
                    continue;
                if (fp_run_include(&r, slot, up, len, loss, NULL, &err))
                    fail_msg("%s", err.msg);
                kept++;
                if (coordinator)
                    fp_algo_client_commit(&cl[id].p, &cl[id].cs, &cl[id].next);
                else
                    fp_algo_client_commit(&r.p, &r.cstate[id], &snext);
            }
            fp_run_phase_end(&r);
        }
        fp_run_round_end(&r);
        assert_int_equal(r.row.participants, kept);
        if (r.evaluate)
            fp_run_evaluate(&r, ews);
        if (fp_run_commit(&r, &err))
            fail_msg("%s", err.msg);
    }
    assert_int_equal(refused, coordinator ? 1 : 0);
    if (fp_run_finish(&r, &err))
        fail_msg("%s", err.msg);
    memcpy(sha, r.res.model_sha256, 65);
    fp_workload_ws_free(r.w, ews);
    if (swws)
        fp_workload_ws_free(r.w, swws);
    fp_algo_ws_free(&sws, &r.p);
    fp_client_state_free(&snext);
    fp_run_close(&r);
    for (uint32_t i = 0; coordinator && i < N; i++) {
        fp_client_state_free(&cl[i].cs);
        fp_client_state_free(&cl[i].next);
        fp_algo_ws_free(&cl[i].ws, &cl[i].p);
        fp_workload_ws_free(cl[i].w, cl[i].wws);
        fp_workload_free(cl[i].w);
    }
    free(cl);
    free(up);
}

/* The determinism of partial rounds: a coordinator's run in which some
 * sampled clients were late, absent or refused ends with the model of a
 * run/ driver given the same included sets, with the simulator's data and
 * state layout (`fedpress sim --replay`, which will take the included sets
 * from the store, is a later slice). SCALLION (client state) with rand-k
 * (keyed streams): a late client's computed-but-uncommitted state, or a
 * refused upload, would show in the model. And the partial model differs
 * from the full one, so the comparison is not vacuous. */
static void test_partial_rounds_match_sim_driver(void **state)
{
    (void)state;
    struct fp_scenario sc;
    load(&sc, "[run]\nrounds = 7\neval_every = 3\n[data]\ndataset = quadratic\nclients = 5\n"
              "dim = 16\n[algorithm]\nname = scallion\nlocal_steps = 2\nbatch = 1\n"
              "lr_local = 0.1\n[participation]\nsample = 3\n[compressor]\nname = randk\nk = 4\n");
    struct fp_store *st = open_store("partial.db");
    char coord[65], simd[65];
    drive_partial(&sc, st, 1, coord);
    drive_partial(&sc, st, 0, simd);
    assert_string_equal(coord, simd);
    struct fp_run_result full;
    run_sim(&sc, 1, "partial-full.f32", st, &full);
    assert_string_not_equal(coord, full.model_sha256);
    fp_store_close(st);
}

/* ---- the simulator's partial rounds: dropout and stragglers ---- */

/* The closing rule on hand-made answer times (INFINITY: left). */
static void test_close_rule(void **state)
{
    (void)state;
    struct fp_scenario sc;
    load(&sc, "[data]\ndataset = quadratic\nclients = 4\n[participation]\ndeadline = 4\n"
              "min_updates = 2\nwait_after_min = 0.5\n");
    double scratch[4];
    const char *why;
    /* the 2nd answer at 2 starts 0.5 s more: closes at 2.5, before 5 and the deadline */
    const double t1[4] = {5, 1, INFINITY, 2};
    assert_true(fp_part_close(&sc, t1, 4, scratch, &why) == 2.5);
    assert_string_equal(why, FP_PART_WHY_MIN);
    /* the 2nd answer only at 3.9: 4.4 is past the deadline */
    const double t2[4] = {1, 3.9, 7, INFINITY};
    assert_true(fp_part_close(&sc, t2, 4, scratch, &why) == 4);
    assert_string_equal(why, FP_PART_WHY_DEADLINE);
    /* all answer (or left) before that: closes at the last answer */
    sc.wait_after_min = 10;
    const double t3[4] = {1, 3, INFINITY, 2};
    assert_true(fp_part_close(&sc, t3, 4, scratch, &why) == 3);
    assert_string_equal(why, FP_PART_WHY_ALL);
    /* everyone left: at once */
    const double t4[2] = {INFINITY, INFINITY};
    assert_true(fp_part_close(&sc, t4, 2, scratch, &why) == 0);
    assert_string_equal(why, FP_PART_WHY_ALL);
    /* wait_after_min 0: the min_updates-th answer closes it, the last one that equals it wins */
    sc.wait_after_min = 0;
    const double t5[3] = {1, 2, 2};
    assert_true(fp_part_close(&sc, t5, 3, scratch, &why) == 2);
    assert_string_equal(why, FP_PART_WHY_ALL);
}

/* The draws: dropout at its rate, straggler times lognormal with median
 * answer_time, per attempt fresh, and the client's own speed shared. */
static void test_answer_time_model(void **state)
{
    (void)state;
    struct fp_scenario sc;
    load(&sc, "[data]\ndataset = quadratic\nclients = 1000\n[participation]\ndeadline = 60\n"
              "dropout = 0.3\nstraggler = lognormal:1\nanswer_time = 2\n");
    unsigned dropped = 0, n = 0, below = 0, differs = 0;
    for (uint32_t round = 1; round <= 20; round++)
        for (uint32_t c = 0; c < 1000; c++) {
            double t = fp_part_answer_time(&sc, round, 0, c);
            n++;
            differs += isinf(fp_part_answer_time(&sc, round, 1, c)) != isinf(t);
            if (isinf(t)) {
                dropped++;
                continue;
            }
            below += t < 2;
            /* no jitter: a client's time is its speed's, the same every round */
            double t1 = fp_part_answer_time(&sc, round + 1, 1, c);
            assert_true(isinf(t1) || t1 == t);
        }
    /* 20000 draws of p = 0.3: sd 0.0032, so 0.3 +- 0.015 is 4.6 sd */
    assert_true(fabs((double)dropped / n - 0.3) < 0.015);
    /* half the answering clients are faster than the median answer_time */
    assert_true(fabs((double)below / (n - dropped) - 0.5) < 0.05);
    /* a retry draws dropout afresh: 2 p (1 - p) = 0.42 of the slots change */
    assert_true(fabs((double)differs / n - 0.42) < 0.02);

    /* with jitter the time changes from round to round */
    load(&sc, "[data]\ndataset = quadratic\nclients = 10\n[participation]\ndeadline = 60\n"
              "straggler = lognormal:0:0.5\n");
    assert_true(fp_part_answer_time(&sc, 1, 0, 3) != fp_part_answer_time(&sc, 2, 0, 3));
    assert_true(fp_part_answer_time(&sc, 1, 0, 3) != fp_part_answer_time(&sc, 1, 1, 3));
    assert_true(fp_part_answer_time(&sc, 1, 0, 3) == fp_part_answer_time(&sc, 1, 0, 3));
}

struct crows {
    int n, absent, late, included;
    char text[64 * 1024];
    size_t len;
};

static int collect_clients(void *u, uint32_t round, const struct fp_client_round *c)
{
    struct crows *x = u;
    x->n++;
    x->absent += c->status == FP_CLIENT_ABSENT;
    x->late += c->status == FP_CLIENT_LATE;
    x->included += c->status == FP_CLIENT_INCLUDED;
    if (c->status == FP_CLIENT_ABSENT)
        assert_non_null(strstr(c->reason, "dropped out (simulated"));
    if (c->status == FP_CLIENT_LATE)
        assert_non_null(strstr(c->reason, "no upload when the round closed ("));
    if (c->status != FP_CLIENT_INCLUDED)
        assert_true(c->upload_sha256[0] == '\0' && c->uplink_bytes == 0 && isnan(c->train_loss));
    int k = snprintf(x->text + x->len, sizeof x->text - x->len, "%u %u %d %s %s %.17g\n", round,
                     c->client, (int)c->status, c->reason, c->upload_sha256, c->train_loss);
    assert_true(k > 0 && (size_t)k < sizeof x->text - x->len);
    x->len += (size_t)k;
    return 0;
}

static const char drop_text[] =
    "[run]\nrounds = 30\neval_every = 10\n"
    "[data]\ndataset = quadratic\nclients = 12\ndim = 4\n"
    "[algorithm]\nname = scaffold\nlocal_steps = 3\nbatch = 1\nlr_local = 0.1\n"
    "[participation]\nsample = 8\ndeadline = 4\nmin_updates = 3\nwait_after_min = 1\n"
    "dropout = 0.25\nstraggler = lognormal:0.8:0.3\nanswer_time = 1.5\n";

/* Same bytes and the same stored rows at 1 and 2 threads; every sampled
 * client has a row; absent and late ones with their reasons. */
static void test_dropout_thread_determinism(void **state)
{
    (void)state;
    struct fp_scenario sc;
    load(&sc, drop_text);
    struct fp_store *st = open_store("drop.db");
    struct fp_run_result r1, r2;
    run_sim(&sc, 1, "d1.f32", st, &r1);
    run_sim(&sc, 2, "d2.f32", st, &r2);
    assert_string_equal(r1.model_sha256, r2.model_sha256);
    static struct crows a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    struct fp_error err = {0};
    assert_int_equal(fp_store_list_client_rounds(st, r1.run_id, -1, collect_clients, &a, &err), 0);
    assert_int_equal(fp_store_list_client_rounds(st, r2.run_id, -1, collect_clients, &b, &err), 0);
    assert_string_equal(a.text, b.text);
    assert_int_equal(a.n, 30 * 8);
    assert_true(a.absent > 0 && a.late > 0 && a.included >= 30 * 3);
    /* a run without dropout and stragglers differs (they changed who is in) */
    struct fp_scenario full;
    load(&full, "[run]\nrounds = 30\neval_every = 10\n"
                "[data]\ndataset = quadratic\nclients = 12\ndim = 4\n"
                "[algorithm]\nname = scaffold\nlocal_steps = 3\nbatch = 1\nlr_local = 0.1\n"
                "[participation]\nsample = 8\ndeadline = 4\nmin_updates = 3\nwait_after_min = 1\n");
    struct fp_run_result r3;
    run_sim(&full, 1, "d3.f32", st, &r3);
    assert_string_not_equal(r1.model_sha256, r3.model_sha256);
    assert_true(r3.uplink_bytes > r1.uplink_bytes);
    fp_store_close(st);
}

/* dropout = 0 is the scenario without the key: same canonical text, same
 * bytes. */
static void test_dropout_zero_is_no_key(void **state)
{
    (void)state;
    struct fp_scenario with, without;
    load(&with, "[run]\nrounds = 5\n[data]\ndataset = quadratic\nclients = 6\n"
                "[participation]\nsample = 4\ndropout = 0\n");
    load(&without, "[run]\nrounds = 5\n[data]\ndataset = quadratic\nclients = 6\n"
                   "[participation]\nsample = 4\n");
    char *a = fp_scenario_canonical(&with), *b = fp_scenario_canonical(&without);
    assert_string_equal(a, b);
    assert_null(strstr(a, "dropout"));
    free(a);
    free(b);
    struct fp_store *st = open_store("zero.db");
    struct fp_run_result r1, r2;
    run_sim(&with, 1, "z1.f32", st, &r1);
    run_sim(&without, 2, "z2.f32", st, &r2);
    assert_string_equal(r1.model_sha256, r2.model_sha256);
    fp_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quadratic_fixed_points),
        cmocka_unit_test(test_thread_count_determinism),
        cmocka_unit_test(test_compressed_thread_determinism),
        cmocka_unit_test(test_stop_flag_marks_interrupted),
        cmocka_unit_test(test_stop_mid_run_finishes_the_round),
        cmocka_unit_test(test_resume_gives_the_same_run),
        cmocka_unit_test(test_state_too_big_keeps_the_rounds),
        cmocka_unit_test(test_state_in_parts),
        cmocka_unit_test(test_bad_init_file),
        cmocka_unit_test(test_round_with_a_missing_upload),
        cmocka_unit_test(test_coordinator_and_clients_match_sim),
        cmocka_unit_test(test_partial_rounds_match_sim_driver),
        cmocka_unit_test(test_close_rule),
        cmocka_unit_test(test_answer_time_model),
        cmocka_unit_test(test_dropout_thread_determinism),
        cmocka_unit_test(test_dropout_zero_is_no_key),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
