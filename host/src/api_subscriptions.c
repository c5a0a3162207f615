/*
 * api_subscriptions.c - outbound webhook subscriptions and their deliveries.
 *
 *   GET    /api/subscriptions                 every subscription (secrets "***")
 *   POST   /api/subscriptions                 create one (id optional)
 *   GET    /api/subscriptions/{id}
 *   PUT    /api/subscriptions/{id}            replace its definition
 *   PATCH  /api/subscriptions/{id}            change some fields (enabled: true
 *                                             brings back one disabled by a 410)
 *   DELETE /api/subscriptions/{id}            it and its deliveries
 *   GET    /api/deliveries                    the outbox, newest first; filters, pages
 *   GET    /api/deliveries/{id}               one, with its body
 *   POST   /api/deliveries/{id}/retry         a failed or dead one goes again
 *
 * Token, secret and header values are never shown (they read "***") and
 * never logged; a PUT or PATCH that sends "***" back for one keeps the
 * stored value, so GET -> edit -> PUT works.  Subscriptions from host.yaml
 * belong to the file: here they can only be enabled or disabled.
 */
#include "api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <evhost/evhost.h>

#include "event.h"
#include "log.h"
#include "notify.h"
#include "subscription.h"

/* The public (redacted) view of a stored row; NULL on out-of-memory or a
 * row that no longer validates. */
static cJSON *public_view(const cJSON *row)
{
    subscription *s = subscription_from_row(row);
    cJSON *o = s ? subscription_to_json(s, 1) : NULL;
    subscription_free(s);
    return o;
}

/* 404 for no such subscription, 500 when the database failed. */
static void respond_missing(http_response *res, store *st, const char *id)
{
    if (*store_errmsg(st)) {
        api_respond_store_error(res, st, "reading the subscription");
        return;
    }
    char *reason = NULL;
    if (asprintf(&reason, "no subscription '%s'", id) < 0)
        reason = NULL;
    api_respond_one(res, 404, "not_found", "id", reason ? reason : "no such subscription", NULL);
    free(reason);
}

/* Answer status with the subscription as stored now, and tell the notifier. */
static void answer_stored(api_ctx *a, store *st, const char *id, int status, http_response *res)
{
    if (notifier_reload(a->notify, st) != EVH_OK)
        log_error("api", "subscriptions changed but cannot be reloaded: %s", store_errmsg(st));
    cJSON *row = store_subscription_get(st, id);
    cJSON *view = row ? public_view(row) : NULL;
    cJSON_Delete(row);
    if (!view) {
        http_respond_error(res, 500, "internal", NULL, "subscription '%s' stored, but cannot "
                                                        "be read back",
                           id);
        return;
    }
    if (status == 201) {
        char *location = NULL;
        if (asprintf(&location, "/api/subscriptions/%s", id) >= 0) {
            http_response_header(res, "Location", location);
            free(location);
        }
    }
    http_respond_json(res, status, view);
}

/* The store's form of a checked subscription; the texts are malloc'd into
 * events and headers.  0 on out-of-memory. */
static int to_row(const subscription *s, store_subscription *row, char **events, char **headers)
{
    int nomem = 0;
    *events = subscription_events_text(s->events);
    *headers = subscription_headers_text(s, &nomem);
    *row = (store_subscription){.id = s->id,
                                .url = s->url,
                                .events_json = *events,
                                .token = s->token,
                                .secret = s->secret,
                                .headers_json = *headers,
                                .timeout_ms = s->timeout_ms,
                                .max_attempts = s->max_attempts,
                                .backoff_base_ms = s->backoff_base_ms,
                                .backoff_cap_ms = s->backoff_cap_ms,
                                .enabled = s->enabled};
    return *events && !nomem;
}

