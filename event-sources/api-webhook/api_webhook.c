/* api-webhook - takes webhooks at /api/webhooks/{name} and emits
 * webhook_received for each request that passes its hook's checks.
 *
 * The manifest declares the prefix endpoint "/api/webhooks/", so the host
 * hands this source every request below it (evh_source.http, SDK ABI 1.1);
 * the host does not check API keys there, so each request is authenticated
 * here, by the hook its path names (config "hooks"):
 *   - signature "github":   X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of
 *                           the raw body, keyed with `secret`>;
 *   - signature "standard": Standard Webhooks: webhook-signature holds
 *                           "v1,<base64 HMAC-SHA256 of id.timestamp.body>"
 *                           entries, keyed with the base64 key of a
 *                           "whsec_..." secret, and webhook-timestamp must
 *                           be within tolerance_s of now (replays);
 *   - token:                a shared secret, "Authorization: Bearer <token>"
 *                           or the whole value of token_header.
 * Every comparison with a secret is constant-time (CRYPTO_memcmp).  A failed
 * check answers 401 and emits nothing; an unknown hook 404; a method the
 * hook does not take 405.  An accepted request is emitted from the http
 * call, where emit returns once the event is stored, so the 202 {"id":
 * "<event id>"} it answers means the event is durable.
 *
 * The event keeps the request minus its secrets: Authorization, Cookie,
 * X-API-Key, the signature headers, the token header and the hook's
 * secret_headers are never stored.
 *
 * http runs on several host threads at once; everything it reads is built
 * by init and never changes, so it needs no lock.  run() only waits. */
#include <evhost/evhost.h>

#include "../common/http_source.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define PLUGIN_ID "api-webhook"
#define HOOK_NAME_MAX 64
/* The host refuses event data larger than this (EVH_E_SCHEMA); a request
 * whose event would be larger gets 413 instead of a puzzling 400. */
#define EVENT_MAX_BYTES (1024 * 1024)
#define DEFAULT_TOLERANCE_S 300
#define WEBHOOK_ID_MAX 256      /* Standard Webhooks: webhook-id bytes */
#define SIGNATURE_HEADER_MAX 4096 /* bytes of webhook-signature we look at */
#define SHA256_LEN 32

enum { SIG_NONE, SIG_GITHUB, SIG_STANDARD };

/* Methods as bits, in this order. */
static const char *const method_names[] = {"GET",   "HEAD",   "POST",   "PUT",
                                           "PATCH", "DELETE", "OPTIONS"};
#define N_METHODS (sizeof method_names / sizeof method_names[0])
#define METHOD_POST (1u << 2)

/* Headers never stored, whatever the config says (lower case). */
static const char *const always_secret[] = {
    "authorization",       "proxy-authorization", "cookie",           "x-api-key",
    "x-hub-signature",     "x-hub-signature-256", "webhook-signature",
};

typedef struct hook {
    char *name;
    int sig;
    unsigned char *key; /* HMAC key; Standard Webhooks: the decoded secret */
    size_t key_len;
    long long tolerance_s;
    char *token;        /* NULL: no token */
    char *token_header; /* "Authorization": "Bearer <token>" */
    int bearer;
    char **secret_headers; /* extra headers kept out of the event */
    size_t n_secret_headers;
    unsigned methods; /* bits of method_names */
} hook;

typedef struct aw {
    const evh_host_api *api;
    evh_host *host;
    hook *hooks;
    size_t n_hooks;
} aw;

/* ---- small helpers ------------------------------------------------------- */

/* HMAC-SHA256 of the n pieces data[i] (len[i] bytes each) one after the
 * other, without copying them together; 0 on success. */
static int hmac_sha256(const unsigned char *key, size_t key_len, const void *const *data,
                       const size_t *len, size_t n, unsigned char out[SHA256_LEN])
{
    int ok = 0;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                           OSSL_PARAM_construct_end()};
    size_t out_len = 0;
    if (ctx && EVP_MAC_init(ctx, key, key_len, params)) {
        ok = 1;
        for (size_t i = 0; ok && i < n; i++)
            ok = EVP_MAC_update(ctx, data[i], len[i]);
        ok = ok && EVP_MAC_final(ctx, out, &out_len, SHA256_LEN) && out_len == SHA256_LEN;
    }
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return ok ? 0 : -1;
}

