/*
 * core/blas.c — the OpenBLAS core (kernel set) fedpress runs; see blas.h.
 *
 * The rule, in tiers of instruction sets (SSE < AVX < AVX2+FMA < AVX-512):
 * when OpenBLAS's own detection lands in a lower tier than the CPU supports,
 * ask for the tier's established core: SkylakeX for AVX-512 (Cooperlake and
 * SapphireRapids add bf16/fp16 kernels fedpress never calls; their float32
 * sgemm is no faster, docs/performance.md, but rounds differently, so one
 * name serves every AVX-512 CPU), Haswell or Zen for AVX2+FMA, Sandybridge
 * for AVX. A detection in the right tier is left alone, even if a sibling
 * core exists, so the kernel (and with it the rounding, docs/architecture.md)
 * changes only where the speed does.
 */
#include "blas.h"

#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static const struct {
    const char *name;
    int tier;
} fp__cores[] = {
    /* every x86 core name OpenBLAS's DYNAMIC_ARCH reports (driver/others/dynamic.c) */
    {"Katmai", 0},       {"Coppermine", 0},     {"Northwood", 0},  {"Prescott", 0},
    {"Banias", 0},       {"Atom", 0},           {"Core2", 0},      {"Penryn", 0},
    {"Dunnington", 0},   {"Nehalem", 0},        {"Athlon", 0},     {"Opteron", 0},
    {"Opteron_SSE3", 0}, {"Barcelona", 0},      {"Nano", 0},       {"Bobcat", 0},
    {"Sandybridge", 1},  {"Bulldozer", 1},      {"Piledriver", 1}, {"Steamroller", 1},
    {"Excavator", 1},    {"Haswell", 2},        {"Zen", 2},        {"SkylakeX", 3},
    {"Cooperlake", 3},   {"SapphireRapids", 3},
};

int fp_blas_core_tier(const char *core)
{
    if (!core)
        return -1;
    for (size_t i = 0; i < sizeof fp__cores / sizeof fp__cores[0]; i++)
        if (!strcasecmp(core, fp__cores[i].name))
            return fp__cores[i].tier;
    return -1;
}

void fp_blas_cpu_detect(struct fp_blas_cpu *cpu)
{
    memset(cpu, 0, sizeof *cpu);
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid(0, &a, &b, &c, &d)) {
        char v[13];
        memcpy(v, &b, 4);
        memcpy(v + 4, &d, 4);
        memcpy(v + 8, &c, 4);
        v[12] = '\0';
        if (!strcmp(v, "GenuineIntel"))
            cpu->vendor = FP_BLAS_VENDOR_INTEL;
        else if (!strcmp(v, "AuthenticAMD") || !strcmp(v, "HygonGenuine"))
            cpu->vendor = FP_BLAS_VENDOR_AMD;
    }
    /* libgcc's checks include the OS's XSAVE state (XCR0), as OpenBLAS's do. */
    __builtin_cpu_init();
    cpu->avx = __builtin_cpu_supports("avx") != 0;
    cpu->avx2 = __builtin_cpu_supports("avx2") != 0;
    cpu->fma = __builtin_cpu_supports("fma") != 0;
    cpu->avx512f = __builtin_cpu_supports("avx512f") != 0;
    cpu->avx512bw = __builtin_cpu_supports("avx512bw") != 0;
    cpu->avx512dq = __builtin_cpu_supports("avx512dq") != 0;
    cpu->avx512vl = __builtin_cpu_supports("avx512vl") != 0;
#endif
}

/* The best tier this CPU runs and that tier's core name. */
static int fp__cpu_tier(const struct fp_blas_cpu *cpu, const char **name)
{
    /* OpenBLAS's SkylakeX kernels use AVX512BW/DQ/VL besides F (it checks VL
     * itself); Knights Landing has F without them. */
    if (cpu->avx512f && cpu->avx512bw && cpu->avx512dq && cpu->avx512vl && cpu->avx2 && cpu->fma) {
        *name = "SkylakeX";
        return 3;
    }
    if (cpu->avx2 && cpu->fma) {
        *name = cpu->vendor == FP_BLAS_VENDOR_AMD ? "Zen" : "Haswell";
        return 2;
    }
    if (cpu->avx) {
        *name = "Sandybridge";
        return 1;
    }
    *name = NULL;
    return 0;
}

const char *fp_blas_choose(const struct fp_blas_cpu *cpu, const char *core, int dynamic_arch,
                           const char *env_coretype, const char *env_auto)
{
    /* A set OPENBLAS_CORETYPE is the user's, or our own restart's: never touched. */
    if (env_coretype)
        return NULL;
    /* "off", or a marker left without OPENBLAS_CORETYPE: choosing again could loop. */
    if (env_auto)
        return NULL;
    if (!dynamic_arch)
        return NULL; /* a library built for one core ignores OPENBLAS_CORETYPE */
    int have = fp_blas_core_tier(core);
    if (have < 0)
        return NULL;
    const char *name;
    int best = fp__cpu_tier(cpu, &name);
    return best > have ? name : NULL;
}

