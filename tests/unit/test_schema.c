/*
 * test_schema.c - the JSON-schema subset: every keyword passing and failing,
 * the exact paths and reasons users see, compile errors, defaults and path
 * lookups.  Cases are tables; JSON in them uses ' for " to stay readable.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <evhost/evhost.h>

#include "diag.h"
#include "evh_limits.h"
#include "schema.h"

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

static schema *compile_ok(const char *text)
{
    cJSON *j = jq(text);
    diag d;
    diag_init(&d, NULL);
    schema *s = schema_compile(j, "schema", &d);
    if (!s || d.count) {
        char *all = diag_join(&d);
        print_error("schema %s should compile, got: %s\n", text, all ? all : "?");
        free(all);
    }
    assert_non_null(s);
    assert_int_equal(d.count, 0);
    diag_free(&d);
    cJSON_Delete(j);
    return s;
}

static int contains(const char *haystack, const char *needle)
{
    return haystack && needle && strstr(haystack, needle) != NULL;
}

/* ---- validation --------------------------------------------------------- */

typedef struct vcase {
    const char *schema;
    const char *instance;
    int valid;
    const char *path;   /* exact path of the first problem (base "data") */
    const char *reason; /* substring of its reason */
    size_t count;       /* number of problems; 0: not checked */
} vcase;

