/* roles on a language model whose answers are known: a hand-built
 * two-layer model whose layer-0 head attends to the previous position
 * through the position embeddings and copies that token, and whose layer-1
 * head attends to the position after an earlier occurrence of the query's
 * token (an induction head, keyed on layer 0's copy). roles_lm_measure must
 * label them, find the counterfactuals that collapse each and those that do
 * not, move the induction head with a patched query, and its swaps must be
 * the weights exchanged by hand; then the refusals. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "roles_lm.h"

enum { V = 16, S = 6, MAXT = 2 * S + 1, MAXB = 4 };
/* score gains: the wanted key then leads by about 10 logits */
#define GAIN_PREV 4.0
#define GAIN_INDUCTION 8.0

/* A corpus of random tokens over letters a.. (no space: the shift's
 * neutral token is then token 0), n_val of them the validation split. */
static void random_corpus(Corpus *c, int nv, size_t n, size_t n_val, uint64_t seed) {
    memset(c, 0, sizeof *c);
    c->V = nv;
    c->vocab = xmalloc((size_t)nv * sizeof *c->vocab);
    for (int i = 0; i < nv; i++) c->vocab[i] = 'a' + (uint32_t)i;
    c->tokens = xmalloc(n * sizeof *c->tokens);
    Rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) c->tokens[i] = (uint16_t)rng_below(&r, (uint64_t)nv);
    c->n = n;
    c->n_train = n - n_val;
}

#define W(base, l, out, in) (base)[(size_t)(l) * C * C + (size_t)(out) * C + (in)]

/* A vocabulary of nv tokens. The channels: the token one-hot, the previous
 * token (written by layer 0), the position one-hot. */
static void hand_built(Model *m, int nv) {
    const int TOK = 0, PREV = nv, POS = 2 * nv, C = 2 * nv + MAXT;
    ModelShape s = {.V = nv, .L = 2, .NH = 1, .C = C, .maxT = MAXT, .tie_embeddings = 1};
    model_create(m, &s, MAXB);
    for (int v = 0; v < nv; v++) m->p.wte[v * C + TOK + v] = 1;
    for (int p = 0; p < MAXT; p++) m->p.wpe[p * C + POS + p] = 1;
    for (int i = 0; i < 2 * C; i++) m->p.ln1w[i] = m->p.ln2w[i] = 1;
    for (int i = 0; i < C; i++) m->p.lnfw[i] = 1;
    /* layer 0: the query at t offers position t - 1, the key at j position
     * j; the value copies the token into the previous-token channels */
    for (int p = 0; p + 1 < MAXT; p++) W(m->p.wq, 0, POS + p, POS + p + 1) = (real)GAIN_PREV;
    for (int p = 0; p < MAXT; p++) W(m->p.wk, 0, POS + p, POS + p) = 1;
    for (int v = 0; v < nv; v++) {
        W(m->p.wv, 0, PREV + v, TOK + v) = 1;
        W(m->p.wo, 0, PREV + v, PREV + v) = 1;
        /* layer 1: the query looks for its own token among the keys'
         * previous tokens; its value and output stay zero */
        W(m->p.wq, 1, PREV + v, TOK + v) = (real)GAIN_INDUCTION;
        W(m->p.wk, 1, PREV + v, PREV + v) = 1;
    }
}

/* The mean loss on the second copy's targets of the first `rows` random
 * sequences, the model as it stands (plain forwards). */
static double second_copy_loss(Model *m, const int *seqs, int rows) {
    int T = 2 * S, in[MAXB * 2 * S], tg[MAXB * 2 * S];
    double sum = 0;
    for (int first = 0; first < rows; first += MAXB) {
        int nb = rows - first < MAXB ? rows - first : MAXB;
        for (int b = 0; b < nb; b++)
            for (int t = 0; t < T; t++) {
                in[b * T + t] = seqs[(first + b) * T + t];
                tg[b * T + t] = t >= S && t + 1 < T ? seqs[(first + b) * T + t + 1] : TARGET_NONE;
            }
        sum += (double)model_forward(m, in, tg, nb, T) * nb * (S - 1);
    }
    return sum / (rows * (S - 1));
}

