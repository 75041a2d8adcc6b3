/* What the heads of a character language model do on repeated sequences
 * (Olsson et al. 2022's test for induction heads): a sequence followed by
 * itself, from two fixed sets (validation segments, uniformly random
 * strings). Per head and set: where it attends (previous token, induction
 * target, the earlier occurrence, the first position) and a label; the
 * model's loss on each copy; with full measurements, which tokens the
 * head's score reads (counterfactuals and a shift), patching its query,
 * exchanging its W_Q and W_K, and the composition of previous-token heads
 * into induction heads. docs/roles.md ("On a language model") defines every
 * figure; src/observe/roles.c is the same for the tasks. */
#ifndef QK_ROLES_LM_H
#define QK_ROLES_LM_H

#include "common.h"
#include "data.h"
#include "model.h"

/* The two sets of sequences: validation segments, random strings. */
enum { ROLES_LM_VAL = 0, ROLES_LM_RANDOM = 1, ROLES_LM_SETS = 2 };
const char *roles_lm_set_name(int set);

/* Labels. A previous-token, duplicate or sink head puts the majority of
 * its attention on that one position, so most of its output is that
 * position's value. An induction head needs only 0.3 on its target (the
 * goal issue 34 set): it shares its attention with the first position and
 * with the successors of the token's other occurrences, which characters
 * have many of in a segment, so a majority is not to be expected. */
#define ROLES_LM_PREV_MIN 0.5
#define ROLES_LM_INDUCTION_MIN 0.3
#define ROLES_LM_DUPLICATE_MIN 0.5
#define ROLES_LM_SINK_MIN 0.5

/* The interventions (counterfactuals, shift, patching, swaps) cost forwards
 * per case: they run on the first ROLES_LM_SUB_RECORDS sequences of a set,
 * at ROLES_LM_QUERIES consecutive query positions of each (consecutive, so
 * that the changed sequences of neighbouring cases are shared). */
#define ROLES_LM_SUB_RECORDS 16
#define ROLES_LM_QUERIES 8

typedef enum {
    LM_ROLE_OTHER = 0,
    LM_ROLE_PREV_TOKEN,
    LM_ROLE_INDUCTION,
    LM_ROLE_DUPLICATE,
    LM_ROLE_SINK
} RolesLmRole;
const char *roles_lm_role_name(RolesLmRole r);

typedef struct {
    int records; /* n: sequences per set */
    int segment; /* S: each sequence is S tokens followed by the same S */
    int val_only; /* the val set alone (training's log, at half the cost): the
                   * random set's result stays empty (heads NULL) */
} RolesLmSpec;

typedef struct {
    int layer, head;
    /* attention from t on t - 1 (t >= 1, both copies), from S + i on i + 1
     * and on i (i >= 1), and from t >= 1 on position 0 */
    double prev_attn, induction_attn, duplicate_attn, sink_attn;
    RolesLmRole role;
    /* full measurements only (NAN otherwise): at the cases (query positions
     * t of the second copy), the attention on the most-attended key j, the
     * same with one token changed (at t, t - 1, j, j - 1) and only this
     * head's query at t or key at j recomputed, and from t + 1 on j + 1 with
     * the sequence shifted one position later; the fraction of cases in
     * which this head's query from another position moves its argmax to
     * that token's successor; the second copy's loss with this head's W_Q
     * and W_K exchanged, minus without */
    double top_attn, cf_q_cur, cf_q_prev, cf_k_cur, cf_k_prev, cf_shift;
    double patch_q_attn, swap_dloss;
} RolesLmHead;

typedef struct {
    /* mean loss on the first copy's targets (tokens 1 .. S-1) and on the
     * second's (tokens S+1 .. 2S-1): the in-context gain is their difference */
    double loss_first, loss_second;
    RolesLmHead *heads;       /* [L * NH] */
    double *layer_swap_dloss; /* [L]: every head of the layer exchanged (NAN: not full) */
    int cases, patch_cases;   /* counterfactual and patching cases (0: not full) */
} RolesLmSetResult;

/* The composition of a previous-token head into an induction head of a
 * later layer (Elhage et al.; roles_composition_pair). */
typedef struct {
    int from_layer, from_head, to_layer, to_head;
    double k_comp, q_comp;
} RolesLmComp;

typedef struct {
    int L, NH, V, records, segment;
    int sub_records, queries; /* the interventions' sequences and query positions each */
    RolesLmSetResult set[ROLES_LM_SETS];
    RolesLmComp *comp; /* every head labelled previous-token in a set into every one
                        * of a later layer labelled induction in a set (full only) */
    int n_comp;
} RolesLm;

/* The sequences of a set, [n, 2S] token ids. Set val: sequence i is the
 * first S tokens of validation window i of n (batch_eval_window's even
 * spacing over the validation split) followed by themselves; set random:
 * from rng_seed(ROLES_LM_RANDOM_SEED + i), a token u = rng_below(V) left
 * out, then S tokens uniform over the other V - 1, followed by themselves.
 * -1 with a message when spec does not fit the corpus (the checks of
 * roles_lm_measure, without the model's). */
int roles_lm_sequences(const Corpus *c, const RolesLmSpec *spec, int set, int *out, Error *err);
#define ROLES_LM_RANDOM_SEED 0x726f6c65735f6c6dULL /* "roles_lm" */

/* Measures both sets on a corpus (not task) checkpoint's model, m->maxB
 * rows of block_size tokens a forward. full = 0: only the attention
 * figures, the labels and the losses, one forward of n rows of 2S tokens
 * per set (what training can log at every eval); full = 1 adds, per set,
 * on the first min(n, ROLES_LM_SUB_RECORDS) sequences: a forward of every
 * changed sequence the counterfactuals need (one per changed position, as
 * long as the position read), one shifted forward, and L NH + L forwards
 * from the exchanged layer up; then the composition scores. The model's
 * weights are unchanged. -1 with a message: a task corpus, a segment
 * outside 2 .. block_size / 2, a validation split shorter than S + 1, a
 * vocabulary of fewer than 2 tokens, or (full) a sequence holding every
 * token of the vocabulary (the counterfactuals need one it lacks). */
int roles_lm_measure(RolesLm *r, Model *m, const Corpus *c, const RolesLmSpec *spec, int full,
                     Error *err);
void roles_lm_free(RolesLm *r);

#endif
