/*
 * test_api_health.c - GET /api/ready and GET /metrics over real HTTP on
 * loopback: readiness with its checks (and 503 while the database cannot
 * take writes), the metrics' content type and exact counts after events
 * were accepted and refused and workflows ran, and API keys (both need
 * one when keys are configured; /api/health stays public).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "apitest.h"
#include "evh_limits.h"
#include "hostapi.h"
#include "log.h"
#include "metrics.h"
#include "testutil.h"

/* ---- /metrics text: name{labels} value lines -------------------------------- */

/* The value of the sample whose name and raw label text match exactly, or
 * -1.  Checks on the way that every line is a comment or a sample. */
static double metric(const char *text, const char *name, const char *labels)
{
    char want[1024];
    if (labels && *labels)
        snprintf(want, sizeof want, "%s{%s} ", name, labels);
    else
        snprintf(want, sizeof want, "%s ", name);
    double found = -1;
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl); /* every line ends with \n */
        if (line[0] != '#') {
            assert_non_null(memchr(line, ' ', (size_t)(nl - line)));
            if (!strncmp(line, want, strlen(want)))
                found = strtod(line + strlen(want), NULL);
        }
        line = nl + 1;
    }
    return found;
}

static const char *str(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsNumber(n));
    return n->valuedouble;
}

/* Every test runs with these in force: wf-echo for most events, wf-fail
 * (one retry) for n == 99. */
static const char *const metrics_workflows[] = {
    "id: wf-echo\n"
    "steps:\n"
    "  - {id: first, uses: test-step, with: {value: 1}}\n"
    "  - {id: second, uses: test-step, with: {value: 2}}\n",
    "id: wf-fail\n"
    "steps:\n"
    "  - {id: broken, uses: test-step, with: {mode: fail}, retry: {max: 1, backoff_ms: 1}}\n",
    NULL};

static const char *const metrics_triggers =
    "triggers:\n"
    "  - {id: t-echo, source: ok-minimal, event_type: thing_happened, workflow: wf-echo,\n"
    "     conditions: {not: {field: data.n, op: eq, value: 99}}}\n"
    "  - {id: t-fail, source: ok-minimal, event_type: thing_happened, workflow: wf-fail,\n"
    "     conditions: {field: data.n, op: eq, value: 99}}\n";

/* ---- /api/ready ---------------------------------------------------------------- */

/* Hold file's write lock from another connection: /api/ready answers 503
 * after the check's timeout, checks.<check> says why and checks.<other> is
 * ok; released, the host is ready again (the pooled connection was not
 * spoiled). */
