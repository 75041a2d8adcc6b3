/* Unit tests of src/formats/config.c: defaults, parsing of every type, ranges,
 * cross-key checks, overrides, the exact error messages, malformed files and
 * the config_to_string round trip. Config files are written to a fresh temp
 * directory. A message the golden cases of tests/bad_config/ hold is not
 * asserted again here: those run the same inputs through the train binary. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* Like REQUIRE for a message: shows the message that did not match. */
#define EXPECT_MSG(cond, msg)                                                          \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s\n  message: %s\n", __FILE__,      \
                    __LINE__, #cond, msg);                                             \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

static char tmp_dir[512];
static char cfg_path[600]; /* tmp_dir/x.ini, rewritten by each test */

static void temp_dir_make(void) {
    const char *dir = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/qk_test_config_XXXXXX", dir && *dir ? dir : "/tmp");
    REQUIRE(mkdtemp(tmp_dir) != NULL);
    snprintf(cfg_path, sizeof cfg_path, "%s/x.ini", tmp_dir);
}

static void file_write(const char *path, const void *bytes, size_t len) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f != NULL);
    REQUIRE(fwrite(bytes, 1, len, f) == len);
    REQUIRE(fclose(f) == 0);
}

/* Writes text to cfg_path and loads it with the given overrides. */
static int load_n(const char *text, size_t len, int n_over, char **over, Config *c, Error *err) {
    file_write(cfg_path, text, len);
    err->msg[0] = '\0';
    return config_load(c, cfg_path, n_over, over, err);
}

static int load(const char *text, Config *c, Error *err) {
    return load_n(text, strlen(text), 0, NULL, c, err);
}

/* The message with the temp directory replaced by "D", so tests can state
 * the exact text, e.g. "D/x.ini:2: ...". */
static const char *msg_of(const Error *err) {
    static char out[2048];
    const char *m = err->msg;
    size_t dir_len = strlen(tmp_dir);
    if (!strncmp(m, tmp_dir, dir_len)) {
        snprintf(out, sizeof out, "D%s", m + dir_len);
        return out;
    }
    return m;
}

/* Loads text expecting failure with exactly the message want. */
static void expect_error_at(int line, const char *text, int n_over, char **over, const char *want) {
    Config c;
    Error err;
    int rc = load_n(text, strlen(text), n_over, over, &c, &err);
    const char *got = msg_of(&err);
    if (rc != -1 || strcmp(got, want)) {
        fprintf(stderr, "%s:%d: for config:\n%s\nwanted rc -1 and: %s\n   got rc %d and: %s\n",
                __FILE__, line, text, want, rc, got);
        exit(1);
    }
    REQUIRE(strchr(err.msg, '\n') == NULL);
}
#define EXPECT_ERROR(text, want) expect_error_at(__LINE__, text, 0, NULL, want)
#define EXPECT_ERROR_OVER(text, n, over, want) expect_error_at(__LINE__, text, n, over, want)

/* Loads text expecting failure whose message contains every given piece. */
static void expect_error_has_at(int line, const char *text, const char *a, const char *b) {
    Config c;
    Error err;
    int rc = load(text, &c, &err);
    if (rc != -1 || !strstr(err.msg, a) || (b && !strstr(err.msg, b))) {
        fprintf(stderr, "%s:%d: for config:\n%s\nwanted rc -1 and '%s' '%s'\n   got rc %d: %s\n",
                __FILE__, line, text, a, b ? b : "", rc, err.msg);
        exit(1);
    }
}
#define EXPECT_ERROR_HAS(text, a, b) expect_error_has_at(__LINE__, text, a, b)

