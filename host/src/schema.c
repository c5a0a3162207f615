/*
 * schema.c - the JSON-schema subset, compiled once and validated many times
 * (see schema.h).
 *
 * A schema document is turned into a tree of `struct schema` nodes at load
 * time, so every problem with the schema itself (unknown keyword, wrong
 * keyword type, bad regex, contradictory limits, a default that violates its
 * own schema) is reported when the plugin is loaded, not when the first
 * event arrives.  Validation then only reads the tree, which makes it safe
 * to run from several threads at once.
 */
#include "schema.h"

#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evhost/evhost.h>

#include "jsonutil.h"
#include "evh_limits.h"
#include "triggers.h"
#include "regexcost.h"

/* Largest integer a double holds exactly; "integer" and the count keywords
 * stop there so that a value never changes meaning through rounding. */
#define MAX_SAFE_INTEGER 9007199254740992.0

enum sch_kind {
    SCH_ANY,   /* `true` or `{}`-like: accepts everything */
    SCH_NONE,  /* `false`: accepts nothing */
    SCH_RULES, /* an object with keywords */
};

enum sch_type { TY_OBJECT, TY_STRING, TY_NUMBER, TY_INTEGER, TY_BOOLEAN, TY_ARRAY, TY_NULL, TY_COUNT };

static const char *const type_names[TY_COUNT] = {"object",  "string", "number", "integer",
                                                 "boolean", "array",  "null"};

enum sch_extra { EXTRA_ANY, EXTRA_NONE, EXTRA_SCHEMA };

typedef struct sch_prop {
    char *name;
    schema *s; /* NULL only in a schema that failed to compile */
} sch_prop;

typedef struct count_limit {
    int set;
    unsigned long long n;
} count_limit;

struct schema {
    int kind;
    unsigned char types[TY_COUNT]; /* in declared order; n_types == 0: any type */
    size_t n_types;
    sch_prop *props;
    size_t n_props;
    char **required;
    size_t n_required;
    cJSON *enum_values; /* owned array; NULL when absent */
    cJSON *const_value; /* owned; NULL when absent */
    schema *items;
    int extra_mode; /* additionalProperties */
    schema *extra;
    int has_minimum, has_maximum;
    double minimum, maximum;
    count_limit min_length, max_length, min_items, max_items;
    int has_pattern;
    regex_t re;
    char *pattern;
    int date_time;
    int conditions; /* format "conditions" (see check_conditions) */
    cJSON *def; /* owned "default"; NULL when absent */
};

/* Every problem ever added to d, including the ones past its item limit:
 * "did this step add a problem?" must not depend on how full d is. */
static size_t diag_total(const diag *d)
{
    return d->count + d->dropped;
}

/* ---- small helpers ------------------------------------------------------ */

static void fmt_num(double v, char *buf, size_t len)
{
    /* %.15g reads well ("0.1", "7"); fall back to %.17g when it would not
     * give back the same double, so two different values never print alike */
    snprintf(buf, len, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, len, "%.17g", v);
}

static int has_type(const schema *s, int t)
{
    for (size_t i = 0; i < s->n_types; i++)
        if (s->types[i] == t)
            return 1;
    return 0;
}

static int is_integer_value(double v)
{
    /* the range test comes first: it also rejects NaN and infinities, so
     * the cast below is always defined */
    return v >= -MAX_SAFE_INTEGER && v <= MAX_SAFE_INTEGER && v == (double)(long long)v;
}

static const sch_prop *find_prop(const schema *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->n_props; i++)
        if (strlen(s->props[i].name) == len && memcmp(s->props[i].name, name, len) == 0)
            return &s->props[i];
    return NULL;
}

/* Characters, not bytes: a UTF-8 continuation byte (10xxxxxx) never starts
 * a code point.  cJSON only produces valid UTF-8 from \u escapes, and raw
 * bytes are counted the same way whatever they are. */
static size_t utf8_length(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xC0) != 0x80)
            n++;
    return n;
}

/* ---- RFC 3339 date-time ----------------------------------------------- */

static int read_digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

static int days_in_month(int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    return month == 2 && leap ? 29 : days[month - 1];
}

