/* qkscope roles CKPT [--records N] [--seed S] [--json] [--out DIR]: what the
 * queries and keys of each head carry on a task checkpoint (src/observe/roles.c);
 * on a corpus checkpoint, [--segment S] [--dump-sequences FILE]: what its heads
 * do on repeated sequences (src/observe/roles_lm.c). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "heatmap.h"
#include "roles.h"
#include "roles_lm.h"
#include "train.h"

#define ROLES_RECORDS_DEFAULT 512
/* a corpus checkpoint's sequences per set: block_size tokens each */
#define ROLES_LM_RECORDS_DEFAULT 64

static void usage(FILE *f) {
    fprintf(f,
            "usage: qkscope roles CKPT [--records N] [--seed S] [--json] [--out DIR]\n"
            "       qkscope roles CORPUS_CKPT [--records N] [--segment S] [--json] [--out DIR]\n"
            "                     [--dump-sequences FILE]\n"
            "  What the queries and keys of each head carry, on N fresh records of the\n"
            "  checkpoint's task (kv or repeat): attention on the target, counterfactuals,\n"
            "  decodability with its control, patching, swaps, composition scores.\n"
            "  On a corpus checkpoint, on N sequences per set of S characters followed by\n"
            "  themselves (validation segments; random strings): previous-token, induction,\n"
            "  duplicate and sink attention with a label per head, the loss on each copy,\n"
            "  counterfactuals, a shift, patching, swaps, composition.\n"
            "  --records N  records (default %d), or sequences per set (default %d)\n"
            "  --seed S     which records: records S*2^32 .. of the roles stream, S < 2^24\n"
            "               (default 0; tasks only)\n"
            "  --segment S  corpus: characters before the repeat, 2 .. block_size/2\n"
            "               (default block_size/2)\n"
            "  --dump-sequences FILE  corpus: also write the sequences' token ids to FILE\n"
            "               (JSON), for scripts/ref_roles_lm.py\n"
            "  --json       one JSON object instead of the tables\n"
            "  --out DIR    also write DIR/roles.csv, DIR/composition.csv and DIR/roles.png\n"
            "               (the counterfactual, decodability and intervention tables);\n"
            "               corpus: DIR/roles_lm.csv and DIR/roles.png\n",
            ROLES_RECORDS_DEFAULT, ROLES_LM_RECORDS_DEFAULT);
}

/* The per-head fields, in table, CSV and JSON order. */
#define FIELDS(X)                                                                        \
    X(target_attn) X(prev_attn) X(cf_q_cur) X(cf_q_prev) X(cf_k_cur) X(cf_k_prev)         \
    X(q_cur) X(q_prev) X(k_cur) X(k_prev) X(ctl_q_cur) X(ctl_q_prev) X(ctl_k_cur)         \
    X(ctl_k_prev) X(chance_q_cur) X(chance_q_prev) X(chance_k_cur) X(chance_k_prev)       \
    X(patch_q_attn) X(patch_q_pred) X(patch_k) X(swap_acc) X(prev_attn_j) X(ablate_acc)      \
    X(ablate_target_attn)
#define NAME(f) #f,
#define VALUE(f) h->f,
static const char *const field_names[] = {FIELDS(NAME)};
enum { N_FIELDS = sizeof field_names / sizeof field_names[0] };

static void head_values(const RolesHead *h, double *out) {
    const double v[] = {FIELDS(VALUE)};
    memcpy(out, v, sizeof v);
}

/* JSON has no NaN: a measure without a case is null. */
static void json_num(FILE *f, double x) {
    if (isfinite(x)) fprintf(f, "%.9g", x);
    else fputs("null", f);
}

/* [x0, x1, ...] */
static void json_array(FILE *f, const double *x, int n) {
    fputs("[", f);
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", f);
        json_num(f, x[i]);
    }
    fputs("]", f);
}

/* A head's object, open for more: its layer, head, a text field (the role
 * or label) and the n named numbers; after a comma unless it is the first. */
