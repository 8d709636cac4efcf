/*
 * cli/store.c — the run store as the commands open it (cli.h): the three
 * modes, and the lock on the one run a process writes.
 */
#include <stdio.h>
#include <unistd.h>

#include "../core/error.h"
#include "../store/store.h"
#include "cli.h"

int fp_cli_open_store(struct fp_store **st, const char *path, int mode)
{
    struct fp_error err = {0};
    if (mode != FP_CLI_STORE_CREATE && access(path, F_OK) != 0) {
        fprintf(stderr, "fedpress: %s: no such run store (fedpress sim creates it; see --store)\n",
                path);
        return -1;
    }
    int rc = mode == FP_CLI_STORE_READ ? fp_store_open_readonly(st, path, &err)
                                       : fp_store_open(st, path, &err);
    if (rc) {
        fprintf(stderr, "fedpress: %s\n", err.msg);
        return -1;
    }
    return 0;
}

int fp_cli_lock_run(struct fp_store *store, int64_t run_id)
{
    struct fp_error err = {0};
    int rc = fp_store_lock_run(store, run_id, &err);
    if (rc)
        fprintf(stderr, "fedpress: %s\n", err.msg);
    return rc;
}