/* "YYYY-MM-DD"; each read stops at the first non-digit, so a short string
 * never reads past its terminating NUL. */
static int parse_full_date(const char *s)
{
    int y, m, d;
    if (!read_digits(s, 4, &y) || s[4] != '-' || !read_digits(s + 5, 2, &m) || s[7] != '-' ||
        !read_digits(s + 8, 2, &d))
        return 0;
    return m >= 1 && m <= 12 && d >= 1 && d <= days_in_month(y, m);
}

/* "HH:MM:SS" with an optional ".fraction"; returns the rest, or NULL.  A
 * second of 60 is a leap second, which RFC 3339 allows. */
static const char *parse_partial_time(const char *s)
{
    int h, m, sec;
    if (!read_digits(s, 2, &h) || s[2] != ':' || !read_digits(s + 3, 2, &m) || s[5] != ':' ||
        !read_digits(s + 6, 2, &sec))
        return NULL;
    if (h > 23 || m > 59 || sec > 60)
        return NULL;
    s += 8;
    if (*s == '.') {
        s++;
        if (*s < '0' || *s > '9')
            return NULL;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return s;
}

/* "Z" or "+HH:MM" / "-HH:MM", and nothing after it. */
static int parse_offset(const char *s)
{
    int h, m;
    if (*s == 'Z' || *s == 'z')
        return s[1] == '\0';
    if (*s != '+' && *s != '-')
        return 0;
    if (!read_digits(s + 1, 2, &h) || s[3] != ':' || !read_digits(s + 4, 2, &m) || s[6] != '\0')
        return 0;
    return h <= 23 && m <= 59;
}

static int is_date_time(const char *s)
{
    if (!parse_full_date(s) || (s[10] != 'T' && s[10] != 't'))
        return 0;
    const char *rest = parse_partial_time(s + 11);
    return rest && parse_offset(rest);
}

/* ---- freeing ------------------------------------------------------------ */

void schema_free(schema *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_props; i++) {
        free(s->props[i].name);
        schema_free(s->props[i].s);
    }
    free(s->props);
    for (size_t i = 0; i < s->n_required; i++)
        free(s->required[i]);
    free(s->required);
    cJSON_Delete(s->enum_values);
    cJSON_Delete(s->const_value);
    cJSON_Delete(s->def);
    schema_free(s->items);
    schema_free(s->extra);
    if (s->has_pattern)
        regfree(&s->re);
    free(s->pattern);
    free(s);
}

/* ---- validation --------------------------------------------------------- */

static void validate_node(const schema *s, const cJSON *v, const char *path, diag *d);

static int type_matches(int t, const cJSON *v)
{
    switch (t) {
    case TY_OBJECT:
        return cJSON_IsObject(v);
    case TY_STRING:
        return cJSON_IsString(v);
    case TY_NUMBER:
        return cJSON_IsNumber(v);
    case TY_INTEGER:
        return cJSON_IsNumber(v) && is_integer_value(v->valuedouble);
    case TY_BOOLEAN:
        return cJSON_IsBool(v);
    case TY_ARRAY:
        return cJSON_IsArray(v);
    case TY_NULL:
        return cJSON_IsNull(v);
    default:
        return 0;
    }
}

/* Reports a mismatch; returns 1 when v has one of the declared types. */
static int check_type(const schema *s, const cJSON *v, const char *path, diag *d)
{
    if (s->n_types == 0)
        return 1;
    for (size_t i = 0; i < s->n_types; i++)
        if (type_matches(s->types[i], v))
            return 1;
    if (s->n_types == 1) {
        diag_add(d, path, "expected %s, got %s", type_names[s->types[0]], json_type_name(v));
        return 0;
    }
    char list[128] = "";
    size_t len = 0;
    for (size_t i = 0; i < s->n_types && len < sizeof list; i++) {
        int n = snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "",
                         type_names[s->types[i]]);
        len += n > 0 ? (size_t)n : 0;
    }
    diag_add(d, path, "expected one of [%s], got %s", list, json_type_name(v));
    return 0;
}