/* Strict base64 (with padding) into a new buffer; NULL when malformed. */
static unsigned char *base64_decode(const char *text, size_t *out_len)
{
    size_t n = strlen(text);
    if (n == 0 || n % 4 != 0)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (!isalnum(c) && c != '+' && c != '/' && !(c == '=' && i >= n - 2))
            return NULL;
    }
    if (text[n - 2] == '=' && text[n - 1] != '=')
        return NULL;
    unsigned char *out = malloc(n / 4 * 3 + 1);
    if (!out)
        return NULL;
    /* EVP_DecodeBlock counts padding as zero bytes: take them off */
    int len = EVP_DecodeBlock(out, (const unsigned char *)text, (int)n);
    if (len < 0) {
        free(out);
        return NULL;
    }
    len -= (text[n - 1] == '=') + (text[n - 2] == '=');
    *out_len = (size_t)len;
    return out;
}

/* The length of the valid UTF-8 character at p (before end), 0 when the
 * bytes there are not one (or are a NUL): no overlong forms, surrogates or
 * code points past U+10FFFF. */
static size_t utf8_char(const unsigned char *p, const unsigned char *end)
{
    unsigned c = *p;
    size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                              : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || c == 0 || (size_t)(end - p) < len)
        return 0;
    unsigned cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static int utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    for (size_t len; p < end; p += len) {
        if (!(len = utf8_char(p, end)))
            return 0;
    }
    return 1;
}

/* Text as valid UTF-8 for JSON: invalid sequences and NUL bytes become
 * U+FFFD.  New string (malloc), NULL when out of memory. */
static char *utf8_clean(const char *s, size_t n)
{
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        size_t len = utf8_char(p, end);
        if (len) {
            memcpy(o, p, len);
            o += len;
            p += len;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            p++;
        }
    }
    *o = '\0';
    return out;
}

/* cJSON string of cleaned text (NULL when out of memory). */
static cJSON *clean_string(const char *s, size_t n)
{
    char *t = utf8_clean(s, n);
    cJSON *v = t ? cJSON_CreateString(t) : NULL;
    free(t);
    return v;
}

/* ---- answers ------------------------------------------------------------- */

/* ---- configuration -------------------------------------------------------- */

static void hook_release(hook *h)
{
    free(h->name);
    if (h->key) {
        OPENSSL_cleanse(h->key, h->key_len);
        free(h->key);
    }
    if (h->token) {
        OPENSSL_cleanse(h->token, strlen(h->token));
        free(h->token);
    }
    free(h->token_header);
    for (size_t i = 0; i < h->n_secret_headers; i++)
        free(h->secret_headers[i]);
    free(h->secret_headers);
}

static void aw_free(aw *a)
{
    for (size_t i = 0; i < a->n_hooks; i++)
        hook_release(&a->hooks[i]);
    free(a->hooks);
    const evh_host_api *api = a->api;
    api->free(a);
}

