/* libFuzzer harness: the safetensors checkpoint reader (src/formats/checkpoint.c).
 * The input is written to a file and read with checkpoint_read; a checkpoint
 * that loads is put into a model (model_create + checkpoint_to_model), run
 * forward on 2 tokens, saved again and read back.
 *
 * Checks, beyond "no crash, no sanitizer report, no exit":
 *  - every refusal is one non-empty line without control characters (set
 *    QK_FUZZ_LAX_MESSAGES=1 to skip this check and fuzz on past it);
 *  - checkpoint_verify (tensors streamed, not kept) gives the same outcome
 *    and message as checkpoint_read, and checkpoint_verify_header refuses
 *    only what checkpoint_read refuses, with the same message;
 *  - a loaded checkpoint with checksums verified every tensor, and the same
 *    file with one bit flipped after the 8-byte length (a bit chosen from
 *    the input) is refused;
 *  - a loaded checkpoint is consistent: V >= 1, sorted vocabulary, n_params
 *    as model_views says, finite tensors, eval_step <= step;
 *  - checkpoint_save of the loaded model reads back as the same checkpoint
 *    (weights, moments, vocabulary, config and state; the losses to the 9
 *    significant digits they are written with), verified.
 * Models whose buffers (at batch 1) exceed MODEL_BYTES_MAX are loaded but not
 * created: the commands refuse those through train_check_memory, and
 * libFuzzer's malloc limit would call them a crash. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
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
    FUZZ_ASSERT(ck->n_verified == 0 || ck->n_verified == n_views * (ck->has_optim ? 3 : 1),
                "%d tensors verified of %d", ck->n_verified, n_views * (ck->has_optim ? 3 : 1));
}

/* The verifying entry points agree with checkpoint_read on the file at path
 * (rc and err: checkpoint_read's outcome). */
static void check_verify_agrees(const char *path, int rc, const Error *err, int n_verified) {
    Error verr = {{0}}, herr = {{0}};
    int nv = -1, hv = -1;
    int vrc = checkpoint_verify(path, &nv, &verr);
    FUZZ_ASSERT(vrc == rc, "checkpoint_verify %d, checkpoint_read %d (%s / %s)", vrc, rc, verr.msg,
                err->msg);
    FUZZ_ASSERT(rc ? !strcmp(verr.msg, err->msg) : nv == n_verified,
                "checkpoint_verify: '%s' (%d verified), checkpoint_read: '%s' (%d)", verr.msg,
                nv, err->msg, n_verified);
    if (checkpoint_verify_header(path, &hv, &herr))
        FUZZ_ASSERT(rc && !strcmp(herr.msg, err->msg),
                    "checkpoint_verify_header refused: '%s'; checkpoint_read: %d '%s'", herr.msg,
                    rc, rc ? err->msg : "");
    else if (!rc)
        FUZZ_ASSERT(hv == (n_verified > 0), "header verified %d, tensors verified %d", hv,
                    n_verified);
}

/* A checkpoint with checksums and one bit flipped past the length: a CRC-32
 * detects every single-bit error, so it must not load. */
static void check_flip_refused(const char *path, const uint8_t *data, size_t size) {
    if (size <= 8) return;
    uint64_t h = 1469598103934665603ull; /* FNV-1a of the input picks the bit */
    for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ull;
    size_t bit = (size_t)(h % ((uint64_t)(size - 8) * 8));
    uint8_t *copy = malloc(size);
    FUZZ_ASSERT(copy, "out of memory");
    memcpy(copy, data, size);
    copy[8 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
    if (fuzz_write_file(path, copy, size) == 0) {
        Checkpoint ck;
        Error err;
        int rc = checkpoint_read(&ck, path, &err);
        unlink(path);
        if (rc == 0) checkpoint_free(&ck);
        FUZZ_ASSERT(rc != 0, "a bit flipped at byte %zu of a checksummed file: it loads",
                    8 + bit / 8);
        check_refusal(&err);
    }
    free(copy);
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
    FUZZ_ASSERT(back.n_verified > 0, "a saved checkpoint has no checksums");
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
    check_verify_agrees(path, rc, &err, rc ? 0 : ck.n_verified);
    unlink(path);
    if (rc) {
        check_refusal(&err);
        return 0;
    }
    check_loaded(&ck);
    if (ck.n_verified) check_flip_refused(path, data, size);
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
