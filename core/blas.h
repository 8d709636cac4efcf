/*
 * core/blas.h — which OpenBLAS kernels fedpress runs, chosen before the
 * library's kernels are fixed, and a one-line description of them.
 *
 * OpenBLAS built with DYNAMIC_ARCH picks its kernels ("core") once, in a
 * constructor that runs when libopenblas is loaded, from the CPU model it
 * recognises or from OPENBLAS_CORETYPE. An OpenBLAS older than the CPU may
 * not recognise it and fall back to far slower kernels (0.3.21 on Sapphire
 * Rapids: its SSE3 "Prescott" kernels, a quarter of the speed). Because the
 * choice is made before main(), the only way to change it is to set
 * OPENBLAS_CORETYPE and start the program again: fp_blas_init does that.
 *
 * A different core rounds differently, so the core is part of what makes a
 * run bit-identical (docs/architecture.md, "BLAS kernels").
 */
#ifndef FP_BLAS_H
#define FP_BLAS_H

/* The marker fedpress sets next to OPENBLAS_CORETYPE when it chose the core
 * itself ("CHOICE:DETECTED"), and the switch that turns the choice off. */
#define FP_BLAS_AUTO_ENV "FEDPRESS_BLAS_AUTO"
#define FP_BLAS_AUTO_OFF "off"

enum fp_blas_vendor { FP_BLAS_VENDOR_OTHER, FP_BLAS_VENDOR_INTEL, FP_BLAS_VENDOR_AMD };

/* What the CPU and the OS support (an AVX-512 unit the OS does not save
 * state for counts as absent). */
struct fp_blas_cpu {
    enum fp_blas_vendor vendor;
    unsigned avx : 1, avx2 : 1, fma : 1;
    unsigned avx512f : 1, avx512bw : 1, avx512dq : 1, avx512vl : 1;
};

/* This CPU (all zero on anything but x86-64). */
void fp_blas_cpu_detect(struct fp_blas_cpu *cpu);

/* The instruction-set tier an OpenBLAS core name needs: 0 SSE, 1 AVX,
 * 2 AVX2+FMA, 3 AVX-512; -1 for a name this table does not know (a newer
 * library's newer core, which is then trusted). Case-insensitive, as
 * OpenBLAS compares OPENBLAS_CORETYPE. */
int fp_blas_core_tier(const char *core);

/* The core fedpress should ask OpenBLAS for, or NULL to leave OpenBLAS's
 * own choice. Pure: cpu = fp_blas_cpu_detect(), core =
 * openblas_get_corename(), dynamic_arch = whether the library can switch
 * cores at all (" DYNAMIC_ARCH" in openblas_get_config()), env_coretype and
 * env_auto = OPENBLAS_CORETYPE and FEDPRESS_BLAS_AUTO (NULL when unset).
 * Never overrides a set OPENBLAS_CORETYPE, never chooses again when the
 * marker is set (so a restart cannot loop), and only ever moves to a
 * strictly higher tier that the CPU supports. */
const char *fp_blas_choose(const struct fp_blas_cpu *cpu, const char *core, int dynamic_arch,
                           const char *env_coretype, const char *env_auto);

/* First thing in main(): if fp_blas_choose picks a core, sets
 * OPENBLAS_CORETYPE and the marker and re-executes /proc/self/exe with the
 * same argv (does not return). If that fails, or the restarted process got
 * another core than it asked for, prints one warning on stderr and carries
 * on with the kernels it has. */
void fp_blas_init(char **argv);

/* E.g. "OpenBLAS 0.3.21 SkylakeX (chosen by fedpress; OpenBLAS detected
 * Prescott)", "... Haswell (OPENBLAS_CORETYPE=Haswell from the environment)",
 * "... SkylakeX (OpenBLAS's own detection)". A static string, valid until
 * the next call; not thread-safe. */
const char *fp_blas_describe(void);

#endif
