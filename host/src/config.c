/*
 * config.c - host.yaml -> evh_config (see config.h).
 *
 * The settings are described once, in the field tables below (name, kind,
 * where it goes, allowed range); one walker applies a YAML mapping to the
 * struct through them.  It runs twice: over the built-in default document,
 * then over the user's file, so a file only overrides what it names.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <evhost/evhost.h>

#include "evh_limits.h"
#include "jsonutil.h"
#include "spell.h"
#include "subscription.h"
#include "yamldoc.h"

#define DEFAULTS_NAME "(built-in defaults)"

/* API key names appear in logs and audit records; keep them short and tame. */
#define API_KEY_NAME_MAX 64

static const char default_yaml[] =
    "# evhost host.yaml: every setting, with its default.  All are optional.\n"
    "# ${NAME} in a value is replaced by the environment variable NAME ($${ is a\n"
    "# literal ${); relative paths are relative to the daemon's current directory.\n"
    "server:\n"
    "  listen: \"127.0.0.1:8000\"      # host:port (IPv6: \"[::1]:8000\"; port 0 = any free)\n"
    "  api_keys: []                   # list of {name: ci, key: \"${EVH_API_KEY}\"}; the\n"
    "                                 # env EVH_API_KEYS=\"name:key,name2:key2\" adds more.\n"
    "                                 # No keys: the API needs no authentication, so\n"
    "                                 # the daemon refuses to listen beyond loopback\n"
    "  allow_unauthenticated: false   # ... unless this is true (a proxy in front\n"
    "                                 # authenticates, or the port is not published)\n"
    "  max_body_bytes: 1048576        # largest accepted request body (1024 .. 1073741824)\n"
    "  max_connections: 256           # 1 .. 65536\n"
    "  connection_timeout_s: 30       # idle timeout, and the time a request's headers may\n"
    "                                 # take (slow clients), 1 .. 3600\n"
    "  max_streams: 16                # live streams (GET /api/events/stream) at once,\n"
    "                                 # 1 .. 1024; more get 503 with Retry-After\n"
    "  stream_keepalive_s: 15         # a comment on a quiet stream this often, 1 .. 3600\n"
    "  stream_buffer_events: 10000    # lifecycle events kept for Last-Event-ID resumption\n"
    "                                 # (16 .. 1000000), and at most this many bytes of\n"
    "  stream_buffer_bytes: 33554432  # them (65536 .. 17179869184; docs/events.md)\n"
    "plugins:\n"
    "  dirs: []                       # extra directories, each holding plugin folders\n"
    "  builtin: true                  # also load the built-in plugins\n"
    "  watch: true                    # load, replace and remove plugins as their folders\n"
    "                                 # change (inotify); SIGHUP or POST /api/plugins/reload\n"
    "                                 # rescan on demand either way\n"
    "  reload_debounce_ms: 500        # quiet time after the last change before a rescan\n"
    "  init_timeout_ms: 10000         # a plugin's init (or a step's validate) past this is abandoned\n"
    "  stop_timeout_ms: 5000          # a source not stopped after this is abandoned\n"
    "  isolation: {}                  # per plugin, overriding plugin.json \"isolation\":\n"
    "                                 # {my-plugin: process} runs it in a child process\n"
    "  crash_limit: 3                 # crashes within crash_window_s that quarantine a\n"
    "  crash_window_s: 300            # plugin, 1 .. 1000; window 1 .. 86400\n"
    "  config:                        # per-plugin config objects, by plugin id; a file's\n"
    "    timer: {interval_ms: 5000}   # plugins.config replaces this one as a whole\n"
    "storage:\n"
    "  path: \"./evhost-data/evhost.db\"   # the webhook outbox goes beside it:\n"
    "                                 # evhost-outbox.db (x.db -> x-outbox.db)\n"
    "  synchronous: normal            # normal | full (full: fsync every commit)\n"
    "  retention: {max_age_days: 30, max_executions: 100000}  # 0 = no limit\n"
    "pipeline:\n"
    "  workers: 0                     # 0 = number of cores; at most 1024\n"
    "  queue_size: 65536              # events held in memory, 16 .. 16777216\n"
    "  emit_wait_ms: 100              # wait of emit on a full queue, 0 .. 60000\n"
    "  max_chain_depth: 8             # events caused by events, 1 .. 64\n"
    "workflows:\n"
    "  dirs: []                       # directories of workflow YAML files; empty = built-in "
    "examples\n"
    "triggers:\n"
    "  files: []                      # trigger YAML files; empty = built-in examples\n"
    "log:\n"
    "  level: info                    # error | warn | info | debug\n"
    "data_dir: \"./evhost-data\"\n"
    "shutdown_timeout_s: 10           # 1 .. 3600\n"
    "notifications:                   # lifecycle events as webhooks (docs/integrations.md)\n"
    "  concurrency: 16                # deliveries on the wire at once, 1 .. 1024\n"
    "  timeout_ms: 10000              # per attempt, unless a subscription sets its own\n"
    "  max_attempts: 8                # then the delivery is a dead letter, 1 .. 100\n"
    "  backoff_base_ms: 1000          # retry n waits random(0, min(cap, base * 2^(n-1)))\n"
    "  backoff_cap_ms: 3600000        # (or the receiver's Retry-After)\n"
    "  queue_size: 65536              # events waiting to be stored, 16 .. 16777216\n"
    "  subscriptions: []              # list of {id, url, events: all | [jobStart, ...],\n"
    "                                 # token, secret, timeout_ms, max_attempts,\n"
    "                                 # backoff_base_ms, backoff_cap_ms, headers, enabled}\n";

const char *config_default_yaml(void)
{
    return default_yaml;
}

/* ---- the settings, as data ------------------------------------------------ */

