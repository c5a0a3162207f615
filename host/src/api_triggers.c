/*
 * api_triggers.c - triggers CRUD, dry run; workflows.
 *
 * The triggers in force live in the engine's configuration (engine.h);
 * those made through the API are rows of the workflow_triggers table with
 * origin 'api', and every change here is: validate exactly as a YAML trigger
 * is validated (trigger_from_json with pipeline_resolver over the registry
 * and the workflows in force), write the row, reload (api->reload, what
 * SIGHUP does, serialized by the reloader's lock), answer from what is then
 * in force.  Triggers from YAML files are read-only here: they belong to
 * their file.
 *
 * Concurrency.  Two POSTs of one id: both may pass the "is it taken?" check,
 * but the row is inserted without an upsert, so the table's primary key lets
 * exactly one in; the other gets 409.  What remains racy (documented in
 * docs/API.md): a YAML file that gains the same id and is reloaded at the
 * same moment wins over the API trigger (the reload rewrites the row with
 * the file as origin), and a request validated against the workflows in
 * force may be stored just as a reload removes its workflow; it is then
 * stored but not in force, and the answer says so (in_force: false with the
 * problems).
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evhost/evhost.h>

#include "event.h"
#include "evh_limits.h"
#include "jsonutil.h"
#include "log.h"
#include "pipeline.h"
#include "triggers.h"
#include "workflow.h"

/* What a redacted configuration value is replaced with. */
#define REDACTED "***"

/* ---- small helpers --------------------------------------------------------- */

static const char *jstr(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

/* base + "." + key, or key alone at the top (into buf). */
static const char *at(char *buf, size_t n, const char *base, const char *key)
{
    snprintf(buf, n, "%s%s%s", base, base[0] ? "." : "", key);
    return buf;
}

static int is_api_origin(const char *origin)
{
    return !origin || !strcmp(origin, "api");
}

/* The workflows and triggers in force, borrowed for one request, and the
 * resolver that validates triggers against them.  Not to be copied (res
 * points into it). */
typedef struct cfg_view {
    api_ctx *a;
    void *token;
    const workflow_set *ws;
    const trigger_set *ts;
    pipeline_resolver_ctx rc;
    trigger_resolver res;
} cfg_view;

static void cfg_open(cfg_view *v, api_ctx *a)
{
    v->a = a;
    v->token = engine_config_acquire(a->eng, &v->ws, &v->ts);
    if (a->reg) /* the resolver reads plugins: hot reload waits until cfg_close */
        registry_rdlock(a->reg);
    v->rc = (pipeline_resolver_ctx){.reg = a->reg, .ws = v->ws};
    v->res = pipeline_resolver(&v->rc);
}

static void cfg_close(cfg_view *v)
{
    if (v->token) {
        engine_config_release(v->a->eng, v->token);
        if (v->a->reg)
            registry_unlock(v->a->reg);
    }
    v->token = NULL;
    v->ws = NULL;
    v->ts = NULL;
}

static cJSON *diag_to_json(const diag *d)
{
    cJSON *list = cJSON_CreateArray();
    for (size_t i = 0; list && i < d->count; i++) {
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "path", d->items[i].path);
        cJSON_AddStringToObject(item, "reason", d->items[i].reason);
        cJSON_AddItemToArray(list, item);
    }
    return list;
}

/* ---- triggers as JSON ------------------------------------------------------- */

/* A table row ({id, name, source, event_type, workflow_id, conditions,
 * enabled, origin, ...}) as a trigger spec, the way pipeline.c reads it. */
static cJSON *row_spec(const cJSON *row)
{
    static const char *const keys[] = {"id",         "name",       "source",
                                       "event_type", "conditions", "enabled"};
    cJSON *spec = cJSON_CreateObject();
    for (size_t k = 0; spec && k < sizeof keys / sizeof *keys; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, keys[k]);
        if (v && !cJSON_IsNull(v))
            cJSON_AddItemToObject(spec, keys[k], cJSON_Duplicate(v, 1));
    }
    const cJSON *wf = cJSON_GetObjectItemCaseSensitive(row, "workflow_id");
    if (spec && wf)
        cJSON_AddItemToObject(spec, "workflow", cJSON_Duplicate(wf, 1));
    return spec;
}

