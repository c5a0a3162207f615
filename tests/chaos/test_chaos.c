/*
 * test_chaos.c - crash consistency: a real `evhost run` daemon under load
 * (the chaos-source fixture emitting numbered ticks, and a client thread
 * POSTing events to /api/events/process, half of them with an
 * Idempotency-Key) is killed with SIGKILL at random moments, restarted, and
 * after every kill the database is checked against what was acknowledged
 * and against docs/pipeline.md's promises:
 *
 *   - every event answered 202 (or 200 duplicate) is stored, once;
 *   - emits that returned OK are stored except a tail of the last ones of
 *     each killed process (accepted into memory, not committed: documented);
 *   - each event has exactly one execution per matching trigger, and an
 *     event no longer pending has them all, succeeded;
 *   - no step ran more often than its retry policy allows, plus one re-run
 *     of the attempt a kill interrupted (chaos-step records every run with
 *     its attempt and the daemon's pid);
 *   - PRAGMA integrity_check is ok;
 *   - the webhook outbox (evhost-outbox.db, a subscription taking every
 *     lifecycle event, to a receiver in this process that answers 503 to
 *     one request in REFUSE_EVERY): integrity_check is ok, each stored
 *     event has its delivery row and each delivery its event, and every
 *     delivery recorded as delivered reached the receiver with a 2xx.
 *
 * Then one last daemon that emits nothing drains the backlog, the client
 * resends every keyed request whose answer the kills swallowed, delivers
 * every stored lifecycle event, and after a clean SIGTERM everything is
 * checked again, now with every execution succeeded, every stored event
 * delivered (none lost by the kills, none given up) and every event's job
 * an execution of the main database.
 *
 *   EVH_CHAOS_ROUNDS   kills (default 5: the test command; docs/RELIABILITY.md
 *                      has the long run: EVH_CHAOS_ROUNDS=20 ctest -R chaos)
 *   EVH_CHAOS_SEED     the random seed (default fixed, printed): the kill
 *                      moments and the client's choices repeat with it
 *
 * The database is read with SQL through SQLite directly rather than through
 * store.c, so that the checker shares no code with what it checks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <curl/curl.h>
#include <microhttpd.h>
#include <sqlite3.h>

#include "testutil.h"

#define DEFAULT_SEED 20261126u
#define DEFAULT_ROUNDS 5
#define TICK_RATE 150            /* chaos-source ticks per second */
#define KILL_MIN_MS 150          /* a kill lands this long after the spawn ... */
#define KILL_MAX_MS 2500         /* ... up to this: during recovery, start-up or load */
#define DRAIN_TIMEOUT_MS 180000  /* the last daemon's backlog (an ASan build is slow) */
#define FLAKY_FAILS 2            /* the flaky step fails its first two attempts ... */
#define FLAKY_RETRY_MAX 2        /* ... and succeeds on its last allowed one */
#define REFUSE_EVERY 7           /* the webhook receiver answers 503 to one request in 7 */
#define OUTBOX_TIMEOUT_MS 120000 /* the last daemon's deliveries */

/* ---- random numbers: splitmix64, one stream per user, from the seed ------ */

static uint64_t rnd_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static long rnd_range(uint64_t *s, long lo, long hi)
{
    return lo + (long)(rnd_next(s) % (uint64_t)(hi - lo + 1));
}

/* ---- the HTTP client ---------------------------------------------------- */

enum { OUT_UNKNOWN, OUT_ACCEPTED, OUT_DUPLICATE, OUT_REFUSED };

/* One event the client meant to send: n is unique and lands in data.n, so
 * the database tells which request stored which event. */
typedef struct post {
    long n;
    int keyed;
    int outcome;
    int sends;         /* requests made for it (keyed ones are resent) */
    char id[40];       /* the event id answered (202 or 200) */
} post;

typedef struct client {
    int port;
    atomic_int stop;
    uint64_t rng;
    post *posts;
    size_t n_posts, cap;
    long next_n;
    size_t resend_from; /* keyed posts before this one were resent this round */
    pthread_t thread;
    char *error; /* the first wrong answer; cmocka's checks belong to the
                    main thread, so the client thread only notes it */
    /* figures */
    long answers_202, answers_200, refused, cut;
} client;


static void client_error(client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void client_error(client *c, const char *fmt, ...)
{
    if (c->error)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&c->error, fmt, ap) < 0)
        c->error = NULL;
    va_end(ap);
}

/* Send post p once: its outcome and id from the answer.  A request the
 * kill cuts (no answer) leaves the outcome as it was: unknown, unless an
 * earlier send was answered. */
