/* hangs-in-init: init never returns, so the host's init deadline must mark
 * the plugin failed and go on without it. */
#include <evhost/evhost.h>
#include <time.h>

static int32_t hi_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    (void)api;
    (void)host;
    (void)ctx;
    (void)errmsg;
    for (;;) {
        struct timespec t = {0, 50 * 1000000L};
        nanosleep(&t, NULL);
    }
    return EVH_OK;
}

static int32_t hi_run(void *ctx)
{
    (void)ctx;
    return EVH_OK;
}

static void hi_fini(void *ctx)
{
    (void)ctx;
}

static const evh_source hi_source = {.struct_size = sizeof(evh_source),
                                     .init = hi_init,
                                     .run = hi_run,
                                     .fini = hi_fini};
EVH_DECLARE_SOURCE("hangs-in-init", &hi_source)