static void test_defaults(void) {
    Config c;
    Error err;
    config_defaults(&c);
    REQUIRE(!strcmp(c.name, "run") && !strcmp(c.out_dir, "runs"));
    REQUIRE(c.seed == 1337 && c.threads == 0 && !c.overwrite && !c.resume);
    REQUIRE(!strcmp(c.data_path, "data/fortunes.txt") && c.val_fraction == 0.1);
    REQUIRE(c.n_layer == 4 && c.n_head == 4 && c.n_embd == 128 && c.block_size == 64);
    REQUIRE(!c.bias && c.tie_embeddings && c.qk == QK_UNTIED && c.qk_init == QK_INIT_INDEPENDENT);
    REQUIRE(c.batch_size == 12 && c.steps == 2000 && c.lr == 1e-3 && c.min_lr == 1e-4);
    REQUIRE(c.warmup_steps == 100 && c.weight_decay == 0.1 && c.beta1 == 0.9 && c.beta2 == 0.99);
    REQUIRE(c.grad_clip == 1.0 && c.eval_every == 250 && c.eval_batches == 20);
    REQUIRE(c.log_every == 10 && c.stop_after == 0 && c.init_from[0] == '\0');
    REQUIRE(c.probe[0] == '\0' && c.heatmap_every == 250 && c.checkpoint_every == 500);
    REQUIRE(c.keep_checkpoints == 3);
    REQUIRE(config_validate(&c, "defaults", &err) == 0);
    REQUIRE(!strcmp(config_qk_name(QK_TIED), "tied"));
    REQUIRE(!strcmp(config_qk_init_name(QK_INIT_SYMMETRIC), "symmetric"));

    /* A file setting one key leaves the others at their defaults and names
     * the run after the file. */
    REQUIRE(load("[model]\nn_layer = 2\n", &c, &err) == 0);
    REQUIRE(c.n_layer == 2 && c.n_embd == 128 && c.steps == 2000);
    REQUIRE(!strcmp(c.name, "x"));
}

static void test_good_file(void) {
    /* BOM, CRLF, both comment styles, indentation, name:value, quotes, case-
     * insensitive bools and enums, a value that looks like an inline comment. */
    const char *text =
        "\xEF\xBB\xBF; a comment\r\n"
        "# another comment\n"
        "\n"
        "[run]\n"
        "name = exp_1\n"
        "out_dir = \"  /tmp/runs dir \"\n"
        "seed = 18446744073709551615\n"
        "threads = 2\r\n"
        "overwrite = YES\n"
        "resume = on\n"
        "[data]\n"
        "  path = corpus/t\xC3\xA9xt.txt   \n"
        "val_fraction = 0.25\n"
        "[model]\n"
        "n_layer: 6\n"
        "n_head = 8\n"
        "\tn_embd = 256\n"
        "block_size = 2\n"
        "bias = 1\n"
        "tie_embeddings = Off\n"
        "qk = TIED\n"
        "qk_init = independent\n"
        "[train]\n"
        "batch_size = +16\n"
        "steps = 3000\n"
        "lr = 6e-4\n"
        "min_lr = 0\n"
        "warmup_steps = 3000\n"
        "weight_decay = 0\n"
        "beta1 = 0\n"
        "beta2 = 0.999\n"
        "grad_clip = 0\n"
        "eval_every = 1\n"
        "eval_batches = 1\n"
        "log_every = 1\n"
        "stop_after = 3000\n"
        "init_from = runs/a/ckpt.bin\n"
        "[log]\n"
        "probe = to be ; or not # to be\n"
        "heatmap_every = 0\n"
        "checkpoint_every = 0\n"
        "keep_checkpoints = 1\n";
    Config c;
    Error err;
    int rc = load(text, &c, &err);
    EXPECT_MSG(rc == 0, err.msg);
    REQUIRE(!strcmp(c.name, "exp_1") && !strcmp(c.out_dir, "  /tmp/runs dir "));
    REQUIRE(c.seed == UINT64_MAX && c.threads == 2 && c.overwrite == 1 && c.resume == 1);
    REQUIRE(!strcmp(c.data_path, "corpus/t\xC3\xA9xt.txt") && c.val_fraction == 0.25);
    REQUIRE(c.n_layer == 6 && c.n_head == 8 && c.n_embd == 256 && c.block_size == 2);
    REQUIRE(c.bias == 1 && c.tie_embeddings == 0 && c.qk == QK_TIED);
    REQUIRE(c.qk_init == QK_INIT_INDEPENDENT);
    REQUIRE(c.batch_size == 16 && c.steps == 3000 && c.lr == 6e-4 && c.min_lr == 0);
    REQUIRE(c.warmup_steps == 3000 && c.weight_decay == 0 && c.beta1 == 0 && c.beta2 == 0.999);
    REQUIRE(c.grad_clip == 0 && c.eval_every == 1 && c.eval_batches == 1 && c.log_every == 1);
    REQUIRE(c.stop_after == 3000 && !strcmp(c.init_from, "runs/a/ckpt.bin"));
    REQUIRE(!strcmp(c.probe, "to be ; or not # to be"));
    REQUIRE(c.heatmap_every == 0 && c.checkpoint_every == 0 && c.keep_checkpoints == 1);

    /* A section may be reopened, and "[ model ]" is [model]. */
    REQUIRE(load("[model]\nn_layer = 3\n[train]\nsteps = 900\n[ model ]\nn_head = 2\n", &c, &err) == 0);
    REQUIRE(c.n_layer == 3 && c.n_head == 2 && c.steps == 900 && c.warmup_steps == 100);
}

