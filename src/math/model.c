#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attention.h"
#include "layers.h"

/* The parameter kinds, in memory order (stacked over layers) and, within a
 * layer, in checkpoint order. */
enum {
    K_WTE, K_WPE,
    K_LN1W, K_LN1B, K_WQ, K_BQ, K_WK, K_BK, K_WV, K_BV, K_WO, K_BO, K_SMEAR,
    K_LN2W, K_LN2B, K_FCW, K_FCB, K_PROJW, K_PROJB,
    K_LNFW, K_LNFB, K_LMHEAD, N_KINDS
};

static const struct {
    size_t field;     /* offsetof in ParamTensors */
    const char *name; /* checkpoint name (per-layer ones get "blocks.{l}.") */
    int per_layer;
} kinds[N_KINDS] = {
    {offsetof(ParamTensors, wte), "wte.weight", 0},
    {offsetof(ParamTensors, wpe), "wpe.weight", 0},
    {offsetof(ParamTensors, ln1w), "ln1.weight", 1},
    {offsetof(ParamTensors, ln1b), "ln1.bias", 1},
    {offsetof(ParamTensors, wq), "attn.q.weight", 1},
    {offsetof(ParamTensors, bq), "attn.q.bias", 1},
    {offsetof(ParamTensors, wk), "attn.k.weight", 1},
    {offsetof(ParamTensors, bk), "attn.k.bias", 1},
    {offsetof(ParamTensors, wv), "attn.v.weight", 1},
    {offsetof(ParamTensors, bv), "attn.v.bias", 1},
    {offsetof(ParamTensors, wo), "attn.o.weight", 1},
    {offsetof(ParamTensors, bo), "attn.o.bias", 1},
    {offsetof(ParamTensors, smear), "attn.smear", 1},
    {offsetof(ParamTensors, ln2w), "ln2.weight", 1},
    {offsetof(ParamTensors, ln2b), "ln2.bias", 1},
    {offsetof(ParamTensors, fcw), "mlp.fc.weight", 1},
    {offsetof(ParamTensors, fcb), "mlp.fc.bias", 1},
    {offsetof(ParamTensors, projw), "mlp.proj.weight", 1},
    {offsetof(ParamTensors, projb), "mlp.proj.bias", 1},
    {offsetof(ParamTensors, lnfw), "ln_f.weight", 0},
    {offsetof(ParamTensors, lnfb), "ln_f.bias", 0},
    {offsetof(ParamTensors, lm_head), "lm_head.weight", 0},
};

const char *const model_op_names[N_OPS] = {"matmul", "attention", "layernorm", "gelu",
                                           "softmax-crossentropy", "other"};

/* Shape of one instance of a kind (one layer's slice); 0 rows when absent. */
static void kind_dims(const ModelShape *s, int k, int *rows, int *cols) {
    int C = s->C;
    *cols = 0;
    switch (k) {
    case K_WTE: case K_LMHEAD:
        *rows = (k == K_LMHEAD && s->tie_embeddings) ? 0 : s->V;
        *cols = C;
        break;
    case K_WPE: *rows = s->maxT; *cols = C; break;
    case K_LN1W: case K_LN1B: case K_LN2W: case K_LN2B: case K_LNFW: case K_LNFB:
        *rows = C;
        break;
    case K_WQ: case K_WV: case K_WO: *rows = C; *cols = C; break;
    case K_WK: *rows = s->qk_tied ? 0 : C; *cols = C; break;
    case K_BQ: case K_BV: case K_BO: case K_PROJB: *rows = s->bias ? C : 0; break;
    case K_BK: *rows = (s->bias && !s->qk_tied) ? C : 0; break;
    case K_FCW: *rows = 4 * C; *cols = C; break;
    case K_FCB: *rows = s->bias ? 4 * C : 0; break;
    case K_SMEAR: *rows = s->smear != SMEAR_NONE ? s->NH : 0; break;
    case K_PROJW: *rows = C; *cols = 4 * C; break;
    default: *rows = 0;
    }
}

static size_t kind_numel(const ModelShape *s, int k) {
    int rows, cols;
    kind_dims(s, k, &rows, &cols);
    return (size_t)rows * (size_t)(cols ? cols : 1);
}

static size_t kind_count(const ModelShape *s, int k) {
    return kinds[k].per_layer ? (size_t)s->L : 1;
}

/* Points every present kind of t into base (laid out in kind order);
 * absent kinds are NULL. Returns the total element count. */
static size_t params_point(ParamTensors *t, const ModelShape *s, real *base) {
    size_t off = 0;
    for (int k = 0; k < N_KINDS; k++) {
        size_t n = kind_numel(s, k) * kind_count(s, k);
        real **field = (real **)((char *)t + kinds[k].field);
        *field = (n && base) ? base + off : NULL;
        off += n;
    }
    return off;
}

