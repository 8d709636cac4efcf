/*
 * cli/args.h — what the option parsers of `fedpress keygen`, `coordinator`
 * and `client` share: one usage-error line, seconds and round numbers.
 */
#ifndef FP_CLI_ARGS_H
#define FP_CLI_ARGS_H

#include <stdint.h>

/* "fedpress CMD: WHATARG" and where the usage is, on stderr; returns 2,
 * the usage-error exit code. */
int fp_cli_usage_error(const char *cmd, const char *what, const char *arg);

/* An option's seconds in [lo, hi] into *out (left as is when v is NULL);
 * -1 if v is not such a number (not finite, or outside the range). */
int fp_cli_seconds(const char *v, double lo, double hi, double *out);

/* A round number (1 to 2^32 - 1) into *out; -1 if v is not one. */
int fp_cli_round(const char *v, uint32_t *out);

#endif
