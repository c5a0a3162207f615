/*
 * api.c - the REST API's shared parts (see api.h).
 */
#include "api.h"

#include <errno.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <evhost/evhost.h>

#include "evh_limits.h"
#include "jsonutil.h"
#include "log.h"
#include "system_events.h"

static void pool_init(api_pool *p)
{
    pthread_mutex_init(&p->lock, NULL);
    p->idle = NULL;
    p->count = p->cap = 0;
}

static void pool_release(api_pool *p)
{
    for (size_t i = 0; i < p->count; i++)
        store_close(p->idle[i]);
    free(p->idle);
    p->idle = NULL;
    p->count = p->cap = 0;
    pthread_mutex_destroy(&p->lock);
}

void api_ctx_init(api_ctx *a)
{
    pool_init(&a->pool);
    pool_init(&a->outbox_pool);
}

void api_ctx_release(api_ctx *a)
{
    pool_release(&a->pool);
    pool_release(&a->outbox_pool);
}

/* An idle connection of p, or a new one to path. */
static store *pool_take(api_pool *p, const char *path, int outbox, int synchronous_full,
                        http_response *res)
{
    pthread_mutex_lock(&p->lock);
    store *st = p->count ? p->idle[--p->count] : NULL;
    pthread_mutex_unlock(&p->lock);
    if (st)
        return st;
    store_options so = {.path = path, .synchronous_full = synchronous_full, .outbox = outbox};
    char *err = NULL;
    if (store_open(&so, &st, &err) != EVH_OK) {
        log_error("api", "database '%s': %s", path ? path : "(none)", err ? err : "cannot open");
        if (res)
            http_respond_error(res, 503, "unavailable", NULL, "the database cannot be opened");
        free(err);
        return NULL;
    }
    return st;
}

static void pool_give(api_pool *p, store *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&p->lock);
    if (p->count == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        store **idle = realloc(p->idle, cap * sizeof *idle);
        if (!idle) {
            pthread_mutex_unlock(&p->lock);
            store_close(st);
            return;
        }
        p->idle = idle;
        p->cap = cap;
    }
    p->idle[p->count++] = st;
    pthread_mutex_unlock(&p->lock);
}

store *api_store_acquire(api_ctx *a, http_response *res)
{
    return pool_take(&a->pool, a->db_path, 0, a->synchronous_full, res);
}

void api_store_release(api_ctx *a, store *st)
{
    pool_give(&a->pool, st);
}

store *api_outbox_acquire(api_ctx *a, http_response *res)
{
    return pool_take(&a->outbox_pool, a->outbox_path, 1, a->synchronous_full, res);
}

void api_outbox_release(api_ctx *a, store *st)
{
    pool_give(&a->outbox_pool, st);
}

/* "application/json; charset=utf-8" -> matches "application/json". */
static int media_type_is(const char *header, const char *type)
{
    size_t n = strlen(type);
    return header && !strncasecmp(header, type, n) && (header[n] == '\0' || header[n] == ';' ||
                                                       header[n] == ' ');
}

