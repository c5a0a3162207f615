/*
 * test_manifest.c - plugin.json validation: the good manifests fill every
 * field, each bad one gives exactly the problems listed in
 * tests/data/manifests/bad/EXPECTED (path and reason, all in one pass), and
 * hostile input (garbage, empty, deep, huge) gives one clean problem.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <evhost/evhost.h>

#include "diag.h"
#include "evh_limits.h"
#include "manifest.h"
#include "schema.h"
#include "testutil.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define GOOD_DIR EVH_TEST_DATA_DIR "/manifests/good"
#define BAD_DIR EVH_TEST_DATA_DIR "/manifests/bad"

/* ---- helpers ------------------------------------------------------------- */

static manifest *load_good(const char *name)
{
    char *path = tu_join(GOOD_DIR, name);
    diag d;
    diag_init(&d, path);
    manifest *m = NULL;
    int rc = manifest_load(path, &m, &d);
    if (rc != EVH_OK)
        diag_print(&d, stderr);
    assert_int_equal(rc, EVH_OK);
    assert_int_equal(d.count, 0);
    assert_non_null(m);
    assert_string_equal(m->path, path);
    diag_free(&d);
    free(path);
    return m;
}

/* Parse a text that must fail; returns the problems (file-less). */
static diag parse_bad(const char *text, size_t len, int want_rc)
{
    diag d;
    diag_init(&d, NULL);
    static manifest sentinel;
    manifest *m = &sentinel; /* must be reset to NULL */
    int rc = manifest_parse(text, len, "plugin.json", &m, &d);
    assert_int_equal(rc, want_rc);
    assert_null(m);
    assert_null(d.file);
    return d;
}

static void assert_one_problem(const diag *d, const char *path, const char *reason_prefix)
{
    if (d->count != 1)
        diag_print(d, stderr);
    assert_int_equal(d->count, 1);
    assert_string_equal(d->items[0].path, path);
    if (strncmp(d->items[0].reason, reason_prefix, strlen(reason_prefix)) != 0)
        fail_msg("reason \"%s\" does not start with \"%s\"", d->items[0].reason, reason_prefix);
}

static cJSON *jparse(const char *text)
{
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    return j;
}

/* A valid event-source manifest with `extra` (",\"key\": value" or "")
 * appended to the top-level object. */
static char *manifest_text(const char *id_json, const char *extra)
{
    char *out = NULL;
    int n = asprintf(&out,
                     "{\"type\": \"event-source\", \"id\": %s, \"name\": \"N\", "
                     "\"description\": \"D\", \"version\": \"1.0.0\", \"abi\": \"1.0\", "
                     "\"eventTypes\": [{\"type\": \"t\", \"label\": \"T\", "
                     "\"description\": \"TD\"}]%s}",
                     id_json, extra);
    assert_true(n > 0);
    return out;
}

/* ---- good manifests ------------------------------------------------------ */

static void test_good_my_timer(void **state)
{
    (void)state;
    manifest *m = load_good("my-timer.json");
    assert_int_equal(m->kind, EVH_KIND_SOURCE);
    assert_string_equal(m->id, "my-timer");
    assert_string_equal(m->name, "My Timer");
    assert_string_equal(m->description, "Fires on schedule");
    assert_string_equal(m->version, "1.0.0");
    assert_int_equal(m->abi_major, 1);
    assert_int_equal(m->abi_minor, 0);
    assert_string_equal(m->library, "my-timer.so"); /* "<id>.so" by default */
    assert_true(m->active);
    assert_null(m->webhook_endpoint);
    assert_null(m->config_schema_json);
    assert_null(m->config_schema);
    assert_non_null(m->json);
    assert_int_equal(m->n_event_types, 1);
    const manifest_event_type *t = &m->event_types[0];
    assert_string_equal(t->type, "timer_fired");
    assert_string_equal(t->label, "Timer Fired");
    assert_string_equal(t->description, "Every minute, on the minute");
    assert_non_null(t->schema_json);
    assert_non_null(t->schema);

    /* the compiled schema is the one written in the file */
    diag d;
    diag_init(&d, NULL);
    cJSON *ok = jparse("{\"fired_at\": \"2025-11-19T10:30:00Z\", \"timer_id\": \"default\"}");
    cJSON *bad = jparse("{\"fired_at\": 3}");
    assert_int_equal(schema_validate(t->schema, ok, "data", &d), EVH_OK);
    assert_int_equal(schema_validate(t->schema, bad, "data", &d), EVH_E_SCHEMA);
    assert_int_equal(d.count, 1);
    assert_string_equal(d.items[0].path, "data.fired_at");
    cJSON_Delete(ok);
    cJSON_Delete(bad);
    diag_free(&d);
    manifest_free(m);
}

