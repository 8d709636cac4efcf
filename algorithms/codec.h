/*
 * algorithms/codec.h — byte encodings of update vectors.
 *
 * Dense float32, little-endian, d values: the encoding of the identity
 * compressor and of every full-precision message. Its size is exactly what
 * the store reports as bytes. Decoding checks the length and rejects
 * non-finite values (a NaN update must never reach the global model).
 */
#ifndef FP_CODEC_H
#define FP_CODEC_H

#include <stddef.h>
#include <stdint.h>

static inline size_t fp_codec_dense_size(size_t d)
{
    return 4 * d;
}
void fp_codec_dense_encode(const float *v, size_t d, uint8_t *out);
/* 0, or FP_EFORMAT if len != 4d or a value is not finite. */
int fp_codec_dense_decode(const uint8_t *in, size_t len, size_t d, float *v);

#endif
