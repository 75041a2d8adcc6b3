/* qkscope eval CKPT [--data FILE | --records FILE] [--json]: mean cross-entropy
 * and accuracy of a checkpoint on its scored targets. Without a file: the
 * validation split of the corpus named in the checkpoint's config, or the
 * validation records of its task, on the same fixed windows as the trainer's
 * evals (so it reproduces eval.csv's val_loss and val_acc). --data FILE
 * (a corpus checkpoint): every non-overlapping window of block_size+1
 * characters of the whole file. --records FILE (a task checkpoint): one
 * record a line, each checked against the task's format. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "train.h"

static void usage(FILE *f) {
    fprintf(f, "usage: qkscope eval CKPT [--data FILE | --records FILE] [--json]\n"
               "  Mean cross-entropy and accuracy of the checkpoint CKPT on its scored\n"
               "  targets (every next character of a corpus; a task's answers).\n"
               "  --data FILE     every non-overlapping window of block_size+1 characters\n"
               "                  of FILE (corpus checkpoints)\n"
               "  --records FILE  one record of the checkpoint's task a line (task\n"
               "                  checkpoints; docs/tasks.md gives the format)\n"
               "  (default: the validation split of the run's corpus, or its task's\n"
               "  validation records)\n"
               "  --json          print {\"loss\": ..., \"acc\": ..., \"tokens\": ...,\n"
               "                  \"windows\": ...}\n");
}

/* The rows of a file, B at a time, into the sums; row k is made by fill. The
 * loss is weighted as model_eval_range weighs it: by rows for a corpus, by
 * scored targets for a task (per_target). */
typedef int (*RowFill)(void *ctx, long k, int *inputs, int *targets, Error *err);

static int eval_rows(Model *m, long W, RowFill fill, void *ctx, int per_target, EvalSums *s,
                     Error *err) {
    int T = m->shape.maxT, B = m->maxB;
    int *inp = xmalloc((size_t)B * T * sizeof(int)), *tgt = xmalloc((size_t)B * T * sizeof(int));
    int rc = 0;
    for (long k = 0; k < W && rc == 0; k += B) {
        int nb = W - k < B ? (int)(W - k) : B;
        for (int b = 0; b < nb && rc == 0; b++)
            rc = fill(ctx, k + b, inp + (size_t)b * T, tgt + (size_t)b * T, err);
        if (rc) break;
        model_forward(m, inp, tgt, nb, batch_trim(inp, tgt, nb, T));
        model_eval_add(s, m, per_target);
    }
    free(inp);
    free(tgt);
    return rc;
}

/* --data: window k covers characters k*T .. k*T+T (T inputs, T targets). */
typedef struct {
    const int *tok;
    int T;
} FileWindows;

static int window_fill(void *ctx, long k, int *inputs, int *targets, Error *err) {
    (void)err;
    const FileWindows *f = ctx;
    const int *w = f->tok + (size_t)k * f->T;
    memcpy(inputs, w, (size_t)f->T * sizeof(int));
    memcpy(targets, w + 1, (size_t)f->T * sizeof(int));
    return 0;
}

/* --records: line k is record k; the loss is the mean over all scored
 * targets, as in a task's evals. */
typedef struct {
    const Corpus *corpus;
    const char *path;
    uint32_t **lines;
    int *lens;
    int T;
} FileRecords;

static int record_fill(void *ctx, long k, int *inputs, int *targets, Error *err) {
    const FileRecords *f = ctx;
    char why[512];
    if (batch_task_row(f->corpus, f->lines[k], f->lens[k], f->T, inputs, targets, why,
                       sizeof why) < 0)
        return error_set(err, "%s:%ld: not a %s record: %s", f->path, k + 1,
                         task_name(f->corpus->task.kind), why);
    return 0;
}

/* Splits the file's characters into lines (a last line without '\n' counts;
 * a '\r' before '\n' is dropped); empty lines are refused. */
static long records_split(const char *path, const uint32_t *cps, size_t n, uint32_t ***lines,
                          int **lens, Error *err) {
    long count = 0, cap = 64;
    *lines = xmalloc((size_t)cap * sizeof **lines);
    *lens = xmalloc((size_t)cap * sizeof **lens);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && cps[j] != '\n') j++;
        size_t len = j > i && cps[j - 1] == '\r' ? j - i - 1 : j - i;
        if (len == 0 || len > TASK_RECORD_MAX) {
            error_set(err, "%s:%ld: %s, expected one record", path, count + 1,
                      len ? "line too long" : "empty line");
            return -1;
        }
        if (count == cap) {
            cap *= 2;
            *lines = realloc(*lines, (size_t)cap * sizeof **lines);
            *lens = realloc(*lens, (size_t)cap * sizeof **lens);
            CHECK(*lines && *lens, "out of memory reading %s", path);
        }
        (*lines)[count] = (uint32_t *)cps + i;
        (*lens)[count++] = (int)len;
        i = j + 1;
    }
    return count;
}

