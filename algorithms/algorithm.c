/*
 * algorithms/algorithm.c — FedAvg, FedPAQ, FedEF, SCAFFOLD (halved uplink),
 * SCALLION, SCAFCOM, and the error-feedback family EF21, EF21-W, EControl
 * and EF14.
 *
 * References:
 *   [KKM+20] Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging
 *            for Federated Learning", ICML 2020, Algorithm 1, option II.
 *   [HLL24]  Huang, Li, Li, "Stochastic Controlled Averaging for Federated
 *            Learning with Communication Compression", ICLR 2024: SCAFFOLD
 *            with one uploaded vector, SCALLION (unbiased C, Alg. 1) and
 *            SCAFCOM (contractive C with local momentum, Alg. 2).
 *   [MMR+17] McMahan et al., "Communication-Efficient Learning of Deep
 *            Networks from Decentralized Data" (FedAvg).
 *   [RMH+20] Reisizadeh et al., "FedPAQ", AISTATS 2020.
 *   [SCJ18]  Stich, Cordonnier, Jaggi, "Sparsified SGD with Memory" (EF14),
 *            applied to the model delta as FedEF (Li & Li 2023).
 *   [RSF21]  Richtarik, Sokolov, Fatkhullin, "EF21: A New, Simpler,
 *            Theoretically Better, and Practically Faster Error Feedback",
 *            NeurIPS 2021, Algorithm 1 (Theorem 1 for the step).
 *   [FSR+21] Fatkhullin, Sokolov, Gorbunov, Li, Richtarik, "EF21 with Bells
 *            & Whistles", 2021: EF21-PP (partial participation), EF21-SGD,
 *            EF21-BC (the broadcast compressed, error feedback on the
 *            clients' model estimate w; our reading, docs/algorithms.md).
 *   [RGB24]  Richtarik, Gasanov, Burlachenko, "Error Feedback Reloaded: From
 *            Quadratic to Arithmetic Mean of Smoothness Constants", ICLR
 *            2024: EF21-W.
 *   [GIS24]  Gao, Islamov, Stich, "EControl: Fast Distributed Optimization
 *            with Compression and Error Control", ICLR 2024.
 *
 * The rules are pinned in docs/algorithms.md. Notation: x global model, c
 * global control variate, c_i client i's, eta_l / eta_g local / global step,
 * K local steps, gamma = eta_g eta_l K, S participants, N population, C the
 * uplink compressor, alpha (SCALLION) and beta (SCAFCOM).
 */
#include "algorithm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/registry.h"
#include "vi.h"

struct fp_algorithm {
    const char *name;
    int scaffold_family; /* local steps corrected by (c - c_i); server keeps c */
    int client_memory;   /* keeps mem (FedEF e_i, SCAFCOM w_i, EF14 and EControl e_i) */
    /* EF21 family: the client keeps h_i (in ci), the server g = sum_i w_i h_i
     * (in c) and steps x <- x - gamma g; the first round's upload is dense */
    int grad_diff;
    int one_gradient; /* one gradient at x per round instead of K local steps */
    /* Computes the vector to compress into msg from x, c and y (y^K, or
     * for one_gradient algorithms the gradient at x). May write next's
     * vectors (scratch until the commit) for client_after to finish. */
    void (*client_message)(const struct fp_algo_params *p, uint32_t client, const float *x,
                           const float *c, const float *y, const struct fp_client_state *cs,
                           struct fp_client_state *next, float *msg);
    /* The client's next state from its current one (cs) and vhat = C(msg),
     * exactly what the server decodes: written into next, which becomes
     * current only when the server includes the upload
     * (fp_algo_client_commit). Every vector of next is written whole. */
    void (*client_after)(const struct fp_algo_params *p, const float *msg, const float *vhat,
                         const struct fp_client_state *cs, struct fp_client_state *next);
};

/* ---- FedAvg family: the message is the model delta Delta_i = x - y^K ---- */

static void fp__delta_message(const struct fp_algo_params *p, uint32_t client, const float *x,
                              const float *c, const float *y, const struct fp_client_state *cs,
                              struct fp_client_state *next, float *msg)
{
    (void)client, (void)c, (void)cs, (void)next;
    for (size_t j = 0; j < p->d; j++)
        msg[j] = x[j] - y[j];
}

/* FedEF [SCJ18 on Delta]: delta_i = C(Delta_i + e_i), e_i <- Delta_i + e_i - delta_i. */
static void fp__fedef_message(const struct fp_algo_params *p, uint32_t client, const float *x,
                              const float *c, const float *y, const struct fp_client_state *cs,
                              struct fp_client_state *next, float *msg)
{
    (void)client, (void)c, (void)next;
    const float *e = cs->mem;
    for (size_t j = 0; j < p->d; j++)
        msg[j] = (x[j] - y[j]) + e[j];
}

static void fp__fedef_after(const struct fp_algo_params *p, const float *msg, const float *vhat,
                            const struct fp_client_state *cs, struct fp_client_state *next)
{
    (void)cs;
    float *e = next->mem;
    for (size_t j = 0; j < p->d; j++)
        e[j] = msg[j] - vhat[j];
}

/* ---- SCAFFOLD family ----
 * u_i = (x - y^K) / (eta_l K), the mean corrected local gradient.
 * SCAFFOLD / SCALLION [HLL24 Alg. 1]: the client compresses u_i - c.
 * (With C = identity this is [KKM+20] option II: c_i+ = c_i - c + u_i, so
 * Delta c_i = u_i - c, and x + eta_g mean(Delta y_i) = x - gamma (c + mean
 * delta_i): one vector carries both of [KKM+20]'s uploads.) */
static void fp__scaffold_message(const struct fp_algo_params *p, uint32_t client, const float *x,
                                 const float *c, const float *y, const struct fp_client_state *cs,
                                 struct fp_client_state *next, float *msg)
{
    (void)client, (void)cs, (void)next;
    const float inv = 1.0f / (p->lr_local * (float)p->K);
    for (size_t j = 0; j < p->d; j++)
        msg[j] = (x[j] - y[j]) * inv - c[j];
}

/* c_i <- c_i + alpha delta_i; alpha = 1 for SCAFFOLD, and 1.0f * v == v
 * exactly, so SCALLION with identity and alpha = 1 is SCAFFOLD bit for bit. */
static void fp__scaffold_after(const struct fp_algo_params *p, const float *msg, const float *vhat,
                               const struct fp_client_state *cs, struct fp_client_state *next)
{
    (void)msg;
    const float a = p->alpha;
    for (size_t j = 0; j < p->d; j++)
        next->ci[j] = cs->ci[j] + a * vhat[j];
}

/*
 * SCAFCOM [HLL24 Alg. 2]: m_i = u_i + c_i - c;  v_i <- (1 - beta) v_i + beta m_i;
 * delta_i = C(v_i - c_i);  c_i <- c_i + delta_i.
 * We keep w_i = v_i - c_i instead of v_i. Substituting,
 *   w_i <- (1 - beta) w_i + beta (u_i - c);  delta_i = C(w_i);  w_i <- w_i - delta_i
 * (the last because c_i grows by delta_i while v_i stays), and c_i <- c_i + delta_i.
 * Same mathematics, and with beta = 1 the message is u_i - c computed exactly
 * as SCAFFOLD computes it, so SCAFCOM(identity, beta = 1) is SCAFFOLD bit for
 * bit; the v_i form would differ by rounding ((u + c_i - c) - c_i != u - c).
 * It also shows SCAFCOM as momentum plus error feedback on the message.
 */
/* msg is the new w_i before the error-feedback step; state changes only in
 * fp__scafcom_after, once the message is known to be finite and encoded, so
 * a failed update leaves the client as it was. */
static void fp__scafcom_message(const struct fp_algo_params *p, uint32_t client, const float *x,
                                const float *c, const float *y, const struct fp_client_state *cs,
                                struct fp_client_state *next, float *msg)
{
    (void)client, (void)next;
    const float inv = 1.0f / (p->lr_local * (float)p->K);
    const float b = p->beta, keep = 1.0f - p->beta;
    const float *w = cs->mem;
    for (size_t j = 0; j < p->d; j++)
        msg[j] = keep * w[j] + b * ((x[j] - y[j]) * inv - c[j]);
}

/* w_i <- w_i - delta_i (with w_i = msg, the momentum step's result), c_i <- c_i + delta_i. */
static void fp__scafcom_after(const struct fp_algo_params *p, const float *msg, const float *vhat,
                              const struct fp_client_state *cs, struct fp_client_state *next)
{
    for (size_t j = 0; j < p->d; j++) {
        next->mem[j] = msg[j] - vhat[j];
        next->ci[j] = cs->ci[j] + vhat[j];
    }
}

