/*
 * plugin_child.c - one process-isolated plugin in its own process (see
 * plugin_child.h; the protocol is in isoproto.h).
 *
 * Threads:
 *   main     runs the host's commands in order: DESCRIBE, INIT, step RUNs and
 *            FINI, so that a step's init, runs and fini all happen on one
 *            thread, as in-process.
 *   reader   reads the socket: queues commands for main, delivers REPLYs to
 *            the plugin threads waiting in emit or data_dir, handles STOP,
 *            and starts a thread per HTTP request.  On EOF (the host closed
 *            the socket or died) the process exits at once, whatever the
 *            plugin is doing.
 *   run      a source's run().
 *   helpers  one per HTTP request and per stop() call.
 */
#include "plugin_child.h"

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <evhost/evhost.h>

#include "diag.h"
#include "evh_limits.h"
#include "hostapi.h"
#include "isoproto.h"
#include "manifest.h"

#define END_OF(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

static const int sock = ISO_CHILD_FD;
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

/* The plugin; written by main, read by the reader and helpers only after
 * `ready` was set under state_lock. */
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t state_cond = PTHREAD_COND_INITIALIZER;
static void *dl;
static const evh_plugin *desc;
static manifest *m;
static evh_host *h;
static void *ctx;
static int ready;          /* init succeeded */
static int helpers;        /* HTTP and stop threads in flight */
static int stop_requested; /* STOP arrived */
static pthread_t run_thread;
static int run_started, run_done;
static atomic_int log_level = EVH_LOG_INFO;
static char *data_dir; /* cached answer of the host */

/* Commands for main. */
typedef struct command {
    iso_frame f;
    struct command *next;
} command;
static command *q_head, *q_tail;

/* Requests of the plugin to the host, waiting for their REPLY. */
typedef struct pending {
    uint32_t id;
    int done;
    int32_t rc;
    char *value;
    struct pending *next;
} pending;
static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pending_cond = PTHREAD_COND_INITIALIZER;
static pending *pendings;
static uint32_t next_request;

static _Thread_local int in_http; /* emits from http are durable */

static evh_host_api table; /* hostapi's, with emit, log and data_dir replaced */

/* ---- talking to the host ------------------------------------------------ */

static int send_frame(uint8_t type, const cJSON *head, const void *raw, size_t raw_len)
{
    pthread_mutex_lock(&write_lock);
    int rc = iso_send(sock, type, head, raw, raw_len, 0);
    pthread_mutex_unlock(&write_lock);
    return rc;
}

/* Send, then free head. */
static int send_and_free(uint8_t type, cJSON *head, const void *raw, size_t raw_len)
{
    int rc = head ? send_frame(type, head, raw, raw_len) : -1;
    cJSON_Delete(head);
    return rc;
}

static void child_logf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void child_logf(int level, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    cJSON *head = cJSON_CreateObject();
    cJSON_AddNumberToObject(head, "level", level);
    cJSON_AddStringToObject(head, "msg", msg ? msg : "(out of memory)");
    send_and_free(ISO_LOG, head, NULL, 0);
    free(msg);
}

/* Send a request (head gets its id) and wait for the REPLY.  *value (may be
 * NULL) receives the reply's value (malloc'd or NULL). */
static int32_t request(uint8_t type, cJSON *head, const void *raw, size_t raw_len, char **value)
{
    if (value)
        *value = NULL;
    if (!head)
        return EVH_E_NOMEM;
    pending p = {0};
    pthread_mutex_lock(&pending_lock);
    p.id = ++next_request;
    p.next = pendings;
    pendings = &p;
    pthread_mutex_unlock(&pending_lock);
    cJSON_AddNumberToObject(head, "id", p.id);
    int sent = send_frame(type, head, raw, raw_len);
    cJSON_Delete(head);
    pthread_mutex_lock(&pending_lock);
    while (sent == 0 && !p.done)
        pthread_cond_wait(&pending_cond, &pending_lock);
    for (pending **pp = &pendings; *pp; pp = &(*pp)->next) {
        if (*pp == &p) {
            *pp = p.next;
            break;
        }
    }
    pthread_mutex_unlock(&pending_lock);
    if (sent != 0)
        return EVH_E_IO;
    if (value)
        *value = p.value;
    else
        free(p.value);
    return p.rc;
}

