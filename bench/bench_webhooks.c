/*
 * bench_webhooks.c - outbound webhooks, measured.
 *
 * Phase 1 (deliveries): COUNT lifecycle events handed straight to the
 * notifier (notifier_submit, one job each, so nothing waits for order),
 * delivered to a receiver on loopback (libmicrohttpd in this process, a
 * pool of threads answering 204 at once, keep-alive).  Prints deliveries/s
 * from the first submit to the last delivery recorded, the process's CPU
 * time per delivery (storing, sending and the receiver), and how many TCP
 * connections the receiver saw (keep-alive: about --concurrency, not one
 * per delivery).  bench/curl_floor.c is the floor under this figure.
 *
 * Phase 2 (pipeline): the firehose source emits EVENTS events through one
 * trigger into a one-step workflow (as bench_pipeline does), with 0
 * subscriptions and then each count of --subscribers (1 and 10) taking
 * every lifecycle event (4 per execution) to the same receiver.  Prints the
 * pipeline's events/s end to end (emit -> execution recorded) and CPU time
 * per event for each, the slowdown against 0 subscribers, and the time
 * until every delivery was made.  --repeat runs that many rounds, the
 * counts interleaved, and prints the medians (this machine's figures vary
 * by a fifth from run to run).  --take gives the subscriptions a list of
 * events instead of all of them (an n8n flow that reacts to finished jobs
 * takes '["jobComplete","jobError"]': one delivery per execution).
 * --hold makes the receiver hold every request until the pipeline has
 * finished, so that nothing is delivered while it runs: the slowdown is
 * then what storing the lifecycle events costs (and building them), with
 * no HTTP at all.
 *
 *   bench_webhooks [--deliveries N] [--concurrency C] [--events N]
 *                  [--workers N] [--receiver-threads N] [--dir DIR]
 *                  [--subscribers 1,10] [--repeat N] [--take '["jobComplete"]']
 *                  [--hold]
 *
 * Runs in process against the same static library as the daemon.  Not a
 * test: it asserts nothing and prints figures (docs/BENCHMARKS.md records
 * them).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>


#include <evhost/evhost.h>

#include "engine.h"
#include "event.h"
#include "lifecycle.h"
#include "loader.h"
#include "log.h"
#include "notify.h"
#include "pipeline.h"
#include "registry.h"
#include "runtime.h"
#include "store.h"
#include "subscription.h"

#include "receiver.h"

typedef struct opts {
    long deliveries, events;
    unsigned concurrency, workers, receiver_threads;
    const char *dir;
    const char *subscribers; /* counts to compare with none, "1,10" */
    unsigned repeat;         /* rounds of phase 2 (medians printed) */
    int hold;                /* phase 2: nothing delivered until the pipeline is done */
} opts;

static double now_s(void)
{
    return (double)monotonic_ns() / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of n values (sorts them). */
static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* CPU seconds this process used so far, all threads. */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_webhooks: %s\n", what);
    exit(1);
}

/* ---- subscriptions ------------------------------------------------------- */

/* The subscriptions' "events": "all", or a JSON list of names
 * (--take); and how many of them a succeeding one-step execution makes. */
static const char *take_json = "\"all\"";
static int take_per_execution = 4;

static subscription **make_subs(int port, int n)
{
    subscription **subs = calloc((size_t)(n ? n : 1), sizeof *subs);
    for (int i = 0; i < n; i++) {
        char spec[512];
        snprintf(spec, sizeof spec,
                 "{\"id\": \"s%d\", \"url\": \"http://127.0.0.1:%d/s%d\", \"events\": %s, "
                 "\"secret\": \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\", \"token\": \"t\"}",
                 i, port, i, take_json);
        cJSON *j = cJSON_Parse(spec);
        diag d;
        diag_init(&d, NULL);
        subs[i] = subscription_from_json(j, 1, 0, &d, "");
        diag_free(&d);
        cJSON_Delete(j);
        if (!subs[i])
            die("bad subscription");
    }
    return subs;
}

static void free_subs(subscription **subs, int n)
{
    for (int i = 0; i < n; i++)
        subscription_free(subs[i]);
    free(subs);
}

/* Remove path and its -wal and -shm files. */
static void remove_db(const char *path)
{
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
        char *p = NULL;
        if (asprintf(&p, "%s%s", path, suffix[i]) < 0)
            die("out of memory");
        unlink(p);
        free(p);
    }
}

