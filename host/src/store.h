/*
 * store.h - the SQLite database: the durable event queue, triggers made
 * through the API, workflow executions and their step runs.
 *
 * One store is one SQLite connection, used by one thread at a time.  Each
 * thread that needs the database opens its own store on the same file; the
 * file is in WAL mode, so readers and one writer work side by side, and a
 * writer waits (busy timeout, 10 s) for another rather than failing.
 *
 * The schema keeps the table and column names the seed's debugging guide
 * queries directly with the sqlite3 shell:
 *     SELECT * FROM workflow_triggers WHERE event_type='timer_fired' AND source='my-timer';
 *     SELECT id, workflow_id, status, created_at FROM workflow_executions
 *         WHERE trigger_id='trigger-id' ORDER BY created_at DESC;
 *
 * Timestamps are RFC 3339 UTC text with milliseconds
 * ("2026-11-23T10:30:00.123Z"), so they sort as text.
 *
 * Functions returning int return EVH_OK or a negative EVH_E_* code; after a
 * failure store_errmsg() says what went wrong.  Functions returning cJSON
 * return a new tree the caller deletes, or NULL (see each one).
 */
#ifndef EVH_STORE_H
#define EVH_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "event.h"

/* The newest schema migration this build knows, of the main database and
 * of the outbox file. */
#define STORE_SCHEMA_VERSION 5
#define STORE_OUTBOX_SCHEMA_VERSION 1

/* Page sizes of the list functions. */
#define STORE_LIST_DEFAULT_LIMIT 50
#define STORE_LIST_MAX_LIMIT 500

typedef struct store store;

typedef struct store_options {
    const char *path;     /* database file; its directory must exist */
    int synchronous_full; /* 1: PRAGMA synchronous=FULL, 0: NORMAL */
    int read_only;        /* 1: read an existing database; create, configure
                             and migrate nothing (the CLI's reports) */
    int outbox;           /* 1: the outbox file (store_outbox_path): the
                             subscriptions, outbox_messages and deliveries
                             tables, and only those */
} store_options;

/*
 * The outbox file that goes with the main database db_path: "x.db" ->
 * "x-outbox.db", any other name gets "-outbox.db" appended (malloc'd; NULL
 * on out-of-memory).  Outbound webhooks keep their tables there so that
 * their writes never wait for the pipeline's, nor it for theirs (SQLite
 * has one write lock per file).  Opening a main database of an older
 * schema moves its webhook tables there (migration 5).
 */
char *store_outbox_path(const char *db_path);

/*
 * Open (creating with mode 0600 when missing) the database at o->path and
 * bring its schema up to date, one migration per transaction.  A database
 * written by a newer evhost (a migration this build does not know) is
 * refused with EVH_E_UNSUPPORTED.  On failure *out is NULL and *err (when
 * err is not NULL) is a malloc'd "<path>: <reason>" the caller frees.
 */
int store_open(const store_options *o, store **out, char **err);
void store_close(store *s);

const char *store_path(const store *s);
/* The last failure's message ("" when none); valid until the next call. */
const char *store_errmsg(store *s);

/*
 * One transaction around many writes (recorder.h's group commit): between
 * store_batch_begin and store_batch_end every write function joins it
 * instead of opening its own, and a failing write does not end it (each
 * reports its own error).  store_batch_end(s, EVH_OK) commits; any other rc
 * rolls everything back.  Returns the commit's result.
 */
int store_batch_begin(store *s);
int store_batch_end(store *s, int rc);

/* Checkpoints off the commit path: a connection that writes much calls
 * store_defer_checkpoints once, and another thread calls store_checkpoint
 * on its own connection from time to time (engine.c).  By default SQLite
 * checkpoints inside the commit that pushes the WAL past 1000 pages, so
 * that commit waits for copying pages and syncing the file: a stall of
 * milliseconds in the event writer or the recorder (docs/BENCHMARKS.md). */
void store_defer_checkpoints(store *s);
/* A PASSIVE checkpoint (never waits for readers or writers); *wal_frames
 * (may be NULL) = frames in the WAL before it.  EVH_OK or EVH_E_IO. */
int store_checkpoint(store *s, int *wal_frames);

/* ---- events: the durable queue ------------------------------------------ */

/*
 * Store n events, status 'pending' (or 'unmatched' when ev->unmatched), in
 * one transaction (group commit): all or none.  Each stored event gets ev->seq.  An event whose idempotency_key
 * is already in the table is not stored again: its seq stays 0 (find the
 * first one with store_event_find_by_key).  On failure every seq is 0.
 */
int store_events_insert(store *s, evh_event *const *evs, size_t n);