static const vcase vcases[] = {
    /* type, one name */
    {"{'type':'string'}", "'x'", 1, NULL, NULL, 0},
    {"{'type':'string'}", "5", 0, "data", "expected string, got number", 1},
    {"{'type':'number'}", "3.5", 1, NULL, NULL, 0},
    {"{'type':'number'}", "3", 1, NULL, NULL, 0},
    {"{'type':'number'}", "'3'", 0, "data", "expected number, got string", 1},
    {"{'type':'integer'}", "3", 1, NULL, NULL, 0},
    {"{'type':'integer'}", "-42", 1, NULL, NULL, 0},
    {"{'type':'integer'}", "2.0", 1, NULL, NULL, 0},
    {"{'type':'integer'}", "9007199254740992", 1, NULL, NULL, 0},
    {"{'type':'integer'}", "3.5", 0, "data", "expected integer, got number", 1},
    {"{'type':'integer'}", "1e300", 0, "data", "expected integer, got number", 1},
    {"{'type':'integer'}", "'3'", 0, "data", "expected integer, got string", 1},
    {"{'type':'boolean'}", "false", 1, NULL, NULL, 0},
    {"{'type':'boolean'}", "'true'", 0, "data", "expected boolean, got string", 1},
    {"{'type':'null'}", "null", 1, NULL, NULL, 0},
    {"{'type':'null'}", "0", 0, "data", "expected null, got number", 1},
    {"{'type':'array'}", "[]", 1, NULL, NULL, 0},
    {"{'type':'array'}", "{}", 0, "data", "expected array, got object", 1},
    {"{'type':'object'}", "{}", 1, NULL, NULL, 0},
    {"{'type':'object'}", "[]", 0, "data", "expected object, got array", 1},
    /* type, list */
    {"{'type':['string','null']}", "null", 1, NULL, NULL, 0},
    {"{'type':['string','null']}", "'a'", 1, NULL, NULL, 0},
    {"{'type':['string','null']}", "3", 0, "data", "expected one of [string, null], got number", 1},
    {"{'type':['integer','string']}", "1.5", 0, "data",
     "expected one of [integer, string], got number", 1},
    /* anything / nothing */
    {"{}", "{'a':[1,2,{'b':null}]}", 1, NULL, NULL, 0},
    {"true", "12", 1, NULL, NULL, 0},
    {"false", "12", 0, "data", "no value is allowed here", 1},
    {"{'properties':{'a':false}}", "{'a':1}", 0, "data.a", "no value is allowed here", 1},
    {"{'properties':{'a':false}}", "{'b':1}", 1, NULL, NULL, 0},
    /* properties and required, nested */
    {"{'properties':{'a':{'type':'integer'}}}", "{'a':1,'b':'x'}", 1, NULL, NULL, 0},
    {"{'properties':{'a':{'type':'integer'}}}", "{'a':'x'}", 0, "data.a",
     "expected integer, got string", 1},
    {"{'properties':{'a':{'type':'integer'}}}", "'not an object'", 1, NULL, NULL, 0},
    {"{'required':['fired_at']}", "{'fired_at':1}", 1, NULL, NULL, 0},
    {"{'required':['fired_at']}", "{}", 0, "data.fired_at", "required property is missing", 1},
    {"{'required':['Fired_at']}", "{'fired_at':1}", 0, "data.Fired_at",
     "required property is missing", 1},
    {"{'properties':{'user':{'properties':{'name':{'type':'string'}}}}}", "{'user':{'name':1}}", 0,
     "data.user.name", "expected string, got number", 1},
    {"{'properties':{'user':{'required':['id']}}}", "{'user':{}}", 0, "data.user.id",
     "required property is missing", 1},
    /* enum and const */
    {"{'enum':['a','b',1,null]}", "'b'", 1, NULL, NULL, 0},
    {"{'enum':['a','b',1,null]}", "1", 1, NULL, NULL, 0},
    {"{'enum':['a','b',1,null]}", "null", 1, NULL, NULL, 0},
    {"{'enum':['a','b',1,null]}", "'c'", 0, "data", "value is not one of the allowed values (enum)",
     1},
    {"{'enum':['a']}", "'A'", 0, "data", "not one of the allowed values", 1},
    {"{'enum':[{'x':[1]}]}", "{'x':[1]}", 1, NULL, NULL, 0},
    {"{'enum':[{'x':[1]}]}", "{'x':[2]}", 0, "data", "(enum)", 1},
    {"{'const':5}", "5", 1, NULL, NULL, 0},
    {"{'const':5}", "6", 0, "data", "value does not equal const", 1},
    {"{'const':5}", "'5'", 0, "data", "value does not equal const", 1},
    {"{'const':{'a':[1,2]}}", "{'a':[1,2]}", 1, NULL, NULL, 0},
    {"{'const':{'a':[1,2]}}", "{'a':[2,1]}", 0, "data", "value does not equal const", 1},
    /* items */
    {"{'items':{'type':'string'}}", "['a','b']", 1, NULL, NULL, 0},
    {"{'items':{'type':'string'}}", "['a',2]", 0, "data[1]", "expected string, got number", 1},
    {"{'items':{'type':'string'}}", "[1,'a',2]", 0, "data[0]", "expected string", 2},
    {"{'properties':{'items':{'type':'array','items':{'properties':{'sku':{'type':'string'}}}}}}",
     "{'items':[{'sku':'a'},{'sku':'b'},{'sku':3}]}", 0, "data.items[2].sku",
     "expected string, got number", 1},
    {"{'items':{'items':{'type':'integer'}}}", "[[1],[2,'x']]", 0, "data[1][1]",
     "expected integer, got string", 1},
    /* additionalProperties */
    {"{'properties':{'a':{}},'additionalProperties':false}", "{'a':1}", 1, NULL, NULL, 0},
    {"{'properties':{'a':{}},'additionalProperties':false}", "{'a':1,'b':2}", 0, "data.b",
     "property is not allowed (additionalProperties is false)", 1},
    {"{'properties':{'a':{}},'additionalProperties':true}", "{'b':1}", 1, NULL, NULL, 0},
    {"{'additionalProperties':{'type':'integer'}}", "{'x':1}", 1, NULL, NULL, 0},
    {"{'additionalProperties':{'type':'integer'}}", "{'x':'s'}", 0, "data.x",
     "expected integer, got string", 1},
    {"{'properties':{'a':{'type':'string'}},'additionalProperties':{'type':'integer'}}",
     "{'a':'s','b':2}", 1, NULL, NULL, 0},
    /* minimum and maximum */
    {"{'minimum':0}", "0", 1, NULL, NULL, 0},
    {"{'minimum':0}", "-1", 0, "data", "value -1 is below minimum 0", 1},
    {"{'maximum':5}", "5", 1, NULL, NULL, 0},
    {"{'maximum':5}", "7", 0, "data", "value 7 is above maximum 5", 1},
    {"{'maximum':1.5}", "1.75", 0, "data", "value 1.75 is above maximum 1.5", 1},
    {"{'minimum':0.1}", "0.09", 0, "data", "value 0.09 is below minimum 0.1", 1},
    {"{'minimum':3}", "'a'", 1, NULL, NULL, 0},
    /* minLength and maxLength, in characters */
    {"{'minLength':3}", "'abc'", 1, NULL, NULL, 0},
    {"{'minLength':3}", "'ab'", 0, "data", "string is shorter than minLength 3", 1},
    {"{'maxLength':3}", "'abcd'", 0, "data", "string is longer than maxLength 3", 1},
    {"{'maxLength':3}", "'h\\u00e9\\u00e9'", 1, NULL, NULL, 0},
    {"{'maxLength':2}", "'h\\u00e9\\u00e9'", 0, "data", "string is longer than maxLength 2", 1},
    {"{'maxLength':2}", "'\xf0\x9f\x98\x80\xf0\x9f\x98\x80'", 1, NULL, NULL, 0},
    {"{'minLength':3}", "'\xf0\x9f\x98\x80\xf0\x9f\x98\x80'", 0, "data",
     "string is shorter than minLength 3", 1},
    {"{'minLength':3}", "12", 1, NULL, NULL, 0},
    /* minItems and maxItems */
    {"{'minItems':1}", "[1]", 1, NULL, NULL, 0},
    {"{'minItems':1}", "[]", 0, "data", "array has fewer than 1 items (minItems)", 1},
    {"{'maxItems':2}", "[1,2]", 1, NULL, NULL, 0},
    {"{'maxItems':2}", "[1,2,3]", 0, "data", "array has more than 2 items (maxItems)", 1},
    /* pattern: POSIX ERE, unanchored search */
    {"{'pattern':'^a'}", "'abc'", 1, NULL, NULL, 0},
    {"{'pattern':'^a'}", "'bac'", 0, "data", "does not match pattern '^a'", 1},
    {"{'pattern':'b+'}", "'abbbc'", 1, NULL, NULL, 0},
    {"{'pattern':'^[0-9]{3}-[a-z]+$'}", "'123-abc'", 1, NULL, NULL, 0},
    {"{'pattern':'^[0-9]{3}-[a-z]+$'}", "'12-abc'", 0, "data", "does not match pattern", 1},
    {"{'pattern':'^(foo|bar)$'}", "'bar'", 1, NULL, NULL, 0},
    {"{'pattern':'^(foo|bar)$'}", "'foobar'", 0, "data", "does not match pattern", 1},
    {"{'pattern':'^a'}", "5", 1, NULL, NULL, 0},
    /* format date-time */
    {"{'format':'date-time'}", "'2024-02-29T12:00:00Z'", 1, NULL, NULL, 0},
    {"{'format':'date-time'}", "'2000-02-29T00:00:00Z'", 1, NULL, NULL, 0},
    {"{'format':'date-time'}", "'2023-12-31T23:59:60Z'", 1, NULL, NULL, 0},
    {"{'format':'date-time'}", "'2024-01-01t00:00:00.123456z'", 1, NULL, NULL, 0},
    {"{'format':'date-time'}", "'2024-06-01T08:30:00+02:00'", 1, NULL, NULL, 0},
    {"{'format':'date-time'}", "'2024-06-01T08:30:00-05:30'", 1, NULL, NULL, 0},
    {"{'format':'date-time'}", "'2024-04-30T23:59:59.5+23:59'", 1, NULL, NULL, 0},
    {"{'format':'date-time'}", "'2023-02-29T12:00:00Z'", 0, "data",
     "not a valid date-time (RFC 3339)", 1},
    {"{'format':'date-time'}", "'1900-02-29T00:00:00Z'", 0, "data", "not a valid date-time", 1},
    {"{'format':'date-time'}", "'2024-13-01T00:00:00Z'", 0, "data", "not a valid date-time", 1},
    {"{'format':'date-time'}", "'2024-00-01T00:00:00Z'", 0, "data", "not a valid date-time", 1},
    {"{'format':'date-time'}", "'2024-04-31T00:00:00Z'", 0, "data", "not a valid date-time", 1},
    {"{'format':'date-time'}", "'2024-01-00T00:00:00Z'", 0, "data", "not a valid date-time", 1},
    {"{'format':'date-time'}", "'2024-01-01T24:00:00Z'", 0, "data", "not a valid date-time", 1},
    {"{'format':'date-time'}", "'2024-01-01T00:60:00Z'", 0, "data", "not a valid date-time", 1},
    {"{'format':'date-time'}", "'2024-01-01T00:00:61Z'", 0, "data", "not a valid date-time", 1},
    {"{'format':'date-time'}", "'2024-01-01T00:00:00'", 0, "data", "not a valid date-time", 1},
    {"{'format':'date-time'}", "'2024-01-01T00:00:00+0200'", 0, "data", "not a valid date-time",
     1},
    {"{'format':'date-time'}", "'2024-01-01T00:00:00+24:00'", 0, "data", "not a valid date-time",
     1},
    {"{'format':'date-time'}", "'2024-01-01T00:00:00+02:60'", 0, "data", "not a valid date-time",
     1},
    {"{'format':'date-time'}", "'2024-01-01 00:00:00Z'", 0, "data", "not a valid date-time", 1},
    {"{'format':'date-time'}", "'2024-01-01T00:00:00.Z'", 0, "data", "not a valid date-time", 1},
    {"{'format':'date-time'}", "'2024-1-01T00:00:00Z'", 0, "data", "not a valid date-time", 1},
    {"{'format':'date-time'}", "'2024-01-01T00:00:00Zjunk'", 0, "data", "not a valid date-time",
     1},
    {"{'format':'date-time'}", "'2024-01-01'", 0, "data", "not a valid date-time", 1},
    {"{'format':'date-time'}", "''", 0, "data", "not a valid date-time", 1},
    {"{'format':'date-time'}", "5", 1, NULL, NULL, 0},
    /* every violation is reported, not only the first */
    {"{'type':'object','required':['a','b'],'properties':{'a':{},'b':{},'c':{'type':'string'},"
     "'d':{'maximum':1}},'additionalProperties':false}",
     "{'c':1,'d':2,'e':3}", 0, "data.a", "required property is missing", 5},
    {"{'minLength':5,'pattern':'^x'}", "'abc'", 0, "data", "shorter than minLength 5", 2},
    {"{'type':'array','minItems':5,'items':{'type':'integer','maximum':3}}", "[1,4,'x']", 0, "data",
     "fewer than 5 items", 3},
};

