/*
 * tests/test_algorithm.c — FedAvg and SCAFFOLD (halved uplink) against an
 * independent float64 reference (tests/reference/algorithms_reference.py,
 * which implements the original two-vector SCAFFOLD), the invariant
 * c = mean_i c_i after every round, exact message sizes, and rejection of
 * malformed uploads.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "algorithms/algorithm.h"
#include "algorithms/codec.h"
#include "core/registry.h"

/* ---- the reference problem, defined here independently of workloads/ ---- */
#define NC  4
#define DIM 3
static uint32_t mock_n_local[NC] = {1, 1, 1, 1};

static double mock_a(uint32_t i, size_t j)
{
    return 1 + 0.5 * i + 0.25 * (double)j;
}
static double mock_b(uint32_t i, size_t j)
{
    return (i + 1.0) * ((double)j - 1.0);
}

static void mock_grad(const struct fp_workload *w, void *ws, uint32_t client, const float *y,
                      uint32_t batch, fp_rng *rng, float *g, double *loss)
{
    (void)w, (void)ws, (void)batch, (void)rng;
    double l = 0;
    for (size_t j = 0; j < DIM; j++) {
        double r = y[j] - mock_b(client, j);
        g[j] = (float)(mock_a(client, j) * r);
        l += 0.5 * mock_a(client, j) * r * r;
    }
    *loss = l;
}
static void *mock_ws_new(const struct fp_workload *w)
{
    (void)w;
    return malloc(1);
}
static void mock_ws_free(void *ws)
{
    free(ws);
}
static const struct fp_workload_ops mock_ops = {
    .grad = mock_grad, .ws_new = mock_ws_new, .ws_free = mock_ws_free};
static const struct fp_workload mock_w = {
    .ops = &mock_ops, .d = DIM, .nclients = NC, .n_local = mock_n_local};

static const uint32_t rounds[3][3] = {{0, 2}, {1, 3}, {0, 1, 3}};
static const uint32_t nsel[3] = {2, 2, 3};

struct world {
    struct fp_algo_params p;
    struct fp_server s;
    struct fp_client_state cs[NC];
    struct fp_client_state next[NC]; /* each client's pending state */
    struct fp_algo_ws ws;
    void *wws;
};

static void world_init_c(struct world *W, enum fp_algo_kind kind, float lr_g,
                         enum fp_comp_kind comp, double ratio, float alpha, float beta)
{
    memset(W, 0, sizeof *W);
    W->p = (struct fp_algo_params){.kind = kind,
                                   .d = DIM,
                                   .N = NC,
                                   .K = 3,
                                   .batch = 1,
                                   .lr_local = 0.1f,
                                   .lr_global = lr_g,
                                   .alpha = alpha,
                                   .beta = beta,
                                   .seed = 1};
    struct fp_error err;
    struct fp_comp_spec spec = {.kind = comp, .ratio = ratio, .levels = 4};
    assert_int_equal(fp_algo_params_compressors(&W->p, &spec, &err), 0);
    assert_int_equal(fp_server_init(&W->s, &W->p, &err), 0);
    W->s.x[0] = 0.5f, W->s.x[1] = -0.25f, W->s.x[2] = 1.0f;
    assert_int_equal(fp_algo_ws_init(&W->ws, &W->p), 0);
    W->wws = mock_ws_new(&mock_w);
}

static void world_init(struct world *W, enum fp_algo_kind kind, float lr_g)
{
    world_init_c(W, kind, lr_g, FP_COMP_IDENTITY, 1.0, 1.0f, 1.0f);
}

static void world_free(struct world *W)
{
    for (int i = 0; i < NC; i++) {
        fp_client_state_free(&W->cs[i]);
        fp_client_state_free(&W->next[i]);
    }
    fp_algo_ws_free(&W->ws, &W->p);
    fp_server_free(&W->s);
    mock_ws_free(W->wws);
}

/* c must equal (1/NC) sum over ALL clients of c_i (unsampled ones hold 0). */
static void check_c_is_mean(const struct world *W)
{
    for (size_t j = 0; j < DIM; j++) {
        double m = 0;
        for (int i = 0; i < NC; i++)
            m += W->cs[i].ci ? W->cs[i].ci[j] : 0.0;
        m /= NC;
        assert_true(fabs(W->s.c[j] - m) <= 1e-6 * (1 + fabs(m)));
    }
}

#define RUN_ID 77

/* Starts exchange (round, phase 0): the broadcast message into bc. */
static size_t broadcast(struct world *W, uint32_t round, uint8_t *bc, size_t cap)
{
    size_t blen = 0;
    assert_true(fp_algo_server_phase(&W->s, round, 0));
    assert_int_equal(fp_algo_server_broadcast(&W->s, RUN_ID, round, 0, bc, cap, &blen), 0);
    assert_int_equal(blen, FP_MSG_HEADER + fp_algo_broadcast_bytes(&W->p, 1, 0));
    return blen;
}

/* Client i's upload message for (round, phase 0) into msg; its length. */
static size_t client_upload(struct world *W, uint32_t round, uint32_t i, const uint8_t *bc,
                            size_t blen, uint8_t *msg, size_t cap)
{
    struct fp_error err;
    size_t len = 0;
    double loss = -1;
    const struct fp_msg_header who = {.run = RUN_ID, .round = round, .phase = 0, .client = i};
    assert_int_equal(fp_algo_client_update(&W->p, &who, bc, blen, &W->cs[i], &W->next[i], &mock_w,
                                           W->wws, &W->ws, msg, cap, &len, &loss, &err),
                     0);
    assert_int_equal(len, FP_MSG_HEADER + fp_algo_upload_bytes(&W->p, 1, 0));
    assert_true(loss >= 0);
    return len;
}

