/*
 * test_webhooks.c - job and plugin lifecycle events delivered as signed,
 * retried outbound webhooks, against a receiver on loopback that records
 * every request (a libmicrohttpd daemon in this process, one thread per
 * connection so that a hanging answer holds only its own connection).
 *
 *   - the exact envelope and headers of each event type, for a workflow
 *     that succeeds and one that fails, in order per job;
 *   - the Standard Webhooks signature, checked with an HMAC computed here;
 *   - a receiver failing the first attempts (one with Retry-After) gets the
 *     event once it recovers, recorded once as delivered;
 *   - a receiver that is down: dead letters, then the retry API;
 *   - a receiver that hangs does not slow executions (measured);
 *   - a restart on the same database delivers what was still pending;
 *   - 410 Gone disables the subscription;
 *   - /api/subscriptions CRUD with secrets redacted, /api/deliveries.
 *
 * Backoff is in milliseconds here (backoff_base_ms, backoff_cap_ms per
 * subscription), so the whole file runs in a few seconds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <microhttpd.h>
#include <sqlite3.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <evhost/evhost.h>

#include "apitest.h"
#include "config.h"
#include "hostapi.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "signature.h"
#include "store.h"
#include "subscription.h"
#include "testutil.h"

/* ---- the receiver ------------------------------------------------------------- */

typedef struct rx_req {
    char *path, *body;
    char *names[32], *values[32];
    size_t n_headers;
    long long at_ms;
    int status; /* what it was answered */
} rx_req;

typedef struct receiver {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t lock;
    rx_req reqs[512];
    size_t n;
    /* behaviour, under lock */
    int fail_first;          /* the first this many requests get fail_status */
    int fail_status;
    const char *retry_after; /* sent with the first failure */
    int status;              /* everything else */
    int sleep_ms;            /* before answering */
    int seen;
} receiver;

typedef struct rx_conn {
    char *body;
    size_t len;
} rx_conn;

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    rx_req *r = cls;
    (void)kind;
    if (r->n_headers < 32) {
        r->names[r->n_headers] = strdup(key);
        r->values[r->n_headers] = strdup(value ? value : "");
        r->n_headers++;
    }
    return MHD_YES;
}

static enum MHD_Result rx_handler(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    receiver *rx = cls;
    (void)version;
    (void)method;
    rx_conn *cc = *con_cls;
    if (!cc) {
        cc = calloc(1, sizeof *cc);
        *con_cls = cc;
        return MHD_YES;
    }
    if (*upload_data_size) {
        cc->body = realloc(cc->body, cc->len + *upload_data_size + 1);
        memcpy(cc->body + cc->len, upload_data, *upload_data_size);
        cc->len += *upload_data_size;
        cc->body[cc->len] = '\0';
        *upload_data_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&rx->lock);
    int index = rx->seen++;
    int status = index < rx->fail_first ? rx->fail_status : rx->status;
    const char *retry_after = index == 0 && rx->fail_first ? rx->retry_after : NULL;
    int sleep_ms = rx->sleep_ms;
    pthread_mutex_unlock(&rx->lock);
    if (sleep_ms)
        usleep((useconds_t)sleep_ms * 1000);
    rx_req r = {.path = strdup(url), .body = cc->body ? cc->body : strdup(""),
                .at_ms = tu_now_ms(), .status = status};
    cc->body = NULL;
    MHD_get_connection_values(c, MHD_HEADER_KIND, collect_header, &r);
    pthread_mutex_lock(&rx->lock);
    if (rx->n < sizeof rx->reqs / sizeof *rx->reqs)
        rx->reqs[rx->n++] = r;
    pthread_mutex_unlock(&rx->lock);
    static const char answer[] = "{\"ok\":true}";
    struct MHD_Response *res =
        MHD_create_response_from_buffer(sizeof answer - 1, (void *)answer, MHD_RESPMEM_PERSISTENT);
    if (retry_after)
        MHD_add_response_header(res, "Retry-After", retry_after);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, res);
    MHD_destroy_response(res);
    return ret;
}

static void rx_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    rx_conn *cc = *con_cls;
    if (cc) {
        free(cc->body);
        free(cc);
    }
    *con_cls = NULL;
}

/* Start on listen_fd (a bound socket, see hold_port), or on any free port
 * when it is -1. */
