/*
 * cli/cli.h — what the command files of cli/ share, private to cli/: the
 * exit codes, the commands main.c's table dispatches to, and the helpers
 * more than one command uses. Option parsing is cli/args.h; plot, keygen
 * and the daemons have their own headers (plot.h, keygen.h, daemons.h).
 */
#ifndef FP_CLI_H
#define FP_CLI_H

#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

/* Exit codes: 0 success, 1 runtime error (message on stderr), 2 usage
 * error, 130 interrupted by a signal. */
#define FP_EXIT_RUNTIME     1
#define FP_EXIT_USAGE       2
#define FP_EXIT_INTERRUPTED 130

/* ---- the commands main.c dispatches to; argv[1] is the command, the
 * result is the exit code ---- */

int fp_cli_sim(int argc, char **argv);     /* cli/sim.c */
int fp_cli_sweep(int argc, char **argv);   /* cli/sweep.c */
int fp_cli_runs(int argc, char **argv);    /* cli/runs.c */
int fp_cli_metrics(int argc, char **argv); /* cli/metrics.c */

/* The usage of every command into f (cli/help.c). A failure to write it
 * to stdout is left for fp_cli_finish_stdout to report. */
void fp_cli_help(FILE *f);

/* ---- stdout and the output formats (cli/output.c) ---- */

/* 1 once stdout has failed: a listing stops early instead of formatting
 * rows nobody can read. Call right after a write, while errno is its. */
int fp_cli_out_failed(void);

/* Flushes stdout. 0 if all is written, or if a failure was already
 * reported; otherwise the failure's errno, which the caller now reports in
 * its own words (fp_cli_finish_stdout then only sets the exit code). */
int fp_cli_out_flush_unreported(void);

/* The one check of stdout for every command: whatever is still buffered is
 * written, and an error at any point (a full disk, a closed descriptor, a
 * reader gone) turns exit 0 into 1 with a message. Closes stdout; returns
 * the exit code. */
int fp_cli_finish_stdout(int rc);

enum fp_cli_fmt { FP_FMT_TABLE, FP_FMT_CSV, FP_FMT_JSON };

/* "table", "csv" or "json" into *f; -1 if none of them. */
int fp_cli_parse_fmt(const char *v, enum fp_cli_fmt *f);

/* Takes argv[*i] if it is --help or an option every listing command (runs,
 * metrics) has: --store PATH, --format table|csv|json. Returns as
 * fp_cli_run_opt does: 1 taken, 0 not one of them, FP_CLI_OPT_HELP after
 * printing the usage, or -(exit code) after printing the usage error. */
int fp_cli_list_opt(int argc, char **argv, int *i, const char *cmd, const char **store_path,
                    enum fp_cli_fmt *fmt);

/* v on stdout, with cfmt (csv, json) or in width columns (table). NaN (not
 * evaluated) prints as empty (csv), null (json) or '-' (table). */
void fp_cli_num(enum fp_cli_fmt f, double v, const char *cfmt, int width);

/* s on stdout as a JSON string (UTF-8 passes through; quotes, backslashes
 * and control characters are escaped). */
void fp_cli_json_str(const char *s);

/* s on stdout as a CSV field: quoted, with quotes doubled, when it holds a
 * comma, a quote or a line break. */
void fp_cli_csv_str(const char *s);

/* s on stdout on one line of a table: a line break or other control
 * character prints as a space. */
void fp_cli_line_str(const char *s);

struct fp_run_info;
/* A run's final accuracy ("%.4f") and test loss ("%.6g"), "-" where none. */
void fp_cli_run_numbers(const struct fp_run_info *r, char *acc, size_t na, char *loss, size_t nl);

/* ---- the run store (cli/store.c) ---- */

struct fp_store;
/* Opens the run store at path for a command, in one of three modes:
 * CREATE (sim, sweep, coordinator: to write, created if missing), READ
 * (runs, metrics, plot: read-only, it must exist: a typo in --store would
 * otherwise show an empty list and leave a stray file, and a reader never
 * changes the file) or WRITE (sim --resume: to write, it must exist).
 * Prints the reason to stderr and returns -1 on failure. */
