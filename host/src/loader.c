/*
 * loader.c - from plugin folders to initialized plugins.  The steps run in
 * the order loader.h lists them; the point of that order is that nothing of
 * a plugin's code runs (not even its constructors, at dlopen) before its
 * files, its plugin.json and the ABI it requires have passed.
 */
#include "loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crash.h"
#include "deadline.h"
#include "diag.h"
#include "event.h"
#include "hostapi.h"
#include "isolate.h"
#include "jsonpath.h"
#include "jsonutil.h"
#include "evh_limits.h"
#include "log.h"
#include "manifest.h"
#include "reload.h"
#include "schema.h"
#include "system_events.h"

/* A plugin's own error message (init's *errmsg) is cut to this length. */
#define LOADER_PLUGIN_MSG_MAX 512

/* The sizes of the ABI 1.0 structs: a descriptor or table shorter than
 * these lacks fields every host reads. */
#define END_OF(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))
#define PLUGIN_SIZE_1_0 END_OF(evh_plugin, step)
#define SOURCE_SIZE_1_0 END_OF(evh_source, fini)
#define STEP_SIZE_1_0 END_OF(evh_step, fini)

static const loader_options default_options;

/* ---- records and failures ----------------------------------------------- */

/* The last path component of dir, ignoring trailing slashes. */
static char *folder_name(const char *dir)
{
    size_t end = strlen(dir);
    while (end > 1 && dir[end - 1] == '/')
        end--;
    size_t start = end;
    while (start > 0 && dir[start - 1] != '/')
        start--;
    return strndup(dir + start, end - start);
}

static plugin *plugin_new(const char *dir)
{
    plugin *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->state = PLUGIN_FAILED; /* until a step says otherwise */
    p->dir = strdup(dir);
    p->id = folder_name(dir);
    if (asprintf(&p->manifest_path, "%s/plugin.json", dir) < 0)
        p->manifest_path = NULL;
    if (!p->dir || !p->id || !p->manifest_path) {
        plugin_free(p);
        return NULL;
    }
    return p;
}

/* Plugin-provided text in one bounded line. */
static void one_line(char *s)
{
    if (strlen(s) > LOADER_PLUGIN_MSG_MAX)
        strcpy(s + LOADER_PLUGIN_MSG_MAX - 3, "...");
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = ' ';
    }
}

/* Mark p failed: error "<file>: <reason>", one log line naming the plugin,
 * the file and the reason.  Returns code. */
static int fail(plugin *p, int code, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(plugin *p, int code, const char *file, const char *fmt, ...)
{
    char *reason = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&reason, fmt, ap) < 0)
        reason = NULL;
    va_end(ap);
    const char *why = reason ? reason : evh_status_message(code);
    free(p->error);
    if (asprintf(&p->error, "%s: %s", file, why) < 0)
        p->error = NULL;
    p->state = PLUGIN_FAILED;
    p->error_code = code;
    log_msg(p->quiet_failure ? EVH_LOG_DEBUG : EVH_LOG_ERROR, "loader", "plugin '%s' (%s): %s",
            p->id, file, why);
    free(reason);
    return code;
}

/* ---- 1. ownership and permissions --------------------------------------- */

static int check_owner_mode(plugin *p, const char *path, const struct stat *st)
{
    if (st->st_uid != 0 && st->st_uid != geteuid())
        return fail(p, EVH_E_PERMISSION, path,
                    "owned by uid %u, neither root nor the user running evhost (uid %u)",
                    (unsigned)st->st_uid, (unsigned)geteuid());
    if (st->st_mode & (S_IWGRP | S_IWOTH))
        return fail(p, EVH_E_PERMISSION, path,
                    "writable by group or others (mode %04o), so anyone could change the "
                    "code evhost runs: chmod go-w it",
                    (unsigned)(st->st_mode & 07777));
    return EVH_OK;
}

static int inside(const char *real_path, const char *real_dir)
{
    size_t n = strlen(real_dir);
    return strncmp(real_path, real_dir, n) == 0 && real_path[n] == '/';
}

/* A file of the plugin folder (lst from lstat): a regular file, or a
 * symlink that stays inside the folder; checked where it really is. */
static int check_file(plugin *p, const char *path, const struct stat *lst,
                      const char *real_dir)
{
    struct stat st = *lst;
    if (S_ISLNK(lst->st_mode)) {
        char *target = realpath(path, NULL);
        int ok = target && inside(target, real_dir) && stat(target, &st) == 0;
        int rc = EVH_OK;
        if (!target)
            rc = fail(p, EVH_E_NOT_FOUND, path, "is a symlink to a missing file");
        else if (!ok)
            rc = fail(p, EVH_E_PERMISSION, path,
                      "is a symlink pointing outside the plugin folder (to %s)", target);
        free(target);
        if (rc != EVH_OK)
            return rc;
    }
    if (!S_ISREG(st.st_mode))
        return fail(p, EVH_E_PERMISSION, path, "is not a regular file");
    return check_owner_mode(p, path, &st);
}

/* The folder and plugin.json.  *real_dir receives the folder's real path
 * for the symlink checks of later files. */
