/* timer - the reference event source: emits timer_fired every interval_ms.
 * Built against <evhost/evhost.h> alone; see docs for the walk-through. */
#include <evhost/evhost.h>
#include <stdio.h>
#include <time.h>

typedef struct timer {
    const evh_host_api *api;
    evh_host *host;
    int64_t interval_ms;
    const char *timer_id; /* borrowed from the config until fini */
} timer;

static int32_t timer_init(const evh_host_api *api, evh_host *host, void **ctx,
                          char **errmsg)
{
    timer *t = api->alloc(sizeof *t);
    if (!t)
        return EVH_E_NOMEM;
    t->api = api;
    t->host = host;
    /* The host validated the config against configSchema and filled the
     * defaults, so these reads cannot miss. */
    t->interval_ms = api->config_int(host, "interval_ms", 5000);
    t->timer_id = api->config_string(host, "timer_id", "default");
    *ctx = t;
    (void)errmsg;
    return EVH_OK;
}

static int32_t timer_run(void *ctx)
{
    timer *t = ctx;
    char *id = t->api->json_quote(t->timer_id);
    long long seq = 0;
    while (t->api->wait(t->host, (uint64_t)t->interval_ms) == EVH_OK) {
        char now[32], data[256];
        time_t secs = time(NULL);
        struct tm tm;
        gmtime_r(&secs, &tm);
        strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(data, sizeof data,
                 "{\"fired_at\":\"%s\",\"timer_id\":%s,\"sequence\":%lld}", now,
                 id ? id : "\"default\"", ++seq);
        int32_t rc = t->api->emit(t->host, "timer_fired", data, EVH_NUL_TERMINATED, NULL);
        if (rc == EVH_E_STOPPING)
            break;
        if (rc != EVH_OK) /* queue full: this tick is skipped, the next one comes */
            t->api->log(t->host, EVH_LOG_WARN, "tick %lld not accepted: %s", seq,
                        evh_status_message(rc));
    }
    t->api->free(id);
    return EVH_OK;
}

static void timer_fini(void *ctx)
{
    timer *t = ctx;
    t->api->free(t);
}

static const evh_source timer_source = {.struct_size = sizeof(evh_source),
                                        .init = timer_init,
                                        .run = timer_run,
                                        .fini = timer_fini};

EVH_DECLARE_SOURCE("timer", &timer_source)
