/*
 * test_builtin_webhooks.c - the HTTP event sources, loaded from the build
 * tree into the in-process host and called over loopback:
 *   - api-webhook: GitHub and Standard Webhooks signatures (computed here,
 *     independently, with OpenSSL's HMAC, and checked against the Standard
 *     Webhooks reference vector), expired timestamps, tokens, unknown hooks,
 *     methods, secrets kept out of the stored event, bad config refused;
 *   - prefix endpoints: api-webhook's "/api/webhooks/" next to a fixture's
 *     exact "/api/webhooks/test" (the more specific wins, also when it is
 *     not running);
 *   - web-client-upload: real multipart POSTs with libcurl's mime API, the
 *     file on disk with the right SHA-256 and size, the event stored, path
 *     traversal names, caps (413), malformed bodies (400), authentication;
 *   - the multipart parser itself (compiled in): a table of malformed bodies
 *     and a deterministic mutation run that must never crash (ASan).
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "apitest.h"
#include "loader.h"
#include "log.h"
#include "multipart.h"
#include "testutil.h"

#define assert_contains(haystack, needle)                                                  \
    do {                                                                                   \
        const char *h_ = (haystack);                                                       \
        if (!h_ || !strstr(h_, (needle))) {                                                \
            print_error("'%s' not found in '%s'\n", (needle), h_ ? h_ : "(null)");          \
            fail();                                                                        \
        }                                                                                  \
    } while (0)

static const cJSON *get(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static const char *str(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(get(o, key));
}

static void assert_status(const at_response *r, long status)
{
    if (r->status != status)
        print_error("status %ld, want %ld; body %s\n", r->status, status, r->body);
    assert_int_equal(r->status, status);
}

/* The error shape of the host, which the plugins use too. */
static void assert_error(const at_response *r, long status, const char *code)
{
    assert_status(r, status);
    const cJSON *err = get(r->json, "error");
    assert_non_null(err);
    assert_string_equal(str(err, "code"), code);
    assert_non_null(str(err, "message"));
}

/* Events stored from `source`, newest first. */
static cJSON *events_of(apitest *t, const char *source)
{
    store_filter f = {.source = source, .limit = 1000};
    cJSON *list = store_events_list(t->st, &f, NULL);
    assert_non_null(list);
    return list;
}

static int count_events(apitest *t, const char *source)
{
    cJSON *list = events_of(t, source);
    int n = cJSON_GetArraySize(list);
    cJSON_Delete(list);
    return n;
}

/* The newest stored event of `source` (the caller deletes it). */
static cJSON *newest_event(apitest *t, const char *source)
{
    cJSON *list = events_of(t, source);
    assert_true(cJSON_GetArraySize(list) > 0);
    cJSON *ev = cJSON_DetachItemFromArray(list, 0);
    cJSON_Delete(list);
    return ev;
}

/* ---- signatures, computed independently ------------------------------------ */

static void hmac_hex(const char *key, const char *body, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    assert_non_null(HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)body,
                         strlen(body), md, &n));
    assert_int_equal(n, 32);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* "v1,<base64 HMAC-SHA256(base64-decoded secret, id.ts.body)>" */
static void standard_sig(const char *whsec, const char *id, const char *ts, const char *body,
                         char out[64])
{
    const char *b64 = whsec + strlen("whsec_");
    unsigned char key[64];
    int klen = EVP_DecodeBlock(key, (const unsigned char *)b64, (int)strlen(b64));
    assert_true(klen > 0);
    klen -= (b64[strlen(b64) - 1] == '=') + (b64[strlen(b64) - 2] == '=');
    char *msg = NULL;
    assert_true(asprintf(&msg, "%s.%s.%s", id, ts, body) > 0);
    unsigned char md[32];
    unsigned int n = 0;
    assert_non_null(HMAC(EVP_sha256(), key, klen, (unsigned char *)msg, strlen(msg), md, &n));
    free(msg);
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, md, 32);
}

/* The Standard Webhooks reference vector (their libraries' tests): the
 * helper above computes exactly it, so the plugin is checked against the
 * specification and not only against this file. */
#define STD_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

