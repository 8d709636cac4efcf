/*
 * coordinator/allow.h — the coordinator's allow-list, clients.pub: one
 * `ID PUBKEY` line per client (ID a decimal client id, PUBKEY the 64 hex
 * digits `fedpress keygen` printed), '#' comments and blank lines ignored,
 * like ssh's authorized_keys. The ids must be 0 .. N-1, each once, and no
 * key may appear twice: N is the number of ids. `ID -` lists an id with no
 * key (revoked: no client can be it, and N stays the same). A client's
 * identity is the key it proves in the handshake, never anything it sends.
 *
 * The coordinator re-reads the file on SIGHUP: fp_allow_update says
 * whether the new list may replace the one in use (the same N; no id
 * that holds algorithm state handed to another key).
 *
 * Ownership: fp_allow_load fills a struct the caller frees with
 * fp_allow_free.
 */
#ifndef FP_ALLOW_H
#define FP_ALLOW_H

#include <stdint.h>
#include <stdio.h>

#include "../core/error.h"
#include "../net/noise.h"

struct fp_allow {
    uint32_t n;                    /* N: ids 0 .. n-1 */
    uint32_t n_keyed;              /* ids with a key (not `ID -`) */
    uint8_t (*keys)[FP_NOISE_KEY]; /* [n], by id; all zero: revoked */
    /* [n], by id: the last key the id had in this list or an earlier one
     * (a revoked id keeps it), all zero if it never had one; what a new
     * key is compared with (fp_allow_update) */
    uint8_t (*last)[FP_NOISE_KEY];
};

/* FP_EIO if path cannot be read, FP_EFORMAT naming the file and line for a
 * bad line, a duplicate id or key, or a gap in the ids. */
int fp_allow_load(struct fp_allow *a, const char *path, struct fp_error *err);
/* The same from an open stream (path names it in messages). */
int fp_allow_read(struct fp_allow *a, FILE *f, const char *path, struct fp_error *err);
void fp_allow_free(struct fp_allow *a);

/* Whether `fresh` (just loaded from path) may replace `cur`: FP_EFORMAT
 * naming the file and the reason if it lists another N, or gives an id a
 * key other than its last one while has_state(u, id) (that client's
 * algorithm state is on the machine of its old key: a new key would start
 * without it). On 0, fresh->last carries cur's last keys of the ids fresh
 * revokes. */
int fp_allow_update(const struct fp_allow *cur, struct fp_allow *fresh, const char *path,
                    int (*has_state)(void *u, uint32_t id), void *u, struct fp_error *err);

/* The id of key, or -1 if it is not in the list. */
int64_t fp_allow_find(const struct fp_allow *a, const uint8_t key[FP_NOISE_KEY]);

#endif
