/*
 * manifest.c - reading and validating plugin.json (see manifest.h).
 *
 * One pass looks at every field and adds each problem to the caller's diag,
 * so an author fixes the whole file in one round.  Only a document without
 * any problem becomes a manifest; otherwise everything built so far is
 * freed.
 */
#include "manifest.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "evh_limits.h"
#include "evhost/evhost.h"
#include "jsonutil.h"
#include "spell.h"

/* Values quoted in messages are cut to this many bytes: a hostile plugin.json
 * must not turn one problem into a megabyte log line. */
#define QUOTE_MAX 64
#define QUOTE_BUF (QUOTE_MAX * 4 + 8)

static const char *const top_keys[] = {
    "type",   "id",          "name",       "description",     "version",
    "abi",    "library",     "eventTypes", "configSchema",    "webhookEndpoint",
    "status", "author",      "license",    "homepage",        "tags",
    "isolation",
};

static const char *const event_type_keys[] = {"type", "label", "description", "schema"};

#define N_TOP_KEYS (sizeof top_keys / sizeof top_keys[0])
#define N_EVENT_TYPE_KEYS (sizeof event_type_keys / sizeof event_type_keys[0])

/* The type names schema.h knows; see check_data_schema_type. */
static const char *const schema_types[] = {"object",  "string", "number", "integer",
                                           "boolean", "array",  "null"};

/* Event type names declared so far, by index + 1 (0: free slot), so the
 * duplicate check stays linear for a manifest declaring thousands. */
typedef struct name_set {
    size_t *slots;
    size_t mask;
} name_set;

typedef struct ctx {
    diag *d;
    manifest *m;
    name_set types;
    int oom;
} ctx;

/* ---- messages ------------------------------------------------------------ */

static void problem(ctx *c, const char *base, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A problem at base.key (key NULL: at base itself). */
static void problem(ctx *c, const char *base, const char *key, const char *fmt, ...)
{
    char *path = key ? path_key(base, key) : NULL;
    va_list ap;
    va_start(ap, fmt);
    diag_addv(c->d, key ? (path ? path : key) : base, fmt, ap);
    va_end(ap);
    free(path);
}

/* Length of the longest prefix of s, at most max bytes, that does not split
 * a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

/* s in double quotes for a message, with quotes, backslashes and control
 * characters escaped (so a value cannot forge a second log line) and long
 * values cut with "...". */
static const char *quoted(const char *s, char buf[QUOTE_BUF])
{
    size_t len = strlen(s), n = utf8_cut(s, len, QUOTE_MAX), o = 0;
    buf[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)snprintf(buf + o, QUOTE_BUF - o, "\\x%02x", ch);
        } else {
            buf[o++] = (char)ch;
        }
    }
    if (n < len) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

static char *copy(ctx *c, const char *s)
{
    char *out = strdup(s);
    if (!out)
        c->oom = 1;
    return out;
}

/* ---- validators ---------------------------------------------------------- */

int is_kebab_id(const char *s)
{
    if (!s || !*s || strlen(s) > EVH_ID_MAX_LEN)
        return 0;
    int prev_hyphen = 1; /* forbids a leading hyphen */
    for (const char *p = s; *p; p++) {
        if (*p == '-') {
            if (prev_hyphen)
                return 0;
            prev_hyphen = 1;
        } else if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')) {
            prev_hyphen = 0;
        } else {
            return 0;
        }
    }
    return !prev_hyphen;
}

static int is_lower_alnum_underscore(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
}

/* ^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$: snake_case, optionally namespaced with
 * dots ("billing.invoice_paid"), so trigger files can name it unquoted. */
int is_event_type_name(const char *s)
{
    if (!s || !(*s >= 'a' && *s <= 'z') || strlen(s) > EVH_ID_MAX_LEN)
        return 0;
    int prev_dot = 0;
    for (const char *p = s + 1; *p; p++) {
        if (*p == '.') {
            if (prev_dot)
                return 0;
            prev_dot = 1;
        } else if (is_lower_alnum_underscore(*p)) {
            prev_dot = 0;
        } else {
            return 0;
        }
    }
    return !prev_dot;
}

