/*
 * net/channel.c — the connection state machine (see channel.h and
 * docs/protocol.md for the wire).
 *
 * Input goes through one fixed buffer of FP_CHAN_RECORD_MAX bytes: a
 * handshake message or a record that arrives in pieces is gathered there
 * whole (its length was checked first); a record that arrives whole is
 * decrypted from the caller's input. A record whose plaintext lies wholly
 * inside the payload of the message being reassembled is decrypted straight
 * into that payload (the common case for a model: no copy at all); other
 * records are decrypted into buf and parsed from there.
 */
#include "channel.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    S_MAGIC,   /* server: the client's 4 opening bytes */
    S_HS_LEN,  /* the 2-byte length of the peer's next handshake message */
    S_HS_BODY, /* its bytes */
    S_PENDING, /* server: handshake done, admission not decided */
    S_REC_LEN, /* the 2-byte length of the next record */
    S_REC_BODY,
    S_CLOSED, /* the peer sent its error message, or we rejected it */
    S_DEAD    /* an error; ch->err says which */
};

struct fp_chan {
    int role, state;
    struct fp_noise_handshake hs;
    struct fp_noise_cipher send, recv;
    uint8_t hash[FP_NOISE_HASH];
    uint8_t peer[FP_NOISE_KEY];
    uint64_t records_in; /* for error messages */
    int started;         /* client: the magic and message 1 are made */
    int welcomed;        /* client: the server's first message arrived */
    int sent_any;        /* server: the welcome (or the error) went out */
    /* The message going out record by record, until its last record: no
     * other message may start before (its records would land inside this
     * one's payload at the receiver, authenticated). */
    const struct fp_chan_sender *sending;

    /* Input: `need` bytes of the current item gathered into buf, `have` so far. */
    size_t need, have;
    uint8_t buf[FP_CHAN_RECORD_MAX];
    /* Plaintext of the last record not yet parsed into messages (in buf). */
    const uint8_t *pt;
    size_t pt_len;

    /* The message being reassembled. */
    uint8_t hdr[FP_MSG_HEADER];
    size_t hdr_have;
    struct fp_msg_header cur;
    uint8_t *msg;
    uint64_t msg_have;
    int msg_owned;  /* msg was malloc'ed here (freed if the channel dies) */
    int msg_always; /* an error or heartbeat: the expectation stays */

    /* What the caller waits for. */
    int expecting;
    unsigned any; /* FP_CHAN_ANY_* fields of want not compared */
    struct fp_msg_header want;
    uint64_t max_len;
    void *dst;

    /* Handshake bytes to send. */
    uint8_t *out;
    size_t out_len, out_cap;
    uint8_t *hello;
    size_t hello_len;

    struct fp_error err;
};

static int fp__fail(struct fp_chan *ch, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fp__fail(struct fp_chan *ch, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ch->err.msg, sizeof ch->err.msg, fmt, ap);
    va_end(ap);
    ch->err.code = code;
    ch->state = S_DEAD;
    return code;
}

static const char *fp__peer_name(const struct fp_chan *ch)
{
    return ch->role == FP_CHAN_CLIENT ? "the server" : "the client";
}

static void fp__put16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* Appends one length-prefixed handshake message to the output. */
static int fp__write_hs(struct fp_chan *ch, const uint8_t *payload, size_t len)
{
    size_t n = 0;
    uint8_t *p = ch->out + ch->out_len;
    struct fp_error e = {0};
    int rc = fp_noise_handshake_write(&ch->hs, payload, len, p + 2, ch->out_cap - ch->out_len - 2,
                                      &n, &e);
    if (rc)
        return fp__fail(ch, rc, "%s", e.msg);
    fp__put16(p, n);
    ch->out_len += 2 + n;
    return 0;
}

