/*
 * test_pipeline.c - the event pipeline end to end, in process: real plugins
 * loaded with dlopen, a real SQLite file, the engine's writer and workers,
 * workflows and triggers from YAML files.  Then the daemon itself: killed
 * with SIGKILL while work is pending, restarted, and nothing is lost or run
 * twice.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <evhost/evhost.h>

#include "deadline.h"
#include "engine.h"
#include "hostapi.h"
#include "loader.h"
#include "log.h"
#include "pipeline.h"
#include "registry.h"
#include "runtime.h"
#include "store.h"
#include "testutil.h"

typedef struct env {
    char *root, *plugins, *data, *wfdir, *trigfile, *db;
    runtime *rt;
    registry *r;
    engine *e;
    store *st;     /* the test's own connection, for assertions */
    const manifest *src; /* ok-minimal's manifest: events are emitted as it */
} env;

static void env_load(env *e, const char *name)
{
    assert_int_equal(tu_copy_fixture(name, e->plugins, NULL), 0);
    char *dir = tu_join(e->plugins, name);
    loader_options opt = {0};
    plugin *p = loader_load_one(e->rt, dir, &opt);
    assert_non_null(p);
    if (p->state != PLUGIN_READY)
        print_error("%s: %s\n", name, p->error ? p->error : "?");
    assert_int_equal(p->state, PLUGIN_READY);
    assert_int_equal(registry_add(e->r, p), EVH_OK);
    free(dir);
}

static env *env_new(size_t queue, unsigned workers)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->root = tu_tempdir("pipeline");
    e->plugins = tu_join(e->root, "plugins");
    e->data = tu_join(e->root, "data");
    e->wfdir = tu_join(e->root, "workflows");
    e->trigfile = tu_join(e->root, "triggers.yaml");
    e->db = tu_join(e->root, "evhost.db");
    assert_int_equal(mkdir(e->plugins, 0755), 0);
    assert_int_equal(mkdir(e->wfdir, 0755), 0);
    e->rt = runtime_new(queue, e->data, 50);
    e->r = registry_new();
    env_load(e, "ok-minimal");
    env_load(e, "test-step");
    e->src = registry_find(e->r, "ok-minimal")->m;
    engine_options o = {
        .db_path = e->db, .workers = workers, .dispatch_queue = queue, .max_chain_depth = 3};
    char *err = NULL;
    e->e = engine_new(e->rt, e->r, &o, &err);
    if (!e->e)
        print_error("engine: %s\n", err ? err : "?");
    assert_non_null(e->e);
    store_options so = {.path = e->db};
    assert_int_equal(store_open(&so, &e->st, &err), EVH_OK);
    return e;
}

/* Write the workflow files and the trigger file, load them (problems into
 * d, which may be NULL to require none), start the engine. */
static void env_start(env *e, const char *const *workflows, const char *triggers, diag *problems)
{
    for (size_t i = 0; workflows && workflows[i]; i++) {
        char name[32];
        snprintf(name, sizeof name, "wf%zu.yaml", i);
        char *path = tu_join(e->wfdir, name);
        assert_int_equal(tu_write_file(path, workflows[i]), 0);
        free(path);
    }
    assert_int_equal(tu_write_file(e->trigfile, triggers), 0);
    const char *wd[] = {e->wfdir};
    const char *tf[] = {e->trigfile};
    pipeline_sources src = {wd, 1, tf, 1, e->rt};
    workflow_set *ws = NULL;
    trigger_set *ts = NULL;
    diag d;
    diag_init(&d, NULL);
    assert_int_equal(pipeline_load(&src, e->r, e->st, &ws, &ts, problems ? problems : &d),
                     EVH_OK);
    if (!problems && d.count) {
        diag_print(&d, stderr);
        fail_msg("unexpected problems loading the pipeline");
    }
    diag_free(&d);
    engine_set_config(e->e, ws, ts);
    assert_int_equal(engine_start(e->e), EVH_OK);
}

static void env_free(env *e)
{
    runtime_stop(e->rt);
    engine_stop(e->e, 5000);
    /* a step abandoned at its timeout finalizes itself when its call
     * returns; wait for that so nothing outlives the test */
    const manifest *step = registry_find(e->r, "test-step")->m;
    for (long long end = tu_now_ms() + 5000;
         hostapi_live_instances(step) > 0 && tu_now_ms() < end;)
        usleep(10000);
    assert_int_equal(hostapi_live_instances(step), 0);
    engine_free(e->e);
    store_close(e->st);
    loader_unload_all(e->r);
    registry_free(e->r);
    runtime_free(e->rt);
    tu_rmtree(e->root);
    free(e->root);
    free(e->plugins);
    free(e->data);
    free(e->wfdir);
    free(e->trigfile);
    free(e->db);
    free(e);
}

