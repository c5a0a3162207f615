/*
 * recorder.c - group commit for execution records (see recorder.h).
 */
#include "recorder.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <evhost/evhost.h>

#include "log.h"

/* Writes applied per transaction at most: bounds how long one commit holds
 * the write lock (the event writer needs it too). */
#define RECORDER_BATCH 4096
#define COMMIT_ATTEMPTS 5

typedef enum { OP_EX_CREATE, OP_EX_STATUS, OP_STEP, OP_EV_STATUS, OP_COUNT } op_kind;

typedef struct op {
    struct op *next;
    op_kind kind;
    int folded; /* its content went into an earlier write of the batch */
    uint64_t ticket;
    atomic_ullong *count;
    unsigned long long by;
    union {
        store_execution x;
        struct {
            const char *id, *status, *error;
            int64_t at_us;
        } xs;
        store_step_run run;
        struct {
            const char **ids;
            size_t n;
            const char *status;
        } ev;
    } u;
    /* the strings the pointers above point into */
    size_t used, cap;
    char buf[];
} op;

struct recorder {
    store *st;
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t work;      /* the thread: writes are waiting, or stop */
    pthread_cond_t space;     /* producers: the queue has room again */
    pthread_cond_t committed; /* recorder_wait */
    op *head, *tail;
    size_t queued, capacity;
    uint64_t next_ticket;    /* the last one handed out */
    uint64_t done_ticket;    /* every write up to this one is settled */
    uint64_t failed_through; /* the last ticket of a batch that failed */
    int stop;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

recorder *recorder_new(const store_options *o, size_t capacity, char **err)
{
    recorder *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (store_open(o, &r->st, err) != EVH_OK) {
        free(r);
        return NULL;
    }
    r->capacity = capacity ? capacity : 65536;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->work, NULL);
    pthread_cond_init(&r->space, NULL);
    pthread_cond_init(&r->committed, NULL);
    return r;
}

/* ---- building a write ------------------------------------------------------ */

static op *op_new(op_kind kind, size_t strings)
{
    op *o = malloc(sizeof *o + strings);
    if (o) {
        memset(o, 0, sizeof *o);
        o->kind = kind;
        o->cap = strings;
    }
    return o;
}