static void json_head(FILE *f, int i, int layer, int head, const char *key, const char *text,
                      const char *const *names, const double *v, int n) {
    fprintf(f, "%s{\"layer\": %d, \"head\": %d, \"%s\": \"%s\"", i ? ", " : "", layer, head, key,
            text);
    for (int k = 0; k < n; k++) {
        fprintf(f, ", \"%s\": ", names[k]);
        json_num(f, v[k]);
    }
}

static void print_json(const Roles *r, FILE *f) {
    fprintf(f, "{\"records\": %d, \"cases\": %d, \"accuracy\": ", r->records, r->cases);
    json_num(f, r->accuracy);
    fputs(", \"heads\": [", f);
    for (int i = 0; i < r->L * r->NH; i++) {
        const RolesHead *h = &r->heads[i];
        double v[N_FIELDS];
        head_values(h, v);
        json_head(f, i, h->layer, h->head, "role", roles_role_name(h->role), field_names, v,
                  N_FIELDS);
        fputs(", \"offset_attn\": ", f);
        json_array(f, h->offset_attn, ROLES_OFFSETS);
        fputs("}", f);
    }
    fputs("], \"layer_patch_q_pred\": ", f);
    json_array(f, r->layer_patch_q_pred, r->L);
    fputs(", \"layer_swap_acc\": ", f);
    json_array(f, r->layer_swap_acc, r->L);
    fprintf(f, ", \"lookup\": {\"layer\": %d, \"head\": %d}", r->lookup / r->NH,
            r->lookup % r->NH);
    fputs(", \"prev_ablate_acc\": ", f);
    json_num(f, r->prev_ablate_acc);
    fputs(", \"prev_ablate_target_attn\": ", f);
    json_num(f, r->prev_ablate_target_attn);
    fputs(", \"composition\": [", f);
    for (int i = 0; i < r->n_comp; i++) {
        const RolesComp *c = &r->comp[i];
        fprintf(f, "%s{\"layer\": %d, \"from_head\": %d, \"to_head\": %d, \"k_comp\": %.6f, "
                   "\"q_comp\": %.6f, \"v_comp\": %.6f}",
                i ? ", " : "", c->layer, c->from_head, c->to_head, c->k_comp, c->q_comp, c->v_comp);
    }
    fputs("]}\n", f);
}

static void cellf(double x) {
    if (isfinite(x)) printf(" %6.3f", x);
    else printf(" %6s", "-");
}

/* The K-composition of head `from` into head `to` of the next layer (NAN
 * when `to` is not in the next layer). */
static double k_comp(const Roles *r, int from, int to) {
    for (int i = 0; i < r->n_comp; i++) {
        const RolesComp *c = &r->comp[i];
        if (c->layer * r->NH + c->to_head == to && (c->layer - 1) * r->NH + c->from_head == from)
            return c->k_comp;
    }
    return NAN;
}

/* The lookup heads and what feeds them: each head below the first, its
 * previous-token attention at the target, its K-composition into each
 * lookup head of the next layer, and the accuracy and lookup attention
 * without it. */
static void print_circuit(const Roles *r) {
    const RolesHead *lk = &r->heads[r->lookup];
    printf("\ncircuit: lookup head L%d H%d (the most attention on the target: %.3f)", lk->layer,
           lk->head, lk->target_attn);
    printf("; lookup heads (target_attn >= %.2f):", ROLES_LOOKUP_MIN);
    for (int i = 0; i < r->L * r->NH; i++)
        if (r->heads[i].role == ROLE_LOOKUP) printf(" L%d H%d", r->heads[i].layer, r->heads[i].head);
    printf("\n");
    if (lk->layer == 0) return;
    printf("each head below: attention from j on j-1 (a previous-token head at >= %.2f);\n"
           "K-composition into each lookup head of the next layer; with the head's output\n"
           "mean-ablated (its mean over the records' positions): the accuracy and L%d H%d's\n"
           "target_attn\n",
           ROLES_PREV_TOKEN_MIN, lk->layer, lk->head);
    printf("  L  H  j->j-1 |  K-comp into");
    for (int i = 0; i < r->L * r->NH; i++)
        if (r->heads[i].role == ROLE_LOOKUP && r->heads[i].layer == lk->layer)
            printf("   L%dH%d", r->heads[i].layer, r->heads[i].head);
    printf(" |    acc target  role\n");
    for (int i = 0; i < lk->layer * r->NH; i++) {
        const RolesHead *h = &r->heads[i];
        printf("%3d%3d", h->layer, h->head);
        cellf(h->prev_attn_j);
        printf(" |            ");
        for (int k = 0; k < r->L * r->NH; k++)
            if (r->heads[k].role == ROLE_LOOKUP && r->heads[k].layer == lk->layer) cellf(k_comp(r, i, k));
        printf(" |");
        cellf(h->ablate_acc), cellf(h->ablate_target_attn);
        printf("  %s\n", roles_role_name(h->role));
    }
    printf("every previous-token head mean-ablated at once: accuracy");
    cellf(r->prev_ablate_acc);
    printf(", L%d H%d's target_attn", lk->layer, lk->head);
    cellf(r->prev_ablate_target_attn);
    printf("\n");
}