cJSON *api_body_parse(const char *ctype, const char *body, size_t len, int accept_cloudevents,
                      api_refusal *why)
{
    why->message = NULL;
    if (!media_type_is(ctype, "application/json") &&
        !(accept_cloudevents && media_type_is(ctype, "application/cloudevents+json"))) {
        why->status = 415;
        why->code = "unsupported_media_type";
        if (asprintf(&why->message, "send the body as application/json%s (got %s)",
                     accept_cloudevents ? " or application/cloudevents+json" : "",
                     ctype ? ctype : "no Content-Type") < 0)
            why->message = NULL;
        return NULL;
    }
    char err[160];
    cJSON *doc = json_parse_limited(body, len, (size_t)-1, EVH_JSON_MAX_DEPTH, err, sizeof err);
    if (!doc) {
        why->status = 400;
        why->code = "malformed_json";
        if (asprintf(&why->message, "the body is not valid JSON: %s", err) < 0)
            why->message = NULL;
        return NULL;
    }
    if (!cJSON_IsObject(doc)) {
        why->status = 400;
        why->code = "invalid";
        if (asprintf(&why->message, "the body must be a JSON object, got %s",
                     json_type_name(doc)) < 0)
            why->message = NULL;
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

void api_respond_refusal(http_response *res, const api_refusal *why)
{
    if (why->message)
        http_respond_error(res, why->status, why->code, NULL, "%s", why->message);
    else
        http_respond_error(res, 500, "internal", NULL, "out of memory");
}

cJSON *api_body_object(const http_request *req, http_response *res, int accept_cloudevents)
{
    size_t len = 0;
    const char *body = http_body(req, &len);
    api_refusal why;
    cJSON *doc = api_body_parse(http_header(req, "Content-Type"), body, len, accept_cloudevents,
                                &why);
    if (!doc) {
        api_respond_refusal(res, &why);
        free(why.message);
    }
    return doc;
}

long api_query_limit(const http_request *req, http_response *res)
{
    const char *v = http_query(req, "limit");
    if (!v)
        return 0;
    char *end;
    long n = strtol(v, &end, 10);
    if (!*v || *end || n < 1 || n > STORE_LIST_MAX_LIMIT) {
        /* a detail with the parameter, as for every other query value: a
         * client shows details[].path, and an empty list said nothing */
        diag d;
        diag_init(&d, NULL);
        diag_add(&d, "limit", "'%s' is not a number from 1 to %d", v, STORE_LIST_MAX_LIMIT);
        http_respond_error(res, 400, "invalid", &d, "limit: '%s' is not a number from 1 to %d", v,
                           STORE_LIST_MAX_LIMIT);
        diag_free(&d);
        return -1;
    }
    return n;
}

const char *api_str(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

void api_respond_one(http_response *res, int status, const char *code, const char *path,
                     const char *reason, const char *message)
{
    diag d;
    diag_init(&d, NULL);
    diag_add(&d, path, "%s", reason);
    if (message)
        http_respond_error(res, status, code, &d, "%s", message);
    else
        http_respond_error(res, status, code, &d, "%s: %s", path, reason);
    diag_free(&d);
}

void api_respond_invalid(http_response *res, const diag *d, const char *what)
{
    const diag_item *first = d->count ? &d->items[0] : NULL;
    size_t more = d->count + d->dropped - (first ? 1 : 0);
    char tail[48] = "";
    if (more)
        snprintf(tail, sizeof tail, " (and %zu more)", more);
    http_respond_error(res, 400, "invalid", d, "%s is not valid: %s%s%s%s", what,
                       first ? first->path : "", first && first->path[0] ? ": " : "",
                       first ? first->reason : "?", tail);
}

void api_respond_store_error(http_response *res, store *st, const char *what)
{
    log_error("api", "%s: %s", what, store_errmsg(st));
    http_respond_error(res, 500, "internal", NULL, "%s failed: %s", what, store_errmsg(st));
}

void api_respond_list(http_response *res, store *st, cJSON *items, char *next_cursor, int err,
                      const char *what)
{
    if (items) {
        api_respond_page(res, items, next_cursor);
        return;
    }
    free(next_cursor);
    if (err != EINVAL) {
        api_respond_store_error(res, st, what);
        return;
    }
    const char *msg = store_errmsg(st);
    const char *colon = strstr(msg, ": ");
    char *param = colon ? strndup(msg, (size_t)(colon - msg)) : NULL;
    api_respond_one(res, 400, "invalid", param ? param : "", colon ? colon + 2 : msg, msg);
    free(param);
}

void api_respond_page(http_response *res, cJSON *items, char *next_cursor)
{
    cJSON *page = cJSON_CreateObject();
    cJSON_AddItemToObject(page, "items", items);
    cJSON_AddItemToObject(page, "next_cursor",
                          next_cursor ? cJSON_CreateString(next_cursor) : cJSON_CreateNull());
    free(next_cursor);
    http_respond_json(res, 200, page);
}

/* Every request an API key let in: the system source's user_login. */
static void on_authenticated(void *ctx, const char *key_name)
{
    (void)ctx;
    system_events_user_login(key_name);
}

http_server *api_start(api_ctx *a, char **err)
{
    /* the stream before the events: /api/events/{id} would take it */
    static const http_route *const tables[] = {
        api_routes_health,    api_routes_stream,     api_routes_events,
        api_routes_plugins,   api_routes_triggers,   api_routes_executions,
        api_routes_console,   api_routes_subscriptions, NULL};
    const evh_config *c = a->cfg;
    http_options o = {.host = c->listen_host,
                      .port = c->listen_port,
                      .max_body = c->max_body_bytes,
                      .max_connections = c->max_connections,
                      .timeout_s = c->connection_timeout_s,
                      .keys = c->api_keys,
                      .n_keys = c->n_api_keys,
                      .on_authenticated = on_authenticated};
    return http_start(&o, tables, api_plugin_route, a, err);
}
