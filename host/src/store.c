/*
 * store.c - the SQLite database (see store.h).
 *
 * Every statement is prepared once per connection and cached (the list
 * queries once per combination of filters), and every value is bound, never
 * spliced into SQL text.  Statements are reset as soon as they are used so
 * that no connection keeps a read snapshot open, which would stop WAL
 * checkpoints and make writers on other connections wait.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <evhost/evhost.h>
#include <sqlite3.h>

#define BUSY_TIMEOUT_MS 10000

/* ---- schema ----------------------------------------------------------------- */

typedef struct migration {
    int version;
    const char *sql;
    int fk_off; /* rebuilds a table that others reference: foreign keys off */
    /* run before the migration's transaction while the database lacks it
     * (what a transaction cannot do: ATTACH); NULL: nothing */
    int (*before)(store *s);
} migration;

static const char MIGRATION_1[] =
    "CREATE TABLE events("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT NOT NULL UNIQUE,"
    " source TEXT NOT NULL,"
    " event_type TEXT NOT NULL,"
    " data TEXT NOT NULL,"
    " user_id TEXT,"
    " additional_data TEXT,"
    " timestamp TEXT NOT NULL,"
    " timestamp_us INTEGER NOT NULL,"
    " status TEXT NOT NULL DEFAULT 'pending'"
    "  CHECK(status IN ('pending','dispatched','unmatched')),"
    " idempotency_key TEXT UNIQUE,"
    " chain_depth INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX events_status_seq ON events(status, seq);"
    "CREATE INDEX events_source_type_seq ON events(source, event_type, seq);"
    /* retention finds old events by time */
    "CREATE INDEX events_time ON events(timestamp_us);"
    "CREATE TABLE workflow_triggers("
    " id TEXT PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " source TEXT NOT NULL,"
    " event_type TEXT NOT NULL,"
    " workflow_id TEXT NOT NULL,"
    " conditions TEXT,"
    " enabled INTEGER NOT NULL DEFAULT 1,"
    " origin TEXT NOT NULL DEFAULT 'api',"
    " created_at TEXT NOT NULL,"
    " updated_at TEXT NOT NULL);"
    "CREATE INDEX workflow_triggers_match ON workflow_triggers(source, event_type);"
    "CREATE TABLE workflow_executions("
    " id TEXT PRIMARY KEY,"
    " workflow_id TEXT NOT NULL,"
    " workflow_version TEXT,"
    " trigger_id TEXT NOT NULL,"
    " event_id TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK(status IN ('queued','running','succeeded','failed')),"
    " created_at TEXT NOT NULL,"
    " started_at TEXT,"
    " finished_at TEXT,"
    " error TEXT,"
    " replay_of TEXT,"
    " UNIQUE(trigger_id, event_id, replay_of));"
    /* NULLs are distinct in UNIQUE, so the table constraint alone would let
     * two first runs of one (trigger, event) in: this index forbids it. */
    "CREATE UNIQUE INDEX workflow_executions_once"
    " ON workflow_executions(trigger_id, event_id) WHERE replay_of IS NULL;"
    "CREATE INDEX workflow_executions_created ON workflow_executions(created_at, id);"
    "CREATE INDEX workflow_executions_workflow"
    " ON workflow_executions(workflow_id, created_at, id);"
    "CREATE INDEX workflow_executions_trigger"
    " ON workflow_executions(trigger_id, created_at, id);"
    "CREATE INDEX workflow_executions_status ON workflow_executions(status, created_at, id);"
    /* retention asks "does any execution reference this event?" */
    "CREATE INDEX workflow_executions_event ON workflow_executions(event_id);"
    "CREATE TABLE step_runs("
    " id INTEGER PRIMARY KEY,"
    " execution_id TEXT NOT NULL REFERENCES workflow_executions(id) ON DELETE CASCADE,"
    " step_id TEXT NOT NULL,"
    " plugin TEXT NOT NULL,"
    " attempt INTEGER NOT NULL,"
    " status TEXT NOT NULL CHECK(status IN ('running','succeeded','failed','skipped')),"
    " started_at TEXT,"
    " finished_at TEXT,"
    " duration_ms REAL,"
    " output TEXT,"
    " error TEXT,"
    " metrics TEXT,"
    " UNIQUE(execution_id, step_id, attempt));";

/* Outbound webhooks: subscriptions and the outbox of deliveries (see
 * store.h).  The two partial indexes serve the delivery loop: due rows in
 * time order, and "is an earlier delivery of this job still open?". */
static const char MIGRATION_2[] =
    "CREATE TABLE subscriptions("
    " id TEXT PRIMARY KEY,"
    " url TEXT NOT NULL,"
    " events TEXT NOT NULL,"
    " token TEXT,"
    " secret TEXT,"
    " headers TEXT,"
    " timeout_ms INTEGER,"
    " max_attempts INTEGER,"
    " backoff_base_ms INTEGER,"
    " backoff_cap_ms INTEGER,"
    " enabled INTEGER NOT NULL DEFAULT 1,"
    " disabled_reason TEXT,"
    " origin TEXT NOT NULL DEFAULT 'api',"
    " created_at TEXT NOT NULL,"
    " updated_at TEXT NOT NULL);"
    "CREATE TABLE deliveries("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " subscription_id TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,"
    " event TEXT NOT NULL,"
    " job_id TEXT NOT NULL,"
    " message_id TEXT NOT NULL,"
    " body TEXT NOT NULL,"
    " attempt INTEGER NOT NULL DEFAULT 0,"
    " status TEXT NOT NULL DEFAULT 'pending'"
    "  CHECK(status IN ('pending','delivered','failed','dead')),"
    " next_attempt_at TEXT NOT NULL,"
    " last_status INTEGER,"
    " last_error TEXT,"
    " created_at TEXT NOT NULL,"
    " updated_at TEXT NOT NULL);"
    "CREATE INDEX deliveries_due ON deliveries(next_attempt_at, id)"
    " WHERE status IN ('pending','failed');"
    "CREATE INDEX deliveries_order ON deliveries(subscription_id, job_id, id)"
    " WHERE status IN ('pending','failed');"
    "CREATE INDEX deliveries_subscription ON deliveries(subscription_id, id);"
    "CREATE INDEX deliveries_status ON deliveries(status, id);"
    "CREATE INDEX deliveries_job ON deliveries(job_id, id);"
    "CREATE INDEX deliveries_created ON deliveries(created_at);";

/* Executions, leaner: the recorder inserts one row per execution, and
 * every index is written with it (eight, with text keys of 60 bytes and
 * more, made a third of the pipeline's storage time).  Lists page by an
 * integer seq, the insertion order, instead of (created_at, id), which
 * drops one index and shrinks four; the table-wide UNIQUE(trigger_id,
 * event_id, replay_of) becomes "one replay per execution", an index on
 * replays only.  The table is rebuilt (SQLite cannot drop a table
 * constraint), with foreign keys off (migration.fk_off): dropping the old
 * table must not cascade into step_runs. */
static const char MIGRATION_3[] =
    "CREATE TABLE workflow_executions_v3("
    " seq INTEGER PRIMARY KEY,"
    " id TEXT NOT NULL UNIQUE,"
    " workflow_id TEXT NOT NULL,"
    " workflow_version TEXT,"
    " trigger_id TEXT NOT NULL,"
    " event_id TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK(status IN ('queued','running','succeeded','failed')),"
    " created_at TEXT NOT NULL,"
    " started_at TEXT,"
    " finished_at TEXT,"
    " error TEXT,"
    " replay_of TEXT);"
    "INSERT INTO workflow_executions_v3(id, workflow_id, workflow_version, trigger_id, event_id,"
    " status, created_at, started_at, finished_at, error, replay_of)"
    " SELECT id, workflow_id, workflow_version, trigger_id, event_id, status, created_at,"
    " started_at, finished_at, error, replay_of FROM workflow_executions"
    " ORDER BY created_at, id;"
    "DROP TABLE workflow_executions;"
    "ALTER TABLE workflow_executions_v3 RENAME TO workflow_executions;"
    /* one first run per (trigger, event): recovery never runs it twice */
    "CREATE UNIQUE INDEX workflow_executions_once"
    " ON workflow_executions(trigger_id, event_id) WHERE replay_of IS NULL;"
    "CREATE UNIQUE INDEX workflow_executions_replay"
    " ON workflow_executions(replay_of) WHERE replay_of IS NOT NULL;"
    "CREATE INDEX workflow_executions_workflow ON workflow_executions(workflow_id, seq);"
    "CREATE INDEX workflow_executions_trigger ON workflow_executions(trigger_id, seq);"
    "CREATE INDEX workflow_executions_status ON workflow_executions(status, seq);"
    /* retention asks "does any execution reference this event?" */
    "CREATE INDEX workflow_executions_event ON workflow_executions(event_id);";

/* The outbox, lean (schema 4): each lifecycle event's envelope is stored
 * once in outbox_messages, and a delivery is a small row per subscription
 * pointing at it (signing happens per attempt, with each subscription's
 * secret, so nothing per subscription is stored with the body).  Indexes,
 * each for a reader that needs it:
 *   deliveries_due (partial: open rows): the delivery loop's scan of one
 *     subscription's due rows in time order (start-up, retries, and after a
 *     failure or a re-enable: notify.c), the open count, the pending and
 *     failed filters of GET /api/deliveries;
 *   deliveries_message: "is an earlier event of this job still open for this
 *     subscription?" (with outbox_messages_job), and ?job=;
 *   deliveries_subscription: ?subscription= and ON DELETE CASCADE;
 *   deliveries_dead (partial, dead letters are few): ?status=dead.
 * Pruning walks ids (they grow with created_at), so created_at needs none.
 * The existing rows are converted: one message per message_id, and every
 * delivery keeps its id, status, attempt and due time, so open and dead
 * deliveries stay deliverable and retryable. */
static const char MIGRATION_4[] =
    "CREATE TABLE outbox_messages("
    " id INTEGER PRIMARY KEY,"
    " message_id TEXT NOT NULL,"
    " event TEXT NOT NULL,"
    " job_id TEXT NOT NULL,"
    " body TEXT NOT NULL,"
    " created_at TEXT NOT NULL);"
    "INSERT INTO outbox_messages(id, message_id, event, job_id, body, created_at)"
    " SELECT MIN(id), message_id, event, job_id, body, created_at FROM deliveries"
    " GROUP BY message_id;"
    "CREATE INDEX outbox_messages_job ON outbox_messages(job_id, id);"
    "CREATE INDEX outbox_messages_migrating ON outbox_messages(message_id);"
    "CREATE TABLE deliveries_v3("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " subscription_id TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,"
    " message INTEGER NOT NULL,"
    " attempt INTEGER NOT NULL DEFAULT 0,"
    " status TEXT NOT NULL DEFAULT 'pending'"
    "  CHECK(status IN ('pending','delivered','failed','dead')),"
    " next_attempt_at TEXT NOT NULL,"
    " last_status INTEGER,"
    " last_error TEXT,"
    " created_at TEXT NOT NULL,"
    " updated_at TEXT NOT NULL);"
    "INSERT INTO deliveries_v3(id, subscription_id, message, attempt, status, next_attempt_at,"
    " last_status, last_error, created_at, updated_at)"
    " SELECT d.id, d.subscription_id, m.id, d.attempt, d.status, d.next_attempt_at,"
    " d.last_status, d.last_error, d.created_at, d.updated_at"
    " FROM deliveries d JOIN outbox_messages m ON m.message_id = d.message_id ORDER BY d.id;"
    /* ids are never reused, not even those of rows pruned before */
    "UPDATE sqlite_sequence SET seq = (SELECT MAX(seq) FROM sqlite_sequence"
    " WHERE name IN ('deliveries', 'deliveries_v3')) WHERE name = 'deliveries_v3';"
    "DROP INDEX outbox_messages_migrating;"
    "DROP TABLE deliveries;"
    "ALTER TABLE deliveries_v3 RENAME TO deliveries;"
    "CREATE INDEX deliveries_due ON deliveries(subscription_id, next_attempt_at, id)"
    " WHERE status IN ('pending','failed');"
    "CREATE INDEX deliveries_message ON deliveries(message, subscription_id);"
    "CREATE INDEX deliveries_subscription ON deliveries(subscription_id, id);"
    "CREATE INDEX deliveries_dead ON deliveries(id) WHERE status = 'dead';";

/* The outbox moves to a file of its own (store_outbox_path): its
 * transactions took the one write lock that the pipeline's event writer
 * and recorder wait on, and with subscribers the pipeline lost half to
 * three quarters of its rate to that (docs/BENCHMARKS.md).  move_outbox
 * has copied the rows over before this drops them; deliveries go first,
 * as they reference the other two. */
static const char MIGRATION_5[] = "DROP TABLE deliveries;"
                                  "DROP TABLE outbox_messages;"
                                  "DROP TABLE subscriptions;";

static int move_outbox(store *s);

/* clang-format off */
static const migration MIGRATIONS[] = {
    {1, MIGRATION_1, 0, NULL},
    {2, MIGRATION_2, 0, NULL},
    {3, MIGRATION_3, 1, NULL},
    {4, MIGRATION_4, 0, NULL},
    {5, MIGRATION_5, 0, move_outbox},
};
/* clang-format on */
#define N_MIGRATIONS (sizeof MIGRATIONS / sizeof *MIGRATIONS)

_Static_assert(STORE_SCHEMA_VERSION == 5, "add the migration to MIGRATIONS");

/* The outbox file's schema: the tables migrations 2 and 4 made in the main
 * database before migration 5 moved them, the same columns in the same
 * order, with the same indexes (see MIGRATION_4 for what each serves). */
static const char OUTBOX_MIGRATION_1[] =
    "CREATE TABLE subscriptions("
    " id TEXT PRIMARY KEY,"
    " url TEXT NOT NULL,"
    " events TEXT NOT NULL,"
    " token TEXT,"
    " secret TEXT,"
    " headers TEXT,"
    " timeout_ms INTEGER,"
    " max_attempts INTEGER,"
    " backoff_base_ms INTEGER,"
    " backoff_cap_ms INTEGER,"
    " enabled INTEGER NOT NULL DEFAULT 1,"
    " disabled_reason TEXT,"
    " origin TEXT NOT NULL DEFAULT 'api',"
    " created_at TEXT NOT NULL,"
    " updated_at TEXT NOT NULL);"
    "CREATE TABLE outbox_messages("
    " id INTEGER PRIMARY KEY,"
    " message_id TEXT NOT NULL,"
    " event TEXT NOT NULL,"
    " job_id TEXT NOT NULL,"
    " body TEXT NOT NULL,"
    " created_at TEXT NOT NULL);"
    "CREATE INDEX outbox_messages_job ON outbox_messages(job_id, id);"
    "CREATE TABLE deliveries("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " subscription_id TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,"
    " message INTEGER NOT NULL,"
    " attempt INTEGER NOT NULL DEFAULT 0,"
    " status TEXT NOT NULL DEFAULT 'pending'"
    "  CHECK(status IN ('pending','delivered','failed','dead')),"
    " next_attempt_at TEXT NOT NULL,"
    " last_status INTEGER,"
    " last_error TEXT,"
    " created_at TEXT NOT NULL,"
    " updated_at TEXT NOT NULL);"
    "CREATE INDEX deliveries_due ON deliveries(subscription_id, next_attempt_at, id)"
    " WHERE status IN ('pending','failed');"
    "CREATE INDEX deliveries_message ON deliveries(message, subscription_id);"
    "CREATE INDEX deliveries_subscription ON deliveries(subscription_id, id);"
    "CREATE INDEX deliveries_dead ON deliveries(id) WHERE status = 'dead';";

static const migration OUTBOX_MIGRATIONS[] = {
    {1, OUTBOX_MIGRATION_1, 0, NULL},
};
#define N_OUTBOX_MIGRATIONS (sizeof OUTBOX_MIGRATIONS / sizeof *OUTBOX_MIGRATIONS)

_Static_assert(STORE_OUTBOX_SCHEMA_VERSION == 1, "add the migration to OUTBOX_MIGRATIONS");

/* Migration 5's copy, on the main database's connection with the outbox
 * file attached as "outbox".  Every row keeps its id (deliveries point at
 * messages, and receivers and GET /api/deliveries/{id} know them), and
 * rows already there are left alone, so a copy that a crash cut short is
 * simply made again.  Delivery ids are never reused, not even those of rows
 * pruned before: the new file's sequence starts where the old one was. */
static const char OUTBOX_COPY[] =
    "INSERT OR IGNORE INTO outbox.subscriptions(id, url, events, token, secret, headers,"
    " timeout_ms, max_attempts, backoff_base_ms, backoff_cap_ms, enabled, disabled_reason,"
    " origin, created_at, updated_at)"
    " SELECT id, url, events, token, secret, headers, timeout_ms, max_attempts,"
    " backoff_base_ms, backoff_cap_ms, enabled, disabled_reason, origin, created_at,"
    " updated_at FROM main.subscriptions;"
    "INSERT OR IGNORE INTO outbox.outbox_messages(id, message_id, event, job_id, body,"
    " created_at)"
    " SELECT id, message_id, event, job_id, body, created_at FROM main.outbox_messages;"
    "INSERT OR IGNORE INTO outbox.deliveries(id, subscription_id, message, attempt, status,"
    " next_attempt_at, last_status, last_error, created_at, updated_at)"
    " SELECT id, subscription_id, message, attempt, status, next_attempt_at, last_status,"
    " last_error, created_at, updated_at FROM main.deliveries ORDER BY id;"
    "DELETE FROM outbox.sqlite_sequence WHERE name = 'deliveries';"
    "INSERT INTO outbox.sqlite_sequence(name, seq) SELECT 'deliveries',"
    " MAX(COALESCE((SELECT seq FROM main.sqlite_sequence WHERE name = 'deliveries'), 0),"
    " COALESCE((SELECT MAX(id) FROM outbox.deliveries), 0));";

/* ---- cached statements ---------------------------------------------------- */

#define EV_COLS "seq, id, source, event_type, data, user_id, additional_data, timestamp, status"
#define EX_COLS                                                                                    \
    "id, workflow_id, workflow_version, trigger_id, event_id, status, created_at, "                \
    "started_at, finished_at, error, replay_of"