static void test_bad_values(void) {
    /* The exact format once, then every type's failure modes. */
    EXPECT_ERROR("[model]\nn_embd = abc\n",
                 "D/x.ini:2: [model] n_embd = 'abc': expected an integer >= 1 and <= 65536");
    EXPECT_ERROR("[run]\nseed = -1\n",
                 "D/x.ini:2: [run] seed = '-1': expected an integer >= 0 and <= 18446744073709551615");
    EXPECT_ERROR("[train]\n\nlr = fast\n",
                 "D/x.ini:3: [train] lr = 'fast': expected a number > 0");
    EXPECT_ERROR("[model]\nbias = maybe\n",
                 "D/x.ini:2: [model] bias = 'maybe': expected true or false (or yes/no, on/off, 1/0)");
    EXPECT_ERROR("[model]\nqk = half\n", "D/x.ini:2: [model] qk = 'half': expected one of untied, tied");
    EXPECT_ERROR("[model]\nqk_init = \"symmetric\"\n",
                 "D/x.ini:2: [model] qk_init = '\"symmetric\"': expected one of independent, symmetric");

    const char *bad_int[] = {"12x", "1.5", "", "0x10", "4 4", "99999999999999999999", "-"};
    for (size_t i = 0; i < sizeof bad_int / sizeof *bad_int; i++) {
        char text[128];
        snprintf(text, sizeof text, "[train]\nsteps = %s\n", bad_int[i]);
        EXPECT_ERROR_HAS(text, "x.ini:2: [train] steps = '", "expected an integer >= 1");
    }
    EXPECT_ERROR_HAS("[run]\nseed = 18446744073709551616\n", "[run] seed", "expected an integer");
    const char *bad_double[] = {"1e999", "nan", "inf", "-inf", "0.1x", "", "1,5", "."};
    for (size_t i = 0; i < sizeof bad_double / sizeof *bad_double; i++) {
        char text[128];
        snprintf(text, sizeof text, "[train]\nweight_decay = %s\n", bad_double[i]);
        EXPECT_ERROR_HAS(text, "[train] weight_decay = '", "expected a number >= 0");
    }
    EXPECT_ERROR_HAS("[run]\nresume = 2\n", "[run] resume = '2'", "expected true or false");

    /* Strings: too long is an error, not a truncation; the quoted value is
     * cut in the message so the message stays one readable line. */
    char text[2048];
    snprintf(text, sizeof text, "[log]\nprobe = %01024d\n", 0);
    Config c;
    Error err;
    REQUIRE(load(text, &c, &err) == -1);
    EXPECT_MSG(strstr(err.msg, "x.ini:2: [log] probe = '000") &&
                   strstr(err.msg, "...': expected at most 1023 bytes (got 1024)"),
               err.msg);
    REQUIRE(strlen(err.msg) < 200);
    snprintf(text, sizeof text, "[log]\nprobe = %01023d\n", 0);
    EXPECT_MSG(load(text, &c, &err) == 0, err.msg);
    REQUIRE(strlen(c.probe) == 1023);
    /* name is a shorter field than the other strings */
    snprintf(text, sizeof text, "[run]\nname = %0256d\n", 0);
    EXPECT_ERROR_HAS(text, "[run] name", "expected at most 255 bytes (got 256)");

    EXPECT_ERROR("[run]\nname = a/b\n",
                 "D/x.ini:2: [run] name = 'a/b': expected a folder name (no '/', not '.' or '..')");
    EXPECT_ERROR_HAS("[run]\nname = ..\n", "[run] name = '..'", "expected a folder name");
    EXPECT_ERROR("[run]\nout_dir =\n", "D/x.ini:2: [run] out_dir = '': expected a non-empty value");
    EXPECT_ERROR_HAS("[log]\nprobe = a\x01z\n", "[log] probe", "expected text without control characters");
}

