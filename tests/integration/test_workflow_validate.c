/*
 * test_workflow_validate.c - a step plugin's own check of its config when
 * the workflow loads (evh_step.validate, SDK 1.2).
 *
 *   - a refusal is reported as "file:line:column: steps[i].with.<field>:
 *     reason" at the field's position (the whole `with:` when the plugin
 *     names no field), that workflow is skipped and the others load;
 *   - validate sees the defaults, templated values as their text, a data
 *     directory, and no emit; a step whose config broke the schema is not
 *     handed to it;
 *   - a reload checks again: a fixed workflow loads, a broken one is
 *     skipped;
 *   - the built-in steps refuse at load what their init would (a URL that
 *     is not one, SQL that does not compile, a step after a good one);
 *   - a step built against SDK 1.1 (no validate) loads and runs;
 *   - an isolated plugin's validate runs in a process of its own, with the
 *     same answers, and its crash is reported, not shared.
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

#include <evhost/evhost.h>

#include "apitest.h"
#include "hostapi.h"
#include "isolate.h"
#include "store.h"
#include "testutil.h"

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, f);
    if (vasprintf(&s, f, ap) < 0)
        s = NULL;
    va_end(ap);
    assert_non_null(s);
    return s;
}

/* Every line of want (after the workflows' folder and a "/") is among the
 * problems of a reload, and there are exactly n_problems of them. */
static void expect_problems(apitest *t, const char *const *want, size_t n_problems)
{
    char *problems = at_reload_problems(t);
    size_t lines = 0;
    for (const char *p = problems; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    for (size_t i = 0; want[i]; i++) {
        char *line = fmt("%s/%s\n", t->wfdir, want[i]);
        if (!strstr(problems, line))
            fail_msg("problems:\n%s\nlack:\n%s", problems, line);
        free(line);
    }
    if (lines != n_problems)
        fail_msg("%zu problems, not %zu:\n%s", lines, n_problems, problems);
    free(problems);
}

/* The ids of the workflows in force, in the API's order (load order), joined
 * by ",". */
static char *workflows_in_force(apitest *t)
{
    at_response r;
    assert_int_equal(at_json(t, "GET", "/api/workflows", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    size_t len = 0;
    char *out = calloc(1, 1024);
    assert_non_null(out);
    const cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(r.json, "items"))
    {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "id"));
        len += (size_t)snprintf(out + len, 1024 - len, "%s%s", len ? "," : "", id ? id : "?");
    }
    at_response_free(&r);
    return out;
}

static void emit(apitest *t, const char *data, char id[37])
{
    const manifest *m = registry_find(t->r, "ok-minimal")->m;
    assert_int_equal(hostapi_emit_checked(t->rt, m, "thing_happened", data, strlen(data), NULL,
                                          NULL, NULL, id),
                     EVH_OK);
}

/* The execution of workflow wf (there must be exactly one). */
static cJSON *execution(apitest *t, const char *wf)
{
    store_filter f = {.workflow_id = wf, .limit = 10};
    cJSON *rows = store_executions_list(t->st, &f, NULL);
    assert_non_null(rows);
    assert_int_equal(cJSON_GetArraySize(rows), 1);
    const char *id =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(rows, 0), "id"));
    cJSON *x = store_execution_get(t->st, id);
    cJSON_Delete(rows);
    assert_non_null(x);
    return x;
}

/* The first step run of execution x. */
static const cJSON *first_step(const cJSON *x)
{
    const cJSON *s = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(x, "steps"), 0);
    assert_non_null(s);
    return s;
}