static void test_hand_built(void) {
    Corpus c;
    random_corpus(&c, V, 2000, 400, 11);
    Model m;
    hand_built(&m, V);
    RolesLm r;
    Error err;
    RolesLmSpec spec = {.records = 24, .segment = S};
    REQUIRE(roles_lm_measure(&r, &m, &c, &spec, 1, &err) == 0);
    for (int k = 0; k < ROLES_LM_SETS; k++) {
        const RolesLmHead *p = &r.set[k].heads[0], *d = &r.set[k].heads[1];
        const char *set = roles_lm_set_name(k);
        printf("%s: L0 prev %.3f (%s), cf q(t) %.3f k(j-1) %.3f shift %.3f of top %.3f; L1 induct "
               "%.3f (%s), cf q(t) %.3f q(t-1) %.3f k(j) %.3f k(j-1) %.3f shift %.3f of top %.3f, "
               "patch %.3f\n", set, p->prev_attn, roles_lm_role_name(p->role), p->cf_q_cur,
               p->cf_k_prev, p->cf_shift, p->top_attn, d->induction_attn,
               roles_lm_role_name(d->role), d->cf_q_cur, d->cf_q_prev, d->cf_k_cur, d->cf_k_prev,
               d->cf_shift, d->top_attn, d->patch_q_attn);
        EXPECT(p->prev_attn > 0.9 && p->role == LM_ROLE_PREV_TOKEN, "%s: L0's prev_attn %.3f, %s",
               set, p->prev_attn, roles_lm_role_name(p->role));
        /* it reads positions: no token change and no shift moves it */
        EXPECT(fabs(p->cf_q_cur - p->top_attn) < 0.01 && fabs(p->cf_k_prev - p->top_attn) < 0.01 &&
                   fabs(p->cf_shift - p->top_attn) < 0.01,
               "%s: the previous-token head moved: %.3f %.3f %.3f of %.3f", set, p->cf_q_cur,
               p->cf_k_prev, p->cf_shift, p->top_attn);
        EXPECT(d->induction_attn > 0.5 && d->role == LM_ROLE_INDUCTION,
               "%s: L1's induction_attn %.3f, %s", set, d->induction_attn,
               roles_lm_role_name(d->role));
        /* it reads the query's token and the key's previous token only */
        EXPECT(d->cf_q_cur < 0.3 * d->top_attn && d->cf_k_prev < 0.3 * d->top_attn,
               "%s: the induction head kept %.3f and %.3f of %.3f", set, d->cf_q_cur, d->cf_k_prev,
               d->top_attn);
        EXPECT(fabs(d->cf_q_prev - d->top_attn) < 0.05 && fabs(d->cf_k_cur - d->top_attn) < 0.05 &&
                   fabs(d->cf_shift - d->top_attn) < 0.1,
               "%s: the induction head moved: q(t-1) %.3f k(j) %.3f shift %.3f of %.3f", set,
               d->cf_q_prev, d->cf_k_cur, d->cf_shift, d->top_attn);
        EXPECT(d->patch_q_attn > 0.8 && r.set[k].patch_cases > 0,
               "%s: another position's query moved the induction head in %.3f of %d cases", set,
               d->patch_q_attn, r.set[k].patch_cases);
        /* layer 1's output is zero: exchanging its W_Q and W_K changes nothing */
        EXPECT(d->swap_dloss == 0 && r.set[k].layer_swap_dloss[1] == 0,
               "%s: swapping the zero-output head changed the loss by %g", set, d->swap_dloss);
    }
    EXPECT(r.n_comp == 1 && r.comp[0].from_layer == 0 && r.comp[0].to_layer == 1,
           "composition pairs: %d", r.n_comp);
    EXPECT(r.n_comp == 1 && r.comp[0].k_comp > r.comp[0].q_comp,
           "the induction head's key reads layer 0's output: K-comp %.3f, Q-comp %.3f",
           r.n_comp ? r.comp[0].k_comp : NAN, r.n_comp ? r.comp[0].q_comp : NAN);

    /* the swap against W_Q and W_K of layer 0 exchanged by hand, on the
     * same sequences */
    int *seqs = xmalloc((size_t)spec.records * 2 * S * sizeof(int));
    REQUIRE(roles_lm_sequences(&c, &spec, ROLES_LM_RANDOM, seqs, &err) == 0);
    int sub = spec.records < ROLES_LM_SUB_RECORDS ? spec.records : ROLES_LM_SUB_RECORDS;
    double base = second_copy_loss(&m, seqs, sub);
    for (int i = 0; i < m.shape.C * m.shape.C; i++) {
        real t = m.p.wq[i];
        m.p.wq[i] = m.p.wk[i], m.p.wk[i] = t;
    }
    double swapped = second_copy_loss(&m, seqs, sub) - base;
    const RolesLmSetResult *rs = &r.set[ROLES_LM_RANDOM];
    EXPECT(fabs(rs->heads[0].swap_dloss - swapped) < 1e-5 && fabs(swapped) > 1e-3,
           "layer 0's swap: roles %.6f, by hand %.6f", rs->heads[0].swap_dloss, swapped);
    EXPECT(rs->layer_swap_dloss[0] == rs->heads[0].swap_dloss, "one head: layer %.6f, head %.6f",
           rs->layer_swap_dloss[0], rs->heads[0].swap_dloss);
    free(seqs);
    roles_lm_free(&r);

    /* the cheap measurement: the same attention figures, no interventions */
    RolesLm cheap;
    REQUIRE(roles_lm_measure(&cheap, &m, &c, &spec, 0, &err) == 0);
    EXPECT(isnan(cheap.set[0].heads[1].cf_q_cur) && cheap.set[0].cases == 0, "full = 0 ran the "
           "counterfactuals");
    roles_lm_free(&cheap);
    model_free(&m);
    corpus_free(&c);
}

