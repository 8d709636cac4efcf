/*
 * fuzz/net_seeds.c — writes the seed corpus of fuzz_net_responder: client
 * flights against the fixture's server (fuzz/net_fixture.h), each file one
 * byte of piece size then the client's bytes. Not a test; run by hand:
 *   build/fuzz/net_seeds fuzz/corpus/net_responder
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net_fixture.h"

static uint8_t wire[1 << 20];
static size_t wlen;

static void add(const uint8_t *p, size_t n)
{
    if (wlen + n > sizeof wire)
        abort();
    memcpy(wire + wlen, p, n);
    wlen += n;
}

static void drive(struct fp_chan *from, struct fp_chan *to, int record)
{
    size_t n, used;
    const uint8_t *p = fp_chan_output(from, &n);
    if (record)
        add(p, n);
    struct fp_chan_event ev;
    while (n) {
        if (fp_chan_feed(to, p, n, &used, &ev))
            abort();
        p += used;
        n -= used;
    }
}

static void message(struct fp_chan *c, int type, size_t len)
{
    struct fp_msg_header h = fp_fuzz_net_upload(len);
    h.type = (uint8_t)type;
    uint8_t *payload = calloc(1, len + 1), *out = malloc(fp_chan_wire_size(len));
    size_t n;
    for (size_t i = 0; i < len; i++)
        payload[i] = (uint8_t)i;
    if (fp_chan_send(c, &h, payload, out, fp_chan_wire_size(len), &n))
        abort();
    add(out, n);
    free(payload);
    free(out);
}

static void write_seed(const char *dir, const char *name, uint8_t piece)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(&piece, 1, 1, f) != 1 || fwrite(wire, 1, wlen, f) != wlen || fclose(f))
        abort();
}

/* A handshake with hello; then the messages `kind` says. */
static void seed(const char *dir, const char *name, const char *hello, int kind, uint8_t piece)
{
    struct fp_chan *c = fp_fuzz_net_client((const uint8_t *)hello, strlen(hello));
    struct fp_chan *s = fp_fuzz_net_server();
    wlen = 0;
    drive(c, s, 1); /* magic + message 1 */
    drive(s, c, 0); /* message 2 */
    drive(c, s, 1); /* message 3 */
    if (kind >= 1)
        message(c, FP_MSG_UPLOAD, 100);
    if (kind >= 2) {
        message(c, FP_MSG_HEARTBEAT, 0);
        message(c, FP_MSG_UPLOAD, 70000); /* two payload records */
    }
    if (kind >= 3)
        message(c, FP_MSG_ERROR, 12);
    write_seed(dir, name, piece);
    fp_chan_free(c);
    fp_chan_free(s);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: net_seeds DIR\n");
        return 2;
    }
    seed(argv[1], "handshake", "", 0, 255);
    seed(argv[1], "hello", "hello from a client", 0, 7);
    seed(argv[1], "upload", "", 1, 255);
    seed(argv[1], "uploads", "h", 2, 200);
    seed(argv[1], "error", "", 3, 255);
    wlen = 0;
    add((const uint8_t *)FP_CHAN_MAGIC, 4);
    write_seed(argv[1], "magic", 0);
    return 0;
}
