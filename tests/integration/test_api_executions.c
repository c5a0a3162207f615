/*
 * test_api_executions.c - GET /api/executions (every filter, keyset pages
 * that stay put while executions are added), GET /api/executions/{id}
 * (step runs, progress, 404) and POST /api/executions/{id}/replay (from the
 * start after fixing the workflow, from a step reusing the earlier steps'
 * outputs, 400, 404, 409), over real HTTP against the host assembled in
 * process; and replays a previous process left behind, resumed at start.
 *
 * Events are emitted as the ok-minimal source; the workflows run the
 * test-step plugin, whose record_file counts the runs that really happened.
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

#include <curl/curl.h>
#include <evhost/evhost.h>

#include "apitest.h"
#include "hostapi.h"
#include "log.h"
#include "testutil.h"

/* ---- helpers ---------------------------------------------------------------- */

static const char *sget(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static int iget(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsNumber(v));
    return v->valueint;
}

static void emit(apitest *t, int n, char id[37])
{
    char data[32];
    snprintf(data, sizeof data, "{\"n\":%d}", n);
    const manifest *m = registry_find(t->r, "ok-minimal")->m;
    assert_int_equal(hostapi_emit_checked(t->rt, m, "thing_happened", data, strlen(data),
                                          "user-7", NULL, NULL, id),
                     EVH_OK);
}

/* GET path, expecting `status`; returns the parsed body (caller deletes). */
static cJSON *get(apitest *t, const char *path, long status)
{
    at_response r;
    assert_int_equal(at_request(t, "GET", path, NULL, NULL, 0, &r), 0);
    if (r.status != status)
        print_error("GET %s: %ld %s\n", path, r.status, r.body);
    assert_int_equal(r.status, status);
    assert_non_null(r.json);
    cJSON *j = r.json;
    r.json = NULL;
    at_response_free(&r);
    return j;
}

/* The error body's details[0].path, checking the error shape. */
static const char *error_path(const cJSON *body, const char *code)
{
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(body, "error");
    assert_non_null(err);
    assert_string_equal(sget(err, "code"), code);
    assert_non_null(sget(err, "message"));
    const cJSON *details = cJSON_GetObjectItemCaseSensitive(err, "details");
    assert_true(cJSON_IsArray(details));
    assert_true(cJSON_GetArraySize(details) >= 1);
    assert_non_null(sget(cJSON_GetArrayItem(details, 0), "reason"));
    return sget(cJSON_GetArrayItem(details, 0), "path");
}

static const char *error_message(const cJSON *body)
{
    return sget(cJSON_GetObjectItemCaseSensitive(body, "error"), "message");
}

/* GET a list expecting 200; the number of items. */
static int count(apitest *t, const char *path)
{
    cJSON *page = get(t, path, 200);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(page, "items");
    assert_true(cJSON_IsArray(items));
    int n = cJSON_GetArraySize(items);
    cJSON_Delete(page);
    return n;
}

/* GET a list expecting 400 naming `param`. */
static void bad_param(apitest *t, const char *path, const char *param)
{
    cJSON *body = get(t, path, 400);
    assert_string_equal(error_path(body, "invalid"), param);
    cJSON_Delete(body);
}

/* The id (malloc'd) of the first (not replayed) execution of an event. */
static char *execution_of(apitest *t, const char *event_id)
{
    store_filter f = {.limit = STORE_LIST_MAX_LIMIT};
    cJSON *rows = store_executions_list(t->st, &f, NULL);
    assert_non_null(rows);
    char *id = NULL;
    const cJSON *r;
    cJSON_ArrayForEach(r, rows)
    {
        if (!strcmp(sget(r, "event_id"), event_id) &&
            cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r, "replay_of"))) {
            assert_null(id);
            id = strdup(sget(r, "id"));
        }
    }
    cJSON_Delete(rows);
    assert_non_null(id);
    return id;
}

/* Wait until execution id finished; its status ("succeeded"/"failed"). */
static const char *wait_finished(apitest *t, const char *id)
{
    static char status[16];
    long long end = tu_now_ms() + 20000;
    while (tu_now_ms() < end) {
        cJSON *x = store_execution_get(t->st, id);
        const char *s = x ? sget(x, "status") : NULL;
        if (s && (!strcmp(s, "succeeded") || !strcmp(s, "failed"))) {
            snprintf(status, sizeof status, "%s", s);
            cJSON_Delete(x);
            return status;
        }
        cJSON_Delete(x);
        usleep(10000);
    }
    fail_msg("execution %s did not finish", id);
    return NULL;
}

