/*
 * test_builtin_sources.c - the built-in event sources, loaded from the build
 * tree into a real host (engine, SQLite store) by the API harness:
 *   timer: the cron parser and next-minute computation (cron.c is compiled
 *          into this test), config refused at load (bad cron, both
 *          interval_ms and cron, wrong types), no config meaning once a
 *          minute, interval mode end to end;
 *   pdf-monitor-event-source: real files in a temporary folder: one event
 *          per written file, modified, deleted, patterns, a file still being
 *          written, recursive folders created later, a missing folder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "apitest.h"
#include "cron.h"
#include "loader.h"
#include "registry.h"
#include "store.h"
#include "testutil.h"

#define MONITOR "pdf-monitor-event-source"

/* ---- helpers -------------------------------------------------------------- */

/* Every host here runs one workflow (the fixture step echoing); the pdf
 * monitor's tests trigger it on pdf_file_added. */
static const char *const echo_workflow[] = {
    "id: on-pdf\nsteps:\n  - id: echo\n    uses: test-step\n    with: {value: '{{ event.data.name "
    "}}'}\n",
    NULL};
static const char pdf_trigger[] = "triggers:\n"
                                  "  - id: new-pdf\n"
                                  "    source: pdf-monitor-event-source\n"
                                  "    event_type: pdf_file_added\n"
                                  "    workflow: on-pdf\n"
                                  "    conditions:\n"
                                  "      all:\n"
                                  "        - {field: data.name, op: eq, value: a.pdf}\n"
                                  "        - {field: data.size, op: gt, value: 0}\n";

static time_t utc(const char *iso)
{
    struct tm tm = {0};
    assert_non_null(strptime(iso, "%Y-%m-%dT%H:%M:%SZ", &tm));
    return timegm(&tm);
}

static const char *iso(int64_t t, char buf[32])
{
    time_t secs = (time_t)t;
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

/* Events of source (and type, and data.name when not NULL) in the store. */
static int count_events(apitest *t, const char *source, const char *type, const char *name)
{
    store_filter f = {.source = source, .event_type = type, .limit = STORE_LIST_MAX_LIMIT};
    cJSON *list = store_events_list(t->st, &f, NULL);
    assert_non_null(list);
    int n = 0;
    const cJSON *ev;
    cJSON_ArrayForEach(ev, list)
    {
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(ev, "data");
        const char *got = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "name"));
        if (!name || (got && strcmp(got, name) == 0))
            n++;
    }
    cJSON_Delete(list);
    return n;
}

/* Poll until count_events reaches `want` (fails after 5 s). */
static void wait_events(apitest *t, const char *source, const char *type, const char *name,
                        int want)
{
    long long end = tu_now_ms() + 5000;
    int n;
    while ((n = count_events(t, source, type, name)) < want && tu_now_ms() < end)
        usleep(10000);
    if (n < want)
        fail_msg("%d %s event(s) for %s, want %d", n, type ? type : "any", name ? name : "any",
                 want);
}

/* Poll until the trigger has `want` succeeded executions; returns the count
 * (waiting at most 5 s). */
static int wait_executions(apitest *t, const char *trigger_id, int want)
{
    store_filter f = {.trigger_id = trigger_id, .status = "succeeded", .limit = 100};
    long long end = tu_now_ms() + 5000;
    int n;
    do {
        cJSON *list = store_executions_list(t->st, &f, NULL);
        assert_non_null(list);
        n = cJSON_GetArraySize(list);
        cJSON_Delete(list);
    } while (n < want && tu_now_ms() < end && usleep(10000) == 0);
    return n;
}

/* The newest stored event's data of that type and name (a copy to free). */
static cJSON *last_data(apitest *t, const char *type, const char *name)
{
    store_filter f = {.source = MONITOR, .event_type = type, .limit = STORE_LIST_MAX_LIMIT};
    cJSON *list = store_events_list(t->st, &f, NULL), *out = NULL;
    const cJSON *ev;
    cJSON_ArrayForEach(ev, list)
    {
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(ev, "data");
        const char *got = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "name"));
        if (!out && got && strcmp(got, name) == 0)
            out = cJSON_Duplicate(data, 1);
    }
    cJSON_Delete(list);
    assert_non_null(out);
    return out;
}

