/*
 * test_store.c - the SQLite store against a real database file: schema and
 * the seed's debugging queries, migrations, the durable event queue,
 * executions (one per trigger and event), step runs, triggers, keyset
 * pagination under concurrent inserts, retention that shrinks the file,
 * and two connections on two threads.
 */
/* cmocka.h needs these first, in this order */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include <evhost/evhost.h>

#include "event.h"
#include "store.h"
#include "testutil.h"

typedef struct fixture {
    char *dir;
    char *path;
    store *s;
} fixture;

/* A store of the main database (outbox 0) or of the outbox file (1). */
static store *open_kind(const char *path, int outbox)
{
    store_options o = {.path = path, .outbox = outbox};
    store *s = NULL;
    char *err = NULL;
    int rc = store_open(&o, &s, &err);
    if (rc != EVH_OK)
        fprintf(stderr, "store_open: %s\n", err ? err : "?");
    assert_int_equal(rc, EVH_OK);
    assert_null(err);
    assert_non_null(s);
    return s;
}

static store *open_at(const char *path)
{
    return open_kind(path, 0);
}

static store *open_outbox(const char *path)
{
    return open_kind(path, 1);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir("store");
    f->path = tu_join(f->dir, "evhost.db");
    f->s = open_at(f->path);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    store_close(f->s);
    tu_rmtree(f->dir);
    free(f->path);
    free(f->dir);
    free(f);
    return 0;
}

/* ---- a second, plain SQLite connection, as a user's sqlite3 shell ------- */

static sqlite3 *raw_open(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    return db;
}

static int64_t raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static char *raw_text(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char *v = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return v;
}

/* Run sql with one text parameter per '?' from args (NULL-terminated). */
static void raw_run(sqlite3 *db, const char *sql, ...)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    va_list ap;
    va_start(ap, sql);
    const char *v;
    for (int i = 1; (v = va_arg(ap, const char *)) != NULL; i++)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    va_end(ap);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

/* ---- events ---------------------------------------------------------------- */

static evh_event *ev_make(const char *source, const char *type, const char *data)
{
    evh_event *ev = event_new(source, type, data, strlen(data), NULL, NULL);
    assert_non_null(ev);
    return ev;
}

static void fmt_time(int64_t us, char out[EVH_TIMESTAMP_LEN + 1])
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char head[32];
    strftime(head, sizeof head, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, EVH_TIMESTAMP_LEN + 1, "%.19s.%03uZ", head, (unsigned)(us / 1000 % 1000));
}

static void ev_set_time(evh_event *ev, int64_t us)
{
    ev->timestamp_us = us;
    fmt_time(us, ev->timestamp);
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void insert_all(store *s, evh_event **evs, size_t n)
{
    int rc = store_events_insert(s, evs, n);
    if (rc != EVH_OK)
        fprintf(stderr, "insert: %s\n", store_errmsg(s));
    assert_int_equal(rc, EVH_OK);
}

static void free_all(evh_event **evs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        event_free(evs[i]);
}

static const char *str_of(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static char *new_execution(store *s, const char *wf, const char *trigger, const char *event)
{
    store_execution x;
    memset(&x, 0, sizeof x);
    x.workflow_id = wf;
    x.workflow_version = "1";
    x.trigger_id = trigger;
    x.event_id = event;
    assert_int_equal(store_execution_create(s, &x), EVH_OK);
    assert_int_equal(strlen(x.id), EVH_UUID_LEN);
    return strdup(x.id);
}

/* ---- tests ------------------------------------------------------------------ */

/* The seed's two debugging queries, literally, against the file. */
static void test_open_schema_and_seed_queries(void **state)
{
    fixture *f = *state;
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_string_equal(store_path(f->s), f->path);

    assert_int_equal(store_trigger_put(f->s, "trigger-id", "Timer to log", "my-timer",
                                       "timer_fired", "log-it", NULL, 1, NULL),
                     EVH_OK);
    evh_event *ev = ev_make("my-timer", "timer_fired", "{\"n\":1}");
    insert_all(f->s, &ev, 1);
    char *x1 = new_execution(f->s, "log-it", "trigger-id", ev->id);
    store_execution replay = {
        .workflow_id = "log-it", .trigger_id = "trigger-id", .event_id = ev->id, .replay_of = x1};
    usleep(2000); /* a later created_at */
    assert_int_equal(store_execution_create(f->s, &replay), EVH_OK);

    sqlite3 *db = raw_open(f->path);
    char *mode = raw_text(db, "PRAGMA journal_mode");
    assert_string_equal(mode, "wal");
    free(mode);
    assert_int_equal(raw_int(db, "PRAGMA auto_vacuum"), 2); /* incremental */
    assert_int_equal(raw_int(db, "SELECT MAX(version) FROM schema_migrations"),
                     STORE_SCHEMA_VERSION);

    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT * FROM workflow_triggers WHERE "
                                        "event_type='timer_fired' AND source='my-timer';",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_count(st), 10);
    assert_string_equal(sqlite3_column_text(st, 0), "trigger-id");
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);

    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT id, workflow_id, status, created_at FROM "
                                        "workflow_executions WHERE trigger_id='trigger-id' "
                                        "ORDER BY created_at DESC;",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal(sqlite3_column_text(st, 0), replay.id); /* newest first */
    assert_string_equal(sqlite3_column_text(st, 2), "queued");
    assert_int_equal(strlen((const char *)sqlite3_column_text(st, 3)), EVH_TIMESTAMP_LEN);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal(sqlite3_column_text(st, 0), x1);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(x1);
    event_free(ev);
}

static void test_reopen_is_idempotent(void **state)
{
    fixture *f = *state;
    assert_int_equal(store_trigger_put(f->s, "t1", "T", "src", "ty", "wf", NULL, 1, NULL), EVH_OK);
    for (int i = 0; i < 3; i++) {
        store_close(f->s);
        f->s = open_at(f->path);
    }
    cJSON *t = store_trigger_get(f->s, "t1");
    assert_non_null(t);
    cJSON_Delete(t);
    sqlite3 *db = raw_open(f->path);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM schema_migrations"), STORE_SCHEMA_VERSION);
    sqlite3_close(db);
}

static void test_future_database_refused(void **state)
{
    fixture *f = *state;
    sqlite3 *db = raw_open(f->path);
    raw_run(db, "INSERT INTO schema_migrations(version, applied_at) VALUES(999, ?)",
            "2030-01-01T00:00:00.000Z", (const char *)NULL);
    sqlite3_close(db);

    store_options o = {.path = f->path, .synchronous_full = 1};
    store *s = (store *)1;
    char *err = NULL;
    assert_int_equal(store_open(&o, &s, &err), EVH_E_UNSUPPORTED);
    assert_null(s);
    assert_non_null(err);
    assert_non_null(strstr(err, f->path));
    assert_non_null(strstr(err, "999 is newer"));
    free(err);

    /* not a database at all: refused, naming the file */
    char *junk = tu_join(f->dir, "junk.db");
    assert_int_equal(tu_write_file(junk, "this is not a database, just some text....."
                                         "......................................."),
                     0);
    o.path = junk;
    assert_int_not_equal(store_open(&o, &s, &err), EVH_OK);
    assert_null(s);
    assert_non_null(strstr(err, junk));
    free(err);
    free(junk);
}

/* A database written by schema version 2 (executions keyed by text, eight
 * indexes): opening it applies migration 3, which rebuilds the table (and
 * 4, the outbox's).  Every
 * execution and step run must survive (the old table's drop must not cascade
 * into step_runs), in their order, with the same uniqueness rules. */