static void run_round(struct world *W, int r)
{
    uint8_t msg[FP_MSG_HEADER + 64], bc[FP_MSG_HEADER + 64];
    struct fp_error err;
    float x_before[DIM];
    memcpy(x_before, W->s.x, sizeof x_before);
    const uint32_t round = (uint32_t)r + 1;
    size_t blen = broadcast(W, round, bc, sizeof bc);
    for (uint32_t k = 0; k < nsel[r]; k++) {
        uint32_t i = rounds[r][k];
        size_t len = client_upload(W, round, i, bc, blen, msg, sizeof msg);
        /* the client must not have changed the broadcast it trained from */
        assert_memory_equal(W->s.x, x_before, sizeof x_before);
        assert_int_equal(fp_algo_server_add(&W->s, i, msg, len, &err), 0);
        fp_algo_client_commit(&W->p, &W->cs[i], &W->next[i]);
    }
    assert_false(fp_algo_server_phase(&W->s, round, 1)); /* one exchange per round */
    fp_algo_server_finish(&W->s, nsel[r]);
}

/* Rounds 0, 1 and 2, checking after each that c = mean_i c_i (SCAFFOLD's
 * invariant, which SCALLION and SCAFCOM keep too). */
static void run_rounds_checking_c(struct world *W)
{
    for (int r = 0; r < 3; r++) {
        run_round(W, r);
        check_c_is_mean(W);
    }
}

static void assert_close(const float *got, const double *want, size_t n, double rtol)
{
    for (size_t j = 0; j < n; j++)
        if (!(fabs(got[j] - want[j]) <= rtol * (1 + fabs(want[j]))))
            fail_msg("[%zu]: got %.9g want %.9g", j, got[j], want[j]);
}

/* Expected values printed by tests/reference/algorithms_reference.py. */
static void test_fedavg_matches_reference(void **state)
{
    (void)state;
    const double want1[DIM] = {-2.1955258608333335, -0.035953281118100158, 2.5427937119140624};
    const double want05[DIM] = {-1.1888148315625, -0.11082321728138442, 2.0214095219319663};
    struct world W;
    world_init(&W, FP_ALGO_FEDAVG, 1.0f);
    for (int r = 0; r < 3; r++)
        run_round(&W, r);
    assert_close(W.s.x, want1, DIM, 2e-6);
    assert_null(W.s.c);
    world_free(&W);
    world_init(&W, FP_ALGO_FEDAVG, 0.5f);
    for (int r = 0; r < 3; r++)
        run_round(&W, r);
    assert_close(W.s.x, want05, DIM, 2e-6);
    world_free(&W);
}

static void test_scaffold_halved_equals_two_vector(void **state)
{
    (void)state;
    const double x1[DIM] = {-2.6504683980960646, 6.6275240524053119e-05, 2.8071022118055553};
    const double c1[DIM] = {1.9034744240596058, -0.13192837226641696, -0.85625379340277652};
    const double ci1[NC][DIM] = {{-1.3679606847685188, -0.025093447193525444, 2.521278229166668},
                                 {-0.63749712138020831, -0.017234594355093252, 1.4825338888888899},
                                 {5.6933333333333334, -0.44542968749999995, -3.8541666666666661},
                                 {3.9260221690538182, -0.039955760017049216, -3.5746606249999986}};
    const double x05[DIM] = {-1.4459202670428244, -0.08947051544752771, 2.1729013053792317};
    const double c05[DIM] = {3.2260771598668976, -0.24989013069303231, -1.8582375381808807};
    struct world W;
    world_init(&W, FP_ALGO_SCAFFOLD, 1.0f);
    run_rounds_checking_c(&W);
    assert_close(W.s.x, x1, DIM, 1e-5);
    assert_close(W.s.c, c1, DIM, 1e-5);
    for (int i = 0; i < NC; i++)
        assert_close(W.cs[i].ci, ci1[i], DIM, 1e-5);
    world_free(&W);

    world_init(&W, FP_ALGO_SCAFFOLD, 0.5f);
    run_rounds_checking_c(&W);
    assert_close(W.s.x, x05, DIM, 1e-5);
    assert_close(W.s.c, c05, DIM, 1e-5);
    world_free(&W);
}

/* A client that was never sampled holds no memory (c_i = 0 implicitly). */
static void test_client_state_lazy(void **state)
{
    (void)state;
    struct world W;
    world_init(&W, FP_ALGO_SCAFFOLD, 1.0f);
    run_round(&W, 0); /* clients 0 and 2 */
    assert_non_null(W.cs[0].ci);
    assert_null(W.cs[1].ci);
    assert_non_null(W.cs[2].ci);
    assert_null(W.cs[3].ci);
    world_free(&W);
}

static void test_sizes(void **state)
{
    (void)state;
    struct fp_algo_params p = {.kind = FP_ALGO_FEDAVG, .d = 159010};
    struct fp_comp_spec id = {.kind = FP_COMP_IDENTITY};
    struct fp_error err;
    assert_int_equal(fp_algo_params_compressors(&p, &id, &err), 0);
    assert_int_equal(fp_algo_upload_bytes(&p, 1, 0), 636040);
    assert_int_equal(fp_algo_broadcast_bytes(&p, 1, 0), 636040);
    assert_int_equal(fp_algo_upload_cap(&p), 32 + 636040); /* one header per message */
    p.kind = FP_ALGO_SCAFFOLD;
    assert_int_equal(fp_algo_upload_bytes(&p, 1, 0), 636040); /* one vector up: the halved form */
    assert_int_equal(fp_algo_broadcast_bytes(&p, 1, 0), 2 * 636040); /* x and c down */
    assert_int_equal(fp_algo_broadcast_cap(&p), 32 + 2 * 636040);
}

static void test_malformed_upload_rejected(void **state)
{
    (void)state;
    struct world W;
    world_init(&W, FP_ALGO_SCAFFOLD, 1.0f);
    struct fp_error err;
    float v[DIM] = {1, 2, 3};
    uint8_t msg[FP_MSG_HEADER + 4 * DIM], bc[FP_MSG_HEADER + 8 * DIM];
    broadcast(&W, 1, bc, sizeof bc);
    const struct fp_msg_header h = {
        .type = FP_MSG_UPLOAD, .run = RUN_ID, .round = 1, .phase = 0, .client = 0, .len = 4 * DIM};
    fp_msg_encode_header(&h, msg);
    fp_codec_dense_encode(v, DIM, msg + FP_MSG_HEADER);
    assert_int_equal(fp_algo_server_add(&W.s, 0, msg, sizeof msg - 1, &err), FP_EFORMAT);
    v[1] = NAN;
    fp_codec_dense_encode(v, DIM, msg + FP_MSG_HEADER);
    assert_int_equal(fp_algo_server_add(&W.s, 0, msg, sizeof msg, &err), FP_EFORMAT);
    v[1] = INFINITY;
    fp_codec_dense_encode(v, DIM, msg + FP_MSG_HEADER);
    assert_int_equal(fp_algo_server_add(&W.s, 0, msg, sizeof msg, &err), FP_EFORMAT);
    /* the refusals took nothing: the client's good upload is still taken */
    v[1] = 2;
    fp_codec_dense_encode(v, DIM, msg + FP_MSG_HEADER);
    assert_int_equal(fp_algo_server_add(&W.s, 0, msg, sizeof msg + 0, &err), 0);
    /* only the one good upload was summed */
    assert_true(W.s.sum[0] == 1 && W.s.sum[1] == 2 && W.s.sum[2] == 3);
    world_free(&W);
}

