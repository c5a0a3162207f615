/*
 * test_triggers.c - triggers: every operator true / false / on a missing
 * field, all / any / not, every validation problem with the exact path users
 * see, the resolver and data-schema checks, the nesting and clause limits,
 * the set's (source, event_type) index with 10,000 triggers, explain and
 * to_json.  Cases are tables; JSON in them uses ' for " to stay readable.
 */
/* cmocka needs these first, in this order */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <evhost/evhost.h>

#include "diag.h"
#include "evh_limits.h"
#include "schema.h"
#include "triggers.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Parse JSON written with ' instead of ". */
static cJSON *jq(const char *text)
{
    char *buf = strdup(text);
    assert_non_null(buf);
    for (char *p = buf; *p; p++)
        if (*p == '\'')
            *p = '"';
    cJSON *j = cJSON_Parse(buf);
    if (!j)
        print_error("cannot parse test JSON: %s\n", buf);
    free(buf);
    assert_non_null(j);
    return j;
}

static int contains_text(const char *haystack, const char *needle)
{
    return haystack && needle && strstr(haystack, needle) != NULL;
}

/* ---- a fake world: sources, event types and workflows ------------------ */

/* timer/timer_fired has this data schema; timer/timer_reset and
 * files/file_created are declared without one. */
static const char *const timer_schema_json =
    "{'type':'object','additionalProperties':false,'properties':{"
    "'fired_at':{'type':'string','format':'date-time'},'timer_id':{'type':'string'},"
    "'sequence':{'type':'integer'},'ratio':{'type':'number'},'flag':{'type':'boolean'},"
    "'tags':{'type':'array','items':{'type':'string'}},"
    "'payload':{'type':'object','properties':{'x':{'type':'number'}},"
    "'additionalProperties':false},"
    "'items':{'type':'array','items':{'type':'object','properties':{'sku':{'type':'string'}}}},"
    "'extra':{}}}";

static schema *timer_schema;

static int fake_event_type(void *ud, const char *source, const char *event_type,
                           const schema **schema_out)
{
    (void)ud;
    *schema_out = NULL;
    if (strcmp(source, "timer") == 0) {
        if (strcmp(event_type, "timer_fired") == 0) {
            *schema_out = timer_schema;
            return 1;
        }
        return strcmp(event_type, "timer_reset") == 0 ? 1 : -1;
    }
    if (strcmp(source, "files") == 0 || strcmp(source, "my-timer") == 0)
        return strcmp(event_type, "file_created") == 0 ? 1 : -1;
    return 0;
}

static int fake_workflow_exists(void *ud, const char *workflow_id)
{
    (void)ud;
    return strcmp(workflow_id, "generate-report") == 0 || strcmp(workflow_id, "cleanup") == 0;
}

/* The names the fakes above accept, for "did you mean". */
static void fake_offer_names(void *ud, trigger_names what, const char *source, spell_near *near)
{
    static const char *const sources[] = {"timer", "files", "my-timer"};
    static const char *const timer_types[] = {"timer_fired", "timer_reset"};
    static const char *const workflows[] = {"generate-report", "cleanup"};
    (void)ud;
    if (what == TRIGGER_NAMES_SOURCES)
        for (size_t i = 0; i < ARRAY_LEN(sources); i++)
            spell_near_offer(near, sources[i]);
    else if (what == TRIGGER_NAMES_EVENT_TYPES && strcmp(source, "timer") == 0)
        for (size_t i = 0; i < ARRAY_LEN(timer_types); i++)
            spell_near_offer(near, timer_types[i]);
    else if (what == TRIGGER_NAMES_EVENT_TYPES)
        spell_near_offer(near, "file_created");
    else
        for (size_t i = 0; i < ARRAY_LEN(workflows); i++)
            spell_near_offer(near, workflows[i]);
}

static const trigger_resolver resolver = {.ud = NULL,
                                          .event_type = fake_event_type,
                                          .workflow_exists = fake_workflow_exists,
                                          .offer_names = fake_offer_names};

static int setup(void **state)
{
    (void)state;
    cJSON *j = jq(timer_schema_json);
    diag d;
    diag_init(&d, NULL);
    timer_schema = schema_compile(j, "schema", &d);
    diag_free(&d);
    cJSON_Delete(j);
    return timer_schema ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    schema_free(timer_schema);
    return 0;
}

/* ---- helpers --------------------------------------------------------------- */

/* A valid trigger around the given conditions. */
#define SPEC(conds)                                                                                \
    "{'id':'t1','source':'timer','event_type':'timer_fired','workflow':'generate-report',"         \
    "'conditions':" conds "}"

static trigger *load_with(const char *text, const trigger_resolver *res)
{
    cJSON *j = jq(text);
    diag d;
    diag_init(&d, NULL);
    trigger *t = trigger_from_json(j, "triggers[0]", res, &d);
    if (!t || d.count) {
        char *all = diag_join(&d);
        print_error("trigger %s should load, got: %s\n", text, all ? all : "?");
        free(all);
    }
    assert_non_null(t);
    assert_int_equal(d.count, 0);
    diag_free(&d);
    cJSON_Delete(j);
    return t;
}

static trigger *load_ok(const char *text)
{
    return load_with(text, &resolver);
}

/* The envelope operator cases run against. */
static const char *const ENV =
    "{'id':'evt-1','event_type':'timer_fired','source':'timer',"
    "'data':{'timer_id':'default','sequence':5,'ratio':1.5,'flag':true,'nil':null,"
    "'name':'report-2024.csv','stamp':'2024-06-01T10:00:00Z','tags':['a','b',3,{'k':1}],"
    "'obj':{'k':[1,2],'s':'x'},'items':[{'sku':'A1'},{'sku':'B2'}],'empty':'',"
    "'caf':'caf\\u00e9','big':9007199254740993},"
    "'metadata':{'source':'timer','timestamp':'2024-06-01T10:00:00.000Z','user_id':null,"
    "'additional_data':{'x':1}}}";

/* ---- operators --------------------------------------------------------------- */

typedef struct ocase {
    const char *cond; /* the conditions */
    int expect;       /* against ENV */
} ocase;

#define CL(field, op, value) "{'field':'" field "','op':'" op "','value':" value "}"
#define CL0(field, op) "{'field':'" field "','op':'" op "'}"

