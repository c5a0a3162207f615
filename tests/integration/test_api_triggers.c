/*
 * test_api_triggers.c - the triggers and workflows endpoints over real HTTP
 * on loopback (apitest.h): a trigger created through the API runs its
 * workflow for a real emitted event and survives a reload; validation is
 * the YAML triggers' (400 with a detail path per problem, closed schemas
 * included); ids conflict (409, also under concurrent creation); triggers
 * of a YAML file are read-only; PUT, PATCH (enabled: false stops the runs)
 * and DELETE; the dry run explains every clause; workflows are listed with
 * their secrets redacted and the triggers that run them.
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
#include <unistd.h>

#include <evhost/evhost.h>

#include "apitest.h"
#include "hostapi.h"
#include "jsonpath.h"
#include "log.h"
#include "testutil.h"

/* ---- the host under test ------------------------------------------------------ */

static const char *const fixtures[] = {"ok-minimal", "test-step", "closed-schema", NULL};

static const char *const workflows[] = {
    "id: wf-main\n"
    "name: Main workflow\n"
    "steps:\n"
    "  - id: only\n"
    "    uses: test-step\n"
    "    with:\n"
    "      value:\n"
    "        api_key: k-123\n"
    "        Password: p-456\n"
    "        nested:\n"
    "          auth_token: t-789\n"
    "          list: [{client_secret: s-000}, plain-item]\n"
    "        env_ref: \"${HOME}\"\n"
    "        plain: hello\n",
    "id: wf-other\n"
    "steps:\n"
    "  - id: only\n"
    "    uses: test-step\n"
    "    with: {value: \"{{ event.data.n }}\"}\n",
    NULL};

static const char yaml_triggers[] = "triggers:\n"
                                    "  - id: yaml-one\n"
                                    "    name: From YAML\n"
                                    "    description: Defined in a file\n"
                                    "    source: ok-minimal\n"
                                    "    event_type: thing_happened\n"
                                    "    workflow: wf-other\n"
                                    "    conditions:\n"
                                    "      - {field: data.label, op: eq, value: from-yaml}\n";

typedef struct host {
    apitest *t;
    unsigned long long emitted;
} host;

static host *start(void)
{
    at_options o = {.fixtures = fixtures, .workflows = workflows, .triggers = yaml_triggers};
    host *h = calloc(1, sizeof *h);
    assert_non_null(h);
    h->t = at_start(&o);
    return h;
}

static void stop(host *h)
{
    at_stop(h->t);
    free(h);
}

/* Emit as ok-minimal and wait until the engine settled it; the event id
 * goes to id. */
static void emit(host *h, const char *data, char id[37])
{
    const manifest *m = registry_find(h->t->r, "ok-minimal")->m;
    assert_int_equal(hostapi_emit_checked(h->t->rt, m, "thing_happened", data, strlen(data),
                                          "user-7", NULL, NULL, id),
                     EVH_OK);
    at_wait_settled(h->t, ++h->emitted);
}

/* The executions of trigger_id, once all of them finished (and at least
 * `want` exist). */
static cJSON *executions_of(host *h, const char *trigger_id, int want)
{
    long long end = tu_now_ms() + 20000;
    for (;;) {
        store_filter f = {.trigger_id = trigger_id, .limit = 100};
        cJSON *rows = store_executions_list(h->t->st, &f, NULL);
        assert_non_null(rows);
        int n = 0, finished = 0;
        const cJSON *r;
        cJSON_ArrayForEach(r, rows)
        {
            n++;
            const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "status"));
            finished += s && (!strcmp(s, "succeeded") || !strcmp(s, "failed"));
        }
        if (n >= want && finished == n)
            return rows;
        cJSON_Delete(rows);
        if (tu_now_ms() > end)
            fail_msg("trigger %s: %d execution(s) of %d finished", trigger_id, finished, want);
        usleep(5000);
    }
}

static int count_executions(host *h, const char *trigger_id)
{
    cJSON *rows = executions_of(h, trigger_id, 0);
    int n = cJSON_GetArraySize(rows);
    cJSON_Delete(rows);
    return n;
}

/* ---- HTTP helpers --------------------------------------------------------------- */

static at_response call(host *h, const char *method, const char *path, const char *body)
{
    at_response r;
    if (body)
        assert_int_equal(at_json(h->t, method, path, body, &r), 0);
    else
        assert_int_equal(at_request(h->t, method, path, NULL, NULL, 0, &r), 0);
    return r;
}

static const cJSON *jp(const at_response *r, const char *path)
{
    return json_path_get(r->json, path);
}

static const char *js(const at_response *r, const char *path)
{
    return cJSON_GetStringValue(json_path_get(r->json, path));
}

static int jtrue(const at_response *r, const char *path)
{
    return cJSON_IsTrue(json_path_get(r->json, path));
}

