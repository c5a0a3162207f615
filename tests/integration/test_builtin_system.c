/*
 * test_builtin_system.c - the built-in `system` event source (events the
 * host emits on its behalf: workflow_completed, workflow_failed,
 * plugin_failed, host_started, user_login) and the `filter` and `emit`
 * steps, loaded from the build tree with dlopen and run by the real engine
 * (tests/support/apitest.c; max_chain_depth 4 there).  Also the SDK 1.1
 * additions they stand on: condition_eval, emit_id and
 * EVH_STEP_STOP_WORKFLOW.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <evhost/evhost.h>

#include "apitest.h"
#include "engine.h"
#include "event.h"
#include "hostapi.h"
#include "registry.h"
#include "store.h"
#include "system_events.h"
#include "testutil.h"
#include "workflow.h"

#define WAIT_MS 20000

/* ---- helpers ----------------------------------------------------------------- */

static const char *sget(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static const cJSON *dget(const cJSON *event, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(event, "data"), key);
}

static const char *dstr(const cJSON *event, const char *key)
{
    return cJSON_GetStringValue(dget(event, key));
}

static const char *user_of(const cJSON *event)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(event, "metadata"), "user_id"));
}

/* Emit thing_happened as ok-minimal (user user-7); its id into id. */
static void emit(apitest *t, const char *data, char id[37])
{
    const manifest *m = registry_find(t->r, "ok-minimal")->m;
    assert_int_equal(hostapi_emit_checked(t->rt, m, "thing_happened", data, strlen(data),
                                          "user-7", NULL, NULL, id),
                     EVH_OK);
}

/* The stored events of (source, type), newest first. */
static cJSON *events_of(apitest *t, const char *source, const char *type)
{
    store_filter f = {.source = source, .event_type = type, .limit = 500};
    cJSON *rows = store_events_list(t->st, &f, NULL);
    assert_non_null(rows);
    return rows;
}

/* Wait until at least n events of (source, type) are stored; returns them. */
static cJSON *wait_events(apitest *t, const char *source, const char *type, int n)
{
    long long end = tu_now_ms() + WAIT_MS;
    for (;;) {
        cJSON *rows = events_of(t, source, type);
        if (cJSON_GetArraySize(rows) >= n)
            return rows;
        cJSON_Delete(rows);
        if (tu_now_ms() > end)
            fail_msg("fewer than %d %s/%s events after %d ms", n, source, type, WAIT_MS);
        usleep(10000);
    }
}

/* The finished executions of workflow wf (as listed), waiting for n. */
static cJSON *wait_executions(apitest *t, const char *wf, int n)
{
    long long end = tu_now_ms() + WAIT_MS;
    for (;;) {
        store_filter f = {.workflow_id = wf, .limit = 500};
        cJSON *rows = store_executions_list(t->st, &f, NULL);
        assert_non_null(rows);
        int done = 0;
        const cJSON *r;
        cJSON_ArrayForEach(r, rows)
        {
            const char *st = sget(r, "status");
            done += st && (!strcmp(st, "succeeded") || !strcmp(st, "failed"));
        }
        if (done >= n)
            return rows;
        cJSON_Delete(rows);
        if (tu_now_ms() > end)
            fail_msg("fewer than %d finished executions of '%s' after %d ms", n, wf, WAIT_MS);
        usleep(10000);
    }
}

/* The one execution of wf for event_id, with its steps. */
static cJSON *execution_for(apitest *t, const char *wf, const char *event_id)
{
    long long end = tu_now_ms() + WAIT_MS;
    for (;;) {
        store_filter f = {.workflow_id = wf, .limit = 500};
        cJSON *rows = store_executions_list(t->st, &f, NULL);
        assert_non_null(rows);
        cJSON *found = NULL;
        const cJSON *r;
        cJSON_ArrayForEach(r, rows)
        {
            const char *st = sget(r, "status");
            if (!strcmp(sget(r, "event_id"), event_id) && st &&
                (!strcmp(st, "succeeded") || !strcmp(st, "failed")))
                found = store_execution_get(t->st, sget(r, "id"));
        }
        cJSON_Delete(rows);
        if (found)
            return found;
        if (tu_now_ms() > end)
            fail_msg("no finished execution of '%s' for event %s", wf, event_id);
        usleep(10000);
    }
}

/* The (last) run of step id in execution x. */
static const cJSON *step_run(const cJSON *x, const char *id)
{
    const cJSON *found = NULL, *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(x, "steps"))
    {
        if (!strcmp(sget(s, "step_id"), id))
            found = s;
    }
    if (!found)
        fail_msg("no run of step '%s'", id);
    return found;
}

