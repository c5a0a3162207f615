/* ok-minimal: a well-behaved event source for the loader and emit tests.
 *
 * run() emits each entry of its config's "emit" list ({type, data,
 * user_id?}) once, in order, appending "<index> <status name>" per emit and
 * then "done" to the config's "record_file", so a test sees exactly what
 * api->emit answered.  Then it sleeps in api->wait until the host stops it
 * and appends "stopped". */
#include <evhost/evhost.h>
#include <stdio.h>

typedef struct om_ctx {
    const evh_host_api *api;
    evh_host *host;
} om_ctx;

static int32_t om_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    om_ctx *c = api->alloc(sizeof *c);
    if (!c)
        return EVH_E_NOMEM;
    c->api = api;
    c->host = host;
    *ctx = c;
    api->log(host, EVH_LOG_DEBUG, "initialized; greeting %s",
             api->config_string(host, "greeting", "?"));
    (void)errmsg;
    return EVH_OK;
}

static void record(const om_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void record(const om_ctx *c, const char *fmt, ...)
{
    const char *path = c->api->config_string(c->host, "record_file", NULL);
    FILE *f = path ? fopen(path, "a") : NULL;
    if (!f)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

static int32_t om_run(void *ctx)
{
    om_ctx *c = ctx;
    const evh_host_api *api = c->api;
    char key[64];
    for (int i = 0;; i++) {
        snprintf(key, sizeof key, "emit[%d].type", i);
        const char *type = api->config_string(c->host, key, NULL);
        if (!type)
            break;
        snprintf(key, sizeof key, "emit[%d].data", i);
        const char *data = api->config_string(c->host, key, "{}");
        snprintf(key, sizeof key, "emit[%d].user_id", i);
        const char *user = api->config_string(c->host, key, NULL);
        int32_t rc = api->emit(c->host, type, data, EVH_NUL_TERMINATED, user);
        record(c, "%d %s\n", i, evh_status_name(rc));
    }
    record(c, "done\n");
    int64_t interval = api->config_int(c->host, "interval_ms", 60000);
    while (api->wait(c->host, (uint64_t)interval) == EVH_OK)
        ;
    record(c, "stopped\n");
    return EVH_OK;
}

static void om_fini(void *ctx)
{
    om_ctx *c = ctx;
    c->api->free(c);
}

static const evh_source om_source = {.struct_size = sizeof(evh_source),
                                     .init = om_init,
                                     .run = om_run,
                                     .fini = om_fini};
EVH_DECLARE_SOURCE("ok-minimal", &om_source)