static const ocase ocases[] = {
    /* eq: JSON equality, numbers by value */
    {CL("data.timer_id", "eq", "'default'"), 1},
    {CL("data.timer_id", "eq", "'Default'"), 0},
    {CL("data.sequence", "eq", "5"), 1},
    {CL("data.sequence", "eq", "5.0"), 1},
    {CL("data.sequence", "eq", "'5'"), 0},
    {CL("data.ratio", "eq", "1.5"), 1},
    {CL("data.flag", "eq", "true"), 1},
    {CL("data.flag", "eq", "1"), 0},
    {CL("data.obj", "eq", "{'s':'x','k':[1,2]}"), 1},
    {CL("data.obj", "eq", "{'k':[2,1],'s':'x'}"), 0},
    {CL("data.obj", "eq", "{'k':[1,2]}"), 0},
    {CL("data.tags", "eq", "['a','b',3,{'k':1}]"), 1},
    {CL("data.tags", "eq", "['a','b',3]"), 0},
    {CL("data.items[1].sku", "eq", "'B2'"), 1},
    {CL("data.items[5].sku", "eq", "'B2'"), 0},
    {CL("data.absent", "eq", "'x'"), 0},
    {CL("data.nil", "eq", "'x'"), 0},
    {CL("id", "eq", "'evt-1'"), 1},
    {CL("source", "eq", "'timer'"), 1},
    {CL("event_type", "eq", "'timer_fired'"), 1},
    {CL("metadata.source", "eq", "'timer'"), 1},
    {CL("metadata.additional_data.x", "eq", "1"), 1},
    {CL("metadata.additional_data.y", "eq", "1"), 0},
    /* ne: false on a missing field too */
    {CL("data.timer_id", "ne", "'other'"), 1},
    {CL("data.timer_id", "ne", "'default'"), 0},
    {CL("data.sequence", "ne", "'5'"), 1},
    {CL("data.absent", "ne", "'x'"), 0},
    {CL("data.nil", "ne", "'x'"), 0},
    {CL("metadata.user_id", "ne", "'alice'"), 0},
    /* gt, gte, lt, lte: numbers with numbers, strings with strings */
    {CL("data.sequence", "gt", "4"), 1},
    {CL("data.sequence", "gt", "5"), 0},
    {CL("data.sequence", "gte", "5"), 1},
    {CL("data.sequence", "gte", "5.5"), 0},
    {CL("data.sequence", "lt", "5"), 0},
    {CL("data.sequence", "lt", "5.5"), 1},
    {CL("data.sequence", "lte", "5"), 1},
    {CL("data.sequence", "lte", "-1"), 0},
    {CL("data.ratio", "gt", "1.25"), 1},
    {CL("data.stamp", "gt", "'2024-01-01T00:00:00Z'"), 1},
    {CL("data.stamp", "lt", "'2024-01-01T00:00:00Z'"), 0},
    {CL("data.stamp", "gte", "'2024-06-01T10:00:00Z'"), 1},
    {CL("data.stamp", "lte", "'2024-06-01T09:59:59Z'"), 0},
    {CL("metadata.timestamp", "lt", "'2024-06-01T10:00:01Z'"), 1},
    {CL("data.caf", "gt", "'cafz'"), 1}, /* bytewise: 0xc3 > 'z' */
    {CL("data.caf", "lt", "'cafz'"), 0},
    {CL("data.sequence", "gt", "'4'"), 0}, /* number with string: false */
    {CL("data.timer_id", "gt", "1"), 0},
    {CL("data.flag", "gt", "0"), 0},
    {CL("data.tags", "lt", "100"), 0},
    {CL("data.absent", "gt", "0"), 0},
    {CL("data.absent", "lt", "0"), 0},
    {CL("data.absent", "lte", "'z'"), 0},
    /* in, not_in: not_in is false on a missing field */
    {CL("data.timer_id", "in", "['a','default']"), 1},
    {CL("data.timer_id", "in", "['a','b']"), 0},
    {CL("data.sequence", "in", "[1,5.0]"), 1},
    {CL("data.sequence", "in", "['5']"), 0},
    {CL("data.obj", "in", "[1,{'s':'x','k':[1,2]}]"), 1},
    {CL("data.absent", "in", "['x']"), 0},
    {CL("data.timer_id", "not_in", "['a','b']"), 1},
    {CL("data.timer_id", "not_in", "['default']"), 0},
    {CL("data.absent", "not_in", "['x']"), 0},
    {CL("data.nil", "not_in", "['x']"), 0},
    /* contains: substring of a string, element of an array */
    {CL("data.name", "contains", "'2024'"), 1},
    {CL("data.name", "contains", "'xyz'"), 0},
    {CL("data.name", "contains", "''"), 1},
    {CL("data.name", "contains", "5"), 0},
    {CL("data.tags", "contains", "'b'"), 1},
    {CL("data.tags", "contains", "3"), 1},
    {CL("data.tags", "contains", "3.0"), 1},
    {CL("data.tags", "contains", "{'k':1}"), 1},
    {CL("data.tags", "contains", "'z'"), 0},
    {CL("data.tags", "contains", "'a,b'"), 0},
    {CL("data.sequence", "contains", "5"), 0},
    {CL("data.obj", "contains", "'k'"), 0},
    {CL("data.absent", "contains", "'a'"), 0},
    /* starts_with, ends_with */
    {CL("data.name", "starts_with", "'report-'"), 1},
    {CL("data.name", "starts_with", "'csv'"), 0},
    {CL("data.name", "starts_with", "''"), 1},
    {CL("data.name", "ends_with", "'.csv'"), 1},
    {CL("data.name", "ends_with", "'report'"), 0},
    {CL("data.name", "ends_with", "'x-report-2024.csv'"), 0},
    {CL("data.empty", "starts_with", "''"), 1},
    {CL("data.empty", "ends_with", "'a'"), 0},
    {CL("data.sequence", "starts_with", "'5'"), 0},
    {CL("data.tags", "ends_with", "'a'"), 0},
    {CL("data.absent", "starts_with", "''"), 0},
    {CL("data.absent", "ends_with", "''"), 0},
    /* matches: POSIX extended, unanchored search */
    {CL("data.name", "matches", "'^report-[0-9]{4}\\\\.csv$'"), 1},
    {CL("data.name", "matches", "'^[0-9]+'"), 0},
    {CL("data.name", "matches", "'2024'"), 1},
    {CL("data.name", "matches", "'^(report|summary)-'"), 1},
    {CL("data.name", "matches", "'^(daily|summary)-'"), 0},
    {CL("data.sequence", "matches", "'5'"), 0},
    {CL("data.absent", "matches", "'.*'"), 0},
    {CL("data.nil", "matches", "'.*'"), 0},
    /* exists: a null counts as missing */
    {CL0("data.timer_id", "exists"), 1},
    {CL("data.timer_id", "exists", "true"), 1},
    {CL("data.timer_id", "exists", "false"), 0},
    {CL0("data.absent", "exists"), 0},
    {CL("data.absent", "exists", "false"), 1},
    {CL0("data.nil", "exists"), 0},
    {CL("data.nil", "exists", "false"), 1},
    {CL0("metadata.user_id", "exists"), 0},
    {CL("metadata.user_id", "exists", "false"), 1},
    {CL0("data.empty", "exists"), 1},
    {CL0("data.tags[3].k", "exists"), 1},
    {CL0("data.tags[4]", "exists"), 0},
    {CL0("data.name.x", "exists"), 0},
    {CL0("data", "exists"), 1},
    {CL0("metadata", "exists"), 1},
    /* numbers beyond 2^53 compare as doubles, like every JSON number */
    {CL("data.big", "gt", "9007199254740991"), 1},
};

static void check_conditions(const char *conds, const char *env_text, int expect)
{
    size_t len = strlen(conds) + 200;
    char *text = malloc(len);
    assert_non_null(text);
    snprintf(text, len,
             "{'id':'op','source':'timer','event_type':'timer_fired','workflow':'w',"
             "'conditions':%s}",
             conds);
    trigger *t = load_with(text, NULL); /* no resolver: any data field */
    cJSON *env = jq(env_text);
    int got = trigger_matches(t, env);
    if (got != expect)
        print_error("conditions %s: expected %d, got %d\n", conds, expect, got);
    /* explain agrees with matching */
    cJSON *ex = trigger_explain(t, env);
    assert_non_null(ex);
    const cJSON *tree = cJSON_GetObjectItem(ex, "conditions");
    assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(tree, "result")), got);
    assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(ex, "matched")), got);
    cJSON_Delete(ex);
    cJSON_Delete(env);
    trigger_free(t);
    free(text);
    assert_int_equal(got, expect);
}

static void test_operators_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(ocases); i++)
        check_conditions(ocases[i].cond, ENV, ocases[i].expect);
}

/* ---- all / any / not ------------------------------------------------------------ */

#define T_ CL("data.timer_id", "eq", "'default'")
#define F_ CL("data.timer_id", "eq", "'other'")
#define MISSING_EQ CL("data.absent", "eq", "1")
#define BIG_SEQ CL("data.sequence", "gt", "1000")
#define NO_USER "{'not':" CL0("metadata.user_id", "exists") "}"
#define NO_TIMER_ID "{'not':" CL0("data.timer_id", "exists") "}"

static const ocase gcases[] = {
    {"{'all':[" T_ "]}", 1},
    {"{'all':[" T_ "," T_ "]}", 1},
    {"{'all':[" T_ "," F_ "]}", 0},
    {"{'all':[" F_ "," T_ "]}", 0},
    {"{'any':[" F_ "," T_ "]}", 1},
    {"{'any':[" F_ "," F_ "]}", 0},
    {"{'any':[" T_ "]}", 1},
    {"{'not':" T_ "}", 0},
    {"{'not':" F_ "}", 1},
    {"{'not':{'not':" T_ "}}", 1},
    /* not over a missing field is true, for eq as well as for ne */
    {"{'not':" MISSING_EQ "}", 1},
    {"{'not':" CL("data.absent", "ne", "1") "}", 1},
    {"{'not':" CL0("metadata.user_id", "exists") "}", 1},
    /* a list at the top is all */
    {"[" T_ "]", 1},
    {"[" T_ "," T_ "]", 1},
    {"[" T_ "," F_ "]", 0},
    /* a single clause at the top */
    {T_, 1},
    {F_, 0},
    /* nesting: the header's example */
    {"{'all':[" T_ ",{'any':[" BIG_SEQ "," NO_USER "]}]}", 1},
    {"{'all':[" T_ ",{'any':[" BIG_SEQ "," NO_TIMER_ID "]}]}", 0},
    {"{'any':[{'all':[" T_ "," F_ "]},{'all':[" T_ ",{'not':" F_ "}]}]}", 1},
    {"{'not':{'any':[" F_ "," MISSING_EQ "]}}", 1},
    {"{'all':[{'any':[{'not':{'all':[" F_ "]}}]}]}", 1},
};

static void test_groups_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(gcases); i++)
        check_conditions(gcases[i].cond, ENV, gcases[i].expect);
}

static void test_no_conditions_match_everything(void **state)
{
    (void)state;
    trigger *t = load_ok("{'id':'t','source':'timer','event_type':'timer_fired',"
                         "'workflow':'generate-report'}");
    assert_null(t->cond);
    assert_null(t->conditions_json);
    cJSON *env = jq(ENV);
    assert_true(trigger_matches(t, env));
    trigger_free(t);
    /* conditions written as null (YAML "conditions:" alone): the same */
    t = load_ok("{'id':'t','source':'timer','event_type':'timer_fired',"
                "'workflow':'generate-report','conditions':null}");
    assert_null(t->cond);
    assert_true(trigger_matches(t, env));
    cJSON *empty = jq("{}");
    assert_true(trigger_matches(t, empty));
    cJSON_Delete(empty);
    trigger_free(t);
    cJSON_Delete(env);
}

