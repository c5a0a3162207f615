/*
 * fuzz_conditions.c - trigger conditions (triggers.c): compile a condition
 * tree from JSON, evaluate it against an event envelope, both alone (the
 * filter step's path) and inside a trigger (matching and the dry run's
 * explanation).  Input: the conditions JSON, a "%%" line, the envelope JSON
 * (fuzz_common.h).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_common.h"
#include "triggers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *a, *b;
    size_t alen, blen;
    fuzz_split(data, size, &a, &alen, &b, &blen);
    cJSON *conds = fuzz_json(a, alen);
    if (!conds)
        return 0;
    cJSON *env = fuzz_json(b, blen);
    if (!env)
        env = cJSON_CreateObject();
    diag d;
    diag_init(&d, NULL);
    cond_node *c = conditions_compile(conds, "conditions", COND_ALLOW_STEPS, &d);
    fuzz_print_diag(&d);
    if (c)
        conditions_eval(c, env);
    conditions_free(c);
    diag_free(&d);

    /* The same tree as a trigger's (no resolver: every source, type and
     * workflow exists). */
    cJSON *spec = cJSON_CreateObject();
    cJSON_AddStringToObject(spec, "id", "fuzz");
    cJSON_AddStringToObject(spec, "source", "timer");
    cJSON_AddStringToObject(spec, "event_type", "timer_fired");
    cJSON_AddStringToObject(spec, "workflow", "w");
    cJSON_AddItemToObject(spec, "conditions", conds);
    diag_init(&d, NULL);
    trigger *t = trigger_from_json(spec, "triggers[0]", NULL, &d);
    fuzz_print_diag(&d);
    if (t) {
        trigger_matches(t, env);
        cJSON *why = trigger_explain(t, env);
        char *text = cJSON_PrintUnformatted(why);
        free(text);
        cJSON_Delete(why);
        cJSON *back = trigger_to_json(t);
        cJSON_Delete(back);
    }
    trigger_free(t);
    diag_free(&d);
    cJSON_Delete(spec);
    cJSON_Delete(env);
    return 0;
}
