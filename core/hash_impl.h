/* core/hash_impl.h — private to core/hash.c and its tests: pick the SHA-256
 * implementation by hand, so one test binary checks both against each
 * other whatever fp_sha256_init would choose. Not for other callers. */
#ifndef FP_HASH_IMPL_H
#define FP_HASH_IMPL_H

#include "hash.h"

enum fp_sha256_impl { FP_SHA256_SODIUM, FP_SHA256_NI };

/* 1 if this build and this CPU can run impl. */
int fp_sha256_impl_supported(enum fp_sha256_impl impl);

/* fp_sha256_init with impl instead of the run-time choice; impl must be
 * supported. */
void fp_sha256_init_impl(struct fp_sha256 *s, enum fp_sha256_impl impl);

#endif
