/* timer - the reference event source: emits timer_fired every interval_ms, or at the start of
 * each minute (UTC) matching a "cron" expression (parsed by cron.c).  SDK header only. */
#include <evhost/evhost.h>
#include <stdio.h>
#include <time.h>

#include "cron.h"

typedef struct timer {
    const evh_host_api *api;
    evh_host *host;
    int64_t interval_ms; /* 0: cron mode */
    cron_expr cron;
    const char *timer_id; /* borrowed from the config until fini */
    char *quoted_id;      /* timer_id as JSON, made by run */
    long long seq;
} timer;

static int32_t timer_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    /* The host checked types and ranges against configSchema; "exactly one of" is ours. */
    int64_t interval_ms = api->config_int(host, "interval_ms", 0);
    const char *cron = api->config_string(host, "cron", NULL);
    char why[160];
    cron_expr expr = {{0}, {0}};
    if (interval_ms > 0 && cron) {
        *errmsg = api->strdup("interval_ms, cron: set only one of the two");
        return EVH_E_CONFIG;
    }
    if (!cron && interval_ms <= 0)
        interval_ms = 60000; /* neither: every minute, like the seed's my-timer */
    if (cron && cron_parse(cron, &expr, why, sizeof why) != 0) {
        *errmsg = api->mprintf("cron: %s", why);
        return EVH_E_CONFIG;
    }
    timer *t = api->alloc(sizeof *t);
    if (!t)
        return EVH_E_NOMEM;
    *t = (timer){.api = api, .host = host, .interval_ms = interval_ms, .cron = expr,
                 .timer_id = api->config_string(host, "timer_id", "default")};
    *ctx = t;
    return EVH_OK;
}

/* Emit one timer_fired stamped `at`; returns what emit answered. */
static int32_t fire(timer *t, time_t at)
{
    char when[32], data[256];
    struct tm tm;
    gmtime_r(&at, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(data, sizeof data, "{\"fired_at\":\"%s\",\"timer_id\":%s,\"sequence\":%lld}",
             when, t->quoted_id ? t->quoted_id : "\"default\"", ++t->seq);
    int32_t rc = t->api->emit(t->host, "timer_fired", data, EVH_NUL_TERMINATED, NULL);
    if (rc != EVH_OK && rc != EVH_E_STOPPING) /* queue full: skip this tick */
        t->api->log(t->host, EVH_LOG_WARN, "tick %lld not accepted: %s", t->seq,
                    evh_status_message(rc));
    return rc;
}

/* Sleep to the next matching minute, a minute at most at a time so a changed
 * clock is noticed; a minute missed (machine asleep) is skipped, not caught up. */
static void run_cron(timer *t)
{
    for (int64_t due = -1;;) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
        if (due >= 0 && now_ms >= due * 1000 && now_ms < (due + 60) * 1000 &&
            fire(t, (time_t)due) == EVH_E_STOPPING)
            return;
        due = cron_next(&t->cron, (int64_t)now.tv_sec);
        int64_t ms = due * 1000 - now_ms;
        if (t->api->wait(t->host, (uint64_t)(ms < 60000 ? ms : 60000)) != EVH_OK)
            return;
    }
}

static int32_t timer_run(void *ctx)
{
    timer *t = ctx;
    t->quoted_id = t->api->json_quote(t->timer_id);
    if (t->interval_ms == 0)
        run_cron(t);
    else
        while (t->api->wait(t->host, (uint64_t)t->interval_ms) == EVH_OK &&
               fire(t, time(NULL)) != EVH_E_STOPPING)
            ;
    return EVH_OK;
}

static void timer_fini(void *ctx)
{
    timer *t = ctx;
    t->api->free(t->quoted_id);
    t->api->free(t);
}

static const evh_source timer_source = {
    .struct_size = sizeof(evh_source), .init = timer_init, .run = timer_run, .fini = timer_fini};

EVH_DECLARE_SOURCE("timer", &timer_source)