struct fp_chan *fp_chan_new(int role, const uint8_t s_priv[FP_NOISE_KEY],
                            const uint8_t server_pub[FP_NOISE_KEY], const uint8_t *hello,
                            size_t hello_len)
{
    if (fp_noise_init() || hello_len > FP_CHAN_HELLO_MAX)
        return NULL;
    struct fp_chan *ch = calloc(1, sizeof *ch);
    if (!ch)
        return NULL;
    ch->role = role;
    /* Room for what this side sends in the handshake, and no more: the
     * magic and message 1, then message 3 (client); message 2 (server). */
    ch->out_cap = role == FP_CHAN_CLIENT ? FP_CHAN_MAGIC_LEN + 2 + FP_NOISE_MSG1_OVERHEAD + 2 +
                                               FP_NOISE_MSG3_OVERHEAD + hello_len
                                         : 2 + FP_NOISE_MSG2_OVERHEAD;
    if (!(ch->out = malloc(ch->out_cap)))
        goto fail;
    fp_noise_handshake_init(&ch->hs, role == FP_CHAN_CLIENT, (const uint8_t *)FP_CHAN_PROLOGUE,
                            sizeof FP_CHAN_PROLOGUE - 1, s_priv,
                            role == FP_CHAN_CLIENT ? server_pub : NULL);
    if (role == FP_CHAN_CLIENT) {
        memcpy(ch->peer, server_pub, FP_NOISE_KEY);
        if (hello_len) {
            if (!(ch->hello = malloc(hello_len)))
                goto fail;
            memcpy(ch->hello, hello, hello_len);
            ch->hello_len = hello_len;
        }
        ch->state = S_HS_LEN;
        ch->need = 2;
    } else {
        ch->state = S_MAGIC;
        ch->need = FP_CHAN_MAGIC_LEN;
    }
    return ch;
fail:
    fp_chan_free(ch);
    return NULL;
}

void fp_chan_free(struct fp_chan *ch)
{
    if (!ch)
        return;
    if (ch->msg_owned)
        free(ch->msg);
    if (ch->out) {
        sodium_memzero(ch->out, ch->out_cap);
        free(ch->out);
    }
    if (ch->hello) {
        sodium_memzero(ch->hello, ch->hello_len);
        free(ch->hello);
    }
    sodium_memzero(ch, sizeof *ch);
    free(ch);
}

void fp_chan_set_ephemeral(struct fp_chan *ch, const uint8_t e_priv[FP_NOISE_KEY])
{
    fp_noise_handshake_set_ephemeral(&ch->hs, e_priv);
}

/* The client's first flight is made lazily, so that a test can inject its
 * ephemeral key between fp_chan_new and the first output. */
static int fp__client_start(struct fp_chan *ch)
{
    if (ch->role != FP_CHAN_CLIENT || ch->started || ch->state == S_DEAD)
        return 0;
    ch->started = 1;
    memcpy(ch->out, FP_CHAN_MAGIC, FP_CHAN_MAGIC_LEN);
    ch->out_len = FP_CHAN_MAGIC_LEN;
    return fp__write_hs(ch, NULL, 0);
}

const uint8_t *fp_chan_output(struct fp_chan *ch, size_t *len)
{
    /* A dead channel has nothing to send (a client whose first flight
     * failed would otherwise hand over its magic alone). */
    if (fp__client_start(ch) || ch->state == S_DEAD) {
        *len = 0;
        return ch->out;
    }
    *len = ch->out_len;
    ch->out_len = 0;
    return ch->out;
}

static void fp__split(struct fp_chan *ch, struct fp_chan_event *ev)
{
    fp_noise_handshake_split(&ch->hs, &ch->send, &ch->recv, ch->hash);
    memcpy(ch->peer, ch->hs.rs, FP_NOISE_KEY);
    /* The ephemeral secrets and the chaining key go now, not at close:
     * forward secrecy is only as good as their deletion. */
    fp_noise_handshake_wipe(&ch->hs);
    if (ch->hello) {
        sodium_memzero(ch->hello, ch->hello_len);
        free(ch->hello);
        ch->hello = NULL;
    }
    ev->type = FP_CHAN_EV_HANDSHAKE;
    memcpy(ev->peer, ch->peer, FP_NOISE_KEY);
}

/* A whole handshake message is in buf. */
static int fp__handshake_message(struct fp_chan *ch, struct fp_chan_event *ev)
{
    int step = ch->hs.step;
    /* The payload is decrypted in place, where its ciphertext starts. */
    size_t off = step == 2 ? FP_NOISE_KEY + FP_NOISE_TAG : FP_NOISE_KEY, plen = 0;
    struct fp_error e = {0};
    int rc = fp_noise_handshake_read(&ch->hs, ch->buf, ch->need, ch->buf + off,
                                     sizeof ch->buf - off, &plen, &e);
    if (rc)
        return fp__fail(ch, rc, "%s", e.msg);
    ch->need = 2;
    ch->have = 0;
    if (step == 0) { /* server read message 1: answer with message 2 */
        ch->state = S_HS_LEN;
        return fp__write_hs(ch, NULL, 0);
    }
    if (step == 1) { /* client read message 2: message 3 ends the handshake */
        if ((rc = fp__write_hs(ch, ch->hello, ch->hello_len)))
            return rc;
        fp__split(ch, ev);
        ch->state = S_REC_LEN;
        return 0;
    }
    fp__split(ch, ev); /* server read message 3 */
    ev->hello = ch->buf + off;
    ev->hello_len = plen;
    ch->state = S_PENDING;
    return 0;
}