/* A semver numeric identifier: "0" or digits without a leading zero.
 * Advances *p past it. */
static int semver_number(const char **p)
{
    const char *s = *p;
    size_t n = strspn(s, "0123456789");
    if (n == 0 || (n > 1 && s[0] == '0'))
        return 0;
    *p = s + n;
    return 1;
}

/* Dot-separated non-empty identifiers of [0-9A-Za-z-]; in a pre-release a
 * purely numeric identifier must not have a leading zero.  Stops at '+' or
 * the end. */
static int semver_idents(const char **p, int prerelease)
{
    const char *s = *p;
    for (;;) {
        size_t n = strspn(s, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "abcdefghijklmnopqrstuvwxyz-");
        if (n == 0)
            return 0;
        if (prerelease && strspn(s, "0123456789") == n && n > 1 && s[0] == '0')
            return 0;
        s += n;
        if (*s != '.')
            break;
        s++;
    }
    *p = s;
    return 1;
}

/* Semantic Versioning 2.0.0: MAJOR.MINOR.PATCH[-pre.release][+build]. */
int is_semver(const char *s)
{
    if (!s)
        return 0;
    const char *p = s;
    if (!semver_number(&p) || *p++ != '.' || !semver_number(&p) || *p++ != '.' ||
        !semver_number(&p))
        return 0;
    if (*p == '-') {
        p++;
        if (!semver_idents(&p, 1))
            return 0;
    }
    if (*p == '+') {
        p++;
        if (!semver_idents(&p, 0))
            return 0;
    }
    return *p == '\0';
}

/* One ABI number: "0" or digits without a leading zero, at most 65535. */
static int abi_number(const char **p, uint16_t *out)
{
    const char *s = *p;
    size_t n = strspn(s, "0123456789");
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return 0;
    unsigned long v = strtoul(s, NULL, 10);
    if (v > UINT16_MAX)
        return 0;
    *out = (uint16_t)v;
    *p = s + n;
    return 1;
}

static int parse_abi(const char *s, uint16_t *major, uint16_t *minor)
{
    const char *p = s;
    return abi_number(&p, major) && *p++ == '.' && abi_number(&p, minor) && *p == '\0';
}

/* ---- key spelling -------------------------------------------------------- */

static int known_index(const char *key, const char *const *known, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(key, known[i]) == 0)
            return (int)i;
    return -1;
}

static void unknown_key(ctx *c, const char *base, const char *key, const char *const *known,
                        size_t n)
{
    char q[QUOTE_BUF], list[512] = "";
    const char *hint = spell_nearest(key, known, n);
    if (hint) {
        problem(c, base, key, "unknown key %s (did you mean \"%s\"?)", quoted(key, q), hint);
        return;
    }
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", known[i]);
    problem(c, base, key, "unknown key %s (known keys: %s)", quoted(key, q), list);
}

_Static_assert(N_TOP_KEYS <= 32 && N_EVENT_TYPE_KEYS <= 32,
               "check_keys tracks the keys seen in a 32-bit mask");

/* Unknown keys are errors so that a misspelt optional key is not silently
 * ignored; a repeated key is one cJSON would silently shadow. */
static void check_keys(ctx *c, const cJSON *obj, const char *base, const char *const *known,
                       size_t n)
{
    uint32_t seen = 0;
    for (const cJSON *m = obj->child; m; m = m->next) {
        const char *key = m->string ? m->string : "";
        int i = known_index(key, known, n);
        if (i < 0)
            unknown_key(c, base, key, known, n);
        else if (seen & (UINT32_C(1) << i))
            problem(c, base, key, "duplicate key (only one \"%s\" is allowed)", key);
        seen |= i < 0 ? 0 : UINT32_C(1) << i;
    }
}

