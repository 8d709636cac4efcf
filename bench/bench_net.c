/*
 * bench/bench_net.c — the Noise channel's cost on a model: one 636,040-byte
 * payload (the paper's MLP, d = 159,010 float32) sent through net/channel.c
 * (encrypt into records straight from the caller's buffer) and received
 * (records decrypted into the caller's buffer), against the floor of the
 * same bytes through crypto_aead_chacha20poly1305_ietf in one call and
 * through memcpy, on one core.
 *
 * Best of N wall-clock (CLOCK_MONOTONIC) per model. GB/s is payload bytes
 * per second; records/s counts the records of the message (one for the
 * header, ten of up to 65,519 payload bytes).
 * Usage: build/bench/bench_net [N]   (default N = 200)
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/channel.h"

#define FP_BENCH_MODEL 636040

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

/* A client and a server past the handshake and the welcome. */
static void fp__connect(struct fp_chan **c, struct fp_chan **s)
{
    uint8_t ck[32], sk[32], spub[32], buf[4096];
    randombytes_buf(ck, 32);
    randombytes_buf(sk, 32);
    fp_noise_public_key(sk, spub);
    *c = fp_chan_new(FP_CHAN_CLIENT, ck, spub, NULL, 0);
    *s = fp_chan_new(FP_CHAN_SERVER, sk, NULL, NULL, 0);
    if (!*c || !*s)
        fp__die("out of memory");
    struct fp_chan *order[3][2] = {{*c, *s}, {*s, *c}, {*c, *s}};
    for (int i = 0; i < 3; i++) {
        size_t n, used;
        const uint8_t *p = fp_chan_output(order[i][0], &n);
        struct fp_chan_event ev;
        if (fp_chan_feed(order[i][1], p, n, &used, &ev) || used != n)
            fp__die("handshake failed");
    }
    fp_chan_admit(*s);
    struct fp_msg_header w = {.type = FP_MSG_WELCOME, .len = 0};
    size_t n, used;
    struct fp_chan_event ev;
    fp_chan_expect(*c, &w, 0, NULL);
    if (fp_chan_send(*s, &w, NULL, buf, sizeof buf, &n) || fp_chan_feed(*c, buf, n, &used, &ev) ||
        ev.type != FP_CHAN_EV_MESSAGE)
        fp__die("welcome failed");
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

    double best_memcpy = 1e30, best_enc = 1e30, best_dec = 1e30, best_send = 1e30, best_recv = 1e30,
           best_both = 1e30;
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
        fp__sink = dst[len / 2];
        if (i == 0) {
            if (memcmp(dst, model, len))
                fp__die("the model came back different");
            continue; /* warm-up */
        }
#define FP_MIN(a, b) ((b) < (a) ? (b) : (a))
        best_memcpy = FP_MIN(best_memcpy, t1 - t0);
        best_enc = FP_MIN(best_enc, t2 - t1);
        best_dec = FP_MIN(best_dec, t3 - t2);
        best_send = FP_MIN(best_send, t4 - t3);
        best_recv = FP_MIN(best_recv, t5 - t4);
        best_both = FP_MIN(best_both, t5 - t3);
    }
    printf("model %zu bytes; %d records, %llu bytes on the wire (+%.4f %%)\n", len, records,
           (unsigned long long)wire_len, 100.0 * (double)(wire_len - len) / (double)len);
    printf("%-44s %10s %10s %12s\n", "", "us/model", "GB/s", "records/s");
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
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        printf("%-44s %10.1f %10.2f", rows[i].name, rows[i].t * 1e6, (double)len / rows[i].t / 1e9);
        if (rows[i].recs)
            printf(" %12.0f", rows[i].recs / rows[i].t);
        printf("\n");
    }
    printf("send / raw encrypt %.3f, receive / raw decrypt %.3f\n", best_send / best_enc,
           best_recv / best_dec);
    fp_chan_free(c);
    fp_chan_free(s);
    free(model);
    free(dst);
    free(wire);
    free(ct);
    return 0;
}
