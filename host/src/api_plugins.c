/*
 * api_plugins.c - event sources and workflow steps as the registry knows
 * them, loaded or not (GET /api/event-sources, /api/steps and one of each),
 * and the plugin webhook endpoints: requests to a source's
 * "webhookEndpoint" go to its http callback (evh_source.http, ABI 1.1).
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <evhost/evhost.h>

#include "event.h"
#include "evh_limits.h"
#include "hostapi.h"
#include "isolate.h"
#include "log.h"

/* ---- plugin records as JSON --------------------------------------------- */

static cJSON *string_or_null(const char *s)
{
    return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

static cJSON *copy_or_null(const cJSON *v)
{
    return v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull();
}

/* [{type, label, description, schema}]; schema null when none. */
static cJSON *event_types_json(const manifest *m)
{
    cJSON *list = cJSON_CreateArray();
    for (size_t i = 0; m && i < m->n_event_types; i++) {
        const manifest_event_type *t = &m->event_types[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "type", string_or_null(t->type));
        cJSON_AddItemToObject(o, "label", string_or_null(t->label));
        cJSON_AddItemToObject(o, "description", string_or_null(t->description));
        cJSON_AddItemToObject(o, "schema", copy_or_null(t->schema_json));
        cJSON_AddItemToArray(list, o);
    }
    return list;
}

/*
 * One plugin: {id, name, description, version, abi, status, state, error,
 * isolation, crashes {count, limit, window_s, last}, webhookEndpoint
 * (sources), eventTypes, configSchema}.  A plugin whose
 * plugin.json failed has only {id (its folder name), state, error}.  The
 * plugin's configuration is never shown: it may hold secrets.
 */
static cJSON *plugin_json(const plugin *p)
{
    const manifest *m = p->m;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "id", string_or_null(p->id));
    if (m) {
        char abi[16];
        snprintf(abi, sizeof abi, "%u.%u", m->abi_major, m->abi_minor);
        cJSON_AddItemToObject(o, "name", string_or_null(m->name));
        cJSON_AddItemToObject(o, "description", string_or_null(m->description));
        cJSON_AddItemToObject(o, "version", string_or_null(m->version));
        cJSON_AddStringToObject(o, "abi", abi);
        cJSON_AddStringToObject(o, "status", m->active ? "active" : "inactive");
    }
    cJSON_AddStringToObject(o, "state", plugin_state_name(p->state));
    /* crash isolation (isolate.h): how it runs, its crashes, and why it is
     * quarantined (a quarantine while running leaves p->error alone) */
    isolate_status iso;
    isolate_plugin_status(p, &iso);
    cJSON_AddItemToObject(o, "error", string_or_null(iso.quarantined ? iso.reason : p->error));
    if (m) {
        cJSON_AddStringToObject(o, "isolation", iso.isolation);
        cJSON *crashes = cJSON_AddObjectToObject(o, "crashes");
        cJSON_AddNumberToObject(crashes, "count", iso.crashes);
        cJSON_AddNumberToObject(crashes, "limit", iso.limit);
        cJSON_AddNumberToObject(crashes, "window_s", iso.window_s);
        cJSON_AddItemToObject(crashes, "last", string_or_null(iso.crashes ? iso.last_crash : NULL));
    }
    if (p->reload_error) /* a new version failed; this one stays (reload.h) */
        cJSON_AddStringToObject(o, "reloadError", p->reload_error);
    if (m) {
        if (m->kind == EVH_KIND_SOURCE)
            cJSON_AddItemToObject(o, "webhookEndpoint", string_or_null(m->webhook_endpoint));
        cJSON_AddItemToObject(o, "eventTypes", event_types_json(m));
        cJSON_AddItemToObject(o, "configSchema", copy_or_null(m->config_schema_json));
    }
    return o;
}

/* Whether p belongs in the list of `kind`.  A plugin whose plugin.json
 * could not be read has no known kind: it is in both lists, so that a UI
 * looking for it finds it with its error. */
static int of_kind(const plugin *p, int kind)
{
    return p->kind == kind || p->kind == 0;
}

/* The record with this id in the list of `kind`: a usable one first (a
 * failed duplicate may share the id), else a failed one. */
static const plugin *find_plugin(const registry *r, const char *id, int kind)
{
    const plugin *failed = NULL;
    for (size_t i = 0; r && id && i < r->count; i++) {
        const plugin *p = r->items[i];
        if (!p->id || strcmp(p->id, id) != 0 || !of_kind(p, kind))
            continue;
        if (p->state != PLUGIN_FAILED)
            return p;
        if (!failed)
            failed = p;
    }
    return failed;
}