static void test_good_workflow_step(void **state)
{
    (void)state;
    manifest *m = load_good("workflow-step.json");
    assert_int_equal(m->kind, EVH_KIND_STEP);
    assert_string_equal(m->id, "send-report");
    assert_string_equal(m->version, "0.3.1");
    assert_string_equal(m->library, "libsend_report.so");
    assert_true(m->active);
    assert_int_equal(m->n_event_types, 0); /* a step need not emit anything */
    assert_null(m->event_types);
    assert_non_null(m->config_schema_json);
    assert_non_null(m->config_schema);
    assert_ptr_equal(m->config_schema_json, cJSON_GetObjectItemCaseSensitive(m->json, "configSchema"));
    manifest_free(m);
}

static void test_good_config_defaults(void **state)
{
    (void)state;
    manifest *m = load_good("config-defaults.json");
    assert_int_equal(m->kind, EVH_KIND_SOURCE);
    assert_string_equal(m->id, "folder-watch");
    assert_non_null(m->config_schema);
    assert_non_null(m->event_types[0].schema);

    cJSON *config = cJSON_CreateObject();
    assert_int_equal(schema_apply_defaults(m->config_schema, config), EVH_OK);
    char *text = cJSON_PrintUnformatted(config);
    assert_string_equal(text, "{\"folder\":\"/var/spool/incoming\",\"interval_ms\":5000,"
                              "\"recursive\":false,\"filter\":{\"suffix\":\".pdf\"}}");
    free(text);
    cJSON_Delete(config);
    manifest_free(m);
}

static void test_good_all_fields(void **state)
{
    (void)state;
    manifest *m = load_good("all-fields.json");
    assert_string_equal(m->id, "billing-hooks-2");
    assert_string_equal(m->description, ""); /* required, but may be empty */
    assert_string_equal(m->version, "1.0.0-rc.1+build.20240601");
    assert_int_equal(m->abi_major, 1);
    assert_int_equal(m->abi_minor, 3);
    assert_string_equal(m->library, "billing.so");
    assert_string_equal(m->webhook_endpoint, "/api/billing-hooks");
    assert_false(m->active);
    assert_non_null(m->config_schema);
    assert_int_equal(m->n_event_types, 3);
    assert_string_equal(m->event_types[0].type, "billing.invoice_paid");
    assert_non_null(m->event_types[0].schema);
    assert_non_null(m->event_types[1].schema); /* "schema": true */
    assert_null(m->event_types[2].schema);
    assert_null(m->event_types[2].schema_json);

    assert_ptr_equal(manifest_find_type(m, "refund_2"), &m->event_types[2]);
    assert_ptr_equal(manifest_find_type(m, "billing.invoice_overdue"), &m->event_types[1]);
    assert_null(manifest_find_type(m, "billing"));
    assert_null(manifest_find_type(m, "REFUND_2"));
    assert_null(manifest_find_type(m, NULL));
    assert_null(manifest_find_type(NULL, "refund_2"));
    manifest_free(m);
}

/* The loader's fixture plugins must stay valid manifests. */
static void test_fixture_plugins_are_valid(void **state)
{
    (void)state;
    const char *dir = EVH_TEST_DATA_DIR "/../plugins";
    DIR *dh = opendir(dir);
    assert_non_null(dh);
    int seen = 0;
    for (struct dirent *e; (e = readdir(dh));) {
        if (e->d_name[0] == '.')
            continue;
        char *sub = tu_join(dir, e->d_name);
        char *path = tu_join(sub, "plugin.json");
        FILE *f = fopen(path, "r");
        if (f) {
            fclose(f);
            diag d;
            diag_init(&d, path);
            manifest *m = NULL;
            if (manifest_load(path, &m, &d) != EVH_OK)
                diag_print(&d, stderr);
            assert_non_null(m);
            manifest_free(m);
            diag_free(&d);
            seen++;
        }
        free(path);
        free(sub);
    }
    closedir(dh);
    assert_true(seen > 0);
}

