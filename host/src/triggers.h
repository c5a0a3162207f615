/*
 * triggers.h - "when source S emits type T and these conditions hold, run
 * workflow W": the trigger model, its validation, condition evaluation, and
 * the set of triggers in force, indexed by (source, event_type).
 *
 * No I/O here: triggers arrive as JSON (from YAML files through yamldoc, or
 * from the workflow_triggers table / the API) and are matched against event
 * envelopes ({id, event_type, source, data, metadata}).
 *
 * A trigger spec:
 *
 *   id: daily-report            # required, [A-Za-z0-9_.-]{1,128}, unique
 *   name: Daily Report          # optional, default = id
 *   description: ...            # optional
 *   source: timer               # required: a loaded event source id
 *   event_type: timer_fired     # required: declared by that source
 *   workflow: generate-report   # required: a loaded workflow id
 *   enabled: true               # optional, default true
 *   conditions:                 # optional; absent = every event matches
 *     all:                      # all / any: a list of conditions
 *       - {field: data.timer_id, op: eq, value: default}
 *       - any:
 *           - {field: data.size, op: gt, value: 1000}
 *           - not: {field: metadata.user_id, op: exists}
 *
 * A condition is exactly one of {all: [...]}, {any: [...]}, {not: {...}} or
 * a clause {field, op, value}; a list at the top is read as `all`.  `field`
 * is a path into the envelope (jsonpath.h syntax) starting with id,
 * event_type, source, data or metadata.  Operators:
 *
 *   eq, ne            JSON equality (numbers numerically, 1 == 1.0)
 *   gt, gte, lt, lte  numbers with numbers, strings with strings (bytewise,
 *                     so RFC 3339 UTC timestamps compare in time order)
 *   in, not_in        value is a list; the field equals one of / none of it
 *   contains          string field: value is a substring; array field: one
 *                     element equals value
 *   starts_with, ends_with   string field and string value
 *   matches           POSIX extended regex (compiled once, at load)
 *   exists            value true (default) or false
 *
 * The missing-field rule: a clause over a field the event does not have is
 * false, whatever the operator (ne and not_in included); only `exists:
 * false` is true for it.  `not` inverts the result as usual, so `not: {field:
 * x, op: eq, ...}` is true when x is missing.  A field of the wrong type for
 * the operator (a number with starts_with) is false the same way.
 */
#ifndef EVH_TRIGGERS_H
#define EVH_TRIGGERS_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "diag.h"
#include "schema.h"
#include "spell.h"

/* The names a "did you mean" is drawn from (trigger_resolver.offer_names). */
typedef enum trigger_names {
    TRIGGER_NAMES_SOURCES,     /* the event sources a trigger may name */
    TRIGGER_NAMES_EVENT_TYPES, /* the event types one source declares */
    TRIGGER_NAMES_WORKFLOWS,   /* the loaded workflows */
} trigger_names;

/* How a trigger learns what exists; every callback may be NULL (not
 * checked).  ud is passed back. */
typedef struct trigger_resolver {
    void *ud;
    /* 1: the source is loaded and declares event_type (*schema_out: its
     * data schema or NULL when it has none); 0: no such source; -1: the
     * source exists but does not declare event_type. */
    int (*event_type)(void *ud, const char *source, const char *event_type,
                      const schema **schema_out);
    /* 1 when the workflow is loaded. */
    int (*workflow_exists)(void *ud, const char *workflow_id);
    /* Offer every known name of kind `what` to near (spell_near_offer), so
     * that the problem for an unknown one can say "did you mean 'x'?";
     * source names the source for TRIGGER_NAMES_EVENT_TYPES.  The names
     * must stay valid until trigger_from_json returns.  NULL: no
     * suggestions. */
    void (*offer_names)(void *ud, trigger_names what, const char *source, spell_near *near);
} trigger_resolver;

typedef struct cond_node cond_node; /* a compiled condition (triggers.c) */

