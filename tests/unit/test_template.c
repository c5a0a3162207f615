/*
 * test_template.c - "{{ path }}" templates in step config: rendering with
 * types kept or as text, every missing value reported with its path, the
 * load-time check (syntax, roots, step order) with exact paths and reasons,
 * the output bound, and template_present.  Cases are tables; JSON in them
 * uses ' for " to stay readable.
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

#include "diag.h"
#include "evh_limits.h"
#include "template.h"

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

static int contains(const char *haystack, const char *needle)
{
    return haystack && needle && strstr(haystack, needle) != NULL;
}

/* The run context of execute.c: the envelope and finished steps' outputs. */
static const char *const CTX =
    "{'event':{'id':'evt-1','type':'file.created','source':'watcher',"
    "'metadata':{'user_id':'u-7'},"
    "'data':{'filename':'report.pdf','size':1024,'ratio':0.5,'big':12345678901,'neg':-3,"
    "'tiny':1e-7,'ok':true,'off':false,'nothing':null,'empty':'',"
    "'items':[{'sku':'A-1','qty':2},{'sku':'B-2','qty':5}],'tags':['x','y'],"
    "'meta':{'k':'v','n':[1,2]},'name':'Zo\\u00eb \\ud83d\\ude00',"
    "'braces':'{{ event.id }}','first name':'Ada','quote':'say \\'hi\\''}},"
    "'steps':{'fetch':{'output':{'status':200,'body':{'ok':true}}}}}";

/* ---- render: table ------------------------------------------------------- */

typedef struct rcase {
    const char *config;
    const char *expect; /* the rendered config, compared with types */
} rcase;

