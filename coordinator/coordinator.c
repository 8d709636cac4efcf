/*
 * coordinator/coordinator.c — the coordinator's event loop (see
 * coordinator.h; the conversation is net/conversation.h).
 *
 * Handles live in plain structs: a session owns its TCP handle and its
 * handshake timer and is freed in the close callback of the last of them;
 * a write owns its buffer until its callback. Every callback checks its
 * status first. The round logic is run/'s: this file only moves bytes and
 * decides when a round's uploads are all in.
 */
#include "coordinator.h"

#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../net/channel.h"
#include "../net/conversation.h"
#include "../net/peer.h"

enum fp__stage { FP__HANDSHAKE, FP__ADMITTED, FP__CLOSING };
enum fp__cstate { FP__WAITING, FP__ROUND, FP__DONE };

struct fp__coord;

struct fp__session {
    uv_tcp_t tcp;
    uv_timer_t timer; /* the handshake deadline */
    int open_handles;
    struct fp__coord *co;
    struct fp_chan *ch;
    enum fp__stage stage;
    int64_t id;    /* -1 until admitted */
    int64_t slot;  /* the round's slot while sampled, else -1 */
    int answered;  /* this exchange's upload is in */
    int ending;    /* shut down after the writes queued, then closed */
    size_t queued; /* bytes handed to uv_write and not yet written */
    uint64_t born; /* uv_now at accept: the oldest handshake goes first */
    char addr[64];
    char fpr[FP_PEER_FPR];
    uint8_t report[FP_CONV_REPORT_LEN];
    uint8_t rbuf[FP_CHAN_RECORD_WIRE_MAX];
};

struct fp__write {
    uv_write_t req;
    struct fp__session *s;
    size_t len;
    uint8_t buf[];
};

struct fp__coord {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_timer_t timer; /* the round deadline, or the wait for clients */
    uv_signal_t sigint, sigterm;
    const struct fp_coord_options *o;
    struct fp_run run;
    struct fp_run_options ro;
    enum fp__cstate state;
    struct fp__session **by_id; /* [N] admitted sessions */
    uint32_t connected;
    unsigned pending; /* sessions not yet admitted */
    uint32_t round, answered;
    unsigned phase;
    uint8_t *uploads; /* [S][upload_cap]: each slot's whole upload message */
    size_t upload_cap;
    size_t *upload_len; /* [S] */
    double *loss;       /* [S] */
    size_t write_cap;   /* queued bytes a session may have */
    void *wws;
    int rc;
    struct fp_error err;
};

static void fp__log(struct fp__coord *co, const char *fmt, ...)
{
    if (!co->o->log)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(co->o->log, "fedpress coordinator: ");
    vfprintf(co->o->log, fmt, ap);
    fprintf(co->o->log, "\n");
    fflush(co->o->log);
    va_end(ap);
}

/* "client 3 (key 1c6928cb99d5a03a, 127.0.0.1:40112)" */
static const char *fp__who(const struct fp__session *s, char *buf, size_t cap)
{
    if (s->id >= 0)
        snprintf(buf, cap, "client %lld (key %s, %s)", (long long)s->id, s->fpr, s->addr);
    else if (s->fpr[0])
        snprintf(buf, cap, "key %s (%s)", s->fpr, s->addr);
    else
        snprintf(buf, cap, "%s", s->addr);
    return buf;
}

static void fp__session_close(struct fp__session *s);
static void fp__handshake_late(uv_timer_t *t);
static void fp__fail(struct fp__coord *co, int rc);
static void fp__round_next(struct fp__coord *co);
static void fp__alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);
static void fp__read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);

/* ---- session lifetime ---- */

static void fp__session_closed(uv_handle_t *h)
{
    struct fp__session *s = h->data;
    if (--s->open_handles)
        return;
    fp_chan_free(s->ch);
    sodium_memzero(s->rbuf, sizeof s->rbuf);
    free(s);
}