static void test_migration_3_keeps_executions(void **state)
{
    fixture *f = *state;
    store_close(f->s);
    f->s = NULL;
    char *old = tu_join(f->dir, "v2.db");
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(old, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(
            db,
            "PRAGMA journal_mode=WAL;"
            "CREATE TABLE schema_migrations(version INTEGER PRIMARY KEY, applied_at TEXT);"
            "INSERT INTO schema_migrations VALUES(1, '2026-11-01T00:00:00.000Z'),"
            " (2, '2026-11-01T00:00:00.000Z');"
            /* version 2's two tables, as it created them */
            "CREATE TABLE workflow_executions( id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL,"
            " workflow_version TEXT, trigger_id TEXT NOT NULL, event_id TEXT NOT NULL,"
            " status TEXT NOT NULL CHECK(status IN ('queued','running','succeeded','failed')),"
            " created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, error TEXT,"
            " replay_of TEXT, UNIQUE(trigger_id, event_id, replay_of));"
            "CREATE UNIQUE INDEX workflow_executions_once ON workflow_executions(trigger_id,"
            " event_id) WHERE replay_of IS NULL;"
            "CREATE INDEX workflow_executions_created ON workflow_executions(created_at, id);"
            "CREATE INDEX workflow_executions_workflow ON workflow_executions(workflow_id,"
            " created_at, id);"
            "CREATE INDEX workflow_executions_event ON workflow_executions(event_id);"
            "CREATE TABLE step_runs( id INTEGER PRIMARY KEY, execution_id TEXT NOT NULL"
            " REFERENCES workflow_executions(id) ON DELETE CASCADE, step_id TEXT NOT NULL,"
            " plugin TEXT NOT NULL, attempt INTEGER NOT NULL, status TEXT NOT NULL"
            " CHECK(status IN ('running','succeeded','failed','skipped')), started_at TEXT,"
            " finished_at TEXT, duration_ms REAL, output TEXT, error TEXT, metrics TEXT,"
            " UNIQUE(execution_id, step_id, attempt));"
            /* and version 2's outbox, which migration 4 converts */
            "CREATE TABLE subscriptions( id TEXT PRIMARY KEY, url TEXT NOT NULL,"
            " events TEXT NOT NULL, token TEXT, secret TEXT, headers TEXT, timeout_ms INTEGER,"
            " max_attempts INTEGER, backoff_base_ms INTEGER, backoff_cap_ms INTEGER,"
            " enabled INTEGER NOT NULL DEFAULT 1, disabled_reason TEXT,"
            " origin TEXT NOT NULL DEFAULT 'api', created_at TEXT NOT NULL,"
            " updated_at TEXT NOT NULL);"
            "CREATE TABLE deliveries( id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " subscription_id TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,"
            " event TEXT NOT NULL, job_id TEXT NOT NULL, message_id TEXT NOT NULL,"
            " body TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL"
            " DEFAULT 'pending' CHECK(status IN ('pending','delivered','failed','dead')),"
            " next_attempt_at TEXT NOT NULL, last_status INTEGER, last_error TEXT,"
            " created_at TEXT NOT NULL, updated_at TEXT NOT NULL);"
            /* three executions, inserted out of their time order; one replay */
            "INSERT INTO workflow_executions VALUES"
            " ('x-b', 'wf', '1', 't', 'ev-2', 'succeeded', '2026-11-02T00:00:00.000Z',"
            "  NULL, NULL, NULL, NULL),"
            " ('x-a', 'wf', '1', 't', 'ev-1', 'failed', '2026-11-01T00:00:00.000Z',"
            "  NULL, NULL, 'boom', NULL),"
            " ('x-r', 'wf', '1', 't', 'ev-1', 'running', '2026-11-03T00:00:00.000Z',"
            "  NULL, NULL, NULL, 'x-a');"
            "INSERT INTO step_runs(execution_id, step_id, plugin, attempt, status, output) VALUES"
            " ('x-a', 's', 'log', 1, 'failed', NULL), ('x-b', 's', 'log', 1, 'succeeded', '{}'),"
            " ('x-r', 's', 'log', 1, 'running', NULL);",
            NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);

    store *s = open_at(old);
    db = raw_open(old);
    assert_int_equal(raw_int(db, "SELECT MAX(version) FROM schema_migrations"), STORE_SCHEMA_VERSION);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM step_runs"), 3);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM pragma_foreign_key_check"), 0);
    char *order = raw_text(db, "SELECT group_concat(id) FROM (SELECT id FROM "
                               "workflow_executions ORDER BY seq)");
    assert_string_equal(order, "x-a,x-b,x-r"); /* by created_at */
    free(order);
    sqlite3_close(db);

    cJSON *x = store_execution_get(s, "x-a");
    assert_string_equal(str_of(x, "error"), "boom");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(x, "steps")), 1);
    cJSON_Delete(x);
    cJSON *list = store_executions_list(s, &(store_filter){.limit = 10}, NULL);
    assert_int_equal(cJSON_GetArraySize(list), 3);
    assert_string_equal(str_of(cJSON_GetArrayItem(list, 0), "id"), "x-r"); /* newest first */
    cJSON_Delete(list);
    /* one first run per (trigger, event), one replay per execution */
    store_execution again = {.workflow_id = "wf", .trigger_id = "t", .event_id = "ev-2"};
    assert_int_equal(store_execution_create(s, &again), EVH_E_DUPLICATE);
    assert_string_equal(again.id, "x-b");
    store_execution replay = {
        .workflow_id = "wf", .trigger_id = "t", .event_id = "ev-1", .replay_of = "x-a"};
    assert_int_equal(store_execution_create(s, &replay), EVH_E_DUPLICATE);
    assert_string_equal(replay.id, "x-r");
    /* deleting an execution still takes its step runs (the cascade holds) */
    db = raw_open(old);
    raw_run(db, "PRAGMA foreign_keys=ON", (const char *)NULL);
    raw_run(db, "DELETE FROM workflow_executions WHERE id = 'x-b'", (const char *)NULL);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM step_runs"), 2);
    sqlite3_close(db);
    store_close(s);
    free(old);
}

#define BATCH_N 10000

static void test_batch_insert_and_pending(void **state)
{
    fixture *f = *state;
    evh_event **evs = calloc(BATCH_N, sizeof *evs);
    for (size_t i = 0; i < BATCH_N; i++) {
        char data[64];
        snprintf(data, sizeof data, "{\"i\":%zu}", i);
        evs[i] = ev_make("bulk", "tick", data);
    }
    free(evs[1]->user_id);
    evs[1]->user_id = strdup("u-1");
    evs[1]->additional_json = strdup("{\"k\":\"v\"}");
    evs[1]->chain_depth = 3;
    evs[1]->idempotency_key = strdup("key-1");
    insert_all(f->s, evs, BATCH_N);
    for (size_t i = 1; i < BATCH_N; i++)
        assert_true(evs[i]->seq > evs[i - 1]->seq);

    int64_t after = 0;
    size_t total = 0;
    for (;;) {
        evh_event **got = NULL;
        size_t n = 0;
        int64_t last = -1;
        assert_int_equal(store_events_pending(f->s, after, 3000, &got, &n, &last), EVH_OK);
        if (n == 0) {
            assert_null(got);
            assert_int_equal(last, after);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            const evh_event *want = evs[total + i];
            assert_string_equal(got[i]->id, want->id);
            assert_int_equal(got[i]->seq, want->seq);
            assert_string_equal(got[i]->data_json, want->data_json);
            assert_int_equal(got[i]->data_len, want->data_len);
            assert_string_equal(got[i]->timestamp, want->timestamp);
            assert_int_equal(got[i]->timestamp_us, want->timestamp_us);
            assert_string_equal(got[i]->source, "bulk");
        }
        if (total == 0) {
            assert_string_equal(got[1]->user_id, "u-1");
            assert_string_equal(got[1]->additional_json, "{\"k\":\"v\"}");
            assert_int_equal(got[1]->chain_depth, 3);
            assert_string_equal(got[1]->idempotency_key, "key-1");
            assert_null(got[0]->user_id);
            assert_null(got[0]->additional_json);
        }
        assert_int_equal(last, got[n - 1]->seq);
        total += n;
        after = last;
        free_all(got, n);
        free(got);
    }
    assert_int_equal(total, BATCH_N);
    free_all(evs, BATCH_N);
    free(evs);
}

