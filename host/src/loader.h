/*
 * loader.h - from plugin folders to initialized plugins.
 *
 * For each sub-folder of a plugin directory, in name order:
 *   1. refuse a folder or file writable by group or others, or owned by
 *      someone other than root or the user running evhost;
 *   2. read and validate plugin.json (manifest.c), every problem reported;
 *   3. check the ABI plugin.json requires against the host's, BEFORE dlopen,
 *      so no code of an incompatible plugin ever runs;
 *   4. (a plugin whose recorded crashes reach plugins.crash_limit is
 *      quarantined here, isolate.h) dlopen(RTLD_NOW | RTLD_LOCAL) the
 *      library, resolve evh_plugin_entry; or, for "isolation": "process",
 *      have a child process do that and describe the descriptor (isolate.h);
 *   5. cross-check the descriptor with plugin.json (id, kind, ABI, sizes;
 *      a source with the http callback of ABI 1.1 must declare "abi" 1.1
 *      or later; its table is read only as far as its struct_size covers);
 *   6. validate the plugin's config against configSchema, fill defaults;
 *   7. init (event sources; steps are initialized per workflow step).
 * A plugin failing any step is kept in the registry as failed, with one log
 * line naming plugin, file and reason; the others load.  Duplicate ids, and
 * event sources declaring a webhookEndpoint another source already has,
 * are refused (the first one found wins).
 */
#ifndef EVH_LOADER_H
#define EVH_LOADER_H

#include <cjson/cJSON.h>

#include "registry.h"
#include "runtime.h"

typedef struct loader_options {
    /* {"<plugin id>": {config...}, ...} from host.yaml; may be NULL. */
    const cJSON *plugin_configs;
    /* 1: stop after step 5 (no config, no init): `evhost plugins validate`
     * and `list`. */
    int validate_only;
    /* 0 in production: refuse unsafe ownership/permissions.  Never set
     * except by tests of other checks. */
    int skip_permission_check;
    /* NULL: dlopen the library where it is.  A directory: dlopen a private
     * copy made there (and unlinked at once), so that two versions of a
     * plugin can be loaded side by side and an overwritten file never
     * changes code that runs (reload.h). */
    const char *library_copy_dir;
} loader_options;

/*
 * Scan `dir` and add one record per sub-folder to r (failed ones too).
 * Returns the number of plugins that loaded, or a negative code when the
 * directory itself cannot be read (reported in d and the log).
 */
int loader_scan_dir(registry *r, runtime *rt, const char *dir,
                    const loader_options *opt, diag *d);

/* Load one plugin folder; always returns a record (failed or not) that the
 * caller adds to the registry (loader_scan_dir does this for you). */
plugin *loader_load_one(runtime *rt, const char *plugin_dir,
                        const loader_options *opt);
/* The same, refusing the ids and webhook endpoints that the plugins of
 * `others` hold (loader_scan_dir's duplicate checks); others may be NULL. */
plugin *loader_load_checked(const registry *others, runtime *rt, const char *plugin_dir,
                            const loader_options *opt);

/* Start run() of every ready event source on its own thread. */
int loader_start_sources(registry *r);
/* Request stop on every source (stop callback), join their threads (their
 * run() returns), all within the stop deadline (deadline.h); a source past
 * it is abandoned: state PLUGIN_ABANDONED, error says so, logged. */
void loader_stop_sources(registry *r);
/* fini every initialized plugin and dlclose; registry records remain. */
void loader_unload_all(registry *r);

/* The same for one record: stop and join its source thread if running,
 * fini, free its instance, dlclose (kept open while step instances of it
 * are still alive).  Idempotent; plugin_free calls it. */
void loader_unload_one(plugin *p);

/*
 * A new instance of step plugin p (state PLUGIN_READY) for one workflow
 * step: config_json (the step's `with:` block; NULL means {}) is validated
 * against configSchema with defaults filled in (values that are templates,
 * "{{ ... }}", are resolved per run and not checked here), then init runs
 * on the calling thread.  On EVH_OK *host_out and *ctx_out hold the
 * instance; otherwise *err (malloc'd, may be NULL) says why.
 */
int loader_step_instance_new(plugin *p, runtime *rt, const char *config_json,
                             struct evh_host **host_out, void **ctx_out,
                             char **err);
/* fini the instance and free its handle; no run of it may be in flight. */
void loader_step_instance_free(plugin *p, struct evh_host *h, void *ctx);

/*
 * The step plugin's own check of one workflow step's config (its validate
 * callback, SDK 1.2), made when the workflow loads.  config_json is the
 * `with:` block (templates unresolved), already checked against
 * configSchema by the caller; validate sees it with defaults filled in,
 * through a handle made for the call (data dirs under rt; emit refused).
 * EVH_OK also when the plugin has no validate (built against SDK 1.0 or
 * 1.1, or NULL).  Otherwise the plugin's code, *field (malloc'd, NULL for
 * the whole config) and *err (malloc'd, one line) saying why.
 */
int loader_step_validate(const plugin *p, runtime *rt, const char *config_json, char **field,
                         char **err);

#endif