/* Rewrites one field of a message's header (the payload stays). */
static void reheader(uint8_t *msg, void (*edit)(struct fp_msg_header *))
{
    struct fp_msg_header h;
    struct fp_error err;
    assert_int_equal(fp_msg_decode_header(msg, &h, &err), 0);
    edit(&h);
    fp_msg_encode_header(&h, msg);
}
static void to_round2(struct fp_msg_header *h)
{
    h->round = 2;
}
static void to_phase1(struct fp_msg_header *h)
{
    h->phase = 1;
}
static void to_run78(struct fp_msg_header *h)
{
    h->run = RUN_ID + 1;
}
static void to_broadcast(struct fp_msg_header *h)
{
    h->type = FP_MSG_BROADCAST;
}
static void to_longer(struct fp_msg_header *h)
{
    h->len++;
}

/* Every upload names its run, round, phase and client, and the server
 * decodes it only if they are the exchange in progress and the client it
 * is offered as: anything else is refused and the aggregate is untouched.
 * With rand-k the (round, client) key picks the mask, so before messages
 * carried headers such an upload decoded silently under the wrong mask. */
static void test_upload_key_checked(void **state)
{
    (void)state;
    struct world W;
    world_init_c(&W, FP_ALGO_FEDPAQ, 1.0f, FP_COMP_RANDK, 0.67, 1.0f, 1.0f);
    run_round(&W, 0);
    run_round(&W, 1);
    uint8_t bc[FP_MSG_HEADER + 64], up2[FP_MSG_HEADER + 64], up3[FP_MSG_HEADER + 64],
        bad[FP_MSG_HEADER + 65];
    const size_t blen = broadcast(&W, 3, bc, sizeof bc);
    const size_t len = client_upload(&W, 3, 2, bc, blen, up2, sizeof up2);
    assert_int_equal(client_upload(&W, 3, 3, bc, blen, up3, sizeof up3), len);
    double sum0[DIM];
    memcpy(sum0, W.s.sum, sizeof sum0);
    struct fp_error err = {0};

    /* client 2's upload offered as client 3's */
    assert_int_equal(fp_algo_server_add(&W.s, 3, up2, len, &err), FP_EFORMAT);
    assert_non_null(strstr(err.msg, "for client 2, expected client 3"));
    void (*edits[])(struct fp_msg_header *) = {to_round2, to_phase1, to_run78, to_broadcast};
    const char *want[] = {"for round 2, expected round 3", "for phase 1, expected phase 0",
                          "for run 78, expected run 77", "a broadcast message where a upload"};
    for (size_t e = 0; e < sizeof edits / sizeof edits[0]; e++) {
        memcpy(bad, up3, len);
        reheader(bad, edits[e]);
        err.msg[0] = 0;
        assert_int_equal(fp_algo_server_add(&W.s, 3, bad, len, &err), FP_EFORMAT);
        if (!strstr(err.msg, want[e]))
            fail_msg("edit %zu: %s", e, err.msg);
    }
    /* wrong length: a byte short, a byte more (header and all), a header only */
    assert_int_equal(fp_algo_server_add(&W.s, 3, up3, len - 1, &err), FP_EFORMAT);
    memcpy(bad, up3, len);
    bad[len] = 0;
    reheader(bad, to_longer);
    assert_int_equal(fp_algo_server_add(&W.s, 3, bad, len + 1, &err), FP_EFORMAT);
    assert_int_equal(fp_algo_server_add(&W.s, 3, up3, FP_MSG_HEADER - 1, &err), FP_EFORMAT);
    /* the server's state is as it was */
    assert_memory_equal(W.s.sum, sum0, sizeof sum0);
    /* and the right uploads, under their own names, are taken */
    assert_int_equal(fp_algo_server_add(&W.s, 2, up2, len, &err), 0);
    assert_int_equal(fp_algo_server_add(&W.s, 3, up3, len, &err), 0);
    fp_algo_client_commit(&W.p, &W.cs[2], &W.next[2]);
    fp_algo_client_commit(&W.p, &W.cs[3], &W.next[3]);
    assert_true(memcmp(W.s.sum, sum0, sizeof sum0) != 0);

    /* a client refuses a broadcast of another round, and keeps its state */
    size_t out_len;
    double loss;
    const struct fp_msg_header who = {.run = RUN_ID, .round = 4, .client = 1};
    assert_int_equal(fp_algo_client_update(&W.p, &who, bc, blen, &W.cs[1], &W.next[1], &mock_w,
                                           W.wws, &W.ws, bad, sizeof bad, &out_len, &loss, &err),
                     FP_EFORMAT);
    assert_non_null(strstr(err.msg, "for round 3, expected round 4"));
    world_free(&W);
}

/* A copy of client i's state (NULL stays NULL). */
static void snapshot(const struct world *W, int i, float *ci, float *mem, int *has_ci, int *has_mem)
{
    *has_ci = W->cs[i].ci != NULL;
    *has_mem = W->cs[i].mem != NULL;
    if (*has_ci)
        memcpy(ci, W->cs[i].ci, sizeof(float) * DIM);
    if (*has_mem)
        memcpy(mem, W->cs[i].mem, sizeof(float) * DIM);
}

/* Uploads dropped on purpose: every client trains each round, the server
 * includes only some. A dropped client's state must be exactly what it was
 * (its pending state is never committed), so c = (1/N) sum c_i holds after
 * rounds with drops and FedEF's error memory keeps its mass. With the state
 * updated as the upload is made (before this was split), the dropped
 * client's c_i moves while c does not, and the check fails by |delta_i|. */
