/*
 * cli/coordinator.c — `fedpress coordinator`: options, key, allow-list,
 * scenario and store, then coordinator/'s loop (docs/daemons.md).
 */
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../coordinator/coordinator.h"
#include "../core/format.h"
#include "../net/keyfile.h"
#include "../net/peer.h"
#include "args.h"
#include "daemons.h"
#include "cli.h"

static const char fp__coord_usage[] =
    "usage: fedpress coordinator --scenario FILE.ini --listen ADDR:PORT --key coord.key\n"
    "                            --allow clients.pub [--store PATH] [--resume-or-start]\n"
    "                            [--deadline SECONDS] [--wait SECONDS]\n"
    "                            [--handshake-deadline SECONDS] [--max-pending N]\n"
    "                            [--max-pending-per-address N] [--dead-peer S]\n"
    "                            [--write-stall S] [--ready FILE] [--quiet]\n"
    "       fedpress coordinator --resume RUN --listen ADDR:PORT --key coord.key\n"
    "                            --allow clients.pub [--store PATH] [--scenario FILE.ini] ...\n"
    "  --scenario FILE   the run's scenario (sent to every client in its welcome)\n"
    "  --resume-or-start continue the run of exactly this scenario that the store holds\n"
    "                    unfinished (after a crash, a stop or a failure), from its last\n"
    "                    committed round; start it if the store has none; if it is\n"
    "                    completed, say so and exit 0 (for a systemd unit's\n"
    "                    Restart=on-failure)\n"
    "  --resume RUN      continue run RUN of the store with its stored scenario (a\n"
    "                    --scenario given must be that one); a completed run is refused\n"
    "  --listen A:P      IP address and port to listen on (0.0.0.0:7400, [::]:7400; not a\n"
    "                    host name; port 0: any free one)\n"
    "  --key FILE        the coordinator's secret key (fedpress keygen --out FILE); clients\n"
    "                    pin its public key\n"
    "  --allow FILE      one 'ID PUBKEY' line per client, ids 0 to N-1 ('#' comments); N\n"
    "                    must be the scenario's [data] clients; 'ID -': no key (revoked);\n"
    "                    SIGHUP re-reads it\n"
    "  --store PATH      the SQLite run store (default runs.db)\n"
    "  --deadline S      a round's deadline from its broadcast; overrides the scenario's\n"
    "                    [participation] deadline (one of the two is required)\n"
    "  --wait S          how long the first round waits for all N clients (default 600);\n"
    "                    then it starts with those connected if they are at least\n"
    "                    min_updates (a sampled client not connected is absent), else\n"
    "                    the run fails\n"
    "  --handshake-deadline S  a connection not admitted within S seconds is closed;\n"
    "                    so is one that does not read its last messages (default 10)\n"
    "  --max-pending N   connections still in their handshake at once; one more closes\n"
    "                    the oldest of them (default 64)\n"
    "  --max-pending-per-address N  of them from one address (IPv6: one /64); one more\n"
    "                    from it closes that address's oldest (default 8)\n"
    "  --dead-peer S     an admitted client that sends nothing (not even a heartbeat) for\n"
    "                    S whole seconds is closed (default 30; clients are told S in the\n"
    "                    welcome and heartbeat at least every S/3 seconds)\n"
    "  --write-stall S   a connection whose queued bytes make no progress for S seconds\n"
    "                    is closed (default 30)\n"
    "  --ready FILE      write the port to FILE once listening (for scripts)\n"
    "  --quiet           no progress lines\n"
    "The first round starts when all N clients are connected, or at --wait; a round\n"
    "closes when every sampled client answered, at the deadline, or min_updates uploads\n"
    "plus wait_after_min; below min_updates it is tried twice more, then the run fails\n"
    "(docs/daemons.md); each failed attempt is stored as it closes, and the failure in\n"
    "runs.error (docs/deployment.md). A key that connects again replaces its old\n"
    "session; a client whose connection was lost keeps its slot in the open round, and\n"
    "rejoins it if it is back before the round closes.\n";

static volatile sig_atomic_t fp__coord_stop;

