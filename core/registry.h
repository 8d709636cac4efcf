/*
 * core/registry.h — which algorithm takes which compressor, in one table.
 *
 * The class rules, per direction, for every algorithm: the scenario parser
 * checks them (naming the file and line), fp_algo_params_from checks them
 * again for any driver, and the compressor's class (unbiased, contractive,
 * or both for identity) is read from here by algorithms/compressor.c.
 * Adding an algorithm or a compressor adds one row here.
 *
 * Every algorithm today broadcasts full precision (downlink identity);
 * MASHA (a later issue) will be the first row with a compressed downlink.
 */
#ifndef FP_REGISTRY_H
#define FP_REGISTRY_H

#include <stddef.h>

#include "scenario.h"

enum fp_comp_class {
    FP_CLASS_UNBIASED = 1,    /* E[C(v)] = v, E||C(v) - v||^2 <= omega ||v||^2 */
    FP_CLASS_CONTRACTIVE = 2, /* ||C(v) - v||^2 <= (1 - q) ||v||^2 */
};

enum fp_direction { FP_UPLINK, FP_DOWNLINK };

/* The classes compressor kind k belongs to (identity: both). */
unsigned fp_comp_classes(enum fp_comp_kind k);

/* 0 if compressor c fits algorithm a in direction dir; else 1, with
 * why[0..n) saying what does not fit and which algorithm to use instead.
 * The one rule for the scenario parser (which adds file:line) and
 * fp_algo_params_from. */
int fp_algo_comp_misfit(enum fp_algo_kind a, enum fp_direction dir, const struct fp_comp_spec *c,
                        char *why, size_t n);

/* The downlink compressor algorithm a broadcasts with. */
struct fp_comp_spec fp_algo_downlink(enum fp_algo_kind a);

#endif
