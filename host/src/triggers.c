/*
 * triggers.c - trigger specs, their validation, compiled conditions and the
 * set in force (see triggers.h).
 *
 * Validation and compilation are one pass: every node of the conditions is
 * checked and compiled as it is read, problems are counted rather than
 * returned, and a trigger with any problem is thrown away whole at the end.
 * That way a user sees every mistake at once, and matching never meets a
 * half-checked tree.
 */
#include "triggers.h"

#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evhost/evhost.h>

#include "jsonpath.h"
#include "jsonutil.h"
#include "evh_limits.h"
#include "regexcost.h"

/* ---- the compiled conditions -------------------------------------------- */

typedef enum {
    OP_EQ,
    OP_NE,
    OP_GT,
    OP_GTE,
    OP_LT,
    OP_LTE,
    OP_IN,
    OP_NOT_IN,
    OP_CONTAINS,
    OP_STARTS_WITH,
    OP_ENDS_WITH,
    OP_MATCHES,
    OP_EXISTS,
    OP_COUNT_
} op_kind;

static const char *const op_names[OP_COUNT_] = {
    "eq",     "ne",       "gt",          "gte",       "lt",      "lte",   "in",
    "not_in", "contains", "starts_with", "ends_with", "matches", "exists"};
#define OP_LIST                                                                                    \
    "eq, ne, gt, gte, lt, lte, in, not_in, contains, starts_with, ends_with, matches, exists"

typedef enum { NODE_ALL, NODE_ANY, NODE_NOT, NODE_CLAUSE } node_kind;

static const char *const node_names[] = {"all", "any", "not", "clause"};

struct cond_node {
    node_kind kind;
    cond_node **kids; /* all / any: one or more; not: exactly one */
    size_t n_kids;
    char *field; /* clause only, from here down */
    op_kind op;
    cJSON *value; /* own copy; NULL for exists written without value */
    int want;     /* exists: true or false */
    int has_re;   /* matches: re holds the compiled regex */
    regex_t re;
};

static void cond_free(cond_node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n_kids; i++)
        cond_free(n->kids[i]);
    free(n->kids);
    free(n->field);
    cJSON_Delete(n->value);
    if (n->has_re)
        regfree(&n->re);
    free(n);
}

/* ---- validation context -------------------------------------------------- */

/* Problems are counted here, not read back from d: d may be NULL, may hold
 * earlier problems of the caller, and drops items past EVH_DIAG_MAX_ITEMS. */
typedef struct vctx {
    diag *d;
    size_t problems;
    size_t clauses;
    const char *source; /* for messages about the data schema */
    const char *event_type;
    const schema *data_schema; /* NULL: data fields are not checked */
    unsigned flags;            /* COND_ALLOW_STEPS */
} vctx;

static void problem(vctx *c, const char *base, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One problem at base.key (key NULL: at base itself). */
static void problem(vctx *c, const char *base, const char *key, const char *fmt, ...)
{
    c->problems++;
    if (!c->d)
        return;
    char *path = key ? path_key(base, key) : NULL;
    va_list ap;
    va_start(ap, fmt);
    diag_addv(c->d, key ? path : base, fmt, ap);
    va_end(ap);
    free(path);
}

static void out_of_memory(vctx *c, const char *base)
{
    problem(c, base, NULL, "out of memory");
}

/* A short rendering of an offending value: 'text' for strings, compact JSON
 * for the rest, cut so one huge value cannot flood a message. */
static const char *shown(const cJSON *v, char *buf, size_t n)
{
    if (cJSON_IsString(v)) {
        snprintf(buf, n, "'%s'", v->valuestring);
    } else {
        char *text = json_print_compact(v);
        snprintf(buf, n, "%s", text ? text : json_type_name(v));
        free(text);
    }
    if (n > 4 && strlen(buf) == n - 1)
        memcpy(buf + n - 4, "...", 4);
    return buf;
}

#define SHOWN_MAX 64

/* Index of name in names[0..n), or n. */
static size_t find_name(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (name && strcmp(names[i], name) == 0)
            return i;
    return n;
}

/* Report unknown and repeated keys of obj; returns a bit per known key
 * present (known[i] -> 1u << i). */
static unsigned check_keys(vctx *c, const cJSON *obj, const char *base, const char *const *known,
                           size_t n, const char *list)
{
    unsigned seen = 0;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, obj)
    {
        const char *key = kv->string ? kv->string : "";
        size_t k = find_name(known, n, key);
        if (k == n)
            problem(c, base, key, "unknown key '%s' (one of %s)", key, list);
        else if (seen & (1u << k))
            problem(c, base, key, "key '%s' appears more than once", key);
        else
            seen |= 1u << k;
    }
    return seen;
}

/* The child path base.key or base[i]; counts a problem when out of memory. */
static char *child_key(vctx *c, const char *base, const char *key)
{
    char *p = path_key(base, key);
    if (!p)
        out_of_memory(c, base);
    return p;
}

static char *child_index(vctx *c, const char *base, size_t i)
{
    char *p = path_index(base, i);
    if (!p)
        out_of_memory(c, base);
    return p;
}

static cond_node *node_new(vctx *c, node_kind kind, size_t n_kids, const char *path)
{
    cond_node *n = calloc(1, sizeof *n);
    if (n && n_kids && !(n->kids = calloc(n_kids, sizeof *n->kids))) {
        free(n);
        n = NULL;
    }
    if (!n) {
        out_of_memory(c, path);
        return NULL;
    }
    n->kind = kind;
    n->n_kids = n_kids;
    return n;
}

/* ---- clause fields ------------------------------------------------------- */

static int root_is(const char *field, size_t len, const char *name)
{
    return strlen(name) == len && strncmp(field, name, len) == 0;
}

/* metadata.*: the envelope's metadata object has a fixed shape (event.c);
 * only additional_data is open.  *type: the declared type or NULL. */
