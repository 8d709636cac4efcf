/*
 * client/client.c — the client daemon's event loop (see client.h; the
 * conversation is net/conversation.h).
 *
 * One TCP handle in a plain struct, closed once at the end; a write owns its
 * buffer until its callback. Training runs inside the read callback, so
 * nothing more is read from the coordinator while a message is being
 * processed (backpressure for free; heartbeats during training come with
 * the worker thread of a later slice).
 */
#include "client.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "../algorithms/algorithm.h"
#include "../core/hash.h"
#include "../core/scenario.h"
#include "../net/channel.h"
#include "../net/conversation.h"
#include "../workloads/workload.h"

struct fp__client {
    uv_loop_t loop;
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_timer_t timer; /* the welcome deadline */
    const struct fp_client_options *o;
    struct fp_chan *ch;
    int welcomed, done, closing;
    int write_failed; /* the first failed write's status, while its reason is awaited */
    int64_t run;
    uint32_t id, round;
    int may_repeat; /* the last result was "not included": its round may come again */
    struct fp_scenario sc;
    struct fp_workload *w;
    struct fp_algo_params p;
    int have_p;
    struct fp_algo_ws aws;
    void *wws;
    struct fp_client_state cs, pending;
    uint8_t *in; /* [FP_MSG_HEADER + in_cap]: a broadcast message, or a result */
    size_t in_cap;
    uint8_t *up; /* [up_cap]: the upload message */
    size_t up_cap;
    char state_path[4096];
    int rc;
    struct fp_error err;
    struct fp_client_result *res;
    uint8_t rbuf[FP_CHAN_RECORD_WIRE_MAX];
};

struct fp__write {
    uv_write_t req;
    struct fp__client *c;
    uint8_t buf[];
};

static void fp__log(struct fp__client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fp__log(struct fp__client *c, const char *fmt, ...)
{
    if (!c->o->log)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (c->welcomed)
        fprintf(c->o->log, "fedpress client %u: ", c->id);
    else
        fprintf(c->o->log, "fedpress client: ");
    vfprintf(c->o->log, fmt, ap);
    fprintf(c->o->log, "\n");
    fflush(c->o->log);
    va_end(ap);
}

static void fp__close(struct fp__client *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, NULL);
    uv_close((uv_handle_t *)&c->timer, NULL);
}

/* The run cannot go on for this client: keep the first reason, close. */
static void fp__fail(struct fp__client *c, int rc)
{
    if (!c->rc)
        c->rc = rc ? rc : FP_EIO;
    fp__close(c);
}

static void fp__write_failed(uv_timer_t *t)
{
    struct fp__client *c = t->data;
    fp_error_set(&c->err, FP_EIO, "writing to the coordinator %s:%d: %s", c->o->host, c->o->port,
                 uv_strerror(c->write_failed));
    fp__fail(c, FP_EIO);
}

static void fp__written(uv_write_t *req, int status)
{
    struct fp__write *w = (struct fp__write *)req;
    struct fp__client *c = w->c;
    free(w);
    if (status < 0 && status != UV_ECANCELED && !c->closing && !c->write_failed) {
        /* The coordinator may have sent its reason (an error message) and
         * closed while this upload was on its way: read what it sent first,
         * and fail with this only if no reason comes (fp__read), or after
         * 2 s. */
        c->write_failed = status;
        uv_timer_start(&c->timer, fp__write_failed, 2000, 0);
    }
}

static int fp__write(struct fp__client *c, const void *bytes, size_t n,
                     const struct fp_msg_header *h)
{
    size_t cap = h ? (size_t)fp_chan_wire_size(h->len) : n;
    struct fp__write *w = malloc(sizeof *w + cap);
    if (!w) {
        fp_error_set(&c->err, FP_ENOMEM, "out of memory for a %zu-byte write", cap);
        fp__fail(c, FP_ENOMEM);
        return -1;
    }
    w->c = c;
    size_t len = n;
    if (h) {
        if (fp_chan_send(c->ch, h, bytes, w->buf, cap, &len)) {
            free(w);
            fp_error_set(&c->err, FP_EIO, "the channel refused to send: %s", fp_chan_error(c->ch));
            fp__fail(c, FP_EIO);
            return -1;
        }
    } else {
        memcpy(w->buf, bytes, n);
    }
    uv_buf_t b = uv_buf_init((char *)w->buf, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, fp__written);
    if (rc) {
        free(w);
        fp_error_set(&c->err, FP_EIO, "writing to the coordinator: %s", uv_strerror(rc));
        fp__fail(c, FP_EIO);
        return -1;
    }
    return 0;
}

