/*
 * hostapi.c - the evh_host_api table and the instance handle behind it
 * (see hostapi.h and the SDK's evhost.h for the contract).
 *
 * Every function a plugin can reach tolerates NULL arguments (EVH_E_INVALID,
 * a fallback or NULL, never a crash): a plugin bug must not take the host
 * down through the API.
 */
#include "hostapi.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "event.h"
#include "jsonpath.h"
#include "jsonutil.h"
#include "log.h"
#include "metrics.h"
#include "triggers.h"

/* The executor's chain depth of the current thread (execute.c).  Weak, so
 * that whoever links the host without the executor (the HTTP ingest tests,
 * the loader tests) gets depth 0 instead of a link error. */
extern uint32_t exec_current_chain_depth(void) __attribute__((weak));

/* ---- every live instance, so runtime_stop can wake their wait() --------- */

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static evh_host **live;
static size_t n_live, cap_live;

static int live_add(evh_host *h)
{
    int rc = EVH_OK;
    pthread_mutex_lock(&live_lock);
    if (n_live == cap_live) {
        size_t cap = cap_live ? cap_live * 2 : 16;
        evh_host **grown = realloc(live, cap * sizeof *grown);
        if (grown) {
            live = grown;
            cap_live = cap;
        } else {
            rc = EVH_E_NOMEM;
        }
    }
    if (rc == EVH_OK)
        live[n_live++] = h;
    pthread_mutex_unlock(&live_lock);
    return rc;
}

static void live_remove(evh_host *h)
{
    pthread_mutex_lock(&live_lock);
    for (size_t i = 0; i < n_live; i++) {
        if (live[i] == h) {
            live[i] = live[--n_live];
            break;
        }
    }
    if (n_live == 0) { /* nothing left: give the memory back */
        free(live);
        live = NULL;
        cap_live = 0;
    }
    pthread_mutex_unlock(&live_lock);
}

void hostapi_runtime_stopping(runtime *rt)
{
    pthread_mutex_lock(&live_lock);
    for (size_t i = 0; i < n_live; i++) {
        if (live[i]->rt != rt)
            continue;
        /* Taking the lock orders this wake-up after a waiter's check of
         * the flag, so no waiter can miss it. */
        pthread_mutex_lock(&live[i]->lock);
        pthread_cond_broadcast(&live[i]->cond);
        pthread_mutex_unlock(&live[i]->lock);
    }
    pthread_mutex_unlock(&live_lock);
}

size_t hostapi_live_instances(const manifest *m)
{
    size_t n = 0;
    pthread_mutex_lock(&live_lock);
    for (size_t i = 0; i < n_live; i++)
        n += live[i]->manifest == m;
    pthread_mutex_unlock(&live_lock);
    return n;
}

/* ---- instances ---------------------------------------------------------- */

static int cond_init_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return -1;
    int rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
    return rc == 0 ? 0 : -1;
}

static int set_config(evh_host *h, const char *config_text)
{
    h->config_text = strdup(config_text ? config_text : "{}");
    if (!h->config_text)
        return EVH_E_NOMEM;
    h->config_len = strlen(h->config_text);
    char err[160];
    h->config_doc = json_parse_limited(h->config_text, h->config_len, EVH_EVENT_MAX_BYTES * 16,
                                       EVH_JSON_MAX_DEPTH, err, sizeof err);
    if (h->config_doc && !cJSON_IsObject(h->config_doc)) {
        cJSON_Delete(h->config_doc);
        h->config_doc = NULL; /* config_* then answer their fallbacks */
    }
    return EVH_OK;
}

evh_host *hostapi_instance_new(const manifest *m, runtime *rt,
                               const char *config_text)
{
    if (!m)
        return NULL;
    evh_host *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->manifest = m;
    h->rt = rt;
    atomic_init(&h->stop, 0);
    if (set_config(h, config_text) != EVH_OK)
        goto fail_free_config;
    if (pthread_mutex_init(&h->lock, NULL) != 0)
        goto fail_free_config;
    if (cond_init_monotonic(&h->cond) != 0)
        goto fail_destroy_lock;
    if (live_add(h) != EVH_OK)
        goto fail_destroy_cond;
    return h;

fail_destroy_cond:
    pthread_cond_destroy(&h->cond);
fail_destroy_lock:
    pthread_mutex_destroy(&h->lock);
fail_free_config:
    cJSON_Delete(h->config_doc);
    free(h->config_text);
    free(h);
    return NULL;
}

