/*
 * workflow.c - workflow YAML files -> the workflow model (see workflow.h).
 *
 * Every problem is reported with its file:line:column and the file is
 * skipped; the other files still load.
 */
#include "workflow.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <evhost/evhost.h>

#include "jsonpath.h"
#include "jsonutil.h"
#include "evh_limits.h"
#include "loader.h"
#include "manifest.h"
#include "schema.h"
#include "template.h"
#include "yamldoc.h"

#define WORKFLOW_MAX_BYTES (4 * 1024 * 1024)
#define WORKFLOW_MAX_STEPS 256
#define RETRY_MAX_LIMIT 100

typedef struct parse_ctx {
    const yamldoc *y;
    const registry *reg;
    runtime *rt; /* for validate callbacks; NULL: none are called */
    diag *d;
    int errors;
} parse_ctx;

static void problem_at(parse_ctx *pc, const cJSON *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem_at(parse_ctx *pc, const cJSON *node, const char *fmt, ...)
{
    int line = 0, col = 0;
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    if (!node || !yamldoc_pos(pc->y, node, &line, &col)) {
        line = 1;
        col = 1;
    }
    diag_add_at(pc->d, line, col, "%s", msg ? msg : "out of memory");
    free(msg);
    pc->errors++;
}

/* A problem with a key itself (reported at the key, not its value). */
static void key_problem(parse_ctx *pc, const cJSON *obj, const char *key, const char *where)
{
    int line = 1, col = 1;
    yamldoc_key_pos(pc->y, obj, key, &line, &col);
    diag_add_at(pc->d, line, col, "unknown key '%s' in %s", key, where);
    pc->errors++;
}

static int is_slug(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > EVH_ID_MAX_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

static void check_keys(parse_ctx *pc, const cJSON *obj, const char *const *allowed,
                       const char *where)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, obj)
    {
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++)
            ok |= !strcmp(item->string, allowed[i]);
        if (!ok)
            key_problem(pc, obj, item->string, where);
    }
}

static const char *get_string(parse_ctx *pc, const cJSON *obj, const char *key, int required,
                              const char *where)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        if (required)
            problem_at(pc, obj, "%s: required key '%s' is missing", where, key);
        return NULL;
    }
    if (!cJSON_IsString(v) || !v->valuestring[0]) {
        problem_at(pc, v, "%s.%s: must be a non-empty string, got %s", where, key,
                   json_type_name(v));
        return NULL;
    }
    return v->valuestring;
}

static uint32_t get_uint(parse_ctx *pc, const cJSON *obj, const char *key, uint32_t dflt,
                         uint32_t max, const char *where)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return dflt;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > max ||
        v->valuedouble != (double)(uint32_t)v->valuedouble) {
        problem_at(pc, v, "%s.%s: must be an integer from 0 to %u", where, key, max);
        return dflt;
    }
    return (uint32_t)v->valuedouble;
}

/* ---- step config against the plugin's configSchema --------------------- */

static int is_templated(const cJSON *node)
{
    return cJSON_IsString(node) && strstr(node->valuestring, "{{") != NULL;
}

/* Templates are resolved per run, so a templated value cannot be checked
 * now; every other problem (missing required keys, wrong literal types,
 * unknown keys) is reported at load, not at the first event. */
static void check_step_config(parse_ctx *pc, const wf_step *st, const cJSON *with_node,
                              const manifest *m, const char *where)
{
    if (!m->config_schema)
        return;
    cJSON *copy = cJSON_Duplicate(st->with, 1);
    diag d;
    diag_init(&d, NULL);
    schema_apply_defaults(m->config_schema, copy);
    schema_validate(m->config_schema, copy, "", &d);
    for (size_t i = 0; i < d.count; i++) {
        const cJSON *node = json_path_get(st->with, d.items[i].path);
        if (node && is_templated(node))
            continue;
        /* st->with is a copy: positions live on the YAML document's nodes */
        const cJSON *at = cJSON_IsObject(with_node) ? json_path_get(with_node, d.items[i].path)
                                                    : NULL;
        problem_at(pc, at ? at : with_node, "%s.with%s%s: %s (configSchema of '%s')", where,
                   d.items[i].path[0] ? "." : "", d.items[i].path, d.items[i].reason, m->id);
    }
    diag_free(&d);
    cJSON_Delete(copy);
}

/* What the plugin itself checks (its validate callback, SDK 1.2): a root
 * folder that does not exist, SQL that does not compile.  Called only on a
 * config that passed the schema, so the plugin sees what init would. */
