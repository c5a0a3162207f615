/* system - the host's own events (workflow_completed, workflow_failed,
 * plugin_failed, host_started, user_login).
 *
 * Nothing to produce here: the HOST emits these events on this plugin's
 * behalf, with this plugin's manifest (host/src/system_events.c), because
 * only the host sees executions finish, plugins fail and API keys
 * authenticate.  This folder exists so that the events are declared like
 * any source's (plugin.json: types and schemas, checked on every emit),
 * triggers can name source "system", and removing or deactivating the
 * plugin ("status": "inactive") turns the host events off.  run() only
 * waits for the host to stop.
 */
#include <evhost/evhost.h>

typedef struct system_source {
    const evh_host_api *api;
    evh_host *host;
} system_source;

static int32_t system_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    (void)errmsg;
    system_source *s = api->alloc(sizeof *s);
    if (!s)
        return EVH_E_NOMEM;
    s->api = api;
    s->host = host;
    *ctx = s;
    return EVH_OK;
}

static int32_t system_run(void *ctx)
{
    system_source *s = ctx;
    while (s->api->wait(s->host, 3600u * 1000u) == EVH_OK)
        ;
    return EVH_OK;
}

static void system_fini(void *ctx)
{
    system_source *s = ctx;
    s->api->free(s);
}

static const evh_source system_desc = {.struct_size = sizeof(evh_source),
                                       .init = system_init,
                                       .run = system_run,
                                       .fini = system_fini};

EVH_DECLARE_SOURCE("system", &system_desc)