static void print_tables(const Roles *r) {
    printf("roles: %d records, %d scored query positions, accuracy %.4f\n\n", r->records, r->cases,
           r->accuracy);
    printf("where the head attends from the query position t (target: the lookup's answer "
           "position j)\n");
    printf("  L  H  target   prev |  j-2    j-1      j    j+1    j+2 | from j: j-1  role\n");
    for (int i = 0; i < r->L * r->NH; i++) {
        const RolesHead *h = &r->heads[i];
        printf("%3d%3d", h->layer, h->head);
        cellf(h->target_attn);
        cellf(h->prev_attn);
        printf(" |");
        for (int o = 0; o < ROLES_OFFSETS; o++) cellf(h->offset_attn[o]);
        printf(" |       ");
        cellf(h->prev_attn_j);
        printf("  %s\n", roles_role_name(h->role));
    }
    printf("\nwhat the score reads: attention on j with one token changed, only this head's\n"
           "query at t or key at j recomputed\n");
    printf("  L  H  target q(t)   q(t-1) k(j)   k(j-1)\n");
    for (int i = 0; i < r->L * r->NH; i++) {
        const RolesHead *h = &r->heads[i];
        printf("%3d%3d", h->layer, h->head);
        cellf(h->target_attn);
        cellf(h->cf_q_cur);
        cellf(h->cf_q_prev);
        cellf(h->cf_k_cur);
        cellf(h->cf_k_prev);
        printf("\n");
    }
    printf("\nwhat each side contains: held-out accuracy of a linear probe (LDA) decoding the\n"
           "current and the previous token; control: the same probe on a fixed random\n"
           "projection of the head's input there; chance: the commonest class\n");
    printf("  L  H  q:cur   prev   ctl    ctl  chance chance |  k:cur   prev   ctl    ctl  chance chance\n");
    for (int i = 0; i < r->L * r->NH; i++) {
        const RolesHead *h = &r->heads[i];
        printf("%3d%3d", h->layer, h->head);
        cellf(h->q_cur), cellf(h->q_prev), cellf(h->ctl_q_cur), cellf(h->ctl_q_prev);
        cellf(h->chance_q_cur), cellf(h->chance_q_prev);
        printf(" |");
        cellf(h->k_cur), cellf(h->k_prev), cellf(h->ctl_k_cur), cellf(h->ctl_k_prev);
        cellf(h->chance_k_cur), cellf(h->chance_k_prev);
        printf("\n");
    }
    printf("\ninterventions: patch_q (another key's mean query at t: attention argmax moves\n"
           "to its answer, and the prediction too), patch_k (an undefined key's mean key at\n"
           "j: the query no longer finds j), swap_acc (accuracy with W_Q, W_K exchanged)\n");
    printf("  L  H  q:attn q:pred patch_k swap_acc\n");
    for (int i = 0; i < r->L * r->NH; i++) {
        const RolesHead *h = &r->heads[i];
        printf("%3d%3d", h->layer, h->head);
        cellf(h->patch_q_attn), cellf(h->patch_q_pred), cellf(h->patch_k), cellf(h->swap_acc);
        printf("\n");
    }
    printf("every head of a layer patched at once (another key's mean query in each):\n"
           "the prediction becomes that key's answer in");
    for (int l = 0; l < r->L; l++) printf("%s L%d %.3f", l ? "," : "", l, r->layer_patch_q_pred[l]);
    printf("\nevery head of a layer with W_Q and W_K exchanged: accuracy");
    for (int l = 0; l < r->L; l++) printf("%s L%d %.3f", l ? "," : "", l, r->layer_swap_acc[l]);
    printf("\n");
    print_circuit(r);
    if (r->n_comp) {
        printf("\ncomposition (Elhage et al.) of a head of layer l-1 into one of layer l\n");
        printf("  l from  to  K-comp Q-comp V-comp\n");
        for (int i = 0; i < r->n_comp; i++) {
            const RolesComp *c = &r->comp[i];
            printf("%3d%5d%4d", c->layer, c->from_head, c->to_head);
            cellf(c->k_comp), cellf(c->q_comp), cellf(c->v_comp);
            printf("\n");
        }
    }
}

