/*
 * test_builtin_steps_a.c - the built-in steps http-request, exec and delay,
 * loaded from the build tree with dlopen and run by the engine the way the
 * daemon runs them: events emitted as ok-minimal, triggers routing them to
 * workflows, results read back from the store.
 *
 * http-request talks to a small HTTP/1.1 server on 127.0.0.1 that this test
 * runs on a thread and that records every request it gets.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <evhost/evhost.h>

#include "apitest.h"
#include "hostapi.h"
#include "log.h"
#include "registry.h"
#include "store.h"
#include "testutil.h"

/* ---- a recording HTTP server on loopback ----------------------------------- */

typedef struct seen {
    char *method, *target, *headers, *body;
} seen;

typedef struct httpd {
    int fd, port;
    pthread_t thread;
    atomic_int stop;
    pthread_mutex_t lock;
    seen reqs[32];
    int n;
} httpd;

static void send_all(int c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the client gave up (timeout tests): fine */
        p += w;
        n -= (size_t)w;
    }
}

static void respond(int c, int status, const char *reason, const char *type, const char *extra,
                    const char *body, size_t len)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     status, reason, type, len, extra ? extra : "");
    send_all(c, head, (size_t)n);
    send_all(c, body, len);
}

/* The value of header `name` in a raw header block (malloc), or NULL. */
static char *header_of(const char *block, const char *name)
{
    size_t n = strlen(name);
    for (const char *line = block; line && *line;) {
        const char *end = strstr(line, "\r\n");
        if (!end)
            end = line + strlen(line);
        if ((size_t)(end - line) > n && !strncasecmp(line, name, n) && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            return strndup(v, (size_t)(end - v));
        }
        line = *end ? end + 2 : end;
    }
    return NULL;
}

