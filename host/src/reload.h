/*
 * reload.h - hot reload of plugins: the plugin directories are rescanned
 * while the host runs (on an inotify event, watch.h; on SIGHUP; on
 * POST /api/plugins/reload) and the registry follows what is on disk:
 *
 *   a new folder      validated and loaded (an event source also started);
 *                     if it fails (half-copied: plugin.json missing or not
 *                     JSON, library missing or truncated; or invalid), it
 *                     is listed as failed with its error, logged once, and
 *                     tried again when its files change;
 *   a folder removed  its plugin leaves the registry at once; a source is
 *                     stopped (within the stop deadline, deadline.h); the
 *                     record is unloaded once the runs still using it end;
 *   a folder changed  (plugin.json or the library: inode, size, mtime,
 *                     mode, owner) the new version is loaded BESIDE the old
 *                     one; only when it loaded (and a source's init
 *                     succeeded) does it replace the old one, which is then
 *                     stopped and drained like a removed one.  If it fails,
 *                     the old version stays in force (rollback) and the
 *                     failure is reported (the old record's reload_error).
 *
 * After a change the workflows and triggers are validated again against
 * the new plugins (the revalidate callback: pipeline_reload), which also
 * makes every engine worker drop its step instances (a new generation),
 * so instances of an old step version are finalized on their worker
 * thread before that version is unloaded.
 *
 * Side by side and dlopen: glibc's dlopen returns the object already
 * loaded when the path NAME matches one (checked first, whatever the file
 * is now), or else when the file's device and inode do; so a new version
 * at the old path would silently be the old code.  Each library is
 * therefore dlopen'ed from a private copy (loader_options.library_copy_dir)
 * under a name never used before, <copy dir>/<id>-<pid>-<n>.so, a new file
 * (a new inode), unlinked right after dlopen (the mapping stays; nothing
 * accumulates).  This also means that overwriting a plugin's .so in place
 * never changes code that is running.  The daemon loads every plugin this
 * way, at start too (<data_dir>/plugin-libraries).
 */
#ifndef EVH_RELOAD_H
#define EVH_RELOAD_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "diag.h"
#include "registry.h"
#include "runtime.h"

typedef struct reload_options {
    const char *const *dirs; /* the plugin directories (copied) */
    size_t n_dirs;
    const cJSON *plugin_configs;  /* host.yaml plugins.config; borrowed, may be NULL */
    const char *library_copy_dir; /* NULL: dlopen in place (tests only) */
    int skip_permission_check;    /* tests only */
    /* The daemon's data directory (may be NULL).  It and everything beneath
     * it are the daemon's own files, never plugin folders, wherever they sit:
     * with no settings the data directory is ./evhost-data, so `evhost run
     * --plugin-dir .` would otherwise report it as a plugin that failed.
     * Compared by device and inode, not by name. */
    const char *data_dir;
    /* Validate workflows and triggers again after a change (pipeline_reload
     * and its pipeline_reloader); may be NULL. */
    int (*revalidate)(void *ud, diag *d);
    void *revalidate_ud;
} reload_options;

typedef struct reloader reloader;

/* Records already in r that come from these directories are adopted as
 * they are (their files fingerprinted now). */
reloader *reloader_new(registry *r, runtime *rt, const reload_options *o);
void reloader_free(reloader *rl);

/* The first load, at start: every folder of every directory, in name
 * order; no source is started.  Returns the number loaded. */
int reloader_load_initial(reloader *rl);

/* From now on an event source is started as soon as it is loaded (call
 * once the host started its sources). */
void reloader_set_running(reloader *rl);

/*
 * Rescan now.  on_demand (SIGHUP, the API): also try again the folders
 * whose plugin failed even when their files did not change, and validate
 * the workflows and triggers again even when nothing changed.  Returns what
 * changed:
 *   {"loaded":   [{"id", "version", "kind", "dir", "state"}],
 *    "replaced": [{"id", "from", "to", "kind", "dir", "state", "old_state"}],
 *    "removed":  [{"id", "version", "kind", "dir", "old_state"}],
 *    "failed":   [{"id", "dir", "error", "kept"}],  kept: the version still
 *                in force, or null
 *    "unchanged": n, "draining": n, "problems": ["workflow/trigger problem"]}
 * NULL on out-of-memory.
 */
cJSON *reloader_rescan(reloader *rl, int on_demand);

/* reloader_rescan(ud, 1), for api_ctx.plugins_reload. */
cJSON *reloader_api(void *ud);

/* Unload and free the replaced and removed plugins nothing uses any more;
 * returns how many still drain. */
size_t reloader_reap(reloader *rl);

/* The directories, for the watcher. */
const char *const *reloader_dirs(const reloader *rl, size_t *n);

/* 1 when path is the data directory (reload_options.data_dir) or lies
 * beneath it, by device and inode through its real path: not a plugin
 * folder, and not watched (the database changes there all the time). */
int reloader_is_data(const reloader *rl, const char *path);

/*
 * Copy library src into dir (created 0700 if missing) under a name never
 * used before in this process, <dir>/<id>-<pid>-<n>.so, mode 0500.  On 0,
 * *out is the copy's path (malloc'd); on -1, *why (malloc'd) says what
 * failed.
 */
int reload_copy_library(const char *src, const char *dir, const char *id, char **out, char **why);

#endif
