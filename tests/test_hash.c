/* tests/test_hash.c — core/hash.c's SHA-256, each implementation in turn
 * (libsodium's, SHA-NI; the latter skipped on a CPU without it): the FIPS
 * 180-4 example vectors (NIST's published digests), then every length
 * 0..300 and thousands of random lengths and split points against
 * libsodium's one-shot crypto_hash_sha256 called directly, and a message
 * of more than 2^29 bytes (a bit length past 32 bits) against its streaming
 * one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "core/hash.h"
#include "core/hash_impl.h"

static const enum fp_sha256_impl fp__sodium = FP_SHA256_SODIUM, fp__ni = FP_SHA256_NI;

/* The implementation a test runs on (its prestate); skips the SHA-NI one
 * where this CPU or build lacks it. */
static enum fp_sha256_impl fp__impl(void **state)
{
    const enum fp_sha256_impl impl = *(const enum fp_sha256_impl *)*state;
    if (!fp_sha256_impl_supported(impl)) {
        print_message("skipped: this CPU (or a non-x86-64 build) has no SHA extensions\n");
        skip();
    }
    return impl;
}

/* Digest of data fed in pieces: piece i has cuts[i] bytes, the last piece
 * what is left (ncuts 0: one update). */
static void fp__digest(enum fp_sha256_impl impl, const uint8_t *data, size_t len,
                       const size_t *cuts, size_t ncuts, uint8_t out[FP_SHA256_BYTES])
{
    struct fp_sha256 s;
    fp_sha256_init_impl(&s, impl);
    size_t at = 0;
    for (size_t i = 0; i < ncuts && at + cuts[i] <= len; i++) {
        fp_sha256_update(&s, data + at, cuts[i]);
        at += cuts[i];
    }
    fp_sha256_update(&s, data + at, len - at);
    fp_sha256_final(&s, out);
}

static void fp__assert_hex(const uint8_t d[FP_SHA256_BYTES], const char *want)
{
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, d, FP_SHA256_BYTES);
    assert_string_equal(hex, want);
}

/* FIPS 180-4's examples (NIST, "Cryptographic Standards and Guidelines:
 * Examples with Intermediate Values", SHA-256), each in one update and one
 * byte at a time. */
static void test_nist_vectors(void **state)
{
    const enum fp_sha256_impl impl = fp__impl(state);
    static const struct {
        const char *msg, *sha;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", /* 448 bits */
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrl"
         "m"
         "nopqrsmnopqrstnopqrstu", /* 896 bits */
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    uint8_t d[FP_SHA256_BYTES];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        const size_t n = strlen(v[i].msg);
        fp__digest(impl, (const uint8_t *)v[i].msg, n, NULL, 0, d);
        fp__assert_hex(d, v[i].sha);
        struct fp_sha256 s;
        fp_sha256_init_impl(&s, impl);
        for (size_t j = 0; j < n; j++)
            fp_sha256_update(&s, v[i].msg + j, 1);
        fp_sha256_final(&s, d);
        fp__assert_hex(d, v[i].sha);
    }
}

/* One million 'a' (FIPS 180-4's long example), in uneven pieces that
 * straddle block boundaries every way. */
