/* Per-op forward and backward passes (llm.c style). Backward functions add
 * into their d* outputs unless the comment says otherwise. Shapes: N = B*T
 * rows, C channels, OC output channels. */
#ifndef QK_LAYERS_H
#define QK_LAYERS_H

#include <stddef.h>

#include "common.h"
#include "gemm.h"

/* out[B,T,C] = wte[inp[b,t]] + wpe[t] */
void encoder_forward(real *out, const int *inp, const real *wte, const real *wpe,
                     int B, int T, int C);
void encoder_backward(real *dwte, real *dwpe, const real *dout, const int *inp,
                      int B, int T, int C);

/* LayerNorm over the last dimension, eps 1e-5; mean and rstd saved [N]. */
void layernorm_forward(real *out, real *mean, real *rstd, const real *inp,
                       const real *weight, const real *bias, size_t N, int C);
void layernorm_backward(real *dinp, real *dweight, real *dbias, const real *dout,
                        const real *inp, const real *weight, const real *mean,
                        const real *rstd, size_t N, int C, ScratchBuf *partials);

/* out[N,OC] = residual[N,OC] + bias[OC] + inp[N,C] weight[OC,C]^T (bias or
 * residual may be NULL; residual may be out, to add onto what it holds).
 * The products pack into s. */
void matmul_forward(real *out, const real *inp, const real *weight, const real *bias,
                    const real *residual, size_t N, int C, int OC, GemmScratch *s);
/* dinp = (accumulate_dinp ? dinp : 0) + dout weight; dweight += dout^T inp;
 * dbias += column sums of dout (dbias may be NULL). */
void matmul_backward(real *dinp, real *dweight, real *dbias, const real *dout,
                     const real *inp, const real *weight, size_t N, int C, int OC,
                     int accumulate_dinp, GemmScratch *s);

/* GELU, tanh approximation (PyTorch approximate="tanh"): out = gelu(inp) and
 * deriv = gelu'(inp), which is what the backward needs of inp (deriv may be
 * inp itself). */
void gelu_forward(real *out, real *deriv, const real *inp, size_t n);
/* dinp = dout * deriv, deriv from gelu_forward (overwrites dinp). */
void gelu_backward(real *dinp, const real *deriv, const real *dout, size_t n);

/* probs[N,V] = softmax(logits); losses[N] = -log probs[target], and 0 where
 * the target is negative (TARGET_NONE: not scored). */
void crossentropy_forward(real *probs, real *losses, const real *logits,
                          const int *targets, size_t N, int V);
/* dlogits = (probs - onehot(target)) * scale (overwrites; scale = 1/N for a
 * mean loss over N scored targets); exactly 0 on rows whose target is not
 * scored. */
void crossentropy_backward(real *dlogits, const real *probs, const int *targets,
                           size_t N, int V, real scale);
/* Scored rows (target >= 0) whose largest logit, the first of equals, is at
 * the target. */
size_t crossentropy_correct(const real *logits, const int *targets, size_t N, int V);

/* Row selection (rows ascending, n of them): rows_gather sets out[r] =
 * inp[rows[r]] for r < n (out may be inp: the rows move down in place);
 * rows_scatter is its inverse in place, x[rows[r]] = x[r], and zeroes the
 * other rows of x[N, C]. */
void rows_gather(real *out, const real *inp, const int *rows, size_t n, int C);
/* The first r < n with rows[r] >= pos (n when there is none). */
size_t rows_find(const int *rows, size_t n, size_t pos);
void rows_scatter(real *x, const int *rows, size_t n, size_t N, int C);

#endif
