/* The task generators and their rows: every record parses (the parser is the
 * format's second, independent statement), the longest record fits, the
 * streams are deterministic and disjoint, rows are padded and masked, shards
 * add up to the batch, and malformed records are refused with a reason. */
#include <string.h>

#include "check.h"
#include "data.h"

static const TaskSpec kv_default = {.kind = TASK_KV, .keys = 12, .pairs_min = 4, .pairs_max = 6,
                                    .queries = 8};
static const TaskSpec kv_cross = {.kind = TASK_KV, .keys = 12, .pairs_min = 4, .pairs_max = 6,
                                  .queries = 8, .cross = 1};
static const TaskSpec kv_small = {.kind = TASK_KV, .keys = 3, .pairs_min = 1, .pairs_max = 3,
                                  .queries = 2};
static const TaskSpec repeat_default = {.kind = TASK_REPEAT, .letters = 26, .len_min = 6,
                                        .len_max = 14};
static const TaskSpec repeat_small = {.kind = TASK_REPEAT, .letters = 2, .len_min = 2,
                                      .len_max = 3};

static int text_record(const char *s, uint32_t *rec) {
    int n = 0;
    for (; s[n]; n++) rec[n] = (unsigned char)s[n];
    return n;
}

static void record_text(const uint32_t *rec, int n, char *out) {
    for (int i = 0; i < n; i++) out[i] = (char)rec[i];
    out[n] = '\0';
}

/* Independent of the parser: the record's shape read directly. */
static void check_shape(const TaskSpec *t, const uint32_t *rec, int n, int *longest) {
    char text[TASK_RECORD_MAX + 1];
    record_text(rec, n, text);
    const char *bar = strchr(text, TASK_SEP);
    REQUIRE(bar != NULL);
    int left = (int)(bar - text), right = n - left - 1;
    if (t->kind == TASK_KV) {
        EXPECT(left % 2 == 0 && left / 2 >= t->pairs_min && left / 2 <= t->pairs_max,
               "kv record '%s': %d characters of definitions", text, left);
        EXPECT(right == 2 * t->queries, "kv record '%s': %d characters of queries", text, right);
        for (int i = 0; i < left; i += 2) {
            char lo = t->cross ? 'A' : 'a';
            EXPECT(text[i] >= lo && text[i] < lo + t->keys, "kv record '%s': key %c", text, text[i]);
            EXPECT(text[i + 1] >= '0' && text[i + 1] <= '9', "kv record '%s': value", text);
        }
    } else {
        EXPECT(left >= t->len_min && left <= t->len_max && right == left,
               "repeat record '%s'", text);
        EXPECT(memcmp(text, bar + 1, (size_t)left) == 0, "repeat record '%s': copy", text);
    }
    EXPECT(strchr(text, TASK_PAD) == NULL, "record '%s' holds the pad", text);
    if (n > *longest) *longest = n;
}

static void test_generate(const char *name, const TaskSpec *t) {
    Rng r;
    rng_seed(&r, 7);
    uint32_t rec[TASK_RECORD_MAX];
    unsigned char scored[TASK_RECORD_MAX];
    char why[256];
    int longest = 0;
    for (int i = 0; i < 3000; i++) {
        int n = task_generate(t, &r, rec);
        REQUIRE(n > 0 && n <= task_record_max(t));
        check_shape(t, rec, n, &longest);
        int count = task_parse(t, rec, n, scored, why, sizeof why);
        int want = t->kind == TASK_KV ? t->queries : (n - 1) / 2 - 1;
        EXPECT(count == want, "%s record %d: %d scored (%s), expected %d", name, i, count,
               count < 0 ? why : "", want);
        /* the scored characters: kv's query values, repeat's copy after its first */
        const uint32_t *bar = rec;
        while (*bar != TASK_SEP) bar++;
        int sep = (int)(bar - rec);
        for (int j = 0; j < n && count >= 0; j++) {
            int expect = t->kind == TASK_KV ? j > sep && (j - sep) % 2 == 0 : j >= sep + 2;
            EXPECT(scored[j] == expect, "%s record %d: character %d scored %d", name, i, j,
                   scored[j]);
        }
    }
    /* the maximum is reached, so block_size + 1 >= task_record_max is the real bound */
    EXPECT(longest == task_record_max(t), "%s: longest record %d of a bound %d", name, longest,
           task_record_max(t));
}

static void test_vocab(void) {
    uint32_t v[TASK_VOCAB_MAX];
    int V = task_vocab(&kv_cross, v);
    EXPECT(V == 1 + 10 + 12 + 12 + 1, "kv cross vocabulary of %d", V);
    for (int i = 1; i < V; i++) EXPECT(v[i - 1] < v[i], "vocabulary not sorted at %d", i);
    EXPECT(v[0] == TASK_PAD && v[V - 1] == TASK_SEP, "pad first, separator last");
    V = task_vocab(&repeat_small, v);
    EXPECT(V == 4 && v[1] == 'a' && v[2] == 'b', "repeat vocabulary of %d", V);
}