static void test_idempotency_key(void **state)
{
    fixture *f = *state;
    evh_event *a = ev_make("api", "order", "{}");
    evh_event *b = ev_make("api", "order", "{}");
    a->idempotency_key = strdup("k-42");
    b->idempotency_key = strdup("k-42");
    insert_all(f->s, &a, 1);
    insert_all(f->s, &b, 1);
    assert_true(a->seq > 0);
    assert_int_equal(b->seq, 0); /* not stored again */
    char id[EVH_UUID_LEN + 1];
    assert_int_equal(store_event_find_by_key(f->s, "k-42", id), EVH_OK);
    assert_string_equal(id, a->id);
    assert_int_equal(store_event_find_by_key(f->s, "nope", id), EVH_E_NOT_FOUND);
    cJSON *gone = store_event_get(f->s, b->id);
    assert_null(gone);
    event_free(a);
    event_free(b);
}

static void test_status_updates(void **state)
{
    fixture *f = *state;
    evh_event *evs[5];
    for (int i = 0; i < 5; i++)
        evs[i] = ev_make("s", "t", "{}");
    insert_all(f->s, evs, 5);
    assert_int_equal(store_event_set_status(f->s, evs[0]->id, "dispatched"), EVH_OK);
    const char *ids[] = {evs[1]->id, "no-such-event", evs[2]->id};
    assert_int_equal(store_events_set_status(f->s, ids, 3, "unmatched"), EVH_OK);
    assert_int_equal(store_event_set_status(f->s, evs[3]->id, "bogus"), EVH_E_INVALID);
    assert_int_equal(store_events_set_status(f->s, ids, 3, "bogus"), EVH_E_INVALID);
    assert_int_equal(store_event_set_status(f->s, "no-such-event", "dispatched"), EVH_E_NOT_FOUND);
    assert_non_null(strstr(store_errmsg(f->s), "no-such-event"));

    evh_event **got = NULL;
    size_t n = 0;
    assert_int_equal(store_events_pending(f->s, 0, 100, &got, &n, NULL), EVH_OK);
    assert_int_equal(n, 2);
    assert_string_equal(got[0]->id, evs[3]->id);
    assert_string_equal(got[1]->id, evs[4]->id);
    free_all(got, n);
    free(got);

    cJSON *e = store_event_get(f->s, evs[2]->id);
    assert_string_equal(str_of(e, "status"), "unmatched");
    cJSON_Delete(e);
    free_all(evs, 5);
}

static void test_event_get_envelope(void **state)
{
    fixture *f = *state;
    evh_event *ev = event_new("my-timer", "timer_fired", "{\"count\":3}", 11, NULL, NULL);
    evh_event *ev2 = event_new("my-timer", "timer_fired", "{}", 2, "alice", "{\"ip\":\"::1\"}");
    evh_event *both[] = {ev, ev2};
    insert_all(f->s, both, 2);

    cJSON *e = store_event_get(f->s, ev->id);
    assert_non_null(e);
    assert_string_equal(str_of(e, "id"), ev->id);
    assert_string_equal(str_of(e, "event_type"), "timer_fired");
    assert_string_equal(str_of(e, "source"), "my-timer");
    assert_string_equal(str_of(e, "status"), "pending");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(e, "data");
    assert_true(cJSON_IsObject(data));
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(data, "count")->valueint, 3);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(e, "metadata");
    assert_string_equal(str_of(meta, "source"), "my-timer");
    assert_string_equal(str_of(meta, "timestamp"), ev->timestamp);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(meta, "user_id")));
    const cJSON *extra = cJSON_GetObjectItemCaseSensitive(meta, "additional_data");
    assert_true(cJSON_IsObject(extra));
    assert_null(extra->child);

    /* the stored envelope is event_envelope_json's, plus status */
    char *text = event_envelope_json(ev);
    cJSON *want = cJSON_Parse(text);
    cJSON_DeleteItemFromObject(e, "status");
    assert_true(cJSON_Compare(e, want, 1));
    cJSON_Delete(want);
    free(text);
    cJSON_Delete(e);

    e = store_event_get(f->s, ev2->id);
    meta = cJSON_GetObjectItemCaseSensitive(e, "metadata");
    assert_string_equal(str_of(meta, "user_id"), "alice");
    assert_string_equal(str_of(cJSON_GetObjectItemCaseSensitive(meta, "additional_data"), "ip"),
                        "::1");
    cJSON_Delete(e);

    assert_null(store_event_get(f->s, "missing"));
    event_free(ev);
    event_free(ev2);
}

static void test_execution_duplicate_and_replay(void **state)
{
    fixture *f = *state;
    char *first = new_execution(f->s, "wf", "trig", "ev-1");

    store_execution again = {.workflow_id = "wf", .trigger_id = "trig", .event_id = "ev-1"};
    assert_int_equal(store_execution_create(f->s, &again), EVH_E_DUPLICATE);
    assert_string_equal(again.id, first);

    store_execution r1 = {
        .workflow_id = "wf", .trigger_id = "trig", .event_id = "ev-1", .replay_of = first};
    assert_int_equal(store_execution_create(f->s, &r1), EVH_OK);
    assert_string_not_equal(r1.id, first);
    store_execution r2 = {
        .workflow_id = "wf", .trigger_id = "trig", .event_id = "ev-1", .replay_of = first};
    assert_int_equal(store_execution_create(f->s, &r2), EVH_E_DUPLICATE);
    assert_string_equal(r2.id, r1.id);
    store_execution r3 = {.workflow_id = "wf",
                          .trigger_id = "trig",
                          .event_id = "ev-1",
                          .replay_of = r1.id}; /* a replay of the replay */
    assert_int_equal(store_execution_create(f->s, &r3), EVH_OK);

    /* another trigger on the same event is another execution */
    char *other = new_execution(f->s, "wf", "trig-2", "ev-1");
    assert_string_not_equal(other, first);

    /* a caller-chosen id that is taken */
    store_execution taken = {.workflow_id = "wf", .trigger_id = "trig-3", .event_id = "ev-9"};
    snprintf(taken.id, sizeof taken.id, "%s", first);
    assert_int_equal(store_execution_create(f->s, &taken), EVH_E_DUPLICATE);
    store_execution bad = {.workflow_id = "wf", .trigger_id = NULL, .event_id = "ev-1"};
    assert_int_equal(store_execution_create(f->s, &bad), EVH_E_INVALID);
    free(first);
    free(other);
}

static void test_execution_status_timestamps(void **state)
{
    fixture *f = *state;
    char *id = new_execution(f->s, "wf", "trig", "ev-1");
    usleep(2000); /* oldest first: by created_at, which has milliseconds */
    char *id2 = new_execution(f->s, "wf", "trig", "ev-2");
    cJSON *x = store_execution_get(f->s, id);
    assert_string_equal(str_of(x, "status"), "queued");
    assert_string_equal(str_of(x, "workflow_version"), "1");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(x, "started_at")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(x, "finished_at")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(x, "replay_of")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(x, "steps")), 0);
    cJSON_Delete(x);

    assert_int_equal(store_execution_set_status(f->s, id, "running", NULL), EVH_OK);
    x = store_execution_get(f->s, id);
    char *started = strdup(str_of(x, "started_at"));
    assert_int_equal(strlen(started), EVH_TIMESTAMP_LEN);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(x, "finished_at")));
    cJSON_Delete(x);

    cJSON *open = NULL;
    assert_int_equal(store_executions_unfinished(f->s, &open), EVH_OK);
    assert_int_equal(cJSON_GetArraySize(open), 2);
    assert_string_equal(str_of(cJSON_GetArrayItem(open, 0), "id"), id);
    assert_string_equal(str_of(cJSON_GetArrayItem(open, 0), "status"), "running");
    assert_string_equal(str_of(cJSON_GetArrayItem(open, 1), "event_id"), "ev-2");
    cJSON_Delete(open);

    usleep(2000);
    assert_int_equal(store_execution_set_status(f->s, id, "failed", "step 'a' failed"), EVH_OK);
    x = store_execution_get(f->s, id);
    assert_string_equal(str_of(x, "status"), "failed");
    assert_string_equal(str_of(x, "started_at"), started);
    assert_string_equal(str_of(x, "error"), "step 'a' failed");
    assert_true(strcmp(str_of(x, "finished_at"), started) > 0);
    cJSON_Delete(x);

    assert_int_equal(store_execution_set_status(f->s, id2, "succeeded", NULL), EVH_OK);
    assert_int_equal(store_executions_unfinished(f->s, &open), EVH_OK);
    assert_int_equal(cJSON_GetArraySize(open), 0);
    cJSON_Delete(open);

    assert_int_equal(store_execution_set_status(f->s, "nope", "running", NULL), EVH_E_NOT_FOUND);
    assert_int_equal(store_execution_set_status(f->s, id, "done", NULL), EVH_E_INVALID);
    assert_null(store_execution_get(f->s, "nope"));
    free(started);
    free(id);
    free(id2);
}

