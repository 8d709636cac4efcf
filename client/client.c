/*
 * client/client.c — the client daemon's event loop (see client.h; the
 * conversation is net/conversation.h).
 *
 * One TCP handle at a time in a plain struct, closed (fp__end) before the
 * next connection begins; a write owns its buffer until its callback.
 * Training runs on the thread pool (fp__train) while the socket is not
 * read (backpressure: nothing else is read while a broadcast is processed)
 * and the loop sends heartbeats; the worker touches only the algorithm's
 * buffers, never the loop or the channel.
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
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "../algorithms/algorithm.h"
#include "../core/hash.h"
#include "../core/scenario.h"
#include "../net/channel.h"
#include "../net/conversation.h"
#include "../net/peer.h"
#include "../workloads/workload.h"

struct fp__client {
    uv_loop_t loop;
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_getaddrinfo_t gai; /* the lookup of --connect's host, on libuv's thread pool */
    uv_timer_t timer;     /* the welcome deadline; then the wait for a failed write's reason */
    uv_timer_t retry;     /* the backoff before the next connection */
    uv_timer_t hb;        /* heartbeats */
    uv_work_t work;       /* training, on libuv's thread pool */
    const struct fp_client_options *o;
    struct fp_chan *ch;
    /* this connection */
    unsigned gen;        /* counts connections: a training started for an older one is dropped */
    int tcp_open;        /* the TCP handle is initialised and not yet closed */
    int ending;          /* this connection is being closed */
    int again;           /* ... and another one follows (a transient loss) */
    int handshaken;      /* the coordinator answered message 1: its key is the pinned one */
    int welcomed;        /* the welcome of this connection arrived */
    int write_failed;    /* the first failed write's status, while its reason is awaited */
    unsigned writes_out; /* writes not yet called back */
    int die;             /* TEST ONLY: see fp_client_options.test_die_round */
    const uint8_t *rest; /* bytes read and not yet fed when training began */
    size_t rest_n;
    /* the client, across connections */
    int known; /* a welcome arrived once: the run, the id and the scenario are set */
    int done, finished;
    int training;
    unsigned train_gen;
    uint32_t attempt; /* connections tried since the last welcome */
    uint64_t lost_at; /* uv_now of the first failure since the last welcome */
    double hb_s;
    int64_t run;
    uint32_t id, round;
    int may_repeat;      /* its round may come again: 'not included', or after a reconnection */
    uint32_t prep_round; /* pending holds the state prepared for this round (0: none) */
    int prep_loaded;     /* ... read back from the disk after a restart */
    char scenario_sha[65];
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
    struct fp_msg_header bh; /* the broadcast being trained on */
    size_t up_len;
    double loss;
    int train_rc;
    struct fp_error train_err;
    char state_path[4096], prep_path[4200];
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

/* Reconnection: the n-th wait is uniform in [d/2, d], d = min(cap, base
 * 2^n) ("equal jitter": clients cut off together do not come back in
 * step, and none waits less than half its turn). */
#define FP_CLIENT_BACKOFF_BASE_MS 500
#define FP_CLIENT_BACKOFF_CAP_MS  30000

