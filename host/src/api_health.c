/*
 * api_health.c - liveness, readiness and Prometheus metrics.
 *
 *   GET /api/health  the process answers (public)
 *   GET /api/ready   the daemon can take work: started, not stopping, and
 *                    the database writable (503 naming the failing check)
 *   GET /metrics     metrics.c's families plus gauges read at scrape time
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evhost/evhost.h>

#include "event.h"
#include "evh_limits.h"
#include "metrics.h"
#include "stream.h"

/* GET /api/health: the process answers.  Public, so that load balancers
 * and Docker's HEALTHCHECK need no key. */
static void get_health(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    (void)req;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    cJSON_AddStringToObject(o, "version", EVH_VERSION);
    cJSON_AddStringToObject(o, "abi", EVH_ABI_STRING);
    cJSON_AddNumberToObject(o, "uptime_s", (double)(monotonic_ns() - a->started_ns) / 1e9);
    http_respond_json(res, 200, o);
}

#define N_PLUGIN_STATES (PLUGIN_QUARANTINED + 1)

/* The number of plugins in each state (every state, 0 included). */
static void count_plugins(const api_ctx *a, size_t counts[N_PLUGIN_STATES])
{
    for (int s = 0; s < N_PLUGIN_STATES; s++)
        counts[s] = a->reg ? registry_count(a->reg, 0, s) : 0;
}

/* "ok", or why st (NULL: it could not be opened) cannot be written now. */
static void writable(store *st, const char *what, char *out, size_t size)
{
    if (!st)
        snprintf(out, size, "%s cannot be opened", what);
    else if (store_check_writable(st, EVH_READY_DB_TIMEOUT_MS) != EVH_OK)
        snprintf(out, size, "not writable: %s", store_errmsg(st));
    else
        snprintf(out, size, "ok");
}

/*
 * GET /api/ready: 200 {"status": "ready", "checks": {"pipeline": "ok",
 * "database": "ok", "outbox": "ok", "plugins": {"<state>": n, ...}}}.
 *
 * The API starts serving only after the daemon loaded the plugins, opened
 * and migrated the database and started the pipeline, so answering at all
 * means "started"; what is left to check is that it is not stopping and
 * that the database takes writes now (accepted events must be committed
 * before they are acknowledged), and so does the outbox file (lifecycle
 * events are stored there before they are sent).  Plugins that failed to
 * load are reported but do not make the daemon unready: they stay failed
 * until an operator acts, and taking the whole instance out of rotation
 * for one bad plugin would turn a partial outage into a full one.  Alert on
 * evhost_plugins{state="failed"} instead.
 *
 * Otherwise 503 {"status": "not_ready", "checks": {...}, "error": {...}}:
 * the same checks (a failing one says why) and the API's usual error
 * object, whose details name each failing check.
 */
static void get_ready(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    (void)req;
    diag failing;
    diag_init(&failing, NULL);
    cJSON *checks = cJSON_CreateObject();

    int stopping = !a->rt || atomic_load(&a->rt->stopping);
    cJSON_AddStringToObject(checks, "pipeline", stopping ? "stopping" : "ok");
    if (stopping)
        diag_add(&failing, "checks.pipeline", "the daemon is stopping");

    char db[600] = "ok";
    store *st = api_store_acquire(a, NULL);
    writable(st, "the database", db, sizeof db);
    api_store_release(a, st);
    cJSON_AddStringToObject(checks, "database", db);
    if (strcmp(db, "ok") != 0)
        diag_add(&failing, "checks.database", "%s", db);
    if (a->outbox_path) { /* outbound webhooks' file (store_outbox_path) */
        st = api_outbox_acquire(a, NULL);
        writable(st, "the outbox file", db, sizeof db);
        api_outbox_release(a, st);
        cJSON_AddStringToObject(checks, "outbox", db);
        if (strcmp(db, "ok") != 0)
            diag_add(&failing, "checks.outbox", "%s", db);
    }

    size_t counts[N_PLUGIN_STATES];
    count_plugins(a, counts);
    cJSON *plugins = cJSON_AddObjectToObject(checks, "plugins");
    for (int s = 0; s < N_PLUGIN_STATES; s++)
        cJSON_AddNumberToObject(plugins, plugin_state_name((plugin_state)s), (double)counts[s]);

    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", failing.count ? "not_ready" : "ready");
    cJSON_AddItemToObject(o, "checks", checks);
    if (failing.count) {
        /* the API's usual error object beside the checks */
        cJSON *err = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(err, "code", "not_ready");
        char msg[64];
        snprintf(msg, sizeof msg, "not ready: %zu check(s) failed", failing.count);
        cJSON_AddStringToObject(err, "message", msg);
        cJSON *details = cJSON_AddArrayToObject(err, "details");
        for (size_t i = 0; i < failing.count; i++) {
            cJSON *item = cJSON_CreateObject();
            cJSON_AddStringToObject(item, "path", failing.items[i].path);
            cJSON_AddStringToObject(item, "reason", failing.items[i].reason);
            cJSON_AddItemToArray(details, item);
        }
    }
    http_respond_json(res, failing.count ? 503 : 200, o);
    diag_free(&failing);
}

