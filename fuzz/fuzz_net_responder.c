/*
 * fuzz/fuzz_net_responder.c — libFuzzer target for the server side of a
 * fedpress/1 connection (net/channel.c) fed arbitrary bytes: the magic, the
 * handshake, then records. The first input byte sets the size of the pieces
 * the rest is fed in (TCP cuts a stream anywhere). With the fixture's fixed
 * keys (fuzz/net_fixture.h) the seeds carry a valid client flight, so the
 * fuzzer reaches the record and message parsers too.
 *
 * Beyond "no crash, no leak": a delivered message is one the server said it
 * takes (an upload within the cap, or an error or heartbeat), its payload
 * as long as its header says; after an error the channel stays dead.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fp__check(const struct fp_chan_event *ev)
{
    const struct fp_msg_header *h = &ev->header;
    if (h->type == FP_MSG_UPLOAD) {
        struct fp_msg_header want = fp_fuzz_net_upload(0);
        struct fp_error err;
        if (fp_msg_check(h, &want, FP_FUZZ_NET_CAP, &err))
            abort();
    } else if (h->type == FP_MSG_ERROR) {
        if (h->len > FP_MSG_CONTROL_CAP)
            abort();
    } else if (h->type != FP_MSG_HEARTBEAT || h->len) {
        abort();
    }
    if ((h->len == 0) != (ev->payload == NULL))
        abort();
    if (h->len) { /* the whole payload is there to read (ASan checks) */
        volatile uint8_t sink = ev->payload[0] ^ ev->payload[h->len - 1];
        (void)sink;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1 << 20))
        return 0;
    size_t piece = (size_t)data[0] + 1;
    data++;
    size--;
    struct fp_chan *ch = fp_fuzz_net_server();
    if (!ch)
        abort();
    struct fp_msg_header want = fp_fuzz_net_upload(0);
    size_t off = 0;
    int dead = 0;
    while (!dead && off < size) {
        size_t n = size - off < piece ? size - off : piece, used;
        struct fp_chan_event ev;
        do {
            if (fp_chan_feed(ch, data + off, n, &used, &ev)) {
                dead = 1;
                break;
            }
            off += used;
            n -= used;
            size_t out_len;
            fp_chan_output(ch, &out_len);
            if (ev.type == FP_CHAN_EV_HANDSHAKE) {
                fp_chan_admit(ch);
                uint8_t w[200];
                struct fp_msg_header wh = {.type = FP_MSG_WELCOME, .len = 7};
                if (fp_chan_send(ch, &wh, "welcome", w, sizeof w, &out_len))
                    abort();
                fp_chan_expect(ch, &want, FP_FUZZ_NET_CAP, NULL);
            } else if (ev.type == FP_CHAN_EV_MESSAGE) {
                fp__check(&ev);
                free(ev.payload);
                fp_chan_expect(ch, &want, FP_FUZZ_NET_CAP, NULL);
            }
        } while (ev.type != FP_CHAN_EV_NONE);
    }
    if (dead) { /* dead for good */
        size_t used;
        struct fp_chan_event ev;
        if (fp_chan_feed(ch, (const uint8_t *)"x", 1, &used, &ev) == 0)
            abort();
    } else {
        fp_chan_eof(ch);
    }
    fp_chan_free(ch);
    return 0;
}