typedef enum kind {
    K_SECTION,       /* a mapping of more fields */
    K_STRING,        /* non-empty string -> char * */
    K_INT,           /* integer in [min, max] -> int, size_t or long long */
    K_BOOL,          /* -> int 0/1 */
    K_CHOICE,        /* one of choices -> char * */
    K_LEVEL,         /* one of choices -> int index */
    K_PATHS,         /* list of non-empty strings -> char **, size_t */
    K_LISTEN,        /* "host:port" */
    K_API_KEYS,      /* list of {name, key} */
    K_PLUGIN_CONFIG, /* mapping of plugin id -> mapping */
    K_SUBSCRIPTIONS, /* list of webhook subscriptions (subscription.h) */
    K_ISOLATION,     /* mapping of plugin id -> "process" | "in-process" */
} kind;

/* The tables read best one setting per line, as written. */
/* clang-format off */

/* K_INT targets come in three C types. */
typedef enum int_type { T_INT, T_SIZE, T_LLONG } int_type;

typedef struct field {
    const char *name;
    kind kind;
    size_t offset;              /* of the target in evh_config */
    int_type type;              /* K_INT */
    size_t count_offset;        /* K_PATHS: the size_t count */
    long long min, max;         /* K_INT */
    const char *const *choices; /* K_CHOICE, K_LEVEL: NULL-terminated */
    const struct field *fields; /* K_SECTION */
} field;

#define AT(member) offsetof(evh_config, member)
#define INT_TYPE(member) \
    _Generic(((evh_config *)0)->member, int: T_INT, size_t: T_SIZE, long long: T_LLONG)
#define INT_FIELD(n, member, lo, hi) \
    {.name = n, .kind = K_INT, .offset = AT(member), .type = INT_TYPE(member), \
     .min = lo, .max = hi}
#define PATHS_FIELD(n, member, count) \
    {.name = n, .kind = K_PATHS, .offset = AT(member), .count_offset = AT(count)}

static const char *const sync_choices[] = {"normal", "full", NULL};
/* indexes are the EVH_LOG_* levels */
static const char *const level_choices[] = {"error", "warn", "info", "debug", NULL};

static const field server_fields[] = {
    {.name = "listen", .kind = K_LISTEN},
    {.name = "api_keys", .kind = K_API_KEYS},
    {.name = "allow_unauthenticated", .kind = K_BOOL, .offset = AT(allow_unauthenticated)},
    INT_FIELD("max_body_bytes", max_body_bytes, 1024, 1073741824),
    INT_FIELD("max_connections", max_connections, 1, 65536),
    INT_FIELD("connection_timeout_s", connection_timeout_s, 1, 3600),
    INT_FIELD("max_streams", max_streams, 1, 1024),
    INT_FIELD("stream_keepalive_s", stream_keepalive_s, 1, 3600),
    INT_FIELD("stream_buffer_events", stream_buffer_events, 16, 1000000),
    INT_FIELD("stream_buffer_bytes", stream_buffer_bytes, 65536, 17179869184LL),
    {0}};

static const field plugins_fields[] = {
    PATHS_FIELD("dirs", plugin_dirs, n_plugin_dirs),
    {.name = "builtin", .kind = K_BOOL, .offset = AT(plugins_builtin)},
    {.name = "watch", .kind = K_BOOL, .offset = AT(plugins_watch)},
    INT_FIELD("reload_debounce_ms", plugins_reload_debounce_ms, 10, 60000),
    INT_FIELD("init_timeout_ms", plugins_init_timeout_ms, 1, 3600000),
    INT_FIELD("stop_timeout_ms", plugins_stop_timeout_ms, 1, 3600000),
    {.name = "isolation", .kind = K_ISOLATION},
    INT_FIELD("crash_limit", plugins_crash_limit, 1, 1000),
    INT_FIELD("crash_window_s", plugins_crash_window_s, 1, 86400),
    {.name = "config", .kind = K_PLUGIN_CONFIG},
    {0}};

static const field retention_fields[] = {
    INT_FIELD("max_age_days", retention_max_age_days, 0, 36500),
    INT_FIELD("max_executions", retention_max_executions, 0, 1000000000),
    {0}};

static const field storage_fields[] = {
    {.name = "path", .kind = K_STRING, .offset = AT(storage_path)},
    {.name = "synchronous", .kind = K_CHOICE, .offset = AT(storage_synchronous),
     .choices = sync_choices},
    {.name = "retention", .kind = K_SECTION, .fields = retention_fields},
    {0}};

static const field pipeline_fields[] = {
    INT_FIELD("workers", workers, 0, 1024),
    INT_FIELD("queue_size", queue_size, 16, 16777216),
    INT_FIELD("emit_wait_ms", emit_wait_ms, 0, 60000),
    INT_FIELD("max_chain_depth", max_chain_depth, 1, 64),
    {0}};

static const field workflows_fields[] = {
    PATHS_FIELD("dirs", workflow_dirs, n_workflow_dirs),
    {0}};

static const field triggers_fields[] = {
    PATHS_FIELD("files", trigger_files, n_trigger_files),
    {0}};

static const field log_fields[] = {
    {.name = "level", .kind = K_LEVEL, .offset = AT(log_level), .choices = level_choices},
    {0}};

static const field notifications_fields[] = {
    INT_FIELD("concurrency", notify_concurrency, 1, 1024),
    INT_FIELD("timeout_ms", notify_timeout_ms, 1, 300000),
    INT_FIELD("max_attempts", notify_max_attempts, 1, 100),
    INT_FIELD("backoff_base_ms", notify_backoff_base_ms, 1, 604800000),
    INT_FIELD("backoff_cap_ms", notify_backoff_cap_ms, 1, 604800000),
    INT_FIELD("queue_size", notify_queue_size, 16, 16777216),
    {.name = "subscriptions", .kind = K_SUBSCRIPTIONS},
    {0}};