static receiver *rx_start_on(int listen_fd)
{
    receiver *rx = calloc(1, sizeof *rx);
    assert_non_null(rx);
    pthread_mutex_init(&rx->lock, NULL);
    rx->status = 200;
    rx->fail_status = 500;
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
    if (listen_fd >= 0) {
        assert_int_equal(listen(listen_fd, 128), 0);
        rx->d =
            MHD_start_daemon(flags, 0, NULL, NULL, rx_handler, rx, MHD_OPTION_LISTEN_SOCKET,
                             listen_fd, MHD_OPTION_NOTIFY_COMPLETED, rx_done, rx, MHD_OPTION_END);
    } else {
        rx->d = MHD_start_daemon(flags, 0, NULL, NULL, rx_handler, rx, MHD_OPTION_SOCK_ADDR,
                                 (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, rx_done, rx,
                                 MHD_OPTION_END);
    }
    assert_non_null(rx->d);
    struct sockaddr_in bound;
    socklen_t len = sizeof bound;
    int fd = listen_fd;
    if (fd < 0) {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(rx->d, MHD_DAEMON_INFO_LISTEN_FD);
        fd = info->listen_fd;
    }
    assert_int_equal(getsockname(fd, (struct sockaddr *)&bound, &len), 0);
    rx->port = ntohs(bound.sin_port);
    assert_true(rx->port > 0);
    return rx;
}

static receiver *rx_start(void)
{
    return rx_start_on(-1);
}

static void rx_clear(receiver *rx)
{
    for (size_t i = 0; i < rx->n; i++) {
        free(rx->reqs[i].path);
        free(rx->reqs[i].body);
        for (size_t h = 0; h < rx->reqs[i].n_headers; h++) {
            free(rx->reqs[i].names[h]);
            free(rx->reqs[i].values[h]);
        }
    }
    rx->n = 0;
}

static void rx_stop(receiver *rx)
{
    MHD_stop_daemon(rx->d);
    rx_clear(rx);
    pthread_mutex_destroy(&rx->lock);
    free(rx);
}

/* A port nothing listens on yet (a receiver that is down), held by a
 * socket bound to it that does not listen: a connection is refused as on a
 * port nobody has, and no other process can take the port before the
 * receiver starts on it (rx_start_held).  Freeing the port and binding it
 * again later lost it once to a test running alongside ("Failed to bind to
 * port ...: Address already in use"). */
typedef struct held_port {
    int fd, port;
} held_port;

static held_port hold_port(void)
{
    held_port h = {.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    assert_true(h.fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    assert_int_equal(bind(h.fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(getsockname(h.fd, (struct sockaddr *)&addr, &len), 0);
    h.port = ntohs(addr.sin_port);
    return h;
}

/* The receiver comes up on the held port (the socket is its own now). */
static receiver *rx_start_held(held_port *h)
{
    receiver *rx = rx_start_on(h->fd);
    h->fd = -1;
    return rx;
}

/* host.yaml's notifications: `settings` ("" or lines such as
 * "  concurrency: 4\n"), and subscription `id` taking every event to a port
 * nothing listens on yet, tried again every 50 to 100 ms.  Returns the held
 * port, for a receiver started there later. */
static held_port down_subscription(char *yaml, size_t size, const char *settings, const char *id)
{
    held_port h = hold_port();
    snprintf(yaml, size,
             "notifications:\n%s  subscriptions:\n"
             "    - {id: %s, url: \"http://127.0.0.1:%d/x\", events: all,\n"
             "       max_attempts: 100, backoff_base_ms: 50, backoff_cap_ms: 100}\n",
             settings, id, h.port);
    return h;
}

static size_t rx_count(receiver *rx)
{
    pthread_mutex_lock(&rx->lock);
    size_t n = rx->n;
    pthread_mutex_unlock(&rx->lock);
    return n;
}

static void rx_wait(receiver *rx, size_t n)
{
    long long end = tu_now_ms() + 15000;
    while (rx_count(rx) < n && tu_now_ms() < end)
        usleep(5000);
    if (rx_count(rx) < n)
        fail_msg("the receiver got %zu of %zu requests", rx_count(rx), n);
}

static const char *rx_header(const rx_req *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        if (!strcasecmp(r->names[i], name))
            return r->values[i];
    }
    return NULL;
}

/* ---- helpers ---------------------------------------------------------------------- */

static const char *sget(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static double nget(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void emit(apitest *t, int n, char id[37])
{
    char data[32];
    snprintf(data, sizeof data, "{\"n\":%d}", n);
    const manifest *m = registry_find(t->r, "ok-minimal")->m;
    assert_int_equal(hostapi_emit_checked(t->rt, m, "thing_happened", data, strlen(data),
                                          "user-7", NULL, NULL, id),
                     EVH_OK);
}

static cJSON *get(apitest *t, const char *path, long status)
{
    at_response r;
    assert_int_equal(at_request(t, "GET", path, NULL, NULL, 0, &r), 0);
    if (r.status != status)
        print_error("GET %s: %ld %s\n", path, r.status, r.body);
    assert_int_equal(r.status, status);
    cJSON *j = r.json;
    r.json = NULL;
    at_response_free(&r);
    return j;
}

/* method path body, expecting status; the parsed answer (may be NULL). */
static cJSON *call(apitest *t, const char *method, const char *path, const char *body,
                   long status)
{
    at_response r;
    assert_int_equal(at_json(t, method, path, body, &r), 0);
    if (r.status != status)
        print_error("%s %s: %ld %s\n", method, path, r.status, r.body);
    assert_int_equal(r.status, status);
    cJSON *j = r.json;
    r.json = NULL;
    at_response_free(&r);
    return j;
}

/* Deliveries of a subscription with this status (NULL: any), via the API. */
static int deliveries(apitest *t, const char *sub, const char *status)
{
    char path[256];
    snprintf(path, sizeof path, "/api/deliveries?limit=500&subscription=%s%s%s", sub,
             status ? "&status=" : "", status ? status : "");
    cJSON *page = get(t, path, 200);
    int n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(page, "items"));
    cJSON_Delete(page);
    return n;
}

static void wait_deliveries(apitest *t, const char *sub, const char *status, int n)
{
    long long end = tu_now_ms() + 15000;
    int got;
    while ((got = deliveries(t, sub, status)) != n && tu_now_ms() < end)
        usleep(10000);
    if (got != n)
        fail_msg("%d of %d deliveries of '%s' are %s", got, n, sub, status ? status : "there");
}

/* The first execution id of an event. */
static char *execution_of(apitest *t, const char *event_id)
{
    long long end = tu_now_ms() + 10000;
    while (tu_now_ms() < end) {
        store_filter f = {.limit = STORE_LIST_MAX_LIMIT};
        cJSON *rows = store_executions_list(t->st, &f, NULL);
        const cJSON *r;
        cJSON_ArrayForEach(r, rows)
        {
            if (!strcmp(sget(r, "event_id"), event_id)) {
                char *id = strdup(sget(r, "id"));
                cJSON_Delete(rows);
                return id;
            }
        }
        cJSON_Delete(rows);
        usleep(5000);
    }
    fail_msg("no execution for event %s", event_id);
    return NULL;
}

static void wait_executions(apitest *t, unsigned long long n)
{
    long long end = tu_now_ms() + 15000;
    engine_stats s;
    do {
        engine_get_stats(t->e, &s);
        if (s.executions_ok + s.executions_failed >= n)
            return;
        usleep(2000);
    } while (tu_now_ms() < end);
    fail_msg("only %llu of %llu executions finished",
             (unsigned long long)(s.executions_ok + s.executions_failed), n);
}

/* The members of o, in order, are exactly the names given (NULL-terminated). */
static void assert_keys(const cJSON *o, ...)
{
    va_list ap;
    va_start(ap, o);
    const cJSON *item = o ? o->child : NULL;
    const char *want;
    while ((want = va_arg(ap, const char *))) {
        if (!item)
            fail_msg("member '%s' is missing", want);
        if (strcmp(item->string, want))
            fail_msg("member '%s' where '%s' was expected", item->string, want);
        item = item->next;
    }
    va_end(ap);
    if (item)
        fail_msg("unexpected member '%s'", item->string);
}

static int is_timestamp(const char *t)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (!t || strlen(t) != sizeof shape - 1)
        return 0;
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd' ? !isdigit((unsigned char)t[i]) : t[i] != shape[i])
            return 0;
    }
    return 1;
}

/* The Standard Webhooks signature computed here, independently of
 * notify.c: HMAC-SHA256 over "id.timestamp.body", base64. */
static char *independent_signature(const char *b64_key, const char *id, const char *ts,
                                   const char *body)
{
    unsigned char key[128];
    int klen = EVP_DecodeBlock(key, (const unsigned char *)b64_key, (int)strlen(b64_key));
    size_t len = strlen(b64_key);
    klen -= (b64_key[len - 1] == '=') + (b64_key[len - 2] == '=');
    char *content = NULL;
    assert_true(asprintf(&content, "%s.%s.%s", id, ts, body) > 0);
    unsigned char mac[32];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), key, klen, (unsigned char *)content, strlen(content), mac, &mac_len);
    free(content);
    assert_int_equal(mac_len, 32);
    char *out = calloc(1, 64);
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, 32);
    return out;
}

/* ---- the exact envelopes and headers ------------------------------------------------ */

static const char *const two_wfs[] = {
    "id: ok\nsteps:\n"
    "  - {id: first, uses: test-step, with: {value: 1}}\n"
    "  - {id: second, uses: test-step, with: {value: 2}}\n",
    "id: bad\nsteps:\n"
    "  - {id: first, uses: test-step, with: {value: 1}}\n"
    "  - {id: broken, uses: test-step, with: {mode: fail}}\n",
    NULL};
static const char two_triggers[] =
    "triggers:\n"
    "  - {id: t-ok, source: ok-minimal, event_type: thing_happened, workflow: ok,\n"
    "     conditions: {field: data.n, op: eq, value: 1}}\n"
    "  - {id: t-bad, source: ok-minimal, event_type: thing_happened, workflow: bad,\n"
    "     conditions: {field: data.n, op: eq, value: 2}}\n";

#define SECRET_B64 "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

/* One recorded request: headers, signature, envelope shape; returns the
 * parsed envelope. */
static cJSON *check_request(const rx_req *r, const char *want_event, const char *job_id,
                            const char *want_trigger, const char *want_workflow)
{
    assert_string_equal(r->path, "/hook");
    assert_string_equal(rx_header(r, "Content-Type"), "application/json");
    assert_string_equal(rx_header(r, "Authorization"), "Bearer tok-123");
    assert_string_equal(rx_header(r, "X-Team"), "ops");
    const char *id = rx_header(r, "webhook-id");
    const char *ts = rx_header(r, "webhook-timestamp");
    const char *sig = rx_header(r, "webhook-signature");
    assert_non_null(id);
    assert_non_null(ts);
    assert_non_null(sig);
    assert_int_equal(strncmp(id, "msg_", 4), 0);
    long long t = atoll(ts);
    assert_true(llabs(t - (long long)time(NULL)) < 60);
    char *want_sig = independent_signature(SECRET_B64, id, ts, r->body);
    assert_string_equal(sig, want_sig);
    free(want_sig);

    cJSON *env = cJSON_Parse(r->body);
    assert_non_null(env);
    assert_keys(env, "event", "data", "timestamp", NULL);
    assert_string_equal(sget(env, "event"), want_event);
    assert_true(is_timestamp(sget(env, "timestamp")));
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(env, "data");
    assert_string_equal(sget(data, "jobId"), job_id);
    const cJSON *job = cJSON_GetObjectItemCaseSensitive(data, "job");
    assert_string_equal(sget(job, "id"), job_id);
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(job, "config");
    assert_keys(config, "workflow_id", "workflow_version", "trigger_id", "event_id",
                "event_type", "source", "steps", NULL);
    assert_string_equal(sget(config, "workflow_id"), want_workflow);
    assert_string_equal(sget(config, "trigger_id"), want_trigger);
    assert_string_equal(sget(config, "event_type"), "thing_happened");
    assert_string_equal(sget(config, "source"), "ok-minimal");
    assert_int_equal(strlen(sget(config, "workflow_version")), 16);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(config, "steps")), 2);
    const cJSON *progress = cJSON_GetObjectItemCaseSensitive(job, "progress");
    assert_true(nget(progress, "total") == 2);
    int plugin_event = !strncmp(want_event, "plugin", 6);
    if (plugin_event)
        assert_keys(progress, "done", "total", "step", NULL);
    else
        assert_keys(progress, "done", "total", NULL);
    int finished = !strcmp(want_event, "jobComplete") || !strcmp(want_event, "jobError");
    if (finished)
        assert_keys(job, "id", "config", "progress", "result", NULL);
    else
        assert_keys(job, "id", "config", "progress", NULL);
    if (!strcmp(want_event, "jobStart") || !strcmp(want_event, "jobComplete"))
        assert_keys(data, "jobId", "job", NULL);
    else if (!strcmp(want_event, "jobError"))
        assert_keys(data, "jobId", "error", "job", NULL);
    else if (!strcmp(want_event, "pluginStart"))
        assert_keys(data, "jobId", "pluginName", "job", NULL);
    else if (!strcmp(want_event, "pluginComplete"))
        assert_keys(data, "jobId", "pluginName", "metrics", "job", NULL);
    else
        assert_keys(data, "jobId", "pluginName", "error", "job", NULL);
    if (plugin_event)
        assert_string_equal(sget(data, "pluginName"), "test-step");
    if (cJSON_GetObjectItemCaseSensitive(data, "error"))
        assert_keys(cJSON_GetObjectItemCaseSensitive(data, "error"), "message", NULL);
    return env;
}

