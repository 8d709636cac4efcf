/*
 * cli/coordinator.c — `fedpress coordinator`: options, key, allow-list,
 * scenario and store, then coordinator/'s loop (docs/daemons.md).
 */
#include <math.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../coordinator/coordinator.h"
#include "../core/format.h"
#include "../net/keyfile.h"
#include "../net/peer.h"
#include "daemons.h"
#include "plot.h"

static const char fp__coord_usage[] =
    "usage: fedpress coordinator --scenario FILE.ini --listen ADDR:PORT --key coord.key\n"
    "                            --allow clients.pub [--store PATH] [--deadline SECONDS]\n"
    "                            [--wait SECONDS] [--handshake-deadline SECONDS]\n"
    "                            [--max-pending N] [--dead-peer S] [--write-stall S]\n"
    "                            [--ready FILE] [--quiet]\n"
    "  --scenario FILE   the run's scenario (sent to every client in its welcome)\n"
    "  --listen A:P      address and port to listen on (0.0.0.0:7400; port 0: any free one)\n"
    "  --key FILE        the coordinator's secret key (fedpress keygen --out FILE); clients\n"
    "                    pin its public key\n"
    "  --allow FILE      one 'ID PUBKEY' line per client, ids 0 to N-1 ('#' comments); N\n"
    "                    must be the scenario's [data] clients\n"
    "  --store PATH      the SQLite run store (default runs.db)\n"
    "  --deadline S      a round's deadline from its broadcast; overrides the scenario's\n"
    "                    [participation] deadline (one of the two is required)\n"
    "  --wait S          how long the first round waits for all N clients (default 600)\n"
    "  --handshake-deadline S  a connection not admitted within S seconds is closed;\n"
    "                    so is one that does not read its last messages (default 10)\n"
    "  --max-pending N   connections still in their handshake at once; one more closes\n"
    "                    the oldest of them (default 64)\n"
    "  --dead-peer S     an admitted client that sends nothing (not even a heartbeat) for\n"
    "                    S whole seconds is closed (default 30; clients are told S in the\n"
    "                    welcome and heartbeat at least every S/3 seconds)\n"
    "  --write-stall S   a connection whose queued bytes make no progress for S seconds\n"
    "                    is closed (default 30)\n"
    "  --ready FILE      write the port to FILE once listening (for scripts)\n"
    "  --quiet           no progress lines\n"
    "In this version the first round starts when all N clients are connected; a round\n"
    "closes when every sampled client answered, at the deadline, or min_updates uploads\n"
    "plus wait_after_min; below min_updates it is tried twice more, then the run fails\n"
    "(docs/daemons.md). A key that connects again replaces its old session; a client\n"
    "whose connection was lost keeps its slot in the open round, and rejoins it if it is\n"
    "back before the round closes.\n";

static volatile sig_atomic_t fp__coord_stop;

static int fp__coord_usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "fedpress coordinator: %s%s\n(run 'fedpress coordinator --help' for usage)\n",
            what, arg);
    return 2;
}

static int fp__seconds(const char *v, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !isfinite(d) || d <= 0 || d > 86400 * 7)
        return -1;
    *out = d;
    return 0;
}

