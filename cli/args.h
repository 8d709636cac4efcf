/*
 * cli/args.h — what the option parsers of the fedpress commands share:
 * "--opt value" / "--opt=value", the usage-error lines, seconds and round
 * numbers.
 */
#ifndef FP_CLI_ARGS_H
#define FP_CLI_ARGS_H

#include <stdint.h>

/* "fedpress CMD: WHATARG" and where the usage is, on stderr; returns 2,
 * the usage-error exit code. */
int fp_cli_usage_error(const char *cmd, const char *what, const char *arg);

/* "fedpress: " FMT (with its one %s as arg) and where the usage is, on
 * stderr; returns 2, the usage-error exit code. The line of sim, sweep,
 * runs and metrics, whose usage is 'fedpress help'. */
int fp_cli_usage_errorf(const char *fmt, const char *arg);

/* "--opt value" or "--opt=value"; returns the value and advances *i, or NULL. */
const char *fp_cli_optval(int argc, char **argv, int *i, const char *opt);

/* 1 if arg is opt, alone or as "opt=value". */
int fp_cli_is_opt(const char *arg, const char *opt);

/* An option's seconds in [lo, hi] into *out (left as is when v is NULL);
 * -1 if v is not such a number (not finite, or outside the range). */
int fp_cli_seconds(const char *v, double lo, double hi, double *out);

/* A run id ("3": digits only, at least 1), or -1 if arg is not one. */
int64_t fp_cli_run_id(const char *arg);

/* A round number (1 to 2^32 - 1) into *out; -1 if v is not one. */
int fp_cli_round(const char *v, uint32_t *out);

#endif
