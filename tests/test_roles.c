/* The roles measures on models whose answers are known: the probe on
 * synthetic vectors (decodable, not decodable, and under an invertible map of
 * the features), and a hand-built one-head model whose score reads the
 * query's own token and the key's previous token: its counterfactuals must
 * collapse for those two tokens only, patching its query with another key's
 * mean query must move its attention there (its own key's mean query moves
 * nothing), and swapping W_Q and W_K of a tied model changes no accuracy. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "roles.h"

static void test_probe(void) {
    enum { N = 600, D = 6, K = 4 };
    static double X[N * D], Y[N * D];
    int y[N], noise_y[N];
    unsigned char train[N];
    Rng r;
    rng_seed(&r, 3);
    for (int i = 0; i < N; i++) {
        y[i] = (int)rng_below(&r, K);
        noise_y[i] = (int)rng_below(&r, K);
        train[i] = i % 2 == 0;
        for (int a = 0; a < D; a++) /* class c shifts coordinate c by 4 noise widths */
            X[i * D + a] = rng_normal(&r) + (a == y[i] ? 4.0 : 0.0);
    }
    double chance, acc = roles_lda_accuracy(X, y, train, N, D, K, &chance);
    EXPECT(acc > 0.95, "separable classes decoded with accuracy %.3f", acc);
    EXPECT(chance < 0.4, "chance %.3f of 4 balanced classes", chance);
    double none = roles_lda_accuracy(X, noise_y, train, N, D, K, &chance);
    EXPECT(none < 0.4, "labels independent of the features decoded with accuracy %.3f", none);
    /* the gauge: an invertible map of the features changes no decision */
    double A[D * D];
    for (int i = 0; i < D * D; i++) A[i] = rng_normal(&r) + (i % (D + 1) == 0 ? 3 : 0);
    for (int i = 0; i < N; i++)
        for (int a = 0; a < D; a++) {
            double s = 0;
            for (int b = 0; b < D; b++) s += A[a * D + b] * X[i * D + b];
            Y[i * D + a] = s;
        }
    double mapped = roles_lda_accuracy(Y, y, train, N, D, K, &chance);
    EXPECT(mapped == acc, "accuracy %.6f after an invertible map, %.6f before", mapped, acc);
}

/* One layer, one head, smeared keys with the gate almost closed: k'_j is
 * k_{j-1}. One-hot embeddings and W_Q = W_K = I: the score of t on j is
 * large exactly when the token at t equals the token at j - 1. Everything
 * else is zero, so the head's output changes nothing downstream. */
static void hand_built(Model *m, const Corpus *c, int tied) {
    ModelShape s = {.V = c->V, .L = 1, .NH = 1, .C = c->V, .maxT = 13, .tie_embeddings = 1,
                    .qk_tied = tied, .smear = SMEAR_KEY};
    model_create(m, &s, 16);
    int C = s.C;
    for (int i = 0; i < C; i++) {
        m->p.wte[i * C + i] = 1;
        m->p.wq[i * C + i] = 1;
        m->p.wk[i * C + i] = 1; /* the same matrix when tied */
        m->p.ln1w[i] = m->p.ln2w[i] = m->p.lnfw[i] = 1;
    }
    m->p.smear[0] = -12;
}

