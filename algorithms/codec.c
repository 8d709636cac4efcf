/* algorithms/codec.c — dense float32 encoding (see codec.h). */
#include "codec.h"

#include <math.h>
#include <string.h>

#include "../core/error.h"

/* fedpress runs on little-endian machines only; the byte order of every
 * message and model file is little-endian by definition. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "fedpress needs a little-endian CPU");

void fp_codec_dense_encode(const float *v, size_t d, uint8_t *out)
{
    memcpy(out, v, 4 * d);
}

int fp_codec_dense_decode(const uint8_t *in, size_t len, size_t d, float *v)
{
    if (len != fp_codec_dense_size(d))
        return FP_EFORMAT;
    memcpy(v, in, len);
    for (size_t j = 0; j < d; j++)
        if (!isfinite(v[j]))
            return FP_EFORMAT;
    return 0;
}
