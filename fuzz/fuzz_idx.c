/*
 * fuzz/fuzz_idx.c — libFuzzer target for the IDX (gzip or plain) loader.
 *
 * Input: 2-byte little-endian length L, then L bytes of the images file, then
 * the labels file. Both go to memfds, read back through /proc/self/fd, so the
 * loader runs its real file path (zlib, header caps, truncation checks). Any
 * input must load or fail cleanly; a loaded dataset must satisfy the
 * invariants the rest of fedpress relies on.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "workloads/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fp__memfd(const uint8_t *p, size_t n, char *path, size_t cap)
{
    int fd = memfd_create("idx", 0);
    if (fd < 0)
        return -1;
    if (n && write(fd, p, n) != (ssize_t)n) {
        close(fd);
        return -1;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 1 << 20)
        return 0;
    size_t L = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2, size -= 2;
    if (L > size)
        L = size;
    char ip[64], lp[64];
    int fi = fp__memfd(data, L, ip, sizeof ip);
    int fl = fp__memfd(data + L, size - L, lp, sizeof lp);
    if (fi >= 0 && fl >= 0) {
        struct fp_dataset ds;
        struct fp_error err;
        if (fp_idx_load(&ds, ip, lp, NULL, &err) == 0) {
            if (ds.n == 0 && ds.x)
                abort();
            for (size_t i = 0; i < ds.n; i++)
                if (ds.y[i] >= ds.nclasses)
                    abort();
            for (size_t i = 0; i < ds.n * ds.dim; i++)
                if (!(ds.x[i] >= 0.0f && ds.x[i] <= 1.0f))
                    abort();
            fp_dataset_free(&ds);
        }
    }
    if (fi >= 0)
        close(fi);
    if (fl >= 0)
        close(fl);
    return 0;
}