static char *fresh_db(const opts *o, const char *tag)
{
    char *root = NULL, *db = NULL;
    if (asprintf(&root, "%s/%s", o->dir, tag) < 0 || asprintf(&db, "%s/evhost.db", root) < 0)
        die("out of memory");
    mkdir(root, 0700);
    char *outbox = store_outbox_path(db);
    if (!outbox)
        die("out of memory");
    remove_db(db);
    remove_db(outbox);
    free(outbox);
    free(root);
    return db;
}

static notifier *notifier_for(const opts *o, const char *db, subscription **subs, int n)
{
    /* the main database first (as the daemon does), then its outbox file */
    store *st = NULL;
    char *err = NULL;
    if (store_open(&(store_options){.path = db}, &st, &err) != EVH_OK)
        die(err ? err : "database");
    store_close(st);
    char *outbox = store_outbox_path(db);
    if (!outbox)
        die("out of memory");
    notify_options no = {.outbox_path = outbox,
                         .concurrency = o->concurrency,
                         .queue = 1 << 20,
                         .config_subs = subs,
                         .n_config_subs = (size_t)n};
    notifier *nt = notifier_new(&no, &err);
    free(outbox);
    if (!nt)
        die(err ? err : "notifier");
    return nt;
}

/* ---- phase 1: deliveries per second ---------------------------------------- */

static void deliveries(const opts *o, int port)
{
    char *db = fresh_db(o, "deliveries");
    subscription **subs = make_subs(port, 1);
    notifier *nt = notifier_for(o, db, subs, 1);
    free_subs(subs, 1);
    notifier_start(nt);
    atomic_store(&received, 0);
    atomic_store(&connections, 0);
    static const char body[] =
        "{\"event\":\"jobComplete\",\"data\":{\"jobId\":\"00000000-0000-4000-8000-000000000000\","
        "\"job\":{\"id\":\"00000000-0000-4000-8000-000000000000\",\"config\":{\"workflow_id\":"
        "\"noop\"},\"progress\":{\"done\":1,\"total\":1},\"result\":{\"metrics\":[],\"summary\":"
        "{\"status\":\"succeeded\",\"duration_ms\":1}}}},\"timestamp\":"
        "\"2026-11-23T10:30:00.123Z\"}";
    double t0 = now_s(), cpu0 = cpu_s();
    for (long i = 0; i < o->deliveries; i++) {
        char job[40], msg[48];
        snprintf(job, sizeof job, "job-%ld", i);
        snprintf(msg, sizeof msg, "msg_%ld", i);
        if (notifier_submit(nt, LC_JOB_COMPLETE, job, msg, strdup(body), sizeof body - 1) !=
            EVH_OK)
            die("submit");
    }
    double t_submitted = now_s();
    notifier_stats s;
    for (;;) {
        notifier_get_stats(nt, &s);
        if (s.delivered + s.dead >= (uint64_t)o->deliveries)
            break;
        usleep(2000);
    }
    double t_done = now_s(), cpu = cpu_s() - cpu0;
    printf("deliveries: %ld to one receiver on loopback, concurrency %u, signed, keep-alive\n",
           o->deliveries, o->concurrency);
    printf("  submitted (queued):                %10.0f events/s  (%.2f s)\n",
           (double)o->deliveries / (t_submitted - t0), t_submitted - t0);
    printf("  delivered (submit -> 2xx):         %10.0f deliveries/s  (%.2f s, %.0f us CPU "
           "per delivery, receiver included)\n",
           (double)o->deliveries / (t_done - t0), t_done - t0,
           cpu * 1e6 / (double)o->deliveries);
    printf("  dead %llu, retried %llu; receiver saw %ld requests on %ld connection(s)\n",
           (unsigned long long)s.dead, (unsigned long long)s.failed, atomic_load(&received),
           atomic_load(&connections));
    notifier_stop(nt, 5000);
    notifier_free(nt);
    free(db);
}

/* ---- phase 2: the pipeline with 0, 1 and 10 subscribers ----------------------- */

typedef struct run {
    char *root, *db;
    runtime *rt;
    registry *r;
    engine *e;
    notifier *nt;
    lifecycle *lc;
} run;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0)
        die(path);
    fclose(f);
}