static void test_step_with_empty_event_types(void **state)
{
    (void)state;
    const char *text = "{\"type\": \"workflow-step\", \"id\": \"s\", \"name\": \"S\", "
                       "\"description\": \"\", \"version\": \"1.0.0\", \"abi\": \"1.0\", "
                       "\"eventTypes\": []}";
    manifest *m = NULL;
    assert_int_equal(manifest_parse(text, strlen(text), NULL, &m, NULL), EVH_OK);
    assert_non_null(m);
    assert_null(m->path);
    assert_int_equal(m->n_event_types, 0);
    assert_string_equal(m->library, "s.so");
    manifest_free(m);
    manifest_free(NULL);
}

/* ---- bad manifests against EXPECTED -------------------------------------- */

typedef struct expect_case {
    char *file;
    char **lines;
    size_t n;
} expect_case;

static void add_line(expect_case *c, const char *line)
{
    c->lines = realloc(c->lines, (c->n + 1) * sizeof *c->lines);
    assert_non_null(c->lines);
    c->lines[c->n] = strdup(line);
    assert_non_null(c->lines[c->n]);
    c->n++;
}

/* Sections "== file" followed by problem lines; '#' lines and blank lines
 * are skipped. */
static expect_case *read_expected(size_t *n_out)
{
    char *text = tu_read_file(BAD_DIR "/EXPECTED");
    assert_non_null(text);
    expect_case *cases = NULL;
    size_t n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (strncmp(line, "== ", 3) == 0) {
            cases = realloc(cases, (n + 1) * sizeof *cases);
            assert_non_null(cases);
            cases[n] = (expect_case){strdup(line + 3), NULL, 0};
            n++;
            continue;
        }
        assert_true(n > 0);
        add_line(&cases[n - 1], line);
    }
    free(text);
    *n_out = n;
    return cases;
}

static void free_expected(expect_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < cases[i].n; j++)
            free(cases[i].lines[j]);
        free(cases[i].lines);
        free(cases[i].file);
    }
    free(cases);
}

static int line_matches(const char *want, const char *got)
{
    size_t len = strlen(want);
    if (len >= 3 && strcmp(want + len - 3, "...") == 0)
        return strncmp(want, got, len - 3) == 0;
    return strcmp(want, got) == 0;
}

/* Returns 1 when the problems of `file` are exactly c's lines; otherwise
 * prints both lists. */
static int check_case(const expect_case *c)
{
    char *path = tu_join(BAD_DIR, c->file);
    diag d;
    diag_init(&d, NULL); /* file-relative lines: "path: reason" */
    manifest *m = NULL;
    int rc = manifest_load(path, &m, &d);
    int ok = m == NULL && (rc == EVH_E_MANIFEST || rc == EVH_E_JSON) && d.count == c->n &&
             d.dropped == 0;
    for (size_t i = 0; ok && i < d.count; i++) {
        char *got = diag_format_item(&d, i);
        ok = got && line_matches(c->lines[i], got);
        free(got);
    }
    if (!ok) {
        fprintf(stderr, "%s (rc %d): expected %zu problems:\n", c->file, rc, c->n);
        for (size_t i = 0; i < c->n; i++)
            fprintf(stderr, "  %s\n", c->lines[i]);
        fprintf(stderr, "got %zu:\n", d.count);
        for (size_t i = 0; i < d.count; i++) {
            char *got = diag_format_item(&d, i);
            fprintf(stderr, "  %s\n", got ? got : "(out of memory)");
            free(got);
        }
    }
    manifest_free(m);
    diag_free(&d);
    free(path);
    return ok;
}

static void test_bad_files_match_expected(void **state)
{
    (void)state;
    size_t n = 0;
    expect_case *cases = read_expected(&n);
    assert_true(n >= 50);
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(cases[i].n > 0);
        failed += !check_case(&cases[i]);
    }
    free_expected(cases, n);
    assert_int_equal(failed, 0);
}

/* Every bad file has a section in EXPECTED, so none is silently untested. */
static void test_every_bad_file_is_expected(void **state)
{
    (void)state;
    size_t n = 0;
    expect_case *cases = read_expected(&n);
    DIR *dh = opendir(BAD_DIR);
    assert_non_null(dh);
    size_t files = 0;
    for (struct dirent *e; (e = readdir(dh));) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "EXPECTED") == 0)
            continue;
        files++;
        size_t i = 0;
        while (i < n && strcmp(cases[i].file, e->d_name) != 0)
            i++;
        if (i == n)
            fail_msg("%s has no section in EXPECTED", e->d_name);
    }
    closedir(dh);
    assert_int_equal(files, n);
    free_expected(cases, n);
}

