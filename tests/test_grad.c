/* Finite-difference gradient checks, built in double (QK_DOUBLE): every op's
 * backward and the whole model's loss w.r.t. every parameter tensor, for
 * untied/tied qk, with/without bias and tied/untied embeddings.
 *
 * Central differences with h = 1e-5 in double have truncation error ~h^2 and
 * rounding error ~1e-16/h, both far below the tolerance
 *     |fd - analytic| <= 1e-6 * max(|fd|, |analytic|) + 1e-9,
 * so any real mistake in a backward pass (typically O(1) relative) fails. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "check.h"
#include "layers.h"
#include "data.h"
#include "model.h"

#define FD_H 1e-5
#define REL_TOL 1e-6
#define ABS_TOL 1e-9

typedef double (*LossFn)(void *ctx);

static Rng rng;
/* The ops' scratch memory, as a model's workspace holds it. */
static struct {
    GemmScratch gemm;
    ScratchBuf attention, partials;
} work;

static void fill_normal(real *x, size_t n, double mean, double std) {
    for (size_t i = 0; i < n; i++) x[i] = (real)(mean + std * rng_normal(&rng));
}

static real *alloc_normal(size_t n, double std) {
    real *x = xcalloc(n, sizeof(real));
    fill_normal(x, n, 0, std);
    return x;
}

/* Compares grad[i] with the central difference of f in x[i] for up to
 * `samples` indices (all when n is small). Returns the worst error ratio. */
static double fd_check(const char *what, LossFn f, void *ctx, real *x, const real *grad,
                       size_t n, size_t samples) {
    double worst = 0;
    size_t stride = n <= samples ? 1 : n / samples;
    for (size_t i = 0; i < n; i += stride) {
        real keep = x[i];
        x[i] = keep + FD_H;
        double fp = f(ctx);
        x[i] = keep - FD_H;
        double fm = f(ctx);
        x[i] = keep;
        double fd = (fp - fm) / (2 * FD_H), an = grad[i];
        double tol = REL_TOL * fmax(fabs(fd), fabs(an)) + ABS_TOL;
        double err = fabs(fd - an);
        if (err / tol > worst) worst = err / tol;
        EXPECT(err <= tol, "%s[%zu]: finite difference %.10g, backward %.10g", what, i, fd, an);
    }
    return worst;
}

/* ---- single ops: loss = sum(R * op(x)) so dout = R ---- */

typedef struct {
    size_t N;
    int C, OC;
    real *inp, *w, *b, *out, *R, *mean, *rstd, *deriv;
} OpCtx;

static double weighted_sum(const real *out, const real *R, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)out[i] * R[i];
    return s;
}

static double ln_loss(void *p) {
    OpCtx *c = p;
    layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C);
    return weighted_sum(c->out, c->R, c->N * c->C);
}

static void test_layernorm(void) {
    OpCtx c = {.N = 6, .C = 10};
    size_t n = c.N * c.C;
    c.inp = alloc_normal(n, 1.0);
    c.w = alloc_normal(c.C, 0.5);
    c.b = alloc_normal(c.C, 0.5);
    c.R = alloc_normal(n, 1.0);
    c.out = xcalloc(n, sizeof(real));
    c.mean = xcalloc(c.N, sizeof(real));
    c.rstd = xcalloc(c.N, sizeof(real));
    real *dinp = xcalloc(n, sizeof(real)), *dw = xcalloc(c.C, sizeof(real));
    real *db = xcalloc(c.C, sizeof(real));
    ln_loss(&c);
    layernorm_backward(dinp, dw, db, c.R, c.inp, c.w, c.mean, c.rstd, c.N, c.C, &work.partials);
    fd_check("layernorm.dinp", ln_loss, &c, c.inp, dinp, n, n);
    fd_check("layernorm.dweight", ln_loss, &c, c.w, dw, c.C, c.C);
    fd_check("layernorm.dbias", ln_loss, &c, c.b, db, c.C, c.C);
    free(c.inp); free(c.w); free(c.b); free(c.R); free(c.out); free(c.mean); free(c.rstd);
    free(dinp); free(dw); free(db);
}

