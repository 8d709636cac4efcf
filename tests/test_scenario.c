/* tests/test_scenario.c — scenario parsing, validation, overrides, canonical form. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/scenario.h"

static const char *full = "; a comment\n"
                          "[run]\n"
                          "name = t1\n"
                          "seed = 18446744073709551615\n"
                          "rounds = 7\n"
                          "eval_every = 3\n"
                          "\n"
                          "[data]\n"
                          "dataset = fashion-mnist\n"
                          "path = /tmp/fm\n"
                          "clients = 200\n"
                          "partition = shards:2\n"
                          "[model]\n"
                          "kind = mlp\n"
                          "hidden = 64\n"
                          "[algorithm]\n"
                          "name = scaffold\n"
                          "local_steps = 5\n"
                          "batch = 16\n"
                          "lr_local = 0.125\n"
                          "lr_global = 2\n"
                          "[participation]\n"
                          "sample = 20\n";

static void test_full_file(void **state)
{
    (void)state;
    struct fp_scenario sc;
    struct fp_error err = {0};
    assert_int_equal(fp_scenario_load_string(&sc, full, "t.ini", NULL, 0, &err), 0);
    assert_string_equal(sc.name, "t1");
    assert_true(sc.seed == UINT64_MAX);
    assert_int_equal(sc.rounds, 7);
    assert_int_equal(sc.eval_every, 3);
    assert_int_equal(sc.dataset, FP_DATA_FMNIST);
    assert_string_equal(sc.data_path, "/tmp/fm");
    assert_int_equal(sc.clients, 200);
    assert_int_equal(sc.partition, FP_PART_SHARDS);
    assert_int_equal(sc.shards, 2);
    assert_int_equal(sc.model, FP_MODEL_MLP);
    assert_int_equal(sc.hidden, 64);
    assert_int_equal(sc.algorithm, FP_ALGO_SCAFFOLD);
    assert_int_equal(sc.local_steps, 5);
    assert_int_equal(sc.batch, 16);
    assert_true(sc.lr_local == 0.125);
    assert_true(sc.lr_global == 2.0);
    assert_int_equal(sc.sample, 20);
    assert_int_equal(sc.dim, 784);
}

/* The error must name origin:line, the key and what is allowed. */
static void expect_error(const char *text, const char *const *sets, size_t n, const char *want1,
                         const char *want2)
{
    struct fp_scenario sc;
    struct fp_error err = {0};
    int rc = fp_scenario_load_string(&sc, text, "bad.ini", sets, n, &err);
    assert_int_equal(rc, FP_EINVAL);
    if (!strstr(err.msg, want1) || (want2 && !strstr(err.msg, want2)))
        fail_msg("error '%s' lacks '%s' / '%s'", err.msg, want1, want2 ? want2 : "");
}

