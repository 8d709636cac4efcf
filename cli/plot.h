/*
 * cli/plot.h — `fedpress plot`: one metric of several runs as curves in an
 * SVG, PNG or PDF file, drawn with PLplot. See docs/plotting.md.
 */
#ifndef FP_CLI_PLOT_H
#define FP_CLI_PLOT_H

/* argv[1] is "plot". Returns the process exit code: 0 written, 1 runtime
 * error (no store, no such run, nothing to plot, PLplot or file error),
 * 2 usage error. Messages go to stderr. */
int fp_cli_plot(int argc, char **argv);

struct fp_store;
/* Opens the run store at path for a command (cli/main.c), in one of three
 * modes: CREATE (sim, sweep: to write, created if missing), READ (runs,
 * metrics, plot: read-only, it must exist: a typo in --store would
 * otherwise show an empty list and leave a stray file, and a reader never
 * changes the file) or WRITE (sim --resume: to write, it must exist).
 * Prints the reason to stderr and returns -1 on failure. */
#define FP_CLI_STORE_CREATE 0
#define FP_CLI_STORE_READ   1
#define FP_CLI_STORE_WRITE  2
int fp_cli_open_store(struct fp_store **st, const char *path, int mode);

#endif