static int metadata_field(vctx *c, const char *path, const char *f, const char **type)
{
    static const char *const fixed[] = {"source", "timestamp", "user_id"};
    const char *sub = f + strlen("metadata");
    if (*sub == '\0') {
        *type = "object";
        return 1;
    }
    if (*sub == '.') {
        sub++;
        size_t len = strcspn(sub, ".[");
        for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
            if (root_is(sub, len, fixed[i]) && sub[len] == '\0') {
                *type = "string";
                return 1;
            }
        }
        if (root_is(sub, len, "additional_data")) {
            *type = sub[len] ? NULL : "object";
            return 1;
        }
    }
    problem(c, path, "field",
            "unknown metadata field '%s' (one of metadata.source, metadata.timestamp, "
            "metadata.user_id, metadata.additional_data.*)",
            f);
    return 0;
}

/* data.*: checked against the event type's data schema when there is one. */
static int data_field(vctx *c, const char *path, const char *f, const char **type)
{
    const char *rest = f + strlen("data");
    if (*rest == '.')
        rest++;
    if (!c->data_schema)
        return 1;
    if (schema_has_path(c->data_schema, rest, type))
        return 1;
    problem(c, path, "field", "field '%s' is not in the schema of event type '%s' (source '%s')", f,
            c->event_type, c->source);
    return 0;
}

/* The clause's field, checked; NULL after a problem.  *type receives the
 * field's declared type when it is known ("string", "integer", ...). */
static const char *clause_field(vctx *c, const cJSON *clause, const char *path, const char **type)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(clause, "field");
    *type = NULL;
    if (!v) {
        problem(c, path, "field",
                "required string is missing (a path into the event such as data.size)");
        return NULL;
    }
    if (!cJSON_IsString(v)) {
        problem(c, path, "field", "must be a string, got %s", json_type_name(v));
        return NULL;
    }
    const char *f = v->valuestring;
    if (!*f || !json_path_valid(f)) {
        problem(c, path, "field",
                "invalid field path '%s' (keys joined with '.', array indexes as [n], e.g. "
                "data.items[0].sku)",
                f);
        return NULL;
    }
    size_t len = strcspn(f, ".[");
    if (root_is(f, len, "data"))
        return data_field(c, path, f, type) ? f : NULL;
    if (root_is(f, len, "metadata"))
        return metadata_field(c, path, f, type) ? f : NULL;
    if (root_is(f, len, "id") || root_is(f, len, "event_type") || root_is(f, len, "source")) {
        if (f[len] == '\0') {
            *type = "string";
            return f;
        }
        problem(c, path, "field", "field '%s' cannot exist: '%.*s' is a string", f, (int)len, f);
        return NULL;
    }
    if ((c->flags & COND_ALLOW_STEPS) && root_is(f, len, "steps")) {
        if (f[len] == '.')
            return f; /* steps.<id>.output...: known only at run time */
        problem(c, path, "field", "field '%s' must name a step: steps.<id>.output.<field>", f);
        return NULL;
    }
    if (c->flags & COND_ALLOW_STEPS)
        problem(c, path, "field",
                "field '%s' must start with id, event_type, source, data, metadata or steps", f);
    else
        problem(c, path, "field",
                "field '%s' must start with id, event_type, source, data or metadata", f);
    return NULL;
}

/* The clause's operator; -1 after a problem. */
static int clause_op(vctx *c, const cJSON *clause, const char *path)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(clause, "op");
    if (!v) {
        problem(c, path, "op", "required string is missing (one of " OP_LIST ")");
        return -1;
    }
    if (!cJSON_IsString(v)) {
        problem(c, path, "op", "must be a string, got %s (one of " OP_LIST ")", json_type_name(v));
        return -1;
    }
    size_t k = find_name(op_names, OP_COUNT_, v->valuestring);
    if (k == OP_COUNT_) {
        problem(c, path, "op", "unknown operator '%s' (one of " OP_LIST ")", v->valuestring);
        return -1;
    }
    return (int)k;
}

/* ---- clause values -------------------------------------------------------- */

static int is_type(const char *type, const char *name)
{
    return type && strcmp(type, name) == 0;
}

/* What op needs of a field declared as type, or NULL when it applies. */
static const char *op_requirement(op_kind op, const char *type)
{
    if (!type)
        return NULL;
    switch (op) {
    case OP_STARTS_WITH:
    case OP_ENDS_WITH:
    case OP_MATCHES:
        return is_type(type, "string") ? NULL : "a string";
    case OP_GT:
    case OP_GTE:
    case OP_LT:
    case OP_LTE:
        return is_type(type, "string") || is_type(type, "number") || is_type(type, "integer")
                   ? NULL
                   : "a number or a string";
    case OP_CONTAINS:
        return is_type(type, "string") || is_type(type, "array") ? NULL : "a string or an array";
    default:
        return NULL;
    }
}

/* 0 when no field declared as type can equal v (a string field never
 * equals 5); 1 when it can, or when the type is not known. */
static int kind_fits(const char *type, const cJSON *v)
{
    if (is_type(type, "number") || is_type(type, "integer"))
        return cJSON_IsNumber(v);
    if (is_type(type, "string"))
        return cJSON_IsString(v);
    if (is_type(type, "boolean"))
        return cJSON_IsBool(v);
    if (is_type(type, "object"))
        return cJSON_IsObject(v);
    if (is_type(type, "array"))
        return cJSON_IsArray(v);
    return 1;
}

/* 1 when v nests at most `left` objects/arrays deep.  Bounded recursion:
 * it stops as soon as the limit is passed. */
static int depth_ok(const cJSON *v, int left)
{
    if (!cJSON_IsArray(v) && !cJSON_IsObject(v))
        return 1;
    if (left <= 0)
        return 0;
    const cJSON *k;
    cJSON_ArrayForEach(k, v)
    {
        if (!depth_ok(k, left - 1))
            return 0;
    }
    return 1;
}

/* The value's shape for op, regardless of the field: a list for in, a
 * string for the string operators, ... 1 when fine. */