static int check_folder(plugin *p, char **real_dir)
{
    struct stat st;
    if (stat(p->dir, &st) != 0)
        return fail(p, EVH_E_NOT_FOUND, p->dir, "cannot read the plugin folder: %s",
                    strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return fail(p, EVH_E_NOT_FOUND, p->dir, "is not a directory");
    int rc = check_owner_mode(p, p->dir, &st);
    if (rc != EVH_OK)
        return rc;
    *real_dir = realpath(p->dir, NULL);
    if (!*real_dir)
        return fail(p, EVH_E_IO, p->dir, "cannot resolve the folder's path: %s",
                    strerror(errno));
    struct stat lst;
    if (lstat(p->manifest_path, &lst) != 0)
        return EVH_OK; /* missing: step 2 says so, with the other problems */
    return check_file(p, p->manifest_path, &lst, *real_dir);
}

/* ---- 2. plugin.json ----------------------------------------------------- */

static int read_manifest(plugin *p)
{
    diag d;
    diag_init(&d, p->manifest_path);
    manifest *m = NULL;
    int rc = manifest_load(p->manifest_path, &m, &d);
    if (rc != EVH_OK || !m) {
        char *why = diag_join(&d);
        if (rc == EVH_OK)
            rc = EVH_E_MANIFEST;
        fail(p, rc, p->manifest_path, "invalid plugin.json: %s%s",
             why && *why ? why : evh_status_message(rc),
             d.dropped ? " (and more problems)" : "");
        free(why);
        manifest_free(m);
        diag_free(&d);
        return rc;
    }
    diag_free(&d);
    char *id = strdup(m->id);
    if (!id) {
        manifest_free(m);
        return fail(p, EVH_E_NOMEM, p->manifest_path, "out of memory");
    }
    free(p->id);
    p->id = id;
    p->m = m;
    p->kind = m->kind;
    return EVH_OK;
}

/* ---- 3. the ABI plugin.json requires, before any code is loaded ---------- */

static int check_abi(plugin *p)
{
    const manifest *m = p->m;
    if (m->abi_major != EVH_ABI_MAJOR)
        return fail(p, EVH_E_ABI, p->manifest_path,
                    "requires SDK ABI %u.%u; this host provides %d.%d: rebuild the plugin "
                    "against SDK %d.x",
                    m->abi_major, m->abi_minor, EVH_ABI_MAJOR, EVH_ABI_MINOR, EVH_ABI_MAJOR);
    if (m->abi_minor > EVH_ABI_MINOR)
        return fail(p, EVH_E_ABI, p->manifest_path,
                    "requires SDK ABI %u.%u; this host provides %d.%d: upgrade evhost or "
                    "declare \"abi\": \"%d.%d\" if the plugin does not use newer functions",
                    m->abi_major, m->abi_minor, EVH_ABI_MAJOR, EVH_ABI_MINOR, EVH_ABI_MAJOR,
                    EVH_ABI_MINOR);
    return EVH_OK;
}

/* The first active source declaring a webhookEndpoint keeps it (failed
 * and inactive ones do not hold it); a later one never gets loaded. */
static int check_duplicate_endpoint(const registry *r, plugin *p)
{
    const char *ep = p->m->kind == EVH_KIND_SOURCE && p->m->active ? p->m->webhook_endpoint
                                                                   : NULL;
    for (size_t i = 0; ep && r && i < r->count; i++) {
        const plugin *q = r->items[i];
        if (q->state == PLUGIN_FAILED || q->state == PLUGIN_INACTIVE || !q->m ||
            q->m->kind != EVH_KIND_SOURCE || !q->m->webhook_endpoint)
            continue;
        /* The same segments: "/a/" (a prefix endpoint) against "/a" too.
         * Nested ones ("/a/" and "/a/b") may coexist: the more specific
         * endpoint wins a request (api_plugins.c). */
        if (manifest_endpoint_same(q->m->webhook_endpoint, ep))
            return fail(p, EVH_E_DUPLICATE, p->manifest_path,
                        "duplicate webhookEndpoint '%s': already claimed by plugin '%s' (%s)",
                        ep, q->id, q->dir);
    }
    return EVH_OK;
}

/* The first folder with an id keeps it; later ones never get loaded. */
static int check_duplicate(const registry *r, plugin *p)
{
    for (size_t i = 0; r && i < r->count; i++) {
        const plugin *q = r->items[i];
        if (!q->m || strcmp(q->m->id, p->m->id) != 0)
            continue;
        if (q->state == PLUGIN_FAILED)
            return fail(p, EVH_E_DUPLICATE, p->manifest_path,
                        "duplicate id '%s': already claimed by %s (which failed to load)",
                        p->m->id, q->dir);
        return fail(p, EVH_E_DUPLICATE, p->manifest_path,
                    "duplicate id '%s': already loaded from %s", p->m->id, q->dir);
    }
    return check_duplicate_endpoint(r, p);
}

/* ---- 4. the library ----------------------------------------------------- */

static int check_library(plugin *p, const loader_options *opt, const char *real_dir)
{
    const char *lib = p->m->library;
    char *fallback = NULL;
    if (!lib || !*lib) {
        if (asprintf(&fallback, "%s.so", p->m->id) < 0)
            return fail(p, EVH_E_NOMEM, p->manifest_path, "out of memory");
        lib = fallback;
    }
    int n = asprintf(&p->library_path, "%s/%s", p->dir, lib);
    free(fallback);
    if (n < 0) {
        p->library_path = NULL;
        return fail(p, EVH_E_NOMEM, p->manifest_path, "out of memory");
    }
    struct stat lst;
    if (lstat(p->library_path, &lst) != 0)
        return fail(p, EVH_E_NOT_FOUND, p->library_path,
                    "library does not exist (named by \"library\" in %s, default <id>.so): "
                    "build the plugin or fix the name",
                    p->manifest_path);
    if (opt->skip_permission_check)
        return EVH_OK;
    return check_file(p, p->library_path, &lst, real_dir);
}

static int open_library(plugin *p, const loader_options *opt)
{
    /* A private copy (reload.h: a new version beside the old one) */
    char *copy = NULL, *why = NULL;
    if (opt->library_copy_dir &&
        reload_copy_library(p->library_path, opt->library_copy_dir, p->m->id, &copy, &why) != 0) {
        int rc = fail(p, EVH_E_LOAD, p->library_path, "%s", why ? why : "cannot copy it");
        free(why);
        return rc;
    }
    const char *opened = copy ? copy : p->library_path;
    dlerror(); /* clear any stale message */
    p->dl = dlopen(opened, RTLD_NOW | RTLD_LOCAL);
    if (copy)
        unlink(copy); /* mapped already; nothing to clean up later */
    if (!p->dl) {
        /* dlerror starts with the name opened: the error names the library
         * once, and never the copy */
        const char *e = dlerror();
        size_t n = strlen(opened);
        if (e && !strncmp(e, opened, n) && e[n] == ':')
            e += n + 1 + (e[n + 1] == ' ');
        free(copy);
        return fail(p, EVH_E_LOAD, p->library_path, "dlopen failed: %s",
                    e ? e : "unknown error");
    }
    free(copy);
    void *sym = dlsym(p->dl, EVH_ENTRY_SYMBOL);
    if (!sym)
        return fail(p, EVH_E_LOAD, p->library_path,
                    "does not export evh_plugin_entry: declare it with EVH_DECLARE_SOURCE "
                    "or EVH_DECLARE_STEP");
    /* POSIX guarantees a function's address survives this conversion. */
    evh_plugin_entry_fn entry = (evh_plugin_entry_fn)sym;
    p->desc = entry();
    return EVH_OK;
}

/* Process isolation (isolate.h): a child process loads the library and
 * describes it; the host never dlopens it.  p->desc is a stand-in with the
 * same facts, whose callbacks reach the plugin in its own process. */
static int open_isolated(plugin *p, const loader_options *opt)
{
    char *why = NULL;
    int rc = isolate_open(p, opt->library_copy_dir, &why);
    if (rc != EVH_OK)
        fail(p, rc, p->library_path, "%s", why ? why : evh_status_message(rc));
    free(why);
    return rc;
}

/* ---- 5. the descriptor against plugin.json ------------------------------ */

static const char *kind_name(int kind)
{
    return kind == EVH_KIND_SOURCE ? "event-source"
           : kind == EVH_KIND_STEP ? "workflow-step"
                                   : "unknown kind";
}

/*
 * The http callback (ABI 1.1), read only when the table is long enough to
 * hold it (a 1.0 plugin's is not).  A plugin that has one must declare
 * "abi": "1.1" or later, so that a 1.0 host refuses it instead of loading it
 * and dropping its webhooks.  A webhookEndpoint without the callback, or
 * the callback without an endpoint, is allowed (1.0 plugins may declare an
 * endpoint) but logged: requests get 501, or the callback is never called.
 */
static int check_http(plugin *p)
{
    const evh_source *s = p->desc->source;
    const manifest *m = p->m;
    int has_http = EVH_SOURCE_HAS(s, http) && s->http != NULL;
    if (has_http && m->abi_minor < 1)
        return fail(p, EVH_E_ABI, p->library_path,
                    "has an http callback, which needs SDK ABI 1.1, but %s declares \"abi\": "
                    "\"%u.%u\": declare \"abi\": \"1.1\" (a 1.0 host would load the plugin "
                    "and never deliver its webhooks)",
                    p->manifest_path, m->abi_major, m->abi_minor);
    if (has_http && !m->webhook_endpoint)
        log_warn("loader", "plugin '%s' (%s): has an http callback but %s declares no "
                 "\"webhookEndpoint\": it is never called", p->id, p->library_path,
                 p->manifest_path);
    if (!has_http && m->webhook_endpoint)
        log_warn("loader", "plugin '%s' (%s): %s declares \"webhookEndpoint\": \"%s\" but the "
                 "library has no http callback (SDK ABI 1.1): requests to it are answered 501",
                 p->id, p->library_path, p->manifest_path, m->webhook_endpoint);
    return EVH_OK;
}

static int check_callbacks(plugin *p)
{
    const evh_plugin *d = p->desc;
    const char *lib = p->library_path;
    if (d->kind == EVH_KIND_SOURCE) {
        const evh_source *s = d->source;
        if (!s)
            return fail(p, EVH_E_LOAD, lib, "descriptor has no source table");
        if (s->struct_size < SOURCE_SIZE_1_0)
            return fail(p, EVH_E_ABI, lib, "source table is %u bytes, less than the %zu of "
                        "SDK ABI 1.0: rebuild the plugin", s->struct_size, SOURCE_SIZE_1_0);
        if (!s->init || !s->run || !s->fini)
            return fail(p, EVH_E_LOAD, lib, "source table lacks init, run or fini");
        return check_http(p);
    }
    const evh_step *st = d->step;
    if (!st)
        return fail(p, EVH_E_LOAD, lib, "descriptor has no step table");
    if (st->struct_size < STEP_SIZE_1_0)
        return fail(p, EVH_E_ABI, lib, "step table is %u bytes, less than the %zu of SDK "
                    "ABI 1.0: rebuild the plugin", st->struct_size, STEP_SIZE_1_0);
    if (!st->init || !st->run || !st->fini)
        return fail(p, EVH_E_LOAD, lib, "step table lacks init, run or fini");
    if (p->m->webhook_endpoint)
        log_warn("loader", "plugin '%s' (%s): workflow steps do not receive HTTP requests; "
                 "\"webhookEndpoint\" is ignored", p->id, p->manifest_path);
    return EVH_OK;
}

static int check_descriptor(plugin *p)
{
    const evh_plugin *d = p->desc;
    const manifest *m = p->m;
    const char *lib = p->library_path;
    if (!d)
        return fail(p, EVH_E_LOAD, lib, "evh_plugin_entry returned NULL");
    if (d->struct_size < PLUGIN_SIZE_1_0)
        return fail(p, EVH_E_ABI, lib, "descriptor is %u bytes, less than the %zu of SDK "
                    "ABI 1.0: rebuild the plugin", d->struct_size, PLUGIN_SIZE_1_0);
    if (d->abi_major != m->abi_major)
        return fail(p, EVH_E_ABI, lib, "built against SDK ABI %u.%u, but %s declares \"abi\": "
                    "\"%u.%u\": rebuild the plugin against SDK %u.x", d->abi_major,
                    d->abi_minor, p->manifest_path, m->abi_major, m->abi_minor, m->abi_major);
    if (d->abi_minor < m->abi_minor)
        return fail(p, EVH_E_ABI, lib, "built against SDK ABI %u.%u, older than the %u.%u "
                    "%s requires: rebuild against a newer SDK or lower \"abi\"",
                    d->abi_major, d->abi_minor, m->abi_major, m->abi_minor, p->manifest_path);
    if (d->kind != m->kind)
        return fail(p, EVH_E_MANIFEST, lib, "the library is a %s but %s declares \"type\": "
                    "\"%s\"", kind_name(d->kind), p->manifest_path, kind_name(m->kind));
    if (!d->id || strcmp(d->id, m->id) != 0)
        return fail(p, EVH_E_MANIFEST, lib, "the library declares id '%.*s' but %s declares "
                    "\"id\": \"%s\"", EVH_ID_MAX_LEN, d->id ? d->id : "(null)",
                    p->manifest_path, m->id);
    return check_callbacks(p);
}

/* ---- 6. configuration --------------------------------------------------- */

/* Problems on values that are templates ("{{ event.data.n }}") are not
 * problems yet: those values are resolved per run.  Drops them from d. */
static void drop_templated(diag *d, const cJSON *cfg)
{
    diag kept;
    diag_init(&kept, NULL);
    for (size_t i = 0; i < d->count; i++) {
        const char *rel = d->items[i].path;
        if (!strncmp(rel, "config", 6))
            rel += rel[6] == '.' ? 7 : 6;
        const cJSON *node = json_path_get(cfg, rel);
        if (cJSON_IsString(node) && strstr(node->valuestring, "{{"))
            continue;
        diag_add(&kept, d->items[i].path, "%s", d->items[i].reason);
    }
    kept.dropped = d->dropped;
    diag_free(d);
    *d = kept;
}

/* cfg (NULL: {}) validated against m's configSchema with defaults filled
 * in; its compact text in *out, or the problems in *why. */
static int normalize_config(const manifest *m, const cJSON *cfg, int templates_ok,
                            char **out, char **why)
{
    *out = NULL;
    *why = NULL;
    cJSON *copy = cfg ? cJSON_Duplicate(cfg, 1) : cJSON_CreateObject();
    if (!copy)
        return EVH_E_NOMEM;
    int rc = EVH_OK;
    diag d;
    diag_init(&d, NULL);
    if (m->config_schema) {
        rc = schema_apply_defaults(m->config_schema, copy);
        schema_validate(m->config_schema, copy, "config", &d);
        if (templates_ok)
            drop_templated(&d, copy);
    }
    if (rc == EVH_OK && (d.count || d.dropped)) {
        *why = diag_join(&d);
        rc = EVH_E_CONFIG;
    } else if (rc == EVH_OK) {
        *out = cJSON_PrintUnformatted(copy);
        rc = *out ? EVH_OK : EVH_E_NOMEM;
    }
    diag_free(&d);
    cJSON_Delete(copy);
    return rc;
}

static int configure_source(plugin *p, const cJSON *configs)
{
    const cJSON *given = cJSON_IsObject(configs)
                             ? cJSON_GetObjectItemCaseSensitive(configs, p->id)
                             : NULL;
    if (given && !cJSON_IsObject(given) && !cJSON_IsNull(given))
        return fail(p, EVH_E_CONFIG, p->manifest_path,
                    "invalid configuration: config: must be an object, got %s",
                    json_type_name(given));
    char *why = NULL;
    int rc = normalize_config(p->m, cJSON_IsObject(given) ? given : NULL, 0,
                              &p->config_text, &why);
    if (rc != EVH_OK)
        fail(p, rc, p->manifest_path, "invalid configuration (checked against configSchema): %s",
             why ? why : evh_status_message(rc));
    free(why);
    return rc;
}

/* ---- 7. init ------------------------------------------------------------ */

/* What a failed init returned, as a code the host knows. */
static int init_code(int32_t rc)
{
    return rc < 0 && strcmp(evh_status_name(rc), "EVH_E_UNKNOWN") != 0 ? rc : EVH_E_PLUGIN;
}

static int init_source(plugin *p, runtime *rt)
{
    if (!rt)
        return fail(p, EVH_E_INVALID, p->dir, "no runtime to run the source in");
    evh_host *h = hostapi_instance_new(p->m, rt, p->config_text);
    if (!h)
        return fail(p, EVH_E_NOMEM, p->library_path, "out of memory");
    void *ctx = NULL;
    char *errmsg = NULL;
    int abandoned = 0;
    int32_t rc = deadline_source_init(p->desc->source, h, &ctx, &errmsg, &abandoned);
    if (abandoned) /* h is the helper thread's now; the library stays loaded */
        return fail(p, EVH_E_TIMEOUT, p->library_path, "init did not return within %u ms "
                    "(plugins.init_timeout_ms); abandoned: the plugin is never called again",
                    deadline_init_ms());
    if (errmsg)
        one_line(errmsg);
    if (rc != EVH_OK) {
        /* The plugin freed what it had; nothing else of it is called. */
        hostapi_instance_free(h);
        int code = init_code(rc);
        fail(p, code, p->library_path, "init failed: %s (%s)",
             errmsg ? errmsg : evh_status_message(rc), evh_status_name(rc));
        free(errmsg);
        return code;
    }
    free(errmsg); /* a message with success is allowed, and ours to free */
    p->host = h;
    p->ctx = ctx;
    return EVH_OK;
}

/* ---- one folder, all steps ---------------------------------------------- */

/* Steps 1-5: nothing of the plugin runs before check_library passed. */
static int load_checks(const registry *r, plugin *p, const loader_options *opt)
{
    char *real_dir = NULL;
    int rc = opt->skip_permission_check ? EVH_OK : check_folder(p, &real_dir);
    if (rc == EVH_OK)
        rc = read_manifest(p);
    if (rc == EVH_OK)
        rc = check_abi(p);
    if (rc == EVH_OK)
        rc = check_duplicate(r, p);
    if (rc == EVH_OK)
        rc = check_library(p, opt, real_dir);
    if (rc == EVH_OK && !opt->validate_only)
        rc = isolate_check_quarantine(p); /* crashed too often: none of its code runs */
    if (rc == EVH_OK && isolate_wanted(p)) {
        rc = open_isolated(p, opt);
    } else if (rc == EVH_OK) {
        crash_loading(p->id); /* a crash in its constructors is the plugin's */
        rc = open_library(p, opt);
        crash_loaded(p->id, p->library_path, p->dl); /* and in its code from now on */
    }
    if (rc == EVH_OK)
        rc = check_descriptor(p);
    free(real_dir);
    return rc;
}

static int load_steps(const registry *r, runtime *rt, plugin *p, const loader_options *opt)
{
    int rc = load_checks(r, p, opt);
    if (rc != EVH_OK)
        return rc;
    if (opt->validate_only) {
        p->state = p->m->active ? PLUGIN_LOADED : PLUGIN_INACTIVE;
        return EVH_OK;
    }
    /* A step's configuration comes from each workflow step (`with:`), so
     * it is checked per instance, not here. */
    if (p->kind == EVH_KIND_SOURCE && (rc = configure_source(p, opt->plugin_configs)) != EVH_OK)
        return rc;
    if (!p->m->active) {
        p->state = PLUGIN_INACTIVE;
        return EVH_OK;
    }
    if (p->kind == EVH_KIND_SOURCE && (rc = init_source(p, rt)) != EVH_OK)
        return rc;
    p->state = PLUGIN_READY;
    return EVH_OK;
}

static plugin *load_one(const registry *r, runtime *rt, const char *dir,
                        const loader_options *opt)
{
    if (!dir)
        return NULL;
    plugin *p = plugin_new(dir);
    if (!p) {
        log_error("loader", "plugin folder %s: out of memory", dir);
        return NULL;
    }
    int quiet = opt && opt->validate_only;
    p->quiet_failure = quiet;
    int rc = load_steps(r, rt, p, opt ? opt : &default_options);
    if (rc == EVH_OK)
        log_msg(quiet ? EVH_LOG_DEBUG : EVH_LOG_INFO, "loader", "plugin '%s' %s (%s) %s from %s",
                p->id, p->m->version, kind_name(p->kind), plugin_state_name(p->state), p->dir);
    return p;
}

plugin *loader_load_one(runtime *rt, const char *plugin_dir, const loader_options *opt)
{
    return load_one(NULL, rt, plugin_dir, opt);
}

plugin *loader_load_checked(const registry *others, runtime *rt, const char *plugin_dir,
                            const loader_options *opt)
{
    return load_one(others, rt, plugin_dir, opt);
}

/* ---- scanning a directory ----------------------------------------------- */

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Every entry of dir not starting with '.', sorted.  errno on failure. */
static int list_names(const char *dir, char ***out, size_t *count)
{
    DIR *dh = opendir(dir);
    if (!dh)
        return -1;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(dh)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) {
                rc = -1;
                break;
            }
            names = grown;
        }
        if ((names[n] = strdup(e->d_name)) == NULL)
            rc = -1;
        else
            n++;
    }
    closedir(dh);
    if (rc != 0) {
        free_names(names, n);
        errno = ENOMEM;
        return -1;
    }
    if (n)
        qsort(names, n, sizeof *names, name_cmp);
    *out = names;
    *count = n;
    return 0;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int scan_failed(const char *dir, diag *d)
{
    int err = errno;
    int code = err == ENOENT ? EVH_E_NOT_FOUND : err == ENOMEM ? EVH_E_NOMEM : EVH_E_IO;
    if (d)
        diag_add(d, "", "cannot read plugin directory: %s", strerror(err));
    log_error("loader", "plugin directory %s: %s", dir, strerror(err));
    return code;
}

