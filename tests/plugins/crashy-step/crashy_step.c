/* crashy-step: a step for the crash isolation tests.  Its run does what the
 * run's config "mode" says:
 *   ok     output {"value": <config value>, "attempt": n, "event_n": <event
 *          data.n>, "data_dir": true|false, "emitted_id": <length of the id
 *          emit_id gave, or 0>}, metrics rows = 42 and attempt = n, a log
 *          line, and (config emit: true) an event crashy_done {"n": <event
 *          data.n>} through emit_id
 *   fail   fails with a message
 *   segv   writes to address 16 (a segfault)
 *   abort  abort()
 *   exit   exit(3)
 *   loop   spins forever without calling the host (a hung plugin)
 * Plugin code is the same whether the host runs it in-process or in its own
 * process (isolation: process). */
#include <evhost/evhost.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ctx {
    const evh_host_api *api;
    evh_host *host;
} ctx;

static int32_t cs_init(const evh_host_api *api, evh_host *host, void **out, char **errmsg)
{
    ctx *c = api->alloc(sizeof *c);
    if (!c)
        return EVH_E_NOMEM;
    c->api = api;
    c->host = host;
    *out = c;
    (void)errmsg;
    return EVH_OK;
}

/* An address no process maps (the first page), not NULL itself: a sanitized
 * build's null check would catch a NULL store and exit instead of faulting. */
static volatile int *volatile nowhere = (volatile int *)(uintptr_t)16;
static volatile unsigned long spins;

static int32_t cs_run(void *p, const evh_step_input *in, evh_step_output *out)
{
    ctx *c = p;
    const evh_host_api *api = c->api;
    char *mode = api->json_get_string(in->config_json, in->config_len, "mode");
    char *value = api->json_get(in->config_json, in->config_len, "value");
    char *emit = api->json_get(in->config_json, in->config_len, "emit");
    char *n = api->json_get(in->event_json, in->event_len, "data.n");
    int32_t rc = EVH_OK;
    if (mode && !strcmp(mode, "segv")) {
        *nowhere = 1;
    } else if (mode && !strcmp(mode, "abort")) {
        abort();
    } else if (mode && !strcmp(mode, "exit")) {
        exit(3);
    } else if (mode && !strcmp(mode, "loop")) {
        for (;;)
            spins++;
    } else if (mode && !strcmp(mode, "fail")) {
        out->error_message = api->mprintf("failing on purpose (attempt %u)", in->attempt);
        rc = EVH_E_PLUGIN;
    } else {
        api->metric(c->host, "rows", 42);
        api->metric(c->host, "attempt", in->attempt);
        api->log(c->host, EVH_LOG_INFO, "crashy-step ran for event n=%s", n ? n : "?");
        char id[EVH_EVENT_ID_SIZE] = "";
        if (emit && !strcmp(emit, "true")) {
            char data[64];
            snprintf(data, sizeof data, "{\"n\":%s}", n ? n : "0");
            if (EVH_API_HAS(api, emit_id) && api->emit_id)
                rc = api->emit_id(c->host, "crashy_done", data, EVH_NUL_TERMINATED, NULL, id);
            else
                rc = api->emit(c->host, "crashy_done", data, EVH_NUL_TERMINATED, NULL);
            if (rc != EVH_OK)
                out->error_message = api->mprintf("emit: %s", evh_status_name(rc));
        }
        if (rc == EVH_OK)
            out->output_json = api->mprintf(
                "{\"value\":%s,\"attempt\":%u,\"event_n\":%s,\"data_dir\":%s,\"emitted_id\":%zu}",
                value ? value : "null", in->attempt, n ? n : "null",
                api->data_dir(c->host) ? "true" : "false", strlen(id));
    }
    api->free(mode);
    api->free(value);
    api->free(emit);
    api->free(n);
    return rc;
}

static void cs_fini(void *p)
{
    ctx *c = p;
    c->api->free(c);
}

static const evh_step desc = {
    .struct_size = sizeof(evh_step), .init = cs_init, .run = cs_run, .fini = cs_fini};
EVH_DECLARE_STEP("crashy-step", &desc)
