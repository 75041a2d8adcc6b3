#include "data.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- PRNG ----------------------------------------------------------------
 * Generator: xoshiro256** (Blackman and Vigna, "Scrambled linear pseudorandom
 * number generators"). Seeding: splitmix64 (Steele, Lea and Flood, "Fast
 * splittable pseudorandom number generators"), the seeding the xoshiro authors
 * recommend, so that any 64-bit seed, 0 included, gives a well-mixed state. */

static uint64_t splitmix64_next(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

void rng_seed(Rng *r, uint64_t seed) {
    /* splitmix64's output function is a bijection and its successive states
     * differ, so at most one of four outputs is 0: never the all-zero state
     * that xoshiro cannot leave. */
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64_next(&x);
}

uint64_t rng_next(Rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

uint64_t rng_below(Rng *r, uint64_t n) {
    CHECK(n > 0, "rng_below: empty range");
    /* 2^64 mod n draws at the bottom would make small results more likely;
     * rejecting them leaves a whole number of copies of [0, n). */
    uint64_t reject = (0 - n) % n;
    uint64_t x;
    do x = rng_next(r); while (x < reject);
    return x % n;
}

double rng_uniform(Rng *r) {
    /* The top 53 bits fill a double's mantissa exactly: multiples of 2^-53. */
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

double rng_normal(Rng *r) {
    const double two_pi = 6.283185307179586476925;
    double u1 = rng_uniform(r);
    double u2 = rng_uniform(r);
    /* 1 - u1 lies in (0, 1], so the log is finite. */
    return sqrt(-2.0 * log(1.0 - u1)) * cos(two_pi * u2);
}

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

void batch_sample_train_shard(const Corpus *c, Rng *r, int B, int T, int shard, int n_shards,
                              int *inputs, int *targets) {
    CHECK(T > 0 && (size_t)T < c->n_train, "batch_sample_train: T = %d does not fit", T);
    CHECK(shard >= 0 && shard < n_shards, "batch_sample_train: shard %d of %d", shard, n_shards);
    /* Every shard draws all B * n_shards starts, so the stream (and the rng
     * state left behind) is that of one process drawing the whole batch. */
    for (int b = 0; b < B * n_shards; b++) {
        /* Starts 0 .. n_train-T-1, so the last target is still train data. */
        size_t start = (size_t)rng_below(r, c->n_train - (size_t)T);
        if (b / B != shard) continue;
        size_t row = (size_t)(b - shard * B) * (size_t)T;
        window_copy(c, start, T, inputs + row, targets + row);
    }
}

void batch_sample_train(const Corpus *c, Rng *r, int B, int T, int *inputs, int *targets) {
    batch_sample_train_shard(c, r, B, T, 0, 1, inputs, targets);
}

void batch_eval_window(const Corpus *c, int val, int i, int count, int T, int *inputs, int *targets) {
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