static int value_shape_ok(vctx *c, const char *path, op_kind op, const cJSON *v)
{
    char buf[SHOWN_MAX];
    const char *need = NULL;
    if (op == OP_IN || op == OP_NOT_IN)
        need = cJSON_IsArray(v) && v->child ? NULL : "a non-empty list of values";
    else if (op == OP_MATCHES)
        need = cJSON_IsString(v) ? NULL : "a string (a POSIX extended regex)";
    else if (op == OP_STARTS_WITH || op == OP_ENDS_WITH)
        need = cJSON_IsString(v) ? NULL : "a string";
    else if (op == OP_GT || op == OP_GTE || op == OP_LT || op == OP_LTE)
        need = cJSON_IsNumber(v) || cJSON_IsString(v) ? NULL : "a number or a string";
    if (need) {
        problem(c, path, "value", "operator '%s' needs %s, got %s", op_names[op], need,
                shown(v, buf, sizeof buf));
        return 0;
    }
    if (op == OP_EQ && cJSON_IsNull(v)) {
        problem(c, path, "value",
                "null never matches: a null field counts as missing "
                "(use op: exists with value: false)");
        return 0;
    }
    return 1;
}

static void never_true(vctx *c, const char *base, const char *key, const cJSON *v,
                       const char *field, const char *type)
{
    char buf[SHOWN_MAX];
    problem(c, base, key, "value %s (%s) can never match field '%s' of type %s",
            shown(v, buf, sizeof buf), json_type_name(v), field, type);
}

/* A value of a kind the field's declared type rules out makes a clause that
 * can never be true; that is a mistake worth reporting at load. */
static void value_fits_field(vctx *c, const char *path, op_kind op, const cJSON *v,
                             const char *field, const char *type)
{
    if (!type || !field || op_requirement(op, type))
        return; /* unknown, or already reported as an operator problem */
    if (op == OP_EQ || op == OP_GT || op == OP_GTE || op == OP_LT || op == OP_LTE ||
        (op == OP_CONTAINS && is_type(type, "string"))) {
        if (!kind_fits(type, v))
            never_true(c, path, "value", v, field, type);
        return;
    }
    if (op != OP_IN)
        return;
    char *vpath = child_key(c, path, "value");
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        if (!kind_fits(type, e) && !cJSON_IsNull(e)) {
            char *epath = child_index(c, vpath ? vpath : path, i);
            if (epath)
                never_true(c, epath, NULL, e, field, type);
            free(epath);
        }
        i++;
    }
    free(vpath);
}

/* Authors often write JavaScript escapes; glibc's POSIX regex reads "\d"
 * as a plain 'd', which would silently match the wrong strings. */
static int js_only_escape(const char *re)
{
    for (const char *p = re; *p; p++) {
        if (*p != '\\')
            continue;
        if (p[1] == 'd' || p[1] == 'D')
            return p[1];
        if (p[1] == '\0')
            break;
        p++;
    }
    return 0;
}

/* Compiled once here so matching only runs regexec (safe to share between
 * threads: a compiled regex_t is not modified by regexec). */
static void compile_regex(vctx *c, cond_node *n, const char *path, const char *re)
{
    int esc = js_only_escape(re);
    if (esc) {
        problem(c, path, "value",
                "regex '%s' uses '\\%c', which POSIX extended regex does not support (use %s)", re,
                esc, esc == 'd' ? "[0-9]" : "[^0-9]");
        return;
    }
    if (!regex_cost_ok(re)) {
        problem(c, path, "value",
                "regex '%.64s' is too costly to compile: at most %d elements once repetition "
                "counts are unrolled, and repetitions nested at most %d deep",
                re, EVH_REGEX_MAX_EXPANSION, EVH_REGEX_MAX_REPEAT_DEPTH);
        return;
    }
    int rc = regcomp(&n->re, re, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char msg[128];
        regerror(rc, &n->re, msg, sizeof msg);
        if (msg[0] >= 'A' && msg[0] <= 'Z')
            msg[0] = (char)(msg[0] - 'A' + 'a');
        problem(c, path, "value", "invalid regex '%s': %s", re, msg);
        return;
    }
    n->has_re = 1;
}

static void clause_exists_value(vctx *c, cond_node *n, const cJSON *v, const char *path)
{
    char buf[SHOWN_MAX];
    n->want = 1;
    if (!v)
        return;
    if (cJSON_IsBool(v))
        n->want = cJSON_IsTrue(v);
    else
        problem(c, path, "value", "operator 'exists' takes true or false, got %s",
                shown(v, buf, sizeof buf));
}

static void clause_value(vctx *c, cond_node *n, const cJSON *clause, const char *path,
                         const char *field, const char *type)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(clause, "value");
    if (n->op == OP_EXISTS) {
        clause_exists_value(c, n, v, path);
        return;
    }
    if (!v) {
        problem(c, path, "value", "required for operator '%s'", op_names[n->op]);
        return;
    }
    if (!depth_ok(v, EVH_JSON_MAX_DEPTH)) {
        problem(c, path, "value", "value nests deeper than %d levels", EVH_JSON_MAX_DEPTH);
        return;
    }
    if (!value_shape_ok(c, path, n->op, v))
        return;
    value_fits_field(c, path, n->op, v, field, type);
    if (n->op == OP_MATCHES)
        compile_regex(c, n, path, v->valuestring);
    if (!(n->value = cJSON_Duplicate(v, 1)))
        out_of_memory(c, path);
}

/* ---- conditions ----------------------------------------------------------- */

static cond_node *compile_cond(vctx *c, const cJSON *j, const char *path, int depth);

static cond_node *compile_clause(vctx *c, const cJSON *j, const char *path)
{
    if (++c->clauses > TRIGGER_MAX_CLAUSES) {
        /* Said once; the rest are not even read, so a huge spec costs
         * little. */
        if (c->clauses == TRIGGER_MAX_CLAUSES + 1)
            problem(c, path, NULL, "more than %d clauses in one trigger", TRIGGER_MAX_CLAUSES);
        return NULL;
    }
    const char *type = NULL;
    const char *field = clause_field(c, j, path, &type);
    int op = clause_op(c, j, path);
    cond_node *n = node_new(c, NODE_CLAUSE, 0, path);
    if (!n)
        return NULL;
    if (field && !(n->field = strdup(field)))
        out_of_memory(c, path);
    if (op < 0)
        return n;
    n->op = (op_kind)op;
    const char *need = op_requirement(n->op, type);
    if (field && need)
        problem(c, path, "op",
                "operator '%s' does not apply to field '%s' of type %s (it needs %s)", op_names[op],
                field, type, need);
    clause_value(c, n, j, path, field, type);
    return n;
}