static int emit(env *e, const char *data, char id[37])
{
    return hostapi_emit_checked(e->rt, e->src, "thing_happened", data, strlen(data), "user-7",
                                NULL, NULL, id);
}

/* Wait until every emitted event has been dispatched or found unmatched. */
static void wait_settled(env *e, uint64_t events)
{
    long long end = tu_now_ms() + 20000;
    engine_stats s;
    do {
        engine_get_stats(e->e, &s);
        if (s.dispatched + s.unmatched + s.chain_cut >= events)
            return;
        usleep(5000);
    } while (tu_now_ms() < end);
    fail_msg("only %llu of %llu events settled", (unsigned long long)(s.dispatched + s.unmatched),
             (unsigned long long)events);
}

/* The single execution of event `id` (asserts there is exactly one). */
static cJSON *execution_of(env *e, const char *event_id)
{
    store_filter f = {.limit = 100};
    cJSON *rows = store_executions_list(e->st, &f, NULL);
    assert_non_null(rows);
    cJSON *found = NULL;
    int n = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, rows)
    {
        const char *ev = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "event_id"));
        if (ev && !strcmp(ev, event_id)) {
            n++;
            cJSON_Delete(found);
            found = store_execution_get(
                e->st, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "id")));
        }
    }
    cJSON_Delete(rows);
    assert_int_equal(n, 1);
    assert_non_null(found);
    return found;
}

static const char *sget(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static size_t count_executions(env *e)
{
    store_filter f = {.limit = STORE_LIST_MAX_LIMIT};
    cJSON *rows = store_executions_list(e->st, &f, NULL);
    assert_non_null(rows);
    size_t n = (size_t)cJSON_GetArraySize(rows);
    cJSON_Delete(rows);
    return n;
}

/* ---- end to end ----------------------------------------------------------- */

static const char *const two_steps[] = {
    "id: two-steps\n"
    "steps:\n"
    "  - id: first\n"
    "    uses: test-step\n"
    "    with: {value: \"{{ event.data.n }}\"}\n"
    "  - id: second\n"
    "    uses: test-step\n"
    "    with:\n"
    "      value: \"n was {{ steps.first.output.value }} for {{ event.metadata.user_id }}\"\n",
    NULL};

static void test_trigger_conditions_run_two_steps(void **state)
{
    env *e = env_new(1024, 2);
    env_start(e, two_steps,
              "triggers:\n"
              "  - id: big-things\n"
              "    source: ok-minimal\n"
              "    event_type: thing_happened\n"
              "    workflow: two-steps\n"
              "    conditions:\n"
              "      all:\n"
              "        - {field: data.n, op: gte, value: 2}\n"
              "        - not: {field: data.label, op: eq, value: skip}\n",
              NULL);
    char small[37], big[37], skipped[37];
    assert_int_equal(emit(e, "{\"n\":1}", small), EVH_OK);
    assert_int_equal(emit(e, "{\"n\":5}", big), EVH_OK);
    assert_int_equal(emit(e, "{\"n\":9,\"label\":\"skip\"}", skipped), EVH_OK);
    wait_settled(e, 3);

    cJSON *x = execution_of(e, big);
    assert_string_equal(sget(x, "status"), "succeeded");
    assert_string_equal(sget(x, "workflow_id"), "two-steps");
    assert_string_equal(sget(x, "trigger_id"), "big-things");
    assert_int_equal(strlen(sget(x, "workflow_version")), 16);
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(x, "steps");
    assert_int_equal(cJSON_GetArraySize(steps), 2);
    const cJSON *first = cJSON_GetArrayItem(steps, 0);
    const cJSON *second = cJSON_GetArrayItem(steps, 1);
    assert_string_equal(sget(first, "step_id"), "first");
    assert_string_equal(sget(first, "plugin"), "test-step");
    /* a whole-value template keeps its type: the number 5 */
    const cJSON *v1 = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(first, "output"), "value");
    assert_true(cJSON_IsNumber(v1));
    assert_int_equal(v1->valueint, 5);
    const cJSON *v2 = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(second, "output"), "value");
    assert_string_equal(cJSON_GetStringValue(v2), "n was 5 for user-7");
    /* metrics reported through the SDK are stored with the step run */
    const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(second, "metrics");
    assert_non_null(cJSON_GetObjectItemCaseSensitive(metrics, "attempt"));
    cJSON_Delete(x);

    /* the unmatched events have no execution and say so */
    assert_int_equal(count_executions(e), 1);
    cJSON *ev = store_event_get(e->st, small);
    assert_string_equal(sget(ev, "status"), "unmatched");
    cJSON_Delete(ev);
    ev = store_event_get(e->st, skipped);
    assert_string_equal(sget(ev, "status"), "unmatched");
    cJSON_Delete(ev);
    ev = store_event_get(e->st, big);
    assert_string_equal(sget(ev, "status"), "dispatched");
    assert_string_equal(sget(ev, "source"), "ok-minimal");
    cJSON_Delete(ev);
    env_free(e);
    (void)state;
}