static const char *kind_noun(int kind)
{
    return kind == EVH_KIND_SOURCE ? "event source" : "workflow step";
}

static void list_kind(api_ctx *a, int kind, http_response *res)
{
    cJSON *items = cJSON_CreateArray();
    if (a->reg)
        registry_rdlock(a->reg); /* hot reload may change it meanwhile */
    for (size_t i = 0; a->reg && i < a->reg->count; i++) {
        if (of_kind(a->reg->items[i], kind))
            cJSON_AddItemToArray(items, plugin_json(a->reg->items[i]));
    }
    if (a->reg)
        registry_unlock(a->reg);
    api_respond_page(res, items, NULL); /* never paged: next_cursor null */
}

/* The record named by {id}, or NULL after answering 404 (which says so
 * when the id is a plugin of the other kind). */
static const plugin *lookup(api_ctx *a, const http_request *req, int kind,
                            http_response *res)
{
    const char *id = http_param(req, "id");
    const plugin *p = find_plugin(a->reg, id, kind);
    if (p)
        return p;
    int other = kind == EVH_KIND_SOURCE ? EVH_KIND_STEP : EVH_KIND_SOURCE;
    if (find_plugin(a->reg, id, other))
        http_respond_error(res, 404, "not_found", NULL, "no %s '%s' ('%s' is %s %s: see %s/%s)",
                           kind_noun(kind), id, id, other == EVH_KIND_SOURCE ? "an" : "a",
                           kind_noun(other),
                           other == EVH_KIND_SOURCE ? "/api/event-sources" : "/api/steps", id);
    else
        http_respond_error(res, 404, "not_found", NULL, "no %s '%s'", kind_noun(kind), id);
    return NULL;
}

/* lookup and what follows under the registry's read lock (hot reload) */
static void lock_reg(void *ctx)
{
    api_ctx *a = ctx;
    if (a->reg)
        registry_rdlock(a->reg);
}

static void unlock_reg(void *ctx)
{
    api_ctx *a = ctx;
    if (a->reg)
        registry_unlock(a->reg);
}

static void get_one(void *ctx, const http_request *req, http_response *res, int kind)
{
    lock_reg(ctx);
    const plugin *p = lookup(ctx, req, kind, res);
    cJSON *o = p ? plugin_json(p) : NULL;
    unlock_reg(ctx);
    if (p)
        http_respond_json(res, 200, o);
}

/* Its eventTypes as a list ({"items": [...], "next_cursor": null}); empty
 * for a plugin whose plugin.json failed. */
static void get_events(void *ctx, const http_request *req, http_response *res, int kind)
{
    lock_reg(ctx);
    const plugin *p = lookup(ctx, req, kind, res);
    cJSON *list = p ? event_types_json(p->m) : NULL;
    unlock_reg(ctx);
    if (p)
        api_respond_page(res, list, NULL);
}

static void list_sources(void *ctx, const http_request *req, http_response *res)
{
    (void)req;
    list_kind(ctx, EVH_KIND_SOURCE, res);
}

static void get_source(void *ctx, const http_request *req, http_response *res)
{
    get_one(ctx, req, res, EVH_KIND_SOURCE);
}

static void get_source_events(void *ctx, const http_request *req, http_response *res)
{
    get_events(ctx, req, res, EVH_KIND_SOURCE);
}

static void list_steps(void *ctx, const http_request *req, http_response *res)
{
    (void)req;
    list_kind(ctx, EVH_KIND_STEP, res);
}

static void get_step(void *ctx, const http_request *req, http_response *res)
{
    get_one(ctx, req, res, EVH_KIND_STEP);
}

static void get_step_events(void *ctx, const http_request *req, http_response *res)
{
    get_events(ctx, req, res, EVH_KIND_STEP);
}

/* POST /api/plugins/reload: rescan the plugin directories now (what the
 * watcher does on a change, and SIGHUP) and answer what changed. */
static void post_reload(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    (void)req;
    if (!a->plugins_reload) {
        http_respond_error(res, 503, "unavailable", NULL,
                           "this process does not reload plugins");
        return;
    }
    cJSON *report = a->plugins_reload(a->plugins_reload_ud);
    if (!report) {
        http_respond_error(res, 500, "internal", NULL, "out of memory");
        return;
    }
    http_respond_json(res, 200, report);
}

const http_route api_routes_plugins[] = {
    {"POST", "/api/plugins/reload", post_reload, 0},
    {"GET", "/api/event-sources", list_sources, 0},
    {"GET", "/api/event-sources/{id}", get_source, 0},
    {"GET", "/api/event-sources/{id}/events", get_source_events, 0},
    {"GET", "/api/steps", list_steps, 0},
    {"GET", "/api/steps/{id}", get_step, 0},
    {"GET", "/api/steps/{id}/events", get_step_events, 0},
    {0},
};

