/*
 * run/model.h — the model's files (see model.c).
 */
#ifndef FP_RUN_MODEL_H
#define FP_RUN_MODEL_H

#include <stddef.h>

#include "../core/error.h"
#include "../core/inputs.h"
#include "../core/scenario.h"

/* Reads [model] init = PATH into x[0..d): exactly d finite float32 values,
 * anything else FP_EFORMAT naming the file; records the file's SHA-256 in
 * inputs. */
int fp_run_load_init(const struct fp_scenario *sc, float *x, size_t d, struct fp_inputs *inputs,
                     struct fp_error *err);

/* Whether path can take the model (see model.c); nothing is left behind. */
int fp_run_check_model_out(const char *path, struct fp_error *err);

/* Writes x[0..d) to path through a temporary file and rename. */
int fp_run_write_model(const char *path, const float *x, size_t d, struct fp_error *err);

#endif
