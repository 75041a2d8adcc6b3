/* qkscope info CKPT: what a checkpoint holds. */
#include <math.h>
#include <string.h>

#include "cli.h"

int main(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: qkscope info CKPT\n"
               "  Prints a checkpoint's config summary, parameter count, step, vocabulary\n"
               "  size, the last eval losses it stores and whether its checksums were\n"
               "  verified.\n");
        return 0;
    }
    if (argc == 2 && argv[1][0] == '-') {
        fprintf(stderr, "qkscope: info: unexpected argument '%s' (see qkscope info --help)\n",
                argv[1]);
        return EXIT_BADINPUT;
    }
    if (argc != 2) {
        fprintf(stderr, "qkscope: info: %d arguments given, expected 1 (qkscope info CKPT; see "
                        "qkscope info --help)\n", argc - 1);
        return EXIT_BADINPUT;
    }
    Checkpoint ck;
    Error err;
    if (checkpoint_read(&ck, argv[1], &err)) return cli_fail(&err);
    const Config *c = &ck.cfg;
    printf("checkpoint  %s\n", argv[1]);
    printf("format      %s\n", CHECKPOINT_FORMAT);
    if (c->task.kind != TASK_NONE)
        printf("run         %s (task %s, seed %llu)\n", c->name, task_name(c->task.kind),
               (unsigned long long)c->seed);
    else
        printf("run         %s (corpus %s, seed %llu)\n", c->name, c->data_path,
               (unsigned long long)c->seed);
    printf("model       n_layer %d, n_head %d, n_embd %d, block_size %d, bias %s, "
           "tie_embeddings %s, qk %s, smear %s, init %s\n",
           c->n_layer, c->n_head, c->n_embd, c->block_size, c->bias ? "true" : "false",
           c->tie_embeddings ? "true" : "false", config_qk_name(c->qk), config_smear_name(c->smear),
           config_init_name(c->init));
    printf("parameters  %zu\n", ck.n_params);
    printf("vocabulary  %d characters\n", ck.V);
    printf("step        %d of %d%s\n", ck.state.step, c->steps,
           ck.has_optim ? " (with AdamW state: resumable)" : "");
    if (ck.state.eval_step >= 0 && !isnan(ck.state.val_loss))
        printf("last eval   step %d: train loss %.4f, val loss %.4f\n", ck.state.eval_step,
               ck.state.train_loss, ck.state.val_loss);
    else
        printf("last eval   none stored\n");
    /* the read refuses a mismatch, so what is left to say is whether there
     * were checksums to match */
    if (ck.n_verified)
        printf("checksums   verified (CRC-32 of the header and of %d tensors)\n", ck.n_verified);
    else
        printf("checksums   unverified (the file has none: written before qkscope recorded "
               "them, or by another tool)\n");
    checkpoint_free(&ck);
    return 0;
}
