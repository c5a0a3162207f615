/* hangs-on-stop: run() sleeps forever and never looks at stopping(), so the
 * host's stop deadline must abandon it.  With "hang_in_stop": true its stop
 * callback never returns either.  Nothing of the host is called after init,
 * so the abandoned thread is harmless until the process exits. */
#include <evhost/evhost.h>
#include <time.h>

typedef struct hs_ctx {
    int hang_in_stop;
} hs_ctx;

static void nap(void)
{
    struct timespec t = {0, 50 * 1000000L};
    nanosleep(&t, NULL);
}

static int32_t hs_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    hs_ctx *c = api->alloc(sizeof *c);
    if (!c)
        return EVH_E_NOMEM;
    c->hang_in_stop = api->config_bool(host, "hang_in_stop", 0);
    *ctx = c;
    (void)errmsg;
    return EVH_OK;
}

static int32_t hs_run(void *ctx)
{
    (void)ctx;
    for (;;)
        nap();
    return EVH_OK;
}

static void hs_stop(void *ctx)
{
    hs_ctx *c = ctx;
    while (c->hang_in_stop)
        nap();
}

static void hs_fini(void *ctx)
{
    (void)ctx; /* never called: the host abandons this plugin */
}

static const evh_source hs_source = {.struct_size = sizeof(evh_source),
                                     .init = hs_init,
                                     .run = hs_run,
                                     .stop = hs_stop,
                                     .fini = hs_fini};
EVH_DECLARE_SOURCE("hangs-on-stop", &hs_source)