static const rcase rcases[] = {
    /* one template keeps the value's type */
    {"{'a':'{{ event.data.size }}'}", "{'a':1024}"},
    {"{'a':'{{ event.data.ratio }}'}", "{'a':0.5}"},
    {"{'a':'{{ event.data.neg }}'}", "{'a':-3}"},
    {"{'a':'{{ event.data.big }}'}", "{'a':12345678901}"},
    {"{'a':'{{ event.data.ok }}'}", "{'a':true}"},
    {"{'a':'{{ event.data.off }}'}", "{'a':false}"},
    {"{'a':'{{ event.data.nothing }}'}", "{'a':null}"},
    {"{'a':'{{ event.data.empty }}'}", "{'a':''}"},
    {"{'a':'{{ event.data.filename }}'}", "{'a':'report.pdf'}"},
    {"{'a':'{{ event.data.tags }}'}", "{'a':['x','y']}"},
    {"{'a':'{{ event.data.meta }}'}", "{'a':{'k':'v','n':[1,2]}}"},
    {"{'a':'{{ event.data.items[1].sku }}'}", "{'a':'B-2'}"},
    {"{'a':'{{ event.data.items[0] }}'}", "{'a':{'sku':'A-1','qty':2}}"},
    {"{'a':'{{ event.data.meta.n[1] }}'}", "{'a':2}"},
    {"{'a':'{{ event.id }}'}", "{'a':'evt-1'}"},
    {"{'a':'{{ event.metadata.user_id }}'}", "{'a':'u-7'}"},
    {"{'a':'{{ steps.fetch.output.status }}'}", "{'a':200}"},
    {"{'a':'{{ steps.fetch.output.body }}'}", "{'a':{'ok':true}}"},
    {"{'a':'{{ steps.fetch }}'}", "{'a':{'output':{'status':200,'body':{'ok':true}}}}"},
    {"{'a':'{{ event.data.first name }}'}", "{'a':'Ada'}"},
    /* whitespace inside the braces is ignored */
    {"{'a':'{{event.data.size}}'}", "{'a':1024}"},
    {"{'a':'{{   event.data.size   }}'}", "{'a':1024}"},
    {"{'a':'{{\\tevent.data.size\\n}}'}", "{'a':1024}"},
    {"{'a':'{{ \\r\\n event.data.size \\t }}'}", "{'a':1024}"},
    {"{'a':'x{{event.data.size}}y'}", "{'a':'x1024y'}"},
    /* text around or several templates: a string */
    {"{'a':'file {{ event.data.filename }} has {{ event.data.size }} bytes'}",
     "{'a':'file report.pdf has 1024 bytes'}"},
    {"{'a':' {{ event.data.size }}'}", "{'a':' 1024'}"},
    {"{'a':'{{ event.data.size }} '}", "{'a':'1024 '}"},
    {"{'a':'{{ event.data.size }}{{ event.data.size }}'}", "{'a':'10241024'}"},
    {"{'a':'{{ event.data.filename }}{{ event.id }}'}", "{'a':'report.pdfevt-1'}"},
    {"{'a':'n={{ event.data.size }}'}", "{'a':'n=1024'}"},
    {"{'a':'r={{ event.data.ratio }}'}", "{'a':'r=0.5'}"},
    {"{'a':'n={{ event.data.neg }}'}", "{'a':'n=-3'}"},
    {"{'a':'n={{ event.data.big }}'}", "{'a':'n=12345678901'}"},
    {"{'a':'n={{ event.data.tiny }}'}", "{'a':'n=1e-07'}"},
    {"{'a':'b={{ event.data.ok }},{{ event.data.off }}'}", "{'a':'b=true,false'}"},
    {"{'a':'v={{ event.data.nothing }}'}", "{'a':'v=null'}"},
    {"{'a':'e=[{{ event.data.empty }}]'}", "{'a':'e=[]'}"},
    {"{'a':'m={{ event.data.meta }}'}", "{'a':'m={\\'k\\':\\'v\\',\\'n\\':[1,2]}'}"},
    {"{'a':'t={{ event.data.tags }}'}", "{'a':'t=[\\'x\\',\\'y\\']'}"},
    {"{'a':'q={{ event.data.quote }}'}", "{'a':'q=say \\'hi\\''}"},
    {"{'a':'s={{ steps.fetch.output.body }}'}", "{'a':'s={\\'ok\\':true}'}"},
    /* unicode in values and around templates */
    {"{'a':'hi {{ event.data.name }}!'}", "{'a':'hi Zo\\u00eb \\ud83d\\ude00!'}"},
    {"{'a':'{{ event.data.name }}'}", "{'a':'Zo\\u00eb \\ud83d\\ude00'}"},
    {"{'a':'\\u00fc {{ event.id }} \\u2713'}", "{'a':'\\u00fc evt-1 \\u2713'}"},
    /* values are inserted, never rendered again */
    {"{'a':'{{ event.data.braces }}'}", "{'a':'{{ event.id }}'}"},
    {"{'a':'x {{ event.data.braces }}'}", "{'a':'x {{ event.id }}'}"},
    /* keys are never rendered; strings without templates are kept */
    {"{'{{ event.id }}':'v'}", "{'{{ event.id }}':'v'}"},
    {"{'a':'a }} b','b':'{ {','c':'}}{{ event.id }}'}", "{'a':'a }} b','b':'{ {','c':'}}evt-1'}"},
    {"{'a':'{{ event.id }}}'}", "{'a':'evt-1}'}"},
    /* nested objects and arrays in the config */
    {"{'headers':{'X-User':'{{ event.metadata.user_id }}','n':1},"
     "'list':['{{ event.data.size }}','lit',{'deep':['{{ event.data.ok }}', 'id {{ event.id }}']}],"
     "'keep':null,'num':5.5,'b':false,'empty':{},'none':[]}",
     "{'headers':{'X-User':'u-7','n':1},"
     "'list':[1024,'lit',{'deep':[true,'id evt-1']}],"
     "'keep':null,'num':5.5,'b':false,'empty':{},'none':[]}"},
    {"{}", "{}"},
    /* any JSON at the root */
    {"'{{ event.data.size }}'", "1024"},
    {"['{{ event.data.tags }}','{{ event.data.items[0].qty }}']", "[['x','y'],2]"},
    {"'plain'", "'plain'"},
    {"7", "7"},
};

static void check_rcase(const rcase *c, const cJSON *ctx)
{
    cJSON *config = jq(c->config);
    cJSON *before = cJSON_Duplicate(config, 1);
    cJSON *expect = jq(c->expect);
    diag d;
    diag_init(&d, NULL);
    cJSON *out = template_render(config, ctx, &d);
    int ok = out && d.count == 0 && cJSON_Compare(out, expect, 1) &&
             cJSON_Compare(config, before, 1);
    if (!ok) {
        char *got = out ? cJSON_PrintUnformatted(out) : NULL;
        char *all = diag_join(&d);
        print_error("render %s: expected %s, got %s [%s]\n", c->config, c->expect,
                    got ? got : "NULL", all ? all : "");
        free(got);
        free(all);
    }
    diag_free(&d);
    cJSON_Delete(out);
    cJSON_Delete(expect);
    cJSON_Delete(before);
    cJSON_Delete(config);
    assert_true(ok);
}

