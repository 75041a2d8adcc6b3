/* Shared pieces of the commands' mains: flag values and loading a model
 * from a checkpoint. Errors come back as messages; mains print them as
 * `qkscope: <message>` and exit 2. */
#ifndef QK_CLI_H
#define QK_CLI_H

#include "checkpoint.h"
#include "common.h"
#include "model.h"
#include "runlock.h"

/* Whole integers and finite numbers within [min, max], named by flag. */
int cli_long(const char *flag, const char *s, long min, long max, long *out, Error *err);
int cli_double(const char *flag, const char *s, double min, double max, double *out, Error *err);

typedef enum { OPT_FLAG, OPT_STR, OPT_LONG, OPT_DOUBLE } CliKind;

/* One option of a command: a flag (int set to 1), a string, or a number in
 * [min, max]; out points to an int, const char *, long or double. */
typedef struct {
    const char *name; /* "--data" */
    CliKind kind;
    void *out;
    double min, max;
} CliOption;

/* Parses argv[1..] for command cmd: the options in opts (ended by a zero
 * entry), everything else positional into pos[0 .. max_pos-1] (*npos gets
 * the count). Returns 1 for --help / -h, 0 when parsed, -1 with a message for
 * an unknown option, a missing or bad value, or too many positionals. */
int cli_parse(int argc, char **argv, const char *cmd, const CliOption *opts, const char **pos,
              int max_pos, int *npos, Error *err);

/* cli_parse with the usual outcomes: returns 0 to go on with min_pos ..
 * max_pos positionals (*npos of them); otherwise the command returns
 * *status: 0 after printing usage for --help, 2 after the error message or
 * usage (too few positionals). */
int cli_args(int argc, char **argv, const char *cmd, const CliOption *opts, const char **pos,
             int min_pos, int max_pos, int *npos, void (*usage)(FILE *), int *status);

/* Reads a checkpoint and builds a model from it for batches up to maxB
 * (maxB <= 0: the run's batch_size). */
int cli_load_model(const char *path, Checkpoint *ck, Model *m, int maxB, Error *err);

/* Takes run folder dir's lock (creating dir when create is set) and names
 * this command, `what`, as its holder: for a command that writes there. */
int cli_lock_run(RunLock *l, const char *dir, const char *what, int create, Error *err);

/* A command whose output goes into the run folder <out_dir>/<name> of config c
 * (its default, out == NULL) takes the folder's lock first, as `what`; with
 * an output of its own (out set) it takes none. */
int cli_lock_run_output(RunLock *l, const char *out_dir, const char *name, const char *out,
                        const char *what, Error *err);

/* Prints `qkscope: <msg>` to stderr and returns EXIT_BADINPUT. */
int cli_fail(const Error *err);

#endif