static void fp__session_close(struct fp__session *s)
{
    struct fp__coord *co = s->co;
    if (s->stage == FP__CLOSING)
        return;
    if (s->stage == FP__HANDSHAKE)
        co->pending--;
    if (s->id >= 0 && co->by_id[s->id] == s) {
        co->by_id[s->id] = NULL;
        co->connected--;
    }
    int lost = s->slot >= 0 && !s->answered && co->state == FP__ROUND;
    s->stage = FP__CLOSING;
    uv_close((uv_handle_t *)&s->tcp, fp__session_closed);
    uv_close((uv_handle_t *)&s->timer, fp__session_closed);
    if (lost) {
        char who[160];
        fp_error_set(&co->err, FP_EIO,
                     "round %u: %s left before its upload; a sampled client that does not "
                     "answer fails the run in this version (partial rounds are not done yet)",
                     co->round, fp__who(s, who, sizeof who));
        fp__fail(co, FP_EIO);
    }
}

static void fp__shut(uv_shutdown_t *req, int status)
{
    struct fp__session *s = req->data;
    (void)status; /* done or cancelled: the session closes either way */
    free(req);
    fp__session_close(s);
}

/* Closes the session once what is queued for it is written (uv_close would
 * drop a last error or result message). */
static void fp__session_end(struct fp__session *s)
{
    if (s->stage == FP__CLOSING || s->ending)
        return;
    s->ending = 1;
    uv_read_stop((uv_stream_t *)&s->tcp);
    uv_shutdown_t *sd = malloc(sizeof *sd);
    if (sd)
        sd->data = s;
    if (!sd || uv_shutdown(sd, (uv_stream_t *)&s->tcp, fp__shut)) {
        free(sd);
        fp__session_close(s);
        return;
    }
    /* The shutdown completes only once the peer has read what is queued: a
     * peer that stopped reading must not keep the coordinator from exiting
     * (fp__handshake_late closes an ending session). */
    uv_timer_start(&s->timer, fp__handshake_late, (uint64_t)(s->co->o->handshake_s * 1e3), 0);
}

/* The peer's fault: say who and why, then close. */
static void fp__session_drop(struct fp__session *s, const char *why)
{
    char who[160];
    if (s->stage == FP__CLOSING)
        return;
    fp__log(s->co, "%s: %s; connection closed", fp__who(s, who, sizeof who), why);
    fp__session_close(s);
}

/* ---- writing ---- */

static void fp__written(uv_write_t *req, int status)
{
    struct fp__write *w = (struct fp__write *)req;
    struct fp__session *s = w->s;
    s->queued -= w->len;
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        fp__session_drop(s, uv_strerror(status));
}

static struct fp__write *fp__write_new(struct fp__session *s, size_t cap)
{
    if (s->stage == FP__CLOSING)
        return NULL;
    if (cap > UINT32_MAX) { /* uv_buf_t's length */
        fp__session_drop(s, "a message too large for one write");
        return NULL;
    }
    /* A client that does not read its broadcasts must not make the
     * coordinator hold them without bound. */
    if (s->queued + cap > s->co->write_cap) {
        fp__session_drop(s, "too many bytes waiting to be written (the peer does not read)");
        return NULL;
    }
    struct fp__write *w = malloc(sizeof *w + cap);
    if (!w)
        fp__session_drop(s, "out of memory for a write");
    else
        w->s = s;
    return w;
}

static int fp__write_go(struct fp__session *s, struct fp__write *w, size_t len)
{
    w->len = len;
    uv_buf_t b = uv_buf_init((char *)w->buf, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, fp__written);
    if (rc) {
        free(w);
        fp__session_drop(s, uv_strerror(rc));
        return -1;
    }
    s->queued += len;
    return 0;
}

/* The channel's handshake bytes, if any. */
static int fp__flush_handshake(struct fp__session *s)
{
    size_t n;
    const uint8_t *p = fp_chan_output(s->ch, &n);
    if (!n)
        return 0;
    struct fp__write *w = fp__write_new(s, n);
    if (!w)
        return -1;
    memcpy(w->buf, p, n);
    return fp__write_go(s, w, n);
}

