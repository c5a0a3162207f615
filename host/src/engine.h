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
 * event).  Replays (engine_replay) run on a thread of their own and are
 * resumed at start the same way.
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
    struct lifecycle *lifecycle; /* job/plugin lifecycle events (lifecycle.h), or NULL */
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

/*
 * Run execution `execution_id` again, as a new execution with replay_of =
 * its id, the same trigger and event, and the workflow (and version) loaded
 * now.  from_step NULL runs every step; otherwise the steps before it are
 * not run: they are recorded as 'skipped' runs carrying the original's
 * outputs (what {{ steps.<id>.output }} sees), and the run starts at
 * from_step.  Returns at once, the new execution 'queued', its id in
 * new_id; a replay thread runs it (a restart resumes it like any other
 * execution).  An execution is replayed at most once (one execution per
 * trigger, event and replay_of): replay the replay to run it again.
 *   EVH_E_NOT_FOUND  no such execution; or its workflow is no longer
 *                    loaded, or its event no longer stored (see *err)
 *   EVH_E_INVALID    from_step is not a step of the workflow
 *   EVH_E_DUPLICATE  it was replayed already: new_id = that replay
 *   EVH_E_IO, EVH_E_NOMEM
 * *err (when err is not NULL) is a malloc'd reason on failure.
 */
int engine_replay(engine *e, const char *execution_id, const char *from_step, char new_id[37],
                  char **err);

/* Borrow the current workflows/triggers for reading (API, trigger
 * validation); they stay valid until engine_config_release(e, token) with
 * the token this returned. */
void *engine_config_acquire(engine *e, const workflow_set **ws, const trigger_set **ts);
void engine_config_release(engine *e, void *token);

#endif
