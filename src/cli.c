#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "train.h"

int cli_value(int argc, char **argv, int *i, const char **out, Error *err) {
    if (*i + 1 >= argc) return error_set(err, "%s: missing value", argv[*i]);
    *out = argv[++*i];
    return 0;
}

int cli_long(const char *flag, const char *s, long min, long max, long *out, Error *err) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < min || v > max)
        return error_set(err, "%s '%s': expected an integer from %ld to %ld", flag, s, min, max);
    *out = v;
    return 0;
}

int cli_double(const char *flag, const char *s, double min, double max, double *out, Error *err) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < min || v > max)
        return error_set(err, "%s '%s': expected a number from %g to %g", flag, s, min, max);
    *out = v;
    return 0;
}

int cli_load_model(const char *path, Checkpoint *ck, Model *m, int maxB, Error *err) {
    if (checkpoint_read(ck, path, err) != 0) return -1;
    int B = maxB > 0 ? maxB : ck->cfg.batch_size;
    Error mem;
    if (train_check_memory(&ck->shape, B, &mem) != 0) {
        checkpoint_free(ck);
        return error_set(err, "%s: %s", path, mem.msg);
    }
    model_create(m, &ck->shape, B);
    checkpoint_to_model(ck, m, 0);
    return 0;
}

int cli_fail(const Error *err) {
    fprintf(stderr, "qkscope: %s\n", err->msg);
    return EXIT_BADINPUT;
}