/* One message, encrypted straight from payload into the write's buffer. */
static int fp__send(struct fp__session *s, const struct fp_msg_header *h, const void *payload)
{
    size_t n = (size_t)fp_chan_wire_size(h->len);
    struct fp__write *w = fp__write_new(s, n);
    if (!w)
        return -1;
    size_t len;
    if (fp_chan_send(s->ch, h, payload, w->buf, n, &len)) {
        free(w);
        fp__session_drop(s, "the channel refused to send");
        return -1;
    }
    return fp__write_go(s, w, len);
}

static void fp__send_error(struct fp__session *s, const char *reason)
{
    const struct fp_msg_header h = {.type = FP_MSG_ERROR, .len = strlen(reason)};
    (void)fp__send(s, &h, reason);
}

/* ---- admission ---- */

static void fp__handshake_late(uv_timer_t *t)
{
    struct fp__session *s = t->data;
    if (s->ending) /* its last messages did not drain in time */
        fp__session_drop(s, "it did not read its last messages in time");
    else
        fp__session_drop(s, "no admitted handshake before the handshake deadline");
}

/* The handshake authenticated a key: admit it if the allow-list has it and
 * no session holds it yet, else one error record and the close. */
static void fp__on_handshake(struct fp__session *s, const uint8_t key[FP_NOISE_KEY])
{
    struct fp__coord *co = s->co;
    struct fp_run *r = &co->run;
    fp_peer_fingerprint(key, s->fpr);
    int64_t id = fp_allow_find(co->o->allow, key);
    const char *why = id < 0          ? "this key is not in the allow-list"
                      : co->by_id[id] ? "this key is already connected"
                      : co->state != FP__WAITING && co->state != FP__ROUND ? "the run is over"
                                                                           : NULL;
    if (why) {
        uint8_t out[2 + FP_MSG_HEADER + 128 + FP_NOISE_TAG];
        size_t n;
        char who[160];
        fp__log(co, "refused %s: %s", fp__who(s, who, sizeof who), why);
        if (!fp_chan_reject(s->ch, why, out, sizeof out, &n)) {
            struct fp__write *w = fp__write_new(s, n);
            if (w) {
                memcpy(w->buf, out, n);
                fp__write_go(s, w, n);
            }
        }
        fp__session_end(s);
        if (s->stage != FP__CLOSING)
            uv_timer_start(&s->timer, fp__handshake_late, 1000, 0);
        return;
    }
    s->id = id;
    s->stage = FP__ADMITTED;
    co->pending--;
    co->by_id[id] = s;
    co->connected++;
    uv_timer_stop(&s->timer);
    fp_chan_admit(s->ch);
    char who[160];
    fp__log(co, "%s admitted (%u of %u connected)", fp__who(s, who, sizeof who), co->connected,
            co->o->allow->n);
    const struct fp_msg_header h = {.type = FP_MSG_WELCOME,
                                    .run = (uint64_t)r->res.run_id,
                                    .client = (uint32_t)id,
                                    .len = strlen(r->canon)};
    if (fp__send(s, &h, r->canon))
        return;
    if (co->state == FP__WAITING && co->connected == co->o->allow->n) {
        uv_timer_stop(&co->timer);
        co->state = FP__ROUND;
        co->round = r->first_round - 1;
        fp__round_next(co);
    }
}

/* ---- a round's exchange ---- */

static void fp__round_late(uv_timer_t *t)
{
    struct fp__coord *co = t->data;
    if (co->state == FP__WAITING) {
        fp_error_set(&co->err, FP_EIO,
                     "only %u of the %u clients in the allow-list connected within %.0f s; the "
                     "first round needs them all in this version (check that every client runs "
                     "and pins this coordinator's key)",
                     co->connected, co->o->allow->n, co->o->wait_s);
        fp__fail(co, FP_EIO);
        return;
    }
    char list[256] = "";
    size_t n = 0;
    const uint32_t S = co->run.sc->sample;
    for (uint32_t i = 0; i < S && n < sizeof list - 16; i++) {
        struct fp__session *s = co->by_id[co->run.chosen[i]];
        if (!s || !s->answered)
            n += (size_t)snprintf(list + n, sizeof list - n, " %u", co->run.chosen[i]);
    }
    fp_error_set(&co->err, FP_EIO,
                 "round %u: the deadline (%.0f s) passed without the upload of client(s)%s; a "
                 "sampled client that does not answer fails the run in this version",
                 co->round, co->o->deadline_s, list);
    fp__fail(co, FP_EIO);
}

