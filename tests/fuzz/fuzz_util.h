/* Helpers shared by the fuzz harnesses: a per-process temp file for readers
 * that take a path, and a loud failure for broken invariants (abort, so
 * libFuzzer saves the input as a crash). */
#ifndef QK_FUZZ_UTIL_H
#define QK_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define FUZZ_ASSERT(cond, ...)                                                        \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "fuzz invariant failed at %s:%d: %s\n  ", __FILE__, __LINE__, \
                    #cond);                                                           \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
            abort();                                                                  \
        }                                                                             \
    } while (0)

/* A path of the form DIR/qkfuzz-TAG-PID.EXT in $TMPDIR, else /dev/shm (no
 * disk writes), else /tmp; one per tag and process (libFuzzer's -jobs and
 * -fork run several processes). */
static inline const char *fuzz_tmp_path(char *buf, size_t n, const char *tag, const char *ext) {
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(buf, n, "%s/qkfuzz-%s-%ld%s", dir, tag, (long)getpid(), ext);
    return buf;
}

/* Writes n bytes to path; -1 when the file cannot be written (the input is
 * then skipped: a full temp folder is not a finding). */
static inline int fuzz_write_file(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    int rc = fclose(f);
    return w == n && rc == 0 ? 0 : -1;
}

/* The messages of Error are one line for the user: not empty, and no control
 * characters (newlines above all); the reader's excerpts escape them. */
static inline void fuzz_check_message(const Error *err) {
    FUZZ_ASSERT(err->msg[0] != '\0', "empty error message");
    for (const unsigned char *p = (const unsigned char *)err->msg; *p; p++)
        FUZZ_ASSERT(*p >= 0x20 && *p != 0x7f, "control byte 0x%02x in error message: %s", *p,
                    err->msg);
}

#endif