static void fp__log(struct fp__client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fp__log(struct fp__client *c, const char *fmt, ...)
{
    if (!c->o->log)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (c->known)
        fprintf(c->o->log, "fedpress client %u: ", c->id);
    else
        fprintf(c->o->log, "fedpress client: ");
    vfprintf(c->o->log, fmt, ap);
    fprintf(c->o->log, "\n");
    fflush(c->o->log);
    va_end(ap);
}

static void fp__connect(struct fp__client *c);

/* No more connections: the loop ends once the timers are closed. */
static void fp__finish(struct fp__client *c)
{
    if (c->finished)
        return;
    c->finished = 1;
    uv_close((uv_handle_t *)&c->timer, NULL);
    uv_close((uv_handle_t *)&c->retry, NULL);
    uv_close((uv_handle_t *)&c->hb, NULL);
}

static void fp__retry_now(uv_timer_t *t)
{
    fp__connect(t->data);
}

/* The connection is closed and no training runs: connect again after the
 * backoff, or end. */
static void fp__next(struct fp__client *c)
{
    if (c->tcp_open || c->training || c->finished)
        return;
    if (!c->again || c->done) {
        fp__finish(c);
        return;
    }
    const uint64_t now = uv_now(&c->loop);
    const uint64_t waited = now - c->lost_at;
    const uint64_t bound = (uint64_t)(c->o->reconnect_for * 1e3);
    if (!(c->o->reconnect_for > 0) || waited >= bound) {
        if (c->o->reconnect_for > 0) {
            char last[sizeof c->err.msg];
            snprintf(last, sizeof last, "%s", c->err.msg);
            fp_error_set(&c->err, FP_EIO, "%s; gave up reconnecting after %.0f s (--reconnect-for)",
                         last, (double)waited / 1e3);
        }
        if (!c->rc)
            c->rc = FP_EIO;
        fp__finish(c);
        return;
    }
    uint64_t d = FP_CLIENT_BACKOFF_CAP_MS;
    if (c->attempt < 16 && (uint64_t)FP_CLIENT_BACKOFF_BASE_MS << c->attempt < d)
        d = (uint64_t)FP_CLIENT_BACKOFF_BASE_MS << c->attempt;
    d = d / 2 + randombytes_uniform((uint32_t)(d / 2 + 1));
    c->attempt++;
    /* The last wait ends when --reconnect-for does: that attempt is the
     * last one, and a failure gives up then, not up to a whole wait later
     * (the timer counts from `now`, as `waited` does). */
    const int last = d >= bound - waited;
    if (last)
        d = bound - waited;
    fp__log(c, "%s; connecting again in %.1f s (attempt %u%s)", c->err.msg, (double)d / 1e3,
            c->attempt + 1, last ? ", the last one: --reconnect-for ends then" : "");
    uv_timer_start(&c->retry, fp__retry_now, d, 0);
}

static void fp__tcp_closed(uv_handle_t *h)
{
    struct fp__client *c = h->data;
    c->tcp_open = 0;
    fp__next(c);
}

/* This connection ends: `again` if the loss is transient (another
 * connection follows, after the backoff), else the client ends with c->rc
 * (0: the run is over). */
static void fp__end(struct fp__client *c, int again)
{
    if (c->ending)
        return;
    c->ending = 1;
    c->again = again;
    if (again && !c->lost_at)
        c->lost_at = uv_now(&c->loop);
    uv_timer_stop(&c->timer);
    uv_timer_stop(&c->hb);
    if (c->tcp_open)
        uv_close((uv_handle_t *)&c->tcp, fp__tcp_closed);
    else
        fp__next(c);
}

/* The run cannot go on for this client: keep the first reason, end. */
static void fp__fail(struct fp__client *c, int rc)
{
    if (!c->rc)
        c->rc = rc ? rc : FP_EIO;
    fp__end(c, 0);
}

/* The connection was lost (c->err says how): connect again. */
static void fp__lost(struct fp__client *c)
{
    fp__end(c, 1);
}

static void fp__write_failed(uv_timer_t *t)
{
    struct fp__client *c = t->data;
    fp_error_set(&c->err, FP_EIO, "writing to the coordinator %s:%d: %s", c->o->host, c->o->port,
                 uv_strerror(c->write_failed));
    fp__lost(c);
}

static void fp__written(uv_write_t *req, int status)
{
    struct fp__write *w = (struct fp__write *)req;
    struct fp__client *c = w->c;
    free(w);
    c->writes_out--;
    if (c->die && !c->writes_out && status == 0)
        kill(getpid(), SIGKILL); /* TEST ONLY: the upload is in the kernel's hands */
    if (status < 0 && status != UV_ECANCELED && !c->ending && !c->write_failed) {
        /* The coordinator may have sent its reason (an error message) and
         * closed while this upload was on its way: read what it sent first,
         * and take this as a lost connection only if no reason comes
         * (fp__read), or after 2 s. */
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
    c->writes_out += !rc;
    if (rc) {
        free(w);
        fp_error_set(&c->err, FP_EIO, "writing to the coordinator: %s", uv_strerror(rc));
        fp__lost(c);
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

/* Between messages and while training: the coordinator closes a session
 * that sends nothing for its dead-peer timeout. */
static void fp__heartbeat(uv_timer_t *t)
{
    struct fp__client *c = t->data;
    if (c->ending || !c->welcomed)
        return;
    const struct fp_msg_header h = {
        .type = FP_MSG_HEARTBEAT, .run = (uint64_t)c->run, .client = c->id};
    (void)fp__write(c, NULL, 0, &h);
}

/* ---- state on disk ---- */

static void fp__sync_dir(const char *path)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd); /* the rename itself durable */
        close(dfd);
    }
}

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
    fp__sync_dir(path);
    return 0;
}