static void check_vcase(const vcase *c)
{
    schema *s = compile_ok(c->schema);
    cJSON *inst = jq(c->instance);
    diag d;
    diag_init(&d, NULL);
    int rc = schema_validate(s, inst, "data", &d);
    char *all = diag_join(&d);
    int ok = (rc == EVH_OK) == (c->valid != 0) && (c->valid ? d.count == 0 : d.count > 0);
    if (ok && !c->valid)
        ok = rc == EVH_E_SCHEMA && strcmp(d.items[0].path, c->path) == 0 &&
             contains(d.items[0].reason, c->reason) && (!c->count || d.count == c->count);
    if (!ok)
        print_error("schema %s, instance %s: expected %s [%s: %s] x%zu, got rc %d [%s]\n",
                    c->schema, c->instance, c->valid ? "valid" : "invalid",
                    c->path ? c->path : "", c->reason ? c->reason : "", c->count, rc,
                    all ? all : "");
    free(all);
    diag_free(&d);
    cJSON_Delete(inst);
    schema_free(s);
    assert_true(ok);
}

static void test_validate_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(vcases); i++)
        check_vcase(&vcases[i]);
}

static void test_validate_root_path_and_null(void **state)
{
    (void)state;
    schema *s = compile_ok("{'properties':{'a':{'type':'string'}},'required':['b']}");
    cJSON *inst = jq("{'a':1}");
    diag d;
    diag_init(&d, NULL);
    assert_int_equal(schema_validate(s, inst, "", &d), EVH_E_SCHEMA);
    assert_int_equal(d.count, 2);
    assert_string_equal(d.items[0].path, "b");
    assert_string_equal(d.items[1].path, "a");
    diag_free(&d);
    /* no schema: anything goes; no diag: only the status */
    assert_int_equal(schema_validate(NULL, inst, "data", NULL), EVH_OK);
    assert_int_equal(schema_validate(s, inst, "data", NULL), EVH_E_SCHEMA);
    cJSON_Delete(inst);
    schema_free(s);
    schema_free(NULL);
}