static void test_standard_reference_vector(void **state)
{
    (void)state;
    char sig[64];
    standard_sig(STD_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
                 "{\"test\": 2432232314}", sig);
    assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

/* ---- api-webhook ------------------------------------------------------------- */

static const char *const hook_fixtures[] = {"webhook-source", "ok-minimal", NULL};
static const char *const hook_builtins[] = {"api-webhook", NULL};
static const char hook_config[] =
    "{\"api-webhook\": {\"hooks\": ["
    "{\"name\": \"github\", \"signature\": \"github\", \"secret\": \"gh-s3cret\","
    " \"secret_headers\": [\"X-Internal-Secret\"]},"
    "{\"name\": \"standard\", \"signature\": \"standard\", \"secret\": \"" STD_SECRET "\"},"
    "{\"name\": \"tokened\", \"token\": \"t0ken-abc\"},"
    "{\"name\": \"gitlab\", \"token\": \"gl-t0ken\", \"token_header\": \"X-Gitlab-Token\"},"
    "{\"name\": \"open\", \"methods\": [\"POST\", \"PUT\"]},"
    "{\"name\": \"both\", \"signature\": \"github\", \"secret\": \"s2\", \"token\": \"t2\"}"
    "]}}";

static apitest *start_hooks(void)
{
    at_options o = {.fixtures = hook_fixtures,
                    .builtins = hook_builtins,
                    .plugin_configs = hook_config};
    apitest *t = at_start(&o);
    const plugin *p = registry_find(t->r, "api-webhook");
    assert_non_null(p);
    assert_int_equal(p->state, PLUGIN_RUNNING);
    return t;
}

/* POST body to a hook with the given headers (NULL-terminated). */
static void post(apitest *t, const char *path, const char *const *headers, const char *body,
                 at_response *r)
{
    assert_int_equal(at_request(t, "POST", path, headers, body, (size_t)-1, r), 0);
}

static void test_github_signature(void **state)
{
    (void)state;
    apitest *t = start_hooks();
    at_response r;
    const char *body = "{\"action\": \"opened\", \"number\": 7}";
    char hex[65], sig[128];
    hmac_hex("gh-s3cret", body, hex);
    snprintf(sig, sizeof sig, "X-Hub-Signature-256: sha256=%s", hex);
    const char *const good[] = {"Content-Type: application/json",
                                sig,
                                "X-GitHub-Event: pull_request",
                                "X-GitHub-Delivery: d-1",
                                "Authorization: Bearer not-for-storage",
                                "Cookie: session=abc",
                                "X-Api-Key: evhost-key",
                                "X-Internal-Secret: hush",
                                "X-Repeated: a",
                                "X-Repeated: b",
                                NULL};
    post(t, "/api/webhooks/github?ref=main&ref=dev", good, body, &r);
    assert_status(&r, 202);
    const char *event_id = str(r.json, "id");
    assert_non_null(event_id);
    assert_int_equal(strlen(event_id), 36);

    /* the 202 came after the durable commit: the event is there now */
    cJSON *ev = newest_event(t, "api-webhook");
    assert_string_equal(str(ev, "id"), event_id); /* the answer names the event */
    assert_string_equal(str(ev, "event_type"), "webhook_received");
    const cJSON *data = get(ev, "data");
    assert_string_equal(str(data, "hook"), "github");
    assert_string_equal(str(data, "method"), "POST");
    assert_string_equal(str(data, "path"), "/api/webhooks/github");
    assert_string_equal(str(data, "content_type"), "application/json");
    assert_string_equal(str(data, "remote_addr"), "127.0.0.1");
    assert_non_null(str(data, "received_at"));
    assert_string_equal(str(get(data, "body"), "action"), "opened");
    assert_int_equal(get(get(data, "body"), "number")->valueint, 7);
    assert_string_equal(str(get(data, "query"), "ref"), "main, dev");
    const cJSON *h = get(data, "headers");
    assert_string_equal(str(h, "x-github-event"), "pull_request");
    assert_string_equal(str(h, "x-github-delivery"), "d-1");
    assert_string_equal(str(h, "x-repeated"), "a, b");
    assert_string_equal(str(h, "content-type"), "application/json");
    /* secrets never reach the store */
    assert_null(get(h, "authorization"));
    assert_null(get(h, "cookie"));
    assert_null(get(h, "x-api-key"));
    assert_null(get(h, "x-hub-signature-256"));
    assert_null(get(h, "x-internal-secret"));
    char *text = cJSON_PrintUnformatted(ev);
    assert_null(strstr(text, "not-for-storage"));
    assert_null(strstr(text, "session=abc"));
    assert_null(strstr(text, "evhost-key"));
    assert_null(strstr(text, "hush"));
    assert_null(strstr(text, hex));
    free(text);
    cJSON_Delete(ev);
    at_response_free(&r);

    /* upper-case hex is the same signature */
    char upper[128];
    snprintf(upper, sizeof upper, "X-Hub-Signature-256: sha256=");
    for (int i = 0; i < 64; i++)
        upper[28 + i] = (char)(hex[i] >= 'a' ? hex[i] - 32 : hex[i]);
    upper[92] = '\0';
    const char *const up[] = {"Content-Type: application/json", upper, NULL};
    post(t, "/api/webhooks/github", up, body, &r);
    assert_status(&r, 202);
    at_response_free(&r);
    assert_int_equal(count_events(t, "api-webhook"), 2);

    /* refused, and nothing emitted: a wrong key, a changed body, no header,
     * a malformed header, the old SHA-1 header alone */
    char wrong_hex[65], wrong[128];
    hmac_hex("gh-s3creT", body, wrong_hex);
    snprintf(wrong, sizeof wrong, "X-Hub-Signature-256: sha256=%s", wrong_hex);
    const char *const bad_key[] = {"Content-Type: application/json", wrong, NULL};
    post(t, "/api/webhooks/github", bad_key, body, &r);
    assert_error(&r, 401, "unauthorized");
    assert_contains(str(get(r.json, "error"), "message"), "signature mismatch");
    at_response_free(&r);
    post(t, "/api/webhooks/github", good, "{\"action\": \"closed\", \"number\": 7}", &r);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);
    const char *const none[] = {"Content-Type: application/json", NULL};
    post(t, "/api/webhooks/github", none, body, &r);
    assert_error(&r, 401, "unauthorized");
    assert_contains(str(get(r.json, "error"), "message"), "missing X-Hub-Signature-256");
    at_response_free(&r);
    const char *const malformed[] = {"X-Hub-Signature-256: sha256=zz", NULL};
    post(t, "/api/webhooks/github", malformed, body, &r);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);
    char sha1[80];
    snprintf(sha1, sizeof sha1, "X-Hub-Signature: sha1=%.40s", hex);
    const char *const old[] = {sha1, NULL};
    post(t, "/api/webhooks/github", old, body, &r);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);

    /* signature and token: both are needed */
    char both_hex[65], both_sig[128];
    hmac_hex("s2", body, both_hex);
    snprintf(both_sig, sizeof both_sig, "X-Hub-Signature-256: sha256=%s", both_hex);
    const char *const sig_only[] = {both_sig, NULL};
    post(t, "/api/webhooks/both", sig_only, body, &r);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);
    const char *const sig_token[] = {both_sig, "Authorization: Bearer t2", NULL};
    post(t, "/api/webhooks/both", sig_token, body, &r);
    assert_status(&r, 202);
    at_response_free(&r);

    assert_int_equal(count_events(t, "api-webhook"), 3);
    at_stop(t);
}

static void std_headers(char *id_h, char *ts_h, char *sig_h, const char *id, long long ts,
                        const char *body, const char *extra_sig)
{
    char tsbuf[32], sig[64];
    snprintf(tsbuf, sizeof tsbuf, "%lld", ts);
    standard_sig(STD_SECRET, id, tsbuf, body, sig);
    sprintf(id_h, "webhook-id: %s", id);
    sprintf(ts_h, "webhook-timestamp: %s", tsbuf);
    sprintf(sig_h, "webhook-signature: %s%s%s", extra_sig ? extra_sig : "",
            extra_sig ? " " : "", sig);
}

