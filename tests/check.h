/* Minimal assertion helpers for the C tests: a failed EXPECT prints where and
 * why, and the test exits 1 at the end (so one run reports every failure); a
 * failed REQUIRE prints where and exits 1 at once (for checks the rest of a
 * test builds on). */
#ifndef QK_TEST_CHECK_H
#define QK_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int check_failures __attribute__((unused));

#define EXPECT(cond, ...)                                                \
    do {                                                                 \
        if (!(cond)) {                                                   \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                \
            fprintf(stderr, "\n");                                       \
            check_failures++;                                            \
        }                                                                \
    } while (0)

#define REQUIRE(cond)                                                            \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

#define CHECK_DONE(name)                                                 \
    do {                                                                 \
        if (check_failures) {                                            \
            fprintf(stderr, "%s: %d check(s) failed\n", name, check_failures); \
            return 1;                                                    \
        }                                                                \
        printf("%s: all checks passed\n", name);                         \
        return 0;                                                        \
    } while (0)

#endif