static void test_render_table(void **state)
{
    (void)state;
    cJSON *ctx = jq(CTX);
    for (size_t i = 0; i < ARRAY_LEN(rcases); i++)
        check_rcase(&rcases[i], ctx);
    cJSON_Delete(ctx);
}

/* The result owns its values: it outlives the context and the config, and
 * a copied value carries no stale key name from where it came from. */
static void test_render_result_is_independent(void **state)
{
    (void)state;
    cJSON *ctx = jq(CTX);
    cJSON *config = jq("{'m':'{{ event.data.meta }}','l':['{{ event.data.size }}'],"
                       "'r':'{{ event.data.filename }}'}");
    diag d;
    diag_init(&d, NULL);
    cJSON *out = template_render(config, ctx, &d);
    assert_non_null(out);
    cJSON_Delete(ctx);
    cJSON_Delete(config);
    cJSON *m = cJSON_GetObjectItemCaseSensitive(out, "m");
    assert_string_equal(m->string, "m");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(m, "k")->valuestring, "v");
    cJSON *l0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(out, "l"), 0);
    assert_null(l0->string);
    assert_int_equal(l0->valueint, 1024);
    char *text = cJSON_PrintUnformatted(out);
    assert_string_equal(text, "{\"m\":{\"k\":\"v\",\"n\":[1,2]},\"l\":[1024],\"r\":\"report.pdf\"}");
    free(text);
    cJSON_Delete(out);

    ctx = jq(CTX);
    config = jq("'{{ event.data.size }}'");
    out = template_render(config, ctx, &d);
    assert_non_null(out);
    assert_null(out->string);
    assert_true(cJSON_IsNumber(out));
    assert_int_equal(d.count, 0);
    cJSON_Delete(out);
    cJSON_Delete(config);
    cJSON_Delete(ctx);
    diag_free(&d);
}

/* ---- render: missing values and bad templates ---------------------------- */

typedef struct problem {
    const char *path;
    const char *reason; /* exact when full, else a substring */
} problem;

typedef struct mcase {
    const char *config;
    int exact; /* reasons are compared whole */
    size_t count;
    problem p[4];
} mcase;

static const mcase mcases[] = {
    {"{'message':'{{ event.data.nope }}'}",
     1,
     1,
     {{"message", "{{ event.data.nope }}: event.data.nope is missing"}}},
    {"{'message':'{{event.data.nope}}'}",
     1,
     1,
     {{"message", "{{ event.data.nope }}: event.data.nope is missing"}}},
    /* every missing template is reported, in document order */
    {"{'message':'{{ event.data.nope }}',"
     "'headers':{'X':'a {{ event.data.gone }} b {{ steps.fetch.output.missing }}'},"
     "'list':['ok','{{ event.data.items[5].sku }}']}",
     1,
     4,
     {{"message", "{{ event.data.nope }}: event.data.nope is missing"},
      {"headers.X", "{{ event.data.gone }}: event.data.gone is missing"},
      {"headers.X", "{{ steps.fetch.output.missing }}: steps.fetch.output.missing is missing"},
      {"list[1]", "{{ event.data.items[5].sku }}: event.data.items[5].sku is missing"}}},
    {"{'a':{'b':[{'c':'{{ steps.later.output.x }}'}]}}",
     1,
     1,
     {{"a.b[0].c", "{{ steps.later.output.x }}: steps.later.output.x is missing"}}},
    /* wrong shape on the way is missing too */
    {"{'a':'{{ event.data.meta[0] }}'}", 0, 1, {{"a", "event.data.meta[0] is missing"}}},
    {"{'a':'{{ event.data.tags.x }}'}", 0, 1, {{"a", "event.data.tags.x is missing"}}},
    {"{'a':'{{ event.data.size.x }}'}", 0, 1, {{"a", "event.data.size.x is missing"}}},
    {"{'a':'{{ event.data.items[2] }}'}", 0, 1, {{"a", "event.data.items[2] is missing"}}},
    {"{'a':'{{ Event.id }}'}", 0, 1, {{"a", "Event.id is missing"}}},
    /* render refuses what the check refuses for syntax */
    {"{'a':'{{ event..x }}'}", 0, 1, {{"a", "{{ event..x }}: malformed path"}}},
    {"{'a':'x {{ }}'}", 0, 1, {{"a", "{{ }}: empty template"}}},
    {"{'a':'x {{ event.id'}", 0, 1, {{"a", "{{ event.id: unterminated template"}}},
    {"{'a':'{{ event.id }} {{ event.nope }} {{ event.id'}",
     0,
     2,
     {{"a", "event.nope is missing"}, {"a", "unterminated template"}}},
    /* the root string of the config has the empty path */
    {"'{{ event.nope }}'", 1, 1, {{"", "{{ event.nope }}: event.nope is missing"}}},
};