static void add_copy_or_null(cJSON *o, const char *key, const cJSON *from)
{
    const cJSON *v = from ? cJSON_GetObjectItemCaseSensitive(from, key) : NULL;
    cJSON_AddItemToObject(o, key, v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
}

/* A trigger in force: trigger_to_json plus its row's timestamps. */
static cJSON *force_view(const trigger *t, const cJSON *row)
{
    cJSON *o = trigger_to_json(t);
    if (!o)
        return NULL;
    add_copy_or_null(o, "created_at", row);
    add_copy_or_null(o, "updated_at", row);
    cJSON_AddTrueToObject(o, "in_force");
    return o;
}

/* A row that is not in force (its source, event type or workflow went away,
 * or it is being reloaded): the same shape, plus why it does not load now. */
static cJSON *row_view(const cJSON *row, const trigger_resolver *res)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    add_copy_or_null(o, "id", row);
    add_copy_or_null(o, "name", row);
    cJSON_AddNullToObject(o, "description");
    add_copy_or_null(o, "source", row);
    add_copy_or_null(o, "event_type", row);
    const cJSON *wf = cJSON_GetObjectItemCaseSensitive(row, "workflow_id");
    cJSON_AddItemToObject(o, "workflow", wf ? cJSON_Duplicate(wf, 1) : cJSON_CreateNull());
    add_copy_or_null(o, "conditions", row);
    add_copy_or_null(o, "enabled", row);
    add_copy_or_null(o, "origin", row);
    add_copy_or_null(o, "created_at", row);
    add_copy_or_null(o, "updated_at", row);
    cJSON_AddFalseToObject(o, "in_force");
    cJSON *spec = row_spec(row);
    diag d;
    diag_init(&d, NULL);
    trigger_free(trigger_from_json(spec, "", res, &d));
    cJSON_AddItemToObject(o, "problems", diag_to_json(&d));
    diag_free(&d);
    cJSON_Delete(spec);
    return o;
}

/* The row of trigger id into *row (NULL when there is none); -1 after
 * answering 500 when the database failed. */
static int get_row(store *st, const char *id, cJSON **row, http_response *res)
{
    *row = store_trigger_get(st, id);
    if (!*row && store_errmsg(st)[0]) {
        api_respond_store_error(res, st, "reading the trigger");
        return -1;
    }
    return 0;
}

/* The trigger as the API shows it: in force, else its row; NULL when
 * neither exists. */
static cJSON *trigger_view(const cfg_view *v, const cJSON *row, const char *id)
{
    const trigger *t = trigger_set_get(v->ts, id);
    if (t)
        return force_view(t, row);
    return row ? row_view(row, &v->res) : NULL;
}

/* ---- request bodies ---------------------------------------------------------- */

/*
 * Take out the read-only fields a client may send back from a GET
 * (created_at, updated_at, in_force, problems; origin when it says "api"),
 * so that GET -> edit -> PUT works.  Anything else is for trigger_from_json
 * to judge, exactly as in a YAML file.  storing: the spec is to be written
 * to the table, which has no column for a description.
 */