static double mm_loss(void *p) {
    OpCtx *c = p;
    matmul_forward(c->out, c->inp, c->w, c->b, NULL, c->N, c->C, c->OC, &work.gemm);
    return weighted_sum(c->out, c->R, c->N * c->OC);
}

/* Shapes chosen to exercise the gemm's full tiles and its edges. */
static void test_matmul(size_t N, int C, int OC, int with_bias) {
    OpCtx c = {.N = N, .C = C, .OC = OC};
    c.inp = alloc_normal(N * C, 1.0);
    c.w = alloc_normal((size_t)OC * C, 0.5);
    c.b = with_bias ? alloc_normal(OC, 0.5) : NULL;
    c.R = alloc_normal(N * OC, 1.0);
    c.out = xcalloc(N * OC, sizeof(real));
    real *dinp = alloc_normal(N * C, 1.0); /* garbage: accumulate_dinp = 0 must overwrite */
    real *dw = xcalloc((size_t)OC * C, sizeof(real));
    real *db = with_bias ? xcalloc(OC, sizeof(real)) : NULL;
    mm_loss(&c);
    matmul_backward(dinp, dw, db, c.R, c.inp, c.w, N, C, OC, 0, &work.gemm);
    fd_check("matmul.dinp", mm_loss, &c, c.inp, dinp, N * C, 64);
    fd_check("matmul.dweight", mm_loss, &c, c.w, dw, (size_t)OC * C, 64);
    if (with_bias) fd_check("matmul.dbias", mm_loss, &c, c.b, db, OC, OC);

    /* a residual is added, the same to the bit whether it is the output
     * itself (added onto what it holds) or another buffer */
    real *acc = alloc_normal(N * OC, 1.0), *base = xmalloc(N * OC * sizeof(real));
    real *sep = alloc_normal(N * OC, 1.0);
    memcpy(base, acc, N * OC * sizeof(real));
    mm_loss(&c); /* c.out at the unperturbed point */
    matmul_forward(acc, c.inp, c.w, c.b, acc, N, C, OC, &work.gemm);
    matmul_forward(sep, c.inp, c.w, c.b, base, N, C, OC, &work.gemm);
    double worst = 0;
    for (size_t i = 0; i < N * OC; i++) worst = fmax(worst, fabs(acc[i] - base[i] - c.out[i]));
    EXPECT(worst < 1e-12, "matmul residual: off by %g", worst);
    EXPECT(memcmp(acc, sep, N * OC * sizeof(real)) == 0, "matmul residual: in place differs");
    free(acc); free(base); free(sep);
    free(c.inp); free(c.w); free(c.b); free(c.R); free(c.out); free(dinp); free(dw); free(db);
}

static double gelu_loss(void *p) {
    OpCtx *c = p;
    gelu_forward(c->out, c->deriv, c->inp, c->N);
    return weighted_sum(c->out, c->R, c->N);
}

static void test_gelu(void) {
    OpCtx c = {.N = 40};
    c.inp = alloc_normal(c.N, 2.0);
    c.R = alloc_normal(c.N, 1.0);
    c.out = xcalloc(c.N, sizeof(real));
    c.deriv = xcalloc(c.N, sizeof(real));
    real *dinp = xcalloc(c.N, sizeof(real));
    gelu_loss(&c);
    gelu_backward(dinp, c.deriv, c.R, c.N);
    /* the model keeps the derivative in place of the input */
    real *x = xmalloc(c.N * sizeof(real)), *out = xmalloc(c.N * sizeof(real));
    memcpy(x, c.inp, c.N * sizeof(real));
    gelu_forward(out, x, x, c.N);
    EXPECT(memcmp(out, c.out, c.N * sizeof(real)) == 0, "gelu in place: output differs");
    EXPECT(memcmp(x, c.deriv, c.N * sizeof(real)) == 0, "gelu in place: derivative differs");
    fd_check("gelu.dinp", gelu_loss, &c, c.inp, dinp, c.N, c.N);
    free(c.inp); free(c.R); free(c.out); free(c.deriv); free(dinp); free(x); free(out);
}

typedef struct {
    int B, T, C, NH;
    real *q, *k, *v, *out, *att, *R;
} AttCtx;

static double att_loss(void *p) {
    AttCtx *c = p;
    attention_forward(c->out, c->att, c->q, c->k, c->v, c->B, c->T, c->C, c->NH,
                      &work.attention);
    return weighted_sum(c->out, c->R, (size_t)c->B * c->T * c->C);
}

