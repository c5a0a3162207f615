/* http-request - a workflow step that sends one HTTP or HTTPS request per run
 * with the libcurl easy API and outputs
 *
 *     {"status": 200, "headers": {"content-type": "..."}, "body": ...}
 *
 * where body is the parsed JSON value when the response says it is JSON,
 * else the text.  A status outside expected_status (default: any 2xx), a
 * transport error, a timeout or a body over max_response_bytes fails the
 * run; there are no retries here: the workflow's retry policy does that.
 *
 * The plugin links libcurl and libcjson itself (both are ordinary system
 * libraries; the host API offers no way to walk the members of a JSON
 * object, which headers and auth need).  JSON still crosses the SDK boundary
 * as text only.
 *
 * Secrets: auth values are never logged, never put in an error message or
 * the output, and the buffers that held them are wiped after the request.
 * auth.bearer_env / auth.basic.password_env name an environment variable of
 * the daemon instead; those names must be written literally in the workflow
 * (a template there is refused), so an event can never choose which of the
 * daemon's variables gets sent.
 */
/* asprintf, explicit_bzero: the plugin also builds on its own with cc. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <evhost/evhost.h>

#include "../common/config_error.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#define DEFAULT_TIMEOUT_MS 10000
#define MAX_TIMEOUT_MS 3600000
#define DEFAULT_MAX_RESPONSE_BYTES (1024 * 1024)
#define MAX_MAX_RESPONSE_BYTES (64 * 1024 * 1024)
#define EXCERPT_BYTES 200

typedef struct http_step {
    const evh_host_api *api;
    evh_host *host;
    CURL *curl; /* reused across runs: keeps connections alive */
    /* auth.bearer_env / auth.basic.password_env as written in the workflow
     * (seen unresolved by init), or NULL */
    char *bearer_env;
    char *password_env;
} http_step;

/* ---- small helpers ------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wipe a secret before its memory is given back. */
static void wipe(char *p)
{
    if (p)
        explicit_bzero(p, strlen(p));
}

/* Length of the valid UTF-8 sequence at s[i] (1..4), 0 when invalid.  NUL
 * counts as invalid: C strings cannot carry it. */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t i)
{
    unsigned char c = s[i];
    if (c >= 0x01 && c < 0x80)
        return 1;
    size_t len = c >= 0xC2 && c <= 0xDF   ? 2
                 : c >= 0xE0 && c <= 0xEF ? 3
                 : c >= 0xF0 && c <= 0xF4 ? 4
                                          : 0;
    if (!len || n - i < len)
        return 0;
    uint32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

/* The bytes as valid UTF-8 (malloc, NUL-terminated): every invalid byte
 * (and NUL) becomes U+FFFD, so the text can always go into JSON. */
static char *utf8_clean(const char *text, size_t n, size_t *out_len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t need = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq(s, n, i);
        need += l ? l : 3;
        i += l ? l : 1;
    }
    char *o = malloc(need + 1);
    if (!o)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq(s, n, i);
        if (l) {
            memcpy(o + j, s + i, l);
            j += l;
            i += l;
        } else {
            memcpy(o + j, "\xEF\xBF\xBD", 3);
            j += 3;
            i++;
        }
    }
    o[j] = '\0';
    if (out_len)
        *out_len = j;
    return o;
}

/* The first EXCERPT_BYTES of a valid UTF-8 text on one line (malloc). */
static char *excerpt(const char *text)
{
    size_t n = strlen(text), cut = n;
    if (cut > EXCERPT_BYTES) {
        cut = EXCERPT_BYTES;
        while (cut > 0 && ((unsigned char)text[cut] & 0xC0) == 0x80)
            cut--;
    }
    char *o = malloc(cut + 4);
    if (!o)
        return NULL;
    for (size_t i = 0; i < cut; i++) {
        unsigned char c = (unsigned char)text[i];
        o[i] = c < 0x20 || c == 0x7F ? ' ' : (char)c;
    }
    strcpy(o + cut, cut < n ? "..." : "");
    return o;
}