static void strip_read_only(cJSON *spec, const char *base, int storing, diag *d)
{
    static const char *const ro[] = {"created_at", "updated_at", "in_force", "problems"};
    char p[256];
    if (!cJSON_IsObject(spec))
        return;
    for (size_t i = 0; i < sizeof ro / sizeof *ro; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(spec, ro[i]);
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(spec, "origin");
    if (o && !cJSON_IsNull(o) && !(cJSON_IsString(o) && !strcmp(o->valuestring, "api")))
        diag_add(d, at(p, sizeof p, base, "origin"),
                 "read-only: a trigger made through the API has origin 'api' (triggers of "
                 "a YAML file are managed in that file)");
    cJSON_DeleteItemFromObjectCaseSensitive(spec, "origin");
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(spec, "description");
    if (storing && cJSON_IsString(desc) && desc->valuestring[0])
        diag_add(d, at(p, sizeof p, base, "description"),
                 "triggers made through the API cannot keep a description (the "
                 "workflow_triggers table has no column for it); leave it out or put the "
                 "trigger in a YAML file");
}

/* name -> "daily-report": lowercase letters and digits, runs of anything
 * else as one '-', at most n - 1 bytes; "" when nothing is left. */
static void kebab(const char *name, char *out, size_t n)
{
    size_t len = 0;
    int dash = 0;
    for (const char *p = name ? name : ""; *p && len + 1 < n; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')) {
            if (dash && len && len + 2 < n)
                out[len++] = '-';
            dash = 0;
            out[len++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        } else {
            dash = 1;
        }
    }
    out[len] = '\0';
}

/* A readable new id: the name in kebab-case and 6 random hex digits
 * ("daily-report-3f9a1c"); "trigger-3f9a1c" without a usable name. */
static int new_id(const cJSON *spec, char *out, size_t n)
{
    char base[49], u[EVH_UUID_LEN + 1];
    kebab(jstr(spec, "name"), base, sizeof base);
    if (uuid_v4(u) != EVH_OK)
        return -1;
    snprintf(out, n, "%s-%.6s", base[0] ? base : "trigger", u);
    return 0;
}

/* Validate spec (already stripped) as a YAML trigger: NULL with problems
 * in d (including those d held before). */
static trigger *validate(const cfg_view *v, const cJSON *spec, const char *base, diag *d)
{
    trigger *t = trigger_from_json(spec, base, &v->res, d);
    if (d->count || d->dropped) {
        trigger_free(t);
        return NULL;
    }
    return t;
}

/* The conditions of t as compact JSON text (malloc) or NULL; *ok = 0 when
 * out of memory. */
static char *conditions_text(const trigger *t, int *ok)
{
    char *text = t->conditions_json ? json_print_compact(t->conditions_json) : NULL;
    *ok = !t->conditions_json || text;
    return text;
}

/* After a change: reload (problems of other triggers and files are logged
 * by the reloader), then answer with the trigger as it now is. */
static void answer_after_change(api_ctx *a, store *st, const char *id, int status,
                                http_response *res)
{
    if (!a->reload)
        log_warn("api",
                 "trigger '%s' stored, but there is no reloader: it takes effect at the "
                 "next start",
                 id);
    else if (a->reload(a->reload_ud, NULL) != EVH_OK) {
        http_respond_error(res, 500, "internal", NULL,
                           "trigger '%s' was stored, but reloading the triggers failed (out of "
                           "memory); it takes effect at the next reload",
                           id);
        return;
    }
    cJSON *row = NULL;
    if (get_row(st, id, &row, res) < 0)
        return;
    cfg_view v;
    cfg_open(&v, a);
    cJSON *view = trigger_view(&v, row, id);
    cfg_close(&v);
    cJSON_Delete(row);
    if (!view) {
        http_respond_error(res, 409, "conflict", NULL,
                           "trigger '%s' was stored, but another request deleted it meanwhile", id);
        return;
    }
    http_respond_json(res, status, view);
    if (status == 201) {
        char loc[EVH_ID_MAX_LEN + 32];
        snprintf(loc, sizeof loc, "/api/triggers/%s", id);
        http_response_header(res, "Location", loc);
    }
}

/* The trigger named in the path, checked to be one the API may change:
 * 404 when unknown, 409 when it belongs to a YAML file.  *row_out (may be
 * NULL) receives its row (NULL when it has none).  0 when it may be changed,
 * -1 after answering. */
static int changeable(const cfg_view *v, store *st, const char *id, cJSON **row_out,
                      http_response *res)
{
    cJSON *row = NULL;
    if (get_row(st, id, &row, res) < 0)
        return -1;
    const trigger *t = trigger_set_get(v->ts, id);
    if (!t && !row) {
        http_respond_error(res, 404, "not_found", NULL, "no trigger '%s'", id);
        return -1;
    }
    const char *origin = t ? t->origin : jstr(row, "origin");
    if (!is_api_origin(origin)) {
        http_respond_error(res, 409, "conflict", NULL,
                           "trigger '%s' is defined in %s: change or delete it in that file (and "
                           "reload); the API manages only the triggers it created",
                           id, origin);
        cJSON_Delete(row);
        return -1;
    }
    if (row_out)
        *row_out = row;
    else
        cJSON_Delete(row);
    return 0;
}

/* ---- GET /api/triggers ---------------------------------------------------------- */

/* The table's rows by id, to join the triggers in force with their
 * timestamps without a quadratic search. */
typedef struct row_ref {
    const char *id;
    const cJSON *row;
} row_ref;

static int cmp_row_ref(const void *x, const void *y)
{
    return strcmp(((const row_ref *)x)->id, ((const row_ref *)y)->id);
}

static const cJSON *find_row(const row_ref *index, size_t n, const char *id)
{
    row_ref key = {id, NULL};
    const row_ref *hit = bsearch(&key, index, n, sizeof *index, cmp_row_ref);
    return hit ? hit->row : NULL;
}

static int keep(const char *want, const char *have)
{
    return !want || (have && !strcmp(want, have));
}

static void list_triggers(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    const char *f_source = http_query(req, "source");
    const char *f_type = http_query(req, "event_type");
    const char *f_wf = http_query(req, "workflow");
    store *st = api_store_acquire(a, res);
    if (!st)
        return;
    cJSON *rows = store_triggers_list(st);
    if (!rows) {
        api_respond_store_error(res, st, "listing triggers");
        api_store_release(a, st);
        return;
    }
    api_store_release(a, st);
    size_t n_rows = (size_t)cJSON_GetArraySize(rows), n = 0;
    row_ref *index = calloc(n_rows ? n_rows : 1, sizeof *index);
    cJSON *items = cJSON_CreateArray();
    if (!index || !items) {
        free(index);
        cJSON_Delete(items);
        cJSON_Delete(rows);
        http_respond_error(res, 500, "internal", NULL, "out of memory");
        return;
    }
    const cJSON *row;
    cJSON_ArrayForEach(row, rows)
    {
        if (jstr(row, "id"))
            index[n++] = (row_ref){jstr(row, "id"), row};
    }
    qsort(index, n, sizeof *index, cmp_row_ref);

    cfg_view v;
    cfg_open(&v, a);
    /* in force first, in the order they load (YAML files, then the table) */
    for (size_t i = 0; i < trigger_set_count(v.ts); i++) {
        const trigger *t = trigger_set_at(v.ts, i);
        if (keep(f_source, t->source) && keep(f_type, t->event_type) && keep(f_wf, t->workflow_id))
            cJSON_AddItemToArray(items, force_view(t, find_row(index, n, t->id)));
    }
    /* then the stored ones that are not in force, oldest first */
    cJSON_ArrayForEach(row, rows)
    {
        const char *id = jstr(row, "id");
        if (id && !trigger_set_get(v.ts, id) && keep(f_source, jstr(row, "source")) &&
            keep(f_type, jstr(row, "event_type")) && keep(f_wf, jstr(row, "workflow_id")))
            cJSON_AddItemToArray(items, row_view(row, &v.res));
    }
    cfg_close(&v);
    free(index);
    cJSON_Delete(rows);
    api_respond_page(res, items, NULL);
}

/* ---- GET /api/triggers/{id} ------------------------------------------------------- */

static void get_trigger(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    const char *id = http_param(req, "id");
    store *st = api_store_acquire(a, res);
    if (!st)
        return;
    cJSON *row = NULL;
    int rc = get_row(st, id, &row, res);
    api_store_release(a, st);
    if (rc < 0)
        return;
    cfg_view v;
    cfg_open(&v, a);
    cJSON *view = trigger_view(&v, row, id);
    cfg_close(&v);
    cJSON_Delete(row);
    if (!view)
        http_respond_error(res, 404, "not_found", NULL, "no trigger '%s'", id);
    else
        http_respond_json(res, 200, view);
}

/* ---- POST /api/triggers ---------------------------------------------------------- */

static void create_trigger(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    cJSON *spec = api_body_object(req, res, 0);
    if (!spec)
        return;
    diag d;
    diag_init(&d, NULL);
    trigger *t = NULL;
    char *cond = NULL;
    char id[EVH_ID_MAX_LEN + 1];
    strip_read_only(spec, "", 1, &d);
    const cJSON *idj = cJSON_GetObjectItemCaseSensitive(spec, "id");
    int generated = !idj || cJSON_IsNull(idj);
    if (generated) {
        if (new_id(spec, id, sizeof id) < 0) {
            http_respond_error(res, 500, "internal", NULL, "the random generator failed");
            goto out;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(spec, "id");
        cJSON_AddStringToObject(spec, "id", id);
    }
    store *st = api_store_acquire(a, res);
    if (!st)
        goto out;
    cfg_view v;
    cfg_open(&v, a);
    t = validate(&v, spec, "", &d);
    if (!t) {
        cfg_close(&v);
        api_store_release(a, st);
        api_respond_invalid(res, &d, "the trigger");
        goto out;
    }
    int ok;
    cond = conditions_text(t, &ok);
    int rc = ok ? EVH_OK : EVH_E_NOMEM;
    for (int attempt = 0; rc == EVH_OK; attempt++) {
        /* taken: in force (a YAML trigger whose row could not be written
         * counts too) or in the table; the insert itself is the last word */
        cJSON *row = NULL;
        if (get_row(st, t->id, &row, res) < 0) {
            rc = EVH_E_IO; /* answered */
            break;
        }
        int taken = row || trigger_set_get(v.ts, t->id);
        cJSON_Delete(row);
        if (!taken) {
            rc = store_trigger_insert(st, t->id, t->name, t->source, t->event_type, t->workflow_id,
                                      cond, t->enabled, NULL);
            if (rc != EVH_E_DUPLICATE)
                break;
            rc = EVH_OK;
        }
        if (!generated || attempt == 4) {
            const trigger *other = trigger_set_get(v.ts, t->id);
            http_respond_error(res, 409, "conflict", NULL, "a trigger with id '%s' exists%s%s",
                               t->id, other && !is_api_origin(other->origin) ? " in " : "",
                               other && !is_api_origin(other->origin) ? other->origin : "");
            rc = EVH_E_DUPLICATE;
            break;
        }
        /* a generated id met another: draw again */
        char *fresh = NULL;
        if (new_id(spec, id, sizeof id) < 0 || !(fresh = strdup(id))) {
            rc = EVH_E_NOMEM;
            break;
        }
        free(t->id);
        t->id = fresh;
    }
    cfg_close(&v);
    if (rc == EVH_OK) {
        snprintf(id, sizeof id, "%s", t->id);
        answer_after_change(a, st, id, 201, res);
    } else if (rc == EVH_E_NOMEM) {
        http_respond_error(res, 500, "internal", NULL, "out of memory");
    } else if (rc != EVH_E_DUPLICATE && !res->status) {
        api_respond_store_error(res, st, "storing the trigger");
    }
    api_store_release(a, st);
out:
    free(cond);
    trigger_free(t);
    diag_free(&d);
    cJSON_Delete(spec);
}

/* ---- PUT / PATCH /api/triggers/{id} ------------------------------------------------- */

/* RFC 7396 at the top level: each key of patch replaces the spec's, null
 * removes it (so {"conditions": null} drops the conditions). */
static void merge_into(cJSON *spec, const cJSON *patch)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, patch)
    {
        cJSON_DeleteItemFromObjectCaseSensitive(spec, item->string);
        if (!cJSON_IsNull(item))
            cJSON_AddItemToObject(spec, item->string, cJSON_Duplicate(item, 1));
    }
}