static void test_errors_name_line_key_allowed(void **state)
{
    (void)state;
    expect_error("[run]\nrounds = 3\n[data]\nbogus = 1\n", NULL, 0, "bad.ini:4",
                 "unknown key 'bogus' in [data]; allowed: dataset, path, clients, partition");
    expect_error("[run]\n[nope]\nx = 1\n", NULL, 0, "bad.ini:2", "unknown section [nope]");
    expect_error("[nope]\n", NULL, 0, "bad.ini:1", "allowed: [run], [data]");
    expect_error("[data]\npartition = shards:x\n", NULL, 0, "bad.ini:2",
                 "expected one of iid, shards:K");
    expect_error("[data]\npartition = dirichlet:0\n", NULL, 0, "bad.ini:2", "dirichlet:ALPHA");
    expect_error("[run]\nrounds = 0\n", NULL, 0, "bad.ini:2", "[run] rounds = '0'");
    expect_error("[run]\nrounds = -5\n", NULL, 0, "bad.ini:2", "[1, 10000000]");
    expect_error("[run]\nrounds = 5x\n", NULL, 0, "bad.ini:2", "not valid");
    expect_error("[algorithm]\nlr_local = nan\n", NULL, 0, "bad.ini:2", "a number > 0");
    expect_error("[algorithm]\nlr_local = 0\n", NULL, 0, "bad.ini:2", "a number > 0");
    expect_error("[algorithm]\nname = sgd\n", NULL, 0, "bad.ini:2", "one of fedavg, scaffold");
    expect_error("[run]\nseed = 1\nseed = 2\n", NULL, 0, "bad.ini:3",
                 "set twice (first on line 2)");
    expect_error("[run]\nthis line has no equals\n", NULL, 0, "bad.ini:2", "key = value");
    expect_error("seed = 1\n", NULL, 0, "bad.ini:1", "before any [section]");
    /* cross-key rules */
    expect_error("[data]\nclients = 10\n[participation]\nsample = 11\n", NULL, 0, "bad.ini:4",
                 "larger than [data] clients = 10");
    expect_error("[data]\ndataset = quadratic\npartition = iid\n", NULL, 0, "bad.ini:3",
                 "applies only to dataset fashion-mnist");
    expect_error("[data]\ndataset = quadratic\n[model]\nkind = mlp\n", NULL, 0, "bad.ini:4",
                 "does not fit dataset 'quadratic'");
    expect_error("[model]\nkind = logreg\nhidden = 3\n", NULL, 0, "bad.ini:3",
                 "applies only to model mlp");
    expect_error("[data]\nalpha = 1\n", NULL, 0, "bad.ini:2", "applies only to dataset synthetic");
    expect_error("[data]\npartition = shards:11\n", NULL, 0, "bad.ini:2", "more classes");
    /* algorithm / compressor compatibility */
    expect_error("[algorithm]\nname = fedavg\n[compressor]\nname = topk\n", NULL, 0, "bad.ini:4",
                 "fedavg is the full-precision baseline");
    expect_error("[algorithm]\nname = fedavg\n[compressor]\nname = topk\n", NULL, 0, "bad.ini:4",
                 "use fedef");
    expect_error("[algorithm]\nname = scaffold\n[compressor]\nname = randk\n", NULL, 0, "bad.ini:4",
                 "use scallion");
    expect_error("[algorithm]\nname = scallion\n[compressor]\nname = topk\n", NULL, 0, "bad.ini:4",
                 "scallion needs an unbiased compressor");
    expect_error("[algorithm]\nname = fedpaq\n[compressor]\nname = sign\n", NULL, 0, "bad.ini:4",
                 "use fedef");
    expect_error("[algorithm]\nname = scafcom\n[compressor]\nname = qsgd:4\n", NULL, 0, "bad.ini:4",
                 "scafcom needs a contractive compressor");
    expect_error("[algorithm]\nname = fedef\n[compressor]\nname = randk\n", NULL, 0, "bad.ini:4",
                 "use fedpaq");
    expect_error("[compressor]\nname = qsgd:0\n", NULL, 0, "bad.ini:2", "qsgd:S");
    expect_error("[compressor]\nname = zip\n", NULL, 0, "bad.ini:2", "one of identity, topk");
    expect_error("[algorithm]\nname = fedef\n[compressor]\nname = sign\nratio = 0.1\n", NULL, 0,
                 "bad.ini:5", "ratio applies only to topk, randk and topk+qsgd");
    expect_error("[compressor]\nratio = 1.5\n", NULL, 0, "bad.ini:2", "(0, 1]");
    expect_error("[algorithm]\nname = fedef\n[compressor]\nname = topk\nratio = 0.1\nk = 5\n", NULL,
                 0, "bad.ini:6", "ratio or k, not both");
    expect_error("[algorithm]\nname = fedef\n[compressor]\nname = sign\nk = 5\n", NULL, 0,
                 "bad.ini:5", "k applies only to topk");
    expect_error("[compressor]\nk = 0\n", NULL, 0, "bad.ini:2", "[1, 4294967295]");
    expect_error("[algorithm]\nname = scaffold\nalpha = 0.5\n", NULL, 0, "bad.ini:3",
                 "applies only to algorithm scallion");
    expect_error("[algorithm]\nname = scafcom\nbeta = 0\n", NULL, 0, "bad.ini:3", "(0, 1]");
    expect_error("[algorithm]\nname = scallion\nalpha = 2\n", NULL, 0, "bad.ini:3", "'auto'");
}