/* ---- the fields of a valid trigger ---------------------------------------------- */

static void test_fields_and_defaults(void **state)
{
    (void)state;
    trigger *t = load_ok("{'id':'daily-report','source':'timer','event_type':'timer_fired',"
                         "'workflow':'generate-report'}");
    assert_string_equal(t->id, "daily-report");
    assert_string_equal(t->name, "daily-report"); /* name defaults to id */
    assert_null(t->description);
    assert_string_equal(t->source, "timer");
    assert_string_equal(t->event_type, "timer_fired");
    assert_string_equal(t->workflow_id, "generate-report");
    assert_null(t->origin);
    assert_int_equal(t->enabled, 1);
    trigger_free(t);

    t = load_ok(
        "{'id':'A_z.0-9','name':'Daily Report','description':'every day',"
        "'source':'files','event_type':'file_created','workflow':'cleanup',"
        "'enabled':false,'conditions':[{'field':'data.anything.at[2].all','op':'exists'}]}");
    assert_string_equal(t->name, "Daily Report");
    assert_string_equal(t->description, "every day");
    assert_int_equal(t->enabled, 0);
    cJSON *want = jq("[{'field':'data.anything.at[2].all','op':'exists'}]");
    assert_true(cJSON_Compare(t->conditions_json, want, 1)); /* as written */
    cJSON_Delete(want);
    trigger_free(t);
    trigger_free(NULL);
}

static void test_id_length_limit(void **state)
{
    (void)state;
    char id[EVH_ID_MAX_LEN + 2];
    memset(id, 'x', sizeof id);
    id[EVH_ID_MAX_LEN] = '\0';
    cJSON *spec = jq("{'source':'timer','event_type':'timer_fired','workflow':'cleanup'}");
    cJSON_AddStringToObject(spec, "id", id);
    diag d;
    diag_init(&d, NULL);
    trigger *t = trigger_from_json(spec, "", &resolver, &d);
    assert_non_null(t);
    assert_int_equal(d.count, 0);
    trigger_free(t);

    id[EVH_ID_MAX_LEN] = 'x';
    id[EVH_ID_MAX_LEN + 1] = '\0';
    cJSON_ReplaceItemInObject(spec, "id", cJSON_CreateString(id));
    assert_null(trigger_from_json(spec, "", &resolver, &d));
    assert_int_equal(d.count, 1);
    assert_string_equal(d.items[0].path, "id");
    assert_true(contains_text(d.items[0].reason, "invalid id 'xxxx"));
    diag_free(&d);
    cJSON_Delete(spec);
}

/* Valid specs the checks must not refuse (resolver and data schema on). */
static const char *const valid_specs[] = {
    SPEC(CL("data.items[3].sku", "eq", "'x'")),
    SPEC(CL("data.items[0].color", "eq", "'red'")), /* items allow more properties */
    SPEC(CL0("data.extra.deep.path[2]", "exists")),
    SPEC(CL("data.timer_id", "exists", "false")),
    SPEC(CL("data", "eq", "{}")),
    SPEC(CL("data.tags", "contains", "'a'")),
    SPEC(CL("data.tags[0]", "starts_with", "'a'")),
    SPEC(CL("data.ratio", "gt", "1")),
    SPEC(CL("data.sequence", "lte", "1.5")),
    SPEC(CL("data.sequence", "ne", "'5'")),
    SPEC(CL("data.sequence", "not_in", "['a']")),
    SPEC(CL("data.fired_at", "gte", "'2024-01-01T00:00:00Z'")),
    SPEC(CL("data.timer_id", "matches", "'^(a|b)+$'")),
    SPEC(CL("data.timer_id", "in", "['a',null]")),
    SPEC(CL("data.payload.x", "in", "[1,2.5]")),
    SPEC(CL("metadata.additional_data.k.j[0]", "eq", "1")),
    SPEC(CL("metadata.additional_data", "eq", "{}")),
    SPEC(CL("metadata.user_id", "ne", "null")),
    SPEC(CL("metadata.timestamp", "gt", "'2024'")),
    SPEC(CL("id", "starts_with", "'evt-'")),
    SPEC(CL("event_type", "in", "['timer_fired']")),
    "{'id':'t','source':'timer','event_type':'timer_reset','workflow':'cleanup',"
    "'conditions':{'field':'data.whatever.you[1].like','op':'gt','value':3}}",
    "{'id':'t','source':'timer','event_type':'timer_fired','workflow':'cleanup',"
    "'description':'','name':null,'enabled':null}",
};

static void test_valid_specs(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(valid_specs); i++)
        trigger_free(load_ok(valid_specs[i]));
}

/* ---- validation errors ----------------------------------------------------------- */

typedef struct ecase {
    const char *spec;
    const char *path;   /* exact path of one of the problems (base "triggers[0]") */
    const char *reason; /* substring of its reason */
    size_t count;       /* number of problems; 0: not checked */
} ecase;

#define B "triggers[0]"
#define TOP "'source':'timer','event_type':'timer_fired','workflow':'generate-report'"