/* Appends the view of kind k in layer l (skipped when the kind is absent). */
static void view_add(ParamView *views, int *n_views, const ModelShape *s, const size_t *base,
                     int k, int l) {
    size_t n = kind_numel(s, k);
    if (!n) return;
    ParamView *v = &views[(*n_views)++];
    int rows, cols;
    kind_dims(s, k, &rows, &cols);
    if (kinds[k].per_layer)
        snprintf(v->name, sizeof v->name, "blocks.%d.%s", l, kinds[k].name);
    else
        snprintf(v->name, sizeof v->name, "%s", kinds[k].name);
    v->offset = base[k] + (size_t)l * n;
    v->numel = n;
    v->ndim = cols ? 2 : 1;
    v->shape[0] = rows;
    v->shape[1] = cols;
    v->decay = cols != 0;
}

/* Checkpoint order: embeddings, then each block's tensors, then ln_f and the
 * head; the kinds enum is already in that order. */
ParamView *model_views(const ModelShape *s, int *n_views, size_t *n_params) {
    ParamView *views = xcalloc((size_t)N_KINDS * s->L + N_KINDS, sizeof(ParamView));
    size_t base[N_KINDS], off = 0;
    for (int k = 0; k < N_KINDS; k++) {
        base[k] = off;
        off += kind_numel(s, k) * kind_count(s, k);
    }
    *n_views = 0;
    for (int k = 0; k < K_LN1W; k++) view_add(views, n_views, s, base, k, 0);
    for (int l = 0; l < s->L; l++)
        for (int k = K_LN1W; k <= K_PROJB; k++) view_add(views, n_views, s, base, k, l);
    for (int k = K_LNFW; k < N_KINDS; k++) view_add(views, n_views, s, base, k, 0);
    if (n_params) *n_params = off;
    return views;
}

/* Lays out the activations for B x T (counting only when base is NULL); each
 * tensor starts on a cache line, like its block. */
static size_t acts_point(Activations *a, const ModelShape *s, int B, int T, real *base) {
    size_t L = s->L, BT = (size_t)B * T, C = s->C, NH = s->NH, V = s->V, off = 0;
    struct { real **p; size_t n; } f[] = {
        {&a->encoded, BT * C}, {&a->ln1, L * BT * C}, {&a->ln1_mean, L * BT},
        {&a->ln1_rstd, L * BT}, {&a->q, L * BT * C}, {&a->k, L * BT * C},
        {&a->v, L * BT * C}, {&a->att, L * B * NH * T * T}, {&a->atty, L * BT * C},
        {&a->res2, L * BT * C}, {&a->ln2, L * BT * C}, {&a->ln2_mean, L * BT},
        {&a->ln2_rstd, L * BT}, {&a->fch, L * BT * 4 * C}, {&a->fch_gelu, L * BT * 4 * C},
        {&a->res3, L * BT * C}, {&a->lnf, BT * C}, {&a->lnf_mean, BT}, {&a->lnf_rstd, BT},
        {&a->logits, BT * V}, {&a->probs, BT * V}, {&a->losses, BT},
        {&a->smear_raw, s->smear != SMEAR_NONE ? L * BT * C : 0},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        *f[i].p = base && f[i].n ? base + off : NULL;
        off += round_lines(f[i].n);
    }
    return off;
}

static size_t scratch_point(BackwardScratch *d, const ModelShape *s, int B, int T, real *base) {
    size_t BT = (size_t)B * T, C = s->C, V = s->V, L = s->L, off = 0;
    size_t tied = s->qk_tied ? 1 : 0;
    struct { real **p; size_t n; } f[] = {
        {&d->dres, BT * C}, {&d->dln, BT * C}, {&d->dq, BT * C}, {&d->dk, BT * C},
        {&d->dv, BT * C}, {&d->datty, BT * C},
        {&d->dfch, BT * 4 * C}, {&d->dfch_gelu, BT * 4 * C}, {&d->dlogits, BT * V},
        {&d->dwq_path, tied * L * C * C}, {&d->dbq_path, tied * L * C},
        {&d->dwk_path, tied * L * C * C}, {&d->dbk_path, tied * L * C},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        *f[i].p = (base && f[i].n) ? base + off : NULL;
        off += round_lines(f[i].n);
    }
    return off;
}

int model_check_memory(const ModelShape *s, int B, Error *err) {
    double need = (double)model_memory_bytes(s, B);
    double have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    /* leave room for the OS and the rest of the process */
    if (need > 0.8 * have)
        return error_set(err,
                         "model needs %.2f GiB for parameters, gradients, Adam state and "
                         "activations (batch_size %d, block_size %d); this machine has %.2f GiB",
                         need / 1073741824.0, B, s->maxT, have / 1073741824.0);
    return 0;
}

size_t model_memory_bytes(const ModelShape *s, int maxB) {
    ParamTensors t;
    Activations a;
    BackwardScratch d;
    size_t n = 4 * params_point(&t, s, NULL) + acts_point(&a, s, maxB, s->maxT, NULL) +
               scratch_point(&d, s, maxB, s->maxT, NULL);
    return n * sizeof(real);
}