static int fp__flush_handshake(struct fp__client *c)
{
    size_t n;
    const uint8_t *p = fp_chan_output(c->ch, &n);
    return n ? fp__write(c, p, n, NULL) : 0;
}

/* ---- state on disk ---- */

/* Writes the file whole or not at all: a crash leaves the old state or the
 * new one, never half of one. */
static int fp__write_atomic(const char *path, const void *data, size_t len, struct fp_error *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return fp_error_set(err, FP_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    const uint8_t *p = data;
    size_t off = 0;
    while (off < len) {
        ssize_t k = write(fd, p + off, len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return fp_error_set(err, FP_EIO, "%s: cannot write: %s", tmp, strerror(e));
        }
        off += (size_t)k;
    }
    if (fsync(fd) || close(fd)) {
        unlink(tmp);
        return fp_error_set(err, FP_EIO, "%s: cannot sync: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path)) {
        unlink(tmp);
        return fp_error_set(err, FP_EIO, "%s: cannot rename into place: %s", path, strerror(errno));
    }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd); /* the rename itself durable */
        close(dfd);
    }
    return 0;
}

static int fp__save_state(struct fp__client *c)
{
    size_t n = fp_algo_client_state_bytes(&c->p);
    if (!n || !fp_algo_client_has_state(&c->cs))
        return 0;
    uint8_t *blob = malloc(n);
    if (!blob)
        return fp_error_set(&c->err, FP_ENOMEM, "out of memory for the client state");
    fp_algo_client_save(&c->p, c->id, &c->cs, blob);
    int rc = fp__write_atomic(c->state_path, blob, n, &c->err);
    free(blob);
    return rc;
}

/* The state of a client that ran part of this run before (same run id and
 * scenario: the file name carries their hash), if any. */
static int fp__load_state(struct fp__client *c)
{
    if (!fp_algo_client_state_bytes(&c->p))
        return 0;
    FILE *f = fopen(c->state_path, "rb");
    if (!f)
        return errno == ENOENT
                   ? 0
                   : fp_error_set(&c->err, FP_EIO, "%s: %s", c->state_path, strerror(errno));
    size_t cap = fp_algo_client_state_bytes(&c->p) + 1;
    uint8_t *blob = malloc(cap);
    size_t n = blob ? fread(blob, 1, cap, f) : 0;
    fclose(f);
    if (!blob)
        return fp_error_set(&c->err, FP_ENOMEM, "out of memory for the client state");
    int rc = fp_algo_client_load(&c->p, c->id, &c->cs, blob, n, &c->err);
    free(blob);
    if (!rc)
        fp__log(c, "state restored from %s", c->state_path);
    return rc;
}

/* ---- the conversation ---- */

static void fp__expect_next(struct fp__client *c)
{
    /* Either a broadcast of a round this client is sampled in (whose number
     * it cannot know), a result, or the end of the run: their fields are
     * checked in the handlers; the length is capped here. */
    const struct fp_msg_header want = {.run = (uint64_t)c->run};
    fp_chan_expect_any(
        c->ch, &want, FP_CHAN_ANY_TYPE | FP_CHAN_ANY_ROUND | FP_CHAN_ANY_PHASE | FP_CHAN_ANY_CLIENT,
        c->in_cap, c->in + FP_MSG_HEADER);
}

static int fp__on_welcome(struct fp__client *c, const struct fp_msg_header *h, uint8_t *payload)
{
    char *text = malloc((size_t)h->len + 1);
    if (!text)
        return fp_error_set(&c->err, FP_ENOMEM, "out of memory for the scenario");
    memcpy(text, payload, (size_t)h->len);
    text[h->len] = '\0';
    c->run = (int64_t)h->run;
    c->id = h->client;
    c->welcomed = 1;
    uv_timer_stop(&c->timer);
    char hex[65];
    fp_sha256_hex(payload, (size_t)h->len, hex);
    int rc = fp_scenario_load_string(&c->sc, text, "the coordinator's scenario", NULL, 0, &c->err);
    free(text);
    if (rc)
        return rc;
    fp__log(c, "run %lld: scenario '%s', %u rounds", (long long)c->run, c->sc.name, c->sc.rounds);
    /* as run/ does: results must not depend on BLAS threads */
    openblas_set_num_threads(1);
    if ((rc = c->o->data_dir
                  ? fp_workload_create_client_dir(&c->w, &c->sc, c->id, c->o->data_dir, &c->err)
                  : fp_workload_create_client(&c->w, &c->sc, c->id, &c->err)) ||
        (rc = fp_algo_params_from(&c->p, &c->sc, c->w->d, &c->err)))
        return rc;
    c->have_p = 1;
    if (fp_algo_ws_init(&c->aws, &c->p) || !(c->wws = fp_workload_ws_new(c->w)))
        return fp_error_set(&c->err, FP_ENOMEM, "out of memory for the workspaces");
    size_t bpay = fp_algo_broadcast_cap(&c->p) - FP_MSG_HEADER;
    c->in_cap = bpay > FP_CONV_DONE_LEN ? bpay : FP_CONV_DONE_LEN;
    c->up_cap = fp_algo_upload_cap(&c->p);
    if (!(c->in = malloc(FP_MSG_HEADER + c->in_cap)) || !(c->up = malloc(c->up_cap)))
        return fp_error_set(&c->err, FP_ENOMEM, "out of memory for the messages");
    snprintf(c->state_path, sizeof c->state_path, "%s/client-%u-run-%lld-%.16s.state",
             c->o->state_dir, c->id, (long long)c->run, hex);
    if ((rc = fp__load_state(c)))
        return rc;
    c->res->run_id = c->run;
    c->res->id = c->id;
    fp__expect_next(c);
    return 0;
}

