#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>


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

/* A positional `section.key=value` naming a config key is an override: only
 * bench, which reads a CONFIG, takes those; the other commands read a
 * checkpoint, whose stored config made its weights, and would take it for a
 * path. Returns -1 with the message for such an argument. */
static int override_refuse(const char *cmd, const char *a, Error *err) {
    const char *eq = strchr(a, '='), *dot = eq ? memchr(a, '.', (size_t)(eq - a)) : NULL;
    if (!dot || !strcmp(cmd, "bench")) return 0;
    char section[64], key[64], allowed[320];
    snprintf(section, sizeof section, "%.*s", (int)(dot - a), a);
    snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
    if (config_key_describe(section, key, allowed, sizeof allowed)) return 0;
    return error_set(err, "%s: '%s': [%s] %s is a config key, and config keys apply when training "
                          "(train CONFIG %s.%s=...%s%s)",
                     cmd, a, section, key, section, key, allowed[0] ? "; " : "", allowed);
}

int cli_parse(int argc, char **argv, const char *cmd, const CliOption *opts, const char **pos,
              int max_pos, int *npos, Error *err) {
    *npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        const CliOption *o = opts;
        while (o->name && strcmp(o->name, a) != 0) o++;
        if (!o->name) {
            if (override_refuse(cmd, a, err)) return -1;
            if (a[0] == '-' || *npos == max_pos)
                return error_set(err, "%s: unexpected argument '%s' (see qkscope %s --help)", cmd,
                                 a, cmd);
            pos[(*npos)++] = a;
            continue;
        }
        if (o->kind == OPT_FLAG) {
            *(int *)o->out = 1;
            continue;
        }
        if (i + 1 == argc) {
            if (o->kind == OPT_STR)
                return error_set(err, "%s: missing value (see qkscope %s --help)", a, cmd);
            return error_set(err, "%s: missing value, expected %s from %.15g to %.15g", a,
                             o->kind == OPT_LONG ? "an integer" : "a number", o->min, o->max);
        }
        v = argv[++i];
        if (o->kind == OPT_STR) {
            *(const char **)o->out = v;
        } else if (o->kind == OPT_LONG) {
            if (cli_long(a, v, (long)o->min, (long)o->max, o->out, err)) return -1;
        } else if (cli_double(a, v, o->min, o->max, o->out, err)) {
            return -1;
        }
    }
    return 0;
}

int cli_args(int argc, char **argv, const char *cmd, const CliOption *opts, const char **pos,
             int min_pos, int max_pos, int *npos, void (*usage)(FILE *), int *status) {
    Error err;
    int rc = cli_parse(argc, argv, cmd, opts, pos, max_pos, npos, &err);
    if (rc == 0 && *npos >= min_pos) return 0;
    if (rc > 0) {
        usage(stdout);
        *status = 0;
    } else if (rc < 0) {
        *status = cli_fail(&err);
    } else {
        /* One line, like every other refusal: the count and the synopsis
         * (the first line of the usage text). */
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (!f) die("open_memstream: %s", strerror(errno));
        usage(f);
        if (fclose(f)) die("open_memstream: %s", strerror(errno));
        const char *synopsis = strncmp(text, "usage: ", 7) ? text : text + 7;
        char want[32];
        if (min_pos == max_pos) snprintf(want, sizeof want, "%d", min_pos);
        else if (max_pos == min_pos + 1) snprintf(want, sizeof want, "%d or %d", min_pos, max_pos);
        else snprintf(want, sizeof want, "at least %d", min_pos);
        fprintf(stderr, "qkscope: %s: %d argument%s given, expected %s (%.*s; see qkscope %s --help)\n",
                cmd, *npos, *npos == 1 ? "" : "s", want, (int)strcspn(synopsis, "\n"), synopsis, cmd);
        free(text);
        *status = EXIT_BADINPUT;
    }
    return 1;
}

int cli_load_model(const char *path, Checkpoint *ck, Model *m, int maxB, Error *err) {
    if (checkpoint_read(ck, path, err) != 0) return -1;
    int B = maxB > 0 ? maxB : ck->cfg.batch_size;
    Error mem;
    if (model_check_memory(&ck->shape, B, &mem) != 0) {
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

int cli_lock_run(RunLock *l, const char *dir, const char *what, int create, Error *err) {
    if (runlock_acquire(l, dir, create, err) != 0) return -1;
    runlock_announce(l, what);
    return 0;
}

int cli_lock_run_output(RunLock *l, const char *out_dir, const char *name, const char *out,
                        const char *what, Error *err) {
    l->fd = -1;
    if (out) return 0;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", out_dir, name);
    return cli_lock_run(l, dir, what, 1, err);
}