/* An integer member in [lo, hi], or dflt when absent. */
static int get_int(const cJSON *cfg, const char *key, long long lo, long long hi, long long dflt,
                   long long *out, char **err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : 0;
    if (!cJSON_IsNumber(v) || d < (double)lo || d > (double)hi || d != (double)(long long)d) {
        if (asprintf(err, "config: %s: must be an integer from %lld to %lld", key, lo, hi) < 0)
            *err = NULL;
        return -1;
    }
    *out = (long long)d;
    return 0;
}

/* A scalar as header text: strings as they are, numbers and booleans
 * printed (a whole-value template keeps the value's type). malloc. */
static char *scalar_text(const cJSON *v)
{
    if (cJSON_IsString(v))
        return strdup(v->valuestring);
    if (cJSON_IsBool(v))
        return strdup(cJSON_IsTrue(v) ? "true" : "false");
    if (cJSON_IsNumber(v))
        return cJSON_PrintUnformatted(v);
    return NULL;
}

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A header value or token must not smuggle in another header line. */
static int has_ctl(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 && *s != '\t')
            return 1;
        if (*s == 0x7F)
            return 1;
    }
    return 0;
}

/* ---- the request, from this run's config --------------------------------- */

typedef struct request {
    const char *method;
    const char *url;
    char *shown_url; /* the URL without user info, query or fragment: for messages */
    struct curl_slist *headers;
    char *body;
    size_t body_len;
    int has_body;
    long long timeout_ms, max_bytes;
    const cJSON *expected; /* array, or NULL: any 2xx */
    char *auth_header;     /* "Authorization: Bearer ..." (secret) */
    const char *basic_user;
    const char *basic_password; /* borrowed from cfg or the environment (secret) */
} request;

static void request_free(request *rq)
{
    free(rq->shown_url);
    /* the list holds copies; a user-set Authorization header is a secret too */
    for (struct curl_slist *l = rq->headers; l; l = l->next)
        wipe(l->data);
    curl_slist_free_all(rq->headers);
    free(rq->body);
    wipe(rq->auth_header);
    free(rq->auth_header);
}

static int add_header(request *rq, const char *line)
{
    struct curl_slist *l = curl_slist_append(rq->headers, line);
    if (!l)
        return -1;
    rq->headers = l;
    return 0;
}

static const char *const methods[] = {"GET",   "HEAD",   "POST",    "PUT",
                                      "PATCH", "DELETE", "OPTIONS", NULL};

