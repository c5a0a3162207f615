/*
 * isolate.c - the host side of process isolation (see isolate.h; the
 * protocol is in isoproto.h, the child in plugin_child.c).
 *
 * Objects:
 *   iso_plugin  one per isolated plugin record: the stand-in descriptor and
 *               tables, what a child needs to load it, the backoff and the
 *               quarantine.
 *   iso_inst    one per instance (the ctx of the proxies): the host-side
 *               handle (evh_host) and the current child.
 *   iso_conn    one child process and its socket, reference-counted (an
 *               HTTP call may still hold a child the source thread replaces).
 *
 * Reading a child's socket: whoever waits for an answer reads, one thread at
 * a time (the others wait on the condition variable); requests of the child
 * (emit, log, data_dir) are answered by the reading thread, so an emit of a
 * step is handled on the worker thread running the step, with its chain
 * depth, as in-process.
 */
#include "isolate.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <evhost/evhost.h>

#include "crash.h"
#include "deadline.h"
#include "event.h"
#include "evh_limits.h"
#include "hostapi.h"
#include "isoproto.h"
#include "log.h"
#include "reload.h"

/* Restart backoff: BASE doubling per consecutive crash up to MAX, each
 * delay drawn from its upper half (jitter). */
#define ISO_BACKOFF_BASE_MS 100
#define ISO_BACKOFF_MAX_MS 30000
/* Describe (probe) and init; fini; a source's run() after STOP.  Sources
 * use 80% of the loader's deadlines (deadline.h) instead when those are
 * set, so that their process is killed (and the plugin can be unloaded)
 * before the loader would abandon them. */
#define ISO_LOAD_TIMEOUT_MS 10000
#define ISO_INIT_TIMEOUT_MS 30000
#define ISO_FINI_TIMEOUT_MS 5000
#define ISO_STOP_TIMEOUT_MS 5000
/* Writes to a child that does not read (it is frozen) give up after this. */
#define ISO_SEND_TIMEOUT_MS 10000
/* Waiters re-check stop flags and deadlines this often. */
#define ISO_SLICE_MS 100
/* A child that exited by itself gets this long to be reaped before SIGKILL. */
#define ISO_REAP_GRACE_MS 1000

#define END_OF(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define WAIT_OK 0
#define WAIT_DEAD 1
#define WAIT_TIMEOUT 2

/* ---- settings ------------------------------------------------------------ */

static pthread_mutex_t settings_lock = PTHREAD_MUTEX_INITIALIZER;
static char *helper_path;
static cJSON *overrides;
static int crash_limit = ISOLATE_DEFAULT_CRASH_LIMIT;
static int crash_window_s = ISOLATE_DEFAULT_CRASH_WINDOW_S;

void isolate_configure(const isolate_settings *s)
{
    pthread_mutex_lock(&settings_lock);
    free(helper_path);
    helper_path = s && s->helper ? strdup(s->helper) : NULL;
    cJSON_Delete(overrides);
    overrides = s && s->overrides ? cJSON_Duplicate(s->overrides, 1) : NULL;
    crash_limit = s && s->crash_limit > 0 ? s->crash_limit : ISOLATE_DEFAULT_CRASH_LIMIT;
    crash_window_s =
        s && s->crash_window_s > 0 ? s->crash_window_s : ISOLATE_DEFAULT_CRASH_WINDOW_S;
    pthread_mutex_unlock(&settings_lock);
}

static void get_limits(int *limit, int *window_s)
{
    pthread_mutex_lock(&settings_lock);
    *limit = crash_limit;
    *window_s = crash_window_s;
    pthread_mutex_unlock(&settings_lock);
}

int isolate_wanted(const plugin *p)
{
    if (!p || !p->m || !p->m->id)
        return 0;
    pthread_mutex_lock(&settings_lock);
    const cJSON *o = overrides ? cJSON_GetObjectItemCaseSensitive(overrides, p->m->id) : NULL;
    int set = cJSON_IsString(o), process = set && !strcmp(o->valuestring, "process");
    pthread_mutex_unlock(&settings_lock);
    return set ? process : p->m->isolation_process;
}

/* The library's mtime: crashes recorded before it belong to an older build. */
static int64_t library_mtime(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0 ? (int64_t)st.st_mtime : 0;
}

static int64_t count_since(int window_s, int64_t mtime)
{
    int64_t since = (int64_t)time(NULL) - window_s;
    return mtime > since ? mtime : since;
}

static void describe_entry(const crash_entry *e, char *buf, size_t size)
{
    struct tm tm;
    time_t t = (time_t)e->at;
    char when[32] = "?";
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(buf, size, "%s (%s) at %s", e->what, e->mode, when);
}

int isolate_check_quarantine(plugin *p)
{
    if (!p || !p->id)
        return EVH_OK;
    int limit, window_s;
    get_limits(&limit, &window_s);
    crash_entry last;
    size_t n = crash_count(p->id, count_since(window_s, library_mtime(p->library_path)), &last);
    if (n == 0)
        return EVH_OK;
    char what[256];
    describe_entry(&last, what, sizeof what);
    if ((int)n < limit) {
        log_warn("isolate", "plugin '%s' crashed %zu time(s) within the last %d s (last: %s); "
                 "it is quarantined at %d (plugins.crash_limit)", p->id, n, window_s, what,
                 limit);
        return EVH_OK;
    }
    free(p->error);
    if (asprintf(&p->error,
                 "quarantined: crashed %zu time(s) within %d s (plugins.crash_limit %d; last: "
                 "%s); not loaded until the crashes age out of plugins.crash_window_s, its "
                 "library changes, or its lines are removed from %s in the data directory",
                 n, window_s, limit, what, CRASH_FILE_NAME) < 0)
        p->error = NULL;
    p->state = PLUGIN_QUARANTINED;
    p->error_code = EVH_E_STATE;
    log_error("isolate", "plugin '%s' (%s): %s", p->id, p->dir ? p->dir : "?",
              p->error ? p->error : "quarantined");
    return EVH_E_STATE;
}

/* ---- objects ------------------------------------------------------------- */

typedef struct iso_plugin {
    struct iso_plugin *next;
    plugin *p;         /* its record (which owns this) */
    const manifest *m; /* the key for the proxies' init */
    char *id, *library, *manifest_text, *manifest_path, *desc_id;
    int library_is_copy; /* library is a private copy: unlinked at the end */
    int64_t mtime;
    evh_plugin desc;
    evh_source source;
    evh_step step;
    pthread_mutex_t lock; /* what follows */
    unsigned consecutive; /* crashes since the last success: the backoff */
    int64_t not_before_ns; /* no new child before */
    int quarantined;
    char reason[400];
    uint64_t rng;
} iso_plugin;