static void test_ranges(void) {
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"[model]\nn_layer = 0\n", "[model] n_layer = '0': expected an integer >= 1 and <= 256"},
        {"[model]\nn_layer = 257\n", "[model] n_layer = '257': expected an integer >= 1 and <= 256"},
        {"[model]\nn_embd = 65537\n", "expected an integer >= 1 and <= 65536"},
        {"[model]\nblock_size = 1\n", "[model] block_size = '1': expected an integer >= 2 and <= 16384"},
        {"[model]\nblock_size = 16385\n", "expected an integer >= 2 and <= 16384"},
        {"[model]\nn_head = 1025\n", "expected an integer >= 1 and <= 1024"},
        {"[train]\nbatch_size = 16385\n", "[train] batch_size = '16385'"},
        {"[train]\nsteps = 1000000001\n", "expected an integer >= 1 and <= 1000000000"},
        {"[run]\nthreads = -1\n", "[run] threads = '-1': expected an integer >= 0"},
        {"[data]\nval_fraction = 0\n", "[data] val_fraction = '0': expected a number > 0 and < 1"},
        {"[data]\nval_fraction = 1\n", "[data] val_fraction = '1': expected a number > 0 and < 1"},
        {"[train]\nlr = 0\n", "[train] lr = '0': expected a number > 0"},
        {"[train]\nmin_lr = -1e-9\n", "[train] min_lr = '-1e-9': expected a number >= 0"},
        {"[train]\nbeta1 = 1.0\n", "[train] beta1 = '1.0': expected a number >= 0 and < 1"},
        {"[train]\nbeta2 = -0.1\n", "[train] beta2 = '-0.1': expected a number >= 0 and < 1"},
        {"[train]\ngrad_clip = -1\n", "[train] grad_clip = '-1': expected a number >= 0"},
        {"[train]\nwarmup_steps = -1\n", "[train] warmup_steps = '-1'"},
        {"[train]\neval_every = 0\n", "[train] eval_every = '0': expected an integer >= 1"},
        {"[train]\nstop_after = -5\n", "[train] stop_after = '-5': expected an integer >= 0"},
        {"[log]\nheatmap_every = -1\n", "[log] heatmap_every = '-1'"},
        {"[log]\nkeep_checkpoints = 0\n", "[log] keep_checkpoints = '0': expected an integer >= 1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        EXPECT_ERROR_HAS(bad[i].text, "x.ini:2: ", bad[i].want);

    /* Edges that are allowed. */
    Config c;
    Error err;
    int rc = load("[model]\nn_layer = 256\nn_head = 1\nn_embd = 65536\n"
                  "[data]\nval_fraction = 0.999\n[train]\nbeta1 = 0\nbeta2 = 0.9999999\n"
                  "steps = 1000000000\nwarmup_steps = 0\n",
                  &c, &err);
    EXPECT_MSG(rc == 0, err.msg);
    REQUIRE(c.n_layer == 256 && c.n_embd == 65536 && c.steps == 1000000000);
}

