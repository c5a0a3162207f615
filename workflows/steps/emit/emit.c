/* emit - emits a new event to chain workflows: a trigger on source "emit"
 * and the event type starts the next workflow with it.
 *
 *     - id: hand-over
 *       uses: emit
 *       with:
 *         type: workflow_event                 # one of plugin.json's eventTypes
 *         data:
 *           document: "{{ event.data.filename }}"
 *           pages: "{{ steps.count.output.pages }}"
 *
 * The host checks the type against this plugin's eventTypes and the data
 * against the type's schema (EVH_E_UNDECLARED_TYPE, EVH_E_SCHEMA fail the
 * step), stamps source "emit", and gives the event the chain depth of the
 * event this workflow runs for + 1, so a loop of workflows stops at
 * pipeline.max_chain_depth.  The event's metadata.user_id is the triggering
 * event's unless `user_id` says otherwise.  Output: {"event_id", "type"}.
 * Emitting is not durable by itself: the event is queued when the step
 * succeeds and stored a moment later (docs/pipeline.md, "Durability").
 */
#include <evhost/evhost.h>

typedef struct emit_step {
    const evh_host_api *api;
    evh_host *host;
} emit_step;

static int32_t emit_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    if (!EVH_API_HAS(api, emit_id)) {
        *errmsg = api->strdup("this host has no emit_id (SDK ABI 1.1 is required)");
        return EVH_E_ABI;
    }
    emit_step *s = api->alloc(sizeof *s);
    if (!s)
        return EVH_E_NOMEM;
    s->api = api;
    s->host = host;
    *ctx = s;
    return EVH_OK;
}

static int32_t emit_run(void *ctx, const evh_step_input *in, evh_step_output *out)
{
    emit_step *s = ctx;
    const evh_host_api *api = s->api;
    /* defaults are filled in: type and data are always there */
    char *type = api->json_get_string(in->config_json, in->config_len, "type");
    char *data = api->json_get(in->config_json, in->config_len, "data");
    /* user_id: the config's string; null: none; absent: the event's */
    char *user_raw = api->json_get(in->config_json, in->config_len, "user_id");
    char *user = user_raw ? api->json_get_string(in->config_json, in->config_len, "user_id")
                          : api->json_get_string(in->event_json, in->event_len,
                                                 "metadata.user_id");
    int32_t rc = EVH_OK;
    char id[EVH_EVENT_ID_SIZE] = "";
    if (!type || !data) {
        out->error_message = api->strdup(!type ? "type: missing" : "data: missing");
        rc = EVH_E_CONFIG;
    } else {
        rc = api->emit_id(s->host, type, data, EVH_NUL_TERMINATED, user, id);
        if (rc != EVH_OK)
            /* the host logged the details (schema paths) */
            out->error_message = api->mprintf("emitting '%s' failed: %s", type,
                                              evh_status_message(rc));
    }
    if (rc == EVH_OK) {
        char *qid = api->json_quote(id);
        char *qtype = api->json_quote(type);
        out->output_json = qid && qtype
                               ? api->mprintf("{\"event_id\":%s,\"type\":%s}", qid, qtype)
                               : NULL;
        api->free(qid);
        api->free(qtype);
        if (!out->output_json)
            rc = EVH_E_NOMEM;
    }
    api->free(type);
    api->free(data);
    api->free(user_raw);
    api->free(user);
    return rc;
}

static void emit_fini(void *ctx)
{
    emit_step *s = ctx;
    s->api->free(s);
}

static const evh_step emit_desc = {.struct_size = sizeof(evh_step),
                                   .init = emit_init,
                                   .run = emit_run,
                                   .fini = emit_fini};

EVH_DECLARE_STEP("emit", &emit_desc)