#define TR_COLS                                                                                    \
    "id, name, source, event_type, workflow_id, conditions, enabled, origin, "                     \
    "created_at, updated_at"
#define STEP_COLS                                                                                  \
    "id, step_id, plugin, attempt, status, started_at, finished_at, duration_ms, "                 \
    "output, error, metrics"

/* Outbound webhooks (the functions at the end of this file). */
#define SUB_COLS                                                                                   \
    "id, url, events, token, secret, headers, timeout_ms, max_attempts, backoff_base_ms, "         \
    "backoff_cap_ms, enabled, disabled_reason, origin, created_at, updated_at"
#define DL_COLS                                                                                    \
    "d.id, d.subscription_id, m.event, m.job_id, m.message_id, d.attempt, d.status, "              \
    "d.next_attempt_at, d.last_status, d.last_error, d.created_at, d.updated_at"
#define DL_FROM "deliveries d JOIN outbox_messages m ON m.id = d.message"
/* d (of subscription ?1, joined with its message m) is open and no earlier
 * event of its job is open for the same subscription, so that a job's
 * events reach each subscriber in order. */
#define DL_DELIVERABLE                                                                             \
    "d.subscription_id = ?1 AND d.status IN ('pending','failed') "                                 \
    "AND NOT EXISTS (SELECT 1 FROM outbox_messages p JOIN deliveries e "                           \
    "ON e.message = p.id AND e.subscription_id = ?1 WHERE p.job_id = m.job_id AND p.id < m.id "    \
    "AND e.status IN ('pending','failed'))"

#define WEBHOOK_STATEMENTS(X)                                                                      \
    X(ST_SUB_INSERT, "INSERT INTO subscriptions(" SUB_COLS ") "                                    \
                     "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL, 'api', ?12, ?12)") \
    X(ST_SUB_UPDATE,                                                                               \
      "UPDATE subscriptions SET url = ?2, events = ?3, token = ?4, secret = ?5, headers = ?6, "     \
      "timeout_ms = ?7, max_attempts = ?8, backoff_base_ms = ?9, backoff_cap_ms = ?10, "           \
      "enabled = ?11, disabled_reason = CASE WHEN ?11 THEN NULL ELSE disabled_reason END, "        \
      "updated_at = ?12 WHERE id = ?1 AND origin = 'api'")                                         \
    X(ST_SUB_SYNC,                                                                                 \
      "INSERT INTO subscriptions(" SUB_COLS ") "                                                   \
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL, 'host.yaml', ?12, ?12) "         \
      "ON CONFLICT(id) DO UPDATE SET url = excluded.url, events = excluded.events, "               \
      "token = excluded.token, secret = excluded.secret, headers = excluded.headers, "             \
      "timeout_ms = excluded.timeout_ms, max_attempts = excluded.max_attempts, "                   \
      "backoff_base_ms = excluded.backoff_base_ms, backoff_cap_ms = excluded.backoff_cap_ms, "     \
      "disabled_reason = CASE WHEN excluded.enabled = 0 OR subscriptions.url <> excluded.url "     \
      "OR subscriptions.origin <> 'host.yaml' THEN NULL ELSE subscriptions.disabled_reason END, "  \
      "enabled = CASE WHEN excluded.enabled = 0 THEN 0 WHEN subscriptions.url <> excluded.url "    \
      "OR subscriptions.origin <> 'host.yaml' THEN 1 ELSE subscriptions.enabled END, "             \
      "origin = 'host.yaml', "                                                                     \
      "updated_at = CASE WHEN subscriptions.url IS excluded.url "                                  \
      "AND subscriptions.events IS excluded.events AND subscriptions.token IS excluded.token "     \
      "AND subscriptions.secret IS excluded.secret AND subscriptions.headers IS excluded.headers " \
      "AND subscriptions.timeout_ms IS excluded.timeout_ms "                                       \
      "AND subscriptions.max_attempts IS excluded.max_attempts "                                   \
      "AND subscriptions.backoff_base_ms IS excluded.backoff_base_ms "                             \
      "AND subscriptions.backoff_cap_ms IS excluded.backoff_cap_ms "                               \
      "AND subscriptions.origin = 'host.yaml' "                                                    \
      "THEN subscriptions.updated_at ELSE excluded.updated_at END")                                \
    X(ST_EX_METRICS, "SELECT step_id, plugin, attempt, status, metrics FROM step_runs r "          \
                     "WHERE execution_id = ?1 AND id = (SELECT MAX(id) FROM step_runs l "          \
                     "WHERE l.execution_id = r.execution_id AND l.step_id = r.step_id) "           \
                     "ORDER BY id")                                                                \
    X(ST_SUB_CONFIG_IDS, "SELECT id FROM subscriptions WHERE origin = 'host.yaml'")                \
    X(ST_SUB_ENABLE, "UPDATE subscriptions SET enabled = ?2, disabled_reason = ?3, "               \
                     "updated_at = ?4 WHERE id = ?1")                                              \
    X(ST_SUB_DELETE, "DELETE FROM subscriptions WHERE id = ?1")                                    \
    X(ST_SUB_LIST, "SELECT " SUB_COLS " FROM subscriptions ORDER BY created_at, id")               \
    X(ST_SUB_GET, "SELECT " SUB_COLS " FROM subscriptions WHERE id = ?1")                          \
    X(ST_SUB_EXISTS, "SELECT 1 FROM subscriptions WHERE id = ?1")                                  \
    X(ST_DL_CLAIM, "SELECT d.id, m.event, m.job_id, m.message_id, m.body, d.attempt "               \
                   "FROM deliveries d INDEXED BY deliveries_due "                                  \
                   "JOIN outbox_messages m ON m.id = d.message "                                   \
                   "WHERE d.next_attempt_at <= ?2 AND " DL_DELIVERABLE                             \
                   " ORDER BY d.next_attempt_at, d.id LIMIT ?3")                                   \
    X(ST_DL_DELIVERED, "UPDATE deliveries SET status = 'delivered', last_status = ?2, "           \
                       "last_error = NULL, attempt = ?3, updated_at = ?4 WHERE id = ?1")           \
    X(ST_DL_FINISH,                                                                                \
      "UPDATE deliveries SET status = ?2, next_attempt_at = ?5, updated_at = ?6, "                  \
      "last_status = CASE WHEN ?2 = 'pending' THEN last_status ELSE ?3 END, "                      \
      "last_error = CASE WHEN ?2 = 'pending' THEN last_error ELSE ?4 END, "                        \
      "attempt = CASE WHEN ?2 = 'pending' THEN attempt ELSE ?7 END "                               \
      "WHERE id = ?1")                                                                             \
    X(ST_DL_NEXT_DUE, "SELECT d.next_attempt_at FROM deliveries d INDEXED BY deliveries_due "      \
                      "JOIN outbox_messages m ON m.id = d.message "                                \
                      "WHERE " DL_DELIVERABLE " ORDER BY d.next_attempt_at, d.id LIMIT 1")         \
    X(ST_DL_IDLE, "SELECT EXISTS (SELECT 1 FROM deliveries INDEXED BY deliveries_due "             \
                  "WHERE subscription_id = ?1 AND status IN ('pending','failed')), "               \
                  "(SELECT MAX(id) FROM deliveries WHERE subscription_id = ?1)")                   \
    X(ST_DL_COUNT_OPEN, "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending','failed')")    \
    X(ST_DL_GET, "SELECT " DL_COLS ", m.body FROM " DL_FROM " WHERE d.id = ?1")                    \
    X(ST_DL_RETRY, "UPDATE deliveries SET status = 'pending', attempt = 0, next_attempt_at = ?2, " \
                   "updated_at = ?2 WHERE id = ?1 AND status IN ('failed','dead')")               \
    /* ids grow with created_at: the first id not old enough bounds the prune */                  \
    X(ST_DL_PRUNE_BOUND, "SELECT COALESCE((SELECT id FROM deliveries WHERE created_at >= ?1 "     \
                         "ORDER BY id LIMIT 1), (SELECT MAX(id) + 1 FROM deliveries), 0)")        \
    X(ST_DL_PRUNE, "DELETE FROM deliveries WHERE id < ?1 AND status IN ('delivered','dead')")      \
    X(ST_OB_PRUNE_BOUND, "SELECT COALESCE((SELECT id FROM outbox_messages WHERE created_at >= ?1 " \
                         "ORDER BY id LIMIT 1), (SELECT MAX(id) + 1 FROM outbox_messages), 0)")   \
    X(ST_OB_PRUNE, "DELETE FROM outbox_messages WHERE id < ?1 AND NOT EXISTS "                     \
                   "(SELECT 1 FROM deliveries WHERE message = outbox_messages.id)")

#define STATEMENTS(X)                                                                              \
    X(ST_BEGIN, "BEGIN IMMEDIATE")                                                                 \
    X(ST_COMMIT, "COMMIT")                                                                         \
    X(ST_ROLLBACK, "ROLLBACK")                                                                     \
    X(ST_VERSION, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations")                       \
    X(ST_MIGRATED, "INSERT INTO schema_migrations(version, applied_at) VALUES(?1, ?2)")            \
    X(ST_EV_INSERT, "INSERT INTO events(id, source, event_type, data, user_id, additional_data, "  \
                    "timestamp, timestamp_us, idempotency_key, chain_depth, status) "              \
                    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "                             \
                    "CASE WHEN ?11 THEN 'unmatched' ELSE 'pending' END) "                          \
                    "ON CONFLICT(idempotency_key) DO NOTHING")                                     \
    X(ST_EV_STATUS, "UPDATE events SET status = ?2 WHERE id = ?1")                                 \
    X(ST_EV_PENDING,                                                                               \
      "SELECT seq, id, source, event_type, data, user_id, additional_data, timestamp, "            \
      "timestamp_us, chain_depth, idempotency_key FROM events "                                    \
      "WHERE status = 'pending' AND seq > ?1 ORDER BY seq LIMIT ?2")                               \
    X(ST_EV_GET, "SELECT " EV_COLS " FROM events WHERE id = ?1")                                   \
    X(ST_EV_BY_KEY, "SELECT id FROM events WHERE idempotency_key = ?1")                            \
    X(ST_EV_LOAD,                                                                                  \
      "SELECT seq, id, source, event_type, data, user_id, additional_data, timestamp, "            \
      "timestamp_us, chain_depth, idempotency_key FROM events WHERE id = ?1")                      \
    X(ST_EX_INSERT,                                                                                \
      "INSERT INTO workflow_executions(id, workflow_id, workflow_version, trigger_id, "            \
      "event_id, status, created_at, replay_of, started_at, finished_at, error) "                  \
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)")                                      \
    X(ST_EX_FIND, "SELECT id FROM workflow_executions "                                            \
                  "WHERE trigger_id = ?1 AND event_id = ?2 AND replay_of IS ?3")                   \
    X(ST_EX_STATUS, "UPDATE workflow_executions SET status = ?2, error = ?3, "                     \
                    "started_at = CASE WHEN ?2 = 'running' THEN COALESCE(started_at, ?4) "         \
                    "ELSE started_at END, "                                                        \
                    "finished_at = CASE WHEN ?2 IN ('succeeded', 'failed') THEN ?4 ELSE NULL END " \
                    "WHERE id = ?1")                                                               \
    X(ST_EX_GET, "SELECT " EX_COLS " FROM workflow_executions WHERE id = ?1")                      \
    X(ST_EX_UNFINISHED,                                                                            \
      "SELECT id, workflow_id, trigger_id, event_id, status, replay_of FROM workflow_executions "  \
      "WHERE status IN ('queued', 'running') ORDER BY seq")                                        \
    X(ST_STEP_PUT, "INSERT INTO step_runs(execution_id, step_id, plugin, attempt, status, "        \
                   "started_at, finished_at, duration_ms, output, error, metrics) "                \
                   "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "                         \
                   "ON CONFLICT(execution_id, step_id, attempt) DO UPDATE SET "                    \
                   "plugin = excluded.plugin, status = excluded.status, "                          \
                   "started_at = excluded.started_at, finished_at = excluded.finished_at, "        \
                   "duration_ms = excluded.duration_ms, output = excluded.output, "                \
                   "error = excluded.error, metrics = excluded.metrics")                           \
    X(ST_STEP_LIST, "SELECT " STEP_COLS " FROM step_runs WHERE execution_id = ?1 ORDER BY id")     \
    /* SQLite takes the bare column of the row holding MAX() */                                    \
    X(ST_STEP_OUTPUTS, "SELECT step_id, output, MAX(attempt) FROM step_runs "                      \
                       "WHERE execution_id = ?1 AND status = 'succeeded' GROUP BY step_id")        \
    X(ST_TR_PUT, "INSERT INTO workflow_triggers(" TR_COLS ") "                                     \
                 "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9) "                                 \
                 "ON CONFLICT(id) DO UPDATE SET name = excluded.name, source = excluded.source, "  \
                 "event_type = excluded.event_type, workflow_id = excluded.workflow_id, "          \
                 "conditions = excluded.conditions, enabled = excluded.enabled, "                  \
                 "origin = excluded.origin, updated_at = excluded.updated_at")                     \
    X(ST_TR_DELETE, "DELETE FROM workflow_triggers WHERE id = ?1")                                 \
    X(ST_TR_LIST, "SELECT " TR_COLS " FROM workflow_triggers ORDER BY created_at, id")             \
    X(ST_TR_GET, "SELECT " TR_COLS " FROM workflow_triggers WHERE id = ?1")                        \
    /* no upsert: a taken id is a primary key conflict */                                          \
    X(ST_TR_INSERT, "INSERT INTO workflow_triggers(" TR_COLS ") "                                  \
                    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)")                              \
    X(ST_TR_UPDATE_API,                                                                            \
      "UPDATE workflow_triggers SET name = ?2, source = ?3, event_type = ?4, workflow_id = ?5, "   \
      "conditions = ?6, enabled = ?7, updated_at = ?8 WHERE id = ?1 AND origin = 'api'")           \
    X(ST_RET_EX_AGE, "DELETE FROM workflow_executions "                                            \
                     "WHERE status IN ('succeeded', 'failed') AND created_at < ?1")                \
    X(ST_RET_EX_COUNT, "DELETE FROM workflow_executions WHERE status IN ('succeeded', 'failed') "  \
                       "AND seq IN (SELECT seq FROM workflow_executions "                          \
                       "ORDER BY seq DESC LIMIT -1 OFFSET ?1)")                                    \
    X(ST_RET_EVENTS,                                                                               \
      "DELETE FROM events WHERE timestamp_us < ?1 AND status <> 'pending' "                        \
      "AND NOT EXISTS (SELECT 1 FROM workflow_executions x WHERE x.event_id = events.id)")         \
    X(ST_VACUUM, "PRAGMA incremental_vacuum")                                                      \
    X(ST_CHECKPOINT, "PRAGMA wal_checkpoint(PASSIVE)")                                             \
    X(ST_INTEGRITY, "PRAGMA integrity_check")                                                     \
    WEBHOOK_STATEMENTS(X)

#define ST_ENUM_(name, sql) name,
enum stmt_id { STATEMENTS(ST_ENUM_) ST_COUNT };
#undef ST_ENUM_
#define ST_SQL_(name, sql) sql,
static const char *const STMT_SQL[ST_COUNT] = {STATEMENTS(ST_SQL_)};
#undef ST_SQL_

/* ---- multi-row writes ----------------------------------------------------------
 *
 * The batch writers (the event writer, the recorder) write up to MULTI_ROWS
 * rows per statement: one statement's work (starting and halting the
 * program, opening a cursor on the table and on each index, the statement
 * journal) then serves many rows; per row, that was most of the cost
 * (bench/bench_store.c measures it: ~31 us per event stored one by one,
 * ~11 us 32 at a time).  Statements of 32, 16, 8, 4, 2 and 1 rows, so a
 * batch of n rows takes at most n / 32 + 5 statements (an HTTP ingest's
 * batches are often under 32).  Row order, and so rowid order, is the
 * caller's. */
#define MULTI_ROWS 32
#define MULTI_SIZES 6

typedef enum {
    MR_EVENTS,
    MR_EXECUTIONS,
    MR_STEP_RUNS,
    MR_EV_STATUS,
    MR_OUTBOX,
    MR_DELIVERIES,
    MR_COUNT
} multi_kind;

/* A row's times, formatted; bound SQLITE_STATIC, so they live until the
 * statement is stepped. */
typedef struct row_times {
    char created[EVH_TIMESTAMP_LEN + 1], started[EVH_TIMESTAMP_LEN + 1],
        finished[EVH_TIMESTAMP_LEN + 1];
} row_times;

static const struct multi_sql {
    const char *head, *row, *sep, *tail;
    int params; /* per row */
} MULTI_SQL[MR_COUNT] = {
    [MR_EVENTS] = {"INSERT INTO events(id, source, event_type, data, user_id, additional_data, "
                   "timestamp, timestamp_us, chain_depth, status) VALUES",
                   "(?,?,?,?,?,?,?,?,?,?)", ",", "", 10},
    [MR_EXECUTIONS] = {"INSERT INTO workflow_executions(id, workflow_id, workflow_version, "
                       "trigger_id, event_id, status, created_at, replay_of, started_at, "
                       "finished_at, error) VALUES",
                       "(?,?,?,?,?,?,?,?,?,?,?)", ",", "", 11},
    [MR_STEP_RUNS] = {"INSERT INTO step_runs(execution_id, step_id, plugin, attempt, status, "
                      "started_at, finished_at, duration_ms, output, error, metrics) VALUES",
                      "(?,?,?,?,?,?,?,?,?,?,?)", ",",
                      " ON CONFLICT(execution_id, step_id, attempt) DO UPDATE SET "
                      "plugin = excluded.plugin, status = excluded.status, "
                      "started_at = excluded.started_at, finished_at = excluded.finished_at, "
                      "duration_ms = excluded.duration_ms, output = excluded.output, "
                      "error = excluded.error, metrics = excluded.metrics",
                      11},
    /* parameter 1 is the status; then the ids */
    [MR_EV_STATUS] = {"UPDATE events SET status = ? WHERE id IN (", "?", ",", ")", 1},
    /* the outbox's storing thread: each lifecycle event once, a delivery
     * per subscription taking it */
    [MR_OUTBOX] = {"INSERT INTO outbox_messages(message_id, event, job_id, body, created_at) "
                   "VALUES",
                   "(?,?,?,?,?)", ",", "", 5},
    [MR_DELIVERIES] = {"INSERT INTO deliveries(subscription_id, message, next_attempt_at, "
                       "created_at, updated_at) VALUES",
                       "(?,?,?,?,?)", ",", "", 5},
};

