#include "png.h"

#include <pthread.h>
#include <string.h>

#include "common.h"

/* ---- the file's chunks ------------------------------------------------- */

static uint32_t crc_table[256];

/* PNG's CRC-32 (ISO 3309, reflected polynomial 0xEDB88320), a byte at a time. */
static void crc_table_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return crc;
}

static void put_be32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}

typedef struct {
    FILE *f;
    int failed;
} PngSink;

static void png_put(PngSink *s, const void *data, size_t n) {
    if (n && fwrite(data, 1, n, s->f) != n) s->failed = 1;
}

/* One chunk: data length, type, data, and the CRC of type and data. */
static void png_chunk(PngSink *s, const char type[4], const uint8_t *data, size_t n) {
    uint8_t head[8], crc[4];
    put_be32(head, (uint32_t)n);
    memcpy(head + 4, type, 4);
    put_be32(crc, ~crc_update(crc_update(~0u, head + 4, 4), data, n));
    png_put(s, head, 8);
    png_put(s, data, n);
    png_put(s, crc, 4);
}

/* ---- deflate (RFC 1950 and 1951) ------------------------------------------- */

/* The pictures are flat cells, margins and text: nearly every byte repeats
 * the pixel to its left or the one above it. The encoder takes, at each
 * byte, the longer of the runs matching 3 bytes back and one row back, or a
 * literal when neither is 3 long, and codes them with deflate's fixed Huffman
 * codes: no match search, no tables to send, one pass. */

#define MATCH_MIN 3
#define MATCH_MAX 258
#define WINDOW 32768 /* deflate's farthest match */
#define PIXEL 3      /* bytes per RGB pixel */

typedef struct {
    uint32_t bits; /* code, first bit lowest, then any extra bits */
    int n;         /* its length in bits */
} Code;

static Code literal_code[257], length_code[MATCH_MAX + 1];

static const uint16_t length_base[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,
                                         15, 17, 19, 23, 27, 31, 35, 43, 51,  59,
                                         67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint16_t distance_base[30] = {1,    2,    3,    4,    5,    7,     9,     13,
                                           17,   25,   33,   49,   65,   97,    129,   193,
                                           257,  385,  513,  769,  1025, 1537,  2049,  3073,
                                           4097, 6145, 8193, 12289, 16385, 24577};

/* Huffman codes are sent from their top bit, the stream fills bytes from the
 * lowest: codes go in reversed. */
static uint32_t bit_reverse(uint32_t c, int n) {
    uint32_t r = 0;
    for (int i = 0; i < n; i++) r |= (c >> i & 1) << (n - 1 - i);
    return r;
}

/* The fixed literal/length code of symbol s (RFC 1951, 3.2.6). */
static Code fixed_code(int s) {
    if (s < 144) return (Code){bit_reverse(0x30 + s, 8), 8};
    if (s < 256) return (Code){bit_reverse(0x190 + s - 144, 9), 9};
    if (s < 280) return (Code){bit_reverse(s - 256, 7), 7};
    return (Code){bit_reverse(0xC0 + s - 280, 8), 8};
}

/* The literal codes, and each match length's symbol code followed by its
 * extra bits, so a match costs one table look-up. */
static void code_tables_init(void) {
    for (int s = 0; s < 257; s++) literal_code[s] = fixed_code(s);
    for (int c = 0; c < 29; c++) {
        int extra = c < 8 || c == 28 ? 0 : (c - 4) / 4;
        Code sym = fixed_code(257 + c);
        int end = c == 28 ? MATCH_MAX + 1 : length_base[c + 1];
        for (int len = length_base[c]; len < end; len++)
            length_code[len] = (Code){sym.bits | (uint32_t)(len - length_base[c]) << sym.n,
                                      sym.n + extra};
    }
}

/* A distance's 5-bit code followed by its extra bits. */
static Code distance_code(size_t d) {
    int c = 29;
    while (distance_base[c] > d) c--;
    int extra = c < 4 ? 0 : c / 2 - 1;
    return (Code){bit_reverse((uint32_t)c, 5) | (uint32_t)(d - distance_base[c]) << 5, 5 + extra};
}

/* ---- the compressed stream ------------------------------------------------ */

/* The zlib stream goes to the file in IDAT chunks as it is made, so encoding
 * a picture of any size takes this buffer beside its rows. */
typedef struct {
    PngSink *sink;
    uint8_t chunk[PNG_IDAT_BYTES];
    size_t n;     /* bytes in chunk */
    uint64_t acc; /* bits not yet in chunk, first bit lowest */
    int bits;
} BitStream;

/* Sends the full chunk on when fewer than k bytes are free in it. */
static void bits_room(BitStream *b, size_t k) {
    if (b->n + k <= PNG_IDAT_BYTES) return;
    png_chunk(b->sink, "IDAT", b->chunk, b->n);
    b->n = 0;
}

static void bits_put(BitStream *b, Code c) {
    b->acc |= (uint64_t)c.bits << b->bits;
    b->bits += c.n;
    if (b->bits < 32) return;
    bits_room(b, 4);
    for (int i = 0; i < 4; i++) b->chunk[b->n++] = (uint8_t)(b->acc >> 8 * i);
    b->acc >>= 32;
    b->bits -= 32;
}

/* Length of the run at d[i..] that repeats the bytes dist back, compared 8
 * bytes at a time (the first differing byte is the lowest set one of the
 * xor on a little-endian machine, the highest on a big-endian one). */
static size_t run_length(const uint8_t *d, size_t i, size_t n, size_t dist) {
    size_t most = n - i < MATCH_MAX ? n - i : MATCH_MAX, k = 0;
    const uint8_t *a = d + i, *s = d + i - dist;
    for (; k + 8 <= most; k += 8) {
        uint64_t x, y;
        memcpy(&x, a + k, 8);
        memcpy(&y, s + k, 8);
        if (x != y) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return k + (size_t)__builtin_ctzll(x ^ y) / 8;
#else
            return k + (size_t)__builtin_clzll(x ^ y) / 8;
#endif
        }
    }
    while (k < most && a[k] == s[k]) k++;
    return k;
}

