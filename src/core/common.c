#include "common.h"

#include <errno.h>
#include <ftw.h>
#include <string.h>
#include <sys/stat.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <unistd.h>

int error_set(Error *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void die_at(const char *file, int line, const char *fmt, ...) {
    fflush(stdout);
    fprintf(stderr, "qkscope: fatal: ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " [%s:%d]\n", file, line);
    exit(1);
}

void *xmalloc_at(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) die_at(file, line, "out of memory allocating %zu bytes", n);
    return p;
}

void *xcalloc_at(size_t count, size_t size, const char *file, int line) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) die_at(file, line, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *xmalloc_lines_at(size_t count, size_t size, const char *file, int line) {
    void *p = NULL;
    size_t n = count && size ? count * size : 1;
    if ((size && count > SIZE_MAX / size) || posix_memalign(&p, 64, n) != 0)
        die_at(file, line, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *xcalloc_lines_at(size_t count, size_t size, const char *file, int line) {
    void *p = xmalloc_lines_at(count, size, file, line);
    memset(p, 0, count * size); /* no overflow: xmalloc_lines_at checked it */
    return p;
}

Span span_part(Span s, size_t i, size_t parts) {
    uintptr_t at = (uintptr_t)s.p, first = (at + 63) / 64 * 64;
    if (!s.p || first - at >= s.n) return (Span){NULL, 0};
    size_t size = (s.n - (first - at)) / parts / 64 * 64;
    return (Span){(char *)first + size * i, size};
}

/* glibc's own starting value: smaller buffers come from the heap. */
#define MEMORY_MAP_MIN (128 * 1024)

void memory_init(void) {
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, MEMORY_MAP_MIN);
#endif
}

real *scratch_reserve(ScratchBuf *s, size_t need) {
    if (need > s->cap) {
        free(s->p);
        s->p = xcalloc_lines(need, sizeof(real));
        s->cap = need;
    }
    return s->p;
}

void scratch_free(ScratchBuf *s) {
    free(s->p);
    s->p = NULL;
    s->cap = 0;
}

double time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int dir_create(const char *path, Error *err) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return error_set(err, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0) {
                struct stat st;
                if (errno != EEXIST)
                    return error_set(err, "%s: cannot create folder: %s", buf, strerror(errno));
                if (stat(buf, &st) == 0 && !S_ISDIR(st.st_mode))
                    return error_set(err, "%s: exists and is not a folder", buf);
            }
            *p = c;
            if (c == '\0') break;
        }
    }
    return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void dir_remove(const char *path) {
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        die("cannot remove %s: %s", path, strerror(errno));
}

static double lanes_total(const double *lane) {
    double s = 0;
    for (int k = 0; k < SUMSQ_LANES; k++) s += lane[k];
    return s;
}

double sum_squares(const real *x, size_t n) {
    double lane[SUMSQ_LANES] = {0};
    size_t i = 0;
    for (; i + SUMSQ_LANES <= n; i += SUMSQ_LANES)
        for (int k = 0; k < SUMSQ_LANES; k++) lane[k] += (double)x[i + k] * x[i + k];
    for (; i < n; i++) lane[0] += (double)x[i] * x[i];
    return lanes_total(lane);
}

double sum_squares_diff(const real *a, const real *b, size_t n) {
    double lane[SUMSQ_LANES] = {0};
    size_t i = 0;
    for (; i + SUMSQ_LANES <= n; i += SUMSQ_LANES)
        for (int k = 0; k < SUMSQ_LANES; k++) {
            double d = (double)a[i + k] - b[i + k];
            lane[k] += d * d;
        }
    for (; i < n; i++) {
        double d = (double)a[i] - b[i];
        lane[0] += d * d;
    }
    return lanes_total(lane);
}

int file_write_atomic(const char *path, const char *data, size_t len, Error *err) {
    char *tmp = xmalloc(strlen(path) + 32);
    sprintf(tmp, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(data, 1, len, f) == len, saved = errno;
    if (f && fclose(f) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        saved = errno;
    }
    if (!ok && f) remove(tmp);
    free(tmp);
    return ok ? 0 : error_set(err, "%s: cannot write: %s", path, strerror(saved));
}
