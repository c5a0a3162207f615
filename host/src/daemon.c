/*
 * daemon.c - `evhost run`: settings, plugins, the pipeline, signals.
 *
 * Start order: settings -> runtime (queue) -> plugins (scan, validate,
 * init) -> engine (database, recovery, writer and workers) -> workflows and
 * triggers -> source threads.  Stop order is the reverse, so every event a
 * source got EVH_OK for is taken off the queue and stored before exit, and
 * what cannot run before the shutdown deadline stays pending in the
 * database for the next start.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <evhost/evhost.h>

#include "api.h"
#include "cli.h"
#include "config.h"
#include "crash.h"
#include "deadline.h"
#include "engine.h"
#include "event.h"
#include "evh_limits.h"
#include "isolate.h"
#include "lifecycle.h"
#include "loader.h"
#include "log.h"
#include "notify.h"
#include "pipeline.h"
#include "registry.h"
#include "reload.h"
#include "runtime.h"
#include "store.h"
#include "stream.h"
#include "system_events.h"
#include "watch.h"

#define MAX_CLI_DIRS 32
/* Retention runs this often (and once at start). */
#define RETENTION_PERIOD_S 3600

typedef struct run_options {
    const char *config_path;
    const char *plugin_dirs[MAX_CLI_DIRS];
    int n_plugin_dirs;
    const char *data_dir;
    const char *db_path;
    const char *listen;
    long long queue_size; /* 0: from the settings */
    int workers;          /* -1: from the settings */
    int log_level;        /* -1: from the settings */
    int print_config;
} run_options;

static int option_number(const char *opt, const char *v, long long lo, long long hi,
                         long long *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || *end || end == v || n < lo || n > hi) {
        fprintf(stderr, "evhost run: %s: '%s' is not a number from %lld to %lld\n", opt, v, lo,
                hi);
        return -1;
    }
    *out = n;
    return 0;
}

static int parse_run_args(int argc, char **argv, run_options *o)
{
    memset(o, 0, sizeof *o);
    o->workers = -1;
    o->log_level = -1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
        if (!strcmp(a, "--print-config")) {
            o->print_config = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "evhost run: unknown or incomplete option '%s' (see evhost --help)\n",
                    a);
            return -1;
        }
        i++;
        if (!strcmp(a, "--config")) {
            o->config_path = v;
        } else if (!strcmp(a, "--plugin-dir")) {
            if (o->n_plugin_dirs == MAX_CLI_DIRS) {
                fprintf(stderr, "evhost run: at most %d --plugin-dir options\n", MAX_CLI_DIRS);
                return -1;
            }
            o->plugin_dirs[o->n_plugin_dirs++] = v;
        } else if (!strcmp(a, "--data-dir")) {
            o->data_dir = v;
        } else if (!strcmp(a, "--db")) {
            o->db_path = v;
        } else if (!strcmp(a, "--listen")) {
            char *host = NULL;
            int port = 0;
            if (config_split_listen(v, &host, &port) != 0) {
                fprintf(stderr, "evhost run: --listen: '%s' is not host:port (IPv6: "
                                "[::1]:8000; port 0 = any free port)\n", v);
                return -1;
            }
            free(host);
            o->listen = v;
        } else if (!strcmp(a, "--log-level")) {
            o->log_level = log_level_parse(v);
            if (o->log_level < 0) {
                fprintf(stderr, "evhost run: --log-level: '%s' is not one of error, warn, "
                                "info, debug\n", v);
                return -1;
            }
        } else if (!strcmp(a, "--queue-size")) {
            if (option_number(a, v, 16, 16777216, &n))
                return -1;
            o->queue_size = n;
        } else if (!strcmp(a, "--workers")) {
            if (option_number(a, v, 0, 1024, &n))
                return -1;
            o->workers = (int)n;
        } else {
            fprintf(stderr, "evhost run: unknown option '%s' (see evhost --help)\n", a);
            return -1;
        }
    }
    return 0;
}

/* Settings from host.yaml (or the embedded default), then the command
 * line's overrides. */