/* Write `chunks` pieces of text to path through one descriptor, pausing
 * between writes, then close (one IN_CLOSE_WRITE at the end). */
static void write_chunks(const char *path, int chunks)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    for (int i = 0; i < chunks; i++) {
        char text[64];
        int n = snprintf(text, sizeof text, "%%PDF-1.7 chunk %d of %d\n", i + 1, chunks);
        assert_int_equal(write(fd, text, (size_t)n), n);
        usleep(5000);
    }
    assert_int_equal(close(fd), 0);
}

/* Append a line, opening and closing the file (one more IN_CLOSE_WRITE). */
static void append_line(const char *path, const char *line)
{
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs(line, f);
    assert_int_equal(fclose(f), 0);
}

static plugin *loaded(apitest *t, const char *id)
{
    plugin *p = registry_find_any(t->r, id);
    assert_non_null(p);
    return p;
}

/* ---- timer: cron parser ----------------------------------------------------- */

static void test_cron_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *expr, *why;
    } cases[] = {
        {"* 25 * * *", "field 2 (hour): 25 is out of range 0-23"},
        {"60 * * * *", "field 1 (minute): 60 is out of range 0-59"},
        {"* * 0 * *", "field 3 (day-of-month): 0 is out of range 1-31"},
        {"* * * 13 *", "field 4 (month): 13 is out of range 1-12"},
        {"* * * * 8", "field 5 (day-of-week): 8 is out of range 0-7"},
        {"* * * * 123456", "field 5 (day-of-week): 123456 is out of range 0-7"},
        {"* * * foo *", "field 4 (month): 'foo' is not a number or a month name (jan-dec)"},
        {"* * * * x", "field 5 (day-of-week): 'x' is not a number or a weekday name (sun-sat)"},
        {"a * * * *", "field 1 (minute): 'a' is not a number"},
        {"5-1 * * * *", "field 1 (minute): range 5-1 is reversed"},
        {"*/0 * * * *", "field 1 (minute): step 0 is out of range 1-59"},
        {"*/x * * * *", "field 1 (minute): a step must be a number"},
        {"1,,2 * * * *", "field 1 (minute): empty list item"},
        {"1, * * * *", "field 1 (minute): empty list item"},
        {"1x * * * *", "field 1 (minute): unexpected 'x'"},
        {"* * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 3"},
        {"* * * * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 6"},
        {"  ", "expected 5 fields (minute hour day-of-month month day-of-week), got 0"},
        {"0 0 30 2 *", "never matches: no selected month has the selected day-of-month"},
        {"0 0 31 4,6,9,11 *", "never matches: no selected month has the selected day-of-month"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cron_expr c;
        char why[160] = "";
        if (cron_parse(cases[i].expr, &c, why, sizeof why) != -1)
            fail_msg("'%s' was accepted", cases[i].expr);
        if (strcmp(why, cases[i].why) != 0)
            fail_msg("'%s': got \"%s\", want \"%s\"", cases[i].expr, why, cases[i].why);
    }
}

