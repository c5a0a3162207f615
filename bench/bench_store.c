/*
 * bench_store.c - the storage ceiling under the pipeline: how many events
 * per second SQLite can take on this machine with nothing but the rows the
 * pipeline writes for each event, no plugins, no JSON, no threads.
 *
 *   bench_store [--count N] [--batch B] [--sync normal|full] [--dir D]
 *
 * Phases, each in a fresh database file, B rows (or events) per transaction:
 *   raw      a narrow two-column table: the "batched SQLite inserts" figure
 *   events   store_events_insert of the seed's file_upload envelope
 *   records  per event: its execution (inserted once, in its final state,
 *            as the recorder folds it), one step run, the event's status
 *   pipeline both: what the pipeline's two writing threads (the event
 *            writer and the recorder) write for each event
 * The pipeline's end-to-end rate can never beat the last figure: it is the
 * database work alone, on one core, where the pipeline shares two cores
 * with plugins, JSON, trigger matching and the step itself.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include <evhost/evhost.h>

#include "event.h"
#include "store.h"

static const char DATA[] =
    "{\"filename\":\"report-2026-11.pdf\",\"file_size\":48213,\"content_type\":"
    "\"application/pdf\",\"upload_path\":\"/uploads/report-2026-11.pdf\"}";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_store: %s: %s\n", what, why ? why : "failed");
    exit(1);
}

static char *fresh_db(const char *dir, const char *name)
{
    char *path = NULL;
    if (asprintf(&path, "%s/%s.db", dir, name) < 0)
        die("asprintf", NULL);
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char *p = NULL;
        if (asprintf(&p, "%s%s", path, sfx[i]) >= 0) {
            unlink(p);
            free(p);
        }
    }
    return path;
}

static void report(const char *phase, size_t count, double secs, const char *unit)
{
    printf("  %-9s %9.0f %s/s  (%zu in %.2f s)\n", phase, (double)count / secs, unit, count, secs);
}

static void bench_raw(const char *dir, size_t count, size_t batch, int full)
{
    char *path = fresh_db(dir, "raw");
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die(path, sqlite3_errmsg(db));
    char *sql = NULL;
    if (asprintf(&sql,
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s;"
                 "CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
                 full ? "FULL" : "NORMAL") < 0)
        die("asprintf", NULL);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        die("schema", sqlite3_errmsg(db));
    free(sql);
    sqlite3_stmt *ins = NULL;
    if (sqlite3_prepare_v2(db, "INSERT INTO t(body) VALUES(?1)", -1, &ins, NULL) != SQLITE_OK)
        die("prepare", sqlite3_errmsg(db));
    double t0 = now_s();
    for (size_t i = 0; i < count;) {
        sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        for (size_t j = 0; j < batch && i < count; j++, i++) {
            sqlite3_bind_text(ins, 1, DATA, -1, SQLITE_STATIC);
            if (sqlite3_step(ins) != SQLITE_DONE)
                die("insert", sqlite3_errmsg(db));
            sqlite3_reset(ins);
        }
        if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            die("commit", sqlite3_errmsg(db));
    }
    report("raw", count, now_s() - t0, "rows");
    sqlite3_finalize(ins);
    sqlite3_close(db);
    free(path);
}

static store *open_store(const char *dir, const char *name, int full)
{
    char *path = fresh_db(dir, name);
    store_options so = {.path = path, .synchronous_full = full};
    store *st = NULL;
    char *err = NULL;
    if (store_open(&so, &st, &err) != EVH_OK)
        die(path, err);
    free(path);
    return st;
}

static evh_event **make_events(size_t n, const char *source, const char *type)
{
    evh_event **evs = calloc(n, sizeof *evs);
    if (!evs)
        die("calloc", NULL);
    for (size_t i = 0; i < n; i++) {
        evs[i] = event_new(source, type, DATA, sizeof DATA - 1, "user-42", NULL);
        if (!evs[i])
            die("event_new", NULL);
    }
    return evs;
}

static void free_events(evh_event **evs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        event_free(evs[i]);
    free(evs);
}

/* The execution records of n events, as the recorder writes them: each
 * execution inserted once in its final state, one step run, the event's
 * status, each table's rows together. */
