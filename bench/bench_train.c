/*
 * bench/bench_train.c — how fast is one client update, against what this
 * machine can do?
 *
 * The paper's setting (DESIGN.md "Performance"): MLP 784-200-10 on
 * Fashion-MNIST, N = 200 clients, shards:2, batch 32, K = 10 local steps.
 * One update is ~204.5 MFLOP, almost all in two GEMM shapes, so the ceiling
 * is what single-threaded OpenBLAS sgemm does on exactly those shapes, and
 * above that the core's FP32 FMA peak (a slow BLAS kernel hides behind a
 * fraction of its own sgemm rate; it cannot hide from the FMA peak). The
 * report has three parts, all measured in this one process:
 *   1. machine limits: the FP32 FMA peak of one core (independent FMAs on the
 *      widest vectors the CPU has), sgemm GFLOP/s on the two shapes (1 caller
 *      thread, and 2 caller threads each single-threaded), memcpy bandwidth;
 *   2. fp_algo_client_update (FedAvg) per second with 1 and 2 worker threads,
 *      one distinct client per call, as a fraction of both limits of (1);
 *   3. fp_sim_run on the paper scenarios: seconds per round, with and
 *      without evaluation every round.
 *
 * The machine is shared (2 cores, other jobs may run), so every figure is
 * the best of several repetitions, and each section reports how much CPU
 * other processes used while it ran (from /proc/stat minus our own rusage).
 * Never registered with meson test(); see docs/performance.md.
 *
 *   bench_train [--quick] [--only 1|2|3] [--data DIR]
 */
#include <cblas.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "algorithms/algorithm.h"
#include "core/blas.h"
#include "core/rng.h"
#include "core/scenario.h"
#include "sim/sim.h"
#include "store/store.h"
#include "workloads/workload.h"

/* The two GEMMs of one MLP training step (model.c fp__forward/fp__backward). */
#define FP_BENCH_B  32u  /* minibatch rows */
#define FP_BENCH_IN 784u /* input features */
#define FP_BENCH_H  200u /* hidden units */

/* Targets from the brief: an update should reach half the sgemm ceiling on
 * one thread, and two workers should nearly double throughput. */
#define FP_BENCH_TARGET_FRACTION 0.50
#define FP_BENCH_TARGET_SPEEDUP  1.80

struct fp_bench_cfg {
    int quick;
    int only; /* 0 = all sections, else just that one (for profiling) */
    const char *data_path;
    int reps;           /* repetitions per measurement; the best counts */
    double rep_seconds; /* target duration of one sgemm repetition */
    uint32_t updates;   /* client updates per repetition */
    uint32_t sim_rounds;
};

/* ---- clocks and load ---------------------------------------------------- */

static double fp_bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU seconds used by the whole machine (non-idle) and by this process. The
 * difference over an interval is what other processes took from us. */
struct fp_bench_load {
    double wall, machine_busy, self;
};

static double fp_bench_machine_busy(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return NAN;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 5)
        return NAN;
    /* user nice system idle iowait irq softirq steal: busy = all but idle+iowait */
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

static double fp_bench_self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static struct fp_bench_load fp_bench_load_now(void)
{
    struct fp_bench_load l = {fp_bench_now(), fp_bench_machine_busy(), fp_bench_self_cpu()};
    return l;
}

/* Average number of cores other processes kept busy since `start`. Tick
 * granularity (10 ms) makes this approximate for short intervals. */
static double fp_bench_others(struct fp_bench_load start)
{
    struct fp_bench_load end = fp_bench_load_now();
    double wall = end.wall - start.wall;
    if (wall <= 0 || isnan(start.machine_busy) || isnan(end.machine_busy))
        return NAN;
    double others = (end.machine_busy - start.machine_busy) - (end.self - start.self);
    return others < 0 ? 0 : others / wall;
}

static void fp_bench_print_loadavg(const char *when)
{
    char buf[128] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(buf, sizeof buf, f))
            snprintf(buf, sizeof buf, "?\n");
        fclose(f);
    }
    printf("load average %s: %s", when, buf);
}

/* ---- a team of caller threads started together -------------------------- */

/* Every thread waits on one barrier before starting its clock, so "two
 * threads concurrently" really overlaps; wall time is first start to last
 * finish. */
struct fp_bench_thread {
    void (*fn)(void *arg, unsigned tid);
    void *arg;
    unsigned tid;
    uv_barrier_t *barrier;
    uv_thread_t handle;
    double t0, t1;
    double cpu; /* CPU seconds this thread actually ran (it may have been preempted) */
};

static double fp_bench_thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fp_bench_thread_main(void *p)
{
    struct fp_bench_thread *t = p;
    uv_barrier_wait(t->barrier);
    double c0 = fp_bench_thread_cpu();
    t->t0 = fp_bench_now();
    t->fn(t->arg, t->tid);
    t->t1 = fp_bench_now();
    t->cpu = fp_bench_thread_cpu() - c0;
}

