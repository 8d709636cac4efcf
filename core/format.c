/* core/format.c — see format.h. */
#include "format.h"

#include <stdio.h>

void fp_format_bytes(uint64_t b, char *buf, size_t n)
{
    if (b >= 1000000000ULL)
        snprintf(buf, n, "%.2f GB", b / 1e9);
    else if (b >= 1000000ULL)
        snprintf(buf, n, "%.1f MB", b / 1e6);
    else if (b >= 1000ULL)
        snprintf(buf, n, "%.1f kB", b / 1e3);
    else
        snprintf(buf, n, "%llu B", (unsigned long long)b);
}