static const cJSON *job_of(const cJSON *env)
{
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(env, "data"), "job");
}

static double progress_done(const cJSON *env)
{
    return nget(cJSON_GetObjectItemCaseSensitive(job_of(env), "progress"), "done");
}

static const char *progress_step(const cJSON *env)
{
    return sget(cJSON_GetObjectItemCaseSensitive(job_of(env), "progress"), "step");
}

/* The requests of one job (by jobId), in the order they came. */
static size_t requests_of(receiver *rx, const char *job_id, const rx_req **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < rx->n && n < max; i++) {
        cJSON *env = cJSON_Parse(rx->reqs[i].body);
        const char *jid = sget(cJSON_GetObjectItemCaseSensitive(env, "data"), "jobId");
        if (jid && !strcmp(jid, job_id))
            out[n++] = &rx->reqs[i];
        cJSON_Delete(env);
    }
    return n;
}

static double metric_value(const char *text, const char *line_prefix)
{
    const char *p = strstr(text, line_prefix);
    if (!p)
        fail_msg("no metric %s", line_prefix);
    return strtod(p + strlen(line_prefix), NULL);
}

static void test_envelopes_headers_signature(void **state)
{
    (void)state;
    metrics_reset();
    receiver *rx = rx_start();
    setenv("EVH_T_HOOK_TOKEN", "tok-123", 1);
    setenv("EVH_T_HOOK_SECRET", "whsec_" SECRET_B64, 1);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "notifications:\n"
             "  subscriptions:\n"
             "    - id: hook\n"
             "      url: \"http://127.0.0.1:%d/hook\"\n"
             "      events: all\n"
             "      token: \"${EVH_T_HOOK_TOKEN}\"\n"
             "      secret: \"${EVH_T_HOOK_SECRET}\"\n"
             "      headers: {X-Team: ops}\n",
             rx->port);
    at_options o = {.workflows = two_wfs, .triggers = two_triggers, .host_yaml = yaml};
    apitest *t = at_start(&o);
    char ev_ok[37], ev_bad[37];
    emit(t, 1, ev_ok);
    emit(t, 2, ev_bad);
    char *x_ok = execution_of(t, ev_ok), *x_bad = execution_of(t, ev_bad);
    rx_wait(rx, 12);
    wait_deliveries(t, "hook", "delivered", 12);

    /* the succeeding workflow, in order */
    const rx_req *reqs[16];
    pthread_mutex_lock(&rx->lock);
    assert_int_equal(requests_of(rx, x_ok, reqs, 16), 6);
    static const char *const ok_events[] = {"jobStart",    "pluginStart", "pluginComplete",
                                            "pluginStart", "pluginComplete", "jobComplete"};
    static const double ok_done[] = {0, 0, 1, 1, 2, 2};
    static const char *const ok_steps[] = {NULL, "first", "first", "second", "second", NULL};
    const char *ids[12];
    size_t n_ids = 0;
    for (size_t i = 0; i < 6; i++) {
        cJSON *env = check_request(reqs[i], ok_events[i], x_ok, "t-ok", "ok");
        assert_true(progress_done(env) == ok_done[i]);
        if (ok_steps[i])
            assert_string_equal(progress_step(env), ok_steps[i]);
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(env, "data");
        if (!strcmp(ok_events[i], "pluginComplete")) {
            char *m = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(data, "metrics"));
            assert_string_equal(m, "{\"attempt\":1}");
            free(m);
        }
        if (!strcmp(ok_events[i], "jobComplete")) {
            const cJSON *result = cJSON_GetObjectItemCaseSensitive(job_of(env), "result");
            assert_keys(result, "metrics", "summary", NULL);
            char *m = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(result, "metrics"));
            assert_string_equal(m, "[{\"step\":\"first\",\"plugin\":\"test-step\",\"metrics\":"
                                   "{\"attempt\":1}},{\"step\":\"second\",\"plugin\":"
                                   "\"test-step\",\"metrics\":{\"attempt\":1}}]");
            free(m);
            const cJSON *summary = cJSON_GetObjectItemCaseSensitive(result, "summary");
            assert_keys(summary, "status", "duration_ms", NULL);
            assert_string_equal(sget(summary, "status"), "succeeded");
            assert_true(nget(summary, "duration_ms") >= 0);
        }
        ids[n_ids++] = rx_header(reqs[i], "webhook-id");
        cJSON_Delete(env);
    }

    /* the failing workflow, in order */
    assert_int_equal(requests_of(rx, x_bad, reqs, 16), 6);
    static const char *const bad_events[] = {"jobStart",    "pluginStart", "pluginComplete",
                                             "pluginStart", "pluginError", "jobError"};
    static const double bad_done[] = {0, 0, 1, 1, 1, 1};
    for (size_t i = 0; i < 6; i++) {
        cJSON *env = check_request(reqs[i], bad_events[i], x_bad, "t-bad", "bad");
        assert_true(progress_done(env) == bad_done[i]);
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(env, "data");
        const char *msg = sget(cJSON_GetObjectItemCaseSensitive(data, "error"), "message");
        if (!strcmp(bad_events[i], "pluginError")) {
            assert_string_equal(progress_step(env), "broken");
            assert_non_null(strstr(msg, "failing on purpose (attempt 1)"));
        }
        if (!strcmp(bad_events[i], "jobError")) {
            assert_non_null(strstr(msg, "step 'broken' (test-step) failed on attempt 1 of 1"));
            const cJSON *result = cJSON_GetObjectItemCaseSensitive(job_of(env), "result");
            const cJSON *summary = cJSON_GetObjectItemCaseSensitive(result, "summary");
            assert_string_equal(sget(summary, "status"), "failed");
            assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(result,
                                                                                 "metrics")),
                             2);
        }
        ids[n_ids++] = rx_header(reqs[i], "webhook-id");
        cJSON_Delete(env);
    }
    /* every event has its own webhook-id */
    for (size_t i = 0; i < n_ids; i++)
        for (size_t j = i + 1; j < n_ids; j++)
            assert_string_not_equal(ids[i], ids[j]);
    pthread_mutex_unlock(&rx->lock);

    /* the outbox says the same, and the secrets never show */
    char path[160];
    snprintf(path, sizeof path, "/api/deliveries?job=%s", x_bad);
    cJSON *page = get(t, path, 200);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(page, "items");
    assert_int_equal(cJSON_GetArraySize(items), 6);
    const cJSON *newest = cJSON_GetArrayItem(items, 0);
    assert_string_equal(sget(newest, "event"), "jobError");
    assert_string_equal(sget(newest, "status"), "delivered");
    assert_true(nget(newest, "attempt") == 1);
    assert_true(nget(newest, "last_status") == 200);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(newest, "next_attempt_at")));
    char one[96];
    snprintf(one, sizeof one, "/api/deliveries/%d", (int)nget(newest, "id"));
    cJSON *d = get(t, one, 200);
    assert_string_equal(sget(cJSON_GetObjectItemCaseSensitive(d, "body"), "event"), "jobError");
    cJSON_Delete(d);
    cJSON_Delete(page);
    at_response r;
    assert_int_equal(at_request(t, "GET", "/api/subscriptions/hook", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, "tok-123"));
    assert_null(strstr(r.body, SECRET_B64));
    assert_null(strstr(r.body, "ops"));
    assert_string_equal(sget(r.json, "token"), "***");
    assert_string_equal(sget(r.json, "secret"), "***");
    assert_string_equal(sget(r.json, "origin"), "host.yaml");
    at_response_free(&r);

    /* metrics: counts and latency per subscription, nothing pending */
    assert_int_equal(at_request(t, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_true(metric_value(r.body, "evhost_deliveries_total{subscription=\"hook\","
                                     "status=\"delivered\"} ") == 12);
    assert_true(metric_value(r.body, "evhost_delivery_duration_seconds_count{subscription="
                                     "\"hook\"} ") == 12);
    assert_true(metric_value(r.body, "evhost_deliveries_pending ") == 0);
    at_response_free(&r);
    free(x_ok);
    free(x_bad);
    at_stop(t);
    rx_stop(rx);
}

/* The signature of the Standard Webhooks reference vector. */
static void test_sign_reference_vector(void **state)
{
    (void)state;
    unsigned char key[64];
    int n = EVP_DecodeBlock(key, (const unsigned char *)SECRET_B64, (int)strlen(SECRET_B64));
    char *sig = NULL;
    const char body[] = "{\"test\": 2432232314}";
    assert_int_equal(notify_sign(key, (size_t)n, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                                 strlen(body), &sig),
                     EVH_OK);
    assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    free(sig);
    /* a signer starts each signature from the key's pads: a message signed
     * before does not change the next one's signature */
    signer *sg = signer_new(key, (size_t)n);
    assert_non_null(sg);
    assert_true(signer_is_for(sg, key, (size_t)n));
    assert_false(signer_is_for(sg, (const unsigned char *)"other", 5));
    for (int round = 0; round < 3; round++) {
        assert_int_equal(signer_sign(sg, "msg_other", 1614265331, "{}", 2, &sig), EVH_OK);
        assert_string_not_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        free(sig);
        assert_int_equal(
            signer_sign(sg, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, strlen(body), &sig),
            EVH_OK);
        assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        free(sig);
    }
    signer_free(sg);
    /* full jitter within min(cap, base * 2^(n-1)) */
    for (uint64_t r = 0; r < 1000; r += 7) {
        assert_true(notify_backoff_ms(100, 1000, 1, r * 2654435761u) <= 100);
        assert_true(notify_backoff_ms(100, 1000, 3, r * 2654435761u) <= 400);
        assert_true(notify_backoff_ms(100, 1000, 30, r * 2654435761u) <= 1000);
    }
}

/* ---- a receiver failing the first attempts ------------------------------------------ */

static const char *const one_wf[] = {
    "id: ok\nsteps:\n  - {id: first, uses: test-step, with: {value: 1}}\n", NULL};
static const char one_trigger[] =
    "triggers:\n  - {id: t-ok, source: ok-minimal, event_type: thing_happened, workflow: ok}\n";

static void test_recovers_after_failures(void **state)
{
    (void)state;
    receiver *rx = rx_start();
    rx->fail_first = 3;
    rx->fail_status = 503;
    rx->retry_after = "1"; /* the first failure asks for a second */
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "notifications:\n  subscriptions:\n"
             "    - {id: flaky, url: \"http://127.0.0.1:%d/x\", events: [jobComplete],\n"
             "       max_attempts: 5, backoff_base_ms: 5, backoff_cap_ms: 20}\n",
             rx->port);
    at_options o = {.workflows = one_wf, .triggers = one_trigger, .host_yaml = yaml};
    apitest *t = at_start(&o);
    char ev[37];
    emit(t, 1, ev);
    rx_wait(rx, 4);
    wait_deliveries(t, "flaky", "delivered", 1);
    usleep(100000);
    assert_int_equal(rx_count(rx), 4); /* nothing after the success */
    pthread_mutex_lock(&rx->lock);
    /* the same message each time; Retry-After honoured */
    for (size_t i = 1; i < 4; i++)
        assert_string_equal(rx_header(&rx->reqs[i], "webhook-id"),
                            rx_header(&rx->reqs[0], "webhook-id"));
    assert_true(rx->reqs[1].at_ms - rx->reqs[0].at_ms >= 900);
    assert_true(rx->reqs[3].at_ms - rx->reqs[2].at_ms < 900);
    pthread_mutex_unlock(&rx->lock);
    /* recorded once, as delivered, after 4 attempts */
    assert_int_equal(deliveries(t, "flaky", NULL), 1);
    cJSON *page = get(t, "/api/deliveries?subscription=flaky", 200);
    const cJSON *d = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(page, "items"), 0);
    assert_string_equal(sget(d, "status"), "delivered");
    assert_true(nget(d, "attempt") == 4);
    assert_true(nget(d, "last_status") == 200);
    assert_string_equal(sget(d, "event"), "jobComplete");
    cJSON_Delete(page);
    at_stop(t);
    rx_stop(rx);
}