static void test_standard_webhooks(void **state)
{
    (void)state;
    apitest *t = start_hooks();
    at_response r;
    const char *body = "{\"type\": \"invoice.paid\", \"data\": {\"id\": \"in_1\"}}";
    char id_h[128], ts_h[64], sig_h[256];
    long long now = (long long)time(NULL);

    std_headers(id_h, ts_h, sig_h, "msg_1", now, body, NULL);
    const char *const good[] = {"Content-Type: application/json", id_h, ts_h, sig_h, NULL};
    post(t, "/api/webhooks/standard", good, body, &r);
    assert_status(&r, 202);
    at_response_free(&r);
    cJSON *ev = newest_event(t, "api-webhook");
    const cJSON *data = get(ev, "data");
    assert_string_equal(str(data, "hook"), "standard");
    assert_string_equal(str(get(get(data, "body"), "data"), "id"), "in_1");
    /* the id and timestamp stay (for de-duplication); the signature does not */
    assert_string_equal(str(get(data, "headers"), "webhook-id"), "msg_1");
    assert_non_null(str(get(data, "headers"), "webhook-timestamp"));
    assert_null(get(get(data, "headers"), "webhook-signature"));
    cJSON_Delete(ev);

    /* several signatures (key rotation): one valid one is enough */
    std_headers(id_h, ts_h, sig_h, "msg_2", now, body,
                "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= v1a,xyz");
    post(t, "/api/webhooks/standard", good, body, &r);
    assert_status(&r, 202);
    at_response_free(&r);
    assert_int_equal(count_events(t, "api-webhook"), 2);

    /* a wrong signature, a body changed in transit, a signature for another id */
    std_headers(id_h, ts_h, sig_h, "msg_3", now, body, NULL);
    sig_h[strlen(sig_h) - 3] = sig_h[strlen(sig_h) - 3] == 'A' ? 'B' : 'A';
    post(t, "/api/webhooks/standard", good, body, &r);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);
    std_headers(id_h, ts_h, sig_h, "msg_4", now, body, NULL);
    post(t, "/api/webhooks/standard", good, "{\"type\": \"invoice.void\"}", &r);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);
    std_headers(id_h, ts_h, sig_h, "msg_5", now, body, NULL);
    snprintf(id_h, sizeof id_h, "webhook-id: msg_6");
    post(t, "/api/webhooks/standard", good, body, &r);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);

    /* expired and future timestamps (replays), correctly signed */
    std_headers(id_h, ts_h, sig_h, "msg_7", now - 600, body, NULL);
    post(t, "/api/webhooks/standard", good, body, &r);
    assert_error(&r, 401, "unauthorized");
    assert_contains(str(get(r.json, "error"), "message"), "webhook-timestamp");
    at_response_free(&r);
    std_headers(id_h, ts_h, sig_h, "msg_8", now + 600, body, NULL);
    post(t, "/api/webhooks/standard", good, body, &r);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);
    /* the specification's own example is years old by now */
    const char *const reference[] = {
        "webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp: 1614265330",
        "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", NULL};
    post(t, "/api/webhooks/standard", reference, "{\"test\": 2432232314}", &r);
    assert_error(&r, 401, "unauthorized");
    assert_contains(str(get(r.json, "error"), "message"), "too old");
    at_response_free(&r);
    /* missing headers, a timestamp that is not a number */
    const char *const missing[] = {id_h, sig_h, NULL};
    post(t, "/api/webhooks/standard", missing, body, &r);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);
    std_headers(id_h, ts_h, sig_h, "msg_9", now, body, NULL);
    snprintf(ts_h, sizeof ts_h, "webhook-timestamp: %lld.0", now);
    post(t, "/api/webhooks/standard", good, body, &r);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);

    assert_int_equal(count_events(t, "api-webhook"), 2);
    at_stop(t);
}

static void test_tokens(void **state)
{
    (void)state;
    apitest *t = start_hooks();
    at_response r;
    const char *const good[] = {"Authorization: Bearer t0ken-abc", NULL};
    post(t, "/api/webhooks/tokened", good, "{}", &r);
    assert_status(&r, 202);
    at_response_free(&r);
    const char *const lower[] = {"authorization: bearer t0ken-abc", NULL};
    post(t, "/api/webhooks/tokened", lower, "{}", &r);
    assert_status(&r, 202);
    at_response_free(&r);
    static const char *const bad[][3] = {
        {"Authorization: Bearer t0ken-abd", NULL},
        {"Authorization: Bearer t0ken-ab", NULL},
        {"Authorization: Bearer t0ken-abcd", NULL},
        {"Authorization: Basic dDBrZW4tYWJj", NULL},
        {"X-Token: t0ken-abc", NULL},
        {NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        post(t, "/api/webhooks/tokened", bad[i], "{}", &r);
        assert_error(&r, 401, "unauthorized");
        at_response_free(&r);
    }
    /* a token in a header of its own, kept out of the event */
    const char *const gl[] = {"X-Gitlab-Token: gl-t0ken", "X-Gitlab-Event: Push Hook", NULL};
    post(t, "/api/webhooks/gitlab", gl, "{\"ref\": \"main\"}", &r);
    assert_status(&r, 202);
    at_response_free(&r);
    cJSON *ev = newest_event(t, "api-webhook");
    const cJSON *h = get(get(ev, "data"), "headers");
    assert_null(get(h, "x-gitlab-token"));
    assert_string_equal(str(h, "x-gitlab-event"), "Push Hook");
    cJSON_Delete(ev);
    const char *const gl_bad[] = {"X-Gitlab-Token: gl-t0keN", NULL};
    post(t, "/api/webhooks/gitlab", gl_bad, "{}", &r);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);
    const char *const gl_bearer[] = {"Authorization: Bearer gl-t0ken", NULL};
    post(t, "/api/webhooks/gitlab", gl_bearer, "{}", &r);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);
    assert_int_equal(count_events(t, "api-webhook"), 3);
    at_stop(t);
}

static void test_hooks_paths_methods_bodies(void **state)
{
    (void)state;
    apitest *t = start_hooks();
    at_response r;
    /* unknown names and other paths below the prefix: the plugin's 404 */
    static const char *const unknown[] = {"/api/webhooks/nope", "/api/webhooks",
                                          "/api/webhooks/", "/api/webhooks/open/extra",
                                          "/api/webhooks/Open"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        post(t, unknown[i], NULL, "{}", &r);
        assert_error(&r, 404, "not_found");
        assert_contains(str(get(r.json, "error"), "message"), "no such webhook");
        at_response_free(&r);
    }
    /* not below the prefix at all: the host's own 404 */
    post(t, "/api/webhooksx/open", NULL, "{}", &r);
    assert_error(&r, 404, "not_found");
    assert_null(strstr(r.body, "no such webhook"));
    at_response_free(&r);

    /* methods: POST by default; the configured ones otherwise */
    assert_int_equal(at_request(t, "GET", "/api/webhooks/tokened", NULL, NULL, 0, &r), 0);
    assert_error(&r, 405, "method_not_allowed");
    char *allow = at_header(&r, "Allow");
    assert_string_equal(allow, "POST");
    free(allow);
    at_response_free(&r);
    assert_int_equal(at_request(t, "DELETE", "/api/webhooks/open", NULL, NULL, 0, &r), 0);
    assert_error(&r, 405, "method_not_allowed");
    allow = at_header(&r, "Allow");
    assert_string_equal(allow, "POST, PUT");
    free(allow);
    at_response_free(&r);
    const char *const text[] = {"Content-Type: text/plain; charset=utf-8", NULL};
    assert_int_equal(at_request(t, "PUT", "//api/webhooks/open/?x=1", text, "plain words",
                                (size_t)-1, &r),
                     0);
    assert_status(&r, 202);
    at_response_free(&r);
    cJSON *ev = newest_event(t, "api-webhook");
    const cJSON *data = get(ev, "data");
    assert_string_equal(str(data, "method"), "PUT");
    assert_string_equal(str(data, "body"), "plain words");
    assert_string_equal(str(get(data, "query"), "x"), "1");
    cJSON_Delete(ev);

    /* bodies: empty is null; not UTF-8 is repaired; JSON that does not
     * parse is refused when the Content-Type says JSON */
    post(t, "/api/webhooks/open", NULL, NULL, &r);
    assert_status(&r, 202);
    at_response_free(&r);
    ev = newest_event(t, "api-webhook");
    assert_true(cJSON_IsNull(get(get(ev, "data"), "body")));
    assert_true(cJSON_IsNull(get(get(ev, "data"), "content_type")));
    cJSON_Delete(ev);
    const char *const bin[] = {"Content-Type: application/octet-stream", NULL};
    assert_int_equal(at_request(t, "POST", "/api/webhooks/open", bin, "a\xff\x00z", 4, &r), 0);
    assert_status(&r, 202);
    at_response_free(&r);
    ev = newest_event(t, "api-webhook");
    assert_string_equal(str(get(ev, "data"), "body"), "a\xef\xbf\xbd\xef\xbf\xbdz");
    cJSON_Delete(ev);
    const char *const json[] = {"Content-Type: application/vnd.acme+json", NULL};
    post(t, "/api/webhooks/open", json, "[1, 2, {\"a\": null}]  \r\n", &r);
    assert_status(&r, 202);
    at_response_free(&r);
    ev = newest_event(t, "api-webhook");
    assert_int_equal(cJSON_GetArraySize(get(get(ev, "data"), "body")), 3);
    cJSON_Delete(ev);
    int before = count_events(t, "api-webhook");
    static const char *const broken[] = {"{\"a\": ", "{} trailing", "nope",
                                         "{\"a\": \"\xff\"}"};
    const char *const js[] = {"Content-Type: application/json", NULL};
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        post(t, "/api/webhooks/open", js, broken[i], &r);
        assert_error(&r, 400, "invalid_body");
        at_response_free(&r);
    }
    assert_int_equal(at_request(t, "POST", "/api/webhooks/open", js, "{}\0{}", 5, &r), 0);
    assert_error(&r, 400, "invalid_body");
    at_response_free(&r);
    assert_int_equal(count_events(t, "api-webhook"), before);
    at_stop(t);
}