/* The expected length of the peer's next handshake message, checked before
 * a byte of it is read: messages 1 and 2 carry no payload. */
static int fp__handshake_length(struct fp_chan *ch, size_t n)
{
    int msg = ch->hs.step + 1;
    if (msg <= 2 ? n != FP_NOISE_MSG1_OVERHEAD : n < FP_NOISE_MSG3_OVERHEAD)
        return fp__fail(ch, FP_EFORMAT, "handshake message %d from %s is %zu bytes, expected %s%d",
                        msg, fp__peer_name(ch), n, msg <= 2 ? "" : "at least ",
                        msg <= 2 ? FP_NOISE_MSG1_OVERHEAD : FP_NOISE_MSG3_OVERHEAD);
    ch->need = n;
    ch->have = 0;
    ch->state = S_HS_BODY;
    return 0;
}

static int fp__message_done(struct fp_chan *ch, struct fp_chan_event *ev)
{
    ev->type = FP_CHAN_EV_MESSAGE;
    ev->header = ch->cur;
    ev->payload = ch->msg;
    if (ch->cur.type == FP_MSG_ERROR)
        ch->state = S_CLOSED;
    if (!ch->msg_always)
        ch->expecting = 0;
    if (ch->role == FP_CHAN_CLIENT)
        ch->welcomed = 1;
    ch->msg = NULL;
    ch->msg_owned = 0;
    ch->msg_have = 0;
    ch->hdr_have = 0;
    return 0;
}

/* fp_msg_check against the expectation, the fields the caller left open
 * taken from the header itself (the length never is: it stays capped). */
static int fp__check_want(const struct fp_chan *ch, const struct fp_msg_header *h,
                          struct fp_error *e)
{
    struct fp_msg_header want = ch->want;
    if (ch->any & FP_CHAN_ANY_TYPE)
        want.type = h->type;
    if (ch->any & FP_CHAN_ANY_RUN)
        want.run = h->run;
    if (ch->any & FP_CHAN_ANY_ROUND)
        want.round = h->round;
    if (ch->any & FP_CHAN_ANY_PHASE)
        want.phase = h->phase;
    if (ch->any & FP_CHAN_ANY_CLIENT)
        want.client = h->client;
    return fp_msg_check(h, &want, ch->max_len, e);
}

/* A whole header arrived: decide, before allocating, whether its length is
 * one we take. */
static int fp__message_begin(struct fp_chan *ch, struct fp_chan_event *ev)
{
    struct fp_msg_header *h = &ch->cur;
    struct fp_error e = {0};
    if (fp_msg_decode_header(ch->hdr, h, &e))
        return fp__fail(ch, FP_EFORMAT, "message from %s: %s", fp__peer_name(ch), e.msg);
    ch->msg_always = 0;
    if (h->type == FP_MSG_ERROR) {
        if (h->len > FP_MSG_CONTROL_CAP)
            return fp__fail(ch, FP_EFORMAT,
                            "error message from %s declares %llu bytes, more than the %llu a "
                            "control message may have",
                            fp__peer_name(ch), (unsigned long long)h->len,
                            (unsigned long long)FP_MSG_CONTROL_CAP);
        ch->msg_always = 1;
    } else if (ch->role == FP_CHAN_CLIENT && !ch->welcomed && h->type != FP_MSG_WELCOME) {
        return fp__fail(ch, FP_EFORMAT, "the server's first message is a %s, not its welcome",
                        fp_msg_type_name(h->type));
    } else if (h->type == FP_MSG_HEARTBEAT && h->len == 0) {
        ch->msg_always = 1;
    } else if (!ch->expecting) {
        return fp__fail(ch, FP_EFORMAT, "a %s message from %s that nothing waits for",
                        fp_msg_type_name(h->type), fp__peer_name(ch));
    } else if (fp__check_want(ch, h, &e)) {
        return fp__fail(ch, FP_EFORMAT, "message from %s: %s", fp__peer_name(ch), e.msg);
    }
    /* From here h->len is at most a cap the caller chose. */
    if (h->len == 0)
        return fp__message_done(ch, ev);
    if (!ch->msg_always && ch->dst) {
        ch->msg = ch->dst;
    } else {
        if (!(ch->msg = malloc((size_t)h->len)))
            return fp__fail(ch, FP_ENOMEM, "out of memory for a %llu-byte %s message",
                            (unsigned long long)h->len, fp_msg_type_name(h->type));
        ch->msg_owned = 1;
    }
    ch->msg_have = 0;
    return 0;
}