static void test_cron_next(void **state)
{
    (void)state;
    static const struct {
        const char *expr, *after, *next;
    } cases[] = {
        {"*/5 * * * *", "2024-03-10T10:02:30Z", "2024-03-10T10:05:00Z"},
        {"*/5 * * * *", "2024-03-10T10:05:00Z", "2024-03-10T10:10:00Z"}, /* strictly after */
        {"* * * * *", "2024-03-10T10:05:59Z", "2024-03-10T10:06:00Z"},
        {"5/20 * * * *", "2024-03-10T10:06:00Z", "2024-03-10T10:25:00Z"},
        {"0,30 8-10 * * *", "2024-03-10T10:30:00Z", "2024-03-11T08:00:00Z"},
        {"0 9 * * mon-fri", "2024-03-08T09:00:00Z", "2024-03-11T09:00:00Z"}, /* Fri -> Mon */
        {"0 12 * * 7", "2024-03-10T12:00:00Z", "2024-03-17T12:00:00Z"},      /* 7 = Sunday */
        {"0 12 * JAN,Jul SUN", "2024-01-28T12:00:00Z", "2024-07-07T12:00:00Z"},
        {"0 0 31 * *", "2024-04-01T00:00:00Z", "2024-05-31T00:00:00Z"},
        {"30 2 29 2 *", "2024-03-01T00:00:00Z", "2028-02-29T02:30:00Z"},
        {"59 23 31 12 *", "2024-12-31T23:59:00Z", "2025-12-31T23:59:00Z"},
        /* both days restricted: either matches (the 13th, or a Friday) */
        {"0 0 13 * fri", "2024-09-01T00:00:00Z", "2024-09-06T00:00:00Z"},
        {"0 0 13 * fri", "2024-09-12T00:00:00Z", "2024-09-13T00:00:00Z"},
        /* day-of-month starts with '*': both must match (1, 11, 21, 31 that is a Monday) */
        {"0 0 */10 * mon", "2024-01-01T00:00:00Z", "2024-03-11T00:00:00Z"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cron_expr c;
        char why[160] = "", got[32];
        if (cron_parse(cases[i].expr, &c, why, sizeof why) != 0)
            fail_msg("'%s' refused: %s", cases[i].expr, why);
        int64_t next = cron_next(&c, utc(cases[i].after));
        if (next != utc(cases[i].next))
            fail_msg("'%s' after %s: got %s, want %s", cases[i].expr, cases[i].after,
                     iso(next, got), cases[i].next);
    }
}

/* cron_next agrees with a minute-by-minute reference over 40 days. */
static int reference_match(const cron_expr *c, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
#define HAS(f, v) ((c->bits[f] >> (v)) & 1)
    int dom = (int)HAS(2, tm.tm_mday), dow = (int)HAS(4, tm.tm_wday);
    int day = c->star[2] || c->star[4] ? dom && dow : dom || dow;
    return HAS(0, tm.tm_min) && HAS(1, tm.tm_hour) && HAS(3, tm.tm_mon + 1) && day;
#undef HAS
}

static void test_cron_next_reference(void **state)
{
    (void)state;
    static const char *const exprs[] = {"*/7 */5 * * *", "15 3,15 1-10/3 * *", "0 */6 * * sat,sun",
                                        "45 23 20 * 2-4", "* 0 28-31 2,3 *"};
    time_t start = utc("2024-02-10T00:00:00Z"), end = start + 40 * 86400;
    for (size_t i = 0; i < sizeof exprs / sizeof exprs[0]; i++) {
        cron_expr c;
        char why[160], a[32], b[32];
        assert_int_equal(cron_parse(exprs[i], &c, why, sizeof why), 0);
        time_t prev = start + 17; /* not on a minute */
        while (prev < end) {
            int64_t next = cron_next(&c, prev);
            assert_true(next > prev && next % 60 == 0);
            for (time_t m = (prev / 60 + 1) * 60; m < next && m < end; m += 60)
                if (reference_match(&c, m))
                    fail_msg("'%s': %s skipped", exprs[i], iso(m, a));
            if (next < end && !reference_match(&c, (time_t)next))
                fail_msg("'%s': %s (after %s) does not match", exprs[i], iso(next, a),
                         iso(prev, b));
            prev = (time_t)next;
        }
    }
}

/* ---- timer: through the plugin ---------------------------------------------- */

static const char *const timer_only[] = {"timer", NULL};

static void assert_timer_refused(const char *config, const char *why)
{
    char configs[256];
    snprintf(configs, sizeof configs, "{\"timer\": %s}", config);
    at_options o = {.builtins = timer_only, .plugin_configs = configs, .workflows = echo_workflow};
    apitest *t = at_start(&o);
    plugin *p = loaded(t, "timer");
    assert_int_equal(p->state, PLUGIN_FAILED);
    assert_non_null(p->error);
    if (!strstr(p->error, why))
        fail_msg("%s: error \"%s\" does not say \"%s\"", config, p->error, why);
    at_stop(t);
}

static void test_timer_config_refused(void **state)
{
    (void)state;
    assert_timer_refused("{\"cron\": \"* 25 * * *\"}",
                         "cron: field 2 (hour): 25 is out of range 0-23");
    assert_timer_refused("{\"cron\": \"*/5 * * *\"}", "cron: expected 5 fields");
    assert_timer_refused("{\"interval_ms\": 1000, \"cron\": \"* * * * *\"}",
                         "interval_ms, cron: set only one of the two");
    /* no config at all is not an error: once a minute */
    at_options o = {.builtins = timer_only, .plugin_configs = "{\"timer\": {}}",
                    .workflows = echo_workflow};
    apitest *t = at_start(&o);
    plugin *p = loaded(t, "timer");
    assert_true(p->state == PLUGIN_READY || p->state == PLUGIN_RUNNING);
    at_stop(t);
    /* types and ranges are the configSchema's */
    assert_timer_refused("{\"cron\": 5}", "config.cron");
    assert_timer_refused("{\"interval_ms\": 1}", "config.interval_ms");
}

static void test_timer_cron_loads_and_stops_promptly(void **state)
{
    (void)state;
    at_options o = {.builtins = timer_only,
                    .plugin_configs =
                        "{\"timer\": {\"cron\": \"0 0 1 1 *\", \"timer_id\": \"ny\"}}",
                    .workflows = echo_workflow};
    apitest *t = at_start(&o);
    assert_int_equal(loaded(t, "timer")->state, PLUGIN_RUNNING);
    usleep(50000); /* run() is asleep in api->wait until next new year */
    long long before = tu_now_ms();
    at_stop(t);
    assert_true(tu_now_ms() - before < 2000);
}

static void test_timer_interval_end_to_end(void **state)
{
    (void)state;
    at_options o = {.builtins = timer_only,
                    .plugin_configs = "{\"timer\": {\"interval_ms\": 20, \"timer_id\": \"fast\"}}",
                    .workflows = echo_workflow};
    apitest *t = at_start(&o);
    assert_int_equal(loaded(t, "timer")->state, PLUGIN_RUNNING);
    wait_events(t, "timer", "timer_fired", NULL, 3);
    store_filter f = {.source = "timer", .event_type = "timer_fired", .limit = 500};
    cJSON *list = store_events_list(t->st, &f, NULL);
    int n = cJSON_GetArraySize(list);
    assert_true(n >= 3);
    /* newest first: sequence counts down to 1 */
    for (int i = 0; i < n; i++) {
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(list, i), "data");
        assert_string_equal(
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "timer_id")), "fast");
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(data, "sequence")->valueint, n - i);
        const char *at = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "fired_at"));
        assert_non_null(at);
        assert_int_equal(strlen(at), 20); /* 2024-06-01T10:00:00Z */
        assert_true(at[19] == 'Z');
    }
    cJSON_Delete(list);
    at_stop(t);
}