/* Load one sub-folder into r; 1 when it loaded (ready or validated). */
static int scan_one(registry *r, runtime *rt, const char *path, const loader_options *opt)
{
    plugin *p = load_one(r, rt, path, opt);
    if (!p)
        return 0;
    if (registry_add(r, p) != EVH_OK) {
        log_error("loader", "plugin folder %s: out of memory", path);
        plugin_free(p); /* finis and unloads it first */
        return 0;
    }
    return p->state == PLUGIN_READY || p->state == PLUGIN_LOADED;
}

int loader_scan_dir(registry *r, runtime *rt, const char *dir,
                    const loader_options *opt, diag *d)
{
    if (!r || !dir)
        return EVH_E_INVALID;
    char **names = NULL;
    size_t n = 0;
    if (list_names(dir, &names, &n) != 0)
        return scan_failed(dir, d);
    int loaded = 0;
    size_t folders = 0;
    for (size_t i = 0; i < n; i++) {
        char *path = NULL;
        if (asprintf(&path, "%s/%s", dir, names[i]) < 0)
            break;
        if (is_dir(path) && folders == EVH_PLUGINS_PER_DIR_MAX) {
            if (d)
                diag_add(d, "", "more than %d plugin folders: '%s' and after are ignored",
                         EVH_PLUGINS_PER_DIR_MAX, names[i]);
            log_error("loader", "plugin directory %s: more than %d plugin folders; '%s' and "
                      "after are ignored", dir, EVH_PLUGINS_PER_DIR_MAX, names[i]);
            free(path);
            break;
        }
        if (is_dir(path)) {
            folders++;
            loaded += scan_one(r, rt, path, opt);
        }
        free(path);
    }
    free_names(names, n);
    return loaded;
}

