/* multipart.c - see multipart.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include "multipart.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* RFC 9110 token characters. */
static int is_tchar(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", c);
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/*
 * One "; name=value" parameter of a header value at *p (a NUL-terminated
 * copy).  The name (lower-cased) goes to name[name_cap]; the value, a token
 * or a quoted-string with \" and \\ unescaped, to a new string *value.
 * Returns 1 for a parameter, 0 at the end of the value, -1 when malformed,
 * -2 when out of memory.
 */
static int next_param(const char **p, char *name, size_t name_cap, char **value)
{
    const char *s = skip_ws(*p);
    if (!*s)
        return 0;
    if (*s != ';')
        return -1;
    s = skip_ws(s + 1);
    if (!*s)
        return 0; /* a trailing ";" is common and harmless */
    size_t n = 0;
    while (is_tchar((unsigned char)s[n]))
        n++;
    if (n == 0 || n >= name_cap)
        return -1;
    for (size_t i = 0; i < n; i++)
        name[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
    name[n] = '\0';
    s = skip_ws(s + n);
    if (*s != '=')
        return -1;
    s = skip_ws(s + 1);
    char *out = malloc(strlen(s) + 1), *o = out;
    if (!out)
        return -2;
    if (*s == '"') {
        for (s++;; s++) {
            unsigned char c = (unsigned char)*s;
            if (c == '\0' || (c < 0x20 && c != '\t') || c == 0x7f) {
                free(out);
                return -1; /* unterminated, or a control character */
            }
            if (c == '"') {
                s++;
                break;
            }
            /* \" and \\ are escapes; any other backslash is itself (old
             * browsers send Windows paths unescaped: C:\Users\a.txt) */
            if (c == '\\' && (s[1] == '"' || s[1] == '\\'))
                c = (unsigned char)*++s;
            *o++ = (char)c;
        }
    } else {
        while (is_tchar((unsigned char)*s))
            *o++ = *s++;
        if (o == out) {
            free(out);
            return -1;
        }
    }
    *o = '\0';
    *p = s;
    *value = out;
    return 1;
}

int mp_boundary(const char *content_type, char out[MP_BOUNDARY_MAX + 1], const char **why)
{
    static const char type[] = "multipart/form-data";
    if (!content_type)
        return MP_NOT_MULTIPART;
    const char *p = skip_ws(content_type);
    size_t n = strcspn(p, "; \t");
    if (n != sizeof type - 1 || strncasecmp(p, type, n) != 0)
        return MP_NOT_MULTIPART;
    p += n;
    out[0] = '\0';
    char name[32];
    char *value = NULL;
    int rc;
    while ((rc = next_param(&p, name, sizeof name, &value)) == 1) {
        if (strcmp(name, "boundary") != 0) {
            free(value);
            continue;
        }
        size_t len = strlen(value);
        /* RFC 2046 bchars; at most 70, not ending in a space */
        int ok = !out[0] && len >= 1 && len <= MP_BOUNDARY_MAX && value[len - 1] != ' ';
        for (size_t i = 0; ok && i < len; i++) {
            unsigned char c = (unsigned char)value[i];
            ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 strchr("'()+_,-./:=? ", c) != NULL;
        }
        if (ok)
            memcpy(out, value, len + 1);
        free(value);
        if (!ok) {
            *why = "the boundary parameter is invalid (1 to 70 characters of RFC 2046) or "
                   "given twice";
            return MP_MALFORMED;
        }
    }
    if (rc == -2)
        return MP_NOMEM;
    if (rc < 0) {
        *why = "the Content-Type parameters are malformed";
        return MP_MALFORMED;
    }
    if (!out[0]) {
        *why = "the Content-Type has no boundary parameter";
        return MP_MALFORMED;
    }
    return MP_OK;
}

void mp_form_free(mp_form *form)
{
    for (size_t i = 0; form && i < form->n; i++) {
        free(form->parts[i].name);
        free(form->parts[i].filename);
        free(form->parts[i].content_type);
    }
    if (form) {
        free(form->parts);
        form->parts = NULL;
        form->n = 0;
    }
}

static int hexval(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* RFC 8187 ext-value "UTF-8'lang'percent-encoded" decoded in place; 0 on
 * success, -1 for another charset or a bad escape or a NUL byte. */
static int decode_ext_value(char *v)
{
    char *q1 = strchr(v, '\'');
    char *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
    if (!q2 || (size_t)(q1 - v) != 5 || strncasecmp(v, "utf-8", 5) != 0)
        return -1;
    char *o = v;
    for (const char *s = q2 + 1; *s; s++) {
        if (*s == '%') {
            int hi = hexval(s[1]), lo = hi < 0 ? -1 : hexval(s[2]);
            if (lo < 0 || (hi == 0 && lo == 0))
                return -1;
            *o++ = (char)(hi << 4 | lo);
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
    return 0;
}

/* The Content-Disposition value of a part (NUL-terminated copy) into
 * part->name and part->filename. */
static int read_disposition(const char *v, mp_part *part, const char **why)
{
    static const char type[] = "form-data";
    const char *p = skip_ws(v);
    size_t n = strcspn(p, "; \t");
    if (n != sizeof type - 1 || strncasecmp(p, type, n) != 0) {
        *why = "a part's Content-Disposition is not form-data";
        return MP_MALFORMED;
    }
    p += n;
    char name[32], *value = NULL, *ext = NULL;
    int rc;
    while ((rc = next_param(&p, name, sizeof name, &value)) == 1) {
        char **slot = !strcmp(name, "name")        ? &part->name
                      : !strcmp(name, "filename")  ? &part->filename
                      : !strcmp(name, "filename*") ? &ext
                                                   : NULL;
        if (slot && *slot) {
            free(value);
            free(ext);
            *why = "a part's Content-Disposition repeats a parameter";
            return MP_MALFORMED;
        }
        if (slot)
            *slot = value;
        else
            free(value);
    }
    if (rc == -2) {
        free(ext);
        return MP_NOMEM;
    }
    if (rc < 0) {
        free(ext);
        *why = "a part's Content-Disposition parameters are malformed";
        return MP_MALFORMED;
    }
    /* RFC 7578 says filename* is not to be used; take it only without
     * filename, and only in UTF-8 */
    if (ext && !part->filename) {
        if (decode_ext_value(ext) != 0) {
            free(ext);
            *why = "a part's filename* is not UTF-8''<percent-encoded>";
            return MP_MALFORMED;
        }
        part->filename = ext;
        ext = NULL;
    }
    free(ext);
    if (!part->name || !part->name[0]) {
        *why = "a part's Content-Disposition has no name";
        return MP_MALFORMED;
    }
    return MP_OK;
}

/*
 * The header block of one part, from p up to and including the empty line;
 * *end receives where the content starts.  Line ends must be CRLF; folded
 * lines, NUL bytes and lines without a colon are refused.
 */
static int read_headers(const char *p, const char *end, size_t max_bytes, mp_part *part,
                        const char **content, const char **why)
{
    const char *start = p;
    int have_disposition = 0;
    for (;;) {
        /* look no further than the header limit allows */
        size_t left = (size_t)(end - p), room = max_bytes - (size_t)(p - start);
        if (left > room)
            left = room;
        const char *cr = memchr(p, '\r', left);
        const char *lf = memchr(p, '\n', left);
        if (!cr || cr + 1 >= end || cr[1] != '\n' || (lf && lf < cr)) {
            *why = cr || lf             ? "a part's header lines do not end in CRLF"
                   : left == room       ? "a part's headers are too long"
                                        : "a part's headers are not terminated";
            return MP_MALFORMED;
        }
        size_t n = (size_t)(cr - p);
        if ((size_t)(cr + 2 - start) > max_bytes) {
            *why = "a part's headers are too long";
            return MP_MALFORMED;
        }
        if (n == 0) {
            *content = cr + 2;
            break;
        }
        if (memchr(p, '\0', n) || *p == ' ' || *p == '\t') {
            *why = "a part has a NUL byte or a folded line in its headers";
            return MP_MALFORMED;
        }
        char *line = malloc(n + 1);
        if (!line)
            return MP_NOMEM;
        memcpy(line, p, n);
        line[n] = '\0';
        char *colon = strchr(line, ':');
        int rc = MP_OK;
        size_t nlen = colon ? (size_t)(colon - line) : 0;
        for (size_t i = 0; i < nlen && rc == MP_OK; i++)
            rc = is_tchar((unsigned char)line[i]) ? MP_OK : MP_MALFORMED;
        if (!colon || nlen == 0 || rc != MP_OK) {
            *why = "a part has a header line that is not \"Name: value\"";
            rc = MP_MALFORMED;
        } else {
            *colon = '\0';
            char *value = (char *)skip_ws(colon + 1);
            size_t vlen = strlen(value);
            while (vlen && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
                value[--vlen] = '\0';
            if (!strcasecmp(line, "Content-Disposition")) {
                if (have_disposition) {
                    *why = "a part has two Content-Disposition headers";
                    rc = MP_MALFORMED;
                } else {
                    have_disposition = 1;
                    rc = read_disposition(value, part, why);
                }
            } else if (!strcasecmp(line, "Content-Type")) {
                if (part->content_type) {
                    *why = "a part has two Content-Type headers";
                    rc = MP_MALFORMED;
                } else if (!(part->content_type = strdup(value))) {
                    rc = MP_NOMEM;
                }
            }
        }
        free(line);
        if (rc != MP_OK)
            return rc;
        p = cr + 2;
    }
    if (!have_disposition) {
        *why = "a part has no Content-Disposition header";
        return MP_MALFORMED;
    }
    return MP_OK;
}

int mp_parse(const char *body, size_t len, const char *boundary, const mp_limits *lim,
             mp_form *form, const char **why)
{
    form->parts = NULL;
    form->n = 0;
    size_t blen = boundary ? strlen(boundary) : 0;
    if (!body || blen == 0 || blen > MP_BOUNDARY_MAX) {
        *why = "no boundary";
        return MP_MALFORMED;
    }
    /* "\r\n--" boundary: the delimiter; the first one may lack the CRLF
     * when the body starts with it (no preamble) */
    char delim[4 + MP_BOUNDARY_MAX];
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, boundary, blen);
    size_t dlen = 4 + blen;
    const char *end = body + len, *p;
    if (len >= dlen - 2 && !memcmp(body, delim + 2, dlen - 2)) {
        p = body + dlen - 2;
    } else {
        const char *d = memmem(body, len, delim, dlen);
        if (!d) {
            *why = "the body does not contain the boundary";
            return MP_MALFORMED;
        }
        p = d + dlen;
    }
    size_t cap = 0;
    int rc = MP_OK;
    for (;;) {
        /* just after a delimiter: "--" closes, else padding and CRLF */
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            break; /* the epilogue after it is ignored */
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n') {
            *why = end - p < 2 ? "the body ends without the close delimiter"
                               : "a boundary delimiter is followed by other text";
            rc = MP_MALFORMED;
            break;
        }
        p += 2;
        if (form->n == lim->max_parts) {
            *why = "the form has too many parts";
            rc = MP_TOO_MANY;
            break;
        }
        if (form->n == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            if (ncap > lim->max_parts)
                ncap = lim->max_parts;
            mp_part *grown = realloc(form->parts, ncap * sizeof *grown);
            if (!grown) {
                rc = MP_NOMEM;
                break;
            }
            form->parts = grown;
            cap = ncap;
        }
        mp_part *part = &form->parts[form->n++];
        memset(part, 0, sizeof *part);
        const char *content = NULL;
        if ((rc = read_headers(p, end, lim->max_header_bytes, part, &content, why)) != MP_OK)
            break;
        const char *next = memmem(content, (size_t)(end - content), delim, dlen);
        if (!next) {
            *why = "the body ends without the close delimiter";
            rc = MP_MALFORMED;
            break;
        }
        part->data = content;
        part->len = (size_t)(next - content);
        p = next + dlen;
    }
    if (rc != MP_OK)
        mp_form_free(form);
    return rc;
}
