/*
 * system_events.c - the host's own events, emitted as the `system` source
 * (see system_events.h).
 */
#include "system_events.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <evhost/evhost.h>

#include "event.h"
#include "hostapi.h"
#include "log.h"

enum {
    SE_WORKFLOW_COMPLETED,
    SE_WORKFLOW_FAILED,
    SE_PLUGIN_FAILED,
    SE_HOST_STARTED,
    SE_USER_LOGIN,
    SE_COUNT_
};

static const char *const type_names[SE_COUNT_] = {
    "workflow_completed", "workflow_failed", "plugin_failed", "host_started", "user_login"};

#define ALL_TYPES ((1u << SE_COUNT_) - 1)
/* login_idle_s when the config does not say (the plugin.json default too) */
#define DEFAULT_LOGIN_IDLE_S 1800
/* user_login is emitted on an HTTP thread: wait this long at most for room
 * in a full queue (then the event is dropped, and counted as refused) */
#define LOGIN_EMIT_WAIT_MS 10
/* distinct API key names remembered for user_login (keys are configured,
 * so this is never reached in practice) */
#define LOGIN_KEYS_MAX 4096

/* What is attached: written under the write lock, read under the read lock
 * for the whole of an emit, so that detach waits for the emits in flight.
 * The system plugin itself is looked up (and referenced) for each emit: a
 * hot reload may replace it (new schemas, new config) or remove it. */
static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static runtime *cur_rt;
static const registry *cur_reg; /* NULL: not attached */

/* When each API key last authenticated. */
typedef struct login_seen {
    char *name;
    int64_t last_ns;
} login_seen;

static pthread_mutex_t login_lock = PTHREAD_MUTEX_INITIALIZER;
static login_seen *seen;
static size_t n_seen, cap_seen;

/* Refused emits are logged at most once a second. */
static atomic_llong last_warn_ns;

static void login_forget_all(void)
{
    pthread_mutex_lock(&login_lock);
    for (size_t i = 0; i < n_seen; i++)
        free(seen[i].name);
    free(seen);
    seen = NULL;
    n_seen = cap_seen = 0;
    pthread_mutex_unlock(&login_lock);
}

/* The plugin's config (validated against its configSchema, defaults
 * filled in): which events to emit, and login_idle_s. */
static void read_config(const char *text, unsigned *bits, int64_t *idle_ns)
{
    *bits = ALL_TYPES;
    *idle_ns = (int64_t)DEFAULT_LOGIN_IDLE_S * 1000000000;
    cJSON *c = text ? cJSON_Parse(text) : NULL;
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(c, "events");
    if (cJSON_IsArray(events)) {
        *bits = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, events)
        {
            for (int t = 0; t < SE_COUNT_; t++)
                if (cJSON_IsString(e) && !strcmp(e->valuestring, type_names[t]))
                    *bits |= 1u << t;
        }
    }
    const cJSON *idle = cJSON_GetObjectItemCaseSensitive(c, "login_idle_s");
    if (cJSON_IsNumber(idle) && idle->valuedouble >= 0 && idle->valuedouble <= 1e9)
        *idle_ns = (int64_t)idle->valuedouble * 1000000000;
    cJSON_Delete(c);
}

/* The system plugin in force, referenced, and its config; the caller holds
 * the read lock of `lock`. */
typedef struct sys_ref {
    plugin *p;        /* NULL: no usable system plugin */
    unsigned enabled; /* bit per SE_* */
    int64_t login_idle_ns;
} sys_ref;

static int sys_acquire(sys_ref *s)
{
    memset(s, 0, sizeof *s);
    plugin *p = cur_reg ? registry_acquire(cur_reg, SYSTEM_PLUGIN_ID) : NULL;
    plugin_state st = p ? p->state : PLUGIN_FAILED;
    if (!p || p->kind != EVH_KIND_SOURCE || !p->m ||
        (st != PLUGIN_READY && st != PLUGIN_RUNNING)) {
        plugin_release(p);
        return 0;
    }
    s->p = p;
    read_config(p->config_text, &s->enabled, &s->login_idle_ns);
    return 1;
}

static void sys_release(sys_ref *s)
{
    plugin_release(s->p);
    s->p = NULL;
}