/* ---- pdf-monitor-event-source ----------------------------------------------- */

static const char *const monitor_only[] = {MONITOR, NULL};

typedef struct watched {
    char *root, *dir; /* the temp dir and the watched folder in it */
    char *real;       /* realpath of dir, as events report it */
    apitest *t;
} watched;

/* Watch a new folder (with `present`, a file already in it); extra_config
 * is appended to the config object. */
static void watch_start(watched *w, const char *extra_config, const char *present)
{
    w->root = tu_tempdir("pdfmon");
    w->dir = tu_join(w->root, "inbox");
    assert_int_equal(mkdir(w->dir, 0755), 0);
    if (present) {
        char *path = tu_join(w->dir, present);
        assert_int_equal(tu_write_file(path, "%PDF-1.4 old\n"), 0);
        free(path);
    }
    w->real = realpath(w->dir, NULL);
    assert_non_null(w->real);
    char configs[1024];
    snprintf(configs, sizeof configs,
             "{\"" MONITOR "\": {\"folders\": [\"%s\"], \"debounce_ms\": 100%s}}", w->dir,
             extra_config ? extra_config : "");
    at_options o = {.builtins = monitor_only,
                    .plugin_configs = configs,
                    .workflows = echo_workflow,
                    .triggers = pdf_trigger};
    w->t = at_start(&o);
    assert_int_equal(loaded(w->t, MONITOR)->state, PLUGIN_RUNNING);
}

