/*
 * api_events.c - POST /api/events/process, GET /api/events, GET /api/events/{id}.
 *
 * POST takes one event in any of three shapes (event_request.h reads them,
 * without the server) and turns each into the same call, hostapi_ingest:
 * the checks a plugin's emit goes through, so the source's manifest alone
 * says which types and data are valid.  The request's shape is checked
 * first, every problem into one diag, so a client fixes everything in one
 * round; then ingest adds the type and schema problems.  202 comes only
 * once the event is committed.
 */
#include "api.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evhost/evhost.h>

#include "diag.h"
#include "event.h"
#include "event_request.h"
#include "hostapi.h"
#include "jsonutil.h"
#include "log.h"

#define QUOTE_MAX 64         /* how much of a client value a message repeats */
#define RETRY_FULL_S "1"     /* Retry-After of 429: the queue drains fast */
#define RETRY_STOPPING_S "5" /* Retry-After of 503 while the host stops */

/* One event to ingest, whatever shape it came in, and its source. */
typedef struct inbound {
    event_request r;   /* what the request says */
    const manifest *m; /* the source's, once found */
    plugin *held;      /* its record, referenced (hot reload) */
} inbound;

/* ---- the checks that need the host -------------------------------------------- */

/* "'t' is not an event type of source 's' (declared: a, b)" at in->r.type_path. */
static void type_problem(diag *d, const inbound *in)
{
    char declared[256] = "";
    for (size_t i = 0; i < in->m->n_event_types; i++) {
        size_t len = strlen(declared);
        snprintf(declared + len, sizeof declared - len, "%s%s", i ? ", " : "",
                 in->m->event_types[i].type);
    }
    diag_add(d, in->r.type_path, "'%.*s' is not an event type of source '%s' (declared: %s)",
             QUOTE_MAX, in->r.event_type, in->m->id, declared);
}

/* The source must be a loaded event source.  The event type is checked here
 * only when the request is refused anyway (so all its problems show at
 * once); otherwise ingest checks it, counting the refusal. */
static void find_source(api_ctx *a, inbound *in, diag *d)
{
    if (!in->r.source)
        return;
    /* a reference: the manifest stays valid until the event is queued,
     * even if a hot reload replaces the source meanwhile */
    plugin *p = registry_acquire(a->reg, in->r.source);
    in->held = p;
    if (!p || !p->m)
        diag_add(d, in->r.source_path, "'%.*s' is not a loaded event source", QUOTE_MAX,
                 in->r.source);
    else if (p->kind != EVH_KIND_SOURCE)
        diag_add(d, in->r.source_path, "'%s' is a workflow step, not an event source", p->id);
    else if (p->state == PLUGIN_INACTIVE)
        diag_add(d, in->r.source_path, "event source '%s' is inactive (its plugin.json says so)",
                 p->id);
    else
        in->m = p->m;
    if (d->count && in->m && in->r.event_type && !manifest_find_type(in->m, in->r.event_type))
        type_problem(d, in);
}

/* ---- answers ---------------------------------------------------------------------- */

static void respond_invalid(http_response *res, const diag *d)
{
    const diag_item *first = &d->items[0];
    http_respond_error(res, 400, "invalid_event", d, "the event is refused: %s%s%s%s", first->path,
                       *first->path ? ": " : "", first->reason,
                       d->count > 1 ? " (and more: see details)" : "");
}

static void respond_id(http_response *res, int status, const char *id, const char *what)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "status", what);
    http_respond_json(res, status, o);
    char location[64];
    snprintf(location, sizeof location, "/api/events/%s", id);
    http_response_header(res, "Location", location);
}

/* When the key is stored already, answer 200 with the first event's id and
 * return 1; also 1 after answering 503 (no database).  0: key not seen. */
static int answered_duplicate(api_ctx *a, const char *key, http_response *res)
{
    store *st = api_store_acquire(a, res);
    if (!st)
        return 1;
    char id[EVH_UUID_LEN + 1];
    int rc = store_event_find_by_key(st, key, id);
    if (rc != EVH_OK && rc != EVH_E_NOT_FOUND)
        log_warn("api", "looking up an idempotency key: %s", store_errmsg(st));
    api_store_release(a, st);
    if (rc != EVH_OK)
        return 0;
    respond_id(res, 200, id, "duplicate");
    return 1;
}

