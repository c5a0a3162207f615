/*
 * test_emit.c - the way into the host: api->emit through the real table
 * with a real loaded plugin (checks, envelope, backpressure, stop,
 * concurrency), the rest of the host API, the bus on its own, and events.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <evhost/evhost.h>

#include "bus.h"
#include "event.h"
#include "hostapi.h"
#include "loader.h"
#include "log.h"
#include "registry.h"
#include "runtime.h"
#include "testutil.h"

typedef struct env {
    char *root;
    char *plugins;
    char *data;
    runtime *rt;
    registry *r;
    plugin *p;  /* the loaded plugin */
    evh_host *h; /* its instance */
    const evh_host_api *api;
} env;

static env *env_new(size_t capacity, uint32_t wait_ms)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->root = tu_tempdir("emit");
    e->plugins = tu_join(e->root, "plugins");
    e->data = tu_join(e->root, "data");
    assert_int_equal(mkdir(e->plugins, 0755), 0);
    e->rt = runtime_new(capacity, e->data, wait_ms);
    e->r = registry_new();
    e->api = hostapi_table();
    assert_non_null(e->rt);
    assert_non_null(e->r);
    return e;
}

/* Load fixture `name` with `config_json` (an object text or NULL). */
static plugin *env_load(env *e, const char *name, const char *config_json)
{
    assert_int_equal(tu_copy_fixture(name, e->plugins, NULL), 0);
    char *dir = tu_join(e->plugins, name);
    char *configs_text = NULL;
    assert_true(asprintf(&configs_text, "{\"%s\": %s}", name,
                         config_json ? config_json : "{}") > 0);
    cJSON *configs = cJSON_Parse(configs_text);
    assert_non_null(configs);
    loader_options opt = {.plugin_configs = configs};
    plugin *p = loader_load_one(e->rt, dir, &opt);
    assert_non_null(p);
    assert_int_equal(registry_add(e->r, p), EVH_OK);
    if (p->state != PLUGIN_READY)
        print_error("%s: %s\n", name, p->error ? p->error : "?");
    assert_int_equal(p->state, PLUGIN_READY);
    e->p = p;
    e->h = p->host;
    cJSON_Delete(configs);
    free(configs_text);
    free(dir);
    return p;
}

static void env_free(env *e)
{
    loader_unload_all(e->r);
    registry_free(e->r);
    runtime_stop(e->rt);
    runtime_free(e->rt);
    tu_rmtree(e->root);
    free(e->plugins);
    free(e->data);
    free(e->root);
    free(e);
}

/* The default: ok-minimal in a roomy queue. */
static int setup(void **state)
{
    env *e = env_new(1024, 50);
    env_load(e, "ok-minimal", NULL);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env_free(*state);
    return 0;
}

/* Take everything queued (up to 16). */
static int drain(env *e, evh_event **evs)
{
    int n = bus_pop_batch(e->rt->bus, evs, 16, 0);
    assert_true(n >= 0);
    return n;
}

static void free_events(evh_event **evs, int n)
{
    for (int i = 0; i < n; i++)
        event_free(evs[i]);
}

/* A lower-case UUID of the given version (4 random, 7 time-ordered). */
static void assert_uuid(const char *id, char version)
{
    assert_int_equal(strlen(id), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(id[i], '-');
        else
            assert_true(isxdigit((unsigned char)id[i]) && !isupper((unsigned char)id[i]));
    }
    assert_int_equal(id[14], version);
    assert_non_null(strchr("89ab", id[19]));
}

static void assert_uuid_v4(const char *id)
{
    assert_uuid(id, '4');
}

/* Event ids are version 7: they sort by creation time (to the ms). */
static void assert_uuid_v7(const char *id)
{
    assert_uuid(id, '7');
}

/* "2026-11-23T10:30:00.123Z" */
static void assert_rfc3339_ms(const char *ts)
{
    assert_int_equal(strlen(ts), 24);
    const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (int i = 0; i < 24; i++) {
        if (shape[i] == 'd')
            assert_true(isdigit((unsigned char)ts[i]));
        else
            assert_int_equal(ts[i], shape[i]);
    }
}

/* ---- emit through the api table ------------------------------------------ */

