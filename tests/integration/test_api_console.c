/*
 * test_api_console.c - the web console as the daemon serves it, over real
 * HTTP on loopback with API keys configured: GET / and GET /console/<file>
 * are public, carry the right Content-Type, a strict Content-Security-Policy,
 * nosniff and an ETag that answers 304; the bytes are exactly the files of
 * host/console/; unknown files are 404; the API itself still needs the key.
 * (tests/browser/run.mjs drives the console itself in Chromium.)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apitest.h"
#include "console_assets.h"
#include "testutil.h"

#define KEYS_YAML "server:\n  api_keys: [{name: ci, key: s3cret}]\n"

static void assert_header(const at_response *r, const char *name, const char *want)
{
    char *v = at_header(r, name);
    if (!v)
        fail_msg("no %s header", name);
    assert_string_equal(v, want);
    free(v);
}

/* The headers every console answer carries. */
static void assert_console_headers(const at_response *r)
{
    assert_header(r, "X-Content-Type-Options", "nosniff");
    assert_header(r, "Cache-Control", "no-cache");
    assert_header(r, "Referrer-Policy", "no-referrer");
    char *csp = at_header(r, "Content-Security-Policy");
    assert_non_null(csp);
    assert_non_null(strstr(csp, "default-src 'self'"));
    assert_non_null(strstr(csp, "script-src 'self'"));
    assert_non_null(strstr(csp, "style-src 'self'"));
    assert_non_null(strstr(csp, "frame-ancestors 'none'"));
    assert_null(strstr(csp, "unsafe-inline"));
    assert_null(strstr(csp, "unsafe-eval"));
    free(csp);
    char *etag = at_header(r, "ETag");
    assert_non_null(etag);
    assert_int_equal(strlen(etag), 18); /* "<16 hex digits>" */
    assert_true(etag[0] == '"' && etag[17] == '"');
    free(etag);
}

static char *source_file(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/host/console/%s", EVH_SOURCE_DIR, name);
    char *text = tu_read_file(path);
    if (!text)
        fail_msg("cannot read %s", path);
    return text;
}