void model_create(Model *m, const ModelShape *s, int maxB) {
    memset(m, 0, sizeof *m);
    m->shape = *s;
    m->maxB = maxB;
    m->grad_shards = 1;
    m->n_params = params_point(&m->p, s, NULL);
    m->params = xcalloc_lines(m->n_params, sizeof(real));
    m->grads = xcalloc_lines(m->n_params, sizeof(real));
    m->adam_m = xcalloc_lines(m->n_params, sizeof(real));
    m->adam_v = xcalloc_lines(m->n_params, sizeof(real));
    params_point(&m->p, s, m->params);
    params_point(&m->g, s, m->grads);
    params_point(&m->m, s, m->adam_m);
    params_point(&m->v, s, m->adam_v);
    /* In the parameter set, shared tensors alias their owner. */
    if (s->qk_tied) {
        m->p.wk = m->p.wq;
        m->p.bk = m->p.bq;
    }
    if (s->tie_embeddings) m->p.lm_head = m->p.wte;
    m->views = model_views(s, &m->n_views, NULL);
    m->n_acts = acts_point(&m->acts, s, maxB, s->maxT, NULL);
    m->acts_mem = xmalloc_lines(m->n_acts, sizeof(real));
    acts_point(&m->acts, s, maxB, s->maxT, m->acts_mem);
    m->n_scr = scratch_point(&m->scr, s, maxB, s->maxT, NULL);
    m->scr_mem = xmalloc_lines(m->n_scr, sizeof(real));
    scratch_point(&m->scr, s, maxB, s->maxT, m->scr_mem);
    m->rows = xcalloc((size_t)2 * maxB * s->maxT, sizeof(int));
    m->row_targets = m->rows + (size_t)maxB * s->maxT;
}

Span model_idle_activations(Model *m) {
    return (Span){m->acts_mem, m->n_acts * sizeof(real)};
}

void model_free_activations(Model *m) {
    free(m->acts_mem);
    free(m->scr_mem);
    m->acts_mem = m->scr_mem = NULL;
    m->n_acts = m->n_scr = 0;
    memset(&m->acts, 0, sizeof m->acts);
    memset(&m->scr, 0, sizeof m->scr);
}

real *model_spare_scratch(Model *m, size_t *n) {
    *n = m->n_scr;
    return m->scr_mem;
}

void model_free(Model *m) {
    free(m->params);
    free(m->grads);
    free(m->adam_m);
    free(m->adam_v);
    free(m->views);
    model_free_activations(m);
    free(m->rows);
    gemm_scratch_free(&m->kernel.gemm);
    scratch_free(&m->kernel.attention);
    scratch_free(&m->kernel.ln_partials);
    memset(m, 0, sizeof *m);
}

void model_init_params(Model *m, Rng *r, InitScheme scheme, int symmetric_qk) {
    const ModelShape *s = &m->shape;
    double resid_std = 0.02 / sqrt(2.0 * s->L);
    for (int i = 0; i < m->n_views; i++) {
        const ParamView *v = &m->views[i];
        real *p = m->params + v->offset;
        const char *dot = strrchr(v->name, '.');
        int norm = strstr(v->name, "ln") != NULL, gate = strcmp(dot, ".smear") == 0;
        /* LayerNorm weights start at 1, its biases and the smear gates at 0 */
        real val = (norm && strcmp(dot, ".weight") == 0) ? 1 : 0;
        double std = 0, bound = 0; /* N(0, std), else U(-bound, bound), else val */
        if (scheme == INIT_GPT2) {
            /* every matrix normal, every bias 0 */
            if (v->ndim == 2)
                std = strstr(v->name, "attn.o.") || strstr(v->name, "mlp.proj.") ? resid_std : 0.02;
        } else if (!strcmp(v->name, "wte.weight") || !strcmp(v->name, "wpe.weight")) {
            std = 1; /* nn.Embedding's default */
        } else if (!norm && !gate) {
            /* nn.Linear's: kaiming_uniform(a = sqrt(5)) comes to this bound,
             * and its bias uses it too; a bias's view follows its weight's */
            int fan_in = v->ndim == 2 ? v->shape[1] : v[-1].shape[1];
            bound = 1 / sqrt((double)fan_in);
        }
        for (size_t j = 0; j < v->numel; j++)
            p[j] = std ? (real)(std * rng_normal(r))
                 : bound ? (real)(bound * (2 * rng_uniform(r) - 1)) : val;
    }
    if (symmetric_qk && !s->qk_tied) {
        memcpy(m->p.wk, m->p.wq, (size_t)s->L * s->C * s->C * sizeof(real));
        if (s->bias) memcpy(m->p.bk, m->p.bq, (size_t)s->L * s->C * sizeof(real));
    }
}

/* Adds the wall time of an op call to m->op_seconds (the benchmark's per-op
 * breakdown; a clock read is cheap against an op's work). */
#define TIMED(op, call)                                  \
    do {                                                 \
        double t0_ = time_now();                         \
        call;                                            \
        m->op_seconds[op] += time_now() - t0_;           \
    } while (0)

/* The targets of the forward's rows past the last attention: the scored
 * ones in order when it kept only those, else every position's (or NULL). */
