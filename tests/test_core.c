/* tests/test_core.c — the small core modules: error table, SHA-256 hex, byte formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/format.h"
#include "core/hash.h"

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(fp_strerror(FP_OK), "success");
    assert_string_equal(fp_strerror(FP_ENOMEM), "out of memory");
    assert_string_equal(fp_strerror(FP_EFORMAT), "malformed input");
    assert_string_equal(fp_strerror(FP_ENOTFOUND), "not found");
    assert_string_equal(fp_strerror(-8), "unknown error");
    assert_string_equal(fp_strerror(1), "unknown error");
}

static void test_error_set(void **state)
{
    (void)state;
    struct fp_error e;
    assert_int_equal(fp_error_set(&e, FP_EIO, "%s:%d: %s", "f.ini", 3, "bad"), FP_EIO);
    assert_int_equal(e.code, FP_EIO);
    assert_string_equal(e.msg, "f.ini:3: bad");
    assert_int_equal(fp_error_set(NULL, FP_EINVAL, "x"), FP_EINVAL); /* NULL err is allowed */
    char big[2000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    fp_error_set(&e, FP_EINVAL, "%s", big); /* truncated, never overflowing */
    assert_int_equal(strlen(e.msg), sizeof e.msg - 1);
}

/* FIPS 180-2 test vectors. */
static void test_sha256(void **state)
{
    (void)state;
    char hex[65];
    fp_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    fp_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_format_bytes(void **state)
{
    (void)state;
    char b[32];
    fp_format_bytes(0, b, sizeof b);
    assert_string_equal(b, "0 B");
    fp_format_bytes(999, b, sizeof b);
    assert_string_equal(b, "999 B");
    fp_format_bytes(40000, b, sizeof b);
    assert_string_equal(b, "40.0 kB");
    fp_format_bytes(2544160000ULL / 1000, b, sizeof b);
    assert_string_equal(b, "2.5 MB");
    fp_format_bytes(5088320000ULL, b, sizeof b);
    assert_string_equal(b, "5.09 GB");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_error_set),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_format_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