/* A subscription's secret changed through the API: the deliveries after it
 * are signed with the new key (the delivery thread keeps each key made
 * ready between deliveries, and must not keep the old one). */
static void test_secret_change_signs_with_new_key(void **state)
{
    (void)state;
    static const char other_b64[] = "c2Vjb25kIGtleSwgYWZ0ZXIgdGhlIFBBVENI"; /* 27 bytes */
    receiver *rx = rx_start();
    at_options o = {.workflows = one_wf, .triggers = one_trigger};
    apitest *t = at_start(&o);
    char body[256];
    snprintf(body, sizeof body,
             "{\"id\": \"rot\", \"url\": \"http://127.0.0.1:%d/x\", \"events\": "
             "[\"jobComplete\"], \"secret\": \"whsec_" SECRET_B64 "\"}",
             rx->port);
    cJSON_Delete(call(t, "POST", "/api/subscriptions", body, 201));
    char ev[37];
    emit(t, 1, ev);
    rx_wait(rx, 1);
    snprintf(body, sizeof body, "{\"secret\": \"whsec_%s\"}", other_b64);
    cJSON_Delete(call(t, "PATCH", "/api/subscriptions/rot", body, 200));
    emit(t, 2, ev);
    rx_wait(rx, 2);
    pthread_mutex_lock(&rx->lock);
    for (size_t i = 0; i < 2; i++) {
        const rx_req *r = &rx->reqs[i];
        const char *id = rx_header(r, "webhook-id"), *ts = rx_header(r, "webhook-timestamp");
        char *before = independent_signature(SECRET_B64, id, ts, r->body);
        char *after = independent_signature(other_b64, id, ts, r->body);
        assert_string_equal(rx_header(r, "webhook-signature"), i == 0 ? before : after);
        assert_string_not_equal(before, after);
        free(before);
        free(after);
    }
    pthread_mutex_unlock(&rx->lock);
    at_stop(t);
    rx_stop(rx);
}

/* ---- a receiver that is down: dead letters, then the retry API ---------------------- */

/* A job's first event fails while its later ones are already handed to the
 * delivery thread: they wait for its retry, then go in order; the next job
 * is delivered in order too (the subscription back to the fast path). */