static const int *kept_targets(const Model *m) {
    return m->n_rows < (size_t)m->B * m->T ? m->row_targets : m->targets;
}

/* Layer l's slice of a stacked tensor, or NULL when the tensor is absent. */
static real *at(real *base, int l, size_t stride) {
    return base ? base + (size_t)l * stride : NULL;
}

/* Exchanges the flagged heads' slices of q and k [BT, C] (the projections'
 * outputs: the same numbers as projecting through exchanged weights). */
static void swap_heads(real *q, real *k, const unsigned char *flags, size_t BT, int C, int NH) {
    int hs = C / NH;
    for (int h = 0; h < NH; h++) {
        if (!flags[h]) continue;
        for (size_t i = 0; i < BT; i++) {
            real *a = q + i * C + (size_t)h * hs, *b = k + i * C + (size_t)h * hs;
            for (int j = 0; j < hs; j++) {
                real t = a[j];
                a[j] = b[j];
                b[j] = t;
            }
        }
    }
}

/* Blocks `from` .. L-1 and the head over the B x T activations, block
 * from's input (the embeddings, or block from-1's output) in place; then the
 * loss of the scored targets. qk_only: stop once the last block's queries
 * and keys are computed. */
static real forward_blocks(Model *m, int from, int qk_only, const int *targets, int B, int T,
                           const ForwardHooks *hk) {
    const ModelShape *s = &m->shape;
    int C = s->C, NH = s->NH, V = s->V;
    size_t BT = (size_t)B * T, CC = (size_t)C * C, BTC = BT * C;
    ParamTensors *p = &m->p;
    Activations *a = &m->acts;
    KernelScratch *ks = &m->kernel;

    const real *resid = from ? a->res3 + (size_t)(from - 1) * BTC : a->encoded;
    size_t R = m->n_rows; /* rows of the last block past its attention */
    for (int l = from; l < s->L; l++) {
        size_t Rl = l == s->L - 1 ? R : BT, RlC = Rl * C;
        real *ln1 = a->ln1 + l * BTC, *q = a->q + l * BTC, *k = a->k + l * BTC;
        real *v = a->v + l * BTC, *atty = a->atty + l * BTC, *res2 = a->res2 + l * BTC;
        real *ln2 = a->ln2 + l * BTC, *res3 = a->res3 + l * BTC;
        real *fch = a->fch + l * BTC * 4, *fchg = a->fch_gelu + l * BTC * 4;
        real *att = a->att + (size_t)l * B * NH * T * T;

        TIMED(OP_LAYERNORM, layernorm_forward(ln1, a->ln1_mean + l * BT, a->ln1_rstd + l * BT,
                                              resid, p->ln1w + l * C, p->ln1b + l * C, BT, C));
        /* smeared: the projection into smear_raw, then the mix into q or k */
        real *raw = at(a->smear_raw, l, BTC);
        real *qp = s->smear == SMEAR_QUERY ? raw : q, *kp = s->smear == SMEAR_KEY ? raw : k;
        TIMED(OP_MATMUL,
              matmul_forward(qp, ln1, p->wq + l * CC, at(p->bq, l, C), NULL, BT, C, C, &ks->gemm));
        TIMED(OP_MATMUL,
              matmul_forward(kp, ln1, p->wk + l * CC, at(p->bk, l, C), NULL, BT, C, C, &ks->gemm));
        if (hk && hk->swap_qk) swap_heads(qp, kp, hk->swap_qk + (size_t)l * NH, BT, C, NH);
        if (raw)
            TIMED(OP_ATTENTION, smear_forward(s->smear == SMEAR_KEY ? k : q, raw,
                                              p->smear + l * NH, B, T, C, NH));
        if (hk && hk->edit_qk) hk->edit_qk(hk->ctx, l, q, k, B, T);
        m->pattern_layers = l; /* this layer's weights are about to change */
        if (qk_only && l == s->L - 1) return 0;
        TIMED(OP_MATMUL,
              matmul_forward(v, ln1, p->wv + l * CC, at(p->bv, l, C), NULL, BT, C, C, &ks->gemm));
        m->att_at_rows = Rl < BT && !(hk && (hk->keep_pattern || hk->edit_z));
        if (m->att_at_rows)
            TIMED(OP_ATTENTION, attention_forward_rows(atty, att, q, k, v, m->rows, (int)Rl, B, T,
                                                       C, NH, &ks->attention));
        else
            TIMED(OP_ATTENTION,
                  attention_forward(atty, att, q, k, v, B, T, C, NH, &ks->attention));
        if (!m->att_at_rows) m->pattern_layers = l + 1;
        if (hk && hk->edit_z) hk->edit_z(hk->ctx, l, atty, B, T);
        const real *skip = resid; /* the residual the W_O product starts from */
        if (Rl < BT) { /* attention output and residual of the scored rows */
            if (!m->att_at_rows) TIMED(OP_OTHER, rows_gather(atty, atty, m->rows, Rl, C));
            TIMED(OP_OTHER, rows_gather(res2, resid, m->rows, Rl, C));
            skip = res2;
        }
        TIMED(OP_MATMUL, matmul_forward(res2, atty, p->wo + l * CC, at(p->bo, l, C), skip, Rl, C,
                                        C, &ks->gemm));

        TIMED(OP_LAYERNORM, layernorm_forward(ln2, a->ln2_mean + l * BT, a->ln2_rstd + l * BT, res2,
                                              p->ln2w + l * C, p->ln2b + l * C, Rl, C));
        TIMED(OP_MATMUL, matmul_forward(fch, ln2, p->fcw + l * 4 * CC, at(p->fcb, l, 4 * (size_t)C),
                                        NULL, Rl, C, 4 * C, &ks->gemm));
        TIMED(OP_GELU, gelu_forward(fchg, fch, fch, RlC * 4));
        TIMED(OP_MATMUL, matmul_forward(res3, fchg, p->projw + l * 4 * CC, at(p->projb, l, C),
                                        res2, Rl, 4 * C, C, &ks->gemm));
        resid = res3;
    }
    TIMED(OP_LAYERNORM,
          layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, resid, p->lnfw, p->lnfb, R, C));
    TIMED(OP_MATMUL,
          matmul_forward(a->logits, a->lnf, p->lm_head, NULL, NULL, R, C, V, &ks->gemm));
    TIMED(OP_CROSSENTROPY,
          crossentropy_forward(a->probs, a->losses, a->logits, kept_targets(m), R, V));
    if (R < BT) TIMED(OP_OTHER, rows_scatter(a->losses, m->rows, R, BT, 1));

    m->grad_count = 0;
    if (!targets) return 0;
    double sum = 0;
    size_t scored = 0;
    for (size_t i = 0; i < BT; i++)
        if (targets[i] != TARGET_NONE) {
            sum += a->losses[i];
            scored++;
        }
    m->loss_sum = sum;
    m->n_scored = scored;
    m->loss = scored ? (real)(sum / scored) : 0;
    return m->loss;
}

