/*
 * test_security.c - the security promises of docs/operators.md, each by
 * behaviour over the real interfaces:
 *
 *   - slow loris: clients trickling their headers one byte per second hold
 *     a connection only until server.connection_timeout_s, so they cannot
 *     lock a normal GET /api/health out, even with every connection taken;
 *   - limits: 413 for a large body, 431 for large headers, 400 for JSON
 *     nested too deep, server.max_connections;
 *   - SQL: text made to break out of SQL quoting is stored and read back
 *     verbatim, through the API's writes, reads and list filters, and every
 *     table is still there;
 *   - secrets: API keys and subscription tokens, secrets and header values
 *     never appear in a daemon's log (at debug level) nor in any API answer;
 *   - plugin files: a plugin folder, plugin.json or library owned by another
 *     user, or writable by group or others, is refused before any code of it
 *     is loaded.
 *
 * Covered elsewhere, by behaviour: exec never uses a shell
 * (test_builtin_steps_a: test_exec_never_uses_a_shell); the file step
 * cannot leave its roots (test_builtin_steps_b: test_file_refuses_escapes);
 * upload names cannot leave the upload folder (test_builtin_webhooks:
 * test_upload_hostile_names, test_upload_subdir_symlink_refused).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "apitest.h"
#include "loader.h"
#include "log.h"
#include "registry.h"
#include "runtime.h"
#include "testutil.h"

/* ---- raw connections ----------------------------------------------------------- */

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Send req on a new connection and read the answer for up to wait_ms; the
 * answer (malloc'd, "" when the server closed without one). */
static char *exchange(int port, const char *req, size_t len, int wait_ms)
{
    int fd = connect_to(port);
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* refused mid-way: read what the server said */
        off += (size_t)n;
    }
    size_t cap = 65536, got = 0;
    char *out = calloc(1, cap + 1);
    long long end = tu_now_ms() + wait_ms;
    while (got < cap) {
        long long left = end - tu_now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t n = recv(fd, out + got, cap - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    return out;
}

/* A plain GET /api/health on a new connection answered 200 within wait_ms. */
static int health_answers(int port, int wait_ms)
{
    static const char req[] = "GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char *a = exchange(port, req, sizeof req - 1, wait_ms);
    int ok = strncmp(a, "HTTP/1.1 200 ", 13) == 0;
    free(a);
    return ok;
}

/* ---- slow loris ------------------------------------------------------------------ */

typedef struct slow_client {
    int fd;
    long long started, closed; /* tu_now_ms(); closed 0: still open */
} slow_client;

static void slow_open(slow_client *c, int port)
{
    static const char start[] = "GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    c->fd = connect_to(port);
    c->started = tu_now_ms();
    c->closed = 0;
    assert_int_equal(send(c->fd, start, sizeof start - 1, MSG_NOSIGNAL), sizeof start - 1);
}

/* Whether the server closed c (without answering it); records when. */
static int slow_check(slow_client *c)
{
    if (c->closed)
        return 1;
    char buf[256];
    ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
        buf[n < (ssize_t)sizeof buf ? n : (ssize_t)sizeof buf - 1] = '\0';
        fail_msg("a slow client got an answer: %s", buf);
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        c->closed = tu_now_ms();
        return 1;
    }
    return 0;
}

/* One more byte of the endless header (while the server lets it). */
static void slow_trickle(slow_client *c)
{
    if (!slow_check(c) && send(c->fd, "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1)
        slow_check(c);
}

static void test_slow_loris(void **state)
{
    (void)state;
    enum { LIMIT = 8, TIMEOUT_S = 2 };
    at_options o = {.host_yaml = "server: {max_connections: 8, connection_timeout_s: 2}\n"};
    apitest *t = at_start(&o);
    slow_client slow[LIMIT];

    /* half the connections trickle: a normal request is answered at once */
    for (int i = 0; i < LIMIT / 2; i++)
        slow_open(&slow[i], t->port);
    assert_true(health_answers(t->port, 1000));
    for (int i = 0; i < LIMIT / 2; i++)
        assert_false(slow_check(&slow[i]));

    /* all of them: each new connection is refused until the slow ones are
     * cut; they send a byte a second, well within the idle timeout, so only
     * the deadline for complete headers cuts them */
    for (int i = LIMIT / 2; i < LIMIT; i++)
        slow_open(&slow[i], t->port);
    long long full = tu_now_ms(), answered = 0, next_byte = full + 1000;
    int open = LIMIT;
    while (tu_now_ms() < full + 4 * TIMEOUT_S * 1000 && (open > 0 || !answered)) {
        if (tu_now_ms() >= next_byte) {
            for (int i = 0; i < LIMIT; i++)
                slow_trickle(&slow[i]);
            next_byte += 1000;
        }
        open = 0;
        for (int i = 0; i < LIMIT; i++)
            open += !slow_check(&slow[i]);
        if (!answered && health_answers(t->port, 200))
            answered = tu_now_ms();
        usleep(50000);
    }
    print_message("health answered %lld ms after the last slow client connected\n",
                  answered ? answered - full : -1);
    assert_true(answered);
    assert_true(answered - full <= (TIMEOUT_S + 2) * 1000);
    for (int i = 0; i < LIMIT; i++) {
        long long held = slow[i].closed - slow[i].started;
        if (!slow[i].closed || held < TIMEOUT_S * 1000 - 500 || held > (TIMEOUT_S + 2) * 1000)
            print_error("slow client %d: closed %d after %lld ms\n", i, slow[i].closed != 0, held);
        assert_true(slow[i].closed);
        assert_in_range(held, TIMEOUT_S * 1000 - 500, (TIMEOUT_S + 2) * 1000);
        close(slow[i].fd);
    }
    /* a keep-alive connection gets the full time again for its next request */
    int fd = connect_to(t->port);
    static const char one[] = "GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int round = 0; round < 2; round++) {
        usleep(1500 * 1000); /* each request starts late, within the timeout */
        assert_int_equal(send(fd, one, sizeof one - 1, MSG_NOSIGNAL), sizeof one - 1);
        char buf[2048] = "";
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&p, 1, 3000), 1);
        assert_true(recv(fd, buf, sizeof buf - 1, 0) > 0);
        assert_int_equal(strncmp(buf, "HTTP/1.1 200 ", 13), 0);
    }
    close(fd);
    at_stop(t);
}

