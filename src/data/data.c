#include "data.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- UTF-8 ---------------------------------------------------------------- */

long utf8_decode(const unsigned char *s, size_t len, uint32_t *out, size_t *bad_offset) {
    size_t i = 0;
    long n = 0;
    while (i < len) {
        unsigned b = s[i];
        size_t extra;
        uint32_t cp, min;
        if (b < 0x80) {
            out[n++] = b;
            i++;
            continue;
        }
        if ((b & 0xE0) == 0xC0) {
            extra = 1, cp = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            extra = 2, cp = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            extra = 3, cp = b & 0x07, min = 0x10000;
        } else {
            goto bad; /* stray continuation byte or 0xF8..0xFF */
        }
        if (extra >= len - i) goto bad; /* truncated at the end */
        for (size_t k = 1; k <= extra; k++) {
            unsigned c = s[i + k];
            if ((c & 0xC0) != 0x80) goto bad;
            cp = (cp << 6) | (c & 0x3F);
        }
        /* The shortest form only, no UTF-16 surrogate halves, Unicode's range. */
        if (cp < min || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) goto bad;
        out[n++] = cp;
        i += extra + 1;
    }
    return n;
bad:
    *bad_offset = i;
    return -1;
}

int utf8_encode(uint32_t cp, char out[4]) {
    /* What cannot be encoded (surrogates, beyond U+10FFFF) comes out as the
     * replacement character U+FFFD. */
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) cp = 0xFFFD;
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- Corpus --------------------------------------------------------------- */

int vocab_find(const uint32_t *vocab, int V, uint32_t cp) {
    int lo = 0, hi = V;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (vocab[mid] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < V && vocab[lo] == cp ? lo : -1;
}

int vocab_lookup(const Corpus *c, uint32_t cp) {
    return vocab_find(c->vocab, c->V, cp);
}

int text_tokenize(const uint32_t *vocab, int V, const char *what, const unsigned char *s,
                  size_t len, int **tokens, size_t *n, Error *err) {
    /* As in corpus_build: a NUL means a binary file (unless a checkpoint's
     * vocabulary holds U+0000, which no corpus gives). */
    const unsigned char *nul = memchr(s, 0, len);
    if (nul && vocab_find(vocab, V, 0) < 0)
        return error_set(err, "%s: binary file (NUL byte at offset %zu), expected UTF-8 text",
                         what, (size_t)(nul - s));
    uint32_t *cps = xmalloc((len ? len : 1) * sizeof(uint32_t));
    size_t bad = 0;
    long count = utf8_decode(s, len, cps, &bad);
    if (count < 0) {
        free(cps);
        return error_set(err, "%s: invalid UTF-8 at byte offset %zu", what, bad);
    }
    int *out = xmalloc(((size_t)count ? (size_t)count : 1) * sizeof(int));
    for (long i = 0; i < count; i++) {
        out[i] = vocab_find(vocab, V, cps[i]);
        if (out[i] < 0) {
            char ch[5] = {0};
            /* control characters print as their code point only */
            if (cps[i] >= 0x20 && cps[i] != 0x7f) utf8_encode(cps[i], ch);
            error_set(err, "%s: character '%s' (U+%04X) at character %ld is not in the vocabulary",
                      what, ch, (unsigned)cps[i], i);
            free(cps);
            free(out);
            return -1;
        }
    }
    free(cps);
    *tokens = out;
    *n = (size_t)count;
    return 0;
}

int text_read_file(const char *path, unsigned char **data, size_t *len, Error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, "%s: cannot open corpus: %s", path, strerror(errno));
    /* A device such as /dev/zero never ends; a pipe is read up to the limit. */
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode)) {
        fclose(f);
        return error_set(err, "%s: %s, expected a UTF-8 text file", path,
                         S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
    }
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > TEXT_MAX_BYTES) {
        fclose(f);
        return error_set(err, "%s: %llu bytes, more than the limit of %llu bytes", path,
                         (unsigned long long)st.st_size, (unsigned long long)TEXT_MAX_BYTES);
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = xmalloc(cap);
    for (;;) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break; /* end of file or an error, told apart below */
        if (n > TEXT_MAX_BYTES) {
            free(buf);
            fclose(f);
            return error_set(err, "%s: more than the limit of %llu bytes", path,
                             (unsigned long long)TEXT_MAX_BYTES);
        }
        unsigned char *grown = realloc(buf, cap * 2);
        if (!grown) die("out of memory reading %s (%zu bytes so far)", path, n);
        buf = grown;
        cap *= 2;
    }
    int failed = ferror(f);
    int saved_errno = errno;
    fclose(f);
    if (failed) {
        free(buf);
        return error_set(err, "%s: cannot read corpus: %s", path, strerror(saved_errno));
    }
    *data = buf;
    *len = n;
    return 0;
}

