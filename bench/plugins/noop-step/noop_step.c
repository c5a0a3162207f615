/* noop-step: reports latency_us = now - data.t_ns of the event (both
 * CLOCK_MONOTONIC in the same process) as a step metric, outputs {}. */
#include <evhost/evhost.h>
#include <stdlib.h>
#include <time.h>

typedef struct ns {
    const evh_host_api *api;
    evh_host *host;
} ns;

static int32_t ns_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    ns *c = api->alloc(sizeof *c);
    if (!c)
        return EVH_E_NOMEM;
    c->api = api;
    c->host = host;
    *ctx = c;
    (void)errmsg;
    return EVH_OK;
}

static int32_t ns_run(void *ctx, const evh_step_input *in, evh_step_output *out)
{
    ns *c = ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    char *t = c->api->json_get(in->event_json, in->event_len, "data.t_ns");
    if (t) {
        c->api->metric(c->host, "latency_us", (double)(now - atoll(t)) / 1000.0);
        c->api->free(t);
    }
    (void)out;
    return EVH_OK;
}

static void ns_fini(void *ctx)
{
    ns *c = ctx;
    c->api->free(c);
}

static const evh_step ns_step = {
    .struct_size = sizeof(evh_step), .init = ns_init, .run = ns_run, .fini = ns_fini};
EVH_DECLARE_STEP("noop-step", &ns_step)
