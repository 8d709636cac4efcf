/*
 * algorithms/algorithm.c — FedAvg and SCAFFOLD (halved uplink).
 *
 * References:
 *   [KKM+20] Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging
 *            for Federated Learning", ICML 2020, Algorithm 1, option II.
 *   [HLY24]  Huang, Li, Yin, "Stochastic Controlled Averaging for Federated
 *            Learning with Communication Compression", ICLR 2024: SCAFFOLD
 *            rewritten so that a client uploads one vector per round.
 *   [MMR+17] McMahan et al., "Communication-Efficient Learning of Deep
 *            Networks from Decentralized Data" (FedAvg).
 *
 * Notation as in docs/algorithms.md: x global model, c global control
 * variate, c_i client i's, eta_l / eta_g local / global step, K local steps,
 * gamma = eta_g * eta_l * K, S participants, N population.
 */
#include "algorithm.h"

#include <stdlib.h>
#include <string.h>

#include "codec.h"

struct fp_algorithm {
    const char *name;
    int has_control;
    /* Turns the local result y^K into the upload vector msg and updates the
     * client's state (with the value as the server will decode it). */
    void (*client_message)(const struct fp_algo_params *p, const float *x, const float *c,
                           const float *y, float *ci, float *msg);
    /* Applies sum = sum over the S participants of the decoded uploads. */
    void (*server_apply)(struct fp_server *s, uint32_t S);
};

/* FedAvg [MMR+17]: the client sends Delta_i = x - y_i^K. */
static void fp__fedavg_message(const struct fp_algo_params *p, const float *x, const float *c,
                               const float *y, float *ci, float *msg)
{
    (void)c;
    (void)ci;
    for (size_t j = 0; j < p->d; j++)
        msg[j] = x[j] - y[j];
}

/* x <- x - eta_g * (1/S) sum_S Delta_i. */
static void fp__fedavg_apply(struct fp_server *s, uint32_t S)
{
    const double scale = (double)s->p.lr_global / S;
    for (size_t j = 0; j < s->p.d; j++)
        s->x[j] = (float)((double)s->x[j] - scale * s->sum[j]);
}

/*
 * SCAFFOLD, halved uplink [HLY24, Alg. 1 with C = identity]:
 *   u_i      = (x - y_i^K) / (eta_l K)       the mean corrected local gradient
 *   delta_i  = u_i - c                       the one uploaded vector
 *   c_i     <- c_i + delta_i                 (= [KKM+20] option II: c_i+ = c_i - c + u_i)
 * [KKM+20] sends Delta y_i = y_i^K - x and Delta c_i = c_i+ - c_i = u_i - c;
 * since x + eta_g mean(Delta y_i) = x - gamma mean(u_i) = x - gamma (c + mean delta_i),
 * one vector carries both (tests/test_algorithm.c checks the two forms agree).
 */
static void fp__scaffold_message(const struct fp_algo_params *p, const float *x, const float *c,
                                 const float *y, float *ci, float *msg)
{
    const float inv = 1.0f / (p->lr_local * (float)p->K);
    for (size_t j = 0; j < p->d; j++) {
        float delta = (x[j] - y[j]) * inv - c[j];
        msg[j] = delta;
        ci[j] += delta;
    }
}

/* [HLY24]: x <- x - gamma (c + (1/S) sum_S delta_i);  c <- c + (1/N) sum_S delta_i.
 * Dividing c's update by N, not S, keeps c = (1/N) sum_{all i} c_i (clients not
 * sampled keep their c_i), the invariant SCAFFOLD's correction relies on. */
static void fp__scaffold_apply(struct fp_server *s, uint32_t S)
{
    const double gamma = (double)s->p.lr_global * (double)s->p.lr_local * s->p.K;
    const double inv_s = 1.0 / S, inv_n = 1.0 / s->p.N;
    for (size_t j = 0; j < s->p.d; j++) {
        double cj = s->c[j];
        s->x[j] = (float)((double)s->x[j] - gamma * (cj + s->sum[j] * inv_s));
        s->c[j] = (float)(cj + s->sum[j] * inv_n);
    }
}

static const struct fp_algorithm fp__fedavg = {"fedavg", 0, fp__fedavg_message,
                                                fp__fedavg_apply};
static const struct fp_algorithm fp__scaffold = {"scaffold", 1, fp__scaffold_message,
                                                  fp__scaffold_apply};

static const struct fp_algorithm *fp__lookup(enum fp_algo_kind k)
{
    switch (k) {
    case FP_ALGO_FEDAVG: return &fp__fedavg;
    case FP_ALGO_SCAFFOLD: return &fp__scaffold;
    }
    return NULL;
}