/* A plugin that failed to load, copied out of the registry. */
typedef struct failed_plugin {
    char *id, *error;
    int kind;
    int32_t code;
} failed_plugin;

void system_events_attach(runtime *rt, const registry *reg)
{
    login_forget_all();
    pthread_rwlock_wrlock(&lock);
    cur_rt = rt;
    cur_reg = reg;
    sys_ref s;
    int on = sys_acquire(&s);
    sys_release(&s);
    pthread_rwlock_unlock(&lock);
    if (!on) {
        log_debug("system", "the system event source is not loaded: no host events");
        return;
    }
    /* The system plugin may have loaded after the ones that failed.  Copied
     * under the registry's lock, emitted after it. */
    failed_plugin *failed = NULL;
    size_t n = 0;
    registry_rdlock(reg);
    if (reg->count && (failed = calloc(reg->count, sizeof *failed)) != NULL) {
        for (size_t i = 0; i < reg->count; i++) {
            const plugin *q = reg->items[i];
            if (q->state != PLUGIN_FAILED)
                continue;
            failed[n] = (failed_plugin){.id = strdup(q->id ? q->id : "?"),
                                        .error = q->error ? strdup(q->error) : NULL,
                                        .kind = q->kind,
                                        .code = q->error_code};
            n++;
        }
    }
    registry_unlock(reg);
    for (size_t i = 0; i < n; i++) {
        system_events_plugin_failed(failed[i].id, failed[i].kind, "load",
                                    failed[i].error ? failed[i].error
                                                    : evh_status_message(failed[i].code),
                                    failed[i].code);
        free(failed[i].id);
        free(failed[i].error);
    }
    free(failed);
}

void system_events_detach(const runtime *rt)
{
    int cleared = 0;
    pthread_rwlock_wrlock(&lock);
    if (!rt || rt == cur_rt) {
        cur_rt = NULL;
        cur_reg = NULL;
        cleared = 1;
    }
    pthread_rwlock_unlock(&lock);
    if (cleared)
        login_forget_all();
}

/* 1 when the system plugin is in force and emits `type` (a cheap check
 * before building the event; emit checks again). */
static int wanted(int type, int64_t *login_idle_ns)
{
    pthread_rwlock_rdlock(&lock);
    sys_ref s;
    int on = sys_acquire(&s) && (s.enabled & (1u << type));
    if (login_idle_ns)
        *login_idle_ns = s.login_idle_ns;
    sys_release(&s);
    pthread_rwlock_unlock(&lock);
    return on;
}

static void warn_refused(const char *type, int rc, const diag *d)
{
    int64_t now = monotonic_ns();
    long long last = atomic_load(&last_warn_ns);
    if (last && now - last < 1000000000LL)
        return;
    if (!atomic_compare_exchange_strong(&last_warn_ns, &last, now))
        return;
    char *why = diag_join(d);
    log_warn("system", "host event '%s' not emitted: %s%s%s", type, evh_status_message(rc),
             why && *why ? ": " : "", why ? why : "");
    free(why);
}

/* Emit data (taken) as `type` with the given chain depth. */
static void emit(int type, cJSON *data, const char *user_id, uint32_t depth, uint32_t wait_ms)
{
    char *text = data ? cJSON_PrintUnformatted(data) : NULL;
    cJSON_Delete(data);
    if (!text) {
        log_error("system", "host event '%s' not emitted: out of memory", type_names[type]);
        return;
    }
    int rc = EVH_OK;
    diag d;
    diag_init(&d, NULL);
    pthread_rwlock_rdlock(&lock);
    sys_ref s;
    if (sys_acquire(&s) && (s.enabled & (1u << type))) {
        ingest_options o = {.wait_ms = wait_ms, .has_chain_depth = 1, .chain_depth = depth};
        rc = hostapi_ingest(cur_rt, s.p->m, type_names[type], text, strlen(text), user_id, NULL,
                            &o, &d, NULL);
    }
    sys_release(&s);
    pthread_rwlock_unlock(&lock);
    /* at shutdown the queue is closed: that is no news */
    if (rc != EVH_OK && rc != EVH_E_STOPPING)
        warn_refused(type_names[type], rc, &d);
    diag_free(&d);
    free(text);
}

