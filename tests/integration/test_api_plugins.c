/*
 * test_api_plugins.c - event sources and steps over the REST API (GET
 * /api/event-sources, /api/steps, one of each, its event types), failed
 * plugins listed with their error, and plugin webhook endpoints
 * (evh_source.http, SDK ABI 1.1): requests reach the plugin, its events are
 * stored, its answers come back, its failures become 500, a 1.0 plugin
 * gets 501, a source that is not running 503, and API keys do not apply to
 * webhook endpoints while they do to everything else.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apitest.h"
#include "loader.h"
#include "log.h"
#include "testutil.h"

#define assert_contains(haystack, needle)                                                  \
    do {                                                                                   \
        const char *h_ = (haystack);                                                       \
        if (!h_ || !strstr(h_, (needle))) {                                                \
            print_error("'%s' not found in '%s'\n", (needle), h_ ? h_ : "(null)");          \
            fail();                                                                        \
        }                                                                                  \
    } while (0)

static const cJSON *get(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static const char *str(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(get(o, key));
}

static void assert_error(const at_response *r, long status, const char *code)
{
    if (r->status != status)
        print_error("status %ld, body %s\n", r->status, r->body);
    assert_int_equal(r->status, status);
    const cJSON *err = get(r->json, "error");
    assert_non_null(err);
    assert_string_equal(str(err, "code"), code);
    assert_non_null(str(err, "message"));
    assert_true(cJSON_IsArray(get(err, "details")));
}

/* GET path, expecting 200 and a JSON body (the caller frees r). */
static void get_ok(apitest *t, const char *path, at_response *r)
{
    assert_int_equal(at_request(t, "GET", path, NULL, NULL, 0, r), 0);
    if (r->status != 200)
        print_error("GET %s: %ld %s\n", path, r->status, r->body);
    assert_int_equal(r->status, 200);
    assert_non_null(r->json);
}

/* The item with this id in a {"items": [...]} page, or NULL. */
static const cJSON *item(const cJSON *page, const char *id)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, get(page, "items"))
    {
        if (str(it, "id") && !strcmp(str(it, "id"), id))
            return it;
    }
    return NULL;
}

/* A plugin folder whose plugin.json is not JSON, loaded into the running
 * host's registry (the test thread is the only one touching it now). */
static void add_broken_plugin(apitest *t, const char *name)
{
    char *dir = tu_join(t->plugins, name);
    assert_int_equal(mkdir(dir, 0755), 0);
    char *file = tu_join(dir, "plugin.json");
    assert_int_equal(tu_write_file(file, "{\"type\": \"event-source\", oops"), 0);
    loader_options lo = {0};
    plugin *p = loader_load_one(t->rt, dir, &lo);
    assert_non_null(p);
    assert_int_equal(p->state, PLUGIN_FAILED);
    assert_int_equal(registry_add(t->r, p), EVH_OK);
    free(file);
    free(dir);
}

/* ---- listing ------------------------------------------------------------- */

static const char *const list_fixtures[] = {"ok-minimal",      "test-step",   "webhook-source",
                                            "webhook-abi10",   "init-fails",  "wrong-abi-major",
                                            NULL};

static void assert_source_fields(const cJSON *o)
{
    static const char *const keys[] = {"id",          "name",  "description",     "version",
                                       "abi",         "status", "state",          "error",
                                       "webhookEndpoint", "eventTypes", "configSchema"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (!get(o, keys[i]))
            fail_msg("'%s' lacks \"%s\"", str(o, "id"), keys[i]);
    }
}