static int read_url(request *rq, const cJSON *cfg, char **err)
{
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(cfg, "url");
    if (!cJSON_IsString(url) || !url->valuestring[0]) {
        *err = strdup(url ? "config: url: must be a non-empty string"
                          : "config: url: required property is missing");
        return -1;
    }
    rq->url = url->valuestring;
    CURLU *u = curl_url();
    char *scheme = NULL, *shown = NULL;
    int rc = -1;
    if (!u) {
        *err = strdup("out of memory");
        return -1;
    }
    if (curl_url_set(u, CURLUPART_URL, rq->url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
        *err = strdup("config: url: not a valid absolute URL");
    } else if (strcmp(scheme, "http") && strcmp(scheme, "https")) {
        if (asprintf(err, "config: url: scheme '%s' is not allowed (http or https only)", scheme) <
            0)
            *err = NULL;
    } else {
        curl_url_set(u, CURLUPART_USER, NULL, 0);
        curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
        curl_url_set(u, CURLUPART_QUERY, NULL, 0);
        curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
        if (curl_url_get(u, CURLUPART_URL, &shown, 0) == CURLUE_OK)
            rq->shown_url = strdup(shown);
        rc = 0;
    }
    curl_free(scheme);
    curl_free(shown);
    curl_url_cleanup(u);
    return rc;
}

static int read_headers(request *rq, const cJSON *cfg, int *has_ct, int *has_auth, char **err)
{
    const cJSON *headers = cJSON_GetObjectItemCaseSensitive(cfg, "headers");
    if (!headers)
        return 0;
    if (!cJSON_IsObject(headers)) {
        *err = strdup("config: headers: must be an object of name: value");
        return -1;
    }
    const cJSON *h;
    cJSON_ArrayForEach(h, headers)
    {
        const char *name = h->string;
        int ok = name[0] != '\0';
        for (const char *p = name; ok && *p; p++)
            ok = is_tchar((unsigned char)*p);
        if (!ok) {
            if (asprintf(err, "config: headers: '%s' is not a valid header name", name) < 0)
                *err = NULL;
            return -1;
        }
        char *value = scalar_text(h);
        if (!value || has_ctl(value)) {
            /* never echo the value: it may be a credential */
            if (asprintf(err, "config: headers.%s: %s", name,
                         value ? "must not contain control characters (CR, LF)"
                               : "must be a string") < 0)
                *err = NULL;
            free(value);
            return -1;
        }
        if (!strcasecmp(name, "content-type"))
            *has_ct = 1;
        if (!strcasecmp(name, "authorization"))
            *has_auth = 1;
        char *line = NULL;
        /* "Name:" would remove curl's own header; "Name;" sends it empty */
        int n = value[0] ? asprintf(&line, "%s: %s", name, value) : asprintf(&line, "%s;", name);
        wipe(value);
        free(value);
        if (n < 0 || add_header(rq, line) != 0) {
            free(line);
            *err = strdup("out of memory");
            return -1;
        }
        wipe(line);
        free(line);
    }
    return 0;
}

/* An environment variable named in the workflow: only the literal name
 * init saw is honoured (templates cannot pick one). */
static const char *env_secret(const char *field, const char *given, const char *literal, char **err)
{
    if (!literal || strcmp(given, literal) != 0) {
        if (asprintf(err,
                     "config: %s: must be written literally in the workflow, not "
                     "produced by a template",
                     field) < 0)
            *err = NULL;
        return NULL;
    }
    const char *v = getenv(given);
    if (!v || !v[0]) {
        if (asprintf(err, "config: %s: environment variable '%s' is not set", field, given) < 0)
            *err = NULL;
        return NULL;
    }
    return v;
}

static int read_auth(const http_step *s, request *rq, const cJSON *cfg, int has_auth_header,
                     char **err)
{
    const cJSON *auth = cJSON_GetObjectItemCaseSensitive(cfg, "auth");
    if (!auth)
        return 0;
    if (!cJSON_IsObject(auth)) {
        *err = strdup("config: auth: must be an object: {bearer: ...} or {basic: {username, "
                      "password}}");
        return -1;
    }
    const cJSON *bearer = NULL, *bearer_env = NULL, *basic = NULL, *k;
    cJSON_ArrayForEach(k, auth)
    {
        if (!strcmp(k->string, "bearer"))
            bearer = k;
        else if (!strcmp(k->string, "bearer_env"))
            bearer_env = k;
        else if (!strcmp(k->string, "basic"))
            basic = k;
        else {
            if (asprintf(err, "config: auth.%s: unknown key (bearer, bearer_env or basic)",
                         k->string) < 0)
                *err = NULL;
            return -1;
        }
    }
    if ((bearer != NULL) + (bearer_env != NULL) + (basic != NULL) != 1) {
        *err = strdup("config: auth: give exactly one of bearer, bearer_env and basic");
        return -1;
    }
    if (has_auth_header) {
        *err = strdup("config: auth and headers.Authorization are both set; use one");
        return -1;
    }
    if (bearer || bearer_env) {
        const char *token = NULL;
        if (bearer && cJSON_IsString(bearer) && bearer->valuestring[0])
            token = bearer->valuestring;
        else if (bearer) {
            *err = strdup("config: auth.bearer: must be a non-empty string");
            return -1;
        } else if (!cJSON_IsString(bearer_env)) {
            *err = strdup("config: auth.bearer_env: must be a variable name");
            return -1;
        } else if (!(token = env_secret("auth.bearer_env", bearer_env->valuestring, s->bearer_env,
                                        err))) {
            return -1;
        }
        if (has_ctl(token)) {
            *err = strdup("config: auth: the bearer token must not contain control characters");
            return -1;
        }
        if (asprintf(&rq->auth_header, "Authorization: Bearer %s", token) < 0) {
            rq->auth_header = NULL;
            *err = strdup("out of memory");
            return -1;
        }
        return add_header(rq, rq->auth_header) == 0 ? 0 : (*err = strdup("out of memory"), -1);
    }
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(basic, "username");
    const cJSON *pass = cJSON_GetObjectItemCaseSensitive(basic, "password");
    const cJSON *pass_env = cJSON_GetObjectItemCaseSensitive(basic, "password_env");
    if (!cJSON_IsObject(basic) || !cJSON_IsString(user) || strchr(user->valuestring, ':') ||
        has_ctl(user->valuestring)) {
        *err = strdup("config: auth.basic: must be {username, password} with a username "
                      "without ':'");
        return -1;
    }
    if (pass && pass_env) {
        *err = strdup("config: auth.basic: give password or password_env, not both");
        return -1;
    }
    rq->basic_user = user->valuestring;
    rq->basic_password = "";
    if (pass && !cJSON_IsString(pass)) {
        *err = strdup("config: auth.basic.password: must be a string");
        return -1;
    } else if (pass) {
        rq->basic_password = pass->valuestring;
    } else if (pass_env && !cJSON_IsString(pass_env)) {
        *err = strdup("config: auth.basic.password_env: must be a variable name");
        return -1;
    } else if (pass_env &&
               !(rq->basic_password = env_secret("auth.basic.password_env", pass_env->valuestring,
                                                 s->password_env, err))) {
        return -1;
    }
    return 0;
}

static int read_request(const http_step *s, request *rq, const cJSON *cfg, char **err)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(cfg, "method");
    rq->method = "GET";
    if (m) {
        rq->method = NULL;
        for (size_t i = 0; cJSON_IsString(m) && methods[i]; i++) {
            if (!strcasecmp(m->valuestring, methods[i]))
                rq->method = methods[i];
        }
        if (!rq->method) {
            *err = strdup("config: method: must be one of GET, HEAD, POST, PUT, PATCH, "
                          "DELETE, OPTIONS");
            return -1;
        }
    }
    if (read_url(rq, cfg, err) != 0)
        return -1;
    if (get_int(cfg, "timeout_ms", 1, MAX_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, &rq->timeout_ms, err) !=
            0 ||
        get_int(cfg, "max_response_bytes", 0, MAX_MAX_RESPONSE_BYTES, DEFAULT_MAX_RESPONSE_BYTES,
                &rq->max_bytes, err) != 0)
        return -1;
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(cfg, "expected_status");
    if (exp) {
        const cJSON *e;
        int ok = cJSON_IsArray(exp) && cJSON_GetArraySize(exp) > 0;
        cJSON_ArrayForEach(e, exp)
        {
            /* the range first: converting a huge double to int is undefined */
            ok = ok && cJSON_IsNumber(e) && e->valuedouble >= 100 && e->valuedouble <= 599 &&
                 e->valuedouble == (double)(int)e->valuedouble;
        }
        if (!ok) {
            *err = strdup("config: expected_status: must be a non-empty list of status codes "
                          "(100 to 599)");
            return -1;
        }
        rq->expected = exp;
    }
    int has_ct = 0, has_auth = 0;
    if (read_headers(rq, cfg, &has_ct, &has_auth, err) != 0)
        return -1;
    if (read_auth(s, rq, cfg, has_auth, err) != 0)
        return -1;
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(cfg, "body");
    if (body) {
        if (!strcmp(rq->method, "HEAD")) {
            *err = strdup("config: body: a HEAD request has no body");
            return -1;
        }
        rq->has_body = 1;
        rq->body = cJSON_IsString(body) ? strdup(body->valuestring) : cJSON_PrintUnformatted(body);
        if (!rq->body) {
            *err = strdup("out of memory");
            return -1;
        }
        rq->body_len = strlen(rq->body);
        if (!has_ct &&
            add_header(rq, cJSON_IsString(body) ? "Content-Type: text/plain; charset=utf-8"
                                                : "Content-Type: application/json") != 0) {
            *err = strdup("out of memory");
            return -1;
        }
    }
    /* an empty POST/PUT/PATCH: not curl's default form Content-Type */
    if (!body && !has_ct &&
        (!strcmp(rq->method, "POST") || !strcmp(rq->method, "PUT") ||
         !strcmp(rq->method, "PATCH")) &&
        add_header(rq, "Content-Type:") != 0) {
        *err = strdup("out of memory");
        return -1;
    }
    /* no "Expect: 100-continue" round trip before a larger body */
    if (add_header(rq, "Expect:") != 0) {
        *err = strdup("out of memory");
        return -1;
    }
    return 0;
}