/* ---- webhook endpoints -------------------------------------------------- */

/* Headers or query arguments for evh_http_request; the texts are the
 * server's, valid for the request. */
typedef struct field_list {
    evh_http_field *items;
    size_t n, cap;
    int oom;
} field_list;

static int collect_field(void *ud, const char *name, const char *value)
{
    field_list *l = ud;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        evh_http_field *grown = realloc(l->items, cap * sizeof *grown);
        if (!grown) {
            l->oom = 1;
            return 1;
        }
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n].name = name ? name : "";
    l->items[l->n].value = value ? value : "";
    l->n++;
    return 0;
}

/*
 * The source whose webhookEndpoint takes this path and that can take calls
 * (initialized: ready or running).  Of several matching endpoints the most
 * specific one wins (manifest_endpoint_rank: an exact "/api/webhooks/github"
 * over a prefix "/api/webhooks/"), so a source claiming a whole prefix does
 * not shadow the endpoints of others below it.  *idle receives the matching
 * source that cannot take calls (failed, inactive, stopped) when it is the
 * most specific, for the 503: a request meant for it must not reach a
 * prefix endpoint instead.
 */
static plugin *find_endpoint(const registry *r, const char *path, const plugin **idle)
{
    plugin *best = NULL;
    unsigned best_rank = 0, idle_rank = 0;
    for (size_t i = 0; r && i < r->count; i++) {
        plugin *p = r->items[i];
        if (p->kind != EVH_KIND_SOURCE || !p->m || !p->m->webhook_endpoint ||
            !manifest_endpoint_matches(p->m->webhook_endpoint, path))
            continue;
        unsigned rank = manifest_endpoint_rank(p->m->webhook_endpoint);
        if ((p->state == PLUGIN_READY || p->state == PLUGIN_RUNNING) && p->host && p->desc) {
            if (rank > best_rank) {
                best = p;
                best_rank = rank;
            }
        } else if (rank > idle_rank) {
            *idle = p;
            idle_rank = rank;
        }
    }
    if (best && idle_rank > best_rank)
        return NULL; /* the source meant for it is not running */
    if (best)
        *idle = NULL;
    return best;
}

/* RFC 9110 token characters (header names). */
static int is_token(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", c))
            return 0;
    }
    return 1;
}

/* A header value a response may carry: no control character but tab. */
static int is_field_value(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

/* Headers whose value the server decides. */
static int host_owned(const char *name)
{
    static const char *const owned[] = {"Content-Type", "Content-Length", "Transfer-Encoding",
                                        "Connection", "Date"};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) {
        if (!strcasecmp(name, owned[i]))
            return 1;
    }
    return 0;
}

/* res->headers of the plugin ("Name: value" lines) into res; the text is
 * ours (api->alloc) and cut up in place. */
