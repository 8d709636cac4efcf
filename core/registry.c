/*
 * core/registry.c — the class rules (see registry.h).
 */
#include "registry.h"

#include <stdio.h>

/* FedPAQ and SCALLION rely on E[C(v)] = v; FedEF, SCAFCOM and the EF21 family on
 * ||C(v) - v||^2 <= (1 - q)||v||^2. The full-precision baselines send
 * identity only, and name the compressed variant of either class. */
static const struct {
    unsigned uplink;                               /* classes the uplink takes */
    int full_precision;                            /* uplink identity only */
    enum fp_algo_kind if_unbiased, if_contractive; /* advice for a misfit */
} fp__algos[] = {
    [FP_ALGO_FEDAVG] = {FP_CLASS_UNBIASED | FP_CLASS_CONTRACTIVE, 1, FP_ALGO_FEDPAQ, FP_ALGO_FEDEF},
    [FP_ALGO_FEDPAQ] = {FP_CLASS_UNBIASED, 0, FP_ALGO_FEDPAQ, FP_ALGO_FEDEF},
    [FP_ALGO_FEDEF] = {FP_CLASS_CONTRACTIVE, 0, FP_ALGO_FEDPAQ, FP_ALGO_FEDEF},
    [FP_ALGO_SCAFFOLD] = {FP_CLASS_UNBIASED | FP_CLASS_CONTRACTIVE, 1, FP_ALGO_SCALLION,
                          FP_ALGO_SCAFCOM},
    [FP_ALGO_SCALLION] = {FP_CLASS_UNBIASED, 0, FP_ALGO_SCALLION, FP_ALGO_SCAFCOM},
    [FP_ALGO_SCAFCOM] = {FP_CLASS_CONTRACTIVE, 0, FP_ALGO_SCALLION, FP_ALGO_SCAFCOM},
    /* the error-feedback family's analyses assume a contractive C */
    [FP_ALGO_EF21] = {FP_CLASS_CONTRACTIVE, 0, FP_ALGO_FEDPAQ, FP_ALGO_EF21},
    [FP_ALGO_EF21W] = {FP_CLASS_CONTRACTIVE, 0, FP_ALGO_FEDPAQ, FP_ALGO_EF21W},
    [FP_ALGO_ECONTROL] = {FP_CLASS_CONTRACTIVE, 0, FP_ALGO_FEDPAQ, FP_ALGO_ECONTROL},
    [FP_ALGO_EF14] = {FP_CLASS_CONTRACTIVE, 0, FP_ALGO_FEDPAQ, FP_ALGO_EF14},
    /* [BRDRG22]: MASHA1 for unbiased compressors, MASHA2 (error feedback)
     * for contractive ones, in both directions; naive compressed EG takes
     * either (it is the baseline that stalls) */
    [FP_ALGO_EG] = {FP_CLASS_UNBIASED | FP_CLASS_CONTRACTIVE, 1, FP_ALGO_MASHA1, FP_ALGO_MASHA2},
    [FP_ALGO_EG_NAIVE] = {FP_CLASS_UNBIASED | FP_CLASS_CONTRACTIVE, 0, FP_ALGO_MASHA1,
                          FP_ALGO_MASHA2},
    [FP_ALGO_MASHA1] = {FP_CLASS_UNBIASED, 0, FP_ALGO_MASHA1, FP_ALGO_MASHA2},
    [FP_ALGO_MASHA2] = {FP_CLASS_CONTRACTIVE, 0, FP_ALGO_MASHA1, FP_ALGO_MASHA2},
};

static const unsigned fp__comps[] = {
    [FP_COMP_IDENTITY] = FP_CLASS_UNBIASED | FP_CLASS_CONTRACTIVE,
    [FP_COMP_TOPK] = FP_CLASS_CONTRACTIVE,
    [FP_COMP_RANDK] = FP_CLASS_UNBIASED,
    [FP_COMP_QSGD] = FP_CLASS_UNBIASED,
    [FP_COMP_SIGN] = FP_CLASS_CONTRACTIVE,
    [FP_COMP_TOPK_QSGD] = FP_CLASS_CONTRACTIVE,
};

unsigned fp_comp_classes(enum fp_comp_kind k)
{
    return (size_t)k < sizeof fp__comps / sizeof fp__comps[0] ? fp__comps[k] : 0;
}

struct fp_comp_spec fp_algo_downlink(enum fp_algo_kind a)
{
    (void)a;
    return (struct fp_comp_spec){.kind = FP_COMP_IDENTITY};
}

int fp_algo_comp_misfit(enum fp_algo_kind a, enum fp_direction dir, const struct fp_comp_spec *c,
                        char *why, size_t n)
{
    const enum fp_comp_kind ck = c->kind;
    const unsigned cls = fp_comp_classes(ck);
    char cname[64];
    fp_comp_name(c, cname, sizeof cname);
    if ((size_t)a >= sizeof fp__algos / sizeof fp__algos[0] || !fp__algos[a].uplink) {
        snprintf(why, n, "unknown algorithm %d", (int)a);
        return 1;
    }
    if (dir == FP_DOWNLINK) {
        /* the compressed-broadcast methods (and EF21-BC [FSR+21], whose
         * error feedback on w assumes a contractive C_M, as EF21's uplink)
         * take the uplink's class rules for their downlink too; every
         * other broadcasts identity */
        if (ck == fp_algo_downlink(a).kind)
            return 0;
        if (a == FP_ALGO_EF21 && !(cls & FP_CLASS_CONTRACTIVE)) {
            /* the uplink's advice (another algorithm) does not fit here */
            snprintf(why, n,
                     "ef21's compressed broadcast (EF21-BC) needs a contractive [compressor] "
                     "downlink (identity, topk, sign, topk+qsgd:S); %s is unbiased but not "
                     "contractive: set downlink = topk or sign",
                     cname);
            return 1;
        }
        if ((fp_algo_is_vi(a) && !fp__algos[a].full_precision) || a == FP_ALGO_EF21)
            return fp_algo_comp_misfit(a, FP_UPLINK, c, why, n);
        snprintf(why, n, "%s broadcasts with compressor identity only, not %s", fp_algo_name(a),
                 cname);
        return 1;
    }
    const enum fp_algo_kind instead =
        (cls & FP_CLASS_UNBIASED) ? fp__algos[a].if_unbiased : fp__algos[a].if_contractive;
    if (ck != FP_COMP_IDENTITY && fp__algos[a].full_precision) {
        snprintf(why, n,
                 "%s is the full-precision baseline and sends uncompressed vectors; for "
                 "compressor %s use %s",
                 fp_algo_name(a), cname, fp_algo_name(instead));
        return 1;
    }
    if (!(cls & fp__algos[a].uplink & FP_CLASS_UNBIASED) &&
        fp__algos[a].uplink == FP_CLASS_UNBIASED) {
        snprintf(why, n,
                 "%s needs an unbiased compressor (identity, randk, qsgd:S); %s is biased "
                 "(contractive): use %s",
                 fp_algo_name(a), cname, fp_algo_name(instead));
        return 1;
    }
    if (!(cls & fp__algos[a].uplink & FP_CLASS_CONTRACTIVE) &&
        fp__algos[a].uplink == FP_CLASS_CONTRACTIVE) {
        snprintf(why, n,
                 "%s needs a contractive compressor (identity, topk, sign, topk+qsgd:S); %s is "
                 "unbiased but not contractive: use %s",
                 fp_algo_name(a), cname, fp_algo_name(instead));
        return 1;
    }
    return 0;
}