/* ---- the response -------------------------------------------------------- */

typedef struct response {
    char *body;
    size_t len, cap;
    size_t max;
    int too_big, oom;
    cJSON *headers; /* of the last response (1xx interim ones are dropped) */
    char last[128]; /* the last header name, for folded continuation lines */
} response;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    response *r = ud;
    size_t add = size * n;
    if (add > r->max - r->len) {
        r->too_big = 1;
        return 0; /* aborts the transfer */
    }
    if (r->len + add + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + add + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        if (!b) {
            r->oom = 1;
            return 0;
        }
        r->body = b;
        r->cap = cap;
    }
    memcpy(r->body + r->len, p, add);
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    response *r = ud;
    size_t len = size * n, l = len;
    while (l && (p[l - 1] == '\r' || p[l - 1] == '\n'))
        l--;
    if (l >= 5 && !memcmp(p, "HTTP/", 5)) { /* a new response begins */
        cJSON_Delete(r->headers);
        r->headers = cJSON_CreateObject();
        r->last[0] = '\0';
        if (!r->headers)
            r->oom = 1;
        return r->headers ? len : 0;
    }
    if (!l || !r->headers)
        return len;
    size_t vstart, nlen = 0;
    char name[sizeof r->last];
    if (p[0] == ' ' || p[0] == '\t') { /* obsolete line folding */
        if (!r->last[0])
            return len;
        strcpy(name, r->last);
        vstart = 0;
    } else {
        const char *colon = memchr(p, ':', l);
        if (!colon || colon == p || (size_t)(colon - p) >= sizeof name)
            return len;
        nlen = (size_t)(colon - p);
        for (size_t i = 0; i < nlen; i++)
            name[i] = (char)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] + 32 : p[i]);
        while (nlen && (name[nlen - 1] == ' ' || name[nlen - 1] == '\t'))
            nlen--;
        name[nlen] = '\0';
        vstart = (size_t)(colon - p) + 1;
    }
    while (vstart < l && (p[vstart] == ' ' || p[vstart] == '\t'))
        vstart++;
    size_t vend = l;
    while (vend > vstart && (p[vend - 1] == ' ' || p[vend - 1] == '\t'))
        vend--;
    char *value = utf8_clean(p + vstart, vend - vstart, NULL);
    cJSON *old = cJSON_GetObjectItemCaseSensitive(r->headers, name);
    char *joined = NULL;
    if (value && cJSON_IsString(old) &&
        asprintf(&joined, "%s%s%s", old->valuestring, p[0] == ' ' || p[0] == '\t' ? " " : ", ",
                 value) < 0)
        joined = NULL;
    cJSON *item = joined          ? cJSON_CreateString(joined)
                  : value && !old ? cJSON_CreateString(value)
                                  : NULL;
    int ok = item && (old ? cJSON_ReplaceItemInObjectCaseSensitive(r->headers, name, item)
                          : cJSON_AddItemToObject(r->headers, name, item));
    if (!ok)
        cJSON_Delete(item);
    free(value);
    free(joined);
    if (!ok) {
        r->oom = 1;
        return 0;
    }
    strcpy(r->last, name);
    return len;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const http_step *s = ud;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return s->api->stopping(s->host) ? 1 : 0; /* non-zero aborts the transfer */
}