static const char *sget(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static size_t count_lines(const char *path)
{
    char *text = tu_read_file(path);
    size_t n = 0;
    for (const char *p = text; p && (p = strchr(p, '\n')) != NULL; p++)
        n++;
    free(text);
    return n;
}

#define VSTEP(id, with)                                                                        \
    "id: " id "\n"                                                                             \
    "steps:\n"                                                                                 \
    "  - id: v\n"                                                                              \
    "    uses: validating-step\n"                                                              \
    "    with:\n" with

static const char *const vs_fixtures[] = {"ok-minimal", "validating-step", NULL};

/* ---- the contract, through the fixture -------------------------------------- */

static void test_refusals_name_file_line_field(void **state)
{
    (void)state;
    char *logdir = tu_tempdir("validate-log");
    char *log = tu_join(logdir, "calls");
    setenv("EVH_TEST_VALIDATE_LOG", log, 1);
    static const char *const wfs[] = {
        VSTEP("refuse", "      check: refuse\n"),
        VSTEP("item", "      check: item\n"
                      "      items: [a, b, c]\n"),
        VSTEP("whole", "      level: 3\n"
                       "      check: whole\n"),
        VSTEP("bare", "      check: bare\n"),
        VSTEP("templated", "      check: \"{{ event.data.check }}\"\n"),
        /* a schema problem is reported, and validate never sees the config */
        VSTEP("schema", "      check: 5\n"),
        /* the second step of a workflow whose first one is fine */
        "id: second\n"
        "steps:\n"
        "  - {id: a, uses: validating-step}\n"
        "  - {id: b, uses: validating-step, with: {check: refuse}}\n",
        VSTEP("good", "      check: ok\n"),
        NULL};
    at_options o = {.fixtures = vs_fixtures,
                    .workflows = wfs,
                    .triggers = "triggers:\n"
                                "  - {id: t, source: ok-minimal, event_type: thing_happened, "
                                "workflow: templated}\n"};
    apitest *t = at_start(&o);
    size_t calls_at_start = count_lines(log);
    assert_int_equal(calls_at_start, 8); /* every step but the schema's */

    static const char *const want[] = {
        "wf0.yaml:6:14: steps[0].with.check: 'refuse' is refused on purpose",
        "wf1.yaml:7:18: steps[0].with.items[1]: this item is refused on purpose",
        /* no field: at the with: block, the plugin's line break flattened */
        "wf2.yaml:6:7: steps[0].with: the config as a whole is refused on purpose",
        "wf3.yaml:6:7: steps[0].with: not found (EVH_E_NOT_FOUND)",
        "wf5.yaml:6:14: steps[0].with.check: expected string, got number (configSchema of "
        "'validating-step')",
        "wf6.yaml:4:50: steps[1].with.check: 'refuse' is refused on purpose",
        NULL};
    expect_problems(t, want, 6);
    assert_int_equal(count_lines(log), 2 * calls_at_start); /* the reload checked again */
    char *ids = workflows_in_force(t);
    assert_string_equal(ids, "templated,good");
    free(ids);

    /* the templated value was left to the run, which resolves it */
    char ev[37];
    emit(t, "{\"n\": 1, \"check\": \"refuse\"}", ev);
    at_wait_settled(t, 1);
    cJSON *x = execution(t, "templated");
    assert_string_equal(sget(x, "status"), "succeeded");
    char *out = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(first_step(x), "output"));
    assert_string_equal(out, "{\"check\":\"refuse\"}");
    free(out);
    cJSON_Delete(x);
    /* validate emitted nothing: the one event is the test's */
    assert_int_equal(atomic_load(&t->rt->emitted), 1);
    at_stop(t);
    unsetenv("EVH_TEST_VALIDATE_LOG");
    tu_rmtree(logdir);
    free(logdir);
    free(log);
}

/* A reload checks again: a fixed workflow loads, one broken since is
 * skipped while the other workflows stay. */
