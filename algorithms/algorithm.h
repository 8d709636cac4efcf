/*
 * algorithms/algorithm.h — federated algorithms as pure state machines.
 *
 * The same functions run in the simulator and (later) in the daemons: the
 * server encodes a broadcast message (fp_algo_server_broadcast); from its
 * bytes, the client's own state and its workload, fp_algo_client_update()
 * runs the K local steps and writes the upload message; the server checks
 * and decodes the round's uploads in ascending client id
 * (fp_algo_server_add) and applies them (fp_algo_server_finish). No I/O,
 * no clocks, no global state: every random draw comes from the keyed
 * stream (seed, round, client, MINIBATCH / COMPRESS).
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
#include "../core/msg.h"
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
    /* The error-feedback family (EF21, EF21-W, EControl, EF14): */
    double gamma;            /* the step */
    double eta;              /* EControl's feedback strength */
    double kappa;            /* EF21-W: L_i = kappa^(i/(N-1)) (fp_lsq_law), the weights' source */
    double Lsum;             /* EF21-W: sum_i L_i, in ascending i */
    double tau;              /* MASHA: 1 - tau = the refresh probability (vi.c) */
    struct fp_compressor up; /* uplink; identity for the full-precision baselines */
    struct fp_compressor
        down; /* downlink: [compressor] downlink (VI methods, EF21-BC), else identity */
    /* EF21-BC [FSR+21]: ef21 with a compressed broadcast ([compressor]
     * downlink not identity); the server and every client keep w, the
     * clients' estimate of x (algorithm.c) */
    int bc;
    struct fp_compressor dense; /* identity: the EF21 family's first-round upload */
};

struct fp_server {
    struct fp_algo_params p;
    const struct fp_algorithm *alg;
    float *x;    /* global model [d] */
    float *c;    /* global control variate [d]; NULL when the algorithm has none */
    double *sum; /* [d] accumulator for the round's decoded uploads */
    float *dec;  /* [d] one decoded upload */
    void *cws;   /* uplink compressor workspace, for decoding */
    void *dws;   /* downlink compressor workspace, for encoding */
    void *nws;   /* dense (identity) workspace, for the EF21 family's first round */
    /* the exchange in progress (fp_algo_server_broadcast): every upload
     * added must name it */
    uint64_t run;
    uint32_t round;
    uint16_t phase;
    int64_t last_client; /* the last client added to it; -1 before the first */
    int open;            /* an exchange is in progress: broadcast, not yet finished */
    /* the VI methods (vi.c): w, F(w), e_s and the pending aggregate [4d],
     * and one encoded downlink message; NULL for every other algorithm */
    float *vi;
    uint8_t *vbuf;
    /* x and vi when round vi_round's first exchange was broadcast: a
     * coordinator that tries a round again (too few uploads in a later
     * exchange) broadcasts its phase 0 again, and the server restarts the
     * round from here; vi_added counts the exchange's uploads, and an
     * exchange finished without every client's (one refused) is not
     * applied: vi_lost, and the next broadcast fails */
    float *vi_snap;
    uint32_t vi_round, vi_added;
    int vi_lost;
    /* EF21-BC: w (what every client holds of x) and, between a broadcast
     * and its finish, w + C_M(x - w), committed by the finish; bc_lost: a
     * finish without every client's upload, and the next broadcast fails
     * (a client left out keeps its old w: no resync message exists) */
    float *bw, *bwn;
    int bc_lost;
};

/* Per-client state; each vector is NULL until the client is first sampled,
 * which stands for the zero vector the papers start from. */
struct fp_client_state {
    float *ci;  /* control variate c_i (SCAFFOLD, SCALLION, SCAFCOM); EF21 family: h_i */
    float *mem; /* FedEF, EF14, EControl: error e_i; SCAFCOM: w_i = v_i - c_i (see algorithm.c) */
    float *vi;  /* the VI methods (vi.c): z, w, F(w), F_m(w), e_m [5d] */
    float *bw;  /* EF21-BC: the client's copy of the server's estimate w */
    /* vi's exchange: round << 16 | (phase + 1), 0 when unknown (loaded).
     * A later phase of the same round continues from the state of the
     * phase before, committed (the simulator commits every exchange) or
     * not (a client daemon commits once the round is included). */
    uint64_t vi_tag;
};

struct fp_algo_ws {
    float *y, *g, *msg, *vhat; /* [d] each */
    float *bx, *bc;            /* [d] each: the broadcast x and c, decoded */
    float *zero;               /* [d] zeros: the state of a client never included */
    void *cws;                 /* uplink compressor workspace */
    void *dws;                 /* downlink compressor workspace */
    void *nws;                 /* dense (identity) workspace */
};

/* Fills p from a scenario for a model of d parameters; sets up the
 * compressor and resolves alpha = auto. FP_EINVAL if they do not fit. */