/* ---- GET /metrics ------------------------------------------------------------ */

static void gauge(textbuf *b, const char *name, const char *help, double value)
{
    metrics_write_header(b, name, "gauge", help);
    metrics_write_sample(b, name, NULL, NULL, 0, value);
}

static void render_gauges(const api_ctx *a, textbuf *b)
{
    static const char *const build_labels[] = {"version", "abi"};
    const char *const build_values[] = {EVH_VERSION, EVH_ABI_STRING};
    metrics_write_header(b, "evhost_build_info", "gauge",
                         "Always 1; the labels say which evhost and plugin ABI this is.");
    metrics_write_sample(b, "evhost_build_info", build_labels, build_values, 2, 1);

    gauge(b, "evhost_uptime_seconds", "Seconds since the API started.",
          (double)(monotonic_ns() - a->started_ns) / 1e9);

    bus *q = a->rt ? a->rt->bus : NULL;
    gauge(b, "evhost_queue_depth", "Events accepted and waiting to be committed to the database.",
          (double)bus_depth(q));
    gauge(b, "evhost_queue_capacity",
          "Events the in-memory queue holds before emit and ingest get queue_full.",
          q ? (double)bus_capacity(q) : 0);

    engine_stats es = {0};
    if (a->eng)
        engine_get_stats(a->eng, &es);
    gauge(b, "evhost_dispatch_queue_depth",
          "Events committed and waiting for a worker to match triggers and run workflows.",
          (double)es.dispatch_depth);

    stream_stats ss = {0};
    if (a->stream)
        stream_hub_stats(a->stream, &ss);
    gauge(b, "evhost_streams", "Live streams (GET /api/events/stream) open.",
          (double)ss.subscribers);
    gauge(b, "evhost_stream_buffered_events",
          "Lifecycle events held for Last-Event-ID resumption (server.stream_buffer_events).",
          (double)ss.events);

    size_t counts[N_PLUGIN_STATES];
    count_plugins(a, counts);
    static const char *const state_label[] = {"state"};
    metrics_write_header(b, "evhost_plugins", "gauge", "Plugins found, by state.");
    for (int s = 0; s < N_PLUGIN_STATES; s++) {
        const char *v[] = {plugin_state_name((plugin_state)s)};
        metrics_write_sample(b, "evhost_plugins", state_label, v, 1, (double)counts[s]);
    }
}

static void get_metrics(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    (void)req;
    textbuf b = {0};
    metrics_render(&b);
    render_gauges(a, &b);
    if (b.failed || !b.data) {
        textbuf_free(&b);
        http_respond_error(res, 500, "internal", NULL, "out of memory rendering the metrics");
        return;
    }
    size_t len = 0;
    char *text = textbuf_take(&b, &len);
    http_respond_raw(res, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

const http_route api_routes_health[] = {
    {"GET", "/api/health", get_health, 1},
    {"GET", "/api/ready", get_ready, 0},
    {"GET", "/metrics", get_metrics, 0},
    {0},
};
