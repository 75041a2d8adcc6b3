/* libFuzzer harness: the corpus loader and what reads a loaded corpus
 * (src/data/data.c): corpus_load on the input written to a file, then training
 * batches, every eval window of both splits and text_tokenize.
 *
 * Checks, beyond "no crash, no sanitizer report, no exit":
 *  - a loaded corpus has a sorted vocabulary of 2..VOCAB_MAX code points,
 *    tokens in [0, V), both splits longer than block_size;
 *  - batch windows are contiguous runs of the split they come from, targets
 *    shifted by one;
 *  - text_tokenize of the same bytes with the corpus's vocabulary gives the
 *    corpus's tokens; utf8_encode of the decoded code points gives the
 *    input bytes back;
 *  - every refusal is one non-empty line without control characters. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "fuzz_util.h"

#define BLOCK 8
#define VAL_FRACTION 0.1
#define BATCH 4
#define EVAL_WINDOWS 3

/* Window [start, start+T] of the corpus equals inputs/targets. */
static int window_at(const Corpus *c, size_t start, const int *in, const int *tg, int T) {
    for (int t = 0; t < T; t++)
        if (in[t] != c->tokens[start + t] || tg[t] != c->tokens[start + t + 1]) return 0;
    return 1;
}

/* Some start in [lo, hi - T) holds the window. */
static int window_in(const Corpus *c, size_t lo, size_t hi, const int *in, const int *tg, int T) {
    for (size_t s = lo; s + (size_t)T < hi; s++)
        if (window_at(c, s, in, tg, T)) return 1;
    return 0;
}

static void check_corpus(const Corpus *c, const uint8_t *data, size_t size) {
    FUZZ_ASSERT(c->V >= 2 && c->V <= VOCAB_MAX, "V = %d", c->V);
    for (int i = 1; i < c->V; i++)
        FUZZ_ASSERT(c->vocab[i - 1] < c->vocab[i], "vocabulary not sorted at %d", i);
    FUZZ_ASSERT(c->n_train > BLOCK && c->n - c->n_train > BLOCK && c->n_train < c->n,
                "splits %zu / %zu of %zu", c->n_train, c->n - c->n_train, c->n);
    FUZZ_ASSERT(c->n - c->n_train == (size_t)((double)c->n * VAL_FRACTION),
                "validation split %zu of %zu", c->n - c->n_train, c->n);
    for (size_t i = 0; i < c->n; i++)
        FUZZ_ASSERT(c->tokens[i] < c->V, "token %zu = %d", i, c->tokens[i]);

    /* The same bytes through text_tokenize, and back through utf8_encode. */
    int *tokens = NULL;
    size_t n = 0;
    Error err;
    int rc = text_tokenize(c->vocab, c->V, "fuzz", data, size, &tokens, &n, &err);
    FUZZ_ASSERT(rc == 0, "text_tokenize refuses the loaded corpus: %s", err.msg);
    FUZZ_ASSERT(n == c->n, "text_tokenize gives %zu tokens, corpus_load %zu", n, c->n);
    for (size_t i = 0; i < n; i++)
        FUZZ_ASSERT(tokens[i] == c->tokens[i], "text_tokenize disagrees with corpus_load at %zu", i);
    free(tokens);
    size_t at = 0;
    for (size_t i = 0; i < c->n; i++) {
        char buf[4];
        int w = utf8_encode(c->vocab[c->tokens[i]], buf);
        FUZZ_ASSERT(at + (size_t)w <= size && memcmp(data + at, buf, (size_t)w) == 0,
                    "character %zu does not encode back to the input bytes", i);
        at += (size_t)w;
    }
    FUZZ_ASSERT(at == size, "encoded %zu of %zu bytes", at, size);

    /* Training batches: windows of the train split only. */
    int in[BATCH * BLOCK], tg[BATCH * BLOCK];
    Rng r;
    rng_seed(&r, (uint64_t)size * 0x9E3779B97F4A7C15u);
    for (int T = 1; T <= BLOCK; T += BLOCK - 1) {
        batch_sample_train(c, &r, BATCH, T, in, tg);
        for (int b = 0; b < BATCH; b++)
            FUZZ_ASSERT(window_in(c, 0, c->n_train, in + b * T, tg + b * T, T),
                        "train batch row %d (T = %d) is not a train window", b, T);
    }

    /* Eval windows: all of both splits, at their documented starts. */
    for (int val = 0; val <= 1; val++) {
        size_t lo = val ? c->n_train : 0, hi = val ? c->n : c->n_train;
        for (int count = 1; count <= EVAL_WINDOWS; count++) {
            for (int i = 0; i < count; i++) {
                batch_eval_window(c, val, i, count, BLOCK, in, tg);
                size_t S = hi - lo - BLOCK;
                size_t start = lo + (size_t)((unsigned __int128)i * S / (unsigned)count);
                FUZZ_ASSERT(window_at(c, start, in, tg, BLOCK),
                            "eval window %d of %d (val %d) is not at %zu", i, count, val, start);
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[256];
    fuzz_tmp_path(path, sizeof path, "corpus", ".txt");
    if (fuzz_write_file(path, data, size)) return 0;
    Corpus c;
    Error err;
    if (corpus_load(&c, path, VAL_FRACTION, BLOCK, &err) == 0) {
        check_corpus(&c, data, size);
        corpus_free(&c);
    } else {
        fuzz_check_message(&err);
    }
    unlink(path);

    /* The tokenizer on raw bytes (invalid UTF-8, NUL, unknown characters)
     * with a fixed vocabulary: refusals are messages, never crashes. */
    static const uint32_t vocab[] = {'\n', ' ', 'a', 'b', 'c', 0xE9, 0x2713, 0x1D11E};
    int *tokens = NULL;
    size_t n = 0;
    if (text_tokenize(vocab, (int)(sizeof vocab / sizeof vocab[0]), "fuzz", data, size, &tokens,
                      &n, &err) == 0) {
        for (size_t i = 0; i < n; i++)
            FUZZ_ASSERT(tokens[i] >= 0 && tokens[i] < 8, "token %zu = %d", i, tokens[i]);
        free(tokens);
    } else {
        fuzz_check_message(&err);
    }
    return 0;
}