static void put_step(store *s, const char *x, const char *step, int attempt, const char *status,
                     const char *output, int64_t started, int64_t finished)
{
    store_step_run r = {.execution_id = x,
                        .step_id = step,
                        .plugin = "log",
                        .attempt = attempt,
                        .status = status,
                        .output_json = output,
                        .error = !strcmp(status, "failed") ? "boom" : NULL,
                        .metrics_json = finished ? "{\"bytes\":10}" : NULL,
                        .started_us = started,
                        .finished_us = finished};
    assert_int_equal(store_step_run_put(s, &r), EVH_OK);
}

static void test_step_runs(void **state)
{
    fixture *f = *state;
    char *x = new_execution(f->s, "wf", "trig", "ev-1");
    int64_t t0 = now_us();
    put_step(f->s, x, "a", 1, "running", NULL, t0, 0);
    put_step(f->s, x, "a", 1, "failed", NULL, t0, t0 + 1500); /* replaces, keeps its place */
    put_step(f->s, x, "a", 2, "succeeded", "{\"x\":1}", t0 + 2000, t0 + 4000);
    put_step(f->s, x, "b", 1, "succeeded", "{\"y\":[2]}", t0 + 5000, t0 + 6000);
    put_step(f->s, x, "c", 1, "skipped", NULL, 0, 0);

    cJSON *got = store_execution_get(f->s, x);
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(got, "steps");
    assert_int_equal(cJSON_GetArraySize(steps), 4);
    const cJSON *a1 = cJSON_GetArrayItem(steps, 0);
    assert_string_equal(str_of(a1, "step_id"), "a");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(a1, "attempt")->valueint, 1);
    assert_string_equal(str_of(a1, "status"), "failed");
    assert_string_equal(str_of(a1, "error"), "boom");
    assert_string_equal(str_of(a1, "plugin"), "log");
    assert_true(cJSON_GetObjectItemCaseSensitive(a1, "duration_ms")->valuedouble == 1.5);
    assert_int_equal(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(a1, "metrics"), "bytes")
            ->valueint,
        10);
    const cJSON *a2 = cJSON_GetArrayItem(steps, 1);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(a2, "attempt")->valueint, 2);
    assert_true(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(a2, "output")));
    const cJSON *c1 = cJSON_GetArrayItem(steps, 3);
    assert_string_equal(str_of(c1, "status"), "skipped");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(c1, "started_at")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(c1, "duration_ms")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(c1, "output")));
    cJSON_Delete(got);

    cJSON *outs = store_step_outputs(f->s, x);
    cJSON *want = cJSON_Parse("{\"a\":{\"output\":{\"x\":1}},\"b\":{\"output\":{\"y\":[2]}}}");
    assert_true(cJSON_Compare(outs, want, 1));
    cJSON_Delete(want);
    cJSON_Delete(outs);

    outs = store_step_outputs(f->s, "no-such-execution");
    assert_non_null(outs);
    assert_null(outs->child);
    cJSON_Delete(outs);

    store_step_run orphan = {.execution_id = "no-such-execution",
                             .step_id = "a",
                             .plugin = "log",
                             .attempt = 1,
                             .status = "running"};
    assert_int_equal(store_step_run_put(f->s, &orphan), EVH_E_NOT_FOUND);
    orphan.execution_id = x;
    orphan.status = "weird";
    assert_int_equal(store_step_run_put(f->s, &orphan), EVH_E_INVALID);
    free(x);
}

/* The recorder's batch writes (many rows per statement, store.c "multi-row
 * writes"): every row lands as the one-row calls would write it, and a row
 * that cannot go in (a duplicate execution, a step run of no execution)
 * costs only itself. */
#define RECORDS_N 70 /* two full statements and a remainder */
static void test_batch_records(void **state)
{
    fixture *f = *state;
    evh_event *evs[RECORDS_N];
    store_execution xs[RECORDS_N];
    store_execution *xp[RECORDS_N];
    store_step_run runs[RECORDS_N];
    const store_step_run *rp[RECORDS_N];
    const char *ids[RECORDS_N];
    int64_t t0 = now_us();
    for (int i = 0; i < RECORDS_N; i++) {
        evs[i] = ev_make("bulk", "tick", "{}");
        ids[i] = evs[i]->id;
        xs[i] = (store_execution){.workflow_id = i % 2 ? "odd" : "even",
                                  .workflow_version = "v1",
                                  .trigger_id = "t",
                                  .event_id = evs[i]->id,
                                  .status = "succeeded",
                                  .at_us = t0 + i,
                                  .started_us = t0 + i + 10,
                                  .finished_us = t0 + i + 20};
        assert_int_equal(uuid_for_execution(evs[i]->id, "t", xs[i].id), EVH_OK);
        xp[i] = &xs[i];
    }
    insert_all(f->s, evs, RECORDS_N);
    /* execution 5 exists already: its statement falls back to row by row */
    store_execution dup = xs[5];
    dup.status = "running";
    dup.finished_us = 0;
    assert_int_equal(store_execution_create(f->s, &dup), EVH_OK);
    assert_int_equal(store_executions_insert(f->s, xp, RECORDS_N), EVH_E_DUPLICATE);
    for (int i = 0; i < RECORDS_N; i++) {
        cJSON *x = store_execution_get(f->s, xs[i].id);
        assert_non_null(x);
        assert_string_equal(str_of(x, "workflow_id"), i % 2 ? "odd" : "even");
        assert_string_equal(str_of(x, "status"), i == 5 ? "running" : "succeeded");
        assert_string_equal(str_of(x, "event_id"), evs[i]->id);
        assert_non_null(str_of(x, "started_at"));
        assert_true(i == 5 || str_of(x, "finished_at") != NULL);
        cJSON_Delete(x);
    }
    for (int i = 0; i < RECORDS_N; i++) {
        runs[i] = (store_step_run){.execution_id = i == 40 ? "no-such-execution" : xs[i].id,
                                   .step_id = "only",
                                   .plugin = "log",
                                   .attempt = 1,
                                   .status = "succeeded",
                                   .output_json = "{\"n\":1}",
                                   .started_us = t0,
                                   .finished_us = t0 + 2000};
        rp[i] = &runs[i];
    }
    assert_int_equal(store_step_runs_put(f->s, rp, RECORDS_N), EVH_E_NOT_FOUND);
    /* and again, as a replayed batch: each run replaced, not doubled */
    runs[40].execution_id = xs[40].id;
    assert_int_equal(store_step_runs_put(f->s, rp, RECORDS_N), EVH_OK);
    for (int i = 0; i < RECORDS_N; i++) {
        cJSON *x = store_execution_get(f->s, xs[i].id);
        const cJSON *steps = cJSON_GetObjectItemCaseSensitive(x, "steps");
        assert_int_equal(cJSON_GetArraySize(steps), 1);
        const cJSON *r = cJSON_GetArrayItem(steps, 0);
        assert_string_equal(str_of(r, "status"), "succeeded");
        assert_true(cJSON_GetObjectItemCaseSensitive(r, "duration_ms")->valuedouble == 2.0);
        cJSON_Delete(x);
    }
    assert_int_equal(store_events_set_status(f->s, ids, RECORDS_N, "dispatched"), EVH_OK);
    for (int i = 0; i < RECORDS_N; i++) {
        cJSON *e = store_event_get(f->s, evs[i]->id);
        assert_string_equal(str_of(e, "status"), "dispatched");
        cJSON_Delete(e);
    }
    free_all(evs, RECORDS_N);
}