/* ---- the error-feedback family: one gradient g_i at the broadcast x ----
 * A round of the EF21 family is one step of [RSF21] Alg. 1: the server
 * broadcasts x^{t+1} = x^t - gamma g^t (applied when round t ended), each
 * client answers c_i = C(grad f_i(x^{t+1}) - h_i) and sets h_i += c_i, the
 * server g += sum_S w_i c_i (w_i = 1/N). h_i starts at 0 and the first
 * round's upload is dense (identity), so after round 1 h_i = grad f_i(x^0)
 * and g = (1/N) sum h_i, [RSF21]'s initialisation; a client first sampled
 * later (partial participation, EF21-PP [FSR+21]) starts from h_i = 0,
 * which EF21-PP's arbitrary g_i^0 allows. The server divides by N, not S,
 * so g = sum_i w_i h_i holds after every round, as c = (1/N) sum c_i does
 * for SCAFFOLD. */

/* EF21 / EF21-W: msg = grad f_i(x)/(N w_i) - h_i [RGB24]; scale = 1 for EF21. */
static void fp__ef21_message(const struct fp_algo_params *p, uint32_t client, const float *x,
                             const float *c, const float *g, const struct fp_client_state *cs,
                             struct fp_client_state *next, float *msg)
{
    (void)x, (void)c, (void)next;
    double w;
    float scale;
    fp_algo_ef_weight(p, client, &w, &scale);
    const float *h = cs->ci;
    for (size_t j = 0; j < p->d; j++)
        msg[j] = scale * g[j] - h[j];
}

/* h_i <- h_i + C(msg) */
static void fp__ef21_after(const struct fp_algo_params *p, const float *msg, const float *vhat,
                           const struct fp_client_state *cs, struct fp_client_state *next)
{
    (void)msg;
    for (size_t j = 0; j < p->d; j++)
        next->ci[j] = cs->ci[j] + vhat[j];
}

/* EControl [GIS24]: Delta_i = C(eta e_i + g_i - h_i); e_i += g_i - h_i -
 * Delta_i; h_i += Delta_i. e_i + (g_i - h_i) goes to next here and loses
 * Delta_i in fp__econtrol_after. With eta = 0 the message is g_i - h_i as
 * EF21 computes it (not 0 e_i + (g_i - h_i), which can turn a -0 into +0):
 * EControl(eta = 0) is EF21 bit for bit. */
static void fp__econtrol_message(const struct fp_algo_params *p, uint32_t client, const float *x,
                                 const float *c, const float *g, const struct fp_client_state *cs,
                                 struct fp_client_state *next, float *msg)
{
    (void)client, (void)x, (void)c;
    const float *h = cs->ci, *e = cs->mem;
    const float eta = (float)p->eta;
    for (size_t j = 0; j < p->d; j++) {
        const float t = g[j] - h[j];
        next->mem[j] = e[j] + t;
        msg[j] = eta != 0 ? eta * e[j] + t : t;
    }
}

static void fp__econtrol_after(const struct fp_algo_params *p, const float *msg, const float *vhat,
                               const struct fp_client_state *cs, struct fp_client_state *next)
{
    (void)msg;
    for (size_t j = 0; j < p->d; j++) {
        next->mem[j] -= vhat[j];
        next->ci[j] = cs->ci[j] + vhat[j];
    }
}

/* EF14 [SCJ18] in the distributed form EF21's papers compare against:
 * delta_i = C(e_i + gamma g_i), e_i <- e_i + gamma g_i - delta_i (FedEF's
 * client_after), x <- x - (1/S) sum_S delta_i. */
static void fp__ef14_message(const struct fp_algo_params *p, uint32_t client, const float *x,
                             const float *c, const float *g, const struct fp_client_state *cs,
                             struct fp_client_state *next, float *msg)
{
    (void)client, (void)x, (void)c, (void)next;
    const float gamma = (float)p->gamma, *e = cs->mem;
    for (size_t j = 0; j < p->d; j++)
        msg[j] = e[j] + gamma * g[j];
}

static const struct fp_algorithm fp__algos[] = {
    [FP_ALGO_FEDAVG] = {"fedavg", 0, 0, 0, 0, fp__delta_message, NULL},
    [FP_ALGO_FEDPAQ] = {"fedpaq", 0, 0, 0, 0, fp__delta_message, NULL},
    [FP_ALGO_FEDEF] = {"fedef", 0, 1, 0, 0, fp__fedef_message, fp__fedef_after},
    [FP_ALGO_SCAFFOLD] = {"scaffold", 1, 0, 0, 0, fp__scaffold_message, fp__scaffold_after},
    [FP_ALGO_SCALLION] = {"scallion", 1, 0, 0, 0, fp__scaffold_message, fp__scaffold_after},
    [FP_ALGO_SCAFCOM] = {"scafcom", 1, 1, 0, 0, fp__scafcom_message, fp__scafcom_after},
    [FP_ALGO_EF21] = {"ef21", 0, 0, 1, 1, fp__ef21_message, fp__ef21_after},
    [FP_ALGO_EF21W] = {"ef21-w", 0, 0, 1, 1, fp__ef21_message, fp__ef21_after},
    [FP_ALGO_ECONTROL] = {"econtrol", 0, 1, 1, 1, fp__econtrol_message, fp__econtrol_after},
    [FP_ALGO_EF14] = {"ef14", 0, 1, 0, 1, fp__ef14_message, fp__fedef_after},
    /* the VI methods run in vi.c; the entries name them for the checks here */
    [FP_ALGO_EG] = {"eg", 0, 0, 0, 0, NULL, NULL},
    [FP_ALGO_EG_NAIVE] = {"eg-naive", 0, 0, 0, 0, NULL, NULL},
    [FP_ALGO_MASHA1] = {"masha1", 0, 0, 0, 0, NULL, NULL},
    [FP_ALGO_MASHA2] = {"masha2", 0, 0, 0, 0, NULL, NULL},
};

static const struct fp_algorithm *fp__lookup(enum fp_algo_kind k)
{
    if ((size_t)k >= sizeof fp__algos / sizeof fp__algos[0] || !fp__algos[k].name)
        return NULL;
    return &fp__algos[k];
}

double fp_algo_ef_theory_step(enum fp_algo_kind kind, double L, double L_qm, double L_am, double a)
{
    /* [RSF21] Theorem 1; [RGB24] replaces L_QM by L_AM for EF21-W */
    const double r = sqrt(1 - a), theta = 1 - r, beta = a < 1 ? (1 - a) / (1 - r) : 0;
    const double Lt = kind == FP_ALGO_EF21W ? L_am : L_qm;
    return 1 / (L + Lt * sqrt(beta / theta));
}

void fp_algo_ef_weight(const struct fp_algo_params *p, uint32_t client, double *w, float *scale)
{
    if (p->kind != FP_ALGO_EF21W) {
        *w = 1.0 / p->N;
        *scale = 1.0f;
        return;
    }
    /* [RGB24]: w_i = L_i / sum_j L_j; the client sends grad/(N w_i) - h_i,
     * with 1/(N w_i) = sum_j L_j / (N L_i): exactly 1 when every L_i is
     * equal, so EF21-W is then EF21 bit for bit. */
    const double Li = fp_lsq_law(p->kappa, p->N, client);
    *w = Li / p->Lsum;
    *scale = (float)(p->Lsum / (p->N * Li));
}

/* The EF family's step and parameters: gamma from [algorithm] step (or the
 * theory, with L from the data and L_i from the lsq law), EControl's eta
 * (auto: alpha/400, [GIS24]'s theory value), EF21-W's sum of L_i. */
static int fp__ef_params(struct fp_algo_params *p, const struct fp_scenario *sc, double q,
                         struct fp_error *err)
{
    p->lr_global = 1.0f; /* EF14's server: x <- x - (1/S) sum delta_i */
    /* alpha: the uplink's contraction; identity (class unbiased, q unset
     * there) contracts fully, alpha = 1, and then the theory step is 1/L */
    const double a = p->up.kind == FP_COMP_IDENTITY ? 1.0 : q;
    if (!(a > 0 && a <= 1))
        return fp_error_set(err, FP_EINVAL,
                            "%s: the uplink compressor's contraction alpha = %g is not in (0, 1]",
                            fp_algo_name(p->kind), a);
    p->eta = isnan(sc->eta) ? a / 400 : sc->eta;
    const int lsq = sc->dataset == FP_DATA_LSQ;
    p->kappa = lsq ? sc->lsq_ratio : 1.0;
    double sum = 0, sum2 = 0;
    for (uint32_t i = 0; i < p->N; i++) {
        const double Li = fp_lsq_law(p->kappa, p->N, i);
        sum += Li;
        sum2 += Li * Li;
    }
    p->Lsum = sum;
    if (!isnan(sc->step)) {
        p->gamma = sc->step;
        return 0;
    }
    if (!lsq)
        return fp_error_set(err, FP_EINVAL,
                            "%s: step = theory needs the clients' smoothness constants, which "
                            "only dataset lsq defines; set a numeric [algorithm] step",
                            fp_algo_name(p->kind));
    double L;
    int rc = fp_lsq_smoothness_of_f(sc, &L, err);
    if (rc)
        return rc;
    p->gamma =
        sc->step_scale * fp_algo_ef_theory_step(p->kind, L, sqrt(sum2 / p->N), sum / p->N, a);
    return 0;
}

