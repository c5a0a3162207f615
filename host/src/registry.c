/*
 * registry.c - the list of plugin records (see registry.h).
 */
#include "registry.h"

#include <stdlib.h>
#include <string.h>

#include "loader.h"
#include "log.h"

const char *plugin_state_name(plugin_state s)
{
    switch (s) {
    case PLUGIN_FAILED:
        return "failed";
    case PLUGIN_INACTIVE:
        return "inactive";
    case PLUGIN_LOADED:
        return "loaded";
    case PLUGIN_READY:
        return "ready";
    case PLUGIN_RUNNING:
        return "running";
    case PLUGIN_STOPPED:
        return "stopped";
    }
    return "unknown";
}

registry *registry_new(void)
{
    return calloc(1, sizeof(registry));
}

void registry_free(registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->count; i++)
        plugin_free(r->items[i]);
    free(r->items);
    free(r);
}

int registry_add(registry *r, plugin *p)
{
    if (!r || !p)
        return EVH_E_INVALID;
    if (r->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        plugin **items = realloc(r->items, cap * sizeof *items);
        if (!items)
            return EVH_E_NOMEM;
        r->items = items;
        r->cap = cap;
    }
    r->items[r->count++] = p;
    return EVH_OK;
}

plugin *registry_find(const registry *r, const char *id)
{
    if (!r || !id)
        return NULL;
    for (size_t i = 0; i < r->count; i++) {
        plugin *p = r->items[i];
        if (p->state != PLUGIN_FAILED && p->id && !strcmp(p->id, id))
            return p;
    }
    return NULL;
}

plugin *registry_find_any(const registry *r, const char *id)
{
    if (!r || !id)
        return NULL;
    for (size_t i = 0; i < r->count; i++) {
        if (r->items[i]->id && !strcmp(r->items[i]->id, id))
            return r->items[i];
    }
    return NULL;
}

size_t registry_count(const registry *r, int kind, int state)
{
    size_t n = 0;
    if (!r)
        return 0;
    for (size_t i = 0; i < r->count; i++) {
        const plugin *p = r->items[i];
        if ((kind == 0 || p->kind == kind) && (state == -1 || (int)p->state == state))
            n++;
    }
    return n;
}

void plugin_free(plugin *p)
{
    if (!p)
        return;
    /* Normally a no-op (loader_unload_all ran); otherwise this is the last
     * chance to fini and dlclose in the right order. */
    loader_unload_one(p);
    if (p->thread_started) {
        /* run() never returned: its thread still uses the record, the
         * handle, the manifest and the code.  Leaking them is the only
         * safe choice; the process is normally about to exit. */
        log_error("loader", "plugin '%s': run() still in flight; its record is kept",
                  p->id ? p->id : "?");
        return;
    }
    if (p->dl == NULL)
        manifest_free(p->m);
    /* else: step instances still live (an abandoned call, see
     * loader_unload_one) use the manifest and the code. */
    free(p->dir);
    free(p->manifest_path);
    free(p->library_path);
    free(p->id);
    free(p->error);
    free(p->config_text);
    free(p);
}
