/*
 * runtime.c - what plugin instances share (see runtime.h).
 */
#include "runtime.h"

#include <stdlib.h>
#include <string.h>

#include "hostapi.h"

runtime *runtime_new(size_t queue_capacity, const char *data_root,
                     uint32_t emit_wait_ms)
{
    runtime *rt = calloc(1, sizeof *rt);
    if (!rt)
        return NULL;
    rt->bus = bus_new(queue_capacity);
    if (!rt->bus)
        goto fail_free_rt;
    if (data_root) {
        rt->data_root = strdup(data_root);
        if (!rt->data_root)
            goto fail_free_bus;
    }
    rt->emit_wait_ms = emit_wait_ms;
    atomic_init(&rt->stopping, 0);
    atomic_init(&rt->emitted, 0);
    atomic_init(&rt->refused_full, 0);
    atomic_init(&rt->refused_type, 0);
    atomic_init(&rt->refused_schema, 0);
    atomic_init(&rt->refused_stopping, 0);
    return rt;

fail_free_bus:
    bus_free(rt->bus);
fail_free_rt:
    free(rt);
    return NULL;
}

void runtime_stop(runtime *rt)
{
    if (!rt)
        return;
    /* The flag first: whoever the wake-ups reach must already see it. */
    atomic_store(&rt->stopping, 1);
    bus_close(rt->bus);
    hostapi_runtime_stopping(rt);
}

void runtime_free(runtime *rt)
{
    if (!rt)
        return;
    bus_free(rt->bus);
    free(rt->data_root);
    free(rt);
}
