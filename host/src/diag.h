/*
 * diag.h - a list of problems found in one validation pass.
 *
 * Validators never stop at the first problem: they add each one here with
 * the JSON path (or file:line:column) it concerns and a reason, so a user
 * fixes everything in one round.  Printing puts the file first:
 *     event-sources/my-timer/plugin.json: eventTypes[0].label: required string is missing
 */
#ifndef EVH_DIAG_H
#define EVH_DIAG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

typedef struct diag_item {
    char *path;   /* "eventTypes[0].label", "" for the document itself */
    char *reason; /* "required string is missing" */
    int line;     /* > 0 for text positions (YAML): printed file:line:column */
    int column;
} diag_item;

typedef struct diag {
    char *file;      /* owned copy; may be NULL */
    diag_item *items;
    size_t count;
    size_t cap;
    size_t dropped;  /* problems past EVH_DIAG_MAX_ITEMS, counted only */
} diag;

void diag_init(diag *d, const char *file);
void diag_free(diag *d);

/* Add a problem; path is copied (NULL means ""), reason is printf-style. */
void diag_add(diag *d, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void diag_addv(diag *d, const char *path, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Add a problem at a text position; printed as "file:line:column: reason". */
void diag_add_at(diag *d, int line, int column, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Append every item of src to dst with path prefix (may be NULL). */
void diag_merge(diag *dst, const diag *src, const char *prefix);

/* "file: path: reason" (parts left out when empty) into a new string. */
char *diag_format_item(const diag *d, size_t i);

/* One line per problem, as above, to f. */
void diag_print(const diag *d, FILE *f);

/* All problems joined with "; " into a new string (for one log line). */
char *diag_join(const diag *d);

/* Helpers to build JSON paths: "a" + "b" -> "a.b", "a" + 3 -> "a[3]".
 * Return a new string (malloc); the caller frees. */
char *path_key(const char *base, const char *key);
char *path_index(const char *base, size_t index);

#endif