/* POST replay; expects 202 and returns the new id (malloc'd). */
static char *replay(apitest *t, const char *id, const char *from_step)
{
    char path[256];
    snprintf(path, sizeof path, "/api/executions/%s/replay%s%s", id,
             from_step ? "?from_step=" : "", from_step ? from_step : "");
    at_response r;
    assert_int_equal(at_request(t, "POST", path, NULL, NULL, 0, &r), 0);
    if (r.status != 202)
        print_error("POST %s: %ld %s\n", path, r.status, r.body);
    assert_int_equal(r.status, 202);
    const char *new_id = sget(r.json, "id");
    assert_non_null(new_id);
    assert_int_equal(strlen(new_id), 36);
    assert_string_equal(sget(r.json, "replay_of"), id);
    assert_string_equal(sget(r.json, "status"), "queued");
    char *location = at_header(&r, "Location");
    char want[128];
    snprintf(want, sizeof want, "/api/executions/%s", new_id);
    assert_non_null(location);
    assert_string_equal(location, want);
    free(location);
    char *out = strdup(new_id);
    at_response_free(&r);
    return out;
}

/* POST replay expecting an error status; returns the body. */
static cJSON *replay_fails(apitest *t, const char *id, const char *query, long status)
{
    char path[256];
    snprintf(path, sizeof path, "/api/executions/%s/replay%s", id, query ? query : "");
    at_response r;
    assert_int_equal(at_request(t, "POST", path, NULL, NULL, 0, &r), 0);
    if (r.status != status)
        print_error("POST %s: %ld %s\n", path, r.status, r.body);
    assert_int_equal(r.status, status);
    cJSON *j = r.json;
    r.json = NULL;
    at_response_free(&r);
    assert_non_null(j);
    return j;
}

/* Lines "<execution> <step> <attempt>" of the record file for this
 * execution and step: how often the step really ran in it. */
static int runs_of(const char *record, const char *execution_id, const char *step)
{
    char *text = tu_read_file(record);
    if (!text)
        return 0;
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s %s ", execution_id, step);
    int n = 0;
    for (char *line = text; line && *line;) {
        if (!strncmp(line, prefix, strlen(prefix)))
            n++;
        char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    return n;
}

static const cJSON *step_run(const cJSON *x, int i)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(x, "steps"), i);
}

static int nsteps(const cJSON *x)
{
    return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(x, "steps"));
}

static const cJSON *output_value(const cJSON *run)
{
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(run, "output"),
                                            "value");
}

/* ---- list: every filter ---------------------------------------------------------- */

static const char *const list_wfs[] = {
    "id: alpha\nsteps:\n  - {id: one, uses: test-step, with: {value: 1}}\n",
    "id: beta\nsteps:\n  - {id: one, uses: test-step, with: {mode: fail}}\n", NULL};
static const char list_triggers[] =
    "triggers:\n"
    "  - {id: t-alpha, source: ok-minimal, event_type: thing_happened, workflow: alpha,\n"
    "     conditions: {field: data.n, op: eq, value: 1}}\n"
    "  - {id: t-beta, source: ok-minimal, event_type: thing_happened, workflow: beta,\n"
    "     conditions: {field: data.n, op: eq, value: 2}}\n";