static void check_enum_const(const schema *s, const cJSON *v, const char *path, diag *d)
{
    if (s->enum_values) {
        int found = 0;
        for (const cJSON *e = s->enum_values->child; e && !found; e = e->next)
            found = cJSON_Compare(v, e, 1);
        if (!found)
            diag_add(d, path, "value is not one of the allowed values (enum)");
    }
    if (s->const_value && !cJSON_Compare(v, s->const_value, 1))
        diag_add(d, path, "value does not equal const");
}

static void check_number(const schema *s, const cJSON *v, const char *path, diag *d)
{
    char got[40], lim[40];
    fmt_num(v->valuedouble, got, sizeof got);
    if (s->has_minimum && v->valuedouble < s->minimum) {
        fmt_num(s->minimum, lim, sizeof lim);
        diag_add(d, path, "value %s is below minimum %s", got, lim);
    }
    if (s->has_maximum && v->valuedouble > s->maximum) {
        fmt_num(s->maximum, lim, sizeof lim);
        diag_add(d, path, "value %s is above maximum %s", got, lim);
    }
}

static void check_string(const schema *s, const cJSON *v, const char *path, diag *d)
{
    const char *str = v->valuestring;
    size_t len = utf8_length(str);
    if (s->min_length.set && len < s->min_length.n)
        diag_add(d, path, "string is shorter than minLength %llu (length %zu)", s->min_length.n,
                 len);
    if (s->max_length.set && len > s->max_length.n)
        diag_add(d, path, "string is longer than maxLength %llu (length %zu)", s->max_length.n,
                 len);
    /* unanchored search, as in JSON schema: "^" and "$" anchor explicitly */
    if (s->has_pattern && regexec(&s->re, str, 0, NULL, 0) != 0)
        diag_add(d, path, "does not match pattern '%s'", s->pattern);
    if (s->date_time && !is_date_time(str))
        diag_add(d, path, "not a valid date-time (RFC 3339)");
}

static void check_array(const schema *s, const cJSON *v, const char *path, diag *d)
{
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (s->min_items.set && n < s->min_items.n)
        diag_add(d, path, "array has fewer than %llu items (minItems)", s->min_items.n);
    if (s->max_items.set && n > s->max_items.n)
        diag_add(d, path, "array has more than %llu items (maxItems)", s->max_items.n);
    if (!s->items)
        return;
    size_t i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        char *p = path_index(path, i);
        validate_node(s->items, e, p, d);
        free(p);
    }
}

static void check_object(const schema *s, const cJSON *v, const char *path, diag *d)
{
    for (size_t i = 0; i < s->n_required; i++) {
        if (cJSON_GetObjectItemCaseSensitive(v, s->required[i]))
            continue;
        char *p = path_key(path, s->required[i]);
        diag_add(d, p, "required property is missing");
        free(p);
    }
    for (const cJSON *m = v->child; m; m = m->next) {
        const char *key = m->string ? m->string : "";
        const sch_prop *prop = find_prop(s, key, strlen(key));
        if (!prop && s->extra_mode == EXTRA_ANY)
            continue;
        char *p = path_key(path, key);
        if (prop)
            validate_node(prop->s, m, p, d);
        else if (s->extra_mode == EXTRA_NONE)
            diag_add(d, p, "property is not allowed (additionalProperties is false)");
        else
            validate_node(s->extra, m, p, d);
        free(p);
    }
}

/* format "conditions": an evhost condition tree (the trigger language,
 * fields also under steps.*), compiled by the trigger compiler so that a
 * bad one (an unknown operator, a regex that does not compile) is reported
 * with its path when the config is checked, at load. */
static void check_conditions(const cJSON *v, const char *path, diag *d)
{
    conditions_free(conditions_compile(v, path, COND_ALLOW_STEPS, d));
}

/* Depth needs no check here: it follows the schema tree, whose depth
 * schema_compile bounded. */