/* roles.png: one row per head, the figures of the three tables as swatches. */
static int write_picture(const Roles *r, const char *dir, Error *err) {
    static const char *const cols[] = {"target", "cf q(t)", "cf q(t-1)", "cf k(j)", "cf k(j-1)",
                                       "q cur", "q prev", "k cur", "k prev", "ctl k prev",
                                       "patch_q", "q pred", "patch_k", "swap acc", "prev j",
                                       "abl acc", "abl tgt"};
    enum { NC = sizeof cols / sizeof cols[0] };
    int n = r->L * r->NH;
    float *v = xmalloc((size_t)n * NC * sizeof(float));
    char (*names)[24] = xmalloc((size_t)n * sizeof *names);
    const char **labels = xmalloc((size_t)n * sizeof *labels);
    for (int i = 0; i < n; i++) {
        const RolesHead *h = &r->heads[i];
        const double row[NC] = {h->target_attn, h->cf_q_cur, h->cf_q_prev, h->cf_k_cur,
                                h->cf_k_prev, h->q_cur, h->q_prev, h->k_cur, h->k_prev,
                                h->ctl_k_prev, h->patch_q_attn, h->patch_q_pred, h->patch_k,
                                h->swap_acc, h->prev_attn_j, h->ablate_acc,
                                h->ablate_target_attn};
        for (int k = 0; k < NC; k++) v[(size_t)i * NC + k] = (float)row[k];
        snprintf(names[i], sizeof names[i], "L%d H%d %s", h->layer, h->head,
                 roles_role_name(h->role));
        labels[i] = names[i];
    }
    char path[4096], title[160];
    snprintf(path, sizeof path, "%s/roles.png", dir);
    snprintf(title, sizeof title, "qkscope roles: %d records, accuracy %.4f (docs/roles.md "
                                  "defines each column)", r->records, r->accuracy);
    int rc = heatmap_write_table(path, title, v, n, NC, labels, cols, err);
    free(v), free(names), free(labels);
    return rc;
}

/* DIR/name opened for writing (DIR created), its path in path[4096], and
 * the start of its header written: head, then ",name" for each of the n
 * names. NULL with a message. */
static FILE *csv_open(const char *dir, const char *name, char *path, const char *head,
                      const char *const *names, int n, Error *err) {
    if (dir_create(dir, err)) return NULL;
    snprintf(path, 4096, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        error_set(err, "%s: cannot write: %s", path, strerror(errno));
        return NULL;
    }
    fputs(head, f);
    for (int k = 0; k < n; k++) fprintf(f, ",%s", names[k]);
    return f;
}