static void add_plugin_headers(const plugin *p, char *text, http_response *res)
{
    size_t dropped = 0;
    for (char *line = text; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r')
            line[--len] = '\0';
        if (len) {
            char *colon = strchr(line, ':');
            char *value = colon ? colon + 1 : NULL;
            if (colon)
                *colon = '\0';
            while (value && (*value == ' ' || *value == '\t'))
                value++;
            size_t vlen = value ? strlen(value) : 0;
            while (vlen && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
                value[--vlen] = '\0';
            if (!value || !is_token(line, strlen(line)) || !is_field_value(value) ||
                host_owned(line) || res->n_headers == HTTP_MAX_RESPONSE_HEADERS)
                dropped++;
            else
                http_response_header(res, line, value);
        }
        line = next;
    }
    if (dropped)
        log_warn("api", "plugin '%s': %zu response header line(s) dropped: not \"Name: value\", "
                 "a header the host sets, or more than fit", p->id, dropped);
}

/* The plugin's answer (status checked) into res; takes out's memory. */
static void convert_answer(const plugin *p, evh_http_response *out, http_response *res)
{
    if (out->status < 200 || out->status > 599) {
        log_warn("api", "plugin '%s': http answered status %d, not 200..599", p->id,
                 (int)out->status);
        free(out->body);
        free(out->headers);
        http_respond_error(res, 500, "plugin_error", NULL,
                           "event source '%s' answered an invalid HTTP status (%d)", p->id,
                           (int)out->status);
        return;
    }
    size_t len = 0;
    if (out->body)
        len = out->body_len == 0 || out->body_len == EVH_NUL_TERMINATED ? strlen(out->body)
                                                                         : out->body_len;
    /* api->alloc is malloc: the server frees the body when it is sent */
    http_respond_raw(res, (int)out->status, NULL, out->body, len);
    const char *ctype = out->content_type;
    if (ctype && (!*ctype || !is_field_value(ctype))) {
        log_warn("api", "plugin '%s': content_type is not a valid header value; ignored",
                 p->id);
        ctype = NULL;
    }
    if (ctype || len)
        http_response_header(res, "Content-Type", ctype ? ctype : "application/octet-stream");
    if (out->headers)
        add_plugin_headers(p, out->headers, res);
    free(out->headers);
}

/* Call p's http callback with the request. */
static void call_plugin(plugin *p, const http_request *req, http_response *res)
{
    static const evh_http_field none[1] = {{"", ""}};
    field_list headers = {0}, query = {0};
    http_each_header(req, collect_field, &headers);
    http_each_query(req, collect_field, &query);
    if (headers.oom || query.oom) {
        free(headers.items);
        free(query.items);
        http_respond_error(res, 503, "unavailable", NULL, "out of memory");
        return;
    }
    char addr[64];
    size_t body_len = 0;
    const char *body = http_body(req, &body_len);
    evh_http_request in = {
        .struct_size = sizeof in,
        .n_headers = (uint32_t)headers.n,
        .method = http_method(req),
        .path = http_path(req),
        .headers = headers.items ? headers.items : none,
        .query = query.items ? query.items : none,
        .n_query = (uint32_t)query.n,
        .body = body,
        .body_len = body_len,
        .remote_addr = http_remote_addr(req, addr, sizeof addr),
    };
    evh_http_response out = {.struct_size = sizeof out, .status = 200};
    int64_t t0 = monotonic_ns();
    /* emit from the callback returns once the event is stored, so that a
     * 2xx the plugin answers after it means durable (senders do not retry) */
    int was = hostapi_durable_emit(1);
    int32_t rc = p->desc->source->http(p->ctx, &in, &out);
    hostapi_durable_emit(was);
    int64_t ms = (monotonic_ns() - t0) / 1000000;
    free(headers.items);
    free(query.items);
    if (ms > EVH_PLUGIN_HTTP_SLOW_MS)
        log_warn("api", "plugin '%s': http took %lld ms for %s %s; answer fast and leave slow "
                 "work to run()", p->id, (long long)ms, in.method, in.path);
    if (rc != EVH_OK) {
        free(out.body);
        free(out.headers);
        log_warn("api", "plugin '%s': http failed for %s %s: %s (%s)", p->id, in.method,
                 in.path, evh_status_message(rc), evh_status_name(rc));
        http_respond_error(res, 500, "plugin_error", NULL,
                           "event source '%s' failed to handle the request: %s (%s)", p->id,
                           evh_status_name(rc), evh_status_message(rc));
        return;
    }
    convert_answer(p, &out, res);
    log_debug("api", "%s %s -> %d (plugin '%s', %lld ms)", in.method, in.path, res->status,
              p->id, (long long)ms);
}

/*
 * The server's fallback for paths no route table knows.  It runs before and
 * without the API-key check (see http_fallback in http.h): webhook senders
 * cannot send our key, so plugins authenticate their requests themselves
 * (documented in evhost.h and docs/plugin-authors.md).
 */
int api_plugin_route(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    const char *path = http_path(req);
    const plugin *idle = NULL;
    if (!a->reg)
        return 0;
    /* the source is held (a reference) for the call: a hot reload that
     * replaces it meanwhile finalizes it only after the call returned */
    registry_rdlock(a->reg);
    plugin *p = find_endpoint(a->reg, path, &idle);
    if (!p) {
        if (idle)
            http_respond_error(res, 503, "unavailable", NULL,
                               "event source '%s' behind %s is not running (state %s)",
                               idle->id, path, plugin_state_name(idle->state));
        registry_unlock(a->reg);
        return idle ? 1 : 0; /* 0: the server's 404 */
    }
    const evh_source *src = p->desc->source;
    if (!EVH_SOURCE_HAS(src, http) || !src->http) {
        http_respond_error(res, 501, "not_implemented", NULL,
                           "event source '%s' declares webhookEndpoint %s but does not handle "
                           "HTTP requests: its library has no http callback (SDK ABI 1.1)",
                           p->id, p->m->webhook_endpoint);
        registry_unlock(a->reg);
        return 1;
    }
    plugin_acquire(p);
    registry_unlock(a->reg);
    call_plugin(p, req, res);
    plugin_release(p);
    return 1;
}