typedef struct reply {
    iso_frame f;
    struct reply *next;
} reply;

typedef struct iso_conn {
    iso_plugin *ip;
    evh_host *h; /* host-side handle; NULL for the probe */
    pid_t pid;
    int fd;
    int64_t started_ns;
    atomic_int refs;
    pthread_mutex_t lock; /* what follows */
    pthread_cond_t cond;
    int reading;
    int dead;
    int reaping, reaped, status;
    int killed; /* by us: SIGKILL at a deadline or a stop that did not end it */
    reply *replies;
    uint32_t next_id;
    pthread_mutex_t write_lock;
} iso_conn;

typedef struct iso_inst {
    iso_plugin *ip;
    evh_host *h;
    pthread_mutex_t lock;
    iso_conn *conn; /* NULL: none running (not started, crashed) */
} iso_inst;

static pthread_mutex_t plugins_lock = PTHREAD_MUTEX_INITIALIZER;
static iso_plugin *plugins;

static iso_plugin *find_plugin(const manifest *m)
{
    pthread_mutex_lock(&plugins_lock);
    iso_plugin *ip = plugins;
    while (ip && ip->m != m)
        ip = ip->next;
    pthread_mutex_unlock(&plugins_lock);
    return ip;
}

/* Thread-local: the timeout of the next step run (the executor sets it). */
static _Thread_local uint32_t call_timeout_ms;

void isolate_set_call_timeout(uint32_t timeout_ms)
{
    call_timeout_ms = timeout_ms;
}

static int64_t deadline_in(int64_t ms)
{
    return monotonic_ns() + ms * 1000000;
}

static int64_t within(uint32_t loader_ms, int64_t own_ms)
{
    return loader_ms ? (loader_ms >= 5 ? loader_ms / 5 * 4 : 1) : own_ms;
}

static int64_t init_timeout_ms(const iso_plugin *ip)
{
    return ip->desc.kind == EVH_KIND_SOURCE ? within(deadline_init_ms(), ISO_INIT_TIMEOUT_MS)
                                            : ISO_INIT_TIMEOUT_MS;
}

/* ---- children ------------------------------------------------------------ */

static void conn_free(iso_conn *c)
{
    while (c->replies) {
        reply *r = c->replies;
        c->replies = r->next;
        iso_frame_free(&r->f);
        free(r);
    }
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->write_lock);
    free(c);
}

/* Wait for the child's exit (grace_ms, then SIGKILL of its process group);
 * once per child, whoever comes first. */