/* api-webhook's "/api/webhooks/" next to a fixture's exact
 * "/api/webhooks/test": each path goes to the most specific endpoint. */
static void test_prefix_routing(void **state)
{
    (void)state;
    apitest *t = start_hooks();
    at_response r;
    assert_int_equal(at_request(t, "GET", "/api/event-sources/api-webhook", NULL, NULL, 0, &r),
                     0);
    assert_status(&r, 200);
    assert_string_equal(str(r.json, "webhookEndpoint"), "/api/webhooks/");
    assert_string_equal(str(r.json, "state"), "running");
    at_response_free(&r);

    const char *const tok[] = {"Content-Type: application/json", "X-Test-Token: ok", NULL};
    post(t, "/api/webhooks/test", tok, "{\"a\": 1}", &r);
    assert_status(&r, 202);
    char *count = at_header(&r, "X-Webhook-Count"); /* the fixture's answer */
    assert_string_equal(count, "1");
    free(count);
    at_response_free(&r);
    post(t, "/api/webhooks/test/", tok, "{\"a\": 1}", &r);
    assert_status(&r, 202);
    count = at_header(&r, "X-Webhook-Count");
    assert_string_equal(count, "2");
    free(count);
    at_response_free(&r);
    /* below the fixture's exact endpoint: the prefix endpoint's */
    post(t, "/api/webhooks/test/sub", tok, "{}", &r);
    assert_error(&r, 404, "not_found");
    assert_contains(str(get(r.json, "error"), "message"), "no such webhook");
    at_response_free(&r);
    post(t, "/api/webhooks/open", tok, "{}", &r);
    assert_status(&r, 202);
    assert_null(at_header(&r, "X-Webhook-Count"));
    at_response_free(&r);
    assert_int_equal(count_events(t, "webhook-source"), 2);
    assert_int_equal(count_events(t, "api-webhook"), 1);
    at_stop(t);

    /* the more specific source failed: its path is 503, it does not fall
     * through to the prefix endpoint */
    at_options o = {.fixtures = hook_fixtures,
                    .builtins = hook_builtins,
                    .plugin_configs = "{\"webhook-source\": {\"token\": 5},"
                                      " \"api-webhook\": {\"hooks\": [{\"name\": \"test\"}]}}"};
    t = at_start(&o);
    post(t, "/api/webhooks/test", tok, "{}", &r);
    assert_error(&r, 503, "unavailable");
    assert_contains(str(get(r.json, "error"), "message"), "webhook-source");
    at_response_free(&r);
    assert_int_equal(count_events(t, "api-webhook"), 0);
    at_stop(t);
}

/* Bad config is refused at load, naming the field. */
static void assert_hook_config_refused(const char *hooks, const char *why)
{
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "{\"api-webhook\": {\"hooks\": %s}}", hooks);
    at_options o = {.fixtures = hook_fixtures, .builtins = hook_builtins, .plugin_configs = cfg};
    apitest *t = at_start(&o);
    const plugin *p = registry_find_any(t->r, "api-webhook");
    assert_non_null(p);
    assert_int_equal(p->state, PLUGIN_FAILED);
    assert_contains(p->error, why);
    at_stop(t);
}

static void test_hook_config_refused(void **state)
{
    (void)state;
    assert_hook_config_refused("[{\"name\": \"a\", \"signature\": \"github\"}]",
                               "hooks[0].secret: required with signature 'github'");
    assert_hook_config_refused("[{\"name\": \"a\"}, {\"name\": \"b\", \"signature\": "
                               "\"standard\", \"secret\": \"whsec_not base64!\"}]",
                               "hooks[1].secret: a Standard Webhooks secret");
    assert_hook_config_refused("[{\"name\": \"a\"}, {\"name\": \"a\"}]",
                               "hooks[1].name: 'a' is already hooks[0]");
    assert_hook_config_refused("[{\"name\": \"Not_Kebab\"}]", "hooks[0].name");
    assert_hook_config_refused("[{\"name\": \"a\", \"secret\": \"x\"}]",
                               "hooks[0].secret: set, but signature is none");
    assert_hook_config_refused("[{\"name\": \"a\", \"token_header\": \"X-T\"}]",
                               "hooks[0].token_header: set, but there is no token");
    assert_hook_config_refused("[{\"name\": \"a\", \"signature\": \"hmac\", \"secret\": \"x\"}]",
                               "hooks[0].signature");
}

/* ---- web-client-upload --------------------------------------------------------- */

static const char *const upload_builtins[] = {"web-client-upload", NULL};
static const char upload_config[] =
    "{\"web-client-upload\": {\"max_bytes\": 4096, \"max_files\": 3, \"subdir\": \"in/box\","
    " \"tokens\": [{\"name\": \"alice\", \"token\": \"alice-t0ken\"},"
    "              {\"name\": \"bob\", \"token\": \"bob-t0ken\"}]}}";

static apitest *start_uploads(const char *config, const char *host_yaml)
{
    at_options o = {.builtins = upload_builtins, .plugin_configs = config, .host_yaml = host_yaml};
    apitest *t = at_start(&o);
    const plugin *p = registry_find(t->r, "web-client-upload");
    assert_non_null(p);
    assert_int_equal(p->state, PLUGIN_RUNNING);
    return t;
}

