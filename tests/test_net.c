/*
 * tests/test_net.c — net/: Noise XK against the published test vectors in
 * both roles, the channel end to end, and every way a peer can break it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "../net/channel.h"
#include "../net/keyfile.h"
#include "../net/noise.h"

/* ---- helpers ---- */

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    assert_int_equal(sodium_hex2bin(out, cap, hex, strlen(hex), NULL, &n, NULL), 0);
    return n;
}

static void key_from(uint8_t key[32], const char *hex)
{
    assert_int_equal(unhex(hex, key, 32), 32);
}

/* ---- the test vectors (tests/vectors/noise-xk.txt) ---- */

#define VEC_MSGS 8
struct vector {
    char name[32];
    uint8_t init_prologue[128], resp_prologue[128];
    size_t init_prologue_len, resp_prologue_len;
    uint8_t init_static[32], init_ephemeral[32], init_remote_static[32];
    uint8_t resp_static[32], resp_ephemeral[32];
    uint8_t hash[32];
    int has_hash;
    int nmsg;
    uint8_t payload[VEC_MSGS][128], ct[VEC_MSGS][256];
    size_t payload_len[VEC_MSGS], ct_len[VEC_MSGS];
};

static int load_vectors(struct vector *v, int max)
{
    const char *root = getenv("FP_SOURCE_ROOT");
    char path[4096], line[2048];
    snprintf(path, sizeof path, "%s/tests/vectors/noise-xk.txt", root ? root : ".");
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int n = -1;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *val = strchr(line, ' ');
        if (line[0] == '#' || !val)
            continue;
        *val++ = '\0';
        if (!strcmp(line, "vector")) {
            assert_true(++n < max);
            memset(&v[n], 0, sizeof v[n]);
            snprintf(v[n].name, sizeof v[n].name, "%s", val);
            continue;
        }
        struct vector *x = &v[n];
        if (!strcmp(line, "init_prologue"))
            x->init_prologue_len = unhex(val, x->init_prologue, sizeof x->init_prologue);
        else if (!strcmp(line, "resp_prologue"))
            x->resp_prologue_len = unhex(val, x->resp_prologue, sizeof x->resp_prologue);
        else if (!strcmp(line, "init_static"))
            key_from(x->init_static, val);
        else if (!strcmp(line, "init_ephemeral"))
            key_from(x->init_ephemeral, val);
        else if (!strcmp(line, "init_remote_static"))
            key_from(x->init_remote_static, val);
        else if (!strcmp(line, "resp_static"))
            key_from(x->resp_static, val);
        else if (!strcmp(line, "resp_ephemeral"))
            key_from(x->resp_ephemeral, val);
        else if (!strcmp(line, "handshake_hash"))
            key_from(x->hash, val), x->has_hash = 1;
        else if (!strcmp(line, "message")) {
            char *ct = strchr(val, ' ');
            assert_non_null(ct);
            *ct++ = '\0';
            assert_true(x->nmsg < VEC_MSGS);
            x->payload_len[x->nmsg] = unhex(val, x->payload[x->nmsg], 128);
            x->ct_len[x->nmsg] = unhex(ct, x->ct[x->nmsg], 256);
            x->nmsg++;
        }
    }
    fclose(f);
    return n + 1;
}

/* One role through a whole vector: writes its messages and compares every
 * byte, reads the peer's and compares the payload, through the handshake
 * and on into transport messages; checks the handshake hash. */
static void vector_role(const struct vector *v, int initiator)
{
    struct fp_noise_handshake hs;
    struct fp_noise_cipher send = {0}, recv = {0};
    struct fp_error err = {0};
    uint8_t out[512], pl[512], h[32];
    size_t n;
    if (initiator) {
        fp_noise_handshake_init(&hs, 1, v->init_prologue, v->init_prologue_len, v->init_static,
                                v->init_remote_static);
        fp_noise_handshake_set_ephemeral(&hs, v->init_ephemeral);
    } else {
        fp_noise_handshake_init(&hs, 0, v->resp_prologue, v->resp_prologue_len, v->resp_static,
                                NULL);
        fp_noise_handshake_set_ephemeral(&hs, v->resp_ephemeral);
    }
    for (int i = 0; i < v->nmsg; i++) {
        int mine = (i % 2 == 0) == initiator;
        if (mine) {
            if (i < 3)
                assert_int_equal(fp_noise_handshake_write(&hs, v->payload[i], v->payload_len[i],
                                                          out, sizeof out, &n, &err),
                                 0);
            else {
                assert_int_equal(
                    fp_noise_cipher_encrypt(&send, NULL, 0, v->payload[i], v->payload_len[i], out),
                    0);
                n = v->payload_len[i] + FP_NOISE_TAG;
            }
            if (n != v->ct_len[i] || memcmp(out, v->ct[i], n))
                fail_msg("vector %s, %s: message %d differs", v->name,
                         initiator ? "initiator" : "responder", i);
        } else {
            if (i < 3)
                assert_int_equal(
                    fp_noise_handshake_read(&hs, v->ct[i], v->ct_len[i], pl, sizeof pl, &n, &err),
                    0);
            else {
                assert_int_equal(
                    fp_noise_cipher_decrypt(&recv, NULL, 0, v->ct[i], v->ct_len[i], pl), 0);
                n = v->ct_len[i] - FP_NOISE_TAG;
            }
            assert_int_equal(n, v->payload_len[i]);
            assert_memory_equal(pl, v->payload[i], n);
        }
        if (i == 2) {
            assert_true(fp_noise_handshake_done(&hs));
            fp_noise_handshake_split(&hs, &send, &recv, h);
            if (v->has_hash)
                assert_memory_equal(h, v->hash, 32);
        }
    }
    /* The responder's view of the initiator's static key is the vector's. */
    if (!initiator) {
        uint8_t pub[32];
        fp_noise_public_key(v->init_static, pub);
        assert_memory_equal(hs.rs, pub, 32);
    }
    fp_noise_handshake_wipe(&hs);
    fp_noise_cipher_wipe(&send);
    fp_noise_cipher_wipe(&recv);
}

static void test_vectors(void **state)
{
    (void)state;
    struct vector *v = calloc(4, sizeof *v);
    int n = load_vectors(v, 4);
    assert_int_equal(n, 2); /* cacophony + snow */
    int hashes = 0;
    for (int i = 0; i < n; i++) {
        assert_true(v[i].nmsg >= 5);
        hashes += v[i].has_hash;
        vector_role(&v[i], 1);
        vector_role(&v[i], 0);
    }
    assert_int_equal(hashes, 1);
    free(v);
}