/* ---- the process's own choice ------------------------------------------- */

static const char *fp__failed; /* the core a restart was wanted for, if it failed */

/* Whether FEDPRESS_BLAS_AUTO is the marker fedpress set for this coretype:
 * "CORETYPE:DETECTED". */
static int fp__marker_for(const char *mark, const char *coretype)
{
    size_t n = strlen(coretype);
    return mark && coretype[0] && !strncmp(mark, coretype, n) && mark[n] == ':';
}

static int fp__dynamic_arch(void)
{
    const char *cfg = openblas_get_config();
    return cfg && strstr(cfg, " DYNAMIC_ARCH") != NULL;
}

void fp_blas_init(char **argv)
{
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    const char *mark = getenv(FP_BLAS_AUTO_ENV);
    const char *core = openblas_get_corename();
    if (coretype && fp__marker_for(mark, coretype)) {
        /* The restarted process: did OpenBLAS take the name? (A library
         * built without AVX-512 maps SkylakeX to Haswell, for one.) */
        if (strcasecmp(core, coretype))
            fprintf(stderr,
                    "fedpress: warning: asked OpenBLAS for its %s kernels "
                    "(OPENBLAS_CORETYPE=%s) but it runs %s; carrying on with them "
                    "(set %s=%s to stop asking)\n",
                    coretype, coretype, core, FP_BLAS_AUTO_ENV, FP_BLAS_AUTO_OFF);
        return;
    }
    struct fp_blas_cpu cpu;
    fp_blas_cpu_detect(&cpu);
    const char *choice = fp_blas_choose(&cpu, core, fp__dynamic_arch(), coretype, mark);
    if (!choice)
        return;
    char marker[96];
    snprintf(marker, sizeof marker, "%s:%.60s", choice, core);
    int err = 0;
    if (setenv("OPENBLAS_CORETYPE", choice, 1) || setenv(FP_BLAS_AUTO_ENV, marker, 1)) {
        err = errno;
    } else {
        fflush(NULL);
        /* OpenBLAS reads OPENBLAS_CORETYPE once, when it is loaded. */
        execv("/proc/self/exe", argv);
        err = errno;
    }
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv(FP_BLAS_AUTO_ENV);
    fp__failed = choice;
    fprintf(stderr,
            "fedpress: warning: OpenBLAS runs its %s kernels, but this CPU runs its faster %s "
            "kernels; restarting with OPENBLAS_CORETYPE=%s failed (/proc/self/exe: %s). Set "
            "OPENBLAS_CORETYPE=%s yourself to use them.\n",
            core, choice, choice, strerror(err), choice);
}

const char *fp_blas_describe(void)
{
    static char buf[320];
    const char *cfg = openblas_get_config();
    const char *core = openblas_get_corename();
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    const char *mark = getenv(FP_BLAS_AUTO_ENV);
    /* "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." -> "OpenBLAS 0.3.21" */
    int lib = 0;
    if (cfg) {
        const char *sp = strchr(cfg, ' ');
        lib = sp ? (int)(sp - cfg) + 1 + (int)strcspn(sp + 1, " ") : (int)strlen(cfg);
    }
    char how[200];
    if (coretype && fp__marker_for(mark, coretype)) {
        const char *detected = mark + strlen(coretype) + 1;
        if (!strcasecmp(core, coretype))
            snprintf(how, sizeof how, "chosen by fedpress; OpenBLAS detected %.40s", detected);
        else
            snprintf(how, sizeof how, "fedpress asked for %.40s; OpenBLAS detected %.40s", coretype,
                     detected);
    } else if (coretype) {
        snprintf(how, sizeof how, "OPENBLAS_CORETYPE=%.40s from the environment", coretype);
    } else if (fp__failed) {
        snprintf(how, sizeof how,
                 "OpenBLAS's own detection; restarting with OPENBLAS_CORETYPE=%s failed",
                 fp__failed);
    } else if (mark && !strcmp(mark, FP_BLAS_AUTO_OFF)) {
        snprintf(how, sizeof how, "OpenBLAS's own detection; %s=%s", FP_BLAS_AUTO_ENV,
                 FP_BLAS_AUTO_OFF);
    } else {
        snprintf(how, sizeof how, "OpenBLAS's own detection");
    }
    snprintf(buf, sizeof buf, "%.*s %.40s (%s)", lib > 60 ? 60 : lib, cfg ? cfg : "OpenBLAS",
             core ? core : "?", how);
    return buf;
}
