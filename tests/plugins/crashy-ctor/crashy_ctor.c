/* crashy-ctor: a step whose library segfaults in a constructor, that is
 * during dlopen, before any function of the SDK is called, when the
 * environment has EVH_TEST_CRASHY_CTOR (otherwise a step that outputs {}).
 * Its plugin.json asks for process isolation: only the child that loads it
 * should die, never the host. */
#include <evhost/evhost.h>
#include <stdint.h>
#include <stdlib.h>

static volatile int *volatile nowhere = (volatile int *)(uintptr_t)16;

__attribute__((constructor)) static void crash_when_asked(void)
{
    if (getenv("EVH_TEST_CRASHY_CTOR"))
        *nowhere = 1;
}

static int32_t cc_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    (void)api;
    (void)host;
    (void)errmsg;
    *ctx = NULL;
    return EVH_OK;
}

static int32_t cc_run(void *ctx, const evh_step_input *in, evh_step_output *out)
{
    (void)ctx;
    (void)in;
    (void)out;
    return EVH_OK;
}

static void cc_fini(void *ctx)
{
    (void)ctx;
}

static const evh_step desc = {
    .struct_size = sizeof(evh_step), .init = cc_init, .run = cc_run, .fini = cc_fini};
EVH_DECLARE_STEP("crashy-ctor", &desc)