int fp_algo_params_from(struct fp_algo_params *p, const struct fp_scenario *sc, size_t d,
                        struct fp_error *err)
{
    memset(p, 0, sizeof *p);
    p->kind = sc->algorithm;
    p->d = d;
    p->N = sc->clients;
    p->K = sc->local_steps;
    p->batch = sc->batch;
    p->lr_local = (float)sc->lr_local;
    p->lr_global = (float)sc->lr_global;
    p->alpha = 1.0f;
    p->beta = (float)sc->beta;
    p->seed = sc->seed;
    int rc = fp_algo_params_compressors(p, &sc->uplink, err);
    if (rc)
        return rc;
    /* [HLL24]: alpha = 1/(1 + omega) unless set. */
    double omega = 0, q = 1;
    fp_compressor_unbiased(&p->up, &omega, &q);
    if (p->kind == FP_ALGO_SCALLION)
        p->alpha = isnan(sc->alpha) ? (float)(1.0 / (1.0 + omega)) : (float)sc->alpha;
    if (fp_algo_is_vi(p->kind))
        return fp_vi_params(p, sc, err);
    if (p->kind == FP_ALGO_EF21 && sc->downlink.kind != FP_COMP_IDENTITY) {
        /* EF21-BC: the broadcast compressed by [compressor] downlink */
        if ((rc = fp_compressor_init(&p->down, &sc->downlink, p->d, err)))
            return rc;
        p->bc = 1;
    }
    return fp_algo_is_ef(p->kind) ? fp__ef_params(p, sc, q, err) : 0;
}

int fp_algo_params_compressors(struct fp_algo_params *p, const struct fp_comp_spec *uplink,
                               struct fp_error *err)
{
    if (!fp__lookup(p->kind))
        return fp_error_set(err, FP_EINVAL, "unknown algorithm %d", (int)p->kind);
    int rc = fp_compressor_init(&p->up, uplink, p->d, err);
    if (rc)
        return rc;
    /* The class rules live in the registry, so every driver gets them; the
     * scenario parser checks them first only to point at the line. */
    char why[256];
    if (fp_algo_comp_misfit(p->kind, FP_UPLINK, uplink, why, sizeof why))
        return fp_error_set(err, FP_EINVAL, "%s", why);
    const struct fp_comp_spec down = fp_algo_downlink(p->kind), dense = {.kind = FP_COMP_IDENTITY};
    if ((rc = fp_compressor_init(&p->down, &down, p->d, err)))
        return rc;
    return fp_compressor_init(&p->dense, &dense, p->d, err);
}

/* Whether the server keeps a second vector c (SCAFFOLD's c, EF21's g) and
 * the client ci (c_i, h_i). */
static int fp__keeps_c(const struct fp_algorithm *a)
{
    return a->scaffold_family || a->grad_diff;
}

/* The compressor of exchange (round, phase)'s uploads, and its workspace
 * among up (cws) and dense (nws): the EF21 family's first round is dense,
 * so that h_i = grad f_i(x^0) exactly [RSF21]. */
static const struct fp_compressor *fp__upc(const struct fp_algo_params *p, uint32_t round,
                                           void *cws, void *nws, void **ws)
{
    const struct fp_algorithm *a = fp__lookup(p->kind);
    if (a && a->grad_diff && round == 1) {
        *ws = nws;
        return &p->dense;
    }
    *ws = cws;
    return &p->up;
}

/* The broadcast's compressor and its workspace among down (dws) and
 * dense (nws): EF21-BC's first broadcast is dense, so that every client
 * starts from w = x^0 exactly (the paper's shared w^0 = x^0); every other
 * broadcast of a single-exchange algorithm is encoded by down. */
static const struct fp_compressor *fp__downc(const struct fp_algo_params *p, uint32_t round,
                                             void *dws, void *nws, void **ws)
{
    if (p->bc && round == 1) {
        *ws = nws;
        return &p->dense;
    }
    *ws = dws;
    return &p->down;
}

int fp_algo_has_control(const struct fp_algo_params *p)
{
    const struct fp_algorithm *a = fp__lookup(p->kind);
    return a && a->scaffold_family;
}

/* ---- exchanges ----
 * Every algorithm here has one exchange per round: phase 0 broadcasts x
 * (and c for the SCAFFOLD family), each vector encoded by the downlink
 * compressor (identity: 4d bytes, today's full-precision broadcast), and
 * takes back one vector encoded by the uplink compressor. */

int fp_algo_server_phase(const struct fp_server *s, uint32_t round, unsigned phase)
{
    if (fp_algo_is_vi(s->p.kind))
        return fp_vi_phase(&s->p, round, phase);
    return phase == 0;
}

/* x, and c for the SCAFFOLD family (the EF21 family's g stays on the
 * server: the clients need only x). */
static unsigned fp__broadcast_vectors(const struct fp_algo_params *p)
{
    return fp_algo_has_control(p) ? 2 : 1;
}

/* Every algorithm sends the same broadcast in every round and phase; the
 * EF21 family's first upload is dense (fp__upc), so upload sizes answer by
 * round, and the caps below are the largest of any. */
size_t fp_algo_broadcast_bytes(const struct fp_algo_params *p, uint32_t round, unsigned phase)
{
    if (fp_algo_is_vi(p->kind))
        return fp_vi_broadcast_bytes(p, round, phase);
    void *ws;
    return fp__broadcast_vectors(p) * fp_compressor_bytes(fp__downc(p, round, NULL, NULL, &ws));
}

size_t fp_algo_upload_bytes(const struct fp_algo_params *p, uint32_t round, unsigned phase)
{
    if (fp_algo_is_vi(p->kind))
        return fp_vi_upload_bytes(p, round, phase);
    void *ws;
    return fp_compressor_bytes(fp__upc(p, round, NULL, NULL, &ws));
}

size_t fp_algo_broadcast_cap(const struct fp_algo_params *p)
{
    if (fp_algo_is_vi(p->kind))
        return fp_vi_cap(p);
    /* round 1 is EF21-BC's dense one; every later round is alike */
    const size_t first = fp_algo_broadcast_bytes(p, 1, 0), later = fp_algo_broadcast_bytes(p, 2, 0);
    return FP_MSG_HEADER + (first > later ? first : later);
}

size_t fp_algo_upload_cap(const struct fp_algo_params *p)
{
    if (fp_algo_is_vi(p->kind))
        return fp_vi_cap(p);
    /* round 1 is the EF21 family's dense one; every later round is alike */
    const size_t first = fp_algo_upload_bytes(p, 1, 0), later = fp_algo_upload_bytes(p, 2, 0);
    return FP_MSG_HEADER + (first > later ? first : later);
}

int fp_server_init(struct fp_server *s, const struct fp_algo_params *p, struct fp_error *err)
{
    memset(s, 0, sizeof *s);
    s->p = *p;
    s->alg = fp__lookup(p->kind);
    if (!s->alg)
        return fp_error_set(err, FP_EINVAL, "unknown algorithm %d", (int)p->kind);
    s->x = calloc(p->d, sizeof *s->x);
    s->sum = calloc(p->d, sizeof *s->sum);
    s->dec = calloc(p->d, sizeof *s->dec);
    s->cws = fp_compressor_ws_new(&p->up);
    s->dws = fp_compressor_ws_new(&p->down);
    s->nws = fp_compressor_ws_new(&p->dense);
    if (fp__keeps_c(s->alg))
        s->c = calloc(p->d, sizeof *s->c);
    const int vi = fp_algo_is_vi(p->kind);
    if (vi) {
        s->vi = calloc(FP_VI_SERVER_VECTORS * p->d, sizeof *s->vi);
        s->vbuf = malloc(fp_compressor_bytes(&p->down));
        s->vi_snap = malloc((1 + FP_VI_SERVER_VECTORS) * p->d * sizeof *s->vi_snap);
    }
    if (p->bc) {
        s->bw = calloc(p->d, sizeof *s->bw);
        s->bwn = calloc(p->d, sizeof *s->bwn);
    }
    if (!s->x || !s->sum || !s->dec || !s->cws || !s->dws || !s->nws ||
        (fp__keeps_c(s->alg) && !s->c) || (vi && (!s->vi || !s->vbuf || !s->vi_snap)) ||
        (p->bc && (!s->bw || !s->bwn))) {
        fp_server_free(s);
        return fp_error_set(err, FP_ENOMEM, "out of memory for the server state (d = %zu)", p->d);
    }
    return 0;
}