static void test_index_public_with_keys(void **state)
{
    at_options o = {.host_yaml = KEYS_YAML};
    apitest *t = at_start(&o);
    at_response r;
    assert_int_equal(at_request(t, "GET", "/", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_header(&r, "Content-Type", "text/html; charset=utf-8");
    assert_console_headers(&r);
    char *want = source_file("index.html");
    assert_int_equal(r.body_len, strlen(want));
    assert_memory_equal(r.body, want, r.body_len);
    free(want);
    /* no inline script: every <script> loads a file of the console */
    for (const char *s = strstr(r.body, "<script"); s; s = strstr(s + 1, "<script")) {
        const char *end = strchr(s, '>');
        assert_non_null(end);
        const char *src = strstr(s, "src=\"/console/");
        assert_true(src && src < end);
    }
    assert_null(strstr(r.body, " style=\""));
    assert_null(strstr(r.body, " onclick="));
    at_response_free(&r);

    /* the API behind it still needs the key */
    assert_int_equal(at_request(t, "GET", "/api/triggers", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 401);
    at_response_free(&r);
    static const char *const auth[] = {"Authorization: Bearer s3cret", NULL};
    assert_int_equal(at_request(t, "GET", "/api/triggers", auth, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    at_response_free(&r);
    at_stop(t);
    (void)state;
}

static void test_assets(void **state)
{
    at_options o = {.host_yaml = KEYS_YAML};
    apitest *t = at_start(&o);
    static const struct {
        const char *name, *type;
    } files[] = {
        {"app.js", "text/javascript; charset=utf-8"},
        {"api.js", "text/javascript; charset=utf-8"},
        {"style.css", "text/css; charset=utf-8"},
        {"favicon.svg", "image/svg+xml"},
        {"index.html", "text/html; charset=utf-8"},
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[256];
        snprintf(path, sizeof path, "/console/%s", files[i].name);
        at_response r;
        assert_int_equal(at_request(t, "GET", path, NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        assert_header(&r, "Content-Type", files[i].type);
        assert_console_headers(&r);
        char *want = source_file(files[i].name);
        assert_int_equal(r.body_len, strlen(want));
        assert_memory_equal(r.body, want, r.body_len);
        free(want);
        at_response_free(&r);
    }
    at_stop(t);
    (void)state;
}

/* Every file of the table is one of host/console/, byte for byte, and every
 * file index.html names is in the table. */
static void test_table_matches_sources(void **state)
{
    size_t n = 0;
    for (const console_asset *a = console_assets; a->name; a++, n++) {
        char *want = source_file(a->name);
        assert_int_equal(a->len, strlen(want));
        assert_memory_equal(a->data, want, a->len);
        assert_int_equal(a->data[a->len], 0);
        assert_non_null(a->content_type);
        if (a != console_assets)
            assert_true(strcmp(a[-1].name, a->name) < 0); /* sorted, no duplicates */
        free(want);
    }
    assert_true(n >= 5);
    char *index = source_file("index.html");
    for (const char *p = strstr(index, "/console/"); p; p = strstr(p + 1, "/console/")) {
        char name[128];
        size_t len = strcspn(p + 9, "\"'");
        assert_true(len > 0 && len < sizeof name);
        memcpy(name, p + 9, len);
        name[len] = '\0';
        int found = 0;
        for (const console_asset *a = console_assets; a->name; a++)
            found |= !strcmp(a->name, name);
        if (!found)
            fail_msg("index.html names /console/%s, which is not compiled in", name);
    }
    free(index);
    (void)state;
}

static void test_etag_304(void **state)
{
    apitest *t = at_start(NULL);
    at_response r;
    assert_int_equal(at_request(t, "GET", "/console/app.js", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    char *etag = at_header(&r, "ETag");
    assert_non_null(etag);
    at_response_free(&r);

    char inm[128];
    snprintf(inm, sizeof inm, "If-None-Match: W/\"0123456789abcdef\", %s", etag);
    const char *const same[] = {inm, NULL};
    assert_int_equal(at_request(t, "GET", "/console/app.js", same, NULL, 0, &r), 0);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.body_len, 0);
    char *again = at_header(&r, "ETag");
    assert_string_equal(again, etag);
    free(again);
    assert_console_headers(&r);
    at_response_free(&r);

    static const char *const other[] = {"If-None-Match: \"0123456789abcdef\"", NULL};
    assert_int_equal(at_request(t, "GET", "/console/app.js", other, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.body_len > 0);
    at_response_free(&r);
    /* another file has another tag */
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    assert_int_equal(at_request(t, "GET", "/console/style.css", same, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    at_response_free(&r);
    free(etag);
    at_stop(t);
    (void)state;
}

static void test_unknown_and_methods(void **state)
{
    at_options o = {.host_yaml = KEYS_YAML};
    apitest *t = at_start(&o);
    at_response r;
    static const char *const missing[] = {"/console/nope.js", "/console/", "/console/..%2Fapi.h",
                                          "/console/app.js/x", "/index.html"};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++) {
        assert_int_equal(at_request(t, "GET", missing[i], NULL, NULL, 0, &r), 0);
        if (r.status != 404)
            fail_msg("GET %s: %ld, not 404", missing[i], r.status);
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(r.json, "error");
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(err, "code")),
                            "not_found");
        at_response_free(&r);
    }
    assert_int_equal(at_request(t, "POST", "/", NULL, "x", 1, &r), 0);
    assert_int_equal(r.status, 405);
    assert_header(&r, "Allow", "GET");
    at_response_free(&r);
    assert_int_equal(at_request(t, "DELETE", "/console/app.js", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 405);
    at_response_free(&r);
    at_stop(t);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_public_with_keys),
        cmocka_unit_test(test_assets),
        cmocka_unit_test(test_table_matches_sources),
        cmocka_unit_test(test_etag_304),
        cmocka_unit_test(test_unknown_and_methods),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