static void watch_stop(watched *w)
{
    long long before = tu_now_ms();
    at_stop(w->t);
    assert_true(tu_now_ms() - before < 2000); /* stop() wakes poll() */
    tu_rmtree(w->root);
    free(w->root);
    free(w->dir);
    free(w->real);
}

static char *in_dir(const watched *w, const char *name)
{
    return tu_join(w->dir, name);
}

static int count(const watched *w, const char *type, const char *name)
{
    return count_events(w->t, MONITOR, type, name);
}

/* A marker file written after the things under test: once its event is
 * stored, every earlier change has been looked at, so counts are final. */
static void settle_with_marker(const watched *w, const char *marker)
{
    char *path = in_dir(w, marker);
    write_chunks(path, 1);
    wait_events(w->t, MONITOR, "pdf_file_added", marker, 1);
    free(path);
}

static void test_monitor_added_modified_deleted(void **state)
{
    (void)state;
    watched w;
    watch_start(&w, NULL, "old.pdf");
    char *a = in_dir(&w, "a.pdf");

    /* written in several chunks, closed, reopened and appended twice within
     * the debounce time: one event */
    write_chunks(a, 5);
    append_line(a, "more\n");
    append_line(a, "and more\n");
    wait_events(w.t, MONITOR, "pdf_file_added", "a.pdf", 1);

    /* not matching: a .txt file, a .pdf in a sub-folder (not recursive) */
    char *txt = in_dir(&w, "notes.txt");
    write_chunks(txt, 3);
    char *sub = in_dir(&w, "sub");
    assert_int_equal(mkdir(sub, 0755), 0);
    char *deep = tu_join(sub, "deep.pdf");
    write_chunks(deep, 1);
    settle_with_marker(&w, "marker1.pdf");
    assert_int_equal(count(&w, "pdf_file_added", "a.pdf"), 1);
    assert_int_equal(count(&w, "pdf_file_modified", "a.pdf"), 0);
    assert_int_equal(count(&w, NULL, "notes.txt"), 0);
    assert_int_equal(count(&w, NULL, "deep.pdf"), 0);
    /* present before the start: remembered, not reported; a change to it
     * is "modified" */
    assert_int_equal(count(&w, NULL, "old.pdf"), 0);
    char *old = in_dir(&w, "old.pdf");
    append_line(old, "new line\n");
    wait_events(w.t, MONITOR, "pdf_file_modified", "old.pdf", 1);
    free(old);

    cJSON *data = last_data(w.t, "pdf_file_added", "a.pdf");
    char *want_path = tu_join(w.real, "a.pdf");
    struct stat st;
    assert_int_equal(stat(a, &st), 0);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(data, "path")), want_path);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(data, "folder")), w.real);
    assert_int_equal(cJSON_GetObjectItem(data, "size")->valuedouble, (double)st.st_size);
    const char *mod = cJSON_GetStringValue(cJSON_GetObjectItem(data, "modified_at"));
    assert_non_null(mod);
    char when[32];
    assert_int_equal(strncmp(mod, iso(st.st_mtim.tv_sec, when), 19), 0);
    cJSON_Delete(data);

    /* rewritten: one modified */
    write_chunks(a, 8);
    wait_events(w.t, MONITOR, "pdf_file_modified", "a.pdf", 1);
    /* opened for writing and closed untouched: nothing */
    int fd = open(a, O_WRONLY);
    assert_true(fd >= 0);
    close(fd);
    settle_with_marker(&w, "marker2.pdf");
    assert_int_equal(count(&w, "pdf_file_modified", "a.pdf"), 1);
    assert_int_equal(count(&w, "pdf_file_added", "a.pdf"), 1);

    /* deleted: one deleted, with the size last seen */
    assert_int_equal(stat(a, &st), 0);
    assert_int_equal(unlink(a), 0);
    wait_events(w.t, MONITOR, "pdf_file_deleted", "a.pdf", 1);
    data = last_data(w.t, "pdf_file_deleted", "a.pdf");
    assert_int_equal(cJSON_GetObjectItem(data, "size")->valuedouble, (double)st.st_size);
    cJSON_Delete(data);
    /* case-insensitive by default; moved in counts as added */
    char *upper = tu_join(w.root, "SCAN.PDF");
    write_chunks(upper, 2);
    char *moved = in_dir(&w, "SCAN.PDF");
    assert_int_equal(rename(upper, moved), 0);
    wait_events(w.t, MONITOR, "pdf_file_added", "SCAN.PDF", 1);
    settle_with_marker(&w, "marker3.pdf");
    assert_int_equal(count(&w, "pdf_file_deleted", "a.pdf"), 1);
    assert_int_equal(count(&w, "pdf_file_added", "SCAN.PDF"), 1);
    assert_int_equal(count(&w, NULL, "notes.txt"), 0);
    /* the trigger on a.pdf's pdf_file_added ran its workflow once; the other
     * added files did not match its conditions */
    assert_int_equal(wait_executions(w.t, "new-pdf", 1), 1);
    at_wait_settled(w.t, (unsigned long long)count(&w, NULL, NULL));
    assert_int_equal(wait_executions(w.t, "new-pdf", 1), 1);

    free(upper);
    free(moved);
    free(want_path);
    free(deep);
    free(sub);
    free(txt);
    free(a);
    watch_stop(&w);
}

