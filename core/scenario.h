/*
 * core/scenario.h — a run's whole configuration, parsed from an INI file.
 *
 * fp_scenario_load() reads the file with inih, applies `--set section.key=value`
 * overrides, validates every value and fills a plain struct. Nothing is
 * silently ignored: an unknown section or key, a malformed value or a key that
 * does not apply to the chosen dataset/model is an error whose message names
 * the file, the line, the key and what is allowed.
 *
 * fp_scenario_canonical() renders the effective configuration (file, then
 * overrides, then defaults) back as INI text: that text is what the run store
 * keeps, and loading it again gives the same struct.
 */
#ifndef FP_SCENARIO_H
#define FP_SCENARIO_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum fp_dataset_kind {
    FP_DATA_FMNIST = 1,
    FP_DATA_SYNTHETIC,
    FP_DATA_QUADRATIC,
    FP_DATA_LSQ,       /* distributed least squares with unequal L_i (workloads/lsq.c) */
    FP_DATA_BILINEAR,  /* distributed bilinear saddle point, an operator F_m (workloads/bilinear.c)
                        */
    FP_DATA_ROBUST_LSQ /* least squares against a penalised adversarial shift (bilinear.c) */
};

/* The saddle-point datasets: grad() is an operator F_m, for the VI methods. */
static inline int fp_dataset_is_vi(enum fp_dataset_kind d)
{
    return d == FP_DATA_BILINEAR || d == FP_DATA_ROBUST_LSQ;
}
enum fp_partition_kind {
    FP_PART_IID = 1,
    FP_PART_SHARDS,    /* each client holds `shards` classes */
    FP_PART_DIRICHLET, /* per-class proportions ~ Dir(alpha) */
    FP_PART_SORTED,    /* stable sort by label, N contiguous blocks; no RNG */
    FP_PART_NATURAL    /* the dataset defines each client's data (synthetic, quadratic) */
};
enum fp_model_kind { FP_MODEL_LOGREG = 1, FP_MODEL_MLP, FP_MODEL_QUADRATIC };
enum fp_algo_kind {
    FP_ALGO_FEDAVG = 1,
    FP_ALGO_SCAFFOLD,
    FP_ALGO_FEDPAQ,   /* FedAvg with unbiased compressed deltas */
    FP_ALGO_FEDEF,    /* FedAvg with error feedback (EF14) on the compressed delta */
    FP_ALGO_SCALLION, /* SCAFFOLD, halved uplink, unbiased compression */
    FP_ALGO_SCAFCOM,  /* SCAFFOLD, halved uplink, contractive compression + momentum */
    FP_ALGO_EF21,     /* EF21: compressed gradient differences, one gradient per round */
    FP_ALGO_EF21W,    /* EF21-W: EF21 weighted by the clients' smoothness constants */
    FP_ALGO_ECONTROL, /* EControl: EF21 with error control of strength eta */
    FP_ALGO_EF14,     /* classic error feedback on the gradient step (baseline) */
    /* Variational inequalities (algorithms/vi.c): an operator, not a gradient */
    FP_ALGO_EG,       /* distributed extragradient, uncompressed (baseline) */
    FP_ALGO_EG_NAIVE, /* extragradient compressing what EG sends (baseline: stalls) */
    FP_ALGO_MASHA1,   /* [BRDRG22] MASHA1: unbiased compressors */
    FP_ALGO_MASHA2    /* [BRDRG22] MASHA2: contractive compressors with error feedback */
};

/* The error-feedback family above: one gradient per round (local_steps =
 * 1), a step `[algorithm] step` instead of lr_local / lr_global. */
static inline int fp_algo_is_ef(enum fp_algo_kind a)
{
    return a >= FP_ALGO_EF21 && a <= FP_ALGO_EF14;
}

/* The variational-inequality methods above: the workload's grad() is the
 * operator F_m, a step `[algorithm] step`, every client in every round. */
static inline int fp_algo_is_vi(enum fp_algo_kind a)
{
    return a >= FP_ALGO_EG && a <= FP_ALGO_MASHA2;
}

/* The key that sets an algorithm's step, for the advice of a diverged run:
 * the EF family and the VI methods have no lr_local / lr_global. */
static inline const char *fp_algo_step_key(enum fp_algo_kind a, int step_theory)
{
    if ((fp_algo_is_ef(a) || fp_algo_is_vi(a)) && step_theory)
        return "[algorithm] step_scale";
    return fp_algo_is_ef(a) || fp_algo_is_vi(a) ? "[algorithm] step"
                                                : "[algorithm] lr_local or lr_global";
}

enum fp_comp_kind {
    FP_COMP_IDENTITY = 1,
    FP_COMP_TOPK,
    FP_COMP_RANDK,
    FP_COMP_QSGD,
    FP_COMP_SIGN,
    FP_COMP_TOPK_QSGD
};

/* A compressor as the scenario names it: `[compressor] name = topk`,
 * `ratio = 0.01`; `name = qsgd:16` carries its levels s. */
