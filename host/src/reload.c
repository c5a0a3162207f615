/*
 * reload.c - hot reload of plugins (see reload.h).
 *
 * The reloader is the registry's only writer while the host runs: it reads
 * r->items without the lock (nobody else changes the array) and takes the
 * write lock only to change it.  One rescan at a time (rl->lock).
 */
#include "reload.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <evhost/evhost.h>

#include "evh_limits.h"
#include "hostapi.h"
#include "loader.h"
#include "log.h"

/* plugin.json is read for its "library" only; a larger one is hashed whole. */
#define MANIFEST_PEEK_MAX (1024 * 1024)

typedef struct fp_entry {
    char *dir;
    uint64_t fp;
} fp_entry;

struct reloader {
    registry *r;
    runtime *rt;
    char **dirs;
    size_t n_dirs;
    char *copy_dir;
    char *data_dir; /* NULL: none to keep out */
    loader_options lopt;
    int (*revalidate)(void *ud, diag *d);
    void *revalidate_ud;
    atomic_int running;
    pthread_mutex_t lock;
    int lock_ready;
    fp_entry *fps;
    size_t n_fps, cap_fps;
};

/* ---- private library copies ----------------------------------------------- */

static int set_why(char **why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int set_why(char **why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(why, fmt, ap) < 0)
        *why = NULL;
    va_end(ap);
    return -1;
}

int reload_copy_library(const char *src, const char *dir, const char *id, char **out, char **why)
{
    static atomic_uint serial;
    *out = NULL;
    *why = NULL;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return set_why(why, "cannot create %s for the private copy of the library: %s", dir,
                       strerror(errno));
    char *path = NULL;
    if (asprintf(&path, "%s/%s-%ld-%u.so", dir, id, (long)getpid(),
                 atomic_fetch_add(&serial, 1) + 1) < 0)
        return set_why(why, "out of memory");
    int in = open(src, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (in < 0 || fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
        int err = in < 0 ? errno : EINVAL;
        if (in >= 0)
            close(in);
        free(path);
        return set_why(why, "cannot read the library: %s", strerror(err));
    }
    int outfd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0500);
    if (outfd < 0) {
        int err = errno;
        close(in);
        set_why(why, "cannot create the private copy %s: %s", path, strerror(err));
        free(path);
        return -1;
    }
    char buf[65536];
    int rc = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0)
                rc = set_why(why, "cannot read the library: %s", strerror(errno));
            break;
        }
        for (ssize_t done = 0; done < n && rc == 0;) {
            ssize_t w = write(outfd, buf + done, (size_t)(n - done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                rc = set_why(why, "cannot write the private copy %s: %s", path,
                             strerror(w < 0 ? errno : ENOSPC));
            else
                done += w;
        }
        if (rc)
            break;
    }
    close(in);
    if (close(outfd) != 0 && rc == 0)
        rc = set_why(why, "cannot write the private copy %s: %s", path, strerror(errno));
    if (rc) {
        unlink(path);
        free(path);
        return -1;
    }
    *out = path;
    return 0;
}

/* ---- fingerprints of plugin folders ----------------------------------------- */

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t stat_hash(const char *name, const struct stat *st)
{
    uint64_t h = fnv(14695981039346656037ULL, name, strlen(name) + 1);
    uint64_t v[] = {(uint64_t)st->st_dev,          (uint64_t)st->st_ino,
                    (uint64_t)st->st_size,         (uint64_t)st->st_mtim.tv_sec,
                    (uint64_t)st->st_mtim.tv_nsec, (uint64_t)st->st_mode,
                    (uint64_t)st->st_uid};
    return fnv(h, v, sizeof v);
}

static uint64_t file_hash(const char *dir, const char *name)
{
    char *path = NULL;
    struct stat st;
    if (asprintf(&path, "%s/%s", dir, name) < 0)
        return 0;
    uint64_t h = stat(path, &st) == 0 ? stat_hash(name, &st)
                                      : fnv(14695981039346656037ULL, name, strlen(name));
    free(path);
    return h;
}

