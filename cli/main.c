/*
 * cli/main.c — the fedpress command: sim, sweep, runs, metrics, help,
 * version (plot is cli/plot.c, keygen cli/keygen.c).
 *
 * Exit codes: 0 success, 1 runtime error (message on stderr), 2 usage error,
 * 130 interrupted by a signal (the run is marked 'interrupted' in the store).
 * Output that cannot be written is a runtime error: every command's stdout
 * is flushed and checked once, in main (fp_cli_finish_stdout), so a truncated
 * listing or CSV export never exits 0.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>
#include <uv.h>

#include "../algorithms/qsgd.h"
#include "../core/blas.h"
#include "../core/error.h"
#include "../core/format.h"
#include "../core/scenario.h"
#include "../sim/replay.h"
#include "../sim/sim.h"
#include "../store/store.h"
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
    const char *cmd = argv[1];
    if (!strcmp(cmd, "sim"))
        return fp_cli_sim(argc, argv);
    if (!strcmp(cmd, "sweep"))
        return fp_cli_sweep(argc, argv);
    if (!strcmp(cmd, "runs"))
        return fp_cli_runs(argc, argv);
    if (!strcmp(cmd, "metrics"))
        return fp_cli_metrics(argc, argv);
    if (!strcmp(cmd, "plot"))
        return fp_cli_plot(argc, argv);
    if (!strcmp(cmd, "keygen"))
        return fp_cli_keygen(argc, argv);
    if (!strcmp(cmd, "coordinator"))
        return fp_cli_coordinator(argc, argv);
    if (!strcmp(cmd, "client"))
        return fp_cli_client(argc, argv);
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        fp_cli_help(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("fedpress 0.1.0\nBLAS: %s\n", fp_blas_describe());
        return 0;
    }
    return fp_cli_usage_errorf("unknown command '%s'", cmd);
}

int main(int argc, char **argv)
{
    fp__hold_std_fds();
    return fp_cli_finish_stdout(fp__main(argc, argv));
}