static void test_many_problems_in_one_pass(void **state)
{
    (void)state;
    const char *text = "{\"type\": \"source\", \"id\": \"My Timer\", \"version\": \"one\", "
                       "\"abi\": \"x\", \"library\": \"../evil.so\", "
                       "\"eventTypes\": [{\"type\": \"A\"}, 3], \"configSchema\": {\"oneOf\": []}, "
                       "\"webhookEndpoint\": \"x\", \"status\": \"maybe\", \"isolation\": \"no\", "
                       "\"tags\": [1], \"extra\": 1}";
    diag d = parse_bad(text, strlen(text), EVH_E_MANIFEST);
    static const char *const paths[] = {
        "type",         "id",          "name",           "description",   "version",
        "abi",          "library",     "eventTypes[0].type", "eventTypes[0].label",
        "eventTypes[0].description", "eventTypes[1]", "configSchema.oneOf",
        "webhookEndpoint", "status",   "isolation",      "tags[0]",       "extra",
    };
    if (d.count != ARRAY_LEN(paths))
        diag_print(&d, stderr);
    assert_int_equal(d.count, ARRAY_LEN(paths));
    for (size_t i = 0; i < ARRAY_LEN(paths); i++)
        assert_string_equal(d.items[i].path, paths[i]);
    diag_free(&d);
}

/* Thousands of event types: duplicates found by name, whatever the order,
 * and the list of problems stays capped. */
static void test_many_event_types(void **state)
{
    (void)state;
    size_t n = 5000;
    char *types = malloc(n * 64 + 64);
    assert_non_null(types);
    size_t len = 0;
    for (size_t i = 0; i <= n; i++)
        len += (size_t)sprintf(types + len, "%s{\"type\": \"t%zu\", \"label\": \"L\", "
                                            "\"description\": \"D\"}",
                               i ? ", " : "", i < n ? i : (size_t)1234);
    char *text = NULL;
    assert_true(asprintf(&text, "{\"type\": \"event-source\", \"id\": \"many\", "
                                "\"name\": \"N\", \"description\": \"\", \"version\": "
                                "\"1.0.0\", \"abi\": \"1.0\", \"eventTypes\": [%s]}",
                         types) > 0);
    diag d = parse_bad(text, strlen(text), EVH_E_MANIFEST);
    assert_one_problem(&d, "eventTypes[5000].type",
                       "duplicate event type \"t1234\" (also at eventTypes[1234])");
    diag_free(&d);
    free(text);

    /* every one of them broken: 3 problems each, 200 listed, the rest counted */
    text = NULL;
    assert_true(asprintf(&text, "{\"type\": \"event-source\", \"id\": \"many\", "
                                "\"name\": \"N\", \"description\": \"\", \"version\": "
                                "\"1.0.0\", \"abi\": \"1.0\", \"eventTypes\": [%s]}",
                         "{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, "
                         "{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, "
                         "{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, "
                         "{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, "
                         "{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}") > 0);
    d = parse_bad(text, strlen(text), EVH_E_MANIFEST);
    assert_int_equal(d.count, EVH_DIAG_MAX_ITEMS);
    assert_int_equal(d.count + d.dropped, 80 * 3);
    diag_free(&d);
    free(text);
    free(types);
}

/* ---- what users see ------------------------------------------------------ */

static void test_formatted_line(void **state)
{
    (void)state;
    const char *file = "event-sources/my-timer/plugin.json";
    const char *text = "{\"type\": \"event-source\", \"id\": \"my-timer\", \"name\": \"My Timer\", "
                       "\"description\": \"d\", \"version\": \"1.0.0\", \"abi\": \"1.0\", "
                       "\"eventTypes\": [{\"type\": \"timer_fired\", \"description\": \"x\"}]}";
    diag d;
    diag_init(&d, file);
    manifest *m = NULL;
    assert_int_equal(manifest_parse(text, strlen(text), file, &m, &d), EVH_E_MANIFEST);
    assert_null(m);
    assert_string_equal(d.file, file);
    assert_int_equal(d.count, 1);
    char *line = diag_format_item(&d, 0);
    assert_string_equal(line,
                        "event-sources/my-timer/plugin.json: eventTypes[0].label: required "
                        "string is missing");
    free(line);
    diag_free(&d);

    /* a problem with the whole document has no path part */
    diag_init(&d, file);
    assert_int_equal(manifest_parse("[]", 2, file, &m, &d), EVH_E_MANIFEST);
    line = diag_format_item(&d, 0);
    assert_string_equal(line, "event-sources/my-timer/plugin.json: document must be a JSON "
                              "object, got array");
    free(line);
    diag_free(&d);
}

