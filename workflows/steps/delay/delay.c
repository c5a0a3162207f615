/* delay - a workflow step that waits `ms` milliseconds (0 .. 24 h) and
 * outputs {"waited_ms": <ms>}.  It sleeps with api->wait, so a stopping
 * host ends the wait at once: the run then fails with "host stopping"
 * (EVH_E_STOPPING) instead of holding up the shutdown. */
#include <evhost/evhost.h>

#include <stdlib.h>
#include <string.h>

#define MAX_DELAY_MS 86400000LL

typedef struct delay_step {
    const evh_host_api *api;
    evh_host *host;
} delay_step;

static int32_t delay_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    delay_step *s = api->alloc(sizeof *s);
    if (!s)
        return EVH_E_NOMEM;
    s->api = api;
    s->host = host;
    *ctx = s;
    (void)errmsg;
    return EVH_OK;
}

/* This run's ms: an integer in range.  The per-run config is read rather
 * than the instance's, because "{{ event.data.delay_ms }}" resolves here. */
static int read_ms(const evh_host_api *api, const evh_step_input *in, long long *ms)
{
    char *text = api->json_get(in->config_json, in->config_len, "ms");
    if (!text)
        return -1;
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    /* only a plain integer: "1.5", "1e3", "\"5\"" and the like are refused */
    int ok = end != text && *end == '\0' && text[0] != '+' && v >= 0 && v <= MAX_DELAY_MS;
    api->free(text);
    *ms = v;
    return ok ? 0 : -1;
}

static int32_t delay_run(void *ctx, const evh_step_input *in, evh_step_output *out)
{
    delay_step *s = ctx;
    const evh_host_api *api = s->api;
    long long ms = 0;
    if (read_ms(api, in, &ms) != 0) {
        out->error_message =
            api->mprintf("config: ms: must be an integer from 0 to %lld", MAX_DELAY_MS);
        return EVH_E_CONFIG;
    }
    if (api->wait(s->host, (uint64_t)ms) == EVH_E_STOPPING) {
        out->error_message = api->strdup("host stopping");
        return EVH_E_STOPPING;
    }
    out->output_json = api->mprintf("{\"waited_ms\":%lld}", ms);
    if (!out->output_json) {
        out->error_message = api->strdup("out of memory");
        return EVH_E_NOMEM;
    }
    return EVH_OK;
}

static void delay_fini(void *ctx)
{
    delay_step *s = ctx;
    s->api->free(s);
}

static const evh_step delay_step_desc = {
    .struct_size = sizeof(evh_step), .init = delay_init, .run = delay_run, .fini = delay_fini};

EVH_DECLARE_STEP("delay", &delay_step_desc)