static void deliver_reply(const iso_frame *f)
{
    uint32_t id = (uint32_t)iso_int(f, "id", 0);
    const char *value = iso_str(f, "value");
    pthread_mutex_lock(&pending_lock);
    for (pending *p = pendings; p; p = p->next) {
        if (p->id == id && !p->done) {
            p->rc = (int32_t)iso_int(f, "rc", EVH_E_IO);
            p->value = value ? strdup(value) : NULL;
            p->done = 1;
            break;
        }
    }
    pthread_cond_broadcast(&pending_cond);
    pthread_mutex_unlock(&pending_lock);
}

/* ---- the host API table of the child ------------------------------------ */

static int32_t emit_common(evh_host *host, const char *event_type, const char *data_json,
                           size_t data_len, const char *user_id, char *id_out)
{
    if (!host || !event_type || !data_json)
        return EVH_E_INVALID;
    if (data_len == EVH_NUL_TERMINATED)
        data_len = strlen(data_json);
    if (data_len > (size_t)EVH_EVENT_MAX_BYTES * 4) {
        /* the host would refuse it as well (EVH_E_SCHEMA: too large) */
        child_logf(EVH_LOG_WARN, "emit of '%.64s' refused (EVH_E_SCHEMA): data is %zu bytes, "
                   "more than %d", event_type, data_len, EVH_EVENT_MAX_BYTES);
        return EVH_E_SCHEMA;
    }
    cJSON *head = cJSON_CreateObject();
    if (head) {
        cJSON_AddStringToObject(head, "event_type", event_type);
        if (user_id)
            cJSON_AddStringToObject(head, "user_id", user_id);
        cJSON_AddBoolToObject(head, "durable", in_http);
        cJSON_AddBoolToObject(head, "want_id", id_out != NULL);
    }
    char *id = NULL;
    int32_t rc = request(ISO_EMIT, head, data_json, data_len, id_out ? &id : NULL);
    if (rc == EVH_OK && id_out && id)
        snprintf(id_out, EVH_EVENT_ID_SIZE, "%s", id);
    free(id);
    return rc;
}

static int32_t child_emit(evh_host *host, const char *event_type, const char *data_json,
                          size_t data_len, const char *user_id)
{
    return emit_common(host, event_type, data_json, data_len, user_id, NULL);
}

static int32_t child_emit_id(evh_host *host, const char *event_type, const char *data_json,
                             size_t data_len, const char *user_id, char *id_out)
{
    return emit_common(host, event_type, data_json, data_len, user_id, id_out);
}

static void child_log(evh_host *host, int32_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void child_log(evh_host *host, int32_t level, const char *fmt, ...)
{
    (void)host;
    if (!fmt || level > log_level)
        return;
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    cJSON *head = cJSON_CreateObject();
    if (head) {
        cJSON_AddNumberToObject(head, "level", level);
        cJSON_AddStringToObject(head, "msg", msg ? msg : "(out of memory)");
    }
    send_and_free(ISO_LOG, head, NULL, 0);
    free(msg);
}

static const char *child_data_dir(evh_host *host)
{
    if (!host)
        return NULL;
    pthread_mutex_lock(&state_lock);
    const char *cached = data_dir;
    pthread_mutex_unlock(&state_lock);
    if (cached)
        return cached;
    char *value = NULL;
    if (request(ISO_DATA_DIR, cJSON_CreateObject(), NULL, 0, &value) != EVH_OK || !value) {
        free(value);
        return NULL;
    }
    pthread_mutex_lock(&state_lock);
    if (!data_dir)
        data_dir = value; /* borrowed by the plugin until fini: never freed */
    else
        free(value);
    cached = data_dir;
    pthread_mutex_unlock(&state_lock);
    return cached;
}

static void table_init(void)
{
    table = *hostapi_table();
    table.emit = child_emit;
    table.log = child_log;
    table.data_dir = child_data_dir;
    if (EVH_API_HAS(&table, emit_id))
        table.emit_id = child_emit_id;
}

/* ---- the library --------------------------------------------------------- */

/* dlopen and the descriptor; 0, or -1 with *err (malloc'd). */
static int load_library(const char *path, char **err)
{
    if (dl)
        return 0;
    if (!path) {
        *err = strdup("no library named");
        return -1;
    }
    dlerror();
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *e = dlerror();
        if (asprintf(err, "dlopen failed: %s", e ? e : "unknown error") < 0)
            *err = NULL;
        return -1;
    }
    void *sym = dlsym(handle, EVH_ENTRY_SYMBOL);
    if (!sym) {
        *err = strdup("does not export evh_plugin_entry: declare it with EVH_DECLARE_SOURCE "
                      "or EVH_DECLARE_STEP");
        /* the handle stays: the process ends soon, and dlclose would run the
         * plugin's destructors for nothing */
        /* cppcheck-suppress resourceLeak */
        return -1;
    }
    evh_plugin_entry_fn entry = (evh_plugin_entry_fn)sym;
    const evh_plugin *d = entry();
    pthread_mutex_lock(&state_lock);
    dl = handle;
    desc = d;
    pthread_mutex_unlock(&state_lock);
    return 0;
}