/* Runs fn(arg, 0..n-1) on n new threads; returns wall seconds, or -1, and
 * if cpu != NULL the CPU seconds the threads ran in total. */
static double fp_bench_team(unsigned n, void (*fn)(void *, unsigned), void *arg, double *cpu)
{
    struct fp_bench_thread th[2];
    uv_barrier_t barrier;
    if (n == 0 || n > 2 || uv_barrier_init(&barrier, n))
        return -1;
    unsigned started = 0;
    for (; started < n; started++) {
        th[started] =
            (struct fp_bench_thread){.fn = fn, .arg = arg, .tid = started, .barrier = &barrier};
        if (uv_thread_create(&th[started].handle, fp_bench_thread_main, &th[started]))
            break;
    }
    if (started < n) {
        /* Cannot happen on a sane system; the barrier would deadlock the rest. */
        fprintf(stderr, "bench_train: cannot start thread %u\n", started);
        exit(1);
    }
    double t0 = INFINITY, t1 = 0, c = 0;
    for (unsigned i = 0; i < n; i++) {
        uv_thread_join(&th[i].handle);
        t0 = th[i].t0 < t0 ? th[i].t0 : t0;
        t1 = th[i].t1 > t1 ? th[i].t1 : t1;
        c += th[i].cpu;
    }
    if (cpu)
        *cpu = c;
    uv_barrier_destroy(&barrier);
    return t1 - t0;
}

/* ---- 1. machine limits -------------------------------------------------- */

/* The FP32 FMA peak of one core: chains of a = a * m + c on the widest
 * vectors the CPU has, enough independent chains to cover FMA latency (4
 * cycles) times the FMA ports (2): 24 zmm chains for AVX-512 (32 registers),
 * 12 ymm for AVX2 (16 registers); without FMA, SSE multiply and add. Each
 * function returns the FLOPs it did (2 per lane per FMA); the target
 * attributes keep the rest of the build portable. m and c keep values
 * finite and normal (a -> c / (1 - m)). */
#define FP_BENCH_FMA_M 0.99999994f
#define FP_BENCH_FMA_C 1e-3f
static volatile float fp_bench_sink;

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static double fp_bench_fma_avx512(long iters)
{
    enum { CHAINS = 24 };
    __m512 a[CHAINS];
#pragma GCC unroll 32
    for (int k = 0; k < CHAINS; k++)
        a[k] = _mm512_set1_ps(fp_bench_sink + (float)k);
    const __m512 m = _mm512_set1_ps(FP_BENCH_FMA_M), c = _mm512_set1_ps(FP_BENCH_FMA_C);
    /* the chains fully unrolled, so that they live in registers */
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 32
        for (int k = 0; k < CHAINS; k++)
            a[k] = _mm512_fmadd_ps(a[k], m, c);
    }
    __m512 s = a[0];
    for (int k = 1; k < CHAINS; k++)
        s = _mm512_add_ps(s, a[k]);
    fp_bench_sink = _mm512_reduce_add_ps(s);
    return (double)iters * CHAINS * 16 * 2;
}

__attribute__((target("avx2,fma"))) static double fp_bench_fma_avx2(long iters)
{
    enum { CHAINS = 12 };
    __m256 a[CHAINS];
#pragma GCC unroll 32
    for (int k = 0; k < CHAINS; k++)
        a[k] = _mm256_set1_ps(fp_bench_sink + (float)k);
    const __m256 m = _mm256_set1_ps(FP_BENCH_FMA_M), c = _mm256_set1_ps(FP_BENCH_FMA_C);
    /* the chains fully unrolled, so that they live in registers */
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 32
        for (int k = 0; k < CHAINS; k++)
            a[k] = _mm256_fmadd_ps(a[k], m, c);
    }
    __m256 s = a[0];
    for (int k = 1; k < CHAINS; k++)
        s = _mm256_add_ps(s, a[k]);
    float out[8];
    _mm256_storeu_ps(out, s);
    fp_bench_sink = out[0] + out[7];
    return (double)iters * CHAINS * 8 * 2;
}

static double fp_bench_fma_sse(long iters)
{
    enum { CHAINS = 12 };
    __m128 a[CHAINS];
#pragma GCC unroll 32
    for (int k = 0; k < CHAINS; k++)
        a[k] = _mm_set1_ps(fp_bench_sink + (float)k);
    const __m128 m = _mm_set1_ps(FP_BENCH_FMA_M), c = _mm_set1_ps(FP_BENCH_FMA_C);
    /* the chains fully unrolled, so that they live in registers */
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 32
        for (int k = 0; k < CHAINS; k++)
            a[k] = _mm_add_ps(_mm_mul_ps(a[k], m), c);
    }
    __m128 s = a[0];
    for (int k = 1; k < CHAINS; k++)
        s = _mm_add_ps(s, a[k]);
    fp_bench_sink = _mm_cvtss_f32(s);
    return (double)iters * CHAINS * 4 * 2;
}
#endif

