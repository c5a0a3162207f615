/*
 * watch.c - inotify on the plugin directories, debounce, rescan (watch.h).
 */
#include "watch.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "event.h"
#include "log.h"

#define WATCH_MASK                                                                                 \
    (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CLOSE_WRITE | IN_ATTRIB | IN_ONLYDIR)
#define TOP_MASK (WATCH_MASK | IN_DELETE_SELF | IN_MOVE_SELF)
#define TICK_MS 1000
#define MAX_WAIT_FACTOR 10

struct watcher {
    reloader *rl;
    int use_inotify;
    unsigned debounce_ms;
    int ifd;     /* inotify, -1 when off */
    int stop_fd; /* eventfd: written once to stop */
    const char *const *dirs;
    size_t n_dirs;
    int *top_wd; /* per directory; -1 while not watched */
    int *warned; /* per directory: its missing watch was logged */
    pthread_t thread;
};

/* Watch a plugin folder (errors are not fatal: the rescan still sees it).
 * Never the data directory, should it sit in a plugin directory: its
 * database changes all the time, and each change would be a rescan. */
static void watch_folder(watcher *w, const char *dir, const char *name)
{
    char *path = NULL;
    if (name[0] == '.' || asprintf(&path, "%s/%s", dir, name) < 0)
        return;
    if (!reloader_is_data(w->rl, path))
        inotify_add_watch(w->ifd, path, WATCH_MASK);
    free(path);
}

/* Watch each directory not watched yet, and the folders in it. */
static void sync_watches(watcher *w, int folders_too)
{
    for (size_t i = 0; w->ifd >= 0 && i < w->n_dirs; i++) {
        int fresh = 0;
        if (w->top_wd[i] < 0) {
            w->top_wd[i] = inotify_add_watch(w->ifd, w->dirs[i], TOP_MASK);
            if (w->top_wd[i] < 0) {
                if (!w->warned[i])
                    log_warn("loader",
                             "plugin directory %s is not watched: %s; plugins "
                             "dropped in are loaded on SIGHUP or POST /api/plugins/reload "
                             "(or once it can be watched)",
                             w->dirs[i], strerror(errno));
                w->warned[i] = 1;
                continue;
            }
            if (w->warned[i])
                log_info("loader", "plugin directory %s is watched again", w->dirs[i]);
            w->warned[i] = 0;
            fresh = 1;
        }
        if (!folders_too && !fresh)
            continue;
        DIR *dh = opendir(w->dirs[i]);
        struct dirent *e;
        while (dh && (e = readdir(dh)) != NULL) {
            if (e->d_type == DT_DIR || e->d_type == DT_UNKNOWN || e->d_type == DT_LNK)
                watch_folder(w, w->dirs[i], e->d_name);
        }
        if (dh)
            closedir(dh);
    }
}

static int top_index(const watcher *w, int wd)
{
    for (size_t i = 0; i < w->n_dirs; i++) {
        if (w->top_wd[i] == wd)
            return (int)i;
    }
    return -1;
}

/* Read what inotify has; 1 when anything happened. */
static int drain_events(watcher *w)
{
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    int any = 0;
    for (;;) {
        ssize_t n = read(w->ifd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            any = 1;
            int top = ev->wd >= 0 ? top_index(w, ev->wd) : -1;
            if (top < 0)
                continue;
            if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
                if (ev->mask & IN_IGNORED)
                    w->top_wd[top] = -1; /* gone: watched again once it is back */
                else
                    inotify_rm_watch(w->ifd, ev->wd);
                continue;
            }
            /* a folder appearing: watch it at once, to see its files arrive */
            if ((ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO)) && ev->len)
                watch_folder(w, w->dirs[top], ev->name);
        }
    }
    return any;
}

