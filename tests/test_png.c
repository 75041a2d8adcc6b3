/* Unit tests of src/observe/png.c: pictures chosen to reach each path of the
 * encoder (literals of both code lengths, every match length, repeats from
 * the left and from above, rows too long to be repeated from above, the
 * smallest picture) are written to memory, and their IDAT is inflated by
 * stb_image's decoder, an implementation that is not ours, and compared byte
 * for byte with the rows given; the zlib header and the Adler-32 trailer,
 * which stb's decoder does not check, are checked here. */
#include "png.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>

#include "check.h"

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Adler-32 as RFC 1950 gives it, reduced at every byte. */
static uint32_t adler_ref(const uint8_t *p, size_t n) {
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < n; i++) {
        a = (a + p[i]) % 65521;
        b = (b + a) % 65521;
    }
    return b << 16 | a;
}

typedef struct {
    uint8_t *rows;
    size_t w, h;
} Picture;

static Picture picture_new(size_t w, size_t h) {
    Picture p = {calloc(h, 1 + 3 * w), w, h};
    REQUIRE(p.rows);
    return p;
}

static uint8_t *px(Picture *p, size_t x, size_t y) {
    return p->rows + y * (1 + 3 * p->w) + 1 + 3 * x;
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

/* Writes p, checks its chunks (each CRC; IHDR, then IDATs of PNG_IDAT_BYTES
 * but the last, then IEND) and that the IDATs' stream decodes to exactly its
 * rows and pixels; returns the file's size (0 on a failed check) and the
 * number of IDAT chunks in *n_idat. */
static size_t round_trip_chunks(const char *what, Picture *p, size_t *n_idat) {
    char *file = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&file, &size);
    REQUIRE(f);
    EXPECT(png_write(f, p->rows, p->w, p->h) == 0, "%s: png_write failed", what);
    REQUIRE(fclose(f) == 0);
    const uint8_t *d = (const uint8_t *)file;
    size_t n = p->h * (1 + 3 * p->w), ok = 0, len = 0, at = 8, idat = 0;
    uint8_t *z = malloc(size);
    REQUIRE(z);
    int well_formed = size > 8 + 25 && memcmp(d + 12, "IHDR", 4) == 0, ended = 0, sizes = 1;
    size_t last = PNG_IDAT_BYTES; /* the previous IDAT's length */
    while (well_formed && !ended && at + 12 <= size) {
        size_t k = be32(d + at);
        const uint8_t *type = d + at + 4;
        if (at + 12 + k > size || be32(d + at + 8 + k) != crc_ref(type, 4 + k)) {
            well_formed = 0;
            break;
        }
        if (memcmp(type, "IDAT", 4) == 0) {
            /* only the last may be short, none empty or longer */
            sizes = sizes && last == PNG_IDAT_BYTES && k > 0 && k <= PNG_IDAT_BYTES;
            last = k;
            memcpy(z + len, type + 4, k);
            len += k;
            idat++;
        } else if (memcmp(type, "IEND", 4) == 0) {
            ended = at + 12 + k == size && k == 0;
            well_formed = ended;
        } else if (at != 8) {
            well_formed = 0;
        }
        at += 12 + k;
    }
    EXPECT(well_formed && ended && idat > 0 && sizes,
           "%s: expected IHDR, IDATs of %d bytes but the last, IEND, each with its CRC", what,
           PNG_IDAT_BYTES);
    if (well_formed && ended && idat > 0) {
        EXPECT(len >= 6 && (z[0] * 256 + z[1]) % 31 == 0 && (z[0] & 0x0F) == 8 && z[0] >> 4 <= 7,
               "%s: bad zlib header %02x %02x", what, z[0], z[1]);
        int out = 0;
        char *raw = stbi_zlib_decode_malloc((const char *)z, (int)len, &out);
        EXPECT(raw && (size_t)out == n && memcmp(raw, p->rows, n) == 0,
               "%s: the stream does not inflate to the rows (%d of %zu bytes)", what, out, n);
        EXPECT(len >= 4 && be32(z + len - 4) == adler_ref(p->rows, n), "%s: bad Adler-32", what);
        free(raw);
        int w, h, c;
        uint8_t *rgb = stbi_load_from_memory(d, (int)size, &w, &h, &c, 3);
        EXPECT(rgb && (size_t)w == p->w && (size_t)h == p->h, "%s: stb cannot read it: %s", what,
               stbi_failure_reason());
        int same = rgb != NULL;
        for (size_t y = 0; same && y < p->h; y++)
            same = memcmp(rgb + y * 3 * p->w, px(p, 0, y), 3 * p->w) == 0;
        EXPECT(same, "%s: decoded pixels differ", what);
        stbi_image_free(rgb);
        ok = size;
    }
    *n_idat = idat;
    free(z);
    free(file);
    free(p->rows);
    return ok;
}

