/*
 * fuzz/replay.c — runs a fuzz target over files, without libFuzzer.
 *
 * Linked with each target and registered as a meson test over the target's
 * seed corpus (fuzz/corpus/<target>/), so every target builds and its corpus
 * and past crashers stay green on every machine, with gcc too.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return 1;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 4096;
            uint8_t *t = realloc(buf, cap);
            if (!t) {
                free(buf);
                fclose(f);
                return 1;
            }
            buf = t;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        if (got == 0)
            break;
        len += got;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int n = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            DIR *d = opendir(argv[i]);
            struct dirent *e;
            while (d && (e = readdir(d))) {
                if (e->d_name[0] == '.')
                    continue;
                char p[4096];
                snprintf(p, sizeof p, "%s/%s", argv[i], e->d_name);
                bad += run_file(p);
                n++;
            }
            if (d)
                closedir(d);
        } else {
            bad += run_file(argv[i]);
            n++;
        }
    }
    printf("replay: %d input(s), %d unreadable\n", n, bad);
    return bad != 0 || n == 0;
}