static void test_list_filters(void **state)
{
    at_options o = {.workflows = list_wfs, .triggers = list_triggers};
    apitest *t = at_start(&o);
    char id[37];
    for (int i = 0; i < 3; i++)
        emit(t, 1, id);
    for (int i = 0; i < 2; i++)
        emit(t, 2, id);
    at_wait_settled(t, 5);

    /* newest first; executions without their step runs */
    cJSON *page = get(t, "/api/executions", 200);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(page, "items");
    assert_int_equal(cJSON_GetArraySize(items), 5);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(page, "next_cursor")));
    const cJSON *first = cJSON_GetArrayItem(items, 0);
    assert_null(cJSON_GetObjectItemCaseSensitive(first, "steps"));
    assert_non_null(sget(first, "created_at"));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(first, "replay_of")));
    for (int i = 1; i < 5; i++)
        assert_true(strcmp(sget(cJSON_GetArrayItem(items, i - 1), "created_at"),
                           sget(cJSON_GetArrayItem(items, i), "created_at")) >= 0);
    cJSON_Delete(page);

    assert_int_equal(count(t, "/api/executions?workflow=alpha"), 3);
    assert_int_equal(count(t, "/api/executions?workflow=beta"), 2);
    assert_int_equal(count(t, "/api/executions?workflow=gamma"), 0);
    assert_int_equal(count(t, "/api/executions?trigger=t-beta"), 2);
    assert_int_equal(count(t, "/api/executions?trigger=t-alpha"), 3);
    assert_int_equal(count(t, "/api/executions?status=succeeded"), 3);
    assert_int_equal(count(t, "/api/executions?status=failed"), 2);
    assert_int_equal(count(t, "/api/executions?status=queued"), 0);
    assert_int_equal(count(t, "/api/executions?status=running"), 0);
    assert_int_equal(count(t, "/api/executions?source=ok-minimal"), 5);
    assert_int_equal(count(t, "/api/executions?source=elsewhere"), 0);
    assert_int_equal(count(t, "/api/executions?type=thing_happened"), 5);
    assert_int_equal(count(t, "/api/executions?type=other_thing"), 0);
    assert_int_equal(count(t, "/api/executions?since=2000-01-01T00:00:00Z"), 5);
    assert_int_equal(count(t, "/api/executions?since=2999-01-01T00:00:00.5%2B01:00"), 0);
    assert_int_equal(count(t, "/api/executions?until=2000-01-01T00:00:00Z"), 0);
    assert_int_equal(count(t, "/api/executions?until=2999-01-01T00:00:00Z"), 5);
    assert_int_equal(count(t, "/api/executions?workflow=alpha&status=failed"), 0);
    assert_int_equal(
        count(t, "/api/executions?workflow=beta&trigger=t-beta&status=failed&source=ok-minimal"
                 "&type=thing_happened&since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z"),
        2);
    assert_int_equal(count(t, "/api/executions?limit=2"), 2);

    /* a bad filter is 400 naming the parameter */
    bad_param(t, "/api/executions?status=done", "status");
    bad_param(t, "/api/executions?since=yesterday", "since");
    bad_param(t, "/api/executions?until=2026-13-01T00:00:00Z", "until");
    bad_param(t, "/api/executions?cursor=nonsense", "cursor");
    bad_param(t, "/api/executions?cursor=e12", "cursor"); /* an events cursor */
    bad_param(t, "/api/executions?limit=0", "limit");
    bad_param(t, "/api/executions?limit=501", "limit");
    bad_param(t, "/api/executions?limit=abc", "limit");
    cJSON *body = get(t, "/api/executions?limit=0", 400);
    assert_string_equal(error_message(body), "limit: '0' is not a number from 1 to 500");
    cJSON_Delete(body);
    at_stop(t);
    (void)state;
}

/* ---- list: pages stay put while executions are added ------------------------------ */

/* Newest first is the order executions were stored in, and created_at must
 * agree with it: 8 workers creating 400 executions at once contend for the
 * recorder, and one that read the clock before another but handed its
 * record in after it listed an older created_at above a newer one. */
static void test_newest_first_agrees_with_created_at(void **state)
{
    static const char *const wfs[] = {
        "id: alpha\nsteps:\n  - {id: one, uses: test-step, with: {value: 1}}\n", NULL};
    static const char trig[] =
        "triggers:\n"
        "  - {id: t-alpha, source: ok-minimal, event_type: thing_happened, workflow: alpha}\n";
    at_options o = {.workflows = wfs, .triggers = trig, .workers = 8};
    apitest *t = at_start(&o);
    enum { N = 400 };
    char id[37];
    for (int i = 0; i < N; i++)
        emit(t, 1, id);
    at_wait_settled(t, N);
    cJSON *page = get(t, "/api/executions?limit=500", 200);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(page, "items");
    assert_int_equal(cJSON_GetArraySize(items), N);
    int out_of_order = 0;
    for (int i = 1; i < N; i++) {
        const char *newer = sget(cJSON_GetArrayItem(items, i - 1), "created_at");
        const char *older = sget(cJSON_GetArrayItem(items, i), "created_at");
        if (strcmp(newer, older) < 0) {
            if (!out_of_order)
                print_error("item %d created %s is listed above one created %s\n", i - 1, newer,
                            older);
            out_of_order++;
        }
    }
    assert_int_equal(out_of_order, 0);
    cJSON_Delete(page);
    at_stop(t);
    (void)state;
}

