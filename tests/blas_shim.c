/*
 * tests/blas_shim.c — LD_PRELOAD shim for tests/e2e_blas.sh (and for
 * measuring, docs/performance.md): plays OpenBLAS 0.3.21 on a CPU it does
 * not recognise, which falls back to its SSE3 "Prescott" kernels. When
 * OPENBLAS_CORETYPE is unset, libopenblas alone (the caller's address is
 * inside it) is told "Prescott", so it really loads those kernels; the
 * program itself still sees the variable unset. With OPENBLAS_CORETYPE set
 * (by fedpress's restart) OpenBLAS gets the real value.
 * FP_SHIM_IGNORE=1 plays a library that ignores OPENBLAS_CORETYPE: it gets
 * "Prescott" whatever the environment says.
 * Never sets OPENBLAS_CORETYPE itself.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

char *getenv(const char *name);

static int fp_shim_from_openblas(const void *caller)
{
    Dl_info info;
    return dladdr(caller, &info) && info.dli_fname && strstr(info.dli_fname, "openblas");
}

char *getenv(const char *name)
{
    static char *(*real)(const char *);
    static char prescott[] = "Prescott";
    if (!real)
        real = (char *(*)(const char *))dlsym(RTLD_NEXT, "getenv");
    char *v = real ? real(name) : NULL;
    if (strcmp(name, "OPENBLAS_CORETYPE") || !fp_shim_from_openblas(__builtin_return_address(0)))
        return v;
    char *ignore = real ? real("FP_SHIM_IGNORE") : NULL;
    if (!v || (ignore && ignore[0] == '1'))
        return prescott;
    return v;
}
