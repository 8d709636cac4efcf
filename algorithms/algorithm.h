/*
 * algorithms/algorithm.h — federated algorithms as pure state machines.
 *
 * The same functions run in the simulator and (later) in the daemons: given
 * the broadcast (x, and c where the algorithm has control variates), the
 * client's own state and its workload, fp_algo_client_update() runs the K
 * local steps and writes the upload message in its wire encoding; the server
 * decodes the round's uploads in ascending client id and applies them with
 * fp_algo_server_aggregate(). No I/O, no clocks, no global state: every
 * random draw comes from the keyed stream (seed, round, client, MINIBATCH).
 *
 * The update rules are pinned in docs/algorithms.md (from shared
 * ALGORITHMS.md); each one cites the paper next to it below.
 *
 * Ownership: fp_server_init() allocates x, c and scratch, freed by
 * fp_server_free(). A client state's vectors are allocated the first time
 * the client is sampled (so memory grows with participants, not with the
 * population) and freed by fp_client_state_free(). A fp_algo_ws is per
 * thread scratch.
 */
#ifndef FP_ALGORITHM_H
#define FP_ALGORITHM_H

#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/scenario.h"
#include "../workloads/workload.h"
#include "compressor.h"

struct fp_algorithm; /* ops table, one per algorithm (algorithm.c) */

struct fp_algo_params {
    enum fp_algo_kind kind;
    size_t d;
    uint32_t N;     /* population: the control variate is averaged over all of it */
    uint32_t K;     /* local steps */
    uint32_t batch; /* B */
    float lr_local, lr_global;
    float alpha; /* SCALLION: control-variate step (1/(1 + omega) when auto); 1 otherwise */
    float beta;  /* SCAFCOM: momentum */
    uint64_t seed;
    struct fp_compressor comp; /* uplink; identity for the full-precision baselines */
};

struct fp_server {
    struct fp_algo_params p;
    const struct fp_algorithm *alg;
    float *x;    /* global model [d] */
    float *c;    /* global control variate [d]; NULL when the algorithm has none */
    double *sum; /* [d] accumulator for the round's decoded uploads */
    float *dec;  /* [d] one decoded upload */
    void *cws;   /* compressor workspace for decoding */
};

/* Per-client state; each vector is NULL until the client is first sampled,
 * which stands for the zero vector the papers start from. */
struct fp_client_state {
    float *ci;  /* control variate c_i (SCAFFOLD, SCALLION, SCAFCOM) */
    float *mem; /* FedEF: error e_i; SCAFCOM: w_i = v_i - c_i (see algorithm.c) */
};

struct fp_algo_ws {
    float *y, *g, *msg, *vhat; /* [d] each */
    void *cws;                 /* compressor workspace */
};

/* Fills p from a scenario for a model of d parameters; sets up the
 * compressor and resolves alpha = auto. FP_EINVAL if they do not fit. */
int fp_algo_params_from(struct fp_algo_params *p, const struct fp_scenario *sc, size_t d,
                        struct fp_error *err);

int fp_server_init(struct fp_server *s, const struct fp_algo_params *p, struct fp_error *err);
void fp_server_free(struct fp_server *s);

int fp_algo_ws_init(struct fp_algo_ws *ws, const struct fp_algo_params *p);
void fp_algo_ws_free(struct fp_algo_ws *ws, const struct fp_algo_params *p);
void fp_client_state_free(struct fp_client_state *cs);

/* Whether the algorithm keeps control variates (c on the server, c_i on clients). */
int fp_algo_has_control(const struct fp_algo_params *p);

/* Bytes the server sends each participant (x, and c if any), and the exact
 * size of one upload message. */
size_t fp_algo_downlink_bytes(const struct fp_algo_params *p);
size_t fp_algo_upload_bytes(const struct fp_algo_params *p);

/* Runs client `client`'s round `round` from the broadcast (x, c) and writes
 * its upload into out[0..fp_algo_upload_bytes). Updates cs (allocating it
 * on first use). *train_loss = mean minibatch loss over the K steps. */
int fp_algo_client_update(const struct fp_algo_params *p, const float *x, const float *c,
                          struct fp_client_state *cs, const struct fp_workload *w, void *wws,
                          struct fp_algo_ws *ws, uint32_t round, uint32_t client, uint8_t *out,
                          size_t out_cap, size_t *out_len, double *train_loss);

/* Aggregation of one round, in calls so the driver may stream uploads:
 * begin, then add each upload in ascending client id, then finish. The
 * round and client key the decoder's random stream (rand-k's mask). A
 * malformed upload (wrong size, non-canonical encoding, non-finite value)
 * is FP_EFORMAT and leaves the server state unchanged. */
void fp_algo_server_begin(struct fp_server *s);
int fp_algo_server_add(struct fp_server *s, uint32_t round, uint32_t client, const uint8_t *msg,
                       size_t len, struct fp_error *err);
void fp_algo_server_finish(struct fp_server *s, uint32_t participants);

/* Checkpoints. fp_algo_state_save serialises the server's x (and c) and the
 * state of every client that has any (cs[0..N), ascending id) into a new
 * malloc'd blob the caller frees: little-endian, header "FPS1", version,
 * kind, d, N, flags, client count, then the vectors. fp_algo_state_load
 * restores it into a server initialised with the same parameters and an
 * array of N empty client states; FP_EFORMAT (with a message) if the blob
 * is truncated, oversized, for another algorithm or size, has client ids out
 * of order or range, or a non-finite value. */
int fp_algo_state_save(const struct fp_server *s, const struct fp_client_state *cs, void **blob,
                       size_t *len);
int fp_algo_state_load(struct fp_server *s, struct fp_client_state *cs, const void *blob,
                       size_t len, struct fp_error *err);

#endif
