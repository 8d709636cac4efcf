/*
 * algorithms/vi.c — distributed extragradient (EG), naive compressed EG,
 * MASHA1 and MASHA2 for a monotone operator F = (1/M) sum_m F_m (the
 * workload's grad(), e.g. workloads/bilinear.c).
 *
 * Reference: [BRDRG22] Beznosikov, Richtarik, Diskin, Ryabinin, Gasnikov,
 * "Distributed Methods with Compressed Communication for Solving
 * Variational Inequalities, with Theoretical Guarantees", NeurIPS 2022;
 * the rules as pinned in docs/algorithms.md ("Variational inequalities").
 *
 * Every device holds the iterates (z, w, F(w)); the server holds them too,
 * z as s->x (the model the store hashes and evaluates). A round is one
 * iteration, made of exchanges with a role each:
 *
 *   INIT    (MASHA, round 1, phase 0): down z_0 dense; up F_m(z_0) dense.
 *           w = z_0; the server averages F(w).
 *   EXTRA   (MASHA): down F(w) dense if w was refreshed in the round
 *           before (or round 1), else nothing; the device computes
 *           zbar = tau z + (1 - tau) w, z_half = zbar - gamma F(w) and
 *           sends q_m = Q_m(F_m(z_half) - F_m(w) [+ e_m]). The server
 *           compresses g = Q_s((1/M) sum q_m [+ e_s]) and steps
 *           z = zbar - gamma (F(w) + g).
 *   UPDATE  (MASHA): down g (Q_s's bytes); the device steps z as the server
 *           did; if the round's coin says so, w = z and the device sends
 *           F_m(w) dense, else nothing (a 0-byte payload).
 *   EG_A    (EG, phase 0): down z_0 dense (round 1) or Q_s(F-hat(z_half))
 *           of the round before, with which the device steps z = z - gamma
 *           F-hat; up Q_m(F_m(z)).
 *   EG_B    (EG, phase 1): down Q_s((1/M) sum of those), F-hat(z); the
 *           device sends Q_m(F_m(z - gamma F-hat(z))).
 *
 * MASHA's rounds have phases INIT, EXTRA, UPDATE (round 1) or EXTRA,
 * UPDATE; EG's EG_A, EG_B. EG with identity compressors is the
 * uncompressed distributed extragradient; eg-naive compresses exactly what
 * EG sends. Every payload is counted at its exact size (fp_vi_*_bytes); the
 * dense exchanges are identity-encoded (4 d bytes). The coin and every
 * random mask come from keyed streams, so both drivers agree at any thread
 * count.
 *
 * Float arithmetic: the server and the devices step z with the same
 * functions below, so they hold the same bits. MASHA2 adds its errors
 * only where they are non-zero, so with identity compressors (errors
 * always 0) it computes exactly what MASHA1 computes.
 */
#include "vi.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { FP__VI_INIT, FP__VI_EXTRA, FP__VI_UPDATE, FP__VI_EG_A, FP__VI_EG_B, FP__VI_NONE };
/* client block cs->vi: z, w, F(w), F_m(w), e_m; server block s->vi: w,
 * F(w), e_s, the pending aggregate to broadcast */
enum { FP__C_Z, FP__C_W, FP__C_FW, FP__C_FMW, FP__C_EM };
enum { FP__S_W, FP__S_FW, FP__S_ES, FP__S_PEND };

static int fp__masha(const struct fp_algo_params *p)
{
    return p->kind == FP_ALGO_MASHA1 || p->kind == FP_ALGO_MASHA2;
}

static int fp__role(const struct fp_algo_params *p, uint32_t round, unsigned phase)
{
    if (!fp__masha(p))
        return phase == 0 ? FP__VI_EG_A : phase == 1 ? FP__VI_EG_B : FP__VI_NONE;
    const unsigned r = phase + (round > 1); /* round 1 opens with INIT */
    return r <= FP__VI_UPDATE ? (int)r : FP__VI_NONE;
}

