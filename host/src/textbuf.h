/*
 * textbuf.h - a growing text buffer, for the host's texts built piece by
 * piece: /metrics, lifecycle envelopes, rendered templates.
 *
 * After an allocation failure it stops growing and remembers it (failed);
 * with a bound (max, 0: none) an append that would pass it is dropped and
 * remembered (over), and so is everything after it.  data is then
 * incomplete, and the caller reports which happened.  Zero-initialised is
 * empty (data NULL until something is written; then always
 * NUL-terminated).
 */
#ifndef EVH_TEXTBUF_H
#define EVH_TEXTBUF_H

#include <stddef.h>

typedef struct textbuf {
    char *data;
    size_t len, cap;
    size_t max; /* 0: no bound */
    int failed; /* out of memory */
    int over;   /* passed max */
} textbuf;

void textbuf_add(textbuf *b, const char *s, size_t n);
/* s up to its NUL. */
void textbuf_adds(textbuf *b, const char *s);
void textbuf_printf(textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Take data (the caller frees it; NULL when nothing was written); *len
 * (may be NULL) its length.  The buffer is empty again (its bound kept). */
char *textbuf_take(textbuf *b, size_t *len);
/* Free data; the buffer is empty again (its bound kept). */
void textbuf_free(textbuf *b);

#endif