static void test_triggers_crud(void **state)
{
    fixture *f = *state;
    const char *cond = "{\"all\":[{\"field\":\"data.count\",\"op\":\"gt\",\"value\":2}]}";
    assert_int_equal(
        store_trigger_put(f->s, "t1", "First", "my-timer", "timer_fired", "wf-1", cond, 1, NULL),
        EVH_OK);
    assert_int_equal(store_trigger_put(f->s, "t2", "Second", "web", "hit", "wf-2", NULL, 0,
                                       "workflows/triggers/web.yaml"),
                     EVH_OK);
    cJSON *t = store_trigger_get(f->s, "t1");
    assert_string_equal(str_of(t, "name"), "First");
    assert_string_equal(str_of(t, "origin"), "api");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "enabled")));
    cJSON *want = cJSON_Parse(cond);
    assert_true(cJSON_Compare(cJSON_GetObjectItemCaseSensitive(t, "conditions"), want, 1));
    cJSON_Delete(want);
    char *created = strdup(str_of(t, "created_at"));
    cJSON_Delete(t);

    usleep(2000);
    assert_int_equal(
        store_trigger_put(f->s, "t1", "Renamed", "my-timer", "timer_fired", "wf-1", NULL, 0, NULL),
        EVH_OK);
    t = store_trigger_get(f->s, "t1");
    assert_string_equal(str_of(t, "name"), "Renamed");
    assert_string_equal(str_of(t, "created_at"), created);
    assert_true(strcmp(str_of(t, "updated_at"), created) > 0);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(t, "enabled")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(t, "conditions")));
    cJSON_Delete(t);

    cJSON *all = store_triggers_list(f->s);
    assert_int_equal(cJSON_GetArraySize(all), 2);
    const cJSON *t2 = cJSON_GetArrayItem(all, 1);
    assert_string_equal(str_of(t2, "id"), "t2");
    assert_string_equal(str_of(t2, "origin"), "workflows/triggers/web.yaml");
    assert_string_equal(str_of(t2, "workflow_id"), "wf-2");
    assert_string_equal(str_of(t2, "event_type"), "hit");
    assert_string_equal(str_of(t2, "source"), "web");
    cJSON_Delete(all);

    assert_int_equal(store_trigger_put(f->s, "t3", "Bad", "s", "e", "w", "{nope", 1, NULL),
                     EVH_E_JSON);
    assert_int_equal(store_trigger_delete(f->s, "t1"), EVH_OK);
    assert_int_equal(store_trigger_delete(f->s, "t1"), EVH_E_NOT_FOUND);
    assert_null(store_trigger_get(f->s, "t1"));
    all = store_triggers_list(f->s);
    assert_int_equal(cJSON_GetArraySize(all), 1);
    cJSON_Delete(all);
    free(created);
}

/* ---- listing ------------------------------------------------------------------ */

static size_t list_count(store *s, int executions, const store_filter *f)
{
    char *next = NULL;
    cJSON *a = executions ? store_executions_list(s, f, &next) : store_events_list(s, f, &next);
    assert_non_null(a);
    size_t n = (size_t)cJSON_GetArraySize(a);
    cJSON_Delete(a);
    free(next);
    return n;
}

/* Walk every page with `limit`, inserting `add` new rows between pages via
 * add_rows; every row in `want` (n ids) must be seen exactly once. */
static void walk_pages(store *s, int executions, size_t limit, char **want, size_t n,
                       void (*add_rows)(store *, int))
{
    int *seen = calloc(n, sizeof *seen);
    store_filter f = {.limit = limit};
    char *cursor = NULL;
    size_t prev = n;
    int pages = 0;
    do {
        f.cursor = cursor;
        char *next = NULL;
        cJSON *page =
            executions ? store_executions_list(s, &f, &next) : store_events_list(s, &f, &next);
        assert_non_null(page);
        assert_true((size_t)cJSON_GetArraySize(page) <= limit);
        const cJSON *row;
        cJSON_ArrayForEach(row, page)
        {
            const char *id = str_of(row, "id");
            for (size_t i = 0; i < n; i++) {
                if (!strcmp(want[i], id)) {
                    seen[i]++;
                    /* newest first: insertion order descending (want is in
                     * insertion order; rows added between pages are newer
                     * than the cursor and never show up after it) */
                    assert_true(i < prev);
                    prev = i;
                }
            }
        }
        cJSON_Delete(page);
        free(cursor);
        cursor = next;
        add_rows(s, pages++);
    } while (cursor);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(seen[i], 1);
    free(seen);
}

static void add_events(store *s, int page)
{
    evh_event *evs[3];
    for (int i = 0; i < 3; i++)
        evs[i] = ev_make("late", "new", "{}");
    insert_all(s, evs, 3);
    free_all(evs, 3);
    (void)page;
}

static void add_executions(store *s, int page)
{
    for (int i = 0; i < 2; i++) {
        char ev[32];
        snprintf(ev, sizeof ev, "late-%d-%d", page, i);
        free(new_execution(s, "wf-late", "t-late", ev));
    }
}

#define LIST_N 120