/* Every entry of the folder (order-independent). */
static uint64_t all_entries_hash(const char *dir)
{
    DIR *dh = opendir(dir);
    if (!dh)
        return 0;
    uint64_t sum = 0;
    struct dirent *e;
    while ((e = readdir(dh)) != NULL) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            sum += file_hash(dir, e->d_name);
    }
    closedir(dh);
    return sum;
}

/* The library plugin.json names ("library", or "<id>.so"); NULL when the
 * file is not a JSON object with a usable name. */
static char *library_name(const char *manifest_path)
{
    FILE *f = fopen(manifest_path, "rb");
    if (!f)
        return NULL;
    char *text = malloc(MANIFEST_PEEK_MAX + 1);
    size_t n = text ? fread(text, 1, MANIFEST_PEEK_MAX + 1, f) : 0;
    fclose(f);
    if (!text || n > MANIFEST_PEEK_MAX) {
        free(text);
        return NULL;
    }
    cJSON *doc = cJSON_ParseWithLength(text, n);
    free(text);
    const char *lib = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "library"));
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "id"));
    char *name = NULL;
    if (lib && *lib)
        name = strdup(lib);
    else if (id && *id && asprintf(&name, "%s.so", id) < 0)
        name = NULL;
    cJSON_Delete(doc);
    if (name && strchr(name, '/')) { /* refused by the loader anyway */
        free(name);
        name = NULL;
    }
    return name;
}

/*
 * What identifies a folder's plugin on disk: the folder's mode and owner,
 * plugin.json and the library it names (inode, size, mtime, mode, owner).
 * While plugin.json is missing or unreadable, every entry of the folder
 * counts, so the file that completes a half-copied folder changes it.
 * Never 0 for an existing folder.
 */
static uint64_t fingerprint(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return 0;
    uint64_t v[] = {(uint64_t)st.st_mode, (uint64_t)st.st_uid};
    uint64_t fp = fnv(14695981039346656037ULL, v, sizeof v);
    char *json = NULL;
    if (asprintf(&json, "%s/plugin.json", dir) < 0)
        return fp | 1;
    char *lib = library_name(json);
    free(json);
    if (!lib)
        return (fp + all_entries_hash(dir)) | 1;
    fp += file_hash(dir, "plugin.json") + 3 * file_hash(dir, lib);
    free(lib);
    return fp | 1;
}

static fp_entry *fp_find(reloader *rl, const char *dir)
{
    for (size_t i = 0; i < rl->n_fps; i++) {
        if (!strcmp(rl->fps[i].dir, dir))
            return &rl->fps[i];
    }
    return NULL;
}

static void fp_set(reloader *rl, const char *dir, uint64_t fp)
{
    fp_entry *e = fp_find(rl, dir);
    if (e) {
        e->fp = fp;
        return;
    }
    if (rl->n_fps == rl->cap_fps) {
        size_t cap = rl->cap_fps ? rl->cap_fps * 2 : 32;
        fp_entry *grown = realloc(rl->fps, cap * sizeof *grown);
        if (!grown)
            return; /* then it is reloaded at the next rescan: harmless */
        rl->fps = grown;
        rl->cap_fps = cap;
    }
    char *copy = strdup(dir);
    if (!copy)
        return;
    rl->fps[rl->n_fps].dir = copy;
    rl->fps[rl->n_fps].fp = fp;
    rl->n_fps++;
}

static void fp_remove(reloader *rl, size_t i)
{
    free(rl->fps[i].dir);
    rl->fps[i] = rl->fps[--rl->n_fps];
}

/* ---- the daemon's own data directory ------------------------------------------ */

/* 1 when path is the directory `top` (device and inode) or lies beneath it:
 * path's real parents are compared up to "/", so another spelling, a
 * symlink or a bind mount of the directory is recognised, and a folder that
 * merely has the same name is not. */