/* A new forward's embeddings, the activations laid out for this B x T so
 * layer strides stay dense. */
static void forward_embed(Model *m, const int *inputs, const int *targets, int B, int T) {
    const ModelShape *s = &m->shape;
    /* every buffer holds B T rows (the attention's B T T entries, T <= maxT):
     * shorter rows may come more at a time */
    CHECK(B >= 1 && T >= 1 && T <= s->maxT && (size_t)B * T <= (size_t)m->maxB * s->maxT,
          "model_forward: B=%d T=%d outside the allocated %dx%d", B, T, m->maxB, s->maxT);
    acts_point(&m->acts, s, B, T, m->acts_mem);
    m->B = B;
    m->T = T;
    m->inputs = inputs;
    m->targets = targets;
    size_t BT = (size_t)B * T, n = 0;
    for (size_t i = 0; targets && i < BT; i++)
        if (targets[i] != TARGET_NONE) {
            m->rows[n] = (int)i;
            m->row_targets[n++] = targets[i];
        }
    /* no target scored: the whole forward, as without targets */
    m->n_rows = n > 0 ? n : BT;
    m->att_at_rows = 0;
    m->pattern_layers = 0;
    TIMED(OP_OTHER, encoder_forward(m->acts.encoded, inputs, m->p.wte, m->p.wpe, B, T, s->C));
}

real model_forward_hooked(Model *m, const int *inputs, const int *targets, int B, int T,
                          const ForwardHooks *hooks) {
    forward_embed(m, inputs, targets, B, T);
    return forward_blocks(m, 0, 0, targets, B, T, hooks);
}

real model_forward(Model *m, const int *inputs, const int *targets, int B, int T) {
    return model_forward_hooked(m, inputs, targets, B, T, NULL);
}

void model_forward_qk(Model *m, const int *inputs, int B, int T) {
    forward_embed(m, inputs, NULL, B, T);
    forward_blocks(m, 0, 1, NULL, B, T, NULL);
}

real model_forward_from(Model *m, int layer, const ForwardHooks *hooks) {
    CHECK(m->B > 0 && layer >= 0 && layer < m->shape.L,
          "model_forward_from: layer %d of %d, after a forward", layer, m->shape.L);
    return forward_blocks(m, layer, 0, m->targets, m->B, m->T, hooks);
}

/* Layer l's slice of a [L, B, T, C] activation of the last forward. */
static const real *layer_rows(const Model *m, const real *base, int l, const char *what) {
    CHECK(m->B > 0 && l >= 0 && l < m->shape.L, "%s: layer %d of %d, after a forward", what, l,
          m->shape.L);
    return base + (size_t)l * m->B * m->T * m->shape.C;
}

const real *model_pattern(const Model *m, int l) {
    CHECK(l < m->pattern_layers,
          "model_pattern: layer %d's weights were not kept (keep_pattern, or a whole forward)", l);
    return m->acts.att + (size_t)l * m->B * m->shape.NH * m->T * m->T;
}