/* application/json, or any application/<x>+json */
static int is_json_type(const cJSON *headers)
{
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(headers, "content-type");
    if (!cJSON_IsString(ct))
        return 0;
    const char *v = ct->valuestring;
    size_t n = strcspn(v, ";");
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    return (n == 16 && !strncasecmp(v, "application/json", 16)) ||
           (n > 17 && !strncasecmp(v, "application/", 12) && !strncasecmp(v + n - 5, "+json", 5));
}

static int status_expected(const request *rq, long status)
{
    if (!rq->expected)
        return status >= 200 && status <= 299;
    const cJSON *e;
    cJSON_ArrayForEach(e, rq->expected)
    {
        if (e->valueint == status)
            return 1;
    }
    return 0;
}

/* "2xx" or "one of 200, 204" (malloc). */
static char *expected_text(const request *rq)
{
    if (!rq->expected)
        return strdup("2xx");
    size_t cap = 16 + 5 * (size_t)cJSON_GetArraySize(rq->expected);
    char *o = malloc(cap);
    if (!o)
        return NULL;
    strcpy(o, "one of ");
    const cJSON *e;
    cJSON_ArrayForEach(e, rq->expected)
    {
        size_t used = strlen(o);
        snprintf(o + used, cap - used, "%s%d", e == rq->expected->child ? "" : ", ", e->valueint);
    }
    return o;
}