static const field top_fields[] = {
    {.name = "server", .kind = K_SECTION, .fields = server_fields},
    {.name = "plugins", .kind = K_SECTION, .fields = plugins_fields},
    {.name = "storage", .kind = K_SECTION, .fields = storage_fields},
    {.name = "pipeline", .kind = K_SECTION, .fields = pipeline_fields},
    {.name = "workflows", .kind = K_SECTION, .fields = workflows_fields},
    {.name = "triggers", .kind = K_SECTION, .fields = triggers_fields},
    {.name = "log", .kind = K_SECTION, .fields = log_fields},
    {.name = "data_dir", .kind = K_STRING, .offset = AT(data_dir)},
    INT_FIELD("shutdown_timeout_s", shutdown_timeout_s, 1, 3600),
    {.name = "notifications", .kind = K_SECTION, .fields = notifications_fields},
    {0}};

static const field api_key_fields[] = {
    {.name = "name", .kind = K_STRING},
    {.name = "key", .kind = K_STRING},
    {0}};

/* clang-format on */

/* ---- reporting ------------------------------------------------------------ */

typedef struct ctx {
    evh_config *c;
    const yamldoc *y;
    diag *d;
} ctx;

static void problem_at(ctx *x, const cJSON *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A problem at node's position (1:1 when unknown). */
static void problem_at(ctx *x, const cJSON *node, const char *fmt, ...)
{
    int line = 1, column = 1;
    char *msg = NULL;
    va_list ap;
    yamldoc_pos(x->y, node, &line, &column);
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    diag_add_at(x->d, line, column, "%s", msg ? msg : "out of memory");
    free(msg);
}

static void no_memory(ctx *x)
{
    diag_add(x->d, "", "out of memory while reading the settings");
}

/* What a wrong value was, for "got ..." (malloc).  Values from ${...} are
 * never shown: they may be secrets. */
static char *describe(ctx *x, const cJSON *v)
{
    char *out = NULL;
    int n = -1;
    if (yamldoc_substituted(x->y, v))
        n = asprintf(&out, "a value from the environment");
    else if (cJSON_IsString(v)) {
        char shown[48];
        size_t len = strlen(v->valuestring), cut = len > 40 ? 40 : len;
        while (cut < len && cut > 0 && ((unsigned char)v->valuestring[cut] & 0xC0) == 0x80)
            cut--; /* do not split a UTF-8 character */
        /* one message, one line: control characters become '?' */
        for (size_t i = 0; i < cut; i++)
            shown[i] = (unsigned char)v->valuestring[i] < 0x20 ? '?' : v->valuestring[i];
        shown[cut] = '\0';
        n = asprintf(&out, "\"%s%s\"", shown, cut < len ? "..." : "");
    } else if (cJSON_IsNumber(v))
        n = asprintf(&out, "%.15g", v->valuedouble);
    else if (cJSON_IsBool(v))
        n = asprintf(&out, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNull(v))
        n = asprintf(&out, "nothing (null)");
    else
        n = asprintf(&out, "%s", cJSON_IsObject(v) ? "a mapping" : "a list");
    return n < 0 ? NULL : out;
}

static void wrong_value(ctx *x, const cJSON *v, const char *path, const char *want, ...)
    __attribute__((format(printf, 4, 5)));

/* "<path>: must be <want>, got <what v is>" at v. */
static void wrong_value(ctx *x, const cJSON *v, const char *path, const char *want, ...)
{
    char *expect = NULL, *got = describe(x, v);
    va_list ap;
    va_start(ap, want);
    if (vasprintf(&expect, want, ap) < 0)
        expect = NULL;
    va_end(ap);
    problem_at(x, v, "%s: must be %s, got %s", path, expect ? expect : "?", got ? got : "?");
    free(expect);
    free(got);
}

/* The known name closest to key, when it is close enough to be a typo. */
static const char *suggest(const char *key, const field *fields)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (const field *f = fields; f->name; f++) {
        size_t d = spell_distance(key, f->name);
        size_t limit = strlen(f->name) <= 4 ? 1 : 2;
        if (d <= limit && d < best_d) {
            best = f->name;
            best_d = d;
        }
    }
    return best;
}

static void unknown_key(ctx *x, const cJSON *obj, const char *key, const field *fields,
                        const char *path)
{
    int line = 1, column = 1;
    char known[512] = "";
    const char *near = suggest(key, fields);
    yamldoc_key_pos(x->y, obj, key, &line, &column);
    for (const field *f = fields; f->name; f++) {
        size_t used = strlen(known);
        snprintf(known + used, sizeof known - used, "%s%s", used ? ", " : "", f->name);
    }
    const char *where = *path ? path : "";
    const char *sep = *path ? ": " : "";
    if (near)
        diag_add_at(x->d, line, column, "%s%sunknown key '%s'; did you mean '%s'?", where, sep, key,
                    near);
    else
        diag_add_at(x->d, line, column, "%s%sunknown key '%s' (known keys: %s)", where, sep, key,
                    known);
}

/* ---- storing values ------------------------------------------------------- */

static void *slot(ctx *x, const field *f)
{
    return (char *)x->c + f->offset;
}

static int replace_string(ctx *x, char **dst, const char *value)
{
    char *copy = strdup(value);
    if (!copy) {
        no_memory(x);
        return -1;
    }
    free(*dst);
    *dst = copy;
    return 0;
}

static int is_nonempty_string(const cJSON *v)
{
    return cJSON_IsString(v) && v->valuestring[0] != '\0';
}

static void apply_string(ctx *x, const field *f, const cJSON *v, const char *path)
{
    if (!is_nonempty_string(v))
        wrong_value(x, v, path, "a non-empty string");
    else
        replace_string(x, slot(x, f), v->valuestring);
}