/* Sends exchange co->phase's broadcast to every participant, and waits for
 * their reports and uploads. */
static int fp__exchange_begin(struct fp__coord *co)
{
    struct fp_run *r = &co->run;
    struct fp_msg_header h;
    int rc = fp_msg_decode_header(r->bcast, &h, &co->err);
    if (rc)
        return rc;
    co->answered = 0;
    for (uint32_t slot = 0; slot < r->sc->sample; slot++) {
        const uint32_t id = r->chosen[slot];
        struct fp__session *s = co->by_id[id];
        if (!s)
            return fp_error_set(&co->err, FP_EIO,
                                "round %u: client %u was sampled but is not connected; an absent "
                                "client fails the run in this version",
                                co->round, id);
        s->slot = slot;
        s->answered = 0;
        const struct fp_msg_header want = {.type = FP_MSG_RESULT,
                                           .run = h.run,
                                           .round = h.round,
                                           .phase = h.phase,
                                           .client = id,
                                           .len = FP_CONV_REPORT_LEN};
        fp_chan_expect(s->ch, &want, 0, s->report);
        if (fp__send(s, &h, r->bcast + FP_MSG_HEADER))
            return co->rc
                       ? co->rc
                       : fp_error_set(&co->err, FP_EIO, "round %u: client %u lost", co->round, id);
        (void)uv_read_start((uv_stream_t *)&s->tcp, fp__alloc, fp__read); /* see fp__on_upload */
    }
    uv_timer_start(&co->timer, fp__round_late, (uint64_t)(co->o->deadline_s * 1e3), 0);
    return 0;
}

static int fp__round_commit(struct fp__coord *co)
{
    struct fp_run *r = &co->run;
    int rc;
    fp_run_round_end(r);
    if (r->evaluate)
        fp_run_evaluate(r, co->wws);
    if ((rc = fp_run_commit(r, &co->err)))
        return rc;
    for (uint32_t slot = 0; slot < r->sc->sample; slot++) {
        struct fp__session *s = co->by_id[r->chosen[slot]];
        if (!s)
            continue;
        s->slot = -1;
        const uint8_t included = FP_CONV_INCLUDED;
        const struct fp_msg_header h = {.type = FP_MSG_RESULT,
                                        .run = (uint64_t)r->res.run_id,
                                        .round = co->round,
                                        .client = r->chosen[slot],
                                        .len = 1};
        fp__send(s, &h, &included);
    }
    return 0;
}

/* Every upload of the exchange is in: include them in ascending client id
 * (slot order), then the next exchange or the round's end. */
static void fp__exchange_end(struct fp__coord *co)
{
    struct fp_run *r = &co->run;
    uv_timer_stop(&co->timer);
    for (uint32_t slot = 0; slot < r->sc->sample; slot++) {
        int rc = fp_run_include(r, slot, co->uploads + slot * co->upload_cap, co->upload_len[slot],
                                co->loss[slot], NULL, &co->err);
        if (rc) {
            size_t n = strlen(co->err.msg);
            snprintf(co->err.msg + n, sizeof co->err.msg - n,
                     " (round %u, client %u's upload, refused; a refused upload fails the run "
                     "in this version)",
                     co->round, r->chosen[slot]);
            fp__fail(co, rc);
            return;
        }
    }
    fp_run_phase_end(r);
    int rc = fp_run_phase_begin(r, ++co->phase, &co->err);
    if (rc > 0)
        rc = fp__exchange_begin(co);
    else if (rc == 0 && !(rc = fp__round_commit(co)))
        fp__round_next(co);
    if (rc)
        fp__fail(co, rc);
}