static void test_compressed_scenarios(void **state)
{
    (void)state;
    struct fp_scenario sc;
    struct fp_error err = {0};
    assert_int_equal(fp_scenario_load_string(&sc,
                                             "[algorithm]\nname = scafcom\nbeta = 0.5\n"
                                             "[compressor]\nname = topk+qsgd:8\nratio = 0.02\n",
                                             "t", NULL, 0, &err),
                     0);
    assert_int_equal(sc.algorithm, FP_ALGO_SCAFCOM);
    assert_true(sc.beta == 0.5);
    assert_int_equal(sc.uplink.kind, FP_COMP_TOPK_QSGD);
    assert_int_equal(sc.uplink.levels, 8);
    assert_true(sc.uplink.ratio == 0.02);
    assert_int_equal(fp_scenario_load_string(&sc,
                                             "[algorithm]\nname = scallion\n"
                                             "[compressor]\nname = randk\n",
                                             "t", NULL, 0, &err),
                     0);
    assert_true(isnan(sc.alpha)); /* auto */
    char *canon = fp_scenario_canonical(&sc);
    assert_non_null(strstr(canon, "alpha = auto\n"));
    assert_non_null(strstr(canon, "[compressor]\nname = randk\nratio = 0.01\n"));
    free(canon);
    /* identity fits every algorithm */
    const char *algos[] = {"fedavg", "scaffold", "fedpaq", "fedef", "scallion", "scafcom"};
    for (int i = 0; i < 6; i++) {
        char text[128];
        snprintf(text, sizeof text, "[algorithm]\nname = %s\n[compressor]\nname = identity\n",
                 algos[i]);
        if (fp_scenario_load_string(&sc, text, "t", NULL, 0, &err))
            fail_msg("%s: %s", algos[i], err.msg);
    }
}

static void test_overrides(void **state)
{
    (void)state;
    const char *sets[] = {"algorithm.lr_local=0.5", "run.seed=9", "participation.sample=all"};
    struct fp_scenario sc;
    struct fp_error err = {0};
    assert_int_equal(fp_scenario_load_string(&sc, full, "t.ini", sets, 3, &err), 0);
    assert_true(sc.lr_local == 0.5);
    assert_true(sc.seed == 9);
    assert_int_equal(sc.sample, 200);

    /* an empty value removes the file's key: topk (with ratio) -> qsgd:4 (none) */
    const char *swap[] = {"compressor.ratio=", "compressor.name=qsgd:4", "algorithm.name=scallion"};
    const char *withratio =
        "[algorithm]\nname = scafcom\n[compressor]\nname = topk\nratio = 0.05\n";
    assert_int_equal(fp_scenario_load_string(&sc, withratio, "t.ini", swap, 3, &err), 0);
    assert_int_equal(sc.uplink.kind, FP_COMP_QSGD);
    assert_int_equal(sc.uplink.levels, 4);
    assert_true(sc.uplink.ratio == 0.01); /* the default again */
    expect_error(withratio, swap + 1, 2, "ratio applies only to topk", NULL); /* without it */
    const char *unknown[] = {"compressor.bogus="};
    expect_error(withratio, unknown, 1, "unknown key 'bogus' in [compressor]", NULL);
    const char *bad1[] = {"algorithm.lr_local"};
    expect_error(full, bad1, 1, "--set 'algorithm.lr_local'", "section.key=value");
    const char *bad2[] = {"algo.lr=1"};
    expect_error(full, bad2, 1, "--set: unknown section [algo]", NULL);
    const char *bad3[] = {"run.rounds=zero"};
    expect_error(full, bad3, 1, "--set: [run] rounds = 'zero'", "[1, 10000000]");
    /* strtoull would read " -1" as 2^64 - 1 */
    const char *bad4[] = {"run.seed= -1"};
    expect_error(full, bad4, 1, "--set: [run] seed = ' -1'", "[0, 2^64)");
    const char *bad5[] = {"run.rounds= 5"};
    expect_error(full, bad5, 1, "--set: [run] rounds = ' 5'", NULL);
    const char *bad6[] = {"algorithm.lr_local= 0.1"};
    expect_error(full, bad6, 1, "--set: [algorithm] lr_local = ' 0.1'", NULL);
}