/* A wrong byte anywhere in a vector message is refused by the reader. */
static void test_vector_bad_tags(void **state)
{
    (void)state;
    struct vector *v = calloc(4, sizeof *v);
    assert_int_equal(load_vectors(v, 4), 2);
    for (int msg = 0; msg < 3; msg++) {
        for (size_t at = 0; at < v[0].ct_len[msg]; at += 7) {
            struct fp_noise_handshake ini, res;
            struct fp_error err = {0};
            uint8_t pl[512], m[512];
            size_t n;
            fp_noise_handshake_init(&ini, 1, v->init_prologue, v->init_prologue_len, v->init_static,
                                    v->init_remote_static);
            fp_noise_handshake_set_ephemeral(&ini, v->init_ephemeral);
            fp_noise_handshake_init(&res, 0, v->resp_prologue, v->resp_prologue_len, v->resp_static,
                                    NULL);
            fp_noise_handshake_set_ephemeral(&res, v->resp_ephemeral);
            for (int i = 0; i < 3; i++) {
                struct fp_noise_handshake *w = i % 2 ? &res : &ini, *r = i % 2 ? &ini : &res;
                assert_int_equal(fp_noise_handshake_write(w, v->payload[i], v->payload_len[i], m,
                                                          sizeof m, &n, &err),
                                 0);
                if (i == msg)
                    m[at] ^= 0x01;
                int rc = fp_noise_handshake_read(r, m, n, pl, sizeof pl, &n, &err);
                if (i == msg) {
                    assert_int_equal(rc, FP_EFORMAT);
                    break;
                }
                assert_int_equal(rc, 0);
            }
        }
    }
    free(v);
}

/* ---- the channel ---- */

struct pair {
    struct fp_chan *c, *s;
    uint8_t ckey[32], cpub[32], skey[32], spub[32];
};

static void keys(uint8_t priv[32], uint8_t pub[32], uint8_t seed)
{
    memset(priv, seed, 32);
    fp_noise_public_key(priv, pub);
}

/* Feeds n bytes; collects up to max events; returns how many, or the
 * channel's error code. */
static int feed_all(struct fp_chan *ch, const uint8_t *p, size_t n, struct fp_chan_event *evs,
                    int max)
{
    int k = 0;
    for (;;) {
        struct fp_chan_event ev;
        size_t used;
        int rc = fp_chan_feed(ch, p, n, &used, &ev);
        if (rc)
            return rc;
        p += used;
        n -= used;
        if (ev.type == FP_CHAN_EV_NONE)
            break;
        assert_true(k < max);
        evs[k++] = ev;
    }
    assert_int_equal(n, 0);
    return k;
}

/* Output of `from`, appended to buf. */
static size_t take(struct fp_chan *from, uint8_t *buf)
{
    size_t n;
    const uint8_t *p = fp_chan_output(from, &n);
    if (n)
        memcpy(buf, p, n);
    return n;
}

static void handshake(struct pair *p, const char *hello)
{
    keys(p->ckey, p->cpub, 1);
    keys(p->skey, p->spub, 2);
    p->c = fp_chan_new(FP_CHAN_CLIENT, p->ckey, p->spub, (const uint8_t *)hello, strlen(hello));
    p->s = fp_chan_new(FP_CHAN_SERVER, p->skey, NULL, NULL, 0);
    assert_non_null(p->c);
    assert_non_null(p->s);
    uint8_t buf[70000];
    struct fp_chan_event ev[2];
    size_t n = take(p->c, buf);
    assert_int_equal(n, 4 + 2 + 48);
    assert_memory_equal(buf, "FPN\x01\x00\x30", 6);
    assert_int_equal(feed_all(p->s, buf, n, ev, 2), 0);
    n = take(p->s, buf);
    assert_int_equal(n, 2 + 48);
    assert_int_equal(feed_all(p->c, buf, n, ev, 2), 1);
    assert_int_equal(ev[0].type, FP_CHAN_EV_HANDSHAKE);
    assert_memory_equal(ev[0].peer, p->spub, 32);
    n = take(p->c, buf);
    assert_int_equal(n, 2 + 64 + strlen(hello));
    assert_int_equal(feed_all(p->s, buf, n, ev, 2), 1);
    assert_int_equal(ev[0].type, FP_CHAN_EV_HANDSHAKE);
    assert_memory_equal(ev[0].peer, p->cpub, 32);
    assert_int_equal(ev[0].hello_len, strlen(hello));
    assert_memory_equal(ev[0].hello, hello, strlen(hello));
    assert_memory_equal(fp_chan_handshake_hash(p->c), fp_chan_handshake_hash(p->s), 32);
    /* Nothing more to send on either side, even after another (empty) feed. */
    assert_int_equal(feed_all(p->c, NULL, 0, ev, 2), 0);
    assert_int_equal(take(p->c, buf), 0);
    assert_int_equal(take(p->s, buf), 0);
}

static void pair_free(struct pair *p)
{
    fp_chan_free(p->c);
    fp_chan_free(p->s);
}

static struct fp_msg_header hdr(int type, uint64_t len)
{
    struct fp_msg_header h = {
        .type = (uint8_t)type, .phase = 1, .client = 9, .run = 42, .round = 3, .len = len};
    return h;
}

/* Sends one message from `from`; returns its wire bytes (caller frees). */
static uint8_t *send_msg(struct fp_chan *from, struct fp_msg_header h, const void *payload,
                         size_t *n)
{
    size_t cap = (size_t)fp_chan_wire_size(h.len);
    uint8_t *out = malloc(cap);
    assert_int_equal(fp_chan_send(from, &h, payload, out, cap, n), 0);
    assert_int_equal(*n, cap);
    return out;
}

static void welcome(struct pair *p)
{
    struct fp_chan_event ev[2];
    size_t n;
    fp_chan_admit(p->s);
    struct fp_msg_header w = hdr(FP_MSG_WELCOME, 5);
    uint8_t *wire = send_msg(p->s, w, "hello", &n);
    fp_chan_expect(p->c, &w, FP_MSG_CONTROL_CAP, NULL);
    assert_int_equal(feed_all(p->c, wire, n, ev, 2), 1);
    assert_int_equal(ev[0].header.type, FP_MSG_WELCOME);
    assert_memory_equal(ev[0].payload, "hello", 5);
    free(ev[0].payload);
    free(wire);
}