/* ---- limits ---------------------------------------------------------------------- */

static void test_limits(void **state)
{
    (void)state;
    at_options o = {.host_yaml = "server: {max_body_bytes: 4096, max_connections: 4}\n"};
    apitest *t = at_start(&o);
    at_response r;
    static const char *const json[] = {"Content-Type: application/json", NULL};

    /* a body over max_body_bytes: 413, before any handler */
    char *big = malloc(8192);
    memset(big, ' ', 8191);
    big[0] = '{';
    big[8190] = '}';
    big[8191] = '\0';
    assert_int_equal(at_request(t, "POST", "/api/events/process", json, big, (size_t)-1, &r), 0);
    assert_int_equal(r.status, 413);
    at_response_free(&r);
    free(big);

    /* JSON nested deeper than EVH_JSON_MAX_DEPTH (64): 400, saying so; at
     * the limit it is parsed (and refused for what it is, not its depth) */
    for (int depth = 64; depth <= 65; depth++) {
        char body[512];
        int n = snprintf(body, sizeof body,
                         "{\"event_type\": \"thing_happened\", \"source\": "
                         "\"ok-minimal\", \"data\": {\"n\": 1, \"deep\": ");
        for (int i = 0; i < depth - 2; i++)
            body[n++] = '[';
        for (int i = 0; i < depth - 2; i++)
            body[n++] = ']';
        snprintf(body + n, sizeof body - (size_t)n, "}}");
        assert_int_equal(at_json(t, "POST", "/api/events/process", body, &r), 0);
        if (depth == 65) {
            assert_int_equal(r.status, 400);
            if (!strstr(r.body, "nesting deeper than 64 levels"))
                print_error("%s\n", r.body);
            assert_non_null(strstr(r.body, "nesting deeper than 64 levels"));
        } else {
            assert_true(r.status == 202 || (r.status == 400 && !strstr(r.body, "deeper")));
        }
        at_response_free(&r);
    }

    /* 100 KiB of request headers: 431 */
    size_t hl = 100 * 1024;
    char *req = malloc(hl + 256);
    int n = snprintf(req, 256, "GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + n, 'a', hl);
    memcpy(req + n + hl, "\r\n\r\n", 5);
    char *answer = exchange(t->port, req, (size_t)n + hl + 4, 3000);
    assert_int_equal(strncmp(answer, "HTTP/1.1 431 ", 13), 0);
    free(answer);
    free(req);

    /* max_connections: with 4 held open, a fifth is closed unanswered;
     * once one goes, requests are served again */
    int held[4];
    for (int i = 0; i < 4; i++)
        held[i] = connect_to(t->port);
    usleep(200000);
    assert_false(health_answers(t->port, 1000));
    close(held[0]);
    long long end = tu_now_ms() + 3000;
    int ok = 0;
    while (!ok && tu_now_ms() < end)
        ok = health_answers(t->port, 500);
    assert_true(ok);
    for (int i = 1; i < 4; i++)
        close(held[i]);
    at_stop(t);
}

/* ---- SQL -------------------------------------------------------------------------- */

#define ATTACK "'; DROP TABLE events; --"
#define ATTACK_JSON "'; DROP TABLE events; --"

static long long table_count(const char *db_path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                                        " AND name IN ('events', 'workflow_triggers',"
                                        " 'workflow_executions', 'step_runs', 'subscriptions',"
                                        " 'outbox_messages', 'deliveries')",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static const char *jstr(const cJSON *o, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, a);
    return cJSON_GetStringValue(b ? cJSON_GetObjectItemCaseSensitive(v, b) : v);
}

static void test_sql_text_stays_text(void **state)
{
    (void)state;
    static const char *const wfs[] = {"id: echo\nsteps:\n  - {id: s1, uses: test-step, with: "
                                      "{value: \"{{ event.data.label }}\"}}\n",
                                      NULL};
    at_options o = {.workflows = wfs};
    apitest *t = at_start(&o);
    at_response r;

    /* a trigger whose name and condition carry the text */
    assert_int_equal(at_json(t, "POST", "/api/triggers",
                             "{\"id\": \"t-sql\", \"name\": \"" ATTACK_JSON "\","
                             " \"source\": \"ok-minimal\", \"event_type\": \"thing_happened\","
                             " \"workflow\": \"echo\", \"conditions\": {\"field\": \"data.label\","
                             " \"op\": \"eq\", \"value\": \"" ATTACK_JSON "\"}}",
                             &r),
                     0);
    if (r.status != 201)
        print_error("%ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 201);
    at_response_free(&r);

    /* an event whose data, user and idempotency key carry it */
    static const char *const hdr[] = {"Content-Type: application/json", "Idempotency-Key: " ATTACK,
                                      NULL};
    const char *ev =
        "{\"event_type\": \"thing_happened\", \"source\": \"ok-minimal\","
        " \"user_id\": \"" ATTACK_JSON "\", \"data\": {\"n\": 1, \"label\": \"" ATTACK_JSON "\"}}";
    assert_int_equal(at_request(t, "POST", "/api/events/process", hdr, ev, (size_t)-1, &r), 0);
    if (r.status != 202)
        print_error("%ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 202);
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(r.json, "id", NULL));
    at_response_free(&r);
    /* the same key again is the same event, not a second one */
    assert_int_equal(at_request(t, "POST", "/api/events/process", hdr, ev, (size_t)-1, &r), 0);
    assert_string_equal(jstr(r.json, "id", NULL), id);
    at_response_free(&r);
    at_wait_settled(t, 1);

    /* read back verbatim */
    char path[128];
    snprintf(path, sizeof path, "/api/events/%s", id);
    assert_int_equal(at_request(t, "GET", path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "data", "label"), ATTACK);
    assert_string_equal(jstr(r.json, "metadata", "user_id"), ATTACK);
    at_response_free(&r);
    assert_int_equal(at_request(t, "GET", "/api/triggers/t-sql", NULL, NULL, 0, &r), 0);
    assert_string_equal(jstr(r.json, "name", NULL), ATTACK);
    at_response_free(&r);
    /* the condition matched: the workflow ran with the text as its value */
    assert_int_equal(at_request(t, "GET", "/api/executions?workflow=echo", NULL, NULL, 0, &r), 0);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(r.json, "items");
    assert_int_equal(cJSON_GetArraySize(items), 1);
    at_response_free(&r);

    /* list filters with the text (percent-encoded in the query): nothing
     * matches, nothing breaks */
    static const char *const lists[] = {
        "/api/events?source=%27%3B%20DROP%20TABLE%20events%3B%20--",
        "/api/events?type=%27%3B%20DROP%20TABLE%20events%3B%20--",
        "/api/executions?workflow=%27%3B%20DROP%20TABLE%20events%3B%20--",
        "/api/executions?trigger=%27%20OR%20%271%27%3D%271",
        "/api/events?source=ok-minimal%27%20OR%20%271%27%3D%271",
        NULL};
    for (const char *const *l = lists; *l; l++) {
        assert_int_equal(at_request(t, "GET", *l, NULL, NULL, 0, &r), 0);
        if (r.status != 200)
            print_error("%s: %ld %s\n", *l, r.status, r.body);
        assert_int_equal(r.status, 200);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "items")), 0);
        at_response_free(&r);
    }
    /* the text as a path segment */
    assert_int_equal(at_request(t, "GET", "/api/events/%27%3B%20DROP%20TABLE%20events%3B%20--",
                                NULL, NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 404);
    at_response_free(&r);

    assert_int_equal(table_count(t->db), 4);
    assert_int_equal(table_count(t->outbox), 3);
    assert_int_equal(at_request(t, "GET", "/api/events", NULL, NULL, 0, &r), 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "items")), 1);
    at_response_free(&r);
    at_stop(t);
}

