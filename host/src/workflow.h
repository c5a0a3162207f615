/*
 * workflow.h - the workflow model (what a workflow YAML file says) and its
 * loading.  Running one is engine.c's job.
 *
 *   id: file-pipeline                 # [a-zA-Z0-9_.-]{1,128}, unique
 *   name: File pipeline               # optional, default = id
 *   on_error: notify-admins           # optional: workflow run when this fails
 *   steps:
 *     - id: fetch                     # unique within the workflow
 *       uses: http-request            # a loaded step plugin id
 *       with: {url: "https://...{{ event.data.x }}"}   # the step's config
 *       timeout_ms: 5000              # 0 = none (default)
 *       retry: {max: 3, backoff_ms: 200}   # retries after the first try
 *       on_error: stop                # stop (default) | continue
 */
#ifndef EVH_WORKFLOW_H
#define EVH_WORKFLOW_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "diag.h"
#include "registry.h"
#include "runtime.h"

typedef struct wf_step {
    char *id;
    char *uses;           /* step plugin id */
    cJSON *with;          /* config object (templates unresolved); never NULL */
    uint32_t timeout_ms;  /* 0 = no timeout */
    uint32_t retry_max;   /* extra attempts after the first */
    uint32_t retry_backoff_ms; /* first backoff; doubles each retry */
    int on_error_continue;     /* 1: continue with the next step */
    int line;             /* position in the file, for messages */
} wf_step;

typedef struct workflow {
    char *id;
    char *name;
    char *file;           /* where it was loaded from */
    char version[17];     /* first 16 hex of SHA-256 of the file's bytes */
    char *on_error;       /* workflow id or NULL */
    wf_step *steps;
    size_t n_steps;
} workflow;

typedef struct workflow_set {
    workflow **items;
    size_t count;
} workflow_set;

/*
 * Load every *.yaml / *.yml file of `dir` (sorted).  Each problem is added
 * to d as "file:line:column: reason" (unknown step plugin, duplicate step
 * id, template naming a later or unknown step, config breaking the step
 * plugin's configSchema or refused by its validate callback, unknown keys,
 * bad types).  A file with problems is skipped; the others load.  Steps
 * are checked against the plugins in r.  rt is what validate callbacks run
 * with (their data directories); NULL skips them (the schema is still
 * checked).  Returns the number of workflows added to ws.
 */
int workflow_load_dir(workflow_set *ws, const char *dir, const registry *r, runtime *rt,
                      diag *d);

/* Load one file (same checks); NULL with problems in d. */
workflow *workflow_load_file(const char *path, const registry *r, runtime *rt, diag *d);

/* The same for len bytes of YAML text (borrowed for the call); path names
 * the file in the model and is copied; rt as for workflow_load_dir.  The
 * fuzzer's entry (tests/fuzz). */
workflow *workflow_parse(const char *bytes, size_t len, const char *path, const registry *r,
                         runtime *rt, diag *d);

void workflow_free(workflow *w);
workflow_set *workflow_set_new(void);
void workflow_set_free(workflow_set *ws);
/* Takes ownership; EVH_E_DUPLICATE (caller keeps w) when the id exists. */
int workflow_set_add(workflow_set *ws, workflow *w);
const workflow *workflow_set_get(const workflow_set *ws, const char *id);

/* The workflow as JSON for the API and CLI: id, name, file, version,
 * on_error, steps[{id, uses, with, timeout_ms, retry, on_error}]. */
cJSON *workflow_to_json(const workflow *w);

#endif