static size_t len0(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* A copy of s inside o (NULL stays NULL); op_new sized buf for it. */
static const char *keep(op *o, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *dst = o->buf + o->used;
    memcpy(dst, s, n);
    o->used += n;
    return dst;
}

/* Queue o, waiting while the queue is full; its ticket, or 0 when the
 * recorder stopped (o is freed: nothing will write it). */
static uint64_t submit(recorder *r, op *o, atomic_ullong *count, unsigned long long by)
{
    if (!o)
        return 0;
    o->count = count;
    o->by = by;
    pthread_mutex_lock(&r->lock);
    while (r->queued >= r->capacity && !r->stop)
        pthread_cond_wait(&r->space, &r->lock);
    if (r->stop && !r->started) {
        pthread_mutex_unlock(&r->lock);
        free(o);
        return 0;
    }
    /* An execution created "now" is dated here, under the lock that orders
     * the queue: executions are listed newest first by the order they were
     * stored in, and a worker preempted between reading the clock and
     * handing its record in made that order disagree with created_at
     * (test_api_executions test_list_filters, once under ASan). */
    if (o->kind == OP_EX_CREATE && !o->u.x.at_us)
        o->u.x.at_us = now_us();
    o->ticket = ++r->next_ticket;
    if (r->tail)
        r->tail->next = o;
    else
        r->head = o;
    r->tail = o;
    r->queued++;
    pthread_cond_signal(&r->work);
    uint64_t t = o->ticket;
    pthread_mutex_unlock(&r->lock);
    return t;
}

uint64_t recorder_execution_create(recorder *r, const store_execution *x)
{
    op *o = op_new(OP_EX_CREATE, len0(x->workflow_id) + len0(x->workflow_version) +
                                     len0(x->trigger_id) + len0(x->event_id) +
                                     len0(x->replay_of));
    if (!o)
        return 0;
    o->u.x = *x;
    o->u.x.workflow_id = keep(o, x->workflow_id);
    o->u.x.workflow_version = keep(o, x->workflow_version);
    o->u.x.trigger_id = keep(o, x->trigger_id);
    o->u.x.event_id = keep(o, x->event_id);
    o->u.x.replay_of = keep(o, x->replay_of);
    o->u.x.status = o->u.x.error = NULL;
    return submit(r, o, NULL, 0); /* dates it, when at_us is 0 */
}

uint64_t recorder_execution_status(recorder *r, const char *id, const char *status,
                                   const char *error, atomic_ullong *count)
{
    op *o = op_new(OP_EX_STATUS, len0(id) + len0(status) + len0(error));
    if (!o)
        return 0;
    o->u.xs.id = keep(o, id);
    o->u.xs.status = keep(o, status);
    o->u.xs.error = keep(o, error);
    o->u.xs.at_us = now_us();
    return submit(r, o, count, 1);
}

uint64_t recorder_step_run(recorder *r, const store_step_run *run)
{
    op *o = op_new(OP_STEP, len0(run->execution_id) + len0(run->step_id) + len0(run->plugin) +
                                len0(run->status) + len0(run->output_json) +
                                len0(run->error) + len0(run->metrics_json));
    if (!o)
        return 0;
    o->u.run = *run;
    o->u.run.execution_id = keep(o, run->execution_id);
    o->u.run.step_id = keep(o, run->step_id);
    o->u.run.plugin = keep(o, run->plugin);
    o->u.run.status = keep(o, run->status);
    o->u.run.output_json = keep(o, run->output_json);
    o->u.run.error = keep(o, run->error);
    o->u.run.metrics_json = keep(o, run->metrics_json);
    return submit(r, o, NULL, 0);
}

uint64_t recorder_events_status(recorder *r, const char *const *ids, size_t n,
                                const char *status, atomic_ullong *count)
{
    size_t strings = len0(status) + n * sizeof(char *) + sizeof(char *);
    for (size_t i = 0; i < n; i++)
        strings += len0(ids[i]);
    op *o = op_new(OP_EV_STATUS, strings);
    if (!o)
        return 0;
    /* the pointer array first (buf is suitably aligned: it follows a
     * size_t), then the strings */
    o->u.ev.ids = (const char **)(void *)o->buf;
    o->used = n * sizeof(char *) + sizeof(char *);
    for (size_t i = 0; i < n; i++)
        o->u.ev.ids[i] = keep(o, ids[i]);
    o->u.ev.n = n;
    o->u.ev.status = keep(o, status);
    return submit(r, o, count, n);
}

uint64_t recorder_count(recorder *r, atomic_ullong *count, unsigned long long by)
{
    return submit(r, op_new(OP_COUNT, 0), count, by);
}

/* ---- the thread -------------------------------------------------------------- */

static void apply(store *st, op *o)
{
    int rc = EVH_OK;
    const char *what = "";
    switch (o->kind) {
    case OP_EX_CREATE:
        what = "creating an execution";
        rc = store_execution_create(st, &o->u.x);
        break;
    case OP_EX_STATUS:
        what = "updating an execution";
        rc = store_execution_set_status_at(st, o->u.xs.id, o->u.xs.status, o->u.xs.error,
                                           o->u.xs.at_us);
        break;
    case OP_STEP:
        what = "recording a step run";
        rc = store_step_run_put(st, &o->u.run);
        break;
    case OP_EV_STATUS:
        what = "updating event statuses";
        rc = store_events_set_status(st, o->u.ev.ids, o->u.ev.n, o->u.ev.status);
        break;
    case OP_COUNT:
        break;
    }
    if (rc != EVH_OK)
        log_error("engine", "%s failed: %s", what, store_errmsg(st));
}

/* ---- folding a batch ---------------------------------------------------------
 *
 * Under load a batch holds whole executions: created, running, each step
 * running then finished, finished.  Writing each of those is an insert or
 * update of a row with eight indexes; folding the later states into the
 * first write leaves one insert per execution and one per step run.  The
 * folded write keeps the first one's place in the batch, so rows get the
 * ids (and order) they would have had. */

typedef struct fold_map {
    op **slots;
    size_t mask;
} fold_map;

static uint64_t hash_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u; /* FNV-1a */
    return h;
}

/* The execution an execution write (create or status change) is about. */
static const char *execution_of(const op *o)
{
    return o->kind == OP_EX_CREATE ? o->u.x.id : o->u.xs.id;
}

static uint64_t op_hash(const op *o)
{
    uint64_t h = 1469598103934665603u;
    if (o->kind == OP_STEP) {
        h = hash_str(h, o->u.run.execution_id);
        h = hash_str(h ^ 0x1f, o->u.run.step_id);
        return (h ^ (uint64_t)(unsigned)o->u.run.attempt) * 1099511628211u;
    }
    return hash_str(h, execution_of(o));
}

/* Do a (the first write of a row in the batch: a step run or a creation)
 * and b write the same row? */
