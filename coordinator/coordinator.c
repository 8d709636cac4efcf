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

#include <arpa/inet.h>
#include <malloc.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../core/hash.h"
#include "../net/channel.h"
#include "../net/conversation.h"
#include "../net/peer.h"
#include "../run/participation.h"

/* threads that evaluate the test set (at most one per core) */
#define FP__EVAL_THREADS 8
/* An upload smaller than this is hashed on the loop: hashing it (~80 µs at
 * libsodium's 0.4 GB/s) costs about what handing it to a thread and back
 * does (bench/bench_load.sh's d = 10 rounds are a hundred 40-byte uploads). */
#define FP__HASH_POOL_MIN (32u << 10)

enum fp__stage { FP__HANDSHAKE, FP__ADMITTED, FP__CLOSING };
/* A slot's upload in this exchange (fp__coord.have) */
enum fp__have {
    FP__NONE = 0, /* not in */
    FP__IN,       /* in up[slot], its hash on the thread pool */
    FP__HASHED,   /* ready for fp_run_include */
    FP__ADDED,    /* included in the aggregate */
    FP__BAD,      /* fp_run_include refused it (why[slot]): refused when the exchange ends */
};
enum fp__cstate { FP__WAITING, FP__ROUND, FP__DONE };

struct fp__coord;

struct fp__session {
    uv_tcp_t tcp;
    uv_timer_t timer; /* the handshake deadline */
    int open_handles;
    struct fp__coord *co;
    struct fp_chan *ch;
    enum fp__stage stage;
    int64_t id;   /* -1 until admitted */
    int64_t slot; /* the round's slot while sampled, else -1 */
    int answered; /* this exchange's upload is in */
    int refused;  /* the channel refused its input (the reason is logged) */
    int lost;     /* its connection ended or went silent: it may come back (fp__join) */
    /* Late: its round closed without its upload, which it still sends
     * (report, then upload) into late_buf; it is told 'not included' then,
     * and until then is absent from the rounds it is sampled in. */
    int owes;
    uint32_t owe_round;
    uint8_t *late_buf; /* [upload_cap] */
    char why[160];     /* why the channel closed it */
    int ending;        /* shut down after the writes queued, then closed */
    size_t queued;     /* bytes handed to uv_write and not yet written */
    uint64_t born;     /* uv_now at accept: the oldest handshake goes first */
    /* liveness (fp__tick): the last byte read, the last progress of the
     * queued writes, and libuv's write queue at the last look */
    uint64_t last_rx, last_progress;
    size_t last_qs;
    char addr[64];
    char group[INET6_ADDRSTRLEN + 4]; /* its per-address cap's group (fp__addr_group) */
    char fpr[FP_PEER_FPR];
    uint8_t report[FP_CONV_REPORT_LEN];
};

struct fp__write {
    uv_write_t req;
    struct fp__session *s;
    size_t len;
    uint8_t buf[];
};

/* A phase-0 upload's SHA-256 on libuv's thread pool (fp__on_upload). */
struct fp__hash_job {
    uv_work_t req;
    struct fp__coord *co;
    uint32_t slot;
};

struct fp__coord {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_timer_t timer;     /* the round deadline, or the wait for clients */
    uv_timer_t min_timer; /* wait_after_min, once min_updates uploads are in */
    uv_timer_t tick;      /* the dead-peer and write-stall checks (fp__tick) */
    uint64_t tick_ms, tick_last;
    unsigned dead_s; /* --dead-peer (0 in the options: 30) */
    double stall_s;  /* --write-stall (0 in the options: 30) */
    uv_signal_t sigint, sigterm, sighup;
    const struct fp_coord_options *o;
    struct fp_run run;
    struct fp_run_options ro;
    enum fp__cstate state;
    struct fp__session **by_id; /* [N] admitted sessions */
    uint32_t connected;
    unsigned pending; /* sessions not yet admitted */
    uint32_t round, answered;
    unsigned phase;
    double deadline_s;
    /* this exchange: slots sent the broadcast, slots settled without an
     * upload (left, refused), the attempt of this round (bounded retries) */
    uint32_t expected, settled, attempt;
    int beginning;                 /* inside fp__exchange_begin: settle without closing */
    const char *close_why;         /* what closed the exchange with uploads missing */
    enum fp_client_status *status; /* [S] */
    char (*why)[160];              /* [S] */
    uint8_t **up;                  /* [S] each slot's whole upload message, upload_cap bytes */
    uint8_t *have;                 /* [S] enum fp__have: the slot's upload is in up[slot] */
    char (*sha)[65];               /* [S] its payload's SHA-256, hashed as it came (phase 0) */
    struct fp__hash_job *hjob;     /* [S] */
    char (*gone)[160];             /* [N] why a client's last connection was closed */
    uint64_t *gone_at;             /* [N] uv_now when its connection was lost, else 0 */
    /* Hashes still running on the thread pool: they read up[] and write
     * sha[], so an exchange that closes meanwhile (closed) waits for the
     * last of them before it includes, retries or moves on (fp__hashed). */
    unsigned hashing;
    int closed;  /* this exchange closed: its statuses are decided */
    uint32_t in; /* ... and this many uploads are in */
    /* The slots before this one are settled or added to the aggregate:
     * uploads are added in ascending slot order as soon as the next one is
     * hashed (fp__add_ready), while later ones are still coming, rather
     * than all after the last one (~5 ms of the round's tail for 20 MLP
     * uploads). A round tried again re-broadcasts, which empties the
     * aggregate, so adding early changes nothing. */
    uint32_t next_add;
    /* [N] THE record of the last round in which each client's upload was
     * included (0: none), told to the client in its welcome so that a
     * restarted client commits or discards the state it prepared for that
     * round. Only fp__round_commit writes it in a run; a resumed run fills
     * it from the store before the first welcome. */
    uint32_t *last_in;
    size_t upload_cap;
    size_t *upload_len; /* [S] */
    double *loss;       /* [S] */
    size_t write_cap;   /* queued bytes a session may have */
    /* What one read brings, for every session: fp__read hands all of it to
     * the session's channel before it returns (the channel keeps a partial
     * record in its own buffer), so one buffer serves every connection
     * rather than 64 KiB more per connection (bench/bench_load.sh: 100 ->
     * 65 KB of RSS per connected client). Wiped when the loop ends. */
    uint8_t rbuf[FP_CHAN_RECORD_WIRE_MAX];
    void **wws; /* [nwws] evaluation workspaces, one per evaluating thread */
    unsigned nwws;
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
static void fp__exchange_end(struct fp__coord *co);
static void fp__exchange_finish(struct fp__coord *co);
static void fp__settle(struct fp__coord *co, uint32_t slot, enum fp_client_status st,
                       const char *why);
static void fp__alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);
static void fp__read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);
static void fp__join(struct fp__session *s);

