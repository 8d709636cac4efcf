/*
 * bench/load_clients.c — many clients of one `fedpress coordinator` in one
 * process, for the load figures of docs/performance.md (issue 14: at least
 * 1,000 connected clients). Each client is a thread running client/'s own
 * fp_client_run (its libuv loop, the Noise channel, the welcome, its shard
 * of the scenario, fp_algo_client_update on every broadcast it gets): the
 * real protocol, nothing simulated. The keys are generated: client i's
 * secret key is SHA-256("fedpress load client", seed, i), so the allow-list
 * can be printed before the coordinator starts and nothing is written.
 *
 *   load_clients pub N [SEED]                 the allow-list, one 'ID PUBKEY' line each
 *   load_clients run HOST:PORT SERVERPUB N [SEED] [--window W] [--state DIR]
 *
 * `run` starts the N clients, at most W (default 32) in their connect,
 * handshake and welcome at once (a client's welcome lets the next one in:
 * the coordinator's --max-pending, 64 by default, closes the oldest
 * handshake beyond it), waits for all to end, and prints:
 *   admitted N in S s: R handshakes/s (connect, handshake, admission and
 *   welcome, as the clients saw them), and how many ended well.
 * Exit 0 when every client completed the run.
 */
#include <errno.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "client/client.h"
#include "core/hash.h"
#include "net/noise.h"
#include "net/peer.h"

#define FP_LOAD_STACK (1u << 20) /* per client thread: its loop's frames only */

struct fp__load {
    const char *host;
    int port;
    uint8_t server_pub[FP_NOISE_KEY];
    uint64_t seed;
    const char *state_dir;
    uv_sem_t window;
    double t0;
    atomic_uint welcomed, ok;
    _Atomic double last_welcome;
};

struct fp__one {
    struct fp__load *L;
    uint32_t i;
    uint8_t key[FP_NOISE_KEY];
    int welcomed;
    uv_thread_t tid;
    struct fp_client_result res;
    struct fp_error err;
};

static double fp__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fp__key(uint64_t seed, uint32_t i, uint8_t key[FP_NOISE_KEY])
{
    uint8_t in[20 + 8 + 4];
    memcpy(in, "fedpress load client", 20);
    for (int b = 0; b < 8; b++)
        in[20 + b] = (uint8_t)(seed >> (8 * b));
    for (int b = 0; b < 4; b++)
        in[28 + b] = (uint8_t)(i >> (8 * b));
    fp_sha256(in, sizeof in, key);
}

/* The client's log: its first line after the welcome is "run R: scenario
 * ..."; that moment ends its handshake, and lets the next client in. The
 * rest is dropped (a failure comes back from fp_client_run). */
static ssize_t fp__log_write(void *cookie, const char *buf, size_t n)
{
    struct fp__one *o = cookie;
    if (!o->welcomed && memmem(buf, n, ": scenario '", 12)) {
        o->welcomed = 1;
        double t = fp__now() - o->L->t0;
        atomic_fetch_add(&o->L->welcomed, 1);
        double prev = atomic_load(&o->L->last_welcome);
        while (t > prev && !atomic_compare_exchange_weak(&o->L->last_welcome, &prev, t))
            ;
        uv_sem_post(&o->L->window);
    }
    return (ssize_t)n;
}

static void fp__client_main(void *arg)
{
    struct fp__one *o = arg;
    struct fp__load *L = o->L;
    cookie_io_functions_t io = {.write = fp__log_write};
    FILE *log = fopencookie(o, "w", io);
    if (log)
        setvbuf(log, NULL, _IOLBF, 0);
    const struct fp_client_options opt = {.host = L->host,
                                          .port = L->port,
                                          .server_pub = L->server_pub,
                                          .key = o->key,
                                          .state_dir = L->state_dir,
                                          .welcome_s = 600,
                                          .log = log};
    int rc = fp_client_run(&opt, &o->res, &o->err);
    if (!o->welcomed) /* never welcomed: its place in the window is free again */
        uv_sem_post(&L->window);
    if (rc)
        fprintf(stderr, "load_clients: client %u: %s\n", o->i, o->err.msg);
    else
        atomic_fetch_add(&L->ok, 1);
    if (log)
        fclose(log);
}