/* The current definition of an API trigger as a spec: its row (what is
 * stored), else the trigger in force. */
static cJSON *current_spec(const cfg_view *v, const cJSON *row, const char *id)
{
    if (row)
        return row_spec(row);
    cJSON *spec = trigger_to_json(trigger_set_get(v->ts, id));
    cJSON_DeleteItemFromObjectCaseSensitive(spec, "origin");
    return spec;
}

static void change_trigger(api_ctx *a, const http_request *req, http_response *res, int merge)
{
    const char *id = http_param(req, "id");
    cJSON *body = api_body_object(req, res, 0);
    if (!body)
        return;
    store *st = api_store_acquire(a, res);
    if (!st) {
        cJSON_Delete(body);
        return;
    }
    diag d;
    diag_init(&d, NULL);
    cJSON *row = NULL, *spec = NULL;
    trigger *t = NULL;
    char *cond = NULL;
    cfg_view v;
    cfg_open(&v, a);
    if (changeable(&v, st, id, &row, res) < 0)
        goto out;
    const cJSON *idj = cJSON_GetObjectItemCaseSensitive(body, "id");
    if (idj && !cJSON_IsNull(idj) && !(cJSON_IsString(idj) && !strcmp(idj->valuestring, id)))
        diag_add(&d, "id",
                 "must be '%s' (the id in the path) or left out: a trigger cannot be "
                 "renamed; create a new one and delete this one",
                 id);
    cJSON_DeleteItemFromObjectCaseSensitive(body, "id");
    if (merge) {
        spec = current_spec(&v, row, id);
        if (spec)
            merge_into(spec, body);
    } else {
        spec = cJSON_Duplicate(body, 1);
    }
    if (!spec) {
        http_respond_error(res, 500, "internal", NULL, "out of memory");
        goto out;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(spec, "id");
    cJSON_AddStringToObject(spec, "id", id);
    strip_read_only(spec, "", 1, &d);
    t = validate(&v, spec, "", &d);
    if (!t) {
        api_respond_invalid(res, &d, "the trigger");
        goto out;
    }
    int ok;
    cond = conditions_text(t, &ok);
    int rc = ok ? store_trigger_update_api(st, id, t->name, t->source, t->event_type,
                                           t->workflow_id, cond, t->enabled)
                : EVH_E_NOMEM;
    cfg_close(&v);
    if (rc == EVH_OK)
        answer_after_change(a, st, id, 200, res);
    else if (rc == EVH_E_NOT_FOUND)
        http_respond_error(res, 404, "not_found", NULL,
                           "no trigger '%s' made through the API any more (deleted meanwhile)", id);
    else if (rc == EVH_E_NOMEM)
        http_respond_error(res, 500, "internal", NULL, "out of memory");
    else
        api_respond_store_error(res, st, "storing the trigger");
out:
    cfg_close(&v);
    api_store_release(a, st);
    free(cond);
    trigger_free(t);
    cJSON_Delete(spec);
    cJSON_Delete(row);
    cJSON_Delete(body);
    diag_free(&d);
}

static void put_trigger(void *ctx, const http_request *req, http_response *res)
{
    change_trigger(ctx, req, res, 0);
}

static void patch_trigger(void *ctx, const http_request *req, http_response *res)
{
    change_trigger(ctx, req, res, 1);
}

/* ---- DELETE /api/triggers/{id} -------------------------------------------------------- */

static void delete_trigger(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    const char *id = http_param(req, "id");
    store *st = api_store_acquire(a, res);
    if (!st)
        return;
    cfg_view v;
    cfg_open(&v, a);
    int rc = changeable(&v, st, id, NULL, res);
    cfg_close(&v);
    if (rc == 0) {
        rc = store_trigger_delete(st, id);
        if (rc == EVH_E_NOT_FOUND) {
            http_respond_error(res, 404, "not_found", NULL, "no trigger '%s'", id);
        } else if (rc != EVH_OK) {
            api_respond_store_error(res, st, "deleting the trigger");
        } else {
            if (a->reload && a->reload(a->reload_ud, NULL) != EVH_OK)
                log_error("api",
                          "trigger '%s' deleted, but reloading failed; it stays in force "
                          "until the next reload",
                          id);
            http_respond_json(res, 204, NULL);
        }
    }
    api_store_release(a, st);
}

/* ---- dry run ---------------------------------------------------------------------- */

/*
 * The envelope to test with, from the request's {event_type, source, data,
 * metadata, id}: source and event_type default to the trigger's (so that
 * {"data": {...}} tests the conditions alone), data to {}, metadata to what
 * a real event carries ({source, timestamp: now, user_id: null,
 * additional_data: {}}; missing keys of a given metadata are filled the same
 * way).  Problems go to d with paths below base.
 */
static cJSON *build_envelope(const cJSON *ev, const char *def_source, const char *def_type,
                             const char *base, diag *d)
{
    static const char *const keys[] = {"id", "event_type", "source", "data", "metadata"};
    char p[256];
    if (!cJSON_IsObject(ev)) {
        diag_add(d, base,
                 "the event must be an object {event_type, source, data, metadata}, "
                 "got %s",
                 ev ? json_type_name(ev) : "nothing");
        return NULL;
    }
    size_t before = d->count;
    const cJSON *item;
    cJSON_ArrayForEach(item, ev)
    {
        size_t k = 0;
        while (k < sizeof keys / sizeof *keys && strcmp(keys[k], item->string))
            k++;
        if (k == sizeof keys / sizeof *keys)
            diag_add(d, at(p, sizeof p, base, item->string),
                     "unknown key (an event has id, event_type, source, data, metadata)");
        else if (k < 3 && !cJSON_IsString(item))
            diag_add(d, at(p, sizeof p, base, item->string), "must be a string, got %s",
                     json_type_name(item));
        else if (k >= 3 && !cJSON_IsObject(item))
            diag_add(d, at(p, sizeof p, base, item->string), "must be an object, got %s",
                     json_type_name(item));
    }
    if (d->count > before)
        return NULL;
    cJSON *out = cJSON_CreateObject();
    char uuid[EVH_UUID_LEN + 1], now[EVH_TIMESTAMP_LEN + 1];
    const char *id = jstr(ev, "id");
    if (!id && uuid_v4(uuid) == EVH_OK)
        id = uuid;
    const char *type = jstr(ev, "event_type") ? jstr(ev, "event_type") : def_type;
    const char *source = jstr(ev, "source") ? jstr(ev, "source") : def_source;
    if (id)
        cJSON_AddStringToObject(out, "id", id);
    if (type)
        cJSON_AddStringToObject(out, "event_type", type);
    if (source)
        cJSON_AddStringToObject(out, "source", source);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(ev, "data");
    cJSON_AddItemToObject(out, "data", data ? cJSON_Duplicate(data, 1) : cJSON_CreateObject());
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(ev, "metadata");
    cJSON *m = meta ? cJSON_Duplicate(meta, 1) : cJSON_CreateObject();
    if (m && !cJSON_HasObjectItem(m, "source"))
        cJSON_AddItemToObject(m, "source",
                              source ? cJSON_CreateString(source) : cJSON_CreateNull());
    if (m && !cJSON_HasObjectItem(m, "timestamp")) {
        rfc3339_now(now);
        cJSON_AddStringToObject(m, "timestamp", now);
    }
    if (m && !cJSON_HasObjectItem(m, "user_id"))
        cJSON_AddNullToObject(m, "user_id");
    if (m && !cJSON_HasObjectItem(m, "additional_data"))
        cJSON_AddObjectToObject(m, "additional_data");
    cJSON_AddItemToObject(out, "metadata", m);
    return out;
}

/* 200 {trigger_explain..., would_run, event}. */
static void respond_explain(http_response *res, const trigger *t, cJSON *envelope)
{
    cJSON *out = trigger_explain(t, envelope);
    if (!out) {
        cJSON_Delete(envelope);
        http_respond_error(res, 500, "internal", NULL, "out of memory");
        return;
    }
    int matched = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(out, "matched"));
    cJSON_AddBoolToObject(out, "would_run", matched && t->enabled);
    cJSON_AddItemToObject(out, "event", envelope);
    http_respond_json(res, 200, out);
}

