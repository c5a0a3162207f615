/*
 * engine.c - the pipeline's threads (see engine.h).
 */
#include "engine.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <evhost/evhost.h>

#include "bus.h"
#include "event.h"
#include "execute.h"
#include "evh_limits.h"
#include "log.h"
#include "metrics.h"
#include "recorder.h"
#include "store.h"
#include "system_events.h"

#define WRITER_BATCH 1024
#define MAX_MATCHES 256
#define RECOVERY_PAGE 1000
/* The checkpointer copies the WAL back this often (a checkpoint with
 * nothing new to copy costs nothing; 50 ms of writes is a few hundred
 * pages under load). */
#define CHECKPOINT_PERIOD_MS 50

/* Workflows and triggers in force; replaced whole on reload and freed when
 * the last worker that borrowed them lets go. */
typedef struct config_snap {
    workflow_set *ws;
    trigger_set *ts;
    unsigned refs;
    unsigned generation;
} config_snap;

/* Event statuses a worker hands to the recorder in one write per batch
 * instead of one per event.  An event whose status is not written yet
 * stays 'pending' if the process dies, and recovery dispatches it again:
 * its executions exist already (unique per trigger and event), so nothing
 * runs twice. */
#define STATUS_BATCH 256
enum { ST_DISPATCHED, ST_UNMATCHED };

typedef struct worker {
    engine *e;
    pthread_t thread;
    store *st;
    unsigned generation;
    char done[2][STATUS_BATCH][EVH_UUID_LEN + 1];
    size_t n_done[2];
} worker;

/* A replay waiting for the replay thread (its row is queued already). */
typedef struct replay_job {
    struct replay_job *next;
    char id[EVH_UUID_LEN + 1];
} replay_job;

struct engine {
    runtime *rt;
    registry *reg;
    engine_options opt;
    char *db_path;
    store *wstore; /* the writer thread's connection */
    recorder *rec; /* the workers' execution records (recorder.h) */
    /* the checkpointer: the writers' checkpoints, off their commit path */
    store *cstore;
    pthread_t checkpointer;
    int checkpointer_started;
    pthread_mutex_t cp_lock;
    pthread_cond_t cp_cond;
    int cp_stop;
    bus *dispatch;
    pthread_t writer;
    int writer_started;
    worker *workers;
    unsigned n_workers;
    unsigned n_started;
    pthread_mutex_t snap_lock;
    config_snap *snap;
    /* replays (engine_replay): their own thread, queue and connections */
    pthread_mutex_t rstore_lock; /* engine_replay's connection */
    store *rstore;
    store *rthread_store; /* the replay thread's */
    pthread_mutex_t rq_lock;
    pthread_cond_t rq_cond;
    replay_job *rq_head, *rq_tail;
    size_t rq_len;
    int rq_stop;
    pthread_t replay_thread;
    int replay_started;
    atomic_int abandon; /* past the stop deadline: leave the rest pending */
    atomic_ullong persisted, dispatched, unmatched, ok, failed, chain_cut;
};

static config_snap *snap_new(workflow_set *ws, trigger_set *ts, unsigned gen)
{
    config_snap *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->ws = ws ? ws : workflow_set_new();
    s->ts = ts ? ts : trigger_set_new();
    s->refs = 1; /* the engine's own reference */
    s->generation = gen;
    return s;
}

static void snap_unref_locked(config_snap *s)
{
    if (--s->refs == 0) {
        workflow_set_free(s->ws);
        trigger_set_free(s->ts);
        free(s);
    }
}

static config_snap *snap_acquire(engine *e)
{
    pthread_mutex_lock(&e->snap_lock);
    config_snap *s = e->snap;
    s->refs++;
    pthread_mutex_unlock(&e->snap_lock);
    return s;
}

static void snap_release(engine *e, config_snap *s)
{
    pthread_mutex_lock(&e->snap_lock);
    snap_unref_locked(s);
    pthread_mutex_unlock(&e->snap_lock);
}

void engine_set_config(engine *e, workflow_set *ws, trigger_set *ts)
{
    pthread_mutex_lock(&e->snap_lock);
    config_snap *old = e->snap;
    config_snap *s = snap_new(ws, ts, old ? old->generation + 1 : 1);
    if (s) {
        e->snap = s;
        if (old)
            snap_unref_locked(old);
    }
    pthread_mutex_unlock(&e->snap_lock);
}

void *engine_config_acquire(engine *e, const workflow_set **ws, const trigger_set **ts)
{
    config_snap *s = snap_acquire(e);
    *ws = s->ws;
    *ts = s->ts;
    return s;
}

void engine_config_release(engine *e, void *token)
{
    snap_release(e, token);
}

