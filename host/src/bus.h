/*
 * bus.h - the bounded, thread-safe queue between emit and the pipeline.
 *
 * Many producers (source threads, the HTTP server) push; consumers pop in
 * batches.  When the queue holds `capacity` events a push waits at most its
 * wait_ms and then answers EVH_E_QUEUE_FULL: memory stays bounded and the
 * producer learns it must slow down.  Nothing is ever dropped silently.
 */
#ifndef EVH_BUS_H
#define EVH_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

typedef struct bus bus;

bus *bus_new(size_t capacity);
/* Frees the bus and every event still in it.  No thread may use it. */
void bus_free(bus *b);

/*
 * Append ev.  Returns EVH_OK (the bus owns ev now), EVH_E_QUEUE_FULL after
 * waiting up to wait_ms for room, or EVH_E_STOPPING once bus_close was
 * called.  On error the caller still owns ev.
 */
int bus_push(bus *b, evh_event *ev, uint32_t wait_ms);

/*
 * Take up to `max` events in arrival order into out[].  Waits up to wait_ms
 * for the first one.  Returns the number taken (the caller owns them), 0 on
 * timeout, or EVH_E_STOPPING when the bus is closed and empty.
 */
int bus_pop_batch(bus *b, evh_event **out, size_t max, uint32_t wait_ms);

/* Refuse new pushes (EVH_E_STOPPING) and wake every waiter; events already
 * queued can still be popped. */
void bus_close(bus *b);

size_t bus_depth(bus *b);
size_t bus_capacity(const bus *b);

#endif