static void test_list_event_sources(void **state)
{
    (void)state;
    at_options o = {.fixtures = list_fixtures};
    apitest *t = at_start(&o);
    add_broken_plugin(t, "broken-json");
    at_response r;
    get_ok(t, "/api/event-sources", &r);
    assert_true(cJSON_IsArray(get(r.json, "items")));
    assert_true(cJSON_IsNull(get(r.json, "next_cursor")));
    /* 5 sources and the plugin of unknown kind; not the step */
    assert_int_equal(cJSON_GetArraySize(get(r.json, "items")), 6);
    assert_null(item(r.json, "test-step"));

    /* an ABI 1.0 source, rebuilt against the 1.1 header: loaded, running */
    const cJSON *om = item(r.json, "ok-minimal");
    assert_non_null(om);
    assert_source_fields(om);
    assert_string_equal(str(om, "name"), "OK minimal");
    assert_string_equal(str(om, "version"), "1.0.0");
    assert_string_equal(str(om, "abi"), "1.0");
    assert_string_equal(str(om, "status"), "active");
    assert_string_equal(str(om, "state"), "running");
    assert_true(cJSON_IsNull(get(om, "error")));
    assert_true(cJSON_IsNull(get(om, "webhookEndpoint")));
    const cJSON *types = get(om, "eventTypes");
    assert_int_equal(cJSON_GetArraySize(types), 1);
    const cJSON *t0 = cJSON_GetArrayItem(types, 0);
    assert_string_equal(str(t0, "type"), "thing_happened");
    assert_string_equal(str(t0, "label"), "Thing Happened");
    assert_string_equal(str(t0, "description"), "Something happened");
    const cJSON *sch = get(t0, "schema");
    assert_string_equal(str(sch, "type"), "object");
    assert_string_equal(str(get(get(sch, "properties"), "n"), "type"), "integer");
    assert_string_equal(cJSON_GetArrayItem(get(sch, "required"), 0)->valuestring, "n");
    assert_true(cJSON_IsObject(get(om, "configSchema")));
    /* the configuration itself is never shown (secrets) */
    assert_null(get(om, "config"));

    /* the webhook source, and one built against SDK 1.0 */
    const cJSON *ws = item(r.json, "webhook-source");
    assert_non_null(ws);
    assert_source_fields(ws);
    assert_string_equal(str(ws, "abi"), "1.1");
    assert_string_equal(str(ws, "state"), "running");
    assert_string_equal(str(ws, "webhookEndpoint"), "/api/webhooks/test");
    const cJSON *wt = cJSON_GetArrayItem(get(ws, "eventTypes"), 0);
    assert_string_equal(str(wt, "type"), "webhook_received");
    assert_non_null(get(get(wt, "schema"), "properties"));
    const cJSON *legacy = item(r.json, "webhook-abi10");
    assert_non_null(legacy);
    assert_string_equal(str(legacy, "state"), "running");
    assert_string_equal(str(legacy, "webhookEndpoint"), "/api/webhooks/legacy");

    /* failed ones, with why */
    const cJSON *inf = item(r.json, "init-fails");
    assert_non_null(inf);
    assert_source_fields(inf);
    assert_string_equal(str(inf, "name"), "init-fails");
    assert_string_equal(str(inf, "status"), "active");
    assert_string_equal(str(inf, "state"), "failed");
    assert_contains(str(inf, "error"), "init failed: cannot open device");
    const cJSON *wam = item(r.json, "wrong-abi-major");
    assert_non_null(wam);
    assert_string_equal(str(wam, "state"), "failed");
    assert_contains(str(wam, "error"), "requires SDK ABI 2.0; this host provides " EVH_ABI_STRING);

    /* plugin.json unreadable: only id (the folder), state and error */
    const cJSON *broken = item(r.json, "broken-json");
    assert_non_null(broken);
    assert_int_equal(cJSON_GetArraySize(broken), 3);
    assert_string_equal(str(broken, "state"), "failed");
    assert_contains(str(broken, "error"), "broken-json/plugin.json");
    at_response_free(&r);

    /* wrong method */
    assert_int_equal(at_json(t, "POST", "/api/event-sources", "{}", &r), 0);
    assert_error(&r, 405, "method_not_allowed");
    at_response_free(&r);
    at_stop(t);
}

