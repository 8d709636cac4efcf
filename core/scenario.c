/*
 * core/scenario.c — scenario INI parsing and validation.
 *
 * inih does the tokenising; every key goes through one table (fp__keys) that
 * knows its section, how to parse it, what is allowed, and which datasets or
 * models it applies to. We feed inih through our own line reader so that we
 * know the line of every key (Debian's inih is built without
 * INI_HANDLER_LINENO) and can reject unknown sections, which inih never
 * reports to the handler when they hold no keys.
 */
#include "scenario.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry.h"

#define FP__DEFAULT_FMNIST_PATH "/usr/share/datasets/fashion-mnist"
/* Longest string value: "key = value" must fit inih's 200-byte line so that
 * the canonical text always loads again. */
#define FP__STR_MAX 180

enum fp__key {
    K_RUN_NAME,
    K_RUN_SEED,
    K_RUN_ROUNDS,
    K_RUN_EVAL_EVERY,
    K_RUN_CHECKPOINT_EVERY,
    K_DATA_DATASET,
    K_DATA_PATH,
    K_DATA_CLIENTS,
    K_DATA_PARTITION,
    K_DATA_ALPHA,
    K_DATA_BETA,
    K_DATA_DIM,
    K_DATA_NOISE,
    K_DATA_ROWS,
    K_DATA_SMOOTH_RATIO,
    K_DATA_HETERO,
    K_DATA_LAMBDA,
    K_MODEL_KIND,
    K_MODEL_HIDDEN,
    K_MODEL_INIT,
    K_ALGO_NAME,
    K_ALGO_LOCAL_STEPS,
    K_ALGO_BATCH,
    K_ALGO_LR_LOCAL,
    K_ALGO_LR_GLOBAL,
    K_ALGO_ALPHA,
    K_ALGO_BETA,
    K_ALGO_STEP,
    K_ALGO_STEP_SCALE,
    K_ALGO_ETA,
    K_ALGO_TAU,
    K_PART_SAMPLE,
    K_PART_DEADLINE,
    K_PART_MIN_UPDATES,
    K_PART_WAIT_AFTER_MIN,
    K_PART_DROPOUT,
    K_PART_STRAGGLER,
    K_PART_ANSWER_TIME,
    K_COMP_NAME,
    K_COMP_RATIO,
    K_COMP_K,
    K_COMP_DOWNLINK,
    K_COUNT
};

struct fp__keydef {
    const char *section, *name;
    const char *allowed; /* shown in errors */
};

static const struct fp__keydef fp__keys[K_COUNT] = {
    [K_RUN_NAME] = {"run", "name", "1 to 180 printable characters, no ';'"},
    [K_RUN_SEED] = {"run", "seed", "an integer in [0, 2^64)"},
    [K_RUN_ROUNDS] = {"run", "rounds", "an integer in [1, 10000000]"},
    [K_RUN_EVAL_EVERY] = {"run", "eval_every", "an integer in [1, 10000000]"},
    [K_RUN_CHECKPOINT_EVERY] =
        {"run", "checkpoint_every",
         "an integer in [0, 10000000] (0: a checkpoint only when a signal stops the run)"},
    [K_DATA_DATASET] = {"data", "dataset",
                        "one of fashion-mnist, synthetic, quadratic, lsq, bilinear, robust-lsq"},
    [K_DATA_PATH] = {"data", "path",
                     "a directory holding the four Fashion-MNIST IDX .gz files (no ';')"},
    [K_DATA_CLIENTS] = {"data", "clients", "an integer in [1, 1000000]"},
    [K_DATA_PARTITION] = {"data", "partition",
                          "one of iid, shards:K (K classes per client), dirichlet:ALPHA "
                          "(ALPHA > 0), sorted"},
    [K_DATA_ALPHA] = {"data", "alpha", "a number >= 0 (synthetic(alpha, beta))"},
    [K_DATA_BETA] = {"data", "beta", "a number >= 0 (synthetic(alpha, beta))"},
    [K_DATA_DIM] = {"data", "dim", "an integer in [1, 100000000]"},
    [K_DATA_NOISE] = {"data", "noise", "a number >= 0 (gradient noise stddev)"},
    [K_DATA_ROWS] = {"data", "rows", "an integer in [1, 10000000] (rows per client)"},
    [K_DATA_SMOOTH_RATIO] = {"data", "smooth_ratio",
                             "a number in [1, 1e12]: L_max / L_min across the clients"},
    [K_DATA_HETERO] = {"data", "heterogeneity",
                       "a number in [0, 1e6]: the devices' spread around the common problem"},
    [K_DATA_LAMBDA] = {"data", "lambda",
                       "a number in (0, 1e6]: the regulariser (strong monotonicity)"},
    [K_MODEL_KIND] = {"model", "kind", "one of logreg, mlp, quadratic"},
    [K_MODEL_HIDDEN] = {"model", "hidden", "an integer in [1, 100000]"},
    [K_MODEL_INIT] = {"model", "init", "a path to a raw float32 file of exactly d values (no ';')"},
    [K_ALGO_NAME] = {"algorithm", "name",
                     "one of fedavg, scaffold, fedpaq, fedef, scallion, scafcom, ef21, ef21-w, "
                     "econtrol, ef14, eg, eg-naive, masha1, masha2"},
    [K_ALGO_LOCAL_STEPS] = {"algorithm", "local_steps", "an integer in [1, 1000000]"},
    [K_ALGO_BATCH] = {"algorithm", "batch", "an integer in [1, 10000000]"},
    [K_ALGO_LR_LOCAL] = {"algorithm", "lr_local", "a number > 0"},
    [K_ALGO_LR_GLOBAL] = {"algorithm", "lr_global", "a number > 0"},
    [K_ALGO_ALPHA] = {"algorithm", "alpha", "'auto' (1/(1 + omega)) or a number in (0, 1]"},
    [K_ALGO_BETA] = {"algorithm", "beta", "a number in (0, 1]"},
    [K_ALGO_STEP] = {"algorithm", "step", "'theory' or a number > 0 (the step gamma)"},
    [K_ALGO_STEP_SCALE] = {"algorithm", "step_scale",
                           "a number > 0: gamma = step_scale x the theory step"},
    [K_ALGO_ETA] = {"algorithm", "eta", "'auto' (alpha/400) or a number >= 0"},
    [K_ALGO_TAU] = {"algorithm", "tau",
                    "'auto' (1 - the uplink's bytes / the dense bytes) or a number in [0, 1)"},
    [K_PART_SAMPLE] = {"participation", "sample", "'all' or an integer in [1, clients]"},
    [K_PART_DEADLINE] = {"participation", "deadline", "a number of seconds > 0, at most 86400"},
    [K_PART_MIN_UPDATES] = {"participation", "min_updates", "an integer in [1, sample]"},
    [K_PART_WAIT_AFTER_MIN] = {"participation", "wait_after_min",
                               "a number of seconds >= 0, at most 86400"},
    [K_PART_DROPOUT] = {"participation", "dropout", "a probability in [0, 1)"},
    [K_PART_STRAGGLER] = {"participation", "straggler",
                          "none, lognormal:SIGMA or lognormal:SIGMA:JITTER (numbers >= 0, at "
                          "most 10)"},
    [K_PART_ANSWER_TIME] = {"participation", "answer_time",
                            "a number of seconds > 0, at most 86400 (the median answer time)"},
    [K_COMP_NAME] = {"compressor", "name",
                     "one of identity, topk, randk, qsgd:S, sign, topk+qsgd:S (S levels, "
                     "1 to 1048576)"},
    [K_COMP_RATIO] = {"compressor", "ratio", "a number in (0, 1]: the kept fraction k/d"},
    [K_COMP_K] = {"compressor", "k",
                  "an integer in [1, 4294967295]: the kept count, instead of ratio"},
    [K_COMP_DOWNLINK] = {"compressor", "downlink",
                         "one of identity, topk, randk, qsgd:S, sign, topk+qsgd:S (the "
                         "broadcast's compressor; it shares ratio or k)"},
};