static void expect(host *h, const char *method, const char *path, const char *body, long status)
{
    at_response r = call(h, method, path, body);
    if (r.status != status)
        print_error("%s %s -> %ld %s\n", method, path, r.status, r.body);
    assert_int_equal(r.status, status);
    at_response_free(&r);
}

/* The error has code and a detail with path (and reason containing part). */
static void assert_detail(const at_response *r, const char *code, const char *path,
                          const char *part)
{
    assert_string_equal(js(r, "error.code"), code);
    const cJSON *d;
    cJSON_ArrayForEach(d, jp(r, "error.details"))
    {
        const char *p = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "path"));
        const char *why = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "reason"));
        if (p && !strcmp(p, path) && why && (!part || strstr(why, part)))
            return;
    }
    fail_msg("no detail at '%s' (reason with '%s') in %s", path, part ? part : "", r->body);
}

/* The item of a list answer with this id, or NULL. */
static const cJSON *item_with_id(const at_response *r, const char *id)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, jp(r, "items"))
    {
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "id"));
        if (v && !strcmp(v, id))
            return it;
    }
    return NULL;
}

static const char *sget(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

#define BIG_THINGS                                                                                 \
    "{\"name\": \"Big things!\", \"source\": \"ok-minimal\", \"event_type\": \"thing_happened\", " \
    "\"workflow\": \"wf-main\", \"conditions\": {\"all\": [{\"field\": \"data.n\", \"op\": "        \
    "\"gte\", \"value\": 2}]}}"

/* ---- create, run, list, reload -------------------------------------------------------- */

static void test_create_runs_workflow(void **state)
{
    host *h = start();
    at_response r = call(h, "POST", "/api/triggers", BIG_THINGS);
    assert_int_equal(r.status, 201);
    char id[64];
    snprintf(id, sizeof id, "%s", js(&r, "id"));
    /* a readable generated id: the name in kebab-case and a short suffix */
    assert_int_equal(strncmp(id, "big-things-", 11), 0);
    assert_int_equal(strlen(id), 17);
    char *loc = at_header(&r, "Location");
    char want[96];
    snprintf(want, sizeof want, "/api/triggers/%s", id);
    assert_non_null(loc);
    assert_string_equal(loc, want);
    free(loc);
    assert_string_equal(js(&r, "name"), "Big things!");
    assert_string_equal(js(&r, "origin"), "api");
    assert_string_equal(js(&r, "workflow"), "wf-main");
    assert_string_equal(js(&r, "conditions.all[0].op"), "gte");
    assert_true(jtrue(&r, "enabled"));
    assert_true(jtrue(&r, "in_force"));
    assert_true(cJSON_IsNull(jp(&r, "description")));
    assert_int_equal(strlen(js(&r, "created_at")), 24);
    assert_non_null(js(&r, "updated_at"));
    at_response_free(&r);

    /* the row of the seed's table, origin api */
    cJSON *rows = store_triggers_list(h->t->st);
    const cJSON *row, *mine = NULL;
    cJSON_ArrayForEach(row, rows)
    {
        if (!strcmp(sget(row, "id"), id))
            mine = row;
    }
    assert_non_null(mine);
    assert_string_equal(sget(mine, "origin"), "api");
    assert_string_equal(sget(mine, "workflow_id"), "wf-main");
    assert_string_equal(sget(mine, "source"), "ok-minimal");
    cJSON_Delete(rows);

    /* an event that satisfies the conditions runs the workflow; one that
     * does not, does not */
    char big[37], small[37];
    emit(h, "{\"n\": 5}", big);
    emit(h, "{\"n\": 1}", small);
    cJSON *x = executions_of(h, id, 1);
    assert_int_equal(cJSON_GetArraySize(x), 1);
    assert_string_equal(sget(cJSON_GetArrayItem(x, 0), "event_id"), big);
    assert_string_equal(sget(cJSON_GetArrayItem(x, 0), "workflow_id"), "wf-main");
    assert_string_equal(sget(cJSON_GetArrayItem(x, 0), "status"), "succeeded");
    cJSON_Delete(x);

    /* one and all */
    r = call(h, "GET", want, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(js(&r, "id"), id);
    at_response_free(&r);
    r = call(h, "GET", "/api/triggers", NULL);
    assert_int_equal(r.status, 200);
    assert_true(cJSON_IsNull(jp(&r, "next_cursor")));
    assert_non_null(item_with_id(&r, id));
    const cJSON *yaml = item_with_id(&r, "yaml-one");
    assert_non_null(yaml);
    assert_string_equal(sget(yaml, "origin"), h->t->trigfile);
    assert_string_equal(sget(yaml, "description"), "Defined in a file");
    assert_non_null(sget(yaml, "created_at"));
    at_response_free(&r);
    /* filters */
    r = call(h, "GET", "/api/triggers?source=ok-minimal&workflow=wf-main", NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(item_with_id(&r, id));
    assert_null(item_with_id(&r, "yaml-one"));
    at_response_free(&r);
    r = call(h, "GET", "/api/triggers?event_type=thing_happened&workflow=wf-other", NULL);
    assert_null(item_with_id(&r, id));
    assert_non_null(item_with_id(&r, "yaml-one"));
    at_response_free(&r);
    r = call(h, "GET", "/api/triggers?source=closed-schema", NULL);
    assert_int_equal(cJSON_GetArraySize(jp(&r, "items")), 0);
    at_response_free(&r);
    expect(h, "GET", "/api/triggers/no-such-trigger", NULL, 404);

    /* a reload (SIGHUP) reads API triggers back from the table */
    assert_int_equal(pipeline_reload(&h->t->rl, NULL), EVH_OK);
    r = call(h, "GET", want, NULL);
    assert_int_equal(r.status, 200);
    assert_true(jtrue(&r, "in_force"));
    assert_string_equal(js(&r, "origin"), "api");
    assert_string_equal(js(&r, "name"), "Big things!");
    at_response_free(&r);
    char again[37];
    emit(h, "{\"n\": 9}", again);
    x = executions_of(h, id, 2);
    assert_int_equal(cJSON_GetArraySize(x), 2);
    cJSON_Delete(x);
    stop(h);
    (void)state;
}

/* ---- validation ------------------------------------------------------------------ */

#define OK_SRC "\"source\": \"ok-minimal\", \"event_type\": \"thing_happened\""

static void test_validation_400(void **state)
{
    static const struct {
        const char *body, *path, *reason;
    } cases[] = {
        {"{\"source\": \"nope\", \"event_type\": \"thing_happened\", \"workflow\": \"wf-main\"}",
         "source", "unknown event source 'nope'"},
        {"{\"source\": \"ok-minimal\", \"event_type\": \"nothing\", \"workflow\": \"wf-main\"}",
         "event_type", "does not declare event type 'nothing'"},
        {"{" OK_SRC ", \"workflow\": \"no-such-workflow\"}", "workflow",
         "unknown workflow 'no-such-workflow'"},
        /* near misses name what was meant (the seed's "my-Timer" gotcha) */
        {"{\"source\": \"OK-Minimal\", \"event_type\": \"thing_happened\", \"workflow\": "
         "\"wf-main\"}",
         "source", "unknown event source 'OK-Minimal' (did you mean 'ok-minimal'?)"},
        {"{\"source\": \"ok-minimal\", \"event_type\": \"thing_hapened\", \"workflow\": "
         "\"wf-main\"}",
         "event_type",
         "source 'ok-minimal' does not declare event type 'thing_hapened' (did you mean "
         "'thing_happened'?)"},
        {"{" OK_SRC ", \"workflow\": \"wf-mian\"}", "workflow",
         "unknown workflow 'wf-mian' (did you mean 'wf-main'?)"},
        {"{" OK_SRC "}", "workflow", "required"},
        {"{" OK_SRC ", \"workflow\": \"wf-main\", \"conditions\": [{\"field\": \"data.n\", "
         "\"op\": \"equals\", \"value\": 1}]}",
         "conditions[0].op", "unknown operator 'equals'"},
        {"{" OK_SRC ", \"workflow\": \"wf-main\", \"conditions\": {\"all\": [{\"field\": "
         "\"data.label\", \"op\": \"matches\", \"value\": \"(unclosed\"}]}}",
         "conditions.all[0].value", "invalid regex"},
        {"{\"source\": \"closed-schema\", \"event_type\": \"file_added\", \"workflow\": "
         "\"wf-main\", \"conditions\": [{\"field\": \"data.owner\", \"op\": \"eq\", \"value\": "
         "\"x\"}]}",
         "conditions[0].field", "not in the schema"},
        {"{" OK_SRC ", \"workflow\": \"wf-main\", \"conditions\": [{\"field\": \"data.label\", "
         "\"op\": \"gt\", \"value\": 5}]}",
         "conditions[0].value", NULL},
        {"{\"sorce\": \"ok-minimal\", \"event_type\": \"thing_happened\", \"workflow\": "
         "\"wf-main\"}",
         "sorce", "unknown key"},
        {"{\"id\": \"bad id!\", " OK_SRC ", \"workflow\": \"wf-main\"}", "id", "invalid id"},
        {"{" OK_SRC ", \"workflow\": \"wf-main\", \"enabled\": \"yes\"}", "enabled",
         "true or false"},
        {"{" OK_SRC ", \"workflow\": \"wf-main\", \"description\": \"words\"}", "description",
         "cannot keep a description"},
        {"{" OK_SRC ", \"workflow\": \"wf-main\", \"origin\": \"triggers.yaml\"}", "origin",
         "read-only"},
    };
    host *h = start();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        at_response r = call(h, "POST", "/api/triggers", cases[i].body);
        if (r.status != 400)
            print_error("case %zu: %ld %s\n", i, r.status, r.body);
        assert_int_equal(r.status, 400);
        assert_detail(&r, "invalid", cases[i].path, cases[i].reason);
        at_response_free(&r);
    }
    /* every problem in one answer */
    at_response r = call(h, "POST", "/api/triggers",
                         "{\"source\": \"nope\", \"event_type\": \"x\", \"workflow\": \"nope\", "
                         "\"conditions\": [{\"field\": \"data.n\", \"op\": \"equals\", "
                         "\"value\": 1}]}");
    assert_int_equal(r.status, 400);
    assert_detail(&r, "invalid", "source", NULL);
    assert_detail(&r, "invalid", "workflow", NULL);
    assert_detail(&r, "invalid", "conditions[0].op", NULL);
    at_response_free(&r);
    /* not JSON, not an object, not JSON's media type */
    r = call(h, "POST", "/api/triggers", "{\"source\": ");
    assert_int_equal(r.status, 400);
    assert_string_equal(js(&r, "error.code"), "malformed_json");
    at_response_free(&r);
    expect(h, "POST", "/api/triggers", "[1, 2]", 400);
    static const char *const text[] = {"Content-Type: text/plain", NULL};
    assert_int_equal(at_request(h->t, "POST", "/api/triggers", text, BIG_THINGS, (size_t)-1, &r),
                     0);
    assert_int_equal(r.status, 415);
    at_response_free(&r);
    /* ok-minimal's schema is open: a field it does not list is fine */
    expect(h, "POST", "/api/triggers",
           "{\"id\": \"open-schema\", " OK_SRC ", \"workflow\": \"wf-main\", \"conditions\": "
           "[{\"field\": \"data.anything\", \"op\": \"exists\"}]}",
           201);
    /* nothing refused reached the table */
    cJSON *rows = store_triggers_list(h->t->st);
    assert_int_equal(cJSON_GetArraySize(rows), 2); /* yaml-one, open-schema */
    cJSON_Delete(rows);
    stop(h);
    (void)state;
}

/* ---- conflicts ------------------------------------------------------------------------ */

typedef struct racer {
    host *h;
    long status;
} racer;

static void *race_post(void *ud)
{
    racer *r = ud;
    at_response res;
    if (at_json(r->h->t, "POST", "/api/triggers",
                "{\"id\": \"race\", " OK_SRC ", \"workflow\": \"wf-main\"}", &res) == 0)
        r->status = res.status;
    at_response_free(&res);
    return NULL;
}

static void test_conflicts(void **state)
{
    host *h = start();
    const char *dup = "{\"id\": \"dup\", " OK_SRC ", \"workflow\": \"wf-main\"}";
    expect(h, "POST", "/api/triggers", dup, 201);
    at_response r = call(h, "POST", "/api/triggers", dup);
    assert_int_equal(r.status, 409);
    assert_string_equal(js(&r, "error.code"), "conflict");
    at_response_free(&r);

    /* the id of a YAML trigger is taken too */
    r = call(h, "POST", "/api/triggers",
             "{\"id\": \"yaml-one\", " OK_SRC ", \"workflow\": \"wf-main\"}");
    assert_int_equal(r.status, 409);
    assert_non_null(strstr(js(&r, "error.message"), h->t->trigfile));
    at_response_free(&r);

    /* a YAML trigger belongs to its file: no PUT, PATCH or DELETE */
    const char *methods[] = {"PUT", "PATCH", "DELETE"};
    const char *bodies[] = {"{" OK_SRC ", \"workflow\": \"wf-main\"}", "{\"enabled\": false}",
                            NULL};
    for (size_t i = 0; i < 3; i++) {
        r = call(h, methods[i], "/api/triggers/yaml-one", bodies[i]);
        assert_int_equal(r.status, 409);
        assert_string_equal(js(&r, "error.code"), "conflict");
        assert_non_null(strstr(js(&r, "error.message"), h->t->trigfile));
        at_response_free(&r);
    }
    r = call(h, "GET", "/api/triggers/yaml-one", NULL);
    assert_int_equal(r.status, 200);
    assert_true(jtrue(&r, "enabled"));
    assert_string_equal(js(&r, "workflow"), "wf-other");
    at_response_free(&r);

    /* concurrent creations of one id: exactly one wins */
    enum { N = 8 };
    racer racers[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        racers[i] = (racer){h, 0};
        assert_int_equal(pthread_create(&th[i], NULL, race_post, &racers[i]), 0);
    }
    int created = 0, conflicts = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        created += racers[i].status == 201;
        conflicts += racers[i].status == 409;
    }
    assert_int_equal(created, 1);
    assert_int_equal(conflicts, N - 1);
    r = call(h, "GET", "/api/triggers/race", NULL);
    assert_int_equal(r.status, 200);
    assert_true(jtrue(&r, "in_force"));
    at_response_free(&r);
    stop(h);
    (void)state;
}

/* ---- PUT, PATCH, DELETE ----------------------------------------------------------------- */

static void test_put_patch_delete(void **state)
{
    host *h = start();
    at_response r = call(h, "POST", "/api/triggers",
                         "{\"id\": \"editable\", \"name\": \"Editable\", " OK_SRC
                         ", \"workflow\": \"wf-main\", \"conditions\": [{\"field\": "
                         "\"data.n\", \"op\": \"gte\", \"value\": 2}]}");
    assert_int_equal(r.status, 201);
    char created_at[32];
    snprintf(created_at, sizeof created_at, "%s", js(&r, "created_at"));
    at_response_free(&r);

    /* PUT replaces the whole definition; the id may be repeated */
    usleep(2000);
    r = call(h, "PUT", "/api/triggers/editable",
             "{\"id\": \"editable\", \"name\": \"Edited\", " OK_SRC
             ", \"workflow\": \"wf-other\", \"conditions\": [{\"field\": \"data.n\", \"op\": "
             "\"lt\", \"value\": 100}]}");
    assert_int_equal(r.status, 200);
    assert_string_equal(js(&r, "name"), "Edited");
    assert_string_equal(js(&r, "workflow"), "wf-other");
    assert_string_equal(js(&r, "conditions[0].op"), "lt");
    assert_string_equal(js(&r, "created_at"), created_at);
    assert_true(strcmp(js(&r, "updated_at"), created_at) > 0);
    at_response_free(&r);
    /* what a GET gave can be PUT back */
    r = call(h, "GET", "/api/triggers/editable", NULL);
    char *round_trip = cJSON_PrintUnformatted(r.json);
    at_response_free(&r);
    expect(h, "PUT", "/api/triggers/editable", round_trip, 200);
    free(round_trip);

    /* a PUT that does not validate changes nothing */
    r = call(h, "PUT", "/api/triggers/editable",
             "{" OK_SRC ", \"workflow\": \"gone\", \"conditions\": [{\"field\": \"data.n\", "
             "\"op\": \"nope\"}]}");
    assert_int_equal(r.status, 400);
    assert_detail(&r, "invalid", "workflow", "unknown workflow");
    assert_detail(&r, "invalid", "conditions[0].op", NULL);
    at_response_free(&r);
    r = call(h, "PUT", "/api/triggers/editable",
             "{\"id\": \"renamed\", " OK_SRC ", \"workflow\": \"wf-main\"}");
    assert_int_equal(r.status, 400);
    assert_detail(&r, "invalid", "id", "cannot be renamed");
    at_response_free(&r);
    r = call(h, "GET", "/api/triggers/editable", NULL);
    assert_string_equal(js(&r, "workflow"), "wf-other");
    at_response_free(&r);
    expect(h, "PUT", "/api/triggers/no-such", "{" OK_SRC ", \"workflow\": \"wf-main\"}", 404);
    expect(h, "PATCH", "/api/triggers/no-such", "{\"enabled\": false}", 404);

    /* PATCH merges: enabled false keeps the rest, and stops the runs */
    r = call(h, "PATCH", "/api/triggers/editable", "{\"enabled\": false}");
    assert_int_equal(r.status, 200);
    assert_false(jtrue(&r, "enabled"));
    assert_true(jtrue(&r, "in_force"));
    assert_string_equal(js(&r, "name"), "Edited");
    assert_string_equal(js(&r, "workflow"), "wf-other");
    assert_string_equal(js(&r, "conditions[0].op"), "lt");
    at_response_free(&r);
    char ev[37];
    emit(h, "{\"n\": 5}", ev);
    assert_int_equal(count_executions(h, "editable"), 0);
    cJSON *stored = store_event_get(h->t->st, ev);
    assert_string_equal(sget(stored, "status"), "unmatched");
    cJSON_Delete(stored);
    /* a disabled trigger is still listed */
    r = call(h, "GET", "/api/triggers", NULL);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(item_with_id(&r, "editable"),
                                                                "enabled")));
    at_response_free(&r);

    /* enabled again: runs again */
    expect(h, "PATCH", "/api/triggers/editable", "{\"enabled\": true}", 200);
    emit(h, "{\"n\": 6}", ev);
    cJSON *x = executions_of(h, "editable", 1);
    assert_int_equal(cJSON_GetArraySize(x), 1);
    assert_string_equal(sget(cJSON_GetArrayItem(x, 0), "workflow_id"), "wf-other");
    cJSON_Delete(x);

    /* null removes a field; a merged result is validated like the rest */
    r = call(h, "PATCH", "/api/triggers/editable", "{\"conditions\": null, \"name\": null}");
    assert_int_equal(r.status, 200);
    assert_true(cJSON_IsNull(jp(&r, "conditions")));
    assert_string_equal(js(&r, "name"), "editable"); /* the default: the id */
    at_response_free(&r);
    r = call(h, "PATCH", "/api/triggers/editable", "{\"workflow\": \"nope\"}");
    assert_int_equal(r.status, 400);
    assert_detail(&r, "invalid", "workflow", "unknown workflow");
    at_response_free(&r);

    /* DELETE: 204 without a body, then gone everywhere */
    r = call(h, "DELETE", "/api/triggers/editable", NULL);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body_len, 0);
    at_response_free(&r);
    expect(h, "GET", "/api/triggers/editable", NULL, 404);
    expect(h, "DELETE", "/api/triggers/editable", NULL, 404);
    assert_null(store_trigger_get(h->t->st, "editable"));
    r = call(h, "GET", "/api/triggers", NULL);
    assert_null(item_with_id(&r, "editable"));
    at_response_free(&r);
    emit(h, "{\"n\": 7}", ev);
    assert_int_equal(count_executions(h, "editable"), 1); /* only the earlier one */
    stop(h);
    (void)state;
}