/* ---- source threads ----------------------------------------------------- */

static void *source_main(void *arg)
{
    plugin *p = arg;
    int32_t rc = p->desc->source->run(p->ctx);
    p->run_result = rc; /* read by the joiner only */
    if (rc != EVH_OK) {
        log_error("loader", "plugin '%s': run() failed: %s (%s)", p->id,
                  evh_status_message(rc), evh_status_name(rc));
        char why[160];
        snprintf(why, sizeof why, "run() failed: %s (%s)", evh_status_message(rc),
                 evh_status_name(rc));
        system_events_plugin_failed(p->id, p->kind, "run", why, rc);
    }
    return NULL;
}

int loader_start_sources(registry *r)
{
    int started = 0;
    for (size_t i = 0; r && i < r->count; i++) {
        plugin *p = r->items[i];
        if (p->kind != EVH_KIND_SOURCE || p->state != PLUGIN_READY || !p->host ||
            p->thread_started)
            continue;
        p->run_result = EVH_OK;
        int err = pthread_create(&p->thread, NULL, source_main, p);
        if (err != 0) {
            fail(p, EVH_E_NOMEM, p->library_path, "cannot start its thread: %s",
                 strerror(err));
            continue;
        }
        char name[16]; /* the kernel's limit for thread names */
        snprintf(name, sizeof name, "%s", p->id);
        pthread_setname_np(p->thread, name);
        p->thread_started = 1;
        p->state = PLUGIN_RUNNING;
        started++;
    }
    return started;
}