static int is_within(const char *path, const struct stat *top)
{
    char *real = realpath(path, NULL);
    if (!real)
        return 0;
    int found = 0;
    for (;;) {
        struct stat st;
        if (stat(real, &st) == 0 && st.st_dev == top->st_dev && st.st_ino == top->st_ino) {
            found = 1;
            break;
        }
        char *slash = strrchr(real, '/');
        if (!slash || (slash == real && !real[1]))
            break;
        if (slash == real)
            slash[1] = '\0'; /* "/a" -> "/" */
        else
            *slash = '\0'; /* "/a/b" -> "/a" */
    }
    free(real);
    return found;
}

/* The data directory's device and inode; 0 when there is none to keep out
 * (not configured, or not there: then nothing lies beneath it either). */
static int data_stat(const reloader *rl, struct stat *st)
{
    return rl->data_dir && stat(rl->data_dir, st) == 0 && S_ISDIR(st->st_mode);
}

int reloader_is_data(const reloader *rl, const char *path)
{
    struct stat top;
    return path && data_stat(rl, &top) && is_within(path, &top);
}

/* ---- the folders on disk ------------------------------------------------------ */

typedef struct strlist {
    char **items;
    size_t n, cap;
} strlist;

static int strlist_add(strlist *l, char *s)
{
    if (!s)
        return -1;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        char **grown = realloc(l->items, cap * sizeof *grown);
        if (!grown) {
            free(s);
            return -1;
        }
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n++] = s;
    return 0;
}

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

static int strlist_has(const strlist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++) {
        if (!strcmp(l->items[i], s))
            return 1;
    }
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The plugin folders of dir ("<dir>/<name>", as loader_scan_dir names
 * them), in name order, at most EVH_PLUGINS_PER_DIR_MAX, leaving out the
 * data directory and what lies beneath it.  -1 (errno) when dir cannot be
 * read. */
static int list_folders(const reloader *rl, const char *dir, strlist *out)
{
    struct stat data;
    int has_data = data_stat(rl, &data);
    DIR *dh = opendir(dir);
    if (!dh)
        return -1;
    strlist names = {0};
    struct dirent *e;
    while ((e = readdir(dh)) != NULL) {
        if (e->d_name[0] != '.')
            strlist_add(&names, strdup(e->d_name));
    }
    closedir(dh);
    if (names.n)
        qsort(names.items, names.n, sizeof *names.items, name_cmp);
    size_t folders = 0;
    for (size_t i = 0; i < names.n; i++) {
        char *path = NULL;
        struct stat st;
        if (asprintf(&path, "%s/%s", dir, names.items[i]) < 0)
            break;
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode) || (has_data && is_within(path, &data))) {
            free(path);
            continue;
        }
        if (folders == EVH_PLUGINS_PER_DIR_MAX) {
            log_error("loader",
                      "plugin directory %s: more than %d plugin folders; '%s' and "
                      "after are ignored",
                      dir, EVH_PLUGINS_PER_DIR_MAX, names.items[i]);
            free(path);
            break;
        }
        folders++;
        strlist_add(out, path);
    }
    strlist_free(&names);
    return 0;
}

/* The directory index of a record's folder, or -1 when it is not directly
 * in one of ours. */
static int dir_of(const reloader *rl, const char *folder)
{
    for (size_t i = 0; folder && i < rl->n_dirs; i++) {
        size_t n = strlen(rl->dirs[i]);
        if (!strncmp(folder, rl->dirs[i], n) && folder[n] == '/' && folder[n + 1] &&
            !strchr(folder + n + 1, '/'))
            return (int)i;
    }
    return -1;
}

static plugin *record_of(const reloader *rl, const char *folder)
{
    for (size_t i = 0; i < rl->r->count; i++) {
        if (rl->r->items[i]->dir && !strcmp(rl->r->items[i]->dir, folder))
            return rl->r->items[i];
    }
    return NULL;
}

/* ---- the reloader ---------------------------------------------------------------- */

