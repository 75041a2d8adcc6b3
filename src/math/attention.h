/* Causal multi-head self-attention core: softmax(q k^T / sqrt(hs), causal) v.
 * q, k, v, out are [B, T, C] with head h in columns h*hs .. (h+1)*hs-1. */
#ifndef QK_ATTENTION_H
#define QK_ATTENTION_H

#include "common.h"

/* att[B,NH,T,T] receives the softmax weights (0 above the diagonal). Each
 * thread packs one head's panels into its share of scratch. */
void attention_forward(real *out, real *att, const real *q, const real *k, const real *v,
                       int B, int T, int C, int NH, ScratchBuf *scratch);

/* dq, dk, dv are overwritten. */
void attention_backward(real *dq, real *dk, real *dv, const real *dout, const real *q,
                        const real *k, const real *v, const real *att, int B, int T, int C,
                        int NH, ScratchBuf *scratch);

/* The same at the query rows rows[0..R) only (positions b T + t, ascending),
 * for a batch whose other rows' outputs nothing reads: out is [R, C] and
 * att [R, NH, T], one row per listed position; keys and values come from
 * every position. Each listed row's out and att, and (with dout 0 at the
 * other rows) dq, dk and dv, are those of the functions above to the bit:
 * the terms left out are exact zeros there. The backward reads dout as
 * [R, C] and writes dq 0 at the other rows. */
void attention_forward_rows(real *out, real *att, const real *q, const real *k, const real *v,
                            const int *rows, int R, int B, int T, int C, int NH,
                            ScratchBuf *scratch);
void attention_backward_rows(real *dq, real *dk, real *dv, const real *dout, const real *q,
                             const real *k, const real *v, const real *att, const int *rows,
                             int R, int B, int T, int C, int NH, ScratchBuf *scratch);

/* Smeared queries or keys (Olsson et al. 2022): each position's vector mixed
 * with the one before it, per head h with a learned gate logit g[h]:
 *   out[t] = s_h inp[t] + (1 - s_h) inp[t-1],  s_h = sigmoid(g[h]),
 * with inp[-1] = 0 (nothing comes before position 0). inp, out are
 * [B, T, C]. */
void smear_forward(real *out, const real *inp, const real *g, int B, int T, int C, int NH);

/* dinp = d out / d inp applied to dout (overwrites dinp, which may be dout
 * itself); dg[h] += the gate logits' gradient. */
void smear_backward(real *dinp, real *dg, const real *dout, const real *inp, const real *g,
                    int B, int T, int C, int NH);

#endif
