/*
 * bench/bench_net.c — the Noise channel's cost on a model: one 636,040-byte
 * payload (the paper's MLP, d = 159,010 float32) sent through net/channel.c
 * (encrypt into records straight from the caller's buffer) and received
 * (records decrypted into the caller's buffer), against the floor of the
 * same bytes through crypto_aead_chacha20poly1305_ietf in one call and
 * through memcpy, on one core; and the SHA-256 of them (what the drivers
 * compute for every upload's upload_sha256): libsodium's, and core/hash.c's
 * (SHA-NI where the CPU has it) that the drivers use.
 *
 * Best of N wall-clock (CLOCK_MONOTONIC) per model. GB/s is payload bytes
 * per second; records/s counts the records of the message (one for the
 * header, ten of up to 65,519 payload bytes).
 *
 * Then the two figures of issue 14 for the coordinator, on one core:
 * - handshakes per second: the server's side of the Noise XK handshake
 *   (a new channel, message 1 in, message 2 out, message 3 in, admitted,
 *   freed), timed alone; the client's side runs in between, untimed;
 * - broadcast: the model encrypted for FP_BENCH_FANOUT admitted sessions,
 *   each into a write buffer of its own malloc'ed for it and freed after
 *   all, as coordinator/ does, as a fraction of the raw AEAD's rate above;
 *   with glibc's default malloc, then after fp_coord_tune_malloc (what the
 *   coordinator runs with).
 * Usage: build/bench/bench_net [N]   (default N = 200)
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coordinator/coordinator.h"
#include "core/hash.h"
#include "net/channel.h"

#define FP_BENCH_MODEL    636040
#define FP_BENCH_FANOUT   20
#define FP_BENCH_HS_BATCH 200

static double fp__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static volatile uint8_t fp__sink;

static void fp__die(const char *what)
{
    fprintf(stderr, "bench_net: %s\n", what);
    exit(1);
}

/* A client and a server past the handshake and the welcome; the time
 * spent in the server's calls is added to *server_s. */
static void fp__connect_keys(struct fp_chan **c, struct fp_chan **s, const uint8_t ck[32],
                             const uint8_t sk[32], const uint8_t spub[32], double *server_s)
{
    uint8_t buf[4096];
    double t0 = fp__now();
    *s = fp_chan_new(FP_CHAN_SERVER, sk, NULL, NULL, 0);
    double ts = fp__now() - t0;
    *c = fp_chan_new(FP_CHAN_CLIENT, ck, spub, NULL, 0);
    if (!*c || !*s)
        fp__die("out of memory");
    struct fp_chan *order[3][2] = {{*c, *s}, {*s, *c}, {*c, *s}};
    for (int i = 0; i < 3; i++) {
        size_t n, used;
        int server_turn = order[i][0] == *s;
        t0 = fp__now();
        const uint8_t *p = fp_chan_output(order[i][0], &n);
        if (server_turn)
            ts += fp__now() - t0;
        struct fp_chan_event ev;
        t0 = fp__now();
        if (fp_chan_feed(order[i][1], p, n, &used, &ev) || used != n)
            fp__die("handshake failed");
        if (!server_turn)
            ts += fp__now() - t0;
    }
    t0 = fp__now();
    fp_chan_admit(*s);
    ts += fp__now() - t0;
    struct fp_msg_header w = {.type = FP_MSG_WELCOME, .len = 0};
    size_t n, used;
    struct fp_chan_event ev;
    fp_chan_expect(*c, &w, 0, NULL);
    if (fp_chan_send(*s, &w, NULL, buf, sizeof buf, &n) || fp_chan_feed(*c, buf, n, &used, &ev) ||
        ev.type != FP_CHAN_EV_MESSAGE)
        fp__die("welcome failed");
    if (server_s)
        *server_s += ts;
}

static void fp__connect(struct fp_chan **c, struct fp_chan **s)
{
    uint8_t ck[32], sk[32], spub[32];
    randombytes_buf(ck, 32);
    randombytes_buf(sk, 32);
    fp_noise_public_key(sk, spub);
    fp__connect_keys(c, s, ck, sk, spub, NULL);
}

/* Server seconds per handshake: best of `batches` batches of
 * FP_BENCH_HS_BATCH handshakes, each with a client key of its own. */