static void *watch_main(void *arg)
{
    watcher *w = arg;
    const int64_t debounce_ns = (int64_t)w->debounce_ms * 1000000;
    /* one rescan at once: what changed between the first load and the
     * watches being in place is seen by its fingerprint (without inotify,
     * only SIGHUP and the API rescan) */
    int pending = w->ifd >= 0;
    int64_t tick_ns = monotonic_ns();
    int64_t first_ns = tick_ns - debounce_ns, last_ns = first_ns;
    for (;;) {
        int64_t now = monotonic_ns();
        int64_t wait_ns = (int64_t)TICK_MS * 1000000 - (now - tick_ns);
        if (pending) {
            int64_t due = last_ns + debounce_ns;
            int64_t cap = first_ns + debounce_ns * MAX_WAIT_FACTOR;
            if (cap < due)
                due = cap;
            if (due - now < wait_ns)
                wait_ns = due - now;
        }
        struct pollfd fds[2] = {{.fd = w->stop_fd, .events = POLLIN},
                                {.fd = w->ifd, .events = POLLIN}};
        int timeout = wait_ns <= 0 ? 0 : (int)((wait_ns + 999999) / 1000000);
        int n = poll(fds, w->ifd >= 0 ? 2 : 1, timeout);
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && (fds[0].revents & POLLIN))
            break;
        now = monotonic_ns();
        if (n > 0 && w->ifd >= 0 && (fds[1].revents & POLLIN) && drain_events(w)) {
            if (!pending)
                first_ns = now;
            pending = 1;
            last_ns = now;
        }
        if (pending &&
            (now - last_ns >= debounce_ns || now - first_ns >= debounce_ns * MAX_WAIT_FACTOR)) {
            pending = 0;
            cJSON_Delete(reloader_rescan(w->rl, 0));
            sync_watches(w, 1);
        }
        if (now - tick_ns >= (int64_t)TICK_MS * 1000000) {
            tick_ns = now;
            reloader_reap(w->rl);
            sync_watches(w, 0);
        }
    }
    return NULL;
}

static void watcher_free(watcher *w)
{
    if (w->ifd >= 0)
        close(w->ifd);
    if (w->stop_fd >= 0)
        close(w->stop_fd);
    free(w->top_wd);
    free(w->warned);
    free(w);
}

watcher *watcher_start(reloader *rl, int use_inotify, unsigned debounce_ms)
{
    watcher *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->rl = rl;
    w->use_inotify = use_inotify;
    w->debounce_ms = debounce_ms;
    w->ifd = -1;
    w->dirs = reloader_dirs(rl, &w->n_dirs);
    w->top_wd = malloc((w->n_dirs ? w->n_dirs : 1) * sizeof *w->top_wd);
    w->warned = calloc(w->n_dirs ? w->n_dirs : 1, sizeof *w->warned);
    w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!w->top_wd || !w->warned || w->stop_fd < 0) {
        log_error("loader", "cannot start watching the plugin directories: %s",
                  strerror(errno ? errno : ENOMEM));
        watcher_free(w);
        return NULL;
    }
    for (size_t i = 0; i < w->n_dirs; i++)
        w->top_wd[i] = -1;
    if (use_inotify) {
        w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (w->ifd < 0)
            log_warn("loader",
                     "inotify is not available (%s): plugins dropped in are loaded "
                     "on SIGHUP or POST /api/plugins/reload",
                     strerror(errno));
    }
    sync_watches(w, 1); /* before returning: nothing made after it is missed */
    int err = pthread_create(&w->thread, NULL, watch_main, w);
    if (err != 0) {
        log_error("loader", "cannot start the plugin watcher thread: %s", strerror(err));
        watcher_free(w);
        return NULL;
    }
    pthread_setname_np(w->thread, "evh-watch");
    return w;
}

void watcher_stop(watcher *w)
{
    if (!w)
        return;
    uint64_t one = 1;
    if (write(w->stop_fd, &one, sizeof one) < 0)
        log_error("loader", "cannot stop the plugin watcher: %s", strerror(errno));
    pthread_join(w->thread, NULL);
    watcher_free(w);
}
