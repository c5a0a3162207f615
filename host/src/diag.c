/*
 * diag.c - problem lists (see diag.h).
 */
#include "diag.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evh_limits.h"

/* Not "xstrdup": that name means abort-on-failure in git and gnulib (and
 * cppcheck assumes its argument is never NULL, reporting every caller). */
static char *strdup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

void diag_init(diag *d, const char *file)
{
    memset(d, 0, sizeof *d);
    if (file)
        d->file = strdup(file);
}

void diag_free(diag *d)
{
    for (size_t i = 0; i < d->count; i++) {
        free(d->items[i].path);
        free(d->items[i].reason);
    }
    free(d->items);
    free(d->file);
    memset(d, 0, sizeof *d);
}

static void diag_push(diag *d, char *path, char *reason)
{
    if (!path || !reason || d->count >= EVH_DIAG_MAX_ITEMS) {
        d->dropped++;
        free(path);
        free(reason);
        return;
    }
    if (d->count == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        diag_item *items = realloc(d->items, cap * sizeof *items);
        if (!items) {
            d->dropped++;
            free(path);
            free(reason);
            return;
        }
        d->items = items;
        d->cap = cap;
    }
    d->items[d->count].path = path;
    d->items[d->count].reason = reason;
    d->items[d->count].line = 0;
    d->items[d->count].column = 0;
    d->count++;
}

void diag_addv(diag *d, const char *path, const char *fmt, va_list ap)
{
    char *reason = NULL;
    if (vasprintf(&reason, fmt, ap) < 0)
        reason = NULL;
    diag_push(d, strdup_or_empty(path), reason);
}

void diag_add(diag *d, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_addv(d, path, fmt, ap);
    va_end(ap);
}

void diag_add_at(diag *d, int line, int column, const char *fmt, ...)
{
    size_t before = d->count;
    va_list ap;
    va_start(ap, fmt);
    diag_addv(d, NULL, fmt, ap);
    va_end(ap);
    if (d->count > before) {
        d->items[before].line = line;
        d->items[before].column = column;
    }
}

void diag_merge(diag *dst, const diag *src, const char *prefix)
{
    for (size_t i = 0; i < src->count; i++) {
        const char *p = src->items[i].path;
        char *path = NULL;
        if (prefix && *prefix && p && *p) {
            /* "items" + "[2].sku" joins without a dot */
            if (asprintf(&path, p[0] == '[' ? "%s%s" : "%s.%s", prefix, p) < 0)
                path = NULL;
        } else {
            path = strdup_or_empty(prefix && *prefix ? prefix : p);
        }
        diag_push(dst, path, strdup_or_empty(src->items[i].reason));
    }
    dst->dropped += src->dropped;
}

char *diag_format_item(const diag *d, size_t i)
{
    const char *file = d->file ? d->file : "";
    const char *path = d->items[i].path ? d->items[i].path : "";
    char *out = NULL;
    int n;
    if (d->items[i].line > 0)
        n = asprintf(&out, "%s:%d:%d: %s", file, d->items[i].line, d->items[i].column,
                     d->items[i].reason);
    else if (*file && *path)
        n = asprintf(&out, "%s: %s: %s", file, path, d->items[i].reason);
    else if (*file || *path)
        n = asprintf(&out, "%s: %s", *file ? file : path, d->items[i].reason);
    else
        n = asprintf(&out, "%s", d->items[i].reason);
    return n < 0 ? NULL : out;
}

void diag_print(const diag *d, FILE *f)
{
    for (size_t i = 0; i < d->count; i++) {
        char *line = diag_format_item(d, i);
        if (line)
            fprintf(f, "%s\n", line);
        free(line);
    }
    if (d->dropped)
        fprintf(f, "%s%s(%zu more problems not shown)\n", d->file ? d->file : "",
                d->file ? ": " : "", d->dropped);
}

char *diag_join(const diag *d)
{
    size_t cap = 1, len = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    out[0] = '\0';
    for (size_t i = 0; i < d->count; i++) {
        const char *path = d->items[i].path;
        char *part = NULL;
        int n = (path && *path)
                    ? asprintf(&part, "%s%s: %s", i ? "; " : "", path, d->items[i].reason)
                    : asprintf(&part, "%s%s", i ? "; " : "", d->items[i].reason);
        if (n < 0)
            break;
        char *grown = realloc(out, cap + (size_t)n);
        if (!grown) {
            free(part);
            break;
        }
        out = grown;
        memcpy(out + len, part, (size_t)n + 1);
        len += (size_t)n;
        cap += (size_t)n;
        free(part);
    }
    return out;
}

char *path_key(const char *base, const char *key)
{
    char *out = NULL;
    int n = (base && *base) ? asprintf(&out, "%s.%s", base, key)
                            : asprintf(&out, "%s", key);
    return n < 0 ? NULL : out;
}

char *path_index(const char *base, size_t index)
{
    char *out = NULL;
    int n = asprintf(&out, "%s[%zu]", base ? base : "", index);
    return n < 0 ? NULL : out;
}
