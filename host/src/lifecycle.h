/*
 * lifecycle.h - job and plugin lifecycle events: jobStart, jobComplete,
 * jobError, pluginStart, pluginComplete, pluginError.  A job is a workflow
 * execution, a plugin is one of its step runs.
 *
 * execute.c calls the lifecycle_job_* functions at the points where an
 * execution and its steps start and finish; each builds the envelope
 * (docs/events.md is the contract)
 *
 *   {"event": "pluginComplete",
 *    "data": {"jobId": "<execution id>", "pluginName": "<step plugin id>",
 *             "metrics": {...}, "job": {"id", "config", "progress"}},
 *    "timestamp": "2026-11-23T10:30:00.123Z"}
 *
 * and hands it, on the calling (pipeline) thread, to
 *   (a) the publisher, when one is set (lifecycle_set_publisher): a live
 *       view such as a Server-Sent Events stream; it must copy what it
 *       keeps and return at once;
 *   (b) the notifier, which stores it in the outbox for every subscription
 *       that takes the event and delivers it on its own thread (notify.h).
 * When neither wants an event, nothing is built: no JSON, no database read.
 */
#ifndef EVH_LIFECYCLE_H
#define EVH_LIFECYCLE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "execute.h"
#include "recorder.h"
#include "notify.h"
#include "store.h"
#include "subscription.h"

typedef struct lifecycle lifecycle;

/* One event as the publisher sees it; everything is borrowed for the call. */
typedef struct lifecycle_event {
    lc_event event;
    const char *name;        /* "jobStart", ... */
    const char *job_id;      /* the execution id */
    const char *workflow_id;
    const char *message_id;  /* "msg_<uuid>": the webhook-id of its deliveries */
    const char *body;        /* the envelope, compact JSON, NUL-terminated */
    size_t body_len;
} lifecycle_event;

/*
 * Called on the pipeline thread that runs the job, for every event, in the
 * job's order (events of different jobs come from different threads at
 * once).  Must not block or call back into the engine: copy and return.
 */
typedef void (*lifecycle_publish_fn)(void *ud, const lifecycle_event *ev);

/* n may be NULL (no webhooks).  NULL on out-of-memory. */
lifecycle *lifecycle_new(notifier *n);
/* Set (fn NULL: remove) the publisher.  Safe while the pipeline runs; ud
 * must stay valid until it is replaced or lifecycle_free. */
void lifecycle_set_publisher(lifecycle *lc, lifecycle_publish_fn fn, void *ud);
void lifecycle_free(lifecycle *lc);

/* ---- per execution (execute.c) ------------------------------------------ */

/* Lives on the stack of exec_run for one execution. */
typedef struct lifecycle_job {
    lifecycle *lc;           /* NULL: no events */
    store *st;               /* the worker's connection (reads only) */
    struct recorder *rec;    /* NULL, or where the records may still wait */
    cJSON *metrics;          /* {"<step>": {...}}: each step's latest metrics */
    int64_t started_ms;      /* when the job started (ms since the epoch) */
    const exec_request *req;
    size_t done;             /* steps done so far */
    char *config_text;       /* job.config, printed on first use */
} lifecycle_job;

/* jobStart; lc NULL makes every call below do nothing.  The steps' metrics
 * and the job's times are kept in memory as the job runs; only a resumed
 * or replayed job reads what ran before it from the database (st; rec, may
 * be NULL, is the recorder those records may still wait in). */
void lifecycle_job_start(lifecycle_job *j, lifecycle *lc, store *st, struct recorder *rec,
                         const exec_request *req);
/* pluginStart before step `step` runs (its attempts and retries). */
void lifecycle_plugin_start(lifecycle_job *j, size_t step);
/* pluginComplete (rc EVH_OK) or pluginError (error: why) after it. */
/* metrics_json: the metrics the step reported (SDK), as stored with its
 * run; may be NULL. */
void lifecycle_plugin_end(lifecycle_job *j, size_t step, int rc, const char *error,
                          const char *metrics_json);
/* jobComplete or jobError once the execution's final status is stored;
 * releases what j holds. */
void lifecycle_job_end(lifecycle_job *j, int rc, const char *error);

/* data.job of an envelope: {"id", "config", "progress": {"done", "total"[,
 * "step"]}[, "result"]}. */
typedef struct lifecycle_job_part {
    const char *id;
    const char *config_text; /* printed JSON; NULL: null */
    size_t done, total;
    const char *step;        /* NULL: left out */
    const cJSON *result;     /* NULL: left out */
} lifecycle_job_part;

/*
 * Build the envelope of one event (compact JSON, malloc'd; *len, if len is
 * not NULL, its length) from its parts (NULL leaves a member out).  NULL on
 * out-of-memory.
 */
char *lifecycle_envelope_text(lc_event e, const char *job_id, const char *plugin_name,
                              const cJSON *metrics, const char *error, const lifecycle_job_part *job,
                              const char *timestamp, size_t *len);

#endif