/* The widest this CPU runs, and its name for the report. */
static double (*fp_bench_fma_pick(const char **name))(long)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        *name = "AVX-512: 24 chains of vfmadd zmm, 16 lanes";
        return fp_bench_fma_avx512;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *name = "AVX2: 12 chains of vfmadd ymm, 8 lanes";
        return fp_bench_fma_avx2;
    }
    *name = "SSE: 12 chains of mulps + addps, 4 lanes (no FMA on this CPU)";
    return fp_bench_fma_sse;
#else
    *name = "none (not x86-64)";
    return NULL;
#endif
}

/* Best-of-reps GFLOP/s of one core, each rep about rep_seconds; NaN where
 * there is no kernel. */
static double fp_bench_fma_peak(const struct fp_bench_cfg *cfg, const char **name)
{
    double (*fma)(long) = fp_bench_fma_pick(name);
    if (!fma)
        return NAN;
    long iters = 1 << 16;
    double t0 = fp_bench_now();
    fma(iters); /* also lets the core settle at its wide-vector clock */
    double t = fp_bench_now() - t0;
    iters = (long)(iters * (cfg->rep_seconds / (t > 1e-6 ? t : 1e-6))) + 1;
    double best = 0;
    for (int r = 0; r < cfg->reps; r++) {
        t0 = fp_bench_now();
        double flops = fma(iters);
        t = fp_bench_now() - t0;
        best = flops / t / 1e9 > best ? flops / t / 1e9 : best;
    }
    return best;
}

/* Operands of the two big GEMMs, one set per thread so threads never share
 * cache lines. Sizes exactly as in a training step with batch 32. */
struct fp_bench_gemm {
    float *x;   /* [B][IN]  gathered minibatch */
    float *w1;  /* [H][IN]  first-layer weights, PyTorch layout */
    float *a;   /* [B][H]   forward output */
    float *dz;  /* [B][H]   gradient w.r.t. the hidden pre-activations */
    float *dw1; /* [H][IN]  weight gradient */
};

enum fp_bench_shape { FP_BENCH_FWD, FP_BENCH_WGRAD, FP_BENCH_PAIR };

static const char *const fp_bench_shape_name[] = {"forward  C[32x200] = X[32x784]·W1ᵀ",
                                                  "wgrad    dW1[200x784] = dZᵀ[200x32]·X[32x784]",
                                                  "both, alternating (one training step)"};

static double fp_bench_shape_flops(enum fp_bench_shape s)
{
    double one = 2.0 * FP_BENCH_B * FP_BENCH_H * FP_BENCH_IN;
    return s == FP_BENCH_PAIR ? 2 * one : one;
}

static float *fp_bench_fill(size_t n, fp_rng *r)
{
    float *p = aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
    if (p)
        for (size_t i = 0; i < n; i++)
            p[i] = (float)(2.0 * fp_rng_uniform(r) - 1.0);
    return p;
}

static int fp_bench_gemm_init(struct fp_bench_gemm *g, uint64_t seed)
{
    fp_rng r;
    fp_rng_seed(&r, seed, 0, FP_RNG_NO_CLIENT, FP_RNG_DATA);
    g->x = fp_bench_fill((size_t)FP_BENCH_B * FP_BENCH_IN, &r);
    g->w1 = fp_bench_fill((size_t)FP_BENCH_H * FP_BENCH_IN, &r);
    g->a = fp_bench_fill((size_t)FP_BENCH_B * FP_BENCH_H, &r);
    g->dz = fp_bench_fill((size_t)FP_BENCH_B * FP_BENCH_H, &r);
    g->dw1 = fp_bench_fill((size_t)FP_BENCH_H * FP_BENCH_IN, &r);
    return g->x && g->w1 && g->a && g->dz && g->dw1 ? 0 : FP_ENOMEM;
}

static void fp_bench_gemm_free(struct fp_bench_gemm *g)
{
    free(g->x);
    free(g->w1);
    free(g->a);
    free(g->dz);
    free(g->dw1);
}

/* Same calls, transposes and leading dimensions as workloads/model.c. */
static void fp_bench_gemm_once(struct fp_bench_gemm *g, enum fp_bench_shape s)
{
    const int B = FP_BENCH_B, in = FP_BENCH_IN, h = FP_BENCH_H;
    if (s != FP_BENCH_WGRAD)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, h, in, 1.0f, g->x, in, g->w1, in,
                    0.0f, g->a, h);
    if (s != FP_BENCH_FWD)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, h, in, B, 1.0f, g->dz, h, g->x, in,
                    0.0f, g->dw1, in);
}

struct fp_bench_gemm_job {
    struct fp_bench_gemm g[2];
    enum fp_bench_shape shape;
    long iters;
};

static void fp_bench_gemm_thread(void *arg, unsigned tid)
{
    struct fp_bench_gemm_job *j = arg;
    for (long i = 0; i < j->iters; i++)
        fp_bench_gemm_once(&j->g[tid], j->shape);
}

