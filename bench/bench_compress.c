/*
 * bench/bench_compress.c — time per call of every compressor on the paper's
 * MLP (d = 159,010), against two memcpy bandwidths measured in the same run:
 * of the same 4 d bytes (they stay in L2, as a freshly trained update does)
 * and of 256 MiB (DRAM, the machine's streaming limit).
 *
 * Best of N wall-clock (CLOCK_MONOTONIC) per call, single thread. GB/s is
 * input processed: 4 d bytes / time. "+vhat" also writes the decoded vector,
 * as the algorithms ask. "cold" compresses each of 422 copies of the vector
 * spread over 256 MiB once, so the input streams from DRAM: the mean per
 * call, best of 3 sweeps, and its ratio to DRAM memcpy.
 * Usage: build/bench/bench_compress [N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "algorithms/compressor.h"
#include "algorithms/qsgd.h"

#define FP_BENCH_D 159010

static double fp__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Keeps the compiler from dropping work whose result nobody reads. */
static volatile float fp__sink;

static float *fp__src, *fp__dst;
static volatile double
    fp__uniform_sink; /* volatile: a write-only static would let the loop be deleted */

static void fp__memcpy_op(void *arg)
{
    (void)arg;
    memcpy(fp__dst, fp__src, 4 * (size_t)FP_BENCH_D);
    fp__sink = fp__dst[FP_BENCH_D / 2];
}

static void fp__uniform_op(void *arg)
{
    (void)arg;
    fp_rng r;
    fp_rng_seed(&r, 1, 2, 3, FP_RNG_COMPRESS);
    double s = 0;
    for (size_t j = 0; j < FP_BENCH_D; j++)
        s += fp_rng_uniform(&r);
    fp__uniform_sink = s;
}

struct fp__job {
    struct fp_compressor c;
    void *ws;
    uint8_t *buf;
    float *out;
    int decode; /* 0: compress, 1: decompress, 2: compress with vhat */
};

static void fp__comp_op(void *arg)
{
    struct fp__job *j = arg;
    fp_rng r;
    fp_rng_seed(&r, 1, 2, 3, FP_RNG_COMPRESS);
    int rc = j->decode == 1
                 ? fp_compressor_decompress(&j->c, j->buf, j->c.bytes, &r, j->ws, j->out)
                 : fp_compressor_compress(&j->c, fp__src, &r, j->ws, j->buf, j->c.bytes,
                                          j->decode == 2 ? j->out : NULL);
    if (rc) {
        fprintf(stderr, "bench_compress: call failed (%d)\n", rc);
        exit(1);
    }
    fp__sink = j->out[0];
}

/* memcpy bandwidth over 256 MiB (bytes copied per second), best of 5. */
static double fp__dram_bw(void)
{
    size_t bytes = (size_t)256 << 20;
    char *a = malloc(bytes), *b = malloc(bytes);
    if (!a || !b) {
        fprintf(stderr, "bench_compress: out of memory\n");
        exit(1);
    }
    memset(a, 1, bytes);
    memset(b, 2, bytes);
    double best = 1e30;
    for (int i = 0; i < 5; i++) {
        double t0 = fp__now();
        memcpy(b, a, bytes);
        double t = fp__now() - t0;
        if (t < best)
            best = t;
    }
    fp__sink = (float)b[bytes / 3];
    free(a);
    free(b);
    return (double)bytes / best;
}

