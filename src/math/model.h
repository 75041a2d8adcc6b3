/* The GPT model: parameter layout with named views, forward and backward.
 * Ops live in layers.c (embedding, matmul, layernorm, gelu, residual,
 * cross-entropy) and attention.c; this file wires them into the network. */
#ifndef QK_MODEL_H
#define QK_MODEL_H

#include <stddef.h>

#include "common.h"
#include "data.h"
#include "gemm.h"

/* Which side's vectors are smeared with the previous position's (see
 * smear_forward): none, the keys, or the queries. */
typedef enum { SMEAR_NONE = 0, SMEAR_KEY = 1, SMEAR_QUERY = 2 } SmearMode;

/* How model_init_params draws the weights: GPT-2's scheme, or PyTorch's
 * module defaults (see there). */
typedef enum { INIT_GPT2 = 0, INIT_TORCH = 1 } InitScheme;

typedef struct {
    int V;              /* vocabulary size */
    int L;              /* layers */
    int NH;             /* heads */
    int C;              /* channels; head size is C / NH */
    int maxT;           /* block_size */
    int bias;           /* biases on q,k,v,o,fc,proj */
    int tie_embeddings; /* lm_head is wte */
    int qk_tied;        /* one matrix (and bias) serves as W_Q and W_K */
    SmearMode smear;    /* smeared keys or queries, one gate per head */
} ModelShape;

/* Pointers into one contiguous buffer (parameters, gradients or Adam moments
 * share this layout). Per-layer tensors are stacked over layers. Absent
 * tensors (biases when bias = 0, k when qk_tied, lm_head when tied) are NULL;
 * in a parameter set, wk/bk then alias wq/bq and lm_head aliases wte. */
typedef struct {
    real *wte;     /* [V, C] */
    real *wpe;     /* [maxT, C] */
    real *ln1w;    /* [L, C] */
    real *ln1b;    /* [L, C] */
    real *wq;      /* [L, C, C]  nn.Linear layout [out, in] */
    real *bq;      /* [L, C] */
    real *wk;      /* [L, C, C] */
    real *bk;      /* [L, C] */
    real *wv;      /* [L, C, C] */
    real *bv;      /* [L, C] */
    real *wo;      /* [L, C, C] */
    real *bo;      /* [L, C] */
    real *smear;   /* [L, NH] gate logits of the smeared side (smear != none) */
    real *ln2w;    /* [L, C] */
    real *ln2b;    /* [L, C] */
    real *fcw;     /* [L, 4C, C] */
    real *fcb;     /* [L, 4C] */
    real *projw;   /* [L, C, 4C] */
    real *projb;   /* [L, C] */
    real *lnfw;    /* [C] */
    real *lnfb;    /* [C] */
    real *lm_head; /* [V, C] */
} ParamTensors;

/* One named view per stored tensor, with the checkpoint name
 * (e.g. "blocks.0.attn.q.weight"), in checkpoint order. */
typedef struct {
    char name[64];
    size_t offset;   /* into the parameter buffer, in elements */
    size_t numel;
    int ndim;        /* 1 or 2 */
    int shape[2];
    int decay;       /* weight decay applies (matrices, embeddings included) */
} ParamView;

/* Activations saved by the forward pass for backward, sized for maxB x maxT. */
typedef struct {
    real *encoded;   /* [B, T, C] wte + wpe */
    real *ln1;       /* [L, B, T, C] */
    real *ln1_mean;  /* [L, B, T] */
    real *ln1_rstd;  /* [L, B, T] */
    real *q;         /* [L, B, T, C] as the scores read them (after any smear) */
    real *k;         /* [L, B, T, C] */
    real *v;         /* [L, B, T, C] */
    real *att;       /* [L, B, NH, T, T] softmax weights, 0 above the diagonal */
    real *atty;      /* [L, B, T, C] attention output before W_O */
    real *res2;      /* [L, B, T, C] residual after attention */
    real *ln2;       /* [L, B, T, C] */
    real *ln2_mean;  /* [L, B, T] */
    real *ln2_rstd;  /* [L, B, T] */
    real *fch;       /* [L, B, T, 4C] fc output, then GELU's derivative there
                      * (the forward overwrites it: only the backward reads it) */
    real *fch_gelu;  /* [L, B, T, 4C] */
    real *res3;      /* [L, B, T, C] residual after the MLP (block output) */
    real *lnf;       /* [B, T, C] */
    real *lnf_mean;  /* [B, T] */
    real *lnf_rstd;  /* [B, T] */
    real *logits;    /* [B, T, V] */
    real *probs;     /* [B, T, V] softmax of logits */
    real *losses;    /* [B, T] per-position cross-entropy */
    real *smear_raw; /* [L, B, T, C] q or k before the smear (smear != none) */
} Activations;

