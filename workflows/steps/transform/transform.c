/* transform - the mapping step between two others: builds a new JSON object
 * from templates and outputs it, so later steps read tidy names instead of
 * long paths into the event or into other steps' outputs.
 *
 *     - id: map
 *       uses: transform
 *       with:
 *         output:
 *           customer: "{{ event.data.user.id }}"      # keeps its type
 *           total: "{{ steps.price.output.amount }}"  # a number stays a number
 *           note: "order {{ event.data.id }}"         # text inside text
 *     - id: next
 *       uses: log
 *       with: {message: "{{ steps.map.output.customer }}"}
 *
 * There is nothing to compute here: the host resolves every template in the
 * step's config before each run (evh_step_input.config_json), so the plugin
 * only hands the rendered `output` object back as its output.
 */
#include <evhost/evhost.h>

typedef struct transform_step {
    const evh_host_api *api;
} transform_step;

static int32_t transform_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    transform_step *s = api->alloc(sizeof *s);
    if (!s)
        return EVH_E_NOMEM;
    s->api = api;
    *ctx = s;
    (void)host;
    (void)errmsg;
    return EVH_OK;
}

static int32_t transform_run(void *ctx, const evh_step_input *in, evh_step_output *out)
{
    const evh_host_api *api = ((transform_step *)ctx)->api;
    /* This run's config, templates already resolved: {"output": {...}}. */
    char *output = api->json_get(in->config_json, in->config_len, "output");
    /* The host validated `output` as an object at load, unless it was one
     * whole template ("{{ event.data }}"), which could render to anything. */
    const char *p = output;
    while (p && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    if (!p || *p != '{') {
        api->free(output);
        out->error_message = api->strdup("output: must be a JSON object");
        return EVH_E_INVALID;
    }
    out->output_json = output; /* from api->alloc; the host frees it */
    return EVH_OK;
}

static void transform_fini(void *ctx)
{
    transform_step *s = ctx;
    s->api->free(s);
}

static const evh_step transform_desc = {.struct_size = sizeof(evh_step),
                                        .init = transform_init,
                                        .run = transform_run,
                                        .fini = transform_fini};

EVH_DECLARE_STEP("transform", &transform_desc)