static int fp__on_broadcast(struct fp__client *c, const struct fp_msg_header *h)
{
    /* The same round again only after it was 'not included': the
     * coordinator retries a round that got too few uploads. */
    if ((h->round < c->round || (h->round == c->round && !c->may_repeat)) && h->phase == 0)
        return fp_error_set(&c->err, FP_EFORMAT,
                            "the coordinator sent round %u's broadcast after round %u", h->round,
                            c->round);
    c->round = h->round;
    c->may_repeat = 0;
    fp_msg_encode_header(h, c->in);
    const struct fp_msg_header who = {
        .run = (uint64_t)c->run, .round = h->round, .phase = h->phase, .client = c->id};
    size_t up_len;
    double loss;
    int rc = fp_algo_client_update(&c->p, &who, c->in, FP_MSG_HEADER + (size_t)h->len, &c->cs,
                                   &c->pending, c->w, c->wws, &c->aws, c->up, c->up_cap, &up_len,
                                   &loss, &c->err);
    if (rc)
        return rc;
    c->res->rounds_sampled++;
    uint8_t report[FP_CONV_REPORT_LEN];
    uint64_t bits;
    memcpy(&bits, &loss, sizeof bits);
    for (int i = 0; i < 8; i++)
        report[i] = (uint8_t)(bits >> (8 * i));
    const struct fp_msg_header rh = {.type = FP_MSG_RESULT,
                                     .run = (uint64_t)c->run,
                                     .round = h->round,
                                     .phase = h->phase,
                                     .client = c->id,
                                     .len = sizeof report};
    struct fp_msg_header uh;
    if ((rc = fp_msg_decode_header(c->up, &uh, &c->err)))
        return rc;
    if (c->o->test_bad_round && h->round == c->o->test_bad_round && h->phase == 0 &&
        c->o->test_bad_kind != 3) {
        /* TEST ONLY: see fp_client_options.test_bad_round */
        if (c->o->test_bad_kind == 1)
            memset(c->up + FP_MSG_HEADER, 0xFF, up_len - FP_MSG_HEADER);
        else if (up_len - FP_MSG_HEADER >= 4)
            up_len -= 4, uh.len -= 4;
    }
    if (fp__write(c, report, sizeof report, &rh) ||
        fp__write(c, c->up + FP_MSG_HEADER, up_len - FP_MSG_HEADER, &uh))
        return c->rc;
    /* TEST ONLY: the same upload twice (stale by the next exchange) */
    if (c->o->test_bad_kind == 3 && h->round == c->o->test_bad_round && h->phase == 0 &&
        fp__write(c, c->up + FP_MSG_HEADER, up_len - FP_MSG_HEADER, &uh))
        return c->rc;
    fp__expect_next(c);
    return 0;
}

