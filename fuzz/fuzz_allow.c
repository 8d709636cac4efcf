/*
 * fuzz/fuzz_allow.c — libFuzzer target for clients.pub (coordinator/allow.c)
 * and its re-read on SIGHUP.
 *
 * The input is two allow-lists separated by the first NUL byte: the one in
 * use and the one a SIGHUP reads. Any bytes load or give an error; never a
 * crash or a leak. A list that loads has N ids, each keyed one found at its
 * id and the all-zero key nowhere; a re-read that fp_allow_update accepts
 * keeps N and gives no id that has state (here: the odd ids) a key other
 * than its last one.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/allow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fp__load(struct fp_allow *a, const uint8_t *p, size_t n)
{
    struct fp_error err;
    if (!n)
        return -1;
    FILE *f = fmemopen((void *)p, n, "r");
    if (!f)
        return -1;
    int rc = fp_allow_read(a, f, "fuzz.pub", &err);
    fclose(f);
    if (rc)
        return rc;
    static const uint8_t zero[FP_NOISE_KEY];
    uint32_t keyed = 0;
    if (fp_allow_find(a, zero) != -1)
        abort();
    for (uint32_t id = 0; id < a->n; id++) {
        if (!memcmp(a->keys[id], zero, FP_NOISE_KEY))
            continue;
        keyed++;
        if (fp_allow_find(a, a->keys[id]) != id)
            abort();
    }
    if (keyed != a->n_keyed)
        abort();
    return 0;
}

static int fp__odd_has_state(void *u, uint32_t id)
{
    (void)u;
    return id & 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    const uint8_t *nul = memchr(data, 0, size);
    size_t n1 = nul ? (size_t)(nul - data) : size;
    struct fp_allow cur, fresh;
    struct fp_error err;
    if (fp__load(&cur, data, n1))
        return 0;
    if (nul && fp__load(&fresh, nul + 1, size - n1 - 1) == 0) {
        if (fp_allow_update(&cur, &fresh, "fuzz.pub", fp__odd_has_state, NULL, &err) == 0) {
            static const uint8_t zero[FP_NOISE_KEY];
            if (fresh.n != cur.n)
                abort();
            for (uint32_t id = 1; id < cur.n; id += 2)
                if (memcmp(fresh.keys[id], zero, FP_NOISE_KEY) &&
                    memcmp(cur.last[id], zero, FP_NOISE_KEY) &&
                    memcmp(fresh.keys[id], cur.last[id], FP_NOISE_KEY))
                    abort();
        }
        fp_allow_free(&fresh);
    }
    fp_allow_free(&cur);
    return 0;
}
