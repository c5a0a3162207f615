/*
 * test_api_stream.c - GET /api/events/stream: the lifecycle events as
 * Server-Sent Events, read with libcurl over loopback from the host
 * assembled in process (apitest.h).
 *
 *   - a workflow run streams jobStart, pluginStart, pluginComplete, ...,
 *     jobComplete (and the failing one's pluginError, jobError) in order,
 *     with ids one apart, each envelope the very body the webhooks deliver;
 *   - filters: ?workflow=, ?job=, ?events=;
 *   - resumption: disconnect, run more workflows, come back with
 *     Last-Event-ID (or ?last_event_id=) and get exactly what was missed,
 *     then the live events, with no gap and no duplicate; an id older than
 *     the buffer gets one "event: reset"; a malformed one 400;
 *   - API keys: 401 without one;
 *   - more than server.max_streams: 503 with Retry-After, while idle
 *     streams (more than the server's threads) leave the API answering;
 *     keepalive comments; a vanished client's slot comes back;
 *   - shutdown ends the streams cleanly.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <evhost/evhost.h>

#include "apitest.h"
#include "evh_limits.h"
#include "hostapi.h"
#include "stream.h"
#include "testutil.h"

/* ---- an SSE client on curl's multi interface ----------------------------------------- */

typedef struct sse_ev {
    char *id;    /* NULL: no id line */
    char *event; /* NULL: no event line */
    char *data;  /* NULL: no data line */
} sse_ev;

typedef struct sse_client {
    CURLM *m;
    CURL *c;
    struct curl_slist *hl;
    tu_buf raw; /* everything received */
    size_t parsed;
    sse_ev evs[512];
    size_t n;          /* blocks with an id or data */
    size_t keepalives; /* ": keepalive" comments */
    size_t blocks;     /* every block, the opening one too */
    int done;
    CURLcode result;
    long status;
} sse_client;

static size_t sse_on_data(char *p, size_t size, size_t n, void *ud)
{
    sse_client *s = ud;
    size_t add = tu_buf_append(p, size, n, &s->raw);
    assert_int_equal(add, size * n);
    return add;
}

/* Complete blocks ("...\n\n") into s->evs. */
static void sse_parse(sse_client *s)
{
    while (s->raw.data) {
        char *start = s->raw.data + s->parsed;
        char *end = strstr(start, "\n\n");
        if (!end)
            return;
        s->parsed = (size_t)(end + 2 - s->raw.data);
        s->blocks++;
        sse_ev ev = {0};
        char *block = strndup(start, (size_t)(end - start));
        for (char *save = NULL, *line = strtok_r(block, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
            if (!strcmp(line, ": keepalive"))
                s->keepalives++;
            char **field = !strncmp(line, "id: ", 4)      ? &ev.id
                           : !strncmp(line, "event: ", 7) ? &ev.event
                           : !strncmp(line, "data: ", 6)  ? &ev.data
                                                          : NULL;
            if (field) {
                assert_null(*field); /* one line each: the envelopes are one line */
                *field = strdup(strchr(line, ' ') + 1);
            }
        }
        free(block);
        if (ev.id || ev.data) {
            assert_true(s->n < sizeof s->evs / sizeof *s->evs);
            s->evs[s->n++] = ev;
        }
    }
}

/* Run the transfer for up to ms. */
static void sse_pump(sse_client *s, int ms)
{
    long long end = tu_now_ms() + ms;
    do {
        int running = 0;
        curl_multi_perform(s->m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(s->m, &left))) {
            if (msg->msg == CURLMSG_DONE) {
                s->done = 1;
                s->result = msg->data.result;
            }
        }
        curl_easy_getinfo(s->c, CURLINFO_RESPONSE_CODE, &s->status);
        sse_parse(s);
        if (s->done)
            return;
        curl_multi_poll(s->m, NULL, 0, 20, NULL);
    } while (tu_now_ms() < end);
}

/* Open path (query included); header may be NULL.  Returns once the
 * opening block arrived (the subscription exists) or the answer is
 * complete (an error). */