static int problem_ok(const diag *d, size_t i, const problem *p, int exact)
{
    return !strcmp(d->items[i].path, p->path) &&
           (exact ? !strcmp(d->items[i].reason, p->reason) : contains(d->items[i].reason, p->reason));
}

static void expect_problems(const char *what, const char *config, const diag *d, size_t count,
                            const problem *p, int exact)
{
    int ok = d->count == count;
    for (size_t i = 0; ok && i < count; i++)
        ok = problem_ok(d, i, &p[i], exact);
    if (!ok) {
        char *all = diag_join(d);
        print_error("%s %s: expected %zu problems, first [%s: %s], got %zu [%s]\n", what, config,
                    count, count ? p[0].path : "", count ? p[0].reason : "", d->count,
                    all ? all : "");
        free(all);
    }
    assert_true(ok);
}

static void test_render_missing_table(void **state)
{
    (void)state;
    cJSON *ctx = jq(CTX);
    for (size_t i = 0; i < ARRAY_LEN(mcases); i++) {
        const mcase *c = &mcases[i];
        cJSON *config = jq(c->config);
        diag d;
        diag_init(&d, NULL);
        cJSON *out = template_render(config, ctx, &d);
        if (out)
            print_error("render %s should fail\n", c->config);
        assert_null(out);
        expect_problems("render", c->config, &d, c->count, c->p, c->exact);
        diag_free(&d);
        cJSON_Delete(config);
    }
    cJSON_Delete(ctx);
}

/* Without a context (or without the part named) every template is missing,
 * and problems already in d are kept. */
static void test_render_without_context(void **state)
{
    (void)state;
    cJSON *config = jq("{'a':'{{ event.id }}','b':'static','c':'x {{ steps.s.output }}'}");
    diag d;
    diag_init(&d, NULL);
    diag_add(&d, "earlier", "an earlier problem");
    assert_null(template_render(config, NULL, &d));
    assert_int_equal(d.count, 3);
    assert_string_equal(d.items[0].reason, "an earlier problem");
    assert_string_equal(d.items[1].path, "a");
    assert_string_equal(d.items[1].reason, "{{ event.id }}: event.id is missing");
    assert_string_equal(d.items[2].path, "c");
    diag_free(&d);

    /* a config without templates needs no context */
    cJSON *plain = jq("{'a':[1,'x',{'b':null}]}");
    diag_init(&d, NULL);
    cJSON *out = template_render(plain, NULL, &d);
    assert_non_null(out);
    assert_true(cJSON_Compare(out, plain, 1));
    assert_int_equal(d.count, 0);
    cJSON_Delete(out);
    cJSON_Delete(plain);

    assert_null(template_render(NULL, NULL, &d));
    assert_int_equal(d.count, 1);
    diag_free(&d);
    cJSON_Delete(config);
}

/* ---- render: the output bound -------------------------------------------- */

static cJSON *ctx_with_string(size_t len)
{
    char *s = malloc(len + 1);
    assert_non_null(s);
    memset(s, 'x', len);
    s[len] = '\0';
    cJSON *ctx = cJSON_CreateObject();
    cJSON *data = cJSON_AddObjectToObject(cJSON_AddObjectToObject(ctx, "event"), "data");
    assert_non_null(cJSON_AddStringToObject(data, "s", s));
    free(s);
    return ctx;
}