/* ---- field helpers ------------------------------------------------------- */

/* Member `key` of obj when it is a string.  A missing required member and a
 * member of another type are reported; `what` says what a missing one is
 * for (NULL: nothing to add). */
static const char *get_string(ctx *c, const cJSON *obj, const char *base, const char *key,
                              int required, const char *what)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        if (required && what)
            problem(c, base, key, "required string is missing (%s)", what);
        else if (required)
            problem(c, base, key, "required string is missing");
        return NULL;
    }
    if (!cJSON_IsString(v) || !v->valuestring) {
        problem(c, base, key, "must be a string, got %s", json_type_name(v));
        return NULL;
    }
    return v->valuestring;
}

/* A required string that must not be empty (names and labels shown in UIs). */
static const char *get_nonempty(ctx *c, const cJSON *obj, const char *base, const char *key)
{
    const char *s = get_string(c, obj, base, key, 1, NULL);
    if (s && !*s) {
        problem(c, base, key, "must not be empty");
        return NULL;
    }
    return s;
}

/* ---- top-level fields ---------------------------------------------------- */

static void check_kind(ctx *c, const cJSON *root)
{
    char q[QUOTE_BUF];
    const char *s = get_string(c, root, "", "type", 1, NULL);
    if (!s)
        return;
    if (strcmp(s, "event-source") == 0)
        c->m->kind = EVH_KIND_SOURCE;
    else if (strcmp(s, "workflow-step") == 0)
        c->m->kind = EVH_KIND_STEP;
    else
        problem(c, "", "type", "must be \"event-source\" or \"workflow-step\", got %s",
                quoted(s, q));
}

static void check_id(ctx *c, const cJSON *root)
{
    char q[QUOTE_BUF];
    const char *s = get_string(c, root, "", "id", 1, NULL);
    if (!s)
        return;
    if (!*s)
        problem(c, "", "id", "must not be empty");
    else if (strlen(s) > EVH_ID_MAX_LEN)
        problem(c, "", "id", "%s is longer than %d characters", quoted(s, q), EVH_ID_MAX_LEN);
    else if (!is_kebab_id(s))
        problem(c, "", "id",
                "%s is not kebab-case (lowercase letters, digits and single hyphens, "
                "e.g. \"my-timer\")",
                quoted(s, q));
    else
        c->m->id = copy(c, s);
}

static void check_texts(ctx *c, const cJSON *root)
{
    const char *name = get_nonempty(c, root, "", "name");
    if (name)
        c->m->name = copy(c, name);
    const char *desc = get_string(c, root, "", "description", 1, NULL);
    if (desc)
        c->m->description = copy(c, desc);
}

static void check_version(ctx *c, const cJSON *root)
{
    char q[QUOTE_BUF];
    const char *s = get_string(c, root, "", "version", 1, NULL);
    if (!s)
        return;
    if (is_semver(s))
        c->m->version = copy(c, s);
    else
        problem(c, "", "version",
                "%s is not a semantic version (MAJOR.MINOR.PATCH, e.g. \"1.0.0\")",
                quoted(s, q));
}

static void check_abi(ctx *c, const cJSON *root)
{
    char q[QUOTE_BUF];
    const char *s = get_string(c, root, "", "abi", 1, "the SDK ABI this plugin needs, e.g. \"1.0\"");
    if (s && !parse_abi(s, &c->m->abi_major, &c->m->abi_minor))
        problem(c, "", "abi", "%s is not MAJOR.MINOR (e.g. \"1.0\")", quoted(s, q));
}

/* The library is opened relative to the plugin folder; a path could point
 * the loader at code outside it. */