static void test_dropped_uploads_leave_clients_unchanged(void **state)
{
    (void)state;
    const struct {
        enum fp_algo_kind a;
        enum fp_comp_kind c;
        double ratio;
    } algos[] = {{FP_ALGO_SCAFFOLD, FP_COMP_IDENTITY, 1.0},
                 {FP_ALGO_SCALLION, FP_COMP_RANDK, 0.67},
                 {FP_ALGO_SCAFCOM, FP_COMP_TOPK, 0.34},
                 {FP_ALGO_FEDEF, FP_COMP_TOPK, 0.34}};
    /* drop[r][i]: client i's upload in round r + 1 is lost */
    static const int drop[4][NC] = {{0, 1, 0, 0}, {1, 0, 0, 1}, {0, 0, 1, 0}, {0, 1, 0, 1}};
    for (size_t k = 0; k < sizeof algos / sizeof algos[0]; k++) {
        struct world W;
        /* alpha != 1 is SCALLION's alone (fp_algo_params_from sets 1 otherwise) */
        const float alpha = algos[k].a == FP_ALGO_SCALLION ? 0.5f : 1.0f;
        world_init_c(&W, algos[k].a, 1.0f, algos[k].c, algos[k].ratio, alpha, 0.5f);
        for (uint32_t r = 0; r < 4; r++) {
            const uint32_t round = r + 1;
            uint8_t bc[FP_MSG_HEADER + 64], up[NC][FP_MSG_HEADER + 64];
            size_t len[NC];
            float ci[NC][DIM], mem[NC][DIM];
            int has_ci[NC], has_mem[NC];
            size_t blen = broadcast(&W, round, bc, sizeof bc);
            for (uint32_t i = 0; i < NC; i++) {
                snapshot(&W, (int)i, ci[i], mem[i], &has_ci[i], &has_mem[i]);
                len[i] = client_upload(&W, round, i, bc, blen, up[i], sizeof up[i]);
            }
            uint32_t included = 0;
            struct fp_error err;
            for (uint32_t i = 0; i < NC; i++) {
                if (drop[r][i])
                    continue;
                assert_int_equal(fp_algo_server_add(&W.s, i, up[i], len[i], &err), 0);
                fp_algo_client_commit(&W.p, &W.cs[i], &W.next[i]);
                included++;
            }
            fp_algo_server_finish(&W.s, included);
            for (uint32_t i = 0; i < NC; i++) {
                if (!drop[r][i])
                    continue;
                /* exactly as before the round: bits, or still never allocated */
                assert_int_equal(W.cs[i].ci != NULL, has_ci[i]);
                assert_int_equal(W.cs[i].mem != NULL, has_mem[i]);
                if (has_ci[i])
                    assert_memory_equal(W.cs[i].ci, ci[i], sizeof ci[i]);
                if (has_mem[i])
                    assert_memory_equal(W.cs[i].mem, mem[i], sizeof mem[i]);
            }
            if (W.s.c)
                check_c_is_mean(&W);
        }
        /* the drops were real: some client's state did move in some round */
        assert_non_null(algos[k].a == FP_ALGO_FEDEF ? W.cs[0].mem : W.cs[0].ci);
        world_free(&W);
    }
}

/* Each upload is added once, in ascending client id, while its exchange is
 * in progress: a second copy of an upload (a retransmission, a replay)
 * would otherwise count twice in the mean, and an upload after the
 * exchange finished would reach the next one's aggregate. */
static void test_upload_added_once(void **state)
{
    (void)state;
    struct world W;
    world_init(&W, FP_ALGO_FEDAVG, 1.0f);
    uint8_t bc[FP_MSG_HEADER + 64], up1[FP_MSG_HEADER + 64], up2[FP_MSG_HEADER + 64];
    const size_t blen = broadcast(&W, 1, bc, sizeof bc);
    const size_t len = client_upload(&W, 1, 2, bc, blen, up2, sizeof up2);
    assert_int_equal(client_upload(&W, 1, 1, bc, blen, up1, sizeof up1), len);
    struct fp_error err = {0};
    assert_int_equal(fp_algo_server_add(&W.s, 2, up2, len, &err), 0);
    double sum1[DIM];
    memcpy(sum1, W.s.sum, sizeof sum1);
    assert_int_equal(fp_algo_server_add(&W.s, 2, up2, len, &err), FP_EINVAL);
    assert_non_null(strstr(err.msg, "added already"));
    assert_int_equal(fp_algo_server_add(&W.s, 1, up1, len, &err), FP_EINVAL);
    assert_memory_equal(W.s.sum, sum1, sizeof sum1);
    fp_algo_server_finish(&W.s, 1);
    float x1[DIM];
    memcpy(x1, W.s.x, sizeof x1);
    assert_int_equal(fp_algo_server_add(&W.s, 3, up2, len, &err), FP_EINVAL);
    assert_non_null(strstr(err.msg, "no exchange in progress"));
    fp_algo_server_finish(&W.s, 1);
    /* a second finish of the same exchange applies nothing again */
    assert_memory_equal(W.s.x, x1, sizeof x1);
    world_free(&W);
}

/* Runs two worlds through the same rounds and demands identical bytes: x,
 * and with control variates (with_c) c and every client's c_i, which must
 * then exist in both, so that their comparison cannot be skipped. */
static void assert_worlds_identical(struct world *A, struct world *B, int with_c)
{
    int compared_ci = 0;
    for (int r = 0; r < 3; r++) {
        run_round(A, r);
        run_round(B, r);
        assert_memory_equal(A->s.x, B->s.x, DIM * sizeof(float));
        assert_int_equal(A->s.c != NULL, with_c);
        assert_int_equal(B->s.c != NULL, with_c);
        if (with_c)
            assert_memory_equal(A->s.c, B->s.c, DIM * sizeof(float));
        for (int i = 0; i < NC; i++) {
            assert_int_equal(A->cs[i].ci != NULL, B->cs[i].ci != NULL);
            if (A->cs[i].ci) {
                assert_memory_equal(A->cs[i].ci, B->cs[i].ci, DIM * sizeof(float));
                compared_ci++;
            }
        }
    }
    if (with_c)
        assert_true(compared_ci > 0);
    else
        assert_int_equal(compared_ci, 0);
    world_free(A);
    world_free(B);
}

