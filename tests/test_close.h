/*
 * tests/test_close.h — a check test_ef.c and test_vi.c share: a float32
 * result against a double reference (the scripts in tests/reference/), to a tolerance
 * relative to the reference's largest magnitude, so that the components
 * near zero are held to the same absolute error as the others. Include
 * after <cmocka.h>.
 */
#ifndef FP_TEST_CLOSE_H
#define FP_TEST_CLOSE_H

#include <math.h>
#include <stddef.h>

/* |got[j] - want[j]| <= rel * max_k |want[k]| for every j < n, or the test
 * fails naming the first j that is not. */
static inline void assert_close(const float *got, const double *want, size_t n, double rel)
{
    double scale = 0;
    for (size_t j = 0; j < n; j++)
        scale = fmax(scale, fabs(want[j]));
    for (size_t j = 0; j < n; j++)
        if (!(fabs(got[j] - want[j]) <= rel * scale))
            fail_msg("[%zu]: %.9g, expected %.9g (tolerance %g x %g)", j, got[j], want[j], rel,
                     scale);
}

#endif
