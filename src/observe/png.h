/* PNG files of 8-bit RGB pictures, written by stb_image_write (Debian's
 * libstb-dev) with zlib's deflate in place of stb's own, through stb's
 * STBIW_ZLIB_COMPRESS hook. */
#ifndef QK_PNG_H
#define QK_PNG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common.h"

/* Writes the w x h picture (w, h >= 1) as a PNG to f. rgb holds h rows of
 * 3 w bytes, each the row's RGB triples. The encoder's buffers come from
 * scratch while they fit in it ({NULL, 0}: all from the heap). A picture may
 * lie in scratch itself, png_lead(w, h) bytes from its start: it is then
 * filtered in place, overwritten by its filtered rows as they are made, and
 * the other buffers follow it. Returns 0, or -1 when the picture could not be
 * encoded or written (errno tells why). */
int png_write(FILE *f, const uint8_t *rgb, size_t w, size_t h, Span scratch);

/* Where in its scratch memory a w x h picture is drawn to be filtered in
 * place: the filtered rows, one byte longer each, start at scratch's start
 * and overtake row j only once stb has filtered row j + 1, which reads it
 * (3 w + h bytes ahead, rounded up to a cache line). */
size_t png_lead(size_t w, size_t h);

#endif