static void apply_int(ctx *x, const field *f, const cJSON *v, const char *path)
{
    double n = cJSON_IsNumber(v) ? v->valuedouble : -1e300;
    /* the range check comes first so the cast below is defined */
    if (!(n >= (double)f->min && n <= (double)f->max && n == (double)(long long)n)) {
        wrong_value(x, v, path, "an integer from %lld to %lld", f->min, f->max);
        return;
    }
    if (f->type == T_INT)
        *(int *)slot(x, f) = (int)n;
    else if (f->type == T_SIZE)
        *(size_t *)slot(x, f) = (size_t)n;
    else
        *(long long *)slot(x, f) = (long long)n;
}

static void apply_bool(ctx *x, const field *f, const cJSON *v, const char *path)
{
    if (!cJSON_IsBool(v))
        wrong_value(x, v, path, "true or false");
    else
        *(int *)slot(x, f) = cJSON_IsTrue(v);
}

/* "\"a\" or \"b\"", or "one of \"a\", \"b\" or \"c\"". */
static void choice_text(const char *const *choices, char *buf, size_t size)
{
    size_t n = 0, used = 0;
    while (choices[n])
        n++;
    if (n > 2)
        used += (size_t)snprintf(buf, size, "one of ");
    for (size_t i = 0; i < n && used < size; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        used += (size_t)snprintf(buf + used, size - used, "%s\"%s\"", sep, choices[i]);
    }
}

static int choice_index(const field *f, const cJSON *v)
{
    for (int i = 0; cJSON_IsString(v) && f->choices[i]; i++)
        if (strcmp(v->valuestring, f->choices[i]) == 0)
            return i;
    return -1;
}

static void apply_choice(ctx *x, const field *f, const cJSON *v, const char *path)
{
    int i = choice_index(f, v);
    if (i < 0) {
        char text[160];
        choice_text(f->choices, text, sizeof text);
        wrong_value(x, v, path, "%s", text);
    } else if (f->kind == K_LEVEL) {
        *(int *)slot(x, f) = i;
    } else {
        replace_string(x, slot(x, f), f->choices[i]);
    }
}

static void free_strings(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static void apply_paths(ctx *x, const field *f, const cJSON *v, const char *path)
{
    if (!cJSON_IsNull(v) && !cJSON_IsArray(v)) {
        wrong_value(x, v, path, "a list of paths");
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(v), i = 0, bad = 0;
    char **list = calloc(n ? n : 1, sizeof *list);
    if (!list) {
        no_memory(x);
        return;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, v)
    {
        char *item_path = path_index(path, i);
        if (!is_nonempty_string(item)) {
            wrong_value(x, item, item_path ? item_path : path, "a non-empty path");
            bad++;
        } else if (!(list[i] = strdup(item->valuestring))) {
            no_memory(x);
            bad++;
        }
        free(item_path);
        i++;
    }
    char ***dst = slot(x, f);
    size_t *count = (size_t *)((char *)x->c + f->count_offset);
    if (bad) {
        free_strings(list, n);
        return;
    }
    free_strings(*dst, *count);
    *dst = list;
    *count = n;
}

int config_split_listen(const char *s, char **host, int *port)
{
    const char *colon;
    size_t host_len;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || close == s + 1)
            return -1;
        colon = close + 1;
        s++;
        host_len = (size_t)(close - s);
    } else {
        colon = strrchr(s, ':');
        if (!colon || colon == s || memchr(s, ':', (size_t)(colon - s)))
            return -1; /* a bare IPv6 address needs brackets */
        host_len = (size_t)(colon - s);
    }
    const char *p = colon + 1;
    long value = 0;
    if (!*p || strlen(p) > 5)
        return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        value = value * 10 + (*p - '0');
    }
    if (value > 65535)
        return -1;
    *host = strndup(s, host_len);
    *port = (int)value;
    return *host ? 0 : -1;
}

static void apply_listen(ctx *x, const field *f, const cJSON *v, const char *path)
{
    (void)f;
    char *host = NULL;
    int port = 0;
    if (!cJSON_IsString(v) || config_split_listen(v->valuestring, &host, &port) != 0) {
        wrong_value(x, v, path, "\"host:port\" with a port from 0 to 65535 (IPv6: \"[::1]:8000\")");
        return;
    }
    if (replace_string(x, &x->c->listen, v->valuestring) == 0) {
        free(x->c->listen_host);
        x->c->listen_host = host;
        x->c->listen_port = port;
    } else {
        free(host);
    }
}

/* ---- API keys ------------------------------------------------------------- */

static int is_key_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > API_KEY_NAME_MAX)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
            return 0;
    return 1;
}

static void free_api_keys(evh_api_key *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(keys[i].name);
        if (keys[i].key) /* wipe the secret before the memory is reused */
            memset(keys[i].key, 0, strlen(keys[i].key));
        free(keys[i].key);
    }
    free(keys);
}

/* Add (or replace by name) one key; both strings are copied. */
static int put_api_key(evh_config *c, const char *name, const char *key)
{
    char *n = strdup(name), *k = strdup(key);
    if (!n || !k) {
        free(n);
        free(k);
        return EVH_E_NOMEM;
    }
    for (size_t i = 0; i < c->n_api_keys; i++) {
        if (strcmp(c->api_keys[i].name, name) == 0) {
            free(n);
            memset(c->api_keys[i].key, 0, strlen(c->api_keys[i].key));
            free(c->api_keys[i].key);
            c->api_keys[i].key = k;
            return EVH_OK;
        }
    }
    evh_api_key *grown = realloc(c->api_keys, (c->n_api_keys + 1) * sizeof *grown);
    if (!grown) {
        free(n);
        free(k);
        return EVH_E_NOMEM;
    }
    c->api_keys = grown;
    c->api_keys[c->n_api_keys].name = n;
    c->api_keys[c->n_api_keys].key = k;
    c->n_api_keys++;
    return EVH_OK;
}

static void check_keys(ctx *x, const cJSON *obj, const field *fields, const char *path);