static double pipeline(const opts *o, int port, int n_subs, double baseline)
{
    run x;
    memset(&x, 0, sizeof x);
    char tag[32];
    snprintf(tag, sizeof tag, "pipeline-%d", n_subs);
    x.db = fresh_db(o, tag);
    if (asprintf(&x.root, "%s/%s", o->dir, tag) < 0)
        die("out of memory");
    subscription **subs = make_subs(port, n_subs);
    x.nt = notifier_for(o, x.db, subs, n_subs);
    free_subs(subs, n_subs);
    x.lc = lifecycle_new(x.nt);
    x.rt = runtime_new(65536, x.root, 100);
    x.r = registry_new();
    char cfg[128];
    snprintf(cfg, sizeof cfg, "{\"firehose\": {\"count\": %ld, \"rate\": 0}}", o->events);
    cJSON *configs = cJSON_Parse(cfg);
    loader_options lo = {.plugin_configs = configs};
    diag d;
    diag_init(&d, EVH_BENCH_PLUGIN_DIR);
    loader_scan_dir(x.r, x.rt, EVH_BENCH_PLUGIN_DIR, &lo, &d);
    diag_free(&d);
    if (!registry_find(x.r, "firehose") || !registry_find(x.r, "noop-step"))
        die("bench plugins not found (build the bench targets)");
    char *wf = NULL, *tf = NULL;
    char *wdir = NULL;
    if (asprintf(&wdir, "%s/workflows", x.root) < 0 || asprintf(&wf, "%s/wf.yaml", wdir) < 0 ||
        asprintf(&tf, "%s/triggers.yaml", x.root) < 0)
        die("out of memory");
    mkdir(wdir, 0700);
    write_file(wf, "id: noop\nsteps:\n  - {id: nothing, uses: noop-step}\n");
    write_file(tf, "triggers:\n  - {id: all, source: firehose, event_type: tick, workflow: noop}\n");
    engine_options eo = {.db_path = x.db,
                         .workers = o->workers,
                         .dispatch_queue = 65536,
                         .max_chain_depth = 8,
                         .lifecycle = x.lc};
    char *err = NULL;
    x.e = engine_new(x.rt, x.r, &eo, &err);
    if (!x.e)
        die(err ? err : "engine");
    const char *wd[] = {wdir};
    const char *tfs[] = {tf};
    pipeline_sources src = {wd, 1, tfs, 1, x.rt};
    workflow_set *ws;
    trigger_set *ts;
    diag_init(&d, NULL);
    pipeline_load(&src, x.r, NULL, &ws, &ts, &d);
    if (d.count) {
        diag_print(&d, stderr);
        exit(1);
    }
    diag_free(&d);
    engine_set_config(x.e, ws, ts);
    if (o->hold && n_subs)
        receiver_hold(1);
    notifier_start(x.nt);
    double t0 = now_s(), cpu0 = cpu_s();
    engine_start(x.e);
    loader_start_sources(x.r);
    engine_stats s;
    for (;;) {
        engine_get_stats(x.e, &s);
        if (s.executions_ok + s.executions_failed >= (uint64_t)o->events)
            break;
        usleep(2000);
    }
    double t_exec = now_s(), cpu = cpu_s() - cpu0;
    receiver_hold(0);
    double rate = (double)o->events / (t_exec - t0);
    printf("  %2d subscriber(s): %10.0f events/s end to end (%.2f s, %.0f us CPU per event)",
           n_subs, rate, t_exec - t0, cpu * 1e6 / (double)o->events);
    if (baseline > 0)
        printf(", %+.1f%% vs none", (rate / baseline - 1) * 100);
    fflush(stdout);
    uint64_t want = (uint64_t)o->events * (uint64_t)take_per_execution * (uint64_t)n_subs;
    notifier_stats ns;
    for (;;) {
        notifier_get_stats(x.nt, &ns);
        if (ns.delivered + ns.dead >= want)
            break;
        usleep(5000);
    }
    if (n_subs)
        printf("; %llu deliveries all made after %.2f s", (unsigned long long)want,
               now_s() - t0);
    printf("\n");
    loader_stop_sources(x.r);
    runtime_stop(x.rt);
    engine_stop(x.e, 60000);
    notifier_stop(x.nt, 5000);
    engine_free(x.e);
    notifier_free(x.nt);
    lifecycle_free(x.lc);
    loader_unload_all(x.r);
    registry_free(x.r);
    runtime_free(x.rt);
    cJSON_Delete(configs);
    free(wf);
    free(wdir);
    free(tf);
    free(x.root);
    free(x.db);
    return rate;
}