static double fp__handshakes(int batches)
{
    uint8_t sk[32], spub[32], (*ck)[32] = malloc(FP_BENCH_HS_BATCH * sizeof *ck);
    if (!ck)
        fp__die("out of memory");
    randombytes_buf(sk, 32);
    fp_noise_public_key(sk, spub);
    randombytes_buf(ck, FP_BENCH_HS_BATCH * sizeof *ck);
    double best = 1e30;
    for (int b = 0; b < batches; b++) {
        double server_s = 0;
        for (int i = 0; i < FP_BENCH_HS_BATCH; i++) {
            struct fp_chan *c, *s;
            fp__connect_keys(&c, &s, ck[i], sk, spub, &server_s);
            double t0 = fp__now();
            fp_chan_free(s);
            server_s += fp__now() - t0;
            fp_chan_free(c);
        }
        if (server_s / FP_BENCH_HS_BATCH < best)
            best = server_s / FP_BENCH_HS_BATCH;
    }
    free(ck);
    return best;
}

/* Seconds to encrypt the model for FP_BENCH_FANOUT sessions, best of reps:
 * one malloc'ed wire buffer per session, freed once all are sent (the
 * coordinator frees each when its write completes). */
static double fp__broadcast(const uint8_t *model, size_t len, int reps)
{
    struct fp_chan *c[FP_BENCH_FANOUT], *s[FP_BENCH_FANOUT];
    uint8_t *w[FP_BENCH_FANOUT];
    for (int k = 0; k < FP_BENCH_FANOUT; k++)
        fp__connect(&c[k], &s[k]);
    const size_t wire = (size_t)fp_chan_wire_size(len);
    const struct fp_msg_header h = {
        .type = FP_MSG_BROADCAST, .run = 1, .round = 1, .client = FP_MSG_ALL, .len = len};
    double best = 1e30;
    for (int i = 0; i <= reps; i++) {
        double t0 = fp__now();
        for (int k = 0; k < FP_BENCH_FANOUT; k++) {
            size_t n;
            if (!(w[k] = malloc(wire)) || fp_chan_send(s[k], &h, model, w[k], wire, &n))
                fp__die("broadcast failed");
        }
        for (int k = 0; k < FP_BENCH_FANOUT; k++) {
            fp__sink = w[k][wire - 1];
            free(w[k]);
        }
        double t = fp__now() - t0;
        if (i && t < best) /* i = 0: warm-up */
            best = t;
    }
    for (int k = 0; k < FP_BENCH_FANOUT; k++) {
        fp_chan_free(c[k]);
        fp_chan_free(s[k]);
    }
    return best;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 200;
    if (reps < 1 || fp_noise_init())
        fp__die("usage: bench_net [N]");
    time_t now = time(NULL);
    char cpu[256] = "unknown", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            snprintf(cpu, sizeof cpu, "%s", strchr(line, ':') + 2);
            cpu[strcspn(cpu, "\n")] = '\0';
            break;
        }
    if (f)
        fclose(f);
    double load[3] = {0};
    getloadavg(load, 3);
    printf("bench_net N=%d, %s", reps, ctime(&now));
    printf("cpu: %s; libsodium %s; load %.2f\n", cpu, sodium_version_string(), load[0]);

    size_t len = FP_BENCH_MODEL;
    uint64_t wire_len = fp_chan_wire_size(len);
    uint8_t *model = malloc(len), *dst = malloc(len), *wire = malloc(wire_len),
            *ct = malloc(len + 16);
    if (!model || !dst || !wire || !ct)
        fp__die("out of memory");
    randombytes_buf(model, len);
    memset(dst, 0, len);
    memset(wire, 0, wire_len);
    memset(ct, 0, len + 16);
    int records = 1 + (int)((len + FP_CHAN_RECORD_PLAIN - 1) / FP_CHAN_RECORD_PLAIN);

    double best_memcpy = 1e30, best_sha = 1e30, best_fp_sha = 1e30, best_enc = 1e30,
           best_dec = 1e30, best_send = 1e30, best_recv = 1e30, best_both = 1e30;
    uint8_t key[32], nonce[12] = {0}, tag[16];
    randombytes_buf(key, 32);
    struct fp_chan *c, *s;
    fp__connect(&c, &s);
    struct fp_msg_header h = {
        .type = FP_MSG_BROADCAST, .run = 1, .round = 1, .client = FP_MSG_ALL, .len = len};
    for (int i = 0; i <= reps; i++) {
        double t0 = fp__now();
        memcpy(dst, model, len);
        double t1 = fp__now();
        crypto_aead_chacha20poly1305_ietf_encrypt_detached(ct, tag, NULL, model, len, NULL, 0, NULL,
                                                           nonce, key);
        double t2 = fp__now();
        if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(dst, NULL, ct, len, tag, NULL, 0,
                                                               nonce, key))
            fp__die("decrypt failed");
        double t3 = fp__now();
        size_t n, used;
        if (fp_chan_send(s, &h, model, wire, wire_len, &n) || n != wire_len)
            fp__die("send failed");
        double t4 = fp__now();
        struct fp_chan_event ev;
        fp_chan_expect(c, &h, 0, dst);
        if (fp_chan_feed(c, wire, n, &used, &ev) || ev.type != FP_CHAN_EV_MESSAGE ||
            ev.payload != dst)
            fp__die("receive failed");
        double t5 = fp__now();
        uint8_t digest[FP_SHA256_BYTES], fp_digest[FP_SHA256_BYTES];
        crypto_hash_sha256(digest, model, len);
        double t6 = fp__now();
        fp_sha256(model, len, fp_digest);
        double t7 = fp__now();
        fp__sink = dst[len / 2] ^ digest[0] ^ fp_digest[0];
        if (i == 0) {
            if (memcmp(dst, model, len))
                fp__die("the model came back different");
            if (memcmp(digest, fp_digest, sizeof digest))
                fp__die("core/hash.c's SHA-256 differs from libsodium's");
            continue; /* warm-up */
        }