/* Renders config against a context whose event.data.s has len bytes;
 * returns the rendered string's length or -1 (with *problems set). */
static long render_len(size_t len, const char *config_text, size_t *problems, char **first)
{
    cJSON *ctx = ctx_with_string(len);
    cJSON *config = jq(config_text);
    diag d;
    diag_init(&d, NULL);
    cJSON *out = template_render(config, ctx, &d);
    long n = out ? (long)strlen(cJSON_GetObjectItemCaseSensitive(out, "a")->valuestring) : -1;
    *problems = d.count;
    *first = d.count ? strdup(d.items[0].reason) : NULL;
    if (d.count)
        assert_string_equal(d.items[0].path, "a");
    diag_free(&d);
    cJSON_Delete(out);
    cJSON_Delete(config);
    cJSON_Delete(ctx);
    return n;
}

static void test_render_output_bound(void **state)
{
    (void)state;
    const size_t max = TEMPLATE_MAX_OUTPUT_BYTES;
    assert_int_equal(max, 1024 * 1024);
    size_t problems;
    char *first;

    /* exactly at the bound is fine, one byte more is not: mixed text */
    assert_int_equal(render_len(max - 1, "{'a':'x{{ event.data.s }}'}", &problems, &first),
                     (long)max);
    assert_int_equal(problems, 0);
    assert_int_equal(render_len(max, "{'a':'x{{ event.data.s }}'}", &problems, &first), -1);
    assert_int_equal(problems, 1);
    assert_true(contains(first, "rendered text is longer than 1048576 bytes"));
    free(first);

    /* ... and a single template giving a string */
    assert_int_equal(render_len(max, "{'a':'{{ event.data.s }}'}", &problems, &first),
                     (long)max);
    assert_int_equal(render_len(max + 1, "{'a':'{{ event.data.s }}'}", &problems, &first), -1);
    assert_true(contains(first, "longer than 1048576 bytes"));
    free(first);

    /* many small parts add up; later missing values are still reported */
    assert_int_equal(render_len(max / 2 + 1,
                                "{'a':'{{ event.data.s }}{{ event.data.s }}{{ event.nope }}'}",
                                &problems, &first),
                     -1);
    assert_int_equal(problems, 2);
    assert_true(contains(first, "event.nope is missing"));
    free(first);
}

/* ---- check --------------------------------------------------------------- */

/* The steps of a workflow, checked as the step at index CURRENT ("me"). */
static const char *const STEP_IDS[] = {"fetch", "parse", "api.v2", "me", "later", NULL};
#define CURRENT 3

static int step_known(void *ud, const char *step_id)
{
    int *calls = ud;
    (*calls)++;
    for (int i = 0; STEP_IDS[i]; i++)
        if (!strcmp(STEP_IDS[i], step_id))
            return i < CURRENT ? 1 : -1;
    return 0;
}

typedef struct ccase {
    const char *config;
    const char *where;
    int exact;
    size_t count;
    problem p[4];
} ccase;

#define W "steps[1].with"

