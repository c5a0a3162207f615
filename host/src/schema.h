/*
 * schema.h - the JSON-schema subset used for event data and plugin config.
 *
 * Supported keywords: type (object, string, number, integer, boolean,
 * array, null, or a list of them), properties, required, enum, const,
 * items, additionalProperties (boolean or schema), minimum, maximum,
 * minLength, maxLength (in characters), minItems, maxItems, pattern (POSIX
 * extended regex, compiled once at schema_compile), format ("date-time",
 * RFC 3339; "conditions", an evhost condition tree as triggers and the
 * filter step write them, checked with the trigger compiler, fields also
 * under steps.*), default (used by schema_apply_defaults), and the annotations
 * title, description, examples, $schema, $comment.  Any other keyword is
 * reported by schema_compile as an error, never silently ignored.
 */
#ifndef EVH_SCHEMA_H
#define EVH_SCHEMA_H

#include <cjson/cJSON.h>

#include "diag.h"

typedef struct schema schema;

/*
 * Compile a schema document.  Every problem (unknown keyword, wrong keyword
 * type, bad regex, minimum > maximum, ...) is added to d with its path
 * below `path` (e.g. "eventTypes[0].schema.properties.size.type").
 * Returns NULL when there was any problem.  The schema keeps no pointer to
 * `json`.
 */
schema *schema_compile(const cJSON *json, const char *path, diag *d);
void schema_free(schema *s);

/*
 * Validate an instance.  Each violation is added to d with the instance's
 * path below `path` (e.g. "data.items[2].sku") and a reason such as
 * "expected integer, got string", "required property is missing",
 * "value 7 is above maximum 5", "does not match pattern '^a'",
 * "not a valid date-time (RFC 3339)".  Returns EVH_OK or EVH_E_SCHEMA.
 * Thread-safe: a compiled schema is read-only.
 */
int schema_validate(const schema *s, const cJSON *instance, const char *path,
                    diag *d);

/* Insert "default" values for missing properties, recursively through
 * properties of objects that are present (or were just defaulted).
 * Returns EVH_OK or EVH_E_NOMEM. */
int schema_apply_defaults(const schema *s, cJSON *instance);

/*
 * Look up what the schema says about a dotted path such as "file_size",
 * "items[0].sku" or "user.name" (array indexes go through "items").
 * Returns 1 when the path is declared by the schema (or the schema allows
 * any property there: no "properties" restriction, or additionalProperties
 * not false), 0 when the schema rules it out.  *type_out (may be NULL)
 * receives the declared type name ("string", "number", ... or NULL when
 * unknown).  Used to reject trigger conditions on fields that cannot exist.
 */
int schema_has_path(const schema *s, const char *path, const char **type_out);

#endif