/* "***" sent back for token, secret or a header value: the stored one. */
static void keep_redacted(cJSON *spec, const cJSON *row)
{
    static const char *const keys[] = {"token", "secret"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = api_str(spec, keys[i]);
        if (v && !strcmp(v, SUBSCRIPTION_REDACTED) && row) {
            const cJSON *old = cJSON_GetObjectItemCaseSensitive(row, keys[i]);
            cJSON_ReplaceItemInObjectCaseSensitive(spec, keys[i],
                                                   old ? cJSON_Duplicate(old, 1)
                                                       : cJSON_CreateNull());
        }
    }
    cJSON *headers = cJSON_GetObjectItemCaseSensitive(spec, "headers");
    const cJSON *old_headers = row ? cJSON_GetObjectItemCaseSensitive(row, "headers") : NULL;
    cJSON *h;
    cJSON_ArrayForEach(h, headers)
    {
        if (!cJSON_IsString(h) || strcmp(h->valuestring, SUBSCRIPTION_REDACTED))
            continue;
        const cJSON *o;
        cJSON_ArrayForEach(o, old_headers)
        {
            if (cJSON_IsString(o) && !strcasecmp(o->string, h->string)) {
                cJSON_SetValuestring(h, o->valuestring);
                break;
            }
        }
    }
}

/* The definition part of a stored row (what a PATCH starts from). */
static cJSON *row_spec(const cJSON *row)
{
    static const char *const keys[] = {"url",          "events",          "token",
                                       "secret",       "timeout_ms",      "max_attempts",
                                       "backoff_base_ms", "backoff_cap_ms", "headers",
                                       "enabled"};
    cJSON *spec = cJSON_CreateObject();
    for (size_t i = 0; spec && i < sizeof keys / sizeof *keys; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, keys[i]);
        if (v && !cJSON_IsNull(v))
            cJSON_AddItemToObject(spec, keys[i], cJSON_Duplicate(v, 1));
    }
    return spec;
}

/* ---- GET /api/subscriptions ------------------------------------------------------ */

static void list_subscriptions(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    (void)req;
    store *st = api_outbox_acquire(a, res);
    if (!st)
        return;
    cJSON *rows = store_subscriptions_list(st);
    if (!rows) {
        api_respond_store_error(res, st, "listing subscriptions");
        api_outbox_release(a, st);
        return;
    }
    api_outbox_release(a, st);
    cJSON *items = cJSON_CreateArray();
    const cJSON *row;
    cJSON_ArrayForEach(row, rows)
    {
        cJSON *v = public_view(row);
        if (v)
            cJSON_AddItemToArray(items, v);
    }
    cJSON_Delete(rows);
    api_respond_page(res, items, NULL);
}

static void get_subscription(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    const char *id = http_param(req, "id");
    store *st = api_outbox_acquire(a, res);
    if (!st)
        return;
    cJSON *row = store_subscription_get(st, id);
    if (!row) {
        respond_missing(res, st, id);
        api_outbox_release(a, st);
        return;
    }
    api_outbox_release(a, st);
    cJSON *view = public_view(row);
    cJSON_Delete(row);
    if (view)
        http_respond_json(res, 200, view);
    else
        http_respond_error(res, 500, "internal", NULL,
                           "subscription '%s' in the database is not valid", id);
}

/* ---- POST /api/subscriptions ------------------------------------------------------- */

