/*
 * jsonutil.h - parsing JSON from outside with limits, and small cJSON helpers.
 *
 * Everything that parses untrusted JSON (plugin.json, emitted event data,
 * HTTP bodies) goes through json_parse_limited so that size and nesting are
 * bounded before cJSON sees the text, and the error says where it failed.
 */
#ifndef EVH_JSONUTIL_H
#define EVH_JSONUTIL_H

#include <cjson/cJSON.h>
#include <stddef.h>

/*
 * Parse `len` bytes of `text` (not necessarily NUL-terminated).  On failure
 * returns NULL and writes a lowercase reason into err (errlen bytes), e.g.
 * "malformed JSON at line 3, column 7", "document is empty",
 * "nesting deeper than 64 levels", "document larger than 1048576 bytes",
 * "contains a NUL byte", "trailing data after the JSON value at line 2,
 * column 1".  max_depth counts objects and arrays.
 */
cJSON *json_parse_limited(const char *text, size_t len, size_t max_bytes,
                          int max_depth, char *err, size_t errlen);

/* Read a whole file (at most max_bytes) into a new NUL-terminated buffer.
 * Returns NULL and a reason in err on failure ("cannot open: No such file
 * or directory", "file is larger than N bytes"). */
char *file_read_all(const char *path, size_t max_bytes, size_t *len_out,
                    char *err, size_t errlen);

/* "object", "array", "string", "number", "boolean", "null" for a node. */
const char *json_type_name(const cJSON *node);

/* Compact text of a node (malloc); NULL on out-of-memory. */
char *json_print_compact(const cJSON *node);

#endif