int fp_algo_params_from(struct fp_algo_params *p, const struct fp_scenario *sc, size_t d,
                        struct fp_error *err);

/* Sets p->up from an uplink spec and p->down to the algorithm's downlink
 * compressor (identity), for p->kind and p->d; FP_EINVAL with a message if
 * the uplink's class does not fit the algorithm (core/registry.h).
 * fp_algo_params_from calls it, then sets a VI method's downlink, or
 * EF21-BC's (ef21 with a compressed broadcast, p->bc), from [compressor]
 * downlink (vi.h, algorithm.c). */
int fp_algo_params_compressors(struct fp_algo_params *p, const struct fp_comp_spec *uplink,
                               struct fp_error *err);

int fp_server_init(struct fp_server *s, const struct fp_algo_params *p, struct fp_error *err);
void fp_server_free(struct fp_server *s);

int fp_algo_ws_init(struct fp_algo_ws *ws, const struct fp_algo_params *p);
void fp_algo_ws_free(struct fp_algo_ws *ws, const struct fp_algo_params *p);
void fp_client_state_free(struct fp_client_state *cs);

/* Whether the algorithm keeps control variates (c on the server, c_i on clients). */
int fp_algo_has_control(const struct fp_algo_params *p);

/* The EF family's step from the papers' theory (docs/algorithms.md):
 * gamma = 1/(L + Ltilde sqrt(beta/theta)), theta = 1 - sqrt(1 - a),
 * beta = (1 - a)/(1 - sqrt(1 - a)), a the uplink's contraction q (k/d for
 * top-k, 1 for identity: then gamma = 1/L), Ltilde = L_AM for EF21-W and
 * L_QM for the others. */
double fp_algo_ef_theory_step(enum fp_algo_kind kind, double L, double L_qm, double L_am, double a);
/* EF21-W's weight w_i = L_i / sum_j L_j (1/N for the rest of the family)
 * and the client's scale 1/(N w_i). */
void fp_algo_ef_weight(const struct fp_algo_params *p, uint32_t client, double *w, float *scale);

/*
 * A round is a sequence of exchanges, phases 0, 1, ..., that the algorithm
 * defines: in each, the server encodes one broadcast for every participant,
 * each participant answers with one upload, and the server aggregates the
 * uploads in ascending client id. Every message is a core/msg.h header
 * (run, round, phase, client) followed by the payload its direction's
 * compressor encoded; a receiver checks the header before it decodes. A
 * driver loops
 *
 *   for (phase = 0; fp_algo_server_phase(s, round, phase); phase++) {
 *       fp_algo_server_broadcast(s, run, round, phase, ...);
 *       each participant: fp_algo_client_update(... broadcast ...) -> upload
 *       fp_algo_server_add(s, client, upload) in ascending client id;
 *       fp_algo_server_finish(s, included);
 *   }
 *
 * and knows nothing of what a phase means. Every algorithm but the VI
 * methods has one exchange per round (phase 0: x, and c for the SCAFFOLD
 * family, down; one compressed vector up); EG and MASHA have two or three,
 * with compressed broadcasts, dense refreshes and 0-byte payloads (vi.c,
 * docs/algorithms.md).
 */

/* Whether exchange `phase` of round `round` takes place; asked after phase
 * - 1 finished, so an algorithm may decide from what the server holds
 * (e.g. a coin it drew). Always 1 for phase 0. */
int fp_algo_server_phase(const struct fp_server *s, uint32_t round, unsigned phase);

/* Payload bytes of the broadcast of exchange (round, phase) (to each
 * participant) and of one upload: what the store records per client (the
 * 32-byte header is not counted). By round too, since an algorithm may
 * open with a different exchange (MASHA's and EF21's dense first round);
 * the decoders check a header's length against exactly these. */
size_t fp_algo_broadcast_bytes(const struct fp_algo_params *p, uint32_t round, unsigned phase);
size_t fp_algo_upload_bytes(const struct fp_algo_params *p, uint32_t round, unsigned phase);
/* The largest whole message (header + payload) of any round and phase, per
 * direction: what a driver sizes its buffers by. */
size_t fp_algo_broadcast_cap(const struct fp_algo_params *p);
size_t fp_algo_upload_cap(const struct fp_algo_params *p);

/* Writes the broadcast of exchange (run, round, phase) into out (cap >=
 * fp_algo_broadcast_cap, else FP_EINVAL) and starts the exchange's
 * aggregation: the uploads added next must answer it. FP_EFORMAT if the
 * state to broadcast is not finite (training diverged). */
int fp_algo_server_broadcast(struct fp_server *s, uint64_t run, uint32_t round, unsigned phase,
                             uint8_t *out, size_t cap, size_t *len);

