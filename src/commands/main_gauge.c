/* qkscope gauge CKPT OUT [--seed S]: applies a random well-conditioned A per
 * head, W_Q^h -> A W_Q^h and W_K^h -> A^-T W_K^h (biases likewise). Every
 * attention score q.k is unchanged, so the model computes the same function,
 * while the norms of W_Q and W_K and of their gradients change: a check of
 * which logged quantities mean something (docs/qk-analysis.md, "What the norms mean"). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "qk.h"

static void usage(FILE *f) {
    fprintf(f, "usage: qkscope gauge CKPT OUT [--seed S]\n"
               "  Writes OUT: CKPT with W_Q^h -> A W_Q^h, W_K^h -> A^-T W_K^h for a random\n"
               "  well-conditioned A (d_head x d_head) per head; the same function, other norms.\n"
               "  A = U D with U random orthogonal and D diagonal in [1/2, 2]; with qk = tied\n"
               "  (one matrix for both) A = U, the only choice that keeps W_K = W_Q.\n"
               "  --seed S   choice of the A's (default 1)\n");
}

int main(int argc, char **argv) {
    const char *pos[2];
    long seed = 1;
    int npos, status;
    Error err;
    const CliOption opts[] = {{"--seed", OPT_LONG, &seed, 0, 0x7fffffffL}, {NULL, 0, NULL, 0, 0}};
    if (cli_args(argc, argv, "gauge", opts, pos, 2, 2, &npos, usage, &status)) return status;
    const char *in = pos[0], *out = pos[1];
    Checkpoint ck;
    Model m;
    if (cli_load_model(in, &ck, &m, 1, &err)) return cli_fail(&err);
    Rng r;
    rng_seed(&r, (uint64_t)seed);
    qk_gauge_apply(&m, &r);
    int rc = 0;
    if (checkpoint_save(out, &m, &ck.cfg, ck.vocab, ck.V, &ck.state, 0, &err))
        rc = cli_fail(&err);
    else
        printf("gauge: wrote %s (%s A per head)\n", out, ck.shape.qk_tied ? "orthogonal" : "random");
    model_free(&m);
    checkpoint_free(&ck);
    return rc;
}
