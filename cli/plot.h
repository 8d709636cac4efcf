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

#endif