static const char *kind_name(int kind)
{
    return kind == EVH_KIND_SOURCE ? "event-source" : kind == EVH_KIND_STEP ? "workflow-step"
                                                                            : "unknown";
}

void system_events_execution_finished(const sysev_execution *x)
{
    int type = x->succeeded ? SE_WORKFLOW_COMPLETED : SE_WORKFLOW_FAILED;
    if (!x->execution_id || !x->workflow_id || !wanted(type, NULL))
        return;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "execution_id", x->execution_id);
    cJSON_AddStringToObject(d, "workflow_id", x->workflow_id);
    cJSON_AddStringToObject(d, "trigger_id", x->trigger_id ? x->trigger_id : "");
    cJSON_AddStringToObject(d, "event_id", x->event_id ? x->event_id : "");
    cJSON_AddStringToObject(d, "status", x->succeeded ? "succeeded" : "failed");
    cJSON_AddNumberToObject(d, "duration_ms", x->duration_ms > 0 ? x->duration_ms : 0);
    if (!x->succeeded)
        cJSON_AddStringToObject(d, "error", x->error ? x->error : "unknown error");
    if (x->succeeded && x->stopped_by)
        cJSON_AddStringToObject(d, "stopped_by", x->stopped_by);
    if (x->replay_of)
        cJSON_AddStringToObject(d, "replay_of", x->replay_of);
    uint32_t depth = x->chain_depth == UINT32_MAX ? UINT32_MAX : x->chain_depth + 1;
    emit(type, d, x->user_id, depth, 0);
}

void system_events_plugin_failed(const char *plugin_id, int kind, const char *stage,
                                 const char *error, int32_t code)
{
    if (!plugin_id || !wanted(SE_PLUGIN_FAILED, NULL))
        return;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "plugin", plugin_id);
    cJSON_AddStringToObject(d, "kind", kind_name(kind));
    cJSON_AddStringToObject(d, "stage", stage ? stage : "load");
    cJSON_AddStringToObject(d, "error", error ? error : evh_status_message(code));
    cJSON_AddStringToObject(d, "code", evh_status_name(code));
    emit(SE_PLUGIN_FAILED, d, NULL, 0, 0);
}

void system_events_host_started(const registry *reg)
{
    if (!reg || !wanted(SE_HOST_STARTED, NULL))
        return;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "version", EVH_VERSION);
    cJSON_AddStringToObject(d, "abi", EVH_ABI_STRING);
    cJSON_AddNumberToObject(d, "plugins_ready",
                            (double)(registry_count(reg, 0, PLUGIN_READY) +
                                     registry_count(reg, 0, PLUGIN_RUNNING)));
    cJSON_AddNumberToObject(d, "plugins_failed", (double)registry_count(reg, 0, PLUGIN_FAILED));
    emit(SE_HOST_STARTED, d, NULL, 0, 0);
}

/* 1 when this authentication of key name is a login (see the header). */
static int login_due(const char *name, int64_t idle_ns)
{
    int64_t now = monotonic_ns();
    int due = 0;
    pthread_mutex_lock(&login_lock);
    size_t i = 0;
    while (i < n_seen && strcmp(seen[i].name, name))
        i++;
    if (i < n_seen) {
        due = idle_ns > 0 && now - seen[i].last_ns >= idle_ns;
        seen[i].last_ns = now;
    } else if (n_seen < LOGIN_KEYS_MAX) {
        if (n_seen == cap_seen) {
            size_t cap = cap_seen ? cap_seen * 2 : 8;
            login_seen *grown = realloc(seen, cap * sizeof *grown);
            if (grown) {
                seen = grown;
                cap_seen = cap;
            }
        }
        if (n_seen < cap_seen && (seen[n_seen].name = strdup(name)) != NULL) {
            seen[n_seen++].last_ns = now;
            due = 1;
        }
    }
    pthread_mutex_unlock(&login_lock);
    return due;
}

void system_events_user_login(const char *key_name)
{
    int64_t idle = 0;
    if (!key_name || !wanted(SE_USER_LOGIN, &idle))
        return;
    if (!login_due(key_name, idle))
        return;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "key_name", key_name);
    emit(SE_USER_LOGIN, d, key_name, 0, LOGIN_EMIT_WAIT_MS);
}