/* ---- secrets ---------------------------------------------------------------------- */

/* Every secret below contains this; nothing else does. */
#define MARK "Zq7SECRET"

static char *write_secret_config(const char *root)
{
    char *text = NULL;
    assert_true(asprintf(&text,
                         "server:\n"
                         "  listen: \"127.0.0.1:0\"\n"
                         "  api_keys: [{name: ops, key: \"key-" MARK "-1\"}]\n"
                         "log: {level: debug}\n"
                         "plugins:\n"
                         "  builtin: false\n"
                         "  watch: false\n"
                         "  dirs: [\"%s/plugins\"]\n"
                         "  config:\n"
                         "    ok-minimal: {emit: [{type: thing_happened, data: '{\"n\":1}'}]}\n"
                         "storage: {path: \"%s/evhost.db\"}\n"
                         "workflows: {dirs: [\"%s/workflows\"]}\n"
                         "triggers: {files: [\"%s/triggers.yaml\"]}\n"
                         "data_dir: \"%s/data\"\n"
                         "notifications:\n"
                         "  max_attempts: 2\n"
                         "  backoff_base_ms: 50\n"
                         "  subscriptions:\n"
                         "    - id: from-file\n"
                         "      url: \"http://127.0.0.1:9/hook\"\n"
                         "      token: \"tok-" MARK "-2\"\n"
                         "      secret: \"sec-" MARK "-3\"\n"
                         "      headers: {X-Extra: \"hdr-" MARK "-4\"}\n",
                         root, root, root, root, root) > 0);
    char *path = tu_join(root, "host.yaml");
    assert_int_equal(tu_write_file(path, text), 0);
    free(text);
    return path;
}