static void validate_step(parse_ctx *pc, const wf_step *st, const cJSON *with_node,
                          const plugin *p, const char *where)
{
    char *config = cJSON_PrintUnformatted(st->with);
    char *field = NULL, *why = NULL;
    int rc = config ? loader_step_validate(p, pc->rt, config, &field, &why) : EVH_E_NOMEM;
    free(config);
    if (rc != EVH_OK) {
        const cJSON *at = field && cJSON_IsObject(with_node) ? json_path_get(with_node, field)
                                                              : NULL;
        problem_at(pc, at ? at : with_node, "%s.with%s%s: %s", where, field ? "." : "",
                   field ? field : "", why ? why : evh_status_message(rc));
    }
    free(field);
    free(why);
}

typedef struct step_lookup {
    const workflow *wf;
    size_t current;
} step_lookup;

static int step_known(void *ud, const char *step_id)
{
    const step_lookup *sl = ud;
    for (size_t i = 0; i < sl->wf->n_steps; i++) {
        /* a step that is no mapping has no id (its problem is reported) */
        if (sl->wf->steps[i].id && !strcmp(sl->wf->steps[i].id, step_id))
            return i < sl->current ? 1 : -1;
    }
    return 0;
}

static const char *const step_keys[] = {"id",    "uses",     "with", "timeout_ms",
                                        "retry", "on_error", "name", NULL};

static void parse_step(parse_ctx *pc, workflow *wf, size_t i, const cJSON *node)
{
    char where[64];
    snprintf(where, sizeof where, "steps[%zu]", i);
    wf_step *st = &wf->steps[i];
    st->with = cJSON_CreateObject();
    if (!cJSON_IsObject(node)) {
        problem_at(pc, node, "%s: must be a mapping with id and uses", where);
        return;
    }
    check_keys(pc, node, step_keys, where);
    int line = 0, col = 0;
    yamldoc_pos(pc->y, node, &line, &col);
    st->line = line;
    const char *id = get_string(pc, node, "id", 1, where);
    if (id && !is_slug(id))
        problem_at(pc, cJSON_GetObjectItemCaseSensitive(node, "id"),
                   "%s.id: '%s' may only hold letters, digits, '-', '_' and '.'", where, id);
    for (size_t j = 0; id && j < i; j++) {
        if (wf->steps[j].id && !strcmp(wf->steps[j].id, id))
            problem_at(pc, cJSON_GetObjectItemCaseSensitive(node, "id"),
                       "%s.id: duplicate step id '%s' (also steps[%zu], line %d)", where, id, j,
                       wf->steps[j].line);
    }
    st->id = strdup(id ? id : "");
    const char *uses = get_string(pc, node, "uses", 1, where);
    st->uses = strdup(uses ? uses : "");
    const plugin *p = uses ? registry_find(pc->reg, uses) : NULL;
    if (uses && (!p || p->kind != EVH_KIND_STEP)) {
        const plugin *any = registry_find_any(pc->reg, uses);
        if (any && any->kind == EVH_KIND_STEP && any->error)
            problem_at(pc, cJSON_GetObjectItemCaseSensitive(node, "uses"),
                       "%s.uses: step plugin '%s' failed to load: %s", where, uses, any->error);
        else
            problem_at(pc, cJSON_GetObjectItemCaseSensitive(node, "uses"),
                       "%s.uses: unknown step plugin '%s' (see `evhost plugins list`)", where,
                       uses);
        p = NULL;
    }
    const cJSON *with = cJSON_GetObjectItemCaseSensitive(node, "with");
    if (with && !cJSON_IsObject(with) && !cJSON_IsNull(with)) {
        problem_at(pc, with, "%s.with: must be a mapping, got %s", where, json_type_name(with));
    } else if (cJSON_IsObject(with)) {
        cJSON_Delete(st->with);
        st->with = cJSON_Duplicate(with, 1);
    }
    st->timeout_ms = get_uint(pc, node, "timeout_ms", 0, 24u * 3600 * 1000, where);
    const cJSON *retry = cJSON_GetObjectItemCaseSensitive(node, "retry");
    if (retry && !cJSON_IsObject(retry)) {
        problem_at(pc, retry, "%s.retry: must be a mapping {max, backoff_ms}", where);
    } else if (retry) {
        static const char *const retry_keys[] = {"max", "backoff_ms", NULL};
        check_keys(pc, retry, retry_keys, "retry");
        st->retry_max = get_uint(pc, retry, "max", 0, RETRY_MAX_LIMIT, where);
        st->retry_backoff_ms = get_uint(pc, retry, "backoff_ms", 100, 3600u * 1000, where);
    }
    const char *on_error = get_string(pc, node, "on_error", 0, where);
    if (on_error && strcmp(on_error, "stop") && strcmp(on_error, "continue"))
        problem_at(pc, cJSON_GetObjectItemCaseSensitive(node, "on_error"),
                   "%s.on_error: must be \"stop\" or \"continue\", got \"%s\"", where, on_error);
    st->on_error_continue = on_error && !strcmp(on_error, "continue");
    int before = pc->errors;
    if (p && p->m)
        check_step_config(pc, st, with ? with : node, p->m, where);
    if (p && pc->rt && pc->errors == before)
        validate_step(pc, st, with ? with : node, p, where);
}

