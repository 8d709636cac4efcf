/*
 * coordinator/allow.c — clients.pub (see allow.h).
 */
#include "allow.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../net/keyfile.h"

/* Ids above this are refused: a typo must not allocate gigabytes. */
#define FP__ALLOW_MAX_ID 10000000u

/* The all-zero key of a revoked id (`ID -`); no handshake proves it. */
static int fp__revoked(const uint8_t key[FP_NOISE_KEY])
{
    static const uint8_t zero[FP_NOISE_KEY];
    return !memcmp(key, zero, FP_NOISE_KEY);
}

struct fp__line {
    uint32_t id;
    uint8_t key[FP_NOISE_KEY];
    unsigned lineno;
};

static int fp__parse_line(char *s, struct fp__line *l, const char *path, unsigned lineno,
                          struct fp_error *err)
{
    char *end;
    errno = 0;
    unsigned long id = strtoul(s, &end, 10);
    if (end == s || !isspace((unsigned char)*end) || errno || id >= FP__ALLOW_MAX_ID || *s == '-')
        return fp_error_set(err, FP_EFORMAT,
                            "%s:%u: expected 'ID PUBKEY' (a client id from 0, then the 64 hex "
                            "digits fedpress keygen printed)",
                            path, lineno);
    while (isspace((unsigned char)*end))
        end++;
    const char *rest = end[0] == '-' ? end + 1 : NULL;
    while (rest && isspace((unsigned char)*rest))
        rest++;
    if (rest && !*rest) {
        memset(l->key, 0, sizeof l->key); /* `ID -`: revoked */
    } else if (fp_key_from_hex(end, l->key))
        return fp_error_set(err, FP_EFORMAT,
                            "%s:%u: client %lu's key is not 64 hex digits (the line fedpress "
                            "keygen printed), nor '-' (no key)",
                            path, lineno, id);
    l->id = (uint32_t)id;
    l->lineno = lineno;
    return 0;
}

int fp_allow_load(struct fp_allow *a, const char *path, struct fp_error *err)
{
    memset(a, 0, sizeof *a);
    FILE *f = fopen(path, "r");
    if (!f)
        return fp_error_set(err, FP_EIO, "%s: cannot read the allow-list: %s", path,
                            strerror(errno));
    int rc = fp_allow_read(a, f, path, err);
    fclose(f);
    return rc;
}

int fp_allow_read(struct fp_allow *a, FILE *f, const char *path, struct fp_error *err)
{
    memset(a, 0, sizeof *a);
    struct fp__line *lines = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    char buf[512];
    unsigned lineno = 0;
    while (fgets(buf, sizeof buf, f)) {
        lineno++;
        char *s = buf;
        while (isspace((unsigned char)*s))
            s++;
        if (!*s || *s == '#')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            struct fp__line *g = realloc(lines, cap * sizeof *lines);
            if (!g) {
                rc = fp_error_set(err, FP_ENOMEM, "out of memory reading %s", path);
                goto fail;
            }
            lines = g;
        }
        if ((rc = fp__parse_line(s, &lines[n], path, lineno, err)))
            goto fail;
        n++;
    }
    if (ferror(f)) {
        rc = fp_error_set(err, FP_EIO, "%s: read error", path);
        goto fail;
    }
    if (n == 0) {
        rc = fp_error_set(err, FP_EFORMAT, "%s: no client in the allow-list", path);
        goto fail;
    }
    a->n = (uint32_t)n;
    a->keys = calloc(n, sizeof *a->keys);
    a->last = calloc(n, sizeof *a->last);
    uint8_t *seen = calloc(n, 1);
    if (!a->keys || !a->last || !seen) {
        free(seen);
        rc = fp_error_set(err, FP_ENOMEM, "out of memory reading %s", path);
        goto fail;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        if (lines[i].id >= n)
            rc = fp_error_set(err, FP_EFORMAT,
                              "%s:%u: client id %u, but the file lists %zu clients: the ids "
                              "must be 0 to %zu",
                              path, lines[i].lineno, lines[i].id, n, n - 1);
        else if (seen[lines[i].id])
            rc = fp_error_set(err, FP_EFORMAT, "%s:%u: client id %u is listed twice", path,
                              lines[i].lineno, lines[i].id);
        else if (!fp__revoked(lines[i].key) && fp_allow_find(a, lines[i].key) >= 0)
            rc = fp_error_set(err, FP_EFORMAT,
                              "%s:%u: this key is listed twice (a key is one client's identity)",
                              path, lines[i].lineno);
        else {
            seen[lines[i].id] = 1;
            memcpy(a->keys[lines[i].id], lines[i].key, FP_NOISE_KEY);
            memcpy(a->last[lines[i].id], lines[i].key, FP_NOISE_KEY);
            a->n_keyed += !fp__revoked(lines[i].key);
        }
    }
    free(seen);
fail:
    free(lines);
    if (rc)
        fp_allow_free(a);
    return rc;
}

void fp_allow_free(struct fp_allow *a)
{
    free(a->keys);
    free(a->last);
    memset(a, 0, sizeof *a);
}

int64_t fp_allow_find(const struct fp_allow *a, const uint8_t key[FP_NOISE_KEY])
{
    if (!a->keys || fp__revoked(key))
        return -1;
    for (uint32_t i = 0; i < a->n; i++)
        if (!memcmp(a->keys[i], key, FP_NOISE_KEY))
            return i;
    return -1;
}

int fp_allow_update(const struct fp_allow *cur, struct fp_allow *fresh, const char *path,
                    int (*has_state)(void *u, uint32_t id), void *u, struct fp_error *err)
{
    if (fresh->n != cur->n)
        return fp_error_set(err, FP_EFORMAT,
                            "%s lists %u clients, but this run has N = %u: ids 0 to %u stay, "
                            "each once (to revoke a client's key, write 'ID -' on its line)",
                            path, fresh->n, cur->n, cur->n - 1);
    for (uint32_t id = 0; id < cur->n; id++) {
        if (fp__revoked(fresh->keys[id]) || fp__revoked(cur->last[id]) ||
            !memcmp(fresh->keys[id], cur->last[id], FP_NOISE_KEY) || !has_state(u, id))
            continue;
        return fp_error_set(err, FP_EFORMAT,
                            "%s gives client %u a new key, but client %u holds algorithm state "
                            "(its upload was included) on the machine of its old key, and a new "
                            "key would take over its shard without it: keep its key, or revoke "
                            "it ('%u -')",
                            path, id, id, id);
    }
    for (uint32_t id = 0; id < cur->n; id++)
        if (fp__revoked(fresh->keys[id]))
            memcpy(fresh->last[id], cur->last[id], FP_NOISE_KEY);
    return 0;
}