/* One {name, key} entry; 0 when it is valid. */
static int check_api_key(ctx *x, const cJSON *item, const char *path)
{
    if (!cJSON_IsObject(item)) {
        wrong_value(x, item, path, "a mapping with name and key");
        return -1;
    }
    size_t before = x->d->count;
    check_keys(x, item, api_key_fields, path);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(item, "key");
    if (!name || !key)
        problem_at(x, item, "%s: needs both name and key", path);
    if (name && !(cJSON_IsString(name) && is_key_name(name->valuestring))) {
        char *name_path = path_key(path, "name");
        wrong_value(x, name, name_path ? name_path : path,
                    "1 to %d letters, digits, '-', '_' or '.'", API_KEY_NAME_MAX);
        free(name_path);
    }
    /* the key is a secret: say what is wrong without showing it */
    if (key && !is_nonempty_string(key))
        problem_at(x, key, "%s.key: must be a non-empty string", path);
    return x->d->count == before ? 0 : -1;
}

static void apply_api_keys(ctx *x, const field *f, const cJSON *v, const char *path)
{
    (void)f;
    if (!cJSON_IsNull(v) && !cJSON_IsArray(v)) {
        wrong_value(x, v, path, "a list of {name, key} mappings");
        return;
    }
    free_api_keys(x->c->api_keys, x->c->n_api_keys);
    x->c->api_keys = NULL;
    x->c->n_api_keys = 0;
    size_t i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, v)
    {
        char *item_path = path_index(path, i++);
        const char *p = item_path ? item_path : path;
        if (check_api_key(x, item, p) == 0) {
            const char *name = cJSON_GetObjectItemCaseSensitive(item, "name")->valuestring;
            const char *key = cJSON_GetObjectItemCaseSensitive(item, "key")->valuestring;
            size_t before = x->c->n_api_keys;
            if (put_api_key(x->c, name, key) != EVH_OK)
                no_memory(x);
            else if (x->c->n_api_keys == before)
                problem_at(x, cJSON_GetObjectItemCaseSensitive(item, "name"),
                           "%s.name: duplicate API key name '%s'", p, name);
        }
        free(item_path);
    }
}

/* EVH_API_KEYS="name:key,name2:key2" adds keys after the file (replacing
 * same-named ones), so a secret need not be written into host.yaml.  An
 * entry is never echoed: a missing ':' would put the key itself in the log. */
static void merge_env_api_keys(evh_config *c, diag *d)
{
    const char *env = getenv("EVH_API_KEYS");
    char *copy = env ? strdup(env) : NULL, *save = NULL;
    if (env && !copy) {
        diag_add(d, "EVH_API_KEYS", "out of memory");
        return;
    }
    size_t index = 0;
    for (char *entry = copy ? strtok_r(copy, ",", &save) : NULL; entry;
         entry = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*entry))
            entry++;
        char *end = entry + strlen(entry);
        while (end > entry && isspace((unsigned char)end[-1]))
            *--end = '\0';
        if (!*entry)
            continue; /* tolerate "a:b," and spaces */
        index++;
        char *colon = strchr(entry, ':');
        if (colon)
            *colon = '\0';
        if (!colon || !is_key_name(entry) || !colon[1])
            diag_add(d, "EVH_API_KEYS",
                     "entry %zu must be name:key (a name of letters, digits, '-', '_' or '.', "
                     "and a non-empty key)",
                     index);
        else if (put_api_key(c, entry, colon + 1) != EVH_OK)
            diag_add(d, "EVH_API_KEYS", "out of memory");
    }
    if (copy)
        memset(copy, 0, strlen(env));
    free(copy);
}

/* ---- plugin config -------------------------------------------------------- */

/* s with every "${" written "$${" (malloc), so that printed settings read
 * back as the same value rather than as a reference. */
static char *escape_refs(const char *s)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, "${")); p += 2)
        n++;
    char *out = malloc(strlen(s) + n + 1), *o = out;
    for (const char *p = s; out && *p; p++) {
        if (p[0] == '$' && p[1] == '{')
            *o++ = '$';
        *o++ = *p;
    }
    if (out)
        *o = '\0';
    return out;
}

/* In the copy made for printing, replace every string that came from the
 * environment with "***" and escape the others' "${" (orig and shown have
 * the same shape). */
static int redact(ctx *x, const cJSON *orig, cJSON *shown)
{
    const cJSON *o = orig->child;
    cJSON *s = shown->child;
    for (; o && s; o = o->next, s = s->next) {
        char *escaped = NULL;
        int ok = 1;
        if (yamldoc_substituted(x->y, o))
            ok = cJSON_SetValuestring(s, "***") != NULL;
        else if (cJSON_IsString(s) && strstr(s->valuestring, "${"))
            ok = (escaped = escape_refs(s->valuestring)) && cJSON_SetValuestring(s, escaped);
        else
            ok = redact(x, o, s) == 0;
        free(escaped);
        if (!ok)
            return -1;
    }
    return 0;
}

