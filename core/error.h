/*
 * core/error.h — error codes and detailed error messages.
 *
 * Every fallible function returns 0 or a negative FP_E* code. Where the user
 * needs to know *which* file, line, key or peer was at fault, the function
 * also fills a caller-owned struct fp_error with a full sentence.
 */
#ifndef FP_ERROR_H
#define FP_ERROR_H

#include <stddef.h>

enum {
    FP_OK = 0,
    FP_ENOMEM = -1,   /* allocation failed */
    FP_EINVAL = -2,   /* bad argument or configuration value */
    FP_EIO = -3,      /* file could not be read or written */
    FP_EFORMAT = -4,  /* file or message content is malformed */
    FP_ESTORE = -5,   /* SQLite error */
    FP_EINTR = -6,    /* interrupted by a signal */
    FP_ENOTFOUND = -7 /* no such run, client, ... */
};

struct fp_error {
    int code;
    char msg[1024];
};

/* Text for an error code; never NULL. */
const char *fp_strerror(int code);

/* Formats msg, stores code, and returns code (so `return fp_error_set(...)`). */
int fp_error_set(struct fp_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