/* ---- the dry run ------------------------------------------------------------------------ */

static void test_dry_run(void **state)
{
    host *h = start();
    expect(h, "POST", "/api/triggers",
           "{\"id\": \"dry\", " OK_SRC ", \"workflow\": \"wf-main\", \"conditions\": {\"all\": ["
           "{\"field\": \"data.n\", \"op\": \"gte\", \"value\": 2},"
           "{\"not\": {\"field\": \"data.label\", \"op\": \"eq\", \"value\": \"skip\"}},"
           "{\"any\": [{\"field\": \"data.n\", \"op\": \"in\", \"value\": [5, 6]},"
           "           {\"field\": \"metadata.user_id\", \"op\": \"eq\", \"value\": \"boss\"}]}"
           "]}}",
           201);
    const char *full = "{\"event_type\": \"thing_happened\", \"source\": \"ok-minimal\", "
                       "\"data\": {\"n\": 5}}";
    at_response r = call(h, "POST", "/api/triggers/dry/test", full);
    assert_int_equal(r.status, 200);
    assert_string_equal(js(&r, "trigger"), "dry");
    assert_true(jtrue(&r, "matched"));
    assert_true(jtrue(&r, "would_run"));
    assert_true(jtrue(&r, "source_matches"));
    assert_true(jtrue(&r, "event_type_matches"));
    assert_true(jtrue(&r, "conditions.result"));
    assert_true(jtrue(&r, "conditions.all[0].result"));
    assert_int_equal(jp(&r, "conditions.all[0].actual")->valueint, 5);
    assert_true(jtrue(&r, "conditions.all[1].result"));
    assert_true(jtrue(&r, "conditions.all[1].not.missing")); /* no label */
    assert_false(jtrue(&r, "conditions.all[1].not.result"));
    assert_true(jtrue(&r, "conditions.all[2].any[0].result"));
    assert_false(jtrue(&r, "conditions.all[2].any[1].result"));
    /* the event as tested: metadata filled in like a real event's */
    assert_string_equal(js(&r, "event.metadata.source"), "ok-minimal");
    assert_non_null(js(&r, "event.metadata.timestamp"));
    at_response_free(&r);

    /* each clause's own result */
    r = call(h, "POST", "/api/triggers/dry/test",
             "{\"event_type\": \"thing_happened\", \"source\": \"ok-minimal\", "
             "\"data\": {\"n\": 1, \"label\": \"skip\"}, \"metadata\": {\"user_id\": \"boss\"}}");
    assert_int_equal(r.status, 200);
    assert_false(jtrue(&r, "matched"));
    assert_false(jtrue(&r, "conditions.all[0].result"));
    assert_int_equal(jp(&r, "conditions.all[0].actual")->valueint, 1);
    assert_false(jtrue(&r, "conditions.all[1].result"));
    assert_string_equal(js(&r, "conditions.all[1].not.actual"), "skip");
    assert_true(jtrue(&r, "conditions.all[2].result"));
    assert_false(jtrue(&r, "conditions.all[2].any[0].result"));
    assert_true(jtrue(&r, "conditions.all[2].any[1].result"));
    at_response_free(&r);

    /* wrapped, and source / event_type taken from the trigger */
    r = call(h, "POST", "/api/triggers/dry/test", "{\"event\": {\"data\": {\"n\": 6}}}");
    assert_int_equal(r.status, 200);
    assert_true(jtrue(&r, "matched"));
    assert_string_equal(js(&r, "event.source"), "ok-minimal");
    at_response_free(&r);
    /* another source does not match, whatever the conditions say */
    r = call(h, "POST", "/api/triggers/dry/test",
             "{\"source\": \"closed-schema\", \"data\": {\"n\": 5}}");
    assert_int_equal(r.status, 200);
    assert_false(jtrue(&r, "matched"));
    assert_false(jtrue(&r, "source_matches"));
    assert_true(jtrue(&r, "conditions.result"));
    at_response_free(&r);

    /* a disabled trigger can be tested: it matches but would not run */
    expect(h, "PATCH", "/api/triggers/dry", "{\"enabled\": false}", 200);
    r = call(h, "POST", "/api/triggers/dry/test", full);
    assert_int_equal(r.status, 200);
    assert_true(jtrue(&r, "matched"));
    assert_false(jtrue(&r, "enabled"));
    assert_false(jtrue(&r, "would_run"));
    at_response_free(&r);

    /* YAML triggers too */
    r = call(h, "POST", "/api/triggers/yaml-one/test",
             "{\"data\": {\"n\": 1, \"label\": \"from-yaml\"}}");
    assert_int_equal(r.status, 200);
    assert_true(jtrue(&r, "matched"));
    at_response_free(&r);

    /* bad events */
    r = call(h, "POST", "/api/triggers/dry/test", "{\"data\": 5}");
    assert_int_equal(r.status, 400);
    assert_detail(&r, "invalid", "data", "must be an object");
    at_response_free(&r);
    r = call(h, "POST", "/api/triggers/dry/test", "{\"dta\": {\"n\": 5}}");
    assert_int_equal(r.status, 400);
    assert_detail(&r, "invalid", "dta", "unknown key");
    at_response_free(&r);
    r = call(h, "POST", "/api/triggers/dry/test", "{\"event\": {\"source\": 7}, \"extra\": 1}");
    assert_int_equal(r.status, 400);
    assert_detail(&r, "invalid", "extra", "unknown key");
    assert_detail(&r, "invalid", "event.source", "must be a string");
    at_response_free(&r);
    expect(h, "POST", "/api/triggers/no-such/test", full, 404);

    /* a trigger not saved yet */
    r = call(h, "POST", "/api/triggers/test",
             "{\"trigger\": {" OK_SRC ", \"workflow\": \"wf-main\", \"conditions\": ["
             "{\"field\": \"data.label\", \"op\": \"matches\", \"value\": \"^ab+c$\"}]},"
             " \"event\": {\"data\": {\"n\": 1, \"label\": \"abbbc\"}}}");
    assert_int_equal(r.status, 200);
    assert_string_equal(js(&r, "trigger"), "draft");
    assert_true(jtrue(&r, "matched"));
    assert_true(jtrue(&r, "conditions.all[0].result"));
    at_response_free(&r);
    expect(h, "GET", "/api/triggers/draft", NULL, 404);
    r = call(h, "POST", "/api/triggers/test",
             "{\"trigger\": {" OK_SRC ", \"workflow\": \"wf-main\", \"conditions\": ["
             "{\"field\": \"data.n\", \"op\": \"equals\", \"value\": 1}]},"
             " \"event\": {\"data\": 3}}");
    assert_int_equal(r.status, 400);
    assert_detail(&r, "invalid", "trigger.conditions[0].op", "unknown operator");
    assert_detail(&r, "invalid", "event.data", "must be an object");
    at_response_free(&r);
    r = call(h, "POST", "/api/triggers/test", "{\"trigger\": {" OK_SRC ", \"workflow\": \"x\"}}");
    assert_int_equal(r.status, 400);
    assert_detail(&r, "invalid", "trigger.workflow", "unknown workflow");
    assert_detail(&r, "invalid", "event", "required");
    at_response_free(&r);
    stop(h);
    (void)state;
}

