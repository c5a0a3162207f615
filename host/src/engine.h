/*
 * engine.h - the pipeline: durable queue writer, dispatcher workers,
 * triggers and workflows, recovery.
 *
 *   emit/HTTP --(bus)--> writer thread: group commit to SQLite, then ack
 *             --(dispatch queue)--> N workers: match triggers, run workflows
 *
 * An event is acknowledged (emit returns EVH_OK, the API answers 202) only
 * after the writer committed it.  At start the engine re-dispatches every
 * event still 'pending' and resumes executions left 'queued' or 'running'
 * (steps that had succeeded are not run again; the step that was running is
 * run again: at-least-once per step, exactly one execution per trigger and
 * event).
 */
#ifndef EVH_ENGINE_H
#define EVH_ENGINE_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "registry.h"
#include "runtime.h"
#include "triggers.h"
#include "workflow.h"

typedef struct engine_options {
    const char *db_path;
    int synchronous_full;   /* 1: PRAGMA synchronous=FULL, 0: NORMAL */
    unsigned workers;       /* 0: number of cores */
    size_t dispatch_queue;  /* events committed but not yet dispatched */
    uint32_t max_chain_depth;
} engine_options;

typedef struct engine engine;

/* Opens (creates) the database and applies migrations. */
engine *engine_new(runtime *rt, registry *reg, const engine_options *o, char **err);

/* Replace the workflows / triggers (takes ownership; the old sets are freed
 * once no worker uses them).  Safe while running (SIGHUP reload). */
void engine_set_config(engine *e, workflow_set *ws, trigger_set *ts);

/* Recovery, then the writer and worker threads. */
int engine_start(engine *e);

/* Stop taking events, finish what is queued and in flight (up to
 * deadline_ms; what remains stays 'pending' in the database for the next
 * start), and join the threads. */
void engine_stop(engine *e, int deadline_ms);
void engine_free(engine *e);

/* Counters for tests and /metrics. */
typedef struct engine_stats {
    uint64_t persisted, dispatched, unmatched, executions_ok, executions_failed;
    uint64_t chain_cut;
    size_t dispatch_depth;
} engine_stats;
void engine_get_stats(engine *e, engine_stats *out);

/* Borrow the current workflows/triggers for reading (API, trigger
 * validation); they stay valid until engine_config_release(e, token) with
 * the token this returned. */
void *engine_config_acquire(engine *e, const workflow_set **ws, const trigger_set **ts);
void engine_config_release(engine *e, void *token);

#endif
