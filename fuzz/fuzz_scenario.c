/*
 * fuzz/fuzz_scenario.c — libFuzzer target for the scenario parser.
 *
 * Any bytes must either load or give an error; never crash, never leak.
 * When they load, the canonical text must load again to the same canonical
 * text (the store relies on re-running what it saved).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/scenario.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    /* A line "--set ..." style override rides along after a NUL, if any. */
    const char *ov[1];
    size_t nov = 0;
    size_t tl = strlen(text);
    if (tl + 1 < size) {
        ov[0] = text + tl + 1;
        nov = 1;
    }
    struct fp_scenario a, b;
    struct fp_error err;
    if (fp_scenario_load_string(&a, text, "fuzz", ov, nov, &err) == 0) {
        char *c1 = fp_scenario_canonical(&a);
        if (c1) {
            if (fp_scenario_load_string(&b, c1, "canonical", NULL, 0, &err) != 0)
                abort();
            char *c2 = fp_scenario_canonical(&b);
            if (!c2 || strcmp(c1, c2) != 0)
                abort();
            free(c2);
            free(c1);
        }
    }
    free(text);
    return 0;
}