static void depth_problem(vctx *c, const char *path)
{
    problem(c, path, NULL, "conditions nest deeper than %d levels of all, any and not",
            TRIGGER_MAX_DEPTH);
}

/* all / any over list (at path); depth counts the all/any/not around it. */
static cond_node *compile_list(vctx *c, const cJSON *list, const char *path, int depth,
                               node_kind kind, const char *label)
{
    if (!cJSON_IsArray(list)) {
        problem(c, path, NULL, "'%s' takes a list of conditions, got %s", label,
                json_type_name(list));
        return NULL;
    }
    if (!list->child) {
        problem(c, path, NULL, "'%s' needs at least one condition", label);
        return NULL;
    }
    if (depth >= TRIGGER_MAX_DEPTH) {
        depth_problem(c, path);
        return NULL;
    }
    cond_node *n = node_new(c, kind, (size_t)cJSON_GetArraySize(list), path);
    if (!n)
        return NULL;
    size_t i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, list)
    {
        char *p = child_index(c, path, i);
        n->kids[i++] = p ? compile_cond(c, item, p, depth + 1) : NULL;
        free(p);
    }
    return n;
}

static cond_node *compile_not(vctx *c, const cJSON *v, const char *path, int depth)
{
    if (!cJSON_IsObject(v)) {
        problem(c, path, NULL, "'not' takes one condition (a mapping), got %s", json_type_name(v));
        return NULL;
    }
    if (depth >= TRIGGER_MAX_DEPTH) {
        depth_problem(c, path);
        return NULL;
    }
    cond_node *n = node_new(c, NODE_NOT, 1, path);
    if (n)
        n->kids[0] = compile_cond(c, v, path, depth + 1);
    return n;
}

/* Keys a condition may have; the order matters for the bits below. */
static const char *const cond_keys[] = {"all", "any", "not", "field", "op", "value"};
#define COND_KEYS "all, any, not, field, op, value"
#define CLAUSE_BITS (1u << 3 | 1u << 4 | 1u << 5)

/* "'all' and 'field'": what a condition mixes, for the message. */
static void describe_mix(unsigned seen, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < 6 && len < n; i++) {
        if (seen & (1u << i))
            len += (size_t)snprintf(buf + len, n - len, "%s'%s'", len ? " and " : "", cond_keys[i]);
    }
}

/* Which kind of condition an object is, after its keys were checked; -1
 * when it is none or more than one (reported). */
static int cond_kind(vctx *c, const cJSON *j, const char *path, unsigned seen)
{
    unsigned kinds = !!(seen & 1u) + !!(seen & 2u) + !!(seen & 4u) + !!(seen & CLAUSE_BITS);
    if (kinds == 1)
        return seen & 1u ? NODE_ALL : seen & 2u ? NODE_ANY : seen & 4u ? NODE_NOT : NODE_CLAUSE;
    if (kinds > 1) {
        char mix[96];
        describe_mix(seen, mix, sizeof mix);
        problem(c, path, NULL,
                "a condition is exactly one of all, any, not or a clause {field, op, value}; "
                "this one has %s",
                mix);
    } else if (!j->child) {
        problem(c, path, NULL,
                "empty condition: expected all, any, not or a clause {field, op, value}");
    }
    /* otherwise it had only unknown keys, each reported already */
    return -1;
}

static cond_node *compile_cond(vctx *c, const cJSON *j, const char *path, int depth)
{
    if (cJSON_IsArray(j)) {
        problem(c, path, NULL,
                "a list of conditions is read as 'all' only at the top; write all: [...] here");
        return NULL;
    }
    if (!cJSON_IsObject(j)) {
        problem(c, path, NULL,
                "a condition must be a mapping (all, any, not or a clause {field, op, value}), "
                "got %s",
                json_type_name(j));
        return NULL;
    }
    unsigned seen = check_keys(c, j, path, cond_keys, 6, COND_KEYS);
    int kind = cond_kind(c, j, path, seen);
    if (kind < 0)
        return NULL;
    if (kind == NODE_CLAUSE)
        return compile_clause(c, j, path);
    const char *key = node_names[kind];
    char *p = child_key(c, path, key);
    if (!p)
        return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    cond_node *n = kind == NODE_NOT ? compile_not(c, v, p, depth)
                                    : compile_list(c, v, p, depth, (node_kind)kind, key);
    free(p);
    return n;
}

/* The conditions key: a list at the top is read as all. */
static cond_node *compile_top(vctx *c, const cJSON *conds, const char *path)
{
    if (cJSON_IsArray(conds))
        return compile_list(c, conds, path, 0, NODE_ALL, "conditions");
    return compile_cond(c, conds, path, 0);
}

/* ---- the trigger ----------------------------------------------------------- */

static const char *const top_keys[] = {"id",         "name",     "description", "source",
                                       "event_type", "workflow", "enabled",     "conditions"};
#define TOP_KEYS "id, name, description, source, event_type, workflow, enabled, conditions"

typedef struct fields {
    const char *id, *name, *description, *source, *event_type, *workflow;
    int enabled;
    const cJSON *conditions; /* NULL when absent or null */
} fields;

enum { OPTIONAL = 0, REQUIRED = 1, NON_EMPTY = 2 };

/* The string at obj.key; NULL when absent or after a problem.  An optional
 * key written as null (YAML "key:" with nothing after) counts as absent. */
static const char *get_string(vctx *c, const cJSON *obj, const char *base, const char *key,
                              int flags)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || (!(flags & REQUIRED) && cJSON_IsNull(v))) {
        if (flags & REQUIRED)
            problem(c, base, key, "required string is missing");
        return NULL;
    }
    if (!cJSON_IsString(v)) {
        problem(c, base, key, "must be a string, got %s", json_type_name(v));
        return NULL;
    }
    if ((flags & NON_EMPTY) && !v->valuestring[0]) {
        problem(c, base, key, "must be a non-empty string");
        return NULL;
    }
    return v->valuestring;
}

