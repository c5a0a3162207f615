/* firehose: emits `count` tick events, as fast as the host takes them
 * (rate 0: retries on EVH_E_QUEUE_FULL) or `rate` per second, then waits
 * to be stopped.  Each event carries its emit time for latency figures. */
#include <evhost/evhost.h>
#include <stdio.h>
#include <time.h>

typedef struct fh {
    const evh_host_api *api;
    evh_host *host;
} fh;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int32_t fh_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    fh *c = api->alloc(sizeof *c);
    if (!c)
        return EVH_E_NOMEM;
    c->api = api;
    c->host = host;
    *ctx = c;
    (void)errmsg;
    return EVH_OK;
}

static int32_t fh_run(void *ctx)
{
    fh *c = ctx;
    const evh_host_api *api = c->api;
    int64_t count = api->config_int(c->host, "count", 100000);
    int64_t rate = api->config_int(c->host, "rate", 0);
    int64_t start = now_ns();
    char data[96];
    for (int64_t i = 0; i < count && !api->stopping(c->host);) {
        if (rate > 0) { /* pace: event i is due at start + i/rate seconds */
            int64_t due = start + i * 1000000000 / rate;
            struct timespec t = {(time_t)(due / 1000000000), (long)(due % 1000000000)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
        }
        snprintf(data, sizeof data, "{\"seq\":%lld,\"t_ns\":%lld}", (long long)i,
                 (long long)now_ns());
        int32_t rc = api->emit(c->host, "tick", data, EVH_NUL_TERMINATED, NULL);
        if (rc == EVH_OK)
            i++;
        else if (rc != EVH_E_QUEUE_FULL)
            break;
    }
    while (api->wait(c->host, 1000) == EVH_OK)
        ;
    return EVH_OK;
}

static void fh_fini(void *ctx)
{
    fh *c = ctx;
    c->api->free(c);
}

static const evh_source fh_source = {.struct_size = sizeof(evh_source),
                                     .init = fh_init,
                                     .run = fh_run,
                                     .fini = fh_fini};
EVH_DECLARE_SOURCE("firehose", &fh_source)