/* What the loader checks of a descriptor, as facts for the host (which
 * builds a stand-in descriptor of them and runs its own checks). */
static cJSON *describe(void)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    if (!desc) {
        cJSON_AddStringToObject(o, "error", "evh_plugin_entry returned NULL");
        return o;
    }
    cJSON_AddNumberToObject(o, "struct_size", desc->struct_size);
    if (desc->struct_size < END_OF(evh_plugin, step))
        return o;
    cJSON_AddNumberToObject(o, "abi_major", desc->abi_major);
    cJSON_AddNumberToObject(o, "abi_minor", desc->abi_minor);
    cJSON_AddNumberToObject(o, "kind", desc->kind);
    if (desc->id) {
        char id[EVH_ID_MAX_LEN + 2];
        snprintf(id, sizeof id, "%s", desc->id); /* longer ids still mismatch */
        cJSON_AddStringToObject(o, "id", id);
    }
    if (desc->kind == EVH_KIND_SOURCE && desc->source) {
        const evh_source *s = desc->source;
        cJSON_AddNumberToObject(o, "table_size", s->struct_size);
        if (s->struct_size >= END_OF(evh_source, fini)) {
            cJSON_AddBoolToObject(o, "has_init", s->init != NULL);
            cJSON_AddBoolToObject(o, "has_run", s->run != NULL);
            cJSON_AddBoolToObject(o, "has_stop", s->stop != NULL);
            cJSON_AddBoolToObject(o, "has_fini", s->fini != NULL);
            cJSON_AddBoolToObject(o, "has_http", EVH_SOURCE_HAS(s, http) && s->http);
        }
    } else if (desc->kind == EVH_KIND_STEP && desc->step) {
        const evh_step *s = desc->step;
        cJSON_AddNumberToObject(o, "table_size", s->struct_size);
        if (s->struct_size >= END_OF(evh_step, fini)) {
            cJSON_AddBoolToObject(o, "has_init", s->init != NULL);
            cJSON_AddBoolToObject(o, "has_run", s->run != NULL);
            cJSON_AddBoolToObject(o, "has_fini", s->fini != NULL);
            cJSON_AddBoolToObject(o, "has_validate", EVH_STEP_HAS(s, validate) && s->validate);
        }
    }
    return o;
}

static void do_describe(const iso_frame *f)
{
    char *err = NULL;
    cJSON *o = NULL;
    if (load_library(iso_str(f, "library"), &err) == 0) {
        o = describe();
    } else {
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", err ? err : "out of memory");
    }
    free(err);
    send_and_free(ISO_DESCRIPTOR, o, NULL, 0);
}

/* The library a restarted child opens may have changed on disk since the
 * host checked it: the essentials again. */
static const char *unusable(void)
{
    if (!desc || desc->struct_size < END_OF(evh_plugin, step) || desc->kind != m->kind ||
        !desc->id || strcmp(desc->id, m->id) != 0)
        return "its descriptor no longer matches plugin.json (was the library replaced?)";
    if (m->kind == EVH_KIND_SOURCE &&
        (!desc->source || desc->source->struct_size < END_OF(evh_source, fini) ||
         !desc->source->init || !desc->source->run || !desc->source->fini))
        return "its source table lacks init, run or fini";
    if (m->kind == EVH_KIND_STEP &&
        (!desc->step || desc->step->struct_size < END_OF(evh_step, fini) ||
         !desc->step->init || !desc->step->run || !desc->step->fini))
        return "its step table lacks init, run or fini";
    return NULL;
}