static void test_channel_roundtrip(void **state)
{
    (void)state;
    struct pair p;
    handshake(&p, "");
    welcome(&p);
    /* Payloads around the record size, and a whole MLP model. */
    const size_t sizes[] = {0, 1, 65519, 65520, 200000, 636040};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        for (int dir = 0; dir < 2; dir++) {
            struct fp_chan *from = dir ? p.s : p.c, *to = dir ? p.c : p.s;
            uint8_t *payload = malloc(sizes[i] + 1), *dst = malloc(sizes[i] + 1);
            for (size_t j = 0; j < sizes[i]; j++)
                payload[j] = (uint8_t)(j * 131 + i + dir);
            struct fp_msg_header h = hdr(dir ? FP_MSG_BROADCAST : FP_MSG_UPLOAD, sizes[i]);
            size_t n;
            uint8_t *wire = send_msg(from, h, payload, &n);
            /* Ciphertext, not plaintext, on the wire. */
            if (sizes[i] >= 64)
                assert_null(memmem(wire, n, payload, 64));
            struct fp_chan_event ev[2];
            /* Half the messages into the caller's buffer, half allocated;
             * fed in awkward pieces. */
            fp_chan_expect(to, &h, 0, i % 2 ? dst : NULL);
            int got = 0;
            for (size_t off = 0; off < n;) {
                size_t k = n - off < 1000 + i * 7 ? n - off : 1000 + i * 7;
                int rc = feed_all(to, wire + off, k, ev + got, 2 - got);
                assert_true(rc >= 0);
                got += rc;
                off += k;
            }
            assert_int_equal(got, 1);
            assert_int_equal(ev[0].header.len, sizes[i]);
            assert_int_equal(ev[0].header.type, h.type);
            if (sizes[i]) {
                assert_memory_equal(ev[0].payload, payload, sizes[i]);
                if (i % 2)
                    assert_ptr_equal(ev[0].payload, dst);
                else
                    free(ev[0].payload);
            }
            assert_int_equal(fp_chan_eof(to), 0);
            free(wire);
            free(payload);
            free(dst);
        }
    }
    pair_free(&p);
}

/* Two messages in one feed, heartbeats between. */
static void test_channel_back_to_back(void **state)
{
    (void)state;
    struct pair p;
    handshake(&p, "x");
    welcome(&p);
    size_t n1, n2, n3;
    struct fp_msg_header a = hdr(FP_MSG_UPLOAD, 3), hb = {.type = FP_MSG_HEARTBEAT};
    uint8_t *w1 = send_msg(p.c, a, "abc", &n1), *w2 = send_msg(p.c, hb, NULL, &n2),
            *w3 = send_msg(p.c, a, "def", &n3);
    uint8_t all[1000];
    memcpy(all, w1, n1);
    memcpy(all + n1, w2, n2);
    memcpy(all + n1 + n2, w3, n3);
    struct fp_chan_event ev;
    size_t used;
    fp_chan_expect(p.s, &a, 0, NULL);
    assert_int_equal(fp_chan_feed(p.s, all, n1 + n2 + n3, &used, &ev), 0);
    assert_int_equal(ev.type, FP_CHAN_EV_MESSAGE);
    assert_memory_equal(ev.payload, "abc", 3);
    free(ev.payload);
    size_t off = used;
    assert_int_equal(fp_chan_feed(p.s, all + off, n1 + n2 + n3 - off, &used, &ev), 0);
    assert_int_equal(ev.header.type, FP_MSG_HEARTBEAT); /* always accepted */
    off += used;
    /* The expectation was used by the first upload: set it again. */
    fp_chan_expect(p.s, &a, 0, NULL);
    assert_int_equal(fp_chan_feed(p.s, all + off, n1 + n2 + n3 - off, &used, &ev), 0);
    assert_memory_equal(ev.payload, "def", 3);
    free(ev.payload);
    assert_int_equal(off + used, n1 + n2 + n3);
    free(w1);
    free(w2);
    free(w3);
    pair_free(&p);
}

/* ---- negative tests: the handshake ---- */

static void test_bad_magic(void **state)
{
    (void)state;
    uint8_t k[32], pub[32];
    keys(k, pub, 2);
    struct fp_chan *s = fp_chan_new(FP_CHAN_SERVER, k, NULL, NULL, 0);
    struct fp_chan_event ev;
    assert_int_equal(feed_all(s, (const uint8_t *)"GET / HTTP/1.1\r\n", 16, &ev, 1), FP_EFORMAT);
    assert_non_null(strstr(fp_chan_error(s), "not a fedpress/1 client"));
    /* Dead for good. */
    assert_int_equal(feed_all(s, (const uint8_t *)"FPN\x01", 4, &ev, 1), FP_EFORMAT);
    fp_chan_free(s);
    s = fp_chan_new(FP_CHAN_SERVER, k, NULL, NULL, 0);
    assert_int_equal(feed_all(s, (const uint8_t *)"FPN\x02", 4, &ev, 1), FP_EFORMAT);
    fp_chan_free(s);
}

/* A flipped bit in each handshake message is refused by its reader, on
 * the wire (length prefixes and all). */
static void test_handshake_bad_tag(void **state)
{
    (void)state;
    for (int msg = 1; msg <= 3; msg++) {
        for (int where = 0; where < 2; where++) {
            struct pair p;
            keys(p.ckey, p.cpub, 1);
            keys(p.skey, p.spub, 2);
            p.c = fp_chan_new(FP_CHAN_CLIENT, p.ckey, p.spub, (const uint8_t *)"hi", 2);
            p.s = fp_chan_new(FP_CHAN_SERVER, p.skey, NULL, NULL, 0);
            uint8_t buf[1000];
            struct fp_chan_event ev[2];
            size_t n = take(p.c, buf);
            /* where 0: the last byte (a tag); where 1: the first key byte. */
            size_t start = 6;
            if (msg == 1)
                buf[where ? start : n - 1] ^= 0x80;
            int rc = feed_all(p.s, buf, n, ev, 2);
            if (msg == 1) {
                assert_int_equal(rc, FP_EFORMAT);
                goto next;
            }
            n = take(p.s, buf);
            if (msg == 2)
                buf[where ? 2 : n - 1] ^= 0x80;
            rc = feed_all(p.c, buf, n, ev, 2);
            if (msg == 2) {
                assert_int_equal(rc, FP_EFORMAT);
                n = take(p.c, buf);
                assert_int_equal(n, 0); /* no message 3 after a bad message 2 */
                goto next;
            }
            n = take(p.c, buf);
            buf[where ? 2 : n - 1] ^= 0x80; /* the encrypted static key, or the payload's tag */
            assert_int_equal(feed_all(p.s, buf, n, ev, 2), FP_EFORMAT);
            assert_non_null(strstr(fp_chan_error(p.s), "authenticate"));
        next:
            pair_free(&p);
        }
    }
}

/* Every small-order point of Curve25519 (the u-coordinates of the points of
 * order 1, 2, 4 and 8, their non-canonical encodings >= p, and each with
 * the unused top bit set), as an ephemeral key in message 1 and 2, as the
 * client's static key in message 3, and as a pinned server key. */
static const char *const low_order[] = {
    "0000000000000000000000000000000000000000000000000000000000000000", /* 0 */
    "0100000000000000000000000000000000000000000000000000000000000000", /* 1 */
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", /* order 8 */
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157", /* order 8 */
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* p - 1 */
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* p */
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* p + 1 */
};