static evh_config *load_settings(const run_options *o)
{
    evh_config *c = NULL;
    diag d;
    diag_init(&d, o->config_path);
    if (config_load(o->config_path, &c, &d) != EVH_OK) {
        diag_print(&d, stderr);
        fprintf(stderr, "evhost run: %s: not started; fix the settings above\n",
                o->config_path ? o->config_path : "(built-in defaults)");
        diag_free(&d);
        return NULL;
    }
    diag_free(&d);
    if (o->data_dir) {
        free(c->data_dir);
        c->data_dir = strdup(o->data_dir);
        /* the database follows the data directory unless named itself */
        if (!o->db_path && !o->config_path) {
            free(c->storage_path);
            if (asprintf(&c->storage_path, "%s/evhost.db", o->data_dir) < 0)
                c->storage_path = NULL;
        }
    }
    if (o->db_path) {
        free(c->storage_path);
        c->storage_path = strdup(o->db_path);
    }
    if (o->listen) {
        free(c->listen);
        free(c->listen_host);
        c->listen = strdup(o->listen);
        config_split_listen(o->listen, &c->listen_host, &c->listen_port);
    }
    if (o->queue_size)
        c->queue_size = (size_t)o->queue_size;
    if (o->workers >= 0)
        c->workers = o->workers;
    if (o->log_level >= 0)
        c->log_level = o->log_level;
    if (!c->data_dir || !c->storage_path || !c->listen || !c->listen_host) {
        config_free(c);
        return NULL;
    }
    return c;
}

/* 1 unless host is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x) or
 * "localhost": 0.0.0.0 and :: are every interface. */
static int beyond_loopback(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (!strcmp(host, "localhost"))
        return 0;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) != 127;
    if (inet_pton(AF_INET6, host, &v6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&v6))
            return 0;
        return !(IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
    }
    return 1;
}

/* Without API keys anyone who reaches the address can post events and run
 * workflows, so beyond loopback the daemon refuses to start unless told
 * that something in front authenticates (server.allow_unauthenticated). */