/* GET/POST with the key; the whole answer (headers and body) is checked for
 * the mark, and returned. */
static cJSON *keyed(apitest *t, const char *method, const char *path, const char *body, long want)
{
    static const char *const h[] = {"Authorization: Bearer key-" MARK "-1",
                                    "Content-Type: application/json", NULL};
    at_response r;
    assert_int_equal(at_request(t, method, path, h, body, body ? (size_t)-1 : 0, &r), 0);
    if (r.status != want)
        print_error("%s %s: %ld %s\n", method, path, r.status, r.body);
    assert_int_equal(r.status, want);
    if (strstr(r.body, MARK) || strstr(r.headers, MARK))
        fail_msg("%s %s shows a secret: %s", method, path, r.body);
    cJSON *j = r.json;
    r.json = NULL;
    at_response_free(&r);
    return j;
}

static void test_secrets_never_shown(void **state)
{
    (void)state;
    char *root = tu_tempdir("sec-secrets");
    char *plugins = tu_join(root, "plugins"), *wfdir = tu_join(root, "workflows");
    assert_int_equal(mkdir(plugins, 0755), 0);
    assert_int_equal(mkdir(wfdir, 0755), 0);
    assert_int_equal(tu_copy_fixture("ok-minimal", plugins, NULL), 0);
    assert_int_equal(tu_copy_fixture("test-step", plugins, NULL), 0);
    char *wf = tu_join(wfdir, "echo.yaml"), *trig = tu_join(root, "triggers.yaml");
    assert_int_equal(tu_write_file(wf, "id: echo\nsteps:\n  - {id: s1, uses: test-step}\n"), 0);
    assert_int_equal(tu_write_file(trig, "triggers:\n  - {id: t1, source: ok-minimal,"
                                         " event_type: thing_happened, workflow: echo}\n"),
                     0);
    char *cfg = write_secret_config(root);
    char *log = tu_join(root, "daemon.log");

    /* the settings as printed */
    char *out = NULL, *err = NULL;
    char *pargv[] = {EVH_BINARY, "run", "--config", cfg, "--print-config", NULL};
    assert_int_equal(tu_run(pargv, &out, &err, 20000), 0);
    assert_non_null(strstr(out, "key: \"***\""));
    if (strstr(out, MARK) || (err && strstr(err, MARK)))
        fail_msg("--print-config shows a secret:\n%s%s", out, err ? err : "");
    free(out);
    free(err);

    char *argv[] = {EVH_BINARY, "run", "--config", cfg, NULL};
    pid_t pid = tu_spawn(argv, log);
    assert_true(pid > 0);
    assert_true(tu_wait_for_text(log, "running;", 20000));
    char *text = tu_read_file(log);
    const char *at = strstr(text, "API on http://127.0.0.1:");
    assert_non_null(at);
    apitest fake;
    memset(&fake, 0, sizeof fake);
    fake.port = atoi(at + strlen("API on http://127.0.0.1:"));
    free(text);

    /* a subscription made through the API, with every secret field */
    cJSON_Delete(keyed(&fake, "POST", "/api/subscriptions",
                       "{\"id\": \"from-api\", \"url\": \"http://127.0.0.1:9/other\","
                       " \"token\": \"tok-" MARK "-5\", \"secret\": \"sec-" MARK "-6\","
                       " \"headers\": {\"X-Api\": \"hdr-" MARK "-7\"}}",
                       201));
    cJSON_Delete(keyed(&fake, "PATCH", "/api/subscriptions/from-api",
                       "{\"secret\": \"sec-" MARK "-8\"}", 200));
    /* a wrong key is refused without being echoed */
    static const char *const wrong[] = {"Authorization: Bearer bad-" MARK "-9", NULL};
    at_response r;
    assert_int_equal(at_request(&fake, "GET", "/api/subscriptions", wrong, NULL, 0, &r), 0);
    assert_int_equal(r.status, 401);
    assert_null(strstr(r.body, MARK));
    at_response_free(&r);

    /* an event runs the workflow: lifecycle deliveries to both subscriptions
     * fail (nothing listens on port 9) and are retried, then dead */
    cJSON_Delete(keyed(&fake, "POST", "/api/events/process",
                       "{\"event_type\": \"thing_happened\", \"source\": \"ok-minimal\","
                       " \"data\": {\"n\": 2}}",
                       202));
    long long end = tu_now_ms() + 20000;
    int dead = 0;
    while (tu_now_ms() < end && !dead) {
        cJSON *d = keyed(&fake, "GET", "/api/deliveries?status=dead", NULL, 200);
        dead = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(d, "items")) > 0;
        cJSON_Delete(d);
        usleep(100000);
    }
    assert_true(dead);

    static const char *const reads[] = {"/api/subscriptions",
                                        "/api/subscriptions/from-file",
                                        "/api/subscriptions/from-api",
                                        "/api/deliveries",
                                        "/api/event-sources",
                                        "/api/event-sources/ok-minimal",
                                        "/api/steps",
                                        "/api/steps/test-step",
                                        "/api/workflows",
                                        "/api/triggers",
                                        "/api/executions",
                                        "/api/events",
                                        "/api/ready",
                                        "/api/health",
                                        NULL};
    for (const char *const *p = reads; *p; p++)
        cJSON_Delete(keyed(&fake, "GET", *p, NULL, 200));
    /* /metrics is text */
    static const char *const h[] = {"Authorization: Bearer key-" MARK "-1", NULL};
    assert_int_equal(at_request(&fake, "GET", "/metrics", h, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, MARK));
    at_response_free(&r);

    kill(pid, SIGTERM);
    assert_int_equal(tu_wait(pid, 20000), 0);
    /* the whole log, at debug level, from start to stop */
    text = tu_read_file(log);
    /* the deliveries to both subscriptions were logged, at debug level */
    assert_non_null(strstr(text, "DEBUG [notify] delivery"));
    assert_non_null(strstr(text, "to 'from-file'"));
    assert_non_null(strstr(text, "to 'from-api'"));
    const char *leak = strstr(text, MARK);
    if (leak)
        fail_msg("the log shows a secret: ...%.300s", leak - (leak - text > 200 ? 200 : 0));
    free(text);

    tu_rmtree(root);
    free(root);
    free(plugins);
    free(wfdir);
    free(wf);
    free(trig);
    free(cfg);
    free(log);
}