static void check_library(ctx *c, const cJSON *root)
{
    char q[QUOTE_BUF];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "library");
    const char *s = get_string(c, root, "", "library", 0, NULL);
    if (!s) {
        if (!v && c->m->id && asprintf(&c->m->library, "%s.so", c->m->id) < 0) {
            c->m->library = NULL;
            c->oom = 1;
        }
        return;
    }
    if (!*s)
        problem(c, "", "library", "must not be empty");
    else if (strchr(s, '/'))
        problem(c, "", "library",
                "must be a file name in the plugin folder, without \"/\", got %s", quoted(s, q));
    else if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        problem(c, "", "library", "must be a file name, got %s", quoted(s, q));
    else
        c->m->library = copy(c, s);
}

static void check_config_schema(ctx *c, const cJSON *root)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "configSchema");
    if (!v)
        return;
    c->m->config_schema_json = v;
    c->m->config_schema = schema_compile(v, "configSchema", c->d);
}

/* The endpoint becomes a route of the HTTP server: it must be an absolute
 * path that cannot climb out of the plugin's prefix or split a request line. */
static void check_webhook(ctx *c, const cJSON *root)
{
    const char *s = get_string(c, root, "", "webhookEndpoint", 0, NULL);
    if (!s)
        return;
    int space = 0;
    for (const char *p = s; *p; p++)
        space |= isspace((unsigned char)*p) || iscntrl((unsigned char)*p);
    if (s[0] != '/')
        problem(c, "", "webhookEndpoint", "must start with \"/\"");
    else if (space)
        problem(c, "", "webhookEndpoint", "must not contain whitespace");
    else if (strstr(s, ".."))
        problem(c, "", "webhookEndpoint", "must not contain \"..\"");
    else if (strpbrk(s, "?#"))
        problem(c, "", "webhookEndpoint",
                "must not contain \"?\" or \"#\": it is a path; requests with any query "
                "reach it");
    else
        c->m->webhook_endpoint = copy(c, s);
}

static void check_status(ctx *c, const cJSON *root)
{
    char q[QUOTE_BUF];
    c->m->active = 1;
    const char *s = get_string(c, root, "", "status", 0, NULL);
    if (!s)
        return;
    if (strcmp(s, "inactive") == 0)
        c->m->active = 0;
    else if (strcmp(s, "active") != 0)
        problem(c, "", "status", "must be \"active\" or \"inactive\", got %s", quoted(s, q));
}

/* Crash isolation (isolate.h); host.yaml plugins.isolation overrides it. */
static void check_isolation(ctx *c, const cJSON *root)
{
    char q[QUOTE_BUF];
    const char *s = get_string(c, root, "", "isolation", 0, NULL);
    if (s && strcmp(s, "in-process") != 0 && strcmp(s, "process") != 0)
        problem(c, "", "isolation", "must be \"in-process\" or \"process\", got %s",
                quoted(s, q));
    c->m->isolation_process = s && !strcmp(s, "process");
}

static void check_informational(ctx *c, const cJSON *root)
{
    get_string(c, root, "", "author", 0, NULL);
    get_string(c, root, "", "license", 0, NULL);
    get_string(c, root, "", "homepage", 0, NULL);
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(root, "tags");
    if (!tags)
        return;
    if (!cJSON_IsArray(tags)) {
        problem(c, "", "tags", "must be an array of strings, got %s", json_type_name(tags));
        return;
    }
    size_t i = 0;
    for (const cJSON *t = tags->child; t; t = t->next, i++) {
        if (cJSON_IsString(t))
            continue;
        char *p = path_index("tags", i);
        problem(c, p ? p : "tags", NULL, "must be a string, got %s", json_type_name(t));
        free(p);
    }
}

/* ---- event types --------------------------------------------------------- */

static int is_schema_type(const cJSON *v)
{
    if (!cJSON_IsString(v))
        return 0;
    for (size_t i = 0; i < sizeof schema_types / sizeof schema_types[0]; i++)
        if (strcmp(v->valuestring, schema_types[i]) == 0)
            return 1;
    return 0;
}

