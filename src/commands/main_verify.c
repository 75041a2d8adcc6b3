/* qkscope verify CKPT...: checks checkpoints' CRC-32s (and everything else a
 * reader checks) without building a model. */
#include <stdlib.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: qkscope verify CKPT...\n"
               "  Checks each checkpoint as every command that reads it does, the CRC-32 of\n"
               "  its header and of each tensor included, without building a model. One\n"
               "  line a file: 'CKPT: ok, N tensors verified', 'CKPT: unverified (no\n"
               "  checksums)' (written before qkscope recorded them, or by another tool), or\n"
               "  the reason it is refused. Exit status 0 when every file is ok or\n"
               "  unverified, 2 when any is corrupt or unreadable.\n");
}

int main(int argc, char **argv) {
    int n, status;
    /* room for every argument; a bound two past the count reads "at least 1" */
    const char **paths = xmalloc((size_t)(argc + 2) * sizeof *paths);
    const CliOption opts[] = {{NULL, 0, NULL, 0, 0}};
    if (cli_args(argc, argv, "verify", opts, paths, 1, argc + 2, &n, usage, &status)) {
        free(paths);
        return status;
    }
    /* Every file gets its line: one bad file does not hide the others. */
    int rc = 0;
    for (int i = 0; i < n; i++) {
        Error err;
        int n_verified;
        if (checkpoint_verify(paths[i], &n_verified, &err)) {
            fflush(stdout);
            rc = cli_fail(&err);
        } else if (n_verified) {
            printf("%s: ok, %d tensors verified\n", paths[i], n_verified);
        } else {
            printf("%s: unverified (no checksums)\n", paths[i]);
        }
    }
    free(paths);
    return rc;
}