/* omega of a compressor for MASHA's step: an unbiased one's variance
 * constant; a contractive one's (||C(x) - x||^2 <= (1 - q)||x||^2) as the
 * class C(delta) of [BRDRG22] with delta = 1/q, omega = delta - 1 (top-k:
 * d/k - 1, the number rand-k of the same k has). */
static double fp__vi_omega(const struct fp_compressor *c)
{
    double omega = 0, q = 1;
    return fp_compressor_unbiased(c, &omega, &q) ? omega : 1 / q - 1;
}

static double fp__vi_theory_step(const struct fp_algo_params *p, double L, double Lt)
{
    if (!fp__masha(p)) /* EG and naive EG: gamma = 1/L, scaled by c */
        return 1 / L;
    /* docs/algorithms.md: gamma = sqrt(1 - tau)/L-hat,
     * L-hat^2 = (1 + omega_s)(L^2 + omega_m L~^2 / M) */
    const double ws = fp__vi_omega(&p->down), wm = fp__vi_omega(&p->up);
    return sqrt(1 - p->tau) / sqrt((1 + ws) * (L * L + wm * Lt * Lt / p->N));
}

int fp_vi_params(struct fp_algo_params *p, const struct fp_scenario *sc, struct fp_error *err)
{
    int rc = fp_compressor_init(&p->down, &sc->downlink, p->d, err);
    if (rc)
        return rc;
    p->gamma = sc->step;
    p->lr_global = 1.0f;
    /* [BRDRG22]: 1 - tau = p = (bits of one compressed message) / (bits of
     * a dense one), so a refresh costs on average what a round saves */
    const double ratio =
        (double)fp_compressor_bytes(&p->up) / (double)fp_compressor_bytes(&p->dense);
    p->tau = !fp__masha(p) ? 0 : isnan(sc->tau) ? 1 - (ratio < 1 ? ratio : 1) : sc->tau;
    if (isnan(sc->step)) {
        double L, Lt;
        if ((rc = fp_bilinear_lipschitz(sc, &L, &Lt, err)))
            return rc;
        p->gamma = sc->step_scale * fp__vi_theory_step(p, L, Lt);
    }
    if (!(p->gamma > 0) || !(p->tau >= 0 && p->tau < 1))
        return fp_error_set(err, FP_EINVAL, "%s: step = %g must be > 0 and tau = %g in [0, 1)",
                            fp_algo_name(p->kind), p->gamma, p->tau);
    return 0;
}

int fp_vi_coin(const struct fp_algo_params *p, uint32_t round)
{
    /* a key of its own: below the downlink's (FP_RNG_NO_CLIENT - (phase <<
     * 8 | vector), algorithm.c), above every client id */
    fp_rng r;
    fp_rng_seed(&r, p->seed, round, FP_RNG_NO_CLIENT - 0x10000, FP_RNG_COMPRESS);
    return fp_rng_uniform(&r) < 1 - p->tau;
}

int fp_vi_phase(const struct fp_algo_params *p, uint32_t round, unsigned phase)
{
    return fp__role(p, round, phase) != FP__VI_NONE;
}

size_t fp_vi_broadcast_bytes(const struct fp_algo_params *p, uint32_t round, unsigned phase)
{
    const size_t dense = fp_compressor_bytes(&p->dense), down = fp_compressor_bytes(&p->down);
    switch (fp__role(p, round, phase)) {
    case FP__VI_INIT: return dense;
    case FP__VI_EXTRA: return round == 1 || fp_vi_coin(p, round - 1) ? dense : 0;
    case FP__VI_UPDATE: return down;
    case FP__VI_EG_A: return round == 1 ? dense : down;
    case FP__VI_EG_B: return down;
    default: return 0;
    }
}

size_t fp_vi_upload_bytes(const struct fp_algo_params *p, uint32_t round, unsigned phase)
{
    const size_t dense = fp_compressor_bytes(&p->dense), up = fp_compressor_bytes(&p->up);
    switch (fp__role(p, round, phase)) {
    case FP__VI_INIT: return dense;
    case FP__VI_UPDATE: return fp_vi_coin(p, round) ? dense : 0;
    case FP__VI_NONE: return 0;
    default: return up;
    }
}

