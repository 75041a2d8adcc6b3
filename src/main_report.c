/* qkscope report RUN_DIR [B_DIR] [--out FILE]: the HTML page of a run, or of
 * two runs side by side. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "report.h"

static int usage(FILE *f, int status) {
    fprintf(f, "usage: qkscope report RUN_DIR [--out FILE]\n"
               "       qkscope report A_DIR B_DIR [--out FILE]\n"
               "  Writes the run's HTML report (default RUN_DIR/index.html; the trainer\n"
               "  rewrites it at every eval), or a page with two runs side by side (default\n"
               "  A_DIR/compare_<name of B_DIR>.html). The page opens from the file system\n"
               "  and links the run's heatmaps and checkpoints by relative paths.\n");
    return status;
}

int main(int argc, char **argv) {
    const char *dirs[2], *out = NULL;
    int n = 0;
    Error err;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout, 0);
        if (!strcmp(argv[i], "--out")) {
            if (cli_value(argc, argv, &i, &out, &err)) return cli_fail(&err);
        } else if (argv[i][0] == '-') {
            error_set(&err, "unknown option '%s' (see qkscope report --help)", argv[i]);
            return cli_fail(&err);
        } else if (n == 2) {
            error_set(&err, "'%s': expected one or two run folders", argv[i]);
            return cli_fail(&err);
        } else {
            dirs[n++] = argv[i];
        }
    }
    if (n == 0) return usage(stderr, EXIT_BADINPUT);
    int rc = n == 1 ? report_write(dirs[0], out, &err)
                    : report_write_pair(dirs[0], dirs[1], out, &err);
    if (rc) return cli_fail(&err);
    char *path = out ? NULL : report_default_path(dirs[0], n == 2 ? dirs[1] : NULL);
    printf("qkscope: wrote %s\n", out ? out : path);
    free(path);
    return 0;
}
