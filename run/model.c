/*
 * run/model.c — the model's files: the warm start read ([model] init) and
 * the final model written (--model-out), checked before the first round.
 */
#include "model.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/hash.h"

int fp_run_load_init(const struct fp_scenario *sc, float *x, size_t d, struct fp_inputs *inputs,
                     struct fp_error *err)
{
    const char *path = sc->init_path;
    FILE *f = fopen(path, "rb");
    if (!f)
        return fp_error_set(err, FP_EIO, "[model] init = %s: cannot open: %s", path,
                            strerror(errno));
    size_t got = fread(x, sizeof(float), d, f);
    int extra = fgetc(f);
    fclose(f);
    if (got != d || extra != EOF)
        return fp_error_set(err, FP_EFORMAT,
                            "[model] init = %s: expected exactly %zu float32 values (%zu bytes) "
                            "for model %s",
                            path, d, d * sizeof(float), fp_model_name(sc->model));
    for (size_t j = 0; j < d; j++)
        if (!isfinite(x[j]))
            return fp_error_set(err, FP_EFORMAT, "[model] init = %s: value %zu is not finite", path,
                                j);
    /* The file is exactly these bytes (checked above): their hash is the
     * file's, without reading it twice. */
    char hex[65];
    fp_sha256_hex(x, d * sizeof(float), hex);
    return fp_inputs_add(inputs, path, hex, err);
}

/* The temporary file next to path (so that rename() is atomic): a fresh
 * name (mkstemp, O_EXCL), so it never replaces a file that exists, with the
 * permissions a plain fopen() would have given. Returns its descriptor. */
static int fp__model_tmp(const char *path, char *tmp, size_t n, struct fp_error *err)
{
    if ((size_t)snprintf(tmp, n, "%s.XXXXXX", path) >= n)
        return fp_error_set(err, FP_EINVAL, "--model-out %s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return fp_error_set(err, FP_EIO, "--model-out %s: cannot create a file there: %s", path,
                            strerror(errno));
    mode_t mask = umask(0);
    umask(mask);
    (void)fchmod(fd, 0666 & ~mask); /* mkstemp's 0600 is only safer, never wrong */
    return fd;
}

/* Everything about the model's path that can be known before the run: not
 * a directory, a special file or a symlink (rename would replace a device
 * node, or a link such as /dev/stdout), and a directory that exists and
 * takes a new file (made and removed here). */
int fp_run_check_model_out(const char *path, struct fp_error *err)
{
    struct stat st;
    char tmp[PATH_MAX];
    if (!*path)
        return fp_error_set(err, FP_EINVAL, "--model-out: the path is empty");
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return fp_error_set(err, FP_EINVAL, "--model-out %s is a directory; give a file name",
                            path);
    /* lstat: rename replaces the directory entry itself, so a symlink
     * would be replaced, not written through */
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return fp_error_set(err, FP_EINVAL,
                            "--model-out %s is %s, not a regular file (the model would replace "
                            "it); give the path of a file",
                            path, S_ISLNK(st.st_mode) ? "a symbolic link" : "a special file");
    const char *slash = strrchr(path, '/');
    if (slash) {
        snprintf(tmp, sizeof tmp, "%.*s", slash == path ? 1 : (int)(slash - path), path);
        int found = stat(tmp, &st) == 0;
        if (!found || !S_ISDIR(st.st_mode))
            return fp_error_set(err, FP_EIO, "--model-out %s: its directory %s: %s", path, tmp,
                                found ? "not a directory" : strerror(errno));
    }
    int fd = fp__model_tmp(path, tmp, sizeof tmp, err);
    if (fd < 0)
        return fd;
    close(fd);
    unlink(tmp);
    return 0;
}

int fp_run_write_model(const char *path, const float *x, size_t d, struct fp_error *err)
{
    /* Write to a temporary name and rename, so a crash never leaves half a model. */
    char tmp[PATH_MAX];
    int fd = fp__model_tmp(path, tmp, sizeof tmp, err);
    if (fd < 0)
        return fd;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        return fp_error_set(err, FP_EIO, "--model-out %s: %s", path, strerror(errno));
    }
    int ok = fwrite(x, sizeof(float), d, f) == d;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return fp_error_set(err, FP_EIO, "--model-out %s: cannot write the model: %s", path,
                            strerror(e));
    }
    return 0;
}