/* A state file is the round (4 bytes little-endian), the algorithm's
 * client state, then the SHA-256 of both: the algorithm's own checks
 * (header, size, finite values) cannot see a flipped bit in a vector, and
 * a client must never train on a damaged state. */
#define FP__STATE_SUM FP_SHA256_BYTES

/* Before the upload leaves: the state it commits if included, durably, as
 * DIR/...state.prepared (in the format of the state file it is renamed
 * to), so a client killed after the coordinator included the upload
 * and before it heard so commits it when it starts again. */
static int fp__prepare(struct fp__client *c, uint32_t round)
{
    size_t n = fp_algo_client_state_bytes(&c->p);
    c->prep_round = round;
    if (!n || !fp_algo_client_has_state(&c->pending))
        return 0;
    uint8_t *blob = malloc(4 + n + FP__STATE_SUM);
    if (!blob)
        return fp_error_set(&c->err, FP_ENOMEM, "out of memory for the client state");
    for (int i = 0; i < 4; i++)
        blob[i] = (uint8_t)(round >> (8 * i));
    fp_algo_client_save(&c->p, c->id, &c->pending, blob + 4);
    fp_sha256(blob, 4 + n, blob + 4 + n);
    int rc = fp__write_atomic(c->prep_path, blob, 4 + n + FP__STATE_SUM, &c->err);
    free(blob);
    return rc;
}

/* The coordinator included the prepared round: it becomes the state, in
 * memory and (a rename) on disk. */
static int fp__commit(struct fp__client *c)
{
    fp_algo_client_commit(&c->p, &c->cs, &c->pending);
    c->res->rounds_included++;
    if (c->prep_loaded)
        fp__log(c, "the coordinator included round %u: the state prepared for it committed",
                c->prep_round);
    c->prep_round = 0;
    c->prep_loaded = 0;
    if (!fp_algo_client_state_bytes(&c->p) || !fp_algo_client_has_state(&c->cs))
        return 0;
    if (rename(c->prep_path, c->state_path))
        return fp_error_set(&c->err, FP_EIO, "%s: cannot rename into place: %s", c->state_path,
                            strerror(errno));
    fp__sync_dir(c->state_path);
    return 0;
}

/* Not included: the prepared state is dropped. */
static void fp__discard(struct fp__client *c)
{
    if (c->prep_round && fp_algo_client_state_bytes(&c->p))
        (void)unlink(c->prep_path);
    if (c->prep_loaded)
        fp__log(c, "round %u was not included: the state prepared for it dropped", c->prep_round);
    c->prep_round = 0;
    c->prep_loaded = 0;
}

/* A state file (fp__prepare's format) into cs; *round its round, 0 if
 * there is no such file. A damaged one (its size, its checksum, or what
 * the algorithm checks) is refused, naming the file: never trained on. */