/* ---- session lifetime ---- */

static void fp__session_closed(uv_handle_t *h)
{
    struct fp__session *s = h->data;
    if (--s->open_handles)
        return;
    fp_chan_free(s->ch);
    free(s->late_buf);
    free(s);
}

/* The session no longer holds its key's place: why, and when if it was
 * lost (only a lost connection's slots are held open for a reconnection). */
static void fp__detach(struct fp__session *s)
{
    struct fp__coord *co = s->co;
    if (s->id < 0 || co->by_id[s->id] != s)
        return;
    co->by_id[s->id] = NULL;
    co->connected--;
    snprintf(co->gone[s->id], sizeof co->gone[s->id], "%s",
             s->why[0] ? s->why : "it ended the connection");
    co->gone_at[s->id] = s->lost ? uv_now(&co->loop) : 0;
}

static void fp__session_close(struct fp__session *s)
{
    struct fp__coord *co = s->co;
    if (s->stage == FP__CLOSING)
        return;
    if (s->stage == FP__HANDSHAKE)
        co->pending--;
    fp__detach(s);
    int lost = s->slot >= 0 && !s->answered && co->state == FP__ROUND;
    s->stage = FP__CLOSING;
    uv_close((uv_handle_t *)&s->tcp, fp__session_closed);
    uv_close((uv_handle_t *)&s->timer, fp__session_closed);
    if (lost) {
        const uint32_t slot = (uint32_t)s->slot;
        s->slot = -1;
        /* A client whose connection ended or went silent keeps its slot
         * open until the exchange closes: if it reconnects in time it is
         * sent the broadcast again (fp__join), else it is absent
         * (fp__exchange_end). One closed for what it sent is settled now. */
        if (s->refused)
            fp__settle(co, slot, FP_CLIENT_REFUSED, s->why);
        else if (!s->lost)
            fp__settle(co, slot, FP_CLIENT_ABSENT,
                       s->why[0] ? s->why : "the connection ended before its upload");
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
    /* a session being ended keeps the reason it is ended for (a key
     * removed from the allow-list): a write failing meanwhile is only its
     * consequence */
    if (!s->ending || !s->why[0])
        snprintf(s->why, sizeof s->why, "%s", why);
    fp__log(s->co, "%s: %s; connection closed", fp__who(s, who, sizeof who), why);
    fp__session_close(s);
}

/* ---- writing ---- */

static void fp__written(uv_write_t *req, int status)
{
    struct fp__write *w = (struct fp__write *)req;
    struct fp__session *s = w->s;
    s->queued -= w->len;
    s->last_progress = uv_now(&s->co->loop);
    free(w);
    if (status < 0 && status != UV_ECANCELED) {
        /* the peer or the network ended it (EPIPE, ECONNRESET, ...): lost,
         * as when the read side notices first, so its slot is held open
         * for a reconnection; which side notices first is a race */
        if (!s->ending)
            s->lost = 1;
        fp__session_drop(s, uv_strerror(status));
    }
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
        if (!s->ending) /* as in fp__written */
            s->lost = 1;
        fp__session_drop(s, uv_strerror(rc));
        return -1;
    }
    if (!s->queued) /* the write-stall clock starts with the first queued byte */
        s->last_progress = uv_now(&s->co->loop);
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

/* The first round (of a new or a resumed run) starts. */
static void fp__first_round(struct fp__coord *co)
{
    uv_timer_stop(&co->timer);
    co->state = FP__ROUND;
    co->round = co->run.first_round - 1;
    fp__round_next(co);
}

/* The first round starts once every id that has a key is connected (an
 * id revoked with `ID -` is absent from the rounds it is sampled in), or
 * at --wait (fp__round_late); 1 if it started now. */
static int fp__first_round_if_all(struct fp__coord *co)
{
    if (co->state != FP__WAITING || co->connected < co->o->allow->n_keyed)
        return 0;
    fp__first_round(co);
    return 1;
}

/* A key that connects again replaces its session (a client that lost its
 * connection, or was restarted, before this side noticed; or a second
 * process with the same key, which then wins): the old session is told
 * why and ended. An upload it delivered for the open exchange stays in and
 * the new session is told the result; a slot still waiting for its upload
 * stays open for the new session (fp__join). */
static void fp__replace(struct fp__session *old, struct fp__session *s)
{
    struct fp__coord *co = old->co;
    char who[160];
    snprintf(old->why, sizeof old->why, "replaced by a new connection with its key from %s",
             s->addr);
    fp__log(co, "%s: %s; the old connection is closed", fp__who(old, who, sizeof who), old->why);
    old->lost = 1;
    fp__detach(old);
    if (old->slot >= 0 && old->answered) {
        s->slot = old->slot;
        s->answered = 1;
    }
    old->slot = -1;
    fp__send_error(old, old->why);
    fp__session_end(old);
}

/* ---- liveness ---- */

/* Every tick_ms: an admitted session that sent no byte for --dead-peer
 * seconds, or whose queued bytes made no progress for --write-stall
 * seconds, is closed (an ending one has its own bound, fp__session_end).
 * Progress is a finished write or a shorter libuv write queue, so a slow
 * reader of a large broadcast is not a stalled one. */
static void fp__tick(uv_timer_t *t)
{
    struct fp__coord *co = t->data;
    const uint64_t now = uv_now(&co->loop);
    /* The loop itself was busy (an evaluation, a commit): the peers' bytes
     * wait unread meanwhile, which is no fault of theirs. */
    uint64_t busy = now - co->tick_last > 2 * co->tick_ms ? now - co->tick_last - co->tick_ms : 0;
    co->tick_last = now;
    const uint64_t dead = (uint64_t)co->dead_s * 1000;
    const uint64_t stall = (uint64_t)(co->stall_s * 1e3);
    for (uint32_t id = 0; id < co->o->allow->n; id++) {
        struct fp__session *s = co->by_id[id];
        if (!s || s->ending || s->stage != FP__ADMITTED)
            continue;
        s->last_rx += busy;
        s->last_progress += busy;
        const size_t qs = uv_stream_get_write_queue_size((uv_stream_t *)&s->tcp);
        if (qs < s->last_qs)
            s->last_progress = now;
        s->last_qs = qs;
        char why[160];
        if (now - s->last_rx >= dead) {
            s->lost = 1;
            snprintf(why, sizeof why,
                     "sent nothing for %u s, not even a heartbeat (the dead-peer timeout, "
                     "--dead-peer)",
                     co->dead_s);
            fp__session_drop(s, why);
        } else if (s->queued && now - s->last_progress >= stall) {
            snprintf(why, sizeof why,
                     "%zu queued bytes made no progress for %.0f s (the write-stall timeout, "
                     "--write-stall: it does not read)",
                     s->queued, co->stall_s);
            fp__session_drop(s, why);
        }
    }
}

/* The handshake authenticated a key: admit it if the allow-list has it
 * (replacing a session that holds it), else one error record and the
 * close. */
static void fp__on_handshake(struct fp__session *s, const uint8_t key[FP_NOISE_KEY])
{
    struct fp__coord *co = s->co;
    struct fp_run *r = &co->run;
    fp_peer_fingerprint(key, s->fpr);
    int64_t id = fp_allow_find(co->o->allow, key);
    const char *why = id < 0 ? "this key is not in the allow-list"
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
    if (co->by_id[id])
        fp__replace(co->by_id[id], s);
    s->id = id;
    s->stage = FP__ADMITTED;
    s->last_rx = uv_now(&co->loop);
    co->pending--;
    co->by_id[id] = s;
    co->connected++;
    uv_timer_stop(&s->timer);
    fp_chan_admit(s->ch);
    char who[160];
    fp__log(co, "%s admitted (%u of %u connected)", fp__who(s, who, sizeof who), co->connected,
            co->o->allow->n);
    /* round: the last round that included its upload (what a restarted
     * client commits its prepared state by); phase: the dead-peer timeout,
     * which its heartbeats must beat (docs/protocol.md) */
    const struct fp_msg_header h = {.type = FP_MSG_WELCOME,
                                    .run = (uint64_t)r->res.run_id,
                                    .round = co->last_in[id],
                                    .phase = (uint16_t)co->dead_s,
                                    .client = (uint32_t)id,
                                    .len = strlen(r->canon)};
    if (fp__send(s, &h, r->canon))
        return;
    if (!fp__first_round_if_all(co))
        fp__join(s);
}

/* ---- a round's exchange ---- */

static void fp__round_late(uv_timer_t *t)
{
    struct fp__coord *co = t->data;
    if (co->state == FP__WAITING) {
        /* --wait passed without every client: the round starts with those
         * connected if they could make min_updates (its sample is the
         * stream's whoever is connected; a sampled client not connected is
         * absent, and min_updates and the retries judge the round as any
         * other); fewer could never make a round. */
        const uint32_t need = co->run.sc->min_updates;
        if (co->connected >= need) {
            fp__log(co,
                    "%u of the %u clients in the allow-list connected within %.0f s (--wait): "
                    "the first round starts; a sampled client not connected is absent",
                    co->connected, co->o->allow->n_keyed, co->o->wait_s);
            fp__first_round(co);
            return;
        }
        fp_error_set(&co->err, FP_EIO,
                     "only %u of the %u clients in the allow-list connected within %.0f s; a "
                     "round needs [participation] min_updates = %u (check that every client "
                     "runs and pins this coordinator's key)",
                     co->connected, co->o->allow->n_keyed, co->o->wait_s, need);
        fp__fail(co, FP_EIO);
        return;
    }
    co->close_why = FP_PART_WHY_DEADLINE;
    fp__exchange_end(co); /* close with what is in */
}

/* wait_after_min passed after min_updates uploads */
static void fp__min_late(uv_timer_t *t)
{
    struct fp__coord *co = t->data;
    co->close_why = FP_PART_WHY_MIN;
    fp__exchange_end(co);
}

/* The exchange closes when every slot sent the broadcast answered or was
 * settled otherwise (left, refused); min_updates uploads start
 * wait_after_min. An upload the core refuses never counts as answered:
 * where min_updates can close the exchange early it is checked when it
 * comes (fp__on_upload) and settled refused. */
static void fp__exchange_check(struct fp__coord *co)
{
    const struct fp_scenario *sc = co->run.sc;
    if (co->beginning || co->state != FP__ROUND || co->closed)
        return;
    if (co->answered + co->settled >= co->expected) {
        fp__exchange_end(co);
        return;
    }
    if (co->answered >= sc->min_updates && !uv_is_active((uv_handle_t *)&co->min_timer)) {
        if (sc->wait_after_min <= 0) {
            co->close_why = FP_PART_WHY_MIN;
            fp__exchange_end(co);
        } else
            uv_timer_start(&co->min_timer, fp__min_late, (uint64_t)(sc->wait_after_min * 1e3), 0);
    }
}

/* Slot `slot` of the exchange ends without an upload to include. */
static void fp__settle(struct fp__coord *co, uint32_t slot, enum fp_client_status st,
                       const char *why)
{
    if (co->status[slot] != FP_CLIENT_INCLUDED)
        return; /* settled already */
    co->status[slot] = st;
    snprintf(co->why[slot], sizeof co->why[slot], "%.159s", why);
    co->settled++;
    fp__exchange_check(co);
}

/* Sends the exchange's broadcast (header h, the bytes in run/'s buffer) to
 * s for `slot`, and waits for its report and upload. */
static void fp__offer(struct fp__session *s, uint32_t slot, const struct fp_msg_header *h)
{
    struct fp__coord *co = s->co;
    s->slot = slot;
    s->answered = 0;
    const struct fp_msg_header want = {.type = FP_MSG_RESULT,
                                       .run = h->run,
                                       .round = h->round,
                                       .phase = h->phase,
                                       .client = s->id,
                                       .len = FP_CONV_REPORT_LEN};
    fp_chan_expect(s->ch, &want, 0, s->report);
    (void)fp__send(s, h, co->run.bcast + FP_MSG_HEADER); /* a failure closes s */
}

/* A client admitted while an exchange it is sampled in is open (it
 * reconnected): it is sent the broadcast if its slot still waits for an
 * upload; if its upload is in (sent before its old connection ended), it
 * holds the slot to be told the result, which it commits by. */
static void fp__join(struct fp__session *s)
{
    struct fp__coord *co = s->co;
    struct fp_run *r = &co->run;
    struct fp_msg_header h;
    if (co->state != FP__ROUND || s->slot >= 0 || fp_msg_decode_header(r->bcast, &h, &co->err))
        return;
    for (uint32_t slot = 0; slot < r->sc->sample; slot++) {
        if (r->chosen[slot] != (uint32_t)s->id || co->status[slot] != FP_CLIENT_INCLUDED)
            continue;
        if (co->have[slot]) {
            s->slot = slot;
            s->answered = 1;
            return;
        }
        char who[160];
        fp__log(co, "%s rejoins round %u", fp__who(s, who, sizeof who), co->round);
        fp__offer(s, slot, &h);
        return;
    }
}

/* Sends exchange co->phase's broadcast to every participant that can take
 * it, and waits for their reports and uploads. A participant still owing a
 * late upload is absent from it; so is one not connected, unless its
 * connection ended less than a round deadline ago: its slot is held open
 * until the exchange closes, for it to reconnect (fp__join). */
static int fp__exchange_begin(struct fp__coord *co)
{
    struct fp_run *r = &co->run;
    struct fp_msg_header h;
    int rc = fp_msg_decode_header(r->bcast, &h, &co->err);
    if (rc)
        return rc;
    co->answered = co->settled = co->expected = 0;
    co->closed = 0;
    co->next_add = 0;
    co->beginning = 1;
    co->close_why = FP_PART_WHY_ALL;
    for (uint32_t slot = 0; slot < r->sc->sample; slot++) {
        const uint32_t id = r->chosen[slot];
        struct fp__session *s = co->by_id[id];
        co->status[slot] = FP_CLIENT_INCLUDED; /* until settled otherwise */
        co->why[slot][0] = '\0';
        co->have[slot] = FP__NONE;
        co->expected++;
        if (!s && co->gone_at[id] &&
            uv_now(&co->loop) - co->gone_at[id] < (uint64_t)(co->deadline_s * 1e3))
            continue; /* it left less than a deadline ago: held open for it (fp__join) */
        if (!s || s->owes) {
            char why[160];
            if (s)
                snprintf(why, sizeof why, "still sending its late upload of round %u",
                         s->owe_round);
            else if (co->gone[id][0])
                snprintf(why, sizeof why,
                         "not connected when sampled (its last connection: %.100s)", co->gone[id]);
            else
                snprintf(why, sizeof why, "not connected when sampled");
            fp__settle(co, slot, FP_CLIENT_ABSENT, why);
            continue;
        }
        fp__offer(s, slot, &h);
    }
    co->beginning = 0;
    if (co->state != FP__ROUND)
        return co->rc ? co->rc : FP_EIO;
    uv_timer_start(&co->timer, fp__round_late, (uint64_t)(co->deadline_s * 1e3), 0);
    fp__exchange_check(co);
    return 0;
}

/* Tells the client of `slot` whether its upload of this round was
 * included (its state commits only then). */
static void fp__tell(struct fp__coord *co, uint32_t slot, int included)
{
    struct fp_run *r = &co->run;
    struct fp__session *s = co->by_id[r->chosen[slot]];
    /* only a client that was sent this exchange and still holds the slot
     * (not one that turned late, nor one absent from it) */
    if (!s || s->slot != (int64_t)slot || s->stage == FP__CLOSING)
        return;
    s->slot = -1;
    const uint8_t v = included ? FP_CONV_INCLUDED : FP_CONV_NOT_INCLUDED;
    const struct fp_msg_header h = {.type = FP_MSG_RESULT,
                                    .run = (uint64_t)r->res.run_id,
                                    .round = co->round,
                                    .client = r->chosen[slot],
                                    .len = 1};
    fp__send(s, &h, &v);
}

struct fp__eval_job {
    struct fp_run *r;
    void *wws;
    atomic_uint *next;
};

static void fp__eval_worker(void *arg)
{
    const struct fp__eval_job *j = arg;
    fp_run_eval_blocks(j->r, j->wws, j->next);
}

/* The test set on every core, block by block as the simulator's team does
 * it (the same bits as one thread): the clients wait for the next
 * broadcast meanwhile, so on one thread the evaluation of a large test set
 * was most of the coordinator's share of a round. A thread that cannot be
 * started leaves its blocks to the others. */
static void fp__evaluate(struct fp__coord *co)
{
    struct fp_run *r = &co->run;
    if (co->nwws < 2) {
        fp_run_evaluate(r, co->wws[0]);
        return;
    }
    atomic_uint next = 0;
    uv_thread_t tid[FP__EVAL_THREADS];
    struct fp__eval_job job[FP__EVAL_THREADS];
    unsigned started = 1;
    for (unsigned t = 0; t < co->nwws; t++)
        job[t] = (struct fp__eval_job){.r = r, .wws = co->wws[t], .next = &next};
    while (started < co->nwws && !uv_thread_create(&tid[started], fp__eval_worker, &job[started]))
        started++;
    fp__eval_worker(&job[0]);
    for (unsigned t = 1; t < started; t++)
        uv_thread_join(&tid[t]);
    fp_run_eval_sum(r);
}

static int fp__round_commit(struct fp__coord *co)
{
    struct fp_run *r = &co->run;
    int rc;
    const uint32_t S = r->sc->sample;
    fp_run_round_end(r);
    if (r->evaluate)
        fp__evaluate(co);
    /* every sampled client not included, with why, after the included rows */
    struct fp_client_round *others = calloc(S, sizeof *others);
    if (!others)
        return fp_error_set(&co->err, FP_ENOMEM, "out of memory for round %u's rows", co->round);
    uint32_t n = 0, late = 0, absent = 0, refused = 0;
    for (uint32_t slot = 0; slot < S; slot++) {
        if (co->status[slot] == FP_CLIENT_INCLUDED)
            continue;
        struct fp_client_round *c = &others[n++];
        c->client = r->chosen[slot];
        c->train_loss = NAN;
        c->examples = r->w->n_local ? r->w->n_local[c->client] : 0;
        c->status = co->status[slot];
        snprintf(c->reason, sizeof c->reason, "%s", co->why[slot]);
        late += c->status == FP_CLIENT_LATE;
        absent += c->status == FP_CLIENT_ABSENT;
        refused += c->status == FP_CLIENT_REFUSED;
    }
    r->row.others = others;
    r->row.n_others = n;
    rc = fp_run_commit(r, &co->err);
    r->row.others = NULL;
    r->row.n_others = 0;
    free(others);
    if (rc)
        return rc;
    for (uint32_t slot = 0; slot < S; slot++)
        if (co->status[slot] == FP_CLIENT_INCLUDED)
            co->last_in[r->chosen[slot]] = co->round;
    if (co->o->test_die_round == co->round)
        raise(SIGKILL);
    if (n)
        fp__log(co, "round %u: %u of %u sampled clients included, %u late, %u absent, %u refused",
                co->round, S - n, S, late, absent, refused);
    for (uint32_t slot = 0; slot < S; slot++)
        fp__tell(co, slot, co->status[slot] == FP_CLIENT_INCLUDED);
    return 0;
}

static void fp__round_start(struct fp__coord *co);

/* The log line of an upload the core refused (when it came, or as the
 * exchange closed). */
static void fp__log_refused(struct fp__coord *co, struct fp__session *s, const char *why)
{
    char who[160];
    fp__log(co, "round %u: %s's upload refused: %s", co->round, fp__who(s, who, sizeof who), why);
}

/* Adds the hashed uploads that come next in slot order to the aggregate
 * (fp__coord.next_add); a slot still waiting for its upload stops it. One
 * the core refuses is marked FP__BAD, with why, and is refused when the
 * exchange ends (only where min_updates is all of the sample, which no
 * early close depends on: elsewhere fp__on_upload refused it already).
 * -1 if the run failed. */
static int fp__add_ready(struct fp__coord *co)
{
    struct fp_run *r = &co->run;
    for (; co->state == FP__ROUND && co->next_add < r->sc->sample; co->next_add++) {
        const uint32_t slot = co->next_add;
        if (co->status[slot] != FP_CLIENT_INCLUDED)
            continue; /* settled: it stays out */
        if (co->have[slot] != FP__HASHED)
            break;
        int rc = fp_run_include(r, slot, co->up[slot], co->upload_len[slot], co->loss[slot],
                                co->phase == 0 ? co->sha[slot] : NULL, &co->err);
        if (rc == FP_EFORMAT) {
            co->have[slot] = FP__BAD;
            snprintf(co->why[slot], sizeof co->why[slot], "%.159s", co->err.msg);
        } else if (rc) {
            fp__fail(co, rc);
            return -1;
        } else {
            co->have[slot] = FP__ADDED;
        }
    }
    return co->state == FP__ROUND ? 0 : -1;
}

/* The exchange closes (all in, the deadline, or min_updates and
 * wait_after_min): a participant that did not answer is late, what came
 * is in; then fp__exchange_finish, now or when the last hash is done. */
static void fp__exchange_end(struct fp__coord *co)
{
    struct fp_run *r = &co->run;
    const struct fp_scenario *sc = r->sc;
    if (co->state != FP__ROUND || co->closed)
        return;
    co->closed = 1;
    uv_timer_stop(&co->timer);
    uv_timer_stop(&co->min_timer);
    uint32_t in = 0;
    for (uint32_t slot = 0; slot < sc->sample; slot++) {
        struct fp__session *s = co->by_id[r->chosen[slot]];
        if (co->status[slot] != FP_CLIENT_INCLUDED)
            continue;
        if (co->have[slot]) { /* in, even if its connection closed since */
            in++;
            continue;
        }
        /* It owes this round's report and upload: they go to a buffer of
         * its own (the slot's, which may be filling already), and are
         * refused as late when they come. */
        const int holds = s && s->slot == (int64_t)slot;
        const uint32_t id = r->chosen[slot];
        if (holds)
            snprintf(co->why[slot], sizeof co->why[slot], "no upload when the round closed (%s)",
                     co->close_why);
        else /* held open for a reconnection that did not come in time */
            snprintf(co->why[slot], sizeof co->why[slot],
                     "not connected when the round closed (its last connection: %.100s)",
                     co->gone[id][0] ? co->gone[id] : "none");
        co->status[slot] = holds ? FP_CLIENT_LATE : FP_CLIENT_ABSENT;
        if (holds) {
            uint8_t *fresh = malloc(co->upload_cap);
            if (!fresh) {
                fp_error_set(&co->err, FP_ENOMEM, "out of memory for an upload buffer");
                fp__fail(co, FP_ENOMEM);
                return;
            }
            free(s->late_buf);
            s->late_buf = co->up[slot];
            co->up[slot] = fresh;
            s->owes = 1;
            s->owe_round = co->round;
            s->slot = -1;
        }
    }
    co->in = in;
    if (!co->hashing)
        fp__exchange_finish(co);
}

/* The closed exchange, once its uploads' hashes are done: its uploads
 * are included in ascending client id (slot order; those not yet added),
 * the ones the core refuses marked refused; then, below min_updates valid
 * uploads, the round is tried again (what was added is dropped with the
 * new broadcast), else the next exchange or the round's end. A refused
 * upload never counts toward min_updates: the minimum is of updates
 * aggregated, not of messages received. */
static void fp__exchange_finish(struct fp__coord *co)
{
    struct fp_run *r = &co->run;
    const struct fp_scenario *sc = r->sc;
    if (co->state != FP__ROUND)
        return;
    if (fp__add_ready(co))
        return;
    uint32_t in = 0;
    for (uint32_t slot = 0; slot < sc->sample; slot++) {
        if (co->status[slot] != FP_CLIENT_INCLUDED)
            continue;
        if (co->have[slot] != FP__BAD) {
            in++;
            continue;
        }
        /* The core refused it (wrong size, not finite, not canonical):
         * never aggregated; the server's state is unchanged and the round
         * goes on with the others. */
        struct fp__session *s = co->by_id[r->chosen[slot]];
        co->status[slot] = FP_CLIENT_REFUSED;
        if (s)
            fp__log_refused(co, s, co->why[slot]);
    }
    co->in = in;
    if (in < sc->min_updates) {
        for (uint32_t slot = 0; slot < sc->sample; slot++)
            if (co->status[slot] == FP_CLIENT_INCLUDED || co->status[slot] == FP_CLIENT_REFUSED)
                fp__tell(co, slot, 0);
        /* stored before the next attempt starts (or the run fails): a live
         * run's failing round is in the store, not only in the log */
        char line[1280];
        int rc = fp_run_attempt_failed(r, co->attempt, in, co->status, (const char(*)[160])co->why,
                                       line, sizeof line, &co->err);
        if (rc) {
            fp__fail(co, rc);
            return;
        }
        co->attempt++;
        fp__log(co, "%s", line);
        fp__round_start(co);
        return;
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
    uv_close((uv_handle_t *)&co->min_timer, NULL);
    uv_close((uv_handle_t *)&co->tick, NULL);
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
        fp_run_fail(r, &co->err);
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
    co->attempt = 0;
    fp__round_start(co);
}

/* Samples round co->round (the same clients on every attempt: the sample
 * is keyed by the round) and sends its first broadcast; an attempt after
 * one below min_updates sends the same bytes, since nothing was applied. */
static void fp__round_start(struct fp__coord *co)
{
    struct fp_run *r = &co->run;
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
    fp_run_fail(&co->run, &co->err);
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
    if (s->owes) { /* a late round's report: its upload follows, refused as late */
        const struct fp_msg_header want = {.type = FP_MSG_UPLOAD,
                                           .run = (uint64_t)co->run.res.run_id,
                                           .round = s->owe_round,
                                           .phase = 0,
                                           .client = (uint32_t)s->id};
        fp_chan_expect(s->ch, &want, co->upload_cap - FP_MSG_HEADER, s->late_buf + FP_MSG_HEADER);
        return;
    }
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
    fp_chan_expect(s->ch, &want, co->upload_cap - FP_MSG_HEADER, co->up[s->slot] + FP_MSG_HEADER);
}

/* On the thread pool (or the loop): the buffers it reads and writes are
 * the slot's, which nothing else touches until the exchange is finished. */
static void fp__hash_work(uv_work_t *req)
{
    const struct fp__hash_job *j = req->data;
    struct fp__coord *co = j->co;
    fp_sha256_hex(co->up[j->slot] + FP_MSG_HEADER, co->upload_len[j->slot] - FP_MSG_HEADER,
                  co->sha[j->slot]);
}

/* On the thread pool. */
static void fp__hash_pool(uv_work_t *req)
{
    const struct fp__hash_job *j = req->data;
    if (j->co->o->test_slow_hash_s > 0) /* TEST ONLY: fp_coord_options.test_slow_hash_s */
        uv_sleep((unsigned)(j->co->o->test_slow_hash_s * 1e3));
    fp__hash_work(req);
}

/* On the loop, once a hash is done: the upload can be added; a closed
 * exchange that waited for its last hash finishes. */
static void fp__hashed(uv_work_t *req, int status)
{
    const struct fp__hash_job *j = req->data;
    struct fp__coord *co = j->co;
    (void)status; /* never cancelled: the loop runs until every job is back */
    co->hashing--;
    if (co->state != FP__ROUND)
        return;
    co->have[j->slot] = FP__HASHED;
    if (!co->closed)
        (void)fp__add_ready(co);
    else if (!co->hashing)
        fp__exchange_finish(co);
}

static void fp__on_upload(struct fp__session *s, const struct fp_msg_header *h)
{
    struct fp__coord *co = s->co;
    if (s->owes) {
        /* after its round closed: never aggregated, and the client is told
         * so (its state stays as it was) */
        char who[160];
        fp__log(co, "%s: its upload of round %u came after the round closed; refused as late",
                fp__who(s, who, sizeof who), s->owe_round);
        const uint8_t v = FP_CONV_NOT_INCLUDED;
        const struct fp_msg_header rh = {.type = FP_MSG_RESULT,
                                         .run = (uint64_t)co->run.res.run_id,
                                         .round = s->owe_round,
                                         .client = (uint32_t)s->id,
                                         .len = 1};
        s->owes = 0;
        free(s->late_buf);
        s->late_buf = NULL;
        fp__send(s, &rh, &v);
        return;
    }
    const uint32_t slot = (uint32_t)s->slot;
    fp_msg_encode_header(h, co->up[slot]);
    co->upload_len[slot] = FP_MSG_HEADER + (size_t)h->len;
    s->answered = 1;
    if (co->run.sc->min_updates < co->expected) {
        /* An upload the core will refuse must not count toward
         * min_updates when it comes (the round could close on it, then
         * fall short): decoded once here where the minimum can close the
         * round before every slot answered (with min_updates = all of
         * them it cannot, and fp__add_ready's verdict is soon enough). */
        int rc = fp_run_check(&co->run, slot, co->up[slot], co->upload_len[slot], &co->err);
        if (rc == FP_EFORMAT) {
            fp__log_refused(co, s, co->err.msg);
            fp__settle(co, slot, FP_CLIENT_REFUSED, co->err.msg);
            return;
        }
        if (rc) {
            fp__fail(co, rc);
            return;
        }
    }
    co->have[slot] = FP__IN;
    /* Hashed now, while the others still train, rather than one after the
     * other when the exchange ends (20 MLP uploads took ~30 ms of the
     * round's critical path there; the simulator hashes on its workers),
     * and on the thread pool, so that the loop goes on reading, decrypting
     * and sending meanwhile and uploads that come together are hashed on
     * every core; then added in slot order (fp__add_ready). On the loop
     * instead: a later phase's upload (only phase 0's is hashed), a small
     * one (FP__HASH_POOL_MIN), the exchange's last one (the loop has
     * nothing else to do then: no hand-over to a thread and back), or if
     * the pool refuses the job. */
    struct fp__hash_job *j = &co->hjob[slot];
    j->co = co;
    j->slot = slot;
    j->req.data = j;
    const int inline_hash =
        co->answered + co->settled + 1 >= co->expected || h->len < FP__HASH_POOL_MIN;
    if (co->phase > 0 || inline_hash ||
        uv_queue_work(&co->loop, &j->req, fp__hash_pool, fp__hashed)) {
        if (co->phase == 0)
            fp__hash_work(&j->req);
        co->have[slot] = FP__HASHED;
        if (fp__add_ready(co))
            return;
    } else {
        co->hashing++;
    }
    /* Nothing more is expected from this client until the next broadcast:
     * the channel has no expectation, so only its heartbeats (which keep
     * the dead-peer timer quiet) or an error get through; anything else
     * closes it. The socket stays read into the session's fixed buffer. */
    co->answered++;
    fp__exchange_check(co);
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
    *b = uv_buf_init((char *)s->co->rbuf, sizeof s->co->rbuf);
}

static void fp__read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct fp__session *s = st->data;
    if (nread < 0) {
        s->lost = 1;
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
    s->last_rx = uv_now(&s->co->loop);
    while (s->stage != FP__CLOSING) {
        size_t used;
        struct fp_chan_event ev;
        int rc = fp_chan_feed(s->ch, p, n, &used, &ev);
        if (rc) {
            /* the channel's checks (fp_msg_check: a stale round or phase, a
             * replayed or duplicate record, a size over the cap) refused it */
            s->refused = s->stage == FP__ADMITTED;
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
    const char *group; /* only connections from this address group (NULL: any) */
    unsigned count;    /* the connections that match */
    struct fp__session *best;
};

/* The group a peer's address counts in for the per-address cap: an IPv4
 * address (also written as an IPv4-mapped IPv6 one, from a dual-stack
 * listener), or an IPv6 address's /64. One host gets a /64 (SLAAC, and
 * every provider's smallest allocation), so a cap per IPv6 address would
 * hold one host to nothing: it picks a new source address per connection. */
static void fp__addr_group(const struct sockaddr *sa, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
        snprintf(out, cap, "%s", ip);
    } else if (sa->sa_family == AF_INET6) {
        struct in6_addr a = ((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&a)) {
            inet_ntop(AF_INET, &a.s6_addr[12], ip, sizeof ip);
            snprintf(out, cap, "%s", ip);
        } else {
            memset(&a.s6_addr[8], 0, 8);
            inet_ntop(AF_INET6, &a, ip, sizeof ip);
            snprintf(out, cap, "%s/64", ip);
        }
    } else {
        snprintf(out, cap, "?");
    }
}

static void fp__find_oldest(uv_handle_t *h, void *arg)
{
    struct fp__oldest *o = arg;
    struct fp__session *s = h->data;
    if (h->type != UV_TCP || uv_is_closing(h) || !s || (void *)s == (void *)s->co || s == o->skip ||
        s->stage != FP__HANDSHAKE)
        return;
    if (o->group && strcmp(s->group, o->group))
        return;
    o->count++;
    if (!o->best || s->born < o->best->born)
        o->best = s;
}

/* The oldest connection still in its handshake, other than skip (from the
 * address group `group` if it is not NULL); *count: how many. */
static struct fp__session *fp__oldest_pending(struct fp__coord *co, const struct fp__session *skip,
                                              const char *group, unsigned *count)
{
    struct fp__oldest o = {.co = co, .skip = skip, .group = group};
    uv_walk(&co->loop, fp__find_oldest, &o);
    if (count)
        *count = o.count;
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
    snprintf(s->group, sizeof s->group, "?");
    if (!uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&sa, &len)) {
        fp_peer_addr_name((struct sockaddr *)&sa, s->addr, sizeof s->addr);
        fp__addr_group((struct sockaddr *)&sa, s->group, sizeof s->group);
    }
    s->born = uv_now(&co->loop);
    /* One address (an IPv6 /64: fp__addr_group) holds at most
     * max_pending_per_address of them: a flood from one host closes its
     * own oldest connections, so it cannot push the others' handshakes out
     * through the total cap below. (No address can be over it while the
     * total is not.) */
    if (co->o->max_pending_per_address && co->pending > co->o->max_pending_per_address) {
        unsigned same;
        struct fp__session *old = fp__oldest_pending(co, s, s->group, &same);
        if (old && same >= co->o->max_pending_per_address)
            fp__session_drop(old, "too many connections in their handshake from this address: "
                                  "its oldest one is closed");
    }
    if (co->pending > co->o->max_pending) {
        /* The oldest goes, not the newest: an honest handshake takes one
         * round trip, so connections that sit silent (or trickle) fill the
         * slots; refusing the newcomer would let them lock every client
         * out until they time out, and open new ones. */
        struct fp__session *old = fp__oldest_pending(co, s, NULL, NULL);
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
    if (co->state == FP__DONE)
        return;
    if (co->o->stop)
        *co->o->stop = 1;
    if (co->state == FP__WAITING) {
        /* No round is under way: the run stops now, 'interrupted' like a
         * stop after a round (exit 130, a clean stop for systemd's
         * SuccessExitStatus=130, and --resume-or-start continues it after
         * its last committed round); the clients already connected are
         * told it stopped. */
        fp__log(co, "%s before the first round: the run stops now",
                signum == SIGINT ? "SIGINT" : "SIGTERM");
        fp__finish(co);
        return;
    }
    /* run/ finishes the round in progress, then stops (fp_run_next) */
    fp__log(co, "stopping after the round in progress");
}

/* fp_allow_update's question: a client holds algorithm state once one of
 * its uploads was included, if the algorithm keeps any (SCAFFOLD's c_i,
 * FedEF's e_i ...). last_in says which were: filled from the store when a
 * run is resumed, then by every round's commit. */
static int fp__has_state(void *u, uint32_t id)
{
    const struct fp__coord *co = u;
    return fp_algo_client_state_bytes(&co->run.p) > 0 && co->last_in[id] > 0;
}

/* SIGHUP: clients.pub is read again. A list that does not load, changes
 * N or hands a client with state to another key is refused, and the one in
 * use is kept (logged; the run goes on). Otherwise it replaces it: a key
 * added can connect from now on; a session whose key was removed or
 * changed is told and closed (its slot in a round in progress is then
 * absent, with that reason). */
static void fp__on_hup(uv_signal_t *h, int signum)
{
    struct fp__coord *co = h->data;
    struct fp_allow *cur = co->o->allow, fresh;
    const char *path = co->o->allow_path;
    (void)signum;
    if (!path || co->state == FP__DONE)
        return;
    const uint32_t N = cur->n;
    struct fp_error e = {0};
    int rc = fp_allow_load(&fresh, path, &e);
    if (!rc && (rc = fp_allow_update(cur, &fresh, path, fp__has_state, co, &e)))
        fp_allow_free(&fresh);
    if (rc) {
        fp__log(co, "SIGHUP: %s; the allow-list in use is kept", e.msg);
        return;
    }
    uint32_t closed = 0;
    for (uint32_t id = 0; id < N; id++) {
        struct fp__session *s = co->by_id[id];
        if (!s || s->ending || !memcmp(cur->keys[id], fresh.keys[id], FP_NOISE_KEY))
            continue;
        char who[160];
        snprintf(s->why, sizeof s->why, "its key was removed from the allow-list");
        fp__log(co, "%s: its key is no longer in %s (SIGHUP); session closed",
                fp__who(s, who, sizeof who), path);
        fp__send_error(s, "your key was removed from the coordinator's allow-list");
        fp__session_end(s);
        closed++;
    }
    fp_allow_free(cur);
    *cur = fresh;
    fp__log(co, "SIGHUP: %s re-read: %u of the %u clients have a key; %u session%s closed", path,
            cur->n_keyed, N, closed, closed == 1 ? "" : "s");
    fp__first_round_if_all(co);
}

/* --listen's host as a socket address: an IPv4 or IPv6 address, never a
 * host name (a name may stand for several addresses, or for another one
 * after a restart; which one a coordinator listens on must be plain). */
static int fp__listen_addr(const char *host, int port, struct sockaddr_storage *sa,
                           struct fp_error *err)
{
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)sa) &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)sa))
        return fp_error_set(err, FP_EINVAL,
                            "--listen %s: not an IP address (use 0.0.0.0 for every IPv4 "
                            "interface, [::] for IPv6, or one address of this machine)",
                            host);
    return 0;
}