/* uv_walk: a connection still in its handshake when the run ends is closed
 * now rather than at its deadline (the loop ends with the last handle). */
static void fp__close_pending(uv_handle_t *h, void *arg)
{
    struct fp__coord *co = arg;
    if (h->type != UV_TCP || h == (uv_handle_t *)&co->listener || uv_is_closing(h))
        return;
    struct fp__session *s = h->data;
    if (s->stage == FP__HANDSHAKE && !s->ending)
        fp__session_close(s);
}

/* The run is over: no more connections; admitted sessions end after their
 * last message (fp__session_end), the others now. */
static void fp__close_rest(struct fp__coord *co)
{
    uv_close((uv_handle_t *)&co->listener, NULL);
    uv_close((uv_handle_t *)&co->timer, NULL);
    uv_walk(&co->loop, fp__close_pending, co);
}

static void fp__finish(struct fp__coord *co)
{
    struct fp_run *r = &co->run;
    co->state = FP__DONE;
    uv_timer_stop(&co->timer);
    int rc = fp_run_finish(r, &co->err);
    if (rc) {
        co->rc = rc;
        fp_run_fail(r);
    }
    uint8_t done[FP_CONV_DONE_LEN];
    done[0] = r->res.interrupted ? FP_CONV_RUN_STOPPED : FP_CONV_RUN_DONE;
    memcpy(done + 1, r->res.model_sha256, 64);
    for (uint32_t id = 0; id < co->o->allow->n; id++) {
        struct fp__session *s = co->by_id[id];
        if (!s)
            continue;
        if (rc) {
            fp__send_error(s, "the coordinator's run failed");
        } else {
            const struct fp_msg_header h = {.type = FP_MSG_RESULT,
                                            .run = (uint64_t)r->res.run_id,
                                            .client = id,
                                            .len = sizeof done};
            fp__send(s, &h, done);
        }
        fp__session_end(s);
    }
    fp__close_rest(co);
}

static void fp__round_next(struct fp__coord *co)
{
    struct fp_run *r = &co->run;
    if (co->state != FP__ROUND)
        return;
    if (!fp_run_next(r, co->round + 1)) {
        fp__finish(co);
        return;
    }
    co->round++;
    co->phase = 0;
    fp_run_round_begin(r, co->round);
    int rc = fp_run_phase_begin(r, 0, &co->err);
    if (rc > 0)
        rc = fp__exchange_begin(co);
    if (rc)
        fp__fail(co, rc ? rc : FP_EINVAL);
}

/* The run cannot go on: mark it failed, tell the clients, stop the loop. */
static void fp__fail(struct fp__coord *co, int rc)
{
    if (co->state == FP__DONE)
        return;
    co->state = FP__DONE;
    co->rc = rc;
    fp_run_fail(&co->run);
    for (uint32_t id = 0; id < co->o->allow->n; id++)
        if (co->by_id[id]) {
            fp__send_error(co->by_id[id], co->err.msg);
            fp__session_end(co->by_id[id]);
        }
    fp__close_rest(co);
}

/* ---- reading ---- */

static void fp__on_report(struct fp__session *s)
{
    struct fp__coord *co = s->co;
    double loss;
    uint64_t bits = 0;
    for (int i = 7; i >= 0; i--)
        bits = bits << 8 | s->report[i];
    memcpy(&loss, &bits, sizeof loss);
    if (!isfinite(loss)) {
        fp__send_error(s, "your training loss is not finite");
        fp__session_drop(s, "reported a training loss that is not finite");
        return;
    }
    co->loss[s->slot] = loss;
    struct fp_msg_header want = {.type = FP_MSG_UPLOAD,
                                 .run = (uint64_t)co->run.res.run_id,
                                 .round = co->round,
                                 .phase = (uint16_t)co->phase,
                                 .client = (uint32_t)s->id};
    /* Capped at the largest upload (the slot's buffer) before a byte is
     * taken; the exact size is the core's check (fp_algo_server_add refuses
     * any other), which knows it per round and phase. */
    fp_chan_expect(s->ch, &want, co->upload_cap - FP_MSG_HEADER,
                   co->uploads + s->slot * co->upload_cap + FP_MSG_HEADER);
}

