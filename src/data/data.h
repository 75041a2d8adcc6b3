/* Character corpus: UTF-8 decoding, vocabulary, train/val split, batches;
 * a synthetic task (task.h) stands in for a corpus with the same batches. */
#ifndef QK_DATA_H
#define QK_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "rng.h"
#include "task.h"

#define VOCAB_MAX 65536 /* more distinct characters than this is refused */
_Static_assert(VOCAB_MAX <= 65536, "token ids fit the corpus' 16 bits");

typedef struct {
    int V;              /* vocabulary size */
    uint32_t *vocab;    /* [V] sorted distinct code points; token id = index */
    uint16_t *tokens;   /* [n] the whole corpus as token ids (< VOCAB_MAX) */
    size_t n;           /* number of characters */
    size_t n_train;     /* tokens[0 .. n_train-1] train, the rest validation */
    TaskSpec task;      /* kind TASK_NONE for a text corpus; else no tokens, and
                         * batches are the task's records */
} Corpus;

/* Reads and decodes the file at path. Errors (missing file, invalid UTF-8 with
 * its byte offset, too short for one train and one val window of block_size+1
 * characters, too many distinct characters) return -1 with a message naming
 * the file. */
int corpus_load(Corpus *c, const char *path, double val_fraction, int block_size, Error *err);
/* A task in place of a corpus: its vocabulary, and batches drawn from its
 * generator (the caller has checked that block_size + 1 holds the longest
 * record). */
void corpus_from_task(Corpus *c, const TaskSpec *t, int block_size);
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

/* A target that the loss does not score (pad, and the unpredictable
 * characters of a task record): PyTorch's ignore_index convention. */
#define TARGET_NONE (-1)

/* Training batch: B windows of T+1 characters at uniform random offsets in the
 * train split; for a task, B fresh records. inputs/targets are [B*T]. */
void batch_sample_train(const Corpus *c, Rng *r, int B, int T, int *inputs, int *targets);

/* Data-parallel slice: windows shard*B .. shard*B+B-1 of the batch of
 * B * n_shards windows that batch_sample_train would draw from the same rng
 * state; r advances past the whole batch. Returns the number of scored
 * targets in the whole batch (B * n_shards * T for a corpus), the loss's
 * denominator on every rank. */
size_t batch_sample_train_shard(const Corpus *c, Rng *r, int B, int T, int shard, int n_shards,
                                int *inputs, int *targets);

/* data.repeat_fraction (Zucchet et al. 2025: repeated segments in the data
 * speed up the emergence of induction heads). Each training window is T + 1
 * characters w[0..T] (inputs w[0..T-1], targets w[1..T]). With probability
 * `fraction` a window becomes w[0 .. o+len-1], w[o .. o+len-1], w[o+len ..
 * T-len]: its own segment of len characters at offset o followed at once by
 * a copy, the text after the copy continuing where the segment ended, so
 * the copy's start is the window's one unnatural junction. len is uniform
 * in [min(REPEAT_LEN_MIN, T/2), T/2] and o uniform in [0, T+1-2 len], so the
 * copy always ends inside the window. Window b (of the global batch of
 * B * n_shards) of training step `step` draws from a stream of its own,
 * seeded from (seed, step, b): no other stream moves, the draws do not
 * depend on the number of shards, and a resumed run draws the same.
 * fraction 0 leaves the rows untouched. Changes rows shard*B .. shard*B+B-1
 * of the global batch, laid out as batch_sample_train_shard writes them;
 * where (NULL or [B]) gets each row's o, or -1 for a row left as it was,
 * and len (NULL or [B]) its segment length. Returns the rows changed. */
#define REPEAT_LEN_MIN 8
int batch_insert_repeats(double fraction, uint64_t seed, uint64_t step, int B, int T, int shard,
                         int n_shards, int *inputs, int *targets, int *where, int *len);

/* Cuts the B rows of T positions after the last position whose target is
 * scored in any row, moving them into rows of that length in place, and
 * returns the length (T when nothing is scored). The model is causal: what
 * it computes at the positions kept, it computes the same in the rows cut,
 * and nothing past them reaches a scored target. */
int batch_trim(int *inputs, int *targets, int B, int T);

/* Fixed eval windows: window i of `count` spread evenly over the split
 * (val = 1 for validation, 0 for train), the same at every eval. For a task,
 * record i of the validation stream (val = 1) or of the train-split
 * evaluation stream (val = 0); count does not change it. */
void batch_eval_window(const Corpus *c, int val, int i, int count, int T, int *inputs, int *targets);

/* The default text for attention pictures: the first T characters of the
 * validation split, or a task's first validation record padded to T. */
void corpus_probe_tokens(const Corpus *c, int T, int *out);

/* One task record rec[0..n) as a row: the record left-aligned in T + 1
 * characters padded with TASK_PAD, inputs row[0..T), targets row[1..T] with
 * the unscored ones TARGET_NONE (inputs NULL: only checked and counted).
 * Returns the number scored, or -1 with a message in why when rec is not a
 * record of c's task or is longer than T + 1. */
int batch_task_row(const Corpus *c, const uint32_t *rec, int n, int T, int *inputs, int *targets,
                   char *why, size_t why_size);

#endif