static sse_client *sse_open(apitest *t, const char *path, const char *header)
{
    sse_client *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->m = curl_multi_init();
    s->c = curl_easy_init();
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", t->port, path);
    s->hl = curl_slist_append(NULL, "Accept: text/event-stream");
    if (header)
        s->hl = curl_slist_append(s->hl, header);
    curl_easy_setopt(s->c, CURLOPT_URL, url);
    curl_easy_setopt(s->c, CURLOPT_HTTPHEADER, s->hl);
    curl_easy_setopt(s->c, CURLOPT_WRITEFUNCTION, sse_on_data);
    curl_easy_setopt(s->c, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->c, CURLOPT_NOSIGNAL, 1L);
    curl_multi_add_handle(s->m, s->c);
    long long end = tu_now_ms() + 10000;
    while (!s->done && !s->blocks && tu_now_ms() < end)
        sse_pump(s, 20);
    assert_true(s->done || s->blocks);
    return s;
}

/* Data events (those with an event line) received so far. */
static size_t sse_events(const sse_client *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->evs[i].event != NULL;
    return n;
}

static void sse_wait_events(sse_client *s, size_t n)
{
    long long end = tu_now_ms() + 15000;
    while (sse_events(s) < n && !s->done && tu_now_ms() < end)
        sse_pump(s, 50);
    if (sse_events(s) < n)
        fail_msg("%zu of %zu stream events came:\n%s", sse_events(s), n, s->raw.data ? s->raw.data : "");
}

/* The i-th data event. */
static const sse_ev *sse_event(const sse_client *s, size_t i)
{
    for (size_t k = 0; k < s->n; k++) {
        if (s->evs[k].event && i-- == 0)
            return &s->evs[k];
    }
    fail_msg("no stream event %zu", i);
    return NULL;
}

/* Disconnect (and free). */
static void sse_close(sse_client *s)
{
    curl_multi_remove_handle(s->m, s->c);
    curl_easy_cleanup(s->c);
    curl_multi_cleanup(s->m);
    curl_slist_free_all(s->hl);
    for (size_t i = 0; i < s->n; i++) {
        free(s->evs[i].id);
        free(s->evs[i].event);
        free(s->evs[i].data);
    }
    free(s->raw.data);
    free(s);
}

static uint64_t id_of(const sse_ev *e)
{
    assert_non_null(e->id);
    char *end;
    uint64_t v = strtoull(e->id, &end, 10);
    assert_true(*e->id && !*end);
    return v;
}

/* ---- the pipeline ------------------------------------------------------------------ */

static const char *const two_wfs[] = {
    "id: ok\nsteps:\n"
    "  - {id: first, uses: test-step, with: {value: 1}}\n"
    "  - {id: second, uses: test-step, with: {value: 2}}\n",
    "id: bad\nsteps:\n"
    "  - {id: first, uses: test-step, with: {value: 1}}\n"
    "  - {id: broken, uses: test-step, with: {mode: fail}}\n",
    NULL};
static const char two_triggers[] =
    "triggers:\n"
    "  - {id: t-ok, source: ok-minimal, event_type: thing_happened, workflow: ok,\n"
    "     conditions: {field: data.n, op: eq, value: 1}}\n"
    "  - {id: t-bad, source: ok-minimal, event_type: thing_happened, workflow: bad,\n"
    "     conditions: {field: data.n, op: eq, value: 2}}\n";

static const char *const ok_events[] = {"jobStart",    "pluginStart",    "pluginComplete",
                                        "pluginStart", "pluginComplete", "jobComplete"};
static const char *const bad_events[] = {"jobStart",    "pluginStart", "pluginComplete",
                                         "pluginStart", "pluginError", "jobError"};

/* n = 1 runs "ok", n = 2 runs "bad" (two_triggers). */
static void emit(apitest *t, int n, char id[37])
{
    char data[32];
    snprintf(data, sizeof data, "{\"n\":%d}", n);
    const manifest *m = registry_find(t->r, "ok-minimal")->m;
    assert_int_equal(hostapi_emit_checked(t->rt, m, "thing_happened", data, strlen(data),
                                          "user-7", NULL, NULL, id),
                     EVH_OK);
}

