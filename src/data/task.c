#include "task.h"

#include <stdio.h>
#include <string.h>

#include "common.h"

const char *task_name(TaskKind k) {
    static const char *const names[] = {"none", "kv", "repeat"};
    return (unsigned)k <= TASK_REPEAT ? names[k] : "?";
}

static int is_lower(uint32_t c, int n) { return c >= 'a' && c < 'a' + (uint32_t)n; }
static int is_upper(uint32_t c, int n) { return c >= 'A' && c < 'A' + (uint32_t)n; }
static int is_digit(uint32_t c) { return c >= '0' && c <= '9'; }

int task_vocab(const TaskSpec *t, uint32_t *out) {
    /* Written in code point order: pad, digits, uppercase, lowercase, '|'. */
    _Static_assert(TASK_PAD < '0' && TASK_SEP > 'z', "the vocabulary is written in order");
    int V = 0;
    out[V++] = TASK_PAD;
    if (t->kind == TASK_KV) {
        for (uint32_t d = '0'; d <= '9'; d++) out[V++] = d;
        for (int i = 0; t->cross && i < t->keys; i++) out[V++] = 'A' + (uint32_t)i;
        for (int i = 0; i < t->keys; i++) out[V++] = 'a' + (uint32_t)i;
    } else {
        for (int i = 0; i < t->letters; i++) out[V++] = 'a' + (uint32_t)i;
    }
    out[V++] = TASK_SEP;
    return V;
}

int task_record_max(const TaskSpec *t) {
    return t->kind == TASK_KV ? 2 * t->pairs_max + 1 + 2 * t->queries : 2 * t->len_max + 1;
}

/* Uniform in [lo, hi]. */
static int draw_between(Rng *r, int lo, int hi) {
    return lo + (int)rng_below(r, (uint64_t)(hi - lo + 1));
}

int task_generate(const TaskSpec *t, Rng *r, uint32_t *rec) {
    int n = 0;
    if (t->kind == TASK_KV) {
        int pairs = draw_between(r, t->pairs_min, t->pairs_max);
        /* the first `pairs` entries of a partial Fisher-Yates shuffle: distinct keys */
        int key[26], value[26];
        for (int i = 0; i < t->keys; i++) key[i] = i;
        for (int i = 0; i < pairs; i++) {
            int j = draw_between(r, i, t->keys - 1);
            int tmp = key[i];
            key[i] = key[j];
            key[j] = tmp;
            value[i] = (int)rng_below(r, 10);
        }
        uint32_t def_base = t->cross ? 'A' : 'a';
        for (int i = 0; i < pairs; i++) {
            rec[n++] = def_base + (uint32_t)key[i];
            rec[n++] = '0' + (uint32_t)value[i];
        }
        rec[n++] = TASK_SEP;
        for (int q = 0; q < t->queries; q++) {
            int i = (int)rng_below(r, (uint64_t)pairs);
            rec[n++] = 'a' + (uint32_t)key[i];
            rec[n++] = '0' + (uint32_t)value[i];
        }
    } else {
        int len = draw_between(r, t->len_min, t->len_max);
        for (int i = 0; i < len; i++) rec[i] = 'a' + (uint32_t)rng_below(r, (uint64_t)t->letters);
        rec[len] = TASK_SEP;
        memcpy(rec + len + 1, rec, (size_t)len * sizeof *rec);
        n = 2 * len + 1;
    }
    return n;
}

int task_stream_record(const TaskSpec *t, int stream, uint64_t i, uint32_t *rec) {
    Rng r;
    /* the stream number in the top bits and the index below: distinct seeds */
    rng_seed(&r, rng_mix(((uint64_t)stream << 56) ^ i));
    return task_generate(t, &r, rec);
}

/* A character for messages: printable ASCII as itself, the rest as U+XXXX. */
static const char *shown(uint32_t c, char buf[16]) {
    if (c >= 0x21 && c < 0x7f) snprintf(buf, 16, "'%c'", (char)c);
    else snprintf(buf, 16, "U+%04X", (unsigned)c);
    return buf;
}