static void test_pages_stable_under_inserts(void **state)
{
    at_options o = {.workflows = list_wfs, .triggers = list_triggers};
    apitest *t = at_start(&o);
    char id[37];
    for (int i = 0; i < 5; i++) {
        emit(t, 1, id);
        usleep(2000); /* distinct created_at, though ties are fine too */
    }
    at_wait_settled(t, 5);
    store_filter all = {.limit = 100};
    cJSON *before = store_executions_list(t->st, &all, NULL);
    assert_int_equal(cJSON_GetArraySize(before), 5);

    cJSON *seen = cJSON_CreateArray();
    char path[256] = "/api/executions?limit=2";
    int pages = 0;
    for (;;) {
        cJSON *page = get(t, path, 200);
        const cJSON *item;
        cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(page, "items"))
            cJSON_AddItemToArray(seen, cJSON_CreateString(sget(item, "id")));
        pages++;
        const char *next = sget(page, "next_cursor");
        if (pages == 1) {
            /* newer executions arrive between the pages */
            for (int i = 0; i < 3; i++)
                emit(t, 1, id);
            at_wait_settled(t, 8);
        }
        if (!next) {
            cJSON_Delete(page);
            break;
        }
        char *esc = curl_easy_escape(NULL, next, 0);
        assert_non_null(esc);
        snprintf(path, sizeof path, "/api/executions?limit=2&cursor=%s", esc);
        curl_free(esc);
        cJSON_Delete(page);
        assert_true(pages < 10);
    }
    /* exactly the five that existed, in the same order, none twice */
    assert_int_equal(pages, 3);
    assert_int_equal(cJSON_GetArraySize(seen), 5);
    for (int i = 0; i < 5; i++)
        assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(seen, i)),
                            sget(cJSON_GetArrayItem(before, i), "id"));
    cJSON_Delete(seen);
    cJSON_Delete(before);
    /* a new first page shows all eight */
    assert_int_equal(count(t, "/api/executions?limit=500"), 8);
    at_stop(t);
    (void)state;
}

/* ---- one execution: step runs, progress, 404 -------------------------------------- */

static const char *const get_wfs[] = {
    "id: two-steps\n"
    "steps:\n"
    "  - {id: first, uses: test-step, with: {value: \"{{ event.data.n }}\"}}\n"
    "  - {id: second, uses: test-step,\n"
    "     with: {value: \"n was {{ steps.first.output.value }}\"}}\n",
    "id: go-on\n"
    "steps:\n"
    "  - {id: broken, uses: test-step, with: {mode: fail}, on_error: continue}\n"
    "  - {id: after, uses: test-step, with: {value: 2}}\n",
    "id: halt\n"
    "steps:\n"
    "  - {id: flaky, uses: test-step, with: {mode: flaky, fail_times: 9},\n"
    "     retry: {max: 1, backoff_ms: 1}}\n"
    "  - {id: after, uses: test-step, with: {value: 2}}\n",
    NULL};
static const char get_triggers[] =
    "triggers:\n"
    "  - {id: t1, source: ok-minimal, event_type: thing_happened, workflow: two-steps,\n"
    "     conditions: {field: data.n, op: eq, value: 1}}\n"
    "  - {id: t2, source: ok-minimal, event_type: thing_happened, workflow: go-on,\n"
    "     conditions: {field: data.n, op: eq, value: 2}}\n"
    "  - {id: t3, source: ok-minimal, event_type: thing_happened, workflow: halt,\n"
    "     conditions: {field: data.n, op: eq, value: 3}}\n";

static cJSON *get_execution(apitest *t, const char *id)
{
    char path[128];
    snprintf(path, sizeof path, "/api/executions/%s", id);
    return get(t, path, 200);
}

static void assert_progress(const cJSON *x, int done, int total)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(x, "progress");
    assert_non_null(p);
    assert_int_equal(iget(p, "done"), done);
    if (total < 0)
        assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(p, "total")));
    else
        assert_int_equal(iget(p, "total"), total);
}