/* A text that sets no key would run the whole default scenario: refused,
 * with --set or without. */
static void test_empty_text_refused(void **state)
{
    (void)state;
    const char *texts[] = {"",
                           "\n\n",
                           "; a comment\n",
                           "# a comment\n  ; another\n",
                           "[run]\n",
                           "[run]\n; nothing\n[data]\n"};
    const char *sets[] = {"run.rounds=3"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        expect_error(texts[i], NULL, 0, "bad.ini: sets no key", "empty");
        expect_error(texts[i], sets, 1, "bad.ini: sets no key", NULL);
    }
}

/* Every number is plain decimal: one parser for every numeric key, integer
 * or real, in the file, in --set and inside a value (shards:K, qsgd:S,
 * dirichlet:ALPHA). */
static void test_numbers_plain_decimal(void **state)
{
    (void)state;
    static const struct {
        const char *section, *key, *good; /* good: a valid value of the key */
    } keys[] = {
        {"run", "seed", "7"},
        {"run", "rounds", "7"},
        {"run", "eval_every", "7"},
        {"run", "checkpoint_every", "7"},
        {"data", "clients", "7"},
        {"algorithm", "local_steps", "7"},
        {"algorithm", "batch", "7"},
        {"algorithm", "lr_local", "0.25"},
        {"algorithm", "lr_global", "0.25"},
        {"participation", "sample", "7"},
    };
    static const char *const bad[] = {"0x10",   "0X1p-2", "0x1p-3", "inf",  "Infinity", "nan",
                                      "NAN(1)", "+7",     "-0",     " 7",   "7 ",       "1e",
                                      "1e+",    ".",      "e5",     "1.5.2"};
    char text[256], set[128];
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        /* the good value loads: the bad ones fail for their syntax alone */
        snprintf(text, sizeof text, "[data]\nclients = 20\n%s%s%s\n%s = %s\n",
                 strcmp(keys[k].section, "data") ? "[" : "",
                 strcmp(keys[k].section, "data") ? keys[k].section : "",
                 strcmp(keys[k].section, "data") ? "]" : "", keys[k].key, keys[k].good);
        if (!strcmp(keys[k].key, "clients"))
            snprintf(text, sizeof text, "[data]\nclients = %s\n", keys[k].good);
        struct fp_scenario sc;
        struct fp_error err = {0};
        if (fp_scenario_load_string(&sc, text, "t", NULL, 0, &err))
            fail_msg("%s: %s", text, err.msg);
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            char want[128];
            snprintf(set, sizeof set, "%s.%s=%s", keys[k].section, keys[k].key, bad[b]);
            const char *sets[] = {set};
            snprintf(want, sizeof want, "--set: [%s] %s = '%s' is not valid", keys[k].section,
                     keys[k].key, bad[b]);
            expect_error("[run]\nname = t\n", sets, 1, want, NULL);
        }
    }
    /* reals where the docs' examples put them */
    expect_error("[data]\ndataset = synthetic\nalpha = 0x1p-1\n", NULL, 0, "bad.ini:3",
                 "[data] alpha = '0x1p-1' is not valid");
    expect_error("[data]\ndataset = quadratic\nnoise = inf\n", NULL, 0, "bad.ini:3", "noise");
    expect_error("[algorithm]\nname = scallion\nalpha = 0x1p-2\n", NULL, 0, "bad.ini:3", "'auto'");
    expect_error("[algorithm]\nname = scafcom\nbeta = 0x1p-2\n", NULL, 0, "bad.ini:3", "(0, 1]");
    expect_error("[algorithm]\nname = fedef\n[compressor]\nname = topk\nratio = 0x1p-4\n", NULL, 0,
                 "bad.ini:5", "(0, 1]");
    expect_error("[algorithm]\nname = fedef\n[compressor]\nname = topk\nk = 0x10\n", NULL, 0,
                 "bad.ini:5", "[1, 4294967295]");
    expect_error("[data]\npartition = dirichlet:0x1p-1\n", NULL, 0, "bad.ini:2", "dirichlet:ALPHA");
    expect_error("[data]\npartition = dirichlet:inf\n", NULL, 0, "bad.ini:2", "dirichlet:ALPHA");
    expect_error("[data]\npartition = dirichlet:1e999\n", NULL, 0, "bad.ini:2", "dirichlet:ALPHA");
    expect_error("[data]\npartition = shards:0x2\n", NULL, 0, "bad.ini:2", "shards:K");
    expect_error("[compressor]\nname = qsgd:0x4\n", NULL, 0, "bad.ini:2", "qsgd:S");
    expect_error("[run]\nseed = 0x10\n", NULL, 0, "bad.ini:2", "[0, 2^64)");

    /* what plain decimal does allow, read as the same double */
    static const struct {
        const char *text;
        double want;
    } good[] = {{"0.05", 0.05}, {".5", 0.5}, {"5.", 5.0}, {"1e-3", 1e-3}, {"2.5E+1", 25.0}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct fp_scenario sc;
        struct fp_error err = {0};
        snprintf(text, sizeof text, "[algorithm]\nlr_local = %s\n", good[i].text);
        if (fp_scenario_load_string(&sc, text, "t", NULL, 0, &err))
            fail_msg("%s: %s", good[i].text, err.msg);
        assert_true(sc.lr_local == good[i].want);
    }
}