static void test_million_a(void **state)
{
    const enum fp_sha256_impl impl = fp__impl(state);
    static const size_t pieces[] = {1, 63, 64, 65, 55, 56, 57, 127, 128, 129, 3, 4096, 9973, 0, 7};
    uint8_t a[10000];
    memset(a, 'a', sizeof a);
    struct fp_sha256 s;
    fp_sha256_init_impl(&s, impl);
    size_t left = 1000000;
    for (size_t i = 0; left; i++) {
        size_t n = pieces[i % (sizeof pieces / sizeof pieces[0])];
        n = n < left ? n : left;
        fp_sha256_update(&s, a, n);
        left -= n;
    }
    uint8_t d[FP_SHA256_BYTES];
    fp_sha256_final(&s, d);
    fp__assert_hex(d, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

/* splitmix64: reproducible lengths, cuts and bytes. */
static uint64_t fp__next(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

#define FP__MAX_LEN 70000

/* Every length 0..300 (the padding's cases: 55, 56, 63, 64, 119, 120,
 * 128 and around), in one update and cut at each length's middle. */
static void test_lengths_vs_libsodium(void **state)
{
    const enum fp_sha256_impl impl = fp__impl(state);
    uint8_t data[301];
    uint64_t x = 1;
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)fp__next(&x);
    uint8_t want[FP_SHA256_BYTES], got[FP_SHA256_BYTES];
    for (size_t len = 0; len <= 300; len++) {
        crypto_hash_sha256(want, data, len);
        fp__digest(impl, data, len, NULL, 0, got);
        if (memcmp(got, want, sizeof want))
            fail_msg("length %zu: differs from libsodium", len);
        const size_t half = len / 2;
        fp__digest(impl, data, len, &half, 1, got);
        if (memcmp(got, want, sizeof want))
            fail_msg("length %zu, cut at %zu: differs from libsodium", len, half);
    }
}

/* 3,000 random lengths up to 70,000 bytes of random data, each fed in up
 * to 8 random pieces (empty ones included). */
static void test_random_vs_libsodium(void **state)
{
    const enum fp_sha256_impl impl = fp__impl(state);
    uint8_t *data = malloc(FP__MAX_LEN);
    assert_non_null(data);
    uint64_t x = 20261129;
    for (size_t i = 0; i < FP__MAX_LEN; i++)
        data[i] = (uint8_t)fp__next(&x);
    uint8_t want[FP_SHA256_BYTES], got[FP_SHA256_BYTES];
    for (int t = 0; t < 3000; t++) {
        const size_t len = (size_t)(fp__next(&x) % (FP__MAX_LEN + 1));
        const size_t off = (size_t)(fp__next(&x) % (FP__MAX_LEN - len + 1)); /* any alignment */
        size_t cuts[8], ncuts = (size_t)(fp__next(&x) % 9), left = len;
        for (size_t i = 0; i < ncuts; i++) {
            /* Mostly short pieces (the buffering's cases), sometimes long. */
            const uint64_t r = fp__next(&x);
            cuts[i] = (size_t)((r & 1 ? r >> 1 : (r >> 1) % 200) % (left + 1));
            left -= cuts[i];
        }
        crypto_hash_sha256(want, data + off, len);
        fp__digest(impl, data + off, len, cuts, ncuts, got);
        if (memcmp(got, want, sizeof want))
            fail_msg("case %d: length %zu at offset %zu in %zu pieces differs from libsodium", t,
                     len, off, ncuts + 1);
    }
    free(data);
}

/* A message of 2^29 + 77 bytes: its length in bits, 2^32 + 616, needs the
 * high half of FIPS 180-4's 64-bit length field (a 32-bit bit count would
 * wrap). Fed as 13 bytes, then 1 MiB pieces (so every piece meets a
 * partly filled block), then the rest, against libsodium's streaming
 * crypto_hash_sha256 fed the same pieces. */
static void test_long_message(void **state)
{
    const enum fp_sha256_impl impl = fp__impl(state);
    const size_t piece = (size_t)1 << 20, total = ((size_t)1 << 29) + 77;
    uint8_t *data = malloc(piece);
    assert_non_null(data);
    uint64_t x = 7;
    for (size_t i = 0; i < piece; i++)
        data[i] = (uint8_t)fp__next(&x);
    struct fp_sha256 s;
    crypto_hash_sha256_state ref;
    fp_sha256_init_impl(&s, impl);
    crypto_hash_sha256_init(&ref);
    for (size_t at = 0; at < total;) {
        const size_t n = at == 0 ? 13 : total - at < piece ? total - at : piece;
        fp_sha256_update(&s, data, n);
        crypto_hash_sha256_update(&ref, data, n);
        at += n;
    }
    uint8_t want[FP_SHA256_BYTES], got[FP_SHA256_BYTES];
    fp_sha256_final(&s, got);
    crypto_hash_sha256_final(&ref, want);
    assert_memory_equal(got, want, sizeof want);
    free(data);
}

/* The run-time choice: SHA-NI wherever it runs, and the one-shot and hex
 * forms agree with the streaming one. */
static void test_default(void **state)
{
    (void)state;
    struct fp_sha256 s;
    fp_sha256_init(&s);
    assert_int_equal(s.ni, fp_sha256_impl_supported(FP_SHA256_NI));
    fp_sha256_update(&s, "abc", 3);
    uint8_t a[FP_SHA256_BYTES], b[FP_SHA256_BYTES];
    fp_sha256_final(&s, a);
    fp_sha256("abc", 3, b);
    assert_memory_equal(a, b, sizeof a);
    char hex[65];
    fp_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    fp_sha256_hex(NULL, 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

/* Each test on each implementation, named after it. */
// clang-format off
#define FP__ON(f, name, impl) {#f " (" name ")", f, NULL, NULL, (void *)&(impl)}
#define FP__BOTH(f) FP__ON(f, "libsodium", fp__sodium), FP__ON(f, "SHA-NI", fp__ni)
// clang-format on

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        FP__BOTH(test_nist_vectors),
        FP__BOTH(test_million_a),
        FP__BOTH(test_lengths_vs_libsodium),
        FP__BOTH(test_random_vs_libsodium),
        FP__ON(test_long_message, "SHA-NI", fp__ni),
        cmocka_unit_test(test_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