static void test_monitor_reports_once_closed(void **state)
{
    (void)state;
    watched w;
    watch_start(&w, NULL, NULL);
    char *b = in_dir(&w, "big.pdf");
    int fd = open(b, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "%PDF-1.7\n", 9), 9);
    usleep(300000); /* three debounce periods with the file open */
    assert_int_equal(count(&w, NULL, "big.pdf"), 0);
    assert_int_equal(write(fd, "rest\n", 5), 5);
    assert_int_equal(close(fd), 0);
    wait_events(w.t, MONITOR, "pdf_file_added", "big.pdf", 1);
    settle_with_marker(&w, "marker.pdf");
    assert_int_equal(count(&w, NULL, "big.pdf"), 1);
    cJSON *data = last_data(w.t, "pdf_file_added", "big.pdf");
    assert_int_equal(cJSON_GetObjectItem(data, "size")->valueint, 14);
    cJSON_Delete(data);
    free(b);
    watch_stop(&w);
}

static void test_monitor_recursive(void **state)
{
    (void)state;
    watched w;
    watch_start(&w, ", \"recursive\": true, \"patterns\": [\"*.pdf\", \"report-*.csv\"]", NULL);
    /* a folder created after the start, a file in it at once (before the
     * monitor can have watched it) */
    char *sub = in_dir(&w, "sub");
    assert_int_equal(mkdir(sub, 0755), 0);
    char *c = tu_join(sub, "c.pdf");
    write_chunks(c, 3);
    wait_events(w.t, MONITOR, "pdf_file_added", "c.pdf", 1);
    cJSON *data = last_data(w.t, "pdf_file_added", "c.pdf");
    char *want = tu_join(w.real, "sub/c.pdf");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(data, "path")), want);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(data, "folder")), w.real);
    cJSON_Delete(data);

    /* nested folders made in one go, and a second pattern */
    char *deeper = tu_join(sub, "x");
    char *deepest = tu_join(deeper, "y");
    assert_int_equal(mkdir(deeper, 0755), 0);
    assert_int_equal(mkdir(deepest, 0755), 0);
    char *d = tu_join(deepest, "d.pdf");
    char *csv = tu_join(deepest, "report-1.csv");
    char *other = tu_join(deepest, "other.csv");
    write_chunks(d, 2);
    write_chunks(csv, 2);
    write_chunks(other, 2);
    wait_events(w.t, MONITOR, "pdf_file_added", "d.pdf", 1);
    wait_events(w.t, MONITOR, "pdf_file_added", "report-1.csv", 1);

    /* a folder moved away: its files are deleted */
    char *away = tu_join(w.root, "away");
    assert_int_equal(rename(sub, away), 0);
    wait_events(w.t, MONITOR, "pdf_file_deleted", "d.pdf", 1);
    wait_events(w.t, MONITOR, "pdf_file_deleted", "c.pdf", 1);
    settle_with_marker(&w, "marker.pdf");
    assert_int_equal(count(&w, "pdf_file_added", "c.pdf"), 1);
    assert_int_equal(count(&w, "pdf_file_added", "d.pdf"), 1);
    assert_int_equal(count(&w, NULL, "other.csv"), 0);
    assert_int_equal(count(&w, "pdf_file_modified", NULL), 0);

    free(away);
    free(other);
    free(csv);
    free(d);
    free(deepest);
    free(deeper);
    free(want);
    free(c);
    free(sub);
    watch_stop(&w);
}

