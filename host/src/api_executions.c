/*
 * api_executions.c - executions, step runs, replay.
 *
 *   GET  /api/executions                  newest first; filters, pages
 *   GET  /api/executions/{id}             one, with its step runs and progress
 *   POST /api/executions/{id}/replay      run it again (?from_step=<step id>)
 */
#include "api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evhost/evhost.h>

#include "diag.h"
#include "event.h"

/* 404 for an unknown execution, 500 when the database failed (st's
 * message); call while st is still held. */
static void respond_missing(http_response *res, store *st, const char *id)
{
    if (*store_errmsg(st)) {
        http_respond_error(res, 500, "internal", NULL, "cannot read execution %s: %s", id,
                           store_errmsg(st));
        return;
    }
    char *reason = NULL;
    if (asprintf(&reason, "no execution '%s'", id) < 0)
        reason = NULL;
    api_respond_one(res, 404, "not_found", "id", reason ? reason : "no such execution", reason);
    free(reason);
}

/* ---- GET /api/executions --------------------------------------------------- */

static const char *const STATUSES[] = {"queued", "running", "succeeded", "failed", NULL};

static void list_executions(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    long limit = api_query_limit(req, res);
    if (limit < 0)
        return;
    store_filter f = {.workflow_id = http_query(req, "workflow"),
                      .trigger_id = http_query(req, "trigger"),
                      .status = http_query(req, "status"),
                      .source = http_query(req, "source"),
                      .event_type = http_query(req, "type"),
                      .since = http_query(req, "since"),
                      .until = http_query(req, "until"),
                      .cursor = http_query(req, "cursor"),
                      .limit = (size_t)limit};
    if (f.status) {
        size_t i = 0;
        while (STATUSES[i] && strcmp(STATUSES[i], f.status))
            i++;
        if (!STATUSES[i]) {
            char *reason = NULL;
            if (asprintf(&reason, "'%s' is not an execution status (queued, running, "
                                  "succeeded or failed)", f.status) < 0)
                reason = NULL;
            api_respond_one(res, 400, "invalid", "status", reason ? reason : "not a status", NULL);
            free(reason);
            return;
        }
    }
    store *st = api_store_acquire(a, res);
    if (!st)
        return;
    char *next = NULL;
    errno = 0;
    cJSON *items = store_executions_list(st, &f, &next);
    api_respond_list(res, st, items, next, errno, "listing executions");
    api_store_release(a, st);
}

/* ---- GET /api/executions/{id} --------------------------------------------- */

/* {"done": steps that finished and let the execution go on (succeeded,
 *  carried over by a replay, or failed with on_error: continue),
 *  "total": the steps of the workflow as loaded now, or null}. */
static cJSON *progress_of(api_ctx *a, const cJSON *x)
{
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(x, "steps");
    const char *status = api_str(x, "status");
    int exec_succeeded = status && !strcmp(status, "succeeded");
    int n = cJSON_GetArraySize(runs);
    double done = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *run = cJSON_GetArrayItem(runs, i);
        const char *step = api_str(run, "step_id");
        const char *st = api_str(run, "status");
        if (!step || !st)
            continue;
        /* runs are ordered by id: a step's attempts follow each other, and
         * the last one is its outcome */
        int last = 1, went_on = 0;
        for (int j = i + 1; j < n; j++) {
            const char *other = api_str(cJSON_GetArrayItem(runs, j), "step_id");
            if (other && !strcmp(other, step))
                last = 0;
            else if (other)
                went_on = 1;
        }
        if (!last)
            continue;
        if (!strcmp(st, "succeeded") || !strcmp(st, "skipped") ||
            (!strcmp(st, "failed") && (went_on || exec_succeeded)))
            done++;
    }
    cJSON *p = cJSON_CreateObject();
    cJSON_AddNumberToObject(p, "done", done);
    const workflow_set *ws;
    const trigger_set *ts;
    void *token = engine_config_acquire(a->eng, &ws, &ts);
    const char *wf_id = api_str(x, "workflow_id");
    const workflow *wf = wf_id ? workflow_set_get(ws, wf_id) : NULL;
    cJSON_AddItemToObject(p, "total",
                          wf ? cJSON_CreateNumber((double)wf->n_steps) : cJSON_CreateNull());
    engine_config_release(a->eng, token);
    return p;
}

