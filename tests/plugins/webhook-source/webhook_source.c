/* webhook-source: an event source that takes HTTP requests at its
 * webhookEndpoint through evh_source.http (SDK ABI 1.1).
 *
 * http() authenticates first, as every webhook plugin must (the host does
 * not check API keys on plugin endpoints): without "X-Test-Token: <token>"
 * (config "token", default "ok") it answers 401.  Then:
 *   - "X-Test-Fail: 1"        returns EVH_E_PLUGIN with a body already
 *                             allocated (the host frees it; answers 500);
 *   - "X-Test-Status: <n>"    answers status n as given (the host refuses
 *                             one outside 200..599);
 *   - GET with ?challenge=x   answers 200 text/plain "x" (the verification
 *                             handshake some senders do), emitting nothing;
 *   - otherwise               emits webhook_received {method, path, query,
 *                             content_type, remote_addr, body} (body as JSON
 *                             when it is JSON, else as a string) and answers
 *                             202 {"accepted": true, "emit": "<status name>"}
 *                             (503 with "accepted": false when emit refused),
 *                             with X-Webhook-Count: <requests so far> plus
 *                             header lines the host must drop.
 * Calls may run on several HTTP threads at once: the counter is locked.
 * run() only waits for the stop. */
#include <evhost/evhost.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct ws_ctx {
    const evh_host_api *api;
    evh_host *host;
    pthread_mutex_t lock;
    long requests;
} ws_ctx;

static int32_t ws_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    (void)errmsg;
    ws_ctx *c = api->alloc(sizeof *c);
    if (!c)
        return EVH_E_NOMEM;
    c->api = api;
    c->host = host;
    c->requests = 0;
    pthread_mutex_init(&c->lock, NULL);
    *ctx = c;
    return EVH_OK;
}

static int32_t ws_run(void *ctx)
{
    ws_ctx *c = ctx;
    while (c->api->wait(c->host, 60000) == EVH_OK)
        ;
    return EVH_OK;
}

static void ws_fini(void *ctx)
{
    ws_ctx *c = ctx;
    pthread_mutex_destroy(&c->lock);
    c->api->free(c);
}

static const char *field(const evh_http_field *f, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++) {
        if (!strcasecmp(f[i].name, name))
            return f[i].value;
    }
    return NULL;
}

/* Compare without an early exit, so timing does not reveal the token. */
static int same_secret(const char *given, const char *want)
{
    if (!given)
        return 0;
    size_t gn = strlen(given), wn = strlen(want);
    unsigned diff = gn != wn;
    for (size_t i = 0; i < wn; i++)
        diff |= (unsigned)((unsigned char)(i < gn ? given[i] : 0) ^ (unsigned char)want[i]);
    return diff == 0;
}

/* a + b into a new string (frees a); NULL when out of memory. */
static char *append(const evh_host_api *api, char *a, const char *b)
{
    char *out = a && b ? api->mprintf("%s%s", a, b) : NULL;
    api->free(a);
    return out;
}

/* The event data, from api->alloc. */
static char *event_data(const ws_ctx *c, const evh_http_request *req)
{
    const evh_host_api *api = c->api;
    char *q;
    char *data = api->strdup("{\"method\":");
    data = append(api, data, q = api->json_quote(req->method));
    api->free(q);
    data = append(api, data, ",\"path\":");
    data = append(api, data, q = api->json_quote(req->path));
    api->free(q);
    data = append(api, data, ",\"remote_addr\":");
    data = append(api, data, q = api->json_quote(req->remote_addr));
    api->free(q);
    const char *ctype = field(req->headers, req->n_headers, "Content-Type");
    data = append(api, data, ",\"content_type\":");
    if (ctype) {
        data = append(api, data, q = api->json_quote(ctype));
        api->free(q);
    } else {
        data = append(api, data, "null");
    }
    data = append(api, data, ",\"query\":{");
    for (uint32_t i = 0; i < req->n_query; i++) {
        data = append(api, data, i ? "," : "");
        data = append(api, data, q = api->json_quote(req->query[i].name));
        api->free(q);
        data = append(api, data, ":");
        data = append(api, data, q = api->json_quote(req->query[i].value));
        api->free(q);
    }
    data = append(api, data, "},\"body\":");
    char *body = req->body_len ? api->json_get(req->body, req->body_len, "") : NULL;
    if (!body)
        body = api->json_quote(req->body);
    data = append(api, data, body);
    api->free(body);
    return append(api, data, "}");
}

static int32_t ws_http(void *ctx, const evh_http_request *req, evh_http_response *res)
{
    ws_ctx *c = ctx;
    const evh_host_api *api = c->api;
    const char *token = api->config_string(c->host, "token", "ok");
    if (!same_secret(field(req->headers, req->n_headers, "X-Test-Token"), token)) {
        res->status = 401;
        res->content_type = "application/json";
        res->body = api->strdup("{\"error\": \"missing or wrong X-Test-Token\"}");
        res->body_len = EVH_NUL_TERMINATED;
        res->headers = api->strdup("WWW-Authenticate: X-Test-Token");
        return EVH_OK;
    }
    const char *fail = field(req->headers, req->n_headers, "X-Test-Fail");
    if (fail && !strcmp(fail, "1")) {
        res->body = api->strdup("never sent");
        return EVH_E_PLUGIN;
    }
    const char *status = field(req->headers, req->n_headers, "X-Test-Status");
    if (status) {
        res->status = (int32_t)strtol(status, NULL, 10);
        return EVH_OK;
    }
    const char *challenge = field(req->query, req->n_query, "challenge");
    if (!strcmp(req->method, "GET") && challenge) {
        res->content_type = "text/plain; charset=utf-8";
        res->body = api->strdup(challenge);
        return EVH_OK; /* body_len 0: NUL-terminated */
    }

    pthread_mutex_lock(&c->lock);
    long n = ++c->requests;
    pthread_mutex_unlock(&c->lock);

    char *data = event_data(c, req);
    if (!data)
        return EVH_E_NOMEM;
    int32_t rc = api->emit(c->host, "webhook_received", data, EVH_NUL_TERMINATED, NULL);
    api->free(data);
    res->status = rc == EVH_OK ? 202 : 503;
    res->content_type = "application/json";
    res->body = api->mprintf("{\"accepted\": %s, \"emit\": \"%s\"}",
                             rc == EVH_OK ? "true" : "false", evh_status_name(rc));
    res->body_len = EVH_NUL_TERMINATED;
    res->headers = api->mprintf("X-Webhook-Count: %ld\r\n"
                                "Content-Length: 1\n"
                                "not a header line\n"
                                "Bad Name: x\n"
                                "X-Webhook-Source:  webhook-source  \n",
                                n);
    return EVH_OK;
}

static const evh_source ws_source = {.struct_size = sizeof(evh_source),
                                     .init = ws_init,
                                     .run = ws_run,
                                     .fini = ws_fini,
                                     .http = ws_http};
EVH_DECLARE_SOURCE("webhook-source", &ws_source)