/* List filters, one bit each; a list query is cached per combination. */
enum {
    F_SOURCE = 1 << 0,
    F_TYPE = 1 << 1,
    F_STATUS = 1 << 2,
    F_WORKFLOW = 1 << 3,
    F_TRIGGER = 1 << 4,
    F_SINCE = 1 << 5,
    F_UNTIL = 1 << 6,
    F_CURSOR = 1 << 7,
    F_VARIANTS = 1 << 8
};

struct store {
    sqlite3 *db;
    char *path;
    int busy_ms;          /* how long a write waits for the lock (busy_wait) */
    int64_t busy_since_ns;
    sqlite3_stmt *stmts[ST_COUNT];
    sqlite3_stmt *ev_list[F_VARIANTS];
    sqlite3_stmt *ex_list[F_VARIANTS];
    sqlite3_stmt *multi[MR_COUNT][MULTI_SIZES]; /* see "multi-row writes" */
    int outer_tx; /* inside store_batch_begin: tx_begin/tx_end join that one */
    pthread_mutex_t *gate; /* its file's write gate (see "the write gate") */
    int gated;    /* holds the write gate (a transaction is open) */
    int outbox;   /* the outbox file (store_options.outbox), not the main database */
    char errmsg[512];
};

/* ---- waiting for the write lock ---------------------------------------------- */

static int64_t busy_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* SQLite's own busy handler sleeps whole milliseconds (1, 2, 5, 10 ...),
 * far longer than the sub-millisecond transactions the writer and the
 * workers hold, so every collision cost a millisecond or more.  This one
 * starts at 20 us and doubles up to 1 ms, until busy_ms have passed. */
static int busy_wait(void *arg, int count)
{
    store *s = arg;
    int64_t now = busy_now_ns();
    if (count == 0)
        s->busy_since_ns = now;
    if (now - s->busy_since_ns >= (int64_t)s->busy_ms * 1000000)
        return 0; /* give up: SQLITE_BUSY */
    long us = count < 6 ? 20L << count : 1000L;
    struct timespec d = {0, us * 1000};
    nanosleep(&d, NULL);
    return 1;
}

static void set_busy_timeout(store *s, int ms)
{
    s->busy_ms = ms;
    sqlite3_busy_handler(s->db, ms > 0 ? busy_wait : NULL, s);
}

/* ---- small helpers -------------------------------------------------------- */

static void set_err(store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(store *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->errmsg, sizeof s->errmsg, fmt, ap);
    va_end(ap);
}

/* Record a SQLite failure and map it to a status code. */
static int fail(store *s, int rc, const char *what)
{
    set_err(s, "%s: %s", what, sqlite3_errmsg(s->db));
    if (rc == SQLITE_NOMEM)
        return EVH_E_NOMEM;
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return EVH_E_INVALID;
    return EVH_E_IO;
}

/* The same for reads, where SQLITE_NOMEM may also be our own cJSON's
 * (sqlite3_errmsg would then say "not an error"). */
static int read_fail(store *s, int rc, const char *what)
{
    if (rc != SQLITE_NOMEM)
        return fail(s, rc, what);
    snprintf(s->errmsg, sizeof s->errmsg, "%s: out of memory", what);
    return EVH_E_NOMEM;
}

static sqlite3_stmt *prepare(store *s, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (rc != SQLITE_OK) {
        fail(s, rc, "preparing a statement");
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

/* The cached statement, prepared on first use; NULL (errmsg set) on error. */
static sqlite3_stmt *stmt(store *s, enum stmt_id which)
{
    if (!s->stmts[which])
        s->stmts[which] = prepare(s, STMT_SQL[which]);
    return s->stmts[which];
}

/* The largest statement size (32, 16, ... 2, 1 rows) that n rows fill. */
static int multi_rows_for(size_t n)
{
    int rows = MULTI_ROWS;
    while (rows > 1 && (size_t)rows > n)
        rows /= 2;
    return rows;
}

/* The cached statement of kind k for rows rows (a multi_rows_for
 * result); NULL (errmsg set) on error. */
static sqlite3_stmt *multi_stmt(store *s, multi_kind k, int rows)
{
    int slot = 0;
    while ((MULTI_ROWS >> slot) > rows)
        slot++;
    if (slot >= MULTI_SIZES || (MULTI_ROWS >> slot) != rows) {
        set_err(s, "no %d-row statement", rows);
        return NULL;
    }
    if (s->multi[k][slot])
        return s->multi[k][slot];
    const struct multi_sql *m = &MULTI_SQL[k];
    size_t len = strlen(m->head) + (size_t)rows * (strlen(m->row) + strlen(m->sep)) +
                 strlen(m->tail) + 1;
    char *sql = malloc(len);
    if (!sql) {
        set_err(s, "out of memory");
        return NULL;
    }
    char *p = stpcpy(sql, m->head);
    for (int i = 0; i < rows; i++)
        p = stpcpy(stpcpy(p, i ? m->sep : ""), m->row);
    strcpy(p, m->tail);
    s->multi[k][slot] = prepare(s, sql);
    free(sql);
    return s->multi[k][slot];
}

/* Ready a used statement for the next caller; values were bound
 * SQLITE_STATIC, so the bindings must go before the caller's strings do. */
static void done(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/*
 * Bind parameters 1, 2, ... from a type string:
 *   't' const char * (NULL binds NULL)   'n' const char *, size_t length
 *   'i' int64_t                           'd' double
 *   '-' NULL (no argument)
 * Values are bound SQLITE_STATIC: they must outlive the step (done()).
 */
static int vbind_at(sqlite3_stmt *st, int first, const char *types, va_list ap)
{
    int rc = SQLITE_OK;
    for (int i = 0; types[i] && rc == SQLITE_OK; i++) {
        int idx = first + i;
        switch (types[i]) {
        case 't': {
            const char *v = va_arg(ap, const char *);
            rc = v ? sqlite3_bind_text(st, idx, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, idx);
            break;
        }
        case 'n': {
            const char *v = va_arg(ap, const char *);
            size_t len = va_arg(ap, size_t);
            rc = len > (size_t)INT32_MAX ? SQLITE_TOOBIG
                                         : sqlite3_bind_text(st, idx, v, (int)len, SQLITE_STATIC);
            break;
        }
        case 'i':
            rc = sqlite3_bind_int64(st, idx, va_arg(ap, int64_t));
            break;
        case 'd':
            rc = sqlite3_bind_double(st, idx, va_arg(ap, double));
            break;
        case '-':
            rc = sqlite3_bind_null(st, idx);
            break;
        default:
            rc = SQLITE_MISUSE;
        }
    }
    return rc;
}

static int bind(sqlite3_stmt *st, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int rc = vbind_at(st, 1, types, ap);
    va_end(ap);
    return rc;
}

/* bind() from parameter first on: one row of a multi-row statement. */
static int bind_at(sqlite3_stmt *st, int first, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int rc = vbind_at(st, first, types, ap);
    va_end(ap);
    return rc;
}

/* Step a statement that returns no rows; the caller calls done(). */
static int step_done(store *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    return rc == SQLITE_DONE ? EVH_OK : fail(s, rc, what);
}

/* Run a cached statement without parameters or rows. */
static int run(store *s, enum stmt_id which, const char *what)
{
    sqlite3_stmt *st = stmt(s, which);
    if (!st)
        return EVH_E_IO;
    int rc = step_done(s, st, what);
    done(st);
    return rc;
}

/* ---- the write gate ------------------------------------------------------------
 *
 * Several threads of this process write: the event writer, the recorder,
 * the notifier, the API.  SQLite lets one write at a time and makes the
 * others poll (busy_wait), and a poll sleeps past the moment the lock frees:
 * the writer and the recorder lost a quarter of the time at 5,000 events/s
 * sleeping so (measured: 1.1 s of sleep in a 4 s run), which was most of
 * the pipeline's latency.  So this process's write transactions queue on a
 * mutex first, which hands over the moment the holder commits; SQLite's
 * lock, and busy_wait, remain for other processes (the CLI, a sqlite3
 * shell).  One gate per database file, as SQLite has one lock per file:
 * writers of different files do not wait for each other.  A file is known
 * by its device and inode, so two names of one file share its gate.  Gates
 * are made on first open and kept until the process ends (a process opens
 * a few files). */
typedef struct write_gate {
    struct write_gate *next;
    dev_t dev;
    ino_t ino;
    pthread_mutex_t lock;
} write_gate;

static pthread_mutex_t gates_lock = PTHREAD_MUTEX_INITIALIZER;
static write_gate *gates;

/* The gate of the database file at path (which exists); NULL when it
 * cannot be looked at or on out-of-memory. */
static pthread_mutex_t *gate_of(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return NULL;
    pthread_mutex_lock(&gates_lock);
    write_gate *g = gates;
    while (g && (g->dev != st.st_dev || g->ino != st.st_ino))
        g = g->next;
    if (!g && (g = calloc(1, sizeof *g))) {
        g->dev = st.st_dev;
        g->ino = st.st_ino;
        pthread_mutex_init(&g->lock, NULL);
        g->next = gates;
        gates = g;
    }
    pthread_mutex_unlock(&gates_lock);
    return g ? &g->lock : NULL;
}

static int gate_enter(store *s)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    int64_t ns = until.tv_nsec + (int64_t)(s->busy_ms > 0 ? s->busy_ms : 0) * 1000000;
    until.tv_sec += (time_t)(ns / 1000000000);
    until.tv_nsec = (long)(ns % 1000000000);
    int rc = pthread_mutex_timedlock(s->gate, &until);
    if (rc != 0) {
        set_err(s, "beginning a transaction: the database stayed busy for %d ms", s->busy_ms);
        return EVH_E_IO;
    }
    s->gated = 1;
    return EVH_OK;
}

static void gate_leave(store *s)
{
    if (s->gated) {
        s->gated = 0;
        pthread_mutex_unlock(s->gate);
    }
}

static int tx_begin(store *s)
{
    if (s->outer_tx)
        return EVH_OK;
    int rc = gate_enter(s);
    if (rc == EVH_OK)
        rc = run(s, ST_BEGIN, "beginning a transaction");
    if (rc != EVH_OK)
        gate_leave(s);
    return rc;
}

static int tx_commit(store *s)
{
    return run(s, ST_COMMIT, "committing");
}

/* Best effort: a failed statement may already have rolled back. */
static void tx_rollback(store *s)
{
    if (!sqlite3_get_autocommit(s->db)) {
        char keep[sizeof s->errmsg];
        memcpy(keep, s->errmsg, sizeof keep); /* the first error is the one to report */
        run(s, ST_ROLLBACK, "rolling back");
        memcpy(s->errmsg, keep, sizeof keep);
    }
}

static int tx_end(store *s, int rc)
{
    if (s->outer_tx)
        return rc; /* the batch's owner commits (store_batch_end) */
    if (rc == EVH_OK)
        rc = tx_commit(s);
    if (rc != EVH_OK)
        tx_rollback(s);
    gate_leave(s);
    return rc;
}

int store_batch_begin(store *s)
{
    if (!s || s->outer_tx)
        return EVH_E_INVALID;
    int rc = tx_begin(s);
    s->outer_tx = rc == EVH_OK;
    return rc;
}

int store_batch_end(store *s, int rc)
{
    if (!s || !s->outer_tx)
        return EVH_E_INVALID;
    s->outer_tx = 0;
    return tx_end(s, rc);
}

static int exec_sql(store *s, const char *sql, const char *what);

void store_set_cache_kib(store *s, int kib)
{
    char sql[48];
    snprintf(sql, sizeof sql, "PRAGMA cache_size=-%d", kib > 0 ? kib : 2048);
    if (s)
        exec_sql(s, sql, "setting cache_size");
}

void store_defer_checkpoints(store *s)
{
    if (s)
        sqlite3_wal_autocheckpoint(s->db, 0);
}

int store_checkpoint(store *s, int *wal_frames)
{
    int log = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    if (wal_frames)
        *wal_frames = log;
    /* BUSY: another checkpoint runs; it does the work */
    return rc == SQLITE_OK || rc == SQLITE_BUSY ? EVH_OK : fail(s, rc, "checkpointing");
}

static int one_of(const char *v, const char *const *list)
{
    for (; v && *list; list++) {
        if (!strcmp(v, *list))
            return 1;
    }
    return 0;
}

static const char *const EVENT_STATUSES[] = {"pending", "dispatched", "unmatched", NULL};
static const char *const EXEC_STATUSES[] = {"queued", "running", "succeeded", "failed", NULL};
static const char *const STEP_STATUSES[] = {"running", "succeeded", "failed", "skipped", NULL};

/* ---- time ------------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char *p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 1;
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return days[m - 1] + (m == 2 && leap);
}

/* Parse the fraction and zone after "YYYY-MM-DDTHH:MM:SS"; 0 when bad. */
static int parse_zone(const char *p, int64_t *frac_us, int64_t *offset_s)
{
    *frac_us = 0;
    *offset_s = 0;
    if (*p == '.') {
        int64_t scale = 100000;
        int n = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, n++) {
            *frac_us += (*p - '0') * scale;
            scale /= 10;
        }
        if (n == 0)
            return 0;
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
        return 1;
    int hh, mm;
    if ((*p != '+' && *p != '-') || !digits(p + 1, 2, &hh) || p[3] != ':' ||
        !digits(p + 4, 2, &mm) || p[6] != '\0' || hh > 23 || mm > 59)
        return 0;
    *offset_s = (*p == '-' ? -1 : 1) * (hh * 3600 + mm * 60);
    return 1;
}

/* RFC 3339 date-time -> microseconds since the epoch; 0 when malformed. */
static int parse_rfc3339(const char *t, int64_t *us)
{
    int y, mo, d, h, mi, sec;
    if (strlen(t) < 20 || !digits(t, 4, &y) || t[4] != '-' || !digits(t + 5, 2, &mo) ||
        t[7] != '-' || !digits(t + 8, 2, &d) || (t[10] != 'T' && t[10] != 't') ||
        !digits(t + 11, 2, &h) || t[13] != ':' || !digits(t + 14, 2, &mi) || t[16] != ':' ||
        !digits(t + 17, 2, &sec))
        return 0;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60)
        return 0;
    int64_t frac, offset;
    if (!parse_zone(t + 19, &frac, &offset))
        return 0;
    int64_t s = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
    *us = s * 1000000 + frac;
    return 1;
}

/* Microseconds since the epoch -> "2026-11-23T10:30:00.123Z". */
static void format_us(int64_t us, char out[EVH_TIMESTAMP_LEN + 1])
{
    int64_t secs = us / 1000000, rem = us % 1000000;
    if (rem < 0) {
        secs--;
        rem += 1000000;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    char head[32];
    if (!gmtime_r(&t, &tm) || strftime(head, sizeof head, "%Y-%m-%dT%H:%M:%S", &tm) != 19)
        snprintf(head, sizeof head, "0000-00-00T00:00:00");
    snprintf(out, EVH_TIMESTAMP_LEN + 1, "%.19s.%03uZ", head, (unsigned)(rem / 1000) % 1000u);
}

static int64_t now_us(void)
{
    char ignored[EVH_TIMESTAMP_LEN + 1];
    return rfc3339_now(ignored);
}

/* ---- JSON of rows ------------------------------------------------------------ */

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/* Attach item (deleted when it cannot be); 0 on failure. */
static int add_item(cJSON *obj, const char *key, cJSON *item)
{
    if (!item)
        return 0;
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

/* A text column as a string, or null. */
static cJSON *col_string(sqlite3_stmt *st, int i)
{
    const char *v = col_text(st, i);
    return v ? cJSON_CreateString(v) : cJSON_CreateNull();
}

/* A JSON text column parsed, or when_null for NULL.  Text that does not
 * parse (written by hand?) is returned as a string rather than lost. */
static cJSON *col_json(sqlite3_stmt *st, int i, int null_as_object)
{
    const char *v = col_text(st, i);
    if (!v)
        return null_as_object ? cJSON_CreateObject() : cJSON_CreateNull();
    cJSON *j = cJSON_ParseWithLength(v, (size_t)sqlite3_column_bytes(st, i));
    return j ? j : cJSON_CreateString(v);
}

/* Add the text columns named in keys ("" skips one) starting at column 0. */
static int add_strings(cJSON *obj, sqlite3_stmt *st, const char *const *keys, int n)
{
    for (int i = 0; i < n; i++) {
        if (keys[i][0] && !add_item(obj, keys[i], col_string(st, i)))
            return 0;
    }
    return 1;
}

static cJSON *finish(cJSON *obj, int ok)
{
    if (ok)
        return obj;
    cJSON_Delete(obj);
    return NULL;
}

/* Row of EV_COLS -> the envelope plus status. */
static cJSON *event_row(sqlite3_stmt *st)
{
    cJSON *env = cJSON_CreateObject();
    cJSON *meta = cJSON_CreateObject();
    int ok = env && meta && add_item(env, "id", col_string(st, 1)) &&
             add_item(env, "event_type", col_string(st, 3)) &&
             add_item(env, "source", col_string(st, 2)) &&
             add_item(env, "data", col_json(st, 4, 0)) &&
             add_item(meta, "source", col_string(st, 2)) &&
             add_item(meta, "timestamp", col_string(st, 7)) &&
             add_item(meta, "user_id", col_string(st, 5)) &&
             add_item(meta, "additional_data", col_json(st, 6, 1));
    if (ok) {
        ok = add_item(env, "metadata", meta);
        meta = NULL;
    }
    ok = ok && add_item(env, "status", col_string(st, 8));
    cJSON_Delete(meta);
    return finish(env, ok);
}

/* Row of EX_COLS -> an execution object. */
static cJSON *execution_row(sqlite3_stmt *st)
{
    static const char *const keys[] = {
        "id",         "workflow_id", "workflow_version", "trigger_id", "event_id", "status",
        "created_at", "started_at",  "finished_at",      "error",      "replay_of"};
    cJSON *o = cJSON_CreateObject();
    return finish(o, o && add_strings(o, st, keys, 11));
}

/* Row of STEP_COLS -> a step run object. */
static cJSON *step_row(sqlite3_stmt *st)
{
    static const char *const keys[] = {"",       "step_id",    "plugin",     "",
                                       "status", "started_at", "finished_at"};
    cJSON *o = cJSON_CreateObject();
    int ok = o && add_item(o, "id", cJSON_CreateNumber((double)sqlite3_column_int64(st, 0))) &&
             add_strings(o, st, keys, 7) &&
             add_item(o, "attempt", cJSON_CreateNumber(sqlite3_column_int(st, 3))) &&
             add_item(o, "duration_ms",
                      sqlite3_column_type(st, 7) == SQLITE_NULL
                          ? cJSON_CreateNull()
                          : cJSON_CreateNumber(sqlite3_column_double(st, 7))) &&
             add_item(o, "output", col_json(st, 8, 0)) && add_item(o, "error", col_string(st, 9)) &&
             add_item(o, "metrics", col_json(st, 10, 0));
    return finish(o, ok);
}

/* Row of TR_COLS -> a trigger object. */
static cJSON *trigger_row(sqlite3_stmt *st)
{
    static const char *const keys[] = {"id", "name", "source", "event_type", "workflow_id"};
    cJSON *o = cJSON_CreateObject();
    int ok = o && add_strings(o, st, keys, 5) && add_item(o, "conditions", col_json(st, 5, 0)) &&
             add_item(o, "enabled", cJSON_CreateBool(sqlite3_column_int(st, 6) != 0)) &&
             add_item(o, "origin", col_string(st, 7)) &&
             add_item(o, "created_at", col_string(st, 8)) &&
             add_item(o, "updated_at", col_string(st, 9));
    return finish(o, ok);
}

/* Run a prepared query with at most one row through make(); NULL when there
 * is no row (errmsg "" then) or on error.  Resets st. */
static cJSON *query_one(store *s, sqlite3_stmt *st, cJSON *(*make)(sqlite3_stmt *))
{
    s->errmsg[0] = '\0';
    cJSON *out = NULL;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out = make(st);
        if (!out)
            read_fail(s, SQLITE_NOMEM, "reading a row");
    } else if (rc != SQLITE_DONE) {
        fail(s, rc, "reading a row");
    }
    done(st);
    return out;
}

/* The row of statement `which` whose one text parameter is id, made by
 * make; NULL when there is none (or on error: errmsg says which). */
static cJSON *get_by_id(store *s, enum stmt_id which, const char *id,
                        cJSON *(*make)(sqlite3_stmt *))
{
    if (!s || !id)
        return NULL;
    sqlite3_stmt *st = stmt(s, which);
    if (!st || bind(st, "t", id) != SQLITE_OK) {
        done(st);
        return NULL;
    }
    return query_one(s, st, make);
}

/* Every row of a prepared query through make(), as an array; NULL on error.
 * Resets st. */
static cJSON *query_all(store *s, sqlite3_stmt *st, cJSON *(*make)(sqlite3_stmt *))
{
    cJSON *arr = cJSON_CreateArray();
    int rc = SQLITE_NOMEM;
    if (arr) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            cJSON *row = make(st);
            if (!row) {
                rc = SQLITE_NOMEM;
                break;
            }
            cJSON_AddItemToArray(arr, row);
        }
    }
    if (rc != SQLITE_DONE) {
        read_fail(s, rc, "reading rows");
        cJSON_Delete(arr);
        arr = NULL;
    }
    done(st);
    return arr;
}