engine *engine_new(runtime *rt, registry *reg, const engine_options *o, char **err)
{
    engine *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->rt = rt;
    e->reg = reg;
    e->opt = *o;
    e->db_path = strdup(o->db_path);
    e->opt.db_path = e->db_path;
    if (e->opt.workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        e->opt.workers = n > 0 ? (unsigned)n : 2;
    }
    if (e->opt.dispatch_queue == 0)
        e->opt.dispatch_queue = EVH_QUEUE_DEFAULT_CAPACITY;
    pthread_mutex_init(&e->snap_lock, NULL);
    pthread_mutex_init(&e->rstore_lock, NULL);
    pthread_mutex_init(&e->rq_lock, NULL);
    pthread_cond_init(&e->rq_cond, NULL);
    pthread_mutex_init(&e->cp_lock, NULL);
    pthread_cond_init(&e->cp_cond, NULL);
    e->snap = snap_new(NULL, NULL, 1);
    store_options so = {.path = e->db_path, .synchronous_full = o->synchronous_full};
    if (!e->db_path || !e->snap || store_open(&so, &e->wstore, err) != EVH_OK)
        goto fail;
    e->rec = recorder_new(&so, e->opt.dispatch_queue, err);
    if (!e->rec || store_open(&so, &e->cstore, err) != EVH_OK)
        goto fail;
    store_defer_checkpoints(e->wstore);
    store_defer_checkpoints(recorder_store(e->rec));
    e->dispatch = bus_new(e->opt.dispatch_queue);
    e->workers = calloc(e->opt.workers, sizeof *e->workers);
    if (!e->dispatch || !e->workers)
        goto fail;
    e->n_workers = e->opt.workers;
    for (unsigned i = 0; i < e->n_workers; i++) {
        e->workers[i].e = e;
        if (store_open(&so, &e->workers[i].st, err) != EVH_OK)
            goto fail;
    }
    if (store_open(&so, &e->rstore, err) != EVH_OK ||
        store_open(&so, &e->rthread_store, err) != EVH_OK)
        goto fail;
    return e;
fail:
    engine_free(e);
    return NULL;
}

/* The event writer's and the recorder's checkpoints (store_defer_checkpoints):
 * a PASSIVE checkpoint every CHECKPOINT_PERIOD_MS, and a last one at stop. */
static void *checkpointer_main(void *arg)
{
    engine *e = arg;
    pthread_mutex_lock(&e->cp_lock);
    while (!e->cp_stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += CHECKPOINT_PERIOD_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&e->cp_cond, &e->cp_lock, &until);
        pthread_mutex_unlock(&e->cp_lock);
        if (store_checkpoint(e->cstore, NULL) != EVH_OK)
            log_warn("engine", "checkpoint failed: %s", store_errmsg(e->cstore));
        pthread_mutex_lock(&e->cp_lock);
    }
    pthread_mutex_unlock(&e->cp_lock);
    store_checkpoint(e->cstore, NULL);
    return NULL;
}

/* Push to the dispatch queue, waiting as long as it takes unless the queue
 * was closed.  The event is durable already, so waiting only delays. */
static int dispatch_push(engine *e, evh_event *ev)
{
    for (;;) {
        int rc = bus_push(e->dispatch, ev, 1000);
        if (rc != EVH_E_QUEUE_FULL)
            return rc;
    }
}

static void recover_pending(engine *e)
{
    int64_t after = 0;
    size_t total = 0;
    for (;;) {
        evh_event **evs = NULL;
        size_t n = 0;
        int64_t last = after;
        if (store_events_pending(e->wstore, after, RECOVERY_PAGE, &evs, &n, &last) != EVH_OK ||
            n == 0) {
            free(evs);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            evs[i]->recovered = 1;
            if (dispatch_push(e, evs[i]) != EVH_OK)
                event_free(evs[i]);
        }
        free(evs);
        total += n;
        after = last;
        if (n < RECOVERY_PAGE)
            break;
    }
    if (total)
        log_info("engine", "recovery: %zu accepted event(s) not yet dispatched are being run",
                 total);
}

static int persist_batch(engine *e, evh_event **batch, size_t n)
{
    int rc = EVH_E_IO;
    for (int attempt = 0; attempt < 5; attempt++) {
        rc = store_events_insert(e->wstore, batch, n);
        if (rc == EVH_OK)
            return rc;
        log_error("engine", "storing %zu event(s) failed (attempt %d): %s", n, attempt + 1,
                  store_errmsg(e->wstore));
        usleep(100000u << attempt);
    }
    return rc;
}

/* Events no trigger listens to (the `system` source's, mostly, when
 * nothing reacts to them) are stored as 'unmatched' at once: a dispatch
 * and a status write fewer.  The triggers in force when the event is
 * stored decide, as they would a moment later on a worker. */
static void mark_unmatched(engine *e, evh_event **batch, size_t n)
{
    config_snap *s = snap_acquire(e);
    for (size_t i = 0; i < n; i++)
        batch[i]->unmatched = !trigger_set_listens(s->ts, batch[i]->source,
                                                   batch[i]->event_type);
    snap_release(e, s);
}

