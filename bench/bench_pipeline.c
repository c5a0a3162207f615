/*
 * bench_pipeline.c - the pipeline's throughput and latency, measured.
 *
 *   firehose source --emit--> durable queue (SQLite WAL, group commit)
 *                   --> one trigger --> one workflow of one no-op step
 *
 * Phase 1 (throughput): the firehose emits COUNT events as fast as the host
 * takes them; prints events/s stored (writer) and events/s end to end (every
 * execution recorded as succeeded).
 * Phase 2 (latency): RATE events/s for LAT_COUNT events; prints p50/p90/p99
 * of emit -> step start, read back from the step runs' latency_us metric.
 * Both phases print the process's peak resident memory.
 *
 *   bench_pipeline [--count N] [--rate R] [--lat-count N] [--workers N]
 *                  [--queue N] [--sync normal|full] [--dir DIR]
 *
 * Runs in process against the same static library as the daemon; plugins
 * are the real .so files built in bench/plugins.  Not a test: it asserts
 * nothing and prints figures (docs/BENCHMARKS.md records them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include <evhost/evhost.h>

#include "engine.h"
#include "event.h"
#include "loader.h"
#include "log.h"
#include "pipeline.h"
#include "registry.h"
#include "runtime.h"
#include "store.h"

typedef struct opts {
    long count, rate, lat_count;
    unsigned workers;
    size_t queue;
    int sync_full;
    const char *dir;
} opts;

static double now_s(void)
{
    return (double)monotonic_ns() / 1e9;
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

typedef struct run {
    char *root, *db;
    runtime *rt;
    registry *r;
    engine *e;
} run;

/* Load the two plugins (firehose configured with count/rate), the one
 * workflow and trigger, and start everything. */
static void run_start(run *x, const opts *o, const char *tag, long count, long rate)
{
    if (asprintf(&x->root, "%s/%s", o->dir, tag) < 0 || asprintf(&x->db, "%s/evhost.db",
                                                                   x->root) < 0)
        exit(1);
    mkdir(x->root, 0700);
    unlink(x->db);
    char *wal = NULL, *path = NULL;
    if (asprintf(&wal, "%s-wal", x->db) >= 0)
        unlink(wal);
    free(wal);
    x->rt = runtime_new(o->queue, x->root, 100);
    x->r = registry_new();
    char cfg[256];
    snprintf(cfg, sizeof cfg, "{\"firehose\": {\"count\": %ld, \"rate\": %ld}}", count, rate);
    cJSON *configs = cJSON_Parse(cfg);
    loader_options lo = {.plugin_configs = configs};
    diag d;
    diag_init(&d, EVH_BENCH_PLUGIN_DIR);
    loader_scan_dir(x->r, x->rt, EVH_BENCH_PLUGIN_DIR, &lo, &d);
    diag_free(&d);
    if (!registry_find(x->r, "firehose") || !registry_find(x->r, "noop-step")) {
        fprintf(stderr, "bench plugins not found in %s (build the bench target)\n",
                EVH_BENCH_PLUGIN_DIR);
        exit(1);
    }
    char *wfdir = NULL;
    if (asprintf(&wfdir, "%s/workflows", x->root) < 0 || asprintf(&path, "%s/wf.yaml", wfdir) < 0)
        exit(1);
    mkdir(wfdir, 0700);
    write_file(path, "id: noop\nsteps:\n  - {id: nothing, uses: noop-step}\n");
    free(path);
    if (asprintf(&path, "%s/triggers.yaml", x->root) < 0)
        exit(1);
    write_file(path, "triggers:\n  - {id: all, source: firehose, event_type: tick, workflow: noop}\n");
    engine_options eo = {.db_path = x->db,
                         .synchronous_full = o->sync_full,
                         .workers = o->workers,
                         .dispatch_queue = o->queue,
                         .max_chain_depth = 8};
    char *err = NULL;
    x->e = engine_new(x->rt, x->r, &eo, &err);
    if (!x->e) {
        fprintf(stderr, "engine: %s\n", err ? err : "?");
        exit(1);
    }
    const char *wd[] = {wfdir};
    const char *tf[] = {path};
    pipeline_sources src = {wd, 1, tf, 1, x->rt};
    workflow_set *ws;
    trigger_set *ts;
    diag_init(&d, NULL);
    pipeline_load(&src, x->r, NULL, &ws, &ts, &d);
    if (d.count) {
        diag_print(&d, stderr);
        exit(1);
    }
    diag_free(&d);
    free(path);
    free(wfdir);
    engine_set_config(x->e, ws, ts);
    engine_start(x->e);
    loader_start_sources(x->r);
    cJSON_Delete(configs);
}