static void conn_reap(iso_conn *c, int grace_ms)
{
    pthread_mutex_lock(&c->lock);
    while (c->reaping && !c->reaped)
        pthread_cond_wait(&c->cond, &c->lock);
    if (c->reaped) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    c->reaping = 1;
    pthread_mutex_unlock(&c->lock);
    int status = 0;
    pid_t r = 0;
    int64_t end = deadline_in(grace_ms);
    while ((r = waitpid(c->pid, &status, WNOHANG)) == 0 && monotonic_ns() < end) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (r == 0) {
        kill(-c->pid, SIGKILL);
        kill(c->pid, SIGKILL);
        pthread_mutex_lock(&c->lock);
        c->killed = 1;
        pthread_mutex_unlock(&c->lock);
        while ((r = waitpid(c->pid, &status, 0)) < 0 && errno == EINTR)
            ;
    }
    pthread_mutex_lock(&c->lock);
    c->reaped = 1;
    c->status = r == c->pid ? status : 0;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

/* Kill the child and everything it started, now. */
static void conn_kill(iso_conn *c)
{
    pthread_mutex_lock(&c->lock);
    int alive = !c->reaped;
    if (alive)
        c->killed = 1;
    c->dead = 1;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    if (alive) {
        kill(-c->pid, SIGKILL);
        kill(c->pid, SIGKILL);
    }
    conn_reap(c, 0);
}

static void conn_put(iso_conn *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    /* the last reference: closing the socket makes a child that still runs
     * exit (EOF); reap it */
    close(c->fd);
    conn_reap(c, ISO_REAP_GRACE_MS);
    conn_free(c);
}

/* What happened to a reaped child, for messages: "crashed: SIGSEGV",
 * "exited unexpectedly with status 3", "was killed (SIGKILL)". */
static void death_text(iso_conn *c, char *buf, size_t size, char *what, size_t what_size)
{
    pthread_mutex_lock(&c->lock);
    int status = c->status, killed = c->killed;
    pthread_mutex_unlock(&c->lock);
    if (WIFSIGNALED(status)) {
        const char *name = sigabbrev_np(WTERMSIG(status));
        char sig[32];
        if (name)
            snprintf(sig, sizeof sig, "SIG%s", name);
        else
            snprintf(sig, sizeof sig, "signal %d", WTERMSIG(status));
        if (killed && WTERMSIG(status) == SIGKILL) {
            snprintf(buf, size, "was killed by the host (SIGKILL)");
            snprintf(what, what_size, "killed");
        } else {
            snprintf(buf, size, "crashed: %s", sig);
            snprintf(what, what_size, "%s", sig);
        }
    } else if (WIFEXITED(status)) {
        snprintf(buf, size, "exited unexpectedly with status %d", WEXITSTATUS(status));
        snprintf(what, what_size, "exit:%d", WEXITSTATUS(status));
    } else {
        snprintf(buf, size, "ended for an unknown reason");
        snprintf(what, what_size, "unknown");
    }
}

static char *helper(void)
{
    pthread_mutex_lock(&settings_lock);
    char *path = strdup(helper_path ? helper_path : "/proc/self/exe");
    pthread_mutex_unlock(&settings_lock);
    return path;
}

/* fork + exec of `<helper> __plugin-child <id>` with the socket on fd 3.
 * Between fork and exec only async-signal-safe calls: the host has many
 * threads. */
static iso_conn *spawn(iso_plugin *ip, evh_host *h, char **err)
{
    int sv[2], ep[2];
    char *exe = helper();
    if (!exe) {
        *err = strdup("out of memory");
        return NULL;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        if (asprintf(err, "cannot create a socket pair: %s", strerror(errno)) < 0)
            *err = NULL;
        free(exe);
        return NULL;
    }
    if (pipe2(ep, O_CLOEXEC) != 0) {
        if (asprintf(err, "cannot create a pipe: %s", strerror(errno)) < 0)
            *err = NULL;
        close(sv[0]);
        close(sv[1]);
        free(exe);
        return NULL;
    }
    char arg0[] = "evhost", arg1[] = "__plugin-child";
    char *argv[] = {arg0, arg1, ip->id, NULL};
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        /* the exec-error pipe above fd 3, which the socket takes */
        int err_fd = ep[1] > ISO_CHILD_FD ? ep[1] : fcntl(ep[1], F_DUPFD_CLOEXEC, ISO_CHILD_FD + 1);
        int fd = sv[1];
        if (err_fd < 0 ||
            (fd == ISO_CHILD_FD ? fcntl(fd, F_SETFD, 0) != 0 : dup2(fd, ISO_CHILD_FD) < 0))
            _exit(126);
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null >= 0 && null != STDIN_FILENO)
            dup2(null, STDIN_FILENO);
        /* no other fd of the host reaches the plugin: all above 3 close at
         * exec (the error pipe too, telling the parent exec worked) */
        if (close_range(ISO_CHILD_FD + 1, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
            for (int i = ISO_CHILD_FD + 1; i < 65536; i++) {
                if (i != err_fd)
                    close(i);
            }
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(exe, argv);
        int e = errno;
        ssize_t ignored = write(err_fd, &e, sizeof e);
        (void)ignored;
        _exit(127);
    }
    int fork_errno = errno;
    close(sv[1]);
    close(ep[1]);
    free(exe);
    if (pid < 0) {
        close(sv[0]);
        close(ep[0]);
        if (asprintf(err, "cannot start the plugin process: fork: %s", strerror(fork_errno)) <
            0)
            *err = NULL;
        return NULL;
    }
    setpgid(pid, pid); /* also from here: no race with a kill of the group */
    int exec_errno = 0;
    ssize_t n;
    while ((n = read(ep[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR)
        ;
    close(ep[0]);
    if (n > 0) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        close(sv[0]);
        char *path = helper();
        if (asprintf(err, "cannot start the plugin process: exec %s: %s", path ? path : "?",
                     strerror(exec_errno)) < 0)
            *err = NULL;
        free(path);
        return NULL;
    }
    iso_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(sv[0]);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        *err = strdup("out of memory");
        return NULL;
    }
    c->ip = ip;
    c->h = h;
    c->pid = pid;
    c->fd = sv[0];
    c->started_ns = monotonic_ns();
    atomic_init(&c->refs, 1);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    pthread_mutex_init(&c->write_lock, NULL);
    return c;
}

/* Send a frame; a child that cannot take it is dead to us. */
static int conn_send(iso_conn *c, uint8_t type, const cJSON *head, const void *raw,
                     size_t raw_len)
{
    pthread_mutex_lock(&c->write_lock);
    int rc = iso_send(c->fd, type, head, raw, raw_len, deadline_in(ISO_SEND_TIMEOUT_MS));
    pthread_mutex_unlock(&c->write_lock);
    if (rc != 0) {
        pthread_mutex_lock(&c->lock);
        c->dead = 1;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
    }
    return rc;
}

static uint32_t conn_next_id(iso_conn *c)
{
    pthread_mutex_lock(&c->lock);
    uint32_t id = ++c->next_id;
    pthread_mutex_unlock(&c->lock);
    return id;
}

/* ---- requests of the child ---------------------------------------------- */

static void plugin_component(const iso_conn *c, char *buf, size_t size)
{
    snprintf(buf, size, "plugin:%s", c->ip->id);
}

static void answer(iso_conn *c, const iso_frame *f, int32_t rc, const char *value)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    cJSON_AddNumberToObject(o, "id", (double)iso_int(f, "id", 0));
    cJSON_AddNumberToObject(o, "rc", rc);
    if (value)
        cJSON_AddStringToObject(o, "value", value);
    conn_send(c, ISO_REPLY, o, NULL, 0);
    cJSON_Delete(o);
}

static void on_emit(iso_conn *c, const iso_frame *f)
{
    const evh_host_api *api = hostapi_table();
    const char *type = iso_str(f, "event_type");
    if (!c->h || !type) {
        answer(c, f, c->h ? EVH_E_INVALID : EVH_E_STATE, NULL);
        return;
    }
    const cJSON *durable = cJSON_GetObjectItemCaseSensitive(f->head, "durable");
    const cJSON *want_id = cJSON_GetObjectItemCaseSensitive(f->head, "want_id");
    int was = hostapi_durable_emit(cJSON_IsTrue(durable));
    char id[EVH_EVENT_ID_SIZE] = "";
    int32_t rc;
    if (cJSON_IsTrue(want_id) && EVH_API_HAS(api, emit_id) && api->emit_id)
        rc = api->emit_id(c->h, type, f->raw ? f->raw : "", f->raw ? f->raw_len : 0,
                          iso_str(f, "user_id"), id);
    else
        rc = api->emit(c->h, type, f->raw ? f->raw : "", f->raw ? f->raw_len : 0,
                       iso_str(f, "user_id"));
    hostapi_durable_emit(was);
    answer(c, f, rc, rc == EVH_OK && id[0] ? id : NULL);
}

static int is_request(uint8_t type)
{
    return type == ISO_EMIT || type == ISO_LOG || type == ISO_DATA_DIR;
}

static void handle_request(iso_conn *c, const iso_frame *f)
{
    switch (f->type) {
    case ISO_EMIT:
        on_emit(c, f);
        break;
    case ISO_LOG: {
        const char *msg = iso_str(f, "msg");
        if (c->h) {
            hostapi_table()->log(c->h, (int32_t)iso_int(f, "level", EVH_LOG_INFO), "%s",
                                 msg ? msg : "");
        } else {
            char comp[EVH_ID_MAX_LEN + 16];
            plugin_component(c, comp, sizeof comp);
            log_msg((int)iso_int(f, "level", EVH_LOG_INFO), comp, "%s", msg ? msg : "");
        }
        break;
    }
    case ISO_DATA_DIR: {
        const char *dir = c->h ? hostapi_table()->data_dir(c->h) : NULL;
        answer(c, f, dir ? EVH_OK : EVH_E_IO, dir);
        break;
    }
    }
}

/*
 * Wait for the answer of `type` with `id` (0: any id) until deadline_ns (0:
 * none).  WAIT_OK with *out, WAIT_DEAD (the child is gone or broke the
 * protocol) or WAIT_TIMEOUT.  Any waiter reads the socket while no other
 * does, answering the child's requests and filing answers for the others.
 */
static int conn_wait(iso_conn *c, uint8_t type, uint32_t id, int64_t deadline_ns,
                     iso_frame *out)
{
    pthread_mutex_lock(&c->lock);
    for (;;) {
        for (reply **rp = &c->replies; *rp; rp = &(*rp)->next) {
            reply *r = *rp;
            if (r->f.type == type && (id == 0 || iso_int(&r->f, "id", 0) == id)) {
                *rp = r->next;
                *out = r->f;
                free(r);
                pthread_mutex_unlock(&c->lock);
                return WAIT_OK;
            }
        }
        if (c->dead) {
            pthread_mutex_unlock(&c->lock);
            return WAIT_DEAD;
        }
        int64_t now = monotonic_ns();
        if (deadline_ns && now >= deadline_ns) {
            pthread_mutex_unlock(&c->lock);
            return WAIT_TIMEOUT;
        }
        int64_t slice_ns = (int64_t)ISO_SLICE_MS * 1000000;
        if (deadline_ns && deadline_ns - now < slice_ns)
            slice_ns = deadline_ns - now;
        if (c->reading) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += slice_ns % 1000000000;
            ts.tv_sec += slice_ns / 1000000000 + ts.tv_nsec / 1000000000;
            ts.tv_nsec %= 1000000000;
            pthread_cond_timedwait(&c->cond, &c->lock, &ts);
            continue;
        }
        c->reading = 1;
        pthread_mutex_unlock(&c->lock);
        iso_frame f;
        int r = iso_recv(c->fd, &f, (int)((slice_ns + 999999) / 1000000), deadline_ns);
        int filed = 0;
        if (r == ISO_RECV_FRAME && is_request(f.type)) {
            handle_request(c, &f);
            iso_frame_free(&f);
        } else if (r == ISO_RECV_FRAME) {
            filed = 1;
        }
        reply *node = filed ? malloc(sizeof *node) : NULL;
        pthread_mutex_lock(&c->lock);
        c->reading = 0;
        if (filed && node) {
            node->f = f;
            node->next = c->replies;
            c->replies = node;
        } else if (filed) {
            iso_frame_free(&f);
        }
        if (r < 0)
            c->dead = 1;
        pthread_cond_broadcast(&c->cond);
    }
}