static void test_get_steps_progress_404(void **state)
{
    at_options o = {.workflows = get_wfs, .triggers = get_triggers};
    apitest *t = at_start(&o);
    char ev1[37], ev2[37], ev3[37];
    emit(t, 1, ev1);
    emit(t, 2, ev2);
    emit(t, 3, ev3);
    at_wait_settled(t, 3);

    char *id = execution_of(t, ev1);
    cJSON *x = get_execution(t, id);
    assert_string_equal(sget(x, "id"), id);
    assert_string_equal(sget(x, "status"), "succeeded");
    assert_string_equal(sget(x, "workflow_id"), "two-steps");
    assert_string_equal(sget(x, "trigger_id"), "t1");
    assert_string_equal(sget(x, "event_id"), ev1);
    assert_int_equal(strlen(sget(x, "workflow_version")), 16);
    assert_non_null(sget(x, "started_at"));
    assert_non_null(sget(x, "finished_at"));
    assert_int_equal(nsteps(x), 2);
    assert_string_equal(sget(step_run(x, 0), "step_id"), "first");
    assert_string_equal(sget(step_run(x, 0), "plugin"), "test-step");
    assert_string_equal(sget(step_run(x, 0), "status"), "succeeded");
    assert_int_equal(iget(step_run(x, 0), "attempt"), 1);
    assert_int_equal(output_value(step_run(x, 0))->valueint, 1);
    assert_string_equal(cJSON_GetStringValue(output_value(step_run(x, 1))), "n was 1");
    assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(step_run(x, 1), "duration_ms")));
    assert_progress(x, 2, 2);
    cJSON_Delete(x);
    free(id);

    /* a failed step with on_error: continue counts as done */
    id = execution_of(t, ev2);
    x = get_execution(t, id);
    assert_string_equal(sget(x, "status"), "succeeded");
    assert_string_equal(sget(step_run(x, 0), "status"), "failed");
    assert_progress(x, 2, 2);
    cJSON_Delete(x);
    free(id);

    /* two failed attempts of the first step, then the execution stopped */
    id = execution_of(t, ev3);
    x = get_execution(t, id);
    assert_string_equal(sget(x, "status"), "failed");
    assert_int_equal(nsteps(x), 2);
    assert_int_equal(iget(step_run(x, 1), "attempt"), 2);
    assert_non_null(strstr(sget(x, "error"), "flaky failure 2 of 9"));
    assert_progress(x, 0, 2);
    cJSON_Delete(x);
    free(id);

    cJSON *body = get(t, "/api/executions/00000000-0000-4000-8000-000000000000", 404);
    assert_string_equal(error_path(body, "not_found"), "id");
    assert_non_null(strstr(error_message(body), "00000000-0000-4000-8000-000000000000"));
    cJSON_Delete(body);
    body = get(t, "/api/executions/not-an-id", 404);
    assert_string_equal(error_path(body, "not_found"), "id");
    cJSON_Delete(body);
    at_stop(t);
    (void)state;
}

/* ---- replay ------------------------------------------------------------------------ */

typedef struct rec {
    char *dir, *file;
} rec;

static rec rec_new(void)
{
    rec r;
    r.dir = tu_tempdir("replay-rec");
    r.file = tu_join(r.dir, "runs.txt");
    return r;
}

static void rec_free(rec *r)
{
    tu_rmtree(r->dir);
    free(r->dir);
    free(r->file);
}

/* first: mode (fail or echo); second: echoes a template of first's output. */
static char *fixable_wf(const rec *r, const char *first_mode)
{
    char *text = NULL;
    assert_true(asprintf(&text,
                         "id: fixable\n"
                         "steps:\n"
                         "  - id: first\n"
                         "    uses: test-step\n"
                         "    with: {mode: %s, value: \"{{ event.data.n }}\", "
                         "record_file: \"%s\"}\n"
                         "  - id: second\n"
                         "    uses: test-step\n"
                         "    with: {value: \"got {{ steps.first.output.value }}\", "
                         "record_file: \"%s\"}\n",
                         first_mode, r->file, r->file) > 0);
    return text;
}

static const char fixable_trigger[] =
    "triggers:\n"
    "  - {id: all, source: ok-minimal, event_type: thing_happened, workflow: fixable}\n";