typedef struct file_part {
    const char *field, *filename, *type;
    const char *data;
    size_t len;
} file_part;

typedef struct text_part {
    const char *name, *value;
} text_part;

/* A real multipart/form-data POST built by libcurl's mime API. */
static void post_form(int port, const char *token, const char *const *headers,
                      const file_part *files, size_t n_files, const text_part *fields,
                      size_t n_fields, at_response *out)
{
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_mime *mime = curl_mime_init(c);
    for (size_t i = 0; i < n_fields; i++) {
        curl_mimepart *p = curl_mime_addpart(mime);
        curl_mime_name(p, fields[i].name);
        curl_mime_data(p, fields[i].value, CURL_ZERO_TERMINATED);
    }
    for (size_t i = 0; i < n_files; i++) {
        curl_mimepart *p = curl_mime_addpart(mime);
        curl_mime_name(p, files[i].field ? files[i].field : "file");
        curl_mime_data(p, files[i].data, files[i].len);
        curl_mime_filename(p, files[i].filename);
        if (files[i].type)
            curl_mime_type(p, files[i].type);
    }
    struct curl_slist *hl = curl_slist_append(NULL, "Expect:");
    char auth[128];
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hl = curl_slist_append(hl, auth);
    }
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/uploads", port);
    FILE *body = open_memstream(&out->body, &out->body_len);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    fclose(body);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hl);
    curl_mime_free(mime);
    curl_easy_cleanup(c);
    out->headers = strdup("");
    out->json = cJSON_Parse(out->body);
    if (rc != CURLE_OK)
        print_error("curl: %s\n", curl_easy_strerror(rc));
    assert_int_equal(rc, CURLE_OK);
}

static void sha256_hex(const char *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    assert_true(EVP_Digest(data, len, md, &n, EVP_sha256(), NULL));
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Files in the upload folder (not the hidden .part ones). */
static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static char *upload_dir(apitest *t, const char *subdir)
{
    char *dir = NULL;
    assert_true(asprintf(&dir, "%s/plugins/web-client-upload/%s", t->data, subdir) > 0);
    return dir;
}

static void test_upload_stores_file(void **state)
{
    (void)state;
    apitest *t = start_uploads(upload_config, NULL);
    at_response r;
    /* binary content, NUL bytes and a boundary-like line included */
    char content[3000];
    for (size_t i = 0; i < sizeof content; i++)
        content[i] = (char)(i * 7 + i / 13);
    memcpy(content + 100, "\r\n--------------------------\r\n", 30);
    char want_sha[65];
    sha256_hex(content, sizeof content, want_sha);
    file_part f = {.field = "doc", .filename = "report.csv", .type = "text/csv",
                   .data = content, .len = sizeof content};
    text_part fields[] = {{"user_id", "mallory"}, {"note", "quarterly numbers"}};
    post_form(t->port, "alice-t0ken", NULL, &f, 1, fields, 2, &r);
    assert_status(&r, 202);
    assert_true(cJSON_IsTrue(get(r.json, "accepted")));
    const cJSON *f0 = cJSON_GetArrayItem(get(r.json, "files"), 0);
    assert_string_equal(str(f0, "sha256"), want_sha);
    assert_int_equal(get(f0, "file_size")->valueint, (int)sizeof content);
    assert_string_equal(str(f0, "filename"), "report.csv");
    char *upload_id = strdup(str(f0, "upload_id"));
    char *event_id = strdup(str(f0, "id"));
    at_response_free(&r);

    cJSON *ev = newest_event(t, "web-client-upload");
    assert_string_equal(str(ev, "id"), event_id);
    assert_string_equal(str(ev, "event_type"), "file_upload");
    const cJSON *data = get(ev, "data");
    assert_string_equal(str(data, "upload_id"), upload_id);
    assert_string_equal(str(data, "filename"), "report.csv");
    assert_int_equal(get(data, "file_size")->valueint, (int)sizeof content);
    assert_string_equal(str(data, "content_type"), "text/csv");
    assert_string_equal(str(data, "sha256"), want_sha);
    assert_string_equal(str(data, "field"), "doc");
    assert_string_equal(str(get(data, "fields"), "note"), "quarterly numbers");
    /* the token decides who uploaded, not a form field */
    assert_string_equal(str(data, "user_id"), "alice");
    assert_string_equal(str(get(ev, "metadata"), "user_id"), "alice");
    /* the file, under the data directory's subfolder, byte for byte */
    char *dir = upload_dir(t, "in/box");
    char real_dir[4096];
    assert_non_null(realpath(dir, real_dir));
    const char *path = str(data, "stored_path");
    char want_path[4200];
    snprintf(want_path, sizeof want_path, "%s/%s-report.csv", real_dir, upload_id);
    assert_string_equal(path, want_path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, (off_t)sizeof content);
    assert_int_equal(st.st_mode & 0777, 0640);
    FILE *fp = fopen(path, "rb");
    char back[sizeof content];
    assert_int_equal(fread(back, 1, sizeof back, fp), sizeof back);
    fclose(fp);
    assert_memory_equal(back, content, sizeof content);
    assert_int_equal(count_files(dir), 1);
    cJSON_Delete(ev);

    /* several files in one request: one event and one file each */
    file_part two[] = {{.filename = "a.txt", .data = "alpha", .len = 5},
                       {.filename = "b.bin", .type = "application/x-thing", .data = "", .len = 0}};
    post_form(t->port, "bob-t0ken", NULL, two, 2, NULL, 0, &r);
    assert_status(&r, 202);
    assert_int_equal(cJSON_GetArraySize(get(r.json, "files")), 2);
    at_response_free(&r);
    assert_int_equal(count_events(t, "web-client-upload"), 3);
    ev = newest_event(t, "web-client-upload");
    assert_string_equal(str(get(ev, "data"), "user_id"), "bob");
    cJSON_Delete(ev);
    assert_int_equal(count_files(dir), 3);
    free(dir);
    free(upload_id);
    free(event_id);
    at_stop(t);
}

static void test_upload_hostile_names(void **state)
{
    (void)state;
    apitest *t = start_uploads(upload_config, NULL);
    static const struct {
        const char *sent, *display, *stored_suffix;
    } names[] = {
        {"../../etc/passwd", "passwd", "-passwd"},
        {"..\\..\\windows\\evil.txt", "evil.txt", "-evil.txt"},
        {"/abs/path/x.csv", "x.csv", "-x.csv"},
        {"..", "upload", "-upload"},
        {"dir/", "upload", "-upload"},
        {".hidden", ".hidden", "-_hidden"},
        {"a b;c$|`.csv", "a b;c$|`.csv", "-a_b_c___.csv"},
        {"r\xc3\xa9sum\xc3\xa9.pdf", "r\xc3\xa9sum\xc3\xa9.pdf", "-r__sum__.pdf"},
        {"tab\there", "tab\xef\xbf\xbdhere", "-tab___here"},
    };
    char *dir = upload_dir(t, "in/box");
    char real_dir[4096];
    assert_non_null(realpath(dir, real_dir));
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        at_response r;
        file_part f = {.filename = names[i].sent, .data = "x", .len = 1};
        post_form(t->port, "alice-t0ken", NULL, &f, 1, NULL, 0, &r);
        assert_status(&r, 202);
        at_response_free(&r);
        cJSON *ev = newest_event(t, "web-client-upload");
        const cJSON *data = get(ev, "data");
        assert_string_equal(str(data, "filename"), names[i].display);
        char want[4200];
        snprintf(want, sizeof want, "%s/%s%s", real_dir, str(data, "upload_id"),
                 names[i].stored_suffix);
        assert_string_equal(str(data, "stored_path"), want);
        assert_int_equal(access(want, F_OK), 0);
        cJSON_Delete(ev);
    }
    /* nothing landed anywhere but the folder */
    assert_int_equal(count_files(dir), (int)(sizeof names / sizeof names[0]));
    char *etc = tu_join(t->root, "etc");
    assert_int_equal(access(etc, F_OK), -1);
    free(etc);
    free(dir);
    at_stop(t);
}