/* ---- crashes, backoff, quarantine ---------------------------------------- */

static int quarantined(iso_plugin *ip, char *reason, size_t size)
{
    pthread_mutex_lock(&ip->lock);
    int q = ip->quarantined;
    if (q && reason)
        snprintf(reason, size, "%s", ip->reason);
    pthread_mutex_unlock(&ip->lock);
    return q;
}

static uint64_t next_random(iso_plugin *ip)
{
    /* xorshift64*, seeded per plugin; jitter needs no more */
    uint64_t x = ip->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    ip->rng = x;
    return x * 2685821657736338717ULL;
}

/* A child of ip ended without being asked to (what: "SIGSEGV", "exit:3",
 * for the record); detail says so for the log ("crashed: SIGSEGV during
 * init").  Counts it, sets the backoff, and quarantines ip at the limit. */
static void crashed(iso_plugin *ip, iso_conn *c, const char *what, const char *detail)
{
    int limit, window_s;
    get_limits(&limit, &window_s);
    crash_append(ip->id, "process", what);
    size_t n = crash_count(ip->id, count_since(window_s, ip->mtime), NULL);
    pthread_mutex_lock(&ip->lock);
    /* a child that lived longer than the longest backoff starts it over */
    if (c && monotonic_ns() - c->started_ns > (int64_t)ISO_BACKOFF_MAX_MS * 1000000)
        ip->consecutive = 0;
    ip->consecutive++;
    unsigned shift = ip->consecutive - 1 < 16 ? ip->consecutive - 1 : 16;
    int64_t delay = (int64_t)ISO_BACKOFF_BASE_MS << shift;
    if (delay > ISO_BACKOFF_MAX_MS)
        delay = ISO_BACKOFF_MAX_MS;
    delay = delay / 2 + (int64_t)(next_random(ip) % (uint64_t)(delay / 2 + 1));
    ip->not_before_ns = monotonic_ns() + delay * 1000000;
    int now_quarantined = !ip->quarantined && (int)n >= limit;
    if (now_quarantined) {
        ip->quarantined = 1;
        ip->p->state = PLUGIN_QUARANTINED; /* atomic: the API reads it */
        snprintf(ip->reason, sizeof ip->reason,
                 "quarantined: crashed %zu time(s) within %d s (plugins.crash_limit %d; last: "
                 "%s); no new process is started until evhost restarts",
                 n, window_s, limit, what);
    }
    pthread_mutex_unlock(&ip->lock);
    log_error("isolate", "plugin '%s' %s (%zu of %d crashes allowed within %d s)%s", ip->id,
              detail, n, limit, window_s,
              now_quarantined ? "" : ip->desc.kind == EVH_KIND_SOURCE
                                         ? "; restarting it after a backoff"
                                         : "; the next run starts a new process");
    if (now_quarantined)
        log_error("isolate", "plugin '%s' %s", ip->id, ip->reason);
}

static void succeeded(iso_plugin *ip)
{
    pthread_mutex_lock(&ip->lock);
    ip->consecutive = 0;
    pthread_mutex_unlock(&ip->lock);
}

/* Sleep out the backoff after a crash (cut short when h stops). */
static void backoff_wait(iso_plugin *ip, evh_host *h)
{
    pthread_mutex_lock(&ip->lock);
    int64_t left_ms = (ip->not_before_ns - monotonic_ns()) / 1000000;
    pthread_mutex_unlock(&ip->lock);
    if (left_ms > 0 && h)
        hostapi_table()->wait(h, (uint64_t)left_ms);
}

/* ---- starting and ending an instance's child ------------------------------ */

static void inst_set_conn(iso_inst *in, iso_conn *c)
{
    pthread_mutex_lock(&in->lock);
    iso_conn *old = in->conn;
    in->conn = c;
    pthread_mutex_unlock(&in->lock);
    conn_put(old);
}

/* The current child with a reference, or NULL. */
static iso_conn *inst_conn(iso_inst *in)
{
    pthread_mutex_lock(&in->lock);
    iso_conn *c = in->conn;
    if (c)
        atomic_fetch_add(&c->refs, 1);
    pthread_mutex_unlock(&in->lock);
    return c;
}