/* The event of (source, type) whose data.key equals value; NULL if none. */
static const cJSON *find_by(const cJSON *events, const char *key, const char *value)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, events)
    {
        const char *v = dstr(e, key);
        if (v && !strcmp(v, value))
            return e;
    }
    return NULL;
}

static uint32_t depth_of(apitest *t, const char *event_id)
{
    evh_event *ev = store_event_load(t->st, event_id);
    assert_non_null(ev);
    uint32_t d = ev->chain_depth;
    event_free(ev);
    return d;
}

static const char *const with_system[] = {"system", NULL};

/* ---- workflow_completed / workflow_failed ----------------------------------- */

static const char *const chain_workflows[] = {
    "id: first\n"
    "steps:\n"
    "  - {id: a, uses: test-step, with: {value: 1}}\n",
    "id: second\n"
    "steps:\n"
    "  - {id: b, uses: test-step, with: {value: \"{{ event.data.execution_id }}\"}}\n",
    NULL};

static const char *const chain_triggers =
    "triggers:\n"
    "  - {id: t1, source: ok-minimal, event_type: thing_happened, workflow: first}\n"
    "  - id: t2\n"
    "    source: system\n"
    "    event_type: workflow_completed\n"
    "    workflow: second\n"
    "    conditions: [{field: data.workflow_id, op: eq, value: first}]\n";

/* first finishes -> system/workflow_completed -> trigger t2 -> second, which
 * sees the finished execution's id; the event names it and carries the
 * triggering event's user and chain depth + 1. */
static void test_workflow_completed_triggers_next(void **state)
{
    (void)state;
    at_options o = {.builtins = with_system, .workflows = chain_workflows,
                    .triggers = chain_triggers};
    apitest *t = at_start(&o);
    char id[37];
    emit(t, "{\"n\": 1}", id);
    cJSON *first = execution_for(t, "first", id);
    assert_string_equal(sget(first, "status"), "succeeded");
    const char *first_id = sget(first, "id");

    cJSON *events = wait_events(t, "system", "workflow_completed", 1);
    const cJSON *done = find_by(events, "execution_id", first_id);
    assert_non_null(done);
    assert_string_equal(sget(done, "source"), "system");
    assert_string_equal(dstr(done, "workflow_id"), "first");
    assert_string_equal(dstr(done, "trigger_id"), "t1");
    assert_string_equal(dstr(done, "event_id"), id);
    assert_string_equal(dstr(done, "status"), "succeeded");
    assert_true(cJSON_IsNumber(dget(done, "duration_ms")));
    assert_null(dget(done, "error"));
    assert_null(dget(done, "stopped_by"));
    assert_string_equal(user_of(done), "user-7");
    assert_int_equal(depth_of(t, sget(done, "id")), 1);

    /* second ran for that event, with the first execution's id */
    cJSON *second = execution_for(t, "second", sget(done, "id"));
    assert_string_equal(sget(second, "status"), "succeeded");
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(step_run(second, "b"), "output");
    assert_string_equal(sget(out, "value"), first_id);
    assert_string_equal(sget(second, "trigger_id"), "t2");

    /* and second's own completion is an event too (no trigger: unmatched) */
    cJSON_Delete(events);
    events = wait_events(t, "system", "workflow_completed", 2);
    const cJSON *done2 = find_by(events, "execution_id", sget(second, "id"));
    assert_non_null(done2);
    assert_int_equal(depth_of(t, sget(done2, "id")), 2);

    cJSON_Delete(events);
    cJSON_Delete(second);
    cJSON_Delete(first);
    at_stop(t);
}

/* A replay finishing reports too, with replay_of. */
static void test_replay_reports(void **state)
{
    (void)state;
    at_options o = {.builtins = with_system, .workflows = chain_workflows,
                    .triggers = chain_triggers};
    apitest *t = at_start(&o);
    char id[37];
    emit(t, "{\"n\": 2}", id);
    cJSON *first = execution_for(t, "first", id);
    char new_id[37];
    char *err = NULL;
    assert_int_equal(engine_replay(t->e, sget(first, "id"), NULL, new_id, &err), EVH_OK);
    long long end = tu_now_ms() + WAIT_MS;
    const cJSON *done = NULL;
    cJSON *events = NULL;
    while (!done) {
        cJSON_Delete(events);
        events = events_of(t, "system", "workflow_completed");
        done = find_by(events, "execution_id", new_id);
        if (!done && tu_now_ms() > end)
            fail_msg("no workflow_completed for the replay %s", new_id);
        usleep(10000);
    }
    assert_string_equal(dstr(done, "replay_of"), sget(first, "id"));
    assert_string_equal(dstr(done, "event_id"), id);
    assert_int_equal(depth_of(t, sget(done, "id")), 1);
    cJSON_Delete(events);
    cJSON_Delete(first);
    at_stop(t);
}

