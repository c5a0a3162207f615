/*
 * pipeline.c - workflows + triggers, validated together (see pipeline.h).
 */
#include "pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evhost/evhost.h>

#include "jsonpath.h"
#include "log.h"
#include "yamldoc.h"

static int resolve_event_type(void *ud, const char *source, const char *event_type,
                              const schema **out)
{
    const pipeline_resolver_ctx *c = ud;
    const plugin *p = registry_find(c->reg, source);
    *out = NULL;
    if (!p || !p->m || !p->m->n_event_types)
        return 0;
    const manifest_event_type *t = manifest_find_type(p->m, event_type);
    if (!t)
        return -1;
    *out = t->schema;
    return 1;
}

static int resolve_workflow(void *ud, const char *workflow_id)
{
    const pipeline_resolver_ctx *c = ud;
    return workflow_set_get(c->ws, workflow_id) != NULL;
}

/* The names a misspelt source, event type or workflow is compared with:
 * exactly those the two callbacks above would accept, so a suggestion
 * always loads. */
static void offer_names(void *ud, trigger_names what, const char *source, spell_near *near)
{
    const pipeline_resolver_ctx *c = ud;
    if (what == TRIGGER_NAMES_WORKFLOWS) {
        for (size_t i = 0; c->ws && i < c->ws->count; i++)
            spell_near_offer(near, c->ws->items[i]->id);
    } else if (what == TRIGGER_NAMES_EVENT_TYPES) {
        const plugin *p = registry_find(c->reg, source);
        for (size_t i = 0; p && p->m && i < p->m->n_event_types; i++)
            spell_near_offer(near, p->m->event_types[i].type);
    } else {
        for (size_t i = 0; c->reg && i < c->reg->count; i++) {
            const plugin *p = c->reg->items[i];
            if (p->state != PLUGIN_FAILED && p->id && p->m && p->m->n_event_types)
                spell_near_offer(near, p->id);
        }
    }
}

trigger_resolver pipeline_resolver(pipeline_resolver_ctx *ctx)
{
    trigger_resolver r = {.ud = ctx,
                          .event_type = resolve_event_type,
                          .workflow_exists = resolve_workflow,
                          .offer_names = offer_names};
    return r;
}

/* The node at path, or at its nearest existing parent: a missing key
 * ("triggers[0].workflow") is reported where its mapping is. */
static const cJSON *nearest_node(const cJSON *root, const char *path)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (;;) {
        const cJSON *node = json_path_get(root, buf);
        if (node || !buf[0])
            return node;
        char *cut = strrchr(buf, '.');
        char *bracket = strrchr(buf, '[');
        if (bracket && (!cut || bracket > cut))
            cut = bracket;
        if (cut)
            *cut = '\0';
        else
            buf[0] = '\0';
    }
}

/* Turn problems with JSON paths inside a YAML document into file:line:col. */
static void add_positioned(diag *out, const char *file, const yamldoc *y, const diag *in)
{
    diag fd;
    diag_init(&fd, file);
    for (size_t i = 0; i < in->count; i++) {
        const cJSON *node = nearest_node(yamldoc_root(y), in->items[i].path);
        int line = 1, col = 1;
        if (node)
            yamldoc_pos(y, node, &line, &col);
        diag_add_at(&fd, line, col, "%s: %s", in->items[i].path, in->items[i].reason);
    }
    for (size_t i = 0; i < fd.count; i++) {
        char *text = diag_format_item(&fd, i);
        diag_add(out, "", "%s", text ? text : "out of memory");
        free(text);
    }
    diag_free(&fd);
}

static void load_trigger_file(const char *file, const trigger_resolver *res, trigger_set *ts,
                              store *st, diag *d)
{
    diag fd;
    diag_init(&fd, file);
    yamldoc *y = yamldoc_load(file, 0, &fd);
    const cJSON *root = y ? yamldoc_root(y) : NULL;
    const cJSON *list = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "triggers")
                                             : root;
    if (y && !fd.count && !cJSON_IsArray(list))
        diag_add_at(&fd, 1, 1, "a trigger file holds a list under 'triggers:'");
    for (size_t i = 0; i < fd.count; i++) {
        char *text = diag_format_item(&fd, i);
        diag_add(d, "", "%s", text ? text : "out of memory");
        free(text);
    }
    if (fd.count || !cJSON_IsArray(list))
        goto out;
    const char *prefix = cJSON_IsObject(root) ? "triggers" : "";
    int i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, list)
    {
        char path[64];
        snprintf(path, sizeof path, "%s[%d]", prefix, i++);
        diag td;
        diag_init(&td, NULL);
        trigger *t = trigger_from_json(item, path, res, &td);
        if (t && trigger_set_add(ts, t) != EVH_OK) {
            diag_add(&td, path, "duplicate trigger id '%s'", t->id);
            trigger_free(t);
            t = NULL;
        }
        if (t) {
            free(t->origin);
            t->origin = strdup(file);
            char *cond = t->conditions_json ? cJSON_PrintUnformatted(t->conditions_json) : NULL;
            if (st)
                store_trigger_put(st, t->id, t->name, t->source, t->event_type, t->workflow_id,
                                  cond, t->enabled, file);
            free(cond);
        }
        add_positioned(d, file, y, &td);
        diag_free(&td);
    }
