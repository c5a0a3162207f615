/*
 * fuzz_manifest.c - plugin.json validation (manifest.c, and schema.c for the
 * schemas a manifest declares).  Input: the plugin.json text.
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"
#include "manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    diag d;
    diag_init(&d, "plugin.json");
    manifest *m = NULL;
    manifest_parse((const char *)data, size, "fuzz/plugin.json", &m, &d);
    fuzz_print_diag(&d);
    if (m) {
        /* what the loader and the HTTP fallback do with a valid manifest */
        for (size_t i = 0; i < m->n_event_types; i++)
            manifest_find_type(m, m->event_types[i].type);
        if (m->webhook_endpoint) {
            manifest_endpoint_is_prefix(m->webhook_endpoint);
            manifest_endpoint_rank(m->webhook_endpoint);
            manifest_endpoint_matches(m->webhook_endpoint, m->webhook_endpoint);
            manifest_endpoint_matches(m->webhook_endpoint, "/api/webhooks/x//y/");
            manifest_endpoint_same(m->webhook_endpoint, "/api/webhooks/");
        }
    }
    manifest_free(m);
    diag_free(&d);
    return 0;
}