static void test_emit_valid_builds_envelope(void **state)
{
    env *e = *state;
    /* the data may name a "source"; the envelope's source is still ours */
    assert_int_equal(e->api->emit(e->h, "thing_happened",
                                  "{ \"n\": 1, \"label\": \"x\", \"source\": \"evil\" }",
                                  EVH_NUL_TERMINATED, "user-7"),
                     EVH_OK);
    evh_event *evs[16];
    assert_int_equal(drain(e, evs), 1);
    evh_event *ev = evs[0];
    assert_string_equal(ev->source, "ok-minimal");
    assert_string_equal(ev->event_type, "thing_happened");
    assert_string_equal(ev->data_json, "{\"n\":1,\"label\":\"x\",\"source\":\"evil\"}");
    assert_int_equal(ev->data_len, strlen(ev->data_json));
    assert_string_equal(ev->user_id, "user-7");
    assert_uuid_v7(ev->id);
    assert_rfc3339_ms(ev->timestamp);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    assert_true(llabs((long long)now.tv_sec * 1000000 - ev->timestamp_us) < 60LL * 1000000);
    assert_true(ev->enqueued_ns > 0);

    char *text = event_envelope_json(ev);
    cJSON *env_json = cJSON_Parse(text);
    assert_non_null(env_json);
    assert_int_equal(cJSON_GetArraySize(env_json), 5);
    assert_string_equal(cJSON_GetObjectItem(env_json, "id")->valuestring, ev->id);
    assert_string_equal(cJSON_GetObjectItem(env_json, "event_type")->valuestring,
                        "thing_happened");
    assert_string_equal(cJSON_GetObjectItem(env_json, "source")->valuestring, "ok-minimal");
    cJSON *data = cJSON_GetObjectItem(env_json, "data");
    assert_true(cJSON_IsObject(data));
    assert_int_equal(cJSON_GetObjectItem(data, "n")->valueint, 1);
    cJSON *meta = cJSON_GetObjectItem(env_json, "metadata");
    assert_int_equal(cJSON_GetArraySize(meta), 4);
    assert_string_equal(cJSON_GetObjectItem(meta, "source")->valuestring, "ok-minimal");
    assert_string_equal(cJSON_GetObjectItem(meta, "timestamp")->valuestring, ev->timestamp);
    assert_string_equal(cJSON_GetObjectItem(meta, "user_id")->valuestring, "user-7");
    cJSON *extra = cJSON_GetObjectItem(meta, "additional_data");
    assert_true(cJSON_IsObject(extra));
    assert_int_equal(cJSON_GetArraySize(extra), 0);
    cJSON_Delete(env_json);
    free(text);
    free_events(evs, 1);

    /* no user: null in the envelope; an explicit length is honoured */
    assert_int_equal(e->api->emit(e->h, "thing_happened", "{\"n\":2}trailing", 7, NULL),
                     EVH_OK);
    assert_int_equal(drain(e, evs), 1);
    assert_null(evs[0]->user_id);
    text = event_envelope_json(evs[0]);
    assert_non_null(strstr(text, "\"user_id\":null"));
    assert_non_null(strstr(text, "\"data\":{\"n\":2}"));
    free(text);
    free_events(evs, 1);
    assert_int_equal(atomic_load(&e->rt->emitted), 2);
}

static void test_emit_undeclared_type(void **state)
{
    env *e = *state;
    assert_int_equal(e->api->emit(e->h, "not_declared", "{\"n\":1}", EVH_NUL_TERMINATED, NULL),
                     EVH_E_UNDECLARED_TYPE);
    assert_int_equal(bus_depth(e->rt->bus), 0);
    assert_int_equal(atomic_load(&e->rt->refused_type), 1);
    assert_int_equal(atomic_load(&e->rt->emitted), 0);
}