static int same_row(const op *a, const op *b)
{
    if (a->kind == OP_STEP || b->kind == OP_STEP)
        return a->kind == b->kind && a->u.run.attempt == b->u.run.attempt &&
               !strcmp(a->u.run.execution_id, b->u.run.execution_id) &&
               !strcmp(a->u.run.step_id, b->u.run.step_id);
    return !strcmp(execution_of(a), execution_of(b));
}

/* The first write of b's row in the map, after adding b when it is the
 * first. */
static op *fold_find(fold_map *m, op *b, int add)
{
    for (size_t i = op_hash(b) & m->mask;; i = (i + 1) & m->mask) {
        if (!m->slots[i]) {
            if (add)
                m->slots[i] = b;
            return NULL;
        }
        if (m->slots[i] != b && same_row(m->slots[i], b))
            return m->slots[i];
    }
}

/* An execution's status change into its creation: the row is inserted as
 * it would be after the update (store.c ST_EX_STATUS's rules). */
static void fold_status(op *create, const op *st)
{
    store_execution *x = &create->u.x;
    x->status = st->u.xs.status;
    x->error = st->u.xs.error;
    if (!strcmp(st->u.xs.status, "running") && !x->started_us)
        x->started_us = st->u.xs.at_us;
    int final = !strcmp(st->u.xs.status, "succeeded") || !strcmp(st->u.xs.status, "failed");
    x->finished_us = final ? st->u.xs.at_us : 0;
}

static void fold_batch(op *batch, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    fold_map m = {calloc(cap, sizeof(op *)), cap - 1};
    if (!m.slots)
        return; /* written as it came: slower, the same result */
    for (op *o = batch; o; o = o->next) {
        if (o->kind == OP_EX_CREATE && !o->u.x.id[0])
            continue; /* its id is made when written: nothing can refer to it */
        if (o->kind == OP_EX_CREATE || o->kind == OP_STEP) {
            op *first = fold_find(&m, o, 1);
            if (first && o->kind == OP_STEP) {
                first->u.run = o->u.run; /* the later state of the same run */
                o->folded = 1;
            }
        } else if (o->kind == OP_EX_STATUS) {
            op *create = fold_find(&m, o, 0);
            if (create) {
                fold_status(create, o);
                o->folded = 1;
            }
        }
    }
    free(m.slots);
}

/* The event status changes gathered by apply_batch, written as one call. */
typedef struct ev_run {
    const char **ids;
    size_t n;
    const char *status;
} ev_run;

static void flush_ev_run(store *st, ev_run *e)
{
    if (e->n && store_events_set_status(st, e->ids, e->n, e->status) != EVH_OK)
        log_error("engine", "updating event statuses failed: %s", store_errmsg(st));
    e->n = 0;
}

/* The batch's writes with the rows of each table together, so that the
 * store writes many per statement (store_executions_insert,
 * store_step_runs_put): executions first (a step run refers to its
 * execution), then step runs, then the status changes in their order, a
 * run of event status changes to the same status in one call.  No two
 * writes of one row are reordered: folding left one per row, and status
 * changes keep their order. */
static void apply_batch(store *st, op *batch, size_t n)
{
    store_execution **xs = malloc(n * sizeof *xs);
    const store_step_run **runs = malloc(n * sizeof *runs);
    size_t n_ids = 0;
    for (op *o = batch; o; o = o->next)
        n_ids += o->kind == OP_EV_STATUS ? o->u.ev.n : 0;
    ev_run ev = {malloc((n_ids ? n_ids : 1) * sizeof *ev.ids), 0, NULL};
    if (!xs || !runs || !ev.ids) { /* one by one: slower, the same result */
        for (op *o = batch; o; o = o->next) {
            if (!o->folded)
                apply(st, o);
        }
        goto out;
    }
    size_t nx = 0, nr = 0;
    for (op *o = batch; o; o = o->next) {
        if (!o->folded && o->kind == OP_EX_CREATE)
            xs[nx++] = &o->u.x;
        else if (!o->folded && o->kind == OP_STEP)
            runs[nr++] = &o->u.run;
    }
    if (nx && store_executions_insert(st, xs, nx) != EVH_OK)
        log_error("engine", "creating an execution failed: %s", store_errmsg(st));
    if (nr && store_step_runs_put(st, runs, nr) != EVH_OK)
        log_error("engine", "recording a step run failed: %s", store_errmsg(st));
    for (op *o = batch; o; o = o->next) {
        if (o->folded || o->kind == OP_EX_CREATE || o->kind == OP_STEP)
            continue;
        if (o->kind != OP_EV_STATUS) {
            apply(st, o);
            continue;
        }
        if (ev.n && strcmp(ev.status, o->u.ev.status) != 0)
            flush_ev_run(st, &ev);
        ev.status = o->u.ev.status;
        for (size_t i = 0; i < o->u.ev.n; i++)
            ev.ids[ev.n++] = o->u.ev.ids[i];
    }
    flush_ev_run(st, &ev);
out:
    free(xs);
    free(runs);
    free(ev.ids);
}