static void test_events_list_filters_and_pages(void **state)
{
    fixture *f = *state;
    evh_event *evs[LIST_N];
    char *ids[LIST_N];
    int64_t base = now_us() - 3600LL * 1000000; /* an hour ago, a second apart */
    for (int i = 0; i < LIST_N; i++) {
        evs[i] = ev_make(i % 2 ? "web" : "timer", i % 3 ? "tick" : "tock", "{}");
        ev_set_time(evs[i], base + i * 1000000LL);
        ids[i] = evs[i]->id;
    }
    insert_all(f->s, evs, LIST_N);
    const char *some[] = {evs[0]->id, evs[1]->id, evs[2]->id};
    assert_int_equal(store_events_set_status(f->s, some, 3, "dispatched"), EVH_OK);
    free(new_execution(f->s, "wf-a", "t-a", evs[5]->id));
    free(new_execution(f->s, "wf-a", "t-b", evs[6]->id));
    free(new_execution(f->s, "wf-b", "t-b", evs[7]->id));

    assert_int_equal(list_count(f->s, 0, &(store_filter){.limit = 500}), LIST_N);
    assert_int_equal(list_count(f->s, 0, NULL), STORE_LIST_DEFAULT_LIMIT);
    assert_int_equal(list_count(f->s, 0, &(store_filter){.source = "web", .limit = 500}), 60);
    assert_int_equal(
        list_count(f->s, 0, &(store_filter){.source = "web", .event_type = "tock", .limit = 500}),
        20);
    assert_int_equal(list_count(f->s, 0, &(store_filter){.status = "dispatched"}), 3);
    assert_int_equal(list_count(f->s, 0, &(store_filter){.workflow_id = "wf-a"}), 2);
    assert_int_equal(list_count(f->s, 0, &(store_filter){.trigger_id = "t-b"}), 2);
    assert_int_equal(
        list_count(f->s, 0, &(store_filter){.workflow_id = "wf-a", .trigger_id = "t-b"}), 1);

    /* since inclusive, until exclusive; any offset */
    char since[EVH_TIMESTAMP_LEN + 1], until[64];
    fmt_time(base + 10 * 1000000LL, since);
    time_t u = (time_t)((base + 20 * 1000000LL) / 1000000 + 3600); /* as +01:00 */
    struct tm tm;
    gmtime_r(&u, &tm);
    strftime(until, sizeof until, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(until + strlen(until), sizeof until - strlen(until), ".%03d+01:00",
             (int)(base / 1000 % 1000));
    assert_int_equal(list_count(f->s, 0, &(store_filter){.since = since, .until = until}), 10);

    errno = 0;
    char *next = (char *)1;
    assert_null(store_events_list(f->s, &(store_filter){.since = "yesterday"}, &next));
    assert_int_equal(errno, EINVAL);
    assert_null(next);
    assert_non_null(strstr(store_errmsg(f->s), "since"));
    errno = 0;
    assert_null(store_events_list(f->s, &(store_filter){.cursor = "garbage"}, NULL));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(store_events_list(f->s, &(store_filter){.cursor = "x12"}, NULL));
    assert_int_equal(errno, EINVAL);
    errno = 0; /* an executions cursor from before schema 3 */
    assert_null(store_executions_list(
        f->s, &(store_filter){.cursor = "x2026-11-23T10:30:00.123Z~id"}, NULL));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(store_events_list(f->s, &(store_filter){.status = "queued"}, NULL));
    assert_int_equal(errno, EINVAL);

    /* pages newest first, stable while events keep arriving */
    cJSON *first = store_events_list(f->s, &(store_filter){.limit = 1}, &next);
    assert_string_equal(str_of(cJSON_GetArrayItem(first, 0), "id"), evs[LIST_N - 1]->id);
    cJSON_Delete(first);
    free(next);
    walk_pages(f->s, 0, 7, ids, LIST_N, add_events);
    free_all(evs, LIST_N);
}

static void test_executions_list_filters_and_pages(void **state)
{
    fixture *f = *state;
    evh_event *evs[LIST_N];
    char *ids[LIST_N];
    for (int i = 0; i < LIST_N; i++)
        evs[i] = ev_make(i % 2 ? "web" : "timer", "tick", "{}");
    insert_all(f->s, evs, LIST_N);
    for (int i = 0; i < LIST_N; i++) {
        ids[i] =
            new_execution(f->s, i % 4 ? "wf-1" : "wf-2", i % 2 ? "t-web" : "t-timer", evs[i]->id);
        if (i % 5 == 0)
            assert_int_equal(store_execution_set_status(f->s, ids[i], "running", NULL), EVH_OK);
    }
    assert_int_equal(list_count(f->s, 1, &(store_filter){.limit = 500}), LIST_N);
    assert_int_equal(list_count(f->s, 1, &(store_filter){.workflow_id = "wf-2"}), 30);
    assert_int_equal(list_count(f->s, 1, &(store_filter){.trigger_id = "t-web", .limit = 500}), 60);
    assert_int_equal(list_count(f->s, 1, &(store_filter){.status = "running"}), 24);
    assert_int_equal(list_count(f->s, 1, &(store_filter){.source = "timer", .limit = 100}), 60);
    assert_int_equal(list_count(f->s, 1, &(store_filter){.source = "timer", .workflow_id = "wf-2"}),
                     30);
    assert_int_equal(list_count(f->s, 1, &(store_filter){.since = "2999-01-01T00:00:00Z"}), 0);
    assert_int_equal(
        list_count(f->s, 1, &(store_filter){.until = "2999-01-01T00:00:00Z", .limit = 500}),
        LIST_N);
    errno = 0;
    assert_null(store_executions_list(f->s, &(store_filter){.cursor = "e12"}, NULL));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(store_executions_list(f->s, &(store_filter){.status = "pending"}, NULL));
    assert_int_equal(errno, EINVAL);

    const cJSON *row;
    cJSON *page = store_executions_list(f->s, &(store_filter){.limit = 2}, NULL);
    cJSON_ArrayForEach(row, page)
    {
        assert_non_null(str_of(row, "trigger_id"));
        assert_non_null(str_of(row, "created_at"));
        assert_null(cJSON_GetObjectItemCaseSensitive(row, "steps"));
    }
    cJSON_Delete(page);

    walk_pages(f->s, 1, 9, ids, LIST_N, add_executions);
    for (int i = 0; i < LIST_N; i++)
        free(ids[i]);
    free_all(evs, LIST_N);
}

/* ---- maintenance ----------------------------------------------------------------- */

#define OLD_N 3000

static void set_created(sqlite3 *db, const char *id, int64_t us)
{
    char t[EVH_TIMESTAMP_LEN + 1];
    fmt_time(us, t);
    raw_run(db, "UPDATE workflow_executions SET created_at = ? WHERE id = ?", t, id,
            (const char *)NULL);
}

static void test_retention_shrinks_file(void **state)
{
    fixture *f = *state;
    int64_t now = now_us(), day = 86400LL * 1000000;
    char pad[1500], big[1600];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    snprintf(big, sizeof big, "{\"pad\":\"%s\"}", pad);
    evh_event **evs = calloc(OLD_N + 1, sizeof *evs);
    const char **ids = calloc(OLD_N, sizeof *ids);
    for (int i = 0; i <= OLD_N; i++) {
        evs[i] = ev_make("old", "thing", big);
        ev_set_time(evs[i], now - 2 * day);
        if (i < OLD_N)
            ids[i] = evs[i]->id;
    }
    insert_all(f->s, evs, OLD_N + 1);
    assert_int_equal(store_events_set_status(f->s, ids, OLD_N, "dispatched"), EVH_OK);

    /* 12 executions of events 0..11: 0-2 three days old, 3-11 a second apart */
    sqlite3 *db = raw_open(f->path);
    char *x[12];
    for (int i = 0; i < 12; i++) {
        x[i] = new_execution(f->s, "wf", "trig", evs[i]->id);
        assert_int_equal(
            store_execution_set_status(f->s, x[i], i == 11 ? "running" : "succeeded", NULL),
            EVH_OK);
        set_created(db, x[i], i < 3 ? now - 3 * day : now - 3600LL * 1000000 + i * 1000000LL);
    }
    put_step(f->s, x[0], "a", 1, "succeeded", "{}", now, now + 10);
    put_step(f->s, x[9], "a", 1, "succeeded", "{}", now, now + 10);

    int64_t pages_before = raw_int(db, "PRAGMA page_count");
    size_t deleted = 0;
    assert_int_equal(store_retention(f->s, 86400, 5, &deleted), EVH_OK);
    /* executions 0-2 by age, 3-6 beyond the newest five; all events but the
     * pending one and those of executions 7-11 */
    assert_int_equal(deleted, 7 + (OLD_N - 5));
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM workflow_executions"), 5);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM events"), 6);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM step_runs"), 1); /* x0's cascaded */
    int64_t pages_after = raw_int(db, "PRAGMA page_count");
    assert_true(pages_after * 4 < pages_before);
    assert_true(raw_int(db, "PRAGMA freelist_count") < 8);
    cJSON *kept = store_execution_get(f->s, x[11]);
    assert_non_null(kept); /* unfinished: never deleted */
    cJSON_Delete(kept);
    assert_non_null(kept = store_event_get(f->s, evs[OLD_N]->id)); /* pending */
    cJSON_Delete(kept);

    /* no limits: nothing goes */
    assert_int_equal(store_retention(f->s, 0, 0, &deleted), EVH_OK);
    assert_int_equal(deleted, 0);
    sqlite3_close(db);

    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_true(sb.st_size < (off_t)(pages_before * 4096 / 4));
    for (int i = 0; i < 12; i++)
        free(x[i]);
    free(ids);
    free_all(evs, OLD_N + 1);
    free(evs);
}

static void test_integrity_check(void **state)
{
    fixture *f = *state;
    evh_event *ev = ev_make("s", "t", "{}");
    insert_all(f->s, &ev, 1);
    char *result = NULL;
    assert_int_equal(store_integrity_check(f->s, &result), EVH_OK);
    assert_string_equal(result, "ok");
    free(result);
    event_free(ev);
}

/* ---- two connections, two threads ------------------------------------------------ */

typedef struct worker_arg {
    const char *path;
    int failures;
} worker_arg;