/* Problems already in the caller's list stay; only new ones decide. */
static void test_appends_to_existing_diag(void **state)
{
    (void)state;
    diag d;
    diag_init(&d, "other");
    diag_add(&d, "x", "earlier problem");
    char *path = tu_join(GOOD_DIR, "my-timer.json");
    manifest *m = NULL;
    assert_int_equal(manifest_load(path, &m, &d), EVH_OK);
    assert_non_null(m);
    assert_int_equal(d.count, 1);
    assert_string_equal(d.file, "other");
    manifest_free(m);
    free(path);
    diag_free(&d);
}

/* Values are quoted with escapes and cut, so a hostile value neither floods
 * nor forges log lines. */
static void test_values_in_messages_are_bounded(void **state)
{
    (void)state;
    size_t big = 100000;
    char *id = malloc(big + 3);
    assert_non_null(id);
    id[0] = '"';
    memset(id + 1, 'A', big);
    memcpy(id + 1 + big, "\"", 2);
    char *text = manifest_text(id, "");
    diag d = parse_bad(text, strlen(text), EVH_E_MANIFEST);
    assert_one_problem(&d, "id", "\"AAAA");
    assert_true(strlen(d.items[0].reason) < 200);
    assert_non_null(strstr(d.items[0].reason, "...\" is longer than 128 characters"));
    diag_free(&d);
    free(text);
    free(id);

    text = manifest_text("\"evil\\nline\\\"q\"", "");
    d = parse_bad(text, strlen(text), EVH_E_MANIFEST);
    assert_one_problem(&d, "id", "\"evil\\x0aline\\\"q\" is not kebab-case");
    assert_null(strchr(d.items[0].reason, '\n'));
    diag_free(&d);
    free(text);
}

static void test_missing_file(void **state)
{
    (void)state;
    diag d;
    diag_init(&d, "/nonexistent/plugin.json");
    static manifest sentinel;
    manifest *m = &sentinel;
    assert_int_equal(manifest_load("/nonexistent/plugin.json", &m, &d), EVH_E_IO);
    assert_null(m);
    assert_one_problem(&d, "", "cannot open: No such file or directory");
    diag_free(&d);

    diag_init(&d, NULL);
    assert_int_equal(manifest_load(EVH_TEST_DATA_DIR, &m, &d), EVH_E_IO);
    assert_one_problem(&d, "", "not a regular file");
    diag_free(&d);
    assert_int_equal(manifest_load(NULL, &m, NULL), EVH_E_INVALID);
    assert_int_equal(manifest_parse("{}", 2, NULL, NULL, NULL), EVH_E_INVALID);
}

/* ---- hostile input ------------------------------------------------------- */

static void test_empty_and_whitespace(void **state)
{
    (void)state;
    diag d = parse_bad("", 0, EVH_E_JSON);
    assert_one_problem(&d, "", "document is empty");
    diag_free(&d);
    d = parse_bad(NULL, 0, EVH_E_JSON);
    assert_one_problem(&d, "", "document is empty");
    diag_free(&d);
    d = parse_bad(" \r\n\t ", 5, EVH_E_JSON);
    assert_one_problem(&d, "", "document is empty");
    diag_free(&d);
}

/* Deterministic bytes (an LCG), so a failure reproduces. */
static void fill_garbage(unsigned char *buf, size_t len, unsigned seed, int allow_nul)
{
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = (unsigned char)(seed >> 16);
        if (!allow_nul && buf[i] == 0)
            buf[i] = 0xff;
    }
}