static int id_valid(const char *s)
{
    size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-");
    return n >= 1 && n <= EVH_ID_MAX_LEN && s[n] == '\0';
}

static void read_fields(vctx *c, const cJSON *spec, const char *base, fields *f)
{
    f->id = get_string(c, spec, base, "id", REQUIRED);
    if (f->id && !id_valid(f->id)) {
        problem(c, base, "id", "invalid id '%s': use 1 to %d of the characters A-Z a-z 0-9 _ . -",
                f->id, EVH_ID_MAX_LEN);
        f->id = NULL;
    }
    f->name = get_string(c, spec, base, "name", NON_EMPTY);
    f->description = get_string(c, spec, base, "description", OPTIONAL);
    f->source = get_string(c, spec, base, "source", REQUIRED | NON_EMPTY);
    f->event_type = get_string(c, spec, base, "event_type", REQUIRED | NON_EMPTY);
    f->workflow = get_string(c, spec, base, "workflow", REQUIRED | NON_EMPTY);
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(spec, "enabled");
    f->enabled = 1;
    if (cJSON_IsBool(en))
        f->enabled = cJSON_IsTrue(en);
    else if (en && !cJSON_IsNull(en))
        problem(c, base, "enabled", "must be true or false, got %s", json_type_name(en));
    f->conditions = cJSON_GetObjectItemCaseSensitive(spec, "conditions");
    if (cJSON_IsNull(f->conditions))
        f->conditions = NULL;
}

/* " (did you mean 'x'?)" naming the known name nearest to the unknown
 * `word`, or "" when none is near: the seed's users wrote "my-Timer" for
 * "my-timer" and got no hint why nothing ran. */
static const char *did_you_mean(const trigger_resolver *res, trigger_names what, const char *source,
                                const char *word, char *buf, size_t cap)
{
    spell_near near;
    spell_near_init(&near, word);
    if (res->offer_names)
        res->offer_names(res->ud, what, source, &near);
    if (!near.best)
        return "";
    snprintf(buf, cap, " (did you mean '%s'?)", near.best);
    return buf;
}

/* Source, event type and workflow through the resolver; remembers the data
 * schema so that clauses on data.* can be checked against it. */
static void resolve(vctx *c, const char *base, const trigger_resolver *res, const fields *f)
{
    char hint[EVH_ID_MAX_LEN + 32];
    if (!res)
        return;
    if (res->event_type && f->source && f->event_type) {
        const schema *s = NULL;
        int r = res->event_type(res->ud, f->source, f->event_type, &s);
        if (r == 0)
            problem(c, base, "source", "unknown event source '%s'%s", f->source,
                    did_you_mean(res, TRIGGER_NAMES_SOURCES, NULL, f->source, hint, sizeof hint));
        else if (r < 0)
            problem(c, base, "event_type", "source '%s' does not declare event type '%s'%s",
                    f->source, f->event_type,
                    did_you_mean(res, TRIGGER_NAMES_EVENT_TYPES, f->source, f->event_type, hint,
                                 sizeof hint));
        else
            c->data_schema = s;
    }
    if (res->workflow_exists && f->workflow && res->workflow_exists(res->ud, f->workflow) != 1)
        problem(c, base, "workflow", "unknown workflow '%s'%s", f->workflow,
                did_you_mean(res, TRIGGER_NAMES_WORKFLOWS, NULL, f->workflow, hint, sizeof hint));
}

static char *dup_or_null(const char *s, int *ok)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *ok = 0;
    return d;
}

/* The trigger from checked fields; takes cond.  NULL when out of memory. */
static trigger *build(const fields *f, cond_node *cond)
{
    trigger *t = calloc(1, sizeof *t);
    if (!t) {
        cond_free(cond);
        return NULL;
    }
    int ok = 1;
    t->cond = cond;
    t->enabled = f->enabled;
    t->id = dup_or_null(f->id, &ok);
    t->name = dup_or_null(f->name ? f->name : f->id, &ok);
    t->description = dup_or_null(f->description, &ok);
    t->source = dup_or_null(f->source, &ok);
    t->event_type = dup_or_null(f->event_type, &ok);
    t->workflow_id = dup_or_null(f->workflow, &ok);
    if (f->conditions && !(t->conditions_json = cJSON_Duplicate(f->conditions, 1)))
        ok = 0;
    if (!ok) {
        trigger_free(t);
        return NULL;
    }
    return t;
}

trigger *trigger_from_json(const cJSON *spec, const char *path, const trigger_resolver *res,
                           diag *d)
{
    vctx c = {.d = d};
    const char *base = path ? path : "";
    if (!cJSON_IsObject(spec)) {
        problem(&c, base, NULL,
                "a trigger must be a mapping (id, source, event_type, workflow, "
                "...), got %s",
                json_type_name(spec));
        return NULL;
    }
    check_keys(&c, spec, base, top_keys, sizeof top_keys / sizeof *top_keys, TOP_KEYS);
    fields f;
    read_fields(&c, spec, base, &f);
    c.source = f.source;
    c.event_type = f.event_type;
    resolve(&c, base, res, &f);
    cond_node *cond = NULL;
    if (f.conditions) {
        char *p = child_key(&c, base, "conditions");
        cond = p ? compile_top(&c, f.conditions, p) : NULL;
        free(p);
    }
    if (c.problems) {
        cond_free(cond);
        return NULL;
    }
    trigger *t = build(&f, cond);
    if (!t)
        out_of_memory(&c, base);
    return t;
}

void trigger_free(trigger *t)
{
    if (!t)
        return;
    free(t->id);
    free(t->name);
    free(t->description);
    free(t->source);
    free(t->event_type);
    free(t->workflow_id);
    free(t->origin);
    cJSON_Delete(t->conditions_json);
    cond_free(t->cond);
    free(t);
}

static int add_string_or_null(cJSON *o, const char *key, const char *s)
{
    return (s ? cJSON_AddStringToObject(o, key, s) : cJSON_AddNullToObject(o, key)) != NULL;
}