static void test_emit_schema_and_malformed(void **state)
{
    env *e = *state;
    const char *bad[] = {
        "{\"n\": \"one\"}",       /* wrong type */
        "{\"label\": \"x\"}",     /* required n missing */
        "{\"n\": 1",              /* malformed */
        "[1, 2]",                 /* not an object */
        "",                       /* empty */
        "{\"n\": 1} {\"n\": 2}",  /* trailing data */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(e->api->emit(e->h, "thing_happened", bad[i], EVH_NUL_TERMINATED, NULL),
                         EVH_E_SCHEMA);
    /* nesting past the limit */
    char deep[512] = "{\"n\":1,\"x\":";
    for (int i = 0; i < 100; i++)
        strcat(deep, "[");
    assert_int_equal(e->api->emit(e->h, "thing_happened", deep, EVH_NUL_TERMINATED, NULL),
                     EVH_E_SCHEMA);
    assert_int_equal(atomic_load(&e->rt->refused_schema), 7);
    assert_int_equal(bus_depth(e->rt->bus), 0);

    /* the host's own path reports each problem with its path */
    diag d;
    diag_init(&d, NULL);
    assert_int_equal(hostapi_emit_checked(e->rt, e->p->m, "thing_happened",
                                          "{\"n\": \"one\", \"label\": 2}", EVH_NUL_TERMINATED,
                                          NULL, NULL, &d, NULL),
                     EVH_E_SCHEMA);
    char *joined = diag_join(&d);
    assert_non_null(strstr(joined, "data.n"));
    assert_non_null(strstr(joined, "data.label"));
    free(joined);
    diag_free(&d);
}

static void test_emit_null_arguments(void **state)
{
    env *e = *state;
    const evh_host_api *api = e->api;
    assert_int_equal(api->emit(NULL, "thing_happened", "{}", 2, NULL), EVH_E_INVALID);
    assert_int_equal(api->emit(e->h, NULL, "{}", 2, NULL), EVH_E_INVALID);
    assert_int_equal(api->emit(e->h, "thing_happened", NULL, 0, NULL), EVH_E_INVALID);
    api->log(NULL, EVH_LOG_DEBUG, "no handle");
    size_t len = 99;
    assert_string_equal(api->config_json(NULL, &len), "{}");
    assert_int_equal(len, 2);
    assert_non_null(api->config_json(e->h, NULL));
    assert_int_equal(api->wait(NULL, 0), EVH_E_INVALID);
    assert_int_equal(api->stopping(NULL), 1);
    assert_null(api->data_dir(NULL));
    assert_int_equal(api->metric(NULL, "m", 1), EVH_E_INVALID);
    assert_int_equal(api->metric(e->h, NULL, 1), EVH_E_INVALID);
    assert_null(api->strdup(NULL));
    assert_string_equal(api->config_string(NULL, "greeting", "fb"), "fb");
    assert_string_equal(api->config_string(e->h, NULL, "fb"), "fb");
    assert_int_equal(api->config_int(NULL, "interval_ms", -1), -1);
    assert_true(api->config_number(NULL, "x", 2.5) == 2.5);
    assert_int_equal(api->config_bool(NULL, "x", 1), 1);
    assert_null(api->json_get(NULL, 0, "a"));
    assert_null(api->json_get_string(NULL, 0, "a"));
    assert_null(api->json_quote(NULL));
    api->free(NULL);
    hostapi_request_stop(NULL);
    hostapi_run_begin(NULL);
    hostapi_run_end(NULL);
    assert_int_equal(hostapi_emit_checked(NULL, e->p->m, "t", "{}", 2, NULL, NULL, NULL, NULL),
                     EVH_E_INVALID);
}

static void test_queue_full_is_bounded(void **state)
{
    (void)state;
    env *e = env_new(2, 30);
    env_load(e, "ok-minimal", NULL);
    const char *d = "{\"n\":1}";
    assert_int_equal(e->api->emit(e->h, "thing_happened", d, EVH_NUL_TERMINATED, NULL), EVH_OK);
    assert_int_equal(e->api->emit(e->h, "thing_happened", d, EVH_NUL_TERMINATED, NULL), EVH_OK);
    long long t0 = tu_now_ms();
    assert_int_equal(e->api->emit(e->h, "thing_happened", d, EVH_NUL_TERMINATED, NULL),
                     EVH_E_QUEUE_FULL);
    long long took = tu_now_ms() - t0;
    assert_true(took >= 25);   /* it did wait for room ... */
    assert_true(took < 2000);  /* ... but only its bounded while */
    assert_int_equal(bus_depth(e->rt->bus), 2);
    assert_int_equal(atomic_load(&e->rt->refused_full), 1);

    /* room again after a pop */
    evh_event *ev = NULL;
    assert_int_equal(bus_pop_batch(e->rt->bus, &ev, 1, 0), 1);
    event_free(ev);
    assert_int_equal(e->api->emit(e->h, "thing_happened", d, EVH_NUL_TERMINATED, NULL), EVH_OK);
    env_free(e);
}

static void test_emit_after_stop(void **state)
{
    env *e = *state;
    const char *d = "{\"n\":1}";
    assert_int_equal(e->api->emit(e->h, "thing_happened", d, EVH_NUL_TERMINATED, NULL), EVH_OK);
    runtime_stop(e->rt);
    assert_int_equal(e->api->emit(e->h, "thing_happened", d, EVH_NUL_TERMINATED, NULL),
                     EVH_E_STOPPING);
    assert_int_equal(atomic_load(&e->rt->refused_stopping), 1);
    assert_int_equal(e->api->stopping(e->h), 1);
    /* what was accepted before the stop can still be taken */
    evh_event *evs[16];
    assert_int_equal(drain(e, evs), 1);
    free_events(evs, 1);
    assert_int_equal(bus_pop_batch(e->rt->bus, evs, 16, 0), EVH_E_STOPPING);
}

static void test_emit_after_instance_stop(void **state)
{
    env *e = *state;
    assert_int_equal(e->api->stopping(e->h), 0);
    hostapi_request_stop(e->h);
    assert_int_equal(e->api->stopping(e->h), 1);
    assert_int_equal(e->api->emit(e->h, "thing_happened", "{\"n\":1}", EVH_NUL_TERMINATED, NULL),
                     EVH_E_STOPPING);
    assert_int_equal(bus_depth(e->rt->bus), 0);
}

/* ---- concurrency ---------------------------------------------------------- */

#define PRODUCERS 8
#define PER_PRODUCER 400

typedef struct producer {
    env *e;
    int index;
    int ok;
} producer;

static void *produce(void *arg)
{
    producer *pr = arg;
    char data[64];
    for (int i = 0; i < PER_PRODUCER; i++) {
        snprintf(data, sizeof data, "{\"n\":%d}", pr->index * PER_PRODUCER + i);
        if (pr->e->api->emit(pr->e->h, "thing_happened", data, EVH_NUL_TERMINATED, NULL) ==
            EVH_OK)
            pr->ok++;
    }
    return NULL;
}

typedef struct consumer {
    env *e;
    unsigned char seen[PRODUCERS * PER_PRODUCER];
    int total;
    int duplicates;
} consumer;

static void *consume(void *arg)
{
    consumer *c = arg;
    evh_event *evs[32];
    for (;;) {
        int n = bus_pop_batch(c->e->rt->bus, evs, 32, 5000);
        if (n <= 0)
            break; /* EVH_E_STOPPING once closed and empty (or a stall) */
        for (int i = 0; i < n; i++) {
            cJSON *d = cJSON_Parse(evs[i]->data_json);
            int v = cJSON_GetObjectItem(d, "n")->valueint;
            if (c->seen[v]++)
                c->duplicates++;
            c->total++;
            cJSON_Delete(d);
            event_free(evs[i]);
        }
    }
    return NULL;
}

/* Producers on a small queue with one consumer: they block on backpressure
 * but, with a generous wait, every event arrives exactly once. */
static void test_emit_concurrently_loses_nothing(void **state)
{
    (void)state;
    env *e = env_new(16, 10000);
    env_load(e, "ok-minimal", NULL);
    consumer *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->e = e;
    pthread_t ct, pt[PRODUCERS];
    producer pr[PRODUCERS];
    assert_int_equal(pthread_create(&ct, NULL, consume, c), 0);
    for (int i = 0; i < PRODUCERS; i++) {
        pr[i] = (producer){.e = e, .index = i};
        assert_int_equal(pthread_create(&pt[i], NULL, produce, &pr[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_join(pt[i], NULL);
        ok += pr[i].ok;
    }
    bus_close(e->rt->bus); /* the consumer ends once it took everything */
    pthread_join(ct, NULL);
    assert_int_equal(ok, PRODUCERS * PER_PRODUCER);
    assert_int_equal(c->total, ok);
    assert_int_equal(c->duplicates, 0);
    assert_int_equal(atomic_load(&e->rt->emitted), (unsigned long long)ok);
    assert_int_equal(atomic_load(&e->rt->refused_full), 0);
    free(c);
    env_free(e);
}

/* ---- through a running plugin -------------------------------------------- */

static void test_plugin_run_emits(void **state)
{
    (void)state;
    env *e = env_new(64, 50);
    char *record = tu_join(e->root, "record.txt");
    char config[2048];
    snprintf(config, sizeof config,
             "{\"record_file\": \"%s\", \"emit\": ["
             "{\"type\": \"thing_happened\", \"data\": \"{\\\"n\\\": 5}\", \"user_id\": \"u1\"},"
             "{\"type\": \"other_thing\", \"data\": \"{\\\"n\\\": 5}\"},"
             "{\"type\": \"thing_happened\", \"data\": \"{\\\"n\\\": \\\"five\\\"}\"},"
             "{\"type\": \"thing_happened\", \"data\": \"{nope\"}]}",
             record);
    env_load(e, "ok-minimal", config);
    assert_int_equal(loader_start_sources(e->r), 1);
    assert_true(tu_wait_for_text(record, "done", 10000));
    char *text = tu_read_file(record);
    assert_string_equal(text, "0 EVH_OK\n1 EVH_E_UNDECLARED_TYPE\n2 EVH_E_SCHEMA\n"
                              "3 EVH_E_SCHEMA\ndone\n");
    free(text);
    evh_event *evs[16];
    assert_int_equal(drain(e, evs), 1);
    assert_string_equal(evs[0]->source, "ok-minimal");
    assert_string_equal(evs[0]->user_id, "u1");
    assert_string_equal(evs[0]->data_json, "{\"n\":5}");
    free_events(evs, 1);
    loader_stop_sources(e->r);
    assert_true(tu_wait_for_text(record, "stopped", 1000));
    free(record);
    env_free(e);
}

static void test_slow_source_sees_queue_full(void **state)
{
    (void)state;
    env *e = env_new(4, 5);
    char *record = tu_join(e->root, "record.txt");
    char config[1024];
    snprintf(config, sizeof config, "{\"record_file\": \"%s\", \"full_limit\": 3}", record);
    env_load(e, "slow-source", config);
    assert_int_equal(loader_start_sources(e->r), 1);
    assert_true(tu_wait_for_text(record, "ok=", 10000));
    char *text = tu_read_file(record);
    assert_string_equal(text, "ok=4 full=3 other=0\n");
    free(text);
    assert_int_equal(bus_depth(e->rt->bus), 4);
    assert_int_equal(atomic_load(&e->rt->refused_full), 3);
    assert_int_equal(atomic_load(&e->rt->emitted), 4);
    free(record);
    env_free(e); /* stops the source: its wait(60 s) returns at once */
}

/* ---- the rest of the API -------------------------------------------------- */

typedef struct waiter {
    env *e;
    uint64_t timeout_ms;
    int32_t rc;
    long long took_ms;
} waiter;

static void *do_wait(void *arg)
{
    waiter *w = arg;
    long long t0 = tu_now_ms();
    w->rc = w->e->api->wait(w->e->h, w->timeout_ms);
    w->took_ms = tu_now_ms() - t0;
    return NULL;
}

static void test_wait_elapses(void **state)
{
    env *e = *state;
    long long t0 = tu_now_ms();
    assert_int_equal(e->api->wait(e->h, 30), EVH_OK);
    assert_true(tu_now_ms() - t0 >= 29);
    assert_int_equal(e->api->wait(e->h, 0), EVH_OK);
}

static void test_wait_returns_early_on_runtime_stop(void **state)
{
    env *e = *state;
    waiter w = {.e = e, .timeout_ms = 60000};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, do_wait, &w), 0);
    struct timespec pause = {0, 20 * 1000000L};
    nanosleep(&pause, NULL); /* let it block (harmless if it has not yet) */
    runtime_stop(e->rt);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, EVH_E_STOPPING);
    assert_true(w.took_ms < 5000);
    /* and any later wait returns at once */
    assert_int_equal(e->api->wait(e->h, UINT64_MAX), EVH_E_STOPPING);
}

static void test_wait_returns_early_on_instance_stop(void **state)
{
    env *e = *state;
    waiter w = {.e = e, .timeout_ms = 60000};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, do_wait, &w), 0);
    struct timespec pause = {0, 20 * 1000000L};
    nanosleep(&pause, NULL);
    hostapi_request_stop(e->h);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, EVH_E_STOPPING);
    assert_true(w.took_ms < 5000);
}