/* Checks the text and builds the vocabulary and token ids into c. */
static int corpus_build(Corpus *c, const char *path, const unsigned char *data, size_t len,
                        Error *err) {
    if (len == 0) return error_set(err, "%s: corpus is empty", path);
    /* A NUL is valid UTF-8, but in practice it means a binary file. */
    const unsigned char *nul = memchr(data, 0, len);
    if (nul) {
        return error_set(err, "%s: binary file (NUL byte at offset %zu), expected UTF-8 text",
                         path, (size_t)(nul - data));
    }

    uint32_t *cps = xmalloc(len * sizeof *cps);
    size_t bad = 0;
    long decoded = utf8_decode(data, len, cps, &bad);
    if (decoded < 0) {
        free(cps);
        return error_set(err, "%s: invalid UTF-8 at byte offset %zu", path, bad);
    }
    size_t n = (size_t)decoded;

    /* One bit per possible code point: the set bits, read in order, are the
     * sorted vocabulary without a sort. */
    enum { CP_LIMIT = 0x110000, WORD = 64 };
    uint64_t *seen = xcalloc(CP_LIMIT / WORD, sizeof *seen);
    for (size_t i = 0; i < n; i++) seen[cps[i] / WORD] |= (uint64_t)1 << (cps[i] % WORD);
    size_t V = 0;
    for (size_t w = 0; w < CP_LIMIT / WORD; w++) {
        for (uint64_t bits = seen[w]; bits; bits &= bits - 1) V++;
    }
    if (V > VOCAB_MAX) {
        free(seen);
        free(cps);
        return error_set(err, "%s: %zu distinct characters, more than the limit of %d",
                         path, V, VOCAB_MAX);
    }
    c->vocab = xmalloc(V * sizeof *c->vocab);
    c->V = 0;
    for (uint32_t cp = 0; cp < CP_LIMIT; cp++) {
        if (seen[cp / WORD] >> (cp % WORD) & 1) c->vocab[c->V++] = cp;
    }
    free(seen);
    if (V == 1) {
        free(cps);
        return error_set(err, "%s: the corpus is one character (U+%04X) repeated; "
                         "nothing to learn", path, (unsigned)c->vocab[0]);
    }

    c->tokens = xmalloc(n * sizeof *c->tokens);
    for (size_t i = 0; i < n; i++) c->tokens[i] = (uint16_t)vocab_lookup(c, cps[i]);
    free(cps);
    c->n = n;
    return 0;
}

int corpus_load(Corpus *c, const char *path, double val_fraction, int block_size, Error *err) {
    CHECK(val_fraction > 0 && val_fraction < 1 && block_size > 0,
          "corpus_load: val_fraction %g or block_size %d out of range", val_fraction, block_size);
    memset(c, 0, sizeof *c);
    unsigned char *data = NULL;
    size_t len = 0;
    if (text_read_file(path, &data, &len, err)) return -1;
    int rc = corpus_build(c, path, data, len, err);
    free(data);
    if (rc) {
        corpus_free(c);
        return -1;
    }

    /* The validation split is the last floor(n * val_fraction) characters. */
    size_t n_val = (size_t)((double)c->n * val_fraction);
    c->n_train = c->n - n_val;
    size_t need = (size_t)block_size + 1;
    if (c->n_train < need || n_val < need) {
        error_set(err, "%s: corpus too short: %zu characters give a train split of %zu and a "
                  "validation split of %zu; each needs at least block_size+1 = %zu",
                  path, c->n, c->n_train, n_val, need);
        corpus_free(c);
        return -1;
    }
    return 0;
}

void corpus_from_task(Corpus *c, const TaskSpec *t, int block_size) {
    CHECK(t->kind != TASK_NONE && task_record_max(t) <= block_size + 1,
          "corpus_from_task: records of %d characters do not fit block_size %d",
          task_record_max(t), block_size);
    memset(c, 0, sizeof *c);
    c->task = *t;
    c->vocab = xmalloc(TASK_VOCAB_MAX * sizeof *c->vocab);
    c->V = task_vocab(t, c->vocab);
}

