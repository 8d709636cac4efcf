/*
 * fuzz/fuzz_state.c — libFuzzer target for the checkpoint (state blob)
 * parser, fp_algo_state_load: a store file can be damaged or edited, so the
 * blob is outside input. The first byte picks the algorithm; the rest is
 * the blob, for d = 3 and N = 4. Anything must load or be refused cleanly;
 * what loads must save back to the same bytes (an old FPS1 blob to an
 * FPS2 one that does).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "algorithms/algorithm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 16)
        return 0;
    /* bytes 0-3 keep the algorithms the corpus was made for; 4-7 the EF
     * family (g in the server blob, h_i / e_i in the client's); 8-11 the
     * VI methods (w, F(w), e_s, the pending aggregate; a client's z, w,
     * F(w), F_m(w), e_m); 12 EF21-BC (ef21 with w after g, and a
     * client's copy of w after h_i) */
    static const enum fp_algo_kind kinds[] = {
        FP_ALGO_FEDAVG, FP_ALGO_SCAFFOLD, FP_ALGO_FEDEF, FP_ALGO_SCAFCOM, FP_ALGO_EF21,
        FP_ALGO_EF21W,  FP_ALGO_ECONTROL, FP_ALGO_EF14,  FP_ALGO_EG,      FP_ALGO_EG_NAIVE,
        FP_ALGO_MASHA1, FP_ALGO_MASHA2,   FP_ALGO_EF21};
    struct fp_algo_params p = {.kind = kinds[data[0] % 13],
                               .bc = data[0] % 13 == 12,
                               .d = 3,
                               .N = 4,
                               .K = 1,
                               .lr_local = 0.1f,
                               .lr_global = 1.0f,
                               .alpha = 1.0f,
                               .beta = 0.5f};
    struct fp_comp_spec id = {.kind = FP_COMP_IDENTITY};
    struct fp_error err;
    if (fp_algo_params_compressors(&p, &id, &err))
        abort();
    struct fp_server s;
    if (fp_server_init(&s, &p, &err))
        return 0;
    struct fp_client_state cs[4] = {{0}};
    if (fp_algo_state_load(&s, cs, data + 1, size - 1, &err) == 0) {
        void *blob, *again;
        size_t len, len2;
        if (fp_algo_state_save(&s, cs, &blob, &len) == 0) {
            /* an FPS2 blob saves back to its own bytes; an old FPS1 one is
             * saved as FPS2, which must load and save back to itself */
            uint32_t magic;
            memcpy(&magic, data + 1, 4);
            if (magic != 0x31535046u && (len != size - 1 || memcmp(blob, data + 1, len)))
                abort();
            struct fp_server s2;
            struct fp_client_state cs2[4] = {{0}};
            if (fp_server_init(&s2, &p, &err) == 0) {
                if (fp_algo_state_load(&s2, cs2, blob, len, &err))
                    abort();
                if (fp_algo_state_save(&s2, cs2, &again, &len2) == 0) {
                    if (len2 != len || memcmp(again, blob, len))
                        abort();
                    free(again);
                }
                for (int i = 0; i < 4; i++)
                    fp_client_state_free(&cs2[i]);
                fp_server_free(&s2);
            }
            free(blob);
        }
    }
    for (int i = 0; i < 4; i++)
        fp_client_state_free(&cs[i]);
    fp_server_free(&s);
    return 0;
}