/* Best-of-reps GFLOP/s summed over `threads` concurrent callers. */
static double fp_bench_gemm_rate(struct fp_bench_gemm_job *j, unsigned threads, int reps)
{
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double s = fp_bench_team(threads, fp_bench_gemm_thread, j, NULL);
        double rate = threads * j->iters * fp_bench_shape_flops(j->shape) / s / 1e9;
        best = rate > best ? rate : best;
    }
    return best;
}

struct fp_bench_limits {
    double fma1;               /* FP32 FMA peak of one core, GFLOP/s */
    double gemm1[3], gemm2[3]; /* GFLOP/s per shape: 1 caller, 2 callers (aggregate) */
    double memcpy_gbs;
};

static int fp_bench_machine(const struct fp_bench_cfg *cfg, struct fp_bench_limits *lim)
{
    struct fp_bench_gemm_job job;
    memset(&job, 0, sizeof job);
    if (fp_bench_gemm_init(&job.g[0], 11) || fp_bench_gemm_init(&job.g[1], 12)) {
        fprintf(stderr, "bench_train: out of memory for the sgemm operands\n");
        fp_bench_gemm_free(&job.g[0]);
        fp_bench_gemm_free(&job.g[1]);
        return FP_ENOMEM;
    }
    printf("\n== 1. Machine limits (OpenBLAS single-threaded per call) ==\n");
    const char *fma_name;
    struct fp_bench_load lf = fp_bench_load_now();
    lim->fma1 = fp_bench_fma_peak(cfg, &fma_name);
    printf("FP32 FMA peak, one core: %.1f GFLOP/s (%s; best of %d; others %.2f)\n", lim->fma1,
           fma_name, cfg->reps, fp_bench_others(lf));
    printf("%-48s %12s %14s %8s %8s %9s\n", "sgemm shape", "1 thread", "2 threads", "2T/1T",
           "others", "of FMA");
    for (int s = FP_BENCH_FWD; s <= FP_BENCH_PAIR; s++) {
        job.shape = (enum fp_bench_shape)s;
        /* Calibrate: enough iterations for rep_seconds at the warm rate. */
        job.iters = 50;
        double t = fp_bench_team(1, fp_bench_gemm_thread, &job, NULL);
        job.iters = (long)(cfg->rep_seconds / (t / 50)) + 1;
        struct fp_bench_load l0 = fp_bench_load_now();
        lim->gemm1[s] = fp_bench_gemm_rate(&job, 1, cfg->reps);
        lim->gemm2[s] = fp_bench_gemm_rate(&job, 2, cfg->reps);
        double others = fp_bench_others(l0);
        printf("%-48s %7.1f GF/s %9.1f GF/s %7.2fx %7.2f %8.1f%%\n", fp_bench_shape_name[s],
               lim->gemm1[s], lim->gemm2[s], lim->gemm2[s] / lim->gemm1[s], others,
               100 * lim->gemm1[s] / lim->fma1);
    }
    printf("(FLOPs = 2·M·N·K = %.2f MFLOP per GEMM; best of %d reps of %ld calls; 2 threads = "
           "aggregate of two callers with their own operands; \"others\" = cores busy with "
           "other processes meanwhile; of FMA = the 1-thread rate / the FMA peak)\n",
           fp_bench_shape_flops(FP_BENCH_FWD) / 1e6, cfg->reps, job.iters);
    fp_bench_gemm_free(&job.g[0]);
    fp_bench_gemm_free(&job.g[1]);

    /* memcpy far beyond any cache; pages touched first so faults are not timed. */
    const size_t bytes = (size_t)256 << 20;
    char *src = malloc(bytes), *dst = malloc(bytes);
    if (!src || !dst) {
        free(src);
        free(dst);
        fprintf(stderr, "bench_train: cannot allocate 2 x 256 MiB for memcpy\n");
        return FP_ENOMEM;
    }
    memset(src, 1, bytes);
    memset(dst, 2, bytes);
    struct fp_bench_load l0 = fp_bench_load_now();
    double best = INFINITY;
    for (int r = 0; r < cfg->reps + 2; r++) {
        double t0 = fp_bench_now();
        memcpy(dst, src, bytes);
        double t = fp_bench_now() - t0;
        best = t < best ? t : best;
    }
    /* Keep the copy observable so it cannot be optimised away. */
    volatile char sink = dst[bytes / 2];
    (void)sink;
    lim->memcpy_gbs = (double)bytes / best / 1e9;
    printf("memcpy 256 MiB -> 256 MiB: %.2f GB/s copied (best of %d; read+write traffic is "
           "at least 2x that); others %.2f\n",
           lim->memcpy_gbs, cfg->reps + 2, fp_bench_others(l0));
    free(src);
    free(dst);
    return 0;
}

/* ---- 2. client updates -------------------------------------------------- */

