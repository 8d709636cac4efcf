/*
 * cli/client.c — `fedpress client`: options and keys, then client/'s loop
 * (docs/daemons.md).
 */
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../client/client.h"
#include "../net/keyfile.h"
#include "../net/peer.h"
#include "../workloads/workload.h"
#include "args.h"
#include "daemons.h"

static const char fp__client_usage[] =
    "usage: fedpress client --connect HOST:PORT --server-key PUBKEY --key c.key --state DIR\n"
    "                       [--data partition|DIR] [--welcome-deadline S] [--heartbeat S]\n"
    "                       [--reconnect-for S]\n"
    "  --connect H:P      the coordinator (a host name is looked up at each connection;\n"
    "                     one that does not resolve is retried as --reconnect-for says)\n"
    "  --server-key HEX   the coordinator's public key (64 hex digits, as fedpress keygen\n"
    "                     printed it), pinned: a server without its secret key fails the\n"
    "                     handshake before this client reveals anything\n"
    "  --key FILE         this client's secret key; its public key must be in the\n"
    "                     coordinator's allow-list, which gives the client its id\n"
    "  --state DIR        where the client keeps its algorithm state (c_i, e_i ...),\n"
    "                     written atomically once the coordinator includes an upload\n"
    "  --data partition   train on this client's shard of the scenario's partition, built\n"
    "                     from the scenario the coordinator sends (the default)\n"
    "  --data DIR         train on this client's own examples: DIR's\n"
    "                     train-images-idx3-ubyte[.gz] (28x28 images, as Fashion-MNIST's)\n"
    "                     and train-labels-idx1-ubyte[.gz] (classes 0-9), checked before\n"
    "                     connecting; the scenario's dataset must be fashion-mnist\n"
    "  --welcome-deadline S  give up (exit 1) if the coordinator has not completed the\n"
    "                     handshake and sent its welcome within S seconds (default 30)\n"
    "  --heartbeat S      send a heartbeat at least every S seconds, also while training\n"
    "                     (default 5; never less often than a third of the coordinator's\n"
    "                     dead-peer timeout, which the welcome tells)\n"
    "  --reconnect-for S  when the coordinator is unreachable (refused, its name not\n"
    "                     resolving) or the connection is lost, connect again (waits of\n"
    "                     0.5 s doubling up to 30 s, jittered, the last one cut to end at\n"
    "                     S) for up to S seconds without a welcome, then exit 1\n"
    "                     (default 600; 0: never reconnect)\n";