static int records_equal(const TaskSpec *t, Rng *a, Rng *b) {
    uint32_t ra[TASK_RECORD_MAX], rb[TASK_RECORD_MAX];
    int na = task_generate(t, a, ra), nb = task_generate(t, b, rb);
    return na == nb && memcmp(ra, rb, (size_t)na * sizeof *ra) == 0;
}

static void test_determinism(void) {
    Rng a, b;
    rng_seed(&a, 5);
    rng_seed(&b, 5);
    for (int i = 0; i < 100; i++) EXPECT(records_equal(&kv_default, &a, &b), "seed 5, record %d", i);
    rng_seed(&b, 6);
    int same = 0;
    for (int i = 0; i < 100; i++) same += records_equal(&kv_default, &a, &b);
    EXPECT(same == 0, "seeds 5 and 6 share %d of 100 records", same);
    uint32_t r1[TASK_RECORD_MAX], r2[TASK_RECORD_MAX];
    int n1 = task_stream_record(&repeat_default, TASK_STREAM_VAL, 17, r1);
    int n2 = task_stream_record(&repeat_default, TASK_STREAM_VAL, 17, r2);
    EXPECT(n1 == n2 && !memcmp(r1, r2, (size_t)n1 * sizeof *r1), "validation record 17 changes");
}

/* Validation records never appear among the training records of a run, nor
 * in the train-split evaluation stream (a space of about 10^13 records). */
static int record_in(const uint32_t *rec, int n, uint32_t (*set)[32], const int *lens, int count) {
    for (int i = 0; i < count; i++)
        if (lens[i] == n && !memcmp(set[i], rec, (size_t)n * sizeof *rec)) return 1;
    return 0;
}

static void test_disjoint(void) {
    enum { NVAL = 512, NTRAIN = 20000 };
    static uint32_t val[NVAL][32];
    static int lens[NVAL];
    const TaskSpec *t = &kv_default;
    for (int i = 0; i < NVAL; i++) lens[i] = task_stream_record(t, TASK_STREAM_VAL, (uint64_t)i, val[i]);
    int distinct = 1;
    for (int i = 1; i < NVAL; i++) distinct &= !record_in(val[i], lens[i], val, lens, i);
    EXPECT(distinct, "validation records repeat");
    Rng r;
    rng_seed(&r, 1 ^ 0x9e3779b97f4a7c15ull); /* a run's batch stream (seed 1) */
    uint32_t rec[TASK_RECORD_MAX];
    int hits = 0;
    for (int i = 0; i < NTRAIN; i++) {
        int n = task_generate(t, &r, rec);
        hits += record_in(rec, n, val, lens, NVAL);
    }
    for (int i = 0; i < NVAL; i++) {
        int n = task_stream_record(t, TASK_STREAM_TRAIN_EVAL, (uint64_t)i, rec);
        hits += record_in(rec, n, val, lens, NVAL);
    }
    EXPECT(hits == 0, "%d training records are validation records", hits);
}

static void test_rows(void) {
    Corpus c;
    corpus_from_task(&c, &kv_default, 32);
    int T = 32, in[32], tg[32];
    uint32_t rec[TASK_RECORD_MAX];
    char why[256];
    int n = text_record("c7a2f5d9|a2f5c7d9c7a2f5", rec);
    EXPECT(batch_task_row(&c, rec, n, T, in, tg, why, sizeof why) == -1,
           "a record of 7 queries is refused when 8 are configured");
    n = text_record("c7a2f5d9|a2f5c7d9c7a2f5d9", rec);
    int count = batch_task_row(&c, rec, n, T, in, tg, why, sizeof why);
    REQUIRE(count == 8);
    int pad = vocab_lookup(&c, TASK_PAD);
    for (int t = 0; t < T; t++) {
        if (t < n) EXPECT(in[t] == vocab_lookup(&c, rec[t]), "input %d", t);
        else EXPECT(in[t] == pad, "input %d is not the pad", t);
        int scored = t >= 9 && t < n - 1 && (t - 9) % 2 == 0;
        if (scored) EXPECT(tg[t] == vocab_lookup(&c, rec[t + 1]), "target %d", t);
        else EXPECT(tg[t] == TARGET_NONE, "target %d should not be scored", t);
    }
    EXPECT(batch_task_row(&c, rec, n, 20, in, tg, why, sizeof why) == -1 && strstr(why, "block_size"),
           "a record longer than block_size + 1 is refused: %s", why);
    corpus_free(&c);

    /* shards: the same records, the same counts, as one process's batch */
    corpus_from_task(&c, &repeat_default, 30);
    T = 30;
    enum { B = 3, SH = 2 };
    int whole_in[B * SH * 30], whole_tg[B * SH * 30], part_in[B * 30], part_tg[B * 30];
    Rng r0, r1;
    rng_seed(&r0, 11);
    size_t total = batch_sample_train_shard(&c, &r0, B * SH, T, 0, 1, whole_in, whole_tg);
    for (int s = 0; s < SH; s++) {
        rng_seed(&r1, 11);
        size_t got = batch_sample_train_shard(&c, &r1, B, T, s, SH, part_in, part_tg);
        EXPECT(got == total, "shard %d counts %zu scored, the batch %zu", s, got, total);
        EXPECT(!memcmp(part_in, whole_in + s * B * T, sizeof part_in) &&
                   !memcmp(part_tg, whole_tg + s * B * T, sizeof part_tg),
               "shard %d differs from its slice of the batch", s);
        EXPECT(!memcmp(&r0, &r1, sizeof r0), "shard %d leaves another generator state", s);
    }
    size_t counted = 0;
    for (int i = 0; i < B * SH * T; i++) counted += whole_tg[i] != TARGET_NONE;
    EXPECT(counted == total, "%zu targets scored, %zu reported", counted, total);
    corpus_free(&c);
}