static void *writer_main(void *arg)
{
    engine *e = arg;
    evh_event *batch[WRITER_BATCH];
    recover_pending(e);
    for (;;) {
        int n = bus_pop_batch(e->rt->bus, batch, WRITER_BATCH, 200);
        if (n == EVH_E_STOPPING)
            break;
        if (n <= 0)
            continue;
        mark_unmatched(e, batch, (size_t)n);
        int rc = persist_batch(e, batch, (size_t)n);
        if (rc != EVH_OK) {
            /* Never acknowledged, so nothing accepted is lost. */
            ack_complete(batch, (size_t)n, rc);
            for (int i = 0; i < n; i++)
                event_free(batch[i]);
            continue;
        }
        /* A retried request: the first event with its idempotency key is
         * the one that counts; this copy was not stored.  (Rare, so one
         * wake-up each; the rest of the batch shares one.) */
        for (int i = 0; i < n; i++) {
            if (batch[i]->idempotency_key && batch[i]->seq == 0)
                ack_complete(&batch[i], 1, EVH_E_DUPLICATE);
        }
        ack_complete(batch, (size_t)n, EVH_OK);
        for (int i = 0; i < n; i++) {
            evh_event *ev = batch[i];
            if (ev->idempotency_key && ev->seq == 0) {
                event_free(ev);
                continue;
            }
            atomic_fetch_add(&e->persisted, 1);
            if (ev->unmatched) {
                atomic_fetch_add(&e->unmatched, 1);
                event_free(ev);
                continue;
            }
            if (dispatch_push(e, ev) != EVH_OK)
                event_free(ev); /* stays pending in the database */
        }
    }
    bus_close(e->dispatch);
    return NULL;
}

/* Run workflow wf_id for (trigger_key, event) exactly once; returns the
 * execution's result, EVH_OK when it had already succeeded. */
static int run_once(worker *wk, exec_worker *xw, const config_snap *s, const char *wf_id,
                    const char *trigger_key, const evh_event *ev, const cJSON *env);

static void run_match(worker *wk, exec_worker *xw, const config_snap *s, const trigger *t,
                      const evh_event *ev, const cJSON *env)
{
    int rc = run_once(wk, xw, s, t->workflow_id, t->id, ev, env);
    const workflow *wf = workflow_set_get(s->ws, t->workflow_id);
    if (rc != EVH_OK && wf && wf->on_error) {
        /* The error workflow gets the same event, under its own key, so
         * it too runs once per (trigger, event). */
        char *key = NULL;
        if (asprintf(&key, "%s#on_error", t->id) >= 0)
            run_once(wk, xw, s, wf->on_error, key, ev, env);
        free(key);
    }
}

static int run_once(worker *wk, exec_worker *xw, const config_snap *s, const char *wf_id,
                    const char *trigger_key, const evh_event *ev, const cJSON *env)
{
    engine *e = wk->e;
    const workflow *wf = workflow_set_get(s->ws, wf_id);
    if (!wf) {
        log_error("engine", "trigger '%s' names workflow '%s', which is not loaded",
                  trigger_key, wf_id);
        return EVH_E_NOT_FOUND;
    }
    const char *t_id = trigger_key;
    store_execution x;
    memset(&x, 0, sizeof x);
    x.workflow_id = wf->id;
    x.workflow_version = wf->version;
    x.trigger_id = t_id;
    x.event_id = ev->id;
    cJSON *prior = NULL;
    int rc = exec_record_create(xw, &x, !ev->recovered);
    if (rc == EVH_E_DUPLICATE) {
        /* Recovery: this (trigger, event) already has its execution. */
        cJSON *row = store_execution_get(wk->st, x.id);
        const cJSON *status = cJSON_GetObjectItemCaseSensitive(row, "status");
        int finished = cJSON_IsString(status) && (!strcmp(status->valuestring, "succeeded") ||
                                                  !strcmp(status->valuestring, "failed"));
        int succeeded = finished && !strcmp(status->valuestring, "succeeded");
        cJSON_Delete(row);
        if (finished)
            return succeeded ? EVH_OK : EVH_E_PLUGIN;
        prior = store_step_outputs(wk->st, x.id);
        log_info("engine", "resuming execution %s of workflow '%s'", x.id, wf->id);
    } else if (rc != EVH_OK) {
        log_error("engine", "cannot record execution of '%s' for event %s: %s", wf->id, ev->id,
                  store_errmsg(wk->st));
        return EVH_E_IO;
    }
    exec_request req = {.wf = wf,
                        .reg = e->reg,
                        .trigger_id = t_id,
                        .envelope = env,
                        .chain_depth = ev->chain_depth,
                        .execution_id = x.id,
                        .lifecycle = e->opt.lifecycle,
                        .prior_outputs = prior};
    char *error = NULL;
    int64_t t0 = monotonic_ns();
    rc = exec_run(xw, &req, &error);
    system_events_execution_finished(&(sysev_execution){
        .execution_id = x.id, .workflow_id = wf->id, .trigger_id = t_id, .event_id = ev->id,
        .user_id = ev->user_id, .succeeded = rc == EVH_OK, .error = error,
        .stopped_by = exec_stopped_by(xw), .duration_ms = (double)(monotonic_ns() - t0) / 1e6,
        .chain_depth = ev->chain_depth});
    exec_record_count(xw, rc == EVH_OK ? &e->ok : &e->failed);
    metrics_execution(wf->id, rc == EVH_OK);
    free(error);
    cJSON_Delete(prior);
    return rc;
}

