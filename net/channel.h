/*
 * net/channel.h — one fedpress connection as a state machine: the Noise XK
 * handshake (net/noise.h), then records, then application messages
 * (core/msg.h's 32-byte header + payload) that span records. The wire is
 * pinned byte by byte in docs/protocol.md.
 *
 * Pure bytes in, events out: the caller (a daemon's event loop, a test, a
 * fuzzer) hands over whatever bytes arrived with fp_chan_feed, gets at most
 * one event per call, and sends the bytes fp_chan_output / fp_chan_send
 * produce. No sockets, no clock, no threads; a channel is used by one thread.
 *
 * Every length read from the network is checked before use: a handshake
 * message is exactly as long as its step allows, a record holds at least its
 * tag, and a message's declared payload length goes through fp_msg_check
 * against what the caller said it expects (fp_chan_expect) before a byte is
 * allocated. So a peer can make a channel hold at most its fixed 64 KiB
 * input buffer plus the payload cap the caller chose.
 *
 * After any error the channel is dead: every later call fails with the same
 * error, and the caller closes the connection. Error texts name the step
 * and the reason; the caller prefixes the peer's address.
 */
#ifndef FP_CHANNEL_H
#define FP_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/msg.h"
#include "noise.h"

#define FP_CHAN_MAGIC        "FPN\x01" /* the client's first 4 bytes */
#define FP_CHAN_MAGIC_LEN    4
#define FP_CHAN_PROLOGUE     "fedpress/1"
#define FP_CHAN_RECORD_MAX   FP_NOISE_MSG_MAX /* ciphertext bytes, tag included */
#define FP_CHAN_RECORD_PLAIN (FP_CHAN_RECORD_MAX - FP_NOISE_TAG) /* 65519 */
/* A record on the wire: 2-byte length + ciphertext. */
#define FP_CHAN_RECORD_WIRE_MAX (2 + FP_CHAN_RECORD_MAX)
/* The client's hello (message 3's payload), at most. */
#define FP_CHAN_HELLO_MAX (FP_NOISE_MSG_MAX - FP_NOISE_MSG3_OVERHEAD)

enum fp_chan_role { FP_CHAN_CLIENT = 1, FP_CHAN_SERVER = 2 };

enum fp_chan_event_type {
    FP_CHAN_EV_NONE = 0,  /* all input used, nothing to report yet */
    FP_CHAN_EV_HANDSHAKE, /* handshake complete: peer, hello (server side) */
    FP_CHAN_EV_MESSAGE,   /* a whole application message */
};

struct fp_chan_event {
    int type;
    /* FP_CHAN_EV_HANDSHAKE: the peer's static key (the server's is the one
     * the client pinned; the client's travelled encrypted in message 3) and,
     * on the server, the client's hello (borrowed until the next call). */
    uint8_t peer[FP_NOISE_KEY];
    const uint8_t *hello;
    size_t hello_len;
    /* FP_CHAN_EV_MESSAGE: the header and its payload: in the caller's dst
     * buffer if fp_chan_expect gave one and this is the awaited message,
     * else malloc'ed and owned by the caller (free()); NULL for an empty
     * payload. An error message's payload is always malloc'ed, dst or not
     * (it is not what dst was sized for): free it unless it is dst. */
    struct fp_msg_header header;
    uint8_t *payload;
};

struct fp_chan;

/* A new channel. A client pins server_pub and will send hello (copied; may
 * be empty) in message 3; its first bytes are waiting in fp_chan_output at
 * once. A server passes NULL, NULL, 0. Both pass their static secret key
 * (copied; wiped by fp_chan_free). NULL when out of memory, when libsodium
 * cannot start, or for a hello over FP_CHAN_HELLO_MAX. */
struct fp_chan *fp_chan_new(int role, const uint8_t s_priv[FP_NOISE_KEY],
                            const uint8_t server_pub[FP_NOISE_KEY], const uint8_t *hello,
                            size_t hello_len);

/* Wipes every key and buffer, frees. NULL is fine. */
void fp_chan_free(struct fp_chan *ch);

/* Tests only, before the first fp_chan_output/fp_chan_feed: use e_priv as
 * the ephemeral key (the vectors' keys) instead of a fresh random one. */
void fp_chan_set_ephemeral(struct fp_chan *ch, const uint8_t e_priv[FP_NOISE_KEY]);

/* Consumes bytes from data[len] until one event or the end of data; *used =
 * bytes consumed. 0 with ev->type set, or a negative code after which the
 * channel is dead (fp_chan_error). After an event, act on it (admit, set
 * the next expectation, send fp_chan_output) and call again with the rest,
 * even if no byte is left (one record can hold several messages), until
 * FP_CHAN_EV_NONE:
 *
 *   for (;;) {
 *       if (fp_chan_feed(ch, p, n, &used, &ev)) -> close, log fp_chan_error
 *       p += used, n -= used; send fp_chan_output(ch, ...)
 *       if (ev.type == FP_CHAN_EV_NONE) break;  (all of p used)
 *       handle ev
 *   }
 */