static void fp__on_upload(struct fp__session *s, const struct fp_msg_header *h)
{
    struct fp__coord *co = s->co;
    uint8_t *msg = co->uploads + s->slot * co->upload_cap;
    fp_msg_encode_header(h, msg);
    co->upload_len[s->slot] = FP_MSG_HEADER + (size_t)h->len;
    s->answered = 1;
    /* Backpressure: nothing more is expected from this client until the
     * next broadcast, so its socket is not read until then. */
    uv_read_stop((uv_stream_t *)&s->tcp);
    if (++co->answered == co->run.sc->sample)
        fp__exchange_end(co);
}

/* One event of the channel; 0 to go on reading. */
static int fp__on_event(struct fp__session *s, const struct fp_chan_event *ev)
{
    char reason[200];
    if (ev->type == FP_CHAN_EV_HANDSHAKE) {
        fp__on_handshake(s, ev->peer);
        return s->stage == FP__ADMITTED ? 0 : -1;
    }
    switch (ev->header.type) {
    case FP_MSG_ERROR: {
        size_t n = ev->header.len < 159 ? (size_t)ev->header.len : 159;
        char text[160];
        if (n) /* an empty payload is NULL */
            memcpy(text, ev->payload, n);
        text[n] = '\0';
        for (size_t i = 0; i < n; i++)
            if (text[i] < 32 || text[i] > 126)
                text[i] = '?';
        snprintf(reason, sizeof reason, "sent an error: %s", text);
        free(ev->payload);
        fp__session_drop(s, reason);
        return -1;
    }
    case FP_MSG_HEARTBEAT: return 0;
    case FP_MSG_RESULT: fp__on_report(s); return 0;
    case FP_MSG_UPLOAD: fp__on_upload(s, &ev->header); return 0;
    }
    return 0; /* not reached: the channel takes only what was expected */
}

static void fp__alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    struct fp__session *s = h->data;
    *b = uv_buf_init((char *)s->rbuf, sizeof s->rbuf);
}

static void fp__read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct fp__session *s = st->data;
    if (nread < 0) {
        if (nread == UV_EOF && fp_chan_eof(s->ch) == 0) {
            char who[160];
            if (s->stage == FP__ADMITTED)
                fp__log(s->co, "%s disconnected", fp__who(s, who, sizeof who));
            fp__session_close(s);
        } else {
            fp__session_drop(s, nread == UV_EOF ? fp_chan_error(s->ch) : uv_strerror((int)nread));
        }
        return;
    }
    const uint8_t *p = (const uint8_t *)b->base;
    size_t n = (size_t)nread;
    while (s->stage != FP__CLOSING) {
        size_t used;
        struct fp_chan_event ev;
        int rc = fp_chan_feed(s->ch, p, n, &used, &ev);
        if (rc) {
            fp__session_drop(s, fp_chan_error(s->ch));
            return;
        }
        p += used;
        n -= used;
        if (fp__flush_handshake(s))
            return;
        if (ev.type == FP_CHAN_EV_NONE || fp__on_event(s, &ev))
            return;
    }
}

struct fp__oldest {
    const struct fp__coord *co;
    const struct fp__session *skip;
    struct fp__session *best;
};

static void fp__find_oldest(uv_handle_t *h, void *arg)
{
    struct fp__oldest *o = arg;
    struct fp__session *s = h->data;
    if (h->type != UV_TCP || uv_is_closing(h) || !s || (void *)s == (void *)s->co || s == o->skip ||
        s->stage != FP__HANDSHAKE)
        return;
    if (!o->best || s->born < o->best->born)
        o->best = s;
}

/* The oldest connection still in its handshake, other than skip. */
static struct fp__session *fp__oldest_pending(struct fp__coord *co, const struct fp__session *skip)
{
    struct fp__oldest o = {.co = co, .skip = skip};
    uv_walk(&co->loop, fp__find_oldest, &o);
    return o.best;
}