const real *model_q(const Model *m, int l) { return layer_rows(m, m->acts.q, l, "model_q"); }
const real *model_k(const Model *m, int l) { return layer_rows(m, m->acts.k, l, "model_k"); }
const real *model_head_input(const Model *m, int l) {
    return layer_rows(m, m->acts.ln1, l, "model_head_input");
}

const real *model_z(const Model *m, int l) {
    /* the last block gathers its scored rows' z after the edit */
    CHECK(l < m->pattern_layers && (l < m->shape.L - 1 || m->n_rows == (size_t)m->B * m->T),
          "model_z: layer %d's rows were not all kept", l);
    return layer_rows(m, m->acts.atty, l, "model_z");
}

/* x[0..n) = 0 by all threads: megabytes of gradients zeroed by one thread
 * kept the other waiting. */
#define ZERO_CHUNK 16384
static void zero_fill(real *x, size_t n) {
    size_t nch = (n + ZERO_CHUNK - 1) / ZERO_CHUNK;
#pragma omp parallel for schedule(static) if (n > 4 * ZERO_CHUNK)
    for (size_t c = 0; c < nch; c++) {
        size_t lo = c * ZERO_CHUNK, len = n - lo < ZERO_CHUNK ? n - lo : ZERO_CHUNK;
        memset(x + lo, 0, len * sizeof(real));
    }
}

/* Hands a finished gradient span to the data-parallel hook (absent tensors
 * are NULL and skipped). */
static void grad_ready(const Model *m, real *span, size_t n) {
    if (m->grad_ready && span) m->grad_ready(m->grad_ready_ctx, span, n);
}

/* Layer l is done: its slice of every stacked gradient tensor is final
 * (for tied Q/K also both path parts, which the Q/K logs read). */
static void layer_grads_ready(const Model *m, int l) {
    const ModelShape *s = &m->shape;
    if (!m->grad_ready) return;
    for (int k = 0; k < N_KINDS; k++) {
        if (!kinds[k].per_layer) continue;
        size_t n = kind_numel(s, k);
        real *base = *(real *const *)((const char *)&m->g + kinds[k].field);
        grad_ready(m, at(base, l, n), n);
    }
    if (s->qk_tied) {
        size_t CC = (size_t)s->C * s->C;
        grad_ready(m, at(m->scr.dwq_path, l, CC), CC);
        grad_ready(m, at(m->scr.dwk_path, l, CC), CC);
        grad_ready(m, at(m->scr.dbq_path, l, s->C), (size_t)s->C);
        grad_ready(m, at(m->scr.dbk_path, l, s->C), (size_t)s->C);
    }
}