static int fp__usage(void)
{
    fprintf(stderr, "usage: load_clients pub N [SEED]\n"
                    "       load_clients run HOST:PORT SERVERPUB N [SEED] [--window W] "
                    "[--state DIR]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 3 || fp_noise_init())
        return fp__usage();
    int pub = !strcmp(argv[1], "pub");
    if (!pub && (strcmp(argv[1], "run") || argc < 5))
        return fp__usage();
    const char *nstr = pub ? argv[2] : argv[4];
    char *end;
    unsigned long n = strtoul(nstr, &end, 10);
    if (*end || n < 1 || n > 100000)
        return fp__usage();
    int pos = pub ? 3 : 5;
    uint64_t seed = 1;
    if (argc > pos && argv[pos][0] != '-')
        seed = strtoull(argv[pos++], NULL, 10);
    if (pub) {
        for (uint32_t i = 0; i < n; i++) {
            uint8_t k[FP_NOISE_KEY], p[FP_NOISE_KEY];
            char hex[2 * FP_NOISE_KEY + 1];
            fp__key(seed, i, k);
            fp_noise_public_key(k, p);
            sodium_bin2hex(hex, sizeof hex, p, sizeof p);
            printf("%u %s\n", i, hex);
        }
        return 0;
    }
    struct fp__load L = {.seed = seed, .state_dir = "."};
    unsigned window = 32;
    for (; pos + 1 < argc; pos += 2) {
        if (!strcmp(argv[pos], "--window"))
            window = (unsigned)strtoul(argv[pos + 1], NULL, 10);
        else if (!strcmp(argv[pos], "--state"))
            L.state_dir = argv[pos + 1];
        else
            return fp__usage();
    }
    if (pos != argc || window < 1)
        return fp__usage();
    static char host[256];
    struct fp_error err = {0};
    if (fp_peer_hostport(argv[2], host, sizeof host, &L.port, &err)) {
        fprintf(stderr, "load_clients: %s\n", err.msg);
        return 2;
    }
    L.host = host;
    if (sodium_hex2bin(L.server_pub, sizeof L.server_pub, argv[3], strlen(argv[3]), NULL, NULL,
                       NULL) ||
        strlen(argv[3]) != 2 * FP_NOISE_KEY) {
        fprintf(stderr, "load_clients: SERVERPUB must be 64 hex digits\n");
        return 2;
    }
    struct fp__one *c = calloc(n, sizeof *c);
    if (!c || uv_sem_init(&L.window, window)) {
        fprintf(stderr, "load_clients: out of memory\n");
        return 1;
    }
    const uv_thread_options_t topt = {.flags = UV_THREAD_HAS_STACK_SIZE,
                                      .stack_size = FP_LOAD_STACK};
    L.t0 = fp__now();
    uint32_t started = 0;
    for (; started < n; started++) {
        struct fp__one *o = &c[started];
        o->L = &L;
        o->i = started;
        fp__key(seed, started, o->key);
        uv_sem_wait(&L.window);
        if (uv_thread_create_ex(&o->tid, &topt, fp__client_main, o)) {
            fprintf(stderr, "load_clients: cannot start client thread %u (%s)\n", started,
                    strerror(errno));
            break;
        }
    }
    for (uint32_t i = 0; i < started; i++)
        uv_thread_join(&c[i].tid);
    double all = fp__now() - L.t0;
    unsigned w = atomic_load(&L.welcomed), ok = atomic_load(&L.ok);
    double last = atomic_load(&L.last_welcome);
    printf("load_clients: %lu clients, window %u: %u welcomed, the last %.3f s after the first "
           "connect: %.0f handshakes/s (connect, handshake, admission, welcome); %u completed "
           "the run; %.1f s in all\n",
           n, window, w, last, last > 0 ? w / last : 0.0, ok, all);
    for (uint32_t i = 0; i < started; i++)
        sodium_memzero(c[i].key, sizeof c[i].key);
    free(c);
    uv_sem_destroy(&L.window);
    return ok == n ? 0 : 1;
}