cJSON *trigger_to_json(const trigger *t)
{
    if (!t)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON *conds = t->conditions_json ? cJSON_Duplicate(t->conditions_json, 1) : cJSON_CreateNull();
    int ok = o && conds && add_string_or_null(o, "id", t->id) &&
             add_string_or_null(o, "name", t->name) &&
             add_string_or_null(o, "description", t->description) &&
             add_string_or_null(o, "source", t->source) &&
             add_string_or_null(o, "event_type", t->event_type) &&
             add_string_or_null(o, "workflow", t->workflow_id);
    if (ok && cJSON_AddItemToObject(o, "conditions", conds))
        conds = NULL; /* o owns it now */
    else
        ok = 0;
    ok = ok && cJSON_AddBoolToObject(o, "enabled", t->enabled != 0) &&
         add_string_or_null(o, "origin", t->origin);
    cJSON_Delete(conds);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* ---- evaluation ------------------------------------------------------------ */

/* JSON equality; numbers by value (1 == 1.0), object keys in any order.
 * Recursion is bounded by the spec value's depth (EVH_JSON_MAX_DEPTH),
 * since it only descends where both sides are containers. */
static int json_equal(const cJSON *a, const cJSON *b)
{
    if (cJSON_IsNumber(a) && cJSON_IsNumber(b))
        return a->valuedouble == b->valuedouble;
    if (cJSON_IsString(a) && cJSON_IsString(b))
        return strcmp(a->valuestring, b->valuestring) == 0;
    if (cJSON_IsBool(a) && cJSON_IsBool(b))
        return cJSON_IsTrue(a) == cJSON_IsTrue(b);
    if (cJSON_IsNull(a) && cJSON_IsNull(b))
        return 1;
    if (cJSON_IsArray(a) && cJSON_IsArray(b)) {
        const cJSON *x = a->child, *y = b->child;
        for (; x && y; x = x->next, y = y->next)
            if (!json_equal(x, y))
                return 0;
        return !x && !y;
    }
    if (cJSON_IsObject(a) && cJSON_IsObject(b)) {
        if (cJSON_GetArraySize(a) != cJSON_GetArraySize(b))
            return 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, a)
        {
            const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);
            if (!y || !json_equal(x, y))
                return 0;
        }
        return 1;
    }
    return 0;
}

/* The order of field v against value w: numbers with numbers, strings with
 * strings (bytewise: strcmp compares as unsigned char).  0 when they are
 * not comparable, else 1 with *cmp <0, 0 or >0. */
static int compare(const cJSON *v, const cJSON *w, int *cmp)
{
    if (cJSON_IsNumber(v) && cJSON_IsNumber(w)) {
        *cmp = (v->valuedouble > w->valuedouble) - (v->valuedouble < w->valuedouble);
        return 1;
    }
    if (cJSON_IsString(v) && cJSON_IsString(w)) {
        *cmp = strcmp(v->valuestring, w->valuestring);
        return 1;
    }
    return 0;
}

static int in_list(const cJSON *v, const cJSON *list)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, list)
    {
        if (json_equal(v, e))
            return 1;
    }
    return 0;
}

static int contains(const cJSON *v, const cJSON *w)
{
    if (cJSON_IsString(v))
        return cJSON_IsString(w) && strstr(v->valuestring, w->valuestring) != NULL;
    if (cJSON_IsArray(v))
        return in_list(w, v);
    return 0;
}

static int affix(const cJSON *v, const cJSON *w, int at_end)
{
    if (!cJSON_IsString(v) || !cJSON_IsString(w))
        return 0;
    size_t n = strlen(v->valuestring), m = strlen(w->valuestring);
    if (m > n)
        return 0;
    return memcmp(v->valuestring + (at_end ? n - m : 0), w->valuestring, m) == 0;
}

/* The clause's field in the envelope; NULL when missing.  A JSON null counts
 * as missing: the envelope writes metadata.user_id as null when there is
 * none, and `exists` must say false for it. */
static const cJSON *lookup(const cond_node *n, const cJSON *envelope)
{
    const cJSON *v = json_path_get(envelope, n->field);
    return cJSON_IsNull(v) ? NULL : v;
}

static int ordered(const cJSON *v, const cJSON *w, op_kind op)
{
    int cmp;
    if (!compare(v, w, &cmp))
        return 0;
    switch (op) {
    case OP_GT:
        return cmp > 0;
    case OP_GTE:
        return cmp >= 0;
    case OP_LT:
        return cmp < 0;
    default:
        return cmp <= 0;
    }
}

/* The clause on field value v (NULL: missing, which only exists: false
 * accepts). */
static int clause_true(const cond_node *n, const cJSON *v)
{
    if (!v)
        return n->op == OP_EXISTS && !n->want;
    switch (n->op) {
    case OP_EQ:
        return json_equal(v, n->value);
    case OP_NE:
        return !json_equal(v, n->value);
    case OP_GT:
    case OP_GTE:
    case OP_LT:
    case OP_LTE:
        return ordered(v, n->value, n->op);
    case OP_IN:
        return in_list(v, n->value);
    case OP_NOT_IN:
        return !in_list(v, n->value);
    case OP_CONTAINS:
        return contains(v, n->value);
    case OP_STARTS_WITH:
    case OP_ENDS_WITH:
        return affix(v, n->value, n->op == OP_ENDS_WITH);
    case OP_MATCHES:
        return cJSON_IsString(v) && regexec(&n->re, v->valuestring, 0, NULL, 0) == 0;
    case OP_EXISTS:
        return n->want;
    default:
        return 0;
    }
}

/* Depth is bounded by TRIGGER_MAX_DEPTH, checked at load. */
static int eval(const cond_node *n, const cJSON *envelope)
{
    switch (n->kind) {
    case NODE_ALL:
        for (size_t i = 0; i < n->n_kids; i++)
            if (!eval(n->kids[i], envelope))
                return 0;
        return 1;
    case NODE_ANY:
        for (size_t i = 0; i < n->n_kids; i++)
            if (eval(n->kids[i], envelope))
                return 1;
        return 0;
    case NODE_NOT:
        return !eval(n->kids[0], envelope);
    default:
        return clause_true(n, lookup(n, envelope));
    }
}

int trigger_matches(const trigger *t, const cJSON *envelope)
{
    if (!t)
        return 0;
    return !t->cond || eval(t->cond, envelope);
}

