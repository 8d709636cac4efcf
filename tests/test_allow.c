/*
 * tests/test_allow.c — coordinator/allow.c: clients.pub, its revoked
 * lines (`ID -`) and what a re-read (SIGHUP) may change.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../coordinator/allow.h"

static const char *K[3] = {
    "1111111111111111111111111111111111111111111111111111111111111111",
    "2222222222222222222222222222222222222222222222222222222222222222",
    "3333333333333333333333333333333333333333333333333333333333333333",
};

static char path[64];

static int load(struct fp_allow *a, const char *text, struct fp_error *e)
{
    snprintf(path, sizeof path, "/tmp/fp_test_allow_%ld.pub", (long)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    int rc = fp_allow_load(a, path, e);
    unlink(path);
    return rc;
}

static int state_of_0(void *u, uint32_t id)
{
    (void)u;
    return id == 0;
}

/* `ID -`: an id with no key, counted in N, not in n_keyed; its zero key
 * matches no handshake; two revoked ids are not a duplicate key. */
static void test_revoked_lines(void **state)
{
    (void)state;
    struct fp_allow a;
    struct fp_error e = {0};
    char text[512];
    snprintf(text, sizeof text, "# ids\n0 %s\n1 -\n2 -  # gone\n", K[0]);
    /* a trailing comment after '-' is not allowed on key lines either:
     * only whitespace may follow */
    assert_int_equal(load(&a, text, &e), FP_EFORMAT);
    snprintf(text, sizeof text, "# ids\n0 %s\n1 -\n2 -\n", K[0]);
    assert_int_equal(load(&a, text, &e), 0);
    assert_int_equal(a.n, 3);
    assert_int_equal(a.n_keyed, 1);
    const uint8_t zero[FP_NOISE_KEY] = {0};
    assert_int_equal(fp_allow_find(&a, zero), -1);
    fp_allow_free(&a);
    snprintf(text, sizeof text, "0 -x\n");
    assert_int_equal(load(&a, text, &e), FP_EFORMAT);
}

/* A re-read may add, revoke and put back keys; it may not change N, nor
 * give an id with state a key other than its last one. */
static void test_update_rules(void **state)
{
    (void)state;
    struct fp_allow cur, fresh;
    struct fp_error e = {0};
    char text[512];
    snprintf(text, sizeof text, "0 %s\n1 %s\n", K[0], K[1]);
    assert_int_equal(load(&cur, text, &e), 0);

    /* N changes */
    snprintf(text, sizeof text, "0 %s\n1 %s\n2 %s\n", K[0], K[1], K[2]);
    assert_int_equal(load(&fresh, text, &e), 0);
    assert_int_equal(fp_allow_update(&cur, &fresh, "x.pub", state_of_0, NULL, &e), FP_EFORMAT);
    assert_non_null(strstr(e.msg, "lists 3 clients, but this run has N = 2"));
    fp_allow_free(&fresh);

    /* client 0 has state: no new key; client 1 has none: it may */
    snprintf(text, sizeof text, "0 %s\n1 %s\n", K[2], K[1]);
    assert_int_equal(load(&fresh, text, &e), 0);
    assert_int_equal(fp_allow_update(&cur, &fresh, "x.pub", state_of_0, NULL, &e), FP_EFORMAT);
    assert_non_null(strstr(e.msg, "gives client 0 a new key"));
    fp_allow_free(&fresh);
    snprintf(text, sizeof text, "0 %s\n1 %s\n", K[0], K[2]);
    assert_int_equal(load(&fresh, text, &e), 0);
    assert_int_equal(fp_allow_update(&cur, &fresh, "x.pub", state_of_0, NULL, &e), 0);
    fp_allow_free(&fresh);

    /* revoke 0: allowed, and its last key is remembered ... */
    snprintf(text, sizeof text, "0 -\n1 %s\n", K[1]);
    assert_int_equal(load(&fresh, text, &e), 0);
    assert_int_equal(fp_allow_update(&cur, &fresh, "x.pub", state_of_0, NULL, &e), 0);
    assert_int_equal(fresh.n_keyed, 1);
    fp_allow_free(&cur);
    cur = fresh;
    /* ... so another key for it is still refused, its own one accepted */
    snprintf(text, sizeof text, "0 %s\n1 %s\n", K[2], K[1]);
    assert_int_equal(load(&fresh, text, &e), 0);
    assert_int_equal(fp_allow_update(&cur, &fresh, "x.pub", state_of_0, NULL, &e), FP_EFORMAT);
    fp_allow_free(&fresh);
    snprintf(text, sizeof text, "0 %s\n1 %s\n", K[0], K[1]);
    assert_int_equal(load(&fresh, text, &e), 0);
    assert_int_equal(fp_allow_update(&cur, &fresh, "x.pub", state_of_0, NULL, &e), 0);
    assert_int_equal(fresh.n_keyed, 2);
    fp_allow_free(&fresh);
    fp_allow_free(&cur);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_revoked_lines),
        cmocka_unit_test(test_update_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
