/* core/inputs.c — see inputs.h. */
#include "inputs.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hash.h"

#define FP__HEX   64
#define FP__PIECE ((size_t)1 << 17)

int fp_inputs_add(struct fp_inputs *in, const char *path, const char hex[65], struct fp_error *err)
{
    if (strpbrk(path, "\n\\"))
        return fp_error_set(err, FP_EINVAL,
                            "%s: a path with a newline or a backslash cannot be recorded as a "
                            "run's input; rename it",
                            path);
    size_t need = in->len + FP__HEX + 2 + strlen(path) + 2;
    if (need > in->cap) {
        size_t cap = in->cap ? in->cap : 512;
        while (cap < need)
            cap *= 2;
        char *t = realloc(in->text, cap);
        if (!t)
            return fp_error_set(err, FP_ENOMEM, "%s: out of memory recording it as an input", path);
        in->text = t;
        in->cap = cap;
    }
    in->len += (size_t)snprintf(in->text + in->len, in->cap - in->len, "%.64s  %s\n", hex, path);
    return 0;
}

void fp_inputs_free(struct fp_inputs *in)
{
    free(in->text);
    memset(in, 0, sizeof *in);
}

int fp_sha256_file(const char *path, char hex[65], struct fp_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fp_error_set(err, FP_EIO, "%s: %s", path,
                            errno == ENOENT ? "not found" : strerror(errno));
    unsigned char *buf = malloc(FP__PIECE);
    if (!buf) {
        close(fd);
        return fp_error_set(err, FP_ENOMEM, "%s: out of memory for hashing it", path);
    }
    struct fp_sha256 st;
    fp_sha256_init(&st);
    int rc = 0;
    for (;;) {
        ssize_t got = read(fd, buf, FP__PIECE);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = fp_error_set(err, FP_EIO, "%s: read error: %s", path, strerror(errno));
            break;
        }
        if (got == 0)
            break;
        fp_sha256_update(&st, buf, (size_t)got);
    }
    free(buf);
    close(fd);
    if (rc)
        return rc;
    uint8_t h[FP_SHA256_BYTES];
    fp_sha256_final(&st, h);
    sodium_bin2hex(hex, 65, h, sizeof h);
    return 0;
}

/* One line of an inputs text: *p moves past it. 1: a line, 0: the end,
 * -1: malformed. path points into the text, path_len bytes long. */
static int fp__line(const char **p, char hex[65], const char **path, size_t *path_len)
{
    const char *s = *p;
    if (!*s)
        return 0;
    const char *nl = strchr(s, '\n');
    if (!nl || nl - s < FP__HEX + 3 || s[FP__HEX] != ' ' || s[FP__HEX + 1] != ' ')
        return -1;
    for (int i = 0; i < FP__HEX; i++)
        if (!s[i] || !strchr("0123456789abcdef", s[i]))
            return -1;
    memcpy(hex, s, FP__HEX);
    hex[FP__HEX] = '\0';
    *path = s + FP__HEX + 2;
    *path_len = (size_t)(nl - *path);
    *p = nl + 1;
    return 1;
}

/* The hash `text` lists for path (hex), or 0 if it lists no such file. */
static int fp__find(const char *text, const char *path, size_t path_len, char hex[65])
{
    const char *q, *p = text;
    size_t ql;
    int r;
    while ((r = fp__line(&p, hex, &q, &ql)) == 1)
        if (ql == path_len && !memcmp(q, path, ql))
            return 1;
    return 0;
}

static int fp__malformed(const char *whose, struct fp_error *err)
{
    return fp_error_set(err, FP_EFORMAT,
                        "%s: the stored list of its input files is damaged; its inputs cannot "
                        "be checked",
                        whose);
}

int fp_inputs_present(const char *stored, const char *whose, struct fp_error *err)
{
    char hex[65], path[4096];
    const char *q, *p = stored;
    size_t ql;
    int r;
    while ((r = fp__line(&p, hex, &q, &ql)) == 1) {
        if (ql >= sizeof path)
            return fp__malformed(whose, err);
        memcpy(path, q, ql);
        path[ql] = '\0';
        if (access(path, F_OK) != 0)
            return fp_error_set(err, FP_ENOTFOUND,
                                "%s read %s (sha256 %s), which is gone now (%s); resuming "
                                "without it cannot give the model the run would have ended "
                                "with: restore the file, or start a new run",
                                whose, path, hex, strerror(errno));
    }
    return r < 0 ? fp__malformed(whose, err) : 0;
}

int fp_inputs_compare(const char *stored, const char *now, const char *whose, struct fp_error *err)
{
    char hex[65], hex_now[65];
    const char *q, *p = stored;
    size_t ql;
    int r;
    if (!now)
        now = "";
    while ((r = fp__line(&p, hex, &q, &ql)) == 1) {
        if (!fp__find(now, q, ql, hex_now))
            return fp_error_set(err, FP_EFORMAT,
                                "%s read %.*s (sha256 %s) when it started, but does not read "
                                "it now; resuming would not give the model the run would have "
                                "ended with: restore the file, or start a new run",
                                whose, (int)ql, q, hex);
        if (strcmp(hex, hex_now))
            return fp_error_set(err, FP_EFORMAT,
                                "%s: input %.*s changed since the run started (sha256 was %s, "
                                "is now %s); resuming would not give the model the run would "
                                "have ended with: restore the file, or start a new run",
                                whose, (int)ql, q, hex, hex_now);
    }
    if (r < 0)
        return fp__malformed(whose, err);
    p = now;
    while ((r = fp__line(&p, hex_now, &q, &ql)) == 1)
        if (!fp__find(stored, q, ql, hex))
            return fp_error_set(err, FP_EFORMAT,
                                "%s reads %.*s (sha256 %s) now, but did not when it started; "
                                "resuming would not give the model the run would have ended "
                                "with: restore its files, or start a new run",
                                whose, (int)ql, q, hex_now);
    return 0;
}