static const char *const fp__sections[] = {"run",       "data",          "model",
                                           "algorithm", "participation", "compressor"};
#define FP__SECTIONS_ALLOWED                                                                       \
    "allowed: [run], [data], [model], [algorithm], [participation], [compressor]"
#define FP__NSECTIONS (sizeof fp__sections / sizeof fp__sections[0])

struct fp__parse {
    struct fp_scenario *sc;
    struct fp_error *err;
    const char *origin;
    const char *text, *pos; /* reader state over the in-memory text */
    int line;               /* line the reader handed to inih last */
    int failed;
    int key_line[K_COUNT]; /* 0 = not set; -1 = set by --set */
    bool dropped[K_COUNT]; /* `--set section.key=` with no value: the file's line is ignored */
    bool sample_all;
    unsigned file_keys; /* keys the text sets */
};

/* ---- value parsers: return 0 or -1 (the caller reports) ---- */

/* The one number syntax of a scenario: plain decimal. Digits, for an
 * integer; for a real, digits with an optional fraction and an optional
 * decimal exponent ("0.05", ".5", "1e-3", "2.5E+4"). No sign, no spaces, no
 * hex ("0x1p-3", which strtod reads), no inf or nan: docs/scenarios.md
 * promises plain decimal, and strtoull and strtod accept far more. */
static bool fp__plain_decimal(const char *v, bool real)
{
    const char *s = v;
    size_t digits = 0;
    while (isdigit((unsigned char)*s))
        s++, digits++;
    if (!real)
        return digits > 0 && *s == '\0';
    if (*s == '.') {
        s++;
        while (isdigit((unsigned char)*s))
            s++, digits++;
    }
    if (digits == 0)
        return false;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (!isdigit((unsigned char)*s))
            return false;
        while (isdigit((unsigned char)*s))
            s++;
    }
    return *s == '\0';
}

static int fp__parse_u64(const char *v, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!fp__plain_decimal(v, false))
        return -1;
    errno = 0;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end != '\0' || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

static int fp__parse_u32(const char *v, uint32_t lo, uint32_t hi, uint32_t *out)
{
    uint64_t x;
    if (fp__parse_u64(v, lo, hi, &x))
        return -1;
    *out = (uint32_t)x;
    return 0;
}

static int fp__parse_double(const char *v, double lo, bool lo_open, double *out)
{
    if (!fp__plain_decimal(v, true))
        return -1;
    errno = 0;
    char *end;
    double x = strtod(v, &end);
    /* ERANGE: overflow to inf, or an underflow that loses the value */
    if (errno || *end != '\0' || !isfinite(x) || x < lo || (lo_open && x == lo))
        return -1;
    *out = x;
    return 0;
}

/* Strings must survive a trip through the canonical INI text unchanged: no
 * control characters, no ';' (inih's comment character), no space at either
 * end (inih strips it). */
static int fp__parse_str(const char *v, size_t min, char *dst)
{
    size_t n = strlen(v);
    if (n < min || n > FP__STR_MAX)
        return -1;
    if (n && (v[0] == ' ' || v[n - 1] == ' '))
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch < 0x20 || ch == 0x7f || ch == ';')
            return -1;
    }
    memcpy(dst, v, n + 1);
    return 0;
}

/* A file or directory the run reads ([data] path, [model] init), made
 * absolute here, when the scenario is loaded, so that the canonical text the
 * store keeps means the same file from whatever directory the run is
 * resumed. A relative path goes through realpath() against the working
 * directory (or, for a path that does not exist yet, is joined to it: the
 * open then fails naming the absolute path). An absolute path stays as
 * typed: it already means one file from anywhere, and keeping its text keeps
 * a sweep's match with runs stored before paths were resolved. Which bytes
 * the file held is the input hashes' business (core/inputs.h), not the
 * path's. -1: not a valid string; -2: valid, but its absolute form breaks
 * the string rules (too long, or a ';' or control character). */
static int fp__parse_path(const char *v, char *dst)
{
    if (fp__parse_str(v, 1, dst))
        return -1;
    if (v[0] == '/')
        return 0;
    char abs[PATH_MAX + 2];
    if (!realpath(v, abs)) {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            return -2;
        int n = snprintf(abs, sizeof abs, "%s/%s", strcmp(cwd, "/") ? cwd : "",
                         strncmp(v, "./", 2) ? v : v + 2);
        if (n < 0 || (size_t)n >= sizeof abs)
            return -2;
    }
    return fp__parse_str(abs, 1, dst) ? -2 : 0;
}

/* none | lognormal:SIGMA | lognormal:SIGMA:JITTER (docs/scenarios.md) */
static int fp__parse_straggler(const char *v, struct fp_scenario *sc)
{
    if (!strcmp(v, "none")) {
        sc->straggler = FP_STRAGGLER_NONE;
        sc->straggler_sigma = sc->straggler_jitter = 0;
        return 0;
    }
    if (strncmp(v, "lognormal:", 10))
        return -1;
    char buf[64];
    if (snprintf(buf, sizeof buf, "%s", v + 10) >= (int)sizeof buf)
        return -1;
    char *jitter = strchr(buf, ':');
    if (jitter)
        *jitter++ = '\0';
    double sigma, j = 0;
    if (fp__parse_double(buf, 0, false, &sigma) || sigma > 10 ||
        (jitter && (fp__parse_double(jitter, 0, false, &j) || j > 10)))
        return -1;
    sc->straggler = FP_STRAGGLER_LOGNORMAL;
    sc->straggler_sigma = sigma;
    sc->straggler_jitter = j;
    return 0;
}

static int fp__parse_comp(const char *v, struct fp_comp_spec *c)
{
    if (!strcmp(v, "identity"))
        c->kind = FP_COMP_IDENTITY;
    else if (!strcmp(v, "topk"))
        c->kind = FP_COMP_TOPK;
    else if (!strcmp(v, "randk"))
        c->kind = FP_COMP_RANDK;
    else if (!strcmp(v, "sign"))
        c->kind = FP_COMP_SIGN;
    else if (!strncmp(v, "qsgd:", 5)) {
        if (fp__parse_u32(v + 5, 1, 1u << 20, &c->levels))
            return -1;
        c->kind = FP_COMP_QSGD;
    } else if (!strncmp(v, "topk+qsgd:", 10)) {
        if (fp__parse_u32(v + 10, 1, 1u << 20, &c->levels))
            return -1;
        c->kind = FP_COMP_TOPK_QSGD;
    } else
        return -1;
    return 0;
}

static void fp__where(const struct fp__parse *p, int line, char *buf, size_t n)
{
    if (line > 0)
        snprintf(buf, n, "%s:%d", p->origin, line);
    else if (line < 0)
        snprintf(buf, n, "--set");
    else
        snprintf(buf, n, "%s", p->origin);
}

