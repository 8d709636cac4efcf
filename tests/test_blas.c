/* tests/test_blas.c — core/blas: which OpenBLAS core fedpress asks for, and
 * how it describes the one in use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <cblas.h>

#include "core/blas.h"

#define INTEL FP_BLAS_VENDOR_INTEL
#define AMD   FP_BLAS_VENDOR_AMD
#define OTHER FP_BLAS_VENDOR_OTHER

/* CPUs as cpuid reports them. */
static const struct fp_blas_cpu sapphire = {INTEL, 1, 1, 1, 1, 1, 1, 1};
static const struct fp_blas_cpu zen5 = {AMD, 1, 1, 1, 1, 1, 1, 1};
static const struct fp_blas_cpu skylake_client = {INTEL, 1, 1, 1, 0, 0, 0, 0};
static const struct fp_blas_cpu zen2 = {AMD, 1, 1, 1, 0, 0, 0, 0};
static const struct fp_blas_cpu zhaoxin_avx2 = {OTHER, 1, 1, 1, 0, 0, 0, 0};
static const struct fp_blas_cpu knights_landing = {INTEL, 1, 1, 1, 1, 0, 0, 0};
static const struct fp_blas_cpu ivy_bridge = {INTEL, 1, 0, 0, 0, 0, 0, 0};
static const struct fp_blas_cpu westmere = {INTEL, 0, 0, 0, 0, 0, 0, 0};

static const struct {
    const char *what;
    const struct fp_blas_cpu *cpu;
    const char *core; /* openblas_get_corename() */
    int dynamic_arch;
    const char *env_coretype, *env_auto;
    const char *want; /* NULL: leave OpenBLAS's choice */
} cases[] = {
    /* the issue: 0.3.21 on Sapphire Rapids falls back to Prescott */
    {"AVX-512 CPU, OpenBLAS fell back to Prescott", &sapphire, "Prescott", 1, NULL, NULL,
     "SkylakeX"},
    {"lower-case core name", &sapphire, "prescott", 1, NULL, NULL, "SkylakeX"},
    {"AVX-512 CPU, OpenBLAS chose Haswell (Zen 5 on 0.3.21)", &zen5, "Haswell", 1, NULL, NULL,
     "SkylakeX"},
    {"AVX-512 CPU, Sandybridge", &sapphire, "Sandybridge", 1, NULL, NULL, "SkylakeX"},
    /* a detection in the right tier is left alone */
    {"AVX-512 CPU, SkylakeX detected", &sapphire, "SkylakeX", 1, NULL, NULL, NULL},
    {"AVX-512 CPU, Cooperlake detected", &sapphire, "Cooperlake", 1, NULL, NULL, NULL},
    {"AVX-512 CPU, SapphireRapids detected", &sapphire, "SapphireRapids", 1, NULL, NULL, NULL},
    {"AVX-512 CPU, a core this table does not know", &sapphire, "GraniteRapids", 1, NULL, NULL,
     NULL},
    {"AVX-512 CPU, no core name", &sapphire, NULL, 1, NULL, NULL, NULL},
    /* the user's value, the off switch, the restart marker */
    {"OPENBLAS_CORETYPE=Prescott from the user", &sapphire, "Prescott", 1, "Prescott", NULL, NULL},
    {"OPENBLAS_CORETYPE=Haswell from the user", &sapphire, "Haswell", 1, "Haswell", NULL, NULL},
    {"OPENBLAS_CORETYPE set but empty", &sapphire, "Prescott", 1, "", NULL, NULL},
    {"FEDPRESS_BLAS_AUTO=off", &sapphire, "Prescott", 1, NULL, "off", NULL},
    {"marker without OPENBLAS_CORETYPE (never choose twice)", &sapphire, "Prescott", 1, NULL,
     "SkylakeX:Prescott", NULL},
    {"the restarted process", &sapphire, "SkylakeX", 1, "SkylakeX", "SkylakeX:Prescott", NULL},
    {"library built for one core (no DYNAMIC_ARCH)", &sapphire, "Prescott", 0, NULL, NULL, NULL},
    /* AVX2 tier: Haswell on Intel and others, Zen on AMD */
    {"AVX2 Intel, Prescott", &skylake_client, "Prescott", 1, NULL, NULL, "Haswell"},
    {"AVX2 AMD, Barcelona", &zen2, "Barcelona", 1, NULL, NULL, "Zen"},
    {"AVX2 other vendor, Nehalem", &zhaoxin_avx2, "Nehalem", 1, NULL, NULL, "Haswell"},
    {"AVX2 Intel, Haswell detected", &skylake_client, "Haswell", 1, NULL, NULL, NULL},
    {"AVX2 AMD, Haswell detected (same tier)", &zen2, "Haswell", 1, NULL, NULL, NULL},
    {"AVX2 AMD, Zen detected", &zen2, "Zen", 1, NULL, NULL, NULL},
    {"AVX-512F without BW/DQ/VL, Prescott", &knights_landing, "Prescott", 1, NULL, NULL, "Haswell"},
    /* no AVX2 */
    {"AVX only, Nehalem", &ivy_bridge, "Nehalem", 1, NULL, NULL, "Sandybridge"},
    {"AVX only, Sandybridge detected", &ivy_bridge, "Sandybridge", 1, NULL, NULL, NULL},
    {"SSE only, Prescott", &westmere, "Prescott", 1, NULL, NULL, NULL},
    {"SSE only, Nehalem", &westmere, "Nehalem", 1, NULL, NULL, NULL},
};

