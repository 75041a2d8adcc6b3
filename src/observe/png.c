/* PNG files by stb_image_write, whose own deflate (three quarters of a
 * heatmap set's time, docs/performance.md) is replaced through its hook
 * STBIW_ZLIB_COMPRESS by zlib's. What is the project's own here is where the
 * encoder's buffers live and the settings, each measured on the pictures
 * (docs/performance.md, Memory):
 *
 *  - stb filters every row with Up (stbi_write_force_png_filter): the rows
 *    of a cell repeat the one above, and become zeros; stb's own choice,
 *    five trial filters a row, took half as long again;
 *  - zlib at level 1 with its default strategy: Z_RLE (runs of one byte
 *    only) and Z_HUFFMAN_ONLY were slower, Z_FIXED as fast but larger;
 *  - memLevel 6 instead of 8: a smaller hash, which zlib slides every 32 KiB
 *    of input;
 *  - stb's buffers (the filtered copy of the picture) and zlib's (its state,
 *    the compressed stream) come from the memory the caller lends, while it
 *    holds them: its pages are resident, a heap buffer's are faulted in. */
#include "png.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#define PNG_FILTER_UP 2
#define PNG_LEVEL 1
#define PNG_MEM_LEVEL 6
#define PNG_WINDOW_BITS 15

/* ---- memory: the lent span while it lasts, then the heap ------------------ */

/* A picture's buffers are taken one after the other and all given back at its
 * end, so the span is used from its start on and never reused within a
 * picture; what does not fit goes to the heap. Each thread encodes its own
 * picture in its own span. In place (png_lead), stb's first buffer, the
 * filtered copy, goes at the span's start, over the picture, and the others
 * after the picture. */
typedef struct {
    uint8_t *p;
    size_t n, used;
    size_t in_place; /* the filtered copy's size until it is placed, else 0 */
} Arena;

static _Thread_local Arena *arena;

static int in_arena(const void *p) {
    uintptr_t q = (uintptr_t)p;
    return arena && q >= (uintptr_t)arena->p && q < (uintptr_t)arena->p + arena->n;
}

static void *png_alloc(size_t n) {
    if (arena && arena->in_place) {
        /* stb's first request is the filtered copy, which it fills row by row
         * from the top, row j from rows j and j - 1 (it is never told to flip
         * the picture); any other first request: not in place */
        int first = n == arena->in_place;
        arena->in_place = 0;
        if (first) return arena->p;
    }
    if (arena) {
        size_t at = (arena->used + 63) / 64 * 64;
        if (at <= arena->n && n <= arena->n - at) {
            arena->used = at + n;
            return arena->p + at;
        }
    }
    return malloc(n);
}

static void png_free(void *p) {
    if (!in_arena(p)) free(p);
}

static void *z_alloc(void *opaque, unsigned items, unsigned size) {
    (void)opaque;
    return png_alloc((size_t)items * size);
}

static void z_free(void *opaque, void *p) {
    (void)opaque;
    png_free(p);
}

/* ---- zlib's deflate through stb_image_write's hook ------------------------ */

/* The zlib stream of data[0, len) in a buffer from png_alloc, which stb frees
 * with png_free; NULL when memory ran out. stb's quality setting is for its
 * own deflate. */
static unsigned char *png_deflate(unsigned char *data, int len, int *out_len, int quality) {
    (void)quality;
    z_stream z = {.zalloc = z_alloc, .zfree = z_free};
    if (deflateInit2(&z, PNG_LEVEL, Z_DEFLATED, PNG_WINDOW_BITS, PNG_MEM_LEVEL,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    uLong bound = deflateBound(&z, (uLong)len);
    unsigned char *out = bound <= INT_MAX ? png_alloc(bound) : NULL;
    int rc = Z_MEM_ERROR;
    if (out) {
        z.next_in = data;
        z.avail_in = (uInt)len;
        z.next_out = out;
        z.avail_out = (uInt)bound;
        rc = deflate(&z, Z_FINISH);
        *out_len = (int)z.total_out;
    }
    deflateEnd(&z);
    if (rc == Z_STREAM_END) return out;
    png_free(out);
    return NULL;
}

/* stb_image_write (Debian's libstb-dev) compiled here alone and static, so
 * that it cannot clash with libstb's copy; the chunks' CRC-32 is zlib's too.
 * STBIW_REALLOC is wanted with the others but only stb's own deflate, which
 * the hook replaces, calls it. */
#define STBIW_ZLIB_COMPRESS png_deflate
#define STBIW_CRC32(p, n) ((unsigned)crc32(0, (p), (uInt)(n)))
#define STBIW_MALLOC(n) png_alloc(n)
#define STBIW_FREE(p) png_free(p)
#define STBIW_REALLOC(p, n) NULL
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <stb_image_write.h>
#pragma GCC diagnostic pop

static void filter_init(void) {
    stbi_write_force_png_filter = PNG_FILTER_UP;
}

/* ---- the file ------------------------------------------------------------ */

typedef struct {
    FILE *f;
    int failed, saved;
} Sink;

/* stb_image_write hands over the whole file at once. */
static void sink_write(void *context, void *data, int n) {
    Sink *s = context;
    if (n > 0 && fwrite(data, 1, (size_t)n, s->f) != (size_t)n) {
        s->failed = 1;
        s->saved = errno;
    }
}

size_t png_lead(size_t w, size_t h) {
    return (3 * w + h + 63) / 64 * 64;
}

int png_write(FILE *f, const uint8_t *rgb, size_t w, size_t h, Span scratch) {
    CHECK(w > 0 && h > 0, "png_write: a %zu x %zu picture (PNG needs at least 1 x 1)", w, h);
    CHECK(w <= (INT_MAX - 1) / 3 && h <= INT_MAX / (3 * w + 1),
          "png_write: a %zu x %zu picture (its filtered rows would pass %d bytes)", w, h, INT_MAX);
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, filter_init);
    size_t size = 3 * w * h, lead = png_lead(w, h);
    uintptr_t at = (uintptr_t)rgb, s = (uintptr_t)scratch.p;
    int in_place = scratch.p && at == s + lead && lead <= scratch.n && size <= scratch.n - lead;
    CHECK(in_place || !scratch.p || at + size <= s || at >= s + scratch.n,
          "png_write: the picture lies in the scratch memory but not png_lead bytes in");
    Arena lent = {scratch.p, scratch.n, in_place ? lead + size : 0,
                  in_place ? h * (3 * w + 1) : 0};
    arena = scratch.p ? &lent : NULL;
    Sink sink = {f, 0, 0};
    int ok = stbi_write_png_to_func(sink_write, &sink, (int)w, (int)h, 3, rgb, (int)(3 * w));
    arena = NULL;
    if (!ok) {
        errno = ENOMEM;
        return -1;
    }
    if (sink.failed) {
        errno = sink.saved ? sink.saved : EIO;
        return -1;
    }
    return 0;
}