size_t fp_vi_cap(const struct fp_algo_params *p)
{
    size_t m = fp_compressor_bytes(&p->dense);
    if (fp_compressor_bytes(&p->up) > m)
        m = fp_compressor_bytes(&p->up);
    if (fp_compressor_bytes(&p->down) > m)
        m = fp_compressor_bytes(&p->down);
    return FP_MSG_HEADER + m;
}

/* The broadcast's stream of exchange (round, phase), keyed as algorithm.c
 * keys a broadcast's first vector; the uplink's per (round, client, phase). */
static void fp__down_rng(fp_rng *r, const struct fp_algo_params *p, uint32_t round, unsigned phase)
{
    fp_rng_seed(r, p->seed, round, FP_RNG_NO_CLIENT - ((uint64_t)phase << 8), FP_RNG_COMPRESS);
}

static void fp__up_rng(fp_rng *r, const struct fp_algo_params *p, uint32_t round, uint32_t client,
                       unsigned phase)
{
    fp_rng_seed(r, p->seed, round, (uint64_t)client | (uint64_t)phase << 32, FP_RNG_COMPRESS);
}

/* The steps, shared by the server and the devices so that both hold the
 * same bits. zbar = tau z + (1 - tau) w is w exactly when tau = 0. */
static float fp__zbar(const struct fp_algo_params *p, float z, float w)
{
    return p->tau == 0 ? w : (float)(p->tau * (double)z + (1 - p->tau) * (double)w);
}

static float fp__step(const struct fp_algo_params *p, float from, float dir)
{
    return (float)((double)from - p->gamma * (double)dir);
}

static float fp__step2(const struct fp_algo_params *p, float from, float fw, float g)
{
    return (float)((double)from - p->gamma * ((double)fw + (double)g));
}

int fp_vi_server_broadcast(struct fp_server *s, uint64_t run, uint32_t round, unsigned phase,
                           uint8_t *out, size_t cap, size_t *len)
{
    const struct fp_algo_params *p = &s->p;
    const size_t d = p->d, bytes = fp_vi_broadcast_bytes(p, round, phase);
    const int role = fp__role(p, round, phase);
    if (role == FP__VI_NONE || cap < FP_MSG_HEADER + bytes)
        return FP_EINVAL;
    const size_t sv = FP_VI_SERVER_VECTORS * d * sizeof *s->vi;
    if (phase == 0 && s->vi_round == round) { /* the round tried again */
        memcpy(s->x, s->vi_snap, d * sizeof *s->x);
        memcpy(s->vi, s->vi_snap + d, sv);
        s->vi_lost = 0;
    } else if (phase == 0) {
        memcpy(s->vi_snap, s->x, d * sizeof *s->x);
        memcpy(s->vi_snap + d, s->vi, sv);
        s->vi_round = round;
    }
    if (s->vi_lost)
        return FP_EINVAL;
    const float *src = NULL;
    const struct fp_compressor *c = &p->down;
    void *ws = s->dws;
    if (role == FP__VI_INIT || (role == FP__VI_EG_A && round == 1))
        src = s->x, c = &p->dense, ws = s->nws;
    else if (role == FP__VI_EXTRA)
        src = bytes ? s->vi + FP__S_FW * d : NULL, c = &p->dense, ws = s->nws;
    else
        src = s->vi + FP__S_PEND * d;
    if (src) {
        fp_rng r;
        fp__down_rng(&r, p, round, phase);
        if (fp_compressor_compress(c, src, &r, ws, out + FP_MSG_HEADER, bytes, NULL))
            return FP_EFORMAT; /* only a non-finite vector is refused */
    }
    *len = fp_msg_seal(out, FP_MSG_BROADCAST, run, round, (uint16_t)phase, FP_MSG_ALL, bytes);
    s->run = run;
    s->round = round;
    s->phase = (uint16_t)phase;
    s->last_client = -1;
    s->open = 1;
    s->vi_added = 0;
    memset(s->sum, 0, d * sizeof *s->sum);
    return 0;
}