static void clear_metrics(evh_host *h)
{
    for (size_t i = 0; i < h->n_metrics; i++) {
        free(h->metric_names[i]);
        h->metric_names[i] = NULL;
    }
    h->n_metrics = 0;
}

void hostapi_instance_free(evh_host *h)
{
    if (!h)
        return;
    live_remove(h);
    clear_metrics(h);
    pthread_cond_destroy(&h->cond);
    pthread_mutex_destroy(&h->lock);
    cJSON_Delete(h->config_doc);
    free(h->config_text);
    free(h->data_dir);
    free(h);
}

void hostapi_request_stop(evh_host *h)
{
    if (!h)
        return;
    atomic_store(&h->stop, 1);
    pthread_mutex_lock(&h->lock);
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

void hostapi_run_begin(evh_host *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    clear_metrics(h);
    h->in_run = 1;
    pthread_mutex_unlock(&h->lock);
}

void hostapi_run_end(evh_host *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    h->in_run = 0;
    pthread_mutex_unlock(&h->lock);
}

static int stop_requested(evh_host *h)
{
    return atomic_load(&h->stop) || (h->rt && atomic_load(&h->rt->stopping));
}

/* ---- emit --------------------------------------------------------------- */

static cJSON *parse_object(const char *text, size_t len, const char *path, diag *d)
{
    char err[200];
    cJSON *doc = json_parse_limited(text, len, EVH_EVENT_MAX_BYTES, EVH_JSON_MAX_DEPTH, err,
                                    sizeof err);
    if (!doc) {
        diag_add(d, path, "%s", err);
        return NULL;
    }
    if (!cJSON_IsObject(doc)) {
        diag_add(d, path, "must be a JSON object, got %s", json_type_name(doc));
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

/* The checks of hostapi_emit_checked, in the documented order; on EVH_OK
 * *data_out and *extra_out hold the compact texts to store. */
static int check_event(runtime *rt, const manifest *m, const char *event_type,
                       const char *data_json, size_t data_len, const char *user_id,
                       const char *additional_json, diag *d, char **data_out,
                       char **extra_out)
{
    const manifest_event_type *t = manifest_find_type(m, event_type);
    if (!t) {
        diag_add(d, "event_type", "'%s' is not declared in the eventTypes of %s", event_type,
                 m->path ? m->path : "plugin.json");
        atomic_fetch_add(&rt->refused_type, 1);
        return EVH_E_UNDECLARED_TYPE;
    }
    cJSON *data = parse_object(data_json, data_len, "data", d);
    if (!data || schema_validate(t->schema, data, "data", d) != EVH_OK) {
        cJSON_Delete(data);
        atomic_fetch_add(&rt->refused_schema, 1);
        return EVH_E_SCHEMA;
    }
    if (user_id && strlen(user_id) > EVH_EVENT_MAX_BYTES) {
        cJSON_Delete(data);
        diag_add(d, "metadata.user_id", "longer than %d bytes", EVH_EVENT_MAX_BYTES);
        return EVH_E_INVALID;
    }
    cJSON *extra = NULL;
    if (additional_json) {
        extra = parse_object(additional_json, strlen(additional_json),
                             "metadata.additional_data", d);
        if (!extra) {
            cJSON_Delete(data);
            return EVH_E_INVALID;
        }
    }
    *data_out = cJSON_PrintUnformatted(data);
    *extra_out = extra ? cJSON_PrintUnformatted(extra) : NULL;
    cJSON_Delete(data);
    cJSON_Delete(extra);
    if (!*data_out || (extra && !*extra_out)) {
        free(*data_out);
        free(*extra_out);
        return EVH_E_NOMEM;
    }
    return EVH_OK;
}

/* Queue the accepted event; counts the outcome.  With o->durable, wait
 * until the writer committed it (the HTTP ingest answers 202 only then). */
static int enqueue(runtime *rt, const manifest *m, const char *event_type, const char *data,
                   const char *user_id, const char *extra, const ingest_options *o,
                   char id_out[37])
{
    if (atomic_load(&rt->stopping)) {
        atomic_fetch_add(&rt->refused_stopping, 1);
        return EVH_E_STOPPING;
    }
    /* The source is the manifest's id, whatever the caller would like. */
    evh_event *ev = event_new(m->id, event_type, data, strlen(data), user_id, extra);
    if (!ev)
        return EVH_E_NOMEM;
    ev->chain_depth = o && o->has_chain_depth     ? o->chain_depth
                      : exec_current_chain_depth ? exec_current_chain_depth()
                                                 : 0;
    evh_ack ack = {0};
    if (o && o->idempotency_key && !(ev->idempotency_key = strdup(o->idempotency_key))) {
        event_free(ev);
        return EVH_E_NOMEM;
    }
    int wait_here = o && o->durable && !o->async_ack;
    if (wait_here)
        ev->ack = &ack;
    else if (o && o->durable)
        ev->ack = o->async_ack;
    char id[EVH_UUID_LEN + 1];
    memcpy(id, ev->id, sizeof id); /* ev belongs to the bus once pushed */
    int rc = bus_push(rt->bus, ev, o && o->wait_ms ? o->wait_ms : rt->emit_wait_ms);
    if (rc == EVH_OK) {
        if (wait_here)
            rc = ack_wait(&ack); /* EVH_E_DUPLICATE: the key was seen before */
        if (rc == EVH_OK)
            atomic_fetch_add(&rt->emitted, 1);
        if (id_out)
            memcpy(id_out, id, sizeof id);
        return rc;
    }
    event_free(ev);
    if (rc == EVH_E_QUEUE_FULL)
        atomic_fetch_add(&rt->refused_full, 1);
    else if (rc == EVH_E_STOPPING)
        atomic_fetch_add(&rt->refused_stopping, 1);
    return rc;
}

int hostapi_emit_checked(runtime *rt, const manifest *m, const char *event_type,
                         const char *data_json, size_t data_len,
                         const char *user_id, const char *additional_json,
                         diag *d, char id_out[37])
{
    return hostapi_ingest(rt, m, event_type, data_json, data_len, user_id, additional_json,
                          NULL, d, id_out);
}

int hostapi_ingest(runtime *rt, const manifest *m, const char *event_type,
                   const char *data_json, size_t data_len, const char *user_id,
                   const char *additional_json, const ingest_options *o, diag *d,
                   char id_out[37])
{
    if (!rt || !m || !event_type || !data_json) {
        if (d)
            diag_add(d, "", "missing argument (runtime, manifest, event type or data)");
        metrics_event_refused(m ? m->id : NULL, event_type, METRICS_REFUSED_INVALID);
        return EVH_E_INVALID;
    }
    if (data_len == EVH_NUL_TERMINATED)
        data_len = strlen(data_json);
    /* Problems are always collected (the plugin path logs them). */
    diag local;
    diag_init(&local, NULL);
    char *data = NULL, *extra = NULL;
    int rc = check_event(rt, m, event_type, data_json, data_len, user_id, additional_json,
                         &local, &data, &extra);
    if (rc == EVH_OK)
        rc = enqueue(rt, m, event_type, data, user_id, extra, o, id_out);
    metrics_event_outcome(m->id, event_type, rc);
    free(data);
    free(extra);
    if (d)
        diag_merge(d, &local, NULL);
    diag_free(&local);
    return rc;
}

/* Refused emits are logged at most once a second per plugin and kind of
 * refusal (undeclared type, schema, invalid), so a plugin looping on bad data
 * cannot flood the log while a different mistake still shows at once; every
 * refusal is counted in the runtime's counters all the same.  Slots are
 * shared by hash: a collision only means two keys share one budget. */
#define WARN_SLOTS 256
#define WARN_INTERVAL_NS 1000000000LL

typedef struct warn_slot {
    char key[EVH_ID_MAX_LEN + 16]; /* "<plugin id>/<status>" */
    int64_t last_ns;
    unsigned long suppressed;
} warn_slot;

static pthread_mutex_t warn_lock = PTHREAD_MUTEX_INITIALIZER;
static warn_slot warn_slots[WARN_SLOTS];

/* 1 when a warning for (id, rc) may be logged now; *suppressed receives how
 * many were dropped since the last one. */
static int warn_allowed(const char *id, int rc, unsigned long *suppressed)
{
    char key[sizeof warn_slots[0].key];
    snprintf(key, sizeof key, "%.*s/%d", EVH_ID_MAX_LEN, id, rc);
    unsigned h = 5381;
    for (const char *c = key; *c; c++)
        h = h * 33u + (unsigned char)*c;
    int64_t now = monotonic_ns();
    int ok = 0;
    pthread_mutex_lock(&warn_lock);
    warn_slot *s = &warn_slots[h % WARN_SLOTS];
    if (strcmp(s->key, key) != 0) {
        memcpy(s->key, key, sizeof key);
        s->last_ns = 0;
        s->suppressed = 0;
    }
    if (s->last_ns == 0 || now - s->last_ns >= WARN_INTERVAL_NS) {
        ok = 1;
        *suppressed = s->suppressed;
        s->suppressed = 0;
        s->last_ns = now;
    } else {
        s->suppressed++;
    }
    pthread_mutex_unlock(&warn_lock);
    return ok;
}

static void plugin_component(const evh_host *h, char *buf, size_t len)
{
    snprintf(buf, len, "plugin:%s", h->manifest->id ? h->manifest->id : "?");
}

static void warn_refused(const evh_host *h, const char *event_type, int rc, const diag *d)
{
    unsigned long suppressed = 0;
    if (!warn_allowed(h->manifest->id ? h->manifest->id : "", rc, &suppressed))
        return;
    char comp[EVH_ID_MAX_LEN + 16];
    plugin_component(h, comp, sizeof comp);
    char *why = diag_join(d);
    char more[96] = "";
    if (suppressed)
        snprintf(more, sizeof more, " (and %lu more like it since the last such warning)",
                 suppressed);
    log_warn(comp, "emit of '%s' refused (%s): %s%s", event_type, evh_status_name(rc),
             why && *why ? why : evh_status_message(rc), more);
    free(why);
}

/* Set on an HTTP thread around a plugin's http callback (api_plugins.c). */
static _Thread_local int durable_emit;

int hostapi_durable_emit(int on)
{
    int was = durable_emit;
    durable_emit = on;
    return was;
}

static int32_t emit_common(evh_host *h, const char *event_type, const char *data_json,
                           size_t data_len, const char *user_id, char *id_out)
{
    if (!h || !event_type || !data_json)
        return EVH_E_INVALID;
    if (!h->rt || h->validating)
        return EVH_E_STATE; /* validate-only loading and validate calls: no events */
    /* A source told to stop gets STOPPING even while the host drains, so a
     * run loop that only checks emit's answer still ends. */
    if (atomic_load(&h->stop)) {
        atomic_fetch_add(&h->rt->refused_stopping, 1);
        metrics_event_refused(h->manifest->id, event_type, METRICS_REFUSED_STOPPING);
        return EVH_E_STOPPING;
    }
    diag d;
    diag_init(&d, NULL);
    /* From a plugin's http callback: return once stored (hostapi_durable_emit). */
    ingest_options durable = {.durable = 1};
    char id[EVH_UUID_LEN + 1];
    int rc = hostapi_ingest(h->rt, h->manifest, event_type, data_json, data_len, user_id, NULL,
                            durable_emit ? &durable : NULL, &d, id);
    if (rc == EVH_E_UNDECLARED_TYPE || rc == EVH_E_SCHEMA || rc == EVH_E_INVALID)
        warn_refused(h, event_type, rc, &d);
    if (rc == EVH_OK && id_out)
        memcpy(id_out, id, sizeof id);
    diag_free(&d);
    return rc;
}

static int32_t api_emit(evh_host *h, const char *event_type, const char *data_json,
                        size_t data_len, const char *user_id)
{
    return emit_common(h, event_type, data_json, data_len, user_id, NULL);
}

static int32_t api_emit_id(evh_host *h, const char *event_type, const char *data_json,
                           size_t data_len, const char *user_id, char *id_out)
{
    return emit_common(h, event_type, data_json, data_len, user_id, id_out);
}

/* ---- conditions (ABI 1.1) ----------------------------------------------- */

static int32_t cond_fail(char **error, int32_t rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int32_t cond_fail(char **error, int32_t rc, const char *fmt, ...)
{
    if (error) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(error, fmt, ap) < 0)
            *error = NULL;
        va_end(ap);
    }
    return rc;
}

/* The trigger language over {"event": <envelope>, "steps": {...}}: the
 * clauses' fields name the envelope (data.x, metadata.user_id) as in
 * triggers, or steps.<id>.output.x; see evhost.h. */
static int32_t api_condition_eval(evh_host *h, const char *conds_json, size_t conds_len,
                                  const char *ctx_json, size_t ctx_len, char **error)
{
    (void)h; /* stateless: any instance, or none, may ask */
    if (error)
        *error = NULL;
    if (!conds_json || !ctx_json)
        return cond_fail(error, EVH_E_INVALID, "conditions and context are required");
    if (conds_len == EVH_NUL_TERMINATED)
        conds_len = strlen(conds_json);
    if (ctx_len == EVH_NUL_TERMINATED)
        ctx_len = strlen(ctx_json);
    char err[200];
    cJSON *conds = json_parse_limited(conds_json, conds_len, EVH_EVENT_MAX_BYTES,
                                      EVH_JSON_MAX_DEPTH, err, sizeof err);
    if (!conds)
        return cond_fail(error, EVH_E_JSON, "conditions: %s", err);
    cJSON *ctx = json_parse_limited(ctx_json, ctx_len, EVH_EVENT_MAX_BYTES * 16,
                                    EVH_JSON_MAX_DEPTH, err, sizeof err);
    if (!ctx || !cJSON_IsObject(ctx)) {
        int32_t rc = cond_fail(error, EVH_E_JSON, "context: %s",
                               ctx ? "must be a JSON object" : err);
        cJSON_Delete(conds);
        cJSON_Delete(ctx);
        return rc;
    }
    diag d;
    diag_init(&d, NULL);
    cond_node *c = conditions_compile(conds, "", COND_ALLOW_STEPS, &d);
    int32_t rc;
    if (!c) {
        char *why = diag_join(&d);
        rc = cond_fail(error, why ? EVH_E_CONFIG : EVH_E_NOMEM, "%s",
                       why ? why : "out of memory");
        free(why);
    } else {
        /* The fields of the language are paths into the envelope; steps.*
         * is spliced in beside them for the evaluation only (by reference:
         * nothing is copied, and an envelope has no "steps" of its own). */
        cJSON *event = cJSON_DetachItemFromObjectCaseSensitive(ctx, "event");
        if (!cJSON_IsObject(event)) {
            cJSON_Delete(event);
            event = cJSON_CreateObject();
        }
        const cJSON *steps = cJSON_GetObjectItemCaseSensitive(ctx, "steps");
        cJSON_DeleteItemFromObjectCaseSensitive(event, "steps");
        if (!event || (steps && !cJSON_AddItemReferenceToObject(event, "steps", (cJSON *)steps))) {
            rc = cond_fail(error, EVH_E_NOMEM, "out of memory");
        } else {
            rc = conditions_eval(c, event) ? 1 : 0;
        }
        cJSON_Delete(event);
    }
    diag_free(&d);
    conditions_free(c);
    cJSON_Delete(conds);
    cJSON_Delete(ctx);
    return rc;
}

/* ---- the rest of the table ---------------------------------------------- */

static void api_log(evh_host *h, int32_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void api_log(evh_host *h, int32_t level, const char *fmt, ...)
{
    if (!fmt)
        return;
    char comp[EVH_ID_MAX_LEN + 16] = "plugin:?";
    if (h)
        plugin_component(h, comp, sizeof comp);
    va_list ap;
    va_start(ap, fmt);
    log_msgv(level, comp, fmt, ap);
    va_end(ap);
}

static const char *api_config_json(evh_host *h, size_t *len)
{
    if (!h) {
        if (len)
            *len = 2;
        return "{}";
    }
    if (len)
        *len = h->config_len;
    return h->config_text;
}

/* Now + ms on CLOCK_MONOTONIC, saturated so no timeout can overflow. */
static struct timespec deadline_after(uint64_t ms)
{
    const uint64_t max_ms = 100ULL * 365 * 24 * 3600 * 1000; /* a century */
    if (ms > max_ms)
        ms = max_ms;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += (time_t)(ms / 1000);
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static int32_t api_wait(evh_host *h, uint64_t timeout_ms)
{
    if (!h)
        return EVH_E_INVALID;
    struct timespec deadline = deadline_after(timeout_ms);
    pthread_mutex_lock(&h->lock);
    while (!stop_requested(h)) {
        if (pthread_cond_timedwait(&h->cond, &h->lock, &deadline) == ETIMEDOUT)
            break;
    }
    int stop = stop_requested(h);
    pthread_mutex_unlock(&h->lock);
    return stop ? EVH_E_STOPPING : EVH_OK;
}

static int32_t api_stopping(evh_host *h)
{
    return h ? stop_requested(h) : 1; /* no handle: nothing left to run for */
}

/* mkdir -p with mode for every directory it creates. */
static int mkdir_p(const char *path, mode_t mode)
{
    char *buf = strdup(path);
    if (!buf)
        return -1;
    int rc = 0;
    for (char *p = buf + 1; rc == 0; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            rc = -1;
        *p = saved;
        if (saved == '\0')
            break;
    }
    struct stat st;
    if (rc == 0 && (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)))
        rc = -1;
    free(buf);
    return rc;
}

static const char *api_data_dir(evh_host *h)
{
    if (!h || !h->rt || !h->rt->data_root || !h->manifest->id)
        return NULL;
    pthread_mutex_lock(&h->lock);
    if (!h->data_dir) {
        char *path = NULL;
        if (asprintf(&path, "%s/plugins/%s", h->rt->data_root, h->manifest->id) < 0)
            path = NULL;
        if (path && mkdir_p(path, 0700) == 0) {
            h->data_dir = path;
        } else {
            log_error("hostapi", "plugin '%s': cannot create data directory %s: %s",
                      h->manifest->id, path ? path : h->rt->data_root, strerror(errno));
            free(path);
        }
    }
    const char *out = h->data_dir;
    pthread_mutex_unlock(&h->lock);
    return out;
}

static int32_t api_metric(evh_host *h, const char *name, double value)
{
    if (!h || !name || !*name || strlen(name) > EVH_ID_MAX_LEN || !isfinite(value))
        return EVH_E_INVALID;
    int32_t rc = EVH_OK;
    pthread_mutex_lock(&h->lock);
    size_t i = 0;
    while (i < h->n_metrics && strcmp(h->metric_names[i], name) != 0)
        i++;
    if (!h->in_run) {
        rc = EVH_E_STATE;
    } else if (i < h->n_metrics) {
        h->metric_values[i] = value; /* a later value replaces the earlier */
    } else if (h->n_metrics == EVH_STEP_METRICS_MAX) {
        rc = EVH_E_INVALID;
    } else if ((h->metric_names[i] = strdup(name)) == NULL) {
        rc = EVH_E_NOMEM;
    } else {
        h->metric_values[i] = value;
        h->n_metrics++;
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}

static void *api_alloc(size_t size)
{
    return malloc(size ? size : 1); /* NULL only when memory ran out */
}

static void api_free(void *ptr)
{
    free(ptr);
}

static char *api_strdup(const char *text)
{
    return text ? strdup(text) : NULL;
}

static char *api_mprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *api_mprintf(const char *fmt, ...)
{
    if (!fmt)
        return NULL;
    char *out = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&out, fmt, ap) < 0)
        out = NULL;
    va_end(ap);
    return out;
}

static const cJSON *config_node(evh_host *h, const char *path)
{
    return h && path ? json_path_get(h->config_doc, path) : NULL;
}

static const char *api_config_string(evh_host *h, const char *path, const char *fallback)
{
    const cJSON *n = config_node(h, path);
    return cJSON_IsString(n) ? n->valuestring : fallback;
}

static int64_t api_config_int(evh_host *h, const char *path, int64_t fallback)
{
    const cJSON *n = config_node(h, path);
    if (!cJSON_IsNumber(n))
        return fallback;
    double v = n->valuedouble;
    /* Range first: converting an out-of-range double is undefined. */
    if (!isfinite(v) || v < -9223372036854775808.0 || v >= 9223372036854775808.0)
        return fallback;
    int64_t i = (int64_t)v;
    return (double)i == v ? i : fallback; /* 2.5 is not an integer */
}

static double api_config_number(evh_host *h, const char *path, double fallback)
{
    const cJSON *n = config_node(h, path);
    return cJSON_IsNumber(n) ? n->valuedouble : fallback;
}

static int32_t api_config_bool(evh_host *h, const char *path, int32_t fallback)
{
    const cJSON *n = config_node(h, path);
    return cJSON_IsBool(n) ? cJSON_IsTrue(n) : fallback;
}

static const evh_host_api api_table = {
    .struct_size = sizeof(evh_host_api),
    .abi_major = EVH_ABI_MAJOR,
    .abi_minor = EVH_ABI_MINOR,
    .emit = api_emit,
    .log = api_log,
    .config_json = api_config_json,
    .wait = api_wait,
    .stopping = api_stopping,
    .data_dir = api_data_dir,
    .metric = api_metric,
    .alloc = api_alloc,
    .free = api_free,
    .strdup = api_strdup,
    .mprintf = api_mprintf,
    .config_string = api_config_string,
    .config_int = api_config_int,
    .config_number = api_config_number,
    .config_bool = api_config_bool,
    .json_get = jsonpath_api_get,
    .json_get_string = jsonpath_api_get_string,
    .json_quote = jsonpath_api_quote,
    .condition_eval = api_condition_eval,
    .emit_id = api_emit_id,
};

const evh_host_api *hostapi_table(void)
{
    return &api_table;
}