reloader *reloader_new(registry *r, runtime *rt, const reload_options *o)
{
    reloader *rl = calloc(1, sizeof *rl);
    if (!rl)
        return NULL;
    rl->r = r;
    rl->rt = rt;
    rl->dirs = calloc(o->n_dirs ? o->n_dirs : 1, sizeof *rl->dirs);
    rl->copy_dir = o->library_copy_dir ? strdup(o->library_copy_dir) : NULL;
    rl->data_dir = o->data_dir ? strdup(o->data_dir) : NULL;
    if (!rl->dirs || (o->library_copy_dir && !rl->copy_dir) || (o->data_dir && !rl->data_dir)) {
        reloader_free(rl);
        return NULL;
    }
    for (size_t i = 0; i < o->n_dirs; i++) {
        if ((rl->dirs[i] = strdup(o->dirs[i])) == NULL) {
            reloader_free(rl);
            return NULL;
        }
        rl->n_dirs++;
        /* said once: otherwise its plugins would be left out in silence */
        if (reloader_is_data(rl, o->dirs[i]))
            log_warn("loader",
                     "plugin directory %s is inside the data directory %s: its folders "
                     "are the daemon's own data and are never loaded as plugins; keep "
                     "plugins elsewhere",
                     o->dirs[i], o->data_dir);
    }
    rl->lopt = (loader_options){.plugin_configs = o->plugin_configs,
                                .skip_permission_check = o->skip_permission_check,
                                .library_copy_dir = rl->copy_dir};
    rl->revalidate = o->revalidate;
    rl->revalidate_ud = o->revalidate_ud;
    atomic_init(&rl->running, 0);
    pthread_mutex_init(&rl->lock, NULL);
    rl->lock_ready = 1;
    for (size_t i = 0; i < r->count; i++) {
        if (dir_of(rl, r->items[i]->dir) >= 0)
            fp_set(rl, r->items[i]->dir, fingerprint(r->items[i]->dir));
    }
    return rl;
}

void reloader_free(reloader *rl)
{
    if (!rl)
        return;
    for (size_t i = 0; i < rl->n_dirs; i++)
        free(rl->dirs[i]);
    free(rl->dirs);
    for (size_t i = 0; i < rl->n_fps; i++)
        free(rl->fps[i].dir);
    free(rl->fps);
    free(rl->copy_dir);
    free(rl->data_dir);
    if (rl->lock_ready)
        pthread_mutex_destroy(&rl->lock);
    free(rl);
}

const char *const *reloader_dirs(const reloader *rl, size_t *n)
{
    *n = rl->n_dirs;
    return (const char *const *)rl->dirs;
}

void reloader_set_running(reloader *rl)
{
    atomic_store(&rl->running, 1);
}

int reloader_load_initial(reloader *rl)
{
    int loaded = 0;
    pthread_mutex_lock(&rl->lock);
    for (size_t i = 0; i < rl->n_dirs; i++) {
        strlist folders = {0};
        if (list_folders(rl, rl->dirs[i], &folders) != 0) {
            log_error("loader", "plugin directory %s: %s", rl->dirs[i], strerror(errno));
            continue;
        }
        for (size_t j = 0; j < folders.n; j++) {
            /* fingerprinted before loading: a change while it loads is a
             * change for the next rescan */
            uint64_t fp = fingerprint(folders.items[j]);
            plugin *p = loader_load_checked(rl->r, rl->rt, folders.items[j], &rl->lopt);
            if (!p)
                continue;
            if (registry_add(rl->r, p) != EVH_OK) {
                log_error("loader", "plugin folder %s: out of memory", folders.items[j]);
                plugin_free(p);
                continue;
            }
            fp_set(rl, folders.items[j], fp);
            loaded += p->state == PLUGIN_READY || p->state == PLUGIN_LOADED ||
                      p->state == PLUGIN_INACTIVE;
        }
        strlist_free(&folders);
    }
    pthread_mutex_unlock(&rl->lock);
    return loaded;
}

size_t reloader_reap(reloader *rl)
{
    pthread_mutex_lock(&rl->lock);
    size_t n = registry_reap(rl->r);
    pthread_mutex_unlock(&rl->lock);
    return n;
}

