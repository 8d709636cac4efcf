/*
 * cli/daemons.h — `fedpress coordinator` (cli/coordinator.c) and
 * `fedpress client` (cli/client.c); docs/daemons.md.
 */
#ifndef FP_CLI_DAEMONS_H
#define FP_CLI_DAEMONS_H

/* argv[1] is the command. Exit codes: 0 the run completed, 1 runtime
 * error (message on stderr), 2 usage or configuration error (for the
 * coordinator, refused before a run is stored), 130 stopped by a signal. */
int fp_cli_coordinator(int argc, char **argv);
int fp_cli_client(int argc, char **argv);

#endif
