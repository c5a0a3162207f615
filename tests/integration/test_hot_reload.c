/*
 * test_hot_reload.c - plugins dropped into, replaced in and removed from a
 * watched plugin directory of a running host (reload.h, watch.h), and the
 * deadlines on init and stop (deadline.h):
 *   - a folder renamed into place is loaded and its source's events stored;
 *   - a new version replaces the old one, which is stopped and finalized;
 *   - a broken replacement leaves the old version running, error reported;
 *   - a removed folder's source is stopped and unloaded;
 *   - a half-copied folder is reported once, and loads once completed;
 *   - POST /api/plugins/reload does the same on demand and says what changed;
 *   - a workflow step run in flight across a replacement of its step plugin
 *     completes, and the old version drains;
 *   - a source that hangs in init is marked failed with the deadline; one that
 *     does not stop is abandoned, and shutdown completes anyway;
 *   - a real daemon serves a dropped-in plugin within a second or so, reloads
 *     on SIGHUP and stops within its stop deadline despite a hung source;
 *   - the daemon's data directory inside a plugin directory is never taken
 *     for a plugin folder.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apitest.h"
#include "deadline.h"
#include "loader.h"
#include "log.h"
#include "reload.h"
#include "testutil.h"
#include "watch.h"

#define assert_contains(haystack, needle)                                                  \
    do {                                                                                   \
        const char *h_ = (haystack);                                                       \
        if (!h_ || !strstr(h_, (needle))) {                                                \
            print_error("'%s' not found in '%s'\n", (needle), h_ ? h_ : "(null)");          \
            fail();                                                                        \
        }                                                                                  \
    } while (0)

static const char *str(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

/* ---- the host under test, with the reloader and its watcher ----------------- */

typedef struct hr {
    apitest *t;
    reloader *rl;
    watcher *w;
    cJSON *configs;
    char *record; /* version-source's record_file */
    char *staging;
} hr;

static const char *const no_fixtures[] = {NULL};

static hr *hr_start(const at_options *o, int use_inotify)
{
    at_options none = {.fixtures = no_fixtures};
    hr *h = calloc(1, sizeof *h);
    assert_non_null(h);
    h->t = at_start(o ? o : &none);
    h->record = tu_join(h->t->root, "record.txt");
    h->staging = tu_join(h->t->root, "staging");
    assert_int_equal(mkdir(h->staging, 0755), 0);
    char *cfg = NULL;
    assert_true(asprintf(&cfg, "{\"version-source\": {\"record_file\": \"%s\"}}", h->record) > 0);
    h->configs = cJSON_Parse(cfg);
    free(cfg);
    char *copies = tu_join(h->t->data, "plugin-libraries");
    const char *dirs[] = {h->t->plugins};
    reload_options ro = {.dirs = dirs,
                         .n_dirs = 1,
                         .plugin_configs = h->configs,
                         .library_copy_dir = copies,
                         .revalidate = pipeline_reload,
                         .revalidate_ud = &h->t->rl};
    h->rl = reloader_new(h->t->r, h->t->rt, &ro);
    free(copies);
    assert_non_null(h->rl);
    reloader_set_running(h->rl);
    h->w = watcher_start(h->rl, use_inotify, 100);
    assert_non_null(h->w);
    h->t->api.plugins_reload = reloader_api;
    h->t->api.plugins_reload_ud = h->rl;
    return h;
}

static void hr_stop(hr *h)
{
    watcher_stop(h->w);
    at_stop(h->t);
    reloader_free(h->rl);
    cJSON_Delete(h->configs);
    free(h->record);
    free(h->staging);
    free(h);
}

/* ---- files ------------------------------------------------------------------ */

/* Copy src to dst the careful way: a temporary file renamed over dst. */
static void copy_file_atomic(const char *src, const char *dst)
{
    char *tmp = NULL;
    assert_true(asprintf(&tmp, "%s.tmp-copy", dst) > 0);
    int in = open(src, O_RDONLY);
    assert_true(in >= 0);
    struct stat st;
    assert_int_equal(fstat(in, &st), 0);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, st.st_mode & 0755);
    assert_true(out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    close(in);
    assert_int_equal(close(out), 0);
    assert_int_equal(chmod(tmp, st.st_mode & 0755), 0);
    assert_int_equal(rename(tmp, dst), 0);
    free(tmp);
}