/* ---- one rescan ------------------------------------------------------------------ */

static const char *kind_name(int kind)
{
    return kind == EVH_KIND_SOURCE ? "event-source"
           : kind == EVH_KIND_STEP ? "workflow-step"
                                   : "unknown";
}

static const char *version_of(const plugin *p)
{
    return p->m && p->m->version ? p->m->version : NULL;
}

static cJSON *str_or_null(const char *s)
{
    return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

/* A one-record registry for the loader's functions over all records. */
static registry one_record(plugin **p)
{
    registry one;
    memset(&one, 0, sizeof one);
    one.items = p;
    one.count = one.cap = 1;
    return one;
}

/* Stop p's source thread, if it has one, within the stop deadline: its
 * state becomes "stopped" or "abandoned". */
static void stop_one(plugin *p)
{
    if (!p->thread_started)
        return;
    registry one = one_record(&p);
    loader_stop_sources(&one);
}

static void start_one(plugin *p)
{
    registry one = one_record(&p);
    loader_start_sources(&one);
}

/* The state a retired record is in for the report. */
static const char *retired_state(const plugin *p)
{
    if (p->state == PLUGIN_ABANDONED)
        return "abandoned";
    if (atomic_load(&p->refs) > 0 || (p->m && hostapi_live_instances(p->m) > (p->host ? 1u : 0u)))
        return "draining";
    return p->kind == EVH_KIND_SOURCE && p->state == PLUGIN_STOPPED ? "stopped" : "unloaded";
}

static void remove_record(reloader *rl, plugin *p, cJSON *report)
{
    registry_wrlock(rl->r);
    int rc = registry_retire(rl->r, p);
    registry_unlock(rl->r);
    if (rc != EVH_OK) {
        log_error("loader", "plugin '%s': cannot retire it: %s", p->id, evh_status_message(rc));
        return;
    }
    stop_one(p);
    log_info("loader", "plugin '%s'%s%s removed (%s was deleted)%s", p->id,
             version_of(p) ? " " : "", version_of(p) ? version_of(p) : "", p->dir,
             p->state == PLUGIN_ABANDONED ? "; its source did not stop and is abandoned" : "");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "id", str_or_null(p->id));
    cJSON_AddItemToObject(o, "version", str_or_null(version_of(p)));
    cJSON_AddStringToObject(o, "kind", kind_name(p->kind));
    cJSON_AddItemToObject(o, "dir", str_or_null(p->dir));
    cJSON_AddStringToObject(o, "old_state", retired_state(p));
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(report, "removed"), o);
}

static void report_failed(cJSON *report, const plugin *cand, const char *folder, const char *kept)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "id", str_or_null(cand ? cand->id : NULL));
    cJSON_AddStringToObject(o, "dir", folder);
    cJSON_AddItemToObject(o, "error",
                          str_or_null(cand && cand->error ? cand->error : "out of memory"));
    cJSON_AddItemToObject(o, "kept", str_or_null(kept));
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(report, "failed"), o);
}

static int usable(const plugin *p)
{
    return p->state == PLUGIN_READY || p->state == PLUGIN_LOADED || p->state == PLUGIN_INACTIVE ||
           p->state == PLUGIN_RUNNING;
}

static void report_loaded(cJSON *report, const plugin *p, const char *folder)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "id", str_or_null(p->id));
    cJSON_AddItemToObject(o, "version", str_or_null(version_of(p)));
    cJSON_AddStringToObject(o, "kind", kind_name(p->kind));
    cJSON_AddStringToObject(o, "dir", folder);
    cJSON_AddStringToObject(o, "state", plugin_state_name(p->state));
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(report, "loaded"), o);
}