static const ccase ccases[] = {
    /* everything valid */
    {"{'a':'{{ event.data.x }}','b':'{{ steps.fetch.output.y }}','c':'lit','d':5,"
     "'e':'{{event}}','f':'{{ event.id }} and {{ steps.parse.output }}','g':'{{ steps.fetch }}',"
     "'h':'{{ event.data.first name }}','i':'a }} b','j':'{{ event[0] }}','k':[null,true,{}],"
     "'l':'{{ event.metadata.user_id }}','m':'{{ steps.fetch.output.items[0].sku }}',"
     "'{{ foo }}':'keys are not templates'}",
     W,
     0,
     0,
     {{NULL, NULL}}},
    /* roots */
    {"{'message':'{{ foo.bar }}'}",
     W,
     1,
     1,
     {{W ".message", "{{ foo.bar }}: unknown root 'foo' (use event.… or steps.<id>.…)"}}},
    {"{'message':'x {{foo.bar}} y'}",
     W,
     1,
     1,
     {{W ".message", "{{ foo.bar }}: unknown root 'foo' (use event.… or steps.<id>.…)"}}},
    {"{'a':'{{ Event.id }}'}", W, 0, 1, {{W ".a", "unknown root 'Event'"}}},
    {"{'a':'{{ events.id }}'}", W, 0, 1, {{W ".a", "unknown root 'events'"}}},
    {"{'a':'{{ evenx.id }}'}", W, 0, 1, {{W ".a", "unknown root 'evenx'"}}},
    {"{'a':'{{ stepz.x }}'}", W, 0, 1, {{W ".a", "unknown root 'stepz'"}}},
    {"{'a':'{{ step.x.output }}'}", W, 0, 1, {{W ".a", "unknown root 'step'"}}},
    {"{'a':'{{ data }}'}", W, 0, 1, {{W ".a", "{{ data }}: unknown root 'data'"}}},
    {"{'a':'{{ data[0] }}'}", W, 0, 1, {{W ".a", "unknown root 'data'"}}},
    {"{'a':'{{ [0] }}'}", W, 0, 1, {{W ".a", "{{ [0] }}: a template starts with event"}}},
    /* step order */
    {"{'a':'{{ steps.later.output.y }}'}",
     W,
     1,
     1,
     {{W ".a", "{{ steps.later.output.y }}: step 'later' runs later than this step (or is this "
               "step); a template can only read earlier steps"}}},
    {"{'a':'{{ steps.me.output }}'}", W, 0, 1, {{W ".a", "step 'me' runs later than this step"}}},
    {"{'a':'{{ steps.nosuch.output.y }}'}",
     W,
     1,
     1,
     {{W ".a", "{{ steps.nosuch.output.y }}: no step 'nosuch' in this workflow"}}},
    {"{'a':'{{ steps.Fetch.output }}'}", W, 0, 1, {{W ".a", "no step 'Fetch' in this workflow"}}},
    {"{'a':'{{ steps.api.v2.output.x }}'}",
     W,
     0,
     1,
     {{W ".a", "step 'api.v2' cannot be named in a template because its id contains '.'"}}},
    {"{'a':'{{ steps }}'}", W, 0, 1, {{W ".a", "{{ steps }}: name a step: steps.<id>.output"}}},
    {"{'a':'{{ steps[0].output }}'}", W, 0, 1, {{W ".a", "name a step"}}},
    {"{'a':'{{ steps.[0] }}'}", W, 0, 1, {{W ".a", "name a step"}}},
    /* syntax */
    {"{'a':'{{}}'}", W, 0, 1, {{W ".a", "{{}}: empty template"}}},
    {"{'a':'x {{   }} y'}", W, 0, 1, {{W ".a", "{{   }}: empty template"}}},
    {"{'a':'{{ event..x }}'}", W, 0, 1, {{W ".a", "{{ event..x }}: malformed path"}}},
    {"{'a':'{{ event.data. }}'}", W, 0, 1, {{W ".a", "malformed path"}}},
    {"{'a':'{{ .event }}'}", W, 0, 1, {{W ".a", "malformed path"}}},
    {"{'a':'{{ event.items[x] }}'}", W, 0, 1, {{W ".a", "malformed path"}}},
    {"{'a':'{{ event.items[-1] }}'}", W, 0, 1, {{W ".a", "malformed path"}}},
    {"{'a':'{{ event.items[] }}'}", W, 0, 1, {{W ".a", "malformed path"}}},
    {"{'a':'{{ event.items[0 }}'}", W, 0, 1, {{W ".a", "malformed path"}}},
    {"{'a':'{{ event.a[0]b }}'}", W, 0, 1, {{W ".a", "malformed path"}}},
    {"{'a':'{{ event.a} }}'}", W, 0, 1, {{W ".a", "{{ event.a} }}: malformed path"}}},
    {"{'a':'{{ {{ event.x }} }}'}", W, 0, 1, {{W ".a", "{{ {{ event.x }}: malformed path"}}},
    {"{'a':'{{ event.a {{ event.b }}'}", W, 0, 1, {{W ".a", "malformed path"}}},
    {"{'a':'hello {{ event.data.x'}",
     W,
     1,
     1,
     {{W ".a", "{{ event.data.x: unterminated template: no closing \"}}\" (a literal \"{{\" "
               "cannot be written)"}}},
    {"{'a':'{{ event.x }} and {{ event.y'}", W, 0, 1, {{W ".a", "{{ event.y: unterminated"}}},
    {"{'a':'{{'}", W, 0, 1, {{W ".a", "{{: unterminated template"}}},
    {"{'a':'x }} {{ event.x }'}", W, 0, 1, {{W ".a", "unterminated template"}}},
    /* every problem of a string, in order */
    {"{'a':'{{ foo }} {{ steps.later.output }} {{ }} {{ event.id }} {{ event.x'}",
     W,
     0,
     4,
     {{W ".a", "unknown root 'foo'"},
      {W ".a", "step 'later' runs later"},
      {W ".a", "empty template"},
      {W ".a", "unterminated template"}}},
    /* every problem of the config, with array and nested paths */
    {"{'headers':{'Authorization':'Bearer {{ secrets.token }}'},"
     "'list':['ok','{{ steps.nope.output }}',{'x':['{{ event..y }}']}],'fine':'{{ event.id }}'}",
     W,
     0,
     3,
     {{W ".headers.Authorization", "{{ secrets.token }}: unknown root 'secrets'"},
      {W ".list[1]", "no step 'nope'"},
      {W ".list[2].x[0]", "malformed path"}}},
    /* where is only a prefix */
    {"{'message':'{{ foo }}'}", "", 0, 1, {{"message", "unknown root 'foo'"}}},
    {"{'a':{'b':'{{ foo }}'}}", "with", 0, 1, {{"with.a.b", "unknown root 'foo'"}}},
    {"['{{ foo }}']", "x", 0, 1, {{"x[0]", "unknown root 'foo'"}}},
    {"'{{ foo }}'", W, 0, 1, {{W, "unknown root 'foo'"}}},
};