static const char *jstring(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

/* One entry of "hooks"; a message naming the field when it is wrong (from
 * api->mprintf), NULL when fine. */
static char *hook_read(const aw *a, const cJSON *o, size_t i, hook *h)
{
    const evh_host_api *api = a->api;
    const char *name = jstring(o, "name");
    if (!name || !*name || strlen(name) > HOOK_NAME_MAX)
        return api->mprintf("hooks[%zu].name: required, 1 to %d characters", i, HOOK_NAME_MAX);
    for (size_t j = 0; j < i; j++) {
        if (!strcmp(a->hooks[j].name, name))
            return api->mprintf("hooks[%zu].name: '%s' is already hooks[%zu]", i, name, j);
    }
    if (!(h->name = strdup(name)))
        return api->strdup("out of memory");

    const char *sig = jstring(o, "signature");
    const char *secret = jstring(o, "secret");
    h->sig = !sig || !strcmp(sig, "none") ? SIG_NONE
             : !strcmp(sig, "github")     ? SIG_GITHUB
             : !strcmp(sig, "standard")   ? SIG_STANDARD
                                          : -1;
    if (h->sig < 0)
        return api->mprintf("hooks[%zu].signature: must be github, standard or none", i);
    if (h->sig != SIG_NONE && (!secret || !*secret))
        return api->mprintf("hooks[%zu].secret: required with signature '%s'", i, sig);
    if (h->sig == SIG_NONE && secret)
        return api->mprintf("hooks[%zu].secret: set, but signature is none: set signature to "
                            "github or standard (or use token for a shared secret)", i);
    if (h->sig == SIG_GITHUB) {
        h->key_len = strlen(secret);
        if (!(h->key = malloc(h->key_len)))
            return api->strdup("out of memory");
        memcpy(h->key, secret, h->key_len);
    } else if (h->sig == SIG_STANDARD) {
        /* "whsec_<base64>" (the prefix is optional, as in the reference
         * libraries); the HMAC key is the decoded bytes */
        const char *b64 = strncmp(secret, "whsec_", 6) == 0 ? secret + 6 : secret;
        if (!(h->key = base64_decode(b64, &h->key_len)) || h->key_len == 0)
            return api->mprintf("hooks[%zu].secret: a Standard Webhooks secret is "
                                "whsec_<base64 of the key>; this one is not valid base64", i);
    }
    const cJSON *tol = cJSON_GetObjectItemCaseSensitive(o, "tolerance_s");
    h->tolerance_s = cJSON_IsNumber(tol) ? (long long)tol->valuedouble : DEFAULT_TOLERANCE_S;
    if (h->tolerance_s < 1 || h->tolerance_s > 86400)
        return api->mprintf("hooks[%zu].tolerance_s: must be 1 .. 86400", i);
    if (tol && h->sig != SIG_STANDARD)
        return api->mprintf("hooks[%zu].tolerance_s: only used with signature standard", i);

    const char *token = jstring(o, "token");
    const char *token_header = jstring(o, "token_header");
    if (token && !(h->token = strdup(token)))
        return api->strdup("out of memory");
    if (token_header && !token)
        return api->mprintf("hooks[%zu].token_header: set, but there is no token", i);
    if (!(h->token_header = strdup(token_header ? token_header : "Authorization")))
        return api->strdup("out of memory");
    h->bearer = !strcasecmp(h->token_header, "Authorization");

    const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "secret_headers"), *it;
    size_t n = (size_t)cJSON_GetArraySize(list);
    if (n && !(h->secret_headers = calloc(n, sizeof *h->secret_headers)))
        return api->strdup("out of memory");
    cJSON_ArrayForEach(it, list)
    {
        if (!cJSON_IsString(it) || !*it->valuestring)
            return api->mprintf("hooks[%zu].secret_headers[%zu]: must be a header name", i,
                                h->n_secret_headers);
        if (!(h->secret_headers[h->n_secret_headers++] = strdup(it->valuestring)))
            return api->strdup("out of memory");
    }

    list = cJSON_GetObjectItemCaseSensitive(o, "methods");
    h->methods = list ? 0 : METHOD_POST;
    size_t k = 0;
    cJSON_ArrayForEach(it, list)
    {
        size_t m = 0;
        while (m < N_METHODS && !(cJSON_IsString(it) && !strcmp(it->valuestring, method_names[m])))
            m++;
        if (m == N_METHODS)
            return api->mprintf("hooks[%zu].methods[%zu]: not one of GET, HEAD, POST, PUT, "
                                "PATCH, DELETE, OPTIONS", i, k);
        h->methods |= 1u << m;
        k++;
    }
    if (!h->methods)
        return api->mprintf("hooks[%zu].methods: must not be empty", i);
    return NULL;
}