static int check_exposure(const evh_config *c)
{
    if (c->n_api_keys || !beyond_loopback(c->listen_host))
        return 0;
    if (c->allow_unauthenticated) {
        log_warn("daemon", "server.listen '%s' is beyond loopback with no API keys: "
                 "server.allow_unauthenticated is true, so whoever reaches it may use the API",
                 c->listen);
        return 0;
    }
    fprintf(stderr,
            "evhost run: server.listen '%s' is beyond loopback but no API keys are configured "
            "(server.api_keys, or EVH_API_KEYS=\"name:key\"): anyone who can reach it could "
            "post events and run workflows.  Set API keys, listen on 127.0.0.1, or set "
            "server.allow_unauthenticated: true when something in front authenticates\n",
            c->listen);
    return -1;
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        log_error("daemon", "cannot create directory '%s': %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The data directory and the database's own directory. */
static int make_dirs(const evh_config *c)
{
    if (make_dir(c->data_dir))
        return -1;
    char *dir = strdup(c->storage_path);
    if (!dir)
        return -1;
    char *slash = strrchr(dir, '/');
    int rc = 0;
    if (slash && slash != dir) {
        *slash = '\0';
        rc = make_dir(dir);
    }
    free(dir);
    return rc;
}

/* Load every plugin folder of the plugin directories (built-in, host.yaml's,
 * --plugin-dir's) through the reloader, which keeps following them while
 * the daemon runs (reload.h).  NULL on out-of-memory. */
static reloader *load_plugins(registry *r, runtime *rt, const evh_config *c, const run_options *o,
                              pipeline_reloader *pl)
{
    char *root = c->plugins_builtin ? cli_default_plugin_root() : NULL;
    char *builtin[2] = {NULL, NULL};
    if (root && (asprintf(&builtin[0], "%s/event-sources", root) < 0 ||
                 asprintf(&builtin[1], "%s/steps", root) < 0))
        builtin[0] = builtin[1] = NULL;
    const char *dirs[2 + MAX_CLI_DIRS + 64];
    size_t n = 0;
    for (size_t i = 0; i < 2; i++)
        if (builtin[i])
            dirs[n++] = builtin[i];
    for (size_t i = 0; i < c->n_plugin_dirs && n < sizeof dirs / sizeof *dirs; i++)
        dirs[n++] = c->plugin_dirs[i];
    for (int i = 0; i < o->n_plugin_dirs && n < sizeof dirs / sizeof *dirs; i++)
        dirs[n++] = o->plugin_dirs[i];
    /* libraries are dlopen'ed from private copies here (reload.h) */
    char *copies = NULL;
    if (asprintf(&copies, "%s/plugin-libraries", c->data_dir) < 0)
        copies = NULL;
    reload_options ro = {.dirs = dirs,
                         .n_dirs = n,
                         .plugin_configs = c->plugin_config,
                         .library_copy_dir = copies,
                         .data_dir = c->data_dir,
                         .revalidate = pipeline_reload,
                         .revalidate_ud = pl};
    reloader *prl = copies ? reloader_new(r, rt, &ro) : NULL;
    if (prl)
        reloader_load_initial(prl);
    free(copies);
    free(builtin[0]);
    free(builtin[1]);
    free(root);
    log_info("loader", "%zu plugin(s) ready, %zu failed", registry_count(r, 0, PLUGIN_READY),
             registry_count(r, 0, PLUGIN_FAILED));
    return prl;
}

/* Where workflows and triggers come from: the settings, or the examples
 * shipped with evhost when the settings name none. */
typedef struct pipeline_paths {
    char *examples;
    char *example_workflows;
    char *example_triggers;
    pipeline_sources src;
} pipeline_paths;

static void pipeline_paths_init(pipeline_paths *pp, const evh_config *c)
{
    memset(pp, 0, sizeof *pp);
    pp->src.workflow_dirs = (const char *const *)c->workflow_dirs;
    pp->src.n_workflow_dirs = c->n_workflow_dirs;
    pp->src.trigger_files = (const char *const *)c->trigger_files;
    pp->src.n_trigger_files = c->n_trigger_files;
    if (c->n_workflow_dirs && c->n_trigger_files)
        return;
    pp->examples = cli_default_examples_root();
    if (!pp->examples)
        return;
    if (!c->n_workflow_dirs && asprintf(&pp->example_workflows, "%s/workflows", pp->examples) >= 0) {
        pp->src.workflow_dirs = (const char *const *)&pp->example_workflows;
        pp->src.n_workflow_dirs = 1;
    }
    if (!c->n_trigger_files &&
        asprintf(&pp->example_triggers, "%s/triggers/examples.yaml", pp->examples) >= 0) {
        pp->src.trigger_files = (const char *const *)&pp->example_triggers;
        pp->src.n_trigger_files = 1;
    }
}

static void pipeline_paths_free(pipeline_paths *pp)
{
    free(pp->examples);
    free(pp->example_workflows);
    free(pp->example_triggers);
}

static void run_retention(store *st, const evh_config *c)
{
    size_t deleted = 0;
    int64_t age = (int64_t)c->retention_max_age_days * 86400;
    if (store_retention(st, age, c->retention_max_executions, &deleted) != EVH_OK)
        log_warn("store", "retention failed: %s", store_errmsg(st));
    else if (deleted)
        log_info("store", "retention removed %zu old execution(s) and event(s)", deleted);
}

/* Wait for a signal; every RETENTION_PERIOD_S without one, run retention. */
static int wait_signal(const sigset_t *sigs, store *st, const evh_config *c)
{
    for (;;) {
        struct timespec ts = {RETENTION_PERIOD_S, 0};
        int sig = sigtimedwait(sigs, NULL, &ts);
        if (sig > 0)
            return sig;
        if (errno == EAGAIN)
            run_retention(st, c);
    }
}

int cli_run(int argc, char **argv)
{
    run_options o;
    if (parse_run_args(argc, argv, &o) != 0)
        return 2;
    evh_config *c = load_settings(&o);
    if (!c)
        return 2;
    if (o.print_config) {
        config_print_redacted(c, stdout);
        config_free(c);
        return 0;
    }
    log_set_level(c->log_level);
    if (check_exposure(c)) {
        config_free(c);
        return 2;
    }
    if (make_dirs(c)) {
        config_free(c);
        return 1;
    }
    /* Signals are taken by this thread only (sigtimedwait), never by plugin
     * threads, which inherit the blocked mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    char *err = NULL;
    pipeline_paths pp;
    pipeline_paths_init(&pp, c);
    store *st = NULL;
    engine *e = NULL;
    notifier *nt = NULL;
    char *outbox_path = NULL;
    lifecycle *lc = NULL;
    stream_hub *hub = NULL;
    http_server *http = NULL;
    api_ctx api = {0};
    api_ctx_init(&api);
    pipeline_reloader rl = {.src = &pp.src};
    pthread_mutex_init(&rl.lock, NULL);
    reloader *prl = NULL; /* plugins: hot reload (reload.h) */
    watcher *pw = NULL;
    deadline_set_init_ms((uint32_t)c->plugins_init_timeout_ms);
    deadline_set_stop_ms((uint32_t)c->plugins_stop_timeout_ms);
    /* crash isolation and quarantine (isolate.h); in-process crashes are
     * attributed and recorded before the process dies (crash.h) */
    isolate_configure(&(isolate_settings){.overrides = c->plugin_isolation,
                                          .crash_limit = c->plugins_crash_limit,
                                          .crash_window_s = c->plugins_crash_window_s});
    crash_open(c->data_dir, c->plugins_crash_window_s > 86400 ? c->plugins_crash_window_s : 86400);
    crash_install_handlers();
    runtime *rt = runtime_new(c->queue_size, c->data_dir, (uint32_t)c->emit_wait_ms);
    registry *r = registry_new();
    if (!rt || !r)
        goto out_free;
    log_info("daemon", "evhost %s (SDK ABI %d.%d) starting; settings: %s; database: %s",
             EVH_VERSION, EVH_ABI_MAJOR, EVH_ABI_MINOR, c->source, c->storage_path);
    prl = load_plugins(r, rt, c, &o, &rl);
    if (!prl) {
        log_error("daemon", "cannot load the plugins: out of memory");
        goto out_free;
    }

    engine_options eo = {.db_path = c->storage_path,
                         .synchronous_full = !strcmp(c->storage_synchronous, "full"),
                         .workers = (unsigned)c->workers,
                         .dispatch_queue = c->queue_size,
                         .max_chain_depth = (uint32_t)c->max_chain_depth};
    /* the main database first: opening an older one moves its webhook
     * tables to the outbox file (store.h, store_outbox_path) */
    store_options so = {.path = c->storage_path, .synchronous_full = eo.synchronous_full};
    if (store_open(&so, &st, &err) != EVH_OK) {
        log_error("daemon", "database '%s': %s", c->storage_path, err ? err : "out of memory");
        goto out_unload;
    }
    if (!(outbox_path = store_outbox_path(c->storage_path))) {
        log_error("daemon", "out of memory");
        goto out_unload;
    }
    /* outbound webhooks: the outbox and its delivery thread (notify.h) */
    nt = notifier_new(&(notify_options){.outbox_path = outbox_path,
                                        .synchronous_full = eo.synchronous_full,
                                        .concurrency = (unsigned)c->notify_concurrency,
                                        .queue = c->notify_queue_size,
                                        .timeout_ms = (uint32_t)c->notify_timeout_ms,
                                        .max_attempts = (uint32_t)c->notify_max_attempts,
                                        .backoff_base_ms = c->notify_backoff_base_ms,
                                        .backoff_cap_ms = c->notify_backoff_cap_ms,
                                        .retention_days = c->retention_max_age_days,
                                        .config_subs = c->subscriptions,
                                        .n_config_subs = c->n_subscriptions},
                      &err);
    if (!nt || !(lc = lifecycle_new(nt))) {
        log_error("daemon", "outbound webhooks: %s", err ? err : "out of memory");
        goto out_unload;
    }
    /* the live stream (GET /api/events/stream) */
    if (!(hub = api_stream_hub_new(c, lc))) {
        log_error("daemon", "live stream: out of memory");
        goto out_unload;
    }
    eo.lifecycle = lc;
    e = engine_new(rt, r, &eo, &err);
    if (!e) {
        log_error("daemon", "database '%s': %s", c->storage_path, err ? err : "out of memory");
        goto out_unload;
    }
    rl.e = e;
    rl.r = r;
    rl.st = st;
    pp.src.rt = rt;
    pipeline_reload(&rl, NULL);
    run_retention(st, c);
    if (engine_start(e) != EVH_OK) {
        log_error("daemon", "cannot start the pipeline threads");
        goto out_stop;
    }
    if (notifier_start(nt) != EVH_OK) {
        log_error("daemon", "cannot start the webhook delivery thread");
        goto out_stop;
    }
    api.notify = nt;
    api.stream = hub;
    api.rt = rt;
    api.reg = r;
    api.eng = e;
    api.cfg = c;
    api.db_path = c->storage_path;
    api.outbox_path = outbox_path;
    api.synchronous_full = eo.synchronous_full;
    api.reload = pipeline_reload;
    api.reload_ud = &rl;
    api.plugins_reload = reloader_api;
    api.plugins_reload_ud = prl;
    api.started_ns = monotonic_ns();
    http = api_start(&api, &err);
    if (!http) {
        log_error("daemon", "HTTP API: %s", err ? err : "cannot start");
        goto out_stop;
    }
    log_info("daemon", "API on http://%s%s%s:%d/ (%s)", strchr(c->listen_host, ':') ? "[" : "",
             c->listen_host, strchr(c->listen_host, ':') ? "]" : "", http_port(http),
             c->n_api_keys ? "API keys required" : "no API keys configured: open to anyone "
                                                   "who can reach this address");
    loader_start_sources(r);
    system_events_host_started(r);
    /* from now on plugin folders are followed (and drained ones unloaded) */
    reloader_set_running(prl);
    pw = watcher_start(prl, c->plugins_watch, (unsigned)c->plugins_reload_debounce_ms);
    log_info("daemon", "running; SIGHUP reloads plugins, workflows and triggers, SIGTERM or "
                       "Ctrl-C stops");

    for (;;) {
        int sig = wait_signal(&sigs, st, c);
        if (sig == SIGHUP) {
            /* plugins first: the workflows and triggers are then validated
             * against the plugins now in force */
            log_info("daemon", "SIGHUP: reloading plugins, workflows and triggers");
            cJSON *changes = reloader_rescan(prl, 1);
            if (!changes)
                pipeline_reload(&rl, NULL);
            cJSON_Delete(changes);
            continue;
        }
        log_info("daemon", "%s: stopping (deadline %d s)", sig == SIGINT ? "SIGINT" : "SIGTERM",
                 c->shutdown_timeout_s);
        break;
    }
    rc = 0;
out_stop:
    watcher_stop(pw); /* no more plugin reloads, but for the API's, until: */
    http_stop(http); /* no new requests; those in flight finish */
    loader_stop_sources(r);
    runtime_stop(rt);
    engine_stop(e, c->shutdown_timeout_s * 1000);
    /* after the pipeline: its last lifecycle events are stored first */
    notifier_stop(nt, c->shutdown_timeout_s < 5 ? c->shutdown_timeout_s * 1000 : 5000);
out_unload:
    engine_free(e);
    stream_hub_free(hub); /* after the pipeline (its publisher), before lc */
    notifier_free(nt);
    lifecycle_free(lc);
    api_ctx_release(&api);
    pthread_mutex_destroy(&rl.lock);
    store_close(st);
    free(outbox_path);
    loader_unload_all(r);
out_free:
    registry_free(r);
    reloader_free(prl);
    runtime_free(rt);
    pipeline_paths_free(&pp);
    free(err);
    crash_close();
    isolate_configure(NULL);
    config_free(c);
    if (rc == 0)
        log_info("daemon", "stopped");
    return rc;
}
