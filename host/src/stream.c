/*
 * stream.c - the live stream's hub (see stream.h): a ring of recent
 * lifecycle events under one lock, its subscribers, and a ticker thread
 * that wakes idle subscribers for their keepalive.
 */
#include "stream.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <evhost/evhost.h>

#include "event.h"
#include "log.h"

/* One held event: the struct and its three strings in one allocation. */
typedef struct entry {
    uint64_t id;
    lc_event event;
    size_t size; /* what it counts against max_bytes */
    const char *job_id, *workflow_id, *body;
    size_t body_len;
} entry;

struct stream_sub {
    stream_hub *h;
    char *job_id, *workflow_id;
    unsigned events;
    uint64_t cursor;          /* under h->lock */
    int64_t last_ns;          /* monotonic: last thing handed out, under h->lock */
    int keepalive_due;        /* under h->lock */
    void (*wake)(void *);
    void *wake_ud;
};

struct stream_hub {
    lifecycle *lc;
    stream_options o;
    pthread_mutex_t lock;
    /* the ring: n entries from ring[head], ids first_id .. next_id - 1 */
    entry **ring;
    size_t head, n, bytes;
    uint64_t first_id, next_id;
    stream_sub **subs;
    size_t n_subs;
    int recording;
    /* the ticker */
    pthread_t ticker;
    pthread_cond_t tick;
    int ticking, stopping;
};

static int64_t now_ns(void)
{
    return monotonic_ns();
}

stream_hub *stream_hub_new(lifecycle *lc, const stream_options *o)
{
    stream_hub *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->lc = lc;
    if (o)
        h->o = *o;
    if (!h->o.max_events)
        h->o.max_events = STREAM_DEFAULT_MAX_EVENTS;
    if (!h->o.max_bytes)
        h->o.max_bytes = STREAM_DEFAULT_MAX_BYTES;
    if (!h->o.max_subscribers)
        h->o.max_subscribers = STREAM_DEFAULT_MAX_SUBSCRIBERS;
    if (h->o.keepalive_ms <= 0)
        h->o.keepalive_ms = STREAM_DEFAULT_KEEPALIVE_MS;
    /* the ring comes with the first subscriber (stream_hub_subscribe) */
    h->subs = calloc(h->o.max_subscribers, sizeof *h->subs);
    if (!h->subs)
        goto out_free;
    /* ids start at the wall clock (stream.h): ids of an earlier process
     * are then older than anything held here */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    h->next_id = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    h->first_id = h->next_id;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&h->tick, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&h->lock, NULL);
    return h;

out_free:
    free(h->subs);
    free(h);
    return NULL;
}

static void evict_oldest(stream_hub *h)
{
    entry *e = h->ring[h->head];
    h->ring[h->head] = NULL;
    h->bytes -= e->size;
    h->head = (h->head + 1) % h->o.max_events;
    h->n--;
    h->first_id++;
    free(e);
}

void stream_hub_free(stream_hub *h)
{
    if (!h)
        return;
    if (h->lc)
        lifecycle_set_publisher(h->lc, NULL, NULL);
    pthread_mutex_lock(&h->lock);
    h->stopping = 1;
    int ticking = h->ticking;
    pthread_cond_signal(&h->tick);
    pthread_mutex_unlock(&h->lock);
    if (ticking)
        pthread_join(h->ticker, NULL);
    if (h->n_subs)
        log_error("stream", "%zu subscriber(s) still there at shutdown", h->n_subs);
    while (h->n)
        evict_oldest(h);
    pthread_cond_destroy(&h->tick);
    pthread_mutex_destroy(&h->lock);
    free(h->ring);
    free(h->subs);
    free(h);
}

/* ---- publishing ------------------------------------------------------------- */

static void wake_all(stream_hub *h)
{
    for (size_t i = 0; i < h->n_subs; i++)
        h->subs[i]->wake(h->subs[i]->wake_ud);
}

void stream_hub_publish(void *ud, const lifecycle_event *ev)
{
    stream_hub *h = ud;
    size_t jl = strlen(ev->job_id) + 1, wl = strlen(ev->workflow_id) + 1;
    size_t size = sizeof(entry) + jl + wl + ev->body_len + 1;
    entry *e = malloc(size);
    if (e) {
        char *p = (char *)(e + 1);
        e->event = ev->event;
        e->size = size;
        e->job_id = memcpy(p, ev->job_id, jl);
        e->workflow_id = memcpy(p + jl, ev->workflow_id, wl);
        e->body = memcpy(p + jl + wl, ev->body, ev->body_len + 1);
        e->body_len = ev->body_len;
    }
    pthread_mutex_lock(&h->lock);
    if (!e) {
        /* The event is lost.  Losing it silently would break the promise
         * that a cursor the ring covers gets everything after it, so drop
         * everything held and skip its id: every subscriber's cursor then
         * falls out of the ring and it gets a gap (an "event: reset"). */
        while (h->n)
            evict_oldest(h);
        h->first_id = ++h->next_id;
        wake_all(h);
        pthread_mutex_unlock(&h->lock);
        log_error("stream", "%s of job %s not recorded for the live stream: out of memory",
                  ev->name, ev->job_id);
        return;
    }
    while (h->n && (h->n == h->o.max_events || h->bytes + size > h->o.max_bytes))
        evict_oldest(h);
    e->id = h->next_id++;
    h->ring[(h->head + h->n) % h->o.max_events] = e;
    h->n++;
    h->bytes += size;
    wake_all(h);
    pthread_mutex_unlock(&h->lock);
}

/* ---- the ticker: keepalives ------------------------------------------------------ */

