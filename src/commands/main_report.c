/* qkscope report RUN_DIR [B_DIR] [--out FILE]: the HTML page of a run, or of
 * two runs side by side. */
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

int main(int argc, char **argv) {
    const char *dirs[2], *out = NULL;
    int n, status;
    Error err;
    const CliOption opts[] = {{"--out", OPT_STR, &out, 0, 0}, {NULL, 0, NULL, 0, 0}};
    if (cli_args(argc, argv, "report", opts, dirs, 1, 2, &n, usage, &status)) return status;
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