void model_backward(Model *m) {
    const ModelShape *s = &m->shape;
    CHECK(m->targets, "model_backward: the last forward had no targets");
    int B = m->B, T = m->T, C = s->C, NH = s->NH, V = s->V;
    size_t BT = (size_t)B * T, CC = (size_t)C * C, BTC = BT * C;
    scratch_point(&m->scr, s, B, T, m->scr_mem);
    ParamTensors *p = &m->p, *g = &m->g;
    Activations *a = &m->acts;
    BackwardScratch *d = &m->scr;
    KernelScratch *ks = &m->kernel;

    zero_fill(m->grads, m->n_params);
    if (s->qk_tied) {
        zero_fill(d->dwq_path, (size_t)s->L * CC);
        zero_fill(d->dwk_path, (size_t)s->L * CC);
        if (s->bias) {
            memset(d->dbq_path, 0, (size_t)s->L * C * sizeof(real));
            memset(d->dbk_path, 0, (size_t)s->L * C * sizeof(real));
        }
    }

    /* the head and the last block down to its attention on the forward's rows */
    size_t R = m->n_rows, count = m->grad_count ? m->grad_count : m->n_scored * (size_t)m->grad_shards;
    TIMED(OP_CROSSENTROPY, crossentropy_backward(d->dlogits, a->probs, kept_targets(m), R, V,
                                                 count ? (real)(1.0 / (double)count) : 0));
    TIMED(OP_MATMUL, matmul_backward(d->dln, s->tie_embeddings ? g->wte : g->lm_head, NULL,
                                     d->dlogits, a->lnf, p->lm_head, R, C, V, 0, &ks->gemm));
    zero_fill(d->dres, R * C);
    TIMED(OP_LAYERNORM,
          layernorm_backward(d->dres, g->lnfw, g->lnfb, d->dln, a->res3 + (s->L - 1) * BTC, p->lnfw,
                             a->lnf_mean, a->lnf_rstd, R, C, &ks->ln_partials));
    grad_ready(m, g->lnfw, (size_t)C);
    grad_ready(m, g->lnfb, (size_t)C);
    grad_ready(m, g->lm_head, (size_t)V * C); /* NULL when tied: wte is final only at the end */

    for (int l = s->L - 1; l >= 0; l--) {
        size_t Rl = l == s->L - 1 ? R : BT, RlC = Rl * C;
        const real *resid = l == 0 ? a->encoded : a->res3 + (l - 1) * BTC;
        real *ln1 = a->ln1 + l * BTC, *q = a->q + l * BTC, *k = a->k + l * BTC;
        real *v = a->v + l * BTC, *atty = a->atty + l * BTC, *res2 = a->res2 + l * BTC;
        real *ln2 = a->ln2 + l * BTC;
        real *fch = a->fch + l * BTC * 4, *fchg = a->fch_gelu + l * BTC * 4;
        real *att = a->att + (size_t)l * B * NH * T * T;

        /* MLP: dres holds dL/d(res3); layernorm_backward adds the branch's
         * contribution so that afterwards dres = dL/d(res2). */
        TIMED(OP_MATMUL,
              matmul_backward(d->dfch_gelu, g->projw + l * 4 * CC, at(g->projb, l, C), d->dres,
                              fchg, p->projw + l * 4 * CC, Rl, 4 * C, C, 0, &ks->gemm));
        TIMED(OP_GELU, gelu_backward(d->dfch, fch, d->dfch_gelu, RlC * 4));
        TIMED(OP_MATMUL,
              matmul_backward(d->dln, g->fcw + l * 4 * CC, at(g->fcb, l, 4 * (size_t)C), d->dfch,
                              ln2, p->fcw + l * 4 * CC, Rl, C, 4 * C, 0, &ks->gemm));
        TIMED(OP_LAYERNORM, layernorm_backward(d->dres, g->ln2w + l * C, g->ln2b + l * C, d->dln,
                                               res2, p->ln2w + l * C, a->ln2_mean + l * BT,
                                               a->ln2_rstd + l * BT, Rl, C, &ks->ln_partials));

        /* Attention: afterwards dres = dL/d(block input). */
        TIMED(OP_MATMUL, matmul_backward(d->datty, g->wo + l * CC, at(g->bo, l, C), d->dres, atty,
                                         p->wo + l * CC, Rl, C, C, 0, &ks->gemm));
        int at_rows = Rl < BT && m->att_at_rows;
        if (Rl < BT) { /* back to every position: the unscored ones' gradients are 0 */
            if (!at_rows) TIMED(OP_OTHER, rows_scatter(d->datty, m->rows, Rl, BT, C));
            TIMED(OP_OTHER, rows_scatter(d->dres, m->rows, Rl, BT, C));
        }
        if (at_rows)
            TIMED(OP_ATTENTION, attention_backward_rows(d->dq, d->dk, d->dv, d->datty, q, k, v, att,
                                                        m->rows, (int)Rl, B, T, C, NH,
                                                        &ks->attention));
        else
            TIMED(OP_ATTENTION, attention_backward(d->dq, d->dk, d->dv, d->datty, q, k, v, att, B,
                                                   T, C, NH, &ks->attention));
        /* smeared: dq or dk through the mix, onto the projection (in place) */
        real *raw = at(a->smear_raw, l, BTC);
        if (raw) {
            real *dsm = s->smear == SMEAR_KEY ? d->dk : d->dq;
            TIMED(OP_ATTENTION, smear_backward(dsm, g->smear + l * NH, dsm, raw, p->smear + l * NH,
                                               B, T, C, NH));
        }
        real *gwq = s->qk_tied ? d->dwq_path + l * CC : g->wq + l * CC;
        real *gbq = s->qk_tied ? at(d->dbq_path, l, C) : at(g->bq, l, C);
        real *gwk = s->qk_tied ? d->dwk_path + l * CC : g->wk + l * CC;
        real *gbk = s->qk_tied ? at(d->dbk_path, l, C) : at(g->bk, l, C);
        TIMED(OP_MATMUL, matmul_backward(d->dln, gwq, gbq, d->dq, ln1, p->wq + l * CC, BT, C, C, 0,
                                         &ks->gemm));
        TIMED(OP_MATMUL, matmul_backward(d->dln, gwk, gbk, d->dk, ln1, p->wk + l * CC, BT, C, C, 1,
                                         &ks->gemm));
        TIMED(OP_MATMUL, matmul_backward(d->dln, g->wv + l * CC, at(g->bv, l, C), d->dv, ln1,
                                         p->wv + l * CC, BT, C, C, 1, &ks->gemm));
        TIMED(OP_LAYERNORM, layernorm_backward(d->dres, g->ln1w + l * C, g->ln1b + l * C, d->dln,
                                               resid, p->ln1w + l * C, a->ln1_mean + l * BT,
                                               a->ln1_rstd + l * BT, BT, C, &ks->ln_partials));
        /* Tied W_Q = W_K: the shared gradient is query path + key path. */
        if (s->qk_tied) {
            for (size_t i = 0; i < CC; i++)
                g->wq[l * CC + i] = d->dwq_path[l * CC + i] + d->dwk_path[l * CC + i];
            if (s->bias)
                for (int i = 0; i < C; i++)
                    g->bq[l * C + i] = d->dbq_path[l * C + i] + d->dbk_path[l * C + i];
        }
        layer_grads_ready(m, l);
    }
    TIMED(OP_OTHER, encoder_backward(g->wte, g->wpe, d->dres, m->inputs, B, T, C));
    grad_ready(m, g->wte, (size_t)V * C);
    grad_ready(m, g->wpe, (size_t)s->maxT * C);
}