static void test_low_order_keys(void **state)
{
    (void)state;
    for (size_t i = 0; i < 2 * sizeof low_order / sizeof *low_order; i++) {
        uint8_t bad[32];
        key_from(bad, low_order[i / 2]);
        if (i % 2)
            bad[31] |= 0x80; /* X25519 ignores the top bit: still low order */
        for (int msg = 1; msg <= 4; msg++) {
            struct pair p;
            keys(p.ckey, p.cpub, 1);
            keys(p.skey, p.spub, 2);
            p.s = fp_chan_new(FP_CHAN_SERVER, p.skey, NULL, NULL, 0);
            uint8_t buf[1000];
            struct fp_chan_event ev[2];
            size_t n;
            if (msg == 4) { /* a client pinning a low-order "server key" */
                p.c = fp_chan_new(FP_CHAN_CLIENT, p.ckey, bad, NULL, 0);
                assert_int_equal(feed_all(p.c, NULL, 0, ev, 2), FP_EFORMAT);
                assert_non_null(strstr(fp_chan_error(p.c), "low-order"));
                pair_free(&p);
                continue;
            }
            p.c = fp_chan_new(FP_CHAN_CLIENT, p.ckey, p.spub, NULL, 0);
            n = take(p.c, buf);
            if (msg == 1) { /* the client's ephemeral key */
                memcpy(buf + 6, bad, 32);
                assert_int_equal(feed_all(p.s, buf, n, ev, 2), FP_EFORMAT);
                assert_non_null(strstr(fp_chan_error(p.s), "low-order"));
                pair_free(&p);
                continue;
            }
            assert_int_equal(feed_all(p.s, buf, n, ev, 2), 0);
            n = take(p.s, buf);
            if (msg == 2) { /* the server's ephemeral key */
                memcpy(buf + 2, bad, 32);
                assert_int_equal(feed_all(p.c, buf, n, ev, 2), FP_EFORMAT);
                assert_non_null(strstr(fp_chan_error(p.c), "low-order"));
                pair_free(&p);
                continue;
            }
            pair_free(&p);
            /* msg 3: the client's static key, encrypted in message 3. Built
             * with the handshake API: the initiator announces `bad` as its
             * static key (its DH se still uses its real secret). */
            struct fp_noise_handshake ini, res;
            struct fp_error err = {0};
            uint8_t m[200], pl[200];
            size_t k;
            fp_noise_handshake_init(&ini, 1, (const uint8_t *)"p", 1, p.ckey, p.spub);
            fp_noise_handshake_init(&res, 0, (const uint8_t *)"p", 1, p.skey, NULL);
            memcpy(ini.s_pub, bad, 32);
            assert_int_equal(fp_noise_handshake_write(&ini, NULL, 0, m, sizeof m, &k, &err), 0);
            assert_int_equal(fp_noise_handshake_read(&res, m, k, pl, sizeof pl, &k, &err), 0);
            assert_int_equal(fp_noise_handshake_write(&res, NULL, 0, m, sizeof m, &k, &err), 0);
            assert_int_equal(fp_noise_handshake_read(&ini, m, k, pl, sizeof pl, &k, &err), 0);
            assert_int_equal(fp_noise_handshake_write(&ini, NULL, 0, m, sizeof m, &k, &err), 0);
            assert_int_equal(fp_noise_handshake_read(&res, m, k, pl, sizeof pl, &k, &err),
                             FP_EFORMAT);
            assert_non_null(strstr(err.msg, "low-order"));
            assert_false(fp_noise_handshake_done(&res));
        }
    }
}

/* A client that pinned another server's key: the server cannot read
 * message 1 (es differs), so nothing of the client is learnt. */
static void test_wrong_pinned_key(void **state)
{
    (void)state;
    uint8_t ck[32], cpub[32], sk[32], spub[32], other[32], opub[32];
    keys(ck, cpub, 1);
    keys(sk, spub, 2);
    keys(other, opub, 3);
    struct fp_chan *c = fp_chan_new(FP_CHAN_CLIENT, ck, opub, NULL, 0);
    struct fp_chan *s = fp_chan_new(FP_CHAN_SERVER, sk, NULL, NULL, 0);
    uint8_t buf[200];
    struct fp_chan_event ev[2];
    size_t n = take(c, buf);
    assert_int_equal(feed_all(s, buf, n, ev, 2), FP_EFORMAT);
    assert_non_null(strstr(fp_chan_error(s), "message 1 does not authenticate"));
    n = take(s, buf);
    assert_int_equal(n, 0);
    fp_chan_free(c);
    fp_chan_free(s);
}

/* XK: message 1 can be replayed (the server answers, learning nothing and
 * giving nothing); message 3 cannot, because it is encrypted under keys
 * mixed from the server's fresh ephemeral key of that session (ee, then
 * se): on a new server session a recorded message 3 fails its tag, and no
 * handshake completes, so a recorded client can never be impersonated. */
static void test_replayed_message3(void **state)
{
    (void)state;
    struct pair p;
    handshake(&p, "");
    pair_free(&p);
    /* Record a whole client flight. */
    keys(p.ckey, p.cpub, 1);
    keys(p.skey, p.spub, 2);
    p.c = fp_chan_new(FP_CHAN_CLIENT, p.ckey, p.spub, (const uint8_t *)"hello", 5);
    p.s = fp_chan_new(FP_CHAN_SERVER, p.skey, NULL, NULL, 0);
    uint8_t m1[200], m2[200], m3[200];
    struct fp_chan_event ev[2];
    size_t n1 = take(p.c, m1);
    assert_int_equal(feed_all(p.s, m1, n1, ev, 2), 0);
    size_t n2 = take(p.s, m2);
    assert_int_equal(feed_all(p.c, m2, n2, ev, 2), 1);
    size_t n3 = take(p.c, m3);
    assert_int_equal(feed_all(p.s, m3, n3, ev, 2), 1); /* the real session */
    pair_free(&p);
    /* Replay to a new server session, twice. */
    for (int t = 0; t < 2; t++) {
        struct fp_chan *s = fp_chan_new(FP_CHAN_SERVER, p.skey, NULL, NULL, 0);
        assert_int_equal(feed_all(s, m1, n1, ev, 2), 0); /* accepted: XK allows it */
        uint8_t fresh[200];
        size_t nf = take(s, fresh);
        assert_int_equal(nf, n2);
        assert_memory_not_equal(fresh, m2, n2); /* a new ephemeral key */
        assert_int_equal(feed_all(s, m3, n3, ev, 2), FP_EFORMAT);
        assert_non_null(strstr(fp_chan_error(s), "message 3"));
        fp_chan_free(s);
    }
}

/* Handshake messages 1 and 2 are exactly 48 bytes, 3 at least 64. */
static void test_handshake_lengths(void **state)
{
    (void)state;
    uint8_t k[32], pub[32];
    keys(k, pub, 2);
    const uint8_t bad1[] = {'F', 'P', 'N', 1, 0x00, 0x31};
    const uint8_t bad2[] = {'F', 'P', 'N', 1, 0xff, 0xff};
    const uint8_t *cases[] = {bad1, bad2};
    for (int i = 0; i < 2; i++) {
        struct fp_chan *s = fp_chan_new(FP_CHAN_SERVER, k, NULL, NULL, 0);
        struct fp_chan_event ev;
        assert_int_equal(feed_all(s, cases[i], 6, &ev, 1), FP_EFORMAT);
        assert_non_null(strstr(fp_chan_error(s), "expected 48"));
        fp_chan_free(s);
    }
    /* Cut short: the connection ends inside message 1. */
    struct fp_chan *s = fp_chan_new(FP_CHAN_SERVER, k, NULL, NULL, 0);
    struct fp_chan_event ev;
    assert_int_equal(feed_all(s, (const uint8_t *)"FPN\x01\x00\x30\x01", 7, &ev, 1), 0);
    assert_int_equal(fp_chan_eof(s), FP_EFORMAT);
    assert_non_null(strstr(fp_chan_error(s), "during the handshake"));
    fp_chan_free(s);
}