static const ecase ecases[] = {
    /* the spec itself */
    {"'daily'", B, "a trigger must be a mapping", 1},
    {"[]", B, "a trigger must be a mapping (id, source, event_type, workflow, ...), got array", 1},
    {"{'id':'t'," TOP ",'colour':'red'}", B ".colour",
     "unknown key 'colour' (one of id, name, description, source, event_type, workflow, "
     "enabled, conditions)",
     1},
    {"{'id':'t'," TOP ",'Workflow':'x'}", B ".Workflow", "unknown key 'Workflow'", 1},
    {"{'id':'t','id':'u'," TOP "}", B ".id", "key 'id' appears more than once", 1},
    /* id */
    {"{" TOP "}", B ".id", "required string is missing", 1},
    {"{'id':5," TOP "}", B ".id", "must be a string, got number", 1},
    {"{'id':null," TOP "}", B ".id", "must be a string, got null", 1},
    {"{'id':'has space'," TOP "}", B ".id", "invalid id 'has space'", 1},
    {"{'id':'a/b'," TOP "}", B ".id", "invalid id 'a/b': use 1 to 128 of the characters", 1},
    {"{'id':''," TOP "}", B ".id", "invalid id ''", 1},
    /* name, description, enabled */
    {"{'id':'t','name':5," TOP "}", B ".name", "must be a string, got number", 1},
    {"{'id':'t','name':''," TOP "}", B ".name", "must be a non-empty string", 1},
    {"{'id':'t','description':[]," TOP "}", B ".description", "must be a string, got array", 1},
    {"{'id':'t','enabled':'yes'," TOP "}", B ".enabled", "must be true or false, got string", 1},
    {"{'id':'t','enabled':1," TOP "}", B ".enabled", "must be true or false, got number", 1},
    /* source, event_type, workflow: present */
    {"{'id':'t','event_type':'timer_fired','workflow':'cleanup'}", B ".source",
     "required string is missing", 1},
    {"{'id':'t','source':'','event_type':'timer_fired','workflow':'cleanup'}", B ".source",
     "must be a non-empty string", 1},
    {"{'id':'t','source':'timer','workflow':'cleanup'}", B ".event_type",
     "required string is missing", 1},
    {"{'id':'t','source':'timer','event_type':7,'workflow':'cleanup'}", B ".event_type",
     "must be a string, got number", 1},
    {"{'id':'t','source':'timer','event_type':'timer_fired'}", B ".workflow",
     "required string is missing", 1},
    {"{'id':'t','source':'timer','event_type':'timer_fired','workflow':[]}", B ".workflow",
     "must be a string, got array", 1},
    /* source, event_type, workflow: known to the resolver */
    {"{'id':'t','source':'nosuch','event_type':'timer_fired','workflow':'cleanup'}", B ".source",
     "unknown event source 'nosuch'", 1},
    {"{'id':'t','source':'timer','event_type':'timer_stopped','workflow':'cleanup'}",
     B ".event_type", "source 'timer' does not declare event type 'timer_stopped'", 1},
    {"{'id':'t','source':'files','event_type':'timer_fired','workflow':'cleanup'}", B ".event_type",
     "source 'files' does not declare event type 'timer_fired'", 1},
    {"{'id':'t','source':'timer','event_type':'timer_fired','workflow':'nope'}", B ".workflow",
     "unknown workflow 'nope'", 1},
    /* the shape of conditions */
    {SPEC("5"), B ".conditions",
     "a condition must be a mapping (all, any, not or a clause "
     "{field, op, value}), got number",
     1},
    {SPEC("'x'"), B ".conditions", "a condition must be a mapping", 1},
    {SPEC("[]"), B ".conditions", "'conditions' needs at least one condition", 1},
    {SPEC("{}"), B ".conditions", "empty condition", 1},
    {SPEC("{'all':{}}"), B ".conditions.all", "'all' takes a list of conditions, got object", 1},
    {SPEC("{'all':" T_ "}"), B ".conditions.all", "'all' takes a list of conditions", 1},
    {SPEC("{'any':[]}"), B ".conditions.any", "'any' needs at least one condition", 1},
    {SPEC("{'any':null}"), B ".conditions.any", "'any' takes a list of conditions, got null", 1},
    {SPEC("{'not':[" T_ "]}"), B ".conditions.not",
     "'not' takes one condition (a mapping), got "
     "array",
     1},
    {SPEC("{'not':true}"), B ".conditions.not", "'not' takes one condition", 1},
    {SPEC("{'not':{}}"), B ".conditions.not", "empty condition", 1},
    {SPEC("{'all':[" T_ "],'any':[" T_ "]}"), B ".conditions",
     "a condition is exactly one of all, any, not or a clause {field, op, value}; this one has "
     "'all' and 'any'",
     1},
    {SPEC("{'all':[" T_ "],'field':'id','op':'exists'}"), B ".conditions",
     "this one has 'all' and 'field' and 'op'", 1},
    {SPEC("{'not':" T_ ",'value':1}"), B ".conditions", "this one has 'not' and 'value'", 1},
    {SPEC("{'all':[" T_ ",[" T_ "]]}"), B ".conditions.all[1]",
     "a list of conditions is read as 'all' only at the top", 1},
    {SPEC("{'all':[" T_ ",'x']}"), B ".conditions.all[1]",
     "a condition must be a mapping (all, any, not or a clause {field, op, value}), got string", 1},
    {SPEC("{'alll':[" T_ "]}"), B ".conditions.alll",
     "unknown key 'alll' (one of all, any, not, field, op, value)", 1},
    {SPEC("{'all':[" T_ "],'comment':'x'}"), B ".conditions.comment", "unknown key 'comment'", 1},
    /* clauses: keys */
    {SPEC("{'field':'id','op':'eq','value':'x','vaule':1}"), B ".conditions.vaule",
     "unknown key 'vaule' (one of all, any, not, field, op, value)", 1},
    {SPEC("{'field':'id','op':'eq','op':'ne','value':'x'}"), B ".conditions.op",
     "key 'op' appears more than once", 1},
    /* clauses: field */
    {SPEC("{'op':'eq','value':1}"), B ".conditions.field", "required string is missing", 1},
    {SPEC("{'field':5,'op':'eq','value':1}"), B ".conditions.field", "must be a string, got number",
     1},
    {SPEC("{'field':'data..x','op':'eq','value':1}"), B ".conditions.field",
     "invalid field path 'data..x'", 1},
    {SPEC("{'field':'data.','op':'eq','value':1}"), B ".conditions.field",
     "invalid field path 'data.'", 1},
    {SPEC("{'field':'data[x]','op':'eq','value':1}"), B ".conditions.field",
     "invalid field path 'data[x]'", 1},
    {SPEC("{'field':'','op':'eq','value':1}"), B ".conditions.field", "invalid field path ''", 1},
    {SPEC("{'field':'payload.x','op':'eq','value':1}"), B ".conditions.field",
     "field 'payload.x' must start with id, event_type, source, data or metadata", 1},
    {SPEC("{'field':'[0]','op':'eq','value':1}"), B ".conditions.field",
     "field '[0]' must start with", 1},
    {SPEC("{'field':'ids','op':'eq','value':1}"), B ".conditions.field",
     "field 'ids' must start with", 1},
    {SPEC("{'field':'id.x','op':'eq','value':1}"), B ".conditions.field",
     "field 'id.x' cannot exist: 'id' is a string", 1},
    {SPEC("{'field':'source[0]','op':'eq','value':1}"), B ".conditions.field",
     "field 'source[0]' cannot exist: 'source' is a string", 1},
    {SPEC("{'field':'metadata.foo','op':'eq','value':1}"), B ".conditions.field",
     "unknown metadata field 'metadata.foo' (one of metadata.source, metadata.timestamp, "
     "metadata.user_id, metadata.additional_data.*)",
     1},
    {SPEC("{'field':'metadata.user_id.x','op':'eq','value':1}"), B ".conditions.field",
     "unknown metadata field 'metadata.user_id.x'", 1},
    {SPEC("{'field':'metadata[0]','op':'eq','value':1}"), B ".conditions.field",
     "unknown metadata field 'metadata[0]'", 1},
    /* clauses: op */
    {SPEC("{'field':'id','value':1}"), B ".conditions.op",
     "required string is missing (one of eq, ne, gt, gte, lt, lte, in, not_in, contains, "
     "starts_with, ends_with, matches, exists)",
     1},
    {SPEC("{'field':'id','op':3,'value':1}"), B ".conditions.op", "must be a string, got number",
     1},
    {SPEC("{'field':'id','op':'equals','value':'x'}"), B ".conditions.op",
     "unknown operator 'equals' (one of eq, ne, gt, gte, lt, lte, in, not_in, contains, "
     "starts_with, ends_with, matches, exists)",
     1},
    {SPEC("{'field':'id','op':'EQ','value':'x'}"), B ".conditions.op", "unknown operator 'EQ'", 1},
    /* clauses: value shapes */
    {SPEC("{'field':'id','op':'eq'}"), B ".conditions.value", "required for operator 'eq'", 1},
    {SPEC("{'field':'id','op':'ne'}"), B ".conditions.value", "required for operator 'ne'", 1},
    {SPEC("{'field':'data.tags','op':'contains'}"), B ".conditions.value",
     "required for operator 'contains'", 1},
    {SPEC("{'field':'id','op':'gt'}"), B ".conditions.value", "required for operator 'gt'", 1},
    {SPEC("{'field':'id','op':'in'}"), B ".conditions.value", "required for operator 'in'", 1},
    {SPEC("{'field':'id','op':'matches'}"), B ".conditions.value",
     "required for operator 'matches'", 1},
    {SPEC("{'field':'id','op':'in','value':'a'}"), B ".conditions.value",
     "operator 'in' needs a non-empty list of values, got 'a'", 1},
    {SPEC("{'field':'id','op':'not_in','value':[]}"), B ".conditions.value",
     "operator 'not_in' needs a non-empty list of values, got []", 1},
    {SPEC("{'field':'id','op':'matches','value':5}"), B ".conditions.value",
     "operator 'matches' needs a string (a POSIX extended regex), got 5", 1},
    {SPEC("{'field':'id','op':'matches','value':'(abc'}"), B ".conditions.value",
     "invalid regex '(abc': ", 1},
    {SPEC("{'field':'id','op':'matches','value':'[a-'}"), B ".conditions.value",
     "invalid regex '[a-': ", 1},
    {SPEC("{'field':'id','op':'matches','value':'^\\\\d+$'}"), B ".conditions.value",
     "regex '^\\d+$' uses '\\d', which POSIX extended regex does not support (use [0-9])", 1},
    {SPEC("{'field':'id','op':'starts_with','value':5}"), B ".conditions.value",
     "operator 'starts_with' needs a string, got 5", 1},
    {SPEC("{'field':'id','op':'ends_with','value':['a']}"), B ".conditions.value",
     "operator 'ends_with' needs a string, got [\"a\"]", 1},
    {SPEC("{'field':'id','op':'gt','value':true}"), B ".conditions.value",
     "operator 'gt' needs a number or a string, got true", 1},
    {SPEC("{'field':'data.ratio','op':'lte','value':{}}"), B ".conditions.value",
     "operator 'lte' needs a number or a string, got {}", 1},
    {SPEC("{'field':'data.ratio','op':'gte','value':null}"), B ".conditions.value",
     "operator 'gte' needs a number or a string, got null", 1},
    {SPEC("{'field':'id','op':'exists','value':'yes'}"), B ".conditions.value",
     "operator 'exists' takes true or false, got 'yes'", 1},
    {SPEC("{'field':'id','op':'exists','value':null}"), B ".conditions.value",
     "operator 'exists' takes true or false, got null", 1},
    {SPEC("{'field':'data.timer_id','op':'eq','value':null}"), B ".conditions.value",
     "null never matches: a null field counts as missing (use op: exists with value: false)", 1},
    /* the data schema of the event type rules fields out */
    {SPEC("{'field':'data.nope','op':'eq','value':1}"), B ".conditions.field",
     "field 'data.nope' is not in the schema of event type 'timer_fired' (source 'timer')", 1},
    {SPEC("{'field':'data.payload.y','op':'exists'}"), B ".conditions.field",
     "field 'data.payload.y' is not in the schema of event type 'timer_fired'", 1},
    {SPEC("{'field':'data.timer_id.x','op':'exists'}"), B ".conditions.field",
     "field 'data.timer_id.x' is not in the schema", 1},
    {SPEC("{'field':'data.timer_id[0]','op':'exists'}"), B ".conditions.field",
     "field 'data.timer_id[0]' is not in the schema", 1},
    {SPEC("{'field':'data.items.sku','op':'exists'}"), B ".conditions.field",
     "field 'data.items.sku' is not in the schema", 1},
    {SPEC("{'field':'data[0]','op':'exists'}"), B ".conditions.field",
     "field 'data[0]' is not in the schema", 1},
    /* operators that cannot apply to the field's declared type */
    {SPEC("{'field':'data.sequence','op':'starts_with','value':'1'}"), B ".conditions.op",
     "operator 'starts_with' does not apply to field 'data.sequence' of type integer (it needs a "
     "string)",
     1},
    {SPEC("{'field':'data.ratio','op':'ends_with','value':'1'}"), B ".conditions.op",
     "operator 'ends_with' does not apply to field 'data.ratio' of type number", 1},
    {SPEC("{'field':'data.flag','op':'matches','value':'t'}"), B ".conditions.op",
     "operator 'matches' does not apply to field 'data.flag' of type boolean (it needs a string)",
     1},
    {SPEC("{'field':'data.tags','op':'starts_with','value':'a'}"), B ".conditions.op",
     "of type array (it needs a string)", 1},
    {SPEC("{'field':'data.flag','op':'gt','value':0}"), B ".conditions.op",
     "operator 'gt' does not apply to field 'data.flag' of type boolean (it needs a number or a "
     "string)",
     1},
    {SPEC("{'field':'data.payload','op':'gte','value':1}"), B ".conditions.op",
     "field 'data.payload' of type object (it needs a number or a string)", 1},
    {SPEC("{'field':'data.tags','op':'lt','value':1}"), B ".conditions.op",
     "operator 'lt' does not apply to field 'data.tags' of type array", 1},
    {SPEC("{'field':'data.items[0]','op':'lte','value':1}"), B ".conditions.op",
     "field 'data.items[0]' of type object", 1},
    {SPEC("{'field':'data.sequence','op':'contains','value':1}"), B ".conditions.op",
     "operator 'contains' does not apply to field 'data.sequence' of type integer (it needs a "
     "string or an array)",
     1},
    {SPEC("{'field':'data.flag','op':'contains','value':true}"), B ".conditions.op",
     "field 'data.flag' of type boolean (it needs a string or an array)", 1},
    {SPEC("{'field':'data.payload','op':'contains','value':'x'}"), B ".conditions.op",
     "field 'data.payload' of type object", 1},
    {SPEC("{'field':'metadata.additional_data','op':'starts_with','value':'x'}"),
     B ".conditions.op", "field 'metadata.additional_data' of type object", 1},
    {SPEC("{'field':'metadata','op':'gt','value':1}"), B ".conditions.op",
     "field 'metadata' of type object", 1},
    /* values of a kind the declared type rules out: never true */
    {SPEC("{'field':'data.sequence','op':'eq','value':'5'}"), B ".conditions.value",
     "value '5' (string) can never match field 'data.sequence' of type integer", 1},
    {SPEC("{'field':'data.flag','op':'eq','value':'true'}"), B ".conditions.value",
     "value 'true' (string) can never match field 'data.flag' of type boolean", 1},
    {SPEC("{'field':'data.timer_id','op':'gt','value':5}"), B ".conditions.value",
     "value 5 (number) can never match field 'data.timer_id' of type string", 1},
    {SPEC("{'field':'data.ratio','op':'lt','value':'5'}"), B ".conditions.value",
     "value '5' (string) can never match field 'data.ratio' of type number", 1},
    {SPEC("{'field':'data.timer_id','op':'contains','value':5}"), B ".conditions.value",
     "value 5 (number) can never match field 'data.timer_id' of type string", 1},
    {SPEC("{'field':'data.sequence','op':'in','value':[1,'a',2,'b']}"), B ".conditions.value[1]",
     "value 'a' (string) can never match field 'data.sequence' of type integer", 2},
    {SPEC("{'field':'id','op':'eq','value':5}"), B ".conditions.value",
     "value 5 (number) can never match field 'id' of type string", 1},
    {SPEC("{'field':'metadata.timestamp','op':'gt','value':0}"), B ".conditions.value",
     "field 'metadata.timestamp' of type string", 1},
    /* paths follow the nesting */
    {SPEC("{'all':[" T_ ",{'any':[" F_ ",{'not':{'field':'id','op':'nope'}}]}]}"),
     B ".conditions.all[1].any[1].not.op", "unknown operator 'nope'", 1},
    {SPEC("[" T_ "," T_ ",{'field':'data.nope','op':'exists'}]"), B ".conditions[2].field",
     "field 'data.nope' is not in the schema", 1},
};