const real *model_grad_query_path(const Model *m, int l) {
    const real *base = m->shape.qk_tied ? m->scr.dwq_path : m->g.wq;
    return base + (size_t)l * m->shape.C * m->shape.C;
}

const real *model_grad_key_path(const Model *m, int l) {
    const real *base = m->shape.qk_tied ? m->scr.dwk_path : m->g.wk;
    return base + (size_t)l * m->shape.C * m->shape.C;
}

size_t model_count_correct(const Model *m) {
    CHECK(m->targets, "model_count_correct: the last forward had no targets");
    return crossentropy_correct(m->acts.logits, kept_targets(m), m->n_rows, m->shape.V);
}

const real *model_logits_at(const Model *m, size_t pos) {
    size_t BT = (size_t)m->B * m->T, r = pos;
    if (pos >= BT) return NULL;
    if (m->n_rows < BT) {
        r = rows_find(m->rows, m->n_rows, pos);
        if (r == m->n_rows || (size_t)m->rows[r] != pos) return NULL;
    }
    return m->acts.logits + r * m->shape.V;
}

void model_eval_add(EvalSums *s, const Model *m, int per_target) {
    if (per_target) {
        s->loss += m->loss_sum;
        s->weight += (double)m->n_scored;
    } else { /* mean over the rows, weighted back to a sum over them */
        s->loss += (double)m->loss * m->B;
        s->weight += m->B;
    }
    s->correct += (double)model_count_correct(m);
    s->scored += (double)m->n_scored;
}

EvalSums model_eval_range(Model *m, const Corpus *c, int val, int first, int n, int count, int B,
                          int *inputs, int *targets, const ForwardHooks *hooks, ChunkHook each,
                          void *ctx) {
    int T = m->shape.maxT;
    EvalSums s = {0};
    for (int i = first; i < first + n; i += B) {
        int nb = first + n - i < B ? first + n - i : B;
        for (int b = 0; b < nb; b++)
            batch_eval_window(c, val, i + b, count, T, inputs + (size_t)b * T,
                              targets + (size_t)b * T);
        /* the hook's statistics see every position */
        model_forward_hooked(m, inputs, targets, nb, each ? T : batch_trim(inputs, targets, nb, T),
                             hooks);
        model_eval_add(&s, m, c->task.kind != TASK_NONE);
        if (each) each(ctx, m, nb);
    }
    return s;
}

double model_eval_windows(Model *m, const Corpus *c, int val, int count, int B, int *inputs,
                          int *targets, const ForwardHooks *hooks, ChunkHook each, void *ctx,
                          double *acc) {
    EvalSums s =
        model_eval_range(m, c, val, 0, count, count, B, inputs, targets, hooks, each, ctx);
    if (acc) *acc = s.scored > 0 ? s.correct / s.scored : 0;
    return s.loss / s.weight;
}

/* The sum of squares in NORM_CHUNKS fixed chunks added in order: the same
 * bits for any thread count. */
#define NORM_CHUNKS 64

double model_grad_norm(const Model *m) {
    size_t n = m->n_params;
    double part[NORM_CHUNKS];
#pragma omp parallel for schedule(static) if (n > PARALLEL_MIN_ELEMS)
    for (size_t c = 0; c < NORM_CHUNKS; c++) {
        size_t lo = n * c / NORM_CHUNKS, hi = n * (c + 1) / NORM_CHUNKS;
        part[c] = sum_squares(m->grads + lo, hi - lo);
    }
    double s = 0;
    for (size_t c = 0; c < NORM_CHUNKS; c++) s += part[c];
    return sqrt(s);
}

int model_find_nonfinite(const Model *m, const real *buf, char *out, size_t n) {
    int hs = m->shape.C / m->shape.NH;
    for (int i = 0; i < m->n_views; i++) {
        const ParamView *v = &m->views[i];
        for (size_t j = 0; j < v->numel; j++) {
            if (isfinite(buf[v->offset + j])) continue;
            int layer = -1, head = -1;
            sscanf(v->name, "blocks.%d.", &layer);
            if (strstr(v->name, ".attn.")) {
                /* q, k, v: head h owns rows (and bias entries) h*hs..; o: those input columns */
                size_t row = v->ndim == 2 ? j / v->shape[1] : j, col = v->ndim == 2 ? j % v->shape[1] : 0;
                int is_o = strstr(v->name, ".attn.o.") != NULL;
                head = is_o ? (v->ndim == 2 ? (int)(col / hs) : -1) : (int)(row / hs);
                if (strstr(v->name, ".attn.smear")) head = (int)j; /* one gate per head */
            }
            int k = snprintf(out, n, "%s[%zu] = %g", v->name, j, (double)buf[v->offset + j]);
            if (layer >= 0 && k >= 0 && (size_t)k < n)
                snprintf(out + k, n - k, head >= 0 ? " (layer %d, head %d)" : " (layer %d)", layer, head);
            return 1;
        }
    }
    return 0;
}
