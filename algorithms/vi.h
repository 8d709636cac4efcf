/*
 * algorithms/vi.h — the variational-inequality methods (vi.c): distributed
 * extragradient, naive compressed extragradient, MASHA1 and MASHA2, behind
 * the same exchange interface as every other algorithm (algorithm.h). The
 * functions of algorithm.h hand over to these when fp_algo_is_vi(kind).
 * Internal to algorithms/.
 */
#ifndef FP_VI_H
#define FP_VI_H

#include "algorithm.h"

/* Vectors of d floats in a VI client's state (cs->vi) and in the server's
 * (s->vi, besides z = s->x). */
#define FP_VI_CLIENT_VECTORS 5
#define FP_VI_SERVER_VECTORS 4

/* [algorithm] step (theory: docs/algorithms.md) and tau into p (tau = auto: 1 - the uplink's bytes
 * / the dense bytes) and the downlink compressor from the scenario. */
int fp_vi_params(struct fp_algo_params *p, const struct fp_scenario *sc, struct fp_error *err);

/* MASHA's coin of round `round`: 1 when the reference point w is refreshed
 * (probability 1 - tau). A pure function of (seed, round): the server and
 * every client draw it alike, so it costs no bits. */
int fp_vi_coin(const struct fp_algo_params *p, uint32_t round);

int fp_vi_phase(const struct fp_algo_params *p, uint32_t round, unsigned phase);
size_t fp_vi_broadcast_bytes(const struct fp_algo_params *p, uint32_t round, unsigned phase);
size_t fp_vi_upload_bytes(const struct fp_algo_params *p, uint32_t round, unsigned phase);
size_t fp_vi_cap(const struct fp_algo_params *p);

int fp_vi_server_broadcast(struct fp_server *s, uint64_t run, uint32_t round, unsigned phase,
                           uint8_t *out, size_t cap, size_t *len);
int fp_vi_client_update(const struct fp_algo_params *p, const struct fp_msg_header *who,
                        const uint8_t *bcast, size_t bcast_len, const struct fp_client_state *cs,
                        struct fp_client_state *next, const struct fp_workload *w, void *wws,
                        struct fp_algo_ws *ws, uint8_t *out, size_t out_cap, size_t *out_len,
                        double *train_loss, struct fp_error *err);
/* Decodes one upload's payload (its header checked) into the sum. */
int fp_vi_server_add(struct fp_server *s, uint32_t client, const uint8_t *payload, size_t len,
                     struct fp_error *err);
void fp_vi_server_finish(struct fp_server *s);

#endif
