/* webhook-abi10: an event source exactly as one built against SDK ABI 1.0
 * looks to the host: a descriptor saying 1.0 and a 40-byte source table
 * with no http field at all, while its plugin.json declares a
 * webhookEndpoint.  The host must load it, never read past the table (under
 * ASan, the redzone after it would report such a read), and answer
 * requests to the endpoint with 501. */
#include <evhost/evhost.h>

/* evh_source as SDK 1.0 declared it. */
typedef struct source_1_0 {
    uint32_t struct_size;
    uint32_t reserved_;
    int32_t (*init)(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg);
    int32_t (*run)(void *ctx);
    void (*stop)(void *ctx);
    void (*fini)(void *ctx);
} source_1_0;

_Static_assert(sizeof(source_1_0) == 40, "the SDK 1.0 source table is 40 bytes");

typedef struct wa_ctx {
    const evh_host_api *api;
    evh_host *host;
} wa_ctx;

static int32_t wa_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    (void)errmsg;
    wa_ctx *c = api->alloc(sizeof *c);
    if (!c)
        return EVH_E_NOMEM;
    c->api = api;
    c->host = host;
    *ctx = c;
    return EVH_OK;
}

static int32_t wa_run(void *ctx)
{
    wa_ctx *c = ctx;
    while (c->api->wait(c->host, 60000) == EVH_OK)
        ;
    return EVH_OK;
}

static void wa_fini(void *ctx)
{
    wa_ctx *c = ctx;
    c->api->free(c);
}

static const source_1_0 wa_source = {sizeof(source_1_0), 0, wa_init, wa_run, 0, wa_fini};

static const evh_plugin wa_desc = {sizeof(evh_plugin),
                                   1,
                                   0, /* built against SDK 1.0 */
                                   EVH_KIND_SOURCE,
                                   0,
                                   "webhook-abi10",
                                   (const evh_source *)(const void *)&wa_source,
                                   0};

EVH_EXPORT_ const evh_plugin *evh_plugin_entry(void);
EVH_EXPORT_ const evh_plugin *evh_plugin_entry(void)
{
    return &wa_desc;
}
