/*
 * fuzz_schema.c - the JSON-schema subset (schema.c): compile a schema, then
 * validate an instance against it, fill in its defaults and look up paths.
 * Input: schema JSON, a "%%" line, instance JSON (fuzz_common.h).
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"
#include "schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Each key of the instance (and its own keys) as a schema path. */
static void lookup_paths(const schema *s, const cJSON *o, const char *prefix)
{
    const cJSON *k;
    cJSON_ArrayForEach(k, o)
    {
        if (!k->string)
            continue;
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", k->string);
        const char *type = NULL;
        schema_has_path(s, path, &type);
        if (cJSON_IsObject(k) && !*prefix)
            lookup_paths(s, k, path);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *a, *b;
    size_t alen, blen;
    fuzz_split(data, size, &a, &alen, &b, &blen);
    cJSON *sj = fuzz_json(a, alen);
    if (!sj)
        return 0;
    diag d;
    diag_init(&d, NULL);
    schema *s = schema_compile(sj, "schema", &d);
    fuzz_print_diag(&d);
    cJSON *inst = s ? fuzz_json(b, blen) : NULL;
    if (inst) {
        diag v;
        diag_init(&v, NULL);
        schema_validate(s, inst, "data", &v);
        fuzz_print_diag(&v);
        diag_free(&v);
        schema_apply_defaults(s, inst);
        diag_init(&v, NULL);
        schema_validate(s, inst, "data", &v); /* defaults need not be valid: no crash either */
        diag_free(&v);
        lookup_paths(s, inst, "");
        if (cJSON_IsString(inst))
            schema_has_path(s, inst->valuestring, NULL);
    }
    cJSON_Delete(inst);
    schema_free(s);
    cJSON_Delete(sj);
    diag_free(&d);
    return 0;
}