static void validate_node(const schema *s, const cJSON *v, const char *path, diag *d)
{
    if (!s || s->kind == SCH_ANY)
        return;
    if (!v) {
        diag_add(d, path, "value is missing");
        return;
    }
    if (s->kind == SCH_NONE) {
        diag_add(d, path, "no value is allowed here (schema is false)");
        return;
    }
    /* the other keywords would only repeat a type mismatch in other words */
    if (!check_type(s, v, path, d))
        return;
    check_enum_const(s, v, path, d);
    if (cJSON_IsNumber(v))
        check_number(s, v, path, d);
    else if (cJSON_IsString(v))
        check_string(s, v, path, d);
    else if (cJSON_IsArray(v))
        check_array(s, v, path, d);
    else if (cJSON_IsObject(v))
        check_object(s, v, path, d);
    if (s->conditions && (cJSON_IsObject(v) || cJSON_IsArray(v)))
        check_conditions(v, path, d);
}

int schema_validate(const schema *s, const cJSON *instance, const char *path, diag *d)
{
    if (!s)
        return EVH_OK;
    diag local;
    diag *use = d;
    if (!use) {
        diag_init(&local, NULL);
        use = &local;
    }
    size_t before = diag_total(use);
    validate_node(s, instance, path ? path : "", use);
    int rc = diag_total(use) == before ? EVH_OK : EVH_E_SCHEMA;
    if (!d)
        diag_free(&local);
    return rc;
}

/* ---- compiling: one handler per keyword --------------------------------- */

typedef struct kwctx {
    diag *d;
    schema *s;
    const cJSON *v;   /* the keyword's value */
    const char *path; /* the keyword's path: "...properties.size.minimum" */
    const char *kw;   /* the keyword's name */
    int depth;        /* nesting level of s */
} kwctx;

static schema *compile_node(diag *d, const cJSON *json, const char *path, int depth);

static void oom(const kwctx *k)
{
    diag_add(k->d, k->path, "out of memory");
}

static int type_index(const char *name)
{
    for (int t = 0; t < TY_COUNT; t++)
        if (strcmp(type_names[t], name) == 0)
            return t;
    return -1;
}

static void add_type(const kwctx *k, const cJSON *v, const char *path)
{
    if (!cJSON_IsString(v)) {
        diag_add(k->d, path, "type names must be strings, got %s", json_type_name(v));
        return;
    }
    int t = type_index(v->valuestring);
    if (t < 0)
        diag_add(k->d, path,
                 "unknown type '%s' (expected object, string, number, integer, boolean, "
                 "array or null)",
                 v->valuestring);
    else if (has_type(k->s, t))
        diag_add(k->d, path, "type '%s' is listed more than once", v->valuestring);
    else
        k->s->types[k->s->n_types++] = (unsigned char)t;
}

static void kw_type(const kwctx *k)
{
    if (cJSON_IsString(k->v)) {
        add_type(k, k->v, k->path);
        return;
    }
    if (!cJSON_IsArray(k->v) || !k->v->child) {
        diag_add(k->d, k->path, "'type' must be a type name or a non-empty array of type names");
        return;
    }
    size_t i = 0;
    for (const cJSON *e = k->v->child; e; e = e->next, i++) {
        char *p = path_index(k->path, i);
        add_type(k, e, p);
        free(p);
    }
}

static void add_property(const kwctx *k, const cJSON *member)
{
    schema *s = k->s;
    const char *name = member->string ? member->string : "";
    char *p = path_key(k->path, name);
    if (find_prop(s, name, strlen(name))) {
        diag_add(k->d, p, "property '%s' is declared more than once", name);
    } else {
        sch_prop *prop = &s->props[s->n_props++];
        prop->name = strdup(name);
        prop->s = compile_node(k->d, member, p, k->depth + 1);
        if (!prop->name)
            diag_add(k->d, p, "out of memory");
    }
    free(p);
}

