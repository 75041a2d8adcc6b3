/* qkscope probe CKPT (--text TEXT | --file F) [--out DIR]: one forward and
 * backward pass of a checkpoint on a text; writes its attention heatmaps,
 * every causal attention weight and the per-head Q/K/V gradient norms. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "heatmap.h"
#include "qk.h"
#include "train.h"

static void usage(FILE *f) {
    fprintf(f, "usage: qkscope probe CKPT (--text TEXT | --file F) [--out DIR]\n"
               "  Runs the checkpoint on TEXT (cut to block_size+1 characters): inputs are\n"
               "  text[0..n-2], targets text[1..n-1]. Prints the loss and per-head Q/K\n"
               "  gradient norms; writes to DIR (default <out_dir>/<name>/probe/ of the run):\n"
               "    layer_L.png      attention heatmaps of each layer\n"
               "    probe_attn.csv   layer, head, query, key, weight (all causal entries)\n"
               "    probe_grads.csv  layer, head, gq_norm, gk_norm, gv_norm\n");
}

static int write_attn_csv(const char *path, const float *att, int L, int NH, int T) {
    static const char *const cols[] = {"layer", "head", "query", "key", "weight"};
    CsvLog w;
    csvlog_open(&w, path, cols, 5);
    for (int l = 0; l < L; l++)
        for (int h = 0; h < NH; h++)
            for (int q = 0; q < T; q++)
                for (int k = 0; k <= q; k++) {
                    csvlog_int(&w, l);
                    csvlog_int(&w, h);
                    csvlog_int(&w, q);
                    csvlog_int(&w, k);
                    csvlog_num(&w, att[(((size_t)l * NH + h) * T + q) * T + k]);
                    csvlog_end_row(&w);
                }
    csvlog_close(&w);
    return 0;
}

static void write_grads_csv(const char *path, const QkNorms *q) {
    static const char *const cols[] = {"layer", "head", "gq_norm", "gk_norm", "gv_norm"};
    CsvLog w;
    csvlog_open(&w, path, cols, 5);
    for (int l = 0; l < q->L; l++)
        for (int h = 0; h < q->NH; h++) {
            csvlog_int(&w, l);
            csvlog_int(&w, h);
            csvlog_num(&w, qk_norms_get(q, QK_GQ, l, h));
            csvlog_num(&w, qk_norms_get(q, QK_GK, l, h));
            csvlog_num(&w, qk_norms_get(q, QK_GV, l, h));
            csvlog_end_row(&w);
        }
    csvlog_close(&w);
}

int main(int argc, char **argv) {
    const char *text = NULL, *file = NULL, *out = NULL, *pos[1];
    int npos, status;
    Error err;
    const CliOption opts[] = {{"--text", OPT_STR, &text, 0, 0},
                              {"--file", OPT_STR, &file, 0, 0},
                              {"--out", OPT_STR, &out, 0, 0},
                              {NULL, 0, NULL, 0, 0}};
    if (cli_args(argc, argv, "probe", opts, pos, 1, 1, &npos, usage, &status)) return status;
    const char *ckpt = pos[0];
    if (!!text == !!file) {
        fprintf(stderr, "qkscope: probe: give exactly one of --text and --file\n");
        return EXIT_BADINPUT;
    }
    Checkpoint ck;
    Model m;
    if (cli_load_model(ckpt, &ck, &m, 1, &err)) return cli_fail(&err);
    unsigned char *bytes = (unsigned char *)text;
    size_t len = text ? strlen(text) : 0, n;
    int *tok = NULL, rc = 0;
    float *att = NULL;
    uint32_t *chars = NULL;
    QkNorms q = {0};
    if (file && text_read_file(file, &bytes, &len, &err)) {
        rc = cli_fail(&err);
        goto done;
    }
    int bad = text_tokenize(ck.vocab, ck.V, file ? file : "--text", bytes, len, &tok, &n, &err);
    if (file) free(bytes);
    if (bad) {
        rc = cli_fail(&err);
        goto done;
    }
    if (n < 2) {
        fprintf(stderr, "qkscope: %s: %s, expected at least 2 characters (inputs and targets)\n",
                file ? file : "--text", n ? "one character" : "empty text");
        rc = EXIT_BADINPUT;
        goto done;
    }
    int T = n - 1 < (size_t)ck.shape.maxT ? (int)(n - 1) : ck.shape.maxT;
    const ModelShape *s = &ck.shape;

    char dir[1400], path[1500];
    if (out) snprintf(dir, sizeof dir, "%s", out);
    else snprintf(dir, sizeof dir, "%s/%s/probe", ck.cfg.out_dir, ck.cfg.name);
    RunLock lock;
    if (cli_lock_run_output(&lock, ck.cfg.out_dir, ck.cfg.name, out, "probe", &err) ||
        dir_create(dir, &err)) {
        rc = cli_fail(&err);
        goto done;
    }

    const ForwardHooks keep = {.keep_pattern = 1};
    double loss = model_forward_hooked(&m, tok, tok + 1, 1, T, &keep);
    model_backward(&m);
    qk_norms_create(&q, &m);
    qk_norms_measure_grads(&q, &m);
    att = xmalloc((size_t)s->L * s->NH * T * T * sizeof(float));
    size_t per_layer = (size_t)s->NH * T * T;
    for (int l = 0; l < s->L; l++)
        for (size_t i = 0; i < per_layer; i++) att[l * per_layer + i] = (float)model_pattern(&m, l)[i];
    chars = xmalloc((size_t)T * sizeof(uint32_t));
    for (int i = 0; i < T; i++) chars[i] = ck.vocab[tok[i]];
    for (int l = 0; l < s->L; l++) {
        snprintf(path, sizeof path, "%s/layer_%d.png", dir, l);
        const float *layer = att + (size_t)l * s->NH * T * T;
        if (heatmap_write_layer(path, layer, s->NH, T, chars, l, (Span){NULL, 0}, &err)) {
            rc = cli_fail(&err);
            goto done;
        }
    }
    snprintf(path, sizeof path, "%s/probe_attn.csv", dir);
    write_attn_csv(path, att, s->L, s->NH, T);
    snprintf(path, sizeof path, "%s/probe_grads.csv", dir);
    write_grads_csv(path, &q);

    printf("probe: %d characters, loss %.6f; wrote %s/\n", T, loss, dir);
    printf("layer head    gq_norm    gk_norm  gq/gk\n");
    for (int l = 0; l < s->L; l++)
        for (int h = 0; h < s->NH; h++) {
            double gq = qk_norms_get(&q, QK_GQ, l, h), gk = qk_norms_get(&q, QK_GK, l, h);
            printf("%5d %4d %10.4g %10.4g %6.3f\n", l, h, gq, gk, gk > 0 ? gq / gk : 0.0);
        }
done:
    free(att);
    free(chars);
    free(tok);
    qk_norms_free(&q);
    model_free(&m);
    checkpoint_free(&ck);
    return rc;
}