static void test_order_kept_across_a_retry(void **state)
{
    (void)state;
    receiver *rx = rx_start();
    rx->fail_first = 2;
    rx->fail_status = 503;
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "notifications:\n  subscriptions:\n"
             "    - {id: ordered, url: \"http://127.0.0.1:%d/x\", events: all,\n"
             "       max_attempts: 10, backoff_base_ms: 20, backoff_cap_ms: 50}\n",
             rx->port);
    at_options o = {.workflows = one_wf, .triggers = one_trigger, .host_yaml = yaml};
    apitest *t = at_start(&o);
    char ev[37];
    emit(t, 1, ev);
    char *x1 = execution_of(t, ev);
    rx_wait(rx, 6);
    wait_deliveries(t, "ordered", "delivered", 4);
    emit(t, 2, ev);
    char *x2 = execution_of(t, ev);
    rx_wait(rx, 10);
    wait_deliveries(t, "ordered", "delivered", 8);
    static const char *const order[] = {"jobStart", "pluginStart", "pluginComplete",
                                        "jobComplete"};
    pthread_mutex_lock(&rx->lock);
    assert_int_equal(rx->n, 10);
    /* the two failures were jobStart's first attempts: nothing of the job
     * came between them and its success */
    for (size_t i = 0; i < 3; i++)
        assert_non_null(strstr(rx->reqs[i].body, "\"event\":\"jobStart\""));
    for (size_t i = 0; i < 4; i++) {
        char want[64];
        snprintf(want, sizeof want, "\"event\":\"%s\"", order[i]);
        assert_non_null(strstr(rx->reqs[2 + i].body, want));
        assert_non_null(strstr(rx->reqs[2 + i].body, x1));
        assert_non_null(strstr(rx->reqs[6 + i].body, want));
        assert_non_null(strstr(rx->reqs[6 + i].body, x2));
    }
    pthread_mutex_unlock(&rx->lock);
    at_stop(t);
    rx_stop(rx);
    free(x1);
    free(x2);
}

static void test_dead_letters_and_retry(void **state)
{
    (void)state;
    held_port port = hold_port();
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "notifications:\n  subscriptions:\n"
             "    - {id: down, url: \"http://127.0.0.1:%d/x\", events: [jobStart, jobComplete],\n"
             "       max_attempts: 2, backoff_base_ms: 1, backoff_cap_ms: 5, timeout_ms: 2000}\n",
             port.port);
    at_options o = {.workflows = one_wf, .triggers = one_trigger, .host_yaml = yaml};
    apitest *t = at_start(&o);
    char ev[37];
    emit(t, 1, ev);
    wait_deliveries(t, "down", "dead", 2);
    cJSON *page = get(t, "/api/deliveries?subscription=down&status=dead", 200);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(page, "items");
    const cJSON *complete = cJSON_GetArrayItem(items, 0), *start = cJSON_GetArrayItem(items, 1);
    assert_string_equal(sget(complete, "event"), "jobComplete");
    assert_string_equal(sget(start, "event"), "jobStart");
    assert_true(nget(start, "attempt") == 2);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(start, "last_status")));
    assert_non_null(sget(start, "last_error"));
    int start_id = (int)nget(start, "id"), complete_id = (int)nget(complete, "id");
    cJSON_Delete(page);

    /* the receiver comes back; the retry API sends both again, in order */
    receiver *rx = rx_start_held(&port);
    char path[96];
    snprintf(path, sizeof path, "/api/deliveries/%d/retry", start_id);
    cJSON *d = call(t, "POST", path, NULL, 202);
    assert_string_equal(sget(d, "status"), "pending");
    assert_true(nget(d, "attempt") == 0);
    cJSON_Delete(d);
    snprintf(path, sizeof path, "/api/deliveries/%d/retry", complete_id);
    cJSON_Delete(call(t, "POST", path, NULL, 202));
    wait_deliveries(t, "down", "delivered", 2);
    rx_wait(rx, 2);
    pthread_mutex_lock(&rx->lock);
    assert_int_equal(rx->n, 2);
    assert_non_null(strstr(rx->reqs[0].body, "\"event\":\"jobStart\""));
    assert_non_null(strstr(rx->reqs[1].body, "\"event\":\"jobComplete\""));
    pthread_mutex_unlock(&rx->lock);
    /* delivered ones are not retried; unknown ones are not found */
    cJSON *err = call(t, "POST", path, NULL, 409);
    assert_non_null(strstr(sget(cJSON_GetObjectItemCaseSensitive(err, "error"), "message"),
                           "is delivered"));
    cJSON_Delete(err);
    cJSON_Delete(call(t, "POST", "/api/deliveries/999999/retry", NULL, 404));
    cJSON_Delete(call(t, "POST", "/api/deliveries/abc/retry", NULL, 404));
    cJSON_Delete(get(t, "/api/deliveries?status=lost", 400));
    cJSON_Delete(get(t, "/api/deliveries?cursor=zz", 400));
    cJSON_Delete(get(t, "/api/deliveries?event=jobEnd", 400));
    at_stop(t);
    rx_stop(rx);
}

/* ---- a receiver that hangs ------------------------------------------------------------ */

#define HANG_EVENTS 20

/* Milliseconds for HANG_EVENTS executions to finish on a host with this
 * host.yaml. */
static long long run_batch(apitest *t)
{
    char ev[37];
    long long t0 = tu_now_ms();
    for (int i = 0; i < HANG_EVENTS; i++)
        emit(t, 1, ev);
    wait_executions(t, HANG_EVENTS);
    return tu_now_ms() - t0;
}

static void test_hanging_receiver_does_not_slow_executions(void **state)
{
    (void)state;
    /* the normal time: nobody subscribed */
    at_options o = {.workflows = one_wf, .triggers = one_trigger};
    apitest *t = at_start(&o);
    long long normal = run_batch(t);
    at_stop(t);

    receiver *rx = rx_start();
    rx->sleep_ms = 1500; /* every answer takes 1.5 s */
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "notifications:\n  concurrency: 4\n  subscriptions:\n"
             "    - {id: slow, url: \"http://127.0.0.1:%d/x\", events: all, timeout_ms: 5000}\n",
             rx->port);
    o.host_yaml = yaml;
    t = at_start(&o);
    long long hanging = run_batch(t);
    print_message("%d executions: %lld ms with nobody subscribed, %lld ms with a receiver "
                  "that takes 1.5 s per answer\n",
                  HANG_EVENTS, normal, hanging);
    /* 80 deliveries at 1.5 s, 4 at a time, would take 30 s */
    assert_true(hanging < 1500);
    assert_true(hanging < normal * 4 + 500);
    notifier_stats s;
    notifier_get_stats(t->notify, &s);
    assert_int_equal(s.submitted, HANG_EVENTS * 4);
    at_stop(t); /* attempts in flight finish (or are given back) */
    rx_stop(rx);
}

/* ---- a restart with deliveries still pending -------------------------------------------- */

static void test_restart_delivers_pending(void **state)
{
    (void)state;
    char *dir = tu_tempdir("hooks-db");
    char *db = tu_join(dir, "evhost.db");
    char yaml[512];
    held_port port = down_subscription(yaml, sizeof yaml, "", "later");
    at_options o = {.workflows = one_wf, .triggers = one_trigger, .host_yaml = yaml, .db = db};
    apitest *t = at_start(&o);
    char ev[37];
    emit(t, 1, ev);
    char *x = execution_of(t, ev);
    wait_executions(t, 1);
    wait_deliveries(t, "later", NULL, 4);
    assert_int_equal(deliveries(t, "later", "delivered"), 0);
    at_stop(t);

    /* the receiver is up now; a new host on the same database sends them */
    receiver *rx = rx_start_held(&port);
    t = at_start(&o);
    rx_wait(rx, 4);
    wait_deliveries(t, "later", "delivered", 4);
    pthread_mutex_lock(&rx->lock);
    static const char *const order[] = {"jobStart", "pluginStart", "pluginComplete",
                                        "jobComplete"};
    for (size_t i = 0; i < 4; i++) {
        char want[64];
        snprintf(want, sizeof want, "\"event\":\"%s\"", order[i]);
        assert_non_null(strstr(rx->reqs[i].body, want));
        assert_non_null(strstr(rx->reqs[i].body, x));
    }
    pthread_mutex_unlock(&rx->lock);
    usleep(100000);
    assert_int_equal(rx_count(rx), 4); /* each once */
    at_stop(t);
    rx_stop(rx);
    free(x);
    tu_rmtree(dir);
    free(dir);
    free(db);
}