static void test_one_event_source(void **state)
{
    (void)state;
    at_options o = {.fixtures = list_fixtures};
    apitest *t = at_start(&o);
    add_broken_plugin(t, "broken-json");
    at_response r;
    /* the seed's "Check Event Source is Registered" */
    get_ok(t, "/api/event-sources/ok-minimal", &r);
    assert_source_fields(r.json);
    assert_string_equal(str(r.json, "id"), "ok-minimal");
    assert_string_equal(str(r.json, "name"), "OK minimal");
    assert_int_equal(cJSON_GetArraySize(get(r.json, "eventTypes")), 1);
    at_response_free(&r);

    /* the seed's "Check Event Types Available" */
    get_ok(t, "/api/event-sources/ok-minimal/events", &r);
    const cJSON *items = get(r.json, "items");
    assert_int_equal(cJSON_GetArraySize(items), 1);
    assert_string_equal(str(cJSON_GetArrayItem(items, 0), "type"), "thing_happened");
    assert_string_equal(str(get(cJSON_GetArrayItem(items, 0), "schema"), "type"), "object");
    assert_true(cJSON_IsNull(get(r.json, "next_cursor")));
    at_response_free(&r);

    get_ok(t, "/api/event-sources/webhook-source/events", &r);
    assert_string_equal(str(cJSON_GetArrayItem(get(r.json, "items"), 0), "type"),
                        "webhook_received");
    at_response_free(&r);

    /* a failed one is there, with its error */
    get_ok(t, "/api/event-sources/init-fails", &r);
    assert_string_equal(str(r.json, "state"), "failed");
    assert_contains(str(r.json, "error"), "cannot open device");
    at_response_free(&r);
    get_ok(t, "/api/event-sources/broken-json", &r);
    assert_string_equal(str(r.json, "state"), "failed");
    at_response_free(&r);
    get_ok(t, "/api/event-sources/broken-json/events", &r);
    assert_int_equal(cJSON_GetArraySize(get(r.json, "items")), 0);
    at_response_free(&r);

    /* 404s */
    assert_int_equal(at_request(t, "GET", "/api/event-sources/nope", NULL, NULL, 0, &r), 0);
    assert_error(&r, 404, "not_found");
    assert_contains(str(get(r.json, "error"), "message"), "no event source 'nope'");
    at_response_free(&r);
    assert_int_equal(at_request(t, "GET", "/api/event-sources/nope/events", NULL, NULL, 0, &r),
                     0);
    assert_error(&r, 404, "not_found");
    at_response_free(&r);
    /* a step is not an event source, and the answer says where it is */
    assert_int_equal(at_request(t, "GET", "/api/event-sources/test-step", NULL, NULL, 0, &r), 0);
    assert_error(&r, 404, "not_found");
    assert_string_equal(str(get(r.json, "error"), "message"),
                        "no event source 'test-step' ('test-step' is a workflow step: see "
                        "/api/steps/test-step)");
    at_response_free(&r);
    at_stop(t);
}

static void test_steps(void **state)
{
    (void)state;
    at_options o = {.fixtures = list_fixtures};
    apitest *t = at_start(&o);
    add_broken_plugin(t, "broken-json");
    at_response r;
    get_ok(t, "/api/steps", &r);
    /* the step and the plugin of unknown kind */
    assert_int_equal(cJSON_GetArraySize(get(r.json, "items")), 2);
    assert_null(item(r.json, "ok-minimal"));
    assert_non_null(item(r.json, "broken-json"));
    const cJSON *ts = item(r.json, "test-step");
    assert_non_null(ts);
    assert_string_equal(str(ts, "state"), "ready");
    assert_string_equal(str(ts, "status"), "active");
    assert_true(cJSON_IsNull(get(ts, "error")));
    assert_non_null(str(ts, "name"));
    assert_non_null(str(ts, "version"));
    assert_true(cJSON_IsArray(get(ts, "eventTypes")));
    assert_non_null(get(ts, "configSchema"));
    assert_null(get(ts, "webhookEndpoint")); /* sources only */
    at_response_free(&r);

    get_ok(t, "/api/steps/test-step", &r);
    assert_string_equal(str(r.json, "id"), "test-step");
    assert_non_null(get(r.json, "configSchema"));
    at_response_free(&r);
    get_ok(t, "/api/steps/test-step/events", &r);
    assert_true(cJSON_IsArray(get(r.json, "items")));
    at_response_free(&r);

    assert_int_equal(at_request(t, "GET", "/api/steps/ok-minimal", NULL, NULL, 0, &r), 0);
    assert_error(&r, 404, "not_found");
    assert_string_equal(str(get(r.json, "error"), "message"),
                        "no workflow step 'ok-minimal' ('ok-minimal' is an event source: see "
                        "/api/event-sources/ok-minimal)");
    at_response_free(&r);
    assert_int_equal(at_request(t, "GET", "/api/steps/nope", NULL, NULL, 0, &r), 0);
    assert_error(&r, 404, "not_found");
    at_response_free(&r);
    at_stop(t);
}