static int write_csvs(const Roles *r, const char *dir, Error *err) {
    char path[4096];
    FILE *f = csv_open(dir, "roles.csv", path, "layer,head", field_names, N_FIELDS, err);
    if (!f) return -1;
    for (int o = 0; o < ROLES_OFFSETS; o++) fprintf(f, ",offset_%+d", o - ROLES_OFFSETS / 2);
    fprintf(f, "\n");
    for (int i = 0; i < r->L * r->NH; i++) {
        const RolesHead *h = &r->heads[i];
        double v[N_FIELDS];
        head_values(h, v);
        fprintf(f, "%d,%d", h->layer, h->head);
        for (int k = 0; k < N_FIELDS; k++) fprintf(f, isfinite(v[k]) ? ",%.9g" : ",", v[k]);
        for (int o = 0; o < ROLES_OFFSETS; o++) fprintf(f, ",%.9g", h->offset_attn[o]);
        fprintf(f, "\n");
    }
    if (fclose(f)) return error_set(err, "%s: cannot write: %s", path, strerror(errno));
    f = csv_open(dir, "composition.csv", path, "layer,from_head,to_head,k_comp,q_comp,v_comp\n",
                 NULL, 0, err);
    if (!f) return -1;
    for (int i = 0; i < r->n_comp; i++) {
        const RolesComp *c = &r->comp[i];
        fprintf(f, "%d,%d,%d,%.9g,%.9g,%.9g\n", c->layer, c->from_head, c->to_head, c->k_comp,
                c->q_comp, c->v_comp);
    }
    if (fclose(f)) return error_set(err, "%s: cannot write: %s", path, strerror(errno));
    return 0;
}

/* ---- a corpus checkpoint (src/observe/roles_lm.c) ---- */

/* The per-head fields, in table, CSV and JSON order. */
#define LM_FIELDS(X)                                                                     \
    X(prev_attn) X(induction_attn) X(duplicate_attn) X(sink_attn) X(top_attn) X(cf_q_cur)  \
    X(cf_q_prev) X(cf_k_cur) X(cf_k_prev) X(cf_shift) X(patch_q_attn) X(swap_dloss)
static const char *const lm_field_names[] = {LM_FIELDS(NAME)};
enum { N_LM_FIELDS = sizeof lm_field_names / sizeof lm_field_names[0] };

static void lm_values(const RolesLmHead *h, double *out) {
    const double v[] = {LM_FIELDS(VALUE)};
    memcpy(out, v, sizeof v);
}

static void print_lm_json(const RolesLm *r, FILE *f) {
    fprintf(f, "{\"records\": %d, \"segment\": %d, \"intervention_records\": %d, \"queries\": %d, "
               "\"sets\": [", r->records, r->segment, r->sub_records, r->queries);
    for (int k = 0; k < ROLES_LM_SETS; k++) {
        const RolesLmSetResult *s = &r->set[k];
        fprintf(f, "%s{\"name\": \"%s\", \"loss_first\": ", k ? ", " : "", roles_lm_set_name(k));
        json_num(f, s->loss_first);
        fputs(", \"loss_second\": ", f);
        json_num(f, s->loss_second);
        fputs(", \"gain\": ", f);
        json_num(f, s->loss_first - s->loss_second);
        fprintf(f, ", \"cases\": %d, \"patch_cases\": %d, \"heads\": [", s->cases, s->patch_cases);
        for (int i = 0; i < r->L * r->NH; i++) {
            const RolesLmHead *h = &s->heads[i];
            double v[N_LM_FIELDS];
            lm_values(h, v);
            json_head(f, i, h->layer, h->head, "label", roles_lm_role_name(h->role), lm_field_names,
                      v, N_LM_FIELDS);
            fputs("}", f);
        }
        fputs("], \"layer_swap_dloss\": ", f);
        json_array(f, s->layer_swap_dloss, r->L);
        fputs("}", f);
    }
    fputs("], \"composition\": [", f);
    for (int i = 0; i < r->n_comp; i++) {
        const RolesLmComp *c = &r->comp[i];
        fprintf(f, "%s{\"from_layer\": %d, \"from_head\": %d, \"to_layer\": %d, \"to_head\": %d, "
                   "\"k_comp\": %.6f, \"q_comp\": %.6f}",
                i ? ", " : "", c->from_layer, c->from_head, c->to_layer, c->to_head, c->k_comp,
                c->q_comp);
    }
    fputs("]}\n", f);
}

/* A loss change: signed. */
static void dlossf(double x) {
    if (isfinite(x)) printf(" %+6.3f", x);
    else printf(" %6s", "-");
}

/* A head's row: its layer and head, then its fields from .. to - 1. */
static void lm_row(const RolesLmHead *h, int from, int to) {
    double v[N_LM_FIELDS];
    lm_values(h, v);
    printf("%3d%3d", h->layer, h->head);
    for (int q = from; q < to; q++) cellf(v[q]);
}