/* Forget c as in's child (when it still is). */
static void inst_drop(iso_inst *in, iso_conn *c)
{
    pthread_mutex_lock(&in->lock);
    int mine = in->conn == c;
    if (mine)
        in->conn = NULL;
    pthread_mutex_unlock(&in->lock);
    if (mine)
        conn_put(c);
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dup_printf(const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* A child gone when its answer was due: reap it, detail = "<how it
 * ended><during>", and count it as a crash (restarts, quarantine) unless
 * the host killed it (a timeout: the caller says so itself). */
static void child_gone(iso_plugin *ip, iso_conn *c, const char *during, char *detail,
                       size_t size)
{
    conn_reap(c, ISO_REAP_GRACE_MS);
    char text[128], what[32];
    death_text(c, text, sizeof text, what, sizeof what);
    snprintf(detail, size, "%s%s", text, during);
    pthread_mutex_lock(&c->lock);
    int killed = c->killed;
    pthread_mutex_unlock(&c->lock);
    if (!killed)
        crashed(ip, c, what, detail);
}

/* A new child for in, initialized with its config.  EVH_OK, or a code and
 * *err (malloc'd): the plugin's init error, a crash (*crash set: counted
 * already), a timeout. */
static int start_child(iso_inst *in, char **err, int *crash)
{
    iso_plugin *ip = in->ip;
    *err = NULL;
    *crash = 0;
    iso_conn *c = spawn(ip, in->h, err);
    if (!c)
        return EVH_E_LOAD;
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "library", ip->library);
        cJSON_AddStringToObject(o, "manifest", ip->manifest_text);
        if (ip->manifest_path)
            cJSON_AddStringToObject(o, "manifest_path", ip->manifest_path);
        cJSON_AddStringToObject(o, "config", in->h->config_text ? in->h->config_text : "{}");
        cJSON_AddNumberToObject(o, "log_level", log_get_level());
    }
    int sent = o ? conn_send(c, ISO_INIT, o, NULL, 0) : -1;
    cJSON_Delete(o);
    iso_frame f;
    int64_t init_ms = init_timeout_ms(ip);
    int w = sent == 0 ? conn_wait(c, ISO_INIT_DONE, 0, deadline_in(init_ms), &f)
                      : WAIT_DEAD;
    if (w == WAIT_OK) {
        int32_t rc = (int32_t)iso_int(&f, "rc", EVH_E_PLUGIN);
        if (rc != EVH_OK) {
            const char *e = iso_str(&f, "error");
            *err = e ? strdup(e) : NULL;
            conn_put(c); /* the child exits on EOF */
        } else {
            inst_set_conn(in, c);
        }
        iso_frame_free(&f);
        return rc;
    }
    int rc;
    if (w == WAIT_TIMEOUT) {
        conn_kill(c);
        *err = dup_printf("init did not return within %lld ms: the plugin process was killed",
                          (long long)init_ms);
        rc = EVH_E_TIMEOUT;
    } else {
        char detail[256];
        child_gone(ip, c, " during init", detail, sizeof detail);
        *err = dup_printf("plugin '%s' %s", ip->id, detail);
        *crash = 1;
        rc = EVH_E_PLUGIN;
    }
    conn_put(c);
    return rc;
}

/* Tell the child to fini, wait for it, and let it go. */
static void end_child(iso_inst *in)
{
    pthread_mutex_lock(&in->lock);
    iso_conn *c = in->conn;
    in->conn = NULL;
    pthread_mutex_unlock(&in->lock);
    if (!c)
        return;
    iso_frame f;
    if (conn_send(c, ISO_FINI, NULL, NULL, 0) == 0 &&
        conn_wait(c, ISO_FINI_DONE, 0, deadline_in(ISO_FINI_TIMEOUT_MS), &f) == WAIT_OK)
        iso_frame_free(&f);
    else
        log_warn("isolate", "plugin '%s': fini did not finish within %d ms; its process is "
                 "killed", in->ip->id, ISO_FINI_TIMEOUT_MS);
    conn_put(c);
}

/* After a wait that did not bring the answer: log and count a crash, or the
 * kill; *msg (malloc'd) says what happened. */
static void child_lost(iso_inst *in, iso_conn *c, const char *during, char **msg)
{
    char detail[256];
    child_gone(in->ip, c, during, detail, sizeof detail);
    *msg = dup_printf("plugin '%s' %s", in->ip->id, detail);
    inst_drop(in, c);
}

static iso_inst *inst_new(iso_plugin *ip, evh_host *h)
{
    iso_inst *in = calloc(1, sizeof *in);
    if (in) {
        in->ip = ip;
        in->h = h;
        pthread_mutex_init(&in->lock, NULL);
    }
    return in;
}

static void inst_free(iso_inst *in)
{
    if (!in)
        return;
    inst_set_conn(in, NULL);
    pthread_mutex_destroy(&in->lock);
    free(in);
}

/* ---- the proxies: init and fini (both kinds) ---------------------------- */

static int32_t proxy_init(const evh_host_api *api, evh_host *h, void **ctx, char **errmsg)
{
    (void)api;
    iso_plugin *ip = h ? find_plugin(h->manifest) : NULL;
    if (!ip) {
        *errmsg = strdup("the isolated plugin is not loaded");
        return EVH_E_STATE;
    }
    char reason[sizeof ip->reason];
    if (quarantined(ip, reason, sizeof reason)) {
        *errmsg = dup_printf("plugin '%s' is %s", ip->id, reason);
        return EVH_E_STATE;
    }
    iso_inst *in = inst_new(ip, h);
    if (!in)
        return EVH_E_NOMEM;
    backoff_wait(ip, h);
    char *err = NULL;
    int crash = 0;
    int rc = start_child(in, &err, &crash);
    if (rc != EVH_OK) {
        inst_free(in);
        *errmsg = err;
        return rc;
    }
    free(err);
    *ctx = in;
    return EVH_OK;
}

static void proxy_fini(void *ctx)
{
    iso_inst *in = ctx;
    if (!in)
        return;
    end_child(in);
    inst_free(in);
}

/* ---- validate (steps, SDK 1.2) ------------------------------------------- */

/*
 * A short-lived child of its own, as the probe: validate runs when a
 * workflow loads, with no instance (so no child) of the step.  A crash is
 * counted like any other; a child past the load timeout is killed.  When no
 * child can be had (quarantined, spawn failed) nothing can be checked now:
 * EVH_OK, and init reports it at the first run.
 */