static void ready_while_locked(apitest *t, const char *file, const char *check, const char *other)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(file, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    at_response r;
    long long t0 = tu_now_ms();
    assert_int_equal(at_request(t, "GET", "/api/ready", NULL, NULL, 0, &r), 0);
    long long took = tu_now_ms() - t0;
    assert_int_equal(r.status, 503);
    assert_true(took >= EVH_READY_DB_TIMEOUT_MS - 100 && took < EVH_READY_DB_TIMEOUT_MS + 5000);
    assert_string_equal(str(r.json, "status"), "not_ready");
    const cJSON *checks = cJSON_GetObjectItemCaseSensitive(r.json, "checks");
    const char *why = str(checks, check);
    assert_non_null(why);
    assert_non_null(strstr(why, "not writable"));
    assert_non_null(strstr(why, "locked"));
    assert_string_equal(str(checks, other), "ok");
    assert_string_equal(str(checks, "pipeline"), "ok");
    assert_non_null(cJSON_GetObjectItemCaseSensitive(checks, "plugins"));
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(r.json, "error");
    assert_string_equal(str(err, "code"), "not_ready");
    const cJSON *details = cJSON_GetObjectItemCaseSensitive(err, "details");
    assert_int_equal(cJSON_GetArraySize(details), 1);
    char path[64];
    snprintf(path, sizeof path, "checks.%s", check);
    assert_string_equal(str(cJSON_GetArrayItem(details, 0), "path"), path);
    at_response_free(&r);

    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(at_request(t, "GET", "/api/ready", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    at_response_free(&r);
}

static void test_ready(void **state)
{
    static const char *const fixtures[] = {"ok-minimal", "test-step", "init-fails", NULL};
    at_options o = {.fixtures = fixtures, .workflows = metrics_workflows,
                    .triggers = metrics_triggers};
    apitest *t = at_start(&o);
    at_response r;
    assert_int_equal(at_request(t, "GET", "/api/ready", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.json, "status"), "ready");
    const cJSON *checks = cJSON_GetObjectItemCaseSensitive(r.json, "checks");
    assert_string_equal(str(checks, "database"), "ok");
    assert_string_equal(str(checks, "outbox"), "ok");
    assert_string_equal(str(checks, "pipeline"), "ok");
    /* every state is listed; a failed plugin is reported but the host is ready */
    const cJSON *plugins = cJSON_GetObjectItemCaseSensitive(checks, "plugins");
    int n_states = 0; /* every state plugin_state_name knows */
    while (strcmp(plugin_state_name((plugin_state)n_states), "unknown") != 0)
        n_states++;
    assert_int_equal(cJSON_GetArraySize(plugins), n_states);
    assert_true(num(plugins, "abandoned") == 0);
    assert_true(num(plugins, "failed") == 1);
    assert_true(num(plugins, "running") == 1); /* ok-minimal */
    assert_true(num(plugins, "ready") == 1);   /* test-step */
    assert_true(num(plugins, "inactive") + num(plugins, "loaded") + num(plugins, "stopped") == 0);
    assert_null(cJSON_GetObjectItemCaseSensitive(r.json, "error"));
    char *ctype = at_header(&r, "Content-Type");
    assert_string_equal(ctype, "application/json");
    free(ctype);
    at_response_free(&r);

    /* another connection holds a file's write lock: after the check's
     * timeout that file is not writable, and the host not ready */
    ready_while_locked(t, t->db, "database", "outbox");
    ready_while_locked(t, t->outbox, "outbox", "database");
    at_stop(t);
    (void)state;
}

/* ---- /metrics ------------------------------------------------------------------ */

static int emit(apitest *t, const manifest *m, const char *type, const char *data)
{
    return hostapi_emit_checked(t->rt, m, type, data, strlen(data), NULL, NULL, NULL, NULL);
}

static void test_metrics_counts(void **state)
{
    metrics_reset(); /* the module is process-wide: count from zero */
    at_options o = {.workflows = metrics_workflows, .triggers = metrics_triggers};
    apitest *t = at_start(&o);
    const manifest *m = registry_find(t->r, "ok-minimal")->m;
    assert_int_equal(emit(t, m, "thing_happened", "{\"n\":1}"), EVH_OK);
    assert_int_equal(emit(t, m, "thing_happened", "{\"n\":2}"), EVH_OK);
    assert_int_equal(emit(t, m, "thing_happened", "{\"n\":99}"), EVH_OK);
    assert_int_equal(emit(t, m, "not_declared", "{\"n\":1}"), EVH_E_UNDECLARED_TYPE);
    assert_int_equal(emit(t, m, "thing_happened", "{\"n\":\"one\"}"), EVH_E_SCHEMA);
    at_wait_settled(t, 3);

    at_response r;
    assert_int_equal(at_request(t, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    char *ctype = at_header(&r, "Content-Type");
    assert_non_null(ctype);
    assert_true(!strncmp(ctype, "text/plain; version=0.0.4", 25));
    free(ctype);
    const char *text = r.body;

    /* events: exactly what was emitted, by source, type and reason */
    assert_true(metric(text, "evhost_events_accepted_total",
                       "source=\"ok-minimal\",event_type=\"thing_happened\"") == 3);
    assert_true(metric(text, "evhost_events_refused_total",
                       "source=\"ok-minimal\",event_type=\"not_declared\","
                       "reason=\"undeclared_type\"") == 1);
    assert_true(metric(text, "evhost_events_refused_total",
                       "source=\"ok-minimal\",event_type=\"thing_happened\",reason=\"schema\"") ==
                1);
    assert_true(metric(text, "evhost_events_refused_total",
                       "source=\"ok-minimal\",event_type=\"thing_happened\","
                       "reason=\"queue_full\"") == -1);
    assert_non_null(strstr(text, "# TYPE evhost_events_accepted_total counter\n"));

    /* executions by final status */
    assert_true(metric(text, "evhost_executions_total",
                       "workflow=\"wf-echo\",status=\"succeeded\"") == 2);
    assert_true(metric(text, "evhost_executions_total", "workflow=\"wf-fail\",status=\"failed\"") ==
                1);
    assert_true(metric(text, "evhost_executions_total", "workflow=\"wf-echo\",status=\"failed\"") ==
                -1);

    /* one observation per step attempt: 2 runs x 2 steps, and 2 attempts
     * of the failing step (retry max 1) */
    assert_non_null(strstr(text, "# TYPE evhost_step_duration_seconds histogram\n"));
    const char *first = "workflow=\"wf-echo\",step=\"first\",plugin=\"test-step\"";
    const char *broken = "workflow=\"wf-fail\",step=\"broken\",plugin=\"test-step\"";
    assert_true(metric(text, "evhost_step_duration_seconds_count", first) == 2);
    assert_true(metric(text, "evhost_step_duration_seconds_count",
                       "workflow=\"wf-echo\",step=\"second\",plugin=\"test-step\"") == 2);
    assert_true(metric(text, "evhost_step_duration_seconds_count", broken) == 2);
    char labels[256];
    snprintf(labels, sizeof labels, "%s,le=\"+Inf\"", first);
    assert_true(metric(text, "evhost_step_duration_seconds_bucket", labels) == 2);
    snprintf(labels, sizeof labels, "%s,le=\"60\"", first);
    assert_true(metric(text, "evhost_step_duration_seconds_bucket", labels) == 2);
    double sum = metric(text, "evhost_step_duration_seconds_sum", first);
    assert_true(sum >= 0 && sum < 60);

    /* scrape-time gauges */
    assert_true(metric(text, "evhost_queue_capacity", NULL) == 1024);
    assert_true(metric(text, "evhost_queue_depth", NULL) >= 0);
    assert_true(metric(text, "evhost_dispatch_queue_depth", NULL) >= 0);
    assert_true(metric(text, "evhost_uptime_seconds", NULL) >= 0);
    assert_true(metric(text, "evhost_plugins", "state=\"running\"") == 1);
    assert_true(metric(text, "evhost_plugins", "state=\"ready\"") == 1);
    assert_true(metric(text, "evhost_plugins", "state=\"failed\"") == 0);
    snprintf(labels, sizeof labels, "version=\"%s\",abi=\"%s\"", EVH_VERSION, EVH_ABI_STRING);
    assert_true(metric(text, "evhost_build_info", labels) == 1);
    assert_true(metric(text, "evhost_metrics_series_overflow_total",
                       "metric=\"evhost_events_accepted_total\"") == 0);
    at_response_free(&r);
    at_stop(t);
    (void)state;
}

/* ---- API keys ------------------------------------------------------------------ */

static void test_keys(void **state)
{
    at_options o = {.host_yaml = "server:\n  api_keys: [{name: ci, key: s3cret}]\n",
                    .workflows = metrics_workflows,
                    .triggers = metrics_triggers};
    apitest *t = at_start(&o);
    static const char *const key[] = {"Authorization: Bearer s3cret", NULL};
    static const char *const wrong[] = {"Authorization: Bearer s3cres", NULL};
    at_response r;
    assert_int_equal(at_request(t, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 401);
    at_response_free(&r);
    assert_int_equal(at_request(t, "GET", "/metrics", wrong, NULL, 0, &r), 0);
    assert_int_equal(r.status, 401);
    at_response_free(&r);
    assert_int_equal(at_request(t, "GET", "/metrics", key, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "# TYPE evhost_build_info gauge\n"));
    at_response_free(&r);

    assert_int_equal(at_request(t, "GET", "/api/ready", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 401);
    at_response_free(&r);
    assert_int_equal(at_request(t, "GET", "/api/ready", key, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    at_response_free(&r);

    /* health stays public */
    assert_int_equal(at_request(t, "GET", "/api/health", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    at_response_free(&r);
    at_stop(t);
    (void)state;
}

int main(void)
{
    log_set_level(EVH_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready),
        cmocka_unit_test(test_metrics_counts),
        cmocka_unit_test(test_keys),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    metrics_reset(); /* give the series back before the leak check */
    return rc;
}