static void send_post(client *c, CURL *h, post *p)
{
    char url[64], body[160], key[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/events/process", c->port);
    snprintf(body, sizeof body,
             "{\"source\":\"chaos-source\",\"event_type\":\"posted\","
             "\"data\":{\"n\":%ld,\"keyed\":%s}}",
             p->n, p->keyed ? "true" : "false");
    snprintf(key, sizeof key, "Idempotency-Key: chaos-%ld", p->n);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    hl = curl_slist_append(hl, "Expect:");
    if (p->keyed)
        hl = curl_slist_append(hl, key);
    tu_buf b = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, tu_buf_append);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    p->sends++;
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    const char *at = b.data ? strstr(b.data, "\"id\":\"") : NULL;
    if ((status == 202 || status == 200) && at && strlen(at + 6) >= 36) {
        char id[40];
        memcpy(id, at + 6, 36);
        id[36] = '\0';
        if (p->outcome == OUT_ACCEPTED || p->outcome == OUT_DUPLICATE) {
            /* a resend of an answered key must name the same event */
            if (strcmp(p->id, id))
                client_error(c, "key chaos-%ld: answered %s, then %s", p->n, p->id, id);
        }
        memcpy(p->id, id, sizeof id);
        if (status == 202) {
            if (p->outcome == OUT_ACCEPTED || p->outcome == OUT_DUPLICATE)
                client_error(c, "key chaos-%ld: 202 again for a key answered before", p->n);
            p->outcome = OUT_ACCEPTED;
            c->answers_202++;
        } else {
            if (!p->keyed)
                client_error(c, "post %ld without a key answered 200: %s", p->n, b.data);
            if (p->outcome != OUT_ACCEPTED)
                p->outcome = OUT_DUPLICATE;
            c->answers_200++;
        }
    } else if (rc == CURLE_OK) {
        /* 429 queue full or 503 stopping: nothing stored, and said so */
        if (status != 429 && status != 503)
            client_error(c, "post %ld: HTTP %ld: %s", p->n, status, b.data ? b.data : "");
        if (p->outcome == OUT_UNKNOWN)
            p->outcome = OUT_REFUSED;
        c->refused++;
    } else {
        c->cut++;
    }
    free(b.data);
    curl_slist_free_all(hl);
}

static post *new_post(client *c)
{
    if (c->n_posts == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1024;
        c->posts = realloc(c->posts, c->cap * sizeof *c->posts);
        if (!c->posts)
            abort();
    }
    post *p = &c->posts[c->n_posts++];
    memset(p, 0, sizeof *p);
    p->n = c->next_n++;
    p->keyed = (int)(rnd_next(&c->rng) & 1);
    return p;
}

/* Resend keyed posts whose answer a kill swallowed (or that were refused):
 * a client that uses keys retries until it gets one.  Unkeyed posts are
 * never resent: that would be a second event, as the API says. */
static void resend_unanswered(client *c, CURL *h)
{
    for (size_t i = 0; i < c->resend_from && !atomic_load(&c->stop); i++) {
        post *p = &c->posts[i];
        if (p->keyed && (p->outcome == OUT_UNKNOWN || p->outcome == OUT_REFUSED))
            send_post(c, h, p);
    }
}

static void *client_main(void *arg)
{
    client *c = arg;
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    resend_unanswered(c, h);
    while (!atomic_load(&c->stop)) {
        send_post(c, h, new_post(c));
        struct timespec t = {0, rnd_range(&c->rng, 2, 15) * 1000000L};
        nanosleep(&t, NULL);
    }
    curl_easy_cleanup(h);
    return NULL;
}

static void client_start(client *c, int port)
{
    c->port = port;
    c->resend_from = c->n_posts;
    atomic_store(&c->stop, 0);
    assert_int_equal(pthread_create(&c->thread, NULL, client_main, c), 0);
}

static void client_check(const client *c)
{
    if (c->error)
        fail_msg("%s", c->error);
}

static void client_join(client *c)
{
    atomic_store(&c->stop, 1);
    pthread_join(c->thread, NULL);
    client_check(c);
}

/* ---- the daemon ---------------------------------------------------------- */

/* ---- the webhook receiver ------------------------------------------------- */

/* Records the webhook-id of every request it answered 2xx (a delivery
 * evhost records as delivered must be among them). */
typedef struct hooks {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t lock;
    char **ids;
    size_t n, cap;
    size_t n_sorted; /* ids[0, n_sorted) are sorted (hooks_sorted) */
    long requests, refused;
} hooks;

static enum MHD_Result hook_request(void *cls, struct MHD_Connection *c, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_data_size, void **state)
{
    hooks *h = cls;
    static int started;
    (void)url, (void)method, (void)version, (void)upload_data;
    if (!*state) {
        *state = &started;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0; /* the body is not checked here (test_webhooks does) */
        return MHD_YES;
    }
    const char *id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-id");
    pthread_mutex_lock(&h->lock);
    unsigned status = ++h->requests % REFUSE_EVERY == 0 ? 503 : 204;
    if (status == 503) {
        h->refused++;
    } else if (id) {
        /* a receiver thread, not the test's: no cmocka assertion here */
        if (h->n == h->cap) {
            h->cap = h->cap ? h->cap * 2 : 1024;
            if (!(h->ids = realloc(h->ids, h->cap * sizeof *h->ids)))
                abort();
        }
        if (!(h->ids[h->n++] = strdup(id)))
            abort();
    }
    pthread_mutex_unlock(&h->lock);
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static void hooks_start(hooks *h)
{
    pthread_mutex_init(&h->lock, NULL);
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL,
                            hook_request, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                            MHD_OPTION_THREAD_POOL_SIZE, 2u, MHD_OPTION_END);
    assert_non_null(h->d);
    h->port = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT)->port;
    assert_true(h->port > 0);
}

static void hooks_stop(hooks *h)
{
    MHD_stop_daemon(h->d);
    for (size_t i = 0; i < h->n; i++)
        free(h->ids[i]);
    free(h->ids);
    pthread_mutex_destroy(&h->lock);
}

