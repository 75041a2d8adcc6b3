/* Unit tests of src/data/data.c: UTF-8, corpus loading and its error messages,
 * splits, batches, eval windows and the PRNG. Each test writes its own small
 * corpus to a temp file. */
#include "data.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static char tmp_path[512];

/* Writes len bytes to a fresh temp file whose name is left in tmp_path. */
static void temp_write(const void *bytes, size_t len) {
    const char *dir = getenv("TMPDIR");
    snprintf(tmp_path, sizeof tmp_path, "%s/qk_test_data_XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(tmp_path);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, bytes, len) == (ssize_t)len);
    REQUIRE(close(fd) == 0);
}

/* Loads bytes as a corpus through a temp file, which is then removed. */
static int load_bytes(Corpus *c, const void *bytes, size_t len, double val_fraction,
                      int block_size, Error *err) {
    temp_write(bytes, len);
    int rc = corpus_load(c, tmp_path, val_fraction, block_size, err);
    unlink(tmp_path);
    return rc;
}

static int load_text(Corpus *c, const char *text, double val_fraction, int block_size) {
    Error err = {{0}};
    int rc = load_bytes(c, text, strlen(text), val_fraction, block_size, &err);
    if (rc) fprintf(stderr, "unexpected error: %s\n", err.msg);
    return rc;
}

/* The load must fail with exactly "<temp path>: <want>". */
static void expect_error_at(int line, const void *bytes, size_t len, double val_fraction,
                            int block_size, const char *want) {
    Corpus c;
    Error err = {{0}};
    char full[2048];
    int rc = load_bytes(&c, bytes, len, val_fraction, block_size, &err);
    snprintf(full, sizeof full, "%s: %s", tmp_path, want);
    if (rc != -1 || strcmp(err.msg, full) != 0) {
        fprintf(stderr, "%s:%d: rc %d, message\n  got:  %s\n  want: %s\n", __FILE__, line, rc,
                err.msg, full);
        exit(1);
    }
    REQUIRE(c.vocab == NULL && c.tokens == NULL && c.n == 0);
}
#define EXPECT_ERROR(bytes, len, vf, bs, want) expect_error_at(__LINE__, bytes, len, vf, bs, want)
#define EXPECT_TEXT_ERROR(text, vf, bs, want) EXPECT_ERROR(text, strlen(text), vf, bs, want)

/* Appends the UTF-8 of code points first, first+1, ... (surrogates skipped)
 * until count characters are written; returns the byte length. */
static size_t distinct_text(char *out, uint32_t first, size_t count) {
    size_t len = 0;
    for (uint32_t cp = first; count > 0; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        len += (size_t)utf8_encode(cp, out + len);
        count--;
    }
    return len;
}

/* A corpus of n distinct ascending characters: token id = position. */
static void load_positions(Corpus *c, size_t n, double val_fraction, int block_size) {
    char *text = malloc(4 * n + 1);
    REQUIRE(text);
    size_t len = distinct_text(text, 0x100, n);
    Error err = {{0}};
    REQUIRE(load_bytes(c, text, len, val_fraction, block_size, &err) == 0);
    free(text);
    for (size_t i = 0; i < n; i++) REQUIRE(c->tokens[i] == (int)i);
}

static void test_utf8_decode(void) {
    static const struct {
        const char *bytes;
        size_t bad; /* byte offset of the first invalid sequence */
    } invalid[] = {
        {"\xC0\xAF", 0},             /* overlong '/' in two bytes */
        {"a\xE0\x80\xAF", 1},        /* overlong in three */
        {"ab\xF0\x80\x80\xAF", 2},   /* overlong in four */
        {"\xC1\xBF", 0},             /* overlong U+007F */
        {"\xED\xA0\x80", 0},         /* U+D800, a surrogate */
        {"x\xED\xBF\xBF", 1},        /* U+DFFF */
        {"\xF4\x90\x80\x80", 0},     /* U+110000 */
        {"\xF5\x80\x80\x80", 0},     /* lead byte past U+10FFFF */
        {"ok\xFF", 2},
        {"abc\x80", 3},              /* stray continuation */
        {"\xBF" "abc", 0},
        {"xy\xE2\x82", 2},           /* truncated at the end */
        {"\xF0\x9F\x98", 0},
        {"\xC3", 0},
        {"\xE2\x82" "A", 0},         /* truncated by an ASCII byte */
        {"\xC3\xA9\xF0\x9F\x98\x80\xF0\x9F\x98", 6},
    };
    for (size_t k = 0; k < sizeof invalid / sizeof invalid[0]; k++) {
        const char *s = invalid[k].bytes;
        uint32_t out[16];
        size_t bad = 999;
        long n = utf8_decode((const unsigned char *)s, strlen(s), out, &bad);
        if (n != -1 || bad != invalid[k].bad) {
            fprintf(stderr, "%s:%d: invalid case %zu: returned %ld, offset %zu, want offset %zu\n",
                    __FILE__, __LINE__, k, n, bad, invalid[k].bad);
            exit(1);
        }
    }

    /* The edges of each encoding length and of the surrogate gap round-trip. */
    static const struct {
        uint32_t cp;
        int len;
    } valid[] = {
        {0x01, 1}, {0x7F, 1}, {0x80, 2}, {0x7FF, 2}, {0x800, 3}, {0xD7FF, 3}, {0xE000, 3},
        {0xFFFD, 3}, {0xFFFF, 3}, {0x10000, 4}, {0x1F600, 4}, {0x10FFFF, 4},
    };
    for (size_t k = 0; k < sizeof valid / sizeof valid[0]; k++) {
        char buf[4];
        uint32_t out[4];
        size_t bad = 0;
        REQUIRE(utf8_encode(valid[k].cp, buf) == valid[k].len);
        REQUIRE(utf8_decode((const unsigned char *)buf, (size_t)valid[k].len, out, &bad) == 1);
        REQUIRE(out[0] == valid[k].cp);
    }

    char buf[4];
    REQUIRE(utf8_encode(0xD800, buf) == 3 && memcmp(buf, "\xEF\xBF\xBD", 3) == 0);
    REQUIRE(utf8_encode(0x1F600, buf) == 4 && memcmp(buf, "\xF0\x9F\x98\x80", 4) == 0);
    /* The length bounds the input: a sequence cut by len is truncated even
     * when the next byte in memory would complete it. */
    uint32_t out[4];
    size_t bad = 7;
    REQUIRE(utf8_decode((const unsigned char *)"ab\xC3\xA9", 3, out, &bad) == -1 && bad == 2);
    REQUIRE(utf8_decode((const unsigned char *)"", 0, out, &bad) == 0);
}

static void test_vocabulary(void) {
    const char *text = "h\xC3\xA9llo w\xC3\xB6rld \xE2\x88\x91 \xF0\x9F\x98\x80"; /* héllo wörld ∑ 😀 */
    static const uint32_t want[] = {' ', 'd', 'h', 'l', 'o', 'r', 'w', 0xE9, 0xF6, 0x2211, 0x1F600};
    const int V = (int)(sizeof want / sizeof want[0]);
    Corpus c;
    REQUIRE(load_text(&c, text, 0.2, 2) == 0);
    REQUIRE(c.V == V);
    for (int v = 0; v < V; v++) {
        REQUIRE(c.vocab[v] == want[v]);
        REQUIRE(vocab_lookup(&c, want[v]) == v);
    }
    REQUIRE(vocab_lookup(&c, 'a') == -1);
    REQUIRE(vocab_lookup(&c, 0x10FFFF) == -1);
    REQUIRE(vocab_lookup(&c, 0) == -1);
    REQUIRE(c.n == 15);
    REQUIRE(c.n_train == 12); /* n_val = floor(15 * 0.2) = 3 */

    /* One token per character: re-encoding the tokens gives the bytes back. */
    char back[64];
    size_t len = 0;
    for (size_t i = 0; i < c.n; i++) {
        REQUIRE(c.tokens[i] >= 0 && c.tokens[i] < c.V);
        len += (size_t)utf8_encode(c.vocab[c.tokens[i]], back + len);
    }
    REQUIRE(len == strlen(text) && memcmp(back, text, len) == 0);
    REQUIRE(c.tokens[1] == vocab_lookup(&c, 0xE9) && c.tokens[14] == V - 1);
    corpus_free(&c);
    REQUIRE(c.vocab == NULL && c.tokens == NULL && c.V == 0);
}

static void test_vocab_limit(void) {
    char *text = malloc(4 * (VOCAB_MAX + 1));
    REQUIRE(text);
    Corpus c;
    Error err = {{0}};
    size_t len = distinct_text(text, 1, VOCAB_MAX);
    REQUIRE(load_bytes(&c, text, len, 0.1, 8, &err) == 0);
    REQUIRE(c.V == VOCAB_MAX);
    REQUIRE(c.tokens[c.n - 1] == VOCAB_MAX - 1);
    corpus_free(&c);

    char want[256];
    snprintf(want, sizeof want, "%d distinct characters, more than the limit of %d",
             VOCAB_MAX + 1, VOCAB_MAX);
    len = distinct_text(text, 1, VOCAB_MAX + 1);
    EXPECT_ERROR(text, len, 0.1, 8, want);
    free(text);
}

static void test_load_errors(void) {
    /* Invalid UTF-8 at the start, in the middle and cut off at the end. */
    EXPECT_TEXT_ERROR("\x80hello world", 0.1, 2, "invalid UTF-8 at byte offset 0");
    EXPECT_TEXT_ERROR("h\xC3\xA9llo \xC3\x28 world", 0.1, 2, "invalid UTF-8 at byte offset 7");
    EXPECT_TEXT_ERROR("hello world\xE2\x82", 0.1, 2, "invalid UTF-8 at byte offset 11");
    EXPECT_TEXT_ERROR("hello \xC0\xAF world", 0.1, 2, "invalid UTF-8 at byte offset 6");
    EXPECT_TEXT_ERROR("hello \xED\xA0\x80 world", 0.1, 2, "invalid UTF-8 at byte offset 6");

    EXPECT_ERROR("", 0, 0.1, 2, "corpus is empty");
    EXPECT_ERROR("abc\0def\xFF", 8, 0.1, 2,
                 "binary file (NUL byte at offset 3), expected UTF-8 text");
    EXPECT_TEXT_ERROR("aaaaaaaaaaaaaaaaaaaa", 0.1, 2,
                      "the corpus is one character (U+0061) repeated; nothing to learn");

    /* Too short: the validation side, then the train side. */
    EXPECT_TEXT_ERROR("abcdefghij", 0.1, 4,
                      "corpus too short: 10 characters give a train split of 9 and a "
                      "validation split of 1; each needs at least block_size+1 = 5");
    EXPECT_TEXT_ERROR("abcdefghij", 0.5, 5,
                      "corpus too short: 10 characters give a train split of 5 and a "
                      "validation split of 5; each needs at least block_size+1 = 6");

    Corpus c;
    Error err = {{0}};
    char want[2048];
    const char *missing = "/nonexistent-qkscope-dir/corpus.txt";
    REQUIRE(corpus_load(&c, missing, 0.1, 4, &err) == -1);
    snprintf(want, sizeof want, "%s: cannot open corpus: %s", missing, strerror(ENOENT));
    REQUIRE(strcmp(err.msg, want) == 0);

    /* A directory is refused before reading. */
    const char *dir = getenv("TMPDIR");
    char dir_path[512];
    snprintf(dir_path, sizeof dir_path, "%s/qk_test_dir_XXXXXX", dir && *dir ? dir : "/tmp");
    REQUIRE(mkdtemp(dir_path) != NULL);
    int rc = corpus_load(&c, dir_path, 0.1, 4, &err);
    rmdir(dir_path);
    snprintf(want, sizeof want, "%s: is a directory, expected a UTF-8 text file", dir_path);
    REQUIRE(rc == -1 && strcmp(err.msg, want) == 0);
}

static void test_splits(void) {
    Corpus c;
    /* Just long enough: 6 + 6 characters for block_size 5. */
    REQUIRE(load_text(&c, "abcdefghijkl", 0.5, 5) == 0);
    REQUIRE(c.n == 12 && c.n_train == 6);
    corpus_free(&c);

    REQUIRE(load_text(&c, "abcdefghij", 0.25, 1) == 0); /* n_val = floor(2.5) = 2 */
    REQUIRE(c.n == 10 && c.n_train == 8);
    corpus_free(&c);

    /* Multi-byte characters count once each in the split. */
    REQUIRE(load_text(&c, "\xC3\xA9\xC3\xA9" "ab\xE2\x88\x91\xE2\x88\x91xy", 0.5, 2) == 0);
    REQUIRE(c.n == 8 && c.n_train == 4);
    corpus_free(&c);

    load_positions(&c, 1000, 0.1, 16);
    REQUIRE(c.n == 1000 && c.n_train == 900);
    corpus_free(&c);
}

static void test_batches(void) {
    enum { B = 8, T = 16 };
    Corpus c;
    load_positions(&c, 1000, 0.1, T);
    int in[B * T], tg[B * T], in2[B * T], tg2[B * T];
    Rng r1, r2;
    rng_seed(&r1, 42);
    rng_seed(&r2, 42);
    for (int step = 0; step < 50; step++) {
        batch_sample_train(&c, &r1, B, T, in, tg);
        batch_sample_train(&c, &r2, B, T, in2, tg2);
        REQUIRE(memcmp(in, in2, sizeof in) == 0 && memcmp(tg, tg2, sizeof tg) == 0);
        for (int b = 0; b < B; b++) {
            /* token = position, so the first input is the window's offset */
            int off = in[b * T];
            REQUIRE(off >= 0 && (size_t)off + T < c.n_train);
            for (int t = 0; t < T; t++) {
                REQUIRE(in[b * T + t] == off + t);
                REQUIRE(tg[b * T + t] == off + t + 1);
            }
        }
    }

    Rng r3;
    rng_seed(&r3, 43);
    rng_seed(&r1, 42);
    batch_sample_train(&c, &r1, B, T, in, tg);
    batch_sample_train(&c, &r3, B, T, in2, tg2);
    REQUIRE(memcmp(in, in2, sizeof in) != 0);

    /* Row b uses the b-th rng_below draw, in order. */
    rng_seed(&r1, 7);
    batch_sample_train(&c, &r1, B, T, in, tg);
    rng_seed(&r1, 7);
    for (int b = 0; b < B; b++) REQUIRE((uint64_t)in[b * T] == rng_below(&r1, c.n_train - T));
    corpus_free(&c);

    /* Every start 0 .. n_train-T-1 is drawn, nothing past it: 20 characters,
     * n_train = 15, T = 4 gives starts 0..10. */
    enum { T2 = 4 };
    load_positions(&c, 20, 0.25, T2);
    REQUIRE(c.n_train == 15);
    int seen[16] = {0};
    int row_in[T2], row_tg[T2];
    rng_seed(&r1, 1);
    for (int k = 0; k < 2000; k++) {
        batch_sample_train(&c, &r1, 1, T2, row_in, row_tg);
        REQUIRE(row_in[0] >= 0 && row_in[0] < 16);
        seen[row_in[0]]++;
    }
    for (int off = 0; off < 16; off++) REQUIRE((seen[off] > 0) == (off <= 10));
    corpus_free(&c);
}

static void test_eval_windows(void) {
    enum { T = 16, COUNT = 7 };
    Corpus c;
    load_positions(&c, 1000, 0.1, T);
    int in[T], tg[T], in2[T], tg2[T];
    for (int val = 0; val <= 1; val++) {
        size_t lo = val ? c.n_train : 0, hi = val ? c.n : c.n_train;
        int prev = -1;
        for (int i = 0; i < COUNT; i++) {
            batch_eval_window(&c, val, i, COUNT, T, in, tg);
            batch_eval_window(&c, val, i, COUNT, T, in2, tg2);
            REQUIRE(memcmp(in, in2, sizeof in) == 0 && memcmp(tg, tg2, sizeof tg) == 0);
            int start = in[0];
            REQUIRE((size_t)start >= lo && (size_t)start + T < hi);
            REQUIRE(start > prev); /* spread out, in order */
            prev = start;
            for (int t = 0; t < T; t++) REQUIRE(in[t] == start + t && tg[t] == start + t + 1);
        }
        batch_eval_window(&c, val, 0, COUNT, T, in, tg);
        REQUIRE((size_t)in[0] == lo);
    }
    /* Validation: S = 100 - 16 = 84 starts; window 3 of 7 at 900 + 3*84/7 = 936,
     * the last one at 900 + 6*84/7 = 972. */
    batch_eval_window(&c, 1, 3, COUNT, T, in, tg);
    REQUIRE(in[0] == 936);
    batch_eval_window(&c, 1, 6, COUNT, T, in, tg);
    REQUIRE(in[0] == 972);
    /* More windows than starts: they repeat but stay inside the split. */
    for (int i = 0; i < 500; i++) {
        batch_eval_window(&c, 1, i, 500, T, in, tg);
        REQUIRE(in[0] >= 900 && in[0] + T < 1000);
    }
    corpus_free(&c);
}

/* Checks one row of batch_insert_repeats against the window it came from
 * (token = position, so the window is orig[0..T]): unchanged when where is
 * -1; else orig[0 .. o+len-1], the segment again, then orig[o+len ..],
 * inputs and targets one window shifted by one. Read from the tokens alone
 * too: consecutive but for one step back by len - 1 at o + len. */
static void check_repeat_row(const int *in, const int *tg, int T, int start, int o, int len) {
    int w[T + 1];
    for (int t = 0; t < T; t++) w[t] = in[t];
    w[T] = tg[T - 1];
    for (int t = 0; t + 1 < T; t++) REQUIRE(tg[t] == in[t + 1]);
    if (o < 0) {
        for (int t = 0; t <= T; t++) REQUIRE(w[t] == start + t);
        return;
    }
    int lo = T / 2 < REPEAT_LEN_MIN ? T / 2 : REPEAT_LEN_MIN;
    REQUIRE(len >= lo && len <= T / 2 && o + 2 * len <= T + 1);
    for (int t = 0; t <= T; t++) {
        int want = t < o + len ? start + t : start + t - len; /* the copy and the rest */
        REQUIRE(w[t] == want);
    }
    for (int k = 0; k < len; k++) REQUIRE(w[o + len + k] == w[o + k]); /* the copy is exact */
    int jumps = 0;
    for (int t = 1; t <= T; t++)
        if (w[t] != w[t - 1] + 1) {
            REQUIRE(t == o + len && w[t] == w[t - 1] - len + 1);
            jumps++;
        }
    REQUIRE(jumps == 1);
}

static void test_repeats(void) {
    enum { B = 8, T = 32, STEPS = 500 };
    Corpus c;
    load_positions(&c, 2000, 0.1, T);
    int in[2 * B * T], tg[2 * B * T], in0[2 * B * T], tg0[2 * B * T], where[2 * B], len[2 * B];
    Rng r;

    /* fraction 0: the same bytes as before, and no row counted */
    rng_seed(&r, 5);
    batch_sample_train(&c, &r, B, T, in, tg);
    memcpy(in0, in, sizeof in), memcpy(tg0, tg, sizeof tg);
    REQUIRE(batch_insert_repeats(0, 9, 3, B, T, 0, 1, in, tg, where, len) == 0);
    REQUIRE(memcmp(in, in0, sizeof in) == 0 && memcmp(tg, tg0, sizeof tg) == 0);
    for (int b = 0; b < B; b++) REQUIRE(where[b] == -1 && len[b] == 0);

    /* the fraction of windows repeated over many batches, each repeat exact,
     * every length of the range drawn */
    const double fraction = 0.25;
    long changed = 0, rows = 0, lens[T / 2 + 1] = {0};
    rng_seed(&r, 6);
    for (int step = 0; step < STEPS; step++) {
        batch_sample_train(&c, &r, B, T, in, tg);
        memcpy(in0, in, sizeof in);
        int n = batch_insert_repeats(fraction, 9, (uint64_t)step, B, T, 0, 1, in, tg, where, len);
        int count = 0;
        for (int b = 0; b < B; b++) {
            check_repeat_row(in + b * T, tg + b * T, T, in0[b * T], where[b], len[b]);
            count += where[b] >= 0;
            if (where[b] >= 0) lens[len[b]]++;
        }
        REQUIRE(n == count);
        changed += n;
        rows += B;
    }
    /* 4000 windows: the binomial's sd is 0.007 */
    double got = (double)changed / rows;
    EXPECT(fabs(got - fraction) < 0.03, "%ld of %ld windows repeated (%.4f), expected about %.2f",
           changed, rows, got, fraction);
    for (int n = 0; n <= T / 2; n++)
        EXPECT((lens[n] > 0) == (n >= REPEAT_LEN_MIN), "segment length %d drawn %ld times", n,
               lens[n]);

    /* the same (seed, step) draws the same; another step or seed other rows */
    rng_seed(&r, 7);
    batch_sample_train(&c, &r, B, T, in0, tg0);
    int w1[B], w2[B], w3[B], w4[B];
    memcpy(in, in0, sizeof in0), memcpy(tg, tg0, sizeof tg0);
    batch_insert_repeats(0.5, 9, 11, B, T, 0, 1, in, tg, w1, NULL);
    memcpy(in, in0, sizeof in0), memcpy(tg, tg0, sizeof tg0);
    batch_insert_repeats(0.5, 9, 11, B, T, 0, 1, in, tg, w2, NULL);
    REQUIRE(memcmp(w1, w2, sizeof w1) == 0);
    memcpy(in, in0, sizeof in0), memcpy(tg, tg0, sizeof tg0);
    batch_insert_repeats(0.5, 9, 12, B, T, 0, 1, in, tg, w3, NULL);
    memcpy(in, in0, sizeof in0), memcpy(tg, tg0, sizeof tg0);
    batch_insert_repeats(0.5, 10, 11, B, T, 0, 1, in, tg, w4, NULL);
    EXPECT(memcmp(w1, w3, sizeof w1) != 0, "steps 11 and 12 repeat the same rows at the same places");
    EXPECT(memcmp(w1, w4, sizeof w1) != 0, "seeds 9 and 10 repeat the same rows at the same places");

    /* two shards change their rows of the global batch as one process does */
    rng_seed(&r, 8);
    batch_sample_train(&c, &r, 2 * B, T, in0, tg0);
    memcpy(in, in0, sizeof in0), memcpy(tg, tg0, sizeof tg0);
    batch_insert_repeats(0.5, 9, 4, 2 * B, T, 0, 1, in, tg, where, len);
    for (int shard = 0; shard < 2; shard++) {
        int sin[B * T], stg[B * T], sw[B], sl[B];
        memcpy(sin, in0 + shard * B * T, sizeof sin), memcpy(stg, tg0 + shard * B * T, sizeof stg);
        batch_insert_repeats(0.5, 9, 4, B, T, shard, 2, sin, stg, sw, sl);
        REQUIRE(memcmp(sin, in + shard * B * T, sizeof sin) == 0);
        REQUIRE(memcmp(stg, tg + shard * B * T, sizeof stg) == 0);
        REQUIRE(memcmp(sw, where + shard * B, sizeof sw) == 0 && memcmp(sl, len + shard * B, sizeof sl) == 0);
    }

    /* fraction 1: every row; short windows: segments of T / 2 */
    rng_seed(&r, 9);
    batch_sample_train(&c, &r, B, T, in, tg);
    REQUIRE(batch_insert_repeats(1, 9, 0, B, T, 0, 1, in, tg, where, len) == B);
    for (int T2 = 2; T2 <= 6; T2++) {
        int sin[B * 6], stg[B * 6], sin0[B * 6];
        batch_sample_train(&c, &r, B, T2, sin, stg);
        memcpy(sin0, sin, sizeof sin);
        REQUIRE(batch_insert_repeats(1, 9, 0, B, T2, 0, 1, sin, stg, where, len) == B);
        for (int b = 0; b < B; b++) {
            REQUIRE(len[b] == T2 / 2);
            check_repeat_row(sin + b * T2, stg + b * T2, T2, sin0[b * T2], where[b], len[b]);
        }
    }
    corpus_free(&c);
}

static void test_rng_known_values(void) {
    /* rng_seed fills the state with the first four splitmix64 outputs from
     * state 0, the reference values published with splitmix64. */
    Rng r;
    rng_seed(&r, 0);
    REQUIRE(r.s[0] == 0xE220A8397B1DCDAFu);
    REQUIRE(r.s[1] == 0x6E789E6AA1B965F4u);
    REQUIRE(r.s[2] == 0x06C45D188009454Fu);
    REQUIRE(r.s[3] == 0xF88BB8A8724C81ECu);

    /* xoshiro256** from s = {1, 2, 3, 4}: its published reference outputs.
     * The first three, worked by hand:
     * 1st: rotl(2*5, 7) * 9 = 1280 * 9 = 11520; then s = {7, 0, 2^18+2, 6<<45}.
     * 2nd: s[1] = 0 gives 0; then s = {7 ^ 6<<45, 2^18+5, 2^18+5, 6<<26}.
     * 3rd: rotl((2^18+5)*5, 7) * 9 = 1310745 * 128 * 9 = 1509978240. */
    static const uint64_t want[] = {
        11520u, 0u, 1509978240u, 1215971899390074240u, 1216172134540287360u,
        607988272756665600u, 16172922978634559625u, 8476171486693032832u,
        10595114339597558777u, 2904607092377533576u,
    };
    r = (Rng){{1, 2, 3, 4}};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) REQUIRE(rng_next(&r) == want[k]);
}