int fp_coord_check_listen(const char *host, int port, struct fp_error *err)
{
    struct sockaddr_storage sa;
    return fp__listen_addr(host, port, &sa, err);
}

static int fp__listen(struct fp__coord *co)
{
    const struct fp_coord_options *o = co->o;
    struct sockaddr_storage sa;
    if (fp__listen_addr(o->host, o->port, &sa, &co->err))
        return FP_EINVAL;
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
    co->up = calloc(S, sizeof *co->up);
    for (uint32_t i = 0; co->up && i < S; i++)
        if (!(co->up[i] = malloc(co->upload_cap)))
            return fp_error_set(&co->err, FP_ENOMEM, "out of memory for %u uploads of %zu bytes", S,
                                co->upload_cap);
    co->status = calloc(S, sizeof *co->status);
    co->have = calloc(S, sizeof *co->have);
    co->gone = calloc(co->o->allow->n, sizeof *co->gone);
    co->gone_at = calloc(co->o->allow->n, sizeof *co->gone_at);
    co->last_in = calloc(co->o->allow->n, sizeof *co->last_in); /* 0: none included */
    co->why = calloc(S, sizeof *co->why);
    co->sha = calloc(S, sizeof *co->sha);
    co->hjob = calloc(S, sizeof *co->hjob);
    co->upload_len = calloc(S, sizeof *co->upload_len);
    co->loss = calloc(S, sizeof *co->loss);
    co->by_id = calloc(co->o->allow->n, sizeof *co->by_id);
    /* one evaluating thread per core, never more than the test set's blocks */
    co->nwws = co->ro.threads;
    if (co->nwws > r->eval_nblocks)
        co->nwws = r->eval_nblocks ? (unsigned)r->eval_nblocks : 1;
    co->wws = calloc(co->nwws, sizeof *co->wws);
    for (unsigned t = 0; co->wws && t < co->nwws; t++)
        if (!(co->wws[t] = fp_workload_ws_new(r->w)))
            return fp_error_set(&co->err, FP_ENOMEM, "out of memory for evaluation");
    if (!co->up || !co->status || !co->why || !co->sha || !co->hjob || !co->have || !co->gone ||
        !co->last_in || !co->upload_len || !co->loss || !co->by_id || !co->wws)
        return fp_error_set(&co->err, FP_ENOMEM, "out of memory for %u uploads of %zu bytes", S,
                            co->upload_cap);
    /* two whole messages (a broadcast and a result) and the error record */
    co->write_cap = 2 * (size_t)fp_chan_wire_size(fp_algo_broadcast_cap(&r->p)) + 65536;
    /* A resumed run: each client's last included round from the store, which
     * its welcome carries, so that a client that was restarted, or that never
     * heard its last result before the crash, commits or drops its prepared
     * state (a new run: all 0, none). */
    return fp_store_last_included(co->run.store, co->run.res.run_id, co->o->allow->n, co->last_in,
                                  &co->err);
}

