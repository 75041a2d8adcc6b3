/* Shared pieces of the commands' mains: flag values and loading a model
 * from a checkpoint. Errors come back as messages; mains print them as
 * `qkscope: <message>` and exit 2. */
#ifndef QK_CLI_H
#define QK_CLI_H

#include "checkpoint.h"
#include "common.h"
#include "model.h"

/* The value after flag argv[*i] (advancing *i), or -1 when it is missing. */
int cli_value(int argc, char **argv, int *i, const char **out, Error *err);
/* Whole integers and finite numbers within [min, max], named by flag. */
int cli_long(const char *flag, const char *s, long min, long max, long *out, Error *err);
int cli_double(const char *flag, const char *s, double min, double max, double *out, Error *err);

/* Reads a checkpoint and builds a model from it for batches up to maxB
 * (maxB <= 0: the run's batch_size). */
int cli_load_model(const char *path, Checkpoint *ck, Model *m, int maxB, Error *err);

/* Prints `qkscope: <msg>` to stderr and returns EXIT_BADINPUT. */
int cli_fail(const Error *err);

#endif