/* ---- compile errors ----------------------------------------------------- */

typedef struct ccase {
    const char *schema;
    const char *path; /* exact path of the first problem (base below) */
    const char *reason;
} ccase;

#define BASE "eventTypes[0].schema"

static const ccase ccases[] = {
    {"{'properties':{'size':{'type':'integer','oneOf':[]}}}", BASE ".properties.size.oneOf",
     "unsupported schema keyword 'oneOf' (supported: type, properties, required, enum, const, "
     "items, additionalProperties, minimum, maximum, minLength, maxLength"},
    {"{'$ref':'#/definitions/x'}", BASE ".$ref", "unsupported schema keyword '$ref'"},
    {"{'allOf':[{}]}", BASE ".allOf", "unsupported schema keyword 'allOf'"},
    {"{'items':{'exclusiveMinimum':1}}", BASE ".items.exclusiveMinimum",
     "unsupported schema keyword 'exclusiveMinimum'"},
    {"{'additionalProperties':{'patternProperties':{}}}", BASE ".additionalProperties.patternProperties",
     "unsupported schema keyword"},
    {"5", BASE, "a schema must be an object or a boolean, got number"},
    /* a schema no instance can satisfy is a mistake, not a policy */
    {"{'required':['a'],'properties':{'b':{}},'additionalProperties':false}", BASE ".required[0]",
     "required property 'a' is not declared in 'properties' and additionalProperties is false"},
    {"{'type':'strin'}", BASE ".type", "unknown type 'strin'"},
    {"{'type':'int'}", BASE ".type", "unknown type 'int'"},
    {"{'type':7}", BASE ".type", "'type' must be a type name or a non-empty array"},
    {"{'type':[]}", BASE ".type", "'type' must be a type name or a non-empty array"},
    {"{'type':['string',5]}", BASE ".type[1]", "type names must be strings"},
    {"{'type':['string','bogus']}", BASE ".type[1]", "unknown type 'bogus'"},
    {"{'type':['string','string']}", BASE ".type[1]", "listed more than once"},
    {"{'type':'string','type':'number'}", BASE ".type", "appears more than once"},
    {"{'properties':[]}", BASE ".properties", "'properties' must be an object"},
    {"{'properties':{'a':5}}", BASE ".properties.a", "a schema must be an object or a boolean"},
    {"{'properties':{'a':{'type':'nope'}}}", BASE ".properties.a.type", "unknown type 'nope'"},
    {"{'required':'a'}", BASE ".required", "'required' must be an array"},
    {"{'required':['a',1]}", BASE ".required[1]", "'required' entries must be strings"},
    {"{'required':['a','a']}", BASE ".required[1]", "listed more than once"},
    {"{'required':['b'],'properties':{'a':{}},'additionalProperties':false}", BASE ".required[0]",
     "'b' is not declared"},
    {"{'enum':[]}", BASE ".enum", "'enum' must be a non-empty array"},
    {"{'enum':'a'}", BASE ".enum", "'enum' must be a non-empty array"},
    {"{'items':[{}]}", BASE ".items", "'items' must be a single schema"},
    {"{'items':'x'}", BASE ".items", "a schema must be an object or a boolean, got string"},
    {"{'additionalProperties':'no'}", BASE ".additionalProperties", "a schema must be an object"},
    {"{'minimum':'0'}", BASE ".minimum", "'minimum' must be a number"},
    {"{'maximum':null}", BASE ".maximum", "'maximum' must be a number"},
    {"{'minimum':5,'maximum':3}", BASE ".minimum", "'minimum' 5 is greater than 'maximum' 3"},
    {"{'minLength':-1}", BASE ".minLength", "'minLength' must be a non-negative integer"},
    {"{'maxLength':1.5}", BASE ".maxLength", "'maxLength' must be a non-negative integer"},
    {"{'minItems':'1'}", BASE ".minItems", "'minItems' must be a non-negative integer"},
    {"{'maxItems':true}", BASE ".maxItems", "'maxItems' must be a non-negative integer"},
    {"{'minLength':5,'maxLength':3}", BASE ".minLength",
     "'minLength' 5 is greater than 'maxLength' 3"},
    {"{'minItems':2,'maxItems':1}", BASE ".minItems", "'minItems' 2 is greater than 'maxItems' 1"},
    {"{'pattern':'(abc'}", BASE ".pattern", "invalid pattern '(abc'"},
    {"{'pattern':'[a-'}", BASE ".pattern", "invalid pattern '[a-'"},
    {"{'pattern':5}", BASE ".pattern", "'pattern' must be a string"},
    {"{'pattern':'^\\\\d+$'}", BASE ".pattern", "POSIX extended regex does not support"},
    {"{'format':'email'}", BASE ".format", "unsupported format 'email' (supported: date-time, conditions)"},
    {"{'format':1}", BASE ".format", "'format' must be a string"},
    {"{'type':'integer','default':'x'}", BASE ".default",
     "default does not match its schema: expected integer, got string"},
    {"{'properties':{'n':{'type':'integer','minimum':1,'default':0}}}",
     BASE ".properties.n.default", "default does not match its schema: value 0 is below minimum 1"},
    {"{'type':'object','properties':{'a':{'type':'string'}},'default':{'a':1}}", BASE ".default.a",
     "default does not match its schema: expected string, got number"},
    {"{'format':'date-time','default':'yesterday'}", BASE ".default", "not a valid date-time"},
    {"{'title':5}", BASE ".title", "'title' must be a string"},
    {"{'description':[]}", BASE ".description", "'description' must be a string"},
    {"{'$comment':{}}", BASE ".$comment", "'$comment' must be a string"},
    {"{'examples':5}", BASE ".examples", "'examples' must be an array"},
};