static void test_binary_garbage(void **state)
{
    (void)state;
    unsigned char buf[4096];
    for (unsigned seed = 1; seed <= 200; seed++) {
        size_t len = 1 + seed * 37 % sizeof buf;
        fill_garbage(buf, len, seed, seed % 2);
        buf[0] |= 0x80; /* never a valid JSON start, so always EVH_E_JSON */
        diag d = parse_bad((const char *)buf, len, EVH_E_JSON);
        assert_int_equal(d.count, 1);
        assert_string_equal(d.items[0].path, "");
        diag_free(&d);
    }

    /* the same through a file, as the loader reads it */
    char *dir = tu_tempdir("manifest");
    char *path = tu_join(dir, "plugin.json");
    fill_garbage(buf, sizeof buf, 7, 1);
    buf[10] = '\0';
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, sizeof buf, f), sizeof buf);
    fclose(f);
    diag d;
    diag_init(&d, path);
    manifest *m = NULL;
    assert_int_equal(manifest_load(path, &m, &d), EVH_E_JSON);
    assert_null(m);
    assert_int_equal(d.count, 1);
    assert_string_equal(d.items[0].path, "");
    diag_free(&d);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

static char *nested(size_t depth, const char *open, const char *close)
{
    size_t lo = strlen(open), lc = strlen(close);
    char *s = malloc(depth * (lo + lc) + 1);
    assert_non_null(s);
    for (size_t i = 0; i < depth; i++)
        memcpy(s + i * lo, open, lo);
    for (size_t i = 0; i < depth; i++)
        memcpy(s + depth * lo + i * lc, close, lc);
    s[depth * (lo + lc)] = '\0';
    return s;
}

static void test_deep_nesting(void **state)
{
    (void)state;
    char *arrays = nested(100000, "[", "]");
    diag d = parse_bad(arrays, strlen(arrays), EVH_E_JSON);
    assert_one_problem(&d, "", "nesting deeper than 64 levels at line 1, column 65");
    diag_free(&d);
    free(arrays);

    char *objects = nested(5000, "{\"a\":", "}");
    d = parse_bad(objects, strlen(objects), EVH_E_JSON);
    assert_one_problem(&d, "", "nesting deeper than 64 levels");
    diag_free(&d);
    free(objects);

    /* deep inside an otherwise valid manifest */
    char *deep = nested(80, "{\"properties\":{\"a\":", "}}");
    char *extra = NULL;
    assert_true(asprintf(&extra, ", \"configSchema\": %s", deep) > 0);
    char *text = manifest_text("\"deep\"", extra);
    d = parse_bad(text, strlen(text), EVH_E_JSON);
    assert_one_problem(&d, "", "nesting deeper than 64 levels");
    diag_free(&d);
    free(text);
    free(extra);
    free(deep);
}

/* A valid manifest padded with spaces to exactly `size` bytes. */
static char *padded_manifest(size_t size)
{
    char *core = manifest_text("\"big\"", "");
    size_t n = strlen(core);
    assert_true(size > n);
    char *text = malloc(size + 1);
    assert_non_null(text);
    memset(text, ' ', size);
    memcpy(text, core, n);
    text[size] = '\0';
    free(core);
    return text;
}

static void test_huge_documents(void **state)
{
    (void)state;
    size_t max = EVH_MANIFEST_MAX_BYTES;
    char *text = padded_manifest(max);
    manifest *m = NULL;
    assert_int_equal(manifest_parse(text, max, "p", &m, NULL), EVH_OK);
    manifest_free(m);
    free(text);

    text = padded_manifest(max + 1);
    diag d = parse_bad(text, max + 1, EVH_E_JSON);
    assert_one_problem(&d, "", "document larger than 1048576 bytes");
    diag_free(&d);

    /* a file is refused before it is read */
    char *dir = tu_tempdir("manifest");
    char *path = tu_join(dir, "plugin.json");
    free(text);
    text = padded_manifest(2 * max);
    assert_int_equal(tu_write_file(path, text), 0);
    diag_init(&d, path);
    assert_int_equal(manifest_load(path, &m, &d), EVH_E_MANIFEST);
    assert_null(m);
    assert_one_problem(&d, "", "file is larger than 1048576 bytes");
    diag_free(&d);
    tu_rmtree(dir);
    free(path);
    free(dir);
    free(text);
}

/* ---- validators ---------------------------------------------------------- */

typedef struct {
    const char *s;
    int ok;
} vcase;

static void run_table(int (*fn)(const char *), const vcase *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fn(t[i].s) != t[i].ok)
            fail_msg("\"%s\": expected %d", t[i].s ? t[i].s : "(null)", t[i].ok);
    assert_int_equal(fn(NULL), 0);
}