static void check_templates(parse_ctx *pc, workflow *wf, const cJSON *steps_node)
{
    for (size_t i = 0; i < wf->n_steps; i++) {
        step_lookup sl = {wf, i};
        diag d;
        diag_init(&d, NULL);
        char where[64];
        snprintf(where, sizeof where, "steps[%zu].with", i);
        template_check(wf->steps[i].with, where, step_known, &sl, &d);
        const cJSON *node = cJSON_GetArrayItem(steps_node, (int)i);
        const cJSON *with = cJSON_GetObjectItemCaseSensitive(node, "with");
        for (size_t k = 0; k < d.count; k++)
            problem_at(pc, with ? with : node, "%s%s%s", d.items[k].path,
                       d.items[k].path[0] ? ": " : "", d.items[k].reason);
        diag_free(&d);
    }
}

static void version_of(const char *bytes, size_t len, char out[17])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(bytes, len, md, &n, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 8 && i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static const char *const workflow_keys[] = {"id", "name", "description", "on_error", "steps",
                                            NULL};

static workflow *parse_workflow(parse_ctx *pc, const char *path)
{
    const cJSON *root = yamldoc_root(pc->y);
    if (!cJSON_IsObject(root)) {
        problem_at(pc, root, "a workflow file must be a mapping with id and steps");
        return NULL;
    }
    workflow *wf = calloc(1, sizeof *wf);
    if (!wf)
        return NULL;
    wf->file = strdup(path);
    check_keys(pc, root, workflow_keys, "the workflow");
    const char *id = get_string(pc, root, "id", 1, "workflow");
    if (id && !is_slug(id))
        problem_at(pc, cJSON_GetObjectItemCaseSensitive(root, "id"),
                   "id: '%s' may only hold letters, digits, '-', '_' and '.'", id);
    wf->id = strdup(id ? id : "");
    const char *name = get_string(pc, root, "name", 0, "workflow");
    wf->name = strdup(name ? name : wf->id);
    const char *on_error = get_string(pc, root, "on_error", 0, "workflow");
    wf->on_error = on_error ? strdup(on_error) : NULL;
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(root, "steps");
    if (!cJSON_IsArray(steps) || cJSON_GetArraySize(steps) == 0) {
        problem_at(pc, steps ? steps : root, "steps: must be a non-empty list of steps");
        return wf;
    }
    int n = cJSON_GetArraySize(steps);
    if (n > WORKFLOW_MAX_STEPS) {
        problem_at(pc, steps, "steps: %d steps; at most %d are allowed", n, WORKFLOW_MAX_STEPS);
        return wf;
    }
    wf->steps = calloc((size_t)n, sizeof *wf->steps);
    if (!wf->steps)
        return wf;
    wf->n_steps = (size_t)n;
    for (int i = 0; i < n; i++)
        parse_step(pc, wf, (size_t)i, cJSON_GetArrayItem(steps, i));
    check_templates(pc, wf, steps);
    return wf;
}

workflow *workflow_parse(const char *bytes, size_t len, const char *path, const registry *r,
                         runtime *rt, diag *d)
{
    size_t before = d->count;
    yamldoc *y = yamldoc_parse(bytes, len, 0, d);
    workflow *wf = NULL;
    if (y && d->count == before) {
        parse_ctx pc = {.y = y, .reg = r, .rt = rt, .d = d};
        wf = parse_workflow(&pc, path);
        if (wf && pc.errors) {
            workflow_free(wf);
            wf = NULL;
        }
    }
    if (wf)
        version_of(bytes, len, wf->version);
    yamldoc_free(y);
    return wf;
}

workflow *workflow_load_file(const char *path, const registry *r, runtime *rt, diag *d)
{
    char err[256];
    size_t len = 0;
    char *bytes = file_read_all(path, WORKFLOW_MAX_BYTES, &len, err, sizeof err);
    if (!bytes) {
        diag_add(d, "", "%s", err);
        return NULL;
    }
    workflow *wf = workflow_parse(bytes, len, path, r, rt, d);
    free(bytes);
    return wf;
}

static int yaml_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && ((n > 5 && !strcmp(name + n - 5, ".yaml")) ||
                              (n > 4 && !strcmp(name + n - 4, ".yml")));
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int workflow_load_dir(workflow_set *ws, const char *dir, const registry *r, runtime *rt,
                      diag *d)
{
    DIR *dh = opendir(dir);
    if (!dh) {
        diag_add(d, dir, "cannot open the workflows directory: %m");
        return EVH_E_IO;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dh)) != NULL) {
        if (!yaml_name(e->d_name))
            continue;
        char **grown = realloc(names, (n + 1) * sizeof *names);
        if (!grown)
            break;
        names = grown;
        names[n++] = strdup(e->d_name);
    }
    closedir(dh);
    if (n > 1) /* names is NULL for an empty folder */
        qsort(names, n, sizeof *names, name_cmp);
    int loaded = 0;
    for (size_t i = 0; i < n; i++) {
        char *path = NULL;
        if (asprintf(&path, "%s/%s", dir, names[i]) < 0)
            continue;
        diag fd;
        diag_init(&fd, path);
        workflow *wf = workflow_load_file(path, r, rt, &fd);
        if (wf && workflow_set_add(ws, wf) != EVH_OK) {
            const workflow *other = workflow_set_get(ws, wf->id);
            diag_add_at(&fd, 1, 1, "duplicate workflow id '%s' (also in %s)", wf->id,
                        other ? other->file : "another file");
            workflow_free(wf);
            wf = NULL;
        }
        if (wf)
            loaded++;
        for (size_t k = 0; k < fd.count; k++) {
            char *line = diag_format_item(&fd, k);
            diag_add(d, "", "%s", line ? line : "out of memory");
            free(line);
        }
        diag_free(&fd);
        free(path);
        free(names[i]);
    }
    free(names);
    return loaded;
}