static void test_duplicates_and_unknowns(void) {
    EXPECT_ERROR("[model]\n\n\n\nn_emb = 64\n",
                 "D/x.ini:5: unknown key 'n_emb' in [model] (did you mean 'n_embd'?)");
    EXPECT_ERROR("[train]\nwarmpu_steps = 5\n",
                 "D/x.ini:2: unknown key 'warmpu_steps' in [train] (did you mean 'warmup_steps'?)");
    EXPECT_ERROR("[model]\nwidth = 64\n",
                 "D/x.ini:2: unknown key 'width' in [model] (valid keys: n_layer, n_head, n_embd, "
                 "block_size, bias, tie_embeddings, qk, qk_init, init, smear)");

    EXPECT_ERROR("[run]\nseed = 1\n[modle]\nn_layer = 2\n",
                 "D/x.ini:3: unknown section [modle] (did you mean [model]?)");
    EXPECT_ERROR("[Model]\nn_layer = 2\n", "D/x.ini:1: unknown section [Model] (did you mean [model]?)");
    /* Caught even with no keys under it. */
    EXPECT_ERROR("[model]\nn_layer = 2\n[optimizer]\n",
                 "D/x.ini:3: unknown section [optimizer] (valid sections: [run], [data], [task], [model], "
                 "[train], [log])");
}

static void test_cross_keys(void) {
    EXPECT_ERROR("[model]\nn_embd = 100\nn_head = 3\n",
                 "D/x.ini:3: n_embd (100) is not divisible by n_head (3)");
    /* Reported at whichever key was set last. */
    EXPECT_ERROR("[model]\nn_head = 3\n\nn_embd = 100\n",
                 "D/x.ini:4: n_embd (100) is not divisible by n_head (3)");
    EXPECT_ERROR("[model]\nn_head = 3\n", "D/x.ini:2: n_embd (128) is not divisible by n_head (3)");
    EXPECT_ERROR("[train]\nlr = 1e-5\n", "D/x.ini:2: min_lr (0.0001) must be <= lr (1e-05)");

    Config c;
    Error err;
    REQUIRE(load("[model]\nqk_init = symmetric\n", &c, &err) == 0 && c.qk_init == QK_INIT_SYMMETRIC);

    /* config_validate on a Config edited in code: ranges first (no division
     * by a zero n_head), then cross checks, all at the given place. */
    config_defaults(&c);
    c.n_head = 0;
    REQUIRE(config_validate(&c, "here", &err) == -1);
    EXPECT_MSG(!strcmp(err.msg, "here: [model] n_head = '0': expected an integer >= 1 and <= 1024"),
               err.msg);
    config_defaults(&c);
    c.qk = QK_TIED;
    c.qk_init = QK_INIT_SYMMETRIC;
    REQUIRE(config_validate(&c, "here", &err) == -1);
    EXPECT_MSG(!strcmp(err.msg, "here: qk_init = symmetric requires qk = untied (qk is tied)"), err.msg);
    config_defaults(&c);
    c.beta2 = NAN;
    REQUIRE(config_validate(&c, "here", &err) == -1 && strstr(err.msg, "[train] beta2 = 'nan'"));
    config_defaults(&c);
    memset(c.probe, 'p', sizeof c.probe); /* unterminated */
    REQUIRE(config_validate(&c, "here", &err) == -1 && strstr(err.msg, "expected at most 1023 bytes"));
}

