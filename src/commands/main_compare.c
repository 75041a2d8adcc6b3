/* qkscope compare A B [--text TEXT] [--out DIR]: per layer and head, how two
 * checkpoints' Q/K parts differ (gauge-invariant cosine of M_h, relative
 * change of W_Q^h and W_K^h, symmetry and directionality of each, attention
 * Jensen-Shannon divergence on a text, swap deltas), plus both losses. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "heatmap.h"
#include "qk.h"
#include "train.h"

static void usage(FILE *f) {
    fprintf(f, "usage: qkscope compare A B [--text TEXT] [--out DIR]\n"
               "  Compares checkpoints A and B (two steps of a run, or two runs).\n"
               "  --text TEXT  text for the attention comparison (default: the first\n"
               "               block_size characters of A's validation split)\n"
               "  --out DIR    where compare.csv and compare_L<l>.png go (default\n"
               "               <out_dir>/<name>/compare/ of A's run)\n");
}

/* One side: checkpoint, model, its corpus (when readable), its numbers. */
typedef struct {
    const char *path;
    Checkpoint ck;
    Model m;
    Corpus corpus;
    int has_corpus;
    double val_loss, swap_all;
    QkHeadEval *heads;
    char note[1200];
} Side;

static int side_load(Side *s, const char *path, Error *err) {
    memset(s, 0, sizeof *s);
    s->path = path;
    if (cli_load_model(path, &s->ck, &s->m, 0, err)) return -1;
    const Config *c = &s->ck.cfg;
    const ModelShape *sh = &s->ck.shape;
    s->heads = xcalloc((size_t)sh->L * sh->NH, sizeof(QkHeadEval));
    s->val_loss = s->swap_all = NAN;
    Error cerr;
    if (train_data_open(&s->corpus, c, &cerr) ||
        checkpoint_check_compatible(&s->ck, c, &s->corpus, &cerr)) {
        snprintf(s->note, sizeof s->note, "%s: no losses or swap deltas: %s", path, cerr.msg);
        return 0;
    }
    s->has_corpus = 1;
    int B = s->m.maxB, T = sh->maxT;
    int *inp = xmalloc((size_t)B * T * sizeof(int)), *tgt = xmalloc((size_t)B * T * sizeof(int));
    s->val_loss = model_eval_windows(&s->m, &s->corpus, 1, c->eval_batches * B, B, inp, tgt, NULL,
                                     NULL, NULL, NULL);
    int swap = (c->swap_batches > 0 ? c->swap_batches : 2) * B;
    s->swap_all = qk_eval_heads(&s->m, &s->corpus, swap, B, inp, tgt, s->heads, NULL);
    free(inp);
    free(tgt);
    return 0;
}

static void side_free(Side *s) {
    model_free(&s->m);
    checkpoint_free(&s->ck);
    corpus_free(&s->corpus);
    free(s->heads);
}

/* Attention of a side on tokens [T] into att [L, NH, T, T]. */
static float *side_attention(Side *s, const int *tok, int T) {
    const ModelShape *sh = &s->ck.shape;
    float *att = xmalloc((size_t)sh->L * sh->NH * T * T * sizeof(float));
    qk_probe_attention(&s->m, tok, T, att);
    return att;
}

static double rel_change(const real *a, const real *b, size_t n) {
    double d = 0, na = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)b[i] - a[i]) * ((double)b[i] - a[i]);
        na += (double)a[i] * a[i];
    }
    return na > 0 ? sqrt(d / na) : 0;
}

/* Mean JS divergence over query rows of one head. */
static double head_js(const float *a, const float *b, int T) {
    double *p = xmalloc(2 * (size_t)T * sizeof(double)), *q = p + T, js = 0;
    for (int t = 0; t < T; t++) {
        for (int j = 0; j <= t; j++) {
            p[j] = a[(size_t)t * T + j];
            q[j] = b[(size_t)t * T + j];
        }
        js += qk_js_divergence(p, q, t + 1);
    }
    free(p);
    return js / T;
}

