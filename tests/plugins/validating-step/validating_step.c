/* validating-step: validate (SDK 1.2) answers as `check` says, after
 * checking what the host promises a validate call:
 *   - the config has configSchema's defaults filled in (level: 3);
 *   - emit and metric are refused (EVH_E_STATE), data_dir works;
 *   - a templated value arrives as its text.
 * check: ok | refuse (field "check") | item (field "items[1]") | whole (no
 * field) | bare (no message) | crash (SIGSEGV);
 * a template: OK.  Every validate call appends a line to the file named by
 * EVH_TEST_VALIDATE_LOG when set.  run echoes {"check": ...}. */
#include <evhost/evhost.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int32_t vs_validate(const evh_host_api *api, evh_host *host, char **field, char **errmsg)
{
    const char *check = api->config_string(host, "check", "?");
    const char *log = getenv("EVH_TEST_VALIDATE_LOG");
    FILE *f = log ? fopen(log, "a") : NULL;
    if (f) {
        fprintf(f, "%s\n", check);
        fclose(f);
    }
    if (api->config_int(host, "level", -1) != 3) {
        *errmsg = api->strdup("the default of level is missing");
        return EVH_E_INVALID;
    }
    if (api->emit(host, "leaked", "{}", 2, NULL) != EVH_E_STATE ||
        api->metric(host, "m", 1) != EVH_E_STATE) {
        *errmsg = api->strdup("emit or metric was allowed during validate");
        return EVH_E_INVALID;
    }
    if (!api->data_dir(host)) {
        *errmsg = api->strdup("no data directory during validate");
        return EVH_E_INVALID;
    }
    if (evh_is_template(check))
        return strstr(check, "{{ event.data.check }}") ? EVH_OK : EVH_E_INVALID;
    if (!strcmp(check, "refuse")) {
        *field = api->strdup("check");
        *errmsg = api->mprintf("'%s' is refused on purpose", check);
        return EVH_E_CONFIG;
    }
    if (!strcmp(check, "item")) {
        *field = api->strdup("items[1]");
        *errmsg = api->strdup("this item is refused on purpose");
        return EVH_E_NOT_FOUND;
    }
    if (!strcmp(check, "whole")) {
        *errmsg = api->strdup("the config as a whole is refused\non purpose");
        return EVH_E_CONFIG;
    }
    if (!strcmp(check, "bare"))
        return EVH_E_NOT_FOUND;
    if (!strcmp(check, "crash"))
        raise(SIGSEGV);
    return EVH_OK;
}

static int32_t vs_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    (void)errmsg;
    *ctx = (void *)api;
    (void)host;
    return EVH_OK;
}

static int32_t vs_run(void *ctx, const evh_step_input *in, evh_step_output *out)
{
    const evh_host_api *api = ctx;
    char *check = api->json_get(in->config_json, in->config_len, "check");
    out->output_json = api->mprintf("{\"check\":%s}", check ? check : "null");
    api->free(check);
    return out->output_json ? EVH_OK : EVH_E_NOMEM;
}

static void vs_fini(void *ctx)
{
    (void)ctx;
}

static const evh_step vs_step = {.struct_size = sizeof(evh_step),
                                 .init = vs_init,
                                 .run = vs_run,
                                 .fini = vs_fini,
                                 .validate = vs_validate};
EVH_DECLARE_STEP("validating-step", &vs_step)
