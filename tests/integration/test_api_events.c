/*
 * test_api_events.c - POST /api/events/process, GET /api/events and
 * GET /api/events/{id} over real HTTP: events accepted durably and run by
 * workflows; every refusal with its status, code and JSON path; the
 * Idempotency-Key (sequential and racing); CloudEvents in structured and
 * binary mode; 429 when the queue is full and 503 while stopping; list
 * filters and keyset pages that stay stable while events arrive.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <sqlite3.h>

#include <evhost/evhost.h>

#include "apitest.h"
#include "evh_limits.h"
#include "hostapi.h"
#include "log.h"
#include "registry.h"
#include "testutil.h"

/* ---- helpers ---------------------------------------------------------------- */

static const char *const echo_wf[] = {
    "id: echo\n"
    "steps:\n"
    "  - {id: first, uses: test-step, with: {value: \"{{ event.data.n }}\"}}\n",
    NULL};

/* events with n >= 3 run "echo"; smaller ones are unmatched */
static const char echo_trigger[] =
    "triggers:\n"
    "  - {id: big, source: ok-minimal, event_type: thing_happened, workflow: echo,\n"
    "     conditions: {field: data.n, op: gte, value: 3}}\n";

static const at_options echo_opts = {.workflows = echo_wf, .triggers = echo_trigger};

/* o at a dotted path ("metadata.additional_data.cloudevents.id"), or NULL. */
static const cJSON *jget(const cJSON *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    for (char *k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save))
        o = cJSON_GetObjectItemCaseSensitive(o, k);
    return o;
}

static const char *sget(const cJSON *o, const char *path)
{
    return cJSON_GetStringValue(jget(o, path));
}

/* POST body to /api/events/process with a Content-Type and optional extra
 * headers (NULL-terminated, may be NULL). */
/* not inlined: gcc -O2 then took its callers' two-element `extra` arrays
 * for the loop's bound and warned (-Warray-bounds) about indices it never
 * reaches */
__attribute__((noinline)) static void post(apitest *t, const char *ctype,
                                           const char *const *extra, const char *body,
                                           at_response *r)
{
    const char *h[16];
    size_t n = 0;
    char ct[128];
    if (ctype) {
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        h[n++] = ct;
    }
    for (size_t i = 0; extra && extra[i] && n < 15; i++)
        h[n++] = extra[i];
    h[n] = NULL;
    assert_int_equal(at_request(t, "POST", "/api/events/process", h, body, (size_t)-1, r), 0);
}

static void post_json(apitest *t, const char *body, at_response *r)
{
    post(t, "application/json", NULL, body, r);
}

static int has_detail(const at_response *r, const char *path)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, jget(r->json, "error.details"))
    {
        const char *p = sget(item, "path");
        if (p && !strcmp(p, path))
            return 1;
    }
    return 0;
}

static void assert_refused(const at_response *r, long status, const char *code, const char *path)
{
    if (r->status != status || !sget(r->json, "error.code") ||
        strcmp(sget(r->json, "error.code"), code) || (path && !has_detail(r, path)))
        fail_msg("expected %ld %s at '%s', got %ld %s", status, code, path ? path : "-", r->status,
                 r->body);
    assert_non_null(sget(r->json, "error.message"));
    assert_true(cJSON_IsArray(jget(r->json, "error.details")));
}

/* The id of a 202 (or 200 duplicate) answer, copied. */
static void accepted_id(const at_response *r, long status, const char *what, char id[37])
{
    if (r->status != status)
        fail_msg("expected %ld, got %ld %s", status, r->status, r->body);
    assert_string_equal(sget(r->json, "status"), what);
    assert_int_equal(strlen(sget(r->json, "id")), 36);
    snprintf(id, 37, "%s", sget(r->json, "id"));
}

static size_t count_events(apitest *t)
{
    store_filter f = {.limit = STORE_LIST_MAX_LIMIT};
    cJSON *rows = store_events_list(t->st, &f, NULL);
    assert_non_null(rows);
    size_t n = (size_t)cJSON_GetArraySize(rows);
    cJSON_Delete(rows);
    return n;
}

static void accept_event(apitest *t, const char *body, char id[37])
{
    at_response r;
    post_json(t, body, &r);
    accepted_id(&r, 202, "accepted", id);
    at_response_free(&r);
}

/* ---- the envelope ------------------------------------------------------------ */

