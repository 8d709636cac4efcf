/*
 * cli/main.c — the fedpress command: a table from the command's name to
 * the file that runs it (cli/sim.c, sweep.c, runs.c, metrics.c, plot.c,
 * keygen.c, coordinator.c, client.c; help and version here), and what every
 * command gets before and after (stdout checked once at the end).
 *
 * Exit codes: 0 success, 1 runtime error (message on stderr), 2 usage error,
 * 130 interrupted by a signal (the run is marked 'interrupted' in the store).
 * Output that cannot be written is a runtime error: every command's stdout
 * is flushed and checked once, in main (fp_cli_finish_stdout), so a truncated
 * listing or CSV export never exits 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../algorithms/qsgd.h"
#include "../core/blas.h"
#include "args.h"
#include "cli.h"
#include "daemons.h"
#include "keygen.h"
#include "plot.h"

/* Descriptors 0-2 closed by the caller (`>&-`) would be handed to the
 * next file we open (the store, the model), and printf would then write
 * into it and succeed. Held open on /dev/null read-only instead, a write to
 * a closed stdout fails (EBADF) as it should. */
static void fp__hold_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            int got = open("/dev/null", O_RDONLY);
            if (got >= 0 && got != fd)
                close(got); /* a lower one was free after all: leave it */
        }
}

static int fp__cmd_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fp_cli_help(stdout);
    return 0;
}

static int fp__cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("fedpress 0.1.0\nBLAS: %s\n", fp_blas_describe());
    return 0;
}

/* argv[1] is the command's name; each returns the exit code. */
static const struct fp__command {
    const char *name;
    int (*run)(int argc, char **argv);
} fp__commands[] = {
    {"sim", fp_cli_sim},
    {"sweep", fp_cli_sweep},
    {"runs", fp_cli_runs},
    {"metrics", fp_cli_metrics},
    {"plot", fp_cli_plot},
    {"keygen", fp_cli_keygen},
    {"coordinator", fp_cli_coordinator},
    {"client", fp_cli_client},
    {"help", fp__cmd_help},
    {"--help", fp__cmd_help},
    {"-h", fp__cmd_help},
    {"version", fp__cmd_version},
    {"--version", fp__cmd_version},
};

static int fp__main(int argc, char **argv)
{
    /* Before anything else: may restart the process with better OpenBLAS kernels. */
    fp_blas_init(argv);
    if (argc < 2) {
        fp_cli_help(stderr);
        return FP_EXIT_USAGE;
    }
    const char *simd = getenv("FEDPRESS_SIMD");
    if (simd && fp_qsgd_isa_parse(simd) < 0)
        fprintf(stderr,
                "fedpress: warning: FEDPRESS_SIMD=%s is not one of portable, avx2, avx512, "
                "native; using native (%s)\n",
                simd, fp_qsgd_isa_name(fp_qsgd_isa()));
    for (size_t k = 0; k < sizeof fp__commands / sizeof *fp__commands; k++)
        if (!strcmp(argv[1], fp__commands[k].name))
            return fp__commands[k].run(argc, argv);
    return fp_cli_usage_errorf("unknown command '%s'", argv[1]);
}

int main(int argc, char **argv)
{
    fp__hold_std_fds();
    return fp_cli_finish_stdout(fp__main(argc, argv));
}