static void apply_plugin_config(ctx *x, const field *f, const cJSON *v, const char *path)
{
    (void)f;
    if (!cJSON_IsNull(v) && !cJSON_IsObject(v)) {
        wrong_value(x, v, path, "a mapping of plugin id to its settings");
        return;
    }
    size_t before = x->d->count;
    const cJSON *item;
    cJSON_ArrayForEach(item, v)
    {
        if (strlen(item->string) == 0 || strlen(item->string) > EVH_ID_MAX_LEN) {
            int line = 1, column = 1;
            yamldoc_key_pos(x->y, v, item->string, &line, &column);
            diag_add_at(x->d, line, column, "%s: a plugin id must have 1 to %d characters", path,
                        EVH_ID_MAX_LEN);
        } else if (!cJSON_IsObject(item) && !cJSON_IsNull(item)) {
            char *item_path = path_key(path, item->string);
            wrong_value(x, item, item_path ? item_path : path, "a mapping (the plugin's config)");
            free(item_path);
        }
    }
    if (x->d->count != before)
        return;
    cJSON *config = cJSON_CreateObject(), *shown;
    cJSON_ArrayForEach(item, v)
    {
        /* "timer:" with nothing under it means "no settings": {} */
        cJSON *one = cJSON_IsNull(item) ? cJSON_CreateObject() : cJSON_Duplicate(item, 1);
        if (!one || !cJSON_AddItemToObject(config, item->string, one)) {
            cJSON_Delete(one);
            cJSON_Delete(config);
            config = NULL;
            break;
        }
    }
    shown = config ? cJSON_Duplicate(config, 1) : NULL;
    if (!shown || redact(x, v, shown) != 0) {
        cJSON_Delete(config);
        cJSON_Delete(shown);
        no_memory(x);
        return;
    }
    cJSON_Delete(x->c->plugin_config);
    cJSON_Delete(x->c->plugin_config_shown);
    x->c->plugin_config = config;
    x->c->plugin_config_shown = shown;
}

/* plugins.isolation: {<plugin id>: process | in-process}; replaces the
 * mapping as a whole, as plugins.config does. */
static void apply_isolation(ctx *x, const field *f, const cJSON *v, const char *path)
{
    (void)f;
    if (!cJSON_IsNull(v) && !cJSON_IsObject(v)) {
        wrong_value(x, v, path, "a mapping of plugin id to process or in-process");
        return;
    }
    size_t before = x->d->count;
    const cJSON *item;
    cJSON_ArrayForEach(item, v)
    {
        char *item_path = path_key(path, item->string);
        if (strlen(item->string) == 0 || strlen(item->string) > EVH_ID_MAX_LEN) {
            int line = 1, column = 1;
            yamldoc_key_pos(x->y, v, item->string, &line, &column);
            diag_add_at(x->d, line, column, "%s: a plugin id must have 1 to %d characters", path,
                        EVH_ID_MAX_LEN);
        } else if (!cJSON_IsString(item) || (strcmp(item->valuestring, "process") != 0 &&
                                             strcmp(item->valuestring, "in-process") != 0)) {
            wrong_value(x, item, item_path ? item_path : path, "\"process\" or \"in-process\"");
        }
        free(item_path);
    }
    if (x->d->count != before)
        return;
    cJSON *copy = cJSON_IsObject(v) ? cJSON_Duplicate(v, 1) : cJSON_CreateObject();
    if (!copy) {
        no_memory(x);
        return;
    }
    cJSON_Delete(x->c->plugin_isolation);
    x->c->plugin_isolation = copy;
}

/* ---- webhook subscriptions ------------------------------------------------ */

static void free_subscriptions(struct subscription **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        subscription_free(list[i]);
    free(list);
}

/* The node a problem path under item_path names (its first key), for the
 * position; the item itself when there is none. */
static const cJSON *problem_node(const cJSON *item, const char *item_path, const char *path)
{
    size_t n = strlen(item_path);
    if (!cJSON_IsObject(item) || strncmp(path, item_path, n) != 0 || path[n] != '.')
        return item;
    char key[128];
    size_t k = 0;
    for (const char *p = path + n + 1; *p && *p != '.' && *p != '[' && k + 1 < sizeof key; p++)
        key[k++] = *p;
    key[k] = '\0';
    const cJSON *node = cJSON_GetObjectItemCaseSensitive(item, key);
    return node ? node : item;
}

/* notifications.subscriptions: each checked as the API checks one (its
 * values are never echoed: tokens and secrets come from ${...}). */
static void apply_subscriptions(ctx *x, const field *f, const cJSON *v, const char *path)
{
    (void)f;
    if (!cJSON_IsNull(v) && !cJSON_IsArray(v)) {
        wrong_value(x, v, path, "a list of subscriptions ({id, url, events, ...})");
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(v), i = 0, bad = 0;
    struct subscription **list = calloc(n ? n : 1, sizeof *list);
    if (!list) {
        no_memory(x);
        return;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, v)
    {
        char *item_path = path_index(path, i);
        diag d;
        diag_init(&d, NULL);
        subscription *s = subscription_from_json(item, 1, 0, &d, item_path ? item_path : path);
        for (size_t k = 0; k < d.count; k++)
            problem_at(x, problem_node(item, item_path ? item_path : path, d.items[k].path),
                       "%s: %s", d.items[k].path, d.items[k].reason);
        diag_free(&d);
        for (size_t j = 0; s && j < i; j++) {
            if (list[j] && !strcmp(list[j]->id, s->id)) {
                problem_at(x, cJSON_GetObjectItemCaseSensitive(item, "id"),
                           "%s.id: duplicate subscription id '%s'",
                           item_path ? item_path : path, s->id);
                subscription_free(s);
                s = NULL;
            }
        }
        if (s && !(s->origin = strdup("host.yaml"))) {
            no_memory(x);
            subscription_free(s);
            s = NULL;
        }
        bad += s == NULL;
        list[i++] = s;
        free(item_path);
    }
    if (bad) {
        free_subscriptions(list, n);
        return;
    }
    free_subscriptions(x->c->subscriptions, x->c->n_subscriptions);
    x->c->subscriptions = list;
    x->c->n_subscriptions = n;
}

/* ---- the walker ----------------------------------------------------------- */

static const field *find_field(const field *fields, const char *name)
{
    for (const field *f = fields; f->name; f++)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static void check_keys(ctx *x, const cJSON *obj, const field *fields, const char *path)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, obj)
    {
        if (!find_field(fields, item->string))
            unknown_key(x, obj, item->string, fields, path);
    }
}

static void apply_section(ctx *x, const cJSON *obj, const field *fields, const char *path);