#define FP_CLI_STORE_CREATE 0
#define FP_CLI_STORE_READ   1
#define FP_CLI_STORE_WRITE  2
int fp_cli_open_store(struct fp_store **st, const char *path, int mode);

/* A run is written by one process at a time: the store holds a lock on the
 * run for the handle that writes it (fp_store_lock_run; a new run is
 * locked by fp_store_begin_run). The lock is on the store file itself, so
 * another path to the same file meets it, and the kernel drops it when the
 * process dies, even by kill -9, so a crash never blocks a --resume.
 * Returns 0, FP_STORE_HELD after saying who holds it, or an error. */
int fp_cli_lock_run(struct fp_store *store, int64_t run_id);

/* ---- running a scenario: what sim and sweep share (cli/runner.c) ---- */

/* Set by SIGINT, SIGTERM or SIGHUP once fp_cli_catch_stop_signals is in
 * place: finish the round in progress, then stop. */
extern volatile sig_atomic_t fp_cli_stop;

/* SIGINT, SIGTERM and SIGHUP set fp_cli_stop (a second SIGINT or SIGTERM
 * kills). */
void fp_cli_catch_stop_signals(void);

/* SIGPIPE and SIGXFSZ ignored: a write fails instead of killing a run. */
void fp_cli_ignore_sigpipe(void);

struct fp_resume;
/* A warning on stderr if run id began with other BLAS kernels than this
 * process has (r is its stored state). */
void fp_cli_warn_resume_blas(const struct fp_resume *r, long long id);

/* The options sim and sweep share. */
struct fp_cli_run_opts {
    const char *file;  /* the scenario file, NULL if none was given */
    const char **sets; /* argc entries */
    size_t nsets;
    unsigned long threads;
    const char *store_path;
    int quiet, dry_run;
};

/* The defaults, with room for argc --set values (free o->sets); -1 out of
 * memory. */
int fp_cli_run_opts_init(struct fp_cli_run_opts *o, int argc);

/* Takes argv[*i] if it is a shared option, --help or the scenario file:
 * 1 taken, 0 not one of them (an option of the command's own, or unknown),
 * FP_CLI_OPT_HELP after printing the usage (exit 0), or an exit code (< 0 as
 * -code) after printing the usage error. */
#define FP_CLI_OPT_HELP 2
int fp_cli_run_opt(int argc, char **argv, int *i, const char *cmd, struct fp_cli_run_opts *o);

/* What fp_cli_run_opt or fp_cli_list_opt returned, read: 1 if the command
 * ends here (--help printed, or a usage error), with *rc its exit code;
 * 0 if it goes on (took says whether argv[*i] was taken). */
static inline int fp_cli_opt_ends(int took, int *rc)
{
    if (took >= 0 && took != FP_CLI_OPT_HELP)
        return 0;
    *rc = took < 0 ? -took : 0;
    return 1;
}

/* The exit code for a file that did not load (fp_scenario_load's,
 * fp_allow_load's, fp_keyfile_read's error lrc): a file whose content is
 * wrong is a usage error (2), a configuration error no restart mends
 * (systemd's RestartPreventExitStatus=2, docs/deployment.md); one that
 * cannot be read (it may be there at the next start: a mount, a
 * deployment under way), or no memory, is not (1). */
int fp_cli_load_exit(int lrc);

struct fp_scenario;
struct fp_run_result;
/* Runs a loaded scenario into an open store: Ctrl-C handling, the header
 * line, the simulation, the summary line; resume (NULL for a new run) is
 * run resume_id's stored state.
 * Returns the exit code: 0, FP_EXIT_INTERRUPTED or FP_EXIT_RUNTIME. */
int fp_cli_run_scenario(const struct fp_scenario *sc, struct fp_store *store,
                        const char *store_path, unsigned long threads, int quiet,
                        const char *model_out, struct fp_resume *resume, int64_t resume_id,
                        struct fp_run_result *res);

#endif