/* ---- negative tests: records ---- */

/* Three client messages' wire bytes and the record boundaries. */
static void test_record_tampering(void **state)
{
    (void)state;
    for (int kind = 0; kind < 6; kind++) {
        struct pair p;
        handshake(&p, "");
        welcome(&p);
        struct fp_msg_header h = hdr(FP_MSG_UPLOAD, 3);
        size_t n1, n2;
        uint8_t *r1 = send_msg(p.c, h, "one", &n1), *r2 = send_msg(p.c, h, "two", &n2);
        struct fp_chan_event ev[4];
        fp_chan_expect(p.s, &h, 0, NULL);
        int rc = 0;
        switch (kind) {
        case 0: /* a flipped byte in the payload record's ciphertext */
            r1[n1 - 5] ^= 0x01;
            rc = feed_all(p.s, r1, n1, ev, 4);
            break;
        case 1: /* a flipped byte in a length prefix: the record no longer
                   ends where its tag is */
            r1[1] ^= 0x01;
            rc = feed_all(p.s, r1, n1, ev, 4);
            if (rc >= 0) {
                rc = feed_all(p.s, r2, n2, ev, 4);
            }
            break;
        case 2: /* duplicated: the same message again */
            assert_int_equal(feed_all(p.s, r1, n1, ev, 4), 1);
            free(ev[0].payload);
            fp_chan_expect(p.s, &h, 0, NULL);
            rc = feed_all(p.s, r1, n1, ev, 4);
            break;
        case 3: /* reordered: the second message first */ rc = feed_all(p.s, r2, n2, ev, 4); break;
        case 4: { /* reflected: the client's own record back to the client */
            struct fp_msg_header b = hdr(FP_MSG_BROADCAST, 3);
            fp_chan_expect(p.c, &b, 0, NULL);
            rc = feed_all(p.c, r1, n1, ev, 4);
            break;
        }
        case 5: /* a record shorter than its tag */
            rc = feed_all(p.s, (const uint8_t *)"\x00\x0f", 2, ev, 4);
            assert_non_null(strstr(fp_chan_error(p.s), "shorter than its tag"));
            break;
        }
        if (kind != 5)
            assert_non_null(strstr(fp_chan_error(kind == 4 ? p.c : p.s), "authenticate"));
        assert_int_equal(rc, FP_EFORMAT);
        free(r1);
        free(r2);
        pair_free(&p);
    }
}

/* Truncation: a connection that ends inside a record or a message. */
static void test_truncated(void **state)
{
    (void)state;
    for (int cut = 0; cut < 3; cut++) {
        struct pair p;
        handshake(&p, "");
        welcome(&p);
        struct fp_msg_header h = hdr(FP_MSG_UPLOAD, 100000); /* two payload records */
        uint8_t *payload = calloc(1, 100000);
        size_t n;
        uint8_t *w = send_msg(p.c, h, payload, &n);
        struct fp_chan_event ev[2];
        fp_chan_expect(p.s, &h, 0, NULL);
        /* cut 0: inside the header record; 1: inside a payload record;
         * 2: between the two payload records. */
        size_t keep = cut == 0 ? 20 : cut == 1 ? 3000 : 2 + 48 + 2 + 65519 + 16;
        assert_int_equal(feed_all(p.s, w, keep, ev, 2), 0);
        assert_int_equal(fp_chan_eof(p.s), FP_EFORMAT);
        assert_non_null(strstr(fp_chan_error(p.s), cut == 2 ? "in the middle of a message"
                                                            : "in the middle of a record"));
        free(w);
        free(payload);
        pair_free(&p);
    }
}

/* A header whose declared length passes the caller's cap fails before any
 * allocation: a length of 2^62 would make malloc fail with FP_ENOMEM, so
 * FP_EFORMAT naming the cap shows the check came first. */
static void test_length_over_cap(void **state)
{
    (void)state;
    const uint64_t lens[] = {(uint64_t)1 << 62, 1001, UINT64_MAX};
    for (int i = 0; i < 3; i++) {
        for (int exact = 0; exact < 2; exact++) {
            struct pair p;
            handshake(&p, "");
            welcome(&p);
            struct fp_msg_header h = hdr(FP_MSG_UPLOAD, lens[i]);
            struct fp_chan_sender s;
            uint8_t out[100];
            size_t n;
            fp_chan_send_begin(&s, &h, NULL);
            /* Room for the header record only. */
            assert_int_equal(fp_chan_send_next(p.c, &s, out, 50, &n), 0);
            assert_int_equal(n, 50);
            struct fp_msg_header want = hdr(FP_MSG_UPLOAD, 1000);
            fp_chan_expect(p.s, &want, exact ? 0 : 1000, NULL);
            struct fp_chan_event ev[2];
            assert_int_equal(feed_all(p.s, out, n, ev, 2), FP_EFORMAT);
            assert_non_null(strstr(fp_chan_error(p.s), exact ? "expected 1000" : "at most 1000"));
            pair_free(&p);
        }
    }
    /* An error message over FP_MSG_CONTROL_CAP, even unexpected. */
    struct pair p;
    handshake(&p, "");
    welcome(&p);
    struct fp_msg_header h = {.type = FP_MSG_ERROR, .len = FP_MSG_CONTROL_CAP + 1};
    struct fp_chan_sender s;
    uint8_t out[100];
    size_t n;
    fp_chan_send_begin(&s, &h, NULL);
    assert_int_equal(fp_chan_send_next(p.c, &s, out, 50, &n), 0);
    struct fp_chan_event ev[2];
    assert_int_equal(feed_all(p.s, out, n, ev, 2), FP_EFORMAT);
    assert_non_null(strstr(fp_chan_error(p.s), "more than the 65536"));
    pair_free(&p);
}