static const char *const retry_wf[] = {
    "id: retry\n"
    "steps:\n"
    "  - id: flaky\n"
    "    uses: test-step\n"
    "    with: {mode: flaky, fail_times: 2, value: ok}\n"
    "    retry: {max: 3, backoff_ms: 1}\n",
    "id: retry-exhausted\n"
    "steps:\n"
    "  - id: flaky\n"
    "    uses: test-step\n"
    "    with: {mode: flaky, fail_times: 5}\n"
    "    retry: {max: 1, backoff_ms: 1}\n",
    NULL};

static void test_retry_then_success(void **state)
{
    env *e = env_new(1024, 1);
    env_start(e, retry_wf,
              "triggers:\n"
              "  - {id: t1, source: ok-minimal, event_type: thing_happened, workflow: retry,\n"
              "     conditions: {field: data.n, op: eq, value: 1}}\n"
              "  - {id: t2, source: ok-minimal, event_type: thing_happened,\n"
              "     workflow: retry-exhausted, conditions: {field: data.n, op: eq, value: 2}}\n",
              NULL);
    char a[37], b[37];
    assert_int_equal(emit(e, "{\"n\":1}", a), EVH_OK);
    assert_int_equal(emit(e, "{\"n\":2}", b), EVH_OK);
    wait_settled(e, 2);
    cJSON *x = execution_of(e, a);
    assert_string_equal(sget(x, "status"), "succeeded");
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(x, "steps");
    assert_int_equal(cJSON_GetArraySize(steps), 3); /* attempts 1, 2 failed; 3 succeeded */
    assert_string_equal(sget(cJSON_GetArrayItem(steps, 0), "status"), "failed");
    assert_string_equal(sget(cJSON_GetArrayItem(steps, 2), "status"), "succeeded");
    assert_int_equal(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(steps, 2), "attempt")->valueint, 3);
    cJSON_Delete(x);

    x = execution_of(e, b);
    assert_string_equal(sget(x, "status"), "failed");
    assert_non_null(strstr(sget(x, "error"), "failed on attempt 2 of 2"));
    assert_non_null(strstr(sget(x, "error"), "flaky failure 2 of 5"));
    cJSON_Delete(x);
    env_free(e);
    (void)state;
}

static const char *const errors_wf[] = {
    "id: go-on\n"
    "steps:\n"
    "  - {id: broken, uses: test-step, with: {mode: fail}, on_error: continue}\n"
    "  - {id: after, uses: test-step, with: {value: 2}}\n",
    "id: halt\n"
    "steps:\n"
    "  - {id: broken, uses: test-step, with: {mode: fail}}\n"
    "  - {id: after, uses: test-step, with: {value: 2}}\n",
    "id: slow\n"
    "steps:\n"
    "  - {id: nap, uses: test-step, with: {mode: sleep, sleep_ms: 1500}, timeout_ms: 100}\n",
    "id: stuck-init\n"
    "steps:\n"
    "  - {id: hang, uses: test-step, with: {init_sleep_ms: 1500}}\n",
    NULL};

static void test_on_error_and_timeout(void **state)
{
    env *e = env_new(1024, 2);
    env_start(e, errors_wf,
              "triggers:\n"
              "  - {id: a, source: ok-minimal, event_type: thing_happened, workflow: go-on,\n"
              "     conditions: {field: data.n, op: eq, value: 1}}\n"
              "  - {id: b, source: ok-minimal, event_type: thing_happened, workflow: halt,\n"
              "     conditions: {field: data.n, op: eq, value: 2}}\n"
              "  - {id: c, source: ok-minimal, event_type: thing_happened, workflow: slow,\n"
              "     conditions: {field: data.n, op: eq, value: 3}}\n"
              "  - {id: d, source: ok-minimal, event_type: thing_happened, workflow: stuck-init,\n"
              "     conditions: {field: data.n, op: eq, value: 4}}\n",
              NULL);
    /* a step whose init hangs: the init deadline fails the step, the
     * worker goes on (the call finishes on its own thread, see env_free) */
    uint32_t init_ms = deadline_init_ms();
    deadline_set_init_ms(200);
    char a[37], b[37], c[37], d[37];
    assert_int_equal(emit(e, "{\"n\":1}", a), EVH_OK);
    assert_int_equal(emit(e, "{\"n\":2}", b), EVH_OK);
    assert_int_equal(emit(e, "{\"n\":3}", c), EVH_OK);
    assert_int_equal(emit(e, "{\"n\":4}", d), EVH_OK);
    wait_settled(e, 4);
    deadline_set_init_ms(init_ms);

    cJSON *x = execution_of(e, a); /* continue: the next step ran */
    assert_string_equal(sget(x, "status"), "succeeded");
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(x, "steps");
    assert_int_equal(cJSON_GetArraySize(steps), 2);
    assert_string_equal(sget(cJSON_GetArrayItem(steps, 0), "status"), "failed");
    assert_string_equal(sget(cJSON_GetArrayItem(steps, 1), "status"), "succeeded");
    cJSON_Delete(x);

    x = execution_of(e, b); /* stop: the next step never ran */
    assert_string_equal(sget(x, "status"), "failed");
    steps = cJSON_GetObjectItemCaseSensitive(x, "steps");
    assert_int_equal(cJSON_GetArraySize(steps), 1);
    assert_non_null(strstr(sget(x, "error"), "failing on purpose"));
    cJSON_Delete(x);

    x = execution_of(e, c); /* the deadline ends the step, not the worker */
    assert_string_equal(sget(x, "status"), "failed");
    assert_non_null(strstr(sget(x, "error"), "timed out"));
    cJSON_Delete(x);

    x = execution_of(e, d);
    assert_string_equal(sget(x, "status"), "failed");
    assert_non_null(strstr(sget(x, "error"), "init did not return within 200 ms"));
    cJSON_Delete(x);
    env_free(e);
    (void)state;
}