static void print_lm_set(const RolesLm *r, int k) {
    static const char *const what[] = {
        "validation segments, each followed by itself: induction on the model's own text",
        "random strings over the vocabulary, each followed by itself: pure in-context copying"};
    const RolesLmSetResult *s = &r->set[k];
    printf("\nset %s: %s\n", roles_lm_set_name(k), what[k]);
    printf("loss on the first copy %.4f, on the second %.4f: in-context gain %.4f\n", s->loss_first,
           s->loss_second, s->loss_first - s->loss_second);
    printf("  L  H   prev induct    dup   sink  label\n");
    for (int i = 0; i < r->L * r->NH; i++) {
        lm_row(&s->heads[i], 0, 4); /* prev_attn .. sink_attn */
        printf("  %s\n", roles_lm_role_name(s->heads[i].role));
    }
    if (!r->sub_records) return;
    printf("what the score reads (%d cases): from t in the second copy on its most-attended "
           "key j\n", s->cases);
    printf("  L  H    top   q(t) q(t-1)   k(j) k(j-1)  shift |  patch   swap\n");
    for (int i = 0; i < r->L * r->NH; i++) {
        lm_row(&s->heads[i], 4, 10); /* top_attn .. cf_shift */
        printf(" |");
        cellf(s->heads[i].patch_q_attn), dlossf(s->heads[i].swap_dloss);
        printf("\n");
    }
    printf("every head of a layer with W_Q and W_K exchanged: second-copy loss change");
    for (int l = 0; l < r->L; l++) printf("%s L%d %+.3f", l ? "," : "", l, s->layer_swap_dloss[l]);
    printf("\n");
}

static void print_lm_tables(const RolesLm *r) {
    printf("roles on a language model: %d sequences per set, each %d characters followed by "
           "themselves\n", r->records, r->segment);
    printf("attention from t on t-1 (prev, t >= 1), from the second copy's S+i on i+1 (induct)\n"
           "and on i (dup), from t >= 1 on position 0 (sink); labels: prev >= %.2f, induct >=\n"
           "%.2f, dup >= %.2f (the largest that qualifies), else sink >= %.2f, else other\n",
           ROLES_LM_PREV_MIN, ROLES_LM_INDUCTION_MIN, ROLES_LM_DUPLICATE_MIN, ROLES_LM_SINK_MIN);
    if (r->sub_records)
        printf("interventions on the first %d sequences of each set, at %d consecutive query\n"
               "positions t of the second copy in each: q(t) .. k(j-1), the attention on j with\n"
               "that token changed and only this head's query at t or key at j recomputed;\n"
               "shift, from t+1 on j+1 with the sequence one position later; patch, the fraction\n"
               "of cases in which another position's query moves the argmax to that token's\n"
               "successor; swap, the second copy's loss with W_Q and W_K exchanged, minus\n"
               "without\n",
               r->sub_records, r->queries);
    for (int k = 0; k < ROLES_LM_SETS; k++) print_lm_set(r, k);
    if (!r->sub_records) return;
    printf("\ncomposition (Elhage et al.) of each previous-token head into each induction head of "
           "a later layer\n");
    if (!r->n_comp) printf("  none: no previous-token head below an induction head\n");
    else printf("  from     to     K-comp Q-comp\n");
    for (int i = 0; i < r->n_comp; i++) {
        const RolesLmComp *c = &r->comp[i];
        printf("  L%d H%-2d  L%d H%-2d", c->from_layer, c->from_head, c->to_layer, c->to_head);
        cellf(c->k_comp), cellf(c->q_comp);
        printf("\n");
    }
}