static int fp__load(struct fp__client *c, const char *path, struct fp_client_state *cs,
                    uint32_t *round)
{
    const size_t n = fp_algo_client_state_bytes(&c->p);
    *round = 0;
    if (!n)
        return 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? 0 : fp_error_set(&c->err, FP_EIO, "%s: %s", path, strerror(errno));
    const size_t want = 4 + n + FP__STATE_SUM;
    uint8_t *blob = malloc(want + 1);
    size_t got = blob ? fread(blob, 1, want + 1, f) : 0;
    fclose(f);
    if (!blob)
        return fp_error_set(&c->err, FP_ENOMEM, "out of memory for the client state");
    uint8_t sum[FP__STATE_SUM];
    int rc = 0;
    if (got == want)
        fp_sha256(blob, 4 + n, sum);
    if (got != want)
        rc = fp_error_set(&c->err, FP_EFORMAT, "%zu bytes, expected %zu", got, want);
    else if (sodium_memcmp(sum, blob + 4 + n, sizeof sum))
        rc = fp_error_set(&c->err, FP_EFORMAT, "its checksum does not match its bytes");
    else
        rc = fp_algo_client_load(&c->p, c->id, cs, blob + 4, n, &c->err);
    if (rc == FP_EFORMAT) {
        char why[sizeof c->err.msg];
        snprintf(why, sizeof why, "%s", c->err.msg);
        fp_error_set(&c->err, FP_EFORMAT,
                     "%s: a damaged client state (%s): refusing to train on it. Restore the "
                     "file, or remove it to start this client's state over (the run then "
                     "no longer matches the simulator)",
                     path, why);
    }
    if (!rc)
        *round = (uint32_t)blob[0] | (uint32_t)blob[1] << 8 | (uint32_t)blob[2] << 16 |
                 (uint32_t)blob[3] << 24;
    free(blob);
    return rc;
}

/* The state of a client that ran part of this run before (same run id and
 * scenario: the file name carries their hash), and the state it prepared
 * for an upload whose result it did not hear (into pending, c->prep_round
 * its round), if any. */
static int fp__load_state(struct fp__client *c)
{
    uint32_t round;
    int rc = fp__load(c, c->state_path, &c->cs, &round);
    if (!rc && round)
        fp__log(c, "state of round %u restored from %s", round, c->state_path);
    if (!rc && !(rc = fp__load(c, c->prep_path, &c->pending, &c->prep_round)) && c->prep_round) {
        c->prep_loaded = 1;
        fp__log(c,
                "a state prepared for round %u found in %s: committed if the coordinator "
                "included that upload, else dropped",
                c->prep_round, c->prep_path);
    }
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

/* The first welcome: the run, the id and the scenario; the shard, the
 * workspaces and the state on disk. */
static int fp__setup(struct fp__client *c, const struct fp_msg_header *h, uint8_t *payload)
{
    char *text = malloc((size_t)h->len + 1);
    if (!text)
        return fp_error_set(&c->err, FP_ENOMEM, "out of memory for the scenario");
    memcpy(text, payload, (size_t)h->len);
    text[h->len] = '\0';
    c->run = (int64_t)h->run;
    c->id = h->client;
    c->known = 1;
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
             c->o->state_dir, c->id, (long long)c->run, c->scenario_sha);
    snprintf(c->prep_path, sizeof c->prep_path, "%s.prepared", c->state_path);
    if ((rc = fp__load_state(c)))
        return rc;
    c->round = c->prep_round; /* its result may still come (fp__on_result) */
    c->res->run_id = c->run;
    c->res->id = c->id;
    return 0;
}