/* The stop deadline (deadline.h) as a monotonic time; 0: none. */
static int64_t stop_deadline(void)
{
    uint32_t ms = deadline_stop_ms();
    return ms ? monotonic_ns() + (int64_t)ms * 1000000 : 0;
}

/* What is left of a deadline in ms (at least 1); 0 for none. */
static uint32_t ms_left(int64_t deadline_ns)
{
    if (!deadline_ns)
        return 0;
    int64_t left = (deadline_ns - monotonic_ns()) / 1000000;
    return left < 1 ? 1 : (uint32_t)left;
}

/* Give up on a source that did not stop within its deadline: its thread is
 * left running, detached; the plugin is never called, finalized or
 * unloaded again (loader_unload_one and registry_reap skip it). */
static void abandon(plugin *p, const char *what)
{
    pthread_detach(p->thread);
    free(p->error);
    if (asprintf(&p->error, "%s: %s (plugins.stop_timeout_ms); abandoned: its thread is left "
                 "running and its library loaded", p->library_path, what) < 0)
        p->error = NULL;
    p->error_code = EVH_E_TIMEOUT;
    p->state = PLUGIN_ABANDONED;
    log_error("loader", "plugin '%s' (%s): %s (plugins.stop_timeout_ms); abandoned: its thread "
              "is left running and its library loaded", p->id, p->library_path, what);
}