static int32_t aw_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    aw *a = api->alloc(sizeof *a);
    if (!a)
        return EVH_E_NOMEM;
    memset(a, 0, sizeof *a);
    a->api = api;
    a->host = host;
    size_t len = 0;
    const char *text = api->config_json(host, &len);
    cJSON *cfg = cJSON_ParseWithLength(text, len);
    const cJSON *hooks = cJSON_GetObjectItemCaseSensitive(cfg, "hooks"), *o;
    size_t n = (size_t)cJSON_GetArraySize(hooks);
    if (n && !(a->hooks = calloc(n, sizeof *a->hooks))) {
        cJSON_Delete(cfg);
        aw_free(a);
        return EVH_E_NOMEM;
    }
    char *err = NULL;
    cJSON_ArrayForEach(o, hooks)
    {
        err = hook_read(a, o, a->n_hooks, &a->hooks[a->n_hooks]);
        a->n_hooks++; /* released by aw_free even when half read */
        if (err)
            break;
    }
    cJSON_Delete(cfg);
    if (err) {
        *errmsg = err;
        aw_free(a);
        return EVH_E_CONFIG;
    }
    for (size_t i = 0; i < a->n_hooks; i++) {
        const hook *h = &a->hooks[i];
        if (h->sig == SIG_NONE && !h->token)
            api->log(host, EVH_LOG_WARN,
                     "hook '%s' has neither a signature nor a token: anyone who can reach "
                     "/api/webhooks/%s can send it events", h->name, h->name);
    }
    api->log(host, EVH_LOG_INFO, "serving %zu hook(s) under /api/webhooks/", a->n_hooks);
    *ctx = a;
    return EVH_OK;
}

static int32_t aw_run(void *ctx)
{
    aw *a = ctx;
    while (a->api->wait(a->host, 60000) == EVH_OK)
        ;
    return EVH_OK;
}

static void aw_fini(void *ctx)
{
    aw_free(ctx);
}

/* ---- checks ---------------------------------------------------------------- */

/* The hook named by the path "/api/webhooks/<name>" (doubled and trailing
 * "/" allowed), or NULL for any other path below the endpoint. */
static const hook *hook_for_path(const aw *a, const char *path)
{
    static const char *const prefix[] = {"api", "webhooks"};
    const char *p = path;
    for (size_t seg = 0;; seg++) {
        while (*p == '/')
            p++;
        const char *s = p;
        while (*p && *p != '/')
            p++;
        size_t n = (size_t)(p - s);
        if (seg < 2) {
            if (n != strlen(prefix[seg]) || memcmp(s, prefix[seg], n) != 0)
                return NULL;
            continue;
        }
        if (n == 0 || n > HOOK_NAME_MAX)
            return NULL;
        while (*p == '/')
            p++;
        if (*p)
            return NULL; /* more segments: not a hook */
        for (size_t i = 0; i < a->n_hooks; i++) {
            if (strlen(a->hooks[i].name) == n && !memcmp(a->hooks[i].name, s, n))
                return &a->hooks[i];
        }
        return NULL;
    }
}

/* The token check; NULL when it passes, else why not. */
static const char *check_token(const hook *h, const evh_http_request *req)
{
    if (!h->token)
        return NULL;
    const char *v = evh_sources_header(req, h->token_header);
    if (!v)
        return h->bearer ? "missing Authorization: Bearer token" : "missing token header";
    if (h->bearer) {
        if (strncasecmp(v, "Bearer ", 7) != 0)
            return "Authorization is not a Bearer token";
        v += 7;
        while (*v == ' ')
            v++;
    }
    return evh_sources_same_secret(v, strlen(v), h->token) ? NULL : "wrong token";
}