static void init_done(int32_t rc, const char *error)
{
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddNumberToObject(o, "rc", rc);
        if (error)
            cJSON_AddStringToObject(o, "error", error);
    }
    send_and_free(ISO_INIT_DONE, o, NULL, 0);
}

/* What init and validate do first: load the library and read the manifest
 * the host sent.  EVH_OK, or a code and *why (malloc'd; NULL when out of
 * memory). */
static int32_t get_ready(const iso_frame *f, char **why)
{
    *why = NULL;
    log_level = (int)iso_int(f, "log_level", EVH_LOG_INFO);
    if (load_library(iso_str(f, "library"), why) != 0)
        return EVH_E_LOAD;
    const char *text = iso_str(f, "manifest");
    diag d;
    diag_init(&d, NULL);
    if (!text || manifest_parse(text, strlen(text), iso_str(f, "manifest_path"), &m, &d) !=
                     EVH_OK) {
        *why = diag_join(&d);
        if (!*why)
            *why = strdup("plugin.json could not be read");
        diag_free(&d);
        return EVH_E_MANIFEST;
    }
    diag_free(&d);
    const char *bad = unusable();
    if (bad) {
        *why = strdup(bad);
        return EVH_E_LOAD;
    }
    return EVH_OK;
}

static void do_init(const iso_frame *f)
{
    char *why = NULL;
    int32_t ready_rc = get_ready(f, &why);
    if (ready_rc != EVH_OK) {
        init_done(ready_rc, why ? why : "out of memory");
        free(why);
        return;
    }
    evh_host *handle = hostapi_instance_new(m, NULL, iso_str(f, "config"));
    if (!handle) {
        init_done(EVH_E_NOMEM, "out of memory");
        return;
    }
    void *c = NULL;
    char *errmsg = NULL;
    int32_t rc = m->kind == EVH_KIND_SOURCE
                     ? desc->source->init(&table, handle, &c, &errmsg)
                     : desc->step->init(&table, handle, &c, &errmsg);
    if (rc != EVH_OK) {
        hostapi_instance_free(handle);
    } else {
        pthread_mutex_lock(&state_lock);
        h = handle;
        ctx = c;
        ready = 1;
        if (stop_requested)
            hostapi_request_stop(h);
        pthread_mutex_unlock(&state_lock);
    }
    init_done(rc, errmsg);
    free(errmsg);
}

/* ---- validate (SDK 1.2): a short-lived child, one call ------------------- */

static void validate_done(int32_t rc, const char *field, const char *error)
{
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddNumberToObject(o, "rc", rc);
        if (field && field[0])
            cJSON_AddStringToObject(o, "field", field);
        if (error)
            cJSON_AddStringToObject(o, "error", error);
    }
    send_and_free(ISO_VALIDATE_DONE, o, NULL, 0);
}

/* As do_init up to the call; the handle is made for this call only, and
 * its emit is refused by the host (the handle there is a validating one). */
static void do_validate(const iso_frame *f)
{
    char *why = NULL;
    int32_t ready_rc = get_ready(f, &why);
    if (ready_rc != EVH_OK) {
        validate_done(ready_rc, NULL, why ? why : "out of memory");
        free(why);
        return;
    }
    if (m->kind != EVH_KIND_STEP) {
        validate_done(EVH_E_LOAD, NULL, "not a workflow step");
        return;
    }
    const evh_step *st = desc->step;
    if (!EVH_STEP_HAS(st, validate) || !st->validate) { /* the library was replaced */
        validate_done(EVH_OK, NULL, NULL);
        return;
    }
    evh_host *handle = hostapi_instance_new(m, NULL, iso_str(f, "config"));
    if (!handle) {
        validate_done(EVH_E_NOMEM, NULL, "out of memory");
        return;
    }
    handle->validating = 1;
    char *field = NULL, *errmsg = NULL;
    int32_t rc = st->validate(&table, handle, &field, &errmsg);
    hostapi_instance_free(handle);
    validate_done(rc, rc == EVH_OK ? NULL : field, rc == EVH_OK ? NULL : errmsg);
    free(field);
    free(errmsg);
}