/* The broadcast's header names the client's exchange and the exact size. */
static int fp__check_bcast(const struct fp_algo_params *p, const struct fp_msg_header *who,
                           const uint8_t *bcast, size_t len, struct fp_error *err)
{
    struct fp_msg_header h;
    if (len < FP_MSG_HEADER)
        return fp_error_set(err, FP_EFORMAT, "broadcast of %zu bytes, shorter than its header",
                            len);
    const struct fp_msg_header expect = {.type = FP_MSG_BROADCAST,
                                         .phase = who->phase,
                                         .client = FP_MSG_ALL,
                                         .run = who->run,
                                         .round = who->round,
                                         .len = fp_vi_broadcast_bytes(p, who->round, who->phase)};
    int rc = fp_msg_decode_header(bcast, &h, err);
    if (!rc)
        rc = fp_msg_check(&h, &expect, 0, err);
    if (!rc && h.len != len - FP_MSG_HEADER)
        rc = fp_error_set(err, FP_EFORMAT, "broadcast of %zu payload bytes, its header says %llu",
                          len - FP_MSG_HEADER, (unsigned long long)h.len);
    return rc;
}

static int fp__decode(const struct fp_algo_params *p, const struct fp_msg_header *who,
                      const struct fp_compressor *c, void *ws, const uint8_t *bcast, float *out,
                      struct fp_error *err)
{
    fp_rng r;
    fp__down_rng(&r, p, who->round, who->phase);
    if (fp_compressor_decompress(c, bcast + FP_MSG_HEADER, fp_compressor_bytes(c), &r, ws, out))
        return fp_error_set(err, FP_EFORMAT, "round %u: the broadcast does not decode", who->round);
    return 0;
}