static const char *sget(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static void assert_keys(const cJSON *o, ...)
{
    va_list ap;
    va_start(ap, o);
    const cJSON *item = o ? o->child : NULL;
    const char *want;
    while ((want = va_arg(ap, const char *))) {
        if (!item)
            fail_msg("member '%s' is missing", want);
        if (strcmp(item->string, want))
            fail_msg("member '%s' where '%s' was expected", item->string, want);
        item = item->next;
    }
    va_end(ap);
    if (item)
        fail_msg("unexpected member '%s'", item->string);
}

/* The hub has published up to id (the events of runs nobody watches). */
static void wait_newest(apitest *t, uint64_t id)
{
    long long end = tu_now_ms() + 15000;
    stream_stats st;
    do {
        stream_hub_stats(t->hub, &st);
        if (st.newest >= id)
            return;
        usleep(5000);
    } while (tu_now_ms() < end);
    fail_msg("the stream reached id %" PRIu64 ", not %" PRIu64, st.newest, id);
}

/* The stream's events i .. i+6 are one job's: names in order, ids one
 * apart after `after`, every envelope about that job; returns the job id
 * (malloc'd). */
static char *check_job(const sse_client *s, size_t i, uint64_t after,
                       const char *const names[6], const char *wf_id)
{
    char *job = NULL;
    for (size_t k = 0; k < 6; k++) {
        const sse_ev *e = sse_event(s, i + k);
        assert_string_equal(e->event, names[k]);
        assert_true(id_of(e) == after + 1 + k);
        cJSON *env = cJSON_Parse(e->data);
        assert_non_null(env);
        assert_string_equal(sget(env, "event"), names[k]);
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(env, "data");
        const cJSON *job_o = cJSON_GetObjectItemCaseSensitive(data, "job");
        const cJSON *config = cJSON_GetObjectItemCaseSensitive(job_o, "config");
        assert_string_equal(sget(config, "workflow_id"), wf_id);
        if (!job)
            job = strdup(sget(data, "jobId"));
        assert_string_equal(sget(data, "jobId"), job);
        cJSON_Delete(env);
    }
    return job;
}

/* ---- order and the exact envelope ---------------------------------------------------- */

/* The webhooks' outbox (a subscription whose receiver is never there) holds
 * the envelope each event was delivered with: the stream must carry the
 * very same body. */
static void compare_with_outbox(apitest *t, const sse_client *s, size_t first, const char *job)
{
    char path[160];
    snprintf(path, sizeof path, "/api/deliveries?job=%s&limit=50", job);
    cJSON *items = NULL;
    long long end = tu_now_ms() + 10000;
    for (;;) {
        at_response r;
        assert_int_equal(at_request(t, "GET", path, NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        items = cJSON_DetachItemFromObject(r.json, "items");
        at_response_free(&r);
        if (cJSON_GetArraySize(items) == 6 || tu_now_ms() > end)
            break;
        cJSON_Delete(items);
        usleep(20000);
    }
    assert_int_equal(cJSON_GetArraySize(items), 6);
    for (int k = 0; k < 6; k++) {
        /* newest first */
        const cJSON *item = cJSON_GetArrayItem(items, 5 - k);
        snprintf(path, sizeof path, "/api/deliveries/%d",
                 (int)cJSON_GetObjectItemCaseSensitive(item, "id")->valuedouble);
        at_response r;
        assert_int_equal(at_request(t, "GET", path, NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        cJSON *streamed = cJSON_Parse(sse_event(s, first + (size_t)k)->data);
        const cJSON *delivered = cJSON_GetObjectItemCaseSensitive(r.json, "body");
        if (!cJSON_Compare(streamed, delivered, 1)) {
            char *a = cJSON_PrintUnformatted(streamed), *b = cJSON_PrintUnformatted(delivered);
            fail_msg("streamed:  %s\ndelivered: %s", a, b);
        }
        /* and the members in the contract's order (cJSON_Compare ignores it) */
        char *a = cJSON_PrintUnformatted(streamed), *b = cJSON_PrintUnformatted(delivered);
        assert_string_equal(a, b);
        free(a);
        free(b);
        cJSON_Delete(streamed);
        at_response_free(&r);
    }
    cJSON_Delete(items);
}

static void test_order_and_envelope(void **state)
{
    (void)state;
    at_options o = {.workflows = two_wfs,
                    .triggers = two_triggers,
                    .host_yaml = "notifications:\n"
                                 "  subscriptions:\n"
                                 "    - {id: outbox, url: \"http://127.0.0.1:1/never\", "
                                 "events: all, max_attempts: 1}\n"};
    apitest *t = at_start(&o);
    sse_client *s = sse_open(t, "/api/events/stream", NULL);
    assert_int_equal(s->status, 200);
    /* the opening block: the reconnection delay and where the stream starts */
    assert_non_null(strstr(s->raw.data, "retry: 2000\n"));
    assert_int_equal(s->n, 1);
    uint64_t start = id_of(&s->evs[0]);
    assert_null(s->evs[0].event);

    char ev_ok[37], ev_bad[37];
    emit(t, 1, ev_ok);
    sse_wait_events(s, 6);
    emit(t, 2, ev_bad);
    sse_wait_events(s, 12);
    char *x_ok = check_job(s, 0, start, ok_events, "ok");
    char *x_bad = check_job(s, 6, start + 6, bad_events, "bad");
    assert_string_not_equal(x_ok, x_bad);

    /* the envelope: exactly the webhooks' (docs/events.md) */
    for (size_t k = 0; k < 12; k++) {
        cJSON *env = cJSON_Parse(sse_event(s, k)->data);
        assert_keys(env, "event", "data", "timestamp", NULL);
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(env, "data");
        const char *name = sget(env, "event");
        if (!strcmp(name, "jobStart") || !strcmp(name, "jobComplete"))
            assert_keys(data, "jobId", "job", NULL);
        else if (!strcmp(name, "jobError"))
            assert_keys(data, "jobId", "error", "job", NULL);
        else if (!strcmp(name, "pluginStart"))
            assert_keys(data, "jobId", "pluginName", "job", NULL);
        else if (!strcmp(name, "pluginComplete"))
            assert_keys(data, "jobId", "pluginName", "metrics", "job", NULL);
        else
            assert_keys(data, "jobId", "pluginName", "error", "job", NULL);
        cJSON_Delete(env);
    }
    compare_with_outbox(t, s, 0, x_ok);
    compare_with_outbox(t, s, 6, x_bad);

    /* what EventSource needs */
    char *ct = NULL;
    curl_easy_getinfo(s->c, CURLINFO_CONTENT_TYPE, &ct);
    assert_string_equal(ct, "text/event-stream");
    free(x_ok);
    free(x_bad);
    sse_close(s);
    at_stop(t);
}

/* ---- filters ------------------------------------------------------------------------- */

static void test_filters(void **state)
{
    (void)state;
    at_options o = {.workflows = two_wfs, .triggers = two_triggers};
    apitest *t = at_start(&o);
    sse_client *all = sse_open(t, "/api/events/stream", NULL);
    sse_client *bad = sse_open(t, "/api/events/stream?workflow=bad", NULL);
    sse_client *ends = sse_open(t, "/api/events/stream?events=jobComplete,jobError", NULL);
    uint64_t start = id_of(&all->evs[0]);
    char ev[37];
    emit(t, 1, ev);
    sse_wait_events(all, 6);
    emit(t, 2, ev);
    sse_wait_events(all, 12);
    char *x_ok = check_job(all, 0, start, ok_events, "ok");
    char *x_bad = check_job(all, 6, start + 6, bad_events, "bad");

    /* ?workflow=: the failing run's six, with the ids they have in the
     * whole stream */
    sse_wait_events(bad, 6);
    char *x = check_job(bad, 0, start + 6, bad_events, "bad");
    assert_string_equal(x, x_bad);
    free(x);
    /* ?events=: the two ends */
    sse_wait_events(ends, 2);
    assert_string_equal(sse_event(ends, 0)->event, "jobComplete");
    assert_true(id_of(sse_event(ends, 0)) == start + 6);
    assert_string_equal(sse_event(ends, 1)->event, "jobError");
    assert_true(id_of(sse_event(ends, 1)) == start + 12);

    /* ?job=, from the start of the test (resumption): that job's six only */
    char path[256];
    snprintf(path, sizeof path, "/api/events/stream?job=%s&last_event_id=%" PRIu64, x_ok, start);
    sse_client *one = sse_open(t, path, NULL);
    sse_wait_events(one, 6);
    x = check_job(one, 0, start, ok_events, "ok");
    assert_string_equal(x, x_ok);
    free(x);
    /* nothing more arrives for the others: a run of the other workflow */
    emit(t, 2, ev);
    sse_wait_events(all, 18);
    sse_wait_events(bad, 12);
    sse_wait_events(ends, 3);
    sse_pump(one, 200);
    sse_pump(bad, 100);
    sse_pump(ends, 100);
    assert_int_equal(sse_events(one), 6);
    assert_int_equal(sse_events(bad), 12);
    assert_int_equal(sse_events(ends), 3);

    /* bad filters: 400 naming the parameter */
    static const char *const bad_paths[] = {"/api/events/stream?events=jobStart,jobDone",
                                            "/api/events/stream?events=",
                                            "/api/events/stream?job=",
                                            "/api/events/stream?workflow=", NULL};
    static const char *const fields[] = {"events", "events", "job", "workflow"};
    for (size_t i = 0; bad_paths[i]; i++) {
        at_response r;
        assert_int_equal(at_request(t, "GET", bad_paths[i], NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 400);
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(r.json, "error");
        const cJSON *d0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(err, "details"), 0);
        assert_string_equal(sget(d0, "path"), fields[i]);
        at_response_free(&r);
    }
    at_response r;
    assert_int_equal(at_request(t, "GET", "/api/events/stream?events=jobStart,jobDone", NULL,
                                NULL, 0, &r), 0);
    assert_non_null(strstr(r.body, "'jobDone' is not a lifecycle event"));
    at_response_free(&r);
    free(x_ok);
    free(x_bad);
    sse_close(one);
    sse_close(ends);
    sse_close(bad);
    sse_close(all);
    at_stop(t);
}

/* ---- resumption ---------------------------------------------------------------------- */

static void test_resume_exactly_what_was_missed(void **state)
{
    (void)state;
    at_options o = {.workflows = two_wfs, .triggers = two_triggers};
    apitest *t = at_start(&o);
    sse_client *s = sse_open(t, "/api/events/stream", NULL);
    uint64_t start = id_of(&s->evs[0]);
    char ev[37];
    emit(t, 1, ev);
    sse_wait_events(s, 6);
    free(check_job(s, 0, start, ok_events, "ok"));
    uint64_t last = id_of(sse_event(s, 5));
    sse_close(s);

    /* three runs while nobody listens */
    emit(t, 1, ev);
    emit(t, 2, ev);
    emit(t, 1, ev);
    wait_newest(t, last + 18);

    char header[64];
    snprintf(header, sizeof header, "Last-Event-ID: %" PRIu64, last);
    s = sse_open(t, "/api/events/stream", header);
    assert_int_equal(s->status, 200);
    sse_wait_events(s, 18);
    /* then live: one more run */
    emit(t, 2, ev);
    sse_wait_events(s, 24);
    sse_pump(s, 200);
    assert_int_equal(sse_events(s), 24);
    /* no gap, no duplicate: every id from last + 1 on, once, in order; the
     * jobs' events in their order (runs may interleave, jobs may not
     * reorder) */
    for (size_t k = 0; k < 24; k++)
        assert_true(id_of(sse_event(s, k)) == last + 1 + k);
    size_t starts = 0, ends = 0;
    for (size_t k = 0; k < 24; k++) {
        const char *e = sse_event(s, k)->event;
        starts += !strcmp(e, "jobStart");
        ends += !strcmp(e, "jobComplete") || !strcmp(e, "jobError");
    }
    assert_int_equal(starts, 4);
    assert_int_equal(ends, 4);
    /* a resumed stream does not announce a starting id: it has one */
    assert_null(strstr(s->raw.data, "retry: 2000\nid:"));
    sse_close(s);

    /* the same through ?last_event_id= (EventSource polyfills), which the
     * header overrides */
    char path[128];
    snprintf(path, sizeof path, "/api/events/stream?last_event_id=%" PRIu64, last + 18);
    s = sse_open(t, path, NULL);
    sse_wait_events(s, 6);
    assert_true(id_of(sse_event(s, 0)) == last + 19);
    sse_close(s);
    snprintf(header, sizeof header, "Last-Event-ID: %" PRIu64, last + 23);
    s = sse_open(t, path, header);
    sse_wait_events(s, 1);
    sse_pump(s, 200);
    assert_int_equal(sse_events(s), 1);
    assert_true(id_of(sse_event(s, 0)) == last + 24);
    sse_close(s);

    /* a malformed id: 400 naming where it came from */
    static const char *const bad_headers[] = {"Last-Event-ID: abc", "Last-Event-ID: -1",
                                              "Last-Event-ID: 12x",
                                              "Last-Event-ID: 123456789012345678901234"};
    for (size_t i = 0; i < 4; i++) {
        const char *h[] = {bad_headers[i], NULL};
        at_response r;
        assert_int_equal(at_request(t, "GET", "/api/events/stream", h, NULL, 0, &r), 0);
        assert_int_equal(r.status, 400);
        assert_non_null(strstr(r.body, "Last-Event-ID: '"));
        at_response_free(&r);
    }
    at_response r;
    assert_int_equal(at_request(t, "GET", "/api/events/stream?last_event_id=x1", NULL, NULL, 0,
                                &r), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "last_event_id: 'x1' is not an id of this stream"));
    at_response_free(&r);
    at_stop(t);
}

/* More events than the buffer holds while away: one reset, then live. */
static void test_resume_beyond_the_buffer(void **state)
{
    (void)state;
    at_options o = {.workflows = two_wfs,
                    .triggers = two_triggers,
                    .host_yaml = "server: {stream_buffer_events: 16}\n"};
    apitest *t = at_start(&o);
    sse_client *s = sse_open(t, "/api/events/stream", NULL);
    uint64_t start = id_of(&s->evs[0]);
    sse_close(s);
    char ev[37];
    for (int i = 0; i < 4; i++)
        emit(t, 1, ev);
    wait_newest(t, start + 24);
    stream_stats st;
    stream_hub_stats(t->hub, &st);
    assert_int_equal(st.events, 16);
    assert_true(st.oldest == start + 9);

    /* start + 8 is still covered (the event before the oldest held) */
    char header[64];
    snprintf(header, sizeof header, "Last-Event-ID: %" PRIu64, start + 8);
    s = sse_open(t, "/api/events/stream", header);
    sse_wait_events(s, 16);
    assert_true(id_of(sse_event(s, 0)) == start + 9);
    assert_null(strstr(s->raw.data, "event: reset"));
    sse_close(s);

    /* start + 7 is not: a reset naming the ids, then live from the newest */
    snprintf(header, sizeof header, "Last-Event-ID: %" PRIu64, start + 7);
    s = sse_open(t, "/api/events/stream", header);
    sse_wait_events(s, 1);
    const sse_ev *reset = sse_event(s, 0);
    assert_string_equal(reset->event, "reset");
    assert_true(id_of(reset) == start + 24);
    cJSON *j = cJSON_Parse(reset->data);
    char want[24];
    snprintf(want, sizeof want, "%" PRIu64, start + 7);
    assert_string_equal(sget(j, "last_event_id"), want);
    snprintf(want, sizeof want, "%" PRIu64, start + 9);
    assert_string_equal(sget(j, "oldest_event_id"), want);
    snprintf(want, sizeof want, "%" PRIu64, start + 24);
    assert_string_equal(sget(j, "newest_event_id"), want);
    assert_non_null(strstr(sget(j, "reason"), "server.stream_buffer_events"));
    cJSON_Delete(j);
    emit(t, 1, ev);
    sse_wait_events(s, 7);
    free(check_job(s, 1, start + 24, ok_events, "ok"));
    sse_close(s);

    /* an id from an earlier process (smaller: ids start at the clock) and
     * one from the future: resets too */
    s = sse_open(t, "/api/events/stream", "Last-Event-ID: 42");
    sse_wait_events(s, 1);
    assert_string_equal(sse_event(s, 0)->event, "reset");
    sse_close(s);
    snprintf(header, sizeof header, "Last-Event-ID: %" PRIu64, start + 1000);
    s = sse_open(t, "/api/events/stream", header);
    sse_wait_events(s, 1);
    assert_string_equal(sse_event(s, 0)->event, "reset");
    assert_non_null(strstr(sse_event(s, 0)->data, "newer than any event"));
    sse_close(s);
    at_stop(t);
}

/* ---- API keys, the cap, keepalives, shutdown ------------------------------------------ */

static void test_api_key(void **state)
{
    (void)state;
    at_options o = {.workflows = two_wfs,
                    .triggers = two_triggers,
                    .host_yaml = "server: {api_keys: [{name: ci, key: s3cret}]}\n"};
    apitest *t = at_start(&o);
    sse_client *s = sse_open(t, "/api/events/stream", NULL);
    sse_pump(s, 5000);
    assert_true(s->done);
    assert_int_equal(s->status, 401);
    assert_non_null(strstr(s->raw.data, "\"code\":\"unauthorized\""));
    sse_close(s);
    s = sse_open(t, "/api/events/stream", "Authorization: Bearer wrong");
    sse_pump(s, 5000);
    assert_int_equal(s->status, 401);
    sse_close(s);
    s = sse_open(t, "/api/events/stream", "Authorization: Bearer s3cret");
    assert_int_equal(s->status, 200);
    char ev[37];
    emit(t, 1, ev);
    sse_wait_events(s, 6);
    sse_close(s);
    at_stop(t);
}

static void test_cap_keepalive_shutdown(void **state)
{
    (void)state;
    /* more streams than the server has threads: an idle stream must not
     * hold one */
    enum { CAP = EVH_HTTP_THREADS + 2 };
    char yaml[128];
    snprintf(yaml, sizeof yaml, "server: {max_streams: %d, stream_keepalive_s: 1}\n", CAP);
    at_options o = {.workflows = two_wfs, .triggers = two_triggers, .host_yaml = yaml};
    apitest *t = at_start(&o);
    sse_client *s[CAP];
    for (int i = 0; i < CAP; i++) {
        s[i] = sse_open(t, "/api/events/stream", NULL);
        assert_int_equal(s[i]->status, 200);
    }
    /* the API still answers, and runs still stream */
    at_response r;
    assert_int_equal(at_request(t, "GET", "/api/health", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    at_response_free(&r);
    char ev[37];
    emit(t, 1, ev);
    for (int i = 0; i < CAP; i++)
        sse_wait_events(s[i], 6);

    assert_int_equal(at_request(t, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    char line[64];
    snprintf(line, sizeof line, "\nevhost_streams %d\n", CAP);
    assert_non_null(strstr(r.body, line));
    assert_non_null(strstr(r.body, "\nevhost_stream_buffered_events 6\n"));
    at_response_free(&r);

    /* one more: 503, Retry-After, a reason naming the setting */
    assert_int_equal(at_request(t, "GET", "/api/events/stream", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 503);
    char *ra = at_header(&r, "Retry-After");
    assert_string_equal(ra, "5");
    free(ra);
    assert_non_null(strstr(r.body, "\"code\":\"too_many_streams\""));
    assert_non_null(strstr(r.body, "server.max_streams"));
    at_response_free(&r);

    /* a quiet stream gets keepalives (every stream_keepalive_s) */
    long long end = tu_now_ms() + 10000;
    while (s[0]->keepalives < 2 && tu_now_ms() < end)
        sse_pump(s[0], 100);
    assert_true(s[0]->keepalives >= 2);

    /* a client that went away gives its slot back (found by the next
     * write, a keepalive at the latest) */
    sse_close(s[CAP - 1]);
    s[CAP - 1] = NULL;
    end = tu_now_ms() + 10000;
    for (;;) {
        sse_client *again = sse_open(t, "/api/events/stream", NULL);
        if (again->status == 200) {
            s[CAP - 1] = again;
            break;
        }
        assert_int_equal(again->status, 503);
        sse_close(again);
        assert_true(tu_now_ms() < end);
        for (int i = 0; i < CAP - 1; i++)
            sse_pump(s[i], 20);
        usleep(100000);
    }

    /* shutdown ends every stream with a clean end of the body */
    at_stop(t);
    for (int i = 0; i < CAP; i++) {
        sse_pump(s[i], 5000);
        assert_true(s[i]->done);
        assert_int_equal(s[i]->result, CURLE_OK);
        sse_close(s[i]);
    }
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_envelope),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_resume_exactly_what_was_missed),
        cmocka_unit_test(test_resume_beyond_the_buffer),
        cmocka_unit_test(test_api_key),
        cmocka_unit_test(test_cap_keepalive_shutdown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
