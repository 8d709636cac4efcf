/* core/hash.h — SHA-256 as lowercase hex (libsodium), for model fingerprints. */
#ifndef FP_HASH_H
#define FP_HASH_H

#include <stddef.h>

/* out receives 64 hex digits and a NUL. */
void fp_sha256_hex(const void *data, size_t len, char out[65]);

#endif
