/* tests/test_core.c — the small core modules: error table, byte formatting, the message
 * header (SHA-256: tests/test_hash.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/format.h"
#include "core/msg.h"

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

/* The header's bytes, written out by hand from the layout in msg.h. */
static void test_msg_header(void **state)
{
    (void)state;
    struct fp_msg_header h = {.type = FP_MSG_UPLOAD,
                              .phase = 0x0102,
                              .client = 0x03040506,
                              .run = UINT64_C(0x0708090a0b0c0d0e),
                              .round = 0x0f101112,
                              .len = UINT64_C(0x131415161718191a)};
    static const uint8_t want[FP_MSG_HEADER] = {1,    4,    0x02, 0x01, 0x06, 0x05, 0x04, 0x03,
                                                0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0x09, 0x08, 0x07,
                                                0x12, 0x11, 0x10, 0x0f, 0,    0,    0,    0,
                                                0x1a, 0x19, 0x18, 0x17, 0x16, 0x15, 0x14, 0x13};
    uint8_t b[FP_MSG_HEADER];
    fp_msg_encode_header(&h, b);
    assert_memory_equal(b, want, sizeof b);

    struct fp_msg_header g;
    struct fp_error e;
    assert_int_equal(fp_msg_decode_header(b, &g, &e), 0);
    assert_int_equal(fp_msg_check(&g, &h, 0, &e), 0);

    /* Each field that differs is named. */
    struct fp_msg_header w = h;
    w.round++;
    assert_int_equal(fp_msg_check(&g, &w, 0, &e), FP_EFORMAT);
    assert_non_null(strstr(e.msg, "round"));
    w = h;
    w.client = 7;
    assert_int_equal(fp_msg_check(&g, &w, 0, &e), FP_EFORMAT);
    assert_non_null(strstr(e.msg, "expected client 7"));
    w = h;
    w.phase = 1;
    assert_int_equal(fp_msg_check(&g, &w, 0, &e), FP_EFORMAT);
    w = h;
    w.run = 1;
    assert_int_equal(fp_msg_check(&g, &w, 0, &e), FP_EFORMAT);
    w = h;
    w.type = FP_MSG_BROADCAST;
    assert_int_equal(fp_msg_check(&g, &w, 0, &e), FP_EFORMAT);
    /* Exact length, then a cap. */
    w = h;
    w.len--;
    assert_int_equal(fp_msg_check(&g, &w, 0, &e), FP_EFORMAT);
    assert_int_equal(fp_msg_check(&g, &w, h.len, &e), 0);
    assert_int_equal(fp_msg_check(&g, &w, h.len - 1, &e), FP_EFORMAT);

    /* Version, type and reserved bytes are checked on decode. */
    uint8_t bad[FP_MSG_HEADER];
    memcpy(bad, b, sizeof bad);
    bad[0] = 2;
    assert_int_equal(fp_msg_decode_header(bad, &g, &e), FP_EFORMAT);
    memcpy(bad, b, sizeof bad);
    bad[1] = 0;
    assert_int_equal(fp_msg_decode_header(bad, &g, &e), FP_EFORMAT);
    bad[1] = FP_MSG__LAST + 1;
    assert_int_equal(fp_msg_decode_header(bad, &g, &e), FP_EFORMAT);
    memcpy(bad, b, sizeof bad);
    bad[22] = 1;
    assert_int_equal(fp_msg_decode_header(bad, &g, &e), FP_EFORMAT);
    assert_string_equal(fp_msg_type_name(FP_MSG_UPLOAD), "upload");
    assert_string_equal(fp_msg_type_name(0), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_error_set),
        cmocka_unit_test(test_format_bytes),
        cmocka_unit_test(test_msg_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
