/* qkscope report RUN_DIR [B_DIR] [--out FILE]: the HTML page of a run, or of
 * two runs side by side. */
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "cli.h"
#include "report.h"

static void usage(FILE *f) {
    fprintf(f, "usage: qkscope report RUN_DIR [--out FILE]\n"
               "       qkscope report A_DIR B_DIR [--out FILE]\n"
               "  Writes the run's HTML report (default RUN_DIR/index.html; the trainer\n"
               "  rewrites it at every eval), or a page with two runs side by side (default\n"
               "  A_DIR/compare_<name of B_DIR>.html). The page opens from the file system\n"
               "  and links the run's heatmaps and checkpoints by relative paths.\n"
               "  (It takes one or two run folders.)\n");
}

/* The page reads the newest checkpoint's header and links every checkpoint:
 * a header whose checksum fails is refused, as every reader refuses it. */
static int verify_ckpt_headers(const char *dir, Error *err) {
    char ckdir[4096], path[4400];
    snprintf(ckdir, sizeof ckdir, "%s/ckpt", dir);
    DIR *d = opendir(ckdir);
    if (!d) return 0; /* no checkpoints yet: the page does without */
    int rc = 0, verified;
    for (struct dirent *e; !rc && (e = readdir(d));) {
        if (fnmatch("step_*.safetensors", e->d_name, 0)) continue;
        snprintf(path, sizeof path, "%s/%s", ckdir, e->d_name);
        rc = checkpoint_verify_header(path, &verified, err);
        /* pruned by a running trainer since the listing: not on the page either */
        if (rc && access(path, F_OK) && errno == ENOENT) rc = 0;
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv) {
    const char *dirs[2], *out = NULL;
    int n, status;
    Error err;
    const CliOption opts[] = {{"--out", OPT_STR, &out, 0, 0}, {NULL, 0, NULL, 0, 0}};
    if (cli_args(argc, argv, "report", opts, dirs, 1, 2, &n, usage, &status)) return status;
    /* before the lock, whose holder record is a write */
    for (int i = 0; i < n; i++)
        if (verify_ckpt_headers(dirs[i], &err)) return cli_fail(&err);
    /* the default page goes into the (first) run folder: one writer there */
    RunLock lock = {-1};
    char marker[4096];
    snprintf(marker, sizeof marker, "%s/config.ini", dirs[0]);
    if (!out && access(marker, F_OK) == 0 && cli_lock_run(&lock, dirs[0], "report", 0, &err))
        return cli_fail(&err);
    int rc = n == 1 ? report_write(dirs[0], out, &err)
                    : report_write_pair(dirs[0], dirs[1], out, &err);
    if (rc) return cli_fail(&err);
    char *path = out ? NULL : report_default_path(dirs[0], n == 2 ? dirs[1] : NULL);
    printf("qkscope: wrote %s\n", out ? out : path);
    free(path);
    return 0;
}
