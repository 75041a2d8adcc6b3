/* qkscope roles CKPT [--records N] [--seed S] [--json] [--out DIR]: what the
 * queries and keys of each head carry on a task checkpoint (src/observe/roles.c). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "heatmap.h"
#include "roles.h"
#include "train.h"

#define ROLES_RECORDS_DEFAULT 512

static void usage(FILE *f) {
    fprintf(f,
            "usage: qkscope roles CKPT [--records N] [--seed S] [--json] [--out DIR]\n"
            "  What the queries and keys of each head carry, on N fresh records of the\n"
            "  checkpoint's task (kv or repeat): attention on the target, counterfactuals,\n"
            "  decodability with its control, patching, swaps, composition scores.\n"
            "  --records N  records (default %d)\n"
            "  --seed S     which records: records S*2^32 .. of the roles stream, S < 2^24\n"
            "               (default 0)\n"
            "  --json       one JSON object instead of the tables\n"
            "  --out DIR    also write DIR/roles.csv, DIR/composition.csv and DIR/roles.png\n"
            "               (the counterfactual, decodability and intervention tables)\n",
            ROLES_RECORDS_DEFAULT);
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

static void print_json(const Roles *r, FILE *f) {
    fprintf(f, "{\"records\": %d, \"cases\": %d, \"accuracy\": ", r->records, r->cases);
    json_num(f, r->accuracy);
    fputs(", \"heads\": [", f);
    for (int i = 0; i < r->L * r->NH; i++) {
        const RolesHead *h = &r->heads[i];
        double v[N_FIELDS];
        head_values(h, v);
        fprintf(f, "%s{\"layer\": %d, \"head\": %d, \"role\": \"%s\"", i ? ", " : "", h->layer,
                h->head, roles_role_name(h->role));
        for (int k = 0; k < N_FIELDS; k++) {
            fprintf(f, ", \"%s\": ", field_names[k]);
            json_num(f, v[k]);
        }
        fputs(", \"offset_attn\": [", f);
        for (int o = 0; o < ROLES_OFFSETS; o++) {
            if (o) fputs(", ", f);
            json_num(f, h->offset_attn[o]);
        }
        fputs("]}", f);
    }
    fputs("], \"layer_patch_q_pred\": [", f);
    for (int l = 0; l < r->L; l++) {
        if (l) fputs(", ", f);
        json_num(f, r->layer_patch_q_pred[l]);
    }
    fputs("], \"layer_swap_acc\": [", f);
    for (int l = 0; l < r->L; l++) {
        if (l) fputs(", ", f);
        json_num(f, r->layer_swap_acc[l]);
    }
    fprintf(f, "], \"lookup\": {\"layer\": %d, \"head\": %d}", r->lookup / r->NH,
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
    printf("\ncircuit: lookup head L%d H%d (of the layers above the first, the most attention "
           "on the target: %.3f)", lk->layer, lk->head, lk->target_attn);
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

static int write_csvs(const Roles *r, const char *dir, Error *err) {
    if (dir_create(dir, err)) return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/roles.csv", dir);
    FILE *f = fopen(path, "w");
    if (!f) return error_set(err, "%s: cannot write: %s", path, strerror(errno));
    fprintf(f, "layer,head");
    for (int k = 0; k < N_FIELDS; k++) fprintf(f, ",%s", field_names[k]);
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
    snprintf(path, sizeof path, "%s/composition.csv", dir);
    f = fopen(path, "w");
    if (!f) return error_set(err, "%s: cannot write: %s", path, strerror(errno));
    fprintf(f, "layer,from_head,to_head,k_comp,q_comp,v_comp\n");
    for (int i = 0; i < r->n_comp; i++) {
        const RolesComp *c = &r->comp[i];
        fprintf(f, "%d,%d,%d,%.9g,%.9g,%.9g\n", c->layer, c->from_head, c->to_head, c->k_comp,
                c->q_comp, c->v_comp);
    }
    if (fclose(f)) return error_set(err, "%s: cannot write: %s", path, strerror(errno));
    return 0;
}

int main(int argc, char **argv) {
    const char *out = NULL, *pos[1];
    long records = ROLES_RECORDS_DEFAULT, seed = 0;
    int json = 0, npos, status;
    Error err;
    const CliOption opts[] = {{"--records", OPT_LONG, &records, 1, 1e6},
                              /* below 2^24: the index then stays clear of the stream bits */
                              {"--seed", OPT_LONG, &seed, 0, 16777215},
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
    if (ck.cfg.task.kind == TASK_NONE) {
        error_set(&err, "%s: roles needs a task checkpoint (kv or repeat); this one was trained "
                        "on a corpus (%s)", pos[0], ck.cfg.data_path);
        rc = cli_fail(&err);
    } else if (train_data_open(&corpus, &ck.cfg, &err) ||
               checkpoint_check_compatible(&ck, &ck.cfg, &corpus, &err) ||
               roles_measure(&r, &m, &corpus, (int)records, (uint64_t)seed << 32, 1, &err) ||
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