int main(int argc, char **argv)
{
    opts o = {.deliveries = 100000,
              .events = 20000,
              .concurrency = 32,
              .workers = 0,
              .receiver_threads = 2,
              .subscribers = "1,10",
              .repeat = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--hold")) {
            o.hold = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "usage: see the comment at the top of bench/bench_webhooks.c\n");
            return 2;
        }
        i++;
        if (!strcmp(a, "--deliveries"))
            o.deliveries = atol(v);
        else if (!strcmp(a, "--events"))
            o.events = atol(v);
        else if (!strcmp(a, "--concurrency"))
            o.concurrency = (unsigned)atoi(v);
        else if (!strcmp(a, "--workers"))
            o.workers = (unsigned)atoi(v);
        else if (!strcmp(a, "--receiver-threads"))
            o.receiver_threads = (unsigned)atoi(v);
        else if (!strcmp(a, "--take")) {
            /* the names a succeeding one-step execution emits count */
            static const char *const ok[] = {"jobStart", "pluginStart", "pluginComplete",
                                             "jobComplete"};
            cJSON *list = cJSON_Parse(v);
            const cJSON *names = cJSON_IsArray(list) ? list : NULL, *e;
            take_per_execution = 0;
            cJSON_ArrayForEach(e, names)
            {
                for (size_t k = 0; k < 4; k++)
                    take_per_execution += cJSON_IsString(e) && !strcmp(e->valuestring, ok[k]);
            }
            cJSON_Delete(list);
            if (!take_per_execution) {
                fprintf(stderr, "--take: a JSON list of lifecycle event names, one of them an "
                                "event a succeeding execution makes, as "
                                "'[\"jobComplete\",\"jobError\"]'\n");
                return 2;
            }
            take_json = v;
        } else if (!strcmp(a, "--repeat"))
            o.repeat = (unsigned)atoi(v);
        else if (!strcmp(a, "--subscribers"))
            o.subscribers = v;
        else if (!strcmp(a, "--dir"))
            o.dir = v;
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    char tmpl[] = "/tmp/evh-bench-hooks-XXXXXX";
    if (!o.dir && !(o.dir = mkdtemp(tmpl))) {
        perror("mkdtemp");
        return 1;
    }
    if (o.workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.workers = n > 0 ? (unsigned)n : 2;
    }
    if (o.concurrency == 0)
        o.concurrency = 1;
    if (o.repeat < 1 || o.repeat > 64) {
        fprintf(stderr, "--repeat: 1 to 64 rounds\n");
        return 2;
    }
    log_set_level(EVH_LOG_WARN);
    printf("evhost %s webhook benchmark; data in %s; %ld cores\n", EVH_VERSION, o.dir,
           sysconf(_SC_NPROCESSORS_ONLN));
    int port = 0;
    struct MHD_Daemon *rx = receiver_start(o.receiver_threads, &port);
    if (!rx)
        die("cannot start the receiver");
    if (o.deliveries > 0)
        deliveries(&o, port);
    if (o.events > 0) {
        printf("pipeline: %ld events, workers %u, one no-op step; each subscriber takes %s "
               "(%d per execution)%s\n",
               o.events, o.workers, take_json, take_per_execution,
               o.hold ? "; deliveries held until the pipeline is done (--hold)" : "");
        int counts[16], n_counts = 0;
        for (const char *c = o.subscribers; *c;) {
            char *end = NULL;
            long k = strtol(c, &end, 10);
            if (end == c || k <= 0 || k > 1000 || (*end && *end != ',') || n_counts == 16) {
                fprintf(stderr, "--subscribers: up to 16 counts from 1 to 1000, as 1,10\n");
                return 2;
            }
            counts[n_counts++] = (int)k;
            c = *end ? end + 1 : end;
        }
        /* rounds interleave the counts, so that the machine's slower
         * minutes fall on all of them; the medians are the figures */
        double rates[17][64];
        for (unsigned r = 0; r < o.repeat; r++) {
            if (o.repeat > 1)
                printf(" round %u of %u\n", r + 1, o.repeat);
            rates[0][r] = pipeline(&o, port, 0, 0);
            for (int i = 0; i < n_counts; i++)
                rates[i + 1][r] = pipeline(&o, port, counts[i], rates[0][r]);
        }
        if (o.repeat > 1) {
            double none = median(rates[0], o.repeat);
            printf("medians of %u rounds:\n   0 subscriber(s): %10.0f events/s\n", o.repeat, none);
            for (int i = 0; i < n_counts; i++) {
                double m = median(rates[i + 1], o.repeat);
                printf("  %2d subscriber(s): %10.0f events/s, %+.1f%% vs none\n", counts[i], m,
                       (m / none - 1) * 100);
            }
        }
    }
    MHD_stop_daemon(rx);
    return 0;
}