static void test_upload_refusals(void **state)
{
    (void)state;
    apitest *t = start_uploads(upload_config, "server: {max_body_bytes: 65536}\n");
    char *dir = upload_dir(t, "in/box");
    at_response r;
    char big[5000];
    memset(big, 'b', sizeof big);

    /* over max_bytes (4096): 413 from the plugin, nothing stored */
    file_part over = {.filename = "big.csv", .data = big, .len = sizeof big};
    post_form(t->port, "alice-t0ken", NULL, &over, 1, NULL, 0, &r);
    assert_error(&r, 413, "payload_too_large");
    at_response_free(&r);
    /* in all: two files of 2500 */
    file_part halves[] = {{.filename = "a", .data = big, .len = 2500},
                          {.filename = "b", .data = big, .len = 2500}};
    post_form(t->port, "alice-t0ken", NULL, halves, 2, NULL, 0, &r);
    assert_error(&r, 413, "payload_too_large");
    at_response_free(&r);
    /* over the host's server.max_body_bytes: the host's 413 first */
    char *huge = calloc(1, 70000);
    file_part host_over = {.filename = "huge.csv", .data = huge, .len = 70000};
    post_form(t->port, "alice-t0ken", NULL, &host_over, 1, NULL, 0, &r);
    assert_error(&r, 413, "payload_too_large");
    assert_contains(str(get(r.json, "error"), "message"), "server.max_body_bytes");
    at_response_free(&r);
    free(huge);
    /* more files than max_files (3), and no file at all */
    file_part four[] = {{.filename = "1", .data = "1", .len = 1},
                        {.filename = "2", .data = "2", .len = 1},
                        {.filename = "3", .data = "3", .len = 1},
                        {.filename = "4", .data = "4", .len = 1}};
    post_form(t->port, "alice-t0ken", NULL, four, 4, NULL, 0, &r);
    assert_error(&r, 400, "invalid_body");
    at_response_free(&r);
    text_part only[] = {{"note", "no file here"}};
    post_form(t->port, "alice-t0ken", NULL, NULL, 0, only, 1, &r);
    assert_error(&r, 400, "invalid_body");
    assert_contains(str(get(r.json, "error"), "message"), "no file part");
    at_response_free(&r);
    /* authentication */
    file_part one = {.filename = "x.csv", .data = "1,2\n", .len = 4};
    post_form(t->port, NULL, NULL, &one, 1, NULL, 0, &r);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);
    post_form(t->port, "alice-t0keN", NULL, &one, 1, NULL, 0, &r);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);
    /* other methods and media types */
    static const char *const bearer[] = {"Authorization: Bearer alice-t0ken", NULL};
    assert_int_equal(at_request(t, "GET", "/api/uploads", bearer, NULL, 0, &r), 0);
    assert_error(&r, 405, "method_not_allowed");
    at_response_free(&r);
    static const char *const plain[] = {"Authorization: Bearer alice-t0ken",
                                        "Content-Type: text/plain", NULL};
    assert_int_equal(at_request(t, "POST", "/api/uploads", plain, "hello", (size_t)-1, &r), 0);
    assert_error(&r, 415, "unsupported_media_type");
    at_response_free(&r);
    static const char *const no_boundary[] = {"Authorization: Bearer alice-t0ken",
                                              "Content-Type: multipart/form-data", NULL};
    assert_int_equal(at_request(t, "POST", "/api/uploads", no_boundary, "x", 1, &r), 0);
    assert_error(&r, 400, "invalid_body");
    assert_contains(str(get(r.json, "error"), "message"), "boundary");
    at_response_free(&r);
    static const char *const mp[] = {"Authorization: Bearer alice-t0ken",
                                     "Content-Type: multipart/form-data; boundary=XyZ", NULL};
    const char *truncated = "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; "
                            "filename=\"a.csv\"\r\n\r\n1,2,3\r\n--Xy";
    assert_int_equal(at_request(t, "POST", "/api/uploads", mp, truncated, (size_t)-1, &r), 0);
    assert_error(&r, 400, "invalid_body");
    assert_contains(str(get(r.json, "error"), "message"), "malformed multipart body");
    at_response_free(&r);

    assert_int_equal(count_events(t, "web-client-upload"), 0);
    assert_int_equal(count_files(dir), 0);
    free(dir);
    at_stop(t);
}

/* Who uploaded, without tokens: allow_anonymous; and the default refuses. */
static void test_upload_anonymous(void **state)
{
    (void)state;
    apitest *t = start_uploads("{\"web-client-upload\": {\"allow_anonymous\": true}}", NULL);
    at_response r;
    file_part f = {.filename = "a.csv", .data = "1", .len = 1};
    text_part uid[] = {{"user_id", "user-123"}};
    post_form(t->port, NULL, NULL, &f, 1, uid, 1, &r);
    assert_status(&r, 202);
    at_response_free(&r);
    cJSON *ev = newest_event(t, "web-client-upload");
    assert_string_equal(str(get(ev, "data"), "user_id"), "user-123");
    assert_string_equal(str(get(ev, "metadata"), "user_id"), "user-123");
    cJSON_Delete(ev);
    static const char *const xuid[] = {"X-User-Id: user-9", NULL};
    post_form(t->port, NULL, xuid, &f, 1, NULL, 0, &r);
    assert_status(&r, 202);
    at_response_free(&r);
    ev = newest_event(t, "web-client-upload");
    assert_string_equal(str(get(ev, "data"), "user_id"), "user-9");
    cJSON_Delete(ev);
    post_form(t->port, NULL, NULL, &f, 1, NULL, 0, &r);
    assert_status(&r, 202);
    at_response_free(&r);
    ev = newest_event(t, "web-client-upload");
    assert_true(cJSON_IsNull(get(get(ev, "data"), "user_id")));
    cJSON_Delete(ev);
    /* the default folder */
    char *dir = upload_dir(t, "uploads");
    assert_int_equal(count_files(dir), 3);
    free(dir);
    /* a bad token is not silently anonymous */
    post_form(t->port, "guess", NULL, &f, 1, NULL, 0, &r);
    assert_error(&r, 401, "unauthorized");
    at_response_free(&r);
    at_stop(t);

    /* no config at all: loads, refuses every upload, says how to enable */
    t = start_uploads(NULL, NULL);
    post_form(t->port, NULL, NULL, &f, 1, NULL, 0, &r);
    assert_error(&r, 401, "unauthorized");
    assert_contains(str(get(r.json, "error"), "message"), "configure tokens");
    at_response_free(&r);
    assert_int_equal(count_events(t, "web-client-upload"), 0);
    at_stop(t);
}