/* Over a block of m bytes, s1 gains their sum and s2 gains m s1 plus
 * sum (m - j) d[j]: two independent sums, which the compiler vectorizes,
 * instead of a chain through s1 at every byte. */
#define ADLER_BLOCK 4096 /* sum j d[j] < 255 * 4096^2 / 2 fits 32 bits */
static uint32_t adler32(const uint8_t *d, size_t n) {
    uint64_t s1 = 1, s2 = 0;
    for (size_t i = 0; i < n; i += ADLER_BLOCK) {
        size_t m = n - i < ADLER_BLOCK ? n - i : ADLER_BLOCK;
        uint32_t sum = 0, weighted = 0;
        for (size_t j = 0; j < m; j++) {
            sum += d[i + j];
            weighted += (uint32_t)j * d[i + j];
        }
        s2 = (s2 + m * s1 + (uint64_t)m * sum - weighted) % 65521;
        s1 = (s1 + sum) % 65521;
    }
    return (uint32_t)(s2 << 16 | s1);
}

/* The zlib stream of d[0, n), rows of `row` bytes, as IDAT chunks into s. */
static void zlib_stream(PngSink *s, const uint8_t *d, size_t n, size_t row) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, code_tables_init);
    BitStream b = {.sink = s};
    bits_put(&b, (Code){0x0178, 16}); /* CMF 0x78 (deflate, 32 KiB window), FLG 0x01 */
    bits_put(&b, (Code){3, 3});       /* the final block, fixed codes */
    int up = row <= WINDOW;
    Code left_dist = distance_code(PIXEL), up_dist = up ? distance_code(row) : (Code){0, 0};
    for (size_t i = 0; i < n;) {
        size_t left = i >= PIXEL ? run_length(d, i, n, PIXEL) : 0, above = 0;
        if (up && i >= row && left < MATCH_MAX) above = run_length(d, i, n, row);
        if (left < MATCH_MIN && above < MATCH_MIN) {
            bits_put(&b, literal_code[d[i++]]);
        } else if (above > left) {
            bits_put(&b, length_code[above]);
            bits_put(&b, up_dist);
            i += above;
        } else {
            bits_put(&b, length_code[left]);
            bits_put(&b, left_dist);
            i += left;
        }
    }
    bits_put(&b, literal_code[256]);               /* end of block */
    bits_put(&b, (Code){0, (8 - b.bits % 8) % 8}); /* to a byte boundary */
    uint32_t check = adler32(d, n);
    for (int i = 0; i < 4; i++) bits_put(&b, (Code){check >> (24 - 8 * i) & 0xFF, 8});
    /* the bits left fill whole bytes, at most 4; none: no empty IDAT */
    bits_room(&b, (size_t)(b.bits + 7) / 8);
    for (; b.bits > 0; b.bits -= 8, b.acc >>= 8) b.chunk[b.n++] = (uint8_t)b.acc;
    png_chunk(s, "IDAT", b.chunk, b.n);
}

/* ---- the file ------------------------------------------------------------ */

int png_write(FILE *f, const uint8_t *rows, size_t w, size_t h) {
    CHECK(w > 0 && h > 0, "png_write: a %zu x %zu picture (PNG needs at least 1 x 1)", w, h);
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc_table_init);
    static const uint8_t signature[8] = {137, 'P', 'N', 'G', '\r', '\n', 26, '\n'};
    uint8_t ihdr[13] = {0};
    put_be32(ihdr, (uint32_t)w);
    put_be32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8; /* bits per sample; compression, filter and interlace methods stay 0 */
    ihdr[9] = 2; /* colour type: RGB */
    size_t row = 1 + PIXEL * w;
    PngSink s = {f, 0};
    png_put(&s, signature, 8);
    png_chunk(&s, "IHDR", ihdr, sizeof ihdr);
    zlib_stream(&s, rows, h * row, row);
    png_chunk(&s, "IEND", NULL, 0);
    return s.failed ? -1 : 0;
}