/* The paper's setting, as a scenario file would give it. */
static const char fp_bench_scenario_ini[] =
    "[run]\nname = bench\nseed = 1\nrounds = 1\n"
    "[data]\ndataset = fashion-mnist\nclients = 200\npartition = shards:2\n"
    "[model]\nkind = mlp\nhidden = 200\n"
    "[algorithm]\nname = fedavg\nlocal_steps = 10\nbatch = 32\nlr_local = 0.05\n"
    "lr_global = 1.0\n"
    "[participation]\nsample = 20\n";

struct fp_bench_worker {
    void *wws;
    struct fp_algo_ws aws;
    struct fp_client_state cs, next;
    uint8_t *out;
    int rc;
};

struct fp_bench_updates {
    const struct fp_workload *w;
    struct fp_algo_params p;
    const float *x;
    uint8_t *bc; /* the broadcast of x (FedAvg: x only), header rewritten each round */
    size_t bc_len;
    size_t out_cap;
    struct fp_bench_worker wk[2];
    uint32_t round, first, count; /* clients first .. first+count-1 (mod N) */
    atomic_uint next;
    int grad_only; /* time only the K grad() calls, not the d-length vector work */
};

/* Like sim.c's worker: take the next client from a shared counter, so the
 * two threads split the clients the way the simulator does. */
static void fp_bench_update_thread(void *arg, unsigned tid)
{
    struct fp_bench_updates *u = arg;
    struct fp_bench_worker *wk = &u->wk[tid];
    const struct fp_workload *w = u->w;
    for (;;) {
        unsigned i = atomic_fetch_add(&u->next, 1);
        if (i >= u->count)
            break;
        uint32_t client = (u->first + i) % w->nclients;
        if (u->grad_only) {
            /* The same K gradient evaluations as client_update, at fixed params. */
            fp_rng rng;
            fp_rng_seed(&rng, u->p.seed, u->round, client, FP_RNG_MINIBATCH);
            double loss;
            for (uint32_t k = 0; k < u->p.K; k++)
                w->ops->grad(w, wk->wws, client, u->x, u->p.batch, &rng, wk->aws.g, &loss);
            continue;
        }
        size_t len;
        double loss;
        const struct fp_msg_header who = {.round = u->round, .client = client};
        int rc = fp_algo_client_update(&u->p, &who, u->bc, u->bc_len, &wk->cs, &wk->next, w,
                                       wk->wws, &wk->aws, wk->out, u->out_cap, &len, &loss, NULL);
        if (rc) {
            wk->rc = rc;
            break;
        }
    }
}

/* Best-of-reps updates per second; each rep trains a fresh range of clients
 * at a new round number, so no two calls see the same (client, minibatch).
 * *cpu_ms (if not NULL) = the lowest CPU milliseconds per update of any rep:
 * what an update costs when it runs, whether or not a core was free. */
static double fp_bench_update_rate(struct fp_bench_updates *u, unsigned threads, int reps,
                                   uint32_t count, int grad_only, double *cpu_ms)
{
    double best = 0, best_cpu = INFINITY;
    u->grad_only = grad_only;
    u->count = count;
    for (int r = 0; r < reps; r++) {
        u->round++;
        const struct fp_msg_header h = {.type = FP_MSG_BROADCAST,
                                        .client = FP_MSG_ALL,
                                        .round = u->round,
                                        .len = u->bc_len - FP_MSG_HEADER};
        fp_msg_encode_header(&h, u->bc);
        u->first = (u->first + count) % u->w->nclients;
        atomic_store(&u->next, 0);
        double cpu = 0;
        double s = fp_bench_team(threads, fp_bench_update_thread, u, &cpu);
        if (u->wk[0].rc || u->wk[1].rc)
            return -1;
        double rate = count / s;
        best = rate > best ? rate : best;
        best_cpu = cpu * 1e3 / count < best_cpu ? cpu * 1e3 / count : best_cpu;
    }
    if (cpu_ms)
        *cpu_ms = best_cpu;
    return best;
}