int fp_vi_client_update(const struct fp_algo_params *p, const struct fp_msg_header *who,
                        const uint8_t *bcast, size_t bcast_len, const struct fp_client_state *cs,
                        struct fp_client_state *next, const struct fp_workload *w, void *wws,
                        struct fp_algo_ws *ws, uint8_t *out, size_t out_cap, size_t *out_len,
                        double *train_loss, struct fp_error *err)
{
    const size_t d = p->d, nb = FP_VI_CLIENT_VECTORS * d * sizeof(float);
    const uint32_t round = who->round, client = who->client;
    const int role = fp__role(p, round, who->phase);
    if (role == FP__VI_NONE || out_cap < fp_vi_cap(p))
        return fp_error_set(err, FP_EINVAL, "no exchange %u of round %u, or no room for it",
                            who->phase, round);
    int rc = fp__check_bcast(p, who, bcast, bcast_len, err);
    if (rc)
        return rc;
    const int first = role == FP__VI_INIT || (role == FP__VI_EG_A && round == 1);
    /* phase 0 starts from the committed state; a later phase from the
     * state its phase before made, committed or still pending */
    const uint64_t want = (uint64_t)round << 16 | who->phase;
    const float *base = cs->vi;
    if (who->phase > 0)
        base = cs->vi && cs->vi_tag == want       ? cs->vi
               : next->vi && next->vi_tag == want ? next->vi
                                                  : NULL;
    if (!base && !first)
        return fp_error_set(err, FP_EFORMAT,
                            "round %u, exchange %u: client %u holds no iterates for it (it "
                            "missed round 1 or this round's exchange before); restart the run",
                            round, who->phase, client);
    if (!next->vi && !(next->vi = malloc(nb)))
        return fp_error_set(err, FP_ENOMEM, "out of memory");
    if (!base)
        memset(next->vi, 0, nb);
    else if (base != next->vi)
        memcpy(next->vi, base, nb);
    next->vi_tag = (uint64_t)round << 16 | (who->phase + 1u);
    float *z = next->vi + FP__C_Z * d, *wv = next->vi + FP__C_W * d, *fw = next->vi + FP__C_FW * d,
          *fmw = next->vi + FP__C_FMW * d, *em = next->vi + FP__C_EM * d;
    float *msg = ws->msg, *in = ws->bx, *zh = ws->y;
    const struct fp_compressor *c = &p->up;
    void *cws = ws->cws;
    double loss = 0;
    fp_rng mb; /* the operator is exact; a stochastic one would draw from here */
    fp_rng_seed(&mb, p->seed, round, (uint64_t)client | (uint64_t)who->phase << 32,
                FP_RNG_MINIBATCH);
    switch (role) {
    case FP__VI_INIT:
        if ((rc = fp__decode(p, who, &p->dense, ws->nws, bcast, z, err)))
            return rc;
        memcpy(wv, z, d * sizeof *z);
        w->ops->grad(w, wws, client, wv, p->batch, &mb, fmw, &loss);
        memcpy(msg, fmw, d * sizeof *msg);
        c = &p->dense, cws = ws->nws;
        break;
    case FP__VI_EXTRA:
        if (bcast_len > FP_MSG_HEADER &&
            (rc = fp__decode(p, who, &p->dense, ws->nws, bcast, fw, err)))
            return rc;
        for (size_t j = 0; j < d; j++)
            zh[j] = fp__step(p, fp__zbar(p, z[j], wv[j]), fw[j]);
        w->ops->grad(w, wws, client, zh, p->batch, &mb, ws->g, &loss);
        for (size_t j = 0; j < d; j++) {
            msg[j] = ws->g[j] - fmw[j];
            if (p->kind == FP_ALGO_MASHA2 && em[j] != 0)
                msg[j] += em[j];
        }
        break;
    case FP__VI_UPDATE:
        if ((rc = fp__decode(p, who, &p->down, ws->dws, bcast, in, err)))
            return rc;
        for (size_t j = 0; j < d; j++)
            z[j] = fp__step2(p, fp__zbar(p, z[j], wv[j]), fw[j], in[j]);
        if (fp_vi_coin(p, round)) {
            memcpy(wv, z, d * sizeof *z);
            w->ops->grad(w, wws, client, wv, p->batch, &mb, fmw, &loss);
            memcpy(msg, fmw, d * sizeof *msg);
            c = &p->dense, cws = ws->nws;
        } else
            c = NULL;
        break;
    case FP__VI_EG_A:
        if (round == 1)
            rc = fp__decode(p, who, &p->dense, ws->nws, bcast, z, err);
        else if (!(rc = fp__decode(p, who, &p->down, ws->dws, bcast, in, err)))
            for (size_t j = 0; j < d; j++)
                z[j] = fp__step(p, z[j], in[j]);
        if (rc)
            return rc;
        w->ops->grad(w, wws, client, z, p->batch, &mb, msg, &loss);
        break;
    default: /* FP__VI_EG_B */
        if ((rc = fp__decode(p, who, &p->down, ws->dws, bcast, in, err)))
            return rc;
        for (size_t j = 0; j < d; j++)
            zh[j] = fp__step(p, z[j], in[j]);
        w->ops->grad(w, wws, client, zh, p->batch, &mb, msg, &loss);
        break;
    }
    const size_t payload = fp_vi_upload_bytes(p, round, who->phase);
    if (c) {
        for (size_t j = 0; j < d; j++)
            if (!isfinite(msg[j]) || !isfinite(z[j]))
                return fp_error_set(err, FP_EFORMAT,
                                    "round %u: client %u's iterate is not finite: the method "
                                    "diverged (try a smaller [algorithm] step)",
                                    round, client);
        fp_rng r;
        fp__up_rng(&r, p, round, client, who->phase);
        if ((rc = fp_compressor_compress(c, msg, &r, cws, out + FP_MSG_HEADER,
                                         out_cap - FP_MSG_HEADER, ws->vhat)))
            return fp_error_set(err, rc, "round %u: client %u's message does not compress", round,
                                client);
        if (role == FP__VI_EXTRA && p->kind == FP_ALGO_MASHA2)
            for (size_t j = 0; j < d; j++) /* [BRDRG22] MASHA2: e_m = v_m - C(v_m) */
                em[j] = msg[j] - ws->vhat[j];
    }
    *out_len = fp_msg_seal(out, FP_MSG_UPLOAD, who->run, round, who->phase, client, payload);
    *train_loss = loss;
    return 0;
}

