/* PNG files of 8-bit RGB pictures, with a deflate of the project's own made
 * for flat-coloured pictures: it looks for repeats only one pixel back and
 * one row up, which is where a heatmap's repeats are. */
#ifndef QK_PNG_H
#define QK_PNG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The compressed stream's chunk size: the stream goes to the file as it is
 * made, so the encoder needs this much memory beside the rows, on its stack;
 * a chunk's 12 bytes of length, type and CRC are under 0.1 % of it. */
#define PNG_IDAT_BYTES 16384

/* Writes the w x h picture (w, h >= 1) as a PNG to f: signature, IHDR, the
 * IDAT chunks (each PNG_IDAT_BYTES but the last), IEND.
 * rows holds h rows of 1 + 3 w bytes laid out as PNG's image data, each a
 * filter-type byte and then the row's RGB triples, so no filtered copy is
 * made. Returns 0, or -1 when a write failed (errno tells why). */
int png_write(FILE *f, const uint8_t *rows, size_t w, size_t h);

#endif