static void *insert_worker(void *p)
{
    worker_arg *a = p;
    store_options o = {.path = a->path};
    store *s = NULL;
    if (store_open(&o, &s, NULL) != EVH_OK) {
        a->failures++;
        return NULL;
    }
    for (int b = 0; b < 100; b++) {
        evh_event *evs[50];
        for (int i = 0; i < 50; i++)
            evs[i] = event_new("thread", "tick", "{}", 2, NULL, NULL);
        if (store_events_insert(s, evs, 50) != EVH_OK) {
            fprintf(stderr, "insert: %s\n", store_errmsg(s));
            a->failures++;
        }
        for (int i = 0; i < 50; i++)
            event_free(evs[i]);
    }
    store_close(s);
    return NULL;
}

static void *execution_worker(void *p)
{
    worker_arg *a = p;
    store_options o = {.path = a->path};
    store *s = NULL;
    if (store_open(&o, &s, NULL) != EVH_OK) {
        a->failures++;
        return NULL;
    }
    for (int i = 0; i < 300; i++) {
        char ev[32];
        snprintf(ev, sizeof ev, "ev-%d", i);
        store_execution x = {.workflow_id = "wf", .trigger_id = "t", .event_id = ev};
        store_step_run r = {.execution_id = x.id,
                            .step_id = "a",
                            .plugin = "log",
                            .attempt = 1,
                            .status = "succeeded",
                            .output_json = "{}",
                            .started_us = 1,
                            .finished_us = 2};
        int rc = store_execution_create(s, &x);
        if (rc == EVH_OK)
            rc = store_execution_set_status(s, x.id, "running", NULL);
        if (rc == EVH_OK)
            rc = store_step_run_put(s, &r);
        if (rc == EVH_OK)
            rc = store_execution_set_status(s, x.id, "succeeded", NULL);
        if (rc != EVH_OK) {
            fprintf(stderr, "execution: %s\n", store_errmsg(s));
            a->failures++;
        }
    }
    store_close(s);
    return NULL;
}

static void test_two_threads(void **state)
{
    fixture *f = *state;
    worker_arg a = {.path = f->path}, b = {.path = f->path};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, insert_worker, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, execution_worker, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.failures, 0);
    assert_int_equal(b.failures, 0);
    sqlite3 *db = raw_open(f->path);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM events"), 5000);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM workflow_executions "
                                 "WHERE status = 'succeeded'"),
                     300);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM step_runs"), 300);
    sqlite3_close(db);
}

/* The CLI's reports open the database read-only: they create, configure
 * and migrate nothing, so they cannot disturb a daemon that is setting the
 * file up, and they say clearly when there is nothing to read yet. */
static void test_read_only_open(void **state)
{
    fixture *f = *state;
    store *r = NULL;
    char *err = NULL;
    /* a database the daemon made: readable, and what it holds is there */
    evh_event *ev = event_new("my-timer", "timer_fired", "{}", 2, NULL, NULL);
    assert_int_equal(store_events_insert(f->s, &ev, 1), EVH_OK);
    store_options ro = {.path = f->path, .read_only = 1};
    assert_int_equal(store_open(&ro, &r, &err), EVH_OK);
    cJSON *got = store_event_get(r, ev->id);
    assert_non_null(got);
    cJSON_Delete(got);
    /* and it cannot write */
    evh_event *ev2 = event_new("my-timer", "timer_fired", "{}", 2, NULL, NULL);
    assert_int_not_equal(store_events_insert(r, &ev2, 1), EVH_OK);
    event_free(ev2);
    event_free(ev);
    store_close(r);

    /* a missing file is not created */
    char *missing = tu_join(f->dir, "missing.db");
    ro.path = missing;
    assert_int_not_equal(store_open(&ro, &r, &err), EVH_OK);
    assert_null(r);
    assert_non_null(err);
    assert_int_equal(access(missing, F_OK), -1);
    free(err);
    err = NULL;

    /* an empty file (the daemon has just created it) is "not ready", not
     * set up by the reader */
    char *empty = tu_join(f->dir, "empty.db");
    assert_int_equal(tu_write_file(empty, ""), 0);
    ro.path = empty;
    assert_int_not_equal(store_open(&ro, &r, &err), EVH_OK);
    assert_non_null(err);
    assert_non_null(strstr(err, "empty.db"));
    struct stat st;
    assert_int_equal(stat(empty, &st), 0);
    assert_int_equal(st.st_size, 0); /* nothing written by the reader */
    free(err);
    free(empty);
    free(missing);
}

/* ---- the write gate: one per database file ------------------------------ */

typedef struct gate_waiter {
    store *s;
    int rc;
} gate_waiter;

static void *begin_and_end(void *arg)
{
    gate_waiter *w = arg;
    w->rc = store_batch_begin(w->s);
    if (w->rc == EVH_OK)
        w->rc = store_batch_end(w->s, EVH_OK);
    return NULL;
}

/* A transaction open on one file does not hold up a writer of another
 * file (with one gate for the process, the second begin below waited out
 * its busy timeout and failed); a second connection to the same file, even
 * by another name (a symbolic link), waits for it and goes on once it
 * ends. */
static void test_write_gate_per_file(void **state)
{
    fixture *f = *state;
    char *other_path = tu_join(f->dir, "other.db");
    char *link_path = tu_join(f->dir, "same-file.db");
    store *other = open_at(other_path);
    assert_int_equal(symlink(f->path, link_path), 0);
    store *same = open_at(link_path);
    assert_int_equal(store_batch_begin(f->s), EVH_OK);
    assert_int_equal(store_batch_begin(other), EVH_OK);
    assert_int_equal(store_batch_end(other, EVH_OK), EVH_OK);
    gate_waiter w = {.s = same, .rc = 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, begin_and_end, &w), 0);
    usleep(100000);
    assert_int_equal(w.rc, 1); /* still waiting for the gate */
    assert_int_equal(store_batch_end(f->s, EVH_OK), EVH_OK);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, EVH_OK);
    store_close(same);
    store_close(other);
    free(link_path);
    free(other_path);
}

/* ---- the outbox: many lifecycle events per statement --------------------- */

/* 71 events (statements of 32, 32, 4, 2 and 1 rows), two subscriptions
 * each, one of which is deleted before the batch is stored, and one event
 * nobody takes: every delivery id the insert returns is its own row (the
 * right subscription and webhook-id), the deleted subscription gets 0s and
 * no rows, and the event nobody takes is not stored. */
static void test_outbox_insert_many(void **state)
{
    fixture *f = *state;
    /* the outbox tables live in the outbox file: f->s stands for it here */
    store_close(f->s);
    char *outbox = store_outbox_path(f->path);
    f->s = open_outbox(outbox);
    struct stat sb; /* it holds secrets */
    assert_int_equal(stat(outbox, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    const store_subscription a = {.id = "a", .url = "http://127.0.0.1:9/a", .events_json = "\"all\"",
                                  .enabled = 1};
    const store_subscription b = {.id = "b", .url = "http://127.0.0.1:9/b", .events_json = "\"all\"",
                                  .enabled = 1};
    assert_int_equal(store_subscription_insert(f->s, &a), EVH_OK);
    assert_int_equal(store_subscription_insert(f->s, &b), EVH_OK);
    assert_int_equal(store_subscription_delete(f->s, "b"), EVH_OK);
    enum { N = 72 };
    static const char *const subs[] = {"a", "b"};
    store_outbox_message m[N];
    char msg_ids[N][32], job_ids[N][32], bodies[N][64];
    int64_t ids[N][2];
    for (int i = 0; i < N; i++) {
        snprintf(msg_ids[i], sizeof msg_ids[i], "msg_%d", i);
        snprintf(job_ids[i], sizeof job_ids[i], "job-%d", i / 4);
        snprintf(bodies[i], sizeof bodies[i], "{\"event\":\"jobStart\",\"n\":%d}", i);
        ids[i][0] = ids[i][1] = -1;
        m[i] = (store_outbox_message){.event = "jobStart",
                                      .job_id = job_ids[i],
                                      .message_id = msg_ids[i],
                                      .body = bodies[i],
                                      .body_len = strlen(bodies[i]),
                                      .subscription_ids = subs,
                                      .n_subs = i == 5 ? 0 : 2, /* nobody takes event 5 */
                                      .delivery_ids = ids[i]};
    }
    assert_int_equal(store_outbox_insert(f->s, m, N), EVH_OK);
    int64_t last = 0;
    for (int i = 0; i < N; i++) {
        if (i == 5) {
            assert_int_equal(ids[i][0], -1); /* untouched: nothing stored */
            continue;
        }
        assert_int_equal(ids[i][1], 0); /* b is gone */
        assert_true(ids[i][0] > last);  /* in the batch's order */
        last = ids[i][0];
        cJSON *d = store_delivery_get(f->s, ids[i][0]);
        assert_non_null(d);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(d, "subscription_id")), "a");
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(d, "message_id")),
                            msg_ids[i]);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(d, "job_id")), job_ids[i]);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(d, "status")), "pending");
        cJSON *n = cJSON_GetObjectItem(cJSON_GetObjectItem(d, "body"), "n");
        assert_int_equal(n ? n->valueint : -1, i);
        cJSON_Delete(d);
    }
    int64_t open = 0;
    assert_int_equal(store_deliveries_count_open(f->s, &open), EVH_OK);
    assert_int_equal(open, N - 1);
    /* a second batch's ids go on after the first's */
    int64_t more[2] = {-1, -1};
    store_outbox_message one = m[0];
    one.message_id = "msg_again";
    one.delivery_ids = more;
    assert_int_equal(store_outbox_insert(f->s, &one, 1), EVH_OK);
    assert_true(more[0] > last);
    assert_int_equal(more[1], 0);
    sqlite3 *raw = raw_open(outbox);
    assert_int_equal(raw_int(raw, "SELECT COUNT(*) FROM outbox_messages"), N); /* N-1 + again */
    sqlite3_close(raw);
    free(outbox);
}

