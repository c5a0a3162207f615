/*
 * daemon.c - `evhost run`: load plugins, start sources, run until a signal.
 *
 * Start order: runtime (queue) -> plugins (scan, validate, init) -> consumer
 * -> source threads.  Stop order is the reverse, so every event a source got
 * EVH_OK for is still taken off the queue before exit.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <evhost/evhost.h>

#include "bus.h"
#include "cli.h"
#include "event.h"
#include "limits.h"
#include "loader.h"
#include "log.h"
#include "registry.h"
#include "runtime.h"

#define MAX_PLUGIN_DIRS 32

typedef struct run_options {
    const char *plugin_dirs[MAX_PLUGIN_DIRS];
    int n_plugin_dirs;
    const char *data_dir;
    size_t queue_size;
} run_options;

static int parse_run_args(int argc, char **argv, run_options *o)
{
    memset(o, 0, sizeof *o);
    o->data_dir = "./evhost-data";
    o->queue_size = EVH_QUEUE_DEFAULT_CAPACITY;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--plugin-dir") && v && o->n_plugin_dirs < MAX_PLUGIN_DIRS) {
            o->plugin_dirs[o->n_plugin_dirs++] = v;
            i++;
        } else if (!strcmp(a, "--data-dir") && v) {
            o->data_dir = v;
            i++;
        } else if (!strcmp(a, "--log-level") && v) {
            int level = log_level_parse(v);
            if (level < 0) {
                fprintf(stderr, "evhost run: --log-level: '%s' is not one of error, warn, "
                                "info, debug\n", v);
                return -1;
            }
            log_set_level(level);
            i++;
        } else if (!strcmp(a, "--queue-size") && v) {
            char *end;
            unsigned long long n = strtoull(v, &end, 10);
            if (*end || n == 0 || n > 100000000ULL) {
                fprintf(stderr, "evhost run: --queue-size: '%s' is not a number from 1 to "
                                "100000000\n", v);
                return -1;
            }
            o->queue_size = (size_t)n;
            i++;
        } else {
            fprintf(stderr, "evhost run: unknown or incomplete option '%s'\n", a);
            return -1;
        }
    }
    return 0;
}

/* Until the pipeline (triggers and workflows) takes events off the queue,
 * the daemon logs each accepted event's envelope. */
static void *consume_events(void *arg)
{
    runtime *rt = arg;
    evh_event *batch[256];
    for (;;) {
        int n = bus_pop_batch(rt->bus, batch, 256, 1000);
        if (n == EVH_E_STOPPING)
            break;
        for (int i = 0; i < n; i++) {
            char *env = event_envelope_json(batch[i]);
            log_info("events", "accepted %s", env ? env : batch[i]->id);
            free(env);
            event_free(batch[i]);
        }
    }
    return NULL;
}

static int load_plugins(registry *r, runtime *rt, const run_options *o, char *root)
{
    loader_options opt = {0};
    char *defaults[2] = {NULL, NULL};
    int n_dirs = o->n_plugin_dirs;
    const char *const *dirs = o->plugin_dirs;
    if (n_dirs == 0) {
        if (asprintf(&defaults[0], "%s/event-sources", root) < 0 ||
            asprintf(&defaults[1], "%s/steps", root) < 0)
            return EVH_E_NOMEM;
        dirs = (const char *const *)defaults;
        n_dirs = 2;
    }
    for (int i = 0; i < n_dirs; i++) {
        diag d;
        diag_init(&d, dirs[i]);
        loader_scan_dir(r, rt, dirs[i], &opt, &d);
        diag_free(&d);
    }
    free(defaults[0]);
    free(defaults[1]);
    log_info("loader", "%zu plugin(s) ready, %zu failed",
             registry_count(r, 0, PLUGIN_READY),
             registry_count(r, 0, PLUGIN_FAILED));
    return EVH_OK;
}

int cli_run(int argc, char **argv)
{
    run_options o;
    if (parse_run_args(argc, argv, &o) != 0)
        return 2;
    if (mkdir(o.data_dir, 0700) != 0 && errno != EEXIST) {
        log_error("daemon", "data directory '%s': %s", o.data_dir, strerror(errno));
        return 1;
    }
    /* Signals are taken by this thread only (sigwait), never by plugin
     * threads, which inherit the blocked mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    char *root = cli_default_plugin_root();
    runtime *rt = runtime_new(o.queue_size, o.data_dir, EVH_EMIT_DEFAULT_WAIT_MS);
    registry *r = registry_new();
    pthread_t consumer;
    if (!root || !rt || !r)
        goto out_free;
    log_info("daemon", "evhost %s (SDK ABI %d.%d) starting; data in %s", EVH_VERSION,
             EVH_ABI_MAJOR, EVH_ABI_MINOR, o.data_dir);
    load_plugins(r, rt, &o, root);
    if (pthread_create(&consumer, NULL, consume_events, rt) != 0)
        goto out_unload;
    loader_start_sources(r);
    log_info("daemon", "running; send SIGTERM or press Ctrl-C to stop");

    for (;;) {
        int sig = 0;
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            log_info("daemon", "SIGHUP: nothing to reload yet");
            continue;
        }
        log_info("daemon", "%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
        break;
    }
    loader_stop_sources(r);
    runtime_stop(rt);
    pthread_join(consumer, NULL);
    rc = 0;
out_unload:
    loader_unload_all(r);
out_free:
    registry_free(r);
    runtime_free(rt);
    free(root);
    if (rc == 0)
        log_info("daemon", "stopped");
    return rc;
}