static void request_stop(plugin *p, int64_t deadline_ns)
{
    if (p->state == PLUGIN_ABANDONED)
        return;
    hostapi_request_stop(p->host);
    if (p->desc->source->stop &&
        deadline_source_stop(p->desc->source, p->ctx, ms_left(deadline_ns)) != 0) {
        char what[96];
        snprintf(what, sizeof what, "its stop callback did not return within %u ms",
                 deadline_stop_ms());
        abandon(p, what);
    }
}

/* 0 when run() returned before the deadline (monotonic; 0: none). */
static int join_source(plugin *p, int64_t deadline_ns)
{
    if (p->state == PLUGIN_ABANDONED)
        return ETIMEDOUT; /* given up on already */
    int err;
    if (!deadline_ns) {
        err = pthread_join(p->thread, NULL);
    } else {
        uint32_t ms = ms_left(deadline_ns);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until); /* pthread_timedjoin_np's clock */
        until.tv_sec += ms / 1000;
        until.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        err = pthread_timedjoin_np(p->thread, NULL, &until);
    }
    if (err != 0) {
        char what[96];
        snprintf(what, sizeof what, "run() did not return within %u ms of the stop request",
                 deadline_stop_ms());
        abandon(p, what);
        return err;
    }
    p->thread_started = 0;
    p->state = PLUGIN_STOPPED;
    return 0;
}