static const char *find_problem(const diag *d, const char *path, const char *reason)
{
    for (size_t i = 0; i < d->count; i++)
        if (strcmp(d->items[i].path, path) == 0 && contains_text(d->items[i].reason, reason))
            return d->items[i].reason;
    return NULL;
}

static int all_lowercase(const diag *d)
{
    for (size_t i = 0; i < d->count; i++)
        if (isupper((unsigned char)d->items[i].reason[0]))
            return 0;
    return 1;
}

static void check_ecase(const ecase *c)
{
    cJSON *j = jq(c->spec);
    diag d;
    diag_init(&d, NULL);
    trigger *t = trigger_from_json(j, B, &resolver, &d);
    char *all = diag_join(&d);
    int ok = t == NULL && d.count > 0 && find_problem(&d, c->path, c->reason) &&
             (!c->count || d.count == c->count) && all_lowercase(&d);
    if (!ok)
        print_error("trigger %s: expected [%s: %s] x%zu, got %s [%s]\n", c->spec, c->path,
                    c->reason, c->count, t ? "a trigger" : "NULL", all ? all : "");
    free(all);
    diag_free(&d);
    trigger_free(t);
    cJSON_Delete(j);
    assert_true(ok);
}

static void test_validation_errors_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(ecases); i++)
        check_ecase(&ecases[i]);
}

static void test_regex_error_text(void **state)
{
    (void)state;
    cJSON *j = jq(SPEC("{'field':'id','op':'matches','value':'a{2,1}'}"));
    diag d;
    diag_init(&d, NULL);
    assert_null(trigger_from_json(j, "", &resolver, &d));
    assert_int_equal(d.count, 1);
    assert_string_equal(d.items[0].path, "conditions.value");
    /* the regerror text follows the quoted regex, lowercased */
    const char *r = d.items[0].reason;
    const char *prefix = "invalid regex 'a{2,1}': ";
    assert_true(strncmp(r, prefix, strlen(prefix)) == 0);
    assert_true(strlen(r) > strlen(prefix));
    assert_false(isupper((unsigned char)r[strlen(prefix)]));
    diag_free(&d);
    cJSON_Delete(j);
}

/* Every problem in one pass, in document order, with bare paths under "". */
static void test_one_pass_all_problems(void **state)
{
    (void)state;
    cJSON *j = jq("{'colour':1,'id':'bad id','source':'timer','event_type':'timer_fired',"
                  "'workflow':'nope','enabled':'yes','conditions':{'all':["
                  "{'field':'data.nope','op':'eq','value':1},"
                  "{'field':'data.sequence','op':'equals','value':1},"
                  "{'any':[{'field':'data.timer_id','op':'in','value':'x'},"
                  "{'not':{'field':'metadata.bogus','op':'exists','extra':1}}]}]}}");
    diag d;
    diag_init(&d, NULL);
    assert_null(trigger_from_json(j, "", &resolver, &d));
    static const char *const want[] = {
        "colour",
        "id",
        "enabled",
        "workflow",
        "conditions.all[0].field",
        "conditions.all[1].op",
        "conditions.all[2].any[0].value",
        "conditions.all[2].any[1].not.extra",
        "conditions.all[2].any[1].not.field",
    };
    char *all = diag_join(&d);
    if (d.count != ARRAY_LEN(want))
        print_error("got %zu problems: %s\n", d.count, all ? all : "");
    free(all);
    assert_int_equal(d.count, ARRAY_LEN(want));
    for (size_t i = 0; i < ARRAY_LEN(want); i++)
        assert_string_equal(d.items[i].path, want[i]);
    assert_true(all_lowercase(&d));

    /* the same under a prefix */
    diag_free(&d);
    diag_init(&d, NULL);
    assert_null(trigger_from_json(j, "triggers[3]", &resolver, &d));
    assert_int_equal(d.count, ARRAY_LEN(want));
    assert_string_equal(d.items[6].path, "triggers[3].conditions.all[2].any[0].value");

    /* problems already in d are not the trigger's */
    assert_null(trigger_from_json(j, "", &resolver, &d));
    assert_int_equal(d.count, 2 * ARRAY_LEN(want));
    trigger *t = load_ok(SPEC(T_));
    trigger_free(t);
    cJSON *good = jq(SPEC(T_));
    t = trigger_from_json(good, "", &resolver, &d); /* d has items: still loads */
    assert_non_null(t);
    trigger_free(t);
    cJSON_Delete(good);

    /* without a diag only the result tells */
    assert_null(trigger_from_json(j, "", &resolver, NULL));
    assert_null(trigger_from_json(NULL, "", &resolver, NULL));
    diag_free(&d);
    cJSON_Delete(j);
}

/* The seed's gotcha: a trigger on "my-Timer" loaded and never ran.  An
 * unknown name close to a known one says which (case is not a difference
 * worth a different name); a far one, or a resolver that offers no names,
 * gets the plain message. */