static void test_overrides(void) {
    Config c;
    Error err;
    char *over[] = {"model.n_layer=5", " train.lr = 3e-4 ", "log.probe=\" hi \"", "model.n_layer=6"};
    const char *file = "[model]\nn_layer = 3\n";
    int rc = load_n(file, strlen(file), 4, over, &c, &err);
    EXPECT_MSG(rc == 0, err.msg);
    REQUIRE(c.n_layer == 6 && c.lr == 3e-4 && !strcmp(c.probe, " hi "));

    /* The file's later key loses to the override in the report too. */
    char *embd[] = {"model.n_embd=96"};
    EXPECT_ERROR_OVER("[model]\nn_head = 5\n", 1, embd,
                      "override 'model.n_embd=96': n_embd (96) is not divisible by n_head (5)");
    char *bad[] = {"model.n_layer=2", "model.n_embd=abc"};
    EXPECT_ERROR_OVER("[model]\nn_layer = 3\n", 2, bad,
                      "override 'model.n_embd=abc': [model] n_embd = 'abc': expected an integer >= 1 "
                      "and <= 65536");
    char *no_dot[] = {"foo=1"};
    EXPECT_ERROR_OVER("[model]\nn_layer = 3\n", 1, no_dot, "override 'foo=1': expected section.key=value");
    char *dot_in_value[] = {"steps=1.5"};
    EXPECT_ERROR_OVER("[model]\nn_layer = 3\n", 1, dot_in_value,
                      "override 'steps=1.5': expected section.key=value");
    char *sec[] = {"modle.n_layer=2"};
    EXPECT_ERROR_OVER("[model]\nn_layer = 3\n", 1, sec,
                      "override 'modle.n_layer=2': unknown section [modle] (did you mean [model]?)");
    char *key[] = {"train.step=2"};
    EXPECT_ERROR_OVER("[model]\nn_layer = 3\n", 1, key,
                      "override 'train.step=2': unknown key 'step' in [train] (did you mean 'steps'?)");

    /* config_set directly. */
    config_defaults(&c);
    REQUIRE(config_set(&c, "model", "qk", "tied", "test", &err) == 0 && c.qk == QK_TIED);
    REQUIRE(config_set(&c, "model", "n_layer", "0", "test", &err) == -1);
    EXPECT_MSG(!strcmp(err.msg, "test: [model] n_layer = '0': expected an integer >= 1 and <= 256"), err.msg);
    REQUIRE(c.n_layer == 4); /* a refused value leaves the field alone */
}

static void test_malformed_files(void) {
    Config c;
    Error err;
    static const char nul[] = "[model]\nn_layer = 3\0\n";
    REQUIRE(load_n(nul, sizeof nul - 1, 0, NULL, &c, &err) == -1);
    EXPECT_MSG(!strcmp(msg_of(&err), "D/x.ini:2: not a text file (NUL byte)"), err.msg);
    EXPECT_ERROR("[model]\nn_layer = 3\n[log]\nprobe = caf\xE9\n", "D/x.ini:4: not a text file (invalid UTF-8)");
}

static void test_long_lines(void) {
    Config c;
    Error err;
    /* A comment line of exactly CONFIG_LINE_MAX bytes (plus CRLF) is fine:
     * inih's own 200-byte line buffer must not split it. */
    size_t cap = 3 * CONFIG_LINE_MAX;
    char *text = malloc(cap);
    REQUIRE(text != NULL);
    int n = snprintf(text, cap, "[model]\n;%0*d\r\nn_layer = 7\n", CONFIG_LINE_MAX - 1, 0);
    REQUIRE(n > CONFIG_LINE_MAX);
    EXPECT_MSG(load(text, &c, &err) == 0, err.msg);
    REQUIRE(c.n_layer == 7);
    /* One byte more is refused with its line number. */
    snprintf(text, cap, "[model]\nn_layer = 7\n;%0*d\n", CONFIG_LINE_MAX, 0);
    EXPECT_ERROR(text, "D/x.ini:3: line too long (4097 bytes, at most 4096 allowed)");
    /* A long value arrives whole (a split line would land in probe cut short). */
    snprintf(text, cap, "[log]\nprobe = %0900d\n[model]\nn_layer = 5\n", 0);
    EXPECT_MSG(load(text, &c, &err) == 0, err.msg);
    REQUIRE(strlen(c.probe) == 900 && c.n_layer == 5);
    /* A very long line: the error is the length, not a misplaced syntax error. */
    snprintf(text, cap, "[log]\nprobe = %0*d\n", 2 * CONFIG_LINE_MAX, 0);
    EXPECT_ERROR_HAS(text, "x.ini:2: line too long (8200 bytes", NULL);
    free(text);
}

