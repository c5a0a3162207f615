/*
 * test_example_pipeline.c - the seed's data pipeline, as shipped in
 * workflows/examples/data-pipeline, run end to end by the real daemon:
 *
 *   a CSV upload (libcurl mime, POST /api/uploads)  |  a PDF written into
 *   the watched ./inbox                              |
 *     -> trigger (size and name) -> transform -> sqlite insert ->
 *        http-request to a receiver -> log
 *
 * The example is copied to a temporary folder and run from there, as its
 * host.yaml says.  Its notify steps post to 127.0.0.1:8000 (the daemon's own
 * api-webhook hook); in the copy that address is replaced by a receiver
 * thread of this test, the only change made to the example, so that the
 * test sees exactly what the receiver got.  Then: the row is in the SQLite
 * file, the executions succeeded, files and events that do not match the
 * triggers ran nothing.  A last run keeps the example's own receiver (only
 * the port changes) and checks its receipt workflow ran.
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
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "testutil.h"

extern char **environ;

#define UPLOAD_TOKEN "upload-t0ken-for-tests"
#define PIPELINE_TOKEN "pipeline-t0ken-for-tests"

/* ---- the receiver: a tiny HTTP/1.1 server on a thread ------------------------ */

typedef struct request {
    char *method, *target, *headers, *body;
} request;

typedef struct receiver {
    int fd, port;
    pthread_t thread;
    atomic_int stop;
    pthread_mutex_t lock;
    request reqs[32];
    int n;
} receiver;