int fp_cli_coordinator(int argc, char **argv)
{
    const char *scenario = NULL, *listen = NULL, *keyf = NULL, *allowf = NULL;
    const char *store_path = "runs.db", *ready = NULL;
    double deadline = 0, wait = 600, hs = 10, stall = 30; /* deadline 0: the scenario's */
    unsigned long dead_peer = 30;
    unsigned long max_pending = 64;
    int quiet = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(fp__coord_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        }
        const char **dst = !strcmp(a, "--scenario") ? &scenario
                           : !strcmp(a, "--listen") ? &listen
                           : !strcmp(a, "--key")    ? &keyf
                           : !strcmp(a, "--allow")  ? &allowf
                           : !strcmp(a, "--store")  ? &store_path
                           : !strcmp(a, "--ready")  ? &ready
                                                    : NULL;
        int is_time = !strcmp(a, "--deadline") || !strcmp(a, "--wait") ||
                      !strcmp(a, "--handshake-deadline") || !strcmp(a, "--write-stall");
        int is_count = !strcmp(a, "--max-pending") || !strcmp(a, "--dead-peer");
        if (!dst && !is_time && !is_count)
            return fp__coord_usage_error("unknown argument ", a);
        if (i + 1 >= argc || !argv[i + 1][0])
            return fp__coord_usage_error(a, " needs a value");
        const char *v = argv[++i];
        if (is_time) {
            double *t = !strcmp(a, "--deadline")      ? &deadline
                        : !strcmp(a, "--wait")        ? &wait
                        : !strcmp(a, "--write-stall") ? &stall
                                                      : &hs;
            if (fp__seconds(v, t))
                return fp__coord_usage_error(a, " needs a number of seconds (> 0)");
        } else if (is_count) {
            /* --dead-peer travels in the welcome as 16 bits of seconds */
            const unsigned long max = !strcmp(a, "--dead-peer") ? 65535 : 1000000;
            char *end;
            unsigned long *dst_n = !strcmp(a, "--dead-peer") ? &dead_peer : &max_pending;
            *dst_n = strtoul(v, &end, 10);
            if (end == v || *end || *v == '-' || *dst_n < 1 || *dst_n > max)
                return fp__coord_usage_error(a, max == 65535
                                                    ? " needs whole seconds from 1 to 65535"
                                                    : " needs a count from 1 to 1000000");
        } else {
            *dst = v;
        }
    }
    if (!scenario || !listen || !keyf || !allowf)
        return fp__coord_usage_error("--scenario, --listen, --key and --allow are required", "");

    struct fp_error err = {0};
    char host[256];
    int port;
    if (fp_peer_hostport(listen, host, sizeof host, &port, &err))
        return fp__coord_usage_error("--listen: ", err.msg);
    struct fp_scenario sc;
    int rc = fp_scenario_load(&sc, scenario, NULL, 0, &err);
    if (rc) {
        fprintf(stderr, "fedpress coordinator: %s\n", err.msg);
        return rc == FP_EIO || rc == FP_ENOMEM ? 1 : 2;
    }
    uint8_t key[FP_NOISE_KEY];
    struct fp_allow allow = {0};
    struct fp_store *store = NULL;
    int exit_code = 1;
    if (fp_keyfile_read(keyf, key, &err) || fp_allow_load(&allow, allowf, &err)) {
        fprintf(stderr, "fedpress coordinator: %s\n", err.msg);
        goto out;
    }
    if (fp_cli_open_store(&store, store_path, FP_CLI_STORE_CREATE))
        goto out;
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-write is an EPIPE, not our death */
    const struct fp_coord_options o = {.host = host,
                                       .port = port,
                                       .ready_file = ready,
                                       .key = key,
                                       .allow = &allow,
                                       .deadline_s = deadline,
                                       .wait_s = wait,
                                       .handshake_s = hs,
                                       .max_pending = (unsigned)max_pending,
                                       .dead_peer_s = (unsigned)dead_peer,
                                       .write_stall_s = stall,
                                       .progress = quiet ? NULL : stdout,
                                       .log = stderr,
                                       .stop = &fp__coord_stop};
    struct fp_run_result res = {.run_id = -1};
    if (fp_coord_run(&sc, store, &o, &res, &err)) {
        fprintf(stderr, "fedpress coordinator: %s\n", err.msg);
        if (res.run_id >= 0)
            fprintf(stderr, "fedpress coordinator: run %lld marked 'failed' in %s\n",
                    (long long)res.run_id, store_path);
        goto out;
    }
    char up[32], down[32];
    fp_format_bytes(res.uplink_bytes, up, sizeof up);
    fp_format_bytes(res.downlink_bytes, down, sizeof down);
    printf("run %lld '%s' %s: %u/%u rounds, uplink %s, downlink %s\nmodel sha256 %s\n",
           (long long)res.run_id, sc.name, res.interrupted ? "interrupted" : "completed",
           res.rounds_done, sc.rounds, up, down, res.model_sha256);
    exit_code = res.interrupted ? 130 : 0;
out:
    sodium_memzero(key, sizeof key);
    fp_allow_free(&allow);
    if (store)
        fp_store_close(store);
    return exit_code;
}