/* Parses decrypted record bytes into messages, up to one event. */
static int fp__parse(struct fp_chan *ch, struct fp_chan_event *ev)
{
    while (ch->pt_len && ev->type == FP_CHAN_EV_NONE) {
        if (ch->state == S_CLOSED)
            return fp__fail(ch, FP_EFORMAT, "%s sent more after its error message",
                            fp__peer_name(ch));
        size_t n;
        int rc;
        if (ch->hdr_have < FP_MSG_HEADER) {
            n = FP_MSG_HEADER - ch->hdr_have;
            n = n < ch->pt_len ? n : ch->pt_len;
            memcpy(ch->hdr + ch->hdr_have, ch->pt, n);
            ch->hdr_have += n;
            ch->pt += n;
            ch->pt_len -= n;
            if (ch->hdr_have == FP_MSG_HEADER && (rc = fp__message_begin(ch, ev)))
                return rc;
            continue;
        }
        uint64_t left = ch->cur.len - ch->msg_have;
        n = left < ch->pt_len ? (size_t)left : ch->pt_len;
        memcpy(ch->msg + ch->msg_have, ch->pt, n);
        ch->msg_have += n;
        ch->pt += n;
        ch->pt_len -= n;
        if (ch->msg_have == ch->cur.len)
            fp__message_done(ch, ev);
    }
    return 0;
}

/* A whole record: its ciphertext at ct (buf, or the caller's input when the
 * record arrived whole: no copy then). */
static int fp__record(struct fp_chan *ch, const uint8_t *ct, struct fp_chan_event *ev)
{
    size_t plain = ch->need - FP_NOISE_TAG;
    ch->records_in++;
    ch->state = S_REC_LEN;
    ch->need = 2;
    ch->have = 0;
    int direct = ch->hdr_have == FP_MSG_HEADER && ch->msg && plain <= ch->cur.len - ch->msg_have;
    uint8_t *to = direct ? ch->msg + ch->msg_have : ch->buf;
    if (fp_noise_cipher_decrypt(&ch->recv, NULL, 0, ct, plain + FP_NOISE_TAG, to))
        return fp__fail(ch, FP_EFORMAT,
                        "record %llu from %s does not authenticate (altered, truncated, "
                        "replayed, reordered or not meant for this connection)",
                        (unsigned long long)ch->records_in, fp__peer_name(ch));
    if (direct) {
        ch->msg_have += plain;
        if (ch->msg_have == ch->cur.len)
            fp__message_done(ch, ev);
        return 0;
    }
    ch->pt = ch->buf;
    ch->pt_len = plain;
    return fp__parse(ch, ev);
}

/* The item in buf is complete: act on it. */
static int fp__item(struct fp_chan *ch, struct fp_chan_event *ev)
{
    size_t n;
    switch (ch->state) {
    case S_MAGIC:
        if (memcmp(ch->buf, FP_CHAN_MAGIC, FP_CHAN_MAGIC_LEN))
            return fp__fail(ch, FP_EFORMAT,
                            "the client's first bytes are not F P N 0x01: not a fedpress/1 "
                            "client");
        ch->state = S_HS_LEN;
        ch->need = 2;
        ch->have = 0;
        return 0;
    case S_HS_LEN: return fp__handshake_length(ch, (size_t)ch->buf[0] << 8 | ch->buf[1]);
    case S_HS_BODY: return fp__handshake_message(ch, ev);
    case S_REC_LEN:
        n = (size_t)ch->buf[0] << 8 | ch->buf[1];
        if (n < FP_NOISE_TAG)
            return fp__fail(ch, FP_EFORMAT, "record from %s of %zu bytes, shorter than its tag",
                            fp__peer_name(ch), n);
        ch->state = S_REC_BODY;
        ch->need = n;
        ch->have = 0;
        return 0;
    case S_REC_BODY: return fp__record(ch, ch->buf, ev);
    }
    return fp__fail(ch, FP_EINVAL, "channel in a bad state"); /* not reached */
}