static void check_ccase(const ccase *c)
{
    cJSON *j = jq(c->schema);
    diag d;
    diag_init(&d, NULL);
    schema *s = schema_compile(j, BASE, &d);
    char *all = diag_join(&d);
    int ok = s == NULL && d.count > 0 && strcmp(d.items[0].path, c->path) == 0 &&
             contains(d.items[0].reason, c->reason);
    if (!ok)
        print_error("schema %s: expected [%s: %s], got %s [%s]\n", c->schema, c->path, c->reason,
                    s ? "a schema" : "NULL", all ? all : "");
    free(all);
    diag_free(&d);
    schema_free(s);
    cJSON_Delete(j);
    assert_true(ok);
}

static void test_compile_errors_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(ccases); i++)
        check_ccase(&ccases[i]);
}

static void test_compile_reports_all_problems(void **state)
{
    (void)state;
    cJSON *j = jq("{'type':'strin','properties':{'a':{'oneOf':[]},'b':{'minimum':'x'}},"
                  "'pattern':'('}");
    diag d;
    diag_init(&d, "plugin.json");
    assert_null(schema_compile(j, "s", &d));
    assert_int_equal(d.count, 4);
    assert_string_equal(d.items[0].path, "s.type");
    assert_string_equal(d.items[1].path, "s.properties.a.oneOf");
    assert_string_equal(d.items[2].path, "s.properties.b.minimum");
    assert_string_equal(d.items[3].path, "s.pattern");
    diag_free(&d);
    /* without a diag, only the result says it failed */
    assert_null(schema_compile(j, "s", NULL));
    cJSON_Delete(j);
}