static void write_file_atomic(const char *dst, const char *text)
{
    char *tmp = NULL;
    assert_true(asprintf(&tmp, "%s.tmp-write", dst) > 0);
    assert_int_equal(tu_write_file(tmp, text), 0);
    assert_int_equal(rename(tmp, dst), 0);
    free(tmp);
}

/* Copy fixture `name` to the staging area, then rename it into the plugin
 * directory as `as`: a drop-in that appears whole. */
static void drop_in(hr *h, const char *name, const char *as)
{
    assert_int_equal(tu_copy_fixture(name, h->staging, as), 0);
    char *from = tu_join(h->staging, as);
    char *to = tu_join(h->t->plugins, as);
    assert_int_equal(rename(from, to), 0);
    free(from);
    free(to);
}

/* The files of fixture `name` copied over plugin folder `folder` one by one,
 * and the folder's files the fixture lacks deleted: an in-place upgrade. */
static void replace_with(hr *h, const char *name, const char *folder)
{
    char *src = tu_join(EVH_FIXTURE_DIR, name);
    char *dst = tu_join(h->t->plugins, folder);
    DIR *d = opendir(src);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *a = tu_join(src, e->d_name), *b = tu_join(dst, e->d_name);
        copy_file_atomic(a, b);
        free(a);
        free(b);
    }
    closedir(d);
    d = opendir(dst);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *a = tu_join(src, e->d_name), *b = tu_join(dst, e->d_name);
        struct stat st;
        if (stat(a, &st) != 0)
            assert_int_equal(unlink(b), 0);
        free(a);
        free(b);
    }
    closedir(d);
    free(src);
    free(dst);
}

/* ---- waiting for the host ---------------------------------------------------- */

typedef int (*pred_fn)(hr *h, const void *arg);

static int wait_until(hr *h, pred_fn f, const void *arg, int ms)
{
    long long end = tu_now_ms() + ms;
    do {
        if (f(h, arg))
            return 1;
        usleep(10000);
    } while (tu_now_ms() < end);
    return f(h, arg);
}

typedef struct want {
    const char *id, *state, *version, *error, *reload_error;
} want;

/* The record with this id (a usable one first) is as wanted; NULL fields
 * are not checked; state "gone": there is no record. */
static int plugin_is(hr *h, const void *arg)
{
    const want *w = arg;
    registry_rdlock(h->t->r);
    const plugin *p = registry_find(h->t->r, w->id);
    if (!p)
        p = registry_find_any(h->t->r, w->id);
    int ok = !strcmp(w->state, "gone")
                 ? p == NULL
                 : p && !strcmp(plugin_state_name(p->state), w->state) &&
                       (!w->version || (p->m && !strcmp(p->m->version, w->version))) &&
                       (!w->error || (p->error && strstr(p->error, w->error))) &&
                       (!w->reload_error || (p->reload_error && strstr(p->reload_error,
                                                                       w->reload_error)));
    registry_unlock(h->t->r);
    return ok;
}

static void expect_plugin(hr *h, want w, int ms)
{
    if (!wait_until(h, plugin_is, &w, ms)) {
        registry_rdlock(h->t->r);
        const plugin *p = registry_find_any(h->t->r, w.id);
        print_error("plugin '%s': want state %s version %s; have %s %s, error %s, reload "
                    "error %s\n", w.id, w.state, w.version ? w.version : "-",
                    p ? plugin_state_name(p->state) : "none",
                    p && p->m ? p->m->version : "-", p && p->error ? p->error : "-",
                    p && p->reload_error ? p->reload_error : "-");
        registry_unlock(h->t->r);
        fail();
    }
}

static int record_has(hr *h, const void *line)
{
    char *text = tu_read_file(h->record);
    int ok = text && strstr(text, line) != NULL;
    free(text);
    return ok;
}

static void expect_record(hr *h, const char *line, int ms)
{
    if (!wait_until(h, record_has, line, ms)) {
        char *text = tu_read_file(h->record);
        print_error("'%s' not in the record file: %s\n", line, text ? text : "(none)");
        free(text);
        fail();
    }
}

/* An event of version-source with data.build == arg is stored. */
static int event_stored(hr *h, const void *build)
{
    store_filter f = {.source = "version-source"};
    cJSON *list = store_events_list(h->t->st, &f, NULL);
    int found = 0;
    const cJSON *ev;
    cJSON_ArrayForEach(ev, list)
    {
        const char *b = str(cJSON_GetObjectItemCaseSensitive(ev, "data"), "build");
        found |= b && !strcmp(b, build);
    }
    cJSON_Delete(list);
    return found;
}

