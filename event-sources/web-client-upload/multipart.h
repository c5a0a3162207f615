/*
 * multipart.h - a bounded multipart/form-data parser (RFC 7578, RFC 2046)
 * for the web-client-upload source.  It works on a body that is entirely in
 * memory (the host hands plugins the whole body), never reads outside
 * [body, body + len), needs no NUL terminator, and refuses anything it
 * cannot read unambiguously rather than guessing.  No SDK or host types:
 * the tests compile it directly.
 */
#ifndef WCU_MULTIPART_H
#define WCU_MULTIPART_H

#include <stddef.h>

/* RFC 2046: 1 to 70 characters. */
#define MP_BOUNDARY_MAX 70

/* Results. */
#define MP_OK 0
#define MP_NOT_MULTIPART 1 /* the Content-Type is not multipart/form-data: 415 */
#define MP_MALFORMED 2     /* 400 */
#define MP_TOO_MANY 3      /* more parts than the limit: 400 */
#define MP_NOMEM 4

typedef struct mp_limits {
    size_t max_parts;        /* parts at most (file and field parts together) */
    size_t max_header_bytes; /* the header block of one part at most */
} mp_limits;

typedef struct mp_part {
    char *name;         /* the form field name, decoded (malloc) */
    char *filename;     /* NULL for a field; for a file, as sent (malloc) */
    char *content_type; /* the part's Content-Type, NULL when none (malloc) */
    const char *data;   /* the content, inside the body */
    size_t len;
} mp_part;

typedef struct mp_form {
    mp_part *parts;
    size_t n;
} mp_form;

/*
 * The boundary of a Content-Type header value ("multipart/form-data;
 * boundary=xyz", the value possibly quoted) into out.  MP_NOT_MULTIPART for
 * any other media type (or NULL), MP_MALFORMED (and *why) for a missing or
 * invalid boundary.
 */
int mp_boundary(const char *content_type, char out[MP_BOUNDARY_MAX + 1], const char **why);

/*
 * Split body into its parts.  On MP_OK *form holds them (free with
 * mp_form_free); otherwise *form is empty and *why (a static string) says
 * what is wrong.  Every part must have a Content-Disposition of form-data
 * with a name; CRLF line ends only; the close delimiter is required.
 */
int mp_parse(const char *body, size_t len, const char *boundary, const mp_limits *lim,
             mp_form *form, const char **why);

void mp_form_free(mp_form *form);

#endif