static void test_check_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(ccases); i++) {
        const ccase *c = &ccases[i];
        cJSON *config = jq(c->config);
        diag d;
        diag_init(&d, NULL);
        int calls = 0;
        int n = template_check(config, c->where, step_known, &calls, &d);
        expect_problems("check", c->config, &d, c->count, c->p, c->exact);
        assert_int_equal(n, (int)c->count);
        diag_free(&d);
        cJSON_Delete(config);
    }
}

/* The count is what this call added; earlier items stay; a NULL `where`
 * means no prefix; a NULL callback accepts every step. */
static void test_check_counts_and_defaults(void **state)
{
    (void)state;
    cJSON *config = jq("{'a':'{{ foo }}','b':'{{ steps.anything.output }}'}");
    diag d;
    diag_init(&d, NULL);
    diag_add(&d, "x", "earlier");
    assert_int_equal(template_check(config, NULL, NULL, NULL, &d), 1);
    assert_int_equal(d.count, 2);
    assert_string_equal(d.items[1].path, "a");
    diag_free(&d);

    diag_init(&d, NULL);
    int calls = 0;
    assert_int_equal(template_check(config, "w", step_known, &calls, &d), 2);
    assert_true(calls > 0); /* ud reaches the callback */
    assert_string_equal(d.items[1].path, "w.b");
    assert_true(contains(d.items[1].reason, "no step 'anything'"));
    diag_free(&d);

    diag_init(&d, NULL);
    assert_int_equal(template_check(NULL, "w", step_known, &calls, &d), 0);
    cJSON *num = cJSON_CreateNumber(3);
    assert_int_equal(template_check(num, "w", step_known, &calls, &d), 0);
    assert_int_equal(d.count, 0);
    cJSON_Delete(num);
    diag_free(&d);
    cJSON_Delete(config);
}

/* One pass reports every problem, however many there are. */
static void test_check_reports_all(void **state)
{
    (void)state;
    cJSON *config = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(config, "list");
    for (int i = 0; i < 50; i++)
        cJSON_AddItemToArray(list, cJSON_CreateString(i % 2 ? "{{ nope }}" : "a {{ event. }}"));
    diag d;
    diag_init(&d, NULL);
    int calls = 0;
    assert_int_equal(template_check(config, "steps[0].with", step_known, &calls, &d), 50);
    assert_int_equal(d.count, 50);
    assert_string_equal(d.items[0].path, "steps[0].with.list[0]");
    assert_string_equal(d.items[49].path, "steps[0].with.list[49]");
    assert_true(contains(d.items[49].reason, "unknown root 'nope'"));
    diag_free(&d);
    cJSON_Delete(config);
}