/* ---- open and close --------------------------------------------------------- */

/* Create the file ourselves so that it is 0600 from its first byte (SQLite
 * would use 0644); the -wal and -shm files copy the database's mode. */
/* Create a missing database file with mode 0600 (SQLite would use 0644).
 * Never open and close an existing one: close() drops every POSIX lock
 * this process holds on the file, including those of connections other
 * threads are using, and another process may then write under them (the
 * "howtocorrupt" case of the SQLite documentation). */
static int create_file(store *s)
{
    if (access(s->path, F_OK) == 0)
        return EVH_OK;
    int fd = open(s->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST)
        return EVH_OK; /* created by someone else meanwhile: theirs */
    if (fd < 0) {
        set_err(s, "cannot create: %s", strerror(errno));
        return EVH_E_IO;
    }
    close(fd);
    return EVH_OK;
}

static int exec_sql(store *s, const char *sql, const char *what)
{
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        set_err(s, "%s: %s", what, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return rc == SQLITE_NOMEM ? EVH_E_NOMEM : EVH_E_IO;
    }
    return EVH_OK;
}

static int set_wal(store *s)
{
    sqlite3_stmt *st = prepare(s, "PRAGMA journal_mode=WAL");
    if (!st)
        return EVH_E_IO;
    int rc = sqlite3_step(st);
    int ok = rc == SQLITE_ROW && col_text(st, 0) && !strcmp(col_text(st, 0), "wal");
    if (!ok && rc == SQLITE_ROW)
        set_err(s, "cannot use WAL mode (journal mode stays '%s')", col_text(st, 0));
    else if (!ok)
        fail(s, rc, "setting WAL mode");
    sqlite3_finalize(st);
    return ok ? EVH_OK : EVH_E_IO;
}

static int configure(store *s, int synchronous_full)
{
    sqlite3_extended_result_codes(s->db, 1);
    set_busy_timeout(s, BUSY_TIMEOUT_MS);
    sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    /* auto_vacuum only takes effect before the first table exists, so it
     * goes first, before WAL mode writes the header. */
    int rc = exec_sql(s, "PRAGMA auto_vacuum=INCREMENTAL", "setting auto_vacuum");
    if (rc == EVH_OK)
        rc = set_wal(s);
    if (rc == EVH_OK)
        rc = exec_sql(s, synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                      "setting synchronous");
    if (rc == EVH_OK)
        rc = exec_sql(s, "PRAGMA foreign_keys=ON", "enabling foreign keys");
    /* Read database pages through a shared mapping instead of one pread
     * each (the writers re-read index pages constantly); best effort. */
    if (rc == EVH_OK)
        exec_sql(s, "PRAGMA mmap_size=268435456", "setting mmap_size");
    return rc;
}

static int schema_version(store *s, int64_t *v);

/* The newest migration of s's kind of file. */
static int64_t newest_version(const store *s)
{
    return s->outbox ? STORE_OUTBOX_SCHEMA_VERSION : STORE_SCHEMA_VERSION;
}

/* A reader (the CLI) changes nothing: no pragmas that write, no
 * migrations; it only needs a database the daemon has set up. */
static int check_readable(store *s)
{
    sqlite3_extended_result_codes(s->db, 1);
    set_busy_timeout(s, BUSY_TIMEOUT_MS);
    int64_t v = 0;
    int rc = schema_version(s, &v);
    if (rc == EVH_OK && v < 1) {
        set_err(s, "no evhost tables yet (the daemon has not finished creating it)");
        rc = EVH_E_NOT_FOUND;
    } else if (rc == EVH_OK && v > newest_version(s)) {
        set_err(s, "schema version %lld is newer than this evhost knows (%lld)", (long long)v,
                (long long)newest_version(s));
        rc = EVH_E_UNSUPPORTED;
    }
    return rc;
}

static int schema_version(store *s, int64_t *v)
{
    sqlite3_stmt *st = stmt(s, ST_VERSION);
    if (!st)
        return EVH_E_IO;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *v = sqlite3_column_int64(st, 0);
    int out = rc == SQLITE_ROW ? EVH_OK : fail(s, rc, "reading the schema version");
    done(st);
    return out;
}

static int record_migration(store *s, int version)
{
    char now[EVH_TIMESTAMP_LEN + 1];
    rfc3339_now(now);
    sqlite3_stmt *st = stmt(s, ST_MIGRATED);
    if (!st)
        return EVH_E_IO;
    int rc = bind(st, "it", (int64_t)version, now);
    rc = rc == SQLITE_OK ? step_done(s, st, "recording a migration") : fail(s, rc, "binding");
    done(st);
    return rc;
}

/* After a migration that ran with foreign keys off: does every reference
 * still hold?  (SQLite's own procedure for changing a table's schema.) */
static int foreign_keys_hold(store *s, int version)
{
    sqlite3_stmt *st = prepare(s, "PRAGMA foreign_key_check");
    if (!st)
        return EVH_E_IO;
    int rc = sqlite3_step(st);
    int out = EVH_OK;
    if (rc == SQLITE_ROW) {
        set_err(s, "migration %d left a row of '%s' without its '%s' row", version,
                col_text(st, 0) ? col_text(st, 0) : "?", col_text(st, 2) ? col_text(st, 2) : "?");
        out = EVH_E_IO;
    } else if (rc != SQLITE_DONE) {
        out = fail(s, rc, "checking foreign keys");
    }
    sqlite3_finalize(st);
    return out;
}

/* Apply m unless the database has it; the version is read inside the write
 * transaction so two processes opening a new file at once do not both
 * apply it. */
static int migrate_one(store *s, const migration *m)
{
    int rc = tx_begin(s);
    if (rc != EVH_OK)
        return rc;
    rc = exec_sql(s,
                  "CREATE TABLE IF NOT EXISTS schema_migrations("
                  "version INTEGER PRIMARY KEY, applied_at TEXT)",
                  "creating schema_migrations");
    int64_t v = 0;
    if (rc == EVH_OK)
        rc = schema_version(s, &v);
    if (rc == EVH_OK && v > newest_version(s)) {
        set_err(s,
                "%s schema version %lld is newer than this evhost supports (%lld); "
                "run a newer evhost or use another database file",
                s->outbox ? "outbox" : "database", (long long)v, (long long)newest_version(s));
        rc = EVH_E_UNSUPPORTED;
    }
    if (rc == EVH_OK && v < m->version) {
        char what[64];
        snprintf(what, sizeof what, "applying migration %d", m->version);
        rc = exec_sql(s, m->sql, what);
        if (rc == EVH_OK && m->fk_off)
            rc = foreign_keys_hold(s, m->version);
        if (rc == EVH_OK)
            rc = record_migration(s, m->version);
    }
    return tx_end(s, rc);
}

static int migrate(store *s)
{
    const migration *list = s->outbox ? OUTBOX_MIGRATIONS : MIGRATIONS;
    size_t n = s->outbox ? N_OUTBOX_MIGRATIONS : N_MIGRATIONS;
    for (size_t i = 0; i < n; i++) {
        const migration *m = &list[i];
        int rc = m->before ? m->before(s) : EVH_OK;
        /* PRAGMA foreign_keys is a no-op inside a transaction: set around it */
        if (rc == EVH_OK && m->fk_off)
            rc = exec_sql(s, "PRAGMA foreign_keys=OFF", "disabling foreign keys");
        if (rc == EVH_OK)
            rc = migrate_one(s, m);
        if (m->fk_off) {
            int on = exec_sql(s, "PRAGMA foreign_keys=ON", "enabling foreign keys");
            rc = rc == EVH_OK ? on : rc;
        }
        if (rc != EVH_OK)
            return rc;
    }
    return EVH_OK;
}

char *store_outbox_path(const char *db_path)
{
    if (!db_path)
        return NULL;
    size_t n = strlen(db_path);
    int dot_db = n > 3 && !strcmp(db_path + n - 3, ".db");
    char *out = NULL;
    if (asprintf(&out, "%.*s-outbox.db", (int)(dot_db ? n - 3 : n), db_path) < 0)
        return NULL;
    return out;
}

/* Has the main database anything in the tables migration 5 moves?  Only
 * then is the outbox file made here (a new database has nothing; the
 * notifier makes its file when it opens it). */
static int outbox_has_rows(store *s, int *yes)
{
    sqlite3_stmt *st = prepare(s, "SELECT EXISTS (SELECT 1 FROM subscriptions)"
                                  " OR EXISTS (SELECT 1 FROM outbox_messages)"
                                  " OR EXISTS (SELECT 1 FROM deliveries)");
    if (!st)
        return EVH_E_IO;
    int rc = sqlite3_step(st);
    *yes = rc == SQLITE_ROW && sqlite3_column_int(st, 0);
    int out = rc == SQLITE_ROW ? EVH_OK : fail(s, rc, "looking at the outbox");
    sqlite3_finalize(st);
    return out;
}

/* The first half of migration 5: copy the outbox's rows into the outbox
 * file, in a transaction of their own, committed with fsync before
 * migration 5 drops them here.  A crash between the two leaves both copies
 * and the database at version 4, and the next open copies again
 * (OUTBOX_COPY ignores what is there already). */
static int move_outbox(store *s)
{
    int64_t v = 0;
    int yes = 0;
    int rc = schema_version(s, &v);
    if (rc != EVH_OK || v >= 5 || (rc = outbox_has_rows(s, &yes)) != EVH_OK || !yes)
        return rc;
    char *path = store_outbox_path(s->path);
    if (!path) {
        set_err(s, "migration 5: out of memory");
        return EVH_E_NOMEM;
    }
    store *ob = NULL;
    char *err = NULL;
    rc = store_open(&(store_options){.path = path, .outbox = 1, .synchronous_full = 1}, &ob, &err);
    store_close(ob); /* made with its tables; the copy goes through the attachment */
    if (rc != EVH_OK) {
        set_err(s, "migration 5, moving the outbox out: %s", err ? err : "cannot open it");
        free(err);
        free(path);
        return rc;
    }
    sqlite3_stmt *at = prepare(s, "ATTACH ?1 AS outbox");
    int src = at ? sqlite3_bind_text(at, 1, path, -1, SQLITE_STATIC) : SQLITE_ERROR;
    src = src == SQLITE_OK ? sqlite3_step(at) : src;
    sqlite3_finalize(at);
    free(path);
    if (!at)
        return EVH_E_IO;
    if (src != SQLITE_DONE)
        return fail(s, src, "migration 5: attaching the outbox file");
    rc = exec_sql(s, "PRAGMA outbox.synchronous=FULL", "migration 5: setting synchronous");
    if (rc == EVH_OK && (rc = tx_begin(s)) == EVH_OK)
        rc = tx_end(s, exec_sql(s, OUTBOX_COPY, "migration 5: copying the outbox"));
    int det = exec_sql(s, "DETACH outbox", "migration 5: detaching the outbox file");
    return rc == EVH_OK ? det : rc;
}

static void open_error(char **err, const char *path, const char *reason)
{
    if (!err)
        return;
    const char *p = path ? path : "(no path)";
    size_t n = strlen(p) + strlen(reason) + 3;
    *err = malloc(n);
    if (*err)
        snprintf(*err, n, "%s: %s", p, reason);
}

int store_open(const store_options *o, store **out, char **err)
{
    if (err)
        *err = NULL;
    if (!out)
        return EVH_E_INVALID;
    *out = NULL;
    if (!o || !o->path || !o->path[0]) {
        open_error(err, o ? o->path : NULL, "no database path given");
        return EVH_E_INVALID;
    }
    store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(o->path))) {
        free(s);
        open_error(err, o->path, "out of memory");
        return EVH_E_NOMEM;
    }
    s->outbox = o->outbox;
    int rc = o->read_only ? EVH_OK : create_file(s);
    if (rc == EVH_OK) {
        int flags = (o->read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) |
                    SQLITE_OPEN_NOMUTEX;
        int src = sqlite3_open_v2(s->path, &s->db, flags, NULL);
        rc = src == SQLITE_OK ? EVH_OK : fail(s, src, "cannot open");
    }
    if (rc == EVH_OK && !(s->gate = gate_of(s->path))) {
        set_err(s, "cannot look at the file: %s", strerror(errno));
        rc = EVH_E_IO;
    }
    if (rc == EVH_OK && o->read_only)
        rc = check_readable(s);
    else if (rc == EVH_OK)
        rc = configure(s, o->synchronous_full);
    if (rc == EVH_OK && !o->read_only)
        rc = migrate(s);
    if (rc != EVH_OK) {
        open_error(err, o->path, s->errmsg);
        store_close(s);
        return rc;
    }
    *out = s;
    return EVH_OK;
}

static void finalize_all(sqlite3_stmt **list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sqlite3_finalize(list[i]);
        list[i] = NULL;
    }
}

void store_close(store *s)
{
    if (!s)
        return;
    gate_leave(s); /* closing rolls an open transaction back */
    finalize_all(s->stmts, ST_COUNT);
    finalize_all(s->ev_list, F_VARIANTS);
    finalize_all(s->ex_list, F_VARIANTS);
    for (int k = 0; k < MR_COUNT; k++)
        finalize_all(s->multi[k], MULTI_SIZES);
    sqlite3_close(s->db); /* every statement is finalized: this cannot be busy */
    free(s->path);
    free(s);
}

const char *store_path(const store *s)
{
    return s ? s->path : NULL;
}

const char *store_errmsg(store *s)
{
    return s ? s->errmsg : "no store";
}

/* ---- events ----------------------------------------------------------------- */

static int event_valid(const evh_event *ev)
{
    return ev && ev->source && ev->event_type && ev->data_json && ev->id[0] && ev->timestamp[0];
}

static int insert_event(store *s, sqlite3_stmt *st, evh_event *ev)
{
    int rc = bind(st, "tttntttitii", ev->id, ev->source, ev->event_type, ev->data_json,
                  ev->data_len, ev->user_id, ev->additional_json, ev->timestamp,
                  (int64_t)ev->timestamp_us, ev->idempotency_key, (int64_t)ev->chain_depth,
                  (int64_t)(ev->unmatched != 0));
    int out = rc == SQLITE_OK ? step_done(s, st, "storing an event") : fail(s, rc, "binding");
    /* no change: the idempotency key was seen before, the event is not new */
    if (out == EVH_OK)
        ev->seq = sqlite3_changes(s->db) == 1 ? sqlite3_last_insert_rowid(s->db) : 0;
    done(st);
    return out;
}

/* Binds row `row` of the caller's rows (ctx) from parameter first on, in
 * MULTI_SQL's column order for its kind. */
typedef int (*row_binder)(sqlite3_stmt *st, int first, size_t row, const void *ctx);