/* batch_trim: rows cut after the last scored position of the batch, moved
 * in place; nothing to cut, or nothing scored, leaves T. */
static void test_trim(void) {
    enum { B = 3, T = 8 };
    int in[B * T], tg[B * T], want_in[B * T], want_tg[B * T];
    for (int i = 0; i < B * T; i++) in[i] = i, tg[i] = TARGET_NONE;
    tg[0 * T + 2] = 7, tg[1 * T + 5] = 8, tg[2 * T + 1] = 9; /* latest: row 1, position 5 */
    memcpy(want_in, in, sizeof in);
    memcpy(want_tg, tg, sizeof tg);
    int kept = batch_trim(in, tg, B, T);
    EXPECT(kept == 6, "kept %d positions, want 6", kept);
    for (int b = 0; b < B; b++)
        EXPECT(!memcmp(in + b * 6, want_in + b * T, 6 * sizeof(int)) &&
                   !memcmp(tg + b * 6, want_tg + b * T, 6 * sizeof(int)),
               "row %d is not its first 6 positions", b);
    for (int i = 0; i < B * T; i++) tg[i] = TARGET_NONE;
    EXPECT(batch_trim(in, tg, B, T) == T, "nothing scored: rows kept whole");
    tg[B * T - 1] = 1;
    EXPECT(batch_trim(in, tg, B, T) == T, "the last position scored: rows kept whole");
}

static int parse_text(const TaskSpec *t, const char *text) {
    uint32_t rec[TASK_RECORD_MAX];
    unsigned char scored[TASK_RECORD_MAX];
    char why[256];
    return task_parse(t, rec, text_record(text, rec), scored, why, sizeof why);
}

static void expect_refused(const TaskSpec *t, const char *text, const char *reason) {
    uint32_t rec[TASK_RECORD_MAX];
    unsigned char scored[TASK_RECORD_MAX];
    char why[256] = "";
    int n = text_record(text, rec);
    int rc = task_parse(t, rec, n, scored, why, sizeof why);
    EXPECT(rc == -1 && strstr(why, reason), "'%s': %d, '%s' (expected '%s')", text, rc, why, reason);
}

static void test_parse_refuses(void) {
    EXPECT(parse_text(&kv_small, "a1b2|a1b2") == 2 && parse_text(&kv_small, "c0|c0c0") == 2,
           "valid kv records");
    EXPECT(parse_text(&repeat_small, "ab|ab") == 1 && parse_text(&repeat_small, "bbb|bbb") == 2,
           "valid repeat records");
    const struct {
        const TaskSpec *t;
        const char *text, *reason;
    } bad[] = {
        {&kv_small, "a1b2a3|a1b2", "defined twice"},
        {&kv_small, "a1d2|a1a1", "not a key"},
        {&kv_small, "a1b|a1a1", "value digit"},
        {&kv_small, "a1b2", "no '|'"},
        {&kv_small, "|a1a1", "0 definitions"},
        {&kv_small, "a1b2|a1c1", "not a defined key"},
        {&kv_small, "a1b2|a1b3", "value 2"},
        {&kv_small, "a1b2|a1", "1 queries"},
        {&kv_cross, "a1b2c3d4|a1b2c3d4a1b2c3d4", "(A..L)"},
        {&repeat_small, "abb|aba", "differs"},
        {&repeat_small, "abb|ab", "expected the 3"},
        {&repeat_small, "a|a", "1 characters, expected 2 to 3"},
        {&repeat_small, "acb|acb", "not one of the letters"},
        {&repeat_small, "abab", "no '|'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_refused(bad[i].t, bad[i].text, bad[i].reason);
}

int main(void) {
    test_vocab();
    test_generate("kv", &kv_default);
    test_generate("kv cross", &kv_cross);
    test_generate("kv small", &kv_small);
    test_generate("repeat", &repeat_default);
    test_generate("repeat small", &repeat_small);
    test_determinism();
    test_disjoint();
    test_rows();
    test_trim();
    test_parse_refuses();
    CHECK_DONE("test_task");
}