static void test_replay_from_start_after_fix(void **state)
{
    rec r = rec_new();
    char *wf = fixable_wf(&r, "fail");
    const char *const wfs[] = {wf, NULL};
    at_options o = {.workflows = wfs, .triggers = fixable_trigger};
    apitest *t = at_start(&o);
    char ev[37];
    emit(t, 7, ev);
    at_wait_settled(t, 1);
    char *orig = execution_of(t, ev);
    assert_string_equal(wait_finished(t, orig), "failed");
    cJSON *x = get_execution(t, orig);
    char *old_version = strdup(sget(x, "workflow_version"));
    assert_progress(x, 0, 2);
    cJSON_Delete(x);
    assert_int_equal(runs_of(r.file, orig, "first"), 1);
    assert_int_equal(runs_of(r.file, orig, "second"), 0);

    /* fix the workflow, reload, replay from the start */
    char *fixed = fixable_wf(&r, "echo");
    char *path = tu_join(t->wfdir, "wf0.yaml");
    assert_int_equal(tu_write_file(path, fixed), 0);
    assert_int_equal(pipeline_reload(&t->rl, NULL), EVH_OK);
    char *again = replay(t, orig, NULL);
    assert_string_equal(wait_finished(t, again), "succeeded");
    x = get_execution(t, again);
    assert_string_equal(sget(x, "replay_of"), orig);
    assert_string_equal(sget(x, "trigger_id"), "all");
    assert_string_equal(sget(x, "event_id"), ev);
    assert_string_equal(sget(x, "workflow_id"), "fixable");
    /* the version in force now, not the original's */
    assert_string_not_equal(sget(x, "workflow_version"), old_version);
    assert_int_equal(nsteps(x), 2);
    assert_string_equal(sget(step_run(x, 0), "status"), "succeeded");
    assert_int_equal(output_value(step_run(x, 0))->valueint, 7);
    assert_string_equal(cJSON_GetStringValue(output_value(step_run(x, 1))), "got 7");
    assert_progress(x, 2, 2);
    cJSON_Delete(x);
    /* every step really ran in the replay; the original is untouched */
    assert_int_equal(runs_of(r.file, again, "first"), 1);
    assert_int_equal(runs_of(r.file, again, "second"), 1);
    assert_int_equal(runs_of(r.file, orig, "first"), 1);
    x = get_execution(t, orig);
    assert_string_equal(sget(x, "status"), "failed");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(x, "replay_of")));
    cJSON_Delete(x);

    /* the list shows both; replays are executions like any other */
    assert_int_equal(count(t, "/api/executions?workflow=fixable"), 2);
    assert_int_equal(count(t, "/api/executions?workflow=fixable&status=succeeded"), 1);

    /* one replay per execution: a second one is 409 naming the first... */
    cJSON *body = replay_fails(t, orig, NULL, 409);
    assert_string_equal(error_path(body, "conflict"), "id");
    assert_non_null(strstr(error_message(body), again));
    cJSON_Delete(body);
    /* ...which can be replayed in turn */
    char *third = replay(t, again, NULL);
    assert_string_equal(wait_finished(t, third), "succeeded");
    x = get_execution(t, third);
    assert_string_equal(sget(x, "replay_of"), again);
    cJSON_Delete(x);
    assert_int_equal(runs_of(r.file, third, "first"), 1);

    free(third);
    free(path);
    free(fixed);
    free(again);
    free(old_version);
    free(orig);
    at_stop(t);
    free(wf);
    rec_free(&r);
    (void)state;
}