static int fp__on_result(struct fp__client *c, const struct fp_msg_header *h, const uint8_t *p)
{
    if (h->client != c->id)
        return fp_error_set(&c->err, FP_EFORMAT,
                            "the coordinator sent a result for client %u to client %u", h->client,
                            c->id);
    if (h->round == 0 && h->len == FP_CONV_DONE_LEN &&
        (p[0] == FP_CONV_RUN_DONE || p[0] == FP_CONV_RUN_STOPPED)) {
        memcpy(c->res->model_sha256, p + 1, 64);
        c->res->model_sha256[64] = '\0';
        for (int i = 0; i < 64; i++)
            if (!strchr("0123456789abcdef", c->res->model_sha256[i]))
                return fp_error_set(&c->err, FP_EFORMAT, "the run's end names no model hash");
        c->done = 1;
        c->res->stopped = p[0] == FP_CONV_RUN_STOPPED;
        fp__log(c, "run %lld %s: final model sha256 %s", (long long)c->run,
                c->res->stopped ? "stopped by the coordinator" : "complete", c->res->model_sha256);
        fp__close(c);
        return 0;
    }
    if (h->round != c->round || h->len != 1 ||
        (p[0] != FP_CONV_INCLUDED && p[0] != FP_CONV_NOT_INCLUDED))
        return fp_error_set(&c->err, FP_EFORMAT,
                            "the coordinator's result for round %u is malformed (%llu bytes, "
                            "round %u)",
                            c->round, (unsigned long long)h->len, h->round);
    if (p[0] == FP_CONV_INCLUDED) {
        /* only now does the round's state become this client's */
        fp_algo_client_commit(&c->p, &c->cs, &c->pending);
        c->res->rounds_included++;
        int rc = fp__save_state(c);
        if (rc)
            return rc;
    } else {
        c->may_repeat = 1;
    }
    fp__expect_next(c);
    return 0;
}

static int fp__on_message(struct fp__client *c, const struct fp_chan_event *ev)
{
    const struct fp_msg_header *h = &ev->header;
    switch (h->type) {
    case FP_MSG_HEARTBEAT: return 0;
    case FP_MSG_ERROR: {
        char text[512];
        size_t n = h->len < sizeof text - 1 ? (size_t)h->len : sizeof text - 1;
        if (n)
            memcpy(text, ev->payload, n);
        text[n] = '\0';
        for (size_t i = 0; i < n; i++)
            if (text[i] < 32 || text[i] > 126)
                text[i] = '?';
        free(ev->payload);
        return fp_error_set(&c->err, FP_EIO, "the coordinator %s:%d refused or ended: %s",
                            c->o->host, c->o->port, text);
    }
    case FP_MSG_WELCOME: {
        /* a welcome is only expected first, without a buffer: it was malloc'ed */
        int rc = c->welcomed ? fp_error_set(&c->err, FP_EFORMAT, "a second welcome")
                             : fp__on_welcome(c, h, ev->payload);
        free(ev->payload);
        return rc;
    }
    case FP_MSG_BROADCAST:
        if (!c->welcomed)
            break;
        return fp__on_broadcast(c, h);
    case FP_MSG_RESULT:
        if (!c->welcomed)
            break;
        return fp__on_result(c, h, ev->payload);
    }
    return fp_error_set(&c->err, FP_EFORMAT, "the coordinator sent a %s message",
                        fp_msg_type_name(h->type));
}

static void fp__alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    struct fp__client *c = h->data;
    *b = uv_buf_init((char *)c->rbuf, sizeof c->rbuf);
}

static void fp__read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct fp__client *c = st->data;
    if (nread < 0) {
        if (c->done)
            return;
        if (c->write_failed) { /* no reason came: the write's error is the one */
            fp__write_failed(&c->timer);
            return;
        }
        int clean = nread == UV_EOF && fp_chan_eof(c->ch) == 0;
        const char *why = nread != UV_EOF ? uv_strerror((int)nread)
                          : clean         ? "the connection closed before the run ended"
                                          : fp_chan_error(c->ch);
        if (!c->welcomed && nread == UV_EOF)
            /* a coordinator whose key is not the pinned one cannot answer
             * message 1, and closes */
            fp_error_set(&c->err, FP_EIO,
                         "the coordinator %s:%d: %s (is --server-key its public key? "
                         "fedpress keygen --public coord.key prints it)",
                         c->o->host, c->o->port, why);
        else
            fp_error_set(&c->err, FP_EIO, "the coordinator %s:%d: %s", c->o->host, c->o->port, why);
        fp__fail(c, FP_EIO);
        return;
    }
    const uint8_t *p = (const uint8_t *)b->base;
    size_t n = (size_t)nread;
    while (!c->closing) {
        size_t used;
        struct fp_chan_event ev;
        if (fp_chan_feed(c->ch, p, n, &used, &ev)) {
            fp_error_set(&c->err, FP_EFORMAT, "the coordinator %s:%d: %s", c->o->host, c->o->port,
                         fp_chan_error(c->ch));
            fp__fail(c, FP_EFORMAT);
            return;
        }
        p += used;
        n -= used;
        if (fp__flush_handshake(c) || ev.type == FP_CHAN_EV_NONE)
            return;
        int rc = 0;
        if (ev.type == FP_CHAN_EV_HANDSHAKE) {
            fp__log(c, "connected to %s:%d, the coordinator's key verified", c->o->host,
                    c->o->port);
            const struct fp_msg_header want = {.type = FP_MSG_WELCOME};
            fp_chan_expect_any(c->ch, &want, FP_CHAN_ANY_RUN | FP_CHAN_ANY_CLIENT,
                               FP_MSG_CONTROL_CAP, NULL);
        } else {
            rc = fp__on_message(c, &ev);
        }
        if (rc) {
            /* tell the coordinator why, if the channel still can */
            const struct fp_msg_header eh = {.type = FP_MSG_ERROR, .len = strlen(c->err.msg)};
            if (c->welcomed && !c->closing)
                (void)fp__write(c, c->err.msg, strlen(c->err.msg), &eh);
            fp__fail(c, rc);
            return;
        }
    }
}