/* A backlog drained from the table: 60 jobs' 240 events, stored while the
 * receiver was down, go out through 4 transfers at a time (so each read
 * ahead is started over many passes, and read again as jobs move on):
 * each event once, each job's in order. */
static void test_backlog_drains_in_order(void **state)
{
    (void)state;
    enum { JOBS = 60, EVENTS = 4 * JOBS };
    char *dir = tu_tempdir("hooks-backlog");
    char *db = tu_join(dir, "evhost.db");
    char yaml[512];
    held_port port = down_subscription(yaml, sizeof yaml, "  concurrency: 4\n", "backlog");
    at_options o = {.workflows = one_wf, .triggers = one_trigger, .host_yaml = yaml, .db = db};
    apitest *t = at_start(&o);
    char ev[37];
    for (int i = 0; i < JOBS; i++)
        emit(t, i, ev);
    wait_executions(t, JOBS);
    wait_deliveries(t, "backlog", NULL, EVENTS);
    at_stop(t);

    receiver *rx = rx_start_held(&port);
    t = at_start(&o);
    rx_wait(rx, EVENTS);
    wait_deliveries(t, "backlog", "delivered", EVENTS);
    usleep(100000);
    assert_int_equal(rx_count(rx), EVENTS); /* each once */
    static const char *const order[] = {"jobStart", "pluginStart", "pluginComplete", "jobComplete"};
    struct {
        char job[40];
        int next;
    } jobs[JOBS];
    size_t n_jobs = 0;
    pthread_mutex_lock(&rx->lock);
    for (size_t i = 0; i < EVENTS; i++) {
        cJSON *env = cJSON_Parse(rx->reqs[i].body);
        assert_non_null(env);
        const char *job = sget(cJSON_GetObjectItemCaseSensitive(env, "data"), "jobId");
        size_t k = 0;
        while (k < n_jobs && strcmp(jobs[k].job, job))
            k++;
        if (k == n_jobs) {
            assert_true(n_jobs < JOBS);
            snprintf(jobs[n_jobs].job, sizeof jobs[n_jobs].job, "%s", job);
            jobs[n_jobs++].next = 0;
        }
        assert_true(jobs[k].next < 4);
        if (strcmp(sget(env, "event"), order[jobs[k].next]))
            fail_msg("job %s: %s arrived where %s was due", job, sget(env, "event"),
                     order[jobs[k].next]);
        jobs[k].next++;
        cJSON_Delete(env);
    }
    pthread_mutex_unlock(&rx->lock);
    assert_int_equal(n_jobs, JOBS);
    at_stop(t);
    rx_stop(rx);
    tu_rmtree(dir);
    free(dir);
    free(db);
}

/* ---- an older database: its outbox is converted (schema 4) and moved to its file (5) ----- */

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
}

static void test_schema2_outbox_migrated(void **state)
{
    (void)state;
    receiver *rx = rx_start();
    char *dir = tu_tempdir("hooks-v2");
    char *db = tu_join(dir, "evhost.db");
    /* a database as schema 3 left it (its outbox as version 2 made it, in
     * the main database): made new, then that outbox added, with rows in it */
    store *st = NULL;
    store_options so = {.path = db};
    assert_int_equal(store_open(&so, &st, NULL), EVH_OK);
    store_close(st);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    char sql[8192];
    snprintf(sql, sizeof sql,
             "DELETE FROM schema_migrations WHERE version >= 4;"
             "CREATE TABLE subscriptions(id TEXT PRIMARY KEY, url TEXT NOT NULL,"
             " events TEXT NOT NULL, token TEXT, secret TEXT, headers TEXT, timeout_ms INTEGER,"
             " max_attempts INTEGER, backoff_base_ms INTEGER, backoff_cap_ms INTEGER,"
             " enabled INTEGER NOT NULL DEFAULT 1, disabled_reason TEXT,"
             " origin TEXT NOT NULL DEFAULT 'api', created_at TEXT NOT NULL,"
             " updated_at TEXT NOT NULL);"
             "CREATE TABLE deliveries(id INTEGER PRIMARY KEY AUTOINCREMENT,"
             " subscription_id TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,"
             " event TEXT NOT NULL, job_id TEXT NOT NULL, message_id TEXT NOT NULL,"
             " body TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0,"
             " status TEXT NOT NULL DEFAULT 'pending'"
             "  CHECK(status IN ('pending','delivered','failed','dead')),"
             " next_attempt_at TEXT NOT NULL, last_status INTEGER, last_error TEXT,"
             " created_at TEXT NOT NULL, updated_at TEXT NOT NULL);"
             "CREATE INDEX deliveries_due ON deliveries(next_attempt_at, id)"
             " WHERE status IN ('pending','failed');"
             "CREATE INDEX deliveries_order ON deliveries(subscription_id, job_id, id)"
             " WHERE status IN ('pending','failed');"
             "CREATE INDEX deliveries_subscription ON deliveries(subscription_id, id);"
             "CREATE INDEX deliveries_status ON deliveries(status, id);"
             "CREATE INDEX deliveries_job ON deliveries(job_id, id);"
             "CREATE INDEX deliveries_created ON deliveries(created_at);"
             "INSERT INTO subscriptions(id, url, events, enabled, origin, created_at, updated_at)"
             " VALUES('old', 'http://127.0.0.1:%d/old', '\"all\"', 1, 'host.yaml',"
             " '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z'),"
             " ('other', 'http://127.0.0.1:%d/other', '\"all\"', 0, 'api',"
             " '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');"
             "INSERT INTO deliveries(id, subscription_id, event, job_id, message_id, body, attempt,"
             " status, next_attempt_at, last_status, last_error, created_at, updated_at) VALUES"
             " (7, 'old', 'jobStart', 'job-a', 'msg_a1', '{\"event\":\"jobStart\",\"n\":1}', 0,"
             "  'delivered', '2026-01-01T00:00:00.000Z', 204, NULL,"
             "  '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.000Z'),"
             " (8, 'other', 'jobStart', 'job-a', 'msg_a1', '{\"event\":\"jobStart\",\"n\":1}', 0,"
             "  'pending', '2026-01-01T00:00:00.000Z', NULL, NULL,"
             "  '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z'),"
             " (9, 'old', 'pluginStart', 'job-a', 'msg_a2', '{\"event\":\"pluginStart\",\"n\":2}',"
             "  2, 'failed', '2026-01-01T00:00:00.000Z', 503, 'HTTP 503',"
             "  '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z'),"
             " (10, 'old', 'jobComplete', 'job-a', 'msg_a3', '{\"event\":\"jobComplete\",\"n\":3}',"
             "  0, 'pending', '2026-01-01T00:00:00.000Z', NULL, NULL,"
             "  '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z'),"
             " (11, 'old', 'jobStart', 'job-b', 'msg_b1', '{\"event\":\"jobStart\",\"n\":4}', 8,"
             "  'dead', '2026-01-01T00:00:00.000Z', 500, 'HTTP 500',"
             "  '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');"
             "UPDATE sqlite_sequence SET seq = 20 WHERE name = 'deliveries';",
             rx->port, rx->port);
    exec_ok(h, sql);
    sqlite3_close(h);

    char yaml[256];
    snprintf(yaml, sizeof yaml,
             "notifications:\n  subscriptions:\n"
             "    - {id: old, url: \"http://127.0.0.1:%d/old\", events: all}\n",
             rx->port);
    at_options o = {.workflows = one_wf, .triggers = one_trigger, .host_yaml = yaml, .db = db};
    apitest *t = at_start(&o);
    /* the open ones go out, in their job's order, with their webhook-ids */
    rx_wait(rx, 2);
    wait_deliveries(t, "old", "delivered", 3);
    pthread_mutex_lock(&rx->lock);
    assert_int_equal(rx->n, 2);
    assert_non_null(strstr(rx->reqs[0].body, "\"n\":2"));
    assert_string_equal(rx_header(&rx->reqs[0], "webhook-id"), "msg_a2");
    assert_non_null(strstr(rx->reqs[1].body, "\"n\":3"));
    assert_string_equal(rx_header(&rx->reqs[1], "webhook-id"), "msg_a3");
    pthread_mutex_unlock(&rx->lock);
    cJSON *d = get(t, "/api/deliveries/9", 200);
    assert_string_equal(sget(d, "status"), "delivered");
    assert_string_equal(sget(d, "event"), "pluginStart");
    assert_string_equal(sget(d, "job_id"), "job-a");
    assert_int_equal((int)nget(d, "attempt"), 3);
    assert_int_equal((int)nget(cJSON_GetObjectItemCaseSensitive(d, "body"), "n"), 2);
    cJSON_Delete(d);
    /* the disabled subscription's delivery is still open, with its message */
    d = get(t, "/api/deliveries?subscription=other&status=pending", 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(d, "items")), 1);
    cJSON_Delete(d);
    /* the dead letter is kept, and retried */
    d = get(t, "/api/deliveries?status=dead", 200);
    cJSON *items = cJSON_GetObjectItemCaseSensitive(d, "items");
    assert_int_equal(cJSON_GetArraySize(items), 1);
    assert_int_equal((int)nget(cJSON_GetArrayItem(items, 0), "id"), 11);
    cJSON_Delete(d);
    cJSON_Delete(call(t, "POST", "/api/deliveries/11/retry", NULL, 202));
    rx_wait(rx, 3);
    wait_deliveries(t, "old", "delivered", 4);
    pthread_mutex_lock(&rx->lock);
    assert_string_equal(rx_header(&rx->reqs[2], "webhook-id"), "msg_b1");
    pthread_mutex_unlock(&rx->lock);
    /* ids are not reused: a new delivery's id is past the old sequence */
    char ev[37];
    emit(t, 1, ev);
    wait_deliveries(t, "old", "delivered", 8);
    d = get(t, "/api/deliveries?subscription=old&limit=1", 200);
    assert_true(nget(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(d, "items"), 0), "id") >
                20);
    cJSON_Delete(d);
    /* the main database has no outbox tables left: they are in the outbox file */
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "SELECT COUNT(*) FROM sqlite_master WHERE name IN"
                                        " ('subscriptions', 'outbox_messages', 'deliveries')",
                                        -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 0);
    sqlite3_finalize(q);
    sqlite3_close(h);
    at_stop(t);
    rx_stop(rx);
    tu_rmtree(dir);
    free(dir);
    free(db);
}