static void test_outbox_path(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"./evhost-data/evhost.db", "./evhost-data/evhost-outbox.db"},
        {"/var/lib/evhost/state", "/var/lib/evhost/state-outbox.db"},
        {"a.sqlite", "a.sqlite-outbox.db"},
        {".db", ".db-outbox.db"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *p = store_outbox_path(cases[i][0]);
        assert_string_equal(p, cases[i][1]);
        free(p);
    }
    assert_null(store_outbox_path(NULL));
}

/* The DDL of every table and index in the file at path, for making them
 * elsewhere (';'-separated, malloc'd). */
static char *schema_of(const char *path)
{
    sqlite3 *db = raw_open(path);
    char *sql = raw_text(db, "SELECT group_concat(sql, ';') FROM sqlite_master WHERE sql NOT NULL"
                             " AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations'");
    sqlite3_close(db);
    return sql;
}

/* A database at schema 4 kept its outbox in its own tables; opening it moves
 * every row, with its id, to the outbox file (migration 5), drops the tables
 * there, and the delivery ids go on where they were.  A copy that a crash
 * cut short (the outbox file already holds some of the rows) is made again
 * without duplicates. */
static void test_migration_5_moves_outbox(void **state)
{
    fixture *f = *state;
    store_close(f->s);
    f->s = NULL;
    /* the old tables are exactly what the outbox file has (same DDL) */
    char *scratch = tu_join(f->dir, "scratch.db");
    store_close(open_outbox(scratch));
    char *ddl = schema_of(scratch);
    sqlite3 *db = raw_open(f->path);
    assert_int_equal(sqlite3_exec(db, ddl, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(
            db,
            "DELETE FROM schema_migrations WHERE version = 5;"
            "INSERT INTO subscriptions(id, url, events, secret, enabled, origin, created_at,"
            " updated_at) VALUES('a', 'http://127.0.0.1:9/a', '\"all\"', 'k', 1, 'api',"
            " '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z'),"
            " ('b', 'http://127.0.0.1:9/b', '[\"jobError\"]', NULL, 0, 'host.yaml',"
            " '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');"
            "INSERT INTO outbox_messages VALUES (3, 'msg_1', 'jobStart', 'job-1', '{\"n\":1}',"
            " '2026-01-01T00:00:00.000Z'), (4, 'msg_2', 'jobError', 'job-1', '{\"n\":2}',"
            " '2026-01-01T00:00:00.000Z');"
            "INSERT INTO deliveries(id, subscription_id, message, attempt, status, next_attempt_at,"
            " last_status, last_error, created_at, updated_at) VALUES"
            " (7, 'a', 3, 1, 'delivered', '2026-01-01T00:00:00.000Z', 204, NULL,"
            "  '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.000Z'),"
            " (8, 'a', 4, 2, 'failed', '2026-01-01T00:00:09.000Z', 503, 'HTTP 503',"
            "  '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.000Z'),"
            " (9, 'b', 4, 8, 'dead', '2026-01-01T00:00:00.000Z', 500, 'HTTP 500',"
            "  '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.000Z');"
            /* rows up to 40 were made and pruned once */
            "UPDATE sqlite_sequence SET seq = 40 WHERE name = 'deliveries';",
            NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    /* an earlier try got as far as copying subscription a and message 3 */
    char *outbox = store_outbox_path(f->path);
    store_close(open_outbox(outbox));
    db = raw_open(outbox);
    assert_int_equal(
        sqlite3_exec(db,
                     "INSERT INTO subscriptions(id, url, events, secret, enabled, origin,"
                     " created_at, updated_at) VALUES('a', 'http://127.0.0.1:9/a', '\"all\"',"
                     " 'k', 1, 'api', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');"
                     "INSERT INTO outbox_messages VALUES (3, 'msg_1', 'jobStart', 'job-1',"
                     " '{\"n\":1}', '2026-01-01T00:00:00.000Z');",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);

    f->s = open_at(f->path);
    db = raw_open(f->path);
    assert_int_equal(raw_int(db, "SELECT MAX(version) FROM schema_migrations"), 5);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM sqlite_master WHERE name IN"
                                 " ('subscriptions', 'outbox_messages', 'deliveries')"),
                     0);
    sqlite3_close(db);

    store *ob = open_outbox(outbox);
    db = raw_open(outbox);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM subscriptions"), 2);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM outbox_messages"), 2);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM deliveries"), 3);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM pragma_foreign_key_check"), 0);
    sqlite3_close(db);
    cJSON *d = store_delivery_get(ob, 8);
    assert_non_null(d);
    assert_string_equal(str_of(d, "status"), "failed");
    assert_string_equal(str_of(d, "message_id"), "msg_2");
    assert_string_equal(str_of(d, "last_error"), "HTTP 503");
    cJSON_Delete(d);
    cJSON *sub = store_subscription_get(ob, "b");
    assert_non_null(sub);
    assert_string_equal(str_of(sub, "origin"), "host.yaml");
    cJSON_Delete(sub);
    int64_t open = 0;
    assert_int_equal(store_deliveries_count_open(ob, &open), EVH_OK);
    assert_int_equal(open, 1);
    /* a new delivery's id comes after every id ever given */
    static const char *const to_a[] = {"a"};
    int64_t id = 0;
    store_outbox_message m = {.event = "jobStart",
                              .job_id = "job-2",
                              .message_id = "msg_3",
                              .body = "{}",
                              .body_len = 2,
                              .subscription_ids = to_a,
                              .n_subs = 1,
                              .delivery_ids = &id};
    assert_int_equal(store_outbox_insert(ob, &m, 1), EVH_OK);
    assert_int_equal(id, 41);
    store_close(ob);
    /* opening again moves nothing more */
    store_close(f->s);
    f->s = open_at(f->path);
    db = raw_open(outbox);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM deliveries"), 4);
    sqlite3_close(db);
    free(outbox);
    free(ddl);
    free(scratch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_schema_and_seed_queries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_is_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_future_database_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_3_keeps_executions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_insert_and_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_updates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_get_envelope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_execution_duplicate_and_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_execution_status_timestamps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_step_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_triggers_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_list_filters_and_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_executions_list_filters_and_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_shrinks_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integrity_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_insert_many, setup, teardown),
        cmocka_unit_test(test_outbox_path),
        cmocka_unit_test_setup_teardown(test_migration_5_moves_outbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_gate_per_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