static void test_compile_every_keyword(void **state)
{
    (void)state;
    schema *s = compile_ok(
        "{'$schema':'https://json-schema.org/draft/2020-12/schema','$comment':'c',"
        "'title':'t','description':'d','examples':[{}],'type':['object','null'],"
        "'required':['id'],'additionalProperties':false,'properties':{"
        "'id':{'type':'string','minLength':1,'maxLength':8,'pattern':'^[a-z]+$'},"
        "'n':{'type':'integer','minimum':0,'maximum':10,'default':3},"
        "'kind':{'enum':['a','b'],'default':'a'},'v':{'const':1},"
        "'at':{'type':'string','format':'date-time'},"
        "'tags':{'type':'array','minItems':0,'maxItems':3,'items':{'type':'string'}},"
        "'meta':{'additionalProperties':{'type':'number'}},'any':true}}");
    cJSON *ok = jq("{'id':'abc','n':4,'kind':'b','v':1,'at':'2024-05-06T07:08:09Z',"
                   "'tags':['x'],'meta':{'a':1.5},'any':[null]}");
    diag d;
    diag_init(&d, NULL);
    assert_int_equal(schema_validate(s, ok, "data", &d), EVH_OK);
    assert_int_equal(d.count, 0);
    cJSON *bad = jq("{'id':'ABCDEFGHIJ','n':11,'kind':'c','v':2,'at':'x','tags':[1,'a','b','c'],"
                    "'meta':{'a':'s'},'extra':1}");
    assert_int_equal(schema_validate(s, bad, "data", &d), EVH_E_SCHEMA);
    /* id: maxLength + pattern; n; kind; v; at; tags: maxItems + [0]; meta.a; extra */
    assert_int_equal(d.count, 10);
    diag_free(&d);
    cJSON_Delete(ok);
    cJSON_Delete(bad);
    schema_free(s);
}

