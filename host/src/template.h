/*
 * template.h - "{{ event.data.filename }}" in workflow step config.
 *
 * A template names a value of the run's context, which is the JSON object
 *   {"event": <the envelope>, "steps": {"<step id>": {"output": {...}}}}
 * with a jsonpath.h path: event.data.items[0].sku, steps.fetch.output.status.
 * Whitespace inside the braces is ignored.
 *
 * Rendering walks the step's `with:` block and replaces templates in string
 * values (keys are left alone):
 *   - a string that is exactly one template becomes that value with its own
 *     JSON type ("{{ event.data.size }}" gives the number 1024, an object
 *     stays an object), so configSchema types still hold;
 *   - templates inside a longer string are replaced by their text: strings
 *     as they are, other values as compact JSON.
 * A path that is missing is an error of the step, never an empty string.
 * There is no escape for a literal "{{"; one without a closing "}}" is an
 * error at load.
 */
#ifndef EVH_TEMPLATE_H
#define EVH_TEMPLATE_H

#include <cjson/cJSON.h>

#include "diag.h"

/* For template_check: 1 when step_id runs before the step being checked,
 * -1 when it is this step or a later one, 0 when there is no such step. */
typedef int (*template_step_known_fn)(void *ud, const char *step_id);

/*
 * Check every template in config at load time: syntax (closing braces, a
 * well-formed path), the root (event or steps), and that steps.<id> names
 * an earlier step (through known).  Each problem goes to d with the path of
 * the string below `where` (e.g. "steps[1].with.message") and a reason
 * quoting the template.  Returns the number of problems added.
 */
int template_check(const cJSON *config, const char *where, template_step_known_fn known,
                   void *ud, diag *d);

/* 1 when config holds at least one template anywhere. */
int template_present(const cJSON *config);

/*
 * A copy of config with every template resolved against ctx.  NULL when a
 * template names a missing value (or out of memory); each problem is in d
 * with the path of the string inside config and a reason such as
 * "{{ event.data.nope }}: event.data.nope is missing".
 */
cJSON *template_render(const cJSON *config, const cJSON *ctx, diag *d);

#endif