static void fp__on_connection(uv_stream_t *server, int status)
{
    struct fp__coord *co = server->data;
    if (status < 0) {
        fp__log(co, "accept failed: %s", uv_strerror(status));
        return;
    }
    struct fp__session *s = calloc(1, sizeof *s);
    if (!s)
        return;
    s->co = co;
    s->id = s->slot = -1;
    uv_tcp_init(&co->loop, &s->tcp);
    uv_timer_init(&co->loop, &s->timer);
    s->tcp.data = s->timer.data = s;
    s->open_handles = 2;
    co->pending++;
    if (uv_accept(server, (uv_stream_t *)&s->tcp)) {
        fp__session_close(s);
        return;
    }
    struct sockaddr_storage sa;
    int len = sizeof sa;
    snprintf(s->addr, sizeof s->addr, "?");
    if (!uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&sa, &len))
        fp_peer_addr_name((struct sockaddr *)&sa, s->addr, sizeof s->addr);
    s->born = uv_now(&co->loop);
    if (co->pending > co->o->max_pending) {
        /* The oldest goes, not the newest: an honest handshake takes one
         * round trip, so connections that sit silent (or trickle) fill the
         * slots; refusing the newcomer would let them lock every client
         * out until they time out, and open new ones. */
        struct fp__session *old = fp__oldest_pending(co, s);
        if (!old) {
            fp__session_drop(s, "too many connections in their handshake");
            return;
        }
        fp__session_drop(old, "too many connections in their handshake: the oldest one is closed");
    }
    if (co->state == FP__DONE ||
        !(s->ch = fp_chan_new(FP_CHAN_SERVER, co->o->key, NULL, NULL, 0))) {
        fp__session_drop(s, "cannot start a channel");
        return;
    }
    /* a round is a few small messages each way: no Nagle delay on them */
    (void)uv_tcp_nodelay(&s->tcp, 1);
    uv_timer_start(&s->timer, fp__handshake_late, (uint64_t)(co->o->handshake_s * 1e3), 0);
    uv_read_start((uv_stream_t *)&s->tcp, fp__alloc, fp__read);
}

/* ---- setup ---- */

static void fp__on_signal(uv_signal_t *h, int signum)
{
    struct fp__coord *co = h->data;
    (void)signum;
    /* run/ finishes the round in progress, then stops (fp_run_next) */
    if (co->state == FP__WAITING) {
        fp_error_set(&co->err, FP_EINTR, "interrupted before the first round");
        fp__fail(co, FP_EINTR);
        return;
    }
    if (co->o->stop)
        *co->o->stop = 1;
    fp__log(co, "stopping after the round in progress");
}

static int fp__listen(struct fp__coord *co)
{
    const struct fp_coord_options *o = co->o;
    struct sockaddr_storage sa;
    if (uv_ip4_addr(o->host, o->port, (struct sockaddr_in *)&sa) &&
        uv_ip6_addr(o->host, o->port, (struct sockaddr_in6 *)&sa))
        return fp_error_set(&co->err, FP_EINVAL,
                            "--listen %s: not an IP address (use 0.0.0.0 for every interface)",
                            o->host);
    uv_tcp_init(&co->loop, &co->listener);
    co->listener.data = co;
    int rc = uv_tcp_bind(&co->listener, (struct sockaddr *)&sa, 0);
    if (!rc)
        rc = uv_listen((uv_stream_t *)&co->listener, 128, fp__on_connection);
    if (rc)
        return fp_error_set(&co->err, FP_EIO, "--listen %s:%d: %s", o->host, o->port,
                            uv_strerror(rc));
    int len = sizeof sa;
    uv_tcp_getsockname(&co->listener, (struct sockaddr *)&sa, &len);
    int port = ntohs(((struct sockaddr_in *)&sa)->sin_port); /* same offset in sockaddr_in6 */
    fp__log(co, "run %lld: listening on %s:%d for %u clients", (long long)co->run.res.run_id,
            o->host, port, o->allow->n);
    if (o->ready_file) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", o->ready_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) || rename(tmp, o->ready_file))
            return fp_error_set(&co->err, FP_EIO, "%s: cannot write the ready file", o->ready_file);
    }
    return 0;
}

