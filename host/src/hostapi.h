/*
 * hostapi.h - the function table plugins see (evh_host_api) and the
 * per-instance handle behind it (struct evh_host).  This is the only place
 * where host internals meet the SDK.
 */
#ifndef EVH_HOSTAPI_H
#define EVH_HOSTAPI_H

#include <pthread.h>
#include <stdatomic.h>

#include <evhost/evhost.h>

#include "evh_limits.h"
#include "manifest.h"
#include "runtime.h"

struct evh_host {
    const manifest *manifest; /* borrowed from the plugin record */
    runtime *rt;
    char *config_text; /* validated config JSON with defaults */
    size_t config_len;
    char *data_dir;    /* created lazily on first data_dir() call */
    pthread_mutex_t lock;
    pthread_cond_t cond;  /* signalled on stop, for wait() */
    atomic_int stop;      /* this instance was asked to stop */
    int validating;       /* made for one validate call (SDK 1.2): no
                           * emit, so loading a workflow never queues events */
    /* step metrics of the run in flight (only between run begin/end) */
    int in_run;
    size_t n_metrics;
    char *metric_names[EVH_STEP_METRICS_MAX];
    double metric_values[EVH_STEP_METRICS_MAX];
    /* config_text parsed once, for config_string & co (their results are
     * borrowed until fini); NULL when the text is not a JSON object */
    cJSON *config_doc;
};

/* The one table, filled with this host's functions; static storage. */
const evh_host_api *hostapi_table(void);

/* A handle for one instance of the plugin described by m.  config_text is
 * copied ("{}" when NULL).  NULL on out-of-memory. */
evh_host *hostapi_instance_new(const manifest *m, runtime *rt,
                               const char *config_text);
void hostapi_instance_free(evh_host *h);

/* Ask the instance to stop: stopping() turns 1 and wait() returns early. */
void hostapi_request_stop(evh_host *h);

/* Wake every instance of rt blocked in wait() so that it sees
 * rt->stopping; runtime_stop calls this after setting the flag. */
void hostapi_runtime_stopping(runtime *rt);

/* Instances of the plugin described by m that are not freed yet (its
 * library must stay loaded, and m alive, while this is not 0). */
size_t hostapi_live_instances(const manifest *m);

/* Step runs: clear metrics and allow metric(); then forbid it again.
 * Metrics stay readable in h->metric_* until the next begin. */
void hostapi_run_begin(evh_host *h);
void hostapi_run_end(evh_host *h);

/*
 * The checks and the queueing behind api->emit, callable by the host itself
 * (the HTTP ingest uses the same path, so both validate alike).  Problems
 * (undeclared type, JSON errors, schema violations with their paths) are
 * added to d when d is not NULL.  On EVH_OK *id_out (may be NULL) receives
 * the event id.
 */
int hostapi_emit_checked(runtime *rt, const manifest *m, const char *event_type,
                         const char *data_json, size_t data_len,
                         const char *user_id, const char *additional_json,
                         diag *d, char id_out[37]);

/*
 * While on (on the calling thread), api->emit returns only once the writer
 * stored the event, as the HTTP ingest does, instead of once it is queued.
 * The host turns it on around a plugin's http callback: a webhook answer
 * sent after emit returned EVH_OK then means the event is durable, and the
 * sender will not retry it.  Returns the previous setting.
 */
int hostapi_durable_emit(int on);

/* What the HTTP ingest adds to emit (NULL options: plain emit). */
typedef struct ingest_options {
    const char *idempotency_key; /* NULL, or the client's key (copied) */
    int durable;                 /* 1: return only once the event is stored */
    uint32_t wait_ms;            /* wait for room in a full queue; 0: emit's */
    /* 1: the event's chain depth is chain_depth; 0: the calling thread's
     * (exec_current_chain_depth).  For events the host emits after a run
     * (system_events.c), whose thread no longer runs the workflow. */
    int has_chain_depth;
    uint32_t chain_depth;
    /* With durable: do not wait.  EVH_OK then means queued, and the
     * outcome (EVH_OK stored, EVH_E_DUPLICATE, the writer's error) comes
     * through async_ack->notify (event.h), which must be set; any other
     * return is a refusal now, and notify is never called. */
    evh_ack *async_ack;
} ingest_options;

/*
 * hostapi_emit_checked with options.  With durable set, returns EVH_OK once
 * the writer committed the event, EVH_E_DUPLICATE when the idempotency key
 * was stored before (*id_out then holds the refused new id: look the first
 * one up with store_event_find_by_key), or the writer's error.
 */
int hostapi_ingest(runtime *rt, const manifest *m, const char *event_type,
                   const char *data_json, size_t data_len, const char *user_id,
                   const char *additional_json, const ingest_options *o, diag *d,
                   char id_out[37]);

#endif