/* ---- 410 Gone ----------------------------------------------------------------------------- */

static void test_gone_disables_subscription(void **state)
{
    (void)state;
    metrics_reset();
    receiver *rx = rx_start();
    rx->status = 410;
    rx->sleep_ms = 300; /* the whole job is in the outbox before the 410 comes */
    at_options o = {.workflows = one_wf, .triggers = one_trigger};
    apitest *t = at_start(&o);
    char body[512];
    snprintf(body, sizeof body,
             "{\"id\": \"gone\", \"url\": \"http://127.0.0.1:%d/x\", \"events\": \"all\", "
             "\"backoff_base_ms\": 1, \"backoff_cap_ms\": 5}",
             rx->port);
    cJSON_Delete(call(t, "POST", "/api/subscriptions", body, 201));
    char ev[37];
    emit(t, 1, ev);
    wait_executions(t, 1);
    wait_deliveries(t, "gone", "dead", 1);
    long long end = tu_now_ms() + 5000;
    cJSON *s = NULL;
    do {
        cJSON_Delete(s);
        s = get(t, "/api/subscriptions/gone", 200);
    } while (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "enabled")) && tu_now_ms() < end);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(s, "enabled")));
    assert_non_null(strstr(sget(s, "disabled_reason"), "410"));
    cJSON_Delete(s);
    usleep(100000);
    assert_int_equal(rx_count(rx), 1); /* nothing more once disabled */
    assert_int_equal(deliveries(t, "gone", "pending"), 3);

    /* enabled again (the receiver is back): the rest of the job goes, in order */
    pthread_mutex_lock(&rx->lock);
    rx->status = 200;
    rx->sleep_ms = 0;
    pthread_mutex_unlock(&rx->lock);
    s = call(t, "PATCH", "/api/subscriptions/gone", "{\"enabled\": true}", 200);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(s, "disabled_reason")));
    cJSON_Delete(s);
    rx_wait(rx, 4);
    wait_deliveries(t, "gone", "delivered", 3);
    pthread_mutex_lock(&rx->lock);
    assert_non_null(strstr(rx->reqs[1].body, "\"event\":\"pluginStart\""));
    assert_non_null(strstr(rx->reqs[3].body, "\"event\":\"jobComplete\""));
    pthread_mutex_unlock(&rx->lock);
    at_response r;
    assert_int_equal(at_request(t, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_true(metric_value(r.body, "evhost_deliveries_total{subscription=\"gone\","
                                     "status=\"dead\"} ") == 1);
    assert_true(metric_value(r.body, "evhost_deliveries_total{subscription=\"gone\","
                                     "status=\"delivered\"} ") == 3);
    at_response_free(&r);
    at_stop(t);
    rx_stop(rx);
}

/* ---- the subscriptions API ------------------------------------------------------------------ */

static void test_subscriptions_api(void **state)
{
    (void)state;
    setenv("EVH_T_FILE_TOKEN", "file-token-1", 1);
    at_options o = {.workflows = one_wf,
                    .triggers = one_trigger,
                    .host_yaml = "notifications:\n  subscriptions:\n"
                                 "    - {id: from-file, url: \"https://example.invalid/h\",\n"
                                 "       token: \"${EVH_T_FILE_TOKEN}\", enabled: false}\n"};
    apitest *t = at_start(&o);
    /* create: 201, Location, secrets redacted, defaults null */
    at_response r;
    assert_int_equal(at_json(t, "POST", "/api/subscriptions",
                             "{\"id\": \"n8n\", \"url\": \"https://n8n.example/webhook/x\", "
                             "\"events\": [\"jobComplete\", \"jobError\"], \"token\": \"t-1\", "
                             "\"secret\": \"raw-secret\", \"headers\": {\"X-Key\": \"k-1\"}, "
                             "\"timeout_ms\": 1500}",
                             &r),
                     0);
    assert_int_equal(r.status, 201);
    char *location = at_header(&r, "Location");
    assert_string_equal(location, "/api/subscriptions/n8n");
    free(location);
    assert_null(strstr(r.body, "t-1"));
    assert_null(strstr(r.body, "raw-secret"));
    assert_null(strstr(r.body, "k-1"));
    assert_string_equal(sget(r.json, "token"), "***");
    assert_string_equal(sget(r.json, "origin"), "api");
    assert_true(nget(r.json, "timeout_ms") == 1500);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r.json, "max_attempts")));
    char *events = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(r.json, "events"));
    assert_string_equal(events, "[\"jobComplete\",\"jobError\"]");
    free(events);
    /* GET -> edit -> PUT keeps the redacted values */
    cJSON *edit = cJSON_Duplicate(r.json, 1);
    at_response_free(&r);
    cJSON_ReplaceItemInObject(edit, "events", cJSON_CreateString("all"));
    char *text = cJSON_PrintUnformatted(edit);
    cJSON *s = call(t, "PUT", "/api/subscriptions/n8n", text, 200);
    free(text);
    cJSON_Delete(edit);
    assert_string_equal(sget(s, "events"), "all");
    cJSON_Delete(s);
    /* stored as given (the outbox file is 0600), only the API redacts */
    store *ob = NULL;
    assert_int_equal(store_open(&(store_options){.path = t->outbox, .outbox = 1}, &ob, NULL),
                     EVH_OK);
    cJSON *row = store_subscription_get(ob, "n8n");
    assert_string_equal(sget(row, "token"), "t-1");
    assert_string_equal(sget(row, "secret"), "raw-secret");
    assert_string_equal(sget(cJSON_GetObjectItemCaseSensitive(row, "headers"), "X-Key"), "k-1");
    cJSON_Delete(row);
    store_close(ob);
    /* PATCH: some fields; null removes */
    s = call(t, "PATCH", "/api/subscriptions/n8n", "{\"token\": null, \"max_attempts\": 3}", 200);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(s, "token")));
    assert_true(nget(s, "max_attempts") == 3);
    assert_string_equal(sget(s, "secret"), "***");
    cJSON_Delete(s);
    /* a POST without id gets one */
    s = call(t, "POST", "/api/subscriptions", "{\"url\": \"http://127.0.0.1:9/x\"}", 201);
    assert_int_equal(strlen(sget(s, "id")), 36);
    char *generated = strdup(sget(s, "id"));
    cJSON_Delete(s);
    /* list: host.yaml's first, then the API's */
    cJSON *page = get(t, "/api/subscriptions", 200);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(page, "items");
    assert_int_equal(cJSON_GetArraySize(items), 3);
    assert_string_equal(sget(cJSON_GetArrayItem(items, 0), "id"), "from-file");
    assert_string_equal(sget(cJSON_GetArrayItem(items, 0), "token"), "***");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(items, 0),
                                                               "enabled")));
    cJSON_Delete(page);
    /* every problem at once, no secret echoed */
    at_response bad;
    assert_int_equal(at_json(t, "POST", "/api/subscriptions",
                             "{\"id\": \"a b\", \"url\": \"ftp://x\", \"events\": [\"jobEnd\"], "
                             "\"secret\": \"whsec_!!!\", \"headers\": {\"Content-Type\": \"x\"}, "
                             "\"timeout_ms\": 0, \"colour\": 1}",
                             &bad),
                     0);
    assert_int_equal(bad.status, 400);
    const cJSON *details =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(bad.json, "error"),
                                         "details");
    static const char *const paths[] = {"colour", "id", "url", "events[0]", "secret",
                                        "timeout_ms", "headers.Content-Type"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        int found = 0;
        const cJSON *item;
        cJSON_ArrayForEach(item, details)
        found |= !strcmp(sget(item, "path"), paths[i]);
        if (!found)
            fail_msg("no problem reported at %s: %s", paths[i], bad.body);
    }
    assert_null(strstr(bad.body, "!!!"));
    at_response_free(&bad);
    cJSON_Delete(call(t, "POST", "/api/subscriptions",
                      "{\"id\": \"n8n\", \"url\": \"http://127.0.0.1:9/x\"}", 409));
    /* host.yaml's: read-only except enabled */
    cJSON_Delete(call(t, "PUT", "/api/subscriptions/from-file",
                      "{\"url\": \"http://127.0.0.1:9/x\"}", 409));
    cJSON_Delete(call(t, "DELETE", "/api/subscriptions/from-file", NULL, 409));
    cJSON_Delete(call(t, "PATCH", "/api/subscriptions/from-file", "{\"url\": \"http://a/\"}", 409));
    s = call(t, "PATCH", "/api/subscriptions/from-file", "{\"enabled\": true}", 200);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "enabled")));
    cJSON_Delete(s);
    /* delete */
    cJSON_Delete(call(t, "DELETE", "/api/subscriptions/n8n", NULL, 204));
    cJSON_Delete(call(t, "DELETE", "/api/subscriptions/n8n", NULL, 404));
    cJSON_Delete(call(t, "GET", "/api/subscriptions/n8n", NULL, 404));
    char path[128];
    snprintf(path, sizeof path, "/api/subscriptions/%s", generated);
    cJSON_Delete(call(t, "DELETE", path, NULL, 204));
    free(generated);
    at_stop(t);
}