static void *ticker_main(void *arg)
{
    stream_hub *h = arg;
    int64_t period_ns = (int64_t)h->o.keepalive_ms * 1000000 / 4;
    if (period_ns > 1000000000)
        period_ns = 1000000000;
    pthread_mutex_lock(&h->lock);
    while (!h->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t t = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + period_ns;
        ts.tv_sec = (time_t)(t / 1000000000);
        ts.tv_nsec = (long)(t % 1000000000);
        pthread_cond_timedwait(&h->tick, &h->lock, &ts);
        int64_t now = now_ns();
        for (size_t i = 0; i < h->n_subs && !h->stopping; i++) {
            stream_sub *s = h->subs[i];
            if (now - s->last_ns >= (int64_t)h->o.keepalive_ms * 1000000 && !s->keepalive_due) {
                s->keepalive_due = 1;
                s->wake(s->wake_ud);
            }
        }
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

/* ---- subscribers ----------------------------------------------------------------- */

int stream_hub_subscribe(stream_hub *h, const stream_filter *f, const uint64_t *after,
                         void (*wake)(void *), void *wake_ud, stream_sub **out)
{
    *out = NULL;
    stream_sub *s = calloc(1, sizeof *s);
    if (!s)
        return EVH_E_NOMEM;
    s->h = h;
    s->events = f ? f->events : 0;
    s->wake = wake;
    s->wake_ud = wake_ud;
    if ((f && f->job_id && !(s->job_id = strdup(f->job_id))) ||
        (f && f->workflow_id && !(s->workflow_id = strdup(f->workflow_id)))) {
        free(s->job_id);
        free(s);
        return EVH_E_NOMEM;
    }
    pthread_mutex_lock(&h->lock);
    if (h->n_subs == h->o.max_subscribers) {
        pthread_mutex_unlock(&h->lock);
        free(s->job_id);
        free(s->workflow_id);
        free(s);
        return EVH_E_QUEUE_FULL;
    }
    if (!h->recording) {
        /* from now on every event is recorded (stream.h) */
        h->ring = calloc(h->o.max_events, sizeof *h->ring);
        if (!h->ring) {
            pthread_mutex_unlock(&h->lock);
            free(s->job_id);
            free(s->workflow_id);
            free(s);
            return EVH_E_NOMEM;
        }
        h->recording = 1;
        lifecycle_set_publisher(h->lc, stream_hub_publish, h);
    }
    if (!h->ticking && !h->stopping && pthread_create(&h->ticker, NULL, ticker_main, h) == 0)
        h->ticking = 1;
    s->cursor = after ? *after : h->next_id - 1;
    s->last_ns = now_ns();
    h->subs[h->n_subs++] = s;
    pthread_mutex_unlock(&h->lock);
    *out = s;
    return EVH_OK;
}

void stream_unsubscribe(stream_sub *s)
{
    if (!s)
        return;
    stream_hub *h = s->h;
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; i < h->n_subs; i++) {
        if (h->subs[i] == s) {
            h->subs[i] = h->subs[--h->n_subs];
            break;
        }
    }
    pthread_mutex_unlock(&h->lock);
    free(s->job_id);
    free(s->workflow_id);
    free(s);
}

static int takes(const stream_sub *s, const entry *e)
{
    return (!s->events || (s->events & (1u << e->event))) &&
           (!s->job_id || !strcmp(s->job_id, e->job_id)) &&
           (!s->workflow_id || !strcmp(s->workflow_id, e->workflow_id));
}

stream_next stream_sub_next(stream_sub *s, void (*fn)(void *ud, const stream_entry *e), void *ud,
                            stream_gap *gap)
{
    stream_hub *h = s->h;
    stream_next r = STREAM_NONE;
    pthread_mutex_lock(&h->lock);
    uint64_t newest = h->next_id - 1;
    /* covered: from "the one before the oldest held" to the newest */
    if (s->cursor + 1 < h->first_id || s->cursor > newest) {
        if (gap)
            *gap = (stream_gap){.cursor = s->cursor, .oldest = h->first_id, .newest = newest};
        s->cursor = newest;
        r = STREAM_GAP;
    } else {
        while (s->cursor < newest) {
            const entry *e = h->ring[(h->head + (s->cursor + 1 - h->first_id)) % h->o.max_events];
            s->cursor = e->id;
            if (takes(s, e)) {
                fn(ud, &(stream_entry){.id = e->id,
                                       .event = e->event,
                                       .job_id = e->job_id,
                                       .workflow_id = e->workflow_id,
                                       .body = e->body,
                                       .body_len = e->body_len});
                r = STREAM_EVENT;
                break;
            }
        }
        if (r == STREAM_NONE && s->keepalive_due)
            r = STREAM_KEEPALIVE;
    }
    if (r != STREAM_NONE) {
        s->keepalive_due = 0;
        s->last_ns = now_ns();
    }
    pthread_mutex_unlock(&h->lock);
    return r;
}

uint64_t stream_sub_cursor(stream_sub *s)
{
    pthread_mutex_lock(&s->h->lock);
    uint64_t c = s->cursor;
    pthread_mutex_unlock(&s->h->lock);
    return c;
}

void stream_hub_stats(stream_hub *h, stream_stats *out)
{
    pthread_mutex_lock(&h->lock);
    *out = (stream_stats){.subscribers = h->n_subs,
                          .events = h->n,
                          .bytes = h->bytes,
                          .oldest = h->first_id,
                          .newest = h->next_id - 1,
                          .recording = h->recording};
    pthread_mutex_unlock(&h->lock);
}