/* A workflow triggered by its own workflow_completed is a loop: each
 * completion is one level deeper, and the engine stops dispatching past
 * max_chain_depth (4 in apitest): executions for depths 0..4, then the
 * depth-5 completion is stored but not dispatched. */
static void test_self_triggered_loop_is_cut(void **state)
{
    (void)state;
    static const char *const wfs[] = {"id: loop\n"
                                      "steps:\n"
                                      "  - {id: a, uses: test-step}\n",
                                      NULL};
    at_options o = {.builtins = with_system,
                    .workflows = wfs,
                    .triggers = "triggers:\n"
                                "  - {id: start, source: ok-minimal, event_type: thing_happened, "
                                "workflow: loop}\n"
                                "  - id: again\n"
                                "    source: system\n"
                                "    event_type: workflow_completed\n"
                                "    workflow: loop\n"
                                "    conditions: {field: data.workflow_id, op: eq, value: loop}\n"};
    apitest *t = at_start(&o);
    char id[37];
    emit(t, "{\"n\": 1}", id);
    long long end = tu_now_ms() + WAIT_MS;
    engine_stats s;
    do {
        engine_get_stats(t->e, &s);
        if (s.chain_cut >= 1)
            break;
        usleep(10000);
    } while (tu_now_ms() < end);
    assert_int_equal(s.chain_cut, 1);
    cJSON *rows = wait_executions(t, "loop", 5);
    usleep(200000); /* nothing more comes */
    cJSON_Delete(rows);
    rows = wait_executions(t, "loop", 5);
    assert_int_equal(cJSON_GetArraySize(rows), 5);
    cJSON_Delete(rows);
    /* five completions: depths 1..5, the last one cut (unmatched) */
    cJSON *events = wait_events(t, "system", "workflow_completed", 5);
    assert_int_equal(cJSON_GetArraySize(events), 5);
    unsigned seen = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, events)
    {
        uint32_t d = depth_of(t, sget(e, "id"));
        assert_true(d >= 1 && d <= 5);
        seen |= 1u << d;
        if (d == 5)
            assert_string_equal(sget(e, "status"), "unmatched");
    }
    assert_int_equal(seen, 0x3e);
    engine_get_stats(t->e, &s);
    assert_int_equal(s.chain_cut, 1);
    cJSON_Delete(events);
    at_stop(t);
}

static void test_workflow_failed(void **state)
{
    (void)state;
    static const char *const wfs[] = {
        "id: breaks\n"
        "steps:\n"
        "  - {id: a, uses: test-step, with: {mode: fail}}\n"
        "  - {id: b, uses: test-step}\n",
        "id: alert\n"
        "steps:\n"
        "  - {id: say, uses: test-step, with: {value: \"{{ event.data.error }}\"}}\n",
        NULL};
    at_options o = {.builtins = with_system,
                    .workflows = wfs,
                    .triggers = "triggers:\n"
                                "  - {id: t1, source: ok-minimal, event_type: thing_happened, "
                                "workflow: breaks}\n"
                                "  - {id: t2, source: system, event_type: workflow_failed, "
                                "workflow: alert}\n"};
    apitest *t = at_start(&o);
    char id[37];
    emit(t, "{\"n\": 1}", id);
    cJSON *x = execution_for(t, "breaks", id);
    assert_string_equal(sget(x, "status"), "failed");
    cJSON *events = wait_events(t, "system", "workflow_failed", 1);
    const cJSON *f = cJSON_GetArrayItem(events, 0);
    assert_string_equal(dstr(f, "execution_id"), sget(x, "id"));
    assert_string_equal(dstr(f, "status"), "failed");
    assert_string_equal(dstr(f, "workflow_id"), "breaks");
    assert_non_null(strstr(dstr(f, "error"), "failing on purpose"));
    assert_non_null(strstr(dstr(f, "error"), "step 'a'"));
    /* no workflow_completed for it */
    cJSON *ok = events_of(t, "system", "workflow_completed");
    assert_null(find_by(ok, "execution_id", sget(x, "id")));
    cJSON_Delete(ok);
    /* the alert workflow ran with the error */
    cJSON *alert = execution_for(t, "alert", sget(f, "id"));
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(step_run(alert, "say"), "output");
    assert_non_null(strstr(sget(out, "value"), "failing on purpose"));
    cJSON_Delete(alert);
    cJSON_Delete(events);
    cJSON_Delete(x);
    at_stop(t);
}

/* ---- plugin_failed, host_started ------------------------------------------- */