/* ---- plugin files ----------------------------------------------------------------- */

/* Load one plugin folder; its state and error (malloc'd) into *error. */
static int load_state(runtime *rt, const char *dir, char **error)
{
    registry *r = registry_new();
    plugin *p = loader_load_one(rt, dir, NULL);
    assert_non_null(p);
    int state = p->state;
    int loaded = p->dl != NULL;
    *error = p->error ? strdup(p->error) : NULL;
    assert_int_equal(registry_add(r, p), EVH_OK);
    loader_unload_all(r);
    registry_free(r);
    return state == PLUGIN_READY ? 1 : loaded ? -1 : 0;
}

static void expect_refused(runtime *rt, const char *dir, const char *path_part, const char *why)
{
    char *error = NULL;
    int rc = load_state(rt, dir, &error);
    if (rc != 0 || !error || !strstr(error, path_part) || !strstr(error, why))
        print_error("%s: %s\n", dir, error ? error : "(loaded)");
    assert_int_equal(rc, 0); /* refused, and no code of it was loaded */
    assert_non_null(strstr(error, path_part));
    assert_non_null(strstr(error, why));
    free(error);
}

static void test_plugin_files_owner_and_mode(void **state)
{
    (void)state;
    char *root = tu_tempdir("sec-plugins");
    char *data = tu_join(root, "data");
    runtime *rt = runtime_new(64, data, 10);
    free(data);
    assert_non_null(rt);
    /* as copied: loads (the control) */
    char *dir = tu_join(root, "ok-minimal");
    assert_int_equal(tu_copy_fixture("ok-minimal", root, NULL), 0);
    char *error = NULL;
    assert_int_equal(load_state(rt, dir, &error), 1);
    free(error);
    tu_rmtree(dir);
    free(dir);

    static const struct {
        const char *name, *file; /* file NULL: the folder itself */
        mode_t mode;
        const char *why;
    } modes[] = {
        {"g-json", "plugin.json", 0664, "writable by group or others (mode 0664)"},
        {"o-json", "plugin.json", 0646, "writable by group or others (mode 0646)"},
        {"g-lib", "ok-minimal.so", 0775, "writable by group or others (mode 0775)"},
        {"o-lib", "ok-minimal.so", 0757, "writable by group or others (mode 0757)"},
        {"g-dir", NULL, 0775, "writable by group or others (mode 0775)"},
        {"o-dir", NULL, 0757, "writable by group or others (mode 0757)"},
    };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        assert_int_equal(tu_copy_fixture("ok-minimal", root, modes[i].name), 0);
        dir = tu_join(root, modes[i].name);
        char *target = modes[i].file ? tu_join(dir, modes[i].file) : strdup(dir);
        assert_int_equal(chmod(target, modes[i].mode), 0);
        expect_refused(rt, dir, modes[i].file ? modes[i].file : modes[i].name, modes[i].why);
        free(target);
        free(dir);
    }

    /* owned by someone else (neither root nor us): only root can give a
     * file away, so this part needs root */
    if (geteuid() == 0) {
        static const char *const files[] = {"plugin.json", "ok-minimal.so", NULL};
        for (int i = 0; i <= 2; i++) {
            char name[32];
            snprintf(name, sizeof name, "foreign-%d", i);
            assert_int_equal(tu_copy_fixture("ok-minimal", root, name), 0);
            dir = tu_join(root, name);
            char *target = files[i] ? tu_join(dir, files[i]) : strdup(dir);
            assert_int_equal(chown(target, 12345, 12345), 0);
            expect_refused(rt, dir, files[i] ? files[i] : name, "owned by uid 12345");
            free(target);
            free(dir);
        }
    } else {
        print_message("not root: the foreign-owner cases are skipped\n");
    }
    runtime_free(rt);
    tu_rmtree(root);
    free(root);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    log_set_level(EVH_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_loris),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_sql_text_stays_text),
        cmocka_unit_test(test_secrets_never_shown),
        cmocka_unit_test(test_plugin_files_owner_and_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