static void test_is_kebab_id(void **state)
{
    (void)state;
    static const vcase t[] = {
        {"my-timer", 1},  {"a", 1},          {"0", 1},          {"web-client-upload", 1},
        {"a1-b2-c3", 1},  {"123", 1},        {"", 0},           {"-a", 0},
        {"a-", 0},        {"a--b", 0},       {"My-Timer", 0},   {"my_timer", 0},
        {"my timer", 0},  {"my.timer", 0},   {"-", 0},          {"caf\xc3\xa9", 0},
    };
    run_table(is_kebab_id, t, ARRAY_LEN(t));
    char id[EVH_ID_MAX_LEN + 2];
    memset(id, 'a', sizeof id - 1);
    id[EVH_ID_MAX_LEN] = '\0';
    assert_true(is_kebab_id(id));
    id[EVH_ID_MAX_LEN] = 'a';
    id[EVH_ID_MAX_LEN + 1] = '\0';
    assert_false(is_kebab_id(id));
}

static void test_is_semver(void **state)
{
    (void)state;
    static const vcase t[] = {
        {"1.0.0", 1},
        {"0.0.0", 1},
        {"10.20.30", 1},
        {"1.0.0-alpha", 1},
        {"1.0.0-alpha.1", 1},
        {"1.0.0-0.3.7", 1},
        {"1.0.0-x.7.z.92", 1},
        {"1.0.0-x-y-z.--", 1},
        {"1.0.0-alpha+001", 1},
        {"1.0.0+20130313144700", 1},
        {"1.0.0-beta+exp.sha.5114f85", 1},
        {"1.0.0+21AF26D3----117B344092BD", 1},
        {"1.0.0-0A.is.legal", 1},
        {"1.0.0-alpha0.valid", 1},
        {"1.0.0+0.build.1-rc.10000aaa-kk-0.1", 1},
        {"", 0},
        {"1", 0},
        {"1.0", 0},
        {"1.0.0.0", 0},
        {"01.0.0", 0},
        {"1.01.0", 0},
        {"1.0.01", 0},
        {"v1.0.0", 0},
        {"1.0.0-", 0},
        {"1.0.0+", 0},
        {"1.0.0-01", 0},
        {"1.0.0-alpha..1", 0},
        {"1.0.0-alpha.", 0},
        {"1.0.0+build..1", 0},
        {"1.0.0-al_pha", 0},
        {" 1.0.0", 0},
        {"1.0.0 ", 0},
        {"1.-1.0", 0},
        {"a.b.c", 0},
        {"1..0", 0},
    };
    run_table(is_semver, t, ARRAY_LEN(t));
}

static void test_is_event_type_name(void **state)
{
    (void)state;
    static const vcase t[] = {
        {"timer_fired", 1},
        {"file_upload", 1},
        {"t", 1},
        {"a1", 1},
        {"billing.invoice_paid", 1},
        {"a.b.c", 1},
        {"a._b", 1},
        {"a.1", 1},
        {"", 0},
        {"1abc", 0},
        {"_abc", 0},
        {"Timer_fired", 0},
        {"timer-fired", 0},
        {"timer fired", 0},
        {".a", 0},
        {"a.", 0},
        {"a..b", 0},
        {"a/b", 0},
    };
    run_table(is_event_type_name, t, ARRAY_LEN(t));
    char name[EVH_ID_MAX_LEN + 2];
    memset(name, 'a', sizeof name - 1);
    name[EVH_ID_MAX_LEN] = '\0';
    assert_true(is_event_type_name(name));
    name[EVH_ID_MAX_LEN] = 'a';
    name[EVH_ID_MAX_LEN + 1] = '\0';
    assert_false(is_event_type_name(name));
}

/* A request path against a webhookEndpoint: the same segments, empty ones
 * ignored; sub-paths match only a prefix endpoint (one ending in "/"). */