int fp_chan_feed(struct fp_chan *ch, const uint8_t *data, size_t len, size_t *used,
                 struct fp_chan_event *ev)
{
    memset(ev, 0, sizeof *ev);
    *used = 0;
    int rc;
    if ((rc = fp__client_start(ch)))
        return rc;
    if (ch->state == S_DEAD)
        return ch->err.code;
    if ((rc = fp__parse(ch, ev)) || ev->type)
        return rc;
    while (*used < len) {
        if (ch->state == S_PENDING)
            return fp__fail(ch, FP_EFORMAT, "the client sent a record before it was admitted");
        if (ch->state == S_CLOSED)
            return fp__fail(ch, FP_EFORMAT, "%s sent more after its error message",
                            fp__peer_name(ch));
        size_t n = ch->need - ch->have;
        if (ch->state == S_REC_BODY && ch->have == 0 && len - *used >= n) {
            *used += n; /* the whole record is in the input: no copy */
            if ((rc = fp__record(ch, data + *used - n, ev)) || ev->type)
                return rc;
            continue;
        }
        n = n < len - *used ? n : len - *used;
        memcpy(ch->buf + ch->have, data + *used, n);
        ch->have += n;
        *used += n;
        if (ch->have == ch->need) {
            if ((rc = fp__item(ch, ev)))
                return rc;
            if (ev->type)
                return 0;
        }
    }
    return 0;
}

int fp_chan_eof(struct fp_chan *ch)
{
    if (ch->state == S_DEAD)
        return ch->err.code;
    if (ch->state == S_CLOSED || ch->state == S_PENDING ||
        (ch->state == S_REC_LEN && ch->have == 0 && ch->hdr_have == 0 && ch->pt_len == 0))
        return 0;
    const char *where = ch->state < S_PENDING    ? "during the handshake"
                        : ch->have || ch->pt_len ? "in the middle of a record"
                                                 : "in the middle of a message";
    return fp__fail(ch, FP_EFORMAT, "%s closed the connection %s", fp__peer_name(ch), where);
}

void fp_chan_expect(struct fp_chan *ch, const struct fp_msg_header *want, uint64_t max_len,
                    void *dst)
{
    fp_chan_expect_any(ch, want, 0, max_len, dst);
}

void fp_chan_expect_any(struct fp_chan *ch, const struct fp_msg_header *want, unsigned any,
                        uint64_t max_len, void *dst)
{
    ch->expecting = 1;
    ch->any = any;
    ch->want = *want;
    ch->max_len = max_len;
    ch->dst = dst;
}

void fp_chan_admit(struct fp_chan *ch)
{
    if (ch->state == S_PENDING) {
        ch->state = S_REC_LEN;
        ch->need = 2;
        ch->have = 0;
    }
}

uint64_t fp_chan_wire_size(uint64_t len)
{
    uint64_t records = len / FP_CHAN_RECORD_PLAIN + (len % FP_CHAN_RECORD_PLAIN != 0);
    uint64_t framing = 2 + FP_MSG_HEADER + FP_NOISE_TAG + records * (2 + FP_NOISE_TAG);
    /* Saturates instead of wrapping: no buffer is that large, so a room
     * check against it fails. */
    return len > UINT64_MAX - framing ? UINT64_MAX : len + framing;
}

void fp_chan_send_begin(struct fp_chan_sender *s, const struct fp_msg_header *h,
                        const void *payload)
{
    memset(s, 0, sizeof *s);
    s->payload = payload;
    s->len = h->len;
    fp_msg_encode_header(h, s->header);
}

/* One record: length, then ciphertext encrypted from pt (the caller's
 * payload: nothing is copied in plaintext). */
static int fp__seal(struct fp_chan *ch, const uint8_t *pt, size_t n, uint8_t *out)
{
    fp__put16(out, n + FP_NOISE_TAG);
    if (fp_noise_cipher_encrypt(&ch->send, NULL, 0, pt, n, out + 2))
        return fp__fail(ch, FP_EINVAL, "send nonce exhausted: reconnect");
    return 0;
}

