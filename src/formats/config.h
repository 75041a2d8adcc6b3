/* Run configuration: INI file (inih) + `section.key=value` overrides,
 * validated in one place before any work starts. */
#ifndef QK_CONFIG_H
#define QK_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "common.h"
#include "model.h"
#include "task.h"

typedef enum { QK_UNTIED = 0, QK_TIED = 1 } QkMode;
typedef enum { QK_INIT_INDEPENDENT = 0, QK_INIT_SYMMETRIC = 1 } QkInit;
/* [model] smear: none | key | query, the values of model.h's SmearMode. */

#define CONFIG_STR 1024
/* Longest line accepted in a config file (bytes, without the newline). */
#define CONFIG_LINE_MAX 4096

typedef struct {
    /* [run] */
    char name[256];          /* run folder name under out_dir */
    char out_dir[CONFIG_STR];/* default "runs" */
    uint64_t seed;           /* PRNG seed */
    int threads;             /* 0 = OpenMP default */
    int overwrite;           /* replace an existing run folder */
    int resume;              /* continue from the run's latest checkpoint */
    /* [data] */
    char data_path[CONFIG_STR]; /* UTF-8 text corpus, "" with a task */
    double val_fraction;        /* last fraction of characters held out, (0,1) */
    double repeat_fraction;     /* corpus runs: training windows given a repeated segment, [0,1] */
    /* [data] task and the [task] section: a generated task instead of a corpus */
    TaskSpec task;
    /* [model] */
    int n_layer, n_head, n_embd, block_size;
    int bias;                /* biases on q,k,v,o,fc,proj */
    int tie_embeddings;      /* lm_head shares wte */
    QkMode qk;               /* untied | tied */
    QkInit qk_init;          /* independent | symmetric (W_K starts equal to W_Q) */
    InitScheme init;         /* gpt2 | torch: how the weights are drawn (model.h) */
    int smear;               /* 0 none, 1 key, 2 query: smeared keys or queries */
    /* [train] */
    int batch_size, steps;
    double lr, min_lr;
    int warmup_steps;
    double weight_decay, beta1, beta2, grad_clip; /* grad_clip 0 = off */
    int eval_every, eval_batches, log_every;
    int stop_after;          /* 0 = run to `steps`; k = stop after step k as if interrupted */
    double stop_at_acc;      /* 0 = off; end once val_acc reached it at two evals in a row */
    char init_from[CONFIG_STR]; /* checkpoint to start from, "" = random init */
    /* [log] */
    char probe[CONFIG_STR];  /* probe text, "" = a fixed validation window */
    int heatmap_every, checkpoint_every, keep_checkpoints;
    int swap_batches;        /* validation batches for qk_eval.csv, 0 = off */
    int roles_records;       /* records (task) or validation segments (corpus) for
                              * roles_eval.csv, 0 = off */
} Config;

/* Fills every field with its default. */
void config_defaults(Config *c);

/* Loads defaults, then the INI file at path, then the overrides
 * ("section.key=value" strings) in order; validates the result.
 * On error returns -1 with a one-line message naming the file and line
 * (or the override), the key, the bad value and what is allowed. */
int config_load(Config *c, const char *path, int n_overrides, char **overrides, Error *err);

/* Loads defaults, then INI text (e.g. the resolved config stored in a
 * checkpoint) with the same rules as config_load; name stands for the file in
 * messages and gives the default run name. Validates the result. */
int config_load_string(Config *c, const char *text, const char *name, Error *err);

/* Applies one "section.key=value" override (validated like file values). */
int config_set(Config *c, const char *section, const char *key, const char *value,
               const char *where, Error *err);

/* Cross-key checks (n_embd % n_head, min_lr <= lr, ...). */
int config_validate(const Config *c, const char *where, Error *err);

/* Writes the resolved config as INI text (every key, in table order). */
void config_write(const Config *c, FILE *f);

/* Whether [section] key is a config key: 0 with what it allows in buf
 * ("allowed: gpt2, torch" for an enum key, else empty), -1 if not. */
int config_key_describe(const char *section, const char *key, char *buf, size_t n);

/* Writes the key table, one line a key in table order: section, key, type
 * (int u64 double bool enum string), min, max, flags ('|'-joined), enum
 * names (','-joined), longest string in bytes; "-" where a column does not
 * apply. The tests generate their per-key cases from it. */
void config_dump_keys(FILE *f);

/* The same text in a malloc'd string (for checkpoint metadata). */
char *config_to_string(const Config *c);

/* Names as written in config files ("untied", "symmetric", ...). */
const char *config_qk_name(QkMode m);
const char *config_qk_init_name(QkInit i);
const char *config_init_name(InitScheme i);
const char *config_smear_name(int smear);
/* The model shape a config gives, for a vocabulary of V. */
ModelShape config_model_shape(const Config *c, int V);

/* Whether the tasks of a and b differ in their kind or one of a's task
 * parameters (the parameters of other tasks do not count); the first such key
 * goes to name ("[task] keys") and its two values to a_val and b_val, each
 * of n bytes. */
int config_task_differs(const Config *a, const Config *b, char *name, char *a_val, char *b_val,
                        size_t n);
#endif
