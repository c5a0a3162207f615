/* file_monitor - watches folders with inotify and emits <prefix>_added,
 * <prefix>_modified and <prefix>_deleted for the files whose name matches the
 * configured patterns.  Built as "pdf-monitor-event-source" (prefix
 * "pdf_file", patterns ["*.pdf"]); nothing in here knows about PDFs, so a
 * monitor for other files is this same file built under another id with its
 * own plugin.json (see docs/plugins.md).
 *
 * How changes become events:
 *   - a file counts as written when it is closed after writing
 *     (IN_CLOSE_WRITE) or moved in (IN_MOVED_TO); it counts as gone on
 *     IN_DELETE / IN_MOVED_FROM.  Either marks the path "pending";
 *   - a pending path is looked at debounce_ms after its LAST event (more
 *     writes or closes push that back), so one copy is one event;
 *   - then the file on disk is compared with what was last reported: new ->
 *     added, changed (size, mtime, ctime or inode) -> modified, missing ->
 *     deleted; unchanged (opened for writing, closed untouched) -> nothing.
 * Files present at start are remembered, not reported.  With `recursive`,
 * sub-folders are watched too, including ones created later (their files are
 * scanned when the folder appears, so none is missed in the race).  On a
 * queue overflow (IN_Q_OVERFLOW) the folders are rescanned.
 *
 * run() sleeps in poll() on the inotify fd and an eventfd that stop() writes,
 * so it returns as soon as the host stops. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* FNM_CASEFOLD, st_mtim */
#endif
#include <evhost/evhost.h>

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The plugin id (it must equal plugin.json's "id"); a derived monitor is
 * compiled with -DFILE_MONITOR_ID='"its-id"'. */
#ifndef FILE_MONITOR_ID
#define FILE_MONITOR_ID "pdf-monitor-event-source"
#endif

#define IDLE_POLL_MS 1000 /* poll wakes at least this often to check stopping */
#define RETRY_MS 100      /* after EVH_E_QUEUE_FULL */

/* What stat says about a file; any difference is a change. */
typedef struct filestate {
    int64_t size, mtime_ns, ctime_ns;
    uint64_t ino;
} filestate;

/* A file that was reported (known) and/or has changes to look at (pending). */
typedef struct entry {
    struct entry *next; /* hash chain */
    char *path;
    size_t root;    /* index in folders */
    int known;      /* reported as existing (or present at start) */
    filestate seen; /* when known: as last reported */
    int64_t due_ms; /* pending: look at it then (monotonic); 0: not pending */
} entry;

/* A watched folder.  Kept sorted by wd (the kernel hands them out in
 * increasing order), so one is found by binary search. */
typedef struct dirwatch {
    int wd;
    int is_root; /* one of the configured folders */
    char *path;  /* NULL: no longer watched (dropped at the next compaction) */
    size_t root; /* index in folders */
} dirwatch;

typedef struct monitor {
    const evh_host_api *api;
    evh_host *host;
    int ifd, wake;  /* inotify; eventfd written by stop() */
    char **folders; /* canonical paths */
    size_t n_folders;
    const char **patterns; /* borrowed from the config */
    size_t n_patterns;
    int fnm_flags, recursive;
    int64_t debounce_ms;
    char t_added[96], t_modified[96], t_deleted[96];
    dirwatch *dirs; /* sorted by wd */
    size_t n_dirs, cap_dirs, dead_dirs;
    entry **buckets;
    size_t n_buckets, n_entries;
    entry **pending;
    size_t n_pending, cap_pending;
} monitor;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    if (a && dir[a - 1] == '/') /* "/" */
        a--;
    char *p = malloc(a + b + 2);
    if (p) {
        memcpy(p, dir, a);
        p[a] = '/';
        memcpy(p + a + 1, name, b + 1);
    }
    return p;
}

static int matches(const monitor *m, const char *name)
{
    for (size_t i = 0; i < m->n_patterns; i++)
        if (fnmatch(m->patterns[i], name, m->fnm_flags) == 0)
            return 1;
    return 0;
}

/* ---- the files: a hash table by path, and the pending list ------------- */