static void get_execution(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    const char *id = http_param(req, "id");
    store *st = api_store_acquire(a, res);
    if (!st)
        return;
    cJSON *x = store_execution_get(st, id);
    if (!x) {
        respond_missing(res, st, id);
        api_store_release(a, st);
        return;
    }
    api_store_release(a, st);
    cJSON_AddItemToObject(x, "progress", progress_of(a, x));
    http_respond_json(res, 200, x);
}

/* ---- POST /api/executions/{id}/replay -------------------------------------- */

static int workflow_loaded(api_ctx *a, const char *wf_id)
{
    const workflow_set *ws;
    const trigger_set *ts;
    void *token = engine_config_acquire(a->eng, &ws, &ts);
    int loaded = wf_id && workflow_set_get(ws, wf_id) != NULL;
    engine_config_release(a->eng, token);
    return loaded;
}

static void replay_execution(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    const char *id = http_param(req, "id");
    const char *from_step = http_query(req, "from_step");
    if (from_step && !*from_step) {
        api_respond_one(res, 400, "invalid", "from_step", "must be a step id of the workflow",
                    NULL);
        return;
    }
    store *st = api_store_acquire(a, res);
    if (!st)
        return;
    cJSON *x = store_execution_get(st, id);
    if (!x) {
        respond_missing(res, st, id);
        api_store_release(a, st);
        return;
    }
    api_store_release(a, st);
    char *wf_id = strdup(api_str(x, "workflow_id") ? api_str(x, "workflow_id") : "");
    cJSON_Delete(x);
    if (!wf_id) {
        http_respond_error(res, 500, "internal", NULL, "out of memory");
        return;
    }
    char *reason = NULL;
    if (!workflow_loaded(a, wf_id)) {
        if (asprintf(&reason, "workflow '%s' is no longer loaded", wf_id) < 0)
            reason = NULL;
        api_respond_one(res, 409, "conflict", "workflow_id",
                    reason ? reason : "the workflow is no longer loaded",
                    reason ? reason : "the workflow is no longer loaded");
        free(reason);
        free(wf_id);
        return;
    }
    free(wf_id);

    char new_id[EVH_UUID_LEN + 1];
    char *err = NULL;
    int rc = engine_replay(a->eng, id, from_step, new_id, &err);
    const char *why = err ? err : evh_status_message(rc);
    switch (rc) {
    case EVH_OK: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", new_id);
        cJSON_AddStringToObject(o, "replay_of", id);
        cJSON_AddStringToObject(o, "status", "queued");
        char *location = NULL;
        if (asprintf(&location, "/api/executions/%s", new_id) >= 0) {
            http_response_header(res, "Location", location);
            free(location);
        }
        http_respond_json(res, 202, o);
        break;
    }
    case EVH_E_INVALID:
        api_respond_one(res, 400, "invalid", "from_step", why, NULL);
        break;
    case EVH_E_DUPLICATE:
        if (asprintf(&reason, "already replayed as %s", new_id) < 0)
            reason = NULL;
        api_respond_one(res, 409, "conflict", "id", reason ? reason : why, why);
        free(reason);
        break;
    case EVH_E_NOT_FOUND: /* the workflow went in between, or the event */
        api_respond_one(res, 409, "conflict", "id", why, why);
        break;
    default:
        http_respond_error(res, 500, "internal", NULL, "cannot replay execution %s: %s", id, why);
    }
    free(err);
}

const http_route api_routes_executions[] = {
    {"GET", "/api/executions", list_executions, 0},
    {"GET", "/api/executions/{id}", get_execution, 0},
    {"POST", "/api/executions/{id}/replay", replay_execution, 0},
    {0},
};