static int fp__fail(struct fp__parse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fp__fail(struct fp__parse *p, int line, const char *fmt, ...)
{
    if (p->failed)
        return 0; /* keep the first error: it is the one the user should fix first */
    char where[FP_SCENARIO_STR + 32], what[768];
    fp__where(p, line, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    fp_error_set(p->err, FP_EINVAL, "%s: %s", where, what);
    p->failed = 1;
    return 0;
}

static int fp__set_value(struct fp__parse *p, enum fp__key k, const char *v)
{
    struct fp_scenario *sc = p->sc;
    switch (k) {
    case K_RUN_NAME: return fp__parse_str(v, 1, sc->name);
    case K_RUN_SEED: return fp__parse_u64(v, 0, UINT64_MAX, &sc->seed);
    case K_RUN_ROUNDS: return fp__parse_u32(v, 1, 10000000, &sc->rounds);
    case K_RUN_EVAL_EVERY: return fp__parse_u32(v, 1, 10000000, &sc->eval_every);
    case K_RUN_CHECKPOINT_EVERY: return fp__parse_u32(v, 0, 10000000, &sc->checkpoint_every);
    case K_DATA_DATASET:
        if (!strcmp(v, "fashion-mnist"))
            sc->dataset = FP_DATA_FMNIST;
        else if (!strcmp(v, "synthetic"))
            sc->dataset = FP_DATA_SYNTHETIC;
        else if (!strcmp(v, "quadratic"))
            sc->dataset = FP_DATA_QUADRATIC;
        else if (!strcmp(v, "lsq"))
            sc->dataset = FP_DATA_LSQ;
        else if (!strcmp(v, "bilinear"))
            sc->dataset = FP_DATA_BILINEAR;
        else if (!strcmp(v, "robust-lsq"))
            sc->dataset = FP_DATA_ROBUST_LSQ;
        else
            return -1;
        return 0;
    case K_DATA_PATH: return fp__parse_path(v, sc->data_path);
    case K_DATA_CLIENTS: return fp__parse_u32(v, 1, 1000000, &sc->clients);
    case K_DATA_PARTITION:
        if (!strcmp(v, "iid"))
            sc->partition = FP_PART_IID;
        else if (!strcmp(v, "sorted"))
            sc->partition = FP_PART_SORTED;
        else if (!strncmp(v, "shards:", 7)) {
            if (fp__parse_u32(v + 7, 1, 1000, &sc->shards))
                return -1;
            sc->partition = FP_PART_SHARDS;
        } else if (!strncmp(v, "dirichlet:", 10)) {
            if (fp__parse_double(v + 10, 0, true, &sc->dirichlet_alpha))
                return -1;
            sc->partition = FP_PART_DIRICHLET;
        } else
            return -1;
        return 0;
    case K_DATA_ALPHA: return fp__parse_double(v, 0, false, &sc->synth_alpha);
    case K_DATA_BETA: return fp__parse_double(v, 0, false, &sc->synth_beta);
    case K_DATA_DIM: return fp__parse_u32(v, 1, 100000000, &sc->dim);
    case K_DATA_NOISE: return fp__parse_double(v, 0, false, &sc->quad_noise);
    case K_DATA_ROWS: return fp__parse_u32(v, 1, 10000000, &sc->lsq_rows);
    case K_DATA_SMOOTH_RATIO:
        return fp__parse_double(v, 1, false, &sc->lsq_ratio) || sc->lsq_ratio > 1e12 ? -1 : 0;
    case K_DATA_HETERO:
        return fp__parse_double(v, 0, false, &sc->bil_hetero) || sc->bil_hetero > 1e6 ? -1 : 0;
    case K_DATA_LAMBDA:
        return fp__parse_double(v, 0, true, &sc->bil_lambda) || sc->bil_lambda > 1e6 ? -1 : 0;
    case K_MODEL_KIND:
        if (!strcmp(v, "logreg"))
            sc->model = FP_MODEL_LOGREG;
        else if (!strcmp(v, "mlp"))
            sc->model = FP_MODEL_MLP;
        else if (!strcmp(v, "quadratic"))
            sc->model = FP_MODEL_QUADRATIC;
        else
            return -1;
        return 0;
    case K_MODEL_HIDDEN: return fp__parse_u32(v, 1, 100000, &sc->hidden);
    case K_MODEL_INIT: return fp__parse_path(v, sc->init_path);
    case K_ALGO_NAME:
        if (!strcmp(v, "fedavg"))
            sc->algorithm = FP_ALGO_FEDAVG;
        else if (!strcmp(v, "scaffold"))
            sc->algorithm = FP_ALGO_SCAFFOLD;
        else if (!strcmp(v, "fedpaq"))
            sc->algorithm = FP_ALGO_FEDPAQ;
        else if (!strcmp(v, "fedef"))
            sc->algorithm = FP_ALGO_FEDEF;
        else if (!strcmp(v, "scallion"))
            sc->algorithm = FP_ALGO_SCALLION;
        else if (!strcmp(v, "scafcom"))
            sc->algorithm = FP_ALGO_SCAFCOM;
        else if (!strcmp(v, "ef21"))
            sc->algorithm = FP_ALGO_EF21;
        else if (!strcmp(v, "ef21-w"))
            sc->algorithm = FP_ALGO_EF21W;
        else if (!strcmp(v, "econtrol"))
            sc->algorithm = FP_ALGO_ECONTROL;
        else if (!strcmp(v, "ef14"))
            sc->algorithm = FP_ALGO_EF14;
        else if (!strcmp(v, "eg"))
            sc->algorithm = FP_ALGO_EG;
        else if (!strcmp(v, "eg-naive"))
            sc->algorithm = FP_ALGO_EG_NAIVE;
        else if (!strcmp(v, "masha1"))
            sc->algorithm = FP_ALGO_MASHA1;
        else if (!strcmp(v, "masha2"))
            sc->algorithm = FP_ALGO_MASHA2;
        else
            return -1;
        return 0;
    case K_ALGO_LOCAL_STEPS: return fp__parse_u32(v, 1, 1000000, &sc->local_steps);
    case K_ALGO_BATCH: return fp__parse_u32(v, 1, 10000000, &sc->batch);
    case K_ALGO_LR_LOCAL: return fp__parse_double(v, 0, true, &sc->lr_local);
    case K_ALGO_LR_GLOBAL: return fp__parse_double(v, 0, true, &sc->lr_global);
    case K_ALGO_ALPHA:
        if (!strcmp(v, "auto")) {
            sc->alpha = NAN;
            return 0;
        }
        if (fp__parse_double(v, 0, true, &sc->alpha) || sc->alpha > 1)
            return -1;
        return 0;
    case K_ALGO_BETA:
        if (fp__parse_double(v, 0, true, &sc->beta) || sc->beta > 1)
            return -1;
        return 0;
    case K_ALGO_STEP:
        if (!strcmp(v, "theory")) {
            sc->step = NAN;
            return 0;
        }
        return fp__parse_double(v, 0, true, &sc->step);
    case K_ALGO_STEP_SCALE: return fp__parse_double(v, 0, true, &sc->step_scale);
    case K_ALGO_ETA:
        if (!strcmp(v, "auto")) {
            sc->eta = NAN;
            return 0;
        }
        return fp__parse_double(v, 0, false, &sc->eta);
    case K_ALGO_TAU:
        if (!strcmp(v, "auto")) {
            sc->tau = NAN;
            return 0;
        }
        return fp__parse_double(v, 0, false, &sc->tau) || sc->tau >= 1 ? -1 : 0;
    case K_COMP_DOWNLINK: return fp__parse_comp(v, &sc->downlink);
    case K_COMP_NAME: return fp__parse_comp(v, &sc->uplink);
    case K_COMP_K: return fp__parse_u64(v, 1, UINT32_MAX, &sc->uplink.count);
    case K_COMP_RATIO:
        if (fp__parse_double(v, 0, true, &sc->uplink.ratio) || sc->uplink.ratio > 1)
            return -1;
        return 0;
    case K_PART_SAMPLE:
        if (!strcmp(v, "all")) {
            p->sample_all = true;
            return 0;
        }
        p->sample_all = false;
        return fp__parse_u32(v, 1, 1000000, &sc->sample);
    case K_PART_DEADLINE:
        return fp__parse_double(v, 0, true, &sc->deadline) || sc->deadline > 86400 ? -1 : 0;
    case K_PART_MIN_UPDATES: return fp__parse_u32(v, 1, 1000000, &sc->min_updates);
    case K_PART_WAIT_AFTER_MIN:
        return fp__parse_double(v, 0, false, &sc->wait_after_min) || sc->wait_after_min > 86400 ? -1
                                                                                                : 0;
    case K_PART_DROPOUT:
        return fp__parse_double(v, 0, false, &sc->dropout) || sc->dropout >= 1 ? -1 : 0;
    case K_PART_STRAGGLER: return fp__parse_straggler(v, sc);
    case K_PART_ANSWER_TIME:
        return fp__parse_double(v, 0, true, &sc->answer_time) || sc->answer_time > 86400 ? -1 : 0;
    case K_COUNT: break;
    }
    return -1;
}

static int fp__section_known(const char *s)
{
    for (size_t i = 0; i < FP__NSECTIONS; i++)
        if (!strcmp(s, fp__sections[i]))
            return 1;
    return 0;
}

static void fp__keys_of(const char *section, char *buf, size_t n)
{
    size_t off = 0;
    buf[0] = '\0';
    for (int k = 0; k < K_COUNT; k++) {
        if (strcmp(fp__keys[k].section, section))
            continue;
        int w = snprintf(buf + off, n - off, "%s%s", off ? ", " : "", fp__keys[k].name);
        if (w < 0 || (size_t)w >= n - off)
            break;
        off += (size_t)w;
    }
}

/* Applies one key; line > 0: file line, -1: --set, and from_file forbids duplicates. */
static int fp__apply(struct fp__parse *p, const char *section, const char *name, const char *value,
                     int line)
{
    if (!fp__section_known(section))
        return fp__fail(p, line, "unknown section [%s]; " FP__SECTIONS_ALLOWED, section);
    for (int k = 0; k < K_COUNT; k++) {
        if (strcmp(fp__keys[k].section, section) || strcmp(fp__keys[k].name, name))
            continue;
        if (line > 0 && p->key_line[k] > 0)
            return fp__fail(p, line, "[%s] %s is set twice (first on line %d)", section, name,
                            p->key_line[k]);
        if (line > 0 && p->dropped[k])
            return 1; /* removed by --set section.key= : the default stands */
        int bad = fp__set_value(p, (enum fp__key)k, value);
        if (bad == -2)
            return fp__fail(p, line,
                            "[%s] %s = '%s': its absolute path (which the run store keeps, so "
                            "that a resumed run reads the same file) is longer than %d "
                            "characters or holds a ';' or control character; use a shorter "
                            "absolute path",
                            section, name, value, FP__STR_MAX);
        if (bad)
            return fp__fail(p, line, "[%s] %s = '%s' is not valid: expected %s", section, name,
                            value, fp__keys[k].allowed);
        p->key_line[k] = line;
        return 1;
    }
    char keys[512];
    fp__keys_of(section, keys, sizeof keys);
    return fp__fail(p, line, "unknown key '%s' in [%s]; allowed: %s", name, section, keys);
}

static int fp__key_index(const char *section, const char *name)
{
    for (int k = 0; k < K_COUNT; k++)
        if (!strcmp(fp__keys[k].section, section) && !strcmp(fp__keys[k].name, name))
            return k;
    return -1;
}

static int fp__handler(void *user, const char *section, const char *name, const char *value)
{
    struct fp__parse *p = user;
    if (section[0] == '\0')
        return fp__fail(p, p->line, "key '%s' appears before any [section]", name);
    p->file_keys++;
    fp__apply(p, section, name, value, p->line);
    return !p->failed;
}

/* fgets over the in-memory text. Also validates section headers, because
 * inih never tells the handler about a section without keys. */
static char *fp__reader(char *str, int num, void *stream)
{
    struct fp__parse *p = stream;
    if (p->failed || *p->pos == '\0')
        return NULL;
    const char *nl = strchr(p->pos, '\n');
    size_t len = nl ? (size_t)(nl - p->pos) + 1 : strlen(p->pos);
    p->line++;
    if (len >= (size_t)num - 1) {
        fp__fail(p, p->line, "line is longer than %d characters", num - 3);
        return NULL;
    }
    memcpy(str, p->pos, len);
    str[len] = '\0';
    p->pos += len;

    const char *s = str;
    if (p->line == 1 && !strncmp(s, "\xEF\xBB\xBF", 3))
        s += 3; /* inih skips a UTF-8 byte order mark */
    while (*s == ' ' || *s == '\t')
        s++;
    /* inih reports a malformed line only when the whole text is parsed, and
     * goes on meanwhile: the keys after it reach the handler first, so its
     * error would name a later line ("[run" then "name = x": "key before any
     * section" on line 2). Every malformed line fails here, on its own line. */
    if (*s == '[') {
        const char *e = strchr(s, ']');
        if (!e) {
            size_t n = strcspn(s + 1, "\r\n");
            fp__fail(p, p->line, "section header '[%.*s' has no closing ']'",
                     (int)(n > 60 ? 60 : n), s + 1);
            return NULL;
        }
        char sec[64];
        size_t n = (size_t)(e - s - 1);
        if (n >= sizeof sec || (memcpy(sec, s + 1, n), sec[n] = '\0', !fp__section_known(sec))) {
            fp__fail(p, p->line, "unknown section [%.*s]; " FP__SECTIONS_ALLOWED,
                     (int)(n > 60 ? 60 : n), s + 1);
            return NULL;
        }
    } else if (*s != '\0' && *s != '\r' && *s != '\n' && *s != ';' && *s != '#' &&
               !strpbrk(s, "=:")) {
        fp__fail(p, p->line, "not a 'key = value' line or a [section] header");
        return NULL;
    }
    return str;
}

void fp_scenario_defaults(struct fp_scenario *sc)
{
    memset(sc, 0, sizeof *sc);
    snprintf(sc->name, sizeof sc->name, "run");
    sc->seed = 1;
    sc->rounds = 100;
    sc->eval_every = 1;
    sc->checkpoint_every = 0; /* a state can be hundreds of MB: see docs/scenarios.md */
    sc->dataset = FP_DATA_FMNIST;
    snprintf(sc->data_path, sizeof sc->data_path, "%s", FP__DEFAULT_FMNIST_PATH);
    sc->clients = 100;
    sc->partition = FP_PART_IID;
    sc->shards = 2;
    sc->dirichlet_alpha = 0.5;
    sc->synth_alpha = 1.0;
    sc->synth_beta = 1.0;
    sc->dim = 0; /* per dataset, below */
    sc->quad_noise = 0.0;
    sc->lsq_rows = 0; /* lsq: 2 dim, below */
    sc->lsq_ratio = 100.0;
    sc->bil_hetero = 0.5;
    sc->bil_lambda = 0.5;
    sc->model = FP_MODEL_MLP;
    sc->hidden = 200;
    sc->algorithm = FP_ALGO_FEDAVG;
    sc->local_steps = 10;
    sc->batch = 32;
    sc->lr_local = 0.05;
    sc->lr_global = 1.0;
    sc->alpha = NAN; /* auto */
    sc->beta = 0.2;
    sc->step = NAN; /* theory */
    sc->step_scale = 1.0;
    sc->eta = NAN;       /* auto */
    sc->tau = NAN;       /* auto */
    sc->sample = 0;      /* all */
    sc->deadline = 0;    /* unset */
    sc->min_updates = 0; /* = sample */
    sc->wait_after_min = 0;
    sc->dropout = 0;
    sc->straggler = FP_STRAGGLER_NONE;
    sc->straggler_sigma = sc->straggler_jitter = 0;
    sc->answer_time = 1;
    sc->uplink.kind = FP_COMP_IDENTITY;
    sc->uplink.ratio = 0.01;
    sc->uplink.levels = 0;
    sc->downlink.kind = FP_COMP_IDENTITY;
}

/* The shortest decimal that reads back as the same double: 0.1, not
 * 0.10000000000000001, so the stored scenario reads as it was written. */
static const char *fp__g(char buf[32], double v)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, 32, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
}

/* Seconds: whole ones as integers ("60", not fp__g's "6e+01"), others as
 * fp__g; both read back as the same double. */
static const char *fp__seconds(char buf[32], double v)
{
    if (v == floor(v) && v < 1e9) {
        snprintf(buf, 32, "%.0f", v);
        return buf;
    }
    return fp__g(buf, v);
}

static const char *fp__partition_str(const struct fp_scenario *sc, char *buf, size_t n)
{
    switch (sc->partition) {
    case FP_PART_IID: return "iid";
    case FP_PART_SORTED: return "sorted";
    case FP_PART_SHARDS: snprintf(buf, n, "shards:%u", sc->shards); return buf;
    case FP_PART_DIRICHLET: {
        char g[32];
        snprintf(buf, n, "dirichlet:%s", fp__g(g, sc->dirichlet_alpha));
        return buf;
    }
    case FP_PART_NATURAL: return "natural";
    }
    return "?";
}

/* The error-feedback family (EF21, EF21-W, EControl, EF14): one gradient
 * per round at the broadcast point, a step instead of the FedAvg family's
 * learning rates; what needs the clients' smoothness constants needs the
 * lsq dataset, which defines them; partial participation only where a
 * paper defines it (EF21-PP, EF21-W-PP). */
static int fp__validate_ef(struct fp__parse *p)
{
    struct fp_scenario *sc = p->sc;
    const int *L = p->key_line;
    const char *a = fp_algo_name(sc->algorithm);
    if (!fp_algo_is_ef(sc->algorithm))
        return 0;
    if (L[K_ALGO_LOCAL_STEPS] && sc->local_steps != 1)
        return fp__fail(p, L[K_ALGO_LOCAL_STEPS],
                        "[algorithm] local_steps = %u: %s takes one gradient per round (set 1 "
                        "or leave it out)",
                        sc->local_steps, a);
    sc->local_steps = 1;
    if (L[K_ALGO_LR_LOCAL] || L[K_ALGO_LR_GLOBAL])
        return fp__fail(p, L[K_ALGO_LR_LOCAL] ? L[K_ALGO_LR_LOCAL] : L[K_ALGO_LR_GLOBAL],
                        "[algorithm] lr_local and lr_global do not apply to %s: set its step "
                        "with [algorithm] step = theory or a number",
                        a);
    if (sc->dataset != FP_DATA_LSQ && (isnan(sc->step) || sc->algorithm == FP_ALGO_EF21W))
        return fp__fail(p, L[K_ALGO_STEP] ? L[K_ALGO_STEP] : L[K_ALGO_NAME],
                        "%s needs the clients' smoothness constants L_i (%s), which only "
                        "dataset lsq defines; use dataset = lsq, or a numeric [algorithm] step",
                        a, sc->algorithm == FP_ALGO_EF21W ? "its weights" : "for step = theory");
    if ((sc->algorithm == FP_ALGO_ECONTROL || sc->algorithm == FP_ALGO_EF14) && !p->sample_all &&
        sc->sample != 0 && sc->sample < sc->clients)
        return fp__fail(p, L[K_PART_SAMPLE],
                        "[participation] sample = %u < clients = %u: %s is defined for full "
                        "participation only (EF21 and EF21-W have a partial-participation "
                        "variant)",
                        sc->sample, sc->clients, a);
    /* EF21-BC: every client holds the server's w and sums each broadcast
     * into it; a client left out of a round would miss one for good (no
     * resync message exists) */
    if (sc->algorithm == FP_ALGO_EF21 && sc->downlink.kind != FP_COMP_IDENTITY && !p->sample_all &&
        sc->sample != 0 && sc->sample < sc->clients)
        return fp__fail(p, L[K_PART_SAMPLE],
                        "[participation] sample = %u < clients = %u: ef21 with a compressed "
                        "[compressor] downlink (EF21-BC) needs every client in every round: a "
                        "client left out would miss a broadcast it cannot get again; set sample "
                        "= %u or downlink = identity",
                        sc->sample, sc->clients, sc->clients);
    if (sc->algorithm == FP_ALGO_EF21 && sc->downlink.kind != FP_COMP_IDENTITY &&
        (sc->dropout > 0 || sc->straggler != FP_STRAGGLER_NONE || L[K_PART_MIN_UPDATES]))
        return fp__fail(p,
                        L[K_PART_DROPOUT]     ? L[K_PART_DROPOUT]
                        : L[K_PART_STRAGGLER] ? L[K_PART_STRAGGLER]
                                              : L[K_PART_MIN_UPDATES],
                        "ef21 with a compressed [compressor] downlink (EF21-BC) needs every "
                        "client's upload in every round: [participation] dropout, straggler "
                        "and min_updates do not apply");
    return 0;
}

/* The variational-inequality methods (eg, eg-naive, masha1, masha2) and
 * the bilinear dataset go together: its grad() is an operator F_m, which
 * only these methods read as one. Every device holds the iterates, so
 * every client takes part in every round: a client left out would miss a
 * broadcast it cannot get again (no per-client resync message exists). */
static int fp__validate_vi(struct fp__parse *p)
{
    struct fp_scenario *sc = p->sc;
    const int *L = p->key_line;
    const int vi = fp_algo_is_vi(sc->algorithm);
    const char *a = fp_algo_name(sc->algorithm);
    if (vi != fp_dataset_is_vi(sc->dataset))
        return fp__fail(p, L[K_ALGO_NAME] ? L[K_ALGO_NAME] : L[K_DATA_DATASET],
                        vi ? "%s solves a variational inequality: it needs [data] dataset = "
                             "bilinear or robust-lsq (an operator F_m)"
                           : "dataset %s is a variational inequality: use [algorithm] "
                             "name = eg, eg-naive, masha1 or masha2, not %s",
                        vi ? a : fp_dataset_name(sc->dataset), a);
    if (!vi)
        return 0;
    /* step = theory: c = 1/2 unless step_scale says (docs/algorithms.md) */
    if (isnan(sc->step) && !L[K_ALGO_STEP_SCALE])
        sc->step_scale = 0.5;
    if (L[K_ALGO_LOCAL_STEPS] && sc->local_steps != 1)
        return fp__fail(p, L[K_ALGO_LOCAL_STEPS],
                        "[algorithm] local_steps = %u: %s evaluates the operator, it takes no "
                        "local steps (set 1 or leave it out)",
                        sc->local_steps, a);
    sc->local_steps = 1;
    if (L[K_ALGO_LR_LOCAL] || L[K_ALGO_LR_GLOBAL])
        return fp__fail(p, L[K_ALGO_LR_LOCAL] ? L[K_ALGO_LR_LOCAL] : L[K_ALGO_LR_GLOBAL],
                        "[algorithm] lr_local and lr_global do not apply to %s: set [algorithm] "
                        "step",
                        a);
    if (!p->sample_all && sc->sample != 0 && sc->sample < sc->clients)
        return fp__fail(p, L[K_PART_SAMPLE],
                        "[participation] sample = %u < clients = %u: %s keeps the iterates on "
                        "every device and needs every client in every round (sample = all); "
                        "a per-client resync message does not exist yet",
                        sc->sample, sc->clients, a);
    if (sc->dropout > 0 || sc->straggler != FP_STRAGGLER_NONE || L[K_PART_MIN_UPDATES])
        return fp__fail(p,
                        L[K_PART_DROPOUT]     ? L[K_PART_DROPOUT]
                        : L[K_PART_STRAGGLER] ? L[K_PART_STRAGGLER]
                                              : L[K_PART_MIN_UPDATES],
                        "%s needs every client's upload in every round: [participation] "
                        "dropout, straggler and min_updates do not apply",
                        a);
    return 0;
}

/* Cross-key rules: what applies to which dataset/model, and ranges that
 * depend on other keys. Runs after the file and every override. */
static int fp__validate(struct fp__parse *p)
{
    struct fp_scenario *sc = p->sc;
    const int *L = p->key_line;
    const char *ds = fp_dataset_name(sc->dataset);

#define FP__ONLY(key, cond, what)                                                                  \
    do {                                                                                           \
        if (L[key] && !(cond))                                                                     \
            return fp__fail(                                                                       \
                p, L[key], "[%s] %s applies only to %s, not to dataset %s with model %s",          \
                fp__keys[key].section, fp__keys[key].name, what, ds, fp_model_name(sc->model));    \
    } while (0)

    /* quadratic and lsq are their own (quadratic) model */
    const bool own_model = sc->dataset == FP_DATA_QUADRATIC || sc->dataset == FP_DATA_LSQ ||
                           fp_dataset_is_vi(sc->dataset);
    if (!L[K_MODEL_KIND])
        sc->model = own_model ? FP_MODEL_QUADRATIC : FP_MODEL_MLP;
    if (own_model != (sc->model == FP_MODEL_QUADRATIC))
        return fp__fail(p, L[K_MODEL_KIND] ? L[K_MODEL_KIND] : L[K_DATA_DATASET],
                        "model '%s' does not fit dataset '%s': the quadratic and lsq datasets "
                        "are their own model (kind = quadratic); fashion-mnist and synthetic "
                        "take logreg or mlp",
                        fp_model_name(sc->model), ds);
    FP__ONLY(K_DATA_PATH, sc->dataset == FP_DATA_FMNIST, "dataset fashion-mnist");
    FP__ONLY(K_DATA_PARTITION, sc->dataset == FP_DATA_FMNIST,
             "dataset fashion-mnist (synthetic, quadratic and lsq define each client's data)");
    FP__ONLY(K_DATA_ALPHA, sc->dataset == FP_DATA_SYNTHETIC, "dataset synthetic");
    FP__ONLY(K_DATA_BETA, sc->dataset == FP_DATA_SYNTHETIC, "dataset synthetic");
    FP__ONLY(K_DATA_DIM, sc->dataset != FP_DATA_FMNIST, "datasets synthetic, quadratic and lsq");
    FP__ONLY(K_DATA_NOISE, sc->dataset == FP_DATA_QUADRATIC, "dataset quadratic");
    FP__ONLY(K_DATA_ROWS, sc->dataset == FP_DATA_LSQ || sc->dataset == FP_DATA_ROBUST_LSQ,
             "datasets lsq and robust-lsq");
    FP__ONLY(K_DATA_SMOOTH_RATIO, sc->dataset == FP_DATA_LSQ, "dataset lsq");
    FP__ONLY(K_DATA_HETERO, fp_dataset_is_vi(sc->dataset), "datasets bilinear and robust-lsq");
    FP__ONLY(K_DATA_LAMBDA, fp_dataset_is_vi(sc->dataset), "datasets bilinear and robust-lsq");
    FP__ONLY(K_MODEL_HIDDEN, sc->model == FP_MODEL_MLP, "model mlp");
#undef FP__ONLY
#define FP__ONLY_ALGO(key, cond, what)                                                             \
    do {                                                                                           \
        if (L[key] && !(cond))                                                                     \
            return fp__fail(p, L[key], "[%s] %s applies only to %s, not to %s",                    \
                            fp__keys[key].section, fp__keys[key].name, what,                       \
                            fp_algo_name(sc->algorithm));                                          \
    } while (0)
    FP__ONLY_ALGO(K_ALGO_ALPHA, sc->algorithm == FP_ALGO_SCALLION, "algorithm scallion");
    FP__ONLY_ALGO(K_ALGO_BETA, sc->algorithm == FP_ALGO_SCAFCOM, "algorithm scafcom");
    {
        const bool ef = fp_algo_is_ef(sc->algorithm);
        FP__ONLY_ALGO(K_ALGO_STEP, ef || fp_algo_is_vi(sc->algorithm),
                      "algorithms ef21, ef21-w, econtrol, ef14, eg, eg-naive, masha1 and masha2");
        FP__ONLY_ALGO(K_ALGO_TAU,
                      sc->algorithm == FP_ALGO_MASHA1 || sc->algorithm == FP_ALGO_MASHA2,
                      "algorithms masha1 and masha2");
        FP__ONLY_ALGO(K_COMP_DOWNLINK,
                      fp_algo_is_vi(sc->algorithm) || sc->algorithm == FP_ALGO_EF21,
                      "algorithms eg-naive, masha1, masha2 and ef21 (every other broadcasts "
                      "uncompressed)");
        FP__ONLY_ALGO(K_ALGO_STEP_SCALE, (ef || fp_algo_is_vi(sc->algorithm)) && isnan(sc->step),
                      "step = theory (algorithms ef21, ef21-w, econtrol, ef14, eg, eg-naive, "
                      "masha1 and masha2)");
        FP__ONLY_ALGO(K_ALGO_ETA, sc->algorithm == FP_ALGO_ECONTROL, "algorithm econtrol");
        int rc = fp__validate_ef(p);
        if (!rc)
            rc = fp__validate_vi(p);
        if (rc)
            return rc;
    }
#undef FP__ONLY_ALGO
    {
        /* ratio and k size the uplink's compressor and the downlink's */
        const enum fp_comp_kind dk = sc->downlink.kind;
        enum fp_comp_kind ck = sc->uplink.kind;
        if ((dk == FP_COMP_TOPK || dk == FP_COMP_RANDK || dk == FP_COMP_TOPK_QSGD) &&
            !(ck == FP_COMP_TOPK || ck == FP_COMP_RANDK || ck == FP_COMP_TOPK_QSGD) &&
            (L[K_COMP_K] || L[K_COMP_RATIO]))
            ck = dk;
        char cname[64];
        fp_comp_name(&sc->uplink, cname, sizeof cname);
        if (L[K_COMP_K] && ck != FP_COMP_TOPK && ck != FP_COMP_RANDK && ck != FP_COMP_TOPK_QSGD)
            return fp__fail(p, L[K_COMP_K],
                            "[compressor] k applies only to topk, randk and topk+qsgd, not to %s",
                            cname);
        if (L[K_COMP_K] && L[K_COMP_RATIO])
            return fp__fail(p, L[K_COMP_K] > 0 ? L[K_COMP_K] : L[K_COMP_RATIO],
                            "[compressor] set ratio or k, not both");
        if (L[K_COMP_RATIO] && ck != FP_COMP_TOPK && ck != FP_COMP_RANDK && ck != FP_COMP_TOPK_QSGD)
            return fp__fail(p, L[K_COMP_RATIO],
                            "[compressor] ratio applies only to topk, randk and topk+qsgd, not "
                            "to %s",
                            cname);
        int line = L[K_COMP_NAME] ? L[K_COMP_NAME] : L[K_ALGO_NAME];
        char why[256];
        if (fp_algo_comp_misfit(sc->algorithm, FP_UPLINK, &sc->uplink, why, sizeof why))
            return fp__fail(p, line, "%s", why);
        sc->downlink.ratio = sc->uplink.ratio;
        sc->downlink.count = sc->uplink.count;
        if (fp_algo_comp_misfit(sc->algorithm, FP_DOWNLINK, &sc->downlink, why, sizeof why))
            return fp__fail(p, L[K_COMP_DOWNLINK] ? L[K_COMP_DOWNLINK] : line, "%s", why);
    }

    if (sc->dataset != FP_DATA_FMNIST)
        sc->partition = FP_PART_NATURAL;
    if (!L[K_DATA_DIM])
        sc->dim = sc->dataset == FP_DATA_SYNTHETIC    ? 60
                  : sc->dataset == FP_DATA_QUADRATIC  ? 10
                  : sc->dataset == FP_DATA_LSQ        ? 20
                  : sc->dataset == FP_DATA_BILINEAR   ? 50
                  : sc->dataset == FP_DATA_ROBUST_LSQ ? 20
                                                      : 784;
    if ((sc->dataset == FP_DATA_LSQ || sc->dataset == FP_DATA_ROBUST_LSQ) && !L[K_DATA_ROWS])
        sc->lsq_rows = 2 * sc->dim;
    if (sc->dataset == FP_DATA_FMNIST)
        sc->dim = 784;
    if (p->sample_all || sc->sample == 0)
        sc->sample = sc->clients;
    if (sc->sample > sc->clients)
        return fp__fail(p, L[K_PART_SAMPLE],
                        "[participation] sample = %u is larger than [data] clients = %u",
                        sc->sample, sc->clients);
    if (!sc->min_updates)
        sc->min_updates = sc->sample;
    if (sc->min_updates > sc->sample)
        return fp__fail(p, L[K_PART_MIN_UPDATES],
                        "[participation] min_updates = %u is larger than sample = %u: a round "
                        "could never close",
                        sc->min_updates, sc->sample);
    if ((L[K_PART_MIN_UPDATES] || L[K_PART_WAIT_AFTER_MIN]) && !L[K_PART_DEADLINE])
        return fp__fail(p, L[K_PART_MIN_UPDATES] ? L[K_PART_MIN_UPDATES] : L[K_PART_WAIT_AFTER_MIN],
                        "[participation] min_updates and wait_after_min need a deadline: add "
                        "[participation] deadline = SECONDS");
    if (sc->straggler != FP_STRAGGLER_NONE && !L[K_PART_DEADLINE])
        return fp__fail(p, L[K_PART_STRAGGLER],
                        "[participation] straggler needs a deadline (without one no client is "
                        "ever late): add [participation] deadline = SECONDS");
    if (L[K_PART_ANSWER_TIME] && sc->straggler == FP_STRAGGLER_NONE)
        return fp__fail(p, L[K_PART_ANSWER_TIME],
                        "[participation] answer_time applies only with a straggler model: add "
                        "[participation] straggler = lognormal:SIGMA");
    if (sc->partition == FP_PART_SHARDS && sc->shards > 10)
        return fp__fail(p, L[K_DATA_PARTITION],
                        "[data] partition = shards:%u asks for more classes per client than "
                        "fashion-mnist has (10)",
                        sc->shards);
    if (sc->dataset == FP_DATA_FMNIST && sc->clients > 60000)
        return fp__fail(p, L[K_DATA_CLIENTS],
                        "[data] clients = %u is more than fashion-mnist's 60000 training examples",
                        sc->clients);
    return 0;
}

int fp_scenario_load_string(struct fp_scenario *sc, const char *text, const char *origin,
                            const char *const *overrides, size_t n_overrides, struct fp_error *err)
{
    struct fp__parse p;
    memset(&p, 0, sizeof p);
    p.sc = sc;
    p.err = err;
    p.origin = origin;
    p.text = p.pos = text;
    fp_scenario_defaults(sc);

    /* Overrides with no value remove a key of the file (back to its
     * default), so a sweep can switch e.g. from topk (with a ratio) to qsgd:4
     * (which takes none) without a copy of the file. They act before the
     * file is read; the others after it. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            ini_allow_multiline = false; /* a continuation line would shift our line numbers */
            int rc = ini_parse_stream(fp__reader, &p, fp__handler, &p);
            if (p.failed)
                return FP_EINVAL;
            if (rc > 0)
                return fp_error_set(err, FP_EINVAL,
                                    "%s:%d: not a 'key = value' line or a [section] header", origin,
                                    rc);
            if (rc < 0)
                return fp_error_set(err, FP_ENOMEM, "%s: out of memory while parsing", origin);
            /* An empty file (or one of comments only) would run the whole
             * default scenario: 100 rounds of an MLP on Fashion-MNIST. That
             * is a wrong or truncated file far more often than a wish. */
            if (p.file_keys == 0)
                return fp_error_set(err, FP_EINVAL,
                                    "%s: sets no key (the file is empty, or holds only comments "
                                    "and section headers); a scenario sets at least one key, "
                                    "e.g. [data] dataset = fashion-mnist (see docs/scenarios.md)",
                                    origin);
        }
        for (size_t i = 0; i < n_overrides; i++) {
            const char *o = overrides[i];
            const char *dot = strchr(o, '.'), *eq = strchr(o, '=');
            if (!dot || !eq || dot > eq || dot == o || eq == dot + 1)
                return fp_error_set(err, FP_EINVAL,
                                    "--set '%s': expected section.key=value (or section.key= to "
                                    "remove the key), e.g. --set algorithm.lr_local=0.1",
                                    o);
            char section[64], name[64];
            size_t sl = (size_t)(dot - o), nl = (size_t)(eq - dot - 1);
            if (sl >= sizeof section || nl >= sizeof name)
                return fp_error_set(err, FP_EINVAL, "--set '%s': section or key too long", o);
            memcpy(section, o, sl);
            section[sl] = '\0';
            memcpy(name, dot + 1, nl);
            name[nl] = '\0';
            int empty = eq[1] == '\0';
            if (empty != (pass == 0))
                continue;
            if (!empty) {
                fp__apply(&p, section, name, eq + 1, -1);
            } else {
                int k = fp__key_index(section, name);
                if (k < 0)
                    fp__apply(&p, section, name, "", -1); /* reports the unknown key */
                else
                    p.dropped[k] = true;
            }
            if (p.failed)
                return FP_EINVAL;
        }
    }
    fp__validate(&p);
    return p.failed ? FP_EINVAL : 0;
}