static void test_plugin_failed(void **state)
{
    (void)state;
    static const char *const fixtures[] = {"ok-minimal", "test-step", "init-fails", "run-fails",
                                           NULL};
    static const char *const wfs[] = {"id: note\n"
                                      "steps:\n"
                                      "  - {id: a, uses: test-step, with: {value: "
                                      "\"{{ event.data.plugin }}\"}}\n",
                                      NULL};
    at_options o = {.fixtures = fixtures,
                    .builtins = with_system,
                    .workflows = wfs,
                    .triggers = "triggers:\n"
                                "  - {id: t1, source: system, event_type: plugin_failed, "
                                "workflow: note}\n"};
    apitest *t = at_start(&o);
    cJSON *events = wait_events(t, "system", "plugin_failed", 2);
    assert_int_equal(cJSON_GetArraySize(events), 2);
    const cJSON *load = find_by(events, "plugin", "init-fails");
    assert_non_null(load);
    assert_string_equal(dstr(load, "kind"), "event-source");
    assert_string_equal(dstr(load, "stage"), "load");
    assert_string_equal(dstr(load, "code"), "EVH_E_CONFIG");
    assert_non_null(strstr(dstr(load, "error"), "cannot open device"));
    const cJSON *run = find_by(events, "plugin", "run-fails");
    assert_non_null(run);
    assert_string_equal(dstr(run, "stage"), "run");
    assert_string_equal(dstr(run, "code"), "EVH_E_IO");
    assert_non_null(strstr(dstr(run, "error"), "run() failed"));
    assert_int_equal(depth_of(t, sget(run, "id")), 0);
    /* and the trigger ran the workflow for each */
    cJSON *rows = wait_executions(t, "note", 2);
    cJSON_Delete(rows);
    cJSON_Delete(events);
    at_stop(t);
}

/* host_started (what daemon.c calls once the sources run); and the
 * plugin's `events` config turns the others off. */
static void test_host_started_and_events_config(void **state)
{
    (void)state;
    at_options o = {.builtins = with_system,
                    .workflows = chain_workflows,
                    .triggers = chain_triggers,
                    .plugin_configs = "{\"system\": {\"events\": [\"host_started\"]}}"};
    apitest *t = at_start(&o);
    system_events_host_started(t->r);
    cJSON *events = wait_events(t, "system", "host_started", 1);
    const cJSON *h = cJSON_GetArrayItem(events, 0);
    assert_string_equal(dstr(h, "abi"), EVH_ABI_STRING);
    assert_string_equal(dstr(h, "version"), EVH_VERSION);
    /* ok-minimal, test-step, system */
    assert_int_equal(dget(h, "plugins_ready")->valueint, 3);
    assert_int_equal(dget(h, "plugins_failed")->valueint, 0);
    assert_null(user_of(h));
    cJSON_Delete(events);

    char id[37];
    emit(t, "{\"n\": 1}", id);
    cJSON *x = execution_for(t, "first", id);
    cJSON_Delete(x);
    usleep(300000);
    cJSON *all = events_of(t, "system", NULL);
    assert_int_equal(cJSON_GetArraySize(all), 1); /* host_started only */
    cJSON_Delete(all);
    at_stop(t);
}

/* Without the system plugin loaded, the host emits nothing and nothing
 * breaks. */
static void test_no_system_plugin(void **state)
{
    (void)state;
    const char *const wfs[] = {chain_workflows[0], NULL};
    at_options o = {.workflows = wfs,
                    .triggers = "triggers:\n"
                                "  - {id: t1, source: ok-minimal, event_type: thing_happened, "
                                "workflow: first}\n"};
    apitest *t = at_start(&o);
    char id[37];
    emit(t, "{\"n\": 1}", id);
    cJSON *x = execution_for(t, "first", id);
    assert_string_equal(sget(x, "status"), "succeeded");
    cJSON_Delete(x);
    system_events_host_started(t->r);
    system_events_user_login("ci");
    usleep(200000);
    cJSON *all = events_of(t, "system", NULL);
    assert_int_equal(cJSON_GetArraySize(all), 0);
    cJSON_Delete(all);
    at_stop(t);
}

/* ---- user_login -------------------------------------------------------------- */

static void get_with_key(apitest *t, const char *key, long want)
{
    char h[64];
    snprintf(h, sizeof h, "Authorization: Bearer %s", key ? key : "");
    const char *const headers[] = {h, NULL};
    at_response r;
    assert_int_equal(at_request(t, "GET", "/api/event-sources", key ? headers : NULL, NULL, 0,
                                &r),
                     0);
    assert_int_equal(r.status, want);
    at_response_free(&r);
}

/* user_login once per key, and again after login_idle_s without use; a
 * refused key and the public health route are no login. */