/* ---- stored but not in force ------------------------------------------------------------ */

static void test_stored_not_in_force(void **state)
{
    host *h = start();
    expect(h, "POST", "/api/triggers",
           "{\"id\": \"orphan\", " OK_SRC ", \"workflow\": \"wf-other\", \"conditions\": "
           "[{\"field\": \"data.n\", \"op\": \"gt\", \"value\": 0}]}",
           201);
    /* its workflow goes away: the trigger stays stored, out of force */
    char *wf = tu_join(h->t->wfdir, "wf1.yaml");
    assert_int_equal(unlink(wf), 0);
    free(wf);
    assert_int_equal(pipeline_reload(&h->t->rl, NULL), EVH_OK);
    at_response r = call(h, "GET", "/api/triggers/orphan", NULL);
    assert_int_equal(r.status, 200);
    assert_false(jtrue(&r, "in_force"));
    assert_string_equal(js(&r, "origin"), "api");
    assert_string_equal(js(&r, "workflow"), "wf-other");
    assert_string_equal(js(&r, "problems[0].path"), "workflow");
    assert_non_null(strstr(js(&r, "problems[0].reason"), "unknown workflow"));
    at_response_free(&r);
    r = call(h, "GET", "/api/triggers?workflow=wf-other", NULL);
    assert_int_equal(cJSON_GetArraySize(jp(&r, "items")), 1); /* yaml-one went with it */
    assert_non_null(item_with_id(&r, "orphan"));
    at_response_free(&r);
    /* the dry run says why it cannot be tested */
    r = call(h, "POST", "/api/triggers/orphan/test", "{\"data\": {\"n\": 1}}");
    assert_int_equal(r.status, 409);
    assert_detail(&r, "conflict", "workflow", "unknown workflow");
    at_response_free(&r);
    /* and a PATCH brings it back */
    r = call(h, "PATCH", "/api/triggers/orphan", "{\"workflow\": \"wf-main\"}");
    assert_int_equal(r.status, 200);
    assert_true(jtrue(&r, "in_force"));
    assert_string_equal(js(&r, "conditions[0].op"), "gt");
    at_response_free(&r);
    char ev[37];
    emit(h, "{\"n\": 4}", ev);
    cJSON *x = executions_of(h, "orphan", 1);
    assert_string_equal(sget(cJSON_GetArrayItem(x, 0), "workflow_id"), "wf-main");
    cJSON_Delete(x);
    stop(h);
    (void)state;
}