/* POST /api/triggers/{id}/test: body = the event, or {"event": {...}}. */
static void test_trigger(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    const char *id = http_param(req, "id");
    cJSON *body = api_body_object(req, res, 0);
    if (!body)
        return;
    store *st = api_store_acquire(a, res);
    if (!st) {
        cJSON_Delete(body);
        return;
    }
    diag d;
    diag_init(&d, NULL);
    cJSON *row = NULL, *spec = NULL;
    trigger *compiled = NULL;
    cfg_view v;
    cfg_open(&v, a);
    const trigger *t = trigger_set_get(v.ts, id);
    if (!t) {
        /* stored but not in force: test it as it would load now */
        if (get_row(st, id, &row, res) < 0)
            goto out;
        if (!row) {
            http_respond_error(res, 404, "not_found", NULL, "no trigger '%s'", id);
            goto out;
        }
        spec = row_spec(row);
        if (!(t = compiled = trigger_from_json(spec, "", &v.res, &d))) {
            http_respond_error(res, 409, "conflict", &d,
                               "trigger '%s' is stored but not in force: it does not validate "
                               "against the loaded plugins and workflows (see details)",
                               id);
            goto out;
        }
    }
    const cJSON *wrapped = cJSON_GetObjectItemCaseSensitive(body, "event");
    const cJSON *ev = body;
    const char *base = "";
    if (wrapped) {
        const cJSON *item;
        cJSON_ArrayForEach(item, body)
        {
            if (strcmp(item->string, "event"))
                diag_add(&d, item->string,
                         "unknown key: send the event itself, or {\"event\": {...}} alone");
        }
        ev = wrapped;
        base = "event";
    }
    cJSON *envelope = build_envelope(ev, t->source, t->event_type, base, &d);
    if (d.count) {
        cJSON_Delete(envelope);
        api_respond_invalid(res, &d, "the event");
        goto out;
    }
    respond_explain(res, t, envelope);
out:
    cfg_close(&v);
    api_store_release(a, st);
    trigger_free(compiled);
    cJSON_Delete(spec);
    cJSON_Delete(row);
    cJSON_Delete(body);
    diag_free(&d);
}