/* The known identities, bit for bit: SCALLION(identity, alpha = 1),
 * SCAFCOM(identity, beta = 1) and SCAFFOLD; FedPAQ(identity), FedEF(identity)
 * and FedAvg. */
static void test_identities(void **state)
{
    (void)state;
    struct world A, B;
    world_init(&A, FP_ALGO_SCAFFOLD, 1.0f);
    world_init_c(&B, FP_ALGO_SCALLION, 1.0f, FP_COMP_IDENTITY, 1.0, 1.0f, 1.0f);
    assert_worlds_identical(&A, &B, 1);
    world_init(&A, FP_ALGO_SCAFFOLD, 0.5f);
    world_init_c(&B, FP_ALGO_SCAFCOM, 0.5f, FP_COMP_IDENTITY, 1.0, 1.0f, 1.0f);
    assert_worlds_identical(&A, &B, 1);
    world_init(&A, FP_ALGO_FEDAVG, 1.0f);
    world_init_c(&B, FP_ALGO_FEDPAQ, 1.0f, FP_COMP_IDENTITY, 1.0, 1.0f, 1.0f);
    assert_worlds_identical(&A, &B, 0);
    world_init(&A, FP_ALGO_FEDAVG, 1.0f);
    world_init_c(&B, FP_ALGO_FEDEF, 1.0f, FP_COMP_IDENTITY, 1.0, 1.0f, 1.0f);
    assert_worlds_identical(&A, &B, 0);
    /* and the identities are not vacuous: beta < 1 does change SCAFCOM */
    world_init(&A, FP_ALGO_SCAFFOLD, 1.0f);
    world_init_c(&B, FP_ALGO_SCAFCOM, 1.0f, FP_COMP_IDENTITY, 1.0, 1.0f, 0.5f);
    for (int r = 0; r < 3; r++)
        run_round(&A, r), run_round(&B, r);
    assert_memory_not_equal(A.s.x, B.s.x, DIM * sizeof(float));
    world_free(&A);
    world_free(&B);
}

/* Against tests/reference/algorithms_reference.py (top-k with k = 1 of d = 3
 * is deterministic, so the float64 reference reproduces it exactly; SCAFCOM
 * there is written in the v_i form, fedpress keeps w_i = v_i - c_i). */
static void test_compressed_match_reference(void **state)
{
    (void)state;
    const double fedef_x[DIM] = {-1.7557333281666667, -0.25, 2.6393333333333331};
    const double sc_x[DIM] = {-2.4201950192722803, -0.018256375124449224, 2.6731454865451387};
    const double sc_c[DIM] = {1.6561409626754195, -0.12647188866423892, -0.85810842610677085};
    const double cm_x[DIM] = {-1.6243707162667826, -0.25, 1.6147499999999999};
    const double cm_c[DIM] = {2.0080000437051502, 0, -1.5368749999999998};
    struct world W;

    world_init_c(&W, FP_ALGO_FEDEF, 1.0f, FP_COMP_TOPK, 0.34, 1.0f, 1.0f); /* k = 1 */
    for (int r = 0; r < 3; r++)
        run_round(&W, r);
    assert_close(W.s.x, fedef_x, DIM, 1e-5);
    world_free(&W);

    world_init_c(&W, FP_ALGO_SCALLION, 1.0f, FP_COMP_IDENTITY, 1.0, 0.5f, 1.0f);
    run_rounds_checking_c(&W);
    assert_close(W.s.x, sc_x, DIM, 1e-5);
    assert_close(W.s.c, sc_c, DIM, 1e-5);
    world_free(&W);

    world_init_c(&W, FP_ALGO_SCAFCOM, 1.0f, FP_COMP_TOPK, 0.34, 1.0f, 0.5f);
    run_rounds_checking_c(&W);
    assert_close(W.s.x, cm_x, DIM, 1e-5);
    assert_close(W.s.c, cm_c, DIM, 1e-5);
    world_free(&W);
}

/* c = mean_i c_i after every round with random compressors too. */
static void test_control_variate_invariant_compressed(void **state)
{
    (void)state;
    struct world W;
    world_init_c(&W, FP_ALGO_SCALLION, 1.0f, FP_COMP_RANDK, 0.34, 0.25f, 1.0f);
    run_rounds_checking_c(&W);
    world_free(&W);
    world_init_c(&W, FP_ALGO_SCALLION, 1.0f, FP_COMP_QSGD, 1.0, 0.5f, 1.0f);
    run_rounds_checking_c(&W);
    world_free(&W);
    world_init_c(&W, FP_ALGO_SCAFCOM, 1.0f, FP_COMP_SIGN, 1.0, 1.0f, 0.3f);
    run_rounds_checking_c(&W);
    world_free(&W);
}