static void test_unknown_names_suggest(void **state)
{
    (void)state;
    static const struct {
        const char *spec, *path, *reason;
    } cases[] = {
        {"{'id':'t','source':'my-Timer','event_type':'file_created','workflow':'cleanup'}",
         "source", "unknown event source 'my-Timer' (did you mean 'my-timer'?)"},
        {"{'id':'t','source':'Timer','event_type':'timer_fired','workflow':'cleanup'}", "source",
         "unknown event source 'Timer' (did you mean 'timer'?)"},
        {"{'id':'t','source':'timr','event_type':'timer_fired','workflow':'cleanup'}", "source",
         "unknown event source 'timr' (did you mean 'timer'?)"},
        {"{'id':'t','source':'nosuch','event_type':'timer_fired','workflow':'cleanup'}", "source",
         "unknown event source 'nosuch'"},
        {"{'id':'t','source':'timer','event_type':'timer_fried','workflow':'cleanup'}",
         "event_type",
         "source 'timer' does not declare event type 'timer_fried' (did you mean 'timer_fired'?)"},
        {"{'id':'t','source':'files','event_type':'File_Created','workflow':'cleanup'}",
         "event_type",
         "source 'files' does not declare event type 'File_Created' (did you mean "
         "'file_created'?)"},
        {"{'id':'t','source':'timer','event_type':'timer_stopped','workflow':'cleanup'}",
         "event_type", "source 'timer' does not declare event type 'timer_stopped'"},
        {"{'id':'t','source':'timer','event_type':'timer_fired','workflow':'generate-reprot'}",
         "workflow", "unknown workflow 'generate-reprot' (did you mean 'generate-report'?)"},
        {"{'id':'t','source':'timer','event_type':'timer_fired','workflow':'clean'}", "workflow",
         "unknown workflow 'clean' (did you mean 'cleanup'?)"},
        {"{'id':'t','source':'timer','event_type':'timer_fired','workflow':'x'}", "workflow",
         "unknown workflow 'x'"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        cJSON *j = jq(cases[i].spec);
        diag d;
        diag_init(&d, NULL);
        assert_null(trigger_from_json(j, "", &resolver, &d));
        if (d.count != 1 || strcmp(d.items[0].path, cases[i].path) ||
            strcmp(d.items[0].reason, cases[i].reason))
            print_error("%s: expected [%s: %s], got [%s: %s] x%zu\n", cases[i].spec, cases[i].path,
                        cases[i].reason, d.count ? d.items[0].path : "",
                        d.count ? d.items[0].reason : "", d.count);
        assert_int_equal(d.count, 1);
        assert_string_equal(d.items[0].path, cases[i].path);
        assert_string_equal(d.items[0].reason, cases[i].reason);
        diag_free(&d);
        cJSON_Delete(j);
    }
    /* without offer_names the lookups still work, with no suggestion */
    trigger_resolver plain = resolver;
    plain.offer_names = NULL;
    cJSON *j = jq(cases[1].spec);
    diag d;
    diag_init(&d, NULL);
    assert_null(trigger_from_json(j, "", &plain, &d));
    assert_int_equal(d.count, 1);
    assert_string_equal(d.items[0].reason, "unknown event source 'Timer'");
    diag_free(&d);
    cJSON_Delete(j);
}

static void test_no_resolver_skips_lookups(void **state)
{
    (void)state;
    /* without a resolver (or its callbacks) nothing is looked up */
    const char *spec = "{'id':'t','source':'nosuch','event_type':'x','workflow':'nope',"
                       "'conditions':{'field':'data.nope','op':'eq','value':1}}";
    trigger_free(load_with(spec, NULL));
    trigger_resolver none = {0};
    trigger_free(load_with(spec, &none));
    /* a source declared without a schema: data fields are not checked */
    trigger_free(load_ok("{'id':'t','source':'files','event_type':'file_created',"
                         "'workflow':'cleanup','conditions':{'field':'data.x','op':'gt',"
                         "'value':1}}"));
    /* an unknown source: no schema check, only the source is reported */
    cJSON *j = jq("{'id':'t','source':'nosuch','event_type':'x','workflow':'cleanup',"
                  "'conditions':{'field':'data.nope','op':'eq','value':1}}");
    diag d;
    diag_init(&d, NULL);
    assert_null(trigger_from_json(j, "", &resolver, &d));
    assert_int_equal(d.count, 1);
    assert_string_equal(d.items[0].path, "source");
    assert_string_equal(d.items[0].reason, "unknown event source 'nosuch'");
    diag_free(&d);
    cJSON_Delete(j);
}

/* ---- limits ----------------------------------------------------------------------- */

/* levels of {"not": ...} around a clause */
static cJSON *nested_not(int levels)
{
    cJSON *node = jq(T_);
    for (int i = 0; i < levels; i++) {
        cJSON *outer = cJSON_CreateObject();
        assert_non_null(outer);
        cJSON_AddItemToObject(outer, "not", node);
        node = outer;
    }
    return node;
}

/* levels alternating all / any, each a one-element list */
static cJSON *nested_lists(int levels)
{
    cJSON *node = jq(T_);
    for (int i = 0; i < levels; i++) {
        cJSON *list = cJSON_CreateArray();
        cJSON_AddItemToArray(list, node);
        cJSON *outer = cJSON_CreateObject();
        cJSON_AddItemToObject(outer, i % 2 ? "any" : "all", list);
        node = outer;
    }
    return node;
}

static cJSON *spec_with(cJSON *conds)
{
    cJSON *spec = jq("{'id':'deep','source':'timer','event_type':'timer_fired',"
                     "'workflow':'generate-report'}");
    cJSON_AddItemToObject(spec, "conditions", conds);
    return spec;
}

static void test_depth_limit(void **state)
{
    (void)state;
    diag d;
    diag_init(&d, NULL);
    cJSON *env = jq(ENV);

    /* exactly the limit: loads, and an even number of nots is the clause */
    cJSON *spec = spec_with(nested_not(TRIGGER_MAX_DEPTH));
    trigger *t = trigger_from_json(spec, "", &resolver, &d);
    assert_non_null(t);
    assert_int_equal(d.count, 0);
    assert_int_equal(trigger_matches(t, env), TRIGGER_MAX_DEPTH % 2 == 0);
    trigger_free(t);
    cJSON_Delete(spec);

    /* one more: refused at the level that is too deep */
    spec = spec_with(nested_not(TRIGGER_MAX_DEPTH + 1));
    assert_null(trigger_from_json(spec, "", &resolver, &d));
    assert_int_equal(d.count, 1);
    char want[512] = "conditions";
    for (int i = 0; i <= TRIGGER_MAX_DEPTH; i++)
        strcat(want, ".not");
    assert_string_equal(d.items[0].path, want);
    assert_true(contains_text(d.items[0].reason, "conditions nest deeper than 16 levels"));
    cJSON_Delete(spec);
    diag_free(&d);

    /* lists count the same way; a list at the top is a level */
    diag_init(&d, NULL);
    spec = spec_with(nested_lists(TRIGGER_MAX_DEPTH));
    t = trigger_from_json(spec, "", &resolver, &d);
    assert_non_null(t);
    assert_true(trigger_matches(t, env));
    trigger_free(t);
    cJSON_Delete(spec);
    cJSON *list = cJSON_CreateArray();
    cJSON_AddItemToArray(list, nested_lists(TRIGGER_MAX_DEPTH));
    spec = spec_with(list);
    assert_null(trigger_from_json(spec, "", &resolver, &d));
    assert_int_equal(d.count, 1);
    cJSON_Delete(spec);

    /* far deeper than any stack would like: one problem, no recursion */
    spec = spec_with(nested_not(20000));
    assert_null(trigger_from_json(spec, "triggers[0]", &resolver, &d));
    assert_int_equal(d.count, 2);
    assert_true(contains_text(d.items[1].reason, "nest deeper"));
    cJSON_Delete(spec);
    spec = spec_with(nested_lists(20000));
    assert_null(trigger_from_json(spec, "", &resolver, &d));
    assert_int_equal(d.count, 3);
    cJSON_Delete(spec);
    diag_free(&d);
    cJSON_Delete(env);
}

static cJSON *many_clauses(int n)
{
    cJSON *all = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(all, jq(i % 2 ? T_ : CL("data.sequence", "gte", "1")));
    cJSON *conds = cJSON_CreateObject();
    cJSON_AddItemToObject(conds, "all", all);
    return conds;
}

static void test_clause_limit(void **state)
{
    (void)state;
    diag d;
    diag_init(&d, NULL);
    cJSON *spec = spec_with(many_clauses(TRIGGER_MAX_CLAUSES));
    trigger *t = trigger_from_json(spec, "", &resolver, &d);
    assert_non_null(t);
    assert_int_equal(d.count, 0);
    cJSON *env = jq(ENV);
    assert_true(trigger_matches(t, env));
    cJSON_Delete(env);
    trigger_free(t);
    cJSON_Delete(spec);

    spec = spec_with(many_clauses(TRIGGER_MAX_CLAUSES + 50));
    assert_null(trigger_from_json(spec, "", &resolver, &d));
    assert_int_equal(d.count, 1); /* said once */
    assert_string_equal(d.items[0].path, "conditions.all[256]");
    assert_string_equal(d.items[0].reason, "more than 256 clauses in one trigger");
    cJSON_Delete(spec);

    /* counted across the whole tree, not per list */
    diag_free(&d);
    diag_init(&d, NULL);
    cJSON *any = cJSON_CreateArray();
    cJSON_AddItemToArray(any, many_clauses(200));
    cJSON_AddItemToArray(any, many_clauses(57));
    cJSON *conds = cJSON_CreateObject();
    cJSON_AddItemToObject(conds, "any", any);
    spec = spec_with(conds);
    assert_null(trigger_from_json(spec, "", &resolver, &d));
    assert_int_equal(d.count, 1);
    assert_string_equal(d.items[0].path, "conditions.any[1].all[56]");
    cJSON_Delete(spec);
    diag_free(&d);
}

static cJSON *nested_arrays(int levels)
{
    cJSON *v = cJSON_CreateNumber(1);
    for (int i = 0; i < levels; i++) {
        cJSON *a = cJSON_CreateArray();
        cJSON_AddItemToArray(a, v);
        v = a;
    }
    return v;
}

static void test_value_depth_limit(void **state)
{
    (void)state;
    diag d;
    diag_init(&d, NULL);
    cJSON *clause = jq("{'field':'data.extra','op':'eq'}");
    cJSON_AddItemToObject(clause, "value", nested_arrays(EVH_JSON_MAX_DEPTH));
    cJSON *spec = spec_with(clause);
    trigger *t = trigger_from_json(spec, "", &resolver, &d);
    assert_non_null(t);
    trigger_free(t);
    cJSON_Delete(spec);

    clause = jq("{'field':'data.extra','op':'eq'}");
    cJSON_AddItemToObject(clause, "value", nested_arrays(5000));
    spec = spec_with(clause);
    assert_null(trigger_from_json(spec, "", &resolver, &d));
    assert_int_equal(d.count, 1);
    assert_string_equal(d.items[0].path, "conditions.value");
    assert_string_equal(d.items[0].reason, "value nests deeper than 64 levels");
    cJSON_Delete(spec);
    diag_free(&d);
}

/* ---- to_json ------------------------------------------------------------------------ */

static void test_to_json(void **state)
{
    (void)state;
    trigger *t = load_ok("{'id':'daily','name':'Daily','description':'d','source':'timer',"
                         "'event_type':'timer_fired','workflow':'generate-report',"
                         "'enabled':false,'conditions':[" T_ "]}");
    t->origin = strdup("triggers.yaml");
    cJSON *j = trigger_to_json(t);
    cJSON *want = jq("{'id':'daily','name':'Daily','description':'d','source':'timer',"
                     "'event_type':'timer_fired','workflow':'generate-report',"
                     "'conditions':[" T_ "],'enabled':false,'origin':'triggers.yaml'}");
    assert_true(cJSON_Compare(j, want, 1));
    cJSON_Delete(want);

    /* back again: the same trigger (origin is not part of a spec) */
    cJSON_DeleteItemFromObject(j, "origin");
    diag d;
    diag_init(&d, NULL);
    trigger *u = trigger_from_json(j, "", &resolver, &d);
    assert_non_null(u);
    assert_int_equal(d.count, 0);
    assert_string_equal(u->name, "Daily");
    assert_int_equal(u->enabled, 0);
    assert_true(cJSON_Compare(u->conditions_json, t->conditions_json, 1));
    diag_free(&d);
    trigger_free(u);
    cJSON_Delete(j);
    trigger_free(t);

    /* absent parts are null */
    t = load_ok("{'id':'bare','source':'timer','event_type':'timer_fired','workflow':'cleanup'}");
    j = trigger_to_json(t);
    want = jq("{'id':'bare','name':'bare','description':null,'source':'timer',"
              "'event_type':'timer_fired','workflow':'cleanup','conditions':null,"
              "'enabled':true,'origin':null}");
    assert_true(cJSON_Compare(j, want, 1));
    cJSON_Delete(want);
    cJSON_Delete(j);
    trigger_free(t);
    assert_null(trigger_to_json(NULL));
}

/* ---- explain -------------------------------------------------------------------------- */

static const cJSON *at(const cJSON *root, const char *path)
{
    const cJSON *node = root;
    char *copy = strdup(path);
    assert_non_null(copy);
    for (char *save = NULL, *tok = strtok_r(copy, ".", &save); tok && node;
         tok = strtok_r(NULL, ".", &save)) {
        if (tok[0] >= '0' && tok[0] <= '9')
            node = cJSON_GetArrayItem(node, atoi(tok));
        else
            node = cJSON_GetObjectItemCaseSensitive(node, tok);
    }
    free(copy);
    return node;
}

static void assert_bool_at(const cJSON *root, const char *path, int want)
{
    const cJSON *node = at(root, path);
    if (!cJSON_IsBool(node) || cJSON_IsTrue(node) != want)
        print_error("explain: %s should be %s\n", path, want ? "true" : "false");
    assert_true(cJSON_IsBool(node) && cJSON_IsTrue(node) == want);
}

static void test_explain(void **state)
{
    (void)state;
    trigger *t = load_ok(SPEC("{'all':[" T_ ",{'any':[" CL(
        "data.sequence", "gt", "10") ",{'not':" CL0("metadata.user_id", "exists") "}]}]}"));
    cJSON *env = jq("{'id':'e','source':'timer','event_type':'timer_fired',"
                    "'data':{'timer_id':'default','sequence':5},"
                    "'metadata':{'user_id':null}}");
    cJSON *ex = trigger_explain(t, env);
    assert_non_null(ex);
    assert_bool_at(ex, "matched", 1);
    assert_bool_at(ex, "source_matches", 1);
    assert_bool_at(ex, "event_type_matches", 1);
    assert_bool_at(ex, "conditions.result", 1);
    assert_bool_at(ex, "conditions.all.0.result", 1);
    assert_string_equal(at(ex, "conditions.all.0.field")->valuestring, "data.timer_id");
    assert_string_equal(at(ex, "conditions.all.0.op")->valuestring, "eq");
    assert_string_equal(at(ex, "conditions.all.0.value")->valuestring, "default");
    assert_string_equal(at(ex, "conditions.all.0.actual")->valuestring, "default");
    assert_null(at(ex, "conditions.all.0.missing"));
    assert_bool_at(ex, "conditions.all.1.result", 1);
    assert_bool_at(ex, "conditions.all.1.any.0.result", 0);
    assert_int_equal(at(ex, "conditions.all.1.any.0.actual")->valueint, 5);
    assert_bool_at(ex, "conditions.all.1.any.1.result", 1);
    assert_bool_at(ex, "conditions.all.1.any.1.not.result", 0);
    assert_bool_at(ex, "conditions.all.1.any.1.not.missing", 1);
    assert_null(at(ex, "conditions.all.1.any.1.not.actual"));
    assert_null(at(ex, "conditions.all.1.any.1.not.value"));
    cJSON_Delete(ex);

    /* another source: not matched, although the conditions hold */
    cJSON_ReplaceItemInObject(env, "source", cJSON_CreateString("files"));
    ex = trigger_explain(t, env);
    assert_bool_at(ex, "matched", 0);
    assert_bool_at(ex, "source_matches", 0);
    assert_bool_at(ex, "event_type_matches", 1);
    assert_bool_at(ex, "conditions.result", 1);
    cJSON_Delete(ex);

    /* every child is explained, even after the result is decided */
    cJSON_ReplaceItemInObject(env, "source", cJSON_CreateString("timer"));
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(env, "data"), "timer_id",
                              cJSON_CreateString("other"));
    ex = trigger_explain(t, env);
    assert_bool_at(ex, "matched", 0);
    assert_bool_at(ex, "conditions.result", 0);
    assert_bool_at(ex, "conditions.all.0.result", 0);
    assert_bool_at(ex, "conditions.all.1.result", 1);
    cJSON_Delete(ex);
    trigger_free(t);

    /* a list at the top is shown as all; no conditions is null */
    t = load_ok(SPEC("[" T_ "]"));
    ex = trigger_explain(t, env);
    assert_non_null(at(ex, "conditions.all.0.field"));
    cJSON_Delete(ex);
    trigger_free(t);
    t = load_ok("{'id':'t','source':'timer','event_type':'timer_fired','workflow':'cleanup'}");
    ex = trigger_explain(t, env);
    assert_true(cJSON_IsNull(at(ex, "conditions")));
    assert_bool_at(ex, "matched", 1);
    cJSON_Delete(ex);
    /* an envelope without source / event_type does not match */
    cJSON *bare = jq("{'data':{}}");
    ex = trigger_explain(t, bare);
    assert_bool_at(ex, "matched", 0);
    assert_bool_at(ex, "source_matches", 0);
    cJSON_Delete(ex);
    cJSON_Delete(bare);
    trigger_free(t);
    assert_null(trigger_explain(NULL, env));
    cJSON_Delete(env);
}

