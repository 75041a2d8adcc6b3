/* Unit tests of src/observe/png.c, which has stb_image_write write the PNG
 * with zlib's deflate: pictures of noise, flat colour, runs, rows of every
 * width from 1 px, rows longer than deflate's 32 KiB window, and 1 x 1 are
 * written to memory, with no lent memory, a span too small for anything, a
 * tight one and a large one, and from inside the span (filtered in place);
 * each file is checked chunk by chunk (signature, an 8-bit RGB IHDR, every
 * CRC, IEND last) and decoded by stb_image to exactly the pixels given. Lent memory must change nothing in the file, and
 * the encoder must not write past the span's end. */
#include "png.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>

#include "check.h"

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* CRC-32 as ISO 3309 gives it, a bit at a time. */
static uint32_t crc_ref(const uint8_t *p, size_t n) {
    uint32_t c = ~0u;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c >> 1 ^ (0xEDB88320u & -(c & 1));
    }
    return ~c;
}

typedef struct {
    uint8_t *rgb;
    size_t w, h;
} Picture;

static Picture picture_new(size_t w, size_t h) {
    Picture p = {calloc(h, 3 * w), w, h};
    REQUIRE(p.rgb);
    return p;
}

static uint8_t *px(Picture *p, size_t x, size_t y) {
    return p->rgb + (y * p->w + x) * 3;
}

/* p written with scratch as its lent memory; the file in *size bytes. */
static char *write_to_memory(const char *what, const Picture *p, Span scratch, size_t *size) {
    char *file = NULL;
    FILE *f = open_memstream(&file, size);
    REQUIRE(f);
    EXPECT(png_write(f, p->rgb, p->w, p->h, scratch) == 0, "%s: png_write failed", what);
    REQUIRE(fclose(f) == 0);
    return file;
}

/* The file's chunks: signature, IHDR (w x h, 8-bit RGB, no interlace), then
 * chunks each with its CRC, IEND last and nothing after it. */
static int well_formed(const char *what, const Picture *p, const uint8_t *d, size_t size) {
    static const uint8_t sig[8] = {137, 'P', 'N', 'G', '\r', '\n', 26, '\n'};
    static const uint8_t rgb8[5] = {8, 2, 0, 0, 0};
    int ok = size >= 8 + 25 + 12 && memcmp(d, sig, 8) == 0 && be32(d + 8) == 13 &&
             memcmp(d + 12, "IHDR", 4) == 0 && be32(d + 16) == p->w && be32(d + 20) == p->h &&
             memcmp(d + 24, rgb8, 5) == 0;
    size_t at = 8;
    int ended = 0, idat = 0;
    while (ok && !ended && at + 12 <= size) {
        size_t k = be32(d + at);
        const uint8_t *type = d + at + 4;
        ok = at + 12 + k <= size && be32(d + at + 8 + k) == crc_ref(type, 4 + k);
        idat += memcmp(type, "IDAT", 4) == 0;
        ended = memcmp(type, "IEND", 4) == 0;
        at += 12 + k;
    }
    ok = ok && ended && at == size && idat > 0;
    EXPECT(ok, "%s: expected the signature, an 8-bit RGB IHDR, IDAT, IEND, each with its CRC",
           what);
    return ok;
}

/* stb_image decodes the file to exactly p's pixels. */
static int decodes_to(const char *what, const Picture *p, const uint8_t *d, size_t size) {
    int w, h, c;
    uint8_t *rgb = stbi_load_from_memory(d, (int)size, &w, &h, &c, 3);
    EXPECT(rgb && (size_t)w == p->w && (size_t)h == p->h, "%s: stb cannot read it: %s", what,
           rgb ? "another size" : stbi_failure_reason());
    int same = rgb && (size_t)w == p->w && (size_t)h == p->h &&
               memcmp(rgb, p->rgb, 3 * p->w * p->h) == 0;
    EXPECT(!rgb || same, "%s: decoded pixels differ", what);
    stbi_image_free(rgb);
    return same;
}

static size_t count_byte(const uint8_t *p, size_t n, uint8_t b) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += p[i] == b;
    return k;
}

/* Writes p on the heap, checks the file, then writes it again in spans of 7
 * bytes, of the picture's filtered rows plus a byte, and of ten times those
 * and png_lead, then from inside a span (in place), exactly as large as it needs and ten
 * times that: the same file each time, and the bytes after each span as they
 * were. Returns the file's size (0 on a failed check) and frees p. */