/* One INSERT of kind k writing rows rows (a multi_rows_for size), rows
 * from, from + 1, ... of ctx; the ids they got go to ids[0..rows).  The
 * rows went in in order, under the write lock: their ids are the ones
 * ending at the last (AUTOINCREMENT takes the sequence's next, an INTEGER
 * PRIMARY KEY without it the table's max + 1). */
static int insert_rows(store *s, multi_kind k, int rows, row_binder bind_row, const void *ctx,
                       size_t from, const char *doing, int64_t *ids)
{
    sqlite3_stmt *st = multi_stmt(s, k, rows);
    if (!st)
        return EVH_E_IO;
    int rc = SQLITE_OK;
    for (int r = 0; r < rows && rc == SQLITE_OK; r++)
        rc = bind_row(st, 1 + r * MULTI_SQL[k].params, from + (size_t)r, ctx);
    int out = rc == SQLITE_OK ? step_done(s, st, doing) : fail(s, rc, "binding");
    if (out == EVH_OK && sqlite3_changes(s->db) != rows) {
        set_err(s, "%s: %d of %d rows written", doing, sqlite3_changes(s->db), rows);
        out = EVH_E_IO;
    }
    int64_t last = sqlite3_last_insert_rowid(s->db);
    for (int r = 0; out == EVH_OK && r < rows; r++)
        ids[r] = last - (rows - 1) + r;
    done(st);
    return out;
}

static int bind_event_row(sqlite3_stmt *st, int first, size_t row, const void *ctx)
{
    const evh_event *ev = ((evh_event *const *)ctx)[row];
    return bind_at(st, first, "tttntttiit", ev->id, ev->source, ev->event_type, ev->data_json,
                   ev->data_len, ev->user_id, ev->additional_json, ev->timestamp,
                   (int64_t)ev->timestamp_us, (int64_t)ev->chain_depth,
                   ev->unmatched ? "unmatched" : "pending");
}

/* rows events (a multi_rows_for size) without an idempotency key (so none
 * can be skipped as seen before) in one statement; each gets its seq. */
static int insert_events_multi(store *s, evh_event *const *evs, int rows)
{
    int64_t seqs[MULTI_ROWS];
    int rc = insert_rows(s, MR_EVENTS, rows, bind_event_row, evs, 0, "storing events", seqs);
    for (int i = 0; rc == EVH_OK && i < rows; i++)
        evs[i]->seq = seqs[i];
    return rc;
}

/* How many of evs[0..n) from the first on have no idempotency key (at most
 * MULTI_ROWS). */
static size_t keyless_run(evh_event *const *evs, size_t n)
{
    size_t k = 0;
    while (k < n && k < MULTI_ROWS && !evs[k]->idempotency_key)
        k++;
    return k;
}

int store_events_insert(store *s, evh_event *const *evs, size_t n)
{
    if (!s || (n && !evs))
        return EVH_E_INVALID;
    for (size_t i = 0; i < n; i++) {
        if (!event_valid(evs[i])) {
            set_err(s, "event %zu of the batch lacks a field", i);
            return EVH_E_INVALID;
        }
    }
    if (n == 0)
        return EVH_OK;
    sqlite3_stmt *st = stmt(s, ST_EV_INSERT);
    int rc = st ? tx_begin(s) : EVH_E_IO;
    if (rc != EVH_OK)
        return rc;
    for (size_t i = 0; i < n && rc == EVH_OK;) {
        int rows = multi_rows_for(keyless_run(evs + i, n - i));
        if (rows > 1) {
            rc = insert_events_multi(s, evs + i, rows);
            i += (size_t)rows;
        } else {
            rc = insert_event(s, st, evs[i++]);
        }
    }
    rc = tx_end(s, rc);
    if (rc != EVH_OK) {
        for (size_t i = 0; i < n; i++)
            evs[i]->seq = 0; /* rolled back: none of them is stored */
    }
    return rc;
}

static int update_event_status(store *s, const char *id, const char *status, int *changed)
{
    sqlite3_stmt *st = stmt(s, ST_EV_STATUS);
    if (!st)
        return EVH_E_IO;
    int rc = bind(st, "tt", id, status);
    rc = rc == SQLITE_OK ? step_done(s, st, "updating an event") : fail(s, rc, "binding");
    *changed = rc == EVH_OK && sqlite3_changes(s->db) > 0;
    done(st);
    return rc;
}

int store_event_set_status(store *s, const char *event_id, const char *status)
{
    if (!s || !event_id)
        return EVH_E_INVALID;
    if (!one_of(status, EVENT_STATUSES)) {
        set_err(s, "invalid event status '%s'", status ? status : "(null)");
        return EVH_E_INVALID;
    }
    int changed = 0;
    int rc = update_event_status(s, event_id, status, &changed);
    if (rc == EVH_OK && !changed) {
        set_err(s, "no event '%s'", event_id);
        rc = EVH_E_NOT_FOUND;
    }
    return rc;
}

int store_events_set_status(store *s, const char *const *ids, size_t n, const char *status)
{
    if (!s || (n && !ids))
        return EVH_E_INVALID;
    if (!one_of(status, EVENT_STATUSES)) {
        set_err(s, "invalid event status '%s'", status ? status : "(null)");
        return EVH_E_INVALID;
    }
    if (n == 0)
        return EVH_OK;
    for (size_t i = 0; i < n; i++) {
        if (!ids[i])
            return EVH_E_INVALID;
    }
    int rc = tx_begin(s);
    if (rc != EVH_OK)
        return rc;
    size_t i = 0;
    for (int rows; (rows = multi_rows_for(n - i)) > 1 && rc == EVH_OK; i += (size_t)rows) {
        sqlite3_stmt *st = multi_stmt(s, MR_EV_STATUS, rows);
        if (!st) {
            rc = EVH_E_IO;
            break;
        }
        int brc = sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
        for (int k = 0; k < rows && brc == SQLITE_OK; k++)
            brc = sqlite3_bind_text(st, 2 + k, ids[i + k], -1, SQLITE_STATIC);
        rc = brc == SQLITE_OK ? step_done(s, st, "updating events") : fail(s, brc, "binding");
        done(st);
    }
    for (; i < n && rc == EVH_OK; i++) {
        int changed;
        rc = update_event_status(s, ids[i], status, &changed);
    }
    return tx_end(s, rc);
}

static char *col_dup(sqlite3_stmt *st, int i)
{
    const char *v = col_text(st, i);
    return v ? strdup(v) : NULL;
}

/* Row of ST_EV_PENDING -> a new event; NULL on out-of-memory. */
static evh_event *pending_row(sqlite3_stmt *st)
{
    evh_event *ev = calloc(1, sizeof *ev);
    if (!ev)
        return NULL;
    ev->seq = sqlite3_column_int64(st, 0);
    snprintf(ev->id, sizeof ev->id, "%s", col_text(st, 1) ? col_text(st, 1) : "");
    ev->source = col_dup(st, 2);
    ev->event_type = col_dup(st, 3);
    ev->data_json = col_dup(st, 4);
    ev->data_len = (size_t)sqlite3_column_bytes(st, 4);
    ev->user_id = col_dup(st, 5);
    ev->additional_json = col_dup(st, 6);
    snprintf(ev->timestamp, sizeof ev->timestamp, "%s", col_text(st, 7) ? col_text(st, 7) : "");
    ev->timestamp_us = sqlite3_column_int64(st, 8);
    ev->chain_depth = (uint32_t)sqlite3_column_int64(st, 9);
    ev->idempotency_key = col_dup(st, 10);
    ev->enqueued_ns = monotonic_ns();
    if (!ev->source || !ev->event_type || !ev->data_json ||
        (!ev->user_id && sqlite3_column_type(st, 5) != SQLITE_NULL) ||
        (!ev->additional_json && sqlite3_column_type(st, 6) != SQLITE_NULL) ||
        (!ev->idempotency_key && sqlite3_column_type(st, 10) != SQLITE_NULL)) {
        event_free(ev);
        return NULL;
    }
    return ev;
}

/* Room for more events; the array grows as rows come, since max may be far
 * more than there are. */
static int grow(evh_event ***evs, size_t *cap)
{
    size_t n = *cap ? *cap * 2 : 64;
    evh_event **p = n < SIZE_MAX / sizeof *p ? realloc(*evs, n * sizeof *p) : NULL;
    if (!p)
        return 0;
    *evs = p;
    *cap = n;
    return 1;
}

static void free_events(evh_event **evs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        event_free(evs[i]);
    free(evs);
}

int store_events_pending(store *s, int64_t after_seq, size_t max, evh_event ***out, size_t *n_out,
                         int64_t *last_seq)
{
    if (!s || !out || !n_out)
        return EVH_E_INVALID;
    *out = NULL;
    *n_out = 0;
    if (last_seq)
        *last_seq = after_seq;
    if (max == 0)
        return EVH_OK;
    if (max > (size_t)INT64_MAX)
        max = (size_t)INT64_MAX;
    sqlite3_stmt *st = stmt(s, ST_EV_PENDING);
    evh_event **evs = NULL;
    size_t n = 0, cap = 0;
    int rc = st ? bind(st, "ii", after_seq, (int64_t)max) : SQLITE_ERROR;
    if (rc != SQLITE_OK) {
        done(st);
        return st ? fail(s, rc, "binding") : EVH_E_IO;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap && !grow(&evs, &cap)) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (!(evs[n] = pending_row(st))) {
            rc = SQLITE_NOMEM;
            break;
        }
        n++;
    }
    int out_rc = rc == SQLITE_DONE ? EVH_OK : read_fail(s, rc, "reading pending events");
    done(st);
    if (out_rc != EVH_OK) {
        free_events(evs, n);
        return out_rc;
    }
    *out = evs;
    *n_out = n;
    if (last_seq && n)
        *last_seq = evs[n - 1]->seq;
    return EVH_OK;
}

cJSON *store_event_get(store *s, const char *id)
{
    return get_by_id(s, ST_EV_GET, id, event_row);
}

evh_event *store_event_load(store *s, const char *id)
{
    if (!s || !id)
        return NULL;
    s->errmsg[0] = '\0';
    sqlite3_stmt *st = stmt(s, ST_EV_LOAD);
    if (!st)
        return NULL;
    evh_event *ev = NULL;
    int rc = bind(st, "t", id);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (!(ev = pending_row(st)))
            read_fail(s, SQLITE_NOMEM, "loading an event");
    } else if (rc != SQLITE_DONE) {
        fail(s, rc, "loading an event");
    }
    done(st);
    return ev;
}

int store_event_find_by_key(store *s, const char *key, char id_out[EVH_UUID_LEN + 1])
{
    if (!s || !key || !id_out)
        return EVH_E_INVALID;
    sqlite3_stmt *st = stmt(s, ST_EV_BY_KEY);
    if (!st)
        return EVH_E_IO;
    int rc = bind(st, "t", key);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int out = EVH_OK;
    if (rc == SQLITE_ROW)
        snprintf(id_out, EVH_UUID_LEN + 1, "%s", col_text(st, 0) ? col_text(st, 0) : "");
    else if (rc == SQLITE_DONE)
        out = EVH_E_NOT_FOUND;
    else
        out = fail(s, rc, "finding an idempotency key");
    done(st);
    return out;
}

/* ---- listing ------------------------------------------------------------------ */

typedef enum list_kind { LIST_EVENTS, LIST_EXECUTIONS } list_kind;

typedef struct list_query {
    unsigned mask;
    size_t limit;
    int64_t since_us, until_us;
    char since[EVH_TIMESTAMP_LEN + 1], until[EVH_TIMESTAMP_LEN + 1];
    int64_t cursor_seq;
} list_query;

/* Events: "e<seq>".  Executions: "x<seq>".  Opaque to callers; the letter
 * stops a cursor of one list from being used on the other. */
static int parse_cursor(const char *c, list_kind kind, list_query *q)
{
    if (c[0] != (kind == LIST_EVENTS ? 'e' : 'x') || !c[1] || strlen(c) > 20)
        return 0;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(c + 1, &end, 10);
    if (errno || *end || v <= 0 || c[1] < '1' || c[1] > '9')
        return 0;
    q->cursor_seq = v;
    return 1;
}

static int parse_time(store *s, const char *name, const char *text, int64_t *us,
                      char canon[EVH_TIMESTAMP_LEN + 1])
{
    if (!parse_rfc3339(text, us)) {
        set_err(s, "%s: '%s' is not an RFC 3339 date-time", name, text);
        return 0;
    }
    format_us(*us, canon);
    return 1;
}

/* Check f and turn it into q; 0 (errmsg set) when something is malformed. */
static int parse_filter(store *s, const store_filter *f, list_kind kind, list_query *q)
{
    memset(q, 0, sizeof *q);
    q->limit = STORE_LIST_DEFAULT_LIMIT;
    if (!f)
        return 1;
    if (f->limit)
        q->limit = f->limit > STORE_LIST_MAX_LIMIT ? STORE_LIST_MAX_LIMIT : f->limit;
    const char *const *statuses = kind == LIST_EVENTS ? EVENT_STATUSES : EXEC_STATUSES;
    if (f->status && !one_of(f->status, statuses)) {
        set_err(s, "status: '%s' is not a valid status", f->status);
        return 0;
    }
    if (f->since && !parse_time(s, "since", f->since, &q->since_us, q->since))
        return 0;
    if (f->until && !parse_time(s, "until", f->until, &q->until_us, q->until))
        return 0;
    if (f->cursor && !parse_cursor(f->cursor, kind, q)) {
        set_err(s, "cursor: not a cursor of this list");
        return 0;
    }
    q->mask = (f->source ? F_SOURCE : 0) | (f->event_type ? F_TYPE : 0) |
              (f->status ? F_STATUS : 0) | (f->workflow_id ? F_WORKFLOW : 0) |
              (f->trigger_id ? F_TRIGGER : 0) | (f->since ? F_SINCE : 0) |
              (f->until ? F_UNTIL : 0) | (f->cursor ? F_CURSOR : 0);
    return 1;
}

static void cat(char *buf, size_t cap, const char *part)
{
    size_t len = strlen(buf);
    snprintf(buf + len, cap - len, "%s", part);
}

/* The SQL of one filter combination: fixed fragments and named
 * parameters only, so no value ever becomes SQL text. */
static void events_sql(unsigned m, char *buf, size_t cap)
{
    snprintf(buf, cap, "SELECT " EV_COLS " FROM events WHERE 1");
    if (m & F_SOURCE)
        cat(buf, cap, " AND source = :source");
    if (m & F_TYPE)
        cat(buf, cap, " AND event_type = :event_type");
    if (m & F_STATUS)
        cat(buf, cap, " AND status = :status");
    if (m & (F_WORKFLOW | F_TRIGGER)) {
        cat(buf, cap,
            " AND EXISTS (SELECT 1 FROM workflow_executions x"
            " WHERE x.event_id = events.id");
        if (m & F_WORKFLOW)
            cat(buf, cap, " AND x.workflow_id = :workflow_id");
        if (m & F_TRIGGER)
            cat(buf, cap, " AND x.trigger_id = :trigger_id");
        cat(buf, cap, ")");
    }
    if (m & F_SINCE)
        cat(buf, cap, " AND timestamp_us >= :since_us");
    if (m & F_UNTIL)
        cat(buf, cap, " AND timestamp_us < :until_us");
    if (m & F_CURSOR)
        cat(buf, cap, " AND seq < :cursor_seq");
    cat(buf, cap, " ORDER BY seq DESC LIMIT :limit");
}

static void executions_sql(unsigned m, char *buf, size_t cap)
{
    snprintf(buf, cap, "SELECT " EX_COLS ", x.seq FROM workflow_executions x WHERE 1");
    if (m & F_WORKFLOW)
        cat(buf, cap, " AND x.workflow_id = :workflow_id");
    if (m & F_TRIGGER)
        cat(buf, cap, " AND x.trigger_id = :trigger_id");
    if (m & F_STATUS)
        cat(buf, cap, " AND x.status = :status");
    if (m & (F_SOURCE | F_TYPE)) {
        cat(buf, cap, " AND EXISTS (SELECT 1 FROM events e WHERE e.id = x.event_id");
        if (m & F_SOURCE)
            cat(buf, cap, " AND e.source = :source");
        if (m & F_TYPE)
            cat(buf, cap, " AND e.event_type = :event_type");
        cat(buf, cap, ")");
    }
    if (m & F_SINCE)
        cat(buf, cap, " AND x.created_at >= :since");
    if (m & F_UNTIL)
        cat(buf, cap, " AND x.created_at < :until");
    if (m & F_CURSOR)
        cat(buf, cap, " AND x.seq < :cursor_seq");
    cat(buf, cap, " ORDER BY x.seq DESC LIMIT :limit");
}

static sqlite3_stmt *list_stmt(store *s, list_kind kind, unsigned mask)
{
    sqlite3_stmt **slot = kind == LIST_EVENTS ? &s->ev_list[mask] : &s->ex_list[mask];
    if (!*slot) {
        char sql[1024];
        if (kind == LIST_EVENTS)
            events_sql(mask, sql, sizeof sql);
        else
            executions_sql(mask, sql, sizeof sql);
        *slot = prepare(s, sql);
    }
    return *slot;
}

/* Bind a named parameter when the statement has it. */
static int bind_text_named(sqlite3_stmt *st, const char *name, const char *v)
{
    int idx = sqlite3_bind_parameter_index(st, name);
    return idx && v ? sqlite3_bind_text(st, idx, v, -1, SQLITE_STATIC) : SQLITE_OK;
}

static int bind_int_named(sqlite3_stmt *st, const char *name, int64_t v)
{
    int idx = sqlite3_bind_parameter_index(st, name);
    return idx ? sqlite3_bind_int64(st, idx, v) : SQLITE_OK;
}