int fp_scenario_load(struct fp_scenario *sc, const char *path, const char *const *overrides,
                     size_t n_overrides, struct fp_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fp_error_set(err, FP_EIO, "%s: cannot open scenario: %s", path, strerror(errno));
    char *text = NULL;
    size_t cap = 0, len = 0;
    int rc = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            if (cap >= (1u << 20)) {
                rc = fp_error_set(err, FP_EFORMAT, "%s: scenario file is larger than 1 MiB", path);
                goto out;
            }
            cap = cap ? cap * 2 : 8192;
            char *t = realloc(text, cap);
            if (!t) {
                rc = fp_error_set(err, FP_ENOMEM, "%s: out of memory", path);
                goto out;
            }
            text = t;
        }
        size_t got = fread(text + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        rc = fp_error_set(err, FP_EIO, "%s: read error", path);
        goto out;
    }
    text[len] = '\0';
    if (strlen(text) != len) {
        rc = fp_error_set(err, FP_EFORMAT, "%s: contains a NUL byte; not a text file", path);
        goto out;
    }
    rc = fp_scenario_load_string(sc, text, path, overrides, n_overrides, err);
out:
    free(text);
    fclose(f);
    return rc;
}

char *fp_scenario_canonical(const struct fp_scenario *sc)
{
    char part[64], g1[32], g2[32];
    size_t cap = 4096;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    int n = snprintf(buf, cap,
                     "[run]\nname = %s\nseed = %llu\nrounds = %u\neval_every = %u\n"
                     "checkpoint_every = %u\n\n"
                     "[data]\ndataset = %s\nclients = %u\n",
                     sc->name, (unsigned long long)sc->seed, sc->rounds, sc->eval_every,
                     sc->checkpoint_every, fp_dataset_name(sc->dataset), sc->clients);
#define FP__ADD(...)                                                                               \
    do {                                                                                           \
        if (n >= 0 && (size_t)n < cap)                                                             \
            n += snprintf(buf + n, cap - (size_t)n, __VA_ARGS__);                                  \
    } while (0)
    if (sc->dataset == FP_DATA_FMNIST)
        FP__ADD("path = %s\npartition = %s\n", sc->data_path,
                fp__partition_str(sc, part, sizeof part));
    if (sc->dataset == FP_DATA_SYNTHETIC)
        FP__ADD("alpha = %s\nbeta = %s\ndim = %u\n", fp__g(g1, sc->synth_alpha),
                fp__g(g2, sc->synth_beta), sc->dim);
    if (sc->dataset == FP_DATA_QUADRATIC)
        FP__ADD("dim = %u\nnoise = %s\n", sc->dim, fp__g(g1, sc->quad_noise));
    if (sc->dataset == FP_DATA_LSQ)
        FP__ADD("dim = %u\nrows = %u\nsmooth_ratio = %s\n", sc->dim, sc->lsq_rows,
                fp__g(g1, sc->lsq_ratio));
    if (sc->dataset == FP_DATA_ROBUST_LSQ)
        FP__ADD("rows = %u\n", sc->lsq_rows);
    if (fp_dataset_is_vi(sc->dataset))
        FP__ADD("dim = %u\nheterogeneity = %s\nlambda = %s\n", sc->dim, fp__g(g1, sc->bil_hetero),
                fp__g(g2, sc->bil_lambda));
    FP__ADD("\n[model]\nkind = %s\n", fp_model_name(sc->model));
    if (sc->model == FP_MODEL_MLP)
        FP__ADD("hidden = %u\n", sc->hidden);
    if (sc->init_path[0])
        FP__ADD("init = %s\n", sc->init_path);
    FP__ADD("\n[algorithm]\nname = %s\nlocal_steps = %u\nbatch = %u\n", fp_algo_name(sc->algorithm),
            sc->local_steps, sc->batch);
    if (fp_algo_is_vi(sc->algorithm)) {
        if (isnan(sc->step))
            FP__ADD("step = theory\nstep_scale = %s\n", fp__g(g1, sc->step_scale));
        else
            FP__ADD("step = %s\n", fp__g(g1, sc->step));
        if (sc->algorithm == FP_ALGO_MASHA1 || sc->algorithm == FP_ALGO_MASHA2) {
            if (isnan(sc->tau))
                FP__ADD("tau = auto\n");
            else
                FP__ADD("tau = %s\n", fp__g(g1, sc->tau));
        }
    } else if (!fp_algo_is_ef(sc->algorithm))
        FP__ADD("lr_local = %s\nlr_global = %s\n", fp__g(g1, sc->lr_local),
                fp__g(g2, sc->lr_global));
    else if (isnan(sc->step))
        FP__ADD("step = theory\nstep_scale = %s\n", fp__g(g1, sc->step_scale));
    else
        FP__ADD("step = %s\n", fp__g(g1, sc->step));
    if (sc->algorithm == FP_ALGO_ECONTROL) {
        if (isnan(sc->eta))
            FP__ADD("eta = auto\n");
        else
            FP__ADD("eta = %s\n", fp__g(g1, sc->eta));
    }
    if (sc->algorithm == FP_ALGO_SCALLION) {
        if (isnan(sc->alpha))
            FP__ADD("alpha = auto\n");
        else
            FP__ADD("alpha = %s\n", fp__g(g1, sc->alpha));
    }
    if (sc->algorithm == FP_ALGO_SCAFCOM)
        FP__ADD("beta = %s\n", fp__g(g1, sc->beta));
    FP__ADD("\n[participation]\nsample = %u\n", sc->sample);
    /* Only when set: a scenario without them keeps the canonical text (and
     * so the scenario hash) it had before these keys existed. */
    if (sc->deadline > 0)
        FP__ADD("deadline = %s\nmin_updates = %u\nwait_after_min = %s\n",
                fp__seconds(g1, sc->deadline), sc->min_updates,
                fp__seconds(g2, sc->wait_after_min));
    /* likewise only when used: dropout = 0 is the run without the key */
    if (sc->dropout > 0)
        FP__ADD("dropout = %s\n", fp__g(g1, sc->dropout));
    if (sc->straggler == FP_STRAGGLER_LOGNORMAL) {
        FP__ADD("straggler = lognormal:%s", fp__g(g1, sc->straggler_sigma));
        if (sc->straggler_jitter > 0)
            FP__ADD(":%s", fp__g(g1, sc->straggler_jitter));
        FP__ADD("\nanswer_time = %s\n", fp__seconds(g2, sc->answer_time));
    }
    {
        char cname[64];
        FP__ADD("\n[compressor]\nname = %s\n", fp_comp_name(&sc->uplink, cname, sizeof cname));
        enum fp_comp_kind ck = sc->uplink.kind;
        if ((ck == FP_COMP_TOPK || ck == FP_COMP_RANDK || ck == FP_COMP_TOPK_QSGD) &&
            sc->uplink.count)
            FP__ADD("k = %llu\n", (unsigned long long)sc->uplink.count);
        else if (ck == FP_COMP_TOPK || ck == FP_COMP_RANDK || ck == FP_COMP_TOPK_QSGD)
            FP__ADD("ratio = %s\n", fp__g(g1, sc->uplink.ratio));
        /* only for the methods that compress the broadcast: every other
         * scenario keeps its canonical text */
        if (fp_algo_is_vi(sc->algorithm) ||
            (sc->algorithm == FP_ALGO_EF21 && sc->downlink.kind != FP_COMP_IDENTITY)) {
            const enum fp_comp_kind dk = sc->downlink.kind;
            FP__ADD("downlink = %s\n", fp_comp_name(&sc->downlink, cname, sizeof cname));
            if (!(ck == FP_COMP_TOPK || ck == FP_COMP_RANDK || ck == FP_COMP_TOPK_QSGD) &&
                (dk == FP_COMP_TOPK || dk == FP_COMP_RANDK || dk == FP_COMP_TOPK_QSGD)) {
                if (sc->uplink.count)
                    FP__ADD("k = %llu\n", (unsigned long long)sc->uplink.count);
                else
                    FP__ADD("ratio = %s\n", fp__g(g1, sc->uplink.ratio));
            }
        }
    }
#undef FP__ADD
    if (n < 0 || (size_t)n >= cap) {
        free(buf);
        return NULL;
    }
    return buf;
}

