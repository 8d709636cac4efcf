/*
 * cli/args.c — see args.h.
 */
#include "args.h"

#include <stdio.h>
#include <stdlib.h>

int fp_cli_usage_error(const char *cmd, const char *what, const char *arg)
{
    fprintf(stderr, "fedpress %s: %s%s\n(run 'fedpress %s --help' for usage)\n", cmd, what, arg,
            cmd);
    return 2;
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

int fp_cli_round(const char *v, uint32_t *out)
{
    char *end;
    unsigned long r = strtoul(v, &end, 10);
    if (*end || !r || r > UINT32_MAX)
        return -1;
    *out = (uint32_t)r;
    return 0;
}