static int cmp_text(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort the ids received so far (for hooks_got), and count those that
 * arrived more than once (at least once: a kill between the answer and the
 * record sends it again).  A request the receiver answers later (from a
 * killed daemon's last moment) is appended after them. */
static size_t hooks_sorted(hooks *h, long *repeats)
{
    pthread_mutex_lock(&h->lock);
    qsort(h->ids, h->n, sizeof *h->ids, cmp_text);
    size_t n = h->n_sorted = h->n;
    *repeats = 0;
    for (size_t i = 1; i < n; i++)
        *repeats += !strcmp(h->ids[i - 1], h->ids[i]);
    pthread_mutex_unlock(&h->lock);
    return n;
}

static int hooks_got(hooks *h, const char *id)
{
    pthread_mutex_lock(&h->lock);
    int got = bsearch(&id, h->ids, h->n_sorted, sizeof *h->ids, cmp_text) != NULL;
    pthread_mutex_unlock(&h->lock);
    return got;
}

typedef struct chaos {
    char *root, *db, *outbox, *emits, *steps, *cfg;
    hooks rx;
    uint64_t rng;
    int rounds;
    client cl;
    pid_t pids[256]; /* the pid of every daemon, by life */
    int lives;
    /* figures */
    long reruns, resumed, step_lines, lost_emits, acked_emits;
    long long messages, delivered;
    long repeats;
    /* the executions that had ended before the last daemon (sorted ids) */
    char **done_before;
    size_t n_done_before;
} chaos;

static void write_config(chaos *x, int life, int emit)
{
    char *text = NULL;
    assert_true(asprintf(&text,
                         "server: {listen: \"127.0.0.1:0\"}\n"
                         "plugins:\n"
                         "  builtin: false\n"
                         "  dirs: [\"%s/plugins\"]\n"
                         "  config:\n"
                         "    chaos-source: {record_file: \"%s\", life: %d, rate: %d, emit: %s}\n"
                         "storage:\n"
                         "  path: \"%s\"\n"
                         "  retention: {max_age_days: 0, max_executions: 0}\n"
                         "pipeline: {workers: 4}\n"
                         "workflows: {dirs: [\"%s/workflows\"]}\n"
                         "triggers: {files: [\"%s/triggers.yaml\"]}\n"
                         "data_dir: \"%s/data\"\n"
                         "shutdown_timeout_s: 60\n"
                         "notifications:\n"
                         "  subscriptions:\n"
                         "    - {id: chaos, url: \"http://127.0.0.1:%d/hook\", events: all,\n"
                         "       backoff_base_ms: 20, backoff_cap_ms: 200, max_attempts: 100}\n",
                         x->root, x->emits, life, TICK_RATE, emit ? "true" : "false", x->db,
                         x->root, x->root, x->root, x->rx.port) > 0);
    assert_int_equal(tu_write_file(x->cfg, text), 0);
    free(text);
}

static void write_pipeline(chaos *x)
{
    char *wfdir = tu_join(x->root, "workflows");
    char *plugins = tu_join(x->root, "plugins");
    assert_int_equal(mkdir(wfdir, 0755), 0);
    assert_int_equal(mkdir(plugins, 0755), 0);
    assert_int_equal(tu_copy_fixture("chaos-source", plugins, NULL), 0);
    assert_int_equal(tu_copy_fixture("chaos-step", plugins, NULL), 0);
    char *wf = NULL;
    assert_true(asprintf(&wf,
                         "id: chaos\n"
                         "steps:\n"
                         "  - id: flaky\n"
                         "    uses: chaos-step\n"
                         "    with: {record_file: \"%s\", fail_times: %d}\n"
                         "    retry: {max: %d, backoff_ms: 2}\n"
                         "  - id: work\n"
                         "    uses: chaos-step\n"
                         "    with: {record_file: \"%s\", sleep_ms: 3}\n",
                         x->steps, FLAKY_FAILS, FLAKY_RETRY_MAX, x->steps) > 0);
    char *path = tu_join(wfdir, "chaos.yaml");
    assert_int_equal(tu_write_file(path, wf), 0);
    free(path);
    free(wf);
    /* ticks match one trigger, posted events one, keyed posted events two */
    path = tu_join(x->root, "triggers.yaml");
    assert_int_equal(tu_write_file(path,
                                   "triggers:\n"
                                   "  - {id: ticks, source: chaos-source, event_type: tick,"
                                   " workflow: chaos}\n"
                                   "  - {id: posted, source: chaos-source, event_type: posted,"
                                   " workflow: chaos}\n"
                                   "  - id: keyed\n"
                                   "    source: chaos-source\n"
                                   "    event_type: posted\n"
                                   "    workflow: chaos\n"
                                   "    conditions: [{field: data.keyed, op: eq, value: true}]\n"),
                     0);
    free(path);
    free(plugins);
    free(wfdir);
}

static char *log_path(const chaos *x, int life)
{
    char name[32];
    snprintf(name, sizeof name, "life-%d.log", life);
    return tu_join(x->root, name);
}

static void dump_log(const chaos *x, int life)
{
    char *path = log_path(x, life);
    char *text = tu_read_file(path);
    print_error("---- %s\n%s\n", path, text ? text : "(none)");
    free(text);
    free(path);
}

static pid_t spawn_life(chaos *x, int life)
{
    char *log = log_path(x, life);
    char *argv[] = {EVH_BINARY, "run", "--config", x->cfg, NULL};
    pid_t pid = tu_spawn(argv, log);
    assert_true(pid > 0);
    assert_true(life < (int)(sizeof x->pids / sizeof *x->pids));
    x->pids[life] = pid;
    x->lives = life + 1;
    free(log);
    return pid;
}

/* ---- reading the database ----------------------------------------------- */

/* The database file at path (evhost.db or its outbox). */
static sqlite3 *file_open(const char *path)
{
    sqlite3 *db = NULL;
    /* read-write: opening after a kill may have to recover the WAL, as the
     * next daemon would; the checks only read */
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    return db;
}

static sqlite3 *db_open(const chaos *x)
{
    return file_open(x->db);
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    return s;
}

static long long q_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = prep(db, sql);
    long long v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    return v;
}

/* A query that must count nothing: on failure, say what it looked for. */
static void expect_none(sqlite3 *db, const char *what, const char *sql)
{
    long long n = q_int(db, sql);
    if (n != 0)
        fail_msg("%s: %lld row(s) (%s)", what, n, sql);
}

/* ---- the checks ---------------------------------------------------------- */

/* The triggers an event matches, as SQL over events e: ticks -> ticks;
 * posted -> posted, and keyed too when data.keyed. */
#define EXPECTED_RUNS                                                                      \
    "(CASE WHEN e.event_type = 'posted' AND json_extract(e.data, '$.keyed') = 1 THEN 2 "  \
    "ELSE 1 END)"
#define TRIGGER_MATCHES                                                                    \
    "((e.event_type = 'tick' AND x.trigger_id = 'ticks') OR "                              \
    " (e.event_type = 'posted' AND x.trigger_id = 'posted') OR "                           \
    " (e.event_type = 'posted' AND x.trigger_id = 'keyed' AND "                            \
    "  json_extract(e.data, '$.keyed') = 1))"

static void check_integrity(sqlite3 *db)
{
    sqlite3_stmt *s = prep(db, "PRAGMA integrity_check");
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    const char *r = (const char *)sqlite3_column_text(s, 0);
    if (!r || strcmp(r, "ok"))
        fail_msg("PRAGMA integrity_check: %s", r ? r : "(null)");
    sqlite3_finalize(s);
}

/* Executions: one per matching trigger and event, never for another
 * trigger; an event no longer pending has all of its, succeeded; work left
 * unfinished belongs to pending events only (recovery picks it up). */
static void check_executions(sqlite3 *db, int final)
{
    expect_none(db, "executions without their event",
                "SELECT COUNT(*) FROM workflow_executions x "
                "WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = x.event_id)");
    expect_none(db, "executions for a trigger the event does not match",
                "SELECT COUNT(*) FROM workflow_executions x JOIN events e ON e.id = x.event_id "
                "WHERE NOT " TRIGGER_MATCHES);
    expect_none(db, "a second execution of one trigger and event",
                "SELECT COUNT(*) FROM (SELECT 1 FROM workflow_executions "
                "GROUP BY trigger_id, event_id HAVING COUNT(*) > 1)");
    expect_none(db, "replays (this test makes none)",
                "SELECT COUNT(*) FROM workflow_executions WHERE replay_of IS NOT NULL");
    expect_none(db, "failed executions (every step succeeds within its retries)",
                "SELECT COUNT(*) FROM workflow_executions WHERE status = 'failed'");
    expect_none(db, "unmatched events (every event matches a trigger)",
                "SELECT COUNT(*) FROM events WHERE status = 'unmatched'");
    expect_none(db, "settled events without a succeeded execution per matching trigger",
                "SELECT COUNT(*) FROM events e WHERE e.status != 'pending' AND "
                "(SELECT COUNT(*) FROM workflow_executions x WHERE x.event_id = e.id "
                " AND x.status = 'succeeded') != " EXPECTED_RUNS);
    expect_none(db, "unfinished executions of settled events",
                "SELECT COUNT(*) FROM workflow_executions x JOIN events e ON e.id = x.event_id "
                "WHERE x.status NOT IN ('succeeded', 'failed') AND e.status != 'pending'");
    /* the database's own record of the steps of succeeded executions */
    expect_none(db, "succeeded executions without the flaky step's last attempt succeeded",
                "SELECT COUNT(*) FROM workflow_executions x WHERE x.status = 'succeeded' AND "
                "NOT EXISTS (SELECT 1 FROM step_runs r WHERE r.execution_id = x.id AND "
                "r.step_id = 'flaky' AND r.attempt = 3 AND r.status = 'succeeded')");
    expect_none(db, "succeeded executions without the work step succeeded",
                "SELECT COUNT(*) FROM workflow_executions x WHERE x.status = 'succeeded' AND "
                "NOT EXISTS (SELECT 1 FROM step_runs r WHERE r.execution_id = x.id AND "
                "r.step_id = 'work' AND r.status = 'succeeded')");
    expect_none(db, "step runs beyond the retry policy's attempts",
                "SELECT COUNT(*) FROM step_runs WHERE (step_id = 'flaky' AND attempt > 3) "
                "OR (step_id = 'work' AND attempt > 1)");
    if (final) {
        expect_none(db, "events still pending after the drain",
                    "SELECT COUNT(*) FROM events WHERE status = 'pending'");
        expect_none(db, "executions not succeeded after the drain",
                    "SELECT COUNT(*) FROM workflow_executions WHERE status != 'succeeded'");
        expect_none(db, "step runs left running after the drain",
                    "SELECT COUNT(*) FROM step_runs WHERE status = 'running'");
    }
}

/* Every answered post is stored as the event it was answered with, and no
 * post is stored twice (keyed ones are resent; the key must hold). */
static void check_posts(chaos *x, sqlite3 *db)
{
    expect_none(db, "one post stored as two events",
                "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE event_type = 'posted' "
                "GROUP BY json_extract(data, '$.n') HAVING COUNT(*) > 1)");
    sqlite3_stmt *s = prep(db, "SELECT json_extract(data, '$.n'), idempotency_key "
                               "FROM events WHERE id = ?1");
    for (size_t i = 0; i < x->cl.n_posts; i++) {
        const post *p = &x->cl.posts[i];
        if (p->outcome != OUT_ACCEPTED && p->outcome != OUT_DUPLICATE)
            continue;
        sqlite3_reset(s);
        sqlite3_bind_text(s, 1, p->id, -1, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_ROW)
            fail_msg("post %ld answered %s with event %s, which is not in the database", p->n,
                     p->outcome == OUT_ACCEPTED ? "202" : "200", p->id);
        long n = (long)sqlite3_column_int64(s, 0);
        const char *key = (const char *)sqlite3_column_text(s, 1);
        char want[32];
        snprintf(want, sizeof want, "chaos-%ld", p->n);
        if (n != p->n || (p->keyed && (!key || strcmp(key, want))))
            fail_msg("post %ld: event %s holds post %ld (key %s)", p->n, p->id, n,
                     key ? key : "none");
    }
    sqlite3_finalize(s);
}

/* The source's acknowledged emits ("<life> <seq>" lines) against the
 * stored ticks: per life, the stored seqs are 0..k-1 without a hole (the
 * writer commits the queue in order), at most one past what was recorded
 * (an emit is recorded after it returned), and what is missing is only the
 * tail a kill found in memory (docs/pipeline.md: not yet committed). */
static void check_ticks(chaos *x, sqlite3 *db, int final)
{
    long recorded[256];
    for (int i = 0; i < 256; i++)
        recorded[i] = 0;
    char *text = tu_read_file(x->emits);
    for (char *line = text; line && *line;) {
        char *end = strchr(line, '\n');
        if (!end)
            break; /* cannot happen: one write(2) per line */
        long life = -1, seq = -1;
        if (sscanf(line, "%ld %ld", &life, &seq) != 2 || life < 0 || life >= x->lives)
            fail_msg("emit record: bad line '%.*s'", (int)(end - line), line);
        if (seq != recorded[life])
            fail_msg("emit record of life %ld: seq %ld after %ld", life, seq, recorded[life]);
        recorded[life]++;
        line = end + 1;
    }
    free(text);
    sqlite3_stmt *s = prep(db, "SELECT COUNT(*), COUNT(DISTINCT json_extract(data, '$.seq')), "
                               "MIN(json_extract(data, '$.seq')), "
                               "MAX(json_extract(data, '$.seq')) "
                               "FROM events WHERE event_type = 'tick' "
                               "AND json_extract(data, '$.life') = ?1");
    long lost = 0, acked = 0;
    for (int life = 0; life < x->lives; life++) {
        sqlite3_reset(s);
        sqlite3_bind_int(s, 1, life);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        long count = (long)sqlite3_column_int64(s, 0);
        long distinct = (long)sqlite3_column_int64(s, 1);
        long lo = (long)sqlite3_column_int64(s, 2), hi = (long)sqlite3_column_int64(s, 3);
        if (count && (distinct != count || lo != 0 || hi != count - 1))
            fail_msg("life %d: stored ticks are not 0..k-1: %ld stored, %ld distinct, "
                     "seq %ld..%ld", life, count, distinct, lo, hi);
        if (count > recorded[life] + 1)
            fail_msg("life %d: %ld ticks stored but only %ld emits recorded", life, count,
                     recorded[life]);
        acked += recorded[life];
        if (recorded[life] > count)
            lost += recorded[life] - count;
    }
    sqlite3_finalize(s);
    if (final) {
        x->lost_emits = lost;
        x->acked_emits = acked;
    }
}

/* One line of the steps record. */
typedef struct run_line {
    char exec[40];
    char step[16];
    unsigned attempt;
    long pid;
    size_t order;
} run_line;

static int by_exec_step(const void *a, const void *b)
{
    const run_line *x = a, *y = b;
    int c = strcmp(x->exec, y->exec);
    if (!c)
        c = strcmp(x->step, y->step);
    if (!c)
        c = x->order < y->order ? -1 : x->order > y->order;
    return c;
}

/*
 * How often each step of each execution ran (chaos-step's record).  Within
 * one process a step's attempts go 1, 2, ... up to its policy (flaky: 3,
 * work: 1).  A kill ends a process mid-step; the next process resumes the
 * step: it runs again the attempt that was interrupted (the at-least-once
 * re-run docs/pipeline.md promises) or, when the kill came between two
 * attempts, the next one.  So across a change of process an attempt may
 * repeat once, and never starts over: the retry policy holds for the whole
 * execution, not per process.  Every succeeded execution ran each step.
 */
static void check_step_runs(chaos *x, sqlite3 *db, int final)
{
    char *text = tu_read_file(x->steps);
    size_t n = 0, cap = 1024;
    run_line *lines = malloc(cap * sizeof *lines);
    assert_non_null(lines);
    for (char *line = text; line && *line;) {
        char *end = strchr(line, '\n');
        if (!end)
            break;
        if (n == cap) {
            cap *= 2;
            lines = realloc(lines, cap * sizeof *lines);
            assert_non_null(lines);
        }
        run_line *r = &lines[n];
        if (sscanf(line, "%39s %15s %u %ld", r->exec, r->step, &r->attempt, &r->pid) != 4)
            fail_msg("step record: bad line '%.*s'", (int)(end - line), line);
        int ours = 0;
        for (int life = 0; life < x->lives; life++)
            ours |= x->pids[life] == (pid_t)r->pid;
        if (!ours) /* steps run in the daemon itself here, never elsewhere */
            fail_msg("step record: a run in process %ld, not one of the daemons", r->pid);
        r->order = n++;
        line = end + 1;
    }
    free(text);
    qsort(lines, n, sizeof *lines, by_exec_step);
    long reruns = 0, resumed = 0;
    sqlite3_stmt *s = prep(db, "SELECT status FROM workflow_executions WHERE id = ?1");
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && !strcmp(lines[j].exec, lines[i].exec) &&
               !strcmp(lines[j].step, lines[i].step))
            j++;
        const run_line *g = &lines[i];
        unsigned max = !strcmp(g->step, "flaky") ? FLAKY_RETRY_MAX + 1 : 1;
        if (g[0].attempt != 1)
            fail_msg("execution %s step %s: first run is attempt %u", g->exec, g->step,
                     g[0].attempt);
        int processes = 1;
        for (size_t k = 1; k < j - i; k++) {
            unsigned prev = g[k - 1].attempt, a = g[k].attempt;
            int same = g[k].pid == g[k - 1].pid;
            processes += !same;
            if (a > max)
                fail_msg("execution %s step %s: attempt %u beyond the policy's %u", g->exec,
                         g->step, a, max);
            if (same && a != prev + 1)
                fail_msg("execution %s step %s: attempt %u after %u in one process", g->exec,
                         g->step, a, prev);
            if (!same && a != prev && a != prev + 1)
                fail_msg("execution %s step %s: after a restart attempt %u ran after attempt "
                         "%u: the retry count started over, so the step ran %zu times for a "
                         "policy of %u attempts",
                         g->exec, g->step, a, prev, j - i, max);
            reruns += !same && a == prev;
        }
        if (j - i > (size_t)(max + processes - 1))
            fail_msg("execution %s step %s ran %zu times in %d processes (policy: %u)", g->exec,
                     g->step, j - i, processes, max);
        resumed += processes > 1;
        sqlite3_reset(s);
        sqlite3_bind_text(s, 1, g->exec, -1, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_ROW) {
            /* Between two lives a step may have run for an execution whose
             * row was still waiting for the recorder's commit when the kill
             * came (docs/pipeline.md): its event is still pending, and the
             * next life runs it again under the same id (uuid_for_execution).
             * Once everything is drained, every run's execution is stored. */
            if (final)
                fail_msg("step record names execution %s, which is not in the database",
                         g->exec);
            i = j;
            continue;
        }
        const char *status = (const char *)sqlite3_column_text(s, 0);
        if (status && !strcmp(status, "succeeded") && lines[j - 1].attempt != max)
            fail_msg("execution %s succeeded but step %s last ran attempt %u of %u", g->exec,
                     g->step, lines[j - 1].attempt, max);
        i = j;
    }
    sqlite3_finalize(s);
    /* and the other way round: a succeeded execution ran both steps */
    long long with_runs = 0;
    for (size_t i = 0; i < n; i++)
        with_runs += !strcmp(lines[i].step, "work") &&
                     (i + 1 == n || strcmp(lines[i + 1].exec, lines[i].exec) ||
                      strcmp(lines[i + 1].step, "work"));
    long long succeeded =
        q_int(db, "SELECT COUNT(*) FROM workflow_executions WHERE status = 'succeeded'");
    if (with_runs < succeeded)
        fail_msg("%lld executions succeeded, but only %lld ran their work step", succeeded,
                 with_runs);
    free(lines);
    if (final) {
        x->reruns = reruns;
        x->resumed = resumed;
        x->step_lines = (long)n;
    }
}

