/* Character corpus: UTF-8 decoding, vocabulary, train/val split, batches,
 * and the project's PRNG. */
#ifndef QK_DATA_H
#define QK_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* xoshiro256** seeded through splitmix64; see data.c. */
typedef struct {
    uint64_t s[4];
} Rng;

void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_next(Rng *r);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t rng_below(Rng *r, uint64_t n);
/* Uniform double in [0, 1). */
double rng_uniform(Rng *r);
/* Standard normal (Box-Muller; no cached second value, so the state alone
 * determines the stream). */
double rng_normal(Rng *r);

#define VOCAB_MAX 65536 /* more distinct characters than this is refused */
_Static_assert(VOCAB_MAX <= 65536, "token ids fit the corpus' 16 bits");

typedef struct {
    int V;              /* vocabulary size */
    uint32_t *vocab;    /* [V] sorted distinct code points; token id = index */
    uint16_t *tokens;   /* [n] the whole corpus as token ids (< VOCAB_MAX) */
    size_t n;           /* number of characters */
    size_t n_train;     /* tokens[0 .. n_train-1] train, the rest validation */
} Corpus;

/* Reads and decodes the file at path. Errors (missing file, invalid UTF-8 with
 * its byte offset, too short for one train and one val window of block_size+1
 * characters, too many distinct characters) return -1 with a message naming
 * the file. */
int corpus_load(Corpus *c, const char *path, double val_fraction, int block_size, Error *err);
void corpus_free(Corpus *c);
/* out[i] = the token id at position start + i of the corpus, for i < n. */
void corpus_tokens(const Corpus *c, size_t start, size_t n, int *out);

/* Decodes UTF-8 text into code points. out must hold len entries; returns the
 * count, or -1 with *bad_offset set to the byte offset of the first invalid
 * sequence (overlongs, surrogates and values above U+10FFFF are invalid). */
long utf8_decode(const unsigned char *s, size_t len, uint32_t *out, size_t *bad_offset);
/* Encodes one code point; returns the number of bytes written to out[4]. */
int utf8_encode(uint32_t cp, char out[4]);

/* Token id of a code point, or -1 when it is not in the vocabulary. */
int vocab_lookup(const Corpus *c, uint32_t cp);
int vocab_find(const uint32_t *vocab, int V, uint32_t cp);

/* Longest text file read (corpus, --data, --file): about 9 bytes of memory
 * per byte while the corpus is decoded. */
#define TEXT_MAX_BYTES ((uint64_t)1 << 30)

/* Reads a whole file (-1 with a message naming it on failure): a regular file
 * or a pipe of at most TEXT_MAX_BYTES; devices and folders are refused. */
int text_read_file(const char *path, unsigned char **data, size_t *len, Error *err);

/* UTF-8 text to token ids of a vocabulary (malloc'd into *tokens). Invalid
 * UTF-8 or a character outside the vocabulary: -1 with a message starting
 * with `what` and naming the character and its position. */
int text_tokenize(const uint32_t *vocab, int V, const char *what, const unsigned char *s,
                  size_t len, int **tokens, size_t *n, Error *err);

/* Training batch: B windows of T+1 characters at uniform random offsets in the
 * train split. inputs/targets are [B*T]. */
void batch_sample_train(const Corpus *c, Rng *r, int B, int T, int *inputs, int *targets);

/* Data-parallel slice: windows shard*B .. shard*B+B-1 of the batch of
 * B * n_shards windows that batch_sample_train would draw from the same rng
 * state; r advances past the whole batch. */
void batch_sample_train_shard(const Corpus *c, Rng *r, int B, int T, int shard, int n_shards,
                              int *inputs, int *targets);

/* Fixed eval windows: window i of `count` spread evenly over the split
 * (val = 1 for validation, 0 for train), the same at every eval. */
void batch_eval_window(const Corpus *c, int val, int i, int count, int T, int *inputs, int *targets);

#endif
