/* libFuzzer harness: the safetensors checkpoint reader (src/formats/checkpoint.c).
 * The input is written to a file and read with checkpoint_read; a checkpoint
 * that loads is put into a model (model_create + checkpoint_to_model), run
 * forward on 2 tokens, saved again and read back.
 *
 * Checks, beyond "no crash, no sanitizer report, no exit":
 *  - every refusal is one non-empty line without control characters (set
 *    QK_FUZZ_LAX_MESSAGES=1 to skip this check and fuzz on past it);
 *  - a loaded checkpoint is consistent: V >= 1, sorted vocabulary, n_params
 *    as model_views says, finite tensors, eval_step <= step;
 *  - checkpoint_save of the loaded model reads back as the same checkpoint
 *    (weights, moments, vocabulary, config and state; the losses to the 9
 *    significant digits they are written with).
 * Models whose buffers (at batch 1) exceed MODEL_BYTES_MAX are loaded but not
 * created: the commands refuse those through train_check_memory, and
 * libFuzzer's malloc limit would call them a crash. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "fuzz_util.h"
#include "model.h"

#define MODEL_BYTES_MAX ((size_t)64 << 20)

static int lax_messages = -1;

static void check_refusal(const Error *err) {
    if (lax_messages < 0) {
        const char *e = getenv("QK_FUZZ_LAX_MESSAGES");
        lax_messages = e && *e && strcmp(e, "0");
    }
    if (!lax_messages) fuzz_check_message(err);
}

static int loss_same(double a, double b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return fabs(a - b) <= 1e-8 * fabs(a) + 1e-300;
}

static void check_loaded(const Checkpoint *ck) {
    FUZZ_ASSERT(ck->V >= 1 && ck->V <= VOCAB_MAX, "V = %d", ck->V);
    for (int i = 1; i < ck->V; i++)
        FUZZ_ASSERT(ck->vocab[i - 1] < ck->vocab[i], "vocabulary not sorted at %d", i);
    FUZZ_ASSERT(ck->shape.V == ck->V, "shape V %d, vocabulary %d", ck->shape.V, ck->V);
    size_t n_params = 0;
    int n_views = 0;
    free(model_views(&ck->shape, &n_views, &n_params));
    FUZZ_ASSERT(n_params == ck->n_params, "n_params %zu, model_views says %zu", ck->n_params,
                n_params);
    FUZZ_ASSERT(!ck->has_optim == !ck->adam_m && !ck->has_optim == !ck->adam_v,
                "has_optim %d with moments %p %p", ck->has_optim, (void *)ck->adam_m,
                (void *)ck->adam_v);
    for (size_t i = 0; i < ck->n_params; i++) {
        FUZZ_ASSERT(isfinite(ck->params[i]), "param %zu not finite", i);
        if (ck->has_optim)
            FUZZ_ASSERT(isfinite(ck->adam_m[i]) && isfinite(ck->adam_v[i]), "moment %zu", i);
    }
    FUZZ_ASSERT(ck->state.step >= 0 && ck->state.eval_step >= -1 &&
                    ck->state.eval_step <= ck->state.step,
                "step %d, eval_step %d", ck->state.step, ck->state.eval_step);
}

/* Save the model built from ck and read it back. */
static void check_resave(const Checkpoint *ck, const Model *m) {
    char path[256];
    fuzz_tmp_path(path, sizeof path, "resave", ".safetensors");
    Error err;
    if (checkpoint_save(path, m, &ck->cfg, ck->vocab, ck->V, &ck->state, ck->has_optim, &err))
        return; /* a full temp folder is not a finding */
    Checkpoint back;
    int rc = checkpoint_read(&back, path, &err);
    unlink(path);
    FUZZ_ASSERT(rc == 0, "a saved checkpoint does not read back: %s", err.msg);
    FUZZ_ASSERT(back.V == ck->V && !memcmp(back.vocab, ck->vocab, (size_t)ck->V * 4),
                "vocabulary changed");
    FUZZ_ASSERT(!memcmp(&back.cfg, &ck->cfg, sizeof back.cfg), "config changed");
    FUZZ_ASSERT(!memcmp(&back.shape, &ck->shape, sizeof back.shape), "shape changed");
    FUZZ_ASSERT(back.n_params == ck->n_params && back.has_optim == ck->has_optim,
                "n_params or has_optim changed");
    FUZZ_ASSERT(!memcmp(back.params, ck->params, ck->n_params * sizeof(float)), "weights changed");
    if (ck->has_optim)
        FUZZ_ASSERT(!memcmp(back.adam_m, ck->adam_m, ck->n_params * sizeof(float)) &&
                        !memcmp(back.adam_v, ck->adam_v, ck->n_params * sizeof(float)),
                    "moments changed");
    FUZZ_ASSERT(back.state.step == ck->state.step && back.state.eval_step == ck->state.eval_step &&
                    !memcmp(&back.state.batch_rng, &ck->state.batch_rng, sizeof(Rng)),
                "state changed");
    FUZZ_ASSERT(loss_same(back.state.train_loss, ck->state.train_loss) &&
                    loss_same(back.state.val_loss, ck->state.val_loss),
                "losses changed: %.17g %.17g -> %.17g %.17g", ck->state.train_loss,
                ck->state.val_loss, back.state.train_loss, back.state.val_loss);
    checkpoint_free(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[256];
    fuzz_tmp_path(path, sizeof path, "ckpt", ".safetensors");
    if (fuzz_write_file(path, data, size)) return 0;
    Checkpoint ck;
    Error err;
    int rc = checkpoint_read(&ck, path, &err);
    unlink(path);
    if (rc) {
        check_refusal(&err);
        return 0;
    }
    check_loaded(&ck);
    if (model_memory_bytes(&ck.shape, 1) <= MODEL_BYTES_MAX) {
        Model m;
        model_create(&m, &ck.shape, 1);
        checkpoint_to_model(&ck, &m, 1);
        int last = ck.V - 1;
        int inputs[2] = {0, last}, targets[2] = {last, 0};
        (void)model_forward(&m, inputs, targets, 1, 2);
        check_resave(&ck, &m);
        model_free(&m);
    }
    checkpoint_free(&ck);
    return 0;
}