static int kv_parse(const TaskSpec *t, const uint32_t *rec, int n, unsigned char *scored,
                    char *why, size_t ws) {
    char b[16];
    int value[26];
    for (int i = 0; i < 26; i++) value[i] = -1;
    int j = 0, pairs = 0;
    while (j < n && rec[j] != TASK_SEP) {
        uint32_t k = rec[j];
        int ok = t->cross ? is_upper(k, t->keys) : is_lower(k, t->keys);
        if (!ok)
            return snprintf(why, ws, "character %d: %s is not a key of the definitions (%c..%c)",
                            j, shown(k, b), t->cross ? 'A' : 'a',
                            (t->cross ? 'A' : 'a') + t->keys - 1), -1;
        int key = (int)(k - (t->cross ? 'A' : 'a'));
        if (value[key] >= 0)
            return snprintf(why, ws, "character %d: key %s defined twice", j, shown(k, b)), -1;
        if (j + 1 >= n || !is_digit(rec[j + 1]))
            return snprintf(why, ws, "character %d: expected the value digit of key %s", j + 1,
                            shown(k, b)), -1;
        value[key] = (int)(rec[j + 1] - '0');
        scored[j] = scored[j + 1] = 0;
        j += 2;
        pairs++;
    }
    if (j >= n) return snprintf(why, ws, "no '%c' after the definitions", TASK_SEP), -1;
    if (pairs < t->pairs_min || pairs > t->pairs_max)
        return snprintf(why, ws, "%d definitions, expected %d to %d", pairs, t->pairs_min,
                        t->pairs_max), -1;
    scored[j++] = 0;
    int queries = 0, count = 0;
    for (; j < n; j += 2, queries++) {
        uint32_t k = rec[j];
        if (!is_lower(k, t->keys) || value[k - 'a'] < 0)
            return snprintf(why, ws, "character %d: %s is not a defined key", j, shown(k, b)), -1;
        if (j + 1 >= n || rec[j + 1] != '0' + (uint32_t)value[k - 'a'])
            return snprintf(why, ws, "character %d: expected key %s's value %d", j + 1,
                            shown(k, b), value[k - 'a']), -1;
        scored[j] = 0;
        scored[j + 1] = 1;
        count++;
    }
    if (queries != t->queries)
        return snprintf(why, ws, "%d queries, expected %d", queries, t->queries), -1;
    return count;
}

static int repeat_parse(const TaskSpec *t, const uint32_t *rec, int n, unsigned char *scored,
                        char *why, size_t ws) {
    char b[16], b2[16];
    int len = 0;
    while (len < n && rec[len] != TASK_SEP) {
        if (!is_lower(rec[len], t->letters))
            return snprintf(why, ws, "character %d: %s is not one of the letters a..%c", len,
                            shown(rec[len], b), 'a' + t->letters - 1), -1;
        len++;
    }
    if (len >= n) return snprintf(why, ws, "no '%c' after the string", TASK_SEP), -1;
    if (len < t->len_min || len > t->len_max)
        return snprintf(why, ws, "a string of %d characters, expected %d to %d", len, t->len_min,
                        t->len_max), -1;
    if (n != 2 * len + 1)
        return snprintf(why, ws, "%d characters after '%c', expected the %d of the string",
                        n - len - 1, TASK_SEP, len), -1;
    for (int i = 0; i < len; i++)
        if (rec[len + 1 + i] != rec[i])
            return snprintf(why, ws, "character %d: %s differs from the string's %s",
                            len + 1 + i, shown(rec[len + 1 + i], b), shown(rec[i], b2)), -1;
    for (int j = 0; j < n; j++) scored[j] = j >= len + 2;
    return len - 1;
}

int task_parse(const TaskSpec *t, const uint32_t *rec, int n, unsigned char *scored, char *why,
               size_t why_size) {
    if (t->kind == TASK_KV) return kv_parse(t, rec, n, scored, why, why_size);
    return repeat_parse(t, rec, n, scored, why, why_size);
}
