/*
 * net/keyfile.c — key files (see keyfile.h for the format).
 */
#include "keyfile.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FP_KEYFILE_MAX 4096 /* a key file is ~200 bytes; refuse to read a big file */

void fp_key_to_hex(const uint8_t key[FP_NOISE_KEY], char hex[FP_KEY_HEX + 1])
{
    sodium_bin2hex(hex, FP_KEY_HEX + 1, key, FP_NOISE_KEY);
}

int fp_key_from_hex(const char *hex, uint8_t key[FP_NOISE_KEY])
{
    while (isspace((unsigned char)*hex))
        hex++;
    size_t n = 0;
    while (isxdigit((unsigned char)hex[n]))
        n++;
    const char *end = hex + n;
    while (isspace((unsigned char)*end))
        end++;
    size_t got = 0;
    if (n != FP_KEY_HEX || *end || sodium_hex2bin(key, FP_NOISE_KEY, hex, n, NULL, &got, NULL) ||
        got != FP_NOISE_KEY)
        return FP_EFORMAT;
    return 0;
}

static int fp__write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int fp_keyfile_generate(const char *path, uint8_t pub[FP_NOISE_KEY], struct fp_error *err)
{
    uint8_t priv[FP_NOISE_KEY];
    char text[256], sec[FP_KEY_HEX + 1], pubhex[FP_KEY_HEX + 1];
    int rc = FP_EIO;
    if (fp_noise_init())
        return fp_error_set(err, FP_EINVAL, "libsodium could not start");
    /* O_EXCL: a key is never overwritten, and 0600 from the first byte. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return fp_error_set(err, FP_EIO, "%s: %s%s", path, strerror(errno),
                            errno == EEXIST ? " (a key file is never overwritten: remove it "
                                              "first, or choose another name)"
                                            : "");
    randombytes_buf(priv, sizeof priv);
    fp_noise_public_key(priv, pub);
    fp_key_to_hex(priv, sec);
    fp_key_to_hex(pub, pubhex);
    int n = snprintf(text, sizeof text,
                     "# fedpress X25519 secret key (Noise_XK_25519_ChaChaPoly_SHA256). "
                     "Keep it secret.\n# public %s\n%s\n",
                     pubhex, sec);
    if (fchmod(fd, 0600) || fp__write_all(fd, text, (size_t)n) || fsync(fd)) {
        fp_error_set(err, FP_EIO, "%s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        goto out;
    }
    if (close(fd)) {
        fp_error_set(err, FP_EIO, "%s: %s", path, strerror(errno));
        unlink(path);
        goto out;
    }
    rc = 0;
out:
    sodium_memzero(priv, sizeof priv);
    sodium_memzero(sec, sizeof sec);
    sodium_memzero(text, sizeof text);
    return rc;
}

int fp_keyfile_read(const char *path, uint8_t priv[FP_NOISE_KEY], struct fp_error *err)
{
    char text[FP_KEYFILE_MAX + 1];
    struct stat st;
    int rc = FP_EIO, keys = 0;
    /* O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer;
     * the S_ISREG check below refuses it. Reads of a regular file ignore it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return fp_error_set(err, FP_EIO, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st)) {
        fp_error_set(err, FP_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > FP_KEYFILE_MAX) {
        fp_error_set(err, FP_EFORMAT, "%s: not a fedpress key file (not a small regular file)",
                     path);
        rc = FP_EFORMAT;
        goto out;
    }
    if (st.st_mode & 077) {
        fp_error_set(err, FP_EIO,
                     "%s: a secret key readable by others (mode %04o); run 'chmod 600 %s'", path,
                     (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    ssize_t n = read(fd, text, FP_KEYFILE_MAX);
    if (n < 0) {
        fp_error_set(err, FP_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    text[n] = '\0';
    rc = FP_EFORMAT;
    /* The parser below stops at the first NUL: a NUL byte would hide what
     * follows it (a second key, garbage) instead of refusing the file. */
    if (memchr(text, '\0', (size_t)n)) {
        fp_error_set(err, FP_EFORMAT,
                     "%s: not a fedpress key file (it holds a NUL byte; make one with "
                     "'fedpress keygen --out FILE')",
                     path);
        goto out;
    }
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        const char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        if (keys++ || fp_key_from_hex(p, priv)) {
            fp_error_set(err, FP_EFORMAT,
                         "%s: not a fedpress key file (expected one line of 64 hex digits "
                         "besides '#' comments; make one with 'fedpress keygen --out FILE')",
                         path);
            keys = 2;
            break;
        }
    }
    if (keys == 1)
        rc = 0;
    else if (keys == 0)
        fp_error_set(err, FP_EFORMAT,
                     "%s: no key in the file (make one with 'fedpress keygen "
                     "--out FILE')",
                     path);
out:
    close(fd);
    sodium_memzero(text, sizeof text);
    if (rc)
        sodium_memzero(priv, FP_NOISE_KEY);
    return rc;
}