static void run_stop(run *x)
{
    loader_stop_sources(x->r);
    runtime_stop(x->rt);
    engine_stop(x->e, 60000);
    engine_free(x->e);
    loader_unload_all(x->r);
    registry_free(x->r);
    runtime_free(x->rt);
}

static void throughput(const opts *o)
{
    run x;
    memset(&x, 0, sizeof x);
    double t0 = now_s();
    run_start(&x, o, "throughput", o->count, 0);
    double t_stored = 0;
    engine_stats s;
    for (;;) {
        engine_get_stats(x.e, &s);
        if (!t_stored && s.persisted >= (uint64_t)o->count)
            t_stored = now_s();
        if (s.executions_ok + s.executions_failed >= (uint64_t)o->count)
            break;
        usleep(2000);
    }
    double t_done = now_s();
    printf("throughput: %ld events, workers %u, queue %zu, synchronous %s\n", o->count,
           o->workers, o->queue, o->sync_full ? "full" : "normal");
    printf("  stored (emit -> committed):       %10.0f events/s  (%.2f s)\n",
           (double)o->count / (t_stored - t0), t_stored - t0);
    printf("  end to end (emit -> execution ok): %10.0f events/s  (%.2f s)\n",
           (double)o->count / (t_done - t0), t_done - t0);
    printf("  executions failed: %llu; peak RSS %ld KiB\n",
           (unsigned long long)s.executions_failed, peak_rss_kib());
    run_stop(&x);
    free(x.root);
    free(x.db);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void latency(const opts *o)
{
    run x;
    memset(&x, 0, sizeof x);
    run_start(&x, o, "latency", o->lat_count, o->rate);
    engine_stats s;
    do {
        usleep(10000);
        engine_get_stats(x.e, &s);
    } while (s.executions_ok + s.executions_failed < (uint64_t)o->lat_count);
    run_stop(&x);
    /* the step runs recorded latency_us as a metric */
    sqlite3 *db;
    sqlite3_stmt *st;
    if (sqlite3_open_v2(x.db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT json_extract(metrics, '$.latency_us') FROM step_runs",
                           -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "reading %s: %s\n", x.db, sqlite3_errmsg(db));
        exit(1);
    }
    double *v = malloc(sizeof *v * (size_t)o->lat_count);
    size_t n = 0;
    while (sqlite3_step(st) == SQLITE_ROW && n < (size_t)o->lat_count)
        v[n++] = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    qsort(v, n, sizeof *v, cmp_double);
    printf("latency: %zu events at %ld events/s, emit -> step start\n", n, o->rate);
    if (n)
        printf("  p50 %.0f us   p90 %.0f us   p99 %.0f us   max %.0f us; peak RSS %ld KiB\n",
               v[n / 2], v[n * 9 / 10], v[n * 99 / 100], v[n - 1], peak_rss_kib());
    free(v);
    free(x.root);
    free(x.db);
}

int main(int argc, char **argv)
{
    opts o = {.count = 200000, .rate = 10000, .lat_count = 50000, .workers = 0,
              .queue = 65536, .dir = NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "usage: see the comment at the top of bench/bench_pipeline.c\n");
            return 2;
        }
        i++;
        if (!strcmp(a, "--count"))
            o.count = atol(v);
        else if (!strcmp(a, "--rate"))
            o.rate = atol(v);
        else if (!strcmp(a, "--lat-count"))
            o.lat_count = atol(v);
        else if (!strcmp(a, "--workers"))
            o.workers = (unsigned)atoi(v);
        else if (!strcmp(a, "--queue"))
            o.queue = (size_t)atol(v);
        else if (!strcmp(a, "--sync"))
            o.sync_full = !strcmp(v, "full");
        else if (!strcmp(a, "--dir"))
            o.dir = v;
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    char tmpl[] = "/tmp/evh-bench-XXXXXX";
    if (!o.dir && !(o.dir = mkdtemp(tmpl))) {
        perror("mkdtemp");
        return 1;
    }
    if (o.workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.workers = n > 0 ? (unsigned)n : 2;
    }
    log_set_level(EVH_LOG_WARN);
    printf("evhost %s pipeline benchmark; data in %s; %ld cores\n", EVH_VERSION, o.dir,
           sysconf(_SC_NPROCESSORS_ONLN));
    if (o.count > 0)
        throughput(&o);
    if (o.lat_count > 0)
        latency(&o);
    return 0;
}