static int fp__on_welcome(struct fp__client *c, const struct fp_msg_header *h, uint8_t *payload)
{
    char hex[65];
    fp_sha256_hex(payload, (size_t)h->len, hex);
    uv_timer_stop(&c->timer);
    if (!c->known) {
        memcpy(c->scenario_sha, hex, sizeof hex);
        int rc = fp__setup(c, h, payload);
        if (rc)
            return rc;
    } else if ((int64_t)h->run != c->run || h->client != c->id || strcmp(hex, c->scenario_sha)) {
        return fp_error_set(&c->err, FP_EFORMAT,
                            "after reconnecting, the coordinator runs run %llu with another "
                            "scenario or id (client %u); this client was in run %lld as client "
                            "%u: start it again for the new run",
                            (unsigned long long)h->run, h->client, (long long)c->run, c->id);
    }
    c->welcomed = 1;
    c->attempt = 0;
    c->lost_at = 0;
    /* header.round: the last round that included this client's upload. A
     * state prepared for it (an 'included' this client did not hear)
     * commits now; one for a later round waits for its result or is
     * dropped when a later broadcast shows the round closed without it. */
    if (c->prep_round && h->round >= c->prep_round) {
        int rc = fp__commit(c);
        if (rc)
            return rc;
    }
    c->may_repeat = 1; /* the round in flight when it left may be sent again */
    /* header.phase: the coordinator's dead-peer timeout in seconds; the
     * heartbeats come three times as often at least */
    c->hb_s = c->o->heartbeat_s > 0 ? c->o->heartbeat_s : 5;
    if (h->phase && c->hb_s > h->phase / 3.0)
        c->hb_s = h->phase / 3.0;
    uint64_t ms = (uint64_t)(c->hb_s * 1e3);
    ms = ms < 100 ? 100 : ms;
    uv_timer_start(&c->hb, fp__heartbeat, ms, ms);
    fp__expect_next(c);
    return 0;
}

static void fp__feed(struct fp__client *c, const uint8_t *p, size_t n);
static void fp__alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);
static void fp__read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);

/* On the loop thread, once the worker trained: the prepared state on disk
 * first, then the report and the upload; then reading resumes. */
static void fp__trained(uv_work_t *req, int status)
{
    struct fp__client *c = req->data;
    const struct fp_msg_header *h = &c->bh;
    c->training = 0;
    if (c->train_gen != c->gen || c->ending || status) {
        /* its connection is gone: the upload would go nowhere; the round
         * is sent again if it is still open when this client is back */
        c->prep_round = 0;
        fp__next(c);
        return;
    }
    int rc = c->train_rc;
    if (rc)
        c->err = c->train_err;
    else
        rc = fp__prepare(c, h->round);
    if (rc) {
        const struct fp_msg_header eh = {.type = FP_MSG_ERROR, .len = strlen(c->err.msg)};
        (void)fp__write(c, c->err.msg, strlen(c->err.msg), &eh);
        fp__fail(c, rc);
        return;
    }
    c->res->rounds_sampled++;
    size_t up_len = c->up_len;
    uint8_t report[FP_CONV_REPORT_LEN];
    uint64_t bits;
    memcpy(&bits, &c->loss, sizeof bits);
    for (int i = 0; i < 8; i++)
        report[i] = (uint8_t)(bits >> (8 * i));
    const struct fp_msg_header rh = {.type = FP_MSG_RESULT,
                                     .run = (uint64_t)c->run,
                                     .round = h->round,
                                     .phase = h->phase,
                                     .client = c->id,
                                     .len = sizeof report};
    struct fp_msg_header uh;
    if ((rc = fp_msg_decode_header(c->up, &uh, &c->err))) {
        fp__fail(c, rc);
        return;
    }
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
        return;
    c->die = c->o->test_die_round && h->round == c->o->test_die_round;
    /* TEST ONLY: the same upload twice (stale by the next exchange) */
    if (c->o->test_bad_kind == 3 && h->round == c->o->test_bad_round && h->phase == 0 &&
        fp__write(c, c->up + FP_MSG_HEADER, up_len - FP_MSG_HEADER, &uh))
        return;
    fp__expect_next(c);
    /* what was read with the broadcast, then the socket again */
    const uint8_t *rest = c->rest;
    size_t rest_n = c->rest_n;
    c->rest = NULL;
    c->rest_n = 0;
    fp__feed(c, rest, rest_n);
    if (!c->ending && !c->training)
        (void)uv_read_start((uv_stream_t *)&c->tcp, fp__alloc, fp__read);
}