static int utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2
                                : (*p & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0)
            return 0;
        p++;
        for (int i = 0; i < n; i++, p++)
            if ((*p & 0xC0) != 0x80)
                return 0;
    }
    return 1;
}

/* A long template is quoted shortened, and never cut inside a character. */
static void test_check_long_templates_quoted_short(void **state)
{
    (void)state;
    char path[512] = "foo.x";
    for (int i = 0; i < 100; i++)
        strcat(path, "\xc3\xa9"); /* é: two bytes, so 80 falls inside one */
    char tpl[600];
    snprintf(tpl, sizeof tpl, "{{ %s }}", path);
    cJSON *config = cJSON_CreateObject();
    cJSON_AddStringToObject(config, "a", tpl);
    char open[600];
    snprintf(open, sizeof open, "{{ event.%s", path + 4);
    cJSON_AddStringToObject(config, "b", open);
    diag d;
    diag_init(&d, NULL);
    int calls = 0;
    assert_int_equal(template_check(config, "", step_known, &calls, &d), 2);
    for (size_t i = 0; i < 2; i++) {
        assert_true(strlen(d.items[i].reason) < 250);
        assert_true(contains(d.items[i].reason, "…"));
        assert_true(utf8_valid(d.items[i].reason));
    }
    assert_true(contains(d.items[0].reason, "unknown root 'foo'"));
    assert_true(contains(d.items[1].reason, "unterminated template"));
    diag_free(&d);
    cJSON_Delete(config);
}

/* What passes the check renders; the check and render read alike. */
static void test_checked_config_renders(void **state)
{
    (void)state;
    cJSON *ctx = jq(CTX);
    cJSON *config = jq("{'url':'https://x/{{ event.data.items[0].sku }}?u={{event.metadata.user_id}}',"
                       "'size':'{{ event.data.size }}','prev':'{{ steps.fetch.output.status }}'}");
    diag d;
    diag_init(&d, NULL);
    int calls = 0;
    assert_int_equal(template_check(config, "steps[3].with", step_known, &calls, &d), 0);
    cJSON *out = template_render(config, ctx, &d);
    assert_non_null(out);
    assert_int_equal(d.count, 0);
    cJSON *expect = jq("{'url':'https://x/A-1?u=u-7','size':1024,'prev':200}");
    assert_true(cJSON_Compare(out, expect, 1));
    cJSON_Delete(expect);
    cJSON_Delete(out);
    diag_free(&d);
    cJSON_Delete(config);
    cJSON_Delete(ctx);
}

/* ---- template_present ---------------------------------------------------- */

typedef struct pcase {
    const char *config;
    int present;
} pcase;

static const pcase pcases[] = {
    {"{}", 0},
    {"{'a':'x','b':1,'c':null,'d':true,'e':[]}", 0},
    {"{'a':'{{ event.x }}'}", 1},
    {"{'a':'text {{ event.x }} text'}", 1},
    {"{'a':{'b':['x','y {{ z']}}", 1},
    {"{'a':[1,{'b':[{'c':'{{'}]}]}", 1},
    {"{'{{ k }}':'v'}", 0},
    {"{'a':'{ {','b':'}}','c':'{}'}", 0},
    {"{'a':'x{{'}", 1},
    {"'{{ event.x }}'", 1},
    {"'plain'", 0},
    {"[1,true,null,'s']", 0},
    {"['s','{{ a }}']", 1},
};

static void test_present_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(pcases); i++) {
        cJSON *config = jq(pcases[i].config);
        int got = template_present(config);
        if (got != pcases[i].present)
            print_error("present %s: expected %d, got %d\n", pcases[i].config,
                        pcases[i].present, got);
        assert_int_equal(got, pcases[i].present);
        cJSON_Delete(config);
    }
    assert_int_equal(template_present(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_table),
        cmocka_unit_test(test_render_result_is_independent),
        cmocka_unit_test(test_render_missing_table),
        cmocka_unit_test(test_render_without_context),
        cmocka_unit_test(test_render_output_bound),
        cmocka_unit_test(test_check_table),
        cmocka_unit_test(test_check_counts_and_defaults),
        cmocka_unit_test(test_check_reports_all),
        cmocka_unit_test(test_check_long_templates_quoted_short),
        cmocka_unit_test(test_checked_config_renders),
        cmocka_unit_test(test_present_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