const char *fp_algo_name(enum fp_algo_kind a)
{
    switch (a) {
    case FP_ALGO_FEDAVG: return "fedavg";
    case FP_ALGO_SCAFFOLD: return "scaffold";
    case FP_ALGO_FEDPAQ: return "fedpaq";
    case FP_ALGO_FEDEF: return "fedef";
    case FP_ALGO_SCALLION: return "scallion";
    case FP_ALGO_SCAFCOM: return "scafcom";
    case FP_ALGO_EF21: return "ef21";
    case FP_ALGO_EF21W: return "ef21-w";
    case FP_ALGO_ECONTROL: return "econtrol";
    case FP_ALGO_EF14: return "ef14";
    case FP_ALGO_EG: return "eg";
    case FP_ALGO_EG_NAIVE: return "eg-naive";
    case FP_ALGO_MASHA1: return "masha1";
    case FP_ALGO_MASHA2: return "masha2";
    }
    return "?";
}

const char *fp_comp_name(const struct fp_comp_spec *c, char *buf, size_t n)
{
    switch (c->kind) {
    case FP_COMP_IDENTITY: snprintf(buf, n, "identity"); break;
    case FP_COMP_TOPK: snprintf(buf, n, "topk"); break;
    case FP_COMP_RANDK: snprintf(buf, n, "randk"); break;
    case FP_COMP_SIGN: snprintf(buf, n, "sign"); break;
    case FP_COMP_QSGD: snprintf(buf, n, "qsgd:%u", c->levels); break;
    case FP_COMP_TOPK_QSGD: snprintf(buf, n, "topk+qsgd:%u", c->levels); break;
    default: snprintf(buf, n, "?"); break;
    }
    return buf;
}

const char *fp_dataset_name(enum fp_dataset_kind d)
{
    switch (d) {
    case FP_DATA_FMNIST: return "fashion-mnist";
    case FP_DATA_SYNTHETIC: return "synthetic";
    case FP_DATA_QUADRATIC: return "quadratic";
    case FP_DATA_LSQ: return "lsq";
    case FP_DATA_BILINEAR: return "bilinear";
    case FP_DATA_ROBUST_LSQ: return "robust-lsq";
    }
    return "?";
}

const char *fp_model_name(enum fp_model_kind m)
{
    switch (m) {
    case FP_MODEL_LOGREG: return "logreg";
    case FP_MODEL_MLP: return "mlp";
    case FP_MODEL_QUADRATIC: return "quadratic";
    }
    return "?";
}
