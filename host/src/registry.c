/*
 * registry.c - the list of plugin records (see registry.h).
 */
#include "registry.h"

#include <stdlib.h>
#include <string.h>

#include "hostapi.h"
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
    case PLUGIN_ABANDONED:
        return "abandoned";
    case PLUGIN_QUARANTINED:
        return "quarantined";
    }
    return "unknown";
}

registry *registry_new(void)
{
    registry *r = calloc(1, sizeof(registry));
    if (r && pthread_rwlock_init(&r->lock, NULL) != 0) {
        free(r);
        return NULL;
    }
    return r;
}

void registry_free(registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->count; i++)
        plugin_free(r->items[i]);
    for (size_t i = 0; i < r->n_retired; i++)
        plugin_free(r->retired[i]);
    free(r->items);
    free(r->retired);
    pthread_rwlock_destroy(&r->lock);
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
    registry_rdlock(r);
    for (size_t i = 0; i < r->count; i++) {
        const plugin *p = r->items[i];
        if ((kind == 0 || p->kind == kind) && (state == -1 || (int)p->state == state))
            n++;
    }
    registry_unlock(r);
    return n;
}

/* ---- concurrent use (hot reload) ------------------------------------------ */

void registry_rdlock(const registry *r)
{
    pthread_rwlock_rdlock((pthread_rwlock_t *)&r->lock);
}

void registry_wrlock(registry *r)
{
    pthread_rwlock_wrlock(&r->lock);
}

void registry_unlock(const registry *r)
{
    pthread_rwlock_unlock((pthread_rwlock_t *)&r->lock);
}

plugin *registry_acquire(const registry *r, const char *id)
{
    if (!r || !id)
        return NULL;
    registry_rdlock(r);
    plugin *p = registry_find(r, id);
    if (p)
        plugin_acquire(p);
    registry_unlock(r);
    return p;
}

void plugin_acquire(plugin *p)
{
    atomic_fetch_add(&p->refs, 1);
}

void plugin_release(plugin *p)
{
    if (p)
        atomic_fetch_sub(&p->refs, 1);
}

static int push_retired(registry *r, plugin *p)
{
    if (r->n_retired == r->cap_retired) {
        size_t cap = r->cap_retired ? r->cap_retired * 2 : 8;
        plugin **items = realloc(r->retired, cap * sizeof *items);
        if (!items)
            return EVH_E_NOMEM;
        r->retired = items;
        r->cap_retired = cap;
    }
    r->retired[r->n_retired++] = p;
    return EVH_OK;
}

static size_t index_of(const registry *r, const plugin *p)
{
    for (size_t i = 0; i < r->count; i++) {
        if (r->items[i] == p)
            return i;
    }
    return (size_t)-1;
}

int registry_replace(registry *r, plugin *old, plugin *p)
{
    if (!r || !p)
        return EVH_E_INVALID;
    if (!old)
        return registry_add(r, p);
    size_t i = index_of(r, old);
    if (i == (size_t)-1)
        return EVH_E_NOT_FOUND;
    /* room in retired first, so that a failure changes nothing */
    int rc = push_retired(r, old);
    if (rc != EVH_OK)
        return rc;
    r->items[i] = p;
    return EVH_OK;
}

int registry_retire(registry *r, plugin *p)
{
    size_t i = r ? index_of(r, p) : (size_t)-1;
    if (i == (size_t)-1)
        return EVH_E_NOT_FOUND;
    int rc = push_retired(r, p);
    if (rc != EVH_OK)
        return rc;
    memmove(&r->items[i], &r->items[i + 1], (r->count - i - 1) * sizeof *r->items);
    r->count--;
    return EVH_OK;
}

/* Nothing of p runs or can run any more: no reference, no thread, no
 * instance (an abandoned step call or init keeps one alive). */
static int unused(const plugin *p)
{
    return atomic_load(&p->refs) == 0 && p->state != PLUGIN_ABANDONED && !p->thread_started &&
           !((p->dl || p->iso) && p->m && hostapi_live_instances(p->m) > (p->host ? 1u : 0u));
}

size_t registry_reap(registry *r)
{
    if (!r)
        return 0;
    size_t kept = 0;
    for (size_t i = 0; i < r->n_retired; i++) {
        plugin *p = r->retired[i];
        if (unused(p)) {
            loader_unload_one(p); /* fini (a source), then dlclose */
            if (!p->dl && !p->iso) { /* iso: process isolation (isolate.h) */
                plugin_free(p);
                continue;
            }
        }
        r->retired[kept++] = p;
    }
    r->n_retired = kept;
    return kept;
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
    if (p->dl == NULL && p->iso == NULL)
        manifest_free(p->m);
    /* else: step instances still live (an abandoned call, see
     * loader_unload_one) use the manifest and the code. */
    free(p->dir);
    free(p->manifest_path);
    free(p->library_path);
    free(p->id);
    free(p->error);
    free(p->reload_error);
    free(p->config_text);
    free(p);
}