void loader_stop_sources(registry *r)
{
    /* Ask every source first, so that they wind down in parallel, all
     * within one deadline. */
    int64_t deadline = stop_deadline();
    for (size_t i = 0; r && i < r->count; i++) {
        if (r->items[i]->thread_started)
            request_stop(r->items[i], deadline);
    }
    for (size_t i = 0; r && i < r->count; i++) {
        if (r->items[i]->thread_started)
            join_source(r->items[i], deadline);
    }
}

/* ---- unloading ---------------------------------------------------------- */

void loader_unload_one(plugin *p)
{
    if (!p || p->state == PLUGIN_ABANDONED)
        return; /* never fini or dlclose under a running call */
    if (p->thread_started) {
        int64_t deadline = stop_deadline();
        request_stop(p, deadline);
        if (join_source(p, deadline) != 0)
            return; /* never fini under a running call */
    }
    if (p->host) {
        p->desc->source->fini(p->ctx);
        hostapi_instance_free(p->host);
        p->host = NULL;
        p->ctx = NULL;
    }
    if (p->iso && isolate_close(p) != EVH_OK) {
        log_warn("loader", "plugin '%s': %zu instance(s) still in use; it stays loaded", p->id,
                 hostapi_live_instances(p->m));
        return;
    }
    if (!p->dl)
        return;
    if (p->m && hostapi_live_instances(p->m) > 0) {
        log_warn("loader", "plugin '%s': %zu instance(s) still in use; its library stays "
                 "loaded", p->id, hostapi_live_instances(p->m));
        return;
    }
    crash_unregister(p->dl);
    dlclose(p->dl);
    p->dl = NULL;
    p->desc = NULL;
}

void loader_unload_all(registry *r)
{
    loader_stop_sources(r);
    for (size_t i = 0; r && i < r->count; i++)
        loader_unload_one(r->items[i]);
}

/* ---- step instances ----------------------------------------------------- */

static int set_err(char **err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_err(char **err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(err, fmt, ap) < 0)
        *err = NULL;
    va_end(ap);
    return code;
}

/* The step's `with:` text, validated and with defaults, in *out. */
static int step_config(const plugin *p, const char *config_json, char **out, char **err)
{
    char perr[200];
    const char *text = config_json ? config_json : "{}";
    cJSON *cfg = json_parse_limited(text, strlen(text), EVH_EVENT_MAX_BYTES,
                                    EVH_JSON_MAX_DEPTH, perr, sizeof perr);
    if (!cfg)
        return set_err(err, EVH_E_CONFIG, "configuration of step plugin '%s': %s", p->id,
                       perr);
    if (!cJSON_IsObject(cfg)) {
        int rc = set_err(err, EVH_E_CONFIG, "configuration of step plugin '%s': must be an "
                         "object, got %s", p->id, json_type_name(cfg));
        cJSON_Delete(cfg);
        return rc;
    }
    char *why = NULL;
    int rc = normalize_config(p->m, cfg, 1, out, &why);
    cJSON_Delete(cfg);
    if (rc != EVH_OK)
        set_err(err, rc, "invalid configuration for step plugin '%s': %s", p->id,
                why ? why : evh_status_message(rc));
    free(why);
    return rc;
}

