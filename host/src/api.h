/*
 * api.h - the REST API: what its handlers share, and its route tables.
 *
 * Each api_*.c file owns one group of endpoints and exports one route
 * table; api.c starts the HTTP server over all of them.  Handlers reach
 * the host only through api_ctx: the registry (plugins), the runtime (the
 * event queue), the engine (workflows and triggers in force) and database
 * connections from a small pool (one SQLite connection per concurrent
 * request, as store.h requires).
 */
#ifndef EVH_API_H
#define EVH_API_H

#include <pthread.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "engine.h"
#include "http.h"
#include "lifecycle.h"
#include "registry.h"
#include "runtime.h"
#include "store.h"

/* Idle connections to one database file, for the next request. */
typedef struct api_pool {
    pthread_mutex_t lock;
    store **idle;
    size_t count, cap;
} api_pool;

typedef struct api_ctx {
    runtime *rt;
    registry *reg;
    engine *eng;
    const evh_config *cfg;
    const char *db_path;
    const char *outbox_path; /* the webhook tables' file (store_outbox_path) */
    int synchronous_full;
    /* Rebuild workflows and triggers from their files and the
     * workflow_triggers table and put them in force (what SIGHUP does);
     * problems go to d.  Called after a trigger changes through the API. */
    int (*reload)(void *ud, diag *d);
    void *reload_ud;
    /* POST /api/plugins/reload: rescan the plugin directories and say what
     * changed (reloader_api, reload.h); NULL: not available (503). */
    cJSON *(*plugins_reload)(void *ud);
    void *plugins_reload_ud;
    int64_t started_ns; /* monotonic, for uptime */
    /* outbound webhooks (notify.h): told when a subscription changes; NULL
     * when the host runs without one */
    struct notifier *notify;
    /* the live stream's hub (stream.h, api_stream_hub_new); NULL: GET
     * /api/events/stream answers 503 */
    struct stream_hub *stream;
    /* the connection pools (api.c): the main database's, the outbox's */
    api_pool pool, outbox_pool;
} api_ctx;

/* Initialize the pool part of a (otherwise filled) api_ctx; free it. */
void api_ctx_init(api_ctx *a);
void api_ctx_release(api_ctx *a);

/* A database connection for this request; give it back with
 * api_store_release.  NULL (and a 503 answered) when it cannot be opened. */
store *api_store_acquire(api_ctx *a, http_response *res);
void api_store_release(api_ctx *a, store *st);
/* The same for the outbox file (subscriptions and deliveries). */
store *api_outbox_acquire(api_ctx *a, http_response *res);
void api_outbox_release(api_ctx *a, store *st);

/*
 * The body as a JSON object (size and depth bounded), or NULL after
 * answering 415 (a Content-Type other than JSON) or 400 (malformed, with
 * the line and column).  accept_cloudevents: also take
 * application/cloudevents+json.
 */
cJSON *api_body_object(const http_request *req, http_response *res, int accept_cloudevents);

/* Why a body was refused before its content was looked at. */
typedef struct api_refusal {
    int status;       /* 415 or 400 */
    const char *code; /* "unsupported_media_type", "malformed_json", "invalid" */
    char *message;    /* malloc'd (the caller frees it); NULL when out of memory */
} api_refusal;

/* api_body_object without the server: ctype is the Content-Type header (may
 * be NULL), body is borrowed.  NULL with *why filled when refused. */
cJSON *api_body_parse(const char *ctype, const char *body, size_t len, int accept_cloudevents,
                      api_refusal *why);
/* Answer why's status, code and message (500 when the message is NULL). */
void api_respond_refusal(http_response *res, const api_refusal *why);

/* A query argument as a page size: 0 when absent; -1 after answering 400. */
long api_query_limit(const http_request *req, http_response *res);

/* The string at key of o, or NULL (absent or not a string). */
const char *api_str(const cJSON *o, const char *key);

/* Answer status/code with the one detail {path, reason}; the message is
 * "<path>: <reason>" unless message is given. */
void api_respond_one(http_response *res, int status, const char *code, const char *path,
                     const char *reason, const char *message);

/* 400 "invalid" with every problem of d as details; the message repeats the
 * first one ("<what> is not valid: <path>: <reason> (and N more)") so that a
 * curl user sees it without reading the details. */
void api_respond_invalid(http_response *res, const diag *d, const char *what);

/* 500 after a database failure, logged, with store_errmsg(st). */
void api_respond_store_error(http_response *res, store *st, const char *what);

/* Answer 200 {"items": [...], "next_cursor": "..." | null} (takes both). */
void api_respond_page(http_response *res, cJSON *items, char *next_cursor);

/* Answer a store list call: its page; or, when it returned NULL with errno
 * EINVAL, 400 naming the filter (store_errmsg(st) is "<filter>: <reason>",
 * the filters named as the query parameters are); else 500 (what failed). */
void api_respond_list(http_response *res, store *st, cJSON *items, char *next_cursor, int err,
                      const char *what);

/* Start the server on cfg's listen address over every route table. */
http_server *api_start(api_ctx *a, char **err);

/* ---- the route tables (each ends with {0}) ------------------------------- */

extern const http_route api_routes_events[];     /* api_events.c */
extern const http_route api_routes_plugins[];    /* api_plugins.c */
extern const http_route api_routes_triggers[];   /* api_triggers.c: triggers, workflows */
extern const http_route api_routes_executions[]; /* api_executions.c */
extern const http_route api_routes_health[];     /* api_health.c: health, ready, metrics */
extern const http_route api_routes_subscriptions[]; /* api_subscriptions.c: webhooks */
extern const http_route api_routes_console[];    /* api_console.c: the web console (public) */
extern const http_route api_routes_stream[];     /* api_stream.c: the live lifecycle stream */

/* The live stream's hub with cfg's server.max_streams and server.stream_*
 * settings, over lc (api_stream.c); free it with stream_hub_free after the
 * pipeline stopped and before lc goes.  NULL on out-of-memory. */
struct stream_hub *api_stream_hub_new(const evh_config *cfg, lifecycle *lc);

/* Requests to a path no table has: plugin webhook endpoints (api_plugins.c). */
int api_plugin_route(void *ctx, const http_request *req, http_response *res);

#endif
