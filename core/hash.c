/* core/hash.c — see hash.h.
 *
 * The SHA-NI path: FIPS 180-4's compression function on the x86 SHA
 * extensions, written from their definitions (Intel SDM, SHA256RNDS2,
 * SHA256MSG1, SHA256MSG2), compiled for those instructions alone
 * (target attribute) so the rest of the build keeps its flags and only
 * CPUs that report them run it. The padding and buffering around it are
 * plain C, checked against libsodium by tests/test_hash.c. */
#include "hash.h"

#include <string.h>

#include "hash_impl.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define FP__HAVE_NI 1

/* FIPS 180-4 section 4.2.2: the first 32 bits of the fractional parts of
 * the cube roots of the first 64 primes. */
static const uint32_t fp__k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define FP__NI_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* Compresses n 64-byte blocks into h.
 *
 * SHA256RNDS2 does two rounds: its first operand holds (C, D, G, H), its
 * second (A, B, E, F), in lanes 3..0; XMM0's lanes 0 and 1 the two rounds'
 * W[t] + K[t]; it returns the new (A, B, E, F). The new (C, D, G, H) is
 * the old (A, B, E, F) (two rounds shift a->b->c and e->f->g), so the
 * two registers trade roles every two rounds.
 *
 * The schedule, W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16], four
 * words at a time: SHA256MSG1(W[t-16..t-13], W[t-12..t-9]) gives
 * W[t-16+j] + s0(W[t-15+j]); adding W[t-7..t-4] (a 4-byte alignr of the
 * two newest quads) and SHA256MSG2 with W[t-4..t-1] adds s1(W[t-2+j]),
 * the last two from the words it has just made. */
FP__NI_TARGET static void fp__ni_blocks(uint32_t h[8], const uint8_t *p, size_t n)
{
    /* Big-endian words: bytes 3..0 of each lane reversed. */
    const __m128i bswap = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
    __m128i abef = _mm_set_epi32((int)h[0], (int)h[1], (int)h[4], (int)h[5]);
    __m128i cdgh = _mm_set_epi32((int)h[2], (int)h[3], (int)h[6], (int)h[7]);
    for (; n; n--, p += 64) {
        const __m128i abef0 = abef, cdgh0 = cdgh;
        __m128i w[4]; /* w[g % 4]: W[4g .. 4g+3], lane j = W[4g+j] */
#pragma GCC unroll 16
        for (int g = 0; g < 16; g++) {
            if (g < 4) {
                w[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), bswap);
            } else {
                const __m128i w7 = _mm_alignr_epi8(w[(g + 3) % 4], w[(g + 2) % 4], 4);
                w[g % 4] = _mm_sha256msg2_epu32(
                    _mm_add_epi32(_mm_sha256msg1_epu32(w[g % 4], w[(g + 1) % 4]), w7),
                    w[(g + 3) % 4]);
            }
            __m128i wk = _mm_add_epi32(w[g % 4], _mm_loadu_si128((const __m128i *)&fp__k[4 * g]));
            cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk); /* rounds 4g, 4g+1 */
            wk = _mm_shuffle_epi32(wk, 0x0e);             /* lanes 2, 3 down */
            abef = _mm_sha256rnds2_epu32(abef, cdgh, wk); /* rounds 4g+2, 4g+3 */
        }
        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
    }
    uint32_t o[8];
    _mm_storeu_si128((__m128i *)o, abef);       /* F, E, B, A */
    _mm_storeu_si128((__m128i *)(o + 4), cdgh); /* H, G, D, C */
    h[0] = o[3], h[1] = o[2], h[2] = o[7], h[3] = o[6];
    h[4] = o[1], h[5] = o[0], h[6] = o[5], h[7] = o[4];
}

/* CPUID leaf 7 EBX bit 29 (SHA); leaf 1 ECX bits 9 (SSSE3) and 19
 * (SSE4.1) for the shuffles around it. Asked once: CPUID traps to the
 * hypervisor in a VM. */