static void kw_properties(const kwctx *k)
{
    if (!cJSON_IsObject(k->v)) {
        diag_add(k->d, k->path, "'properties' must be an object, got %s", json_type_name(k->v));
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(k->v);
    k->s->props = calloc(n ? n : 1, sizeof *k->s->props);
    if (!k->s->props) {
        oom(k);
        return;
    }
    for (const cJSON *m = k->v->child; m; m = m->next)
        add_property(k, m);
}

static int is_required(const schema *s, const char *name)
{
    for (size_t i = 0; i < s->n_required; i++)
        if (strcmp(s->required[i], name) == 0)
            return 1;
    return 0;
}

static void add_required(const kwctx *k, const cJSON *e, const char *path)
{
    schema *s = k->s;
    if (!cJSON_IsString(e)) {
        diag_add(k->d, path, "'required' entries must be strings, got %s", json_type_name(e));
    } else if (is_required(s, e->valuestring)) {
        diag_add(k->d, path, "'%s' is listed more than once in 'required'", e->valuestring);
    } else if (!(s->required[s->n_required] = strdup(e->valuestring))) {
        diag_add(k->d, path, "out of memory");
    } else {
        s->n_required++;
    }
}

static void kw_required(const kwctx *k)
{
    if (!cJSON_IsArray(k->v)) {
        diag_add(k->d, k->path, "'required' must be an array of property names, got %s",
                 json_type_name(k->v));
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(k->v);
    k->s->required = calloc(n ? n : 1, sizeof *k->s->required);
    if (!k->s->required) {
        oom(k);
        return;
    }
    size_t i = 0;
    for (const cJSON *e = k->v->child; e; e = e->next, i++) {
        char *p = path_index(k->path, i);
        add_required(k, e, p);
        free(p);
    }
}

static void kw_enum(const kwctx *k)
{
    if (!cJSON_IsArray(k->v) || !k->v->child) {
        diag_add(k->d, k->path, "'enum' must be a non-empty array");
        return;
    }
    if (!(k->s->enum_values = cJSON_Duplicate(k->v, 1)))
        oom(k);
}

static void kw_const(const kwctx *k)
{
    if (!(k->s->const_value = cJSON_Duplicate(k->v, 1)))
        oom(k);
}

static void kw_default(const kwctx *k)
{
    if (!(k->s->def = cJSON_Duplicate(k->v, 1)))
        oom(k);
}

static void kw_items(const kwctx *k)
{
    if (cJSON_IsArray(k->v)) {
        diag_add(k->d, k->path,
                 "'items' must be a single schema (arrays of schemas are not supported)");
        return;
    }
    k->s->items = compile_node(k->d, k->v, k->path, k->depth + 1);
}

static void kw_additional(const kwctx *k)
{
    if (cJSON_IsBool(k->v)) {
        k->s->extra_mode = cJSON_IsTrue(k->v) ? EXTRA_ANY : EXTRA_NONE;
        return;
    }
    k->s->extra_mode = EXTRA_SCHEMA;
    k->s->extra = compile_node(k->d, k->v, k->path, k->depth + 1);
}

static int number_arg(const kwctx *k, double *out)
{
    if (!cJSON_IsNumber(k->v)) {
        diag_add(k->d, k->path, "'%s' must be a number, got %s", k->kw, json_type_name(k->v));
        return 0;
    }
    *out = k->v->valuedouble;
    return 1;
}

static void kw_minimum(const kwctx *k)
{
    k->s->has_minimum = number_arg(k, &k->s->minimum);
}

static void kw_maximum(const kwctx *k)
{
    k->s->has_maximum = number_arg(k, &k->s->maximum);
}

static void count_arg(const kwctx *k, count_limit *out)
{
    if (!cJSON_IsNumber(k->v) || k->v->valuedouble < 0 || !is_integer_value(k->v->valuedouble)) {
        diag_add(k->d, k->path, "'%s' must be a non-negative integer", k->kw);
        return;
    }
    out->set = 1;
    out->n = (unsigned long long)k->v->valuedouble;
}

static void kw_min_length(const kwctx *k)
{
    count_arg(k, &k->s->min_length);
}

static void kw_max_length(const kwctx *k)
{
    count_arg(k, &k->s->max_length);
}

static void kw_min_items(const kwctx *k)
{
    count_arg(k, &k->s->min_items);
}

static void kw_max_items(const kwctx *k)
{
    count_arg(k, &k->s->max_items);
}

/* Schema authors often write JavaScript escapes; glibc's POSIX regex reads
 * "\d" as a plain 'd', which would silently match the wrong strings. */
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

static void kw_pattern(const kwctx *k)
{
    if (!cJSON_IsString(k->v)) {
        diag_add(k->d, k->path, "'pattern' must be a string, got %s", json_type_name(k->v));
        return;
    }
    const char *re = k->v->valuestring;
    int esc = js_only_escape(re);
    if (esc) {
        diag_add(k->d, k->path,
                 "pattern '%s' uses '\\%c', which POSIX extended regex does not support "
                 "(use %s)",
                 re, esc, esc == 'd' ? "[0-9]" : "[^0-9]");
        return;
    }
    if (!regex_cost_ok(re)) {
        diag_add(k->d, k->path,
                 "pattern '%.64s' is too costly to compile: at most %d elements once repetition "
                 "counts are unrolled, and repetitions nested at most %d deep",
                 re, EVH_REGEX_MAX_EXPANSION, EVH_REGEX_MAX_REPEAT_DEPTH);
        return;
    }
    int rc = regcomp(&k->s->re, re, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char msg[128];
        regerror(rc, &k->s->re, msg, sizeof msg);
        if (msg[0] >= 'A' && msg[0] <= 'Z')
            msg[0] = (char)(msg[0] - 'A' + 'a');
        diag_add(k->d, k->path, "invalid pattern '%s': %s", re, msg);
        return;
    }
    k->s->has_pattern = 1;
    if (!(k->s->pattern = strdup(re)))
        oom(k);
}

static void kw_format(const kwctx *k)
{
    if (!cJSON_IsString(k->v)) {
        diag_add(k->d, k->path, "'format' must be a string, got %s", json_type_name(k->v));
        return;
    }
    if (strcmp(k->v->valuestring, "date-time") == 0)
        k->s->date_time = 1;
    else if (strcmp(k->v->valuestring, "conditions") == 0)
        k->s->conditions = 1;
    else
        diag_add(k->d, k->path, "unsupported format '%s' (supported: date-time, conditions)",
                 k->v->valuestring);
}

/* title, description, $schema, $comment: ignored, but typed. */
static void kw_text(const kwctx *k)
{
    if (!cJSON_IsString(k->v))
        diag_add(k->d, k->path, "'%s' must be a string, got %s", k->kw, json_type_name(k->v));
}

static void kw_examples(const kwctx *k)
{
    if (!cJSON_IsArray(k->v))
        diag_add(k->d, k->path, "'examples' must be an array, got %s", json_type_name(k->v));
}

typedef void kw_fn(const kwctx *k);

static const struct {
    const char *name;
    kw_fn *fn;
} keywords[] = {
    {"type", kw_type},
    {"properties", kw_properties},
    {"required", kw_required},
    {"enum", kw_enum},
    {"const", kw_const},
    {"items", kw_items},
    {"additionalProperties", kw_additional},
    {"minimum", kw_minimum},
    {"maximum", kw_maximum},
    {"minLength", kw_min_length},
    {"maxLength", kw_max_length},
    {"minItems", kw_min_items},
    {"maxItems", kw_max_items},
    {"pattern", kw_pattern},
    {"format", kw_format},
    {"default", kw_default},
    {"title", kw_text},
    {"description", kw_text},
    {"examples", kw_examples},
    {"$schema", kw_text},
    {"$comment", kw_text},
};

#define N_KEYWORDS (sizeof keywords / sizeof keywords[0])

_Static_assert(N_KEYWORDS <= 32, "the duplicate-keyword bitmask holds 32 keywords");

static int keyword_index(const char *name)
{
    for (size_t i = 0; i < N_KEYWORDS; i++)
        if (strcmp(keywords[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void unsupported(diag *d, const char *path, const char *name)
{
    char list[512] = "";
    size_t len = 0;
    for (size_t i = 0; i < N_KEYWORDS && len < sizeof list; i++) {
        int n = snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", keywords[i].name);
        len += n > 0 ? (size_t)n : 0;
    }
    diag_add(d, path, "unsupported schema keyword '%s' (supported: %s)", name, list);
}

static void compile_keywords(diag *d, schema *s, const cJSON *json, const char *path, int depth)
{
    uint32_t seen = 0;
    for (const cJSON *m = json->child; m; m = m->next) {
        const char *name = m->string ? m->string : "";
        char *kpath = path_key(path, name);
        int i = keyword_index(name);
        if (i < 0) {
            unsupported(d, kpath, name);
        } else if (seen & (UINT32_C(1) << i)) {
            diag_add(d, kpath, "keyword '%s' appears more than once", name);
        } else {
            seen |= UINT32_C(1) << i;
            kwctx k = {d, s, m, kpath, name, depth};
            keywords[i].fn(&k);
        }
        free(kpath);
    }
}

/* ---- compiling: checks across keywords ---------------------------------- */

static void check_count_order(diag *d, const char *path, const char *lo_kw, count_limit lo,
                              const char *hi_kw, count_limit hi)
{
    if (!lo.set || !hi.set || lo.n <= hi.n)
        return;
    char *p = path_key(path, lo_kw);
    diag_add(d, p, "'%s' %llu is greater than '%s' %llu", lo_kw, lo.n, hi_kw, hi.n);
    free(p);
}

static void check_limits(diag *d, const schema *s, const char *path)
{
    if (s->has_minimum && s->has_maximum && s->minimum > s->maximum) {
        char lo[40], hi[40];
        fmt_num(s->minimum, lo, sizeof lo);
        fmt_num(s->maximum, hi, sizeof hi);
        char *p = path_key(path, "minimum");
        diag_add(d, p, "'minimum' %s is greater than 'maximum' %s", lo, hi);
        free(p);
    }
    check_count_order(d, path, "minLength", s->min_length, "maxLength", s->max_length);
    check_count_order(d, path, "minItems", s->min_items, "maxItems", s->max_items);
}

/* A required property that additionalProperties false forbids makes every
 * instance invalid: surely a typo in one of the two lists. */
static void check_required_declared(diag *d, const schema *s, const char *path)
{
    if (s->extra_mode != EXTRA_NONE)
        return;
    for (size_t i = 0; i < s->n_required; i++) {
        const char *name = s->required[i];
        if (find_prop(s, name, strlen(name)))
            continue;
        char *rpath = path_key(path, "required");
        char *p = path_index(rpath, i);
        free(rpath);
        diag_add(d, p,
                 "required property '%s' is not declared in 'properties' and "
                 "additionalProperties is false",
                 name);
        free(p);
    }
}

/* A default that its own schema rejects would turn a missing value into an
 * invalid one; say so at load instead. */
static void check_default(diag *d, const schema *s, const char *path)
{
    if (!s->def)
        return;
    char *dpath = path_key(path, "default");
    diag tmp;
    diag_init(&tmp, NULL);
    validate_node(s, s->def, dpath, &tmp);
    for (size_t i = 0; i < tmp.count; i++)
        diag_add(d, tmp.items[i].path, "default does not match its schema: %s",
                 tmp.items[i].reason);
    d->dropped += tmp.dropped;
    diag_free(&tmp);
    free(dpath);
}

static schema *new_node(diag *d, const char *path, int kind)
{
    schema *s = calloc(1, sizeof *s);
    if (!s)
        diag_add(d, path, "out of memory");
    else
        s->kind = kind;
    return s;
}

/* depth counts schema levels: the root is 1, each properties / items /
 * additionalProperties member one more.  Past the cap the subtree is not
 * looked at, so neither compiling nor validating recurses without bound. */
static schema *compile_node(diag *d, const cJSON *json, const char *path, int depth)
{
    if (depth > EVH_JSON_MAX_DEPTH) {
        diag_add(d, path, "schema nesting too deep (more than %d levels)", EVH_JSON_MAX_DEPTH);
        return NULL;
    }
    if (cJSON_IsBool(json))
        return new_node(d, path, cJSON_IsTrue(json) ? SCH_ANY : SCH_NONE);
    if (!cJSON_IsObject(json)) {
        diag_add(d, path, "a schema must be an object or a boolean, got %s",
                 json_type_name(json));
        return NULL;
    }
    schema *s = new_node(d, path, SCH_RULES);
    if (!s)
        return NULL;
    size_t before = diag_total(d);
    compile_keywords(d, s, json, path, depth);
    if (diag_total(d) == before) {
        check_limits(d, s, path);
        check_required_declared(d, s, path);
    }
    /* validating the default needs a sound schema below it, too */
    if (diag_total(d) == before)
        check_default(d, s, path);
    return s;
}

schema *schema_compile(const cJSON *json, const char *path, diag *d)
{
    diag local;
    diag *use = d;
    if (!use) {
        diag_init(&local, NULL);
        use = &local;
    }
    size_t before = diag_total(use);
    schema *s = compile_node(use, json, path ? path : "", 1);
    if (diag_total(use) != before) {
        schema_free(s);
        s = NULL;
    }
    if (!d)
        diag_free(&local);
    return s;
}

/* ---- defaults ----------------------------------------------------------- */

static int apply_defaults(const schema *s, cJSON *obj)
{
    if (!s || s->kind != SCH_RULES || !cJSON_IsObject(obj))
        return EVH_OK;
    for (size_t i = 0; i < s->n_props; i++) {
        const sch_prop *p = &s->props[i];
        cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, p->name);
        if (!v && p->s && p->s->def) {
            v = cJSON_Duplicate(p->s->def, 1);
            if (!v || !cJSON_AddItemToObject(obj, p->name, v)) {
                cJSON_Delete(v);
                return EVH_E_NOMEM;
            }
        }
        int rc = cJSON_IsObject(v) ? apply_defaults(p->s, v) : EVH_OK;
        if (rc != EVH_OK)
            return rc;
    }
    return EVH_OK;
}

int schema_apply_defaults(const schema *s, cJSON *instance)
{
    return apply_defaults(s, instance);
}

/* ---- path lookup -------------------------------------------------------- */

enum walk { WALK_NEXT, WALK_ANY, WALK_NO };

static int walk_key(const schema *cur, const char *key, size_t len, const schema **next)
{
    if (cur->n_types && !has_type(cur, TY_OBJECT))
        return WALK_NO;
    const sch_prop *p = find_prop(cur, key, len);
    if (p) {
        *next = p->s;
        return WALK_NEXT;
    }
    if (cur->extra_mode == EXTRA_NONE)
        return WALK_NO;
    if (cur->extra_mode == EXTRA_SCHEMA) {
        *next = cur->extra;
        return WALK_NEXT;
    }
    return WALK_ANY;
}

static int walk_index(const schema *cur, const schema **next)
{
    if (cur->n_types && !has_type(cur, TY_ARRAY))
        return WALK_NO;
    if (!cur->items)
        return WALK_ANY;
    *next = cur->items;
    return WALK_NEXT;
}

/* One "[n]" or ".key" (or the leading "key") from *p; WALK_NO also for a
 * malformed path. */
static int walk_segment(const schema *cur, const char **p, int first, const schema **next)
{
    const char *s = *p;
    if (*s == '[') {
        size_t digits = strspn(s + 1, "0123456789");
        if (digits == 0 || s[1 + digits] != ']')
            return WALK_NO;
        *p = s + digits + 2;
        return walk_index(cur, next);
    }
    if (!first && *s++ != '.')
        return WALK_NO;
    size_t len = strcspn(s, ".[");
    if (len == 0)
        return WALK_NO;
    *p = s + len;
    return walk_key(cur, s, len, next);
}

static const char *single_type(const schema *s)
{
    const char *name = NULL;
    for (size_t i = 0; i < s->n_types; i++) {
        if (s->types[i] == TY_NULL)
            continue;
        if (name)
            return NULL;
        name = type_names[s->types[i]];
    }
    return name;
}

int schema_has_path(const schema *s, const char *path, const char **type_out)
{
    if (type_out)
        *type_out = NULL;
    if (!path)
        return 0;
    const schema *cur = s;
    for (const char *p = path; *p;) {
        if (!cur || cur->kind == SCH_ANY)
            return 1;
        if (cur->kind == SCH_NONE)
            return 0;
        int r = walk_segment(cur, &p, p == path, &cur);
        if (r != WALK_NEXT)
            return r == WALK_ANY;
    }
    if (cur && cur->kind == SCH_NONE)
        return 0;
    if (cur && type_out)
        *type_out = single_type(cur);
    return 1;
}
