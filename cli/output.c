/*
 * cli/output.c — what the commands write to stdout: the formats of `runs`
 * and `metrics` (table, csv, json) and the one check that stdout took it
 * all (cli.h). Output that cannot be written is a runtime error: every
 * command's stdout is flushed and checked once, in main
 * (fp_cli_finish_stdout), so a truncated listing or CSV export never
 * exits 0.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../store/store.h"
#include "args.h"
#include "cli.h"

/* stdout's write error: its errno, once known, and whether a command has
 * already said what could not be written (main then only sets the exit
 * code). */
static int fp__out_errno;
static int fp__out_reported;

int fp_cli_out_failed(void)
{
    if (!ferror(stdout))
        return 0;
    if (!fp__out_errno)
        fp__out_errno = errno ? errno : EIO;
    return 1;
}

int fp_cli_out_flush_unreported(void)
{
    if (!(fflush(stdout) != 0 || ferror(stdout)) || fp__out_reported)
        return 0;
    fp__out_errno = fp__out_errno ? fp__out_errno : errno;
    fp__out_reported = 1;
    return fp__out_errno ? fp__out_errno : EIO;
}

int fp_cli_finish_stdout(int rc)
{
    int e = 0;
    if (fflush(stdout) != 0)
        e = errno;
    if (ferror(stdout) && !e)
        e = fp__out_errno ? fp__out_errno : EIO;
    if (fclose(stdout) != 0 && !e)
        e = errno;
    if (!e)
        return rc;
    if (!fp__out_reported)
        fprintf(stderr, "fedpress: writing to stdout: %s\n", strerror(e));
    return rc == 0 ? FP_EXIT_RUNTIME : rc;
}

int fp_cli_parse_fmt(const char *v, enum fp_cli_fmt *f)
{
    if (!strcmp(v, "table"))
        *f = FP_FMT_TABLE;
    else if (!strcmp(v, "csv"))
        *f = FP_FMT_CSV;
    else if (!strcmp(v, "json"))
        *f = FP_FMT_JSON;
    else
        return -1;
    return 0;
}

int fp_cli_list_opt(int argc, char **argv, int *i, const char *cmd, const char **store_path,
                    enum fp_cli_fmt *fmt)
{
    const char *opt = argv[*i], *name, *v;
    char what[96];
    if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
        fp_cli_help(stdout);
        return FP_CLI_OPT_HELP;
    }
    if (fp_cli_is_opt(opt, "--store"))
        name = "--store";
    else if (fp_cli_is_opt(opt, "--format"))
        name = "--format";
    else
        return 0;
    if (!(v = fp_cli_optval(argc, argv, i, name))) {
        snprintf(what, sizeof what, "%s: option '%%s' needs a value", cmd);
        return -fp_cli_usage_errorf(what, name);
    }
    if (!strcmp(name, "--store")) {
        *store_path = v;
    } else if (fp_cli_parse_fmt(v, fmt)) {
        snprintf(what, sizeof what, "%s: --format '%%s': expected table, csv or json", cmd);
        return -fp_cli_usage_errorf(what, v);
    }
    return 1;
}

void fp_cli_num(enum fp_cli_fmt f, double v, const char *cfmt, int width)
{
    if (isnan(v)) {
        if (f == FP_FMT_JSON)
            printf("null");
        else if (f == FP_FMT_TABLE)
            printf("%*s", width, "-");
        return;
    }
    if (f == FP_FMT_TABLE)
        printf("%*.*f", width, 6, v);
    else
        printf(cfmt, v);
}

void fp_cli_json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

void fp_cli_csv_str(const char *s)
{
    if (!s || !strpbrk(s, ",\"\r\n")) {
        fputs(s ? s : "", stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
}

void fp_cli_line_str(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++)
        putchar(*p < 0x20 || *p == 0x7f ? ' ' : *p);
}

void fp_cli_run_numbers(const struct fp_run_info *r, char *acc, size_t na, char *loss, size_t nl)
{
    if (isnan(r->final_accuracy))
        snprintf(acc, na, "-");
    else
        snprintf(acc, na, "%.4f", r->final_accuracy);
    if (isnan(r->final_loss))
        snprintf(loss, nl, "-");
    else
        snprintf(loss, nl, "%.6g", r->final_loss);
}