/* items inside items, n levels below the root */
static cJSON *nested_items(int levels)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *cur = root;
    for (int i = 0; i < levels; i++) {
        cJSON *next = cJSON_CreateObject();
        cJSON_AddItemToObject(cur, "items", next);
        cur = next;
    }
    cJSON_AddStringToObject(cur, "type", "integer");
    return root;
}

static void test_compile_depth_bounded(void **state)
{
    (void)state;
    diag d;
    diag_init(&d, NULL);
    cJSON *fits = nested_items(EVH_JSON_MAX_DEPTH - 1);
    schema *s = schema_compile(fits, "", &d);
    assert_non_null(s);
    assert_int_equal(d.count, 0);
    schema_free(s);
    cJSON_Delete(fits);

    cJSON *deep = nested_items(EVH_JSON_MAX_DEPTH + 10);
    assert_null(schema_compile(deep, "", &d));
    assert_int_equal(d.count, 1);
    assert_true(contains(d.items[0].reason, "schema nesting too deep"));
    assert_true(contains(d.items[0].path, "items.items"));
    diag_free(&d);
    cJSON_Delete(deep);
}

/* ---- defaults ----------------------------------------------------------- */

static void test_defaults_nested(void **state)
{
    (void)state;
    schema *s = compile_ok("{'properties':{'a':{'default':1},"
                           "'b':{'type':'object','default':{},'properties':{'c':{'default':'x'}}},"
                           "'d':{'type':'object','properties':{'e':{'default':true}}},"
                           "'f':{'default':2},'g':{'type':'string'}}}");
    cJSON *inst = jq("{'f':5}");
    assert_int_equal(schema_apply_defaults(s, inst), EVH_OK);
    cJSON *want = jq("{'f':5,'a':1,'b':{'c':'x'}}");
    assert_true(cJSON_Compare(inst, want, 1));
    cJSON_Delete(want);

    /* a present object gets its own defaults; the schema's copy stays intact */
    cJSON *inst2 = jq("{'d':{},'b':{'c':'mine'}}");
    assert_int_equal(schema_apply_defaults(s, inst2), EVH_OK);
    want = jq("{'d':{'e':true},'b':{'c':'mine'},'a':1,'f':2}");
    assert_true(cJSON_Compare(inst2, want, 1));
    cJSON_Delete(want);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(inst, "b"), "c", cJSON_CreateString("changed"));
    cJSON *inst3 = jq("{}");
    assert_int_equal(schema_apply_defaults(s, inst3), EVH_OK);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(inst3, "b"), "c")->valuestring,
                        "x");

    /* not an object, no schema: nothing to do */
    cJSON *num = jq("5");
    assert_int_equal(schema_apply_defaults(s, num), EVH_OK);
    assert_true(cJSON_IsNumber(num));
    assert_int_equal(schema_apply_defaults(NULL, inst3), EVH_OK);

    cJSON_Delete(num);
    cJSON_Delete(inst);
    cJSON_Delete(inst2);
    cJSON_Delete(inst3);
    schema_free(s);
}

static void test_defaults_then_validate(void **state)
{
    (void)state;
    schema *s = compile_ok("{'required':['interval_ms'],'additionalProperties':false,"
                           "'properties':{'interval_ms':{'type':'integer','minimum':1,"
                           "'default':1000}}}");
    cJSON *inst = jq("{}");
    assert_int_equal(schema_validate(s, inst, "", NULL), EVH_E_SCHEMA);
    assert_int_equal(schema_apply_defaults(s, inst), EVH_OK);
    assert_int_equal(schema_validate(s, inst, "", NULL), EVH_OK);
    assert_int_equal(cJSON_GetObjectItem(inst, "interval_ms")->valueint, 1000);
    cJSON_Delete(inst);
    schema_free(s);
}