int fp_chan_feed(struct fp_chan *ch, const uint8_t *data, size_t len, size_t *used,
                 struct fp_chan_event *ev);

/* The connection ended (EOF): 0 if it ended between two messages, else
 * FP_EFORMAT (a truncated handshake, record or message). */
int fp_chan_eof(struct fp_chan *ch);

/* Handshake bytes waiting to be sent (the magic and message 1, message 2,
 * message 3), borrowed until the next call on ch; *len = 0 when none. Each
 * call hands them over once. */
const uint8_t *fp_chan_output(struct fp_chan *ch, size_t *len);

/* The message the caller waits for next: fp_msg_check(got, want, max_len)
 * must pass before the payload is allocated (max_len 0: exactly want->len
 * bytes; else at most max_len). dst, if not NULL, receives the payload and
 * must hold max_len (or want->len) bytes. An error message (type
 * FP_MSG_ERROR, at most FP_MSG_CONTROL_CAP bytes) and an empty heartbeat
 * are always accepted besides; after an error message the channel takes no
 * more input. A header with no expectation set is a protocol error. */
void fp_chan_expect(struct fp_chan *ch, const struct fp_msg_header *want, uint64_t max_len,
                    void *dst);

/* The same, with the header fields named in `any` left open: a daemon's
 * client cannot know the run and its own id before the welcome, nor
 * whether the server's next message is a broadcast (of a round it was
 * sampled in) or a result. The length is never open: max_len (or
 * want->len) still caps it before a byte is allocated, and the caller
 * checks the fields it left open in the event's header. */
#define FP_CHAN_ANY_TYPE   1u
#define FP_CHAN_ANY_RUN    2u
#define FP_CHAN_ANY_ROUND  4u
#define FP_CHAN_ANY_PHASE  8u
#define FP_CHAN_ANY_CLIENT 16u
void fp_chan_expect_any(struct fp_chan *ch, const struct fp_msg_header *want, unsigned any,
                        uint64_t max_len, void *dst);

/* Server, after FP_CHAN_EV_HANDSHAKE: the client's key is admitted; its
 * first message must now be the welcome (fp_chan_send). Until admitted, any
 * byte from the client is an error. */
void fp_chan_admit(struct fp_chan *ch);

/* Server, after FP_CHAN_EV_HANDSHAKE, for a key that is not admitted: the
 * one error record (an error message whose payload is the reason, cut to
 * FP_CHAN_REJECT_MAX bytes, header and reason in a single record) into
 * out[cap] (2 + 32 + strlen(reason) + 16 bytes suffice), *outlen its size;
 * then the channel is closed (send it, then close the connection). */
#define FP_CHAN_REJECT_MAX (FP_CHAN_RECORD_PLAIN - FP_MSG_HEADER)
int fp_chan_reject(struct fp_chan *ch, const char *reason, uint8_t *out, size_t cap,
                   size_t *outlen);

/* The wire bytes of a message with a len-byte payload: one record for the
 * header, then ceil(len / 65519) records; 18 bytes of framing each.
 * UINT64_MAX when that does not fit in 64 bits. */
uint64_t fp_chan_wire_size(uint64_t len);

/*
 * Sending. The ciphertext is written straight from the caller's payload
 * (no plaintext copy): sending one model to n clients costs n passes of
 * ChaCha20-Poly1305 over it (the keys differ, so must the ciphertexts) and
 * n output buffers, never n copies of the model. A message must be sent
 * whole before the next one begins: while a sender has records left,
 * fp_chan_send_next with another sender (and fp_chan_send) fail with
 * FP_EINVAL, so a heartbeat timer cannot cut into a model. A sender given
 * up half way leaves the channel unable to send: close the connection.
 */
struct fp_chan_sender {
    const uint8_t *payload;
    uint64_t len, off;
    uint8_t header[FP_MSG_HEADER];
    int header_done;
};

void fp_chan_send_begin(struct fp_chan_sender *s, const struct fp_msg_header *h,
                        const void *payload);
/* Encrypts as many whole records as fit into out[cap] (cap >=
 * FP_CHAN_RECORD_WIRE_MAX always fits one); *outlen bytes. 1 once the
 * message is complete, 0 if more remains, negative on error (not
 * handshaken, closed, not admitted, a server's first message not its
 * welcome, a client's before its welcome and not an error, nonce
 * exhausted). */
int fp_chan_send_next(struct fp_chan *ch, struct fp_chan_sender *s, uint8_t *out, size_t cap,
                      size_t *outlen);
/* The whole message at once into out[cap] (cap >= fp_chan_wire_size). */
int fp_chan_send(struct fp_chan *ch, const struct fp_msg_header *h, const void *payload,
                 uint8_t *out, size_t cap, size_t *outlen);

/* The handshake hash (channel binding), after the handshake. */
const uint8_t *fp_chan_handshake_hash(const struct fp_chan *ch);

/* The error that killed the channel ("" while alive). */
const char *fp_chan_error(const struct fp_chan *ch);

#endif
