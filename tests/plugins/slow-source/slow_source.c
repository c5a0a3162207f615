/* slow-source: emits "tick" events as fast as it can, nobody consuming, so
 * the queue fills.  After `full_limit` EVH_E_QUEUE_FULL answers it appends
 * "ok=<accepted> full=<refused>" to `record_file` and waits to be stopped. */
#include <evhost/evhost.h>
#include <stdio.h>

typedef struct ss_ctx {
    const evh_host_api *api;
    evh_host *host;
} ss_ctx;

static int32_t ss_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    ss_ctx *c = api->alloc(sizeof *c);
    if (!c)
        return EVH_E_NOMEM;
    c->api = api;
    c->host = host;
    *ctx = c;
    (void)errmsg;
    return EVH_OK;
}

static int32_t ss_run(void *ctx)
{
    ss_ctx *c = ctx;
    const evh_host_api *api = c->api;
    int64_t limit = api->config_int(c->host, "full_limit", 3);
    long ok = 0, full = 0, other = 0;
    char data[64];
    while (full < limit && other == 0) {
        snprintf(data, sizeof data, "{\"seq\":%ld}", ok + full);
        int32_t rc = api->emit(c->host, "tick", data, EVH_NUL_TERMINATED, NULL);
        if (rc == EVH_OK)
            ok++;
        else if (rc == EVH_E_QUEUE_FULL)
            full++;
        else
            other++;
    }
    const char *path = api->config_string(c->host, "record_file", NULL);
    FILE *f = path ? fopen(path, "a") : NULL;
    if (f) {
        fprintf(f, "ok=%ld full=%ld other=%ld\n", ok, full, other);
        fclose(f);
    }
    while (api->wait(c->host, 60000) == EVH_OK)
        ;
    return EVH_OK;
}

static void ss_fini(void *ctx)
{
    ss_ctx *c = ctx;
    c->api->free(c);
}

static const evh_source ss_source = {.struct_size = sizeof(evh_source),
                                     .init = ss_init,
                                     .run = ss_run,
                                     .fini = ss_fini};
EVH_DECLARE_SOURCE("slow-source", &ss_source)