/* Write the batched statuses; the counters move only then, so whoever
 * waits on them (tests, shutdown) sees the statuses in the database. */
static void status_flush(worker *wk)
{
    static const char *const names[2] = {"dispatched", "unmatched"};
    for (int k = 0; k < 2; k++) {
        size_t n = wk->n_done[k];
        if (n == 0)
            continue;
        const char *ids[STATUS_BATCH];
        for (size_t i = 0; i < n; i++)
            ids[i] = wk->done[k][i];
        atomic_ullong *count = k == ST_DISPATCHED ? &wk->e->dispatched : &wk->e->unmatched;
        if (!recorder_events_status(wk->e->rec, ids, n, names[k], count)) {
            if (store_events_set_status(wk->st, ids, n, names[k]) != EVH_OK)
                log_error("engine", "cannot mark %zu event(s) %s: %s (they stay pending and "
                                    "are checked again at the next start)", n, names[k],
                          store_errmsg(wk->st));
            atomic_fetch_add(count, (unsigned long long)n);
        }
        wk->n_done[k] = 0;
    }
}

static void status_later(worker *wk, const char *event_id, int which)
{
    if (wk->n_done[which] == STATUS_BATCH)
        status_flush(wk);
    memcpy(wk->done[which][wk->n_done[which]++], event_id, EVH_UUID_LEN + 1);
}

static void dispatch_event(worker *wk, exec_worker *xw, evh_event *ev)
{
    engine *e = wk->e;
    if (ev->chain_depth > e->opt.max_chain_depth) {
        log_warn("engine", "event %s (%s/%s) not dispatched: chain depth %u exceeds "
                           "max_chain_depth %u (a workflow triggering itself?)",
                 ev->id, ev->source, ev->event_type, ev->chain_depth, e->opt.max_chain_depth);
        atomic_fetch_add(&e->chain_cut, 1);
        status_later(wk, ev->id, ST_UNMATCHED);
        return;
    }
    cJSON *env = event_envelope(ev);
    config_snap *s = snap_acquire(e);
    if (s->generation != wk->generation) {
        exec_worker_reset(xw); /* instances belong to the old workflows */
        wk->generation = s->generation;
    }
    const trigger *matches[MAX_MATCHES];
    size_t n = env ? trigger_set_match(s->ts, ev->source, ev->event_type, env, matches,
                                       MAX_MATCHES)
                   : 0;
    for (size_t i = 0; i < n; i++)
        run_match(wk, xw, s, matches[i], ev, env);
    snap_release(e, s);
    status_later(wk, ev->id, n ? ST_DISPATCHED : ST_UNMATCHED);
    cJSON_Delete(env);
}

/* Idle: drop step instances of an older generation now rather than at the
 * next event, so that a replaced or removed step plugin drains and is
 * unloaded (reload.h) even when no event comes. */
static void idle_reset(engine *e, exec_worker *xw, unsigned *generation)
{
    pthread_mutex_lock(&e->snap_lock);
    unsigned g = e->snap->generation;
    pthread_mutex_unlock(&e->snap_lock);
    if (g != *generation) {
        exec_worker_reset(xw);
        *generation = g;
    }
}

static void *worker_main(void *arg)
{
    worker *wk = arg;
    engine *e = wk->e;
    exec_worker *xw = exec_worker_new(e->rt, wk->st, e->rec);
    if (!xw)
        return NULL;
    for (;;) {
        evh_event *ev = NULL;
        int n = bus_pop_batch(e->dispatch, &ev, 1, 200);
        if (n == EVH_E_STOPPING)
            break;
        if (n <= 0) {
            /* Idle: write what is batched.  A worker that finished its last
             * event while another was still queued did not flush; when a
             * second worker took that one, the first one's statuses stayed
             * pending (and uncounted) until its next event, possibly never. */
            status_flush(wk);
            idle_reset(e, xw, &wk->generation);
            continue;
        }
        if (!atomic_load(&e->abandon))
            dispatch_event(wk, xw, ev);
        event_free(ev);
        if (bus_depth(e->dispatch) == 0)
            status_flush(wk); /* caught up: make the statuses visible now */
    }
    status_flush(wk);
    exec_worker_free(xw);
    return NULL;
}