/* Event data is always a JSON object, so a schema declaring only other
 * types could never accept an event.  Unknown type names and malformed
 * "type" values are left to schema_compile, which reports them. */
static void check_data_schema_type(ctx *c, const cJSON *json, const char *spath)
{
    char q[QUOTE_BUF];
    const cJSON *t = cJSON_IsObject(json) ? cJSON_GetObjectItemCaseSensitive(json, "type") : NULL;
    if (is_schema_type(t)) {
        if (strcmp(t->valuestring, "object") != 0)
            problem(c, spath, "type", "must be \"object\" (event data is a JSON object), got %s",
                    quoted(t->valuestring, q));
        return;
    }
    if (!cJSON_IsArray(t) || !t->child)
        return;
    for (const cJSON *e = t->child; e; e = e->next)
        if (!is_schema_type(e) || strcmp(e->valuestring, "object") == 0)
            return;
    problem(c, spath, "type", "must include \"object\" (event data is a JSON object)");
}

static void check_event_schema(ctx *c, const cJSON *obj, const char *base,
                               manifest_event_type *et)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "schema");
    if (!v)
        return;
    char *spath = path_key(base, "schema");
    if (!spath) {
        c->oom = 1;
        return;
    }
    et->schema_json = v;
    et->schema = schema_compile(v, spath, c->d);
    check_data_schema_type(c, v, spath);
    free(spath);
}

static size_t hash_name(const char *s)
{
    uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * UINT64_C(1099511628211);
    return (size_t)h;
}

static int name_set_init(name_set *set, size_t n)
{
    size_t cap = 8;
    while (cap < 2 * n)
        cap *= 2;
    set->slots = calloc(cap, sizeof *set->slots);
    set->mask = cap - 1;
    return set->slots != NULL;
}

/* The index of an earlier event type named s; otherwise records index i
 * under s and returns (size_t)-1. */
static size_t name_set_claim(name_set *set, const manifest *m, const char *s, size_t i)
{
    size_t k = hash_name(s) & set->mask;
    for (; set->slots[k]; k = (k + 1) & set->mask)
        if (strcmp(m->event_types[set->slots[k] - 1].type, s) == 0)
            return set->slots[k] - 1;
    set->slots[k] = i + 1;
    return (size_t)-1;
}

/* The type name, checked for form and against the types before index i. */
static void check_event_type_name(ctx *c, const cJSON *obj, const char *base, size_t i)
{
    char q[QUOTE_BUF];
    const char *s = get_string(c, obj, base, "type", 1, NULL);
    if (!s)
        return;
    if (strlen(s) > EVH_ID_MAX_LEN) {
        problem(c, base, "type", "%s is longer than %d characters", quoted(s, q), EVH_ID_MAX_LEN);
        return;
    }
    if (!is_event_type_name(s)) {
        problem(c, base, "type",
                "%s is not an event type name (lowercase letters, digits and \"_\", optionally "
                "dot-separated, e.g. \"timer_fired\")",
                quoted(s, q));
        return;
    }
    c->m->event_types[i].type = copy(c, s);
    if (!c->m->event_types[i].type)
        return;
    size_t j = name_set_claim(&c->types, c->m, s, i);
    if (j != (size_t)-1)
        problem(c, base, "type", "duplicate event type %s (also at eventTypes[%zu])",
                quoted(s, q), j);
}

static void check_event_type(ctx *c, const cJSON *obj, size_t i)
{
    char *base = path_index("eventTypes", i);
    if (!base) {
        c->oom = 1;
        return;
    }
    manifest_event_type *et = &c->m->event_types[i];
    if (!cJSON_IsObject(obj)) {
        problem(c, base, NULL, "must be an object, got %s", json_type_name(obj));
        free(base);
        return;
    }
    check_event_type_name(c, obj, base, i);
    const char *label = get_nonempty(c, obj, base, "label");
    if (label)
        et->label = copy(c, label);
    const char *desc = get_nonempty(c, obj, base, "description");
    if (desc)
        et->description = copy(c, desc);
    check_event_schema(c, obj, base, et);
    check_keys(c, obj, base, event_type_keys, N_EVENT_TYPE_KEYS);
    free(base);
}