static void fp__connected(uv_connect_t *req, int status)
{
    struct fp__client *c = req->data;
    if (status < 0) {
        fp_error_set(&c->err, FP_EIO, "cannot connect to %s:%d: %s", c->o->host, c->o->port,
                     uv_strerror(status));
        fp__fail(c, FP_EIO);
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1); /* small messages: no Nagle delay */
    if (fp__flush_handshake(c))
        return;
    uv_read_start((uv_stream_t *)&c->tcp, fp__alloc, fp__read);
}

/* A server that accepts and then says nothing (or trickles) must not hold
 * the client forever. */
static void fp__welcome_late(uv_timer_t *t)
{
    struct fp__client *c = t->data;
    fp_error_set(&c->err, FP_EIO,
                 "%s:%d: no handshake and welcome within %.0f s (is it a fedpress coordinator, "
                 "and is it overloaded?)",
                 c->o->host, c->o->port, c->o->welcome_s > 0 ? c->o->welcome_s : 30.0);
    fp__fail(c, FP_EIO);
}

static int fp__connect(struct fp__client *c)
{
    char port[16];
    snprintf(port, sizeof port, "%d", c->o->port);
    uv_getaddrinfo_t gai;
    const struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(&c->loop, &gai, NULL, c->o->host, port, &hints); /* synchronous */
    if (rc)
        return fp_error_set(&c->err, FP_EIO, "--connect %s:%d: %s", c->o->host, c->o->port,
                            uv_strerror(rc));
    uv_tcp_init(&c->loop, &c->tcp);
    uv_timer_init(&c->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->conn.data = c;
    uv_timer_start(&c->timer, fp__welcome_late,
                   (uint64_t)((c->o->welcome_s > 0 ? c->o->welcome_s : 30.0) * 1e3), 0);
    rc = uv_tcp_connect(&c->conn, &c->tcp, gai.addrinfo->ai_addr, fp__connected);
    uv_freeaddrinfo(gai.addrinfo);
    if (rc) {
        fp__close(c);
        return fp_error_set(&c->err, FP_EIO, "cannot connect to %s:%d: %s", c->o->host, c->o->port,
                            uv_strerror(rc));
    }
    return 0;
}

int fp_client_run(const struct fp_client_options *o, struct fp_client_result *res,
                  struct fp_error *err)
{
    memset(res, 0, sizeof *res);
    struct fp__client *c = calloc(1, sizeof *c);
    if (!c)
        return fp_error_set(err, FP_ENOMEM, "out of memory");
    c->o = o;
    c->res = res;
    int rc = uv_loop_init(&c->loop);
    if (rc) {
        free(c);
        return fp_error_set(err, FP_EIO, "cannot start the event loop: %s", uv_strerror(rc));
    }
    if (!(c->ch = fp_chan_new(FP_CHAN_CLIENT, o->key, o->server_pub, NULL, 0)))
        rc = fp_error_set(&c->err, FP_ENOMEM, "cannot start the channel");
    else
        rc = fp__connect(c);
    if (rc)
        c->rc = rc;
    uv_run(&c->loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&c->loop);
    rc = c->rc;
    if (!rc && !c->done)
        rc = fp_error_set(&c->err, FP_EIO, "the connection ended before the run did");
    if (rc)
        *err = c->err;
    fp_chan_free(c->ch);
    if (c->have_p) {
        fp_algo_ws_free(&c->aws, &c->p);
    }
    if (c->wws)
        fp_workload_ws_free(c->w, c->wws);
    if (c->w)
        fp_workload_free(c->w);
    fp_client_state_free(&c->cs);
    fp_client_state_free(&c->pending);
    free(c->in);
    free(c->up);
    sodium_memzero(c->rbuf, sizeof c->rbuf);
    free(c);
    return rc;
}
