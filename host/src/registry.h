/*
 * registry.h - every plugin the host found, loaded or not, and its state:
 * the single source of truth for "which plugins are there and how are they".
 * Failed plugins stay listed with their error so the CLI and the API can
 * show why.
 */
#ifndef EVH_REGISTRY_H
#define EVH_REGISTRY_H

#include <pthread.h>
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
} plugin_state;

const char *plugin_state_name(plugin_state s); /* "failed", "inactive", ... */

typedef struct plugin {
    char *dir;            /* the plugin folder */
    char *manifest_path;  /* <dir>/plugin.json */
    char *library_path;   /* <dir>/<library>; NULL before the manifest passed */
    char *id;             /* manifest id, or the folder name when unknown */
    int kind;             /* EVH_KIND_*; 0 when unknown */
    manifest *m;          /* NULL when plugin.json failed */
    plugin_state state;
    int32_t error_code;   /* EVH_OK or why it failed */
    char *error;          /* one line, names file and reason; NULL if none */
    void *dl;             /* dlopen handle */
    const evh_plugin *desc;
    char *config_text;    /* validated config with defaults ("{}" if none) */
    /* event sources: the one instance and its thread */
    struct evh_host *host;
    void *ctx;
    pthread_t thread;
    int thread_started;
    int32_t run_result;
} plugin;

typedef struct registry {
    plugin **items;
    size_t count;
    size_t cap;
} registry;

registry *registry_new(void);
/* Stops nothing: call loader_stop_sources / loader_unload_all first. */
void registry_free(registry *r);

/* Takes ownership of p. */
int registry_add(registry *r, plugin *p);

/* The plugin with this id in a usable state (not failed), or NULL. */
plugin *registry_find(const registry *r, const char *id);
/* Any record with this id, including failed ones. */
plugin *registry_find_any(const registry *r, const char *id);

/* Count of plugins of kind (0 = any) in state (-1 = any). */
size_t registry_count(const registry *r, int kind, int state);

void plugin_free(plugin *p);

#endif