static void test_user_login(void **state)
{
    (void)state;
    at_options o = {.builtins = with_system,
                    .plugin_configs = "{\"system\": {\"login_idle_s\": 2}}",
                    .host_yaml = "server: {api_keys: [{name: ci, key: s3cret-ci}, "
                                 "{name: ops, key: s3cret-ops}]}"};
    apitest *t = at_start(&o);
    get_with_key(t, "s3cret-ci", 200);
    get_with_key(t, "s3cret-ci", 200);
    get_with_key(t, "s3cret-ops", 200);
    get_with_key(t, "wrong", 401);
    get_with_key(t, NULL, 401);
    at_response r;
    assert_int_equal(at_request(t, "GET", "/api/health", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    at_response_free(&r);
    cJSON *events = wait_events(t, "system", "user_login", 2);
    usleep(200000);
    cJSON_Delete(events);
    events = events_of(t, "system", "user_login");
    assert_int_equal(cJSON_GetArraySize(events), 2);
    const cJSON *ci = find_by(events, "key_name", "ci");
    const cJSON *ops = find_by(events, "key_name", "ops");
    assert_non_null(ci);
    assert_non_null(ops);
    assert_string_equal(user_of(ci), "ci");
    assert_string_equal(user_of(ops), "ops");
    cJSON_Delete(events);
    /* idle for more than login_idle_s: the next request is a login again */
    usleep(2200000);
    get_with_key(t, "s3cret-ci", 200);
    events = wait_events(t, "system", "user_login", 3);
    int n_ci = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, events) n_ci += !strcmp(dstr(e, "key_name"), "ci");
    assert_int_equal(n_ci, 2);
    cJSON_Delete(events);
    at_stop(t);
}

/* ---- condition_eval (SDK 1.1) --------------------------------------------------- */

static void test_condition_eval(void **state)
{
    (void)state;
    const evh_host_api *api = hostapi_table();
    assert_true(EVH_API_HAS(api, condition_eval));
    const char *ctx = "{\"event\": {\"id\": \"e1\", \"source\": \"s\", \"event_type\": \"t\","
                      " \"data\": {\"n\": 5, \"name\": \"report.pdf\"},"
                      " \"metadata\": {\"user_id\": \"u1\"}},"
                      " \"steps\": {\"fetch\": {\"output\": {\"status\": 200}}}}";
    char *err = (char *)"untouched";
    assert_int_equal(api->condition_eval(NULL, "{\"field\": \"data.n\", \"op\": \"gt\", "
                                               "\"value\": 3}",
                                         EVH_NUL_TERMINATED, ctx, EVH_NUL_TERMINATED, &err),
                     1);
    assert_null(err);
    assert_int_equal(api->condition_eval(NULL,
                                         "[{\"field\": \"data.name\", \"op\": \"ends_with\", "
                                         "\"value\": \".pdf\"}, {\"field\": "
                                         "\"steps.fetch.output.status\", \"op\": \"eq\", "
                                         "\"value\": 200}, {\"field\": \"metadata.user_id\", "
                                         "\"op\": \"in\", \"value\": [\"u1\", \"u2\"]}]",
                                         EVH_NUL_TERMINATED, ctx, EVH_NUL_TERMINATED, NULL),
                     1);
    assert_int_equal(api->condition_eval(NULL,
                                         "{\"any\": [{\"field\": \"data.n\", \"op\": \"lt\", "
                                         "\"value\": 5}, {\"field\": \"steps.other.output.x\", "
                                         "\"op\": \"exists\"}]}",
                                         EVH_NUL_TERMINATED, ctx, EVH_NUL_TERMINATED, NULL),
                     0);
    /* a missing field is false, as in triggers; not inverts */
    assert_int_equal(api->condition_eval(NULL,
                                         "{\"not\": {\"field\": \"data.nope\", \"op\": \"ne\", "
                                         "\"value\": 1}}",
                                         EVH_NUL_TERMINATED, ctx, EVH_NUL_TERMINATED, NULL),
                     1);
    /* no steps part: steps.* are missing */
    assert_int_equal(api->condition_eval(NULL,
                                         "{\"field\": \"steps.fetch.output.status\", \"op\": "
                                         "\"exists\", \"value\": false}",
                                         EVH_NUL_TERMINATED, "{\"event\": {}}",
                                         EVH_NUL_TERMINATED, NULL),
                     1);
    /* malformed conditions: every problem, with its path */
    err = NULL;
    assert_int_equal(api->condition_eval(NULL,
                                         "{\"all\": [{\"field\": \"data.n\", \"op\": \"bigger\", "
                                         "\"value\": 1}, {\"field\": \"payload.x\", \"op\": "
                                         "\"eq\", \"value\": 1}]}",
                                         EVH_NUL_TERMINATED, ctx, EVH_NUL_TERMINATED, &err),
                     EVH_E_CONFIG);
    assert_non_null(err);
    assert_non_null(strstr(err, "all[0].op"));
    assert_non_null(strstr(err, "unknown operator 'bigger'"));
    assert_non_null(strstr(err, "all[1].field"));
    assert_non_null(strstr(err, "or steps"));
    api->free(err);
    assert_int_equal(api->condition_eval(NULL, "{\"field\": \"steps\", \"op\": \"exists\"}",
                                         EVH_NUL_TERMINATED, ctx, EVH_NUL_TERMINATED, &err),
                     EVH_E_CONFIG);
    api->free(err);
    assert_int_equal(api->condition_eval(NULL, "{nope", EVH_NUL_TERMINATED, ctx,
                                         EVH_NUL_TERMINATED, &err),
                     EVH_E_JSON);
    assert_non_null(err);
    api->free(err);
    assert_int_equal(api->condition_eval(NULL, "{\"field\": \"id\", \"op\": \"exists\"}",
                                         EVH_NUL_TERMINATED, "[1]", 3, &err),
                     EVH_E_JSON);
    api->free(err);
    assert_int_equal(api->condition_eval(NULL, NULL, 0, ctx, EVH_NUL_TERMINATED, NULL),
                     EVH_E_INVALID);
    /* lengths are honoured: only the first 2 bytes ("{}") of the context */
    assert_int_equal(api->condition_eval(NULL, "{\"field\": \"id\", \"op\": \"exists\"}",
                                         EVH_NUL_TERMINATED, "{}garbage", 2, NULL),
                     0);
}

/* ---- filter ----------------------------------------------------------------- */

static const char *const filter_builtins[] = {"system", "filter", NULL};

static const char *const gated[] = {
    "id: gated\n"
    "steps:\n"
    "  - {id: a, uses: test-step, with: {value: 5}}\n"
    "  - id: gate\n"
    "    uses: filter\n"
    "    with:\n"
    "      conditions:\n"
    "        all:\n"
    "          - {field: data.n, op: gt, value: \"{{ steps.a.output.value }}\"}\n"
    "          - {field: steps.a.output.value, op: eq, value: 5}\n"
    "          - not: {field: metadata.user_id, op: in, value: [bot-1]}\n"
    "  - {id: b, uses: test-step, with: {value: b}}\n"
    "  - {id: c, uses: test-step, with: {value: c}}\n",
    NULL};

#define GATED_TRIGGER                                                                              \
    "triggers:\n"                                                                                  \
    "  - {id: t1, source: ok-minimal, event_type: thing_happened, workflow: gated}\n"

static void test_filter_passes(void **state)
{
    (void)state;
    at_options o = {.builtins = filter_builtins, .workflows = gated, .triggers = GATED_TRIGGER};
    apitest *t = at_start(&o);
    char id[37];
    emit(t, "{\"n\": 20}", id);
    cJSON *x = execution_for(t, "gated", id);
    assert_string_equal(sget(x, "status"), "succeeded");
    const cJSON *gate = step_run(x, "gate");
    assert_string_equal(sget(gate, "status"), "succeeded");
    assert_true(cJSON_IsTrue(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(gate, "output"),
                                         "passed")));
    assert_string_equal(sget(step_run(x, "b"), "status"), "succeeded");
    assert_string_equal(sget(step_run(x, "c"), "status"), "succeeded");
    cJSON *events = wait_events(t, "system", "workflow_completed", 1);
    assert_null(dget(cJSON_GetArrayItem(events, 0), "stopped_by"));
    cJSON_Delete(events);
    cJSON_Delete(x);
    at_stop(t);
}