/* Message headers the receiver does not wait for. */
static void test_unexpected_messages(void **state)
{
    (void)state;
    struct pair p;
    struct fp_chan_event ev[2];
    size_t n;
    uint8_t *w;
    /* No expectation set. */
    handshake(&p, "");
    welcome(&p);
    w = send_msg(p.c, hdr(FP_MSG_UPLOAD, 1), "x", &n);
    assert_int_equal(feed_all(p.s, w, n, ev, 2), FP_EFORMAT);
    assert_non_null(strstr(fp_chan_error(p.s), "nothing waits for"));
    free(w);
    pair_free(&p);
    /* Another round than the one expected. */
    handshake(&p, "");
    welcome(&p);
    struct fp_msg_header want = hdr(FP_MSG_UPLOAD, 1), got = want;
    got.round = 2;
    w = send_msg(p.c, got, "x", &n);
    fp_chan_expect(p.s, &want, 0, NULL);
    assert_int_equal(feed_all(p.s, w, n, ev, 2), FP_EFORMAT);
    assert_non_null(strstr(fp_chan_error(p.s), "round 2, expected round 3"));
    free(w);
    pair_free(&p);
    /* A server whose first message is not the welcome: the channel will not
     * even send it, and a client refuses it. */
    handshake(&p, "");
    fp_chan_admit(p.s);
    struct fp_msg_header b = hdr(FP_MSG_BROADCAST, 1);
    uint8_t out[200];
    assert_int_equal(fp_chan_send(p.s, &b, "x", out, sizeof out, &n), FP_EINVAL);
    pair_free(&p);
    /* The client may not talk before it is admitted (an error message is
     * the one thing a fedpress client may send before its welcome). */
    handshake(&p, "");
    w = send_msg(p.c, hdr(FP_MSG_ERROR, 1), "x", &n);
    assert_int_equal(feed_all(p.s, w, n, ev, 2), FP_EFORMAT);
    assert_non_null(strstr(fp_chan_error(p.s), "before it was admitted"));
    free(w);
    pair_free(&p);
}

/* fp_chan_expect_any: the fields left open take any value (a daemon's
 * client learns the run and its id from the welcome, and cannot know the
 * round of the next broadcast), the others are still compared, and the
 * length is still capped before anything is allocated. */
static void test_expect_any(void **state)
{
    (void)state;
    struct pair p;
    struct fp_chan_event ev[2];
    size_t n;
    uint8_t *w, dst[16];
    /* The welcome of an unknown run and client id. */
    handshake(&p, "");
    fp_chan_admit(p.s);
    struct fp_msg_header h = hdr(FP_MSG_WELCOME, 5);
    w = send_msg(p.s, h, "hello", &n);
    const struct fp_msg_header any_welcome = {.type = FP_MSG_WELCOME, .phase = 1, .round = 3};
    fp_chan_expect_any(p.c, &any_welcome, FP_CHAN_ANY_RUN | FP_CHAN_ANY_CLIENT, 16, dst);
    assert_int_equal(feed_all(p.c, w, n, ev, 2), 1);
    assert_int_equal(ev[0].header.run, 42);
    assert_int_equal(ev[0].header.client, 9);
    assert_ptr_equal(ev[0].payload, dst);
    free(w);
    /* Any type and round of run 42; the payload lands in dst. */
    const struct fp_msg_header run42 = {.run = 42};
    const unsigned open =
        FP_CHAN_ANY_TYPE | FP_CHAN_ANY_ROUND | FP_CHAN_ANY_PHASE | FP_CHAN_ANY_CLIENT;
    fp_chan_expect_any(p.c, &run42, open, sizeof dst, dst);
    w = send_msg(p.s, hdr(FP_MSG_BROADCAST, 3), "abc", &n);
    assert_int_equal(feed_all(p.c, w, n, ev, 2), 1);
    assert_int_equal(ev[0].header.type, FP_MSG_BROADCAST);
    assert_int_equal(ev[0].header.round, 3);
    assert_memory_equal(dst, "abc", 3);
    free(w);
    /* A field not left open is still compared: another run is refused. */
    struct fp_msg_header other = hdr(FP_MSG_RESULT, 1);
    other.run = 43;
    fp_chan_expect_any(p.c, &run42, open, sizeof dst, dst);
    w = send_msg(p.s, other, "x", &n);
    assert_int_equal(feed_all(p.c, w, n, ev, 2), FP_EFORMAT);
    assert_non_null(strstr(fp_chan_error(p.c), "run 43, expected run 42"));
    free(w);
    pair_free(&p);
    /* The length is never open: over max_len is refused before allocation. */
    handshake(&p, "");
    welcome(&p);
    fp_chan_expect_any(p.c, &run42, open, sizeof dst, dst);
    struct fp_msg_header big = hdr(FP_MSG_BROADCAST, (uint64_t)1 << 40);
    struct fp_chan_sender snd;
    uint8_t out[100];
    fp_chan_send_begin(&snd, &big, NULL);
    assert_int_equal(fp_chan_send_next(p.s, &snd, out, 50, &n), 0);
    assert_int_equal(feed_all(p.c, out, n, ev, 2), FP_EFORMAT);
    assert_non_null(strstr(fp_chan_error(p.c), "at most 16"));
    pair_free(&p);
}

/* A key that is not admitted gets one error message, then nothing. */
static void test_reject(void **state)
{
    (void)state;
    struct pair p;
    handshake(&p, "");
    uint8_t out[500];
    size_t n;
    const char *why = "key not in the allow-list";
    assert_int_equal(fp_chan_reject(p.s, why, out, sizeof out, &n), 0);
    assert_int_equal(n, 2 + 32 + strlen(why) + 16); /* one record */
    /* Nothing more may be sent... */
    struct fp_msg_header w = hdr(FP_MSG_WELCOME, 1);
    uint8_t more[200];
    size_t m;
    assert_int_equal(fp_chan_send(p.s, &w, "x", more, sizeof more, &m), FP_EINVAL);
    assert_int_equal(fp_chan_reject(p.s, why, more, sizeof more, &m), FP_EINVAL);
    /* ... or received. */
    struct fp_chan_event ev[2];
    assert_int_equal(feed_all(p.s, (const uint8_t *)"\x00\x20", 2, ev, 2), FP_EFORMAT);
    /* The client reads the reason, whatever it expected. */
    fp_chan_expect(p.c, &w, FP_MSG_CONTROL_CAP, NULL);
    assert_int_equal(feed_all(p.c, out, n, ev, 2), 1);
    assert_int_equal(ev[0].header.type, FP_MSG_ERROR);
    assert_memory_equal(ev[0].payload, why, strlen(why));
    free(ev[0].payload);
    assert_int_equal(fp_chan_eof(p.c), 0);
    pair_free(&p);
}

/* A client sends nothing but an error message before its welcome
 * (docs/protocol.md section 5): fp_chan_send refuses it, instead of putting
 * bytes on the wire that kill the connection at a server still deciding on
 * the key. */
static void test_client_waits_for_welcome(void **state)
{
    (void)state;
    struct pair p;
    handshake(&p, "");
    uint8_t out[200];
    size_t n;
    struct fp_msg_header u = hdr(FP_MSG_UPLOAD, 1);
    assert_int_equal(fp_chan_send(p.c, &u, "x", out, sizeof out, &n), FP_EINVAL);
    welcome(&p);
    assert_int_equal(fp_chan_send(p.c, &u, "x", out, sizeof out, &n), 0);
    struct fp_chan_event ev[2];
    fp_chan_expect(p.s, &u, 0, NULL);
    assert_int_equal(feed_all(p.s, out, n, ev, 2), 1);
    assert_memory_equal(ev[0].payload, "x", 1);
    free(ev[0].payload);
    pair_free(&p);
}