/* On the thread pool: nothing here touches the loop or the channel. */
static void fp__train(uv_work_t *req)
{
    struct fp__client *c = req->data;
    const struct fp_msg_header who = {
        .run = (uint64_t)c->run, .round = c->bh.round, .phase = c->bh.phase, .client = c->id};
    if (c->o->test_slow_ms) /* TEST ONLY: see fp_client_options.test_slow_ms */
        usleep(c->o->test_slow_ms * 1000u);
    c->train_rc = fp_algo_client_update(&c->p, &who, c->in, FP_MSG_HEADER + (size_t)c->bh.len,
                                        &c->cs, &c->pending, c->w, c->wws, &c->aws, c->up,
                                        c->up_cap, &c->up_len, &c->loss, &c->train_err);
}

static int fp__on_broadcast(struct fp__client *c, const struct fp_msg_header *h)
{
    /* The same round again only after it was 'not included' (the
     * coordinator retries a round that got too few uploads) or a
     * reconnection (it rejoins the round it left). */
    if ((h->round < c->round || (h->round == c->round && !c->may_repeat)) && h->phase == 0)
        return fp_error_set(&c->err, FP_EFORMAT,
                            "the coordinator sent round %u's broadcast after round %u", h->round,
                            c->round);
    if (c->prep_round) /* its round closed without it: not included */
        fp__discard(c);
    c->round = h->round;
    c->may_repeat = 0;
    fp_msg_encode_header(h, c->in);
    c->bh = *h;
    /* Backpressure: nothing more is read until the upload is sent; the
     * loop meanwhile sends the heartbeats. */
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->training = 1;
    c->train_gen = c->gen;
    c->work.data = c;
    int rc = uv_queue_work(&c->loop, &c->work, fp__train, fp__trained);
    if (rc) {
        c->training = 0;
        return fp_error_set(&c->err, FP_EIO, "cannot start training: %s", uv_strerror(rc));
    }
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
        fp__end(c, 0);
        return 0;
    }
    if (h->round != c->round || h->len != 1 ||
        (p[0] != FP_CONV_INCLUDED && p[0] != FP_CONV_NOT_INCLUDED))
        return fp_error_set(&c->err, FP_EFORMAT,
                            "the coordinator's result for round %u is malformed (%llu bytes, "
                            "round %u)",
                            c->round, (unsigned long long)h->len, h->round);
    if (p[0] == FP_CONV_INCLUDED) {
        if (c->prep_round != h->round && fp_algo_client_state_bytes(&c->p))
            return fp_error_set(&c->err, FP_EFORMAT,
                                "the coordinator included an upload of round %u this client "
                                "holds no state for",
                                h->round);
        /* only now does the round's state become this client's */
        int rc = c->prep_round == h->round ? fp__commit(c) : (c->res->rounds_included++, 0);
        if (rc)
            return rc;
    } else {
        fp__discard(c);
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

/* Feeds what was read to the channel, event by event, until it is used up
 * or a training begins (the rest waits in c->rest for its end). */
static void fp__feed(struct fp__client *c, const uint8_t *p, size_t n)
{
    while (!c->ending && !c->training) {
        size_t used;
        struct fp_chan_event ev;
        if (fp_chan_feed(c->ch, p, n, &used, &ev)) {
            fp_error_set(&c->err, FP_EFORMAT, "the coordinator %s:%d: %s", c->o->host, c->o->port,
                         fp_chan_error(c->ch));
            /* a corrupted or cut stream: a new connection starts clean */
            if (c->welcomed)
                fp__lost(c);
            else
                fp__fail(c, FP_EFORMAT);
            return;
        }
        p += used;
        n -= used;
        if (fp__flush_handshake(c) || ev.type == FP_CHAN_EV_NONE)
            return;
        int rc = 0;
        if (ev.type == FP_CHAN_EV_HANDSHAKE) {
            c->handshaken = 1;
            fp__log(c, "connected to %s:%d, the coordinator's key verified", c->o->host,
                    c->o->port);
            /* round and phase carry the last included round and the
             * dead-peer timeout (fp__on_welcome) */
            const struct fp_msg_header want = {.type = FP_MSG_WELCOME};
            fp_chan_expect_any(c->ch, &want,
                               FP_CHAN_ANY_RUN | FP_CHAN_ANY_CLIENT | FP_CHAN_ANY_ROUND |
                                   FP_CHAN_ANY_PHASE,
                               FP_MSG_CONTROL_CAP, NULL);
        } else {
            rc = fp__on_message(c, &ev);
        }
        if (rc) {
            /* tell the coordinator why, if the channel still can */
            const struct fp_msg_header eh = {.type = FP_MSG_ERROR, .len = strlen(c->err.msg)};
            if (c->welcomed && !c->ending && ev.header.type != FP_MSG_ERROR)
                (void)fp__write(c, c->err.msg, strlen(c->err.msg), &eh);
            fp__fail(c, rc);
            return;
        }
        if (c->training) {
            c->rest = p;
            c->rest_n = n;
        }
    }
}

static void fp__read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct fp__client *c = st->data;
    if (nread < 0) {
        if (c->done || c->ending)
            return;
        if (c->write_failed) { /* no reason came: the write's error is the one */
            fp__write_failed(&c->timer);
            return;
        }
        int clean = nread == UV_EOF && fp_chan_eof(c->ch) == 0;
        const char *why = nread != UV_EOF ? uv_strerror((int)nread)
                          : clean         ? "the connection closed before the run ended"
                                          : fp_chan_error(c->ch);
        if (!c->handshaken && !c->known) {
            /* a coordinator whose key is not the pinned one cannot answer
             * message 1, and closes: trying again would not help. (Once a
             * welcome came, the pinned key is proven right: a connection
             * cut in its handshake then is one more loss, e.g. an
             * overloaded coordinator closing its oldest handshakes.) */
            fp_error_set(&c->err, FP_EIO,
                         "the coordinator %s:%d: %s before answering the handshake (is "
                         "--server-key its public key? fedpress keygen --public coord.key "
                         "prints it)",
                         c->o->host, c->o->port, why);
            fp__fail(c, FP_EIO);
            return;
        }
        fp_error_set(&c->err, FP_EIO, "the coordinator %s:%d: %s", c->o->host, c->o->port, why);
        fp__lost(c);
        return;
    }
    fp__feed(c, (const uint8_t *)b->base, (size_t)nread);
}