/* status: "pending", "dispatched" or "unmatched" (else EVH_E_INVALID).
 * EVH_E_NOT_FOUND when there is no such event. */
int store_event_set_status(store *s, const char *event_id, const char *status);
/* The same for n events in one transaction; ids not in the table are skipped. */
int store_events_set_status(store *s, const char *const *ids, size_t n, const char *status);

/*
 * Recovery: up to max pending events with seq > after_seq, oldest first,
 * rebuilt as evh_event (seq, chain_depth and idempotency_key included).
 * *out is a malloc'd array of *n_out events (NULL when none): free each
 * with event_free, then the array with free.  *last_seq is the seq of the
 * last one returned (after_seq when none), to pass as the next after_seq.
 */
int store_events_pending(store *s, int64_t after_seq, size_t max, evh_event ***out, size_t *n_out,
                         int64_t *last_seq);

/* The envelope {id, event_type, source, data, metadata{source, timestamp,
 * user_id, additional_data}} plus "status"; NULL when missing (or on error:
 * see store_errmsg). */
cJSON *store_event_get(store *s, const char *id);

/* The stored event rebuilt as an evh_event (seq, chain_depth and
 * idempotency_key included, whatever its status), to run it again (replay);
 * free with event_free.  NULL when missing (store_errmsg "") or on error. */
evh_event *store_event_load(store *s, const char *id);

/* The id of the event stored with idempotency key `key` into id_out;
 * EVH_E_NOT_FOUND when none. */
int store_event_find_by_key(store *s, const char *key, char id_out[EVH_UUID_LEN + 1]);

/* ---- listing ------------------------------------------------------------- */

/*
 * Filters of the list functions; NULL fields do not filter.
 *   events:     source, event_type, status (event statuses), workflow_id
 *               and trigger_id (events that have such an execution), since
 *               and until (the event's timestamp).
 *   executions: workflow_id, trigger_id, status (execution statuses),
 *               source and event_type (of its event), since and until
 *               (created_at).
 * since is inclusive, until exclusive; both RFC 3339 with any fraction and
 * offset ("2026-11-23T10:30:00Z", "2026-11-23T11:30:00.5+01:00").
 */
typedef struct store_filter {
    const char *source, *event_type, *status, *workflow_id, *trigger_id, *since, *until;
    const char *cursor; /* opaque, a previous page's next_cursor; NULL: first page */
    size_t limit;       /* 0: STORE_LIST_DEFAULT_LIMIT; capped at STORE_LIST_MAX_LIMIT */
} store_filter;

/*
 * One page, newest first, as a JSON array (events as store_event_get gives
 * them; executions as store_execution_get without "steps").  Pagination is
 * keyset-based, so rows inserted between pages never shift later pages:
 * no row is seen twice or skipped.  *next_cursor (when next_cursor is not
 * NULL) is a malloc'd cursor for the next page, or NULL on the last page.
 * f may be NULL (no filter).
 *
 * On failure returns NULL and sets errno: EINVAL for a malformed cursor,
 * time, or status (store_errmsg says which), ENOMEM, or EIO.
 */
cJSON *store_events_list(store *s, const store_filter *f, char **next_cursor);
cJSON *store_executions_list(store *s, const store_filter *f, char **next_cursor);

/* ---- workflow executions -------------------------------------------------- */

typedef struct store_execution {
    char id[EVH_UUID_LEN + 1]; /* "" on create: a new uuid v4 is made */
    const char *workflow_id, *workflow_version, *trigger_id, *event_id;
    const char *status, *error; /* status NULL: 'queued' */
    const char *replay_of;      /* NULL, or the id of the execution replayed */
    int64_t at_us;              /* created_at, us since the epoch; 0: now */
    int64_t started_us, finished_us; /* 0: not yet */
} store_execution;

/*
 * Insert with status 'queued' (or e->status, e->error and the times: a
 * write that folds the later status changes in, recorder.c) and created_at
 * now (or e->at_us).  At most one execution
 * exists per (trigger_id, event_id, replay_of): when it already exists,
 * returns EVH_E_DUPLICATE and copies the existing id into e->id, so that
 * recovery resumes it instead of running the work twice.
 */
int store_execution_create(store *s, store_execution *e);

/*
 * The recorder's batch: n new executions as store_execution_create would
 * insert them, many rows per statement, in one transaction (or the
 * caller's batch).  A row that cannot go in (a duplicate) does not keep the
 * others out; the first failure is returned.
 */
int store_executions_insert(store *s, store_execution *const *xs, size_t n);