static void test_data_dir(void **state)
{
    env *e = *state;
    const char *dir = e->api->data_dir(e->h);
    assert_non_null(dir);
    char *expected = tu_join(e->data, "plugins/ok-minimal");
    assert_string_equal(dir, expected);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_ptr_equal(e->api->data_dir(e->h), dir); /* cached */
    free(expected);
}

static void test_metrics(void **state)
{
    env *e = *state;
    const evh_host_api *api = e->api;
    assert_int_equal(api->metric(e->h, "rows", 1), EVH_E_STATE); /* outside a run */
    hostapi_run_begin(e->h);
    assert_int_equal(api->metric(e->h, "rows", 1), EVH_OK);
    assert_int_equal(api->metric(e->h, "rows", 42), EVH_OK); /* replaces */
    assert_int_equal(api->metric(e->h, "", 1), EVH_E_INVALID);
    assert_int_equal(api->metric(e->h, "nan", NAN), EVH_E_INVALID);
    char name[32];
    for (int i = 1; i < EVH_STEP_METRICS_MAX; i++) {
        snprintf(name, sizeof name, "m%d", i);
        assert_int_equal(api->metric(e->h, name, i), EVH_OK);
    }
    assert_int_equal(api->metric(e->h, "one_too_many", 1), EVH_E_INVALID);
    assert_int_equal(api->metric(e->h, "rows", 7), EVH_OK); /* replacing still works */
    hostapi_run_end(e->h);
    assert_int_equal(api->metric(e->h, "rows", 1), EVH_E_STATE);
    assert_int_equal(e->h->n_metrics, EVH_STEP_METRICS_MAX);
    assert_string_equal(e->h->metric_names[0], "rows");
    assert_true(e->h->metric_values[0] == 7);
    hostapi_run_begin(e->h); /* a new run starts empty */
    assert_int_equal(e->h->n_metrics, 0);
    hostapi_run_end(e->h);
}

