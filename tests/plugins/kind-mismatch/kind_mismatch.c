/* kind-mismatch: plugin.json says event-source, the descriptor a step. */
#include <evhost/evhost.h>

static int32_t km_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    (void)api;
    (void)host;
    (void)errmsg;
    *ctx = NULL;
    return EVH_OK;
}

static int32_t km_run(void *ctx, const evh_step_input *in, evh_step_output *out)
{
    (void)ctx;
    (void)in;
    (void)out;
    return EVH_OK;
}

static void km_fini(void *ctx)
{
    (void)ctx;
}

static const evh_step km_step = {
    .struct_size = sizeof(evh_step), .init = km_init, .run = km_run, .fini = km_fini};
EVH_DECLARE_STEP("kind-mismatch", &km_step)