static void test_replay_from_step_reuses_outputs(void **state)
{
    rec r = rec_new();
    char *wf = fixable_wf(&r, "echo");
    const char *const wfs[] = {wf, NULL};
    at_options o = {.workflows = wfs, .triggers = fixable_trigger};
    apitest *t = at_start(&o);
    char ev[37];
    emit(t, 7, ev);
    at_wait_settled(t, 1);
    char *orig = execution_of(t, ev);
    assert_string_equal(wait_finished(t, orig), "succeeded");

    /* 400: a step the workflow does not have (or none), with the path */
    cJSON *body = replay_fails(t, orig, "?from_step=third", 400);
    assert_string_equal(error_path(body, "invalid"), "from_step");
    assert_non_null(strstr(error_message(body), "third"));
    assert_non_null(strstr(error_message(body), "'first', 'second'"));
    cJSON_Delete(body);
    body = replay_fails(t, orig, "?from_step=", 400);
    assert_string_equal(error_path(body, "invalid"), "from_step");
    cJSON_Delete(body);
    /* nothing was recorded for the refused requests */
    assert_int_equal(count(t, "/api/executions"), 1);

    char *again = replay(t, orig, "second");
    assert_string_equal(wait_finished(t, again), "succeeded");
    cJSON *x = get_execution(t, again);
    assert_string_equal(sget(x, "replay_of"), orig);
    assert_int_equal(nsteps(x), 2);
    /* first: not run, its output carried over from the original */
    assert_string_equal(sget(step_run(x, 0), "step_id"), "first");
    assert_string_equal(sget(step_run(x, 0), "status"), "skipped");
    assert_int_equal(iget(step_run(x, 0), "attempt"), 0);
    assert_int_equal(output_value(step_run(x, 0))->valueint, 7);
    /* second: ran, and its template saw first's output */
    assert_string_equal(sget(step_run(x, 1), "status"), "succeeded");
    assert_string_equal(cJSON_GetStringValue(output_value(step_run(x, 1))), "got 7");
    assert_progress(x, 2, 2);
    cJSON_Delete(x);
    assert_int_equal(runs_of(r.file, again, "first"), 0);
    assert_int_equal(runs_of(r.file, again, "second"), 1);
    assert_int_equal(runs_of(r.file, orig, "first"), 1);
    assert_int_equal(runs_of(r.file, orig, "second"), 1);

    /* a replay of that replay from the same step carries the output on */
    char *third = replay(t, again, "second");
    assert_string_equal(wait_finished(t, third), "succeeded");
    x = get_execution(t, third);
    assert_string_equal(cJSON_GetStringValue(output_value(step_run(x, 1))), "got 7");
    cJSON_Delete(x);
    assert_int_equal(runs_of(r.file, third, "first"), 0);
    assert_int_equal(runs_of(r.file, third, "second"), 1);

    /* from the first step is from the start */
    char *fourth = replay(t, third, "first");
    assert_string_equal(wait_finished(t, fourth), "succeeded");
    assert_int_equal(runs_of(r.file, fourth, "first"), 1);
    assert_int_equal(runs_of(r.file, fourth, "second"), 1);

    free(fourth);
    free(third);
    free(again);
    free(orig);
    at_stop(t);
    free(wf);
    rec_free(&r);
    (void)state;
}

static void test_replay_404_and_workflow_gone_409(void **state)
{
    rec r = rec_new();
    char *wf = fixable_wf(&r, "echo");
    /* a second workflow keeps the directory from becoming empty */
    const char *const wfs[] = {wf, list_wfs[0], NULL};
    at_options o = {.workflows = wfs, .triggers = fixable_trigger};
    apitest *t = at_start(&o);

    cJSON *body = replay_fails(t, "00000000-0000-4000-8000-000000000000", NULL, 404);
    assert_string_equal(error_path(body, "not_found"), "id");
    cJSON_Delete(body);

    char ev[37];
    emit(t, 3, ev);
    at_wait_settled(t, 1);
    char *orig = execution_of(t, ev);
    assert_string_equal(wait_finished(t, orig), "succeeded");
    /* 404 wins over a bad from_step: the execution is looked up first */
    body = replay_fails(t, "00000000-0000-4000-8000-000000000000", "?from_step=x", 404);
    cJSON_Delete(body);

    /* the workflow file goes away; the trigger naming it is skipped */
    char *path = tu_join(t->wfdir, "wf0.yaml");
    assert_int_equal(unlink(path), 0);
    diag d;
    diag_init(&d, NULL);
    assert_int_equal(pipeline_reload(&t->rl, &d), EVH_OK);
    diag_free(&d);
    body = replay_fails(t, orig, NULL, 409);
    assert_string_equal(error_path(body, "conflict"), "workflow_id");
    assert_non_null(strstr(error_message(body), "'fixable'"));
    cJSON_Delete(body);
    body = replay_fails(t, orig, "?from_step=second", 409);
    cJSON_Delete(body);
    /* still readable, with no total to measure progress against */
    cJSON *x = get_execution(t, orig);
    assert_progress(x, 2, -1);
    cJSON_Delete(x);
    assert_int_equal(count(t, "/api/executions"), 1);

    free(path);
    free(orig);
    at_stop(t);
    free(wf);
    rec_free(&r);
    (void)state;
}

/* ---- a restart resumes replays ------------------------------------------------------ */