static int bind_list(sqlite3_stmt *st, const store_filter *f, const list_query *q)
{
    int rc =
        bind_int_named(st, ":limit", (int64_t)q->limit + 1); /* one more: is there a next page? */
    if (f) {
        const char *names[] = {":source", ":event_type", ":status", ":workflow_id", ":trigger_id"};
        const char *values[] = {f->source, f->event_type, f->status, f->workflow_id, f->trigger_id};
        for (size_t i = 0; i < 5 && rc == SQLITE_OK; i++)
            rc = bind_text_named(st, names[i], values[i]);
    }
    if (rc == SQLITE_OK)
        rc = bind_int_named(st, ":since_us", q->since_us);
    if (rc == SQLITE_OK)
        rc = bind_int_named(st, ":until_us", q->until_us);
    if (rc == SQLITE_OK)
        rc = bind_text_named(st, ":since", q->since);
    if (rc == SQLITE_OK)
        rc = bind_text_named(st, ":until", q->until);
    if (rc == SQLITE_OK)
        rc = bind_int_named(st, ":cursor_seq", q->cursor_seq);
    return rc;
}

/* The cursor that continues after the current row (malloc). */
static char *row_cursor(sqlite3_stmt *st, list_kind kind)
{
    char *c = NULL;
    int n;
    if (kind == LIST_EVENTS)
        n = asprintf(&c, "e%lld", (long long)sqlite3_column_int64(st, 0));
    else /* the seq after EX_COLS (executions_sql) */
        n = asprintf(&c, "x%lld", (long long)sqlite3_column_int64(st, 11));
    return n < 0 ? NULL : c;
}

/* Step a bound list query into arr; the row past the limit only tells that
 * there is a next page.  Returns the SQLite result (SQLITE_DONE when fine). */
static int collect(sqlite3_stmt *st, list_kind kind, size_t limit, cJSON *arr, char **next)
{
    size_t count = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == limit)
            return SQLITE_DONE; /* *next already made from the last row kept */
        cJSON *row = kind == LIST_EVENTS ? event_row(st) : execution_row(st);
        if (!row)
            return SQLITE_NOMEM;
        cJSON_AddItemToArray(arr, row);
        if (++count == limit && !(*next = row_cursor(st, kind)))
            return SQLITE_NOMEM;
    }
    free(*next); /* no row past the limit: this was the last page */
    *next = NULL;
    return rc;
}

static cJSON *list(store *s, list_kind kind, const store_filter *f, char **next_cursor)
{
    if (next_cursor)
        *next_cursor = NULL;
    if (!s) {
        errno = EINVAL;
        return NULL;
    }
    list_query q;
    if (!parse_filter(s, f, kind, &q)) {
        errno = EINVAL;
        return NULL;
    }
    sqlite3_stmt *st = list_stmt(s, kind, q.mask);
    cJSON *arr = cJSON_CreateArray();
    char *next = NULL;
    int rc = !st ? SQLITE_ERROR : !arr ? SQLITE_NOMEM : bind_list(st, f, &q);
    if (rc == SQLITE_OK)
        rc = collect(st, kind, q.limit, arr, &next);
    if (rc != SQLITE_DONE) {
        if (st)
            read_fail(s, rc, "listing");
        errno = rc == SQLITE_NOMEM ? ENOMEM : EIO;
        cJSON_Delete(arr);
        free(next);
        arr = NULL;
        next = NULL;
    }
    done(st);
    if (next_cursor)
        *next_cursor = next;
    else
        free(next);
    return arr;
}

cJSON *store_events_list(store *s, const store_filter *f, char **next_cursor)
{
    return list(s, LIST_EVENTS, f, next_cursor);
}

cJSON *store_executions_list(store *s, const store_filter *f, char **next_cursor)
{
    return list(s, LIST_EXECUTIONS, f, next_cursor);
}

/* ---- executions ----------------------------------------------------------------- */

/* Copy the id of the execution holding (trigger, event, replay_of) into
 * e->id; EVH_E_DUPLICATE when found. */
static int existing_execution(store *s, store_execution *e)
{
    sqlite3_stmt *st = stmt(s, ST_EX_FIND);
    if (!st)
        return EVH_E_IO;
    int rc = bind(st, "ttt", e->trigger_id, e->event_id, e->replay_of);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int out;
    if (rc == SQLITE_ROW) {
        snprintf(e->id, sizeof e->id, "%s", col_text(st, 0) ? col_text(st, 0) : "");
        set_err(s, "execution %s already exists for trigger '%s' and event %s", e->id,
                e->trigger_id, e->event_id);
        out = EVH_E_DUPLICATE;
    } else if (rc == SQLITE_DONE) {
        set_err(s, "execution id '%s' is already used", e->id);
        out = EVH_E_DUPLICATE;
    } else {
        out = fail(s, rc, "finding an execution");
    }
    done(st);
    return out;
}

/* Ready e for insertion (its id made when empty) and bind it from
 * parameter first on, in MULTI_SQL[MR_EXECUTIONS]'s column order (ST_EX_INSERT
 * numbers its parameters to the same effect).  t must live until the step. */
static int bind_execution(store *s, sqlite3_stmt *st, int first, store_execution *e, row_times *t)
{
    if (!e->id[0] && uuid_v7(e->id) != EVH_OK) {
        set_err(s, "random generator failed");
        return SQLITE_ERROR;
    }
    if (e->at_us)
        format_us(e->at_us, t->created);
    else
        rfc3339_now(t->created);
    format_us(e->started_us, t->started);
    format_us(e->finished_us, t->finished);
    return bind_at(st, first, "ttttttttttt", e->id, e->workflow_id, e->workflow_version,
                   e->trigger_id, e->event_id, e->status ? e->status : "queued", t->created,
                   e->replay_of, e->started_us ? t->started : NULL,
                   e->finished_us ? t->finished : NULL, e->error);
}

static int execution_valid(const store_execution *e)
{
    return e && e->workflow_id && e->trigger_id && e->event_id;
}

int store_execution_create(store *s, store_execution *e)
{
    if (!s || !execution_valid(e))
        return EVH_E_INVALID;
    sqlite3_stmt *st = stmt(s, ST_EX_INSERT);
    if (!st)
        return EVH_E_IO;
    row_times t;
    int rc = bind_execution(s, st, 1, e, &t);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int out = rc == SQLITE_DONE ? EVH_OK : fail(s, rc, "creating an execution");
    done(st);
    if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        out = existing_execution(s, e);
    return out;
}

/* ---- rows written many per statement (the recorder's batches) -------------- */

/* A kind of row that put_rows writes: how to bind one row of its multi-row
 * statement, and how to write one row alone. */
typedef struct row_writer {
    multi_kind kind;
    const char *doing;
    int (*bind)(store *s, sqlite3_stmt *st, int first, void *row, row_times *t);
    int (*put_one)(store *s, void *row);
} row_writer;

/* The n rows in one transaction (or the caller's batch), many per
 * statement; a statement that fails wrote nothing (SQLite undoes a failed
 * statement), so its rows go again one by one and only the bad one fails.
 * Returns the first failure; the rows that went in are kept. */
static int put_rows(store *s, const row_writer *w, void *const *rows, size_t n)
{
    int rc = tx_begin(s);
    if (rc != EVH_OK)
        return rc;
    int first_rc = EVH_OK;
    size_t i = 0;
    row_times t[MULTI_ROWS];
    for (int m; (m = multi_rows_for(n - i)) > 1; i += (size_t)m) {
        sqlite3_stmt *st = multi_stmt(s, w->kind, m);
        int brc = st ? SQLITE_OK : SQLITE_ERROR;
        for (int k = 0; k < m && brc == SQLITE_OK; k++)
            brc = w->bind(s, st, 1 + k * MULTI_SQL[w->kind].params, rows[i + k], &t[k]);
        rc = brc == SQLITE_OK ? step_done(s, st, w->doing) : EVH_E_IO;
        done(st);
        for (int k = 0; rc != EVH_OK && k < m; k++) {
            int one = w->put_one(s, rows[i + k]);
            first_rc = first_rc == EVH_OK ? one : first_rc;
        }
    }
    for (; i < n; i++) {
        int one = w->put_one(s, rows[i]);
        first_rc = first_rc == EVH_OK ? one : first_rc;
    }
    rc = tx_end(s, EVH_OK);
    return rc != EVH_OK ? rc : first_rc;
}

static int bind_execution_row(store *s, sqlite3_stmt *st, int first, void *row, row_times *t)
{
    return bind_execution(s, st, first, row, t);
}

static int put_execution(store *s, void *row)
{
    return store_execution_create(s, row);
}

static const row_writer EXECUTIONS = {MR_EXECUTIONS, "creating executions", bind_execution_row,
                                      put_execution};

int store_executions_insert(store *s, store_execution *const *xs, size_t n)
{
    if (!s || (n && !xs))
        return EVH_E_INVALID;
    for (size_t i = 0; i < n; i++) {
        if (!execution_valid(xs[i]))
            return EVH_E_INVALID;
    }
    return put_rows(s, &EXECUTIONS, (void *const *)xs, n);
}

/* Finish an UPDATE or DELETE of one row named by id (bind_rc: the binding's
 * result): EVH_E_NOT_FOUND, "no <kind> '<id>'<suffix>", when no row changed. */
static int change_one(store *s, sqlite3_stmt *st, int bind_rc, const char *doing,
                      const char *kind, const char *id, const char *suffix)
{
    int rc = bind_rc == SQLITE_OK ? step_done(s, st, doing) : fail(s, bind_rc, "binding");
    if (rc == EVH_OK && sqlite3_changes(s->db) == 0) {
        set_err(s, "no %s '%s'%s", kind, id, suffix);
        rc = EVH_E_NOT_FOUND;
    }
    done(st);
    return rc;
}

int store_execution_set_status(store *s, const char *id, const char *status, const char *error)
{
    return store_execution_set_status_at(s, id, status, error, 0);
}

int store_execution_set_status_at(store *s, const char *id, const char *status,
                                  const char *error, int64_t at_us)
{
    if (!s || !id)
        return EVH_E_INVALID;
    if (!one_of(status, EXEC_STATUSES)) {
        set_err(s, "invalid execution status '%s'", status ? status : "(null)");
        return EVH_E_INVALID;
    }
    char now[EVH_TIMESTAMP_LEN + 1];
    if (at_us)
        format_us(at_us, now);
    else
        rfc3339_now(now);
    sqlite3_stmt *st = stmt(s, ST_EX_STATUS);
    if (!st)
        return EVH_E_IO;
    int rc = bind(st, "tttt", id, status, error, now);
    return change_one(s, st, rc, "updating an execution", "execution", id, "");
}

static cJSON *steps_of(store *s, const char *execution_id)
{
    sqlite3_stmt *st = stmt(s, ST_STEP_LIST);
    if (!st || bind(st, "t", execution_id) != SQLITE_OK) {
        done(st);
        return NULL;
    }
    return query_all(s, st, step_row);
}

cJSON *store_execution_get(store *s, const char *id)
{
    if (!s || !id)
        return NULL;
    sqlite3_stmt *st = stmt(s, ST_EX_GET);
    if (!st || bind(st, "t", id) != SQLITE_OK) {
        done(st);
        return NULL;
    }
    cJSON *x = query_one(s, st, execution_row);
    if (x && !add_item(x, "steps", steps_of(s, id))) {
        cJSON_Delete(x);
        x = NULL;
    }
    return x;
}

static cJSON *unfinished_row(sqlite3_stmt *st)
{
    static const char *const keys[] = {"id",       "workflow_id", "trigger_id",
                                       "event_id", "status",      "replay_of"};
    cJSON *o = cJSON_CreateObject();
    return finish(o, o && add_strings(o, st, keys, 6));
}

int store_executions_unfinished(store *s, cJSON **out)
{
    if (!s || !out)
        return EVH_E_INVALID;
    sqlite3_stmt *st = stmt(s, ST_EX_UNFINISHED);
    *out = st ? query_all(s, st, unfinished_row) : NULL;
    return *out ? EVH_OK : EVH_E_IO;
}

/* ---- step runs ----------------------------------------------------------------- */

static int step_run_valid(store *s, const store_step_run *r)
{
    if (!r || !r->execution_id || !r->step_id || !r->plugin)
        return 0;
    if (!one_of(r->status, STEP_STATUSES)) {
        set_err(s, "invalid step run status '%s'", r->status ? r->status : "(null)");
        return 0;
    }
    return 1;
}

/* Bind r from parameter first on, in ST_STEP_PUT's order; t must live until
 * the step. */
static int bind_step_run(sqlite3_stmt *st, int first, const store_step_run *r, row_times *t)
{
    format_us(r->started_us, t->started);
    format_us(r->finished_us, t->finished);
    int rc = bind_at(st, first, "tttit", r->execution_id, r->step_id, r->plugin,
                     (int64_t)r->attempt, r->status);
    /* parameters 6.. bound one by one: each may be NULL */
    if (rc == SQLITE_OK)
        rc = r->started_us ? sqlite3_bind_text(st, first + 5, t->started, -1, SQLITE_STATIC)
                           : sqlite3_bind_null(st, first + 5);
    if (rc == SQLITE_OK)
        rc = r->finished_us ? sqlite3_bind_text(st, first + 6, t->finished, -1, SQLITE_STATIC)
                            : sqlite3_bind_null(st, first + 6);
    if (rc == SQLITE_OK)
        rc = r->started_us && r->finished_us
                 ? sqlite3_bind_double(st, first + 7,
                                       (double)(r->finished_us - r->started_us) / 1000.0)
                 : sqlite3_bind_null(st, first + 7);
    const char *rest[] = {r->output_json, r->error, r->metrics_json};
    for (int i = 0; i < 3 && rc == SQLITE_OK; i++)
        rc = rest[i] ? sqlite3_bind_text(st, first + 8 + i, rest[i], -1, SQLITE_STATIC)
                     : sqlite3_bind_null(st, first + 8 + i);
    return rc;
}

int store_step_run_put(store *s, const store_step_run *r)
{
    if (!s)
        return EVH_E_INVALID;
    if (!step_run_valid(s, r))
        return EVH_E_INVALID;
    sqlite3_stmt *st = stmt(s, ST_STEP_PUT);
    if (!st)
        return EVH_E_IO;
    row_times t;
    int rc = bind_step_run(st, 1, r, &t);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int out = rc == SQLITE_DONE ? EVH_OK : fail(s, rc, "storing a step run");
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        set_err(s, "no execution '%s'", r->execution_id);
        out = EVH_E_NOT_FOUND;
    }
    done(st);
    return out;
}

static int bind_step_run_row(store *s, sqlite3_stmt *st, int first, void *row, row_times *t)
{
    return bind_step_run(st, first, row, t);
}

static int put_step_run(store *s, void *row)
{
    return store_step_run_put(s, row);
}

static const row_writer STEP_RUNS = {MR_STEP_RUNS, "storing step runs", bind_step_run_row,
                                     put_step_run};

int store_step_runs_put(store *s, const store_step_run *const *runs, size_t n)
{
    if (!s || (n && !runs))
        return EVH_E_INVALID;
    for (size_t i = 0; i < n; i++) {
        if (!step_run_valid(s, runs[i]))
            return EVH_E_INVALID;
    }
    /* put_rows takes rows as void *; step runs are only read */
    return put_rows(s, &STEP_RUNS, (void *const *)(uintptr_t)runs, n);
}

int store_execution_create_with_runs(store *s, store_execution *e, const store_step_run *runs,
                                     size_t n)
{
    if (!s || !e || (n && !runs))
        return EVH_E_INVALID;
    int rc = tx_begin(s);
    if (rc != EVH_OK)
        return rc;
    rc = store_execution_create(s, e);
    for (size_t i = 0; i < n && rc == EVH_OK; i++) {
        store_step_run r = runs[i];
        r.execution_id = e->id;
        rc = store_step_run_put(s, &r);
    }
    return tx_end(s, rc);
}

cJSON *store_step_outputs(store *s, const char *execution_id)
{
    if (!s || !execution_id)
        return NULL;
    sqlite3_stmt *st = stmt(s, ST_STEP_OUTPUTS);
    cJSON *map = cJSON_CreateObject();
    int rc = !st ? SQLITE_ERROR : !map ? SQLITE_NOMEM : bind(st, "t", execution_id);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *entry = cJSON_CreateObject();
        if (!entry || !add_item(entry, "output", col_json(st, 1, 0))) {
            cJSON_Delete(entry);
            rc = SQLITE_NOMEM;
            break;
        }
        if (!add_item(map, col_text(st, 0), entry)) { /* deletes entry */
            rc = SQLITE_NOMEM;
            break;
        }
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_DONE) {
        if (st)
            read_fail(s, rc, "reading step outputs");
        cJSON_Delete(map);
        map = NULL;
    }
    done(st);
    return map;
}

/* ---- triggers ---------------------------------------------------------------------- */

int store_trigger_put(store *s, const char *id, const char *name, const char *source,
                      const char *event_type, const char *workflow_id, const char *conditions_json,
                      int enabled, const char *origin)
{
    if (!s || !id || !name || !source || !event_type || !workflow_id)
        return EVH_E_INVALID;
    if (conditions_json) {
        cJSON *c = cJSON_Parse(conditions_json);
        if (!c) {
            set_err(s, "trigger '%s': conditions are not JSON", id);
            return EVH_E_JSON;
        }
        cJSON_Delete(c);
    }
    char now[EVH_TIMESTAMP_LEN + 1];
    rfc3339_now(now);
    sqlite3_stmt *st = stmt(s, ST_TR_PUT);
    if (!st)
        return EVH_E_IO;
    int rc = bind(st, "ttttttitt", id, name, source, event_type, workflow_id, conditions_json,
                  (int64_t)(enabled != 0), origin ? origin : "api", now);
    rc = rc == SQLITE_OK ? step_done(s, st, "storing a trigger") : fail(s, rc, "binding");
    done(st);
    return rc;
}

int store_trigger_delete(store *s, const char *id)
{
    if (!s || !id)
        return EVH_E_INVALID;
    sqlite3_stmt *st = stmt(s, ST_TR_DELETE);
    if (!st)
        return EVH_E_IO;
    int rc = bind(st, "t", id);
    return change_one(s, st, rc, "deleting a trigger", "trigger", id, "");
}

/* EVH_OK when conditions_json is NULL or JSON text. */
static int conditions_ok(store *s, const char *id, const char *conditions_json)
{
    if (!conditions_json)
        return EVH_OK;
    cJSON *c = cJSON_Parse(conditions_json);
    if (!c) {
        set_err(s, "trigger '%s': conditions are not JSON", id);
        return EVH_E_JSON;
    }
    cJSON_Delete(c);
    return EVH_OK;
}

