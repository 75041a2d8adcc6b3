/* What the queries and keys of each head carry on a task (kv, repeat), over
 * fresh validation records: where the head attends from the scored query
 * positions, which tokens its score reads (counterfactuals), which tokens
 * its query and key vectors contain (a gauge-invariant linear probe),
 * interventions on them, and the composition scores between layers;
 * docs/roles.md defines every figure. */
#ifndef QK_ROLES_H
#define QK_ROLES_H

#include "common.h"
#include "data.h"
#include "model.h"

#define ROLES_OFFSETS 5 /* offset_attn: the target - 2 .. the target + 2 */
/* A head below the lookup head's layer is a previous-token head when at
 * least half its attention from the target goes to the position before:
 * the majority of its output there is the previous token's. */
#define ROLES_PREV_TOKEN_MIN 0.5
/* A head is a lookup head, beside the one with the most attention on the
 * target, when the majority of its attention from t is on the target. */
#define ROLES_LOOKUP_MIN 0.5

/* What a head does in the lookup: a lookup head (the one with the most
 * attention on the target, and any other with ROLES_LOOKUP_MIN), a
 * previous-token head in a layer below the first lookup head's, or
 * neither. */
typedef enum { ROLE_OTHER = 0, ROLE_LOOKUP, ROLE_PREV_TOKEN } RolesRole;
const char *roles_role_name(RolesRole r);

typedef struct {
    int layer, head;
    /* attention from the scored query positions t */
    double target_attn, prev_attn, offset_attn[ROLES_OFFSETS];
    /* attention from the target j on j - 1: a previous-token head at the
     * positions whose keys the lookup reads */
    double prev_attn_j;
    /* the attention on the target when one token is changed and only this
     * head's query at t or key at the target is recomputed (NAN: no case) */
    double cf_q_cur, cf_q_prev, cf_k_cur, cf_k_prev;
    /* held-out accuracy of decoding the current and the previous token from
     * the query at t and from the key at the target, the same probe on a
     * fixed random projection of the head's input there (control), and the
     * accuracy of always guessing the commonest class (chance) */
    double q_cur, q_prev, k_cur, k_prev;
    double ctl_q_cur, ctl_q_prev, ctl_k_cur, ctl_k_prev;
    double chance_q_cur, chance_q_prev, chance_k_cur, chance_k_prev;
    /* interventions (only with full measurements; NAN otherwise) */
    double patch_q_attn, patch_q_pred, patch_k, swap_acc;
    /* this head's output z replaced by its mean over the records' positions
     * (heads of layers below the lookup head's; NAN otherwise): the
     * accuracy, and the lookup head's target_attn */
    double ablate_acc, ablate_target_attn;
    RolesRole role;
} RolesHead;

/* Elhage et al.'s composition of a head of layer l-1 into one of layer l. */
typedef struct {
    int layer, from_head, to_head; /* to_head is in `layer`, from_head in layer - 1 */
    double k_comp, q_comp, v_comp;
} RolesComp;

typedef struct {
    int L, NH, records, cases; /* cases: scored query positions */
    double accuracy;           /* the model's own, on these records */
    RolesHead *heads;          /* [L * NH] */
    RolesComp *comp;           /* [(L - 1) * NH * NH] */
    int n_comp;
    /* patch_q of every head of a layer at once: the fraction of cases in
     * which the model's prediction becomes the other key's answer [L] (NAN
     * without the interventions) */
    double *layer_patch_q_pred;
    /* the task accuracy with every head of a layer's W_Q and W_K exchanged
     * [L] (NAN without the interventions) */
    double *layer_swap_acc;
    int lookup;                /* index l * NH + h of the lookup head with the most target_attn */
    /* every previous-token head mean-ablated at once: the accuracy and the
     * lookup head's target_attn (NAN: none, or no interventions) */
    double prev_ablate_acc, prev_ablate_target_attn;
} Roles;

/* Records base .. base + n - 1 of the roles stream (TASK_STREAM_ROLES) of the
 * corpus's task, B = m->maxB at a time. full = 0 leaves out the
 * interventions and the composition scores (comp NULL), the cheaper set that
 * training logs at every eval. The model's weights are unchanged afterwards.
 * -1 with a message when the corpus is not a task. */
int roles_measure(Roles *r, Model *m, const Corpus *c, int n, uint64_t base, int full,
                  Error *err);
void roles_free(Roles *r);

/* The decodability probe: linear discriminant analysis with the pooled
 * within-class covariance, unregularised (so that an invertible linear map
 * of the features changes no decision), trained on the rows of X [n, d] with
 * train[i] set and tested on the others; labels y in [0, K). Returns the test
 * accuracy, and in *chance that of always answering the commonest training
 * class. A singular covariance gets the smallest ridge that makes it
 * definite. */
double roles_lda_accuracy(const double *X, const int *y, const unsigned char *train, int n, int d,
                          int K, double *chance);

/* The composition scores of head h0 of layer l0 into head h1 of a later
 * layer l1 (the `composition` figures of docs/roles.md, for any two layers
 * l0 < l1): K-, Q- and V-composition. */
void roles_composition_pair(const Model *m, int l0, int h0, int l1, int h1, double *k_comp,
                            double *q_comp, double *v_comp);

#endif