static void test_reload_checks_again(void **state)
{
    (void)state;
    static const char *const wfs[] = {VSTEP("one", "      check: refuse\n"),
                                      VSTEP("two", "      check: ok\n"), NULL};
    at_options o = {.fixtures = vs_fixtures, .workflows = wfs};
    apitest *t = at_start(&o);
    char *ids = workflows_in_force(t);
    assert_string_equal(ids, "two");
    free(ids);

    char *one = fmt("%s/wf0.yaml", t->wfdir), *two = fmt("%s/wf1.yaml", t->wfdir);
    assert_int_equal(tu_write_file(one, VSTEP("one", "      check: ok\n")), 0);
    assert_int_equal(tu_write_file(two, VSTEP("two", "      check: item\n"
                                                     "      items: [x, y]\n")),
                     0);
    static const char *const want[] = {
        "wf1.yaml:7:18: steps[0].with.items[1]: this item is refused on purpose", NULL};
    expect_problems(t, want, 1);
    ids = workflows_in_force(t);
    assert_string_equal(ids, "one");
    free(ids);
    free(one);
    free(two);
    at_stop(t);
}

/* ---- the built-in steps ------------------------------------------------------- */

static void test_builtin_steps_refuse_at_load(void **state)
{
    (void)state;
    char *dir = tu_tempdir("validate-builtins");
    static const char *const builtins[] = {"file", "sqlite", "exec", "http-request", NULL};
    char *good = fmt("id: good\n"
                     "steps:\n"
                     "  - id: save\n"
                     "    uses: file\n"
                     "    with: {roots: [\"%s\"], path: \"{{ event.data.name }}\", content: x}\n"
                     "  - id: store\n"
                     "    uses: sqlite\n"
                     "    with:\n"
                     "      database: good.db\n"
                     "      setup: [\"CREATE TABLE IF NOT EXISTS seen(name TEXT)\"]\n"
                     "      sql: INSERT INTO seen(name) VALUES (:name)\n"
                     "      params: {name: \"{{ event.data.name }}\"}\n"
                     "  - id: call\n"
                     "    uses: http-request\n"
                     "    with: {url: \"{{ event.data.url }}\"}\n"
                     "  - id: run\n"
                     "    uses: exec\n"
                     "    with: {command: [\"true\"], cwd: \"%s\"}\n",
                     dir, dir);
    const char *const wfs[] = {
        "id: bad-url\n"
        "steps:\n"
        "  - id: call\n"
        "    uses: http-request\n"
        "    with:\n"
        "      url: \"http://exa mple.com/\"\n",
        "id: bad-sql\n"
        "steps:\n"
        "  - id: q\n"
        "    uses: sqlite\n"
        "    with:\n"
        "      database: bad.db\n"
        "      sql: SELEC 1\n",
        "id: bad-cwd\n"
        "steps:\n"
        "  - id: run\n"
        "    uses: exec\n"
        "    with:\n"
        "      command: [\"true\"]\n"
        "      cwd: /nonexistent-evh-cwd\n",
        good, NULL};
    at_options o = {.builtins = builtins, .workflows = wfs};
    apitest *t = at_start(&o);
    static const char *const want[] = {
        "wf0.yaml:6:12: steps[0].with.url: not a valid absolute URL",
        "wf1.yaml:7:12: steps[0].with.sql: near \"SELEC\": syntax error",
        "wf2.yaml:7:12: steps[0].with.cwd: '/nonexistent-evh-cwd': No such file or directory",
        NULL};
    expect_problems(t, want, 3);
    char *ids = workflows_in_force(t);
    assert_string_equal(ids, "good");
    free(ids);
    /* checking changed nothing: no database was created, not even good's */
    char *bad_db = fmt("%s/plugins/sqlite/bad.db", t->data);
    char *good_db = fmt("%s/plugins/sqlite/good.db", t->data);
    struct stat st;
    assert_int_equal(stat(bad_db, &st), -1);
    assert_int_equal(stat(good_db, &st), -1);
    free(bad_db);
    free(good_db);
    at_stop(t);
    tu_rmtree(dir);
    free(dir);
    free(good);
}

/* ---- older plugins, isolated plugins ----------------------------------------- */

/* Built against SDK 1.1: no validate, so a bad root loads and fails at its
 * first run, as before 1.2; a good one runs. */