/* ---- bad files are reported with file:line:column and skipped -------------- */

static void test_bad_files_reported_good_parts_load(void **state)
{
    env *e = env_new(1024, 1);
    const char *const wfs[] = {
        two_steps[0],
        "id: broken\n"
        "steps:\n"
        "  - id: one\n"
        "    uses: no-such-step\n",
        "id: bad-yaml\n"
        "steps: [\n",
        "id: bad-config\n"
        "steps:\n"
        "  - id: one\n"
        "    uses: test-step\n"
        "    with:\n"
        "      mode: bogus\n",
        NULL};
    diag d;
    diag_init(&d, NULL);
    env_start(
        e, wfs,
        "triggers:\n"
        "  - {id: good, source: ok-minimal, event_type: thing_happened, workflow: two-steps}\n"
        "  - {id: no-wf, source: ok-minimal, event_type: thing_happened, workflow: nope}\n"
        "  - {id: bad-op, source: ok-minimal, event_type: thing_happened,\n"
        "     workflow: two-steps, conditions: {field: data.n, op: starts_with, value: x}}\n"
        "  - {id: typo, source: OK-Minimal, event_type: thing_happened, workflow: two-step}\n",
        &d);
    char *all = diag_join(&d);
    assert_non_null(all);
    /* the unknown step plugin, with the file, line and column of `uses` */
    assert_non_null(strstr(all, "wf1.yaml:4:11: steps[0].uses: unknown step plugin 'no-such-step'"));
    assert_non_null(strstr(all, "wf2.yaml:3:1:"));
    /* a config value breaking the step's configSchema, at its own line */
    assert_non_null(strstr(all, "wf3.yaml:6:13: steps[0].with.mode"));
    assert_non_null(strstr(all, "triggers.yaml:3:"));
    assert_non_null(strstr(all, "unknown workflow 'nope'"));
    /* data.n is an integer in the event type's schema */
    assert_non_null(strstr(all, "triggers.yaml:5:"));
    assert_non_null(strstr(all, "triggers[2].conditions"));
    /* YAML triggers are checked as API ones are: near misses get a suggestion */
    assert_non_null(strstr(all, "triggers.yaml:6:"));
    assert_non_null(strstr(all, "triggers[3].source: unknown event source 'OK-Minimal' (did you "
                                "mean 'ok-minimal'?)"));
    assert_non_null(strstr(
        all, "triggers[3].workflow: unknown workflow 'two-step' (did you mean 'two-steps'?)"));
    free(all);
    diag_free(&d);
    /* the good workflow and trigger still run */
    char id[37];
    assert_int_equal(emit(e, "{\"n\":4}", id), EVH_OK);
    wait_settled(e, 1);
    cJSON *x = execution_of(e, id);
    assert_string_equal(sget(x, "status"), "succeeded");
    cJSON_Delete(x);
    /* rejected triggers are not in the table either */
    cJSON *rows = store_triggers_list(e->st);
    assert_int_equal(cJSON_GetArraySize(rows), 1);
    assert_string_equal(sget(cJSON_GetArrayItem(rows, 0), "id"), "good");
    cJSON_Delete(rows);
    env_free(e);
    (void)state;
}

/* ---- backpressure: a fast producer, a slow step, nothing accepted lost ----- */

typedef struct producer {
    env *e;
    int total;
    int ok, full;
    char (*ids)[37];
} producer;

static void *produce(void *arg)
{
    producer *p = arg;
    for (int i = 0; i < p->total; i++) {
        char data[32];
        snprintf(data, sizeof data, "{\"n\":%d}", i);
        int rc = emit(p->e, data, p->ids[p->ok]);
        if (rc == EVH_OK)
            p->ok++;
        else if (rc == EVH_E_QUEUE_FULL)
            p->full++;
        else
            fail_msg("emit: %s", evh_status_name(rc));
    }
    return NULL;
}