/* POST /api/triggers/test: {"trigger": {spec}, "event": {...}}, a trigger
 * not saved yet.  Its id may be left out ("draft"). */
static void test_draft(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    cJSON *body = api_body_object(req, res, 0);
    if (!body)
        return;
    diag d;
    diag_init(&d, NULL);
    const cJSON *item;
    cJSON_ArrayForEach(item, body)
    {
        if (strcmp(item->string, "trigger") && strcmp(item->string, "event"))
            diag_add(&d, item->string, "unknown key (send {\"trigger\": {...}, \"event\": {...}})");
    }
    const cJSON *tj = cJSON_GetObjectItemCaseSensitive(body, "trigger");
    cJSON *spec = NULL;
    if (!tj)
        diag_add(&d, "trigger", "required: the trigger to test, as it would be created");
    else if (cJSON_IsObject(tj) && (spec = cJSON_Duplicate(tj, 1)) &&
             !cJSON_GetObjectItemCaseSensitive(spec, "id"))
        cJSON_AddStringToObject(spec, "id", "draft");
    if (spec)
        strip_read_only(spec, "trigger", 0, &d);
    cfg_view v;
    cfg_open(&v, a);
    trigger *t = NULL;
    if (tj) /* a non-object is reported by trigger_from_json */
        t = trigger_from_json(spec ? spec : tj, "trigger", &v.res, &d);
    cfg_close(&v); /* t owns copies of everything: the config is not needed */
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(body, "event");
    cJSON *envelope = NULL;
    if (!ev)
        diag_add(&d, "event",
                 "required: the event to test with {event_type, source, data, "
                 "metadata}");
    else
        envelope = build_envelope(ev, jstr(spec, "source"), jstr(spec, "event_type"), "event", &d);
    if (d.count || !t) {
        cJSON_Delete(envelope);
        api_respond_invalid(res, &d, "the request");
    } else {
        respond_explain(res, t, envelope);
    }
    trigger_free(t);
    cJSON_Delete(spec);
    cJSON_Delete(body);
    diag_free(&d);
}

