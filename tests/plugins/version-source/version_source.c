/* version-source: emits one "hello" event {"build": VS_BUILD} when it runs,
 * appends "start <build>" and, once stopped, "stop <build>" to the config's
 * record_file: the hot reload tests see which code runs and when it stops.
 * Built twice (VS_BUILD "1" and "2") from this file. */
#include <evhost/evhost.h>
#include <stdio.h>

#ifndef VS_BUILD
#define VS_BUILD "0"
#endif

typedef struct vs_ctx {
    const evh_host_api *api;
    evh_host *host;
} vs_ctx;

static void record(const vs_ctx *c, const char *what)
{
    const char *path = c->api->config_string(c->host, "record_file", NULL);
    FILE *f = path ? fopen(path, "a") : NULL;
    if (f) {
        fprintf(f, "%s %s\n", what, VS_BUILD);
        fclose(f);
    }
}

static int32_t vs_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    vs_ctx *c = api->alloc(sizeof *c);
    if (!c)
        return EVH_E_NOMEM;
    c->api = api;
    c->host = host;
    *ctx = c;
    (void)errmsg;
    return EVH_OK;
}

static int32_t vs_run(void *ctx)
{
    vs_ctx *c = ctx;
    int32_t rc = c->api->emit(c->host, "hello", "{\"build\":\"" VS_BUILD "\"}", EVH_NUL_TERMINATED,
                              NULL);
    record(c, rc == EVH_OK ? "start" : "start-emit-failed");
    while (c->api->wait(c->host, 60000) == EVH_OK)
        ;
    record(c, "stop");
    return EVH_OK;
}

static void vs_fini(void *ctx)
{
    vs_ctx *c = ctx;
    record(c, "fini");
    c->api->free(c);
}

static const evh_source vs_source = {.struct_size = sizeof(evh_source),
                                     .init = vs_init,
                                     .run = vs_run,
                                     .fini = vs_fini};
EVH_DECLARE_SOURCE("version-source", &vs_source)
