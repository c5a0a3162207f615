/*
 * runtime.h - what every plugin instance shares: the event queue, the stop
 * flag, the data root, and the counters of what emit accepted and refused.
 */
#ifndef EVH_RUNTIME_H
#define EVH_RUNTIME_H

#include <stdatomic.h>
#include <stdint.h>

#include "bus.h"

typedef struct runtime {
    bus *bus;                 /* where accepted events go */
    char *data_root;          /* plugin data dirs are <data_root>/plugins/<id> */
    uint32_t emit_wait_ms;    /* bounded wait of emit on a full queue */
    atomic_int stopping;      /* set once by runtime_stop */
    /* counters (monotonic, for /metrics and tests) */
    atomic_ullong emitted;         /* accepted */
    atomic_ullong refused_full;    /* EVH_E_QUEUE_FULL */
    atomic_ullong refused_type;    /* EVH_E_UNDECLARED_TYPE */
    atomic_ullong refused_schema;  /* EVH_E_SCHEMA */
    atomic_ullong refused_stopping;/* EVH_E_STOPPING */
} runtime;

/* queue_capacity events; data_root is copied.  NULL on out-of-memory. */
runtime *runtime_new(size_t queue_capacity, const char *data_root,
                     uint32_t emit_wait_ms);
/* Set the stop flag and close the bus (producers get EVH_E_STOPPING). */
void runtime_stop(runtime *rt);
void runtime_free(runtime *rt);

#endif