void fp_server_free(struct fp_server *s)
{
    free(s->x);
    free(s->c);
    free(s->sum);
    free(s->dec);
    free(s->vi);
    free(s->vbuf);
    free(s->vi_snap);
    free(s->bw);
    free(s->bwn);
    s->vi = s->vi_snap = s->bw = s->bwn = NULL;
    s->vbuf = NULL;
    if (s->cws)
        fp_compressor_ws_free(&s->p.up, s->cws);
    if (s->dws)
        fp_compressor_ws_free(&s->p.down, s->dws);
    if (s->nws)
        fp_compressor_ws_free(&s->p.dense, s->nws);
    s->x = s->c = s->dec = NULL;
    s->sum = NULL;
    s->cws = s->dws = s->nws = NULL;
}

int fp_algo_ws_init(struct fp_algo_ws *ws, const struct fp_algo_params *p)
{
    memset(ws, 0, sizeof *ws);
    ws->y = malloc(p->d * sizeof(float));
    ws->g = malloc(p->d * sizeof(float));
    ws->msg = malloc(p->d * sizeof(float));
    ws->vhat = malloc(p->d * sizeof(float));
    ws->bx = malloc(p->d * sizeof(float));
    ws->bc = malloc(p->d * sizeof(float));
    ws->zero = calloc(p->d, sizeof(float));
    ws->cws = fp_compressor_ws_new(&p->up);
    ws->dws = fp_compressor_ws_new(&p->down);
    ws->nws = fp_compressor_ws_new(&p->dense);
    if (!ws->y || !ws->g || !ws->msg || !ws->vhat || !ws->bx || !ws->bc || !ws->zero || !ws->cws ||
        !ws->dws || !ws->nws) {
        fp_algo_ws_free(ws, p);
        return FP_ENOMEM;
    }
    return 0;
}

void fp_algo_ws_free(struct fp_algo_ws *ws, const struct fp_algo_params *p)
{
    free(ws->y);
    free(ws->g);
    free(ws->msg);
    free(ws->vhat);
    free(ws->bx);
    free(ws->bc);
    free(ws->zero);
    if (ws->cws)
        fp_compressor_ws_free(&p->up, ws->cws);
    if (ws->dws)
        fp_compressor_ws_free(&p->down, ws->dws);
    if (ws->nws)
        fp_compressor_ws_free(&p->dense, ws->nws);
    memset(ws, 0, sizeof *ws);
}

void fp_client_state_free(struct fp_client_state *cs)
{
    free(cs->ci);
    free(cs->mem);
    free(cs->vi);
    free(cs->bw);
    cs->ci = cs->mem = cs->vi = cs->bw = NULL;
}

/* ---- random streams of an exchange ----
 * Every draw of an exchange is keyed by (seed, round, who, purpose) and by
 * its phase, and a broadcast's vectors each have their own stream: with a
 * random downlink compressor (MASHA's Q_s) x and c, or two phases of one
 * round, must not share a rand-k mask. Phase 0 (and a broadcast's first
 * vector) keep the keys fedpress always used, so no result changes; later
 * phases put the phase above the 32-bit client id, a broadcast's later
 * vectors count down from FP_RNG_NO_CLIENT, far above any client id. */
static void fp__client_rng(fp_rng *r, const struct fp_algo_params *p, uint32_t round,
                           uint32_t client, unsigned phase, enum fp_purpose purpose)
{
    fp_rng_seed(r, p->seed, round, (uint64_t)client | (uint64_t)phase << 32, purpose);
}

static void fp__down_rng(fp_rng *r, const struct fp_algo_params *p, uint32_t round, unsigned phase,
                         size_t v)
{
    fp_rng_seed(r, p->seed, round, FP_RNG_NO_CLIENT - ((uint64_t)phase << 8 | v), FP_RNG_COMPRESS);
}

/* The broadcast's vectors, decoded into ws->bx (and ws->bc). */
static int fp__client_receive(const struct fp_algo_params *p, const struct fp_msg_header *who,
                              const uint8_t *bcast, size_t bcast_len, struct fp_algo_ws *ws,
                              struct fp_error *err)
{
    struct fp_msg_header h;
    if (bcast_len < FP_MSG_HEADER)
        return fp_error_set(err, FP_EFORMAT, "broadcast of %zu bytes, shorter than its header",
                            bcast_len);
    void *dws;
    const struct fp_compressor *dc = fp__downc(p, who->round, ws->dws, ws->nws, &dws);
    const size_t vb = fp_compressor_bytes(dc), n = fp__broadcast_vectors(p);
    /* the exchange the client takes part in, to the byte count */
    const struct fp_msg_header expect = {.type = FP_MSG_BROADCAST,
                                         .phase = who->phase,
                                         .client = FP_MSG_ALL,
                                         .run = who->run,
                                         .round = who->round,
                                         .len = fp_algo_broadcast_bytes(p, who->round, who->phase)};
    int rc = fp_msg_decode_header(bcast, &h, err);
    if (!rc)
        rc = fp_msg_check(&h, &expect, 0, err);
    if (rc)
        return rc;
    if (h.len != bcast_len - FP_MSG_HEADER)
        return fp_error_set(err, FP_EFORMAT, "broadcast of %zu payload bytes, its header says %zu",
                            bcast_len - FP_MSG_HEADER, n * vb);
    const uint8_t *in = bcast + FP_MSG_HEADER;
    float *dst[2] = {ws->bx, ws->bc};
    for (size_t v = 0; v < n; v++) {
        /* the downlink's stream: keyed by the round, for no client */
        fp_rng drng;
        fp__down_rng(&drng, p, who->round, who->phase, v);
        if (fp_compressor_decompress(dc, in + v * vb, vb, &drng, dws, dst[v]))
            return fp_error_set(err, FP_EFORMAT, "round %u: the broadcast does not decode",
                                who->round);
    }
    return 0;
}

/* The K local steps from y^0 = x: SGD, corrected by (c - c_i) for the
 * SCAFFOLD family; *loss_sum = the sum of the K minibatch losses. */
static void fp__local_steps(const struct fp_algo_params *p, const struct fp_algorithm *a,
                            const struct fp_workload *w, void *wws, uint32_t client, const float *x,
                            const float *c, const struct fp_client_state *cur, fp_rng *rng,
                            float *y, float *g, double *loss_sum)
{
    const size_t d = p->d;
    const float lr = p->lr_local;
    memcpy(y, x, d * sizeof *y); /* y^0 = x */
    for (uint32_t k = 0; k < p->K; k++) {
        double loss;
        w->ops->grad(w, wws, client, y, p->batch, rng, g, &loss);
        *loss_sum += loss;
        if (a->scaffold_family) {
            /* [KKM+20] eq. (3): y <- y - eta_l (g_i(y) - c_i + c) */
            const float *ci = cur->ci;
            for (size_t j = 0; j < d; j++)
                y[j] -= lr * (g[j] - ci[j] + c[j]);
        } else {
            for (size_t j = 0; j < d; j++)
                y[j] -= lr * g[j];
        }
    }
}

/* Checks ws->msg, compresses it with the exchange's uplink compressor into
 * out, and lets the algorithm finish next from C(msg). */