/* Load folder (new, or changed: rec is its record) and put it in force. */
static void apply_folder(reloader *rl, const char *folder, plugin *rec, cJSON *report)
{
    /* checked for duplicates against every plugin but the one it replaces */
    registry others;
    memset(&others, 0, sizeof others);
    others.items = calloc(rl->r->count ? rl->r->count : 1, sizeof *others.items);
    for (size_t i = 0; others.items && i < rl->r->count; i++) {
        if (rl->r->items[i] != rec)
            others.items[others.count++] = rl->r->items[i];
    }
    others.cap = others.count;
    plugin *cand = others.items ? loader_load_checked(&others, rl->rt, folder, &rl->lopt) : NULL;
    free(others.items);
    if (!cand) {
        report_failed(report, NULL, folder, rec && usable(rec) ? version_of(rec) : NULL);
        return;
    }
    int ok = usable(cand);
    int start = ok && cand->kind == EVH_KIND_SOURCE && cand->state == PLUGIN_READY &&
                atomic_load(&rl->running);
    if (!rec) {
        if (start)
            start_one(cand);
        registry_wrlock(rl->r);
        int rc = registry_add(rl->r, cand);
        registry_unlock(rl->r);
        if (rc != EVH_OK) {
            plugin_free(cand); /* stops it again */
            report_failed(report, NULL, folder, NULL);
            return;
        }
        if (!ok) {
            log_warn("loader",
                     "plugin folder %s is not loaded (see the error above); it is "
                     "tried again when its files change",
                     folder);
            report_failed(report, cand, folder, NULL);
            return;
        }
        report_loaded(report, cand, folder);
        return;
    }
    if (!ok && usable(rec)) {
        /* rollback: the version in force stays */
        log_warn("loader",
                 "plugin '%s': the new files in %s did not load; version %s stays in "
                 "force (tried again when the files change)",
                 rec->id, folder, version_of(rec) ? version_of(rec) : "?");
        char *why = cand->error ? strdup(cand->error) : NULL;
        registry_wrlock(rl->r);
        free(rec->reload_error);
        rec->reload_error = why;
        registry_unlock(rl->r);
        report_failed(report, cand, folder, version_of(rec));
        plugin_free(cand);
        return;
    }
    /* side by side: the new one is loaded; swap, then stop and drain the old */
    int was_usable = usable(rec);
    registry_wrlock(rl->r);
    int rc = registry_replace(rl->r, rec, cand);
    registry_unlock(rl->r);
    if (rc != EVH_OK) {
        report_failed(report, NULL, folder, usable(rec) ? version_of(rec) : NULL);
        plugin_free(cand);
        return;
    }
    stop_one(rec);
    if (start)
        start_one(cand);
    if (!ok) { /* a failed record replaced by a failed one: the new error shows */
        log_warn("loader",
                 "plugin folder %s is still not loaded (see the error above); it is "
                 "tried again when its files change",
                 folder);
        report_failed(report, cand, folder, NULL);
        return;
    }
    if (!was_usable) { /* it failed before (half-copied?): now it loads */
        report_loaded(report, cand, folder);
        return;
    }
    int same = !strcmp(rec->id, cand->id);
    log_info("loader", "plugin '%s' %s replaced by %s%s%s%s from %s%s", rec->id,
             version_of(rec) ? version_of(rec) : "?", same ? "" : "'", same ? "" : cand->id,
             same ? "" : "' ", version_of(cand) ? version_of(cand) : "?", folder,
             rec->state == PLUGIN_ABANDONED ? "; the old source did not stop and is abandoned"
                                            : "");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "id", str_or_null(cand->id));
    cJSON_AddItemToObject(o, "from", str_or_null(version_of(rec)));
    cJSON_AddItemToObject(o, "to", str_or_null(version_of(cand)));
    cJSON_AddStringToObject(o, "kind", kind_name(cand->kind));
    cJSON_AddStringToObject(o, "dir", folder);
    cJSON_AddStringToObject(o, "state", plugin_state_name(cand->state));
    cJSON_AddStringToObject(o, "old_state", retired_state(rec));
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(report, "replaced"), o);
}

/* Whether a failed plugin whose files did not change is tried again: on
 * demand, or after a removal when it was refused as a duplicate (the other
 * one may be gone).  Never one whose init was abandoned at its deadline and
 * still runs (a live instance without the record's): each try would leave
 * one more hung thread; changing its files retries it. */
