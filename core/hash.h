/* core/hash.h — SHA-256 (FIPS 180-4) for the whole tree: model fingerprints,
 * the store's upload hashes, client state checksums, the inputs of a run.
 *
 * Two implementations behind one API, chosen at run time: the x86 SHA
 * extensions (SHA-NI) where the CPU has them, libsodium's portable
 * crypto_hash_sha256 elsewhere. Same function, same bytes: only the speed
 * differs (~5x on a 636 KB model here). net/noise.c keeps libsodium's for the
 * Noise protocol's hash (tiny inputs, the audited library).
 *
 * The state is a plain struct the caller owns (no allocation); one state
 * is not to be shared between threads. */
#ifndef FP_HASH_H
#define FP_HASH_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#define FP_SHA256_BYTES 32

struct fp_sha256 {
    int ni; /* 1: the SHA-NI path below; 0: libsodium's state */
    union {
        crypto_hash_sha256_state sodium;
        struct {
            uint32_t h[8];   /* a..h, FIPS 180-4's H(i) */
            uint64_t bytes;  /* message bytes so far */
            uint8_t buf[64]; /* the unfinished block: bytes % 64 of them */
        } ni;
    } u;
};

void fp_sha256_init(struct fp_sha256 *s);
void fp_sha256_update(struct fp_sha256 *s, const void *data, size_t len);
/* Writes the digest; s must be initialised again before reuse. */
void fp_sha256_final(struct fp_sha256 *s, uint8_t out[FP_SHA256_BYTES]);

/* One-shot digest of len bytes. */
void fp_sha256(const void *data, size_t len, uint8_t out[FP_SHA256_BYTES]);

/* out receives 64 lowercase hex digits and a NUL. */
void fp_sha256_hex(const void *data, size_t len, char out[65]);

#endif