/*
 * status: "queued", "running", "succeeded" or "failed".  Moving to running
 * sets started_at (the first start is kept); succeeded/failed set
 * finished_at; queued/running clear it.  error (may be NULL) replaces the
 * stored error.  EVH_E_NOT_FOUND when there is no such execution.
 */
int store_execution_set_status(store *s, const char *id, const char *status, const char *error);
/* The same, the change dated at_us (us since the epoch; 0: now): a write
 * recorded later than it happened (recorder.h) keeps its time. */
int store_execution_set_status_at(store *s, const char *id, const char *status,
                                  const char *error, int64_t at_us);

/* {id, workflow_id, workflow_version, trigger_id, event_id, status,
 *  created_at, started_at, finished_at, error, replay_of, steps: [...]}
 * with its step runs ordered by id, each {id, step_id, plugin, attempt,
 * status, started_at, finished_at, duration_ms, output, error, metrics}
 * (output and metrics parsed).  NULL when missing. */
cJSON *store_execution_get(store *s, const char *id);

/* Recovery: *out = array of {id, workflow_id, trigger_id, event_id, status,
 * replay_of} of the queued and running executions, oldest first. */
int store_executions_unfinished(store *s, cJSON **out);

/* ---- step runs ------------------------------------------------------------ */

typedef struct store_step_run {
    const char *execution_id, *step_id, *plugin;
    int attempt;
    const char *status; /* "running", "succeeded", "failed" or "skipped" */
    const char *output_json, *error, *metrics_json; /* each may be NULL */
    int64_t started_us, finished_us;                /* microseconds since the epoch; 0: unknown */
} store_step_run;

/* Insert or replace the run (execution_id, step_id, attempt); duration_ms
 * comes from the two times.  A run keeps its id (and so its place in the
 * execution's "steps") when replaced.  EVH_E_NOT_FOUND when the execution
 * does not exist. */
int store_step_run_put(store *s, const store_step_run *r);
/* The recorder's batch: n runs as store_step_run_put, many rows per
 * statement, in one transaction (or the caller's batch).  A run that cannot
 * go in does not keep the others out; the first failure is returned. */
int store_step_runs_put(store *s, const store_step_run *const *runs, size_t n);

/* store_execution_create and then store_step_run_put of each of the n runs
 * (their execution_id is ignored: the new execution's is used), all in one
 * transaction: all or nothing.  A replay from a step records the steps it
 * does not run this way, so that it resumes from the same step after a
 * restart.  EVH_E_DUPLICATE (e->id = the existing one) as
 * store_execution_create. */
int store_execution_create_with_runs(store *s, store_execution *e, const store_step_run *runs,
                                     size_t n);

/* {"<step_id>": {"output": <parsed>}} of the latest succeeded attempt of
 * each step of the execution ({} when none), to resume or replay from a
 * step.  NULL on error. */
cJSON *store_step_outputs(store *s, const char *execution_id);

/* ---- triggers (the workflow_triggers table) ------------------------------- */

/* Insert or update trigger `id`, keeping its created_at.  conditions_json
 * may be NULL (no conditions); origin NULL means "api" (else the YAML file
 * that defines the trigger).  EVH_E_JSON when conditions_json is not JSON. */
int store_trigger_put(store *s, const char *id, const char *name, const char *source,
                      const char *event_type, const char *workflow_id, const char *conditions_json,
                      int enabled, const char *origin);
/* Insert trigger `id` only when no row has that id (no upsert), so that of
 * two concurrent creations of one id exactly one succeeds: EVH_E_DUPLICATE
 * for the other.  Arguments as store_trigger_put. */
int store_trigger_insert(store *s, const char *id, const char *name, const char *source,
                         const char *event_type, const char *workflow_id,
                         const char *conditions_json, int enabled, const char *origin);
/* Replace the definition of trigger `id` made through the API (origin
 * 'api'), keeping its created_at and origin.  EVH_E_NOT_FOUND when there is
 * no such row, or when its origin is a YAML file (those belong to the file). */
int store_trigger_update_api(store *s, const char *id, const char *name, const char *source,
                             const char *event_type, const char *workflow_id,
                             const char *conditions_json, int enabled);
/* EVH_E_NOT_FOUND when absent. */
int store_trigger_delete(store *s, const char *id);
/* Array of {id, name, source, event_type, workflow_id, conditions (parsed or
 * null), enabled (boolean), origin, created_at, updated_at}, oldest first;
 * NULL on error. */
cJSON *store_triggers_list(store *s);
/* One such object; NULL when missing. */
cJSON *store_trigger_get(store *s, const char *id);

/* ---- maintenance ---------------------------------------------------------- */