/* The output object for a response (or NULL when out of memory). */
static char *output_of(const evh_host_api *api, long status, response *rs)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "status", (double)status);
    cJSON_AddItemToObject(o, "headers", rs->headers ? rs->headers : cJSON_CreateObject());
    rs->headers = NULL;
    char *text = utf8_clean(rs->body ? rs->body : "", rs->len, NULL);
    cJSON *body = NULL;
    if (text && is_json_type(cJSON_GetObjectItemCaseSensitive(o, "headers"))) {
        const char *end = NULL;
        body = cJSON_ParseWithOpts(text, &end, 1); /* the whole text, nothing after */
    }
    if (!body && text)
        body = cJSON_CreateString(text);
    free(text);
    char *printed = NULL;
    if (body && cJSON_AddItemToObject(o, "body", body))
        printed = cJSON_PrintUnformatted(o);
    else
        cJSON_Delete(body);
    cJSON_Delete(o);
    char *out = printed ? api->strdup(printed) : NULL;
    free(printed);
    return out;
}

/* ---- one run --------------------------------------------------------------- */

static void set_method(CURL *c, const request *rq)
{
    if (!strcmp(rq->method, "HEAD")) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        return;
    }
    int wants_body = rq->has_body || !strcmp(rq->method, "POST") || !strcmp(rq->method, "PUT") ||
                     !strcmp(rq->method, "PATCH");
    if (wants_body) {
        /* an empty body still says Content-Length: 0 */
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
    }
    if (strcmp(rq->method, "POST") != 0 && (wants_body || strcmp(rq->method, "GET") != 0))
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, rq->method);
    else if (!wants_body)
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
}

