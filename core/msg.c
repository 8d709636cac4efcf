/*
 * core/msg.c — the message header (see msg.h for the layout).
 */
#include "msg.h"

#include <inttypes.h>
#include <string.h>

static const char *const fp__type_names[] = {
    [FP_MSG_HELLO] = "hello",   [FP_MSG_WELCOME] = "welcome", [FP_MSG_BROADCAST] = "broadcast",
    [FP_MSG_UPLOAD] = "upload", [FP_MSG_RESULT] = "result",   [FP_MSG_HEARTBEAT] = "heartbeat",
    [FP_MSG_ERROR] = "error",
};

const char *fp_msg_type_name(unsigned type)
{
    if (type == 0 || type > FP_MSG__LAST)
        return "unknown";
    return fp__type_names[type];
}

static void fp__put(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t fp__get(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

size_t fp_msg_seal(uint8_t *out, enum fp_msg_type type, uint64_t run, uint32_t round,
                   uint16_t phase, uint32_t client, uint64_t len)
{
    const struct fp_msg_header h = {
        .type = type, .phase = phase, .client = client, .run = run, .round = round, .len = len};
    fp_msg_encode_header(&h, out);
    return FP_MSG_HEADER + (size_t)len;
}

void fp_msg_encode_header(const struct fp_msg_header *h, uint8_t out[FP_MSG_HEADER])
{
    out[0] = FP_MSG_VERSION;
    out[1] = h->type;
    fp__put(out + 2, h->phase, 2);
    fp__put(out + 4, h->client, 4);
    fp__put(out + 8, h->run, 8);
    fp__put(out + 16, h->round, 4);
    fp__put(out + 20, 0, 4);
    fp__put(out + 24, h->len, 8);
}

int fp_msg_decode_header(const uint8_t in[FP_MSG_HEADER], struct fp_msg_header *h,
                         struct fp_error *err)
{
    if (in[0] != FP_MSG_VERSION)
        return fp_error_set(err, FP_EFORMAT, "message version %u, expected %u", in[0],
                            FP_MSG_VERSION);
    if (in[1] == 0 || in[1] > FP_MSG__LAST)
        return fp_error_set(err, FP_EFORMAT, "unknown message type %u", in[1]);
    if (fp__get(in + 20, 4) != 0)
        return fp_error_set(err, FP_EFORMAT, "message header's reserved bytes are not zero");
    h->type = in[1];
    h->phase = (uint16_t)fp__get(in + 2, 2);
    h->client = (uint32_t)fp__get(in + 4, 4);
    h->run = fp__get(in + 8, 8);
    h->round = (uint32_t)fp__get(in + 16, 4);
    h->len = fp__get(in + 24, 8);
    return 0;
}

int fp_msg_check(const struct fp_msg_header *got, const struct fp_msg_header *want,
                 uint64_t max_len, struct fp_error *err)
{
    if (got->type != want->type)
        return fp_error_set(err, FP_EFORMAT, "a %s message where a %s was expected",
                            fp_msg_type_name(got->type), fp_msg_type_name(want->type));
    if (got->run != want->run)
        return fp_error_set(err, FP_EFORMAT, "%s for run %" PRIu64 ", expected run %" PRIu64,
                            fp_msg_type_name(got->type), got->run, want->run);
    if (got->round != want->round)
        return fp_error_set(err, FP_EFORMAT, "%s for round %" PRIu32 ", expected round %" PRIu32,
                            fp_msg_type_name(got->type), got->round, want->round);
    if (got->phase != want->phase)
        return fp_error_set(err, FP_EFORMAT, "%s for phase %u, expected phase %u",
                            fp_msg_type_name(got->type), got->phase, want->phase);
    if (got->client != want->client)
        return fp_error_set(err, FP_EFORMAT, "%s for client %" PRIu32 ", expected client %" PRIu32,
                            fp_msg_type_name(got->type), got->client, want->client);
    if (max_len ? got->len > max_len : got->len != want->len)
        return fp_error_set(err, FP_EFORMAT, "%s of %" PRIu64 " payload bytes, expected %s%" PRIu64,
                            fp_msg_type_name(got->type), got->len, max_len ? "at most " : "",
                            max_len ? max_len : want->len);
    return 0;
}