/* ---- webhook endpoints ----------------------------------------------------- */

static const char *const hook_fixtures[] = {"webhook-source", "webhook-abi10", "ok-minimal",
                                            NULL};

/* The events stored from source webhook-source, newest first; waits (up to
 * 20 s) until there are `want` of them. */
static cJSON *stored_events(apitest *t, int want)
{
    long long end = tu_now_ms() + 20000;
    for (;;) {
        store_filter f = {.source = "webhook-source"};
        cJSON *list = store_events_list(t->st, &f, NULL);
        assert_non_null(list);
        if (cJSON_GetArraySize(list) >= want || tu_now_ms() > end)
            return list;
        cJSON_Delete(list);
        usleep(10000);
    }
}

static void test_webhook_route(void **state)
{
    (void)state;
    at_options o = {.fixtures = hook_fixtures};
    apitest *t = at_start(&o);
    at_response r;

    /* accepted: the plugin emits, the host stores the event */
    static const char *const good[] = {"Content-Type: application/json", "X-Test-Token: ok",
                                       NULL};
    const char *body = "{\"action\": \"opened\", \"number\": 7}";
    assert_int_equal(at_request(t, "POST", "/api/webhooks/test?delivery=d-1&flag&q=a%20b", good,
                                body, (size_t)-1, &r),
                     0);
    if (r.status != 202)
        print_error("%ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 202);
    assert_true(cJSON_IsTrue(get(r.json, "accepted")));
    assert_string_equal(str(r.json, "emit"), "EVH_OK");
    char *h = at_header(&r, "Content-Type");
    assert_string_equal(h, "application/json");
    free(h);
    h = at_header(&r, "X-Webhook-Count");
    assert_string_equal(h, "1");
    free(h);
    h = at_header(&r, "X-Webhook-Source"); /* trimmed */
    assert_string_equal(h, "webhook-source");
    free(h);
    h = at_header(&r, "Content-Length"); /* the host's, not the plugin's "1" */
    assert_int_equal(atoi(h), (int)r.body_len);
    free(h);
    assert_null(at_header(&r, "Bad Name"));
    at_response_free(&r);

    /* emit from http returns once the event is stored: the 202 means it is
     * in the database already, no waiting */
    cJSON *events = stored_events(t, 0);
    assert_int_equal(cJSON_GetArraySize(events), 1);
    const cJSON *ev = cJSON_GetArrayItem(events, 0);
    assert_string_equal(str(ev, "source"), "webhook-source");
    assert_string_equal(str(ev, "event_type"), "webhook_received");
    const cJSON *data = get(ev, "data");
    assert_string_equal(str(data, "method"), "POST");
    assert_string_equal(str(data, "path"), "/api/webhooks/test");
    assert_string_equal(str(data, "content_type"), "application/json");
    assert_string_equal(str(data, "remote_addr"), "127.0.0.1");
    assert_string_equal(str(get(data, "body"), "action"), "opened");
    assert_int_equal(get(get(data, "body"), "number")->valueint, 7);
    assert_string_equal(str(get(data, "query"), "delivery"), "d-1");
    assert_string_equal(str(get(data, "query"), "flag"), "");
    assert_string_equal(str(get(data, "query"), "q"), "a b");
    cJSON *one = store_event_get(t->st, str(ev, "id"));
    assert_non_null(one);
    assert_string_equal(str(one, "source"), "webhook-source");
    cJSON_Delete(one);
    cJSON_Delete(events);

    /* any body; a trailing slash is the same endpoint */
    static const char *const text[] = {"Content-Type: text/plain", "x-test-token: ok", NULL};
    assert_int_equal(at_request(t, "PUT", "/api/webhooks/test/", text, "plain words",
                                (size_t)-1, &r),
                     0);
    assert_int_equal(r.status, 202);
    h = at_header(&r, "X-Webhook-Count");
    assert_string_equal(h, "2");
    free(h);
    at_response_free(&r);
    events = stored_events(t, 0);
    assert_int_equal(cJSON_GetArraySize(events), 2);
    data = get(cJSON_GetArrayItem(events, 0), "data");
    assert_string_equal(str(data, "method"), "PUT");
    assert_string_equal(str(data, "body"), "plain words");
    cJSON_Delete(events);

    /* the plugin authenticates: 401 from it, with its header; no event */
    assert_int_equal(at_request(t, "POST", "/api/webhooks/test", NULL, body, (size_t)-1, &r), 0);
    assert_int_equal(r.status, 401);
    assert_non_null(str(r.json, "error"));
    h = at_header(&r, "WWW-Authenticate");
    assert_string_equal(h, "X-Test-Token");
    free(h);
    at_response_free(&r);
    static const char *const wrong[] = {"X-Test-Token: ok2", NULL};
    assert_int_equal(at_request(t, "POST", "/api/webhooks/test", wrong, body, (size_t)-1, &r),
                     0);
    assert_int_equal(r.status, 401);
    at_response_free(&r);

    /* a GET handshake: the query reaches the plugin, its text comes back */
    static const char *const tok[] = {"X-Test-Token: ok", NULL};
    assert_int_equal(at_request(t, "GET", "/api/webhooks/test?challenge=c%2B1", tok, NULL, 0,
                                &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "c+1");
    h = at_header(&r, "Content-Type");
    assert_string_equal(h, "text/plain; charset=utf-8");
    free(h);
    at_response_free(&r);

    /* a status of the plugin's choosing; one out of range is its bug */
    static const char *const s204[] = {"X-Test-Token: ok", "X-Test-Status: 204", NULL};
    assert_int_equal(at_request(t, "POST", "/api/webhooks/test", s204, NULL, 0, &r), 0);
    assert_int_equal(r.status, 204);
    at_response_free(&r);
    static const char *const s99[] = {"X-Test-Token: ok", "X-Test-Status: 99", NULL};
    assert_int_equal(at_request(t, "POST", "/api/webhooks/test", s99, NULL, 0, &r), 0);
    assert_error(&r, 500, "plugin_error");
    assert_contains(str(get(r.json, "error"), "message"), "invalid HTTP status (99)");
    at_response_free(&r);

    /* a failing plugin: 500 naming the code (and its body freed: ASan) */
    static const char *const failing[] = {"X-Test-Token: ok", "X-Test-Fail: 1", NULL};
    assert_int_equal(at_request(t, "POST", "/api/webhooks/test", failing, body, (size_t)-1, &r),
                     0);
    assert_error(&r, 500, "plugin_error");
    assert_contains(str(get(r.json, "error"), "message"), "EVH_E_PLUGIN");
    assert_contains(str(get(r.json, "error"), "message"), "webhook-source");
    at_response_free(&r);

    /* sub-paths and other paths are not the endpoint: the server's 404 */
    assert_int_equal(at_request(t, "POST", "/api/webhooks/test/other", good, body, (size_t)-1,
                                &r),
                     0);
    assert_error(&r, 404, "not_found");
    at_response_free(&r);
    assert_int_equal(at_request(t, "POST", "/api/webhooks", good, body, (size_t)-1, &r), 0);
    assert_error(&r, 404, "not_found");
    at_response_free(&r);
    assert_int_equal(at_request(t, "POST", "/api/webhooks/testx", good, body, (size_t)-1, &r), 0);
    assert_error(&r, 404, "not_found");
    at_response_free(&r);

    /* a plugin built against SDK 1.0 declares an endpoint it cannot serve */
    assert_int_equal(at_request(t, "POST", "/api/webhooks/legacy", good, body, (size_t)-1, &r),
                     0);
    assert_error(&r, 501, "not_implemented");
    assert_contains(str(get(r.json, "error"), "message"), "webhook-abi10");
    assert_contains(str(get(r.json, "error"), "message"), "no http callback (SDK ABI 1.1)");
    at_response_free(&r);

    /* only the two accepted requests became events */
    events = stored_events(t, 2);
    assert_int_equal(cJSON_GetArraySize(events), 2);
    cJSON_Delete(events);
    at_stop(t);
}

/* The endpoint of a source that is not running answers 503. */
static void test_webhook_source_not_running(void **state)
{
    (void)state;
    at_options o = {.fixtures = hook_fixtures,
                    .plugin_configs = "{\"webhook-source\": {\"token\": 5}}"};
    apitest *t = at_start(&o);
    at_response r;
    get_ok(t, "/api/event-sources/webhook-source", &r);
    assert_string_equal(str(r.json, "state"), "failed");
    assert_contains(str(r.json, "error"), "invalid configuration");
    at_response_free(&r);
    static const char *const tok[] = {"X-Test-Token: ok", NULL};
    assert_int_equal(at_request(t, "POST", "/api/webhooks/test", tok, "{}", 2, &r), 0);
    assert_error(&r, 503, "unavailable");
    assert_contains(str(get(r.json, "error"), "message"), "not running (state failed)");
    /* the plugin's error text is not shown to an unauthenticated caller */
    assert_null(strstr(r.body, "invalid configuration"));
    at_response_free(&r);
    at_stop(t);
}

/* Webhook senders cannot send our API key: plugin endpoints are not behind
 * it (the plugin authenticates), while the API itself is. */
static void test_webhook_bypasses_api_keys(void **state)
{
    (void)state;
    at_options o = {.fixtures = hook_fixtures,
                    .host_yaml = "server:\n  api_keys: [{name: ci, key: s3cret-key}]\n"};
    apitest *t = at_start(&o);
    at_response r;
    assert_int_equal(at_request(t, "GET", "/api/event-sources", NULL, NULL, 0, &r), 0);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);
    assert_int_equal(at_request(t, "GET", "/api/steps", NULL, NULL, 0, &r), 0);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);
    static const char *const bad_key[] = {"Authorization: Bearer s3cret-kez", NULL};
    assert_int_equal(at_request(t, "GET", "/api/event-sources/ok-minimal", bad_key, NULL, 0, &r),
                     0);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);
    static const char *const key[] = {"Authorization: Bearer s3cret-key", NULL};
    assert_int_equal(at_request(t, "GET", "/api/event-sources", key, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(item(r.json, "webhook-source"));
    at_response_free(&r);
    static const char *const xkey[] = {"X-API-Key: s3cret-key", NULL};
    assert_int_equal(at_request(t, "GET", "/api/event-sources/ok-minimal/events", xkey, NULL, 0,
                                &r),
                     0);
    assert_int_equal(r.status, 200);
    at_response_free(&r);

    /* the webhook: no key, only the plugin's own check */
    static const char *const hook[] = {"Content-Type: application/json", "X-Test-Token: ok",
                                       NULL};
    assert_int_equal(at_request(t, "POST", "/api/webhooks/test", hook, "{\"a\": 1}", (size_t)-1,
                                &r),
                     0);
    assert_int_equal(r.status, 202);
    at_response_free(&r);
    assert_int_equal(at_request(t, "POST", "/api/webhooks/test", NULL, "{\"a\": 1}", (size_t)-1,
                                &r),
                     0);
    assert_int_equal(r.status, 401); /* the plugin's 401 */
    assert_null(strstr(r.body, "API key"));
    at_response_free(&r);
    cJSON *events = stored_events(t, 1);
    assert_int_equal(cJSON_GetArraySize(events), 1);
    cJSON_Delete(events);
    at_stop(t);
}

int main(void)
{
    log_set_level(EVH_LOG_ERROR);
    umask(022); /* the fixtures' modes must not depend on the caller's umask */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_event_sources),
        cmocka_unit_test(test_one_event_source),
        cmocka_unit_test(test_steps),
        cmocka_unit_test(test_webhook_route),
        cmocka_unit_test(test_webhook_source_not_running),
        cmocka_unit_test(test_webhook_bypasses_api_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