/* One exchange: read the head and Content-Length bytes of body, answer 202. */
static void serve(receiver *s, int c)
{
    char *buf = malloc(1 << 16);
    size_t len = 0;
    char *end = NULL;
    long long deadline = tu_now_ms() + 5000;
    while (!end && len < (1 << 16) - 1 && tu_now_ms() < deadline) {
        struct pollfd p = {.fd = c, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = recv(c, buf + len, (1 << 16) - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (!end) {
        free(buf);
        return;
    }
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    size_t want = cl && cl < end ? (size_t)strtoul(cl + 17, NULL, 10) : 0;
    size_t head = (size_t)(end + 4 - buf);
    while (len - head < want && len < (1 << 16) - 1 && tu_now_ms() < deadline) {
        ssize_t n = recv(c, buf + len, (1 << 16) - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    static const char answer[] = "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                                 "Content-Length: 11\r\nConnection: close\r\n\r\n{\"ok\":true}";
    ssize_t w = send(c, answer, sizeof answer - 1, MSG_NOSIGNAL);
    (void)w;
    pthread_mutex_lock(&s->lock);
    if (s->n < 32) {
        request *r = &s->reqs[s->n++];
        char *sp1 = strchr(buf, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
        r->method = strndup(buf, sp1 ? (size_t)(sp1 - buf) : 0);
        r->target = sp2 ? strndup(sp1 + 1, (size_t)(sp2 - sp1 - 1)) : strdup("");
        r->headers = strndup(buf, head);
        r->body = strdup(buf + head);
    }
    pthread_mutex_unlock(&s->lock);
    free(buf);
}

static void *receiver_main(void *arg)
{
    receiver *s = arg;
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

static receiver *receiver_start(void)
{
    receiver *s = calloc(1, sizeof *s);
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
    assert_int_equal(pthread_create(&s->thread, NULL, receiver_main, s), 0);
    return s;
}

static void receiver_stop(receiver *s)
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

/* The body (parsed) of the first request whose body has "file": name;
 * waits up to 30 s.  NULL when none came. */
static cJSON *received(receiver *s, const char *file, char **headers)
{
    for (long long end = tu_now_ms() + 30000; tu_now_ms() < end; usleep(50000)) {
        pthread_mutex_lock(&s->lock);
        for (int i = 0; i < s->n; i++) {
            cJSON *body = cJSON_Parse(s->reqs[i].body);
            const char *f = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "file"));
            if (f && !strcmp(f, file)) {
                assert_string_equal(s->reqs[i].method, "POST");
                assert_string_equal(s->reqs[i].target, "/api/webhooks/pipeline-done");
                *headers = strdup(s->reqs[i].headers);
                pthread_mutex_unlock(&s->lock);
                return body;
            }
            cJSON_Delete(body);
        }
        pthread_mutex_unlock(&s->lock);
    }
    return NULL;
}

static int received_count(receiver *s)
{
    pthread_mutex_lock(&s->lock);
    int n = s->n;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* ---- the example, copied and started ------------------------------------------ */

/* path's text with every `from` replaced by `to`, written back. */
static void replace_in_file(const char *path, const char *from, const char *to)
{
    char *text = tu_read_file(path);
    assert_non_null(text);
    size_t fl = strlen(from), tl = strlen(to), n = 0;
    for (const char *p = text; (p = strstr(p, from)); p += fl)
        n++;
    char *out = malloc(strlen(text) + n * tl + 1), *o = out;
    const char *p = text;
    for (const char *q; (q = strstr(p, from)); p = q + fl) {
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, to, tl);
        o += tl;
    }
    strcpy(o, p);
    assert_int_equal(tu_write_file(path, out), 0);
    free(out);
    free(text);
}

typedef struct example {
    char *root, *dir, *log, *db, *pipeline_db;
    pid_t pid;
    int port;
    receiver *rx;
} example;

/* Start `evhost run --config host.yaml` in dir, with the two tokens in its
 * environment (fork and exec: chdir, open and dup2 are safe after fork). */
static pid_t spawn_in(const char *dir, const char *log, const char *listen)
{
    char **env = NULL;
    size_t n = 0;
    while (environ[n])
        n++;
    env = calloc(n + 3, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "UPLOAD_TOKEN=", 13) && strncmp(environ[i], "PIPELINE_TOKEN=", 15))
            env[k++] = environ[i];
    }
    env[k++] = "UPLOAD_TOKEN=" UPLOAD_TOKEN;
    env[k++] = "PIPELINE_TOKEN=" PIPELINE_TOKEN;
    env[k] = NULL;
    char *const argv[] = {EVH_BINARY, "run", "--config", "host.yaml", "--listen", (char *)listen,
                          NULL};
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0 || chdir(dir) != 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execve(EVH_BINARY, argv, env);
        _exit(127);
    }
    free(env);
    return pid;
}

static void dump_log(const example *x)
{
    char *text = tu_read_file(x->log);
    fprintf(stderr, "daemon log:\n%s\n", text ? text : "(none)");
    free(text);
}

/* A loopback port that was free a moment ago (bound, then closed). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* The running example, for the teardown when a test fails midway: the
 * daemon must not outlive the test. */
static example *current;

/* The example's copy removed and its paths freed (and cleared). */
static void example_remove_files(example *x)
{
    tu_rmtree(x->root);
    free(x->root);
    free(x->dir);
    free(x->log);
    free(x->db);
    free(x->pipeline_db);
    x->root = x->dir = x->log = x->db = x->pipeline_db = NULL;
}

/* One try at starting it; 0 when it serves, -1 when self's port was taken
 * by another process before the daemon bound it (everything undone, to try
 * again on another port). */
static int example_try(example *x, int self)
{
    int self_port = self ? free_port() : 0;
    x->root = tu_tempdir("example-pipeline");
    x->dir = tu_join(x->root, "data-pipeline");
    x->log = tu_join(x->root, "daemon.log");
    assert_int_equal(tu_copytree(EVH_SOURCE_DIR "/workflows/examples/data-pipeline", x->dir), 0);
    char to[64];
    snprintf(to, sizeof to, "127.0.0.1:%d", self ? self_port : x->rx->port);
    static const char *const wfs[] = {"upload-pipeline.yaml", "pdf-pipeline.yaml"};
    for (size_t i = 0; i < 2; i++) {
        char *wf = NULL;
        assert_true(asprintf(&wf, "%s/workflows/%s", x->dir, wfs[i]) > 0);
        replace_in_file(wf, "127.0.0.1:8000", to);
        free(wf);
    }
    char *inbox = tu_join(x->dir, "inbox");
    assert_int_equal(mkdir(inbox, 0755), 0);
    free(inbox);
    x->db = tu_join(x->dir, "pipeline-data/evhost.db");
    x->pipeline_db = tu_join(x->dir, "pipeline-data/plugins/sqlite/pipeline.db");

    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", self_port);
    x->pid = spawn_in(x->dir, x->log, listen);
    assert_true(x->pid > 0);
    x->port = tu_wait_api_port(x->log, "127.0.0.1", 30000);
    if (x->port)
        return 0;
    char *text = tu_read_file(x->log);
    int taken = self && text && strstr(text, "Address already in use");
    free(text);
    if (!taken) {
        dump_log(x);
        fail_msg("the daemon did not start");
    }
    kill(x->pid, SIGKILL);
    tu_wait(x->pid, 10000);
    x->pid = 0;
    example_remove_files(x);
    return -1;
}

/* The example, copied and started.  self == 0: the notify URLs point at
 * this test's receiver thread and the daemon listens on any free port;
 * self == 1: the example's own receiver, the daemon's api-webhook hook, on
 * a port chosen here (the URLs name it). */
static example *example_start(int self)
{
    example *x = calloc(1, sizeof *x);
    current = x;
    x->rx = receiver_start();
    /* free_port's port is free only until someone else binds it */
    for (int tries = 0; example_try(x, self) != 0; tries++)
        assert_true(tries < 3);
    return x;
}

static void example_stop(example *x)
{
    current = NULL;
    kill(x->pid, SIGTERM);
    int status = tu_wait(x->pid, 30000);
    if (status != 0)
        dump_log(x);
    assert_int_equal(status, 0);
    receiver_stop(x->rx);
    example_remove_files(x);
    free(x);
}

static int teardown(void **state)
{
    (void)state;
    if (current) {
        if (current->pid > 0) {
            kill(current->pid, SIGKILL);
            tu_wait(current->pid, 10000);
        }
        if (current->rx)
            receiver_stop(current->rx);
        if (current->root)
            tu_rmtree(current->root);
        current = NULL; /* the rest leaks: the test failed anyway */
    }
    return 0;
}

/* ---- talking to it --------------------------------------------------------------- */

static size_t to_memstream(char *p, size_t size, size_t n, void *ud)
{
    return fwrite(p, size, n, ud);
}

/* GET path; the body parsed (the caller deletes it). */
static cJSON *get_json(const example *x, const char *path)
{
    CURL *c = curl_easy_init();
    char url[256], *body = NULL;
    size_t len = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", x->port, path);
    FILE *f = open_memstream(&body, &len);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_memstream);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    CURLcode rc = curl_easy_perform(c);
    fclose(f);
    curl_easy_cleanup(c);
    assert_int_equal(rc, CURLE_OK);
    cJSON *json = cJSON_Parse(body);
    free(body);
    assert_non_null(json);
    return json;
}

/* A multipart upload of one file; the event id from the 202. */
static char *upload(const example *x, const char *filename, const char *data)
{
    CURL *c = curl_easy_init();
    curl_mime *mime = curl_mime_init(c);
    curl_mimepart *p = curl_mime_addpart(mime);
    curl_mime_name(p, "file");
    curl_mime_data(p, data, CURL_ZERO_TERMINATED);
    curl_mime_filename(p, filename);
    curl_mime_type(p, "text/csv");
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer " UPLOAD_TOKEN);
    h = curl_slist_append(h, "Expect:");
    char url[256], *body = NULL;
    size_t len = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/uploads", x->port);
    FILE *f = open_memstream(&body, &len);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_memstream);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    fclose(f);
    curl_slist_free_all(h);
    curl_mime_free(mime);
    curl_easy_cleanup(c);
    assert_int_equal(rc, CURLE_OK);
    if (status != 202)
        fprintf(stderr, "upload: %ld %s\n", status, body);
    assert_int_equal(status, 202);
    cJSON *json = cJSON_Parse(body);
    free(body);
    const cJSON *f0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(json, "files"), 0);
    char *id = strdup(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f0, "id")));
    cJSON_Delete(json);
    return id;
}