/* ---- pages of deliveries ----------------------------------------------------------------- */

static void test_deliveries_pages(void **state)
{
    (void)state;
    receiver *rx = rx_start();
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "notifications:\n  subscriptions:\n"
             "    - {id: pages, url: \"http://127.0.0.1:%d/x\", events: [jobStart]}\n",
             rx->port);
    at_options o = {.workflows = one_wf, .triggers = one_trigger, .host_yaml = yaml};
    apitest *t = at_start(&o);
    char ev[37];
    for (int i = 0; i < 5; i++)
        emit(t, 1, ev);
    wait_deliveries(t, "pages", "delivered", 5);
    char path[256] = "/api/deliveries?limit=2&subscription=pages";
    int seen = 0, pages = 0;
    double last = 1e18;
    for (;;) {
        cJSON *page = get(t, path, 200);
        const cJSON *item;
        cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(page, "items"))
        {
            assert_true(nget(item, "id") < last); /* newest first, no repeats */
            last = nget(item, "id");
            seen++;
        }
        pages++;
        const char *next = sget(page, "next_cursor");
        if (!next) {
            cJSON_Delete(page);
            break;
        }
        snprintf(path, sizeof path, "/api/deliveries?limit=2&subscription=pages&cursor=%s",
                 next);
        cJSON_Delete(page);
    }
    assert_int_equal(seen, 5);
    assert_int_equal(pages, 3);
    at_stop(t);
    rx_stop(rx);
}

/* ---- host.yaml: notifications ------------------------------------------------------ */

static void test_config_notifications(void **state)
{
    (void)state;
    setenv("EVH_T_CFG_SECRET", "whsec_" SECRET_B64, 1);
    const char good[] = "notifications:\n"
                        "  concurrency: 4\n"
                        "  backoff_base_ms: 10\n"
                        "  subscriptions:\n"
                        "    - id: a\n"
                        "      url: \"https://example.invalid/a\"\n"
                        "      events: [jobError, pluginError]\n"
                        "      secret: \"${EVH_T_CFG_SECRET}\"\n"
                        "      headers: {X-Key: k-secret}\n";
    evh_config *c = NULL;
    diag d;
    diag_init(&d, NULL);
    assert_int_equal(config_parse_text(good, strlen(good), "host.yaml", &c, &d), EVH_OK);
    assert_int_equal(c->notify_concurrency, 4);
    assert_int_equal(c->notify_backoff_base_ms, 10);
    assert_int_equal(c->notify_max_attempts, 8); /* the default */
    assert_int_equal(c->n_subscriptions, 1);
    assert_string_equal(c->subscriptions[0]->origin, "host.yaml");
    assert_int_equal(c->subscriptions[0]->events, (1u << LC_JOB_ERROR) | (1u << LC_PLUGIN_ERROR));
    assert_int_equal(c->subscriptions[0]->key_len, 24); /* whsec_: base64-decoded */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    config_print_redacted(c, f);
    fclose(f);
    assert_null(strstr(text, SECRET_B64));
    assert_null(strstr(text, "k-secret"));
    assert_non_null(strstr(text, "\"secret\":\"***\""));
    free(text);
    config_free(c);
    diag_free(&d);

    /* every problem, at its line and column, no secret echoed */
    const char bad[] = "notifications:\n"
                       "  subscriptions:\n"
                       "    - id: a\n"
                       "      url: \"ftp://x\"\n"
                       "      token: \"tok\\nzq-hidden\"\n"
                       "    - {id: a, url: \"http://x/\", max_attempts: 0}\n";
    diag_init(&d, "host.yaml");
    assert_int_equal(config_parse_text(bad, strlen(bad), "host.yaml", &c, &d), EVH_E_CONFIG);
    char *all = diag_join(&d);
    assert_non_null(strstr(all, "notifications.subscriptions[0].url: must be an http:// or "
                                "https:// URL"));
    assert_non_null(strstr(all, "notifications.subscriptions[0].token: must not contain "
                                "control characters"));
    assert_non_null(strstr(all, "notifications.subscriptions[1].max_attempts: must be an "
                                "integer from 1 to 100"));
    assert_null(strstr(all, "zq-hidden"));
    assert_int_equal(d.items[0].line, 4);
    assert_int_equal(d.items[0].column, 12);
    free(all);
    diag_free(&d);
}

int main(void)
{
    log_set_level(EVH_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_reference_vector),
        cmocka_unit_test(test_config_notifications),
        cmocka_unit_test(test_envelopes_headers_signature),
        cmocka_unit_test(test_secret_change_signs_with_new_key),
        cmocka_unit_test(test_recovers_after_failures),
        cmocka_unit_test(test_order_kept_across_a_retry),
        cmocka_unit_test(test_dead_letters_and_retry),
        cmocka_unit_test(test_hanging_receiver_does_not_slow_executions),
        cmocka_unit_test(test_restart_delivers_pending),
        cmocka_unit_test(test_backlog_drains_in_order),
        cmocka_unit_test(test_schema2_outbox_migrated),
        cmocka_unit_test(test_gone_disables_subscription),
        cmocka_unit_test(test_subscriptions_api),
        cmocka_unit_test(test_deliveries_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