static void test_attention(void) {
    AttCtx c = {.B = 2, .T = 7, .C = 12, .NH = 3};
    size_t n = (size_t)c.B * c.T * c.C;
    c.q = alloc_normal(n, 1.0);
    c.k = alloc_normal(n, 1.0);
    c.v = alloc_normal(n, 1.0);
    c.R = alloc_normal(n, 1.0);
    c.out = xcalloc(n, sizeof(real));
    c.att = xcalloc((size_t)c.B * c.NH * c.T * c.T, sizeof(real));
    real *dq = alloc_normal(n, 1), *dk = alloc_normal(n, 1), *dv = alloc_normal(n, 1);
    att_loss(&c);
    attention_backward(dq, dk, dv, c.R, c.q, c.k, c.v, c.att, c.B, c.T, c.C, c.NH,
                       &work.attention);
    fd_check("attention.dq", att_loss, &c, c.q, dq, n, n);
    fd_check("attention.dk", att_loss, &c, c.k, dk, n, n);
    fd_check("attention.dv", att_loss, &c, c.v, dv, n, n);
    free(c.q); free(c.k); free(c.v); free(c.R); free(c.out); free(c.att);
    free(dq); free(dk); free(dv);
}

typedef struct {
    size_t N;
    int V;
    real *logits, *probs, *losses;
    int *targets;
} CeCtx;

static double ce_loss(void *p) {
    CeCtx *c = p;
    crossentropy_forward(c->probs, c->losses, c->logits, c->targets, c->N, c->V);
    double s = 0;
    for (size_t i = 0; i < c->N; i++) s += c->losses[i];
    return s / c->N;
}

static void test_crossentropy(void) {
    CeCtx c = {.N = 5, .V = 9};
    c.logits = alloc_normal(c.N * c.V, 2.0);
    c.probs = xcalloc(c.N * c.V, sizeof(real));
    c.losses = xcalloc(c.N, sizeof(real));
    c.targets = xcalloc(c.N, sizeof(int));
    for (size_t i = 0; i < c.N; i++) c.targets[i] = (int)rng_below(&rng, c.V);
    real *dl = xcalloc(c.N * c.V, sizeof(real));
    ce_loss(&c);
    crossentropy_backward(dl, c.probs, c.targets, c.N, c.V, (real)1.0 / c.N);
    fd_check("crossentropy.dlogits", ce_loss, &c, c.logits, dl, c.N * c.V, c.N * c.V);
    free(c.logits); free(c.probs); free(c.losses); free(c.targets); free(dl);
}

typedef struct {
    int B, T, C, V;
    int *inp;
    real *wte, *wpe, *out, *R;
} EncCtx;

static double enc_loss(void *p) {
    EncCtx *c = p;
    encoder_forward(c->out, c->inp, c->wte, c->wpe, c->B, c->T, c->C);
    return weighted_sum(c->out, c->R, (size_t)c->B * c->T * c->C);
}

static void test_encoder(void) {
    EncCtx c = {.B = 2, .T = 4, .C = 5, .V = 3};
    size_t n = (size_t)c.B * c.T * c.C;
    c.inp = xcalloc((size_t)c.B * c.T, sizeof(int));
    for (int i = 0; i < c.B * c.T; i++) c.inp[i] = (int)rng_below(&rng, c.V); /* repeats */
    c.wte = alloc_normal((size_t)c.V * c.C, 1);
    c.wpe = alloc_normal((size_t)c.T * c.C, 1);
    c.out = xcalloc(n, sizeof(real));
    c.R = alloc_normal(n, 1);
    real *dwte = xcalloc((size_t)c.V * c.C, sizeof(real));
    real *dwpe = xcalloc((size_t)c.T * c.C, sizeof(real));
    encoder_backward(dwte, dwpe, c.R, c.inp, c.B, c.T, c.C);
    fd_check("encoder.dwte", enc_loss, &c, c.wte, dwte, (size_t)c.V * c.C, 64);
    fd_check("encoder.dwpe", enc_loss, &c, c.wpe, dwpe, (size_t)c.T * c.C, 64);
    free(c.inp); free(c.wte); free(c.wpe); free(c.out); free(c.R); free(dwte); free(dwpe);
}