static int fp_bench_updates(const struct fp_bench_cfg *cfg, const struct fp_bench_limits *lim,
                            const struct fp_scenario *sc, double *eval_ms)
{
    struct fp_error err = {0};
    struct fp_workload *w = NULL;
    struct fp_bench_updates u;
    memset(&u, 0, sizeof u);
    float *x = NULL;
    int rc;
    double t0 = fp_bench_now();
    if ((rc = fp_workload_create(&w, sc, &err))) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return rc;
    }
    printf("\n== 2. Client updates: fp_algo_client_update, FedAvg ==\n");
    printf("workload: %s, N = %u, d = %zu, K = %u, B = %u (loaded and partitioned in %.2f s)\n",
           sc->data_path, w->nclients, w->d, sc->local_steps, sc->batch, fp_bench_now() - t0);

    u.w = w;
    if (fp_algo_params_from(&u.p, sc, w->d, NULL))
        return -1;
    u.out_cap = fp_algo_upload_cap(&u.p);
    rc = FP_ENOMEM;
    x = malloc(w->d * sizeof *x);
    u.bc_len = FP_MSG_HEADER + w->d * sizeof *x;
    u.bc = malloc(u.bc_len);
    if (!x || !u.bc)
        goto fail;
    fp_rng r;
    fp_rng_seed(&r, sc->seed, 0, FP_RNG_NO_CLIENT, FP_RNG_INIT);
    w->ops->init_params(w, &r, x);
    u.x = x;
    memcpy(u.bc + FP_MSG_HEADER, x, w->d * sizeof *x); /* identity downlink: x's bytes */
    for (int t = 0; t < 2; t++) {
        u.wk[t].wws = fp_workload_ws_new(w);
        u.wk[t].out = malloc(u.out_cap);
        if (!u.wk[t].wws || !u.wk[t].out || fp_algo_ws_init(&u.wk[t].aws, &u.p))
            goto fail;
    }

    /* Warm-up: page in the dataset and the workspaces on both threads. */
    rc = FP_EINVAL;
    if (fp_bench_update_rate(&u, 2, 1, 8, 0, NULL) < 0)
        goto fail;

    const double flops = (double)sc->local_steps * sc->batch * (double)w->flops_per_example;
    /* The 2-thread figure is judged against twice the 1-thread ceiling, the
     * ideal, rather than the measured 2-caller sgemm rate, which a busy
     * neighbour depresses as much as it depresses the updates. */
    const double peak1 = lim->gemm1[FP_BENCH_PAIR], peak2 = 2 * peak1;
    const double fma1 = lim->fma1, fma2 = 2 * fma1;
    struct fp_bench_load l0 = fp_bench_load_now();
    double c1, c2;
    double r1 = fp_bench_update_rate(&u, 1, cfg->reps, cfg->updates, 0, &c1);
    double o1 = fp_bench_others(l0);
    l0 = fp_bench_load_now();
    double r2 = fp_bench_update_rate(&u, 2, cfg->reps, cfg->updates, 0, &c2);
    double o2 = fp_bench_others(l0);
    double g1 = fp_bench_update_rate(&u, 1, cfg->reps, cfg->updates, 1, NULL);
    if (r1 < 0 || r2 < 0 || g1 < 0)
        goto fail;

    printf("FLOPs per update: K·B·flops_per_example = %u·%u·%llu = %.1f MFLOP\n", sc->local_steps,
           sc->batch, (unsigned long long)w->flops_per_example, flops / 1e6);
    printf("  (counted: the five matrix products of forward and backward, 2·in·h + 2·h·C "
           "forward, 2·h·C + 2·C·h + 2·h·in backward;\n   not counted: bias, ReLU, softmax, "
           "gather, the SGD step and the d-length message/encode work)\n");
    printf("%-10s %11s %10s %11s %13s %11s %9s %12s %8s\n", "threads", "updates/s", "ms/update",
           "GFLOP/s", "of sgemm", "of FMA", "speedup", "CPU ms/upd", "others");
    printf("%-10s %11.1f %10.3f %11.1f %12.1f%% %10.1f%% %9s %12.3f %8.2f\n", "1", r1, 1e3 / r1,
           r1 * flops / 1e9, 100 * r1 * flops / 1e9 / peak1, 100 * r1 * flops / 1e9 / fma1, "1.00x",
           c1, o1);
    printf("%-10s %11.1f %10.3f %11.1f %12.1f%% %10.1f%% %8.2fx %12.3f %8.2f\n", "2", r2, 1e3 / r2,
           r2 * flops / 1e9, 100 * r2 * flops / 1e9 / peak2, 100 * r2 * flops / 1e9 / fma2, r2 / r1,
           c2, o2);
    printf("(best of %d reps of %u updates, each a different client; ms/update = wall time "
           "/ updates; of sgemm = of the 1-thread \"both\" sgemm rate of section 1, of FMA = "
           "of the one-core FP32 FMA peak, each times the thread count)\n",
           cfg->reps, cfg->updates);
    printf("CPU ms/upd = CPU time the worker threads ran per update (lowest rep): if 2 threads "
           "cost no more CPU per update than 1, the work itself scales and a 2-thread speedup "
           "below 2x is cores taken by others (here %.2fx the CPU per update, i.e. %.2fx "
           "speedup on 2 free cores)\n",
           c2 / c1, 2 * c1 / c2);
    printf("grad() alone, K calls per client at fixed params, 1 thread: %.3f ms/update, so "
           "the d-length vector work in client_update costs %.3f ms/update (%.1f%%)\n",
           1e3 / g1, 1e3 / r1 - 1e3 / g1, 100 * (1 - r1 / g1));

    double frac = r1 * flops / 1e9 / peak1, speed = r2 / r1;
    printf("target 1 thread >= %.0f%% of sgemm peak: %s (%.1f%%)\n", 100 * FP_BENCH_TARGET_FRACTION,
           frac >= FP_BENCH_TARGET_FRACTION ? "PASS" : "MISS", 100 * frac);
    printf("target 2-thread speedup >= %.2fx: %s (%.2fx)\n", FP_BENCH_TARGET_SPEEDUP,
           speed >= FP_BENCH_TARGET_SPEEDUP ? "PASS" : "MISS", speed);

    /* Evaluation alone (one pass over the 10,000 test images), for section 3. */
    double best = INFINITY, loss, acc;
    for (int rep = 0; rep < cfg->reps; rep++) {
        double e0 = fp_bench_now();
        w->ops->evaluate(w, u.wk[0].wws, x, &loss, &acc);
        double e = fp_bench_now() - e0;
        best = e < best ? e : best;
    }
    *eval_ms = best * 1e3;
    rc = 0;