/* ---- conditions alone ---------------------------------------------------- */

cond_node *conditions_compile(const cJSON *conds, const char *path, unsigned flags, diag *d)
{
    vctx c = {.d = d, .flags = flags};
    const char *base = path ? path : "";
    if (!conds) {
        problem(&c, base, NULL, "no conditions");
        return NULL;
    }
    cond_node *n = compile_top(&c, conds, base);
    if (c.problems) {
        cond_free(n);
        return NULL;
    }
    return n;
}

int conditions_eval(const cond_node *c, const cJSON *doc)
{
    return !c || eval(c, doc);
}

void conditions_free(cond_node *c)
{
    cond_free(c);
}

/* ---- explain --------------------------------------------------------------- */

static cJSON *explain_node(const cond_node *n, const cJSON *envelope, int *result);

static int explain_clause(cJSON *o, const cond_node *n, const cJSON *envelope, int *result)
{
    const cJSON *v = lookup(n, envelope);
    *result = clause_true(n, v);
    if (!cJSON_AddStringToObject(o, "field", n->field) ||
        !cJSON_AddStringToObject(o, "op", op_names[n->op]))
        return 0;
    if (n->value && !cJSON_AddItemToObject(o, "value", cJSON_Duplicate(n->value, 1)))
        return 0;
    if (v)
        return cJSON_AddItemToObject(o, "actual", cJSON_Duplicate(v, 1));
    return cJSON_AddTrueToObject(o, "missing") != NULL;
}

/* Every child is explained, not only up to the first deciding one, so the
 * user sees the whole tree. */
static int explain_group(cJSON *o, const cond_node *n, const cJSON *envelope, int *result)
{
    int r = 0;
    if (n->kind == NODE_NOT) {
        cJSON *kid = explain_node(n->kids[0], envelope, &r);
        *result = !r;
        return cJSON_AddItemToObject(o, "not", kid);
    }
    cJSON *list = cJSON_AddArrayToObject(o, node_names[n->kind]);
    if (!list)
        return 0;
    *result = n->kind == NODE_ALL;
    for (size_t i = 0; i < n->n_kids; i++) {
        cJSON *kid = explain_node(n->kids[i], envelope, &r);
        if (!cJSON_AddItemToArray(list, kid))
            return 0;
        *result = n->kind == NODE_ALL ? *result && r : *result || r;
    }
    return 1;
}

static cJSON *explain_node(const cond_node *n, const cJSON *envelope, int *result)
{
    cJSON *o = cJSON_CreateObject();
    *result = 0;
    int ok = o && (n->kind == NODE_CLAUSE ? explain_clause(o, n, envelope, result)
                                          : explain_group(o, n, envelope, result));
    if (ok && cJSON_AddBoolToObject(o, "result", *result))
        return o;
    cJSON_Delete(o);
    return NULL;
}

static int envelope_says(const cJSON *envelope, const char *key, const char *want)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(envelope, key));
    return s && want && strcmp(s, want) == 0;
}

cJSON *trigger_explain(const trigger *t, const cJSON *envelope)
{
    if (!t)
        return NULL;
    int cond_ok = 1;
    cJSON *out = cJSON_CreateObject();
    cJSON *tree = t->cond ? explain_node(t->cond, envelope, &cond_ok) : cJSON_CreateNull();
    int src = envelope_says(envelope, "source", t->source);
    int type = envelope_says(envelope, "event_type", t->event_type);
    int ok = out && tree && cJSON_AddStringToObject(out, "trigger", t->id) &&
             cJSON_AddBoolToObject(out, "matched", src && type && cond_ok) &&
             cJSON_AddBoolToObject(out, "source_matches", src) &&
             cJSON_AddBoolToObject(out, "event_type_matches", type) &&
             cJSON_AddBoolToObject(out, "enabled", t->enabled != 0);
    if (ok && cJSON_AddItemToObject(out, "conditions", tree))
        return out;
    cJSON_Delete(tree);
    cJSON_Delete(out);
    return NULL;
}

/* ---- the set in force ------------------------------------------------------ */

/* The triggers of one (source, event_type), in the order they were added. */
typedef struct pair_entry {
    struct pair_entry *next; /* hash chain */
    uint64_t hash;
    char *source;
    char *event_type;
    const trigger **items;
    size_t n, cap;
} pair_entry;

struct trigger_set {
    trigger **all; /* owned, in the order they were added */
    size_t n, cap;
    size_t *ids; /* open addressing on id: index into all + 1, 0 = empty */
    size_t id_cap;
    pair_entry **pairs; /* chained buckets */
    size_t pair_cap, n_pairs;
};

#define SET_INITIAL_SLOTS 64 /* both tables; powers of two */

/* FNV-1a, continued from h. */
static uint64_t fnv(uint64_t h, const char *s, int with_nul)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return with_nul ? h * 1099511628211u : h; /* the 0 byte: h ^ 0 == h */
}

#define FNV_BASIS 14695981039346656037u

static uint64_t pair_hash(const char *source, const char *event_type)
{
    return fnv(fnv(FNV_BASIS, source, 1), event_type, 0);
}

trigger_set *trigger_set_new(void)
{
    trigger_set *ts = calloc(1, sizeof *ts);
    if (!ts)
        return NULL;
    ts->ids = calloc(SET_INITIAL_SLOTS, sizeof *ts->ids);
    ts->pairs = calloc(SET_INITIAL_SLOTS, sizeof *ts->pairs);
    if (!ts->ids || !ts->pairs) {
        trigger_set_free(ts);
        return NULL;
    }
    ts->id_cap = ts->pair_cap = SET_INITIAL_SLOTS;
    return ts;
}

void trigger_set_free(trigger_set *ts)
{
    if (!ts)
        return;
    for (size_t i = 0; i < ts->n; i++)
        trigger_free(ts->all[i]);
    for (size_t b = 0; b < ts->pair_cap; b++) {
        pair_entry *e = ts->pairs ? ts->pairs[b] : NULL;
        while (e) {
            pair_entry *next = e->next;
            free(e->source);
            free(e->event_type);
            free(e->items);
            free(e);
            e = next;
        }
    }
    free(ts->pairs);
    free(ts->ids);
    free(ts->all);
    free(ts);
}