/* A subdir that is a symbolic link (to outside the data directory) is
 * refused at load, never followed. */
static void test_upload_subdir_symlink_refused(void **state)
{
    (void)state;
    char *outside = tu_tempdir("outside");
    /* one instance creates the folder; it is then replaced by a link to
     * outside, and a second instance with the same data directory loads */
    apitest *t = start_uploads("{\"web-client-upload\": {\"tokens\": [{\"name\": \"a\", "
                               "\"token\": \"t\"}]}}", NULL);
    char *dir = upload_dir(t, "uploads");
    assert_int_equal(rmdir(dir), 0);
    assert_int_equal(symlink(outside, dir), 0);
    char *copy = tu_join(t->plugins, "web-client-upload");
    cJSON *configs = cJSON_Parse("{\"web-client-upload\": {\"tokens\": [{\"name\": \"a\", "
                                 "\"token\": \"t\"}]}}");
    loader_options lo2 = {.plugin_configs = configs};
    registry *r2 = registry_new();
    plugin *p = loader_load_one(t->rt, copy, &lo2);
    assert_non_null(p);
    assert_int_equal(p->state, PLUGIN_FAILED);
    assert_contains(p->error, "subdir: 'uploads' is not a directory");
    assert_int_equal(registry_add(r2, p), EVH_OK);
    loader_unload_all(r2);
    registry_free(r2);
    cJSON_Delete(configs);
    free(copy);
    free(dir);
    at_stop(t);
    tu_rmtree(outside);
    free(outside);
}

/* ---- the multipart parser ------------------------------------------------------ */

/* Parse text (len bytes in a heap block of exactly that size, so ASan sees
 * any read past it). */
static int parse(const char *text, size_t len, const char *boundary, mp_form *form,
                 const char **why)
{
    char *copy = malloc(len ? len : 1);
    memcpy(copy, text, len);
    mp_limits lim = {.max_parts = 8, .max_header_bytes = 256};
    int rc = mp_parse(copy, len, boundary, &lim, form, why);
    for (size_t i = 0; rc == MP_OK && i < form->n; i++) {
        assert_true(form->parts[i].data >= copy);
        assert_true(form->parts[i].data + form->parts[i].len <= copy + len);
    }
    mp_form_free(form);
    free(copy);
    return rc;
}