static void test_backpressure_loses_nothing(void **state)
{
    /* 4 events in memory and 4 waiting for dispatch; a step of 100 ms and
     * emit's 50 ms bounded wait: the producer must be told to slow down */
    env *e = env_new(4, 1);
    const char *const wf[] = {"id: slow\n"
                              "steps:\n"
                              "  - {id: nap, uses: test-step, with: {mode: sleep, sleep_ms: 100}}\n",
                              NULL};
    env_start(e, wf,
              "triggers:\n"
              "  - {id: all, source: ok-minimal, event_type: thing_happened, workflow: slow}\n",
              NULL);
    producer p = {.e = e, .total = 40};
    p.ids = calloc((size_t)p.total, sizeof *p.ids);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, produce, &p), 0);
    pthread_join(t, NULL);
    assert_true(p.full > 0); /* the producer was told to slow down */
    assert_true(p.ok > 0);
    wait_settled(e, (uint64_t)p.ok);
    /* every accepted event is stored and ran exactly once */
    assert_int_equal(count_executions(e), (size_t)p.ok);
    for (int i = 0; i < p.ok; i++) {
        cJSON *ev = store_event_get(e->st, p.ids[i]);
        assert_non_null(ev);
        assert_string_equal(sget(ev, "status"), "dispatched");
        cJSON_Delete(ev);
    }
    assert_int_equal(e->rt->refused_full, (unsigned long long)p.full);
    free(p.ids);
    env_free(e);
    (void)state;
}

/* ---- chain depth: a workflow that triggers itself is cut off ---------------- */

static void test_chain_depth_cut(void **state)
{
    env *e = env_new(1024, 1);
    const char *const wf[] = {"id: loop\n"
                              "steps:\n"
                              "  - {id: again, uses: test-step, with: {emit_type: chained}}\n",
                              NULL};
    env_start(e, wf,
              "triggers:\n"
              "  - {id: start, source: ok-minimal, event_type: thing_happened, workflow: loop}\n"
              "  - {id: again, source: test-step, event_type: chained, workflow: loop}\n",
              NULL);
    char id[37];
    assert_int_equal(emit(e, "{\"n\":1}", id), EVH_OK);
    /* depth 0 (the first event) .. 3 run; the event at depth 4 is cut */
    long long end = tu_now_ms() + 20000;
    engine_stats s;
    do {
        engine_get_stats(e->e, &s);
        usleep(5000);
    } while (s.chain_cut == 0 && tu_now_ms() < end);
    assert_int_equal(s.chain_cut, 1);
    assert_int_equal(count_executions(e), 4);
    env_free(e);
    (void)state;
}

/* ---- the daemon: SIGKILL after acceptance, restart, exactly once ------------ */

static char *write_host_yaml(const char *root, const char *name, const char *emit_list)
{
    char *path = tu_join(root, name);
    char *text = NULL;
    assert_true(asprintf(&text,
                         "server: {listen: \"127.0.0.1:0\"}\n"
                         "plugins:\n"
                         "  builtin: false\n"
                         "  dirs: [\"%s/plugins\"]\n"
                         "  config:\n"
                         "    ok-minimal: {emit: %s}\n"
                         "storage: {path: \"%s/evhost.db\"}\n"
                         "pipeline: {workers: 1}\n"
                         "workflows: {dirs: [\"%s/workflows\"]}\n"
                         "triggers: {files: [\"%s/triggers.yaml\"]}\n"
                         "data_dir: \"%s/data\"\n",
                         root, emit_list, root, root, root, root) > 0);
    assert_int_equal(tu_write_file(path, text), 0);
    free(text);
    return path;
}

/* The database at path, opened read-only: a second connection while the
 * daemon writes it (WAL lets it; read-only does no migration check, so it
 * takes no write lock); NULL while the file is not there yet. */
static store *peek(const char *path)
{
    store *st = NULL;
    store_options so = {.path = path, .read_only = 1};
    char *err = NULL;
    if (store_open(&so, &st, &err) != EVH_OK) {
        free(err);
        return NULL;
    }
    return st;
}

/* Events stored in the database at path; 0 while it is not there. */
static int count_events(const char *path)
{
    store *st = peek(path);
    if (!st)
        return 0;
    store_filter all = {.limit = 100};
    cJSON *rows = store_events_list(st, &all, NULL);
    int n = rows ? cJSON_GetArraySize(rows) : 0;
    cJSON_Delete(rows);
    store_close(st);
    return n;
}