static void test_hand_built(void) {
    TaskSpec t = {.kind = TASK_KV, .keys = 4, .pairs_min = 2, .pairs_max = 3, .queries = 3};
    Corpus c;
    corpus_from_task(&c, &t, 13);
    Model m;
    hand_built(&m, &c, 0);
    Roles r;
    Error err;
    REQUIRE(roles_measure(&r, &m, &c, 200, 0, 1, &err) == 0);
    const RolesHead *h = &r.heads[0];
    printf("hand-built head: target %.3f, cf q(t) %.3f q(t-1) %.3f k(j) %.3f k(j-1) %.3f, "
           "patch_q %.3f\n", h->target_attn, h->cf_q_cur, h->cf_q_prev, h->cf_k_cur, h->cf_k_prev,
           h->patch_q_attn);
    EXPECT(h->target_attn > 0.5, "target attention %.3f", h->target_attn);
    EXPECT(h->cf_q_cur < 0.2 * h->target_attn, "the query's own token changed: %.3f of %.3f",
           h->cf_q_cur, h->target_attn);
    EXPECT(h->cf_k_prev < 0.5 * h->target_attn, "the key's previous token changed: %.3f of %.3f",
           h->cf_k_prev, h->target_attn);
    EXPECT(fabs(h->cf_q_prev - h->target_attn) < 0.01, "the query's previous token changed: %.3f",
           h->cf_q_prev);
    EXPECT(fabs(h->cf_k_cur - h->target_attn) < 0.01, "the key's own token changed: %.3f",
           h->cf_k_cur);
    EXPECT(h->patch_q_attn > 0.9, "another key's mean query moved the attention in %.3f",
           h->patch_q_attn);
    EXPECT(h->q_cur > 0.99 && h->k_prev > 0.99, "the probe finds the query's token (%.3f) and "
           "the key's previous one (%.3f)", h->q_cur, h->k_prev);
    EXPECT(h->ctl_k_prev < h->k_prev - 0.3, "the control (%.3f) has no previous token at j",
           h->ctl_k_prev);
    roles_free(&r);
    model_free(&m);

    /* tied: W_Q and W_K are one matrix, exchanging them changes nothing */
    hand_built(&m, &c, 1);
    REQUIRE(roles_measure(&r, &m, &c, 50, 0, 1, &err) == 0);
    EXPECT(r.heads[0].swap_acc == r.accuracy, "tied: swap accuracy %.4f, accuracy %.4f",
           r.heads[0].swap_acc, r.accuracy);
    roles_free(&r);
    model_free(&m);

    /* a corpus is refused with a message */
    Corpus plain = {0};
    hand_built(&m, &c, 0);
    EXPECT(roles_measure(&r, &m, &plain, 10, 0, 1, &err) == -1 && strstr(err.msg, "not a task"),
           "a corpus: %s", err.msg);
    model_free(&m);
    corpus_free(&c);
}

/* Patching a query with the mean query of its own key changes nothing: in
 * the hand-built head a query depends on its token alone, so the mean over
 * every position holding that token is the query itself. */
typedef struct {
    const real *mean; /* [V, C] */
    const int *tokens;
    int C;
} OwnMean;

static void own_mean_hook(void *ctx, int l, real *q, real *k, int B, int T) {
    (void)l, (void)k;
    const OwnMean *o = ctx;
    int C = o->C;
    for (int i = 0; i < B * T; i++)
        memcpy(q + (size_t)i * C, o->mean + (size_t)o->tokens[i] * C, (size_t)C * sizeof(real));
}

static void test_patch_own_mean(void) {
    TaskSpec t = {.kind = TASK_KV, .keys = 4, .pairs_min = 2, .pairs_max = 3, .queries = 3};
    Corpus c;
    corpus_from_task(&c, &t, 13);
    Model m;
    hand_built(&m, &c, 0);
    /* the head's output reaches the logits: W_V = W_O = I */
    for (int i = 0; i < m.shape.C; i++) {
        m.p.wv[i * m.shape.C + i] = 1;
        m.p.wo[i * m.shape.C + i] = 1;
    }
    enum { B = 8, T = 13 };
    int in[B * T], tg[B * T];
    for (int b = 0; b < B; b++) batch_eval_window(&c, 1, b, B, T, in + b * T, tg + b * T);
    model_forward(&m, in, tg, B, T);
    int C = m.shape.C, V = m.shape.V;
    real *mean = xcalloc((size_t)V * C, sizeof(real)), *logits = xmalloc((size_t)B * T * V * sizeof(real));
    int *count = xcalloc((size_t)V, sizeof(int));
    for (int i = 0; i < B * T; i++) {
        for (int a = 0; a < C; a++) mean[(size_t)in[i] * C + a] += model_q(&m, 0)[(size_t)i * C + a];
        count[in[i]]++;
    }
    for (int v = 0; v < V; v++)
        for (int a = 0; count[v] && a < C; a++) mean[(size_t)v * C + a] /= count[v];
    memcpy(logits, m.acts.logits, (size_t)B * T * V * sizeof(real));
    OwnMean o = {mean, in, C};
    const ForwardHooks hooks = {.edit_qk = own_mean_hook, .ctx = &o};
    model_forward_hooked(&m, in, tg, B, T, &hooks);
    double worst = 0;
    for (size_t i = 0; i < (size_t)B * T * V; i++) worst = fmax(worst, fabs(m.acts.logits[i] - logits[i]));
    EXPECT(worst < 1e-5, "patching each query with its own key's mean query moved a logit by %g", worst);
    /* and the check can fail: another token's mean query moves them */
    int *shifted = xmalloc((size_t)B * T * sizeof(int));
    for (int i = 0; i < B * T; i++) shifted[i] = (in[i] + 1) % V;
    o.tokens = shifted;
    model_forward_hooked(&m, in, tg, B, T, &hooks);
    double moved = 0;
    for (size_t i = 0; i < (size_t)B * T * V; i++) moved = fmax(moved, fabs(m.acts.logits[i] - logits[i]));
    EXPECT(moved > 1e-2, "another token's mean query moved the logits only by %g", moved);
    free(shifted);
    free(mean), free(logits), free(count);
    model_free(&m);
    corpus_free(&c);
}