fail:
    if (rc)
        fprintf(stderr, "bench_train: client update benchmark failed: %s\n", fp_strerror(rc));
    for (int t = 0; t < 2; t++) {
        if (u.wk[t].wws)
            fp_workload_ws_free(w, u.wk[t].wws);
        fp_algo_ws_free(&u.wk[t].aws, &u.p);
        fp_client_state_free(&u.wk[t].cs);
        fp_client_state_free(&u.wk[t].next);
        free(u.wk[t].out);
    }
    free(x);
    free(u.bc);
    fp_workload_free(w);
    return rc;
}

/* ---- 3. whole simulator ------------------------------------------------- */

struct fp_bench_rounds {
    uint32_t n;
    double first_ms, train_ms_sum; /* rounds that did not evaluate */
    uint32_t train_n;
    double eval_ms_sum; /* rounds that evaluated */
    uint32_t eval_n;
};

static int fp_bench_round_cb(void *arg, const struct fp_round *r)
{
    struct fp_bench_rounds *acc = arg;
    acc->n++;
    if (r->round == 1)
        acc->first_ms = r->wall_ms;
    if (isnan(r->test_loss)) {
        acc->train_ms_sum += r->wall_ms;
        acc->train_n++;
    } else {
        acc->eval_ms_sum += r->wall_ms;
        acc->eval_n++;
    }
    return 0;
}

static int fp_bench_sim_one(const struct fp_bench_cfg *cfg, struct fp_store *store,
                            const char *file, unsigned threads, uint32_t eval_every)
{
    char o_rounds[64], o_eval[64], o_path[FP_SCENARIO_STR + 16];
    snprintf(o_rounds, sizeof o_rounds, "run.rounds=%u", cfg->sim_rounds);
    snprintf(o_eval, sizeof o_eval, "run.eval_every=%u", eval_every);
    snprintf(o_path, sizeof o_path, "data.path=%s", cfg->data_path);
    const char *over[] = {o_rounds, o_eval, o_path};
    struct fp_scenario sc;
    struct fp_error err = {0};
    int rc = fp_scenario_load(&sc, file, over, 3, &err);
    if (rc) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return rc;
    }
    struct fp_sim_options opt = {.threads = threads};
    struct fp_run_result res;
    struct fp_bench_load l0 = fp_bench_load_now();
    if ((rc = fp_sim_run(&sc, store, &opt, &res, &err))) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return rc;
    }
    double others = fp_bench_others(l0);
    struct fp_bench_rounds acc = {0};
    if ((rc = fp_store_list_rounds(store, res.run_id, fp_bench_round_cb, &acc, &err))) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return rc;
    }
    double rounds_s = (acc.train_ms_sum + acc.eval_ms_sum) / 1e3;
    char train[32] = "-", evald[32] = "-";
    if (acc.train_n)
        snprintf(train, sizeof train, "%.3f", acc.train_ms_sum / acc.train_n / 1e3);
    if (acc.eval_n)
        snprintf(evald, sizeof evald, "%.3f", acc.eval_ms_sum / acc.eval_n / 1e3);
    printf("%-10s %7u %10u %10.3f %12s %12s %9.2f %8.2f %7.2f\n", fp_algo_name(sc.algorithm),
           threads, eval_every, rounds_s / acc.n, train, evald, res.seconds - rounds_s,
           100 * res.test_accuracy, others);
    return 0;
}