static int write_lm_csv(const RolesLm *r, const char *dir, Error *err) {
    char path[4096];
    FILE *f = csv_open(dir, "roles_lm.csv", path, "set,layer,head", lm_field_names, N_LM_FIELDS,
                       err);
    if (!f) return -1;
    fprintf(f, ",label,loss_first,loss_second,layer_swap_dloss\n");
    for (int s = 0; s < ROLES_LM_SETS; s++)
        for (int i = 0; i < r->L * r->NH; i++) {
            const RolesLmHead *h = &r->set[s].heads[i];
            double v[N_LM_FIELDS];
            lm_values(h, v);
            fprintf(f, "%s,%d,%d", roles_lm_set_name(s), h->layer, h->head);
            for (int k = 0; k < N_LM_FIELDS; k++) fprintf(f, isfinite(v[k]) ? ",%.9g" : ",", v[k]);
            double ls = r->set[s].layer_swap_dloss[h->layer];
            fprintf(f, ",%s,%.9g,%.9g", roles_lm_role_name(h->role), r->set[s].loss_first,
                    r->set[s].loss_second);
            fprintf(f, isfinite(ls) ? ",%.9g\n" : ",\n", ls);
        }
    if (fclose(f)) return error_set(err, "%s: cannot write: %s", path, strerror(errno));
    return 0;
}

/* roles.png: one row per set and head, the attention figures and the
 * counterfactuals as swatches (the swaps' loss changes are not in 0..1). */
static int write_lm_picture(const RolesLm *r, const char *dir, Error *err) {
    static const char *const cols[] = {"prev", "induct", "dup", "sink", "top", "cf q(t)",
                                       "cf q(t-1)", "cf k(j)", "cf k(j-1)", "shift", "patch"};
    enum { NC = sizeof cols / sizeof cols[0] };
    int LH = r->L * r->NH, n = ROLES_LM_SETS * LH;
    float *v = xmalloc((size_t)n * NC * sizeof(float));
    char (*names)[48] = xmalloc((size_t)n * sizeof *names);
    const char **labels = xmalloc((size_t)n * sizeof *labels);
    for (int i = 0; i < n; i++) {
        const RolesLmHead *h = &r->set[i / LH].heads[i % LH];
        double all[N_LM_FIELDS];
        lm_values(h, all);
        for (int k = 0; k < NC; k++) v[(size_t)i * NC + k] = (float)all[k];
        snprintf(names[i], sizeof names[i], "%s L%d H%d %s", roles_lm_set_name(i / LH), h->layer,
                 h->head, roles_lm_role_name(h->role));
        labels[i] = names[i];
    }
    char path[4096], title[200];
    snprintf(path, sizeof path, "%s/roles.png", dir);
    const RolesLmSetResult *val = &r->set[ROLES_LM_VAL], *rnd = &r->set[ROLES_LM_RANDOM];
    snprintf(title, sizeof title, "qkscope roles: %d sequences of 2 x %d per set; in-context gain "
             "val %.3f, random %.3f (docs/roles.md)", r->records, r->segment,
             val->loss_first - val->loss_second, rnd->loss_first - rnd->loss_second);
    int rc = heatmap_write_table(path, title, v, n, NC, labels, cols, err);
    free(v), free(names), free(labels);
    return rc;
}

/* --dump-sequences: {"segment": S, "records": n, "sets": {"val": [[ids..], ..], ..}}. */
static int dump_sequences(const Corpus *c, const RolesLmSpec *spec, const char *path, Error *err) {
    size_t per = (size_t)spec->records * 2 * spec->segment;
    int *ids = xmalloc(per * sizeof(int));
    FILE *f = fopen(path, "w");
    if (!f) {
        free(ids);
        return error_set(err, "%s: cannot write: %s", path, strerror(errno));
    }
    fprintf(f, "{\"segment\": %d, \"records\": %d, \"sets\": {", spec->segment, spec->records);
    for (int k = 0; k < ROLES_LM_SETS; k++) {
        roles_lm_sequences(c, spec, k, ids, err); /* roles_lm_measure checked the spec */
        fprintf(f, "%s\"%s\": [", k ? ", " : "", roles_lm_set_name(k));
        for (size_t i = 0; i < per; i++)
            fprintf(f, "%s%d%s", i % (2 * spec->segment) ? ", " : i ? "], [" : "[", ids[i],
                    i + 1 == per ? "]" : "");
        fputs("]", f);
    }
    fputs("}}\n", f);
    free(ids);
    if (fclose(f)) return error_set(err, "%s: cannot write: %s", path, strerror(errno));
    return 0;
}