void fp_algo_params_from(struct fp_algo_params *p, const struct fp_scenario *sc, size_t d)
{
    memset(p, 0, sizeof *p);
    p->kind = sc->algorithm;
    p->d = d;
    p->N = sc->clients;
    p->K = sc->local_steps;
    p->batch = sc->batch;
    p->lr_local = (float)sc->lr_local;
    p->lr_global = (float)sc->lr_global;
    p->seed = sc->seed;
}

int fp_algo_has_control(const struct fp_algo_params *p)
{
    const struct fp_algorithm *a = fp__lookup(p->kind);
    return a && a->has_control;
}

size_t fp_algo_downlink_bytes(const struct fp_algo_params *p)
{
    return fp_codec_dense_size(p->d) * (fp_algo_has_control(p) ? 2 : 1);
}

size_t fp_algo_upload_bytes(const struct fp_algo_params *p) { return fp_codec_dense_size(p->d); }

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
    if (s->alg->has_control)
        s->c = calloc(p->d, sizeof *s->c);
    if (!s->x || !s->sum || !s->dec || (s->alg->has_control && !s->c)) {
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
    s->x = s->c = s->dec = NULL;
    s->sum = NULL;
}

int fp_algo_ws_init(struct fp_algo_ws *ws, size_t d)
{
    ws->y = malloc(d * sizeof(float));
    ws->g = malloc(d * sizeof(float));
    ws->msg = malloc(d * sizeof(float));
    if (!ws->y || !ws->g || !ws->msg) {
        fp_algo_ws_free(ws);
        return FP_ENOMEM;
    }
    return 0;
}

void fp_algo_ws_free(struct fp_algo_ws *ws)
{
    free(ws->y);
    free(ws->g);
    free(ws->msg);
    ws->y = ws->g = ws->msg = NULL;
}

void fp_client_state_free(struct fp_client_state *cs)
{
    free(cs->ci);
    cs->ci = NULL;
}

int fp_algo_client_update(const struct fp_algo_params *p, const float *x, const float *c,
                          struct fp_client_state *cs, const struct fp_workload *w, void *wws,
                          struct fp_algo_ws *ws, uint32_t round, uint32_t client, uint8_t *out,
                          size_t out_cap, size_t *out_len, double *train_loss)
{
    const struct fp_algorithm *a = fp__lookup(p->kind);
    const size_t d = p->d;
    if (!a || out_cap < fp_algo_upload_bytes(p))
        return FP_EINVAL;
    if (a->has_control && !cs->ci) {
        cs->ci = calloc(d, sizeof *cs->ci); /* a never-sampled client holds c_i = 0 */
        if (!cs->ci)
            return FP_ENOMEM;
    }

    fp_rng rng;
    fp_rng_seed(&rng, p->seed, round, client, FP_RNG_MINIBATCH);
    float *y = ws->y, *g = ws->g;
    const float lr = p->lr_local;
    double loss_sum = 0;
    memcpy(y, x, d * sizeof *y); /* y^0 = x */
    for (uint32_t k = 0; k < p->K; k++) {
        double loss;
        w->ops->grad(w, wws, client, y, p->batch, &rng, g, &loss);
        loss_sum += loss;
        if (a->has_control) {
            /* [KKM+20] eq. (3): y <- y - eta_l (g_i(y) - c_i + c) */
            const float *ci = cs->ci;
            for (size_t j = 0; j < d; j++)
                y[j] -= lr * (g[j] - ci[j] + c[j]);
        } else {
            for (size_t j = 0; j < d; j++)
                y[j] -= lr * g[j];
        }
    }
    a->client_message(p, x, c, y, cs->ci, ws->msg);
    fp_codec_dense_encode(ws->msg, d, out);
    *out_len = fp_codec_dense_size(d);
    *train_loss = loss_sum / p->K;
    return 0;
}

void fp_algo_server_begin(struct fp_server *s)
{
    memset(s->sum, 0, s->p.d * sizeof *s->sum);
}

int fp_algo_server_add(struct fp_server *s, const uint8_t *msg, size_t len, struct fp_error *err)
{
    int rc = fp_codec_dense_decode(msg, len, s->p.d, s->dec);
    if (rc)
        return fp_error_set(err, rc,
                            "malformed upload: %zu bytes (expected %zu) or a non-finite value",
                            len, fp_codec_dense_size(s->p.d));
    for (size_t j = 0; j < s->p.d; j++)
        s->sum[j] += s->dec[j];
    return 0;
}

void fp_algo_server_finish(struct fp_server *s, uint32_t participants)
{
    if (participants == 0)
        return;
    s->alg->server_apply(s, participants);
}