typedef struct trigger {
    char *id;
    char *name;
    char *description;       /* may be NULL */
    char *source;
    char *event_type;
    char *workflow_id;
    char *origin;            /* file it came from, or "api"; may be NULL */
    cJSON *conditions_json;  /* as written, or NULL */
    int enabled;
    cond_node *cond;         /* compiled conditions; NULL = always true */
} trigger;

/*
 * Build a trigger from its spec.  Every problem goes to d with its JSON path
 * below `path` ("triggers[0].conditions.all[1].op": "unknown operator
 * 'equals' (one of eq, ne, ...)"): unknown keys, missing or mistyped
 * fields, unknown source / event type / workflow (through res; with "did
 * you mean 'x'?" when a known one is a near miss), a field
 * the event type's schema rules out (schema_has_path), an operator that
 * cannot apply to the field's declared type, a value of the wrong shape, a
 * regex that does not compile, nesting deeper than TRIGGER_MAX_DEPTH.
 * Returns NULL when there was any problem.
 */
trigger *trigger_from_json(const cJSON *spec, const char *path, const trigger_resolver *res,
                           diag *d);
void trigger_free(trigger *t);

/* The trigger as JSON: {id, name, description, source, event_type,
 * workflow, conditions, enabled, origin}. */
cJSON *trigger_to_json(const trigger *t);

/* 1 when the envelope satisfies the conditions (enabled is not looked at). */
int trigger_matches(const trigger *t, const cJSON *envelope);

/*
 * The dry run: {"matched": bool, "conditions": <tree>} where the tree
 * mirrors the conditions, each node with "result": bool and each clause
 * also with "actual" (the field's value, absent when missing) and
 * "missing": true when the field is absent.  The source / event_type of
 * the envelope are compared too ("source_matches", "event_type_matches").
 */
cJSON *trigger_explain(const trigger *t, const cJSON *envelope);

/* ---- conditions alone (the filter step, evh_host_api.condition_eval) ----- */

/* Fields may also start with steps (steps.<id>.output.x): an earlier
 * step's output, in a workflow step's context. */
#define COND_ALLOW_STEPS 0x1u

/*
 * Compile conditions alone (what a trigger's `conditions` key holds: one
 * condition, or a list read as all) with the same checks as
 * trigger_from_json, problems to d below `path`.  data.* fields are not
 * checked against a schema (there is no event type).  Returns NULL when
 * there was any problem (conds NULL included).
 */
cond_node *conditions_compile(const cJSON *conds, const char *path, unsigned flags, diag *d);
/* 1 when doc satisfies c (fields are paths into doc); NULL c is true. */
int conditions_eval(const cond_node *c, const cJSON *doc);
void conditions_free(cond_node *c);

/* ---- the set in force --------------------------------------------------- */

typedef struct trigger_set trigger_set;

trigger_set *trigger_set_new(void);
void trigger_set_free(trigger_set *ts);
/* Takes ownership of t; EVH_E_DUPLICATE (caller keeps t) when the id is
 * taken, EVH_E_NOMEM. */
int trigger_set_add(trigger_set *ts, trigger *t);
const trigger *trigger_set_get(const trigger_set *ts, const char *id);
size_t trigger_set_count(const trigger_set *ts);
/* In the order they were added. */
const trigger *trigger_set_at(const trigger_set *ts, size_t i);

/*
 * The enabled triggers for (source, event_type) whose conditions the
 * envelope satisfies, in the order they were added, at most max of them,
 * into out.  Returns how many.  Looking up (source, event_type) is a hash
 * lookup, so the number of triggers on other pairs costs nothing.
 * Thread-safe for concurrent readers (a set is not changed once in force).
 */
size_t trigger_set_match(const trigger_set *ts, const char *source, const char *event_type,
                         const cJSON *envelope, const trigger **out, size_t max);

/* Is there an enabled trigger for (source, event_type) at all?  (No event
 * of that pair can match otherwise, whatever its data.) */
int trigger_set_listens(const trigger_set *ts, const char *source, const char *event_type);

#endif