/* A malformed line fails on its own line, not on the next key inih hands
 * over after it. */
static void test_malformed_line_named(void **state)
{
    (void)state;
    expect_error("[run\nname = x\n", NULL, 0, "bad.ini:1: section header '[run' has no closing ']'",
                 NULL);
    expect_error("[run]\nname = x\n[data\nclients = 3\n", NULL, 0,
                 "bad.ini:3: section header '[data'", NULL);
    expect_error("[run\r\nname = x\r\n", NULL, 0, "bad.ini:1: section header '[run' has", NULL);
    expect_error("[run]\nname x\nbogus = 1\n", NULL, 0, "bad.ini:2: not a 'key = value' line",
                 NULL);
    expect_error("[run]\nrounds = 3\n  [data\n", NULL, 0, "bad.ini:3: section header", NULL);
    /* a UTF-8 byte order mark before the first header is fine */
    struct fp_scenario sc;
    struct fp_error err = {0};
    assert_int_equal(
        fp_scenario_load_string(&sc, "\xEF\xBB\xBF[run]\nrounds = 3\n", "t", NULL, 0, &err), 0);
    assert_int_equal(sc.rounds, 3);
}

static void test_defaults_and_canonical_roundtrip(void **state)
{
    (void)state;
    struct fp_scenario a, b;
    struct fp_error err = {0};
    /* one key, set to its default: everything else is the default */
    assert_int_equal(fp_scenario_load_string(&a, "[run]\nname = run\n", "t", NULL, 0, &err), 0);
    assert_int_equal(a.dataset, FP_DATA_FMNIST);
    assert_int_equal(a.algorithm, FP_ALGO_FEDAVG);
    assert_int_equal(a.sample, a.clients); /* default: everyone participates */

    const char *texts[] = {full,
                           "[data]\ndataset = synthetic\nalpha = 0.5\nbeta = 0.25\nclients = 7\n"
                           "[model]\nkind = logreg\n",
                           "[data]\ndataset = quadratic\ndim = 3\nnoise = 0.1\n",
                           "[data]\npartition = dirichlet:0.3\n[model]\ninit = /x.f32\n",
                           "[algorithm]\nname = scallion\nalpha = 0.25\n[compressor]\n"
                           "name = qsgd:16\n",
                           "[algorithm]\nname = scafcom\nbeta = 0.3\n[compressor]\n"
                           "name = topk\nratio = 0.05\n",
                           "[algorithm]\nname = scallion\n[compressor]\nname = randk\nk = 1590\n"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        assert_int_equal(fp_scenario_load_string(&a, texts[i], "t", NULL, 0, &err), 0);
        char *canon = fp_scenario_canonical(&a);
        assert_non_null(canon);
        if (fp_scenario_load_string(&b, canon, "canon", NULL, 0, &err))
            fail_msg("canonical text does not load: %s\n%s", err.msg, canon);
        /* every field equal: the struct has no padding-sensitive floats compared bytewise
         * other than exact copies, so compare field by field where it matters */
        assert_string_equal(a.name, b.name);
        assert_true(a.seed == b.seed && a.rounds == b.rounds && a.eval_every == b.eval_every);
        assert_true(a.dataset == b.dataset && a.partition == b.partition && a.clients == b.clients);
        assert_true(a.shards == b.shards || a.partition != FP_PART_SHARDS);
        assert_true(a.dirichlet_alpha == b.dirichlet_alpha);
        assert_true(a.synth_alpha == b.synth_alpha && a.synth_beta == b.synth_beta);
        assert_true(a.dim == b.dim && a.quad_noise == b.quad_noise);
        assert_true(a.model == b.model && a.hidden == b.hidden);
        assert_string_equal(a.init_path, b.init_path);
        assert_true(a.algorithm == b.algorithm && a.local_steps == b.local_steps);
        assert_true(a.batch == b.batch && a.lr_local == b.lr_local && a.lr_global == b.lr_global);
        assert_int_equal(a.sample, b.sample);
        assert_true(a.alpha == b.alpha || (isnan(a.alpha) && isnan(b.alpha)));
        assert_true(a.beta == b.beta);
        assert_true(a.uplink.kind == b.uplink.kind && a.uplink.ratio == b.uplink.ratio &&
                    a.uplink.levels == b.uplink.levels && a.uplink.count == b.uplink.count);
        free(canon);
    }
}