void fp_coord_tune_malloc(void)
{
#ifdef M_TRIM_THRESHOLD
    /* buffers up to 32 MiB come from the heap, and up to 64 MiB of it stays
     * when freed (setting either ends glibc's own adjustment of both) */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
}

int fp_coord_check(const struct fp_scenario *sc, const struct fp_allow *allow, double deadline_s,
                   struct fp_error *err)
{
    if (allow->n != sc->clients)
        return fp_error_set(err, FP_EINVAL,
                            "the allow-list has %u clients but the scenario has [data] clients "
                            "= %u: give every client id 0 to %u a key",
                            allow->n, sc->clients, sc->clients - 1);
    if (!(deadline_s > 0) && !(sc->deadline > 0))
        return fp_error_set(err, FP_EINVAL,
                            "the scenario has no round deadline: add [participation] deadline = "
                            "SECONDS (or give --deadline SECONDS)");
    return 0;
}

int fp_coord_run(const struct fp_scenario *sc, struct fp_store *store,
                 const struct fp_coord_options *o, struct fp_run_result *res, struct fp_error *err)
{
    int rc = fp_coord_check(sc, o->allow, o->deadline_s, err);
    if (rc)
        return rc;
    fp_coord_tune_malloc();
    struct fp__coord *co = calloc(1, sizeof *co);
    if (!co)
        return fp_error_set(err, FP_ENOMEM, "out of memory");
    co->o = o;
    /* The coordinator holds no client's data: the test set only. */
    unsigned cores = uv_available_parallelism();
    co->ro = (struct fp_run_options){.threads = cores < FP__EVAL_THREADS ? cores : FP__EVAL_THREADS,
                                     .progress = o->progress,
                                     .stop = o->stop,
                                     .create_workload = fp_workload_create_test,
                                     .resume = o->resume,
                                     .resume_run = o->resume_run,
                                     /* a kill -9 loses no committed round */
                                     .checkpoint_every = 1};
    rc = uv_loop_init(&co->loop);
    if (rc) {
        free(co);
        return fp_error_set(err, FP_EIO, "cannot start the event loop: %s", uv_strerror(rc));
    }
    uv_timer_init(&co->loop, &co->timer);
    uv_timer_init(&co->loop, &co->min_timer);
    uv_timer_init(&co->loop, &co->tick);
    co->timer.data = co->min_timer.data = co->tick.data = co;
    co->dead_s = o->dead_peer_s ? o->dead_peer_s : 30;
    co->stall_s = o->write_stall_s > 0 ? o->write_stall_s : 30;
    /* --deadline overrides the scenario's [participation] deadline */
    co->deadline_s = o->deadline_s > 0 ? o->deadline_s : sc->deadline;
    uv_signal_init(&co->loop, &co->sigint);
    uv_signal_init(&co->loop, &co->sigterm);
    co->sigint.data = co->sigterm.data = co;
    uv_signal_start(&co->sigint, fp__on_signal, SIGINT);
    uv_signal_start(&co->sigterm, fp__on_signal, SIGTERM);
    uv_unref((uv_handle_t *)&co->sigint);
    uv_unref((uv_handle_t *)&co->sigterm);
    /* SIGHUP re-reads clients.pub (a daemon has no terminal to hang up) */
    uv_signal_init(&co->loop, &co->sighup);
    co->sighup.data = co;
    uv_signal_start(&co->sighup, fp__on_hup, SIGHUP);
    uv_unref((uv_handle_t *)&co->sighup);

    if ((rc = fp_run_open(&co->run, sc, store, &co->ro, &co->err)) || (rc = fp__setup(co)) ||
        (rc = fp__listen(co))) {
        fp_run_fail(&co->run, &co->err);
        if (co->listener.loop && !uv_is_closing((uv_handle_t *)&co->listener))
            uv_close((uv_handle_t *)&co->listener, NULL);
        uv_close((uv_handle_t *)&co->timer, NULL);
        uv_close((uv_handle_t *)&co->min_timer, NULL);
        uv_close((uv_handle_t *)&co->tick, NULL);
        co->state = FP__DONE;
        co->rc = rc;
    } else {
        co->state = FP__WAITING;
        uv_timer_start(&co->timer, fp__round_late, (uint64_t)(o->wait_s * 1e3), 0);
        /* an eighth of the shorter timeout: closed within 12.5 % of it */
        double shorter = co->stall_s < co->dead_s ? co->stall_s : co->dead_s;
        co->tick_ms = (uint64_t)(shorter * 1e3 / 8);
        co->tick_ms = co->tick_ms < 50 ? 50 : co->tick_ms > 1000 ? 1000 : co->tick_ms;
        co->tick_last = uv_now(&co->loop);
        uv_timer_start(&co->tick, fp__tick, co->tick_ms, co->tick_ms);
    }
    uv_run(&co->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&co->sigint, NULL);
    uv_close((uv_handle_t *)&co->sigterm, NULL);
    uv_close((uv_handle_t *)&co->sighup, NULL);
    uv_run(&co->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&co->loop))
        fp__log(co, "warning: event loop handles left open at exit");
    sodium_memzero(co->rbuf, sizeof co->rbuf);
    *res = co->run.res;
    rc = co->rc;
    if (rc)
        *err = co->err;
    for (unsigned t = 0; co->wws && t < co->nwws; t++)
        if (co->wws[t])
            fp_workload_ws_free(co->run.w, co->wws[t]);
    free(co->wws);
    fp_run_close(&co->run);
    for (uint32_t i = 0; co->up && i < sc->sample; i++)
        free(co->up[i]);
    free(co->up);
    free(co->status);
    free(co->have);
    free(co->gone);
    free(co->gone_at);
    free(co->last_in);
    free(co->why);
    free(co->sha);
    free(co->hjob);
    free(co->upload_len);
    free(co->loss);
    free(co->by_id);
    free(co);
    return rc;
}