static int32_t proxy_step_validate(const evh_host_api *api, evh_host *h, char **field,
                                   char **errmsg)
{
    (void)api;
    iso_plugin *ip = h ? find_plugin(h->manifest) : NULL;
    char reason[sizeof ip->reason];
    if (!ip || quarantined(ip, reason, sizeof reason))
        return EVH_OK;
    char *err = NULL;
    iso_conn *c = spawn(ip, h, &err);
    if (!c) {
        log_warn("isolate", "plugin '%s': no process to validate a step config in: %s", ip->id,
                 err ? err : "out of memory");
        free(err);
        return EVH_OK;
    }
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "library", ip->library);
        cJSON_AddStringToObject(o, "manifest", ip->manifest_text);
        if (ip->manifest_path)
            cJSON_AddStringToObject(o, "manifest_path", ip->manifest_path);
        cJSON_AddStringToObject(o, "config", h->config_text ? h->config_text : "{}");
        cJSON_AddNumberToObject(o, "log_level", log_get_level());
    }
    int sent = o ? conn_send(c, ISO_VALIDATE, o, NULL, 0) : -1;
    cJSON_Delete(o);
    iso_frame f;
    int w = sent == 0 ? conn_wait(c, ISO_VALIDATE_DONE, 0, deadline_in(ISO_LOAD_TIMEOUT_MS), &f)
                      : WAIT_DEAD;
    int32_t rc;
    if (w == WAIT_OK) {
        rc = (int32_t)iso_int(&f, "rc", EVH_E_PLUGIN);
        const char *fd = iso_str(&f, "field"), *e = iso_str(&f, "error");
        if (rc != EVH_OK) {
            *field = fd ? strdup(fd) : NULL;
            *errmsg = e ? strdup(e) : NULL;
        }
        iso_frame_free(&f);
    } else if (w == WAIT_TIMEOUT) {
        conn_kill(c);
        *errmsg = dup_printf("validate did not return within %d ms: the plugin process was "
                             "killed", ISO_LOAD_TIMEOUT_MS);
        rc = EVH_E_TIMEOUT;
    } else {
        char detail[256];
        child_gone(ip, c, " during validate", detail, sizeof detail);
        *errmsg = dup_printf("plugin '%s' %s", ip->id, detail);
        rc = EVH_E_PLUGIN;
    }
    conn_put(c);
    return rc;
}

/* ---- steps --------------------------------------------------------------- */

static cJSON *run_head(uint32_t id, const evh_step_input *in)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "id", id);
    cJSON_AddNumberToObject(o, "attempt", in->attempt);
    /* the texts are the host's own (NUL-terminated) */
    cJSON_AddStringToObject(o, "event", in->event_json ? in->event_json : "{}");
    cJSON_AddStringToObject(o, "steps", in->steps_json ? in->steps_json : "{}");
    cJSON_AddStringToObject(o, "config", in->config_json ? in->config_json : "{}");
    cJSON_AddStringToObject(o, "execution_id", in->execution_id ? in->execution_id : "");
    cJSON_AddStringToObject(o, "workflow_id", in->workflow_id ? in->workflow_id : "");
    cJSON_AddStringToObject(o, "step_id", in->step_id ? in->step_id : "");
    return o;
}

/* The child's RESULT into out (metrics go to the handle of the run). */
static int32_t take_result(iso_inst *in, const iso_frame *f, evh_step_output *out)
{
    int32_t rc = (int32_t)iso_int(f, "rc", EVH_E_PLUGIN);
    const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(f->head, "metrics");
    const cJSON *m;
    cJSON_ArrayForEach(m, metrics)
    {
        if (cJSON_IsNumber(m) && m->string)
            hostapi_table()->metric(in->h, m->string, m->valuedouble);
    }
    const char *error = iso_str(f, "error");
    if (error)
        out->error_message = strdup(error);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(f->head, "has_output"))) {
        size_t len = f->raw ? f->raw_len : 0;
        out->output_json = malloc(len + 1);
        if (out->output_json) {
            if (len)
                memcpy(out->output_json, f->raw, len);
            out->output_json[len] = '\0';
            out->output_len = len;
        } else if (rc == EVH_OK) {
            rc = EVH_E_NOMEM;
        }
    }
    if (EVH_STEP_OUTPUT_HAS(out, flags))
        out->flags = (uint32_t)iso_int(f, "flags", 0);
    return rc;
}

static int32_t proxy_step_run(void *ctx, const evh_step_input *input, evh_step_output *out)
{
    iso_inst *in = ctx;
    iso_plugin *ip = in->ip;
    uint32_t timeout_ms = call_timeout_ms;
    call_timeout_ms = 0;
    int64_t deadline = timeout_ms ? deadline_in(timeout_ms) : 0;
    char reason[sizeof ip->reason];
    if (quarantined(ip, reason, sizeof reason)) {
        out->error_message = dup_printf("plugin '%s' is %s", ip->id, reason);
        return EVH_E_STATE;
    }
    iso_conn *c = inst_conn(in);
    if (!c) {
        /* the last child crashed or was killed: a new one */
        backoff_wait(ip, in->h);
        char *err = NULL;
        int crash = 0;
        int rc = quarantined(ip, reason, sizeof reason) ? EVH_E_STATE
                                                        : start_child(in, &err, &crash);
        if (rc != EVH_OK) {
            out->error_message = err ? err : dup_printf("plugin '%s' is %s", ip->id, reason);
            return rc;
        }
        c = inst_conn(in);
        if (!c)
            return EVH_E_STATE;
    }
    uint32_t id = conn_next_id(c);
    cJSON *head = run_head(id, input);
    int sent = head ? conn_send(c, ISO_RUN, head, NULL, 0) : -1;
    cJSON_Delete(head);
    int w = WAIT_DEAD, stop_sent = 0;
    iso_frame f;
    while (sent == 0) {
        int64_t slice = deadline_in(ISO_SLICE_MS);
        w = conn_wait(c, ISO_RESULT, id, deadline && deadline < slice ? deadline : slice, &f);
        if (w != WAIT_TIMEOUT || (deadline && monotonic_ns() >= deadline))
            break;
        /* the host stops: the plugin's wait() and stopping() see it */
        if (!stop_sent && in->h->rt && atomic_load(&in->h->rt->stopping)) {
            conn_send(c, ISO_STOP, NULL, NULL, 0);
            stop_sent = 1;
        }
    }
    int32_t rc;
    if (w == WAIT_OK) {
        rc = take_result(in, &f, out);
        iso_frame_free(&f);
        succeeded(ip);
    } else if (w == WAIT_TIMEOUT) {
        conn_kill(c);
        inst_drop(in, c);
        out->error_message = dup_printf("timed out after %u ms: the plugin process was killed "
                                        "(SIGKILL); the next run starts a new one",
                                        timeout_ms);
        log_warn("isolate", "plugin '%s': a run %s", ip->id,
                 out->error_message ? out->error_message : "timed out");
        rc = EVH_E_TIMEOUT;
    } else {
        child_lost(in, c, " during a run", &out->error_message);
        rc = EVH_E_PLUGIN;
    }
    conn_put(c);
    return rc;
}

/* ---- sources ------------------------------------------------------------- */

