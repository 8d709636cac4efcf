/* core/format.h — human-readable numbers for progress lines and summaries. */
#ifndef FP_FORMAT_H
#define FP_FORMAT_H

#include <stddef.h>
#include <stdint.h>

/* "812 B", "12.3 kB", "2544.2 MB", "5.09 GB" (SI units, as the docs use). */
void fp_format_bytes(uint64_t bytes, char *buf, size_t n);

#endif