static void test_rng_distributions(void) {
    enum { N = 100000, K = 10 };
    Rng r;
    rng_seed(&r, 12345);

    /* rng_below: in range and uniform; chi-square with 9 degrees of freedom
     * has mean 9, and 40 is far in its tail. */
    long counts[K] = {0};
    for (int i = 0; i < N; i++) {
        uint64_t x = rng_below(&r, K);
        REQUIRE(x < K);
        counts[x]++;
    }
    double chi2 = 0, expect = (double)N / K;
    for (int k = 0; k < K; k++) chi2 += (counts[k] - expect) * (counts[k] - expect) / expect;
    REQUIRE(chi2 < 40);

    for (int i = 0; i < 100; i++) REQUIRE(rng_below(&r, 1) == 0);
    /* n = 3 * 2^62: plain x % n would put half the draws below 2^62 instead
     * of a third; rejection keeps it a third. */
    const uint64_t big = (uint64_t)3 << 62;
    int low = 0;
    for (int i = 0; i < 3000; i++) {
        uint64_t x = rng_below(&r, big);
        REQUIRE(x < big);
        low += x < big / 3;
    }
    REQUIRE(low > 850 && low < 1150);

    double sum = 0;
    for (int i = 0; i < N; i++) {
        double u = rng_uniform(&r);
        REQUIRE(u >= 0.0 && u < 1.0);
        sum += u;
    }
    REQUIRE(fabs(sum / N - 0.5) < 0.01);

    /* rng_normal: standard errors are 0.003 for the mean and 0.0045 for the
     * variance at this N; the bounds are several times wider. */
    double s1 = 0, s2 = 0;
    for (int i = 0; i < N; i++) {
        double z = rng_normal(&r);
        REQUIRE(isfinite(z));
        s1 += z;
        s2 += z * z;
    }
    double mean = s1 / N, var = s2 / N - mean * mean;
    REQUIRE(fabs(mean) < 0.02);
    REQUIRE(fabs(var - 1.0) < 0.03);

    /* No cached second value: a copy of the state gives the same draw. */
    Rng copy = r;
    REQUIRE(rng_normal(&r) == rng_normal(&copy));
    REQUIRE(memcmp(&r, &copy, sizeof r) == 0);
}

int main(void) {
    test_utf8_decode();
    test_vocabulary();
    test_vocab_limit();
    test_load_errors();
    test_splits();
    test_batches();
    test_eval_windows();
    test_repeats();
    test_rng_known_values();
    test_rng_distributions();
    CHECK_DONE("test_data");
}
