/*
 * engine.c - the pipeline's threads (see engine.h).
 */
#include "engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <evhost/evhost.h>

#include "bus.h"
#include "event.h"
#include "execute.h"
#include "evh_limits.h"
#include "log.h"
#include "store.h"

#define WRITER_BATCH 1024
#define MAX_MATCHES 256
#define RECOVERY_PAGE 1000

/* Workflows and triggers in force; replaced whole on reload and freed when
 * the last worker that borrowed them lets go. */
typedef struct config_snap {
    workflow_set *ws;
    trigger_set *ts;
    unsigned refs;
    unsigned generation;
} config_snap;

typedef struct worker {
    engine *e;
    pthread_t thread;
    store *st;
    unsigned generation;
} worker;

struct engine {
    runtime *rt;
    registry *reg;
    engine_options opt;
    char *db_path;
    store *wstore; /* the writer thread's connection */
    bus *dispatch;
    pthread_t writer;
    int writer_started;
    worker *workers;
    unsigned n_workers;
    unsigned n_started;
    pthread_mutex_t snap_lock;
    config_snap *snap;
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
    e->snap = snap_new(NULL, NULL, 1);
    store_options so = {.path = e->db_path, .synchronous_full = o->synchronous_full};
    if (!e->db_path || !e->snap || store_open(&so, &e->wstore, err) != EVH_OK)
        goto fail;
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
    return e;
fail:
    engine_free(e);
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
            if (dispatch_push(e, ev) != EVH_OK)
                event_free(ev); /* stays pending in the database */
        }
    }
    bus_close(e->dispatch);
    return NULL;
}

static cJSON *envelope_of(const evh_event *ev)
{
    char *text = event_envelope_json(ev);
    cJSON *env = text ? cJSON_Parse(text) : NULL;
    free(text);
    return env;
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
    int rc = store_execution_create(wk->st, &x);
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
                        .prior_outputs = prior};
    char *error = NULL;
    rc = exec_run(xw, &req, &error);
    atomic_fetch_add(rc == EVH_OK ? &e->ok : &e->failed, 1);
    free(error);
    cJSON_Delete(prior);
    return rc;
}

static void dispatch_event(worker *wk, exec_worker *xw, evh_event *ev)
{
    engine *e = wk->e;
    if (ev->chain_depth > e->opt.max_chain_depth) {
        log_warn("engine", "event %s (%s/%s) not dispatched: chain depth %u exceeds "
                           "max_chain_depth %u (a workflow triggering itself?)",
                 ev->id, ev->source, ev->event_type, ev->chain_depth, e->opt.max_chain_depth);
        atomic_fetch_add(&e->chain_cut, 1);
        store_event_set_status(wk->st, ev->id, "unmatched");
        return;
    }
    cJSON *env = envelope_of(ev);
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
    store_event_set_status(wk->st, ev->id, n ? "dispatched" : "unmatched");
    atomic_fetch_add(n ? &e->dispatched : &e->unmatched, 1);
    cJSON_Delete(env);
}

static void *worker_main(void *arg)
{
    worker *wk = arg;
    engine *e = wk->e;
    exec_worker *xw = exec_worker_new(e->rt, wk->st);
    if (!xw)
        return NULL;
    for (;;) {
        evh_event *ev = NULL;
        int n = bus_pop_batch(e->dispatch, &ev, 1, 200);
        if (n == EVH_E_STOPPING)
            break;
        if (n <= 0)
            continue;
        if (!atomic_load(&e->abandon))
            dispatch_event(wk, xw, ev);
        event_free(ev);
    }
    exec_worker_free(xw);
    return NULL;
}

int engine_start(engine *e)
{
    for (unsigned i = 0; i < e->n_workers; i++) {
        if (pthread_create(&e->workers[i].thread, NULL, worker_main, &e->workers[i]) != 0)
            return EVH_E_NOMEM;
        e->n_started++;
    }
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
}

void engine_free(engine *e)
{
    if (!e)
        return;
    if (e->workers) {
        for (unsigned i = 0; i < e->n_workers; i++)
            store_close(e->workers[i].st);
        free(e->workers);
    }
    bus_free(e->dispatch);
    store_close(e->wstore);
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
