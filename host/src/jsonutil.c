/*
 * jsonutil.c - bounded JSON parsing with located errors (see jsonutil.h).
 */
#include "jsonutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void locate(const char *text, size_t off, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

/* cJSON recurses once per nesting level (its own limit is 1000), so depth is
 * checked first with a cheap scan that skips strings. */
static int nesting_ok(const char *text, size_t len, int max_depth, size_t *where)
{
    int depth = 0, in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth) {
                *where = i;
                return 0;
            }
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return 1;
}

cJSON *json_parse_limited(const char *text, size_t len, size_t max_bytes,
                          int max_depth, char *err, size_t errlen)
{
    size_t line, col, where = 0;
    if (!text || len == 0) {
        snprintf(err, errlen, "document is empty");
        return NULL;
    }
    if (len > max_bytes) {
        snprintf(err, errlen, "document larger than %zu bytes", max_bytes);
        return NULL;
    }
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' ||
                       text[i] == '\r'))
        i++;
    if (i == len) {
        snprintf(err, errlen, "document is empty");
        return NULL;
    }
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        locate(text, (size_t)(nul - text), &line, &col);
        snprintf(err, errlen, "contains a NUL byte at line %zu, column %zu (binary data?)",
                 line, col);
        return NULL;
    }
    if (!nesting_ok(text, len, max_depth, &where)) {
        locate(text, where, &line, &col);
        snprintf(err, errlen, "nesting deeper than %d levels at line %zu, column %zu",
                 max_depth, line, col);
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t off = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        const char *e = cJSON_GetErrorPtr();
        if (!end && e && e >= text && e <= text + len)
            off = (size_t)(e - text);
        locate(text, off, &line, &col);
        snprintf(err, errlen, "malformed JSON at line %zu, column %zu", line, col);
        return NULL;
    }
    size_t off = (size_t)(end - text);
    while (off < len && (text[off] == ' ' || text[off] == '\t' || text[off] == '\n' ||
                         text[off] == '\r'))
        off++;
    if (off < len) {
        locate(text, off, &line, &col);
        snprintf(err, errlen, "trailing data after the JSON value at line %zu, column %zu",
                 line, col);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

char *file_read_all(const char *path, size_t max_bytes, size_t *len_out,
                    char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "not a regular file");
        fclose(f);
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (len > max_bytes) {
            snprintf(err, errlen, "file is larger than %zu bytes", max_bytes);
            free(buf);
            fclose(f);
            return NULL;
        }
        if (n == 0)
            break;
        if (len == cap) {
            cap *= 2;
            char *grown = realloc(buf, cap + 1);
            if (!grown) {
                free(buf);
                buf = NULL;
            } else {
                buf = grown;
            }
        }
    }
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        fclose(f);
        return NULL;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "read error: %s", strerror(errno));
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

const char *json_type_name(const cJSON *node)
{
    if (!node)
        return "nothing";
    if (cJSON_IsObject(node))
        return "object";
    if (cJSON_IsArray(node))
        return "array";
    if (cJSON_IsString(node))
        return "string";
    if (cJSON_IsNumber(node))
        return "number";
    if (cJSON_IsBool(node))
        return "boolean";
    if (cJSON_IsNull(node))
        return "null";
    return "invalid";
}

char *json_print_compact(const cJSON *node)
{
    return cJSON_PrintUnformatted(node);
}
