/*
 * registry.h - every plugin the host found, loaded or not, and its state:
 * the single source of truth for "which plugins are there and how are they".
 * Failed plugins stay listed with their error so the CLI and the API can
 * show why.
 */
#ifndef EVH_REGISTRY_H
#define EVH_REGISTRY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <evhost/evhost.h>

#include "manifest.h"
#include "runtime.h"

typedef enum plugin_state {
    PLUGIN_FAILED = 0, /* refused at some check; see error */
    PLUGIN_INACTIVE,   /* manifest status "inactive": validated, not loaded */
    PLUGIN_LOADED,     /* dlopen'ed and descriptor checked (validate-only) */
    PLUGIN_READY,      /* source initialized / step usable */
    PLUGIN_RUNNING,    /* source thread running */
    PLUGIN_STOPPED,    /* source run() returned or the host stopped it */
    PLUGIN_ABANDONED,  /* a source that did not stop within its deadline
                        * (deadline.h): its thread is left running and its
                        * library loaded; it is never called again */
    PLUGIN_QUARANTINED, /* crashed too often (isolate.h): not loaded at
                         * start, or no new process while running */
} plugin_state;

const char *plugin_state_name(plugin_state s); /* "failed", "inactive", ... */

typedef struct plugin {
    char *dir;            /* the plugin folder */
    char *manifest_path;  /* <dir>/plugin.json */
    char *library_path;   /* <dir>/<library>; NULL before the manifest passed */
    char *id;             /* manifest id, or the folder name when unknown */
    int kind;             /* EVH_KIND_*; 0 when unknown */
    manifest *m;          /* NULL when plugin.json failed */
    _Atomic plugin_state state; /* atomic: read by any thread, see registry */
    int32_t error_code;   /* EVH_OK or why it failed */
    char *error;          /* one line, names file and reason; NULL if none */
    int quiet_failure;    /* log a failure at debug level: the caller prints
                           * error itself (`plugins validate`, `list`) */
    void *dl;             /* dlopen handle */
    const evh_plugin *desc;
    char *config_text;    /* validated config with defaults ("{}" if none) */
    /* event sources: the one instance and its thread */
    struct evh_host *host;
    void *ctx;
    pthread_t thread;
    int thread_started;
    int32_t run_result;
    /* hot reload (reload.h): holders of the record besides the registry
     * (a workflow step's instance, an HTTP call, an ingest), and the last
     * failed reload of this folder (the version loaded stays in force) */
    atomic_uint refs;
    char *reload_error;
    /* process isolation (isolate.h): the stand-in descriptor's state; NULL
     * for an in-process plugin */
    struct iso_plugin *iso;
} plugin;

/*
 * Hot reload (reload.h) changes the registry while the host runs: records
 * are added, replaced and removed by the reloader only, under the write
 * lock.  Everyone else who reads items while the host runs holds the read
 * lock while they use a record (keep it short), or takes a reference with
 * registry_acquire to use one longer (a step instance, a call into a
 * plugin).  A replaced or removed record moves to `retired` and is
 * unloaded and freed (registry_reap) once no reference and no instance of
 * it is left.  Before the host runs (loading at start, the CLI) and after
 * it stopped, the registry is used from one thread without the lock.
 */
typedef struct registry {
    plugin **items;
    size_t count;
    size_t cap;
    pthread_rwlock_t lock;
    plugin **retired;
    size_t n_retired, cap_retired;
} registry;

registry *registry_new(void);
/* Stops nothing: call loader_stop_sources / loader_unload_all first. */
void registry_free(registry *r);

/* Takes ownership of p. */
int registry_add(registry *r, plugin *p);

/* The plugin with this id in a usable state (not failed), or NULL.  While
 * the host runs, hold the read lock (or use registry_acquire). */
plugin *registry_find(const registry *r, const char *id);
/* Any record with this id, including failed ones (same rule). */
plugin *registry_find_any(const registry *r, const char *id);

/* Count of plugins of kind (0 = any) in state (-1 = any); takes the read
 * lock itself. */
size_t registry_count(const registry *r, int kind, int state);

/* The lock (see above).  const: readers lock registries they only read. */
void registry_rdlock(const registry *r);
void registry_wrlock(registry *r);
void registry_unlock(const registry *r);

/* registry_find under the read lock, with a reference taken: the record
 * (code, manifest, instance) stays alive until plugin_release.  NULL when
 * there is no usable plugin with this id. */
plugin *registry_acquire(const registry *r, const char *id);
/* Another reference on p; the caller holds the read lock or a reference. */
void plugin_acquire(plugin *p);
/* Drop a reference (NULL: nothing).  Never frees: registry_reap does. */
void plugin_release(plugin *p);

/* The reloader's changes; the caller holds the write lock.  Replace old
 * (in items) by p at its place, or add p when old is NULL; old moves to
 * retired. */
int registry_replace(registry *r, plugin *old, plugin *p);
/* Take p out of items into retired. */
int registry_retire(registry *r, plugin *p);
/* Without the lock, from the reloader's thread (or after the host
 * stopped): unload and free the retired records that nothing uses any
 * more (no reference, no live instance, no thread of theirs running).
 * Returns how many retired records remain (draining). */
size_t registry_reap(registry *r);

void plugin_free(plugin *p);

#endif
