/* world-writable: a good source; the tests loosen its file modes. */
#include <evhost/evhost.h>

static int32_t fx_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    (void)api;
    (void)host;
    (void)errmsg;
    *ctx = NULL;
    return EVH_OK;
}

static int32_t fx_run(void *ctx)
{
    (void)ctx;
    return EVH_OK;
}

static void fx_fini(void *ctx)
{
    (void)ctx;
}

static const evh_source fx_source = {.struct_size = sizeof(evh_source),
                                     .init = fx_init,
                                     .run = fx_run,
                                     .fini = fx_fini};
EVH_DECLARE_SOURCE("world-writable", &fx_source)