/* The forward's hook points against the changes they stand for: swap_qk
 * against the model with that head's W_Q and W_K exchanged, edit_z zeroing
 * a head against its W_O columns zeroed (both to the bit), and a kept
 * pattern against the pattern of a forward that scores every position. */
typedef struct {
    int layer, head, hs, C;
} ZeroHead;

static void zero_head(void *ctx, int l, real *z, int B, int T) {
    const ZeroHead *o = ctx;
    if (l != o->layer) return;
    for (int i = 0; i < B * T; i++) memset(z + (size_t)i * o->C + o->head * o->hs, 0, o->hs * sizeof(real));
}

static void test_hooks(void) {
    ModelShape s = {.V = 11, .L = 2, .NH = 2, .C = 16, .maxT = 9, .tie_embeddings = 1};
    enum { B = 3, T = 9 };
    Model m;
    model_create(&m, &s, B);
    Rng r;
    rng_seed(&r, 5);
    model_init_params(&m, &r, INIT_TORCH, 0);
    int in[B * T], tg[B * T], all[B * T];
    for (int i = 0; i < B * T; i++) {
        in[i] = (int)rng_below(&r, s.V);
        all[i] = (int)rng_below(&r, s.V);
        tg[i] = i % 4 == 3 ? all[i] : TARGET_NONE; /* the last block then runs at rows */
    }
    size_t nl = (size_t)B * T * s.V, CC = (size_t)s.C * s.C, hs = (size_t)s.C / s.NH;
    real *want = xmalloc(nl * sizeof(real)), *att = xmalloc((size_t)B * s.NH * T * T * sizeof(real));

    /* swap_qk on head 1 of layer 1 */
    unsigned char flags[4] = {0, 0, 0, 1};
    const ForwardHooks swap = {.swap_qk = flags};
    model_forward_hooked(&m, in, NULL, B, T, &swap);
    memcpy(want, m.acts.logits, nl * sizeof(real));
    real *wq = m.p.wq + CC + hs * s.C, *wk = m.p.wk + CC + hs * s.C;
    for (size_t i = 0; i < hs * s.C; i++) {
        real t = wq[i];
        wq[i] = wk[i], wk[i] = t;
    }
    model_forward(&m, in, NULL, B, T);
    EXPECT(!memcmp(want, m.acts.logits, nl * sizeof(real)), "swap_qk is the exchanged weights");
    model_forward(&m, in, NULL, B, T); /* and the check can fail: exchanged twice */
    model_forward_hooked(&m, in, NULL, B, T, &swap);
    EXPECT(memcmp(want, m.acts.logits, nl * sizeof(real)) != 0, "swap_qk changed nothing");

    /* edit_z zeroing head 0 of layer 0 */
    ZeroHead zh = {.layer = 0, .head = 0, .hs = (int)hs, .C = s.C};
    const ForwardHooks zero = {.edit_z = zero_head, .ctx = &zh};
    model_forward_hooked(&m, in, NULL, B, T, &zero);
    memcpy(want, m.acts.logits, nl * sizeof(real));
    for (int i = 0; i < s.C; i++) memset(m.p.wo + (size_t)i * s.C, 0, hs * sizeof(real));
    model_forward(&m, in, NULL, B, T);
    EXPECT(!memcmp(want, m.acts.logits, nl * sizeof(real)), "edit_z is the zeroed W_O columns");

    /* keep_pattern: every row of the last layer's weights, with unscored targets */
    model_forward(&m, in, NULL, B, T);
    memcpy(att, model_pattern(&m, 1), (size_t)B * s.NH * T * T * sizeof(real));
    const ForwardHooks keep = {.keep_pattern = 1};
    model_forward_hooked(&m, in, tg, B, T, &keep);
    EXPECT(!memcmp(att, model_pattern(&m, 1), (size_t)B * s.NH * T * T * sizeof(real)),
           "the kept pattern of a forward at rows");
    free(want), free(att);
    model_free(&m);
}

int main(void) {
    test_hooks();
    test_probe();
    test_patch_own_mean();
    test_hand_built();
    CHECK_DONE("test_roles");
}