static int fp__client_send(const struct fp_algo_params *p, const struct fp_algorithm *a,
                           const struct fp_msg_header *who, const struct fp_client_state *cur,
                           struct fp_client_state *next, struct fp_algo_ws *ws, uint8_t *out,
                           size_t out_cap, size_t *out_len, double loss, double *train_loss,
                           struct fp_error *err)
{
    const size_t d = p->d;
    const uint32_t round = who->round, client = who->client;
    for (size_t j = 0; j < d; j++)
        if (!isfinite(ws->msg[j]))
            /* diverged: never let a NaN reach a compressor or the server */
            return fp_error_set(err, FP_EFORMAT, "round %u: client %u's update is not finite",
                                round, client);
    fp_rng crng;
    fp__client_rng(&crng, p, round, client, who->phase, FP_RNG_COMPRESS);
    const size_t payload = fp_algo_upload_bytes(p, round, who->phase);
    void *cws;
    const struct fp_compressor *up = fp__upc(p, round, ws->cws, ws->nws, &cws);
    int rc = fp_compressor_compress(up, ws->msg, &crng, cws, out + FP_MSG_HEADER,
                                    out_cap - FP_MSG_HEADER, ws->vhat);
    if (rc)
        return fp_error_set(err, rc, "round %u: client %u's update does not compress", round,
                            client);
    if (a->client_after)
        a->client_after(p, ws->msg, ws->vhat, cur, next);
    *out_len = fp_msg_seal(out, FP_MSG_UPLOAD, who->run, round, who->phase, client, payload);
    *train_loss = loss;
    return 0;
}

int fp_algo_client_update(const struct fp_algo_params *p, const struct fp_msg_header *who,
                          const uint8_t *bcast, size_t bcast_len, const struct fp_client_state *cs,
                          struct fp_client_state *next, const struct fp_workload *w, void *wws,
                          struct fp_algo_ws *ws, uint8_t *out, size_t out_cap, size_t *out_len,
                          double *train_loss, struct fp_error *err)
{
    if (fp_algo_is_vi(p->kind))
        return fp_vi_client_update(p, who, bcast, bcast_len, cs, next, w, wws, ws, out, out_cap,
                                   out_len, train_loss, err);
    const struct fp_algorithm *a = fp__lookup(p->kind);
    const size_t d = p->d;
    const uint32_t client = who->client;
    if (!a || out_cap < fp_algo_upload_cap(p))
        return fp_error_set(err, FP_EINVAL, "no room for the upload");
    int rc = fp__client_receive(p, who, bcast, bcast_len, ws, err);
    if (rc)
        return rc;
    const float *x = ws->bx, *c = a->scaffold_family ? ws->bc : NULL;
    if (p->bc) {
        /* EF21-BC: w <- w + C_M(x - w), the broadcast (round 1: w = x^0,
         * dense), summed as the server sums it; the gradient is taken at w */
        if (who->round > 1 && !cs->bw)
            return fp_error_set(err, FP_EFORMAT,
                                "round %u: client %u holds no copy of the server's estimate w "
                                "(it missed an earlier broadcast); ef21 with a compressed "
                                "downlink has no resync message: start the run again",
                                who->round, client);
        if (!next->bw && !(next->bw = malloc(d * sizeof *next->bw)))
            return fp_error_set(err, FP_ENOMEM, "out of memory");
        for (size_t j = 0; j < d; j++)
            next->bw[j] = who->round == 1 ? ws->bx[j] : cs->bw[j] + ws->bx[j];
        x = next->bw;
    }
    /* A never-sampled client holds zeros (c_i = e_i = v_i = 0), read from
     * ws->zero: its own state stays unallocated until a commit. */
    const struct fp_client_state cur = {.ci = cs->ci ? cs->ci : ws->zero,
                                        .mem = cs->mem ? cs->mem : ws->zero};
    if (fp__keeps_c(a) && !next->ci && !(next->ci = malloc(d * sizeof *next->ci)))
        return fp_error_set(err, FP_ENOMEM, "out of memory");
    if (a->client_memory && !next->mem && !(next->mem = malloc(d * sizeof *next->mem)))
        return fp_error_set(err, FP_ENOMEM, "out of memory");

    fp_rng rng;
    fp__client_rng(&rng, p, who->round, client, who->phase, FP_RNG_MINIBATCH);
    float *y = ws->y, *g = ws->g;
    double loss_sum = 0;
    if (a->one_gradient) {
        /* the EF family: one (stochastic, if B < the local set) gradient
         * at the broadcast x; y carries it to client_message */
        w->ops->grad(w, wws, client, x, p->batch, &rng, g, &loss_sum);
        a->client_message(p, client, x, c, g, &cur, next, ws->msg);
    } else {
        fp__local_steps(p, a, w, wws, client, x, c, &cur, &rng, y, g, &loss_sum);
        a->client_message(p, client, x, c, y, &cur, next, ws->msg);
        loss_sum /= p->K;
    }
    return fp__client_send(p, a, who, &cur, next, ws, out, out_cap, out_len, loss_sum, train_loss,
                           err);
}

void fp_algo_client_commit(const struct fp_algo_params *p, struct fp_client_state *cs,
                           struct fp_client_state *next)
{
    /* a swap: the old vectors become the next update's scratch */
    const struct fp_algorithm *a = fp__lookup(p->kind);
    if (a && fp__keeps_c(a)) {
        float *t = cs->ci;
        cs->ci = next->ci;
        next->ci = t;
    }
    if (a && a->client_memory) {
        float *t = cs->mem;
        cs->mem = next->mem;
        next->mem = t;
    }
    if (p->bc) {
        float *t = cs->bw;
        cs->bw = next->bw;
        next->bw = t;
    }
    if (fp_algo_is_vi(p->kind)) {
        float *t = cs->vi;
        const uint64_t tag = cs->vi_tag;
        cs->vi = next->vi;
        next->vi = t;
        cs->vi_tag = next->vi_tag;
        next->vi_tag = tag;
    }
}

int fp_algo_server_broadcast(struct fp_server *s, uint64_t run, uint32_t round, unsigned phase,
                             uint8_t *out, size_t cap, size_t *len)
{
    const struct fp_algo_params *p = &s->p;
    if (fp_algo_is_vi(p->kind))
        return fp_vi_server_broadcast(s, run, round, phase, out, cap, len);
    void *dws;
    const struct fp_compressor *dc = fp__downc(p, round, s->dws, s->nws, &dws);
    const size_t vb = fp_compressor_bytes(dc), n = fp__broadcast_vectors(p);
    if (cap < FP_MSG_HEADER + fp_algo_broadcast_bytes(p, round, phase))
        return FP_EINVAL;
    if (s->bc_lost)
        return FP_EINVAL; /* a client missed the last round: its w is stale */
    const float *src[2] = {s->x, s->c};
    if (p->bc && round > 1) {
        /* EF21-BC: C_M(x - w) down; bwn = w + C_M(x - w), computed from w
         * (not bwn), so a round broadcast again sends the same bytes */
        for (size_t j = 0; j < p->d; j++)
            s->dec[j] = s->x[j] - s->bw[j];
        src[0] = s->dec;
    }
    for (size_t v = 0; v < n; v++) {
        fp_rng drng;
        fp__down_rng(&drng, p, round, phase, v);
        int rc = fp_compressor_compress(dc, src[v], &drng, dws, out + FP_MSG_HEADER + v * vb, vb,
                                        p->bc ? s->bwn : NULL);
        if (rc)
            return FP_EFORMAT; /* the cap is checked: only a non-finite x or c is refused */
    }
    if (p->bc && round > 1)
        for (size_t j = 0; j < p->d; j++)
            s->bwn[j] = s->bw[j] + s->bwn[j]; /* as every client sums it */
    *len = fp_msg_seal(out, FP_MSG_BROADCAST, run, round, (uint16_t)phase, FP_MSG_ALL, n * vb);
    s->run = run;
    s->round = round;
    s->phase = (uint16_t)phase;
    s->last_client = -1;
    s->open = 1;
    memset(s->sum, 0, p->d * sizeof *s->sum);
    return 0;
}

/* The checks every upload passes before it is decoded (fp_algo_server_add
 * and fp_algo_server_check): an exchange in progress, and a header that
 * names it, the client it came from, and the payload's length. */
static int fp__upload_header_ok(const struct fp_server *s, uint32_t client, const uint8_t *msg,
                                size_t len, struct fp_error *err)
{
    const size_t want = fp_algo_upload_bytes(&s->p, s->round, s->phase);
    if (!s->open)
        return fp_error_set(err, FP_EINVAL,
                            "upload refused from client %u: no exchange in progress (round %u's "
                            "was finished)",
                            client, s->round);
    /* The header first: an upload is decoded only under the key it names,
     * and that must be the exchange in progress and the client it came
     * from, so an upload replayed into another round or phase, or offered
     * as another client's, is refused instead of decoded under the wrong
     * rand-k mask or QSGD stream. */
    const struct fp_msg_header expect = {.type = FP_MSG_UPLOAD,
                                         .phase = s->phase,
                                         .client = client,
                                         .run = s->run,
                                         .round = s->round,
                                         .len = want};
    struct fp_msg_header h;
    struct fp_error why = {0};
    int rc = len < FP_MSG_HEADER ? fp_error_set(&why, FP_EFORMAT,
                                                "%zu bytes, shorter than a "
                                                "message header",
                                                len)
                                 : fp_msg_decode_header(msg, &h, &why);
    if (!rc)
        rc = fp_msg_check(&h, &expect, 0, &why);
    if (!rc && h.len != len - FP_MSG_HEADER)
        rc = fp_error_set(&why, FP_EFORMAT, "%zu payload bytes where the header says %llu",
                          len - FP_MSG_HEADER, (unsigned long long)h.len);
    if (rc)
        return fp_error_set(err, FP_EFORMAT, "upload refused from client %u in round %u: %s",
                            client, s->round, why.msg);
    return 0;
}