/* smear: loss = sum(R * smear(x)), gradients of x and of the gate logits,
 * out of place and in place (the model smears in place backward) */
typedef struct {
    int B, T, C, NH;
    real *inp, *g, *out, *R;
} SmearCtx;

static double smear_loss(void *p) {
    SmearCtx *c = p;
    smear_forward(c->out, c->inp, c->g, c->B, c->T, c->C, c->NH);
    return weighted_sum(c->out, c->R, (size_t)c->B * c->T * c->C);
}

static void test_smear(void) {
    SmearCtx c = {.B = 2, .T = 5, .C = 6, .NH = 3};
    size_t n = (size_t)c.B * c.T * c.C;
    c.inp = alloc_normal(n, 1);
    c.g = alloc_normal((size_t)c.NH, 1);
    c.out = xcalloc(n, sizeof(real));
    c.R = alloc_normal(n, 1);
    real *dinp = xcalloc(n, sizeof(real)), *dg = xcalloc((size_t)c.NH, sizeof(real));
    real *inplace = xmalloc(n * sizeof(real)), *dg2 = xcalloc((size_t)c.NH, sizeof(real));
    dg[0] = 0.5; /* backward adds to the gate's gradient */
    smear_backward(dinp, dg, c.R, c.inp, c.g, c.B, c.T, c.C, c.NH);
    dg[0] -= 0.5;
    fd_check("smear.dinp", smear_loss, &c, c.inp, dinp, n, n);
    fd_check("smear.dgate", smear_loss, &c, c.g, dg, (size_t)c.NH, (size_t)c.NH);
    memcpy(inplace, c.R, n * sizeof(real));
    smear_backward(inplace, dg2, inplace, c.inp, c.g, c.B, c.T, c.C, c.NH);
    EXPECT(!memcmp(inplace, dinp, n * sizeof(real)) && !memcmp(dg, dg2, (size_t)c.NH * sizeof(real)),
           "smear_backward in place differs");
    smear_loss(&c);
    memcpy(inplace, c.inp, n * sizeof(real));
    smear_forward(inplace, inplace, c.g, c.B, c.T, c.C, c.NH);
    EXPECT(!memcmp(inplace, c.out, n * sizeof(real)), "smear_forward in place differs");
    real s0 = 1 / (1 + exp(-c.g[0]));
    EXPECT(fabs(c.out[0] - s0 * c.inp[0]) < 1e-12, "position 0: %g, expected s x = %g", c.out[0],
           s0 * c.inp[0]);
    free(c.inp); free(c.g); free(c.out); free(c.R); free(dinp); free(dg); free(inplace); free(dg2);
}

/* ---- the whole model ---- */

typedef struct {
    Model *m;
    const int *inp, *tgt;
    int B, T;
} ModelCtx;

static double model_loss(void *p) {
    ModelCtx *c = p;
    return model_forward(c->m, c->inp, c->tgt, c->B, c->T);
}

/* Random parameters larger than the GPT-2 init so attention is far from
 * uniform and every path carries a sizeable gradient. */
static void params_randomize(Model *m) {
    for (int i = 0; i < m->n_views; i++) {
        const ParamView *v = &m->views[i];
        int is_ln = strstr(v->name, "ln") && strstr(v->name, ".weight");
        fill_normal(m->params + v->offset, v->numel, is_ln ? 1.0 : 0.0, is_ln ? 0.1 : 0.3);
    }
}