/* The row of `name` in the example's SQLite file: "kind|bytes|sha256|owner|event_id". */
static char *row_of(const example *x, const char *name)
{
    sqlite3 *db = NULL;
    char *out = NULL;
    if (sqlite3_open_v2(x->pipeline_db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT kind, bytes, coalesce(sha256, '-'), coalesce(owner, '-'), "
                           "event_id FROM files WHERE name = ?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW &&
            asprintf(&out, "%s|%lld|%s|%s|%s", sqlite3_column_text(st, 0),
                     (long long)sqlite3_column_int64(st, 1), sqlite3_column_text(st, 2),
                     sqlite3_column_text(st, 3), sqlite3_column_text(st, 4)) < 0)
            out = NULL;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

static char *wait_row(const example *x, const char *name)
{
    for (long long end = tu_now_ms() + 30000; tu_now_ms() < end; usleep(100000)) {
        char *row = row_of(x, name);
        if (row)
            return row;
    }
    return NULL;
}

/* `evhost executions list` of a workflow with a status (its output). */
static char *executions(const example *x, const char *workflow, const char *status)
{
    char *argv[] = {EVH_BINARY, "executions", "list", "--db", x->db, "--workflow",
                    (char *)workflow, "--status", (char *)status, NULL};
    char *out = NULL;
    assert_int_equal(tu_run(argv, &out, NULL, 10000), 0);
    return out;
}

/* Occurrences of needle in text. */
static int count_lines_with(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static int wait_executions(const example *x, const char *workflow, int want)
{
    int n = 0;
    for (long long end = tu_now_ms() + 30000; tu_now_ms() < end; usleep(100000)) {
        char *out = executions(x, workflow, "succeeded");
        /* the WORKFLOW column: "<id>  <workflow> ..." */
        char column[128];
        snprintf(column, sizeof column, "  %s ", workflow);
        n = count_lines_with(out, column);
        free(out);
        if (n >= want)
            break;
    }
    return n;
}

static void sha256_hex(const char *data, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    assert_true(EVP_Digest(data, strlen(data), md, &n, EVP_sha256(), NULL));
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void assert_token_and_key(const char *headers, const char *event_id)
{
    assert_non_null(strcasestr(headers, "\r\nAuthorization: Bearer " PIPELINE_TOKEN "\r\n"));
    char key[128];
    snprintf(key, sizeof key, "\r\nIdempotency-Key: %s\r\n", event_id);
    assert_non_null(strcasestr(headers, key));
    assert_non_null(strcasestr(headers, "\r\nContent-Type: application/json"));
}

/* ---- the tests ------------------------------------------------------------------- */

/* Everything in the example loads: its three triggers and workflows. */
static void assert_example_loaded(const example *x)
{
    cJSON *triggers = get_json(x, "/api/triggers");
    char *text = cJSON_PrintUnformatted(triggers);
    static const char *const ids[] = {"csv-uploads", "inbox-pdfs", "pipeline-receipts"};
    for (size_t i = 0; i < 3; i++) {
        if (!strstr(text, ids[i])) {
            dump_log(x);
            fail_msg("trigger %s not loaded: %s", ids[i], text);
        }
    }
    free(text);
    cJSON_Delete(triggers);
    cJSON *wfs = get_json(x, "/api/workflows");
    text = cJSON_PrintUnformatted(wfs);
    assert_non_null(strstr(text, "upload-pipeline"));
    assert_non_null(strstr(text, "pdf-pipeline"));
    assert_non_null(strstr(text, "\"receipt\""));
    free(text);
    cJSON_Delete(wfs);
}

static void test_upload_pipeline(void **state)
{
    (void)state;
    example *x = example_start(0);
    assert_example_loaded(x);
    const char *csv = "region,amount\nnorth,10\nsouth,12\n";
    char *event_id = upload(x, "sales.csv", csv);
    /* not a CSV: stored and announced, but the trigger's name condition
     * keeps it out of the pipeline */
    char *other_id = upload(x, "notes.txt", "just notes");

    /* the receiver got the notification, authenticated, for this event */
    char *headers = NULL;
    cJSON *body = received(x->rx, "sales.csv", &headers);
    if (!body)
        dump_log(x);
    assert_non_null(body);
    assert_token_and_key(headers, event_id);
    char sha[65];
    sha256_hex(csv, sha);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "kind")),
                        "upload");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "sha256")),
                        sha);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(body, "bytes")->valueint, (int)strlen(csv));
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "event")),
                        event_id);
    int row_id = cJSON_GetObjectItemCaseSensitive(body, "row")->valueint;
    assert_true(row_id >= 1);
    cJSON_Delete(body);
    free(headers);

    /* the row is in the SQLite file */
    char *row = wait_row(x, "sales.csv");
    assert_non_null(row);
    char want[512];
    snprintf(want, sizeof want, "upload|%zu|%s|alice|%s", strlen(csv), sha, event_id);
    assert_string_equal(row, want);
    free(row);

    /* the execution succeeded, its last step logged the outcome */
    assert_int_equal(wait_executions(x, "upload-pipeline", 1), 1);
    assert_true(tu_wait_for_text(x->log, "receiver answered 202", 10000));
    char *log = tu_read_file(x->log);
    assert_non_null(strstr(log, "pipeline: sales.csv ("));
    free(log);

    /* the text file ran nothing */
    char *none = row_of(x, "notes.txt");
    assert_null(none);
    assert_int_equal(received_count(x->rx), 1);
    char *failed = executions(x, "upload-pipeline", "failed");
    assert_int_equal(count_lines_with(failed, "upload-pipeline"), 0);
    free(failed);
    free(other_id);
    free(event_id);
    example_stop(x);
}

