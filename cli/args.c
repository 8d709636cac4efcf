/*
 * cli/args.c — see args.h.
 */
#include "args.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fp_cli_usage_error(const char *cmd, const char *what, const char *arg)
{
    fprintf(stderr, "fedpress %s: %s%s\n(run 'fedpress %s --help' for usage)\n", cmd, what, arg,
            cmd);
    return 2;
}

int fp_cli_usage_errorf(const char *fmt, const char *arg)
{
    fprintf(stderr, "fedpress: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(run 'fedpress help' for usage)\n");
    return 2;
}

const char *fp_cli_optval(int argc, char **argv, int *i, const char *opt)
{
    size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n))
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] == '\0' && *i + 1 < argc)
        return argv[++*i];
    return NULL;
}

int fp_cli_is_opt(const char *arg, const char *opt)
{
    size_t n = strlen(opt);
    return !strncmp(arg, opt, n) && (arg[n] == '\0' || arg[n] == '=');
}

int fp_cli_seconds(const char *v, double lo, double hi, double *out)
{
    if (!v)
        return 0;
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !(d >= lo && d <= hi))
        return -1;
    *out = d;
    return 0;
}

int64_t fp_cli_run_id(const char *arg)
{
    char *end;
    errno = 0;
    long long id = strtoll(arg, &end, 10);
    if (!isdigit((unsigned char)*arg) || *end != '\0' || errno || id < 1)
        return -1;
    return id;
}

int fp_cli_round(const char *v, uint32_t *out)
{
    char *end;
    unsigned long r = strtoul(v, &end, 10);
    if (*end || !r || r > UINT32_MAX)
        return -1;
    *out = (uint32_t)r;
    return 0;
}