static int fp__ni_supported(void)
{
    static int known = -1;
    int v = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (v < 0) {
        unsigned a, b, c, d;
        v = __get_cpuid(1, &a, &b, &c, &d) && (c >> 9 & 1) && (c >> 19 & 1) &&
            __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b >> 29 & 1);
        __atomic_store_n(&known, v, __ATOMIC_RELAXED);
    }
    return v;
}

static void fp__ni_init(struct fp_sha256 *s)
{
    /* FIPS 180-4 section 5.3.3. */
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->u.ni.h, h0, sizeof h0);
    s->u.ni.bytes = 0;
}

static void fp__ni_update(struct fp_sha256 *s, const uint8_t *p, size_t len)
{
    if (!len) /* p may be NULL then */
        return;
    size_t used = (size_t)(s->u.ni.bytes % 64);
    s->u.ni.bytes += len;
    if (used) {
        size_t take = len < 64 - used ? len : 64 - used;
        memcpy(s->u.ni.buf + used, p, take);
        p += take, len -= take;
        if (used + take < 64)
            return;
        fp__ni_blocks(s->u.ni.h, s->u.ni.buf, 1);
    }
    if (len >= 64)
        fp__ni_blocks(s->u.ni.h, p, len / 64);
    memcpy(s->u.ni.buf, p + len / 64 * 64, len % 64);
}

/* FIPS 180-4 section 5.1.1: 0x80, zeros to 56 mod 64, the length in bits
 * as 64 bits big-endian. */
static void fp__ni_final(struct fp_sha256 *s, uint8_t out[FP_SHA256_BYTES])
{
    uint8_t pad[72] = {0x80};
    const uint64_t bits = s->u.ni.bytes * 8;
    const size_t used = (size_t)(s->u.ni.bytes % 64);
    const size_t zeros = used < 56 ? 56 - used : 120 - used; /* 0x80 included */
    for (int i = 0; i < 8; i++)
        pad[zeros + i] = (uint8_t)(bits >> (56 - 8 * i));
    fp__ni_update(s, pad, zeros + 8);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (uint8_t)(s->u.ni.h[i] >> (24 - 8 * j));
}
#else
#define FP__HAVE_NI 0
#endif

int fp_sha256_impl_supported(enum fp_sha256_impl impl)
{
#if FP__HAVE_NI
    if (impl == FP_SHA256_NI)
        return fp__ni_supported();
#endif
    return impl == FP_SHA256_SODIUM;
}

void fp_sha256_init_impl(struct fp_sha256 *s, enum fp_sha256_impl impl)
{
    s->ni = FP__HAVE_NI && impl == FP_SHA256_NI;
#if FP__HAVE_NI
    if (s->ni) {
        fp__ni_init(s);
        return;
    }
#endif
    crypto_hash_sha256_init(&s->u.sodium);
}

void fp_sha256_init(struct fp_sha256 *s)
{
    fp_sha256_init_impl(s,
                        fp_sha256_impl_supported(FP_SHA256_NI) ? FP_SHA256_NI : FP_SHA256_SODIUM);
}

void fp_sha256_update(struct fp_sha256 *s, const void *data, size_t len)
{
#if FP__HAVE_NI
    if (s->ni) {
        fp__ni_update(s, data, len);
        return;
    }
#endif
    crypto_hash_sha256_update(&s->u.sodium, data, (unsigned long long)len);
}

void fp_sha256_final(struct fp_sha256 *s, uint8_t out[FP_SHA256_BYTES])
{
#if FP__HAVE_NI
    if (s->ni) {
        fp__ni_final(s, out);
        return;
    }
#endif
    crypto_hash_sha256_final(&s->u.sodium, out);
}

void fp_sha256(const void *data, size_t len, uint8_t out[FP_SHA256_BYTES])
{
    struct fp_sha256 s;
    fp_sha256_init(&s);
    fp_sha256_update(&s, data, len);
    fp_sha256_final(&s, out);
}

void fp_sha256_hex(const void *data, size_t len, char out[65])
{
    uint8_t h[FP_SHA256_BYTES];
    fp_sha256(data, len, h);
    sodium_bin2hex(out, 65, h, sizeof h);
}