static int hexval(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* GitHub: X-Hub-Signature-256: sha256=<64 hex digits>. */
static const char *check_github(const hook *h, const evh_http_request *req)
{
    const char *v = evh_sources_header(req, "X-Hub-Signature-256");
    if (!v)
        return "missing X-Hub-Signature-256 header";
    if (strncmp(v, "sha256=", 7) != 0 || strlen(v + 7) != 2 * SHA256_LEN)
        return "X-Hub-Signature-256 is not sha256=<64 hex digits>";
    unsigned char given[SHA256_LEN], want[SHA256_LEN];
    for (size_t i = 0; i < SHA256_LEN; i++) {
        int hi = hexval(v[7 + 2 * i]), lo = hexval(v[8 + 2 * i]);
        if (hi < 0 || lo < 0)
            return "X-Hub-Signature-256 is not sha256=<64 hex digits>";
        given[i] = (unsigned char)(hi << 4 | lo);
    }
    const void *data[] = {req->body};
    size_t len[] = {req->body_len};
    if (hmac_sha256(h->key, h->key_len, data, len, 1, want) != 0)
        return "cannot compute the HMAC";
    return CRYPTO_memcmp(given, want, SHA256_LEN) == 0 ? NULL : "signature mismatch";
}

/* Standard Webhooks: webhook-id, webhook-timestamp (Unix seconds, within
 * tolerance_s of now) and webhook-signature, a space-separated list of
 * "v1,<base64 of HMAC-SHA256(key, id.timestamp.body)>"; one must match. */
static const char *check_standard(const hook *h, const evh_http_request *req)
{
    const char *id = evh_sources_header(req, "webhook-id");
    const char *ts = evh_sources_header(req, "webhook-timestamp");
    const char *sigs = evh_sources_header(req, "webhook-signature");
    if (!id || !ts || !sigs)
        return "missing webhook-id, webhook-timestamp or webhook-signature header";
    if (!*id || strlen(id) > WEBHOOK_ID_MAX)
        return "webhook-id is empty or too long";
    size_t tn = strlen(ts);
    if (tn == 0 || tn > 12 || strspn(ts, "0123456789") != tn)
        return "webhook-timestamp is not a Unix time in seconds";
    long long t = strtoll(ts, NULL, 10), now = (long long)time(NULL);
    if (t < now - h->tolerance_s || t > now + h->tolerance_s)
        return "webhook-timestamp is too old or too far in the future";

    unsigned char mac[SHA256_LEN];
    const void *data[] = {id, ".", ts, ".", req->body};
    size_t len[] = {strlen(id), 1, tn, 1, req->body_len};
    if (hmac_sha256(h->key, h->key_len, data, len, 5, mac) != 0)
        return "cannot compute the HMAC";
    unsigned char want[4 * ((SHA256_LEN + 2) / 3) + 1];
    int want_len = EVP_EncodeBlock(want, mac, SHA256_LEN);

    size_t total = strnlen(sigs, SIGNATURE_HEADER_MAX);
    int match = 0;
    for (size_t i = 0; i < total;) {
        while (i < total && sigs[i] == ' ')
            i++;
        size_t start = i;
        while (i < total && sigs[i] != ' ')
            i++;
        size_t n = i - start;
        if (n > 3 && !memcmp(sigs + start, "v1,", 3) && n - 3 == (size_t)want_len)
            match |= CRYPTO_memcmp(sigs + start + 3, want, (size_t)want_len) == 0;
    }
    return match ? NULL : "no valid v1 signature in webhook-signature";
}

/* ---- the event ------------------------------------------------------------- */

static int is_secret_header(const hook *h, const char *name)
{
    for (size_t i = 0; i < sizeof always_secret / sizeof always_secret[0]; i++) {
        if (!strcasecmp(name, always_secret[i]))
            return 1;
    }
    if (h->token && !strcasecmp(name, h->token_header))
        return 1;
    for (size_t i = 0; i < h->n_secret_headers; i++) {
        if (!strcasecmp(name, h->secret_headers[i]))
            return 1;
    }
    return 0;
}

/* obj[name] = value, or ", value" appended to what is there; 0 on success. */
static int add_joined(cJSON *obj, const char *name, const char *value)
{
    cJSON *v = clean_string(value, strlen(value));
    if (!v)
        return -1;
    cJSON *old = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!old)
        return cJSON_AddItemToObject(obj, name, v) ? 0 : (cJSON_Delete(v), -1);
    size_t n = strlen(old->valuestring) + strlen(v->valuestring) + 3;
    char *joined = malloc(n);
    int rc = -1;
    if (joined) {
        snprintf(joined, n, "%s, %s", old->valuestring, v->valuestring);
        cJSON *j = cJSON_CreateString(joined);
        rc = j && cJSON_ReplaceItemInObjectCaseSensitive(obj, name, j) ? 0 : -1;
        if (rc)
            cJSON_Delete(j);
        free(joined);
    }
    cJSON_Delete(v);
    return rc;
}

