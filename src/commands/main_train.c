/* train CONFIG [section.key=value ...]: trains a model, logging to runs/<name>/. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "train.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: train CONFIG [section.key=value ...]\n"
            "  Trains the model described by the INI file CONFIG; every key can be\n"
            "  overridden on the command line, e.g. train.steps=500 run.name=try2.\n"
            "  Outputs go to <run.out_dir>/<run.name>/ (config.ini, metrics.csv, eval.csv,\n"
            "  ckpt/).\n"
            "  --overwrite   same as run.overwrite=true (replace the run folder)\n"
            "  --resume      same as run.resume=true (continue from ckpt/latest.safetensors)\n"
            "train --dump-keys\n"
            "  Prints the config key table: section, key, type, min, max, flags, enum\n"
            "  names, longest string in bytes (\"-\" where a column does not apply).\n");
}

/* First SIGINT/SIGTERM: finish the step, checkpoint, exit 130/143. A second
 * one exits at once; checkpoints are written atomically, so the last complete
 * one stays intact. */
static void on_signal(int sig) {
    if (train_stop_signal) _exit(128 + sig);
    train_stop_signal = sig;
}

/* With several ranks a signal means mpirun is taking the job down (a rank
 * failed, or mpirun itself was interrupted): the other ranks may be gone, so
 * no collective can finish the step. Say so and leave at once; the newest
 * checkpoint was written atomically and stays valid. */
static char rank_stop_msg[2 * CONFIG_STR + 512];
static void on_signal_rank(int sig) {
    ssize_t w = write(STDERR_FILENO, rank_stop_msg, strlen(rank_stop_msg));
    (void)w;
    _exit(128 + sig);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "qkscope: train: 0 arguments given, expected a CONFIG file (train CONFIG "
                        "[section.key=value ...]; see train --help)\n");
        return EXIT_BADINPUT;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--dump-keys") == 0) {
        if (argc > 2) {
            fprintf(stderr, "qkscope: train: unexpected argument '%s' after --dump-keys (see "
                            "train --help)\n", argv[2]);
            return EXIT_BADINPUT;
        }
        config_dump_keys(stdout);
        return 0;
    }
    if (argv[1][0] == '-') {
        fprintf(stderr, "qkscope: unknown option '%s' (see train --help; the CONFIG file comes "
                        "first)\n", argv[1]);
        return EXIT_BADINPUT;
    }
    char *overrides[256];
    int n = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--overwrite") == 0) a = "run.overwrite=true";
        else if (strcmp(a, "--resume") == 0) a = "run.resume=true";
        else if (a[0] == '-') {
            fprintf(stderr, "qkscope: unknown option '%s' (see train --help)\n", a);
            return EXIT_BADINPUT;
        }
        if (n == (int)(sizeof overrides / sizeof overrides[0])) {
            fprintf(stderr, "qkscope: too many overrides (at most 256)\n");
            return EXIT_BADINPUT;
        }
        overrides[n++] = (char *)a;
    }
    dist_init(&argc, &argv);
    Config cfg;
    Error err;
    /* every rank reads the config; a bad one is reported once */
    int bad = config_load(&cfg, argv[1], n, overrides, &err) != 0;
    if (dist_any_failed(bad, &err)) {
        if (err.msg[0]) fprintf(stderr, "qkscope: %s\n", err.msg);
        dist_finalize();
        return EXIT_BADINPUT;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    if (dist_size() > 1) {
        snprintf(rank_stop_msg, sizeof rank_stop_msg,
                 "qkscope: rank %d of %d: stopped by a signal: the job is being taken down (a "
                 "rank failed or the job was interrupted); the newest checkpoint in %s/%s/ckpt "
                 "stays valid; continue with run.resume=true\n",
                 dist_rank(), dist_size(), cfg.out_dir, cfg.name);
        sa.sa_handler = on_signal_rank;
    }
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    Trainer t;
    if (train_setup(&t, &cfg, &err) != 0) {
        if (err.msg[0]) fprintf(stderr, "qkscope: %s\n", err.msg);
        train_free(&t);
        dist_finalize();
        return EXIT_BADINPUT;
    }
    int rc = train_run(&t);
    train_free(&t);
    dist_finalize();
    return rc;
}
