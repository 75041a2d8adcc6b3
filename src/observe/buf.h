/* A growing text buffer for the pages the project writes, with the escapes
 * each context needs (HTML, URL, JSON in a <script>, a shell word). */
#ifndef QK_BUF_H
#define QK_BUF_H

#include <stddef.h>

#include "common.h"

/* Zero-initialised is empty; s is NUL-terminated once anything was added,
 * malloc'd, and the caller frees it. Out of memory dies. */
typedef struct {
    char *s;
    size_t len, cap;
} Buf;

void buf_add(Buf *b, const char *s, size_t n);
void buf_puts(Buf *b, const char *s);
__attribute__((format(printf, 2, 3))) void buf_printf(Buf *b, const char *fmt, ...);
/* Text in HTML content or a quoted attribute. */
void buf_html(Buf *b, const char *s);
/* A path as a relative URL: every byte but unreserved ones and '/' escaped. */
void buf_url(Buf *b, const char *s);
/* A JSON string; <, > and & escaped too, so the text can sit in a <script>. */
void buf_json_str(Buf *b, const char *s);
/* A word for a POSIX shell: bare when it is plainly safe, else single-quoted. */
void buf_shell(Buf *b, const char *s);

#endif