static void test_model(int qk_tied, int bias, int tie_embeddings, SmearMode smear) {
    ModelShape s = {.V = 7, .L = 2, .NH = 2, .C = 8, .maxT = 6, .bias = bias,
                    .tie_embeddings = tie_embeddings, .qk_tied = qk_tied, .smear = smear};
    int B = 2, T = 5; /* T < maxT: activations laid out for the smaller shape */
    Model m;
    model_create(&m, &s, 3);
    params_randomize(&m);
    int inp[10], tgt[10];
    for (int i = 0; i < B * T; i++) {
        inp[i] = (int)rng_below(&rng, s.V);
        tgt[i] = (int)rng_below(&rng, s.V);
    }
    ModelCtx c = {&m, inp, tgt, B, T};
    model_loss(&c);
    model_backward(&m);
    real *grads = xmalloc(m.n_params * sizeof(real));
    memcpy(grads, m.grads, m.n_params * sizeof(real));
    double worst = 0;
    for (int i = 0; i < m.n_views; i++) {
        const ParamView *v = &m.views[i];
        char what[128];
        snprintf(what, sizeof what, "model(qk_tied=%d bias=%d tie=%d smear=%d).%s", qk_tied, bias,
                 tie_embeddings, (int)smear, v->name);
        double w = fd_check(what, model_loss, &c, m.params + v->offset, grads + v->offset,
                            v->numel, 24);
        worst = fmax(worst, w);
    }
    printf("model qk_tied=%d bias=%d tie_embeddings=%d smear=%d: %d tensors, worst error %.3f of "
           "tolerance\n", qk_tied, bias, tie_embeddings, (int)smear, m.n_views, worst);
    free(grads);
    model_free(&m);
}

/* Tied qk keeps the query-path and key-path gradients apart: they must equal
 * the W_Q and W_K gradients of an untied model whose W_K holds the same values. */
static void test_tied_paths(void) {
    ModelShape st = {.V = 6, .L = 2, .NH = 2, .C = 8, .maxT = 5, .bias = 1,
                     .tie_embeddings = 1, .qk_tied = 1};
    ModelShape su = st;
    su.qk_tied = 0;
    Model mt, mu;
    model_create(&mt, &st, 2);
    model_create(&mu, &su, 2);
    params_randomize(&mt);
    /* copy every tied tensor into the untied model by name, W_K from W_Q */
    for (int i = 0; i < mu.n_views; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s", mu.views[i].name);
        char *kpos = strstr(name, "attn.k.");
        if (kpos) kpos[5] = 'q';
        for (int j = 0; j < mt.n_views; j++)
            if (strcmp(mt.views[j].name, name) == 0)
                memcpy(mu.params + mu.views[i].offset, mt.params + mt.views[j].offset,
                       mu.views[i].numel * sizeof(real));
    }
    int inp[10], tgt[10];
    for (int i = 0; i < 10; i++) {
        inp[i] = (int)rng_below(&rng, st.V);
        tgt[i] = (int)rng_below(&rng, st.V);
    }
    double lt = model_forward(&mt, inp, tgt, 2, 5), lu = model_forward(&mu, inp, tgt, 2, 5);
    EXPECT(fabs(lt - lu) < 1e-12, "tied and equal-valued untied losses differ: %.15g %.15g", lt, lu);
    model_backward(&mt);
    model_backward(&mu);
    size_t n = (size_t)st.L * st.C * st.C;
    double dk = 0, dq = 0, sum = 0;
    for (size_t i = 0; i < n; i++) {
        dk = fmax(dk, fabs(mt.scr.dwk_path[i] - mu.g.wk[i]));
        dq = fmax(dq, fabs(mt.scr.dwq_path[i] - mu.g.wq[i]));
        sum = fmax(sum, fabs(mt.g.wq[i] - (mt.scr.dwq_path[i] + mt.scr.dwk_path[i])));
    }
    EXPECT(dk < 1e-12, "key-path gradient differs from untied W_K gradient by %g", dk);
    EXPECT(dq < 1e-12, "query-path gradient differs from untied W_Q gradient by %g", dq);
    EXPECT(sum == 0, "shared gradient is not query path + key path (off by %g)", sum);
    EXPECT(model_grad_query_path(&mt, 1) == mt.scr.dwq_path + 64 &&
               model_grad_key_path(&mu, 1) == mu.g.wk + 64,
           "path accessors point at layer 1");
    model_free(&mt);
    model_free(&mu);
}

/* The loss mask: with some targets TARGET_NONE the loss is the mean over the
 * scored ones (the per-position losses of the same forward), its gradient
 * passes the finite-difference check, the unscored targets' values change
 * nothing, inputs past the last scored target get exactly zero gradient,
 * and grad_count divides as a data-parallel rank's global count must. */