static size_t hash_path(const char *s)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211u;
    }
    return (size_t)h;
}

static entry **slot_of(monitor *m, const char *path)
{
    entry **p = &m->buckets[hash_path(path) & (m->n_buckets - 1)];
    while (*p && strcmp((*p)->path, path) != 0)
        p = &(*p)->next;
    return p;
}

static int grow_table(monitor *m)
{
    size_t n = m->n_buckets ? m->n_buckets * 2 : 64;
    entry **b = calloc(n, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < m->n_buckets; i++) {
        for (entry *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            size_t k = hash_path(e->path) & (n - 1);
            e->next = b[k];
            b[k] = e;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->n_buckets = n;
    return 0;
}

/* The entry for path, created (neither known nor pending) when missing. */
static entry *entry_get(monitor *m, const char *path, size_t root)
{
    entry **p = slot_of(m, path);
    if (*p)
        return *p;
    if (m->n_entries >= m->n_buckets) {
        if (grow_table(m) != 0)
            return NULL;
        p = slot_of(m, path);
    }
    entry *e = calloc(1, sizeof *e);
    if (!e || !(e->path = strdup(path))) {
        free(e);
        return NULL;
    }
    e->root = root;
    *p = e;
    m->n_entries++;
    return e;
}

static void entry_remove(monitor *m, entry *e)
{
    entry **p = slot_of(m, e->path);
    *p = e->next;
    m->n_entries--;
    free(e->path);
    free(e);
}

/* Look at e after debounce_ms (again, if it was pending already). */
static void make_pending(monitor *m, entry *e)
{
    if (e->due_ms == 0) {
        if (m->n_pending == m->cap_pending) {
            size_t cap = m->cap_pending ? m->cap_pending * 2 : 16;
            entry **p = realloc(m->pending, cap * sizeof *p);
            if (!p) {
                m->api->log(m->host, EVH_LOG_ERROR, "out of memory: %s is not reported", e->path);
                return;
            }
            m->pending = p;
            m->cap_pending = cap;
        }
        m->pending[m->n_pending++] = e;
    }
    e->due_ms = now_ms() + m->debounce_ms;
}

static filestate state_of(const struct stat *st)
{
    filestate f = {
        (int64_t)st->st_size, (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec,
        (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec, (uint64_t)st->st_ino};
    return f;
}

static int same_state(const filestate *a, const filestate *b)
{
    return a->size == b->size && a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns &&
           a->ino == b->ino;
}

/* ---- folders: watches and scans ----------------------------------------- */

static uint32_t watch_mask(const monitor *m)
{
    return IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_MODIFY | IN_DELETE_SELF |
           IN_MOVE_SELF | IN_ONLYDIR | (m->recursive ? IN_CREATE : 0);
}

/* The index of the first folder with a wd >= wd. */
static size_t dir_index(const monitor *m, int wd)
{
    size_t lo = 0, hi = m->n_dirs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->dirs[mid].wd < wd)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The watched folder of wd, or NULL.  Valid until the next add_watch. */
static dirwatch *find_dir(monitor *m, int wd)
{
    size_t i = dir_index(m, wd);
    return i < m->n_dirs && m->dirs[i].wd == wd && m->dirs[i].path ? &m->dirs[i] : NULL;
}

static void drop_dir(monitor *m, dirwatch *d)
{
    free(d->path);
    d->path = NULL;
    m->dead_dirs++;
}

/* Remove the dropped folders from the array (never while walking it). */
static void compact_dirs(monitor *m)
{
    if (m->dead_dirs < 64 || m->dead_dirs < m->n_dirs / 2)
        return;
    size_t keep = 0;
    for (size_t i = 0; i < m->n_dirs; i++)
        if (m->dirs[i].path)
            m->dirs[keep++] = m->dirs[i];
    m->n_dirs = keep;
    m->dead_dirs = 0;
}

/* Watch dir; returns the watch descriptor, or -1 (errno set). */
static int add_watch(monitor *m, const char *dir, size_t root, int is_root)
{
    int wd = inotify_add_watch(m->ifd, dir, watch_mask(m) | (is_root ? 0 : IN_DONT_FOLLOW));
    if (wd < 0)
        return -1;
    size_t i = dir_index(m, wd);
    if (i < m->n_dirs && m->dirs[i].wd == wd && m->dirs[i].path)
        return wd; /* the same directory again (listed twice, or nested) */
    char *copy = strdup(dir);
    if (copy && !(i < m->n_dirs && m->dirs[i].wd == wd) && m->n_dirs == m->cap_dirs) {
        size_t cap = m->cap_dirs ? m->cap_dirs * 2 : 16;
        dirwatch *d = realloc(m->dirs, cap * sizeof *d);
        if (d) {
            m->dirs = d;
            m->cap_dirs = cap;
        } else {
            free(copy);
            copy = NULL;
        }
    }
    if (!copy) {
        inotify_rm_watch(m->ifd, wd);
        errno = ENOMEM;
        return -1;
    }
    if (i < m->n_dirs && m->dirs[i].wd == wd) {
        m->dead_dirs--; /* a dropped slot of the same wd comes back */
    } else {
        memmove(&m->dirs[i + 1], &m->dirs[i], (m->n_dirs - i) * sizeof *m->dirs);
        m->n_dirs++;
    }
    m->dirs[i] = (dirwatch){.wd = wd, .is_root = is_root, .path = copy, .root = root};
    return wd;
}

static void warn_watch(monitor *m, const char *dir)
{
    m->api->log(m->host, EVH_LOG_WARN, "cannot watch %s: %s%s", dir, strerror(errno),
                errno == ENOSPC ? " (raise the sysctl fs.inotify.max_user_watches)" : "");
}

/*
 * Read dir: with `pending`, every matching file becomes pending (the next
 * look decides added / modified / nothing); without, matching files are
 * remembered as they are (the start).  Sub-folders are watched and scanned
 * when recursive.
 */
static void scan_dir(monitor *m, const char *dir, size_t root, int pending)
{
    DIR *d = opendir(dir);
    if (!d) {
        m->api->log(m->host, EVH_LOG_WARN, "cannot read %s: %s", dir, strerror(errno));
        return;
    }
    for (struct dirent *de; (de = readdir(d));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *path = join(dir, de->d_name);
        struct stat st;
        if (!path || lstat(path, &st) != 0) {
            free(path);
            continue;
        }
        if (S_ISDIR(st.st_mode) && m->recursive) { /* symlinked folders are not followed */
            if (add_watch(m, path, root, 0) < 0)
                warn_watch(m, path);
            else
                scan_dir(m, path, root, pending);
        } else if (!S_ISDIR(st.st_mode) && matches(m, de->d_name) && stat(path, &st) == 0 &&
                   S_ISREG(st.st_mode)) {
            entry *e = entry_get(m, path, root);
            if (e && pending) {
                make_pending(m, e);
            } else if (e && !e->known) {
                e->known = 1;
                e->seen = state_of(&st);
            }
        }
        free(path);
    }
    closedir(d);
}

/* A folder moved away or deleted: stop watching it and below; its files
 * are looked at (they are gone now: deleted). */
static void forget_dir(monitor *m, const char *dir)
{
    size_t n = strlen(dir);
    for (size_t i = 0; i < m->n_dirs; i++) {
        const char *p = m->dirs[i].path;
        if (p && !strncmp(p, dir, n) && (p[n] == '\0' || p[n] == '/')) {
            inotify_rm_watch(m->ifd, m->dirs[i].wd);
            drop_dir(m, &m->dirs[i]);
        }
    }
    for (size_t i = 0; i < m->n_buckets; i++)
        for (entry *e = m->buckets[i]; e; e = e->next)
            if (e->known && !strncmp(e->path, dir, n) && e->path[n] == '/')
                make_pending(m, e);
}

/* After a queue overflow: every known file and every file present is
 * looked at again; sub-folders missed are watched. */
static void rescan(monitor *m)
{
    for (size_t i = 0; i < m->n_buckets; i++)
        for (entry *e = m->buckets[i]; e; e = e->next)
            make_pending(m, e);
    for (size_t root = 0; root < m->n_folders; root++) {
        int watched = 0; /* still (a folder deleted or moved away is not) */
        for (size_t i = 0; i < m->n_dirs && !watched; i++)
            watched = m->dirs[i].path && m->dirs[i].is_root && m->dirs[i].root == root;
        if (watched)
            scan_dir(m, m->folders[root], root, 1);
    }
}

/* ---- events in -------------------------------------------------------- */

static void on_event(monitor *m, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW) {
        m->api->log(m->host, EVH_LOG_WARN,
                    "inotify queue overflowed (events were lost): rescanning the folders "
                    "(raise the sysctl fs.inotify.max_queued_events if this repeats)");
        rescan(m);
        return;
    }
    dirwatch *d = find_dir(m, ev->wd);
    if (!d)
        return;
    if (ev->mask & IN_IGNORED) { /* the kernel dropped the watch */
        drop_dir(m, d);
        return;
    }
    if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
        if (d->is_root) {
            m->api->log(m->host, EVH_LOG_WARN, "folder %s was %s: no longer watched", d->path,
                        ev->mask & IN_DELETE_SELF ? "deleted" : "moved");
            char *dir = strdup(d->path);
            if (dir)
                forget_dir(m, dir);
            free(dir);
        }
        return;
    }
    if (ev->len == 0)
        return;
    size_t root = d->root; /* d is not used after add_watch below */
    char *path = join(d->path, ev->name);
    if (!path)
        return;
    if (ev->mask & IN_ISDIR) {
        if (m->recursive && (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
            if (add_watch(m, path, root, 0) < 0)
                warn_watch(m, path);
            else
                scan_dir(m, path, root, 1); /* files made before the watch */
        } else if (m->recursive && (ev->mask & (IN_DELETE | IN_MOVED_FROM))) {
            forget_dir(m, path);
        }
    } else if (matches(m, ev->name)) {
        entry *e;
        if (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) {
            if ((e = entry_get(m, path, root)))
                make_pending(m, e);
        } else if (ev->mask & (IN_DELETE | IN_MOVED_FROM)) {
            if ((e = *slot_of(m, path)))
                make_pending(m, e);
        } else if (ev->mask & IN_MODIFY) { /* still being written: wait longer */
            if ((e = *slot_of(m, path)) && e->due_ms)
                make_pending(m, e);
        }
    }
    free(path);
}

static void read_events(monitor *m)
{
    union {
        struct inotify_event ev; /* for the alignment */
        char bytes[64 * 1024];
    } buf;
    for (;;) {
        ssize_t n = read(m->ifd, buf.bytes, sizeof buf.bytes);
        if (n <= 0)
            return; /* EAGAIN: all read */
        for (char *p = buf.bytes; p < buf.bytes + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)(void *)p;
            on_event(m, ev);
            p += sizeof *ev + ev->len;
        }
        compact_dirs(m);
    }
}

/* ---- events out ------------------------------------------------------- */

static int32_t emit_file(monitor *m, const char *type, const entry *e, const filestate *f)
{
    const evh_host_api *api = m->api;
    const char *slash = strrchr(e->path, '/');
    time_t secs = (time_t)(f->mtime_ns / 1000000000);
    struct tm tm;
    char when[40];
    gmtime_r(&secs, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    char *path = api->json_quote(e->path);
    char *name = api->json_quote(slash ? slash + 1 : e->path);
    char *folder = api->json_quote(m->folders[e->root]);
    char *data = path && name && folder
                     ? api->mprintf("{\"path\":%s,\"name\":%s,\"size\":%lld,"
                                    "\"modified_at\":\"%s.%03dZ\",\"folder\":%s}",
                                    path, name, (long long)f->size, when,
                                    (int)(f->mtime_ns % 1000000000 / 1000000), folder)
                     : NULL;
    int32_t rc = data ? api->emit(m->host, type, data, EVH_NUL_TERMINATED, NULL) : EVH_E_NOMEM;
    if (rc != EVH_OK && rc != EVH_E_STOPPING)
        api->log(m->host, rc == EVH_E_QUEUE_FULL ? EVH_LOG_WARN : EVH_LOG_ERROR,
                 "%s %s not accepted: %s%s", type, e->path, evh_status_message(rc),
                 rc == EVH_E_QUEUE_FULL ? " (will retry)" : "");
    api->free(data);
    api->free(folder);
    api->free(name);
    api->free(path);
    return rc;
}

/* Compare the file on disk with what was reported and say what changed.
 * Returns EVH_OK when e is settled (e may be freed), or EVH_E_QUEUE_FULL /
 * EVH_E_STOPPING when it must stay pending. */
static int32_t settle(monitor *m, entry *e)
{
    struct stat st;
    int exists = stat(e->path, &st) == 0 && S_ISREG(st.st_mode);
    filestate now = exists ? state_of(&st) : e->seen;
    if (!exists && !e->known) { /* came and went before it was reported */
        entry_remove(m, e);
        return EVH_OK;
    }
    if (exists && e->known && same_state(&now, &e->seen)) {
        e->due_ms = 0; /* opened for writing, closed unchanged */
        return EVH_OK;
    }
    const char *type = !exists ? m->t_deleted : e->known ? m->t_modified : m->t_added;
    int32_t rc = emit_file(m, type, e, &now);
    if (rc == EVH_E_QUEUE_FULL || rc == EVH_E_STOPPING)
        return rc;
    if (!exists) {
        entry_remove(m, e);
        return EVH_OK;
    }
    e->known = 1;
    e->seen = now;
    e->due_ms = 0;
    return EVH_OK;
}

/* Settle the pending files whose time came; returns EVH_E_STOPPING when
 * the host is stopping. */
static int32_t flush_due(monitor *m)
{
    int64_t now = now_ms();
    int32_t rc = EVH_OK;
    size_t keep = 0;
    for (size_t i = 0; i < m->n_pending; i++) {
        entry *e = m->pending[i];
        if (rc == EVH_OK && e->due_ms <= now) {
            rc = settle(m, e);
            if (rc == EVH_OK)
                continue; /* no longer pending (maybe freed) */
            if (rc == EVH_E_QUEUE_FULL)
                e->due_ms = now + RETRY_MS;
        }
        m->pending[keep++] = e;
    }
    m->n_pending = keep;
    return rc == EVH_E_STOPPING ? rc : EVH_OK;
}

/* ---- lifecycle ---------------------------------------------------------- */

static void monitor_fini(void *ctx)
{
    monitor *m = ctx;
    for (size_t i = 0; i < m->n_buckets; i++) {
        for (entry *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e->path);
            free(e);
        }
    }
    for (size_t i = 0; i < m->n_dirs; i++)
        free(m->dirs[i].path);
    for (size_t i = 0; i < m->n_folders; i++)
        free(m->folders[i]);
    if (m->ifd >= 0)
        close(m->ifd);
    if (m->wake >= 0)
        close(m->wake);
    free(m->buckets);
    free(m->pending);
    free(m->dirs);
    free(m->folders);
    free(m->patterns);
    m->api->free(m);
}

/* The strings of config array `key`, borrowed, NULL-terminated; *n their
 * count.  NULL when out of memory. */
static const char **config_strings(monitor *m, const char *key, size_t *n)
{
    const char **list = NULL;
    for (*n = 0;; (*n)++) {
        char path[64];
        snprintf(path, sizeof path, "%s[%zu]", key, *n);
        const char *s = m->api->config_string(m->host, path, NULL);
        const char **grown = realloc(list, (*n + 1) * sizeof *list);
        if (!grown) {
            free(list);
            return NULL;
        }
        list = grown;
        list[*n] = s;
        if (!s)
            return list;
    }
}

/* Check the folders, watch them and remember what they hold. */
static int32_t open_folders(monitor *m, const char *const *given, char **errmsg)
{
    const evh_host_api *api = m->api;
    m->folders = calloc(m->n_folders + 1, sizeof *m->folders);
    if (!m->folders)
        return EVH_E_NOMEM;
    for (size_t i = 0; i < m->n_folders; i++) {
        struct stat st;
        char *real = realpath(given[i], NULL);
        if (!real || stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
            *errmsg = api->mprintf("folders[%zu]: '%s' %s", i, given[i],
                                   !real && errno == ENOENT ? "does not exist"
                                   : !real                  ? strerror(errno)
                                                            : "is not a directory");
            free(real);
            return EVH_E_CONFIG;
        }
        m->folders[i] = real;
        if (add_watch(m, real, i, 1) < 0) {
            *errmsg = api->mprintf(
                "folders[%zu]: cannot watch '%s': %s%s", i, given[i], strerror(errno),
                errno == ENOSPC ? " (raise the sysctl fs.inotify.max_user_watches)" : "");
            return EVH_E_CONFIG;
        }
    }
    for (size_t i = 0; i < m->n_folders; i++)
        scan_dir(m, m->folders[i], i, 0);
    return EVH_OK;
}

static int32_t monitor_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    monitor *m = api->alloc(sizeof *m);
    if (!m)
        return EVH_E_NOMEM;
    memset(m, 0, sizeof *m);
    m->api = api;
    m->host = host;
    m->ifd = m->wake = -1;
    /* configSchema checked types and filled the defaults. */
    const char *prefix = api->config_string(host, "event_prefix", "pdf_file");
    snprintf(m->t_added, sizeof m->t_added, "%s_added", prefix);
    snprintf(m->t_modified, sizeof m->t_modified, "%s_modified", prefix);
    snprintf(m->t_deleted, sizeof m->t_deleted, "%s_deleted", prefix);
    m->recursive = api->config_bool(host, "recursive", 0);
    m->fnm_flags = api->config_bool(host, "case_insensitive", 1) ? FNM_CASEFOLD : 0;
    m->debounce_ms = api->config_int(host, "debounce_ms", 500);
    const char **folders = config_strings(m, "folders", &m->n_folders);
    m->patterns = config_strings(m, "patterns", &m->n_patterns);
    int32_t rc = EVH_OK;
    if (!folders || !m->patterns || grow_table(m) != 0)
        rc = EVH_E_NOMEM;
    else if ((m->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0 ||
             (m->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        *errmsg = api->mprintf("%s: %s", m->ifd < 0 ? "inotify_init1" : "eventfd", strerror(errno));
        rc = EVH_E_IO;
    } else {
        rc = open_folders(m, folders, errmsg);
    }
    free(folders);
    if (rc != EVH_OK) {
        monitor_fini(m);
        return rc;
    }
    if (m->n_folders == 0)
        api->log(host, EVH_LOG_INFO,
                 "no folders configured: watching nothing (set "
                 "plugins.config." FILE_MONITOR_ID ".folders)");
    *ctx = m;
    return EVH_OK;
}

static int32_t monitor_run(void *ctx)
{
    monitor *m = ctx;
    while (!m->api->stopping(m->host)) {
        int timeout = IDLE_POLL_MS;
        int64_t now = now_ms();
        for (size_t i = 0; i < m->n_pending; i++) {
            int64_t left = m->pending[i]->due_ms - now;
            if (left < timeout)
                timeout = left < 0 ? 0 : (int)left;
        }
        struct pollfd fds[2] = {{.fd = m->ifd, .events = POLLIN},
                                {.fd = m->wake, .events = POLLIN}};
        if (poll(fds, 2, timeout) < 0 && errno != EINTR) {
            m->api->log(m->host, EVH_LOG_ERROR, "poll: %s", strerror(errno));
            return EVH_E_IO;
        }
        if (fds[1].revents)
            break; /* stop() */
        if (fds[0].revents)
            read_events(m);
        if (flush_due(m) == EVH_E_STOPPING)
            break;
    }
    return EVH_OK;
}

static void monitor_stop(void *ctx)
{
    monitor *m = ctx;
    uint64_t one = 1;
    if (write(m->wake, &one, sizeof one) < 0) {
        /* the counter is already set: run() wakes anyway */
    }
}

static const evh_source monitor_source = {.struct_size = sizeof(evh_source),
                                          .init = monitor_init,
                                          .run = monitor_run,
                                          .stop = monitor_stop,
                                          .fini = monitor_fini};

EVH_DECLARE_SOURCE(FILE_MONITOR_ID, &monitor_source)