/* Runs client who->client's part of exchange (who->run, who->round,
 * who->phase) from the broadcast message bcast[0..bcast_len) and writes its
 * upload message into out (out_cap >= fp_algo_upload_cap): the K local
 * steps and the compressed message. The client's state is computed, then
 * committed: cs (its current state) is only read; the state it will have
 * if the server includes the upload goes to next (vectors allocated there
 * on first use, every one written whole), and becomes current only through
 * fp_algo_client_commit. A dropped or late upload is never committed, so
 * the client stays as it was: c = (1/N) sum c_i holds and FedEF loses no
 * error mass. *train_loss = mean minibatch loss over the K steps.
 * FP_EFORMAT if the broadcast is not the one named by who, or does not
 * decode, or the update is not finite (err says which). */
int fp_algo_client_update(const struct fp_algo_params *p, const struct fp_msg_header *who,
                          const uint8_t *bcast, size_t bcast_len, const struct fp_client_state *cs,
                          struct fp_client_state *next, const struct fp_workload *w, void *wws,
                          struct fp_algo_ws *ws, uint8_t *out, size_t out_cap, size_t *out_len,
                          double *train_loss, struct fp_error *err);

/* The server included the upload fp_algo_client_update made with this
 * next: it becomes the client's state. next receives the old vectors, to be
 * reused as scratch by a later update (or freed with
 * fp_client_state_free). */
void fp_algo_client_commit(const struct fp_algo_params *p, struct fp_client_state *cs,
                           struct fp_client_state *next);

/* Adds client `client`'s upload message to the exchange in progress; add
 * in strictly ascending client id (an upload of a client at or below the
 * last one added is refused, FP_EINVAL: it would be counted twice, or
 * summed in another order than every other driver's). The exchange's (round, client) keys the
 * decoder's random stream (rand-k's mask). A malformed upload (wrong size,
 * non-canonical encoding, non-finite value) is FP_EFORMAT and leaves the
 * server state unchanged. */
int fp_algo_server_add(struct fp_server *s, uint32_t client, const uint8_t *msg, size_t len,
                       struct fp_error *err);
/* Checks client `client`'s upload message for the exchange in progress
 * as fp_algo_server_add would (header, size, decoding: FP_EFORMAT with
 * the same reason) without adding it, in any order: a driver that learns
 * of a malformed upload when it arrives, not when its turn to be added
 * comes. Uses the server's decode buffer; the state is unchanged. (VI
 * methods: the header and size only.) */
int fp_algo_server_check(struct fp_server *s, uint32_t client, const uint8_t *msg, size_t len,
                         struct fp_error *err);
/* Ends the exchange: applies the aggregate of the `included` uploads
 * added, once: a second call does nothing, and no upload is added after it
 * (FP_EINVAL) until the next broadcast. */
void fp_algo_server_finish(struct fp_server *s, uint32_t included);

/* Checkpoints. The server's state and each client's are separate blobs (a
 * coordinator holds no client state, a client daemon only its own; layouts
 * in algorithm.c): fp_algo_server_save writes fp_algo_server_state_bytes
 * bytes, fp_algo_client_save a client's fp_algo_client_state_bytes (0 when
 * the algorithm keeps no client state; save only clients with
 * fp_algo_client_has_state). The loaders restore into a server (client
 * state) initialised with the same parameters, and refuse with FP_EFORMAT
 * and a message a blob that is truncated, oversized, for another algorithm,
 * size or client, or holds a non-finite value; every check comes before
 * the first write, so a refused blob leaves the state as it was. */
size_t fp_algo_server_state_bytes(const struct fp_algo_params *p);
size_t fp_algo_client_state_bytes(const struct fp_algo_params *p);
int fp_algo_client_has_state(const struct fp_client_state *cs);
void fp_algo_server_save(const struct fp_server *s, uint8_t *out);
void fp_algo_client_save(const struct fp_algo_params *p, uint32_t client,
                         const struct fp_client_state *cs, uint8_t *out);
int fp_algo_server_load(struct fp_server *s, const void *blob, size_t len, struct fp_error *err);
int fp_algo_client_load(const struct fp_algo_params *p, uint32_t client, struct fp_client_state *cs,
                        const void *blob, size_t len, struct fp_error *err);

/* The simulator's checkpoint, which holds both: fp_algo_state_save writes
 * the server's blob and those of every client that has state (cs[0..N),
 * ascending id) into one new malloc'd "FPS2" blob the caller frees.
 * fp_algo_state_load restores it, or the single "FPS1" blob of fedpress
 * before the split, into a server initialised with the same parameters and
 * an array of N empty client states; FP_EFORMAT (with a message) if the
 * blob is truncated, oversized, for another algorithm or size, has client
 * ids out of order or range, or a non-finite value (the server and every
 * client then as they were; FP_ENOMEM alone may leave some loaded). */
int fp_algo_state_save(const struct fp_server *s, const struct fp_client_state *cs, void **blob,
                       size_t *len);
int fp_algo_state_load(struct fp_server *s, struct fp_client_state *cs, const void *blob,
                       size_t len, struct fp_error *err);

#endif