/* How many step runs of the database's executions have failed. */
static int count_failed_runs(const char *path)
{
    store *st = peek(path);
    if (!st)
        return 0;
    int n = 0;
    store_filter all = {.limit = 100};
    cJSON *rows = store_executions_list(st, &all, NULL);
    const cJSON *row;
    cJSON_ArrayForEach(row, rows)
    {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(row, "id"));
        cJSON *x = id ? store_execution_get(st, id) : NULL;
        const cJSON *run;
        cJSON_ArrayForEach(run, cJSON_GetObjectItemCaseSensitive(x, "steps"))
        {
            const char *status =
                cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(run, "status"));
            n += status && !strcmp(status, "failed");
        }
        cJSON_Delete(x);
    }
    cJSON_Delete(rows);
    store_close(st);
    return n;
}

/* A daemon's directory for the kill tests: ok-minimal and test-step;
 * first.yaml, whose ok-minimal emits `emits`, and second.yaml, which emits
 * nothing; then kill_dir_workflow: the workflow every thing_happened runs. */
typedef struct kill_dir {
    char *root, *record, *db, *first, *second;
} kill_dir;

static void kill_dir_make(kill_dir *k, const char *tag, const char *emits)
{
    k->root = tu_tempdir(tag);
    char *plugins = tu_join(k->root, "plugins");
    char *wfdir = tu_join(k->root, "workflows");
    assert_int_equal(mkdir(plugins, 0755), 0);
    assert_int_equal(mkdir(wfdir, 0755), 0);
    assert_int_equal(tu_copy_fixture("ok-minimal", plugins, NULL), 0);
    assert_int_equal(tu_copy_fixture("test-step", plugins, NULL), 0);
    k->record = tu_join(k->root, "runs.txt"); /* where the step appends its runs */
    k->db = tu_join(k->root, "evhost.db");
    k->first = write_host_yaml(k->root, "first.yaml", emits);
    k->second = write_host_yaml(k->root, "second.yaml", "[]");
    free(wfdir);
    free(plugins);
}

/* The workflow wf_id (its YAML text) and the trigger running it. */
static void kill_dir_workflow(kill_dir *k, const char *wf_id, const char *text)
{
    char *wfpath = NULL, *trig = NULL;
    assert_true(asprintf(&wfpath, "%s/workflows/wf.yaml", k->root) > 0);
    assert_int_equal(tu_write_file(wfpath, text), 0);
    assert_true(asprintf(&trig,
                         "triggers:\n"
                         "  - {id: all, source: ok-minimal,\n"
                         "     event_type: thing_happened, workflow: %s}\n",
                         wf_id) > 0);
    char *trigpath = tu_join(k->root, "triggers.yaml");
    assert_int_equal(tu_write_file(trigpath, trig), 0);
    free(trigpath);
    free(trig);
    free(wfpath);
}

static void kill_dir_free(kill_dir *k)
{
    tu_rmtree(k->root);
    free(k->root);
    free(k->record);
    free(k->db);
    free(k->first);
    free(k->second);
}

/* How many executions have succeeded, polled until `want` or ms pass. */
static int succeeded_within(store *st, int want, int ms)
{
    long long end = tu_now_ms() + ms;
    int done = 0;
    while (tu_now_ms() < end && done < want) {
        store_filter f = {.status = "succeeded", .limit = 100};
        cJSON *rows = store_executions_list(st, &f, NULL);
        done = rows ? cJSON_GetArraySize(rows) : 0;
        cJSON_Delete(rows);
        if (done < want)
            usleep(50000);
    }
    return done;
}

static void test_daemon_sigkill_recovery(void **state)
{
    kill_dir k;
    /* the first run emits three events; one worker, 1.5 s each: the kill
     * comes once the first step run has started and all three are accepted
     * (on a loaded machine the first step can start before the source's
     * third emit is committed: an event never acknowledged is not owed) */
    kill_dir_make(&k, "recovery",
                  "[{type: thing_happened, data: '{\"n\":1}'},"
                  " {type: thing_happened, data: '{\"n\":2}'},"
                  " {type: thing_happened, data: '{\"n\":3}'}]");
    char *wf = NULL;
    assert_true(asprintf(&wf,
                         "id: slow\n"
                         "steps:\n"
                         "  - {id: nap, uses: test-step,\n"
                         "     with: {mode: sleep, sleep_ms: 1500, record_file: \"%s\"}}\n",
                         k.record) > 0);
    kill_dir_workflow(&k, "slow", wf);
    free(wf);
    char *log1 = tu_join(k.root, "run1.log");
    char *argv1[] = {EVH_BINARY, "run", "--config", k.first, NULL};
    pid_t pid = tu_spawn(argv1, log1);
    assert_true(pid > 0);
    long long end = tu_now_ms() + 15000;
    char *runs = NULL;
    int accepted = 0;
    while (tu_now_ms() < end) {
        free(runs);
        runs = tu_read_file(k.record);
        if (runs && strchr(runs, '\n') && accepted < 3)
            accepted = count_events(k.db);
        if (runs && strchr(runs, '\n') && accepted == 3)
            break;
        usleep(10000);
    }
    assert_non_null(runs);
    assert_int_equal(accepted, 3);
    kill(pid, SIGKILL);
    assert_int_equal(tu_wait(pid, 5000), 128 + SIGKILL);
    free(runs);

    char *log2 = tu_join(k.root, "run2.log");
    char *argv2[] = {EVH_BINARY, "run", "--config", k.second, NULL};
    pid = tu_spawn(argv2, log2);
    assert_true(pid > 0);
    /* all three executions finish after the restart */
    store *st = NULL;
    store_options so = {.path = k.db};
    char *err = NULL;
    assert_int_equal(store_open(&so, &st, &err), EVH_OK);
    int done = succeeded_within(st, 3, 20000);
    kill(pid, SIGTERM);
    assert_int_equal(tu_wait(pid, 15000), 0);
    if (done != 3) {
        char *l = tu_read_file(log2);
        print_error("%s\n", l ? l : "");
        free(l);
    }
    assert_int_equal(done, 3);
    /* exactly one execution per event, three events */
    store_filter all = {.limit = 100};
    cJSON *rows = store_executions_list(st, &all, NULL);
    assert_int_equal(cJSON_GetArraySize(rows), 3);
    cJSON_Delete(rows);
    rows = store_events_list(st, &all, NULL);
    assert_int_equal(cJSON_GetArraySize(rows), 3);
    cJSON_Delete(rows);
    char *l2 = tu_read_file(log2);
    assert_non_null(strstr(l2, "recovery"));
    free(l2);
    store_close(st);
    free(log1);
    free(log2);
    kill_dir_free(&k);
    (void)state;
}

