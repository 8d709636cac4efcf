/*
 * core/inputs.h — the files a run reads, each with the SHA-256 of its bytes.
 *
 * The run store keeps this list with every run (runs.inputs) so that
 * `fedpress sim --resume` can refuse to continue a run whose data or warm
 * start changed. The text has one line per file, in the order the run reads
 * them:
 *
 *     <64 lowercase hex digits><two spaces><absolute path>\n
 *
 * which is sha256sum's own format, so
 *     sqlite3 runs.db "select inputs from runs where id = 1" | sha256sum -c
 * checks them by hand. A path never holds a newline or a backslash (sha256sum
 * would escape those; fp_inputs_add refuses them instead).
 *
 * Ownership: struct fp_inputs owns its text; fp_inputs_free releases it and
 * leaves the struct empty (freeing twice is harmless).
 */
#ifndef FP_INPUTS_H
#define FP_INPUTS_H

#include <stddef.h>

#include "error.h"

struct fp_inputs {
    char *text; /* NUL-terminated, or NULL while no file was added */
    size_t len, cap;
};

/* Appends "<hex>  <path>\n". FP_EINVAL for a path with a newline or a
 * backslash, FP_ENOMEM. */
int fp_inputs_add(struct fp_inputs *in, const char *path, const char hex[65], struct fp_error *err);
void fp_inputs_free(struct fp_inputs *in);

/* The SHA-256 of a whole file, read in 128 KiB pieces. FP_EIO names the
 * file and the reason (a file that is gone: "not found"). */
int fp_sha256_file(const char *path, char hex[65], struct fp_error *err);

/* FP_ENOTFOUND naming the first file of `stored` (an inputs text) that no
 * longer exists, with the hash it had; 0 if all are there. */
int fp_inputs_present(const char *stored, const char *whose, struct fp_error *err);

/* Checks that `now` lists exactly the files of `stored` with the same
 * hashes (order aside). FP_EFORMAT naming the first file whose hash changed
 * (both hashes), that is no longer read, or that is read now but was not;
 * `whose` starts the sentence (e.g. "run 3"). A malformed `stored` is
 * FP_EFORMAT too. */
int fp_inputs_compare(const char *stored, const char *now, const char *whose, struct fp_error *err);

#endif