static void create_subscription(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    cJSON *body = api_body_object(req, res, 0);
    if (!body)
        return;
    char uuid[EVH_UUID_LEN + 1];
    const cJSON *idj = cJSON_GetObjectItemCaseSensitive(body, "id");
    if (!idj || cJSON_IsNull(idj)) {
        if (uuid_v4(uuid) != EVH_OK) {
            http_respond_error(res, 500, "internal", NULL, "the random generator failed");
            cJSON_Delete(body);
            return;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(body, "id");
        cJSON_AddStringToObject(body, "id", uuid);
    }
    const char *origin = api_str(body, "origin");
    diag d;
    diag_init(&d, NULL);
    if (origin && strcmp(origin, "api"))
        diag_add(&d, "origin", "read-only: a subscription made through the API has origin "
                               "'api' (those of host.yaml are managed in that file)");
    subscription *s = subscription_from_json(body, 1, 1, &d, "");
    cJSON_Delete(body);
    if (!s || d.count) {
        api_respond_invalid(res, &d, "the subscription");
        subscription_free(s);
        diag_free(&d);
        return;
    }
    diag_free(&d);
    store *st = api_outbox_acquire(a, res);
    if (!st) {
        subscription_free(s);
        return;
    }
    store_subscription row;
    char *events = NULL, *headers = NULL;
    int rc = to_row(s, &row, &events, &headers) ? store_subscription_insert(st, &row)
                                                : EVH_E_NOMEM;
    if (rc == EVH_OK) {
        log_info("api", "subscription '%s' created by %s", s->id,
                 http_auth_name(req) ? http_auth_name(req) : "(no key)");
        answer_stored(a, st, s->id, 201, res);
    } else if (rc == EVH_E_DUPLICATE) {
        char *reason = NULL;
        if (asprintf(&reason, "subscription '%s' already exists; PUT or PATCH "
                              "/api/subscriptions/%s changes it",
                     s->id, s->id) < 0)
            reason = NULL;
        api_respond_one(res, 409, "conflict", "id", reason ? reason : "already exists", NULL);
        free(reason);
    } else if (rc == EVH_E_NOMEM) {
        http_respond_error(res, 500, "internal", NULL, "out of memory");
    } else {
        api_respond_store_error(res, st, "storing the subscription");
    }
    api_outbox_release(a, st);
    free(events);
    free(headers);
    subscription_free(s);
}

/* ---- PUT / PATCH /api/subscriptions/{id} -------------------------------------------- */

/* host.yaml's subscription: only {"enabled": ...} may change here. */
static void patch_config_subscription(api_ctx *a, store *st, const char *id, const cJSON *body,
                                      http_response *res)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, body)
    {
        if (strcmp(item->string, "enabled") && strcmp(item->string, "id")) {
            char *reason = NULL;
            if (asprintf(&reason, "subscription '%s' comes from host.yaml: change it there "
                                  "(only \"enabled\" can be set here)",
                         id) < 0)
                reason = NULL;
            api_respond_one(res, 409, "conflict", item->string,
                            reason ? reason : "from host.yaml", NULL);
            free(reason);
            return;
        }
    }
    const cJSON *enabled = cJSON_GetObjectItemCaseSensitive(body, "enabled");
    if (!cJSON_IsBool(enabled)) {
        api_respond_one(res, 400, "invalid", "enabled", "must be true or false", NULL);
        return;
    }
    int rc = store_subscription_set_enabled(st, id, cJSON_IsTrue(enabled), "disabled through "
                                                                           "the API");
    if (rc == EVH_OK)
        answer_stored(a, st, id, 200, res);
    else if (rc == EVH_E_NOT_FOUND)
        respond_missing(res, st, id);
    else
        api_respond_store_error(res, st, "updating the subscription");
}