static size_t round_trip(const char *what, Picture *p) {
    enum { GUARD = 64 };
    size_t size, ok = 0;
    char *file = write_to_memory(what, p, (Span){NULL, 0}, &size);
    const uint8_t *d = (const uint8_t *)file;
    if (well_formed(what, p, d, size) && decodes_to(what, p, d, size)) ok = size;
    size_t filtered = p->h * (1 + 3 * p->w);
    const size_t spans[3] = {7, filtered + 1, 10 * (filtered + png_lead(p->w, p->h))};
    uint8_t *lent = malloc(spans[2] + GUARD);
    REQUIRE(lent);
    for (int s = 0; s < 3; s++) {
        memset(lent, 0xA5, spans[s] + GUARD);
        size_t n;
        char *again = write_to_memory(what, p, (Span){lent, spans[s]}, &n);
        EXPECT(n == size && memcmp(again, file, n) == 0, "%s: a span of %zu bytes: the file differs",
               what, spans[s]);
        EXPECT(count_byte(lent + spans[s], GUARD, 0xA5) == GUARD,
               "%s: a span of %zu bytes: written past its end", what, spans[s]);
        if (s == 2)
            EXPECT(count_byte(lent, spans[s], 0xA5) < spans[s],
                   "%s: a span of %zu bytes: not used", what, spans[s]);
        free(again);
    }
    /* in place: the picture in the span, png_lead bytes in, exactly or with
     * room after it */
    size_t lead = png_lead(p->w, p->h), size3 = 3 * p->w * p->h;
    REQUIRE(lead >= 3 * p->w + p->h && lead % 64 == 0);
    for (int s = 0; s < 2; s++) {
        size_t n = s ? spans[2] : lead + size3;
        REQUIRE(n >= lead + size3);
        memset(lent, 0xA5, n + GUARD);
        memcpy(lent + lead, p->rgb, size3);
        Picture in = {lent + lead, p->w, p->h};
        size_t m;
        char *again = write_to_memory(what, &in, (Span){lent, n}, &m);
        EXPECT(m == size && memcmp(again, file, m) == 0, "%s: in place, a span of %zu bytes: "
               "the file differs", what, n);
        EXPECT(count_byte(lent + n, GUARD, 0xA5) == GUARD,
               "%s: in place, a span of %zu bytes: written past its end", what, n);
        EXPECT(lent[0] == 2 && lent[(p->h - 1) * (3 * p->w + 1)] == 2,
               "%s: in place: the filtered rows (filter Up) are not at the span's start", what);
        free(again);
    }
    free(lent);
    free(file);
    free(p->rgb);
    return ok;
}

static uint32_t lcg(uint32_t *s) {
    return *s = *s * 1664525u + 1013904223u;
}

int main(void) {
    uint32_t seed = 7;

    /* noise: nothing to compress */
    Picture p = picture_new(61, 17);
    for (size_t i = 0; i < 3 * p.w * p.h; i++) p.rgb[i] = (uint8_t)(lcg(&seed) >> 24);
    size_t noise = round_trip("noise", &p);
    EXPECT(noise > 61 * 17 * 3, "noise: %zu bytes, smaller than its pixels", noise);

    /* one flat colour: at least 100 to 1 */
    p = picture_new(500, 400);
    for (size_t y = 0; y < p.h; y++)
        for (size_t x = 0; x < p.w; x++) memcpy(px(&p, x, y), (uint8_t[3]){200, 30, 90}, 3);
    size_t flat = round_trip("flat", &p);
    EXPECT(flat > 0 && flat < 500 * 400 * 3 / 100, "flat: %zu bytes", flat);

    /* row 0: runs of 1 to 100 pixels whose colours' bytes are 0 or 1; rows 1
     * to 5 repeat the row above but for a byte every 1 to 300 */
    p = picture_new(5100, 6);
    for (size_t x = 0; x < p.w;) {
        uint8_t c[3] = {lcg(&seed) >> 31, lcg(&seed) >> 31, lcg(&seed) >> 31};
        for (size_t k = 1 + lcg(&seed) % 100; k > 0 && x < p.w; k--, x++) memcpy(px(&p, x, 0), c, 3);
    }
    for (size_t y = 1; y < p.h; y++) {
        memcpy(px(&p, 0, y), px(&p, 0, y - 1), 3 * p.w);
        for (size_t i = lcg(&seed) % 300; i < 3 * p.w; i += 1 + lcg(&seed) % 300)
            px(&p, 0, y)[i] ^= 0x80;
    }
    EXPECT(round_trip("runs", &p) > 0, "runs");

    /* every width from 1 to 80 px, rows alternately new and repeated */
    for (size_t w = 1; w <= 80; w++) {
        p = picture_new(w, 4);
        for (size_t y = 0; y < p.h; y++)
            for (size_t x = 0; x < 3 * w; x++)
                px(&p, 0, y)[x] = y % 2 ? px(&p, 0, y - 1)[x] : (uint8_t)(lcg(&seed) >> 28);
        char what[32];
        snprintf(what, sizeof what, "rows of width %zu", w);
        EXPECT(round_trip(what, &p) > 0, "%s", what);
    }

    /* rows longer than deflate's 32 KiB window */
    p = picture_new(11000, 3);
    for (size_t x = 0; x < p.w; x++) memcpy(px(&p, x, 0), (uint8_t[3]){(uint8_t)(x / 37), 9, 9}, 3);
    memcpy(px(&p, 0, 1), px(&p, 0, 0), 3 * p.w);
    memcpy(px(&p, 0, 2), px(&p, 0, 0), 3 * p.w);
    EXPECT(round_trip("wide", &p) > 0, "wide");

    p = picture_new(1, 1);
    memcpy(px(&p, 0, 0), (uint8_t[3]){255, 0, 128}, 3);
    EXPECT(round_trip("1 x 1", &p) > 0, "1 x 1");

    /* a stream that cannot be written reports it */
    FILE *ro = fopen("/dev/null", "r");
    REQUIRE(ro);
    p = picture_new(4, 4);
    errno = 0;
    EXPECT(png_write(ro, p.rgb, p.w, p.h, (Span){NULL, 0}) == -1 && errno != 0,
           "writing to a read-only stream did not fail");
    fclose(ro);
    free(p.rgb);

    CHECK_DONE("test_png");
}