static int eval_records(Model *m, const Corpus *corpus, const char *path, EvalSums *s,
                        long *windows, Error *err) {
    unsigned char *text = NULL;
    size_t len;
    if (text_read_file(path, &text, &len, err)) return -1;
    uint32_t *cps = xmalloc((len ? len : 1) * sizeof(uint32_t));
    size_t bad;
    long n = utf8_decode(text, len, cps, &bad);
    free(text);
    if (n < 0) {
        free(cps);
        return error_set(err, "%s: invalid UTF-8 at byte offset %zu", path, bad);
    }
    FileRecords f = {.corpus = corpus, .path = path, .T = m->shape.maxT};
    long W = records_split(path, cps, (size_t)n, &f.lines, &f.lens, err);
    int rc = W < 0 ? -1 : 0;
    if (rc == 0 && W == 0) rc = error_set(err, "%s: no records", path);
    if (rc == 0) rc = eval_rows(m, W, record_fill, &f, 1, s, err);
    *windows = W;
    free(f.lines);
    free(f.lens);
    free(cps);
    return rc;
}

int main(int argc, char **argv) {
    const char *data = NULL, *records = NULL, *pos[1];
    int json = 0, npos, status;
    Error err;
    const CliOption opts[] = {{"--data", OPT_STR, &data, 0, 0},
                              {"--records", OPT_STR, &records, 0, 0},
                              {"--json", OPT_FLAG, &json, 0, 0},
                              {NULL, 0, NULL, 0, 0}};
    if (cli_args(argc, argv, "eval", opts, pos, 1, 1, &npos, usage, &status)) return status;
    const char *ckpt = pos[0];
    Checkpoint ck;
    Model m;
    /* the run's batch size: the same chunks, so the same rounding as its evals */
    if (cli_load_model(ckpt, &ck, &m, 0, &err)) return cli_fail(&err);
    const Config *c = &ck.cfg;
    int B = m.maxB, T = ck.shape.maxT, rc = 0, task = c->task.kind != TASK_NONE;
    EvalSums s = {0};
    long windows = 0;
    Corpus corpus = {0};
    if (data && task) {
        error_set(&err, "%s: --data: the checkpoint was trained on task %s, not a corpus; "
                        "evaluate it on records with --records FILE, or without a file on its "
                        "validation records", ckpt, task_name(c->task.kind));
        rc = cli_fail(&err);
    } else if (records && !task) {
        error_set(&err, "%s: --records: the checkpoint was trained on a corpus (%s), not a task; "
                        "use --data FILE", ckpt, c->data_path);
        rc = cli_fail(&err);
    } else if (data && records) {
        error_set(&err, "--data and --records: give one of the two");
        rc = cli_fail(&err);
    } else if (data) {
        unsigned char *text = NULL;
        size_t len, n;
        int *tok;
        if (text_read_file(data, &text, &len, &err) ||
            text_tokenize(ck.vocab, ck.V, data, text, len, &tok, &n, &err)) {
            free(text);
            rc = cli_fail(&err);
            goto done;
        }
        free(text);
        windows = n > (size_t)T ? (long)((n - 1) / T) : 0;
        FileWindows f = {.tok = tok, .T = T};
        eval_rows(&m, windows, window_fill, &f, 0, &s, &err);
        free(tok);
        if (!windows) {
            fprintf(stderr, "qkscope: %s: %zu characters, fewer than one window of block_size+1 = %d\n",
                    data, n, T + 1);
            rc = EXIT_BADINPUT;
            goto done;
        }
    } else if (train_data_open(&corpus, c, &err) || checkpoint_check_compatible(&ck, c, &corpus, &err)) {
        rc = cli_fail(&err);
    } else if (records) {
        if (eval_records(&m, &corpus, records, &s, &windows, &err)) rc = cli_fail(&err);
    } else {
        windows = (long)c->eval_batches * c->batch_size;
        int *inp = xmalloc((size_t)B * T * sizeof(int)), *tgt = xmalloc((size_t)B * T * sizeof(int));
        s = model_eval_range(&m, &corpus, 1, 0, (int)windows, (int)windows, B, inp, tgt, NULL,
                             NULL, NULL);
        free(inp);
        free(tgt);
    }
    if (rc == 0) {
        double loss = s.loss / s.weight, acc = s.scored > 0 ? s.correct / s.scored : 0;
        const char *what = data ? "" : records ? ", records" : task ? ", validation records"
                                                                      : ", validation split";
        if (json)
            printf("{\"loss\": %.9g, \"acc\": %.9g, \"tokens\": %.0f, \"windows\": %ld}\n", loss,
                   acc, s.scored, windows);
        else
            printf("%s: loss %.4f, accuracy %.4f over %ld windows (%.0f scored tokens)%s\n", ckpt,
                   loss, acc, windows, s.scored, what);
    }
done:
    corpus_free(&corpus);
    model_free(&m);
    checkpoint_free(&ck);
    return rc;
}