/* The slot of id in the id table: where it is, or the empty one where it
 * would go. */
static size_t id_slot(const size_t *ids, size_t cap, trigger *const *all, const char *id)
{
    size_t mask = cap - 1;
    size_t i = (size_t)fnv(FNV_BASIS, id, 0) & mask;
    while (ids[i] && strcmp(all[ids[i] - 1]->id, id) != 0)
        i = (i + 1) & mask;
    return i;
}

/* Keep the id table at most half full so probes stay short. */
static int id_reserve(trigger_set *ts)
{
    if ((ts->n + 1) * 2 <= ts->id_cap)
        return EVH_OK;
    size_t cap = ts->id_cap * 2;
    size_t *ids = calloc(cap, sizeof *ids);
    if (!ids)
        return EVH_E_NOMEM;
    for (size_t i = 0; i < ts->n; i++)
        ids[id_slot(ids, cap, ts->all, ts->all[i]->id)] = i + 1;
    free(ts->ids);
    ts->ids = ids;
    ts->id_cap = cap;
    return EVH_OK;
}

/* Keep at most one pair per bucket on average. */
static int pair_reserve(trigger_set *ts)
{
    if (ts->n_pairs + 1 <= ts->pair_cap)
        return EVH_OK;
    size_t cap = ts->pair_cap * 2;
    pair_entry **pairs = calloc(cap, sizeof *pairs);
    if (!pairs)
        return EVH_E_NOMEM;
    for (size_t b = 0; b < ts->pair_cap; b++) {
        pair_entry *e = ts->pairs[b];
        while (e) {
            pair_entry *next = e->next;
            size_t nb = (size_t)e->hash & (cap - 1);
            e->next = pairs[nb];
            pairs[nb] = e;
            e = next;
        }
    }
    free(ts->pairs);
    ts->pairs = pairs;
    ts->pair_cap = cap;
    return EVH_OK;
}

static pair_entry *pair_find(const trigger_set *ts, uint64_t h, const char *source,
                             const char *event_type)
{
    for (pair_entry *e = ts->pairs[(size_t)h & (ts->pair_cap - 1)]; e; e = e->next)
        if (e->hash == h && strcmp(e->source, source) == 0 &&
            strcmp(e->event_type, event_type) == 0)
            return e;
    return NULL;
}

static pair_entry *pair_new(uint64_t h, const char *source, const char *event_type)
{
    pair_entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->hash = h;
    e->source = strdup(source);
    e->event_type = strdup(event_type);
    e->items = malloc(sizeof *e->items);
    e->cap = 1;
    if (!e->source || !e->event_type || !e->items) {
        free(e->source);
        free(e->event_type);
        free(e->items);
        free(e);
        return NULL;
    }
    return e;
}

static int grow(void **items, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return EVH_OK;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *p = realloc(*items, ncap * size);
    if (!p)
        return EVH_E_NOMEM;
    *items = p;
    *cap = ncap;
    return EVH_OK;
}

/* Every allocation happens before the set changes, so a failure leaves it
 * as it was and the caller still owns t. */
int trigger_set_add(trigger_set *ts, trigger *t)
{
    if (!ts || !t || !t->id || !t->source || !t->event_type)
        return EVH_E_INVALID;
    if (trigger_set_get(ts, t->id))
        return EVH_E_DUPLICATE;
    void *all = ts->all;
    int rc = grow(&all, &ts->cap, ts->n + 1, sizeof *ts->all);
    ts->all = all;
    if (rc != EVH_OK || id_reserve(ts) != EVH_OK || pair_reserve(ts) != EVH_OK)
        return EVH_E_NOMEM;
    uint64_t h = pair_hash(t->source, t->event_type);
    pair_entry *e = pair_find(ts, h, t->source, t->event_type);
    pair_entry *fresh = e ? NULL : pair_new(h, t->source, t->event_type);
    if (!e && !fresh)
        return EVH_E_NOMEM;
    if (e) {
        void *items = e->items;
        rc = grow(&items, &e->cap, e->n + 1, sizeof *e->items);
        e->items = items;
        if (rc != EVH_OK)
            return rc;
    } else {
        size_t b = (size_t)h & (ts->pair_cap - 1);
        fresh->next = ts->pairs[b];
        ts->pairs[b] = fresh;
        ts->n_pairs++;
        e = fresh;
    }
    e->items[e->n++] = t;
    ts->ids[id_slot(ts->ids, ts->id_cap, ts->all, t->id)] = ts->n + 1;
    ts->all[ts->n++] = t;
    return EVH_OK;
}

const trigger *trigger_set_get(const trigger_set *ts, const char *id)
{
    if (!ts || !id)
        return NULL;
    size_t slot = id_slot(ts->ids, ts->id_cap, ts->all, id);
    return ts->ids[slot] ? ts->all[ts->ids[slot] - 1] : NULL;
}

size_t trigger_set_count(const trigger_set *ts)
{
    return ts ? ts->n : 0;
}

const trigger *trigger_set_at(const trigger_set *ts, size_t i)
{
    return ts && i < ts->n ? ts->all[i] : NULL;
}

int trigger_set_listens(const trigger_set *ts, const char *source, const char *event_type)
{
    if (!ts || !source || !event_type)
        return 0;
    const pair_entry *e = pair_find(ts, pair_hash(source, event_type), source, event_type);
    for (size_t i = 0; e && i < e->n; i++)
        if (e->items[i]->enabled)
            return 1;
    return 0;
}

size_t trigger_set_match(const trigger_set *ts, const char *source, const char *event_type,
                         const cJSON *envelope, const trigger **out, size_t max)
{
    if (!ts || !source || !event_type || !out)
        return 0;
    const pair_entry *e = pair_find(ts, pair_hash(source, event_type), source, event_type);
    size_t n = 0;
    for (size_t i = 0; e && i < e->n && n < max; i++)
        if (e->items[i]->enabled && trigger_matches(e->items[i], envelope))
            out[n++] = e->items[i];
    return n;
}