static void test_replays_resumed_after_restart(void **state)
{
    rec r = rec_new();
    char *wf = fixable_wf(&r, "echo");
    const char *const wfs[] = {wf, NULL};
    at_options o = {.workflows = wfs, .triggers = fixable_trigger};
    apitest *t = at_start(&o);
    char ev[37];
    emit(t, 5, ev);
    at_wait_settled(t, 1);
    char *orig = execution_of(t, ev);
    assert_string_equal(wait_finished(t, orig), "succeeded");
    cJSON *x = store_execution_get(t->st, orig);
    char *version = strdup(sget(x, "workflow_version"));
    cJSON_Delete(x);

    /* What a process that died at the wrong moment left behind:
     * r1, a replay from step second, recorded (first carried over) but not
     * started; r2, a replay of r1 from the start whose first step had
     * succeeded when the process died. */
    store_step_run carried = {.step_id = "first",
                              .plugin = "test-step",
                              .attempt = 0,
                              .status = "skipped",
                              .output_json = "{\"value\":5}"};
    store_execution r1;
    memset(&r1, 0, sizeof r1);
    r1.workflow_id = "fixable";
    r1.workflow_version = version;
    r1.trigger_id = "all";
    r1.event_id = ev;
    r1.replay_of = orig;
    assert_int_equal(store_execution_create_with_runs(t->st, &r1, &carried, 1), EVH_OK);
    store_step_run ran = {.step_id = "first",
                          .plugin = "test-step",
                          .attempt = 1,
                          .status = "succeeded",
                          .output_json = "{\"value\":55}",
                          .started_us = 1,
                          .finished_us = 2};
    store_execution r2 = r1;
    r2.id[0] = '\0';
    r2.replay_of = r1.id;
    assert_int_equal(store_execution_create_with_runs(t->st, &r2, &ran, 1), EVH_OK);
    assert_int_equal(store_execution_set_status(t->st, r2.id, "running", NULL), EVH_OK);
    /* the same key again is refused, and nothing half-made stays */
    store_execution dup = r1;
    dup.id[0] = '\0';
    assert_int_equal(store_execution_create_with_runs(t->st, &dup, &carried, 1),
                     EVH_E_DUPLICATE);
    assert_string_equal(dup.id, r1.id);
    x = store_execution_get(t->st, r1.id);
    assert_int_equal(nsteps(x), 1);
    cJSON_Delete(x);

    /* the next start (a second engine on the same database) runs them */
    runtime *rt2 = runtime_new(64, t->data, 50);
    assert_non_null(rt2);
    engine_options eo = {.db_path = t->db, .workers = 1, .dispatch_queue = 64,
                         .max_chain_depth = 4};
    char *err = NULL;
    engine *e2 = engine_new(rt2, t->r, &eo, &err);
    assert_non_null(e2);
    workflow_set *ws = NULL;
    trigger_set *ts = NULL;
    diag d;
    diag_init(&d, NULL);
    assert_int_equal(pipeline_load(&t->src, t->r, t->st, &ws, &ts, &d), EVH_OK);
    assert_int_equal(d.count, 0);
    diag_free(&d);
    engine_set_config(e2, ws, ts);
    assert_int_equal(engine_start(e2), EVH_OK);
    assert_string_equal(wait_finished(t, r1.id), "succeeded");
    assert_string_equal(wait_finished(t, r2.id), "succeeded");
    runtime_stop(rt2);
    engine_stop(e2, 5000);
    engine_free(e2);
    runtime_free(rt2);

    /* r1 started at second, with first's carried output */
    x = get_execution(t, r1.id);
    assert_int_equal(nsteps(x), 2);
    assert_string_equal(sget(step_run(x, 0), "status"), "skipped");
    assert_string_equal(cJSON_GetStringValue(output_value(step_run(x, 1))), "got 5");
    cJSON_Delete(x);
    assert_int_equal(runs_of(r.file, r1.id, "first"), 0);
    assert_int_equal(runs_of(r.file, r1.id, "second"), 1);
    /* r2's first step had succeeded: not run again, its output used */
    x = get_execution(t, r2.id);
    assert_int_equal(nsteps(x), 2);
    assert_string_equal(cJSON_GetStringValue(output_value(step_run(x, 1))), "got 55");
    assert_progress(x, 2, 2);
    cJSON_Delete(x);
    assert_int_equal(runs_of(r.file, r2.id, "first"), 0);
    assert_int_equal(runs_of(r.file, r2.id, "second"), 1);

    free(version);
    free(orig);
    at_stop(t);
    free(wf);
    rec_free(&r);
    (void)state;
}

int main(void)
{
    log_set_level(EVH_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_filters),
        cmocka_unit_test(test_newest_first_agrees_with_created_at),
        cmocka_unit_test(test_pages_stable_under_inserts),
        cmocka_unit_test(test_get_steps_progress_404),
        cmocka_unit_test(test_replay_from_start_after_fix),
        cmocka_unit_test(test_replay_from_step_reuses_outputs),
        cmocka_unit_test(test_replay_404_and_workflow_gone_409),
        cmocka_unit_test(test_replays_resumed_after_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
