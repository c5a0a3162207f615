/* filter - ends the workflow early, as succeeded, when its conditions are
 * false; the steps after it then do not run (the host records them as
 * skipped, saying that this step stopped the workflow).
 *
 *     - id: only-big-pdfs
 *       uses: filter
 *       with:
 *         conditions:
 *           all:
 *             - {field: data.file_size, op: gt, value: 1000000}
 *             - {field: steps.classify.output.kind, op: eq, value: invoice}
 *
 * The conditions are the trigger language (docs/pipeline.md): the plugin
 * never parses them itself.  The host checked them when the workflow loaded
 * (configSchema "format": "conditions") and evaluates them here with
 * api->condition_eval (ABI 1.1) over {"event": <envelope>, "steps":
 * <earlier outputs>}.  Output: {"passed": true|false}.  Ending the workflow
 * is EVH_STEP_STOP_WORKFLOW in out->flags (ABI 1.1), hence "abi": "1.1" in
 * plugin.json: a 1.0 host refuses this plugin rather than run the steps it
 * should have stopped.
 */
#include <string.h>

#include <evhost/evhost.h>

typedef struct filter_step {
    const evh_host_api *api;
    evh_host *host;
} filter_step;

static int32_t filter_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    if (!EVH_API_HAS(api, condition_eval)) {
        *errmsg = api->strdup("this host has no condition_eval (SDK ABI 1.1 is required)");
        return EVH_E_ABI;
    }
    filter_step *s = api->alloc(sizeof *s);
    if (!s)
        return EVH_E_NOMEM;
    s->api = api;
    s->host = host;
    *ctx = s;
    return EVH_OK;
}

/* "{\"event\":<event>,\"steps\":<steps>}": both texts are JSON objects from
 * the host, so joining them is all it takes. */
static char *context_of(const evh_host_api *api, const evh_step_input *in)
{
    const char *steps = in->steps_json && in->steps_len ? in->steps_json : "{}";
    size_t steps_len = in->steps_json && in->steps_len ? in->steps_len : 2;
    size_t len = 9 + in->event_len + 9 + steps_len + 1;
    char *out = api->alloc(len + 1);
    if (!out)
        return NULL;
    char *p = out;
    memcpy(p, "{\"event\":", 9);
    p += 9;
    memcpy(p, in->event_json, in->event_len);
    p += in->event_len;
    memcpy(p, ",\"steps\":", 9);
    p += 9;
    memcpy(p, steps, steps_len);
    p += steps_len;
    *p++ = '}';
    *p = '\0';
    return out;
}

static int32_t filter_run(void *ctx, const evh_step_input *in, evh_step_output *out)
{
    filter_step *s = ctx;
    const evh_host_api *api = s->api;
    /* This run's config: templates in condition values are resolved. */
    char *conds = api->json_get(in->config_json, in->config_len, "conditions");
    char *context = context_of(api, in);
    if (!conds || !context) {
        api->free(conds);
        api->free(context);
        out->error_message = api->strdup(conds ? "out of memory" : "conditions: missing");
        return conds ? EVH_E_NOMEM : EVH_E_CONFIG;
    }
    char *error = NULL;
    int32_t r = api->condition_eval(s->host, conds, EVH_NUL_TERMINATED, context,
                                    EVH_NUL_TERMINATED, &error);
    api->free(conds);
    api->free(context);
    if (r < 0) {
        /* a template rendered into something the language refuses */
        out->error_message = api->mprintf("conditions: %s", error ? error : evh_status_message(r));
        api->free(error);
        return r;
    }
    if (r == 0) {
        if (!EVH_STEP_OUTPUT_HAS(out, flags)) {
            out->error_message = api->strdup("the host cannot stop a workflow (SDK ABI 1.1 is "
                                             "required)");
            return EVH_E_UNSUPPORTED;
        }
        out->flags |= EVH_STEP_STOP_WORKFLOW;
    }
    out->output_json = api->strdup(r ? "{\"passed\":true}" : "{\"passed\":false}");
    return out->output_json ? EVH_OK : EVH_E_NOMEM;
}

static void filter_fini(void *ctx)
{
    filter_step *s = ctx;
    s->api->free(s);
}

static const evh_step filter_desc = {.struct_size = sizeof(evh_step),
                                     .init = filter_init,
                                     .run = filter_run,
                                     .fini = filter_fini};

EVH_DECLARE_STEP("filter", &filter_desc)