/* The webhook outbox after a kill: the file is sound, each stored event has
 * its delivery and each delivery its event, and what is recorded as
 * delivered reached the receiver.  final: every stored event is delivered,
 * each belongs to an execution of the main database, and every execution
 * the kills left unfinished announced its end (at least once: a kill
 * between storing the end and recording it runs the last step again). */
static void check_outbox(chaos *x, int final)
{
    char **done_before = x->done_before;
    size_t n_done_before = x->n_done_before;
    struct stat st;
    if (stat(x->outbox, &st) != 0) {
        if (final)
            fail_msg("no outbox file %s", x->outbox);
        return; /* killed before the daemon opened it */
    }
    sqlite3 *db = file_open(x->outbox);
    check_integrity(db);
    expect_none(db, "deliveries without their lifecycle event",
                "SELECT COUNT(*) FROM deliveries d "
                "WHERE NOT EXISTS (SELECT 1 FROM outbox_messages m WHERE m.id = d.message)");
    expect_none(db, "lifecycle events stored without a delivery (the subscription takes all)",
                "SELECT COUNT(*) FROM outbox_messages m WHERE NOT EXISTS "
                "(SELECT 1 FROM deliveries d WHERE d.message = m.id AND d.subscription_id = "
                "'chaos')");
    expect_none(db, "a second delivery of one event to one subscription",
                "SELECT COUNT(*) FROM (SELECT 1 FROM deliveries "
                "GROUP BY message, subscription_id HAVING COUNT(*) > 1)");
    long repeats = 0;
    hooks_sorted(&x->rx, &repeats);
    sqlite3_stmt *s = prep(db, "SELECT d.id, m.message_id FROM deliveries d "
                               "JOIN outbox_messages m ON m.id = d.message "
                               "WHERE d.status = 'delivered'");
    long long delivered = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(s, 1);
        if (!id || !hooks_got(&x->rx, id))
            fail_msg("delivery %lld (%s) is recorded as delivered, but the receiver never "
                     "answered it with a 2xx",
                     (long long)sqlite3_column_int64(s, 0), id ? id : "(null)");
        delivered++;
    }
    sqlite3_finalize(s);
    if (final) {
        expect_none(db, "deliveries not delivered when the last daemon stopped",
                    "SELECT COUNT(*) FROM deliveries WHERE status <> 'delivered'");
        s = prep(db, "ATTACH ?1 AS evh");
        sqlite3_bind_text(s, 1, x->db, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(s), SQLITE_DONE);
        sqlite3_finalize(s);
        expect_none(db, "lifecycle events of a job that is no execution",
                    "SELECT COUNT(*) FROM outbox_messages m WHERE NOT EXISTS "
                    "(SELECT 1 FROM evh.workflow_executions x WHERE x.id = m.job_id)");
        sqlite3_stmt *jobs = prep(db, "SELECT id FROM evh.workflow_executions");
        sqlite3_stmt *end = prep(db, "SELECT COUNT(*) FROM outbox_messages "
                                     "WHERE job_id = ?1 AND event IN ('jobComplete', 'jobError')");
        while (sqlite3_step(jobs) == SQLITE_ROW) {
            const char *job = (const char *)sqlite3_column_text(jobs, 0);
            if (bsearch(&job, done_before, n_done_before, sizeof *done_before, cmp_text))
                continue; /* ended in a killed life: its end may be what a kill lost */
            sqlite3_bind_text(end, 1, job, -1, SQLITE_TRANSIENT);
            assert_int_equal(sqlite3_step(end), SQLITE_ROW);
            if (sqlite3_column_int64(end, 0) < 1)
                fail_msg("execution %s ended in the last daemon, and no jobComplete or "
                         "jobError of it is in the outbox",
                         job);
            sqlite3_reset(end);
        }
        sqlite3_finalize(end);
        sqlite3_finalize(jobs);
        x->messages = q_int(db, "SELECT COUNT(*) FROM outbox_messages");
        x->delivered = delivered;
        x->repeats = repeats;
    }
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* The ids of the executions that have ended (succeeded or failed), sorted. */
static char **ended_executions(chaos *x, size_t *n)
{
    sqlite3 *db = db_open(x);
    sqlite3_stmt *s = prep(db, "SELECT id FROM workflow_executions "
                               "WHERE status IN ('succeeded', 'failed') ORDER BY id");
    char **ids = NULL;
    size_t count = 0, cap = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 1024;
            ids = realloc(ids, cap * sizeof *ids);
            assert_non_null(ids);
        }
        ids[count] = strdup((const char *)sqlite3_column_text(s, 0));
        assert_non_null(ids[count]);
        count++;
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    qsort(ids, count, sizeof *ids, cmp_text);
    *n = count;
    return ids;
}

