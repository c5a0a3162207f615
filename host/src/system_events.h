/*
 * system_events.h - the events the host itself emits as the `system` event
 * source (event-sources/system): workflow_completed, workflow_failed,
 * plugin_failed, host_started and user_login.
 *
 * The system plugin is an ordinary plugin folder whose plugin.json declares
 * these types with their schemas; its library only waits for stop.  The host
 * emits on its behalf with the plugin's manifest (hostapi_ingest), so the
 * events are checked against those schemas, stamped with source "system",
 * stored and matched against triggers like any other.  When the plugin is
 * not loaded (removed, inactive, failed), every function here does nothing.
 *
 * One host per process: system_events_attach (engine_start) says which
 * runtime and registry the events belong to; system_events_detach
 * (engine_free) ends that.  The plugin is looked up in the registry (and
 * referenced) for each event, so a hot reload that replaces it (new
 * schemas, new config) or removes it takes effect at once.  Every function
 * is thread-safe and never blocks longer than the bounded wait of a
 * non-durable emit.
 */
#ifndef EVH_SYSTEM_EVENTS_H
#define EVH_SYSTEM_EVENTS_H

#include <stdint.h>

#include "registry.h"
#include "runtime.h"

/* The plugin's id, as the seed names the source. */
#define SYSTEM_PLUGIN_ID "system"

/*
 * From now on the functions below emit, as the `system` plugin of reg
 * whenever one is loaded (reg must outlive the attachment).  Also emits
 * plugin_failed for every plugin of reg that failed to load (the system
 * plugin may have loaded after them).
 */
void system_events_attach(runtime *rt, const registry *reg);
/* Stop emitting (when rt is the attached runtime, or rt is NULL). */
void system_events_detach(const runtime *rt);

/* An execution that finished: workflow_completed or workflow_failed. */
typedef struct sysev_execution {
    const char *execution_id;
    const char *workflow_id;
    const char *trigger_id;
    const char *event_id;
    const char *user_id;    /* the triggering event's metadata.user_id, or NULL */
    const char *replay_of;  /* NULL unless a replay */
    int succeeded;
    const char *error;      /* failed: why (NULL: "unknown error") */
    const char *stopped_by; /* succeeded early: the step that stopped it */
    double duration_ms;
    /* the chain depth of the event the execution ran for: the new event gets
     * this + 1, so a workflow triggered by its own completion is cut at
     * pipeline.max_chain_depth like any other loop */
    uint32_t chain_depth;
} sysev_execution;
void system_events_execution_finished(const sysev_execution *x);

/* plugin_failed: kind is the plugin's EVH_KIND_* (0: unknown), stage
 * "load" or "run", code its status code. */
void system_events_plugin_failed(const char *plugin_id, int kind, const char *stage,
                                 const char *error, int32_t code);

/* host_started, once the sources run (daemon.c). */
void system_events_host_started(const registry *reg);

/* A request authenticated with API key key_name (http.c): user_login the
 * first time each key authenticates, and again after it went unused for the
 * plugin's login_idle_s. */
void system_events_user_login(const char *key_name);

#endif
