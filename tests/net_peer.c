/*
 * tests/net_peer.c — one end of a fedpress/1 connection over stdin/stdout,
 * for tests/net_interop.py, which plays the other end with an independent
 * Noise implementation (python3-dissononce).
 *
 *   net_peer client SECRET_HEX SERVER_PUBLIC_HEX
 *   net_peer server SECRET_HEX
 *
 * The dialog: handshake (the client's hello is "c-hello"); the server's
 * welcome carries "welcome:" + hello; then for round r = 1..4 the client
 * uploads a payload of {0, 1, 70000, 200000}[r-1] bytes, byte j being
 * (j * 31 + r) & 255, and the server answers with a broadcast of the same
 * round holding the payload reversed. The client then closes; the server
 * checks the connection ended between two messages. Each side prints
 * "handshake HASH_HEX peer PUBLIC_HEX hello HELLO_HEX" on stderr, and exits
 * 0 only if every byte it received was what the dialog says.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../net/channel.h"
#include "../net/keyfile.h"

#define RUN    42
#define CLIENT 5
#define ROUNDS 4
static const size_t sizes[ROUNDS] = {0, 1, 70000, 200000};

static struct fp_chan *ch;
static uint8_t inbuf[65536];
static size_t in_len, in_off;
static int in_eof;

static void die(const char *what)
{
    fprintf(stderr, "net_peer: %s%s%s\n", what, ch && *fp_chan_error(ch) ? ": " : "",
            ch ? fp_chan_error(ch) : "");
    exit(1);
}

static void put(const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(1, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("write failed");
        p += w;
        n -= (size_t)w;
    }
}

static void flush_output(void)
{
    size_t n;
    const uint8_t *p = fp_chan_output(ch, &n);
    put(p, n);
}

/* The next event; NONE only at EOF. */
static struct fp_chan_event next_event(void)
{
    struct fp_chan_event ev;
    for (;;) {
        size_t used;
        if (fp_chan_feed(ch, inbuf + in_off, in_len - in_off, &used, &ev))
            die("channel error");
        in_off += used;
        flush_output(); /* handshake bytes the input produced */
        if (ev.type != FP_CHAN_EV_NONE || in_eof)
            return ev;
        ssize_t r = read(0, inbuf, sizeof inbuf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die("read failed");
        in_len = (size_t)r;
        in_off = 0;
        in_eof = r == 0;
    }
}

static void report(const struct fp_chan_event *ev)
{
    char h[65], peer[65];
    fp_key_to_hex(fp_chan_handshake_hash(ch), h);
    fp_key_to_hex(ev->peer, peer);
    fprintf(stderr, "handshake %s peer %s hello ", h, peer);
    for (size_t i = 0; i < ev->hello_len; i++)
        fprintf(stderr, "%02x", ev->hello[i]);
    fprintf(stderr, "\n");
}

static void send_msg(const struct fp_msg_header *h, const uint8_t *payload)
{
    size_t cap = (size_t)fp_chan_wire_size(h->len), n;
    uint8_t *out = malloc(cap);
    if (!out || fp_chan_send(ch, h, payload, out, cap, &n))
        die("send failed");
    put(out, n);
    free(out);
}

static struct fp_chan_event expect(int type, uint32_t round, uint64_t len)
{
    struct fp_msg_header want = {
        .type = (uint8_t)type, .run = RUN, .round = round, .client = CLIENT, .len = len};
    fp_chan_expect(ch, &want, 0, NULL);
    struct fp_chan_event ev = next_event();
    if (ev.type != FP_CHAN_EV_MESSAGE || ev.header.type != type)
        die("not the expected message");
    return ev;
}

static uint8_t *pattern(size_t n, unsigned r)
{
    uint8_t *p = malloc(n + 1);
    for (size_t j = 0; j < n; j++)
        p[j] = (uint8_t)(j * 31 + r);
    return p;
}

static int run_server(void)
{
    struct fp_chan_event ev = next_event();
    if (ev.type != FP_CHAN_EV_HANDSHAKE)
        die("no handshake");
    report(&ev);
    uint8_t welcome[64 + FP_CHAN_HELLO_MAX];
    memcpy(welcome, "welcome:", 8);
    memcpy(welcome + 8, ev.hello, ev.hello_len);
    struct fp_msg_header w = {
        .type = FP_MSG_WELCOME, .run = RUN, .client = CLIENT, .len = 8 + ev.hello_len};
    fp_chan_admit(ch);
    send_msg(&w, welcome);
    for (unsigned r = 1; r <= ROUNDS; r++) {
        struct fp_chan_event m = expect(FP_MSG_UPLOAD, r, sizes[r - 1]);
        uint8_t *want = pattern(sizes[r - 1], r), *back = malloc(sizes[r - 1] + 1);
        if (sizes[r - 1] && memcmp(m.payload, want, sizes[r - 1]))
            die("upload payload differs");
        for (size_t j = 0; j < sizes[r - 1]; j++)
            back[j] = want[sizes[r - 1] - 1 - j];
        struct fp_msg_header b = m.header;
        b.type = FP_MSG_BROADCAST;
        send_msg(&b, back);
        free(m.payload);
        free(want);
        free(back);
    }
    struct fp_chan_event end = next_event();
    if (end.type != FP_CHAN_EV_NONE || fp_chan_eof(ch))
        die("the client did not end cleanly");
    return 0;
}

static int run_client(void)
{
    struct fp_chan_event ev = next_event();
    if (ev.type != FP_CHAN_EV_HANDSHAKE)
        die("no handshake");
    report(&ev);
    struct fp_chan_event w = expect(FP_MSG_WELCOME, 0, 15);
    if (memcmp(w.payload, "welcome:c-hello", 15))
        die("welcome payload differs");
    free(w.payload);
    for (unsigned r = 1; r <= ROUNDS; r++) {
        uint8_t *p = pattern(sizes[r - 1], r);
        struct fp_msg_header u = {
            .type = FP_MSG_UPLOAD, .run = RUN, .round = r, .client = CLIENT, .len = sizes[r - 1]};
        send_msg(&u, p);
        struct fp_chan_event b = expect(FP_MSG_BROADCAST, r, sizes[r - 1]);
        for (size_t j = 0; j < sizes[r - 1]; j++)
            if (b.payload[j] != p[sizes[r - 1] - 1 - j])
                die("broadcast payload differs");
        free(b.payload);
        free(p);
    }
    close(1);
    return 0;
}

int main(int argc, char **argv)
{
    uint8_t sk[32], spub[32];
    if (argc < 3 || fp_key_from_hex(argv[2], sk) ||
        (!strcmp(argv[1], "client") && (argc < 4 || fp_key_from_hex(argv[3], spub)))) {
        fprintf(stderr,
                "usage: net_peer client SECRET_HEX SERVER_PUBLIC_HEX | server SECRET_HEX\n");
        return 2;
    }
    int client = !strcmp(argv[1], "client");
    ch = client ? fp_chan_new(FP_CHAN_CLIENT, sk, spub, (const uint8_t *)"c-hello", 7)
                : fp_chan_new(FP_CHAN_SERVER, sk, NULL, NULL, 0);
    if (!ch)
        die("out of memory");
    int rc = client ? run_client() : run_server();
    fp_chan_free(ch);
    return rc;
}