static void put_records(store *st, evh_event *const *evs, size_t n)
{
    store_execution *x = calloc(n, sizeof *x);
    store_execution **xp = calloc(n, sizeof *xp);
    store_step_run *run = calloc(n, sizeof *run);
    const store_step_run **rp = calloc(n, sizeof *rp);
    const char **ids = calloc(n, sizeof *ids);
    if (!x || !xp || !run || !rp || !ids)
        die("calloc", NULL);
    for (size_t i = 0; i < n; i++) {
        int64_t at = evs[i]->timestamp_us;
        x[i] = (store_execution){.workflow_id = "generate-report",
                                 .workflow_version = "3f2a9c1e",
                                 .trigger_id = "pdf-uploads",
                                 .event_id = evs[i]->id,
                                 .status = "succeeded",
                                 .at_us = at,
                                 .started_us = at + 10,
                                 .finished_us = at + 90};
        if (uuid_for_execution(evs[i]->id, "pdf-uploads", x[i].id) != EVH_OK)
            die("uuid", NULL);
        xp[i] = &x[i];
        run[i] = (store_step_run){.execution_id = x[i].id,
                                  .step_id = "notify",
                                  .plugin = "noop-step",
                                  .attempt = 1,
                                  .status = "succeeded",
                                  .output_json = "{\"ok\":true}",
                                  .metrics_json = "[{\"name\":\"latency_us\",\"value\":120}]",
                                  .started_us = at + 10,
                                  .finished_us = at + 90};
        rp[i] = &run[i];
        ids[i] = evs[i]->id;
    }
    if (store_executions_insert(st, xp, n) != EVH_OK)
        die("executions", store_errmsg(st));
    if (store_step_runs_put(st, rp, n) != EVH_OK)
        die("step runs", store_errmsg(st));
    if (store_events_set_status(st, ids, n, "dispatched") != EVH_OK)
        die("event status", store_errmsg(st));
    free(x);
    free(xp);
    free(run);
    free(rp);
    free(ids);
}

/* phase "events", "records" or "pipeline" */
static void bench_store_phase(const char *dir, const char *phase, size_t count, size_t batch,
                              int full)
{
    int events = strcmp(phase, "records") != 0;
    int records = strcmp(phase, "events") != 0;
    store *st = open_store(dir, phase, full);
    evh_event **evs = make_events(count, "web-client-upload", "file_upload");
    if (!events) /* the records need their events: stored before the clock starts */
        for (size_t i = 0; i < count; i += batch)
            if (store_events_insert(st, evs + i, count - i < batch ? count - i : batch) != EVH_OK)
                die("events", store_errmsg(st));
    double t0 = now_s();
    for (size_t i = 0; i < count; i += batch) {
        size_t n = count - i < batch ? count - i : batch;
        if (events && store_events_insert(st, evs + i, n) != EVH_OK)
            die("events", store_errmsg(st));
        if (records) {
            if (store_batch_begin(st) != EVH_OK)
                die("begin", store_errmsg(st));
            put_records(st, evs + i, n);
            if (store_batch_end(st, EVH_OK) != EVH_OK)
                die("commit", store_errmsg(st));
        }
    }
    report(phase, count, now_s() - t0, "events");
    free_events(evs, count);
    store_close(st);
}

int main(int argc, char **argv)
{
    size_t count = 200000, batch = 1000;
    int full = 0;
    const char *dir = NULL;
    static const struct option opts[] = {{"count", required_argument, NULL, 'n'},
                                         {"batch", required_argument, NULL, 'b'},
                                         {"sync", required_argument, NULL, 's'},
                                         {"dir", required_argument, NULL, 'd'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (c) {
        case 'n':
            count = strtoul(optarg, NULL, 10);
            break;
        case 'b':
            batch = strtoul(optarg, NULL, 10);
            break;
        case 's':
            full = !strcmp(optarg, "full");
            break;
        case 'd':
            dir = optarg;
            break;
        default:
            fprintf(stderr, "usage: bench_store [--count N] [--batch B] [--sync normal|full] "
                            "[--dir D]\n");
            return 2;
        }
    }
    if (!count || !batch)
        die("--count and --batch", "must be positive");
    char tmpl[] = "/tmp/evh-bench-store-XXXXXX";
    if (!dir && !(dir = mkdtemp(tmpl)))
        die("mkdtemp", NULL);
    printf("evhost storage ceiling: %zu per phase, %zu per transaction, synchronous %s, "
           "SQLite %s, data in %s\n",
           count, batch, full ? "full" : "normal", sqlite3_libversion(), dir);
    bench_raw(dir, count, batch, full);
    bench_store_phase(dir, "events", count, batch, full);
    bench_store_phase(dir, "records", count, batch, full);
    bench_store_phase(dir, "pipeline", count, batch, full);
    return 0;
}