/* ---- workflows ---------------------------------------------------------------------- */

/* A configuration key that names a secret: secret, token, password,
 * authorization, apikey / api_key / api-key, in any case, anywhere in it. */
static int secret_key(const char *key)
{
    static const char *const words[] = {"secret", "token",   "password", "authorization",
                                        "apikey", "api_key", "api-key"};
    for (size_t i = 0; key && i < sizeof words / sizeof *words; i++)
        if (strcasestr(key, words[i]))
            return 1;
    return 0;
}

/*
 * Replace, in a step's config, the value of every key that names a secret
 * (whole, whatever its type) and every string holding "${" (an environment
 * reference: workflow files are not substituted today, so it is the literal
 * "${NAME}", but it would be the secret itself if they were) with "***".
 */
static void redact(cJSON *node, int depth)
{
    cJSON *c = node ? node->child : NULL;
    while (c) {
        cJSON *next = c->next;
        int hide = (cJSON_IsObject(node) && secret_key(c->string)) ||
                   (cJSON_IsString(c) && strstr(c->valuestring, "${")) ||
                   ((cJSON_IsObject(c) || cJSON_IsArray(c)) && depth >= EVH_JSON_MAX_DEPTH);
        if (hide) {
            cJSON *r = cJSON_CreateString(REDACTED);
            if (r) {
                /* the key moves over (ReplaceItemViaPointer keeps none) */
                r->string = c->string;
                r->type |= c->type & cJSON_StringIsConst;
                c->string = NULL;
                cJSON_ReplaceItemViaPointer(node, c, r);
            }
        } else if (cJSON_IsObject(c) || cJSON_IsArray(c)) {
            redact(c, depth + 1);
        }
        c = next;
    }
}