/* ---- step runs ------------------------------------------------------------ */

static const char *str_or_empty(const iso_frame *f, const char *key)
{
    const char *s = iso_str(f, key);
    return s ? s : "";
}

static void do_step_run(const iso_frame *f)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    cJSON_AddNumberToObject(o, "id", (double)iso_int(f, "id", 0));
    if (!ready || m->kind != EVH_KIND_STEP) {
        cJSON_AddNumberToObject(o, "rc", EVH_E_STATE);
        cJSON_AddStringToObject(o, "error", "the plugin is not initialized");
        send_and_free(ISO_RESULT, o, NULL, 0);
        return;
    }
    const char *event = str_or_empty(f, "event"), *steps = str_or_empty(f, "steps"),
               *config = str_or_empty(f, "config");
    evh_step_input in = {.struct_size = sizeof(evh_step_input),
                         .attempt = (uint32_t)iso_int(f, "attempt", 1),
                         .event_json = event,
                         .event_len = strlen(event),
                         .steps_json = steps,
                         .steps_len = strlen(steps),
                         .execution_id = str_or_empty(f, "execution_id"),
                         .workflow_id = str_or_empty(f, "workflow_id"),
                         .step_id = str_or_empty(f, "step_id"),
                         .config_json = config,
                         .config_len = strlen(config)};
    evh_step_output out;
    memset(&out, 0, sizeof out);
    out.struct_size = sizeof out;
    hostapi_run_begin(h);
    int32_t rc = desc->step->run(ctx, &in, &out);
    hostapi_run_end(h);
    cJSON_AddNumberToObject(o, "rc", rc);
    if (out.error_message)
        cJSON_AddStringToObject(o, "error", out.error_message);
    cJSON_AddNumberToObject(o, "flags", out.flags);
    cJSON *metrics = cJSON_AddObjectToObject(o, "metrics");
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; metrics && i < h->n_metrics; i++)
        cJSON_AddNumberToObject(metrics, h->metric_names[i], h->metric_values[i]);
    pthread_mutex_unlock(&h->lock);
    size_t len = 0;
    if (out.output_json)
        len = out.output_len == 0 || out.output_len == EVH_NUL_TERMINATED
                  ? strlen(out.output_json)
                  : out.output_len;
    cJSON_AddBoolToObject(o, "has_output", out.output_json != NULL);
    send_and_free(ISO_RESULT, o, out.output_json ? out.output_json : "",
                  out.output_json ? len : 0);
    free(out.output_json);
    free(out.error_message);
}

/* ---- sources ------------------------------------------------------------- */

static void *source_run_main(void *arg)
{
    uint32_t id = (uint32_t)(uintptr_t)arg;
    int32_t rc = desc->source->run(ctx);
    pthread_mutex_lock(&state_lock);
    run_done = 1;
    pthread_mutex_unlock(&state_lock);
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddNumberToObject(o, "id", id);
        cJSON_AddNumberToObject(o, "rc", rc);
    }
    send_and_free(ISO_RUN_DONE, o, NULL, 0);
    return NULL;
}

static void do_source_run(const iso_frame *f)
{
    uint32_t id = (uint32_t)iso_int(f, "id", 0);
    if (!ready || run_started || m->kind != EVH_KIND_SOURCE ||
        pthread_create(&run_thread, NULL, source_run_main, (void *)(uintptr_t)id) != 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", id);
        cJSON_AddNumberToObject(o, "rc", ready && !run_started ? EVH_E_NOMEM : EVH_E_STATE);
        send_and_free(ISO_RUN_DONE, o, NULL, 0);
        return;
    }
    run_started = 1;
}

static void helper_done(void)
{
    pthread_mutex_lock(&state_lock);
    helpers--;
    pthread_cond_broadcast(&state_cond);
    pthread_mutex_unlock(&state_lock);
}

static void *stop_main(void *arg)
{
    (void)arg;
    desc->source->stop(ctx);
    helper_done();
    return NULL;
}