/* One transaction for the whole batch, tried again on a failed commit (the
 * lock held too long by another process, a full disk that frees up). */
static int write_batch(recorder *r, op *batch, size_t n)
{
    int rc = EVH_E_IO;
    for (int attempt = 0; attempt < COMMIT_ATTEMPTS; attempt++) {
        rc = store_batch_begin(r->st);
        if (rc == EVH_OK) {
            apply_batch(r->st, batch, n);
            rc = store_batch_end(r->st, EVH_OK);
        }
        if (rc == EVH_OK)
            return rc;
        log_error("engine", "committing execution records failed (attempt %d of %d): %s",
                  attempt + 1, COMMIT_ATTEMPTS, store_errmsg(r->st));
        usleep(50000u << attempt);
    }
    return rc;
}

static void *recorder_main(void *arg)
{
    recorder *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->lock);
        while (!r->head && !r->stop)
            pthread_cond_wait(&r->work, &r->lock);
        if (!r->head) {
            pthread_mutex_unlock(&r->lock);
            break; /* stopping, and everything is written */
        }
        op *batch = r->head, *last = batch;
        size_t n = 1;
        while (last->next && n < RECORDER_BATCH) {
            last = last->next;
            n++;
        }
        r->head = last->next;
        if (!r->head)
            r->tail = NULL;
        last->next = NULL;
        r->queued -= n;
        pthread_cond_broadcast(&r->space);
        pthread_mutex_unlock(&r->lock);

        fold_batch(batch, n);
        int rc = write_batch(r, batch, n);
        if (rc != EVH_OK)
            log_error("engine", "%zu execution record(s) are lost; their events stay pending "
                                "or their executions unfinished, and run again at the next start",
                      n);
        for (op *o = batch; o; o = o->next) {
            if (rc == EVH_OK && o->count)
                atomic_fetch_add(o->count, o->by);
        }
        pthread_mutex_lock(&r->lock);
        r->done_ticket = last->ticket;
        if (rc != EVH_OK)
            r->failed_through = last->ticket;
        pthread_cond_broadcast(&r->committed);
        pthread_mutex_unlock(&r->lock);
        while (batch) {
            op *next = batch->next;
            free(batch);
            batch = next;
        }
    }
    return NULL;
}

int recorder_start(recorder *r)
{
    if (pthread_create(&r->thread, NULL, recorder_main, r) != 0)
        return EVH_E_NOMEM;
    r->started = 1;
    return EVH_OK;
}

int recorder_wait(recorder *r, uint64_t ticket)
{
    if (!r || ticket == 0)
        return EVH_OK;
    pthread_mutex_lock(&r->lock);
    while (r->done_ticket < ticket && r->started)
        pthread_cond_wait(&r->committed, &r->lock);
    /* a failure of an earlier batch does not concern this write; only the
     * batch it was in can have failed it (a conservative answer: that or
     * a later batch) */
    int rc = r->failed_through >= ticket ? EVH_E_IO : EVH_OK;
    pthread_mutex_unlock(&r->lock);
    return rc;
}

store *recorder_store(recorder *r)
{
    return r->st;
}

uint64_t recorder_last_ticket(recorder *r)
{
    pthread_mutex_lock(&r->lock);
    uint64_t t = r->next_ticket;
    pthread_mutex_unlock(&r->lock);
    return t;
}

void recorder_stop(recorder *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop = 1;
    pthread_cond_broadcast(&r->work);
    pthread_cond_broadcast(&r->space);
    pthread_mutex_unlock(&r->lock);
    if (r->started) {
        pthread_join(r->thread, NULL);
        pthread_mutex_lock(&r->lock);
        r->started = 0;
        pthread_cond_broadcast(&r->committed);
        pthread_mutex_unlock(&r->lock);
    }
}

void recorder_free(recorder *r)
{
    if (!r)
        return;
    recorder_stop(r);
    while (r->head) {
        op *next = r->head->next;
        free(r->head);
        r->head = next;
    }
    store_close(r->st);
    pthread_cond_destroy(&r->committed);
    pthread_cond_destroy(&r->space);
    pthread_cond_destroy(&r->work);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