/* A client whose first flight fails (a low-order pinned key) has nothing to
 * send: fp_chan_output used to hand over the 4-byte magic of a dead channel. */
static void test_dead_client_sends_nothing(void **state)
{
    (void)state;
    uint8_t ckey[32], cpub[32], bad[32] = {0};
    keys(ckey, cpub, 1);
    struct fp_chan *c = fp_chan_new(FP_CHAN_CLIENT, ckey, bad, NULL, 0);
    assert_non_null(c);
    size_t n = 99;
    fp_chan_output(c, &n);
    assert_int_equal(n, 0);
    assert_non_null(strstr(fp_chan_error(c), "low-order"));
    fp_chan_free(c);
}

/* A declared length near 2^64: fp_chan_wire_size used to wrap to a few
 * bytes, so fp_chan_send passed its room check, sealed the header alone
 * (spending a nonce) and returned 0 as if the message were sent. */
static void test_send_huge_length(void **state)
{
    (void)state;
    assert_true(fp_chan_wire_size(UINT64_MAX) == UINT64_MAX);
    assert_true(fp_chan_wire_size(UINT64_MAX - 10) == UINT64_MAX);
    assert_true(fp_chan_wire_size(0) == 50);
    assert_true(fp_chan_wire_size(65519) == 50 + 65519 + 18);
    assert_true(fp_chan_wire_size(65520) == 50 + 65520 + 36);
    struct pair p;
    handshake(&p, "");
    welcome(&p);
    uint8_t out[1000], payload[1] = {0};
    size_t n = 0;
    struct fp_msg_header h = hdr(FP_MSG_UPLOAD, UINT64_MAX - 10);
    assert_int_equal(fp_chan_send(p.c, &h, payload, out, sizeof out, &n), FP_EINVAL);
    /* Nothing was sealed: the next message is record 1 for the server. */
    struct fp_msg_header u = hdr(FP_MSG_UPLOAD, 1);
    assert_int_equal(fp_chan_send(p.c, &u, "y", out, sizeof out, &n), 0);
    struct fp_chan_event ev[2];
    fp_chan_expect(p.s, &u, 0, NULL);
    assert_int_equal(feed_all(p.s, out, n, ev, 2), 1);
    assert_memory_equal(ev[0].payload, "y", 1);
    free(ev[0].payload);
    pair_free(&p);
}

/* An error message that arrives while the caller waits with its own buffer
 * goes to a buffer of its own (the caller frees it), not into dst. */
static void test_error_payload_not_in_dst(void **state)
{
    (void)state;
    struct pair p;
    handshake(&p, "");
    welcome(&p);
    uint8_t dst[8] = {0}, out[200];
    size_t n;
    struct fp_msg_header u = hdr(FP_MSG_UPLOAD, 8), e = {.type = FP_MSG_ERROR, .len = 20};
    assert_int_equal(fp_chan_send(p.c, &e, "a reason of 20 bytes", out, sizeof out, &n), 0);
    fp_chan_expect(p.s, &u, 0, dst);
    struct fp_chan_event ev[2];
    assert_int_equal(feed_all(p.s, out, n, ev, 2), 1);
    assert_int_equal(ev[0].header.type, FP_MSG_ERROR);
    assert_ptr_not_equal(ev[0].payload, dst);
    assert_memory_equal(ev[0].payload, "a reason of 20 bytes", 20);
    assert_memory_equal(dst, "\0\0\0\0\0\0\0\0", 8); /* dst untouched */
    free(ev[0].payload);
    pair_free(&p);
}

/* The largest hello (message 3 of exactly 65535 bytes) goes through; one
 * byte more is refused when the client is made. */
static void test_hello_max(void **state)
{
    (void)state;
    static char hello[FP_CHAN_HELLO_MAX + 2];
    memset(hello, 'h', FP_CHAN_HELLO_MAX);
    hello[FP_CHAN_HELLO_MAX] = '\0';
    assert_int_equal(FP_CHAN_HELLO_MAX + 64, 65535);
    struct pair p;
    handshake(&p, hello);
    pair_free(&p);
    uint8_t k[32] = {1}, pub[32];
    fp_noise_public_key(k, pub);
    assert_null(fp_chan_new(FP_CHAN_CLIENT, k, pub, (const uint8_t *)hello, FP_CHAN_HELLO_MAX + 1));
}

/* A handshake that failed stays failed (Noise 5.3): a well-formed message 1
 * after a truncated one, or after one with a bad tag, is refused, and the
 * secrets are gone. Before, a truncated message left the state as it was and
 * the genuine one went through. */
static void test_handshake_dead_after_error(void **state)
{
    (void)state;
    uint8_t ck[32], cp[32], sk[32], sp[32], m[200], pl[200];
    keys(ck, cp, 1);
    keys(sk, sp, 2);
    for (int how = 0; how < 2; how++) {
        struct fp_noise_handshake ini, res;
        struct fp_error err = {0};
        size_t k, pk;
        fp_noise_handshake_init(&ini, 1, (const uint8_t *)"p", 1, ck, sp);
        fp_noise_handshake_init(&res, 0, (const uint8_t *)"p", 1, sk, NULL);
        assert_int_equal(fp_noise_handshake_write(&ini, NULL, 0, m, sizeof m, &k, &err), 0);
        uint8_t bad[200];
        memcpy(bad, m, k);
        bad[k - 1] ^= (uint8_t)how; /* 0: truncated below; 1: a flipped tag bit */
        assert_int_equal(
            fp_noise_handshake_read(&res, bad, how ? k : k - 1, pl, sizeof pl, &pk, &err),
            FP_EFORMAT);
        assert_int_equal(fp_noise_handshake_read(&res, m, k, pl, sizeof pl, &pk, &err), FP_EINVAL);
        assert_int_equal(fp_noise_handshake_write(&res, NULL, 0, m, sizeof m, &k, &err), FP_EINVAL);
        assert_false(fp_noise_handshake_done(&res));
        uint8_t zero[32] = {0};
        assert_memory_equal(res.s_priv, zero, 32);
        fp_noise_handshake_wipe(&ini);
        fp_noise_handshake_wipe(&res);
    }
}

/* One message at a time per direction: a heartbeat (or any message) sent
 * while a long message is still going out record by record is refused.
 * Before, its records went out between the payload's, and the receiver,
 * reassembling the payload, took the heartbeat's authenticated bytes as
 * payload: a model silently altered, and the stream out of step. */