static void test_multipart_parser(void **state)
{
    (void)state;
    /* boundaries from Content-Type */
    char b[MP_BOUNDARY_MAX + 1];
    const char *why = NULL;
    assert_int_equal(mp_boundary("multipart/form-data; boundary=abc", b, &why), MP_OK);
    assert_string_equal(b, "abc");
    assert_int_equal(mp_boundary("Multipart/Form-Data ; charset=utf-8;boundary=\"a b:c\";", b,
                                 &why),
                     MP_OK);
    assert_string_equal(b, "a b:c");
    static const struct {
        const char *ct;
        int want;
    } cts[] = {
        {NULL, MP_NOT_MULTIPART},
        {"application/json", MP_NOT_MULTIPART},
        {"multipart/mixed; boundary=a", MP_NOT_MULTIPART},
        {"multipart/form-datax; boundary=a", MP_NOT_MULTIPART},
        {"multipart/form-data", MP_MALFORMED},
        {"multipart/form-data; boundary=", MP_MALFORMED},
        {"multipart/form-data; boundary=\"\"", MP_MALFORMED},
        {"multipart/form-data; boundary=\"abc", MP_MALFORMED},
        {"multipart/form-data; boundary=\"a \"", MP_MALFORMED},
        {"multipart/form-data; boundary=a; boundary=b", MP_MALFORMED},
        {"multipart/form-data; boundary=a{b", MP_MALFORMED},
        {"multipart/form-data; boundary=\"a{b\"", MP_MALFORMED},
        {"multipart/form-data; boundary", MP_MALFORMED},
        {"multipart/form-data boundary=a", MP_MALFORMED},
        {"multipart/form-data; boundary=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
         "xxxxxxxxxxxxxx",
         MP_MALFORMED},
    };
    for (size_t i = 0; i < sizeof cts / sizeof cts[0]; i++) {
        int rc = mp_boundary(cts[i].ct, b, &why);
        if (rc != cts[i].want)
            fail_msg("Content-Type %s: %d, want %d", cts[i].ct ? cts[i].ct : "(null)", rc,
                     cts[i].want);
    }

    /* a good body, with preamble, padding, epilogue, fields and files */
    const char good[] = "preamble\r\n--B  \r\n"
                        "Content-Disposition: form-data; name=\"note\"\r\n\r\n"
                        "hello\r\n--B\r\n"
                        "content-disposition: FORM-DATA; name=f; filename=\"C:\\dir\\a \\\"q\\\".csv\"\r\n"
                        "Content-Type: text/csv\r\n\r\n"
                        "1,2 --B inline\r\n-B\r\n\r\n--B\r\n"
                        "Content-Disposition: form-data; name=\"g\"; filename*=UTF-8''%C3%A9.txt\r\n\r\n"
                        "\r\n--B--\r\nepilogue";
    char *copy = malloc(sizeof good - 1);
    memcpy(copy, good, sizeof good - 1);
    mp_form form;
    mp_limits lim = {.max_parts = 8, .max_header_bytes = 256};
    assert_int_equal(mp_parse(copy, sizeof good - 1, "B", &lim, &form, &why), MP_OK);
    assert_int_equal(form.n, 3);
    assert_string_equal(form.parts[0].name, "note");
    assert_null(form.parts[0].filename);
    assert_int_equal(form.parts[0].len, 5);
    assert_memory_equal(form.parts[0].data, "hello", 5);
    assert_string_equal(form.parts[1].name, "f");
    assert_string_equal(form.parts[1].filename, "C:\\dir\\a \"q\".csv");
    assert_string_equal(form.parts[1].content_type, "text/csv");
    assert_int_equal(form.parts[1].len, strlen("1,2 --B inline\r\n-B\r\n"));
    assert_string_equal(form.parts[2].filename, "\xc3\xa9.txt");
    assert_int_equal(form.parts[2].len, 0);
    mp_form_free(&form);
    free(copy);
    /* no parts at all is well-formed (the source then says: no file) */
    assert_int_equal(parse("--B--", 5, "B", &form, &why), MP_OK);

    /* malformed: each must be refused, none may crash */
    static const char *const bad[] = {
        "",
        "no boundary here",
        "--B",
        "--B\r\n",
        "--Bjunk\r\n\r\nx\r\n--B--",
        /* the delimiter inside content, followed by other text: refused,
         * not guessed at (RFC 2046: it must not occur in the content) */
        "--B\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--B-more\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx",
        "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--B",
        "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--Bx",
        "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--B\r",
        "--B\r\nContent-Disposition: form-data; name=\"a\"\r\nx\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=\"a\"\n\nx\r\n--B--",
        "--B\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--B--",
        "--B\r\n\r\nx\r\n--B--",
        "--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--",
        "--B\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--B--",
        "--B\r\nContent-Disposition: form-data\r\n\r\nx\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nx\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=\"a\"; name=\"b\"\r\n\r\nx\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=a; filename=\"x\"; filename=y\r\n\r\n\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=\r\n\r\nx\r\n--B--",
        "--B\r\nContent-Disposition: form-data; =a\r\n\r\nx\r\n--B--",
        "--B\r\nContent-Disposition: form-data name=a\r\n\r\nx\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=a\r\n"
        "Content-Disposition: form-data; name=b\r\n\r\nx\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=a\r\nContent-Type: a\r\n"
        "Content-Type: b\r\n\r\nx\r\n--B--",
        "--B\r\nContent-Disposition: form-data;\r\n name=a\r\n\r\nx\r\n--B--",
        "--B\r\nBad Header: x\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--B--",
        "--B\r\nno colon\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=a; filename*=ISO-8859-1''%E9\r\n\r\n\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=a; filename*=UTF-8''%G1\r\n\r\n\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=a; filename*=UTF-8''%00\r\n\r\n\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=a; filename*=UTF-8''%4\r\n\r\n\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=\"a\x01\"\r\n\r\nx\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--B\r\n",
        "--B\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--B\r\n\r\n",
        /* headers over the 256-byte limit of this test */
        "--B\r\nContent-Disposition: form-data; name=a; x=\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxx\"\r\n\r\nx\r\n--B--",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        int rc = parse(bad[i], strlen(bad[i]), "B", &form, &why);
        if (rc != MP_MALFORMED)
            fail_msg("bad[%zu] gave %d, want MP_MALFORMED: %s", i, rc, bad[i]);
        assert_non_null(why);
    }
    /* a NUL byte inside a header line */
    static const char nul[] = "--B\r\nContent-Disposition: form-data; name=a\0b\r\n\r\nx\r\n--B--";
    assert_int_equal(parse(nul, sizeof nul - 1, "B", &form, &why), MP_MALFORMED);
    /* too many parts (limit 8 here) */
    char many[2048] = "";
    for (int i = 0; i < 9; i++)
        strcat(many, "--B\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n");
    strcat(many, "--B--");
    assert_int_equal(parse(many, strlen(many), "B", &form, &why), MP_TOO_MANY);

    /* mutations of the good body: truncations, flipped and inserted bytes.
     * Whatever the result, it must come back without a crash or a read out
     * of bounds (ASan), and parts must lie inside the body (parse checks). */
    unsigned seed = 12345;
    size_t glen = sizeof good - 1;
    char *m = malloc(glen + 8);
    int ok = 0, refused = 0;
    for (int round = 0; round < 20000; round++) {
        memcpy(m, good, glen);
        size_t len = glen;
        int edits = 1 + (int)(seed % 4);
        for (int e = 0; e < edits; e++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % len;
            switch ((seed >> 4) % 4) {
            case 0:
                len = at; /* truncate */
                break;
            case 1:
                m[at] = (char)(seed >> 16); /* flip */
                break;
            case 2:
                m[at] = "\r\n-\"\\;=B\0"[(seed >> 16) % 9]; /* a syntax byte */
                break;
            default:
                if (len < glen + 8) { /* insert */
                    memmove(m + at + 1, m + at, len - at);
                    m[at] = "\r\n-B"[(seed >> 16) % 4];
                    len++;
                }
            }
            if (len == 0)
                break;
        }
        int rc = parse(m, len, "B", &form, &why);
        assert_true(rc == MP_OK || rc == MP_MALFORMED || rc == MP_TOO_MANY);
        ok += rc == MP_OK;
        refused += rc != MP_OK;
    }
    free(m);
    assert_true(ok > 0 && refused > 0);
}

/* Hostile bodies through the running source: all 400, the source keeps
 * serving, nothing is stored. */
static void test_upload_malformed_over_http(void **state)
{
    (void)state;
    apitest *t = start_uploads(upload_config, NULL);
    static const char *const mp[] = {"Authorization: Bearer alice-t0ken",
                                     "Content-Type: multipart/form-data; boundary=B", NULL};
    static const char *const bodies[] = {
        "",
        "--B--\r\n", /* no file part */
        "garbage",
        "--B\r\n\r\n\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=f; filename=\"a\"\r\n\r\nabc",
        "--B\r\nContent-Disposition: form-data; name=f; filename=\"a\r\n\r\nabc\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=f; filename=a\r\n\r\nabc\r\n--B\r\n--B--",
    };
    at_response r;
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        assert_int_equal(at_request(t, "POST", "/api/uploads", mp, bodies[i], (size_t)-1, &r),
                         0);
        assert_error(&r, 400, "invalid_body");
        at_response_free(&r);
    }
    /* and a good one still works */
    const char *fine = "--B\r\nContent-Disposition: form-data; name=f; filename=ok.csv\r\n\r\n"
                       "1,2\r\n--B--\r\n";
    assert_int_equal(at_request(t, "POST", "/api/uploads", mp, fine, (size_t)-1, &r), 0);
    assert_status(&r, 202);
    at_response_free(&r);
    assert_int_equal(count_events(t, "web-client-upload"), 1);
    char *dir = upload_dir(t, "in/box");
    assert_int_equal(count_files(dir), 1);
    free(dir);
    at_stop(t);
}

int main(void)
{
    log_set_level(EVH_LOG_ERROR);
    umask(022);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standard_reference_vector),
        cmocka_unit_test(test_github_signature),
        cmocka_unit_test(test_standard_webhooks),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_hooks_paths_methods_bodies),
        cmocka_unit_test(test_prefix_routing),
        cmocka_unit_test(test_hook_config_refused),
        cmocka_unit_test(test_upload_stores_file),
        cmocka_unit_test(test_upload_hostile_names),
        cmocka_unit_test(test_upload_refusals),
        cmocka_unit_test(test_upload_anonymous),
        cmocka_unit_test(test_upload_subdir_symlink_refused),
        cmocka_unit_test(test_multipart_parser),
        cmocka_unit_test(test_upload_malformed_over_http),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