static int drained(hr *h, const void *arg)
{
    (void)arg;
    return reloader_reap(h->rl) == 0;
}

/* ---- a source: dropped in, replaced, broken replacement, removed ------------- */

static void test_source_drop_replace_rollback_remove(void **state)
{
    (void)state;
    hr *h = hr_start(NULL, 1);

    /* dropped in (renamed into place): loaded, started, its event stored */
    drop_in(h, "version-source", "version-source");
    expect_plugin(h, (want){"version-source", "running", "1.0.0", NULL, NULL}, 5000);
    expect_record(h, "start 1\n", 5000);
    assert_true(wait_until(h, event_stored, "1", 5000));

    /* a new version (other code, manifest 2.0.0): loaded beside the old one,
     * swapped in; the old one stopped and, once drained, finalized */
    replace_with(h, "version-source-v2", "version-source");
    expect_plugin(h, (want){"version-source", "running", "2.0.0", NULL, NULL}, 5000);
    expect_record(h, "start 2\n", 5000);
    expect_record(h, "stop 1\n", 1000);
    assert_true(wait_until(h, event_stored, "2", 5000));
    expect_record(h, "fini 1\n", 5000);
    assert_true(wait_until(h, drained, NULL, 5000));
    at_response r;
    assert_int_equal(at_json(h->t, "GET", "/api/event-sources/version-source", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.json, "version"), "2.0.0");
    assert_string_equal(str(r.json, "state"), "running");
    assert_null(cJSON_GetObjectItemCaseSensitive(r.json, "reloadError"));
    at_response_free(&r);

    /* a broken replacement: the running version stays, the error is reported */
    char *mpath = tu_join(h->t->plugins, "version-source/plugin.json");
    write_file_atomic(mpath, "{\"type\": \"event-source\", \"id\": ");
    expect_plugin(h, (want){"version-source", "running", "2.0.0", NULL, "invalid plugin.json"},
                  5000);
    assert_false(record_has(h, "stop 2\n"));
    assert_int_equal(at_json(h->t, "GET", "/api/event-sources/version-source", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.json, "version"), "2.0.0");
    assert_string_equal(str(r.json, "state"), "running");
    assert_contains(str(r.json, "reloadError"), "plugin.json");
    at_response_free(&r);

    /* removed: stopped, gone from the registry, finalized */
    char *folder = tu_join(h->t->plugins, "version-source");
    tu_rmtree(folder);
    expect_plugin(h, (want){"version-source", "gone", NULL, NULL, NULL}, 5000);
    expect_record(h, "stop 2\n", 5000);
    expect_record(h, "fini 2\n", 5000);
    assert_true(wait_until(h, drained, NULL, 5000));
    assert_int_equal(at_json(h->t, "GET", "/api/event-sources/version-source", NULL, &r), 0);
    assert_int_equal(r.status, 404);
    at_response_free(&r);

    free(folder);
    free(mpath);
    hr_stop(h);
}

/* ---- half-copied folders; POST /api/plugins/reload ------------------------- */

static void test_half_copied_reported_then_loads(void **state)
{
    (void)state;
    hr *h = hr_start(NULL, 1);
    /* plugin.json only: the library is not there yet */
    char *folder = tu_join(h->t->plugins, "version-source");
    assert_int_equal(mkdir(folder, 0755), 0);
    char *src_json = tu_join(EVH_FIXTURE_DIR, "version-source/plugin.json");
    char *dst_json = tu_join(folder, "plugin.json");
    copy_file_atomic(src_json, dst_json);
    expect_plugin(h, (want){"version-source", "failed", NULL, "library does not exist", NULL},
                  5000);
    /* reported once: a rescan with nothing changed does not try it again
     * (after the watcher's own debounced rescans of the copy have run) */
    usleep(1200 * 1000);
    cJSON *report = reloader_rescan(h->rl, 0);
    assert_non_null(report);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(report, "failed")), 0);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(report, "unchanged")->valueint, 1);
    cJSON_Delete(report);
    /* the copy completes: tried again, loads */
    char *src_so = tu_join(EVH_FIXTURE_DIR, "version-source/version-source.so");
    char *dst_so = tu_join(folder, "version-source.so");
    copy_file_atomic(src_so, dst_so);
    expect_plugin(h, (want){"version-source", "running", "1.0.0", NULL, NULL}, 5000);
    expect_record(h, "start 1\n", 5000);
    free(src_so);
    free(dst_so);
    free(src_json);
    free(dst_json);
    free(folder);
    hr_stop(h);
}