static void respond_ingest_error(api_ctx *a, const inbound *in, int rc, const diag *problems,
                                 http_response *res)
{
    diag d;
    diag_init(&d, NULL);
    switch (rc) {
    case EVH_E_DUPLICATE: /* a concurrent request with the same key won */
        if (!answered_duplicate(a, in->r.key, res))
            http_respond_error(res, 500, "internal", NULL,
                               "the idempotency key was refused as a duplicate, but its event "
                               "cannot be found");
        break;
    case EVH_E_UNDECLARED_TYPE:
    case EVH_E_SCHEMA:
    case EVH_E_INVALID:
        for (size_t i = 0; i < problems->count; i++) {
            if (!strcmp(problems->items[i].path, "event_type"))
                type_problem(&d, in); /* names the request's field, not the manifest's file */
            else
                diag_add(&d, problems->items[i].path, "%s", problems->items[i].reason);
        }
        if (!d.count)
            diag_add(&d, "", "%s", evh_status_message(rc));
        respond_invalid(res, &d);
        break;
    case EVH_E_QUEUE_FULL:
        http_respond_error(res, 429, "queue_full", NULL,
                           "the event queue is full: retry after %s second(s)", RETRY_FULL_S);
        http_response_header(res, "Retry-After", RETRY_FULL_S);
        break;
    case EVH_E_STOPPING:
        http_respond_error(res, 503, "stopping", NULL, "the host is stopping: retry later");
        http_response_header(res, "Retry-After", RETRY_STOPPING_S);
        break;
    case EVH_E_IO:
        http_respond_error(res, 503, "unavailable", NULL,
                           "the event could not be stored: retry later");
        http_response_header(res, "Retry-After", RETRY_FULL_S);
        break;
    default:
        http_respond_error(res, 500, "internal", NULL, "ingest failed: %s", evh_status_message(rc));
    }
    diag_free(&d);
}

/* An accepted event waiting for its commit.  The request is deferred
 * (http_defer), so no server thread waits: every request that arrives
 * while the writer commits joins the next commit, and a few server threads
 * serve thousands of concurrent ingests.  Two parties arrive, the handler
 * once it has queued the event and the writer once it committed it; the
 * second one wakes the request, whose answer (ingest_answer) then reads
 * the outcome. */
typedef struct pending_ingest {
    evh_ack ack;
    http_deferred *deferred;
    atomic_int arrivals;
    char id[EVH_UUID_LEN + 1];
    char *key; /* the Idempotency-Key, for a duplicate's answer */
} pending_ingest;

static void pending_arrive(pending_ingest *p)
{
    if (atomic_fetch_add(&p->arrivals, 1) == 1)
        http_wake(p->deferred);
}

static void ingest_committed(evh_ack *ack)
{
    pending_arrive(ack->arg);
}

static void ingest_answer(void *ctx, const http_request *req, http_response *res, void *arg)
{
    pending_ingest *p = arg;
    (void)req;
    if (res && p->ack.rc == EVH_OK) {
        respond_id(res, 202, p->id, "accepted");
    } else if (res) {
        inbound in = {.r = {.key = p->key}};
        diag none;
        diag_init(&none, NULL);
        respond_ingest_error(ctx, &in, p->ack.rc, &none, res);
        diag_free(&none);
    }
    free(p->key);
    free(p);
}