struct fp_comp_spec {
    enum fp_comp_kind kind;
    double ratio;    /* topk, randk, topk+qsgd: k = max(1, floor(ratio d)) */
    uint64_t count;  /* or k itself ([compressor] k); 0 = use ratio */
    uint32_t levels; /* qsgd, topk+qsgd */
};

#define FP_SCENARIO_STR 256

struct fp_scenario {
    /* [run] */
    char name[FP_SCENARIO_STR];
    uint64_t seed;
    uint32_t rounds;
    uint32_t eval_every;       /* evaluate on the test set every this many rounds (and the last) */
    uint32_t checkpoint_every; /* store the whole state every this many rounds (0: never),
                                  so that `fedpress sim --resume` can continue the run */

    /* [data] */
    enum fp_dataset_kind dataset;
    char data_path[FP_SCENARIO_STR]; /* directory with the four IDX .gz files */
    uint32_t clients;                /* N */
    enum fp_partition_kind partition;
    uint32_t shards;        /* classes per client for FP_PART_SHARDS */
    double dirichlet_alpha; /* for FP_PART_DIRICHLET */
    double synth_alpha;     /* synthetic(alpha, beta) of LEAF/FedProx */
    double synth_beta;
    uint32_t dim;      /* feature dimension (synthetic) or d (quadratic) */
    double quad_noise; /* stddev of gradient noise for quadratic, 0 = exact */
    uint32_t lsq_rows; /* lsq: rows (examples) per client, m */
    double lsq_ratio;  /* lsq: L_max / L_min, the clients' smoothness spread (>= 1) */
    double bil_hetero; /* bilinear: the devices' spread around the common problem (>= 0) */
    double bil_lambda; /* bilinear: the regulariser lambda (> 0: strongly monotone) */

    /* [model] */
    enum fp_model_kind model;
    uint32_t hidden;                 /* MLP hidden width */
    char init_path[FP_SCENARIO_STR]; /* warm start: raw float32 file of d values; "" = random */

    /* [algorithm] */
    enum fp_algo_kind algorithm;
    uint32_t local_steps; /* K */
    uint32_t batch;       /* B */
    double lr_local;      /* eta_l */
    double lr_global;     /* eta_g */
    double alpha;         /* SCALLION's control-variate step; NaN = auto, 1/(1 + omega) */
    double beta;          /* SCAFCOM's momentum */
    double step;          /* EF family, VI methods: gamma; NaN = theory (docs/algorithms.md) */
    double step_scale;    /* step = theory: gamma = step_scale x theory (VI: default 1/2) */
    double eta;           /* EControl's feedback strength; NaN = auto, alpha/400 */
    double tau; /* MASHA: 1 - tau = refresh probability; NaN = auto (docs/algorithms.md) */

    /* [compressor] the uplink compressor */
    struct fp_comp_spec uplink;
    /* [compressor] downlink: the broadcast's compressor (VI methods only;
     * identity otherwise), sharing the uplink's ratio or k */
    struct fp_comp_spec downlink;

    /* [participation] */
    uint32_t sample; /* S clients per round, uniform without replacement */
    /* When a coordinator closes a round (docs/daemons.md): every sampled
     * client answered, or `deadline` seconds passed since the broadcast, or
     * min_updates uploads are in and wait_after_min more seconds passed.
     * The simulator applies them to its dropout and straggler model (below).
     * deadline 0: not set (then they are
     * left out of the canonical text). */
    double deadline;
    uint32_t min_updates; /* default: sample (every sampled client) */
    double wait_after_min;
    /* The simulator's partial rounds (docs/scenarios.md, run/participation.h):
     * a sampled client fails to answer with probability `dropout`; with a
     * straggler model each answers after answer_time * exp(sigma * Z_client
     * + jitter * Z_round), judged against the rules above. */
    double dropout;
    enum fp_straggler_kind { FP_STRAGGLER_NONE = 0, FP_STRAGGLER_LOGNORMAL } straggler;
    double straggler_sigma, straggler_jitter;
    double answer_time; /* seconds, the median; default 1 */
};

/* Fills sc with every default. */
void fp_scenario_defaults(struct fp_scenario *sc);

/* Loads path, then applies overrides[0..n) ("section.key=value"). On error
 * returns a negative code and err->msg names the file, line and key. */
int fp_scenario_load(struct fp_scenario *sc, const char *path, const char *const *overrides,
                     size_t n_overrides, struct fp_error *err);

/* Same, from text in memory; `origin` names it in error messages. */
int fp_scenario_load_string(struct fp_scenario *sc, const char *text, const char *origin,
                            const char *const *overrides, size_t n_overrides, struct fp_error *err);

/* The effective configuration as INI text. Caller frees. NULL on ENOMEM. */
char *fp_scenario_canonical(const struct fp_scenario *sc);

const char *fp_algo_name(enum fp_algo_kind a);
/* "topk", "qsgd:16", "topk+qsgd:4" ...; buf receives the name, returned. */
const char *fp_comp_name(const struct fp_comp_spec *c, char *buf, size_t n);
const char *fp_dataset_name(enum fp_dataset_kind d);
const char *fp_model_name(enum fp_model_kind m);

#endif