static int32_t perform(http_step *s, const request *rq, response *rs, long *status, char **err)
{
    CURL *c = s->curl;
    char errbuf[CURL_ERROR_SIZE];
    errbuf[0] = '\0';
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, rq->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS timeouts */
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)rq->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)rq->timeout_ms);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "evhost-http-request/1.0");
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, ""); /* whatever curl can decode */
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, rs);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, rs);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, s);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, rq->headers);
    if (rq->basic_user) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, rq->basic_user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, rq->basic_password);
    }
    set_method(c, rq);
    CURLcode cc = curl_easy_perform(c);
    *status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    /* drop every pointer into this call's memory (and the credentials) */
    curl_easy_reset(c);

    const char *what = errbuf[0] ? errbuf : curl_easy_strerror(cc);
    const char *url = rq->shown_url ? rq->shown_url : "(url)";
    int n = 0;
    int32_t rc = EVH_OK;
    if (cc == CURLE_OK)
        return EVH_OK;
    if (rs->too_big) {
        n = asprintf(err, "%s %s: the response body is larger than max_response_bytes (%lld)",
                     rq->method, url, rq->max_bytes);
        rc = EVH_E_PLUGIN;
    } else if (rs->oom) {
        n = asprintf(err, "out of memory");
        rc = EVH_E_NOMEM;
    } else if (cc == CURLE_ABORTED_BY_CALLBACK && s->api->stopping(s->host)) {
        n = asprintf(err, "host stopping");
        rc = EVH_E_STOPPING;
    } else if (cc == CURLE_OPERATION_TIMEDOUT) {
        n = asprintf(err, "%s %s timed out after %lld ms (%s)", rq->method, url, rq->timeout_ms,
                     what);
        rc = EVH_E_TIMEOUT;
    } else {
        n = asprintf(err, "%s %s failed: %s", rq->method, url, what);
        rc = EVH_E_IO;
    }
    if (n < 0)
        *err = NULL;
    return rc;
}

static int32_t http_run(void *ctx, const evh_step_input *in, evh_step_output *out)
{
    http_step *s = ctx;
    const evh_host_api *api = s->api;
    request rq = {0};
    response rs = {0};
    char *err = NULL;
    int32_t rc = EVH_E_CONFIG;
    cJSON *cfg = cJSON_ParseWithLength(in->config_json, in->config_len);
    if (!cJSON_IsObject(cfg)) {
        err = strdup("config: must be a JSON object");
        goto done;
    }
    if (read_request(s, &rq, cfg, &err) != 0)
        goto done;
    rs.max = (size_t)rq.max_bytes;
    long status = 0;
    int64_t started = now_ms();
    rc = perform(s, &rq, &rs, &status, &err);
    api->metric(s->host, "duration_ms", (double)(now_ms() - started));
    api->metric(s->host, "response_bytes", (double)rs.len);
    if (rc != EVH_OK)
        goto done;
    if (!status_expected(&rq, status)) {
        char *text = utf8_clean(rs.body ? rs.body : "", rs.len, NULL);
        char *ex = text ? excerpt(text) : NULL;
        char *want = expected_text(&rq);
        if (asprintf(&err, "HTTP %ld from %s %s (expected %s)%s%s", status, rq.method,
                     rq.shown_url ? rq.shown_url : "(url)", want ? want : "?",
                     ex && ex[0] ? ": " : "", ex ? ex : "") < 0)
            err = NULL;
        free(want);
        free(ex);
        free(text);
        rc = EVH_E_PLUGIN;
        goto done;
    }
    out->output_json = output_of(api, status, &rs);
    if (!out->output_json) {
        err = strdup("out of memory");
        rc = EVH_E_NOMEM;
    }
done:
    if (rc != EVH_OK)
        out->error_message = api->strdup(err ? err : evh_status_message(rc));
    free(err);
    free(rs.body);
    cJSON_Delete(rs.headers);
    request_free(&rq);
    /* the parsed config holds the credentials in plain text */
    const cJSON *auth = cJSON_GetObjectItemCaseSensitive(cfg, "auth");
    if (cJSON_IsObject(auth)) {
        wipe(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(auth, "bearer")));
        wipe(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(auth, "basic"), "password")));
    }
    cJSON_Delete(cfg);
    return rc;
}

/* ---- lifecycle ------------------------------------------------------------- */

