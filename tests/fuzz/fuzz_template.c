/*
 * fuzz_template.c - "{{ ... }}" templates (template.c): check a step's
 * `with:` config as workflow loading does, and render it against a run's
 * context when the check passes (the engine renders checked configs only).
 * Input: the config JSON, a "%%" line, the context JSON
 * ({"event": ..., "steps": {...}}; fuzz_common.h).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Steps "fetch" and "parse" run before the checked step, "later" after. */
static int step_known(void *ud, const char *step_id)
{
    (void)ud;
    if (!strcmp(step_id, "fetch") || !strcmp(step_id, "parse"))
        return 1;
    return !strcmp(step_id, "later") ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *a, *b;
    size_t alen, blen;
    fuzz_split(data, size, &a, &alen, &b, &blen);
    cJSON *config = fuzz_json(a, alen);
    if (!config)
        return 0;
    diag d;
    diag_init(&d, NULL);
    int problems = template_check(config, "steps[1].with", step_known, NULL, &d);
    fuzz_print_diag(&d);
    diag_free(&d);
    template_present(config);
    cJSON *ctx = problems == 0 ? fuzz_json(b, blen) : NULL;
    if (ctx) {
        diag_init(&d, NULL);
        cJSON *out = template_render(config, ctx, &d);
        fuzz_print_diag(&d);
        char *text = cJSON_PrintUnformatted(out);
        free(text);
        cJSON_Delete(out);
        diag_free(&d);
    }
    cJSON_Delete(ctx);
    cJSON_Delete(config);
    return 0;
}