static void change_subscription(api_ctx *a, const http_request *req, http_response *res,
                                int merge)
{
    const char *id = http_param(req, "id");
    cJSON *body = api_body_object(req, res, 0);
    if (!body)
        return;
    store *st = api_outbox_acquire(a, res);
    if (!st) {
        cJSON_Delete(body);
        return;
    }
    diag d;
    diag_init(&d, NULL);
    cJSON *spec = NULL;
    subscription *s = NULL;
    char *events = NULL, *headers = NULL;
    cJSON *row = store_subscription_get(st, id);
    if (!row) {
        respond_missing(res, st, id);
        goto out;
    }
    const cJSON *idj = cJSON_GetObjectItemCaseSensitive(body, "id");
    if (idj && !cJSON_IsNull(idj) && !(cJSON_IsString(idj) && !strcmp(idj->valuestring, id))) {
        char *reason = NULL;
        if (asprintf(&reason, "must be '%s' (the id in the path) or left out", id) < 0)
            reason = NULL;
        api_respond_one(res, 400, "invalid", "id", reason ? reason : "must match the path", NULL);
        free(reason);
        goto out;
    }
    const char *origin = api_str(row, "origin");
    if (origin && strcmp(origin, "api")) {
        if (merge) {
            patch_config_subscription(a, st, id, body, res);
        } else {
            char *reason = NULL;
            if (asprintf(&reason, "subscription '%s' comes from host.yaml: change it there "
                                  "(PATCH {\"enabled\": ...} can enable or disable it)",
                         id) < 0)
                reason = NULL;
            api_respond_one(res, 409, "conflict", "id", reason ? reason : "from host.yaml", NULL);
            free(reason);
        }
        goto out;
    }
    const char *borigin = api_str(body, "origin");
    if (borigin && strcmp(borigin, "api"))
        diag_add(&d, "origin", "read-only: a subscription made through the API has origin "
                               "'api'");
    if (merge) {
        spec = row_spec(row);
        const cJSON *item;
        cJSON_ArrayForEach(item, body)
        {
            cJSON_DeleteItemFromObjectCaseSensitive(spec, item->string);
            if (!cJSON_IsNull(item))
                cJSON_AddItemToObject(spec, item->string, cJSON_Duplicate(item, 1));
        }
    } else {
        spec = cJSON_Duplicate(body, 1);
    }
    if (!spec) {
        http_respond_error(res, 500, "internal", NULL, "out of memory");
        goto out;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(spec, "id");
    cJSON_AddStringToObject(spec, "id", id);
    keep_redacted(spec, row);
    s = subscription_from_json(spec, 1, 1, &d, "");
    if (!s || d.count) {
        api_respond_invalid(res, &d, "the subscription");
        goto out;
    }
    store_subscription srow;
    int rc = to_row(s, &srow, &events, &headers) ? store_subscription_update(st, &srow)
                                                 : EVH_E_NOMEM;
    if (rc == EVH_OK)
        answer_stored(a, st, id, 200, res);
    else if (rc == EVH_E_NOT_FOUND)
        http_respond_error(res, 404, "not_found", NULL,
                           "no subscription '%s' made through the API any more", id);
    else if (rc == EVH_E_NOMEM)
        http_respond_error(res, 500, "internal", NULL, "out of memory");
    else
        api_respond_store_error(res, st, "storing the subscription");
out:
    api_outbox_release(a, st);
    free(events);
    free(headers);
    subscription_free(s);
    cJSON_Delete(spec);
    cJSON_Delete(row);
    cJSON_Delete(body);
    diag_free(&d);
}

static void put_subscription(void *ctx, const http_request *req, http_response *res)
{
    change_subscription(ctx, req, res, 0);
}

static void patch_subscription(void *ctx, const http_request *req, http_response *res)
{
    change_subscription(ctx, req, res, 1);
}

static void delete_subscription(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    const char *id = http_param(req, "id");
    store *st = api_outbox_acquire(a, res);
    if (!st)
        return;
    cJSON *row = store_subscription_get(st, id);
    const char *origin = row ? api_str(row, "origin") : NULL;
    if (!row) {
        respond_missing(res, st, id);
    } else if (origin && strcmp(origin, "api")) {
        char *reason = NULL;
        if (asprintf(&reason, "subscription '%s' comes from host.yaml: remove it there", id) < 0)
            reason = NULL;
        api_respond_one(res, 409, "conflict", "id", reason ? reason : "from host.yaml", NULL);
        free(reason);
    } else {
        int rc = store_subscription_delete(st, id);
        if (rc == EVH_OK) {
            log_info("api", "subscription '%s' deleted by %s", id,
                     http_auth_name(req) ? http_auth_name(req) : "(no key)");
            if (notifier_reload(a->notify, st) != EVH_OK)
                log_error("api", "subscriptions changed but cannot be reloaded: %s",
                          store_errmsg(st));
            http_respond_json(res, 204, NULL);
        } else if (rc == EVH_E_NOT_FOUND) {
            respond_missing(res, st, id);
        } else {
            api_respond_store_error(res, st, "deleting the subscription");
        }
    }
    cJSON_Delete(row);
    api_outbox_release(a, st);
}

/* ---- deliveries -------------------------------------------------------------------- */

static void list_deliveries(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    long limit = api_query_limit(req, res);
    if (limit < 0)
        return;
    store_delivery_filter f = {.subscription_id = http_query(req, "subscription"),
                               .status = http_query(req, "status"),
                               .job_id = http_query(req, "job"),
                               .event = http_query(req, "event"),
                               .cursor = http_query(req, "cursor"),
                               .limit = (size_t)limit};
    if (f.event && lc_event_parse(f.event) < 0) {
        api_respond_one(res, 400, "invalid", "event",
                        "must be jobStart, jobComplete, jobError, pluginStart, pluginComplete or "
                        "pluginError",
                        NULL);
        return;
    }
    store *st = api_outbox_acquire(a, res);
    if (!st)
        return;
    char *next = NULL;
    errno = 0;
    cJSON *items = store_deliveries_list(st, &f, &next);
    api_respond_list(res, st, items, next, errno, "listing deliveries");
    api_outbox_release(a, st);
}

/* The {id} of a delivery path; 0 after answering 404. */
static int64_t delivery_id(const http_request *req, http_response *res)
{
    const char *text = http_param(req, "id");
    char *end = NULL;
    errno = 0;
    long long id = text ? strtoll(text, &end, 10) : 0;
    if (!text || errno || !end || *end || id <= 0) {
        char *reason = NULL;
        if (asprintf(&reason, "no delivery '%s' (delivery ids are positive integers)",
                     text ? text : "") < 0)
            reason = NULL;
        api_respond_one(res, 404, "not_found", "id", reason ? reason : "no such delivery", NULL);
        free(reason);
        return 0;
    }
    return id;
}

static void get_delivery(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    int64_t id = delivery_id(req, res);
    if (!id)
        return;
    store *st = api_outbox_acquire(a, res);
    if (!st)
        return;
    cJSON *d = store_delivery_get(st, id);
    if (d) {
        http_respond_json(res, 200, d);
    } else if (*store_errmsg(st)) {
        api_respond_store_error(res, st, "reading the delivery");
    } else {
        char reason[64];
        snprintf(reason, sizeof reason, "no delivery %lld", (long long)id);
        api_respond_one(res, 404, "not_found", "id", reason, NULL);
    }
    api_outbox_release(a, st);
}

static void retry_delivery(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    int64_t id = delivery_id(req, res);
    if (!id)
        return;
    store *st = api_outbox_acquire(a, res);
    if (!st)
        return;
    int rc = store_delivery_retry(st, id);
    if (rc == EVH_OK) {
        /* read back before the notifier is woken: the answer shows the row
         * as the retry left it (pending, attempt 0) */
        cJSON *d = store_delivery_get(st, id);
        const char *sub = api_str(d, "subscription_id");
        cJSON *srow = sub ? store_subscription_get(st, sub) : NULL;
        if (d && srow && cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(srow, "enabled")))
            cJSON_AddStringToObject(d, "warning", "its subscription is disabled: it is sent "
                                                  "once the subscription is enabled again");
        cJSON_Delete(srow);
        notifier_wake(a->notify);
        if (d) {
            cJSON_DeleteItemFromObjectCaseSensitive(d, "body");
            http_respond_json(res, 202, d);
        } else {
            http_respond_error(res, 500, "internal", NULL, "delivery %lld queued again, but "
                                                           "cannot be read back",
                               (long long)id);
        }
    } else if (rc == EVH_E_NOT_FOUND) {
        api_respond_one(res, 404, "not_found", "id", store_errmsg(st), NULL);
    } else if (rc == EVH_E_STATE) {
        api_respond_one(res, 409, "conflict", "status", store_errmsg(st), NULL);
    } else {
        api_respond_store_error(res, st, "retrying the delivery");
    }
    api_outbox_release(a, st);
}

const http_route api_routes_subscriptions[] = {
    {"GET", "/api/subscriptions", list_subscriptions, 0},
    {"POST", "/api/subscriptions", create_subscription, 0},
    {"GET", "/api/subscriptions/{id}", get_subscription, 0},
    {"PUT", "/api/subscriptions/{id}", put_subscription, 0},
    {"PATCH", "/api/subscriptions/{id}", patch_subscription, 0},
    {"DELETE", "/api/subscriptions/{id}", delete_subscription, 0},
    {"GET", "/api/deliveries", list_deliveries, 0},
    {"GET", "/api/deliveries/{id}", get_delivery, 0},
    {"POST", "/api/deliveries/{id}/retry", retry_delivery, 0},
    {0},
};