void corpus_free(Corpus *c) {
    free(c->vocab);
    free(c->tokens);
    memset(c, 0, sizeof *c);
}

/* ---- Batches -------------------------------------------------------------- */

void corpus_tokens(const Corpus *c, size_t start, size_t n, int *out) {
    CHECK(start <= c->n && n <= c->n - start, "corpus_tokens: %zu + %zu past %zu", start, n, c->n);
    for (size_t i = 0; i < n; i++) out[i] = c->tokens[start + i];
}

/* Copies the window at start: T inputs and the T next characters as targets. */
static void window_copy(const Corpus *c, size_t start, int T, int *inputs, int *targets) {
    corpus_tokens(c, start, (size_t)T, inputs);
    corpus_tokens(c, start + 1, (size_t)T, targets);
}

int batch_task_row(const Corpus *c, const uint32_t *rec, int n, int T, int *inputs, int *targets,
                   char *why, size_t why_size) {
    if (n > T + 1)
        return snprintf(why, why_size, "%d characters, more than block_size + 1 = %d", n, T + 1), -1;
    unsigned char scored[TASK_RECORD_MAX];
    int count = task_parse(&c->task, rec, n, scored, why, why_size);
    if (count < 0 || !inputs) return count;
    int pad = vocab_lookup(c, TASK_PAD);
    for (int t = 0; t < T; t++) {
        inputs[t] = t < n ? vocab_lookup(c, rec[t]) : pad;
        targets[t] = t + 1 < n && scored[t + 1] ? vocab_lookup(c, rec[t + 1]) : TARGET_NONE;
    }
    return count;
}

/* A record the generator made is a record by construction: failing to parse
 * it is a bug, not bad input. */
static int generated_row(const Corpus *c, const uint32_t *rec, int n, int T, int *inputs,
                         int *targets) {
    char why[256];
    int count = batch_task_row(c, rec, n, T, inputs, targets, why, sizeof why);
    CHECK(count >= 0, "generated %s record does not parse: %s", task_name(c->task.kind), why);
    return count;
}

/* The task's batch: every shard draws all B * n_shards records, as the
 * corpus draws all starts, and counts the scored targets of all of them. */
static size_t task_sample_shard(const Corpus *c, Rng *r, int B, int T, int shard, int n_shards,
                                int *inputs, int *targets) {
    uint32_t rec[TASK_RECORD_MAX];
    size_t scored = 0;
    for (int b = 0; b < B * n_shards; b++) {
        int n = task_generate(&c->task, r, rec);
        size_t row = (size_t)(b - shard * B) * (size_t)T;
        if (b / B == shard)
            scored += (size_t)generated_row(c, rec, n, T, inputs + row, targets + row);
        else
            scored += (size_t)generated_row(c, rec, n, T, NULL, NULL); /* counted only */
    }
    return scored;
}

size_t batch_sample_train_shard(const Corpus *c, Rng *r, int B, int T, int shard, int n_shards,
                                int *inputs, int *targets) {
    CHECK(shard >= 0 && shard < n_shards, "batch_sample_train: shard %d of %d", shard, n_shards);
    if (c->task.kind != TASK_NONE)
        return task_sample_shard(c, r, B, T, shard, n_shards, inputs, targets);
    CHECK(T > 0 && (size_t)T < c->n_train, "batch_sample_train: T = %d does not fit", T);
    /* Every shard draws all B * n_shards starts, so the stream (and the rng
     * state left behind) is that of one process drawing the whole batch. */
    for (int b = 0; b < B * n_shards; b++) {
        /* Starts 0 .. n_train-T-1, so the last target is still train data. */
        size_t start = (size_t)rng_below(r, c->n_train - (size_t)T);
        if (b / B != shard) continue;
        size_t row = (size_t)(b - shard * B) * (size_t)T;
        window_copy(c, start, T, inputs + row, targets + row);
    }
    return (size_t)B * n_shards * T;
}

void batch_sample_train(const Corpus *c, Rng *r, int B, int T, int *inputs, int *targets) {
    batch_sample_train_shard(c, r, B, T, 0, 1, inputs, targets);
}

/* The repeats' streams: "repeat" in the seed's top bits apart from batches
 * and initialisation, step and window below. */