/* Backward scratch, reused layer by layer (only one layer's worth). */
typedef struct {
    real *dres;      /* [B, T, C] gradient flowing down the residual stream */
    real *dln;       /* [B, T, C] */
    real *dq, *dk, *dv; /* [B, T, C] */
    real *datty;     /* [B, T, C] */
    real *dfch;      /* [B, T, 4C] */
    real *dfch_gelu; /* [B, T, 4C] */
    real *dlogits;   /* [B, T, V] */
    /* qk_tied: the query-path and key-path gradients of the shared W_Q/b_Q,
     * computed apart; model_backward writes their sum to the gradient buffer
     * and keeps both parts for the Q/K logs. */
    real *dwq_path;  /* [L, C, C] */
    real *dbq_path;  /* [L, C] */
    real *dwk_path;  /* [L, C, C] */
    real *dbk_path;  /* [L, C] */
} BackwardScratch;

/* The kernels' own scratch memory; each buffer grows on first use to what
 * the shapes need and keeps that size. */
typedef struct {
    GemmScratch gemm;        /* the products' packed panels */
    ScratchBuf attention;    /* per thread: one head's panels and score gradients */
    ScratchBuf ln_partials;  /* LayerNorm backward's per-block parameter sums */
} KernelScratch;

/* Data-parallel training: backward hands over each span of gradient memory
 * as soon as it is final (nothing in this backward writes it again), so the
 * span's allreduce can run while lower layers are still being computed. */
typedef void (*GradReadyHook)(void *ctx, real *span, size_t n);

/* The hook points of a forward (TransformerLens's hook_pattern, hook_q,
 * hook_k and hook_z): what one forward keeps for its caller and what it
 * changes, passed with the call (never set on the model), so an analysis
 * states what it reads and edits and the training step pays for nothing.
 * A NULL ForwardHooks is the plain forward. */
struct Model;
typedef struct ForwardHooks {
    /* Keep every query row of every layer's attention weights, for
     * model_pattern; otherwise the last block of a forward that leaves
     * targets unscored computes its scored rows' weights only. */
    int keep_pattern;
    /* [L * NH] or NULL: the flagged heads read their queries through W_K and
     * their keys through W_Q (before any smear): the forward of the model
     * with those heads' W_Q and W_K exchanged, to the bit. */
    const unsigned char *swap_qk;
    /* Layer l's queries and keys [B, T, C] (smeared ones included), after
     * they are computed and before the scores read them. */
    void (*edit_qk)(void *ctx, int l, real *q, real *k, int B, int T);
    /* Layer l's head outputs z [B, T, C] (head h in columns h * C / NH ..)
     * before W_O, over every row (the forward keeps the pattern then). */
    void (*edit_z)(void *ctx, int l, real *z, int B, int T);
    void *ctx;
} ForwardHooks;

/* Op categories of the per-op time breakdown. */
enum { OP_MATMUL, OP_ATTENTION, OP_LAYERNORM, OP_GELU, OP_CROSSENTROPY, OP_OTHER, N_OPS };
extern const char *const model_op_names[N_OPS];