/* A step's init or validate (what) past the init deadline (deadline.h). */
static int step_call_abandoned(const plugin *p, const char *what, char **err)
{
    return set_err(err, EVH_E_TIMEOUT,
                   "step plugin '%s' %s did not return within %u ms (plugins.init_timeout_ms); "
                   "the call is abandoned",
                   p->id, what, deadline_init_ms());
}

int loader_step_instance_new(plugin *p, runtime *rt, const char *config_json,
                             struct evh_host **host_out, void **ctx_out,
                             char **err)
{
    if (err)
        *err = NULL;
    if (!p || !host_out || !ctx_out)
        return EVH_E_INVALID;
    *host_out = NULL;
    *ctx_out = NULL;
    if (p->kind == EVH_KIND_STEP && p->state == PLUGIN_QUARANTINED && p->iso) {
        /* quarantined while running: the reason lives in isolate.c (p->error
         * is for load failures, which other threads read without a lock) */
        isolate_status st;
        isolate_plugin_status(p, &st);
        return set_err(err, EVH_E_STATE, "step plugin '%s' is not usable: %s", p->id,
                       st.reason[0] ? st.reason : "quarantined");
    }
    if (p->kind != EVH_KIND_STEP || p->state != PLUGIN_READY || !p->desc)
        return set_err(err, EVH_E_STATE, "step plugin '%s' is not usable: %s", p->id,
                       (p->state == PLUGIN_FAILED || p->state == PLUGIN_QUARANTINED) &&
                               p->error ? p->error
                       : p->kind != EVH_KIND_STEP           ? "not a workflow step"
                       : !p->desc && p->state == PLUGIN_READY ? "already unloaded"
                                                              : plugin_state_name(p->state));
    char *config = NULL;
    int rc = step_config(p, config_json, &config, err);
    if (rc != EVH_OK)
        return rc;
    evh_host *h = hostapi_instance_new(p->m, rt, config);
    free(config);
    if (!h)
        return set_err(err, EVH_E_NOMEM, "out of memory");
    void *ctx = NULL;
    char *errmsg = NULL;
    int abandoned = 0;
    int32_t irc = deadline_step_init(p->desc->step, h, &ctx, &errmsg, &abandoned);
    if (abandoned) /* the helper thread owns h now */
        return step_call_abandoned(p, "init", err);
    if (errmsg)
        one_line(errmsg);
    if (irc != EVH_OK) {
        hostapi_instance_free(h);
        rc = set_err(err, init_code(irc), "step plugin '%s' init failed: %s (%s)", p->id,
                     errmsg ? errmsg : evh_status_message(irc), evh_status_name(irc));
        free(errmsg);
        return rc;
    }
    free(errmsg);
    *host_out = h;
    *ctx_out = ctx;
    return EVH_OK;
}

void loader_step_instance_free(plugin *p, struct evh_host *h, void *ctx)
{
    if (!h)
        return;
    if (p && p->desc && p->desc->step)
        p->desc->step->fini(ctx);
    hostapi_instance_free(h);
}

int loader_step_validate(const plugin *p, runtime *rt, const char *config_json, char **field,
                         char **err)
{
    *field = NULL;
    *err = NULL;
    const evh_step *st = p && p->desc ? p->desc->step : NULL;
    /* a table built against SDK 1.0 or 1.1 ends before validate */
    if (!st || p->kind != EVH_KIND_STEP || !EVH_STEP_HAS(st, validate) || !st->validate)
        return EVH_OK;
    char *config = NULL;
    int rc = step_config(p, config_json, &config, err);
    if (rc != EVH_OK)
        return rc;
    evh_host *h = hostapi_instance_new(p->m, rt, config);
    free(config);
    if (!h)
        return set_err(err, EVH_E_NOMEM, "out of memory");
    h->validating = 1;
    char *where = NULL, *why = NULL;
    int abandoned = 0;
    int32_t vrc = deadline_step_validate(st, h, &where, &why, &abandoned);
    if (abandoned) /* the helper thread owns h now */
        return step_call_abandoned(p, "validate", err);
    hostapi_instance_free(h);
    if (vrc == EVH_OK) { /* a message or a field with success: ours to free */
        free(where);
        free(why);
        return EVH_OK;
    }
    if (why)
        one_line(why);
    if (where)
        one_line(where);
    rc = init_code(vrc);
    if (why && why[0]) {
        *err = why;
    } else {
        free(why);
        set_err(err, rc, "%s (%s)", evh_status_message(vrc), evh_status_name(vrc));
    }
    if (where && where[0])
        *field = where;
    else
        free(where);
    return rc;
}