static void test_model_masked(void) {
    ModelShape s = {.V = 7, .L = 2, .NH = 2, .C = 8, .maxT = 6, .bias = 1,
                    .tie_embeddings = 0, .qk_tied = 0};
    int B = 2, T = 6, pad = s.V - 1;
    Model m;
    model_create(&m, &s, B);
    params_randomize(&m);
    /* row 0 scores targets 1 and 3 and is padded from position 4 on; row 1
     * scores target 5 only */
    int inp[12], tgt[12], all[12];
    for (int i = 0; i < B * T; i++) {
        inp[i] = (int)rng_below(&rng, s.V - 1);
        all[i] = (int)rng_below(&rng, s.V);
        tgt[i] = TARGET_NONE;
    }
    inp[4] = inp[5] = pad;
    tgt[1] = all[1], tgt[3] = all[3], tgt[11] = all[11];
    const int scored[3] = {1, 3, 11};
    real full_logits[3][7];
    model_forward(&m, inp, all, B, T);
    double want = ((double)m.acts.losses[1] + m.acts.losses[3] + m.acts.losses[11]) / 3;
    for (int r = 0; r < 3; r++)
        memcpy(full_logits[r], model_logits_at(&m, (size_t)scored[r]), sizeof full_logits[r]);
    double got = model_forward(&m, inp, tgt, B, T);
    EXPECT(m.n_scored == 3 && fabs(got - want) < 1e-12,
           "masked loss %.15g, mean of the scored positions' losses %.15g (%zu scored)", got, want,
           m.n_scored);
    EXPECT(m.acts.losses[0] == 0 && m.acts.losses[4] == 0, "unscored positions' losses are 0");
    /* the last block ran past its attention on the scored positions alone:
     * theirs are the logits of the forward that scores every position, to
     * the bit, and the others have none */
    EXPECT(m.n_rows == 3 && m.rows[0] == 1 && m.rows[1] == 3 && m.rows[2] == 11,
           "the masked forward's rows: %zu", m.n_rows);
    for (int i = 0, r = 0; i < B * T; i++) {
        const real *lg = model_logits_at(&m, (size_t)i);
        if (tgt[i] == TARGET_NONE) EXPECT(!lg, "unscored position %d has logits", i);
        else EXPECT(lg && !memcmp(lg, full_logits[r++], sizeof full_logits[0]),
                    "scored position %d: logits differ from the unmasked forward's", i);
    }
    ModelCtx c = {&m, inp, tgt, B, T};
    model_backward(&m);
    real *grads = xmalloc(m.n_params * sizeof(real));
    memcpy(grads, m.grads, m.n_params * sizeof(real));
    for (int i = 0; i < m.n_views; i++) {
        const ParamView *v = &m.views[i];
        char what[128];
        snprintf(what, sizeof what, "masked model.%s", v->name);
        fd_check(what, model_loss, &c, m.params + v->offset, grads + v->offset, v->numel, 24);
    }
    /* the pad occurs only after row 0's last scored target: its embedding and
     * the positions 4 and 5 of row 0 reach no scored output */
    double pad_grad = 0;
    for (int j = 0; j < s.C; j++) pad_grad += fabs(grads[m.views[0].offset + (size_t)pad * s.C + j]);
    EXPECT(pad_grad == 0, "the pad's embedding gets gradient %g", pad_grad);
    for (int r = 0; r < 3; r++) {
        double d = 0;
        for (int v = 0; v < s.V; v++) d += fabs(m.scr.dlogits[(size_t)r * s.V + v]);
        EXPECT(d > 0, "scored position %d has no dlogits", scored[r]);
    }
    /* other values at the unscored targets: the same loss and gradients */
    int other[12];
    memcpy(other, tgt, sizeof other);
    double masked = got;
    got = model_forward(&m, inp, other, B, T);
    model_backward(&m);
    EXPECT(got == masked && !memcmp(grads, m.grads, m.n_params * sizeof(real)),
           "unscored targets changed the loss or the gradients");
    /* a global count twice the local one halves every gradient exactly */
    model_forward(&m, inp, tgt, B, T);
    m.grad_count = 2 * m.n_scored;
    model_backward(&m);
    size_t off = 0;
    for (size_t i = 0; i < m.n_params; i++) off += m.grads[i] != grads[i] / 2;
    EXPECT(off == 0, "grad_count = 2 n_scored: %zu gradients are not halved", off);
    /* every target scored: the plain mean over B T, as before the mask */
    got = model_forward(&m, inp, all, B, T);
    double sum = 0;
    for (int i = 0; i < B * T; i++) sum += m.acts.losses[i];
    EXPECT(got == (real)(sum / (B * T)) && m.n_scored == (size_t)(B * T),
           "all scored: %.17g, the mean over B T %.17g", got, sum / (B * T));
    free(grads);
    model_free(&m);
}