/* Which run the coordinator drives, decided before the loop starts. */
struct fp__coord_run {
    struct fp_scenario sc;
    struct fp_resume resume; /* filled when a run is continued */
    int64_t id;              /* the run continued; 0: a new run */
    int done;                /* --resume-or-start found it completed: nothing to do */
};

/* Run `id` of the store, to be continued: its lock taken (another live
 * coordinator holding it is refused, naming its pid), its checkpoint read,
 * refused if it is completed (unless or_start: then *done) or if `canon`
 * (the --scenario given, may be NULL) is not its scenario. 0 or an exit
 * code. */
static int fp__coord_load_run(struct fp_store *store, const char *store_path, int64_t id,
                              const char *canon, const char *scenario_file, int or_start,
                              struct fp__coord_run *cr)
{
    struct fp_error err = {0};
    int rc = fp_store_lock_run(store, id, &err);
    if (rc == FP_STORE_HELD) {
        fprintf(stderr,
                "fedpress coordinator: %s A run has one coordinator: refusing to start a second "
                "one on it (stop the other first)\n",
                err.msg);
        return 1;
    }
    if (rc || fp_store_load_resume(store, id, &cr->resume, &err)) {
        fprintf(stderr, "fedpress coordinator: %s\n", err.msg);
        return 1;
    }
    cr->id = id;
    if (!strcmp(cr->resume.status, "completed")) {
        fprintf(stderr, "fedpress coordinator: run %lld in %s is already completed%s\n",
                (long long)id, store_path,
                or_start ? ": nothing to do (its model: fedpress runs --store)"
                         : "; a completed run is never continued");
        cr->done = or_start;
        return or_start ? 0 : 1;
    }
    if (canon && strcmp(canon, cr->resume.scenario)) {
        fprintf(stderr,
                "fedpress coordinator: run %lld was started with another scenario than %s (its "
                "canonical text differs): refusing to continue it with this one; give the "
                "run's own scenario, or none (--resume takes the stored one)\n",
                (long long)id, scenario_file);
        return 1;
    }
    char origin[64];
    snprintf(origin, sizeof origin, "run %lld's stored scenario", (long long)id);
    if (fp_scenario_load_string(&cr->sc, cr->resume.scenario, origin, NULL, 0, &err)) {
        fprintf(stderr, "fedpress coordinator: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "fedpress coordinator: continuing run %lld of %s ('%s', %s) after round %u\n",
            (long long)id, store_path, cr->resume.status, cr->sc.name,
            cr->resume.state ? cr->resume.round : 0u);
    return 0;
}

/* A new run, run --resume RUN, or (--resume-or-start) the unfinished run
 * of exactly this scenario: the store is searched by the scenario's
 * canonical text `canon` (of the --scenario file, loaded by the caller;
 * NULL: none given), so a changed scenario (any key, the seed, N) is a new
 * run, never a continued one; changed input files are refused by run/'s
 * check of their SHA-256. 0, or an exit code. */
static int fp__coord_pick(struct fp_store *store, const char *store_path, const char *scenario,
                          const char *canon, const char *resume_arg, int or_start,
                          struct fp__coord_run *cr)
{
    struct fp_error err = {0};
    int64_t id = 0;
    if (resume_arg) {
        char *end;
        errno = 0;
        id = strtoll(resume_arg, &end, 10);
        if (!isdigit((unsigned char)*resume_arg) || *end || errno || id < 1)
            return fp_cli_usage_error(
                "coordinator", "--resume needs a run id (see fedpress runs), not ", resume_arg);
    } else if (or_start) {
        char status[16];
        /* the newest run of the scenario: unfinished, it is continued;
         * completed, there is nothing to do (an older completed run never
         * hides a newer one that was killed) */
        if (fp_store_find_newest_run(store, canon, &id, status, sizeof status, &err)) {
            fprintf(stderr, "fedpress coordinator: %s\n", err.msg);
            return 1;
        }
        if (!id)
            fprintf(stderr,
                    "fedpress coordinator: %s holds no run of this scenario: starting one\n",
                    store_path);
    }
    return id ? fp__coord_load_run(store, store_path, id, canon, scenario, or_start, cr) : 0;
}

/* The scenario against the allow-list and the deadline (fp_coord_check):
 * 0, or the message and exit 2, before a run is stored. */
static int fp__coord_check(const struct fp_scenario *sc, const char *origin,
                           const struct fp_allow *allow, const char *allowf, double deadline)
{
    struct fp_error err = {0};
    if (!fp_coord_check(sc, allow, deadline, &err))
        return 0;
    fprintf(stderr, "fedpress coordinator: %s with --allow %s: %s\n", origin, allowf, err.msg);
    return 2;
}

int fp_cli_coordinator(int argc, char **argv)
{
    const char *scenario = NULL, *listen = NULL, *keyf = NULL, *allowf = NULL;
    const char *store_path = "runs.db", *ready = NULL, *resume_arg = NULL;
    double deadline = 0, wait = 600, hs = 10, stall = 30; /* deadline 0: the scenario's */
    unsigned long max_pending = 64, max_per_addr = 8, dead_peer = 30;
    int quiet = 0, or_start = 0;
    uint32_t test_die_round = 0;
    double test_slow_hash = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(fp__coord_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet") || !strcmp(a, "--resume-or-start")) {
            if (!strcmp(a, "--quiet"))
                quiet = 1;
            else
                or_start = 1;
            continue;
        }
        if (!strcmp(a, "--test-die-after-commit") && i + 1 < argc) {
            /* TEST ONLY, not in --help: SIGKILL itself once that round is
             * committed, before its results go out (tests/e2e_resume.sh) */
            if (fp_cli_round(argv[++i], &test_die_round))
                return fp_cli_usage_error("coordinator", "--test-die-after-commit: a round, not ",
                                          argv[i]);
            continue;
        }
        if (!strcmp(a, "--test-slow-hash") && i + 1 < argc) {
            /* TEST ONLY, not in --help: each upload hashed on the thread
             * pool takes SECONDS longer (tests/e2e_hash_wait.sh) */
            if (fp_cli_seconds(argv[++i], 0, 60, &test_slow_hash))
                return fp_cli_usage_error("coordinator", "--test-slow-hash: seconds, not ",
                                          argv[i]);
            continue;
        }
        const char **dst = !strcmp(a, "--scenario") ? &scenario
                           : !strcmp(a, "--listen") ? &listen
                           : !strcmp(a, "--key")    ? &keyf
                           : !strcmp(a, "--allow")  ? &allowf
                           : !strcmp(a, "--store")  ? &store_path
                           : !strcmp(a, "--ready")  ? &ready
                           : !strcmp(a, "--resume") ? &resume_arg
                                                    : NULL;
        int is_time = !strcmp(a, "--deadline") || !strcmp(a, "--wait") ||
                      !strcmp(a, "--handshake-deadline") || !strcmp(a, "--write-stall");
        unsigned long *count = !strcmp(a, "--max-pending")               ? &max_pending
                               : !strcmp(a, "--max-pending-per-address") ? &max_per_addr
                               : !strcmp(a, "--dead-peer")               ? &dead_peer
                                                                         : NULL;
        int is_count = count != NULL;
        if (!dst && !is_time && !is_count)
            return fp_cli_usage_error("coordinator", "unknown argument ", a);
        if (i + 1 >= argc || !argv[i + 1][0])
            return fp_cli_usage_error("coordinator", a, " needs a value");
        const char *v = argv[++i];
        if (is_time) {
            double *t = !strcmp(a, "--deadline")      ? &deadline
                        : !strcmp(a, "--wait")        ? &wait
                        : !strcmp(a, "--write-stall") ? &stall
                                                      : &hs;
            if (fp_cli_seconds(v, DBL_TRUE_MIN, 86400 * 7, t)) /* > 0, a week at most */
                return fp_cli_usage_error("coordinator", a, " needs a number of seconds (> 0)");
        } else if (is_count) {
            /* --dead-peer travels in the welcome as 16 bits of seconds */
            const unsigned long max = !strcmp(a, "--dead-peer") ? 65535 : 1000000;
            char *end;
            *count = strtoul(v, &end, 10);
            if (end == v || *end || *v == '-' || *count < 1 || *count > max)
                return fp_cli_usage_error("coordinator", a,
                                          max == 65535 ? " needs whole seconds from 1 to 65535"
                                                       : " needs a count from 1 to 1000000");
        } else {
            *dst = v;
        }
    }
    if ((!scenario && !resume_arg) || !listen || !keyf || !allowf)
        return fp_cli_usage_error(
            "coordinator", "--scenario (or --resume RUN), --listen, --key and --allow are required",
            "");
    if (resume_arg && or_start)
        return fp_cli_usage_error("coordinator",
                                  "--resume RUN and --resume-or-start: give one of them", "");