static void apply_field(ctx *x, const field *f, const cJSON *v, const char *path)
{
    switch (f->kind) {
    case K_SECTION:
        if (cJSON_IsObject(v))
            apply_section(x, v, f->fields, path);
        else if (!cJSON_IsNull(v)) /* "log:" with everything commented out */
            wrong_value(x, v, path, "a mapping");
        break;
    case K_STRING:
        apply_string(x, f, v, path);
        break;
    case K_INT:
        apply_int(x, f, v, path);
        break;
    case K_BOOL:
        apply_bool(x, f, v, path);
        break;
    case K_CHOICE:
    case K_LEVEL:
        apply_choice(x, f, v, path);
        break;
    case K_PATHS:
        apply_paths(x, f, v, path);
        break;
    case K_LISTEN:
        apply_listen(x, f, v, path);
        break;
    case K_API_KEYS:
        apply_api_keys(x, f, v, path);
        break;
    case K_PLUGIN_CONFIG:
        apply_plugin_config(x, f, v, path);
        break;
    case K_SUBSCRIPTIONS:
        apply_subscriptions(x, f, v, path);
        break;
    case K_ISOLATION:
        apply_isolation(x, f, v, path);
        break;
    }
}

/* Problems come out in file order: unknown keys are reported in the same
 * pass that applies the known ones. */
static void apply_section(ctx *x, const cJSON *obj, const field *fields, const char *path)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, obj)
    {
        const field *f = find_field(fields, item->string);
        if (!f) {
            unknown_key(x, obj, item->string, fields, path);
            continue;
        }
        char *item_path = path_key(path, f->name);
        if (!item_path) {
            no_memory(x);
            return;
        }
        apply_field(x, f, item, item_path);
        free(item_path);
    }
}

/* Parse one document and apply it over c. */
static void apply_text(evh_config *c, const char *text, size_t len, diag *d)
{
    yamldoc *y = yamldoc_parse(text, len, 1, d);
    if (!y)
        return;
    ctx x = {.c = c, .y = y, .d = d};
    const cJSON *root = yamldoc_root(y);
    if (root && !cJSON_IsObject(root)) {
        char *got = describe(&x, root);
        problem_at(&x, root, "the settings must be a mapping (server:, plugins:, ...), got %s",
                   got ? got : "?");
        free(got);
    } else if (root) {
        apply_section(&x, root, top_fields, "");
    }
    yamldoc_free(y);
}

/* ---- the public functions ------------------------------------------------- */

static size_t problems(const diag *d)
{
    return d->count + d->dropped;
}

static void name_diag(diag *d, const char *name)
{
    if (!d->file && name)
        d->file = strdup(name);
}

int config_parse_text(const char *text, size_t len, const char *name, evh_config **out, diag *d)
{
    *out = NULL;
    name_diag(d, name);
    size_t before = problems(d);
    evh_config *c = calloc(1, sizeof *c);
    if (!c || !(c->source = strdup(name ? name : "(text)")) ||
        !(c->plugin_config = cJSON_CreateObject()) ||
        !(c->plugin_config_shown = cJSON_CreateObject()) ||
        !(c->plugin_isolation = cJSON_CreateObject())) {
        config_free(c);
        diag_add(d, "", "out of memory while reading the settings");
        return EVH_E_NOMEM;
    }
    /* the defaults are a document too; a problem there is a bug in this file */
    diag defaults;
    diag_init(&defaults, DEFAULTS_NAME);
    apply_text(c, default_yaml, sizeof default_yaml - 1, &defaults);
    diag_merge(d, &defaults, NULL);
    diag_free(&defaults);
    apply_text(c, text, len, d);
    merge_env_api_keys(c, d);
    if (problems(d) != before) {
        config_free(c);
        return EVH_E_CONFIG;
    }
    *out = c;
    return EVH_OK;
}

int config_load(const char *path_or_null, evh_config **out, diag *d)
{
    *out = NULL;
    if (!path_or_null)
        return config_parse_text("", 0, DEFAULTS_NAME, out, d);
    name_diag(d, path_or_null);
    char err[256];
    size_t len = 0;
    char *text = file_read_all(path_or_null, YAMLDOC_MAX_BYTES, &len, err, sizeof err);
    if (!text) {
        diag_add(d, "", "%s", err);
        return EVH_E_IO;
    }
    int rc = config_parse_text(text, len, path_or_null, out, d);
    free(text);
    return rc;
}

void config_free(evh_config *c)
{
    if (!c)
        return;
    free(c->source);
    free(c->listen);
    free(c->listen_host);
    free_api_keys(c->api_keys, c->n_api_keys);
    free_strings(c->plugin_dirs, c->n_plugin_dirs);
    cJSON_Delete(c->plugin_config);
    cJSON_Delete(c->plugin_config_shown);
    cJSON_Delete(c->plugin_isolation);
    free(c->storage_path);
    free(c->storage_synchronous);
    free_strings(c->workflow_dirs, c->n_workflow_dirs);
    free_strings(c->trigger_files, c->n_trigger_files);
    free(c->data_dir);
    free_subscriptions(c->subscriptions, c->n_subscriptions);
    free(c);
}

const char *config_log_level_name(int level)
{
    return level >= EVH_LOG_ERROR && level <= EVH_LOG_DEBUG ? level_choices[level] : "info";
}

/* ---- printing ------------------------------------------------------------- */

/* s as a double-quoted YAML string (JSON escaping is valid YAML); values
 * get "${" escaped, keys are never substituted so they are printed as is. */
static void print_quoted(FILE *f, const char *s, int is_value)
{
    char *escaped = is_value ? escape_refs(s ? s : "") : NULL;
    cJSON *node = cJSON_CreateString(escaped ? escaped : s ? s : "");
    char *text = node ? cJSON_PrintUnformatted(node) : NULL;
    fputs(text ? text : "\"\"", f);
    free(text);
    cJSON_Delete(node);
    free(escaped);
}