/* Rows shorter than block_size may come more than maxB at a time: each row's
 * logits are those of the same row in a forward of maxB rows, to the bit. */
static void test_model_short_rows(void) {
    ModelShape s = {.V = 7, .L = 2, .NH = 2, .C = 8, .maxT = 6, .bias = 1, .tie_embeddings = 1,
                    .smear = SMEAR_KEY};
    int maxB = 2, B = 4, T = 3, inp[12];
    Model m;
    model_create(&m, &s, maxB);
    params_randomize(&m);
    for (int i = 0; i < B * T; i++) inp[i] = (int)rng_below(&rng, s.V);
    model_forward(&m, inp, NULL, B, T);
    size_t half = (size_t)maxB * T * s.V;
    real *all = xmalloc(2 * half * sizeof(real));
    memcpy(all, m.acts.logits, 2 * half * sizeof(real));
    for (int part = 0; part < 2; part++) {
        model_forward(&m, inp + part * maxB * T, NULL, maxB, T);
        EXPECT(!memcmp(all + part * half, m.acts.logits, half * sizeof(real)),
               "rows %d-%d: %d rows of %d at a time differ from %d at a time", part * maxB,
               part * maxB + maxB - 1, B, T, maxB);
    }
    free(all);
    model_free(&m);
}

/* A batch cut after its last scored position: the same loss, to the bit (the
 * model is causal), and the same gradients but for the order LayerNorm's
 * partial sums take. */
static void test_model_trimmed(void) {
    ModelShape s = {.V = 7, .L = 2, .NH = 2, .C = 8, .maxT = 6, .bias = 1, .tie_embeddings = 1};
    int B = 3, T = 6, inp[18], tgt[18];
    Model m;
    model_create(&m, &s, B);
    params_randomize(&m);
    for (int i = 0; i < B * T; i++) {
        inp[i] = (int)rng_below(&rng, s.V);
        tgt[i] = i % T < 4 && i % 2 ? (int)rng_below(&rng, s.V) : TARGET_NONE;
    }
    real whole = model_forward(&m, inp, tgt, B, T);
    model_backward(&m);
    real *grads = xmalloc(m.n_params * sizeof(real));
    memcpy(grads, m.grads, m.n_params * sizeof(real));
    int kept = batch_trim(inp, tgt, B, T);
    real cut = model_forward(&m, inp, tgt, B, kept);
    model_backward(&m);
    EXPECT(kept == 4 && cut == whole, "cut to %d positions: loss %.9g, whole rows %.9g", kept,
           (double)cut, (double)whole);
    double worst = 0;
    for (size_t i = 0; i < m.n_params; i++) {
        double d = fabs((double)m.grads[i] - grads[i]) / (fabs((double)grads[i]) + 1e-6);
        worst = d > worst ? d : worst;
    }
    EXPECT(worst < 1e-4, "cut rows' gradients differ by %g (relative)", worst);
    free(grads);
    model_free(&m);
}

int main(void) {
    rng_seed(&rng, 42);
    test_layernorm();
    test_matmul(6, 10, 7, 1);
    test_matmul(9, 33, 35, 0); /* crosses the 4x16 register tile edges */
    test_gelu();
    test_attention();
    test_crossentropy();
    test_encoder();
    for (int tied = 0; tied < 2; tied++)
        for (int bias = 0; bias < 2; bias++) test_model(tied, bias, 1, SMEAR_NONE);
    test_model(0, 1, 0, SMEAR_NONE);
    test_model(1, 0, 0, SMEAR_NONE);
    test_smear();
    test_model(0, 1, 1, SMEAR_KEY);
    test_model(0, 0, 0, SMEAR_QUERY);
    test_model(1, 1, 1, SMEAR_KEY);
    test_tied_paths();
    test_model_masked();
    test_model_short_rows();
    test_model_trimmed();
    CHECK_DONE("test_grad");
}