/* A kill between two attempts of a retried step: the restarted daemon goes
 * on with the next attempt instead of starting the retries over (which ran
 * the step up to twice its retry.max + 1 attempts). */
static void test_daemon_sigkill_resumes_retries(void **state)
{
    kill_dir k;
    /* fails attempts 1 and 2, succeeds on 3, the last retry.max allows; the
     * backoff before attempt 3 (4 s after 2 s doubled) is the kill's window */
    kill_dir_make(&k, "resume-retries", "[{type: thing_happened, data: '{\"n\":1}'}]");
    char *wf = NULL;
    assert_true(asprintf(&wf,
                         "id: flaky\n"
                         "steps:\n"
                         "  - {id: f, uses: test-step, retry: {max: 2, backoff_ms: 2000},\n"
                         "     with: {mode: flaky, fail_times: 2, record_file: \"%s\"}}\n",
                         k.record) > 0);
    kill_dir_workflow(&k, "flaky", wf);
    free(wf);
    char *log1 = tu_join(k.root, "run1.log");
    char *argv1[] = {EVH_BINARY, "run", "--config", k.first, NULL};
    pid_t pid = tu_spawn(argv1, log1);
    assert_true(pid > 0);
    assert_true(tu_wait_for_text(k.record, " f 2\n", 20000));
    /* the step wrote its line before it failed; the kill waits until the
     * failure of attempt 2 is stored too (the recorder writes it a few ms
     * later on a quiet machine): killed before that, the restart rightly
     * re-runs attempt 2 as an interrupted one, the at-least-once re-run */
    long long end = tu_now_ms() + 3000;
    int failed = 0;
    while (tu_now_ms() < end && (failed = count_failed_runs(k.db)) < 2)
        usleep(10000);
    assert_int_equal(failed, 2);
    kill(pid, SIGKILL); /* within the 4 s backoff before attempt 3 */
    assert_int_equal(tu_wait(pid, 5000), 128 + SIGKILL);

    char *log2 = tu_join(k.root, "run2.log");
    char *argv2[] = {EVH_BINARY, "run", "--config", k.second, NULL};
    pid = tu_spawn(argv2, log2);
    assert_true(pid > 0);
    store *st = NULL;
    store_options so = {.path = k.db};
    char *err = NULL;
    assert_int_equal(store_open(&so, &st, &err), EVH_OK);
    int done = succeeded_within(st, 1, 20000);
    kill(pid, SIGTERM);
    assert_int_equal(tu_wait(pid, 15000), 0);
    assert_int_equal(done, 1);
    /* three runs in all: 1 and 2 before the kill, 3 after it */
    char *runs = tu_read_file(k.record);
    assert_non_null(runs);
    int lines = 0;
    unsigned last = 0;
    for (const char *l = runs; *l; l = strchr(l, '\n') + 1) {
        char exec[64], step[16];
        unsigned attempt = 0;
        assert_int_equal(sscanf(l, "%63s %15s %u", exec, step, &attempt), 3);
        assert_int_equal(attempt, last + 1);
        last = attempt;
        lines++;
    }
    if (lines != 3)
        print_error("%s", runs);
    assert_int_equal(lines, 3);
    free(runs);
    store_close(st);
    free(log1);
    free(log2);
    kill_dir_free(&k);
    (void)state;
}

/* SIGHUP reloads workflows and triggers without a restart; a bad file, and
 * a config its step plugin's validate refuses, are reported and the rest
 * stays in force. */