static void print_list(FILE *f, const char *indent, const char *name, char *const *items, size_t n)
{
    fprintf(f, "%s%s: [", indent, name);
    for (size_t i = 0; i < n; i++) {
        fputs(i ? ", " : "", f);
        print_quoted(f, items[i], 1);
    }
    fputs("]\n", f);
}

static void print_server(const evh_config *c, FILE *f)
{
    fputs("server:\n  listen: ", f);
    print_quoted(f, c->listen, 1);
    fputs(c->n_api_keys ? "\n  api_keys:\n" : "\n  api_keys: []\n", f);
    for (size_t i = 0; i < c->n_api_keys; i++) {
        fputs("    - {name: ", f);
        print_quoted(f, c->api_keys[i].name, 1);
        fputs(", key: \"***\"}\n", f);
    }
    fprintf(f, "  allow_unauthenticated: %s\n", c->allow_unauthenticated ? "true" : "false");
    fprintf(f, "  max_body_bytes: %zu\n  max_connections: %d\n  connection_timeout_s: %d\n",
            c->max_body_bytes, c->max_connections, c->connection_timeout_s);
    fprintf(f, "  max_streams: %d\n  stream_keepalive_s: %d\n  stream_buffer_events: %zu\n"
               "  stream_buffer_bytes: %zu\n",
            c->max_streams, c->stream_keepalive_s, c->stream_buffer_events,
            c->stream_buffer_bytes);
}

static void print_plugins(const evh_config *c, FILE *f)
{
    fputs("plugins:\n", f);
    print_list(f, "  ", "dirs", c->plugin_dirs, c->n_plugin_dirs);
    fprintf(f, "  builtin: %s\n", c->plugins_builtin ? "true" : "false");
    fprintf(f, "  watch: %s\n  reload_debounce_ms: %d\n  init_timeout_ms: %d\n"
               "  stop_timeout_ms: %d\n", c->plugins_watch ? "true" : "false",
            c->plugins_reload_debounce_ms, c->plugins_init_timeout_ms, c->plugins_stop_timeout_ms);
    char *isolation = c->plugin_isolation ? cJSON_PrintUnformatted(c->plugin_isolation) : NULL;
    fprintf(f, "  isolation: %s\n  crash_limit: %d\n  crash_window_s: %d\n",
            isolation ? isolation : "{}", c->plugins_crash_limit, c->plugins_crash_window_s);
    free(isolation);
    fputs(cJSON_GetArraySize(c->plugin_config_shown) ? "  config:\n" : "  config: {}\n", f);
    const cJSON *item;
    cJSON_ArrayForEach(item, c->plugin_config_shown)
    {
        char *json = cJSON_PrintUnformatted(item);
        fputs("    ", f);
        print_quoted(f, item->string, 0);
        fprintf(f, ": %s\n", json ? json : "{}");
        free(json);
    }
}

/* Each subscription as a JSON flow mapping (valid YAML), secrets "***". */
static void print_notifications(const evh_config *c, FILE *f)
{
    fprintf(f,
            "notifications:\n  concurrency: %d\n  timeout_ms: %d\n  max_attempts: %d\n"
            "  backoff_base_ms: %lld\n  backoff_cap_ms: %lld\n  queue_size: %zu\n",
            c->notify_concurrency, c->notify_timeout_ms, c->notify_max_attempts,
            c->notify_backoff_base_ms, c->notify_backoff_cap_ms, c->notify_queue_size);
    fputs(c->n_subscriptions ? "  subscriptions:\n" : "  subscriptions: []\n", f);
    static const char *const drop[] = {"origin", "disabled_reason", "created_at", "updated_at"};
    for (size_t i = 0; i < c->n_subscriptions; i++) {
        cJSON *o = subscription_to_json(c->subscriptions[i], 1);
        for (size_t k = 0; o && k < sizeof drop / sizeof *drop; k++)
            cJSON_DeleteItemFromObjectCaseSensitive(o, drop[k]);
        for (cJSON *item = o ? o->child : NULL, *next; item; item = next) {
            next = item->next;
            if (cJSON_IsNull(item))
                cJSON_DeleteItemFromObjectCaseSensitive(o, item->string);
        }
        char *json = o ? cJSON_PrintUnformatted(o) : NULL;
        char *escaped = json ? escape_refs(json) : NULL;
        fprintf(f, "    - %s\n", escaped ? escaped : "{}");
        free(escaped);
        free(json);
        cJSON_Delete(o);
    }
}

void config_print_redacted(const evh_config *c, FILE *f)
{
    fputs("# effective evhost settings from ", f);
    fputs(c->source ? c->source : "?", f);
    fputs("; secrets are shown as \"***\"\n", f);
    print_server(c, f);
    print_plugins(c, f);
    fputs("storage:\n  path: ", f);
    print_quoted(f, c->storage_path, 1);
    fprintf(f, "\n  synchronous: %s\n", c->storage_synchronous);
    fprintf(f, "  retention: {max_age_days: %d, max_executions: %lld}\n", c->retention_max_age_days,
            c->retention_max_executions);
    fprintf(f,
            "pipeline:\n  workers: %d\n  queue_size: %zu\n  emit_wait_ms: %d\n"
            "  max_chain_depth: %d\n",
            c->workers, c->queue_size, c->emit_wait_ms, c->max_chain_depth);
    fputs("workflows:\n", f);
    print_list(f, "  ", "dirs", c->workflow_dirs, c->n_workflow_dirs);
    fputs("triggers:\n", f);
    print_list(f, "  ", "files", c->trigger_files, c->n_trigger_files);
    fprintf(f, "log:\n  level: %s\ndata_dir: ", config_log_level_name(c->log_level));
    print_quoted(f, c->data_dir, 1);
    fprintf(f, "\nshutdown_timeout_s: %d\n", c->shutdown_timeout_s);
    print_notifications(c, f);
}