static void test_config_and_json_helpers(void **state)
{
    (void)state;
    env *e = env_new(8, 10);
    env_load(e, "ok-minimal",
             "{\"interval_ms\": 250, \"emit\": [{\"type\": \"t\", \"data\": \"d\"}]}");
    const evh_host_api *api = e->api;
    assert_int_equal(api->config_int(e->h, "interval_ms", 0), 250);
    assert_true(api->config_number(e->h, "interval_ms", 0) == 250.0);
    assert_string_equal(api->config_string(e->h, "emit[0].type", NULL), "t");
    assert_null(api->config_string(e->h, "emit[1].type", NULL));
    assert_int_equal(api->config_int(e->h, "greeting", -5), -5); /* a string */
    assert_int_equal(api->config_bool(e->h, "interval_ms", 1), 1);
    char *v = api->json_get("{\"a\":{\"b\":[1,{\"c\":true}]}}", EVH_NUL_TERMINATED, "a.b[1]");
    assert_string_equal(v, "{\"c\":true}");
    api->free(v);
    /* an index past int range is missing, not element 0 after wrapping */
    assert_null(api->json_get("[7]", EVH_NUL_TERMINATED, "[4294967296]"));
    assert_null(api->json_get("[7]", EVH_NUL_TERMINATED, "[99999999999999999999]"));
    v = api->json_get_string("{\"s\":\"x\\\"y\"}", EVH_NUL_TERMINATED, "s");
    assert_string_equal(v, "x\"y");
    api->free(v);
    v = api->json_quote("a\"b\n");
    assert_string_equal(v, "\"a\\\"b\\n\"");
    api->free(v);
    v = api->mprintf("%d-%s", 7, "x");
    assert_string_equal(v, "7-x");
    api->free(v);
    void *mem = api->alloc(0);
    assert_non_null(mem);
    api->free(mem);
    env_free(e);
}