static void fp__connected(uv_connect_t *req, int status)
{
    struct fp__client *c = req->data;
    if (status == UV_ECANCELED || c->ending)
        return;
    if (status < 0) {
        fp_error_set(&c->err, FP_EIO, "cannot connect to %s:%d: %s", c->o->host, c->o->port,
                     uv_strerror(status));
        fp__lost(c);
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

/* The host's address is known (or not): connect to its first one. A
 * lookup that fails is a transient loss like a refused connection (retried
 * within --reconnect-for), also at the first attempt: a name that does not
 * resolve yet (the coordinator's machine or its DNS record not up, a
 * resolver not reachable during a restart) cannot be told from a typo, and
 * the client is made to wait for a coordinator that is not there yet; the
 * first failure is logged at once, so a typo shows in the first line. */
static void fp__resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
    struct fp__client *c = req->data;
    if (status < 0) {
        fp_error_set(&c->err, FP_EIO, "--connect %s:%d: cannot look up the host name: %s",
                     c->o->host, c->o->port, uv_strerror(status));
        fp__lost(c);
        return;
    }
    uv_tcp_init(&c->loop, &c->tcp);
    c->tcp_open = 1;
    c->tcp.data = c;
    c->conn.data = c;
    uv_timer_start(&c->timer, fp__welcome_late,
                   (uint64_t)((c->o->welcome_s > 0 ? c->o->welcome_s : 30.0) * 1e3), 0);
    int rc = uv_tcp_connect(&c->conn, &c->tcp, ai->ai_addr, fp__connected);
    uv_freeaddrinfo(ai);
    if (rc) {
        fp_error_set(&c->err, FP_EIO, "cannot connect to %s:%d: %s", c->o->host, c->o->port,
                     uv_strerror(rc));
        fp__lost(c);
    }
}

/* A new connection with a new channel (the handshake starts over), after
 * the host's lookup, which runs on libuv's thread pool so that a slow
 * resolver never stops the loop. The welcome deadline starts at the
 * connection: a lookup is bounded by the resolver's own timeouts. */
static void fp__connect(struct fp__client *c)
{
    char port[16];
    snprintf(port, sizeof port, "%d", c->o->port);
    c->gen++;
    c->ending = c->again = c->handshaken = c->welcomed = c->write_failed = 0;
    c->rest = NULL;
    c->rest_n = 0;
    fp_chan_free(c->ch);
    if (!(c->ch = fp_chan_new(FP_CHAN_CLIENT, c->o->key, c->o->server_pub, NULL, 0))) {
        fp_error_set(&c->err, FP_ENOMEM, "cannot start the channel");
        fp__fail(c, FP_ENOMEM);
        return;
    }
    const struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    c->gai.data = c;
    int rc = uv_getaddrinfo(&c->loop, &c->gai, fp__resolved, c->o->host, port, &hints);
    if (rc) {
        fp_error_set(&c->err, FP_EIO, "--connect %s:%d: cannot start the host name's lookup: %s",
                     c->o->host, c->o->port, uv_strerror(rc));
        fp__lost(c);
    }
}

/* One process per key and state directory: an OFD lock on
 * DIR/.client-FINGERPRINT.lock (the file holds the holder's pid, for the
 * message). A second process with the same key and --state would replace
 * the first's session and write the same state files under it (its
 * prepared file renamed or deleted by the other): it is refused before it
 * connects, and the first goes on. The fd (returned in *fd) holds the lock
 * until the process ends. */
static int fp__lock_state(const struct fp_client_options *o, int *fd, struct fp_error *err)
{
    uint8_t pub[FP_NOISE_KEY];
    char fpr[FP_PEER_FPR], path[4096];
    crypto_scalarmult_base(pub, o->key);
    fp_peer_fingerprint(pub, fpr);
    snprintf(path, sizeof path, "%s/.client-%s.lock", o->state_dir, fpr);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0)
        return fp_error_set(err, FP_EIO, "%s: %s", path, strerror(errno));
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(*fd, F_OFD_SETLK, &fl)) {
        char pid[24] = "";
        ssize_t n = pread(*fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(*fd);
        *fd = -1;
        return fp_error_set(err, FP_EIO,
                            "another fedpress client (pid %s) runs with this key and --state "
                            "%s (%s): run one process per key and state directory (a second "
                            "one would replace the first's session and write the same state "
                            "files)",
                            pid[0] ? pid : "?", o->state_dir, path);
    }
    char pid[24];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    /* the pid is only for a second process's message: the lock holds
     * without it */
    if (!ftruncate(*fd, 0))
        (void)!pwrite(*fd, pid, (size_t)n, 0);
    return 0;
}

int fp_client_run(const struct fp_client_options *o, struct fp_client_result *res,
                  struct fp_error *err)
{
    memset(res, 0, sizeof *res);
    int lock_fd = -1;
    int lrc = fp__lock_state(o, &lock_fd, err);
    if (lrc)
        return lrc;
    struct fp__client *c = calloc(1, sizeof *c);
    if (!c) {
        close(lock_fd);
        return fp_error_set(err, FP_ENOMEM, "out of memory");
    }
    c->o = o;
    c->res = res;
    int rc = uv_loop_init(&c->loop);
    if (rc) {
        free(c);
        close(lock_fd);
        return fp_error_set(err, FP_EIO, "cannot start the event loop: %s", uv_strerror(rc));
    }
    uv_timer_init(&c->loop, &c->timer);
    uv_timer_init(&c->loop, &c->retry);
    uv_timer_init(&c->loop, &c->hb);
    c->timer.data = c->retry.data = c->hb.data = c;
    c->lost_at = uv_now(&c->loop); /* the give-up bound counts from the start */
    fp__connect(c);
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
    close(lock_fd);
    return rc;
}