static int stop_asked(evh_host *h)
{
    return hostapi_table()->stopping(h) != 0;
}

static int32_t proxy_source_run(void *ctx)
{
    iso_inst *in = ctx;
    iso_plugin *ip = in->ip;
    for (;;) {
        iso_conn *c = inst_conn(in);
        if (!c) {
            char reason[sizeof ip->reason];
            if (quarantined(ip, reason, sizeof reason))
                return EVH_E_PLUGIN;
            backoff_wait(ip, in->h);
            if (stop_asked(in->h))
                return EVH_OK;
            char *err = NULL;
            int crash = 0;
            int rc = start_child(in, &err, &crash);
            if (rc == EVH_OK) {
                log_info("isolate", "plugin '%s' restarted in a new process", ip->id);
            } else if (!crash) {
                /* a crash during init was counted by start_child; an init
                 * that fails counts as one too, or it would retry forever */
                char msg[600];
                snprintf(msg, sizeof msg, "failed to restart: init: %s (%s)",
                         err ? err : evh_status_message(rc), evh_status_name(rc));
                crashed(ip, NULL, "init-failed", msg);
            }
            free(err);
            continue;
        }
        uint32_t id = conn_next_id(c);
        cJSON *head = cJSON_CreateObject();
        if (head)
            cJSON_AddNumberToObject(head, "id", id);
        int sent = head ? conn_send(c, ISO_RUN, head, NULL, 0) : -1;
        cJSON_Delete(head);
        int w = WAIT_DEAD;
        int64_t stop_deadline = 0;
        iso_frame f;
        while (sent == 0) {
            w = conn_wait(c, ISO_RUN_DONE, id, deadline_in(ISO_SLICE_MS), &f);
            if (w != WAIT_TIMEOUT)
                break;
            if (!stop_deadline && stop_asked(in->h)) {
                conn_send(c, ISO_STOP, NULL, NULL, 0);
                stop_deadline = deadline_in(within(deadline_stop_ms(), ISO_STOP_TIMEOUT_MS));
            } else if (stop_deadline && monotonic_ns() > stop_deadline) {
                log_error("isolate", "plugin '%s': run() did not return within %lld ms of the "
                          "stop request; its process is killed", ip->id,
                          (long long)within(deadline_stop_ms(), ISO_STOP_TIMEOUT_MS));
                conn_kill(c);
                inst_drop(in, c);
                conn_put(c);
                return EVH_E_TIMEOUT;
            }
        }
        if (w == WAIT_OK) {
            int32_t rc = (int32_t)iso_int(&f, "rc", EVH_E_PLUGIN);
            iso_frame_free(&f);
            conn_put(c);
            return rc; /* the child stays for http calls and fini */
        }
        char *msg = NULL;
        child_lost(in, c, " while running", &msg);
        free(msg);
        conn_put(c);
        if (stop_asked(in->h))
            return EVH_OK;
    }
}

static void proxy_source_stop(void *ctx)
{
    iso_inst *in = ctx;
    iso_conn *c = inst_conn(in);
    if (c) {
        conn_send(c, ISO_STOP, NULL, NULL, 0);
        conn_put(c);
    }
}

static cJSON *fields_json(const evh_http_field *fields, uint32_t n)
{
    cJSON *list = cJSON_CreateArray();
    for (uint32_t i = 0; list && fields && i < n; i++) {
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(fields[i].name ? fields[i].name : ""));
        cJSON_AddItemToArray(pair, cJSON_CreateString(fields[i].value ? fields[i].value : ""));
        cJSON_AddItemToArray(list, pair);
    }
    return list;
}

/* The content type must outlive the call (the host copies it afterwards and
 * never frees it): one per HTTP thread. */
static _Thread_local char content_type[256];

static int32_t proxy_source_http(void *ctx, const evh_http_request *req, evh_http_response *res)
{
    iso_inst *in = ctx;
    iso_conn *c = inst_conn(in);
    if (!c)
        return EVH_E_STATE; /* crashed; a new process is on its way */
    uint32_t id = conn_next_id(c);
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddNumberToObject(o, "id", id);
        cJSON_AddStringToObject(o, "method", req->method ? req->method : "");
        cJSON_AddStringToObject(o, "path", req->path ? req->path : "");
        cJSON_AddItemToObject(o, "headers", fields_json(req->headers, req->n_headers));
        cJSON_AddItemToObject(o, "query", fields_json(req->query, req->n_query));
        cJSON_AddStringToObject(o, "remote_addr", req->remote_addr ? req->remote_addr : "");
    }
    int sent = o ? conn_send(c, ISO_HTTP, o, req->body ? req->body : "", req->body_len) : -1;
    cJSON_Delete(o);
    iso_frame f;
    int w = sent == 0 ? conn_wait(c, ISO_HTTP_REPLY, id, 0, &f) : WAIT_DEAD;
    conn_put(c);
    if (w != WAIT_OK)
        return EVH_E_PLUGIN; /* the child died: the source thread restarts it */
    int32_t rc = (int32_t)iso_int(&f, "rc", EVH_E_PLUGIN);
    if (rc == EVH_OK) {
        res->status = (int32_t)iso_int(&f, "status", 500);
        const char *ct = iso_str(&f, "content_type");
        if (ct) {
            snprintf(content_type, sizeof content_type, "%s", ct);
            res->content_type = content_type;
        }
        const char *headers = iso_str(&f, "headers");
        if (headers)
            res->headers = strdup(headers);
        if (f.raw && f.raw_len) {
            res->body = malloc(f.raw_len + 1);
            if (res->body) {
                memcpy(res->body, f.raw, f.raw_len);
                res->body[f.raw_len] = '\0';
                res->body_len = f.raw_len;
            }
        }
    }
    iso_frame_free(&f);
    return rc;
}

/* ---- loading: the probe and the stand-in descriptor ----------------------- */

static void plugin_free_iso(iso_plugin *ip)
{
    if (!ip)
        return;
    pthread_mutex_destroy(&ip->lock);
    if (ip->library_is_copy && ip->library)
        unlink(ip->library);
    free(ip->id);
    free(ip->library);
    free(ip->manifest_text);
    free(ip->manifest_path);
    free(ip->desc_id);
    free(ip);
}

static int fact_bool(const iso_frame *f, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(f->head, key));
}

/* The stand-in descriptor: the child's facts, with proxies for the
 * callbacks the plugin has. */