void workflow_free(workflow *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_steps; i++) {
        free(w->steps[i].id);
        free(w->steps[i].uses);
        cJSON_Delete(w->steps[i].with);
    }
    free(w->steps);
    free(w->id);
    free(w->name);
    free(w->file);
    free(w->on_error);
    free(w);
}

workflow_set *workflow_set_new(void)
{
    return calloc(1, sizeof(workflow_set));
}

void workflow_set_free(workflow_set *ws)
{
    if (!ws)
        return;
    for (size_t i = 0; i < ws->count; i++)
        workflow_free(ws->items[i]);
    free(ws->items);
    free(ws);
}

int workflow_set_add(workflow_set *ws, workflow *w)
{
    if (workflow_set_get(ws, w->id))
        return EVH_E_DUPLICATE;
    workflow **items = realloc(ws->items, (ws->count + 1) * sizeof *items);
    if (!items)
        return EVH_E_NOMEM;
    ws->items = items;
    ws->items[ws->count++] = w;
    return EVH_OK;
}

const workflow *workflow_set_get(const workflow_set *ws, const char *id)
{
    for (size_t i = 0; ws && i < ws->count; i++) {
        if (!strcmp(ws->items[i]->id, id))
            return ws->items[i];
    }
    return NULL;
}

cJSON *workflow_to_json(const workflow *w)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", w->id);
    cJSON_AddStringToObject(o, "name", w->name);
    cJSON_AddStringToObject(o, "file", w->file);
    cJSON_AddStringToObject(o, "version", w->version);
    if (w->on_error)
        cJSON_AddStringToObject(o, "on_error", w->on_error);
    else
        cJSON_AddNullToObject(o, "on_error");
    cJSON *steps = cJSON_AddArrayToObject(o, "steps");
    for (size_t i = 0; i < w->n_steps; i++) {
        const wf_step *s = &w->steps[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "id", s->id);
        cJSON_AddStringToObject(j, "uses", s->uses);
        cJSON_AddItemToObject(j, "with", cJSON_Duplicate(s->with, 1));
        cJSON_AddNumberToObject(j, "timeout_ms", s->timeout_ms);
        cJSON *retry = cJSON_AddObjectToObject(j, "retry");
        cJSON_AddNumberToObject(retry, "max", s->retry_max);
        cJSON_AddNumberToObject(retry, "backoff_ms", s->retry_backoff_ms);
        cJSON_AddStringToObject(j, "on_error", s->on_error_continue ? "continue" : "stop");
        cJSON_AddItemToArray(steps, j);
    }
    return o;
}