/*
 * Delete finished (succeeded/failed) executions, with their step runs,
 * created more than max_age_s seconds ago or beyond the newest
 * max_executions executions; then events older than max_age_s that are not
 * pending and that no execution references.  0 means no limit.  Then the
 * freed pages are given back (incremental vacuum) so the file shrinks.
 * *deleted (may be NULL) = executions + events deleted.
 */
int store_retention(store *s, int64_t max_age_s, int64_t max_executions, size_t *deleted);

/* PRAGMA integrity_check: *result = malloc'd report ("ok" when sound).
 * Returns EVH_OK when the report is "ok", EVH_E_IO otherwise. */
int store_integrity_check(store *s, char **result);

/* Readiness: can this connection write now?  BEGIN IMMEDIATE (taking the
 * write lock, waiting up to timeout_ms for another writer) then ROLLBACK;
 * nothing is written.  EVH_OK, or EVH_E_IO (locked past the timeout,
 * read-only file, ...; see store_errmsg).  The connection's usual busy
 * timeout is restored afterwards. */
int store_check_writable(store *s, int timeout_ms);

/* The connection's page cache, in KiB (SQLite's default is 2 MiB).  A
 * connection whose transactions write more than its cache spills pages to
 * the WAL mid-transaction and writes them again when they change after. */
void store_set_cache_kib(store *s, int kib);

/* ---- outbound webhooks: subscriptions and deliveries (the outbox) -------------
 *
 * These work on a store opened with store_options.outbox, the outbox file
 * (store_outbox_path); the main database has none of these tables.
 * subscriptions: where lifecycle events go (subscription.h checks the
 * definition; the row keeps it as given, secrets included: the file is
 * 0600).  outbox_messages: one row per lifecycle event (its envelope, its
 * job and webhook-id); deliveries: one lean row per lifecycle event and
 * subscription pointing at it (message), both written before anything is
 * sent, so a restart loses none:
 *     SELECT d.id, m.event, m.job_id, d.status, d.attempt, d.last_status, d.last_error
 *         FROM deliveries d JOIN outbox_messages m ON m.id = d.message
 *         WHERE d.subscription_id = 'n8n' ORDER BY d.id DESC;
 * status: pending (not sent yet, or given back to be sent again), failed
 * (the last attempt failed; another is due at next_attempt_at), delivered,
 * dead (no attempt left, or the receiver answered 410 Gone).  Which rows
 * are on the wire is the notifier's to know (notify.c): a row stays open
 * while it is attempted, so a process that ends meanwhile sends it again
 * after the restart (at least once; receivers dedupe on webhook-id).
 */

typedef struct store_subscription {
    const char *id, *url;
    const char *events_json;  /* "\"all\"" or ["jobStart", ...] */
    const char *token, *secret; /* NULL: none */
    const char *headers_json; /* object text, or NULL for none */
    int64_t timeout_ms, max_attempts, backoff_base_ms, backoff_cap_ms; /* 0: default */
    int enabled;
} store_subscription;

/* Insert a subscription made through the API (origin 'api'); no upsert:
 * EVH_E_DUPLICATE when the id is taken. */
int store_subscription_insert(store *s, const store_subscription *sub);
/* Replace the definition of API subscription sub->id (enabled included;
 * enabling clears disabled_reason).  EVH_E_NOT_FOUND when there is no such
 * row or it belongs to host.yaml. */
int store_subscription_update(store *s, const store_subscription *sub);
/* Bring the host.yaml subscriptions (origin 'host.yaml') in line with the
 * file, in one transaction: each is inserted or its definition replaced,
 * and those no longer in the file are deleted (their deliveries with them).
 * A row disabled by a 410 stays disabled while its url is unchanged and the
 * file does not disable it itself.  An id the API already uses is taken
 * over by the file. */
int store_subscriptions_sync_config(store *s, const store_subscription *subs, size_t n);
/* Enable or disable (reason kept in disabled_reason; NULL clears it).
 * EVH_E_NOT_FOUND when absent. */
int store_subscription_set_enabled(store *s, const char *id, int enabled, const char *reason);
/* Delete it and its deliveries.  EVH_E_NOT_FOUND when absent. */
int store_subscription_delete(store *s, const char *id);
/* Every subscription, oldest first, secrets NOT redacted: {id, url, events,
 * token, secret, headers, timeout_ms, max_attempts, backoff_base_ms,
 * backoff_cap_ms (null: default), enabled (boolean), disabled_reason,
 * origin, created_at, updated_at}.  NULL on error. */