static void build_descriptor(iso_plugin *ip, const iso_frame *f)
{
    evh_plugin *d = &ip->desc;
    memset(d, 0, sizeof *d);
    d->struct_size = (uint32_t)iso_int(f, "struct_size", 0);
    d->abi_major = (uint16_t)iso_int(f, "abi_major", 0);
    d->abi_minor = (uint16_t)iso_int(f, "abi_minor", 0);
    d->kind = (int32_t)iso_int(f, "kind", 0);
    const char *id = iso_str(f, "id");
    ip->desc_id = id ? strdup(id) : NULL;
    d->id = ip->desc_id;
    int64_t table = iso_int(f, "table_size", -1);
    if (table < 0)
        return;
    if (d->kind == EVH_KIND_SOURCE) {
        evh_source *s = &ip->source;
        s->struct_size = (uint32_t)table;
        s->init = fact_bool(f, "has_init") ? proxy_init : NULL;
        s->run = fact_bool(f, "has_run") ? proxy_source_run : NULL;
        s->stop = proxy_source_stop; /* always: it sends STOP to the child */
        s->fini = fact_bool(f, "has_fini") ? proxy_fini : NULL;
        s->http = fact_bool(f, "has_http") ? proxy_source_http : NULL;
        d->source = s;
    } else if (d->kind == EVH_KIND_STEP) {
        evh_step *s = &ip->step;
        s->struct_size = (uint32_t)table;
        s->init = fact_bool(f, "has_init") ? proxy_init : NULL;
        s->run = fact_bool(f, "has_run") ? proxy_step_run : NULL;
        s->fini = fact_bool(f, "has_fini") ? proxy_fini : NULL;
        /* read by the host only when the plugin's table (table_size) has
         * it, as for an in-process plugin */
        s->validate = fact_bool(f, "has_validate") ? proxy_step_validate : NULL;
        d->step = s;
    }
}

/* Ask a short-lived child to load the library and describe it. */
static int probe(iso_plugin *ip, char **why)
{
    iso_conn *c = spawn(ip, NULL, why);
    if (!c)
        return EVH_E_LOAD;
    cJSON *o = cJSON_CreateObject();
    if (o)
        cJSON_AddStringToObject(o, "library", ip->library);
    int sent = o ? conn_send(c, ISO_DESCRIBE, o, NULL, 0) : -1;
    cJSON_Delete(o);
    iso_frame f;
    int w = sent == 0 ? conn_wait(c, ISO_DESCRIPTOR, 0, deadline_in(ISO_LOAD_TIMEOUT_MS), &f)
                      : WAIT_DEAD;
    int rc = EVH_OK;
    if (w == WAIT_OK) {
        const char *e = iso_str(&f, "error");
        if (e) {
            *why = strdup(e);
            rc = EVH_E_LOAD;
        } else {
            build_descriptor(ip, &f);
        }
        iso_frame_free(&f);
    } else if (w == WAIT_TIMEOUT) {
        conn_kill(c);
        *why = dup_printf("loading the library took longer than %d ms in its process (its "
                          "constructors hang?): killed", ISO_LOAD_TIMEOUT_MS);
        rc = EVH_E_TIMEOUT;
    } else {
        char detail[256];
        child_gone(ip, c, " while loading its library in its process", detail, sizeof detail);
        *why = strdup(detail);
        rc = EVH_E_LOAD;
    }
    conn_put(c);
    return rc;
}

int isolate_open(plugin *p, const char *copy_dir, char **why)
{
    *why = NULL;
    if (!p || !p->m || !p->library_path)
        return EVH_E_INVALID;
    iso_plugin *ip = calloc(1, sizeof *ip);
    if (!ip)
        return EVH_E_NOMEM;
    pthread_mutex_init(&ip->lock, NULL);
    ip->p = p;
    ip->m = p->m;
    ip->id = strdup(p->m->id);
    if (copy_dir) {
        if (reload_copy_library(p->library_path, copy_dir, p->m->id, &ip->library, why) != 0) {
            plugin_free_iso(ip);
            return EVH_E_LOAD;
        }
        ip->library_is_copy = 1;
    } else {
        ip->library = strdup(p->library_path);
    }
    ip->manifest_text = p->m->json ? cJSON_PrintUnformatted(p->m->json) : NULL;
    ip->manifest_path = p->manifest_path ? strdup(p->manifest_path) : NULL;
    ip->mtime = library_mtime(p->library_path);
    ip->rng = (uint64_t)monotonic_ns() ^ ((uint64_t)(uintptr_t)ip << 16) ^ 0x9e3779b97f4a7c15ULL;
    if (!ip->rng)
        ip->rng = 1;
    if (!ip->id || !ip->library || !ip->manifest_text) {
        plugin_free_iso(ip);
        return EVH_E_NOMEM;
    }
    int rc = probe(ip, why);
    if (rc != EVH_OK) {
        plugin_free_iso(ip);
        return rc;
    }
    pthread_mutex_lock(&plugins_lock);
    ip->next = plugins;
    plugins = ip;
    pthread_mutex_unlock(&plugins_lock);
    p->iso = ip;
    p->desc = &ip->desc;
    log_debug("isolate", "plugin '%s' runs in its own process (isolation: process)", p->id);
    return EVH_OK;
}

int isolate_close(plugin *p)
{
    if (!p || !p->iso)
        return EVH_OK;
    if (p->m && hostapi_live_instances(p->m) > 0)
        return EVH_E_STATE;
    iso_plugin *ip = p->iso;
    pthread_mutex_lock(&plugins_lock);
    for (iso_plugin **pp = &plugins; *pp; pp = &(*pp)->next) {
        if (*pp == ip) {
            *pp = ip->next;
            break;
        }
    }
    pthread_mutex_unlock(&plugins_lock);
    p->iso = NULL;
    p->desc = NULL;
    plugin_free_iso(ip);
    return EVH_OK;
}

/* ---- the API -------------------------------------------------------------- */

void isolate_plugin_status(const plugin *p, isolate_status *st)
{
    memset(st, 0, sizeof *st);
    st->isolation = isolate_wanted(p) ? "process" : "in-process";
    get_limits(&st->limit, &st->window_s);
    if (!p)
        return;
    if (p->state == PLUGIN_QUARANTINED) {
        st->quarantined = 1;
        snprintf(st->reason, sizeof st->reason, "%s", p->error ? p->error : "quarantined");
    }
    if (p->iso)
        st->quarantined |= quarantined(p->iso, st->reason, sizeof st->reason);
    crash_entry last;
    st->crashes = (unsigned)crash_count(
        p->id, count_since(st->window_s, p->iso ? p->iso->mtime : library_mtime(p->library_path)),
        &last);
    if (st->crashes)
        describe_entry(&last, st->last_crash, sizeof st->last_crash);
}