/* Wait until the outbox has nothing left to deliver. */
static void wait_delivered(chaos *x, int life)
{
    long long end = tu_now_ms() + OUTBOX_TIMEOUT_MS, open = -1;
    while (tu_now_ms() < end) {
        sqlite3 *db = file_open(x->outbox);
        open = q_int(db, "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'failed')");
        sqlite3_close(db);
        if (open == 0)
            return;
        usleep(200000);
    }
    dump_log(x, life);
    fail_msg("%lld delivery(ies) still open after %d s", open, OUTBOX_TIMEOUT_MS / 1000);
}

static void check_all(chaos *x, int final)
{
    sqlite3 *db = db_open(x);
    check_integrity(db);
    check_executions(db, final);
    check_posts(x, db);
    check_ticks(x, db, final);
    check_step_runs(x, db, final);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    check_outbox(x, final);
}

/* ---- the test ------------------------------------------------------------- */

static unsigned long env_num(const char *name, unsigned long fallback)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return fallback;
    char *end = NULL;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno || *end)
        fail_msg("%s='%s' is not a number", name, v);
    return n;
}

/* Wait until nothing is left to do: no pending event, no unfinished
 * execution; and the client's resends are answered. */
static void wait_drained(chaos *x, int life)
{
    long long end = tu_now_ms() + DRAIN_TIMEOUT_MS;
    long long pending = -1, open = -1;
    while (tu_now_ms() < end) {
        sqlite3 *db = db_open(x);
        pending = q_int(db, "SELECT COUNT(*) FROM events WHERE status = 'pending'");
        open = q_int(db, "SELECT COUNT(*) FROM workflow_executions "
                         "WHERE status IN ('queued', 'running')");
        sqlite3_close(db);
        if (pending == 0 && open == 0)
            return;
        usleep(200000);
    }
    dump_log(x, life);
    fail_msg("not drained after %d s: %lld pending event(s), %lld unfinished execution(s)",
             DRAIN_TIMEOUT_MS / 1000, pending, open);
}