static void ingest(api_ctx *a, const http_request *req, const inbound *in, http_response *res)
{
    char *data = in->r.data ? cJSON_PrintUnformatted(in->r.data) : strdup("{}");
    char *extra = in->r.additional ? cJSON_PrintUnformatted(in->r.additional) : NULL;
    pending_ingest *p = data && (!in->r.additional || extra) ? calloc(1, sizeof *p) : NULL;
    if (p && in->r.key && !(p->key = strdup(in->r.key))) {
        free(p);
        p = NULL;
    }
    /* deferred first: the commit may come before hostapi_ingest returns */
    if (p && !(p->deferred = http_defer(req, ingest_answer, p))) {
        free(p->key);
        free(p);
        p = NULL;
    }
    if (!p) {
        http_respond_error(res, 500, "internal", NULL, "out of memory");
    } else {
        p->ack.notify = ingest_committed;
        p->ack.arg = p;
        ingest_options o = {.idempotency_key = in->r.key, .durable = 1, .async_ack = &p->ack};
        diag d;
        diag_init(&d, NULL);
        int rc = hostapi_ingest(a->rt, in->m, in->r.event_type, data, strlen(data), in->r.user_id,
                                extra, &o, &d, p->id);
        if (rc == EVH_OK) {
            pending_arrive(p);
        } else { /* refused before it was queued: no commit will come */
            http_undefer(req);
            respond_ingest_error(a, in, rc, &d, res);
            free(p->key);
            free(p);
        }
        diag_free(&d);
    }
    free(data);
    free(extra);
}

/* ---- handlers ------------------------------------------------------------------------ */

static const char *req_header(void *ud, const char *name)
{
    return http_header(ud, name);
}

static void req_each_header(void *ud, http_header_fn fn, void *fn_ud)
{
    http_each_header(ud, fn, fn_ud);
}

/* POST /api/events/process */
static void post_process(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    inbound in = {0};
    event_request_headers h = {(void *)req, req_header, req_each_header};
    size_t len = 0;
    const char *body = http_body(req, &len);
    api_refusal why;
    diag d;
    diag_init(&d, NULL);
    if (event_request_read(body, len, &h, &in.r, &d, &why) != 0) {
        api_respond_refusal(res, &why);
        free(why.message);
    } else {
        find_source(a, &in, &d);
        if (d.count)
            respond_invalid(res, &d);
        else if (!in.r.key || !answered_duplicate(a, in.r.key, res))
            ingest(a, req, &in, res);
    }
    plugin_release(in.held);
    event_request_release(&in.r);
    diag_free(&d);
}

/* GET /api/events?source=&type=&status=&workflow=&trigger=&since=&until=&cursor=&limit= */
static void get_list(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    store_filter f = {0};
    static const char *const names[] = {"source",  "type",  "status", "workflow",
                                        "trigger", "since", "until",  "cursor"};
    const char **slots[] = {&f.source,     &f.event_type, &f.status, &f.workflow_id,
                            &f.trigger_id, &f.since,      &f.until,  &f.cursor};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        *slots[i] = http_query(req, names[i]);
        if (*slots[i] && !**slots[i]) {
            diag d;
            diag_init(&d, NULL);
            diag_add(&d, names[i], "must not be empty");
            http_respond_error(res, 400, "invalid", &d, "%s: must not be empty", names[i]);
            diag_free(&d);
            return;
        }
    }
    long limit = api_query_limit(req, res);
    if (limit < 0)
        return;
    f.limit = (size_t)limit;
    if (f.status && strcmp(f.status, "pending") && strcmp(f.status, "dispatched") &&
        strcmp(f.status, "unmatched")) {
        api_respond_one(res, 400, "invalid", "status",
                        "not an event status (pending, dispatched or unmatched)", NULL);
        return;
    }
    store *st = api_store_acquire(a, res);
    if (!st)
        return;
    char *next = NULL;
    errno = 0;
    cJSON *items = store_events_list(st, &f, &next);
    api_respond_list(res, st, items, next, errno, "listing events");
    api_store_release(a, st);
}

/* GET /api/events/{id}: the envelope plus "status". */
static void get_one(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    const char *id = http_param(req, "id");
    store *st = api_store_acquire(a, res);
    if (!st)
        return;
    cJSON *ev = store_event_get(st, id);
    if (ev)
        http_respond_json(res, 200, ev);
    else if (*store_errmsg(st))
        http_respond_error(res, 500, "internal", NULL, "reading event: %s", store_errmsg(st));
    else
        http_respond_error(res, 404, "not_found", NULL, "no event '%.*s'", QUOTE_MAX, id);
    api_store_release(a, st);
}

const http_route api_routes_events[] = {
    {"POST", "/api/events/process", post_process, 0},
    {"GET", "/api/events", get_list, 0},
    {"GET", "/api/events/{id}", get_one, 0},
    {0},
};