    /* SIGHUP re-reads clients.pub once the loop runs; until then it must
     * not kill a coordinator that a reload was sent to too early */
    signal(SIGHUP, SIG_IGN);
    struct fp_error err = {0};
    char host[256];
    int port;
    /* Everything a restart cannot mend is refused here, exit 2, before the
     * store is opened: no run is begun for it (docs/deployment.md) */
    if (fp_peer_hostport(listen, host, sizeof host, &port, &err))
        return fp_cli_usage_error("coordinator", "--listen: ", err.msg);
    if (fp_coord_check_listen(host, port, &err))
        return fp_cli_usage_error("coordinator", err.msg, "");
    uint8_t key[FP_NOISE_KEY];
    struct fp_allow allow = {0};
    struct fp_store *store = NULL;
    struct fp__coord_run cr = {0};
    char *canon = NULL;
    int exit_code, lrc;
    if ((lrc = fp_keyfile_read(keyf, key, &err)) || (lrc = fp_allow_load(&allow, allowf, &err)) ||
        (scenario && (lrc = fp_scenario_load(&cr.sc, scenario, NULL, 0, &err)))) {
        fprintf(stderr, "fedpress coordinator: %s\n", err.msg);
        exit_code = fp_cli_load_exit(lrc);
        goto out;
    }
    exit_code = 1;
    if (scenario && ((exit_code = fp__coord_check(&cr.sc, scenario, &allow, allowf, deadline)) ||
                     !(canon = fp_scenario_canonical(&cr.sc))))
        goto out;
    if (fp_cli_open_store(&store, store_path, FP_CLI_STORE_CREATE))
        goto out;
    /* Held from here to the end of the run (closing the store drops it). */
    if ((exit_code =
             fp__coord_pick(store, store_path, scenario, canon, resume_arg, or_start, &cr)) ||
        cr.done)
        goto out;
    /* --resume without --scenario: the stored one, checked now */
    char origin[64];
    snprintf(origin, sizeof origin, "run %lld's stored scenario", (long long)cr.id);
    if (!scenario && (exit_code = fp__coord_check(&cr.sc, origin, &allow, allowf, deadline)))
        goto out;
    exit_code = 1;
    const struct fp_scenario *sc = &cr.sc;
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-write is an EPIPE, not our death */
    const struct fp_coord_options o = {.host = host,
                                       .port = port,
                                       .ready_file = ready,
                                       .test_die_round = test_die_round,
                                       .test_slow_hash_s = test_slow_hash,
                                       .key = key,
                                       .allow = &allow,
                                       .allow_path = allowf,
                                       .deadline_s = deadline,
                                       .wait_s = wait,
                                       .handshake_s = hs,
                                       .max_pending = (unsigned)max_pending,
                                       .max_pending_per_address = (unsigned)max_per_addr,
                                       .dead_peer_s = (unsigned)dead_peer,
                                       .write_stall_s = stall,
                                       .progress = quiet ? NULL : stdout,
                                       .log = stderr,
                                       .stop = &fp__coord_stop,
                                       .resume = cr.id ? &cr.resume : NULL,
                                       .resume_run = cr.id};
    struct fp_run_result res = {.run_id = -1};
    if (fp_coord_run(sc, store, &o, &res, &err)) {
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
           (long long)res.run_id, sc->name, res.interrupted ? "interrupted" : "completed",
           res.rounds_done, sc->rounds, up, down, res.model_sha256);
    exit_code = res.interrupted ? 130 : 0;
out:
    free(canon);
    sodium_memzero(key, sizeof key);
    fp_allow_free(&allow);
    fp_store_resume_free(&cr.resume);
    if (store)
        fp_store_close(store);
    return exit_code;
}