static void serve(httpd *s, int c)
{
    struct timeval tv = {5, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    char *end = NULL;
    while (!end && len < cap) {
        ssize_t r = recv(c, buf + len, cap - len, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (!end) {
        free(buf);
        return;
    }
    *end = '\0';
    char *body = end + 4;
    char *first_eol = strstr(buf, "\r\n");
    char *headers = first_eol ? first_eol + 2 : end;
    if (first_eol)
        *first_eol = '\0';
    char *cl = header_of(headers, "Content-Length");
    size_t want = cl ? (size_t)strtoul(cl, NULL, 10) : 0;
    free(cl);
    size_t have = len - (size_t)(body - buf);
    while (have < want && (size_t)(body - buf) + want <= cap) {
        ssize_t r = recv(c, body + have, want - have, 0);
        if (r <= 0)
            break;
        have += (size_t)r;
    }
    body[have] = '\0';
    char method[16] = "", target[1024] = "";
    sscanf(buf, "%15s %1023s", method, target);

    pthread_mutex_lock(&s->lock);
    if (s->n < (int)(sizeof s->reqs / sizeof s->reqs[0])) {
        seen *q = &s->reqs[s->n++];
        q->method = strdup(method);
        q->target = strdup(target);
        q->headers = strdup(headers);
        q->body = strndup(body, have);
    }
    pthread_mutex_unlock(&s->lock);
    free(buf);

    if (!strncmp(target, "/slow", 5)) {
        for (int i = 0; i < 150 && !atomic_load(&s->stop); i++)
            usleep(10000);
        respond(c, 200, "OK", "text/plain", NULL, "late", 4);
    } else if (!strncmp(target, "/missing", 8)) {
        static const char text[] = "no such thing here";
        respond(c, 404, "Not Found", "text/plain", NULL, text, sizeof text - 1);
    } else if (!strncmp(target, "/big", 4)) {
        char big[4096];
        memset(big, 'x', sizeof big);
        respond(c, 200, "OK", "text/plain", NULL, big, sizeof big);
    } else if (!strncmp(target, "/text", 5)) {
        respond(c, 200, "OK", "text/plain; charset=utf-8", "X-Multi: a\r\nX-Multi: b\r\n",
                "plain words", 11);
    } else {
        static const char json[] = "{\"ok\":true,\"id\":7,\"tags\":[\"a\",\"b\"]}";
        respond(c, 201, "Created", "application/json; charset=utf-8", "X-Reply: yes\r\n", json,
                sizeof json - 1);
    }
}

static void *httpd_main(void *arg)
{
    httpd *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        serve(s, c);
        close(c);
    }
    return NULL;
}

static httpd *httpd_start(void)
{
    httpd *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->fd, 16), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    pthread_mutex_init(&s->lock, NULL);
    atomic_init(&s->stop, 0);
    assert_int_equal(pthread_create(&s->thread, NULL, httpd_main, s), 0);
    return s;
}

static void httpd_stop(httpd *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->thread, NULL);
    close(s->fd);
    for (int i = 0; i < s->n; i++) {
        free(s->reqs[i].method);
        free(s->reqs[i].target);
        free(s->reqs[i].headers);
        free(s->reqs[i].body);
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* The request whose target starts with prefix (the last one), copied out. */
static int httpd_find(httpd *s, const char *prefix, seen *out)
{
    int found = 0;
    pthread_mutex_lock(&s->lock);
    for (int i = s->n - 1; i >= 0 && !found; i--) {
        if (!strncmp(s->reqs[i].target, prefix, strlen(prefix))) {
            out->method = strdup(s->reqs[i].method);
            out->target = strdup(s->reqs[i].target);
            out->headers = strdup(s->reqs[i].headers);
            out->body = strdup(s->reqs[i].body);
            found = 1;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return found;
}

static void seen_free(seen *q)
{
    free(q->method);
    free(q->target);
    free(q->headers);
    free(q->body);
}

/* A loopback port nobody listens on (bound, then closed). */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- the host, and running one event through it ---------------------------- */

typedef struct harness {
    apitest *t;
    const manifest *src;
    unsigned long long emitted;
} harness;

static const char *const builtins[] = {"http-request", "exec", "delay", NULL};

static harness *start(const char *const *workflows, const char *triggers)
{
    harness *h = calloc(1, sizeof *h);
    assert_non_null(h);
    at_options o = {.builtins = builtins, .workflows = workflows, .triggers = triggers};
    h->t = at_start(&o);
    for (size_t i = 0; builtins[i]; i++) {
        const plugin *p = registry_find(h->t->r, builtins[i]);
        assert_non_null(p);
        assert_int_equal(p->state, PLUGIN_READY);
    }
    h->src = registry_find(h->t->r, "ok-minimal")->m;
    return h;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

/* Every line of `want` (after the workflows' folder and a "/") is among
 * the problems a reload of the workflows reports. */
static void expect_load_problems(harness *h, const char *const *want)
{
    char *problems = at_reload_problems(h->t);
    for (size_t i = 0; want[i]; i++) {
        char *line = fmt("%s/%s\n", h->t->wfdir, want[i]);
        if (!strstr(problems, line))
            fail_msg("problems:\n%s\nlack:\n%s", problems, line);
        free(line);
    }
    free(problems);
}

static void stop(harness *h)
{
    at_stop(h->t);
    free(h);
}

static const char *sget(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static const cJSON *oget(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

/* The execution of event `id` (there must be exactly one). */
static cJSON *execution_of(harness *h, const char *event_id)
{
    store_filter f = {.limit = 100};
    cJSON *rows = store_executions_list(h->t->st, &f, NULL);
    assert_non_null(rows);
    cJSON *found = NULL;
    int n = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, rows)
    {
        const char *ev = sget(r, "event_id");
        if (ev && !strcmp(ev, event_id)) {
            n++;
            cJSON_Delete(found);
            found = store_execution_get(h->t->st, sget(r, "id"));
        }
    }
    cJSON_Delete(rows);
    assert_int_equal(n, 1);
    assert_non_null(found);
    return found;
}

static void emit(harness *h, const char *data, char id[37])
{
    assert_int_equal(hostapi_emit_checked(h->t->rt, h->src, "thing_happened", data, strlen(data),
                                          "user-7", NULL, NULL, id),
                     EVH_OK);
    h->emitted++;
}

/* Emit one event, wait until its workflow ran, return the execution. */
static cJSON *run_event(harness *h, const char *data)
{
    char id[37];
    emit(h, data, id);
    at_wait_settled(h->t, h->emitted);
    return execution_of(h, id);
}

/* The last run of the execution's only (or first) step. */
static const cJSON *step_of(const cJSON *x)
{
    const cJSON *steps = oget(x, "steps");
    assert_true(cJSON_GetArraySize(steps) >= 1);
    return cJSON_GetArrayItem(steps, cJSON_GetArraySize(steps) - 1);
}

static const cJSON *output_of(const cJSON *x)
{
    const cJSON *out = oget(step_of(x), "output");
    assert_true(cJSON_IsObject(out));
    return out;
}

/* Print what happened when an expectation about an execution fails. */
static void expect_status(const cJSON *x, const char *status)
{
    if (strcmp(sget(x, "status"), status) != 0) {
        char *text = cJSON_Print(x);
        print_error("%s\n", text);
        free(text);
    }
    assert_string_equal(sget(x, "status"), status);
}

static void expect_error(const cJSON *x, const char *needle)
{
    expect_status(x, "failed");
    const char *err = sget(step_of(x), "error");
    assert_non_null(err);
    if (!strstr(err, needle))
        print_error("error '%s' does not contain '%s'\n", err, needle);
    assert_non_null(strstr(err, needle));
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = oget(o, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

/* "triggers:" routing data.label == <workflow id> to that workflow. */
static char *route_by_label(const char *const *ids)
{
    size_t cap = 64;
    for (size_t i = 0; ids[i]; i++)
        cap += 2 * strlen(ids[i]) + 160;
    char *t = malloc(cap);
    assert_non_null(t);
    strcpy(t, "triggers:\n");
    for (size_t i = 0; ids[i]; i++) {
        size_t used = strlen(t);
        snprintf(t + used, cap - used,
                 "  - {id: t-%s, source: ok-minimal, event_type: thing_happened, workflow: %s,\n"
                 "     conditions: {field: data.label, op: eq, value: %s}}\n",
                 ids[i], ids[i], ids[i]);
    }
    return t;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    assert_true(vasprintf(&s, f, ap) > 0);
    va_end(ap);
    return s;
}

static void free_all(char **list)
{
    for (size_t i = 0; list[i]; i++)
        free(list[i]);
}

/* ---- http-request -------------------------------------------------------------- */

static void test_http_request_sends_templated_request(void **state)
{
    httpd *srv = httpd_start();
    char *wf[] = {
        fmt("id: post-it\n"
            "steps:\n"
            "  - id: call\n"
            "    uses: http-request\n"
            "    with:\n"
            "      method: POST\n"
            "      url: \"http://127.0.0.1:%d/items/{{ event.data.n }}?tag={{ event.data.label }}\"\n"
            "      headers: {X-Trace: \"ev-{{ event.data.n }}\", X-Count: \"{{ event.data.n }}\"}\n"
            "      body: {n: \"{{ event.data.n }}\", who: \"{{ event.metadata.user_id }}\"}\n"
            "      auth: {bearer: \"tok-{{ event.data.secret }}\"}\n",
            srv->port),
        fmt("id: get-text\n"
            "steps:\n"
            "  - id: call\n"
            "    uses: http-request\n"
            "    with: {url: \"http://127.0.0.1:%d/text\", body: \"raw {{ event.data.n }}\",\n"
            "           auth: {basic: {username: ann, password: \"pw-{{ event.data.secret }}\"}}}\n",
            srv->port),
        NULL};
    static const char *const ids[] = {"post-it", "get-text", NULL};
    char *triggers = route_by_label(ids);
    harness *h = start((const char *const *)wf, triggers);

    cJSON *x = run_event(h, "{\"n\":5,\"label\":\"post-it\",\"secret\":\"s3cr3t\"}");
    expect_status(x, "succeeded");
    /* what the server got: the templated URL, body, headers and token */
    seen q = {0};
    assert_true(httpd_find(srv, "/items/", &q));
    assert_string_equal(q.method, "POST");
    assert_string_equal(q.target, "/items/5?tag=post-it");
    char *auth = header_of(q.headers, "Authorization");
    char *ctype = header_of(q.headers, "Content-Type");
    char *trace = header_of(q.headers, "X-Trace");
    char *count = header_of(q.headers, "X-Count");
    assert_string_equal(auth, "Bearer tok-s3cr3t");
    assert_string_equal(ctype, "application/json");
    assert_string_equal(trace, "ev-5");
    assert_string_equal(count, "5");
    cJSON *sent = cJSON_Parse(q.body);
    assert_non_null(sent);
    assert_int_equal((int)num(sent, "n"), 5); /* a whole-value template keeps the number */
    assert_string_equal(sget(sent, "who"), "user-7");
    cJSON_Delete(sent);
    free(auth);
    free(ctype);
    free(trace);
    free(count);
    seen_free(&q);
    /* the output: status, lower-case headers, the JSON body parsed */
    const cJSON *out = output_of(x);
    assert_int_equal((int)num(out, "status"), 201);
    assert_string_equal(sget(oget(out, "headers"), "x-reply"), "yes");
    assert_non_null(strstr(sget(oget(out, "headers"), "content-type"), "application/json"));
    const cJSON *body = oget(out, "body");
    assert_true(cJSON_IsObject(body));
    assert_int_equal((int)num(body, "id"), 7);
    assert_true(cJSON_IsTrue(oget(body, "ok")));
    const cJSON *metrics = oget(step_of(x), "metrics");
    assert_true(num(metrics, "duration_ms") >= 0);
    assert_int_equal((int)num(metrics, "response_bytes"), 35);
    /* the token is nowhere in what was recorded */
    char *all = cJSON_PrintUnformatted(x);
    assert_null(strstr(all, "s3cr3t"));
    free(all);
    cJSON_Delete(x);

    /* a string body as text; basic auth; a text response stays a string;
     * a repeated header is joined */
    x = run_event(h, "{\"n\":6,\"label\":\"get-text\",\"secret\":\"s3cr3t\"}");
    expect_status(x, "succeeded");
    assert_true(httpd_find(srv, "/text", &q));
    assert_string_equal(q.method, "GET");
    assert_string_equal(q.body, "raw 6");
    auth = header_of(q.headers, "Authorization");
    ctype = header_of(q.headers, "Content-Type");
    assert_string_equal(auth, "Basic YW5uOnB3LXMzY3IzdA=="); /* ann:pw-s3cr3t */
    assert_string_equal(ctype, "text/plain; charset=utf-8");
    free(auth);
    free(ctype);
    seen_free(&q);
    out = output_of(x);
    assert_int_equal((int)num(out, "status"), 200);
    assert_string_equal(sget(out, "body"), "plain words");
    assert_string_equal(sget(oget(out, "headers"), "x-multi"), "a, b");
    cJSON_Delete(x);

    stop(h);
    httpd_stop(srv);
    free(triggers);
    free_all(wf);
    (void)state;
}

static void test_http_request_status_checks(void **state)
{
    httpd *srv = httpd_start();
    char *wf[] = {fmt("id: missing\n"
                      "steps:\n"
                      "  - {id: call, uses: http-request,\n"
                      "     with: {url: \"http://127.0.0.1:%d/missing\"}}\n",
                      srv->port),
                  fmt("id: missing-ok\n"
                      "steps:\n"
                      "  - {id: call, uses: http-request,\n"
                      "     with: {url: \"http://127.0.0.1:%d/missing\", expected_status: [404, 410]}}\n",
                      srv->port),
                  fmt("id: created-not-ok\n"
                      "steps:\n"
                      "  - {id: call, uses: http-request,\n"
                      "     with: {url: \"http://127.0.0.1:%d/json\", expected_status: [200]}}\n",
                      srv->port),
                  NULL};
    static const char *const ids[] = {"missing", "missing-ok", "created-not-ok", NULL};
    char *triggers = route_by_label(ids);
    harness *h = start((const char *const *)wf, triggers);

    /* outside the default 2xx: the status and a body excerpt in the error */
    cJSON *x = run_event(h, "{\"n\":1,\"label\":\"missing\"}");
    expect_error(x, "HTTP 404");
    expect_error(x, "expected 2xx");
    expect_error(x, "no such thing here");
    cJSON_Delete(x);
    /* listed in expected_status: a success, the text body as a string */
    x = run_event(h, "{\"n\":2,\"label\":\"missing-ok\"}");
    expect_status(x, "succeeded");
    assert_int_equal((int)num(output_of(x), "status"), 404);
    assert_string_equal(sget(output_of(x), "body"), "no such thing here");
    cJSON_Delete(x);
    /* a 2xx that is not listed fails too */
    x = run_event(h, "{\"n\":3,\"label\":\"created-not-ok\"}");
    expect_error(x, "HTTP 201");
    expect_error(x, "expected one of 200");
    cJSON_Delete(x);

    stop(h);
    httpd_stop(srv);
    free(triggers);
    free_all(wf);
    (void)state;
}

/* auth.bearer_env: the token comes from the daemon's environment, and only
 * a variable named literally in the workflow is ever read */
static void test_http_request_secrets_from_environment(void **state)
{
    httpd *srv = httpd_start();
    char *wf[] = {fmt("id: env-token\n"
                      "steps:\n"
                      "  - {id: call, uses: http-request, with: {method: PUT,\n"
                      "     url: \"http://127.0.0.1:%d/env\", auth: {bearer_env: EVH_TEST_TOKEN}}}\n",
                      srv->port),
                  fmt("id: env-unset\n"
                      "steps:\n"
                      "  - {id: call, uses: http-request, with: {\n"
                      "     url: \"http://127.0.0.1:%d/unset\", auth: {bearer_env: EVH_TEST_NOPE}}}\n",
                      srv->port),
                  fmt("id: env-picked-by-event\n"
                      "steps:\n"
                      "  - {id: call, uses: http-request, with: {\n"
                      "     url: \"http://127.0.0.1:%d/picked\",\n"
                      "     auth: {bearer_env: \"{{ event.data.var }}\"}}}\n",
                      srv->port),
                  NULL};
    static const char *const ids[] = {"env-token", "env-unset", "env-picked-by-event", NULL};
    char *triggers = route_by_label(ids);
    setenv("EVH_TEST_TOKEN", "from-the-environment", 1);
    unsetenv("EVH_TEST_NOPE");
    harness *h = start((const char *const *)wf, triggers);

    cJSON *x = run_event(h, "{\"n\":1,\"label\":\"env-token\"}");
    expect_status(x, "succeeded");
    seen q = {0};
    assert_true(httpd_find(srv, "/env", &q));
    char *auth = header_of(q.headers, "Authorization");
    char *len = header_of(q.headers, "Content-Length");
    char *ctype = header_of(q.headers, "Content-Type");
    assert_string_equal(q.method, "PUT");
    assert_string_equal(auth, "Bearer from-the-environment");
    assert_string_equal(len, "0"); /* an empty PUT still says how long */
    assert_null(ctype);            /* and claims no form encoding */
    free(auth);
    free(len);
    free(ctype);
    seen_free(&q);
    cJSON_Delete(x);

    /* unset, or an event choosing which variable gets sent: refused when
     * the workflow loads, naming the field; nothing is ever sent */
    const char *line4 = strstr(wf[1], "     url:"); /* the column moves with the port */
    char *unset = fmt("wf1.yaml:4:%d: steps[0].with.auth.bearer_env: environment variable "
                      "'EVH_TEST_NOPE' is not set",
                      (int)(strstr(line4, "EVH_TEST_NOPE") - line4) + 1);
    const char *const refused[] = {unset,
                                   "wf2.yaml:5:25: steps[0].with.auth.bearer_env: must name an "
                                   "environment variable literally, not through a template",
                                   NULL};
    expect_load_problems(h, refused);
    free(unset);
    assert_false(httpd_find(srv, "/unset", &q));
    assert_false(httpd_find(srv, "/picked", &q));

    stop(h);
    unsetenv("EVH_TEST_TOKEN");
    httpd_stop(srv);
    free(triggers);
    free_all(wf);
    (void)state;
}

static void test_http_request_timeout_and_transport_errors(void **state)
{
    httpd *srv = httpd_start();
    char *wf[] = {fmt("id: slow\n"
                      "steps:\n"
                      "  - {id: call, uses: http-request,\n"
                      "     with: {url: \"http://127.0.0.1:%d/slow\", timeout_ms: 300}}\n",
                      srv->port),
                  fmt("id: big\n"
                      "steps:\n"
                      "  - {id: call, uses: http-request,\n"
                      "     with: {url: \"http://127.0.0.1:%d/big\", max_response_bytes: 1000}}\n",
                      srv->port),
                  fmt("id: refused\n"
                      "steps:\n"
                      "  - {id: call, uses: http-request,\n"
                      "     with: {url: \"http://127.0.0.1:%d/\", timeout_ms: 2000}}\n",
                      closed_port()),
                  fmt("id: templated-scheme\n"
                      "steps:\n"
                      "  - {id: call, uses: http-request, with: {url: \"{{ event.data.url }}\"}}\n"),
                  NULL};
    static const char *const ids[] = {"slow", "big", "refused", "templated-scheme", NULL};
    char *triggers = route_by_label(ids);
    harness *h = start((const char *const *)wf, triggers);

    long long t0 = tu_now_ms();
    cJSON *x = run_event(h, "{\"n\":1,\"label\":\"slow\"}");
    long long took = tu_now_ms() - t0;
    expect_error(x, "timed out after 300 ms");
    assert_true(took < 1400); /* the server answers after 1500 ms */
    assert_true(num(step_of(x), "duration_ms") >= 250);
    cJSON_Delete(x);

    x = run_event(h, "{\"n\":2,\"label\":\"big\"}");
    expect_error(x, "larger than max_response_bytes (1000)");
    cJSON_Delete(x);

    x = run_event(h, "{\"n\":3,\"label\":\"refused\"}");
    expect_error(x, "failed: ");
    expect_error(x, "(EVH_E_IO)");
    cJSON_Delete(x);

    /* a URL that only a template supplies is still held to http/https */
    x = run_event(h, "{\"n\":4,\"label\":\"templated-scheme\",\"url\":\"file:///etc/passwd\"}");
    expect_error(x, "scheme 'file' is not allowed");
    cJSON_Delete(x);

    stop(h);
    httpd_stop(srv);
    free(triggers);
    free_all(wf);
    (void)state;
}

/* ---- exec ---------------------------------------------------------------------- */

static void test_exec_echo_and_stdin(void **state)
{
    static const char *const wf[] = {
        "id: echo\n"
        "steps:\n"
        "  - {id: run, uses: exec, with: {command: [/bin/echo, hello, \"{{ event.data.n }}\"]}}\n",
        "id: cat\n"
        "steps:\n"
        "  - id: run\n"
        "    uses: exec\n"
        "    with:\n"
        "      command: [cat]\n" /* found through PATH */
        "      stdin: \"line for {{ event.metadata.user_id }}\\n\"\n",
        "id: cat-json\n"
        "steps:\n"
        "  - {id: run, uses: exec, with: {command: [/bin/cat], stdin: \"{{ event.data }}\"}}\n",
        "id: short\n"
        "steps:\n"
        "  - {id: run, uses: exec,\n"
        "     with: {command: [/bin/echo, 0123456789abcdef], max_output_bytes: 8}}\n",
        "id: pwd\n"
        "steps:\n"
        "  - {id: run, uses: exec, with: {command: [/bin/pwd], cwd: /}}\n",
        /* exits without reading 200 KB of stdin: our write gets EPIPE (and
         * SIGPIPE, which this test process does not ignore) */
        "id: deaf\n"
        "steps:\n"
        "  - {id: run, uses: exec, with: {command: [/bin/true], stdin: \"{{ event.data.blob }}\"}}\n",
        NULL};
    static const char *const ids[] = {"echo", "cat", "cat-json", "short", "pwd", "deaf", NULL};
    char *triggers = route_by_label(ids);
    harness *h = start(wf, triggers);

    cJSON *x = run_event(h, "{\"n\":42,\"label\":\"echo\"}");
    expect_status(x, "succeeded");
    const cJSON *out = output_of(x);
    assert_string_equal(sget(out, "stdout"), "hello 42\n");
    assert_string_equal(sget(out, "stderr"), "");
    assert_int_equal((int)num(out, "exit_code"), 0);
    assert_true(cJSON_IsNull(oget(out, "signal")));
    assert_true(cJSON_IsFalse(oget(out, "truncated")));
    assert_true(num(oget(step_of(x), "metrics"), "duration_ms") >= 0);
    cJSON_Delete(x);

    x = run_event(h, "{\"n\":1,\"label\":\"cat\"}");
    expect_status(x, "succeeded");
    assert_string_equal(sget(output_of(x), "stdout"), "line for user-7\n");
    cJSON_Delete(x);

    x = run_event(h, "{\"n\":2,\"label\":\"cat-json\"}");
    expect_status(x, "succeeded");
    cJSON *echoed = cJSON_Parse(sget(output_of(x), "stdout"));
    assert_non_null(echoed);
    assert_int_equal((int)num(echoed, "n"), 2);
    assert_string_equal(sget(echoed, "label"), "cat-json");
    cJSON_Delete(echoed);
    cJSON_Delete(x);

    x = run_event(h, "{\"n\":3,\"label\":\"short\"}");
    expect_status(x, "succeeded");
    assert_string_equal(sget(output_of(x), "stdout"), "01234567");
    assert_true(cJSON_IsTrue(oget(output_of(x), "truncated")));
    assert_int_equal((int)num(oget(step_of(x), "metrics"), "stdout_bytes"), 17);
    cJSON_Delete(x);

    x = run_event(h, "{\"n\":4,\"label\":\"pwd\"}");
    expect_status(x, "succeeded");
    assert_string_equal(sget(output_of(x), "stdout"), "/\n");
    cJSON_Delete(x);

    size_t blob = 200 * 1024;
    char *data = malloc(blob + 64);
    assert_non_null(data);
    int n = snprintf(data, 64, "{\"n\":5,\"label\":\"deaf\",\"blob\":\"");
    memset(data + n, 'z', blob);
    strcpy(data + n + blob, "\"}");
    x = run_event(h, data);
    free(data);
    expect_status(x, "succeeded");
    assert_int_equal((int)num(output_of(x), "exit_code"), 0);
    cJSON_Delete(x);

    stop(h);
    free(triggers);
    (void)state;
}

static void test_exec_nonzero_exit_and_bad_programs(void **state)
{
    static const char *const wf[] = {
        "id: fails\n"
        "steps:\n"
        "  - {id: run, uses: exec, with: {command: [/bin/ls, /nonexistent-evh-dir]}}\n",
        "id: tolerated\n"
        "steps:\n"
        "  - {id: run, uses: exec,\n"
        "     with: {command: [/bin/ls, /nonexistent-evh-dir], fail_on_nonzero: false}}\n",
        "id: unknown\n"
        "steps:\n"
        "  - {id: run, uses: exec, with: {command: [\"{{ event.data.prog }}\", x]}}\n",
        "id: relative\n"
        "steps:\n"
        "  - {id: run, uses: exec, with: {command: [\"{{ event.data.prog }}\", x]}}\n",
        "id: unknown-literal\n"
        "steps:\n"
        "  - {id: run, uses: exec, with: {command: [no-such-program-evh, x]}}\n",
        "id: relative-literal\n"
        "steps:\n"
        "  - {id: run, uses: exec, with: {command: [bin/echo, x]}}\n",
        "id: not-executable\n"
        "steps:\n"
        "  - {id: run, uses: exec, with: {command: [/etc/passwd]}}\n",
        NULL};
    static const char *const ids[] = {"fails", "tolerated", "unknown", "relative", NULL};
    char *triggers = route_by_label(ids);
    harness *h = start(wf, triggers);

    cJSON *x = run_event(h, "{\"n\":1,\"label\":\"fails\"}");
    expect_error(x, "'/bin/ls' exited with status 2");
    expect_error(x, "nonexistent-evh-dir"); /* the end of stderr */
    cJSON_Delete(x);

    x = run_event(h, "{\"n\":2,\"label\":\"tolerated\"}");
    expect_status(x, "succeeded");
    assert_int_equal((int)num(output_of(x), "exit_code"), 2);
    assert_non_null(strstr(sget(output_of(x), "stderr"), "nonexistent-evh-dir"));
    cJSON_Delete(x);

    /* a program the event names is checked at its run */
    x = run_event(h, "{\"n\":3,\"label\":\"unknown\",\"prog\":\"no-such-program-evh\"}");
    expect_error(x, "'no-such-program-evh' not found in PATH");
    cJSON_Delete(x);

    x = run_event(h, "{\"n\":4,\"label\":\"relative\",\"prog\":\"bin/echo\"}");
    expect_error(x, "must be an absolute path");
    cJSON_Delete(x);

    /* one the workflow names, when the workflow loads, by the same code */
    static const char *const refused[] = {
        "wf4.yaml:3:44: steps[0].with.command[0]: 'no-such-program-evh' not found in PATH "
        "(/usr/local/bin:/usr/bin:/bin)",
        "wf5.yaml:3:44: steps[0].with.command[0]: 'bin/echo' must be an absolute path or a "
        "program name looked up in PATH",
        "wf6.yaml:3:44: steps[0].with.command[0]: cannot run '/etc/passwd': Permission denied",
        NULL};
    expect_load_problems(h, refused);

    stop(h);
    free(triggers);
    (void)state;
}

/* 1 when pid is gone (or a zombie waiting for whoever adopted it). */
static int process_gone(long pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    char *stat = tu_read_file(path);
    if (!stat)
        return 1;
    const char *close_paren = strrchr(stat, ')');
    int zombie = close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z';
    free(stat);
    return zombie;
}

static void test_exec_timeout_kills_process_group(void **state)
{
    char *dir = tu_tempdir("exec-kill");
    char *pidfile = tu_join(dir, "sleeper.pid");
    char *wf[] = {
        strdup("id: sleeper\n"
               "steps:\n"
               "  - {id: run, uses: exec, with: {command: [/bin/sleep, 30], timeout_ms: 300}}\n"),
        /* sh ignores SIGTERM, and so does the sleep it starts in the
         * background (an ignored signal stays ignored across exec): only
         * the SIGKILL to the whole group after the grace period ends both */
        fmt("id: stubborn\n"
            "steps:\n"
            "  - id: run\n"
            "    uses: exec\n"
            "    with:\n"
            "      command: [/bin/sh, -c, \"trap '' TERM; /bin/sleep 30 & echo $! > %s; wait\"]\n"
            "      timeout_ms: 300\n"
            "      kill_grace_ms: 200\n",
            pidfile),
        NULL};
    static const char *const ids[] = {"sleeper", "stubborn", NULL};
    char *triggers = route_by_label(ids);
    harness *h = start((const char *const *)wf, triggers);

    long long t0 = tu_now_ms();
    cJSON *x = run_event(h, "{\"n\":1,\"label\":\"sleeper\"}");
    long long took = tu_now_ms() - t0;
    expect_error(x, "timed out after 300 ms");
    expect_error(x, "SIGTERM");
    assert_true(took < 5000); /* well before the 30 s of the sleep */
    cJSON_Delete(x);

    t0 = tu_now_ms();
    x = run_event(h, "{\"n\":2,\"label\":\"stubborn\"}");
    took = tu_now_ms() - t0;
    expect_error(x, "timed out after 300 ms");
    expect_error(x, "SIGKILL after 200 ms");
    assert_true(took < 5000);
    cJSON_Delete(x);
    /* the background sleep, a grandchild, died with its group */
    char *text = tu_read_file(pidfile);
    assert_non_null(text);
    long pid = strtol(text, NULL, 10);
    assert_true(pid > 1);
    int gone = 0;
    for (long long end = tu_now_ms() + 3000; !(gone = process_gone(pid)) && tu_now_ms() < end;)
        usleep(20000);
    assert_true(gone);
    free(text);

    stop(h);
    free(triggers);
    free_all(wf);
    tu_rmtree(dir);
    free(pidfile);
    free(dir);
    (void)state;
}

static void test_exec_never_uses_a_shell(void **state)
{
    char *dir = tu_tempdir("exec-shell");
    char *victim = tu_join(dir, "pwned");
    char *wf[] = {fmt("id: inject\n"
                      "steps:\n"
                      "  - id: run\n"
                      "    uses: exec\n"
                      "    with:\n"
                      "      command: [/bin/echo, \"{{ event.data.label }}; touch %s\", "
                      "\"$(touch %s)\", \"`touch %s`\"]\n",
                      victim, victim, victim),
                  fmt("id: inject-name\n"
                      "steps:\n"
                      "  - {id: run, uses: exec, with: {command: [\"echo; touch %s\"]}}\n",
                      victim),
                  NULL};
    static const char *const ids[] = {"inject", "inject-name", NULL};
    char *triggers = route_by_label(ids);
    harness *h = start((const char *const *)wf, triggers);

    cJSON *x = run_event(h, "{\"n\":1,\"label\":\"inject\"}");
    expect_status(x, "succeeded");
    char *want = fmt("inject; touch %s $(touch %s) `touch %s`\n", victim, victim, victim);
    assert_string_equal(sget(output_of(x), "stdout"), want);
    free(want);
    cJSON_Delete(x);
    /* the '/' in the "name": refused when the workflow loads */
    char *refused = fmt("wf1.yaml:3:44: steps[0].with.command[0]: 'echo; touch %s' must be an "
                        "absolute path or a program name looked up in PATH",
                        victim);
    expect_load_problems(h, (const char *const[]){refused, NULL});
    free(refused);
    struct stat st;
    assert_int_equal(stat(victim, &st), -1);
    assert_int_equal(errno, ENOENT);

    stop(h);
    free(triggers);
    free_all(wf);
    tu_rmtree(dir);
    free(victim);
    free(dir);
    (void)state;
}

static void test_exec_environment_and_signals(void **state)
{
    static const char *const wf[] = {
        "id: clean\n"
        "steps:\n"
        "  - {id: run, uses: exec, with: {command: [/usr/bin/env], env: {FOO: bar, N: 5}}}\n",
        "id: passed\n"
        "steps:\n"
        "  - {id: run, uses: exec,\n"
        "     with: {command: [/usr/bin/env], pass_env: [EVH_TEST_SECRET, EVH_TEST_UNSET]}}\n",
        "id: inherited\n"
        "steps:\n"
        "  - {id: run, uses: exec, with: {command: [/usr/bin/env], inherit_env: true}}\n",
        "id: status\n"
        "steps:\n"
        "  - {id: run, uses: exec, with: {command: [/bin/cat, /proc/self/status]}}\n",
        "id: pass-picked\n"
        "steps:\n"
        "  - {id: run, uses: exec,\n"
        "     with: {command: [/usr/bin/env], pass_env: [\"{{ event.data.var }}\"]}}\n",
        NULL};
    static const char *const ids[] = {"clean", "passed", "inherited", "status", "pass-picked",
                                      NULL};
    char *triggers = route_by_label(ids);
    setenv("EVH_TEST_SECRET", "hunter2", 1);
    unsetenv("EVH_TEST_UNSET");
    /* the daemon blocks SIGTERM/SIGINT/SIGHUP in every thread and ignores
     * SIGPIPE; the engine's workers, started now, inherit this mask */
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old_mask);
    void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN);
    harness *h = start(wf, triggers);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);

    cJSON *x = run_event(h, "{\"n\":1,\"label\":\"clean\"}");
    expect_status(x, "succeeded");
    assert_string_equal(sget(output_of(x), "stdout"),
                        "PATH=/usr/local/bin:/usr/bin:/bin\nFOO=bar\nN=5\n");
    cJSON_Delete(x);

    x = run_event(h, "{\"n\":2,\"label\":\"passed\"}");
    expect_status(x, "succeeded");
    assert_string_equal(sget(output_of(x), "stdout"),
                        "PATH=/usr/local/bin:/usr/bin:/bin\nEVH_TEST_SECRET=hunter2\n");
    cJSON_Delete(x);

    x = run_event(h, "{\"n\":3,\"label\":\"inherited\"}");
    expect_status(x, "succeeded");
    assert_non_null(strstr(sget(output_of(x), "stdout"), "EVH_TEST_SECRET=hunter2\n"));
    cJSON_Delete(x);

    /* the program starts with no blocked and no ignored signals */
    x = run_event(h, "{\"n\":4,\"label\":\"status\"}");
    expect_status(x, "succeeded");
    const char *st = sget(output_of(x), "stdout");
    assert_non_null(strstr(st, "SigBlk:\t0000000000000000\n"));
    /* Signals 1..31 are not ignored.  (glibc's posix_spawn leaves its two
     * internal signals, 32 and 33, ignored in the child on purpose: bits
     * 31 and 32 of the mask.) */
    const char *ign = strstr(st, "SigIgn:\t");
    assert_non_null(ign);
    unsigned long long ignored = strtoull(ign + 8, NULL, 16);
    if (ignored & 0x7fffffffULL)
        print_error("%s\n", st);
    assert_int_equal(ignored & 0x7fffffffULL, 0);
    cJSON_Delete(x);

    /* an event must not choose which of the daemon's variables to hand out:
     * refused when the workflow loads */
    static const char *const refused[] = {
        "wf4.yaml:4:48: steps[0].with.pass_env: must name environment variables literally, "
        "not through templates",
        NULL};
    expect_load_problems(h, refused);

    stop(h);
    signal(SIGPIPE, old_pipe);
    unsetenv("EVH_TEST_SECRET");
    free(triggers);
    (void)state;
}

/* ---- delay --------------------------------------------------------------------- */

static void test_delay_waits(void **state)
{
    static const char *const wf[] = {
        "id: pause\n"
        "steps:\n"
        "  - {id: wait, uses: delay, with: {ms: 300}}\n",
        "id: pause-templated\n"
        "steps:\n"
        "  - {id: wait, uses: delay, with: {ms: \"{{ event.data.n }}\"}}\n",
        NULL};
    static const char *const ids[] = {"pause", "pause-templated", NULL};
    char *triggers = route_by_label(ids);
    harness *h = start(wf, triggers);

    long long t0 = tu_now_ms();
    cJSON *x = run_event(h, "{\"n\":1,\"label\":\"pause\"}");
    long long took = tu_now_ms() - t0;
    expect_status(x, "succeeded");
    assert_int_equal((int)num(output_of(x), "waited_ms"), 300);
    double d = num(step_of(x), "duration_ms");
    assert_true(d >= 295 && d < 2000);
    assert_true(took >= 300);
    cJSON_Delete(x);

    x = run_event(h, "{\"n\":150,\"label\":\"pause-templated\"}");
    expect_status(x, "succeeded");
    assert_int_equal((int)num(output_of(x), "waited_ms"), 150);
    assert_true(num(step_of(x), "duration_ms") >= 145);
    cJSON_Delete(x);

    x = run_event(h, "{\"n\":-5,\"label\":\"pause-templated\"}");
    expect_error(x, "ms: must be an integer from 0 to 86400000");
    cJSON_Delete(x);

    stop(h);
    free(triggers);
    (void)state;
}

static void test_delay_ends_when_host_stops(void **state)
{
    static const char *const wf[] = {"id: long-pause\n"
                                     "steps:\n"
                                     "  - {id: wait, uses: delay, with: {ms: 60000}}\n",
                                     NULL};
    static const char *const ids[] = {"long-pause", NULL};
    char *triggers = route_by_label(ids);
    harness *h = start(wf, triggers);
    char id[37];
    emit(h, "{\"n\":1,\"label\":\"long-pause\"}", id);
    /* wait until the step is running, then stop the host */
    const char *step_status = NULL;
    cJSON *x = NULL;
    for (long long end = tu_now_ms() + 10000; tu_now_ms() < end; usleep(10000)) {
        store_filter f = {.limit = 10};
        cJSON *rows = store_executions_list(h->t->st, &f, NULL);
        const cJSON *row = cJSON_GetArrayItem(rows, 0);
        cJSON_Delete(x);
        x = row ? store_execution_get(h->t->st, sget(row, "id")) : NULL;
        cJSON_Delete(rows);
        const cJSON *steps = x ? oget(x, "steps") : NULL;
        step_status = cJSON_GetArraySize(steps) ? sget(cJSON_GetArrayItem(steps, 0), "status")
                                                : NULL;
        if (step_status && !strcmp(step_status, "running"))
            break;
    }
    assert_non_null(step_status);
    assert_string_equal(step_status, "running");
    long long t0 = tu_now_ms();
    runtime_stop(h->t->rt);
    const char *err = NULL;
    for (long long end = tu_now_ms() + 10000; tu_now_ms() < end; usleep(10000)) {
        store_filter f = {.limit = 10};
        cJSON *rows = store_executions_list(h->t->st, &f, NULL);
        const cJSON *row = cJSON_GetArrayItem(rows, 0);
        cJSON_Delete(x);
        x = row ? store_execution_get(h->t->st, sget(row, "id")) : NULL;
        cJSON_Delete(rows);
        const cJSON *steps = x ? oget(x, "steps") : NULL;
        err = cJSON_GetArraySize(steps) ? sget(cJSON_GetArrayItem(steps, 0), "error") : NULL;
        if (err)
            break;
    }
    long long took = tu_now_ms() - t0;
    assert_non_null(err);
    assert_non_null(strstr(err, "host stopping"));
    assert_true(took < 5000); /* not the 60 s of the delay */
    cJSON_Delete(x);
    stop(h);
    free(triggers);
    (void)state;
}

/* ---- bad config is refused when the workflow loads --------------------------------- */

static void test_bad_config_refused_at_load(void **state)
{
    static const char *const wf[] = {
        "id: no-url\n"
        "steps:\n"
        "  - {id: call, uses: http-request, with: {method: GET}}\n",
        "id: ftp-url\n"
        "steps:\n"
        "  - {id: call, uses: http-request, with: {url: \"ftp://example.com/x\"}}\n",
        "id: bad-method\n"
        "steps:\n"
        "  - {id: call, uses: http-request, with: {url: \"http://x/\", method: FETCH}}\n",
        "id: string-command\n"
        "steps:\n"
        "  - {id: run, uses: exec, with: {command: \"/bin/echo hi; rm -rf /\"}}\n",
        "id: empty-command\n"
        "steps:\n"
        "  - {id: run, uses: exec, with: {command: []}}\n",
        "id: too-long\n"
        "steps:\n"
        "  - {id: wait, uses: delay, with: {ms: 86400001}}\n",
        "id: good\n"
        "steps:\n"
        "  - {id: wait, uses: delay, with: {ms: 0}}\n",
        NULL};
    harness *h = start(wf, NULL);
    diag d;
    diag_init(&d, NULL);
    assert_int_equal(pipeline_reload(&h->t->rl, &d), EVH_OK);
    char *all = diag_join(&d);
    assert_non_null(all);
    static const char *const expected[] = {
        "wf0.yaml:3:",
        "steps[0].with.url: required property is missing (configSchema of 'http-request')",
        "wf1.yaml:",
        "steps[0].with.url: does not match pattern",
        "wf2.yaml:",
        "steps[0].with.method:",
        "wf3.yaml:",
        "steps[0].with.command: expected array, got string (configSchema of 'exec')",
        "wf4.yaml:",
        "steps[0].with.command:",
        "wf5.yaml:",
        "steps[0].with.ms:",
        NULL};
    for (size_t i = 0; expected[i]; i++) {
        if (!strstr(all, expected[i]))
            print_error("missing '%s' in:\n%s\n", expected[i], all);
        assert_non_null(strstr(all, expected[i]));
    }
    assert_null(strstr(all, "wf6.yaml")); /* the good one loads */
    free(all);
    diag_free(&d);
    stop(h);
    (void)state;
}

int main(void)
{
    log_set_level(EVH_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_request_sends_templated_request),
        cmocka_unit_test(test_http_request_status_checks),
        cmocka_unit_test(test_http_request_secrets_from_environment),
        cmocka_unit_test(test_http_request_timeout_and_transport_errors),
        cmocka_unit_test(test_exec_echo_and_stdin),
        cmocka_unit_test(test_exec_nonzero_exit_and_bad_programs),
        cmocka_unit_test(test_exec_timeout_kills_process_group),
        cmocka_unit_test(test_exec_never_uses_a_shell),
        cmocka_unit_test(test_exec_environment_and_signals),
        cmocka_unit_test(test_delay_waits),
        cmocka_unit_test(test_delay_ends_when_host_stops),
        cmocka_unit_test(test_bad_config_refused_at_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
