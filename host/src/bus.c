/*
 * bus.c - the bounded event queue (see bus.h).
 *
 * A singly linked list through evh_event.next, one mutex, and two condition
 * variables: `not_empty` for consumers, `not_full` for producers waiting on
 * backpressure.  The condition variables use CLOCK_MONOTONIC so that a wall
 * clock jump neither cuts a bounded wait short nor stretches it.
 */
#include "bus.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include <evhost/evhost.h>

struct bus {
    pthread_mutex_t lock;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    evh_event *head;
    evh_event *tail;
    size_t depth;
    size_t capacity;
    int closed;
};

static int cond_init_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return -1;
    int rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
    return rc == 0 ? 0 : -1;
}

bus *bus_new(size_t capacity)
{
    if (capacity == 0)
        return NULL;
    bus *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->capacity = capacity;
    if (pthread_mutex_init(&b->lock, NULL) != 0)
        goto fail_free;
    if (cond_init_monotonic(&b->not_empty) != 0)
        goto fail_destroy_lock;
    if (cond_init_monotonic(&b->not_full) != 0)
        goto fail_destroy_not_empty;
    return b;

fail_destroy_not_empty:
    pthread_cond_destroy(&b->not_empty);
fail_destroy_lock:
    pthread_mutex_destroy(&b->lock);
fail_free:
    free(b);
    return NULL;
}

void bus_free(bus *b)
{
    if (!b)
        return;
    evh_event *ev = b->head;
    while (ev) {
        evh_event *next = ev->next;
        event_free(ev);
        ev = next;
    }
    pthread_cond_destroy(&b->not_full);
    pthread_cond_destroy(&b->not_empty);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

/* The absolute CLOCK_MONOTONIC time wait_ms from now. */
static struct timespec deadline_after(uint32_t wait_ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += (time_t)(wait_ms / 1000);
    t.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

int bus_push(bus *b, evh_event *ev, uint32_t wait_ms)
{
    if (!b || !ev)
        return EVH_E_INVALID;
    struct timespec deadline = deadline_after(wait_ms);
    int rc = EVH_OK;
    pthread_mutex_lock(&b->lock);
    while (!b->closed && b->depth >= b->capacity) {
        if (wait_ms == 0 ||
            pthread_cond_timedwait(&b->not_full, &b->lock, &deadline) == ETIMEDOUT) {
            /* Room may have appeared together with the timeout. */
            if (!b->closed && b->depth >= b->capacity)
                rc = EVH_E_QUEUE_FULL;
            break;
        }
    }
    if (rc == EVH_OK && b->closed)
        rc = EVH_E_STOPPING;
    if (rc == EVH_OK) {
        ev->next = NULL;
        if (ev->enqueued_ns == 0) /* keep the first queue's time across hops */
            ev->enqueued_ns = monotonic_ns();
        if (b->tail)
            b->tail->next = ev;
        else
            b->head = ev;
        b->tail = ev;
        b->depth++;
        pthread_cond_signal(&b->not_empty);
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

int bus_pop_batch(bus *b, evh_event **out, size_t max, uint32_t wait_ms)
{
    if (!b || !out || max == 0)
        return EVH_E_INVALID;
    if (max > (size_t)INT32_MAX)
        max = (size_t)INT32_MAX; /* the count is returned as an int */
    struct timespec deadline = deadline_after(wait_ms);
    pthread_mutex_lock(&b->lock);
    while (b->depth == 0 && !b->closed && wait_ms > 0) {
        if (pthread_cond_timedwait(&b->not_empty, &b->lock, &deadline) == ETIMEDOUT)
            break;
    }
    if (b->depth == 0) {
        int rc = b->closed ? EVH_E_STOPPING : 0;
        pthread_mutex_unlock(&b->lock);
        return rc;
    }
    size_t n = 0;
    while (n < max && b->head) {
        evh_event *ev = b->head;
        b->head = ev->next;
        ev->next = NULL;
        out[n++] = ev;
    }
    if (!b->head)
        b->tail = NULL;
    b->depth -= n;
    /* Room for n events: wake as many producers as could now succeed. */
    if (n == 1)
        pthread_cond_signal(&b->not_full);
    else
        pthread_cond_broadcast(&b->not_full);
    /* Events left over: another consumer may take them. */
    if (b->depth > 0)
        pthread_cond_signal(&b->not_empty);
    pthread_mutex_unlock(&b->lock);
    return (int)n;
}

void bus_close(bus *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->lock);
    b->closed = 1;
    pthread_cond_broadcast(&b->not_full);
    pthread_cond_broadcast(&b->not_empty);
    pthread_mutex_unlock(&b->lock);
}

size_t bus_depth(bus *b)
{
    if (!b)
        return 0;
    pthread_mutex_lock(&b->lock);
    size_t n = b->depth;
    pthread_mutex_unlock(&b->lock);
    return n;
}

size_t bus_capacity(const bus *b)
{
    return b ? b->capacity : 0; /* fixed at bus_new: no lock needed */
}