int fp_cli_client(int argc, char **argv)
{
    const char *connect = NULL, *server_key = NULL, *keyf = NULL, *state = NULL;
    const char *data = "partition", *welcome = NULL, *heartbeat = NULL, *reconnect = NULL;
    unsigned test_slow_ms = 0;
    uint32_t test_die_round = 0;
    uint32_t test_bad_round = 0;
    int test_bad_kind = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(fp__client_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--test-bad-upload") && i + 1 < argc) {
            /* TEST ONLY, not in --help: ROUND:nan, ROUND:short or
             * ROUND:dup, a malformed or repeated upload in that round
             * (tests/e2e_partial.sh) */
            char kind[8] = "";
            unsigned r = 0;
            if (sscanf(argv[++i], "%u:%7s", &r, kind) != 2 || !r ||
                (strcmp(kind, "nan") && strcmp(kind, "short") && strcmp(kind, "dup")))
                return fp_cli_usage_error(
                    "client", "--test-bad-upload: ROUND:nan, ROUND:short or ROUND:dup, not ",
                    argv[i]);
            test_bad_round = r;
            test_bad_kind = !strcmp(kind, "nan") ? 1 : !strcmp(kind, "short") ? 2 : 3;
            continue;
        }
        if (!strcmp(a, "--test-slow-train") && i + 1 < argc) {
            /* TEST ONLY, not in --help: each training takes MS ms longer
             * (tests/e2e_live.sh: heartbeats keep a slow client alive) */
            char *end;
            unsigned long ms = strtoul(argv[++i], &end, 10);
            if (*end || ms > 600000)
                return fp_cli_usage_error("client", "--test-slow-train: milliseconds, not ",
                                          argv[i]);
            test_slow_ms = (unsigned)ms;
            continue;
        }
        if (!strcmp(a, "--test-die-after-upload") && i + 1 < argc) {
            /* TEST ONLY, not in --help: SIGKILL itself once that round's
             * upload is written (tests/e2e_live.sh) */
            if (fp_cli_round(argv[++i], &test_die_round))
                return fp_cli_usage_error("client", "--test-die-after-upload: a round, not ",
                                          argv[i]);
            continue;
        }
        const char **dst = !strcmp(a, "--connect")            ? &connect
                           : !strcmp(a, "--heartbeat")        ? &heartbeat
                           : !strcmp(a, "--reconnect-for")    ? &reconnect
                           : !strcmp(a, "--server-key")       ? &server_key
                           : !strcmp(a, "--key")              ? &keyf
                           : !strcmp(a, "--state")            ? &state
                           : !strcmp(a, "--data")             ? &data
                           : !strcmp(a, "--welcome-deadline") ? &welcome
                                                              : NULL;
        if (!dst)
            return fp_cli_usage_error("client", "unknown argument ", a);
        if (i + 1 >= argc || !argv[i + 1][0])
            return fp_cli_usage_error("client", a, " needs a value");
        *dst = argv[++i];
    }
    if (!connect || !server_key || !keyf || !state)
        return fp_cli_usage_error("client",
                                  "--connect, --server-key, --key and --state are required", "");
    struct fp_error err = {0};
    const char *data_dir = strcmp(data, "partition") ? data : NULL;
    /* before connecting: a directory that cannot serve is said at once,
     * not after the coordinator has counted on this client */
    if (data_dir && fp_workload_check_client_dir(data_dir, &err)) {
        fprintf(stderr, "fedpress client: %s\n", err.msg);
        return 1;
    }
    char host[256];
    int port;
    uint8_t spub[FP_NOISE_KEY], key[FP_NOISE_KEY];
    if (fp_peer_hostport(connect, host, sizeof host, &port, &err))
        return fp_cli_usage_error("client", "--connect: ", err.msg);
    if (port == 0)
        return fp_cli_usage_error("client", "--connect: ", "port 0 is not a port to connect to");
    if (fp_key_from_hex(server_key, spub))
        return fp_cli_usage_error("client", "--server-key: not 64 hex digits: ", server_key);
    double welcome_s = 30, heartbeat_s = 5, reconnect_for = 600;
    if (fp_cli_seconds(welcome, 0.001, 86400, &welcome_s))
        return fp_cli_usage_error(
            "client", "--welcome-deadline: not a number of seconds in (0, 86400]: ", welcome);
    if (fp_cli_seconds(heartbeat, 0.1, 3600, &heartbeat_s))
        return fp_cli_usage_error(
            "client", "--heartbeat: not a number of seconds in [0.1, 3600]: ", heartbeat);
    if (fp_cli_seconds(reconnect, 0, 86400 * 7, &reconnect_for))
        return fp_cli_usage_error(
            "client", "--reconnect-for: not a number of seconds in [0, 604800]: ", reconnect);
    struct stat st;
    if (stat(state, &st) || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "fedpress client: --state %s: %s (create the directory first)\n", state,
                errno && stat(state, &st) ? strerror(errno) : "not a directory");
        return 1;
    }
    if (fp_keyfile_read(keyf, key, &err)) {
        fprintf(stderr, "fedpress client: %s\n", err.msg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    const struct fp_client_options o = {.host = host,
                                        .port = port,
                                        .server_pub = spub,
                                        .key = key,
                                        .state_dir = state,
                                        .data_dir = data_dir,
                                        .welcome_s = welcome_s,
                                        .heartbeat_s = heartbeat_s,
                                        .reconnect_for = reconnect_for,
                                        .test_slow_ms = test_slow_ms,
                                        .test_die_round = test_die_round,
                                        .log = stderr,
                                        .test_bad_round = test_bad_round,
                                        .test_bad_kind = test_bad_kind};
    struct fp_client_result res;
    int rc = fp_client_run(&o, &res, &err);
    sodium_memzero(key, sizeof key);
    if (rc) {
        fprintf(stderr, "fedpress client: %s\n", err.msg);
        return 1;
    }
    printf("client %u: run %lld %s, sampled in %u rounds, included in %u\n"
           "model sha256 %s\n",
           res.id, (long long)res.run_id, res.stopped ? "stopped by the coordinator" : "complete",
           res.rounds_sampled, res.rounds_included, res.model_sha256);
    return 0;
}
