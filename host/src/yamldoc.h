/*
 * yamldoc.h - one YAML document as a cJSON tree that remembers where each
 * node was written, so validators can report "file:line:column: reason".
 *
 * This is the only interface to libyaml in the host; nothing else includes
 * <yaml.h>.
 *
 * What the loader accepts (YAML 1.2 core schema, one document):
 *   - plain (unquoted) scalars are typed: null/Null/NULL/~/empty -> null,
 *     true/True/TRUE/false/False/FALSE -> boolean, 12 / -3 / 0x1f / 0o17 ->
 *     number, 1.5 / -2e3 / .5 -> number, anything else -> string.  Note that
 *     in YAML 1.2 "0644" is the decimal 644 (octal is written 0o644), and
 *     .inf/.nan stay strings because JSON has no such numbers.  Integers past
 *     2^53 are refused: a JSON number would silently round them.
 *   - quoted and block (| >) scalars are always strings; tags !!str, !!int,
 *     !!float, !!bool, !!null, !!map, !!seq and "!" are honoured, any other
 *     tag is an error.
 *   - mapping keys are scalars (always strings); a duplicate key is an error
 *     ("duplicate key 'x' (first at line 3)"); the YAML 1.1 merge key "<<" is
 *     refused rather than taken as a literal key.
 *   - anchors and aliases work: an alias is a deep copy of the anchored node.
 *     A document may expand to at most YAMLDOC_MAX_NODES nodes and nest at
 *     most EVH_JSON_MAX_DEPTH mappings/sequences, so "billion laughs" stops
 *     with an error instead of eating memory.  Nodes inside a copy report the
 *     position of the text they were copied from; the copy itself reports the
 *     position of the alias.
 *   - more than one document in a stream is an error.
 *   - strings may not contain NUL characters (C strings would cut them).
 *
 * Environment substitution (subst_env != 0), in scalar values only, never in
 * keys: "${NAME}" becomes getenv("NAME"), "$${" is a literal "${".  A value
 * that had a substitution (or an escape) is always a string, whatever it
 * looks like, so a secret "0123" does not turn into the number 123.  An unset
 * variable is an error at its position.  Substituted text is never printed by
 * this module, and yamldoc_substituted() tells callers which values came from
 * the environment so they can keep them out of messages as well.
 *
 * Errors are added to d with diag_add_at (1-based line and column); the
 * caller sets d's file name.  Every function here returns NULL (or 0) on
 * failure and never aborts, whatever the input.
 */
#ifndef EVH_YAMLDOC_H
#define EVH_YAMLDOC_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "diag.h"

/* A YAML file larger than this is refused before parsing. */
#define YAMLDOC_MAX_BYTES (4 * 1024 * 1024)

/* Nodes a document may hold after aliases are expanded. */
#define YAMLDOC_MAX_NODES 1000000

typedef struct yamldoc yamldoc;

/* Read and parse the file at path (at most YAMLDOC_MAX_BYTES).  Returns NULL
 * when the file cannot be read ("cannot open: ...", added with an empty path)
 * or holds any problem (each added with its position). */
yamldoc *yamldoc_load(const char *path, int subst_env, diag *d);

/* The same for len bytes of text (need not be NUL-terminated; borrowed for
 * the call only). */
yamldoc *yamldoc_parse(const char *text, size_t len, int subst_env, diag *d);

/* The document's value, owned by y.  NULL for an empty stream (no document,
 * only comments, or a lone "---"): not an error here; callers decide. */
const cJSON *yamldoc_root(const yamldoc *y);

/* Position (1-based) where node's value starts.  node must belong to y's
 * tree.  Returns 1 and sets line/column when known; returns 0 and leaves
 * them untouched otherwise. */
int yamldoc_pos(const yamldoc *y, const cJSON *node, int *line, int *column);

/* Position of the key `key` in mapping `object` (for "unknown key" errors).
 * Returns 0, leaving line/column untouched, when there is no such key. */
int yamldoc_key_pos(const yamldoc *y, const cJSON *object, const char *key, int *line, int *column);

/* 1 when node is a string whose text came (in part) from ${...}
 * substitution: never echo it, it may be a secret. */
int yamldoc_substituted(const yamldoc *y, const cJSON *node);

/* Frees y and its tree (NULL is fine). */
void yamldoc_free(yamldoc *y);

#endif
