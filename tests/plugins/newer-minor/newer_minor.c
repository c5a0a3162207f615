/* newer-minor: plugin.json requires "abi": "1.99"; refused before dlopen
 * (its constructor would leave a marker file if it were ever loaded). */
#include <evhost/evhost.h>
#include <stdio.h>
#include <stdlib.h>

/* Runs at dlopen: creates the file named by EVH_TEST_MARKER, so a test can
 * prove the host never loaded this library. */
__attribute__((constructor)) static void leave_marker(void)
{
    const char *path = getenv("EVH_TEST_MARKER");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (f) {
        fputs("loaded\n", f);
        fclose(f);
    }
}

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
EVH_DECLARE_SOURCE("newer-minor", &fx_source)