/* Best of n calls, in seconds. */
static double fp__best(void (*op)(void *), void *arg, int n)
{
    op(arg); /* warm caches and pages */
    double best = 1e30;
    for (int i = 0; i < n; i++) {
        double t0 = fp__now();
        op(arg);
        double t = fp__now() - t0;
        if (t < best)
            best = t;
    }
    return best;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 200;
    if (n < 1)
        n = 1;
    const size_t d = FP_BENCH_D;
    const double in_bytes = 4.0 * (double)d;
    fp__src = malloc(4 * d);
    fp__dst = malloc(4 * d);
    if (!fp__src || !fp__dst)
        return 1;
    fp_rng g;
    fp_rng_seed(&g, 7, 0, FP_RNG_NO_CLIENT, FP_RNG_DATA);
    for (size_t j = 0; j < d; j++)
        fp__src[j] = (float)fp_rng_normal(&g);

    double tm = fp__best(fp__memcpy_op, NULL, n);
    double bw = in_bytes / tm, dram = fp__dram_bw();
    double tu = fp__best(fp__uniform_op, NULL, n);
    static const char *isa[] = {"portable", "avx2", "avx512"};
    printf("d = %zu (%.0f KB per vector), best of %d calls, single thread, QSGD code: %s\n", d,
           in_bytes / 1e3, n, isa[fp_qsgd_isa()]);
    printf("memcpy of 4d bytes (L2): %.4f ms = %.1f GB/s; memcpy of 256 MiB (DRAM): %.1f GB/s\n",
           tm * 1e3, bw / 1e9, dram / 1e9);
    printf("%-18s %7s %8s %8s %8s %9s %7s %7s %8s %7s\n", "", "bytes", "comp ms", "+vhat ms",
           "dec ms", "comp GB/s", "/L2cpy", "/DRAM", "cold ms", "/DRAM");
    printf("%-18s %7s %8.4f %8s %8s %9.2f %7.2f %7.2f\n", "d x fp_rng_uniform", "", tu * 1e3, "",
           "", in_bytes / tu / 1e9, in_bytes / tu / bw, in_bytes / tu / dram);
    size_t npool = ((size_t)256 << 20) / (4 * d);
    float *pool = malloc(npool * 4 * d);
    if (!pool)
        return 1;
    for (size_t i = 0; i < npool; i++)
        memcpy(pool + i * d, fp__src, 4 * d);

    struct {
        const char *name;
        enum fp_comp_kind kind;
        double ratio;
        uint32_t levels;
    } cs[] = {
        {"identity", FP_COMP_IDENTITY, 0, 0},
        {"topk 1%", FP_COMP_TOPK, 0.01, 0},
        {"randk 1%", FP_COMP_RANDK, 0.01, 0},
        {"qsgd:16", FP_COMP_QSGD, 0, 16},
        {"qsgd:4", FP_COMP_QSGD, 0, 4},
        {"sign", FP_COMP_SIGN, 0, 0},
        {"topk+qsgd:16 1%", FP_COMP_TOPK_QSGD, 0.01, 16},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        struct fp__job j = {0};
        struct fp_comp_spec sp = {.kind = cs[i].kind, .ratio = cs[i].ratio, .levels = cs[i].levels};
        struct fp_error err;
        if (fp_compressor_init(&j.c, &sp, d, &err)) {
            fprintf(stderr, "bench_compress: %s\n", err.msg);
            return 1;
        }
        j.ws = fp_compressor_ws_new(&j.c);
        j.buf = malloc(j.c.bytes);
        j.out = malloc(4 * d);
        if (!j.ws || !j.buf || !j.out)
            return 1;
        memset(j.out, 0, 4 * d);
        j.decode = 0;
        double tc = fp__best(fp__comp_op, &j, n);
        j.decode = 2;
        double tv = fp__best(fp__comp_op, &j, n);
        j.decode = 1;
        double td = fp__best(fp__comp_op, &j, n);
        double tcold = 1e30;
        for (int sweep = 0; sweep < 3; sweep++) {
            double t0 = fp__now();
            for (size_t v = 0; v < npool; v++) {
                fp_rng r;
                fp_rng_seed(&r, 1, 2, 3, FP_RNG_COMPRESS);
                if (fp_compressor_compress(&j.c, pool + v * d, &r, j.ws, j.buf, j.c.bytes, NULL))
                    return 1;
            }
            double t = (fp__now() - t0) / (double)npool;
            if (t < tcold)
                tcold = t;
        }
        printf("%-18s %7zu %8.4f %8.4f %8.4f %9.2f %7.2f %7.2f %8.4f %7.2f\n", cs[i].name,
               j.c.bytes, tc * 1e3, tv * 1e3, td * 1e3, in_bytes / tc / 1e9, in_bytes / tc / bw,
               in_bytes / tc / dram, tcold * 1e3, in_bytes / tcold / dram);
        fp_compressor_ws_free(&j.c, j.ws);
        free(j.buf);
        free(j.out);
    }
    free(pool);
    free(fp__src);
    free(fp__dst);
    return 0;
}