typedef struct Model {
    ModelShape shape;
    ParamView *views;      /* [n_views] */
    int n_views;
    size_t n_params;       /* elements in each of params, grads, m, v */
    real *params;          /* one allocation each */
    real *grads;
    real *adam_m;
    real *adam_v;
    ParamTensors p, g, m, v; /* named views into the four buffers */
    int maxB;
    Activations acts;
    real *acts_mem;        /* [n_acts] */
    size_t n_acts;
    BackwardScratch scr;
    real *scr_mem;         /* [n_scr] */
    size_t n_scr;
    KernelScratch kernel;
    int B, T;              /* shape of the last forward */
    const int *inputs;     /* [B, T] tokens of the last forward */
    const int *targets;    /* [B, T] its targets (NULL = none; TARGET_NONE = not scored) */
    /* A forward with targets that leaves positions unscored runs the last
     * block past its attention, the final LayerNorm and the logits on the
     * scored positions alone: nothing reads the others' outputs, and their
     * gradients are zero. Those rows of acts (res2 .. res3 of the last block,
     * lnf, logits, probs) and of the backward's scratch then hold the scored
     * positions in order, rows[r] being row r's position (b T + t) and
     * row_targets[r] its target; otherwise n_rows = B T and rows is unused. */
    int *rows;             /* [maxB * maxT] */
    int *row_targets;      /* [maxB * maxT] */
    size_t n_rows;
    /* The last block's attention then runs at those rows too, and its layer
     * of acts.att holds them as [n_rows, NH, T] (att_at_rows set by the
     * forward), unless the call's hooks keep the pattern. */
    int att_at_rows;
    int pattern_layers;    /* layers 0 .. pattern_layers-1 hold every row's weights */
    real loss;             /* mean loss over the scored targets of the last forward */
    double loss_sum;       /* their sum */
    size_t n_scored;       /* their count */
    /* What backward divides the summed loss by: the scored targets of the
     * global batch (all ranks). 0 = n_scored * grad_shards; the forward resets
     * it, a data-parallel task run sets it between forward and backward. */
    size_t grad_count;
    double op_seconds[N_OPS]; /* wall time spent in each op category so far */
    /* The loss is the mean over grad_shards equal batches, one per
     * data-parallel rank (1 alone): backward divides by grad_shards B T, so
     * the sum of the ranks' gradients is the gradient of the global batch. */
    int grad_shards;
    GradReadyHook grad_ready; /* NULL alone */
    void *grad_ready_ctx;
} Model;

/* The named views of a shape, in checkpoint order, without allocating a model
 * (malloc'd; n_params receives the buffer length when not NULL). */
ParamView *model_views(const ModelShape *s, int *n_views, size_t *n_params);

/* Bytes needed for params + grads + Adam moments + activations + scratch. */
size_t model_memory_bytes(const ModelShape *s, int maxB);
/* Refuses (with the byte counts) a model that would not fit in memory. */
int model_check_memory(const ModelShape *s, int B, Error *err);

/* Allocates everything (parameters zero, Adam moments zero). */
void model_create(Model *m, const ModelShape *s, int maxB);
/* Between steps the activations are dead (a step reads nothing in them it
 * has not written): work done meanwhile, such as drawing the heatmaps, may
 * keep its buffers there until the next forward, instead of adding to the
 * process's peak memory and faulting in pages of its own. */
Span model_idle_activations(Model *m);
/* Frees the activations and the backward's scratch, when no step or forward
 * is to follow (model_free still frees the rest). */
void model_free_activations(Model *m);
/* The backward's scratch, dead between steps as above and untouched by the
 * forwards: an analysis that runs only forwards may keep its own buffers in
 * these *n reals until the next backward, instead of adding to the peak. */
real *model_spare_scratch(Model *m, size_t *n);
void model_free(Model *m);

/* INIT_GPT2: matrices N(0, 0.02), wo and proj N(0, 0.02/sqrt(2L)), biases 0.
 * INIT_TORCH (nn.Embedding, nn.Linear): wte and wpe N(0, 1); linear weights
 * and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = the weight's
 * columns. Both: LayerNorm weight 1, bias 0; smear gates 0. symmetric_qk
 * then copies W_Q (and b_Q) into W_K (untied only). */
void model_init_params(Model *m, Rng *r, InitScheme scheme, int symmetric_qk);

/* Forward over B sequences of T tokens (T <= maxT, B T <= maxB maxT: shorter
 * rows may come more at a time than maxB). With targets
 * it returns the mean cross-entropy over the scored targets (those not
 * TARGET_NONE) and keeps what backward needs; without, returns 0 and only
 * logits/probs are meaningful. Read a position's logits with
 * model_logits_at: with targets, only the scored positions have them. */
real model_forward(Model *m, const int *inputs, const int *targets, int B, int T);

/* The same forward with hook points (NULL: none); read what it kept with
 * the accessors below. */
real model_forward_hooked(Model *m, const int *inputs, const int *targets, int B, int T,
                          const ForwardHooks *hooks);