/* ---- replay ----------------------------------------------------------------
 *
 * engine_replay records the new execution (queued) and hands its id to the
 * replay thread, which has its own queue, database connection and step
 * instances, so that replays never wait behind a backlog of events (nor
 * events behind replays).  A replay from a step records each step before it
 * as a 'skipped' run carrying the original's output, in the transaction
 * that creates the execution: the row alone then says where the replay
 * starts and with what, and a replay left queued or running by a restart
 * is found by engine_start (store_executions_unfinished, replay_of set) and
 * run the same way. */

static const char *str_of(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

/* A step run that stands for the step's output: the latest succeeded
 * attempt, or a step a replay carried over. */
static int run_counts(const cJSON *run)
{
    const char *status = str_of(run, "status");
    return status && (!strcmp(status, "succeeded") || !strcmp(status, "skipped"));
}

/* {"<step>": {"output": ...}} from an execution's step runs (ordered by
 * id, so a later attempt replaces an earlier one); NULL on out-of-memory. */
static cJSON *outputs_of(const cJSON *runs)
{
    cJSON *map = cJSON_CreateObject();
    const cJSON *run;
    cJSON_ArrayForEach(run, runs)
    {
        const char *step = str_of(run, "step_id");
        const cJSON *output = cJSON_GetObjectItemCaseSensitive(run, "output");
        if (!map || !step || !run_counts(run) || !cJSON_IsObject(output))
            continue;
        cJSON *entry = cJSON_CreateObject();
        cJSON *copy = cJSON_Duplicate(output, 1);
        if (!entry || !copy || !cJSON_AddItemToObject(entry, "output", copy)) {
            cJSON_Delete(entry);
            cJSON_Delete(copy);
            cJSON_Delete(map);
            return NULL;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(map, step);
        cJSON_AddItemToObject(map, step, entry);
    }
    return map;
}

static int step_covered(const cJSON *runs, const char *step_id)
{
    const cJSON *run;
    cJSON_ArrayForEach(run, runs)
    {
        const char *step = str_of(run, "step_id");
        if (step && !strcmp(step, step_id) && run_counts(run))
            return 1;
    }
    return 0;
}

static int set_err(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int set_err(char **err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(err, fmt, ap) < 0)
            *err = NULL;
        va_end(ap);
    }
    return 0;
}

/* Check the request and record the replay (queued); see engine_replay. */
static int replay_create(store *st, const config_snap *s, const char *execution_id,
                         const char *from_step, char new_id[EVH_UUID_LEN + 1], char **err)
{
    cJSON *orig = store_execution_get(st, execution_id);
    if (!orig) {
        if (*store_errmsg(st)) {
            set_err(err, "cannot read execution %s: %s", execution_id, store_errmsg(st));
            return EVH_E_IO;
        }
        set_err(err, "no execution '%s'", execution_id);
        return EVH_E_NOT_FOUND;
    }
    int rc = EVH_OK;
    store_step_run *runs = NULL;
    cJSON *outputs = NULL;
    evh_event *ev = NULL;
    store_execution x;
    memset(&x, 0, sizeof x);
    const char *wf_id = str_of(orig, "workflow_id");
    const char *trigger_id = str_of(orig, "trigger_id");
    const char *event_id = str_of(orig, "event_id");
    const workflow *wf = wf_id ? workflow_set_get(s->ws, wf_id) : NULL;
    size_t from = 0;
    if (!wf_id || !trigger_id || !event_id) {
        rc = EVH_E_IO;
        set_err(err, "execution %s is incomplete in the database", execution_id);
        goto out;
    }
    if (!wf) {
        rc = EVH_E_NOT_FOUND;
        set_err(err, "workflow '%s' of execution %s is no longer loaded", wf_id, execution_id);
        goto out;
    }
    if (from_step) {
        while (from < wf->n_steps && strcmp(wf->steps[from].id, from_step))
            from++;
        if (from == wf->n_steps) {
            char list[512] = "";
            for (size_t i = 0; i < wf->n_steps; i++) {
                size_t len = strlen(list);
                snprintf(list + len, sizeof list - len, "%s'%s'", i ? ", " : "",
                         wf->steps[i].id);
            }
            rc = EVH_E_INVALID;
            set_err(err, "workflow '%s' has no step '%s' (its steps: %s)", wf->id, from_step,
                    list);
            goto out;
        }
    }
    ev = store_event_load(st, event_id);
    if (!ev) {
        rc = *store_errmsg(st) ? EVH_E_IO : EVH_E_NOT_FOUND;
        set_err(err, "event %s of execution %s %s%s", event_id, execution_id,
                rc == EVH_E_IO ? "cannot be read: " : "is no longer stored",
                rc == EVH_E_IO ? store_errmsg(st) : "");
        goto out;
    }
    /* the steps before from_step are not run: their outputs come along */
    outputs = from ? outputs_of(cJSON_GetObjectItemCaseSensitive(orig, "steps")) : NULL;
    runs = from ? calloc(from, sizeof *runs) : NULL;
    if (from && (!outputs || !runs)) {
        rc = EVH_E_NOMEM;
        set_err(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < from; i++) {
        const cJSON *entry = cJSON_GetObjectItemCaseSensitive(outputs, wf->steps[i].id);
        const cJSON *output = cJSON_GetObjectItemCaseSensitive(entry, "output");
        runs[i] = (store_step_run){.step_id = wf->steps[i].id,
                                   .plugin = wf->steps[i].uses,
                                   .attempt = 0, /* not attempted */
                                   .status = "skipped",
                                   .output_json = output ? cJSON_PrintUnformatted(output) : NULL};
        if (output && !runs[i].output_json) {
            rc = EVH_E_NOMEM;
            set_err(err, "out of memory");
            goto out;
        }
    }
    x.workflow_id = wf->id;
    x.workflow_version = wf->version;
    x.trigger_id = trigger_id;
    x.event_id = event_id;
    x.replay_of = execution_id;
    rc = store_execution_create_with_runs(st, &x, runs, from);
    if (rc == EVH_E_DUPLICATE) {
        snprintf(new_id, EVH_UUID_LEN + 1, "%s", x.id);
        set_err(err, "execution %s has already been replayed as %s; replay that one to run it "
                     "again", execution_id, x.id);
    } else if (rc != EVH_OK) {
        set_err(err, "cannot record the replay of execution %s: %s", execution_id,
                store_errmsg(st));
    } else {
        snprintf(new_id, EVH_UUID_LEN + 1, "%s", x.id);
    }
out:
    for (size_t i = 0; runs && i < from; i++)
        free((char *)runs[i].output_json);
    free(runs);
    cJSON_Delete(outputs);
    event_free(ev);
    cJSON_Delete(orig);
    return rc;
}

/* Queue a recorded replay for the replay thread.  On out-of-memory it stays
 * queued in the database and runs after the next start. */
static void replay_enqueue(engine *e, const char *id)
{
    replay_job *j = calloc(1, sizeof *j);
    if (!j) {
        log_error("engine", "replay %s stays queued until the next start: out of memory", id);
        return;
    }
    snprintf(j->id, sizeof j->id, "%s", id);
    pthread_mutex_lock(&e->rq_lock);
    if (e->rq_tail)
        e->rq_tail->next = j;
    else
        e->rq_head = j;
    e->rq_tail = j;
    e->rq_len++;
    pthread_cond_signal(&e->rq_cond);
    pthread_mutex_unlock(&e->rq_lock);
}

int engine_replay(engine *e, const char *execution_id, const char *from_step,
                  char new_id[EVH_UUID_LEN + 1], char **err)
{
    if (err)
        *err = NULL;
    new_id[0] = '\0';
    if (!e || !execution_id) {
        set_err(err, "no execution given");
        return EVH_E_INVALID;
    }
    pthread_mutex_lock(&e->rstore_lock);
    config_snap *s = snap_acquire(e);
    int rc = replay_create(e->rstore, s, execution_id, from_step, new_id, err);
    snap_release(e, s);
    pthread_mutex_unlock(&e->rstore_lock);
    if (rc == EVH_OK) {
        log_info("engine", "execution %s replayed as %s%s%s", execution_id, new_id,
                 from_step ? " from step " : "", from_step ? from_step : "");
        replay_enqueue(e, new_id);
    }
    return rc;
}

/* Run replay `id` unless it already finished (queued twice: by recovery
 * and by engine_replay). */
static void replay_run(engine *e, exec_worker *xw, unsigned *generation, const char *id)
{
    store *st = e->rthread_store;
    cJSON *row = store_execution_get(st, id);
    const char *status = str_of(row, "status");
    if (!status || !strcmp(status, "succeeded") || !strcmp(status, "failed")) {
        if (!row)
            log_error("engine", "replay %s: %s", id,
                      *store_errmsg(st) ? store_errmsg(st) : "no such execution");
        cJSON_Delete(row);
        return;
    }
    config_snap *s = snap_acquire(e);
    if (s->generation != *generation) {
        exec_worker_reset(xw); /* instances belong to the old workflows */
        *generation = s->generation;
    }
    const char *wf_id = str_of(row, "workflow_id");
    const char *event_id = str_of(row, "event_id");
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(row, "steps");
    const workflow *wf = wf_id ? workflow_set_get(s->ws, wf_id) : NULL;
    evh_event *ev = NULL;
    cJSON *env = NULL, *prior = NULL;
    char *why = NULL;
    if (!wf) {
        set_err(&why, "workflow '%s' is no longer loaded", wf_id ? wf_id : "?");
    } else if (!event_id || !(ev = store_event_load(st, event_id))) {
        set_err(&why, "event %s %s%s", event_id ? event_id : "?",
                *store_errmsg(st) ? "cannot be read: " : "is no longer stored",
                store_errmsg(st));
    } else if (!(env = event_envelope(ev)) || !(prior = outputs_of(runs))) {
        set_err(&why, "out of memory");
    }
    if (why || !wf || !ev || !env || !prior) {
        const char *reason = why ? why : "out of memory";
        log_warn("engine", "replay %s of '%s' failed: %s", id, wf_id ? wf_id : "?", reason);
        store_execution_set_status(st, id, "failed", reason);
        system_events_execution_finished(&(sysev_execution){
            .execution_id = id, .workflow_id = wf_id ? wf_id : "?",
            .trigger_id = str_of(row, "trigger_id"), .event_id = event_id,
            .user_id = ev ? ev->user_id : NULL, .replay_of = str_of(row, "replay_of"),
            .error = reason, .chain_depth = ev ? ev->chain_depth : 0});
        atomic_fetch_add(&e->failed, 1);
        metrics_execution(wf_id ? wf_id : "?", 0);
    } else {
        /* start at the first step neither carried over nor (before a
         * restart) succeeded */
        size_t from = 0;
        while (from < wf->n_steps && step_covered(runs, wf->steps[from].id))
            from++;
        if (from == wf->n_steps) { /* every step had run when the process ended */
            store_execution_set_status(st, id, "succeeded", NULL);
            system_events_execution_finished(&(sysev_execution){
                .execution_id = id, .workflow_id = wf->id,
                .trigger_id = str_of(row, "trigger_id"), .event_id = event_id,
                .user_id = ev->user_id, .replay_of = str_of(row, "replay_of"), .succeeded = 1,
                .chain_depth = ev->chain_depth});
            atomic_fetch_add(&e->ok, 1);
            metrics_execution(wf->id, 1);
        } else {
            exec_request req = {.wf = wf,
                                .reg = e->reg,
                                .trigger_id = str_of(row, "trigger_id"),
                                .envelope = env,
                                .chain_depth = ev->chain_depth,
                                .execution_id = id,
                                .lifecycle = e->opt.lifecycle,
                                .prior_outputs = prior,
                                .from_step = wf->steps[from].id};
            char *error = NULL;
            int64_t t0 = monotonic_ns();
            int rc = exec_run(xw, &req, &error);
            system_events_execution_finished(&(sysev_execution){
                .execution_id = id, .workflow_id = wf->id, .trigger_id = req.trigger_id,
                .event_id = event_id, .user_id = ev->user_id,
                .replay_of = str_of(row, "replay_of"), .succeeded = rc == EVH_OK,
                .error = error, .stopped_by = exec_stopped_by(xw),
                .duration_ms = (double)(monotonic_ns() - t0) / 1e6,
                .chain_depth = ev->chain_depth});
            atomic_fetch_add(rc == EVH_OK ? &e->ok : &e->failed, 1);
            metrics_execution(wf->id, rc == EVH_OK);
            free(error);
        }
    }
    snap_release(e, s);
    free(why);
    cJSON_Delete(prior);
    cJSON_Delete(env);
    event_free(ev);
    cJSON_Delete(row);
}

static void *replay_main(void *arg)
{
    engine *e = arg;
    exec_worker *xw = exec_worker_new(e->rt, e->rthread_store, NULL);
    if (!xw) {
        log_error("engine", "replays stay queued until the next start: out of memory");
        return NULL;
    }
    unsigned generation = 0;
    for (;;) {
        pthread_mutex_lock(&e->rq_lock);
        while (!e->rq_head && !e->rq_stop) {
            struct timespec idle;
            clock_gettime(CLOCK_REALTIME, &idle); /* rq_cond's clock */
            idle.tv_sec += 1;
            if (pthread_cond_timedwait(&e->rq_cond, &e->rq_lock, &idle) != 0) {
                pthread_mutex_unlock(&e->rq_lock);
                idle_reset(e, xw, &generation); /* as the workers do */
                pthread_mutex_lock(&e->rq_lock);
            }
        }
        replay_job *j = atomic_load(&e->abandon) ? NULL : e->rq_head;
        if (j) {
            e->rq_head = j->next;
            if (!e->rq_head)
                e->rq_tail = NULL;
            e->rq_len--;
        }
        pthread_mutex_unlock(&e->rq_lock);
        if (!j)
            break; /* stopping, and nothing (more) to run */
        replay_run(e, xw, &generation, j->id);
        free(j);
    }
    exec_worker_free(xw);
    return NULL;
}

/* Replays a previous process left queued or running: run them again. */
static void recover_replays(engine *e)
{
    cJSON *rows = NULL;
    if (store_executions_unfinished(e->rthread_store, &rows) != EVH_OK) {
        log_error("engine", "recovery: cannot list unfinished executions: %s",
                  store_errmsg(e->rthread_store));
        return;
    }
    size_t n = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, rows)
    {
        const char *id = str_of(row, "id");
        if (id && str_of(row, "replay_of")) {
            replay_enqueue(e, id);
            n++;
        }
    }
    cJSON_Delete(rows);
    if (n)
        log_info("engine", "recovery: %zu replay(s) not finished are being run", n);
}

/* Let the replay thread run what is queued up to the deadline, then join it;
 * what remains stays queued in the database for the next start. */
static void replay_stop(engine *e, int64_t deadline)
{
    if (!e->replay_started)
        return;
    pthread_mutex_lock(&e->rq_lock);
    e->rq_stop = 1;
    pthread_cond_broadcast(&e->rq_cond);
    pthread_mutex_unlock(&e->rq_lock);
    for (;;) {
        pthread_mutex_lock(&e->rq_lock);
        size_t left = e->rq_len;
        pthread_mutex_unlock(&e->rq_lock);
        if (left == 0)
            break;
        if (monotonic_ns() >= deadline) {
            log_warn("engine", "stop deadline reached: %zu replay(s) stay queued for the next "
                               "start", left);
            atomic_store(&e->abandon, 1);
            break;
        }
        usleep(10000);
    }
    pthread_join(e->replay_thread, NULL);
    e->replay_started = 0;
}

int engine_start(engine *e)
{
    /* the host's own events (the `system` source), from here on */
    system_events_attach(e->rt, e->reg);
    if (recorder_start(e->rec) != EVH_OK)
        return EVH_E_NOMEM;
    if (pthread_create(&e->checkpointer, NULL, checkpointer_main, e) != 0)
        return EVH_E_NOMEM;
    e->checkpointer_started = 1;
    for (unsigned i = 0; i < e->n_workers; i++) {
        if (pthread_create(&e->workers[i].thread, NULL, worker_main, &e->workers[i]) != 0)
            return EVH_E_NOMEM;
        e->n_started++;
    }
    recover_replays(e);
    if (pthread_create(&e->replay_thread, NULL, replay_main, e) != 0)
        return EVH_E_NOMEM;
    e->replay_started = 1;
    if (pthread_create(&e->writer, NULL, writer_main, e) != 0)
        return EVH_E_NOMEM;
    e->writer_started = 1;
    return EVH_OK;
}

void engine_stop(engine *e, int deadline_ms)
{
    /* The runtime's bus is closed by runtime_stop; the writer drains it and
     * closes the dispatch queue, and the workers drain that. */
    if (e->writer_started) {
        pthread_join(e->writer, NULL);
        e->writer_started = 0;
    } else if (e->dispatch) {
        bus_close(e->dispatch);
    }
    int64_t deadline = monotonic_ns() + (int64_t)deadline_ms * 1000000;
    while (bus_depth(e->dispatch) > 0 && monotonic_ns() < deadline)
        usleep(10000);
    if (bus_depth(e->dispatch) > 0) {
        log_warn("engine", "stop deadline reached: %zu event(s) stay pending for the next start",
                 bus_depth(e->dispatch));
        atomic_store(&e->abandon, 1);
    }
    for (unsigned i = 0; i < e->n_started; i++)
        pthread_join(e->workers[i].thread, NULL);
    e->n_started = 0;
    replay_stop(e, deadline);
    recorder_stop(e->rec); /* after the workers: it commits what they handed in */
    if (e->checkpointer_started) {
        pthread_mutex_lock(&e->cp_lock);
        e->cp_stop = 1;
        pthread_cond_signal(&e->cp_cond);
        pthread_mutex_unlock(&e->cp_lock);
        pthread_join(e->checkpointer, NULL);
        e->checkpointer_started = 0;
    }
}

void engine_free(engine *e)
{
    if (!e)
        return;
    system_events_detach(e->rt);
    if (e->workers) {
        for (unsigned i = 0; i < e->n_workers; i++)
            store_close(e->workers[i].st);
        free(e->workers);
    }
    bus_free(e->dispatch);
    recorder_free(e->rec);
    store_close(e->cstore);
    store_close(e->wstore);
    while (e->rq_head) {
        replay_job *j = e->rq_head;
        e->rq_head = j->next;
        free(j);
    }
    store_close(e->rstore);
    store_close(e->rthread_store);
    pthread_cond_destroy(&e->rq_cond);
    pthread_mutex_destroy(&e->rq_lock);
    pthread_cond_destroy(&e->cp_cond);
    pthread_mutex_destroy(&e->cp_lock);
    pthread_mutex_destroy(&e->rstore_lock);
    if (e->snap)
        snap_unref_locked(e->snap);
    pthread_mutex_destroy(&e->snap_lock);
    free(e->db_path);
    free(e);
}

void engine_get_stats(engine *e, engine_stats *out)
{
    out->persisted = atomic_load(&e->persisted);
    out->dispatched = atomic_load(&e->dispatched);
    out->unmatched = atomic_load(&e->unmatched);
    out->executions_ok = atomic_load(&e->ok);
    out->executions_failed = atomic_load(&e->failed);
    out->chain_cut = atomic_load(&e->chain_cut);
    out->dispatch_depth = e->dispatch ? bus_depth(e->dispatch) : 0;
}