static void test_file_errors(void **state)
{
    (void)state;
    struct fp_scenario sc;
    struct fp_error err = {0};
    assert_int_equal(fp_scenario_load(&sc, "/nonexistent/x.ini", NULL, 0, &err), FP_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/x.ini"));

    char path[] = "/tmp/fp_scen_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "[run]\nrounds = 3\n[data]\nclients = 4\n";
    assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    assert_int_equal(fp_scenario_load(&sc, path, NULL, 0, &err), 0);
    assert_int_equal(sc.rounds, 3);
    assert_int_equal(sc.clients, 4);
    unlink(path);
}

/* Every shipped scenario loads, and its [run] name is its file name. */
/* [data] path and [model] init are stored absolute, so that the canonical
 * text means the same files from any directory: a relative path is resolved
 * against the working directory when the scenario is loaded. */
static void test_paths_made_absolute(void **state)
{
    (void)state;
    char dir[64] = "/tmp/fp_test_scn.XXXXXX", old[4096], real[PATH_MAX], want[PATH_MAX + 64];
    assert_non_null(mkdtemp(dir));
    assert_non_null(getcwd(old, sizeof old));
    assert_int_equal(chdir(dir), 0);
    assert_non_null(realpath(".", real)); /* /tmp may itself be a link */
    FILE *f = fopen("w.f32", "wb");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(mkdir("fm", 0700), 0);

    struct fp_scenario sc, again;
    struct fp_error err = {0};
    const char *text = "[data]\npath = ./fm/../fm\n[model]\nkind = logreg\ninit = w.f32\n";
    if (fp_scenario_load_string(&sc, text, "t", NULL, 0, &err))
        fail_msg("%s", err.msg);
    snprintf(want, sizeof want, "%s/fm", real);
    assert_string_equal(sc.data_path, want);
    snprintf(want, sizeof want, "%s/w.f32", real);
    assert_string_equal(sc.init_path, want);
    char *canon = fp_scenario_canonical(&sc);
    assert_non_null(canon);
    snprintf(want, sizeof want, "\ninit = %s/w.f32\n", real);
    assert_non_null(strstr(canon, want));
    snprintf(want, sizeof want, "\npath = %s/fm\n", real);
    assert_non_null(strstr(canon, want));

    /* A file that does not exist (yet) is joined to the directory; --set
     * paths are resolved the same way. */
    const char *set[] = {"model.init=./nope.f32"};
    assert_int_equal(fp_scenario_load_string(&sc, text, "t", set, 1, &err), 0);
    snprintf(want, sizeof want, "%s/nope.f32", real);
    assert_string_equal(sc.init_path, want);

    /* Loaded again from another directory: the same paths. */
    assert_int_equal(chdir("/"), 0);
    assert_int_equal(fp_scenario_load_string(&again, canon, "canon", NULL, 0, &err), 0);
    snprintf(want, sizeof want, "%s/w.f32", real);
    assert_string_equal(again.init_path, want);
    snprintf(want, sizeof want, "%s/fm", real);
    assert_string_equal(again.data_path, want);
    free(canon);

    /* Absolute paths stay as typed. */
    assert_int_equal(fp_scenario_load_string(&sc, "[data]\npath = /a/../b/\n", "t", NULL, 0, &err),
                     0);
    assert_string_equal(sc.data_path, "/a/../b/");

    /* An absolute form longer than a scenario string may be is refused, by name. */
    char longdir[200];
    memset(longdir, 'd', 150);
    longdir[150] = '\0';
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(mkdir(longdir, 0700), 0);
    assert_int_equal(chdir(longdir), 0);
    assert_int_equal(fp_scenario_load_string(&sc, "[model]\ninit = a-rather-long-file-name.f32\n",
                                             "t", NULL, 0, &err),
                     FP_EINVAL);
    assert_non_null(strstr(err.msg, "t:2: [model] init = 'a-rather-long-file-name.f32': its "
                                    "absolute path"));
    assert_int_equal(chdir(dir), 0);
    rmdir(longdir);
    unlink("w.f32");
    rmdir("fm");
    assert_int_equal(chdir(old), 0);
    rmdir(dir);
}

static void test_shipped_scenarios_load(void **state)
{
    (void)state;
    const char *root = getenv("FP_SOURCE_ROOT");
    assert_non_null(root);
    const char *dirs[] = {"scenarios", "scenarios/paper"};
    int n = 0;
    for (size_t k = 0; k < 2; k++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", root, dirs[k]);
        DIR *dp = opendir(dir);
        assert_non_null(dp);
        struct dirent *e;
        while ((e = readdir(dp))) {
            size_t len = strlen(e->d_name);
            if (len < 5 || strcmp(e->d_name + len - 4, ".ini"))
                continue;
            char path[2048], want[256];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            snprintf(want, sizeof want, "%.*s", (int)(len - 4), e->d_name);
            struct fp_scenario sc;
            struct fp_error err = {0};
            if (fp_scenario_load(&sc, path, NULL, 0, &err))
                fail_msg("%s", err.msg);
            assert_string_equal(sc.name, want);
            n++;
        }
        closedir(dp);
    }
    assert_true(n >= 14); /* 6 top-level + 8 paper scenarios */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_errors_name_line_key_allowed),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_compressed_scenarios),
        cmocka_unit_test(test_empty_text_refused),
        cmocka_unit_test(test_numbers_plain_decimal),
        cmocka_unit_test(test_malformed_line_named),
        cmocka_unit_test(test_defaults_and_canonical_roundtrip),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_paths_made_absolute),
        cmocka_unit_test(test_shipped_scenarios_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
