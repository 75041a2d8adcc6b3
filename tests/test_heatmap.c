/* Unit tests of src/observe/heatmap.c: pictures of known matrices are written to a
 * temp folder, decoded with stb_image and checked pixel by pixel against the
 * layout documented at the top of heatmap.c (the formulas are restated here
 * on purpose, so that a layout change has to change both). */
#include "heatmap.h"
#include "png.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image.h>

#include "check.h"

/* no lent memory: the picture is drawn on the heap */
static const Span on_heap = {NULL, 0};

static char dir[256];

static const char *at(const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

/* ---- decoded pictures --------------------------------------------------- */

typedef struct {
    unsigned char *px;
    int w, h;
} Png;

/* CRC-32 as the PNG specification gives it, bit by bit (the writer uses a
 * table). */
static uint32_t crc_bits(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The file's structure, which stb's decoder does not check: the signature,
 * IHDR first (8-bit RGB, no interlace), every chunk's CRC, IEND last. */
static void png_check_file(const char *path) {
    FILE *f = fopen(path, "rb");
    EXPECT(f, "%s: cannot open", path);
    if (!f) return;
    static unsigned char d[1 << 22];
    size_t n = fread(d, 1, sizeof d, f);
    fclose(f);
    static const unsigned char sig[8] = {137, 'P', 'N', 'G', '\r', '\n', 26, '\n'};
    EXPECT(n >= 8 && n < sizeof d && memcmp(d, sig, 8) == 0, "%s: no PNG signature", path);
    size_t at = 8;
    int chunks = 0, ended = 0;
    while (!ended && at + 12 <= n) {
        size_t len = be32(d + at);
        const unsigned char *type = d + at + 4;
        if (at + 12 + len > n) break;
        EXPECT(be32(type + 4 + len) == crc_bits(type, 4 + len), "%s: chunk %.4s: bad CRC", path,
               (const char *)type);
        if (chunks++ == 0) {
            static const unsigned char rgb8[5] = {8, 2, 0, 0, 0};
            EXPECT(memcmp(type, "IHDR", 4) == 0 && len == 13 && !memcmp(type + 12, rgb8, 5),
                   "%s: does not start with an 8-bit RGB IHDR", path);
        }
        ended = memcmp(type, "IEND", 4) == 0;
        at += 12 + len;
    }
    EXPECT(ended && at == n, "%s: does not end with IEND", path);
}

/* Loads path (NULL pixels if it cannot be read), checks its chunks and that
 * the writer left no temp file behind. */
static Png png_load(const char *path) {
    Png p = {0};
    int n;
    png_check_file(path);
    p.px = stbi_load(path, &p.w, &p.h, &n, 3);
    EXPECT(p.px, "%s: %s", path, stbi_failure_reason());
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    EXPECT(access(tmp, F_OK) != 0, "%s left behind", tmp);
    return p;
}

static void png_free(Png *p, const char *path) {
    stbi_image_free(p->px);
    unlink(path);
}

static const unsigned char *pixel(const Png *p, int x, int y) {
    static const unsigned char outside[3] = {1, 2, 3};
    if (!p->px || x < 0 || y < 0 || x >= p->w || y >= p->h) return outside;
    return p->px + ((size_t)y * (size_t)p->w + (size_t)x) * 3;
}

static int is_rgb(const unsigned char *c, uint32_t rgb) {
    return c[0] == (rgb >> 16 & 0xFF) && c[1] == (rgb >> 8 & 0xFF) && c[2] == (rgb & 0xFF);
}

#define EXPECT_RGB(p, x, y, rgb, what)                                                      \
    do {                                                                                    \
        const unsigned char *c_ = pixel((p), (x), (y));                                     \
        EXPECT(is_rgb(c_, (rgb)), "%s at (%d, %d): got #%02X%02X%02X, want #%06X", (what), \
               (x), (y), c_[0], c_[1], c_[2], (unsigned)(rgb));                             \
    } while (0)

static uint32_t pack(const uint8_t c[3]) {
    return (uint32_t)c[0] << 16 | (uint32_t)c[1] << 8 | c[2];
}

static uint32_t viridis(float v) {
    uint8_t c[3];
    heatmap_viridis(v, c);
    return pack(c);
}

/* Non-white pixels in [x, x + w) x [y, y + h). */
static int ink_in(const Png *p, int x, int y, int w, int h) {
    int n = 0;
    for (int yy = y; yy < y + h; yy++)
        for (int xx = x; xx < x + w; xx++) n += !is_rgb(pixel(p, xx, yy), 0xFFFFFF);
    return n;
}

/* Columns [first, last] holding ink in the rows [y, y + h), as a width
 * (0 when there is none). */
static int ink_width(const Png *p, int x, int y, int w, int h) {
    int first = -1, last = -1;
    for (int xx = x; xx < x + w; xx++)
        if (ink_in(p, xx, y, 1, h)) {
            if (first < 0) first = xx;
            last = xx;
        }
    return first < 0 ? 0 : last - first + 1;
}

static int text_w(const char *s) {
    return (int)strlen(s) * 6 - 1;
}

/* Whether the ink in the box spans the width of text s: at most its advance
 * width, and less only by the blank columns a first or last glyph may have. */
static int has_text(const Png *p, int x, int y, int w, int h, const char *s) {
    int iw = ink_width(p, x, y, w, h);
    return iw <= text_w(s) && iw >= text_w(s) - 4;
}

static int imax(int a, int b) {
    return a > b ? a : b;
}

#define VIRIDIS_TOP 0xFDE725u
#define VIRIDIS_BOTTOM 0x440154u

/* A vertical viridis colour bar at (x, y), h px: exact ends, green rising
 * monotonically from bottom to top (viridis' green channel is monotone). */
static void check_viridis_bar(const Png *p, int x, int y, int h, const char *what) {
    EXPECT_RGB(p, x + 7, y, VIRIDIS_TOP, what);
    EXPECT_RGB(p, x + 7, y + h - 1, VIRIDIS_BOTTOM, what);
    EXPECT(is_rgb(pixel(p, x - 1, y + h / 2), 0xFFFFFF), "%s: no white left of the bar", what);
    for (int i = 1; i < h; i++)
        EXPECT(pixel(p, x + 7, y + i - 1)[1] >= pixel(p, x + 7, y + i)[1],
               "%s: green not monotone at bar row %d", what, i);
    EXPECT(ink_in(p, x + 18, y - 4, 20, h + 8) > 0, "%s: bar labels missing", what);
}

/* ---- colour map --------------------------------------------------------- */

static void test_viridis(void) {
    EXPECT(viridis(1.0f) == VIRIDIS_TOP, "viridis(1) = #%06X", viridis(1.0f));
    EXPECT(viridis(0.0f) == VIRIDIS_BOTTOM, "viridis(0) = #%06X", viridis(0.0f));
    EXPECT(viridis(7.0f) == VIRIDIS_TOP && viridis(-1.0f) == VIRIDIS_BOTTOM, "no clamping");
    EXPECT(viridis(NAN) == VIRIDIS_BOTTOM, "NAN = #%06X", viridis(NAN));
    EXPECT(viridis(0.5f) == 0x21918Cu, "viridis(0.5) = #%06X", viridis(0.5f));
    /* The mask must not be mistaken for any weight. */
    int worst = 1 << 30;
    for (int i = 0; i <= 1000; i++) {
        uint32_t c = viridis((float)i / 1000.0f);
        int d = 0;
        for (int k = 0; k < 3; k++) {
            int a = (int)(c >> (8 * k) & 0xFF), b = (int)(HEATMAP_MASK_RGB >> (8 * k) & 0xFF);
            d += (a - b) * (a - b);
        }
        if (d < worst) worst = d;
    }
    EXPECT(worst > 100 * 100, "mask colour within %.0f of viridis", sqrt(worst));
}

/* ---- layer -------------------------------------------------------------- */

/* The documented panel layout: cell side e, map side n = T e. */
typedef struct {
    int e, n, pitch_x, pitch_y, w, h, bar_x, bar_h;
} Panels;

static Panels panels(int cols, int rows, int T) {
    Panels g;
    g.e = 10 * T <= 640 ? 10 : imax(1, 640 / T);
    g.n = T * g.e;
    g.pitch_x = 12 + imax(g.n, 84) + 14;
    g.pitch_y = 14 + 12 + g.n + 14;
    g.w = cols * g.pitch_x + 57;
    g.h = 20 + imax(rows * g.pitch_y - 14, 26 + imax(g.n, 80));
    g.bar_x = 10 + cols * g.pitch_x - 14 + 16;
    g.bar_h = imax(g.n, 80);
    return g;
}

static int cell_x(const Panels *g, int c, int j) {
    return 10 + c * g->pitch_x + 12 + g->e * j;
}

static int cell_y(const Panels *g, int r, int i) {
    return 10 + r * g->pitch_y + 26 + g->e * i;
}

/* The 5 x 9 ink pattern of the key label above column j, as 45 bits. */
static uint64_t key_glyph(const Png *p, const Panels *g, int j) {
    uint64_t bits = 0;
    int x = cell_x(g, 0, j) + 2, y = cell_y(g, 0, 0) - 11;
    for (int yy = 0; yy < 9; yy++)
        for (int xx = 0; xx < 5; xx++) bits = bits << 1 | (uint64_t)ink_in(p, x + xx, y + yy, 1, 1);
    return bits;
}

/* heatmap_layer_grid, which the report page reads, against the picture and
 * the documented layout. */
static void check_layer_grid(const Png *p, int NH, int T, const Panels *g, int cols) {
    HeatmapGrid hg = heatmap_layer_grid(NH, T);
    EXPECT((int)hg.width == p->w && (int)hg.height == p->h,
           "NH %d T %d: grid %zu x %zu, picture %d x %d", NH, T, hg.width, hg.height, p->w, p->h);
    EXPECT((int)hg.panel_w == g->pitch_x - 14 && (int)hg.panel_h == g->pitch_y - 14,
           "NH %d T %d: panel %zu x %zu", NH, T, hg.panel_w, hg.panel_h);
    for (int h = 0; h < NH; h++) {
        size_t x, y;
        heatmap_layer_panel(&hg, h, &x, &y);
        EXPECT((int)x == 10 + h % cols * g->pitch_x && (int)y == 10 + h / cols * g->pitch_y,
               "NH %d T %d: head %d's panel at %zu, %zu", NH, T, h, x, y);
    }
}

static void test_layer(void) {
    enum { NH = 3, T = 5 };
    float att[NH * T * T];
    for (int h = 0; h < NH; h++)
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++) {
                float v = j > i ? 0.5f : h == 0 ? (i == j ? 1.0f : 0.0f) : 0.5f;
                att[(h * T + i) * T + j] = v; /* masked entries hold junk on purpose */
            }
    const uint32_t chars[T] = {'a', ' ', '\n', 0xE9, '\t'};
    Error err = {{0}};
    const char *path = at("layer.png");
    EXPECT(heatmap_write_layer(path, att, NH, T, chars, 7, on_heap, &err) == 0, "%s", err.msg);
    Png p = png_load(path);
    Panels g = panels(2, 2, T); /* 3 heads: 2 columns, 2 rows */
    EXPECT(p.w == g.w && p.h == g.h, "size %d x %d, want %d x %d", p.w, p.h, g.w, g.h);
    check_layer_grid(&p, NH, T, &g, 2);

    /* head 0 (panel 0, 0): diagonal 1, below it 0, above it masked */
    for (int i = 0; i < T; i++)
        for (int j = 0; j < T; j++)
            EXPECT_RGB(&p, cell_x(&g, 0, j) + 5, cell_y(&g, 0, i) + 5,
                       j > i ? HEATMAP_MASK_RGB : i == j ? VIRIDIS_TOP : VIRIDIS_BOTTOM, "head 0");
    /* the whole cell has its colour, corners included */
    EXPECT_RGB(&p, cell_x(&g, 0, 2), cell_y(&g, 0, 2), VIRIDIS_TOP, "cell corner");
    EXPECT_RGB(&p, cell_x(&g, 0, 2) + 9, cell_y(&g, 0, 2) + 9, VIRIDIS_TOP, "cell corner");
    /* head 2 sits in panel (0, 1); head 1 in (1, 0) */
    EXPECT_RGB(&p, cell_x(&g, 0, 1) + 5, cell_y(&g, 1, 3) + 5, 0x21918Cu, "head 2 weight 0.5");
    EXPECT_RGB(&p, cell_x(&g, 1, 0) + 5, cell_y(&g, 0, 4) + 5, 0x21918Cu, "head 1 weight 0.5");
    EXPECT_RGB(&p, cell_x(&g, 1, 3) + 5, cell_y(&g, 0, 1) + 5, HEATMAP_MASK_RGB, "head 1 mask");

    for (int k = 0; k < NH; k++) {
        int c = k % 2, r = k / 2;
        int cx = cell_x(&g, c, 0), cy = cell_y(&g, r, 0), px = 10 + c * g.pitch_x;
        char title[32];
        snprintf(title, sizeof title, "L7 H%d", k);
        EXPECT(has_text(&p, px, cy - 26, g.pitch_x - 14, 14, title),
               "head %d: title ink %d px wide", k, ink_width(&p, px, cy - 26, g.pitch_x - 14, 14));
        for (int i = 0; i < T; i++) {
            EXPECT(ink_in(&p, px, cy + 10 * i, 12 - 4, 10) > 0, "head %d: no query label %d", k, i);
            EXPECT(ink_in(&p, cx + 10 * i, cy - 12, 10, 12) > 0, "head %d: no key label %d", k, i);
        }
        /* blank: the 4 px between query labels and cells, and the panel
         * column right of the cells (T * CELL < 84) */
        EXPECT(ink_in(&p, cx - 4, cy, 4, 10 * T) == 0, "head %d: ink next to the cells", k);
        EXPECT(ink_in(&p, cx + 10 * T, cy - 12, 84 - 10 * T, 12 + 10 * T) == 0,
               "head %d: ink right of the cells", k);
    }
    /* the fourth grid slot stays empty; so do the margins */
    EXPECT(ink_in(&p, 10 + g.pitch_x, 10 + g.pitch_y, g.pitch_x - 14, g.pitch_y - 14) == 0,
           "empty slot not blank");
    EXPECT(ink_in(&p, 0, 0, g.w, 10) == 0 && ink_in(&p, 0, 0, 10, g.h) == 0, "margin not blank");
    /* space, newline, non-ASCII and tab have visible glyphs, all different */
    uint64_t glyph[T];
    for (int j = 0; j < T; j++) glyph[j] = key_glyph(&p, &g, j);
    for (int a = 0; a < T; a++)
        for (int b = a + 1; b < T; b++)
            EXPECT(glyph[a] != glyph[b], "labels %d and %d look the same", a, b);
    check_viridis_bar(&p, g.bar_x, 36, g.bar_h, "layer bar");
    png_free(&p, path);

    /* one head: one panel; T = 10 fills the minimum panel width */
    float one[100] = {0};
    uint32_t ten[10];
    for (int i = 0; i < 10; i++) ten[i] = (uint32_t)('0' + i);
    EXPECT(heatmap_write_layer(path, one, 1, 10, ten, 0, on_heap, &err) == 0, "%s", err.msg);
    p = png_load(path);
    g = panels(1, 1, 10);
    EXPECT(p.w == g.w && p.h == g.h, "size %d x %d, want %d x %d", p.w, p.h, g.w, g.h);
    check_layer_grid(&p, 1, 10, &g, 1);
    check_viridis_bar(&p, g.bar_x, 36, g.bar_h, "one-head bar");
    png_free(&p, path);

    /* a long window: 2 px cells (map 512 px, not 2560), a glyph every 5th
     * position */
    enum { TL = 256 };
    static float diag[TL * TL];
    static uint32_t letters[TL];
    for (int i = 0; i < TL; i++) {
        diag[i * TL + i] = 1.0f;
        letters[i] = 'a' + (uint32_t)(i % 26);
    }
    EXPECT(heatmap_write_layer(path, diag, 1, TL, letters, 0, on_heap, &err) == 0, "%s", err.msg);
    p = png_load(path);
    g = panels(1, 1, TL);
    EXPECT(g.e == 2 && p.w == g.w && p.h == g.h, "T = %d: size %d x %d, want %d x %d", TL, p.w,
           p.h, g.w, g.h);
    check_layer_grid(&p, 1, TL, &g, 1);
    for (int i = 0; i < TL; i += 51) {
        EXPECT_RGB(&p, cell_x(&g, 0, i) + 1, cell_y(&g, 0, i) + 1, VIRIDIS_TOP, "long diagonal");
        if (i > 0)
            EXPECT_RGB(&p, cell_x(&g, 0, i - 1), cell_y(&g, 0, i), VIRIDIS_BOTTOM, "long below");
    }
    int cy = cell_y(&g, 0, 0);
    EXPECT(ink_in(&p, cell_x(&g, 0, 5), cy - 12, 2, 12) > 0, "no key label at position 5");
    EXPECT(ink_in(&p, cell_x(&g, 0, 7) + 1, cy - 12, 1, 12) == 0, "key label at position 7");
    png_free(&p, path);
}

/* ---- compare ------------------------------------------------------------ */

static void test_compare(void) {
    enum { NH = 2, T = 3 };
    float a[NH * T * T], b[NH * T * T];
    for (int k = 0; k < NH * T * T; k++) {
        int i = k / T % T, j = k % T;
        a[k] = i == j ? 1.0f : 0.75f;
        b[k] = i == j ? 0.0f : 0.25f;
    }
    const uint32_t chars[T] = {'x', 'y', 'z'};
    Error err = {{0}};
    const char *path = at("compare.png");
    EXPECT(heatmap_write_compare(path, a, b, NH, T, chars, 1, &err) == 0, "%s", err.msg);
    Png p = png_load(path);
    Panels g = panels(3, NH, T);
    EXPECT(p.w == g.w && p.h == g.h, "size %d x %d, want %d x %d", p.w, p.h, g.w, g.h);
    for (int r = 0; r < NH; r++) {
        EXPECT_RGB(&p, cell_x(&g, 0, 1) + 5, cell_y(&g, r, 1) + 5, VIRIDIS_TOP, "A diagonal");
        EXPECT_RGB(&p, cell_x(&g, 1, 1) + 5, cell_y(&g, r, 1) + 5, VIRIDIS_BOTTOM, "B diagonal");
        EXPECT_RGB(&p, cell_x(&g, 2, 1) + 5, cell_y(&g, r, 1) + 5, VIRIDIS_TOP, "|A-B| diagonal");
        EXPECT_RGB(&p, cell_x(&g, 0, 0) + 5, cell_y(&g, r, 2) + 5, viridis(0.75f), "A below");
        EXPECT_RGB(&p, cell_x(&g, 2, 0) + 5, cell_y(&g, r, 2) + 5, 0x21918Cu, "|A-B| below");
        for (int c = 0; c < 3; c++) {
            EXPECT_RGB(&p, cell_x(&g, c, 2) + 5, cell_y(&g, r, 0) + 5, HEATMAP_MASK_RGB, "masked");
            static const char *const which[3] = {"A", "B", "|A-B|"};
            char title[32];
            snprintf(title, sizeof title, "L1 H%d %s", r, which[c]);
            int px = 10 + c * g.pitch_x, py = 10 + r * g.pitch_y;
            EXPECT(has_text(&p, px, py, g.pitch_x - 14, 14, title), "title \"%s\"", title);
            EXPECT(ink_in(&p, px, cell_y(&g, r, 1), 8, 10) > 0, "no query label");
        }
    }
    check_viridis_bar(&p, g.bar_x, 36, g.bar_h, "compare bar");
    png_free(&p, path);
}

/* ---- lent memory --------------------------------------------------------- */

static unsigned char *file_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    REQUIRE(f);
    REQUIRE(fseek(f, 0, SEEK_END) == 0);
    long len = ftell(f);
    REQUIRE(len >= 0 && fseek(f, 0, SEEK_SET) == 0);
    unsigned char *d = malloc((size_t)len + 1);
    REQUIRE(d && fread(d, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return d;
}

static size_t count_byte(const unsigned char *p, size_t n, unsigned char b) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += p[i] == b;
    return k;
}

/* Picture `kind` (0: a layer, 1: a filmstrip, 2: a Q/K balance) written to
 * path, drawn in mem. */
static int write_kind(int kind, const char *path, Span mem, Error *err) {
    enum { NH = 3, T = 7 };
    static float att[2 * NH * T * T]; /* two steps' maps of every head */
    for (int k = 0; k < 2 * NH * T * T; k++) att[k] = (float)(k % 11) / 10.0f;
    const uint32_t chars[T] = {'q', 'k', ' ', 'x', '\n', 'y', 'z'};
    const float *maps[2] = {att, att + NH * T * T};
    const int steps[2] = {0, 40};
    const char *const labels[NH] = {"L0 H0", "L0 H1", "L0 H2"};
    if (kind == 2) return heatmap_write_balance(path, att, NH, 2 * T, labels, 40, mem, err);
    return kind ? heatmap_write_filmstrip(path, maps, steps, 2, NH, T, 0, mem, err)
                : heatmap_write_layer(path, att, NH, T, chars, 0, mem, err);
}

/* Whether p holds the picture's rows as stb_image_write filters them, Up:
 * each row a filter byte 2 and its bytes less those of the row above. */
static int holds_filtered_rows(const unsigned char *p, const Png *png) {
    size_t row = 3 * (size_t)png->w;
    for (size_t y = 0; y < (size_t)png->h; y++) {
        const unsigned char *f = p + y * (row + 1), *now = png->px + y * row;
        if (f[0] != 2) return 0;
        for (size_t i = 0; i < row; i++)
            if (f[1 + i] != (unsigned char)(now[i] - (y ? now[i - row] : 0))) return 0;
    }
    return 1;
}

/* The pictures the trainer draws (a layer, a filmstrip, a Q/K balance) drawn
 * in lent memory are the files drawn on the heap, byte for byte, whatever the
 * span, and nothing is written past its end. In a span that holds the
 * picture png_lead bytes in exactly, the picture is drawn there and filtered
 * in place: the span then starts with the filtered rows and ends with the
 * picture's last row. In a span one byte short the picture goes to the heap
 * and the span holds the encoder's filtered copy only. In a span of three
 * pictures the picture is drawn in place and the encoder's other buffers
 * (zlib's state) go after it. */
static void test_lent_memory(void) {
    enum { GUARD = 64 };
    Error err = {{0}};
    char heap_path[512];
    static const char *const kinds[3] = {"layer", "filmstrip", "Q/K balance"};
    static const char *const spans[3] = {"exact", "one byte short", "of three pictures"};
    for (int k = 0; k < 3; k++) {
        const char *kind = kinds[k];
        snprintf(heap_path, sizeof heap_path, "%s", at("heap.png"));
        EXPECT(write_kind(k, heap_path, on_heap, &err) == 0, "%s", err.msg);
        Png p = png_load(heap_path);
        REQUIRE(p.px);
        size_t row = 3 * (size_t)p.w, size = (size_t)p.h * row;
        size_t need = png_lead((size_t)p.w, (size_t)p.h) + size, na;
        unsigned char *heap = file_bytes(heap_path, &na), *lent = malloc(3 * need + GUARD);
        REQUIRE(lent);
        for (int sp = 0; sp < 3; sp++) {
            size_t n = sp == 0 ? need : sp == 1 ? need - 1 : 3 * need;
            memset(lent, 0xA5, n + GUARD);
            Span mem = {lent, n};
            EXPECT(write_kind(k, at("lent.png"), mem, &err) == 0, "%s", err.msg);
            size_t nb;
            unsigned char *b = file_bytes(at("lent.png"), &nb);
            EXPECT(na == nb && memcmp(heap, b, na) == 0, "%s, span %s: the file differs", kind,
                   spans[sp]);
            free(b);
            unlink(at("lent.png"));
            EXPECT(count_byte(lent + n, GUARD, 0xA5) == GUARD,
                   "%s, span %s: the bytes after the span were written", kind, spans[sp]);
            EXPECT(holds_filtered_rows(lent, &p), "%s, span %s: no filtered rows at its start",
                   kind, spans[sp]);
            int drawn = memcmp(lent + need - row, p.px + size - row, row) == 0;
            EXPECT(drawn == (sp != 1), "%s, span %s: the picture %s drawn in the span", kind,
                   spans[sp], drawn ? "was" : "was not");
            if (sp == 2)
                EXPECT(count_byte(lent + need, n - need, 0xA5) < n - need,
                       "%s: the encoder left the span after the picture unused", kind);
        }
        stbi_image_free(p.px);
        free(lent);
        free(heap);
        unlink(heap_path);
    }
}

/* ---- filmstrip ---------------------------------------------------------- */

static void test_filmstrip(void) {
    enum { NH = 2, T = 4, NS = 3 };
    float m[NS][NH * T * T];
    const float *maps[NS];
    for (int s = 0; s < NS; s++) {
        for (int k = 0; k < NH * T * T; k++) m[s][k] = 0.0f;
        maps[s] = m[s];
    }
    m[1][(1 * T + 3) * T + 1] = 1.0f; /* step 1, head 1, query 3, key 1 */
    const int steps[NS] = {0, 500, 12000};
    Error err = {{0}};
    const char *path = at("film.png");
    EXPECT(heatmap_write_filmstrip(path, maps, steps, NS, NH, T, 5, on_heap, &err) == 0, "%s",
           err.msg);
    Png p = png_load(path);
    int f = 24, side = T * f, x0 = 10 + text_w("H1") + 6, y0 = 36;
    int bar_x = x0 + NS * (side + 8) - 8 + 16;
    int w = imax(bar_x + 35 + 10, text_w("L5 attention over training") + 20);
    int h = y0 + imax(NH * (side + 8) - 8, imax(side, 80)) + 10;
    EXPECT(p.w == w && p.h == h, "size %d x %d, want %d x %d", p.w, p.h, w, h);
    for (int s = 0; s < NS; s++)
        for (int hd = 0; hd < NH; hd++) {
            int tx = x0 + s * (side + 8), ty = y0 + hd * (side + 8);
            int one = s == 1 && hd == 1;
            EXPECT_RGB(&p, tx + f + f / 2, ty + 3 * f + f / 2, one ? VIRIDIS_TOP : VIRIDIS_BOTTOM,
                       "thumbnail cell");
            EXPECT_RGB(&p, tx + 3 * f + f / 2, ty + f / 2, HEATMAP_MASK_RGB, "thumbnail mask");
            EXPECT_RGB(&p, tx, ty + side - 1, VIRIDIS_BOTTOM, "thumbnail corner");
            EXPECT(is_rgb(pixel(&p, tx + side, ty + side - 1), 0xFFFFFF), "thumbnail too wide");
        }
    for (int s = 0; s < NS; s++) {
        char label[16];
        snprintf(label, sizeof label, "%d", steps[s]);
        EXPECT(has_text(&p, x0 + s * (side + 8), y0 - 12, side, 12, label), "step label %s", label);
    }
    for (int hd = 0; hd < NH; hd++)
        EXPECT(has_text(&p, 0, y0 + hd * (side + 8), x0, side, "H0"), "row label %d", hd);
    EXPECT(has_text(&p, 0, 0, w, 24, "L5 attention over training"), "title");
    check_viridis_bar(&p, bar_x, y0, imax(side, 80), "filmstrip bar");
    png_free(&p, path);

    /* a longer probe: 2 px per cell, then 1 */
    static float big[64 * 64];
    const float *one[1] = {big};
    const int step0[1] = {0};
    EXPECT(heatmap_write_filmstrip(path, one, step0, 1, 1, 64, 0, on_heap, &err) == 0, "%s",
           err.msg);
    p = png_load(path);
    bar_x = x0 + 128 + 8 - 8 + 16;
    EXPECT(p.w == imax(bar_x + 45, text_w("L0 attention over training") + 20) &&
               p.h == y0 + 128 + 10, "T = 64: size %d x %d", p.w, p.h);
    png_free(&p, path);
    static float wide[128 * 128];
    const float *w128[1] = {wide};
    EXPECT(heatmap_write_filmstrip(path, w128, step0, 1, 1, 128, 0, on_heap, &err) == 0, "%s",
           err.msg);
    p = png_load(path);
    EXPECT(p.h == y0 + 128 + 10, "T = 128: height %d", p.h);
    png_free(&p, path);
}

/* ---- balance ------------------------------------------------------------ */

static const char balance_title[] =
    "log2(gq_norm / gk_norm): red = query gradient larger, blue = key larger";

static void test_balance(void) {
    const float vals[8] = {1.0f, -1.0f, 0.0f, NAN, 0.5f, -0.5f, 2.0f, -2.0f};
    const char *const labels[2] = {"L0 H0", "L10 H3"};
    Error err = {{0}};
    const char *path = at("balance.png");
    /* 4 columns of 10 steps each, over the fixed 480 px: 120 px a column */
    EXPECT(heatmap_write_balance(path, vals, 2, 4, labels, 40, on_heap, &err) == 0, "%s", err.msg);
    Png p = png_load(path);
    int x0 = 10 + text_w("L10 H3") + 6, y0 = 24, gw = 480, gh = 24;
    int bar_x = x0 + gw + 16;
    int w = imax(bar_x + 18 + text_w("+2") + 10, text_w(balance_title) + 20);
    int h = y0 + imax(gh + 30, 80) + 10;
    EXPECT(p.w == w && p.h == h, "size %d x %d, want %d x %d", p.w, p.h, w, h);
#define BLOCK_AT(r, c) pixel(&p, x0 + 120 * (c) + 60, y0 + 12 * (r) + 6)
    const unsigned char *pos = BLOCK_AT(0, 0), *neg = BLOCK_AT(0, 1);
    EXPECT(pos[0] > pos[2] + 50, "+1 not reddish: %d %d %d", pos[0], pos[1], pos[2]);
    EXPECT(neg[2] > neg[0] + 50, "-1 not bluish: %d %d %d", neg[0], neg[1], neg[2]);
    EXPECT_RGB(&p, x0 + 240, y0 + 6, 0xFFFFFF, "zero: first pixel of column 2");
    EXPECT_RGB(&p, x0 + 359, y0 + 6, 0xFFFFFF, "zero: last pixel of column 2");
    EXPECT_RGB(&p, x0 + 360, y0 + 6, HEATMAP_MASK_RGB, "NAN");
    const unsigned char *top = BLOCK_AT(1, 2), *bottom = BLOCK_AT(1, 3);
    EXPECT(top[0] > 150 && top[1] < 60 && top[2] < 60, "+R not saturated red: %d %d %d", top[0],
           top[1], top[2]);
    EXPECT(bottom[2] > 150 && bottom[0] < 60, "-R not saturated blue: %d %d %d", bottom[0],
           bottom[1], bottom[2]);
    /* +1 is half way to +R = 2: paler than +2 */
    EXPECT(pos[1] > top[1], "+1 as saturated as +2");
    EXPECT(has_text(&p, 0, 0, w, 20, balance_title), "title"); /* above the bar's "+2" */
    EXPECT(has_text(&p, 0, y0 + 12, x0, 12, "L10 H3"), "row label");
    /* ticks every 5 steps, at x0 + 480 (2 v - 1) / 80: step 5 at +54, 40 at +474 */
    EXPECT(ink_in(&p, x0 + 54, y0 + gh, 1, 3) == 3 && ink_in(&p, x0 + 474, y0 + gh, 1, 3) == 3,
           "no ticks at steps 5 and 40");
    EXPECT(ink_in(&p, x0 + 55, y0 + gh, 5, 3) == 0, "a tick beside step 5's");
    EXPECT(has_text(&p, x0 + 474 - 12, y0 + gh + 5, 24, 10, "40"), "step 40's label");
    EXPECT(has_text(&p, x0, y0 + gh + 16, gw, 12, "step"), "the axis title");
    EXPECT(ink_in(&p, bar_x + 18, y0 - 4, 12, 8) > 0, "no +R label");
    const unsigned char *bar_top = pixel(&p, bar_x + 7, y0);
    const unsigned char *bar_bottom = pixel(&p, bar_x + 7, y0 + 79);
    EXPECT(bar_top[0] > bar_top[2] && bar_bottom[2] > bar_bottom[0], "bar ends");
#undef BLOCK_AT
    png_free(&p, path);

    /* a short run and a long one make pictures of the same size */
    enum { MANY = 5000 };
    static float wide[MANY];
    for (int c = 0; c < MANY; c++) wide[c] = c < MANY / 2 ? 1.0f : -1.0f;
    const char *const one_label[1] = {"L0 H0"};
    x0 = 10 + text_w("L0 H0") + 6;
    int want_w = x0 + 480 + 16 + 18 + text_w("+1") + 10;
    EXPECT(heatmap_write_balance(path, wide, 1, MANY, one_label, MANY, on_heap, &err) == 0, "%s",
           err.msg);
    p = png_load(path);
    EXPECT(p.w == want_w, "5000 columns: width %d, want %d", p.w, want_w);
    EXPECT(pixel(&p, x0 + 10, y0 + 6)[0] > 150 && pixel(&p, x0 + 470, y0 + 6)[2] > 150,
           "columns out of order");
    png_free(&p, path);
    EXPECT(heatmap_write_balance(path, wide + MANY / 2 - 1, 1, 2, one_label, 2, on_heap, &err) == 0,
           "%s", err.msg);
    p = png_load(path);
    EXPECT(p.w == want_w, "2 columns: width %d, want %d", p.w, want_w);
    EXPECT(pixel(&p, x0 + 239, y0 + 6)[0] > 150 && pixel(&p, x0 + 240, y0 + 6)[2] > 150,
           "2 columns: not 240 px each");
    png_free(&p, path);
}

/* ---- errors ------------------------------------------------------------- */

static void test_errors(void) {
    float att[4] = {1.0f, 0.0f, 0.5f, 0.5f};
    const uint32_t chars[2] = {'a', 'b'};
    Error err = {{0}};
    char path[600];
    snprintf(path, sizeof path, "%s/missing/layer.png", dir);
    EXPECT(heatmap_write_layer(path, att, 1, 2, chars, 0, on_heap, &err) == -1,
           "wrote into a missing folder");
    EXPECT(strstr(err.msg, path) && strstr(err.msg, "cannot write PNG"), "message: %s", err.msg);

    /* the temp file is written, the rename fails: the temp is removed */
    const char *taken = at("taken.png");
    EXPECT(mkdir(taken, 0755) == 0, "mkdir %s", taken);
    char sub[600];
    snprintf(sub, sizeof sub, "%s/x", taken);
    EXPECT(mkdir(sub, 0755) == 0, "mkdir %s", sub);
    err.msg[0] = 0;
    EXPECT(heatmap_write_layer(taken, att, 1, 2, chars, 0, on_heap, &err) == -1,
           "renamed over a folder");
    EXPECT(strstr(err.msg, taken) != NULL, "message: %s", err.msg);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", taken);
    EXPECT(access(tmp, F_OK) != 0, "%s left behind", tmp);
    rmdir(sub);
    rmdir(taken);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/qk_heatmap_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_viridis();
    test_layer();
    test_compare();
    test_filmstrip();
    test_lent_memory();
    test_balance();
    test_errors();
    EXPECT(rmdir(dir) == 0, "%s not empty at the end", dir);
    CHECK_DONE("heatmap");
}