static size_t round_trip(const char *what, Picture *p) {
    size_t n_idat;
    return round_trip_chunks(what, p, &n_idat);
}

static uint32_t lcg(uint32_t *s) {
    return *s = *s * 1664525u + 1013904223u;
}

int main(void) {
    uint32_t seed = 7;

    /* noise: literals only, of 8 and 9 bits (bytes below and above 144) */
    Picture p = picture_new(61, 17);
    for (size_t y = 0; y < p.h; y++)
        for (size_t x = 0; x < 3 * p.w; x++) px(&p, 0, y)[x] = (uint8_t)(lcg(&seed) >> 24);
    size_t noise = round_trip("noise", &p);
    EXPECT(noise > 61 * 17 * 3, "noise: %zu bytes, smaller than its pixels", noise);

    /* noise whose stream takes several chunks, the last one shorter */
    p = picture_new(128, 3 * PNG_IDAT_BYTES / 384 + 5);
    for (size_t y = 0; y < p.h; y++)
        for (size_t x = 0; x < 3 * p.w; x++) px(&p, 0, y)[x] = (uint8_t)(lcg(&seed) >> 24);
    size_t chunks;
    EXPECT(round_trip_chunks("noise in chunks", &p, &chunks) > 0 && chunks >= 3,
           "noise in chunks: %zu IDAT chunks, expected at least 3", chunks);

    /* one flat colour: runs of the longest match, at least 100 to 1 */
    p = picture_new(500, 400);
    for (size_t y = 0; y < p.h; y++)
        for (size_t x = 0; x < p.w; x++) memcpy(px(&p, x, y), (uint8_t[3]){200, 30, 90}, 3);
    size_t flat = round_trip("flat", &p);
    EXPECT(flat > 0 && flat < 500 * 400 * 3 / 100, "flat: %zu bytes", flat);

    /* row 0: runs of 1 to 100 pixels whose colours' bytes are 0 or 1, so
     * that a run from the left may stop at any byte; rows 1 to 5 repeat the
     * row above but for a byte every 1 to 300: matches of every length */
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

    /* one row whose runs from the left are of every length from 3 to 258:
     * segment L is 3 new bytes, then L bytes repeating them; segments
     * alternate between two ranges of values, so no run goes on into the
     * next one */
    p = picture_new(11400, 1);
    uint8_t *b = px(&p, 0, 0);
    for (int len = 3; len <= 258; len++) {
        for (int j = 0; j < 3; j++) *b++ = (uint8_t)((len % 2) * 128 + (len + j) % 100);
        for (int j = 0; j < len; j++, b++) *b = b[-3];
    }
    EXPECT(round_trip("every length", &p) > 0, "every length");

    /* rows repeating the row above at distances of every distance code from
     * 4 bytes (width 1) up to deflate's window, 32767 bytes (width 10922) */
    static const size_t widths[] = {100, 150, 200, 300, 400, 600, 800, 1200, 1500, 2400, 3000,
                                    4500, 6000, 8192, 10922};
    for (size_t wi = 0; wi < 80 + sizeof widths / sizeof widths[0]; wi++) {
        size_t w = wi < 80 ? wi + 1 : widths[wi - 80];
        p = picture_new(w, 4);
        for (size_t y = 0; y < p.h; y++)
            for (size_t x = 0; x < 3 * w; x++)
                px(&p, 0, y)[x] = y % 2 ? px(&p, 0, y - 1)[x] : (uint8_t)(lcg(&seed) >> 28);
        char what[32];
        snprintf(what, sizeof what, "rows of width %zu", w);
        EXPECT(round_trip(what, &p) > 0, "%s", what);
    }

    /* a row longer than deflate's 32 KiB window: no repeats from above */
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
    EXPECT(png_write(ro, p.rows, p.w, p.h) == -1 && errno != 0,
           "writing to a read-only stream did not fail");
    fclose(ro);
    free(p.rows);

    CHECK_DONE("test_png");
}