int store_trigger_insert(store *s, const char *id, const char *name, const char *source,
                         const char *event_type, const char *workflow_id,
                         const char *conditions_json, int enabled, const char *origin)
{
    if (!s || !id || !name || !source || !event_type || !workflow_id)
        return EVH_E_INVALID;
    int rc = conditions_ok(s, id, conditions_json);
    if (rc != EVH_OK)
        return rc;
    char now[EVH_TIMESTAMP_LEN + 1];
    rfc3339_now(now);
    sqlite3_stmt *st = stmt(s, ST_TR_INSERT);
    if (!st)
        return EVH_E_IO;
    rc = bind(st, "ttttttitt", id, name, source, event_type, workflow_id, conditions_json,
              (int64_t)(enabled != 0), origin ? origin : "api", now);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int out = rc == SQLITE_DONE ? EVH_OK : fail(s, rc, "creating a trigger");
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
        set_err(s, "trigger '%s' already exists", id);
        out = EVH_E_DUPLICATE;
    }
    done(st);
    return out;
}

int store_trigger_update_api(store *s, const char *id, const char *name, const char *source,
                             const char *event_type, const char *workflow_id,
                             const char *conditions_json, int enabled)
{
    if (!s || !id || !name || !source || !event_type || !workflow_id)
        return EVH_E_INVALID;
    int rc = conditions_ok(s, id, conditions_json);
    if (rc != EVH_OK)
        return rc;
    char now[EVH_TIMESTAMP_LEN + 1];
    rfc3339_now(now);
    sqlite3_stmt *st = stmt(s, ST_TR_UPDATE_API);
    if (!st)
        return EVH_E_IO;
    rc = bind(st, "ttttttit", id, name, source, event_type, workflow_id, conditions_json,
              (int64_t)(enabled != 0), now);
    return change_one(s, st, rc, "updating a trigger", "trigger", id, " made through the API");
}

cJSON *store_triggers_list(store *s)
{
    sqlite3_stmt *st = s ? stmt(s, ST_TR_LIST) : NULL;
    return st ? query_all(s, st, trigger_row) : NULL;
}

cJSON *store_trigger_get(store *s, const char *id)
{
    return get_by_id(s, ST_TR_GET, id, trigger_row);
}

/* ---- maintenance ------------------------------------------------------------------- */

/* Run a retention DELETE with one parameter (text when text != NULL). */
static int delete_rows(store *s, enum stmt_id which, const char *text, int64_t num, size_t *total)
{
    sqlite3_stmt *st = stmt(s, which);
    if (!st)
        return EVH_E_IO;
    int rc = text ? bind(st, "t", text) : bind(st, "i", num);
    rc = rc == SQLITE_OK ? step_done(s, st, "deleting old rows") : fail(s, rc, "binding");
    if (rc == EVH_OK)
        *total += (size_t)sqlite3_changes(s->db); /* cascaded step runs not counted */
    done(st);
    return rc;
}

/* Step a pragma through all its rows. */
static int drain(store *s, enum stmt_id which, const char *what)
{
    sqlite3_stmt *st = stmt(s, which);
    if (!st)
        return EVH_E_IO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    int out = rc == SQLITE_DONE ? EVH_OK : fail(s, rc, what);
    done(st);
    return out;
}

int store_retention(store *s, int64_t max_age_s, int64_t max_executions, size_t *deleted)
{
    if (deleted)
        *deleted = 0;
    if (!s || max_age_s < 0 || max_executions < 0)
        return EVH_E_INVALID;
    int64_t now = now_us();
    /* an age beyond the epoch deletes nothing by age */
    int by_age = max_age_s > 0 && max_age_s < now / 1000000;
    int64_t cutoff_us = by_age ? now - max_age_s * 1000000 : 0;
    char cutoff[EVH_TIMESTAMP_LEN + 1];
    format_us(cutoff_us, cutoff);
    size_t total = 0;
    int rc = tx_begin(s);
    if (rc != EVH_OK)
        return rc;
    if (by_age)
        rc = delete_rows(s, ST_RET_EX_AGE, cutoff, 0, &total);
    if (rc == EVH_OK && max_executions > 0)
        rc = delete_rows(s, ST_RET_EX_COUNT, NULL, max_executions, &total);
    /* after the executions, so the events they alone referenced go too */
    if (rc == EVH_OK && by_age)
        rc = delete_rows(s, ST_RET_EVENTS, NULL, cutoff_us, &total);
    rc = tx_end(s, rc);
    if (rc != EVH_OK)
        return rc;
    if (deleted)
        *deleted = total;
    /* give the freed pages back to the file system; a passive checkpoint
     * then lets the main file shrink without waiting for readers */
    rc = drain(s, ST_VACUUM, "incremental vacuum");
    if (rc == EVH_OK)
        rc = drain(s, ST_CHECKPOINT, "checkpoint");
    return rc;
}

static int append_line(char **buf, size_t *len, const char *line)
{
    size_t n = strlen(line);
    char *p = realloc(*buf, *len + n + 2);
    if (!p)
        return 0;
    if (*len)
        p[(*len)++] = '\n';
    memcpy(p + *len, line, n + 1);
    *len += n;
    *buf = p;
    return 1;
}

int store_integrity_check(store *s, char **result)
{
    if (!s || !result)
        return EVH_E_INVALID;
    *result = NULL;
    sqlite3_stmt *st = stmt(s, ST_INTEGRITY);
    if (!st)
        return EVH_E_IO;
    char *text = NULL;
    size_t len = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!append_line(&text, &len, col_text(st, 0) ? col_text(st, 0) : "")) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    int out = rc == SQLITE_DONE ? EVH_OK : fail(s, rc, "integrity check");
    done(st);
    if (out != EVH_OK) {
        free(text);
        return out;
    }
    *result = text ? text : strdup("");
    if (!*result)
        return EVH_E_NOMEM;
    if (strcmp(*result, "ok") != 0) {
        set_err(s, "integrity check failed: %s", *result);
        return EVH_E_IO;
    }
    return EVH_OK;
}

int store_check_writable(store *s, int timeout_ms)
{
    if (!s)
        return EVH_E_INVALID;
    s->errmsg[0] = '\0';
    set_busy_timeout(s, timeout_ms > 0 ? timeout_ms : 0);
    int rc = tx_begin(s);
    if (rc == EVH_OK) {
        rc = run(s, ST_ROLLBACK, "rolling back the write check");
        tx_rollback(s); /* still open when that failed */
        gate_leave(s);
    }
    set_busy_timeout(s, BUSY_TIMEOUT_MS);
    return rc == EVH_OK ? EVH_OK : EVH_E_IO;
}

/* ---- outbound webhooks: subscriptions --------------------------------------------- */

/* Bind v, or NULL when v is 0 (the notifier's default). */
static int bind_opt_int(sqlite3_stmt *st, int idx, int64_t v)
{
    return v ? sqlite3_bind_int64(st, idx, v) : sqlite3_bind_null(st, idx);
}

/* Parameters 1..12 of ST_SUB_INSERT, ST_SUB_UPDATE and ST_SUB_SYNC. */
static int bind_subscription(sqlite3_stmt *st, const store_subscription *sub, const char *now)
{
    int rc = bind(st, "tttttt", sub->id, sub->url, sub->events_json, sub->token, sub->secret,
                  sub->headers_json);
    if (rc == SQLITE_OK)
        rc = bind_opt_int(st, 7, sub->timeout_ms);
    if (rc == SQLITE_OK)
        rc = bind_opt_int(st, 8, sub->max_attempts);
    if (rc == SQLITE_OK)
        rc = bind_opt_int(st, 9, sub->backoff_base_ms);
    if (rc == SQLITE_OK)
        rc = bind_opt_int(st, 10, sub->backoff_cap_ms);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 11, sub->enabled ? 1 : 0);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 12, now, -1, SQLITE_STATIC);
    return rc;
}

static int subscription_valid(const store_subscription *sub)
{
    return sub && sub->id && sub->url && sub->events_json;
}

int store_subscription_insert(store *s, const store_subscription *sub)
{
    if (!s || !subscription_valid(sub))
        return EVH_E_INVALID;
    char now[EVH_TIMESTAMP_LEN + 1];
    rfc3339_now(now);
    sqlite3_stmt *st = stmt(s, ST_SUB_INSERT);
    if (!st)
        return EVH_E_IO;
    int rc = bind_subscription(st, sub, now);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int out = rc == SQLITE_DONE ? EVH_OK : fail(s, rc, "creating a subscription");
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
        set_err(s, "subscription '%s' already exists", sub->id);
        out = EVH_E_DUPLICATE;
    }
    done(st);
    return out;
}

int store_subscription_update(store *s, const store_subscription *sub)
{
    if (!s || !subscription_valid(sub))
        return EVH_E_INVALID;
    char now[EVH_TIMESTAMP_LEN + 1];
    rfc3339_now(now);
    sqlite3_stmt *st = stmt(s, ST_SUB_UPDATE);
    if (!st)
        return EVH_E_IO;
    int rc = bind_subscription(st, sub, now);
    return change_one(s, st, rc, "updating a subscription", "subscription", sub->id,
                      " made through the API");
}

/* The ids of the host.yaml rows (malloc'd array of malloc'd strings). */
static int config_subscription_ids(store *s, char ***ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt(s, ST_SUB_CONFIG_IDS);
    if (!st)
        return EVH_E_IO;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **p = realloc(*ids, ncap * sizeof *p);
            if (!p) {
                rc = SQLITE_NOMEM;
                break;
            }
            *ids = p;
            cap = ncap;
        }
        if (!((*ids)[*n] = col_dup(st, 0))) {
            rc = SQLITE_NOMEM;
            break;
        }
        (*n)++;
    }
    int out = rc == SQLITE_DONE ? EVH_OK : read_fail(s, rc, "listing subscriptions");
    done(st);
    return out;
}

int store_subscriptions_sync_config(store *s, const store_subscription *subs, size_t n)
{
    if (!s || (n && !subs))
        return EVH_E_INVALID;
    for (size_t i = 0; i < n; i++) {
        if (!subscription_valid(&subs[i]))
            return EVH_E_INVALID;
    }
    char now[EVH_TIMESTAMP_LEN + 1];
    rfc3339_now(now);
    int rc = tx_begin(s);
    if (rc != EVH_OK)
        return rc;
    char **ids = NULL;
    size_t n_ids = 0;
    rc = config_subscription_ids(s, &ids, &n_ids);
    for (size_t i = 0; i < n_ids && rc == EVH_OK; i++) {
        size_t j = 0;
        while (j < n && strcmp(subs[j].id, ids[i]))
            j++;
        if (j < n)
            continue; /* still in the file */
        sqlite3_stmt *st = stmt(s, ST_SUB_DELETE);
        rc = st ? bind(st, "t", ids[i]) : SQLITE_ERROR;
        rc = rc == SQLITE_OK ? step_done(s, st, "deleting a subscription")
                             : st ? fail(s, rc, "binding") : EVH_E_IO;
        done(st);
    }
    for (size_t i = 0; i < n_ids; i++)
        free(ids[i]);
    free(ids);
    for (size_t i = 0; i < n && rc == EVH_OK; i++) {
        sqlite3_stmt *st = stmt(s, ST_SUB_SYNC);
        if (!st) {
            rc = EVH_E_IO;
            break;
        }
        int src = bind_subscription(st, &subs[i], now);
        rc = src == SQLITE_OK ? step_done(s, st, "storing a subscription") : fail(s, src, "binding");
        done(st);
    }
    return tx_end(s, rc);
}

int store_subscription_set_enabled(store *s, const char *id, int enabled, const char *reason)
{
    if (!s || !id)
        return EVH_E_INVALID;
    char now[EVH_TIMESTAMP_LEN + 1];
    rfc3339_now(now);
    sqlite3_stmt *st = stmt(s, ST_SUB_ENABLE);
    if (!st)
        return EVH_E_IO;
    int rc = bind(st, "titt", id, (int64_t)(enabled != 0), enabled ? NULL : reason, now);
    return change_one(s, st, rc, "updating a subscription", "subscription", id, "");
}

int store_subscription_delete(store *s, const char *id)
{
    if (!s || !id)
        return EVH_E_INVALID;
    sqlite3_stmt *st = stmt(s, ST_SUB_DELETE);
    if (!st)
        return EVH_E_IO;
    int rc = bind(st, "t", id);
    return change_one(s, st, rc, "deleting a subscription", "subscription", id, "");
}

static cJSON *col_int_or_null(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL
               ? cJSON_CreateNull()
               : cJSON_CreateNumber((double)sqlite3_column_int64(st, i));
}

/* Row of SUB_COLS -> a subscription object (secrets as stored). */
static cJSON *subscription_row(sqlite3_stmt *st)
{
    cJSON *o = cJSON_CreateObject();
    int ok = o && add_item(o, "id", col_string(st, 0)) && add_item(o, "url", col_string(st, 1)) &&
             add_item(o, "events", col_json(st, 2, 0)) &&
             add_item(o, "token", col_string(st, 3)) && add_item(o, "secret", col_string(st, 4)) &&
             add_item(o, "headers", col_json(st, 5, 1)) &&
             add_item(o, "timeout_ms", col_int_or_null(st, 6)) &&
             add_item(o, "max_attempts", col_int_or_null(st, 7)) &&
             add_item(o, "backoff_base_ms", col_int_or_null(st, 8)) &&
             add_item(o, "backoff_cap_ms", col_int_or_null(st, 9)) &&
             add_item(o, "enabled", cJSON_CreateBool(sqlite3_column_int(st, 10) != 0)) &&
             add_item(o, "disabled_reason", col_string(st, 11)) &&
             add_item(o, "origin", col_string(st, 12)) &&
             add_item(o, "created_at", col_string(st, 13)) &&
             add_item(o, "updated_at", col_string(st, 14));
    return finish(o, ok);
}

cJSON *store_subscriptions_list(store *s)
{
    sqlite3_stmt *st = s ? stmt(s, ST_SUB_LIST) : NULL;
    return st ? query_all(s, st, subscription_row) : NULL;
}

cJSON *store_subscription_get(store *s, const char *id)
{
    return get_by_id(s, ST_SUB_GET, id, subscription_row);
}

/* ---- outbound webhooks: what lifecycle events report ------------------------------- */

static cJSON *step_metrics_row(sqlite3_stmt *st)
{
    static const char *const keys[] = {"step_id", "plugin"};
    cJSON *o = cJSON_CreateObject();
    int ok = o && add_strings(o, st, keys, 2) &&
             add_item(o, "attempt", cJSON_CreateNumber(sqlite3_column_int(st, 2))) &&
             add_item(o, "status", col_string(st, 3)) && add_item(o, "metrics", col_json(st, 4, 0));
    return finish(o, ok);
}

cJSON *store_execution_metrics(store *s, const char *execution_id)
{
    if (!s || !execution_id)
        return NULL;
    sqlite3_stmt *st = stmt(s, ST_EX_GET);
    if (!st || bind(st, "t", execution_id) != SQLITE_OK) {
        done(st);
        return NULL;
    }
    cJSON *x = query_one(s, st, execution_row);
    st = x ? stmt(s, ST_EX_METRICS) : NULL;
    if (!st || bind(st, "t", execution_id) != SQLITE_OK) {
        done(st);
        cJSON_Delete(x);
        return NULL;
    }
    if (!add_item(x, "steps", query_all(s, st, step_metrics_row))) {
        cJSON_Delete(x);
        return NULL;
    }
    return x;
}

/* ---- outbound webhooks: deliveries ------------------------------------------------ */

/* Does subscription id exist?  1, 0, or a negative EVH_E_* code. */
static int subscription_exists(store *s, const char *id)
{
    sqlite3_stmt *st = stmt(s, ST_SUB_EXISTS);
    if (!st)
        return EVH_E_IO;
    int rc = bind(st, "t", id);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int out = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : fail(s, rc, "finding a subscription");
    done(st);
    return out;
}

typedef struct outbox_ctx {
    const store_outbox_message *const *msgs; /* the messages stored */
    const char *const *sub_ids;              /* per delivery row */
    const int64_t *message_ids;              /* per delivery row */
    const char *now;
} outbox_ctx;

static int bind_outbox_row(sqlite3_stmt *st, int first, size_t row, const void *ctx)
{
    const outbox_ctx *c = ctx;
    const store_outbox_message *m = c->msgs[row];
    return bind_at(st, first, "tttnt", m->message_id, m->event, m->job_id, m->body, m->body_len,
                   c->now);
}

static int bind_delivery_row(sqlite3_stmt *st, int first, size_t row, const void *ctx)
{
    const outbox_ctx *c = ctx;
    return bind_at(st, first, "tittt", c->sub_ids[row], c->message_ids[row], c->now, c->now,
                   c->now);
}

/* rows rows of kind k in statements of 32, 16, ... 1. */
static int outbox_put(store *s, multi_kind k, row_binder bind_row, size_t rows, const void *ctx,
                      const char *doing, int64_t *ids)
{
    int rc = EVH_OK;
    for (size_t i = 0; i < rows && rc == EVH_OK;) {
        int m = multi_rows_for(rows - i);
        rc = insert_rows(s, k, m, bind_row, ctx, i, doing, ids + i);
        i += (size_t)m;
    }
    return rc;
}

