/*
 * stream.h - the live lifecycle stream's hub: the recent lifecycle events
 * with monotonic ids, and the subscribers that read them (api_stream.c
 * serves them as Server-Sent Events; nothing here knows HTTP).
 *
 *   pipeline threads --lifecycle publisher--> stream_hub_publish: copy the
 *       envelope into a bounded ring, give it the next id, wake subscribers
 *   a subscriber (one per stream connection) holds a cursor, the id of the
 *       last event it has passed, and a filter; stream_sub_next hands it the
 *       next event after its cursor that the filter takes
 *
 * Ids are decimal 64-bit numbers, one more for each event.  The first id of
 * a process is its start time in microseconds since the epoch, so ids keep
 * growing across restarts (as long as the clock does not go back and the
 * host produces fewer than one event per microsecond), and an id from an
 * earlier process is always older than anything the ring holds.
 *
 * Resumption loses nothing within the bound: the ring holds the last
 * max_events events (and at most max_bytes of envelopes; an event larger
 * than that alone is still held, by itself).  A cursor that the ring still
 * covers (from "the event before the oldest held" to "the newest") gets
 * every event after it; one the ring no longer covers (too old, from an
 * earlier process, or from the future) gets STREAM_GAP once, and goes on
 * from the newest event.  A subscriber reading more slowly than events come
 * is a cursor falling out of the ring: a gap too, never unbounded memory.
 *
 * The hub records nothing until the first subscriber comes (the envelopes
 * are built only for someone: lifecycle.h); from then on it records every
 * event whether anyone listens or not, so that a client that was
 * disconnected can come back for what it missed.  No id of a process can
 * be known to a client before that, so waiting loses nothing.
 */
#ifndef EVH_STREAM_H
#define EVH_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "lifecycle.h"

#define STREAM_DEFAULT_MAX_EVENTS 10000
#define STREAM_DEFAULT_MAX_BYTES (32u * 1024 * 1024)
#define STREAM_DEFAULT_MAX_SUBSCRIBERS 16
/* A subscriber that got nothing for this long is woken with keepalive_due
 * (api_stream.c sends a comment, so that proxies and clients see life). */
#define STREAM_DEFAULT_KEEPALIVE_MS 15000

typedef struct stream_options {
    size_t max_events;      /* 0: STREAM_DEFAULT_MAX_EVENTS */
    size_t max_bytes;       /* 0: STREAM_DEFAULT_MAX_BYTES */
    size_t max_subscribers; /* 0: STREAM_DEFAULT_MAX_SUBSCRIBERS */
    int keepalive_ms;       /* 0: STREAM_DEFAULT_KEEPALIVE_MS */
} stream_options;

typedef struct stream_hub stream_hub;
typedef struct stream_sub stream_sub;

/* lc (borrowed; must outlive the hub) gets the hub as its publisher when
 * the first subscriber comes.  NULL on out-of-memory. */
stream_hub *stream_hub_new(lifecycle *lc, const stream_options *o);
/* Remove the publisher and free everything.  Every subscriber must be gone
 * (the HTTP server ended its streams).  Call before lifecycle_free. */
void stream_hub_free(stream_hub *h);

/* The lifecycle publisher (lifecycle_publish_fn); ud is the hub. */
void stream_hub_publish(void *ud, const lifecycle_event *ev);

/* What a subscriber takes; everything is copied by stream_hub_subscribe. */
typedef struct stream_filter {
    const char *job_id;      /* NULL: every job */
    const char *workflow_id; /* NULL: every workflow */
    unsigned events;         /* bits (1u << lc_event); 0: every event */
} stream_filter;

/*
 * Add a subscriber.  after: the id of the last event the client has (its
 * Last-Event-ID), or NULL to start with the next event.  wake(wake_ud) is
 * called, on any thread and under the hub's lock (so it must only signal,
 * never call back into the hub), when an event arrives and when a
 * keepalive is due.  EVH_OK; EVH_E_QUEUE_FULL at max_subscribers;
 * EVH_E_NOMEM.
 */
int stream_hub_subscribe(stream_hub *h, const stream_filter *f, const uint64_t *after,
                         void (*wake)(void *), void *wake_ud, stream_sub **out);
/* Remove and free s; when it returns, wake is not running and will not be
 * called again. */
void stream_unsubscribe(stream_sub *s);

/* One event as stream_sub_next shows it; borrowed for the callback. */
typedef struct stream_entry {
    uint64_t id;
    lc_event event;
    const char *job_id, *workflow_id;
    const char *body; /* the envelope, compact JSON (one line) */
    size_t body_len;
} stream_entry;

typedef enum stream_next {
    STREAM_NONE,      /* nothing to send now */
    STREAM_EVENT,     /* fn was called with the next event */
    STREAM_GAP,       /* events after the cursor are lost; see stream_gap */
    STREAM_KEEPALIVE, /* nothing for keepalive_ms: say something */
} stream_next;

typedef struct stream_gap {
    uint64_t cursor;  /* where the subscriber was */
    uint64_t oldest;  /* the oldest id held (newest + 1 when none) */
    uint64_t newest;  /* where it goes on from */
} stream_gap;

/*
 * The next thing for s: the first event after its cursor that its filter
 * takes (fn(ud, &entry), called under the hub's lock: copy and return),
 * moving the cursor past it and past every event the filter skipped.
 * Only the subscriber's own connection calls this (one thread at a time).
 * gap (may be NULL) is filled for STREAM_GAP.
 */
stream_next stream_sub_next(stream_sub *s, void (*fn)(void *ud, const stream_entry *e), void *ud,
                            stream_gap *gap);
/* The subscriber's cursor: the id of the last event it has passed. */
uint64_t stream_sub_cursor(stream_sub *s);

typedef struct stream_stats {
    size_t subscribers, events, bytes;
    uint64_t oldest, newest; /* ids; oldest = newest + 1 when empty */
    int recording;           /* 1 after the first subscriber */
} stream_stats;
void stream_hub_stats(stream_hub *h, stream_stats *out);

#endif