/* Capture what `fn` writes to stderr. */
static char *capture_stderr(void (*fn)(env *), env *e)
{
    char *path = tu_join(e->root, "stderr.txt");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn(e);
    dup2(saved, 2);
    close(saved);
    close(fd);
    char *text = tu_read_file(path);
    free(path);
    return text;
}

static void log_twice(env *e)
{
    e->api->log(e->h, EVH_LOG_INFO, "hello %d", 5);
    e->api->log(e->h, EVH_LOG_WARN, "two\nlines");
    e->api->log(e->h, EVH_LOG_DEBUG, "dropped at the default level");
}

static void test_log_line_format(void **state)
{
    env *e = *state;
    int level = log_get_level();
    log_set_level(EVH_LOG_INFO);
    char *text = capture_stderr(log_twice, e);
    log_set_level(level);
    assert_non_null(text);
    /* two lines, each "<timestamp> <LEVEL> [plugin:<id>] <message>" */
    char *second = strchr(text, '\n');
    assert_non_null(second);
    *second++ = '\0';
    assert_string_equal(text + 24, " INFO  [plugin:ok-minimal] hello 5");
    text[24] = '\0';
    assert_rfc3339_ms(text);
    assert_true(strlen(second) > 24);
    assert_string_equal(second + 24, " WARN  [plugin:ok-minimal] two lines\n");
    second[24] = '\0';
    assert_rfc3339_ms(second);
    free(text);
    assert_int_equal(log_level_parse("debug"), EVH_LOG_DEBUG);
    assert_int_equal(log_level_parse("WARN"), EVH_LOG_WARN);
    assert_int_equal(log_level_parse("loud"), -1);
}

static void flood(env *e)
{
    for (int i = 0; i < 50; i++)
        e->api->emit(e->h, "tick", "{\"seq\": \"x\"}", EVH_NUL_TERMINATED, NULL);
    e->api->emit(e->h, "tock", "{}", EVH_NUL_TERMINATED, NULL);
    e->api->emit(e->h, "tock", "{}", EVH_NUL_TERMINATED, NULL);
}

static size_t count_lines_with(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *at = text; (at = strstr(at, needle)) != NULL; at += strlen(needle))
        n++;
    return n;
}

/* A plugin looping on bad data logs one warning per kind of refusal, not
 * one per call; every refusal is still counted. */
static void test_refusal_warnings_rate_limited(void **state)
{
    (void)state;
    env *e = env_new(8, 10);
    env_load(e, "slow-source", NULL); /* its id has logged nothing so far */
    char *text = capture_stderr(flood, e);
    assert_non_null(text);
    assert_int_equal(count_lines_with(text, "refused (EVH_E_SCHEMA)"), 1);
    assert_non_null(strstr(text, "data.seq"));
    assert_int_equal(count_lines_with(text, "refused (EVH_E_UNDECLARED_TYPE)"), 1);
    assert_int_equal(count_lines_with(text, "\n"), 2);
    assert_int_equal(atomic_load(&e->rt->refused_schema), 50);
    assert_int_equal(atomic_load(&e->rt->refused_type), 2);
    free(text);
    env_free(e);
}

/* ---- the bus on its own --------------------------------------------------- */

static evh_event *mk(int n)
{
    char data[32];
    snprintf(data, sizeof data, "{\"n\":%d}", n);
    evh_event *ev = event_new("src", "t", data, strlen(data), NULL, NULL);
    assert_non_null(ev);
    return ev;
}

static int value_of(const evh_event *ev)
{
    return atoi(strchr(ev->data_json, ':') + 1);
}