static void test_send_one_message_at_a_time(void **state)
{
    (void)state;
    struct pair p;
    handshake(&p, "");
    welcome(&p);
    size_t len = 100000, n, m, total = 0;
    uint8_t *model = malloc(len), *wire = malloc(300000), hb_out[200];
    for (size_t i = 0; i < len; i++)
        model[i] = (uint8_t)(i * 7);
    struct fp_msg_header b = hdr(FP_MSG_BROADCAST, len), hb = {.type = FP_MSG_HEARTBEAT};
    struct fp_chan_sender s;
    fp_chan_send_begin(&s, &b, model);
    /* The header and the first payload record. */
    assert_int_equal(fp_chan_send_next(p.s, &s, wire, 2 + 48 + FP_CHAN_RECORD_WIRE_MAX, &n), 0);
    total += n;
    /* A heartbeat now would cut into the broadcast. */
    int rc = fp_chan_send(p.s, &hb, NULL, hb_out, sizeof hb_out, &m);
    if (rc == 0) { /* the old behaviour: its bytes go out between the payload's */
        memcpy(wire + total, hb_out, m);
        total += m;
    }
    assert_int_equal(fp_chan_send_next(p.s, &s, wire + total, 300000 - total, &n), 1);
    total += n;
    fp_chan_expect(p.c, &b, 0, NULL);
    struct fp_chan_event ev[3];
    int k = feed_all(p.c, wire, total, ev, 3);
    assert_int_equal(k, 1);
    assert_int_equal(ev[0].header.type, FP_MSG_BROADCAST);
    assert_memory_equal(ev[0].payload, model, len); /* intact */
    free(ev[0].payload);
    assert_int_equal(rc, FP_EINVAL);
    /* Once the broadcast is out, the heartbeat may go. */
    assert_int_equal(fp_chan_send(p.s, &hb, NULL, hb_out, sizeof hb_out, &m), 0);
    free(model);
    free(wire);
    pair_free(&p);
}

/* Handshake messages reflected to their sender: a client's message 1 comes
 * back as its message 2 (same length, its own ephemeral key: ee is then a
 * DH of its key with itself, and the tag was made under es); a server's
 * message 2 comes back as message 3 (too short). Both refused. */
static void test_reflected_handshake(void **state)
{
    (void)state;
    struct pair p;
    keys(p.ckey, p.cpub, 1);
    keys(p.skey, p.spub, 2);
    p.c = fp_chan_new(FP_CHAN_CLIENT, p.ckey, p.spub, NULL, 0);
    p.s = fp_chan_new(FP_CHAN_SERVER, p.skey, NULL, NULL, 0);
    uint8_t m1[200], m2[200];
    struct fp_chan_event ev[2];
    size_t n1 = take(p.c, m1);
    assert_int_equal(feed_all(p.s, m1, n1, ev, 2), 0);
    size_t n2 = take(p.s, m2);
    assert_int_equal(feed_all(p.s, m2, n2, ev, 2), FP_EFORMAT);
    assert_non_null(strstr(fp_chan_error(p.s), "handshake message 3"));
    assert_int_equal(feed_all(p.c, m1 + 4, n1 - 4, ev, 2), FP_EFORMAT);
    assert_non_null(strstr(fp_chan_error(p.c), "message 2 does not authenticate"));
    pair_free(&p);
}

/* ---- key files ---- */

static void test_keyfile(void **state)
{
    (void)state;
    char dir[] = "/tmp/fp_test_net_XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/key", dir);
    uint8_t pub[32], pub2[32], priv[32];
    struct fp_error err = {0};
    assert_int_equal(fp_keyfile_generate(path, pub, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(fp_keyfile_read(path, priv, &err), 0);
    fp_noise_public_key(priv, pub2);
    assert_memory_equal(pub, pub2, 32);
    /* Never overwritten. */
    assert_int_equal(fp_keyfile_generate(path, pub2, &err), FP_EIO);
    assert_non_null(strstr(err.msg, "never overwritten"));
    assert_int_equal(fp_keyfile_read(path, priv, &err), 0);
    fp_noise_public_key(priv, pub2);
    assert_memory_equal(pub, pub2, 32);
    /* Readable by others: refused. */
    chmod(path, 0644);
    assert_int_equal(fp_keyfile_read(path, priv, &err), FP_EIO);
    assert_non_null(strstr(err.msg, "chmod 600"));
    /* Hex round trip, and junk refused. */
    char hex[65];
    fp_key_to_hex(pub, hex);
    assert_int_equal(fp_key_from_hex(hex, pub2), 0);
    assert_memory_equal(pub, pub2, 32);
    hex[63] = 'g';
    assert_int_equal(fp_key_from_hex(hex, pub2), FP_EFORMAT);
    hex[63] = '\0';
    assert_int_equal(fp_key_from_hex(hex, pub2), FP_EFORMAT);
    unlink(path);
    rmdir(dir);
}

/* A key file with a NUL byte is refused (the parser used to stop at the NUL
 * and take the key before it, ignoring a second key or garbage after it),
 * and a FIFO is refused at once instead of blocking in open() until some
 * writer comes. */
static void test_keyfile_nul_and_fifo(void **state)
{
    (void)state;
    char dir[] = "/tmp/fp_test_net_XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/key", dir);
    const char key[] = "6379fd9984d8e48b0da52b8c73e4e18b773f78e26e1ece1f9faa06d23b82fe58\n";
    uint8_t priv[32];
    struct fp_error err = {0};
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fwrite(key, 1, sizeof key - 1, f);
    fwrite("\0", 1, 1, f);
    fwrite(key, 1, sizeof key - 1, f);
    fclose(f);
    chmod(path, 0600);
    assert_int_equal(fp_keyfile_read(path, priv, &err), FP_EFORMAT);
    assert_non_null(strstr(err.msg, "NUL"));
    unlink(path);
    assert_int_equal(mkfifo(path, 0600), 0);
    alarm(10); /* before the fix: blocked here for good; SIGALRM fails the test */
    assert_int_equal(fp_keyfile_read(path, priv, &err), FP_EFORMAT);
    alarm(0);
    assert_non_null(strstr(err.msg, "not a small regular file"));
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    assert_int_equal(fp_noise_init(), 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expect_any),
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_vector_bad_tags),
        cmocka_unit_test(test_channel_roundtrip),
        cmocka_unit_test(test_channel_back_to_back),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_handshake_bad_tag),
        cmocka_unit_test(test_low_order_keys),
        cmocka_unit_test(test_wrong_pinned_key),
        cmocka_unit_test(test_replayed_message3),
        cmocka_unit_test(test_handshake_lengths),
        cmocka_unit_test(test_record_tampering),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_length_over_cap),
        cmocka_unit_test(test_unexpected_messages),
        cmocka_unit_test(test_reject),
        cmocka_unit_test(test_client_waits_for_welcome),
        cmocka_unit_test(test_dead_client_sends_nothing),
        cmocka_unit_test(test_send_huge_length),
        cmocka_unit_test(test_error_payload_not_in_dst),
        cmocka_unit_test(test_hello_max),
        cmocka_unit_test(test_handshake_dead_after_error),
        cmocka_unit_test(test_send_one_message_at_a_time),
        cmocka_unit_test(test_reflected_handshake),
        cmocka_unit_test(test_keyfile),
        cmocka_unit_test(test_keyfile_nul_and_fifo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