static void test_endpoint_matches(void **state)
{
    (void)state;
    static const struct {
        const char *endpoint, *path;
        int want;
    } t[] = {
        {"/api/webhooks/github", "/api/webhooks/github", 1},
        {"/api/webhooks/github", "/api/webhooks/github/", 1},
        {"/api/webhooks/github", "//api//webhooks/github", 1},
        {"/api/webhooks/github/", "/api/webhooks/github", 1},
        {"/api/webhooks/github", "/api/webhooks/github/push", 0},
        {"/api/webhooks/github", "/api/webhooks", 0},
        {"/api/webhooks/github", "/api/webhooks/githu", 0},
        {"/api/webhooks/github", "/api/webhooks/githubx", 0},
        {"/api/webhooks/github", "/API/webhooks/github", 0},
        {"/", "/", 1},
        {"/", "/x", 0},
        {"/x", "/", 0},
        {NULL, "/", 0},
        {"/", NULL, 0},
        /* a prefix endpoint: its own path and everything below it */
        {"/api/webhooks/", "/api/webhooks/github", 1},
        {"/api/webhooks/", "/api/webhooks/github/push/", 1},
        {"/api/webhooks/", "//api/webhooks//a", 1},
        {"/api/webhooks/", "/api/webhooks", 1},
        {"/api/webhooks/", "/api/webhooks/", 1},
        {"/api/webhooks/", "/api/webhooksx/a", 0},
        {"/api/webhooks/", "/api/webhook/a", 0},
        {"/api/webhooks/", "/api", 0},
        {"/api/webhooks/", "/", 0},
        {"/api/webhooks//", "/api/webhooks/a", 1},
        /* "/" and "//" are exact: no catch-all endpoint */
        {"//", "/x", 0},
        {"//", "/", 1},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (manifest_endpoint_matches(t[i].endpoint, t[i].path) != t[i].want)
            fail_msg("%s against %s: want %d", t[i].endpoint ? t[i].endpoint : "(null)",
                     t[i].path ? t[i].path : "(null)", t[i].want);
    }
}

/* Prefix endpoints, their ranking, and which endpoints are the same. */
static void test_endpoint_prefix_rank_same(void **state)
{
    (void)state;
    assert_true(manifest_endpoint_is_prefix("/api/webhooks/"));
    assert_true(manifest_endpoint_is_prefix("/a/"));
    assert_false(manifest_endpoint_is_prefix("/api/webhooks"));
    assert_false(manifest_endpoint_is_prefix("/"));
    assert_false(manifest_endpoint_is_prefix("//"));
    assert_false(manifest_endpoint_is_prefix(NULL));
    /* more segments win; exact beats prefix with the same segments */
    assert_true(manifest_endpoint_rank("/api/webhooks/github") >
                manifest_endpoint_rank("/api/webhooks/"));
    assert_true(manifest_endpoint_rank("/api/webhooks") > manifest_endpoint_rank("/api/webhooks/"));
    assert_true(manifest_endpoint_rank("/api/webhooks/github/") >
                manifest_endpoint_rank("/api/webhooks"));
    assert_true(manifest_endpoint_rank("/api/webhooks/github") >
                manifest_endpoint_rank("/api/webhooks/github/"));
    assert_int_equal(manifest_endpoint_rank(NULL), 0);
    assert_true(manifest_endpoint_same("/a/b", "/a/b/"));
    assert_true(manifest_endpoint_same("/a//b", "/a/b"));
    assert_false(manifest_endpoint_same("/a/", "/a/b"));
    assert_false(manifest_endpoint_same("/a/b", "/a/c"));
    assert_false(manifest_endpoint_same(NULL, "/a"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_my_timer),
        cmocka_unit_test(test_good_workflow_step),
        cmocka_unit_test(test_good_config_defaults),
        cmocka_unit_test(test_good_all_fields),
        cmocka_unit_test(test_fixture_plugins_are_valid),
        cmocka_unit_test(test_step_with_empty_event_types),
        cmocka_unit_test(test_bad_files_match_expected),
        cmocka_unit_test(test_every_bad_file_is_expected),
        cmocka_unit_test(test_many_problems_in_one_pass),
        cmocka_unit_test(test_many_event_types),
        cmocka_unit_test(test_formatted_line),
        cmocka_unit_test(test_appends_to_existing_diag),
        cmocka_unit_test(test_values_in_messages_are_bounded),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_empty_and_whitespace),
        cmocka_unit_test(test_binary_garbage),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_huge_documents),
        cmocka_unit_test(test_is_kebab_id),
        cmocka_unit_test(test_is_semver),
        cmocka_unit_test(test_is_event_type_name),
        cmocka_unit_test(test_endpoint_matches),
        cmocka_unit_test(test_endpoint_prefix_rank_same),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
