/* run-fails: init succeeds; run() gives up at once with EVH_E_IO (a source
 * whose device went away), for the system source's plugin_failed. */
#include <evhost/evhost.h>

static int32_t rf_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    (void)api;
    (void)host;
    (void)errmsg;
    *ctx = NULL;
    return EVH_OK;
}

static int32_t rf_run(void *ctx)
{
    (void)ctx;
    return EVH_E_IO;
}

static void rf_fini(void *ctx)
{
    (void)ctx;
}

static const evh_source rf_source = {.struct_size = sizeof(evh_source),
                                     .init = rf_init,
                                     .run = rf_run,
                                     .fini = rf_fini};
EVH_DECLARE_SOURCE("run-fails", &rf_source)