/* What the last forward left, per layer l, laid out for its B x T; each
 * CHECKs that the forward computed it. The attention weights [B, NH, T, T]
 * (0 above the diagonal): every layer of a forward without unscored
 * targets or with hooks keeping the pattern, and the layers below the last
 * of any full forward. */
const real *model_pattern(const Model *m, int l);
/* The queries and keys [B, T, C] as the scores read them (after any smear
 * and edit), and the heads' input (LayerNorm 1's output) [B, T, C]. */
const real *model_q(const Model *m, int l);
const real *model_k(const Model *m, int l);
const real *model_head_input(const Model *m, int l);
/* The heads' outputs z [B, T, C] before W_O (after any edit): the layers
 * model_pattern gives, the last only in a forward that scores every
 * position (it keeps the scored rows' z alone). */
const real *model_z(const Model *m, int l);

/* The logits [V] of position pos (b T + t) in the last forward, or NULL for
 * a position it did not compute (unscored, in a forward with targets). */
const real *model_logits_at(const Model *m, size_t pos);

/* The forward without targets only as far as every layer's queries and keys
 * (model_q, model_k; the last block's attention and everything after it
 * are not computed): what an analysis of the scores needs. */
void model_forward_qk(Model *m, const int *inputs, int B, int T);

/* The last forward again from block `layer` on, on the same inputs and
 * targets, reading block layer's input from the activations it left: after
 * a change to the weights of blocks >= layer, the forward of the changed
 * model (blocks below keep their activations). */
real model_forward_from(Model *m, int layer, const ForwardHooks *hooks);

/* Gradients of the last forward's mean loss (over grad_count targets),
 * written (not accumulated) into m->grads; each finished span goes to
 * grad_ready when set. */
void model_backward(Model *m);

/* Layer l's gradient of W_Q [C, C] through the queries and of W_K through the
 * keys, after model_backward. Untied: the W_Q and W_K gradients; tied: the two
 * parts whose sum is the shared gradient. */
const real *model_grad_query_path(const Model *m, int l);
const real *model_grad_key_path(const Model *m, int l);

/* Called after each chunk's forward with the chunk's size (activations of
 * that chunk are in m->acts); it may run further forwards of the chunk. */
typedef void (*ChunkHook)(void *ctx, Model *m, int nb);

/* Scored targets of the last forward that its logits get right (the argmax,
 * the first of equals). */
size_t model_count_correct(const Model *m);

/* Sums of an evaluation, added over chunks and ranks. The loss is
 * loss / weight: for a corpus the mean of the windows' mean losses (loss
 * sums window means, weight counts windows), for a task the mean over all
 * scored targets (loss sums them, weight counts them). Accuracy is
 * correct / scored. */
typedef struct {
    double loss, weight, correct, scored;
} EvalSums;

/* Adds the last forward (with targets) to s, weighted by rows (a corpus) or
 * by scored targets (per_target: a task). */
void model_eval_add(EvalSums *s, const Model *m, int per_target);

/* Mean loss over `count` fixed windows of one split of c (val = 1:
 * validation; see batch_eval_window), evaluated B windows at a time;
 * inputs/targets are [B, maxT] buffers; each chunk's forward gets hooks
 * (may be NULL), and then `each` (may be NULL) sees the chunk.
 * acc (may be NULL) receives the accuracy on the scored targets. */
double model_eval_windows(Model *m, const Corpus *c, int val, int count, int B, int *inputs,
                          int *targets, const ForwardHooks *hooks, ChunkHook each, void *ctx,
                          double *acc);

/* The sums of windows first .. first+n-1 of those `count`: a data-parallel
 * rank's share of model_eval_windows. */
EvalSums model_eval_range(Model *m, const Corpus *c, int val, int first, int n, int count, int B,
                          int *inputs, int *targets, const ForwardHooks *hooks, ChunkHook each,
                          void *ctx);

/* Describes the first non-finite element of buf (a parameter-layout buffer:
 * params or grads) into out, e.g. "blocks.1.attn.q.weight[70] = nan (layer 1,
 * head 2)"; returns 0 when all are finite. */
int model_find_nonfinite(const Model *m, const real *buf, char *out, size_t n);

/* Global L2 norm of the gradient buffer (fixed summation order). */
double model_grad_norm(const Model *m);

#endif
