/* Checkpoints as standard safetensors files: 8-byte little-endian header
 * length, a JSON header (cJSON), raw little-endian F32 row-major tensors with
 * contiguous offsets in header order. Tensor names follow PyTorch nn.Linear
 * conventions (see model.c's views); training checkpoints also hold the AdamW
 * moments as optim.m.<name> / optim.v.<name>. String metadata under
 * __metadata__ carries the resolved config, the vocabulary and the training
 * state needed for exact resume, and a CRC-32 of each tensor and of the header
 * (docs/checkpoints.md documents each key). */
#ifndef QK_CHECKPOINT_H
#define QK_CHECKPOINT_H

#include <stdint.h>

#include "common.h"
#include "config.h"
#include "data.h"
#include "model.h"

#define CHECKPOINT_FORMAT "qkscope/1"

/* Training state beside the weights. */
typedef struct {
    int step;              /* optimizer updates done */
    Rng batch_rng;         /* batch sampler state after `step` updates */
    double train_loss;     /* last eval losses, NAN when none */
    double val_loss;
    int eval_step;         /* step of that eval, -1 when none */
} TrainState;

/* A checkpoint read and validated in memory. */
typedef struct {
    char path[1100];
    Config cfg;            /* parsed from the `config` metadata */
    ModelShape shape;      /* from cfg and the vocabulary */
    int V;
    uint32_t *vocab;       /* [V] code points, token id = index */
    TrainState state;
    int has_optim;         /* AdamW moments present */
    float *params;         /* [n_params] in model buffer order */
    float *adam_m, *adam_v;/* [n_params] or NULL */
    size_t n_params;
    int n_verified;        /* tensors whose CRC-32 matched; 0: the file has no
                            * checksums (written before them, or by another tool) */
} Checkpoint;

/* Writes the model (and, with_optim, its AdamW moments) atomically: a temp
 * file in the same folder, fsync, rename, fsync of the folder. A failure
 * leaves any previous file at path untouched. I/O errors return -1 with a
 * message (a full disk is not a crash). */
int checkpoint_save(const char *path, const Model *m, const Config *cfg, const uint32_t *vocab,
                    int V, const TrainState *st, int with_optim, Error *err);

/* Reads and validates a checkpoint: every malformed input (not safetensors,
 * truncated, header length beyond the file, bad JSON, offsets out of range or
 * overlapping or not contiguous, dtype other than F32, missing or extra
 * tensors, shapes that disagree with the stored config, metadata that does
 * not parse, NaN/Inf in any tensor) returns -1 with one line naming the file
 * and the problem. A file with checksums must match every one (the header's
 * and each tensor's) and must have them all; the message of a mismatch names
 * the header or the tensor and both CRCs. Never reads out of bounds. */
int checkpoint_read(Checkpoint *ck, const char *path, Error *err);

/* The same checks as checkpoint_read, tensors streamed and not kept (no
 * model, memory of one chunk). *n_verified: tensors whose CRC matched, 0 for
 * a file without checksums. */
int checkpoint_verify(const char *path, int *n_verified, Error *err);

/* Only the header: its CRC and the crc32 entries' form, for a reader that
 * peeks at the header alone. *verified: the file has checksums. A file
 * without them passes. */
int checkpoint_verify_header(const char *path, int *verified, Error *err);

/* Copies the weights (and moments when present and want_optim) into a model
 * created with ck->shape. */
void checkpoint_to_model(const Checkpoint *ck, Model *m, int want_optim);

void checkpoint_free(Checkpoint *ck);

/* Checks that a checkpoint fits a config and corpus: the model keys equal
 * (the message names the first that differs) and the vocabulary equal. */
int checkpoint_check_compatible(const Checkpoint *ck, const Config *c, const Corpus *corpus,
                                Error *err);

#endif