static int fp__setup(struct fp__coord *co)
{
    struct fp_run *r = &co->run;
    const uint32_t S = r->sc->sample;
    co->upload_cap = fp_algo_upload_cap(&r->p);
    co->uploads = malloc(S * co->upload_cap);
    co->upload_len = calloc(S, sizeof *co->upload_len);
    co->loss = calloc(S, sizeof *co->loss);
    co->by_id = calloc(co->o->allow->n, sizeof *co->by_id);
    co->wws = fp_workload_ws_new(r->w);
    if (!co->uploads || !co->upload_len || !co->loss || !co->by_id || !co->wws)
        return fp_error_set(&co->err, FP_ENOMEM, "out of memory for %u uploads of %zu bytes", S,
                            co->upload_cap);
    /* two whole messages (a broadcast and a result) and the error record */
    co->write_cap = 2 * (size_t)fp_chan_wire_size(fp_algo_broadcast_cap(&r->p)) + 65536;
    return 0;
}

int fp_coord_run(const struct fp_scenario *sc, struct fp_store *store,
                 const struct fp_coord_options *o, struct fp_run_result *res, struct fp_error *err)
{
    if (o->allow->n != sc->clients)
        return fp_error_set(err, FP_EINVAL,
                            "the allow-list has %u clients but the scenario has [data] clients "
                            "= %u: give every client id 0 to %u a key",
                            o->allow->n, sc->clients, sc->clients - 1);
    struct fp__coord *co = calloc(1, sizeof *co);
    if (!co)
        return fp_error_set(err, FP_ENOMEM, "out of memory");
    co->o = o;
    /* The coordinator holds no client's data: the test set only. */
    co->ro = (struct fp_run_options){.threads = 1,
                                     .progress = o->progress,
                                     .stop = o->stop,
                                     .create_workload = fp_workload_create_test};
    int rc = uv_loop_init(&co->loop);
    if (rc) {
        free(co);
        return fp_error_set(err, FP_EIO, "cannot start the event loop: %s", uv_strerror(rc));
    }
    uv_timer_init(&co->loop, &co->timer);
    co->timer.data = co;
    uv_signal_init(&co->loop, &co->sigint);
    uv_signal_init(&co->loop, &co->sigterm);
    co->sigint.data = co->sigterm.data = co;
    uv_signal_start(&co->sigint, fp__on_signal, SIGINT);
    uv_signal_start(&co->sigterm, fp__on_signal, SIGTERM);
    uv_unref((uv_handle_t *)&co->sigint);
    uv_unref((uv_handle_t *)&co->sigterm);

    if ((rc = fp_run_open(&co->run, sc, store, &co->ro, &co->err)) || (rc = fp__setup(co)) ||
        (rc = fp__listen(co))) {
        fp_run_fail(&co->run);
        if (co->listener.loop && !uv_is_closing((uv_handle_t *)&co->listener))
            uv_close((uv_handle_t *)&co->listener, NULL);
        uv_close((uv_handle_t *)&co->timer, NULL);
        co->state = FP__DONE;
        co->rc = rc;
    } else {
        co->state = FP__WAITING;
        uv_timer_start(&co->timer, fp__round_late, (uint64_t)(o->wait_s * 1e3), 0);
    }
    uv_run(&co->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&co->sigint, NULL);
    uv_close((uv_handle_t *)&co->sigterm, NULL);
    uv_run(&co->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&co->loop))
        fp__log(co, "warning: event loop handles left open at exit");
    *res = co->run.res;
    rc = co->rc;
    if (rc)
        *err = co->err;
    if (co->wws)
        fp_workload_ws_free(co->run.w, co->wws);
    fp_run_close(&co->run);
    free(co->uploads);
    free(co->upload_len);
    free(co->loss);
    free(co->by_id);
    free(co);
    return rc;
}