#define REPEAT_STREAM 0x726570656174ULL

int batch_insert_repeats(double fraction, uint64_t seed, uint64_t step, int B, int T, int shard,
                         int n_shards, int *inputs, int *targets, int *where, int *len) {
    CHECK(fraction >= 0 && fraction <= 1 && T >= 2 && shard >= 0 && shard < n_shards,
          "batch_insert_repeats: fraction %g, T %d, shard %d of %d", fraction, T, shard, n_shards);
    int hi = T / 2, lo = hi < REPEAT_LEN_MIN ? hi : REPEAT_LEN_MIN, changed = 0;
    int *w = fraction > 0 ? xmalloc((size_t)(T + 1) * sizeof(int)) : NULL;
    for (int b = 0; b < B; b++) {
        if (where) where[b] = -1;
        if (len) len[b] = 0;
        if (fraction <= 0) continue;
        Rng r;
        uint64_t global = (uint64_t)shard * (uint64_t)B + (uint64_t)b;
        rng_seed(&r, rng_mix(rng_mix(seed ^ REPEAT_STREAM) ^ rng_mix(step) ^ global));
        if (!(rng_uniform(&r) < fraction)) continue;
        int n = lo + (int)rng_below(&r, (uint64_t)(hi - lo + 1));
        int o = (int)rng_below(&r, (uint64_t)(T + 2 - 2 * n));
        int *in = inputs + (size_t)b * T, *tg = targets + (size_t)b * T;
        memcpy(w, in, (size_t)T * sizeof(int));
        w[T] = tg[T - 1];
        /* from the copy on, the window is the text from the segment's start */
        memmove(w + o + 2 * n, w + o + n, (size_t)(T + 1 - o - 2 * n) * sizeof(int));
        memcpy(w + o + n, w + o, (size_t)n * sizeof(int));
        memcpy(in, w, (size_t)T * sizeof(int));
        memcpy(tg, w + 1, (size_t)T * sizeof(int));
        if (where) where[b] = o;
        if (len) len[b] = n;
        changed++;
    }
    free(w);
    return changed;
}

int batch_trim(int *inputs, int *targets, int B, int T) {
    int keep = 0;
    for (int b = 0; b < B; b++)
        for (int t = T - 1; t >= keep; t--)
            if (targets[(size_t)b * T + t] != TARGET_NONE) {
                keep = t + 1;
                break;
            }
    if (keep == 0 || keep == T) return T;
    for (int b = 1; b < B; b++) {
        memmove(inputs + (size_t)b * keep, inputs + (size_t)b * T, (size_t)keep * sizeof(int));
        memmove(targets + (size_t)b * keep, targets + (size_t)b * T, (size_t)keep * sizeof(int));
    }
    return keep;
}

void batch_eval_window(const Corpus *c, int val, int i, int count, int T, int *inputs, int *targets) {
    if (c->task.kind != TASK_NONE) {
        uint32_t rec[TASK_RECORD_MAX];
        CHECK(i >= 0, "batch_eval_window: record %d", i);
        int n = task_stream_record(&c->task, val ? TASK_STREAM_VAL : TASK_STREAM_TRAIN_EVAL,
                                   (uint64_t)i, rec);
        generated_row(c, rec, n, T, inputs, targets);
        return;
    }
    size_t lo = val ? c->n_train : 0;
    size_t hi = val ? c->n : c->n_train;
    CHECK(count > 0 && i >= 0 && i < count && T > 0 && (size_t)T < hi - lo,
          "batch_eval_window: window %d of %d with T = %d does not fit", i, count, T);
    /* start = lo + floor(i * S / count) over the S possible starts, written
     * as i*(S/count) + i*(S%count)/count so that no product can overflow. */
    uint64_t S = hi - lo - (size_t)T, k = (uint64_t)i, m = (uint64_t)count;
    size_t start = lo + (size_t)(k * (S / m) + k * (S % m) / m);
    window_copy(c, start, T, inputs, targets);
}

void corpus_probe_tokens(const Corpus *c, int T, int *out) {
    if (c->task.kind == TASK_NONE) {
        corpus_tokens(c, c->n_train, (size_t)T, out);
        return;
    }
    int *targets = xmalloc((size_t)T * sizeof(int));
    batch_eval_window(c, 1, 0, 1, T, out, targets);
    free(targets);
}
