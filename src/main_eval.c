/* qkscope eval CKPT [--data FILE] [--json]: mean next-character cross-entropy
 * of a checkpoint. Without --data: the validation split of the corpus named in
 * the checkpoint's config, on the same fixed windows as the trainer's evals
 * (so it reproduces eval.csv's val_loss). With --data FILE: every
 * non-overlapping window of block_size+1 characters of the whole file. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "train.h"

static void usage(FILE *f) {
    fprintf(f, "usage: qkscope eval CKPT [--data FILE] [--json]\n"
               "  Mean next-character cross-entropy of the checkpoint CKPT.\n"
               "  --data FILE  every non-overlapping window of block_size+1 characters of FILE\n"
               "               (default: the validation split of the run's corpus)\n"
               "  --json       print {\"loss\": ..., \"tokens\": ..., \"windows\": ...}\n");
}

/* Window k covers characters k*T .. k*T+T (T inputs, T targets). */
static double eval_file(Model *m, const int *tok, size_t n, int B, long *windows) {
    int T = m->shape.maxT;
    long W = n > (size_t)T ? (long)((n - 1) / T) : 0;
    int *inp = xmalloc((size_t)B * T * sizeof(int)), *tgt = xmalloc((size_t)B * T * sizeof(int));
    double sum = 0;
    for (long k = 0; k < W; k += B) {
        int nb = W - k < B ? (int)(W - k) : B;
        for (int b = 0; b < nb; b++) {
            const int *w = tok + (size_t)(k + b) * T;
            memcpy(inp + (size_t)b * T, w, (size_t)T * sizeof(int));
            memcpy(tgt + (size_t)b * T, w + 1, (size_t)T * sizeof(int));
        }
        sum += (double)model_forward(m, inp, tgt, nb, T) * nb;
    }
    free(inp);
    free(tgt);
    *windows = W;
    return W ? sum / W : 0;
}

int main(int argc, char **argv) {
    const char *data = NULL, *pos[1];
    int json = 0, npos, status;
    Error err;
    const CliOption opts[] = {
        {"--data", OPT_STR, &data, 0, 0}, {"--json", OPT_FLAG, &json, 0, 0}, {NULL, 0, NULL, 0, 0}};
    if (cli_args(argc, argv, "eval", opts, pos, 1, 1, &npos, usage, &status)) return status;
    const char *ckpt = pos[0];
    Checkpoint ck;
    Model m;
    /* the run's batch size: the same chunks, so the same rounding as its evals */
    if (cli_load_model(ckpt, &ck, &m, 0, &err)) return cli_fail(&err);
    int B = m.maxB;
    double loss;
    long windows;
    int T = ck.shape.maxT, rc = 0;
    if (data) {
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
        loss = eval_file(&m, tok, n, B, &windows);
        free(tok);
        if (!windows) {
            fprintf(stderr, "qkscope: %s: %zu characters, fewer than one window of block_size+1 = %d\n",
                    data, n, T + 1);
            rc = EXIT_BADINPUT;
            goto done;
        }
    } else {
        Corpus corpus;
        const Config *c = &ck.cfg;
        if (corpus_load(&corpus, c->data_path, c->val_fraction, c->block_size, &err) ||
            train_check_compatible(&ck, c, &corpus, &err)) {
            corpus_free(&corpus);
            rc = cli_fail(&err);
            goto done;
        }
        windows = (long)c->eval_batches * c->batch_size;
        int *inp = xmalloc((size_t)B * T * sizeof(int)), *tgt = xmalloc((size_t)B * T * sizeof(int));
        loss = model_eval_windows(&m, &corpus, 1, (int)windows, B, inp, tgt, NULL, NULL);
        free(inp);
        free(tgt);
        corpus_free(&corpus);
    }
    if (json)
        printf("{\"loss\": %.9g, \"tokens\": %ld, \"windows\": %ld}\n", loss, windows * T, windows);
    else
        printf("%s: loss %.4f over %ld windows (%ld tokens)%s\n", ckpt, loss, windows, windows * T,
               data ? "" : ", validation split");
done:
    model_free(&m);
    checkpoint_free(&ck);
    return rc;
}