static void check_event_types(ctx *c, const cJSON *root)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "eventTypes");
    int source = c->m->kind == EVH_KIND_SOURCE;
    if (!v) {
        if (source)
            problem(c, "", "eventTypes", "required array is missing (the event types this "
                                         "source emits)");
        return;
    }
    if (!cJSON_IsArray(v)) {
        problem(c, "", "eventTypes", "must be an array, got %s", json_type_name(v));
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n == 0) {
        if (source)
            problem(c, "", "eventTypes", "must be a non-empty array for an event source");
        return;
    }
    c->m->event_types = calloc(n, sizeof *c->m->event_types);
    if (!c->m->event_types || !name_set_init(&c->types, n)) {
        c->oom = 1;
        return;
    }
    c->m->n_event_types = n;
    size_t i = 0;
    for (const cJSON *e = v->child; e && i < n; e = e->next, i++)
        check_event_type(c, e, i);
    free(c->types.slots);
    c->types.slots = NULL;
}

/* ---- the document -------------------------------------------------------- */

static size_t problems(const diag *d)
{
    return d->count + d->dropped;
}

static void check_document(ctx *c, const cJSON *root)
{
    check_kind(c, root);
    check_id(c, root);
    check_texts(c, root);
    check_version(c, root);
    check_abi(c, root);
    check_library(c, root);
    check_event_types(c, root);
    check_config_schema(c, root);
    check_webhook(c, root);
    check_status(c, root);
    check_isolation(c, root);
    check_informational(c, root);
    check_keys(c, root, "", top_keys, N_TOP_KEYS);
}

/* Parse with the size and nesting limits; a failure is one problem at "". */
static cJSON *parse_root(const char *text, size_t len, diag *d)
{
    char err[256];
    cJSON *root = json_parse_limited(text, len, EVH_MANIFEST_MAX_BYTES, EVH_JSON_MAX_DEPTH,
                                     err, sizeof err);
    if (!root)
        diag_add(d, "", "%s", err);
    return root;
}

static int parse_into(const char *text, size_t len, const char *path, manifest **out, diag *d)
{
    cJSON *root = parse_root(text, len, d);
    if (!root)
        return EVH_E_JSON;
    if (!cJSON_IsObject(root)) {
        diag_add(d, "", "document must be a JSON object, got %s", json_type_name(root));
        cJSON_Delete(root);
        return EVH_E_MANIFEST;
    }
    ctx c = {.d = d, .m = calloc(1, sizeof(manifest))};
    if (!c.m) {
        cJSON_Delete(root);
        diag_add(d, "", "out of memory");
        return EVH_E_NOMEM;
    }
    c.m->json = root;
    if (path)
        c.m->path = copy(&c, path);
    size_t before = problems(d);
    check_document(&c, root);
    if (c.oom) {
        diag_add(d, "", "out of memory");
        manifest_free(c.m);
        return EVH_E_NOMEM;
    }
    if (problems(d) != before) {
        manifest_free(c.m);
        return EVH_E_MANIFEST;
    }
    *out = c.m;
    return EVH_OK;
}

int manifest_parse(const char *text, size_t len, const char *path, manifest **out, diag *d)
{
    if (!out)
        return EVH_E_INVALID;
    *out = NULL;
    if (d)
        return parse_into(text, len, path, out, d);
    diag local; /* callers that only want the verdict */
    diag_init(&local, NULL);
    int rc = parse_into(text, len, path, out, &local);
    diag_free(&local);
    return rc;
}

/* Refuse an oversized file before reading it, as a manifest problem (the
 * read itself is capped too, should the file grow meanwhile). */