static const cJSON *only(const cJSON *report, const char *list)
{
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(report, list);
    if (cJSON_GetArraySize(l) != 1) {
        char *text = cJSON_Print(report);
        print_error("'%s' should have one entry: %s\n", list, text ? text : "?");
        free(text);
        fail();
    }
    return cJSON_GetArrayItem(l, 0);
}

static void test_api_reload_on_demand(void **state)
{
    (void)state;
    hr *h = hr_start(NULL, 0); /* no inotify: only POST /api/plugins/reload */
    drop_in(h, "version-source", "version-source");
    usleep(300 * 1000);
    expect_plugin(h, (want){"version-source", "gone", NULL, NULL, NULL}, 0);

    at_response r;
    assert_int_equal(at_json(h->t, "POST", "/api/plugins/reload", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    const cJSON *loaded = only(r.json, "loaded");
    assert_string_equal(str(loaded, "id"), "version-source");
    assert_string_equal(str(loaded, "version"), "1.0.0");
    assert_string_equal(str(loaded, "kind"), "event-source");
    assert_string_equal(str(loaded, "state"), "running");
    at_response_free(&r);
    expect_record(h, "start 1\n", 5000);

    /* nothing changed */
    assert_int_equal(at_json(h->t, "POST", "/api/plugins/reload", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "loaded")), 0);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(r.json, "unchanged")->valueint, 1);
    at_response_free(&r);

    /* a new version */
    replace_with(h, "version-source-v2", "version-source");
    assert_int_equal(at_json(h->t, "POST", "/api/plugins/reload", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    const cJSON *rep = only(r.json, "replaced");
    assert_string_equal(str(rep, "from"), "1.0.0");
    assert_string_equal(str(rep, "to"), "2.0.0");
    assert_string_equal(str(rep, "old_state"), "stopped");
    at_response_free(&r);
    expect_record(h, "stop 1\n", 1000);
    expect_record(h, "start 2\n", 5000);

    /* a broken one: reported with the version kept */
    char *mpath = tu_join(h->t->plugins, "version-source/plugin.json");
    write_file_atomic(mpath, "not json");
    assert_int_equal(at_json(h->t, "POST", "/api/plugins/reload", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    const cJSON *failed = only(r.json, "failed");
    assert_string_equal(str(failed, "kept"), "2.0.0");
    assert_contains(str(failed, "error"), "plugin.json");
    at_response_free(&r);

    /* removed */
    char *folder = tu_join(h->t->plugins, "version-source");
    tu_rmtree(folder);
    assert_int_equal(at_json(h->t, "POST", "/api/plugins/reload", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    const cJSON *removed = only(r.json, "removed");
    assert_string_equal(str(removed, "version"), "2.0.0");
    at_response_free(&r);
    expect_record(h, "stop 2\n", 1000);
    expect_plugin(h, (want){"version-source", "gone", NULL, NULL, NULL}, 0);
    free(folder);
    free(mpath);
    hr_stop(h);
}

/* ---- a step run in flight across a replacement of its plugin --------------- */

static const char *const step_fixtures[] = {"ok-minimal", "test-step", NULL};
static const char *const slow_workflow[] = {
    "id: slow\n"
    "steps:\n"
    "  - {id: nap, uses: test-step, with: {mode: sleep, sleep_ms: 2500, value: 7}}\n",
    NULL};

static int executions_in(hr *h, const char *status)
{
    store_filter f = {.workflow_id = "slow", .status = status};
    cJSON *list = store_executions_list(h->t->st, &f, NULL);
    int n = cJSON_GetArraySize(list);
    cJSON_Delete(list);
    return n;
}

static int one_running(hr *h, const void *arg)
{
    (void)arg;
    return executions_in(h, "running") == 1;
}

static int succeeded(hr *h, const void *n)
{
    return executions_in(h, "succeeded") == *(const int *)n;
}

static void post_event(hr *h)
{
    at_response r;
    assert_int_equal(at_json(h->t, "POST", "/api/events/process",
                             "{\"event_type\": \"thing_happened\", \"source\": \"ok-minimal\", "
                             "\"data\": {\"n\": 1}}",
                             &r),
                     0);
    if (r.status != 202)
        print_error("%s\n", r.body);
    assert_int_equal(r.status, 202);
    at_response_free(&r);
}

static void test_step_run_in_flight_across_replacement(void **state)
{
    (void)state;
    at_options o = {.fixtures = step_fixtures,
                    .workflows = slow_workflow,
                    .triggers = "triggers:\n"
                                "  - {id: t, source: ok-minimal, event_type: thing_happened, "
                                "workflow: slow}\n"};
    hr *h = hr_start(&o, 1);
    post_event(h);
    assert_true(wait_until(h, one_running, NULL, 5000));
    long long t0 = tu_now_ms();

    /* test-step 1.1.0 while the run sleeps in 1.0.0 */
    char *mpath = tu_join(h->t->plugins, "test-step/plugin.json");
    char *text = tu_read_file(mpath);
    assert_non_null(text);
    char *v = strstr(text, "\"version\": \"1.0.0\"");
    assert_non_null(v);
    memcpy(v, "\"version\": \"1.1.0\"", strlen("\"version\": \"1.1.0\""));
    write_file_atomic(mpath, text);
    free(text);
    expect_plugin(h, (want){"test-step", "ready", "1.1.0", NULL, NULL}, 5000);
    if (tu_now_ms() - t0 < 2000) /* the run is still in flight (unless very slow) */
        assert_int_equal(executions_in(h, "running"), 1);
    /* the old version drains: the run completes with it */
    int one = 1, two = 2;
    assert_true(wait_until(h, succeeded, &one, 10000));
    assert_int_equal(executions_in(h, "failed"), 0);
    store_filter f = {.workflow_id = "slow"};
    cJSON *list = store_executions_list(h->t->st, &f, NULL);
    cJSON *x = store_execution_get(h->t->st, str(cJSON_GetArrayItem(list, 0), "id"));
    const cJSON *run = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(x, "steps"), 0);
    assert_string_equal(str(run, "status"), "succeeded");
    cJSON_Delete(x);
    cJSON_Delete(list);
    /* the worker dropped its instance of 1.0.0: that version is unloaded */
    assert_true(wait_until(h, drained, NULL, 5000));
    /* and the next run uses 1.1.0 */
    post_event(h);
    assert_true(wait_until(h, succeeded, &two, 10000));
    free(mpath);
    hr_stop(h);
}

/* ---- deadlines: init, stop, shutdown --------------------------------------- */

static void test_init_and_stop_deadlines(void **state)
{
    (void)state;
    deadline_set_init_ms(300);
    deadline_set_stop_ms(300);
    hr *h = hr_start(NULL, 1);

    /* init never returns: failed, with the deadline in the error */
    drop_in(h, "hangs-in-init", "hangs-in-init");
    expect_plugin(h, (want){"hangs-in-init", "failed", "1.0.0",
                            "init did not return within 300 ms", NULL},
                  5000);
    at_response r;
    assert_int_equal(at_json(h->t, "GET", "/api/event-sources/hangs-in-init", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.json, "state"), "failed");
    assert_contains(str(r.json, "error"), "init did not return within 300 ms");
    at_response_free(&r);

    /* a source that does not stop, removed: abandoned, never unloaded */
    drop_in(h, "hangs-on-stop", "hangs-on-stop");
    expect_plugin(h, (want){"hangs-on-stop", "running", NULL, NULL, NULL}, 5000);
    char *folder = tu_join(h->t->plugins, "hangs-on-stop");
    tu_rmtree(folder);
    expect_plugin(h, (want){"hangs-on-stop", "gone", NULL, NULL, NULL}, 5000);
    assert_true(reloader_reap(h->rl) >= 1);

    /* dropped in again (stop callback hanging too), then the host stops:
     * within the deadline, the source abandoned and reported */
    drop_in(h, "hangs-on-stop", "hangs-on-stop");
    expect_plugin(h, (want){"hangs-on-stop", "running", NULL, NULL, NULL}, 5000);
    long long t0 = tu_now_ms();
    loader_stop_sources(h->t->r);
    long long took = tu_now_ms() - t0;
    assert_true(took < 2000);
    expect_plugin(h, (want){"hangs-on-stop", "abandoned", NULL,
                            "run() did not return within 300 ms", NULL},
                  0);
    t0 = tu_now_ms();
    hr_stop(h); /* the whole shutdown */
    assert_true(tu_now_ms() - t0 < 5000);
    deadline_set_init_ms(DEADLINE_INIT_DEFAULT_MS);
    deadline_set_stop_ms(DEADLINE_STOP_DEFAULT_MS);
    free(folder);
}

static void test_stop_callback_deadline(void **state)
{
    (void)state;
    deadline_set_stop_ms(300);
    hr *h = hr_start(NULL, 1);
    cJSON_AddItemToObject(h->configs, "hangs-on-stop",
                          cJSON_Parse("{\"hang_in_stop\": true}"));
    drop_in(h, "hangs-on-stop", "hangs-on-stop");
    expect_plugin(h, (want){"hangs-on-stop", "running", NULL, NULL, NULL}, 5000);
    long long t0 = tu_now_ms();
    loader_stop_sources(h->t->r);
    assert_true(tu_now_ms() - t0 < 2000);
    expect_plugin(h, (want){"hangs-on-stop", "abandoned", NULL,
                            "its stop callback did not return within 300 ms", NULL},
                  0);
    hr_stop(h);
    deadline_set_stop_ms(DEADLINE_STOP_DEFAULT_MS);
}

/* ---- a real daemon ----------------------------------------------------------- */

static void stage_and_rename(const char *root, const char *name)
{
    char *staging = tu_join(root, "staging");
    mkdir(staging, 0755);
    assert_int_equal(tu_copy_fixture(name, staging, NULL), 0);
    char *from = tu_join(staging, name);
    char *plugins = tu_join(root, "plugins");
    char *to = tu_join(plugins, name);
    assert_int_equal(rename(from, to), 0);
    free(to);
    free(plugins);
    free(from);
    free(staging);
}

static void test_daemon_drop_in_sighup_and_stop_deadline(void **state)
{
    (void)state;
    char *root = tu_tempdir("hotreload");
    char *plugins = tu_join(root, "plugins");
    char *wfdir = tu_join(root, "workflows");
    assert_int_equal(mkdir(plugins, 0755), 0);
    assert_int_equal(mkdir(wfdir, 0755), 0);
    char *trig = tu_join(root, "triggers.yaml");
    assert_int_equal(tu_write_file(trig, "triggers: []\n"), 0);
    char *record = tu_join(root, "record.txt");
    char *cfg = tu_join(root, "host.yaml");
    char *yaml = NULL;
    assert_true(asprintf(&yaml,
                         "server: {listen: \"127.0.0.1:0\"}\n"
                         "plugins:\n"
                         "  builtin: false\n"
                         "  dirs: [\"%s\"]\n"
                         "  reload_debounce_ms: 100\n"
                         "  stop_timeout_ms: 300\n"
                         "  config:\n"
                         "    version-source: {record_file: \"%s\"}\n"
                         "storage: {path: \"%s/evhost.db\"}\n"
                         "pipeline: {workers: 1}\n"
                         "workflows: {dirs: [\"%s\"]}\n"
                         "triggers: {files: [\"%s\"]}\n"
                         "data_dir: \"%s/data\"\n",
                         plugins, record, root, wfdir, trig, root) > 0);
    assert_int_equal(tu_write_file(cfg, yaml), 0);
    char *log = tu_join(root, "run.log");
    char *argv[] = {EVH_BINARY, "run", "--config", cfg, NULL};
    pid_t pid = tu_spawn(argv, log);
    assert_true(pid > 0);
    int started = tu_wait_for_text(log, "running;", 15000);

    /* a folder renamed into the running daemon's plugin directory */
    long long t0 = tu_now_ms();
    stage_and_rename(root, "version-source");
    int serving = started && tu_wait_for_text(record, "start 1", 5000);
    long long latency = tu_now_ms() - t0;
    print_message("drop-in to first event: %lld ms (debounce 100 ms)\n", latency);

    /* a source that will not stop */
    stage_and_rename(root, "hangs-on-stop");
    int hung = serving && tu_wait_for_text(log, "plugin 'hangs-on-stop' 1.0.0", 5000);

    kill(pid, SIGHUP);
    int reloaded = hung && tu_wait_for_text(log, "SIGHUP: reloading plugins", 5000);

    t0 = tu_now_ms();
    kill(pid, SIGTERM);
    int status = tu_wait(pid, 10000);
    long long stop_ms = tu_now_ms() - t0;
    if (status == -2) {
        kill(pid, SIGKILL);
        tu_wait(pid, 5000);
    }
    char *text = tu_read_file(log);
    int abandoned = text && strstr(text, "run() did not return within 300 ms");
    int stopped = text && strstr(text, "[daemon] stopped");
    if (!started || !serving || !hung || !reloaded || status != 0 || !abandoned || !stopped)
        print_error("%s\n", text ? text : "");
    free(text);
    assert_true(started);
    assert_true(serving);
    assert_true(latency < 3000);
    assert_true(hung);
    assert_true(reloaded);
    assert_int_equal(status, 0);
    assert_true(stop_ms < 5000);
    assert_true(abandoned);
    assert_true(stopped);

    tu_rmtree(root);
    free(log);
    free(yaml);
    free(cfg);
    free(record);
    free(trig);
    free(wfdir);
    free(plugins);
    free(root);
}

/* ---- the daemon's data directory in a plugin directory ------------------------ */

/* `evhost run --plugin-dir .` with no settings keeps its data in
 * ./evhost-data, a folder of that plugin directory.  The data directory and
 * what lies beneath it are never plugin folders, however they are named:
 * here the data directory is given through a symlink, so only its device and
 * inode can tell.  A plugin directory inside it loads nothing (with a
 * warning), and neither the first load nor a later rescan, after the
 * database and a plugin's data changed there, reports anything failed. */
static void test_data_dir_is_never_a_plugin(void **state)
{
    (void)state;
    at_options none = {.fixtures = no_fixtures};
    apitest *t = at_start(&none);
    assert_int_equal(tu_copy_fixture("ok-minimal", t->plugins, NULL), 0);
    char *data = tu_join(t->plugins, "evhost-data");
    char *inner = tu_join(data, "plugins"); /* where plugins keep their files */
    char *own = tu_join(inner, "ok-minimal");
    char *link = tu_join(t->root, "data-link");
    char *copies = tu_join(data, "plugin-libraries");
    char *db = tu_join(data, "evhost.db");
    assert_int_equal(mkdir(data, 0700), 0);
    assert_int_equal(mkdir(inner, 0700), 0);
    assert_int_equal(mkdir(own, 0700), 0);
    assert_int_equal(symlink(data, link), 0);
    const char *dirs[] = {t->plugins, inner};
    reload_options ro = {.dirs = dirs, .n_dirs = 2, .library_copy_dir = copies, .data_dir = link};
    reloader *rl = reloader_new(t->r, t->rt, &ro);
    assert_non_null(rl);
    assert_true(reloader_is_data(rl, data));
    assert_true(reloader_is_data(rl, own));
    assert_false(reloader_is_data(rl, t->plugins));

    assert_int_equal(reloader_load_initial(rl), 1);
    assert_non_null(registry_find(t->r, "ok-minimal"));
    assert_int_equal(t->r->count, 1);
    assert_int_equal(registry_count(t->r, 0, PLUGIN_FAILED), 0);

    watcher *w = watcher_start(rl, 1, 50);
    assert_non_null(w);
    assert_int_equal(tu_write_file(db, "the database changes"), 0);
    char *note = tu_join(own, "state.txt");
    assert_int_equal(tu_write_file(note, "a plugin's own file"), 0);
    usleep(300 * 1000); /* the watcher's debounced rescan, were it to see them */
    cJSON *report = reloader_rescan(rl, 1);
    assert_non_null(report);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(report, "failed")), 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(report, "loaded")), 0);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(report, "unchanged")->valueint, 1);
    cJSON_Delete(report);
    watcher_stop(w); /* the registry is the test's alone again */
    assert_int_equal(t->r->count, 1);
    assert_int_equal(registry_count(t->r, 0, PLUGIN_FAILED), 0);

    at_stop(t);
    reloader_free(rl);
    free(note);
    free(db);
    free(copies);
    free(link);
    free(own);
    free(inner);
    free(data);
}

int main(void)
{
    log_set_level(getenv("EVH_TEST_LOG") ? EVH_LOG_DEBUG : EVH_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_source_drop_replace_rollback_remove),
        cmocka_unit_test(test_half_copied_reported_then_loads),
        cmocka_unit_test(test_api_reload_on_demand),
        cmocka_unit_test(test_step_run_in_flight_across_replacement),
        cmocka_unit_test(test_init_and_stop_deadlines),
        cmocka_unit_test(test_stop_callback_deadline),
        cmocka_unit_test(test_daemon_drop_in_sighup_and_stop_deadline),
        cmocka_unit_test(test_data_dir_is_never_a_plugin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