/* libcurl's global state: set up once per process, from whichever worker
 * creates the first instance.  Never cleaned up: the host (or another
 * plugin) may use libcurl too, and the process exit frees it. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The name at path in the unresolved config, when written literally. */
static int literal_env_name(const evh_host_api *api, const char *cfg, size_t len, const char *path,
                            char **out, char **errmsg)
{
    *out = NULL;
    char *raw = api->json_get(cfg, len, path);
    if (!raw)
        return EVH_OK;
    int32_t rc = EVH_OK;
    if (strstr(raw, "{{")) {
        *errmsg = api->mprintf("%s: must name an environment variable literally, not through "
                               "a template",
                               path);
        rc = EVH_E_CONFIG;
    } else {
        char *name = api->json_get_string(cfg, len, path);
        *out = name ? strdup(name) : NULL;
        api->free(name);
    }
    api->free(raw);
    return rc;
}

static void http_fini(void *ctx)
{
    http_step *s = ctx;
    if (!s)
        return;
    if (s->curl)
        curl_easy_cleanup(s->curl);
    free(s->bearer_env);
    free(s->password_env);
    s->api->free(s);
}

static int32_t http_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK) {
        *errmsg = api->mprintf("libcurl: %s", curl_easy_strerror(curl_init_rc));
        return EVH_E_PLUGIN;
    }
    http_step *s = api->alloc(sizeof *s);
    if (!s)
        return EVH_E_NOMEM;
    memset(s, 0, sizeof *s);
    s->api = api;
    s->host = host;
    s->curl = curl_easy_init();
    size_t len = 0;
    const char *cfg = api->config_json(host, &len);
    int32_t rc = s->curl ? EVH_OK : EVH_E_NOMEM;
    if (rc == EVH_OK)
        rc = literal_env_name(api, cfg, len, "auth.bearer_env", &s->bearer_env, errmsg);
    if (rc == EVH_OK)
        rc = literal_env_name(api, cfg, len, "auth.basic.password_env", &s->password_env, errmsg);
    if (rc != EVH_OK) {
        http_fini(s);
        return rc;
    }
    *ctx = s;
    return EVH_OK;
}

/* ---- at load (SDK 1.2) ------------------------------------------------------ */


/*
 * What every run would check the same way, with run's own code: the URL
 * (absolute, http or https) unless a template makes it per run, the header
 * names, and auth (one kind, its environment variable set).  Never the
 * network: whether the host answers is the run's business.
 */
static int32_t http_validate(const evh_host_api *api, evh_host *host, char **field,
                             char **errmsg)
{
    void *ctx = NULL;
    char *msg = NULL;
    int32_t rc = http_init(api, host, &ctx, &msg); /* env names written literally */
    if (rc != EVH_OK) {
        evh_steps_split_field(api, msg, field, errmsg);
        api->free(msg);
        return rc;
    }
    size_t len = 0;
    const char *text = api->config_json(host, &len);
    cJSON *cfg = cJSON_ParseWithLength(text, len);
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(cfg, "url");
    request rq = {0};
    char *err = NULL;
    int has_ct = 0, has_auth = 0;
    int bad = cfg && !(cJSON_IsString(url) && evh_is_template(url->valuestring)) &&
              read_url(&rq, cfg, &err) != 0;
    bad = bad || (cfg && read_headers(&rq, cfg, &has_ct, &has_auth, &err) != 0);
    bad = bad || (cfg && read_auth(ctx, &rq, cfg, has_auth, &err) != 0);
    if (bad) {
        rc = EVH_E_CONFIG;
        evh_steps_split_field(api, err ? err : "out of memory", field, errmsg);
    }
    free(err);
    request_free(&rq);
    cJSON_Delete(cfg);
    http_fini(ctx);
    api->free(msg);
    return rc;
}

static const evh_step http_step_desc = {.struct_size = sizeof(evh_step),
                                        .init = http_init,
                                        .run = http_run,
                                        .fini = http_fini,
                                        .validate = http_validate};

EVH_DECLARE_STEP("http-request", &http_step_desc)