static void test_chaos_sigkill(void **state)
{
    (void)state;
    long long t0 = tu_now_ms();
    chaos *x = calloc(1, sizeof *x);
    assert_non_null(x);
    unsigned long seed = env_num("EVH_CHAOS_SEED", DEFAULT_SEED);
    x->rounds = (int)env_num("EVH_CHAOS_ROUNDS", DEFAULT_ROUNDS);
    assert_true(x->rounds >= 1 && x->rounds < 250);
    printf("chaos: seed %lu (EVH_CHAOS_SEED=%lu repeats it), %d round(s) "
           "(EVH_CHAOS_ROUNDS)\n", seed, seed, x->rounds);
    fflush(stdout);
    x->rng = seed;
    x->cl.rng = seed ^ 0x5eedc11e57u;
    x->root = tu_tempdir("chaos");
    x->db = tu_join(x->root, "evhost.db");
    x->outbox = tu_join(x->root, "evhost-outbox.db");
    hooks_start(&x->rx);
    x->emits = tu_join(x->root, "emits.txt");
    x->steps = tu_join(x->root, "steps.txt");
    x->cfg = tu_join(x->root, "host.yaml");
    write_pipeline(x);
    long kills_under_load = 0;

    for (int round = 0; round < x->rounds; round++) {
        write_config(x, round, 1);
        long long spawned = tu_now_ms();
        pid_t pid = spawn_life(x, round);
        long long kill_at = spawned + rnd_range(&x->rng, KILL_MIN_MS, KILL_MAX_MS);
        char *log = log_path(x, round);
        int port = tu_wait_api_port(log, "127.0.0.1", (int)(kill_at - tu_now_ms()));
        free(log);
        if (port)
            client_start(&x->cl, port);
        long long left = kill_at - tu_now_ms();
        if (left > 0)
            usleep((useconds_t)left * 1000);
        kill(pid, SIGKILL);
        int status = tu_wait(pid, 10000);
        if (port)
            client_join(&x->cl);
        if (status != 128 + SIGKILL) {
            dump_log(x, round);
            fail_msg("round %d: the daemon ended with %d before the kill", round, status);
        }
        kills_under_load += port != 0;
        check_all(x, 0);
    }

    /* the last life: no ticks, resend what is unanswered, drain, deliver,
     * stop */
    x->done_before = ended_executions(x, &x->n_done_before);
    int life = x->rounds;
    write_config(x, life, 0);
    pid_t pid = spawn_life(x, life);
    char *log = log_path(x, life);
    int port = tu_wait_api_port(log, "127.0.0.1", 60000);
    if (!port)
        dump_log(x, life);
    assert_true(port > 0);
    /* resends only, from this thread: no new posts */
    atomic_store(&x->cl.stop, 0);
    x->cl.port = port;
    x->cl.resend_from = x->cl.n_posts;
    CURL *h = curl_easy_init();
    assert_non_null(h);
    resend_unanswered(&x->cl, h);
    curl_easy_cleanup(h);
    client_check(&x->cl);
    wait_drained(x, life);
    wait_delivered(x, life);
    kill(pid, SIGTERM);
    int status = tu_wait(pid, 90000);
    if (status != 0)
        dump_log(x, life);
    assert_int_equal(status, 0);
    free(log);
    for (size_t i = 0; i < x->cl.n_posts; i++) {
        const post *p = &x->cl.posts[i];
        if (p->keyed && p->outcome != OUT_ACCEPTED && p->outcome != OUT_DUPLICATE)
            fail_msg("keyed post %ld never answered after %d send(s)", p->n, p->sends);
    }
    check_all(x, 1);

    /* figures */
    sqlite3 *db = db_open(x);
    long long events = q_int(db, "SELECT COUNT(*) FROM events");
    long long execs = q_int(db, "SELECT COUNT(*) FROM workflow_executions");
    long long runs = q_int(db, "SELECT COUNT(*) FROM step_runs");
    long long unkeyed_kept =
        q_int(db, "SELECT COUNT(*) FROM events WHERE event_type = 'posted' AND "
                  "idempotency_key IS NULL");
    sqlite3_close(db);
    long unkeyed_acked = 0, keyed = 0, resent = 0;
    for (size_t i = 0; i < x->cl.n_posts; i++) {
        const post *p = &x->cl.posts[i];
        keyed += p->keyed;
        resent += p->sends > 1;
        unkeyed_acked += !p->keyed && p->outcome == OUT_ACCEPTED;
    }
    printf("chaos: %d round(s), %d SIGKILL(s) (%ld under HTTP load), %.1f s\n", x->rounds,
           x->rounds, kills_under_load, (double)(tu_now_ms() - t0) / 1000.0);
    printf("chaos: HTTP: %zu post(s) (%ld keyed, %ld resent), %ld answered 202, %ld 200 "
           "duplicate, %ld refused (429/503), %ld cut by a kill; %lld unkeyed stored "
           "(%ld acknowledged)\n",
           x->cl.n_posts, keyed, resent, x->cl.answers_202, x->cl.answers_200, x->cl.refused,
           x->cl.cut, unkeyed_kept, unkeyed_acked);
    printf("chaos: source: %ld emit(s) acknowledged, %ld of them lost in memory at a SIGKILL "
           "(accepted, not yet committed: docs/pipeline.md)\n",
           x->acked_emits, x->lost_emits);
    printf("chaos: %lld event(s) stored, %lld execution(s) (all succeeded), %lld step run "
           "record(s), %ld step run(s) by the plugin, %ld execution step(s) resumed after a "
           "kill, %ld interrupted attempt(s) run again\n",
           events, execs, runs, x->step_lines, x->resumed, x->reruns);
    printf("chaos: webhooks: %lld lifecycle event(s) stored, all delivered; the receiver "
           "answered %ld request(s), %ld of them 503, and got %ld event(s) again after a kill\n",
           x->messages, x->rx.requests, x->rx.refused, x->repeats);
    fflush(stdout);

    tu_rmtree(x->root);
    free(x->cl.posts);
    free(x->cl.error);
    hooks_stop(&x->rx);
    for (size_t i = 0; i < x->n_done_before; i++)
        free(x->done_before[i]);
    free(x->done_before);
    free(x->root);
    free(x->db);
    free(x->outbox);
    free(x->emits);
    free(x->steps);
    free(x->cfg);
    free(x);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chaos_sigkill),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
