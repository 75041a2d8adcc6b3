/* PNG files of 8-bit RGB pictures, with a deflate of the project's own made
 * for flat-coloured pictures: it looks for repeats only one pixel back and
 * one row up, which is where a heatmap's repeats are. */
#ifndef QK_PNG_H
#define QK_PNG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Writes the w x h picture (w, h >= 1) as a PNG to f: signature, IHDR, the
 * IDAT (one chunk unless it passes 1 GiB), IEND.
 * rows holds h rows of 1 + 3 w bytes laid out as PNG's image data, each a
 * filter-type byte and then the row's RGB triples, so no filtered copy is
 * made. Returns 0, or -1 when a write failed (errno tells why). */
int png_write(FILE *f, const uint8_t *rows, size_t w, size_t h);

#endif
