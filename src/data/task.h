/* Synthetic lookup tasks generated on the fly: one record per sequence,
 * left-aligned and padded, with a mask that scores only the answers.
 *
 * kv (multi-query associative recall): pairs of a key letter and a value
 * digit, '|', then queried keys each followed by its value, as in
 * "c7a2f5d9|a2f5c7d9c7a2f5". Scored: the value after each queried key.
 * With cross, the definitions' keys are uppercase ("C7A2F5D9|a2f5...").
 *
 * repeat (induction): a random string S, '|', then S again ("qbfx|qbfx").
 * Scored: the characters of the copy after its first.
 *
 * docs/tasks.md is the format's specification. */
#ifndef QK_TASK_H
#define QK_TASK_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

typedef enum { TASK_NONE = 0, TASK_KV = 1, TASK_REPEAT = 2 } TaskKind;

typedef struct {
    TaskKind kind;
    /* kv */
    int keys;       /* the first `keys` letters are the key alphabet */
    int pairs_min;  /* defined keys per record, uniform in [pairs_min, pairs_max] */
    int pairs_max;
    int queries;    /* queried keys per record, uniform over the defined ones */
    int cross;      /* definitions uppercase, queries lowercase */
    /* repeat */
    int letters;    /* the first `letters` lowercase letters */
    int len_min;    /* |S| uniform in [len_min, len_max] */
    int len_max;
} TaskSpec;

/* The pad fills a row after its record; the separator splits a record. Both
 * are outside every task alphabet (letters and digits). */
#define TASK_PAD '.'
#define TASK_SEP '|'
/* A vocabulary holds at most the pad, the separator, 10 digits, 52 letters. */
#define TASK_VOCAB_MAX 64
/* Upper bounds of the parameters (config.c's ranges): 26 letters, and a
 * record of at most TASK_RECORD_MAX characters. */
#define TASK_QUERIES_MAX 1000
#define TASK_LEN_MAX 1000
#define TASK_RECORD_MAX (2 * TASK_QUERIES_MAX + 2 * 26 + 1)

/* Random-access streams of records: record i of a stream is drawn from a
 * generator seeded by the stream and i alone. Validation and the train-split
 * evaluation read fixed streams (the same for every run seed, so runs of
 * different seeds are evaluated on the same records); training draws from
 * the run's own batch generator. */
enum { TASK_STREAM_VAL = 1, TASK_STREAM_TRAIN_EVAL = 2, TASK_STREAM_ROLES = 3 };

const char *task_name(TaskKind k);

/* The task's vocabulary, sorted by code point, into out[TASK_VOCAB_MAX];
 * returns its size. */
int task_vocab(const TaskSpec *t, uint32_t *out);

/* Characters in the longest record the parameters allow. */
int task_record_max(const TaskSpec *t);

/* Draws one record from r into rec[TASK_RECORD_MAX]; returns its length. */
int task_generate(const TaskSpec *t, Rng *r, uint32_t *rec);

/* Record i of a fixed stream (TASK_STREAM_*). */
int task_stream_record(const TaskSpec *t, int stream, uint64_t i, uint32_t *rec);

/* Checks that rec[0..n) is a record of the task (docs/tasks.md's grammar, the
 * parameters' counts, each queried value equal to its definition, the copy
 * equal to S) and marks the scored characters: scored[j] = 1 when rec[j] is
 * a target the loss counts (it is predicted at position j - 1). Returns the
 * number scored, or -1 with what is wrong in why. */
int task_parse(const TaskSpec *t, const uint32_t *rec, int n, unsigned char *scored, char *why,
               size_t why_size);

#endif