/* workflow_to_json, redacted, plus the ids of the triggers in force that
 * run it (enabled or not). */
static cJSON *workflow_view(const workflow *w, const trigger_set *ts)
{
    cJSON *o = workflow_to_json(w);
    if (!o)
        return NULL;
    const cJSON *step;
    cJSON_ArrayForEach(step, cJSON_GetObjectItemCaseSensitive(o, "steps"))
        redact(cJSON_GetObjectItemCaseSensitive(step, "with"), 1);
    cJSON *ids = cJSON_AddArrayToObject(o, "triggers");
    for (size_t i = 0; ids && i < trigger_set_count(ts); i++) {
        const trigger *t = trigger_set_at(ts, i);
        if (!strcmp(t->workflow_id, w->id))
            cJSON_AddItemToArray(ids, cJSON_CreateString(t->id));
    }
    return o;
}

static void list_workflows(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    (void)req;
    cfg_view v;
    cfg_open(&v, a);
    cJSON *items = cJSON_CreateArray();
    for (size_t i = 0; items && i < v.ws->count; i++)
        cJSON_AddItemToArray(items, workflow_view(v.ws->items[i], v.ts));
    cfg_close(&v);
    if (!items) {
        http_respond_error(res, 500, "internal", NULL, "out of memory");
        return;
    }
    api_respond_page(res, items, NULL);
}

static void get_workflow(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    const char *id = http_param(req, "id");
    cfg_view v;
    cfg_open(&v, a);
    const workflow *w = workflow_set_get(v.ws, id);
    cJSON *o = w ? workflow_view(w, v.ts) : NULL;
    cfg_close(&v);
    if (!w)
        http_respond_error(res, 404, "not_found", NULL, "no workflow '%s'", id);
    else if (!o)
        http_respond_error(res, 500, "internal", NULL, "out of memory");
    else
        http_respond_json(res, 200, o);
}

const http_route api_routes_triggers[] = {
    {"GET", "/api/triggers", list_triggers, 0},
    {"POST", "/api/triggers", create_trigger, 0},
    {"POST", "/api/triggers/test", test_draft, 0},
    {"GET", "/api/triggers/{id}", get_trigger, 0},
    {"PUT", "/api/triggers/{id}", put_trigger, 0},
    {"PATCH", "/api/triggers/{id}", patch_trigger, 0},
    {"DELETE", "/api/triggers/{id}", delete_trigger, 0},
    {"POST", "/api/triggers/{id}/test", test_trigger, 0},
    {"GET", "/api/workflows", list_workflows, 0},
    {"GET", "/api/workflows/{id}", get_workflow, 0},
    {0},
};
