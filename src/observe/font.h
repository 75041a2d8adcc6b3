/* The project's own bitmap font for labels in the PNG pictures: 5 x 9 pixel
 * glyphs (cap height 7, two rows of descender), 6 px advance. */
#ifndef QK_FONT_H
#define QK_FONT_H

#include <stddef.h>
#include <stdint.h>

#define FONT_W 5
#define FONT_H 9
#define FONT_ADVANCE 6
/* Rows 0..FONT_CAP-1 hold capitals and digits; the rest is descender. */
#define FONT_CAP 7

/* The glyph of a probe character (a code point): FONT_H rows, bit
 * (FONT_W - 1 - x) of row y set = pixel (x, y) inked. Every code point has a
 * visible glyph, so no label is ever blank: printable ASCII as itself, space
 * as an open box on the baseline, newline as a return arrow, tab as a right
 * arrow, other control characters as a hollow square, anything above 0x7E as a
 * filled diamond. */
const uint8_t *font_glyph(uint32_t cp);

/* Pixel width of a text line in this font (0 for ""). In text, unlike in probe
 * labels, a space is blank. */
size_t font_text_width(const char *s);

#endif