static int run_lm(const char *path, Checkpoint *ck, Model *m, long records, long segment,
                  long seed, int json, const char *out, const char *dump, Error *err) {
    if (seed >= 0)
        return error_set(err, "--seed picks a task's records; %s was trained on a corpus (%s), "
                              "whose sequences are fixed", path, ck->cfg.data_path);
    int T = m->shape.maxT;
    RolesLmSpec spec = {.records = records < 0 ? ROLES_LM_RECORDS_DEFAULT : (int)records,
                        .segment = segment < 0 ? T / 2 : (int)segment};
    if (segment < 0 && spec.segment < 2)
        return error_set(err, "block_size %d leaves no segment: a sequence is a segment of at "
                              "least 2 characters twice, which needs block_size >= 4", T);
    if (2 * spec.segment > T)
        return error_set(err, "--segment %d: two copies (%d characters) exceed block_size %d; "
                              "at most %d", spec.segment, 2 * spec.segment, T, T / 2);
    Corpus corpus = {0};
    RolesLm r = {0};
    int rc = train_data_open(&corpus, &ck->cfg, err) ||
             checkpoint_check_compatible(ck, &ck->cfg, &corpus, err) ||
             roles_lm_measure(&r, m, &corpus, &spec, 1, err) ||
             (dump && dump_sequences(&corpus, &spec, dump, err)) ||
             (out && (write_lm_csv(&r, out, err) || write_lm_picture(&r, out, err)));
    if (!rc && json) print_lm_json(&r, stdout);
    else if (!rc) print_lm_tables(&r);
    roles_lm_free(&r);
    corpus_free(&corpus);
    return rc ? -1 : 0;
}

int main(int argc, char **argv) {
    const char *out = NULL, *dump = NULL, *pos[1];
    /* -1: not given (the defaults differ between tasks and corpora) */
    long records = -1, seed = -1, segment = -1;
    int json = 0, npos, status;
    Error err;
    const CliOption opts[] = {{"--records", OPT_LONG, &records, 1, 1e6},
                              /* below 2^24: the index then stays clear of the stream bits */
                              {"--seed", OPT_LONG, &seed, 0, 16777215},
                              {"--segment", OPT_LONG, &segment, 2, 1e6},
                              {"--dump-sequences", OPT_STR, &dump, 0, 0},
                              {"--json", OPT_FLAG, &json, 0, 0},
                              {"--out", OPT_STR, &out, 0, 0},
                              {NULL, 0, NULL, 0, 0}};
    if (cli_args(argc, argv, "roles", opts, pos, 1, 1, &npos, usage, &status)) return status;
    Checkpoint ck;
    Model m;
    if (cli_load_model(pos[0], &ck, &m, 0, &err)) return cli_fail(&err);
    Corpus corpus = {0};
    Roles r = {0};
    int rc = 0;
    if (records < 0 && ck.cfg.task.kind != TASK_NONE) records = ROLES_RECORDS_DEFAULT;
    if (ck.cfg.task.kind == TASK_NONE) {
        if (run_lm(pos[0], &ck, &m, records, segment, seed, json, out, dump, &err))
            rc = cli_fail(&err);
    } else if (segment >= 0 || dump) {
        error_set(&err, "%s: --segment and --dump-sequences apply to a corpus checkpoint; this one "
                        "was trained on the %s task", pos[0], task_name(ck.cfg.task.kind));
        rc = cli_fail(&err);
    } else if (train_data_open(&corpus, &ck.cfg, &err) ||
               checkpoint_check_compatible(&ck, &ck.cfg, &corpus, &err) ||
               roles_measure(&r, &m, &corpus, (int)records, (uint64_t)(seed < 0 ? 0 : seed) << 32,
                             1, &err) ||
               (out && (write_csvs(&r, out, &err) || write_picture(&r, out, &err)))) {
        rc = cli_fail(&err);
    } else if (json) {
        print_json(&r, stdout);
    } else {
        print_tables(&r);
    }
    roles_free(&r);
    corpus_free(&corpus);
    model_free(&m);
    checkpoint_free(&ck);
    return rc;
}
