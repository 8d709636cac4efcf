/*
 * fuzz/net_fixture.h — the fixed keys of the net/ fuzz targets and their
 * seed maker (fuzz/net_seeds.c). The server's ephemeral key is fixed too,
 * so a client flight recorded once (message 1, message 3, records) is valid
 * in every run of the target and the fuzzer starts past the handshake. Only
 * a harness may do this: a fixed ephemeral key is exactly what lets XK's
 * message 3 be replayed.
 */
#ifndef FP_FUZZ_NET_FIXTURE_H
#define FP_FUZZ_NET_FIXTURE_H

#include <string.h>

#include "net/channel.h"

/* The message the fuzzed server waits for: an upload of at most this much. */
#define FP_FUZZ_NET_CAP (1u << 20)

static inline void fp_fuzz_net_key(uint8_t key[FP_NOISE_KEY], uint8_t seed)
{
    memset(key, seed, FP_NOISE_KEY);
}

static inline struct fp_msg_header fp_fuzz_net_upload(uint64_t len)
{
    struct fp_msg_header h = {
        .type = FP_MSG_UPLOAD, .run = 1, .round = 1, .phase = 0, .client = 1, .len = len};
    return h;
}

/* The fuzzed server: static key 2s, ephemeral 3s. */
static inline struct fp_chan *fp_fuzz_net_server(void)
{
    uint8_t s[FP_NOISE_KEY], e[FP_NOISE_KEY];
    fp_fuzz_net_key(s, 2);
    fp_fuzz_net_key(e, 3);
    struct fp_chan *ch = fp_chan_new(FP_CHAN_SERVER, s, NULL, NULL, 0);
    if (ch)
        fp_chan_set_ephemeral(ch, e);
    return ch;
}

/* Its client: static key 1s, ephemeral 4s, pinning the server's key. */
static inline struct fp_chan *fp_fuzz_net_client(const uint8_t *hello, size_t hello_len)
{
    uint8_t c[FP_NOISE_KEY], e[FP_NOISE_KEY], s[FP_NOISE_KEY], spub[FP_NOISE_KEY];
    fp_fuzz_net_key(c, 1);
    fp_fuzz_net_key(e, 4);
    fp_fuzz_net_key(s, 2);
    fp_noise_public_key(s, spub);
    struct fp_chan *ch = fp_chan_new(FP_CHAN_CLIENT, c, spub, hello, hello_len);
    if (ch)
        fp_chan_set_ephemeral(ch, e);
    return ch;
}

#endif
