/*
 * coordinator/allow.h — the coordinator's allow-list, clients.pub: one
 * `ID PUBKEY` line per client (ID a decimal client id, PUBKEY the 64 hex
 * digits `fedpress keygen` printed), '#' comments and blank lines ignored,
 * like ssh's authorized_keys. The ids must be 0 .. N-1, each once, and no
 * key may appear twice: N is the number of ids. A client's identity is the
 * key it proves in the handshake, never anything it sends.
 *
 * Ownership: fp_allow_load fills a struct the caller frees with
 * fp_allow_free.
 */
#ifndef FP_ALLOW_H
#define FP_ALLOW_H

#include <stdint.h>

#include "../core/error.h"
#include "../net/noise.h"

struct fp_allow {
    uint32_t n;                    /* N: ids 0 .. n-1 */
    uint8_t (*keys)[FP_NOISE_KEY]; /* [n], by id */
};

/* FP_EIO if path cannot be read, FP_EFORMAT naming the file and line for a
 * bad line, a duplicate id or key, or a gap in the ids. */
int fp_allow_load(struct fp_allow *a, const char *path, struct fp_error *err);
void fp_allow_free(struct fp_allow *a);

/* The id of key, or -1 if it is not in the list. */
int64_t fp_allow_find(const struct fp_allow *a, const uint8_t key[FP_NOISE_KEY]);

#endif