int main(int argc, char **argv) {
    const char *text = NULL, *out = NULL, *pos[2];
    int npos, status;
    Error err;
    const CliOption opts[] = {{"--text", OPT_STR, &text, 0, 0},
                              {"--out", OPT_STR, &out, 0, 0},
                              {NULL, 0, NULL, 0, 0}};
    if (cli_args(argc, argv, "compare", opts, pos, 2, 2, &npos, usage, &status)) return status;
    const char *pa = pos[0], *pb = pos[1];
    Side A, B;
    memset(&B, 0, sizeof B); /* freed even when A fails to load */
    int rc = 0, *ta = NULL, *tb = NULL;
    float *att_a = NULL, *att_b = NULL;
    if (side_load(&A, pa, &err) || side_load(&B, pb, &err)) {
        rc = cli_fail(&err);
        goto done;
    }
    const ModelShape *sa = &A.ck.shape, *sb = &B.ck.shape;
    printf("A %s: val loss %.4f, all-heads swap delta %+.4f\n", pa, A.val_loss, A.swap_all);
    printf("B %s: val loss %.4f, all-heads swap delta %+.4f\n", pb, B.val_loss, B.swap_all);
    if (A.note[0]) printf("note: %s\n", A.note);
    if (B.note[0]) printf("note: %s\n", B.note);
    if (sa->L != sb->L || sa->NH != sb->NH || sa->C != sb->C) {
        printf("cannot compare heads: shapes differ (A: n_layer %d n_head %d n_embd %d; "
               "B: n_layer %d n_head %d n_embd %d); per-head summaries of each:\n",
               sa->L, sa->NH, sa->C, sb->L, sb->NH, sb->C);
        const Side *sides[] = {&A, &B};
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < sides[k]->ck.shape.L * sides[k]->ck.shape.NH; i++)
                printf("%s L%d H%d: symmetry %.3f directionality %+.3f swap delta %+.4f\n",
                       k ? "B" : "A", i / sides[k]->ck.shape.NH, i % sides[k]->ck.shape.NH,
                       sides[k]->heads[i].symmetry, sides[k]->heads[i].directionality,
                       sides[k]->heads[i].swap_delta);
        goto done;
    }
    int L = sa->L, NH = sa->NH, C = sa->C, d = C / NH;

    /* the text, tokenized for both sides when it can be */
    int T = 0;
    size_t n = 0;
    if (text) {
        Error eb;
        if (text_tokenize(A.ck.vocab, A.ck.V, "--text (A's vocabulary)", (const unsigned char *)text,
                          strlen(text), &ta, &n, &err)) {
            rc = cli_fail(&err);
            goto done;
        }
        if (text_tokenize(B.ck.vocab, B.ck.V, "--text (B's vocabulary)", (const unsigned char *)text,
                          strlen(text), &tb, &n, &eb)) {
            printf("note: no attention comparison: %s\n", eb.msg);
            free(ta);
            ta = NULL;
        }
    } else if (A.has_corpus && A.ck.V == B.ck.V &&
               !memcmp(A.ck.vocab, B.ck.vocab, (size_t)A.ck.V * sizeof(uint32_t))) {
        n = (size_t)sa->maxT;
        ta = xmalloc(n * sizeof(int));
        corpus_probe_tokens(&A.corpus, (int)n, ta);
        tb = xmalloc(n * sizeof(int));
        memcpy(tb, ta, n * sizeof(int));
    } else {
        printf("note: no attention comparison: give --text (A's corpus is not readable or the "
               "vocabularies differ)\n");
    }
    if (ta) { /* the text cut to the shorter block_size */
        size_t maxT = (size_t)(sa->maxT < sb->maxT ? sa->maxT : sb->maxT);
        T = (int)(n < maxT ? n : maxT);
    }
    if (ta && T < 1) {
        fprintf(stderr, "qkscope: --text: empty text, expected at least 1 character\n");
        rc = EXIT_BADINPUT;
        goto done;
    }
    att_a = ta ? side_attention(&A, ta, T) : NULL;
    att_b = ta ? side_attention(&B, tb, T) : NULL;

    char dir[1400], path[1500];
    if (out) snprintf(dir, sizeof dir, "%s", out);
    else snprintf(dir, sizeof dir, "%s/%s/compare", A.ck.cfg.out_dir, A.ck.cfg.name);
    RunLock lock; /* held until the process ends */
    if (cli_lock_run_output(&lock, A.ck.cfg.out_dir, A.ck.cfg.name, out, "compare", &err) ||
        dir_create(dir, &err)) {
        rc = cli_fail(&err);
        goto done;
    }
    static const char *const cols[] = {
        "layer", "head", "m_cosine", "rel_change_q", "rel_change_k", "symmetry_a", "symmetry_b",
        "directionality_a", "directionality_b", "attention_js", "swap_delta_a", "swap_delta_b",
        "val_loss_a", "val_loss_b"};
    CsvLog w;
    snprintf(path, sizeof path, "%s/compare.csv", dir);
    csvlog_open(&w, path, cols, 14);
    printf("layer head  M cosine  dW_Q/W_Q  dW_K/W_K  sym A   sym B   dir A   dir B   attn JS  swap A   swap B\n");
    for (int l = 0; l < L; l++)
        for (int h = 0; h < NH; h++) {
            size_t off = (size_t)l * C * C + (size_t)h * d * C;
            const real *qa = A.m.p.wq + off, *ka = A.m.p.wk + off;
            const real *qb = B.m.p.wq + off, *kb = B.m.p.wk + off;
            const QkHeadEval *ea = &A.heads[l * NH + h], *eb = &B.heads[l * NH + h];
            double v[] = {qk_bilinear_cosine(qa, ka, qb, kb, d, C),
                          rel_change(qa, qb, (size_t)d * C),
                          rel_change(ka, kb, (size_t)d * C),
                          qk_symmetry(qa, ka, d, C),
                          qk_symmetry(qb, kb, d, C),
                          A.has_corpus ? ea->directionality : NAN,
                          B.has_corpus ? eb->directionality : NAN,
                          ta ? head_js(att_a + ((size_t)l * NH + h) * T * T,
                                       att_b + ((size_t)l * NH + h) * T * T, T)
                             : NAN,
                          A.has_corpus ? ea->swap_delta : NAN,
                          B.has_corpus ? eb->swap_delta : NAN,
                          A.val_loss,
                          B.val_loss};
            if (!A.has_corpus || !B.has_corpus) { /* directionality needs no corpus */
                double *M = xmalloc((size_t)C * C * sizeof(double));
                qk_bilinear(M, qa, ka, d, C);
                v[5] = qk_directionality(M, C);
                qk_bilinear(M, qb, kb, d, C);
                v[6] = qk_directionality(M, C);
                free(M);
            }
            csvlog_int(&w, l);
            csvlog_int(&w, h);
            for (int k = 0; k < 12; k++) csvlog_num(&w, v[k]);
            csvlog_end_row(&w);
            printf("%5d %4d %9.4f %9.4f %9.4f %7.3f %7.3f %+7.3f %+7.3f %8.4f %+8.4f %+8.4f\n", l,
                   h, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]);
        }
    csvlog_close(&w);
    if (ta) {
        uint32_t *chars = xmalloc((size_t)T * sizeof(uint32_t));
        for (int i = 0; i < T; i++) chars[i] = A.ck.vocab[ta[i]];
        for (int l = 0; l < L; l++) {
            size_t per = (size_t)NH * T * T;
            snprintf(path, sizeof path, "%s/compare_L%d.png", dir, l);
            if (heatmap_write_compare(path, att_a + l * per, att_b + l * per, NH, T, chars, l, &err)) {
                free(chars);
                rc = cli_fail(&err);
                goto done;
            }
        }
        free(chars);
    }
    printf("wrote %s/compare.csv%s\n", dir, ta ? " and compare_L<l>.png" : "");
done:
    free(ta);
    free(tb);
    free(att_a);
    free(att_b);
    side_free(&A);
    side_free(&B);
    return rc;
}