/* ---- the set in force ---------------------------------------------------------------- */

#define N_TRIGGERS 10000

/* Trigger i sits on (src<i%100>, type<i/100%50>), so every pair holds i and
 * i+5000; its condition is data.n >= i. */
static trigger *numbered(int i, int enabled)
{
    char id[32], source[32], type[32];
    snprintf(id, sizeof id, "trig-%05d", i);
    snprintf(source, sizeof source, "src%d", i % 100);
    snprintf(type, sizeof type, "type%d", i / 100 % 50);
    cJSON *spec = cJSON_CreateObject();
    cJSON_AddStringToObject(spec, "id", id);
    cJSON_AddStringToObject(spec, "source", source);
    cJSON_AddStringToObject(spec, "event_type", type);
    cJSON_AddStringToObject(spec, "workflow", "generate-report");
    cJSON_AddBoolToObject(spec, "enabled", enabled);
    cJSON *clause = cJSON_AddObjectToObject(spec, "conditions");
    cJSON_AddStringToObject(clause, "field", "data.n");
    cJSON_AddStringToObject(clause, "op", "gte");
    cJSON_AddNumberToObject(clause, "value", i);
    trigger *t = trigger_from_json(spec, "", NULL, NULL);
    cJSON_Delete(spec);
    assert_non_null(t);
    return t;
}