/* On the reader thread: stopping() turns 1, wait() returns, and a source's
 * stop() runs on a thread of its own (it may block a little; the reader
 * must keep delivering replies to the plugin's emits meanwhile). */
static void on_stop(void)
{
    pthread_mutex_lock(&state_lock);
    stop_requested = 1;
    int call_stop = 0;
    if (ready) {
        hostapi_request_stop(h);
        call_stop = m->kind == EVH_KIND_SOURCE && desc->source->stop != NULL;
        if (call_stop)
            helpers++;
    }
    pthread_mutex_unlock(&state_lock);
    if (!call_stop)
        return;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, stop_main, NULL) != 0)
        helper_done();
    pthread_attr_destroy(&attr);
}

/* ---- HTTP (sources of ABI 1.1) -------------------------------------------- */

/* [[name, value], ...] of the head into fields (borrowing its strings);
 * NULL when out of memory. */
static evh_http_field *fields_of(const iso_frame *f, const char *key, uint32_t *n)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(f->head, key);
    int count = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : 0;
    *n = 0;
    evh_http_field *out = calloc((size_t)count + 1, sizeof *out);
    if (!out)
        return NULL;
    const cJSON *pair;
    cJSON_ArrayForEach(pair, list)
    {
        const cJSON *name = cJSON_GetArrayItem(pair, 0), *value = cJSON_GetArrayItem(pair, 1);
        if (!cJSON_IsString(name) || !cJSON_IsString(value))
            continue;
        out[*n].name = name->valuestring;
        out[*n].value = value->valuestring;
        (*n)++;
    }
    return out;
}

static void *http_main(void *arg)
{
    iso_frame *f = arg;
    uint32_t id = (uint32_t)iso_int(f, "id", 0);
    cJSON *o = cJSON_CreateObject();
    if (o)
        cJSON_AddNumberToObject(o, "id", id);
    const evh_source *s = desc->source;
    if (!EVH_SOURCE_HAS(s, http) || !s->http || !f->head) {
        cJSON_AddNumberToObject(o, "rc", EVH_E_UNSUPPORTED);
        send_and_free(ISO_HTTP_REPLY, o, "", 0);
        iso_frame_free(f);
        free(f);
        helper_done();
        return NULL;
    }
    static const evh_http_field none[1] = {{"", ""}};
    uint32_t nh = 0, nq = 0;
    evh_http_field *headers = fields_of(f, "headers", &nh);
    evh_http_field *query = fields_of(f, "query", &nq);
    evh_http_request req = {.struct_size = sizeof req,
                            .n_headers = nh,
                            .method = str_or_empty(f, "method"),
                            .path = str_or_empty(f, "path"),
                            .headers = headers ? headers : none,
                            .query = query ? query : none,
                            .n_query = nq,
                            .body = f->raw ? f->raw : "",
                            .body_len = f->raw ? f->raw_len : 0,
                            .remote_addr = str_or_empty(f, "remote_addr")};
    evh_http_response res = {.struct_size = sizeof res, .status = 200};
    in_http = 1;
    int32_t rc = s->http(ctx, &req, &res);
    in_http = 0;
    free(headers);
    free(query);
    cJSON_AddNumberToObject(o, "rc", rc);
    cJSON_AddNumberToObject(o, "status", res.status);
    if (res.content_type)
        cJSON_AddStringToObject(o, "content_type", res.content_type);
    if (res.headers)
        cJSON_AddStringToObject(o, "headers", res.headers);
    size_t len = 0;
    if (res.body && rc == EVH_OK)
        len = res.body_len == 0 || res.body_len == EVH_NUL_TERMINATED ? strlen(res.body)
                                                                      : res.body_len;
    send_and_free(ISO_HTTP_REPLY, o, res.body && rc == EVH_OK ? res.body : "", len);
    free(res.body);
    free(res.headers);
    iso_frame_free(f);
    free(f);
    helper_done();
    return NULL;
}