cJSON *store_subscriptions_list(store *s);
/* One such object; NULL when missing (store_errmsg "") or on error. */
cJSON *store_subscription_get(store *s, const char *id);

/* For lifecycle events: an execution's status, started_at and finished_at,
 * and "steps": the latest run of each step, in the order the steps first
 * ran, as {step_id, plugin, attempt, status, metrics (parsed or null)}:
 * no outputs, which may be large.  NULL when missing or on error. */
cJSON *store_execution_metrics(store *s, const char *execution_id);

/* One lifecycle event for the outbox: its envelope, stored once, and the
 * subscriptions it goes to. */
typedef struct store_outbox_message {
    const char *event, *job_id, *message_id;
    const char *body;
    size_t body_len;
    const char *const *subscription_ids;
    size_t n_subs;
    int64_t *delivery_ids; /* out, n_subs: each delivery's id; 0 when its
                              subscription no longer exists (nothing stored) */
} store_outbox_message;

/* Store n lifecycle events and a delivery per (event, subscription), status
 * pending and due now, in one transaction (all or none). */
int store_outbox_insert(store *s, const store_outbox_message *m, size_t n);

typedef struct store_delivery {
    int64_t id;
    char *subscription_id, *event, *job_id, *message_id, *body;
    size_t body_len;
    int attempt; /* the number the next attempt has (attempts made + 1) */
} store_delivery;

/*
 * Read (nothing is written) up to max deliveries of subscription_id that
 * are due now, oldest due first: pending or failed, next_attempt_at
 * reached, and the first of their job not yet delivered or dead for this
 * subscription, so that a job's events reach each subscriber in order.
 * Whether the subscription is enabled is the caller's to check.  The
 * caller skips those it has on the wire already.  *out is a malloc'd array
 * of *n (NULL when none): free with store_deliveries_free.
 */
int store_deliveries_due(store *s, const char *subscription_id, size_t max, store_delivery **out,
                         size_t *n);
void store_deliveries_free(store_delivery *d, size_t n);

typedef struct store_delivery_outcome {
    int64_t id;
    /* "delivered", "failed" (retry at next_attempt_us), "dead", or
     * "pending": given back unsent (stop), attempts unchanged, due next_attempt_us */
    const char *status;
    int http_status;    /* 0: no HTTP answer */
    const char *error;  /* NULL when none */
    int64_t next_attempt_us;
    int attempt;        /* attempts made, this one included (not for "pending") */
} store_delivery_outcome;

/* Record n outcomes in one transaction. */
int store_deliveries_finish(store *s, const store_delivery_outcome *o, size_t n);
/* When the next delivery of subscription_id that store_deliveries_due would
 * return is due (microseconds since the epoch; 0 when there is none). */
int store_deliveries_next_due(store *s, const char *subscription_id, int64_t *due_us);
/* *idle: no delivery of subscription_id is open (pending or failed);
 * *last_id: its newest delivery's id (0 when none). */
int store_deliveries_idle(store *s, const char *subscription_id, int *idle, int64_t *last_id);
/* The number of deliveries not yet delivered or dead (pending + failed). */
int store_deliveries_count_open(store *s, int64_t *n);

typedef struct store_delivery_filter {
    const char *subscription_id, *status, *job_id, *event;
    const char *cursor; /* a previous page's next_cursor */
    size_t limit;       /* 0: STORE_LIST_DEFAULT_LIMIT; capped at STORE_LIST_MAX_LIMIT */
} store_delivery_filter;

/* One page, newest first: {id, subscription_id, event, job_id, message_id,
 * attempt, status, next_attempt_at (null once delivered or dead),
 * last_status, last_error, created_at, updated_at}.  NULL with errno EINVAL
 * (bad status or cursor; store_errmsg says which), ENOMEM or EIO. */
cJSON *store_deliveries_list(store *s, const store_delivery_filter *f, char **next_cursor);
/* One delivery as above plus "body" (the envelope, parsed); NULL when
 * missing (store_errmsg "") or on error. */
cJSON *store_delivery_get(store *s, int64_t id);
/* A failed or dead delivery back to pending, attempt 0, due now.
 * EVH_E_NOT_FOUND when absent; EVH_E_STATE when it is pending or delivered
 * (store_errmsg says which).  A failed delivery whose next attempt is on
 * the wire right now may then be sent once more. */
int store_delivery_retry(store *s, int64_t id);
/* Delete delivered and dead deliveries created more than max_age_s ago,
 * then the lifecycle events no delivery points at any more;
 * *deleted (may be NULL) = how many. */
int store_deliveries_prune(store *s, int64_t max_age_s, size_t *deleted);

#endif