static void test_monitor_missing_folder_refused(void **state)
{
    (void)state;
    char *root = tu_tempdir("pdfmon");
    char *missing = tu_join(root, "no-such-folder");
    char *file = tu_join(root, "file.pdf");
    assert_int_equal(tu_write_file(file, "x"), 0);
    char configs[1024];
    snprintf(configs, sizeof configs, "{\"" MONITOR "\": {\"folders\": [\"%s\", \"%s\"]}}", root,
             missing);
    at_options o = {
        .builtins = monitor_only, .plugin_configs = configs, .workflows = echo_workflow};
    apitest *t = at_start(&o);
    plugin *p = loaded(t, MONITOR);
    assert_int_equal(p->state, PLUGIN_FAILED);
    assert_non_null(strstr(p->error, missing));
    assert_non_null(strstr(p->error, "folders[1]"));
    assert_non_null(strstr(p->error, "does not exist"));
    at_stop(t);

    snprintf(configs, sizeof configs, "{\"" MONITOR "\": {\"folders\": [\"%s\"]}}", file);
    o.plugin_configs = configs;
    t = at_start(&o);
    p = loaded(t, MONITOR);
    assert_int_equal(p->state, PLUGIN_FAILED);
    assert_non_null(strstr(p->error, "is not a directory"));
    at_stop(t);

    /* no folders at all: loads, watches nothing */
    o.plugin_configs = NULL;
    t = at_start(&o);
    assert_int_equal(loaded(t, MONITOR)->state, PLUGIN_RUNNING);
    at_stop(t);
    tu_rmtree(root);
    free(file);
    free(missing);
    free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cron_parse_errors),
        cmocka_unit_test(test_cron_next),
        cmocka_unit_test(test_cron_next_reference),
        cmocka_unit_test(test_timer_config_refused),
        cmocka_unit_test(test_timer_cron_loads_and_stops_promptly),
        cmocka_unit_test(test_timer_interval_end_to_end),
        cmocka_unit_test(test_monitor_added_modified_deleted),
        cmocka_unit_test(test_monitor_reports_once_closed),
        cmocka_unit_test(test_monitor_recursive),
        cmocka_unit_test(test_monitor_missing_folder_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