static void test_filter_stops(void **state)
{
    (void)state;
    at_options o = {.builtins = filter_builtins, .workflows = gated, .triggers = GATED_TRIGGER};
    apitest *t = at_start(&o);
    char id[37];
    emit(t, "{\"n\": 3}", id); /* not above a's value 5 */
    cJSON *x = execution_for(t, "gated", id);
    assert_string_equal(sget(x, "status"), "succeeded");
    assert_null(sget(x, "error"));
    assert_string_equal(sget(step_run(x, "a"), "status"), "succeeded");
    const cJSON *gate = step_run(x, "gate");
    assert_string_equal(sget(gate, "status"), "succeeded");
    assert_true(cJSON_IsFalse(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(gate, "output"),
                                         "passed")));
    static const char *const later[] = {"b", "c"};
    for (size_t i = 0; i < 2; i++) {
        const cJSON *r = step_run(x, later[i]);
        assert_string_equal(sget(r, "status"), "skipped");
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(r, "attempt")->valueint, 0);
        assert_string_equal(sget(r, "error"), "not run: step 'gate' stopped the workflow");
        assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r, "output")) ||
                    !cJSON_GetObjectItemCaseSensitive(r, "output"));
    }
    /* b and c never ran: exactly one run each */
    int runs = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(x, "steps")) runs++;
    assert_int_equal(runs, 4);
    /* workflow_completed says who stopped it */
    cJSON *events = wait_events(t, "system", "workflow_completed", 1);
    const cJSON *done = find_by(events, "execution_id", sget(x, "id"));
    assert_non_null(done);
    assert_string_equal(dstr(done, "status"), "succeeded");
    assert_string_equal(dstr(done, "stopped_by"), "gate");
    cJSON_Delete(events);
    cJSON_Delete(x);
    at_stop(t);
}