/* application/json, or any application/...+json, by its media type. */
static int is_json_type(const char *ctype)
{
    if (!ctype)
        return 0;
    while (*ctype == ' ' || *ctype == '\t')
        ctype++;
    size_t n = strcspn(ctype, "; \t");
    if (n == 16 && !strncasecmp(ctype, "application/json", 16))
        return 1;
    return n > 17 && !strncasecmp(ctype, "application/", 12) &&
           !strncasecmp(ctype + n - 5, "+json", 5);
}

/* The body as JSON: parsed when the Content-Type is JSON (NULL and *bad set
 * when it does not parse), text otherwise, null when empty. */
static cJSON *body_value(const evh_http_request *req, const char *ctype, int *bad)
{
    *bad = 0;
    if (req->body_len == 0)
        return cJSON_CreateNull();
    if (!is_json_type(ctype))
        return clean_string(req->body, req->body_len);
    /* JSON is UTF-8: a body that is not would store strings that are not */
    if (!utf8_valid(req->body, req->body_len)) {
        *bad = 1;
        return NULL;
    }
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(req->body, req->body_len, &end, 0);
    /* all of it: nothing but white space may follow (a NUL byte may not) */
    for (const char *p = end; v && p < req->body + req->body_len; p++) {
        if (!strchr(" \t\r\n", *p) || !*p) {
            cJSON_Delete(v);
            v = NULL;
        }
    }
    *bad = v == NULL;
    return v;
}

/* The event data as JSON text (cJSON_malloc), NULL when out of memory or
 * *bad_json when a JSON body does not parse. */
static char *event_data(const hook *h, const evh_http_request *req, int *bad_json)
{
    char at[32];
    evh_sources_now_iso(at);
    const char *ctype = evh_sources_header(req, "Content-Type");
    cJSON *body = body_value(req, ctype, bad_json);
    if (!body)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON *query = cJSON_CreateObject(), *headers = cJSON_CreateObject();
    int ok = o && query && headers;
    for (uint32_t i = 0; ok && i < req->n_query; i++) {
        char *name = utf8_clean(req->query[i].name, strlen(req->query[i].name));
        ok = name && add_joined(query, name, req->query[i].value) == 0;
        free(name);
    }
    for (uint32_t i = 0; ok && i < req->n_headers; i++) {
        if (is_secret_header(h, req->headers[i].name))
            continue;
        char *name = utf8_clean(req->headers[i].name, strlen(req->headers[i].name));
        for (char *c = name; c && *c; c++)
            *c = (char)tolower((unsigned char)*c);
        ok = name && add_joined(headers, name, req->headers[i].value) == 0;
        free(name);
    }
    ok = ok && cJSON_AddStringToObject(o, "hook", h->name) &&
         cJSON_AddItemToObject(o, "method", clean_string(req->method, strlen(req->method))) &&
         cJSON_AddItemToObject(o, "path", clean_string(req->path, strlen(req->path))) &&
         cJSON_AddItemToObject(o, "query", query) && (query = NULL, 1) &&
         cJSON_AddItemToObject(o, "headers", headers) && (headers = NULL, 1) &&
         cJSON_AddItemToObject(o, "content_type",
                               ctype ? clean_string(ctype, strlen(ctype)) : cJSON_CreateNull()) &&
         cJSON_AddItemToObject(o, "body", body) && (body = NULL, 1) &&
         cJSON_AddStringToObject(o, "remote_addr", req->remote_addr ? req->remote_addr : "") &&
         cJSON_AddStringToObject(o, "received_at", at);
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    cJSON_Delete(query);
    cJSON_Delete(headers);
    cJSON_Delete(body);
    return text;
}

/* ---- http ------------------------------------------------------------------ */

