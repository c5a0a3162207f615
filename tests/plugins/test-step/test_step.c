/* test-step: a configurable step for the pipeline tests.
 *   echo   output {"value": <config value>, "attempt": n, "event_id": ...}
 *   fail   always fails
 *   flaky  fails while attempt <= fail_times, then echoes
 *   sleep  sleeps sleep_ms (not interruptible: a hung plugin), then echoes
 * init_sleep_ms: init sleeps that long first (a plugin whose init hangs).
 * Every run appends "<execution_id> <step_id> <attempt>\n" to record_file
 * when set, so tests can count how often a step really ran.
 * emit_type: also emits an event of that type (chain depth tests). */
#include <evhost/evhost.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>

typedef struct ctx {
    const evh_host_api *api;
    evh_host *host;
} ctx;

static int32_t ts_init(const evh_host_api *api, evh_host *host, void **out, char **errmsg)
{
    int64_t init_sleep = api->config_int(host, "init_sleep_ms", 0);
    if (init_sleep > 0) {
        struct timespec t = {(time_t)(init_sleep / 1000), (long)(init_sleep % 1000) * 1000000L};
        nanosleep(&t, NULL);
    }
    ctx *c = api->alloc(sizeof *c);
    if (!c)
        return EVH_E_NOMEM;
    c->api = api;
    c->host = host;
    *out = c;
    (void)errmsg;
    return EVH_OK;
}

static void record(const ctx *c, const evh_step_input *in, const char *file)
{
    FILE *f = fopen(file, "a");
    if (f) {
        fprintf(f, "%s %s %u\n", in->execution_id, in->step_id, in->attempt);
        fclose(f);
    }
    (void)c;
}

static int32_t ts_run(void *p, const evh_step_input *in, evh_step_output *out)
{
    ctx *c = p;
    const evh_host_api *api = c->api;
    char *mode = api->json_get_string(in->config_json, in->config_len, "mode");
    char *file = api->json_get_string(in->config_json, in->config_len, "record_file");
    char *value = api->json_get(in->config_json, in->config_len, "value");
    char *ftimes = api->json_get(in->config_json, in->config_len, "fail_times");
    char *sleep_ms = api->json_get(in->config_json, in->config_len, "sleep_ms");
    char *emit_type = api->json_get_string(in->config_json, in->config_len, "emit_type");
    char *event_id = api->json_get(in->event_json, in->event_len, "id");
    int32_t rc = EVH_OK;
    if (file)
        record(c, in, file);
    api->metric(c->host, "attempt", in->attempt);
    if (mode && !strcmp(mode, "fail")) {
        out->error_message = api->mprintf("failing on purpose (attempt %u)", in->attempt);
        rc = EVH_E_PLUGIN;
    } else if (mode && !strcmp(mode, "flaky") && ftimes && in->attempt <= (uint32_t)atoi(ftimes)) {
        out->error_message = api->mprintf("flaky failure %u of %s", in->attempt, ftimes);
        rc = EVH_E_PLUGIN;
    } else {
        if (mode && !strcmp(mode, "sleep") && sleep_ms) {
            long ms = atol(sleep_ms);
            struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
            nanosleep(&t, NULL);
        }
        if (emit_type)
            api->emit(c->host, emit_type, "{}", 2, NULL);
        out->output_json = api->mprintf("{\"value\":%s,\"attempt\":%u,\"event_id\":%s}",
                                        value ? value : "null", in->attempt,
                                        event_id ? event_id : "null");
    }
    api->free(mode);
    api->free(file);
    api->free(value);
    api->free(ftimes);
    api->free(sleep_ms);
    api->free(emit_type);
    api->free(event_id);
    return rc;
}

static void ts_fini(void *p)
{
    ctx *c = p;
    c->api->free(c);
}

static const evh_step desc = {
    .struct_size = sizeof(evh_step), .init = ts_init, .run = ts_run, .fini = ts_fini};
EVH_DECLARE_STEP("test-step", &desc)