static int retry(const plugin *rec, int on_demand, int removed)
{
    if (rec->state != PLUGIN_FAILED || (rec->m && !rec->host && hostapi_live_instances(rec->m) > 0))
        return 0;
    return on_demand || (removed && rec->error_code == EVH_E_DUPLICATE);
}

static cJSON *report_new(void)
{
    cJSON *r = cJSON_CreateObject();
    if (!r)
        return NULL;
    static const char *const lists[] = {"loaded", "replaced", "removed", "failed"};
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) {
        if (!cJSON_AddArrayToObject(r, lists[i])) {
            cJSON_Delete(r);
            return NULL;
        }
    }
    return r;
}

static int list_size(const cJSON *report, const char *key)
{
    return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(report, key));
}

cJSON *reloader_rescan(reloader *rl, int on_demand)
{
    cJSON *report = report_new();
    if (!report)
        return NULL;
    pthread_mutex_lock(&rl->lock);
    strlist folders = {0};
    /* a directory that cannot be read now (but exists) keeps its plugins */
    char *unreadable = calloc(rl->n_dirs ? rl->n_dirs : 1, 1);
    for (size_t i = 0; i < rl->n_dirs; i++) {
        if (list_folders(rl, rl->dirs[i], &folders) == 0)
            continue;
        int err = errno;
        if (unreadable && err != ENOENT)
            unreadable[i] = 1;
        if (on_demand || err != ENOENT)
            log_error("loader", "plugin directory %s: %s", rl->dirs[i], strerror(err));
    }
    /* removed folders first: their ids and endpoints are free again */
    size_t unchanged = 0;
    int removed = 0;
    for (size_t i = rl->r->count; i-- > 0;) {
        plugin *p = rl->r->items[i];
        int d = dir_of(rl, p->dir);
        if (d >= 0 && unreadable && !unreadable[d] && !strlist_has(&folders, p->dir)) {
            remove_record(rl, p, report);
            removed = 1;
        }
    }
    for (size_t i = rl->n_fps; i-- > 0;) {
        if (!strlist_has(&folders, rl->fps[i].dir))
            fp_remove(rl, i);
    }
    for (size_t i = 0; i < folders.n; i++) {
        const char *folder = folders.items[i];
        uint64_t fp = fingerprint(folder);
        const fp_entry *e = fp_find(rl, folder);
        plugin *rec = record_of(rl, folder);
        if (rec && e && e->fp == fp && !retry(rec, on_demand, removed)) {
            unchanged++;
            continue;
        }
        fp_set(rl, folder, fp);
        apply_folder(rl, folder, rec, report);
    }
    strlist_free(&folders);
    free(unreadable);
    int changed = list_size(report, "loaded") + list_size(report, "replaced") +
                  list_size(report, "removed") + list_size(report, "failed");
    cJSON *problems = cJSON_AddArrayToObject(report, "problems");
    if ((changed || on_demand) && rl->revalidate) {
        diag d;
        diag_init(&d, NULL);
        rl->revalidate(rl->revalidate_ud, &d);
        for (size_t i = 0; i < d.count; i++) {
            char *line = diag_format_item(&d, i);
            cJSON_AddItemToArray(problems, cJSON_CreateString(line ? line : "out of memory"));
            free(line);
        }
        diag_free(&d);
    }
    size_t draining = registry_reap(rl->r);
    cJSON_AddNumberToObject(report, "unchanged", (double)unchanged);
    cJSON_AddNumberToObject(report, "draining", (double)draining);
    if (changed)
        log_info("loader",
                 "plugin reload: %d loaded, %d replaced, %d removed, %d failed; %zu "
                 "unchanged, %zu draining",
                 list_size(report, "loaded"), list_size(report, "replaced"),
                 list_size(report, "removed"), list_size(report, "failed"), unchanged, draining);
    pthread_mutex_unlock(&rl->lock);
    return report;
}

cJSON *reloader_api(void *ud)
{
    return reloader_rescan(ud, 1);
}