/* Decodes a (header-checked) non-VI upload into s->dec. */
static int fp__upload_decode(struct fp_server *s, uint32_t client, const uint8_t *msg, size_t len,
                             struct fp_error *err)
{
    fp_rng crng;
    fp__client_rng(&crng, &s->p, s->round, client, s->phase, FP_RNG_COMPRESS);
    void *cws;
    const struct fp_compressor *up = fp__upc(&s->p, s->round, s->cws, s->nws, &cws);
    int rc =
        fp_compressor_decompress(up, msg + FP_MSG_HEADER, len - FP_MSG_HEADER, &crng, cws, s->dec);
    if (rc)
        return fp_error_set(err, rc,
                            "malformed upload from client %u in round %u: %zu bytes (expected "
                            "%zu) or not a valid encoding",
                            client, s->round, len - FP_MSG_HEADER,
                            fp_algo_upload_bytes(&s->p, s->round, s->phase));
    return 0;
}

int fp_algo_server_check(struct fp_server *s, uint32_t client, const uint8_t *msg, size_t len,
                         struct fp_error *err)
{
    int rc = fp__upload_header_ok(s, client, msg, len, err);
    if (rc || fp_algo_is_vi(s->p.kind))
        return rc;
    return fp__upload_decode(s, client, msg, len, err);
}

int fp_algo_server_add(struct fp_server *s, uint32_t client, const uint8_t *msg, size_t len,
                       struct fp_error *err)
{
    if (s->open && (int64_t)client <= s->last_client)
        return fp_error_set(err, FP_EINVAL,
                            "upload refused from client %u in round %u: client %lld's was added "
                            "already, and uploads are added once each in ascending client id",
                            client, s->round, (long long)s->last_client);
    int rc = fp__upload_header_ok(s, client, msg, len, err);
    if (rc)
        return rc;
    if (fp_algo_is_vi(s->p.kind)) {
        if ((rc = fp_vi_server_add(s, client, msg + FP_MSG_HEADER, len - FP_MSG_HEADER, err)))
            return rc;
        s->last_client = client;
        return 0;
    }
    if ((rc = fp__upload_decode(s, client, msg, len, err)))
        return rc;
    if (s->alg->grad_diff) {
        /* g += sum_S w_i c_i ([RSF21] Alg. 1 line 8, [RGB24] for w_i) */
        double wi;
        float scale;
        fp_algo_ef_weight(&s->p, client, &wi, &scale);
        for (size_t j = 0; j < s->p.d; j++)
            s->sum[j] += wi * s->dec[j];
    } else
        for (size_t j = 0; j < s->p.d; j++)
            s->sum[j] += s->dec[j];
    s->last_client = client;
    return 0;
}

void fp_algo_server_finish(struct fp_server *s, uint32_t S)
{
    if (!s->open) /* finished already: the aggregate must not be applied twice */
        return;
    s->open = 0;
    const size_t d = s->p.d;
    if (fp_algo_is_vi(s->p.kind)) {
        fp_vi_server_finish(s);
        return;
    }
    if (s->p.bc) {
        if (S != s->p.N) {
            /* a client's upload is missing: it did not commit the w the
             * others did; the run stops at the next broadcast */
            s->bc_lost = 1;
            return;
        }
        memcpy(s->bw, s->bwn, d * sizeof *s->bw);
    }
    if (s->alg->grad_diff) {
        /* g^{t+1} = g^t + sum_S w_i c_i, then x^{t+2} = x^{t+1} - gamma
         * g^{t+1}, the point the next round broadcasts ([RSF21] Alg. 1;
         * EF21-PP steps even when no upload arrived) */
        for (size_t j = 0; j < d; j++) {
            s->c[j] = (float)((double)s->c[j] + s->sum[j]);
            s->x[j] = (float)((double)s->x[j] - s->p.gamma * s->c[j]);
        }
        return;
    }
    if (S == 0)
        return;
    if (!s->alg->scaffold_family) {
        /* FedAvg / FedPAQ / FedEF: x <- x - eta_g (1/S) sum_S delta_i */
        const double scale = (double)s->p.lr_global / S;
        for (size_t j = 0; j < d; j++)
            s->x[j] = (float)((double)s->x[j] - scale * s->sum[j]);
        return;
    }
    /* [HLL24]: x <- x - gamma (c + (1/S) sum_S delta_i);  c <- c + (alpha/N) sum_S delta_i.
     * The model step uses the unscaled delta_i; alpha scales only the control
     * variates (SCALLION; 1 otherwise). Dividing c's update by N, not S, keeps
     * c = (1/N) sum_{all i} c_i: clients not sampled keep their c_i. */
    const double gamma = (double)s->p.lr_global * (double)s->p.lr_local * s->p.K;
    const double inv_s = 1.0 / S, cscale = (double)s->p.alpha / s->p.N;
    for (size_t j = 0; j < d; j++) {
        double cj = s->c[j];
        s->x[j] = (float)((double)s->x[j] - gamma * (cj + s->sum[j] * inv_s));
        s->c[j] = (float)(cj + s->sum[j] * cscale);
    }
}

/* ---- checkpoints ----
 *
 * The server's state and each client's are separate blobs, as a
 * coordinator holds no client state and a client daemon only its own:
 *
 *   server "FPSV": u32 magic, u32 version 1, u32 algorithm, u32 flags,
 *                  u64 d, u32 N, u32 0; then x, and c if the algorithm has it
 *   client "FPCL": u32 magic, u32 version 1, u32 algorithm, u32 flags,
 *                  u64 d, u32 client id, u32 0; then c_i and/or e_i / w_i
 *
 * The simulator, which holds both, stores them together as "FPS2":
 *
 *   u32 magic, u32 version 2, u32 algorithm, u32 flags, u64 d, u32 N,
 *   u32 n; then the server blob, then n client blobs in ascending id
 *
 * all little-endian, vectors float32. flags name the vectors present
 * (FP__ST_*), so a blob of another algorithm or size is refused, not
 * misread. fp_algo_state_load also reads the single "FPS1" blob that
 * fedpress wrote before (stores made then still resume).
 */

#define FP__STATE_MAGIC   0x31535046u /* "FPS1" little-endian */
#define FP__STATE2_MAGIC  0x32535046u /* "FPS2" */
#define FP__SERVER_MAGIC  0x56535046u /* "FPSV" */
#define FP__CLIENT_MAGIC  0x4c435046u /* "FPCL" */
#define FP__STATE_VERSION 1u
#define FP__STATE_HEADER  32u

enum { FP__ST_C = 1, FP__ST_CI = 2, FP__ST_MEM = 4, FP__ST_VI = 8, FP__ST_BW = 16 };

static unsigned fp__state_flags(const struct fp_algo_params *p)
{
    const struct fp_algorithm *a = fp__lookup(p->kind);
    /* the VI methods: the server's w, F(w), e_s, pending aggregate after
     * x; a client's z, w, F(w), F_m(w), e_m (vi.h) */
    if (fp_algo_is_vi(p->kind))
        return FP__ST_VI;
    /* EF21-BC: w after c (server) and after h_i (client) */
    return (fp__keeps_c(a) ? FP__ST_C | FP__ST_CI : 0) | (a->client_memory ? FP__ST_MEM : 0) |
           (p->bc ? FP__ST_BW : 0);
}

static void fp__put32(uint8_t **p, uint32_t v)
{
    memcpy(*p, &v, 4);
    *p += 4;
}

static void fp__putv(uint8_t **p, const float *v, size_t d)
{
    if (v)
        memcpy(*p, v, d * sizeof *v);
    else
        memset(*p, 0, d * sizeof *v); /* a vector never allocated is zero */
    *p += d * sizeof *v;
}

/* The 32-byte header every blob starts with; `last` is N, a client id or
 * the FPS2 client count, `extra` N for FPS2 and 0 otherwise. */
