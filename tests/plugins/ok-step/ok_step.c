/* ok-step: a step that echoes the triggering event's data.
 *
 * Output: {"<key>": <event data>, "times": <times>} with key and times from
 * this run's config (init's config supplies the defaults).  Metrics:
 * "calls" (set twice per run, so the later value must win) and
 * "data_bytes". */
#include <evhost/evhost.h>
#include <string.h>

typedef struct os_ctx {
    const evh_host_api *api;
    evh_host *host;
    long calls;
} os_ctx;

static int32_t os_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    os_ctx *c = api->alloc(sizeof *c);
    if (!c)
        return EVH_E_NOMEM;
    c->api = api;
    c->host = host;
    c->calls = 0;
    *ctx = c;
    (void)errmsg;
    return EVH_OK;
}

static int32_t os_run(void *ctx, const evh_step_input *in, evh_step_output *out)
{
    os_ctx *c = ctx;
    const evh_host_api *api = c->api;
    char *data = api->json_get(in->event_json, in->event_len, "data");
    if (!data) {
        out->error_message = api->strdup("the event has no data");
        return EVH_E_PLUGIN;
    }
    char *key = api->json_get_string(in->config_json, in->config_len, "key");
    char *quoted = api->json_quote(key ? key : api->config_string(c->host, "key", "echo"));
    char *times = api->json_get(in->config_json, in->config_len, "times");
    c->calls++;
    api->metric(c->host, "calls", 0);
    api->metric(c->host, "calls", (double)c->calls);
    api->metric(c->host, "data_bytes", (double)strlen(data));
    out->output_json = api->mprintf("{%s:%s,\"times\":%s}", quoted ? quoted : "\"echo\"", data,
                                    times ? times : "1");
    out->output_len = EVH_NUL_TERMINATED;
    api->free(times);
    api->free(quoted);
    api->free(key);
    api->free(data);
    return out->output_json ? EVH_OK : EVH_E_NOMEM;
}

static void os_fini(void *ctx)
{
    os_ctx *c = ctx;
    c->api->free(c);
}

static const evh_step os_step = {
    .struct_size = sizeof(evh_step), .init = os_init, .run = os_run, .fini = os_fini};
EVH_DECLARE_STEP("ok-step", &os_step)