static int fp_bench_sim(const struct fp_bench_cfg *cfg, double eval_ms)
{
    char dir[] = "/tmp/fp-bench-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("bench_train: mkdtemp");
        return FP_EIO;
    }
    char db[64];
    snprintf(db, sizeof db, "%s/bench.db", dir);
    struct fp_store *store = NULL;
    struct fp_error err = {0};
    int rc = fp_store_open(&store, db, &err);
    if (rc) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        goto out;
    }
    printf("\n== 3. Whole simulator: fp_sim_run, %u rounds, S = 20 of N = 200 ==\n",
           cfg->sim_rounds);
    printf("%-10s %7s %10s %10s %12s %12s %9s %8s %7s\n", "scenario", "threads", "eval_every",
           "s/round", "train s/rnd", "eval'd s/rnd", "setup s", "acc %", "others");
    static const char *const files[] = {FP_BENCH_SOURCE_ROOT "/scenarios/fedavg-fmnist.ini",
                                        FP_BENCH_SOURCE_ROOT "/scenarios/scaffold-fmnist.ini"};
    for (size_t f = 0; f < 2 && !rc; f++)
        for (unsigned t = 1; t <= 2 && !rc; t++)
            for (int e = 0; e < 2 && !rc; e++)
                rc = fp_bench_sim_one(cfg, store, files[f], t, e ? 1 : cfg->sim_rounds);
    if (!rc)
        printf("(s/round = mean wall time of a round as the store records it: sampling, "
               "training, aggregation, evaluation if due; train s/rnd = rounds without "
               "evaluation; eval'd = rounds with one; eval_every = %u evaluates only the last "
               "round; setup = dataset load, partition, store writes; one run each, not best "
               "of)\n"
               "evaluate() alone on the 10,000 test images: %.1f ms (best of %d, 1 thread)\n",
               cfg->sim_rounds, eval_ms, cfg->reps);
out:
    if (store)
        fp_store_close(store);
    /* The store is WAL-mode: remove its side files too. */
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        char p[80];
        snprintf(p, sizeof p, "%s%s", db, suffix[i]);
        remove(p);
    }
    rmdir(dir);
    return rc;
}

/* ---- main --------------------------------------------------------------- */

static void fp_bench_print_cpu(void)
{
    char line[256];
    FILE *f = fopen("/proc/cpuinfo", "r");
    const char *model = "unknown";
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "model name", 10)) {
                char *colon = strchr(line, ':');
                if (colon) {
                    model = colon + 2;
                    line[strcspn(line, "\n")] = '\0';
                }
                break;
            }
        }
        fclose(f);
    }
    printf("CPU: %s, %ld online cores\n", model, sysconf(_SC_NPROCESSORS_ONLN));
}

int main(int argc, char **argv)
{
    /* First: may restart with better OpenBLAS kernels, as fedpress does. */
    fp_blas_init(argv);
    struct fp_bench_cfg cfg = {.data_path = "/usr/share/datasets/fashion-mnist"};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            cfg.quick = 1;
        else if (!strcmp(argv[i], "--data") && i + 1 < argc)
            cfg.data_path = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc && argv[i + 1][0] >= '1' &&
                 argv[i + 1][0] <= '3' && argv[i + 1][1] == '\0')
            cfg.only = argv[++i][0] - '0';
        else {
            fprintf(stderr,
                    "usage: %s [--quick] [--only 1|2|3] [--data DIR]\n"
                    "  --quick     fewer repetitions (smoke test, noisy numbers)\n"
                    "  --only N    run only section N (e.g. under perf or callgrind; "
                    "without 1, fractions of peak print as nan)\n"
                    "  --data DIR  Fashion-MNIST IDX .gz directory (default %s)\n",
                    argv[0], cfg.data_path);
            return 2;
        }
    }
    /* Many short repetitions rather than a few long ones: on a shared machine
     * the best of them is the one that ran in the quietest window. */
    cfg.reps = cfg.quick ? 2 : 11;
    cfg.rep_seconds = cfg.quick ? 0.05 : 0.1;
    cfg.updates = cfg.quick ? 40 : 100;
    cfg.sim_rounds = cfg.quick ? 3 : 10;

    /* Parallelism is across callers; OpenBLAS's own threads would oversubscribe
     * the cores (as sim.c does too). */
    openblas_set_num_threads(1);
    /* Line by line even into a file or pipe, so a long run shows progress. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("command:");
    for (int i = 0; i < argc; i++)
        printf(" %s", argv[i]);
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", localtime(&now));
    printf("\ndate: %s\n", date);
    fp_bench_print_cpu();
    printf("OpenBLAS: %s (core %s, %d thread per call)\nBLAS: %s\n", openblas_get_config(),
           openblas_get_corename(), openblas_get_num_threads(), fp_blas_describe());
    fp_bench_print_loadavg("at start");

    struct fp_scenario sc;
    struct fp_error err = {0};
    char o_path[FP_SCENARIO_STR + 16];
    snprintf(o_path, sizeof o_path, "data.path=%s", cfg.data_path);
    const char *over[] = {o_path};
    if (fp_scenario_load_string(&sc, fp_bench_scenario_ini, "bench_train", over, 1, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }

    struct fp_bench_limits lim = {NAN, {NAN, NAN, NAN}, {NAN, NAN, NAN}, NAN};
    double eval_ms = NAN;
    if ((!cfg.only || cfg.only == 1) && fp_bench_machine(&cfg, &lim))
        return 1;
    if ((!cfg.only || cfg.only == 2) && fp_bench_updates(&cfg, &lim, &sc, &eval_ms))
        return 1;
    if ((!cfg.only || cfg.only == 3) && fp_bench_sim(&cfg, eval_ms))
        return 1;
    printf("\n");
    fp_bench_print_loadavg("at end");
    return 0;
}