static void fp__put_header(uint8_t **p, uint32_t magic, uint32_t version,
                           const struct fp_algo_params *ap, unsigned flags, uint32_t a, uint32_t b)
{
    fp__put32(p, magic);
    fp__put32(p, version);
    fp__put32(p, (uint32_t)ap->kind);
    fp__put32(p, flags);
    uint64_t d64 = ap->d;
    memcpy(*p, &d64, 8);
    *p += 8;
    fp__put32(p, a);
    fp__put32(p, b);
}

struct fp__hdr {
    uint32_t magic, version, kind, flags;
    uint64_t d;
    uint32_t a, b;
};

static void fp__get_header(const uint8_t *p, struct fp__hdr *h)
{
    memcpy(&h->magic, p, 4);
    memcpy(&h->version, p + 4, 4);
    memcpy(&h->kind, p + 8, 4);
    memcpy(&h->flags, p + 12, 4);
    memcpy(&h->d, p + 16, 8);
    memcpy(&h->a, p + 24, 4);
    memcpy(&h->b, p + 28, 4);
}

static size_t fp__client_vectors(unsigned flags)
{
    return ((flags & FP__ST_CI) != 0) + ((flags & FP__ST_MEM) != 0) +
           ((flags & FP__ST_VI) ? FP_VI_CLIENT_VECTORS : 0) + ((flags & FP__ST_BW) != 0);
}

size_t fp_algo_server_state_bytes(const struct fp_algo_params *p)
{
    const unsigned flags = fp__state_flags(p);
    return FP__STATE_HEADER +
           p->d * sizeof(float) *
               (1 + ((flags & FP__ST_C) != 0) + ((flags & FP__ST_VI) ? FP_VI_SERVER_VECTORS : 0) +
                ((flags & FP__ST_BW) != 0));
}

size_t fp_algo_client_state_bytes(const struct fp_algo_params *p)
{
    const unsigned flags = fp__state_flags(p);
    const size_t n = fp__client_vectors(flags);
    return n ? FP__STATE_HEADER + p->d * sizeof(float) * n : 0;
}

int fp_algo_client_has_state(const struct fp_client_state *cs)
{
    return cs->ci || cs->mem || cs->vi || cs->bw;
}

void fp_algo_server_save(const struct fp_server *s, uint8_t *out)
{
    const unsigned flags = fp__state_flags(&s->p);
    fp__put_header(&out, FP__SERVER_MAGIC, FP__STATE_VERSION, &s->p, flags, s->p.N, 0);
    fp__putv(&out, s->x, s->p.d);
    if (flags & FP__ST_C)
        fp__putv(&out, s->c, s->p.d);
    if (flags & FP__ST_VI)
        fp__putv(&out, s->vi, FP_VI_SERVER_VECTORS * s->p.d);
    if (flags & FP__ST_BW)
        fp__putv(&out, s->bw, s->p.d);
}

void fp_algo_client_save(const struct fp_algo_params *p, uint32_t client,
                         const struct fp_client_state *cs, uint8_t *out)
{
    const unsigned flags = fp__state_flags(p);
    fp__put_header(&out, FP__CLIENT_MAGIC, FP__STATE_VERSION, p, flags, client, 0);
    if (flags & FP__ST_CI)
        fp__putv(&out, cs->ci, p->d);
    if (flags & FP__ST_MEM)
        fp__putv(&out, cs->mem, p->d);
    if (flags & FP__ST_VI)
        fp__putv(&out, cs->vi, FP_VI_CLIENT_VECTORS * p->d);
    if (flags & FP__ST_BW)
        fp__putv(&out, cs->bw, p->d);
}

/* Copies d finite floats from *p into a new (or given) vector. */
static int fp__getv(const uint8_t **p, size_t d, float **dst)
{
    if (!*dst && !(*dst = malloc(d * sizeof **dst)))
        return FP_ENOMEM;
    memcpy(*dst, *p, d * sizeof **dst);
    *p += d * sizeof **dst;
    for (size_t j = 0; j < d; j++)
        if (!isfinite((*dst)[j]))
            return FP_EFORMAT;
    return 0;
}

/* Whether the n float32 at p are all finite: a loader checks the whole
 * blob before it writes a byte of the state it restores into, so a refused
 * blob leaves that state exactly as it was. */
static int fp__finite(const uint8_t *p, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        float v;
        memcpy(&v, p + j * sizeof v, sizeof v);
        if (!isfinite(v))
            return 0;
    }
    return 1;
}

/* Whether a blob's header is for this algorithm and size. */
static int fp__check_header(const struct fp__hdr *h, const struct fp_algo_params *p,
                            const char *what, struct fp_error *err)
{
    const struct fp_algorithm *a = fp__lookup(p->kind);
    if (h->kind != (uint32_t)p->kind || h->flags != fp__state_flags(p) || h->d != p->d)
        return fp_error_set(err, FP_EFORMAT,
                            "%s: made for algorithm %u with d = %llu; this run has %s with d = "
                            "%zu",
                            what, h->kind, (unsigned long long)h->d, a->name, p->d);
    return 0;
}

static int fp__vectors_error(int rc, const char *what, struct fp_error *err)
{
    return fp_error_set(err, rc, "%s: %s", what,
                        rc == FP_EFORMAT ? "a non-finite value" : "out of memory");
}

int fp_algo_server_load(struct fp_server *s, const void *blob, size_t len, struct fp_error *err)
{
    const uint8_t *p = blob;
    struct fp__hdr h;
    if (len < FP__STATE_HEADER)
        return fp_error_set(err, FP_EFORMAT, "server state: %zu bytes, shorter than its header",
                            len);
    fp__get_header(p, &h);
    if (h.magic != FP__SERVER_MAGIC || h.version != FP__STATE_VERSION || h.b != 0)
        return fp_error_set(err, FP_EFORMAT, "server state: not a fedpress server state");
    int rc = fp__check_header(&h, &s->p, "server state", err);
    if (rc)
        return rc;
    if (h.a != s->p.N)
        return fp_error_set(err, FP_EFORMAT, "server state: made for N = %u; this run has N = %u",
                            h.a, s->p.N);
    if (len != fp_algo_server_state_bytes(&s->p))
        return fp_error_set(err, FP_EFORMAT, "server state: %zu bytes, expected %zu", len,
                            fp_algo_server_state_bytes(&s->p));
    p += FP__STATE_HEADER;
    if (!fp__finite(p, (len - FP__STATE_HEADER) / sizeof(float)))
        return fp__vectors_error(FP_EFORMAT, "server state", err);
    rc = fp__getv(&p, s->p.d, &s->x);
    if (!rc && (h.flags & FP__ST_C))
        rc = fp__getv(&p, s->p.d, &s->c);
    if (!rc && (h.flags & FP__ST_VI))
        rc = fp__getv(&p, FP_VI_SERVER_VECTORS * s->p.d, &s->vi);
    if (!rc && (h.flags & FP__ST_BW))
        rc = fp__getv(&p, s->p.d, &s->bw);
    return rc ? fp__vectors_error(rc, "server state", err) : 0;
}

int fp_algo_client_load(const struct fp_algo_params *p, uint32_t client, struct fp_client_state *cs,
                        const void *blob, size_t len, struct fp_error *err)
{
    const uint8_t *q = blob;
    struct fp__hdr h;
    if (len < FP__STATE_HEADER)
        return fp_error_set(err, FP_EFORMAT, "client state: %zu bytes, shorter than its header",
                            len);
    fp__get_header(q, &h);
    if (h.magic != FP__CLIENT_MAGIC || h.version != FP__STATE_VERSION || h.b != 0)
        return fp_error_set(err, FP_EFORMAT, "client state: not a fedpress client state");
    int rc = fp__check_header(&h, p, "client state", err);
    if (rc)
        return rc;
    if (h.a != client)
        return fp_error_set(err, FP_EFORMAT, "client state: of client %u, not client %u", h.a,
                            client);
    if (!fp_algo_client_state_bytes(p) || len != fp_algo_client_state_bytes(p))
        return fp_error_set(err, FP_EFORMAT, "client state: %zu bytes, expected %zu", len,
                            fp_algo_client_state_bytes(p));
    q += FP__STATE_HEADER;
    if (!fp__finite(q, (len - FP__STATE_HEADER) / sizeof(float)))
        return fp__vectors_error(FP_EFORMAT, "client state", err);
    /* both vectors allocated before either is written: out of memory
     * leaves the client as it was too */
    float *ci = cs->ci, *mem = cs->mem, *vi = cs->vi, *bw = cs->bw;
    if ((h.flags & FP__ST_CI) && !ci && !(ci = malloc(p->d * sizeof *ci)))
        goto nomem;
    if ((h.flags & FP__ST_MEM) && !mem && !(mem = malloc(p->d * sizeof *mem)))
        goto nomem;
    if ((h.flags & FP__ST_VI) && !vi && !(vi = malloc(FP_VI_CLIENT_VECTORS * p->d * sizeof *vi)))
        goto nomem;
    if ((h.flags & FP__ST_BW) && !bw && !(bw = malloc(p->d * sizeof *bw)))
        goto nomem;
    cs->ci = ci;
    cs->mem = mem;
    cs->vi = vi;
    cs->bw = bw;
    cs->vi_tag = 0;
    rc = 0;
    if (h.flags & FP__ST_CI)
        rc = fp__getv(&q, p->d, &cs->ci);
    if (!rc && (h.flags & FP__ST_MEM))
        rc = fp__getv(&q, p->d, &cs->mem);
    if (!rc && (h.flags & FP__ST_VI))
        rc = fp__getv(&q, FP_VI_CLIENT_VECTORS * p->d, &cs->vi);
    if (!rc && (h.flags & FP__ST_BW))
        rc = fp__getv(&q, p->d, &cs->bw);
    return rc ? fp__vectors_error(rc, "client state", err) : 0;
nomem: /* only what was allocated here: the client keeps its own vectors */
    if (ci != cs->ci)
        free(ci);
    if (mem != cs->mem)
        free(mem);
    if (vi != cs->vi)
        free(vi);
    return fp__vectors_error(FP_ENOMEM, "client state", err);
}