/* The class rules hold for any driver, not only behind the scenario parser. */
static void test_params_reject_wrong_class(void **state)
{
    (void)state;
    const struct {
        enum fp_algo_kind a;
        enum fp_comp_kind c;
        int ok;
    } cases[] = {
        {FP_ALGO_FEDAVG, FP_COMP_TOPK, 0},       {FP_ALGO_SCAFFOLD, FP_COMP_RANDK, 0},
        {FP_ALGO_SCALLION, FP_COMP_TOPK, 0},     {FP_ALGO_FEDPAQ, FP_COMP_SIGN, 0},
        {FP_ALGO_SCAFCOM, FP_COMP_QSGD, 0},      {FP_ALGO_FEDEF, FP_COMP_RANDK, 0},
        {FP_ALGO_SCALLION, FP_COMP_RANDK, 1},    {FP_ALGO_SCAFCOM, FP_COMP_TOPK_QSGD, 1},
        {FP_ALGO_FEDEF, FP_COMP_SIGN, 1},        {FP_ALGO_FEDPAQ, FP_COMP_QSGD, 1},
        {FP_ALGO_SCAFFOLD, FP_COMP_IDENTITY, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fp_scenario sc;
        fp_scenario_defaults(&sc);
        sc.algorithm = cases[i].a;
        sc.uplink.kind = cases[i].c;
        sc.uplink.levels = 4;
        struct fp_algo_params p;
        struct fp_error err = {0};
        int rc = fp_algo_params_from(&p, &sc, 1000, &err);
        if ((rc == 0) != cases[i].ok)
            fail_msg("case %zu: rc %d (%s)", i, rc, err.msg);
    }
    /* the downlink: identity for every algorithm today, per the registry */
    char why[256];
    struct fp_comp_spec topk = {.kind = FP_COMP_TOPK}, id = {.kind = FP_COMP_IDENTITY};
    for (enum fp_algo_kind a = FP_ALGO_FEDAVG; a <= FP_ALGO_SCAFCOM; a++) {
        assert_int_equal(fp_algo_comp_misfit(a, FP_DOWNLINK, &id, why, sizeof why), 0);
        assert_int_equal(fp_algo_comp_misfit(a, FP_DOWNLINK, &topk, why, sizeof why), 1);
    }
    /* alpha = auto is 1/(1 + omega): rand-k of 1000 at ratio 0.01 has omega = 99 */
    struct fp_scenario sc;
    fp_scenario_defaults(&sc);
    sc.algorithm = FP_ALGO_SCALLION;
    sc.uplink.kind = FP_COMP_RANDK;
    struct fp_algo_params p;
    struct fp_error err = {0};
    assert_int_equal(fp_algo_params_from(&p, &sc, 1000, &err), 0);
    assert_true(p.alpha == (float)(1.0 / 100.0));
}

/* A checkpoint restores x, c and every client's vectors bit for bit, and a
 * blob that does not fit is refused with FP_EFORMAT. */
static void test_state_roundtrip_and_rejects(void **state)
{
    (void)state;
    struct world A, B;
    world_init_c(&A, FP_ALGO_SCAFCOM, 1.0f, FP_COMP_TOPK, 0.34, 1.0f, 0.5f);
    world_init_c(&B, FP_ALGO_SCAFCOM, 1.0f, FP_COMP_TOPK, 0.34, 1.0f, 0.5f);
    run_round(&A, 0);
    run_round(&A, 1);
    void *blob;
    size_t len;
    struct fp_error err;
    assert_int_equal(fp_algo_state_save(&A.s, A.cs, &blob, &len), 0);
    /* FPS2: header 32, the server's blob (32 + x + c), 4 client blobs (32 + c_i + w_i) */
    assert_int_equal(len, 32 + (32 + 2 * 12) + 4 * (32 + 2 * 12));
    assert_int_equal(fp_algo_state_load(&B.s, B.cs, blob, len, &err), 0);
    run_round(&A, 2);
    run_round(&B, 2);
    assert_memory_equal(A.s.x, B.s.x, sizeof(float) * DIM);
    assert_memory_equal(A.s.c, B.s.c, sizeof(float) * DIM);
    for (int i = 0; i < NC; i++) {
        assert_memory_equal(A.cs[i].ci, B.cs[i].ci, sizeof(float) * DIM);
        assert_memory_equal(A.cs[i].mem, B.cs[i].mem, sizeof(float) * DIM);
    }
    struct world C;
    world_init_c(&C, FP_ALGO_SCAFCOM, 1.0f, FP_COMP_TOPK, 0.34, 1.0f, 0.5f);
    uint8_t *b = blob;
    assert_int_equal(fp_algo_state_load(&C.s, C.cs, b, len - 1, &err), FP_EFORMAT);
    assert_int_equal(fp_algo_state_load(&C.s, C.cs, b, 10, &err), FP_EFORMAT);
    uint8_t *bad = malloc(len);
    memcpy(bad, b, len);
    bad[8] = FP_ALGO_SCAFFOLD; /* another algorithm's state */
    assert_int_equal(fp_algo_state_load(&C.s, C.cs, bad, len, &err), FP_EFORMAT);
    memcpy(bad, b, len);
    uint32_t id = 7; /* first client id beyond N = 4 */
    memcpy(bad + 32 + 56 + 24, &id, 4);
    assert_int_equal(fp_algo_state_load(&C.s, C.cs, bad, len, &err), FP_EFORMAT);
    memcpy(bad, b, len);
    float nan = NAN;
    memcpy(bad + 32 + 32, &nan, 4); /* x[0] */
    assert_int_equal(fp_algo_state_load(&C.s, C.cs, bad, len, &err), FP_EFORMAT);
    free(bad);
    free(blob);
    world_free(&A);
    world_free(&B);
    world_free(&C);
}

/* Writes the FPS1 checkpoint of fedpress before the server and client
 * states were split, as docs/store.md described it then (written out here,
 * not by the code under test): header (magic, version 1, algorithm, flags,
 * d as u64, N, client count), x, c, then per client its u32 id, c_i, w_i. */
static size_t fps1_blob(const struct world *W, uint8_t *out)
{
    uint8_t *p = out;
    uint32_t h[4] = {0x31535046u, 1, (uint32_t)W->p.kind, 1 | 2 | 4};
    uint64_t d = DIM;
    uint32_t N = NC, n = 0;
    for (int i = 0; i < NC; i++)
        n += W->cs[i].ci != NULL;
    memcpy(p, h, 16), p += 16;
    memcpy(p, &d, 8), p += 8;
    memcpy(p, &N, 4), p += 4;
    memcpy(p, &n, 4), p += 4;
    memcpy(p, W->s.x, 4 * DIM), p += 4 * DIM;
    memcpy(p, W->s.c, 4 * DIM), p += 4 * DIM;
    for (uint32_t i = 0; i < NC; i++) {
        if (!W->cs[i].ci)
            continue;
        memcpy(p, &i, 4), p += 4;
        memcpy(p, W->cs[i].ci, 4 * DIM), p += 4 * DIM;
        memcpy(p, W->cs[i].mem, 4 * DIM), p += 4 * DIM;
    }
    return (size_t)(p - out);
}

/* A checkpoint in the old single-blob format (stores written before the
 * split) still restores everything bit for bit, so those runs resume. */
static void test_state_fps1_still_loads(void **state)
{
    (void)state;
    struct world A, B;
    world_init_c(&A, FP_ALGO_SCAFCOM, 1.0f, FP_COMP_TOPK, 0.34, 1.0f, 0.5f);
    world_init_c(&B, FP_ALGO_SCAFCOM, 1.0f, FP_COMP_TOPK, 0.34, 1.0f, 0.5f);
    run_round(&A, 0); /* clients 0 and 2 only: 1 and 3 have no state */
    uint8_t blob[32 + 2 * 12 + NC * (4 + 2 * 12)];
    size_t len = fps1_blob(&A, blob);
    assert_int_equal(len, 32 + 2 * 12 + 2 * (4 + 2 * 12));
    struct fp_error err;
    assert_int_equal(fp_algo_state_load(&B.s, B.cs, blob, len, &err), 0);
    assert_memory_equal(A.s.x, B.s.x, sizeof(float) * DIM);
    assert_memory_equal(A.s.c, B.s.c, sizeof(float) * DIM);
    for (int i = 0; i < NC; i++) {
        assert_int_equal(A.cs[i].ci != NULL, B.cs[i].ci != NULL);
        if (A.cs[i].ci) {
            assert_memory_equal(A.cs[i].ci, B.cs[i].ci, sizeof(float) * DIM);
            assert_memory_equal(A.cs[i].mem, B.cs[i].mem, sizeof(float) * DIM);
        }
    }
    run_round(&A, 1);
    run_round(&B, 1);
    assert_memory_equal(A.s.x, B.s.x, sizeof(float) * DIM);
    assert_int_equal(fp_algo_state_load(&B.s, B.cs, blob, len - 1, &err), FP_EFORMAT);
    world_free(&A);
    world_free(&B);
}

/* The server's and a client's state stand alone: a coordinator restores x
 * and c from the server blob without any client's, a client daemon its own
 * blob, and a blob of another client is refused. */
static void test_state_server_and_client_separate(void **state)
{
    (void)state;
    struct world A, B;
    world_init_c(&A, FP_ALGO_SCAFFOLD, 1.0f, FP_COMP_IDENTITY, 1.0, 1.0f, 1.0f);
    world_init_c(&B, FP_ALGO_SCAFFOLD, 1.0f, FP_COMP_IDENTITY, 1.0, 1.0f, 1.0f);
    run_round(&A, 0);
    const size_t sb = fp_algo_server_state_bytes(&A.p), cb = fp_algo_client_state_bytes(&A.p);
    assert_int_equal(sb, 32 + 2 * 4 * DIM);
    assert_int_equal(cb, 32 + 4 * DIM);
    uint8_t sblob[32 + 2 * 4 * DIM], cblob[32 + 4 * DIM];
    fp_algo_server_save(&A.s, sblob);
    fp_algo_client_save(&A.p, 2, &A.cs[2], cblob);
    struct fp_error err;
    assert_int_equal(fp_algo_server_load(&B.s, sblob, sb, &err), 0);
    assert_memory_equal(A.s.x, B.s.x, sizeof(float) * DIM);
    assert_memory_equal(A.s.c, B.s.c, sizeof(float) * DIM);
    assert_null(B.cs[2].ci);
    assert_int_equal(fp_algo_client_load(&B.p, 3, &B.cs[3], cblob, cb, &err), FP_EFORMAT);
    assert_non_null(strstr(err.msg, "of client 2, not client 3"));
    assert_null(B.cs[3].ci);
    assert_int_equal(fp_algo_client_load(&B.p, 2, &B.cs[2], cblob, cb, &err), 0);
    assert_memory_equal(A.cs[2].ci, B.cs[2].ci, sizeof(float) * DIM);
    /* a client blob is not a server blob, nor the other way round */
    assert_int_equal(fp_algo_server_load(&B.s, cblob, cb, &err), FP_EFORMAT);
    assert_int_equal(fp_algo_client_load(&B.p, 2, &B.cs[2], sblob, sb, &err), FP_EFORMAT);
    world_free(&A);
    world_free(&B);
}

/* Compares a world's server and client state with a snapshot taken before. */
struct snap {
    float x[DIM], c[DIM], ci[NC][DIM], mem[NC][DIM];
    int has_ci[NC], has_mem[NC];
};
static void take_snap(const struct world *W, struct snap *S)
{
    memcpy(S->x, W->s.x, sizeof S->x);
    memcpy(S->c, W->s.c, sizeof S->c);
    for (int i = 0; i < NC; i++)
        snapshot(W, i, S->ci[i], S->mem[i], &S->has_ci[i], &S->has_mem[i]);
}
static void assert_snap(const struct world *W, const struct snap *S)
{
    assert_memory_equal(W->s.x, S->x, sizeof S->x);
    assert_memory_equal(W->s.c, S->c, sizeof S->c);
    for (int i = 0; i < NC; i++) {
        assert_int_equal(W->cs[i].ci != NULL, S->has_ci[i]);
        assert_int_equal(W->cs[i].mem != NULL, S->has_mem[i]);
        if (S->has_ci[i])
            assert_memory_equal(W->cs[i].ci, S->ci[i], sizeof S->ci[i]);
        if (S->has_mem[i])
            assert_memory_equal(W->cs[i].mem, S->mem[i], sizeof S->mem[i]);
    }
}

/* A checkpoint refused for a non-finite value in its last vector leaves
 * what it would have been restored into exactly as it was: every loader
 * checks the whole blob before it writes (a client daemon whose state file
 * is damaged keeps the state it had, and a never-included client stays
 * unallocated). */
static void test_state_refused_leaves_state(void **state)
{
    (void)state;
    struct world A, B;
    world_init_c(&A, FP_ALGO_SCAFCOM, 1.0f, FP_COMP_TOPK, 0.34, 1.0f, 0.5f);
    world_init_c(&B, FP_ALGO_SCAFCOM, 1.0f, FP_COMP_TOPK, 0.34, 1.0f, 0.5f);
    run_round(&A, 0);
    run_round(&A, 1);
    run_round(&B, 0);
    struct snap S;
    take_snap(&B, &S);
    void *blob;
    size_t len;
    struct fp_error err;
    const float nan = NAN;
    assert_int_equal(fp_algo_state_save(&A.s, A.cs, &blob, &len), 0);
    memcpy((uint8_t *)blob + len - 4, &nan, 4); /* the last client's last w_i */
    assert_int_equal(fp_algo_state_load(&B.s, B.cs, blob, len, &err), FP_EFORMAT);
    assert_snap(&B, &S);
    free(blob);

    const size_t sb = fp_algo_server_state_bytes(&A.p), cb = fp_algo_client_state_bytes(&A.p);
    uint8_t sblob[32 + 2 * 4 * DIM], cblob[32 + 2 * 4 * DIM];
    assert_int_equal(sb, sizeof sblob);
    assert_int_equal(cb, sizeof cblob);
    fp_algo_server_save(&A.s, sblob);
    memcpy(sblob + sb - 4, &nan, 4); /* c's last value */
    assert_int_equal(fp_algo_server_load(&B.s, sblob, sb, &err), FP_EFORMAT);
    assert_snap(&B, &S);
    struct world C;
    world_init_c(&C, FP_ALGO_SCAFCOM, 1.0f, FP_COMP_TOPK, 0.34, 1.0f, 0.5f);
    assert_non_null(A.cs[1].ci);
    fp_algo_client_save(&A.p, 1, &A.cs[1], cblob);
    memcpy(cblob + cb - 4, &nan, 4); /* w_i's last value */
    assert_int_equal(fp_algo_client_load(&C.p, 1, &C.cs[1], cblob, cb, &err), FP_EFORMAT);
    assert_null(C.cs[1].ci);
    assert_null(C.cs[1].mem);
    world_free(&A);
    world_free(&B);
    world_free(&C);
}

/* Each vector of a broadcast and each phase of a round draw from their own
 * streams: with a random downlink compressor (MASHA's compressed broadcast;
 * set by hand here, as no algorithm has one yet) x and c, and phase 0 and
 * phase 1, must not share a rand-k mask, nor a client's phase-0 and phase-1
 * uploads their mask and minibatches. */
static void test_exchange_streams_distinct(void **state)
{
    (void)state;
    struct fp_scenario sc;
    struct fp_error err = {0};
    static const char text[] = "[data]\ndataset = quadratic\nclients = 2\ndim = 64\n"
                               "[algorithm]\nname = scallion\nlocal_steps = 1\nbatch = 1\n"
                               "lr_local = 0.1\n[compressor]\nname = randk\nk = 8\n";
    if (fp_scenario_load_string(&sc, text, "test", NULL, 0, &err))
        fail_msg("%s", err.msg);
    struct fp_workload *w;
    assert_int_equal(fp_workload_create(&w, &sc, &err), 0);
    struct fp_algo_params p;
    assert_int_equal(fp_algo_params_from(&p, &sc, w->d, &err), 0);
    const struct fp_comp_spec randk = {.kind = FP_COMP_RANDK, .count = 8};
    assert_int_equal(fp_compressor_init(&p.down, &randk, p.d, &err), 0);
    struct fp_server srv;
    assert_int_equal(fp_server_init(&srv, &p, &err), 0);
    for (size_t j = 0; j < p.d; j++)
        srv.x[j] = srv.c[j] = (float)(j + 1);
    const size_t bcap = fp_algo_broadcast_cap(&p), ucap = fp_algo_upload_cap(&p);
    const size_t vb = fp_compressor_bytes(&p.down);
    uint8_t *b0 = malloc(bcap), *b1 = malloc(bcap), *u0 = malloc(ucap), *u1 = malloc(ucap);
    size_t l0, l1, ul0, ul1;
    assert_int_equal(fp_algo_server_broadcast(&srv, 5, 1, 0, b0, bcap, &l0), 0);
    assert_int_equal(fp_algo_server_broadcast(&srv, 5, 1, 1, b1, bcap, &l1), 0);
    assert_int_equal(l0, FP_MSG_HEADER + 2 * vb);
    /* x and c hold the same values: only their masks can tell them apart */
    assert_memory_not_equal(b0 + FP_MSG_HEADER, b0 + FP_MSG_HEADER + vb, vb);
    assert_memory_not_equal(b0 + FP_MSG_HEADER, b1 + FP_MSG_HEADER, vb);
    struct fp_algo_ws ws;
    assert_int_equal(fp_algo_ws_init(&ws, &p), 0);
    void *wws = fp_workload_ws_new(w);
    struct fp_client_state cs = {0}, next = {0};
    double loss;
    /* the same broadcast bytes in both phases (only the header's phase
     * differs), so only the phase's streams can make the uploads differ */
    memcpy(b1 + FP_MSG_HEADER, b0 + FP_MSG_HEADER, 2 * vb);
    struct fp_msg_header who = {.run = 5, .round = 1, .phase = 0, .client = 1};
    assert_int_equal(fp_algo_client_update(&p, &who, b0, l0, &cs, &next, w, wws, &ws, u0, ucap,
                                           &ul0, &loss, &err),
                     0);
    who.phase = 1;
    assert_int_equal(fp_algo_client_update(&p, &who, b1, l1, &cs, &next, w, wws, &ws, u1, ucap,
                                           &ul1, &loss, &err),
                     0);
    assert_int_equal(ul0, ul1);
    assert_memory_not_equal(u0 + FP_MSG_HEADER, u1 + FP_MSG_HEADER, ul0 - FP_MSG_HEADER);
    fp_client_state_free(&cs);
    fp_client_state_free(&next);
    fp_workload_ws_free(w, wws);
    fp_algo_ws_free(&ws, &p);
    fp_server_free(&srv);
    fp_workload_free(w);
    free(b0), free(b1), free(u0), free(u1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fedavg_matches_reference),
        cmocka_unit_test(test_scaffold_halved_equals_two_vector),
        cmocka_unit_test(test_client_state_lazy),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_malformed_upload_rejected),
        cmocka_unit_test(test_upload_key_checked),
        cmocka_unit_test(test_dropped_uploads_leave_clients_unchanged),
        cmocka_unit_test(test_upload_added_once),
        cmocka_unit_test(test_identities),
        cmocka_unit_test(test_compressed_match_reference),
        cmocka_unit_test(test_control_variate_invariant_compressed),
        cmocka_unit_test(test_params_reject_wrong_class),
        cmocka_unit_test(test_state_roundtrip_and_rejects),
        cmocka_unit_test(test_state_fps1_still_loads),
        cmocka_unit_test(test_state_server_and_client_separate),
        cmocka_unit_test(test_state_refused_leaves_state),
        cmocka_unit_test(test_exchange_streams_distinct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