out:
    yamldoc_free(y);
    diag_free(&fd);
}

/* Triggers in the table: those made through the API, and stale rows of YAML
 * files (deleted here when their file no longer defines them). */
static void load_table_triggers(const pipeline_sources *src, const trigger_resolver *res,
                                trigger_set *ts, store *st, diag *d)
{
    cJSON *rows = st ? store_triggers_list(st) : NULL;
    const cJSON *row;
    cJSON_ArrayForEach(row, rows)
    {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(row, "id"));
        const char *origin = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(row, "origin"));
        if (!id)
            continue;
        if (origin && strcmp(origin, "api") != 0) {
            if (!trigger_set_get(ts, id))
                store_trigger_delete(st, id); /* its YAML file dropped it */
            continue;
        }
        if (trigger_set_get(ts, id)) {
            diag_add(d, "", "workflow_triggers: trigger '%s' from the API has the id of a "
                            "trigger in a YAML file; the file's trigger wins", id);
            continue;
        }
        cJSON *spec = cJSON_CreateObject();
        static const char *const keys[] = {"id", "name", "source", "event_type", "conditions",
                                           "enabled"};
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, keys[k]);
            if (v && !cJSON_IsNull(v))
                cJSON_AddItemToObject(spec, keys[k], cJSON_Duplicate(v, 1));
        }
        const cJSON *wf = cJSON_GetObjectItemCaseSensitive(row, "workflow_id");
        if (wf)
            cJSON_AddItemToObject(spec, "workflow", cJSON_Duplicate(wf, 1));
        const cJSON *en = cJSON_GetObjectItemCaseSensitive(spec, "enabled");
        if (cJSON_IsNumber(en))
            cJSON_ReplaceItemInObject(spec, "enabled", cJSON_CreateBool(en->valueint != 0));
        diag td;
        diag_init(&td, NULL);
        trigger *t = trigger_from_json(spec, "", res, &td);
        if (t) {
            free(t->origin);
            t->origin = strdup("api");
            if (trigger_set_add(ts, t) != EVH_OK)
                trigger_free(t);
        }
        for (size_t i = 0; i < td.count; i++)
            diag_add(d, "", "workflow_triggers: trigger '%s': %s%s%s (skipped)", id,
                     td.items[i].path, td.items[i].path[0] ? ": " : "", td.items[i].reason);
        diag_free(&td);
        cJSON_Delete(spec);
    }
    cJSON_Delete(rows);
    (void)src;
}

int pipeline_load(const pipeline_sources *src, const registry *reg, store *st,
                  workflow_set **ws_out, trigger_set **ts_out, diag *d)
{
    workflow_set *ws = workflow_set_new();
    trigger_set *ts = trigger_set_new();
    if (!ws || !ts) {
        workflow_set_free(ws);
        trigger_set_free(ts);
        return EVH_E_NOMEM;
    }
    /* plugins are read throughout: hot reload (reload.h) waits */
    if (reg)
        registry_rdlock(reg);
    for (size_t i = 0; i < src->n_workflow_dirs; i++)
        workflow_load_dir(ws, src->workflow_dirs[i], reg, src->rt, d);
    /* a workflow's on_error must name a loaded workflow */
    for (size_t i = 0; i < ws->count; i++) {
        const workflow *w = ws->items[i];
        if (w->on_error && !workflow_set_get(ws, w->on_error))
            diag_add(d, "", "%s: on_error: workflow '%s' is not loaded; failures of '%s' run "
                            "no error workflow", w->file, w->on_error, w->id);
    }
    pipeline_resolver_ctx rc = {.reg = reg, .ws = ws};
    trigger_resolver res = pipeline_resolver(&rc);
    for (size_t i = 0; i < src->n_trigger_files; i++)
        load_trigger_file(src->trigger_files[i], &res, ts, st, d);
    load_table_triggers(src, &res, ts, st, d);
    if (reg)
        registry_unlock(reg);
    *ws_out = ws;
    *ts_out = ts;
    return EVH_OK;
}

int pipeline_reload(void *ud, diag *out)
{
    pipeline_reloader *rl = ud;
    workflow_set *ws = NULL;
    trigger_set *ts = NULL;
    diag d;
    diag_init(&d, NULL);
    pthread_mutex_lock(&rl->lock);
    int rc = pipeline_load(rl->src, rl->r, rl->st, &ws, &ts, &d);
    pthread_mutex_unlock(&rl->lock);
    if (rc != EVH_OK) {
        log_error("pipeline", "out of memory loading workflows and triggers");
        diag_free(&d);
        return rc;
    }
    for (size_t i = 0; i < d.count; i++) {
        char *line = diag_format_item(&d, i);
        log_warn("pipeline", "%s", line ? line : "out of memory");
        free(line);
    }
    if (d.dropped)
        log_warn("pipeline", "... and %zu more problem(s)", d.dropped);
    log_info("pipeline", "%zu workflow(s) and %zu trigger(s) in force%s", ws->count,
             trigger_set_count(ts), d.count ? " (problems above were skipped)" : "");
    if (out)
        diag_merge(out, &d, NULL);
    diag_free(&d);
    engine_set_config(rl->e, ws, ts);
    return EVH_OK;
}