#define FP_MIN(a, b) ((b) < (a) ? (b) : (a))
        best_memcpy = FP_MIN(best_memcpy, t1 - t0);
        best_enc = FP_MIN(best_enc, t2 - t1);
        best_dec = FP_MIN(best_dec, t3 - t2);
        best_send = FP_MIN(best_send, t4 - t3);
        best_recv = FP_MIN(best_recv, t5 - t4);
        best_both = FP_MIN(best_both, t5 - t3);
        best_sha = FP_MIN(best_sha, t6 - t5);
        best_fp_sha = FP_MIN(best_fp_sha, t7 - t6);
    }
    printf("model %zu bytes; %d records, %llu bytes on the wire (+%.4f %%)\n", len, records,
           (unsigned long long)wire_len, 100.0 * (double)(wire_len - len) / (double)len);
    printf("%-44s %10s %10s %12s\n", "", "us/model", "GB/s", "records/s");
    struct fp_sha256 probe;
    fp_sha256_init(&probe); /* which implementation the drivers get here */
    const int fp_ni = probe.ni;
    struct {
        const char *name;
        double t;
        int recs;
    } rows[] = {
        {"memcpy", best_memcpy, 0},
        {"chacha20poly1305_ietf encrypt, 1 call", best_enc, 0},
        {"chacha20poly1305_ietf decrypt, 1 call", best_dec, 0},
        {"channel send (records from the buffer)", best_send, records},
        {"channel receive (into the caller's buffer)", best_recv, records},
        {"channel send + receive", best_both, records},
        {"sha256, libsodium", best_sha, 0},
        {fp_ni ? "sha256, core/hash.c: SHA-NI (the drivers')"
               : "sha256, core/hash.c: libsodium (no SHA-NI)",
         best_fp_sha, 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        printf("%-44s %10.1f %10.2f", rows[i].name, rows[i].t * 1e6, (double)len / rows[i].t / 1e9);
        if (rows[i].recs)
            printf(" %12.0f", rows[i].recs / rows[i].t);
        printf("\n");
    }
    printf("send / raw encrypt %.3f, receive / raw decrypt %.3f\n", best_send / best_enc,
           best_recv / best_dec);

    double hs = fp__handshakes(reps < 10 ? 3 : 10);
    printf("\ncoordinator, one core:\n");
    printf("  handshake, server side (XK: new, msg 1 in, msg 2 out, msg 3 in, admit, free): "
           "%.1f us = %.0f handshakes/s per core\n",
           hs * 1e6, 1.0 / hs);
    const double raw = (double)len / best_enc;
    for (int tuned = 0; tuned < 2; tuned++) {
        if (tuned) /* what the coordinator does at start; glibc's defaults before */
            fp_coord_tune_malloc();
        double bc = fp__broadcast(model, len, reps < 50 ? reps : 50);
        double rate = (double)FP_BENCH_FANOUT * (double)len / bc;
        printf("  broadcast to %d sessions, a wire buffer malloc'ed per session, %s: %.2f ms, "
               "%.2f GB/s of model = %.3f of raw chacha20poly1305_ietf encrypt (%.2f GB/s)\n",
               FP_BENCH_FANOUT, tuned ? "fp_coord_tune_malloc" : "glibc's default malloc", bc * 1e3,
               rate / 1e9, rate / raw, raw / 1e9);
    }
    fp_chan_free(c);
    fp_chan_free(s);
    free(model);
    free(dst);
    free(wire);
    free(ct);
    return 0;
}