/* A bad condition is refused when the workflow loads, with its path; so is a
 * filter without conditions. */
static void test_filter_bad_conditions_refused_at_load(void **state)
{
    (void)state;
    at_options o = {.builtins = filter_builtins, .workflows = gated, .triggers = GATED_TRIGGER};
    apitest *t = at_start(&o);
    static const struct {
        const char *yaml;
        const char *needles[3];
    } cases[] = {
        {"id: bad\n"
         "steps:\n"
         "  - id: gate\n"
         "    uses: filter\n"
         "    with:\n"
         "      conditions:\n"
         "        - {field: data.n, op: bigger, value: 3}\n",
         {"with.conditions[0].op", "unknown operator 'bigger'", "configSchema of 'filter'"}},
        {"id: bad\n"
         "steps:\n"
         "  - id: gate\n"
         "    uses: filter\n"
         "    with:\n"
         "      conditions: {any: [{field: payload.n, op: eq, value: 1}]}\n",
         {"with.conditions.any[0].field", "must start with id, event_type, source, data, "
                                          "metadata or steps",
          NULL}},
        {"id: bad\n"
         "steps:\n"
         "  - id: gate\n"
         "    uses: filter\n"
         "    with:\n"
         "      conditions: {field: data.name, op: matches, value: \"([a-z\"}\n",
         {"with.conditions.value", "invalid regex", NULL}},
        {"id: bad\n"
         "steps:\n"
         "  - {id: gate, uses: filter, with: {}}\n",
         {"conditions", "required", NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *path = tu_join(t->wfdir, "bad.yaml");
        assert_int_equal(tu_write_file(path, cases[i].yaml), 0);
        diag d;
        diag_init(&d, NULL);
        workflow *w = workflow_load_file(path, t->r, t->rt, &d);
        assert_null(w);
        char *all = diag_join(&d);
        for (size_t k = 0; k < 3 && cases[i].needles[k]; k++) {
            if (!strstr(all, cases[i].needles[k]))
                fail_msg("case %zu: \"%s\" does not mention \"%s\"", i, all,
                         cases[i].needles[k]);
        }
        free(all);
        diag_free(&d);
        unlink(path);
        free(path);
    }
    /* a condition value that is a template is checked per run, not at load */
    char *path = tu_join(t->wfdir, "ok.yaml");
    assert_int_equal(tu_write_file(path, gated[0]), 0);
    diag d;
    diag_init(&d, NULL);
    workflow *w = workflow_load_file(path, t->r, t->rt, &d);
    assert_non_null(w);
    assert_int_equal(d.count, 0);
    workflow_free(w);
    diag_free(&d);
    unlink(path);
    free(path);
    at_stop(t);
}

/* ---- emit ------------------------------------------------------------------------ */

static const char *const emit_builtins[] = {"emit", NULL};

static void test_emit_chains_workflows(void **state)
{
    (void)state;
    static const char *const wfs[] = {
        "id: producer\n"
        "steps:\n"
        "  - id: send\n"
        "    uses: emit\n"
        "    with:\n"
        "      data: {doc: \"{{ event.data.label }}\", n: \"{{ event.data.n }}\"}\n",
        "id: consumer\n"
        "steps:\n"
        "  - {id: got, uses: test-step, with: {value: \"{{ event.data.doc }}\"}}\n",
        NULL};
    at_options o = {.builtins = emit_builtins,
                    .workflows = wfs,
                    .triggers = "triggers:\n"
                                "  - {id: t1, source: ok-minimal, event_type: thing_happened, "
                                "workflow: producer}\n"
                                "  - id: t2\n"
                                "    source: emit\n"
                                "    event_type: workflow_event\n"
                                "    workflow: consumer\n"
                                "    conditions: [{field: data.n, op: gte, value: 7}]\n"};
    apitest *t = at_start(&o);
    char id[37];
    emit(t, "{\"n\": 7, \"label\": \"report.pdf\"}", id);
    cJSON *p = execution_for(t, "producer", id);
    assert_string_equal(sget(p, "status"), "succeeded");
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(step_run(p, "send"), "output");
    const char *new_id = sget(out, "event_id");
    assert_non_null(new_id);
    assert_int_equal(strlen(new_id), 36);
    assert_string_equal(sget(out, "type"), "workflow_event");

    /* the emitted event: source emit, the data rendered with its types,
     * the triggering user, one level deeper */
    cJSON *ev = store_event_get(t->st, new_id);
    long long end = tu_now_ms() + WAIT_MS;
    while (!ev && tu_now_ms() < end) {
        usleep(10000);
        ev = store_event_get(t->st, new_id);
    }
    assert_non_null(ev);
    assert_string_equal(sget(ev, "source"), "emit");
    assert_string_equal(sget(ev, "event_type"), "workflow_event");
    assert_string_equal(dstr(ev, "doc"), "report.pdf");
    assert_true(cJSON_IsNumber(dget(ev, "n")) && dget(ev, "n")->valueint == 7);
    assert_string_equal(user_of(ev), "user-7");
    assert_int_equal(depth_of(t, new_id), 1);

    /* ... and it triggered the consumer */
    cJSON *c = execution_for(t, "consumer", new_id);
    assert_string_equal(sget(c, "status"), "succeeded");
    const cJSON *cout = cJSON_GetObjectItemCaseSensitive(step_run(c, "got"), "output");
    assert_string_equal(sget(cout, "value"), "report.pdf");
    cJSON_Delete(c);
    cJSON_Delete(ev);
    cJSON_Delete(p);
    at_stop(t);
}

/* A workflow that emits the event that triggers it loops; chain depth cuts
 * it at max_chain_depth (4), also when the emit runs on the helper thread of
 * a step with a timeout.  user_id: null emits without a user. */
static void test_emit_loop_is_cut(void **state)
{
    (void)state;
    static const char *const wfs[] = {"id: echo\n"
                                      "steps:\n"
                                      "  - id: again\n"
                                      "    uses: emit\n"
                                      "    timeout_ms: 5000\n"
                                      "    with: {data: {hop: 1}, user_id: null}\n",
                                      NULL};
    at_options o = {.builtins = emit_builtins,
                    .workflows = wfs,
                    .triggers = "triggers:\n"
                                "  - {id: t1, source: ok-minimal, event_type: thing_happened, "
                                "workflow: echo}\n"
                                "  - {id: t2, source: emit, event_type: workflow_event, "
                                "workflow: echo}\n"};
    apitest *t = at_start(&o);
    char id[37];
    emit(t, "{\"n\": 1}", id);
    long long end = tu_now_ms() + WAIT_MS;
    engine_stats s;
    do {
        engine_get_stats(t->e, &s);
        if (s.chain_cut >= 1)
            break;
        usleep(10000);
    } while (tu_now_ms() < end);
    assert_int_equal(s.chain_cut, 1);
    cJSON *rows = wait_executions(t, "echo", 5);
    assert_int_equal(cJSON_GetArraySize(rows), 5);
    cJSON_Delete(rows);
    cJSON *events = wait_events(t, "emit", "workflow_event", 5);
    assert_int_equal(cJSON_GetArraySize(events), 5);
    const cJSON *e;
    cJSON_ArrayForEach(e, events) assert_null(user_of(e));
    cJSON_Delete(events);
    at_stop(t);
}

/* An event type the emit plugin does not declare is refused at load by its
 * configSchema. */
static void test_emit_undeclared_type_refused_at_load(void **state)
{
    (void)state;
    at_options o = {.builtins = emit_builtins};
    apitest *t = at_start(&o);
    char *path = tu_join(t->wfdir, "bad.yaml");
    assert_int_equal(tu_write_file(path, "id: bad\n"
                                         "steps:\n"
                                         "  - {id: e, uses: emit, with: {type: random_event}}\n"),
                     0);
    diag d;
    diag_init(&d, NULL);
    assert_null(workflow_load_file(path, t->r, t->rt, &d));
    char *all = diag_join(&d);
    assert_non_null(strstr(all, "with.type"));
    free(all);
    diag_free(&d);
    free(path);
    at_stop(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workflow_completed_triggers_next),
        cmocka_unit_test(test_replay_reports),
        cmocka_unit_test(test_self_triggered_loop_is_cut),
        cmocka_unit_test(test_workflow_failed),
        cmocka_unit_test(test_plugin_failed),
        cmocka_unit_test(test_host_started_and_events_config),
        cmocka_unit_test(test_no_system_plugin),
        cmocka_unit_test(test_user_login),
        cmocka_unit_test(test_condition_eval),
        cmocka_unit_test(test_filter_passes),
        cmocka_unit_test(test_filter_stops),
        cmocka_unit_test(test_filter_bad_conditions_refused_at_load),
        cmocka_unit_test(test_emit_chains_workflows),
        cmocka_unit_test(test_emit_loop_is_cut),
        cmocka_unit_test(test_emit_undeclared_type_refused_at_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