static void test_daemon_sighup_reload(void **state)
{
    char *root = tu_tempdir("sighup");
    char *plugins = tu_join(root, "plugins");
    char *wfdir = tu_join(root, "workflows");
    assert_int_equal(mkdir(plugins, 0755), 0);
    assert_int_equal(mkdir(wfdir, 0755), 0);
    assert_int_equal(tu_copy_fixture("ok-minimal", plugins, NULL), 0);
    assert_int_equal(tu_copy_fixture("test-step", plugins, NULL), 0);
    assert_int_equal(tu_copy_fixture("validating-step", plugins, NULL), 0);
    char *wf1 = tu_join(wfdir, "one.yaml");
    assert_int_equal(tu_write_file(wf1, "id: one\nsteps:\n  - {id: a, uses: test-step}\n"), 0);
    char *trig = tu_join(root, "triggers.yaml");
    assert_int_equal(tu_write_file(trig, "triggers:\n"
                                         "  - {id: first, source: ok-minimal,\n"
                                         "     event_type: thing_happened, workflow: one}\n"),
                     0);
    char *cfg = write_host_yaml(root, "host.yaml", "[]");
    char *log = tu_join(root, "run.log");
    char *argv[] = {EVH_BINARY, "run", "--config", cfg, NULL};
    pid_t pid = tu_spawn(argv, log);
    assert_true(pid > 0);
    assert_true(tu_wait_for_text(log, "1 workflow(s) and 1 trigger(s) in force", 15000));
    assert_true(tu_wait_for_text(log, "running;", 15000));

    /* a second workflow, a second trigger, and a broken third file */
    char *wf2 = tu_join(wfdir, "two.yaml");
    assert_int_equal(tu_write_file(wf2, "id: two\nsteps:\n  - {id: b, uses: test-step}\n"), 0);
    char *wf3 = tu_join(wfdir, "three.yaml");
    assert_int_equal(tu_write_file(wf3, "id: three\nsteps: 5\n"), 0);
    char *wf4 = tu_join(wfdir, "four.yaml");
    assert_int_equal(tu_write_file(wf4, "id: four\nsteps:\n"
                                        "  - {id: v, uses: validating-step, with: {check: refuse}}\n"),
                     0);
    assert_int_equal(tu_write_file(trig, "triggers:\n"
                                         "  - {id: first, source: ok-minimal,\n"
                                         "     event_type: thing_happened, workflow: one}\n"
                                         "  - {id: second, source: ok-minimal,\n"
                                         "     event_type: thing_happened, workflow: two}\n"),
                     0);
    kill(pid, SIGHUP);
    int reloaded = tu_wait_for_text(log, "2 workflow(s) and 2 trigger(s) in force", 15000);
    int reported = tu_wait_for_text(log, "three.yaml:2:", 5000) &&
                   tu_wait_for_text(log, "four.yaml:3:50: steps[0].with.check: 'refuse' is "
                                         "refused on purpose", 5000);
    kill(pid, SIGTERM);
    int status = tu_wait(pid, 15000);
    char *text = tu_read_file(log);
    if (!reloaded || !reported || status != 0)
        print_error("%s\n", text ? text : "");
    free(text);
    assert_true(reloaded);
    assert_true(reported);
    assert_int_equal(status, 0);
    /* the table shows the new trigger */
    char *db = tu_join(root, "evhost.db");
    store *st = NULL;
    store_options so = {.path = db};
    char *err = NULL;
    assert_int_equal(store_open(&so, &st, &err), EVH_OK);
    cJSON *row = store_trigger_get(st, "second");
    assert_non_null(row);
    assert_string_equal(sget(row, "workflow_id"), "two");
    cJSON_Delete(row);
    store_close(st);
    tu_rmtree(root);
    free(db);
    free(log);
    free(cfg);
    free(trig);
    free(wf1);
    free(wf2);
    free(wf3);
    free(wf4);
    free(wfdir);
    free(plugins);
    free(root);
    (void)state;
}

int main(void)
{
    log_set_level(EVH_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trigger_conditions_run_two_steps),
        cmocka_unit_test(test_retry_then_success),
        cmocka_unit_test(test_on_error_and_timeout),
        cmocka_unit_test(test_bad_files_reported_good_parts_load),
        cmocka_unit_test(test_backpressure_loses_nothing),
        cmocka_unit_test(test_chain_depth_cut),
        cmocka_unit_test(test_daemon_sigkill_recovery),
        cmocka_unit_test(test_daemon_sigkill_resumes_retries),
        cmocka_unit_test(test_daemon_sighup_reload),
    };
    /* CMOCKA_TEST_FILTER=test_daemon_sigkill_* runs the matching tests only */
    if (getenv("CMOCKA_TEST_FILTER"))
        cmocka_set_test_filter(getenv("CMOCKA_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