static void test_refusals(void) {
    Model m;
    hand_built(&m, V);
    RolesLm r;
    Error err;
    Corpus c;
    RolesLmSpec spec = {.records = 4, .segment = S};
    /* a validation split of S characters: no window of S + 1 */
    random_corpus(&c, V, 200, S, 3);
    EXPECT(roles_lm_measure(&r, &m, &c, &spec, 0, &err) == -1 &&
               strstr(err.msg, "the validation split holds 6 characters: segments of 6 need at "
                               "least 7"), "a short split: %s", err.msg);
    corpus_free(&c);
    random_corpus(&c, V, 200, 50, 3);
    spec.segment = S + 1;
    EXPECT(roles_lm_measure(&r, &m, &c, &spec, 0, &err) == -1 &&
               strstr(err.msg, "segment 7: two copies (14 tokens) exceed block_size 13; at most 6"),
           "a long segment: %s", err.msg);
    spec.segment = 1;
    EXPECT(roles_lm_measure(&r, &m, &c, &spec, 0, &err) == -1 && strstr(err.msg, "segment 1"),
           "segment 1: %s", err.msg);
    corpus_free(&c);
    /* four tokens: every segment of 6 holds them all, and the
     * counterfactuals have no token to put in; the cheap figures need none */
    random_corpus(&c, 4, 400, 100, 5);
    for (size_t i = c.n_train; i < c.n; i++) c.tokens[i] = (uint16_t)(i % 4);
    spec.segment = S;
    Model small;
    hand_built(&small, 4);
    EXPECT(roles_lm_measure(&r, &small, &c, &spec, 1, &err) == -1 &&
               strstr(err.msg, "sequence 0 of the val set holds all 4 tokens of the vocabulary") &&
               strstr(err.msg, "at most 3 (V - 1)"), "a small vocabulary: %s", err.msg);
    EXPECT(roles_lm_measure(&r, &small, &c, &spec, 0, &err) == 0, "full = 0 refused: %s", err.msg);
    roles_lm_free(&r);
    model_free(&small);
    corpus_free(&c);
    /* a task is not a corpus */
    TaskSpec t = {.kind = TASK_KV, .keys = 4, .pairs_min = 2, .pairs_max = 3, .queries = 3};
    corpus_from_task(&c, &t, 13);
    EXPECT(roles_lm_measure(&r, &m, &c, &spec, 0, &err) == -1 && strstr(err.msg, "not a corpus"),
           "a task: %s", err.msg);
    corpus_free(&c);
    model_free(&m);
}

int main(void) {
    test_hand_built();
    test_refusals();
    CHECK_DONE("test_roles_lm");
}