static void test_round_trip(void) {
    Config c, back;
    Error err;
    config_defaults(&c);
    char *s = config_to_string(&c);
    REQUIRE(config_load_string(&back, s, "ckpt", &err) == 0);
    REQUIRE(memcmp(&c, &back, sizeof c) == 0);
    free(s);

    /* Every key away from its default, with awkward strings and doubles. */
    const char *text = "[run]\nname = r\xC3\xA9sum\xC3\xA9\nout_dir = \"  spaced \"\nseed = 18446744073709551615\n"
                       "threads = 3\noverwrite = yes\nresume = 1\n"
                       "[data]\npath = \"\"quoted\" ; # x\"\nval_fraction = 0.30000000000000004\n"
                       "[model]\nn_layer = 1\nn_head = 3\nn_embd = 96\nblock_size = 7\nbias = on\n"
                       "tie_embeddings = off\nqk = untied\nqk_init = symmetric\n"
                       "[train]\nbatch_size = 1\nsteps = 11\nlr = 0.1\nmin_lr = 4.9406564584124654e-324\n"
                       "warmup_steps = 11\nweight_decay = 1e300\nbeta1 = 0.1\nbeta2 = 0.7\n"
                       "grad_clip = 2.5\neval_every = 3\neval_batches = 4\nlog_every = 5\nstop_after = 6\n"
                       "init_from = ; not a comment\n"
                       "[log]\nprobe = \t tab and \"quote\n"
                       "heatmap_every = 7\ncheckpoint_every = 8\nkeep_checkpoints = 9\n";
    int rc = config_load_string(&c, text, "given", &err);
    EXPECT_MSG(rc == 0, err.msg);
    REQUIRE(!strcmp(c.data_path, "\"quoted\" ; # x") && !strcmp(c.init_from, "; not a comment"));
    REQUIRE(!strcmp(c.probe, "tab and \"quote") && c.min_lr > 0 && c.min_lr < 1e-300);
    s = config_to_string(&c);
    REQUIRE(strstr(s, "[model]\n") && strstr(s, "\nqk_init = symmetric\n"));
    REQUIRE(strstr(s, "\nout_dir = \"  spaced \"\n") && strstr(s, "\nbias = true\n"));
    REQUIRE(strstr(s, "\nval_fraction = 0.30000000000000004\n"));
    rc = config_load_string(&back, s, "ckpt", &err);
    EXPECT_MSG(rc == 0, err.msg);
    REQUIRE(memcmp(&c, &back, sizeof c) == 0);
    free(s);

    /* config_write is what config_to_string returns. */
    FILE *f = tmpfile();
    REQUIRE(f != NULL);
    config_write(&c, f);
    long len = ftell(f);
    s = config_to_string(&c);
    REQUIRE(len == (long)strlen(s));
    rewind(f);
    char *w = malloc((size_t)len + 1);
    REQUIRE(w && fread(w, 1, (size_t)len, f) == (size_t)len);
    REQUIRE(memcmp(w, s, (size_t)len) == 0);
    free(w);
    free(s);
    fclose(f);
}

static void test_load_string(void) {
    Config c;
    Error err;
    REQUIRE(config_load_string(&c, "[model]\nn_layer = 2\n", "runs/a/meta.ini", &err) == 0);
    REQUIRE(!strcmp(c.name, "meta") && c.n_layer == 2);
    REQUIRE(config_load_string(&c, "[model]\nn_layer = 2\n", "plain", &err) == 0);
    REQUIRE(!strcmp(c.name, "plain"));
    REQUIRE(config_load_string(&c, "[model]\nn_layer = 2\nn_layer = 3\n", "ckpt", &err) == -1);
    EXPECT_MSG(!strcmp(err.msg, "ckpt:3: [model] n_layer set twice (first at line 2)"), err.msg);
    REQUIRE(config_load_string(&c, "", "ckpt", &err) == -1);
    EXPECT_MSG(!strcmp(err.msg, "ckpt: empty config file (expected [section] and key = value lines)"),
               err.msg);
    REQUIRE(config_load_string(&c, "[train]\nsteps = 10\n", "ckpt", &err) == -1);
    EXPECT_MSG(!strcmp(err.msg, "ckpt:2: warmup_steps (100) must be <= steps (10)"), err.msg);
}

int main(void) {
    temp_dir_make();
    test_defaults();
    test_good_file();
    test_bad_values();
    test_ranges();
    test_duplicates_and_unknowns();
    test_cross_keys();
    test_overrides();
    test_malformed_files();
    test_long_lines();
    test_round_trip();
    test_load_string();
    REQUIRE(remove(cfg_path) == 0 && rmdir(tmp_dir) == 0);
    printf("test_config: all checks passed\n");
    return 0;
}
