/*
 * fuzz/fuzz_net_framing.c — libFuzzer target for message reassembly in
 * net/channel.c: arbitrary plaintext, cut into records the fuzzer chooses,
 * sealed with the real keys of a real handshake (so every record passes
 * its tag and the fuzzer works on headers, lengths and record boundaries),
 * fed to a server channel that waits for an upload under a cap.
 *
 * Input: byte 0: bit 7 set = an upload of exactly (byte 1 | byte 2 << 8)
 * bytes, else at most (byte 0) * 64 bytes; byte 3: odd = into the caller's
 * buffer, its upper 7 bits where the wire is cut in two feeds; then records, each one length byte L
 * (255: as much as is left, up to 65519) and L plaintext bytes.
 *
 * Differential check against a naive reference parser of the joined
 * plaintext (below): the channel delivers exactly the messages the
 * reference accepts, byte for byte, and dies exactly when the reference
 * refuses; at the end it reports a clean EOF exactly when the stream ended
 * between two messages.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/msg.h"
#include "net_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RECORDS 4096

struct ref {
    size_t nmsg;
    size_t *off, *len; /* payload of message i in the stream */
    int refused;
    int clean; /* ended between messages */
};

/* The reference: what the server must accept from this plaintext stream.
 * rec_end[i] is where record i ends in the stream. */
static void fp__reference(const uint8_t *pt, size_t total, const size_t *rec_end, size_t nrec,
                          const struct fp_msg_header *want, uint64_t max_len, struct ref *r)
{
    size_t pos = 0;
    for (;;) {
        if (total - pos < FP_MSG_HEADER) {
            r->clean = pos == total;
            return;
        }
        struct fp_msg_header h;
        struct fp_error e;
        if (fp_msg_decode_header(pt + pos, &h, &e)) {
            r->refused = 1;
            return;
        }
        int ok = h.type == FP_MSG_ERROR                     ? h.len <= FP_MSG_CONTROL_CAP
                 : h.type == FP_MSG_HEARTBEAT && h.len == 0 ? 1
                                                            : !fp_msg_check(&h, want, max_len, &e);
        if (!ok) {
            r->refused = 1;
            return;
        }
        if (total - pos - FP_MSG_HEADER < h.len) {
            r->clean = 0;
            return;
        }
        r->off[r->nmsg] = pos + FP_MSG_HEADER;
        r->len[r->nmsg] = (size_t)h.len;
        r->nmsg++;
        pos += FP_MSG_HEADER + (size_t)h.len;
        if (h.type == FP_MSG_ERROR) {
            /* Nothing may follow, not even an empty record. */
            size_t last = 0;
            while (last < nrec && rec_end[last] < pos)
                last++;
            r->refused = pos < total || last + 1 < nrec;
            r->clean = !r->refused;
            return;
        }
    }
}