/* The FPS1 checkpoint of fedpress before issue 13 (one blob for server and
 * clients): still read, so that stores written then resume. */
static int fp__state_load_v1(struct fp_server *s, struct fp_client_state *cs, const void *blob,
                             size_t len, struct fp_error *err)
{
    const uint8_t *p = blob;
    const size_t d = s->p.d, vb = d * sizeof(float);
    const unsigned flags = fp__state_flags(&s->p);
    uint32_t h[4], N, n;
    uint64_t d64;
    if (len < FP__STATE_HEADER)
        return fp_error_set(err, FP_EFORMAT, "checkpoint: %zu bytes, shorter than its header", len);
    memcpy(h, p, 16);
    memcpy(&d64, p + 16, 8);
    memcpy(&N, p + 24, 4);
    memcpy(&n, p + 28, 4);
    p += FP__STATE_HEADER;
    if (h[0] != FP__STATE_MAGIC || h[1] != FP__STATE_VERSION)
        return fp_error_set(err, FP_EFORMAT, "checkpoint: not a fedpress state (version %u)", h[1]);
    if (h[2] != (uint32_t)s->p.kind || h[3] != flags || d64 != d || N != s->p.N)
        return fp_error_set(err, FP_EFORMAT,
                            "checkpoint: made for algorithm %u with d = %llu, N = %u; this run "
                            "has %s with d = %zu, N = %u",
                            h[2], (unsigned long long)d64, N, s->alg->name, d, s->p.N);
    const size_t per = 4 + vb * (((flags & FP__ST_CI) != 0) + ((flags & FP__ST_MEM) != 0));
    const size_t fixed = vb * (1 + ((flags & FP__ST_C) != 0));
    /* n is capped by N before the multiplication, so the size cannot overflow */
    if (n > N || (per == 4 && n) || len != FP__STATE_HEADER + fixed + (size_t)n * per)
        return fp_error_set(err, FP_EFORMAT,
                            "checkpoint: %zu bytes do not hold %u client states of d = %zu", len, n,
                            d);
    int rc = fp__getv(&p, d, &s->x);
    if (!rc && (flags & FP__ST_C))
        rc = fp__getv(&p, d, &s->c);
    int64_t last = -1;
    for (uint32_t k = 0; !rc && k < n; k++) {
        uint32_t id;
        memcpy(&id, p, 4);
        p += 4;
        if (id >= N || (int64_t)id <= last)
            return fp_error_set(err, FP_EFORMAT, "checkpoint: client id %u out of order or range",
                                id);
        last = id;
        if (flags & FP__ST_CI)
            rc = fp__getv(&p, d, &cs[id].ci);
        if (!rc && (flags & FP__ST_MEM))
            rc = fp__getv(&p, d, &cs[id].mem);
    }
    if (rc)
        return fp_error_set(err, rc, "checkpoint: %s",
                            rc == FP_EFORMAT ? "a non-finite value" : "out of memory");
    return 0;
}

int fp_algo_state_save(const struct fp_server *s, const struct fp_client_state *cs, void **blob,
                       size_t *len)
{
    const size_t sb = fp_algo_server_state_bytes(&s->p), cb = fp_algo_client_state_bytes(&s->p);
    uint32_t n = 0;
    if (cb)
        for (uint32_t i = 0; i < s->p.N; i++)
            n += fp_algo_client_has_state(&cs[i]);
    uint8_t *b = malloc(FP__STATE_HEADER + sb + (size_t)n * cb), *p = b;
    if (!b)
        return FP_ENOMEM;
    fp__put_header(&p, FP__STATE2_MAGIC, 2, &s->p, fp__state_flags(&s->p), s->p.N, n);
    fp_algo_server_save(s, p);
    p += sb;
    for (uint32_t i = 0; n && i < s->p.N; i++) {
        if (!fp_algo_client_has_state(&cs[i]))
            continue;
        fp_algo_client_save(&s->p, i, &cs[i], p);
        p += cb;
    }
    *blob = b;
    *len = (size_t)(p - b);
    return 0;
}

int fp_algo_state_load(struct fp_server *s, struct fp_client_state *cs, const void *blob,
                       size_t len, struct fp_error *err)
{
    const uint8_t *p = blob;
    struct fp__hdr h;
    if (len < FP__STATE_HEADER)
        return fp_error_set(err, FP_EFORMAT, "checkpoint: %zu bytes, shorter than its header", len);
    fp__get_header(p, &h);
    if (h.magic == FP__STATE_MAGIC && h.version == 1)
        return fp__state_load_v1(s, cs, blob, len, err);
    if (h.magic != FP__STATE2_MAGIC || h.version != 2)
        return fp_error_set(err, FP_EFORMAT, "checkpoint: not a fedpress state (version %u)",
                            h.version);
    int rc = fp__check_header(&h, &s->p, "checkpoint", err);
    if (rc)
        return rc;
    const size_t sb = fp_algo_server_state_bytes(&s->p), cb = fp_algo_client_state_bytes(&s->p);
    const uint32_t N = h.a, n = h.b;
    /* n is capped by N before the multiplication, so the size cannot overflow */
    if (N != s->p.N || n > N || (!cb && n) || len != FP__STATE_HEADER + sb + (size_t)n * cb)
        return fp_error_set(err, FP_EFORMAT,
                            "checkpoint: %zu bytes do not hold the server and %u client states "
                            "of d = %zu, N = %u",
                            len, n, s->p.d, s->p.N);
    p += FP__STATE_HEADER;
    /* Every part is checked before any is loaded, so a refused checkpoint
     * leaves the server and every client as they were. */
    if (!fp__finite(p + FP__STATE_HEADER, (sb - FP__STATE_HEADER) / sizeof(float)))
        return fp__vectors_error(FP_EFORMAT, "checkpoint: server state", err);
    int64_t last = -1;
    for (uint32_t k = 0; k < n; k++) {
        const uint8_t *q = p + sb + (size_t)k * cb;
        struct fp__hdr ch;
        fp__get_header(q, &ch);
        if (ch.a >= N || (int64_t)ch.a <= last)
            return fp_error_set(err, FP_EFORMAT, "checkpoint: client id %u out of order or range",
                                ch.a);
        last = ch.a;
        if (ch.magic != FP__CLIENT_MAGIC || ch.version != FP__STATE_VERSION || ch.b != 0)
            return fp_error_set(err, FP_EFORMAT,
                                "checkpoint: client %u: not a fedpress client "
                                "state",
                                ch.a);
        if ((rc = fp__check_header(&ch, &s->p, "checkpoint: client state", err)))
            return rc;
        if (!fp__finite(q + FP__STATE_HEADER, (cb - FP__STATE_HEADER) / sizeof(float)))
            return fp__vectors_error(FP_EFORMAT, "checkpoint: client state", err);
    }
    if ((rc = fp_algo_server_load(s, p, sb, err)))
        return rc;
    p += sb;
    for (uint32_t k = 0; k < n; k++, p += cb) {
        uint32_t id;
        memcpy(&id, p + 24, 4);
        if ((rc = fp_algo_client_load(&s->p, id, &cs[id], p, cb, err)))
            return rc;
    }
    return 0;
}