/* ---- schema_has_path ---------------------------------------------------- */

typedef struct pcase {
    const char *path;
    int found;
    const char *type; /* NULL: no single type */
} pcase;

static const char *const path_schema =
    "{'type':'object','additionalProperties':false,'properties':{"
    "'file_size':{'type':'integer'},'name':{'type':['string','null']},"
    "'user':{'type':'object','properties':{'name':{'type':'string'}},"
    "'additionalProperties':false},"
    "'items':{'type':'array','items':{'type':'object','properties':{'sku':{'type':'string'}}}},"
    "'tags':{'type':'array'},'meta':{},'either':{'type':['string','number']},"
    "'counts':{'additionalProperties':{'type':'number'}},'gone':false}}";

static const pcase pcases[] = {
    {"file_size", 1, "integer"},
    {"name", 1, "string"},
    {"user", 1, "object"},
    {"user.name", 1, "string"},
    {"user.age", 0, NULL},
    {"nope", 0, NULL},
    {"items[0].sku", 1, "string"},
    {"items[12].sku", 1, "string"},
    {"items[0]", 1, "object"},
    {"items[3].other", 1, NULL},
    {"items.sku", 0, NULL},
    {"file_size.x", 0, NULL},
    {"file_size[0]", 0, NULL},
    {"tags[5]", 1, NULL},
    {"tags[5].x", 1, NULL},
    {"meta.anything.deep[1]", 1, NULL},
    {"either", 1, NULL},
    {"counts.x", 1, "number"},
    {"gone", 0, NULL},
    {"", 1, "object"},
    {"items[x]", 0, NULL},
    {"items[]", 0, NULL},
    {"user..name", 0, NULL},
    {"user.", 0, NULL},
    {".user", 0, NULL},
};

static void test_has_path_table(void **state)
{
    (void)state;
    schema *s = compile_ok(path_schema);
    for (size_t i = 0; i < ARRAY_LEN(pcases); i++) {
        const char *type = "unset";
        int found = schema_has_path(s, pcases[i].path, &type);
        int ok = found == pcases[i].found &&
                 (pcases[i].type ? type && strcmp(type, pcases[i].type) == 0 : type == NULL);
        if (!ok)
            print_error("path '%s': expected %d/%s, got %d/%s\n", pcases[i].path, pcases[i].found,
                        pcases[i].type ? pcases[i].type : "NULL", found, type ? type : "NULL");
        assert_true(ok);
    }
    assert_int_equal(schema_has_path(s, "user.name", NULL), 1);
    schema_free(s);
}

static void test_has_path_open_schemas(void **state)
{
    (void)state;
    const char *type = "unset";
    assert_int_equal(schema_has_path(NULL, "a.b", &type), 1);
    assert_null(type);

    schema *s = compile_ok("{'properties':{'a':{'type':'string'}}}");
    assert_int_equal(schema_has_path(s, "a", &type), 1);
    assert_string_equal(type, "string");
    assert_int_equal(schema_has_path(s, "b", &type), 1);
    assert_null(type);
    assert_int_equal(schema_has_path(s, "a.b", &type), 0);
    schema_free(s);

    s = compile_ok("true");
    assert_int_equal(schema_has_path(s, "x[0].y", &type), 1);
    schema_free(s);
    s = compile_ok("false");
    assert_int_equal(schema_has_path(s, "x", &type), 0);
    schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate_table),
        cmocka_unit_test(test_validate_root_path_and_null),
        cmocka_unit_test(test_compile_errors_table),
        cmocka_unit_test(test_compile_reports_all_problems),
        cmocka_unit_test(test_compile_every_keyword),
        cmocka_unit_test(test_compile_depth_bounded),
        cmocka_unit_test(test_defaults_nested),
        cmocka_unit_test(test_defaults_then_validate),
        cmocka_unit_test(test_has_path_table),
        cmocka_unit_test(test_has_path_open_schemas),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