/* A handshake with the fuzzed server; returns the client's send keys. */
static int fp__connect(struct fp_chan *s, struct fp_noise_cipher *send)
{
    uint8_t c[32], e[32], sk[32], spub[32], m[200], pl[200];
    struct fp_noise_handshake hs;
    struct fp_noise_cipher recv;
    struct fp_error err;
    struct fp_chan_event ev;
    size_t n, used;
    fp_fuzz_net_key(c, 1);
    fp_fuzz_net_key(e, 4);
    fp_fuzz_net_key(sk, 2);
    fp_noise_public_key(sk, spub);
    fp_noise_handshake_init(&hs, 1, (const uint8_t *)FP_CHAN_PROLOGUE, sizeof FP_CHAN_PROLOGUE - 1,
                            c, spub);
    fp_noise_handshake_set_ephemeral(&hs, e);
    memcpy(m, FP_CHAN_MAGIC "\x00\x30", 6);
    if (fp_noise_handshake_write(&hs, NULL, 0, m + 6, sizeof m - 6, &n, &err) ||
        fp_chan_feed(s, m, 6 + n, &used, &ev))
        return -1;
    const uint8_t *out = fp_chan_output(s, &n);
    if (n != 50 || fp_noise_handshake_read(&hs, out + 2, 48, pl, sizeof pl, &n, &err))
        return -1;
    if (fp_noise_handshake_write(&hs, NULL, 0, m + 2, sizeof m - 2, &n, &err))
        return -1;
    m[0] = 0;
    m[1] = (uint8_t)n;
    if (fp_chan_feed(s, m, 2 + n, &used, &ev) || ev.type != FP_CHAN_EV_HANDSHAKE)
        return -1;
    fp_noise_handshake_split(&hs, send, &recv, NULL);
    fp_noise_handshake_wipe(&hs);
    fp_chan_admit(s);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4 || size > (1 << 20))
        return 0;
    int exact = data[0] & 0x80;
    uint64_t max_len = exact ? 0 : (uint64_t)data[0] * 64;
    struct fp_msg_header want = fp_fuzz_net_upload(exact ? (uint64_t)(data[1] | data[2] << 8) : 0);
    uint64_t cap = exact ? want.len : max_len;
    uint8_t *dst = (data[3] & 1) ? malloc((size_t)cap + 1) : NULL;
    /* Cut the rest into records: the joined plaintext and the wire. */
    uint8_t *pt = malloc(size), *wire = malloc(size * 2 + MAX_RECORDS * 20);
    size_t *rec_end = malloc(MAX_RECORDS * sizeof *rec_end);
    size_t total = 0, wlen = 0, nrec = 0, i = 4;
    struct fp_chan *s = fp_fuzz_net_server();
    struct fp_noise_cipher send;
    if (!pt || !wire || !rec_end || !s || fp__connect(s, &send))
        abort();
    while (i < size && nrec < MAX_RECORDS) {
        size_t l = data[i++], left = size - i;
        if (l == 255)
            l = left < FP_CHAN_RECORD_PLAIN ? left : FP_CHAN_RECORD_PLAIN;
        if (l > left)
            l = left;
        memcpy(pt + total, data + i, l);
        wire[wlen] = (uint8_t)((l + FP_NOISE_TAG) >> 8);
        wire[wlen + 1] = (uint8_t)(l + FP_NOISE_TAG);
        if (fp_noise_cipher_encrypt(&send, NULL, 0, data + i, l, wire + wlen + 2))
            abort();
        wlen += 2 + l + FP_NOISE_TAG;
        total += l;
        i += l;
        rec_end[nrec++] = total;
    }
    /* At most one message per header's worth of bytes. */
    struct ref ref = {.off = malloc((total / FP_MSG_HEADER + 1) * sizeof(size_t)),
                      .len = malloc((total / FP_MSG_HEADER + 1) * sizeof(size_t))},
               *r = &ref;
    if (!ref.off || !ref.len)
        abort();
    fp__reference(pt, total, rec_end, nrec, &want, max_len, r);
    /* Feed it in two parts cut where byte 3 says (records that arrive whole
     * are decrypted from the input, a cut one is gathered first), collecting
     * messages. */
    size_t got = 0, off = 0, used, cut = wlen * (data[3] >> 1) / 127, end = cut;
    int dead = 0;
    struct fp_chan_event ev;
    fp_chan_expect(s, &want, max_len, dst);
    for (;;) {
        if (fp_chan_feed(s, wire + off, end - off, &used, &ev)) {
            dead = 1;
            break;
        }
        off += used;
        if (ev.type == FP_CHAN_EV_NONE && end < wlen) {
            end = wlen;
            continue;
        }
        if (ev.type == FP_CHAN_EV_NONE)
            break;
        if (ev.type != FP_CHAN_EV_MESSAGE || got >= r->nmsg || ev.header.len != r->len[got] ||
            (r->len[got] && memcmp(ev.payload, pt + r->off[got], r->len[got])))
            abort();
        if (ev.payload != dst) /* an error or a heartbeat when dst is given */
            free(ev.payload);
        got++;
        fp_chan_expect(s, &want, max_len, dst);
    }
    if (got != r->nmsg || dead != r->refused)
        abort();
    if (!dead && (fp_chan_eof(s) == 0) != r->clean)
        abort();
    fp_noise_cipher_wipe(&send);
    fp_chan_free(s);
    free(ref.off);
    free(ref.len);
    free(rec_end);
    free(wire);
    free(pt);
    free(dst);
    return 0;
}