/* ---- workflows ------------------------------------------------------------------------ */

static void check_wf_main(const cJSON *w)
{
    const cJSON *v = json_path_get(w, "steps[0].with.value");
    assert_non_null(v);
    assert_string_equal(sget(v, "api_key"), "***");
    assert_string_equal(sget(v, "Password"), "***");
    assert_string_equal(cJSON_GetStringValue(json_path_get(v, "nested.auth_token")), "***");
    assert_string_equal(cJSON_GetStringValue(json_path_get(v, "nested.list[0].client_secret")),
                        "***");
    assert_string_equal(cJSON_GetStringValue(json_path_get(v, "nested.list[1]")), "plain-item");
    assert_string_equal(sget(v, "env_ref"), "***");
    assert_string_equal(sget(v, "plain"), "hello");
    assert_string_equal(sget(w, "name"), "Main workflow");
    assert_int_equal(strlen(sget(w, "version")), 16);
    assert_string_equal(cJSON_GetStringValue(json_path_get(w, "steps[0].uses")), "test-step");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(w, "triggers");
    assert_int_equal(cJSON_GetArraySize(ids), 1);
    assert_string_equal(cJSON_GetArrayItem(ids, 0)->valuestring, "runs-main");
}

static void test_workflows(void **state)
{
    host *h = start();
    expect(h, "POST", "/api/triggers",
           "{\"id\": \"runs-main\", " OK_SRC ", \"workflow\": \"wf-main\"}", 201);
    at_response r = call(h, "GET", "/api/workflows", NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(jp(&r, "items")), 2);
    check_wf_main(item_with_id(&r, "wf-main"));
    const cJSON *other = item_with_id(&r, "wf-other");
    assert_non_null(other);
    assert_string_equal(cJSON_GetStringValue(json_path_get(other, "triggers[0]")), "yaml-one");
    /* a template is not a secret */
    assert_string_equal(cJSON_GetStringValue(json_path_get(other, "steps[0].with.value")),
                        "{{ event.data.n }}");
    /* nothing secret anywhere in the answer */
    assert_null(strstr(r.body, "k-123"));
    assert_null(strstr(r.body, "p-456"));
    assert_null(strstr(r.body, "t-789"));
    assert_null(strstr(r.body, "s-000"));
    assert_null(strstr(r.body, "${HOME}"));
    at_response_free(&r);

    r = call(h, "GET", "/api/workflows/wf-main", NULL);
    assert_int_equal(r.status, 200);
    check_wf_main(r.json);
    at_response_free(&r);
    r = call(h, "GET", "/api/workflows/no-such", NULL);
    assert_int_equal(r.status, 404);
    assert_string_equal(js(&r, "error.code"), "not_found");
    at_response_free(&r);

    /* redaction is for the answer only: the step still gets its config */
    char ev[37];
    emit(h, "{\"n\": 3}", ev);
    cJSON *x = executions_of(h, "runs-main", 1);
    cJSON *full = store_execution_get(h->t->st, sget(cJSON_GetArrayItem(x, 0), "id"));
    char *text = cJSON_PrintUnformatted(full);
    assert_non_null(strstr(text, "k-123"));
    free(text);
    cJSON_Delete(full);
    cJSON_Delete(x);
    stop(h);
    (void)state;
}

int main(void)
{
    log_set_level(EVH_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_runs_workflow), cmocka_unit_test(test_validation_400),
        cmocka_unit_test(test_conflicts),            cmocka_unit_test(test_put_patch_delete),
        cmocka_unit_test(test_dry_run),              cmocka_unit_test(test_stored_not_in_force),
        cmocka_unit_test(test_workflows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
