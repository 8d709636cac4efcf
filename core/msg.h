/*
 * core/msg.h — the header every fedpress message carries, in both drivers.
 *
 * A message is this 32-byte header followed by `len` payload bytes. The
 * algorithm core makes the payloads (a broadcast, an upload, a sync); the
 * simulator hands the whole message from server to worker and back, the
 * daemons carry exactly the same bytes over the Noise channel (net/), so a
 * byte the store counts is a byte the wire carries. The header names the
 * run, round, phase and client the payload belongs to; a receiver decodes a
 * payload only after fp_msg_check() agreed that the header is the one it
 * expects, so an upload replayed into another round, phase or client, or
 * sent under another client's id, is refused instead of silently decoded
 * under the wrong key.
 *
 * Layout, all integers little-endian (as the model's float32 are):
 *
 *   offset size field
 *    0     1    version   FP_MSG_VERSION (1)
 *    1     1    type      enum fp_msg_type
 *    2     2    phase     the exchange within the round (0, 1, ...) that the
 *                         algorithm defines; 0 for control messages
 *    4     4    client    the client's global id; FP_MSG_ALL for a message
 *                         from the server to every participant
 *    8     8    run       the run's id (the coordinator's store id)
 *   16     4    round     1-based; 0 for messages outside rounds
 *   20     4    reserved  0 (a receiver refuses anything else)
 *   24     8    len       payload bytes that follow
 *
 * A receiver checks `len` against what it expects (the exact encoded size
 * of a data message, or a small cap for a control message) before it
 * allocates anything; fp_msg_check does both checks.
 */
#ifndef FP_MSG_H
#define FP_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define FP_MSG_HEADER  32
#define FP_MSG_VERSION 1
#define FP_MSG_ALL     UINT32_C(0xFFFFFFFF)
/* The largest payload of a control message (hello, welcome, result, error,
 * heartbeat): they never carry a vector. */
#define FP_MSG_CONTROL_CAP ((uint64_t)64 * 1024)

enum fp_msg_type {
    FP_MSG_HELLO = 1,     /* client -> server: who it is, what it has (daemons) */
    FP_MSG_WELCOME = 2,   /* server -> client: admitted; the run and scenario */
    FP_MSG_BROADCAST = 3, /* server -> clients: a phase's broadcast (model, control variate,
                             compressed difference or an uncompressed sync) */
    FP_MSG_UPLOAD = 4,    /* client -> server: a phase's upload */
    FP_MSG_RESULT = 5,    /* server -> client: whether its upload was included */
    FP_MSG_HEARTBEAT = 6, /* either way: alive, no payload */
    FP_MSG_ERROR = 7,     /* either way: a reason in text, then the connection closes */
    FP_MSG__LAST = FP_MSG_ERROR
};

struct fp_msg_header {
    uint8_t type;
    uint16_t phase;
    uint32_t client;
    uint64_t run;
    uint32_t round;
    uint64_t len;
};

/* The name of a type ("upload"), or "unknown". */
const char *fp_msg_type_name(unsigned type);

/* Writes the 32 header bytes. */
void fp_msg_encode_header(const struct fp_msg_header *h, uint8_t out[FP_MSG_HEADER]);
/* The header of a message whose payload of len bytes follows it in out:
 * encoded into out[0..FP_MSG_HEADER); returns the whole message's length.
 * The one place the core's broadcasts and uploads get their header. */
size_t fp_msg_seal(uint8_t *out, enum fp_msg_type type, uint64_t run, uint32_t round,
                   uint16_t phase, uint32_t client, uint64_t len);

/* Reads the 32 header bytes: FP_EFORMAT (with a message) for another
 * version, an unknown type or nonzero reserved bytes. */
int fp_msg_decode_header(const uint8_t in[FP_MSG_HEADER], struct fp_msg_header *h,
                         struct fp_error *err);

/* Whether a decoded header is the message the receiver waits for: the same
 * type, run, round, phase and client, and a payload length of exactly
 * want->len (max_len == 0) or at most max_len. FP_EFORMAT with a message
 * naming the first field that differs, both values, otherwise 0. */
int fp_msg_check(const struct fp_msg_header *got, const struct fp_msg_header *want,
                 uint64_t max_len, struct fp_error *err);

#endif