static void test_accept_store_and_run(void **state)
{
    apitest *t = at_start(&echo_opts);
    at_response r;
    post_json(t,
              "{\"event_type\": \"thing_happened\", \"source\": \"ok-minimal\","
              " \"data\": {\"n\": 5, \"label\": \"five\"}, \"user_id\": \"user-1\","
              " \"metadata\": {\"source\": \"ok-minimal\", \"timestamp\": \"2001-02-03T04:05:06Z\","
              "               \"additional_data\": {\"trace\": \"t-1\"}}}",
              &r);
    char id[37];
    accepted_id(&r, 202, "accepted", id);
    char *loc = at_header(&r, "Location");
    char want[64];
    snprintf(want, sizeof want, "/api/events/%s", id);
    assert_string_equal(loc, want);
    free(loc);
    at_response_free(&r);

    /* durable before the answer: the row is there already */
    cJSON *ev = store_event_get(t->st, id);
    assert_non_null(ev);
    assert_string_equal(sget(ev, "source"), "ok-minimal");
    assert_string_equal(sget(ev, "event_type"), "thing_happened");
    assert_string_equal(sget(ev, "metadata.source"), "ok-minimal");
    assert_string_equal(sget(ev, "metadata.user_id"), "user-1");
    assert_string_equal(sget(ev, "metadata.additional_data.trace"), "t-1");
    assert_int_equal(jget(ev, "data.n")->valueint, 5);
    /* the host stamps the time of acceptance, not the client's */
    assert_string_not_equal(sget(ev, "metadata.timestamp"), "2001-02-03T04:05:06Z");
    assert_int_equal(strlen(sget(ev, "metadata.timestamp")), 24);
    cJSON_Delete(ev);

    /* the trigger ran the workflow with the event */
    at_wait_settled(t, 1);
    store_filter f = {.workflow_id = "echo"};
    cJSON *xs = store_executions_list(t->st, &f, NULL);
    assert_int_equal(cJSON_GetArraySize(xs), 1);
    assert_string_equal(sget(cJSON_GetArrayItem(xs, 0), "event_id"), id);
    cJSON *x = store_execution_get(t->st, sget(cJSON_GetArrayItem(xs, 0), "id"));
    assert_string_equal(sget(x, "status"), "succeeded");
    const cJSON *step = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(x, "steps"), 0);
    assert_int_equal(jget(step, "output.value")->valueint, 5);
    cJSON_Delete(x);
    cJSON_Delete(xs);

    /* GET by id: the envelope plus its status */
    char path[80];
    snprintf(path, sizeof path, "/api/events/%s", id);
    assert_int_equal(at_request(t, "GET", path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(sget(r.json, "id"), id);
    assert_string_equal(sget(r.json, "status"), "dispatched");
    assert_string_equal(sget(r.json, "metadata.user_id"), "user-1");
    assert_int_equal(jget(r.json, "data.n")->valueint, 5);
    at_response_free(&r);
    assert_int_equal(
        at_request(t, "GET", "/api/events/00000000-0000-4000-8000-000000000000", NULL, NULL, 0, &r),
        0);
    assert_refused(&r, 404, "not_found", NULL);
    assert_non_null(strstr(sget(r.json, "error.message"), "no event")); /* the handler's 404 */
    at_response_free(&r);

    /* metadata.user_id alone is the user; a matching metadata.source is fine */
    post_json(
        t,
        "{\"event_type\": \"thing_happened\", \"source\": \"ok-minimal\", \"data\": {\"n\": 1},"
        " \"metadata\": {\"user_id\": \"user-2\", \"source\": \"ok-minimal\"}}",
        &r);
    accepted_id(&r, 202, "accepted", id);
    at_response_free(&r);
    ev = store_event_get(t->st, id);
    assert_string_equal(sget(ev, "metadata.user_id"), "user-2");
    cJSON_Delete(ev);
    at_stop(t);
    (void)state;
}

typedef struct bad_case {
    const char *name;
    const char *key; /* Idempotency-Key header, or NULL */
    const char *body;
    const char *code;
    const char *path; /* a detail path that must be listed */
} bad_case;

#define OK_HEAD "\"event_type\": \"thing_happened\", \"source\": \"ok-minimal\""

static void test_refusals(void **state)
{
    apitest *t = at_start(&echo_opts);
    char long_key[300];
    memset(long_key, 'k', 256);
    long_key[256] = '\0';
    char long_key_header[320];
    snprintf(long_key_header, sizeof long_key_header, "Idempotency-Key: %s", long_key);
    static const bad_case cases[] = {
        {"undeclared type", NULL,
         "{\"event_type\": \"nope\", \"source\": \"ok-minimal\", \"data\": {\"n\": 1}}",
         "invalid_event", "event_type"},
        {"schema: wrong type", NULL, "{" OK_HEAD ", \"data\": {\"n\": \"one\"}}", "invalid_event",
         "data.n"},
        {"schema: required", NULL, "{" OK_HEAD ", \"data\": {\"label\": \"x\"}}", "invalid_event",
         "data.n"},
        {"unknown source", NULL,
         "{\"event_type\": \"thing_happened\", \"source\": \"no-such\", \"data\": {\"n\": 1}}",
         "invalid_event", "source"},
        {"a step is no source", NULL,
         "{\"event_type\": \"chained\", \"source\": \"test-step\", \"data\": {}}", "invalid_event",
         "source"},
        {"missing event_type", NULL, "{\"source\": \"ok-minimal\", \"data\": {\"n\": 1}}",
         "invalid_event", "event_type"},
        {"event_type not a string", NULL,
         "{\"event_type\": 7, \"source\": \"ok-minimal\", \"data\": {\"n\": 1}}", "invalid_event",
         "event_type"},
        {"missing data", NULL, "{" OK_HEAD "}", "invalid_event", "data"},
        {"data not an object", NULL, "{" OK_HEAD ", \"data\": [1]}", "invalid_event", "data"},
        {"unknown key", NULL, "{" OK_HEAD ", \"data\": {\"n\": 1}, \"colour\": 1}", "invalid_event",
         "colour"},
        {"client id", NULL, "{" OK_HEAD ", \"data\": {\"n\": 1}, \"id\": \"x\"}", "invalid_event",
         "id"},
        {"duplicate key", NULL, "{" OK_HEAD ", \"data\": {\"n\": 1}, \"source\": \"ok-minimal\"}",
         "invalid_event", "source"},
        {"user_id not a string", NULL, "{" OK_HEAD ", \"data\": {\"n\": 1}, \"user_id\": 7}",
         "invalid_event", "user_id"},
        {"metadata not an object", NULL, "{" OK_HEAD ", \"data\": {\"n\": 1}, \"metadata\": 1}",
         "invalid_event", "metadata"},
        {"metadata.source differs", NULL,
         "{" OK_HEAD ", \"data\": {\"n\": 1}, \"metadata\": {\"source\": \"other\"}}",
         "invalid_event", "metadata.source"},
        {"metadata.user_id differs", NULL,
         "{" OK_HEAD ", \"data\": {\"n\": 1}, \"user_id\": \"a\", \"metadata\": {\"user_id\": "
         "\"b\"}}",
         "invalid_event", "metadata.user_id"},
        {"metadata unknown key", NULL,
         "{" OK_HEAD ", \"data\": {\"n\": 1}, \"metadata\": {\"colour\": 1}}", "invalid_event",
         "metadata.colour"},
        {"metadata.timestamp not a date-time", NULL,
         "{" OK_HEAD ", \"data\": {\"n\": 1}, \"metadata\": {\"timestamp\": \"yesterday\"}}",
         "invalid_event", "metadata.timestamp"},
        {"additional_data not an object", NULL,
         "{" OK_HEAD ", \"data\": {\"n\": 1}, \"metadata\": {\"additional_data\": [1]}}",
         "invalid_event", "metadata.additional_data"},
        {"Idempotency-Key too long", "long", "{" OK_HEAD ", \"data\": {\"n\": 1}}", "invalid_event",
         "Idempotency-Key"},
        {"body not an object", NULL, "[1, 2]", "invalid", NULL},
        {"malformed JSON", NULL, "{\"event_type\": ", "malformed_json", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        const char *const keyh[] = {long_key_header, NULL};
        at_response r;
        post(t, "application/json", c->key ? keyh : NULL, c->body, &r);
        if (r.status != 400)
            fail_msg("%s: expected 400, got %ld %s", c->name, r.status, r.body);
        assert_refused(&r, 400, c->code, c->path);
        at_response_free(&r);
    }

    /* every problem in one answer, each with its path */
    at_response r;
    post_json(
        t, "{\"source\": \"ok-minimal\", \"data\": {\"n\": 1}, \"extra\": 1, \"user_id\": []}", &r);
    assert_refused(&r, 400, "invalid_event", "event_type");
    assert_true(has_detail(&r, "extra") && has_detail(&r, "user_id"));
    at_response_free(&r);
    /* a type problem is listed with the shape problems */
    post_json(t, "{\"event_type\": \"nope\", \"source\": \"ok-minimal\", \"data\": 1}", &r);
    assert_true(has_detail(&r, "event_type") && has_detail(&r, "data"));
    assert_non_null(strstr(r.body, "thing_happened")); /* the declared types are named */
    assert_null(strstr(r.body, "plugin.json"));        /* no server paths */
    at_response_free(&r);

    /* media types */
    post(t, "text/plain", NULL, "{" OK_HEAD ", \"data\": {\"n\": 1}}", &r);
    assert_refused(&r, 415, "unsupported_media_type", NULL);
    at_response_free(&r);
    post(t, NULL, NULL, "{" OK_HEAD ", \"data\": {\"n\": 1}}", &r);
    assert_int_equal(r.status, 415);
    at_response_free(&r);

    /* the endpoint takes POST only; the list GET only */
    assert_int_equal(at_request(t, "PUT", "/api/events/process", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 405);
    at_response_free(&r);
    assert_int_equal(at_json(t, "POST", "/api/events", "{}", &r), 0);
    assert_int_equal(r.status, 405);
    at_response_free(&r);

    /* nothing refused was stored */
    assert_int_equal(count_events(t), 0);
    at_stop(t);
    (void)state;
}

/* ---- idempotency ----------------------------------------------------------------- */

typedef struct racer {
    apitest *t;
    long status;
    char id[37];
} racer;

static void *race(void *arg)
{
    racer *rc = arg;
    static const char *const h[] = {"Content-Type: application/json", "Idempotency-Key: race-key-1",
                                    NULL};
    at_response r;
    if (at_request(rc->t, "POST", "/api/events/process", h, "{" OK_HEAD ", \"data\": {\"n\": 2}}",
                   (size_t)-1, &r) == 0) {
        rc->status = r.status;
        snprintf(rc->id, sizeof rc->id, "%s", sget(r.json, "id") ? sget(r.json, "id") : "");
    }
    at_response_free(&r);
    return NULL;
}

static void test_idempotency(void **state)
{
    apitest *t = at_start(&echo_opts);
    static const char *const key[] = {"Idempotency-Key: order-7 attempt", NULL};
    at_response r;
    char first[37], again[37];
    post(t, "application/json", key, "{" OK_HEAD ", \"data\": {\"n\": 1}}", &r);
    accepted_id(&r, 202, "accepted", first);
    at_response_free(&r);
    /* a retry, even with another body, answers the first event */
    post(t, "application/json", key, "{" OK_HEAD ", \"data\": {\"n\": 9}}", &r);
    accepted_id(&r, 200, "duplicate", again);
    assert_string_equal(first, again);
    at_response_free(&r);
    assert_int_equal(count_events(t), 1);

    /* racing requests with one key: one 202, the rest 200 with the same id
     * (the store's unique key decides; hostapi_ingest says EVH_E_DUPLICATE) */
    enum { N = 8 };
    racer rs[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        rs[i] = (racer){.t = t};
        assert_int_equal(pthread_create(&th[i], NULL, race, &rs[i]), 0);
    }
    int accepted = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (rs[i].status == 202)
            accepted++;
        else if (rs[i].status != 200)
            fail_msg("racer %d: status %ld", i, rs[i].status);
        assert_string_equal(rs[i].id, rs[0].id);
    }
    assert_int_equal(accepted, 1);
    assert_int_equal(count_events(t), 2);
    at_wait_settled(t, 2);
    at_stop(t);
    (void)state;
}

/* ---- CloudEvents ------------------------------------------------------------------ */

#define CE_TYPE "application/cloudevents+json"

static void test_cloudevents_structured(void **state)
{
    apitest *t = at_start(&echo_opts);
    static const char ce[] =
        "{\"specversion\": \"1.0\", \"id\": \"ce-1\", \"source\": \"ok-minimal\","
        " \"type\": \"thing_happened\", \"subject\": \"orders/7\","
        " \"time\": \"2026-01-02T03:04:05Z\", \"datacontenttype\": \"application/json\","
        " \"traceparent\": \"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\","
        " \"data\": {\"n\": 4}}";
    at_response r;
    char id[37], again[37];
    post(t, CE_TYPE, NULL, ce, &r);
    accepted_id(&r, 202, "accepted", id);
    at_response_free(&r);
    cJSON *ev = store_event_get(t->st, id);
    assert_string_equal(sget(ev, "event_type"), "thing_happened");
    assert_string_equal(sget(ev, "source"), "ok-minimal");
    assert_int_equal(jget(ev, "data.n")->valueint, 4);
    const cJSON *m = jget(ev, "metadata.additional_data.cloudevents");
    assert_string_equal(sget(m, "specversion"), "1.0");
    assert_string_equal(sget(m, "id"), "ce-1");
    assert_string_equal(sget(m, "subject"), "orders/7");
    assert_string_equal(sget(m, "time"), "2026-01-02T03:04:05Z");
    assert_string_equal(sget(m, "traceparent"),
                        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assert_null(jget(m, "type"));
    assert_null(jget(m, "source"));
    assert_null(jget(m, "data"));
    cJSON_Delete(ev);

    /* source + id identify a CloudEvent: sending it again is a retry */
    post(t, CE_TYPE, NULL, ce, &r);
    accepted_id(&r, 200, "duplicate", again);
    assert_string_equal(id, again);
    at_response_free(&r);
    /* no data: {} (then the schema decides: n is required) */
    post(t, CE_TYPE, NULL,
         "{\"specversion\": \"1.0\", \"id\": \"ce-2\", \"source\": \"ok-minimal\","
         " \"type\": \"thing_happened\"}",
         &r);
    assert_refused(&r, 400, "invalid_event", "data.n");
    at_response_free(&r);

    static const struct {
        const char *body, *path;
    } bad[] = {
        {"{\"specversion\": \"1.0\", \"source\": \"ok-minimal\", \"data\": {\"n\": 1}}", "id"},
        {"{\"specversion\": \"1.0\", \"source\": \"ok-minimal\", \"data\": {\"n\": 1}}", "type"},
        {"{\"id\": \"x\", \"source\": \"ok-minimal\", \"type\": \"thing_happened\"}",
         "specversion"},
        {"{\"specversion\": \"0.3\", \"id\": \"x\", \"source\": \"ok-minimal\","
         " \"type\": \"thing_happened\", \"data\": {\"n\": 1}}",
         "specversion"},
        {"{\"specversion\": \"1.0\", \"id\": \"x\", \"source\": \"/sensors/1\","
         " \"type\": \"thing_happened\", \"data\": {\"n\": 1}}",
         "source"},
        {"{\"specversion\": \"1.0\", \"id\": \"x\", \"source\": \"ok-minimal\","
         " \"type\": \"com.example.nope\", \"data\": {\"n\": 1}}",
         "type"},
        {"{\"specversion\": \"1.0\", \"id\": \"x\", \"source\": \"ok-minimal\","
         " \"type\": \"thing_happened\", \"data\": {\"n\": \"one\"}}",
         "data.n"},
        {"{\"specversion\": \"1.0\", \"id\": \"x\", \"source\": \"ok-minimal\","
         " \"type\": \"thing_happened\", \"data\": \"text\"}",
         "data"},
        {"{\"specversion\": \"1.0\", \"id\": \"x\", \"source\": \"ok-minimal\","
         " \"type\": \"thing_happened\", \"data_base64\": \"AAAA\"}",
         "data_base64"},
        {"{\"specversion\": \"1.0\", \"id\": \"x\", \"source\": \"ok-minimal\","
         " \"type\": \"thing_happened\", \"data\": {\"n\": 1}, \"Bad_Name\": 1}",
         "Bad_Name"},
        {"{\"specversion\": \"1.0\", \"id\": \"x\", \"source\": \"ok-minimal\","
         " \"type\": \"thing_happened\", \"data\": {\"n\": 1}, \"myext\": {\"a\": 1}}",
         "myext"},
        {"{\"specversion\": \"1.0\", \"id\": \"x\", \"source\": \"ok-minimal\","
         " \"type\": \"thing_happened\", \"data\": {\"n\": 1}, \"time\": \"noon\"}",
         "time"},
        {"{\"specversion\": \"1.0\", \"id\": \"x\", \"source\": \"ok-minimal\","
         " \"type\": \"thing_happened\", \"data\": {\"n\": 1}, \"datacontenttype\": "
         "\"text/plain\"}",
         "datacontenttype"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        post(t, CE_TYPE, NULL, bad[i].body, &r);
        assert_refused(&r, 400, "invalid_event", bad[i].path);
        at_response_free(&r);
    }
    assert_int_equal(count_events(t), 1);
    at_stop(t);
    (void)state;
}

static void test_cloudevents_binary(void **state)
{
    apitest *t = at_start(&echo_opts);
    static const char *const h[] = {"ce-specversion: 1.0",
                                    "ce-id: bin-1",
                                    "ce-source: ok-minimal",
                                    "ce-type: thing_happened",
                                    "ce-subject: a%20b",
                                    "CE-MyExt: x%2Fy",
                                    "ce-time: 2026-01-02T03:04:05.5+01:00",
                                    NULL};
    at_response r;
    char id[37], again[37];
    post(t, "application/json", h, "{\"n\": 6}", &r);
    accepted_id(&r, 202, "accepted", id);
    at_response_free(&r);
    cJSON *ev = store_event_get(t->st, id);
    assert_string_equal(sget(ev, "event_type"), "thing_happened");
    assert_int_equal(jget(ev, "data.n")->valueint, 6);
    const cJSON *m = jget(ev, "metadata.additional_data.cloudevents");
    assert_string_equal(sget(m, "id"), "bin-1");
    assert_string_equal(sget(m, "subject"), "a b"); /* percent-decoded */
    assert_string_equal(sget(m, "myext"), "x/y");   /* header names are lower-cased */
    assert_string_equal(sget(m, "datacontenttype"), "application/json");
    assert_null(jget(m, "type"));
    cJSON_Delete(ev);
    post(t, "application/json", h, "{\"n\": 6}", &r);
    accepted_id(&r, 200, "duplicate", again);
    assert_string_equal(id, again);
    at_response_free(&r);

    /* the same CloudEvent in structured mode is the same event */
    post(t, CE_TYPE, NULL,
         "{\"specversion\": \"1.0\", \"id\": \"bin-1\", \"source\": \"ok-minimal\","
         " \"type\": \"thing_happened\", \"data\": {\"n\": 6}}",
         &r);
    accepted_id(&r, 200, "duplicate", again);
    assert_string_equal(id, again);
    at_response_free(&r);
    /* an Idempotency-Key header takes the place of the CloudEvents id */
    static const char *const keyed[] = {"ce-specversion: 1.0",    "ce-id: bin-1",
                                        "ce-source: ok-minimal",  "ce-type: thing_happened",
                                        "Idempotency-Key: other", NULL};
    post(t, "application/json", keyed, "{\"n\": 6}", &r);
    accepted_id(&r, 202, "accepted", again);
    assert_string_not_equal(id, again);
    at_response_free(&r);

    static const struct {
        const char *const headers[6];
        const char *body, *path;
    } bad[] = {
        {{"ce-specversion: 1.0", "ce-id: b", "ce-source: ok-minimal", NULL},
         "{\"n\": 1}",
         "ce-type"},
        {{"ce-specversion: 1.0", "ce-type: thing_happened", "ce-source: ok-minimal", NULL},
         "{\"n\": 1}",
         "ce-id"},
        {{"ce-specversion: 0.3", "ce-id: b", "ce-source: ok-minimal", "ce-type: thing_happened",
          NULL},
         "{\"n\": 1}",
         "ce-specversion"},
        {{"ce-specversion: 1.0", "ce-id: b", "ce-source: nobody", "ce-type: thing_happened", NULL},
         "{\"n\": 1}",
         "ce-source"},
        {{"ce-specversion: 1.0", "ce-id: b", "ce-source: ok-minimal", "ce-type: nope", NULL},
         "{\"n\": 1}",
         "ce-type"},
        {{"ce-specversion: 1.0", "ce-id: b", "ce-source: ok-minimal", "ce-type: thing_happened",
          NULL},
         "{\"n\": true}",
         "data.n"},
        {{"ce-specversion: 1.0", "ce-id: b", "ce-source: ok-minimal", "ce-type: thing_happened",
          "ce-subject: %zz"},
         "{\"n\": 1}",
         "ce-subject"},
        {{"ce-specversion: 1.0", "ce-id: b", "ce-source: ok-minimal", "ce-type: thing_happened",
          "ce-bad_name: 1"},
         "{\"n\": 1}",
         "ce-bad_name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        post(t, "application/json", bad[i].headers, bad[i].body, &r);
        assert_refused(&r, 400, "invalid_event", bad[i].path);
        at_response_free(&r);
    }
    /* no body, no Content-Type: the data is {} (and n is required) */
    static const char *const nodata[] = {"ce-specversion: 1.0", "ce-id: b", "ce-source: ok-minimal",
                                         "ce-type: thing_happened", NULL};
    assert_int_equal(at_request(t, "POST", "/api/events/process", nodata, NULL, 0, &r), 0);
    assert_refused(&r, 400, "invalid_event", "data.n");
    at_response_free(&r);
    assert_int_equal(count_events(t), 2);
    at_stop(t);
    (void)state;
}

/* ---- backpressure and stopping ------------------------------------------------------ */

static const char *const slow_wf[] = {
    "id: slow\n"
    "steps:\n"
    "  - {id: nap, uses: test-step, with: {mode: sleep, sleep_ms: 3000}}\n",
    NULL};

/* Emit as ok-minimal until the queue refused three times in a row (each
 * refusal waited emit_wait_ms for room); returns how many were accepted. */
static unsigned long long fill_queue(apitest *t)
{
    const manifest *m = registry_find(t->r, "ok-minimal")->m;
    unsigned long long accepted = 0;
    int full = 0;
    for (int i = 0; i < 1000 && full < 3; i++) {
        int rc = hostapi_emit_checked(t->rt, m, "thing_happened", "{\"n\": 2}",
                                      EVH_NUL_TERMINATED, NULL, NULL, NULL, NULL);
        assert_true(rc == EVH_OK || rc == EVH_E_QUEUE_FULL);
        full = rc == EVH_E_QUEUE_FULL ? full + 1 : 0;
        accepted += rc == EVH_OK;
    }
    assert_int_equal(full, 3);
    return accepted;
}

static void test_queue_full_and_stopping(void **state)
{
    /* One worker asleep in the workflow of the first event (n == 1), a
     * dispatch queue and an event queue of one: the writer soon blocks
     * handing events to the busy worker, the event queue fills, and ingest
     * answers 429.  (A POST that gets through, n == 3, sleeps too.) */
    at_options o = {.workflows = slow_wf,
                    .triggers = "triggers:\n"
                                "  - {id: nap, source: ok-minimal, event_type: thing_happened,\n"
                                "     workflow: slow, conditions: {field: data.n, op: in, "
                                "value: [1, 3]}}\n",
                    .queue = 1,
                    .workers = 1};
    apitest *t = at_start(&o);
    char id[37];
    accept_event(t, "{" OK_HEAD ", \"data\": {\"n\": 1}}", id);
    /* Fill the event queue from the plugin side (non-durable emits) until
     * it stays full: a full queue alone may be the writer in the middle of
     * a commit.  A POST that still gets through is simply one more event. */
    unsigned long long accepted = 0;
    long status = 0;
    for (int round = 0; round < 20 && status != 429; round++) {
        accepted += fill_queue(t);
        at_response r;
        post_json(t, "{" OK_HEAD ", \"data\": {\"n\": 3}}", &r);
        status = r.status;
        if (status == 202) {
            accepted++;
        } else {
            assert_refused(&r, 429, "queue_full", NULL);
            char *retry = at_header(&r, "Retry-After");
            assert_string_equal(retry, "1");
            free(retry);
        }
        at_response_free(&r);
    }
    assert_int_equal(status, 429);
    /* nothing accepted is lost: the worker wakes up and drains everything */
    at_wait_settled(t, 1 + accepted);
    assert_int_equal(count_events(t), 1 + accepted);

    /* once the host stops, 503 with Retry-After */
    runtime_stop(t->rt);
    at_response r;
    post_json(t, "{" OK_HEAD ", \"data\": {\"n\": 3}}", &r);
    assert_refused(&r, 503, "stopping", NULL);
    char *retry = at_header(&r, "Retry-After");
    assert_non_null(retry);
    free(retry);
    at_response_free(&r);
    at_stop(t);
    (void)state;
}

/* ---- ingests waiting for their commit hold no server thread --------------------------- */

static size_t keep_body(char *p, size_t size, size_t n, void *ud)
{
    char *buf = ud;
    size_t len = strlen(buf), add = size * n;
    if (len + add < 512) {
        memcpy(buf + len, p, add);
        buf[len + add] = '\0';
    }
    return size * n;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_waiting_ingests_hold_no_thread(void **state)
{
    /* More concurrent POSTs than the server has threads (EVH_HTTP_THREADS),
     * all waiting for a commit that cannot happen yet (the test holds the
     * database's write lock): a GET must still be answered at once, and
     * every POST gets its 202 once the lock is released. */
    enum { N = EVH_HTTP_THREADS * 3 };
    apitest *t = at_start(&(at_options){0});
    sqlite3 *lockdb = NULL;
    assert_int_equal(sqlite3_open(t->db, &lockdb), SQLITE_OK);
    assert_int_equal(sqlite3_exec(lockdb, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/events/process", t->port);
    static char bodies[N][512];
    CURLM *multi = curl_multi_init();
    CURL *easy[N];
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    for (int i = 0; i < N; i++) {
        bodies[i][0] = '\0';
        easy[i] = curl_easy_init();
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, "{" OK_HEAD ", \"data\": {\"n\": 5}}");
        curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, keep_body);
        curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, bodies[i]);
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT, 60L);
    }
    /* One at a time, so that each reaches its handler before the next
     * connects (a server thread busy in a handler accepts nothing, so the
     * next lands on another): with a thread per waiting ingest, every
     * thread would be taken.  None can be answered while the lock is held. */
    int running = 0;
    for (int i = 0; i < N; i++) {
        curl_multi_add_handle(multi, easy[i]);
        double until = mono_s() + 0.05;
        while (mono_s() < until) {
            curl_multi_perform(multi, &running);
            curl_multi_poll(multi, NULL, 0, 10, NULL);
        }
    }
    assert_int_equal(running, N);

    double t0 = mono_s();
    at_response r;
    assert_int_equal(at_request(t, "GET", "/api/health", NULL, NULL, 0, &r), 0);
    double took = mono_s() - t0;
    assert_int_equal(r.status, 200);
    at_response_free(&r);
    /* a thread was free; with a thread per waiting ingest it would wait for the lock */
    if (took > 2.0)
        fail_msg("GET /api/health took %.2f s while %d ingests waited", took, N);

    assert_int_equal(sqlite3_exec(lockdb, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(lockdb);
    double until = mono_s() + 30;
    while (running && mono_s() < until) {
        curl_multi_perform(multi, &running);
        curl_multi_poll(multi, NULL, 0, 50, NULL);
    }
    assert_int_equal(running, 0);
    char ids[N][37];
    for (int i = 0; i < N; i++) {
        long status = 0;
        curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &status);
        if (status != 202)
            fail_msg("POST %d: %ld %s", i, status, bodies[i]);
        cJSON *j = cJSON_Parse(bodies[i]);
        snprintf(ids[i], sizeof ids[i], "%s", sget(j, "id"));
        cJSON_Delete(j);
        for (int k = 0; k < i; k++)
            assert_string_not_equal(ids[k], ids[i]);
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    curl_slist_free_all(hdr);
    curl_multi_cleanup(multi);
    /* each one is stored */
    at_wait_settled(t, N);
    for (int i = 0; i < N; i++) {
        char path[1024]; /* gcc -O2 does not bound ids[i] by its 37 bytes */
        snprintf(path, sizeof path, "/api/events/%s", ids[i]);
        assert_int_equal(at_request(t, "GET", path, NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        at_response_free(&r);
    }
    at_stop(t);
    (void)state;
}

/* ---- listing ------------------------------------------------------------------------ */

/* GET path; the ids of its items appended to ids (NULL: not kept); returns
 * the number of items and copies next_cursor ("" when null). */
static int list_page(apitest *t, const char *path, char ids[][37], size_t *n_ids, char *next,
                     size_t next_len)
{
    at_response r;
    assert_int_equal(at_request(t, "GET", path, NULL, NULL, 0, &r), 0);
    if (r.status != 200)
        fail_msg("GET %s: %ld %s", path, r.status, r.body);
    const cJSON *items = jget(r.json, "items");
    assert_true(cJSON_IsArray(items));
    int count = cJSON_GetArraySize(items);
    const cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        if (ids)
            snprintf(ids[(*n_ids)++], 37, "%s", sget(it, "id"));
        assert_non_null(sget(it, "status"));
        assert_non_null(jget(it, "metadata.timestamp"));
    }
    const cJSON *nc = jget(r.json, "next_cursor");
    assert_true(cJSON_IsString(nc) || cJSON_IsNull(nc));
    if (next)
        snprintf(next, next_len, "%s", cJSON_IsString(nc) ? nc->valuestring : "");
    at_response_free(&r);
    return count;
}

static int count_of(apitest *t, const char *path)
{
    return list_page(t, path, NULL, NULL, NULL, 0);
}

static void test_list_filters_and_pages(void **state)
{
    apitest *t = at_start(&echo_opts);
    char ids[5][37];
    for (int n = 1; n <= 5; n++) {
        char body[128];
        snprintf(body, sizeof body, "{" OK_HEAD ", \"data\": {\"n\": %d}}", n);
        accept_event(t, body, ids[n - 1]);
    }
    at_wait_settled(t, 5);

    /* filters: n >= 3 ran the workflow */
    assert_int_equal(count_of(t, "/api/events"), 5);
    assert_int_equal(count_of(t, "/api/events?source=ok-minimal&type=thing_happened"), 5);
    assert_int_equal(count_of(t, "/api/events?source=other"), 0);
    assert_int_equal(count_of(t, "/api/events?type=other"), 0);
    assert_int_equal(count_of(t, "/api/events?status=dispatched"), 3);
    assert_int_equal(count_of(t, "/api/events?status=unmatched"), 2);
    assert_int_equal(count_of(t, "/api/events?status=pending"), 0);
    assert_int_equal(count_of(t, "/api/events?workflow=echo"), 3);
    assert_int_equal(count_of(t, "/api/events?trigger=big&status=dispatched"), 3);
    assert_int_equal(count_of(t, "/api/events?trigger=other"), 0);
    assert_int_equal(count_of(t, "/api/events?since=2000-01-01T00:00:00Z"), 5);
    assert_int_equal(count_of(t, "/api/events?until=2000-01-01T00:00:00Z"), 0);
    assert_int_equal(count_of(t, "/api/events?since=2999-01-01T00:00:00Z"), 0);

    /* pages, newest first, with events arriving between them */
    char seen[16][37];
    size_t n_seen = 0;
    char cursor[64], path[128];
    assert_int_equal(list_page(t, "/api/events?limit=2", seen, &n_seen, cursor, sizeof cursor), 2);
    assert_string_equal(seen[0], ids[4]);
    char late[2][37];
    accept_event(t, "{" OK_HEAD ", \"data\": {\"n\": 10}}", late[0]);
    accept_event(t, "{" OK_HEAD ", \"data\": {\"n\": 11}}", late[1]);
    while (cursor[0]) {
        snprintf(path, sizeof path, "/api/events?limit=2&cursor=%s", cursor);
        assert_true(list_page(t, path, seen, &n_seen, cursor, sizeof cursor) > 0);
    }
    assert_int_equal(n_seen, 5); /* none twice, none skipped, none of the late ones */
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(seen[i], ids[4 - i]);
    /* the late ones lead a fresh first page */
    n_seen = 0;
    list_page(t, "/api/events?limit=2", seen, &n_seen, cursor, sizeof cursor);
    assert_string_equal(seen[0], late[1]);
    assert_string_equal(seen[1], late[0]);

    /* bad parameters name themselves */
    static const struct {
        const char *query, *path;
    } bad[] = {
        {"/api/events?cursor=zzz", "cursor"},      {"/api/events?cursor=x2024", "cursor"},
        {"/api/events?status=done", "status"},     {"/api/events?since=yesterday", "since"},
        {"/api/events?until=2024-13-01", "until"}, {"/api/events?source=", "source"},
        {"/api/events?limit=0", "limit"},          {"/api/events?limit=501", "limit"},
        {"/api/events?limit=abc", "limit"},        {"/api/events?limit=", "limit"},
    };
    at_response r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(at_request(t, "GET", bad[i].query, NULL, NULL, 0, &r), 0);
        assert_refused(&r, 400, "invalid", bad[i].path);
        at_response_free(&r);
    }
    assert_int_equal(at_request(t, "GET", "/api/events?limit=501", NULL, NULL, 0, &r), 0);
    assert_refused(&r, 400, "invalid", "limit");
    assert_string_equal(sget(cJSON_GetArrayItem(jget(r.json, "error.details"), 0), "reason"),
                        "'501' is not a number from 1 to 500");
    at_response_free(&r);
    at_wait_settled(t, 7);
    at_stop(t);
    (void)state;
}

int main(void)
{
    log_set_level(EVH_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_store_and_run),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_idempotency),
        cmocka_unit_test(test_cloudevents_structured),
        cmocka_unit_test(test_cloudevents_binary),
        cmocka_unit_test(test_queue_full_and_stopping),
        cmocka_unit_test(test_waiting_ingests_hold_no_thread),
        cmocka_unit_test(test_list_filters_and_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
