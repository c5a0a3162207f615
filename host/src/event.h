/*
 * event.h - an accepted event and its envelope.
 *
 * Envelope (the seed's shape plus an id):
 *   {"id": "<uuid v4>", "event_type": "...", "source": "<plugin id>",
 *    "data": {...},
 *    "metadata": {"source": "...", "timestamp": "2026-11-23T10:30:00.123Z",
 *                 "user_id": "..." | null, "additional_data": {...}}}
 */
#ifndef EVH_EVENT_H
#define EVH_EVENT_H

#include <stddef.h>
#include <stdint.h>

#define EVH_UUID_LEN 36
#define EVH_TIMESTAMP_LEN 24 /* "2026-11-23T10:30:00.123Z" */

typedef struct evh_event {
    char id[EVH_UUID_LEN + 1];
    char timestamp[EVH_TIMESTAMP_LEN + 1];
    int64_t timestamp_us;   /* microseconds since the epoch (UTC) */
    char *source;           /* plugin id */
    char *event_type;
    char *data_json;        /* compact JSON object text */
    size_t data_len;
    char *user_id;          /* NULL when none */
    char *additional_json;  /* compact JSON object text; NULL means {} */
    int64_t enqueued_ns;    /* monotonic clock, for latency figures */
    uint32_t chain_depth;   /* 0, or 1 + the depth of the event whose
                               workflow emitted this one */
    char *idempotency_key;  /* NULL, or the client's key (HTTP ingest) */
    struct evh_ack *ack;    /* NULL, or who waits for this event to be durable */
    int64_t seq;            /* store sequence once persisted, else 0 */
    int recovered;          /* found pending at start: it may have executions */
    int unmatched;          /* no trigger listens: stored 'unmatched', not dispatched */
    struct evh_event *next; /* queue link; owned by whoever holds the event */
} evh_event;

/* Completion of a durable write: whoever pushes an event with an ack waits
 * (ack_wait) until the writer has committed it (or failed), or, with
 * notify set, is called back: notify(a) runs on the writer's thread once
 * a->rc is set (keep it short: it delays the next commit) and may free a.
 * The writer never touches an ack after completing it. */
typedef struct evh_ack {
    int done;
    int rc; /* EVH_OK when durable, else why not */
    void (*notify)(struct evh_ack *a);
    void *arg;                   /* for notify */
    struct evh_ack *next_notify; /* ack_complete's list */
} evh_ack;

/* Mark events as committed (rc EVH_OK) or failed and wake their waiters. */
void ack_complete(evh_event *const *evs, size_t n, int rc);
/* Block until ack_complete ran for the event carrying a. Returns a->rc. */
int ack_wait(evh_ack *a);

/* New event with a fresh id and the current time; strings are copied.
 * data_json must already be validated JSON text.  NULL on out-of-memory. */
evh_event *event_new(const char *source, const char *event_type,
                     const char *data_json, size_t data_len,
                     const char *user_id, const char *additional_json);
void event_free(evh_event *ev);

/* The envelope as compact JSON text (malloc); NULL on out-of-memory. */
char *event_envelope_json(const evh_event *ev);
/* The same as a cJSON object the caller deletes: no text printed and parsed
 * again where the envelope is used as JSON (the workers, once per event). */
struct cJSON *event_envelope(const evh_event *ev);

/* A random (version 4) UUID from OpenSSL's RAND_bytes into out[37].
 * Returns EVH_OK or EVH_E_IO when the random generator fails. */
int uuid_v4(char out[EVH_UUID_LEN + 1]);

/* A time-ordered (version 7, RFC 9562) UUID: 48 bits of Unix milliseconds,
 * then 74 random bits.  Events and executions get these: ids made close in
 * time land next to each other in the database's indexes, so inserting
 * them touches a few pages instead of one random page per index (most of
 * the cost of storing an execution, docs/BENCHMARKS.md).  Returns EVH_OK
 * or EVH_E_IO when the random generator fails. */
int uuid_v7(char out[EVH_UUID_LEN + 1]);

/* The id of the execution of trigger (key) trigger_key for event event_id:
 * a version 8 UUID made from the two (SHA-256), led by the event's time when
 * its id is version 7.  The same pair always gives the same id, so an
 * execution whose row a crash lost gets its id back when recovery runs it
 * again: the id a step sees (evh_step_input.execution_id, the idempotency
 * key docs/pipeline.md recommends) survives a crash.  EVH_OK or EVH_E_IO. */
int uuid_for_execution(const char *event_id, const char *trigger_key,
                       char out[EVH_UUID_LEN + 1]);

/* Current UTC time as RFC 3339 with milliseconds into out[25]; returns the
 * time in microseconds since the epoch. */
int64_t rfc3339_now(char out[EVH_TIMESTAMP_LEN + 1]);

/* Monotonic clock in nanoseconds. */
int64_t monotonic_ns(void);

#endif
