/* init-fails: init refuses with EVH_E_CONFIG and a message of its own. */
#include <evhost/evhost.h>

static int32_t if_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    (void)host;
    *ctx = NULL;
    *errmsg = api->strdup("cannot open device");
    return EVH_E_CONFIG;
}

static int32_t if_run(void *ctx)
{
    (void)ctx;
    return EVH_E_STATE; /* never called */
}

static void if_fini(void *ctx)
{
    (void)ctx;
}

static const evh_source if_source = {.struct_size = sizeof(evh_source),
                                     .init = if_init,
                                     .run = if_run,
                                     .fini = if_fini};
EVH_DECLARE_SOURCE("init-fails", &if_source)
