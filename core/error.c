/* core/error.c — the one table of error texts. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const fp__errtab[] = {
    "success",         "out of memory",   "invalid argument", "input/output error",
    "malformed input", "run store error", "interrupted",      "not found",
};

const char *fp_strerror(int code)
{
    int i = -code;
    if (i < 0 || i >= (int)(sizeof fp__errtab / sizeof fp__errtab[0]))
        return "unknown error";
    return fp__errtab[i];
}

int fp_error_set(struct fp_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}