static void test_bus_capacity_order_batches(void **state)
{
    (void)state;
    assert_null(bus_new(0));
    bus *b = bus_new(3);
    assert_int_equal(bus_capacity(b), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(bus_push(b, mk(i), 0), EVH_OK);
    evh_event *extra = mk(3);
    assert_int_equal(bus_push(b, extra, 0), EVH_E_QUEUE_FULL); /* still ours */
    assert_int_equal(bus_depth(b), 3);
    evh_event *out[8];
    assert_int_equal(bus_pop_batch(b, out, 2, 0), 2);
    assert_int_equal(value_of(out[0]), 0);
    assert_int_equal(value_of(out[1]), 1);
    assert_null(out[0]->next);
    free_events(out, 2);
    assert_int_equal(bus_push(b, extra, 0), EVH_OK);
    assert_int_equal(bus_pop_batch(b, out, 8, 0), 2);
    assert_int_equal(value_of(out[0]), 2);
    assert_int_equal(value_of(out[1]), 3);
    free_events(out, 2);
    long long t0 = tu_now_ms();
    assert_int_equal(bus_pop_batch(b, out, 8, 20), 0); /* times out empty */
    assert_true(tu_now_ms() - t0 >= 19);
    assert_int_equal(bus_pop_batch(b, out, 0, 0), EVH_E_INVALID);
    assert_int_equal(bus_push(b, NULL, 0), EVH_E_INVALID);
    /* events still queued are freed with the bus */
    assert_int_equal(bus_push(b, mk(9), 0), EVH_OK);
    bus_free(b);
}

static void test_bus_close(void **state)
{
    (void)state;
    bus *b = bus_new(4);
    assert_int_equal(bus_push(b, mk(1), 0), EVH_OK);
    bus_close(b);
    evh_event *late = mk(2);
    assert_int_equal(bus_push(b, late, 100), EVH_E_STOPPING);
    event_free(late);
    evh_event *out[4];
    assert_int_equal(bus_pop_batch(b, out, 4, 100), 1); /* queued ones still come out */
    free_events(out, 1);
    long long t0 = tu_now_ms();
    assert_int_equal(bus_pop_batch(b, out, 4, 5000), EVH_E_STOPPING);
    assert_true(tu_now_ms() - t0 < 1000);
    bus_free(b);
}

typedef struct bus_call {
    bus *b;
    int rc;
    long long took_ms;
} bus_call;

static void *blocked_push(void *arg)
{
    bus_call *c = arg;
    evh_event *ev = mk(7);
    long long t0 = tu_now_ms();
    c->rc = bus_push(c->b, ev, 5000);
    c->took_ms = tu_now_ms() - t0;
    if (c->rc != EVH_OK)
        event_free(ev); /* refused: still ours */
    return NULL;
}

static void *blocked_pop(void *arg)
{
    bus_call *c = arg;
    evh_event *ev = NULL;
    long long t0 = tu_now_ms();
    c->rc = bus_pop_batch(c->b, &ev, 1, 5000);
    c->took_ms = tu_now_ms() - t0;
    event_free(ev);
    return NULL;
}

static void test_bus_wakeups(void **state)
{
    (void)state;
    struct timespec pause = {0, 20 * 1000000L};
    /* a producer blocked on a full queue gets in when a consumer pops */
    bus *b = bus_new(1);
    assert_int_equal(bus_push(b, mk(1), 0), EVH_OK);
    bus_call c = {.b = b};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, blocked_push, &c), 0);
    nanosleep(&pause, NULL);
    evh_event *ev = NULL;
    assert_int_equal(bus_pop_batch(b, &ev, 1, 0), 1);
    event_free(ev);
    pthread_join(t, NULL);
    assert_int_equal(c.rc, EVH_OK);
    assert_true(c.took_ms < 4000);
    assert_int_equal(bus_depth(b), 1);
    /* a producer blocked on a full queue is released by close */
    c = (bus_call){.b = b};
    assert_int_equal(pthread_create(&t, NULL, blocked_push, &c), 0);
    nanosleep(&pause, NULL);
    bus_close(b);
    pthread_join(t, NULL);
    assert_int_equal(c.rc, EVH_E_STOPPING);
    assert_true(c.took_ms < 4000);
    bus_free(b);

    /* a consumer blocked on an empty queue is woken by close */
    b = bus_new(1);
    c = (bus_call){.b = b};
    assert_int_equal(pthread_create(&t, NULL, blocked_pop, &c), 0);
    nanosleep(&pause, NULL);
    bus_close(b);
    pthread_join(t, NULL);
    assert_int_equal(c.rc, EVH_E_STOPPING);
    assert_true(c.took_ms < 4000);
    bus_free(b);
}