int store_outbox_insert(store *s, const store_outbox_message *m, size_t n)
{
    if (!s || (n && !m))
        return EVH_E_INVALID;
    size_t n_msgs = 0, n_rows = 0;
    for (size_t i = 0; i < n; i++) {
        if (!m[i].event || !m[i].job_id || !m[i].message_id || !m[i].body ||
            (m[i].n_subs && (!m[i].subscription_ids || !m[i].delivery_ids))) {
            set_err(s, "lifecycle event %zu of the batch lacks a field", i);
            return EVH_E_INVALID;
        }
        n_msgs += m[i].n_subs > 0; /* none: no subscription takes it (any more) */
        n_rows += m[i].n_subs;
    }
    if (n_msgs == 0)
        return EVH_OK;
    char now[EVH_TIMESTAMP_LEN + 1];
    rfc3339_now(now);
    const store_outbox_message **msgs = malloc(n_msgs * sizeof *msgs);
    int64_t *msg_ids = malloc(n_msgs * sizeof *msg_ids);
    const char **sub_ids = malloc(n_rows * sizeof *sub_ids);
    int64_t *row_msg = malloc(n_rows * sizeof *row_msg);
    int64_t *row_ids = malloc(n_rows * sizeof *row_ids);
    /* a batch names a few subscriptions: each looked up once */
    const char *seen[16];
    int seen_ok[16];
    size_t n_seen = 0;
    int began = msgs && msg_ids && sub_ids && row_msg && row_ids;
    int rc = began ? tx_begin(s) : EVH_E_NOMEM;
    if (!began)
        set_err(s, "out of memory");
    began = rc == EVH_OK;
    size_t k = 0;
    for (size_t i = 0; rc == EVH_OK && i < n; i++) {
        if (m[i].n_subs)
            msgs[k++] = &m[i];
    }
    outbox_ctx ctx = {.msgs = msgs, .sub_ids = sub_ids, .message_ids = row_msg, .now = now};
    if (rc == EVH_OK)
        rc = outbox_put(s, MR_OUTBOX, bind_outbox_row, n_msgs, &ctx, "storing lifecycle events",
                        msg_ids);
    /* a delivery per subscription that still exists (one deleted since
     * the batch was made gets none: its id is 0); inside the transaction
     * none can go meanwhile */
    size_t r = 0;
    for (size_t i = 0; rc == EVH_OK && i < n_msgs; i++) {
        for (size_t j = 0; rc == EVH_OK && j < msgs[i]->n_subs; j++) {
            const char *id = msgs[i]->subscription_ids[j];
            int exists = -1;
            for (size_t q = 0; q < n_seen && exists < 0; q++) {
                if (!strcmp(seen[q], id))
                    exists = seen_ok[q];
            }
            if (exists < 0) {
                exists = subscription_exists(s, id);
                if (exists < 0) {
                    rc = exists;
                    break;
                }
                if (n_seen < sizeof seen / sizeof *seen) {
                    seen[n_seen] = id;
                    seen_ok[n_seen++] = exists;
                }
            }
            msgs[i]->delivery_ids[j] = 0;
            if (exists) {
                sub_ids[r] = id;
                row_msg[r++] = msg_ids[i];
            }
        }
    }
    size_t made = r;
    if (rc == EVH_OK)
        rc = outbox_put(s, MR_DELIVERIES, bind_delivery_row, made, &ctx, "storing deliveries",
                        row_ids);
    /* the ids back to their messages, in the order the rows were made */
    r = 0;
    for (size_t i = 0; rc == EVH_OK && i < n_msgs; i++) {
        for (size_t j = 0; j < msgs[i]->n_subs; j++) {
            if (r < made && sub_ids[r] == msgs[i]->subscription_ids[j] &&
                row_msg[r] == msg_ids[i])
                msgs[i]->delivery_ids[j] = row_ids[r++];
        }
    }
    if (began)
        rc = tx_end(s, rc);
    free(msgs);
    free(msg_ids);
    free(sub_ids);
    free(row_msg);
    free(row_ids);
    return rc;
}

void store_deliveries_free(store_delivery *d, size_t n)
{
    for (size_t i = 0; d && i < n; i++) {
        free(d[i].subscription_id);
        free(d[i].event);
        free(d[i].job_id);
        free(d[i].message_id);
        free(d[i].body);
    }
    free(d);
}

int store_deliveries_due(store *s, const char *subscription_id, size_t max, store_delivery **out,
                         size_t *n_out)
{
    if (!s || !subscription_id || !out || !n_out)
        return EVH_E_INVALID;
    *out = NULL;
    *n_out = 0;
    if (max == 0)
        return EVH_OK;
    char now[EVH_TIMESTAMP_LEN + 1];
    format_us(now_us(), now);
    sqlite3_stmt *sel = stmt(s, ST_DL_CLAIM);
    if (!sel)
        return EVH_E_IO;
    int rc;
    store_delivery *d = calloc(max, sizeof *d);
    size_t n = 0;
    int src = d ? bind(sel, "tti", subscription_id, now, (int64_t)max) : SQLITE_NOMEM;
    while (src == SQLITE_OK && (src = sqlite3_step(sel)) == SQLITE_ROW && n < max) {
        store_delivery *x = &d[n++];
        x->id = sqlite3_column_int64(sel, 0);
        x->subscription_id = strdup(subscription_id);
        x->event = col_dup(sel, 1);
        x->job_id = col_dup(sel, 2);
        x->message_id = col_dup(sel, 3);
        x->body = col_dup(sel, 4);
        x->body_len = (size_t)sqlite3_column_bytes(sel, 4);
        x->attempt = sqlite3_column_int(sel, 5) + 1;
        if (!x->subscription_id || !x->event || !x->job_id || !x->message_id || !x->body)
            src = SQLITE_NOMEM;
        else
            src = SQLITE_OK;
    }
    if (src == SQLITE_ROW)
        src = SQLITE_DONE; /* max reached */
    rc = src == SQLITE_DONE ? EVH_OK : read_fail(s, src, "reading due deliveries");
    done(sel);
    if (rc != EVH_OK || n == 0) {
        store_deliveries_free(d, n);
        return rc;
    }
    *out = d;
    *n_out = n;
    return EVH_OK;
}

int store_deliveries_finish(store *s, const store_delivery_outcome *o, size_t n)
{
    if (!s || (n && !o))
        return EVH_E_INVALID;
    if (n == 0)
        return EVH_OK;
    static const char *const statuses[] = {"pending", "delivered", "failed", "dead", NULL};
    int64_t now = now_us();
    char now_text[EVH_TIMESTAMP_LEN + 1];
    format_us(now, now_text);
    sqlite3_stmt *st = stmt(s, ST_DL_FINISH), *ok = stmt(s, ST_DL_DELIVERED);
    int rc = st && ok ? tx_begin(s) : EVH_E_IO;
    if (rc != EVH_OK)
        return rc;
    for (size_t i = 0; i < n && rc == EVH_OK; i++) {
        if (!one_of(o[i].status, statuses)) {
            set_err(s, "invalid delivery status '%s'", o[i].status ? o[i].status : "(null)");
            rc = EVH_E_INVALID;
            break;
        }
        if (!strcmp(o[i].status, "delivered")) {
            /* the common case, kept lean: next_attempt_at stays (the API
             * shows null once a delivery is closed) */
            int src = bind(ok, "iiit", o[i].id, (int64_t)o[i].http_status, (int64_t)o[i].attempt,
                           now_text);
            rc = src == SQLITE_OK ? step_done(s, ok, "recording a delivery")
                                  : fail(s, src, "binding");
            done(ok);
            continue;
        }
        char next[EVH_TIMESTAMP_LEN + 1];
        format_us(o[i].next_attempt_us > 0 ? o[i].next_attempt_us : now, next);
        int src = bind(st, "it", o[i].id, o[i].status);
        if (src == SQLITE_OK)
            src = bind_opt_int(st, 3, o[i].http_status);
        if (src == SQLITE_OK)
            src = o[i].error ? sqlite3_bind_text(st, 4, o[i].error, -1, SQLITE_STATIC)
                             : sqlite3_bind_null(st, 4);
        if (src == SQLITE_OK)
            src = sqlite3_bind_text(st, 5, next, -1, SQLITE_STATIC);
        if (src == SQLITE_OK)
            src = sqlite3_bind_text(st, 6, now_text, -1, SQLITE_STATIC);
        if (src == SQLITE_OK)
            src = sqlite3_bind_int64(st, 7, o[i].attempt);
        rc = src == SQLITE_OK ? step_done(s, st, "recording a delivery") : fail(s, src, "binding");
        done(st);
    }
    return tx_end(s, rc);
}

int store_deliveries_next_due(store *s, const char *subscription_id, int64_t *due_us)
{
    if (!s || !subscription_id || !due_us)
        return EVH_E_INVALID;
    *due_us = 0;
    sqlite3_stmt *st = stmt(s, ST_DL_NEXT_DUE);
    if (!st)
        return EVH_E_IO;
    int rc = bind(st, "t", subscription_id);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int out = EVH_OK;
    if (rc == SQLITE_ROW) {
        const char *t = col_text(st, 0);
        int64_t us;
        if (t && parse_rfc3339(t, &us))
            *due_us = us;
    } else if (rc != SQLITE_DONE) {
        out = fail(s, rc, "finding the next due delivery");
    }
    done(st);
    return out;
}

int store_deliveries_idle(store *s, const char *subscription_id, int *idle, int64_t *last_id)
{
    if (!s || !subscription_id || !idle || !last_id)
        return EVH_E_INVALID;
    *idle = 0;
    *last_id = 0;
    sqlite3_stmt *st = stmt(s, ST_DL_IDLE);
    if (!st)
        return EVH_E_IO;
    int rc = bind(st, "t", subscription_id);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int out = rc == SQLITE_ROW ? EVH_OK : fail(s, rc, "looking for open deliveries");
    if (rc == SQLITE_ROW) {
        *idle = sqlite3_column_int(st, 0) == 0;
        *last_id = sqlite3_column_int64(st, 1);
    }
    done(st);
    return out;
}

int store_deliveries_count_open(store *s, int64_t *n)
{
    if (!s || !n)
        return EVH_E_INVALID;
    *n = 0;
    sqlite3_stmt *st = stmt(s, ST_DL_COUNT_OPEN);
    if (!st)
        return EVH_E_IO;
    int rc = sqlite3_step(st);
    int out = rc == SQLITE_ROW ? EVH_OK : fail(s, rc, "counting deliveries");
    if (rc == SQLITE_ROW)
        *n = sqlite3_column_int64(st, 0);
    done(st);
    return out;
}

/* Row of DL_COLS (then body when with_body) -> a delivery object. */
static cJSON *delivery_row_make(sqlite3_stmt *st, int with_body)
{
    static const char *const keys[] = {"", "subscription_id", "event", "job_id", "message_id"};
    const char *status = col_text(st, 6);
    int open = status && (!strcmp(status, "pending") || !strcmp(status, "failed"));
    cJSON *o = cJSON_CreateObject();
    int ok = o && add_item(o, "id", cJSON_CreateNumber((double)sqlite3_column_int64(st, 0))) &&
             add_strings(o, st, keys, 5) &&
             add_item(o, "attempt", cJSON_CreateNumber(sqlite3_column_int(st, 5))) &&
             add_item(o, "status", col_string(st, 6)) &&
             add_item(o, "next_attempt_at", open ? col_string(st, 7) : cJSON_CreateNull()) &&
             add_item(o, "last_status", col_int_or_null(st, 8)) &&
             add_item(o, "last_error", col_string(st, 9)) &&
             add_item(o, "created_at", col_string(st, 10)) &&
             add_item(o, "updated_at", col_string(st, 11));
    if (ok && with_body)
        ok = add_item(o, "body", col_json(st, 12, 0));
    return finish(o, ok);
}

static cJSON *delivery_row(sqlite3_stmt *st)
{
    return delivery_row_make(st, 0);
}

static cJSON *delivery_row_body(sqlite3_stmt *st)
{
    return delivery_row_make(st, 1);
}

cJSON *store_deliveries_list(store *s, const store_delivery_filter *f, char **next_cursor)
{
    static const char *const statuses[] = {"pending", "delivered", "failed", "dead", NULL};
    if (next_cursor)
        *next_cursor = NULL;
    if (!s) {
        errno = EINVAL;
        return NULL;
    }
    store_delivery_filter none = {0};
    if (!f)
        f = &none;
    if (f->status && !one_of(f->status, statuses)) {
        set_err(s, "status: '%s' is not a delivery status (pending, delivered, failed or dead)",
                f->status);
        errno = EINVAL;
        return NULL;
    }
    long long cursor = 0;
    if (f->cursor) {
        char *end = NULL;
        errno = 0;
        cursor = f->cursor[0] == 'd' && f->cursor[1] >= '1' && f->cursor[1] <= '9'
                     ? strtoll(f->cursor + 1, &end, 10)
                     : 0;
        if (errno || !end || *end || cursor <= 0) {
            set_err(s, "cursor: not a cursor of this list");
            errno = EINVAL;
            return NULL;
        }
    }
    size_t limit = f->limit ? f->limit : STORE_LIST_DEFAULT_LIMIT;
    if (limit > STORE_LIST_MAX_LIMIT)
        limit = STORE_LIST_MAX_LIMIT;
    char sql[768];
    snprintf(sql, sizeof sql, "SELECT " DL_COLS " FROM " DL_FROM " WHERE 1");
    if (f->subscription_id)
        cat(sql, sizeof sql, " AND d.subscription_id = :subscription");
    /* the status spelled out as the partial indexes' conditions, so that
     * the planner may use them (it matches their text, not a parameter) */
    if (f->status && !strcmp(f->status, "dead"))
        cat(sql, sizeof sql, " AND d.status = 'dead'");
    else if (f->status && strcmp(f->status, "delivered"))
        cat(sql, sizeof sql, " AND d.status IN ('pending','failed') AND d.status = :status");
    else if (f->status)
        cat(sql, sizeof sql, " AND d.status = :status");
    if (f->job_id)
        cat(sql, sizeof sql, " AND m.job_id = :job");
    if (f->event)
        cat(sql, sizeof sql, " AND m.event = :event");
    if (f->cursor)
        cat(sql, sizeof sql, " AND d.id < :cursor");
    cat(sql, sizeof sql, " ORDER BY d.id DESC LIMIT :limit");
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        fail(s, rc, "listing deliveries");
        sqlite3_finalize(st);
        errno = EIO;
        return NULL;
    }
    rc = bind_text_named(st, ":subscription", f->subscription_id);
    if (rc == SQLITE_OK)
        rc = bind_text_named(st, ":status", f->status);
    if (rc == SQLITE_OK)
        rc = bind_text_named(st, ":job", f->job_id);
    if (rc == SQLITE_OK)
        rc = bind_text_named(st, ":event", f->event);
    if (rc == SQLITE_OK)
        rc = bind_int_named(st, ":cursor", cursor);
    if (rc == SQLITE_OK)
        rc = bind_int_named(st, ":limit", (int64_t)limit + 1);
    cJSON *arr = rc == SQLITE_OK ? cJSON_CreateArray() : NULL;
    size_t count = 0;
    int64_t last = 0;
    if (arr) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (count == limit)
                break;
            cJSON *row = delivery_row(st);
            if (!row) {
                rc = SQLITE_NOMEM;
                break;
            }
            cJSON_AddItemToArray(arr, row);
            last = sqlite3_column_int64(st, 0);
            count++;
        }
    }
    int more = rc == SQLITE_ROW && count == limit;
    if (rc != SQLITE_DONE && !more) {
        read_fail(s, rc, "listing deliveries");
        cJSON_Delete(arr);
        sqlite3_finalize(st);
        errno = rc == SQLITE_NOMEM ? ENOMEM : EIO;
        return NULL;
    }
    sqlite3_finalize(st);
    if (more && next_cursor && asprintf(next_cursor, "d%lld", (long long)last) < 0) {
        *next_cursor = NULL;
        cJSON_Delete(arr);
        errno = ENOMEM;
        return NULL;
    }
    return arr;
}

cJSON *store_delivery_get(store *s, int64_t id)
{
    if (!s)
        return NULL;
    sqlite3_stmt *st = stmt(s, ST_DL_GET);
    if (!st || bind(st, "i", id) != SQLITE_OK) {
        done(st);
        return NULL;
    }
    return query_one(s, st, delivery_row_body);
}

int store_delivery_retry(store *s, int64_t id)
{
    if (!s)
        return EVH_E_INVALID;
    char now[EVH_TIMESTAMP_LEN + 1];
    format_us(now_us(), now);
    sqlite3_stmt *st = stmt(s, ST_DL_RETRY);
    if (!st)
        return EVH_E_IO;
    int rc = bind(st, "it", id, now);
    rc = rc == SQLITE_OK ? step_done(s, st, "retrying a delivery") : fail(s, rc, "binding");
    int changed = rc == EVH_OK && sqlite3_changes(s->db) > 0;
    done(st);
    if (rc != EVH_OK || changed)
        return rc;
    cJSON *row = store_delivery_get(s, id);
    if (!row) {
        if (*s->errmsg)
            return EVH_E_IO;
        set_err(s, "no delivery %lld", (long long)id);
        return EVH_E_NOT_FOUND;
    }
    const char *status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(row, "status"));
    set_err(s, "delivery %lld is %s; only failed and dead deliveries are retried", (long long)id,
            status ? status : "?");
    cJSON_Delete(row);
    return EVH_E_STATE;
}

/* The first id of rows not older than cutoff (ids grow with created_at). */
static int prune_bound(store *s, enum stmt_id which, const char *cutoff, int64_t *bound)
{
    *bound = 0;
    sqlite3_stmt *st = stmt(s, which);
    if (!st)
        return EVH_E_IO;
    int rc = bind(st, "t", cutoff);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int out = rc == SQLITE_ROW ? EVH_OK : fail(s, rc, "finding old deliveries");
    if (rc == SQLITE_ROW)
        *bound = sqlite3_column_int64(st, 0);
    done(st);
    return out;
}

int store_deliveries_prune(store *s, int64_t max_age_s, size_t *deleted)
{
    if (deleted)
        *deleted = 0;
    if (!s || max_age_s <= 0)
        return s ? EVH_OK : EVH_E_INVALID;
    int64_t now = now_us();
    if (max_age_s >= now / 1000000)
        return EVH_OK;
    char cutoff[EVH_TIMESTAMP_LEN + 1];
    format_us(now - max_age_s * 1000000, cutoff);
    size_t total = 0, messages = 0;
    int64_t bound = 0;
    int rc = prune_bound(s, ST_DL_PRUNE_BOUND, cutoff, &bound);
    if (rc == EVH_OK)
        rc = delete_rows(s, ST_DL_PRUNE, NULL, bound, &total);
    /* then the messages no delivery points at any more */
    if (rc == EVH_OK)
        rc = prune_bound(s, ST_OB_PRUNE_BOUND, cutoff, &bound);
    if (rc == EVH_OK)
        rc = delete_rows(s, ST_OB_PRUNE, NULL, bound, &messages);
    if (deleted)
        *deleted = total;
    return rc;
}