static void test_choose_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = fp_blas_choose(cases[i].cpu, cases[i].core, cases[i].dynamic_arch,
                                         cases[i].env_coretype, cases[i].env_auto);
        if (!cases[i].want ? got != NULL : !got || strcmp(got, cases[i].want)) {
            fail_msg("%s: want %s, got %s", cases[i].what, cases[i].want ? cases[i].want : "none",
                     got ? got : "none");
        }
    }
}

/* A chosen core is one of the names OpenBLAS accepts, and of the tier the
 * CPU supports. */
static void test_core_tiers(void **state)
{
    (void)state;
    assert_int_equal(fp_blas_core_tier("Prescott"), 0);
    assert_int_equal(fp_blas_core_tier("NEHALEM"), 0);
    assert_int_equal(fp_blas_core_tier("Sandybridge"), 1);
    assert_int_equal(fp_blas_core_tier("Haswell"), 2);
    assert_int_equal(fp_blas_core_tier("zen"), 2);
    assert_int_equal(fp_blas_core_tier("SkylakeX"), 3);
    assert_int_equal(fp_blas_core_tier("Cooperlake"), 3);
    assert_int_equal(fp_blas_core_tier("SapphireRapids"), 3);
    assert_int_equal(fp_blas_core_tier("Unknown"), -1);
    assert_int_equal(fp_blas_core_tier("neoversen1"), -1);
    assert_int_equal(fp_blas_core_tier(""), -1);
    assert_int_equal(fp_blas_core_tier(NULL), -1);
}

/* The description names the library, the core OpenBLAS reports and where
 * the choice came from. The environment is the test runner's: an
 * OPENBLAS_CORETYPE it sets is reported as such, never changed. */
static void test_describe(void **state)
{
    (void)state;
    const char *core = openblas_get_corename();
    const char *cfg = openblas_get_config();
    char want[256];
    /* "OpenBLAS 0.3.21 ..." -> the first two words */
    int n = (int)strcspn(cfg, " ");
    n += 1 + (int)strcspn(cfg + n + 1, " ");
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    unsetenv(FP_BLAS_AUTO_ENV);
    if (coretype)
        snprintf(want, sizeof want, "%.*s %s (OPENBLAS_CORETYPE=%s from the environment)", n, cfg,
                 core, coretype);
    else
        snprintf(want, sizeof want, "%.*s %s (OpenBLAS's own detection)", n, cfg, core);
    assert_string_equal(fp_blas_describe(), want);
    assert_int_equal(strncmp(want, "OpenBLAS ", 9), 0);

    setenv(FP_BLAS_AUTO_ENV, "off", 1);
    if (!coretype) {
        snprintf(want, sizeof want, "%.*s %s (OpenBLAS's own detection; FEDPRESS_BLAS_AUTO=off)", n,
                 cfg, core);
        assert_string_equal(fp_blas_describe(), want);
    }
    unsetenv(FP_BLAS_AUTO_ENV);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_choose_table),
        cmocka_unit_test(test_core_tiers),
        cmocka_unit_test(test_describe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