static cJSON *event_n(const char *source, const char *type, int n)
{
    cJSON *env = cJSON_CreateObject();
    cJSON_AddStringToObject(env, "source", source);
    cJSON_AddStringToObject(env, "event_type", type);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(env, "data"), "n", n);
    return env;
}

static trigger_set *big_set(void)
{
    trigger_set *ts = trigger_set_new();
    assert_non_null(ts);
    for (int i = 0; i < N_TRIGGERS; i++)
        assert_int_equal(trigger_set_add(ts, numbered(i, 1)), EVH_OK);
    return ts;
}

static void test_set_index(void **state)
{
    (void)state;
    trigger_set *ts = big_set();
    assert_int_equal(trigger_set_count(ts), N_TRIGGERS);

    /* in the order they were added, and each found by id */
    for (int i = 0; i < N_TRIGGERS; i++) {
        char id[32];
        snprintf(id, sizeof id, "trig-%05d", i);
        assert_string_equal(trigger_set_at(ts, (size_t)i)->id, id);
        assert_ptr_equal(trigger_set_get(ts, id), trigger_set_at(ts, (size_t)i));
    }
    assert_null(trigger_set_at(ts, N_TRIGGERS));
    assert_null(trigger_set_get(ts, "trig-10000"));
    assert_null(trigger_set_get(ts, "nope"));
    assert_null(trigger_set_get(ts, NULL));

    /* (src7, type3) holds 307 and 5307 */
    const trigger *out[8];
    cJSON *env = event_n("src7", "type3", 1000);
    size_t n = trigger_set_match(ts, "src7", "type3", env, out, 8);
    assert_int_equal(n, 1);
    assert_string_equal(out[0]->id, "trig-00307");
    cJSON_Delete(env);

    env = event_n("src7", "type3", 6000);
    n = trigger_set_match(ts, "src7", "type3", env, out, 8);
    assert_int_equal(n, 2);
    assert_string_equal(out[0]->id, "trig-00307");
    assert_string_equal(out[1]->id, "trig-05307");
    /* at most max */
    assert_int_equal(trigger_set_match(ts, "src7", "type3", env, out, 1), 1);
    assert_string_equal(out[0]->id, "trig-00307");
    assert_int_equal(trigger_set_match(ts, "src7", "type3", env, out, 0), 0);
    /* other pairs, near misses and nothing */
    assert_int_equal(trigger_set_match(ts, "src7", "type50", env, out, 8), 0);
    assert_int_equal(trigger_set_match(ts, "src70", "type3", env, out, 8), 2);
    assert_int_equal(trigger_set_match(ts, "src", "7type3", env, out, 8), 0);
    assert_int_equal(trigger_set_match(ts, "src7type3", "", env, out, 8), 0);
    assert_int_equal(trigger_set_match(ts, "nosuch", "type3", env, out, 8), 0);
    assert_int_equal(trigger_set_match(NULL, "src7", "type3", env, out, 8), 0);
    cJSON_Delete(env);

    /* every pair answers for its own two only */
    env = event_n("", "", N_TRIGGERS);
    for (int s = 0; s < 100; s += 13) {
        for (int ty = 0; ty < 50; ty += 7) {
            char source[16], type[16], want[32];
            snprintf(source, sizeof source, "src%d", s);
            snprintf(type, sizeof type, "type%d", ty);
            assert_int_equal(trigger_set_match(ts, source, type, env, out, 8), 2);
            snprintf(want, sizeof want, "trig-%05d", ty * 100 + s);
            assert_string_equal(out[0]->id, want);
        }
    }
    cJSON_Delete(env);
    trigger_set_free(ts);
    trigger_set_free(NULL);
}

static void test_set_duplicate_and_disabled(void **state)
{
    (void)state;
    trigger_set *ts = trigger_set_new();
    assert_int_equal(trigger_set_count(ts), 0);
    assert_int_equal(trigger_set_add(ts, numbered(307, 1)), EVH_OK);

    /* the caller keeps a refused trigger */
    trigger *dup = numbered(307, 1);
    assert_int_equal(trigger_set_add(ts, dup), EVH_E_DUPLICATE);
    assert_int_equal(trigger_set_count(ts), 1);
    assert_ptr_not_equal(trigger_set_get(ts, "trig-00307"), dup);
    trigger_free(dup);

    /* a disabled trigger is in the set but never matched */
    trigger *off = numbered(5307, 0);
    assert_int_equal(trigger_set_add(ts, off), EVH_OK);
    assert_ptr_equal(trigger_set_get(ts, "trig-05307"), off);
    cJSON *env = event_n("src7", "type3", 9999);
    assert_true(trigger_matches(off, env)); /* enabled is not looked at here */
    const trigger *out[4];
    assert_int_equal(trigger_set_match(ts, "src7", "type3", env, out, 4), 1);
    assert_string_equal(out[0]->id, "trig-00307");
    cJSON_Delete(env);

    assert_int_equal(trigger_set_add(ts, NULL), EVH_E_INVALID);
    assert_int_equal(trigger_set_add(NULL, NULL), EVH_E_INVALID);
    trigger_set_free(ts);
}

/* Readers share one set and its compiled regexes. */
typedef struct reader {
    const trigger_set *ts;
    int ok;
} reader;

static void *read_loop(void *arg)
{
    reader *r = arg;
    cJSON *hit = jq("{'source':'files','event_type':'file_created',"
                    "'data':{'path':'/in/report-2024.csv'}}");
    cJSON *miss = jq("{'source':'files','event_type':'file_created','data':{'path':'/in/x.txt'}}");
    r->ok = 1;
    for (int i = 0; i < 2000 && r->ok; i++) {
        const trigger *out[4];
        if (trigger_set_match(r->ts, "files", "file_created", hit, out, 4) != 2 ||
            trigger_set_match(r->ts, "files", "file_created", miss, out, 4) != 1)
            r->ok = 0;
    }
    cJSON_Delete(hit);
    cJSON_Delete(miss);
    return NULL;
}

static void test_set_concurrent_readers(void **state)
{
    (void)state;
    trigger_set *ts = trigger_set_new();
    const char *specs[] = {
        "{'id':'csv','source':'files','event_type':'file_created','workflow':'cleanup',"
        "'conditions':{'field':'data.path','op':'matches','value':'report-[0-9]+\\\\.csv$'}}",
        "{'id':'in','source':'files','event_type':'file_created','workflow':'cleanup',"
        "'conditions':{'field':'data.path','op':'starts_with','value':'/in/'}}",
        "{'id':'other','source':'files','event_type':'file_deleted','workflow':'cleanup'}",
    };
    for (size_t i = 0; i < ARRAY_LEN(specs); i++)
        assert_int_equal(trigger_set_add(ts, load_with(specs[i], NULL)), EVH_OK);
    pthread_t th[4];
    reader r[4];
    for (int i = 0; i < 4; i++) {
        r[i].ts = ts;
        r[i].ok = 0;
        assert_int_equal(pthread_create(&th[i], NULL, read_loop, &r[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_true(r[i].ok);
    }
    trigger_set_free(ts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_operators_table),
        cmocka_unit_test(test_groups_table),
        cmocka_unit_test(test_no_conditions_match_everything),
        cmocka_unit_test(test_fields_and_defaults),
        cmocka_unit_test(test_id_length_limit),
        cmocka_unit_test(test_valid_specs),
        cmocka_unit_test(test_validation_errors_table),
        cmocka_unit_test(test_regex_error_text),
        cmocka_unit_test(test_one_pass_all_problems),
        cmocka_unit_test(test_unknown_names_suggest),
        cmocka_unit_test(test_no_resolver_skips_lookups),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_clause_limit),
        cmocka_unit_test(test_value_depth_limit),
        cmocka_unit_test(test_to_json),
        cmocka_unit_test(test_explain),
        cmocka_unit_test(test_set_index),
        cmocka_unit_test(test_set_duplicate_and_disabled),
        cmocka_unit_test(test_set_concurrent_readers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