int fp_vi_server_add(struct fp_server *s, uint32_t client, const uint8_t *payload, size_t len,
                     struct fp_error *err)
{
    const struct fp_algo_params *p = &s->p;
    const int role = fp__role(p, s->round, s->phase);
    if (len == 0) { /* UPDATE without a refresh: nothing to add */
        s->vi_added++;
        return 0;
    }
    const int dense = role == FP__VI_INIT || role == FP__VI_UPDATE;
    fp_rng r;
    fp__up_rng(&r, p, s->round, client, s->phase);
    if (fp_compressor_decompress(dense ? &p->dense : &p->up, payload, len, &r,
                                 dense ? s->nws : s->cws, s->dec))
        return fp_error_set(err, FP_EFORMAT,
                            "malformed upload from client %u in round %u: not a valid encoding",
                            client, s->round);
    for (size_t j = 0; j < p->d; j++)
        s->sum[j] += s->dec[j];
    s->vi_added++;
    return 0;
}

void fp_vi_server_finish(struct fp_server *s)
{
    const struct fp_algo_params *p = &s->p;
    const size_t d = p->d;
    const double inv = 1.0 / p->N; /* every device answers (the scenario requires it) */
    float *x = s->x, *wv = s->vi + FP__S_W * d, *fw = s->vi + FP__S_FW * d,
          *es = s->vi + FP__S_ES * d, *pend = s->vi + FP__S_PEND * d, *g = s->dec;
    fp_rng r;
    if (s->vi_added != p->N) {
        /* a device's upload is missing (refused): it would not hold what
         * the others hold; the run stops at the next broadcast */
        s->vi_lost = 1;
        return;
    }
    switch (fp__role(p, s->round, s->phase)) {
    case FP__VI_INIT:
        for (size_t j = 0; j < d; j++)
            fw[j] = (float)(s->sum[j] * inv);
        memcpy(wv, x, d * sizeof *x);
        memset(es, 0, d * sizeof *es);
        break;
    case FP__VI_EXTRA:
        for (size_t j = 0; j < d; j++) {
            pend[j] = (float)(s->sum[j] * inv);
            if (p->kind == FP_ALGO_MASHA2 && es[j] != 0)
                pend[j] += es[j];
        }
        /* g = Q_s(pend), exactly as the UPDATE broadcast will encode it */
        fp__down_rng(&r, p, s->round, s->phase + 1);
        fp_compressor_compress(&p->down, pend, &r, s->dws, s->vbuf, fp_compressor_bytes(&p->down),
                               g);
        for (size_t j = 0; j < d; j++) {
            if (p->kind == FP_ALGO_MASHA2)
                es[j] = pend[j] - g[j];
            x[j] = fp__step2(p, fp__zbar(p, x[j], wv[j]), fw[j], g[j]);
        }
        break;
    case FP__VI_UPDATE:
        if (fp_vi_coin(p, s->round)) {
            for (size_t j = 0; j < d; j++)
                fw[j] = (float)(s->sum[j] * inv);
            memcpy(wv, x, d * sizeof *x);
        }
        break;
    case FP__VI_EG_A:
        for (size_t j = 0; j < d; j++)
            pend[j] = (float)(s->sum[j] * inv);
        break;
    case FP__VI_EG_B:
        for (size_t j = 0; j < d; j++)
            pend[j] = (float)(s->sum[j] * inv);
        /* F-hat(z_half) as the next round's first broadcast will encode it */
        fp__down_rng(&r, p, s->round + 1, 0);
        fp_compressor_compress(&p->down, pend, &r, s->dws, s->vbuf, fp_compressor_bytes(&p->down),
                               g);
        for (size_t j = 0; j < d; j++)
            x[j] = fp__step(p, x[j], g[j]);
        break;
    default: break;
    }
}