int fp_chan_send_next(struct fp_chan *ch, struct fp_chan_sender *s, uint8_t *out, size_t cap,
                      size_t *outlen)
{
    *outlen = 0;
    if (ch->state == S_DEAD)
        return ch->err.code;
    int transport = ch->state == S_REC_LEN || ch->state == S_REC_BODY || ch->state == S_CLOSED;
    if (!transport || (ch->state == S_CLOSED && ch->role == FP_CHAN_SERVER && ch->sent_any))
        return FP_EINVAL; /* not handshaken, not admitted, or already rejected */
    if (ch->role == FP_CHAN_SERVER && !ch->sent_any && s->header[1] != FP_MSG_WELCOME &&
        s->header[1] != FP_MSG_ERROR)
        return FP_EINVAL; /* the first message to a client is its welcome */
    if (ch->role == FP_CHAN_CLIENT && !ch->welcomed && s->header[1] != FP_MSG_ERROR)
        return FP_EINVAL; /* a client waits for its welcome (docs/protocol.md, 5) */
    if (ch->sending && ch->sending != s)
        return FP_EINVAL; /* another message is half sent: one at a time */
    size_t pos = 0;
    int rc;
    if (!s->header_done) {
        if (cap < 2 + FP_MSG_HEADER + FP_NOISE_TAG)
            return FP_EINVAL;
        if ((rc = fp__seal(ch, s->header, FP_MSG_HEADER, out)))
            return rc;
        pos = 2 + FP_MSG_HEADER + FP_NOISE_TAG;
        s->header_done = 1;
        ch->sent_any = 1;
    }
    while (s->off < s->len) {
        uint64_t left = s->len - s->off;
        size_t n = left < FP_CHAN_RECORD_PLAIN ? (size_t)left : FP_CHAN_RECORD_PLAIN;
        if (cap - pos < 2 + n + FP_NOISE_TAG) {
            if (pos == 0)
                return FP_EINVAL; /* cap below FP_CHAN_RECORD_WIRE_MAX */
            break;
        }
        if ((rc = fp__seal(ch, s->payload + s->off, n, out + pos)))
            return rc;
        pos += 2 + n + FP_NOISE_TAG;
        s->off += n;
    }
    *outlen = pos;
    ch->sending = s->off == s->len ? NULL : s;
    return s->off == s->len;
}

int fp_chan_send(struct fp_chan *ch, const struct fp_msg_header *h, const void *payload,
                 uint8_t *out, size_t cap, size_t *outlen)
{
    if (cap < fp_chan_wire_size(h->len))
        return FP_EINVAL;
    struct fp_chan_sender s;
    fp_chan_send_begin(&s, h, payload);
    int rc = fp_chan_send_next(ch, &s, out, cap, outlen);
    return rc < 0 ? rc : rc == 1 ? 0 : FP_EINVAL; /* 0: not whole (cannot happen) */
}

int fp_chan_reject(struct fp_chan *ch, const char *reason, uint8_t *out, size_t cap, size_t *outlen)
{
    if (ch->role != FP_CHAN_SERVER || ch->state != S_PENDING)
        return FP_EINVAL;
    /* One record, header and reason together: a refused client gets one
     * record and the close, nothing more. */
    size_t n = strlen(reason);
    n = n < FP_CHAN_REJECT_MAX ? n : FP_CHAN_REJECT_MAX;
    if (cap < 2 + FP_MSG_HEADER + n + FP_NOISE_TAG)
        return FP_EINVAL;
    struct fp_msg_header h = {.type = FP_MSG_ERROR, .len = n};
    uint8_t *pt = out + 2;
    fp_msg_encode_header(&h, pt);
    memmove(pt + FP_MSG_HEADER, reason, n);
    int rc = fp__seal(ch, pt, FP_MSG_HEADER + n, out);
    if (rc)
        return rc;
    *outlen = 2 + FP_MSG_HEADER + n + FP_NOISE_TAG;
    ch->sent_any = 1;
    ch->state = S_CLOSED;
    return 0;
}

const uint8_t *fp_chan_handshake_hash(const struct fp_chan *ch)
{
    return ch->hash;
}

const char *fp_chan_error(const struct fp_chan *ch)
{
    return ch->state == S_DEAD ? ch->err.msg : "";
}