/* On the reader thread; takes f. */
static void on_http(iso_frame *f)
{
    iso_frame *copy = malloc(sizeof *copy);
    pthread_mutex_lock(&state_lock);
    int ok = ready && copy && m->kind == EVH_KIND_SOURCE;
    if (ok)
        helpers++;
    pthread_mutex_unlock(&state_lock);
    if (ok) {
        *copy = *f;
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int started = pthread_create(&t, &attr, http_main, copy) == 0;
        pthread_attr_destroy(&attr);
        if (started)
            return;
        *f = *copy;
        helper_done();
    }
    free(copy);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)iso_int(f, "id", 0));
    cJSON_AddNumberToObject(o, "rc", ok ? EVH_E_NOMEM : EVH_E_STATE);
    send_and_free(ISO_HTTP_REPLY, o, "", 0);
    iso_frame_free(f);
}

/* ---- fini ----------------------------------------------------------------- */

static void do_fini(void)
{
    pthread_mutex_lock(&state_lock);
    while (helpers > 0)
        pthread_cond_wait(&state_cond, &state_lock);
    int call_fini = ready && (!run_started || run_done);
    pthread_mutex_unlock(&state_lock);
    if (run_started && run_done)
        pthread_join(run_thread, NULL);
    if (call_fini) {
        if (m->kind == EVH_KIND_SOURCE)
            desc->source->fini(ctx);
        else
            desc->step->fini(ctx);
    } else if (ready) {
        child_logf(EVH_LOG_ERROR, "fini skipped: run() is still in flight");
    }
    send_and_free(ISO_FINI_DONE, cJSON_CreateObject(), NULL, 0);
    _exit(0);
}

/* ---- the threads ---------------------------------------------------------- */

static void push_command(iso_frame *f)
{
    command *c = malloc(sizeof *c);
    if (!c) {
        iso_frame_free(f);
        _exit(70); /* out of memory: the host sees the exit and restarts us */
    }
    c->f = *f;
    c->next = NULL;
    pthread_mutex_lock(&state_lock);
    if (q_tail)
        q_tail->next = c;
    else
        q_head = c;
    q_tail = c;
    pthread_cond_broadcast(&state_cond);
    pthread_mutex_unlock(&state_lock);
}

static void *reader_main(void *arg)
{
    (void)arg;
    for (;;) {
        iso_frame f;
        int r = iso_recv(sock, &f, -1, 0);
        if (r != ISO_RECV_FRAME)
            _exit(0); /* the host closed the socket, or died: nothing to hand back */
        switch (f.type) {
        case ISO_REPLY:
            deliver_reply(&f);
            iso_frame_free(&f);
            break;
        case ISO_STOP:
            on_stop();
            iso_frame_free(&f);
            break;
        case ISO_HTTP:
            on_http(&f);
            break;
        default:
            push_command(&f);
        }
    }
    return NULL;
}

/* The fatal signals kill this process with their default action, so that
 * the host sees which one it was (a sanitizer runtime would otherwise catch
 * them and exit with a status instead). */
static void default_fatal_signals(void)
{
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
}

int plugin_child_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    default_fatal_signals();
    table_init();
    pthread_t reader;
    if (pthread_create(&reader, NULL, reader_main, NULL) != 0)
        _exit(71);
    for (;;) {
        pthread_mutex_lock(&state_lock);
        while (!q_head)
            pthread_cond_wait(&state_cond, &state_lock);
        command *c = q_head;
        q_head = c->next;
        if (!q_head)
            q_tail = NULL;
        pthread_mutex_unlock(&state_lock);
        switch (c->f.type) {
        case ISO_DESCRIBE:
            do_describe(&c->f);
            break;
        case ISO_INIT:
            if (!ready && !m)
                do_init(&c->f);
            else
                init_done(EVH_E_STATE, "initialized already");
            break;
        case ISO_VALIDATE:
            if (!ready && !m)
                do_validate(&c->f);
            else
                validate_done(EVH_E_STATE, NULL, "initialized already");
            break;
        case ISO_RUN:
            if (m && m->kind == EVH_KIND_SOURCE)
                do_source_run(&c->f);
            else
                do_step_run(&c->f);
            break;
        case ISO_FINI:
            do_fini();
            break;
        default:
            child_logf(EVH_LOG_WARN, "unexpected message type %u from the host",
                       (unsigned)c->f.type);
        }
        iso_frame_free(&c->f);
        free(c);
    }
}
