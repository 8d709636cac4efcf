/*
 * tests/blas_shim.c — LD_PRELOAD shim for tests/e2e_blas.sh: makes
 * openblas_get_corename() say "Prescott" when OPENBLAS_CORETYPE is unset,
 * which is what OpenBLAS 0.3.21 says on a CPU it does not recognise
 * (Sapphire Rapids). With OPENBLAS_CORETYPE set it answers as the real
 * library does, so fedpress's restart is seen to reach the real kernels.
 * FP_SHIM_IGNORE=1 plays a library that ignores OPENBLAS_CORETYPE.
 * Never sets OPENBLAS_CORETYPE itself.
 */
#include <dlfcn.h>
#include <stdlib.h>

char *openblas_get_corename(void);

char *openblas_get_corename(void)
{
    static char prescott[] = "Prescott";
    const char *ignore = getenv("FP_SHIM_IGNORE");
    if (!getenv("OPENBLAS_CORETYPE") || (ignore && ignore[0] == '1'))
        return prescott;
    char *(*real)(void) = (char *(*)(void))dlsym(RTLD_NEXT, "openblas_get_corename");
    return real ? real() : prescott;
}
