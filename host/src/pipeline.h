/*
 * pipeline.h - assembling what the engine runs: workflows from their
 * directories and triggers from YAML files and the workflow_triggers table,
 * each validated against the loaded plugins and workflows.
 *
 * Used at start and again on reload (SIGHUP): a bad file or trigger is
 * reported (file:line:column, or the trigger id for table rows) and
 * skipped; everything good loads.
 */
#ifndef EVH_PIPELINE_H
#define EVH_PIPELINE_H

#include <stddef.h>

#include <pthread.h>

#include "diag.h"
#include "engine.h"
#include "registry.h"
#include "runtime.h"
#include "store.h"
#include "triggers.h"
#include "workflow.h"

typedef struct pipeline_sources {
    const char *const *workflow_dirs;
    size_t n_workflow_dirs;
    const char *const *trigger_files;
    size_t n_trigger_files;
    /* What step plugins' validate callbacks run with when a workflow loads
     * (their data directories); NULL: those checks are skipped. */
    runtime *rt;
} pipeline_sources;

/*
 * Load workflows and triggers.  YAML triggers are also written to the
 * workflow_triggers table (origin = their file) so the table shows every
 * trigger in force; rows of a file that no longer holds them are deleted.
 * Triggers created through the API (origin 'api') are read back from the
 * table.  Problems go to d, one formatted line each.  Always returns sets
 * (possibly empty) unless out of memory.
 */
int pipeline_load(const pipeline_sources *src, const registry *reg, store *st,
                  workflow_set **ws_out, trigger_set **ts_out, diag *d);

/* The resolver triggers are validated with: sources and event types from
 * the registry, workflows from ws. */
typedef struct pipeline_resolver_ctx {
    const registry *reg;
    const workflow_set *ws;
} pipeline_resolver_ctx;
trigger_resolver pipeline_resolver(pipeline_resolver_ctx *ctx);

/* What a reload needs: the daemon's SIGHUP and the API's trigger changes
 * share it.  The lock keeps two reloads from interleaving their writes to
 * the workflow_triggers table. */
typedef struct pipeline_reloader {
    engine *e;
    const registry *r;
    const pipeline_sources *src;
    store *st; /* used under lock only */
    pthread_mutex_t lock;
} pipeline_reloader;

/* Load workflows and triggers and put them in force in rl->e; problems are
 * logged one per line (and copied to out when not NULL) and the good parts
 * load.  ud is a pipeline_reloader. */
int pipeline_reload(void *ud, diag *out);

#endif
