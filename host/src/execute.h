/*
 * execute.h - running one workflow execution: steps in order, templates,
 * per-step timeout and retry with backoff, on_error, and the records of
 * every step run.
 *
 * Each worker thread owns an exec_worker: its own database connection and
 * its own step plugin instances (created lazily, one per workflow step), so
 * calls on one instance never overlap, as the SDK promises.
 */
#ifndef EVH_EXECUTE_H
#define EVH_EXECUTE_H

#include <stdatomic.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "recorder.h"
#include "registry.h"
#include "runtime.h"
#include "store.h"
#include "workflow.h"

typedef struct exec_worker exec_worker;

/* rec NULL: every record is written on st before exec_run goes on (the
 * replay thread).  Otherwise records go through the recorder (group
 * commit, recorder.h); st is still used to read, and for the writes of a
 * recovered execution. */
exec_worker *exec_worker_new(runtime *rt, store *st, recorder *rec);

/* Record a new execution (queued), as store_execution_create does, with
 * the id uuid_for_execution gives its (trigger, event) in x->id.  is_new
 * says no row can exist for them yet (an event of this process, not one
 * recovery found): its write then goes through the recorder.  Otherwise it
 * is written at once, and EVH_E_DUPLICATE with the existing id in x->id
 * says it exists. */
int exec_record_create(exec_worker *w, store_execution *x, int is_new);

/* Increment *count once this worker's records so far are in the database. */
void exec_record_count(exec_worker *w, atomic_ullong *count);
/* fini every instance this worker created; no run may be in flight. */
void exec_worker_free(exec_worker *w);
/* Drop (fini) instances when the workflow set they belong to changed. */
void exec_worker_reset(exec_worker *w);

/* The chain depth an event emitted on this thread gets now: 0 outside a
 * workflow run, else 1 + the depth of the event whose workflow runs. */
uint32_t exec_current_chain_depth(void);

typedef struct exec_request {
    const workflow *wf;
    const registry *reg;
    const char *trigger_id;
    const cJSON *envelope;   /* the event */
    uint32_t chain_depth;
    const char *execution_id; /* the row, already created (queued) */
    /* Resume/replay: outputs of steps that already succeeded,
     * {"<step>": {"output": ...}}, and the step to start from (NULL: the
     * first step not in prior_outputs). */
    const cJSON *prior_outputs;
    const char *from_step;
    struct lifecycle *lifecycle; /* lifecycle events (lifecycle.h), or NULL */
} exec_request;

/*
 * Run the workflow; the execution row moves running -> succeeded | failed
 * and every attempt of every step is stored.  Returns EVH_OK when the
 * execution succeeded, else the failing code; *error (malloc'd, may be
 * NULL) says why.
 */
int exec_run(exec_worker *w, const exec_request *req, char **error);

/* The id of the step that ended the last execution exec_run ran on w early
 * (EVH_STEP_STOP_WORKFLOW: the execution succeeded, the later steps were
 * recorded as skipped), or NULL.  Valid until the next exec_run on w. */
const char *exec_stopped_by(const exec_worker *w);

#endif