static int too_large(const char *path, diag *d)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= EVH_MANIFEST_MAX_BYTES)
        return 0;
    diag_add(d, "", "file is larger than %d bytes", EVH_MANIFEST_MAX_BYTES);
    return 1;
}

int manifest_load(const char *path, manifest **out, diag *d)
{
    if (!out)
        return EVH_E_INVALID;
    *out = NULL;
    diag local; /* where problems go when the caller wants none */
    diag_init(&local, NULL);
    diag *use = d ? d : &local;
    int rc = EVH_E_INVALID;
    if (!path) {
        diag_add(use, "", "no plugin.json path given");
    } else if (too_large(path, use)) {
        rc = EVH_E_MANIFEST;
    } else {
        char err[256];
        size_t len = 0;
        char *text = file_read_all(path, EVH_MANIFEST_MAX_BYTES, &len, err, sizeof err);
        if (text) {
            rc = manifest_parse(text, len, path, out, use);
            free(text);
        } else {
            diag_add(use, "", "%s", err);
            rc = EVH_E_IO;
        }
    }
    diag_free(&local);
    return rc;
}

void manifest_free(manifest *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_event_types; i++) {
        free(m->event_types[i].type);
        free(m->event_types[i].label);
        free(m->event_types[i].description);
        schema_free(m->event_types[i].schema);
    }
    free(m->event_types);
    schema_free(m->config_schema);
    free(m->path);
    free(m->id);
    free(m->name);
    free(m->description);
    free(m->version);
    free(m->library);
    free(m->webhook_endpoint);
    cJSON_Delete(m->json); /* the *_json members point into it */
    free(m);
}

/* The next non-empty segment of *p ("/a//b/" -> "a", "b"); its length, 0 at
 * the end. */
static size_t next_segment(const char **p, const char **seg)
{
    while (**p == '/')
        (*p)++;
    *seg = *p;
    while (**p && **p != '/')
        (*p)++;
    return (size_t)(*p - *seg);
}

int manifest_endpoint_is_prefix(const char *endpoint)
{
    size_t n = endpoint ? strlen(endpoint) : 0;
    if (n < 2 || endpoint[n - 1] != '/')
        return 0;
    const char *p = endpoint, *seg;
    return next_segment(&p, &seg) > 0; /* "/" and "//" are not prefixes */
}

int manifest_endpoint_matches(const char *endpoint, const char *path)
{
    if (!endpoint || !path)
        return 0;
    int prefix = manifest_endpoint_is_prefix(endpoint);
    for (;;) {
        const char *a, *b;
        size_t na = next_segment(&endpoint, &a);
        if (na == 0 && prefix)
            return 1; /* the endpoint's segments are done: path is at or below it */
        size_t nb = next_segment(&path, &b);
        if (na != nb || memcmp(a, b, na) != 0)
            return 0;
        if (na == 0)
            return 1;
    }
}

unsigned manifest_endpoint_rank(const char *endpoint)
{
    if (!endpoint)
        return 0;
    unsigned segments = 0;
    const char *p = endpoint, *seg;
    while (next_segment(&p, &seg) > 0)
        segments++;
    return 2 * segments + (manifest_endpoint_is_prefix(endpoint) ? 1 : 2);
}

int manifest_endpoint_same(const char *a, const char *b)
{
    if (!a || !b)
        return 0;
    for (;;) {
        const char *sa, *sb;
        size_t na = next_segment(&a, &sa), nb = next_segment(&b, &sb);
        if (na != nb || memcmp(sa, sb, na) != 0)
            return 0;
        if (na == 0)
            return 1;
    }
}

const manifest_event_type *manifest_find_type(const manifest *m, const char *type)
{
    if (!m || !type)
        return NULL;
    for (size_t i = 0; i < m->n_event_types; i++)
        if (m->event_types[i].type && strcmp(m->event_types[i].type, type) == 0)
            return &m->event_types[i];
    return NULL;
}