/* ---- events ---------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_event_ids_and_clocks(void **state)
{
    (void)state;
    enum { N = 1000 };
    static char ids[N][EVH_UUID_LEN + 1];
    for (int i = 0; i < N; i++) {
        assert_int_equal(uuid_v4(ids[i]), EVH_OK);
        assert_uuid_v4(ids[i]);
    }
    qsort(ids, N, sizeof ids[0], cmp_str);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    /* ids draw from a per-thread pool of random bytes (event.c): a forked
     * child must not repeat the ids its parent makes next */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char mine[EVH_UUID_LEN + 1];
        _exit(uuid_v4(mine) == EVH_OK &&
                      write(fds[1], mine, sizeof mine) == (ssize_t)sizeof mine
                  ? 0
                  : 1);
    }
    char parents[EVH_UUID_LEN + 1], childs[EVH_UUID_LEN + 1];
    assert_int_equal(uuid_v4(parents), EVH_OK);
    assert_int_equal(read(fds[0], childs, sizeof childs), (ssize_t)sizeof childs);
    assert_int_equal(tu_wait(child, 5000), 0);
    close(fds[0]);
    close(fds[1]);
    assert_uuid_v4(childs);
    assert_string_not_equal(parents, childs);
    /* version 7: unique too, and one made later never sorts before (its
     * first 48 bits are the time in ms) */
    char first[EVH_UUID_LEN + 1], later[EVH_UUID_LEN + 1];
    assert_int_equal(uuid_v7(first), EVH_OK);
    assert_uuid_v7(first);
    struct timespec pause = {0, 2 * 1000000L};
    nanosleep(&pause, NULL);
    for (int i = 0; i < N; i++) {
        assert_int_equal(uuid_v7(later), EVH_OK);
        assert_uuid_v7(later);
        assert_true(strcmp(first, later) < 0);
    }
    /* an execution's id: the same for the same (event, trigger), another for
     * another trigger or event, version 8, led by a v7 event id's time */
    char x1[EVH_UUID_LEN + 1], x2[EVH_UUID_LEN + 1], x3[EVH_UUID_LEN + 1];
    char x4[EVH_UUID_LEN + 1];
    assert_int_equal(uuid_for_execution(first, "trig-a", x1), EVH_OK);
    assert_int_equal(uuid_for_execution(first, "trig-a", x2), EVH_OK);
    assert_int_equal(uuid_for_execution(first, "trig-b", x3), EVH_OK);
    assert_int_equal(uuid_for_execution(later, "trig-a", x4), EVH_OK);
    assert_string_equal(x1, x2);
    assert_string_not_equal(x1, x3);
    assert_string_not_equal(x1, x4);
    assert_uuid(x1, '8');
    assert_uuid(x4, '8');
    assert_memory_equal(x1, first, 13); /* "xxxxxxxx-xxxx": the 48-bit time */
    assert_memory_equal(x4, later, 13);
    /* an older random (v4) event id still gives a stable id */
    assert_int_equal(uuid_for_execution(ids[0], "trig-a", x1), EVH_OK);
    assert_int_equal(uuid_for_execution(ids[0], "trig-a", x2), EVH_OK);
    assert_string_equal(x1, x2);
    assert_uuid(x1, '8');

    char ts[EVH_TIMESTAMP_LEN + 1];
    int64_t us = rfc3339_now(ts);
    assert_rfc3339_ms(ts);
    time_t secs = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char prefix[32];
    strftime(prefix, sizeof prefix, "%Y-%m-%dT%H:%M:%S", &tm);
    assert_int_equal(strncmp(ts, prefix, 19), 0);
    int64_t a = monotonic_ns(), b2 = monotonic_ns();
    assert_true(b2 >= a);
}

static void test_event_additional_data(void **state)
{
    env *e = *state;
    char id[37] = "";
    assert_int_equal(hostapi_emit_checked(e->rt, e->p->m, "thing_happened", "{\"n\":1}",
                                          EVH_NUL_TERMINATED, "u", "{\"ip\": \"10.0.0.1\"}",
                                          NULL, id),
                     EVH_OK);
    assert_uuid_v7(id);
    evh_event *evs[16];
    assert_int_equal(drain(e, evs), 1);
    assert_string_equal(evs[0]->id, id);
    char *text = event_envelope_json(evs[0]);
    assert_non_null(strstr(text, "\"additional_data\":{\"ip\":\"10.0.0.1\"}"));
    free(text);
    free_events(evs, 1);
    assert_int_equal(hostapi_emit_checked(e->rt, e->p->m, "thing_happened", "{\"n\":1}",
                                          EVH_NUL_TERMINATED, NULL, "[1]", NULL, NULL),
                     EVH_E_INVALID);
    assert_int_equal(bus_depth(e->rt->bus), 0);
}

int main(void)
{
    umask(022);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_emit_valid_builds_envelope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emit_undeclared_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emit_schema_and_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emit_null_arguments, setup, teardown),
        cmocka_unit_test(test_queue_full_is_bounded),
        cmocka_unit_test_setup_teardown(test_emit_after_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emit_after_instance_stop, setup, teardown),
        cmocka_unit_test(test_emit_concurrently_loses_nothing),
        cmocka_unit_test(test_plugin_run_emits),
        cmocka_unit_test(test_slow_source_sees_queue_full),
        cmocka_unit_test_setup_teardown(test_wait_elapses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_returns_early_on_runtime_stop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wait_returns_early_on_instance_stop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_data_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
        cmocka_unit_test(test_config_and_json_helpers),
        cmocka_unit_test_setup_teardown(test_log_line_format, setup, teardown),
        cmocka_unit_test(test_refusal_warnings_rate_limited),
        cmocka_unit_test(test_bus_capacity_order_batches),
        cmocka_unit_test(test_bus_close),
        cmocka_unit_test(test_bus_wakeups),
        cmocka_unit_test(test_event_ids_and_clocks),
        cmocka_unit_test_setup_teardown(test_event_additional_data, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