static void test_step_built_against_abi11(void **state)
{
    (void)state;
    static const char *const fixtures[] = {"ok-minimal", "step-abi11", NULL};
    static const char *const wfs[] = {
        "id: old-bad\n"
        "steps:\n"
        "  - {id: s, uses: step-abi11, with: {root: /nonexistent-evh-root}}\n",
        "id: old-good\n"
        "steps:\n"
        "  - {id: s, uses: step-abi11, with: {root: /}}\n",
        NULL};
    at_options o = {
        .fixtures = fixtures,
        .workflows = wfs,
        .triggers = "triggers:\n"
                    "  - {id: a, source: ok-minimal, event_type: thing_happened, workflow: old-bad}\n"
                    "  - {id: b, source: ok-minimal, event_type: thing_happened, workflow: "
                    "old-good}\n"};
    apitest *t = at_start(&o);
    const plugin *p = registry_find(t->r, "step-abi11");
    assert_non_null(p);
    assert_int_equal(p->state, PLUGIN_READY);
    assert_int_equal(p->desc->abi_minor, 1);
    assert_int_equal(p->desc->step->struct_size, 32);
    assert_false(EVH_STEP_HAS(p->desc->step, validate));
    static const char *const none[] = {NULL};
    expect_problems(t, none, 0);
    char ev[37];
    emit(t, "{\"n\": 1}", ev);
    at_wait_settled(t, 1);
    cJSON *x = execution(t, "old-bad");
    assert_string_equal(sget(x, "status"), "failed");
    assert_non_null(strstr(sget(first_step(x), "error"), "root: '/nonexistent-evh-root' does not "
                                                         "exist"));
    cJSON_Delete(x);
    x = execution(t, "old-good");
    assert_string_equal(sget(x, "status"), "succeeded");
    cJSON_Delete(x);
    at_stop(t);
}

/* Isolated: validate runs in a child of its own and answers the same; a
 * crash there is reported for that workflow and counted, and the host goes
 * on. */
static void test_isolated_validate(void **state)
{
    (void)state;
    cJSON *ov = cJSON_Parse("{\"validating-step\": \"process\", \"file\": \"process\"}");
    isolate_settings s = {
        .helper = EVH_BINARY, .overrides = ov, .crash_limit = 10, .crash_window_s = 300};
    isolate_configure(&s);
    cJSON_Delete(ov);
    static const char *const builtins[] = {"file", NULL};
    static const char *const wfs[] = {
        VSTEP("refuse", "      check: refuse\n"),
        VSTEP("crash", "      check: crash\n"),
        VSTEP("good", "      check: ok\n"),
        "id: no-root\n"
        "steps:\n"
        "  - id: save\n"
        "    uses: file\n"
        "    with:\n"
        "      roots: [/nonexistent-evh-root]\n"
        "      path: a.txt\n",
        NULL};
    at_options o = {.fixtures = vs_fixtures, .builtins = builtins, .workflows = wfs};
    apitest *t = at_start(&o);
    assert_non_null(registry_find(t->r, "validating-step")->iso);
    assert_non_null(registry_find(t->r, "file")->iso);
    static const char *const want[] = {
        "wf0.yaml:6:14: steps[0].with.check: 'refuse' is refused on purpose",
        "wf1.yaml:6:7: steps[0].with: plugin 'validating-step' crashed: SIGSEGV during validate",
        "wf3.yaml:6:15: steps[0].with.roots[0]: '/nonexistent-evh-root' does not exist",
        NULL};
    expect_problems(t, want, 3);
    char *ids = workflows_in_force(t);
    assert_string_equal(ids, "good");
    free(ids);
    at_stop(t);
    isolate_configure(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals_name_file_line_field),
        cmocka_unit_test(test_reload_checks_again),
        cmocka_unit_test(test_builtin_steps_refuse_at_load),
        cmocka_unit_test(test_step_built_against_abi11),
        cmocka_unit_test(test_isolated_validate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