static void test_pdf_pipeline(void **state)
{
    (void)state;
    example *x = example_start(0);
    assert_example_loaded(x);
    char *pdf = tu_join(x->dir, "inbox/scan-1.pdf");
    const char *content = "%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n";
    assert_int_equal(tu_write_file(pdf, content), 0);
    char *txt = tu_join(x->dir, "inbox/readme.txt");
    assert_int_equal(tu_write_file(txt, "not a pdf"), 0);

    char *headers = NULL;
    cJSON *body = received(x->rx, "scan-1.pdf", &headers);
    if (!body)
        dump_log(x);
    assert_non_null(body);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "kind")),
                        "pdf");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(body, "bytes")->valueint,
                     (int)strlen(content));
    const char *event_id =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "event"));
    assert_non_null(event_id);
    assert_token_and_key(headers, event_id);

    char *row = wait_row(x, "scan-1.pdf");
    assert_non_null(row);
    char want[512];
    snprintf(want, sizeof want, "pdf|%zu|-|-|%s", strlen(content), event_id);
    assert_string_equal(row, want);
    free(row);
    cJSON_Delete(body);
    free(headers);

    assert_int_equal(wait_executions(x, "pdf-pipeline", 1), 1);
    assert_true(tu_wait_for_text(x->log, "from the inbox stored as row", 10000));
    assert_int_equal(received_count(x->rx), 1);
    free(pdf);
    free(txt);
    example_stop(x);
}

/* As shipped: the receiver is the daemon's own api-webhook hook, whose
 * webhook_received events run the receipt workflow. */
static void test_self_receiver(void **state)
{
    (void)state;
    example *x = example_start(1);
    assert_example_loaded(x);
    char *event_id = upload(x, "sales.csv", "a,b\n1,2\n");
    char want[256];
    snprintf(want, sizeof want, "receiver: upload 'sales.csv' is row 1 (event %s)", event_id);
    int seen = tu_wait_for_text(x->log, want, 30000);
    if (!seen)
        dump_log(x);
    assert_true(seen);
    assert_int_equal(wait_executions(x, "upload-pipeline", 1), 1);
    assert_int_equal(wait_executions(x, "receipt", 1), 1);
    assert_int_equal(received_count(x->rx), 0);
    free(event_id);
    example_stop(x);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_upload_pipeline, teardown),
        cmocka_unit_test_teardown(test_pdf_pipeline, teardown),
        cmocka_unit_test_teardown(test_self_receiver, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
