/* log - the reference workflow step: writes a message, or the triggering
 * event, to the host log and outputs what it wrote. */
#include <evhost/evhost.h>
#include <string.h>

typedef struct log_step {
    const evh_host_api *api;
    evh_host *host;
} log_step;

static int32_t log_init(const evh_host_api *api, evh_host *host, void **ctx,
                        char **errmsg)
{
    log_step *s = api->alloc(sizeof *s);
    if (!s)
        return EVH_E_NOMEM;
    s->api = api;
    s->host = host;
    *ctx = s;
    (void)errmsg;
    return EVH_OK;
}

static int32_t level_of(const char *name)
{
    if (name && !strcmp(name, "error"))
        return EVH_LOG_ERROR;
    if (name && !strcmp(name, "warn"))
        return EVH_LOG_WARN;
    if (name && !strcmp(name, "debug"))
        return EVH_LOG_DEBUG;
    return EVH_LOG_INFO;
}

static int32_t log_run(void *ctx, const evh_step_input *in, evh_step_output *out)
{
    log_step *s = ctx;
    const evh_host_api *api = s->api;
    /* Per-run config: the message template is already resolved. */
    char *message = api->json_get_string(in->config_json, in->config_len, "message");
    char *level = api->json_get_string(in->config_json, in->config_len, "level");
    const char *text = message ? message : in->event_json;
    api->log(s->host, level_of(level), "%s", text);
    char *quoted = api->json_quote(text);
    out->output_json = quoted ? api->mprintf("{\"logged\":%s}", quoted) : NULL;
    api->metric(s->host, "bytes_logged", (double)strlen(text));
    api->free(quoted);
    api->free(message); /* text may point here: free it last */
    api->free(level);
    if (!out->output_json) {
        out->error_message = api->strdup("out of memory");
        return EVH_E_NOMEM;
    }
    return EVH_OK;
}

static void log_fini(void *ctx)
{
    log_step *s = ctx;
    s->api->free(s);
}

static const evh_step log_step_desc = {
    .struct_size = sizeof(evh_step), .init = log_init, .run = log_run, .fini = log_fini};

EVH_DECLARE_STEP("log", &log_step_desc)