static int32_t aw_http(void *ctx, const evh_http_request *req, evh_http_response *res)
{
    aw *a = ctx;
    const evh_host_api *api = a->api;
    const hook *h = hook_for_path(a, req->path);
    if (!h)
        return evh_sources_answer_error(
            a->api, res, 404, "not_found",
            "no such webhook: the hooks are /api/webhooks/<name> for the names "
            "configured in plugins.config.api-webhook.hooks",
            NULL);

    unsigned bit = 0;
    for (size_t m = 0; m < N_METHODS; m++) {
        if (!strcmp(req->method, method_names[m]))
            bit = 1u << m;
    }
    if (!(h->methods & bit)) {
        char allow[80] = "Allow: "; /* all seven methods take 52 characters */
        for (size_t m = 0, first = 1; m < N_METHODS; m++) {
            if (h->methods & (1u << m)) {
                strcat(allow, first ? "" : ", ");
                strcat(allow, method_names[m]);
                first = 0;
            }
        }
        return evh_sources_answer_error(a->api, res, 405, "method_not_allowed",
                                        "this webhook does not take that method", allow);
    }

    const char *why = check_token(h, req);
    if (!why)
        why = h->sig == SIG_GITHUB ? check_github(h, req)
              : h->sig == SIG_STANDARD ? check_standard(h, req)
                                       : NULL;
    if (why) {
        api->log(a->host, EVH_LOG_WARN, "hook '%s': refused a request from %s: %s", h->name,
                 req->remote_addr && *req->remote_addr ? req->remote_addr : "?", why);
        char msg[160];
        snprintf(msg, sizeof msg, "authentication failed: %s", why);
        return evh_sources_answer_error(a->api, res, 401, "unauthorized", msg, NULL);
    }

    int bad_json = 0;
    char *data = event_data(h, req, &bad_json);
    if (!data)
        return bad_json ? evh_sources_answer_error(
                              a->api, res, 400, "invalid_body",
                              "the Content-Type says JSON but the body is not valid "
                              "JSON",
                              NULL)
                        : EVH_E_NOMEM;
    size_t len = strlen(data);
    /* emit_id (ABI 1.1) also tells the event's id, for the answer */
    char id[EVH_EVENT_ID_SIZE] = "";
    int32_t rc = len > EVENT_MAX_BYTES ? EVH_E_SCHEMA
                 : EVH_API_HAS(api, emit_id)
                     ? api->emit_id(a->host, "webhook_received", data, len, NULL, id)
                     : api->emit(a->host, "webhook_received", data, len, NULL);
    cJSON_free(data);
    if (len > EVENT_MAX_BYTES)
        return evh_sources_answer_error(a->api, res, 413, "payload_too_large",
                                        "the request would make an event larger than 1 MiB", NULL);
    switch (rc) {
    case EVH_OK:
        res->status = 202;
        res->content_type = "application/json";
        res->body = id[0] ? api->mprintf("{\"id\":\"%s\"}", id) : api->strdup("{\"id\":null}");
        res->body_len = EVH_NUL_TERMINATED;
        return res->body ? EVH_OK : EVH_E_NOMEM;
    case EVH_E_QUEUE_FULL:
        return evh_sources_answer_error(a->api, res, 503, "unavailable",
                                        "the event queue is full; retry later", "Retry-After: 1");
    case EVH_E_STOPPING:
        return evh_sources_answer_error(a->api, res, 503, "unavailable",
                                        "the host is stopping; retry later", "Retry-After: 5");
    case EVH_E_SCHEMA:
        /* the host logged why: nested too deeply, for instance */
        return evh_sources_answer_error(
            a->api, res, 400, "invalid_event",
            "the host refused the event (see its log): the body is nested "
            "too deeply or too large",
            NULL);
    default:
        api->log(a->host, EVH_LOG_ERROR, "hook '%s': emit failed: %s", h->name,
                 evh_status_message(rc));
        return evh_sources_answer_error(a->api, res, 503, "unavailable",
                                        "the event could not be stored; retry", "Retry-After: 5");
    }
}

static const evh_source aw_source = {.struct_size = sizeof(evh_source),
                                     .init = aw_init,
                                     .run = aw_run,
                                     .fini = aw_fini,
                                     .http = aw_http};
EVH_DECLARE_SOURCE(PLUGIN_ID, &aw_source)
