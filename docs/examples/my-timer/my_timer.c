/* my-timer: the seed's timer_fired every interval_ms (default: a minute).
 * The whole plugin: one SDK header, no host library to link.
 *   cc -std=c99 -shared -fPIC -fvisibility=hidden -I sdk/include -o my-timer.so my_timer.c */
#include <evhost/evhost.h>
#include <stdio.h>
#include <time.h>

typedef struct my_timer {
    const evh_host_api *api; /* the host's functions: emit, log, wait, ... */
    evh_host *host;          /* this instance, passed back to every call */
    int64_t interval_ms;
} my_timer;

static int32_t my_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    my_timer *t = api->alloc(sizeof *t);
    if (!t)
        return EVH_E_NOMEM;
    t->api = api;
    t->host = host;
    t->interval_ms = api->config_int(host, "interval_ms", 60000);
    *ctx = t;
    (void)errmsg;
    return EVH_OK;
}

/* On a thread the host owns: emit until the host stops (wait returns early). */
static int32_t my_run(void *ctx)
{
    my_timer *t = ctx;
    while (t->api->wait(t->host, (uint64_t)t->interval_ms) == EVH_OK) {
        char when[32], data[96];
        time_t now = time(NULL);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        snprintf(data, sizeof data, "{\"fired_at\":\"%s\",\"timer_id\":\"default\"}", when);
        int32_t rc = t->api->emit(t->host, "timer_fired", data, EVH_NUL_TERMINATED, NULL);
        if (rc != EVH_OK)
            t->api->log(t->host, EVH_LOG_WARN, "not accepted: %s", evh_status_message(rc));
    }
    return EVH_OK;
}

static void my_fini(void *ctx)
{
    my_timer *t = ctx;
    t->api->free(t);
}

static const evh_source my_source = {
    .struct_size = sizeof(evh_source), .init = my_init, .run = my_run, .fini = my_fini};

EVH_DECLARE_SOURCE("my-timer", &my_source)
